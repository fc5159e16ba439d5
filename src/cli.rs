//! Command-line flags, parsed by clap and validated once into typed configs.
//!
//! Every flag has a doc comment (its `--help` text) and an environment
//! fallback. Anything wrong with the input becomes a [`UsageError`], which
//! `main` turns into a one-line message and exit code 2.

use std::io::IsTerminal;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::job::{ProgressMode, RunConfig};
use crate::seed::{SeedConfig, SeedParams};
use crate::source::{SourceSettings, SourceUrl};
use crate::warehouse::paths::ShardSpec;
use crate::warehouse::{StoreSettings, WarehouseUrl};

/// Input the user can fix: a bad flag value or a bad combination of flags.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl UsageError {
    /// What is wrong with `flag`: the error and each of its causes (the
    /// cause says why, e.g. "invalid port number"), each said once.
    fn of(flag: &str, e: &(dyn std::error::Error + 'static)) -> Self {
        UsageError(format!("{flag}: {}", crate::model::error_chain(e)))
    }
}

/// The version, with the time zone database the zone rules come from: an
/// upgrade that changes a zone's rules rebuilds that zone's rollups.
static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{} (tzdata {})",
        env!("CARGO_PKG_VERSION"),
        crate::calendar::TZDB_VERSION
    )
});

const ROOT_EXAMPLES: &str = "\
Examples:
  # Everything on a laptop: seed SQLite, run the job for every day, summarize
  account-usage demo

  # The nightly job: yesterday (UTC) from PostgreSQL into S3
  SOURCE_DATABASE_URL=postgres://etl@db/ops WAREHOUSE_URL=s3://bucket/usage account-usage run

  # Fill a local SQLite file with 5 accounts and 30 days of synthetic data
  account-usage seed --source sqlite://demo/source.db --accounts 5 --days 30

  # The same into PostgreSQL, credentials from the environment
  PGPASSWORD=… account-usage seed --source postgres://app@localhost/ops

Logging: RUST_LOG sets the level (default: info); logs go to stderr.

Exit codes (the same table drives the Kubernetes podFailurePolicy):
  0    success
  1    a failure that a retry may fix (database or store unreachable, timeout)
  2    bad input or configuration (flags, URLs, a missing source file,
       a bucket that does not exist, refused credentials): do not retry
  143  stopped by SIGTERM or SIGINT: nothing was published after the signal";

/// Account usage: the nightly ETL job and report engine behind the Account
/// usage report (unique monthly contacts, resolved conversations, active
/// agents, channels and proactive messages).
#[derive(Debug, Parser)]
#[command(name = "account-usage", version = VERSION.as_str(), after_help = ROOT_EXAMPLES)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, env = "ACCOUNT_USAGE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fill an operational database with realistic synthetic data.
    Seed(SeedArgs),
    /// Extract UTC days from the source, aggregate them, and publish Parquet.
    Run(RunArgs),
    /// Seed a SQLite source, run the job for every day, and summarize (no server needed).
    Demo(DemoArgs),
    /// The Account usage report of one account, from the warehouse only.
    Report(ReportArgs),
    /// Serve the report API and the embeddable report page over HTTP.
    Serve(ServeArgs),
    /// Print a signed token for the API and the page (as the product's backend does).
    Token(TokenArgs),
}

const SEED_EXAMPLES: &str = "\
Examples:
  # A small SQLite source for a laptop (schema created when missing)
  account-usage seed --source sqlite://demo/source.db --accounts 5 --days 60 --start 2026-01-01

  # One day of 2 million messages over 50 accounts into PostgreSQL
  account-usage seed --source postgres://postgres@localhost/ops \\
      --accounts 50 --days 1 --start 2026-03-01 --messages-per-day 2000000

The same flags and --seed always give the same rows. The data has per-account
time zones (Asia/Kathmandu, Asia/Kolkata, America/New_York, Australia/Lord_Howe,
America/Santiago, Europe/London, …), daily and weekly cycles in local time,
heavy-tailed contacts, agents on shifts, proactive and unanswered conversations,
reopened conversations, test and development channels, channels connected and
disconnected mid-window, automation messages and about 2% late rows.
SQLite timestamps are INTEGER microseconds since the Unix epoch (UTC).";

/// Flags of `account-usage seed`.
#[derive(Debug, Args)]
#[command(after_help = SEED_EXAMPLES)]
pub struct SeedArgs {
    /// Database to fill: postgres://user@host:port/db or sqlite://path/to/file.db.
    /// The reference schema is created when missing. Passwords belong in the
    /// environment (PGPASSWORD), not on the command line.
    #[arg(long, env = "SOURCE_DATABASE_URL", value_name = "URL")]
    pub source: String,

    /// Number of accounts; their sizes are heavy-tailed (account 1 is the largest).
    #[arg(long, env = "SEED_ACCOUNTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub accounts: u32,

    /// Number of UTC days to generate, starting at --start.
    #[arg(long, env = "SEED_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3_660))]
    pub days: u32,

    /// First UTC day of the data [default: --days days before today, UTC].
    #[arg(long, env = "SEED_START", value_name = "YYYY-MM-DD", value_parser = parse_date)]
    pub start: Option<NaiveDate>,

    /// Messages per day, all accounts together (the average over the window;
    /// weekends are quieter than weekdays). The total is exactly this times --days.
    #[arg(long, env = "SEED_MESSAGES_PER_DAY", default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub messages_per_day: u64,

    /// Random seed; the same seed and flags give identical tables.
    #[arg(long, env = "SEED_SEED", default_value_t = 1)]
    pub seed: u64,

    /// Empty the reference tables first, instead of refusing a non-empty source.
    #[arg(long, env = "SEED_TRUNCATE")]
    pub truncate: bool,
}

