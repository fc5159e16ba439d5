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

    /// `account-usage run` from this source into `warehouse`, with `days`
    /// (`--date D`, or `--from A --to B`), which must succeed; its output.
    pub fn run_into(&self, warehouse: &str, days: &[&str]) -> String {
        let mut args = vec!["run", "--source", self.url(), "--warehouse", warehouse];
        args.extend_from_slice(days);
        common::run_ok(&args)
    }

    pub fn seed(&self, accounts: &str, per_day: &str) {
        self.seed_days(accounts, "4", "2026-03-06", per_day, &common::test_seed(11).to_string());
    }

    /// `account-usage seed` of `days` days from `start`.
    pub fn seed_days(&self, accounts: &str, days: &str, start: &str, per_day: &str, seed: &str) {
        common::run_ok(&[
            "seed",
            "--source",
            self.url(),
            "--accounts",
            accounts,
            "--days",
            days,
            "--start",
            start,
            "--messages-per-day",
            per_day,
            "--seed",
            seed,
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
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
            Src::Lite(u) => {
                use std::str::FromStr;
                let options = sqlx::sqlite::SqliteConnectOptions::from_str(u)
                    .unwrap()
                    .create_if_missing(true);
                let mut c = SqliteConnection::connect_with(&options).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
        }
    }

    /// A timestamp literal of an RFC 3339 instant, in this dialect.
    fn at(&self, rfc3339: &str) -> String {
        match self {
            Src::Pg(_) => format!("'{rfc3339}'::timestamptz"),
            Src::Lite(_) => wh::micros(rfc3339).to_string(),
        }
    }

    /// An arrival an hour after every row's, in this dialect: a row that
    /// arrives then is found by the next run's late-data search (the last
    /// run's watermark is the latest arrival it saw).
    fn after_every_arrival(&self) -> &'static str {
        match self {
            Src::Pg(_) => {
                "(GREATEST((SELECT max(created_at) FROM messages), (SELECT max(created_at) FROM conversation_events)) + interval '1 hour')"
            }
            Src::Lite(_) => {
                "(max((SELECT max(created_at) FROM messages), (SELECT max(created_at) FROM conversation_events)) + 3600000000)"
            }
        }
    }

    /// Every row of a query, in this dialect.
    async fn fetch<T>(&self, sql: String) -> Vec<T>
    where
        T: Send
            + Unpin
            + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
            + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>,
    {
        match self {
            Src::Pg(u) => {
                let mut c = PgConnection::connect(u).await.unwrap();
                sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&mut c)
                    .await
                    .unwrap()
            }
            Src::Lite(u) => {
                let mut c = SqliteConnection::connect(u).await.unwrap();
                sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&mut c)
                    .await
                    .unwrap()
            }
        }
    }

    async fn pairs(&self, sql: String) -> BTreeMap<(i64, i64), i64> {
        let rows: Vec<(i64, i64, i64)> = self.fetch(sql).await;
        rows.into_iter().map(|(a, b, n)| ((a, b), n)).collect()
    }

    async fn singles(&self, sql: String) -> BTreeMap<i64, i64> {
        let rows: Vec<(i64, i64)> = self.fetch(sql).await;
        rows.into_iter().collect()
    }
}

