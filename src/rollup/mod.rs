//! Materialized rollups: per account, in the account's own time zone, every
//! metric by channel, by platform and over all channels, for each daily,
//! weekly, monthly, quarterly and yearly bucket. One Parquet part per
//! (interval, period, shard) holds every account of the shard, sorted by
//! account in row groups that never split one, so a reader of one account
//! skips the rest by the `account_id` statistics.
//!
//! ```text
//!  run publishes UTC days ──► local dates they overlap (per account zone)
//!     ──► daily parts from the base grain of the UTC days around them
//!     ──► weekly parts from daily ones, monthly ones from the weeks inside
//!         the month and the days of the rest
//!     ──► quarterly parts from monthly ones, yearly from quarterly ones,
//!         of closed periods only
//! ```
//!
//! What must always hold:
//! - a run recomputes only the buckets that contain a local date overlapping
//!   a UTC day it processed, and writes one part per (interval, period) it
//!   touches, so a night's cost grows with neither history nor accounts;
//! - but a quarter or a year is written only once its period has closed
//!   ([`cells::closing_day`]): the run that publishes the first day after it
//!   computes it for every account, and no part of an open period exists
//!   (one an earlier build wrote is deleted), so readers answer an open
//!   period from its months and closed quarters, which are always current;
//! - a part is replaced by one put (never half-written); the accounts a run
//!   does not refresh are carried over unchanged, and a part whose rows would
//!   not change is not written, so reruns are idempotent;
//! - a part a run computes is written even when empty, and a coarse bucket
//!   is never built without a finer part it needs: one that is gone (where
//!   a published day could have given it rows) or unreadable is rebuilt
//!   from the base grain first;
//! - channel rows record their channel's platform (`channel_platform`);
//!   an account whose zone, or whose channel's platform, differs from what
//!   a finer part recorded, or whose finer bucket has other instants than
//!   its zone's rules give it now (a build with another time zone database
//!   computed it), is rebuilt from the base grain over every published day
//!   before a coarse bucket is built for it, so a bucket never mixes finer
//!   ones of two zones or of two sets of rules, or counts a channel under
//!   two platforms;
//! - channel rows of distinct metrics carry their id lists, so a range made
//!   of several buckets is answered by a union, never by a sum of counts;
//! - when parts of two shard counts hold one account (the fleet was
//!   resharded, or a backfill ran with another count), the rows refreshed
//!   last win (`refreshed_at`);
//! - while a run refreshes, its days are named in a dirty marker
//!   ([`DirtyMarkerKey`]); the report answers those days from the base grain;
//! - a refresh records its stamp in the shard's index after its last part
//!   and before its marker is deleted, so a reader of an index and the
//!   markers (a [`View`]) tells rows of refreshes it saw finish from rows of
//!   one still under way, and answers only from the former.

pub mod cells;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use arrow::array::{
    Array, ArrayRef, AsArray, DictionaryArray, Int64Array, Int64Builder, ListBuilder, RecordBatch, StringArray,
    StringBuilder, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, FieldRef, Int32Type, Int64Type, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;
use chrono::{Datelike, Days, NaiveDate};
use chrono_tz::Tz;
use futures::{StreamExt, TryStreamExt};
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::arrow_writer::{ArrowColumnChunk, ArrowColumnWriter, compute_leaves};

use crate::aggregate::{ChannelDim, shard_of};
use crate::calendar::{Interval, period_instants, rfc3339_in};
use crate::fifo::Fifo;
use crate::model::{MICROS_PER_DAY, UnixMicros, utc_midnight};
use crate::warehouse::manifest::{DayManifest, account_row_groups, published_day};
use crate::warehouse::paths::{DirtyMarkerKey, RollupKey, ShardSpec, Table};
use crate::warehouse::read::stream_batches;
use crate::warehouse::{self, Fetched, Warehouse};
use cells::{Cells, DailyBuilder, IdSpan, PlatformName, RollupGroup, RollupRow, RowGroup};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Warehouse(#[from] warehouse::Error),
    #[error("rollup {key} is not valid: {reason}")]
    BadRollup { key: String, reason: String },
    #[error("a rollup task failed: {0}")]
    Task(String),
    #[error("rollup {key} is needed to refresh coarser buckets, but it is gone or cannot be used")]
    LostPart {
        key: String,
        /// The published UTC days its local dates overlap: a refresh of
        /// these rebuilds it.
        around: BTreeSet<NaiveDate>,
        /// When only some accounts' buckets there cannot be used (their zone,
        /// its rules or a channel's platform changed): those accounts, which alone
        /// are rebuilt from `around` (then every published day), each with
        /// the zone it had when its zone changed.
        accounts: Option<BTreeMap<i64, Option<Tz>>>,
        /// Why it cannot be used, when it is there.
        #[source]
        unusable: Option<Box<Error>>,
    },
    #[error("rollup {key} holds account {account}'s buckets in {found}, but the account's zone is now {zone}")]
    FormerZone {
        key: String,
        account: i64,
        found: String,
        zone: String,
    },
    #[error(
        "rollup {key} holds account {account}'s bucket as [{found}), but {zone}'s rules in this build's time zone database (tzdata {tzdb}) make it [{now}): it was computed under other rules",
        tzdb = crate::calendar::TZDB_VERSION
    )]
    FormerRules {
        key: String,
        account: i64,
        zone: String,
        found: String,
        now: String,
    },
    #[error(
        "rollup {key} counts account {account}'s channel {channel} under platform {found}, but the channel's platform is now {platform}"
    )]
    FormerPlatform {
        key: String,
        account: i64,
        channel: i64,
        found: String,
        platform: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Objects fetched or written at once.
const IO_CONCURRENCY: usize = 16;
/// Local dates whose base grain is held in memory at once during a refresh,
/// at most.
const DATES_PER_WINDOW: u64 = 16;
/// Fewer dates a window for a shard of many accounts: about this many
/// (account, date) cells at once (a 16-date window of 20,000 accounts
/// peaked at 1.9 GB). Each window also reads the UTC days either side of
/// it, so a smaller one reads more of the base grain again.
const ACCOUNT_DATES_PER_WINDOW: u64 = 64_000;
/// But never fewer than this: one UTC day overlaps three local dates across
/// the world's zones, so a night's refresh stays one window.
const MIN_DATES_PER_WINDOW: u64 = 4;
/// A coarse part holding more id values than this is written before the
/// next one is computed, not while: the two parts' buckets and the writer's
/// buffers at once made a big day's peak memory grow with its contacts
/// (8M messages a day: 13 MiB over the aggregation's peak). Smaller parts,
/// a fleet night's many accounts among them, keep the overlap.
const OVERLAP_IDS: usize = 1 << 20;
/// The same for a part of more rows than this: a shard of 20,000 accounts
/// (about a million rows a part) held two parts' rows at once.
const OVERLAP_ROWS: usize = 400_000;
/// The default of [`RefreshScope::batch_weight`]. A fleet night's monthly
/// part (2,000 accounts, 1M messages a day) weighs 3.3M; a 20,000-account
/// shard's in mid-March (250,000 messages a day), 13.6M; a yearly part of
/// 2,000 accounts, written on the night that closes a year of 100,000
/// messages a day, 53M.
pub const DEFAULT_BATCH_WEIGHT: u64 = 8_000_000;
/// What a row weighs in a batch, besides its value: the sum of a distinct
/// count's values is its id list's length, and a row takes in memory about
/// what 16 values' worth of ids do (48 bytes, and the sums' values are 3 to
/// 5 times the ids).
const ROW_WEIGHT: u64 = 16;
/// A row group is closed at the first account boundary past this many
/// rows: small enough that a reader of one account decodes a few
/// milliseconds of others' rows, large enough that a part of a fleet's
/// shard is a dozen groups rather than a hundred (each group's column
/// chunks cost their writers, dictionaries and compressors again: at 1,024
/// rows that was a fifth of a night's refresh at 2,000 accounts).
const ROW_GROUP_ROWS: usize = 8 * 1024;
/// Nor past this many id values: a group's columns (and the writer's level
/// buffers, four bytes a value) are what encoding holds at once, and they
/// are encoded fastest while they stay in the core's cache. In groups of
/// up to 256k ids, a 50-account monthly part (400,000 ids) took 4.7 ms to
/// encode and a 2,000-account one 11.2 ms; in groups of 64k, 1.7 and
/// 9.3 ms, for 1% more bytes. 32k was no faster.
const ROW_GROUP_IDS: usize = 64 * 1024;

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
        ts("refreshed_at"),
        Field::new("metric", DataType::Utf8, false),
        Field::new("group_by", DataType::Utf8, false),
        Field::new("group_key", DataType::Utf8, true),
        // Read back as a dictionary: a handful of names, decoded per row group
        // rather than per row (as a plain string column it added about 7% to
        // a report from rollups).
        Field::new(
            CHANNEL_PLATFORM_COLUMN,
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            true,
        ),
        Field::new("value", DataType::Int64, false),
        Field::new(
            "ids",
            DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
            true,
        ),
    ]))
});

/// The only column a report can leave unread.
const IDS_COLUMN: &str = "ids";
/// Parts written before this column existed lack it: their channel rows
/// read back with no recorded platform, so they count as moved and are
/// rebuilt.
const CHANNEL_PLATFORM_COLUMN: &str = "channel_platform";

pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

/// One account's rows of one calendar bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountBucket {
    pub account: i64,
    /// The zone's IANA name; a known zone's is not allocated per bucket.
    pub time_zone: Cow<'static, str>,
    pub start: UnixMicros,
    pub end: UnixMicros,
    /// When the refresh that computed these rows started.
    pub refreshed_at: UnixMicros,
    pub rows: Vec<RollupRow>,
    /// The channel rows' id lists, back to back in row order (see
    /// [`cells::IdSpan`]).
    pub ids: Vec<i64>,
}

impl AccountBucket {
    /// The ids `row` (one of these rows) counted; none when they were not
    /// read or it has none.
    pub fn ids_of(&self, row: &RollupRow) -> Option<&[i64]> {
        row.ids.map(|span| span.of(&self.ids))
    }

    /// Lists lie in row order, so equal rows and buffers are equal lists.
    fn same_rows(&self, other: &AccountBucket) -> bool {
        (
            self.account,
            &self.time_zone,
            self.start,
            self.end,
            &self.rows,
            &self.ids,
        ) == (
            other.account,
            &other.time_zone,
            other.start,
            other.end,
            &other.rows,
            &other.ids,
        )
    }

    /// The first channel the rows count under a platform other than the one
    /// `platform_now` gives it (its platform changed since they were
    /// computed), and the platform they have (none when the part is older
    /// than the record of it: it may be any).
    pub fn moved_channel<'a>(&self, platform_now: impl Fn(i64) -> &'a str) -> Option<(i64, Option<&PlatformName>)> {
        self.rows.iter().find_map(|row| match (&row.group, &row.platform) {
            (RowGroup::Channel(channel), found) if found.as_deref() != Some(platform_now(*channel)) => {
                Some((*channel, found.as_ref()))
            }
            _ => None,
        })
    }

    /// Whether the rows have these values, in this order (the rows may
    /// still differ in anything else).
    fn has_values(&self, values: &[i64]) -> bool {
        self.rows.len() == values.len() && self.rows.iter().zip(values).all(|(r, v)| r.value as i64 == *v)
    }
}

/// A part as it was before a refresh: each account's row values, and its
/// bytes, to read the whole rows of the accounts that need them.
struct OldPart {
    values: OldValues,
    bytes: Option<Bytes>,
}

/// Each account's row values in row order, in one buffer (a part of a
/// fleet holds thousands of accounts).
#[derive(Debug, Default)]
struct OldValues {
    accounts: Vec<(i64, std::ops::Range<usize>)>,
    values: Vec<i64>,
}

impl OldValues {
    fn iter(&self) -> impl Iterator<Item = (i64, &[i64])> {
        self.accounts.iter().map(|(a, at)| (*a, &self.values[at.clone()]))
    }
}

/// Encodes a part: `buckets` sorted by account, one account never split
/// over two row groups ([`PartWriter`] with every account at once; a
/// refresh pushes them as they come).
#[cfg(test)]
fn encode(key: &RollupKey, buckets: &[AccountBucket]) -> Result<Bytes> {
    let mut writer = PartWriter::new(key)?;
    writer.push(buckets.to_vec())?;
    writer.finish()
}

/// A part written a batch of accounts at a time, in account order: each
/// row group is encoded as soon as its accounts are in, so what is held is
/// the encoded bytes and the accounts of one group not yet full. Groups
/// are cut as [`row_groups`] cuts the whole part, so the file is the same
/// whatever the batches.
///
/// A push's full groups are encoded on two threads, each taking the next
/// group not yet taken and building its columns. Groups are taken, not
/// dealt in halves: a fleet's first accounts hold most of its ids, and the
/// first group of a 2,000-account part cost as much to encode as the next
/// four, so the first half took 12.7 ms where the second took 7.6.
struct PartWriter {
    rel: String,
    file: parquet::file::writer::SerializedFileWriter<Vec<u8>>,
    columns: parquet::arrow::arrow_writer::ArrowRowGroupWriterFactory,
    waiting: Vec<AccountBucket>,
    groups_written: usize,
}

impl PartWriter {
    fn new(key: &RollupKey) -> Result<Self> {
        let rel = key.relative();
        let writer =
            ArrowWriter::try_new(Vec::new(), schema(), Some(properties())).map_err(|e| parquet_error(&rel, e))?;
        let (file, columns) = writer.into_serialized_writer().map_err(|e| parquet_error(&rel, e))?;
        Ok(PartWriter {
            rel,
            file,
            columns,
            waiting: Vec::new(),
            groups_written: 0,
        })
    }

    /// The next accounts, all after those pushed before.
    fn push(&mut self, buckets: Vec<AccountBucket>) -> Result<()> {
        if self.waiting.is_empty() {
            self.waiting = buckets;
        } else {
            self.waiting.extend(buckets);
        }
        let sizes: Vec<usize> = row_groups(&self.waiting)
            .take_while(|(_, full)| *full)
            .map(|(group, _)| group.len())
            .collect();
        if !sizes.is_empty() {
            let rest = self.waiting.split_off(sizes.iter().sum());
            let done = std::mem::replace(&mut self.waiting, rest);
            let mut groups = Vec::with_capacity(sizes.len());
            let mut tail = &done[..];
            for size in sizes {
                let (group, after) = tail.split_at(size);
                groups.push(group);
                tail = after;
            }
            self.write_groups(&groups)?;
        }
        Ok(())
    }

    /// The part's bytes, with the accounts still waiting as its last group.
    fn finish(mut self) -> Result<Bytes> {
        let waiting = std::mem::take(&mut self.waiting);
        let mut groups: Vec<&[AccountBucket]> = row_groups(&waiting).map(|(group, _)| group).collect();
        if groups.is_empty() && self.groups_written == 0 {
            // An empty part still carries the schema (and one empty group).
            groups.push(&[]);
        }
        if !groups.is_empty() {
            self.write_groups(&groups)?;
        }
        let rel = self.rel;
        let out = self.file.into_inner().map_err(|e| parquet_error(&rel, e))?;
        Ok(Bytes::from(out))
    }

