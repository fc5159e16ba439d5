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

use super::buckets::{self, Buckets, Interval};
use crate::aggregate::ChannelDim;
use crate::model::UnixMicros;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Metric {
    ActiveAgents,
    Channels,
    ProactiveMessages,
    ResolvedConversations,
    UniqueMonthlyContacts,
}

impl Metric {
    /// In the order rows are reported (by JSON name).
    pub const ALL: [Metric; 5] = [
        Metric::ActiveAgents,
        Metric::Channels,
        Metric::ProactiveMessages,
        Metric::ResolvedConversations,
        Metric::UniqueMonthlyContacts,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::ActiveAgents => "active_agents",
            Metric::Channels => "channels",
            Metric::ProactiveMessages => "proactive_messages",
            Metric::ResolvedConversations => "resolved_conversations",
            Metric::UniqueMonthlyContacts => "unique_monthly_contacts",
        }
    }
}

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

/// Values of one metric: per (bucket, group), per group over the range, and
/// over all groups.
pub struct MetricValues {
    pub buckets: Buckets,
    pub cells: HashMap<(usize, Group), u64>,
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
            platforms: channels
                .iter()
                .map(|c| (c.id, c.platform.clone().unwrap_or_else(|| "unknown".into())))
                .collect(),
        }
    }

    pub fn of(&self, channel: i64) -> Group {
        match self.group_by {
            GroupBy::Channel => Group::Channel(channel),
            GroupBy::Platform => Group::Platform(
                self.platforms
                    .get(&channel)
                    .cloned()
                    .unwrap_or_else(|| "unknown".into()),
            ),
        }
    }
}

pub fn compute(query: &Query, grain: &AccountGrain) -> Report {
    let grouping = Grouping::new(query.group_by, &grain.channels);
    let group_of = |channel: i64| grouping.of(channel);
    let wanted = |channel: i64| query.channels.as_ref().is_none_or(|set| set.contains(&channel));
    let interval_buckets = buckets::buckets(query.tz, query.from, query.to, query.interval);

    let mut values = Vec::new();
    for metric in Metric::ALL.into_iter().filter(|m| query.metrics.contains(m)) {
        let v = match metric {
            Metric::UniqueMonthlyContacts => distinct(
                buckets::umc_months(query.tz, query.from, query.to),
                grain.contacts.iter().filter(|a| wanted(a.0)),
                &group_of,
            ),
            Metric::ActiveAgents => distinct(
                interval_buckets.clone(),
                grain.agents.iter().filter(|a| wanted(a.0)),
                &group_of,
            ),
            Metric::ResolvedConversations => additive(
                interval_buckets.clone(),
                grain.resolved.iter().filter(|r| wanted(r.0)).map(|r| (r.0, r.1, 1)),
                &group_of,
            ),
            Metric::ProactiveMessages => additive(
                interval_buckets.clone(),
                grain.proactive.iter().filter(|p| wanted(p.0)).copied(),
                &group_of,
            ),
            Metric::Channels => channel_values(query, &grain.channels, &grouping),
        };
        values.push((metric, v));
    }
    assemble(query, &grain.channels, values)
}

/// The channels metric: a dimension, not an aggregate of the base grain, so
/// every path computes it from the channels snapshot.
pub fn channel_values(query: &Query, channels: &[ChannelDim], grouping: &Grouping) -> MetricValues {
    let wanted = |channel: i64| query.channels.as_ref().is_none_or(|set| set.contains(&channel));
    connected_channels(
        buckets::buckets(query.tz, query.from, query.to, query.interval),
        channels
            .iter()
            .filter(|c| wanted(c.id) && c.environment.as_deref() == Some("production")),
        &|c| grouping.of(c),
    )
}

/// The report from each metric's values: zero rows filled in, rows ordered
/// by metric, bucket and group.
pub fn assemble(query: &Query, channels: &[ChannelDim], values: Vec<(Metric, MetricValues)>) -> Report {
    let mut rows = Vec::new();
    let mut totals = Vec::new();
    for (metric, values) in values {
        // Every group that is non-zero anywhere gets a row in every bucket.
        let groups: BTreeSet<&Group> = values
            .cells
            .iter()
            .filter(|(_, v)| **v > 0)
            .map(|((_, g), _)| g)
            .collect();
        for i in 0..values.buckets.len() {
            let label = values.buckets.label(i);
            for g in &groups {
                rows.push(Row {
                    metric: metric.as_str(),
                    bucket_start: label.clone(),
                    group: g.render(),
                    value: values.cells.get(&(i, (*g).clone())).copied().unwrap_or(0),
                });
            }
        }
        for g in &groups {
            totals.push(Total {
                metric: metric.as_str(),
                group: Some(g.render()),
                value: values.totals.get(*g).copied().unwrap_or(0),
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
        totals,
        group_labels,
        answered_from: AnsweredFrom::BaseGrain,
    }
}

fn distinct<'a>(
    buckets: Buckets,
    activity: impl Iterator<Item = &'a Activity>,
    group_of: &dyn Fn(i64) -> Group,
) -> MetricValues {
    let mut cells: HashMap<(usize, Group), HashSet<i64>> = HashMap::new();
    let mut totals: HashMap<Group, HashSet<i64>> = HashMap::new();
    let mut grand: HashSet<i64> = HashSet::new();
    for &(channel, entity, first, last) in activity {
        let group = group_of(channel);
        for t in [first, last] {
            if let Some(i) = buckets.index_of(t) {
                cells.entry((i, group.clone())).or_default().insert(entity);
                totals.entry(group.clone()).or_default().insert(entity);
                grand.insert(entity);
            }
        }
    }
    MetricValues {
        buckets,
        cells: cells.into_iter().map(|(k, s)| (k, s.len() as u64)).collect(),
        totals: totals.into_iter().map(|(k, s)| (k, s.len() as u64)).collect(),
        grand: grand.len() as u64,
    }
}

fn additive(
    buckets: Buckets,
    items: impl Iterator<Item = (i64, UnixMicros, u64)>,
    group_of: &dyn Fn(i64) -> Group,
) -> MetricValues {
    let mut cells: HashMap<(usize, Group), u64> = HashMap::new();
    let mut totals: HashMap<Group, u64> = HashMap::new();
    let mut grand = 0;
    for (channel, at, n) in items {
        if let Some(i) = buckets.index_of(at) {
            let group = group_of(channel);
            *cells.entry((i, group.clone())).or_default() += n;
            *totals.entry(group).or_default() += n;
            grand += n;
        }
    }
    MetricValues {
        buckets,
        cells,
        totals,
        grand,
    }
}

fn connected_channels<'a>(
    buckets: Buckets,
    channels: impl Iterator<Item = &'a ChannelDim>,
    group_of: &dyn Fn(i64) -> Group,
) -> MetricValues {
    let connected = |c: &ChannelDim, start: UnixMicros, end: UnixMicros| {
        c.connected_at.is_some_and(|at| at < end) && c.disconnected_at.is_none_or(|d| d > start)
    };
    let mut cells: HashMap<(usize, Group), u64> = HashMap::new();
    let mut totals: HashMap<Group, u64> = HashMap::new();
    let mut grand = 0;
    for c in channels {
        let group = group_of(c.id);
        for i in 0..buckets.len() {
            let (start, end) = buckets.bounds(i);
            if connected(c, start, end) {
                *cells.entry((i, group.clone())).or_default() += 1;
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
        totals,
        grand,
    }
}
