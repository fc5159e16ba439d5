//! `account-usage demo`: the whole pipeline on one machine with no server.
//! Seeds a SQLite source, runs the job for every day into a local warehouse,
//! prints what it did, and ends with the report of account 1 for the last 30
//! days (daily, in its own time zone).
//!
//! What must always hold: the demo replaces only what a demo made. It marks
//! its folder ([`MARKER`]) and refuses a folder holding a `warehouse/` or a
//! `source.db` without that mark, so `--dir ~` cannot delete someone's
//! warehouse.

use std::path::PathBuf;
use std::time::Instant;

use chrono::{Datelike, Utc};

use crate::job::{self, RunConfig};
use crate::seed::{self, SeedConfig, SeedParams};
use crate::warehouse::WarehouseUrl;
use crate::warehouse::paths::ShardSpec;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("preparing {path} failed")]
    Prepare { path: String, source: std::io::Error },
    #[error(transparent)]
    Seed(#[from] seed::Error),
    #[error(transparent)]
    Run(#[from] job::Error),
    #[error(transparent)]
    Report(#[from] crate::report::Error),
    #[error(
        "{dir} holds a source.db or a warehouse/ without the demo's mark ({}), so no demo made them; the demo replaces only its own: remove them, or choose another --dir",
        MARKER
    )]
    NotADemoFolder { dir: String },
    #[error("cannot serve the demo: {0}")]
    Serve(String),
}

impl Error {
    /// Whether the input, not the machine, is at fault (exit code 2).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, Error::NotADemoFolder { .. })
    }
}

/// The file that marks a folder as a demo's, and so as the demo's to replace.
pub const MARKER: &str = ".account-usage-demo";

#[derive(Debug, Clone)]
pub struct DemoConfig {
    pub dir: PathBuf,
    pub accounts: u32,
    pub days: u32,
    pub messages_per_day: u64,
    pub parallel: usize,
}

