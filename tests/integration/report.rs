//! The report against a naive reference computed from raw source rows:
//! random queries (property test), the rollup-free engine path through the
//! real binary, and input errors.

use std::collections::BTreeSet;

use account_usage::calendar::Interval;
use account_usage::report::engine::{self, AnsweredFrom, GroupBy, Metric, Query, Report};
use account_usage::report::{ReportQuestion, ReportRequest};
use account_usage::seed::rng::Rng;
use chrono::{Datelike, NaiveDate};
use chrono_tz::Tz;

use crate::common::{self, TempDir};
use crate::reference;
use crate::wh;

/// DESIGN.md's zones, then others whose clocks move in other ways: a 2-hour
/// DST (Troll), +03:30 and +08:45 without DST, DST at midnight (Havana, as
/// Santiago), a DST taken back for Ramadan (Casablanca, 2026-02-15 and
/// 2026-03-22), +14, and two that skipped a whole day (Samoa and Tokelau,
/// 2011-12-30).
const ZONES: [&str; 17] = [
    "Asia/Kathmandu",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "America/Santiago",
    "America/St_Johns",
    "Pacific/Chatham",
    "Europe/London",
    "America/New_York",
    "UTC",
    "Antarctica/Troll",
    "Asia/Tehran",
    "Australia/Eucla",
    "America/Havana",
    "Africa/Casablanca",
    "Pacific/Kiritimati",
    "Pacific/Apia",
    "Pacific/Fakaofo",
];
const INTERVALS: [(Interval, reference::Interval); 6] = [
    (Interval::Hourly, reference::Interval::Hourly),
    (Interval::Daily, reference::Interval::Daily),
    (Interval::Weekly, reference::Interval::Weekly),
    (Interval::Monthly, reference::Interval::Monthly),
    (Interval::Quarterly, reference::Interval::Quarterly),
    (Interval::Yearly, reference::Interval::Yearly),
];
// Seeded UTC days; queries stay inside whole published months at the start.
pub(crate) const SEED_START: &str = "2025-12-20";
const SEED_DAYS: u64 = 115;

/// The UTC days a world is seeded with and runs, and where its random
/// queries go: `from` in `first_query..`, `to` up to `last_query`, hourly
/// ones around `dst_days`.
pub(crate) struct Window {
    pub(crate) start: &'static str,
    days: u64,
    pub(crate) first_query: &'static str,
    last_query: &'static str,
    dst_days: &'static [&'static str],
    /// Queries asked before the random ones: (account, zone, from, to,
    /// index into [`INTERVALS`]), by platform over every channel.
    fixed: &'static [(i64, &'static str, &'static str, &'static str, usize)],
}

impl Window {
    pub(crate) fn last_day(&self) -> NaiveDate {
        wh::day(self.start) + chrono::Days::new(self.days - 1)
    }

    /// The instants of its published UTC days.
    fn bounds(&self) -> (i64, i64) {
        let start = wh::day(self.start)
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_micros();
        (start, start + self.days as i64 * 86_400_000_000)
    }
}

/// The southern autumn and the northern spring: 23-hour days in New York,
/// Havana, London and Troll, 25-hour days (and DST at midnight) in Santiago,
/// Lord Howe's 90-minute bucket and Chatham's 15-minute one, Casablanca's
/// Ramadan changes, and the new year.
pub(crate) const WINTER: Window = Window {
    start: SEED_START,
    days: SEED_DAYS,
    first_query: "2026-01-01",
    last_query: "2026-04-10",
    dst_days: &[
        "2026-03-08",
        "2026-03-29",
        "2026-04-05",
        "2026-01-01",
        "2026-03-31",
        "2026-04-01",
        "2026-02-15",
        "2026-03-22",
    ],
    fixed: &[],
};

