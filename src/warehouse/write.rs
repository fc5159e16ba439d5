//! Parquet files: one constructor for the writer settings, streamed to the
//! object store through a buffered multipart upload, so memory stays bounded
//! by one row group however large the file.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use object_store::buffered::BufWriter;
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::WriterProperties;

use super::{Error, Result, Warehouse};

/// Rows per row group: large enough for good compression, small enough that
/// pruning by the leading `account_id` column skips most of a big file.
pub const ROW_GROUP_ROWS: usize = 64 * 1024;

pub fn properties(sorted_by_leading: usize) -> WriterProperties {
    let sorting: Vec<SortingColumn> = (0..sorted_by_leading as i32)
        .map(|column_idx| SortingColumn {
            column_idx,
            descending: false,
            nulls_first: true,
        })
        .collect();
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("valid zstd level")))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        // Sorted integer columns compress well with zstd alone; dictionaries
        // of high-cardinality ids cost time and save nothing.
        .set_dictionary_enabled(false)
        .set_sorting_columns((!sorting.is_empty()).then_some(sorting))
        .set_created_by(format!("account-usage {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// A Parquet file being written; nothing is visible until [`finish`](Self::finish).
pub struct ParquetFile {
    key: String,
    writer: AsyncArrowWriter<BufWriter>,
    rows: u64,
}

impl ParquetFile {
    /// `sorted_by_leading`: how many leading columns the rows are sorted by
    /// (recorded in the file metadata for readers).
    pub fn create(warehouse: &Warehouse, key: &str, schema: SchemaRef, sorted_by_leading: usize) -> Result<Self> {
        let sink = BufWriter::with_capacity(
            warehouse.store().clone(),
            warehouse.path(key),
            warehouse.upload_part_bytes(),
        )
        .with_max_concurrency(2);
        let writer =
            AsyncArrowWriter::try_new(sink, schema, Some(properties(sorted_by_leading))).map_err(|source| {
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
