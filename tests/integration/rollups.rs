//! Materialized rollups: the rollup path answers exactly what the base grain
//! does, a rerun of one day rewrites only the buckets that contain it, and a
//! refresh in progress (dirty marker) sends reports to the base grain.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use account_usage::calendar::Interval;
use account_usage::report::engine::{AnsweredFrom, GroupBy, Metric, Report};
use account_usage::report::{self, ReportQuestion, ReportRequest};
use account_usage::rollup;
use account_usage::seed::rng::Rng;
use account_usage::warehouse::paths::{IndexKey, RollupKey, ShardSpec, Table};
use chrono::{Days, NaiveDate};
use chrono_tz::Tz;

use crate::common::{self, TempDir};
use crate::report::{SKIPPED, SPRING, WINTER, Window, World, skipped_world, spring_world, world};
use crate::run::Src;
use crate::wh;

fn request(warehouse: &str, account: i64, from: NaiveDate, to: NaiveDate) -> ReportRequest {
    ReportRequest {
        warehouse: warehouse.parse().unwrap(),
        store: Default::default(),
        question: ReportQuestion {
            account,
            from,
            to,
            time_zone: None,
            interval: Interval::Daily,
            group_by: GroupBy::Platform,
            channels: Vec::new(),
            metrics: Vec::new(),
            base_grain_only: false,
        },
    }
}

/// Both paths; asserts they agree (same numbers, or the same error).
async fn both(req: &ReportRequest) -> Option<(Report, Report)> {
    let auto = report::report(req).await;
    let mut base_only = req.clone();
    base_only.question.base_grain_only = true;
    let base = report::report(&base_only).await;
    match (auto, base) {
        (Ok(a), Ok(b)) => {
            assert_eq!(b.answered_from, AnsweredFrom::BaseGrain);
            assert_eq!(a.rows, b.rows, "{req:?}");
            assert_eq!(a.totals, b.totals, "{req:?}");
            assert_eq!(a.bucket_totals, b.bucket_totals, "{req:?}");
            assert_eq!(a.group_labels, b.group_labels);
            Some((a, b))
        }
        (Err(a), Err(b)) => {
            assert_eq!(a.to_string(), b.to_string());
            None
        }
        (a, b) => panic!("{req:?}: the paths disagree: {:?} vs {:?}", a.err(), b.err()),
    }
}

#[tokio::test]
async fn rollup_path_equals_the_base_grain_on_random_whole_bucket_queries() {
    rollups_against_the_base_grain(world().await, &WINTER, 95, 44).await;
}

/// The same over the southern spring and the northern autumn: the seeded
/// accounts in New York, Lord Howe and Santiago (which skips 2026-09-06's
/// midnight) have rollups across their clock changes.
#[tokio::test]
async fn rollup_path_equals_the_base_grain_across_the_other_clock_changes() {
    rollups_against_the_base_grain(spring_world().await, &SPRING, 60, 45).await;
}

/// The same where two zones skipped a day: accounts 1 and 2 in Apia and 3
/// in Fakaofo, which went from 2011-12-29 to 2011-12-31; 4 and 5 at +13:45
/// and -03:30 (Chatham, St John's).
#[tokio::test]
async fn rollup_path_equals_the_base_grain_across_a_skipped_day() {
    rollups_against_the_base_grain(skipped_world().await, &SKIPPED, 30, 46).await;
}

/// Whole buckets around the skipped day, in the accounts' own zones: the
/// rollups answer them, and answer what the base grain does.
#[tokio::test]
async fn the_rollups_answer_buckets_around_a_skipped_day() {
    let world = skipped_world().await;
    let d = wh::day;
    for account in 1..=3 {
        for (from, to, interval) in [
            ("2011-12-29", "2011-12-31", Interval::Daily),
            ("2011-12-31", "2012-01-01", Interval::Daily),
            ("2011-12-26", "2012-01-08", Interval::Weekly),
            ("2011-12-01", "2011-12-31", Interval::Monthly),
        ] {
            for group_by in [GroupBy::Platform, GroupBy::Channel] {
                let mut req = request(&world.warehouse, account, d(from), d(to));
                req.question.interval = interval;
                req.question.group_by = group_by;
                let (auto, _) = both(&req).await.expect("the range is published");
                assert_eq!(auto.answered_from, AnsweredFrom::Rollups, "{req:?}");
                assert!(auto.rows.iter().any(|r| r.value > 0), "{req:?}: no data");
            }
        }
    }
}

/// Nights one after another over the skipped day, where no account of the
/// shard has that date (so no part for it exists): each night refreshes the
/// week and the month around it from parts, without taking the date that
/// never happened for a lost part, and the rollups answer what the base
/// grain does.
#[tokio::test]
async fn nights_over_a_skipped_day_refresh_the_buckets_around_it() {
    let seeded = Seeded::new("rollup-skipped-day", "2", "34", "2011-12-01", "400", "9");
    seeded.src.exec("UPDATE accounts SET time_zone = 'Pacific/Apia'").await;
    seeded.run(&["--from", "2011-12-01", "--to", "2011-12-25"]);
    for day in wh::days("2011-12-26", "2012-01-03") {
        seeded.run(&["--date", &day.to_string()]);
    }
    assert!(
        !snapshot(&seeded.warehouse).keys().any(|k| k.contains("2011-12-30")),
        "a part for the date that never happened"
    );
    for account in 1..=2 {
        for (from, to, interval) in [
            ("2011-12-27", "2012-01-02", Interval::Daily),
            ("2011-12-26", "2012-01-01", Interval::Weekly),
            ("2011-12-01", "2011-12-31", Interval::Monthly),
        ] {
            let mut req = request(&seeded.wh_url, account, wh::day(from), wh::day(to));
            req.question.interval = interval;
            let (auto, _) = both(&req).await.expect("the range is published");
            assert_eq!(auto.answered_from, AnsweredFrom::Rollups, "{req:?}");
        }
    }
}

