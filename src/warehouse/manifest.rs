//! Publishing days, and reading what is published.
//!
//! A day is published shard by shard: shard `i of n` writes its data files,
//! then `_manifests/dt=D/s<i>of<n>.json` (one atomic put). A day is readable
//! when every shard of some count `n` has a manifest; when two counts are
//! complete, the one published last wins. So when a day moves from 3 shards
//! to 2, readers keep the 3-shard set until the 2-shard set is whole, then
//! switch; only after that are the 3-shard manifests and files deleted
//! (manifests first). A run killed at any point leaves the previous complete
//! set readable, and its own stray files are deleted by the next run.
//!
//! Which days are published at all is read from the index
//! (`warehouse::index`), which each publish updates after its manifest, so
//! no reader lists `_manifests/` as a whole.

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::RecordBatch;
use bytes::Bytes;
use chrono::NaiveDate;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};

use super::paths::{DataFileKey, DayManifestKey, RunId, ShardSpec, Table};
use super::{Error, Result, Warehouse};

pub const FORMAT_VERSION: u32 = 1;

/// One file a manifest publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub table: String,
    /// Key relative to the warehouse root.
    pub key: String,
    pub rows: u64,
}

/// `_manifests/dt=D/s<i>of<n>.json`: publishes one shard of one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayManifest {
    pub format_version: u32,
    pub day: NaiveDate,
    pub shard: String,
    pub run_id: RunId,
    /// RFC 3339, UTC.
    pub published_at: String,
    pub files: Vec<FileEntry>,
    pub messages_read: u64,
    pub events_read: u64,
    pub rejects: u64,
}

impl DayManifest {
    pub fn shard(&self) -> Result<ShardSpec> {
        Ok(self.shard.parse()?)
    }

    pub fn files_of(&self, table: Table) -> impl Iterator<Item = &FileEntry> {
        self.files.iter().filter(move |f| f.table == table.name())
    }
}

/// Writes the manifest (data files must already be written), then, at
/// once, removes what no published manifest refers to any more and lists
/// the day in the shard's index (`warehouse::index`), which is what readers
/// go by. Neither waits for the other: a reader that still follows an
/// older index to a deleted file reads the day by its manifests instead.
pub async fn publish_day(warehouse: &Warehouse, manifest: &DayManifest) -> Result<()> {
    let shard = manifest.shard()?;
    let key = DayManifestKey {
        day: manifest.day,
        shard,
    };
    let json = serde_json::to_vec_pretty(manifest).expect("manifests serialize");
    warehouse.put(&key.relative(), Bytes::from(json)).await?;
    futures::try_join!(
        clean_up_day(warehouse, manifest.day, shard, &manifest.run_id),
        super::index::record_day(warehouse, shard, manifest.day, &manifest.run_id),
    )?;
    Ok(())
}

async fn manifest_shards(warehouse: &Warehouse, day: NaiveDate) -> Result<BTreeSet<ShardSpec>> {
    let mut shards = BTreeSet::new();
    for key in warehouse.list(&DayManifestKey::folder(day)).await? {
        // Anything else in the folder is not ours to judge; skip it.
        if let Ok(parsed) = DayManifestKey::parse(&key) {
            shards.insert(parsed.shard);
        }
    }
    Ok(shards)
}

fn is_complete(shards: &BTreeSet<ShardSpec>, count: u32) -> bool {
    (0..count).all(|index| shards.contains(&ShardSpec { index, count }))
}

async fn clean_up_day(warehouse: &Warehouse, day: NaiveDate, shard: ShardSpec, run: &RunId) -> Result<()> {
    // The manifests and the tables' folders are listed at once: on an
    // object store each listing waits a round trip.
    let (shards, listings) = futures::try_join!(
        manifest_shards(warehouse, day),
        futures::future::try_join_all(
            Table::ALL.map(|table| async move { warehouse.list(&DataFileKey::partition(table, day)).await })
        ),
    )?;
    let complete = is_complete(&shards, shard.count);
    if complete {
        // Readers switch sets by manifests, so those go before their files.
        let others: Vec<String> = shards
            .iter()
            .filter(|s| s.count != shard.count)
            .map(|other| DayManifestKey { day, shard: *other }.relative())
            .collect();
        warehouse.delete_each(&others).await?;
    }
    let stale: Vec<String> = listings
        .into_iter()
        .flatten()
        .filter(|key| {
            DataFileKey::parse(key).is_ok_and(|file| {
                let stale_own = file.shard == shard && &file.run_id != run;
                let other_count = complete && file.shard.count != shard.count;
                stale_own || other_count
            })
        })
        .collect();
    warehouse.delete_each(&stale).await
}

