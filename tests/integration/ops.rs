//! Operating `run`: the exit-code contract (0, 1, 2, 143), SIGTERM, failing
//! fast on unreachable or frozen services, a read-only source, progress
//! lines, and metrics pushed to a real Pushgateway.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use account_usage::warehouse::paths::Table;

use crate::common::{self, Moto, PgCluster, Pushgateway, TempDir};
use crate::run::Src;
use crate::wh;

const FROM: &str = "2026-03-06";
const TO: &str = "2026-03-09";

/// Runs the binary with the environment given; returns (exit code, stderr, time taken).
fn timed(args: &[&str], env: &[(String, String)]) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    let out = common::run_bin_env(args, env);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
        started.elapsed(),
    )
}

/// The last line of stderr (logs go before it), asserted to be the only
/// `error:` line.
fn error_line(stderr: &str) -> &str {
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "expected one error line: {stderr}");
    errors[0]
}

fn spawn_run(args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
    Command::new(common::BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn account-usage")
}

fn wait_for(path: &Path, limit: Duration) {
    let started = Instant::now();
    while !path.exists() {
        assert!(
            started.elapsed() < limit,
            "{} did not appear within {limit:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn bad_configuration_exits_2_with_one_line_that_names_it() {
    // A missing SQLite source is named, and neither it nor its folder is created.
    let dir = TempDir::new("ops-missing");
    let missing = dir.path().join("no/such/source.db");
    let source = format!("sqlite://{}", missing.display());
    let wh = dir.path().join("wh").display().to_string();
    let line = common::assert_usage_error(&["run", "--source", &source, "--warehouse", &wh, "--date", FROM]);
    assert!(
        line.contains(&missing.display().to_string()) && line.contains("does not exist"),
        "{line}"
    );
    assert!(!dir.path().join("no").exists(), "run created the source's folder");

    // A folder is no source, for a run or a seed.
    let folder = format!("sqlite://{}", dir.path().display());
    for args in [
        vec!["run", "--source", &folder, "--warehouse", &wh, "--date", FROM],
        vec!["seed", "--source", &folder, "--days", "1"],
    ] {
        let line = common::assert_usage_error(&args);
        assert!(line.contains("is a folder, not a database file"), "{line}");
    }

    // PostgreSQL's own error: its message and code, not the line of the
    // server's C source that sqlx appends.
    let absent = common::server().absent_database("no_such_database");
    let out = common::run_bin(&["run", "--source", &absent, "--warehouse", &wh, "--date", FROM]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_default();
    assert!(
        line.contains("database \"no_such_database\" does not exist (code 3D000)") && !line.contains(" at line "),
        "{stderr}"
    );

    // clap's own errors keep the argument's name on their one line.
    let line = common::assert_usage_error(&["run"]);
    assert!(line.contains("--source"), "{line}");
    let line = common::assert_usage_error(&["run", "--source", &source, "--date", FROM, "--from", FROM, "--to", TO]);
    assert!(line.contains("--date") && line.contains("--from"), "{line}");
    let line = common::assert_usage_error(&["run", "--source", &source, "--statement-timeout", "soon"]);
    assert!(line.contains("--statement-timeout") && line.contains("soon"), "{line}");
    let line = common::assert_usage_error(&["run", "--source", &source, "--pushgateway-url", "gw:9091"]);
    assert!(line.contains("--pushgateway-url"), "{line}");
    // A duration so long it would overflow a deadline (this one panicked,
    // exit 101, before durations had a bound), for every command that
    // takes one.
    let huge = "5124095576030431h";
    for args in [
        vec!["run", "--source", &source, "--connect-timeout", huge],
        vec!["serve", "--no-auth", "--request-timeout", huge],
        vec!["token", "--account", "1", "--ttl", huge],
    ] {
        let line = common::assert_usage_error(&args);
        assert!(line.contains("at most 8784h"), "{args:?}: {line}");
    }

    // A UTC day that has not ended (today, or later) is never published,
    // alone or at the end of a backfill; nothing is created.
    let today = chrono::Utc::now().date_naive();
    let later = (today + chrono::Days::new(400)).to_string();
    let wh = dir.path().join("wh-never").display().to_string();
    for days in [
        vec!["--date".to_string(), today.to_string()],
        vec!["--date".to_string(), later.clone()],
        vec![
            "--from".to_string(),
            FROM.to_string(),
            "--to".to_string(),
            later.clone(),
        ],
    ] {
        let mut args = vec!["run", "--source", &source, "--warehouse", &wh];
        args.extend(days.iter().map(String::as_str));
        let line = common::assert_usage_error(&args);
        assert!(line.contains("has not ended yet"), "{line}");
    }
    assert!(
        !dir.path().join("wh-never").exists(),
        "a refused run created the warehouse"
    );
}

/// `run` of one day and `report` of account 1, both against `warehouse`.
fn run_and_report<'a>(source: &'a str, warehouse: &'a str) -> [Vec<&'a str>; 2] {
    [
        vec!["run", "--source", source, "--warehouse", warehouse, "--date", FROM],
        vec![
            "report",
            "--warehouse",
            warehouse,
            "--account",
            "1",
            "--from",
            FROM,
            "--to",
            TO,
        ],
    ]
}

#[test]
fn a_missing_bucket_or_refused_credentials_exit_2_naming_the_bucket() {
    let dir = TempDir::new("ops-bucket");
    let src = Src::sqlite(&dir);
    src.seed("2", "300");
    let moto = Moto::start("present");
    for args in run_and_report(src.url(), "s3://absent/usage") {
        let (code, stderr, _) = timed(&args, &moto.env());
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        let line = error_line(&stderr);
        assert!(
            line.contains("s3://absent/usage") && line.contains("does not exist"),
            "{line}"
        );
        assert!(!line.contains("<?xml"), "the store's XML leaked: {line}");
    }

    // A moto that checks credentials refuses unknown ones with 403.
    let strict = Moto::start_with_env(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]);
    let mut env = strict.env();
    for (k, v) in env.iter_mut() {
        if k == "AWS_SECRET_ACCESS_KEY" {
            *v = "not-the-secret".into();
        }
    }
    // The report checks access while it loads: the check's error is told.
    for args in run_and_report(src.url(), "s3://locked/usage") {
        let (code, stderr, _) = timed(&args, &env);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        let line = error_line(&stderr);
        assert!(
            line.contains("s3://locked/usage") && line.contains("refused the credentials"),
            "{line}"
        );
        assert!(!stderr.contains("not-the-secret"), "the secret leaked: {stderr}");
    }
}

#[test]
fn unreachable_services_fail_fast_with_exit_1_naming_the_host() {
    let dir = TempDir::new("ops-unreachable");
    let wh = dir.path().join("wh").display().to_string();
    let closed = common::free_port();

    // A refused connection and an unknown host: well under 5 s, one line with the host.
    for (url, host) in [
        (
            format!("postgres://etl:pw@127.0.0.1:{closed}/ops"),
            format!("127.0.0.1:{closed}"),
        ),
        (
            "postgres://etl:pw@no-such-host.invalid/ops".to_string(),
            "no-such-host.invalid".to_string(),
        ),
    ] {
        let (code, stderr, took) = timed(&["run", "--source", &url, "--warehouse", &wh, "--date", FROM], &[]);
        assert_eq!(code, Some(1), "{url}: {stderr}");
        assert!(took < Duration::from_secs(5), "{url} took {took:?}");
        let line = error_line(&stderr);
        assert!(line.contains(&host) && !line.contains("pool timed out"), "{line}");
        assert!(!stderr.contains(":pw@"), "password leaked: {stderr}");
    }

    // An object store that refuses connections: exit 1 after the configured retries.
    let src = Src::sqlite(&dir);
    src.seed("2", "300");
    let env: Vec<(String, String)> = [
        ("AWS_ENDPOINT", format!("http://127.0.0.1:{closed}")),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let (code, stderr, took) = timed(
        &[
            "run",
            "--source",
            src.url(),
            "--warehouse",
            "s3://bucket/usage",
            "--date",
            FROM,
            "--store-max-retries",
            "2",
        ],
        &env,
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let line = error_line(&stderr);
    assert!(
        line.contains("s3://bucket/usage is unreachable") && line.contains("after 2 retries"),
        "{line}"
    );
}

#[tokio::test]
async fn a_database_that_goes_away_mid_run_fails_with_exit_1_never_a_hang() {
    let cluster = PgCluster::start();
    let url = common::new_database_on(&cluster.admin_url, "gone").await;
    let src = Src::Pg(url.clone());
    src.seed("3", "30000");
    let dir = TempDir::new("ops-gone");
    let run_args = |wh: &str| {
        vec![
            "run".to_string(),
            "--source".into(),
            url.clone(),
            "--warehouse".into(),
            wh.to_string(),
            "--from".into(),
            FROM.into(),
            "--to".into(),
            TO.into(),
            "--statement-timeout".into(),
            "3s".into(),
            "--connect-timeout".into(),
            "3s".into(),
        ]
    };

    // Frozen: connections stay open but nothing answers. The client-side
    // statement timeout must end the run.
    let wh = dir.path().join("wh-frozen");
    let args = run_args(&wh.display().to_string());
    let child = spawn_run(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    wait_for(&wh.join("_manifests/dt=2026-03-06/s0of1.json"), Duration::from_secs(60));
    cluster.signal_all("STOP");
    // Thawed however this ends, so the cluster can be stopped and removed.
    struct Thaw<'a>(&'a PgCluster);
    impl Drop for Thaw<'_> {
        fn drop(&mut self) {
            self.0.signal_all("CONT");
        }
    }
    let thaw = Thaw(&cluster);
    let (code, stderr, took) = common::wait_bounded(child, Duration::from_secs(30));
    drop(thaw);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        took < Duration::from_secs(3 + 4),
        "a frozen server held the run {took:?}: {stderr}"
    );
    let line = error_line(&stderr);
    assert!(
        line.contains("--statement-timeout") || line.contains("--connect-timeout"),
        "{line}"
    );

    // Stopped: every connection is cut.
    let wh = dir.path().join("wh-stopped");
    let args = run_args(&wh.display().to_string());
    let child = spawn_run(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    wait_for(&wh.join("_manifests/dt=2026-03-06/s0of1.json"), Duration::from_secs(60));
    cluster.stop_immediate();
    let (code, stderr, took) = common::wait_bounded(child, Duration::from_secs(30));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        took < Duration::from_secs(3 + 4),
        "a stopped server held the run {took:?}"
    );
    error_line(&stderr);
}

#[tokio::test]
async fn run_never_writes_to_a_sqlite_source() {
    let dir = TempDir::new("ops-readonly");
    let src = Src::sqlite(&dir);
    src.seed("3", "2000");
    let db = dir.path().join("source.db");
    {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(src.url()).await.unwrap();
        sqlx::raw_sql("PRAGMA journal_mode = DELETE")
            .execute(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();
    }
    let before = std::fs::read(&db).unwrap();
    let modified = std::fs::metadata(&db).unwrap().modified().unwrap();
    let listing = |d: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        names
    };
    let files_before = listing(dir.path());
    common::run_ok(&[
        "run",
        "--source",
        src.url(),
        "--warehouse",
        &dir.path().join("wh").display().to_string(),
        "--from",
        FROM,
        "--to",
        TO,
    ]);
    assert!(std::fs::read(&db).unwrap() == before, "the source's bytes changed");
    assert_eq!(std::fs::metadata(&db).unwrap().modified().unwrap(), modified);
    let mut files_after = listing(dir.path());
    files_after.retain(|f| f != "wh");
    assert_eq!(files_after, files_before, "run left files beside the source");
    use sqlx::Connection;
    let mut c = sqlx::SqliteConnection::connect(&format!("{}?mode=ro", src.url()))
        .await
        .unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(mode, "delete");
}

/// Every file under `root` with its modification time.
fn files_with_mtimes(root: &Path) -> BTreeMap<String, SystemTime> {
    common::files_under(root)
        .into_iter()
        .filter_map(|p| {
            let modified = std::fs::metadata(&p).ok()?.modified().ok()?;
            Some((p.strip_prefix(root).unwrap().display().to_string(), modified))
        })
        .collect()
}

// Two workers: the reader runs while the test body blocks on the child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_run_within_10s_with_143_and_nothing_after_it() {
    let dir = TempDir::new("ops-term");
    let src = Src::sqlite(&dir);
    src.seed("6", "30000");
    let warehouse = dir.path().join("wh");
    let warehouse_url = warehouse.display().to_string();
    let args = [
        "run",
        "--source",
        src.url(),
        "--warehouse",
        &warehouse_url,
        "--from",
        FROM,
        "--to",
        TO,
    ];
    common::run_ok(&args);
    // The rounds rerun the same days, which costs less than the first run
    // (unchanged rollup parts are not written): time a rerun, the fastest of
    // three, so that a slow one does not put the signals past most runs' end.
    let clean = (0..3)
        .map(|_| {
            let started = Instant::now();
            common::run_ok(&args);
            started.elapsed()
        })
        .min()
        .expect("three reruns");
    let wh = wh::open(&warehouse_url, &[]);
    let days = wh::days(FROM, TO);
    let reference = wh::snapshot(&wh, &days).await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = wh::spawn_day_reader(&warehouse_url, &[], &reference, stop.clone());
    let mut rng = account_usage::seed::rng::Rng::new(common::test_seed(143));
    // Rounds go on until ten were stopped mid-run. A round that finished
    // before its signal (this machine's speed swings within a test) still
    // checks everything below, and makes the later signals come earlier.
    let mut scale = clean;
    let mut stopped_mid_run = 0;
    let mut round = 0;
    while stopped_mid_run < 10 {
        assert!(
            round < 20,
            "only {stopped_mid_run} of {round} rounds were stopped mid-run"
        );
        round += 1;
        let child = spawn_run(&args, &[]);
        // Anywhere from start-up to late in the run (its last days, the
        // rollups), as a clean run times it.
        let offset = scale.mul_f64(rng.range(5, 80) as f64 / 100.0);
        std::thread::sleep(offset);
        let signalled = SystemTime::now();
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let (code, stderr, took) = common::wait_bounded(child, Duration::from_secs(10));
        assert!(took < Duration::from_secs(10), "round {round}: took {took:?} to stop");
        match code {
            Some(143) => {
                stopped_mid_run += 1;
                assert!(error_line(&stderr).contains("stopped by a signal"), "{stderr}");
            }
            // The run may have finished before the signal arrived.
            Some(0) => scale = scale.mul_f64(0.7),
            other => panic!("round {round} ({offset:?}): exit {other:?}: {stderr}"),
        }
        // Nothing was written after the signal (an operation already under
        // way may land a moment later), and no unfinished upload is left.
        for (file, at) in files_with_mtimes(&warehouse) {
            let late = at.duration_since(signalled).unwrap_or_default();
            assert!(
                late < Duration::from_millis(300),
                "round {round}: {file} written {late:?} after SIGTERM"
            );
            assert!(
                !file.contains('#'),
                "round {round}: unfinished upload {file} left behind"
            );
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.await.expect("the reader never saw a partial day") > 0);

    // A stopped run leaves its dirty marker, as a failure does; the rerun
    // gives a clean run's tables and clears every marker.
    assert!(
        !wh.list("_rollups/dirty").await.unwrap().is_empty(),
        "no dirty marker left by a stopped run"
    );
    common::run_ok(&args);
    assert_eq!(wh::snapshot(&wh, &days).await, reference);
    assert!(wh.list("_rollups/dirty").await.unwrap().is_empty());
}

/// A run stopped while it waits for a lease takes its own lease away with
/// it: left behind, it would hold the runs it waits for off until it
/// expired. The holder here is a younger run's live lease (written by the
/// test), so the run keeps its lease while it waits (rule 4 of `job::lease`).
#[test]
fn sigterm_while_waiting_for_a_lease_leaves_no_lease_of_its_own() {
    use account_usage::job::lease::LeaseRecord;
    use account_usage::warehouse::paths::{LeaseKey, RunId};

    let dir = TempDir::new("ops-term-lease");
    let src = Src::sqlite(&dir);
    src.seed("2", "300");
    let warehouse = dir.path().join("wh");
    let in_an_hour = chrono::Utc::now() + chrono::Duration::hours(1);
    let holder = LeaseRecord {
        run_id: RunId::new(in_an_hour, 7),
        shard: "s0of1".into(),
        accounts: None,
        days: vec![],
        host: "elsewhere".into(),
        pid: 1,
        expires_at: in_an_hour.timestamp_micros(),
    };
    let holder_key = LeaseKey {
        run_id: holder.run_id.clone(),
    }
    .relative();
    std::fs::create_dir_all(warehouse.join("_leases")).unwrap();
    std::fs::write(warehouse.join(&holder_key), serde_json::to_vec(&holder).unwrap()).unwrap();
    let leases = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(warehouse.join("_leases"))
            .unwrap()
            .map(|e| format!("_leases/{}", e.unwrap().file_name().to_string_lossy()))
            .filter(|name| name.ends_with(".json"))
            .collect();
        names.sort();
        names
    };

    let warehouse_url = warehouse.display().to_string();
    let args = [
        "run",
        "--source",
        src.url(),
        "--warehouse",
        &warehouse_url,
        "--date",
        FROM,
    ];
    let child = spawn_run(&args, &[("RUST_LOG", "info")]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while leases().len() < 2 {
        assert!(Instant::now() < deadline, "the run never wrote its lease");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Past its first listing, into the wait.
    std::thread::sleep(Duration::from_millis(500));
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let (code, stderr, took) = common::wait_bounded(child, Duration::from_secs(10));
    assert!(took < Duration::from_secs(10), "took {took:?} to stop");
    assert_eq!(code, Some(143), "{stderr}");
    assert!(stderr.contains("Waiting for overlapping runs"), "{stderr}");
    assert_eq!(leases(), vec![holder_key], "the stopped run left its lease: {stderr}");
}

#[test]
fn a_backfill_without_a_tty_logs_one_progress_line_per_day() {
    let dir = TempDir::new("ops-progress");
    let src = Src::sqlite(&dir);
    src.seed("3", "800");
    let wh = dir.path().join("wh").display().to_string();
    let out = common::run_bin_env(
        &[
            "--log-format",
            "json",
            "run",
            "--source",
            src.url(),
            "--warehouse",
            &wh,
            "--from",
            FROM,
            "--to",
            TO,
        ],
        &[("RUST_LOG".into(), "info".into())],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let with_message = |m: &str| -> Vec<&serde_json::Map<String, serde_json::Value>> {
        lines
            .iter()
            .filter(|l| l["fields"]["message"] == m)
            .map(|l| l["fields"].as_object().unwrap())
            .collect()
    };
    let days = with_message("Day published.");
    assert_eq!(days.len(), 4, "one progress line per day");
    let mut seen = Vec::new();
    for (i, f) in days.iter().enumerate() {
        for field in [
            "days_done",
            "days_total",
            "day",
            "late",
            "messages",
            "rejects",
            "messages_per_second",
            "eta_seconds",
            "elapsed_ms",
        ] {
            assert!(f.contains_key(field), "no {field} in {f:?}");
        }
        assert_eq!(f["days_done"], i as u64 + 1);
        assert_eq!(f["days_total"], 4);
        assert!(f["messages_per_second"].as_f64().unwrap() > 0.0, "{f:?}");
        seen.push(f["day"].as_str().unwrap().to_string());
    }
    seen.sort();
    assert_eq!(seen, ["2026-03-06", "2026-03-07", "2026-03-08", "2026-03-09"]);
    assert_eq!(days.last().unwrap()["eta_seconds"], 0.0);

    let start = with_message("Run started.");
    assert_eq!(start.len(), 1);
    for field in [
        "run_id",
        "source",
        "warehouse",
        "shard",
        "days",
        "late_days",
        "catch_up_days",
        "accounts",
        "source_settings",
        "store_settings",
        "pushgateway",
    ] {
        assert!(start[0].contains_key(field), "no {field} in the start line");
    }
    let end = with_message("Run finished.");
    assert_eq!(end.len(), 1);
    for field in [
        "result",
        "duration_s",
        "days_processed",
        "late_days",
        "catch_up_days",
        "rows_read",
        "rows_written",
        "rejects_by_reason",
    ] {
        assert!(end[0].contains_key(field), "no {field} in the end line");
    }
    assert_eq!(end[0]["result"], "success");
    assert_eq!(end[0]["days_processed"], 4);
}

#[tokio::test]
async fn metrics_reach_a_real_pushgateway_and_a_failure_keeps_the_last_success() {
    let gateway = Pushgateway::start();
    let dir = TempDir::new("ops-push");
    let src = Src::sqlite(&dir);
    src.seed("3", "1500");
    let warehouse = dir.path().join("wh").display().to_string();
    common::run_ok(&[
        "run",
        "--source",
        src.url(),
        "--warehouse",
        &warehouse,
        "--from",
        FROM,
        "--to",
        TO,
        "--pushgateway-url",
        &gateway.url,
    ]);
    let wh = wh::open(&warehouse, &[]);
    let run: serde_json::Value =
        serde_json::from_slice(&wh.get(&wh.list("_runs").await.unwrap()[0]).await.unwrap().unwrap()).unwrap();
    let mut manifests = Vec::new();
    for d in wh::days(FROM, TO) {
        manifests.extend(wh::manifests(&wh, d).await.unwrap());
    }
    let messages: u64 = manifests.iter().map(|m| m.messages_read).sum();
    let events: u64 = manifests.iter().map(|m| m.events_read).sum();

    let samples = gateway.samples();
    let get = |name: &str, label: &str| -> f64 {
        let key = samples
            .keys()
            .find(|k| k.starts_with(&format!("{name}{{")) && k.contains(label) && k.contains("shard=\"0\""))
            .unwrap_or_else(|| panic!("no {name} {label} in {samples:?}"));
        samples[key]
    };
    assert_eq!(get("account_usage_days_processed", ""), 4.0);
    assert_eq!(get("account_usage_late_days", ""), 0.0);
    assert_eq!(get("account_usage_catch_up_days", ""), 0.0);
    assert_eq!(get("account_usage_rows_read", "table=\"messages\""), messages as f64);
    assert_eq!(
        get("account_usage_rows_read", "table=\"conversation_events\""),
        events as f64
    );
    for t in Table::ALL {
        let written: u64 = run["rows"]
            .as_object()
            .unwrap()
            .values()
            .map(|d| d[t.name()].as_u64().unwrap_or(0))
            .sum();
        assert_eq!(
            get("account_usage_rows_written", &format!("table=\"{}\"", t.name())),
            written as f64,
            "{}",
            t.name()
        );
    }
    let rejects: BTreeMap<String, u64> = serde_json::from_value(run["rejects_by_reason"].clone()).unwrap();
    for reason in account_usage::aggregate::RejectReason::ALL {
        let expected = rejects.get(reason.as_str()).copied().unwrap_or(0);
        assert_eq!(
            get("account_usage_rejects", &format!("reason=\"{}\"", reason.as_str())),
            expected as f64
        );
    }
    assert!(get("account_usage_run_duration_seconds", "") > 0.0);
    let finished = chrono::DateTime::parse_from_rfc3339(run["finished_at"].as_str().unwrap())
        .unwrap()
        .timestamp() as f64;
    let last_success = get("account_usage_last_success_timestamp_seconds", "");
    assert!((last_success - finished).abs() < 5.0, "{last_success} vs {finished}");

    // A failed run of the same shard pushes its numbers but leaves the last success.
    let closed = common::free_port();
    let out = common::run_bin(&[
        "run",
        "--source",
        &format!("postgres://etl@127.0.0.1:{closed}/ops"),
        "--warehouse",
        &warehouse,
        "--date",
        FROM,
        "--pushgateway-url",
        &gateway.url,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let after = gateway.samples();
    let get_after = |name: &str| -> f64 {
        after
            .iter()
            .find(|(k, _)| k.starts_with(name) && k.contains("shard=\"0\""))
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no {name} after the failure"))
    };
    assert_eq!(get_after("account_usage_last_success_timestamp_seconds"), last_success);
    assert_eq!(get_after("account_usage_days_processed"), 0.0);

    // A gateway that cannot be reached, or refuses the push (here: no such
    // path), is a warning naming why; the run's own result stands.
    for (gateway_url, why) in [
        (format!("http://127.0.0.1:{closed}"), "failed"),
        (format!("{}/no/such/prefix", gateway.url), "answered 404"),
    ] {
        let out = common::run_bin(&[
            "run",
            "--source",
            src.url(),
            "--warehouse",
            &warehouse,
            "--date",
            FROM,
            "--pushgateway-url",
            &gateway_url,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(
            stderr.contains("Pushing metrics failed") && stderr.contains(why),
            "{gateway_url}: {stderr}"
        );
    }
}
