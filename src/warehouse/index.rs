//! The published-days index: one small object per shard spec,
//! `_index/s<i>of<n>.json`, naming every day that spec has a manifest for
//! (with the run that published it), its latest finished run, and the stamp
//! of its latest finished rollup refresh.
//!
//! Readers learn what is published from one listing of `_index/` (one key
//! per shard spec ever used, not one per day) and one get per key, so the
//! cost of a report or a night does not grow with the warehouse's age.
//!
//! What must always hold:
//! - a day enters an index only after its manifest is written (the index
//!   never names data that is not readable yet); a run killed in between
//!   leaves the day unlisted until its rerun, never half-listed;
//! - only runs of one shard spec write its index, and the lease serializes
//!   them (`job::lease`); within a process, updates take turns; so a
//!   read-modify-write never loses an update;
//! - a day is published when every shard of some count lists it, the same
//!   rule as for manifests (`warehouse::manifest`);
//! - a refresh's stamp is recorded (with its run, [`record_finished`])
//!   after all its rollup parts are written and before its dirty marker is
//!   deleted, so a rollup row stamped later than its spec's recorded stamp
//!   belongs to a refresh that readers of this index have not seen finish.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::manifest::Fnv64;
use super::paths::{IndexKey, RunId, ShardSpec};
use super::{Error, Result, Warehouse};
use crate::model::UnixMicros;

pub const FORMAT_VERSION: u32 = 1;

/// `_index/<shard>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardIndex {
    pub format_version: u32,
    pub shard: String,
    /// Every day this shard spec has published, with the run that last did.
    pub days: BTreeMap<NaiveDate, RunId>,
    pub latest_run: Option<RunId>,
    /// The `refreshed_at` of the latest rollup refresh that finished.
    /// Absent in indexes written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollups_refreshed_at: Option<UnixMicros>,
}

impl ShardIndex {
    fn empty(shard: ShardSpec) -> Self {
        ShardIndex {
            format_version: FORMAT_VERSION,
            shard: shard.to_string(),
            days: BTreeMap::new(),
            latest_run: None,
            rollups_refreshed_at: None,
        }
    }
}

fn parse(key: &str, bytes: &[u8]) -> Result<ShardIndex> {
    let index: ShardIndex = serde_json::from_slice(bytes).map_err(|e| Error::BadManifest {
        key: key.to_string(),
        reason: e.to_string(),
    })?;
    if index.format_version != FORMAT_VERSION {
        return Err(Error::BadManifest {
            key: key.to_string(),
            reason: format!("format_version {} is not {FORMAT_VERSION}", index.format_version),
        });
    }
    Ok(index)
}

/// Days of one run publish concurrently: their read-change-puts of the
/// index take turns within the process (across processes, the lease).
static UPDATES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn update(warehouse: &Warehouse, shard: ShardSpec, change: impl FnOnce(&mut ShardIndex)) -> Result<()> {
    let _turn = UPDATES.lock().await;
    let key = IndexKey { shard }.relative();
    let mut index = match warehouse.get(&key).await? {
        Some(bytes) => parse(&key, &bytes)?,
        None => ShardIndex::empty(shard),
    };
    let before = index.clone();
    change(&mut index);
    if index != before {
        let json = serde_json::to_vec(&index).expect("indexes serialize");
        warehouse.put(&key, json.into()).await?;
    }
    Ok(())
}

/// Records that `run` published `day` for `shard` (its manifest is written).
pub async fn record_day(warehouse: &Warehouse, shard: ShardSpec, day: NaiveDate, run: &RunId) -> Result<()> {
    update(warehouse, shard, |index| {
        index.days.insert(day, run.clone());
    })
    .await
}

