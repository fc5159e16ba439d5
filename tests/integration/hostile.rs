//! Hostile conditions around a run: a spill folder that fills up or
//! disappears, SQLite values of the wrong type in every column, and
//! PostgreSQL's infinite instants.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use account_usage::warehouse::paths::Table;

use crate::common::{self, TempDir};
use crate::run::Src;
use crate::wh;

const DAY: &str = "2026-03-07";

/// A tmpfs of `kib` KiB at `dir`, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, kib: u32) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs for the full-disk test failed (the tests run as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn assert_nothing_published(warehouse: &str) {
    let manifests = Path::new(warehouse).join(format!("_manifests/dt={DAY}"));
    let listed = std::fs::read_dir(&manifests).map(|d| d.count()).unwrap_or(0);
    assert_eq!(listed, 0, "a day was published by a run whose spill failed");
}

fn one_error_line(stderr: &str) -> String {
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    errors[0].to_string()
}

/// A run of one day that spills every 1,000 entries into `spill`.
fn spilling_run(src: &Src, warehouse: &str, spill: &Path) -> Vec<String> {
    [
        "run",
        "--source",
        src.url(),
        "--warehouse",
        warehouse,
        "--date",
        DAY,
        "--max-entries-in-memory",
        "1000",
        "--spill-dir",
        &spill.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Whether a sorted run was spilled under `root` (a day's folder, and its
/// lock file, exist from the day's start).
fn spilled(root: &Path) -> bool {
    common::files_under(root)
        .iter()
        .any(|f| f.file_name().is_some_and(|n| n.to_string_lossy().starts_with("run-")))
}

/// The day folders under `spill`.
fn day_folders(spill: &Path) -> Vec<String> {
    std::fs::read_dir(spill)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("account-usage-spill-"))
                .collect()
        })
        .unwrap_or_default()
}