const RUN_EXAMPLES: &str = "\
Examples:
  # Yesterday (UTC), every account, into ./warehouse
  account-usage run --source postgres://etl@db/ops

  # A backfill of March, four days at a time, into S3 (credentials from AWS_*)
  account-usage run --source postgres://etl@db/ops --warehouse s3://bucket/usage \\
      --from 2026-03-01 --to 2026-03-31 --parallel 4

  # Shard 2 of 3 of a Kubernetes Indexed Job (JOB_COMPLETION_INDEX is read too)
  account-usage run --source postgres://etl@db/ops --shard-index 2 --shard-count 3

  # Show what would be written, touch nothing
  account-usage run --source sqlite://demo/source.db --date 2026-03-01 --dry-run

Each day is published by a manifest written after its Parquet files, so
readers never see half a day; rerunning a day replaces it. Each run also
reprocesses the days (within --max-late-days) that received rows since the
last run, and publishes those that no run has (a night that failed); rows
older than that are counted as rejects with reason too_late.";

/// Flags of `account-usage run`.
#[derive(Debug, Args)]
#[command(after_help = RUN_EXAMPLES)]
pub struct RunArgs {
    /// Operational database to read: postgres://user@host:port/db or
    /// sqlite://path/to/file.db. Passwords belong in the environment
    /// (PGPASSWORD), not on the command line; URLs in logs are redacted.
    #[arg(long, env = "SOURCE_DATABASE_URL", value_name = "URL")]
    pub source: String,

    /// Where to write: a path, file:///abs/path, s3://bucket/prefix,
    /// gs://bucket/prefix or az://container/prefix. Credentials and endpoints
    /// come from the store's standard environment variables (AWS_*, …).
    #[arg(long, env = "WAREHOUSE_URL", default_value = "./warehouse", value_name = "URL")]
    pub warehouse: String,

    /// One UTC day to process, one that has ended [default: yesterday, UTC].
    #[arg(long, env = "RUN_DATE", value_name = "YYYY-MM-DD", value_parser = parse_date, conflicts_with_all = ["from", "to"])]
    pub date: Option<NaiveDate>,

    /// First UTC day of a backfill (inclusive); needs --to.
    #[arg(long, env = "RUN_FROM", value_name = "YYYY-MM-DD", value_parser = parse_date, requires = "to")]
    pub from: Option<NaiveDate>,

    /// Last UTC day of a backfill (inclusive), one that has ended; needs --from.
    #[arg(long, env = "RUN_TO", value_name = "YYYY-MM-DD", value_parser = parse_date, requires = "from")]
    pub to: Option<NaiveDate>,

    /// Days processed at once in a backfill.
    #[arg(long, env = "RUN_PARALLEL", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub parallel: u32,

    /// Only these accounts (comma-separated ids, of this run's shard)
    /// [default: all]: their rows of each day are replaced in the day's
    /// published files, every other account's are kept. The days must be
    /// published with this run's shard count. No late days are reprocessed,
    /// and the late-data watermark stays where it was.
    #[arg(long, env = "RUN_ACCOUNTS", value_delimiter = ',', value_name = "ID,…")]
    pub accounts: Option<Vec<i64>>,

    /// This process's shard, 0-based [default: JOB_COMPLETION_INDEX when set, else 0].
    #[arg(long, env = "JOB_COMPLETION_INDEX", value_name = "I")]
    pub shard_index: Option<u32>,

    /// Number of shards; accounts are split by a stable hash of their id.
    #[arg(long, env = "SHARD_COUNT", default_value_t = 1, value_name = "N")]
    pub shard_count: u32,

    /// How many days back late rows are still reprocessed (older ones are
    /// counted as rejects, too_late), and days that no run published (a
    /// night that failed) are published by the next run of every account.
    #[arg(long, env = "MAX_LATE_DAYS", default_value_t = 7, value_parser = clap::value_parser!(u32).range(0..=366))]
    pub max_late_days: u32,

    /// How far behind the source's clock the late-data watermark stays. A
    /// row committed after a run's snapshot but stamped (created_at) before
    /// it, by a write transaction or an application clock up to this much
    /// behind, is still found by the next run; one stamped earlier than that
    /// is not. Rows stamped after the source's clock never move the
    /// watermark.
    #[arg(long, env = "MAX_COMMIT_LAG", default_value = "10m", value_name = "DUR", value_parser = parse_duration_or_zero)]
    pub max_commit_lag: Duration,

    /// Print the days, accounts and objects the run would write, and write nothing.
    #[arg(long, env = "RUN_DRY_RUN")]
    pub dry_run: bool,

    /// Local folder for aggregates spilled when a day outgrows
    /// --max-entries-in-memory [default: the system temp folder].
    #[arg(long, env = "SPILL_DIR", value_name = "DIR")]
    pub spill_dir: Option<std::path::PathBuf>,

    /// Aggregate entries held in memory per day before sorted runs are
    /// spilled to --spill-dir (about 100 bytes each).
    #[arg(long, env = "MAX_ENTRIES_IN_MEMORY", default_value_t = 250_000, value_parser = clap::value_parser!(u64).range(1_000..=1_000_000_000))]
    pub max_entries_in_memory: u64,

    /// A monthly, quarterly or yearly rollup bucket heavier than this is
    /// computed and written in batches of accounts of about this weight, to
    /// bound a night's memory late in a month, on the night that closes a
    /// quarter or a year, or on a shard of many accounts. A bucket weighs
    /// what its previous part's values sum to, plus 16 a row (a distinct
    /// count's value is its id list's length); a quarter or a year with no
    /// part yet, what the finer parts it is built from weigh.
    #[arg(long, env = "ROLLUP_BATCH_WEIGHT", default_value_t = crate::rollup::DEFAULT_BATCH_WEIGHT, value_name = "W", value_parser = clap::value_parser!(u64).range(1..))]
    pub rollup_batch_weight: u64,

