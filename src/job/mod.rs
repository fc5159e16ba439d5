//! `account-usage run`: the nightly job, and backfills.
//!
//! ```text
//!  plan ──► for each day (up to --parallel at once):
//!           extract (snapshot) ──► aggregate (pure) ──► spill/merge ──► write Parquet ──► publish manifest
//!       ──► rollups of the local dates those days overlap (per account zone)
//!       ──► run manifest ──► state (watermark)
//! ```
//!
//! What must always hold:
//! - every query of a run reads one snapshot of the source;
//! - a day becomes visible only through its manifest, written after its
//!   files; a failure anywhere leaves the previous version of every day
//!   readable, and the rerun repairs it;
//! - the watermark advances only after every day of the run is published, so
//!   a failed run's late rows are found again by the next run; it trails the
//!   source's clock by `--max-commit-lag` (rows committed after the snapshot
//!   with an earlier stamp), and a run that leaves late rows to a later one
//!   (a run of some accounts; a backfill of old days whose later, published
//!   days received rows) keeps the previous one;
//! - a run of some accounts (`--accounts`) replaces only their rows of a
//!   day: the shard's other accounts keep theirs ([`splice`]);
//! - a run of every account also publishes the days within `--max-late-days`
//!   before its first that no run published for its shard
//!   (`days_to_catch_up`), so a night that failed or never ran leaves no
//!   lasting hole;
//! - memory is bounded by `max_entries_in_memory`, not by the day's size;
//! - a dirty marker names the run's days from before the first publish until
//!   their rollups are refreshed; a failed run's marker is inherited (and its
//!   days refreshed) by the next run of the same shard;
//! - a stop (SIGTERM, SIGINT: the caller closes the [`WriteGate`]) ends the
//!   run at once: nothing is written after it, unfinished uploads are
//!   aborted, the dirty marker stays as after a failure, and the run returns
//!   [`Error::Stopped`];
//! - every run, whatever its end, logs one start line and one end line and,
//!   when configured, pushes its metrics ([`metrics`]).

pub mod lease;
mod metrics;
pub mod progress;
mod spill;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::aggregate::{
    Aggregate, ChannelDim, ContactDays, DayAggregator, Dimensions, Entry, Fold, Merge, SlotCounts, decide_resolved,
    merge_sorted_runs, shard_of,
};
use crate::calendar;
use crate::extract::{AccountFilter, Arrivals, DayRange, Snapshot};
use crate::model::{MICROS_PER_DAY, UnixMicros, to_datetime};
use crate::rollup;
use crate::source::{Access, SourceDb, SourceSettings, SourceUrl};
use crate::warehouse::gate::WriteGate;
use crate::warehouse::manifest::{self, DayManifest, FileEntry};
use crate::warehouse::paths::{
    DataFileKey, DirtyMarkerKey, LeaseKey, RunId, STATE_FOLDER, ScratchKey, ShardSpec, Table, parse_state_key,
    run_manifest_key, state_key,
};
use crate::warehouse::splice;
use crate::warehouse::tables;
use crate::warehouse::write::{ParquetFile, ROW_GROUP_ROWS};
use crate::warehouse::{StoreSettings, Warehouse, WarehouseUrl};
use metrics::RunStats;
use progress::Progress;
pub use progress::ProgressMode;
use spill::{EntryRun, SortedRuns, SpillFolder, SpillRuns};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Source(#[from] crate::source::Error),
    #[error(transparent)]
    Extract(#[from] crate::extract::Error),
    #[error(transparent)]
    Warehouse(#[from] crate::warehouse::Error),
    #[error("spilling aggregates to {dir} failed")]
    Spill { dir: String, source: std::io::Error },
    #[error("building Arrow data for {table} failed")]
    Arrow {
        table: &'static str,
        source: arrow::error::ArrowError,
    },
    #[error("a writer task failed: {0}")]
    Task(String),
    #[error("day {day} failed")]
    Day { day: NaiveDate, source: Box<Error> },
    #[error("refreshing rollups failed")]
    Rollup(#[from] crate::rollup::Error),
    #[error("stopped by a signal before it finished; nothing was published after the signal")]
    Stopped,
    #[error(transparent)]
    Lease(#[from] lease::Error),
    #[error(
        "the run's lease could not be renewed in time (--lease-ttl); it stopped writing so that another run may take over"
    )]
    LeaseLost,
    #[error("--accounts: account {0} is not in the source's accounts table")]
    UnknownAccount(i64),
    #[error("--accounts: account {account} belongs to shard {belongs} of {}, not to this run's shard {shard} (give --shard-index {belongs})", .shard.count)]
    AccountNotInShard {
        account: i64,
        belongs: u32,
        shard: ShardSpec,
    },
    #[error(
        "--accounts: {day} has no published version of shard {shard}{published}; a run of some accounts replaces their rows in a published day, so run the day for every account first"
    )]
    NotPublishedForAccounts {
        day: NaiveDate,
        shard: ShardSpec,
        /// What is published instead, if anything.
        published: String,
    },
}

impl Error {
    /// Whether the configuration is wrong (a retry cannot help): exit code 2.
    pub fn is_bad_input(&self) -> bool {
        match self {
            Error::Source(e) => e.is_bad_input(),
            Error::Warehouse(e) | Error::Rollup(crate::rollup::Error::Warehouse(e)) => e.is_bad_input(),
            Error::Day { source, .. } => source.is_bad_input(),
            Error::UnknownAccount(_) | Error::AccountNotInShard { .. } | Error::NotPublishedForAccounts { .. } => true,
            _ => false,
        }
    }

    pub fn is_stopped(&self) -> bool {
        match self {
            Error::Stopped => true,
            Error::Day { source, .. } => source.is_stopped(),
            _ => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Validated configuration of one `run`.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub source: SourceUrl,
    pub warehouse: WarehouseUrl,
    /// The UTC days asked for, in order.
    pub days: Vec<NaiveDate>,
    pub accounts: Option<Vec<i64>>,
    pub shard: ShardSpec,
    pub max_late_days: u32,
    /// How far behind the source's clock the late-data watermark stays.
    pub max_commit_lag: Duration,
    pub parallel: usize,
    pub dry_run: bool,
    pub spill_dir: PathBuf,
    pub max_entries_in_memory: usize,
    /// See `rollup::RefreshScope::batch_weight`.
    pub rollup_batch_weight: u64,
    pub source_settings: SourceSettings,
    pub store: StoreSettings,
    /// Where to push the run's metrics when it ends.
    pub pushgateway: Option<url::Url>,
    pub progress: ProgressMode,
    pub lease: lease::LeaseSettings,
}

/// `_state/<shard>.json`: where the last published run left off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub run_id: RunId,
    /// Every row with a `created_at` up to this (Unix microseconds) has
    /// been seen (see `settled_watermark`). None until the source had rows.
    pub watermark: Option<UnixMicros>,
}

/// `_runs/<run_id>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunManifest {
    pub run_id: RunId,
    pub code_version: String,
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: u64,
    pub shard: String,
    pub accounts: Option<Vec<i64>>,
    pub days: Vec<NaiveDate>,
    /// Days no earlier run published, made good by this one.
    #[serde(default)]
    pub catch_up_days: Vec<NaiveDate>,
    pub late_days: Vec<NaiveDate>,
    pub previous_watermark: Option<String>,
    pub watermark: Option<String>,
    pub watermark_micros: Option<UnixMicros>,
    /// The latest `created_at` the run's snapshot held (not after the
    /// source's clock); the watermark stays `--max-commit-lag` behind the
    /// clock, so it can be earlier.
    pub latest_created_at: Option<String>,
    /// Rows written per table, per day.
    pub rows: BTreeMap<NaiveDate, BTreeMap<String, u64>>,
    pub rejects_by_reason: BTreeMap<String, u64>,
}