/// Queries of whole buckets that start in the window's first published
/// month or the `span_days` after it most of the time, and in its first
/// days (clipped buckets) sometimes.
async fn rollups_against_the_base_grain(world: &World, window: &Window, span_days: u64, seed: u64) {
    let seed = common::test_seed(seed);
    let mut rng = Rng::new(seed);
    let intervals = [
        Interval::Daily,
        Interval::Weekly,
        Interval::Monthly,
        Interval::Quarterly,
        Interval::Yearly,
    ];
    let (mut from_rollups, mut compared) = (0, 0);
    let cases = common::test_cases(250);
    for case in 0..cases {
        let account = rng.range(1, 6);
        // Yearly buckets are never whole in the window: only a few of those.
        let kinds = if rng.chance(0.1) { 5 } else { 4 };
        let interval = intervals[rng.range(0, kinds) as usize];
        // Whole buckets of the interval, inside the published window most of
        // the time, past it sometimes.
        let start = if rng.chance(0.1) {
            wh::day(window.start) + Days::new(2)
        } else {
            wh::day(window.first_query) + Days::new(rng.range(0, span_days as i64) as u64)
        };
        let (period_start, _) = interval.period_of(start).unwrap();
        // A bucket that starts where no day is published is asked clipped.
        let whole = period_start > wh::day(window.start);
        let first = if whole { period_start } else { start };
        let mut last = interval.period_of(first).unwrap().1;
        for _ in 0..rng.range(0, 3) {
            last = interval.period_of(last + Days::new(1)).unwrap().1;
        }
        let mut req = request(&world.warehouse, account, first, last);
        req.question.interval = interval;
        if rng.chance(0.5) {
            req.question.group_by = GroupBy::Channel;
        }
        if rng.chance(0.25) {
            let channels = report::channels_of(&wh::open(&world.warehouse, &[]), window.last_day(), account)
                .await
                .unwrap();
            req.question.channels = channels.iter().map(|c| c.id).filter(|_| rng.chance(0.5)).collect();
        }
        if rng.chance(0.2) {
            req.question.metrics = vec![Metric::ActiveAgents, Metric::UniqueMonthlyContacts];
        }
        if let Some((auto, _)) = both(&req).await {
            compared += 1;
            // Whole buckets in the account's zone are the rollups' to answer,
            // unless they start before the first published month.
            if whole && first >= wh::day(window.first_query) {
                assert_eq!(auto.answered_from, AnsweredFrom::Rollups, "case {case}: {req:?}");
            }
            if auto.answered_from == AnsweredFrom::Rollups {
                from_rollups += 1;
            }
        }
    }
    // Not a vacuous pass: many queries have data, and most of those are
    // answered from rollups. In five seeds, 149-169 of 250 had data in the
    // winter world (all from rollups) and 131-145 in the spring one (126-136).
    assert!(compared >= cases * 2 / 5, "only {compared} of {cases} queries had data");
    assert!(
        from_rollups >= cases / 3,
        "only {from_rollups} of {cases} answered from rollups"
    );
}

#[tokio::test]
async fn queries_rollups_cannot_answer_go_to_the_base_grain() {
    let world = world().await;
    let d = wh::day;
    for (zone, from, to, interval) in [
        // Another zone than the account's.
        (Some("Pacific/Chatham"), "2026-02-01", "2026-02-28", Interval::Monthly),
        // A clipped first bucket.
        (None, "2026-02-03", "2026-03-31", Interval::Monthly),
        // A clipped last bucket: March's part holds days after the 10th.
        (None, "2026-02-01", "2026-03-10", Interval::Monthly),
        // Hourly.
        (None, "2026-02-03", "2026-02-03", Interval::Hourly),
    ] {
        let mut req = request(&world.warehouse, 1, d(from), d(to));
        req.question.time_zone = zone.map(str::to_string);
        req.question.interval = interval;
        let (auto, _) = both(&req).await.expect("the range is published");
        assert_eq!(auto.answered_from, AnsweredFrom::BaseGrain, "{req:?}");
    }
}

/// `(inode, mtime ns, bytes)` of every rollup file, by key.
fn snapshot(warehouse: &Path) -> BTreeMap<String, (u64, i64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![warehouse.join("rollups")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let meta = std::fs::metadata(&path).unwrap();
                let key = path.strip_prefix(warehouse).unwrap().display().to_string();
                out.insert(
                    key,
                    (
                        meta.ino(),
                        meta.mtime_nsec() + meta.mtime() * 1_000_000_000,
                        std::fs::read(&path).unwrap(),
                    ),
                );
            }
        }
    }
    out
}

/// Rollup parts (one shard) of the buckets holding local dates that overlap
/// UTC day `day` in zone `tz`; of quarters and years, only those whose
/// period has closed (a day after it is published).
fn buckets_containing(tz: Tz, day: NaiveDate, published: &BTreeSet<NaiveDate>) -> BTreeSet<String> {
    let start = day.and_hms_opt(0, 0, 0).unwrap().and_utc();
    let local = |t: chrono::DateTime<chrono::Utc>| t.with_timezone(&tz).date_naive();
    let (a, b) = (
        local(start),
        local(start + chrono::Duration::microseconds(86_400_000_000 - 1)),
    );
    let mut out = BTreeSet::new();
    for date in a.iter_days().take_while(|x| *x <= b) {
        for interval in Interval::ROLLED_UP {
            let (period, last) = interval.period_of(date).unwrap();
            let written_when_closed = matches!(interval, Interval::Quarterly | Interval::Yearly);
            if written_when_closed && !published.iter().any(|d| *d > last) {
                continue;
            }
            out.insert(format!(
                "rollups/interval={}/period={period}/part-s0of1.parquet",
                interval.as_str()
            ));
        }
    }
    out
}

/// A SQLite source seeded as `seed_days` seeds it, and the warehouse `wh`
/// beside it.
struct Seeded {
    dir: TempDir,
    src: Src,
    warehouse: std::path::PathBuf,
    wh_url: String,
}

impl Seeded {
    fn new(label: &str, accounts: &str, days: &str, start: &str, per_day: &str, seed: &str) -> Self {
        let dir = TempDir::new(label);
        let src = Src::sqlite(&dir);
        src.seed_days(accounts, days, start, per_day, seed);
        let warehouse = dir.path().join("wh");
        let wh_url = warehouse.display().to_string();
        Seeded {
            dir,
            src,
            warehouse,
            wh_url,
        }
    }

    /// `run` into `warehouse` with `extra` arguments; its output.
    fn run_into(&self, warehouse: &Path, extra: &[&str]) -> String {
        let wh_url = warehouse.display().to_string();
        let mut args = vec!["run", "--source", self.src.url(), "--warehouse", &wh_url];
        args.extend(extra);
        common::run_ok(&args)
    }

    fn run(&self, extra: &[&str]) -> String {
        self.run_into(&self.warehouse, extra)
    }

    /// Account 1 gets a new contact (999999), with one inbound message at
    /// noon UTC of `day` on its first conversation.
    async fn new_contact_at_noon(&self, day: NaiveDate) {
        let noon = day.and_hms_opt(12, 0, 0).unwrap().and_utc().timestamp_micros();
        self.src
            .exec(&format!(
                "INSERT INTO messages (id, account_id, conversation_id, channel_id, contact_id, direction, sender_type, agent_id, sent_at, created_at)
                 SELECT 900000001, account_id, conversation_id, channel_id, 999999, 'inbound', 'contact', NULL, {noon}, {noon}
                 FROM messages WHERE account_id = 1 ORDER BY id LIMIT 1"
            ))
            .await;
    }
}

