//! The warehouse: Parquet tables and manifests in object storage.
//!
//! What this module owns, and what must always hold:
//! - **Keys** come only from the typed constructors in [`paths`].
//! - **Publish order.** Data files first, then the day manifest that lists
//!   them, then clean-up of what the manifest no longer lists. A manifest is
//!   one atomic `put`, so a reader sees the whole previous version of a day or
//!   the whole new one, never half ([`manifest`]).
//! - **Idempotent.** A rerun of a day writes new files, republishes, and
//!   deletes the files of earlier runs and of other shard counts. A rerun of
//!   some accounts writes files that keep every other account's rows
//!   ([`splice`]).
//! - **Credentials** come from each store's standard environment variables
//!   (`AWS_*`, `GOOGLE_*`, `AZURE_*`), never from flags.
//! - **Bounded waits.** Every cloud request has the timeouts and retries of
//!   [`StoreSettings`]; [`Warehouse::check_access`] tells a missing bucket or
//!   refused credentials (input errors) from an unreachable store (retryable).
//! - **Whole bodies.** A cloud read whose body breaks off is read again
//!   ([`bodies`]); a caller never sees half a body.
//! - **Stoppable.** A warehouse opened with a [`gate::WriteGate`] refuses every
//!   write once the gate is closed.

mod bodies;
pub mod gate;
pub mod index;
pub mod manifest;
pub mod paths;
pub mod read;
pub mod splice;
pub mod tables;
pub mod write;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{BackoffConfig, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("unsupported warehouse URL {0:?}: expected a path, file://, s3://, gs:// or az://")]
    UnsupportedScheme(String),
    #[error("invalid warehouse URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot open warehouse {url}")]
    Open {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("warehouse {url}: the bucket or container does not exist")]
    NoSuchBucket { url: String },
    #[error("warehouse {url}: the store refused the credentials ({reason})")]
    AccessDenied { url: String, reason: &'static str },
    #[error("warehouse {url} is unreachable")]
    Unreachable {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("warehouse {op} of {key} failed")]
    Store {
        op: &'static str,
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error("writing Parquet to {key} failed")]
    Parquet {
        key: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("reading Parquet {key} failed")]
    ReadParquet {
        key: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("{key} is not a file of table {table}: it has no column {column}")]
    WrongSchema {
        key: String,
        table: &'static str,
        column: String,
    },
    #[error("building Arrow data for {key} failed")]
    Arrow {
        key: String,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error("manifest {key} is not valid: {reason}")]
    BadManifest { key: String, reason: String },
    #[error(transparent)]
    Key(#[from] paths::KeyError),
}

impl Error {
    /// Whether the user must fix the configuration (a retry cannot help):
    /// a bad URL, a store that cannot be configured from it and the
    /// environment (opening makes no request), a bucket that does not
    /// exist, refused credentials.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Error::UnsupportedScheme(_)
                | Error::InvalidUrl { .. }
                | Error::Open { .. }
                | Error::NoSuchBucket { .. }
                | Error::AccessDenied { .. }
        )
    }
}

/// Timeouts and retries of every request to a cloud store, set explicitly
/// rather than left to the store library's defaults (which retry for up to
/// three minutes). A local folder ignores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreSettings {
    /// One request, from sending to the end of its response body.
    pub request_timeout: Duration,
    /// Establishing a connection.
    pub connect_timeout: Duration,
    /// Retries of a failed idempotent request (5xx, timeouts, resets).
    pub max_retries: usize,
    /// No retry starts later than this after the first attempt.
    pub retry_timeout: Duration,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            max_retries: 3,
            retry_timeout: Duration::from_secs(60),
        }
    }
}

impl StoreSettings {
    /// As client option keys that every cloud builder accepts. (Setting a
    /// whole `ClientOptions` would drop what the environment configured,
    /// such as `AWS_ALLOW_HTTP`.)
    fn client_options(&self) -> [(&'static str, String); 2] {
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        [
            ("timeout", ms(self.request_timeout)),
            ("connect_timeout", ms(self.connect_timeout)),
        ]
    }

    fn retry(&self) -> RetryConfig {
        RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(5),
                base: 2.0,
            },
            max_retries: self.max_retries,
            retry_timeout: self.retry_timeout,
        }
    }
}

impl fmt::Display for StoreSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "request timeout {}s, connect timeout {}s, {} retries within {}s",
            self.request_timeout.as_secs_f64(),
            self.connect_timeout.as_secs_f64(),
            self.max_retries,
            self.retry_timeout.as_secs_f64()
        )
    }
}

