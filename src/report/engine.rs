//! The report engine (pure): an account's base grain in, the report of
//! DESIGN.md §4 out. No I/O.
//!
//! - Distinct metrics (unique monthly contacts, active agents) count an
//!   entity in a bucket when its first or last instant of a UTC hour falls
//!   in it: a bucket edge cuts an hour at most once, so those two instants
//!   decide exactly which side(s) of the cut it was active on. Totals and the
//!   grand total count distinct entities over the whole range; they are never
//!   sums of bucket values.
//! - Additive metrics (resolved conversations, proactive messages) sum per
//!   bucket; their instants (or 15-minute slots) never straddle an edge.
//! - Channels count production channels connected during a bucket.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::NaiveDate;
use chrono_tz::Tz;
use serde::Serialize;

use crate::calendar::{self, Buckets, Interval};
pub use crate::metric::Metric;
use crate::metric::{ChannelDim, counts_as_connected, platform_of};
use crate::model::UnixMicros;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    Platform,
    Channel,
}

/// A validated report query.
#[derive(Debug, Clone)]
pub struct Query {
    pub account_id: i64,
    pub tz: Tz,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub interval: Interval,
    pub group_by: GroupBy,
    /// `None`: every channel.
    pub channels: Option<BTreeSet<i64>>,
    pub metrics: BTreeSet<Metric>,
}

/// `[channel, entity, first, last]` of one UTC hour.
pub type Activity = (i64, i64, UnixMicros, UnixMicros);

/// One account's base grain for the days a query touches.
#[derive(Debug, Clone, Default)]
pub struct AccountGrain {
    pub contacts: Vec<Activity>,
    pub agents: Vec<Activity>,
    /// `(channel, resolved_at)`
    pub resolved: Vec<(i64, UnixMicros)>,
    /// `(channel, slot_start, messages)`
    pub proactive: Vec<(i64, UnixMicros, u64)>,
    /// The account's channels, as of the latest published day.
    pub channels: Vec<ChannelDim>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    pub metric: &'static str,
    pub bucket_start: String,
    pub group: String,
    pub value: u64,
}

/// A bucket's value over all groups together (distinct metrics count an
/// entity once across groups, so this is not the sum of the bucket's rows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BucketTotal {
    pub metric: &'static str,
    pub bucket_start: String,
    pub value: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Total {
    pub metric: &'static str,
    pub group: Option<String>,
    pub value: u64,
}

/// Where a report's numbers came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnsweredFrom {
    BaseGrain,
    Rollups,
}

/// DESIGN.md §4, plus labels of the groups (channel names) and where the
/// answer came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub account_id: i64,
    pub time_zone: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub interval: Interval,
    pub group_by: GroupBy,
    pub channels: Option<Vec<i64>>,
    pub rows: Vec<Row>,
    pub bucket_totals: Vec<BucketTotal>,
    pub totals: Vec<Total>,
    pub group_labels: BTreeMap<String, String>,
    pub answered_from: AnsweredFrom,
}

/// A group, ordered as rows are: platforms by name, channels by id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Group {
    Platform(String),
    Channel(i64),
}

impl Group {
    fn render(&self) -> String {
        match self {
            Group::Platform(p) => p.clone(),
            Group::Channel(id) => id.to_string(),
        }
    }
}

/// Values of one metric: per (bucket, group), per bucket over all groups,
/// per group over the range, and over all groups.
pub struct MetricValues {
    pub buckets: Buckets,
    pub cells: HashMap<(usize, Group), u64>,
    /// One per bucket; a distinct entity counts once however many groups
    /// it is in.
    pub bucket_all: Vec<u64>,
    pub totals: HashMap<Group, u64>,
    pub grand: u64,
}

/// Maps a channel id to its group in a query.
pub struct Grouping {
    group_by: GroupBy,
    platforms: HashMap<i64, String>,
}

impl Grouping {
    pub fn new(group_by: GroupBy, channels: &[ChannelDim]) -> Self {
        Grouping {
            group_by,
            platforms: channels.iter().map(|c| (c.id, platform_of(Some(c)))).collect(),
        }
    }

