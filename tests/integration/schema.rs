//! The reference schema in `sql/source/` loads into empty databases.

use std::process::Command;

use sqlx::{Connection, PgConnection, SqliteConnection};

use crate::common::{self, TempDir};

const INDEXES: [&str; 6] = [
    "messages_sent_at_idx",
    "messages_conversation_sent_at_idx",
    "messages_created_at_idx",
    "conversation_events_occurred_at_idx",
    "conversation_events_conversation_occurred_at_idx",
    "conversation_events_created_at_idx",
];

fn manifest_path(rel: &str) -> String {
    format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn postgres_schema_loads_with_psql_twice() {
    let url = common::server().new_database("schema").await;
    let psql = common::find_pg_bin("psql").expect("psql is installed with the PostgreSQL client");
    for _ in 0..2 {
        let out = Command::new(&psql)
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &url, "-f"])
            .arg(manifest_path("sql/source/postgres.sql"))
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql -f failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut conn = PgConnection::connect(&url).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut expected: Vec<&str> = account_usage::source::TABLES.to_vec();
    expected.sort();
    assert_eq!(tables, expected);
    let indexes: Vec<String> = sqlx::query_scalar("SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public'")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    for index in INDEXES {
        assert!(indexes.iter().any(|i| i == index), "missing index {index}");
    }
}

#[tokio::test]
async fn sqlite_schema_loads_twice() {
    let dir = TempDir::new("sqlite-schema");
    let url = format!("sqlite://{}/s.db?mode=rwc", dir.path().display());
    let mut conn = SqliteConnection::connect(&url).await.unwrap();
    let schema = std::fs::read_to_string(manifest_path("sql/source/sqlite.sql")).unwrap();
    for _ in 0..2 {
        sqlx::raw_sql(sqlx::AssertSqlSafe(schema.clone()))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type IN ('table', 'index')")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    for name in account_usage::source::TABLES.iter().chain(INDEXES.iter()) {
        assert!(names.iter().any(|n| n == name), "missing {name}");
    }
}
