//! Answering a report from materialized rollups, when they match the query:
//! the account's own zone, an interval of a day or longer, whole buckets,
//! no refresh in progress over its days, every bucket present in a part,
//! cut by the zone's rules of this build (its instants are the query's) and
//! from a refresh the reader's view saw finish, and (for stored platform
//! rows) every channel counted under the platform it has now.
//! Otherwise [`try_answer`] returns `None` and the caller uses the base
//! grain; the answers are the same either way (tested).
//!
//! - Bucket rows come from the files of the query's buckets (UMC: of its
//!   months): stored group values, or unions and sums of channel rows when a
//!   channel filter applies. A quarter or a year whose period has not closed
//!   (or whose closing run has not finished) has no part to read: its row
//!   is the union of the closed quarters and months that cover it.
//! - Totals come from the fewest whole buckets that cover the range (a
//!   quarter or a year only once closed): the stored values when one bucket
//!   covers it, unions of channel id lists otherwise; distinct totals are
//!   never sums.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::sync::Arc;

use chrono::NaiveDate;
use chrono_tz::Tz;

use super::distinct::DistinctCells;
use super::engine::{self, AnsweredFrom, Group, GroupBy, Grouping, HashMap, Metric, MetricValues, Query, Report};
use crate::aggregate::ChannelDim;
use crate::calendar::{self, Buckets, Interval};
use crate::rollup::cells::{RowGroup, cover};
use crate::rollup::{self, AccountBucket, Lookup};
use crate::warehouse::Warehouse;

/// One bucket of the query's account.
type BucketKey = (Interval, NaiveDate);

/// The rollup buckets one metric needs.
struct Plan {
    buckets: Buckets,
    /// Each of the query's buckets: its own part's bucket, or (an open
    /// quarter or year) the buckets that cover it.
    rows: Vec<Vec<BucketKey>>,
    cover: Vec<BucketKey>,
}

fn plan(query: &Query, metric: Metric, closed: impl Fn(Interval, NaiveDate) -> bool) -> Plan {
    // A date the zone skipped (Samoa's 2011-12-30) has no instant, so no
    // part: it is left out of the covers, where a run of dates would ask
    // for it.
    let cover = |first, last| -> Vec<BucketKey> {
        cover(first, last, &closed)
            .into_iter()
            .filter(|(interval, period)| {
                calendar::period_instants(&query.tz, *interval, *period).is_none_or(|(start, end)| start < end)
            })
            .collect()
    };
    let (buckets, interval, first, last) = if metric == Metric::UniqueMonthlyContacts {
        let months = calendar::umc_months(query.tz, query.from, query.to);
        let last_month = calendar::local_date(&query.tz, months.edges[months.len() - 1]);
        let (_, last) = Interval::Monthly.period_of(last_month).expect("not hourly");
        let first = calendar::local_date(&query.tz, months.start());
        (months, Interval::Monthly, first, last)
    } else {
        let b = calendar::buckets(query.tz, query.from, query.to, query.interval);
        (b, query.interval, query.from, query.to)
    };
    let rows = (0..buckets.len())
        .map(|i| {
            let period = calendar::local_date(&query.tz, buckets.edges[i]);
            match interval.period_of(period) {
                Some((a, b)) if rollup::cells::written_when_closed(interval) && !closed(interval, period) => {
                    cover(a, b)
                }
                _ => vec![(interval, period)],
            }
        })
        .collect();
    let cover = cover(first, last);
    Plan { buckets, rows, cover }
}

/// Whether rollups can answer `query` at all, before reading anything.
pub fn matches(query: &Query, account_zone: Tz) -> bool {
    let whole = query
        .interval
        .period_of(query.from)
        .is_some_and(|(a, _)| a == query.from)
        && query.interval.period_of(query.to).is_some_and(|(_, b)| b == query.to);
    query.tz == account_zone && whole
}

