//! The write gate: a store wrapper that a stopping run closes.
//!
//! What must always hold:
//! - once [`WriteGate::close`] has returned, no write of any kind (put,
//!   multipart part or completion, delete, copy, rename) reaches the store
//!   through a gated warehouse; reads go on, so nothing half-read panics;
//! - a multipart upload that is dropped before it completes (its future was
//!   cancelled, or its writer failed) is aborted, so a stopped run leaves no
//!   pending uploads behind on S3, GCS or Azure; [`WriteGate::drain`] waits
//!   for those aborts.
//!
//! This is how SIGTERM stops a run: `main` closes the gate first, then drops
//! the run's future. Whatever task is still running afterwards finds the
//! gate shut before it can publish a manifest or a rollup.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, RenameOptions, UploadPart,
};
use tokio::sync::Notify;

const STORE: &str = "write gate";

/// Shared between the process's signal handler and every warehouse a run opens.
#[derive(Debug, Clone, Default)]
pub struct WriteGate {
    inner: Arc<GateState>,
}

#[derive(Debug, Default)]
struct GateState {
    closed: AtomicBool,
    closing: Notify,
    pending_aborts: AtomicUsize,
    aborts_done: Notify,
}

impl WriteGate {
    pub fn new() -> Self {
        Self::default()
    }

    /// Refuses every later write. Idempotent.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.closing.notify_waiters();
    }

    /// Resolves once the gate is closed.
    pub async fn closed(&self) {
        loop {
            let notified = self.inner.closing.notified();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }

    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    /// Waits (up to `limit`) for the aborts of dropped uploads to finish;
    /// returns how many were still pending.
    pub async fn drain(&self, limit: Duration) -> usize {
        let wait = async {
            loop {
                let notified = self.inner.aborts_done.notified();
                if self.inner.pending_aborts.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(limit, wait).await;
        self.inner.pending_aborts.load(Ordering::SeqCst)
    }

    fn check(&self, path: &Path) -> object_store::Result<()> {
        if self.is_closed() {
            return Err(object_store::Error::Generic {
                store: STORE,
                source: format!("not writing {path}: the run is stopping").into(),
            });
        }
        Ok(())
    }

    /// Wraps `store` so that its writes pass through this gate.
    pub fn wrap(&self, store: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        Arc::new(GatedStore {
            inner: store,
            gate: self.clone(),
        })
    }
}

#[derive(Debug)]
struct GatedStore {
    inner: Arc<dyn ObjectStore>,
    gate: WriteGate,
}

impl std::fmt::Display for GatedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gated({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for GatedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.gate.check(location)?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.gate.check(location)?;
        let upload = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(GatedUpload {
            upload: Some(upload),
            path: location.clone(),
            gate: self.gate.clone(),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> object_store::Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let gate = self.gate.clone();
        let checked = locations
            .map(move |location| location.and_then(|path| gate.check(&path).map(|()| path)))
            .boxed();
        self.inner.delete_stream(checked)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.gate.check(to)?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> object_store::Result<()> {
        self.gate.check(to)?;
        self.inner.rename_opts(from, to, options).await
    }
}

/// A multipart upload that refuses parts once the gate is closed, and is
/// aborted when dropped unfinished.
#[derive(Debug)]
struct GatedUpload {
    /// `None` once completed or aborted.
    upload: Option<Box<dyn MultipartUpload>>,
    path: Path,
    gate: WriteGate,
}

#[async_trait]
impl MultipartUpload for GatedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let refused = self.gate.check(&self.path);
        match (refused, self.upload.as_mut()) {
            (Ok(()), Some(upload)) => upload.put_part(data),
            (Err(e), _) => Box::pin(futures::future::ready(Err(e))),
            (Ok(()), None) => Box::pin(futures::future::ready(Err(finished(&self.path)))),
        }
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.gate.check(&self.path)?;
        let upload = self.upload.as_mut().ok_or_else(|| finished(&self.path))?;
        let result = upload.complete().await;
        if result.is_ok() {
            self.upload = None;
        }
        result
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        match self.upload.take() {
            Some(mut upload) => upload.abort().await,
            None => Ok(()),
        }
    }
}

fn finished(path: &Path) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: format!("the upload of {path} is already finished").into(),
    }
}

impl Drop for GatedUpload {
    fn drop(&mut self) {
        let Some(mut upload) = self.upload.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let state = self.gate.inner.clone();
        state.pending_aborts.fetch_add(1, Ordering::SeqCst);
        let path = self.path.clone();
        runtime.spawn(async move {
            if let Err(e) = upload.abort().await {
                tracing::warn!(key = %path, error = %e, "Aborting an unfinished upload failed.");
            }
            state.pending_aborts.fetch_sub(1, Ordering::SeqCst);
            state.aborts_done.notify_waiters();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn a_closed_gate_refuses_writes_but_not_reads() {
        let gate = WriteGate::new();
        let store = gate.wrap(Arc::new(InMemory::new()));
        let key = Path::from("a/b");
        store.put(&key, PutPayload::from_static(b"x")).await.unwrap();
        let mut upload = store.put_multipart(&Path::from("a/c")).await.unwrap();
        gate.close();
        assert!(store.put(&key, PutPayload::from_static(b"y")).await.is_err());
        assert!(store.delete(&key).await.is_err());
        assert!(store.copy(&key, &Path::from("a/d")).await.is_err());
        assert!(store.rename(&key, &Path::from("a/f")).await.is_err());
        assert!(upload.put_part(PutPayload::from_static(b"z")).await.is_err());
        assert!(upload.complete().await.is_err());
        assert!(store.put_multipart(&Path::from("a/e")).await.is_err());
        let bytes = store.get(&key).await.unwrap().bytes().await.unwrap();
        assert_eq!(&bytes[..], b"x");
        drop(upload);
        assert_eq!(gate.drain(Duration::from_secs(5)).await, 0);
        assert!(
            store.head(&Path::from("a/c")).await.is_err(),
            "aborted upload left an object"
        );
    }

    #[tokio::test]
    async fn a_dropped_unfinished_upload_is_aborted_and_drained() {
        #[derive(Debug, Default)]
        struct Counting(Arc<AtomicUsize>);
        #[async_trait]
        impl MultipartUpload for Counting {
            fn put_part(&mut self, _: PutPayload) -> UploadPart {
                Box::pin(futures::future::ready(Ok(())))
            }
            async fn complete(&mut self) -> object_store::Result<PutResult> {
                unreachable!("not completed in this test")
            }
            async fn abort(&mut self) -> object_store::Result<()> {
                tokio::time::sleep(Duration::from_millis(50)).await;
                self.0.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        }
        let gate = WriteGate::new();
        let aborted = Arc::new(AtomicUsize::new(0));
        drop(GatedUpload {
            upload: Some(Box::new(Counting(aborted.clone()))),
            path: Path::from("x"),
            gate: gate.clone(),
        });
        assert_eq!(gate.drain(Duration::from_secs(5)).await, 0);
        assert_eq!(aborted.load(Ordering::SeqCst), 1);
    }
}
