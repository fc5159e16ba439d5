//! `account-usage seed` against a real PostgreSQL and SQLite: row counts,
//! every promised data feature, determinism, and input errors.

use std::collections::HashMap;

use sqlx::{Connection, PgConnection, Row, SqliteConnection};

use crate::common::{self, TempDir};

const START: &str = "2026-03-02"; // a Monday; the window holds the US DST change of 2026-03-08

fn seed_args<'a>(source: &'a str, accounts: &'a str, days: &'a str, per_day: &'a str) -> Vec<&'a str> {
    vec![
        "seed",
        "--source",
        source,
        "--accounts",
        accounts,
        "--days",
        days,
        "--start",
        START,
        "--messages-per-day",
        per_day,
        "--seed",
        "7",
    ]
}

async fn count(conn: &mut PgConnection, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(conn).await.unwrap()
}

#[tokio::test]
async fn postgres_seed_has_every_listed_feature() {
    let url = common::server().new_database("features").await;
    let out = common::run_ok(&seed_args(&url, "8", "14", "3000"));
    assert!(out.contains("messages"), "summary printed: {out}");
    let mut c = PgConnection::connect(&url).await.unwrap();

    // Row counts: exactly what was asked for, and every table filled.
    assert_eq!(count(&mut c, "SELECT count(*) FROM accounts").await, 8);
    assert_eq!(count(&mut c, "SELECT count(*) FROM messages").await, 14 * 3000);
    for sql in [
        "SELECT count(*) FROM channels",
        "SELECT count(*) FROM agents",
        "SELECT count(*) FROM contacts",
        "SELECT count(*) FROM conversations",
        "SELECT count(*) FROM conversation_events",
    ] {
        assert!(count(&mut c, sql).await > 0, "{sql}");
    }

    // Per-account time zones, including the awkward ones.
    let zones: Vec<String> = sqlx::query_scalar("SELECT DISTINCT time_zone FROM accounts")
        .fetch_all(&mut c)
        .await
        .unwrap();
    for zone in [
        "Asia/Kathmandu",
        "Asia/Kolkata",
        "America/New_York",
        "Australia/Lord_Howe",
        "America/Santiago",
        "Europe/London",
    ] {
        assert!(zones.iter().any(|z| z == zone), "no account in {zone}: {zones:?}");
    }

    // A platform mix.
    assert!(count(&mut c, "SELECT count(DISTINCT platform) FROM channels").await >= 4);

    // Daily cycle in local time: office hours are much busier than the night.
    let (day, night): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE h BETWEEN 9 AND 16), count(*) FILTER (WHERE h BETWEEN 1 AND 4)
         FROM (SELECT extract(hour FROM m.sent_at AT TIME ZONE a.time_zone) AS h
               FROM messages m JOIN accounts a ON a.id = m.account_id) x",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert!(day > 8 * night, "office hours {day} vs night {night}");

    // Weekly cycle in local time: weekdays busier than weekends (two of each day).
    let (weekday, weekend): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE d BETWEEN 1 AND 5), count(*) FILTER (WHERE d IN (0, 6))
         FROM (SELECT extract(dow FROM c.created_at AT TIME ZONE a.time_zone) AS d
               FROM conversations c JOIN accounts a ON a.id = c.account_id
               WHERE c.created_at >= '2026-03-03' AND c.created_at < '2026-03-16') x",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert!(
        weekday as f64 / 5.0 > 1.5 * weekend as f64 / 2.0,
        "weekday {weekday} vs weekend {weekend}"
    );

    // Heavy-tailed contacts: a few very busy, most seen once.
    let per_contact: Vec<i64> =
        sqlx::query_scalar("SELECT count(*) FROM conversations GROUP BY contact_id ORDER BY 1 DESC")
            .fetch_all(&mut c)
            .await
            .unwrap();
    let once = per_contact.iter().filter(|n| **n == 1).count();
    assert!(
        once * 2 > per_contact.len(),
        "{once} of {} contacts seen once",
        per_contact.len()
    );
    assert!(
        per_contact[0] >= 50,
        "busiest contact has only {} conversations",
        per_contact[0]
    );

    // Agents work shifts: most of an agent's messages fall in ten local hours.
    let rows = sqlx::query(
        "SELECT m.agent_id, extract(hour FROM m.sent_at AT TIME ZONE a.time_zone)::int AS h, count(*)
         FROM messages m JOIN accounts a ON a.id = m.account_id
         WHERE m.sender_type = 'agent' GROUP BY 1, 2",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    let mut hours: HashMap<i64, [i64; 24]> = HashMap::new();
    for r in rows {
        hours.entry(r.get(0)).or_insert([0; 24])[r.get::<i32, _>(1) as usize] += r.get::<i64, _>(2);
    }
    let busy: Vec<_> = hours.values().filter(|h| h.iter().sum::<i64>() >= 40).collect();
    assert!(busy.len() >= 10, "only {} agents with 40+ messages", busy.len());
    let on_shift = busy
        .iter()
        .filter(|h| {
            let total: i64 = h.iter().sum();
            let best = (0..24)
                .map(|s| (0..10).map(|i| h[(s + i) % 24]).sum::<i64>())
                .max()
                .unwrap();
            best as f64 >= 0.75 * total as f64
        })
        .count();
    assert!(
        on_shift * 10 >= busy.len() * 8,
        "{on_shift} of {} agents keep to a shift",
        busy.len()
    );

    // Conversations that start with a proactive outbound message.
    assert!(
        count(
            &mut c,
            "SELECT count(*) FROM conversations c
             WHERE (SELECT m.direction FROM messages m WHERE m.conversation_id = c.id
                    ORDER BY m.sent_at, m.id LIMIT 1) = 'outbound'"
        )
        .await
            > 0
    );
    assert!(
        count(
            &mut c,
            "SELECT count(*) FROM messages WHERE sender_type = 'proactive_api'"
        )
        .await
            > 0
    );
    // Conversations never answered.
    assert!(
        count(
            &mut c,
            "SELECT count(*) FROM conversations c
             WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id AND m.direction = 'outbound')"
        )
        .await
            > 0
    );
    // Resolved, reopened, resolved again.
    assert!(
        count(
            &mut c,
            "SELECT count(*) FROM conversation_events r1
             JOIN conversation_events o ON o.conversation_id = r1.conversation_id AND o.kind = 'reopened'
                                        AND o.occurred_at > r1.occurred_at
             JOIN conversation_events r2 ON r2.conversation_id = r1.conversation_id AND r2.kind = 'resolved'
                                        AND r2.occurred_at > o.occurred_at
             WHERE r1.kind = 'resolved'"
        )
        .await
            > 0
    );
    // Test and development channels.
    assert!(count(&mut c, "SELECT count(*) FROM channels WHERE environment = 'test'").await > 0);
    assert!(
        count(
            &mut c,
            "SELECT count(*) FROM channels WHERE environment = 'development'"
        )
        .await
            > 0
    );
    // Channels connected and disconnected mid-period (window: 2026-03-02 .. 2026-03-16).
    assert!(
        count(
            &mut c,
            "SELECT count(*) FROM channels WHERE connected_at > '2026-03-02Z' AND connected_at < '2026-03-16Z'"
        )
        .await
            > 0
    );
    assert!(
        count(
            &mut c,
            "SELECT count(*) FROM channels WHERE disconnected_at > '2026-03-02Z' AND disconnected_at < '2026-03-16Z'"
        )
        .await
            > 0
    );
    // Automation messages.
    assert!(count(&mut c, "SELECT count(*) FROM messages WHERE sender_type = 'automation'").await > 0);
    // About 2% late rows, hours to days late.
    let late = count(
        &mut c,
        "SELECT count(*) FROM messages WHERE created_at >= sent_at + interval '1 hour'",
    )
    .await;
    let share = late as f64 / (14.0 * 3000.0);
    assert!((0.01..=0.03).contains(&share), "late share {share}");
    assert!(
        count(
            &mut c,
            "SELECT count(*) FROM messages WHERE created_at >= sent_at + interval '1 day'"
        )
        .await
            > 0
    );
}