/// What one day produced.
#[derive(Debug, Clone)]
pub struct DayReport {
    pub day: NaiveDate,
    pub late: bool,
    pub messages_read: u64,
    pub events_read: u64,
    pub rows: BTreeMap<String, u64>,
    pub rejects: BTreeMap<&'static str, u64>,
    pub elapsed: Duration,
    /// The manifest this run published for the day.
    pub manifest: DayManifest,
}

#[derive(Debug, Clone)]
pub struct RunReport {
    pub run_id: RunId,
    pub days: Vec<DayReport>,
    /// Rollup parts written, per interval.
    pub rollups: BTreeMap<&'static str, u64>,
    /// Rollup parts recomputed whose rows did not change (not written).
    pub rollups_unchanged: u64,
    /// Rollup parts computed and written in batches of accounts
    /// (`--rollup-batch-weight`).
    pub rollups_batched: u64,
    pub catch_up_days: Vec<NaiveDate>,
    pub late_days: Vec<NaiveDate>,
    pub elapsed: Duration,
    pub warehouse: String,
}

/// What a run will do, before it does it.
#[derive(Debug, Clone)]
pub struct Plan {
    pub run_id: RunId,
    pub days: Vec<NaiveDate>,
    /// Days before the asked ones that no run published: see
    /// `days_to_catch_up`.
    pub catch_up_days: Vec<NaiveDate>,
    pub late_days: Vec<NaiveDate>,
    pub accounts: Vec<i64>,
    pub filter: AccountFilter,
    pub previous: Option<State>,
    /// What the run records as its shard's watermark.
    pub watermark: Option<UnixMicros>,
    pub latest_created_at: Option<UnixMicros>,
}

fn rfc3339(m: UnixMicros) -> String {
    to_datetime(m)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_default()
}

/// Runs the job until it is done, fails, or `gate` is closed; then logs the
/// end line and pushes the metrics.
pub async fn run(config: &RunConfig, gate: &WriteGate) -> Result<RunReport> {
    let started = Instant::now();
    let stats = Mutex::new(RunStats::default());
    let held = Mutex::new(LeaseSlot::Empty);
    let outcome = tokio::select! {
        outcome = run_until_done(config, gate, &stats, &held) => outcome,
        () = gate.closed() => Err(Error::Stopped),
    };
    // A write refused by the closing gate can end the work just before the
    // gate's own branch is seen: a failure once stopping is the stop.
    let outcome = match outcome {
        Err(e) if gate.is_closed() && !e.is_stopped() => {
            tracing::debug!(error = %error_chain(&e), "The run failed while stopping.");
            Err(Error::Stopped)
        }
        other => other,
    };
    let (held, acquiring) = match held.into_inner().unwrap_or_else(|p| p.into_inner()) {
        LeaseSlot::Held(lease) => (Some(lease), None),
        LeaseSlot::Acquiring { warehouse, key } => (None, Some((warehouse, key))),
        LeaseSlot::Empty => (None, None),
    };
    if let Some(lease) = &held {
        // Tasks of this run that are still running write nothing from here on.
        lease.lost.close();
    }
    // A stopped run exits within 10 s: at most 3 s of aborts, 2 s to
    // release the lease (it expires by itself), 3 s to push, 1 s to shut down.
    if gate.is_closed() || held.is_some() {
        let (a, b) = tokio::join!(gate.drain(Duration::from_secs(3)), lost_drain(held.as_ref()));
        if a + b > 0 {
            tracing::warn!(pending = a + b, "Some unfinished uploads were not aborted in time.");
        }
    }
    if let Some(lease) = held
        && tokio::time::timeout(Duration::from_secs(2), lease.release())
            .await
            .is_err()
    {
        tracing::warn!("Releasing the lease timed out; it expires by itself.");
    }
    // Stopped while taking the lease: a lease written while waiting for
    // younger runs would otherwise hold them off until it expires.
    if let Some((warehouse, key)) = acquiring {
        match tokio::time::timeout(Duration::from_secs(2), warehouse.delete(&key)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(key, error = %error_chain(&e), "Withdrawing the lease failed; it expires by itself.")
            }
            Err(_) => tracing::warn!(key, "Withdrawing the lease timed out; it expires by itself."),
        }
    }
    let stats = stats.into_inner().unwrap_or_else(|p| p.into_inner());
    let duration = started.elapsed();
    let result = match &outcome {
        Ok(_) => "success",
        Err(e) if e.is_stopped() => "stopped",
        Err(_) => "failure",
    };
    tracing::info!(
        result,
        duration_s = (duration.as_secs_f64() * 1000.0).round() / 1000.0,
        days_processed = stats.days_processed,
        late_days = stats.late_days,
        catch_up_days = stats.catch_up_days,
        rows_read = %counts_json(&stats.rows_read),
        rows_written = %counts_json(&stats.rows_written),
        rejects_by_reason = %counts_json(&stats.rejects),
        "Run finished."
    );
    if let (Some(gateway), false) = (&config.pushgateway, config.dry_run) {
        let last_success = outcome.is_ok().then(|| Utc::now().timestamp_micros() as f64 / 1e6);
        let body = metrics::render(&stats, duration, last_success);
        match tokio::time::timeout(metrics::PUSH_TIMEOUT, metrics::push(gateway, config.shard.index, body)).await {
            Ok(Ok(())) => tracing::debug!(url = %metrics::push_url(gateway, config.shard.index), "Metrics pushed."),
            Ok(Err(e)) => tracing::warn!(error = %error_chain(&e), "Pushing metrics failed; the run's result stands."),
            Err(_) => tracing::warn!("Pushing metrics timed out; the run's result stands."),
        }
    }
    outcome
}

/// Aborts of this run's uploads still pending behind its lease gate.
async fn lost_drain(lease: Option<&lease::Lease>) -> usize {
    match lease {
        Some(lease) => lease.lost.drain(Duration::from_secs(3)).await,
        None => 0,
    }
}

use crate::model::error_chain;

/// Counts by name, as compact JSON for one log field.
fn counts_json<K: AsRef<str>>(counts: &BTreeMap<K, u64>) -> String {
    let map: serde_json::Map<String, serde_json::Value> = counts
        .iter()
        .map(|(k, v)| (k.as_ref().to_string(), serde_json::Value::from(*v)))
        .collect();
    serde_json::Value::Object(map).to_string()
}

/// Where a run is with its lease, for [`run`] to clean up after a stop.
enum LeaseSlot {
    /// A dry run, or no lease written yet.
    Empty,
    /// Being taken: the run's lease object may exist, held or waiting.
    Acquiring {
        warehouse: Warehouse,
        key: String,
    },
    Held(lease::Lease),
}

