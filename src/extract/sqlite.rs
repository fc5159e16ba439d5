//! SQLite extract: streamed queries, each day reader in its own read
//! transaction (WAL mode gives each a consistent snapshot). Timestamps are
//! INTEGER Unix microseconds. SQLite is dynamically typed, so a value of the
//! wrong type is flagged on the row (reject `bad_value`), never a failure.

use chrono::{NaiveDate, Utc};
use futures::TryStreamExt;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, SqlitePool, Transaction};

use super::{AccountFilter, ArrivalReject, Arrivals, DayRange, DimensionRows, Result, qerr};
use crate::aggregate::{AccountDim, ChannelDim, RawEvent, RawHistory, RawMessage, Text};
use crate::model::*;

const MESSAGES: &str = include_str!("../../sql/extract/sqlite/messages.sql");
const EVENTS: &str = include_str!("../../sql/extract/sqlite/events.sql");
const RESOLVE_HISTORY: &str = include_str!("../../sql/extract/sqlite/resolve_history.sql");
const ARRIVAL_REJECTS: &str = include_str!("../../sql/extract/sqlite/arrival_rejects.sql");
const LATE_DAYS: &str = include_str!("../../sql/extract/sqlite/late_days.sql");
const WATERMARK: &str = include_str!("../../sql/extract/sqlite/watermark.sql");
const ACCOUNTS: &str = include_str!("../../sql/extract/sqlite/accounts.sql");
const CHANNELS: &str = include_str!("../../sql/extract/sqlite/channels.sql");

fn json_ids(ids: &Option<Vec<i64>>) -> Option<String> {
    ids.as_ref()
        .map(|v| serde_json::to_string(v).expect("integers serialize"))
}

pub struct SqliteSnapshot {
    pool: SqlitePool,
    holder: Transaction<'static, Sqlite>,
}

/// Reads a column as `Option<T>`, flagging a value of the wrong type.
fn get<'r, T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>>(r: &'r SqliteRow, i: usize, bad: &mut bool) -> Option<T> {
    match r.try_get::<Option<T>, _>(i) {
        Ok(v) => v,
        Err(_) => {
            *bad = true;
            None
        }
    }
}

impl SqliteSnapshot {
    pub async fn open(pool: &SqlitePool) -> Result<Self> {
        let holder = pool.begin().await.map_err(qerr("begin"))?;
        Ok(SqliteSnapshot {
            pool: pool.clone(),
            holder,
        })
    }

    pub async fn dimensions(&mut self) -> Result<DimensionRows> {
        let mut bad = false;
        let account_rows = sqlx::query(ACCOUNTS)
            .fetch_all(&mut *self.holder)
            .await
            .map_err(qerr("accounts.sql"))?;
        let accounts: Vec<AccountDim> = account_rows
            .iter()
            .filter_map(|r| {
                Some(AccountDim {
                    id: get(r, 0, &mut bad)?,
                    name: get(r, 1, &mut bad),
                    time_zone: get(r, 2, &mut bad),
                    created_at: get(r, 3, &mut bad),
                })
            })
            .collect();
        let channel_rows = sqlx::query(CHANNELS)
            .fetch_all(&mut *self.holder)
            .await
            .map_err(qerr("channels.sql"))?;
        let channels: Vec<ChannelDim> = channel_rows
            .iter()
            .filter_map(|r| {
                Some(ChannelDim {
                    id: get(r, 0, &mut bad)?,
                    account_id: get(r, 1, &mut bad)?,
                    platform: get(r, 2, &mut bad),
                    name: get(r, 3, &mut bad),
                    environment: get(r, 4, &mut bad),
                    connected_at: get(r, 5, &mut bad),
                    disconnected_at: get(r, 6, &mut bad),
                })
            })
            .collect();
        Ok(DimensionRows {
            unread_accounts: account_rows.len() - accounts.len(),
            unread_channels: channel_rows.len() - channels.len(),
            accounts,
            channels,
        })
    }

    pub async fn arrivals(&mut self) -> Result<Arrivals> {
        let now = Utc::now().timestamp_micros();
        let latest = sqlx::query_scalar(WATERMARK)
            .bind(now)
            .fetch_one(&mut *self.holder)
            .await
            .map_err(qerr("watermark.sql"))?;
        Ok(Arrivals { latest, now })
    }

    pub async fn late_days(&mut self, previous: UnixMicros, current: UnixMicros) -> Result<Vec<NaiveDate>> {
        let days: Vec<i64> = sqlx::query_scalar(LATE_DAYS)
            .bind(previous)
            .bind(current)
            .fetch_all(&mut *self.holder)
            .await
            .map_err(qerr("late_days.sql"))?;
        Ok(days
            .into_iter()
            .filter_map(|d| NaiveDate::from_epoch_days(i32::try_from(d).ok()?))
            .collect())
    }

    pub async fn reader(&self) -> Result<SqliteDayReader> {
        Ok(SqliteDayReader {
            tx: self.pool.begin().await.map_err(qerr("begin"))?,
        })
    }

    pub async fn close(self) {
        let _ = self.holder.rollback().await;
    }
}

pub struct SqliteDayReader {
    tx: Transaction<'static, Sqlite>,
}

