//! `account-usage report`: the Account usage report, from the warehouse only.
//!
//! [`crate::calendar`], [`engine`] and `distinct` are pure; this module reads
//! what they need (one account's base grain for the days a query touches, and
//! the latest dimension snapshots), and [`format`] renders the result.
//!
//! What always holds:
//! - each metric reads the coarsest table that answers it exactly, and only
//!   for the days it needs ([`SOURCES`], [`GrainDays`]); a day published
//!   before a derived table existed is read from the exact one instead;
//! - a day's files are those of one published version: found by the keys of
//!   the runs the index names when all are there, else through the day's
//!   manifests, re-read when a concurrent publish replaces the day;
//! - a day is decoded and counted on the blocking pool, then dropped.

mod distinct;
pub mod engine;
pub mod format;
mod grain_cache;
pub mod rollups;
pub mod snapshot;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use chrono::NaiveDate;
use chrono_tz::Tz;

use crate::aggregate::{ChannelDim, shard_of};
use futures::{StreamExt, TryStreamExt};

use crate::calendar::Interval;
use crate::warehouse::manifest::{published_day, read_account_columns, read_day_table};
use crate::warehouse::paths::{DataFileKey, RunId, ShardSpec, Table};
use crate::warehouse::{Warehouse, WarehouseUrl};
use engine::{AccountGrain, Counter, GroupBy, Metric, Report};
pub use grain_cache::GrainCache;
pub use snapshot::{AccountInfo, Caches, Snapshot};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("unknown time zone {0:?}: expected an IANA name such as Europe/London")]
    UnknownTimeZone(String),
    #[error("--from {from} is after --to {to}")]
    FromAfterTo { from: NaiveDate, to: NaiveDate },
    #[error("the range {from}..{to} is longer than {MAX_RANGE_DAYS} days; ask for less")]
    RangeTooLong { from: NaiveDate, to: NaiveDate },
    #[error(
        "the answer would have about {rows} rows, more than {MAX_ANSWER_ROWS}; ask for a coarser interval, a shorter range, fewer channels or fewer metrics"
    )]
    TooManyRows { rows: u64 },
    #[error("unknown account {0}: it is not in the published data")]
    UnknownAccount(i64),
    #[error("unknown channel {channel} for account {account}")]
    UnknownChannel { account: i64, channel: i64 },
    #[error("no published data for {} day(s) the report needs: {}", .0.len(), list_days(.0))]
    MissingDays(Vec<NaiveDate>),
    #[error("the warehouse has no published days yet; run `account-usage run` first")]
    EmptyWarehouse,
    #[error("table {table} has an unexpected column {column}")]
    BadColumn { table: &'static str, column: &'static str },
    #[error(transparent)]
    Warehouse(#[from] crate::warehouse::Error),
    #[error("a decoding task failed: {0}")]
    Task(String),
    #[error("reading the rollups' dirty markers failed")]
    DirtyMarkers(#[source] crate::rollup::Error),
}

fn list_days(days: &[NaiveDate]) -> String {
    // Runs of consecutive days read better than a long list.
    let mut parts = Vec::new();
    let mut i = 0;
    while i < days.len() {
        let mut j = i;
        while j + 1 < days.len() && days[j + 1] == days[j] + chrono::Days::new(1) {
            j += 1;
        }
        parts.push(if i == j {
            days[i].to_string()
        } else {
            format!("{}..{}", days[i], days[j])
        });
        i = j + 1;
    }
    parts.join(", ")
}

impl Error {
    /// Whether the user can fix it by changing the command (exit code 2).
    pub fn is_input(&self) -> bool {
        match self {
            Error::Warehouse(e) => e.is_bad_input(),
            Error::BadColumn { .. } | Error::Task(_) | Error::DirtyMarkers(_) => false,
            _ => true,
        }
    }
}

/// The days of `set` in `span`; none when the span is empty (where
/// `BTreeSet::range` would panic).
pub(crate) fn days_within<'a>(
    set: &'a BTreeSet<NaiveDate>,
    span: &std::ops::RangeInclusive<NaiveDate>,
) -> impl Iterator<Item = NaiveDate> + 'a {
    let span = (!span.is_empty()).then(|| set.range(span.clone()));
    span.into_iter().flatten().copied()
}

