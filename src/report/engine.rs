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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::NaiveDate;
use chrono_tz::Tz;
use serde::Serialize;

use super::distinct::{Counts, DistinctCells};
use crate::aggregate::IdBuildHasher;
use crate::calendar::{self, Buckets, Interval};
pub use crate::metric::Metric;
use crate::metric::{ChannelDim, counts_as_connected, platform_of};
use crate::model::UnixMicros;

/// The engine's maps: keys are small numbers and names of our own, so
/// SipHash's resistance to chosen keys buys nothing and cost a tenth of an
/// answer.
pub type HashMap<K, V> = std::collections::HashMap<K, V, IdBuildHasher>;

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
    /// `(channel, resolved_at or slot_start, conversations)`
    pub resolved: Vec<(i64, UnixMicros, u64)>,
    /// `(channel, slot_start, messages)`
    pub proactive: Vec<(i64, UnixMicros, u64)>,
    /// The account's channels, as of the latest published day.
    pub channels: Vec<ChannelDim>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    pub metric: &'static str,
    /// Shared with every row and total of the bucket: a report has a row
    /// per group, metric and bucket, and a copy of each label per row was
    /// a fifth of an answer's time.
    pub bucket_start: Arc<str>,
    pub group: Arc<str>,
    pub value: u64,
}

/// A bucket's value over all groups together (distinct metrics count an
/// entity once across groups, so this is not the sum of the bucket's rows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BucketTotal {
    pub metric: &'static str,
    pub bucket_start: Arc<str>,
    pub value: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Total {
    pub metric: &'static str,
    pub group: Option<Arc<str>>,
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
    Platform(Arc<str>),
    Channel(i64),
}

impl Group {
    fn render(&self) -> Arc<str> {
        match self {
            Group::Platform(p) => p.clone(),
            Group::Channel(id) => id.to_string().into(),
        }
    }
}

/// Values of one metric: per (bucket, group), per bucket over all groups,
/// per group over the range, and over all groups.
pub struct MetricValues {
    pub buckets: Buckets,
    /// Per group, its value in each bucket (one per bucket). A group whose
    /// values are all zero gets no rows.
    pub cells: HashMap<Group, Vec<u64>>,
    /// One per bucket; a distinct entity counts once however many groups
    /// it is in.
    pub bucket_all: Vec<u64>,
    pub totals: HashMap<Group, u64>,
    pub grand: u64,
}

/// Maps a channel id to its group in a query.
#[derive(Debug)]
pub struct Grouping {
    group_by: GroupBy,
    /// Each name once, shared by the channels of its platform.
    platforms: HashMap<i64, Arc<str>>,
    unknown: Arc<str>,
    /// Every name above, once.
    names: Vec<Arc<str>>,
}

impl Grouping {
    pub fn new(group_by: GroupBy, channels: &[ChannelDim]) -> Self {
        let mut names: BTreeSet<Arc<str>> = BTreeSet::new();
        let mut name = |platform: &str| -> Arc<str> {
            if let Some(known) = names.get(platform) {
                return known.clone();
            }
            let name: Arc<str> = platform.into();
            names.insert(name.clone());
            name
        };
        let platforms = channels.iter().map(|c| (c.id, name(platform_of(Some(c))))).collect();
        let unknown = name(platform_of(None));
        Grouping {
            group_by,
            platforms,
            unknown,
            names: names.into_iter().collect(),
        }
    }

    /// The group of a platform named elsewhere (a rollup row): under this
    /// query's own copy of the name. Names shared between requests would
    /// have every row of every answer count on the same few cache lines, two
    /// cores at a time.
    pub fn platform_named(&self, name: &str) -> Group {
        let local = self.names.iter().find(|n| ***n == *name);
        Group::Platform(local.map_or_else(|| name.into(), Arc::clone))
    }

    pub fn of(&self, channel: i64) -> Group {
        match self.group_by {
            GroupBy::Channel => Group::Channel(channel),
            GroupBy::Platform => Group::Platform(self.platform_of(channel).clone()),
        }
    }

