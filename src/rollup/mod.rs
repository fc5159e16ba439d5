//! Materialized rollups: per account, in the account's own time zone, one
//! Parquet file per calendar bucket (daily, weekly, monthly, quarterly,
//! yearly) with every metric by channel, by platform and over all channels.
//!
//! ```text
//!  run publishes UTC days ──► local dates they overlap (per account zone)
//!     ──► daily files from the base grain of the UTC days around them
//!     ──► weekly and monthly files from daily ones
//!     ──► quarterly files from monthly ones, yearly from quarterly ones
//! ```
//!
//! What must always hold:
//! - a run recomputes only the buckets that contain a local date overlapping
//!   a UTC day it processed, so a night's cost does not grow with history;
//! - a bucket's file is replaced by one put (never half-written), and is
//!   recomputed whole from its parts, so reruns are idempotent;
//! - channel rows of distinct metrics carry their id lists, so a range made
//!   of several buckets is answered by a union, never by a sum of counts;
//! - while a run refreshes, its days are named in a dirty marker
//!   ([`DirtyMarkerKey`]); the report answers those days from the base grain.

pub mod cells;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, LazyLock};

use arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, Int64Builder, ListBuilder, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;
use chrono::{Days, NaiveDate};
use chrono_tz::Tz;
use futures::{StreamExt, TryStreamExt};
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::aggregate::ChannelDim;
use crate::calendar::{Interval, day_start};
use crate::model::UnixMicros;
use crate::warehouse::manifest::{DayManifest, published_day, published_days};
use crate::warehouse::paths::{DirtyMarkerKey, RollupKey, Table};
use crate::warehouse::read::stream_batches;
use crate::warehouse::{self, Warehouse};
use cells::{Cells, DailyBuilder, RollupGroup, RollupRow};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Warehouse(#[from] warehouse::Error),
    #[error("rollup {key} is not valid: {reason}")]
    BadRollup { key: String, reason: String },
    #[error("a rollup task failed: {0}")]
    Task(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Objects fetched or written at once.
const IO_CONCURRENCY: usize = 16;
/// Local dates whose base grain is held in memory at once during a refresh.
const DATES_PER_WINDOW: u64 = 16;

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let ts = |name: &str| {
        Field::new(
            name,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        )
    };
    Arc::new(Schema::new(vec![
        Field::new("account_id", DataType::Int64, false),
        Field::new("time_zone", DataType::Utf8, false),
        ts("bucket_start"),
        ts("bucket_end"),
        Field::new("metric", DataType::Utf8, false),
        Field::new("group_by", DataType::Utf8, false),
        Field::new("group_key", DataType::Utf8, true),
        Field::new("value", DataType::Int64, false),
        Field::new(
            "ids",
            DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
            true,
        ),
    ]))
});

/// Column index of `ids`, the only column a report can leave unread.
const IDS_COLUMN: usize = 8;

pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

/// One rollup file: one calendar bucket of one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollupFile {
    pub time_zone: String,
    pub start: UnixMicros,
    pub end: UnixMicros,
    pub rows: Vec<RollupRow>,
}

pub fn encode(key: &RollupKey, file: &RollupFile) -> Result<Bytes> {
    let n = file.rows.len();
    let mut ids = ListBuilder::new(Int64Builder::new());
    for row in &file.rows {
        match &row.ids {
            Some(list) => {
                ids.values().append_slice(list);
                ids.append(true);
            }
            None => ids.append(false),
        }
    }
    let utc = |t| Arc::new(TimestampMicrosecondArray::from(vec![t; n]).with_timezone("UTC")) as ArrayRef;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![key.account; n])),
        Arc::new(StringArray::from(vec![file.time_zone.as_str(); n])),
        utc(file.start),
        utc(file.end),
        Arc::new(StringArray::from_iter_values(file.rows.iter().map(|r| r.metric))),
        Arc::new(StringArray::from_iter_values(
            file.rows.iter().map(|r| r.group_by.as_str()),
        )),
        Arc::new(StringArray::from_iter(file.rows.iter().map(|r| r.group_key.as_deref()))),
        Arc::new(Int64Array::from_iter_values(file.rows.iter().map(|r| r.value as i64))),
        Arc::new(ids.finish()),
    ];
    let rel = key.relative();
    let arrow_err = |source| warehouse::Error::Arrow {
        key: rel.clone(),
        source,
    };
    let parquet_err = |source| warehouse::Error::Parquet {
        key: rel.clone(),
        source,
    };
    let batch = RecordBatch::try_new(schema(), columns).map_err(arrow_err)?;
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema(), Some(properties())).map_err(parquet_err)?;
    writer.write(&batch).map_err(parquet_err)?;
    writer.close().map_err(parquet_err)?;
    Ok(Bytes::from(out))
}

