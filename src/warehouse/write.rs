//! Parquet files: one constructor for the writer settings, streamed to the
//! object store through a buffered multipart upload, so memory stays bounded
//! by one row group however large the file.

use arrow::array::RecordBatch;
use object_store::buffered::BufWriter;
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use super::paths::Table;
use super::{Error, Result, Warehouse, tables};

/// Rows per row group: large enough for good compression, small enough that
/// pruning by the leading `account_id` column skips most of a big file.
pub const ROW_GROUP_ROWS: usize = 64 * 1024;

/// How many leading columns a table's rows are sorted by (recorded in the
/// file metadata for readers).
fn sorted_by(table: Table) -> usize {
    match table {
        Table::ContactActivity | Table::AgentActivity | Table::ResolvedConversations => 4,
        Table::ProactiveMessages | Table::ContactDays | Table::ResolvedSlots => 3,
        Table::Accounts | Table::Channels | Table::Rejects => 1,
    }
}

/// The writer settings of a table.
///
/// - The tables that base-grain reports read for every day of a range
///   (`contact_days`, `agent_activity`, `resolved_slots`,
///   `proactive_messages`) are written without a compression codec: their
///   sorted ids are delta-encoded and their hour and slot columns
///   dictionary-encoded, which makes them as small as zstd makes the plain
///   columns, and reading them needs no codec (parquet builds a zstd
///   compressor and decompressor for every column chunk it reads, which cost
///   a reader more than the decompression itself).
/// - The exact grains of contacts and resolves (`contact_activity`,
///   `resolved_conversations`), which reports read only for days published
///   before the derived tables, are the biggest files a day writes, after
///   its every row is read: their columns are delta-encoded and then
///   zstd-compressed (level 1). Delta first makes them a quarter smaller
///   than zstd over plain values and takes a third off their encoding, the
///   critical path of a big day's last step (`bench/RESULTS.md`, session 31).
/// - The dimensions are zstd-compressed (level 1).
pub fn properties(table: Table) -> WriterProperties {
    let sorting: Vec<SortingColumn> = (0..sorted_by(table) as i32)
        .map(|column_idx| SortingColumn {
            column_idx,
            descending: false,
            nulls_first: true,
        })
        .collect();
    let builder = WriterProperties::builder()
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_sorting_columns(Some(sorting))
        .set_created_by(format!("account-usage {}", env!("CARGO_PKG_VERSION")));
    match table {
        Table::ContactDays | Table::AgentActivity | Table::ResolvedSlots | Table::ProactiveMessages => {
            let slots: &[&str] = match table {
                Table::ContactDays => &["first_slot", "last_slot"],
                Table::AgentActivity => &["hour"],
                _ => &["slot_start"],
            };
            let mut builder = builder
                .set_compression(Compression::UNCOMPRESSED)
                .set_dictionary_enabled(false)
                .set_encoding(Encoding::DELTA_BINARY_PACKED);
            for column in slots {
                // At most 96 slots (24 hours) a day: a dictionary, 7 bits a row.
                builder = builder.set_column_dictionary_enabled(ColumnPath::from(*column), true);
            }
            builder.build()
        }
        _ => {
            let builder = builder
                .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("valid zstd level")))
                // Dictionaries of high-cardinality ids and instants cost time
                // and save nothing.
                .set_dictionary_enabled(false);
            match table {
                Table::ContactActivity | Table::ResolvedConversations => {
                    builder.set_encoding(Encoding::DELTA_BINARY_PACKED).build()
                }
                _ => builder.build(),
            }
        }
    }
}

/// A Parquet file being written; nothing is visible until [`finish`](Self::finish).
pub struct ParquetFile {
    key: String,
    writer: AsyncArrowWriter<BufWriter>,
    rows: u64,
}

impl ParquetFile {
    /// A file of `table`, written with the table's settings ([`properties`]).
    pub fn create(warehouse: &Warehouse, key: &str, table: Table) -> Result<Self> {
        let sink = BufWriter::with_capacity(
            warehouse.store().clone(),
            warehouse.path(key),
            warehouse.upload_part_bytes(),
        )
        .with_max_concurrency(2);
        let writer =
            AsyncArrowWriter::try_new(sink, tables::schema(table), Some(properties(table))).map_err(|source| {
                Error::Parquet {
                    key: key.to_string(),
                    source,
                }
            })?;
        Ok(ParquetFile {
            key: key.to_string(),
            writer,
            rows: 0,
        })
    }

    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        self.writer.write(batch).await.map_err(|source| Error::Parquet {
            key: self.key.clone(),
            source,
        })
    }

    /// Completes the upload; returns the row count.
    pub async fn finish(self) -> Result<u64> {
        let key = self.key;
        self.writer
            .close()
            .await
            .map_err(|source| Error::Parquet { key, source })?;
        Ok(self.rows)
    }
}
