//! Rollup cells (pure): what each channel of an account did in one calendar
//! bucket of the account's zone, and the rows a rollup file holds.
//!
//! What must always hold:
//! - a daily cell is computed from the base grain exactly as the report
//!   engine counts it (first and last instant of an entity's UTC hour decide
//!   its local dates), so any whole-bucket query answers the same from cells;
//! - a coarser cell is the channel-wise union (distinct) or sum (additive) of
//!   the cells of the dates it covers, never a sum of distinct counts;
//! - platform and all-channel values are unions over channel id lists.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{Days, NaiveDate};
use chrono_tz::Tz;

use crate::aggregate::{ChannelDim, IdBuildHasher};
use crate::calendar::{self, Buckets, Interval};
use crate::metric::{Metric, counts_as_connected, platform_of};
use crate::model::{MICROS_PER_DAY, UnixMicros, utc_midnight};

/// What one channel did in one bucket. Id lists are sorted and distinct.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cell {
    pub contacts: Vec<i64>,
    pub agents: Vec<i64>,
    pub resolved: u64,
    pub proactive: u64,
}

impl Cell {
    fn is_empty(&self) -> bool {
        self.contacts.is_empty() && self.agents.is_empty() && self.resolved == 0 && self.proactive == 0
    }
}

/// Cells of one bucket, by channel id.
pub type Cells = BTreeMap<i64, Cell>;

/// Accumulates base-grain rows of one account into the cells of the local
/// dates `first..=last`.
#[derive(Debug)]
pub struct DailyBuilder {
    buckets: Buckets,
    cells: Vec<HashMap<i64, Cell, IdBuildHasher>>,
}

impl DailyBuilder {
    pub fn new(tz: Tz, first: NaiveDate, last: NaiveDate) -> Self {
        let buckets = calendar::buckets(tz, first, last, Interval::Daily);
        let cells = vec![HashMap::default(); buckets.len()];
        DailyBuilder { buckets, cells }
    }

    /// `[start, end)` of the dates being built.
    pub fn span(&self) -> (UnixMicros, UnixMicros) {
        (self.buckets.start(), self.buckets.end())
    }

    fn cell(&mut self, i: usize, channel: i64) -> &mut Cell {
        self.cells[i].entry(channel).or_default()
    }

    /// Whether the day grain decides these dates exactly (see
    /// [`Buckets::cut_each_utc_day_at_most_once`]).
    pub fn cut_each_utc_day_at_most_once(&self) -> bool {
        self.buckets.cut_each_utc_day_at_most_once()
    }

    /// One row of contact_activity (an entity's first and last instant in a
    /// UTC hour) or, where local dates cut each UTC day at most once, of
    /// contact_days (the 15-minute slots of its first and last message of a
    /// UTC day).
    pub fn contact(&mut self, channel: i64, contact: i64, first_at: UnixMicros, last_at: UnixMicros) {
        for i in self.indices(first_at, last_at).into_iter().flatten() {
            push_bounded(&mut self.cell(i, channel).contacts, contact);
        }
    }

    pub fn agent(&mut self, channel: i64, agent: i64, first_at: UnixMicros, last_at: UnixMicros) {
        for i in self.indices(first_at, last_at).into_iter().flatten() {
            push_bounded(&mut self.cell(i, channel).agents, agent);
        }
    }

    /// Conversations resolved at `at` (one of resolved_conversations, or the
    /// count of a resolved_slots slot).
    pub fn resolved(&mut self, channel: i64, at: UnixMicros, conversations: u64) {
        if let Some(i) = self.buckets.index_of(at) {
            self.cell(i, channel).resolved += conversations;
        }
    }

    pub fn proactive(&mut self, channel: i64, slot_start: UnixMicros, messages: u64) {
        if let Some(i) = self.buckets.index_of(slot_start) {
            self.cell(i, channel).proactive += messages;
        }
    }

    fn indices(&self, first_at: UnixMicros, last_at: UnixMicros) -> [Option<usize>; 2] {
        let a = self.buckets.index_of(first_at);
        let b = self.buckets.index_of(last_at).filter(|b| Some(*b) != a);
        [a, b]
    }

    /// The cells of every date, id lists sorted and distinct. A date is its
    /// bucket's first instant's: a date the zone skipped (Samoa's
    /// 2011-12-30) has no bucket, so the dates are not `first` onwards.
    pub fn finish(self) -> Vec<(NaiveDate, Cells)> {
        let buckets = self.buckets;
        self.cells
            .into_iter()
            .enumerate()
            .map(|(i, cells)| {
                let cells = cells
                    .into_iter()
                    .map(|(channel, mut cell)| {
                        sort_distinct(&mut cell.contacts);
                        sort_distinct(&mut cell.agents);
                        (channel, cell)
                    })
                    .collect();
                (calendar::local_date(&buckets.tz, buckets.edges[i]), cells)
            })
            .collect()
    }
}

/// Appends an id; when the list's spare room runs out it is deduplicated
/// first, so an entity active in many hours takes one slot, not one per hour.
fn push_bounded(ids: &mut Vec<i64>, id: i64) {
    if ids.len() == ids.capacity() && ids.len() >= 64 {
        sort_distinct(ids);
        // Keep at least half the room free so the next dedup is amortized.
        ids.reserve(ids.len().max(64));
    }
    ids.push(id);
}

fn sort_distinct(ids: &mut Vec<i64>) {
    ids.sort_unstable();
    ids.dedup();
}

/// Concatenated lists of at most this many ids are counted by an unstable
/// sort, which needs no memory of its own; longer ones by the stable sort,
/// which merges the sorted lists they are made of instead of sorting anew.
const SORT_UP_TO: usize = 4096;