impl SqliteDayReader {
    pub async fn messages(
        &mut self,
        day: DayRange,
        filter: &AccountFilter,
        mut on_row: impl FnMut(&RawMessage),
    ) -> Result<()> {
        let mut rows = sqlx::query(MESSAGES)
            .bind(day.start)
            .bind(day.end)
            .bind(json_ids(&filter.accounts))
            .bind(json_ids(&filter.strays_outside))
            .fetch(&mut *self.tx);
        while let Some(r) = rows.try_next().await.map_err(qerr("messages.sql"))? {
            let mut bad = false;
            let direction: Option<String> = get(&r, 5, &mut bad);
            let sender_type: Option<String> = get(&r, 6, &mut bad);
            let sent_at: Option<i64> = get(&r, 8, &mut bad);
            let message = RawMessage {
                id: get(&r, 0, &mut bad),
                account_id: get(&r, 1, &mut bad),
                conversation_id: get(&r, 2, &mut bad),
                channel_id: get(&r, 3, &mut bad),
                contact_id: get(&r, 4, &mut bad),
                direction: Text::<Direction>::parse(direction.as_deref().map(str::as_bytes)),
                sender_type: Text::<SenderType>::parse(sender_type.as_deref().map(str::as_bytes)),
                agent_id: get(&r, 7, &mut bad),
                sent_at: sent_at.unwrap_or_default(),
                created_at: get(&r, 9, &mut bad),
                bad_value: bad || sent_at.is_none(),
            };
            on_row(&message);
        }
        Ok(())
    }

    pub async fn events(
        &mut self,
        day: DayRange,
        filter: &AccountFilter,
        mut on_row: impl FnMut(&RawEvent),
    ) -> Result<()> {
        let mut rows = sqlx::query(EVENTS)
            .bind(day.start)
            .bind(day.end)
            .bind(json_ids(&filter.accounts))
            .bind(json_ids(&filter.strays_outside))
            .fetch(&mut *self.tx);
        while let Some(r) = rows.try_next().await.map_err(qerr("events.sql"))? {
            let mut bad = false;
            let kind: Option<String> = get(&r, 2, &mut bad);
            let occurred_at: Option<i64> = get(&r, 3, &mut bad);
            let event = RawEvent {
                id: get(&r, 0, &mut bad),
                conversation_id: get(&r, 1, &mut bad),
                kind: Text::<EventKind>::parse(kind.as_deref().map(str::as_bytes)),
                occurred_at: occurred_at.unwrap_or_default(),
                created_at: get(&r, 4, &mut bad),
                account_id: get(&r, 5, &mut bad),
                channel_id: get(&r, 6, &mut bad),
                bad_value: bad || occurred_at.is_none(),
            };
            on_row(&event);
        }
        Ok(())
    }

    pub async fn resolve_history(
        &mut self,
        day: DayRange,
        conversations: &[i64],
        mut on_row: impl FnMut(&RawHistory),
    ) -> Result<()> {
        let ids = serde_json::to_string(conversations).expect("integers serialize");
        let mut rows = sqlx::query(RESOLVE_HISTORY)
            .bind(day.start)
            .bind(ids)
            .fetch(&mut *self.tx);
        while let Some(r) = rows.try_next().await.map_err(qerr("resolve_history.sql"))? {
            // Values of the wrong type here belong to rows the day's own
            // validation rejects; such a conversation is left out.
            let mut bad = false;
            let (Some(conversation_id), Some(first_at), Some(first_id)) =
                (get(&r, 0, &mut bad), get(&r, 1, &mut bad), get(&r, 2, &mut bad))
            else {
                continue;
            };
            let direction: Option<String> = get(&r, 3, &mut bad);
            on_row(&RawHistory {
                conversation_id,
                first_at,
                first_id,
                first_direction: Text::<Direction>::parse(direction.as_deref().map(str::as_bytes)),
                first_outbound: get(&r, 4, &mut bad),
                settled: get::<i64>(&r, 5, &mut bad).unwrap_or(0) != 0,
            });
        }
        Ok(())
    }

    pub async fn arrival_rejects(
        &mut self,
        arrival: DayRange,
        horizon: UnixMicros,
        filter: &AccountFilter,
        run_days: &[NaiveDate],
    ) -> Result<Vec<ArrivalReject>> {
        let unix_days = Some(run_days.iter().map(|d| i64::from(d.to_epoch_days())).collect());
        let rows = sqlx::query(ARRIVAL_REJECTS)
            .bind(arrival.start)
            .bind(arrival.end)
            .bind(horizon)
            .bind(json_ids(&filter.accounts))
            .bind(json_ids(&filter.strays_outside))
            .bind(json_ids(&unix_days))
            .fetch_all(&mut *self.tx)
            .await
            .map_err(qerr(super::ARRIVAL_REJECTS))?;
        rows.iter()
            .map(|r| {
                // The query's own columns, never the source's values: the
                // types are ours.
                let mut bad = false;
                let table: String = get(r, 0, &mut bad).unwrap_or_default();
                let reason: String = get(r, 1, &mut bad).unwrap_or_default();
                ArrivalReject::new(
                    &table,
                    &reason,
                    get(r, 2, &mut bad),
                    get(r, 3, &mut bad).unwrap_or_default(),
                    get(r, 4, &mut bad),
                )
            })
            .collect()
    }

    pub async fn finish(self) -> Result<()> {
        self.tx.commit().await.map_err(qerr("commit"))
    }
}
