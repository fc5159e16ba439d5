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
//!   the aggregate stage's job. The dimensions are the exception: they are
//!   keyed by id, so a source without constraints gets one row per id, the
//!   same on every run, and a warning for every id kept once and every row
//!   without one;
//! - every query is bounded by the source's statement timeout on the client
//!   too, so a server that stops answering (a frozen host, a cut network)
//!   fails the run with [`Error::Timeout`] instead of hanging it.

mod postgres;
mod sqlite;

use std::future::Future;
use std::time::Duration;

use chrono::NaiveDate;

use crate::aggregate::{
    AccountDim, ChannelDim, Dimensions, IdBuildHasher, RawEvent, RawHistory, RawMessage, RejectReason, SourceTable,
};
use crate::model::UnixMicros;
use crate::source::SourceDb;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("extract query {query} failed")]
    Query { query: &'static str, source: sqlx::Error },
    #[error("malformed COPY data from {query}: {reason}")]
    Copy { query: &'static str, reason: String },
    #[error("extract query {query} got no answer within {}s (--statement-timeout)", .after.as_secs_f64())]
    Timeout { query: &'static str, after: Duration },
    #[error("extract query {query} got no connection to the source within --connect-timeout")]
    NoConnection { query: &'static str },
    /// A query adapted by an operator that answers what the job cannot read.
    #[error("extract query {query} returned {what}")]
    Answer { query: &'static str, what: String },
}

/// The dimension tables as read, before [`DimensionRows::into_dimensions`].
pub(crate) struct DimensionRows {
    accounts: Vec<AccountDim>,
    channels: Vec<ChannelDim>,
    /// Rows without an id (NULL, or not an integer).
    unread_accounts: usize,
    /// Rows without an id or an account.
    unread_channels: usize,
}

impl DimensionRows {
    /// One row per id, and a warning for what a source without constraints
    /// can hold: those rows decide which messages are rejected, so none of
    /// them is passed over in silence, and a duplicated id resolves the same
    /// way on every run, whatever order the database returns rows in.
    fn into_dimensions(self) -> Dimensions {
        let (accounts, twice) = one_per_id(self.accounts, |a| a.id, |a, b| account_rank(a).cmp(&account_rank(b)));
        if !twice.is_empty() {
            tracing::warn!(
                accounts = twice.len(),
                first = ?&twice[..twice.len().min(5)],
                "Accounts whose id is on more than one row of the source: the run keeps the least row of each (by name, time_zone, created_at)."
            );
        }
        let (channels, twice) = one_per_id(self.channels, |c| c.id, |a, b| channel_rank(a).cmp(&channel_rank(b)));
        if !twice.is_empty() {
            tracing::warn!(
                channels = twice.len(),
                first = ?&twice[..twice.len().min(5)],
                "Channels whose id is on more than one row of the source: the run keeps the least row of each (by account_id, connected_at, disconnected_at, environment, platform, name), and rejects messages on it of another account as channel_account_mismatch."
            );
        }
        if self.unread_accounts > 0 {
            tracing::warn!(
                rows = self.unread_accounts,
                "Account rows without an integer id are not read: messages of such an account are rejected as unknown_account."
            );
        }
        if self.unread_channels > 0 {
            tracing::warn!(
                rows = self.unread_channels,
                "Channel rows without an integer id or account_id are not read: messages on such a channel are rejected as unknown_channel."
            );
        }
        Dimensions { accounts, channels }
    }
}

fn account_rank(a: &AccountDim) -> (i64, Option<&str>, Option<&str>, Option<UnixMicros>) {
    (a.id, a.name.as_deref(), a.time_zone.as_deref(), a.created_at)
}

type ChannelRank<'a> = (
    i64,
    i64,
    Option<UnixMicros>,
    Option<UnixMicros>,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
);

fn channel_rank(c: &ChannelDim) -> ChannelRank<'_> {
    (
        c.id,
        c.account_id,
        c.connected_at,
        c.disconnected_at,
        c.environment.as_deref(),
        c.platform.as_deref(),
        c.name.as_deref(),
    )
}

/// The least row of each id by `order` (which orders by id first), and the
/// ids on more than one row.
fn one_per_id<T>(
    mut rows: Vec<T>,
    id: impl Fn(&T) -> i64,
    order: impl Fn(&T, &T) -> std::cmp::Ordering,
) -> (std::collections::HashMap<i64, T, IdBuildHasher>, Vec<i64>) {
    rows.sort_by(order);
    let mut twice = Vec::new();
    let mut kept = std::collections::HashMap::with_capacity_and_hasher(rows.len(), IdBuildHasher::default());
    for row in rows {
        let key = id(&row);
        match kept.entry(key) {
            std::collections::hash_map::Entry::Occupied(_) if twice.last() != Some(&key) => twice.push(key),
            std::collections::hash_map::Entry::Occupied(_) => {}
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(row);
            }
        }
    }
    (kept, twice)
}

/// Runs one query's future within the statement timeout.
async fn bounded<T>(limit: Duration, query: &'static str, work: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(limit, work)
        .await
        .map_err(|_| Error::Timeout { query, after: limit })?
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn qerr(query: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
    move |source| match source {
        // The pool's own words ("pool timed out while waiting for an open
        // connection") do not say which setting bounds it.
        sqlx::Error::PoolTimedOut => Error::NoConnection { query },
        source => Error::Query { query, source },
    }
}

/// What a snapshot says about arrivals, for the late-data watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrivals {
    /// The latest `created_at` that is not after `now` (None when there is
    /// none): a row stamped in the future says nothing about what arrived.
    pub latest: Option<UnixMicros>,
    /// The source's clock when the snapshot was taken (SQLite has none: the
    /// job's clock).
    pub now: UnixMicros,
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

/// Rows counted on the day they arrived because no day of their own can
/// count them (too late to reprocess, or without an instant), per (table,
/// reason, account).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArrivalReject {
    pub table: SourceTable,
    pub reason: RejectReason,
    pub account_id: Option<i64>,
    pub rows: i64,
    pub example_id: Option<i64>,
}

impl ArrivalReject {
    /// The query's row, its table and reason named as the query writes them.
    fn new(table: &str, reason: &str, account_id: Option<i64>, rows: i64, example_id: Option<i64>) -> Result<Self> {
        let unknown = |what: &str, value: &str| Error::Answer {
            query: ARRIVAL_REJECTS,
            what: format!("an unknown {what} {value:?}"),
        };
        let table = [SourceTable::Messages, SourceTable::ConversationEvents]
            .into_iter()
            .find(|t| t.as_str() == table)
            .ok_or_else(|| unknown("source table", table))?;
        let reason = RejectReason::ALL
            .into_iter()
            .find(|r| r.as_str() == reason)
            .ok_or_else(|| unknown("reject reason", reason))?;
        Ok(ArrivalReject {
            table,
            reason,
            account_id,
            rows,
            example_id,
        })
    }
}

const ARRIVAL_REJECTS: &str = "arrival_rejects.sql";

/// The run's snapshot of the source.
pub struct Snapshot {
    backend: SnapshotBackend,
    limit: Duration,
}

enum SnapshotBackend {
    Postgres(postgres::PgSnapshot),
    Sqlite(sqlite::SqliteSnapshot),
}

impl Snapshot {
    pub async fn open(db: &SourceDb) -> Result<Self> {
        let limit = db.settings().statement_timeout;
        let backend = bounded(limit, "begin.sql", async {
            Ok(match db {
                SourceDb::Postgres { pool, .. } => SnapshotBackend::Postgres(postgres::PgSnapshot::open(pool).await?),
                SourceDb::Sqlite { pool, .. } => SnapshotBackend::Sqlite(sqlite::SqliteSnapshot::open(pool).await?),
            })
        })
        .await?;
        Ok(Snapshot { backend, limit })
    }

    pub async fn dimensions(&mut self) -> Result<Dimensions> {
        let rows = bounded(self.limit, "accounts.sql", async {
            match &mut self.backend {
                SnapshotBackend::Postgres(s) => s.dimensions().await,
                SnapshotBackend::Sqlite(s) => s.dimensions().await,
            }
        })
        .await?;
        Ok(rows.into_dimensions())
    }

    /// The latest arrival (`created_at`) in the snapshot and the clock it is
    /// judged by.
    pub async fn arrivals(&mut self) -> Result<Arrivals> {
        bounded(self.limit, "watermark.sql", async {
            match &mut self.backend {
                SnapshotBackend::Postgres(s) => s.arrivals().await,
                SnapshotBackend::Sqlite(s) => s.arrivals().await,
            }
        })
        .await
    }

    /// UTC days that received rows with `previous < created_at <= current`.
    pub async fn late_days(&mut self, previous: UnixMicros, current: UnixMicros) -> Result<Vec<NaiveDate>> {
        bounded(self.limit, "late_days.sql", async {
            match &mut self.backend {
                SnapshotBackend::Postgres(s) => s.late_days(previous, current).await,
                SnapshotBackend::Sqlite(s) => s.late_days(previous, current).await,
            }
        })
        .await
    }

    /// A reader for one day's rows, inside this snapshot.
    pub async fn day_reader(&self) -> Result<DayReader> {
        let backend = bounded(self.limit, "join_snapshot.sql", async {
            Ok(match &self.backend {
                SnapshotBackend::Postgres(s) => ReaderBackend::Postgres(s.reader().await?),
                SnapshotBackend::Sqlite(s) => ReaderBackend::Sqlite(s.reader().await?),
            })
        })
        .await?;
        Ok(DayReader {
            backend,
            limit: self.limit,
        })
    }

    /// Ends the snapshot; a server that does not answer is left to drop the
    /// connection on its side.
    pub async fn close(self) {
        let close = async {
            match self.backend {
                SnapshotBackend::Postgres(s) => s.close().await,
                SnapshotBackend::Sqlite(s) => s.close().await,
            }
        };
        let _ = tokio::time::timeout(self.limit, close).await;
    }
}

/// Reads the rows of one day; one per concurrently processed day.
/// Conversations per resolve-history query (a 0.8 MB parameter).
pub const HISTORY_CHUNK: usize = 65_536;

pub struct DayReader {
    backend: ReaderBackend,
    limit: Duration,
}

enum ReaderBackend {
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
        let limit = self.limit;
        bounded(limit, "messages.sql", async {
            match &mut self.backend {
                ReaderBackend::Postgres(r) => r.messages(day, filter, on_row).await,
                ReaderBackend::Sqlite(r) => r.messages(day, filter, on_row).await,
            }
        })
        .await
    }

    pub async fn events(&mut self, day: DayRange, filter: &AccountFilter, on_row: impl FnMut(&RawEvent)) -> Result<()> {
        let limit = self.limit;
        bounded(limit, "events.sql", async {
            match &mut self.backend {
                ReaderBackend::Postgres(r) => r.events(day, filter, on_row).await,
                ReaderBackend::Sqlite(r) => r.events(day, filter, on_row).await,
            }
        })
        .await
    }

    /// For `conversations` (resolved in the day; sorted and distinct): what
    /// happened before it.
    ///
    /// Asked [`HISTORY_CHUNK`] conversations at a time, pulled as they are
    /// needed: neither the day's list nor one parameter of all of it is ever
    /// held (a pooled connection keeps the capacity of the largest request it
    /// encoded, so one big array stayed resident for the whole run).
    pub async fn resolve_history(
        &mut self,
        day: DayRange,
        conversations: impl Iterator<Item = i64>,
        mut on_row: impl FnMut(&RawHistory),
    ) -> Result<()> {
        let limit = self.limit;
        let mut conversations = conversations.peekable();
        let mut chunk = Vec::with_capacity(HISTORY_CHUNK);
        while conversations.peek().is_some() {
            chunk.clear();
            chunk.extend(conversations.by_ref().take(HISTORY_CHUNK));
            bounded(limit, "resolve_history.sql", async {
                match &mut self.backend {
                    ReaderBackend::Postgres(r) => r.resolve_history(day, &chunk, &mut on_row).await,
                    ReaderBackend::Sqlite(r) => r.resolve_history(day, &chunk, &mut on_row).await,
                }
            })
            .await?;
        }
        Ok(())
    }

    /// Rows that arrived during `arrival` but that no day of their own
    /// counts: those that belong before `horizon`, to a day other than
    /// `run_days` (the run counts those itself), and those without an
    /// instant.
    pub async fn arrival_rejects(
        &mut self,
        arrival: DayRange,
        horizon: UnixMicros,
        filter: &AccountFilter,
        run_days: &[NaiveDate],
    ) -> Result<Vec<ArrivalReject>> {
        let limit = self.limit;
        bounded(limit, ARRIVAL_REJECTS, async {
            match &mut self.backend {
                ReaderBackend::Postgres(r) => r.arrival_rejects(arrival, horizon, filter, run_days).await,
                ReaderBackend::Sqlite(r) => r.arrival_rejects(arrival, horizon, filter, run_days).await,
            }
        })
        .await
    }

    pub async fn finish(self) -> Result<()> {
        bounded(self.limit, "commit", async {
            match self.backend {
                ReaderBackend::Postgres(r) => r.finish().await,
                ReaderBackend::Sqlite(r) => r.finish().await,
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source without a primary key: whatever order its rows come in, a
    /// duplicated id keeps the same row, and is named once.
    #[test]
    fn a_duplicated_id_keeps_the_least_row_in_any_order() {
        let rows = [
            ChannelDim::connected(7, 2, "sms"),
            ChannelDim::connected(3, 1, "line"),
            ChannelDim::connected(7, 1, "whatsapp"),
            ChannelDim::connected(7, 1, "email"),
            ChannelDim::connected(5, 1, "sms"),
        ];
        let mut order: Vec<usize> = (0..rows.len()).collect();
        for turn in 0..rows.len() * 4 {
            order.rotate_left(1);
            if turn % 3 == 0 {
                order.swap(0, 2);
            }
            let shuffled: Vec<ChannelDim> = order.iter().map(|&i| rows[i].clone()).collect();
            let (kept, twice) = one_per_id(shuffled, |c| c.id, |a, b| channel_rank(a).cmp(&channel_rank(b)));
            assert_eq!(twice, vec![7]);
            assert_eq!(kept.len(), 3);
            assert_eq!(kept[&7], ChannelDim::connected(7, 1, "email"), "{order:?}");
        }
    }

    /// The names `arrival_rejects.sql` writes are the types' own; a name an
    /// adapted query invents is an error that names the query, never a
    /// reject counted under some other reason.
    #[test]
    fn arrival_rejects_take_only_known_tables_and_reasons() {
        for reason in RejectReason::ALL {
            for table in [SourceTable::Messages, SourceTable::ConversationEvents] {
                let row = ArrivalReject::new(table.as_str(), reason.as_str(), Some(3), 2, Some(9)).unwrap();
                assert_eq!((row.table, row.reason), (table, reason));
            }
        }
        for (table, reason) in [("messages", "late"), ("message", "too_late"), ("messages", "")] {
            let err = ArrivalReject::new(table, reason, None, 1, None)
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("extract query arrival_rejects.sql returned an unknown"),
                "{err}"
            );
        }
    }
}