    /// Longest wait for one connection to the source (e.g. 10s, 500ms); a
    /// refused connection or unknown host fails at once.
    #[arg(long, env = "SOURCE_CONNECT_TIMEOUT", default_value = "10s", value_name = "DUR", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// Longest one source statement may run, on the server and on the
    /// client (a server that stops answering fails the run after this).
    #[arg(long, env = "SOURCE_STATEMENT_TIMEOUT", default_value = "30m", value_name = "DUR", value_parser = parse_duration)]
    pub statement_timeout: Duration,

    #[command(flatten)]
    pub store: StoreArgs,

    /// How long a run's lease lives without renewal (it is renewed every
    /// third of this): a run that was killed blocks overlapping runs this long.
    #[arg(long, env = "LEASE_TTL", default_value = "30s", value_name = "DUR", value_parser = parse_duration)]
    pub lease_ttl: Duration,

    /// Longest wait for overlapping runs (same accounts) to finish; then the
    /// run exits 1 naming them.
    #[arg(long, env = "LEASE_WAIT", default_value = "10m", value_name = "DUR", value_parser = parse_duration_or_zero)]
    pub lease_wait: Duration,

    /// Prometheus Pushgateway to push the run's metrics to when it ends,
    /// success or failure, e.g. http://pushgateway:9091; a path prefix and
    /// basic-auth user info are kept, a query or fragment is refused
    /// [default: off].
    #[arg(long, env = "PUSHGATEWAY_URL", value_name = "URL")]
    pub pushgateway_url: Option<String>,
}

/// Timeouts and retries of every request to a cloud warehouse.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Longest one object-store request may take, body included.
    #[arg(long, env = "STORE_REQUEST_TIMEOUT", default_value = "30s", value_name = "DUR", value_parser = parse_duration)]
    pub store_request_timeout: Duration,

    /// Longest wait for a connection to the object store.
    #[arg(long, env = "STORE_CONNECT_TIMEOUT", default_value = "5s", value_name = "DUR", value_parser = parse_duration)]
    pub store_connect_timeout: Duration,

    /// Retries of a failed object-store request (5xx, timeouts, connection
    /// errors), with exponential backoff from 100 ms to 5 s.
    #[arg(long, env = "STORE_MAX_RETRIES", default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=20))]
    pub store_max_retries: u32,

    /// No retry starts later than this after a request's first attempt.
    #[arg(long, env = "STORE_RETRY_TIMEOUT", default_value = "60s", value_name = "DUR", value_parser = parse_duration)]
    pub store_retry_timeout: Duration,
}

impl StoreArgs {
    pub fn settings(&self) -> StoreSettings {
        StoreSettings {
            request_timeout: self.store_request_timeout,
            connect_timeout: self.store_connect_timeout,
            max_retries: self.store_max_retries as usize,
            retry_timeout: self.store_retry_timeout,
        }
    }
}

impl RunArgs {
    /// `log_format` decides the progress display: a bar only for people.
    pub fn validate(self, log_format: LogFormat) -> Result<RunConfig, UsageError> {
        let source: SourceUrl = self.source.parse().map_err(|e| UsageError::of("--source", &e))?;
        let warehouse: WarehouseUrl = self.warehouse.parse().map_err(|e| UsageError::of("--warehouse", &e))?;
        let days = match (self.date, self.from, self.to) {
            (_, Some(from), Some(to)) => {
                if from > to {
                    return Err(UsageError(format!("--from {from} is after --to {to}")));
                }
                from.iter_days().take_while(|d| *d <= to).collect()
            }
            (Some(date), _, _) => vec![date],
            _ => vec![Utc::now().date_naive() - chrono::Days::new(1)],
        };
        // A day still under way (or to come) would be published incomplete
        // or empty, and become the warehouse's latest day: the page's
        // default range and every report's "up to the latest day" with it.
        let now = Utc::now();
        if let Some(last) = days.last().filter(|d| **d >= now.date_naive()) {
            return Err(UsageError(format!(
                "the UTC day {last} has not ended yet (it is {} UTC): a day can be run once it has",
                now.format("%Y-%m-%d %H:%M")
            )));
        }
        if self.shard_count == 0 {
            return Err(UsageError("--shard-count must be at least 1".into()));
        }
        let index = self.shard_index.unwrap_or(0);
        if index >= self.shard_count {
            return Err(UsageError(format!(
                "--shard-index {index} is not below --shard-count {} (set --shard-count / SHARD_COUNT)",
                self.shard_count
            )));
        }
        if let Some(accounts) = &self.accounts
            && accounts.is_empty()
        {
            return Err(UsageError("--accounts needs at least one id".into()));
        }
        let pushgateway = match self.pushgateway_url.as_deref().filter(|u| !u.is_empty()) {
            None => None,
            Some(raw) => {
                let url = url::Url::parse(raw)
                    .ok()
                    // The group's path is appended to the URL's, where a
                    // query or a fragment would swallow it.
                    .filter(|u| {
                        matches!(u.scheme(), "http" | "https")
                            && u.host().is_some()
                            && u.query().is_none()
                            && u.fragment().is_none()
                    })
                    .ok_or_else(|| {
                        UsageError(format!(
                            "--pushgateway-url: expected http://host:port[/path] or https://host:port[/path], with no query or fragment, got {:?}",
                            crate::source::redact(raw)
                        ))
                    })?;
                Some(url)
            }
        };
        if self.lease_ttl < Duration::from_secs(1) {
            return Err(UsageError("--lease-ttl must be at least 1s".into()));
        }
        // A missing folder is made when a day first spills; a file there
        // would fail the run only then, after the day's whole extraction.
        if let Some(dir) = &self.spill_dir {
            folder_or_nothing("--spill-dir", dir)?;
        }
        let progress = if log_format == LogFormat::Text && std::io::stderr().is_terminal() {
            ProgressMode::Bar
        } else {
            ProgressMode::Log
        };
        Ok(RunConfig {
            source,
            warehouse,
            days,
            accounts: self.accounts,
            shard: ShardSpec {
                index,
                count: self.shard_count,
            },
            max_late_days: self.max_late_days,
            max_commit_lag: self.max_commit_lag,
            parallel: self.parallel as usize,
            dry_run: self.dry_run,
            spill_dir: self.spill_dir.unwrap_or_else(std::env::temp_dir),
            max_entries_in_memory: self.max_entries_in_memory as usize,
            rollup_batch_weight: self.rollup_batch_weight,
            source_settings: SourceSettings {
                connect_timeout: self.connect_timeout,
                statement_timeout: self.statement_timeout,
            },
            store: self.store.settings(),
            pushgateway,
            progress,
            lease: crate::job::lease::LeaseSettings {
                ttl: self.lease_ttl,
                wait: self.lease_wait,
            },
        })
    }
}

