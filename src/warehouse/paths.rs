//! Object keys, built only from types and parsed back with a typed error.
//!
//! Layout under the warehouse root:
//!
//! ```text
//! <table>/dt=YYYY-MM-DD/part-s<i>of<n>-<run_id>.parquet   data files (Hive-style partitions)
//! _manifests/dt=YYYY-MM-DD/s<i>of<n>.json                 publishes one shard of one day
//! _runs/<run_id>.json                                     one per finished run
//! _state/s<i>of<n>.json                                   source watermark of the last run
//! _index/s<i>of<n>.json                                  days (and latest run) one shard spec published
//! rollups/interval=<i>/period=YYYY-MM-DD/part-s<i>of<n>.parquet
//!                                                         one calendar bucket of one shard's accounts
//! _rollups/dirty/s<i>of<n>-<run_id>.json                  days whose rollups a run is refreshing
//! ```
//!
//! Data file names carry the run id, so a rerun never overwrites a file that
//! a reader holding the previous manifest may still be reading.

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;
use object_store::path::Path;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a warehouse key: {0}")]
pub struct KeyError(pub String);

/// The tables the job writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    ContactActivity,
    AgentActivity,
    ResolvedConversations,
    ProactiveMessages,
    /// Derived from `contact_activity`: one row per contact and channel of a UTC day.
    ContactDays,
    /// Derived from `resolved_conversations`: counts per 15-minute UTC slot.
    ResolvedSlots,
    Accounts,
    Channels,
    Rejects,
}

impl Table {
    pub const ALL: [Table; 9] = [
        Table::ContactActivity,
        Table::AgentActivity,
        Table::ResolvedConversations,
        Table::ProactiveMessages,
        Table::ContactDays,
        Table::ResolvedSlots,
        Table::Accounts,
        Table::Channels,
        Table::Rejects,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::ContactActivity => "contact_activity",
            Table::AgentActivity => "agent_activity",
            Table::ResolvedConversations => "resolved_conversations",
            Table::ProactiveMessages => "proactive_messages",
            Table::ContactDays => "contact_days",
            Table::ResolvedSlots => "resolved_slots",
            Table::Accounts => "accounts",
            Table::Channels => "channels",
            Table::Rejects => "rejects",
        }
    }

    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// Shard `index` of `count` (a Kubernetes Indexed Job completion index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardSpec {
    pub index: u32,
    pub count: u32,
}

impl ShardSpec {
    pub const WHOLE: ShardSpec = ShardSpec { index: 0, count: 1 };
}

impl fmt::Display for ShardSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}of{}", self.index, self.count)
    }
}

impl FromStr for ShardSpec {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        let err = || KeyError(s.to_string());
        let (index, count) = s.strip_prefix('s').and_then(|r| r.split_once("of")).ok_or_else(err)?;
        let spec = ShardSpec {
            index: index.parse().map_err(|_| err())?,
            count: count.parse().map_err(|_| err())?,
        };
        if spec.count == 0 || spec.index >= spec.count {
            return Err(err());
        }
        Ok(spec)
    }
}

/// A run id: UTC start time to the millisecond plus a random suffix, so ids
/// sort by start time and never collide.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct RunId(String);

impl RunId {
    pub fn new(now: chrono::DateTime<chrono::Utc>, random: u32) -> Self {
        RunId(format!("{}-{random:08x}", now.format("%Y%m%dT%H%M%S%3fZ")))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// When the run started, to the millisecond (from the id itself).
    pub fn started_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let seconds = chrono::NaiveDateTime::parse_from_str(self.0.get(..15)?, "%Y%m%dT%H%M%S").ok()?;
        let millis: i64 = self.0.get(15..18)?.parse().ok()?;
        Some(seconds.and_utc() + chrono::Duration::milliseconds(millis))
    }
}

impl FromStr for RunId {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        let ok = s.len() == 28 && s.as_bytes()[8] == b'T' && s.as_bytes()[18] == b'Z' && s.as_bytes()[19] == b'-';
        if ok && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            Ok(RunId(s.to_string()))
        } else {
            Err(KeyError(s.to_string()))
        }
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn day_dir(day: NaiveDate) -> String {
    format!("dt={}", day.format("%Y-%m-%d"))
}

/// `<table>/dt=<day>/part-<shard>-<run>.parquet`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFileKey {
    pub table: Table,
    pub day: NaiveDate,
    pub shard: ShardSpec,
    pub run_id: RunId,
}