/// Records that `run` finished: it becomes the shard spec's latest run, and
/// the stamp of its rollup refresh, which has written every part by now,
/// is recorded. One read-change-put for both: on an object store each is a
/// round trip or two that a night waits for.
pub async fn record_finished(
    warehouse: &Warehouse,
    shard: ShardSpec,
    run: &RunId,
    refreshed_at: UnixMicros,
) -> Result<()> {
    update(warehouse, shard, |index| {
        if index.latest_run.as_ref().is_none_or(|r| r < run) {
            index.latest_run = Some(run.clone());
        }
        index.rollups_refreshed_at = index.rollups_refreshed_at.max(Some(refreshed_at));
    })
    .await
}

/// The days one shard spec has published, from its own index alone.
pub async fn shard_days(warehouse: &Warehouse, shard: ShardSpec) -> Result<BTreeSet<NaiveDate>> {
    let key = IndexKey { shard }.relative();
    Ok(match warehouse.get(&key).await? {
        Some(bytes) => parse(&key, &bytes)?.days.into_keys().collect(),
        None => BTreeSet::new(),
    })
}

/// What the indexes say, read at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    pub days: BTreeSet<NaiveDate>,
    /// Shard counts that have published anything: where rollups may be.
    pub shard_counts: BTreeSet<u32>,
    pub latest_run: Option<RunId>,
    /// By shard spec, the stamp of its latest finished rollup refresh.
    pub rollups_refreshed: BTreeMap<ShardSpec, UnixMicros>,
    /// Changes whenever any index does: a day published (again), a run.
    pub fingerprint: u64,
    /// For a day that one shard count alone has complete, the run that
    /// published each of its shards: its data file keys, without reading
    /// its manifests. Days of two complete counts are not here (which set
    /// is readable is the manifests' call).
    pub runs: BTreeMap<NaiveDate, Vec<(ShardSpec, RunId)>>,
}