const DEMO_EXAMPLES: &str = "\
Examples:
  # The whole pipeline on a laptop, no server: ./demo/source.db and ./demo/warehouse
  account-usage demo

  # Bigger, elsewhere
  account-usage demo --dir /tmp/demo --accounts 8 --messages-per-day 20000

The demo replaces any earlier demo in --dir, and refuses a --dir holding a
source.db or a warehouse/ that no demo made.";

/// Flags of `account-usage demo`.
#[derive(Debug, Args)]
#[command(after_help = DEMO_EXAMPLES)]
pub struct DemoArgs {
    /// Folder for the demo's SQLite source (source.db) and warehouse (warehouse/).
    #[arg(long, env = "DEMO_DIR", default_value = "./demo", value_name = "DIR")]
    pub dir: std::path::PathBuf,

    /// Number of synthetic accounts.
    #[arg(long, env = "DEMO_ACCOUNTS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub accounts: u32,

    /// Number of days of data, ending yesterday (UTC); extended back when the
    /// closing report's whole months need more.
    #[arg(long, env = "DEMO_DAYS", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=3660))]
    pub days: u32,

    /// Messages per day, all accounts together.
    #[arg(long, env = "DEMO_MESSAGES_PER_DAY", default_value_t = 4_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub messages_per_day: u64,

    /// Days processed at once.
    #[arg(long, env = "DEMO_PARALLEL", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub parallel: u32,

    /// End by serving the demo's warehouse on --listen (loopback only) and
    /// printing the report page's URL with a token signed by a fresh secret.
    #[arg(long, env = "DEMO_SERVE")]
    pub serve: bool,

    /// Where `--serve` listens; a loopback address. Its own variable, not
    /// `serve`'s `LISTEN_ADDR`: a shell set up for `serve` still runs the
    /// demo.
    #[arg(
        long,
        env = "DEMO_LISTEN_ADDR",
        default_value = "127.0.0.1:8080",
        value_name = "ADDR",
        requires = "serve"
    )]
    pub listen: std::net::SocketAddr,
}

impl DemoArgs {
    /// The demo's configuration and, with `--serve`, where it listens:
    /// checked before the demo spends minutes seeding and running.
    pub fn validate(self) -> Result<(crate::demo::DemoConfig, Option<std::net::SocketAddr>), UsageError> {
        if self.serve && !self.listen.ip().is_loopback() {
            return Err(UsageError(format!(
                "--listen {} is not a loopback address; the demo serves locally only",
                self.listen
            )));
        }
        folder_or_nothing("--dir", &self.dir)?;
        let config = crate::demo::DemoConfig {
            dir: self.dir,
            accounts: self.accounts,
            days: self.days,
            messages_per_day: self.messages_per_day,
            parallel: self.parallel as usize,
        };
        Ok((config, self.serve.then_some(self.listen)))
    }
}

const SERVE_EXAMPLES: &str = "\
Examples:
  # Serve ./warehouse on 127.0.0.1:8080 with tokens signed by a secret file
  account-usage token --jwt-secret-file secret.txt --account 1    # prints a token
  account-usage serve --jwt-secret-file secret.txt
  curl -H \"Authorization: Bearer $TOKEN\" \\
      'http://127.0.0.1:8080/v1/accounts/1/report?from=2026-11-01&to=2026-11-30&interval=weekly'

  # In a cluster: the secret from a Secret, S3, the page allowed in the product's origin
  ACCOUNT_USAGE_JWT_SECRET=… account-usage serve --listen 0.0.0.0:8080 \\
      --warehouse s3://usage-warehouse/prod --cors-origin https://app.example.com

  # On a laptop, no tokens (loopback only)
  account-usage serve --warehouse ./demo/warehouse --no-auth

Endpoints: /v1/accounts/{account}/report, /v1/accounts/{account},
/v1/accounts/{account}/channels, /embed#token=…, /openapi.json, /livez,
/readyz, /metrics. SIGTERM drains in-flight requests (up to 10 s) and exits 0.";

/// Flags of `account-usage serve`.
#[derive(Debug, Args)]
#[command(after_help = SERVE_EXAMPLES)]
pub struct ServeArgs {
    /// What to serve (read only): a path, file:///…, s3://…, gs://…, az://….
    #[arg(long, env = "WAREHOUSE_URL", default_value = "./warehouse", value_name = "URL")]
    pub warehouse: String,

    /// Address and port to listen on, e.g. 0.0.0.0:8080.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub listen: std::net::SocketAddr,

    /// File holding the HS256 key that tokens are signed with (at least 32
    /// bytes; a trailing newline is ignored). ACCOUNT_USAGE_JWT_SECRET holds
    /// the key itself instead.
    #[arg(long, env = "JWT_SECRET_FILE", value_name = "PATH", conflicts_with = "no_auth")]
    pub jwt_secret_file: Option<std::path::PathBuf>,

    /// Accept requests without a token: for local use only, refused unless
    /// --listen is a loopback address.
    #[arg(long, env = "SERVE_NO_AUTH")]
    pub no_auth: bool,