/// The manifests that make up the readable version of a day; `None` when no
/// shard count has a complete set.
pub async fn published_day(warehouse: &Warehouse, day: NaiveDate) -> Result<Option<Vec<DayManifest>>> {
    let shards = manifest_shards(warehouse, day).await?;
    let counts: BTreeSet<u32> = shards.iter().map(|s| s.count).collect();
    let mut best: Option<(String, Vec<DayManifest>)> = None;
    for count in counts.into_iter().filter(|c| is_complete(&shards, *c)) {
        let keys: Vec<String> = (0..count)
            .map(|index| {
                DayManifestKey {
                    day,
                    shard: ShardSpec { index, count },
                }
                .relative()
            })
            .collect();
        let mut set = Vec::new();
        for (key, bytes) in keys.iter().zip(warehouse.get_each(&keys).await?) {
            // Deleted since listing: a newer set took over; the caller retries.
            let Some(bytes) = bytes else {
                return Err(disappeared(key));
            };
            set.push(parse_manifest(key, &bytes)?);
        }
        let newest = set.iter().map(|m| m.published_at.clone()).max().unwrap_or_default();
        if best.as_ref().is_none_or(|(b, _)| newest > *b) {
            best = Some((newest, set));
        }
    }
    Ok(best.map(|(_, set)| set))
}

/// One shard's manifest of a day, whether or not its shard count's set is
/// complete; `None` when it has none.
pub async fn shard_manifest(warehouse: &Warehouse, day: NaiveDate, shard: ShardSpec) -> Result<Option<DayManifest>> {
    let key = DayManifestKey { day, shard }.relative();
    match warehouse.get(&key).await? {
        Some(bytes) => parse_manifest(&key, &bytes).map(Some),
        None => Ok(None),
    }
}

fn parse_manifest(key: &str, bytes: &[u8]) -> Result<DayManifest> {
    let manifest: DayManifest = serde_json::from_slice(bytes).map_err(|e| Error::BadManifest {
        key: key.to_string(),
        reason: e.to_string(),
    })?;
    if manifest.format_version != FORMAT_VERSION {
        return Err(Error::BadManifest {
            key: key.to_string(),
            reason: format!("format_version {} is not {FORMAT_VERSION}", manifest.format_version),
        });
    }
    Ok(manifest)
}

/// Every row of one table of a published day, in file order. Retries when a
/// concurrent publish replaces the day while it is being read.
pub async fn read_day_table(warehouse: &Warehouse, day: NaiveDate, table: Table) -> Result<Option<Vec<RecordBatch>>> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match try_read_day_table(warehouse, day, table).await {
            Err(e) if attempt < 5 && is_concurrent_change(&e) => {
                tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await;
            }
            other => return other,
        }
    }
}

fn is_concurrent_change(e: &Error) -> bool {
    matches!(e, Error::BadManifest { reason, .. } if reason.starts_with("disappeared"))
}

async fn try_read_day_table(warehouse: &Warehouse, day: NaiveDate, table: Table) -> Result<Option<Vec<RecordBatch>>> {
    let Some(manifests) = published_day(warehouse, day).await? else {
        return Ok(None);
    };
    let keys: Vec<&String> = manifests
        .iter()
        .flat_map(|m| m.files_of(table))
        .map(|file| &file.key)
        .collect();
    let mut batches = Vec::new();
    for (key, bytes) in keys.iter().zip(warehouse.get_each(&keys).await?) {
        let Some(bytes) = bytes else {
            return Err(disappeared(key));
        };
        batches.extend(read_parquet(key, bytes)?);
    }
    Ok(Some(batches))
}

/// What a manifest names, gone since it was listed or read.
fn disappeared(key: &str) -> Error {
    Error::BadManifest {
        key: key.to_string(),
        reason: "disappeared while reading (concurrent publish)".into(),
    }
}

/// Decodes a whole Parquet object.
pub fn read_parquet(key: &str, bytes: Bytes) -> Result<Vec<RecordBatch>> {
    parquet_batches(key, bytes)?.collect()
}