/// What a failed access check means. The store library reports a missing
/// bucket and refused credentials as HTTP statuses inside its error text
/// (its typed request error is private), so the text is read here, in one
/// place.
fn classify_access_error(url: &WarehouseUrl, e: object_store::Error) -> Error {
    let url = url.to_string();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push(' ');
        text.push_str(&s.to_string());
        source = s.source();
    }
    let has = |needle: &str| text.contains(needle);
    match e {
        object_store::Error::PermissionDenied { .. } => Error::AccessDenied {
            url,
            reason: "permission denied",
        },
        object_store::Error::Unauthenticated { .. } => Error::AccessDenied {
            url,
            reason: "not authenticated",
        },
        _ if has("NoSuchBucket") || has("ContainerNotFound") || has("404 Not Found") => Error::NoSuchBucket { url },
        _ if has("InvalidAccessKeyId") || has("SignatureDoesNotMatch") => Error::AccessDenied {
            url,
            reason: "unknown access key or wrong secret",
        },
        _ if has("AccessDenied") || has("403 Forbidden") || has("AuthenticationFailed") => Error::AccessDenied {
            url,
            reason: "access denied",
        },
        _ if has("401 Unauthorized") => Error::AccessDenied {
            url,
            reason: "not authenticated",
        },
        source => Error::Unreachable { url, source },
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where the warehouse lives, as given by the user (validated, credentials-free).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WarehouseUrl {
    Local(std::path::PathBuf),
    Cloud(String),
}

impl std::str::FromStr for WarehouseUrl {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if s.is_empty() {
            return Err(Error::InvalidUrl {
                url: s.into(),
                reason: "empty".into(),
            });
        }
        if let Some(path) = s.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(Error::InvalidUrl {
                    url: s.into(),
                    reason: "file:// URLs need an absolute path (file:///…)".into(),
                });
            }
            return Ok(WarehouseUrl::Local(path.into()));
        }
        if let Some(masked) = with_password_masked(s) {
            return Err(Error::InvalidUrl {
                url: masked,
                reason: "a password in the URL: credentials come from the environment (AWS_*, GOOGLE_*, AZURE_*), never from the URL"
                    .into(),
            });
        }
        for scheme in ["s3://", "gs://", "az://", "abfs://", "abfss://"] {
            if let Some(rest) = s.strip_prefix(scheme) {
                if rest.is_empty() || rest.starts_with('/') {
                    return Err(Error::InvalidUrl {
                        url: s.into(),
                        reason: "missing bucket or container".into(),
                    });
                }
                return Ok(WarehouseUrl::Cloud(s.to_string()));
            }
        }
        if s.contains("://") {
            return Err(Error::UnsupportedScheme(s.to_string()));
        }
        Ok(WarehouseUrl::Local(s.into()))
    }
}

/// `url` masked up to its last `@`, when it seems to carry a password
/// (`scheme://user:password@…`; a `:` before the first `@`, so that a
/// password holding a raw `/` is caught too); `None` otherwise. A container
/// named in the user info (`abfss://container@account…`) has no `:`.
fn with_password_masked(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_at(url.find("://")? + 3);
    let (first_at, last_at) = (rest.find('@')?, rest.rfind('@')?);
    rest[..first_at]
        .contains(':')
        .then(|| format!("{scheme}***{}", &rest[last_at..]))
}

impl fmt::Display for WarehouseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WarehouseUrl::Local(p) => write!(f, "{}", p.display()),
            WarehouseUrl::Cloud(u) => f.write_str(u),
        }
    }
}

/// What [`Warehouse::get_if_changed`] found.
#[derive(Debug)]
pub enum Fetched {
    Missing,
    /// Still the version the caller knows.
    Unchanged,
    /// The object, and its version when the store gives one.
    Body {
        bytes: Bytes,
        e_tag: Option<String>,
    },
}

/// Objects [`Warehouse::get_each`] fetches at once.
const GETS_AT_ONCE: usize = 8;

/// An open warehouse: a store and the root key prefix inside it.
#[derive(Clone)]
pub struct Warehouse {
    store: Arc<dyn ObjectStore>,
    root: Path,
    url: WarehouseUrl,
    /// The folder of a local warehouse, read directly by [`Warehouse::get`].
    local: Option<std::path::PathBuf>,
}

impl fmt::Debug for Warehouse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Warehouse({})", self.url)
    }
}