/// Takes the run's lease (not for a dry run), then does the work unless the
/// lease is lost. The lease goes into `held` for [`run`] to release.
async fn run_until_done(
    config: &RunConfig,
    gate: &WriteGate,
    stats: &Mutex<RunStats>,
    held: &Mutex<LeaseSlot>,
) -> Result<RunReport> {
    let started = Instant::now();
    let started_at = Utc::now();
    let run_id = RunId::new(started_at, rand_u32());
    if config.dry_run {
        let warehouse = Warehouse::open_read_only(&config.warehouse, &config.store)?;
        warehouse.check_access().await?;
        return work(config, &warehouse, run_id, started, stats).await;
    }
    let base = Warehouse::open_with(&config.warehouse, &config.store, &[])?;
    base.check_access().await?;
    let record = lease::LeaseRecord {
        run_id: run_id.clone(),
        shard: config.shard.to_string(),
        accounts: config.accounts.clone(),
        days: config.days.clone(),
        host: hostname(),
        pid: std::process::id(),
        expires_at: 0,
    };
    *held.lock().expect("lease slot") = LeaseSlot::Acquiring {
        warehouse: base.clone(),
        key: LeaseKey { run_id: run_id.clone() }.relative(),
    };
    let lease = lease::acquire(&base, record, config.lease).await?;
    let lost = lease.lost.clone();
    let warehouse = base.gated(gate).gated(&lost);
    *held.lock().expect("lease slot") = LeaseSlot::Held(lease);
    tokio::select! {
        report = work(config, &warehouse, run_id, started, stats) => report,
        () = lost.closed() => Err(Error::LeaseLost),
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Everything a run does once it may write (or, for a dry run, plan).
async fn work(
    config: &RunConfig,
    warehouse: &Warehouse,
    run_id: RunId,
    started: Instant,
    stats: &Mutex<RunStats>,
) -> Result<RunReport> {
    let started_at = Utc::now();
    // Per day: a messages and an events reader; plus the snapshot holder.
    let db = SourceDb::connect(
        &config.source,
        config.parallel as u32 * 2 + 2,
        Access::ReadOnly,
        config.source_settings,
    )
    .await?;
    let mut snapshot = Snapshot::open(&db).await?;
    let dims = Arc::new(snapshot.dimensions().await?);
    // The rollups' dirty markers are listed while the plan reads the state:
    // both wait for the store, and the lease keeps them as they are.
    let list_markers = async {
        if config.dry_run {
            return Ok(BTreeMap::new());
        }
        rollup::dirty_markers(warehouse).await.map_err(Error::from)
    };
    let (plan, markers) = futures::try_join!(plan(config, warehouse, &mut snapshot, &dims, run_id), list_markers)?;
    {
        let mut stats = stats.lock().expect("stats");
        stats.late_days = plan.late_days.len() as u64;
        stats.catch_up_days = plan.catch_up_days.len() as u64;
    }
    tracing::info!(
        run_id = %plan.run_id,
        source = %config.source,
        warehouse = %warehouse.url(),
        shard = %config.shard,
        days = plan.days.len(),
        first_day = %plan.days.first().map(|d| d.to_string()).unwrap_or_default(),
        last_day = %plan.days.last().map(|d| d.to_string()).unwrap_or_default(),
        late_days = plan.late_days.len(),
        catch_up_days = plan.catch_up_days.len(),
        accounts = plan.accounts.len(),
        parallel = config.parallel,
        max_late_days = config.max_late_days,
        max_commit_lag_s = config.max_commit_lag.as_secs_f64(),
        source_settings = %config.source_settings,
        store_settings = %config.store,
        pushgateway = %config.pushgateway.as_ref().map_or_else(|| "off".into(), |u| crate::source::redact(u.as_str())),
        lease_ttl_s = config.lease.ttl.as_secs_f64(),
        lease_wait_s = config.lease.wait.as_secs_f64(),
        dry_run = config.dry_run,
        "Run started."
    );
    if config.dry_run {
        print!("{}", describe_plan(config, &plan));
        snapshot.close().await;
        db.close().await;
        return Ok(RunReport {
            run_id: plan.run_id,
            days: Vec::new(),
            rollups: BTreeMap::new(),
            rollups_unchanged: 0,
            rollups_batched: 0,
            catch_up_days: plan.catch_up_days,
            late_days: plan.late_days,
            elapsed: started.elapsed(),
            warehouse: warehouse.url().to_string(),
        });
    }
    for folder in spill::remove_abandoned(&config.spill_dir) {
        tracing::info!(folder = %folder.display(), "Removed a spill folder left by a killed run.");
    }

    // Name the days whose rollups go stale from the first publish on.
    let marker = DirtyMarkerKey {
        shard: config.shard,
        run_id: plan.run_id.clone(),
    };
    let mut inherited = Vec::new();
    let mut rollup_days: BTreeSet<NaiveDate> = plan.days.iter().copied().collect();
    for (key, (parsed, days)) in markers {
        if parsed.shard == config.shard {
            rollup_days.extend(days);
            inherited.push(key);
        }
    }
    rollup::write_dirty_marker(warehouse, &marker, &rollup_days).await?;
    if config.accounts.is_some() {
        remove_dead_scratch(warehouse, config.shard, &plan.run_id).await?;
    }

    let late: BTreeSet<NaiveDate> = plan.late_days.iter().copied().collect();
    let progress = Mutex::new(Progress::new(plan.days.len(), config.progress));
    let snapshot_ref = &snapshot;
    // The first failed day ends the run: the days still under way are
    // dropped, none is started after it.
    let days: Result<Vec<DayReport>> = futures::stream::iter(plan.days.iter().copied())
        .map(|day| {
            let (warehouse, dims, plan, progress) = (warehouse, dims.clone(), &plan, &progress);
            let is_late = late.contains(&day);
            async move {
                let report = process_day(config, warehouse, snapshot_ref, &dims, plan, day, is_late)
                    .await
                    .map_err(|e| Error::Day {
                        day,
                        source: Box::new(e),
                    })?;
                stats.lock().expect("stats").add_day(
                    report.messages_read,
                    report.events_read,
                    &report.rows,
                    &report.rejects,
                );
                progress.lock().expect("progress").day_done(
                    day,
                    is_late,
                    report.messages_read,
                    report.rejects.values().sum(),
                    report.elapsed,
                );
                Ok(report)
            }
        })
        .buffer_unordered(config.parallel.max(1))
        .try_collect()
        .await;
    drop(progress);
    // A failed day may have failed because the source stopped answering:
    // then its connections are dropped, not closed politely.
    let mut days = days?;
    snapshot.close().await;
    db.close().await;
    days.sort_by_key(|d| d.day);

    let rollup_started = Instant::now();
    let own: BTreeMap<NaiveDate, DayManifest> = days.iter().map(|d| (d.day, d.manifest.clone())).collect();
    // Channels by account in one pass: a fleet's shard has thousands of
    // accounts, and scanning every channel for each was quadratic.
    let mut channels_of: HashMap<i64, Vec<&ChannelDim>> = HashMap::new();
    for c in dims.channels.values() {
        channels_of.entry(c.account_id).or_default().push(c);
    }
    // An account without a valid zone is kept in UTC, as readers keep it,
    // and named: its numbers are not its own local days.
    let mut unzoned: Vec<(i64, Option<String>)> = Vec::new();
    let accounts: Vec<rollup::AccountSpec> = plan
        .accounts
        .iter()
        .filter_map(|id| dims.accounts.get(id))
        .map(|a| rollup::AccountSpec {
            id: a.id,
            tz: match calendar::stored_zone(a.time_zone.as_deref()) {
                Some(tz) => tz,
                None => {
                    // What the source holds, shortened: it is any text.
                    let shown = a.time_zone.as_deref().map(|z| z.chars().take(64).collect());
                    unzoned.push((a.id, shown));
                    chrono_tz::Tz::UTC
                }
            },
            channels: {
                let mut c: Vec<ChannelDim> = channels_of
                    .get(&a.id)
                    .into_iter()
                    .flatten()
                    .map(|c| (*c).clone())
                    .collect();
                c.sort_by_key(|c| c.id);
                c
            },
        })
        .collect();
    if !unzoned.is_empty() {
        tracing::warn!(
            accounts = unzoned.len(),
            first = ?&unzoned[..unzoned.len().min(5)],
            "Accounts whose time_zone is missing or not an IANA name: their rollups and default reports are in UTC. Once the zone is fixed in the source, the next run rebuilds their rollups in it."
        );
    }
    // The refresh holds every account's rows of a bucket at its peak; the
    // source's dimensions (34 MB of channel table alone for a shard of
    // 20,000 accounts) are not needed past here.
    drop(channels_of);
    drop(dims);
    let scope = rollup::RefreshScope {
        shard: config.shard,
        utc_days: &rollup_days,
        accounts,
        own: &own,
        // Taken under the lease, so of two runs over one account the one
        // that refreshes later has the later stamp.
        refreshed_at: Utc::now().timestamp_micros(),
        batch_weight: config.rollup_batch_weight,
    };
    let rollups = rollup::refresh(warehouse, scope).await?;
    tracing::info!(
        parts_written = rollups.files.values().sum::<u64>(),
        parts_unchanged = rollups.unchanged,
        parts_batched = rollups.batched,
        elapsed_ms = rollup_started.elapsed().as_millis() as u64,
        daily_ms = rollups.daily_ms,
        coarse_ms = rollups.coarse_ms,
        "Rollups refreshed."
    );

    // Every day is published: record the run, then advance the watermark.
    let finished_at = Utc::now();
    let mut rejects_by_reason = BTreeMap::new();
    for d in &days {
        for (reason, n) in &d.rejects {
            *rejects_by_reason.entry(reason.to_string()).or_insert(0) += n;
        }
    }
    let run_manifest = RunManifest {
        run_id: plan.run_id.clone(),
        code_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: started_at.to_rfc3339(),
        finished_at: finished_at.to_rfc3339(),
        duration_ms: started.elapsed().as_millis() as u64,
        shard: config.shard.to_string(),
        accounts: config.accounts.clone(),
        days: plan.days.clone(),
        catch_up_days: plan.catch_up_days.clone(),
        late_days: plan.late_days.clone(),
        previous_watermark: plan.previous.as_ref().and_then(|s| s.watermark).map(rfc3339),
        watermark: plan.watermark.map(rfc3339),
        watermark_micros: plan.watermark,
        latest_created_at: plan.latest_created_at.map(rfc3339),
        rows: days.iter().map(|d| (d.day, d.rows.clone())).collect(),
        rejects_by_reason,
    };
    warehouse
        .put(
            &run_manifest_key(&plan.run_id),
            serde_json::to_vec_pretty(&run_manifest).expect("serializable").into(),
        )
        .await?;
    // The run and its refresh's stamp, then the dirty markers: a reader
    // sees the refresh as under way or as finished, never as neither.
    crate::warehouse::index::record_finished(warehouse, config.shard, &plan.run_id, rollups.refreshed_at).await?;
    // The markers go and the watermark advances at once: both need only
    // the index written, and a rerun repairs either if the other fails.
    let state = State {
        run_id: plan.run_id.clone(),
        watermark: plan.watermark.or(plan.previous.as_ref().and_then(|s| s.watermark)),
    };
    let mut refreshed_markers = inherited;
    refreshed_markers.push(marker.relative());
    let delete_markers = warehouse.delete_each(&refreshed_markers);
    let state_key = state_key(config.shard);
    let put_state = warehouse.put(
        &state_key,
        serde_json::to_vec_pretty(&state).expect("serializable").into(),
    );
    futures::try_join!(delete_markers, put_state)?;
    Ok(RunReport {
        run_id: plan.run_id,
        days,
        rollups: rollups.files,
        rollups_unchanged: rollups.unchanged,
        rollups_batched: rollups.batched,
        catch_up_days: plan.catch_up_days,
        late_days: plan.late_days,
        elapsed: started.elapsed(),
        warehouse: warehouse.url().to_string(),
    })
}

fn rand_u32() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    nanos ^ std::process::id().rotate_left(16)
}

async fn read_state(warehouse: &Warehouse, shard: ShardSpec) -> Result<Option<State>> {
    let key = state_key(shard);
    let Some(bytes) = warehouse.get(&key).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        Error::Warehouse(crate::warehouse::Error::BadManifest {
            key,
            reason: e.to_string(),
        })
    })
}