/// The southern spring and the northern autumn: Santiago skips midnight
/// (2026-09-06 starts at 01:00), Chatham's clock jumps 02:45 -> 03:45, Lord
/// Howe's 30-minute bucket, and 25-hour days in London, Troll, New York and
/// Havana (where the repeated hour is 00:xx).
pub(crate) const SPRING: Window = Window {
    start: "2026-08-28",
    days: 70,
    first_query: "2026-09-01",
    last_query: "2026-11-03",
    dst_days: &["2026-09-06", "2026-09-27", "2026-10-04", "2026-10-25", "2026-11-01"],
    // Each of [`spring_visitors`], hourly and daily (intervals 0 and 1).
    fixed: &[
        (1, "America/Santiago", "2026-09-05", "2026-09-06", 0),
        (1, "America/Santiago", "2026-09-05", "2026-09-06", 1),
        (2, "Pacific/Chatham", "2026-09-27", "2026-09-27", 0),
        (3, "Australia/Lord_Howe", "2026-10-04", "2026-10-04", 0),
        (4, "America/Havana", "2026-11-01", "2026-11-01", 0),
        (4, "America/Havana", "2026-10-31", "2026-11-01", 1),
    ],
};

/// Samoa's and Tokelau's skipped day, 2011-12-30: accounts 1 and 2 keep
/// their books in Apia, account 3 in Fakaofo, 4 in Chatham and 5 in St
/// John's (see [`skipped_day_visitors`]).
pub(crate) const SKIPPED: Window = Window {
    start: "2011-11-28",
    days: 44,
    first_query: "2011-12-01",
    last_query: "2012-01-08",
    dst_days: &["2011-12-29", "2011-12-30", "2011-12-31"],
    // In the skipped day's zones: hourly, daily, weekly, monthly and yearly.
    fixed: &[
        (1, "Pacific/Apia", "2011-12-29", "2011-12-31", 0),
        (1, "Pacific/Apia", "2011-12-28", "2012-01-02", 1),
        (1, "Pacific/Apia", "2011-12-30", "2011-12-30", 1),
        (1, "Pacific/Apia", "2011-12-26", "2012-01-08", 2),
        (2, "Pacific/Apia", "2011-12-01", "2011-12-31", 3),
        (3, "Pacific/Fakaofo", "2011-12-29", "2011-12-31", 0),
        (3, "Pacific/Fakaofo", "2011-12-30", "2012-01-01", 1),
        (3, "Pacific/Fakaofo", "2011-12-01", "2012-01-08", 5),
    ],
};

/// A seeded SQLite source and its published warehouse, shared by the tests
/// (each world is built once per test process: seeding and running its days
/// takes a while).
pub(crate) struct World {
    pub(crate) source: String,
    pub(crate) warehouse: String,
}

static WORLD: tokio::sync::OnceCell<World> = tokio::sync::OnceCell::const_new();
static SPRING_WORLD: tokio::sync::OnceCell<World> = tokio::sync::OnceCell::const_new();
static SKIPPED_WORLD: tokio::sync::OnceCell<World> = tokio::sync::OnceCell::const_new();

/// The world most tests read: [`WINTER`]'s days.
pub(crate) async fn world() -> &'static World {
    WORLD.get_or_init(|| build(&WINTER, midnight_straddlers())).await
}

/// [`SPRING`]'s days (2026-08-28..2026-11-05).
pub(crate) async fn spring_world() -> &'static World {
    SPRING_WORLD.get_or_init(|| build(&SPRING, spring_visitors())).await
}

/// [`SKIPPED`]'s days (2011-11-28..2012-01-10).
pub(crate) async fn skipped_world() -> &'static World {
    SKIPPED_WORLD
        .get_or_init(|| build(&SKIPPED, skipped_day_visitors()))
        .await
}

/// Seeds 5 accounts over the window's days, adds `extra` (SQL), and runs
/// every day.
async fn build(window: &Window, extra: String) -> World {
    let dir = TempDir::for_process(&format!("report-world-{}", window.start));
    let source = format!("sqlite://{}/source.db", dir.display());
    let warehouse = dir.join("wh").display().to_string();
    let days = window.days.to_string();
    common::run_ok(&[
        "seed",
        "--source",
        &source,
        "--accounts",
        "5",
        "--days",
        &days,
        "--start",
        window.start,
        "--messages-per-day",
        "1500",
        "--seed",
        &common::test_seed(5).to_string(),
    ]);
    crate::run::Src::Lite(source.clone()).exec(&extra).await;
    let to = window.last_day().to_string();
    common::run_ok(&[
        "run",
        "--source",
        &source,
        "--warehouse",
        &warehouse,
        "--from",
        window.start,
        "--to",
        &to,
        "--parallel",
        "2",
    ]);
    World { source, warehouse }
}