    /// An origin allowed to call the API from a browser (repeatable), e.g.
    /// https://app.example.com. CORS_ORIGINS takes a comma-separated list.
    #[arg(
        long = "cors-origin",
        env = "CORS_ORIGINS",
        value_delimiter = ',',
        value_name = "URL"
    )]
    pub cors_origins: Vec<String>,

    /// How often to look for newly published runs.
    #[arg(long, env = "REFRESH_INTERVAL", default_value = "30s", value_name = "DUR", value_parser = parse_duration)]
    pub refresh_interval: Duration,

    /// A request that takes longer is answered 503 (problem+json).
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "10s", value_name = "DUR", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// Computed answers kept in memory (0 turns the cache off).
    #[arg(long, env = "RESULT_CACHE", default_value_t = 1024, value_name = "N")]
    pub result_cache: usize,

    /// MiB the kept answers may take, estimated from their rows (0 turns the
    /// cache off); an answer larger than this is computed each time, never
    /// kept. Hourly buckets over years, by channel, are millions of rows.
    #[arg(long, env = "RESULT_CACHE_MIB", default_value_t = 256, value_name = "MIB")]
    pub result_cache_mib: u64,

    /// MiB of decoded rollup parts kept in memory, e.g. 256 (0 turns it off).
    /// The first use in each snapshot version asks the store whether the
    /// part changed (a conditional GET with no body when it did not), so
    /// answers follow the warehouse at the next --refresh-interval.
    #[arg(long, env = "ROLLUP_CACHE_MIB", default_value_t = 128, value_name = "MIB")]
    pub rollup_cache_mib: u64,

    /// MiB of accounts' decoded base-grain rows kept in memory, e.g. 512 (0
    /// turns it off): answers in another zone or hourly count rows already
    /// decoded instead of reading their days again. Data files are never
    /// rewritten (a rerun writes new ones), so this needs no revalidation.
    #[arg(long, env = "GRAIN_CACHE_MIB", default_value_t = 256, value_name = "MIB")]
    pub grain_cache_mib: u64,

    #[command(flatten)]
    pub store: StoreArgs,
}

/// A folder flag's path is a folder or nothing yet (the command makes it):
/// a file there is refused before any work starts.
fn folder_or_nothing(flag: &str, path: &std::path::Path) -> Result<(), UsageError> {
    if path.exists() && !path.is_dir() {
        return Err(UsageError(format!(
            "{flag} {}: exists and is not a folder",
            path.display()
        )));
    }
    Ok(())
}

/// Where the JWT secret comes from: the file, else the variable.
pub const JWT_SECRET_ENV: &str = "ACCOUNT_USAGE_JWT_SECRET";

fn read_secret(file: Option<&std::path::Path>) -> Result<Option<crate::serve::auth::Secret>, UsageError> {
    let (raw, from) = match file {
        Some(path) => {
            let from = format!("--jwt-secret-file {}", path.display());
            // An I/O error names the failure, never the file's bytes.
            let raw = std::fs::read(path).map_err(|e| UsageError(format!("{from}: cannot read it: {e}")))?;
            (raw, from)
        }
        None => match std::env::var_os(JWT_SECRET_ENV) {
            Some(v) => (v.into_encoded_bytes(), JWT_SECRET_ENV.to_string()),
            None => return Ok(None),
        },
    };
    crate::serve::auth::Secret::new(&raw)
        .map(Some)
        .map_err(|e| UsageError(format!("{from}: {e}")))
}