#[tokio::test]
async fn a_rerun_of_one_day_rewrites_only_the_buckets_that_contain_it() {
    let seeded = Seeded::new("rollup-incremental", "3", "40", "2026-02-27", "800", "8");
    let Seeded { warehouse, wh_url, .. } = &seeded;
    let run = |extra: &[&str]| seeded.run(extra);
    run(&["--from", "2026-02-27", "--to", "2026-04-07", "--parallel", "2"]);
    let before = snapshot(warehouse);
    assert!(before.len() > 50, "{} rollup parts", before.len());

    // Account 1 gets a new contact on UTC day 2026-03-31 (a month and a quarter end).
    let changed_day = wh::day("2026-03-31");
    seeded.new_contact_at_noon(changed_day).await;
    let march = request(wh_url, 1, wh::day("2026-03-01"), wh::day("2026-03-31"));
    let umc = |r: &Report| {
        r.totals
            .iter()
            .find(|t| t.metric == "unique_monthly_contacts" && t.group.is_none())
            .unwrap()
            .value
    };
    let march_before = both(&march).await.unwrap().0;

    let out = run(&["--date", "2026-03-31"]);
    let after = snapshot(warehouse);
    assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>());

    let mut expected = BTreeSet::new();
    let published: BTreeSet<NaiveDate> = wh::days("2026-02-27", "2026-04-07").into_iter().collect();
    let dims = wh::batches(&wh::open(wh_url, &[]), changed_day, Table::Accounts).await;
    for zone in wh::strings(&dims, "time_zone") {
        let zone: Tz = zone.unwrap().parse().unwrap();
        expected.extend(buckets_containing(zone, changed_day, &published));
    }
    // Every bucket holding the day was recomputed, and no other: written
    // parts plus parts whose rows came out the same.
    let refreshed = out.lines().find(|l| l.starts_with("rollups refreshed:")).unwrap();
    let numbers: Vec<u64> = refreshed
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    assert_eq!(numbers.iter().sum::<u64>() as usize, expected.len(), "{refreshed}");
    let rewritten: BTreeSet<String> = after
        .iter()
        .filter(|(k, (ino, mtime, _))| {
            let (i0, m0, _) = &before[*k];
            (ino, mtime) != (i0, m0)
        })
        .map(|(k, _)| k.clone())
        .collect();
    assert!(
        rewritten.is_subset(&expected),
        "the rerun rewrote other buckets than those holding 2026-03-31: {:?}",
        rewritten.difference(&expected).collect::<Vec<_>>()
    );
    let changed: BTreeSet<&String> = after
        .iter()
        .filter(|(k, (_, _, b))| *b != before[*k].2)
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        changed,
        rewritten.iter().collect(),
        "a part was written with the same rows"
    );
    // Within the parts, only account 1's rows changed.
    let key = RollupKey {
        interval: Interval::Daily,
        period: changed_day,
        shard: ShardSpec::WHOLE,
    };
    let accounts = |bytes: &[u8]| -> BTreeMap<i64, account_usage::rollup::AccountBucket> {
        rollup::decode(&key, bytes.to_vec().into(), true, None)
            .unwrap()
            .into_iter()
            .map(|b| (b.account, b))
            .collect()
    };
    for k in &changed {
        let (old, new) = (accounts(&before[*k].2), accounts(&after[*k].2));
        assert_eq!(old.keys().collect::<Vec<_>>(), new.keys().collect::<Vec<_>>(), "{k}");
        for (account, bucket) in &new {
            assert_eq!(*account != 1, bucket == &old[account], "{k}: account {account}");
        }
    }
    for interval in ["monthly", "quarterly"] {
        assert!(
            changed.iter().any(|k| k.contains(&format!("interval={interval}/"))),
            "{interval}: {changed:?}"
        );
    }
    // The first quarter closed on 04-01; the second quarter and the year
    // have not: they have no parts.
    let parts_of = |prefix: &str| after.keys().filter(|k| k.starts_with(prefix)).count();
    assert_eq!(parts_of("rollups/interval=quarterly/"), 1, "{:?}", after.keys());
    assert_eq!(parts_of("rollups/interval=yearly/"), 0);

    // The new contact is in March's UMC, from rollups and from the base grain alike.
    let march_after = both(&march).await.unwrap().0;
    assert_eq!(march_after.answered_from, AnsweredFrom::Rollups);
    assert_eq!(umc(&march_after), umc(&march_before) + 1);

    // A refresh that never finished: its days come from the base grain until
    // the shard's next run takes the marker over.
    let marker = "_rollups/dirty/s0of1-20260401T000000000Z-00000001.json";
    std::fs::create_dir_all(warehouse.join("_rollups/dirty")).unwrap();
    std::fs::write(warehouse.join(marker), "[\"2026-03-31\"]").unwrap();
    assert_eq!(both(&march).await.unwrap().0.answered_from, AnsweredFrom::BaseGrain);
    // Days away from it (UMC left out: April's whole month reaches back to 03-31 UTC in zones east of UTC).
    let mut april = request(wh_url, 1, wh::day("2026-04-03"), wh::day("2026-04-05"));
    april.question.metrics = vec![Metric::ResolvedConversations, Metric::ActiveAgents];
    assert_eq!(both(&april).await.unwrap().0.answered_from, AnsweredFrom::Rollups);
    run(&["--date", "2026-04-06"]);
    assert!(!warehouse.join(marker).exists());
    assert_eq!(both(&march).await.unwrap().0.answered_from, AnsweredFrom::Rollups);

    // Running a day again with nothing new changes no rollup bytes.
    let settled = snapshot(warehouse);
    run(&["--date", "2026-04-01"]);
    let again = snapshot(warehouse);
    for (k, (_, _, bytes)) in &again {
        assert_eq!(bytes, &settled[k].2, "{k} changed on an idempotent rerun");
    }
}