impl DataFileKey {
    /// The folder holding every data file of a table and day.
    pub fn partition(table: Table, day: NaiveDate) -> String {
        format!("{}/{}", table.name(), day_dir(day))
    }

    pub fn relative(&self) -> String {
        format!(
            "{}/part-{}-{}.parquet",
            Self::partition(self.table, self.day),
            self.shard,
            self.run_id
        )
    }

    pub fn parse(relative: &str) -> Result<Self, KeyError> {
        let err = || KeyError(relative.to_string());
        let mut parts = relative.split('/');
        let (Some(table), Some(dt), Some(file), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(err());
        };
        let table = Table::from_name(table).ok_or_else(err)?;
        let day = NaiveDate::parse_from_str(dt.strip_prefix("dt=").ok_or_else(err)?, "%Y-%m-%d").map_err(|_| err())?;
        let stem = file
            .strip_prefix("part-")
            .and_then(|f| f.strip_suffix(".parquet"))
            .ok_or_else(err)?;
        let (shard, run) = stem.split_once('-').ok_or_else(err)?;
        Ok(DataFileKey {
            table,
            day,
            shard: shard.parse()?,
            run_id: run.parse()?,
        })
    }
}

/// `_manifests/dt=<day>/<shard>.json`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayManifestKey {
    pub day: NaiveDate,
    pub shard: ShardSpec,
}

impl DayManifestKey {
    pub fn folder(day: NaiveDate) -> String {
        format!("_manifests/{}", day_dir(day))
    }
    pub fn relative(&self) -> String {
        format!("{}/{}.json", Self::folder(self.day), self.shard)
    }
    pub fn parse(relative: &str) -> Result<Self, KeyError> {
        let err = || KeyError(relative.to_string());
        let rest = relative.strip_prefix("_manifests/dt=").ok_or_else(err)?;
        let (day, file) = rest.split_once('/').ok_or_else(err)?;
        Ok(DayManifestKey {
            day: NaiveDate::parse_from_str(day, "%Y-%m-%d").map_err(|_| err())?,
            shard: file.strip_suffix(".json").ok_or_else(err)?.parse()?,
        })
    }
}

/// `_runs/<run_id>.json`
pub fn run_manifest_key(run: &RunId) -> String {
    format!("_runs/{run}.json")
}

/// `_scratch/<run>/<table>/dt=<day>/part-<shard>.parquet`: the new rows of
/// a run of some accounts, before they are spliced into the day's data file
/// (`warehouse::splice`). Outside the tables' folders, so that no reader and
/// no glob over a table ever sees one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScratchKey {
    pub run_id: RunId,
    pub table: Table,
    pub day: NaiveDate,
    pub shard: ShardSpec,
}

impl ScratchKey {
    pub const FOLDER: &'static str = "_scratch";

    pub fn parse(relative: &str) -> Result<Self, KeyError> {
        let err = || KeyError(relative.to_string());
        let rest = relative
            .strip_prefix(Self::FOLDER)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(err)?;
        let (run, data) = rest.split_once('/').ok_or_else(err)?;
        let (folder, file) = data.rsplit_once('/').ok_or_else(err)?;
        let shard = file
            .strip_prefix("part-")
            .and_then(|f| f.strip_suffix(".parquet"))
            .ok_or_else(err)?;
        // The data file key of the same folder, with this run, says the rest.
        let data = DataFileKey::parse(&format!("{folder}/part-{shard}-{run}.parquet"))?;
        Ok(ScratchKey {
            run_id: data.run_id,
            table: data.table,
            day: data.day,
            shard: data.shard,
        })
    }

    pub fn relative(&self) -> String {
        format!(
            "{}/{}/{}/part-{}.parquet",
            Self::FOLDER,
            self.run_id,
            DataFileKey::partition(self.table, self.day),
            self.shard
        )
    }
}

/// `_state/<shard>.json`
pub fn state_key(shard: ShardSpec) -> String {
    format!("{STATE_FOLDER}/{shard}.json")
}

pub const STATE_FOLDER: &str = "_state";

/// The shard spec of a [`state_key`]; `None` for anything else.
pub fn parse_state_key(relative: &str) -> Option<ShardSpec> {
    let file = relative.strip_prefix(STATE_FOLDER)?.strip_prefix('/')?;
    file.strip_suffix(".json")?.parse().ok()
}