    pub fn of(&self, channel: i64) -> Group {
        match self.group_by {
            GroupBy::Channel => Group::Channel(channel),
            GroupBy::Platform => Group::Platform(
                self.platforms
                    .get(&channel)
                    .cloned()
                    .unwrap_or_else(|| platform_of(None)),
            ),
        }
    }
}

pub fn compute(query: &Query, grain: &AccountGrain) -> Report {
    let grouping = Grouping::new(query.group_by, &grain.channels);
    let interval_buckets = calendar::buckets(query.tz, query.from, query.to, query.interval);
    let index = GroupIndex::new(query, &grain.channels, &grouping);

    let mut values = Vec::new();
    for metric in Metric::ALL.into_iter().filter(|m| query.metrics.contains(m)) {
        let v = match metric {
            Metric::UniqueMonthlyContacts => distinct(
                calendar::umc_months(query.tz, query.from, query.to),
                &grain.contacts,
                &index,
            ),
            Metric::ActiveAgents => distinct(interval_buckets.clone(), &grain.agents, &index),
            Metric::ResolvedConversations => additive(
                interval_buckets.clone(),
                grain.resolved.iter().map(|r| (r.0, r.1, 1)),
                &index,
            ),
            Metric::ProactiveMessages => additive(interval_buckets.clone(), grain.proactive.iter().copied(), &index),
            Metric::Channels => channel_values(query, &grain.channels, &grouping),
        };
        values.push((metric, v));
    }
    assemble(query, &grain.channels, values)
}

/// Channels of a query mapped to small group numbers (rows are sorted by
/// channel, so the last lookup is cached); `None` for filtered-out channels.
struct GroupIndex<'q> {
    query: &'q Query,
    grouping: &'q Grouping,
    groups: std::cell::RefCell<GroupNumbers>,
}

/// Groups by number, each channel's number, and the last lookup.
type GroupNumbers = (Vec<Group>, HashMap<i64, Option<u32>>, Option<(i64, Option<u32>)>);

impl<'q> GroupIndex<'q> {
    fn new(query: &'q Query, channels: &[ChannelDim], grouping: &'q Grouping) -> Self {
        let index = GroupIndex {
            query,
            grouping,
            groups: Default::default(),
        };
        // Known channels first, so group numbers do not depend on row order.
        for c in channels {
            index.of(c.id);
        }
        index
    }

    fn of(&self, channel: i64) -> Option<u32> {
        let mut state = self.groups.borrow_mut();
        let (groups, by_channel, last) = &mut *state;
        if let Some((c, g)) = *last
            && c == channel
        {
            return g;
        }
        let g = *by_channel.entry(channel).or_insert_with(|| {
            if self.query.channels.as_ref().is_some_and(|set| !set.contains(&channel)) {
                return None;
            }
            let group = self.grouping.of(channel);
            Some(match groups.iter().position(|g| *g == group) {
                Some(i) => i as u32,
                None => {
                    groups.push(group);
                    (groups.len() - 1) as u32
                }
            })
        });
        *last = Some((channel, g));
        g
    }

    fn len(&self) -> usize {
        self.groups.borrow().0.len()
    }

    fn group(&self, i: usize) -> Group {
        self.groups.borrow().0[i].clone()
    }
}

/// Largest per-entity bitset table (in 64-bit words) before falling back to
/// hash sets.
const MAX_BITSET_WORDS: usize = 16 << 20;

