//! Broken objects in the warehouse: `report` names the object and fails with
//! exit 1, or, for a rollup, answers from the base grain with a warning and
//! the same numbers, or, for a manifest it did not need, answers the same
//! numbers. Never a panic, never other numbers; the next run of the day
//! replaces what it owns. A garbled published-days index stops reports and
//! runs, named, until it is deleted and the shard's days backfilled.

use std::path::Path;

use crate::common::{self, TempDir};
use crate::run::Src;

const DAY: &str = "2026-03-07";

fn only_file(dir: &Path) -> std::path::PathBuf {
    let files: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(files.len(), 1, "{}", dir.display());
    files[0].clone()
}

/// `report` of account 1 over two days, as JSON.
fn report_output(warehouse: &Path, base_grain: bool) -> std::process::Output {
    let extra: &[&str] = if base_grain { &["--base-grain"] } else { &[] };
    let args = common::two_day_report(
        &warehouse.display().to_string(),
        &["active_agents", "resolved_conversations"],
        extra,
    );
    common::run_bin(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// A report's JSON without `answered_from`, and that field.
fn numbers(stdout: &[u8]) -> (serde_json::Value, String) {
    let mut v: serde_json::Value = serde_json::from_slice(stdout).unwrap();
    let from = v.as_object_mut().unwrap().remove("answered_from").unwrap();
    (v, from.as_str().unwrap().to_string())
}

/// The report's numbers, or its exit code and stderr.
fn report(warehouse: &Path, base_grain: bool) -> Result<serde_json::Value, (Option<i32>, String)> {
    let out = report_output(warehouse, base_grain);
    if !out.status.success() {
        return Err((out.status.code(), String::from_utf8_lossy(&out.stderr).to_string()));
    }
    Ok(numbers(&out.stdout).0)
}

#[test]
fn broken_objects_are_named_or_skipped_never_wrong_and_the_next_run_replaces_them() {
    let dir = TempDir::new("broken");
    let src = Src::sqlite(&dir);
    src.seed("3", "1500");
    let clean = dir.path().join("clean");
    let clean_url = clean.display().to_string();
    common::run_ok(&[
        "run",
        "--source",
        src.url(),
        "--warehouse",
        &clean_url,
        "--from",
        "2026-03-06",
        "--to",
        "2026-03-09",
    ]);
    let expected = report(&clean, false).expect("the clean warehouse reports");
    assert_eq!(report(&clean, true).unwrap(), expected);

    let base_file = |wh: &Path, table: &str| only_file(&wh.join(format!("{table}/dt={DAY}")));
    let manifest = |wh: &Path| wh.join(format!("_manifests/dt={DAY}/s0of1.json"));
    let rollup = |wh: &Path| wh.join(format!("rollups/interval=daily/period={DAY}/part-s0of1.parquet"));
    type Break = Box<dyn Fn(&Path)>;
    // Reports find a day's data files from the runs the index names, and
    // read its manifest only when one is missing: a broken manifest alone may
    // go unread (then with the clean numbers); a broken data file never.
    let manifest_only = ["garbled manifest", "empty manifest"];
    let cases: Vec<(&str, Break)> = vec![
        (
            "truncated Parquet",
            Box::new(move |wh: &Path| {
                let f = base_file(wh, "agent_activity");
                let len = std::fs::metadata(&f).unwrap().len();
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&f)
                    .unwrap()
                    .set_len(len / 2)
                    .unwrap();
            }),
        ),
        (
            "another table's file",
            Box::new(move |wh: &Path| {
                std::fs::copy(base_file(wh, "contact_activity"), base_file(wh, "agent_activity")).unwrap();
            }),
        ),
        (
            "garbled manifest",
            Box::new(move |wh: &Path| std::fs::write(manifest(wh), "{not json").unwrap()),
        ),
        (
            "empty manifest",
            Box::new(move |wh: &Path| std::fs::write(manifest(wh), "").unwrap()),
        ),
        (
            "listed file gone",
            Box::new(move |wh: &Path| std::fs::remove_file(base_file(wh, "agent_activity")).unwrap()),
        ),
        (
            "garbled manifest and a file gone",
            Box::new(move |wh: &Path| {
                std::fs::remove_file(base_file(wh, "agent_activity")).unwrap();
                std::fs::write(manifest(wh), "{not json").unwrap();
            }),
        ),
    ];
    for (case, break_it) in &cases {
        let wh = dir.path().join(case.replace(' ', "-"));
        common::copy_dir(&clean, &wh);
        break_it(&wh);
        // The base grain must read a broken data file: it is named, exit 1.
        match report(&wh, true) {
            Ok(v) if manifest_only.contains(case) => assert_eq!(v, expected, "{case}: other numbers"),
            Ok(v) => panic!("{case}: answered from a broken object: {v}"),
            Err((code, stderr)) => {
                assert_eq!(code, Some(1), "{case}: {stderr}");
                let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
                assert_eq!(errors.len(), 1, "{case}: {stderr}");
                assert!(
                    errors[0].contains(&format!("dt={DAY}")),
                    "{case}: the object is not named: {}",
                    errors[0]
                );
                assert!(!stderr.contains("panicked"), "{case}: {stderr}");
            }
        }
        // The default query may answer from intact rollups: then with the clean numbers.
        if let Ok(v) = report(&wh, false) {
            assert_eq!(v, expected, "{case}: other numbers");
        }
        // The next run of the day replaces what it owns.
        let url = wh.display().to_string();
        common::run_ok(&["run", "--source", src.url(), "--warehouse", &url, "--date", DAY]);
        assert_eq!(
            report(&wh, true).unwrap(),
            expected,
            "{case}: not repaired by the rerun"
        );
    }

    // Rollups: missing, or written with another schema. The report warns
    // and answers from the base grain, with the same numbers.
    for case in ["missing rollup", "rollup of another schema"] {
        let wh = dir.path().join(case.replace(' ', "-"));
        common::copy_dir(&clean, &wh);
        if case == "missing rollup" {
            std::fs::remove_file(rollup(&wh)).unwrap();
        } else {
            std::fs::copy(base_file(&wh, "agent_activity"), rollup(&wh)).unwrap();
        }
        let out = report_output(&wh, false);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{case}: {stderr}");
        assert!(
            stderr.contains("WARN") && stderr.contains("rollup"),
            "{case}: no warning: {stderr}"
        );
        let (v, from) = numbers(&out.stdout);
        assert_eq!(from, "base_grain", "{case}");
        assert_eq!(v, expected, "{case}: other numbers");
        let url = wh.display().to_string();
        common::run_ok(&["run", "--source", src.url(), "--warehouse", &url, "--date", DAY]);
        let (_, from) = numbers(&report_output(&wh, false).stdout);
        assert_eq!(from, "rollups", "{case}: the rerun did not replace the rollup");
    }

    // A garbled published-days index: what the shard published is unknown,
    // so reports and runs stop, naming it, rather than guess. Deleting it
    // and backfilling the shard's days (the README's remedy) repairs it.
    let wh = dir.path().join("garbled-index");
    common::copy_dir(&clean, &wh);
    std::fs::write(wh.join("_index/s0of1.json"), "{not json").unwrap();
    let url = wh.display().to_string();
    let night = common::run_bin(&["run", "--source", src.url(), "--warehouse", &url, "--date", DAY]);
    let failures = [
        report(&wh, false).unwrap_err(),
        report(&wh, true).unwrap_err(),
        (night.status.code(), String::from_utf8_lossy(&night.stderr).into_owned()),
    ];
    for (code, stderr) in failures {
        assert_eq!(code, Some(1), "{stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        assert!(errors[0].contains("_index/s0of1.json"), "{}", errors[0]);
    }
    std::fs::remove_file(wh.join("_index/s0of1.json")).unwrap();
    common::run_ok(&[
        "run",
        "--source",
        src.url(),
        "--warehouse",
        &url,
        "--from",
        "2026-03-06",
        "--to",
        "2026-03-09",
    ]);
    assert_eq!(report(&wh, true).unwrap(), expected, "not repaired by the backfill");
    assert_eq!(report(&wh, false).unwrap(), expected, "not repaired by the backfill");
}