/// Rollup files are small except for their id lists: only those are worth a
/// zstd context (creating one per column chunk was a visible cost).
fn properties() -> parquet::file::properties::WriterProperties {
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::schema::types::ColumnPath;
    parquet::file::properties::WriterProperties::builder()
        .set_compression(Compression::UNCOMPRESSED)
        .set_column_compression(
            ColumnPath::new(vec!["ids".into(), "list".into(), "item".into()]),
            Compression::ZSTD(ZstdLevel::try_new(1).expect("valid zstd level")),
        )
        .set_dictionary_enabled(false)
        .set_created_by(format!("account-usage {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Decodes a rollup file; without `with_ids`, id lists are not read.
pub fn decode(key: &RollupKey, bytes: Bytes, with_ids: bool) -> Result<RollupFile> {
    let rel = key.relative();
    let bad = |reason: String| Error::BadRollup {
        key: rel.clone(),
        reason,
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| bad(e.to_string()))?;
    // Another schema (a newer or older version wrote it, or it is not a
    // rollup): said as such, never a projection past its columns.
    let expected: Vec<(&str, &DataType)> = SCHEMA
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type()))
        .collect();
    let found: Vec<(&str, &DataType)> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type()))
        .collect();
    if found != expected {
        let names: Vec<&str> = found.iter().map(|(n, _)| *n).collect();
        return Err(bad(format!("it has another schema (columns {})", names.join(", "))));
    }
    let roots: Vec<usize> = (0..=IDS_COLUMN).filter(|i| with_ids || *i != IDS_COLUMN).collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder.with_projection(mask).build().map_err(|e| bad(e.to_string()))?;
    let mut file = RollupFile {
        time_zone: String::new(),
        start: 0,
        end: 0,
        rows: Vec::new(),
    };
    for batch in reader {
        let batch = batch.map_err(|e| bad(e.to_string()))?;
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| bad(format!("no column {name}")))
        };
        let text = |name: &str| {
            column(name)?
                .as_string_opt::<i32>()
                .ok_or_else(|| bad(format!("column {name} is not text")))
        };
        let int = |name: &str| crate::warehouse::tables::i64_values(&batch, name).map_err(&bad);
        let (zone, metric, group_by, group_key) = (
            text("time_zone")?,
            text("metric")?,
            text("group_by")?,
            text("group_key")?,
        );
        let (start, end, value) = (int("bucket_start")?, int("bucket_end")?, int("value")?);
        let ids = if with_ids {
            Some(column("ids")?.as_list_opt::<i32>().ok_or_else(|| bad("ids".into()))?)
        } else {
            None
        };
        for i in 0..batch.num_rows() {
            if file.time_zone.is_empty() {
                file.time_zone = zone.value(i).to_string();
                file.start = start[i];
                file.end = end[i];
            }
            let metric = known_metric(metric.value(i)).ok_or_else(|| bad(format!("metric {:?}", metric.value(i))))?;
            let group_by = RollupGroup::parse(group_by.value(i)).ok_or_else(|| bad("group_by".into()))?;
            let ids = ids.filter(|l| l.is_valid(i)).map(|l| {
                let v = l.value(i);
                v.as_primitive::<Int64Type>().values().to_vec()
            });
            file.rows.push(RollupRow {
                metric,
                group_by,
                group_key: group_key.is_valid(i).then(|| group_key.value(i).to_string()),
                value: value[i].max(0) as u64,
                ids,
            });
        }
    }
    Ok(file)
}

fn known_metric(name: &str) -> Option<&'static str> {
    crate::metric::Metric::ALL
        .into_iter()
        .map(cells::rollup_metric_name)
        .find(|m| *m == name)
}