/// Distinct entities per (bucket, group), per group and overall. Each
/// entity gets a bitset of the cells it is active in (one pass over the rows,
/// one array write each), then one pass over entities counts cells, groups
/// and the grand total; ids are indexed densely when they are (serial ids
/// are), through a hash map otherwise.
fn distinct(buckets: Buckets, activity: &[Activity], index: &GroupIndex) -> MetricValues {
    // Group numbers of every channel present, before sizing the cells.
    let rows: Vec<(u32, &Activity)> = activity.iter().filter_map(|a| Some((index.of(a.0)?, a))).collect();
    let n_groups = index.len().max(1);
    let n_cells = buckets.len() * n_groups;
    let words = n_cells.div_ceil(64).max(1);

    let (min, max) = rows
        .iter()
        .fold((i64::MAX, i64::MIN), |(lo, hi), (_, a)| (lo.min(a.1), hi.max(a.1)));
    let span = if rows.is_empty() {
        0
    } else {
        (max - min) as u64 as usize + 1
    };
    let dense = span <= rows.len().saturating_mul(4) + 4096;
    let mut compact: HashMap<i64, u32, crate::aggregate::IdBuildHasher> = HashMap::default();
    let entities = if dense { span } else { 0 };
    if entities.saturating_mul(words) > MAX_BITSET_WORDS
        || (!dense && rows.len().saturating_mul(words) > MAX_BITSET_WORDS)
    {
        return distinct_hashed(buckets, &rows, index);
    }
    let mut bits: Vec<u64> = vec![0; entities * words];
    for &(g, &(_, entity, first, last)) in &rows {
        let slot = if dense {
            (entity - min) as usize
        } else {
            let next = compact.len() as u32;
            let s = *compact.entry(entity).or_insert(next) as usize;
            if s * words >= bits.len() {
                bits.resize((s + 1) * words, 0);
            }
            s
        };
        let a = buckets.index_of(first);
        let b = buckets.index_of(last);
        for i in [a, b].into_iter().flatten() {
            let cell = i * n_groups + g as usize;
            bits[slot * words + cell / 64] |= 1 << (cell % 64);
        }
    }

    let mut cells = vec![0u64; n_cells];
    let mut bucket_all = vec![0u64; buckets.len()];
    let mut seen_in_bucket = vec![usize::MAX; buckets.len()];
    let mut totals = vec![0u64; n_groups];
    let mut seen_in_group = vec![usize::MAX; n_groups];
    let mut grand = 0;
    for (slot, set) in bits.chunks_exact(words).enumerate() {
        if set.iter().all(|w| *w == 0) {
            continue;
        }
        grand += 1;
        for (w, word) in set.iter().enumerate() {
            let mut word = *word;
            while word != 0 {
                let cell = w * 64 + word.trailing_zeros() as usize;
                word &= word - 1;
                cells[cell] += 1;
                let b = cell / n_groups;
                if seen_in_bucket[b] != slot {
                    seen_in_bucket[b] = slot;
                    bucket_all[b] += 1;
                }
                let g = cell % n_groups;
                if seen_in_group[g] != slot {
                    seen_in_group[g] = slot;
                    totals[g] += 1;
                }
            }
        }
    }
    values_of(buckets, &cells, bucket_all, &totals, grand, index)
}

/// The same counts through hash sets (no table proportional to ids × cells).
fn distinct_hashed(buckets: Buckets, rows: &[(u32, &Activity)], index: &GroupIndex) -> MetricValues {
    type Set = HashSet<i64, crate::aggregate::IdBuildHasher>;
    let n_groups = index.len().max(1);
    let mut cells: HashMap<usize, Set> = HashMap::new();
    let mut by_bucket: Vec<Set> = vec![Set::default(); buckets.len()];
    let mut totals: Vec<Set> = vec![Set::default(); n_groups];
    let mut grand = Set::default();
    for &(g, &(_, entity, first, last)) in rows {
        for i in [buckets.index_of(first), buckets.index_of(last)].into_iter().flatten() {
            cells.entry(i * n_groups + g as usize).or_default().insert(entity);
            by_bucket[i].insert(entity);
            totals[g as usize].insert(entity);
            grand.insert(entity);
        }
    }
    let mut counts = vec![0u64; buckets.len() * n_groups];
    for (cell, set) in cells {
        counts[cell] = set.len() as u64;
    }
    let totals: Vec<u64> = totals.iter().map(|s| s.len() as u64).collect();
    let bucket_all = by_bucket.iter().map(|s| s.len() as u64).collect();
    values_of(buckets, &counts, bucket_all, &totals, grand.len() as u64, index)
}

