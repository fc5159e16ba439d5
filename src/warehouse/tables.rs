//! Arrow schemas of the warehouse tables, and conversions from the aggregate
//! entries to record batches. Column names are snake_case and documented in
//! the README; timestamps are `timestamp[us, UTC]`.

use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType};
use arrow::error::ArrowError;

use super::paths::Table;
use crate::aggregate::{AccountDim, ChannelDim, Entry, Rejects};

fn ts(name: &str, nullable: bool) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        nullable,
    )
}

fn int(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Int64, nullable)
}

fn text(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

static SCHEMAS: LazyLock<[SchemaRef; 9]> = LazyLock::new(|| {
    let s = |fields: Vec<Field>| Arc::new(Schema::new(fields));
    [
        s(vec![
            int("account_id", false),
            int("channel_id", false),
            int("contact_id", false),
            ts("hour", false),
            ts("first_at", false),
            ts("last_at", false),
        ]),
        s(vec![
            int("account_id", false),
            int("channel_id", false),
            int("agent_id", false),
            ts("hour", false),
            ts("first_at", false),
            ts("last_at", false),
        ]),
        s(vec![
            int("account_id", false),
            int("channel_id", false),
            int("conversation_id", false),
            ts("resolved_at", false),
            int("event_id", false),
        ]),
        s(vec![
            int("account_id", false),
            int("channel_id", false),
            ts("slot_start", false),
            int("messages", false),
        ]),
        s(vec![
            int("account_id", false),
            int("channel_id", false),
            int("contact_id", false),
            ts("first_slot", false),
            ts("last_slot", false),
        ]),
        s(vec![
            int("account_id", false),
            int("channel_id", false),
            ts("slot_start", false),
            int("conversations", false),
        ]),
        s(vec![
            int("account_id", false),
            text("name", true),
            text("time_zone", true),
            ts("created_at", true),
        ]),
        s(vec![
            int("account_id", false),
            int("channel_id", false),
            text("platform", true),
            text("name", true),
            text("environment", true),
            ts("connected_at", true),
            ts("disconnected_at", true),
        ]),
        s(vec![
            int("account_id", true),
            text("source_table", false),
            text("reason", false),
            int("rows", false),
            int("example_id", true),
        ]),
    ]
});

/// A non-null 64-bit column (integers or timestamps) of a batch, as a slice;
/// the error says what is wrong with it.
pub fn i64_values<'b>(batch: &'b RecordBatch, column: &str) -> Result<&'b [i64], String> {
    let c = batch
        .column_by_name(column)
        .ok_or_else(|| format!("no column {column}"))?;
    if c.null_count() > 0 {
        return Err(format!("column {column} has nulls"));
    }
    match c.data_type() {
        DataType::Int64 => Ok(c.as_primitive::<Int64Type>().values()),
        DataType::Timestamp(TimeUnit::Microsecond, _) => Ok(c.as_primitive::<TimestampMicrosecondType>().values()),
        other => Err(format!("column {column} is {other}")),
    }
}

pub fn schema(table: Table) -> SchemaRef {
    let i = Table::ALL
        .iter()
        .position(|t| *t == table)
        .expect("every table has a schema");
    SCHEMAS[i].clone()
}

/// The dimensions' instants. i64::MIN, the start of time of the job (a
/// PostgreSQL '-infinity'), is pandas' NaT (NULL, the opposite of a channel
/// disconnected since ever) and below DuckDB's range, so it is written as
/// one above: DuckDB's own `-infinity`. Readers compare it the same way.
fn utc(values: Vec<Option<i64>>) -> ArrayRef {
    let values = values.into_iter().map(|t| t.map(|t| t.max(i64::MIN + 1)));
    Arc::new(TimestampMicrosecondArray::from_iter(values).with_timezone("UTC"))
}

fn utc_req(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from_iter_values(values).with_timezone("UTC"))
}

fn ints(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(values))
}

/// Entries of one keyed aggregate as a batch of its table.
pub fn entries_batch(table: Table, entries: &[Entry]) -> Result<RecordBatch, ArrowError> {
    let col = |f: fn(&Entry) -> i64| entries.iter().map(f);
    let columns: Vec<ArrayRef> = match table {
        Table::ContactActivity | Table::AgentActivity => vec![
            ints(col(|e| e.0[0])),
            ints(col(|e| e.0[1])),
            ints(col(|e| e.0[2])),
            utc_req(col(|e| e.0[3])),
            utc_req(col(|e| e.1[0])),
            utc_req(col(|e| e.1[1])),
        ],
        Table::ResolvedConversations => vec![
            ints(col(|e| e.0[0])),
            ints(col(|e| e.0[1])),
            ints(col(|e| e.0[2])),
            utc_req(col(|e| e.1[0])),
            ints(col(|e| e.1[1])),
        ],
        Table::ProactiveMessages | Table::ResolvedSlots => vec![
            ints(col(|e| e.0[0])),
            ints(col(|e| e.0[1])),
            utc_req(col(|e| e.0[2])),
            ints(col(|e| e.1[0])),
        ],
        Table::ContactDays => vec![
            ints(col(|e| e.0[0])),
            ints(col(|e| e.0[1])),
            ints(col(|e| e.0[2])),
            utc_req(col(|e| e.1[0])),
            utc_req(col(|e| e.1[1])),
        ],
        other => {
            return Err(ArrowError::InvalidArgumentError(format!(
                "{} is not an aggregate table",
                other.name()
            )));
        }
    };
    RecordBatch::try_new(schema(table), columns)
}

pub fn accounts_batch(accounts: &[&AccountDim]) -> Result<RecordBatch, ArrowError> {
    RecordBatch::try_new(
        schema(Table::Accounts),
        vec![
            ints(accounts.iter().map(|a| a.id)),
            Arc::new(StringArray::from_iter(accounts.iter().map(|a| a.name.as_deref()))),
            Arc::new(StringArray::from_iter(accounts.iter().map(|a| a.time_zone.as_deref()))),
            utc(accounts.iter().map(|a| a.created_at).collect()),
        ],
    )
}

pub fn channels_batch(channels: &[&ChannelDim]) -> Result<RecordBatch, ArrowError> {
    RecordBatch::try_new(
        schema(Table::Channels),
        vec![
            ints(channels.iter().map(|c| c.account_id)),
            ints(channels.iter().map(|c| c.id)),
            Arc::new(StringArray::from_iter(channels.iter().map(|c| c.platform.as_deref()))),
            Arc::new(StringArray::from_iter(channels.iter().map(|c| c.name.as_deref()))),
            Arc::new(StringArray::from_iter(
                channels.iter().map(|c| c.environment.as_deref()),
            )),
            utc(channels.iter().map(|c| c.connected_at).collect()),
            utc(channels.iter().map(|c| c.disconnected_at).collect()),
        ],
    )
}

pub fn rejects_batch(rejects: &Rejects) -> Result<RecordBatch, ArrowError> {
    // Sorted by account first, so readers can prune by account like the other tables.
    let mut rows: Vec<_> = rejects.counts.iter().collect();
    rows.sort_by_key(|((table, reason, account), _)| (*account, *table, *reason));
    RecordBatch::try_new(
        schema(Table::Rejects),
        vec![
            Arc::new(Int64Array::from_iter(rows.iter().map(|((_, _, a), _)| *a))),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|((t, _, _), _)| t.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|((_, r, _), _)| r.as_str()),
            )),
            ints(rows.iter().map(|(_, (n, _))| *n as i64)),
            Arc::new(Int64Array::from_iter(rows.iter().map(|(_, (_, id))| *id))),
        ],
    )
}