/// Longest range a question may ask for (about ten years): beyond it a
/// question is surely a typo, and its buckets would cost memory for nothing.
pub const MAX_RANGE_DAYS: i64 = 3660;

/// Most rows an answer may have. An answer takes about 200 bytes a row
/// while it is computed and rendered: hourly buckets over ten years by
/// channel (2.8 million rows) took 600 MB, and a few at once would take a
/// server's memory. 500,000 rows is hourly over a year for 14 channels, or
/// daily over ten years for 34.
pub const MAX_ANSWER_ROWS: u64 = 500_000;

/// A report question, before validation against a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReportQuestion {
    pub account: i64,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// `None`: the account's zone.
    pub time_zone: Option<String>,
    pub interval: Interval,
    pub group_by: GroupBy,
    /// Empty: every channel.
    pub channels: Vec<i64>,
    /// Empty: every metric.
    pub metrics: Vec<Metric>,
    /// Answer from the base grain even where rollups match (to check them).
    pub base_grain_only: bool,
}

/// What `report` was asked: a question and the warehouse to ask.
#[derive(Debug, Clone)]
pub struct ReportRequest {
    pub warehouse: WarehouseUrl,
    /// Timeouts and retries of the warehouse's requests.
    pub store: crate::warehouse::StoreSettings,
    pub question: ReportQuestion,
}

pub fn parse_time_zone(name: &str) -> Result<Tz, Error> {
    name.parse::<Tz>().map_err(|_| Error::UnknownTimeZone(name.to_string()))
}

/// One report in one process: checks what needs no I/O, loads a
/// [`Snapshot`] and answers from it.
pub async fn report(request: &ReportRequest) -> Result<Report, Error> {
    let q = &request.question;
    if q.from > q.to {
        return Err(Error::FromAfterTo { from: q.from, to: q.to });
    }
    if let Some(name) = &q.time_zone {
        parse_time_zone(name)?;
    }
    let warehouse = Warehouse::open_read_only(&request.warehouse, &request.store)?;
    // The access check and the load each wait a round trip first on an
    // object store: they run at once, and where the check fails, its error
    // (a missing bucket, refused credentials) is the one told.
    let (access, snapshot) = futures::join!(
        warehouse.check_access(),
        Snapshot::load(warehouse.clone(), Caches::default())
    );
    access?;
    snapshot?.report(q).await
}

/// Days of base grain read and decoded at once.
const DAYS_AT_ONCE: usize = 8;

/// Files of one day fetched at once (tables, and shards of each): on an
/// object store each GET waits a round trip.
const FILES_AT_ONCE: usize = 8;

/// The UTC days a base-grain answer reads: those under the range (every
/// metric but unique monthly contacts) and those of the whole months of
/// unique monthly contacts; and, where the published-days index names
/// them, the runs that published each day's shards.
#[derive(Debug, Clone, Default)]
pub struct GrainDays {
    pub range: BTreeSet<NaiveDate>,
    pub months: BTreeSet<NaiveDate>,
    pub runs: BTreeMap<NaiveDate, Vec<(ShardSpec, RunId)>>,
}

/// Which table a metric reads: the coarsest that answers it exactly, or,
/// for a day published before that table existed, the exact grain.
///
/// - Unique monthly contacts: a month's edges cut a UTC day at most once, so
///   a contact's first and last instant of the day (`contact_days`) decide
///   its months exactly.
/// - Resolved conversations: every bucket edge falls on a UTC quarter hour,
///   so counts per 15-minute slot (`resolved_slots`) are exact.
/// - Active agents need the hour grain (hourly buckets cut a day many times).
const SOURCES: [(Metric, Table, Option<Table>); 4] = [
    (
        Metric::UniqueMonthlyContacts,
        Table::ContactDays,
        Some(Table::ContactActivity),
    ),
    (Metric::ActiveAgents, Table::AgentActivity, None),
    (
        Metric::ResolvedConversations,
        Table::ResolvedSlots,
        Some(Table::ResolvedConversations),
    ),
    (Metric::ProactiveMessages, Table::ProactiveMessages, None),
];