impl ServeArgs {
    pub fn validate(self) -> Result<crate::serve::ServeConfig, UsageError> {
        let warehouse: WarehouseUrl = self.warehouse.parse().map_err(|e| UsageError::of("--warehouse", &e))?;
        let auth = match (read_secret(self.jwt_secret_file.as_deref())?, self.no_auth) {
            (Some(_), true) => {
                return Err(UsageError(format!(
                    "--no-auth and a JWT secret ({JWT_SECRET_ENV}) exclude each other"
                )));
            }
            (Some(secret), false) => crate::serve::Auth::Jwt(Box::new(crate::serve::auth::Verifier::new(&secret))),
            (None, true) if self.listen.ip().is_loopback() => crate::serve::Auth::None,
            (None, true) => {
                return Err(UsageError(format!(
                    "--no-auth is for local use only: --listen {} is not a loopback address",
                    self.listen
                )));
            }
            (None, false) => {
                return Err(UsageError(format!(
                    "serve needs --jwt-secret-file or {JWT_SECRET_ENV} to check tokens (or --no-auth on a loopback address)"
                )));
            }
        };
        let cors_origins = self
            .cors_origins
            .iter()
            .filter(|o| !o.is_empty())
            .map(|o| {
                let url = url::Url::parse(o).map_err(|_| {
                    UsageError(format!(
                        "--cors-origin {o:?}: expected an origin such as https://app.example.com"
                    ))
                })?;
                let origin = url.origin().ascii_serialization();
                if !matches!(url.scheme(), "http" | "https") || origin == "null" {
                    return Err(UsageError(format!("--cors-origin {o:?}: expected an http(s) origin")));
                }
                axum::http::HeaderValue::from_str(&origin)
                    .map_err(|_| UsageError(format!("--cors-origin {o:?}: not a valid origin")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(crate::serve::ServeConfig {
            warehouse,
            store: self.store.settings(),
            listen: self.listen,
            auth,
            cors_origins,
            refresh_interval: self.refresh_interval,
            request_timeout: self.request_timeout,
            result_cache: self.result_cache,
            result_cache_mib: self.result_cache_mib,
            rollup_cache_mib: self.rollup_cache_mib,
            grain_cache_mib: self.grain_cache_mib,
        })
    }
}

const TOKEN_EXAMPLES: &str = "\
Examples:
  # A token for account 42, valid 15 minutes (the default)
  account-usage token --jwt-secret-file secret.txt --account 42

  # An internal service token for every account, valid a day
  ACCOUNT_USAGE_JWT_SECRET=… account-usage token --account '*' --ttl 24h

  # Open the report page for account 42
  echo \"http://127.0.0.1:8080/embed#token=$(account-usage token --jwt-secret-file secret.txt --account 42)\"";

/// Flags of `account-usage token`.
#[derive(Debug, Args)]
#[command(after_help = TOKEN_EXAMPLES)]
pub struct TokenArgs {
    /// The account the token grants: an id, or * for every account (an
    /// internal service token).
    #[arg(long, env = "TOKEN_ACCOUNT", value_name = "ID|*")]
    pub account: String,

    /// How long the token is valid.
    #[arg(long, env = "TOKEN_TTL", default_value = "15m", value_name = "DUR", value_parser = parse_duration)]
    pub ttl: Duration,

    /// File holding the HS256 key (as for `serve`); ACCOUNT_USAGE_JWT_SECRET
    /// holds the key itself instead.
    #[arg(long, env = "JWT_SECRET_FILE", value_name = "PATH")]
    pub jwt_secret_file: Option<std::path::PathBuf>,
}

impl TokenArgs {
    pub fn validate(self) -> Result<(crate::serve::auth::Secret, crate::serve::auth::Grant, Duration), UsageError> {
        let grant = match self.account.as_str() {
            "*" => crate::serve::auth::Grant::All,
            id => crate::serve::auth::Grant::Account(
                id.parse()
                    .map_err(|_| UsageError(format!("--account: expected an account id or *, got {id:?}")))?,
            ),
        };
        let secret = read_secret(self.jwt_secret_file.as_deref())?.ok_or_else(|| {
            UsageError(format!(
                "token needs --jwt-secret-file or {JWT_SECRET_ENV} to sign with"
            ))
        })?;
        Ok((secret, grant, self.ttl))
    }
}

const REPORT_EXAMPLES: &str = "\
Examples:
  # March, daily, in the account's own time zone, as a table
  account-usage report --account 3 --from 2026-03-01 --to 2026-03-31

  # A week, hourly, in Kathmandu, grouped by channel, as JSON
  account-usage report --account 3 --from 2026-03-02 --to 2026-03-08 \\
      --time-zone Asia/Kathmandu --interval hourly --group-by channel --format json

  # Two channels only, two metrics, CSV
  account-usage report --account 3 --from 2026-01-01 --to 2026-03-31 --interval monthly \\
      --channel 12 --channel 14 --metric unique_monthly_contacts --metric active_agents --format csv

Unique monthly contacts are always monthly, over the whole months the range
touches. Distinct totals count distinct contacts/agents over the range; they
are not sums of the bucket values.

A query in the account's own time zone, daily or longer, over whole buckets
(e.g. whole months for --interval monthly) is answered from the materialized
rollups; any other from the base grain. The numbers are the same either way;
JSON says which in \"answered_from\", and --base-grain forces the base grain.";

/// Flags of `account-usage report`.
#[derive(Debug, Args)]
#[command(after_help = REPORT_EXAMPLES)]
pub struct ReportArgs {
    /// Where the job wrote: a path, file:///…, s3://…, gs://…, az://….
    #[arg(long, env = "WAREHOUSE_URL", default_value = "./warehouse", value_name = "URL")]
    pub warehouse: String,

    /// The account to report on.
    #[arg(long, env = "REPORT_ACCOUNT", value_name = "ID")]
    pub account: i64,

    /// First local date of the range (inclusive).
    #[arg(long, env = "REPORT_FROM", value_name = "YYYY-MM-DD", value_parser = parse_date)]
    pub from: NaiveDate,

    /// Last local date of the range (inclusive).
    #[arg(long, env = "REPORT_TO", value_name = "YYYY-MM-DD", value_parser = parse_date)]
    pub to: NaiveDate,

    /// IANA time zone of the dates and buckets [default: the account's time zone].
    #[arg(long, env = "REPORT_TIME_ZONE", value_name = "TZ")]
    pub time_zone: Option<String>,

    /// Bucket size.
    #[arg(long, env = "REPORT_INTERVAL", value_enum, default_value_t = crate::calendar::Interval::Daily)]
    pub interval: crate::calendar::Interval,

    /// What each row's group is.
    #[arg(long, env = "REPORT_GROUP_BY", value_enum, default_value_t = crate::report::engine::GroupBy::Platform)]
    pub group_by: crate::report::engine::GroupBy,

    /// Only this channel (repeatable); filters every metric [default: all channels].
    #[arg(long = "channel", env = "REPORT_CHANNELS", value_delimiter = ',', value_name = "ID")]
    pub channels: Vec<i64>,

    /// Only this metric (repeatable) [default: all five].
    #[arg(
        long = "metric",
        env = "REPORT_METRICS",
        value_delimiter = ',',
        value_enum,
        value_name = "NAME"
    )]
    pub metrics: Vec<crate::metric::Metric>,

    /// Output format.
    #[arg(long, env = "REPORT_FORMAT", value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,

    /// Answer from the base grain even where materialized rollups match the
    /// query (the answer is the same; this checks it, or skips rollups
    /// suspected stale).
    #[arg(long, env = "REPORT_BASE_GRAIN")]
    pub base_grain: bool,

    /// Compute the report this many times in one process and print each
    /// run's time and the median to stderr (for benchmarks); the report is
    /// printed once.
    #[arg(long, env = "REPORT_REPEAT", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000), value_name = "N")]
    pub repeat: u32,

    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// One block per metric, for people.
    Table,
    /// The JSON document of the report API.
    Json,
    /// metric,bucket_start,group,value (totals have an empty bucket_start).
    Csv,
}

impl ReportArgs {
    pub fn validate(self) -> Result<(crate::report::ReportRequest, ReportFormat, u32), UsageError> {
        let warehouse: WarehouseUrl = self.warehouse.parse().map_err(|e| UsageError::of("--warehouse", &e))?;
        if self.from > self.to {
            return Err(UsageError(format!("--from {} is after --to {}", self.from, self.to)));
        }
        if let Some(tz) = &self.time_zone {
            crate::report::parse_time_zone(tz).map_err(|e| UsageError(e.to_string()))?;
        }
        Ok((
            crate::report::ReportRequest {
                warehouse,
                store: self.store.settings(),
                question: crate::report::ReportQuestion {
                    account: self.account,
                    from: self.from,
                    to: self.to,
                    time_zone: self.time_zone,
                    interval: self.interval,
                    group_by: self.group_by,
                    channels: self.channels,
                    metrics: self.metrics,
                    base_grain_only: self.base_grain,
                },
            },
            self.format,
            self.repeat,
        ))
    }
}

/// Parses a duration such as `500ms`, `10s`, `30m` or `2h` (for clap).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("expected a duration such as 500ms, 10s, 30m or 2h, got {s:?}");
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = s.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
        "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(bad)?),
        _ => return Err(bad()),
    };
    if d.is_zero() {
        return Err(format!("a duration must be more than zero, got {s:?}"));
    }
    // No setting means more than a year, and a huge one overflows the
    // clock arithmetic it feeds (a deadline, a token's expiry).
    if d > MAX_DURATION {
        return Err(format!("a duration must be at most 8784h (366 days), got {s:?}"));
    }
    Ok(d)
}