fn values_of(
    buckets: Buckets,
    cells: &[u64],
    bucket_all: Vec<u64>,
    totals: &[u64],
    grand: u64,
    index: &GroupIndex,
) -> MetricValues {
    let n_groups = index.len().max(1);
    MetricValues {
        cells: cells
            .iter()
            .enumerate()
            .filter(|(_, v)| **v > 0)
            .map(|(cell, v)| ((cell / n_groups, index.group(cell % n_groups)), *v))
            .collect(),
        totals: totals
            .iter()
            .enumerate()
            .filter(|(_, v)| **v > 0)
            .map(|(g, v)| (index.group(g), *v))
            .collect(),
        bucket_all,
        grand,
        buckets,
    }
}

fn additive(buckets: Buckets, items: impl Iterator<Item = (i64, UnixMicros, u64)>, index: &GroupIndex) -> MetricValues {
    let mut sums: Vec<(usize, u32, u64)> = Vec::new();
    for (channel, at, n) in items {
        if let (Some(g), Some(i)) = (index.of(channel), buckets.index_of(at)) {
            sums.push((i, g, n));
        }
    }
    let n_groups = index.len().max(1);
    let mut cells = vec![0u64; buckets.len() * n_groups];
    let mut bucket_all = vec![0u64; buckets.len()];
    let mut totals = vec![0u64; n_groups];
    let mut grand = 0;
    for (i, g, n) in sums {
        cells[i * n_groups + g as usize] += n;
        bucket_all[i] += n;
        totals[g as usize] += n;
        grand += n;
    }
    values_of(buckets, &cells, bucket_all, &totals, grand, index)
}

/// The channels metric: a dimension, not an aggregate of the base grain, so
/// every path computes it from the channels snapshot.
pub fn channel_values(query: &Query, channels: &[ChannelDim], grouping: &Grouping) -> MetricValues {
    let wanted = |channel: i64| query.channels.as_ref().is_none_or(|set| set.contains(&channel));
    connected_channels(
        calendar::buckets(query.tz, query.from, query.to, query.interval),
        channels.iter().filter(|c| wanted(c.id)),
        &|c| grouping.of(c),
    )
}

/// The report from each metric's values: zero rows filled in, rows ordered
/// by metric, bucket and group.
pub fn assemble(query: &Query, channels: &[ChannelDim], values: Vec<(Metric, MetricValues)>) -> Report {
    let mut rows = Vec::new();
    let mut bucket_totals = Vec::new();
    let mut totals = Vec::new();
    // Metrics share most of their buckets; each edge is formatted once.
    let mut labels: HashMap<UnixMicros, String> = HashMap::new();
    for (metric, values) in values {
        // Every group that is non-zero anywhere gets a row in every bucket.
        let mut by_group: BTreeMap<&Group, Vec<u64>> = BTreeMap::new();
        for ((i, g), v) in &values.cells {
            if *v > 0 {
                by_group.entry(g).or_insert_with(|| vec![0; values.buckets.len()])[*i] = *v;
            }
        }
        let groups: Vec<(String, &Group, Vec<u64>)> = by_group.into_iter().map(|(g, v)| (g.render(), g, v)).collect();
        rows.reserve(values.buckets.len() * groups.len());
        for i in 0..values.buckets.len() {
            let label = labels
                .entry(values.buckets.edges[i])
                .or_insert_with(|| values.buckets.label(i))
                .clone();
            for (rendered, _, by_bucket) in &groups {
                rows.push(Row {
                    metric: metric.as_str(),
                    bucket_start: label.clone(),
                    group: rendered.clone(),
                    value: by_bucket[i],
                });
            }
            bucket_totals.push(BucketTotal {
                metric: metric.as_str(),
                bucket_start: label,
                value: values.bucket_all[i],
            });
        }
        for (rendered, g, _) in groups {
            totals.push(Total {
                metric: metric.as_str(),
                group: Some(rendered),
                value: values.totals.get(g).copied().unwrap_or(0),
            });
        }
        totals.push(Total {
            metric: metric.as_str(),
            group: None,
            value: values.grand,
        });
    }

    let group_labels = match query.group_by {
        GroupBy::Channel => channels
            .iter()
            .filter_map(|c| Some((c.id.to_string(), c.name.clone()?)))
            .collect(),
        GroupBy::Platform => BTreeMap::new(),
    };
    Report {
        account_id: query.account_id,
        time_zone: query.tz.name().to_string(),
        from: query.from,
        to: query.to,
        interval: query.interval,
        group_by: query.group_by,
        channels: query.channels.as_ref().map(|s| s.iter().copied().collect()),
        rows,
        bucket_totals,
        totals,
        group_labels,
        answered_from: AnsweredFrom::BaseGrain,
    }
}

