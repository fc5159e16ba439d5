//! The PostgreSQL sink: one binary `COPY … FROM STDIN` per table, all open at
//! once on their own connections, fed as the generator produces rows.
//!
//! Binary COPY spares the server the text parsing that CSV costs it. Each
//! table is one COPY statement, so each table loads all or nothing.

use sqlx::PgPool;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgCopyIn, PgPoolCopyExt};

use super::{Batch, Error, Result, RowCounts, SeedParams};
use crate::model::*;
use crate::source::{SourceUrl, TABLES};

const COPY_STATEMENTS: [&str; 7] = [
    include_str!("../../sql/seed/postgres_copy_accounts.sql"),
    include_str!("../../sql/seed/postgres_copy_channels.sql"),
    include_str!("../../sql/seed/postgres_copy_agents.sql"),
    include_str!("../../sql/seed/postgres_copy_contacts.sql"),
    include_str!("../../sql/seed/postgres_copy_conversations.sql"),
    include_str!("../../sql/seed/postgres_copy_messages.sql"),
    include_str!("../../sql/seed/postgres_copy_conversation_events.sql"),
];

/// Seconds from the Unix epoch to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800 * MICROS_PER_SECOND;

pub(super) async fn load(pool: &PgPool, url: &SourceUrl, params: &SeedParams) -> Result<RowCounts> {
    let load_err = |table: &'static str| {
        move |source| Error::Load {
            table,
            url: url.to_string(),
            source,
        }
    };
    let mut copies: Vec<PgCopyIn<PoolConnection<sqlx::Postgres>>> = Vec::with_capacity(TABLES.len());
    for (table, statement) in TABLES.iter().zip(COPY_STATEMENTS) {
        let mut copy = pool.copy_in_raw(statement).await.map_err(load_err(table))?;
        copy.send(COPY_HEADER).await.map_err(load_err(table))?;
        copies.push(copy);
    }

    let (mut batches, generator) = super::spawn_generator(params.clone(), |batch| {
        let counts = batch.counts();
        (counts, encode(&batch))
    });
    let mut total = RowCounts::default();
    let mut failure = None;
    'batches: while let Some((counts, encoded)) = batches.recv().await {
        for ((copy, table), bytes) in copies.iter_mut().zip(TABLES).zip(encoded) {
            if bytes.is_empty() {
                continue;
            }
            if let Err(e) = copy.send(bytes).await {
                failure = Some(load_err(table)(e));
                break 'batches;
            }
        }
        total += counts;
    }
    drop(batches);
    super::join_generator(generator).await?;
    if let Some(failure) = failure {
        for copy in copies {
            let _ = copy.abort("seed failed").await;
        }
        return Err(failure);
    }
    for (mut copy, table) in copies.into_iter().zip(TABLES) {
        copy.send(COPY_TRAILER).await.map_err(load_err(table))?;
        copy.finish().await.map_err(load_err(table))?;
    }
    Ok(total)
}

const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
const COPY_TRAILER: &[u8] = &(-1i16).to_be_bytes();

/// Encodes a batch as binary COPY row data, one buffer per table.
fn encode(batch: &Batch) -> [Vec<u8>; 7] {
    let mut out: [Vec<u8>; 7] = Default::default();
    for a in &batch.accounts {
        let mut r = Row::new(&mut out[0], 4);
        r.i64(a.id).text(&a.name).text(&a.time_zone).ts(a.created_at);
    }
    for c in &batch.channels {
        let mut r = Row::new(&mut out[1], 7);
        r.i64(c.id)
            .i64(c.account_id)
            .text(c.platform)
            .text(&c.name)
            .text(c.environment.as_str())
            .ts(c.connected_at)
            .opt_ts(c.disconnected_at);
    }
    for a in &batch.agents {
        Row::new(&mut out[2], 3).i64(a.id).i64(a.account_id).text(&a.name);
    }
    for c in &batch.contacts {
        Row::new(&mut out[3], 4)
            .i64(c.id)
            .i64(c.account_id)
            .text(c.platform)
            .text(&c.external_id);
    }
    for c in &batch.conversations {
        Row::new(&mut out[4], 5)
            .i64(c.id)
            .i64(c.account_id)
            .i64(c.channel_id)
            .i64(c.contact_id)
            .ts(c.created_at);
    }
    out[5].reserve(batch.messages.len() * 120);
    for m in &batch.messages {
        Row::new(&mut out[5], 10)
            .i64(m.id)
            .i64(m.account_id)
            .i64(m.conversation_id)
            .i64(m.channel_id)
            .i64(m.contact_id)
            .text(m.direction.as_str())
            .text(m.sender_type.as_str())
            .opt_i64(m.agent_id)
            .ts(m.sent_at)
            .ts(m.created_at);
    }
    for e in &batch.events {
        Row::new(&mut out[6], 6)
            .i64(e.id)
            .i64(e.conversation_id)
            .text(e.kind.as_str())
            .opt_i64(e.agent_id)
            .ts(e.occurred_at)
            .ts(e.created_at);
    }
    out
}

/// One row of binary COPY data: a field count, then length-prefixed fields.
struct Row<'a>(&'a mut Vec<u8>);

impl<'a> Row<'a> {
    fn new(buf: &'a mut Vec<u8>, fields: i16) -> Self {
        buf.extend_from_slice(&fields.to_be_bytes());
        Row(buf)
    }
    fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&8i32.to_be_bytes());
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn null(&mut self) -> &mut Self {
        self.0.extend_from_slice(&(-1i32).to_be_bytes());
        self
    }
    fn opt_i64(&mut self, v: Option<i64>) -> &mut Self {
        match v {
            Some(v) => self.i64(v),
            None => self.null(),
        }
    }
    fn text(&mut self, s: &str) -> &mut Self {
        self.0.extend_from_slice(&(s.len() as i32).to_be_bytes());
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    fn ts(&mut self, micros: UnixMicros) -> &mut Self {
        self.i64(micros - PG_EPOCH_OFFSET_MICROS)
    }
    fn opt_ts(&mut self, micros: Option<UnixMicros>) -> &mut Self {
        match micros {
            Some(v) => self.ts(v),
            None => self.null(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_row_as_postgres_binary_copy() {
        let mut buf = Vec::new();
        Row::new(&mut buf, 3).i64(1).text("ab").opt_i64(None);
        assert_eq!(
            buf,
            [
                &[0, 3][..],
                &[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1],
                &[0, 0, 0, 2, b'a', b'b'],
                &[0xff, 0xff, 0xff, 0xff],
            ]
            .concat()
        );
        assert_eq!(COPY_HEADER.len(), 19);
    }

    #[test]
    fn timestamps_count_from_the_postgres_epoch() {
        let mut buf = Vec::new();
        Row::new(&mut buf, 1).ts(946_684_800 * MICROS_PER_SECOND);
        assert_eq!(&buf[2..], &[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0]);
    }
}
