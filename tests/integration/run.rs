//! `account-usage run` end to end: the real binary against PostgreSQL and
//! SQLite, checked against SQL counted straight from the source; idempotency,
//! shard changes, late data, S3, DuckDB, bad rows and bad flags.

use std::collections::BTreeMap;

use account_usage::warehouse::paths::{DataFileKey, Table};
use sqlx::{Connection, PgConnection, SqliteConnection};

use crate::common::{self, TempDir};
use crate::wh;

const FROM: &str = "2026-03-07";
const TO: &str = "2026-03-09";
const DAY: i64 = 86_400_000_000;
const HOUR: i64 = 3_600_000_000;

/// A seeded source the tests can also query directly.
pub enum Src {
    Pg(String),
    Lite(String),
}

impl Src {
    pub async fn postgres(label: &str) -> Src {
        Src::Pg(common::server().new_database(label).await)
    }

    pub fn sqlite(dir: &TempDir) -> Src {
        Src::Lite(format!("sqlite://{}/source.db", dir.path().display()))
    }

    pub fn url(&self) -> &str {
        match self {
            Src::Pg(u) | Src::Lite(u) => u,
        }
    }

    pub fn seed(&self, accounts: &str, per_day: &str) {
        common::run_ok(&[
            "seed",
            "--source",
            self.url(),
            "--accounts",
            accounts,
            "--days",
            "4",
            "--start",
            "2026-03-06",
            "--messages-per-day",
            per_day,
            "--seed",
            "11",
        ]);
    }

    /// Unix microseconds of a timestamp column, in this dialect.
    fn us(&self, col: &str) -> String {
        match self {
            Src::Pg(_) => format!("(extract(epoch FROM {col}) * 1000000)::bigint"),
            Src::Lite(_) => col.to_string(),
        }
    }

    pub async fn exec(&self, sql: &str) {
        match self {
            Src::Pg(u) => {
                let mut c = PgConnection::connect(u).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(&mut c).await.unwrap();
            }
            Src::Lite(u) => {
                let mut c = SqliteConnection::connect(u).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(&mut c).await.unwrap();
            }
        }
    }

    async fn pairs(&self, sql: String) -> BTreeMap<(i64, i64), i64> {
        let rows: Vec<(i64, i64, i64)> = match self {
            Src::Pg(u) => {
                let mut c = PgConnection::connect(u).await.unwrap();
                sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(&mut c).await.unwrap()
            }
            Src::Lite(u) => {
                let mut c = SqliteConnection::connect(u).await.unwrap();
                sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(&mut c).await.unwrap()
            }
        };
        rows.into_iter().map(|(a, b, n)| ((a, b), n)).collect()
    }

    async fn singles(&self, sql: String) -> BTreeMap<i64, i64> {
        let rows: Vec<(i64, i64)> = match self {
            Src::Pg(u) => {
                let mut c = PgConnection::connect(u).await.unwrap();
                sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(&mut c).await.unwrap()
            }
            Src::Lite(u) => {
                let mut c = SqliteConnection::connect(u).await.unwrap();
                sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(&mut c).await.unwrap()
            }
        };
        rows.into_iter().collect()
    }
}