/// Where a run's search for late rows starts: its shard spec's state. A
/// spec's first run (after a change of --shard-count, say) starts from the
/// lowest watermark of the other shard count that ran last, so that the rows
/// that arrived since that count's last night are not lost in the change.
/// Never from a sibling of its own count: a sibling's watermark says nothing
/// of this shard's accounts (and on the first night of a new count, the
/// sibling that ran first has already moved its own past the rows).
async fn read_previous(warehouse: &Warehouse, shard: ShardSpec) -> Result<Option<State>> {
    if let Some(own) = read_state(warehouse, shard).await? {
        return Ok(Some(own));
    }
    let mut by_count: BTreeMap<u32, Vec<State>> = BTreeMap::new();
    for key in warehouse.list(STATE_FOLDER).await? {
        let Some(other) = parse_state_key(&key).filter(|other| other.count != shard.count) else {
            continue;
        };
        if let Some(state) = read_state(warehouse, other).await? {
            by_count.entry(other.count).or_default().push(state);
        }
    }
    let latest_count = by_count
        .values()
        .max_by(|a, b| {
            let newest = |states: &[State]| states.iter().map(|s| s.run_id.clone()).max();
            newest(a).cmp(&newest(b))
        })
        .cloned()
        .unwrap_or_default();
    Ok(latest_count
        .into_iter()
        .filter(|s| s.watermark.is_some())
        .min_by_key(|s| s.watermark))
}

/// Decides the accounts and days of a run.
pub async fn plan(
    config: &RunConfig,
    warehouse: &Warehouse,
    snapshot: &mut Snapshot,
    dims: &Dimensions,
    run_id: RunId,
) -> Result<Plan> {
    let mut known: Vec<i64> = dims.accounts.keys().copied().collect();
    known.sort_unstable();
    for &account in config.accounts.iter().flatten() {
        if known.binary_search(&account).is_err() {
            return Err(Error::UnknownAccount(account));
        }
        let belongs = shard_of(account, config.shard.count);
        if belongs != config.shard.index {
            return Err(Error::AccountNotInShard {
                account,
                belongs,
                shard: config.shard,
            });
        }
    }
    let candidates = config.accounts.clone().unwrap_or_else(|| known.clone());
    let accounts: Vec<i64> = candidates
        .into_iter()
        .filter(|a| shard_of(*a, config.shard.count) == config.shard.index)
        .collect();
    let filter = if config.accounts.is_none() && config.shard.count == 1 {
        AccountFilter::default()
    } else {
        AccountFilter {
            accounts: Some(accounts.clone()),
            // The first shard also takes rows of unknown accounts, so that
            // they are rejected once rather than skipped by every shard.
            strays_outside: (config.accounts.is_none() && config.shard.index == 0).then(|| known.clone()),
        }
    };

    // Late data and missed days are the business of runs of every account:
    // a run of some accounts would leave the others' rows behind (and it
    // cannot publish a day).
    let every_account = config.accounts.is_none();
    // What the warehouse has published, read while the source answers.
    let published = async {
        if !every_account {
            return Ok((BTreeSet::new(), BTreeSet::new()));
        }
        let (own, readable) = futures::try_join!(
            crate::warehouse::index::shard_days(warehouse, config.shard),
            crate::warehouse::index::load(warehouse),
        )?;
        Ok::<_, Error>((own, readable.days))
    };
    let anchor = *config.days.iter().max().expect("a run has at least one day");
    let horizon = anchor - chrono::Days::new(config.max_late_days.into());
    let requested: BTreeSet<NaiveDate> = config.days.iter().copied().collect();
    let since_last_run = async {
        let previous = read_previous(warehouse, config.shard).await?;
        let arrivals = snapshot.arrivals().await?;
        let watermark = settled_watermark(arrivals, config.max_commit_lag);
        let previous_watermark = previous.as_ref().and_then(|s| s.watermark);
        let found: Vec<NaiveDate> = match (previous_watermark, watermark) {
            (Some(prev), Some(now)) if now > prev => snapshot.late_days(prev, now).await?,
            _ => Vec::new(),
        };
        Ok::<_, Error>((previous, arrivals, watermark, found))
    };
    let ((own_days, readable_days), (previous, arrivals, watermark, found)) =
        futures::try_join!(published, since_last_run)?;
    let previous_watermark = previous.as_ref().and_then(|s| s.watermark);
    let catch_up_days = days_to_catch_up(&own_days, &readable_days, &requested, horizon);
    if !catch_up_days.is_empty() {
        tracing::warn!(
            days = ?catch_up_days,
            "Catching up days no run published (a night that failed or did not run)."
        );
    }
    let late_days: Vec<NaiveDate> = found
        .iter()
        .copied()
        .filter(|d| {
            every_account && *d >= horizon && *d < anchor && !requested.contains(d) && !catch_up_days.contains(d)
        })
        .collect();
    // Rows that a run leaves to a later one (other accounts' rows; rows of
    // published days after its last, as when old days are backfilled
    // between nights) must still be ahead of the watermark the later run
    // starts from. Days after its last that are not published yet (the
    // night's today) are read whole when their turn comes.
    let later_days: Vec<NaiveDate> = found
        .iter()
        .copied()
        .filter(|d| *d > anchor && own_days.contains(d))
        .collect();
    let leaves_rows_behind = !every_account || !later_days.is_empty();
    if every_account && !later_days.is_empty() {
        tracing::info!(?later_days, "Late-data watermark kept.");
    }
    let watermark = if leaves_rows_behind {
        previous_watermark
    } else {
        watermark
    };
    let mut days: Vec<NaiveDate> = requested
        .iter()
        .chain(&catch_up_days)
        .chain(&late_days)
        .copied()
        .collect();
    days.sort_unstable();
    days.dedup();
    if !every_account {
        for day in &days {
            check_published_for_splice(warehouse, *day, config.shard).await?;
        }
    }
    Ok(Plan {
        run_id,
        days,
        catch_up_days,
        late_days,
        accounts,
        filter,
        previous,
        watermark,
        latest_created_at: arrivals.latest,
    })
}

