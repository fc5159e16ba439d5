//! Runs that overlap (the same day twice, a 1-shard and a 2-shard run, a
//! backfill over a nightly day, a retried pod beside the one it replaces)
//! leave exactly what one clean run leaves, while a reader never sees an
//! error or other numbers. One conformance function for a local directory
//! and for S3 (moto).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::{self, Moto, TempDir};
use crate::run::Src;
use crate::wh;

const FROM: &str = "2026-03-06";
const TO: &str = "2026-03-09";
const NIGHT: &str = "2026-03-08";

/// The runs of one round: argument lists started at once, with offsets.
fn scenario(round: usize, source: &str, warehouse: &str) -> Vec<Vec<String>> {
    let base = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = ["run", "--source", source, "--warehouse", warehouse]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    match round % 4 {
        // A CronJob that fired twice.
        0 => vec![base(&["--date", NIGHT]), base(&["--date", NIGHT])],
        // A 1-shard and a 2-shard run of the same day.
        1 => vec![
            base(&["--date", NIGHT]),
            base(&["--date", NIGHT, "--shard-index", "0", "--shard-count", "2"]),
            base(&["--date", NIGHT, "--shard-index", "1", "--shard-count", "2"]),
        ],
        // A backfill over the nightly day.
        2 => vec![base(&["--from", FROM, "--to", TO]), base(&["--date", NIGHT])],
        // A retried pod beside the one it replaces (same shard, other days).
        _ => vec![
            base(&["--from", FROM, "--to", NIGHT]),
            base(&["--from", NIGHT, "--to", TO]),
        ],
    }
}

fn report_json(warehouse: &str, env: &[(String, String)]) -> Result<serde_json::Value, String> {
    let args = common::two_day_report(
        warehouse,
        &[
            "resolved_conversations",
            "active_agents",
            "proactive_messages",
            "channels",
        ],
        &[],
    );
    let out = common::run_bin_env(&args.iter().map(String::as_str).collect::<Vec<_>>(), env);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).to_string());
    }
    let mut v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    // Which path answered may change while rollups are rewritten; the numbers may not.
    v.as_object_mut().unwrap().remove("answered_from");
    Ok(v)
}

async fn overlapping_runs_leave_what_one_clean_run_leaves(
    warehouse: &str,
    options: &[(&'static str, String)],
    env: &[(String, String)],
) {
    let dir = TempDir::new("overlap-src");
    let src = Src::sqlite(&dir);
    src.seed("5", "3000");
    let clean_args: Vec<String> = scenario(2, src.url(), warehouse).remove(0);
    let clean_refs: Vec<&str> = clean_args.iter().map(String::as_str).collect();
    common::run_ok_env(&clean_refs, env);
    let wh = wh::open(warehouse, options);
    let days = wh::days(FROM, TO);
    let tables = wh::snapshot(&wh, &days).await;
    let rollups = wh::rollup_snapshot(&wh).await;
    let answer = report_json(warehouse, env).expect("the clean warehouse reports");

    // A reader reports in a loop meanwhile: never an error, never other numbers.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, warehouse, env, answer) = (stop.clone(), warehouse.to_string(), env.to_vec(), answer.clone());
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) {
                let got = report_json(&warehouse, &env).unwrap_or_else(|e| panic!("a reader got an error: {e}"));
                assert_eq!(got, answer, "a reader saw other numbers");
                reads += 1;
            }
            reads
        })
    };

    let mut rng = account_usage::seed::rng::Rng::new(common::test_seed(10));
    for round in 0..12 {
        let mut children = Vec::new();
        for args in scenario(round, src.url(), warehouse) {
            std::thread::sleep(Duration::from_millis(rng.range(0, 250) as u64));
            children.push(
                std::process::Command::new(common::BIN)
                    .args(&args)
                    .env("RUST_LOG", "warn")
                    .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap(),
            );
        }
        for child in children {
            let (code, stderr, _) = common::wait_bounded(child, common::RUN_LIMIT);
            assert_eq!(code, Some(0), "round {round}: a run failed: {stderr}");
        }
        assert_eq!(
            wh::snapshot(&wh, &days).await,
            tables,
            "round {round}: tables differ from a clean run's"
        );
        assert_eq!(
            wh::rollup_snapshot(&wh).await,
            rollups,
            "round {round}: rollups differ from a clean run's"
        );
        assert!(
            wh.list("_leases").await.unwrap().is_empty(),
            "round {round}: a lease was left behind"
        );
        assert!(
            wh.list("_rollups/dirty").await.unwrap().is_empty(),
            "round {round}: a dirty marker was left behind"
        );
    }
    stop.store(true, Ordering::Relaxed);
    assert!(reader.join().expect("the reader saw an error or other numbers") > 0);

    // With no patience, an overlapping run stops at once and names the holder.
    let holder = std::process::Command::new(common::BIN)
        .args(&clean_refs)
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while wh.list("_leases").await.unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the first run never took its lease"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut args = clean_refs.clone();
    args.extend(["--lease-wait", "0s"]);
    let out = common::run_bin_env(&args, env);
    let (holder_code, holder_stderr, _) = common::wait_bounded(holder, common::RUN_LIMIT);
    assert_eq!(holder_code, Some(0), "the holder failed: {holder_stderr}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(1) {
        let line = stderr.lines().find(|l| l.starts_with("error:")).unwrap();
        assert!(
            line.contains("holds accounts of this run") && line.contains("shard s0of1"),
            "{line}"
        );
    } else {
        // The holder finished between the listing and the second run's look.
        assert!(out.status.success(), "{stderr}");
    }
    assert_eq!(wh::snapshot(&wh, &days).await, tables);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_overlapping_runs_leave_what_one_clean_run_leaves() {
    let dir = TempDir::new("overlap-local");
    let warehouse = dir.path().join("wh").display().to_string();
    overlapping_runs_leave_what_one_clean_run_leaves(&warehouse, &[], &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_overlapping_runs_leave_what_one_clean_run_leaves() {
    let moto = Moto::start("overlap");
    overlapping_runs_leave_what_one_clean_run_leaves("s3://overlap/usage", &moto.options(), &moto.env()).await;
}