/// Runs the demo; returns the text to print.
pub async fn demo(config: &DemoConfig, gate: &crate::warehouse::gate::WriteGate) -> Result<String, Error> {
    let started = Instant::now();
    let prepare = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| Error::Prepare {
            path: path.display().to_string(),
            source,
        }
    };
    let warehouse_dir = config.dir.join("warehouse");
    let db_path = config.dir.join("source.db");
    let db_files = ["", "-wal", "-shm"].map(|suffix| PathBuf::from(format!("{}{suffix}", db_path.display())));
    let marker = config.dir.join(MARKER);
    let earlier = warehouse_dir.exists() || db_files.iter().any(|p| p.exists());
    if earlier && !marker.exists() {
        return Err(Error::NotADemoFolder {
            dir: config.dir.display().to_string(),
        });
    }
    std::fs::create_dir_all(&config.dir).map_err(prepare(&config.dir))?;
    std::fs::write(
        &marker,
        "Made by `account-usage demo`, which replaces source.db and warehouse/ here on each run.\n",
    )
    .map_err(prepare(&marker))?;
    if warehouse_dir.exists() {
        std::fs::remove_dir_all(&warehouse_dir).map_err(prepare(&warehouse_dir))?;
    }
    for p in &db_files {
        if p.exists() {
            std::fs::remove_file(p).map_err(prepare(p))?;
        }
    }

    let today = Utc::now().date_naive();
    // The closing report (the last 30 days) counts unique contacts over whole
    // months, and a zone ahead of UTC starts its month on the UTC day before:
    // the data must reach back that far.
    let report_from = today - chrono::Days::new(30);
    let month_start = report_from.with_day(1).expect("day 1 exists") - chrono::Days::new(1);
    let start = (today - chrono::Days::new(config.days.into())).min(month_start);
    let days = (today - start).num_days() as u32;
    let source = format!("sqlite://{}", db_path.display())
        .parse()
        .expect("a sqlite:// URL always parses");
    tracing::info!(path = %db_path.display(), days, %start, "Demo: seeding SQLite.");
    let seeded = seed::seed(&SeedConfig {
        source: crate::source::SourceUrl::clone(&source),
        params: SeedParams {
            accounts: config.accounts,
            days,
            start,
            messages_per_day: config.messages_per_day,
            seed: 1,
        },
        truncate: true,
    })
    .await?;

    tracing::info!(warehouse = %warehouse_dir.display(), "Demo: running the job for every day.");
    let run = job::run(
        &RunConfig {
            source,
            warehouse: WarehouseUrl::Local(warehouse_dir.clone()),
            days: start.iter_days().take(days as usize).collect(),
            accounts: None,
            shard: ShardSpec::WHOLE,
            max_late_days: 7,
            max_commit_lag: std::time::Duration::from_secs(600),
            parallel: config.parallel,
            dry_run: false,
            spill_dir: std::env::temp_dir(),
            max_entries_in_memory: 250_000,
            rollup_batch_weight: crate::rollup::DEFAULT_BATCH_WEIGHT,
            source_settings: Default::default(),
            store: Default::default(),
            pushgateway: None,
            progress: job::ProgressMode::Log,
            lease: Default::default(),
        },
        gate,
    )
    .await?;

    let mut out = String::new();
    out.push_str(&format!(
        "demo: {} accounts, {} days ({} .. {}), source {}\n\n",
        config.accounts,
        days,
        start,
        today - chrono::Days::new(1),
        db_path.display()
    ));
    out.push_str("seeded:\n");
    out.push_str(&seeded.summary());
    out.push('\n');
    out.push_str(&run.summary());

    // The report of the first (largest) account: the last 30 days, daily.
    let report = crate::report::report(&crate::report::ReportRequest {
        warehouse: WarehouseUrl::Local(warehouse_dir.clone()),
        store: Default::default(),
        question: crate::report::ReportQuestion {
            account: 1,
            from: report_from,
            to: today - chrono::Days::new(1),
            time_zone: None,
            interval: crate::calendar::Interval::Daily,
            group_by: crate::report::engine::GroupBy::Platform,
            channels: Vec::new(),
            metrics: Vec::new(),
            base_grain_only: false,
        },
    })
    .await?;
    out.push('\n');
    out.push_str(&crate::report::format::table(&report));
    out.push_str(&format!(
        "\ndone in {:.1}s. Next:\n  account-usage report --warehouse {wh} --account {other} --from {from} --to {to} --interval weekly --format json\n  duckdb -c \"SELECT * FROM read_parquet('{wh}/contact_activity/*/*.parquet', hive_partitioning = true) LIMIT 5\"\n",
        started.elapsed().as_secs_f64(),
        wh = warehouse_dir.display(),
        // Another account than the one above, when there is one.
        other = config.accounts.min(2),
        from = today - chrono::Days::new(30),
        to = today - chrono::Days::new(1),
    ));
    Ok(out)
}

/// Serving the demo's warehouse on `listen` (the CLI has checked it is a
/// loopback address): a fresh random secret (never written anywhere), and
/// the page's URL with a 12-hour token for account 1.
pub fn serve_config(
    config: &DemoConfig,
    listen: std::net::SocketAddr,
) -> Result<(crate::serve::ServeConfig, String), Error> {
    use crate::serve::auth::{self, Grant, Secret, Verifier};
    let mut raw = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut raw))
        .map_err(|e| Error::Serve(format!("cannot make a secret ({})", e.kind())))?;
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let secret = Secret::new(hex.as_bytes()).map_err(|e| Error::Serve(e.to_string()))?;
    let token = auth::mint(&secret, Grant::Account(1), std::time::Duration::from_secs(12 * 3600))
        .map_err(|e| Error::Serve(e.to_string()))?;
    let serve = crate::serve::ServeConfig {
        warehouse: WarehouseUrl::Local(config.dir.join("warehouse")),
        store: Default::default(),
        listen,
        auth: crate::serve::Auth::Jwt(Box::new(Verifier::new(&secret))),
        cors_origins: Vec::new(),
        refresh_interval: std::time::Duration::from_secs(30),
        request_timeout: std::time::Duration::from_secs(10),
        result_cache: 1024,
        result_cache_mib: 256,
        rollup_cache_mib: 128,
        grain_cache_mib: 128,
    };
    Ok((serve, format!("http://{listen}/embed#token={token}")))
}