/// The longest duration any flag takes.
const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// Like [`parse_duration`], and `0s` (do not wait) too.
pub fn parse_duration_or_zero(s: &str) -> Result<Duration, String> {
    match s {
        "0" | "0s" | "0ms" => Ok(Duration::ZERO),
        _ => parse_duration(s),
    }
}

pub use crate::calendar::parse_date;

impl SeedArgs {
    pub fn validate(self) -> Result<SeedConfig, UsageError> {
        let source: SourceUrl = self.source.parse().map_err(|e| UsageError::of("--source", &e))?;
        let start = self
            .start
            .unwrap_or_else(|| Utc::now().date_naive() - chrono::Days::new(self.days.into()));
        // A day past 9999-12-31 could be seeded but never run: dates are
        // typed as YYYY-MM-DD.
        let last = NaiveDate::from_ymd_opt(9999, 12, 31).expect("valid date");
        if start
            .checked_add_days(chrono::Days::new(u64::from(self.days) - 1))
            .is_none_or(|end| end > last)
        {
            return Err(UsageError(format!(
                "--start {start} plus --days {} ends past {last}, the last day a run takes",
                self.days
            )));
        }
        Ok(SeedConfig {
            source,
            params: SeedParams {
                accounts: self.accounts,
                days: self.days,
                start,
                messages_per_day: self.messages_per_day,
                seed: self.seed,
            },
            truncate: self.truncate,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_flag_has_help_text() {
        fn walk(cmd: &clap::Command) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                assert!(arg.get_help().is_some(), "--{id} of `{}` has no help", cmd.get_name());
            }
            for sub in cmd.get_subcommands() {
                walk(sub);
            }
        }
        walk(&Cli::command());
    }

    /// Every flag can come from the environment (a CronJob or a Deployment
    /// sets env, not argv), but for one-off actions that make no sense there.
    #[test]
    fn every_flag_has_an_env_fallback() {
        fn walk(cmd: &clap::Command, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") || arg.is_positional() || arg.get_env().is_some() {
                    continue;
                }
                missing.push(format!("{} --{id}", cmd.get_name()));
            }
            for sub in cmd.get_subcommands() {
                walk(sub, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), &mut missing);
        assert_eq!(missing, Vec::<String>::new());
    }