/// The report from rollups, or `None` when they cannot answer it exactly.
/// `published` holds the published days and `refreshing` those of
/// refreshes under way (dirty markers).
#[allow(clippy::too_many_arguments)]
pub async fn try_answer(
    warehouse: &Warehouse,
    view: rollup::View<'_>,
    published: &BTreeSet<NaiveDate>,
    refreshing: &BTreeSet<NaiveDate>,
    query: &Query,
    account_zone: Tz,
    channels: &[ChannelDim],
    utc_days: &RangeInclusive<NaiveDate>,
) -> Result<Option<Report>, rollup::Error> {
    if !matches(query, account_zone) {
        return Ok(None);
    }
    if let Some(day) = super::days_within(refreshing, utc_days).next() {
        tracing::debug!(%day, "Rollups are being refreshed for days of the range; answering from the base grain.");
        return Ok(None);
    }

    let metrics: Vec<Metric> = Metric::ALL
        .into_iter()
        .filter(|m| query.metrics.contains(m) && *m != Metric::Channels)
        .collect();
    // A quarter's or a year's part is read once the run that closed its
    // period has finished: until then, its quarters and months answer.
    let closed = |interval, period| {
        rollup::cells::closing_day(published, interval, period).is_some_and(|day| !refreshing.contains(&day))
    };
    // Every metric but UMC has the query's buckets: planned once.
    let umc_plan = metrics
        .contains(&Metric::UniqueMonthlyContacts)
        .then(|| plan(query, Metric::UniqueMonthlyContacts, closed));
    let interval_plan = metrics
        .iter()
        .find(|m| **m != Metric::UniqueMonthlyContacts)
        .map(|m| plan(query, *m, closed));
    let plans: Vec<(Metric, &Plan)> = metrics
        .iter()
        .filter_map(|m| {
            let p = if *m == Metric::UniqueMonthlyContacts {
                &umc_plan
            } else {
                &interval_plan
            };
            Some((*m, p.as_ref()?))
        })
        .collect();
    // A bucket is read with its id lists only when unions need them.
    let mut wanted: BTreeMap<BucketKey, bool> = BTreeMap::new();
    for (_, p) in &plans {
        for keys in &p.rows {
            for k in keys {
                *wanted.entry(*k).or_default() |= query.channels.is_some() || keys.len() > 1;
            }
        }
        for k in &p.cover {
            *wanted.entry(*k).or_default() |= query.channels.is_some() || p.cover.len() > 1;
        }
    }
    let (with_ids, without): (Vec<_>, Vec<_>) = wanted.into_iter().partition(|(_, ids)| *ids);
    let with_ids: Vec<BucketKey> = with_ids.into_iter().map(|(k, _)| k).collect();
    let without: Vec<BucketKey> = without.into_iter().map(|(k, _)| k).collect();
    let account = query.account_id;
    let (a, b) = futures::try_join!(
        rollup::read_for_account(warehouse, view, account, &with_ids, true),
        rollup::read_for_account(warehouse, view, account, &without, false)
    )?;
    let mut files: HashMap<BucketKey, Arc<AccountBucket>> = HashMap::default();
    for ((interval, period), file) in with_ids.iter().chain(&without).zip(a.into_iter().chain(b)) {
        match file {
            Lookup::Found(f) if f.time_zone != query.tz.name() => {
                tracing::info!(account, interval = interval.as_str(), %period, "A rollup is in another zone; answering from the base grain.");
                return Ok(None);
            }
            Lookup::Found(f) if calendar::period_instants(&query.tz, *interval, *period) != Some((f.start, f.end)) => {
                tracing::info!(account, interval = interval.as_str(), %period, tzdata = calendar::TZDB_VERSION, "A rollup was computed under other rules of its zone (another time zone database); answering from the base grain. The next run rebuilds it.");
                return Ok(None);
            }
            Lookup::Found(f) => {
                files.insert((*interval, *period), f);
            }
            Lookup::Unfinished => {
                tracing::debug!(account, interval = interval.as_str(), %period, "A rollup is from a refresh not yet seen finished; answering from the base grain.");
                return Ok(None);
            }
            Lookup::Missing => {
                tracing::warn!(account, interval = interval.as_str(), %period, "A rollup is missing; answering from the base grain. The next run of its days writes it.");
                return Ok(None);
            }
        }
    }

    let grouping = Grouping::new(query.group_by, channels);
    // Stored platform rows count each channel under the platform it had when
    // they were computed; channel rows are grouped by today's.
    if query.group_by == GroupBy::Platform && query.channels.is_none() {
        for ((interval, period), file) in &files {
            if let Some((channel, found)) = file.moved_channel(|channel| grouping.platform_of(channel)) {
                tracing::info!(account, interval = interval.as_str(), %period, channel, found = found.map(|p| p.to_string()), "A rollup counts a channel under a platform it has left, or an earlier build wrote it; answering from the base grain.");
                return Ok(None);
            }
        }
    }
    let mut values = Vec::new();
    for metric in Metric::ALL.into_iter().filter(|m| query.metrics.contains(m)) {
        let v = match plans.iter().find(|(m, _)| *m == metric) {
            Some((_, plan)) => metric_values(query, metric, plan, &files, &grouping),
            None => engine::channel_values(query, channels, &grouping),
        };
        values.push((metric, v));
    }
    let mut report = engine::assemble(query, channels, values);
    report.answered_from = AnsweredFrom::Rollups;
    Ok(Some(report))
}