/// SQL adding a message from new contact `entity` and one by new agent
/// `entity` (active nowhere else) at `at`, in account `account`'s first
/// conversation; `id` is the last message id taken.
fn visit(sql: &mut String, id: &mut i64, account: i64, entity: i64, at: i64) {
    *id += 1;
    sql.push_str(&format!(
        "INSERT INTO messages (id, account_id, conversation_id, channel_id, contact_id, direction, sender_type, agent_id, sent_at, created_at)
         SELECT {id}, account_id, conversation_id, channel_id, {entity}, 'inbound', 'contact', NULL, {at}, {at}
         FROM messages WHERE account_id = {account} ORDER BY id LIMIT 1;\n"
    ));
    *id += 1;
    sql.push_str(&format!(
        "INSERT INTO messages (id, account_id, conversation_id, channel_id, contact_id, direction, sender_type, agent_id, sent_at, created_at)
         SELECT {id}, account_id, conversation_id, channel_id, contact_id, 'outbound', 'agent', {entity}, {at}, {at}
         FROM messages WHERE account_id = {account} ORDER BY id LIMIT 1;\n"
    ));
}

/// Contacts and agents active five minutes either side of a local midnight
/// that cuts a UTC hour (Kathmandu 18:15Z, Kolkata 18:30Z, Lord Howe 13:30Z
/// after its DST ends), so that only an hour's first *and* last instant place
/// them in both local days; and in Chatham's 15 minutes of 02:xx after its
/// DST ends (2026-04-05 03:45 +13:45 becomes 02:45 +12:45), an hourly bucket
/// of its own. The seeded data's nights are too quiet to be relied on for
/// this.
fn midnight_straddlers() -> String {
    let mut sql = String::new();
    let mut id = 990_000_000i64;
    for (account, zone, days) in [
        (1, "Asia/Kathmandu", ["2026-01-15", "2026-02-28", "2026-03-31"]),
        (2, "Asia/Kolkata", ["2026-01-31", "2026-02-11", "2026-03-16"]),
        (4, "Australia/Lord_Howe", ["2026-04-06", "2026-04-07", "2026-04-08"]),
    ] {
        let tz: Tz = zone.parse().unwrap();
        for (n, day) in days.into_iter().enumerate() {
            // A new contact and agent each time: active nowhere else.
            let entity = 990_000 + account * 100 + n as i64;
            let midnight = account_usage::calendar::day_start(&tz, wh::day(day));
            assert_ne!(
                midnight % 3_600_000_000,
                0,
                "{zone} {day}: midnight must cut a UTC hour"
            );
            for at in [midnight - 300_000_000, midnight + 300_000_000] {
                visit(&mut sql, &mut id, account, entity, at);
            }
        }
    }
    // 13:20Z is 03:05 +13:45, 14:05Z is 02:50 +12:45.
    for (n, at) in ["2026-04-04T13:20:00Z", "2026-04-04T14:05:00Z"].into_iter().enumerate() {
        visit(&mut sql, &mut id, 5, 990_500 + n as i64, wh::micros(at));
    }
    sql
}

/// Contacts and agents active either side of [`SPRING`]'s clock changes:
/// Santiago's 2026-09-06, which starts at 01:00 -03 (04:00Z); Chatham's
/// 15-minute 03:45 bucket (14:00Z on 09-26); Lord Howe's 30-minute 02:30
/// bucket (15:30Z on 10-03); and Havana's two 00:xx hours of 11-01 (04:xxZ
/// and 05:xxZ).
fn spring_visitors() -> String {
    let mut sql = String::new();
    let mut id = 991_000_000i64;
    for (n, (account, at)) in [
        (1, "2026-09-06T03:55:00Z"),
        (1, "2026-09-06T04:05:00Z"),
        (2, "2026-09-26T13:50:00Z"),
        (2, "2026-09-26T14:05:00Z"),
        (3, "2026-10-03T15:20:00Z"),
        (3, "2026-10-03T15:40:00Z"),
        (4, "2026-11-01T04:30:00Z"),
        (4, "2026-11-01T05:30:00Z"),
    ]
    .into_iter()
    .enumerate()
    {
        visit(&mut sql, &mut id, account, 991_000 + n as i64, wh::micros(at));
    }
    sql
}