    /// The README names every flag's environment variable, so an operator
    /// reading it (not `--help`) finds each.
    #[test]
    fn the_readme_names_every_env_variable() {
        fn walk(cmd: &clap::Command, missing: &mut Vec<String>) {
            let readme = include_str!("../README.md");
            for arg in cmd.get_arguments() {
                if let Some(env) = arg.get_env().and_then(|e| e.to_str())
                    && !readme.contains(&format!("`{env}`"))
                {
                    missing.push(format!("{} --{}: {env}", cmd.get_name(), arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), &mut missing);
        assert_eq!(missing, Vec::<String>::new());
    }

    #[test]
    fn seed_rejects_an_unknown_scheme() {
        let cli = Cli::try_parse_from(["account-usage", "seed", "--source", "mysql://x/y"]).unwrap();
        let Command::Seed(args) = cli.command else {
            panic!("parsed as seed")
        };
        assert!(args.validate().unwrap_err().0.contains("unsupported"));
    }

    #[test]
    fn seed_ends_on_a_day_a_run_can_name() {
        let seed = |start: &str, days: &str| {
            let argv = [
                "account-usage",
                "seed",
                "--source",
                "sqlite://x.db",
                "--start",
                start,
                "--days",
                days,
            ];
            let Command::Seed(args) = Cli::try_parse_from(argv).unwrap().command else {
                panic!("parsed as seed")
            };
            args.validate()
        };
        assert!(seed("9999-12-31", "1").is_ok());
        assert!(seed("9999-12-30", "2").is_ok());
        let err = seed("9999-12-31", "2").unwrap_err().0;
        assert!(err.contains("ends past 9999-12-31"), "{err}");
    }

    fn run_config(args: &[&str]) -> Result<RunConfig, UsageError> {
        run_config_from("sqlite://x.db", args)
    }

    fn run_config_from(source: &str, args: &[&str]) -> Result<RunConfig, UsageError> {
        let mut argv = vec!["account-usage", "run", "--source", source];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).map_err(|e| UsageError(e.to_string()))?;
        let Command::Run(run) = cli.command else {
            panic!("parsed as run")
        };
        run.validate(LogFormat::Json)
    }

    #[test]
    fn run_validates_days_shards_and_urls() {
        let c = run_config(&["--from", "2026-03-30", "--to", "2026-04-02"]).unwrap();
        assert_eq!(c.days.len(), 4);
        assert_eq!(c.days[3], NaiveDate::from_ymd_opt(2026, 4, 2).unwrap());
        assert!(
            run_config(&["--from", "2026-03-02", "--to", "2026-03-01"])
                .unwrap_err()
                .0
                .contains("after")
        );
        assert!(run_config(&["--shard-index", "3", "--shard-count", "3"]).is_err());
        assert!(
            run_config(&["--warehouse", "ftp://x/y"])
                .unwrap_err()
                .0
                .contains("unsupported")
        );
        assert!(run_config(&["--date", "2026-03-01", "--from", "2026-03-01", "--to", "2026-03-02"]).is_err());
        let c = run_config(&["--date", "2026-03-01", "--accounts", "3,1"]).unwrap();
        assert_eq!(c.accounts, Some(vec![3, 1]));
        assert_eq!(c.shard, ShardSpec::WHOLE);
        assert_eq!(c.source_settings, SourceSettings::default());
        assert_eq!(c.store, StoreSettings::default());
        assert_eq!(c.progress, ProgressMode::Log);
        assert!(
            run_config(&["--pushgateway-url", "gw:9091"])
                .unwrap_err()
                .0
                .contains("\"gw:9091\"")
        );
        for secret in [
            "u:pw@gw:9091",
            "http://u:pw@gw:99999/",
            "ftp://u:pw@gw/",
            "http://u:pw@gw:9091/?x=1",
            "http://u:pw@gw:9091/#x",
        ] {
            let err = run_config(&["--pushgateway-url", secret]).unwrap_err().0;
            assert!(
                err.starts_with("--pushgateway-url: expected") && !err.contains("pw"),
                "{err}"
            );
        }
        let c = run_config(&["--pushgateway-url", "http://gw:9091", "--statement-timeout", "2s"]).unwrap();
        assert_eq!(c.pushgateway.unwrap().as_str(), "http://gw:9091/");
        assert_eq!(c.source_settings.statement_timeout, Duration::from_secs(2));
        let c = run_config(&["--pushgateway-url", "https://u:pw@gw/prefix/"]).unwrap();
        assert_eq!(c.pushgateway.unwrap().as_str(), "https://u:pw@gw/prefix/");
        assert_eq!(
            run_config(&["--spill-dir", "Cargo.toml"]).unwrap_err().0,
            "--spill-dir Cargo.toml: exists and is not a folder"
        );
        assert!(run_config(&["--spill-dir", "src"]).is_ok());
        assert!(run_config(&["--spill-dir", "target/not-made-yet"]).is_ok());
        // A lease renewed every third of a TTL under a second would race its
        // own store requests.
        assert!(
            run_config(&["--lease-ttl", "999ms"])
                .unwrap_err()
                .0
                .contains("at least 1s")
        );
        assert_eq!(
            run_config(&["--lease-ttl", "1s"]).unwrap().lease.ttl,
            Duration::from_secs(1)
        );
    }

    /// A bad URL's error says why (its causes), and never its password.
    #[test]
    fn a_bad_source_url_says_why_without_its_password() {
        for (url, why) in [
            ("postgres://u:pa?ss@h/db", "invalid port number"),
            ("postgres://u:secret@h:99999/db", "invalid port number"),
            ("postgres://u:secret@h/db?sslmode=bogus", "unknown value \"bogus\""),
        ] {
            let err = run_config_from(url, &[]).unwrap_err().0;
            assert!(err.starts_with("--source: invalid source URL"), "{err}");
            assert!(err.contains(why), "{url}: {err}");
            assert!(!err.contains("pa?ss") && !err.contains("secret"), "{url}: {err}");
        }
    }

    #[test]
    fn the_demo_refuses_to_listen_off_loopback_or_a_file_as_its_folder_before_it_runs() {
        let demo_in = |dir: &str, listen: &str| {
            let cli =
                Cli::try_parse_from(["account-usage", "demo", "--dir", dir, "--serve", "--listen", listen]).unwrap();
            let Command::Demo(demo) = cli.command else {
                panic!("parsed as demo")
            };
            demo.validate()
        };
        let demo = |listen: &str| demo_in("./demo", listen);
        assert_eq!(
            demo_in("Cargo.toml", "127.0.0.1:8080").unwrap_err().0,
            "--dir Cargo.toml: exists and is not a folder"
        );
        assert!(demo("0.0.0.0:8080").unwrap_err().0.contains("not a loopback address"));
        assert!(demo("[::]:8080").is_err());
        for loopback in ["127.0.0.1:8080", "[::1]:8080"] {
            assert_eq!(demo(loopback).unwrap().1, Some(loopback.parse().unwrap()));
        }
    }

    fn serve_config(args: &[&str]) -> Result<crate::serve::ServeConfig, UsageError> {
        let mut argv = vec!["account-usage", "serve", "--warehouse", "/tmp/wh", "--no-auth"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).map_err(|e| UsageError(e.to_string()))?;
        let Command::Serve(serve) = cli.command else {
            panic!("parsed as serve")
        };
        serve.validate()
    }

    /// A browser sends an origin as scheme, host and port: a CORS origin is
    /// kept in that form, and one no browser would send is refused.
    #[test]
    fn serve_keeps_cors_origins_as_browsers_send_them() {
        let c = serve_config(&["--cors-origin", "https://app.example.com/reports?x=1"]).unwrap();
        assert_eq!(c.cors_origins, vec!["https://app.example.com"]);
        for bad in [
            "ftp://app.example.com",
            "ws://app.example.com",
            "app.example.com",
            "null",
        ] {
            let err = serve_config(&["--cors-origin", bad]).unwrap_err().0;
            assert!(err.starts_with("--cors-origin"), "{bad}: {err}");
        }
    }

    #[test]
    fn durations_parse_with_their_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        for bad in ["", "10", "s", "1.5s", "-1s", "0s", "10d", "99999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_duration("8784h"), Ok(MAX_DURATION));
        for too_long in ["8785h", "5124095576030431h", "31622401s"] {
            assert!(
                parse_duration(too_long).unwrap_err().contains("at most 8784h"),
                "{too_long}"
            );
        }
    }
}