/// Sorts `ids`, a concatenation of sorted lists, drops repeats, and counts
/// what is left.
fn sort_runs_distinct(ids: &mut Vec<i64>) -> u64 {
    sort_runs_distinct_up_to(ids, SORT_UP_TO)
}

fn sort_runs_distinct_up_to(ids: &mut Vec<i64>, unstable_up_to: usize) -> u64 {
    if ids.len() <= unstable_up_to {
        ids.sort_unstable();
    } else {
        ids.sort();
    }
    ids.dedup();
    ids.len() as u64
}

/// The channel-wise union of cells of several buckets. The first bucket's
/// cells are the start (a bucket built from one other, as a quarter's first
/// month, is that one's cells as they are); a channel's lists are moved when
/// one bucket alone has it; otherwise its sorted lists are concatenated and
/// counted as distinct counts do ([`sort_runs_distinct`]).
pub fn merge(children: impl IntoIterator<Item = Cells>) -> Cells {
    let mut children = children.into_iter();
    let mut out = children.next().unwrap_or_default();
    let mut joined: std::collections::BTreeSet<i64> = std::collections::BTreeSet::new();
    for cells in children {
        for (channel, cell) in cells {
            match out.entry(channel) {
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(cell);
                }
                std::collections::btree_map::Entry::Occupied(mut e) => {
                    let into = e.get_mut();
                    joined.insert(channel);
                    into.contacts.extend(cell.contacts);
                    into.agents.extend(cell.agents);
                    into.resolved += cell.resolved;
                    into.proactive += cell.proactive;
                }
            }
        }
    }
    for channel in joined {
        if let Some(cell) = out.get_mut(&channel) {
            for ids in [&mut cell.contacts, &mut cell.agents] {
                sort_runs_distinct(ids);
            }
        }
    }
    out.retain(|_, c| !c.is_empty());
    out
}

/// How a rollup row is grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RollupGroup {
    All,
    Channel,
    Platform,
}

impl RollupGroup {
    pub fn as_str(self) -> &'static str {
        match self {
            RollupGroup::All => "all",
            RollupGroup::Channel => "channel",
            RollupGroup::Platform => "platform",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [RollupGroup::All, RollupGroup::Channel, RollupGroup::Platform]
            .into_iter()
            .find(|g| g.as_str() == s)
    }
}

/// The metric names of rollup rows. Contacts are `unique_contacts` at every
/// interval; the report's unique monthly contacts are its monthly rows.
pub const UNIQUE_CONTACTS: &str = "unique_contacts";

/// `metric`'s name in a rollup file's `metric` column.
pub fn rollup_metric_name(metric: Metric) -> &'static str {
    match metric {
        Metric::UniqueMonthlyContacts => UNIQUE_CONTACTS,
        other => other.as_str(),
    }
}

/// What a rollup row's value is of: one channel, one platform or every
/// channel. The file stores it as `group_by` and `group_key` (the channel id
/// in decimal, the platform name, or null); in memory a channel is its id
/// and a platform name is shared by the rows that name it, so building,
/// decoding and reading rows allocates no string per row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowGroup {
    All,
    Channel(i64),
    Platform(PlatformName),
}

/// A platform's name, shared by the rows that name it. One pointer wide
/// (an `Arc<str>` is two): with it a [`RowGroup`] takes 16 bytes and a
/// [`RollupRow`] 48. Equal when the names are.
#[derive(Clone, PartialEq, Eq)]
pub struct PlatformName(Arc<String>);

impl PlatformName {
    pub fn new(name: &str) -> Self {
        PlatformName(Arc::new(name.to_string()))
    }

    /// Whether both are one allocation (then they are equal without
    /// comparing bytes).
    pub fn same_allocation(a: &Self, b: &Self) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }
}

impl std::ops::Deref for PlatformName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for PlatformName {
    fn as_ref(&self) -> &str {
        self
    }
}

impl std::fmt::Debug for PlatformName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

impl From<&str> for PlatformName {
    fn from(name: &str) -> Self {
        PlatformName::new(name)
    }
}

impl RowGroup {
    pub fn kind(&self) -> RollupGroup {
        match self {
            RowGroup::All => RollupGroup::All,
            RowGroup::Channel(_) => RollupGroup::Channel,
            RowGroup::Platform(_) => RollupGroup::Platform,
        }
    }
}

/// Where a channel row's ids lie in its bucket's id buffer: a bucket keeps
/// every list of its rows back to back in one buffer, so a fleet's night
/// allocates (and frees) a buffer per account bucket rather than a list per
/// channel and metric, and its threads stop queueing on the allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdSpan {
    /// 32 bits each (one account's bucket holds far fewer ids): a fleet's
    /// night holds every account's rows of a bucket at once, and with these,
    /// `metric` an enum and [`PlatformName`] a [`RollupRow`] takes 48 bytes
    /// rather than 88.
    pub start: u32,
    pub len: u32,
}

impl IdSpan {
    /// This span of `ids` (empty where it lies outside, which no bucket
    /// built or decoded here does).
    pub fn of(self, ids: &[i64]) -> &[i64] {
        let start = self.start as usize;
        ids.get(start..start.saturating_add(self.len as usize))
            .unwrap_or_default()
    }

    /// Appends `list` to `ids`, where it is then found by the returned span.
    pub fn append(ids: &mut Vec<i64>, list: &[i64]) -> IdSpan {
        // One account's bucket would need 32 GiB of ids to pass this.
        u32::try_from(ids.len() + list.len()).expect("an account bucket holds fewer than 2^32 ids");
        let span = IdSpan {
            start: ids.len() as u32,
            len: list.len() as u32,
        };
        ids.extend_from_slice(list);
        span
    }
}