/// One rollup file, if it exists.
pub async fn read(warehouse: &Warehouse, key: RollupKey, with_ids: bool) -> Result<Option<RollupFile>> {
    match warehouse.get(&key.relative()).await? {
        Some(bytes) => Ok(Some(decode(&key, bytes, with_ids)?)),
        None => Ok(None),
    }
}

/// Several rollup files at once, in the order asked.
pub async fn read_many(warehouse: &Warehouse, keys: &[RollupKey], with_ids: bool) -> Result<Vec<Option<RollupFile>>> {
    futures::stream::iter(keys.iter().copied())
        .map(|key| read(warehouse, key, with_ids))
        .buffered(IO_CONCURRENCY)
        .try_collect()
        .await
}

/// An account whose rollups a run refreshes.
#[derive(Debug, Clone)]
pub struct AccountSpec {
    pub id: i64,
    pub tz: Tz,
    pub channels: Vec<ChannelDim>,
}

/// What a refresh wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefreshReport {
    /// Files written per interval.
    pub files: BTreeMap<&'static str, u64>,
    /// Time spent on daily buckets (from the base grain) and on coarser ones.
    pub daily_ms: u64,
    pub coarse_ms: u64,
}

/// Recomputes, for every account, the buckets of every interval that hold a
/// local date overlapping one of `utc_days`. `own` holds the manifests this
/// run just published (read in place of the readable set, which for a
/// sharded day may still be the previous version until every shard is in).
pub async fn refresh(
    warehouse: &Warehouse,
    utc_days: &BTreeSet<NaiveDate>,
    accounts: &[AccountSpec],
    own: &BTreeMap<NaiveDate, DayManifest>,
) -> Result<RefreshReport> {
    let mut report = RefreshReport::default();
    // Local dates each account needs recomputed.
    let dates: Vec<BTreeSet<NaiveDate>> = accounts
        .iter()
        .map(|a| {
            utc_days
                .iter()
                .flat_map(|d| {
                    let (first, last) = cells::local_dates_of_utc_day(&a.tz, *d);
                    first.iter_days().take_while(move |x| *x <= last)
                })
                .collect()
        })
        .collect();

    let started = std::time::Instant::now();
    // Daily buckets from the base grain, a window of dates at a time.
    let all: BTreeSet<NaiveDate> = dates.iter().flatten().copied().collect();
    let mut pending: Vec<NaiveDate> = all.into_iter().collect();
    while let Some(&w0) = pending.first() {
        let w1 = *pending
            .iter()
            .take_while(|d| **d < w0 + Days::new(DATES_PER_WINDOW))
            .last()
            .expect("w0 itself");
        pending.retain(|d| *d > w1);
        let in_window: Vec<usize> = (0..accounts.len())
            .filter(|i| dates[*i].range(w0..=w1).next().is_some())
            .collect();
        let files = daily_window(warehouse, own, accounts, &dates, &in_window, w0, w1).await?;
        *report.files.entry(Interval::Daily.as_str()).or_default() += files;
    }

    report.daily_ms = started.elapsed().as_millis() as u64;
    let started = std::time::Instant::now();
    // Coarser buckets from finer rollups; only parts that can hold data (a
    // published UTC day overlaps them) are read.
    let mut published = published_days(warehouse).await?;
    published.extend(own.keys().copied());
    let published = Arc::new(published);
    // One task per account (accounts run on every core); within an account,
    // weeks and months come from daily files, quarters from months, years
    // from quarters.
    let tasks = accounts.iter().zip(&dates).map(|(account, dates)| {
        let (warehouse, published, account) = (warehouse.clone(), published.clone(), account.clone());
        let periods = |interval: Interval| -> BTreeSet<NaiveDate> {
            dates
                .iter()
                .filter_map(|d| interval.period_of(*d).map(|p| p.0))
                .collect()
        };
        let plan: Vec<(Interval, Interval, BTreeSet<NaiveDate>)> = [
            (Interval::Weekly, Interval::Daily),
            (Interval::Monthly, Interval::Daily),
            (Interval::Quarterly, Interval::Monthly),
            (Interval::Yearly, Interval::Quarterly),
        ]
        .into_iter()
        .map(|(interval, from)| (interval, from, periods(interval)))
        .collect();
        tokio::spawn(async move {
            let mut written = Vec::new();
            for (interval, from, periods) in plan {
                for period in periods {
                    coarse(&warehouse, &published, &account, interval, from, period).await?;
                    written.push(interval.as_str());
                }
            }
            Ok::<_, Error>(written)
        })
    });
    let results: Vec<_> = futures::stream::iter(tasks).buffer_unordered(8).collect().await;
    for result in results {
        let written = result.map_err(|e| Error::Task(e.to_string()))??;
        for interval in written {
            *report.files.entry(interval).or_default() += 1;
        }
    }
    report.coarse_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// Daily files of accounts `which` for the dates of `dates` in `w0..=w1`;
/// returns how many were written.
async fn daily_window(
    warehouse: &Warehouse,
    own: &BTreeMap<NaiveDate, DayManifest>,
    accounts: &[AccountSpec],
    dates: &[BTreeSet<NaiveDate>],
    which: &[usize],
    w0: NaiveDate,
    w1: NaiveDate,
) -> Result<u64> {
    let mut builders: Vec<DailyBuilder> = which
        .iter()
        .map(|i| DailyBuilder::new(accounts[*i].tz, w0, w1))
        .collect();
    let slot: HashMap<i64, usize> = which.iter().enumerate().map(|(s, i)| (accounts[*i].id, s)).collect();

    // A local date overlaps at most the UTC days either side of it.
    let mut day = w0 - Days::new(1);
    while day <= w1 + Days::new(1) {
        let manifests = match own.get(&day) {
            Some(m) => Some(vec![m.clone()]),
            None => published_day(warehouse, day).await?,
        };
        for manifest in manifests.into_iter().flatten() {
            for table in [
                Table::ContactActivity,
                Table::AgentActivity,
                Table::ResolvedConversations,
                Table::ProactiveMessages,
            ] {
                for file in manifest.files_of(table) {
                    let Some(mut batches) = stream_batches(warehouse, &file.key).await? else {
                        return Err(Error::BadRollup {
                            key: file.key.clone(),
                            reason: "a published base file is missing".into(),
                        });
                    };
                    while let Some(batch) = batches.next().await {
                        let batch = batch.map_err(|source| warehouse::Error::ReadParquet {
                            key: file.key.clone(),
                            source,
                        })?;
                        feed(&batch, table, &slot, &mut builders).map_err(|reason| Error::BadRollup {
                            key: file.key.clone(),
                            reason,
                        })?;
                    }
                }
            }
        }
        day = day + Days::new(1);
    }

    let mut puts = Vec::new();
    for (builder, i) in builders.into_iter().zip(which) {
        let account = &accounts[*i];
        for (date, cells) in builder.finish() {
            if dates[*i].contains(&date) {
                let key = RollupKey {
                    account: account.id,
                    interval: Interval::Daily,
                    period: date,
                };
                puts.push((key, file_of(account, Interval::Daily, date, &cells)));
            }
        }
    }
    let n = puts.len() as u64;
    // Encoding is CPU work: spread the files over every core.
    let results: Vec<_> = futures::stream::iter(puts)
        .map(|(key, file)| {
            let warehouse = warehouse.clone();
            tokio::spawn(async move { write(&warehouse, key, file).await })
        })
        .buffer_unordered(IO_CONCURRENCY)
        .collect()
        .await;
    for result in results {
        result.map_err(|e| Error::Task(e.to_string()))??;
    }
    Ok(n)
}

fn file_of(account: &AccountSpec, interval: Interval, period: NaiveDate, cells: &Cells) -> RollupFile {
    let (_, last) = interval.period_of(period).expect("not hourly");
    let start = day_start(&account.tz, period);
    let end = day_start(&account.tz, last + Days::new(1));
    RollupFile {
        time_zone: account.tz.name().to_string(),
        start,
        end,
        rows: cells::rows(cells, &account.channels, start, end),
    }
}

async fn write(warehouse: &Warehouse, key: RollupKey, file: RollupFile) -> Result<()> {
    let bytes = encode(&key, &file)?;
    warehouse.put(&key.relative(), bytes).await?;
    Ok(())
}

/// Feeds one batch of a base-grain table to the builders of its accounts.
fn feed(
    batch: &RecordBatch,
    table: Table,
    slot: &HashMap<i64, usize>,
    builders: &mut [DailyBuilder],
) -> std::result::Result<(), String> {
    let col = |name: &str| crate::warehouse::tables::i64_values(batch, name);
    let accounts = col("account_id")?;
    let channels = col("channel_id")?;
    let mut last: Option<(i64, Option<usize>)> = None;
    let mut slot_of = |account: i64| -> Option<usize> {
        // Rows come sorted by account: look each one up once.
        match last {
            Some((a, s)) if a == account => s,
            _ => {
                let s = slot.get(&account).copied();
                last = Some((account, s));
                s
            }
        }
    };
    match table {
        Table::ContactActivity | Table::AgentActivity => {
            let entity = col(if table == Table::ContactActivity {
                "contact_id"
            } else {
                "agent_id"
            })?;
            let (first, last_at) = (col("first_at")?, col("last_at")?);
            for i in 0..batch.num_rows() {
                if let Some(s) = slot_of(accounts[i]) {
                    let b = &mut builders[s];
                    if table == Table::ContactActivity {
                        b.contact(channels[i], entity[i], first[i], last_at[i]);
                    } else {
                        b.agent(channels[i], entity[i], first[i], last_at[i]);
                    }
                }
            }
        }
        Table::ResolvedConversations => {
            let at = col("resolved_at")?;
            for i in 0..batch.num_rows() {
                if let Some(s) = slot_of(accounts[i]) {
                    builders[s].resolved(channels[i], at[i]);
                }
            }
        }
        Table::ProactiveMessages => {
            let (slot_start, messages) = (col("slot_start")?, col("messages")?);
            for i in 0..batch.num_rows() {
                if let Some(s) = slot_of(accounts[i]) {
                    builders[s].proactive(channels[i], slot_start[i], messages[i].max(0) as u64);
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Recomputes one coarse bucket from the finer buckets inside it.
async fn coarse(
    warehouse: &Warehouse,
    published: &BTreeSet<NaiveDate>,
    account: &AccountSpec,
    interval: Interval,
    from: Interval,
    period: NaiveDate,
) -> Result<()> {
    let (first, last) = interval.period_of(period).expect("not hourly");
    // A part's local dates overlap UTC days from the day before its first to
    // the day after its last; parts with no published day there hold nothing.
    let has_data = |p: NaiveDate| {
        let (a, b) = from.period_of(p).expect("not hourly");
        published.range(a - Days::new(1)..=b + Days::new(1)).next().is_some()
    };
    let parts: BTreeSet<NaiveDate> = first
        .iter_days()
        .take_while(|d| *d <= last)
        .filter_map(|d| from.period_of(d).map(|p| p.0))
        .filter(|p| has_data(*p))
        .collect();
    let keys: Vec<RollupKey> = parts
        .into_iter()
        .map(|p| RollupKey {
            account: account.id,
            interval: from,
            period: p,
        })
        .collect();
    let files = read_many(warehouse, &keys, true).await?;
    let merged = cells::merge(files.into_iter().flatten().map(|f| cells::cells_from_rows(&f.rows)));
    write(
        warehouse,
        RollupKey {
            account: account.id,
            interval,
            period,
        },
        file_of(account, interval, period, &merged),
    )
    .await
}

/// Days that unfinished refreshes (dirty markers) name, by marker key.
pub async fn dirty_markers(warehouse: &Warehouse) -> Result<BTreeMap<String, (DirtyMarkerKey, Vec<NaiveDate>)>> {
    let mut out = BTreeMap::new();
    for key in warehouse.list(DirtyMarkerKey::FOLDER).await? {
        let Ok(parsed) = DirtyMarkerKey::parse(&key) else {
            continue;
        };
        let Some(bytes) = warehouse.get(&key).await? else {
            continue;
        };
        let days: Vec<NaiveDate> = serde_json::from_slice(&bytes).map_err(|e| Error::BadRollup {
            key: key.clone(),
            reason: e.to_string(),
        })?;
        out.insert(key, (parsed, days));
    }
    Ok(out)
}

pub async fn write_dirty_marker(warehouse: &Warehouse, key: &DirtyMarkerKey, days: &BTreeSet<NaiveDate>) -> Result<()> {
    let json = serde_json::to_vec(days).expect("dates serialize");
    warehouse.put(&key.relative(), json.into()).await?;
    Ok(())
}