/// Compares the published tables of FROM..TO with counts straight from the source.
async fn assert_tables_match_source(src: &Src, warehouse: &str) {
    let wh = wh::open(warehouse, &[]);
    let days = wh::days(FROM, TO);
    let (lo, hi) = (
        wh::day(FROM).and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_micros(),
        (wh::day(TO) + chrono::Days::new(1)).and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_micros(),
    );
    let sent = src.us("sent_at");
    let in_range = format!("{sent} >= {lo} AND {sent} < {hi}");

    let mut contact = Vec::new();
    let mut agent = Vec::new();
    let mut resolved = Vec::new();
    let mut proactive = Vec::new();
    for d in &days {
        contact.extend(wh::batches(&wh, *d, Table::ContactActivity).await);
        agent.extend(wh::batches(&wh, *d, Table::AgentActivity).await);
        resolved.extend(wh::batches(&wh, *d, Table::ResolvedConversations).await);
        proactive.extend(wh::batches(&wh, *d, Table::ProactiveMessages).await);
    }

    // Per day and channel: proactive messages.
    let expected = src
        .pairs(format!(
            "SELECT {sent} / {DAY}, channel_id, count(*) FROM messages
             WHERE direction = 'outbound' AND sender_type = 'proactive_api' AND {in_range} GROUP BY 1, 2"
        ))
        .await;
    assert!(!expected.is_empty());
    assert_eq!(wh::count_by(&proactive, "slot_start", DAY, "channel_id", Some("messages")), expected);

    // Per day and channel: resolved conversations, by DESIGN.md's definition.
    let occurred = src.us("c.occurred_at");
    let expected = src
        .pairs(format!(
            "WITH ranked AS (
                 SELECT conversation_id, direction,
                        ROW_NUMBER() OVER (PARTITION BY conversation_id ORDER BY sent_at, id) AS rn
                 FROM messages),
             first_out AS (
                 SELECT conversation_id, min(sent_at) AS at FROM messages
                 WHERE direction = 'outbound' GROUP BY conversation_id),
             counting AS (
                 SELECT e.conversation_id, e.occurred_at,
                        ROW_NUMBER() OVER (PARTITION BY e.conversation_id ORDER BY e.occurred_at, e.id) AS rn
                 FROM conversation_events e JOIN first_out o ON o.conversation_id = e.conversation_id
                 WHERE e.kind = 'resolved' AND e.occurred_at >= o.at)
             SELECT {occurred} / {DAY}, v.channel_id, count(*)
             FROM counting c
             JOIN ranked f ON f.conversation_id = c.conversation_id AND f.rn = 1
             JOIN conversations v ON v.id = c.conversation_id
             WHERE c.rn = 1 AND f.direction = 'inbound' AND {occurred} >= {lo} AND {occurred} < {hi}
             GROUP BY 1, 2"
        ))
        .await;
    assert!(!expected.is_empty());
    assert_eq!(wh::count_by(&resolved, "resolved_at", DAY, "channel_id", None), expected);

    // Per UTC hour (and channel): distinct contacts and distinct agents.
    let expected = src
        .pairs(format!(
            "SELECT {sent} / {HOUR}, channel_id, count(DISTINCT contact_id) FROM messages WHERE {in_range} GROUP BY 1, 2"
        ))
        .await;
    assert_eq!(wh::count_by(&contact, "hour", HOUR, "channel_id", None), expected);
    let expected = src
        .singles(format!(
            "SELECT {sent} / {HOUR}, count(DISTINCT contact_id) FROM messages WHERE {in_range} GROUP BY 1"
        ))
        .await;
    assert_eq!(wh::distinct_by(&contact, "hour", HOUR, "contact_id"), expected);
    let agents = "direction = 'outbound' AND sender_type = 'agent' AND agent_id IS NOT NULL";
    let expected = src
        .pairs(format!(
            "SELECT {sent} / {HOUR}, channel_id, count(DISTINCT agent_id) FROM messages
             WHERE {agents} AND {in_range} GROUP BY 1, 2"
        ))
        .await;
    assert!(!expected.is_empty());
    assert_eq!(wh::count_by(&agent, "hour", HOUR, "channel_id", None), expected);
    let expected = src
        .singles(format!(
            "SELECT {sent} / {HOUR}, count(DISTINCT agent_id) FROM messages WHERE {agents} AND {in_range} GROUP BY 1"
        ))
        .await;
    assert_eq!(wh::distinct_by(&agent, "hour", HOUR, "agent_id"), expected);

    // First and last instants lie in their hour, first <= last.
    let (hours, firsts, lasts) = (
        wh::ints(&contact, "hour"),
        wh::ints(&contact, "first_at"),
        wh::ints(&contact, "last_at"),
    );
    for i in 0..hours.len() {
        let (h, f, l) = (hours[i].unwrap(), firsts[i].unwrap(), lasts[i].unwrap());
        assert!(h <= f && f <= l && l < h + HOUR);
    }
}

fn run_range(src: &Src, warehouse: &str, extra: &[&str]) -> String {
    let mut args = vec!["run", "--source", src.url(), "--warehouse", warehouse, "--from", FROM, "--to", TO];
    args.extend_from_slice(extra);
    common::run_ok(&args)
}