    /// The channel's platform now (`unknown` for a channel not listed).
    pub fn platform_of(&self, channel: i64) -> &Arc<str> {
        self.platforms.get(&channel).unwrap_or(&self.unknown)
    }
}

/// The report of `query` over a whole grain at once.
pub fn compute(query: &Query, grain: &AccountGrain) -> Report {
    let mut counter = Counter::new(query, &grain.channels);
    counter.add(grain);
    counter.finish()
}

/// A report counted from base-grain rows fed a part (a day, say) at a time,
/// in any order: distinct metrics in [`DistinctCells`], additive ones in
/// sums per group and bucket. Parts are counted as they arrive and dropped,
/// so memory holds the counts, not the rows.
#[derive(Debug)]
pub struct Counter {
    query: Query,
    channels: Vec<ChannelDim>,
    groups: GroupNumbers,
    contacts: Option<(Buckets, DistinctCells)>,
    agents: Option<(Buckets, DistinctCells)>,
    resolved: Option<(Buckets, Sums)>,
    proactive: Option<(Buckets, Sums)>,
}

/// Sums by group, then bucket.
type Sums = Vec<Vec<u64>>;

impl Counter {
    /// `channels`: the account's channels (their groups and the channels metric).
    pub fn new(query: &Query, channels: &[ChannelDim]) -> Counter {
        let wants = |m| query.metrics.contains(&m);
        let interval = || calendar::buckets(query.tz, query.from, query.to, query.interval);
        let distinct = |b: Buckets| {
            let cells = DistinctCells::new(b.len());
            (b, cells)
        };
        let mut groups = GroupNumbers {
            wanted: query.channels.clone(),
            grouping: Grouping::new(query.group_by, channels),
            groups: Vec::new(),
            by_channel: HashMap::default(),
            last: None,
        };
        // Known channels first, so group numbers do not depend on row order.
        for c in channels {
            groups.of(c.id);
        }
        Counter {
            contacts: wants(Metric::UniqueMonthlyContacts)
                .then(|| distinct(calendar::umc_months(query.tz, query.from, query.to))),
            agents: wants(Metric::ActiveAgents).then(|| distinct(interval())),
            resolved: wants(Metric::ResolvedConversations).then(|| (interval(), Vec::new())),
            proactive: wants(Metric::ProactiveMessages).then(|| (interval(), Vec::new())),
            query: query.clone(),
            channels: channels.to_vec(),
            groups,
        }
    }

    /// Counts a part's rows (its `channels` are not read).
    pub fn add(&mut self, part: &AccountGrain) {
        for (metric, rows) in [
            (Metric::UniqueMonthlyContacts, &part.contacts),
            (Metric::ActiveAgents, &part.agents),
        ] {
            for &(channel, entity, first, last) in rows {
                self.add_entity(metric, channel, entity, first, last);
            }
        }
        for (metric, rows) in [
            (Metric::ResolvedConversations, &part.resolved),
            (Metric::ProactiveMessages, &part.proactive),
        ] {
            for &(channel, at, n) in rows {
                self.add_count(metric, channel, at, n);
            }
        }
    }

    /// Counts rows of a distinct metric given as columns (`entities[i]`
    /// active on `channels[i]` from `first[i]` to `last[i]`, as in [`Activity`]).
    pub fn add_entities(&mut self, metric: Metric, channels: &[i64], entities: &[i64], first: &[i64], last: &[i64]) {
        let counting = match metric {
            Metric::UniqueMonthlyContacts => &mut self.contacts,
            Metric::ActiveAgents => &mut self.agents,
            _ => return,
        };
        let Some((buckets, cells)) = counting else { return };
        let n = channels.len().min(entities.len()).min(first.len()).min(last.len());
        // Buckets are contiguous: when the earliest first and the latest
        // last instant fall in one bucket, so does every row (a day inside
        // a month, say), and no row needs a search.
        let one_bucket = match (first[..n].iter().min(), last[..n].iter().max()) {
            (Some(lo), Some(hi)) => Some(buckets.index_of(*lo)).filter(|b| b.is_some() && *b == buckets.index_of(*hi)),
            _ => None,
        }
        .flatten();
        // Rows come in runs of one channel (files are sorted by channel).
        let mut i = 0;
        while i < n {
            let channel = channels[i];
            let run = i + channels[i..n].iter().take_while(|c| **c == channel).count();
            if let Some(g) = self.groups.of(channel) {
                let g = g as usize;
                match one_bucket {
                    Some(b) => cells.insert_all(g, b, &entities[i..run]),
                    None => {
                        for k in i..run {
                            let a = buckets.index_of(first[k]);
                            let b = buckets.index_of(last[k]).filter(|b| Some(*b) != a);
                            for bucket in [a, b].into_iter().flatten() {
                                cells.insert(g, bucket, entities[k]);
                            }
                        }
                    }
                }
            }
            i = run;
        }
    }

