//! Time buckets of a report, in a zone (pure; DESIGN.md §3).
//!
//! - The range `from..=to` (local dates) is `[first instant of from, first
//!   instant of the day after to)`; where midnight is skipped, a day starts at
//!   its first instant that exists. A date the zone skipped whole (Samoa's
//!   2011-12-30) starts where the next one does: it is empty, and has no
//!   bucket.
//! - Buckets are calendar-aligned in the zone and clipped to the range.
//!   Hourly buckets follow the wall clock: a new bucket starts whenever the
//!   clock reads a full hour or the hour changes, so a repeated hour is two
//!   buckets (told apart by offset) and a 30-minute shift makes one bucket of
//!   30 or 90 minutes.
//! - Unique monthly contacts always use whole months touched by the range,
//!   unclipped.
//!
//! Every zone has had offsets in whole quarter hours since 1980, so every
//! bucket edge falls on a UTC quarter hour; hourly edges are found by walking
//! those quarter hours.

use std::collections::BTreeSet;

use chrono::{Datelike, Days, Months, NaiveDate, NaiveTime, Offset, SecondsFormat, TimeZone, Timelike};
use chrono_tz::Tz;

use crate::model::{MICROS_PER_DAY, MICROS_PER_MINUTE, UnixMicros, to_datetime, utc_midnight};

const QUARTER: i64 = 15 * MICROS_PER_MINUTE;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Quarterly,
    Yearly,
}

impl Interval {
    /// Every interval, shortest first.
    pub const ALL: [Interval; 6] = [
        Interval::Hourly,
        Interval::Daily,
        Interval::Weekly,
        Interval::Monthly,
        Interval::Quarterly,
        Interval::Yearly,
    ];

    /// The calendar intervals that rollups are materialized for.
    pub const ROLLED_UP: [Interval; 5] = [
        Interval::Daily,
        Interval::Weekly,
        Interval::Monthly,
        Interval::Quarterly,
        Interval::Yearly,
    ];

    /// First and last local date of the calendar bucket holding `d`
    /// (`None` for hourly, whose buckets are not whole dates).
    pub fn period_of(self, d: NaiveDate) -> Option<(NaiveDate, NaiveDate)> {
        let first = match self {
            Interval::Hourly => return None,
            Interval::Daily => d,
            Interval::Weekly => d - Days::new(u64::from(d.weekday().num_days_from_monday())),
            Interval::Monthly => first_of_month(d),
            Interval::Quarterly => first_of_month(d).with_month0(d.month0() / 3 * 3).expect("valid month"),
            Interval::Yearly => NaiveDate::from_ymd_opt(d.year(), 1, 1).expect("valid date"),
        };
        let next = match self {
            Interval::Hourly => unreachable!("returned above"),
            Interval::Daily => first + Days::new(1),
            Interval::Weekly => first + Days::new(7),
            Interval::Monthly => first + Months::new(1),
            Interval::Quarterly => first + Months::new(3),
            Interval::Yearly => first + Months::new(12),
        };
        Some((first, next - Days::new(1)))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Hourly => "hourly",
            Interval::Daily => "daily",
            Interval::Weekly => "weekly",
            Interval::Monthly => "monthly",
            Interval::Quarterly => "quarterly",
            Interval::Yearly => "yearly",
        }
    }
}

/// Contiguous buckets covering `[start, end)`: `edges[i]..edges[i + 1]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buckets {
    pub tz: Tz,
    pub edges: Vec<UnixMicros>,
}