/// Starts `argv` with `RUST_LOG` at `log`, its stderr piped.
fn spawn(argv: &[String], log: &str) -> std::process::Child {
    Command::new(common::BIN)
        .args(argv)
        .env("RUST_LOG", log)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits (up to 30 s) for a run to spill under `spill`.
fn wait_until_spilled(spill: &Path) {
    let started = Instant::now();
    while !spilled(spill) {
        assert!(started.elapsed() < Duration::from_secs(30), "the run never spilled");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_spill_folder_that_fills_up_or_disappears_fails_the_run_with_exit_1_and_publishes_nothing() {
    let dir = TempDir::new("spill");
    let src = Src::sqlite(&dir);
    src.seed("4", "20000");
    let args = |warehouse: &str, spill: &Path| spilling_run(&src, warehouse, spill);

    // Full: a 64 KiB file system.
    let spill = dir.path().join("full");
    let _tmpfs = Tmpfs::mount(&spill, 64);
    let warehouse = dir.path().join("wh-full").display().to_string();
    let argv = args(&warehouse, &spill);
    let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
    let out = common::run_bin(&refs);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let line = one_error_line(&stderr);
    assert!(
        line.contains("spilling aggregates") && line.contains("No space left"),
        "{line}"
    );
    assert_nothing_published(&warehouse);

    // Gone: the folder is removed once the run has started spilling.
    let spill = dir.path().join("gone");
    std::fs::create_dir_all(&spill).unwrap();
    let warehouse = dir.path().join("wh-gone").display().to_string();
    let argv = args(&warehouse, &spill);
    let child = spawn(&argv, "warn");
    wait_until_spilled(&spill);
    // Gone at once (a recursive delete would race with the files the run
    // keeps creating): moved away, then deleted.
    let moved = dir.path().join("gone-moved");
    std::fs::rename(&spill, &moved).unwrap();
    let (code, stderr, _) = common::wait_bounded(child, common::RUN_LIMIT);
    let _ = std::fs::remove_dir_all(&moved);
    assert_eq!(code, Some(1), "{stderr}");
    let line = one_error_line(&stderr);
    assert!(line.contains("spilling aggregates"), "{line}");
    assert_nothing_published(&warehouse);
}

/// A SIGKILLed run cannot remove its spill folder; the next run that uses
/// the same spill folder does (of any warehouse: the folder's lock, not a
/// lease, says that its process is gone), and leaves a live run's alone.
#[test]
fn a_killed_runs_spill_folder_is_removed_by_the_next_run() {
    let dir = TempDir::new("spill-killed");
    let src = Src::sqlite(&dir);
    src.seed("4", "20000");
    let spill = dir.path().join("spill");
    std::fs::create_dir_all(&spill).unwrap();
    let killed_wh = dir.path().join("wh-killed").display().to_string();
    let argv = spilling_run(&src, &killed_wh, &spill);
    let mut child = spawn(&argv, "warn");
    wait_until_spilled(&spill);
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    let left = day_folders(&spill);
    assert_eq!(left.len(), 1, "{left:?}");

    // The next run removes it before its first day; meanwhile, a run of
    // yet another warehouse leaves the next run's live folder alone.
    let next_wh = dir.path().join("wh-next").display().to_string();
    let next = spawn(&spilling_run(&src, &next_wh, &spill), "info");
    let started = Instant::now();
    let live_folder = loop {
        let folders = day_folders(&spill);
        if let Some(f) = folders.iter().find(|f| **f != left[0]) {
            break f.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the next run never started its day"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    assert!(
        !day_folders(&spill).contains(&left[0]),
        "the killed run's folder is still there"
    );
    let other_wh = dir.path().join("wh-other").display().to_string();
    let other: Vec<String> = spilling_run(&src, &other_wh, &spill);
    let refs: Vec<&str> = other.iter().map(String::as_str).collect();
    let out = common::run_bin(&refs);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after_other = day_folders(&spill);
    let (code, stderr, _) = common::wait_bounded(next, common::RUN_LIMIT);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("Removed a spill folder left by a killed run"),
        "{stderr}"
    );
    // Unless the next run had finished first, its folder was still there.
    assert!(
        after_other.is_empty() || after_other == vec![live_folder],
        "{after_other:?}"
    );
    assert!(day_folders(&spill).is_empty());
}

/// The warnings of a run that logs JSON and must succeed.
fn warnings_of_run(src: &Src, warehouse: &str, days: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec![
        "--log-format",
        "json",
        "run",
        "--source",
        src.url(),
        "--warehouse",
        warehouse,
    ];
    args.extend_from_slice(days);
    let out = common::run_bin(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["level"] == "WARN")
        .collect()
}

/// The warning whose message starts with `starts`.
fn warning<'w>(warnings: &'w [serde_json::Value], starts: &str) -> &'w serde_json::Value {
    warnings
        .iter()
        .find(|w| w["fields"]["message"].as_str().is_some_and(|m| m.starts_with(starts)))
        .unwrap_or_else(|| panic!("no warning {starts:?} among {warnings:#?}"))
}

/// Every column of the tables the extract reads, with a value of another
/// type (SQLite is dynamically typed): the run completes, and every such row
/// is read and rejected, never dropped, never a panic.
#[tokio::test]
async fn sqlite_values_of_the_wrong_type_in_every_column_are_rejected_not_dropped() {
    let dir = TempDir::new("wrong-types");
    let src = Src::sqlite(&dir);
    src.seed("3", "500");
    let noon = wh::micros("2026-03-07T12:00:00Z");
    let channel = "(SELECT min(id) FROM channels WHERE account_id = 1)";
    let conversation = "(SELECT min(id) FROM conversations WHERE account_id = 1)";
    // `id` columns are INTEGER PRIMARY KEY (the rowid), which SQLite itself
    // keeps integer. A sent_at or occurred_at of text or a blob sorts after
    // every number, so no day's range holds its row: the day it arrived
    // counts it. A real one is in its day's range.
    let message_columns: [(&str, String); 11] = [
        ("sent_at", "'noon'".into()),
        ("sent_at", "x'0102'".into()),
        ("sent_at", format!("{noon}.5")),
        ("account_id", "'one'".into()),
        ("conversation_id", "x'00ff'".into()),
        ("channel_id", "1.5".into()),
        ("contact_id", "'c'".into()),
        ("direction", "7".into()),
        ("sender_type", "x'01'".into()),
        ("agent_id", "'agent'".into()),
        ("created_at", "'yesterday'".into()),
    ];
    let valid = |column: &str, id: i64| -> String {
        match column {
            "id" => id.to_string(),
            "account_id" => "1".into(),
            "conversation_id" => conversation.into(),
            "channel_id" => channel.into(),
            "contact_id" => "5".into(),
            "direction" => "'outbound'".into(),
            "sender_type" => "'agent'".into(),
            "agent_id" => "3".into(),
            "sent_at" => noon.to_string(),
            _ => (noon + 1).to_string(),
        }
    };
    let columns = [
        "id",
        "account_id",
        "conversation_id",
        "channel_id",
        "contact_id",
        "direction",
        "sender_type",
        "agent_id",
        "sent_at",
        "created_at",
    ];
    let mut sql = String::new();
    for (n, (wrong_column, wrong)) in message_columns.iter().enumerate() {
        let id = 900_000_001 + n as i64;
        let values: Vec<String> = columns
            .iter()
            .map(|c| if c == wrong_column { wrong.clone() } else { valid(c, id) })
            .collect();
        sql.push_str(&format!(
            "INSERT INTO messages ({}) VALUES ({});\n",
            columns.join(", "),
            values.join(", ")
        ));
    }
    let event_columns: [(&str, String); 5] = [
        ("occurred_at", "'noon'".into()),
        ("occurred_at", "x'0102'".into()),
        ("conversation_id", "'conv'".into()),
        ("kind", "x'42'".into()),
        ("created_at", "x'00'".into()),
    ];
    for (n, (wrong_column, wrong)) in event_columns.iter().enumerate() {
        let id = 900_000_001 + n as i64;
        let value = |c: &str, v: String| if c == *wrong_column { wrong.clone() } else { v };
        sql.push_str(&format!(
            "INSERT INTO conversation_events (id, conversation_id, kind, agent_id, occurred_at, created_at) VALUES ({}, {}, {}, NULL, {}, {});\n",
            value("id", id.to_string()),
            value("conversation_id", conversation.into()),
            value("kind", "'resolved'".into()),
            value("occurred_at", noon.to_string()),
            value("created_at", (noon + 1).to_string()),
        ));
    }
    // Events of conversations whose own columns have the wrong type.
    for (n, (account, channel)) in [("'acct'", channel.to_string()), ("1", "x'00'".to_string())]
        .iter()
        .enumerate()
    {
        let conversation = 900_000_001 + n as i64;
        let event = 900_000_101 + n as i64;
        sql.push_str(&format!(
            "INSERT INTO conversations (id, account_id, channel_id, contact_id, created_at) VALUES ({conversation}, {account}, {channel}, 5, {noon});
             INSERT INTO conversation_events (id, conversation_id, kind, agent_id, occurred_at, created_at) VALUES ({event}, {conversation}, 'resolved', NULL, {noon}, {});\n",
            noon + 1
        ));
    }
    src.exec(&sql).await;
    let warehouse = dir.path().join("wh").display().to_string();
    common::run_ok(&["run", "--source", src.url(), "--warehouse", &warehouse, "--date", DAY]);

    let wh = wh::open(&warehouse, &[]);
    let rejects = wh::batches(&wh, wh::day(DAY), Table::Rejects).await;
    let mut rejected = std::collections::BTreeMap::<String, i64>::new();
    for ((table, reason), rows) in wh::strings(&rejects, "source_table")
        .into_iter()
        .zip(wh::strings(&rejects, "reason"))
        .zip(wh::ints(&rejects, "rows"))
    {
        *rejected
            .entry(format!("{}/{}", table.unwrap(), reason.unwrap()))
            .or_default() += rows.unwrap();
    }
    // Every wrong-typed row is rejected as bad_value, but the integer in the
    // TEXT column `direction`, which SQLite stores as the text "7".
    let expected: std::collections::BTreeMap<String, i64> = [
        ("messages/bad_value", message_columns.len() as i64 - 1),
        ("messages/unknown_direction", 1),
        ("conversation_events/bad_value", event_columns.len() as i64 + 2),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(rejected, expected);
}

/// Accounts whose time_zone is not an IANA name, missing, or of another
/// type: the run completes and names them, and their rollups and default
/// reports are in UTC (the rollups answering what the base grain does), not
/// an error about a zone the asker never gave.
#[tokio::test]
async fn accounts_without_a_valid_zone_are_named_and_kept_in_utc() {
    let dir = TempDir::new("bad-zones");
    let src = Src::sqlite(&dir);
    src.seed("4", "500");
    src.exec(
        "UPDATE accounts SET time_zone = 'Mars/Olympus' WHERE id = 1;
         UPDATE accounts SET time_zone = NULL WHERE id = 2;
         UPDATE accounts SET time_zone = x'00ff' WHERE id = 3;",
    )
    .await;
    let warehouse = dir.path().join("wh").display().to_string();
    let warnings = warnings_of_run(&src, &warehouse, &["--from", "2026-03-06", "--to", "2026-03-09"]);
    let warning = warning(&warnings, "Accounts whose time_zone");
    assert_eq!(warning["level"], "WARN", "{warning}");
    assert_eq!(warning["fields"]["accounts"], 3, "{warning}");
    let first = warning["fields"]["first"].as_str().unwrap();
    assert!(
        first.contains("(1, Some(\"Mars/Olympus\"))") && first.contains("(2, None)"),
        "{first}"
    );

    for account in ["1", "2", "3"] {
        let report = |base_grain: bool| {
            let mut args = vec![
                "report",
                "--warehouse",
                &warehouse,
                "--account",
                account,
                "--from",
                "2026-03-07",
                "--to",
                "2026-03-08",
                "--format",
                "json",
                // Not UMC: March is published from its 6th only.
                "--metric",
                "active_agents",
                "--metric",
                "resolved_conversations",
                "--metric",
                "proactive_messages",
            ];
            if base_grain {
                args.push("--base-grain");
            }
            let v: serde_json::Value = serde_json::from_str(&common::run_ok(&args)).unwrap();
            v
        };
        let (auto, base) = (report(false), report(true));
        assert_eq!(auto["time_zone"], "UTC", "account {account}");
        assert_eq!(auto["answered_from"], "rollups", "account {account}");
        assert!(
            auto["rows"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["value"].as_u64() > Some(0)),
            "account {account}: {auto}"
        );
        assert_eq!(auto["rows"], base["rows"], "account {account}");
        assert_eq!(auto["totals"], base["totals"], "account {account}");
    }
}

/// PostgreSQL's `infinity` and `-infinity`, and a finite instant past
/// chrono's years, in every timestamptz the extract reads (dimensions,
/// messages, a conversation's history, late rows): both runs complete, where
/// chrono's decoding panicked. They are the two ends of time: a channel
/// connected until 'infinity' counts, one connected from 'infinity' or
/// disconnected since '-infinity' does not, and DuckDB reads them back as its
/// own infinities.
#[tokio::test]
async fn postgres_infinite_instants_are_the_ends_of_time_not_a_panic() {
    let dir = TempDir::new("pg-infinity");
    let src = Src::postgres("infinity").await;
    src.seed("3", "500");
    let channel = |n: u32| format!("(SELECT id FROM channels WHERE account_id = 1 ORDER BY id OFFSET {n} LIMIT 1)");
    let (never, gone, always, far) = (channel(0), channel(1), channel(2), channel(3));
    let conversation = "(SELECT min(id) FROM conversations WHERE account_id = 1)";
    let resolved_on_day = "(SELECT e.conversation_id FROM conversation_events e
        JOIN conversations c ON c.id = e.conversation_id
        WHERE c.account_id = 1 AND e.kind = 'resolved'
          AND e.occurred_at >= '2026-03-07T00:00:00Z' AND e.occurred_at < '2026-03-08T00:00:00Z'
        ORDER BY e.id LIMIT 1)";
    let message = |id: i64, conversation: &str, sent: &str, created: &str| {
        format!(
            "INSERT INTO messages (id, account_id, conversation_id, channel_id, contact_id, direction, sender_type, agent_id, sent_at, created_at)
             VALUES ({id}, 1, {conversation}, {always}, 5, 'inbound', 'contact', NULL, '{sent}', '{created}');\n"
        )
    };
    let ids: Vec<i64> = {
        let pg = src.url().to_string();
        let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&pg).await.unwrap();
        let mut ids = Vec::new();
        for sql in [&never, &gone, &always, &far] {
            ids.push(
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT {sql}")))
                    .fetch_one(&mut c)
                    .await
                    .unwrap(),
            );
        }
        ids
    };
    let mut sql = format!(
        "UPDATE accounts SET created_at = 'infinity' WHERE id = 1;
         UPDATE channels SET environment = 'production', connected_at = 'infinity' WHERE id = {never};
         UPDATE channels SET environment = 'production', disconnected_at = '-infinity' WHERE id = {gone};
         UPDATE channels SET environment = 'production', connected_at = '-infinity', disconnected_at = 'infinity' WHERE id = {always};
         UPDATE channels SET environment = 'production', connected_at = '270000-01-01T00:00:00Z' WHERE id = {far};\n"
    );
    // Reached the database at '-infinity', before it was sent: a reject.
    sql.push_str(&message(900_000_001, conversation, "2026-03-07T12:00:00Z", "-infinity"));
    // Reached it at 'infinity': read.
    sql.push_str(&message(900_000_002, conversation, "2026-03-07T12:00:00Z", "infinity"));
    // The first message of a conversation resolved on the day, at '-infinity'.
    sql.push_str(&message(
        900_000_003,
        resolved_on_day,
        "-infinity",
        "2026-03-06T00:00:00Z",
    ));
    src.exec(&sql).await;
    let warehouse = dir.path().join("wh").display().to_string();
    src.run_into(&warehouse, &["--date", DAY]);
    let wh = wh::open(&warehouse, &[]);
    let rejects = wh::rejects_by_reason(&wh, wh::day(DAY)).await;
    assert_eq!(rejects.get("future_timestamp"), Some(&1), "{rejects:?}");

    // Rows that reach the database after that run, on days no run can name:
    // the next run's late-data query meets them.
    let mut late = message(900_000_004, conversation, "-infinity", "2026-06-01T00:00:00Z");
    late.push_str(&message(
        900_000_005,
        conversation,
        "270000-06-01T00:00:00Z",
        "2026-06-01T00:00:00Z",
    ));
    late.push_str(&format!(
        "INSERT INTO conversation_events (id, conversation_id, kind, agent_id, occurred_at, created_at)
         VALUES (900000001, {conversation}, 'resolved', NULL, 'infinity', '2026-06-01T00:00:00Z');\n"
    ));
    src.exec(&late).await;
    src.run_into(&warehouse, &["--date", "2026-03-08"]);

    let counted = |base_grain: bool| {
        let mut args = vec![
            "report",
            "--warehouse",
            &warehouse,
            "--account",
            "1",
            "--from",
            DAY,
            "--to",
            DAY,
            "--time-zone",
            "UTC",
            "--metric",
            "channels",
            "--group-by",
            "channel",
            "--format",
            "json",
        ];
        if base_grain {
            args.push("--base-grain");
        }
        let v: serde_json::Value = serde_json::from_str(&common::run_ok(&args)).unwrap();
        let groups: std::collections::BTreeSet<i64> = v["totals"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["value"].as_i64() > Some(0))
            .filter_map(|t| t["group"].as_str().map(|g| g.parse().unwrap()))
            .collect();
        groups
    };
    let (base, rollups) = (counted(true), counted(false));
    assert_eq!(base, rollups);
    assert!(base.contains(&ids[2]), "connected from -infinity to infinity: {base:?}");
    for (what, id) in [
        ("connected at infinity", ids[0]),
        ("disconnected at -infinity", ids[1]),
        ("connected in 270000", ids[3]),
    ] {
        assert!(!base.contains(&id), "{what}: {base:?}");
    }

    let script = format!(
        "import duckdb, json\n\
         rows = duckdb.sql(\"SELECT channel_id, connected_at::VARCHAR, disconnected_at::VARCHAR FROM read_parquet('{warehouse}/channels/dt={DAY}/*.parquet') WHERE channel_id IN ({}, {}, {}) ORDER BY channel_id\").fetchall()\n\
         print(json.dumps(rows))\n",
        ids[0], ids[1], ids[2]
    );
    let got = common::python_json(&script);
    let at = |id: i64| got.as_array().unwrap().iter().find(|r| r[0] == id).cloned().unwrap();
    assert_eq!(at(ids[0])[1], "infinity", "{got}");
    assert_eq!(at(ids[1])[2], "-infinity", "{got}");
    assert_eq!(
        (at(ids[2])[1].clone(), at(ids[2])[2].clone()),
        ("-infinity".into(), "infinity".into()),
        "{got}"
    );

    // The API names them too: a null disconnected_at would say "connected".
    let server = crate::serve::Server::start(&warehouse, &[]);
    let body = crate::serve::get(&server, "/v1/accounts/1/channels", &crate::serve::token("1")).2;
    let channels: serde_json::Value = serde_json::from_str(&body).unwrap();
    let channel = |id: i64| {
        channels["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(channel(ids[0])["connected_at"], "infinity", "{body}");
    assert_eq!(channel(ids[1])["disconnected_at"], "-infinity", "{body}");
    assert_eq!(channel(ids[2])["connected_at"], "-infinity", "{body}");
    assert_eq!(channel(ids[2])["disconnected_at"], "infinity", "{body}");
    // Past chrono's last year (262143): no date can say it.
    assert_eq!(channel(ids[3])["connected_at"], "infinity", "{body}");
}

/// Every row reached the database at '-infinity', then one row arrives: the
/// late-data watermark never becomes '-infinity', which the next run could
/// not bind as the previous watermark.
#[tokio::test]
async fn a_postgres_watermark_is_never_minus_infinity() {
    let dir = TempDir::new("pg-minus-infinity");
    let src = Src::postgres("minus_infinity").await;
    src.seed("1", "100");
    src.exec(
        "UPDATE messages SET created_at = '-infinity';
         UPDATE conversation_events SET created_at = '-infinity';",
    )
    .await;
    let warehouse = dir.path().join("wh").display().to_string();
    src.run_into(&warehouse, &["--date", DAY]);
    src.exec(
        "INSERT INTO messages (id, account_id, conversation_id, channel_id, contact_id, direction, sender_type, agent_id, sent_at, created_at)
         SELECT 900000001, account_id, conversation_id, channel_id, contact_id, direction, sender_type, agent_id,
                '2026-03-07T12:00:00Z', '2026-06-01T00:00:00Z'
         FROM messages ORDER BY id LIMIT 1;",
    )
    .await;
    src.run_into(&warehouse, &["--date", "2026-03-08"]);
}

/// A PostgreSQL source without primary keys: a channel id on two rows of two
/// accounts, an account id on two rows, and rows without an id. The run
/// keeps the least row of each id whatever order the table returns (the
/// duplicate is inserted last, where taking the last row read kept it), and
/// warns of each kind, so none is passed over in silence.
#[tokio::test]
async fn duplicated_and_unidentified_dimension_rows_are_named_and_resolved_the_same_way() {
    let dir = TempDir::new("pg-dup-dims");
    let src = Src::postgres("dup_dims").await;
    src.seed("3", "500");
    let channel = "(SELECT min(id) FROM channels WHERE account_id = 1)";
    src.exec(&format!(
        "ALTER TABLE channels DROP CONSTRAINT channels_pkey;
         ALTER TABLE accounts DROP CONSTRAINT accounts_pkey;
         ALTER TABLE channels ALTER COLUMN id DROP NOT NULL;
         ALTER TABLE accounts ALTER COLUMN id DROP NOT NULL;
         INSERT INTO channels SELECT id, 2, 'line', 'copy in account 2', environment, connected_at, disconnected_at
           FROM channels WHERE id = {channel};
         INSERT INTO accounts SELECT id, 'copy', 'Asia/Tokyo', created_at FROM accounts WHERE id = 1;
         INSERT INTO channels VALUES (NULL, 1, 'sms', 'no id', 'production', now(), NULL);
         INSERT INTO channels VALUES (990001, NULL, 'sms', 'no account', 'production', now(), NULL);
         INSERT INTO accounts VALUES (NULL, 'no id', 'UTC', now());"
    ))
    .await;
    let warehouse = dir.path().join("wh").display().to_string();
    let warnings = warnings_of_run(&src, &warehouse, &["--date", DAY]);
    let warning = |starts: &str| warning(&warnings, starts);
    assert_eq!(
        warning("Channels whose id is on more than one row")["fields"]["channels"],
        1
    );
    assert_eq!(
        warning("Accounts whose id is on more than one row")["fields"]["accounts"],
        1
    );
    assert_eq!(warning("Channel rows without an integer id")["fields"]["rows"], 2);
    assert_eq!(warning("Account rows without an integer id")["fields"]["rows"], 1);

    // The channel stays account 1's: its messages are counted, not rejected.
    let wh = wh::open(&warehouse, &[]);
    let rejects = wh::rejects_by_reason(&wh, wh::day(DAY)).await;
    assert_eq!(rejects.get("channel_account_mismatch"), None, "{rejects:?}");
    let accounts = wh::batches(&wh, wh::day(DAY), Table::Accounts).await;
    let names: Vec<_> = wh::ints(&accounts, "account_id")
        .into_iter()
        .zip(wh::strings(&accounts, "name"))
        .collect();
    let account_1: Vec<_> = names.iter().filter(|(id, _)| *id == Some(1)).collect();
    assert_eq!(account_1.len(), 1, "{names:?}");
    assert_ne!(account_1[0].1.as_deref(), Some("copy"), "{names:?}");
}

/// A PostgreSQL source whose column types differ from the reference schema
/// the way real ones do (integer ids, enums, char(n), varchar, timestamp
/// without zone): the report equals that of the same rows in the reference
/// schema. Before the extract's casts, every row was a bad_value reject (an
/// integer id is 4 bytes), and an enum direction failed the run.
#[tokio::test]
async fn a_postgres_source_of_other_column_types_reads_as_the_reference_schema() {
    let dir = TempDir::new("pg-types");
    let (reference, variant) = (Src::postgres("types_ref").await, Src::postgres("types_variant").await);
    reference.seed("2", "1000");
    variant.seed("2", "1000");
    variant
        .exec(
            "CREATE TYPE env AS ENUM ('production', 'test', 'development');
             ALTER TABLE channels ALTER COLUMN environment TYPE env USING environment::env;
             CREATE TYPE dir AS ENUM ('inbound', 'outbound');
             ALTER TABLE messages ALTER COLUMN direction TYPE dir USING direction::dir;
             ALTER TABLE messages ALTER COLUMN sender_type TYPE char(16);
             ALTER TABLE conversation_events ALTER COLUMN kind TYPE varchar(20);
             ALTER TABLE channels ALTER COLUMN id TYPE integer, ALTER COLUMN account_id TYPE integer,
                 ALTER COLUMN platform TYPE varchar(40),
                 ALTER COLUMN connected_at TYPE timestamp USING connected_at AT TIME ZONE 'UTC',
                 ALTER COLUMN disconnected_at TYPE timestamp USING disconnected_at AT TIME ZONE 'UTC';
             ALTER TABLE accounts ALTER COLUMN id TYPE integer, ALTER COLUMN time_zone TYPE varchar(64);
             ALTER TABLE messages ALTER COLUMN channel_id TYPE integer, ALTER COLUMN agent_id TYPE integer;
             ALTER TABLE conversations ALTER COLUMN channel_id TYPE integer;
             ALTER TABLE conversation_events ALTER COLUMN id TYPE integer;",
        )
        .await;
    let report = |src: &Src, name: &str| {
        let warehouse = dir.path().join(name).display().to_string();
        src.run_into(&warehouse, &["--from", "2026-03-06", "--to", "2026-03-09"]);
        ["1", "2"].map(|account| {
            common::run_ok(&[
                "report",
                "--warehouse",
                &warehouse,
                "--account",
                account,
                "--from",
                "2026-03-07",
                "--to",
                "2026-03-08",
                "--time-zone",
                "UTC",
                "--interval",
                "hourly",
                "--group-by",
                "channel",
                "--format",
                "json",
                // Not UMC: March is published from its 6th only.
                "--metric",
                "active_agents,resolved_conversations,proactive_messages,channels",
            ])
        })
    };
    let (expected, got) = (report(&reference, "reference"), report(&variant, "variant"));
    assert!(expected[0].contains("\"resolved_conversations\""), "{}", expected[0]);
    assert_eq!(got, expected);
}