/// Accounts 1 and 2 in Apia, 3 in Fakaofo, and contacts and agents active
/// either side of the day they skipped: Apia's clock went from 2011-12-29
/// 23:59 (-10) to 2011-12-31 00:00 (+14) at 10:00Z, Fakaofo's from -11 to
/// +13 at 11:00Z. Accounts 4 and 5 keep their books at +13:45 (Chatham's
/// summer) and -03:30 (St John's winter), so that rollups are cut at those
/// offsets too.
fn skipped_day_visitors() -> String {
    let mut sql = String::from(
        "UPDATE accounts SET time_zone = 'Pacific/Apia' WHERE id IN (1, 2);
         UPDATE accounts SET time_zone = 'Pacific/Fakaofo' WHERE id = 3;
         UPDATE accounts SET time_zone = 'Pacific/Chatham' WHERE id = 4;
         UPDATE accounts SET time_zone = 'America/St_Johns' WHERE id = 5;\n",
    );
    let mut id = 992_000_000i64;
    for (n, (account, at)) in [
        (1, "2011-12-30T09:55:00Z"),
        (1, "2011-12-30T10:05:00Z"),
        (2, "2011-12-30T09:30:00Z"),
        (2, "2011-12-30T10:30:00Z"),
        (3, "2011-12-30T10:55:00Z"),
        (3, "2011-12-30T11:05:00Z"),
    ]
    .into_iter()
    .enumerate()
    {
        visit(&mut sql, &mut id, account, 992_000 + n as i64, wh::micros(at));
    }
    sql
}

#[tokio::test]
async fn engine_equals_the_naive_reference_on_500_random_queries() {
    engine_against_the_reference(world().await, &WINTER, 2026, 500).await;
}

/// The same on the other half of the year's clock changes.
#[tokio::test]
async fn engine_equals_the_naive_reference_across_the_other_clock_changes() {
    engine_against_the_reference(spring_world().await, &SPRING, 2027, 300).await;
}

/// The same over a day two zones skipped (Samoa and Tokelau, 2011-12-30).
#[tokio::test]
async fn engine_equals_the_naive_reference_across_a_skipped_day() {
    engine_against_the_reference(skipped_world().await, &SKIPPED, 2011, 150).await;
}