pub async fn load(warehouse: &Warehouse) -> Result<Published> {
    let mut keys: Vec<(IndexKey, String)> = warehouse
        .list(IndexKey::FOLDER)
        .await?
        .into_iter()
        .filter_map(|k| Some((IndexKey::parse(&k).ok()?, k)))
        .collect();
    keys.sort();
    let mut fingerprint = Fnv64::default();
    let mut by_count: BTreeMap<u32, BTreeMap<u32, BTreeMap<NaiveDate, RunId>>> = BTreeMap::new();
    let mut latest_run: Option<RunId> = None;
    let mut rollups_refreshed = BTreeMap::new();
    let bodies = warehouse
        .get_each(&keys.iter().map(|(_, key)| key).collect::<Vec<_>>())
        .await?;
    for ((parsed, key), bytes) in keys.into_iter().zip(bodies) {
        // Deleted since listing: nobody deletes indexes, but a store may be
        // edited by hand; what is gone publishes nothing.
        let Some(bytes) = bytes else {
            continue;
        };
        fingerprint.write(key.as_bytes());
        fingerprint.write(&bytes);
        let index = parse(&key, &bytes)?;
        latest_run = latest_run.max(index.latest_run);
        if let Some(stamp) = index.rollups_refreshed_at {
            rollups_refreshed.insert(parsed.shard, stamp);
        }
        by_count
            .entry(parsed.shard.count)
            .or_default()
            .insert(parsed.shard.index, index.days);
    }
    // Day -> the complete counts' runs, one list per count.
    let mut complete: BTreeMap<NaiveDate, Vec<Vec<(ShardSpec, RunId)>>> = BTreeMap::new();
    for (count, shards) in &by_count {
        if shards.len() as u32 != *count {
            continue;
        }
        let mut sets = shards
            .values()
            .map(|days| days.keys().copied().collect::<BTreeSet<_>>());
        let first = sets.next().unwrap_or_default();
        for day in sets.fold(first, |acc, s| acc.intersection(&s).copied().collect()) {
            let runs = shards
                .iter()
                .map(|(index, days)| {
                    (
                        ShardSpec {
                            index: *index,
                            count: *count,
                        },
                        days[&day].clone(),
                    )
                })
                .collect();
            complete.entry(day).or_default().push(runs);
        }
    }
    Ok(Published {
        days: complete.keys().copied().collect(),
        runs: complete
            .into_iter()
            .filter(|(_, counts)| counts.len() == 1)
            .filter_map(|(day, mut counts)| Some((day, counts.pop()?)))
            .collect(),
        shard_counts: by_count.into_keys().collect(),
        latest_run,
        rollups_refreshed,
        fingerprint: fingerprint.finish(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, d).unwrap()
    }

    #[tokio::test]
    async fn a_day_is_published_when_every_shard_of_a_count_lists_it() {
        let temp = crate::warehouse::testing::TempWarehouse::new("index");
        let wh = temp.wh.clone();
        let run = RunId::new(chrono::Utc::now(), 1);
        let (s0, s1) = (ShardSpec { index: 0, count: 2 }, ShardSpec { index: 1, count: 2 });
        assert_eq!(
            load(&wh).await.unwrap(),
            Published {
                fingerprint: Fnv64::default().finish(),
                ..Published::default()
            }
        );
        record_day(&wh, s0, day(1), &run).await.unwrap();
        record_day(&wh, s0, day(2), &run).await.unwrap();
        // Shard 1 of 2 has no index yet: nothing is published.
        assert_eq!(load(&wh).await.unwrap().days, BTreeSet::new());
        record_day(&wh, s1, day(2), &run).await.unwrap();
        let first = load(&wh).await.unwrap();
        assert_eq!(first.days, BTreeSet::from([day(2)]));
        assert_eq!(first.shard_counts, BTreeSet::from([2]));
        assert_eq!(
            first.runs,
            BTreeMap::from([(day(2), vec![(s0, run.clone()), (s1, run.clone())])])
        );
        record_day(&wh, ShardSpec::WHOLE, day(1), &run).await.unwrap();
        record_finished(&wh, ShardSpec::WHOLE, &run, 5).await.unwrap();
        let second = load(&wh).await.unwrap();
        assert_eq!(second.days, BTreeSet::from([day(1), day(2)]));
        assert_eq!(
            second.runs,
            BTreeMap::from([
                (day(1), vec![(ShardSpec::WHOLE, run.clone())]),
                (day(2), vec![(s0, run.clone()), (s1, run.clone())]),
            ])
        );
        assert_eq!(second.shard_counts, BTreeSet::from([1, 2]));
        assert_eq!(second.latest_run, Some(run.clone()));
        assert_ne!(first.fingerprint, second.fingerprint);
        // A rerun of a day changes the fingerprint; recording it twice does not.
        let rerun = RunId::new(chrono::Utc::now(), 2);
        record_day(&wh, ShardSpec::WHOLE, day(1), &rerun).await.unwrap();
        let third = load(&wh).await.unwrap();
        assert_ne!(third.fingerprint, second.fingerprint);
        record_day(&wh, ShardSpec::WHOLE, day(1), &rerun).await.unwrap();
        assert_eq!(load(&wh).await.unwrap(), third);
        assert_eq!(third.rollups_refreshed, BTreeMap::from([(ShardSpec::WHOLE, 5)]));
        // Day 2 complete in two counts: which set is readable is the manifests' call.
        record_day(&wh, ShardSpec::WHOLE, day(2), &rerun).await.unwrap();
        let both = load(&wh).await.unwrap();
        assert_eq!(both.runs.keys().collect::<Vec<_>>(), [&day(1)]);
        assert_eq!(both.days, BTreeSet::from([day(1), day(2)]));
        // A refresh's stamp and the latest run only move forward, and
        // change the fingerprint.
        record_finished(&wh, s1, &rerun, 20).await.unwrap();
        record_finished(&wh, s1, &run, 10).await.unwrap();
        let fourth = load(&wh).await.unwrap();
        assert_eq!(
            fourth.rollups_refreshed,
            BTreeMap::from([(ShardSpec::WHOLE, 5), (s1, 20)])
        );
        assert_eq!(fourth.latest_run, Some(rerun.clone()));
        assert_ne!(fourth.fingerprint, both.fingerprint);
    }
}