/// Every table as sorted text rows, timestamps as Unix microseconds.
const DUMPS: [(&str, &str, &str); 7] = [
    (
        "accounts",
        "SELECT concat_ws('|', id, name, time_zone, (extract(epoch FROM created_at) * 1000000)::bigint) FROM accounts ORDER BY id",
        "SELECT id || '|' || name || '|' || time_zone || '|' || created_at FROM accounts ORDER BY id",
    ),
    (
        "channels",
        "SELECT concat_ws('|', id, account_id, platform, name, environment, (extract(epoch FROM connected_at) * 1000000)::bigint, coalesce(((extract(epoch FROM disconnected_at) * 1000000)::bigint)::text, '')) FROM channels ORDER BY id",
        "SELECT id || '|' || account_id || '|' || platform || '|' || name || '|' || environment || '|' || connected_at || '|' || coalesce(disconnected_at, '') FROM channels ORDER BY id",
    ),
    (
        "agents",
        "SELECT concat_ws('|', id, account_id, name) FROM agents ORDER BY id",
        "SELECT id || '|' || account_id || '|' || name FROM agents ORDER BY id",
    ),
    (
        "contacts",
        "SELECT concat_ws('|', id, account_id, platform, external_id) FROM contacts ORDER BY id",
        "SELECT id || '|' || account_id || '|' || platform || '|' || external_id FROM contacts ORDER BY id",
    ),
    (
        "conversations",
        "SELECT concat_ws('|', id, account_id, channel_id, contact_id, (extract(epoch FROM created_at) * 1000000)::bigint) FROM conversations ORDER BY id",
        "SELECT id || '|' || account_id || '|' || channel_id || '|' || contact_id || '|' || created_at FROM conversations ORDER BY id",
    ),
    (
        "messages",
        "SELECT concat_ws('|', id, account_id, conversation_id, channel_id, contact_id, direction, sender_type, coalesce(agent_id::text, ''), (extract(epoch FROM sent_at) * 1000000)::bigint, (extract(epoch FROM created_at) * 1000000)::bigint) FROM messages ORDER BY id",
        "SELECT id || '|' || account_id || '|' || conversation_id || '|' || channel_id || '|' || contact_id || '|' || direction || '|' || sender_type || '|' || coalesce(agent_id, '') || '|' || sent_at || '|' || created_at FROM messages ORDER BY id",
    ),
    (
        "conversation_events",
        "SELECT concat_ws('|', id, conversation_id, kind, coalesce(agent_id::text, ''), (extract(epoch FROM occurred_at) * 1000000)::bigint, (extract(epoch FROM created_at) * 1000000)::bigint) FROM conversation_events ORDER BY id",
        "SELECT id || '|' || conversation_id || '|' || kind || '|' || coalesce(agent_id, '') || '|' || occurred_at || '|' || created_at FROM conversation_events ORDER BY id",
    ),
];