/// Counts one account's base grain for `days` into `counter`. Each day is
/// counted once decoded and then dropped, so memory holds the counts, not
/// the rows; unless `cache` is given, which keeps the account's rows of
/// each file read (and is read first).
pub async fn count_account(
    warehouse: &Warehouse,
    account: i64,
    days: &GrainDays,
    metrics: &BTreeSet<Metric>,
    counter: &Arc<Mutex<Counter>>,
    cache: Option<&Arc<GrainCache>>,
) -> Result<(), Error> {
    let sink = DaySink::Count(counter.clone());
    for_each_day(warehouse, account, days, metrics, sink, cache).await
}

/// One account's base grain for `days` (every metric's rows, from the
/// tables [`count_account`] reads), with its channels as given.
pub async fn load_account(
    warehouse: &Warehouse,
    account: i64,
    days: &GrainDays,
    metrics: &BTreeSet<Metric>,
    channels: Vec<ChannelDim>,
) -> Result<AccountGrain, Error> {
    let grain = Arc::new(Mutex::new(AccountGrain {
        channels,
        ..AccountGrain::default()
    }));
    for_each_day(warehouse, account, days, metrics, DaySink::Collect(grain.clone()), None).await?;
    let grain = std::mem::take(&mut *grain.lock().unwrap_or_else(PoisonError::into_inner));
    Ok(grain)
}

/// Where a decoded day's rows go (from the blocking pool).
#[derive(Clone)]
enum DaySink {
    Count(Arc<Mutex<Counter>>),
    Collect(Arc<Mutex<AccountGrain>>),
}