/// The day's files of a run of some accounts: `fresh` (their rows, at
/// scratch keys) spliced into the shard's published files, which keep every
/// other account's rows. The scratch files go once spliced.
async fn splice_day(
    warehouse: &Warehouse,
    day: NaiveDate,
    shard: ShardSpec,
    run_id: &RunId,
    accounts: &[i64],
    fresh: Vec<FileEntry>,
) -> Result<Vec<FileEntry>> {
    let Some(old) = manifest::shard_manifest(warehouse, day, shard).await? else {
        return Err(Error::NotPublishedForAccounts {
            day,
            shard,
            published: String::new(),
        });
    };
    let replaced: BTreeSet<i64> = accounts.iter().copied().collect();
    // One table at a time: each is held whole while it is spliced.
    let mut spliced = Vec::with_capacity(fresh.len());
    for entry in &fresh {
        let table = Table::from_name(&entry.table).expect("the run's own table names");
        let old_keys: Vec<String> = old.files_of(table).map(|f| f.key.clone()).collect();
        let key = DataFileKey {
            table,
            day,
            shard,
            run_id: run_id.clone(),
        }
        .relative();
        let rows = splice::splice_accounts(warehouse, table, &old_keys, &entry.key, &key, &replaced).await?;
        spliced.push(FileEntry {
            table: entry.table.clone(),
            key,
            rows,
        });
    }
    let scratch: Vec<String> = fresh.into_iter().map(|f| f.key).collect();
    warehouse.delete_each(&scratch).await?;
    Ok(spliced)
}

/// Removes the scratch files of this shard spec's earlier runs: a run of
/// some accounts that was killed before it spliced leaves its own. Runs of
/// one shard spec never overlap (the lease), so none of them is in use.
async fn remove_dead_scratch(warehouse: &Warehouse, shard: ShardSpec, own: &RunId) -> Result<()> {
    let dead: Vec<String> = warehouse
        .list(ScratchKey::FOLDER)
        .await?
        .into_iter()
        .filter(|key| ScratchKey::parse(key).is_ok_and(|k| k.shard == shard && &k.run_id != own))
        .collect();
    if !dead.is_empty() {
        tracing::info!(files = dead.len(), "Removing a killed run's scratch files.");
        warehouse.delete_each(&dead).await?;
    }
    Ok(())
}

/// A run of some accounts splices their rows into the published version of
/// each of its days ([`splice`]): that version must be its shard count's.
async fn check_published_for_splice(warehouse: &Warehouse, day: NaiveDate, shard: ShardSpec) -> Result<()> {
    let published = manifest::published_day(warehouse, day).await?;
    let count = published
        .as_ref()
        .and_then(|set| set.first())
        .map(|m| m.shard())
        .transpose()?;
    // A day published before a table existed has no rows of it to keep:
    // spliced, the table would hold the run's accounts only, and readers
    // would take it for the whole day's.
    let own = published.iter().flatten().find(|m| m.shard().is_ok_and(|s| s == shard));
    if let Some(missing) = own.and_then(|m| Table::ALL.into_iter().find(|t| m.files_of(*t).next().is_none())) {
        return Err(Error::NotPublishedForAccounts {
            day,
            shard,
            published: format!(" with table {} (an older version published it)", missing.name()),
        });
    }
    match count {
        Some(published) if published.count == shard.count => Ok(()),
        other => Err(Error::NotPublishedForAccounts {
            day,
            shard,
            published: other
                .map(|p| {
                    format!(
                        " (it is published with {} shard(s): give --shard-count {})",
                        p.count, p.count
                    )
                })
                .unwrap_or_default(),
        }),
    }
}

/// The days a run of every account publishes besides the asked ones,
/// because no run has: those within the late-data horizon before its first
/// day, after the first day the warehouse has for the shard, that neither
/// the shard (`own`) nor a complete set of another shard count (`readable`,
/// readers' view) has published. So a night that failed, or never started,
/// is made good by the next one: otherwise its day would stay a hole, every
/// report of its month would answer "missing days", and the next success
/// would clear the alert. Found late rows alone do not do it: a day whose
/// rows had all arrived before the last watermark has none. Before the
/// first published day nothing is a hole (a new deployment starts there).
fn days_to_catch_up(
    own: &BTreeSet<NaiveDate>,
    readable: &BTreeSet<NaiveDate>,
    requested: &BTreeSet<NaiveDate>,
    horizon: NaiveDate,
) -> Vec<NaiveDate> {
    let (Some(first_asked), Some(first_published)) =
        (requested.first(), own.first().into_iter().chain(readable.first()).min())
    else {
        return Vec::new();
    };
    let start = horizon.max(*first_published);
    start
        .iter_days()
        .take_while(|d| d < first_asked)
        .filter(|d| !own.contains(d) && !readable.contains(d))
        .collect()
}

/// The watermark a run records: every row whose `created_at` is at or
/// before it is in this run's snapshot. The latest arrival alone is not
/// enough: a row stamped before it can still be committed after the snapshot
/// was taken (a long write transaction, an application clock behind the
/// database's), so the watermark stays `max_commit_lag` behind the source's
/// clock and the next run looks at such rows again. Rows stamped after the
/// clock are already left out of `latest` by the source's query.
fn settled_watermark(arrivals: Arrivals, max_commit_lag: Duration) -> Option<UnixMicros> {
    let lag = i64::try_from(max_commit_lag.as_micros()).unwrap_or(i64::MAX);
    let settled = arrivals.now.saturating_sub(lag);
    arrivals.latest.map(|latest| latest.min(settled))
}