    /// Counts rows of an additive metric given as columns: `counts[i]` (or
    /// one) on `channels[i]` at `at[i]`.
    pub fn add_counts(&mut self, metric: Metric, channels: &[i64], at: &[i64], counts: Option<&[i64]>) {
        for i in 0..channels.len().min(at.len()) {
            let n = counts.map_or(Some(1), |c| c.get(i).copied()).unwrap_or(0);
            self.add_count(metric, channels[i], at[i], n.max(0) as u64);
        }
    }

    #[inline]
    fn add_entity(&mut self, metric: Metric, channel: i64, entity: i64, first: UnixMicros, last: UnixMicros) {
        let counting = match metric {
            Metric::UniqueMonthlyContacts => &mut self.contacts,
            Metric::ActiveAgents => &mut self.agents,
            _ => return,
        };
        let Some((buckets, cells)) = counting else { return };
        let Some(g) = self.groups.of(channel) else { return };
        let a = buckets.index_of(first);
        let b = buckets.index_of(last).filter(|b| Some(*b) != a);
        for i in [a, b].into_iter().flatten() {
            cells.insert(g as usize, i, entity);
        }
    }

    #[inline]
    fn add_count(&mut self, metric: Metric, channel: i64, at: UnixMicros, n: u64) {
        let counting = match metric {
            Metric::ResolvedConversations => &mut self.resolved,
            Metric::ProactiveMessages => &mut self.proactive,
            _ => return,
        };
        let Some((buckets, sums)) = counting else { return };
        if let (Some(g), Some(i)) = (self.groups.of(channel), buckets.index_of(at)) {
            let g = g as usize;
            if sums.len() <= g {
                sums.resize(g + 1, vec![0; buckets.len()]);
            }
            sums[g][i] += n;
        }
    }

    /// The report of everything added.
    pub fn finish(self) -> Report {
        let n_groups = self.groups.groups.len();
        let distinct = |(buckets, cells): (Buckets, DistinctCells)| {
            let counts = cells.finish(n_groups);
            (buckets, counts)
        };
        let additive = |(buckets, mut sums): (Buckets, Sums)| {
            sums.resize(n_groups, vec![0; buckets.len()]);
            let counts = Counts {
                bucket_all: (0..buckets.len()).map(|i| sums.iter().map(|g| g[i]).sum()).collect(),
                totals: sums.iter().map(|g| g.iter().sum()).collect(),
                grand: sums.iter().flatten().sum(),
                cells: sums,
            };
            (buckets, counts)
        };
        let mut counted = [
            (Metric::UniqueMonthlyContacts, self.contacts.map(distinct)),
            (Metric::ActiveAgents, self.agents.map(distinct)),
            (Metric::ResolvedConversations, self.resolved.map(additive)),
            (Metric::ProactiveMessages, self.proactive.map(additive)),
        ];
        let grouping = Grouping::new(self.query.group_by, &self.channels);
        let mut values = Vec::new();
        for metric in Metric::ALL.into_iter().filter(|m| self.query.metrics.contains(m)) {
            let v = match counted.iter_mut().find(|(m, _)| *m == metric) {
                Some((_, counts)) => {
                    let (buckets, counts) = counts.take().expect("counted once per metric");
                    values_of(buckets, counts, &self.groups.groups)
                }
                None => channel_values(&self.query, &self.channels, &grouping),
            };
            values.push((metric, v));
        }
        assemble(&self.query, &self.channels, values)
    }
}

