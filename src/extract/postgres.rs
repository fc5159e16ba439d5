//! PostgreSQL extract: an exported snapshot shared by every day reader, and a
//! day's messages and events through `COPY (…) TO STDOUT (FORMAT binary)`.
//!
//! Binary COPY was measured against a streamed `fetch` for the events (see
//! bench/RESULTS.md: c/a 1.58–1.68 with fetched events, 1.33–1.35 with
//! COPY): it skips the driver's per-row decoding, and the parse below is a
//! few comparisons per field. Messages, four times as many rows, went
//! through COPY from the start and read at the speed of psql's own COPY.

use chrono::{DateTime, NaiveDate, Utc};
use futures::TryStreamExt;
use sqlx::postgres::{PgTypeInfo, PgValueFormat, PgValueRef};
use sqlx::{PgPool, Postgres, Row, Transaction};

use super::{AccountFilter, ArrivalReject, Arrivals, DayRange, DimensionRows, Result, qerr};
use crate::aggregate::{AccountDim, ChannelDim, RawEvent, RawHistory, RawMessage, Text};
use crate::model::*;

const BEGIN: &str = include_str!("../../sql/extract/postgres/begin.sql");
const EXPORT_SNAPSHOT: &str = include_str!("../../sql/extract/postgres/export_snapshot.sql");
const JOIN_SNAPSHOT: &str = include_str!("../../sql/extract/postgres/join_snapshot.sql");
const MESSAGES: &str = include_str!("../../sql/extract/postgres/messages.sql");
const EVENTS: &str = include_str!("../../sql/extract/postgres/events.sql");
const RESOLVE_HISTORY: &str = include_str!("../../sql/extract/postgres/resolve_history.sql");
const ARRIVAL_REJECTS: &str = include_str!("../../sql/extract/postgres/arrival_rejects.sql");
const LATE_DAYS: &str = include_str!("../../sql/extract/postgres/late_days.sql");
const WATERMARK: &str = include_str!("../../sql/extract/postgres/watermark.sql");
const ACCOUNTS: &str = include_str!("../../sql/extract/postgres/accounts.sql");
const CHANNELS: &str = include_str!("../../sql/extract/postgres/channels.sql");

/// Microseconds from the Unix epoch to PostgreSQL's, 2000-01-01.
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800 * MICROS_PER_SECOND;

fn dt(micros: UnixMicros) -> DateTime<Utc> {
    to_datetime(micros).expect("instants handled by the job are within chrono's range")
}

fn micros(t: DateTime<Utc>) -> UnixMicros {
    t.timestamp_micros()
}

/// A `timestamptz` in Unix microseconds, for every value PostgreSQL holds:
/// `infinity` and `-infinity` (i64::MAX and MIN from its 2000 epoch) stay
/// the two ends of time, as those integers are in a SQLite source, and the
/// last finite instants saturate. chrono's decoding panics on all of them,
/// so a channel connected until 'infinity' would have stopped every run.
fn unix_micros(pg_micros: i64) -> UnixMicros {
    if pg_micros == i64::MIN {
        pg_micros
    } else {
        pg_micros.saturating_add(PG_EPOCH_OFFSET_MICROS)
    }
}

/// A `timestamptz` column read as [`unix_micros`].
struct Instant(UnixMicros);

impl sqlx::Type<Postgres> for Instant {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as sqlx::Type<Postgres>>::type_info()
    }

    /// A `timestamp` has the same encoding, and is read as UTC, as the
    /// binary COPY of the messages and events reads it.
    fn compatible(ty: &PgTypeInfo) -> bool {
        *ty == Self::type_info() || *ty == <chrono::NaiveDateTime as sqlx::Type<Postgres>>::type_info()
    }
}

impl<'r> sqlx::Decode<'r, Postgres> for Instant {
    fn decode(value: PgValueRef<'r>) -> std::result::Result<Self, sqlx::error::BoxDynError> {
        Ok(Instant(match value.format() {
            PgValueFormat::Binary => unix_micros(<i64 as sqlx::Decode<Postgres>>::decode(value)?),
            // Prepared statements return binary; text is for completeness.
            PgValueFormat::Text => match value.as_str()? {
                "infinity" => i64::MAX,
                "-infinity" => i64::MIN,
                _ => micros(<DateTime<Utc> as sqlx::Decode<Postgres>>::decode(value)?),
            },
        }))
    }
}