/// Random queries (a seed's, or `ACCOUNT_USAGE_TEST_SEED`'s) of the engine
/// over the base grain of `world`, against the naive reference over its
/// source: rows, totals and bucket totals equal.
async fn engine_against_the_reference(world: &World, window: &Window, seed: u64, cases: u64) {
    let (lo, hi) = window.bounds();
    let source = reference::Source::load(&world.source, lo, hi).await;
    let warehouse = wh::open(&world.warehouse, &[]);
    let days: BTreeSet<NaiveDate> = wh::days(window.start, &window.last_day().to_string())
        .into_iter()
        .collect();
    let latest = *days.iter().next_back().unwrap();
    let all: BTreeSet<Metric> = Metric::ALL.into_iter().collect();
    let grain_days = account_usage::report::GrainDays {
        range: days.clone(),
        months: days.clone(),
        ..Default::default()
    };
    let mut grains = Vec::new();
    for account in 1..=5 {
        let channels = account_usage::report::channels_of(&warehouse, latest, account)
            .await
            .unwrap();
        grains.push(
            account_usage::report::load_account(&warehouse, account, &grain_days, &all, channels)
                .await
                .unwrap(),
        );
    }

    let seed = common::test_seed(seed);
    let mut rng = Rng::new(seed);
    let first = wh::day(window.first_query);
    for case in 0..window.fixed.len() as u64 + common::test_cases(cases) {
        let (account, tz, interval, ref_interval, from, to, channels, by_channel) =
            if let Some(&(account, zone, from, to, interval)) = window.fixed.get(case as usize) {
                let (interval, ref_interval) = INTERVALS[interval];
                let tz: Tz = zone.parse().unwrap();
                (
                    account,
                    tz,
                    interval,
                    ref_interval,
                    wh::day(from),
                    wh::day(to),
                    None,
                    false,
                )
            } else {
                let account = rng.range(1, 6);
                let tz: Tz = ZONES[rng.range(0, ZONES.len() as i64) as usize].parse().unwrap();
                let (interval, ref_interval) = INTERVALS[rng.range(0, 6) as usize];
                // Hourly ranges are short and often sit on a DST change; the
                // others span up to the whole window (months, quarters, the
                // new year).
                let (from, to) = if interval == Interval::Hourly {
                    let around = wh::day(window.dst_days[rng.range(0, window.dst_days.len() as i64) as usize]);
                    let from = around - chrono::Days::new(rng.range(0, 3) as u64);
                    (from, from + chrono::Days::new(rng.range(0, 4) as u64))
                } else {
                    let last = wh::day(window.last_query);
                    let from = first + chrono::Days::new(rng.range(0, (last - first).num_days()) as u64);
                    let to = (from + chrono::Days::new(rng.range(0, 100) as u64)).min(last);
                    (from, to)
                };
                let grain = &grains[(account - 1) as usize];
                let channels: Option<BTreeSet<i64>> = rng.chance(0.3).then(|| {
                    grain
                        .channels
                        .iter()
                        .map(|c| c.id)
                        .filter(|_| rng.chance(0.5))
                        .collect()
                });
                (account, tz, interval, ref_interval, from, to, channels, rng.chance(0.5))
            };
        let grain = &grains[(account - 1) as usize];
        let query = Query {
            account_id: account,
            tz,
            from,
            to,
            interval,
            group_by: if by_channel {
                GroupBy::Channel
            } else {
                GroupBy::Platform
            },
            channels: channels.clone(),
            metrics: Metric::ALL.into_iter().collect(),
        };
        let got = engine::compute(&query, grain);
        let (rows, totals, bucket_totals) = reference::report(
            &source,
            &reference::Query {
                account,
                tz,
                from,
                to,
                interval: ref_interval,
                by_channel,
                channels,
            },
            (lo, hi),
        );
        let got_rows: Vec<_> = got
            .rows
            .iter()
            .map(|r| {
                (
                    r.metric.to_string(),
                    r.bucket_start.to_string(),
                    r.group.to_string(),
                    r.value,
                )
            })
            .collect();
        let got_totals: Vec<_> = got
            .totals
            .iter()
            .map(|t| (t.metric.to_string(), t.group.as_deref().map(str::to_string), t.value))
            .collect();
        let what = format!(
            "seed {seed} case {case}: account {account} {tz} {from}..{to} {interval:?} by_channel={by_channel}"
        );
        assert_eq!(got_rows.len(), rows.len(), "{what}: row count");
        for (g, r) in got_rows.iter().zip(&rows) {
            assert_eq!(g, r, "{what}");
        }
        assert_eq!(got_totals, totals, "{what}");
        let got_bucket_totals: Vec<_> = got
            .bucket_totals
            .iter()
            .map(|t| (t.metric.to_string(), t.bucket_start.to_string(), t.value))
            .collect();
        assert_eq!(got_bucket_totals, bucket_totals, "{what}: bucket totals");
    }
}