/// Channels of a query mapped to small group numbers (rows come sorted by
/// channel, so the last lookup is kept); `None` for filtered-out channels.
#[derive(Debug)]
struct GroupNumbers {
    wanted: Option<BTreeSet<i64>>,
    grouping: Grouping,
    groups: Vec<Group>,
    by_channel: HashMap<i64, Option<u32>>,
    last: Option<(i64, Option<u32>)>,
}

impl GroupNumbers {
    fn of(&mut self, channel: i64) -> Option<u32> {
        if let Some((c, g)) = self.last
            && c == channel
        {
            return g;
        }
        let g = match self.by_channel.get(&channel) {
            Some(g) => *g,
            None => {
                let g = if self.wanted.as_ref().is_some_and(|set| !set.contains(&channel)) {
                    None
                } else {
                    let group = self.grouping.of(channel);
                    Some(match self.groups.iter().position(|g| *g == group) {
                        Some(i) => i as u32,
                        None => {
                            self.groups.push(group);
                            (self.groups.len() - 1) as u32
                        }
                    })
                };
                self.by_channel.insert(channel, g);
                g
            }
        };
        self.last = Some((channel, g));
        g
    }
}

/// A metric's values from its counts by group number.
fn values_of(buckets: Buckets, counts: Counts, groups: &[Group]) -> MetricValues {
    let mut totals = HashMap::default();
    for (g, total) in counts.totals.iter().enumerate() {
        if *total > 0 {
            totals.insert(groups[g].clone(), *total);
        }
    }
    let cells = groups.iter().cloned().zip(counts.cells).collect();
    MetricValues {
        buckets,
        cells,
        bucket_all: counts.bucket_all,
        totals,
        grand: counts.grand,
    }
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
    let mut labels: HashMap<UnixMicros, Arc<str>> = HashMap::default();
    for (metric, values) in values {
        // Every group that is non-zero anywhere gets a row in every bucket.
        let mut by_group: Vec<(&Group, &Vec<u64>)> = values
            .cells
            .iter()
            .filter(|(_, by_bucket)| by_bucket.iter().any(|v| *v > 0))
            .collect();
        by_group.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let groups: Vec<(Arc<str>, &Group, &Vec<u64>)> =
            by_group.into_iter().map(|(g, v)| (g.render(), g, v)).collect();
        rows.reserve(values.buckets.len() * groups.len());
        bucket_totals.reserve(values.buckets.len());
        totals.reserve(groups.len() + 1);
        for i in 0..values.buckets.len() {
            let label = labels
                .entry(values.buckets.edges[i])
                .or_insert_with(|| values.buckets.label(i).into())
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
    let mut cells: HashMap<Group, Vec<u64>> = HashMap::default();
    let mut bucket_all = vec![0u64; buckets.len()];
    let mut totals: HashMap<Group, u64> = HashMap::default();
    let mut grand = 0;
    for c in channels {
        let group = group_of(c.id);
        let by_bucket = cells.entry(group.clone()).or_insert_with(|| vec![0; buckets.len()]);
        for (i, all) in bucket_all.iter_mut().enumerate() {
            let (start, end) = buckets.bounds(i);
            if connected(c, start, end) {
                by_bucket[i] += 1;
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

    fn channel(id: i64, platform: &str) -> ChannelDim {
        ChannelDim::connected(id, 1, platform)
    }

    /// A platform named by a rollup row groups under the query's own copy of
    /// the name (the one its channels group under), never the row's shared
    /// one; a name no channel has any more still groups by itself.
    #[test]
    fn a_platform_named_elsewhere_groups_under_the_querys_own_name() {
        let grouping = Grouping::new(GroupBy::Platform, &[channel(1, "whatsapp"), channel(2, "email")]);
        let shared: Arc<str> = "whatsapp".into();
        let (Group::Platform(named), Group::Platform(own)) = (grouping.platform_named(&shared), grouping.of(1)) else {
            panic!("grouped by platform");
        };
        assert!(Arc::ptr_eq(&named, &own), "the query's own name");
        assert!(!Arc::ptr_eq(&named, &shared));
        assert_eq!(grouping.platform_named("line"), Group::Platform("line".into()));
    }

    /// Fed in parts, in any order, the counter gives what one whole grain
    /// gives: parts only change when rows are counted, never what.
    #[test]
    fn parts_in_any_order_count_as_the_whole() {
        let channels = vec![channel(1, "whatsapp"), channel(2, "whatsapp"), channel(3, "email")];
        let mut rng = Rng::new(9);
        for (group_by, filter) in [
            (GroupBy::Platform, None),
            (GroupBy::Channel, None),
            (GroupBy::Platform, Some([1, 3].into_iter().collect())),
        ] {
            let query = Query {
                account_id: 1,
                tz: "Asia/Kathmandu".parse().unwrap(),
                from: NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
                to: NaiveDate::from_ymd_opt(2026, 3, 10).unwrap(),
                interval: Interval::Daily,
                group_by,
                channels: filter,
                metrics: Metric::ALL.into_iter().collect(),
            };
            let start = calendar::range(&query.tz, query.from, query.to).0;
            let mut grain = AccountGrain {
                channels: channels.clone(),
                ..AccountGrain::default()
            };
            for _ in 0..3000 {
                let t = start - 3_600_000_000 + rng.range(0, 12 * 86_400_000_000);
                // Unknown channel 4 too: its own group.
                let c = rng.range(1, 5);
                grain
                    .contacts
                    .push((c, rng.range(0, 400), t, t + rng.range(0, 3_600_000_000)));
                grain
                    .agents
                    .push((c, rng.range(0, 40), t, t + rng.range(0, 3_600_000_000)));
                grain.resolved.push((c, t, 1));
                grain.proactive.push((c, t, rng.range(1, 4) as u64));
            }
            let whole = compute(&query, &grain);
            assert!(whole.rows.iter().filter(|r| r.value > 0).count() > 50);
            let mut counter = Counter::new(&query, &channels);
            for part in (0..4).rev() {
                let slice = |v: usize| (v * part / 4)..(v * (part + 1) / 4);
                counter.add(&AccountGrain {
                    contacts: grain.contacts[slice(grain.contacts.len())].to_vec(),
                    agents: grain.agents[slice(grain.agents.len())].to_vec(),
                    resolved: grain.resolved[slice(grain.resolved.len())].to_vec(),
                    proactive: grain.proactive[slice(grain.proactive.len())].to_vec(),
                    channels: Vec::new(),
                });
            }
            assert_eq!(counter.finish(), whole);

            // As a loader feeds it: columns of day-sized chunks sorted by
            // channel, whose rows often all fall in one bucket.
            let mut counter = Counter::new(&query, &channels);
            let day = |t: i64| t.div_euclid(86_400_000_000);
            let mut contacts = grain.contacts.clone();
            contacts.sort_by_key(|r| (day(r.2), r.0, r.1));
            let mut agents = grain.agents.clone();
            agents.sort_by_key(|r| (day(r.2), r.0, r.1));
            for (metric, rows) in [
                (Metric::UniqueMonthlyContacts, contacts),
                (Metric::ActiveAgents, agents),
            ] {
                for chunk in rows.chunk_by(|a, b| day(a.2) == day(b.2)) {
                    let column = |f: fn(&Activity) -> i64| chunk.iter().map(f).collect::<Vec<_>>();
                    counter.add_entities(
                        metric,
                        &column(|r| r.0),
                        &column(|r| r.1),
                        &column(|r| r.2),
                        &column(|r| r.3),
                    );
                }
            }
            for (metric, rows) in [
                (Metric::ResolvedConversations, &grain.resolved),
                (Metric::ProactiveMessages, &grain.proactive),
            ] {
                let column = |f: fn(&(i64, i64, u64)) -> i64| rows.iter().map(f).collect::<Vec<_>>();
                let counts = column(|r| r.2 as i64);
                let ones = counts.iter().all(|n| *n == 1);
                counter.add_counts(
                    metric,
                    &column(|r| r.0),
                    &column(|r| r.1),
                    (!ones).then_some(&counts[..]),
                );
            }
            assert_eq!(counter.finish(), whole);
        }
    }
}