/// A nullable `timestamptz` column of a dimension row; a value that cannot
/// be read is treated as NULL, as before.
fn instant_at(row: &sqlx::postgres::PgRow, column: usize) -> Option<UnixMicros> {
    row.try_get::<Option<Instant>, _>(column).ok().flatten().map(|i| i.0)
}

pub struct PgSnapshot {
    pool: PgPool,
    holder: Transaction<'static, Postgres>,
    snapshot_id: String,
}

impl PgSnapshot {
    pub async fn open(pool: &PgPool) -> Result<Self> {
        let mut holder = pool.begin().await.map_err(qerr("begin.sql"))?;
        sqlx::raw_sql(BEGIN)
            .execute(&mut *holder)
            .await
            .map_err(qerr("begin.sql"))?;
        let snapshot_id: String = sqlx::query_scalar(EXPORT_SNAPSHOT)
            .fetch_one(&mut *holder)
            .await
            .map_err(qerr("export_snapshot.sql"))?;
        Ok(PgSnapshot {
            pool: pool.clone(),
            holder,
            snapshot_id,
        })
    }

    pub async fn dimensions(&mut self) -> Result<DimensionRows> {
        let account_rows = sqlx::query(ACCOUNTS)
            .fetch_all(&mut *self.holder)
            .await
            .map_err(qerr("accounts.sql"))?;
        let accounts: Vec<AccountDim> = account_rows
            .iter()
            .filter_map(|r| {
                Some(AccountDim {
                    id: r.try_get::<Option<i64>, _>(0).ok()??,
                    name: r.try_get(1).ok().flatten(),
                    time_zone: r.try_get(2).ok().flatten(),
                    created_at: instant_at(r, 3),
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
                    id: r.try_get::<Option<i64>, _>(0).ok()??,
                    account_id: r.try_get::<Option<i64>, _>(1).ok()??,
                    platform: r.try_get(2).ok().flatten(),
                    name: r.try_get(3).ok().flatten(),
                    environment: r.try_get(4).ok().flatten(),
                    connected_at: instant_at(r, 5),
                    disconnected_at: instant_at(r, 6),
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
        let (latest, now): (Option<Instant>, Instant) = sqlx::query_as(WATERMARK)
            .fetch_one(&mut *self.holder)
            .await
            .map_err(qerr("watermark.sql"))?;
        Ok(Arrivals {
            latest: latest.map(|i| i.0),
            now: now.0,
        })
    }

    pub async fn late_days(&mut self, previous: UnixMicros, current: UnixMicros) -> Result<Vec<NaiveDate>> {
        sqlx::query_scalar(LATE_DAYS)
            .bind(dt(previous))
            .bind(dt(current))
            .fetch_all(&mut *self.holder)
            .await
            .map_err(qerr("late_days.sql"))
    }

    pub async fn reader(&self) -> Result<PgDayReader> {
        let mut tx = self.pool.begin().await.map_err(qerr("begin.sql"))?;
        sqlx::raw_sql(BEGIN)
            .execute(&mut *tx)
            .await
            .map_err(qerr("begin.sql"))?;
        // The id comes from pg_export_snapshot(), but quote it all the same.
        let join = JOIN_SNAPSHOT.replace(":snapshot_id", &format!("'{}'", self.snapshot_id.replace('\'', "''")));
        sqlx::raw_sql(sqlx::AssertSqlSafe(join))
            .execute(&mut *tx)
            .await
            .map_err(qerr("join_snapshot.sql"))?;
        Ok(PgDayReader { tx })
    }

    pub async fn close(self) {
        let _ = self.holder.rollback().await;
    }
}

pub struct PgDayReader {
    tx: Transaction<'static, Postgres>,
}

fn timestamp_literal(m: UnixMicros) -> String {
    format!("'{}'::timestamptz", dt(m).format("%Y-%m-%dT%H:%M:%S%.6fZ"))
}

fn array_literal(ids: &[i64]) -> String {
    let list: Vec<String> = ids.iter().map(i64::to_string).collect();
    format!("'{{{}}}'::bigint[]", list.join(","))
}

/// The `:account_filter` of the COPY queries, over `column`, built from integers only.
fn account_filter_sql(filter: &AccountFilter, column: &str) -> String {
    let Some(accounts) = &filter.accounts else {
        return "true".into();
    };
    let mut sql = format!("{column} = ANY({})", array_literal(accounts));
    if let Some(known) = &filter.strays_outside {
        sql.push_str(&format!(
            " OR {column} IS NULL OR {column} <> ALL({})",
            array_literal(known)
        ));
    }
    sql
}

/// A COPY template with its placeholders filled for one day.
fn copy_statement(template: &str, day: DayRange, filter: &AccountFilter, column: &str) -> String {
    template
        .replace(":day_start", &timestamp_literal(day.start))
        .replace(":day_end", &timestamp_literal(day.end))
        .replace(":account_filter", &account_filter_sql(filter, column))
}

impl PgDayReader {
    pub async fn messages(
        &mut self,
        day: DayRange,
        filter: &AccountFilter,
        mut on_row: impl FnMut(&RawMessage),
    ) -> Result<()> {
        let sql = copy_statement(MESSAGES, day, filter, "account_id");
        self.copy_out("messages.sql", &sql, |fields: &[Option<&[u8]>; MESSAGE_FIELDS]| {
            on_row(&message_from_fields(fields))
        })
        .await
    }

    pub async fn events(
        &mut self,
        day: DayRange,
        filter: &AccountFilter,
        mut on_row: impl FnMut(&RawEvent),
    ) -> Result<()> {
        let sql = copy_statement(EVENTS, day, filter, "c.account_id");
        self.copy_out("events.sql", &sql, |fields: &[Option<&[u8]>; EVENT_FIELDS]| {
            on_row(&event_from_fields(fields))
        })
        .await
    }

    /// Streams a binary COPY, handing each tuple's fields to `on_tuple`.
    async fn copy_out<const N: usize>(
        &mut self,
        query: &'static str,
        sql: &str,
        mut on_tuple: impl FnMut(&[Option<&[u8]>; N]),
    ) -> Result<()> {
        let copy_err = |reason| super::Error::Copy { query, reason };
        let mut stream = self.tx.copy_out_raw(sql).await.map_err(qerr(query))?;
        let mut parser = CopyParser::<N>::default();
        while let Some(chunk) = stream.try_next().await.map_err(qerr(query))? {
            parser.push(&chunk, &mut on_tuple).map_err(copy_err)?;
        }
        parser.finish().map_err(copy_err)
    }

    pub async fn resolve_history(
        &mut self,
        day: DayRange,
        conversations: &[i64],
        mut on_row: impl FnMut(&RawHistory),
    ) -> Result<()> {
        let mut rows = sqlx::query(RESOLVE_HISTORY)
            .bind(dt(day.start))
            .bind(conversations)
            .fetch(&mut *self.tx);
        while let Some(r) = rows.try_next().await.map_err(qerr("resolve_history.sql"))? {
            let direction: Option<String> = r.try_get(3).map_err(qerr("resolve_history.sql"))?;
            let first_outbound: Option<Instant> = r.try_get(4).map_err(qerr("resolve_history.sql"))?;
            on_row(&RawHistory {
                conversation_id: r.try_get(0).map_err(qerr("resolve_history.sql"))?,
                first_at: r.try_get::<Instant, _>(1).map_err(qerr("resolve_history.sql"))?.0,
                first_id: r.try_get(2).map_err(qerr("resolve_history.sql"))?,
                first_direction: Text::<Direction>::parse(direction.as_deref().map(str::as_bytes)),
                first_outbound: first_outbound.map(|i| i.0),
                settled: r.try_get(5).map_err(qerr("resolve_history.sql"))?,
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
        let query = super::ARRIVAL_REJECTS;
        let rows = sqlx::query(ARRIVAL_REJECTS)
            .bind(dt(arrival.start))
            .bind(dt(arrival.end))
            .bind(dt(horizon))
            .bind(filter.accounts.clone())
            .bind(filter.strays_outside.clone())
            .bind(run_days)
            .fetch_all(&mut *self.tx)
            .await
            .map_err(qerr(query))?;
        rows.iter()
            .map(|r| {
                ArrivalReject::new(
                    r.try_get(0).map_err(qerr(query))?,
                    r.try_get(1).map_err(qerr(query))?,
                    r.try_get(2).map_err(qerr(query))?,
                    r.try_get(3).map_err(qerr(query))?,
                    r.try_get(4).map_err(qerr(query))?,
                )
            })
            .collect()
    }

    pub async fn finish(self) -> Result<()> {
        self.tx.commit().await.map_err(qerr("commit"))
    }
}

const EVENT_FIELDS: usize = 7;

fn event_from_fields(f: &[Option<&[u8]>; EVENT_FIELDS]) -> RawEvent {
    let mut bad = false;
    let mut int = |v: Option<&[u8]>| int8(v, &mut bad);
    let id = int(f[0]);
    let conversation_id = int(f[1]);
    let occurred_at = int(f[3]).map(unix_micros);
    let created_at = int(f[4]).map(unix_micros);
    let account_id = int(f[5]);
    let channel_id = int(f[6]);
    RawEvent {
        id,
        conversation_id,
        kind: Text::<EventKind>::parse(f[2]),
        occurred_at: occurred_at.unwrap_or_default(),
        created_at,
        account_id,
        channel_id,
        bad_value: bad || occurred_at.is_none(),
    }
}

/// A binary `int8` or `timestamptz` field; a field of another width marks the row bad.
fn int8(v: Option<&[u8]>, bad: &mut bool) -> Option<i64> {
    let b = v?;
    match <[u8; 8]>::try_from(b) {
        Ok(bytes) => Some(i64::from_be_bytes(bytes)),
        Err(_) => {
            *bad = true;
            None
        }
    }
}

const MESSAGE_FIELDS: usize = 10;

fn message_from_fields(f: &[Option<&[u8]>; MESSAGE_FIELDS]) -> RawMessage {
    let mut bad = false;
    let mut int = |v: Option<&[u8]>| int8(v, &mut bad);
    let id = int(f[0]);
    let account_id = int(f[1]);
    let conversation_id = int(f[2]);
    let channel_id = int(f[3]);
    let contact_id = int(f[4]);
    let agent_id = int(f[7]);
    let sent_at = int(f[8]).map(unix_micros);
    let created_at = int(f[9]).map(unix_micros);
    RawMessage {
        id,
        account_id,
        conversation_id,
        channel_id,
        contact_id,
        direction: Text::<Direction>::parse(f[5]),
        sender_type: Text::<SenderType>::parse(f[6]),
        agent_id,
        sent_at: sent_at.unwrap_or_default(),
        created_at,
        bad_value: bad || sent_at.is_none(),
    }
}

/// Incremental parser of binary COPY output with exactly `N` fields per
/// tuple. Tuples may span chunks.
struct CopyParser<const N: usize> {
    buf: Vec<u8>,
    header_done: bool,
    trailer_seen: bool,
}

impl<const N: usize> Default for CopyParser<N> {
    fn default() -> Self {
        CopyParser {
            buf: Vec::new(),
            header_done: false,
            trailer_seen: false,
        }
    }
}

const HEADER_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

impl<const N: usize> CopyParser<N> {
    fn push(&mut self, chunk: &[u8], on_tuple: impl FnMut(&[Option<&[u8]>; N])) -> Result<(), String> {
        // PostgreSQL sends one CopyData message per row: parse straight from
        // the chunk, and keep only an incomplete tail for the next one.
        if self.buf.is_empty() {
            let used = self.parse(chunk, on_tuple)?;
            self.buf.extend_from_slice(&chunk[used..]);
        } else {
            let mut buf = std::mem::take(&mut self.buf);
            buf.extend_from_slice(chunk);
            let used = self.parse(&buf, on_tuple)?;
            buf.drain(..used);
            self.buf = buf;
        }
        Ok(())
    }

    /// Hands every complete tuple of `data` to `on_tuple`; returns the bytes used.
    fn parse(&mut self, data: &[u8], mut on_tuple: impl FnMut(&[Option<&[u8]>; N])) -> Result<usize, String> {
        let mut pos = 0;
        if !self.header_done {
            // signature, flags (4), extension length (4), extension
            if data.len() < HEADER_SIGNATURE.len() + 8 {
                return Ok(0);
            }
            if &data[..HEADER_SIGNATURE.len()] != HEADER_SIGNATURE {
                return Err("missing PGCOPY signature".into());
            }
            let ext_at = HEADER_SIGNATURE.len() + 4;
            let ext = u32::from_be_bytes(data[ext_at..ext_at + 4].try_into().expect("4 bytes")) as usize;
            if data.len() < ext_at + 4 + ext {
                return Ok(0);
            }
            pos = ext_at + 4 + ext;
            self.header_done = true;
        }
        loop {
            let rest = &data[pos..];
            if rest.len() < 2 {
                break;
            }
            let count = i16::from_be_bytes([rest[0], rest[1]]);
            if count == -1 {
                self.trailer_seen = true;
                pos += 2;
                break;
            }
            if count < 0 || count as usize != N {
                return Err(format!("expected {N} fields per row, got {count}"));
            }
            let mut fields: [Option<&[u8]>; N] = [None; N];
            let mut at = 2;
            let mut complete = true;
            for field in fields.iter_mut() {
                if rest.len() < at + 4 {
                    complete = false;
                    break;
                }
                let len = i32::from_be_bytes(rest[at..at + 4].try_into().expect("4 bytes"));
                at += 4;
                if len < 0 {
                    continue;
                }
                let len = len as usize;
                if rest.len() < at + len {
                    complete = false;
                    break;
                }
                *field = Some(&rest[at..at + len]);
                at += len;
            }
            if !complete {
                break;
            }
            on_tuple(&fields);
            pos += at;
        }
        Ok(pos)
    }

    fn finish(&self) -> Result<(), String> {
        if !self.buf.is_empty() {
            return Err(format!("{} bytes of an incomplete row at the end", self.buf.len()));
        }
        if self.header_done && !self.trailer_seen {
            return Err("no end-of-data marker".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy_data(rows: &[[Option<Vec<u8>>; MESSAGE_FIELDS]]) -> Vec<u8> {
        let mut out = HEADER_SIGNATURE.to_vec();
        out.extend_from_slice(&[0; 8]);
        for row in rows {
            out.extend_from_slice(&(MESSAGE_FIELDS as i16).to_be_bytes());
            for f in row {
                match f {
                    None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                    Some(v) => {
                        out.extend_from_slice(&(v.len() as i32).to_be_bytes());
                        out.extend_from_slice(v);
                    }
                }
            }
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    fn row(id: i64, direction: &str) -> [Option<Vec<u8>>; MESSAGE_FIELDS] {
        let i = |v: i64| Some(v.to_be_bytes().to_vec());
        [
            i(id),
            i(1),
            i(2),
            i(3),
            None,
            Some(direction.as_bytes().to_vec()),
            Some(b"agent".to_vec()),
            i(9),
            i(0),
            i(5),
        ]
    }

    #[test]
    fn parses_rows_split_at_every_byte_boundary() {
        let data = copy_data(&[row(1, "outbound"), row(2, "sideways")]);
        for split in 1..data.len() {
            let mut parser = CopyParser::<MESSAGE_FIELDS>::default();
            let mut got = Vec::new();
            for chunk in [&data[..split], &data[split..]] {
                parser.push(chunk, |f| got.push(message_from_fields(f))).unwrap();
            }
            parser.finish().unwrap();
            assert_eq!(got.len(), 2, "split at {split}");
            assert_eq!(got[0].id, Some(1));
            assert_eq!(got[0].direction, Text::Known(Direction::Outbound));
            assert_eq!(got[0].contact_id, None);
            assert_eq!(got[0].sent_at, PG_EPOCH_OFFSET_MICROS);
            assert_eq!(got[1].direction, Text::Unknown);
        }
    }

    #[test]
    fn truncated_data_is_an_error_not_a_panic() {
        let data = copy_data(&[row(1, "inbound")]);
        let mut parser = CopyParser::<MESSAGE_FIELDS>::default();
        parser.push(&data[..data.len() - 5], |_| {}).unwrap();
        assert!(parser.finish().is_err());
        let mut parser = CopyParser::<MESSAGE_FIELDS>::default();
        assert!(parser.push(b"NOTCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0", |_| {}).is_err());
    }

    #[test]
    fn account_filter_is_built_from_integers() {
        assert_eq!(account_filter_sql(&AccountFilter::default(), "account_id"), "true");
        let f = AccountFilter {
            accounts: Some(vec![1, 2]),
            strays_outside: Some(vec![1, 2, 3]),
        };
        assert_eq!(
            account_filter_sql(&f, "account_id"),
            "account_id = ANY('{1,2}'::bigint[]) OR account_id IS NULL OR account_id <> ALL('{1,2,3}'::bigint[])"
        );
    }
}