/// One row of a rollup file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollupRow {
    pub metric: Metric,
    pub group: RowGroup,
    pub value: u64,
    /// Channel rows of distinct metrics: the ids counted, in the bucket's
    /// id buffer.
    pub ids: Option<IdSpan>,
    /// Channel rows: the channel's platform when the row was computed, which
    /// its bucket's platform rows count it under. A channel's platform can
    /// change later; a reader tells such rows by this.
    pub platform: Option<PlatformName>,
}

impl RollupRow {
    /// Ids the row carries (none when they were not read).
    pub fn id_count(&self) -> usize {
        self.ids.map_or(0, |span| span.len as usize)
    }
}

/// Each channel's platform, named once per account rather than once per
/// bucket: the names sorted (the order of platform rows), and each channel
/// by id with the index of its name.
#[derive(Debug, Clone)]
pub struct Platforms {
    names: Vec<PlatformName>,
    by_channel: Vec<(i64, usize)>,
    unknown: usize,
}

impl Platforms {
    pub fn of(channels: &[ChannelDim]) -> Self {
        let unknown_name = platform_of(None);
        let mut names: Vec<&str> = channels.iter().map(|c| platform_of(Some(c))).collect();
        names.push(unknown_name);
        names.sort_unstable();
        names.dedup();
        let index = |name: &str| names.binary_search(&name).expect("named above");
        // A channel listed twice takes its last platform, as a map would.
        let mut by_channel: Vec<(i64, usize)> = Vec::with_capacity(channels.len());
        for c in channels {
            by_channel.push((c.id, index(platform_of(Some(c)))));
        }
        by_channel.reverse();
        by_channel.sort_by_key(|(id, _)| *id);
        by_channel.dedup_by_key(|(id, _)| *id);
        let unknown = index(unknown_name);
        Platforms {
            names: names.into_iter().map(PlatformName::new).collect(),
            by_channel,
            unknown,
        }
    }

    fn index(&self, channel: i64) -> usize {
        match self.by_channel.binary_search_by_key(&channel, |(id, _)| *id) {
            Ok(at) => self.by_channel[at].1,
            Err(_) => self.unknown,
        }
    }

    /// The channel's platform (`unknown` for a channel not listed).
    pub fn name_of(&self, channel: i64) -> &PlatformName {
        &self.names[self.index(channel)]
    }
}

/// The rows of one bucket: every metric by channel (with id lists for the
/// distinct ones), by platform and over all channels, and the id buffer the
/// channel rows' lists lie in (in row order). Zero values are left out. A
/// fleet's night builds rows for every account of every bucket it touches,
/// so this allocates little besides the rows and the one buffer.
pub fn rows(
    cells: &Cells,
    platforms: &Platforms,
    channels: &[ChannelDim],
    start: UnixMicros,
    end: UnixMicros,
) -> (Vec<RollupRow>, Vec<i64>) {
    let n_platforms = platforms.names.len();
    let mut out = Vec::with_capacity(5 * (1 + cells.len().max(channels.len()) + n_platforms));
    let mut ids = Vec::with_capacity(cells.values().map(|c| c.contacts.len() + c.agents.len()).sum());
    // Per platform: a sum, or the size of a union; reused by every metric.
    let mut by_platform = vec![0u64; n_platforms];

    // Active agents, then channels, proactive messages, resolved
    // conversations and unique contacts: the order rows have always had.
    let all = distinct(cells, platforms, IdList::Agents, &mut by_platform);
    push_all(&mut out, Metric::ActiveAgents, all);
    push_channels_with_ids(
        &mut out,
        &mut ids,
        Metric::ActiveAgents,
        cells,
        platforms,
        IdList::Agents,
    );
    push_platforms(&mut out, Metric::ActiveAgents, platforms, &by_platform);

    let mut connected: Vec<i64> = channels
        .iter()
        .filter(|c| counts_as_connected(c, start, end))
        .map(|c| c.id)
        .collect();
    connected.sort_unstable();
    connected.dedup();
    by_platform.fill(0);
    for id in &connected {
        by_platform[platforms.index(*id)] += 1;
    }
    let metric = Metric::Channels;
    push_all(&mut out, metric, connected.len() as u64);
    out.extend(connected.iter().map(|id| channel_row(metric, *id, platforms, 1, None)));
    push_platforms(&mut out, metric, platforms, &by_platform);

    for (metric, sum) in [
        (Metric::ProactiveMessages, (|c: &Cell| c.proactive) as fn(&Cell) -> u64),
        (Metric::ResolvedConversations, |c: &Cell| c.resolved),
    ] {
        by_platform.fill(0);
        let mut all = 0;
        for (channel, cell) in cells.iter() {
            by_platform[platforms.index(*channel)] += sum(cell);
            all += sum(cell);
        }
        push_all(&mut out, metric, all);
        out.extend(
            cells
                .iter()
                .filter(|(_, c)| sum(c) > 0)
                .map(|(channel, c)| channel_row(metric, *channel, platforms, sum(c), None)),
        );
        push_platforms(&mut out, metric, platforms, &by_platform);
    }

    let all = distinct(cells, platforms, IdList::Contacts, &mut by_platform);
    push_all(&mut out, Metric::UniqueMonthlyContacts, all);
    push_channels_with_ids(
        &mut out,
        &mut ids,
        Metric::UniqueMonthlyContacts,
        cells,
        platforms,
        IdList::Contacts,
    );
    push_platforms(&mut out, Metric::UniqueMonthlyContacts, platforms, &by_platform);
    (out, ids)
}

fn push_all(out: &mut Vec<RollupRow>, metric: Metric, value: u64) {
    if value > 0 {
        out.push(RollupRow {
            metric,
            group: RowGroup::All,
            value,
            ids: None,
            platform: None,
        });
    }
}

fn channel_row(metric: Metric, channel: i64, platforms: &Platforms, value: u64, ids: Option<IdSpan>) -> RollupRow {
    RollupRow {
        metric,
        group: RowGroup::Channel(channel),
        value,
        ids,
        platform: Some(platforms.name_of(channel).clone()),
    }
}

