//! The SQLite sink: multi-row prepared inserts, all in one transaction, so a
//! failed seed leaves the file as it was.
//!
//! Each statement inserts up to [`ROWS_PER_STATEMENT`] rows: the per-statement
//! cost of the driver, not SQLite itself, dominates single-row inserts. The
//! statements are the single-row ones in `sql/seed/`, with their `VALUES`
//! tuple repeated. Timestamps are stored as INTEGER microseconds since the
//! Unix epoch, UTC, the representation documented in `sql/source/sqlite.sql`.

use sqlx::query::Query;
use sqlx::sqlite::SqliteArguments;
use sqlx::{Sqlite, SqlitePool, Transaction};

use super::{Batch, Error, Result, RowCounts, SeedParams};
use crate::model::*;
use crate::source::SourceUrl;

const ROWS_PER_STATEMENT: usize = 200;

type SqliteQuery<'q> = Query<'q, Sqlite, SqliteArguments>;

/// A row type with its single-row insert statement and how to bind it.
trait Insert {
    const TABLE: &'static str;
    const SQL: &'static str;
    fn bind<'q>(&'q self, q: SqliteQuery<'q>) -> SqliteQuery<'q>;
}

pub(super) async fn load(pool: &SqlitePool, url: &SourceUrl, params: &SeedParams) -> Result<RowCounts> {
    let err = |table: &'static str| {
        move |source| Error::Load {
            table,
            url: url.to_string(),
            source,
        }
    };
    let mut tx = pool.begin().await.map_err(err("transaction"))?;
    let (mut batches, generator) = super::spawn_generator(params.clone(), |batch| batch);
    let mut total = RowCounts::default();
    let mut failure = None;
    while let Some(batch) = batches.recv().await {
        if let Err((table, e)) = insert_batch(&mut tx, &batch).await {
            failure = Some(err(table)(e));
            break;
        }
        total += batch.counts();
    }
    drop(batches);
    super::join_generator(generator).await?;
    if let Some(failure) = failure {
        return Err(failure);
    }
    tx.commit().await.map_err(err("transaction"))?;
    Ok(total)
}

async fn insert_batch(tx: &mut Transaction<'_, Sqlite>, b: &Batch) -> Result<(), (&'static str, sqlx::Error)> {
    insert_all(tx, &b.accounts).await?;
    insert_all(tx, &b.channels).await?;
    insert_all(tx, &b.agents).await?;
    insert_all(tx, &b.contacts).await?;
    insert_all(tx, &b.conversations).await?;
    insert_all(tx, &b.messages).await?;
    insert_all(tx, &b.events).await
}

async fn insert_all<T: Insert>(
    tx: &mut Transaction<'_, Sqlite>,
    rows: &[T],
) -> Result<(), (&'static str, sqlx::Error)> {
    let mut full_chunk_sql = None;
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = if chunk.len() == ROWS_PER_STATEMENT {
            full_chunk_sql
                .get_or_insert_with(|| repeat_values(T::SQL, ROWS_PER_STATEMENT))
                .clone()
        } else {
            repeat_values(T::SQL, chunk.len())
        };
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for row in chunk {
            q = row.bind(q);
        }
        q.execute(&mut **tx).await.map_err(|e| (T::TABLE, e))?;
    }
    Ok(())
}

/// `INSERT … VALUES (?, ?)` with its tuple repeated `rows` times. The input is
/// one of our own statement files, so it always has a `VALUES (…)` tail.
fn repeat_values(single_row: &str, rows: usize) -> String {
    let at = single_row.rfind("VALUES").expect("insert statements end in VALUES (…)");
    let (head, tuple) = single_row.split_at(at + "VALUES".len());
    let tuple = tuple.trim();
    let mut sql = String::with_capacity(head.len() + rows * (tuple.len() + 2));
    sql.push_str(head);
    sql.push(' ');
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(tuple);
    }
    sql
}

impl Insert for Account {
    const TABLE: &'static str = "accounts";
    const SQL: &'static str = include_str!("../../sql/seed/sqlite_insert_accounts.sql");
    fn bind<'q>(&'q self, q: SqliteQuery<'q>) -> SqliteQuery<'q> {
        q.bind(self.id)
            .bind(&self.name)
            .bind(&self.time_zone)
            .bind(self.created_at)
    }
}

impl Insert for Channel {
    const TABLE: &'static str = "channels";
    const SQL: &'static str = include_str!("../../sql/seed/sqlite_insert_channels.sql");
    fn bind<'q>(&'q self, q: SqliteQuery<'q>) -> SqliteQuery<'q> {
        q.bind(self.id)
            .bind(self.account_id)
            .bind(self.platform)
            .bind(&self.name)
            .bind(self.environment.as_str())
            .bind(self.connected_at)
            .bind(self.disconnected_at)
    }
}

impl Insert for Agent {
    const TABLE: &'static str = "agents";
    const SQL: &'static str = include_str!("../../sql/seed/sqlite_insert_agents.sql");
    fn bind<'q>(&'q self, q: SqliteQuery<'q>) -> SqliteQuery<'q> {
        q.bind(self.id).bind(self.account_id).bind(&self.name)
    }
}

impl Insert for Contact {
    const TABLE: &'static str = "contacts";
    const SQL: &'static str = include_str!("../../sql/seed/sqlite_insert_contacts.sql");
    fn bind<'q>(&'q self, q: SqliteQuery<'q>) -> SqliteQuery<'q> {
        q.bind(self.id)
            .bind(self.account_id)
            .bind(self.platform)
            .bind(&self.external_id)
    }
}

impl Insert for Conversation {
    const TABLE: &'static str = "conversations";
    const SQL: &'static str = include_str!("../../sql/seed/sqlite_insert_conversations.sql");
    fn bind<'q>(&'q self, q: SqliteQuery<'q>) -> SqliteQuery<'q> {
        q.bind(self.id)
            .bind(self.account_id)
            .bind(self.channel_id)
            .bind(self.contact_id)
            .bind(self.created_at)
    }
}

impl Insert for Message {
    const TABLE: &'static str = "messages";
    const SQL: &'static str = include_str!("../../sql/seed/sqlite_insert_messages.sql");
    fn bind<'q>(&'q self, q: SqliteQuery<'q>) -> SqliteQuery<'q> {
        q.bind(self.id)
            .bind(self.account_id)
            .bind(self.conversation_id)
            .bind(self.channel_id)
            .bind(self.contact_id)
            .bind(self.direction.as_str())
            .bind(self.sender_type.as_str())
            .bind(self.agent_id)
            .bind(self.sent_at)
            .bind(self.created_at)
    }
}

impl Insert for ConversationEvent {
    const TABLE: &'static str = "conversation_events";
    const SQL: &'static str = include_str!("../../sql/seed/sqlite_insert_conversation_events.sql");
    fn bind<'q>(&'q self, q: SqliteQuery<'q>) -> SqliteQuery<'q> {
        q.bind(self.id)
            .bind(self.conversation_id)
            .bind(self.kind.as_str())
            .bind(self.agent_id)
            .bind(self.occurred_at)
            .bind(self.created_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_the_values_tuple() {
        let sql = repeat_values("-- c\nINSERT INTO t (a, b) VALUES (?, ?)\n", 3);
        assert_eq!(sql, "-- c\nINSERT INTO t (a, b) VALUES (?, ?), (?, ?), (?, ?)");
    }
}