impl DaySink {
    fn take(&self, table: Table, rows: &AccountRows) {
        let c = &rows.columns;
        match self {
            DaySink::Count(counter) => {
                let mut counter = counter.lock().unwrap_or_else(PoisonError::into_inner);
                match (table, c.as_slice()) {
                    (_, [entities, first, last]) => {
                        counter.add_entities(metric_of(table), &rows.channels, entities, first, last);
                    }
                    (_, [at, counts]) => counter.add_counts(metric_of(table), &rows.channels, at, Some(counts)),
                    (_, [at]) => counter.add_counts(metric_of(table), &rows.channels, at, None),
                    _ => {}
                }
            }
            DaySink::Collect(grain) => {
                let mut grain = grain.lock().unwrap_or_else(PoisonError::into_inner);
                let channels = rows.channels.iter().copied();
                match (metric_of(table), c.as_slice()) {
                    (Metric::UniqueMonthlyContacts | Metric::ActiveAgents, [e, f, l]) => {
                        let out = if table == Table::AgentActivity {
                            &mut grain.agents
                        } else {
                            &mut grain.contacts
                        };
                        out.extend(
                            channels
                                .zip(e.iter())
                                .zip(f.iter().zip(l.iter()))
                                .map(|((c, e), (f, l))| (c, *e, *f, *l)),
                        );
                    }
                    (metric, [at, counts @ ..]) => {
                        let out = if metric == Metric::ProactiveMessages {
                            &mut grain.proactive
                        } else {
                            &mut grain.resolved
                        };
                        let n = |i: usize| counts.first().map_or(1, |n| n[i].max(0) as u64);
                        out.extend(channels.zip(at.iter()).enumerate().map(|(i, (c, at))| (c, *at, n(i))));
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Reads and decodes each of `days` for the metrics that need it, and
/// hands its rows to `sink`. Days are fetched concurrently and decoded on
/// the blocking pool (both cores), only the tables, columns and row groups
/// the metrics need.
async fn for_each_day(
    warehouse: &Warehouse,
    account: i64,
    days: &GrainDays,
    metrics: &BTreeSet<Metric>,
    sink: DaySink,
    cache: Option<&Arc<GrainCache>>,
) -> Result<(), Error> {
    let all: BTreeSet<NaiveDate> = days.range.union(&days.months).copied().collect();
    // Days are fetched DAYS_AT_ONCE ahead, decoded one per core.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let decoding = Arc::new(tokio::sync::Semaphore::new(cores));
    let cached: Vec<Vec<(Table, grain_cache::Rows)>> = futures::stream::iter(all)
        .map(|day| {
            let sources: Vec<(Table, Option<Table>)> = SOURCES
                .iter()
                .filter(|(m, _, _)| metrics.contains(m))
                .filter(|(m, _, _)| {
                    let days = if *m == Metric::UniqueMonthlyContacts {
                        &days.months
                    } else {
                        &days.range
                    };
                    days.contains(&day)
                })
                .map(|(_, table, fallback)| (*table, *fallback))
                .collect();
            read_day(
                warehouse,
                day,
                days.runs.get(&day),
                account,
                sources,
                (sink.clone(), decoding.clone(), cache.cloned()),
            )
        })
        .buffer_unordered(DAYS_AT_ONCE)
        .try_filter_map(|rows| async move { Ok((!rows.is_empty()).then_some(rows)) })
        .try_collect()
        .await?;
    if cached.is_empty() {
        return Ok(());
    }
    // Days already in memory are counted by one task: counting holds the
    // sink's lock throughout, so a task per day only made the blocking
    // threads wait on each other (and on the scheduler).
    tokio::task::spawn_blocking(move || {
        for (table, rows) in cached.iter().flatten() {
            rows.iter().for_each(|r| sink.take(*table, r));
        }
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))
}

fn ints(batch: &RecordBatch, column: &'static str, table: Table) -> Result<Vec<Option<i64>>, Error> {
    let col = batch.column_by_name(column).ok_or(Error::BadColumn {
        table: table.name(),
        column,
    })?;
    let col = arrow::compute::cast(col, &DataType::Int64).map_err(|_| Error::BadColumn {
        table: table.name(),
        column,
    })?;
    let col = col.as_primitive::<Int64Type>();
    Ok((0..col.len()).map(|i| col.is_valid(i).then(|| col.value(i))).collect())
}

fn strings(batch: &RecordBatch, column: &'static str) -> Vec<Option<String>> {
    match batch.column_by_name(column) {
        Some(c) if c.data_type() == &DataType::Utf8 => {
            let s = c.as_string::<i32>();
            (0..s.len())
                .map(|i| s.is_valid(i).then(|| s.value(i).to_string()))
                .collect()
        }
        _ => vec![None; batch.num_rows()],
    }
}

/// An account's channels, from the `channels` snapshot of a published day.
pub async fn channels_of(warehouse: &Warehouse, day: NaiveDate, account: i64) -> Result<Vec<ChannelDim>, Error> {
    let mut all = channels_of_all(warehouse, day).await?;
    all.retain(|c| c.account_id == account);
    Ok(all)
}

/// Every account's channels, from the `channels` snapshot of a published day.
pub async fn channels_of_all(warehouse: &Warehouse, day: NaiveDate) -> Result<Vec<ChannelDim>, Error> {
    channels_from(
        &read_day_table(warehouse, day, Table::Channels)
            .await?
            .unwrap_or_default(),
    )
}

/// Every row of one table of a published day: from the files of the runs
/// the index names when they are all there, else through its manifests.
pub(crate) async fn day_table(
    warehouse: &Warehouse,
    day: NaiveDate,
    runs: Option<&Vec<(ShardSpec, RunId)>>,
    table: Table,
) -> Result<Vec<RecordBatch>, Error> {
    if let Some(runs) = runs
        && let Some(files) = files_of_runs(warehouse, day, runs, &[(table, None)]).await?
    {
        let mut batches = Vec::new();
        for (_, key, bytes) in files {
            batches.extend(crate::warehouse::manifest::read_parquet(&key, bytes)?);
        }
        return Ok(batches);
    }
    Ok(read_day_table(warehouse, day, table).await?.unwrap_or_default())
}

/// Channels from batches of the `channels` table.
pub(crate) fn channels_from(batches: &[RecordBatch]) -> Result<Vec<ChannelDim>, Error> {
    let mut out = Vec::new();
    for b in batches {
        let t = Table::Channels;
        let (accounts, ids) = (ints(b, "account_id", t)?, ints(b, "channel_id", t)?);
        let (connected, disconnected) = (ints(b, "connected_at", t)?, ints(b, "disconnected_at", t)?);
        let (platforms, names, envs) = (strings(b, "platform"), strings(b, "name"), strings(b, "environment"));
        for i in 0..b.num_rows() {
            let (Some(account_id), Some(id)) = (accounts[i], ids[i]) else {
                continue;
            };
            out.push(ChannelDim {
                id,
                account_id,
                platform: platforms[i].clone(),
                name: names[i].clone(),
                environment: envs[i].clone(),
                connected_at: connected[i],
                disconnected_at: disconnected[i],
            });
        }
    }
    Ok(out)
}

/// One day's rows of `account` from `sources` (each a table, and the one to
/// read instead where a manifest does not have it), handed to `sink`; or,
/// when every file's rows are in the cache, those rows, for the caller to
/// count with the other days in memory.
async fn read_day(
    warehouse: &Warehouse,
    day: NaiveDate,
    runs: Option<&Vec<(ShardSpec, RunId)>>,
    account: i64,
    sources: Vec<(Table, Option<Table>)>,
    (sink, decoding, cache): (DaySink, Arc<tokio::sync::Semaphore>, Option<Arc<GrainCache>>),
) -> Result<Vec<(Table, grain_cache::Rows)>, Error> {
    let mut attempt = 0;
    let cached = |key: &str| cache.as_ref()?.get(key, account);
    let indexed = match runs {
        Some(runs) => {
            let holding: Vec<(ShardSpec, RunId)> = runs.iter().filter(|(s, _)| holds(*s, account)).cloned().collect();
            fetch(warehouse, keys_of_runs(day, &holding, &sources), &cached)
                .await?
                .ok()
        }
        None => None,
    };
    let files = loop {
        if let Some(files) = indexed {
            break files;
        }
        attempt += 1;
        match day_files(warehouse, day, account, &sources, &cached).await? {
            Ok(files) => break files,
            // A concurrent publish replaced the day since its listing: read it again.
            Err(_) if attempt < 5 => tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await,
            Err(gone) => {
                return Err(Error::Warehouse(crate::warehouse::Error::BadManifest {
                    key: format!("of day {day}"),
                    reason: format!("it lists {gone}, which is missing (read {attempt} times)"),
                }));
            }
        }
    };
    let all_cached: Option<Vec<(Table, grain_cache::Rows)>> = files
        .iter()
        .map(|(table, _, source)| match source {
            Source::Rows(rows) => Some((*table, rows.clone())),
            Source::Bytes(_) => None,
        })
        .collect();
    if let Some(rows) = all_cached {
        return Ok(rows);
    }
    let permit = decoding.acquire_owned().await.map_err(|e| Error::Task(e.to_string()))?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        for (table, key, source) in files {
            let bytes = match source {
                Source::Bytes(bytes) => bytes,
                Source::Rows(rows) => {
                    rows.iter().for_each(|r| sink.take(table, r));
                    continue;
                }
            };
            let batches = read_account_columns(&key, bytes, table, account, &columns_of(table))?;
            let Some(cache) = &cache else {
                for b in &batches {
                    sink.take(table, &account_rows(b, table, account)?);
                }
                continue;
            };
            let rows = batches
                .iter()
                .map(|b| Ok(account_rows(b, table, account)?.into_owned()))
                .collect::<Result<Vec<_>, Error>>()?;
            rows.iter().for_each(|r| sink.take(table, r));
            cache.insert(key, account, Arc::new(rows));
        }
        Ok::<_, Error>(())
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))??;
    Ok(Vec::new())
}

/// A data file as a reader gets it: its bytes, or an account's rows of it
/// already decoded ([`GrainCache`]).
enum Source {
    Bytes(bytes::Bytes),
    Rows(grain_cache::Rows),
}

/// Whether `shard`'s files can hold `account`'s rows: the job deals each
/// account to one shard of a count by [`shard_of`], and the rollup readers
/// go by the same rule, so a base-grain reader fetches one shard's files of
/// a day, not every shard's.
fn holds(shard: ShardSpec, account: i64) -> bool {
    shard_of(account, shard.count) == shard.index
}

/// The keys of the files of `sources` of a published day, from the runs
/// the index names.
fn keys_of_runs(
    day: NaiveDate,
    runs: &[(ShardSpec, RunId)],
    sources: &[(Table, Option<Table>)],
) -> Vec<(Table, String)> {
    let mut keys = Vec::new();
    for (shard, run_id) in runs {
        for (table, _) in sources {
            let key = DataFileKey {
                table: *table,
                day,
                shard: *shard,
                run_id: run_id.clone(),
            };
            keys.push((*table, key.relative()));
        }
    }
    keys
}

/// The files of `keys`: decoded rows where `cached` has them, else their
/// bytes; `Err` with a key that is missing (a day published before its
/// table existed, or one replaced since the index or the manifests were
/// read): then the day's manifests say what to read.
async fn fetch(
    warehouse: &Warehouse,
    keys: Vec<(Table, String)>,
    cached: &(dyn Fn(&str) -> Option<grain_cache::Rows> + Sync),
) -> Result<Result<Vec<(Table, String, Source)>, String>, Error> {
    let files: Vec<Result<(Table, String, Source), String>> = futures::stream::iter(keys)
        .map(|(table, key)| async move {
            let source = match cached(&key) {
                Some(rows) => Source::Rows(rows),
                None => match warehouse.get(&key).await? {
                    Some(bytes) => Source::Bytes(bytes),
                    None => return Ok(Err(key)),
                },
            };
            Ok::<_, Error>(Ok((table, key, source)))
        })
        .buffered(FILES_AT_ONCE)
        .try_collect()
        .await?;
    Ok(files.into_iter().collect())
}

/// The files of `sources` of a published day, from the runs the index
/// names, and their bytes; `None` as [`fetch`].
async fn files_of_runs(
    warehouse: &Warehouse,
    day: NaiveDate,
    runs: &[(ShardSpec, RunId)],
    sources: &[(Table, Option<Table>)],
) -> Result<Option<Vec<(Table, String, bytes::Bytes)>>, Error> {
    let keys = keys_of_runs(day, runs, sources);
    let bodies = warehouse
        .get_each(&keys.iter().map(|(_, key)| key).collect::<Vec<_>>())
        .await?;
    Ok(keys
        .into_iter()
        .zip(bodies)
        .map(|((table, key), bytes)| Some((table, key, bytes?)))
        .collect())
}

/// The files of `sources` of a published day and their bytes; `Err` with
/// what disappeared while being read.
async fn day_files(
    warehouse: &Warehouse,
    day: NaiveDate,
    account: i64,
    sources: &[(Table, Option<Table>)],
    cached: &(dyn Fn(&str) -> Option<grain_cache::Rows> + Sync),
) -> Result<Result<Vec<(Table, String, Source)>, String>, Error> {
    if sources.is_empty() {
        return Ok(Ok(Vec::new()));
    }
    let manifests = match published_day(warehouse, day).await {
        Ok(Some(m)) => m,
        Ok(None) => return Ok(Ok(Vec::new())),
        Err(crate::warehouse::Error::BadManifest { key, reason }) if reason.starts_with("disappeared") => {
            return Ok(Err(key));
        }
        Err(e) => return Err(e.into()),
    };
    let mut keys = Vec::new();
    // A manifest whose shard cannot be told is read (it holds no more than all).
    for manifest in manifests
        .iter()
        .filter(|m| m.shard().map_or(true, |s| holds(s, account)))
    {
        for (table, fallback) in sources {
            let table = match fallback {
                Some(older) if manifest.files_of(*table).next().is_none() => *older,
                _ => *table,
            };
            keys.extend(manifest.files_of(table).map(|file| (table, file.key.clone())));
        }
    }
    fetch(warehouse, keys, cached).await
}

/// The metric a base-grain table is read for.
fn metric_of(table: Table) -> Metric {
    match table {
        Table::AgentActivity => Metric::ActiveAgents,
        Table::ResolvedConversations | Table::ResolvedSlots => Metric::ResolvedConversations,
        Table::ProactiveMessages => Metric::ProactiveMessages,
        _ => Metric::UniqueMonthlyContacts,
    }
}

/// The columns a metric reads from a table, after `account_id` and
/// `channel_id`: entity, first and last instant; or instant and count; or
/// the instant alone (one conversation a row).
fn value_columns(table: Table) -> &'static [&'static str] {
    match table {
        Table::ContactActivity => &["contact_id", "first_at", "last_at"],
        Table::ContactDays => &["contact_id", "first_slot", "last_slot"],
        Table::AgentActivity => &["agent_id", "first_at", "last_at"],
        Table::ResolvedConversations => &["resolved_at"],
        Table::ProactiveMessages => &["slot_start", "messages"],
        Table::ResolvedSlots => &["slot_start", "conversations"],
        _ => &[],
    }
}

fn columns_of(table: Table) -> Vec<&'static str> {
    let mut columns = vec!["account_id", "channel_id"];
    columns.extend(value_columns(table));
    columns
}

fn i64s<'b>(batch: &'b RecordBatch, column: &'static str, table: Table) -> Result<&'b [i64], Error> {
    crate::warehouse::tables::i64_values(batch, column).map_err(|_| Error::BadColumn {
        table: table.name(),
        column,
    })
}

/// One account's rows of a batch, as columns: `channel_id`, then the
/// table's [`value_columns`].
#[derive(Debug)]
struct AccountRows<'b> {
    channels: Cow<'b, [i64]>,
    columns: Vec<Cow<'b, [i64]>>,
}

impl AccountRows<'_> {
    fn into_owned(self) -> AccountRows<'static> {
        AccountRows {
            channels: Cow::Owned(self.channels.into_owned()),
            columns: self.columns.into_iter().map(|c| Cow::Owned(c.into_owned())).collect(),
        }
    }
}