fn describe_plan(config: &RunConfig, plan: &Plan) -> String {
    let mut out = String::new();
    out.push_str(&format!("dry run {} (nothing is written)\n", plan.run_id));
    out.push_str(&format!("warehouse: {}\nshard: {}\n", config.warehouse, config.shard));
    out.push_str(&format!("accounts ({}): {:?}\n", plan.accounts.len(), plan.accounts));
    for day in &plan.days {
        let late = if plan.late_days.contains(day) {
            " (late data)"
        } else if plan.catch_up_days.contains(day) {
            " (no earlier run published it)"
        } else {
            ""
        };
        out.push_str(&format!("day {day}{late}\n"));
        if config.accounts.is_some() {
            out.push_str(
                "  splice these accounts' rows into the published files (the shard's other accounts keep theirs)\n",
            );
        }
        for table in Table::ALL {
            let key = DataFileKey {
                table,
                day: *day,
                shard: config.shard,
                run_id: plan.run_id.clone(),
            };
            out.push_str(&format!("  write {}\n", key.relative()));
        }
        let manifest = crate::warehouse::paths::DayManifestKey {
            day: *day,
            shard: config.shard,
        };
        out.push_str(&format!("  publish {}\n", manifest.relative()));
    }
    out.push_str(&format!("  record {}\n", run_manifest_key(&plan.run_id)));
    out.push_str(&format!("  record {}\n", state_key(config.shard)));
    out
}

/// Extract, aggregate, write and publish one day.
async fn process_day(
    config: &RunConfig,
    warehouse: &Warehouse,
    snapshot: &Snapshot,
    dims: &Dimensions,
    plan: &Plan,
    day: NaiveDate,
    late: bool,
) -> Result<DayReport> {
    let started = Instant::now();
    let range = DayRange::new(day);
    let spill_folder = SpillFolder::new(config.spill_dir.join(format!(
        "{}{}-{}",
        spill::FOLDER_PREFIX,
        plan.run_id,
        day.format("%Y%m%d")
    )));
    let spill_root = spill_folder.path();
    let spill_err = |source| Error::Spill {
        dir: spill_root.display().to_string(),
        source,
    };

    // Messages and events stream at once, each over its own connection in the
    // run's snapshot, into aggregators of their own: the source works on both
    // queries while this process parses.
    let budget = (config.max_entries_in_memory / 2).max(1);
    let mut messages = Stream::new(dims, range.start, spill_root.join("messages"), budget);
    let mut events = Stream::new(dims, range.start, spill_root.join("events"), budget);
    let mut message_reader = snapshot.day_reader().await?;
    let mut event_reader = snapshot.day_reader().await?;
    let horizon = range.start - i64::from(config.max_late_days) * MICROS_PER_DAY;
    // A spilled run that cannot be read back ends early; checked before
    // anything is published.
    let error = Arc::new(Mutex::new(None));
    // The first failure (a timeout, say) ends the other stream too. The
    // events' side is the shorter: it also counts the rows that only their
    // arrival places (too late, or without an instant).
    let ((), arrival_rejects) = tokio::try_join!(
        async {
            let read = message_reader.messages(range, &plan.filter, |m| {
                messages.agg.push_message(m);
                messages.spill_if_full();
            });
            Ok::<_, Error>(read.await?)
        },
        async {
            event_reader
                .events(range, &plan.filter, |e| {
                    events.agg.push_event(e);
                    events.spill_if_full();
                })
                .await?;
            let resolved = events.resolved_conversations(&error).map_err(spill_err)?;
            event_reader
                .resolve_history(range, resolved, |h| {
                    events.agg.push_history(h);
                    events.spill_if_full();
                })
                .await?;
            Ok(event_reader
                .arrival_rejects(range, horizon, &plan.filter, &plan.days)
                .await?)
        },
    )?;
    for stream in [&mut messages, &mut events] {
        stream.spill_rest_if_spilled();
        if let Some(e) = stream.failure.take() {
            return Err(spill_err(e));
        }
    }
    tracing::debug!(
        %day,
        messages = messages.agg.messages_read,
        events = events.agg.events_read,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "Extracted."
    );
    let mut rejects = std::mem::take(&mut messages.agg.rejects);
    for (key, (rows, example)) in std::mem::take(&mut events.agg.rejects).counts {
        rejects.add(key.0, key.1, key.2, rows, example);
    }
    for row in arrival_rejects {
        rejects.add(
            row.table,
            row.reason,
            row.account_id,
            row.rows.max(0) as u64,
            row.example_id,
        );
    }
    message_reader.finish().await?;
    event_reader.finish().await?;
    let (messages_read, events_read) = (messages.agg.messages_read, events.agg.events_read);

    let shard = config.shard;
    // A run of some accounts writes their rows aside, then splices them into
    // the day's files: the shard's other accounts keep theirs.
    let splicing = config.accounts.is_some();
    let key_of = |table: Table| {
        let run_id = plan.run_id.clone();
        if splicing {
            ScratchKey {
                run_id,
                table,
                day,
                shard,
            }
            .relative()
        } else {
            DataFileKey {
                table,
                day,
                shard,
                run_id,
            }
            .relative()
        }
    };
    let table_of = |which: Aggregate| match which {
        Aggregate::ContactActivity => Table::ContactActivity,
        Aggregate::AgentActivity => Table::AgentActivity,
        Aggregate::ResolvedConversations => Table::ResolvedConversations,
        _ => Table::ProactiveMessages,
    };
    // The tables that need nothing more are merged and written on other
    // workers while this one decides the resolves.
    let mut writes = Vec::new();
    for which in [
        Aggregate::ContactActivity,
        Aggregate::AgentActivity,
        Aggregate::ProactiveMessages,
    ] {
        let sources = runs_of(&mut [&mut messages, &mut events], which, &error).map_err(spill_err)?;
        let (warehouse, table, key) = (warehouse.clone(), table_of(which), key_of(table_of(which)));
        let derived = (which == Aggregate::ContactActivity).then(|| Derived {
            table: Table::ContactDays,
            key: key_of(Table::ContactDays),
            fold: Box::new(ContactDays::default()),
        });
        writes.push(tokio::spawn(async move {
            write_entries(
                &warehouse,
                &key,
                table,
                merge_sorted_runs(sources, which.merge()),
                derived,
            )
            .await
        }));
    }

    // Which resolves count needs the whole day's facts: merge them and decide.
    let mut decided = SortedRuns::new(spill_root.join("decided"), budget);
    let mut merged = Vec::new();
    for which in [
        Aggregate::ResolveCandidates,
        Aggregate::FirstMessage,
        Aggregate::FirstOutbound,
        Aggregate::Settled,
    ] {
        let runs = runs_of(&mut [&mut messages, &mut events], which, &error).map_err(spill_err)?;
        merged.push(merge_sorted_runs(runs, which.merge()));
    }
    let [candidates, first_message, first_outbound, settled]: [_; 4] =
        merged.try_into().unwrap_or_else(|_| unreachable!("four aggregates"));
    decide_resolved(candidates, first_message, first_outbound, settled, |(key, value)| {
        decided.push((key, value));
    });
    if let Some(e) = decided.failure.take() {
        return Err(spill_err(e));
    }
    let which = Aggregate::ResolvedConversations;
    let sources = decided.runs(&error).map_err(spill_err)?;
    let mut written = write_entries(
        warehouse,
        &key_of(Table::ResolvedConversations),
        Table::ResolvedConversations,
        merge_sorted_runs(sources, which.merge()),
        Some(Derived {
            table: Table::ResolvedSlots,
            key: key_of(Table::ResolvedSlots),
            fold: Box::new(SlotCounts::default()),
        }),
    )
    .await?;
    for write in writes {
        written.extend(write.await.map_err(|e| Error::Task(e.to_string()))??);
    }
    if let Some(e) = error.lock().expect("spill error slot").take() {
        return Err(spill_err(e));
    }
    written.sort_by_key(|(table, _, _)| *table);
    let mut files: Vec<FileEntry> = written
        .into_iter()
        .map(|(table, key, rows)| FileEntry {
            table: table.name().into(),
            key,
            rows,
        })
        .collect();
    drop((messages, events, decided));
    tracing::debug!(%day, elapsed_ms = started.elapsed().as_millis() as u64, "Aggregates written.");

    // Dimension snapshots of this run's accounts.
    let mine: BTreeSet<i64> = plan.accounts.iter().copied().collect();
    let mut accounts: Vec<_> = dims.accounts.values().filter(|a| mine.contains(&a.id)).collect();
    accounts.sort_by_key(|a| a.id);
    let mut channels: Vec<_> = dims
        .channels
        .values()
        .filter(|c| mine.contains(&c.account_id))
        .collect();
    channels.sort_by_key(|c| (c.account_id, c.id));
    // Small files, written at once: on an object store each put is a
    // round trip.
    let small = [
        (Table::Accounts, tables::accounts_batch(&accounts)),
        (Table::Channels, tables::channels_batch(&channels)),
        (Table::Rejects, tables::rejects_batch(&rejects)),
    ]
    .map(|(table, batch)| {
        let key = key_of(table);
        async move {
            let batch = batch.map_err(|source| Error::Arrow {
                table: table.name(),
                source,
            })?;
            let mut file = ParquetFile::create(warehouse, &key, table)?;
            file.write(&batch).await?;
            let rows = file.finish().await?;
            Ok::<_, Error>(FileEntry {
                table: table.name().into(),
                key,
                rows,
            })
        }
    });
    files.extend(futures::future::try_join_all(small).await?);
    if splicing {
        files = splice_day(warehouse, day, shard, &plan.run_id, &plan.accounts, files).await?;
    }

    let manifest = DayManifest {
        format_version: manifest::FORMAT_VERSION,
        day,
        shard: shard.to_string(),
        run_id: plan.run_id.clone(),
        published_at: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        files,
        messages_read,
        events_read,
        rejects: rejects.total(),
    };
    manifest::publish_day(warehouse, &manifest).await?;
    Ok(DayReport {
        day,
        late,
        messages_read,
        events_read,
        rows: manifest::rows_per_table(std::slice::from_ref(&manifest)),
        rejects: rejects.by_reason(),
        elapsed: started.elapsed(),
        manifest,
    })
}