fn push_platforms(out: &mut Vec<RollupRow>, metric: Metric, platforms: &Platforms, values: &[u64]) {
    for (name, value) in platforms.names.iter().zip(values).filter(|(_, v)| **v > 0) {
        out.push(RollupRow {
            metric,
            group: RowGroup::Platform(name.clone()),
            value: *value,
            ids: None,
            platform: None,
        });
    }
}

/// A channel row per non-empty list, its ids appended to `ids`.
fn push_channels_with_ids(
    out: &mut Vec<RollupRow>,
    ids: &mut Vec<i64>,
    metric: Metric,
    cells: &Cells,
    platforms: &Platforms,
    list: IdList,
) {
    for (channel, cell) in cells.iter() {
        let listed = list.of(cell);
        if !listed.is_empty() {
            let span = IdSpan::append(ids, listed);
            out.push(channel_row(metric, *channel, platforms, span.len as u64, Some(span)));
        }
    }
}

/// The id lists of a cell: one per distinct metric.
#[derive(Debug, Clone, Copy)]
enum IdList {
    Agents,
    Contacts,
}

impl IdList {
    fn of(self, cell: &Cell) -> &Vec<i64> {
        match self {
            IdList::Agents => &cell.agents,
            IdList::Contacts => &cell.contacts,
        }
    }
}

/// What distinct counts work in, one set per thread: a fleet's night counts
/// every account's buckets on two threads, and buffers allocated per bucket
/// had the threads queueing on the allocator's lock.
#[derive(Default)]
struct Buffers {
    /// Channels with ids, by platform.
    order: Vec<(usize, i64)>,
    /// One platform's lists.
    same: Vec<i64>,
    /// Each platform's distinct ids, one sorted run after another.
    runs: Vec<i64>,
}

/// Above this many ids a thread's buffer is not kept for the next bucket.
const KEEP_BUFFER_UP_TO: usize = 1 << 16;

thread_local! {
    static BUFFERS: std::cell::RefCell<Buffers> = std::cell::RefCell::default();
}

/// The size of the union of every channel's list (returned) and of each
/// platform's channels' lists (into `by_platform`).
fn distinct(cells: &Cells, platforms: &Platforms, list: IdList, by_platform: &mut [u64]) -> u64 {
    by_platform.fill(0);
    BUFFERS.with_borrow_mut(|buffers| {
        let Buffers { order, same, runs } = buffers;
        order.clear();
        order.extend(
            cells
                .iter()
                .filter(|(_, cell)| !list.of(cell).is_empty())
                .map(|(channel, _)| (platforms.index(*channel), *channel)),
        );
        order.sort_unstable();
        runs.clear();
        let mut platforms_with_ids = 0;
        for run in order.chunk_by(|a, b| a.0 == b.0) {
            platforms_with_ids += 1;
            by_platform[run[0].0] = if let [(_, channel)] = run {
                // Lists are sorted and distinct already.
                let ids = list.of(&cells[channel]);
                runs.extend_from_slice(ids);
                ids.len() as u64
            } else {
                same.clear();
                for (_, channel) in run {
                    same.extend_from_slice(list.of(&cells[channel]));
                }
                let count = sort_runs_distinct(same);
                runs.extend_from_slice(same);
                count
            };
        }
        let all = if platforms_with_ids <= 1 {
            by_platform.iter().sum()
        } else {
            sort_runs_distinct(runs)
        };
        for buffer in [same, runs] {
            if buffer.capacity() > KEEP_BUFFER_UP_TO {
                *buffer = Vec::new();
            }
        }
        all
    })
}

/// Cells back from the channel rows of a rollup file, their lists copied
/// out of `ids` (the rows' bucket's id buffer).
pub fn cells_from_rows(rows: &[RollupRow], ids: &[i64]) -> Cells {
    let mut out = Cells::new();
    for row in rows {
        let RowGroup::Channel(channel) = row.group else {
            continue;
        };
        let cell = out.entry(channel).or_default();
        let listed = || row.ids.map_or_else(Vec::new, |span| span.of(ids).to_vec());
        match row.metric {
            Metric::UniqueMonthlyContacts => cell.contacts = listed(),
            Metric::ActiveAgents => cell.agents = listed(),
            Metric::ResolvedConversations => cell.resolved = row.value,
            Metric::ProactiveMessages => cell.proactive = row.value,
            Metric::Channels => {}
        }
    }
    out.retain(|_, c| !c.is_empty());
    out
}

/// Local dates of `tz` that overlap UTC day `day`.
pub fn local_dates_of_utc_day(tz: &Tz, day: NaiveDate) -> (NaiveDate, NaiveDate) {
    let start = utc_midnight(day);
    (
        calendar::local_date(tz, start),
        calendar::local_date(tz, start + MICROS_PER_DAY - 1),
    )
}

/// Whether parts of `interval` are written only once their period has
/// closed. A quarter's or a year's part holds every id of the period so far:
/// rewritten on every night, it made a night's cost grow through the year
/// (2.7 times the time and 3.7 times the memory on December 31st as on
/// January 8th, at 2,000 accounts). A closed period's part is written once,
/// on the night that closes it; an open one is answered from the parts of
/// its months (and closed quarters), which every night writes.
pub fn written_when_closed(interval: Interval) -> bool {
    matches!(interval, Interval::Quarterly | Interval::Yearly)
}

/// The published UTC day that closed the bucket `(interval, period)`: the
/// first one after its last local date. A run that publishes it computes
/// the bucket for every account (it is the last night the period's dates
/// can be touched in order); later runs of days inside the period recompute
/// it for the accounts they touch, as for any other bucket. `None` while the
/// period is open.
pub fn closing_day(published: &BTreeSet<NaiveDate>, interval: Interval, period: NaiveDate) -> Option<NaiveDate> {
    let (_, last) = interval.period_of(period)?;
    published.range(last + Days::new(1)..).next().copied()
}

