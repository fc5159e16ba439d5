//! Extract: read one consistent snapshot of the operational database.
//!
//! What this module owns, and what must always hold:
//! - every query is a file in `sql/extract/<backend>/`;
//! - on PostgreSQL a run reads one `REPEATABLE READ READ ONLY` snapshot:
//!   [`Snapshot::open`] exports it and every day reader imports it, so
//!   parallel days see the same data;
//! - rows are streamed into a callback, never collected: memory does not grow
//!   with the size of a day;
//! - values are passed on raw ([`RawMessage`], [`RawEvent`]): judging them is
//!   the aggregate stage's job.

mod postgres;
mod sqlite;

use chrono::NaiveDate;

use crate::aggregate::{AccountDim, ChannelDim, Dimensions, RawEvent, RawHistory, RawMessage};
use crate::model::UnixMicros;
use crate::source::SourceDb;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("extract query {query} failed: {source}")]
    Query { query: &'static str, source: sqlx::Error },
    #[error("malformed COPY data from {query}: {reason}")]
    Copy { query: &'static str, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn qerr(query: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
    move |source| Error::Query { query, source }
}

/// Which accounts' rows a run reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountFilter {
    /// This run's accounts; `None` means every row.
    pub accounts: Option<Vec<i64>>,
    /// Every known account, set on the one shard that also takes rows whose
    /// account is NULL or unknown, so those are rejected once, never dropped.
    pub strays_outside: Option<Vec<i64>>,
}

/// A UTC day as `[start, end)` in Unix microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRange {
    pub day: NaiveDate,
    pub start: UnixMicros,
    pub end: UnixMicros,
}

impl DayRange {
    pub fn new(day: NaiveDate) -> Self {
        let start = crate::model::utc_midnight(day);
        DayRange {
            day,
            start,
            end: start + crate::model::MICROS_PER_DAY,
        }
    }
}

/// Rows that arrived too late to reprocess their day, per (table, account).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLate {
    pub table: String,
    pub account_id: Option<i64>,
    pub rows: i64,
    pub example_id: Option<i64>,
}

/// The run's snapshot of the source.
pub enum Snapshot {
    Postgres(postgres::PgSnapshot),
    Sqlite(sqlite::SqliteSnapshot),
}

impl Snapshot {
    pub async fn open(db: &SourceDb) -> Result<Self> {
        Ok(match db {
            SourceDb::Postgres { pool, .. } => Snapshot::Postgres(postgres::PgSnapshot::open(pool).await?),
            SourceDb::Sqlite { pool, .. } => Snapshot::Sqlite(sqlite::SqliteSnapshot::open(pool).await?),
        })
    }

    pub async fn dimensions(&mut self) -> Result<Dimensions> {
        let (accounts, channels) = match self {
            Snapshot::Postgres(s) => s.dimensions().await?,
            Snapshot::Sqlite(s) => s.dimensions().await?,
        };
        Ok(Dimensions {
            accounts: accounts.into_iter().map(|a: AccountDim| (a.id, a)).collect(),
            channels: channels.into_iter().map(|c: ChannelDim| (c.id, c)).collect(),
        })
    }

    /// The latest `created_at` in the snapshot.
    pub async fn watermark(&mut self) -> Result<Option<UnixMicros>> {
        match self {
            Snapshot::Postgres(s) => s.watermark().await,
            Snapshot::Sqlite(s) => s.watermark().await,
        }
    }

    /// UTC days that received rows with `previous < created_at <= current`.
    pub async fn late_days(&mut self, previous: UnixMicros, current: UnixMicros) -> Result<Vec<NaiveDate>> {
        match self {
            Snapshot::Postgres(s) => s.late_days(previous, current).await,
            Snapshot::Sqlite(s) => s.late_days(previous, current).await,
        }
    }

    /// A reader for one day's rows, inside this snapshot.
    pub async fn day_reader(&self) -> Result<DayReader> {
        Ok(match self {
            Snapshot::Postgres(s) => DayReader::Postgres(s.reader().await?),
            Snapshot::Sqlite(s) => DayReader::Sqlite(s.reader().await?),
        })
    }

    pub async fn close(self) {
        match self {
            Snapshot::Postgres(s) => s.close().await,
            Snapshot::Sqlite(s) => s.close().await,
        }
    }
}

/// Reads the rows of one day; one per concurrently processed day.
pub enum DayReader {
    Postgres(postgres::PgDayReader),
    Sqlite(sqlite::SqliteDayReader),
}

impl DayReader {
    pub async fn messages(
        &mut self,
        day: DayRange,
        filter: &AccountFilter,
        on_row: impl FnMut(&RawMessage),
    ) -> Result<()> {
        match self {
            DayReader::Postgres(r) => r.messages(day, filter, on_row).await,
            DayReader::Sqlite(r) => r.messages(day, filter, on_row).await,
        }
    }

    pub async fn events(&mut self, day: DayRange, filter: &AccountFilter, on_row: impl FnMut(&RawEvent)) -> Result<()> {
        match self {
            DayReader::Postgres(r) => r.events(day, filter, on_row).await,
            DayReader::Sqlite(r) => r.events(day, filter, on_row).await,
        }
    }

    /// For conversations resolved in the day: what happened before it.
    pub async fn resolve_history(
        &mut self,
        day: DayRange,
        filter: &AccountFilter,
        on_row: impl FnMut(&RawHistory),
    ) -> Result<()> {
        match self {
            DayReader::Postgres(r) => r.resolve_history(day, filter, on_row).await,
            DayReader::Sqlite(r) => r.resolve_history(day, filter, on_row).await,
        }
    }

    /// Rows that arrived during `arrival` but belong before `horizon`.
    pub async fn too_late(
        &mut self,
        arrival: DayRange,
        horizon: UnixMicros,
        filter: &AccountFilter,
    ) -> Result<Vec<TooLate>> {
        match self {
            DayReader::Postgres(r) => r.too_late(arrival, horizon, filter).await,
            DayReader::Sqlite(r) => r.too_late(arrival, horizon, filter).await,
        }
    }

    pub async fn finish(self) -> Result<()> {
        match self {
            DayReader::Postgres(r) => r.finish().await,
            DayReader::Sqlite(r) => r.finish().await,
        }
    }
}