/// Every sorted run of one aggregate across streams: the spilled ones, then
/// what is still in memory (drained).
fn runs_of(
    streams: &mut [&mut Stream],
    which: Aggregate,
    error: &Arc<Mutex<Option<std::io::Error>>>,
) -> std::io::Result<Vec<EntryRun>> {
    let mut runs: Vec<EntryRun> = Vec::new();
    for stream in streams.iter_mut() {
        for reader in stream.spills[which.index()].readers(error)? {
            runs.push(Box::new(reader));
        }
        runs.push(Box::new(stream.agg.keyed_mut(which).drain_sorted().into_iter()));
    }
    Ok(runs)
}

/// One input stream of a day: its aggregator, and the sorted runs it
/// spilled whenever its maps outgrew the budget.
struct Stream {
    agg: DayAggregator,
    spills: Vec<SpillRuns>,
    failure: Option<std::io::Error>,
    budget: usize,
}

impl Stream {
    fn new(dims: &Dimensions, day_start: UnixMicros, dir: PathBuf, budget: usize) -> Self {
        Stream {
            agg: DayAggregator::new(dims, day_start),
            spills: (0..Aggregate::ALL.len())
                .map(|i| SpillRuns::new(dir.join(i.to_string())))
                .collect(),
            failure: None,
            budget,
        }
    }

    /// The conversations of the day's valid resolves so far, sorted and
    /// distinct, read from the candidates' runs as they are consumed: held in
    /// memory are the in-memory candidates' ids only, within the budget.
    fn resolved_conversations(
        &self,
        error: &Arc<Mutex<Option<std::io::Error>>>,
    ) -> std::io::Result<impl Iterator<Item = i64> + Send + use<>> {
        let which = Aggregate::ResolveCandidates;
        let only_conversation = |(k, _): Entry| -> Entry { ([k[0], 0, 0, 0], [0, 0]) };
        let mut runs: Vec<EntryRun> = Vec::new();
        for reader in self.spills[which.index()].readers(error)? {
            runs.push(Box::new(reader.map(only_conversation)));
        }
        let mut in_memory: Vec<i64> = self.agg.keyed(which).keys().map(|k| k[0]).collect();
        in_memory.sort_unstable();
        in_memory.dedup();
        runs.push(Box::new(in_memory.into_iter().map(|c| ([c, 0, 0, 0], [0, 0]))));
        Ok(merge_sorted_runs(runs, Merge::Earliest).map(|(k, _)| k[0]))
    }

    /// Spills every non-empty map as a sorted run once the budget is reached.
    /// A failure is kept (the callback cannot return it) and stops spilling.
    fn spill_if_full(&mut self) {
        if self.agg.entries() < self.budget {
            return;
        }
        self.spill();
    }

    /// What the maps still hold, spilled too when the stream has spilled
    /// before (a big day): the last step then merges runs from files alone,
    /// and holds no sorted copy of whatever extraction left in the maps
    /// (up to the stream's budget) beside its own buffers.
    fn spill_rest_if_spilled(&mut self) {
        if self.spills.iter().any(|runs| !runs.is_empty()) {
            self.spill();
        }
    }

    fn spill(&mut self) {
        if self.failure.is_some() {
            return;
        }
        for (which, runs) in Aggregate::ALL.iter().zip(self.spills.iter_mut()) {
            let keyed = self.agg.keyed_mut(*which);
            if keyed.is_empty() {
                continue;
            }
            if let Err(e) = runs.spill(&keyed.drain_sorted()) {
                self.failure = Some(e);
                return;
            }
        }
    }
}

/// The most rows one push of a [`Fold`] emits: a channel's slots of a UTC
/// day (96 quarter hours).
const FOLD_BURST: usize = 96;

/// A table folded from another's entries as they are written.
struct Derived {
    table: Table,
    key: String,
    fold: Box<dyn Fold>,
}

/// Writes a sorted entry stream as one Parquet file, and the table folded
/// from it (if any) as another. An empty stream still gets a (zero-row)
/// file, so that every table has a file for every published day and BI
/// tools' globs never come up empty. Returns each file's table, key and rows.
async fn write_entries(
    warehouse: &Warehouse,
    key: &str,
    table: Table,
    mut entries: impl Iterator<Item = Entry>,
    derived: Option<Derived>,
) -> Result<Vec<(Table, String, u64)>> {
    let batch_of = |table, chunk: &[Entry]| {
        tables::entries_batch(table, chunk).map_err(|source| Error::Arrow {
            table: table.name(),
            source,
        })
    };
    let mut file = ParquetFile::create(warehouse, key, table)?;
    let mut derived = match derived {
        Some(d) => {
            let file = ParquetFile::create(warehouse, &d.key, d.table)?;
            Some((d, file, Vec::with_capacity(ROW_GROUP_ROWS + FOLD_BURST)))
        }
        None => None,
    };
    loop {
        let chunk: Vec<Entry> = entries.by_ref().take(ROW_GROUP_ROWS).collect();
        let last = chunk.len() < ROW_GROUP_ROWS;
        if !chunk.is_empty() {
            file.write(&batch_of(table, &chunk)?).await?;
        }
        if let Some((d, out, folded)) = &mut derived {
            // Written about a row group at a time as it fills, so the
            // folded rows stay within their first allocation (a push emits
            // at most one contact's day or one channel's slots of a day).
            for e in chunk {
                d.fold.push(e, folded);
                if folded.len() >= ROW_GROUP_ROWS {
                    out.write(&batch_of(d.table, folded)?).await?;
                    folded.clear();
                }
            }
            if last {
                d.fold.finish(folded);
                if !folded.is_empty() {
                    out.write(&batch_of(d.table, folded)?).await?;
                    folded.clear();
                }
            }
        }
        if last {
            break;
        }
    }
    let mut written = vec![(table, key.to_string(), file.finish().await?)];
    if let Some((d, out, _)) = derived {
        written.push((d.table, d.key, out.finish().await?));
    }
    Ok(written)
}