/// A night late in a month builds the month from the weeks inside it (the
/// week it touched from its own cells, the others read back) and the days
/// of the rest; a backfill touching more weeks than it keeps builds it from
/// days alone. Every part has the same rows either way, also when parts the
/// night reads back are gone or unreadable: it rebuilds them first.
#[tokio::test]
async fn a_night_late_in_a_month_has_the_rows_a_backfill_computes_from_days() {
    let seeded = Seeded::new("rollup-weeks", "4", "30", "2026-02-20", "600", "9");
    let dir = &seeded.dir;
    let run = |warehouse: &Path, extra: &[&str]| {
        seeded.run_into(warehouse, extra);
    };
    // 2026-03-20 is a Friday: the night touches the week of 03-16, wholly in
    // March; the weeks of 03-02 and 03-09 are read back, 03-01 as a day.
    let (backfilled, nightly) = (dir.path().join("backfilled"), dir.path().join("nightly"));
    run(&backfilled, &["--from", "2026-02-20", "--to", "2026-03-20"]);
    run(&nightly, &["--from", "2026-02-20", "--to", "2026-03-19"]);
    // The same, with a week and a day the night reads back lost and another
    // week cut short: a month built without them would count too few.
    let lost = dir.path().join("lost");
    common::copy_dir(&nightly, &lost);
    let part = |bucket: &str| lost.join(format!("rollups/interval={bucket}/part-s0of1.parquet"));
    for gone in ["weekly/period=2026-03-09", "daily/period=2026-03-01"] {
        std::fs::remove_file(part(gone)).unwrap();
    }
    let cut = part("weekly/period=2026-03-02");
    let half = std::fs::metadata(&cut).unwrap().len() / 2;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&cut)
        .unwrap()
        .set_len(half)
        .unwrap();
    // The same nights with every monthly bucket computed and written an
    // account at a time (March's quarter and year have not closed).
    let (batched, batched_lost) = (dir.path().join("batched"), dir.path().join("batched-lost"));
    common::copy_dir(&nightly, &batched);
    common::copy_dir(&lost, &batched_lost);
    run(&nightly, &["--date", "2026-03-20"]);
    run(&lost, &["--date", "2026-03-20"]);
    for warehouse in [&batched, &batched_lost] {
        let out = seeded.run_into(warehouse, &["--date", "2026-03-20", "--rollup-batch-weight", "1"]);
        // March at least (with lost parts, the buckets around them are
        // recomputed too).
        assert!(batched_parts(&out) >= 1, "{out}");
    }
    let from_days = part_rows(&backfilled);
    for (case, other) in [
        ("nightly", &nightly),
        ("lost parts", &lost),
        ("batched", &batched),
        ("batched, lost parts", &batched_lost),
    ] {
        assert_same_rows(&from_days, case, other);
    }
    let march = &from_days["rollups/interval=monthly/period=2026-03-01/part-s0of1.parquet"];
    assert_eq!(march.len(), 4, "every account has March rows");
}

/// A refresh stamps the rows it changes after the last stamp its shard
/// recorded, even when the clock reads earlier (a host whose clock went
/// back): readers tell rows of a refresh under way from those of finished
/// ones, and rows of two shard counts apart, by that stamp.
#[tokio::test]
async fn a_refresh_stamps_its_rows_after_its_shards_last_stamp_whatever_the_clock() {
    let seeded = Seeded::new("rollup-stamp", "2", "3", "2026-03-01", "200", "4");
    let warehouse = &seeded.warehouse;
    seeded.run(&["--from", "2026-03-01", "--to", "2026-03-03"]);
    // The index as a run whose clock was a year ahead left it.
    let index = warehouse.join(
        IndexKey {
            shard: ShardSpec::WHOLE,
        }
        .relative(),
    );
    let read_index = || -> serde_json::Value { serde_json::from_slice(&std::fs::read(&index).unwrap()).unwrap() };
    let stamp = || {
        read_index()["rollups_refreshed_at"]
            .as_i64()
            .expect("a refresh's stamp")
    };
    let ahead = stamp() + 365 * 86_400_000_000;
    let mut doc = read_index();
    doc["rollups_refreshed_at"] = ahead.into();
    std::fs::write(&index, serde_json::to_vec(&doc).unwrap()).unwrap();
    // Account 1's rows change.
    seeded.new_contact_at_noon(wh::day("2026-03-02")).await;
    seeded.run(&["--date", "2026-03-02"]);
    let key = RollupKey {
        interval: Interval::Monthly,
        period: wh::day("2026-03-01"),
        shard: ShardSpec::WHOLE,
    };
    let part = std::fs::read(warehouse.join(key.relative())).unwrap();
    let account_1 = rollup::decode(&key, part.into(), false, None)
        .unwrap()
        .into_iter()
        .find(|b| b.account == 1)
        .expect("account 1 has March rows");
    assert!(
        account_1.refreshed_at > ahead,
        "rows stamped {} before the shard's last stamp {ahead}",
        account_1.refreshed_at
    );
    assert_eq!(stamp(), account_1.refreshed_at, "the index records the refresh's stamp");
}

/// Each account's rows, by rollup part.
type PartRows = BTreeMap<String, Vec<(i64, Vec<rollup::cells::RollupRow>)>>;

/// Decoded rows of every rollup part, by key: what two ways of computing
/// them must agree on (stamps aside).
fn part_rows(warehouse: &Path) -> PartRows {
    let key = RollupKey {
        interval: Interval::Monthly,
        period: wh::day("2026-03-01"),
        shard: ShardSpec::WHOLE,
    };
    snapshot(warehouse)
        .into_iter()
        .map(|(k, (_, _, bytes))| {
            let buckets = rollup::decode(&key, bytes.into(), true, None).unwrap();
            (k, buckets.into_iter().map(|b| (b.account, b.rows)).collect())
        })
        .collect()
}

/// `warehouse` has the parts of `expected`, with the same rows.
fn assert_same_rows(expected: &PartRows, case: &str, warehouse: &Path) {
    let rows = part_rows(warehouse);
    assert_eq!(
        expected.keys().collect::<Vec<_>>(),
        rows.keys().collect::<Vec<_>>(),
        "{case}"
    );
    for (k, accounts) in expected {
        assert_eq!(accounts, &rows[k], "{case}: {k}");
    }
}

