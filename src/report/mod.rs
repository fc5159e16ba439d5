//! `account-usage report`: the Account usage report, from the warehouse only.
//!
//! [`crate::calendar`] and [`engine`] are pure; this module reads what they need
//! (one account's base grain for the days a query touches, and the latest
//! dimension snapshots) through the day manifests, and [`format`] renders
//! the result.

pub mod engine;
pub mod format;
pub mod rollups;
pub mod snapshot;

use std::collections::BTreeSet;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use chrono::NaiveDate;
use chrono_tz::Tz;

use crate::aggregate::ChannelDim;
use futures::{StreamExt, TryStreamExt};

use crate::calendar::Interval;
use crate::warehouse::manifest::{published_day, read_account_columns, read_day_table};
use crate::warehouse::paths::Table;
use crate::warehouse::{Warehouse, WarehouseUrl};
use engine::{AccountGrain, GroupBy, Metric, Report};
pub use snapshot::{AccountInfo, Snapshot};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("unknown time zone {0:?}: expected an IANA name such as Europe/London")]
    UnknownTimeZone(String),
    #[error("--from {from} is after --to {to}")]
    FromAfterTo { from: NaiveDate, to: NaiveDate },
    #[error("the range {from}..{to} is longer than {MAX_RANGE_DAYS} days; ask for less")]
    RangeTooLong { from: NaiveDate, to: NaiveDate },
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
    warehouse.check_access().await?;
    Snapshot::load(warehouse, None).await?.report(q).await
}

/// Days of base grain read and decoded at once.
const DAYS_AT_ONCE: usize = 8;

/// One account's base grain for `days`, with its channels as given. Days are
/// fetched concurrently and decoded on the blocking pool (both cores), only
/// the columns and row groups the account's metrics need.
pub async fn load_account(
    warehouse: &Warehouse,
    account: i64,
    days: &BTreeSet<NaiveDate>,
    metrics: &BTreeSet<Metric>,
    channels: Vec<ChannelDim>,
) -> Result<AccountGrain, Error> {
    let mut grain = AccountGrain {
        channels,
        ..AccountGrain::default()
    };
    let tables: Vec<Table> = [
        (Metric::UniqueMonthlyContacts, Table::ContactActivity),
        (Metric::ActiveAgents, Table::AgentActivity),
        (Metric::ResolvedConversations, Table::ResolvedConversations),
        (Metric::ProactiveMessages, Table::ProactiveMessages),
    ]
    .into_iter()
    .filter(|(m, _)| metrics.contains(m))
    .map(|(_, t)| t)
    .collect();
    let parts: Vec<AccountGrain> = futures::stream::iter(days.iter().copied())
        .map(|day| load_day(warehouse, day, account, &tables))
        .buffered(DAYS_AT_ONCE)
        .try_collect()
        .await?;
    for part in parts {
        grain.contacts.extend(part.contacts);
        grain.agents.extend(part.agents);
        grain.resolved.extend(part.resolved);
        grain.proactive.extend(part.proactive);
    }
    Ok(grain)
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
    let mut out = Vec::new();
    for b in read_day_table(warehouse, day, Table::Channels)
        .await?
        .unwrap_or_default()
    {
        let t = Table::Channels;
        let (accounts, ids) = (ints(&b, "account_id", t)?, ints(&b, "channel_id", t)?);
        let (connected, disconnected) = (ints(&b, "connected_at", t)?, ints(&b, "disconnected_at", t)?);
        let (platforms, names, envs) = (strings(&b, "platform"), strings(&b, "name"), strings(&b, "environment"));
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

/// One day's rows of `account` in `tables`.
async fn load_day(
    warehouse: &Warehouse,
    day: NaiveDate,
    account: i64,
    tables: &[Table],
) -> Result<AccountGrain, Error> {
    let mut attempt = 0;
    let files = loop {
        attempt += 1;
        match day_files(warehouse, day, tables).await? {
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
    let decoded = tokio::task::spawn_blocking(move || {
        let mut grain = AccountGrain::default();
        for (table, key, bytes) in files {
            let batches = read_account_columns(&key, bytes, table, account, columns_of(table))?;
            for b in &batches {
                add_rows(b, table, account, &mut grain)?;
            }
        }
        Ok::<_, Error>(grain)
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))??;
    Ok(decoded)
}

/// The files of `tables` of a published day and their bytes; `Err` with
/// what disappeared while being read.
async fn day_files(
    warehouse: &Warehouse,
    day: NaiveDate,
    tables: &[Table],
) -> Result<Result<Vec<(Table, String, bytes::Bytes)>, String>, Error> {
    let manifests = match published_day(warehouse, day).await {
        Ok(Some(m)) => m,
        Ok(None) => return Ok(Ok(Vec::new())),
        Err(crate::warehouse::Error::BadManifest { key, reason }) if reason.starts_with("disappeared") => {
            return Ok(Err(key));
        }
        Err(e) => return Err(e.into()),
    };
    let mut files = Vec::new();
    for manifest in &manifests {
        for table in tables {
            for file in manifest.files_of(*table) {
                let Some(bytes) = warehouse.get(&file.key).await? else {
                    return Ok(Err(file.key.clone()));
                };
                files.push((*table, file.key.clone(), bytes));
            }
        }
    }
    Ok(Ok(files))
}

fn columns_of(table: Table) -> &'static [&'static str] {
    match table {
        Table::ContactActivity => &["account_id", "channel_id", "contact_id", "first_at", "last_at"],
        Table::AgentActivity => &["account_id", "channel_id", "agent_id", "first_at", "last_at"],
        Table::ResolvedConversations => &["account_id", "channel_id", "resolved_at"],
        Table::ProactiveMessages => &["account_id", "channel_id", "slot_start", "messages"],
        _ => &[],
    }
}

fn i64s<'b>(batch: &'b RecordBatch, column: &'static str, table: Table) -> Result<&'b [i64], Error> {
    crate::warehouse::tables::i64_values(batch, column).map_err(|_| Error::BadColumn {
        table: table.name(),
        column,
    })
}

fn add_rows(b: &RecordBatch, table: Table, account: i64, grain: &mut AccountGrain) -> Result<(), Error> {
    let accounts = i64s(b, "account_id", table)?;
    let channels = i64s(b, "channel_id", table)?;
    let mine = |i: usize| accounts[i] == account;
    match table {
        Table::ContactActivity | Table::AgentActivity => {
            let entity = i64s(
                b,
                if table == Table::ContactActivity {
                    "contact_id"
                } else {
                    "agent_id"
                },
                table,
            )?;
            let (first, last) = (i64s(b, "first_at", table)?, i64s(b, "last_at", table)?);
            let out = if table == Table::ContactActivity {
                &mut grain.contacts
            } else {
                &mut grain.agents
            };
            out.extend(
                (0..b.num_rows())
                    .filter(|i| mine(*i))
                    .map(|i| (channels[i], entity[i], first[i], last[i])),
            );
        }
        Table::ResolvedConversations => {
            let at = i64s(b, "resolved_at", table)?;
            grain
                .resolved
                .extend((0..b.num_rows()).filter(|i| mine(*i)).map(|i| (channels[i], at[i])));
        }
        Table::ProactiveMessages => {
            let (slot, n) = (i64s(b, "slot_start", table)?, i64s(b, "messages", table)?);
            grain.proactive.extend(
                (0..b.num_rows())
                    .filter(|i| mine(*i))
                    .map(|i| (channels[i], slot[i], n[i].max(0) as u64)),
            );
        }
        _ => {}
    }
    Ok(())
}
