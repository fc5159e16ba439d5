//! Parquet read from the object store by byte ranges, so that memory holds
//! one row group at a time rather than the whole file (parquet's own
//! object-store adapter is deprecated; this follows its `AsyncFileReader`).

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStream, ParquetRecordBatchStreamBuilder};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use super::{Error, Result, Warehouse};

/// Footer bytes fetched at once (the metadata of our files fits).
const FOOTER_HINT: usize = 64 * 1024;

pub struct RangeReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

impl AsyncFileReader for RangeReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        Box::pin(async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        })
    }

    /// A row group's column chunks in one request to the store: the local
    /// store reads them on one blocking task (the default asked for each
    /// chunk in turn, a round trip through the blocking pool apiece), and
    /// object stores fetch nearby ranges together.
    fn get_byte_ranges(&mut self, ranges: Vec<Range<u64>>) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        Box::pin(async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        })
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        Box::pin(async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_prefetch_hint(Some(FOOTER_HINT))
                .load_and_finish(&mut *self, size)
                .await?;
            Ok(Arc::new(metadata))
        })
    }
}

/// The batches of a Parquet object, fetched and decoded a row group at a
/// time; `None` when the object does not exist.
pub async fn stream_batches(
    warehouse: &Warehouse,
    relative: &str,
) -> Result<Option<ParquetRecordBatchStream<RangeReader>>> {
    let path = warehouse.path(relative);
    let meta = match warehouse.store().head(&path).await {
        Ok(m) => m,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(source) => {
            return Err(Error::Store {
                op: "head",
                key: relative.into(),
                source,
            });
        }
    };
    let reader = RangeReader {
        store: warehouse.store().clone(),
        path,
        size: meta.size,
    };
    let perr = |source| Error::ReadParquet {
        key: relative.to_string(),
        source,
    };
    let stream = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(perr)?
        .with_batch_size(64 * 1024)
        .build()
        .map_err(perr)?;
    Ok(Some(stream))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{AsArray, Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use futures::TryStreamExt;
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;

    use super::stream_batches;
    use crate::warehouse::testing::TempWarehouse;

    /// Each row group's column chunks come back in one request, each to its
    /// column: a chunk handed to another column would decode as garbage or
    /// fail.
    #[tokio::test]
    async fn batches_read_back_across_row_groups_and_columns() {
        let temp = TempWarehouse::new("read-ranges");
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Utf8, false),
            Field::new("c", DataType::Int64, false),
        ]));
        let n = 10_000i64;
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(0..n)),
                Arc::new(StringArray::from_iter_values((0..n).map(|i| format!("row {i}")))),
                Arc::new(Int64Array::from_iter_values((0..n).map(|i| i * i))),
            ],
        )
        .unwrap();
        let mut bytes = Vec::new();
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(1_500))
            .build();
        let mut writer = ArrowWriter::try_new(&mut bytes, schema, Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        temp.wh.put("t/part.parquet", bytes.into()).await.unwrap();

        let batches: Vec<RecordBatch> = stream_batches(&temp.wh, "t/part.parquet")
            .await
            .unwrap()
            .expect("the file is there")
            .try_collect()
            .await
            .unwrap();
        let read = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
        assert_eq!(read, batch);
        assert_eq!(read.column(1).as_string::<i32>().value(9_999), "row 9999");
        assert_eq!(read.column(2).as_primitive::<Int64Type>().value(7), 49);
        assert!(stream_batches(&temp.wh, "t/missing.parquet").await.unwrap().is_none());
    }
}