/// A bucket's stored values of one metric, by the query's grouping.
fn stored<'a>(
    file: &'a AccountBucket,
    metric: Metric,
    group_by: GroupBy,
    grouping: &'a Grouping,
) -> impl Iterator<Item = (Group, u64)> + 'a {
    file.rows
        .iter()
        .filter(move |r| r.metric == metric)
        .filter_map(move |r| {
            let group = match (group_by, &r.group) {
                (GroupBy::Platform, RowGroup::Platform(name)) => grouping.platform_named(name),
                (GroupBy::Channel, RowGroup::Channel(id)) => Group::Channel(*id),
                _ => return None,
            };
            Some((group, r.value))
        })
}

fn metric_values(
    query: &Query,
    metric: Metric,
    plan: &Plan,
    files: &HashMap<BucketKey, Arc<AccountBucket>>,
    grouping: &Grouping,
) -> MetricValues {
    let distinct = matches!(metric, Metric::UniqueMonthlyContacts | Metric::ActiveAgents);
    let stored = |file| stored(file, metric, query.group_by, grouping);
    // Channel rows (within the filter), grouped, plus all of them together.
    // Distinct ids are counted in bitmaps: an open year's union of its
    // quarters' and months' ids (3.3 million on the report benchmark's
    // account) took 200 ms in hash sets.
    let unions = |keys: &[BucketKey]| -> (Vec<(Group, u64)>, u64) {
        let mut groups: Vec<Group> = Vec::new();
        let mut index: HashMap<Group, usize> = HashMap::default();
        let mut sums: Vec<u64> = Vec::new();
        let mut ids = DistinctCells::new(1);
        for file in keys.iter().map(|k| &files[k]) {
            for r in file.rows.iter().filter(|r| r.metric == metric) {
                let RowGroup::Channel(channel) = r.group else {
                    continue;
                };
                if query.channels.as_ref().is_some_and(|set| !set.contains(&channel)) {
                    continue;
                }
                let group = grouping.of(channel);
                let g = match index.get(&group) {
                    Some(g) => *g,
                    None => {
                        index.insert(group.clone(), groups.len());
                        groups.push(group);
                        sums.push(0);
                        groups.len() - 1
                    }
                };
                if distinct {
                    ids.insert_all(g, 0, file.ids_of(r).unwrap_or_default());
                } else {
                    sums[g] += r.value;
                }
            }
        }
        if distinct {
            let counts = ids.finish(groups.len());
            (groups.into_iter().zip(counts.totals).collect(), counts.grand)
        } else {
            let all = sums.iter().sum();
            (groups.into_iter().zip(sums).collect(), all)
        }
    };

    let stored_all = |file: &AccountBucket| {
        file.rows
            .iter()
            .find(|r| r.metric == metric && r.group == RowGroup::All)
            .map_or(0, |r| r.value)
    };
    let n = plan.rows.len();
    let mut cells: HashMap<Group, Vec<u64>> = HashMap::default();
    let set = |cells: &mut HashMap<Group, Vec<u64>>, g: Group, i: usize, v: u64| match cells.get_mut(&g) {
        Some(by_bucket) => by_bucket[i] = v,
        None => {
            let mut by_bucket = vec![0; n];
            by_bucket[i] = v;
            cells.insert(g, by_bucket);
        }
    };
    let mut bucket_all = Vec::with_capacity(n);
    for (i, keys) in plan.rows.iter().enumerate() {
        if let ([key], None) = (keys.as_slice(), &query.channels) {
            for (g, v) in stored(&files[key]) {
                set(&mut cells, g, i, v);
            }
            bucket_all.push(stored_all(&files[key]));
        } else {
            let (groups, all) = unions(keys);
            for (g, value) in groups {
                set(&mut cells, g, i, value);
            }
            bucket_all.push(all);
        }
    }
    let (totals, grand) = if query.channels.is_none() && plan.cover.len() == 1 {
        let file = &files[&plan.cover[0]];
        (stored(file).collect(), stored_all(file))
    } else {
        let (groups, all) = unions(&plan.cover);
        (groups.into_iter().collect(), all)
    };
    MetricValues {
        buckets: plan.buckets.clone(),
        cells,
        bucket_all,
        totals,
        grand,
    }
}