/// Compares the published tables of FROM..TO with counts straight from the source.
async fn assert_tables_match_source(src: &Src, warehouse: &str) {
    let wh = wh::open(warehouse, &[]);
    let days = wh::days(FROM, TO);
    let (lo, hi) = (
        wh::day(FROM).and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_micros(),
        (wh::day(TO) + chrono::Days::new(1))
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_micros(),
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
    assert_eq!(
        wh::count_by(&proactive, "slot_start", DAY, "channel_id", Some("messages")),
        expected
    );

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
    assert_eq!(
        wh::count_by(&resolved, "resolved_at", DAY, "channel_id", None),
        expected
    );

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

/// `run` over FROM..TO, with extra flags and environment.
fn run_range_env(src: &Src, warehouse: &str, extra: &[&str], env: &[(String, String)]) -> String {
    let mut args = vec![
        "run",
        "--source",
        src.url(),
        "--warehouse",
        warehouse,
        "--from",
        FROM,
        "--to",
        TO,
    ];
    args.extend_from_slice(extra);
    common::run_ok_env(&args, env)
}

fn run_range(src: &Src, warehouse: &str, extra: &[&str]) -> String {
    run_range_env(src, warehouse, extra, &[])
}

#[tokio::test]
async fn postgres_run_matches_counts_from_the_source() {
    let src = Src::postgres("run_pg").await;
    src.seed("5", "4000");
    src.exec(CONVERSATIONS_ON_OTHER_CHANNELS).await;
    src.exec(&resolves_on_the_definitions_edges(&src)).await;
    let dir = TempDir::new("wh-pg");
    let warehouse = dir.path().join("wh").display().to_string();
    let out = run_range(&src, &warehouse, &["--parallel", "2"]);
    assert!(out.contains("3 day(s) published"), "{out}");
    assert_tables_match_source(&src, &warehouse).await;
    // The smallest budget, 1,000 entries, spills every aggregate, the resolve
    // candidates (whose conversations the history lookup reads back from
    // the spilled runs) among them.
    let spilled = dir.path().join("wh-spilled").display().to_string();
    let spill_dir = dir.path().join("spill");
    std::fs::create_dir_all(&spill_dir).unwrap();
    let spill_arg = spill_dir.display().to_string();
    run_range(
        &src,
        &spilled,
        &["--max-entries-in-memory", "1000", "--spill-dir", &spill_arg],
    );
    assert_tables_match_source(&src, &spilled).await;
    let left: Vec<_> = std::fs::read_dir(&spill_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "a finished run left spill folders behind: {left:?}");
}

#[tokio::test]
async fn sqlite_run_matches_counts_from_the_source() {
    let dir = TempDir::new("wh-lite");
    let src = Src::sqlite(&dir);
    src.seed("4", "3000");
    src.exec(CONVERSATIONS_ON_OTHER_CHANNELS).await;
    src.exec(&resolves_on_the_definitions_edges(&src)).await;
    let warehouse = dir.path().join("wh").display().to_string();
    run_range(&src, &warehouse, &[]);
    assert_tables_match_source(&src, &warehouse).await;
}

/// Resolves on the definition's edges, each decided on 03-08 from the
/// history before the day. A conversation resolved at the very instant of
/// its first reply (an automation's) on 03-07, and again on 03-08: it counts
/// once, on 03-07 (a resolve at the earliest outbound message counts), so
/// the 03-08 night must find it settled. And one whose first two messages,
/// on 03-07, share an instant, the outbound one with the lower id: its first
/// message is outbound, so its resolve on 03-08 never counts.
fn resolves_on_the_definitions_edges(src: &Src) -> String {
    let (asked, replied, again) = (
        src.at("2026-03-07T10:00:00Z"),
        src.at("2026-03-07T10:05:00Z"),
        src.at("2026-03-08T09:00:00Z"),
    );
    format!(
        "INSERT INTO conversations (id, account_id, channel_id, contact_id, created_at)
         SELECT 900000501, account_id, id, 900501, {asked} FROM channels ORDER BY id LIMIT 1;
         INSERT INTO messages (id, account_id, conversation_id, channel_id, contact_id, direction, sender_type, agent_id, sent_at, created_at)
         SELECT 900000501, account_id, id, channel_id, contact_id, 'inbound', 'contact', NULL, {asked}, {asked}
         FROM conversations WHERE id = 900000501;
         INSERT INTO messages (id, account_id, conversation_id, channel_id, contact_id, direction, sender_type, agent_id, sent_at, created_at)
         SELECT 900000502, account_id, id, channel_id, contact_id, 'outbound', 'automation', NULL, {replied}, {replied}
         FROM conversations WHERE id = 900000501;
         INSERT INTO conversation_events (id, conversation_id, kind, agent_id, occurred_at, created_at)
         VALUES (900000501, 900000501, 'resolved', NULL, {replied}, {replied}),
                (900000502, 900000501, 'resolved', NULL, {again}, {again});
         INSERT INTO conversations (id, account_id, channel_id, contact_id, created_at)
         SELECT 900000511, account_id, channel_id, 900511, {asked} FROM conversations WHERE id = 900000501;
         INSERT INTO messages (id, account_id, conversation_id, channel_id, contact_id, direction, sender_type, agent_id, sent_at, created_at)
         SELECT 900000511, account_id, id, channel_id, contact_id, 'outbound', 'automation', NULL, {asked}, {asked}
         FROM conversations WHERE id = 900000511;
         INSERT INTO messages (id, account_id, conversation_id, channel_id, contact_id, direction, sender_type, agent_id, sent_at, created_at)
         SELECT 900000512, account_id, id, channel_id, contact_id, 'inbound', 'contact', NULL, {asked}, {asked}
         FROM conversations WHERE id = 900000511;
         INSERT INTO conversation_events (id, conversation_id, kind, agent_id, occurred_at, created_at)
         VALUES (900000511, 900000511, 'resolved', NULL, {again}, {again});"
    )
}

/// The seed keeps a conversation's messages on its channel; a source need
/// not. Some conversations move to their account's first channel, so that
/// resolved conversations (by the conversation's channel) and messages (by
/// theirs) are grouped apart.
const CONVERSATIONS_ON_OTHER_CHANNELS: &str = "UPDATE conversations SET channel_id =
     (SELECT min(ch.id) FROM channels ch WHERE ch.account_id = conversations.account_id)
 WHERE id % 3 = 0";

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
    env: &[(String, String)],
    options: &[(&'static str, String)],
) {
    let wh = wh::open(warehouse, options);
    let days = wh::days(FROM, TO);
    let run = |extra: &[&str]| run_range_env(src, warehouse, extra, env);
    run(&[]);
    let first = wh::snapshot(&wh, &days).await;
    assert!(first.values().any(|rows| !rows.is_empty()));
    run(&[]);
    assert_eq!(wh::snapshot(&wh, &days).await, first, "a rerun changed table contents");
    for d in &days {
        let files = data_files(&wh, *d).await;
        let mut tables: Vec<_> = files.iter().map(|f| f.table).collect();
        tables.dedup();
        assert_eq!(
            tables.len(),
            files.len(),
            "{d}: more than one file per table after a rerun"
        );
    }

    // Until a new shard count's set is complete, readers read the old
    // count's: neither its manifests nor its files go before then.
    for i in ["0", "1", "2"] {
        run(&["--shard-index", i, "--shard-count", "3"]);
        assert_eq!(wh::snapshot(&wh, &days).await, first, "after shard {i} of 3");
    }
    for i in ["0", "1"] {
        run(&["--shard-index", i, "--shard-count", "2"]);
        assert_eq!(wh::snapshot(&wh, &days).await, first, "after shard {i} of 2");
    }
    for d in &days {
        let files = data_files(&wh, *d).await;
        assert!(!files.is_empty());
        assert!(
            files.iter().all(|f| f.shard.count == 2),
            "{d}: files of other shard counts left: {files:?}"
        );
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

/// Runs SIGKILLed at random points while a reader polls every published day:
/// the reader never sees a partial day, and the rerun repairs everything.
async fn killed_runs_never_show_a_partial_day(
    src: &Src,
    warehouse: &str,
    options: &[(&'static str, String)],
    env: &[(String, String)],
) {
    run_range_env(src, warehouse, &[], env);
    let wh = wh::open(warehouse, options);
    let days = wh::days(FROM, TO);
    let reference = wh::snapshot(&wh, &days).await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = wh::spawn_day_reader(warehouse, options, &reference, stop.clone());
    let mut rng = account_usage::seed::rng::Rng::new(99);
    for _ in 0..8 {
        let mut child = std::process::Command::new(common::BIN)
            .args([
                "run",
                "--source",
                src.url(),
                "--warehouse",
                warehouse,
                "--from",
                FROM,
                "--to",
                TO,
                // A killed run's lease blocks the next run until it expires.
                "--lease-ttl",
                "1s",
            ])
            .env("RUST_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(rng.range(20, 900) as u64)).await;
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = reader.await.expect("the reader never saw a partial day");
    assert!(reads > 0);

    run_range_env(src, warehouse, &[], env);
    assert_eq!(wh::snapshot(&wh, &days).await, reference);
    for d in &days {
        let files = data_files(&wh, *d).await;
        let mut runs: Vec<_> = files.iter().map(|f| f.run_id.clone()).collect();
        runs.dedup();
        assert_eq!(runs.len(), 1, "{d}: files of killed runs left behind: {files:?}");
    }
}

#[tokio::test]
async fn a_killed_run_never_shows_a_partial_day_and_the_rerun_repairs_it() {
    let dir = TempDir::new("wh-kill");
    let src = Src::sqlite(&dir);
    src.seed("6", "6000");
    let warehouse = dir.path().join("wh").display().to_string();
    killed_runs_never_show_a_partial_day(&src, &warehouse, &[], &[]).await;
}

#[tokio::test]
async fn a_killed_run_on_s3_never_shows_a_partial_day_and_the_rerun_repairs_it() {
    let dir = TempDir::new("wh-kill-s3");
    let src = Src::sqlite(&dir);
    src.seed("6", "6000");
    let moto = common::Moto::start("killed");
    killed_runs_never_show_a_partial_day(&src, "s3://killed/usage", &moto.options(), &moto.env()).await;
}

/// Run manifests in the warehouse, oldest first.
async fn run_manifests(wh: &account_usage::warehouse::Warehouse) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for key in wh.list("_runs").await.unwrap() {
        let bytes = wh.get(&key).await.unwrap().unwrap();
        out.push(serde_json::from_slice(&bytes).unwrap());
    }
    out
}

#[tokio::test]
async fn late_rows_reprocess_only_their_day_and_too_old_rows_are_rejected() {
    let src = Src::postgres("late").await;
    src.seed("4", "3000");
    let dir = TempDir::new("wh-late");
    let warehouse = dir.path().join("wh").display().to_string();
    let wh = wh::open(&warehouse, &[]);
    let run = |date: &str, extra: &[&str]| {
        let mut args = vec!["run", "--source", src.url(), "--warehouse", &warehouse, "--date", date];
        args.extend_from_slice(extra);
        common::run_ok(&args)
    };
    run("2026-03-07", &[]);
    let out = run("2026-03-08", &[]);
    assert!(out.contains("1 day(s) published (0 with late data)"), "{out}");
    let before_08 = wh::manifests(&wh, wh::day("2026-03-08")).await.unwrap()[0]
        .run_id
        .clone();

    // A late message for 03-07 by a new contact, in a conversation of its
    // own, that reached the database after every seeded row (the watermark is
    // the latest of messages and events). Whatever the seed, no resolve of
    // the seeded data counts it.
    src.exec(&format!(
        "INSERT INTO conversations (id, account_id, channel_id, contact_id, created_at)
         SELECT 900000001, m.account_id, m.channel_id, 999999, m.sent_at + interval '1 second'
         FROM messages m
         WHERE m.sent_at >= '2026-03-07Z' AND m.sent_at < '2026-03-08Z'
         ORDER BY m.id LIMIT 1;
         INSERT INTO messages
         SELECT 900000001, c.account_id, c.id, c.channel_id, c.contact_id, 'inbound', 'contact', NULL,
                c.created_at, {}
         FROM conversations c WHERE c.id = 900000001",
        src.after_every_arrival()
    ))
    .await;
    // A message sent 17 days before it arrived on 03-09: too late to reprocess.
    src.exec(
        "INSERT INTO messages
         SELECT 900000002, account_id, conversation_id, channel_id, contact_id, direction, sender_type, agent_id,
                '2026-02-20T10:00:00Z', '2026-03-09T12:00:00Z'
         FROM messages ORDER BY id LIMIT 1",
    )
    .await;
    // The horizon's edges: with --max-late-days 2 the night of 03-09
    // reprocesses 03-07 (the horizon's day) from its first instant on, so a
    // new contact then is counted, and a message placed a microsecond
    // before it that arrived on 03-09 is too late.
    src.exec(
        "INSERT INTO messages
         SELECT 900000003, m.account_id, m.conversation_id, m.channel_id, 999998, 'inbound', 'contact', NULL,
                '2026-03-07T00:00:00Z', m.created_at
         FROM messages m WHERE m.id = 900000001;
         INSERT INTO messages
         SELECT 900000004, m.account_id, m.conversation_id, m.channel_id, 999997, 'inbound', 'contact', NULL,
                '2026-03-06T23:59:59.999999Z', '2026-03-09T12:00:00Z'
         FROM messages m WHERE m.id = 900000001",
    )
    .await;

    let out = run("2026-03-09", &["--max-late-days", "2"]);
    assert!(out.contains("2 day(s) published (1 with late data)"), "{out}");
    let last = run_manifests(&wh).await.pop().unwrap();
    assert_eq!(last["days"], serde_json::json!(["2026-03-07", "2026-03-09"]));
    assert_eq!(last["late_days"], serde_json::json!(["2026-03-07"]));
    // 03-07 now has the late contact; 03-08 was not touched.
    let contacts = wh::ints(
        &wh::batches(&wh, wh::day("2026-03-07"), Table::ContactActivity).await,
        "contact_id",
    );
    assert!(contacts.contains(&Some(999999)));
    assert!(contacts.contains(&Some(999998)));
    assert_eq!(
        wh::manifests(&wh, wh::day("2026-03-08")).await.unwrap()[0].run_id,
        before_08
    );
    // The too-old rows are counted rejects on the day they arrived: these
    // two, and the seeded rows that arrived on 03-09 placed before the
    // horizon.
    let seeded_too_late: i64 = {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(src.url()).await.unwrap();
        sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM messages
                     WHERE created_at >= '2026-03-09Z' AND created_at < '2026-03-10Z'
                       AND sent_at < '2026-03-07Z' AND id < 900000000)
                  + (SELECT count(*) FROM conversation_events
                     WHERE created_at >= '2026-03-09Z' AND created_at < '2026-03-10Z'
                       AND occurred_at < '2026-03-07Z')",
        )
        .fetch_one(&mut c)
        .await
        .unwrap()
    };
    let rejects = wh::rejects_by_reason(&wh, wh::day("2026-03-09")).await;
    assert_eq!(rejects.get("too_late"), Some(&(seeded_too_late + 2)));

    // Nothing new: the next run reprocesses nothing.
    let out = run("2026-03-09", &[]);
    assert!(out.contains("1 day(s) published (0 with late data)"), "{out}");
}

/// A message and a resolve that reached the database more than
/// --max-late-days after their day are rejects (too_late) on the day they
/// arrived, for a night that runs that day alone: their own day was
/// published without them. A backfill over both days counts them on their
/// own day, and then rejects them nowhere ("a rejected row takes part in
/// no metric").
async fn too_late_rows_are_rejects_only_where_their_day_is_not_counted(src: &Src, dir: &TempDir) {
    src.seed_days("2", "10", "2026-03-01", "300", &common::test_seed(5).to_string());
    let nightly = dir.path().join("nightly").display().to_string();
    let backfill = dir.path().join("backfill").display().to_string();
    let run = |warehouse: &str, from: &str, to: &str| {
        common::run_ok(&[
            "run",
            "--source",
            src.url(),
            "--warehouse",
            warehouse,
            "--from",
            from,
            "--to",
            to,
        ]);
    };
    // The nights up to 03-09, before the rows arrive.
    run(&nightly, "2026-03-01", "2026-03-09");
    // Rows in the first seeded message's conversation, placed at one
    // instant and arrived at another (SQL expressions of this dialect).
    let message = |id: i64, contact: i64, placed: &str, arrived: &str| {
        format!(
            "INSERT INTO messages (id, account_id, conversation_id, channel_id, contact_id, direction, sender_type, agent_id, sent_at, created_at)
             SELECT {id}, account_id, conversation_id, channel_id, {contact}, 'inbound', 'contact', NULL, {placed}, {arrived}
             FROM messages ORDER BY id LIMIT 1;\n"
        )
    };
    let event = |id: i64, kind: &str, placed: &str, arrived: &str| {
        format!(
            "INSERT INTO conversation_events (id, conversation_id, kind, agent_id, occurred_at, created_at)
             SELECT {id}, conversation_id, '{kind}', NULL, {placed}, {arrived}
             FROM messages ORDER BY id LIMIT 1;\n"
        )
    };
    let sent = src.at("2026-03-01T20:00:00Z");
    let arrived = src.at("2026-03-10T08:00:00Z");
    // The night of 03-10 reprocesses late rows back to 03-03 (the default
    // --max-late-days, 7), from that day's first instant on: rows that
    // arrived after the last run's watermark.
    let horizon = src.at("2026-03-03T00:00:00Z");
    let before_horizon = src.at("2026-03-02T23:59:59.999999Z");
    let late = src.after_every_arrival();
    src.exec(
        &[
            message(900000301, 900301, &sent, &arrived),
            event(900000302, "resolved", &sent, &arrived),
            message(900000303, 900303, &before_horizon, &arrived),
            event(900000305, "reopened", &before_horizon, &arrived),
            message(900000304, 900304, &horizon, late),
            // A late event of a kind no metric reads: its day is reprocessed
            // all the same, so that it is a counted reject.
            event(900000306, "escalated", &src.at("2026-03-05T12:00:00Z"), late),
            // Without an instant, a row belongs to no day: the day it
            // arrived counts it (null_field), rather than no day at all.
            message(900000307, 900307, "NULL", &arrived),
            event(900000308, "resolved", "NULL", &arrived),
        ]
        .concat(),
    )
    .await;
    run(&nightly, "2026-03-10", "2026-03-10");
    run(&backfill, "2026-03-01", "2026-03-10");
    for warehouse in [&nightly, &backfill] {
        let rejects = wh::rejects_by_reason(&wh::open(warehouse, &[]), wh::day("2026-03-10")).await;
        assert_eq!(rejects.get("null_field"), Some(&2), "{warehouse}");
    }
    let too_late = |warehouse: &str| {
        let wh = wh::open(warehouse, &[]);
        async move {
            let rejects = wh::rejects_by_reason(&wh, wh::day("2026-03-10")).await;
            rejects.get("too_late").copied().unwrap_or(0)
        }
    };
    let contacts = |warehouse: &str, day: &str| {
        let wh = wh::open(warehouse, &[]);
        let day = wh::day(day);
        async move { wh::ints(&wh::batches(&wh, day, Table::ContactActivity).await, "contact_id") }
    };
    assert_eq!(too_late(&nightly).await, 4);
    for warehouse in [&nightly, &backfill] {
        let rejects = wh::rejects_by_reason(&wh::open(warehouse, &[]), wh::day("2026-03-05")).await;
        assert_eq!(rejects.get("unknown_event_kind"), Some(&1), "{warehouse}");
    }
    assert!(!contacts(&nightly, "2026-03-01").await.contains(&Some(900301)));
    assert!(!contacts(&nightly, "2026-03-02").await.contains(&Some(900303)));
    assert!(contacts(&nightly, "2026-03-03").await.contains(&Some(900304)));
    assert_eq!(too_late(&backfill).await, 0);
    assert!(contacts(&backfill, "2026-03-01").await.contains(&Some(900301)));
    assert!(contacts(&backfill, "2026-03-02").await.contains(&Some(900303)));
    assert!(contacts(&backfill, "2026-03-03").await.contains(&Some(900304)));

    // A row without an instant that arrives after the last watermark, on a
    // day already published: the next night reprocesses its arrival day
    // (the late days' query places it there), which counts it.
    run(&nightly, "2026-03-11", "2026-03-16");
    let just_after_every_arrival = match src {
        Src::Pg(_) => {
            "(GREATEST((SELECT max(created_at) FROM messages), (SELECT max(created_at) FROM conversation_events)) + interval '1 microsecond')"
        }
        Src::Lite(_) => {
            "(max((SELECT max(created_at) FROM messages), (SELECT max(created_at) FROM conversation_events)) + 1)"
        }
    };
    src.exec(&message(900000309, 900309, "NULL", just_after_every_arrival))
        .await;
    let arrival_day: Vec<(String,)> = src
        .fetch(match src {
            Src::Pg(_) => {
                "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') FROM messages WHERE id = 900000309".into()
            }
            Src::Lite(_) => "SELECT date(created_at / 1000000, 'unixepoch') FROM messages WHERE id = 900000309".into(),
        })
        .await;
    let arrival_day = wh::day(&arrival_day[0].0);
    assert!(
        arrival_day <= wh::day("2026-03-16"),
        "the arrival day {arrival_day} is published"
    );
    let null_fields = |warehouse: &str| {
        let wh = wh::open(warehouse, &[]);
        async move {
            let rejects = wh::rejects_by_reason(&wh, arrival_day).await;
            rejects.get("null_field").copied().unwrap_or(0)
        }
    };
    let before = null_fields(&nightly).await;
    run(&nightly, "2026-03-17", "2026-03-17");
    assert_eq!(null_fields(&nightly).await, before + 1, "arrival day {arrival_day}");
}

#[tokio::test]
async fn postgres_too_late_rows_are_rejects_only_where_their_day_is_not_counted() {
    let dir = TempDir::new("too-late-pg");
    too_late_rows_are_rejects_only_where_their_day_is_not_counted(&Src::postgres("too_late").await, &dir).await;
}

#[tokio::test]
async fn sqlite_too_late_rows_are_rejects_only_where_their_day_is_not_counted() {
    let dir = TempDir::new("too-late-lite");
    too_late_rows_are_rejects_only_where_their_day_is_not_counted(&Src::sqlite(&dir), &dir).await;
}

/// A run of some accounts replaces their rows of a day and keeps every
/// other account's: after the source changed for account 1, `--accounts 1`
/// leaves the same tables and rollups as a run of every account, and no
/// scratch file (its own, or one a killed run left).
async fn a_run_of_some_accounts_keeps_the_others(
    dir: &TempDir,
    src: &Src,
    spliced: &str,
    options: &[(&'static str, String)],
    env: &[(String, String)],
) {
    // A row of no account on 03-08: its reject has no account either, and
    // a splice must keep it.
    src.exec(
        "INSERT INTO messages (id, account_id, conversation_id, channel_id, contact_id, direction, sender_type, agent_id, sent_at, created_at)
         SELECT 900000300, NULL, conversation_id, channel_id, contact_id, direction, sender_type, agent_id, sent_at, created_at
         FROM messages WHERE sent_at >= 1772928000000000 ORDER BY sent_at LIMIT 1;",
    )
    .await;
    run_range_env(src, spliced, &[], env);
    // A new contact and a new proactive message for account 1 on 03-08.
    src.exec(
        "INSERT INTO messages (id, account_id, conversation_id, channel_id, contact_id, direction, sender_type, agent_id, sent_at, created_at)
         SELECT 900000301, account_id, conversation_id, channel_id, 999301, 'inbound', 'contact', NULL, sent_at, created_at
         FROM messages WHERE account_id = 1 AND sent_at >= 1772928000000000 ORDER BY sent_at LIMIT 1;
         INSERT INTO messages (id, account_id, conversation_id, channel_id, contact_id, direction, sender_type, agent_id, sent_at, created_at)
         SELECT 900000302, account_id, conversation_id, channel_id, contact_id, 'outbound', 'proactive_api', NULL, sent_at, created_at
         FROM messages WHERE account_id = 1 AND sent_at >= 1772928000000000 ORDER BY sent_at LIMIT 1;",
    )
    .await;
    let spliced_wh = wh::open(spliced, options);
    // What a run of some accounts killed before it spliced leaves behind.
    spliced_wh
        .put(
            "_scratch/20260309T010000000Z-00000001/contact_activity/dt=2026-03-08/part-s0of1.parquet",
            bytes::Bytes::from_static(b"PAR1"),
        )
        .await
        .unwrap();
    common::run_ok_env(
        &[
            "run",
            "--source",
            src.url(),
            "--warehouse",
            spliced,
            "--date",
            "2026-03-08",
            "--accounts",
            "1",
        ],
        env,
    );
    let whole = dir.path().join("whole").display().to_string();
    run_range(src, &whole, &[]);
    let whole_wh = wh::open(&whole, &[]);
    let days = wh::days(FROM, TO);
    let expected = wh::snapshot(&whole_wh, &days).await;
    let contacts = wh::ints(
        &wh::batches(&spliced_wh, wh::day("2026-03-08"), Table::ContactActivity).await,
        "contact_id",
    );
    assert!(contacts.contains(&Some(999301)), "account 1's new row is in");
    let reject_accounts = wh::ints(
        &wh::batches(&spliced_wh, wh::day("2026-03-08"), Table::Rejects).await,
        "account_id",
    );
    assert!(reject_accounts.contains(&None), "the reject of no account is kept");
    for ((day, table), rows) in wh::snapshot(&spliced_wh, &days).await {
        assert!(
            rows == expected[&(day, table)],
            "{table} of {day} after --accounts 1 differs from a run of every account"
        );
    }
    assert_eq!(
        wh::rollup_snapshot(&spliced_wh).await,
        wh::rollup_snapshot(&whole_wh).await
    );
    assert_eq!(
        spliced_wh.list("_scratch").await.unwrap(),
        Vec::<String>::new(),
        "the scratch files, the run's own and the killed run's, are gone"
    );
}

/// [`a_run_of_some_accounts_keeps_the_others`] in a local warehouse; and
/// what such a run refuses: a day with no version to splice into, an
/// account the source lacks or of another shard, a day published with
/// another shard count, and one published before a table existed.
#[tokio::test]
async fn a_run_of_some_accounts_keeps_every_other_accounts_rows() {
    let dir = TempDir::new("wh-accounts");
    let src = Src::sqlite(&dir);
    src.seed("4", "3000");
    let spliced = dir.path().join("spliced").display().to_string();
    a_run_of_some_accounts_keeps_the_others(&dir, &src, &spliced, &[], &[]).await;
    let plan = common::run_ok(&[
        "run",
        "--source",
        src.url(),
        "--warehouse",
        &spliced,
        "--date",
        "2026-03-08",
        "--accounts",
        "1",
        "--dry-run",
    ]);
    assert!(plan.contains("day 2026-03-08\n  splice these accounts' rows"), "{plan}");

    let refused = |extra: &[&str], expected: &str| {
        let mut args = vec!["run", "--source", src.url(), "--warehouse", &spliced];
        args.extend(extra);
        let line = common::assert_usage_error(&args);
        assert!(line.contains(expected), "{line}");
    };
    refused(
        &["--date", "2026-03-08", "--accounts", "1,99"],
        "--accounts: account 99 is not in the source's accounts table",
    );
    refused(
        &["--date", "2026-03-06", "--accounts", "1"],
        "--accounts: 2026-03-06 has no published version of shard s0of1",
    );
    let own = account_usage::aggregate::shard_of(1, 4);
    let other = (0..4).find(|s| *s != own).unwrap();
    for (index, expected) in [
        (other, "--accounts: account 1 belongs to shard"),
        (own, "(it is published with 1 shard(s): give --shard-count 1)"),
    ] {
        let index = index.to_string();
        refused(
            &[
                "--date",
                "2026-03-08",
                "--accounts",
                "1",
                "--shard-count",
                "4",
                "--shard-index",
                &index,
            ],
            expected,
        );
    }
    // A day an older version published, before a table existed.
    let manifest = dir.path().join("spliced/_manifests/dt=2026-03-09/s0of1.json");
    let mut old: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    old["files"]
        .as_array_mut()
        .unwrap()
        .retain(|f| f["table"] != "contact_days");
    std::fs::write(&manifest, serde_json::to_vec(&old).unwrap()).unwrap();
    refused(
        &["--date", "2026-03-09", "--accounts", "1"],
        "has no published version of shard s0of1 with table contact_days (an older version published it)",
    );
}

#[tokio::test]
async fn a_run_of_some_accounts_on_s3_keeps_every_other_accounts_rows() {
    let dir = TempDir::new("wh-accounts-s3");
    let src = Src::sqlite(&dir);
    src.seed("4", "3000");
    let moto = common::Moto::start("accounts");
    a_run_of_some_accounts_keeps_the_others(&dir, &src, "s3://accounts/usage", &moto.options(), &moto.env()).await;
}

/// A row committed after a night's snapshot but stamped before the rows it
/// saw (a write transaction open across the night) is found by the next
/// run: the watermark stays `--max-commit-lag` behind the source's clock.
#[tokio::test]
async fn a_row_committed_after_the_snapshot_but_stamped_before_it_is_found_by_the_next_run() {
    let src = Src::postgres("commit-lag").await;
    src.seed_days("1", "1", "2026-03-06", "50", "1");
    let dir = TempDir::new("wh-commit-lag");
    let warehouse = dir.path().join("wh").display().to_string();
    let today = chrono::Utc::now().date_naive();
    let (yesterday, before) = (today - chrono::Days::new(1), today - chrono::Days::new(2));
    let message = |id: i64, contact: i64, day: chrono::NaiveDate| {
        format!(
            "INSERT INTO messages (id, account_id, conversation_id, channel_id, contact_id, direction, sender_type, agent_id, sent_at, created_at)
             SELECT {id}, account_id, conversation_id, channel_id, {contact}, 'inbound', 'contact', NULL,
                    '{day}T12:00:00Z', clock_timestamp()
             FROM messages ORDER BY id LIMIT 1"
        )
    };
    // The writer stamps its row, then takes its time to commit.
    let mut writer = PgConnection::connect(src.url()).await.unwrap();
    let mut open = writer.begin().await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(message(900000201, 999201, before)))
        .execute(&mut *open)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    src.exec(&message(900000202, 999202, yesterday)).await;
    let run = || {
        common::run_ok(&[
            "run",
            "--source",
            src.url(),
            "--warehouse",
            &warehouse,
            "--date",
            &yesterday.to_string(),
            "--max-commit-lag",
            "2s",
        ])
    };
    let out = run();
    assert!(out.contains("1 day(s) published (0 with late data)"), "{out}");
    // The manifest records the latest arrival it saw, and the watermark the
    // lag behind the source's clock: before it.
    let wh = wh::open(&warehouse, &[]);
    let first = run_manifests(&wh).await.pop().unwrap();
    let instant = |v: &serde_json::Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    assert!(
        instant(&first["watermark"]) < instant(&first["latest_created_at"]),
        "{first}"
    );
    open.commit().await.unwrap();
    // The next night, in the test's terms: the source's clock has passed the
    // row by more than the lag.
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let out = run();
    assert!(out.contains("2 day(s) published (1 with late data)"), "{out}");
    let contacts = wh::ints(&wh::batches(&wh, before, Table::ContactActivity).await, "contact_id");
    assert_eq!(contacts, [Some(999201)]);
}

/// Nights run as the rows arrive, each seeing only the rows whose
/// `created_at` is before it (as in production), publish exactly what one
/// backfill over the final source publishes: tables and rollups. Besides
/// the seeded late rows (about 2%, up to 4 days late), two rows the seed
/// never makes: a resolve that arrives after a later resolve of its
/// conversation was counted (the earlier one counts instead), and a
/// message stamped as arriving in 2099 (a clock gone wrong), which must not
/// hide the rows that arrive after it. Between two nights an old day is
/// rerun, and between two others one account's day; and the last nights
/// run with two shards. The nights after each must still find the late
/// rows that arrived before it. One night does not run.
async fn nights_as_rows_arrive_equal_a_backfill(src: &Src, dir: &TempDir) {
    src.seed_days("3", "5", "2026-03-06", "2000", &common::test_seed(13).to_string());
    let at = |t: &str| src.at(t);
    src.exec(&format!(
        "INSERT INTO conversations (id, account_id, channel_id, contact_id, created_at)
         SELECT 900000101, account_id, channel_id, contact_id, {c}
         FROM messages WHERE account_id = 1 ORDER BY id LIMIT 1;
         INSERT INTO messages (id, account_id, conversation_id, channel_id, contact_id, direction, sender_type, agent_id, sent_at, created_at)
         SELECT 900000101, account_id, id, channel_id, contact_id, 'inbound', 'contact', NULL, {c}, {c}
         FROM conversations WHERE id = 900000101;
         INSERT INTO messages (id, account_id, conversation_id, channel_id, contact_id, direction, sender_type, agent_id, sent_at, created_at)
         SELECT 900000102, account_id, id, channel_id, contact_id, 'outbound', 'automation', NULL, {o}, {o}
         FROM conversations WHERE id = 900000101;
         INSERT INTO conversation_events (id, conversation_id, kind, agent_id, occurred_at, created_at)
         VALUES (900000101, 900000101, 'resolved', NULL, {r2}, {r2}),
                (900000102, 900000101, 'resolved', NULL, {r1}, {r1_arrives});",
        c = at("2026-03-11T10:00:00Z"),
        o = at("2026-03-11T10:05:00Z"),
        r2 = at("2026-03-13T12:00:00Z"),
        r1 = at("2026-03-12T09:00:00Z"),
        r1_arrives = at("2026-03-14T05:00:00Z"),
    ))
    .await;
    let first_night = at("2026-03-07T01:00:00Z");
    src.exec(&format!(
        "CREATE TABLE pending_messages AS SELECT * FROM messages WHERE created_at > {first_night};
         DELETE FROM messages WHERE created_at > {first_night};
         CREATE TABLE pending_events AS SELECT * FROM conversation_events WHERE created_at > {first_night};
         DELETE FROM conversation_events WHERE created_at > {first_night};
         INSERT INTO messages (id, account_id, conversation_id, channel_id, contact_id, direction, sender_type, agent_id, sent_at, created_at)
         SELECT 900000103, account_id, conversation_id, channel_id, contact_id, direction, sender_type, agent_id, sent_at, {future}
         FROM messages WHERE account_id = 2 ORDER BY id LIMIT 1;",
        future = at("2099-01-01T00:00:00Z"),
    ))
    .await;

    let nightly = dir.path().join("nightly").display().to_string();
    // Nights until every row has arrived: at least to 03-14 (the crafted
    // rows), later where a seed's late rows arrive later.
    let last_arrival: Vec<(i64,)> = src
        .fetch(format!(
            "SELECT max(t) FROM (SELECT {t} AS t FROM pending_messages UNION ALL SELECT {t} FROM pending_events) x",
            t = src.us("created_at")
        ))
        .await;
    let last_night = chrono::DateTime::from_timestamp_micros(last_arrival[0].0)
        .unwrap()
        .date_naive()
        .max(wh::day("2026-03-14"))
        .to_string();
    let nights = wh::days("2026-03-06", &last_night);
    let mut late_nights = 0;
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--source", src.url(), "--warehouse", &nightly];
        args.extend(extra);
        common::run_ok(&args)
    };
    for night in &nights {
        let cutoff = at(&format!("{}T01:00:00Z", *night + chrono::Days::new(1)));
        src.exec(&format!(
            "INSERT INTO messages SELECT * FROM pending_messages WHERE created_at <= {cutoff};
             DELETE FROM pending_messages WHERE created_at <= {cutoff};
             INSERT INTO conversation_events SELECT * FROM pending_events WHERE created_at <= {cutoff};
             DELETE FROM pending_events WHERE created_at <= {cutoff};"
        ))
        .await;
        // Between nights, after rows arrived: an operator's rerun of an old
        // day, and a rerun of one account's day. Neither processes every day
        // that received rows, so neither may move the watermark past them.
        if *night == wh::day("2026-03-09") {
            run(&["--date", "2026-03-06"]);
        }
        if *night == wh::day("2026-03-10") {
            run(&["--date", "2026-03-08", "--accounts", "1"]);
        }
        // The night of 03-11 fails (its rows have arrived all the same):
        // the next night, the first with two shards, publishes its day too.
        if *night == wh::day("2026-03-11") {
            continue;
        }
        let latest_arrival: Vec<(i64,)> = src
            .fetch(format!(
                "SELECT max(t) FROM (SELECT {t} AS t FROM messages WHERE created_at <= {cutoff}
                 UNION ALL SELECT {t} FROM conversation_events WHERE created_at <= {cutoff}) x",
                t = src.us("created_at")
            ))
            .await;
        let latest_arrival = latest_arrival[0].0;
        // From 03-12 on, two shards (SHARD_COUNT changed): their first night
        // must still find the rows that arrived since one shard's last.
        let count = if *night >= wh::day("2026-03-12") { 2 } else { 1 };
        for index in 0..count {
            let (night, index, count) = (night.to_string(), index.to_string(), count.to_string());
            let out = run(&["--date", &night, "--shard-count", &count, "--shard-index", &index]);
            if !out.contains("(0 with late data)") {
                late_nights += 1;
            }
            // Each night moves the watermark on to the latest row that has
            // arrived, whatever ran between nights, and although rows of the
            // next day (its first hour) have arrived too.
            let state: serde_json::Value =
                serde_json::from_slice(&std::fs::read(format!("{nightly}/_state/s{index}of{count}.json")).unwrap())
                    .unwrap();
            assert_eq!(state["watermark"].as_i64(), Some(latest_arrival), "night {night}");
        }
    }
    let pending: Vec<(i64,)> = src
        .fetch("SELECT (SELECT count(*) FROM pending_messages) + (SELECT count(*) FROM pending_events)".into())
        .await;
    assert_eq!(pending, [(0,)], "every row arrived by the last night");
    assert!(late_nights >= 4, "only {late_nights} night(s) found late data");

    let backfill = dir.path().join("backfill").display().to_string();
    common::run_ok(&[
        "run",
        "--source",
        src.url(),
        "--warehouse",
        &backfill,
        "--from",
        "2026-03-06",
        "--to",
        &last_night,
    ]);
    let (nightly, backfill) = (wh::open(&nightly, &[]), wh::open(&backfill, &[]));
    let tables = wh::snapshot(&backfill, &nights).await;
    for ((day, table), rows) in wh::snapshot(&nightly, &nights).await {
        let expected = &tables[&(day, table)];
        assert!(
            rows == *expected,
            "the nights' {table} of {day} differs from the backfill's: only the nights' {:?}, only the backfill's {:?}",
            rows.iter().filter(|r| !expected.contains(r)).collect::<Vec<_>>(),
            expected.iter().filter(|r| !rows.contains(r)).collect::<Vec<_>>()
        );
    }
    assert_eq!(
        wh::rollup_snapshot(&nightly).await,
        wh::rollup_snapshot(&backfill).await
    );
}

/// A night that failed, or never ran, leaves no hole: the next night also
/// publishes its day, even when none of its rows arrived late (here every
/// row was in the source before the first night, so no watermark finds
/// them), and the warehouse then holds what a backfill publishes. Only
/// within --max-late-days; never on a run of some accounts.
#[tokio::test]
async fn the_night_after_a_missed_one_publishes_its_day_too() {
    let dir = TempDir::new("missed-night");
    let src = Src::sqlite(&dir);
    src.seed_days("3", "4", "2026-03-01", "1000", &common::test_seed(7).to_string());
    let nightly = dir.path().join("nightly").display().to_string();
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--source", src.url(), "--warehouse", &nightly];
        args.extend(extra);
        common::run_ok(&args)
    };
    run(&["--date", "2026-03-01"]);
    run(&["--date", "2026-03-02"]);
    // The night of 2026-03-03 does not run.
    let out = run(&["--date", "2026-03-04", "--max-late-days", "0"]);
    assert!(out.contains("1 day(s) published (0 with late data)"), "{out}");
    let nightly_wh = wh::open(&nightly, &[]);
    assert!(wh::manifests(&nightly_wh, wh::day("2026-03-03")).await.is_none());
    let out = run(&["--date", "2026-03-04", "--dry-run"]);
    assert!(out.contains("day 2026-03-03 (no earlier run published it)"), "{out}");
    let out = run(&["--date", "2026-03-04", "--accounts", "1"]);
    assert!(out.contains("1 day(s) published (0 with late data)"), "{out}");
    let out = run(&["--date", "2026-03-04"]);
    assert!(
        out.contains("2 day(s) published (0 with late data, 1 that no earlier run published)"),
        "{out}"
    );
    let manifest = run_manifests(&nightly_wh).await.pop().unwrap();
    assert_eq!(manifest["catch_up_days"], serde_json::json!(["2026-03-03"]));
    let out = run(&["--date", "2026-03-04"]);
    assert!(out.contains("1 day(s) published (0 with late data)"), "{out}");

    let backfill = dir.path().join("backfill").display().to_string();
    common::run_ok(&[
        "run",
        "--source",
        src.url(),
        "--warehouse",
        &backfill,
        "--from",
        "2026-03-01",
        "--to",
        "2026-03-04",
    ]);
    let days = wh::days("2026-03-01", "2026-03-04");
    let backfill = wh::open(&backfill, &[]);
    assert_eq!(
        wh::snapshot(&nightly_wh, &days).await,
        wh::snapshot(&backfill, &days).await
    );
    assert_eq!(
        wh::rollup_snapshot(&nightly_wh).await,
        wh::rollup_snapshot(&backfill).await
    );
}

#[tokio::test]
async fn postgres_nights_as_rows_arrive_equal_a_backfill() {
    let dir = TempDir::new("arrive-pg");
    nights_as_rows_arrive_equal_a_backfill(&Src::postgres("arrive").await, &dir).await;
}

#[tokio::test]
async fn sqlite_nights_as_rows_arrive_equal_a_backfill() {
    let dir = TempDir::new("arrive-lite");
    nights_as_rows_arrive_equal_a_backfill(&Src::sqlite(&dir), &dir).await;
}

#[tokio::test]
async fn duckdb_reads_every_table_as_published() {
    let dir = TempDir::new("wh-duck");
    let src = Src::sqlite(&dir);
    src.seed("4", "3000");
    let warehouse = dir.path().join("wh").display().to_string();
    run_range(&src, &warehouse, &[]);
    let wh = wh::open(&warehouse, &[]);
    let mut expected = BTreeMap::new();
    for d in wh::days(FROM, TO) {
        for (table, rows) in account_usage::warehouse::manifest::rows_per_table(&wh::manifests(&wh, d).await.unwrap()) {
            *expected.entry(table).or_insert(0u64) += rows;
        }
    }
    let tables: Vec<&str> = Table::ALL.iter().map(|t| t.name()).collect();
    let script = format!(
        "import duckdb, json\n\
         con = duckdb.connect()\n\
         out = {{}}\n\
         for t in {tables:?}:\n    \
             out[t] = con.execute(\"SELECT count(*), count(DISTINCT dt) FROM read_parquet('{warehouse}/\" + t + \"/*/*.parquet', hive_partitioning = true)\").fetchone()\n\
         out['typed'] = con.execute(\"SELECT typeof(hour), typeof(account_id) FROM read_parquet('{warehouse}/contact_activity/*/*.parquet', hive_partitioning = true) LIMIT 1\").fetchone()\n\
         print(json.dumps(out))\n"
    );
    let got = common::python_json(&script);
    for t in tables {
        let n = expected[t];
        assert_eq!(got[t][0].as_u64(), Some(n), "{t}: {got}");
        assert_eq!(got[t][1].as_u64(), Some(if n == 0 { 0 } else { 3 }), "{t}: {got}");
    }
    assert_eq!(got["typed"], serde_json::json!(["TIMESTAMP WITH TIME ZONE", "BIGINT"]));
}

/// Bad rows of every kind for 2026-03-07, inserted after seeding.
fn bad_rows_sql(pg: bool) -> String {
    let ts = |s: &str| {
        if pg {
            format!("'{s}'::timestamptz")
        } else {
            wh::micros(s).to_string()
        }
    };
    let (noon, noon1, early) = (
        ts("2026-03-07T12:00:00Z"),
        ts("2026-03-07T12:00:01Z"),
        ts("2026-03-05T00:00:00Z"),
    );
    let old = ts("2026-02-01T00:00:00Z");
    let nowhere = "NULL".to_string();
    let other_channel = "(SELECT min(id) FROM channels WHERE account_id = 2)";
    let channel = "(SELECT min(id) FROM channels WHERE account_id = 1)";
    let mut sql = String::new();
    let mut msg = |id: i64,
                   account: &str,
                   channel: &str,
                   contact: &str,
                   direction: &str,
                   sender: &str,
                   agent: &str,
                   sent: &str,
                   created: &str| {
        sql.push_str(&format!(
            "INSERT INTO messages (id, account_id, conversation_id, channel_id, contact_id, direction, sender_type, agent_id, sent_at, created_at)
             VALUES ({id}, {account}, 1, {channel}, {contact}, {direction}, {sender}, {agent}, {sent}, {created});\n"
        ));
    };
    // One row per reason: id, account, channel, contact, direction, sender_type, agent, sent_at, created_at.
    #[rustfmt::skip]
    let rows = [
        (800000001, "1", channel, "5", "'sideways'", "'contact'", "NULL", &noon, &noon1),
        (800000002, "1", channel, "5", "'outbound'", "'robot'", "NULL", &noon, &noon1),
        (800000003, "1", "987654321", "5", "'inbound'", "'contact'", "NULL", &noon, &noon1),
        (800000004, "1", other_channel, "5", "'inbound'", "'contact'", "NULL", &noon, &noon1),
        (800000005, "1", channel, "NULL", "'inbound'", "'contact'", "NULL", &noon, &noon1),
        (800000006, "NULL", channel, "5", "'inbound'", "'contact'", "NULL", &noon, &noon1),
        (800000007, "424242", channel, "5", "'inbound'", "'contact'", "NULL", &noon, &noon1),
        (800000008, "1", channel, "5", "'inbound'", "'contact'", "NULL", &noon, &early),
        (800000009, "1", channel, "5", "NULL", "'contact'", "NULL", &noon, &noon1),
        // Reached the database on 03-07, placed 34 days earlier: one of
        // account 1, one of no known account.
        (800000010, "1", channel, "5", "'inbound'", "'contact'", "NULL", &old, &noon1),
        (800000012, "424242", channel, "5", "'inbound'", "'contact'", "NULL", &old, &noon1),
        // Reached the database on 03-07, placed nowhere (no sent_at): one of
        // account 1, one of no account.
        (800000013, "1", channel, "5", "'inbound'", "'contact'", "NULL", &nowhere, &noon1),
        (800000014, "NULL", channel, "5", "'inbound'", "'contact'", "NULL", &nowhere, &noon1),
    ];
    for (id, account, channel, contact, direction, sender, agent, sent, created) in rows {
        msg(id, account, channel, contact, direction, sender, agent, sent, created);
    }
    if !pg {
        // SQLite is dynamically typed: text where an integer belongs.
        msg(
            800000011,
            "1",
            channel,
            "5",
            "'outbound'",
            "'agent'",
            "'abc'",
            &noon,
            &noon1,
        );
    }
    sql.push_str(&format!(
        "INSERT INTO conversation_events (id, conversation_id, kind, agent_id, occurred_at, created_at)
         VALUES (800000001, 1, 'archived', NULL, {noon}, {noon1});
         INSERT INTO conversation_events (id, conversation_id, kind, agent_id, occurred_at, created_at)
         VALUES (800000002, 987654321, 'resolved', NULL, {noon}, {noon1});\n"
    ));
    if pg {
        // Real sources lack the constraints the reference schema has: a duplicate id.
        sql.push_str(&format!(
            "ALTER TABLE messages DROP CONSTRAINT messages_pkey;
             INSERT INTO messages SELECT * FROM messages WHERE sent_at >= {noon} AND id < 800000000 ORDER BY sent_at LIMIT 1;\n"
        ));
    }
    sql
}

async fn bad_rows_are_counted_by_reason(src: Src, dir: &TempDir) {
    src.seed("3", "2000");
    let pg = matches!(src, Src::Pg(_));
    src.exec(&bad_rows_sql(pg)).await;
    let warehouse = dir.path().join("wh").display().to_string();
    let out = common::run_ok(&[
        "run",
        "--source",
        src.url(),
        "--warehouse",
        &warehouse,
        "--date",
        "2026-03-07",
    ]);
    assert!(out.contains("rejects:"), "{out}");
    let wh = wh::open(&warehouse, &[]);
    let by_reason = wh::rejects_by_reason(&wh, wh::day("2026-03-07")).await;
    let mut expected: BTreeMap<String, i64> = [
        ("unknown_direction", 1),
        ("unknown_sender_type", 1),
        ("unknown_channel", 1),
        ("channel_account_mismatch", 1),
        ("null_contact", 1),
        ("null_field", 4),
        ("unknown_account", 1),
        ("future_timestamp", 1),
        ("too_late", 2),
        ("unknown_event_kind", 1),
        ("orphan_event", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if pg {
        expected.insert("duplicate_id".into(), 1);
    } else {
        expected.insert("bad_value".into(), 1);
    }
    assert_eq!(by_reason, expected);

    // With three shards, rows of no known account (a NULL or unknown one,
    // an event of no known conversation) are the first shard's: rejected
    // once, neither by every shard nor by none.
    for index in ["0", "1", "2"] {
        common::run_ok(&[
            "run",
            "--source",
            src.url(),
            "--warehouse",
            &warehouse,
            "--date",
            "2026-03-07",
            "--shard-count",
            "3",
            "--shard-index",
            index,
        ]);
    }
    let shards: Vec<String> = wh::manifests(&wh, wh::day("2026-03-07"))
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.shard)
        .collect();
    assert_eq!(shards, ["s0of3", "s1of3", "s2of3"]);
    assert_eq!(wh::rejects_by_reason(&wh, wh::day("2026-03-07")).await, expected);
}

#[tokio::test]
async fn postgres_bad_rows_are_counted_by_reason() {
    let dir = TempDir::new("bad-pg");
    bad_rows_are_counted_by_reason(Src::postgres("bad").await, &dir).await;
}

#[tokio::test]
async fn sqlite_bad_rows_are_counted_by_reason() {
    let dir = TempDir::new("bad-lite");
    let src = Src::sqlite(&dir);
    bad_rows_are_counted_by_reason(src, &dir).await;
}

#[test]
fn bad_run_flags_exit_2_with_one_line() {
    for args in [
        vec!["run", "--source", "sqlite://x.db", "--warehouse", "ftp://h/p"],
        vec!["run", "--source", "oracle://u:pw@h/db"],
        vec![
            "run",
            "--source",
            "sqlite://x.db",
            "--from",
            "2026-03-02",
            "--to",
            "2026-03-01",
        ],
        vec!["run", "--source", "sqlite://x.db", "--date", "2026-13-01"],
        vec!["run", "--source", "sqlite://x.db", "--from", "2026-03-01"],
        vec![
            "run",
            "--source",
            "sqlite://x.db",
            "--shard-index",
            "2",
            "--shard-count",
            "2",
        ],
    ] {
        common::assert_usage_error(&args);
    }
    for budget in ["999", "1000000001"] {
        let stderr =
            common::assert_usage_error(&["run", "--source", "sqlite://x.db", "--max-entries-in-memory", budget]);
        assert!(stderr.contains("1000..=1000000000"), "{stderr}");
    }
}

#[test]
fn dry_run_lists_objects_and_writes_nothing() {
    let dir = TempDir::new("dry");
    let src = Src::sqlite(&dir);
    src.seed("2", "500");
    let warehouse = dir.path().join("wh");
    let out = common::run_ok(&[
        "run",
        "--source",
        src.url(),
        "--warehouse",
        &warehouse.display().to_string(),
        "--date",
        "2026-03-07",
        "--dry-run",
    ]);
    assert!(out.contains("contact_activity/dt=2026-03-07/part-s0of1-"), "{out}");
    assert!(out.contains("_manifests/dt=2026-03-07/s0of1.json"), "{out}");
    assert!(!warehouse.exists(), "dry run created {}", warehouse.display());
}