/// Whether a published day's data can fall in the bucket `(interval,
/// period)`: its local dates overlap the UTC days from the day before its
/// first to the day after its last, across the world's zones.
pub fn may_hold_data(published: &BTreeSet<NaiveDate>, interval: Interval, period: NaiveDate) -> bool {
    let (first, last) = interval.period_of(period).expect("not hourly");
    let from = first.checked_sub_days(Days::new(1)).unwrap_or(first);
    let to = last.checked_add_days(Days::new(1)).unwrap_or(last);
    published.range(from..=to).next().is_some()
}

/// The periods of `interval` whose [`closing_day`] is `day` (a published
/// day), first to last: those whose last date falls from the published day
/// before it (or, for the first published day, the day before it) to the
/// day before it, and that [`may_hold_data`]. A period with no published
/// day around it holds nothing, so it is never written: a day published
/// decades before the rest (a backfill's typo) would otherwise make the
/// next run write an empty part for every quarter and year in between.
pub fn closed_on(published: &BTreeSet<NaiveDate>, interval: Interval, day: NaiveDate) -> Vec<NaiveDate> {
    let Some(day_before) = day.pred_opt() else {
        return Vec::new();
    };
    let from = published.range(..day).next_back().copied().unwrap_or(day_before);
    let mut out = Vec::new();
    let mut d = from;
    while d <= day_before {
        let Some((first, last)) = interval.period_of(d) else {
            break;
        };
        if last <= day_before && may_hold_data(published, interval, first) {
            out.push(first);
        }
        d = last + Days::new(1);
    }
    out
}