impl Buckets {
    pub fn len(&self) -> usize {
        self.edges.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn start(&self) -> UnixMicros {
        self.edges[0]
    }

    pub fn end(&self) -> UnixMicros {
        *self.edges.last().expect("at least one edge")
    }

    /// The bucket holding instant `t`, if it is inside.
    pub fn index_of(&self, t: UnixMicros) -> Option<usize> {
        if t < self.start() || t >= self.end() {
            return None;
        }
        Some(self.edges.partition_point(|e| *e <= t) - 1)
    }

    /// `[start, end)` of bucket `i`.
    pub fn bounds(&self, i: usize) -> (UnixMicros, UnixMicros) {
        (self.edges[i], self.edges[i + 1])
    }

    /// RFC 3339 with the zone's offset at the bucket's first instant.
    pub fn label(&self, i: usize) -> String {
        rfc3339_in(&self.tz, self.edges[i])
    }

    /// Whether no UTC day holds more than one edge strictly inside it. Then
    /// an entity's first and last instant of a UTC day decide exactly which
    /// buckets it was active in (the day grain), as those of a UTC hour do
    /// for any buckets. True for months, and for local dates in every zone
    /// in use today (local days are 23 hours or longer and no offset lies
    /// strictly between -01:00 and 00:00); checked, not assumed.
    pub fn cut_each_utc_day_at_most_once(&self) -> bool {
        let inside = |t: UnixMicros| t.rem_euclid(MICROS_PER_DAY) != 0;
        self.edges.windows(2).all(|w| {
            !(inside(w[0]) && inside(w[1]) && w[0].div_euclid(MICROS_PER_DAY) == w[1].div_euclid(MICROS_PER_DAY))
        })
    }
}

/// Parses a `YYYY-MM-DD` local date (flags and query parameters alike),
/// exactly: chrono's `%Y` also takes `26-12-01` as the year 26, a sign, or
/// leading spaces, and a backfill's dropped digit would then publish a day
/// two thousand years back.
pub fn parse_date(s: &str) -> Result<NaiveDate, String> {
    let digits_at = |range: std::ops::Range<usize>| s.as_bytes()[range].iter().all(u8::is_ascii_digit);
    let shaped = s.len() == 10
        && digits_at(0..4)
        && s.as_bytes()[4] == b'-'
        && digits_at(5..7)
        && s.as_bytes()[7] == b'-'
        && digits_at(8..10);
    shaped
        .then(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
        .flatten()
        .ok_or_else(|| format!("expected a date as YYYY-MM-DD, got {s:?}"))
}

pub fn rfc3339_in(tz: &Tz, t: UnixMicros) -> String {
    to_datetime(t)
        .expect("instant in range")
        .with_timezone(tz)
        .to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// An account's zone as the source stores it (`accounts.time_zone`): `None`
/// when missing or no IANA name. Such an account is kept in UTC, by the job
/// that builds its rollups and the readers that match them alike.
pub fn stored_zone(name: Option<&str>) -> Option<Tz> {
    name.and_then(|z| z.parse().ok())
}

/// The first instant of a local date (the first that exists, where midnight
/// is skipped).
pub fn day_start(tz: &Tz, date: NaiveDate) -> UnixMicros {
    let midnight = date.and_time(NaiveTime::MIN);
    if let Some(t) = tz.from_local_datetime(&midnight).earliest() {
        return t.timestamp_micros();
    }
    // Midnight falls in a gap: the day starts at the transition, the first
    // minute after midnight that exists; for a date skipped whole, that is
    // the next date's midnight (minute 1,440).
    (1..=24 * 60)
        .find_map(|m| {
            tz.from_local_datetime(&(midnight + chrono::Duration::minutes(m)))
                .earliest()
        })
        .expect("a day has an instant")
        .timestamp_micros()
}

/// The local dates whose every instant lies in the UTC days
/// `first_utc_day..=last_utc_day`: `None` when there is none. A zone west
/// of UTC has not finished the last UTC day's date; one east of it began
/// the first UTC day's date the day before.
pub fn dates_within(tz: &Tz, first_utc_day: NaiveDate, last_utc_day: NaiveDate) -> Option<(NaiveDate, NaiveDate)> {
    let (start, end) = (utc_midnight(first_utc_day), utc_midnight(last_utc_day + Days::new(1)));
    let first = local_date(tz, start);
    let first = if day_start(tz, first) < start {
        first + Days::new(1)
    } else {
        first
    };
    let last = local_date(tz, end - 1);
    let last = if day_start(tz, last + Days::new(1)) > end {
        last - Days::new(1)
    } else {
        last
    };
    (first <= last).then_some((first, last))
}

/// The first and the last local date whose every instant lies in the UTC
/// days `days` (the published ones, say): over the runs of consecutive
/// days, the first date of the first run holding a whole date, and the last
/// date of the last such run. `None` when no run holds one.
pub fn whole_dates(tz: &Tz, days: &BTreeSet<NaiveDate>) -> Option<(NaiveDate, NaiveDate)> {
    let mut runs: Vec<(NaiveDate, NaiveDate)> = Vec::new();
    for day in days {
        match runs.last_mut() {
            Some((_, last)) if *last + Days::new(1) == *day => *last = *day,
            _ => runs.push((*day, *day)),
        }
    }
    let within = |(first, last): &(NaiveDate, NaiveDate)| dates_within(tz, *first, *last);
    let first = runs.iter().find_map(within)?.0;
    let last = runs.iter().rev().find_map(within)?.1;
    Some((first, last))
}

/// The instants of a report range: `[start of from, start of to + 1 day)`.
pub fn range(tz: &Tz, from: NaiveDate, to: NaiveDate) -> (UnixMicros, UnixMicros) {
    (day_start(tz, from), day_start(tz, to + Days::new(1)))
}

/// The instants of the whole calendar bucket `(interval, period)` in `tz`,
/// under the zone's rules in this build's time zone database (`None` for
/// hourly). A bucket computed under other rules of the same zone (a build
/// with an older database) has other instants, which is how it is told.
pub fn period_instants(tz: &Tz, interval: Interval, period: NaiveDate) -> Option<(UnixMicros, UnixMicros)> {
    let (first, last) = interval.period_of(period)?;
    Some(range(tz, first, last))
}

/// The IANA time zone database this build's zone rules come from.
pub const TZDB_VERSION: &str = chrono_tz::IANA_TZDB_VERSION;

fn first_of_month(d: NaiveDate) -> NaiveDate {
    d.with_day(1).expect("day 1 exists")
}

/// Calendar buckets of an interval over `from..=to`, clipped to the range.
pub fn buckets(tz: Tz, from: NaiveDate, to: NaiveDate, interval: Interval) -> Buckets {
    let (start, end) = range(&tz, from, to);
    let mut edges = vec![start];
    match interval {
        Interval::Hourly => {
            let mut previous = local_hour(&tz, start);
            let mut t = start + QUARTER;
            while t < end {
                let (hour, on_the_hour) = (local_hour(&tz, t), is_on_the_hour(&tz, t));
                if on_the_hour || hour != previous {
                    edges.push(t);
                }
                previous = hour;
                t += QUARTER;
            }
        }
        _ => {
            let next = |d: NaiveDate| -> NaiveDate {
                let (_, last) = interval.period_of(d).expect("not hourly");
                last + Days::new(1)
            };
            let mut d = next(from);
            while d <= to {
                edges.push(day_start(&tz, d));
                d = next(d);
            }
        }
    }
    edges.push(end);
    edges.dedup();
    Buckets { tz, edges }
}

/// Whole months touched by `from..=to` (unclipped): the UMC buckets.
pub fn umc_months(tz: Tz, from: NaiveDate, to: NaiveDate) -> Buckets {
    let mut edges = Vec::new();
    let mut m = first_of_month(from);
    while m <= to {
        edges.push(day_start(&tz, m));
        m = m + Months::new(1);
    }
    edges.push(day_start(&tz, m));
    Buckets { tz, edges }
}

/// The local date of an instant.
pub fn local_date(tz: &Tz, t: UnixMicros) -> NaiveDate {
    local(tz, t).date()
}

fn local(tz: &Tz, t: UnixMicros) -> chrono::NaiveDateTime {
    let utc = to_datetime(t).expect("instant in range").naive_utc();
    utc + tz.offset_from_utc_datetime(&utc).fix()
}

fn local_hour(tz: &Tz, t: UnixMicros) -> (NaiveDate, u32) {
    let l = local(tz, t);
    (l.date(), l.hour())
}

fn is_on_the_hour(tz: &Tz, t: UnixMicros) -> bool {
    let l = local(tz, t);
    l.minute() == 0 && l.second() == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn a_date_is_exactly_yyyy_mm_dd() {
        assert_eq!(parse_date("2026-12-01"), Ok(d("2026-12-01")));
        assert_eq!(parse_date("0000-01-01"), Ok(d("0000-01-01")));
        for bad in [
            "26-12-01",
            "2026-1-1",
            "2026-12-1",
            "+2026-12-01",
            " 2026-12-01",
            "2026-12-01 ",
            "12026-12-01",
            "2026/12/01",
            "2026-02-30",
            "2026-13-01",
            "２０２６-12-01",
            "",
        ] {
            let err = parse_date(bad).unwrap_err();
            assert!(err.contains("YYYY-MM-DD"), "{bad:?}: {err}");
        }
    }

    fn labels(b: &Buckets) -> Vec<String> {
        (0..b.len()).map(|i| b.label(i)).collect()
    }

    fn minutes(b: &Buckets) -> Vec<i64> {
        (0..b.len())
            .map(|i| (b.edges[i + 1] - b.edges[i]) / MICROS_PER_MINUTE)
            .collect()
    }

    #[test]
    fn new_york_has_23_and_25_hourly_buckets_on_its_dst_days() {
        let tz: Tz = "America/New_York".parse().unwrap();
        let spring = buckets(tz, d("2026-03-08"), d("2026-03-08"), Interval::Hourly);
        assert_eq!(spring.len(), 23);
        assert_eq!(spring.label(2), "2026-03-08T03:00:00-04:00");
        let fall = buckets(tz, d("2026-11-01"), d("2026-11-01"), Interval::Hourly);
        assert_eq!(fall.len(), 25);
        assert_eq!(fall.label(1), "2026-11-01T01:00:00-04:00");
        assert_eq!(fall.label(2), "2026-11-01T01:00:00-05:00");
        assert!(minutes(&fall).iter().all(|m| *m == 60));
    }

    #[test]
    fn lord_howe_has_one_30_and_one_90_minute_bucket() {
        let tz: Tz = "Australia/Lord_Howe".parse().unwrap();
        // DST ends 2026-04-05 02:00 (+11) -> 01:30 (+10:30).
        let end = buckets(tz, d("2026-04-05"), d("2026-04-05"), Interval::Hourly);
        assert_eq!(end.len(), 24);
        assert_eq!(minutes(&end)[1], 90);
        assert_eq!(end.label(1), "2026-04-05T01:00:00+11:00");
        assert_eq!(end.label(2), "2026-04-05T02:00:00+10:30");
        // DST starts 2026-10-04 02:00 (+10:30) -> 02:30 (+11).
        let start = buckets(tz, d("2026-10-04"), d("2026-10-04"), Interval::Hourly);
        assert_eq!(start.len(), 24);
        assert_eq!(minutes(&start)[2], 30);
        assert_eq!(start.label(2), "2026-10-04T02:30:00+11:00");
    }

    #[test]
    fn chatham_leaves_an_hour_and_comes_back_to_it_so_that_occurrence_is_a_bucket() {
        let tz: Tz = "Pacific/Chatham".parse().unwrap();
        // DST ends 2026-04-05 03:45 (+13:45) -> 02:45 (+12:45): the clock
        // shows 03 for 45 minutes, then 02 again for 15, then 03 again.
        let end = buckets(tz, d("2026-04-05"), d("2026-04-05"), Interval::Hourly);
        assert_eq!(end.len(), 26);
        assert_eq!(minutes(&end)[2..6], [60, 45, 15, 60]);
        assert_eq!(
            labels(&end)[2..6],
            [
                "2026-04-05T02:00:00+13:45",
                "2026-04-05T03:00:00+13:45",
                "2026-04-05T02:45:00+12:45",
                "2026-04-05T03:00:00+12:45",
            ]
        );
        // DST starts 2026-09-27 02:45 (+12:45) -> 03:45 (+13:45).
        let start = buckets(tz, d("2026-09-27"), d("2026-09-27"), Interval::Hourly);
        assert_eq!(start.len(), 24);
        assert_eq!(minutes(&start)[2..5], [45, 15, 60]);
        assert_eq!(start.label(3), "2026-09-27T03:45:00+13:45");
    }

    #[test]
    fn a_periods_instants_are_those_of_its_whole_bucket() {
        let tz: Tz = "America/Santiago".parse().unwrap();
        let instants = |interval, period| {
            let (start, end) = period_instants(&tz, interval, d(period)).unwrap();
            (rfc3339_in(&tz, start), rfc3339_in(&tz, end))
        };
        // Midnight is skipped on 2026-09-06: that day starts at 01:00 (-03).
        assert_eq!(
            instants(Interval::Daily, "2026-09-06"),
            ("2026-09-06T01:00:00-03:00".into(), "2026-09-07T00:00:00-03:00".into())
        );
        assert_eq!(
            instants(Interval::Monthly, "2026-09-01"),
            ("2026-09-01T00:00:00-04:00".into(), "2026-10-01T00:00:00-03:00".into())
        );
        let whole = buckets(tz, d("2026-07-01"), d("2026-09-30"), Interval::Quarterly);
        assert_eq!(
            period_instants(&tz, Interval::Quarterly, d("2026-07-01")),
            Some(whole.bounds(0))
        );
        assert_eq!(period_instants(&tz, Interval::Hourly, d("2026-07-01")), None);
    }

    #[test]
    fn santiago_days_start_at_the_first_instant_that_exists() {
        let tz: Tz = "America/Santiago".parse().unwrap();
        // 2026-09-06: clocks go from 00:00 (-04) to 01:00 (-03).
        let b = buckets(tz, d("2026-09-05"), d("2026-09-07"), Interval::Daily);
        assert_eq!(
            labels(&b),
            [
                "2026-09-05T00:00:00-04:00",
                "2026-09-06T01:00:00-03:00",
                "2026-09-07T00:00:00-03:00"
            ]
        );
        assert_eq!(minutes(&b)[1], 23 * 60);
    }

    /// Samoa and Tokelau skipped 2011-12-30, Kiritimati 1994-12-31: the day
    /// has no instant, so its first instant that exists is the next day's
    /// first, and it has no bucket (an empty one would be no bucket at all).
    #[test]
    fn a_date_the_zone_skipped_is_empty_and_has_no_bucket() {
        for (zone, skipped, before, after) in [
            (
                "Pacific/Apia",
                "2011-12-30",
                "2011-12-29T00:00:00-10:00",
                "2011-12-31T00:00:00+14:00",
            ),
            (
                "Pacific/Fakaofo",
                "2011-12-30",
                "2011-12-29T00:00:00-11:00",
                "2011-12-31T00:00:00+13:00",
            ),
            (
                "Pacific/Kiritimati",
                "1994-12-31",
                "1994-12-30T00:00:00-10:00",
                "1995-01-01T00:00:00+14:00",
            ),
        ] {
            let tz: Tz = zone.parse().unwrap();
            let skipped = d(skipped);
            let next = skipped + Days::new(1);
            assert_eq!(day_start(&tz, skipped), day_start(&tz, next), "{zone}");
            assert_eq!(local_date(&tz, day_start(&tz, skipped)), next, "{zone}");
            assert_eq!(
                range(&tz, skipped, skipped),
                (day_start(&tz, next), day_start(&tz, next))
            );
            let daily = buckets(tz, skipped - Days::new(1), next, Interval::Daily);
            assert_eq!(labels(&daily), [before, after], "{zone}");
            assert_eq!(minutes(&daily), [24 * 60, 24 * 60], "{zone}");
            let hourly = buckets(tz, skipped - Days::new(1), next, Interval::Hourly);
            assert_eq!(hourly.len(), 48, "{zone}");
            assert_eq!(hourly.label(24), after, "{zone}");
            assert!(buckets(tz, skipped, skipped, Interval::Daily).is_empty(), "{zone}");
        }
    }

    #[test]
    fn kathmandu_daily_across_a_month_end() {
        let tz: Tz = "Asia/Kathmandu".parse().unwrap();
        let b = buckets(tz, d("2026-03-30"), d("2026-04-01"), Interval::Daily);
        assert_eq!(
            labels(&b),
            [
                "2026-03-30T00:00:00+05:45",
                "2026-03-31T00:00:00+05:45",
                "2026-04-01T00:00:00+05:45"
            ]
        );
        assert_eq!(b.start(), day_start(&tz, d("2026-03-30")));
        assert_eq!(b.start() % QUARTER, 0);
    }

    #[test]
    fn weeks_quarters_and_years_are_calendar_aligned_and_clipped() {
        let tz: Tz = "UTC".parse().unwrap();
        let w = buckets(tz, d("2026-03-04"), d("2026-03-17"), Interval::Weekly);
        assert_eq!(
            labels(&w),
            [
                "2026-03-04T00:00:00+00:00",
                "2026-03-09T00:00:00+00:00",
                "2026-03-16T00:00:00+00:00"
            ]
        );
        let q = buckets(tz, d("2026-02-10"), d("2026-07-02"), Interval::Quarterly);
        assert_eq!(
            labels(&q),
            [
                "2026-02-10T00:00:00+00:00",
                "2026-04-01T00:00:00+00:00",
                "2026-07-01T00:00:00+00:00"
            ]
        );
        let y = buckets(tz, d("2025-12-30"), d("2026-01-02"), Interval::Yearly);
        assert_eq!(y.len(), 2);
        assert_eq!(y.index_of(y.end()), None);
        assert_eq!(y.index_of(y.start()), Some(0));
    }

    #[test]
    fn periods_are_calendar_aligned() {
        let p = |i: Interval, s| i.period_of(d(s)).unwrap();
        assert_eq!(p(Interval::Daily, "2024-02-29"), (d("2024-02-29"), d("2024-02-29")));
        assert_eq!(p(Interval::Weekly, "2026-03-04"), (d("2026-03-02"), d("2026-03-08")));
        assert_eq!(p(Interval::Weekly, "2026-03-08"), (d("2026-03-02"), d("2026-03-08")));
        assert_eq!(p(Interval::Monthly, "2024-02-10"), (d("2024-02-01"), d("2024-02-29")));
        assert_eq!(p(Interval::Quarterly, "2026-11-30"), (d("2026-10-01"), d("2026-12-31")));
        assert_eq!(p(Interval::Yearly, "2026-07-01"), (d("2026-01-01"), d("2026-12-31")));
        assert_eq!(Interval::Hourly.period_of(d("2026-07-01")), None);
    }

    /// The day grain's premise, over every zone and 1970..2100: daily
    /// buckets cut each UTC day at most once; hourly ones do not.
    #[test]
    fn local_dates_cut_each_utc_day_at_most_once_in_every_zone() {
        let mut checked = 0;
        for tz in chrono_tz::TZ_VARIANTS {
            for year in [1970, 1980, 1990, 2000, 2010, 2020, 2026, 2027, 2040, 2070, 2099] {
                let b = buckets(
                    tz,
                    d(&format!("{year}-01-01")),
                    d(&format!("{year}-12-31")),
                    Interval::Daily,
                );
                assert!(b.cut_each_utc_day_at_most_once(), "{} in {year}", tz.name());
                // What the 15-minute grain relies on (README: why the derived
                // tables are exact); Kiritimati was -10:40 until 1979.
                assert!(
                    year < 1980 || b.edges.iter().all(|e| e % QUARTER == 0),
                    "{} in {year}: a date starts off a UTC quarter hour",
                    tz.name()
                );
                checked += 1;
            }
        }
        assert!(checked > 5000);
        let kathmandu: Tz = "Asia/Kathmandu".parse().unwrap();
        let hourly = buckets(kathmandu, d("2026-03-01"), d("2026-03-02"), Interval::Hourly);
        assert!(!hourly.cut_each_utc_day_at_most_once());
        let two_cuts = Buckets {
            tz: kathmandu,
            edges: vec![0, MICROS_PER_DAY + 1, MICROS_PER_DAY + 2, 3 * MICROS_PER_DAY],
        };
        assert!(!two_cuts.cut_each_utc_day_at_most_once());
        let on_midnights = Buckets {
            tz: kathmandu,
            edges: vec![0, MICROS_PER_DAY, MICROS_PER_DAY + 5, 2 * MICROS_PER_DAY],
        };
        assert!(on_midnights.cut_each_utc_day_at_most_once());
    }

    #[test]
    fn the_dates_within_utc_days_are_the_whole_ones() {
        // (zone, first and last UTC day, the dates within them)
        for (zone, first, last, within) in [
            ("UTC", "2026-03-01", "2026-03-03", Some(("2026-03-01", "2026-03-03"))),
            // West: 03-03 ends at 03-04 05:00Z.
            (
                "America/New_York",
                "2026-03-01",
                "2026-03-03",
                Some(("2026-03-01", "2026-03-02")),
            ),
            // East: 03-01 began at 02-28 18:15Z.
            (
                "Asia/Kathmandu",
                "2026-03-01",
                "2026-03-03",
                Some(("2026-03-02", "2026-03-03")),
            ),
            ("Asia/Kathmandu", "2026-03-01", "2026-03-01", None),
            // London's 23-hour day, and Santiago's midnight that never was.
            (
                "Europe/London",
                "2026-03-29",
                "2026-03-29",
                Some(("2026-03-29", "2026-03-29")),
            ),
            (
                "America/Santiago",
                "2026-09-06",
                "2026-09-07",
                Some(("2026-09-06", "2026-09-06")),
            ),
            // Samoa's 2011-12-30 never happened: having no instant, it lies
            // within any days; UTC 12-30 holds the end of its 29th (-10) and
            // the start of its 31st (+14).
            (
                "Pacific/Apia",
                "2011-12-29",
                "2011-12-30",
                Some(("2011-12-29", "2011-12-30")),
            ),
            (
                "Pacific/Apia",
                "2011-12-30",
                "2011-12-31",
                Some(("2011-12-30", "2011-12-31")),
            ),
            (
                "Pacific/Apia",
                "2011-12-30",
                "2011-12-30",
                Some(("2011-12-30", "2011-12-30")),
            ),
        ] {
            let tz: Tz = zone.parse().unwrap();
            assert_eq!(
                dates_within(&tz, d(first), d(last)),
                within.map(|(a, b)| (d(a), d(b))),
                "{zone} {first}..{last}"
            );
        }
    }

    #[test]
    fn whole_dates_come_from_runs_of_consecutive_days() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let ktm: Tz = "Asia/Kathmandu".parse().unwrap();
        let days = |list: &[&str]| list.iter().map(|s| d(s)).collect::<BTreeSet<_>>();
        let pair = |a: &str, b: &str| Some((d(a), d(b)));
        let run = days(&["2026-03-01", "2026-03-02", "2026-03-03"]);
        assert_eq!(
            whole_dates(&ny, &run),
            dates_within(&ny, d("2026-03-01"), d("2026-03-03"))
        );
        // With a gap, New York's 03-04 needs UTC 03-04 too: the last whole
        // date is 03-02, where the first run ends.
        let gap = days(&["2026-03-01", "2026-03-02", "2026-03-03", "2026-03-05"]);
        assert_eq!(whole_dates(&ny, &gap), pair("2026-03-01", "2026-03-02"));
        // Two runs that each hold whole dates: the last date is the last
        // run's, not the first's.
        let two_runs = days(&[
            "2026-03-01",
            "2026-03-02",
            "2026-03-03",
            "2026-03-05",
            "2026-03-06",
            "2026-03-07",
        ]);
        assert_eq!(whole_dates(&ny, &two_runs), pair("2026-03-01", "2026-03-06"));
        // A run of one UTC day holds no whole date in Kathmandu; the next
        // run's first does.
        let lone = days(&["2026-03-01", "2026-03-05", "2026-03-06"]);
        assert_eq!(whole_dates(&ktm, &lone), pair("2026-03-06", "2026-03-06"));
        assert_eq!(whole_dates(&ktm, &days(&["2026-03-01"])), None);
        assert_eq!(whole_dates(&ktm, &BTreeSet::new()), None);
    }

    #[test]
    fn umc_uses_whole_months() {
        let tz: Tz = "Europe/London".parse().unwrap();
        let nov = umc_months(tz, d("2026-11-03"), d("2026-11-10"));
        assert_eq!(labels(&nov), ["2026-11-01T00:00:00+00:00"]);
        assert_eq!(nov.end(), day_start(&tz, d("2026-12-01")));
        let two = umc_months(tz, d("2026-10-20"), d("2026-11-05"));
        assert_eq!(labels(&two), ["2026-10-01T00:00:00+01:00", "2026-11-01T00:00:00+00:00"]);
    }
}