impl Warehouse {
    /// Opens the warehouse with the default [`StoreSettings`]; cloud stores
    /// take their configuration from the standard environment variables.
    pub fn open(url: &WarehouseUrl) -> Result<Self> {
        Self::open_with(url, &StoreSettings::default(), &[])
    }

    /// Opens the warehouse for reading only: a local folder that does not
    /// exist reads as empty and is not created.
    pub fn open_read_only(url: &WarehouseUrl, settings: &StoreSettings) -> Result<Self> {
        match url {
            WarehouseUrl::Local(path) if !path.exists() => Ok(Warehouse {
                store: Arc::new(object_store::memory::InMemory::new()),
                root: Path::default(),
                url: url.clone(),
                local: None,
            }),
            _ => Self::open_with(url, settings, &[]),
        }
    }

    /// Like [`open`](Self::open), with store options (e.g. `aws_endpoint`)
    /// applied over the environment's.
    pub fn open_with_options(url: &WarehouseUrl, options: &[(&str, &str)]) -> Result<Self> {
        Self::open_with(url, &StoreSettings::default(), options)
    }

    /// The same warehouse, with every write passing through `gate`.
    pub fn gated(self, gate: &gate::WriteGate) -> Self {
        Warehouse {
            store: gate.wrap(self.store),
            ..self
        }
    }

    /// One cheap request (a listing of the root) that fails with what is
    /// wrong: a bucket that does not exist or refused credentials (input
    /// errors), or an unreachable store after the configured retries.
    pub async fn check_access(&self) -> Result<()> {
        // A local folder that can be read is all there is to check; the
        // store's listing would read every folder under it.
        if let Some(folder) = &self.local
            && std::fs::read_dir(folder).is_ok()
        {
            return Ok(());
        }
        self.store
            .list_with_delimiter(Some(&self.root))
            .await
            .map(drop)
            .map_err(|e| classify_access_error(&self.url, e))
    }

    /// Opens the warehouse with explicit request timeouts and retries, and
    /// store options (e.g. `aws_endpoint`) applied over the environment's.
    pub fn open_with(url: &WarehouseUrl, settings: &StoreSettings, options: &[(&str, &str)]) -> Result<Self> {
        let bad_option = |key: &str| Error::InvalidUrl {
            url: url.to_string(),
            reason: format!("unknown store option {key:?}"),
        };
        let open_err = |source| Error::Open {
            url: url.to_string(),
            source,
        };
        let (store, root): (Arc<dyn ObjectStore>, Path) = match url {
            WarehouseUrl::Local(path) => {
                std::fs::create_dir_all(path).map_err(|e| Error::InvalidUrl {
                    url: url.to_string(),
                    // create_dir_all says only "File exists" of a file.
                    reason: if path.is_file() {
                        "a file, not a folder".into()
                    } else {
                        e.to_string()
                    },
                })?;
                let store = LocalFileSystem::new_with_prefix(path).map_err(open_err)?;
                (Arc::new(store), Path::default())
            }
            WarehouseUrl::Cloud(raw) => {
                let client = settings.client_options();
                let options: Vec<(&str, &str)> = client
                    .iter()
                    .map(|(k, v)| (*k, v.as_str()))
                    .chain(options.iter().copied())
                    .collect();
                let parsed = url::Url::parse(raw).map_err(|e| Error::InvalidUrl {
                    url: raw.clone(),
                    reason: e.to_string(),
                })?;
                let root = Path::from(parsed.path().trim_matches('/'));
                let store: Arc<dyn ObjectStore> = match parsed.scheme() {
                    "s3" => {
                        let mut b = object_store::aws::AmazonS3Builder::from_env()
                            .with_url(raw.as_str())
                            .with_retry(settings.retry());
                        for (k, v) in &options {
                            b = b.with_config(k.parse().map_err(|_| bad_option(k))?, *v);
                        }
                        Arc::new(b.build().map_err(open_err)?)
                    }
                    "gs" => {
                        let mut b = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                            .with_url(raw.as_str())
                            .with_retry(settings.retry());
                        for (k, v) in &options {
                            b = b.with_config(k.parse().map_err(|_| bad_option(k))?, *v);
                        }
                        Arc::new(b.build().map_err(open_err)?)
                    }
                    _ => {
                        let mut b = object_store::azure::MicrosoftAzureBuilder::from_env()
                            .with_url(raw.as_str())
                            .with_retry(settings.retry());
                        for (k, v) in &options {
                            b = b.with_config(k.parse().map_err(|_| bad_option(k))?, *v);
                        }
                        Arc::new(b.build().map_err(open_err)?)
                    }
                };
                (bodies::RetryBodies::wrap(store), root)
            }
        };
        Ok(Warehouse {
            store,
            root,
            local: match url {
                WarehouseUrl::Local(path) => Some(path.clone()),
                WarehouseUrl::Cloud(_) => None,
            },
            url: url.clone(),
        })
    }