/// The account's rows of a batch. Files are sorted by account, so they are
/// one run of the batch, taken as slices; a batch that is not sorted has
/// them picked out.
fn account_rows<'b>(b: &'b RecordBatch, table: Table, account: i64) -> Result<AccountRows<'b>, Error> {
    let accounts = i64s(b, "account_id", table)?;
    let sorted = accounts.is_sorted();
    let (lo, hi) = (
        accounts.partition_point(|a| *a < account),
        accounts.partition_point(|a| *a <= account),
    );
    let pick = |column: &'b [i64]| -> Cow<'b, [i64]> {
        if sorted {
            Cow::Borrowed(&column[lo..hi])
        } else {
            Cow::Owned(
                (0..column.len())
                    .filter(|i| accounts[*i] == account)
                    .map(|i| column[i])
                    .collect(),
            )
        }
    };
    Ok(AccountRows {
        channels: pick(i64s(b, "channel_id", table)?),
        columns: value_columns(table)
            .iter()
            .map(|c| Ok(pick(i64s(b, c, table)?)))
            .collect::<Result<_, Error>>()?,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    /// `resolved_conversations` rows of these accounts; row `i` has channel
    /// `i` and instant `100 + i`.
    fn batch(accounts: &[i64]) -> RecordBatch {
        let column = |name| Field::new(name, DataType::Int64, false);
        let rows = 0..accounts.len() as i64;
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                column("account_id"),
                column("channel_id"),
                column("resolved_at"),
            ])),
            vec![
                Arc::new(Int64Array::from(accounts.to_vec())),
                Arc::new(Int64Array::from_iter_values(rows.clone())),
                Arc::new(Int64Array::from_iter_values(rows.map(|i| 100 + i))),
            ],
        )
        .unwrap()
    }

    /// An account's rows are its own, in file order, whether the batch is
    /// sorted by account (our files: taken as slices) or not (a file some
    /// other writer made: picked out).
    #[test]
    fn an_accounts_rows_are_its_own_in_sorted_and_unsorted_batches() {
        for accounts in [vec![1, 2, 2, 2, 5], vec![2, 5, 2, 1, 2]] {
            let b = batch(&accounts);
            for account in [1, 2, 3, 5] {
                let rows = account_rows(&b, Table::ResolvedConversations, account).unwrap();
                let channels: Vec<i64> = (0..accounts.len() as i64)
                    .filter(|i| accounts[*i as usize] == account)
                    .collect();
                let instants: Vec<i64> = channels.iter().map(|i| 100 + i).collect();
                assert_eq!(&rows.channels[..], &channels[..], "{accounts:?}, account {account}");
                assert_eq!(rows.columns.len(), 1);
                assert_eq!(&rows.columns[0][..], &instants[..], "{accounts:?}, account {account}");
            }
        }
    }
}