impl RunReport {
    /// What `run` prints when it is done.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let mut rows: BTreeMap<&str, u64> = BTreeMap::new();
        let mut rejects: BTreeMap<&str, u64> = BTreeMap::new();
        let (mut messages, mut events) = (0, 0);
        for d in &self.days {
            messages += d.messages_read;
            events += d.events_read;
            for (t, n) in &d.rows {
                *rows.entry(t).or_insert(0) += n;
            }
            for (r, n) in &d.rejects {
                *rejects.entry(r).or_insert(0) += n;
            }
        }
        let caught_up = match self.catch_up_days.len() {
            0 => String::new(),
            n => format!(", {n} that no earlier run published"),
        };
        out.push_str(&format!(
            "run {}: {} day(s) published ({} with late data{caught_up}) in {:.2}s\n",
            self.run_id,
            self.days.len(),
            self.late_days.len(),
            self.elapsed.as_secs_f64()
        ));
        out.push_str(&format!("read: {messages} messages, {events} conversation events\n"));
        out.push_str("rows written:\n");
        for table in Table::ALL {
            out.push_str(&format!(
                "  {:<24}{:>12}\n",
                table.name(),
                rows.get(table.name()).unwrap_or(&0)
            ));
        }
        let total_rejects: u64 = rejects.values().sum();
        out.push_str(&format!("rejects: {total_rejects}\n"));
        for (reason, n) in &rejects {
            out.push_str(&format!("  {reason:<24}{n:>12}\n"));
        }
        let rollups: Vec<String> = self.rollups.iter().map(|(i, n)| format!("{n} {i}")).collect();
        out.push_str(&format!(
            "rollups refreshed: {} ({} parts unchanged)\n",
            rollups.join(", "),
            self.rollups_unchanged
        ));
        if self.rollups_batched > 0 {
            out.push_str(&format!(
                "rollup parts computed in batches of accounts: {}\n",
                self.rollups_batched
            ));
        }
        out.push_str(&format!(
            "parquet: {}/<table>/dt=YYYY-MM-DD/*.parquet, {}/rollups/interval=*/period=*/part-*.parquet\n",
            self.warehouse, self.warehouse
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;
    use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
    use futures::TryStreamExt;

    use super::*;
    use crate::aggregate::fold_all;
    use crate::model::MICROS_PER_HOUR;
    use crate::warehouse::read::stream_batches;
    use crate::warehouse::testing::TempWarehouse;

    async fn read_entries(wh: &Warehouse, key: &str) -> Vec<Entry> {
        let batches: Vec<_> = stream_batches(wh, key)
            .await
            .unwrap()
            .expect("written")
            .try_collect()
            .await
            .unwrap();
        let mut out = Vec::new();
        for batch in &batches {
            let int = |i: usize| batch.column(i).as_primitive::<Int64Type>().clone();
            let utc = |i: usize| batch.column(i).as_primitive::<TimestampMicrosecondType>().clone();
            let (account, channel, contact, first, last) = (int(0), int(1), int(2), utc(3), utc(4));
            for r in 0..batch.num_rows() {
                out.push((
                    [account.value(r), channel.value(r), contact.value(r), 0],
                    [first.value(r), last.value(r)],
                ));
            }
        }
        out
    }

    #[test]
    fn the_watermark_stays_the_commit_lag_behind_the_sources_clock() {
        let lag = Duration::from_secs(600);
        let now = 1_000 * MICROS_PER_HOUR;
        let arrivals = |latest| Arrivals { latest, now };
        // A busy source: rows up to a second ago; those of the last ten
        // minutes may still have company that commits later.
        assert_eq!(
            settled_watermark(arrivals(Some(now - 1_000_000)), lag),
            Some(now - 600_000_000)
        );
        // A quiet source (or history loaded in bulk): the latest row.
        assert_eq!(
            settled_watermark(arrivals(Some(now - 2 * MICROS_PER_HOUR)), lag),
            Some(now - 2 * MICROS_PER_HOUR)
        );
        assert_eq!(settled_watermark(arrivals(None), lag), None);
        assert_eq!(settled_watermark(arrivals(Some(now)), Duration::ZERO), Some(now));
        assert_eq!(
            settled_watermark(arrivals(Some(now)), Duration::MAX),
            Some(now.saturating_sub(i64::MAX))
        );
    }

    #[test]
    fn a_run_catches_up_the_days_since_the_last_published_within_the_horizon() {
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        let set = |days: &[&str]| days.iter().map(|s| d(s)).collect::<BTreeSet<_>>();
        let horizon = d("2026-03-03");
        let tonight = set(&["2026-03-10"]);
        // The nights of 03-07 and 03-08 failed: both are made good.
        let own = set(&["2026-03-05", "2026-03-06", "2026-03-09"]);
        assert_eq!(
            days_to_catch_up(&own, &BTreeSet::new(), &tonight, horizon),
            [d("2026-03-07"), d("2026-03-08")]
        );
        // Nothing before the warehouse's first day, nor before the horizon.
        assert_eq!(
            days_to_catch_up(&set(&["2026-03-08"]), &BTreeSet::new(), &tonight, horizon),
            [d("2026-03-09")]
        );
        assert_eq!(
            days_to_catch_up(&set(&["2026-02-20"]), &BTreeSet::new(), &tonight, horizon),
            (3..10).map(|n| d(&format!("2026-03-{n:02}"))).collect::<Vec<_>>()
        );
        assert!(days_to_catch_up(&BTreeSet::new(), &BTreeSet::new(), &tonight, horizon).is_empty());
        // A new shard count's first night: the old count's days are readable.
        let readable = set(&[
            "2026-03-01",
            "2026-03-02",
            "2026-03-03",
            "2026-03-04",
            "2026-03-05",
            "2026-03-06",
        ]);
        assert_eq!(
            days_to_catch_up(&BTreeSet::new(), &readable, &tonight, horizon),
            [d("2026-03-07"), d("2026-03-08"), d("2026-03-09")]
        );
        // A rerun of an old day, or a backfill, fills nothing after it.
        assert!(days_to_catch_up(&own, &BTreeSet::new(), &set(&["2026-03-06"]), horizon).is_empty());
        // --max-late-days 0: the horizon is the run's day.
        assert!(days_to_catch_up(&own, &BTreeSet::new(), &tonight, d("2026-03-10")).is_empty());
    }

    /// A derived table of more than two row groups comes out whole: each
    /// folded row once, in order, whichever push filled a row group.
    #[tokio::test]
    async fn a_derived_table_over_several_row_groups_is_written_whole() {
        let temp = TempWarehouse::new("write-entries");
        let contacts = 2 * ROW_GROUP_ROWS as i64 + 1_000;
        let entries: Vec<Entry> = (0..contacts)
            .flat_map(|contact| {
                (0..1 + contact % 3).map(move |h| {
                    let hour = h * MICROS_PER_HOUR;
                    ([1 + contact / 50_000, 2, contact, hour], [hour + 5, hour + 60_000_000])
                })
            })
            .collect();
        let derived = Derived {
            table: Table::ContactDays,
            key: "contact_days/part.parquet".into(),
            fold: Box::new(ContactDays::default()),
        };
        let written = write_entries(
            &temp.wh,
            "contact_activity/part.parquet",
            Table::ContactActivity,
            entries.clone().into_iter(),
            Some(derived),
        )
        .await
        .unwrap();
        let expected = fold_all(ContactDays::default(), entries.iter().copied());
        assert_eq!(expected.len(), contacts as usize);
        assert_eq!(
            written.iter().map(|(t, _, rows)| (*t, *rows)).collect::<Vec<_>>(),
            vec![
                (Table::ContactActivity, entries.len() as u64),
                (Table::ContactDays, expected.len() as u64)
            ]
        );
        assert_eq!(read_entries(&temp.wh, "contact_days/part.parquet").await, expected);
    }
}