    pub fn url(&self) -> &WarehouseUrl {
        &self.url
    }

    /// Bytes a streaming upload buffers before it sends a part. Cloud stores
    /// need parts of at least 5 MiB; a local folder takes any size, so memory
    /// stays small there.
    pub fn upload_part_bytes(&self) -> usize {
        match self.url {
            WarehouseUrl::Local(_) => 1024 * 1024,
            WarehouseUrl::Cloud(_) => 6 * 1024 * 1024,
        }
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    pub fn path(&self, relative: &str) -> Path {
        paths::join(&self.root, relative)
    }

    /// The key relative to the root, for a path listed from the store.
    pub fn relative(&self, path: &Path) -> String {
        let full = path.as_ref();
        let root = self.root.as_ref();
        if root.is_empty() {
            full.to_string()
        } else {
            full.strip_prefix(root)
                .unwrap_or(full)
                .trim_start_matches('/')
                .to_string()
        }
    }

    /// Writes one object atomically.
    pub async fn put(&self, relative: &str, bytes: Bytes) -> Result<()> {
        self.store
            .put(&self.path(relative), PutPayload::from(bytes))
            .await
            .map(drop)
            .map_err(|source| Error::Store {
                op: "put",
                key: relative.into(),
                source,
            })
    }

    /// Reads one object; `None` when it does not exist.
    ///
    /// A local warehouse's objects are read on the calling thread: the
    /// objects read are small, and a read from the page cache costs less
    /// than the hop to the blocking pool the local store makes for each
    /// (a base-grain report reads hundreds). Any error other than a missing
    /// file is left to the store, which reports it as usual.
    pub async fn get(&self, relative: &str) -> Result<Option<Bytes>> {
        let err = |source| Error::Store {
            op: "get",
            key: relative.into(),
            source,
        };
        if let Some(folder) = &self.local
            && Path::parse(relative).is_ok_and(|p| p.as_ref() == relative)
        {
            match std::fs::read(folder.join(relative)) {
                Ok(bytes) => return Ok(Some(bytes.into())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(_) => {}
            }
        }
        match self.store.get(&self.path(relative)).await {
            Ok(r) => Ok(Some(r.bytes().await.map_err(err)?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(err(e)),
        }
    }

    /// Reads each of `keys`, in their order (`None` for one that does not
    /// exist), [`GETS_AT_ONCE`] at a time: on an object store each GET waits
    /// a round trip, so a handful of small objects (the index of every shard
    /// spec, say) costs one round trip rather than one each.
    pub async fn get_each(&self, keys: &[impl AsRef<str> + Sync]) -> Result<Vec<Option<Bytes>>> {
        // The futures are made before they are streamed: a closure over the
        // stream's items would need a signature for every lifetime, which a
        // spawned task's `Send` bound cannot prove.
        let gets: Vec<_> = keys.iter().map(|key| self.get(key.as_ref())).collect();
        futures::stream::iter(gets).buffered(GETS_AT_ONCE).try_collect().await
    }

    /// Reads one object unless its version is still `known` (an ETag from
    /// an earlier read): one conditional request, no body when unchanged.
    pub async fn get_if_changed(&self, relative: &str, known: Option<&str>) -> Result<Fetched> {
        let err = |source| Error::Store {
            op: "get",
            key: relative.into(),
            source,
        };
        let options = object_store::GetOptions {
            if_none_match: known.map(str::to_string),
            ..Default::default()
        };
        match self.store.get_opts(&self.path(relative), options).await {
            Ok(r) => {
                let e_tag = r.meta.e_tag.clone();
                Ok(Fetched::Body {
                    bytes: r.bytes().await.map_err(err)?,
                    e_tag,
                })
            }
            Err(object_store::Error::NotModified { .. }) => Ok(Fetched::Unchanged),
            Err(object_store::Error::NotFound { .. }) => Ok(Fetched::Missing),
            Err(e) => Err(err(e)),
        }
    }

    async fn list_metas(&self, folder: &str) -> Result<Vec<object_store::ObjectMeta>> {
        let prefix = self.path(folder);
        self.store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|source| Error::Store {
                op: "list",
                key: folder.into(),
                source,
            })
    }

    /// Keys (relative to the root) under a folder, sorted.
    pub async fn list(&self, folder: &str) -> Result<Vec<String>> {
        let mut keys: Vec<String> = self
            .list_metas(folder)
            .await?
            .iter()
            .map(|m| self.relative(&m.location))
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// Deletes objects in as few requests as the store takes (S3 takes a
    /// thousand keys in one), in no particular order; missing objects are
    /// fine (clean-up is idempotent).
    pub async fn delete_each(&self, relatives: &[String]) -> Result<()> {
        let Some(first) = relatives.first() else {
            return Ok(());
        };
        let paths: Vec<object_store::Result<Path>> = relatives.iter().map(|r| Ok(self.path(r))).collect();
        let mut deleted = self.store.delete_stream(futures::stream::iter(paths).boxed());
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => {
                    return Err(Error::Store {
                        op: "delete",
                        key: format!("{first} (one of {} keys)", relatives.len()),
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// Deletes one object; a missing object is fine (clean-up is idempotent).
    pub async fn delete(&self, relative: &str) -> Result<()> {
        match self.store.delete(&self.path(relative)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(Error::Store {
                op: "delete",
                key: relative.into(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_warehouse_urls() {
        assert_eq!(
            "./warehouse".parse::<WarehouseUrl>().unwrap(),
            WarehouseUrl::Local("./warehouse".into())
        );
        assert_eq!(
            "file:///tmp/w".parse::<WarehouseUrl>().unwrap(),
            WarehouseUrl::Local("/tmp/w".into())
        );
        assert!(matches!("s3://b/p".parse::<WarehouseUrl>(), Ok(WarehouseUrl::Cloud(_))));
        assert!(matches!("gs://b".parse::<WarehouseUrl>(), Ok(WarehouseUrl::Cloud(_))));
        assert!(matches!("az://c/p".parse::<WarehouseUrl>(), Ok(WarehouseUrl::Cloud(_))));
        assert!(matches!(
            "ftp://x/y".parse::<WarehouseUrl>(),
            Err(Error::UnsupportedScheme(_))
        ));
        assert!("s3://".parse::<WarehouseUrl>().is_err());
        // Credentials come from the environment: a URL with a password is
        // refused, and its error shows no password, wherever it is.
        for url in [
            "s3://key:secret@bucket/p",
            "s3://key:se/cret@bucket/p",
            "gs://u:secret@b",
            "ftp://u:secret@x/y",
        ] {
            let err = url.parse::<WarehouseUrl>().unwrap_err();
            assert!(err.is_bad_input(), "{url}");
            let text = err.to_string();
            assert!(!text.contains("secret") && !text.contains("cret"), "{url}: {text}");
            assert!(text.contains("from the environment"), "{url}: {text}");
        }
        let file = std::env::temp_dir().join(format!("account-usage-wh-file-{}", std::process::id()));
        std::fs::write(&file, "").unwrap();
        let err = Warehouse::open_with(&WarehouseUrl::Local(file.clone()), &StoreSettings::default(), &[]).unwrap_err();
        std::fs::remove_file(&file).unwrap();
        assert!(
            err.is_bad_input() && err.to_string().ends_with("a file, not a folder"),
            "{err}"
        );
        // An Azure container with no account, in the URL or the
        // environment: configuration, which a retry cannot fix.
        let err =
            Warehouse::open_with(&"az://container/p".parse().unwrap(), &StoreSettings::default(), &[]).unwrap_err();
        assert!(matches!(err, Error::Open { .. }) && err.is_bad_input(), "{err}");
        for fine in [
            "abfss://container@account.dfs.core.windows.net/p",
            "s3://bucket/prefix@v1",
            "/data/wh:1@x",
        ] {
            assert!(fine.parse::<WarehouseUrl>().is_ok(), "{fine}");
        }
        assert!("file://relative".parse::<WarehouseUrl>().is_err());
    }
}

/// For unit tests elsewhere in the crate.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Warehouse, WarehouseUrl};

    /// A local warehouse in a fresh folder of the temp directory, removed
    /// with the value.
    pub(crate) struct TempWarehouse {
        pub(crate) wh: Warehouse,
        dir: std::path::PathBuf,
    }

    impl TempWarehouse {
        pub(crate) fn new(label: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("account-usage-{label}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("temp folder");
            let wh = Warehouse::open(&WarehouseUrl::Local(dir.clone())).expect("local warehouse");
            TempWarehouse { wh, dir }
        }
    }

    impl Drop for TempWarehouse {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