    /// `groups` as row groups, encoded on two threads and written in order.
    fn write_groups(&mut self, groups: &[&[AccountBucket]]) -> Result<()> {
        let (rel, columns, first) = (&self.rel, &self.columns, self.groups_written);
        let next = AtomicUsize::new(0);
        let encode_taken = || -> Result<Vec<(usize, Vec<ArrowColumnChunk>)>> {
            let mut encoded = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(group) = groups.get(i) else {
                    return Ok(encoded);
                };
                let batch = group_batch(rel, group)?;
                let writers = columns
                    .create_column_writers(first + i)
                    .map_err(|e| parquet_error(rel, e))?;
                encoded.push((
                    i,
                    encode_columns(writers, SCHEMA.fields(), batch.columns()).map_err(|e| parquet_error(rel, e))?,
                ));
            }
        };
        let (mine, theirs) = std::thread::scope(|scope| {
            let theirs = (groups.len() > 1).then(|| scope.spawn(encode_taken));
            let mine = encode_taken();
            (
                mine,
                theirs.map(|t| t.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))),
            )
        });
        let mut encoded = mine?;
        if let Some(theirs) = theirs {
            encoded.extend(theirs?);
        }
        encoded.sort_unstable_by_key(|(i, _)| *i);
        for (_, chunks) in encoded {
            let mut row_group = self.file.next_row_group().map_err(|e| parquet_error(&self.rel, e))?;
            for chunk in chunks {
                chunk
                    .append_to_row_group(&mut row_group)
                    .map_err(|e| parquet_error(&self.rel, e))?;
            }
            row_group.close().map_err(|e| parquet_error(&self.rel, e))?;
            self.groups_written += 1;
        }
        Ok(())
    }
}

fn parquet_error(rel: &str, source: parquet::errors::ParquetError) -> Error {
    warehouse::Error::Parquet {
        key: rel.to_string(),
        source,
    }
    .into()
}

/// Column chunks of `arrays`, each by its own writer (one per field: every
/// column of a part has a single leaf).
fn encode_columns(
    writers: Vec<ArrowColumnWriter>,
    fields: &[FieldRef],
    arrays: &[ArrayRef],
) -> parquet::errors::Result<Vec<ArrowColumnChunk>> {
    writers
        .into_iter()
        .zip(fields.iter().zip(arrays))
        .map(|(mut writer, (field, array))| {
            for leaf in compute_leaves(field, array)? {
                writer.write(&leaf)?;
            }
            writer.close()
        })
        .collect()
}

/// `buckets` cut into row groups at the first account boundary past
/// [`ROW_GROUP_ROWS`] rows or [`ROW_GROUP_IDS`] id values, each with whether
/// it ended at such a limit (else at the end of `buckets`).
fn row_groups(buckets: &[AccountBucket]) -> impl Iterator<Item = (&[AccountBucket], bool)> {
    let mut rest = buckets;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (mut rows, mut ids, mut end) = (0, 0, 0);
        while end < rest.len() && rows < ROW_GROUP_ROWS && ids < ROW_GROUP_IDS {
            rows += rest[end].rows.len();
            ids += rest[end].ids.len();
            end += 1;
        }
        let (group, tail) = rest.split_at(end);
        rest = tail;
        Some((group, rows >= ROW_GROUP_ROWS || ids >= ROW_GROUP_IDS))
    })
}

/// The columns of one row group.
fn group_batch(rel: &str, buckets: &[AccountBucket]) -> Result<RecordBatch> {
    let n: usize = buckets.iter().map(|b| b.rows.len()).sum();
    let rows = || buckets.iter().flat_map(|b| b.rows.iter());
    let per_row = |f: fn(&AccountBucket) -> i64| -> Vec<i64> {
        buckets
            .iter()
            .flat_map(|b| std::iter::repeat_n(f(b), b.rows.len()))
            .collect()
    };
    let values: usize = buckets.iter().map(|b| b.ids.len()).sum();
    let mut ids = ListBuilder::with_capacity(Int64Builder::with_capacity(values), n);
    for bucket in buckets {
        for row in &bucket.rows {
            match bucket.ids_of(row) {
                Some(list) => {
                    ids.values().append_slice(list);
                    ids.append(true);
                }
                None => ids.append(false),
            }
        }
    }
    let utc = |v: Vec<i64>| Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC")) as ArrayRef;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(per_row(|b| b.account))),
        Arc::new(StringArray::from_iter_values(
            buckets
                .iter()
                .flat_map(|b| std::iter::repeat_n(&*b.time_zone, b.rows.len())),
        )),
        utc(per_row(|b| b.start)),
        utc(per_row(|b| b.end)),
        utc(per_row(|b| b.refreshed_at)),
        Arc::new(StringArray::from_iter_values(
            rows().map(|r| cells::rollup_metric_name(r.metric)),
        )),
        Arc::new(StringArray::from_iter_values(rows().map(|r| r.group.kind().as_str()))),
        Arc::new(group_keys(rows(), n)),
        Arc::new(channel_platforms(rows(), n)),
        Arc::new(Int64Array::from_iter_values(rows().map(|r| r.value as i64))),
        Arc::new(ids.finish()),
    ];
    RecordBatch::try_new(schema(), columns).map_err(|source| {
        warehouse::Error::Arrow {
            key: rel.to_string(),
            source,
        }
        .into()
    })
}

/// The `group_key` column: a channel's id in decimal, a platform's name, or
/// null for all channels.
fn group_keys<'a>(rows: impl Iterator<Item = &'a RollupRow>, n: usize) -> StringArray {
    use std::fmt::Write as _;
    let mut keys = StringBuilder::with_capacity(n, n * 8);
    let mut digits = String::new();
    for row in rows {
        match &row.group {
            RowGroup::All => keys.append_null(),
            RowGroup::Channel(id) => {
                digits.clear();
                write!(digits, "{id}").expect("writing to a String");
                keys.append_value(&digits);
            }
            RowGroup::Platform(name) => keys.append_value(name),
        }
    }
    keys.finish()
}

/// The `channel_platform` column: each row's key into the few names of
/// the group. Rows of one account share its names (one allocation each), so
/// a name is nearly always found by its address, without hashing.
fn channel_platforms<'a>(rows: impl Iterator<Item = &'a RollupRow>, n: usize) -> DictionaryArray<Int32Type> {
    let mut names: Vec<&PlatformName> = Vec::new();
    let mut keys = arrow::array::Int32Builder::with_capacity(n);
    let mut last: Option<(&PlatformName, i32)> = None;
    for row in rows {
        let Some(name) = &row.platform else {
            keys.append_null();
            continue;
        };
        let key = match last {
            Some((known, key)) if PlatformName::same_allocation(known, name) => key,
            _ => {
                let at = names
                    .iter()
                    .position(|n| PlatformName::same_allocation(n, name) || n == &name);
                let key = at.unwrap_or_else(|| {
                    names.push(name);
                    names.len() - 1
                }) as i32;
                last = Some((name, key));
                key
            }
        };
        keys.append_value(key);
    }
    let values = StringArray::from_iter_values(names.iter().map(|n| &***n));
    DictionaryArray::new(keys.finish(), Arc::new(values))
}

/// Every column but the id lists repeats a few values (one account, zone
/// and bucket per run of rows; five metrics; three groupings): dictionary
/// and run-length encoding make them nearly free, where plain strings were
/// nine tenths of a part. The id lists are sorted runs of small gaps: delta
/// encoding packs them about as tight as zstd did (tighter where lists are
/// long) at a fraction of its cost, which was an eighth of a fleet's night
/// refresh. No column needs a codec, so no reader creates a decompressor.
fn properties() -> parquet::file::properties::WriterProperties {
    use parquet::basic::{Compression, Encoding};
    use parquet::file::metadata::SortingColumn;
    use parquet::file::properties::EnabledStatistics;
    use parquet::schema::types::ColumnPath;
    let ids = ColumnPath::new(vec!["ids".into(), "list".into(), "item".into()]);
    parquet::file::properties::WriterProperties::builder()
        .set_compression(Compression::UNCOMPRESSED)
        .set_column_encoding(ids.clone(), Encoding::DELTA_BINARY_PACKED)
        .set_dictionary_enabled(true)
        .set_column_dictionary_enabled(ids, false)
        // Readers skip row groups by `account_id` alone; statistics of the
        // other columns (and page-level ones) were work for every value
        // that no reader of ours looks at.
        .set_statistics_enabled(EnabledStatistics::None)
        .set_column_statistics_enabled(ColumnPath::from("account_id"), EnabledStatistics::Chunk)
        // Row groups are cut at account boundaries by `encode`.
        .set_max_row_group_row_count(None)
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: 0,
            descending: false,
            nulls_first: true,
        }]))
        .set_created_by(format!("account-usage {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// A reader of the columns `wanted` (all when `None`) of a part, over the
/// row groups that can hold `accounts` (all when `None`). A part in this
/// schema, or in the one before `channel_platform`, is read.
fn open_part(
    rel: &str,
    bytes: Bytes,
    wanted: Option<&[&str]>,
    accounts: Option<&[i64]>,
) -> Result<parquet::arrow::arrow_reader::ParquetRecordBatchReader> {
    let bad = |reason: String| Error::BadRollup {
        key: rel.to_string(),
        reason,
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| bad(e.to_string()))?;
    // Another schema (a newer or older version wrote it, or it is not a
    // rollup): said as such, never a projection past its columns.
    let columns = |schema: &Schema| -> Vec<(String, DataType)> {
        schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect()
    };
    let expected = columns(&SCHEMA);
    let found = columns(builder.schema());
    let mut before_platforms = expected.clone();
    before_platforms.retain(|(name, _)| name != CHANNEL_PLATFORM_COLUMN);
    if found != expected && found != before_platforms {
        let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
        return Err(bad(format!("it has another schema (columns {})", names.join(", "))));
    }
    let roots: Vec<usize> = found
        .iter()
        .enumerate()
        .filter(|(_, (name, _))| wanted.is_none_or(|w| w.contains(&name.as_str())))
        .map(|(i, _)| i)
        .collect();
    let row_groups = account_row_groups(builder.metadata(), builder.parquet_schema(), accounts);
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    builder
        .with_projection(mask)
        .with_row_groups(row_groups)
        .build()
        .map_err(|e| bad(e.to_string()))
}

/// Each account's row values in a part, in row order: what a refresh
/// compares first (a night changes nearly every account's values, and
/// these two integer columns decode for a fraction of the rest).
fn decode_values(key: &RollupKey, bytes: Bytes) -> Result<OldValues> {
    let rel = key.relative();
    let bad = |reason: String| Error::BadRollup {
        key: rel.clone(),
        reason,
    };
    let reader = open_part(&rel, bytes, Some(&["account_id", "value"]), None)?;
    let mut out = OldValues::default();
    for batch in reader {
        let batch = batch.map_err(|e| bad(e.to_string()))?;
        let int = |name: &str| crate::warehouse::tables::i64_values(&batch, name).map_err(&bad);
        let (account, value) = (int("account_id")?, int("value")?);
        out.values.extend_from_slice(value);
        for a in account {
            let at = match out.accounts.last_mut() {
                Some((last, at)) if *last == *a => at,
                Some((last, _)) if *last > *a => return Err(bad("accounts are not sorted".into())),
                last => {
                    let end = last.map_or(0, |(_, at)| at.end);
                    out.accounts.push((*a, end..end));
                    &mut out.accounts.last_mut().expect("pushed").1
                }
            };
            at.end += 1;
        }
    }
    // Held through the bucket's compute and write: no doubling's slack.
    out.values.shrink_to_fit();
    out.accounts.shrink_to_fit();
    Ok(out)
}

/// Decodes a part: every account, or only `accounts` (sorted), whose row
/// groups alone are read. Without `with_ids`, id lists are not read.
pub fn decode(key: &RollupKey, bytes: Bytes, with_ids: bool, accounts: Option<&[i64]>) -> Result<Vec<AccountBucket>> {
    let rel = key.relative();
    let bad = |reason: String| Error::BadRollup {
        key: rel.clone(),
        reason,
    };
    let all_but_ids: Vec<&str> = SCHEMA
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .filter(|name| *name != IDS_COLUMN)
        .collect();
    let reader = open_part(&rel, bytes, (!with_ids).then_some(&all_but_ids[..]), accounts)?;
    let mut out: Vec<AccountBucket> = Vec::new();
    let mut platforms = Interned::default();
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
        // Each name of the row group's dictionary, interned once; None in a
        // part written before the column existed.
        let channel_platform = match batch.column_by_name(CHANNEL_PLATFORM_COLUMN) {
            Some(column) => {
                let dictionary = column
                    .as_dictionary_opt::<Int32Type>()
                    .ok_or_else(|| bad(format!("column {CHANNEL_PLATFORM_COLUMN} is not a dictionary")))?;
                let names = dictionary
                    .values()
                    .as_string_opt::<i32>()
                    .ok_or_else(|| bad(format!("column {CHANNEL_PLATFORM_COLUMN} is not text")))?;
                let interned: Vec<PlatformName> =
                    names.iter().map(|n| platforms.intern(n.unwrap_or_default())).collect();
                Some((dictionary, interned))
            }
            None => None,
        };
        let account = int("account_id")?;
        let (start, end, refreshed_at, value) = (
            int("bucket_start")?,
            int("bucket_end")?,
            int("refreshed_at")?,
            int("value")?,
        );
        let ids = if with_ids {
            let list = column("ids")?.as_list_opt::<i32>().ok_or_else(|| bad("ids".into()))?;
            let values = list
                .values()
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(|| bad("ids are not integers".into()))?
                .values();
            Some((list, &values[..]))
        } else {
            None
        };
        for i in 0..batch.num_rows() {
            if accounts.is_some_and(|wanted| wanted.binary_search(&account[i]).is_err()) {
                continue;
            }
            if out.last().is_none_or(|b| b.account != account[i]) {
                if out.last().is_some_and(|b| b.account > account[i]) {
                    return Err(bad("accounts are not sorted".into()));
                }
                if let Some(done) = out.last_mut() {
                    // Its buffer grew by doubling; given back in place.
                    done.ids.shrink_to_fit();
                }
                out.push(AccountBucket {
                    account: account[i],
                    time_zone: zone_name(zone.value(i)),
                    start: start[i],
                    end: end[i],
                    refreshed_at: refreshed_at[i],
                    rows: Vec::new(),
                    ids: Vec::new(),
                });
            }
            let bucket = out.last_mut().expect("pushed above");
            let metric = known_metric(metric.value(i)).ok_or_else(|| bad(format!("metric {:?}", metric.value(i))))?;
            let key = group_key.is_valid(i).then(|| group_key.value(i));
            // A channel row without one was carried over from a part an
            // earlier build wrote: its platform was not recorded.
            let platform = channel_platform.as_ref().and_then(|(dictionary, interned)| {
                let key = dictionary.is_valid(i).then(|| dictionary.keys().value(i))?;
                interned.get(usize::try_from(key).ok()?)
            });
            let (group, platform) = match (RollupGroup::parse(group_by.value(i)), key, platform) {
                (Some(RollupGroup::All), None, None) => (RowGroup::All, None),
                (Some(RollupGroup::Channel), Some(key), platform) => (
                    RowGroup::Channel(key.parse().map_err(|_| bad(format!("channel {key:?}")))?),
                    platform.map(|p| platforms.intern(p)),
                ),
                (Some(RollupGroup::Platform), Some(key), None) => (RowGroup::Platform(platforms.intern(key)), None),
                _ => {
                    return Err(bad(format!(
                        "group {:?} {key:?} (channel platform {platform:?})",
                        group_by.value(i)
                    )));
                }
            };
            // Copied straight from the list's values by its offsets: no
            // array is built per row.
            let ids = ids.filter(|(l, _)| l.is_valid(i)).map(|(l, values)| {
                let offsets = l.value_offsets();
                let (from, to) = (offsets[i] as usize, offsets[i + 1] as usize);
                IdSpan::append(&mut bucket.ids, values.get(from..to).unwrap_or_default())
            });
            bucket.rows.push(RollupRow {
                metric,
                group,
                value: value[i].max(0) as u64,
                ids,
                platform,
            });
        }
    }
    if let Some(done) = out.last_mut() {
        done.ids.shrink_to_fit();
    }
    Ok(out)
}

/// A zone name read from a part: a known zone's static name, else the text
/// (which the refresh then finds to be a zone the account does not have).
fn zone_name(name: &str) -> Cow<'static, str> {
    match name.parse::<Tz>() {
        Ok(tz) if tz.name() == name => Cow::Borrowed(tz.name()),
        _ => Cow::Owned(name.to_string()),
    }
}