#[tokio::test]
async fn postgres_run_matches_counts_from_the_source() {
    let src = Src::postgres("run_pg").await;
    src.seed("5", "4000");
    let dir = TempDir::new("wh-pg");
    let warehouse = dir.path().join("wh").display().to_string();
    let out = run_range(&src, &warehouse, &["--parallel", "2"]);
    assert!(out.contains("3 day(s) published"), "{out}");
    assert_tables_match_source(&src, &warehouse).await;
}

#[tokio::test]
async fn sqlite_run_matches_counts_from_the_source() {
    let dir = TempDir::new("wh-lite");
    let src = Src::sqlite(&dir);
    src.seed("4", "3000");
    let warehouse = dir.path().join("wh").display().to_string();
    run_range(&src, &warehouse, &[]);
    assert_tables_match_source(&src, &warehouse).await;
}

/// Data files of a day, by table, as listed in the store.
async fn data_files(wh: &account_usage::warehouse::Warehouse, d: chrono::NaiveDate) -> Vec<DataFileKey> {
    let mut out = Vec::new();
    for t in Table::ALL {
        for key in wh.list(&DataFileKey::partition(t, d)).await.unwrap() {
            out.push(DataFileKey::parse(&key).unwrap());
        }
    }
    out
}

/// The publish conformance suite, for any warehouse URL and store settings.
async fn publish_is_idempotent_and_survives_shard_changes(
    src: &Src,
    warehouse: &str,
    env: &[(&'static str, String)],
    options: &[(&'static str, String)],
) {
    let wh = wh::open(warehouse, options);
    let days = wh::days(FROM, TO);
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--source", src.url(), "--warehouse", warehouse, "--from", FROM, "--to", TO];
        args.extend_from_slice(extra);
        common::run_ok_env(&args, env)
    };
    run(&[]);
    let first = wh::snapshot(&wh, &days).await;
    assert!(first.values().any(|rows| !rows.is_empty()));
    run(&[]);
    assert_eq!(wh::snapshot(&wh, &days).await, first, "a rerun changed table contents");
    for d in &days {
        let files = data_files(&wh, *d).await;
        let mut tables: Vec<_> = files.iter().map(|f| f.table).collect();
        tables.dedup();
        assert_eq!(tables.len(), files.len(), "{d}: more than one file per table after a rerun");
    }

    for i in ["0", "1", "2"] {
        run(&["--shard-index", i, "--shard-count", "3"]);
    }
    assert_eq!(wh::snapshot(&wh, &days).await, first, "3 shards give other contents");
    for i in ["0", "1"] {
        run(&["--shard-index", i, "--shard-count", "2"]);
    }
    assert_eq!(wh::snapshot(&wh, &days).await, first, "2 shards give other contents");
    for d in &days {
        let files = data_files(&wh, *d).await;
        assert!(!files.is_empty());
        assert!(files.iter().all(|f| f.shard.count == 2), "{d}: files of other shard counts left: {files:?}");
        let manifests = wh.list(&format!("_manifests/dt={d}")).await.unwrap();
        assert_eq!(manifests.len(), 2, "{d}: {manifests:?}");
    }
}

#[tokio::test]
async fn local_publish_is_idempotent_and_survives_shard_changes() {
    let dir = TempDir::new("wh-idem");
    let src = Src::sqlite(&dir);
    src.seed("6", "2000");
    let warehouse = format!("file://{}/wh", dir.path().display());
    publish_is_idempotent_and_survives_shard_changes(&src, &warehouse, &[], &[]).await;
}

#[tokio::test]
async fn s3_publish_is_idempotent_and_survives_shard_changes() {
    let moto = common::Moto::start("warehouse");
    let dir = TempDir::new("wh-s3");
    let src = Src::sqlite(&dir);
    src.seed("6", "2000");
    let env = moto.env();
    publish_is_idempotent_and_survives_shard_changes(&src, "s3://warehouse/usage", &env, &moto.options()).await;
    // And the S3 warehouse holds what a local one holds.
    let local = dir.path().join("local").display().to_string();
    run_range(&src, &local, &[]);
    let days = wh::days(FROM, TO);
    let s3 = wh::open("s3://warehouse/usage", &moto.options());
    assert_eq!(
        wh::snapshot(&s3, &days).await,
        wh::snapshot(&wh::open(&local, &[]), &days).await
    );
}
