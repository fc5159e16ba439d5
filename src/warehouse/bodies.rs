//! Whole bodies, retried: a store wrapper for cloud warehouses.
//!
//! The store library retries a request until its response headers arrive;
//! a connection that breaks while the body streams (a reset, a proxy that
//! cuts it short of its Content-Length) fails the read outright. Objects
//! this project reads are small (manifests, leases, one Parquet row group or
//! footer at a time), so a read is taken whole, and taken again when its body
//! breaks; listings likewise.
//!
//! What must always hold: a caller sees a body only when it is complete, and
//! a "not found" or a refused request is never retried here (the store
//! already decided those).

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

/// Attempts of a read whose body broke (the first included).
const ATTEMPTS: usize = 4;

#[derive(Debug)]
pub struct RetryBodies {
    inner: Arc<dyn ObjectStore>,
}

impl RetryBodies {
    pub fn wrap(inner: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        Arc::new(RetryBodies { inner })
    }
}

impl std::fmt::Display for RetryBodies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RetryBodies({})", self.inner)
    }
}

/// Errors the store has already judged final.
fn is_final(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::NotFound { .. }
            | object_store::Error::NotModified { .. }
            | object_store::Error::Precondition { .. }
            | object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }
            | object_store::Error::AlreadyExists { .. }
            | object_store::Error::NotImplemented { .. }
            | object_store::Error::InvalidPath { .. }
    )
}

fn pause(attempt: usize) -> Duration {
    Duration::from_millis(100 << attempt.min(4))
}

#[async_trait]
impl ObjectStore for RetryBodies {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self.inner.get_opts(location, options.clone()).await?;
            let (meta, range, attributes, extensions) = (
                result.meta.clone(),
                result.range.clone(),
                result.attributes.clone(),
                result.extensions.clone(),
            );
            match result.bytes().await {
                Ok(body) => {
                    return Ok(GetResult {
                        payload: GetResultPayload::Stream(futures::stream::once(async move { Ok(body) }).boxed()),
                        meta,
                        range,
                        attributes,
                        extensions,
                    });
                }
                Err(e) if is_final(&e) || attempt >= ATTEMPTS => return Err(e),
                Err(e) => {
                    tracing::debug!(key = %location, attempt, error = %e, "A body broke off; reading it again.");
                    tokio::time::sleep(pause(attempt)).await;
                }
            }
        }
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> object_store::Result<Vec<Bytes>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.inner.get_ranges(location, ranges).await {
                Err(e) if !is_final(&e) && attempt < ATTEMPTS => tokio::time::sleep(pause(attempt)).await,
                other => return other,
            }
        }
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let inner = self.inner.clone();
        let prefix = prefix.cloned();
        futures::stream::once(async move {
            let mut attempt = 0;
            loop {
                attempt += 1;
                match inner.list(prefix.as_ref()).try_collect::<Vec<_>>().await {
                    Ok(all) => return Ok(futures::stream::iter(all.into_iter().map(Ok))),
                    Err(e) if is_final(&e) || attempt >= ATTEMPTS => return Err(e),
                    Err(_) => tokio::time::sleep(pause(attempt)).await,
                }
            }
        })
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.inner.list_with_delimiter(prefix).await {
                Err(e) if !is_final(&e) && attempt < ATTEMPTS => tokio::time::sleep(pause(attempt)).await,
                other => return other,
            }
        }
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}