async fn dump_postgres(url: &str) -> Vec<Vec<String>> {
    let mut c = PgConnection::connect(url).await.unwrap();
    let mut out = Vec::new();
    for (_, pg, _) in DUMPS {
        out.push(sqlx::query_scalar(pg).fetch_all(&mut c).await.unwrap());
    }
    out
}

async fn dump_sqlite(url: &str) -> Vec<Vec<String>> {
    let mut c = SqliteConnection::connect(url).await.unwrap();
    let mut out = Vec::new();
    for (_, _, lite) in DUMPS {
        out.push(sqlx::query_scalar(lite).fetch_all(&mut c).await.unwrap());
    }
    out
}

#[tokio::test]
async fn same_seed_gives_identical_tables_in_postgres_and_sqlite() {
    let server = common::server();
    let (a, b) = (server.new_database("det_a").await, server.new_database("det_b").await);
    let dir = TempDir::new("seed-sqlite");
    let lite = format!("sqlite://{}/nested/source.db", dir.path().display());
    for url in [&a, &b, &lite] {
        common::run_ok(&seed_args(url, "4", "3", "2000"));
    }
    let (da, db, dl) = (
        dump_postgres(&a).await,
        dump_postgres(&b).await,
        dump_sqlite(&lite).await,
    );
    for (i, (table, _, _)) in DUMPS.iter().enumerate() {
        assert!(!da[i].is_empty(), "{table} is empty");
        assert_eq!(da[i], db[i], "{table} differs between two PostgreSQL seeds");
        assert_eq!(da[i], dl[i], "{table} differs between PostgreSQL and SQLite");
    }
    assert_eq!(da[5].len(), 6000);

    // A different seed gives different data.
    let other = server.new_database("det_c").await;
    let mut args = seed_args(&other, "4", "3", "2000");
    *args.last_mut().unwrap() = "8";
    common::run_ok(&args);
    assert_ne!(dump_postgres(&other).await[5], da[5]);
}

#[tokio::test]
async fn seed_refuses_a_non_empty_source_unless_truncating() {
    let url = common::server().new_database("nonempty").await;
    common::run_ok(&seed_args(&url, "2", "1", "500"));
    // A retry cannot help: bad input, exit 2.
    let out = common::run_bin(&seed_args(&url, "2", "1", "500"));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("already holds data") && stderr.contains("--truncate"),
        "{stderr}"
    );
    let mut args = seed_args(&url, "2", "1", "700");
    args.push("--truncate");
    common::run_ok(&args);
    let mut c = PgConnection::connect(&url).await.unwrap();
    assert_eq!(count(&mut c, "SELECT count(*) FROM messages").await, 700);
}

#[test]
fn bad_seed_flags_exit_2_with_one_line() {
    for args in [
        vec!["seed", "--source", "mysql://u:pw@h/db"],
        vec!["seed", "--source", "sqlite://x.db", "--start", "2026-02-30"],
        vec!["seed", "--source", "sqlite://x.db", "--accounts", "0"],
        vec!["seed", "--source", "sqlite://x.db", "--days", "many"],
        vec!["seed", "--source", "sqlite://x.db", "--no-such-flag"],
        vec!["seed"],
    ] {
        common::assert_usage_error(&args);
    }
}

#[test]
fn help_explains_every_flag_with_an_example() {
    let root = common::run_ok(&["--help"]);
    assert!(root.contains("Examples:") && root.contains("seed"), "{root}");
    let seed = common::run_ok(&["seed", "--help"]);
    assert!(seed.contains("Examples:"), "{seed}");
    for flag in [
        "--source",
        "--accounts",
        "--days",
        "--start",
        "--messages-per-day",
        "--seed",
        "--truncate",
    ] {
        assert!(seed.contains(flag), "seed --help lacks {flag}");
    }
}

#[tokio::test]
async fn sqlite_seed_counts_rows() {
    let dir = TempDir::new("sqlite-count");
    let url = format!("sqlite://{}/source.db", dir.path().display());
    common::run_ok(&seed_args(&url, "3", "2", "1500"));
    let mut c = SqliteConnection::connect(&url).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(n, 3000);
    let a: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(a, 3);
}