/// The batches of a Parquet object, decoded one at a time (memory: the
/// object's bytes plus one batch).
pub fn parquet_batches(key: &str, bytes: Bytes) -> Result<impl Iterator<Item = Result<RecordBatch>> + use<>> {
    let perr = |source| Error::ReadParquet {
        key: key.to_string(),
        source,
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(perr)?
        .with_batch_size(64 * 1024)
        .build()
        .map_err(perr)?;
    let key = key.to_string();
    Ok(reader.map(move |batch| {
        batch.map_err(|source| Error::Arrow {
            key: key.clone(),
            source,
        })
    }))
}

/// The named columns of the row groups of a Parquet object (sorted by
/// `account_id` first) whose statistics admit `account`.
/// A file without one of `columns` is another table's (or broken): an error
/// that names it, never a projection past its columns.
pub fn read_account_columns(
    key: &str,
    bytes: Bytes,
    table: Table,
    account: i64,
    columns: &[&str],
) -> Result<Vec<RecordBatch>> {
    let perr = |source| Error::ReadParquet {
        key: key.to_string(),
        source,
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(perr)?;
    let schema = builder.parquet_schema();
    let fields = schema.root_schema().get_fields();
    if let Some(missing) = columns.iter().find(|c| !fields.iter().any(|f| f.name() == **c)) {
        return Err(Error::WrongSchema {
            key: key.to_string(),
            table: table.name(),
            column: missing.to_string(),
        });
    }
    let roots: Vec<usize> = (0..schema.root_schema().get_fields().len())
        .filter(|i| columns.contains(&schema.root_schema().get_fields()[*i].name()))
        .collect();
    let row_groups = account_row_groups(builder.metadata(), schema, Some(&[account]));
    let mask = parquet::arrow::ProjectionMask::roots(schema, roots);
    let reader = builder
        .with_projection(mask)
        .with_row_groups(row_groups)
        .with_batch_size(64 * 1024)
        .build()
        .map_err(perr)?;
    reader.collect::<Result<Vec<_>, _>>().map_err(|source| Error::Arrow {
        key: key.to_string(),
        source,
    })
}

/// The row groups of a Parquet object (sorted by its `account_id` column)
/// whose statistics admit one of `accounts` (sorted); all of them for `None`
/// or when the statistics are missing.
pub fn account_row_groups(
    metadata: &parquet::file::metadata::ParquetMetaData,
    schema: &parquet::schema::types::SchemaDescriptor,
    accounts: Option<&[i64]>,
) -> Vec<usize> {
    let account_column = schema.columns().iter().position(|c| c.name() == "account_id");
    metadata
        .row_groups()
        .iter()
        .enumerate()
        .filter(|(_, rg)| {
            let Some(accounts) = accounts else { return true };
            match account_column.and_then(|c| rg.column(c).statistics()) {
                Some(parquet::file::statistics::Statistics::Int64(v)) => {
                    let lo = v.min_opt().copied().unwrap_or(i64::MIN);
                    let hi = v.max_opt().copied().unwrap_or(i64::MAX);
                    // The first wanted account at or above `lo` is within `hi`.
                    let at = accounts.partition_point(|a| *a < lo);
                    accounts.get(at).is_some_and(|a| *a <= hi)
                }
                _ => true,
            }
        })
        .map(|(i, _)| i)
        .collect()
}

/// Row counts per table of a published day (from its manifests).
pub fn rows_per_table(manifests: &[DayManifest]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for m in manifests {
        for f in &m.files {
            *out.entry(f.table.clone()).or_insert(0) += f.rows;
        }
    }
    out
}

/// FNV-1a: a stable hash (the same in every process and release), for
/// fingerprints that outlive one process.
#[derive(Debug, Clone, Copy)]
pub struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv64 {
    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        // A separator, so ("ab", "c") and ("a", "bc") differ.
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
    }
    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// For values that derive `Hash`: what they feed is the same in every
/// process of one build (integers in this machine's byte order).
impl std::hash::Hasher for Fnv64 {
    fn write(&mut self, bytes: &[u8]) {
        Fnv64::write(self, bytes);
    }
    fn finish(&self) -> u64 {
        Fnv64::finish(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::warehouse::testing::TempWarehouse;

    async fn put(wh: &Warehouse, day: NaiveDate, shard: ShardSpec, published_at: &str) {
        let manifest = DayManifest {
            format_version: FORMAT_VERSION,
            day,
            shard: shard.to_string(),
            run_id: RunId::new(chrono::Utc::now(), 1),
            published_at: published_at.into(),
            files: Vec::new(),
            messages_read: 0,
            events_read: 0,
            rejects: 0,
        };
        let key = DayManifestKey { day, shard }.relative();
        wh.put(&key, serde_json::to_vec(&manifest).unwrap().into())
            .await
            .unwrap();
    }

    /// Between a new shard count's last manifest and its clean-up (or after
    /// a run killed in between), two counts are complete: the set whose
    /// latest manifest is newer is the readable one, and an incomplete
    /// count is never read, however new.
    #[tokio::test]
    async fn of_two_complete_shard_counts_the_one_published_last_is_read() {
        let temp = TempWarehouse::new("manifest-sets");
        let wh = &temp.wh;
        let day = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
        let shard = |index, count| ShardSpec { index, count };
        let read = || async { published_day(wh, day).await.unwrap().map(|set| set[0].shard.clone()) };
        assert_eq!(read().await, None);
        put(wh, day, shard(0, 1), "2026-03-03T10:00:00Z").await;
        assert_eq!(read().await.as_deref(), Some("s0of1"));
        put(wh, day, shard(0, 2), "2026-03-03T09:00:00Z").await;
        put(wh, day, shard(0, 3), "2026-03-03T12:00:00Z").await;
        assert_eq!(read().await.as_deref(), Some("s0of1"));
        put(wh, day, shard(1, 2), "2026-03-03T11:00:00Z").await;
        assert_eq!(read().await.as_deref(), Some("s0of2"));
        put(wh, day, shard(0, 1), "2026-03-03T13:00:00Z").await;
        assert_eq!(read().await.as_deref(), Some("s0of1"));
    }
}