/// A warehouse written before `contact_days` and `resolved_slots` existed
/// (here: a copy of the world's with them taken out of every other day)
/// answers exactly what the world's does, from the base grain and, after a
/// rerun whose refresh reads days of both kinds, from rollups.
#[tokio::test]
async fn days_published_before_the_derived_tables_answer_the_same() {
    let world = world().await;
    let dir = TempDir::new("old-layout");
    let old = dir.path().join("wh");
    let copied = std::process::Command::new("cp")
        .args(["-a", &world.warehouse, &old.display().to_string()])
        .status()
        .unwrap();
    assert!(copied.success());
    let mut stripped = 0;
    for manifest in common::files_under(&old.join("_manifests")) {
        let day = wh::day(&manifest.parent().unwrap().file_name().unwrap().to_str().unwrap()[3..]);
        if day.ordinal() % 2 == 1 {
            continue;
        }
        let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
        let files = m["files"].as_array_mut().unwrap();
        for f in files.iter() {
            if ["contact_days", "resolved_slots"].contains(&f["table"].as_str().unwrap()) {
                std::fs::remove_file(old.join(f["key"].as_str().unwrap())).unwrap();
                stripped += 1;
            }
        }
        files.retain(|f| !["contact_days", "resolved_slots"].contains(&f["table"].as_str().unwrap()));
        std::fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
    }
    assert!(stripped > 100, "only {stripped} files taken out");
    let old_url = old.display().to_string();

    let ask = |warehouse: &str, question: &ReportQuestion| {
        let request = ReportRequest {
            warehouse: warehouse.parse().unwrap(),
            store: Default::default(),
            question: question.clone(),
        };
        async move { account_usage::report::report(&request).await.unwrap() }
    };
    let same = |a: &Report, b: &Report, what: &str| {
        assert_eq!(a.rows, b.rows, "{what}");
        assert_eq!(a.totals, b.totals, "{what}");
        assert_eq!(a.bucket_totals, b.bucket_totals, "{what}");
    };
    let mut rng = Rng::new(77);
    for case in 0..60 {
        let (interval, _) = INTERVALS[rng.range(0, 6) as usize];
        let from = wh::day("2026-01-01") + chrono::Days::new(rng.range(0, 90) as u64);
        let days = if interval == Interval::Hourly { 3 } else { 40 };
        let to = (from + chrono::Days::new(rng.range(0, days) as u64)).min(wh::day("2026-04-10"));
        let question = ReportQuestion {
            account: rng.range(1, 6),
            from,
            to,
            time_zone: Some(ZONES[rng.range(0, ZONES.len() as i64) as usize].to_string()),
            interval,
            group_by: if rng.chance(0.5) {
                GroupBy::Channel
            } else {
                GroupBy::Platform
            },
            channels: Vec::new(),
            metrics: Vec::new(),
            base_grain_only: true,
        };
        let (new, was) = (ask(&world.warehouse, &question).await, ask(&old_url, &question).await);
        same(&new, &was, &format!("case {case}: {question:?}"));
    }

    // A rerun of 2026-03-14 refreshes the rollups of the local dates around
    // it from the UTC days either side, both stripped (even ordinals); they
    // answer what the world's do.
    common::run_ok(&[
        "run",
        "--source",
        &world.source,
        "--warehouse",
        &old_url,
        "--date",
        "2026-03-14",
    ]);
    for account in 1..=5 {
        for (from, to, interval) in [
            ("2026-03-01", "2026-03-31", Interval::Daily),
            ("2026-03-09", "2026-03-22", Interval::Weekly),
            ("2026-03-01", "2026-03-31", Interval::Monthly),
        ] {
            let question = ReportQuestion {
                account,
                from: wh::day(from),
                to: wh::day(to),
                time_zone: None,
                interval,
                group_by: GroupBy::Channel,
                channels: Vec::new(),
                metrics: Vec::new(),
                base_grain_only: false,
            };
            let (new, was) = (ask(&world.warehouse, &question).await, ask(&old_url, &question).await);
            assert_eq!(was.answered_from, AnsweredFrom::Rollups, "{question:?}");
            same(&new, &was, &format!("{question:?}"));
        }
    }
}

