//! `account-usage report`: the Account usage report, from the warehouse only.
//!
//! [`buckets`] and [`engine`] are pure; this module reads what they need
//! (one account's base grain for the days a query touches, and the latest
//! dimension snapshots) through the day manifests, and [`format`] renders
//! the result.

pub mod buckets;
pub mod engine;
pub mod format;
pub mod rollups;

use std::collections::BTreeSet;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use chrono::NaiveDate;
use chrono_tz::Tz;

use crate::aggregate::ChannelDim;
use crate::model::MICROS_PER_DAY;
use crate::warehouse::manifest::{published_days, read_day_table};
use crate::warehouse::paths::Table;
use crate::warehouse::{Warehouse, WarehouseUrl};
use buckets::Interval;
use engine::{AccountGrain, GroupBy, Metric, Query, Report};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("unknown time zone {0:?}: expected an IANA name such as Europe/London")]
    UnknownTimeZone(String),
    #[error("--from {from} is after --to {to}")]
    FromAfterTo { from: NaiveDate, to: NaiveDate },
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
        !matches!(self, Error::Warehouse(_) | Error::BadColumn { .. })
    }
}

/// What `report` was asked, before validation against the warehouse.
#[derive(Debug, Clone)]
pub struct ReportRequest {
    pub warehouse: WarehouseUrl,
    pub account: i64,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub time_zone: Option<String>,
    pub interval: Interval,
    pub group_by: GroupBy,
    pub channels: Vec<i64>,
    pub metrics: Vec<Metric>,
    /// Answer from the base grain even where rollups match (to check them).
    pub base_grain_only: bool,
}

pub fn parse_time_zone(name: &str) -> Result<Tz, Error> {
    name.parse::<Tz>().map_err(|_| Error::UnknownTimeZone(name.to_string()))
}

/// Reads the base grain a request needs, validates it against the
/// warehouse, and computes the report.
pub async fn report(request: &ReportRequest) -> Result<Report, Error> {
    if request.from > request.to {
        return Err(Error::FromAfterTo {
            from: request.from,
            to: request.to,
        });
    }
    if let Some(name) = &request.time_zone {
        parse_time_zone(name)?;
    }
    let warehouse = Warehouse::open_read_only(&request.warehouse)?;
    let published = published_days(&warehouse).await?;
    let Some(&latest) = published.iter().next_back() else {
        return Err(Error::EmptyWarehouse);
    };

    // The account, its zone and its channels, as of the latest published day.
    let accounts = read_day_table(&warehouse, latest, Table::Accounts)
        .await?
        .unwrap_or_default();
    let mut account_zone = None;
    let mut known = false;
    for b in &accounts {
        let ids = ints(b, "account_id", Table::Accounts)?;
        let zones = b.column_by_name("time_zone").map(|c| c.as_string::<i32>().clone());
        for (i, id) in ids.iter().enumerate() {
            if *id == Some(request.account) {
                known = true;
                account_zone = zones
                    .as_ref()
                    .and_then(|z| z.is_valid(i).then(|| z.value(i).to_string()));
            }
        }
    }
    if !known {
        return Err(Error::UnknownAccount(request.account));
    }
    let tz = parse_time_zone(
        request
            .time_zone
            .as_deref()
            .or(account_zone.as_deref())
            .unwrap_or("UTC"),
    )?;
    let account_tz: Tz = account_zone.as_deref().and_then(|z| z.parse().ok()).unwrap_or(Tz::UTC);
    let channels = channels_of(&warehouse, latest, request.account).await?;
    for id in &request.channels {
        if !channels.iter().any(|c| c.id == *id) {
            return Err(Error::UnknownChannel {
                account: request.account,
                channel: *id,
            });
        }
    }

    let query = Query {
        account_id: request.account,
        tz,
        from: request.from,
        to: request.to,
        interval: request.interval,
        group_by: request.group_by,
        channels: (!request.channels.is_empty()).then(|| request.channels.iter().copied().collect()),
        metrics: if request.metrics.is_empty() {
            Metric::ALL.into_iter().collect()
        } else {
            request.metrics.iter().copied().collect()
        },
    };

    // UTC days under the range must be published; so must the days of the
    // whole months of UMC, up to the latest published day (later ones have
    // not happened yet).
    let utc_days = |start: i64, end: i64| -> BTreeSet<NaiveDate> {
        let first = start.div_euclid(MICROS_PER_DAY);
        let last = (end - 1).div_euclid(MICROS_PER_DAY);
        (first..=last)
            .filter_map(|d| NaiveDate::from_epoch_days(i32::try_from(d).ok()?))
            .collect()
    };
    let (start, end) = buckets::range(&tz, query.from, query.to);
    let mut required = utc_days(start, end);
    let mut wanted = required.clone();
    if query.metrics.contains(&Metric::UniqueMonthlyContacts) {
        let months = buckets::umc_months(tz, query.from, query.to);
        let month_days = utc_days(months.start(), months.end());
        required.extend(month_days.iter().filter(|d| **d <= latest));
        wanted.extend(month_days);
    }
    let missing: Vec<NaiveDate> = required.iter().filter(|d| !published.contains(d)).copied().collect();
    if !missing.is_empty() {
        return Err(Error::MissingDays(missing));
    }

    if !request.base_grain_only {
        match rollups::try_answer(&warehouse, &query, account_tz, &channels, &wanted).await {
            Ok(Some(report)) => return Ok(report),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "Rollups could not be read; answering from the base grain."),
        }
    }
    let days: BTreeSet<NaiveDate> = wanted.intersection(&published).copied().collect();
    let grain = load_account(&warehouse, request.account, &days, &query.metrics, channels).await?;
    Ok(engine::compute(&query, &grain))
}