/// `rollups/interval=<i>/period=<first local date>/part-<shard>.parquet`:
/// one calendar bucket of every account of one shard, sorted by account and
/// replaced whole by a single put. A night writes a few of these per shard,
/// however many accounts the shard has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RollupKey {
    pub interval: crate::calendar::Interval,
    pub period: NaiveDate,
    pub shard: ShardSpec,
}

impl RollupKey {
    pub const TABLE: &'static str = "rollups";

    pub fn relative(&self) -> String {
        format!(
            "{}/interval={}/period={}/part-{}.parquet",
            Self::TABLE,
            self.interval.as_str(),
            self.period.format("%Y-%m-%d"),
            self.shard
        )
    }
}

/// `_index/<shard>.json`: what one shard spec has published (`warehouse::index`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IndexKey {
    pub shard: ShardSpec,
}

impl IndexKey {
    pub const FOLDER: &'static str = "_index";

    pub fn relative(&self) -> String {
        format!("{}/{}.json", Self::FOLDER, self.shard)
    }

    pub fn parse(relative: &str) -> Result<Self, KeyError> {
        let shard = relative
            .strip_prefix(Self::FOLDER)
            .and_then(|r| r.strip_prefix('/'))
            .and_then(|r| r.strip_suffix(".json"))
            .ok_or_else(|| KeyError(relative.to_string()))?;
        Ok(IndexKey { shard: shard.parse()? })
    }
}

/// `_rollups/dirty/<shard>-<run>.json`: written before a run publishes its
/// days and deleted once their rollups are refreshed; while it exists, the
/// report answers for those days from the base grain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirtyMarkerKey {
    pub shard: ShardSpec,
    pub run_id: RunId,
}

impl DirtyMarkerKey {
    pub const FOLDER: &'static str = "_rollups/dirty";

    pub fn relative(&self) -> String {
        format!("{}/{}-{}.json", Self::FOLDER, self.shard, self.run_id)
    }

    pub fn parse(relative: &str) -> Result<Self, KeyError> {
        let err = || KeyError(relative.to_string());
        let stem = relative
            .strip_prefix(Self::FOLDER)
            .and_then(|r| r.strip_prefix('/'))
            .and_then(|r| r.strip_suffix(".json"))
            .ok_or_else(err)?;
        let (shard, run) = stem.split_once('-').ok_or_else(err)?;
        Ok(DirtyMarkerKey {
            shard: shard.parse()?,
            run_id: run.parse()?,
        })
    }
}

/// `_leases/<run>.json`: a live run's claim on its accounts (`job::lease`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseKey {
    pub run_id: RunId,
}

impl LeaseKey {
    pub const FOLDER: &'static str = "_leases";

    pub fn relative(&self) -> String {
        format!("{}/{}.json", Self::FOLDER, self.run_id)
    }

    pub fn parse(relative: &str) -> Result<Self, KeyError> {
        let run = relative
            .strip_prefix(Self::FOLDER)
            .and_then(|r| r.strip_prefix('/'))
            .and_then(|r| r.strip_suffix(".json"))
            .ok_or_else(|| KeyError(relative.to_string()))?;
        Ok(LeaseKey { run_id: run.parse()? })
    }
}

