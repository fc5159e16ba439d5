//! `account-usage seed`: realistic synthetic operational data.
//!
//! The generator ([`generate`]) is pure and deterministic. It runs on a
//! blocking thread and hands each hour's rows through a bounded channel to the
//! sink of the source kind: binary `COPY` on PostgreSQL ([`postgres`]), one
//! transaction of prepared inserts on SQLite ([`sqlite`]). The bound keeps
//! memory flat however many days are seeded.
//!
//! Seeding refuses a source that already holds rows (ids would collide)
//! unless asked to truncate it first.

pub mod generate;
mod postgres;
pub mod rng;
mod sqlite;

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

pub use generate::{Batch, RowCounts, SeedParams};

use crate::source::{self, SourceDb, SourceUrl, TABLES};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Source(#[from] source::Error),
    #[error("{url} already holds data; seed into an empty database, or pass --truncate to empty it first")]
    NotEmpty { url: String },
    #[error("loading {table} into {url} failed")]
    Load {
        table: &'static str,
        url: String,
        source: sqlx::Error,
    },
    #[error("the data generator stopped unexpectedly: {0}")]
    Generator(String),
}

impl Error {
    /// Whether the user must fix the input (exit code 2): a bad source URL,
    /// or a source that holds data without `--truncate`; a retry cannot help.
    pub fn is_bad_input(&self) -> bool {
        match self {
            Error::Source(s) => s.is_bad_input(),
            Error::NotEmpty { .. } => true,
            Error::Load { .. } | Error::Generator(_) => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Validated configuration of one `seed` command.
#[derive(Debug, Clone)]
pub struct SeedConfig {
    pub source: SourceUrl,
    pub params: SeedParams,
    pub truncate: bool,
}

/// What a seed wrote.
#[derive(Debug, Clone)]
pub struct SeedReport {
    pub rows: RowCounts,
    pub elapsed: Duration,
}

impl SeedReport {
    /// One line per table, then the message rate.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for (table, count) in TABLES.iter().zip(self.rows.0) {
            out.push_str(&format!("{table:>20} {count:>12}\n"));
        }
        let messages = self.rows.0[5] as f64;
        out.push_str(&format!(
            "seeded in {:.2}s ({:.0} messages/s)\n",
            self.elapsed.as_secs_f64(),
            messages / self.elapsed.as_secs_f64().max(1e-9)
        ));
        out
    }
}

pub async fn seed(config: &SeedConfig) -> Result<SeedReport> {
    let started = Instant::now();
    let db = SourceDb::connect(
        &config.source,
        TABLES.len() as u32 + 1,
        crate::source::Access::ReadWrite,
        crate::source::SourceSettings::default(),
    )
    .await?;
    db.ensure_schema().await?;
    if config.truncate {
        let sql = match db {
            SourceDb::Postgres { .. } => include_str!("../../sql/seed/postgres_truncate.sql"),
            SourceDb::Sqlite { .. } => include_str!("../../sql/seed/sqlite_truncate.sql"),
        };
        db.execute_script("emptying the reference tables", sql).await?;
    } else if db
        .scalar_i64(
            "checking for existing rows",
            include_str!("../../sql/seed/has_rows.sql"),
        )
        .await?
        != 0
    {
        return Err(Error::NotEmpty {
            url: db.url().to_string(),
        });
    }
    tracing::info!(
        source = %db.url(),
        accounts = config.params.accounts,
        days = config.params.days,
        start = %config.params.start,
        messages_per_day = config.params.messages_per_day,
        seed = config.params.seed,
        "Seeding."
    );
    let rows = match &db {
        SourceDb::Postgres { pool, url, .. } => postgres::load(pool, url, &config.params).await?,
        SourceDb::Sqlite { pool, url, .. } => sqlite::load(pool, url, &config.params).await?,
    };
    db.close().await;
    let report = SeedReport {
        rows,
        elapsed: started.elapsed(),
    };
    tracing::info!(
        messages = rows.0[5],
        elapsed_s = report.elapsed.as_secs_f64(),
        "Seeded."
    );
    Ok(report)
}

/// Runs the generator on a blocking thread, mapping each batch with `map`
/// (encoding happens there, off the async workers), into a bounded channel.
fn spawn_generator<T: Send + 'static>(
    params: SeedParams,
    map: impl Fn(Batch) -> T + Send + 'static,
) -> (mpsc::Receiver<T>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(8);
    let handle = tokio::task::spawn_blocking(move || {
        // A send fails only when the sink gave up; its error is reported there.
        let _ = generate::generate(&params, |batch| tx.blocking_send(map(batch)));
    });
    (rx, handle)
}

async fn join_generator(handle: tokio::task::JoinHandle<()>) -> Result<()> {
    handle.await.map_err(|e| Error::Generator(e.to_string()))
}