/// Platform names read from one part, each allocated once and shared by
/// the rows that name it (a handful per part).
#[derive(Default)]
struct Interned(Vec<PlatformName>);

impl Interned {
    fn intern(&mut self, name: &str) -> PlatformName {
        if let Some(found) = self.0.iter().find(|n| &***n == name) {
            return found.clone();
        }
        let new = PlatformName::new(name);
        self.0.push(new.clone());
        new
    }
}

fn known_metric(name: &str) -> Option<crate::metric::Metric> {
    crate::metric::Metric::ALL
        .into_iter()
        .find(|m| cells::rollup_metric_name(*m) == name)
}

/// Decoded parts kept across reports (`serve` holds one): the buckets of
/// some accounts in one part, with the version (ETag) of the object they
/// were decoded from and the last view generation that confirmed it.
///
/// A part is confirmed once per generation (a snapshot of the indexes and
/// dirty markers, see [`View`]) by one conditional request that carries no
/// body when the object did not change; later reads in that generation
/// make no request at all. A part rewritten within a generation is either
/// still the confirmed version, or was confirmed after the rewrite and
/// carries stamps of a refresh the view has not seen finish, which
/// [`read_for_account`] refuses: so one answer never mixes parts from
/// before and after a refresh.
#[derive(Debug)]
pub struct PartCache {
    entries: Mutex<PartEntries>,
}

/// The part, whether id lists were read, and the accounts read. Keyed by
/// the part's key, not its path: a hit formats nothing.
type PartCacheKey = (RollupKey, bool, Option<Vec<i64>>);
type PartEntries = Fifo<PartCacheKey, Arc<CachedPart>>;

#[derive(Debug)]
struct CachedPart {
    e_tag: String,
    confirmed_in: AtomicU64,
    buckets: Vec<Arc<AccountBucket>>,
}