/// Joins a relative key onto the warehouse root.
pub fn join(root: &Path, relative: &str) -> Path {
    if root.as_ref().is_empty() {
        Path::from(relative)
    } else {
        Path::from(format!("{}/{relative}", root.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> RunId {
        RunId::new(
            chrono::DateTime::parse_from_rfc3339("2026-03-01T02:03:04.005Z")
                .unwrap()
                .to_utc(),
            0xabc,
        )
    }

    #[test]
    fn data_file_keys_round_trip() {
        let key = DataFileKey {
            table: Table::ContactActivity,
            day: NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
            shard: ShardSpec { index: 1, count: 3 },
            run_id: run(),
        };
        let rel = key.relative();
        assert_eq!(
            rel,
            "contact_activity/dt=2026-03-01/part-s1of3-20260301T020304005Z-00000abc.parquet"
        );
        assert_eq!(DataFileKey::parse(&rel), Ok(key));
    }

    #[test]
    fn scratch_and_state_keys_round_trip() {
        let key = ScratchKey {
            run_id: run(),
            table: Table::Rejects,
            day: NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
            shard: ShardSpec { index: 2, count: 4 },
        };
        let rel = key.relative();
        assert_eq!(
            rel,
            "_scratch/20260301T020304005Z-00000abc/rejects/dt=2026-03-01/part-s2of4.parquet"
        );
        assert_eq!(ScratchKey::parse(&rel), Ok(key));
        assert!(ScratchKey::parse("_scratch/x/rejects/dt=2026-03-01/part-s2of4.parquet").is_err());
        assert!(ScratchKey::parse("rejects/dt=2026-03-01/part-s2of4-20260301T020304005Z-00000abc.parquet").is_err());
        let shard = ShardSpec { index: 1, count: 3 };
        assert_eq!(parse_state_key(&state_key(shard)), Some(shard));
        assert_eq!(parse_state_key("_state/s1of3.json.tmp"), None);
    }

    #[test]
    fn manifest_keys_round_trip_and_bad_keys_are_refused() {
        let key = DayManifestKey {
            day: NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
            shard: ShardSpec { index: 0, count: 2 },
        };
        assert_eq!(DayManifestKey::parse(&key.relative()), Ok(key));
        for bad in [
            "contact_activity/dt=2026-03-01/part-s3of3-20260301T020304005Z-00000abc.parquet",
            "contact_activity/dt=2026-02-30/part-s0of1-20260301T020304005Z-00000abc.parquet",
            "nope/dt=2026-03-01/part-s0of1-20260301T020304005Z-00000abc.parquet",
            "contact_activity/dt=2026-03-01/part-s0of1-x.parquet",
        ] {
            assert!(DataFileKey::parse(bad).is_err(), "{bad}");
        }
        assert!(DayManifestKey::parse("_manifests/dt=2026-03-01/s0of0.json").is_err());
    }

    #[test]
    fn rollup_and_marker_keys() {
        let key = RollupKey {
            interval: crate::calendar::Interval::Weekly,
            period: NaiveDate::from_ymd_opt(2026, 3, 2).unwrap(),
            shard: ShardSpec { index: 1, count: 4 },
        };
        assert_eq!(
            key.relative(),
            "rollups/interval=weekly/period=2026-03-02/part-s1of4.parquet"
        );
        let index = IndexKey {
            shard: ShardSpec::WHOLE,
        };
        assert_eq!(index.relative(), "_index/s0of1.json");
        assert_eq!(IndexKey::parse(&index.relative()), Ok(index));
        assert!(IndexKey::parse("_index/s1of1.json").is_err());
        let marker = DirtyMarkerKey {
            shard: ShardSpec { index: 1, count: 2 },
            run_id: run(),
        };
        assert_eq!(DirtyMarkerKey::parse(&marker.relative()), Ok(marker));
        assert!(DirtyMarkerKey::parse("_rollups/dirty/x.json").is_err());
        let lease = LeaseKey { run_id: run() };
        assert!(lease.relative().starts_with("_leases/"));
        assert_eq!(LeaseKey::parse(&lease.relative()), Ok(lease));
        assert!(LeaseKey::parse("_leases/x.json").is_err());
    }

    /// A parser takes only what its constructor builds: a stray object in a
    /// warehouse folder (a nested copy, a tool's temporary file, a hand-made
    /// name) is never taken for one of ours, to be read, ordered by its run
    /// or deleted as a stale file of a run.
    #[test]
    fn keys_other_than_the_constructors_are_refused() {
        let id = run().to_string();
        assert_eq!(id, "20260301T020304005Z-00000abc");
        for bad in [
            id.replacen('T', "0", 1),
            id.replacen('Z', "0", 1),
            id.replacen('-', "0", 1),
            id.replacen('a', "_", 1),
            format!("{id}0"),
            id[1..].to_string(),
        ] {
            assert!(bad.parse::<RunId>().is_err(), "{bad}");
        }
        let data = DataFileKey {
            table: Table::Rejects,
            day: NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
            shard: ShardSpec::WHOLE,
            run_id: run(),
        }
        .relative();
        assert!(DataFileKey::parse(&data).is_ok());
        for bad in [
            format!("{data}/x"),
            format!("x/{data}"),
            format!("{data}.tmp"),
            data.replace("/part-", "/x/part-"),
        ] {
            assert!(DataFileKey::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn run_ids_sort_by_time() {
        let t = chrono::DateTime::from_timestamp_millis(1_780_000_000_123).unwrap();
        let id = RunId::new(t, 7);
        assert_eq!(id.started_at(), Some(t));
        let a = RunId::new(chrono::DateTime::from_timestamp(1, 0).unwrap(), 0xffff_ffff);
        let b = RunId::new(chrono::DateTime::from_timestamp(2, 0).unwrap(), 0);
        assert!(a < b);
        assert_eq!(a.as_str().parse::<RunId>(), Ok(a));
    }
}
