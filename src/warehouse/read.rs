//! Parquet read from the object store by byte ranges, so that memory holds
//! one row group at a time rather than the whole file (parquet's own
//! object-store adapter is deprecated; this follows its `AsyncFileReader`).
//!
//! A file is opened with one request: the last [`FOOTER_HINT`] bytes, which
//! tell its size and hold its footer, and the whole of a file no larger.
//! What must always hold: a range is answered from those bytes only when
//! they cover all of it; anything else goes to the store.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStream, ParquetRecordBatchStreamBuilder};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use super::{Error, Result, Warehouse};

/// The bytes a file is opened with, from its end: its footer (the metadata
/// of our files fits) and, for a file this small, everything.
const FOOTER_HINT: usize = 64 * 1024;

pub struct RangeReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
    /// The file's last bytes, from `tail_start` to its end.
    tail: Bytes,
    tail_start: u64,
}

impl RangeReader {
    /// Opens `path` with one request for its last bytes; `None` when it does
    /// not exist. A store that takes no suffix range (Azure) is asked for
    /// the size first, and the footer is then read like any other range.
    async fn open(store: &Arc<dyn ObjectStore>, path: Path) -> object_store::Result<Option<Self>> {
        let options = GetOptions {
            range: Some(GetRange::Suffix(FOOTER_HINT as u64)),
            ..Default::default()
        };
        let (size, tail_start, tail) = match store.get_opts(&path, options).await {
            Ok(opened) => {
                let (size, tail_start) = (opened.meta.size, opened.range.start);
                (size, tail_start, opened.bytes().await?)
            }
            Err(object_store::Error::NotSupported { .. }) => match store.head(&path).await {
                Ok(meta) => (meta.size, meta.size, Bytes::new()),
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e),
            },
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(RangeReader {
            store: store.clone(),
            path,
            size,
            tail,
            tail_start,
        }))
    }

    /// `range` from the bytes already held, when they cover it.
    fn held(&self, range: &Range<u64>) -> Option<Bytes> {
        let start = range.start.checked_sub(self.tail_start)?;
        let end = range.end.checked_sub(self.tail_start)?;
        (start <= end && end <= self.tail.len() as u64).then(|| self.tail.slice(start as usize..end as usize))
    }
}