/// One account's base grain for `days`, with its channels as given.
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
    for day in days {
        load_day(warehouse, *day, account, metrics, &mut grain).await?;
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
            if accounts[i] != Some(account) {
                continue;
            }
            let Some(id) = ids[i] else { continue };
            out.push(ChannelDim {
                id,
                account_id: account,
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

/// Appends one day's rows of `account` to the grain.
async fn load_day(
    warehouse: &Warehouse,
    day: NaiveDate,
    account: i64,
    metrics: &BTreeSet<Metric>,
    grain: &mut AccountGrain,
) -> Result<(), Error> {
    let wants = |m| metrics.contains(&m);
    let read = |table| read_day_table(warehouse, day, table);
    if wants(Metric::UniqueMonthlyContacts) {
        for b in read(Table::ContactActivity).await?.unwrap_or_default() {
            activity(&b, Table::ContactActivity, "contact_id", account, &mut grain.contacts)?;
        }
    }
    if wants(Metric::ActiveAgents) {
        for b in read(Table::AgentActivity).await?.unwrap_or_default() {
            activity(&b, Table::AgentActivity, "agent_id", account, &mut grain.agents)?;
        }
    }
    if wants(Metric::ResolvedConversations) {
        for b in read(Table::ResolvedConversations).await?.unwrap_or_default() {
            let t = Table::ResolvedConversations;
            let (a, c, at) = (
                ints(&b, "account_id", t)?,
                ints(&b, "channel_id", t)?,
                ints(&b, "resolved_at", t)?,
            );
            for i in 0..b.num_rows() {
                if let (Some(acc), Some(ch), Some(at)) = (a[i], c[i], at[i])
                    && acc == account
                {
                    grain.resolved.push((ch, at));
                }
            }
        }
    }
    if wants(Metric::ProactiveMessages) {
        for b in read(Table::ProactiveMessages).await?.unwrap_or_default() {
            let t = Table::ProactiveMessages;
            let (a, c, s, n) = (
                ints(&b, "account_id", t)?,
                ints(&b, "channel_id", t)?,
                ints(&b, "slot_start", t)?,
                ints(&b, "messages", t)?,
            );
            for i in 0..b.num_rows() {
                if let (Some(acc), Some(ch), Some(s), Some(n)) = (a[i], c[i], s[i], n[i])
                    && acc == account
                {
                    grain.proactive.push((ch, s, n.max(0) as u64));
                }
            }
        }
    }
    Ok(())
}

fn activity(
    b: &RecordBatch,
    table: Table,
    entity: &'static str,
    account: i64,
    out: &mut Vec<engine::Activity>,
) -> Result<(), Error> {
    let (a, c, e) = (
        ints(b, "account_id", table)?,
        ints(b, "channel_id", table)?,
        ints(b, entity, table)?,
    );
    let (f, l) = (ints(b, "first_at", table)?, ints(b, "last_at", table)?);
    for i in 0..b.num_rows() {
        if let (Some(acc), Some(ch), Some(e), Some(f), Some(l)) = (a[i], c[i], e[i], f[i], l[i])
            && acc == account
        {
            out.push((ch, e, f, l));
        }
    }
    Ok(())
}