fn connected_channels<'a>(
    buckets: Buckets,
    channels: impl Iterator<Item = &'a ChannelDim>,
    group_of: &dyn Fn(i64) -> Group,
) -> MetricValues {
    let connected = counts_as_connected;
    let mut cells: HashMap<(usize, Group), u64> = HashMap::new();
    let mut bucket_all = vec![0u64; buckets.len()];
    let mut totals: HashMap<Group, u64> = HashMap::new();
    let mut grand = 0;
    for c in channels {
        let group = group_of(c.id);
        for (i, all) in bucket_all.iter_mut().enumerate() {
            let (start, end) = buckets.bounds(i);
            if connected(c, start, end) {
                *cells.entry((i, group.clone())).or_default() += 1;
                *all += 1;
            }
        }
        if connected(c, buckets.start(), buckets.end()) {
            *totals.entry(group).or_default() += 1;
            grand += 1;
        }
    }
    MetricValues {
        buckets,
        cells,
        bucket_all,
        totals,
        grand,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::rng::Rng;

    fn query(group_by: GroupBy, channels: Option<BTreeSet<i64>>) -> Query {
        Query {
            account_id: 1,
            tz: "Asia/Kathmandu".parse().unwrap(),
            from: NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
            to: NaiveDate::from_ymd_opt(2026, 3, 10).unwrap(),
            interval: Interval::Daily,
            group_by,
            channels,
            metrics: Metric::ALL.into_iter().collect(),
        }
    }

    fn channel(id: i64, platform: &str) -> ChannelDim {
        ChannelDim {
            id,
            account_id: 1,
            platform: Some(platform.into()),
            name: None,
            environment: Some("production".into()),
            connected_at: Some(0),
            disconnected_at: None,
        }
    }

    /// The bitset path (dense and hash-compacted ids) and the hash-set path
    /// count the same, for either grouping and with a channel filter.
    #[test]
    fn distinct_counts_agree_on_every_path() {
        let channels = vec![channel(1, "whatsapp"), channel(2, "whatsapp"), channel(3, "email")];
        let mut rng = Rng::new(9);
        for (group_by, filter) in [
            (GroupBy::Platform, None),
            (GroupBy::Channel, None),
            (GroupBy::Platform, Some([1, 3].into_iter().collect())),
        ] {
            let q = query(group_by, filter);
            let b = calendar::buckets(q.tz, q.from, q.to, q.interval);
            for spread in [1, 1_000_000_007] {
                let rows: Vec<Activity> = (0..3000)
                    .map(|_| {
                        let t = b.start() - 3_600_000_000 + rng.range(0, 12 * 86_400_000_000);
                        // Unknown channel 4 too: its own group.
                        (
                            rng.range(1, 5),
                            rng.range(0, 400) * spread,
                            t,
                            t + rng.range(0, 3_600_000_000),
                        )
                    })
                    .collect();
                let grouping = Grouping::new(q.group_by, &channels);
                let index = GroupIndex::new(&q, &channels, &grouping);
                let fast = distinct(b.clone(), &rows, &index);
                let kept: Vec<(u32, &Activity)> = rows.iter().filter_map(|a| Some((index.of(a.0)?, a))).collect();
                let slow = distinct_hashed(b.clone(), &kept, &index);
                assert_eq!(fast.cells, slow.cells);
                assert_eq!(fast.totals, slow.totals);
                assert_eq!(fast.grand, slow.grand);
                assert!(fast.grand > 0 && fast.cells.len() > 10);
            }
        }
    }
}