fn report_json(args: &[&str]) -> serde_json::Value {
    let out = common::run_ok(args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[tokio::test]
async fn the_binary_reports_what_the_reference_computes() {
    let world = world().await;
    let (lo, hi) = WINTER.bounds();
    let source = reference::Source::load(&world.source, lo, hi).await;
    for (account, zone, from, to, interval, ref_interval, group) in [
        (
            1,
            "Asia/Kathmandu",
            "2026-01-28",
            "2026-02-03",
            "daily",
            reference::Interval::Daily,
            "platform",
        ),
        (
            2,
            "America/New_York",
            "2026-03-08",
            "2026-03-08",
            "hourly",
            reference::Interval::Hourly,
            "channel",
        ),
        (
            3,
            "Australia/Lord_Howe",
            "2026-04-05",
            "2026-04-05",
            "hourly",
            reference::Interval::Hourly,
            "platform",
        ),
        (
            4,
            "UTC",
            "2026-01-01",
            "2026-03-31",
            "monthly",
            reference::Interval::Monthly,
            "channel",
        ),
        (
            5,
            "Pacific/Chatham",
            "2026-04-05",
            "2026-04-05",
            "hourly",
            reference::Interval::Hourly,
            "channel",
        ),
    ] {
        let json = report_json(&[
            "report",
            "--warehouse",
            &world.warehouse,
            "--account",
            &account.to_string(),
            "--from",
            from,
            "--to",
            to,
            "--time-zone",
            zone,
            "--interval",
            interval,
            "--group-by",
            group,
            "--format",
            "json",
        ]);
        let (rows, totals, bucket_totals) = reference::report(
            &source,
            &reference::Query {
                account,
                tz: zone.parse().unwrap(),
                from: wh::day(from),
                to: wh::day(to),
                interval: ref_interval,
                by_channel: group == "channel",
                channels: None,
            },
            (lo, hi),
        );
        let got_rows: Vec<(String, String, String, u64)> = json["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["metric"].as_str().unwrap().to_string(),
                    r["bucket_start"].as_str().unwrap().to_string(),
                    r["group"].as_str().unwrap().to_string(),
                    r["value"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(got_rows, rows, "account {account} {zone} {interval}");
        if zone == "Pacific/Chatham" {
            // The 15 minutes of 02:xx after the clock falls back from 03:45.
            assert!(
                got_rows
                    .iter()
                    .any(|r| r.1 == "2026-04-05T02:45:00+12:45" && r.0 == "active_agents" && r.3 > 0),
                "{got_rows:?}"
            );
        }
        let got_totals: Vec<(String, Option<String>, u64)> = json["totals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["metric"].as_str().unwrap().to_string(),
                    t["group"].as_str().map(str::to_string),
                    t["value"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(got_totals, totals);
        let got_bucket_totals: Vec<(String, String, u64)> = json["bucket_totals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["metric"].as_str().unwrap().to_string(),
                    t["bucket_start"].as_str().unwrap().to_string(),
                    t["value"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got_bucket_totals, bucket_totals,
            "account {account} {zone} {interval}: bucket totals"
        );
        assert_eq!(json["account_id"], account);
        assert_eq!(json["time_zone"], zone);
        assert_eq!(json["interval"], interval);
        assert_eq!(json["group_by"], group);
        assert!(json["channels"].is_null());
    }
}

#[tokio::test]
async fn report_input_errors_exit_2_with_one_line() {
    let world = world().await;
    let base = ["report", "--warehouse", world.warehouse.as_str(), "--account"];
    for (args, expect) in [
        (
            vec![
                "1",
                "--from",
                "2026-02-01",
                "--to",
                "2026-02-02",
                "--time-zone",
                "Mars/Olympus",
            ],
            "unknown time zone",
        ),
        (vec!["1", "--from", "2026-02-03", "--to", "2026-02-02"], "after"),
        (
            vec!["99", "--from", "2026-02-01", "--to", "2026-02-02"],
            "unknown account 99",
        ),
        (
            vec!["1", "--from", "2026-02-01", "--to", "2026-02-02", "--channel", "999999"],
            "unknown channel 999999",
        ),
        (
            vec![
                "1",
                "--from",
                "2026-04-10",
                "--to",
                "2026-04-20",
                "--metric",
                "active_agents",
            ],
            "2026-04-14..2026-04-20",
        ),
        (vec!["1", "--from", "2026-02-01", "--to", "2026-02-31"], "invalid value"),
        // 3,661 dates are one too many; 3,660 are allowed (and then refused
        // only for the days the warehouse does not have).
        (
            vec!["1", "--from", "2016-01-01", "--to", "2026-01-08"],
            "longer than 3660 days",
        ),
        (
            vec!["1", "--from", "2016-01-01", "--to", "2026-01-07"],
            "no published data",
        ),
    ] {
        let mut argv: Vec<&str> = base.to_vec();
        argv.extend(args.iter());
        let stderr = common::assert_usage_error(&argv);
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn csv_and_table_formats_carry_the_same_numbers() {
    let world = world().await;
    let args = |format: &'static str| {
        vec![
            "report",
            "--warehouse",
            world.warehouse.as_str(),
            "--account",
            "2",
            "--from",
            "2026-02-02",
            "--to",
            "2026-02-08",
            "--format",
            format,
        ]
    };
    let json = report_json(&args("json"));
    let csv = common::run_ok(&args("csv"));
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("metric,bucket_start,group,value"));
    let data: Vec<&str> = lines.collect();
    assert_eq!(
        data.len(),
        json["rows"].as_array().unwrap().len() + json["totals"].as_array().unwrap().len()
    );
    let first = &json["rows"][0];
    assert_eq!(
        data[0],
        format!(
            "{},{},{},{}",
            first["metric"].as_str().unwrap(),
            first["bucket_start"].as_str().unwrap(),
            first["group"].as_str().unwrap(),
            first["value"]
        )
    );
    let table = common::run_ok(&args("table"));
    for metric in [
        "active_agents",
        "channels",
        "proactive_messages",
        "resolved_conversations",
        "unique_monthly_contacts",
    ] {
        assert!(table.contains(metric), "{table}");
    }
    assert!(table.contains("total"), "{table}");
    // Every bucket is a row labelled by its local date, its `all` column the
    // bucket total over groups.
    let mut block = "";
    let mut seen = 0;
    for line in table.lines() {
        if !line.contains(' ') && !line.is_empty() && !line.starts_with('-') {
            block = line;
            continue;
        }
        let cells: Vec<&str> = line.split_whitespace().collect();
        let Some(first) = cells.first() else { continue };
        if let Some(t) = json["bucket_totals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["metric"] == block && t["bucket_start"].as_str().unwrap()[..10] == **first)
        {
            assert_eq!(first.len(), 10, "{line}");
            assert_eq!(
                cells.last().unwrap().parse::<u64>().unwrap(),
                t["value"].as_u64().unwrap(),
                "{line}"
            );
            seen += 1;
        }
    }
    assert_eq!(seen, json["bucket_totals"].as_array().unwrap().len(), "{table}");
}

#[test]
fn demo_runs_without_a_server_and_ends_with_the_report() {
    let dir = TempDir::new("demo");
    let args = [
        "demo",
        "--dir",
        &dir.path().display().to_string(),
        "--messages-per-day",
        "800",
    ];
    // `serve`'s variable, set in a shell set up for `serve`, is not the
    // demo's: the demo runs.
    let serve_env = [("LISTEN_ADDR".to_string(), "not an address".to_string())];
    let out = common::run_ok_env(&args, &serve_env);
    for expected in [
        "day(s) published",
        "rows written:",
        "Account usage: account 1",
        "unique_monthly_contacts",
        "total",
    ] {
        assert!(out.contains(expected), "demo output lacks {expected:?}:\n{out}");
    }
    assert!(dir.path().join("source.db").exists());
    assert!(dir.path().join("warehouse/_manifests").exists());
    // A second demo in the same folder replaces the first.
    let stale = dir.path().join("warehouse/_manifests/stale");
    std::fs::write(&stale, "").unwrap();
    assert!(common::run_ok(&args).contains("Account usage: account 1"));
    assert!(!stale.exists());
}

/// The report the demo suggests next runs, with a single account too.
#[test]
fn the_report_the_demo_suggests_runs() {
    let dir = TempDir::new("demo-next");
    let root = dir.path().display().to_string();
    let out = common::run_ok(&["demo", "--dir", &root, "--accounts", "1", "--messages-per-day", "200"]);
    let next = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("account-usage report "))
        .unwrap_or_else(|| panic!("no report suggested:\n{out}"));
    let args: Vec<&str> = std::iter::once("report").chain(next.split_whitespace()).collect();
    let json: serde_json::Value = serde_json::from_str(&common::run_ok(&args)).unwrap();
    assert_eq!(json["account_id"], 1, "{next}");
}

/// The demo deletes only what a demo made, and checks `--listen` before it
/// spends minutes seeding.
#[test]
fn demo_refuses_a_folder_it_did_not_make_and_a_listen_address_off_loopback() {
    let dir = TempDir::new("demo-foreign");
    for foreign in ["warehouse/keep.parquet", "source.db", "source.db-wal"] {
        let folder = dir.path().join(foreign.replace(['/', '.'], "-"));
        let theirs = folder.join(foreign);
        std::fs::create_dir_all(theirs.parent().unwrap()).unwrap();
        std::fs::write(&theirs, "theirs").unwrap();
        let root = folder.display().to_string();
        let line = common::assert_usage_error(&["demo", "--dir", &root, "--days", "1"]);
        assert!(line.contains("no demo made") && line.contains(&root), "{line}");
        assert_eq!(std::fs::read_to_string(&theirs).unwrap(), "theirs");
        assert!(!folder.join(".account-usage-demo").exists());
    }
    let fresh = dir.path().join("never-made");
    let line = common::assert_usage_error(&[
        "demo",
        "--dir",
        fresh.to_str().unwrap(),
        "--serve",
        "--listen",
        "0.0.0.0:8080",
    ]);
    assert!(line.contains("not a loopback address"), "{line}");
    assert!(!fresh.exists(), "nothing was seeded");
}