impl AsyncFileReader for RangeReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        Box::pin(async move {
            if let Some(bytes) = self.held(&range) {
                return Ok(bytes);
            }
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
            if let Some(all) = ranges.iter().map(|r| self.held(r)).collect::<Option<Vec<_>>>() {
                return Ok(all);
            }
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
    let opened = RangeReader::open(warehouse.store(), warehouse.path(relative)).await;
    let reader = match opened {
        Ok(Some(reader)) => reader,
        Ok(None) => return Ok(None),
        Err(source) => {
            return Err(Error::Store {
                op: "open",
                key: relative.into(),
                source,
            });
        }
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

    /// `n` rows in row groups of 1,500, stored at `key`; returns the batch
    /// and the file's size.
    async fn stored(temp: &TempWarehouse, key: &str, n: i64) -> (RecordBatch, usize) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Utf8, false),
            Field::new("c", DataType::Int64, false),
        ]));
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
        let size = bytes.len();
        temp.wh.put(key, bytes.into()).await.unwrap();
        (batch, size)
    }

    async fn read_all(temp: &TempWarehouse, key: &str) -> Result<RecordBatch, parquet::errors::ParquetError> {
        let batches: Vec<RecordBatch> = stream_batches(&temp.wh, key)
            .await
            .unwrap()
            .expect("the file is there")
            .try_collect()
            .await?;
        Ok(arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap())
    }

    /// Each row group's column chunks come back in one request, each to its
    /// column: a chunk handed to another column would decode as garbage or
    /// fail. The file is larger than the bytes it is opened with, so its
    /// first row groups come from the store and its last from those bytes,
    /// one of them straddling where they begin.
    #[tokio::test]
    async fn batches_read_back_across_row_groups_and_columns() {
        let temp = TempWarehouse::new("read-ranges");
        let (batch, size) = stored(&temp, "t/part.parquet", 10_000).await;
        assert!(
            size > 2 * super::FOOTER_HINT,
            "{size} bytes: too small to test reads past the held bytes"
        );
        let read = read_all(&temp, "t/part.parquet").await.unwrap();
        assert_eq!(read, batch);
        assert_eq!(read.column(1).as_string::<i32>().value(9_999), "row 9999");
        assert_eq!(read.column(2).as_primitive::<Int64Type>().value(7), 49);
        assert!(stream_batches(&temp.wh, "t/missing.parquet").await.unwrap().is_none());
    }

    /// A file no larger than the bytes it is opened with is read from them
    /// alone: it still reads after the object is gone. A larger one does not.
    #[tokio::test]
    async fn a_small_file_is_read_with_the_request_that_opens_it() {
        let temp = TempWarehouse::new("read-small");
        for (n, whole) in [(300, true), (10_000, false)] {
            let key = format!("t/part-{n}.parquet");
            let (batch, size) = stored(&temp, &key, n).await;
            assert_eq!(size <= super::FOOTER_HINT, whole, "{size} bytes");
            let stream = stream_batches(&temp.wh, &key)
                .await
                .unwrap()
                .expect("the file is there");
            temp.wh.delete(&key).await.unwrap();
            let read: Result<Vec<RecordBatch>, _> = stream.try_collect().await;
            match read {
                Ok(batches) => {
                    assert!(whole, "{n} rows read after the object was deleted");
                    assert_eq!(
                        arrow::compute::concat_batches(&batch.schema(), &batches).unwrap(),
                        batch
                    );
                }
                Err(e) => assert!(!whole, "{n} rows: {e}"),
            }
        }
    }

    /// A store that refuses suffix ranges, as Azure's does.
    #[derive(Debug)]
    struct NoSuffix(Arc<dyn object_store::ObjectStore>);

    impl std::fmt::Display for NoSuffix {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "NoSuffix")
        }
    }

    #[async_trait::async_trait]
    impl object_store::ObjectStore for NoSuffix {
        async fn put_opts(
            &self,
            location: &object_store::path::Path,
            payload: object_store::PutPayload,
            opts: object_store::PutOptions,
        ) -> object_store::Result<object_store::PutResult> {
            self.0.put_opts(location, payload, opts).await
        }
        async fn put_multipart_opts(
            &self,
            location: &object_store::path::Path,
            opts: object_store::PutMultipartOptions,
        ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
            self.0.put_multipart_opts(location, opts).await
        }
        async fn get_opts(
            &self,
            location: &object_store::path::Path,
            options: object_store::GetOptions,
        ) -> object_store::Result<object_store::GetResult> {
            if let Some(object_store::GetRange::Suffix(_)) = options.range {
                return Err(object_store::Error::NotSupported {
                    source: "no suffix ranges here".into(),
                });
            }
            self.0.get_opts(location, options).await
        }
        fn delete_stream(
            &self,
            locations: futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>>,
        ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>> {
            self.0.delete_stream(locations)
        }
        fn list(
            &self,
            prefix: Option<&object_store::path::Path>,
        ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
            self.0.list(prefix)
        }
        async fn list_with_delimiter(
            &self,
            prefix: Option<&object_store::path::Path>,
        ) -> object_store::Result<object_store::ListResult> {
            self.0.list_with_delimiter(prefix).await
        }
        async fn copy_opts(
            &self,
            from: &object_store::path::Path,
            to: &object_store::path::Path,
            options: object_store::CopyOptions,
        ) -> object_store::Result<()> {
            self.0.copy_opts(from, to, options).await
        }
    }

    /// Where suffix ranges are refused, a file is opened by its size first
    /// and reads the same; a missing one is still `None`.
    #[tokio::test]
    async fn a_store_without_suffix_ranges_is_asked_for_the_size_first() {
        let temp = TempWarehouse::new("read-no-suffix");
        let (batch, _) = stored(&temp, "t/part.parquet", 300).await;
        let store: Arc<dyn object_store::ObjectStore> = Arc::new(NoSuffix(temp.wh.store().clone()));
        let reader = super::RangeReader::open(&store, temp.wh.path("t/part.parquet"))
            .await
            .unwrap()
            .expect("the file is there");
        assert!(reader.tail.is_empty());
        let batches: Vec<RecordBatch> = parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder::new(reader)
            .await
            .unwrap()
            .build()
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(
            arrow::compute::concat_batches(&batch.schema(), &batches).unwrap(),
            batch
        );
        let missing = super::RangeReader::open(&store, temp.wh.path("t/missing.parquet")).await;
        assert!(matches!(missing, Ok(None)));
    }

    #[test]
    fn held_bytes_answer_only_ranges_they_cover() {
        let reader = super::RangeReader {
            store: Arc::new(object_store::memory::InMemory::new()),
            path: "x".into(),
            size: 100,
            tail: bytes::Bytes::from_iter(60u8..100),
            tail_start: 60,
        };
        assert_eq!(
            reader.held(&(60..100)).as_deref(),
            Some(&(60u8..100).collect::<Vec<_>>()[..])
        );
        assert_eq!(reader.held(&(70..72)).as_deref(), Some(&[70u8, 71][..]));
        assert_eq!(reader.held(&(100..100)).as_deref(), Some(&[][..]));
        assert_eq!(reader.held(&(59..70)), None);
        assert_eq!(reader.held(&(90..101)), None);
        assert_eq!(reader.held(&(0..10)), None);
    }
}