/// Whole calendar buckets that cover `first..=last` exactly, few of them:
/// days and weeks up to the first month start, then the largest of years,
/// quarters and months, then weeks and days to the end; a year or a quarter
/// only where `closed` says its part is to be read (else its quarters or
/// months).
pub fn cover(
    first: NaiveDate,
    last: NaiveDate,
    closed: impl Fn(Interval, NaiveDate) -> bool,
) -> Vec<(Interval, NaiveDate)> {
    let mut out = Vec::new();
    if first > last {
        return out;
    }
    let month_start = {
        let (a, _) = Interval::Monthly.period_of(first).expect("not hourly");
        if a == first { a } else { a + chrono::Months::new(1) }
    };
    let months_end = {
        let (a, b) = Interval::Monthly.period_of(last).expect("not hourly");
        if b == last { b } else { a - Days::new(1) }
    };
    let mut greedy = |from: NaiveDate, to: NaiveDate, sizes: &[Interval]| {
        let mut d = from;
        while d <= to {
            let (interval, end) = sizes
                .iter()
                .find_map(|i| {
                    let (a, b) = i.period_of(d)?;
                    (a == d && b <= to && (!written_when_closed(*i) || closed(*i, a))).then_some((*i, b))
                })
                .unwrap_or((Interval::Daily, d));
            out.push((interval, d));
            d = end + Days::new(1);
        }
    };
    let small = [Interval::Weekly];
    let large = [Interval::Yearly, Interval::Quarterly, Interval::Monthly];
    if month_start <= months_end {
        greedy(first, month_start - Days::new(1), &small);
        greedy(month_start, months_end, &large);
        greedy(months_end + Days::new(1), last, &small);
    } else {
        greedy(first, last, &small);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A night holds every account's rows of a bucket at once (about 49 an
    /// account and bucket in the fleet benchmark): their size is most of
    /// what a shard's accounts cost in memory.
    #[test]
    fn a_rollup_row_takes_at_most_48_bytes() {
        assert!(
            std::mem::size_of::<RollupRow>() <= 48,
            "{}",
            std::mem::size_of::<RollupRow>()
        );
    }

    #[test]
    fn an_id_span_finds_the_list_it_appended() {
        let mut ids = vec![1, 2];
        let span = IdSpan::append(&mut ids, &[7, 8, 9]);
        assert_eq!(span, IdSpan { start: 2, len: 3 });
        assert_eq!(span.of(&ids), &[7, 8, 9]);
        assert_eq!(IdSpan { start: 4, len: 3 }.of(&ids), &[] as &[i64]);
    }

    proptest::proptest! {
        /// Merged cells are the channel-wise unions and sums, by definition.
        #[test]
        fn merge_is_the_channel_wise_union(
            children in proptest::collection::vec(
                proptest::collection::btree_map(
                    0i64..4,
                    (proptest::collection::btree_set(0i64..40, 0..12), proptest::collection::btree_set(0i64..9, 0..4), 0u64..3),
                    0..4,
                ),
                0..4,
            )
        ) {
            let as_cells = |m: &BTreeMap<i64, (std::collections::BTreeSet<i64>, std::collections::BTreeSet<i64>, u64)>| -> Cells {
                m.iter()
                    .map(|(ch, (c, a, n))| (*ch, Cell {
                        contacts: c.iter().copied().collect(),
                        agents: a.iter().copied().collect(),
                        resolved: *n,
                        proactive: n * 2,
                    }))
                    .collect()
            };
            let mut expected: BTreeMap<i64, (std::collections::BTreeSet<i64>, std::collections::BTreeSet<i64>, u64)> = BTreeMap::new();
            for child in &children {
                for (ch, (c, a, n)) in child {
                    let e = expected.entry(*ch).or_default();
                    e.0.extend(c);
                    e.1.extend(a);
                    e.2 += n;
                }
            }
            let mut expected = as_cells(&expected);
            expected.retain(|_, c| !c.is_empty());
            proptest::prop_assert_eq!(merge(children.iter().map(as_cells)), expected);
        }

        /// A bucket's rows are, metric by metric, the all-channel value, the
        /// channels' and the platforms' (in name order), each a sum or the
        /// size of a set union, zeros left out: what a naive reading of the
        /// definitions gives, their id lists in row order.
        #[test]
        fn rows_are_the_naive_sums_and_unions(
            cells in proptest::collection::btree_map(
                0i64..8,
                (proptest::collection::btree_set(0i64..30, 0..10), proptest::collection::btree_set(0i64..6, 0..4), 0u64..3, 0u64..3),
                0..7,
            ),
            dims in proptest::collection::vec(
                (0i64..8, proptest::option::of(0usize..3), 0usize..3, proptest::option::of(-2i64..3), proptest::option::of(-2i64..3)),
                0..9,
            ),
        ) {
            let cells: Cells = cells
                .into_iter()
                .map(|(ch, (c, a, r, p))| (ch, Cell {
                    contacts: c.into_iter().collect(),
                    agents: a.into_iter().collect(),
                    resolved: r,
                    proactive: p,
                }))
                .collect();
            let dims: Vec<ChannelDim> = dims
                .into_iter()
                .map(|(id, platform, env, connected_at, disconnected_at)| ChannelDim {
                    id,
                    account_id: 1,
                    platform: platform.map(|p| ["whatsapp", "sms", "unknown"][p].to_string()),
                    name: None,
                    environment: Some(["production", "test", "development"][env].to_string()),
                    connected_at,
                    disconnected_at,
                })
                .collect();
            let expected = naive_rows(&cells, &dims, 0, 1);
            let platforms = Platforms::of(&dims);
            proptest::prop_assert_eq!(rows(&cells, &platforms, &dims, 0, 1), expected);
        }

        /// Sorted lists, concatenated, count as the size of their union,
        /// by either sort.
        #[test]
        fn sorted_runs_count_as_their_union(
            lists in proptest::collection::vec(proptest::collection::btree_set(-50i64..50, 0..30), 0..6)
        ) {
            let union: std::collections::BTreeSet<i64> = lists.iter().flatten().copied().collect();
            let concatenated: Vec<i64> = lists.iter().flatten().copied().collect();
            for unstable_up_to in [0, SORT_UP_TO] {
                let mut ids = concatenated.clone();
                proptest::prop_assert_eq!(sort_runs_distinct_up_to(&mut ids, unstable_up_to), union.len() as u64);
                proptest::prop_assert!(ids.iter().copied().eq(union.iter().copied()));
            }
        }
    }

    /// The rows of a bucket by the definitions, with sets and maps.
    fn naive_rows(
        cells: &Cells,
        dims: &[ChannelDim],
        start: UnixMicros,
        end: UnixMicros,
    ) -> (Vec<RollupRow>, Vec<i64>) {
        use std::collections::BTreeSet;
        // The last listing of a channel names its platform.
        let platform = |channel: i64| platform_of(dims.iter().rev().find(|c| c.id == channel));
        let mut out = Vec::new();
        let mut buffer = Vec::new();
        let mut emit = |metric: Metric, per_channel: BTreeMap<i64, (u64, Option<Vec<i64>>)>| {
            let distinct = per_channel.values().any(|(_, ids)| ids.is_some());
            let mut platforms: BTreeMap<String, (u64, BTreeSet<i64>)> = BTreeMap::new();
            let mut all: (u64, BTreeSet<i64>) = (0, BTreeSet::new());
            for (channel, (value, ids)) in &per_channel {
                let p = platforms.entry(platform(*channel).to_string()).or_default();
                p.0 += value;
                all.0 += value;
                p.1.extend(ids.iter().flatten());
                all.1.extend(ids.iter().flatten());
            }
            let value = |(sum, ids): &(u64, BTreeSet<i64>)| if distinct { ids.len() as u64 } else { *sum };
            if value(&all) > 0 {
                out.push(RollupRow {
                    metric,
                    group: RowGroup::All,
                    value: value(&all),
                    ids: None,
                    platform: None,
                });
            }
            for (channel, (value, ids)) in per_channel {
                if value > 0 {
                    out.push(RollupRow {
                        metric,
                        group: RowGroup::Channel(channel),
                        value,
                        ids: ids.map(|list| IdSpan::append(&mut buffer, &list)),
                        platform: Some(platform(channel).into()),
                    });
                }
            }
            for (name, acc) in &platforms {
                if value(acc) > 0 {
                    out.push(RollupRow {
                        metric,
                        group: RowGroup::Platform(name.as_str().into()),
                        value: value(acc),
                        ids: None,
                        platform: None,
                    });
                }
            }
        };
        let listed = |f: fn(&Cell) -> &Vec<i64>| -> BTreeMap<i64, (u64, Option<Vec<i64>>)> {
            cells
                .iter()
                .filter(|(_, c)| !f(c).is_empty())
                .map(|(ch, c)| (*ch, (f(c).len() as u64, Some(f(c).clone()))))
                .collect()
        };
        let summed = |f: fn(&Cell) -> u64| -> BTreeMap<i64, (u64, Option<Vec<i64>>)> {
            cells.iter().map(|(ch, c)| (*ch, (f(c), None))).collect()
        };
        emit(Metric::ActiveAgents, listed(|c| &c.agents));
        emit(
            Metric::Channels,
            dims.iter()
                .filter(|c| counts_as_connected(c, start, end))
                .map(|c| (c.id, (1, None)))
                .collect(),
        );
        emit(Metric::ProactiveMessages, summed(|c| c.proactive));
        emit(Metric::ResolvedConversations, summed(|c| c.resolved));
        emit(Metric::UniqueMonthlyContacts, listed(|c| &c.contacts));
        (out, buffer)
    }

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn covered(c: &[(Interval, NaiveDate)]) -> Vec<NaiveDate> {
        let mut out = Vec::new();
        for (i, p) in c {
            let (a, b) = i.period_of(*p).unwrap();
            assert_eq!(a, *p, "{i:?} {p} is a whole bucket");
            out.extend(a.iter_days().take_while(|x| *x <= b));
        }
        out
    }

    #[test]
    fn cover_is_exact_and_uses_large_buckets() {
        let every = |_, _| true;
        let y = |i| (Interval::Yearly, d(i));
        assert_eq!(cover(d("2026-01-01"), d("2026-12-31"), every), vec![y("2026-01-01")]);
        assert_eq!(
            cover(d("2026-04-01"), d("2026-09-30"), every),
            vec![
                (Interval::Quarterly, d("2026-04-01")),
                (Interval::Quarterly, d("2026-07-01"))
            ]
        );
        let c = cover(d("2025-12-29"), d("2027-02-03"), every);
        assert!(c.contains(&y("2026-01-01")));
        assert_eq!(
            c[..3],
            [
                (Interval::Daily, d("2025-12-29")),
                (Interval::Daily, d("2025-12-30")),
                (Interval::Daily, d("2025-12-31"))
            ]
        );
        assert!(c.contains(&(Interval::Monthly, d("2027-01-01"))));
        assert_eq!(c.last(), Some(&(Interval::Daily, d("2027-02-03"))));
        assert!(c.len() < 20, "{c:?}");
        for (a, b) in [
            ("2025-12-29", "2027-02-03"),
            ("2026-03-04", "2026-03-05"),
            ("2026-03-02", "2026-03-31"),
            ("2026-02-27", "2026-05-02"),
            ("2026-01-01", "2026-01-01"),
        ] {
            let expected: Vec<NaiveDate> = d(a).iter_days().take_while(|x| *x <= d(b)).collect();
            assert_eq!(covered(&cover(d(a), d(b), every)), expected, "{a}..{b}");
        }
        assert!(cover(d("2026-01-02"), d("2026-01-01"), every).is_empty());
    }

    #[test]
    fn an_open_year_or_quarter_is_covered_by_its_closed_quarters_and_months() {
        // 2026's first quarter has closed, its year and second quarter not.
        let closed = |i: Interval, p: NaiveDate| i == Interval::Quarterly && p == d("2026-01-01");
        let m = |p| (Interval::Monthly, d(p));
        assert_eq!(
            cover(d("2026-01-01"), d("2026-06-30"), closed),
            vec![
                (Interval::Quarterly, d("2026-01-01")),
                m("2026-04-01"),
                m("2026-05-01"),
                m("2026-06-01")
            ]
        );
        for (a, b) in [("2025-12-29", "2027-02-03"), ("2026-02-27", "2026-05-02")] {
            let c = cover(d(a), d(b), closed);
            let expected: Vec<NaiveDate> = d(a).iter_days().take_while(|x| *x <= d(b)).collect();
            assert_eq!(covered(&c), expected, "{a}..{b}");
            assert!(
                c.iter().all(|(i, p)| !written_when_closed(*i) || closed(*i, *p)),
                "{c:?}"
            );
        }
    }

    #[test]
    fn a_period_closes_on_the_first_published_day_after_it() {
        let published = |days: &[&str]| -> BTreeSet<NaiveDate> { days.iter().map(|x| d(x)).collect() };
        let q1 = d("2026-01-01");
        let nightly = published(&["2026-03-30", "2026-03-31"]);
        assert_eq!(closing_day(&nightly, Interval::Quarterly, q1), None);
        let closed = published(&["2026-03-30", "2026-03-31", "2026-04-01", "2026-04-02"]);
        assert_eq!(closing_day(&closed, Interval::Quarterly, q1), Some(d("2026-04-01")));
        assert_eq!(closed_on(&closed, Interval::Quarterly, d("2026-04-01")), vec![q1]);
        assert_eq!(closed_on(&closed, Interval::Yearly, d("2026-04-01")), vec![]);
        assert_eq!(closed_on(&closed, Interval::Quarterly, d("2026-04-02")), vec![]);
        assert_eq!(closed_on(&closed, Interval::Quarterly, d("2026-03-31")), vec![]);
        // A day published after a gap closes the periods that ended in it
        // and hold a published day (not the empty quarters between); the
        // first published day, only the one ending the day before it.
        let gap = published(&["2025-06-15", "2026-04-01"]);
        assert_eq!(
            closed_on(&gap, Interval::Quarterly, d("2026-04-01")),
            vec![d("2025-04-01"), q1]
        );
        // A quarter's data can come from the UTC day before its first date
        // (east of UTC) and the day after its last (west of UTC).
        let edge = published(&["2025-06-29", "2026-01-01"]);
        assert_eq!(
            closed_on(&edge, Interval::Quarterly, d("2026-01-01")),
            vec![d("2025-04-01"), d("2025-10-01")]
        );
        let east = published(&["2025-06-30", "2026-01-01"]);
        assert_eq!(
            closed_on(&east, Interval::Quarterly, d("2026-01-01")),
            vec![d("2025-04-01"), d("2025-07-01"), d("2025-10-01")]
        );
        let ancient = published(&["0000-01-01", "2026-11-29"]);
        assert_eq!(
            closed_on(&ancient, Interval::Quarterly, d("2026-11-29")),
            vec![d("0000-01-01")]
        );
        assert_eq!(
            closed_on(&ancient, Interval::Yearly, d("2026-11-29")),
            vec![d("0000-01-01")]
        );
        assert_eq!(
            closed_on(&gap, Interval::Yearly, d("2026-04-01")),
            vec![d("2025-01-01")]
        );
        assert_eq!(closed_on(&gap, Interval::Quarterly, d("2025-06-15")), vec![]);
        let first = published(&["2026-01-01", "2026-01-02"]);
        assert_eq!(
            closed_on(&first, Interval::Yearly, d("2026-01-01")),
            vec![d("2025-01-01")]
        );
        // Against the definition, over every day of two years.
        for interval in [Interval::Quarterly, Interval::Yearly] {
            for days in [&nightly, &closed, &gap, &edge, &east, &first] {
                for day in days {
                    let naive: Vec<NaiveDate> = d("2024-01-01")
                        .iter_days()
                        .take_while(|x| *x <= d("2026-12-31"))
                        .filter(|x| interval.period_of(*x).unwrap().0 == *x)
                        .filter(|p| closing_day(days, interval, *p) == Some(*day))
                        .filter(|p| {
                            let (a, b) = interval.period_of(*p).unwrap();
                            days.iter().any(|x| *x >= a - Days::new(1) && *x <= b + Days::new(1))
                        })
                        .collect();
                    assert_eq!(closed_on(days, interval, *day), naive, "{interval:?} {day}");
                }
            }
        }
    }

    #[test]
    fn local_dates_of_a_utc_day() {
        let ktm: Tz = "Asia/Kathmandu".parse().unwrap();
        assert_eq!(
            local_dates_of_utc_day(&ktm, d("2026-03-31")),
            (d("2026-03-31"), d("2026-04-01"))
        );
        let ny: Tz = "America/New_York".parse().unwrap();
        assert_eq!(
            local_dates_of_utc_day(&ny, d("2026-03-31")),
            (d("2026-03-30"), d("2026-03-31"))
        );
        assert_eq!(
            local_dates_of_utc_day(&Tz::UTC, d("2026-03-31")),
            (d("2026-03-31"), d("2026-03-31"))
        );
    }

    fn channel(id: i64, platform: &str, env: &str) -> ChannelDim {
        ChannelDim {
            id,
            account_id: 1,
            platform: Some(platform.into()),
            name: None,
            environment: Some(env.into()),
            connected_at: Some(0),
            disconnected_at: None,
        }
    }

    #[test]
    fn daily_cells_cut_an_hour_at_a_local_midnight_and_merge_as_unions() {
        let ktm: Tz = "Asia/Kathmandu".parse().unwrap();
        let mut b = DailyBuilder::new(ktm, d("2026-03-31"), d("2026-04-01"));
        let midnight = calendar::day_start(&ktm, d("2026-04-01"));
        // Active 10 minutes before and 5 minutes after local midnight, in one UTC hour.
        b.contact(7, 100, midnight - 600_000_000, midnight + 300_000_000);
        b.contact(7, 101, midnight - 600_000_000, midnight - 1);
        b.contact(8, 100, midnight + 1, midnight + 2);
        b.agent(7, 5, midnight, midnight);
        b.resolved(8, midnight - 1, 1);
        b.proactive(8, midnight, 3);
        let days = b.finish();
        assert_eq!(days[0].1[&7].contacts, vec![100, 101]);
        assert_eq!(days[1].1[&7].contacts, vec![100]);
        assert_eq!(days[1].1[&8].contacts, vec![100]);
        assert_eq!(days[0].1[&8].resolved, 1);
        assert_eq!(days[1].1[&8].proactive, 3);
        assert_eq!(days[1].1[&7].agents, vec![5]);

        let both = merge(days.into_iter().map(|(_, c)| c));
        assert_eq!(both[&7].contacts, vec![100, 101]);
        let dims = [channel(7, "whatsapp", "production"), channel(8, "whatsapp", "test")];
        let platforms = Platforms::of(&dims);
        let (rows, ids) = rows(&both, &platforms, &dims, 0, 1);
        let value = |m: Metric, g: RowGroup| rows.iter().find(|r| r.metric == m && r.group == g).map(|r| r.value);
        // Contact 100 is on both channels of one platform: once in the platform and in all.
        assert_eq!(
            value(Metric::UniqueMonthlyContacts, RowGroup::Platform("whatsapp".into())),
            Some(2)
        );
        assert_eq!(value(Metric::UniqueMonthlyContacts, RowGroup::All), Some(2));
        assert_eq!(value(Metric::UniqueMonthlyContacts, RowGroup::Channel(8)), Some(1));
        // The test channel is not a channel; zero rows are left out.
        assert_eq!(value(Metric::Channels, RowGroup::All), Some(1));
        assert_eq!(value(Metric::Channels, RowGroup::Channel(8)), None);
        assert_eq!(cells_from_rows(&rows, &ids), both);
    }

    /// Samoa skipped 2011-12-30: the dates around it keep their own cells,
    /// and the date that never happened has none.
    #[test]
    fn daily_cells_skip_a_date_the_zone_skipped() {
        let apia: Tz = "Pacific/Apia".parse().unwrap();
        let mut b = DailyBuilder::new(apia, d("2011-12-29"), d("2012-01-01"));
        let at = |date: &str, hours: i64| calendar::day_start(&apia, d(date)) + hours * 3_600_000_000;
        b.contact(7, 29, at("2011-12-29", 23), at("2011-12-29", 23));
        b.contact(7, 31, at("2011-12-31", 12), at("2011-12-31", 12));
        b.agent(7, 1, at("2012-01-01", 1), at("2012-01-01", 1));
        let days = b.finish();
        let dates: Vec<NaiveDate> = days.iter().map(|(date, _)| *date).collect();
        assert_eq!(dates, [d("2011-12-29"), d("2011-12-31"), d("2012-01-01")]);
        assert_eq!(days[0].1[&7].contacts, vec![29]);
        assert_eq!(days[1].1[&7].contacts, vec![31]);
        assert_eq!(days[2].1[&7].agents, vec![1]);
    }
}