/// How many parts a run's output says it computed in batches of accounts.
fn batched_parts(out: &str) -> u64 {
    out.lines()
        .find_map(|l| l.strip_prefix("rollup parts computed in batches of accounts: "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A quarter's and a year's parts are written on the night that closes
/// them (the first published day after them), for every account, with the
/// rows a backfill computes; until then they have no part, and reports of
/// them are answered from their months (also while the closing night's
/// refresh is under way).
#[tokio::test]
async fn quarters_and_years_are_written_when_they_close_and_answered_from_months_until_then() {
    let seeded = Seeded::new("rollup-close", "4", "96", "2025-09-28", "120", "7");
    let Seeded { dir, wh_url, .. } = &seeded;
    let quarterly = |p: &str| format!("rollups/interval=quarterly/period={p}/part-s0of1.parquet");
    let yearly = "rollups/interval=yearly/period=2025-01-01/part-s0of1.parquet";
    let (nightly, backfilled, batched) = (
        seeded.warehouse.clone(),
        dir.path().join("backfilled"),
        dir.path().join("batched"),
    );
    seeded.run(&["--from", "2025-09-28", "--to", "2025-12-30"]);
    // A part an earlier build wrote for the open fourth quarter: the next
    // night that touches the quarter deletes it.
    let stale = nightly.join(quarterly("2025-10-01"));
    std::fs::create_dir_all(stale.parent().unwrap()).unwrap();
    std::fs::copy(nightly.join(quarterly("2025-07-01")), &stale).unwrap();
    seeded.run(&["--date", "2025-12-31"]);
    let parts = snapshot(&nightly);
    let written: Vec<&String> = parts
        .keys()
        .filter(|k| k.contains("interval=quarterly/") || k.contains("interval=yearly/"))
        .collect();
    assert_eq!(written, [&quarterly("2025-07-01")], "only the third quarter has closed");

    // Accounts 1, 2 and 4 (Kathmandu, Kolkata, Lord Howe) have every UTC
    // day of the fourth quarter published; account 3 (New York) needs
    // 2026-01-01 too.
    let d = wh::day;
    let east = [1, 2, 4];
    let mut first_channel = BTreeMap::new();
    for account in [1, 2, 3, 4] {
        let channels = report::channels_of(&wh::open(wh_url, &[]), d("2025-12-31"), account)
            .await
            .unwrap();
        first_channel.insert(account, channels[0].id);
    }
    let asks = |account: i64| {
        let mut out = Vec::new();
        for (interval, from, to) in [
            (Interval::Quarterly, d("2025-10-01"), d("2025-12-31")),
            (Interval::Monthly, d("2025-10-01"), d("2025-12-31")),
            (Interval::Daily, d("2025-10-01"), d("2025-12-31")),
        ] {
            for (group_by, channels) in [
                (GroupBy::Platform, false),
                (GroupBy::Channel, false),
                (GroupBy::Platform, true),
            ] {
                let mut req = request(wh_url, account, from, to);
                req.question.interval = interval;
                req.question.group_by = group_by;
                if channels {
                    req.question.channels = vec![first_channel[&account]];
                }
                out.push(req);
            }
        }
        out
    };
    let answered = |reqs: Vec<ReportRequest>| async move {
        let mut from_rollups = 0;
        for req in reqs {
            if let Some((auto, _)) = both(&req).await {
                assert_eq!(auto.answered_from, AnsweredFrom::Rollups, "{req:?}");
                from_rollups += 1;
            }
        }
        from_rollups
    };
    for account in east {
        assert_eq!(
            answered(asks(account)).await,
            9,
            "account {account}'s fourth quarter, from its months"
        );
    }
    assert_eq!(answered(asks(3)).await, 0, "New York's ends on 2026-01-01 UTC");

    common::copy_dir(&nightly, &batched);
    seeded.run(&["--date", "2026-01-01"]);
    let out = seeded.run_into(&batched, &["--date", "2026-01-01", "--rollup-batch-weight", "1"]);
    assert!(batched_parts(&out) >= 2, "the quarter and the year: {out}");
    seeded.run_into(&backfilled, &["--from", "2025-09-28", "--to", "2026-01-01"]);
    let from_backfill = part_rows(&backfilled);
    for (case, warehouse) in [("nightly", &nightly), ("batched", &batched)] {
        assert_same_rows(&from_backfill, case, warehouse);
    }
    // Every account, though only New York's dates of the quarter and the
    // year overlap 2026-01-01 UTC.
    for key in [quarterly("2025-10-01"), yearly.to_string()] {
        let accounts: Vec<i64> = from_backfill[&key].iter().map(|(a, _)| *a).collect();
        assert_eq!(accounts, [1, 2, 3, 4], "{key}");
    }
    for account in [1, 2, 3, 4] {
        assert_eq!(answered(asks(account)).await, 9, "account {account}");
    }

    // While the closing night's refresh is under way (its marker names
    // 2026-01-01), the quarter of an account east of UTC (whose UTC days
    // end on 12-31) is answered from its months, not from the quarter's
    // part.
    let marker = nightly.join("_rollups/dirty/s0of1-20260102T000000000Z-00000001.json");
    std::fs::create_dir_all(marker.parent().unwrap()).unwrap();
    std::fs::write(&marker, "[\"2026-01-01\"]").unwrap();
    std::fs::remove_file(nightly.join(quarterly("2025-10-01"))).unwrap();
    for account in east {
        assert_eq!(answered(asks(account)).await, 9, "account {account}");
    }
}

/// A day published long before the rest (a backfill of one old day, or a
/// year typed wrong) closes, on the next published day, only the quarters
/// and years a published day's data can reach: not an empty part for every
/// quarter between (a day of the year 0 made the next night write 8,106).
#[tokio::test]
async fn a_day_published_long_before_the_rest_closes_no_empty_quarters_between() {
    let seeded = Seeded::new("rollup-gap", "2", "3", "2025-12-30", "50", "3");
    seeded.run(&["--date", "2025-03-15"]);
    seeded.run(&["--date", "2026-01-01"]);
    let parts = snapshot(&seeded.warehouse);
    let coarse: Vec<&str> = parts
        .keys()
        .map(String::as_str)
        .filter(|k| k.contains("interval=quarterly/") || k.contains("interval=yearly/"))
        .collect();
    assert_eq!(
        coarse,
        [
            // 2025-03-15's quarter, and the one whose last date 2026-01-01
            // UTC overlaps west of UTC; not the two between.
            "rollups/interval=quarterly/period=2025-01-01/part-s0of1.parquet",
            "rollups/interval=quarterly/period=2025-10-01/part-s0of1.parquet",
            "rollups/interval=yearly/period=2025-01-01/part-s0of1.parquet",
        ]
    );
}

/// After a change of shard count and a backfill of the whole history with
/// the new count, the old count's index entry and rollup parts can be
/// deleted, as the README's "Choosing the shard count" says: reports give
/// the same numbers, still from the rollups.
#[tokio::test]
async fn the_old_shard_counts_parts_can_go_after_a_backfill_with_the_new_count() {
    let seeded = Seeded::new("rollup-reshard", "4", "41", "2026-01-30", "400", "5");
    let Seeded { warehouse, wh_url, .. } = &seeded;
    let run = |shard: &[&str]| {
        seeded.run(&[&["--from", "2026-01-30", "--to", "2026-03-11"], shard].concat());
    };
    run(&[]);
    for i in ["0", "1"] {
        run(&["--shard-index", i, "--shard-count", "2"]);
    }
    // Whole buckets whose UTC days (a day either side, for the accounts'
    // zones) are all published, as are February's for unique monthly
    // contacts.
    let d = wh::day;
    let questions: Vec<(i64, Interval, NaiveDate, NaiveDate)> = (1..=4)
        .flat_map(|account| {
            [
                (account, Interval::Weekly, d("2026-02-23"), d("2026-03-08")),
                (account, Interval::Daily, d("2026-02-21"), d("2026-03-10")),
                (account, Interval::Monthly, d("2026-02-01"), d("2026-02-28")),
            ]
        })
        .collect();
    let ask = |(account, interval, from, to): (i64, Interval, NaiveDate, NaiveDate)| {
        let mut req = request(wh_url, account, from, to);
        req.question.interval = interval;
        req
    };
    let mut before = Vec::new();
    for q in &questions {
        before.push(both(&ask(*q)).await.expect("published").0);
    }

    let old_parts: Vec<std::path::PathBuf> = common::files_under(&warehouse.join("rollups"))
        .into_iter()
        .filter(|p| p.ends_with("part-s0of1.parquet"))
        .collect();
    assert!(old_parts.len() >= 10, "the one-shard run's parts: {old_parts:?}");
    for part in &old_parts {
        std::fs::remove_file(part).unwrap();
    }
    std::fs::remove_file(warehouse.join("_index/s0of1.json")).unwrap();

    for (q, was) in questions.iter().zip(before) {
        let (now, _) = both(&ask(*q)).await.expect("still published");
        assert_eq!((&now.rows, &now.totals), (&was.rows, &was.totals), "{q:?}");
        assert_eq!(
            (was.answered_from, now.answered_from),
            (AnsweredFrom::Rollups, AnsweredFrom::Rollups),
            "{q:?}"
        );
    }
}

/// Two accounts' zones change mid-month, one westwards and one eastwards:
/// the nights after it build the month, its weeks, quarter and year in the
/// new zone, never from finer parts computed in the old one (and drop the
/// old zone's rows of dates the new zone gives no rows), so the rollups
/// still answer what the base grain does.
#[tokio::test]
async fn after_a_change_of_zone_coarse_buckets_are_built_in_the_new_zone() {
    let seeded = Seeded::new("rollup-zone", "4", "65", "2026-01-30", "400", "5");
    let Seeded {
        src, warehouse, wh_url, ..
    } = &seeded;
    let run = |extra: &[&str]| {
        seeded.run(extra);
    };
    run(&["--from", "2026-01-30", "--to", "2026-03-19"]);
    // Account 1 was in Asia/Kathmandu (+05:45), account 3 in New York
    // (-05:00, then -04:00 from 03-08); Santiago is -03:00 in March.
    // Account 2 moves from Asia/Kolkata to another name of it (a link:
    // the same rules, so the same buckets and rows under the new name).
    src.exec(
        "UPDATE accounts SET time_zone = 'America/Santiago' WHERE id = 1; \
         UPDATE accounts SET time_zone = 'Asia/Calcutta' WHERE id = 2; \
         UPDATE accounts SET time_zone = 'Asia/Kathmandu' WHERE id = 3",
    )
    .await;
    for day in wh::days("2026-03-20", "2026-04-02") {
        run(&["--date", &day.to_string()]);
    }
    let d = wh::day;
    for (interval, from, to) in [
        (Interval::Monthly, d("2026-03-01"), d("2026-03-31")),
        (Interval::Weekly, d("2026-03-16"), d("2026-03-29")),
        (Interval::Monthly, d("2026-02-01"), d("2026-03-31")),
    ] {
        for (account, zone) in [(1, "America/Santiago"), (2, "Asia/Calcutta"), (3, "Asia/Kathmandu")] {
            let mut req = request(wh_url, account, from, to);
            req.question.interval = interval;
            let (auto, _) = both(&req).await.expect("published");
            assert_eq!(auto.time_zone, zone);
            assert_eq!(
                auto.answered_from,
                AnsweredFrom::Rollups,
                "{account} {interval:?} {from}..{to}"
            );
        }
    }
    // No part keeps an account's rows in the zone it left, not even of
    // dates its new zone gives it none of (New York's January 29th, a date
    // of the first published UTC day there, is none of Kathmandu's).
    for (path, part) in rollup_parts(warehouse) {
        use arrow::array::AsArray;
        for batch in part.build().unwrap() {
            let batch = batch.unwrap();
            let accounts = batch
                .column_by_name("account_id")
                .unwrap()
                .as_primitive::<arrow::datatypes::Int64Type>()
                .clone();
            let zones = batch.column_by_name("time_zone").unwrap().as_string::<i32>().clone();
            for i in 0..batch.num_rows() {
                let zone = match accounts.value(i) {
                    1 => "America/Santiago",
                    2 => "Asia/Calcutta",
                    3 => "Asia/Kathmandu",
                    _ => continue,
                };
                assert_eq!(zones.value(i), zone, "account {} in {path:?}", accounts.value(i));
            }
        }
    }
}

/// An account's channels change platform (every `sms` one becomes
/// `whatsapp` and every other one `sms`): the next run rebuilds that
/// account's rollups over its whole history, a year before the change too,
/// so reports by platform count the channels under their new platforms from
/// the rollups; a part that still counts them under the old ones (one
/// restored from before the change) sends a report by platform to the base
/// grain, while one by channel is still answered from it.
#[tokio::test]
async fn after_a_channels_platform_changes_reports_by_platform_count_it_under_the_new_one() {
    let seeded = Seeded::new("rollup-platform", "3", "70", "2025-11-29", "300", "6");
    let Seeded {
        src, warehouse, wh_url, ..
    } = &seeded;
    // December and January are published whole (unique monthly contacts
    // need the months), with a day either side.
    seeded.run(&["--from", "2025-11-29", "--to", "2026-02-02"]);
    let d = wh::day;
    let ask = |account: i64, interval: Interval, from: &str, to: &str, group_by: GroupBy| {
        let mut req = request(wh_url, account, d(from), d(to));
        req.question.interval = interval;
        req.question.group_by = group_by;
        req
    };
    let questions = |group_by| {
        [
            ask(1, Interval::Weekly, "2025-12-15", "2025-12-28", group_by),
            ask(1, Interval::Daily, "2026-01-03", "2026-01-20", group_by),
            ask(1, Interval::Weekly, "2025-12-15", "2026-01-18", group_by),
            ask(2, Interval::Weekly, "2025-12-15", "2026-01-18", group_by),
        ]
    };
    let mut before = Vec::new();
    for req in questions(GroupBy::Platform) {
        let (auto, _) = both(&req).await.expect("published");
        assert_eq!(auto.answered_from, AnsweredFrom::Rollups, "{req:?}");
        before.push(auto);
    }
    let week = RollupKey {
        interval: Interval::Weekly,
        period: d("2025-12-15"),
        shard: ShardSpec::WHOLE,
    }
    .relative();
    let stale_week = std::fs::read(warehouse.join(&week)).unwrap();

    src.exec(
        "UPDATE channels SET platform = CASE WHEN platform = 'sms' THEN 'whatsapp' ELSE 'sms' END \
         WHERE account_id = 1",
    )
    .await;
    seeded.run(&["--date", "2026-02-03"]);
    for (req, was) in questions(GroupBy::Platform).into_iter().zip(&before) {
        let (now, _) = both(&req).await.expect("published");
        assert_eq!(now.answered_from, AnsweredFrom::Rollups, "{req:?}");
        let moved = req.question.account == 1;
        assert_eq!(
            now.rows != was.rows,
            moved,
            "{req:?}: the platforms' rows change with the move"
        );
    }

    std::fs::write(warehouse.join(&week), stale_week).unwrap();
    let (by_platform, _) = both(&questions(GroupBy::Platform)[0]).await.expect("published");
    assert_eq!(by_platform.answered_from, AnsweredFrom::BaseGrain);
    let (by_channel, _) = both(&questions(GroupBy::Channel)[0]).await.expect("published");
    assert_eq!(by_channel.answered_from, AnsweredFrom::Rollups);
}

/// The rollup parts, each with a reader of it.
fn rollup_parts(
    warehouse: &Path,
) -> Vec<(
    std::path::PathBuf,
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder<bytes::Bytes>,
)> {
    common::files_under(&warehouse.join("rollups"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .map(|part| {
            let bytes = bytes::Bytes::from(std::fs::read(&part).unwrap());
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
            (part, reader)
        })
        .collect()
}

/// Every rollup part rewritten as an earlier build wrote it: without
/// `channel_platform`.
fn strip_channel_platforms(warehouse: &Path) -> usize {
    use parquet::arrow::ArrowWriter;
    let parts = rollup_parts(warehouse);
    let count = parts.len();
    for (part, builder) in parts {
        let column = builder.schema().index_of("channel_platform").unwrap();
        let schema = builder.schema().project(
            &(0..builder.schema().fields().len())
                .filter(|i| *i != column)
                .collect::<Vec<_>>(),
        );
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, std::sync::Arc::new(schema.unwrap()), None).unwrap();
        for batch in builder.build().unwrap() {
            let mut batch = batch.unwrap();
            batch.remove_column(column);
            writer.write(&batch).unwrap();
        }
        writer.close().unwrap();
        std::fs::write(part, out).unwrap();
    }
    count
}

/// A warehouse whose parts an earlier build wrote (no `channel_platform`):
/// reports still read them, by platform from the base grain (they cannot
/// say which platform each channel was counted under); the next run
/// rebuilds every part once, after which reports by platform are answered
/// from the rollups again.
#[tokio::test]
async fn parts_without_channel_platforms_are_read_and_rebuilt_by_the_next_run() {
    let seeded = Seeded::new("rollup-old-parts", "3", "40", "2026-02-26", "300", "9");
    let Seeded { warehouse, wh_url, .. } = &seeded;
    seeded.run(&["--from", "2026-02-26", "--to", "2026-04-02"]);
    assert!(strip_channel_platforms(warehouse) > 40);
    let d = wh::day;
    let ask = |account: i64, group_by: GroupBy| {
        let mut req = request(wh_url, account, d("2026-03-01"), d("2026-03-31"));
        req.question.interval = Interval::Weekly;
        req.question.from = d("2026-03-02");
        req.question.to = d("2026-03-29");
        req.question.group_by = group_by;
        req
    };
    for account in 1..=3 {
        let (by_platform, _) = both(&ask(account, GroupBy::Platform)).await.expect("published");
        assert_eq!(by_platform.answered_from, AnsweredFrom::BaseGrain);
        let (by_channel, _) = both(&ask(account, GroupBy::Channel)).await.expect("published");
        assert_eq!(by_channel.answered_from, AnsweredFrom::Rollups);
    }
    seeded.run(&["--date", "2026-04-03"]);
    // Every part rewritten, and no channel row carried over unrecorded.
    for (path, part) in rollup_parts(warehouse) {
        use arrow::array::{Array, AsArray};
        assert!(
            part.schema().index_of("channel_platform").is_ok(),
            "not rebuilt: {path:?}"
        );
        for batch in part.build().unwrap() {
            let batch = batch.unwrap();
            let text = |name: &str| batch.column_by_name(name).unwrap().as_string::<i32>().clone();
            let (group_by, platform) = (text("group_by"), batch.column_by_name("channel_platform").unwrap());
            let unrecorded = (0..batch.num_rows())
                .filter(|i| group_by.value(*i) == "channel" && platform.is_null(*i))
                .count();
            assert_eq!(unrecorded, 0, "{path:?}");
        }
    }
    for account in 1..=3 {
        let (by_platform, _) = both(&ask(account, GroupBy::Platform)).await.expect("published");
        assert_eq!(by_platform.answered_from, AnsweredFrom::Rollups, "account {account}");
    }
}

/// `account`'s rows in the rollup part `key` rewritten with their bucket's
/// instants moved by `by`: the part as a build whose time zone database had
/// other rules for the account's zone (daylight saving time since dropped,
/// say) would have cut it.
fn shift_instants(warehouse: &Path, key: &RollupKey, account: i64, by: i64) {
    use arrow::array::{AsArray, TimestampMicrosecondArray};
    use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
    use parquet::arrow::ArrowWriter;
    let path = warehouse.join(key.relative());
    let bytes = bytes::Bytes::from(std::fs::read(&path).unwrap());
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
    let schema = builder.schema().clone();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema.clone(), None).unwrap();
    let mut shifted = 0;
    for batch in builder.build().unwrap() {
        let batch = batch.unwrap();
        let accounts = batch
            .column_by_name("account_id")
            .unwrap()
            .as_primitive::<Int64Type>()
            .clone();
        let mut columns = batch.columns().to_vec();
        for name in ["bucket_start", "bucket_end"] {
            let i = schema.index_of(name).unwrap();
            let old = columns[i].as_primitive::<TimestampMicrosecondType>();
            let new: TimestampMicrosecondArray = (0..batch.num_rows())
                .map(|r| Some(old.value(r) + if accounts.value(r) == account { by } else { 0 }))
                .collect();
            columns[i] = std::sync::Arc::new(new.with_timezone("UTC"));
        }
        shifted += (0..batch.num_rows()).filter(|r| accounts.value(*r) == account).count();
        writer
            .write(&arrow::array::RecordBatch::try_new(schema.clone(), columns).unwrap())
            .unwrap();
    }
    writer.close().unwrap();
    assert!(shifted > 0, "account {account} has no rows in {path:?}");
    std::fs::write(path, out).unwrap();
}

/// A build with another time zone database cut some of an account's buckets
/// under other rules of its zone: their parts record other instants for the
/// same dates. Reports never answer from such a bucket (the base grain,
/// cut by this build's rules, does), and the next night rebuilds that
/// account's rollups over every published day, before it builds a coarser
/// bucket from one, after which every bucket of the account has this
/// build's instants and reports answer from the rollups again.
#[tokio::test]
async fn buckets_cut_under_other_rules_of_the_zone_are_rebuilt_by_the_next_run() {
    let seeded = Seeded::new("rollup-rules", "3", "40", "2026-02-26", "300", "12");
    let Seeded { warehouse, wh_url, .. } = &seeded;
    seeded.run(&["--from", "2026-02-26", "--to", "2026-04-02"]);
    let d = wh::day;
    let key = |interval, period| RollupKey {
        interval,
        period: d(period),
        shard: ShardSpec::WHOLE,
    };
    // Account 1 is in Asia/Kathmandu. The night of 2026-04-03 recomputes
    // its April 3rd and 4th and reads the rest of their week back, April
    // 1st among them; nothing of it reads March back.
    const HOUR: i64 = 3_600_000_000;
    shift_instants(warehouse, &key(Interval::Daily, "2026-04-01"), 1, HOUR);
    shift_instants(warehouse, &key(Interval::Monthly, "2026-03-01"), 1, HOUR);
    let ask = |account: i64, interval: Interval, from: &str, to: &str| {
        let mut req = request(wh_url, account, d(from), d(to));
        req.question.interval = interval;
        req
    };
    let questions = |account| {
        [
            ask(account, Interval::Monthly, "2026-03-01", "2026-03-31"),
            ask(account, Interval::Daily, "2026-03-30", "2026-04-02"),
        ]
    };
    for (account, from) in [(1, AnsweredFrom::BaseGrain), (2, AnsweredFrom::Rollups)] {
        for req in questions(account) {
            let (auto, _) = both(&req).await.expect("published");
            assert_eq!(auto.answered_from, from, "{req:?}");
        }
    }

    let out = common::run_bin(&[
        "run",
        "--source",
        seeded.src.url(),
        "--warehouse",
        wh_url,
        "--date",
        "2026-04-03",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("computed under other rules") && stderr.contains("rollups/interval=daily/period=2026-04-01/"),
        "the night names the part and why: {stderr}"
    );
    let tz: Tz = "Asia/Kathmandu".parse().unwrap();
    let mut checked = 0;
    for (path, part) in rollup_parts(warehouse) {
        use arrow::array::AsArray;
        use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
        let rel = path
            .strip_prefix(warehouse.join("rollups"))
            .unwrap()
            .to_string_lossy()
            .to_string();
        let field = |name: &str| rel.split('/').find_map(|kv| kv.strip_prefix(name)).unwrap();
        let interval = Interval::ROLLED_UP
            .into_iter()
            .find(|i| i.as_str() == field("interval="))
            .unwrap();
        let period = d(field("period="));
        let instants = account_usage::calendar::period_instants(&tz, interval, period).unwrap();
        for batch in part.build().unwrap() {
            let batch = batch.unwrap();
            let accounts = batch.column_by_name("account_id").unwrap().as_primitive::<Int64Type>();
            let instant = |name: &str| {
                batch
                    .column_by_name(name)
                    .unwrap()
                    .as_primitive::<TimestampMicrosecondType>()
                    .clone()
            };
            let (start, end) = (instant("bucket_start"), instant("bucket_end"));
            for r in (0..batch.num_rows()).filter(|r| accounts.value(*r) == 1) {
                assert_eq!((start.value(r), end.value(r)), instants, "{rel}");
                checked += 1;
            }
        }
    }
    assert!(checked > 100, "{checked} rows of account 1 checked");
    for account in [1, 2] {
        for req in questions(account) {
            let (auto, _) = both(&req).await.expect("published");
            assert_eq!(auto.answered_from, AnsweredFrom::Rollups, "{req:?}");
        }
    }
}

#[tokio::test]
async fn duckdb_reads_the_rollups_as_documented() {
    let world = world().await;
    let script = format!(
        r#"
import duckdb, json
con = duckdb.connect()
rows = con.execute("""
  SELECT interval, count(*) AS row_count, count(DISTINCT account_id) AS accounts,
         sum(value) FILTER (WHERE metric = 'unique_contacts' AND group_by = 'all') AS contacts
  FROM read_parquet('{wh}/rollups/*/*/*.parquet', hive_partitioning = true)
  GROUP BY interval ORDER BY interval
""").fetchall()
umc = con.execute("""
  SELECT value, len(ids) FROM read_parquet('{wh}/rollups/*/*/*.parquet', hive_partitioning = true)
  WHERE account_id = 2 AND interval = 'monthly' AND period = '2026-02-01'
    AND metric = 'unique_contacts' AND group_by = 'channel'
""").fetchall()
# The README's union of an open quarter's months, against the part of a
# closed one.
union = con.execute("""
  SELECT count(DISTINCT id) FROM (
    SELECT unnest(ids) AS id
    FROM read_parquet('{wh}/rollups/*/*/*.parquet', hive_partitioning = true)
    WHERE account_id = 2 AND interval = 'monthly' AND period BETWEEN '2026-01-01' AND '2026-03-01'
      AND metric = 'active_agents' AND group_by = 'channel')
""").fetchall()[0][0]
stored = con.execute("""
  SELECT value FROM read_parquet('{wh}/rollups/*/*/*.parquet', hive_partitioning = true)
  WHERE account_id = 2 AND interval = 'quarterly' AND period = '2026-01-01'
    AND metric = 'active_agents' AND group_by = 'all'
""").fetchall()
print(json.dumps({{"rows": rows, "umc": umc, "union": union, "stored": stored}}))
"#,
        wh = world.warehouse
    );
    let json = common::python_json(&script);
    let intervals: Vec<&str> = json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_str().unwrap())
        .collect();
    assert_eq!(intervals, ["daily", "monthly", "quarterly", "weekly", "yearly"]);
    for r in json["rows"].as_array().unwrap() {
        assert_eq!(r[2], 5, "{r}");
    }
    // Channel rows of distinct metrics carry exactly the ids they count.
    let umc = json["umc"].as_array().unwrap();
    assert!(!umc.is_empty());
    for r in umc {
        assert_eq!(r[0], r[1], "{r}");
    }
    let union = json["union"].as_u64().unwrap();
    assert!(union > 0);
    assert_eq!(json["stored"], serde_json::json!([[union]]), "{json}");
}
