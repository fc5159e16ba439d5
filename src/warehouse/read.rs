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