impl PartCache {
    /// At most about `capacity_bytes` of decoded buckets (0 turns it off).
    pub fn new(capacity_bytes: u64) -> Self {
        PartCache {
            entries: Mutex::new(Fifo::new(capacity_bytes)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PartEntries> {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What decoded buckets take in memory, roughly.
    fn weight(buckets: &[Arc<AccountBucket>]) -> u64 {
        let bytes: usize = std::mem::size_of_val(buckets)
            + buckets
                .iter()
                .map(|b| {
                    std::mem::size_of::<AccountBucket>()
                        + b.rows.len() * std::mem::size_of::<RollupRow>()
                        + b.ids.len() * std::mem::size_of::<i64>()
                })
                .sum::<usize>();
        bytes as u64
    }

    /// Entries held, and the bytes they weigh.
    pub fn usage(&self) -> (usize, u64) {
        let entries = self.lock();
        (entries.len(), entries.used())
    }
}

/// How a reader sees the rollups: where parts may be, which refreshes it
/// knows finished, and the cache it reads through.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    /// Shard counts whose parts may hold an account.
    pub counts: &'a BTreeSet<u32>,
    /// By shard spec, the stamp of its latest finished refresh
    /// (`warehouse::index`); a row stamped later is from a refresh still
    /// under way (or failed), and is not answered from. A spec missing here
    /// (an index older than the stamps) is not checked.
    pub finished: Option<&'a BTreeMap<ShardSpec, UnixMicros>>,
    /// Decoded parts, confirmed once per generation.
    pub cache: Option<(&'a PartCache, u64)>,
}

impl<'a> View<'a> {
    /// Reads every part from the store and checks no stamps: what a
    /// refresh reads finer buckets with, under its lease.
    pub fn plain(counts: &'a BTreeSet<u32>) -> Self {
        View {
            counts,
            finished: None,
            cache: None,
        }
    }

    fn finished(&self, bucket: &AccountBucket, shard: ShardSpec) -> bool {
        self.finished
            .and_then(|f| f.get(&shard))
            .is_none_or(|stamp| bucket.refreshed_at <= *stamp)
    }
}

/// One part, if it exists: every account, or only `accounts` (sorted).
pub async fn read_part(
    warehouse: &Warehouse,
    key: RollupKey,
    with_ids: bool,
    accounts: Option<&[i64]>,
    cache: Option<(&PartCache, u64)>,
) -> Result<Option<Vec<Arc<AccountBucket>>>> {
    let plain = |bytes| -> Result<Vec<Arc<AccountBucket>>> {
        Ok(decode(&key, bytes, with_ids, accounts)?
            .into_iter()
            .map(Arc::new)
            .collect())
    };
    let Some((cache, generation)) = cache else {
        return warehouse.get(&key.relative()).await?.map(plain).transpose();
    };
    let cache_key: PartCacheKey = (key, with_ids, accounts.map(<[i64]>::to_vec));
    let known = cache.lock().get(&cache_key).cloned();
    if let Some(part) = known
        .as_ref()
        .filter(|p| p.confirmed_in.load(Ordering::Relaxed) == generation)
    {
        return Ok(Some(part.buckets.clone()));
    }
    let fetched = warehouse
        .get_if_changed(&key.relative(), known.as_ref().map(|p| p.e_tag.as_str()))
        .await?;
    match (fetched, known) {
        (Fetched::Missing, _) => {
            cache.lock().remove(&cache_key);
            Ok(None)
        }
        (Fetched::Unchanged, Some(part)) => {
            part.confirmed_in.store(generation, Ordering::Relaxed);
            Ok(Some(part.buckets.clone()))
        }
        // Only a known version can be unchanged; a store that says so
        // anyway is read again, plainly.
        (Fetched::Unchanged, None) => Box::pin(read_part(warehouse, key, with_ids, accounts, None)).await,
        (Fetched::Body { bytes, e_tag }, _) => {
            let buckets = plain(bytes)?;
            match e_tag {
                Some(e_tag) => {
                    let weight = PartCache::weight(&buckets);
                    let part = CachedPart {
                        e_tag,
                        confirmed_in: AtomicU64::new(generation),
                        buckets: buckets.clone(),
                    };
                    cache.lock().insert(cache_key, Arc::new(part), weight);
                }
                None => cache.lock().remove(&cache_key),
            }
            Ok(Some(buckets))
        }
    }
}

/// The bucket `(interval, period)` of each of `accounts`, from the parts of
/// every shard count the view names, with the shard spec of the part it
/// came from; of two parts holding one account, the rows refreshed last.
/// Accounts no part holds are left out. Also whether any part of the
/// bucket was there at all (a refresh tells a part that was lost from one
/// that holds nobody).
pub async fn read_accounts(
    warehouse: &Warehouse,
    view: View<'_>,
    interval: Interval,
    period: NaiveDate,
    accounts: &[i64],
    with_ids: bool,
) -> Result<(LatestRows, bool)> {
    let parts: Vec<(ShardSpec, Option<Vec<Arc<AccountBucket>>>)> =
        futures::stream::iter(parts_holding(view.counts, interval, period, accounts).into_iter().map(
            |(key, ids)| async move {
                Ok::<_, Error>((
                    key.shard,
                    read_part(warehouse, key, with_ids, Some(&ids), view.cache).await?,
                ))
            },
        ))
        .buffered(IO_CONCURRENCY)
        .try_collect()
        .await?;
    Ok(latest_rows(parts))
}

/// The parts of `(interval, period)` of every shard count in `counts` that
/// may hold `accounts`, each with those of them it may hold (sorted).
fn parts_holding(
    counts: &BTreeSet<u32>,
    interval: Interval,
    period: NaiveDate,
    accounts: &[i64],
) -> BTreeMap<RollupKey, Vec<i64>> {
    let mut wanted: BTreeMap<RollupKey, Vec<i64>> = BTreeMap::new();
    for &count in counts {
        for &account in accounts {
            let shard = ShardSpec {
                index: shard_of(account, count),
                count,
            };
            wanted
                .entry(RollupKey {
                    interval,
                    period,
                    shard,
                })
                .or_default()
                .push(account);
        }
    }
    for ids in wanted.values_mut() {
        ids.sort_unstable();
        ids.dedup();
    }
    wanted
}

/// Each account's rows of a bucket, with the shard spec of the part they
/// came from.
pub type LatestRows = HashMap<i64, (ShardSpec, Arc<AccountBucket>)>;

/// Of the parts read, each account's rows refreshed last, and whether any
/// part was there at all.
fn latest_rows(parts: Vec<(ShardSpec, Option<Vec<Arc<AccountBucket>>>)>) -> (LatestRows, bool) {
    let any_part = parts.iter().any(|(_, buckets)| buckets.is_some());
    let mut out: LatestRows = HashMap::new();
    for (shard, buckets) in parts {
        for bucket in buckets.into_iter().flatten() {
            match out.get(&bucket.account) {
                Some((_, have)) if have.refreshed_at >= bucket.refreshed_at => {}
                _ => {
                    out.insert(bucket.account, (shard, bucket));
                }
            }
        }
    }
    (out, any_part)
}

/// Finer parts a coarse bucket is built from, fetched once for all its
/// batches of accounts (each batch decodes its own accounts' row groups).
type FetchedParts = HashMap<RollupKey, Option<Bytes>>;

/// The parts [`read_accounts`] would read for each of `to_read`, fetched.
async fn fetch_parts(warehouse: &Warehouse, counts: &BTreeSet<u32>, to_read: &[PartToRead]) -> Result<FetchedParts> {
    let keys: BTreeSet<RollupKey> = to_read
        .iter()
        .flat_map(|(child, p, ids)| parts_holding(counts, *child, *p, ids).into_keys())
        .collect();
    futures::stream::iter(
        keys.into_iter()
            .map(|key| async move { Ok::<_, Error>((key, warehouse.get(&key.relative()).await?)) }),
    )
    .buffered(IO_CONCURRENCY)
    .try_collect()
    .await
}

/// [`read_accounts`] (ids too) from parts already fetched.
fn read_fetched_accounts(
    fetched: &FetchedParts,
    counts: &BTreeSet<u32>,
    interval: Interval,
    period: NaiveDate,
    accounts: &[i64],
) -> Result<(LatestRows, bool)> {
    let parts = parts_holding(counts, interval, period, accounts)
        .into_iter()
        .map(|(key, ids)| {
            let decoded = match fetched.get(&key).cloned().flatten() {
                Some(bytes) => Some(
                    decode(&key, bytes, true, Some(&ids))?
                        .into_iter()
                        .map(Arc::new)
                        .collect(),
                ),
                None => None,
            };
            Ok((key.shard, decoded))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(latest_rows(parts))
}

/// What a reader of one account's bucket finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found(Arc<AccountBucket>),
    /// No part holds the account's bucket.
    Missing,
    /// The latest rows are from a refresh the view has not seen finish.
    Unfinished,
}

/// Several buckets of one account at once, in the order asked.
pub async fn read_for_account(
    warehouse: &Warehouse,
    view: View<'_>,
    account: i64,
    buckets: &[(Interval, NaiveDate)],
    with_ids: bool,
) -> Result<Vec<Lookup>> {
    if let Some(found) = read_for_account_cached(view, account, buckets, with_ids) {
        return Ok(found);
    }
    futures::stream::iter(buckets.iter().copied())
        .map(|(interval, period)| async move {
            let (mut found, _) = read_accounts(warehouse, view, interval, period, &[account], with_ids).await?;
            Ok::<_, Error>(match found.remove(&account) {
                Some((shard, bucket)) if view.finished(&bucket, shard) => Lookup::Found(bucket),
                Some(_) => Lookup::Unfinished,
                None => Lookup::Missing,
            })
        })
        .buffered(IO_CONCURRENCY)
        .try_collect()
        .await
}

/// [`read_for_account`] without I/O or tasks, when every part it would read
/// is in the cache and confirmed in the view's generation (a served answer
/// from rollups, once warm); `None` sends it the long way. Picks as
/// [`read_accounts`] does: parts in key order, a later one only if its rows
/// were refreshed later.
fn read_for_account_cached(
    view: View<'_>,
    account: i64,
    buckets: &[(Interval, NaiveDate)],
    with_ids: bool,
) -> Option<Vec<Lookup>> {
    let (cache, generation) = view.cache?;
    let entries = cache.lock();
    let mut cache_key: PartCacheKey = (
        RollupKey {
            interval: Interval::Daily,
            period: NaiveDate::MIN,
            shard: ShardSpec { index: 0, count: 1 },
        },
        with_ids,
        Some(vec![account]),
    );
    let mut keys: Vec<RollupKey> = Vec::with_capacity(view.counts.len());
    buckets
        .iter()
        .map(|&(interval, period)| {
            keys.clear();
            keys.extend(view.counts.iter().map(|&count| RollupKey {
                interval,
                period,
                shard: ShardSpec {
                    index: shard_of(account, count),
                    count,
                },
            }));
            keys.sort_unstable();
            let mut latest: Option<(ShardSpec, &Arc<AccountBucket>)> = None;
            for key in &keys {
                cache_key.0 = *key;
                let part = entries
                    .get(&cache_key)
                    .filter(|p| p.confirmed_in.load(Ordering::Relaxed) == generation)?;
                for bucket in part.buckets.iter().filter(|b| b.account == account) {
                    if latest.is_none_or(|(_, have)| have.refreshed_at < bucket.refreshed_at) {
                        latest = Some((key.shard, bucket));
                    }
                }
            }
            Some(match latest {
                Some((shard, bucket)) if view.finished(bucket, shard) => Lookup::Found(bucket.clone()),
                Some(_) => Lookup::Unfinished,
                None => Lookup::Missing,
            })
        })
        .collect()
}

/// An account whose rollups a run refreshes.
#[derive(Debug, Clone)]
pub struct AccountSpec {
    pub id: i64,
    pub tz: Tz,
    pub channels: Vec<ChannelDim>,
}

/// An account as a refresh works on it: its channels' platforms are named
/// once for all its buckets.
struct Account {
    spec: AccountSpec,
    platforms: cells::Platforms,
}

/// What one refresh works on.
#[derive(Debug, Clone)]
pub struct RefreshScope<'a> {
    /// The shard whose parts this run writes.
    pub shard: ShardSpec,
    /// UTC days whose rollups are stale.
    pub utc_days: &'a BTreeSet<NaiveDate>,
    /// Moved into the refresh: a fleet shard's channels are thousands of
    /// rows, not worth a copy.
    pub accounts: Vec<AccountSpec>,
    /// The manifests this run just published (read in place of the readable
    /// set, which for a sharded day may still be the previous version until
    /// every shard is in).
    pub own: &'a BTreeMap<NaiveDate, DayManifest>,
    /// When this refresh started (under the run's lease), stamped on every
    /// row it writes; raised past the spec's last finished refresh if the
    /// clock is behind it, so a later refresh always stamps later.
    pub refreshed_at: UnixMicros,
    /// A monthly, quarterly or yearly bucket whose old part (or, for a
    /// quarter's or a year's first, whose finer parts) weighs more than
    /// this ([`ROW_WEIGHT`]) is computed and written in batches of accounts
    /// of about this weight, so that the night that closes a year, or one
    /// of a shard of many accounts, does not hold all its rows at once.
    pub batch_weight: u64,
}

/// What a refresh wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefreshReport {
    /// Parts written per interval.
    pub files: BTreeMap<&'static str, u64>,
    /// Parts left as they were (their rows did not change).
    pub unchanged: u64,
    /// Parts computed and written in batches of accounts
    /// ([`RefreshScope::batch_weight`]).
    pub batched: u64,
    /// Time spent on daily buckets (from the base grain) and on coarser ones.
    pub daily_ms: u64,
    pub coarse_ms: u64,
    /// The stamp the written rows carry. The caller records it in the
    /// index (`warehouse::index::record_finished`) before it deletes its
    /// dirty marker: readers that see no marker see this stamp, so they take
    /// this refresh's rows as finished, and only its rows.
    pub refreshed_at: UnixMicros,
}

/// A bucket a refresh computed, with the cells it was made from when a
/// coarser bucket is built from them (else the rows took their id lists).
type Fresh = (AccountBucket, Option<Cells>);

/// The cells this refresh just computed, by bucket and account: coarser
/// buckets take them from here instead of reading back and decoding the
/// parts just written. Kept only for intervals a coarser one is built from,
/// with few periods in the refresh (a night's), and only until that coarser
/// one is done: every level holds a copy of the same id lists, so a night's
/// peak memory is three levels of them (days and weeks while the month is
/// built), not five.
struct JustComputed {
    cells: HashMap<(Interval, NaiveDate), HashMap<i64, Cells>>,
    keeping: BTreeSet<Interval>,
}

impl JustComputed {
    /// Periods of one interval worth keeping in memory.
    const MAX_PERIODS: usize = 4;

    fn new(daily_periods: usize) -> Self {
        let mut keeping = BTreeSet::new();
        if daily_periods <= Self::MAX_PERIODS {
            keeping.insert(Interval::Daily);
        }
        JustComputed {
            cells: HashMap::new(),
            keeping,
        }
    }

    /// `interval` is about to be computed over `periods` periods; `feeds`
    /// says whether a coarser interval is built from it.
    fn start(&mut self, interval: Interval, periods: usize, feeds: bool) {
        if feeds && periods <= Self::MAX_PERIODS {
            self.keeping.insert(interval);
        }
    }

    /// Whether cells of `interval` are kept: when not, they are dropped as
    /// soon as their rows are built.
    fn keeps(&self, interval: Interval) -> bool {
        self.keeping.contains(&interval)
    }

    /// Nothing is built from `interval` any more.
    fn release(&mut self, interval: Interval) {
        self.keeping.remove(&interval);
        self.cells.retain(|(i, _), _| *i != interval);
    }

    /// Keeps the cells (when the interval is kept) and hands the buckets on.
    fn keep(&mut self, interval: Interval, period: NaiveDate, fresh: Vec<Fresh>) -> Vec<AccountBucket> {
        if !self.keeping.contains(&interval) {
            return fresh.into_iter().map(|(bucket, _)| bucket).collect();
        }
        let kept = self.cells.entry((interval, period)).or_default();
        fresh
            .into_iter()
            .map(|(bucket, cells)| {
                kept.extend(cells.map(|c| (bucket.account, c)));
                bucket
            })
            .collect()
    }

    /// The cells of `account` in `(interval, period)`: moved out when
    /// `last_use` (no other bucket is built from them), else copied.
    fn child(&mut self, interval: Interval, period: NaiveDate, account: i64, last_use: bool) -> Option<Cells> {
        let kept = self.cells.get_mut(&(interval, period))?;
        if last_use {
            kept.remove(&account)
        } else {
            kept.get(&account).cloned()
        }
    }
}

/// Where parts may be read and how they are replaced, for one refresh.
struct Parts<'a> {
    warehouse: &'a Warehouse,
    shard: ShardSpec,
    /// Every shard count whose parts may hold an account of this run.
    counts: BTreeSet<u32>,
    refreshed_at: UnixMicros,
    /// By part, the accounts whose rows it must lose: buckets their former
    /// zone gave them and their zone now does not ([`former_zone_buckets`]).
    /// A part this run replaces anyway loses them in that one put.
    gone: BTreeMap<(Interval, NaiveDate), Vec<i64>>,
}

impl Parts<'_> {
    fn key(&self, interval: Interval, period: NaiveDate) -> RollupKey {
        RollupKey {
            interval,
            period,
            shard: self.shard,
        }
    }

    /// This shard's part of `(interval, period)` as it is now, decoded off
    /// the async workers (so it overlaps computing the new one). A part
    /// nobody can read counts as empty: it is rebuilt from this run's
    /// accounts, and the others' buckets there are answered from the base
    /// grain until their next run.
    /// Only the accounts and values are decoded: a night changes nearly
    /// every account's values, and only an account whose values are
    /// unchanged (or that is carried over) needs its whole rows
    /// ([`Self::replace`]).
    async fn current(&self, interval: Interval, period: NaiveDate) -> Result<OldPart> {
        let bytes = self.fetch(interval, period).await?;
        self.decode_old(interval, period, bytes).await
    }

    /// The bytes of this shard's part of `(interval, period)`, if any.
    async fn fetch(&self, interval: Interval, period: NaiveDate) -> Result<Option<Bytes>> {
        Ok(self.warehouse.get(&self.key(interval, period).relative()).await?)
    }

    /// [`Self::current`] from bytes already fetched.
    async fn decode_old(&self, interval: Interval, period: NaiveDate, bytes: Option<Bytes>) -> Result<OldPart> {
        old_part(self.key(interval, period), bytes).await
    }

    /// Replaces the part of `(interval, period)` by one with `fresh` in
    /// place of those accounts' rows (see [`Replacing`]); whether it was
    /// written (else its rows were unchanged).
    async fn replace(
        &self,
        interval: Interval,
        period: NaiveDate,
        fresh: Vec<AccountBucket>,
        old: OldPart,
    ) -> Result<bool> {
        let replacing = self.replacing(interval, period, old).push(fresh, None).await?;
        self.put_replaced(replacing).await
    }

    /// A replace of the part of `(interval, period)`, to which fresh
    /// buckets are pushed a batch of accounts at a time.
    fn replacing(&self, interval: Interval, period: NaiveDate, old: OldPart) -> Replacing {
        let gone: Vec<i64> = self.gone.get(&(interval, period)).cloned().unwrap_or_default();
        // A part is written even when it holds nobody (a coarser bucket then
        // tells a part that was lost from an empty one), and when it loses
        // an account whose rows must go.
        let changed = old.bytes.is_none() || old.values.iter().any(|(a, _)| gone.contains(&a));
        Replacing {
            key: self.key(interval, period),
            old,
            next_old: 0,
            gone,
            // When parts of another count may hold these accounts too, rows
            // must carry this run's stamp to win over theirs, even if unchanged.
            only_count: self.counts.len() == 1,
            refreshed_at: self.refreshed_at,
            changed,
            held: Vec::new(),
            writer: None,
        }
    }

    /// Writes the replaced part, unless its rows did not change.
    async fn put_replaced(&self, replacing: Replacing) -> Result<bool> {
        let key = replacing.key;
        let bytes = tokio::task::spawn_blocking(move || replacing.finish())
            .await
            .map_err(|e| Error::Task(e.to_string()))??;
        match bytes {
            Some(bytes) => {
                self.warehouse.put(&key.relative(), bytes).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// A part as it is before a refresh replaces it ([`Parts::current`]), from
/// its bytes, its values decoded off the async workers.
async fn old_part(key: RollupKey, bytes: Option<Bytes>) -> Result<OldPart> {
    let Some(bytes) = bytes else {
        return Ok(OldPart {
            values: OldValues::default(),
            bytes: None,
        });
    };
    let kept = bytes.clone();
    let decoded = tokio::task::spawn_blocking(move || decode_values(&key, bytes))
        .await
        .map_err(|e| Error::Task(e.to_string()))?;
    match decoded {
        Ok(values) => Ok(OldPart {
            values,
            bytes: Some(kept),
        }),
        Err(e @ Error::BadRollup { .. }) => {
            tracing::warn!(error = %e, "Replacing an unreadable rollup part.");
            Ok(OldPart {
                values: OldValues::default(),
                bytes: None,
            })
        }
        Err(e) => Err(e),
    }
}

/// A part being replaced: each fresh account's rows take the place of its
/// old ones, the old part's other accounts are carried over, and the rows
/// are encoded as they come, in account order. An account whose values are
/// unchanged is compared whole (ids too) with its old rows, and keeps them
/// (and their stamp) when they are the same: a part whose rows would all be
/// the same is not written.
struct Replacing {
    key: RollupKey,
    old: OldPart,
    /// The old part's accounts before this one are placed.
    next_old: usize,
    /// Accounts whose rows must go.
    gone: Vec<i64>,
    only_count: bool,
    refreshed_at: UnixMicros,
    changed: bool,
    /// The rows placed while none has changed: encoded only once one has
    /// (a rerun that changes nothing encodes nothing).
    held: Vec<AccountBucket>,
    writer: Option<PartWriter>,
}

impl Replacing {
    /// Places `fresh` (accounts after any pushed before) and the old
    /// part's other accounts before `upto` (every one left, when `None`),
    /// on the blocking pool.
    async fn push(mut self, fresh: Vec<AccountBucket>, upto: Option<i64>) -> Result<Self> {
        tokio::task::spawn_blocking(move || {
            self.place(fresh, upto)?;
            Ok(self)
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?
    }

    fn place(&mut self, mut fresh: Vec<AccountBucket>, upto: Option<i64>) -> Result<()> {
        /// Where each account's rows come from, in account order.
        enum Slot {
            Fresh(AccountBucket),
            /// Carried over unchanged (the refresh did not compute it).
            Kept(i64),
            /// Fresh, unless its old rows (ids too) are the same.
            Compare(AccountBucket),
        }
        fresh.sort_by_key(|b| b.account);
        let olds = &self.old.values.accounts;
        let values_of = |i: usize| &self.old.values.values[olds[i].1.clone()];
        let mut slots = Vec::with_capacity(fresh.len());
        let mut need_rows = Vec::new();
        let mut next = self.next_old;
        let carry_before = |slots: &mut Vec<Slot>, need_rows: &mut Vec<i64>, next: &mut usize, bound: Option<i64>| {
            while *next < olds.len() && bound.is_none_or(|b| olds[*next].0 < b) {
                let account = olds[*next].0;
                *next += 1;
                if !self.gone.contains(&account) {
                    need_rows.push(account);
                    slots.push(Slot::Kept(account));
                }
            }
        };
        for mut new in fresh {
            carry_before(&mut slots, &mut need_rows, &mut next, Some(new.account));
            let was = (next < olds.len() && olds[next].0 == new.account).then(|| {
                next += 1;
                next - 1
            });
            match was {
                Some(i) if !self.gone.contains(&new.account) && self.only_count && new.has_values(values_of(i)) => {
                    need_rows.push(new.account);
                    slots.push(Slot::Compare(new));
                }
                was => {
                    self.changed |= was.is_some() || !new.rows.is_empty();
                    new.refreshed_at = self.refreshed_at;
                    if !new.rows.is_empty() {
                        slots.push(Slot::Fresh(new));
                    }
                }
            }
        }
        carry_before(&mut slots, &mut need_rows, &mut next, upto);
        self.next_old = next;
        // The old rows, ids too, of just the accounts that need them.
        let mut with_ids: HashMap<i64, AccountBucket> = HashMap::new();
        if let (false, Some(bytes)) = (need_rows.is_empty(), &self.old.bytes) {
            match decode(&self.key, bytes.clone(), true, Some(&need_rows)) {
                Ok(buckets) => with_ids.extend(buckets.into_iter().map(|b| (b.account, b))),
                Err(e @ Error::BadRollup { .. }) => {
                    tracing::warn!(error = %e, "Replacing an unreadable rollup part.");
                    self.changed = true;
                    self.old.bytes = None;
                }
                Err(e) => return Err(e),
            }
        }
        let mut merged: Vec<AccountBucket> = Vec::with_capacity(slots.len());
        for slot in slots {
            match slot {
                Slot::Fresh(new) => merged.push(new),
                Slot::Kept(account) => merged.extend(with_ids.remove(&account)),
                Slot::Compare(mut new) => match with_ids.remove(&new.account) {
                    Some(o) if o.same_rows(&new) => merged.push(o),
                    _ => {
                        self.changed = true;
                        new.refreshed_at = self.refreshed_at;
                        merged.push(new);
                    }
                },
            }
        }
        if !self.changed {
            self.held.extend(merged);
            return Ok(());
        }
        let writer = match &mut self.writer {
            Some(writer) => writer,
            None => self.writer.insert(PartWriter::new(&self.key)?),
        };
        if !self.held.is_empty() {
            writer.push(std::mem::take(&mut self.held))?;
        }
        writer.push(merged)
    }

    /// The new part's bytes, unless its rows did not change.
    fn finish(self) -> Result<Option<Bytes>> {
        if !self.changed {
            return Ok(None);
        }
        let mut writer = match self.writer {
            Some(writer) => writer,
            None => PartWriter::new(&self.key)?,
        };
        if !self.held.is_empty() {
            writer.push(self.held)?;
        }
        writer.finish().map(Some)
    }
}

/// Recomputes, for every account, the buckets of every interval that hold a
/// local date overlapping one of the scope's UTC days.
///
/// A coarse bucket is never built without one of its finer parts: when a
/// part it reads back is unreadable, or gone (deleted, or lost by the store)
/// although a published day could have given it rows, the refresh starts
/// again with the UTC days around that part added, so the part is rebuilt
/// from the base grain first. When it holds an account's buckets built in the
/// zone the account had before, or counting a channel under the platform it
/// had before, that account alone is recomputed over every published day,
/// once: any of its buckets may be so, and rebuilding a year at a time would
/// start again for each year (a year's first date needs the previous
/// year's last UTC day, whose December bucket needs that year's). Each
/// restart adds days, so this ends; what it reports is the last pass's.
pub async fn refresh(warehouse: &Warehouse, scope: RefreshScope<'_>) -> Result<RefreshReport> {
    // Shared with the blocking pool's chunks of CPU work.
    let accounts: Arc<[Account]> = scope
        .accounts
        .into_iter()
        .map(|spec| Account {
            platforms: cells::Platforms::of(&spec.channels),
            spec,
        })
        .collect();
    let mut days = Recomputed {
        all: scope.utc_days.clone(),
        by_account: BTreeMap::new(),
        former_zones: BTreeMap::new(),
    };
    loop {
        let attempt = RefreshOf {
            shard: scope.shard,
            days: &days,
            own: scope.own,
            refreshed_at: scope.refreshed_at,
            batch_weight: scope.batch_weight,
        };
        match refresh_days(warehouse, attempt, &accounts).await {
            Err(Error::LostPart {
                key,
                around,
                accounts: None,
                unusable,
            }) if !around.is_subset(&days.all) => {
                tracing::warn!(
                    part = %key,
                    unusable = unusable.map(|e| e.to_string()),
                    first_day = %around.first().expect("not empty"),
                    last_day = %around.last().expect("not empty"),
                    "A rollup part is gone or cannot be used; rebuilding it from the base grain of the days around it."
                );
                days.all.extend(around);
            }
            Err(Error::LostPart {
                key,
                around,
                accounts: Some(ids),
                unusable,
            }) if ids.keys().any(|a| !days.covers(*a, &around)) => {
                tracing::warn!(
                    part = %key,
                    unusable = unusable.map(|e| e.to_string()),
                    accounts = ?ids.keys().collect::<Vec<_>>(),
                    first_day = %around.first().expect("not empty"),
                    last_day = %around.last().expect("not empty"),
                    "Rollups of accounts whose zone, its rules or channel platforms changed cannot be used; rebuilding those accounts' rollups from the base grain of every published day."
                );
                for (a, former_zone) in ids {
                    days.by_account.entry(a).or_default().extend(&around);
                    if let Some(zone) = former_zone {
                        days.former_zones.insert(a, zone);
                    }
                }
            }
            other => return other,
        }
    }
}

/// The UTC days a pass of [`refresh`] recomputes: for every account, and
/// for some accounts alone.
struct Recomputed {
    all: BTreeSet<NaiveDate>,
    by_account: BTreeMap<i64, BTreeSet<NaiveDate>>,
    /// Accounts rebuilt after a change of zone, with the zone they left:
    /// their rows of buckets that zone gave them and theirs no longer
    /// does are removed (no rebuild computes those buckets for them).
    former_zones: BTreeMap<i64, Tz>,
}

impl Recomputed {
    fn of(&self, account: i64) -> impl Iterator<Item = &NaiveDate> {
        self.all
            .iter()
            .chain(self.by_account.get(&account).into_iter().flatten())
    }

    /// Whether every day of `days` is recomputed for `account`.
    fn covers(&self, account: i64, days: &BTreeSet<NaiveDate>) -> bool {
        let own = self.by_account.get(&account);
        days.iter()
            .all(|d| self.all.contains(d) || own.is_some_and(|o| o.contains(d)))
    }
}

/// [`RefreshScope`] but its accounts, for one pass of [`refresh`].
struct RefreshOf<'a> {
    shard: ShardSpec,
    days: &'a Recomputed,
    own: &'a BTreeMap<NaiveDate, DayManifest>,
    refreshed_at: UnixMicros,
    batch_weight: u64,
}

/// One pass of [`refresh`], over `scope.days`.
async fn refresh_days(warehouse: &Warehouse, scope: RefreshOf<'_>, accounts: &Arc<[Account]>) -> Result<RefreshReport> {
    let mut report = RefreshReport::default();
    let index = warehouse::index::load(warehouse).await?;
    let mut published = index.days;
    published.extend(scope.own.keys().copied());
    let mut counts = index.shard_counts;
    counts.insert(scope.shard.count);
    let refreshed_at = match index.rollups_refreshed.get(&scope.shard) {
        Some(last) => scope.refreshed_at.max(last + 1),
        None => scope.refreshed_at,
    };
    let accounts = accounts.clone();
    // Local dates each account needs recomputed.
    let dates: Arc<[BTreeSet<NaiveDate>]> = accounts
        .iter()
        .map(|a| local_dates(&a.spec.tz, scope.days.of(a.spec.id)))
        .collect();
    let parts = Parts {
        warehouse,
        shard: scope.shard,
        counts,
        refreshed_at,
        gone: former_zone_buckets(&accounts, &dates, scope.days, &published),
    };
    // Parts replaced so far: any that must lose an account has lost it.
    let mut replaced: BTreeSet<(Interval, NaiveDate)> = BTreeSet::new();
    let count = |report: &mut RefreshReport, interval: Interval, written: bool| {
        if written {
            *report.files.entry(interval.as_str()).or_default() += 1;
        } else {
            report.unchanged += 1;
        }
    };

    // Parts of open periods the refresh touched: none is written, and one
    // an earlier build wrote (every night, open or not) is deleted, as it
    // would not be kept up to date (one request, however many accounts).
    let mut open_parts: Vec<String> = Vec::new();
    let levels: Vec<(Interval, Interval, BTreeMap<NaiveDate, Vec<usize>>)> = [
        (Interval::Weekly, Interval::Daily),
        (Interval::Monthly, Interval::Daily),
        (Interval::Quarterly, Interval::Monthly),
        (Interval::Yearly, Interval::Quarterly),
    ]
    .into_iter()
    .map(|(interval, from)| {
        let mut periods: BTreeMap<NaiveDate, Vec<usize>> = BTreeMap::new();
        for (account, dates) in dates.iter().enumerate() {
            let mine: BTreeSet<NaiveDate> = dates
                .iter()
                .filter_map(|d| interval.period_of(*d).map(|p| p.0))
                .collect();
            for p in mine {
                periods.entry(p).or_default().push(account);
            }
        }
        if cells::written_when_closed(interval) {
            // An open period is not written; one this pass closes is, for
            // every account (the night that closes a quarter touches only
            // the accounts west of UTC there).
            periods.retain(|p, _| {
                let closed = cells::closing_day(&published, interval, *p).is_some();
                if !closed {
                    open_parts.push(parts.key(interval, *p).relative());
                }
                closed
            });
            for day in &scope.days.all {
                for p in cells::closed_on(&published, interval, *day) {
                    periods.insert(p, (0..accounts.len()).collect());
                }
            }
        }
        (interval, from, periods)
    })
    .collect();
    // Each coarse bucket's old part is fetched and its values decoded while
    // the bucket before it is computed and written (the first's, while the
    // daily buckets are; a batched bucket's successor's, once it is
    // written): how a bucket is computed (in batches or not) depends on
    // them, and neither an object store's round trip nor the decode (a few
    // milliseconds a 2,000-account part) is waited for in turn.
    let mut old_parts = levels
        .iter()
        .flat_map(|(interval, _, periods)| periods.keys().map(|p| parts.key(*interval, *p)));
    let fetch_ahead = |key: Option<RollupKey>| {
        key.map(|key| {
            let warehouse = warehouse.clone();
            tokio::spawn(async move { old_part(key, warehouse.get(&key.relative()).await?).await })
        })
    };
    let mut next_old = fetch_ahead(old_parts.next());
    // On an object store, a request that need not be waited for in turn.
    let delete_open = {
        let warehouse = warehouse.clone();
        tokio::spawn(async move { warehouse.delete_each(&open_parts).await })
    };

    let started = std::time::Instant::now();
    // Daily buckets from the base grain, a window of dates at a time.
    let all: BTreeSet<NaiveDate> = dates.iter().flatten().copied().collect();
    let mut just_computed = JustComputed::new(all.len());
    let mut pending: Vec<NaiveDate> = all.into_iter().collect();
    let window_dates =
        (ACCOUNT_DATES_PER_WINDOW / accounts.len().max(1) as u64).clamp(MIN_DATES_PER_WINDOW, DATES_PER_WINDOW);
    while let Some(&w0) = pending.first() {
        let w1 = *pending
            .iter()
            .take_while(|d| **d < w0 + Days::new(window_dates))
            .last()
            .expect("w0 itself");
        pending.retain(|d| *d > w1);
        let in_window: Vec<usize> = (0..accounts.len())
            .filter(|i| dates[*i].range(w0..=w1).next().is_some())
            .collect();
        let keep = just_computed.keeps(Interval::Daily);
        let by_date = daily_window(warehouse, scope.own, &accounts, &dates, &in_window, (w0, w1)).await?;
        // One date at a time: a part's encode already keeps two threads
        // busy, and several at once only wait on each other's allocations
        // (about a tenth of the daily step at 2,000 accounts). Only the
        // next date's old part is fetched meanwhile, so that an object
        // store's round trip is not waited for in turn.
        let mut by_date = by_date.into_iter().peekable();
        let mut fetched_ahead: Option<Option<Bytes>> = None;
        while let Some((date, cells)) = by_date.next() {
            let fresh = daily_buckets(&accounts, date, cells, keep).await?;
            let buckets = just_computed.keep(Interval::Daily, date, fresh);
            let bytes = match fetched_ahead.take() {
                Some(bytes) => bytes,
                None => parts.fetch(Interval::Daily, date).await?,
            };
            let old = parts.decode_old(Interval::Daily, date, bytes).await?;
            replaced.insert((Interval::Daily, date));
            let next = by_date.peek().map(|(d, _)| *d);
            let (written, ahead) = futures::try_join!(parts.replace(Interval::Daily, date, buckets, old), async {
                match next {
                    Some(d) => parts.fetch(Interval::Daily, d).await.map(Some),
                    None => Ok(None),
                }
            })?;
            fetched_ahead = ahead;
            count(&mut report, Interval::Daily, written);
        }
    }
    report.daily_ms = started.elapsed().as_millis() as u64;

    let started = std::time::Instant::now();
    // The coarser part last computed, while it is written: its replace (the
    // compare with the old part, the encode and the put) overlaps computing
    // the next one.
    let mut writing: Option<Writing<'_>> = None;
    // Coarser buckets from finer ones; only parts that can hold data (a
    // published UTC day overlaps them) are read. Weeks come from days,
    // months from the weeks inside them and the days of the rest, quarters
    // from months, years from quarters, in that order.
    for (interval, from, periods) in &levels {
        let (interval, from) = (*interval, *from);
        let feeds = matches!(interval, Interval::Weekly | Interval::Monthly | Interval::Quarterly);
        just_computed.start(interval, periods.len(), feeds);
        let level = std::time::Instant::now();
        for (&period, members) in periods {
            let (first, last) = interval.period_of(period).expect("not hourly");
            let touched: BTreeSet<NaiveDate> = members
                .iter()
                .flat_map(|i| dates[*i].range(first..=last).copied())
                .collect();
            let (children, to_read) = coarse_children(
                &mut just_computed,
                &published,
                &accounts,
                members,
                &touched,
                interval,
                from,
                period,
            );
            // A part still being written is never read back: wait for it
            // first when this bucket reads it from the store. (A month does
            // when a week it takes whole from this refresh's cells lacks one
            // of its accounts: that week may be the part still being written.)
            if writing.as_ref().is_some_and(|w| {
                to_read
                    .iter()
                    .any(|(child, p, _)| (*child, *p) == (w.interval, w.period))
            }) {
                let done = writing.take().expect("checked").finish().await?;
                count(&mut report, done.0, done.1);
            }
            let fetched_old = next_old.take().expect("one fetch a bucket, in order");
            let old = fetched_old.await.map_err(|e| Error::Task(e.to_string()))??;
            // A week holds a week of ids whatever the history, and its cells
            // feed the month as they are: never batched.
            let budget = match interval {
                Interval::Weekly => u64::MAX,
                _ => scope.batch_weight,
            };
            let mut weights = Weights::new();
            add_weights(&mut weights, &old.values);
            // A quarter's or a year's first part (the night that closes it)
            // has no old part to weigh: the finer parts it is built from
            // that are in the store are weighed instead (a bound on what
            // they union to), and read once for it.
            let mut fetched_children = None;
            if old.bytes.is_none() && cells::written_when_closed(interval) && budget != u64::MAX {
                let fetched = fetch_parts(warehouse, &parts.counts, &to_read).await?;
                for (key, bytes) in &fetched {
                    // An unreadable one is found again, and rebuilt, below.
                    if let Some(Ok(values)) = bytes.clone().map(|b| decode_values(key, b)) {
                        add_weights(&mut weights, &values);
                    }
                }
                fetched_children = Some(fetched);
            }
            let batches = weighed_batches(&accounts, members, &weights, budget);
            replaced.insert((interval, period));
            let big = if batches.len() > 1 {
                // A bucket too big to hold at once is computed and written
                // a batch of accounts at a time, the part written before the
                // next bucket is computed. Its cells are still kept for a
                // coarser bucket when the level keeps them: a quarter's
                // cells held 22 MB on a year's last night at 2,000 accounts,
                // and reading them back instead took longer (80 ms there,
                // 300 ms on a 20,000-account night) than that saved.
                // The next bucket's old part is fetched once this one is
                // written, not held beside it.
                if let Some((written_interval, written)) = Writing::finish_if_any(writing.take()).await? {
                    count(&mut report, written_interval, written);
                }
                let fetched = match fetched_children {
                    Some(fetched) => fetched,
                    None => fetch_parts(warehouse, &parts.counts, &to_read).await?,
                };
                let mut children = children;
                let mut replacing = parts.replacing(interval, period, old);
                for (n, batch) in batches.iter().enumerate() {
                    let ids: BTreeSet<i64> = batch.iter().map(|i| accounts[*i].spec.id).collect();
                    let batch_children: Children = ids.iter().filter_map(|a| children.remove_entry(a)).collect();
                    let batch_reads: Vec<PartToRead> = to_read
                        .iter()
                        .map(|(child, p, of)| (*child, *p, of.iter().copied().filter(|a| ids.contains(a)).collect()))
                        .filter(|(_, _, of): &PartToRead| !of.is_empty())
                        .collect();
                    let fresh = coarse(
                        &parts,
                        &accounts,
                        batch,
                        interval,
                        period,
                        batch_children,
                        &batch_reads,
                        just_computed.keeps(interval),
                        &published,
                        scope.days,
                        Some(&fetched),
                    )
                    .await?;
                    let upto = batches.get(n + 1).map(|next| accounts[next[0]].spec.id);
                    let buckets = just_computed.keep(interval, period, fresh);
                    replacing = replacing.push(buckets, upto).await?;
                }
                count(&mut report, interval, parts.put_replaced(replacing).await?);
                report.batched += 1;
                next_old = fetch_ahead(old_parts.next());
                true
            } else {
                next_old = fetch_ahead(old_parts.next());
                let (fresh, done) = futures::try_join!(
                    coarse(
                        &parts,
                        &accounts,
                        members,
                        interval,
                        period,
                        children,
                        &to_read,
                        just_computed.keeps(interval),
                        &published,
                        scope.days,
                        fetched_children.as_ref(),
                    ),
                    Writing::finish_if_any(writing.take()),
                )?;
                if let Some((written_interval, written)) = done {
                    count(&mut report, written_interval, written);
                }
                let buckets = just_computed.keep(interval, period, fresh);
                let big = buckets.iter().map(|b| b.ids.len()).sum::<usize>() > OVERLAP_IDS
                    || buckets.iter().map(|b| b.rows.len()).sum::<usize>() > OVERLAP_ROWS;
                let replace = Writing {
                    interval,
                    period,
                    future: Box::pin(parts.replace(interval, period, buckets, old)),
                };
                if big {
                    let done = replace.finish().await?;
                    count(&mut report, done.0, done.1);
                } else {
                    writing = Some(replace);
                }
                big
            };
            let computed_ms = level.elapsed().as_millis() as u64;
            tracing::debug!(
                interval = interval.as_str(),
                %period,
                accounts = members.len(),
                batches = batches.len(),
                computed_ms,
                written_before_the_next = big,
                "Rollup bucket computed."
            );
        }
        // Weeks are built from days, months from days and weeks, quarters
        // from months and years from quarters: after months, days and
        // weeks are no longer needed.
        if interval == Interval::Monthly {
            just_computed.release(Interval::Weekly);
        }
        if interval != Interval::Weekly {
            just_computed.release(from);
        }
    }
    if let Some((interval, written)) = Writing::finish_if_any(writing).await? {
        count(&mut report, interval, written);
    }
    for ((interval, period), gone) in &parts.gone {
        if replaced.contains(&(*interval, *period)) {
            continue;
        }
        let old = parts.current(*interval, *period).await?;
        if old.values.iter().any(|(a, _)| gone.contains(&a)) {
            let written = parts.replace(*interval, *period, Vec::new(), old).await?;
            count(&mut report, *interval, written);
        }
    }
    delete_open.await.map_err(|e| Error::Task(e.to_string()))??;
    report.coarse_ms = started.elapsed().as_millis() as u64;
    report.refreshed_at = refreshed_at;
    Ok(report)
}

/// The local dates of `tz` that `utc_days` overlap.
fn local_dates<'a>(tz: &Tz, utc_days: impl Iterator<Item = &'a NaiveDate>) -> BTreeSet<NaiveDate> {
    utc_days
        .flat_map(|d| {
            let (first, last) = cells::local_dates_of_utc_day(tz, *d);
            first.iter_days().take_while(move |x| *x <= last)
        })
        .collect()
}

/// The buckets of accounts rebuilt after a change of zone that their former
/// zone gave them on the published days and this pass did not compute for
/// them (their zone now gives them no date there): each with the accounts
/// whose rows must go.
fn former_zone_buckets(
    accounts: &[Account],
    dates: &[BTreeSet<NaiveDate>],
    days: &Recomputed,
    published: &BTreeSet<NaiveDate>,
) -> BTreeMap<(Interval, NaiveDate), Vec<i64>> {
    let mut out: BTreeMap<(Interval, NaiveDate), Vec<i64>> = BTreeMap::new();
    for (account, computed) in accounts.iter().zip(dates) {
        let Some(former) = days.former_zones.get(&account.spec.id) else {
            continue;
        };
        let had = local_dates(former, published.iter());
        for interval in [
            Interval::Daily,
            Interval::Weekly,
            Interval::Monthly,
            Interval::Quarterly,
            Interval::Yearly,
        ] {
            let period = |d: &NaiveDate| interval.period_of(*d).expect("not hourly").0;
            let now: BTreeSet<NaiveDate> = computed.iter().map(period).collect();
            let had: BTreeSet<NaiveDate> = had
                .iter()
                .map(period)
                .filter(|p| {
                    !cells::written_when_closed(interval) || cells::closing_day(published, interval, *p).is_some()
                })
                .collect();
            for p in had.difference(&now) {
                out.entry((interval, *p)).or_default().push(account.spec.id);
            }
        }
    }
    out
}

/// The daily cells of accounts `which` (indices into `accounts`) for the
/// dates of `dates` in `w0..=w1`, by date.
async fn daily_window(
    warehouse: &Warehouse,
    own: &BTreeMap<NaiveDate, DayManifest>,
    accounts: &Arc<[Account]>,
    dates: &Arc<[BTreeSet<NaiveDate>]>,
    which: &[usize],
    (w0, w1): (NaiveDate, NaiveDate),
) -> Result<BTreeMap<NaiveDate, Vec<(usize, Cells)>>> {
    let mut builders: Vec<DailyBuilder> = which
        .iter()
        .map(|i| DailyBuilder::new(accounts[*i].spec.tz, w0, w1))
        .collect();
    let slot: HashMap<i64, usize> = which
        .iter()
        .enumerate()
        .map(|(s, i)| (accounts[*i].spec.id, s))
        .collect();

    // Contacts' day grain decides local dates exactly when no UTC day holds
    // two date edges of any of the accounts' zones (true for every zone in
    // use today); the hour grain always does.
    let days_decide = builders.iter().all(DailyBuilder::cut_each_utc_day_at_most_once);
    // A local date overlaps at most the UTC days either side of it. The
    // days ahead are opened while a day's files are read (their manifests,
    // a listing and a get on an object store, then each file's last bytes),
    // and a day's files are opened at once; the rows are read one file
    // after another. An open file holds its last bytes, no more than
    // `warehouse::read`'s hint, whatever its size.
    let days = (w0 - Days::new(1))
        .iter_days()
        .take_while(|day| *day <= w1 + Days::new(1));
    let mut files_by_day = futures::stream::iter(days)
        .map(|day| async move {
            let manifests = match own.get(&day) {
                Some(m) => vec![m.clone()],
                None => published_day(warehouse, day).await?.unwrap_or_default(),
            };
            let mut files: Vec<(Table, String)> = Vec::new();
            for manifest in &manifests {
                // The coarser tables where the day has them (days published
                // before they existed do not).
                let has = |table| manifest.files_of(table).next().is_some();
                let contacts = if days_decide && has(Table::ContactDays) {
                    Table::ContactDays
                } else {
                    Table::ContactActivity
                };
                let resolved = if has(Table::ResolvedSlots) {
                    Table::ResolvedSlots
                } else {
                    Table::ResolvedConversations
                };
                for table in [contacts, Table::AgentActivity, resolved, Table::ProactiveMessages] {
                    files.extend(manifest.files_of(table).map(|file| (table, file.key.clone())));
                }
            }
            let streams =
                futures::future::try_join_all(files.iter().map(|(_, key)| stream_batches(warehouse, key))).await?;
            Ok::<_, Error>(files.into_iter().zip(streams).collect::<Vec<_>>())
        })
        .buffered(IO_CONCURRENCY);
    while let Some(files) = files_by_day.try_next().await? {
        for ((table, key), stream) in files {
            let Some(mut batches) = stream else {
                return Err(Error::BadRollup {
                    key,
                    reason: "a published base file is missing".into(),
                });
            };
            while let Some(batch) = batches.next().await {
                let batch = batch.map_err(|source| warehouse::Error::ReadParquet {
                    key: key.clone(),
                    source,
                })?;
                feed(&batch, table, &slot, &mut builders).map_err(|reason| Error::BadRollup {
                    key: key.clone(),
                    reason,
                })?;
            }
        }
    }

    let dates = dates.clone();
    let work: Vec<(DailyBuilder, usize)> = builders.into_iter().zip(which.iter().copied()).collect();
    let by_account = on_cores(work, move |(builder, i)| {
        builder
            .finish()
            .into_iter()
            .filter(|(date, _)| dates[i].contains(date))
            .map(|(date, cells)| (date, (i, cells)))
            .collect::<Vec<_>>()
    })
    .await?;
    let mut out: BTreeMap<NaiveDate, Vec<(usize, Cells)>> = BTreeMap::new();
    for (date, cells) in by_account.into_iter().flatten() {
        out.entry(date).or_default().push(cells);
    }
    Ok(out)
}

/// The daily buckets of `date` from its accounts' cells (indices into
/// `accounts`), built on every core. A date's rows are built just before
/// its part is written, not with the window's other dates: rows take about
/// five times the memory of the cells they come from, and a window holds
/// every account of the shard.
async fn daily_buckets(
    accounts: &Arc<[Account]>,
    date: NaiveDate,
    cells: Vec<(usize, Cells)>,
    keep: bool,
) -> Result<Vec<Fresh>> {
    let accounts = accounts.clone();
    on_cores(cells, move |(i, cells)| {
        fresh_bucket(&accounts[i], Interval::Daily, date, cells, keep)
    })
    .await
}

/// The bucket of `cells`, and the cells back when `keep` (a coarser bucket
/// is built from them); otherwise they are dropped here, on the thread that
/// built them.
fn fresh_bucket(account: &Account, interval: Interval, period: NaiveDate, cells: Cells, keep: bool) -> Fresh {
    let Account { spec, platforms } = account;
    let (start, end) = period_instants(&spec.tz, interval, period).expect("not hourly");
    let (rows, ids) = cells::rows(&cells, platforms, &spec.channels, start, end);
    let kept = keep.then_some(cells);
    let bucket = AccountBucket {
        account: spec.id,
        time_zone: Cow::Borrowed(spec.tz.name()),
        start,
        end,
        refreshed_at: 0,
        rows,
        ids,
    };
    (bucket, kept)
}

/// `f` over `items` on the blocking pool, a share per core (they are CPU
/// work: merging and listing ids), results in order. The shares are dealt
/// round-robin, not cut in halves: accounts come in id order, and in a
/// fleet the large ones cluster (the seed's first half of 2,000 accounts
/// holds five sixths of the messages), which left one core with most of
/// the work.
async fn on_cores<T, R>(items: Vec<T>, f: impl Fn(T) -> R + Send + Sync + 'static) -> Result<Vec<R>>
where
    T: Send + 'static,
    R: Send + 'static,
{
    let cores = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(items.len().max(1));
    let n = items.len();
    let mut shares: Vec<Vec<T>> = (0..cores).map(|_| Vec::with_capacity(n.div_ceil(cores))).collect();
    for (i, item) in items.into_iter().enumerate() {
        shares[i % cores].push(item);
    }
    let f = Arc::new(f);
    let tasks: Vec<_> = shares
        .into_iter()
        .map(|mine| {
            let f = f.clone();
            tokio::task::spawn_blocking(move || mine.into_iter().map(|x| f(x)).collect::<Vec<R>>())
        })
        .collect();
    let mut done: Vec<std::vec::IntoIter<R>> = Vec::with_capacity(cores);
    for share in futures::future::join_all(tasks).await {
        done.push(share.map_err(|e| Error::Task(e.to_string()))?.into_iter());
    }
    // Item i is the (i / cores)-th result of share i % cores.
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.extend(done[i % cores].next());
    }
    Ok(out)
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
        Table::ContactActivity | Table::ContactDays | Table::AgentActivity => {
            let agents = table == Table::AgentActivity;
            let entity = col(if agents { "agent_id" } else { "contact_id" })?;
            let (first, last_at) = match table {
                Table::ContactDays => (col("first_slot")?, col("last_slot")?),
                _ => (col("first_at")?, col("last_at")?),
            };
            for i in 0..batch.num_rows() {
                if let Some(s) = slot_of(accounts[i]) {
                    let b = &mut builders[s];
                    if agents {
                        b.agent(channels[i], entity[i], first[i], last_at[i]);
                    } else {
                        b.contact(channels[i], entity[i], first[i], last_at[i]);
                    }
                }
            }
        }
        Table::ResolvedConversations => {
            let at = col("resolved_at")?;
            for i in 0..batch.num_rows() {
                if let Some(s) = slot_of(accounts[i]) {
                    builders[s].resolved(channels[i], at[i], 1);
                }
            }
        }
        Table::ResolvedSlots => {
            let (slot_start, conversations) = (col("slot_start")?, col("conversations")?);
            for i in 0..batch.num_rows() {
                if let Some(s) = slot_of(accounts[i]) {
                    builders[s].resolved(channels[i], slot_start[i], conversations[i].max(0) as u64);
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

/// A part being replaced, and which part it is.
struct Writing<'a> {
    interval: Interval,
    period: NaiveDate,
    future: std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool>> + Send + 'a>>,
}

impl Writing<'_> {
    /// Whether the part was written (else its rows were unchanged).
    async fn finish(self) -> Result<(Interval, bool)> {
        Ok((self.interval, self.future.await?))
    }

    async fn finish_if_any(writing: Option<Self>) -> Result<Option<(Interval, bool)>> {
        match writing {
            Some(w) => w.finish().await.map(Some),
            None => Ok(None),
        }
    }
}

/// What each account's rows of a part weigh ([`ROW_WEIGHT`]), by account.
type Weights = HashMap<i64, u64>;

/// Adds the weight of each account's rows in `values` to `weights`.
fn add_weights(weights: &mut Weights, values: &OldValues) {
    for (account, values) in values.iter() {
        let sum: u64 = values.iter().map(|v| v.max(&0).unsigned_abs()).sum();
        *weights.entry(account).or_default() += sum + ROW_WEIGHT * values.len() as u64;
    }
}

/// `members` (indices of `accounts`) in account order, cut into batches
/// whose rows weigh about `budget` each (`weights`: in the old part, or in
/// the finer parts of a new one). One batch when they weigh no more.
fn weighed_batches(accounts: &[Account], members: &[usize], weights: &Weights, budget: u64) -> Vec<Vec<usize>> {
    let weight = |i: &usize| weights.get(&accounts[*i].spec.id).copied().unwrap_or(0);
    if members.iter().map(weight).sum::<u64>() <= budget {
        return vec![members.to_vec()];
    }
    let mut sorted = members.to_vec();
    sorted.sort_by_key(|i| accounts[*i].spec.id);
    let mut batches = Vec::new();
    let (mut batch, mut weighs) = (Vec::new(), 0);
    for i in sorted {
        weighs += weight(&i);
        batch.push(i);
        if weighs >= budget {
            batches.push(std::mem::take(&mut batch));
            weighs = 0;
        }
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    batches
}

/// The finer buckets' cells a coarse bucket is merged from, by account.
type Children = HashMap<i64, Vec<Cells>>;

/// A finer part to read back (its interval and period), and the accounts
/// to read from it.
type PartToRead = (Interval, NaiveDate, Vec<i64>);

/// The children of the coarse bucket `(interval, period)` of each of
/// `members` that this refresh just computed, by account, and the finer
/// parts (with the accounts) the others must be read from. `touched` holds
/// the local dates the refresh recomputed for any member.
///
/// A month is built from the weeks that lie wholly inside it and from the
/// days of the rest. A week is the union of its days: one the refresh
/// touched is taken from the cells it just computed (else from its days),
/// one it did not is read back from its part (the refresh that last wrote
/// one of its days wrote the week after it). So a night late in a month
/// reads a few weeks and days back rather than every day before it (at
/// 2,000 accounts, reading and merging 18 days took 0.48 s of a night on
/// the 20th).
#[allow(clippy::too_many_arguments)]
fn coarse_children(
    just_computed: &mut JustComputed,
    published: &BTreeSet<NaiveDate>,
    accounts: &Arc<[Account]>,
    members: &[usize],
    touched: &BTreeSet<NaiveDate>,
    interval: Interval,
    from: Interval,
    period: NaiveDate,
) -> (Children, Vec<PartToRead>) {
    let (first, last) = interval.period_of(period).expect("not hourly");
    let has_data = |(child, p): &(Interval, NaiveDate)| cells::may_hold_data(published, *child, *p);
    // A touched week is taken whole only from this refresh's own cells.
    let weeks_kept = just_computed.keeps(Interval::Weekly);
    let whole_week = |d: NaiveDate| -> Option<NaiveDate> {
        let (a, b) = Interval::Weekly.period_of(d).expect("not hourly");
        (interval == Interval::Monthly
            && a >= first
            && b <= last
            && (weeks_kept || touched.range(a..=b).next().is_none()))
        .then_some(a)
    };
    let part_periods: BTreeSet<(Interval, NaiveDate)> = first
        .iter_days()
        .take_while(|d| *d <= last)
        .filter_map(|d| match whole_week(d) {
            Some(week) => Some((Interval::Weekly, week)),
            None => from.period_of(d).map(|p| (from, p.0)),
        })
        .filter(has_data)
        .collect();
    let mut children: Children = HashMap::new();
    let mut to_read: Vec<PartToRead> = Vec::new();
    // Days feed weeks and then months, unless the month takes the week
    // whole (its cells are kept and it lies inside the month): then days
    // feed the week alone. Every other level feeds one.
    let last_use = interval != Interval::Weekly || (weeks_kept && first.month() == last.month());
    for (child, p) in part_periods {
        let mut missing = Vec::new();
        for account in members.iter().map(|i| accounts[*i].spec.id) {
            match just_computed.child(child, p, account, last_use) {
                Some(cells) => children.entry(account).or_default().push(cells),
                None => missing.push(account),
            }
        }
        if !missing.is_empty() {
            to_read.push((child, p, missing));
        }
    }
    (children, to_read)
}

/// The coarse bucket `(interval, period)` of each of `members`, from the
/// finer buckets inside it: `children` already in memory, the rest read
/// from the parts of `to_read` (as [`coarse_children`] gave them); with
/// their cells when `keep`.
#[allow(clippy::too_many_arguments)]
async fn coarse(
    parts: &Parts<'_>,
    accounts: &Arc<[Account]>,
    members: &[usize],
    interval: Interval,
    period: NaiveDate,
    mut children: Children,
    to_read: &[PartToRead],
    keep: bool,
    published: &BTreeSet<NaiveDate>,
    recomputed: &Recomputed,
    fetched: Option<&FetchedParts>,
) -> Result<Vec<Fresh>> {
    let now: HashMap<i64, &Account> = members.iter().map(|i| (accounts[*i].spec.id, &accounts[*i])).collect();
    let now = &now;
    let mut reads = futures::stream::iter(to_read.iter().map(|(child, p, ids)| async move {
        let read = match fetched {
            Some(fetched) => read_fetched_accounts(fetched, &parts.counts, *child, *p, ids),
            None => read_accounts(parts.warehouse, View::plain(&parts.counts), *child, *p, ids, true).await,
        };
        match read {
            Ok((_, false)) if could_hold_rows(accounts, published, *child, *p, ids) => {
                Err(lost_part(parts, published, *child, *p, None))
            }
            Ok((mut found, _)) => {
                let key = || parts.key(*child, *p).relative();
                let outdated = |account: &i64, bucket: &AccountBucket| {
                    now.get(account)
                        .and_then(|now| outdated(key, (*child, *p), *account, bucket, now))
                };
                let mut why = None;
                let mut ids = BTreeMap::new();
                for (a, (_, b)) in &found {
                    if let Some(e) = outdated(a, b) {
                        let former_zone = matches!(e, Error::FormerZone { .. })
                            .then(|| b.time_zone.parse::<Tz>().ok())
                            .flatten();
                        why.get_or_insert(e);
                        ids.insert(*a, former_zone);
                    }
                }
                let Some(why) = why else {
                    return Ok(found);
                };
                if ids.keys().all(|a| recomputed.covers(*a, published)) {
                    // This pass recomputed every date the published days give
                    // these accounts (in their zones, with their channels'
                    // platforms), and this part is not one of them: they
                    // have nothing here now.
                    found.retain(|a, _| !ids.contains_key(a));
                    return Ok(found);
                }
                Err(Error::LostPart {
                    key: key(),
                    around: published.clone(),
                    accounts: Some(ids),
                    unusable: Some(Box::new(why)),
                })
            }
            Err(e @ Error::BadRollup { .. }) => Err(lost_part(parts, published, *child, *p, Some(e))),
            Err(e) => Err(e),
        }
    }))
    .buffered(IO_CONCURRENCY);
    while let Some(found) = reads.try_next().await? {
        for (account, (_, bucket)) in found {
            children
                .entry(account)
                .or_default()
                .push(cells::cells_from_rows(&bucket.rows, &bucket.ids));
        }
    }
    let work: Vec<(usize, Vec<Cells>)> = members
        .iter()
        .map(|i| (*i, children.remove(&accounts[*i].spec.id).unwrap_or_default()))
        .collect();
    let accounts = accounts.clone();
    on_cores(work, move |(i, children)| {
        fresh_bucket(&accounts[i], interval, period, cells::merge(children), keep)
    })
    .await
}

/// Why an account's bucket read back from part `key` (of `(interval,
/// period)`) cannot be built on: it is in a zone the account has left, or
/// in its zone under rules this build's time zone database no longer has
/// (the bucket's instants differ: a coarser bucket would mix finer ones cut
/// by two sets of rules), or counts a channel under a platform the channel
/// has left (its platform rows would then be wrong).
fn outdated(
    key: impl Fn() -> String,
    (interval, period): (Interval, NaiveDate),
    account: i64,
    bucket: &AccountBucket,
    now: &Account,
) -> Option<Error> {
    let tz = &now.spec.tz;
    let zone = tz.name();
    if bucket.time_zone != zone {
        return Some(Error::FormerZone {
            key: key(),
            account,
            found: bucket.time_zone.to_string(),
            zone: zone.to_string(),
        });
    }
    let instants = period_instants(tz, interval, period).expect("not hourly");
    if (bucket.start, bucket.end) != instants {
        let span =
            |(start, end): (UnixMicros, UnixMicros)| format!("{}, {}", rfc3339_in(tz, start), rfc3339_in(tz, end));
        return Some(Error::FormerRules {
            key: key(),
            account,
            zone: zone.to_string(),
            found: span((bucket.start, bucket.end)),
            now: span(instants),
        });
    }
    let (channel, found) = bucket.moved_channel(|channel| now.platforms.name_of(channel))?;
    Some(Error::FormerPlatform {
        key: key(),
        account,
        channel,
        found: found.map_or_else(|| "(not recorded: an earlier build wrote it)".into(), |p| p.to_string()),
        platform: now.platforms.name_of(channel).to_string(),
    })
}

/// Published UTC days that the local dates of `(child, period)` overlap.
fn days_around(published: &BTreeSet<NaiveDate>, child: Interval, period: NaiveDate) -> BTreeSet<NaiveDate> {
    let (first, last) = child.period_of(period).expect("not hourly");
    published
        .range(first - Days::new(1)..=last + Days::new(1))
        .copied()
        .collect()
}

/// Whether a part of `(child, period)` could hold rows of `ids`: the
/// bucket has instants, in one of their zones, inside a published UTC day.
/// A refresh writes every part it computes, even an empty one, so such a
/// part that is not there was lost; any other was never written (a date
/// the zone skipped, as Samoa's 2011-12-30, has no instant and no part).
fn could_hold_rows(
    accounts: &[Account],
    published: &BTreeSet<NaiveDate>,
    child: Interval,
    period: NaiveDate,
    ids: &[i64],
) -> bool {
    let around = days_around(published, child, period);
    let ids: BTreeSet<i64> = ids.iter().copied().collect();
    accounts.iter().filter(|a| ids.contains(&a.spec.id)).any(|a| {
        let (start, end) = period_instants(&a.spec.tz, child, period).expect("not hourly");
        start < end
            && around.iter().any(|day| {
                let day_start = utc_midnight(*day);
                start < day_start + MICROS_PER_DAY && day_start < end
            })
    })
}

/// The part of `(child, period)` is lost or cannot be used: [`refresh`]
/// rebuilds it from the days around it.
fn lost_part(
    parts: &Parts<'_>,
    published: &BTreeSet<NaiveDate>,
    child: Interval,
    period: NaiveDate,
    unusable: Option<Error>,
) -> Error {
    Error::LostPart {
        key: parts.key(child, period).relative(),
        around: days_around(published, child, period),
        accounts: None,
        unusable: unusable.map(Box::new),
    }
}

/// Days that unfinished refreshes (dirty markers) name, by marker key.
pub async fn dirty_markers(warehouse: &Warehouse) -> Result<BTreeMap<String, (DirtyMarkerKey, Vec<NaiveDate>)>> {
    let mut out = BTreeMap::new();
    let markers: Vec<(DirtyMarkerKey, String)> = warehouse
        .list(DirtyMarkerKey::FOLDER)
        .await?
        .into_iter()
        .filter_map(|key| Some((DirtyMarkerKey::parse(&key).ok()?, key)))
        .collect();
    let bodies = warehouse
        .get_each(&markers.iter().map(|(_, key)| key).collect::<Vec<_>>())
        .await?;
    for ((parsed, key), bytes) in markers.into_iter().zip(bodies) {
        // Deleted since listing: its refresh finished in between.
        let Some(bytes) = bytes else {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::warehouse::testing::TempWarehouse;

    /// The whole shard's part of `interval` for the period holding 2026-03-01.
    fn key_of(interval: Interval) -> RollupKey {
        RollupKey {
            interval,
            period: NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
            shard: ShardSpec::WHOLE,
        }
    }

    fn bucket(account: i64, value: u64, ids: Vec<i64>) -> AccountBucket {
        AccountBucket {
            account,
            time_zone: Cow::Borrowed("UTC"),
            start: 0,
            end: 86_400_000_000,
            refreshed_at: 1,
            rows: vec![RollupRow {
                metric: crate::metric::Metric::UniqueMonthlyContacts,
                group: RowGroup::Channel(7),
                value,
                ids: Some(IdSpan::append(&mut Vec::new(), &ids)),
                platform: Some("sms".into()),
            }],
            ids,
        }
    }

    /// Accounts of many row groups: ids enough that groups close on
    /// [`ROW_GROUP_IDS`], and rows enough that some close on
    /// [`ROW_GROUP_ROWS`].
    fn many_accounts() -> Vec<AccountBucket> {
        (1..=400)
            .map(|a| {
                let mut b = bucket(a, 1, (0..(a * 137) % 2000).collect());
                let row = b.rows[0].clone();
                b.rows.extend(std::iter::repeat_n(row, (a as usize * 13) % 60));
                b
            })
            .collect()
    }

    /// Pushed in batches of any size, a part is the bytes of the whole
    /// pushed at once: its row groups are cut in the same places.
    #[test]
    fn a_part_written_in_batches_is_the_part_written_at_once() {
        let key = key_of(Interval::Monthly);
        let all = many_accounts();
        let whole = encode(&key, &all).unwrap();
        let groups = ParquetRecordBatchReaderBuilder::try_new(whole.clone())
            .unwrap()
            .metadata()
            .num_row_groups();
        assert!(groups > 3, "{groups} row groups");
        for sizes in [vec![1], vec![7, 1, 50], vec![399], vec![150, 250]] {
            let mut writer = PartWriter::new(&key).unwrap();
            let mut rest = all.clone();
            for size in sizes.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let tail = rest.split_off((*size).min(rest.len()));
                writer.push(std::mem::replace(&mut rest, tail)).unwrap();
            }
            assert_eq!(writer.finish().unwrap(), whole, "batches of {sizes:?}");
        }
    }

    /// Batches follow account order, weigh about the budget each (an account
    /// never split), and are one batch when the whole weighs no more.
    #[test]
    fn batches_are_cut_by_the_old_parts_values() {
        let account = |id| Account {
            spec: AccountSpec {
                id,
                tz: Tz::UTC,
                channels: Vec::new(),
            },
            platforms: cells::Platforms::of(&[]),
        };
        let accounts: Vec<Account> = [5, 1, 3, 2, 4].into_iter().map(account).collect();
        let members: Vec<usize> = (0..accounts.len()).collect();
        // Old values by account: 1 weighs 10 + 16, 2 weighs 1 + 16, 3 weighs
        // 6 + 32 (two rows), 4 is new, 5 weighs 5 + 16.
        let mut old = Weights::new();
        add_weights(
            &mut old,
            &OldValues {
                accounts: vec![(1, 0..1), (2, 1..2), (3, 2..4), (5, 4..5)],
                values: vec![10, 1, 4, 2, 5],
            },
        );
        let ids = |batches: Vec<Vec<usize>>| -> Vec<Vec<i64>> {
            batches
                .into_iter()
                .map(|b| b.into_iter().map(|i| accounts[i].spec.id).collect())
                .collect()
        };
        assert_eq!(
            ids(weighed_batches(&accounts, &members, &old, 102)),
            vec![vec![5, 1, 3, 2, 4]]
        );
        assert_eq!(
            ids(weighed_batches(&accounts, &members, &old, 30)),
            vec![vec![1, 2], vec![3], vec![4, 5]]
        );
        assert_eq!(
            ids(weighed_batches(&accounts, &members, &old, 1)),
            vec![vec![1], vec![2], vec![3], vec![4, 5]]
        );
    }

    /// A replace pushed a batch at a time writes what one push writes:
    /// each batch places the old part's other accounts before the next
    /// batch's first, and the last batch the rest.
    #[tokio::test]
    async fn a_replace_in_batches_writes_what_one_replace_writes() {
        let temp = TempWarehouse::new("replace-batches");
        let day = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        let parts = Parts {
            warehouse: &temp.wh,
            shard: ShardSpec::WHOLE,
            counts: BTreeSet::from([1]),
            refreshed_at: 2,
            gone: BTreeMap::new(),
        };
        let old_rows = many_accounts();
        let key = parts.key(Interval::Monthly, day);
        let old_bytes = encode(&key, &old_rows).unwrap();
        let old = || OldPart {
            values: decode_values(&key, old_bytes.clone()).unwrap(),
            bytes: Some(old_bytes.clone()),
        };
        // Every third account recomputed (every sixth with other ids), and
        // two new ones.
        let mut fresh: Vec<AccountBucket> = old_rows
            .iter()
            .filter(|b| b.account % 3 == 0)
            .map(|b| match b.account % 6 {
                0 => bucket(b.account, 2, vec![1, 2]),
                _ => b.clone(),
            })
            .collect();
        fresh.extend([bucket(1000, 1, vec![9]), bucket(1001, 1, vec![8])]);
        let at_once = parts
            .replacing(Interval::Monthly, day, old())
            .push(fresh.clone(), None)
            .await
            .unwrap()
            .finish()
            .unwrap()
            .expect("changed");
        let mut replacing = parts.replacing(Interval::Monthly, day, old());
        let batches: Vec<&[AccountBucket]> = fresh.chunks(9).collect();
        for (n, batch) in batches.iter().enumerate() {
            let upto = batches.get(n + 1).map(|next| next[0].account);
            replacing = replacing.push(batch.to_vec(), upto).await.unwrap();
        }
        assert_eq!(replacing.finish().unwrap().expect("changed"), at_once);
        let rows = decode(&key, at_once, true, None).unwrap();
        assert_eq!(rows.len(), 402);
        assert_eq!(rows.iter().find(|b| b.account == 6).unwrap().ids, vec![1, 2]);
        let carried = decode(&key, old_bytes.clone(), true, Some(&[7])).unwrap();
        assert_eq!(rows.iter().find(|b| b.account == 7).unwrap(), &carried[0]);
    }

    /// A replace keeps the rows of accounts it did not compute and of
    /// accounts whose rows came out the same (ids included), writes nothing
    /// when none changed, and rewrites an account whose ids changed under
    /// the same counts.
    #[tokio::test]
    async fn a_replace_compares_ids_and_carries_other_accounts_over() {
        let temp = TempWarehouse::new("replace");
        let day = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        let parts = |refreshed_at| Parts {
            warehouse: &temp.wh,
            shard: ShardSpec::WHOLE,
            counts: BTreeSet::from([1]),
            refreshed_at,
            gone: BTreeMap::new(),
        };
        let replace = |refreshed_at, fresh: Vec<AccountBucket>| async move {
            let parts = parts(refreshed_at);
            let old = parts.current(Interval::Daily, day).await.unwrap();
            parts.replace(Interval::Daily, day, fresh, old).await.unwrap()
        };
        let stored = || async {
            let key = parts(0).key(Interval::Daily, day);
            let bytes = temp.wh.get(&key.relative()).await.unwrap().unwrap();
            decode(&key, bytes, true, None).unwrap()
        };
        assert!(replace(10, vec![bucket(2, 1, vec![5]), bucket(1, 2, vec![1, 2])]).await);
        // Account 1 again, the same: nothing written, account 2 carried over.
        assert!(!replace(20, vec![bucket(1, 2, vec![1, 2])]).await);
        let first = stored().await;
        assert_eq!(
            first.iter().map(|b| (b.account, b.refreshed_at)).collect::<Vec<_>>(),
            [(1, 10), (2, 10)]
        );
        // Account 1's ids changed, not its count: rewritten, account 2 kept.
        assert!(replace(30, vec![bucket(1, 2, vec![1, 3])]).await);
        let second = stored().await;
        assert_eq!(second[0].ids_of(&second[0].rows[0]), Some(&[1, 3][..]));
        assert_eq!(second[0].refreshed_at, 30);
        assert_eq!(second[1], first[1]);
        // Account 2's rows must go (its zone changed): they go in the put
        // that replaces account 1's, not in one of their own after it.
        let parts = Parts {
            gone: BTreeMap::from([((Interval::Daily, day), vec![2])]),
            ..parts(40)
        };
        let old = parts.current(Interval::Daily, day).await.unwrap();
        assert!(
            parts
                .replace(Interval::Daily, day, vec![bucket(1, 2, vec![1, 4])], old)
                .await
                .unwrap()
        );
        let third = stored().await;
        assert_eq!(
            third.iter().map(|b| (b.account, b.refreshed_at)).collect::<Vec<_>>(),
            [(1, 40)]
        );
        // With nobody left to drop and nothing computed, nothing is written.
        let old = parts.current(Interval::Daily, day).await.unwrap();
        assert!(!parts.replace(Interval::Daily, day, Vec::new(), old).await.unwrap());
    }

    /// What a refresh compares first: each account's values in row order,
    /// accounts in part order; a part whose accounts are out of order is
    /// refused rather than compared wrongly.
    #[test]
    fn groups_read_back_as_written_and_a_key_that_disagrees_with_its_grouping_is_refused() {
        let key = key_of(Interval::Daily);
        let mut written = bucket(1, 2, vec![1, 2]);
        let row = |group| RollupRow {
            metric: crate::metric::Metric::UniqueMonthlyContacts,
            group,
            value: 2,
            ids: None,
            platform: None,
        };
        written
            .rows
            .extend([row(RowGroup::Platform("whatsapp".into())), row(RowGroup::All)]);
        let read = decode(&key, encode(&key, std::slice::from_ref(&written)).unwrap(), true, None).unwrap();
        assert_eq!(read, [written.clone()]);

        // The same rows with each group_key replaced, as another writer might.
        let mut batch = group_batch(&key.relative(), std::slice::from_ref(&written)).unwrap();
        let key_column = SCHEMA.index_of("group_key").unwrap();
        let platform_column = SCHEMA.index_of("channel_platform").unwrap();
        let (written_keys, written_platforms) = (
            Some(batch.column(key_column).clone()),
            Some(batch.column(platform_column).clone()),
        );
        for (keys, platforms, wrong) in [
            (
                Some(["whatsapp", "whatsapp", "x"].map(Some)),
                None,
                "channel \"whatsapp\"",
            ),
            (
                Some([Some("7"), Some("whatsapp"), Some("all")]),
                None,
                "group \"all\" Some(\"all\")",
            ),
            // Only a channel row says its channel's platform.
            (
                None,
                Some([Some("sms"), Some("sms"), None]),
                "group \"platform\" Some(\"whatsapp\") (channel platform Some(\"sms\"))",
            ),
        ] {
            let mut columns = batch.columns().to_vec();
            let text = |values: [Option<&str>; 3]| Arc::new(StringArray::from(values.to_vec())) as ArrayRef;
            columns[key_column] = keys.map(text).or(written_keys.clone()).unwrap();
            let dictionary = |values: [Option<&str>; 3]| {
                Arc::new(values.into_iter().collect::<DictionaryArray<Int32Type>>()) as ArrayRef
            };
            columns[platform_column] = platforms.map(dictionary).or(written_platforms.clone()).unwrap();
            batch = RecordBatch::try_new(schema(), columns).unwrap();
            let mut out = Vec::new();
            let mut writer = ArrowWriter::try_new(&mut out, schema(), Some(properties())).unwrap();
            writer.write(&batch).unwrap();
            writer.close().unwrap();
            let err = decode(&key, Bytes::from(out), false, None).unwrap_err();
            assert!(
                matches!(&err, Error::BadRollup { reason, .. } if reason.contains(wrong)),
                "{wrong}: {err:?}"
            );
        }
    }

    /// A channel's rows say the platform it was counted under; rows carried
    /// over from a part an earlier build wrote say none, read back as such,
    /// and count as moved whatever the channel's platform is now.
    #[test]
    fn a_channel_counted_under_another_platform_or_an_unrecorded_one_has_moved() {
        let key = key_of(Interval::Daily);
        let moved =
            |b: &AccountBucket, now: &'static str| b.moved_channel(|_| now).map(|(c, p)| (c, p.map(|p| p.to_string())));
        let mut written = bucket(1, 2, vec![1, 2]);
        assert_eq!(moved(&written, "sms"), None);
        assert_eq!(moved(&written, "whatsapp"), Some((7, Some("sms".into()))));
        written.rows[0].platform = None;
        let read = decode(&key, encode(&key, std::slice::from_ref(&written)).unwrap(), true, None).unwrap();
        assert_eq!(read, [written]);
        assert_eq!(moved(&read[0], "sms"), Some((7, None)));
    }

    #[test]
    fn decode_values_gives_each_accounts_values_in_row_order() {
        let key = key_of(Interval::Daily);
        let mut three_rows = bucket(4, 9, vec![1]);
        for value in [7, 8] {
            let mut row = three_rows.rows[0].clone();
            row.value = value;
            three_rows.rows.push(row);
        }
        let part = vec![bucket(1, 2, vec![1, 2]), three_rows, bucket(6, 0, vec![])];
        let values = decode_values(&key, encode(&key, &part).unwrap()).unwrap();
        let values: Vec<(i64, Vec<i64>)> = values.iter().map(|(a, v)| (a, v.to_vec())).collect();
        assert_eq!(values, [(1, vec![2]), (4, vec![9, 7, 8]), (6, vec![0])]);

        let unsorted = vec![bucket(4, 1, vec![1]), bucket(1, 1, vec![1])];
        let err = decode_values(&key, encode(&key, &unsorted).unwrap()).unwrap_err();
        assert!(err.to_string().contains(&key.relative()), "{err}");
        assert!(
            matches!(&err, Error::BadRollup { reason, .. } if reason.contains("not sorted")),
            "{err:?}"
        );
    }

    /// A cached read is what a plain read gave when its generation first
    /// read the part: the same within a generation, whatever the store does
    /// meanwhile, and what a plain read gives in the next one.
    #[tokio::test]
    async fn cached_reads_are_confirmed_once_per_generation() {
        let temp = TempWarehouse::new("part-cache");
        let wh = &temp.wh;
        let key = key_of(Interval::Monthly);
        let cache = PartCache::new(1 << 20);
        let read = |with_ids: bool, generation: Option<u64>| {
            let (key, cache) = (key, &cache);
            async move {
                read_part(wh, key, with_ids, Some(&[2]), generation.map(|g| (cache, g)))
                    .await
                    .unwrap()
            }
        };
        let value = |read: &Option<Vec<Arc<AccountBucket>>>| read.as_ref().map(|b| b[0].rows[0].value);
        assert_eq!(read(true, Some(1)).await, None);

        let first = vec![bucket(1, 1, vec![10]), bucket(2, 2, vec![20, 21])];
        wh.put(&key.relative(), encode(&key, &first).unwrap()).await.unwrap();
        let plain = read(true, None).await;
        assert_eq!(value(&plain), Some(2));
        assert_eq!(read(true, Some(2)).await, plain, "a miss");
        assert_eq!(cache.usage().0, 1);
        assert_eq!(read(true, Some(2)).await, plain, "a hit");
        let without_ids = read(false, Some(2)).await.unwrap();
        assert_eq!(without_ids[0].rows[0].ids, None, "with and without ids are apart");
        assert_eq!(cache.usage().0, 2);

        // Replaced by a part of the same size: another version all the same,
        // seen from the next generation on.
        let second = vec![bucket(1, 1, vec![10]), bucket(2, 3, vec![20, 22])];
        wh.put(&key.relative(), encode(&key, &second).unwrap()).await.unwrap();
        assert_eq!(read(true, Some(2)).await, plain, "confirmed in this generation");
        let plain = read(true, None).await;
        assert_eq!(value(&plain), Some(3));
        assert_eq!(read(true, Some(3)).await, plain);

        wh.delete(&key.relative()).await.unwrap();
        assert_eq!(read(true, Some(3)).await, plain, "confirmed in this generation");
        assert_eq!(read(true, Some(4)).await, None);
    }

    /// Rows stamped after their spec's last finished refresh are refused;
    /// a spec with no recorded stamp is not checked.
    #[tokio::test]
    async fn rows_of_an_unfinished_refresh_are_not_answered_from() {
        let temp = TempWarehouse::new("unfinished");
        let wh = &temp.wh;
        let shard = ShardSpec::WHOLE;
        let (interval, period) = (Interval::Monthly, NaiveDate::from_ymd_opt(2026, 3, 1).unwrap());
        let key = RollupKey {
            interval,
            period,
            shard,
        };
        let mut stamped = bucket(2, 2, vec![20]);
        stamped.refreshed_at = 100;
        wh.put(&key.relative(), encode(&key, &[stamped]).unwrap())
            .await
            .unwrap();
        let counts = BTreeSet::from([1]);
        let lookup = |finished: Option<BTreeMap<ShardSpec, UnixMicros>>, account: i64| {
            let counts = &counts;
            async move {
                let view = View {
                    counts,
                    finished: finished.as_ref(),
                    cache: None,
                };
                let found = read_for_account(wh, view, account, &[(interval, period)], false)
                    .await
                    .unwrap();
                match &found[..] {
                    [Lookup::Found(b)] => Some(b.refreshed_at),
                    [Lookup::Unfinished] => None,
                    [Lookup::Missing] => Some(-1),
                    other => panic!("{other:?}"),
                }
            }
        };
        assert_eq!(lookup(Some(BTreeMap::from([(shard, 100)])), 2).await, Some(100));
        assert_eq!(lookup(Some(BTreeMap::from([(shard, 99)])), 2).await, None);
        assert_eq!(lookup(Some(BTreeMap::new()), 2).await, Some(100));
        assert_eq!(lookup(None, 2).await, Some(100));
        assert_eq!(lookup(Some(BTreeMap::from([(shard, 99)])), 3).await, Some(-1));
    }

    #[test]
    fn a_part_is_cut_into_row_groups_at_account_boundaries() {
        let many_ids: Vec<i64> = (0..ROW_GROUP_IDS as i64 / 2 + 1).collect();
        let buckets = vec![
            bucket(1, 1, many_ids.clone()),
            bucket(2, 1, many_ids.clone()),
            bucket(3, 1, vec![1]),
        ];
        let groups: Vec<Vec<i64>> = row_groups(&buckets)
            .map(|(group, _)| group.iter().map(|b| b.account).collect())
            .collect();
        assert_eq!(groups, vec![vec![1, 2], vec![3]]);
        let key = key_of(Interval::Daily);
        let bytes = encode(&key, &buckets).unwrap();
        assert_eq!(decode(&key, bytes.clone(), true, None).unwrap(), buckets);
        assert_eq!(decode(&key, bytes, true, Some(&[3])).unwrap(), buckets[2..].to_vec());
        let empty = encode(&key, &[]).unwrap();
        assert_eq!(decode(&key, empty, true, None).unwrap(), Vec::new());
    }

    /// `buckets` encoded as a monthly part, and its number of row groups.
    fn encoded(buckets: &[AccountBucket]) -> (RollupKey, Bytes, usize) {
        let key = key_of(Interval::Monthly);
        let bytes = encode(&key, buckets).unwrap();
        let groups = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
            .unwrap()
            .metadata()
            .num_row_groups();
        (key, bytes, groups)
    }

    /// A part's row groups, encoded by two threads that each take the next
    /// one, are written in order: an odd number of groups reads back whole
    /// and in account order, and each group's statistics still find its
    /// accounts.
    #[test]
    fn row_groups_encoded_on_two_threads_are_written_in_order() {
        let buckets: Vec<AccountBucket> = (0..ROW_GROUP_ROWS as i64 * 2 + 5)
            .map(|account| bucket(account, account as u64 + 1, vec![account]))
            .collect();
        let (key, bytes, groups) = encoded(&buckets);
        assert_eq!(groups, 3);
        assert_eq!(decode(&key, bytes.clone(), true, None).unwrap(), buckets);
        let last = buckets.len() as i64 - 1;
        assert_eq!(
            decode(&key, bytes, true, Some(&[0, last])).unwrap(),
            [buckets[0].clone(), buckets[last as usize].clone()]
        );
    }

    /// A group closes at the first account boundary once its ids reach the
    /// limit: an account with more ids than that ends its group, unsplit.
    #[test]
    fn a_row_group_closes_between_accounts_once_its_ids_reach_the_limit() {
        let many: Vec<i64> = (0..ROW_GROUP_IDS as i64 + 10).collect();
        let buckets = vec![
            bucket(1, 3, vec![1, 2, 3]),
            bucket(2, many.len() as u64, many),
            bucket(3, 1, vec![9]),
            bucket(4, 1, vec![9]),
        ];
        let sizes: Vec<usize> = row_groups(&buckets).map(|(group, _)| group.len()).collect();
        assert_eq!(sizes, [2, 2]);
        let (key, bytes, groups) = encoded(&buckets);
        assert_eq!(groups, 2);
        assert_eq!(
            decode(&key, bytes.clone(), true, Some(&[3])).unwrap(),
            [buckets[2].clone()]
        );
        assert_eq!(decode(&key, bytes, true, None).unwrap(), buckets);
    }

    /// Each part to read gets its accounts sorted and once (the row groups
    /// to decode are found by a binary search of them), from every shard
    /// count, whatever order the caller gave them in.
    #[test]
    fn the_accounts_of_each_part_to_read_are_sorted_and_once() {
        let counts = BTreeSet::from([1, 3]);
        let period = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        let wanted = parts_holding(&counts, Interval::Monthly, period, &[9, 4, 7, 4, 1, 12, 9]);
        for count in [1, 3] {
            let mut all: Vec<i64> = Vec::new();
            for (key, ids) in wanted.iter().filter(|(k, _)| k.shard.count == count) {
                assert!(ids.windows(2).all(|w| w[0] < w[1]), "{key:?}: {ids:?}");
                assert!(
                    ids.iter().all(|a| shard_of(*a, count) == key.shard.index),
                    "{key:?}: {ids:?}"
                );
                all.extend(ids);
            }
            all.sort_unstable();
            assert_eq!(all, [1, 4, 7, 9, 12], "count {count}");
        }
    }

    /// A missing part is lost only where a published day reaches one of
    /// its accounts' local dates there: a UTC day starts on the previous
    /// local date west of Greenwich, never east of it.
    #[test]
    fn a_missing_part_is_lost_only_where_a_published_day_reaches_its_dates() {
        let account = |id: i64, tz: &str| Account {
            spec: AccountSpec {
                id,
                tz: tz.parse().unwrap(),
                channels: Vec::new(),
            },
            platforms: cells::Platforms::of(&[]),
        };
        let accounts = [account(1, "America/New_York"), account(2, "Asia/Kathmandu")];
        let day = |d: u32| NaiveDate::from_ymd_opt(2026, 3, d).unwrap();
        let published = BTreeSet::from([day(2)]);
        let could =
            |ids: &[i64], period: NaiveDate| could_hold_rows(&accounts, &published, Interval::Daily, period, ids);
        assert!(could(&[1], day(1)), "New York's 03-01 ends in UTC 03-02");
        assert!(!could(&[2], day(1)), "Kathmandu's 03-01 ends before UTC 03-02");
        assert!(could(&[2], day(3)), "Kathmandu's 03-03 starts in UTC 03-02");
        assert!(!could(&[1], day(3)), "New York's 03-03 starts after UTC 03-02");
        assert!(could(&[1, 2], day(1)));
        assert!(
            !could(&[3], day(2)),
            "an account the refresh does not know holds nothing"
        );
        assert!(!could(&[1, 2], day(5)), "no published day near 03-05");
        assert_eq!(days_around(&published, Interval::Daily, day(1)), published);
        assert!(days_around(&published, Interval::Daily, day(4)).is_empty());

        // Samoa skipped 2011-12-30: UTC 2011-12-30 reaches its 29th and 31st,
        // and its 30th, which has no instant, never had a part to lose.
        let apia = [account(1, "Pacific/Apia")];
        let date = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let published = BTreeSet::from([date("2011-12-30")]);
        let could = |period: &str| could_hold_rows(&apia, &published, Interval::Daily, date(period), &[1]);
        assert!(could("2011-12-29") && could("2011-12-31"));
        assert!(!could("2011-12-30"));
        assert!(could_hold_rows(
            &apia,
            &published,
            Interval::Weekly,
            date("2011-12-26"),
            &[1]
        ));
    }
}
