//! The operational database: where it is, how to reach it, and its schema.
//!
//! Two backends serve the same reference schema (`sql/source/`): PostgreSQL,
//! the production source, and SQLite, the embedded default for demos and
//! laptops. Everything above this module is written against [`SourceDb`] and
//! does not care which one it has.
//!
//! Credentials live only in the URL or the environment; [`SourceUrl`]'s
//! `Display` redacts the password so that a URL can go into logs.
//!
//! What must always hold:
//! - [`Access::ReadOnly`] (what `run` uses) never writes to the source: SQLite
//!   is opened read-only, its journal mode is left alone, and a missing file
//!   is an input error, never created; PostgreSQL reads in read-only
//!   transactions (see `extract`);
//! - connecting fails fast and says why: the first connection is made
//!   directly (not through the pool, whose acquire loop would turn "connection
//!   refused" into "pool timed out" after 30 s), bounded by the connect
//!   timeout;
//! - every statement is bounded, on the server (`statement_timeout`) and on
//!   the client ([`SourceSettings::statement_timeout`]), so a server that
//!   vanishes mid-run fails the run instead of hanging it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};
use sqlx::{PgPool, SqlitePool};

const POSTGRES_SCHEMA: &str = include_str!("../../sql/source/postgres.sql");
const SQLITE_SCHEMA: &str = include_str!("../../sql/source/sqlite.sql");

/// The tables of the reference schema, in load order.
pub const TABLES: [&str; 7] = [
    "accounts",
    "channels",
    "agents",
    "contacts",
    "conversations",
    "messages",
    "conversation_events",
];

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The scheme only: the rest of the URL may hold a password.
    #[error("unsupported source URL scheme {0:?}: expected postgres://… or sqlite://…")]
    UnsupportedScheme(String),
    /// Nothing of the text: it may hold a password (a libpq
    /// `host=… password=…` string, a URL without its scheme).
    #[error(
        "the source is not a URL: expected postgres://… or sqlite://… (a key=value connection string is not taken)"
    )]
    NotAUrl,
    #[error("invalid source URL {url}")]
    InvalidUrl {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    /// An in-memory database is private to one connection of the pool, so
    /// the schema, the rows and the check between them would each see a
    /// different, empty database.
    #[error("the SQLite source {url} names no file: expected sqlite://path/to/file.db")]
    NoFile { url: String },
    #[error("the SQLite source {path} is a folder, not a database file")]
    Folder { path: String },
    #[error("source database file {path} does not exist (run reads an existing source and never creates one)")]
    MissingFile { path: String },
    #[error("cannot connect to the source database at {host}")]
    Connect {
        host: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot connect to the source database at {host}: no answer within {}s (--connect-timeout)", .after.as_secs_f64())]
    ConnectTimeout { host: String, after: Duration },
    #[error("{what} failed on {url}")]
    Query {
        what: &'static str,
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot create the directory for {path}")]
    CreateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Whether the user must fix the configuration (a retry cannot help).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Error::UnsupportedScheme(_)
                | Error::NotAUrl
                | Error::InvalidUrl { .. }
                | Error::NoFile { .. }
                | Error::Folder { .. }
                | Error::MissingFile { .. }
        )
    }
}

/// How a process may use the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `run`: read an existing database, change nothing.
    ReadOnly,
    /// `seed`: create the file and schema when missing, load rows.
    ReadWrite,
}

/// Bounds on waiting for the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceSettings {
    /// Establishing one connection (TCP, TLS, authentication).
    pub connect_timeout: Duration,
    /// One statement, on the server and, for a server that stops answering,
    /// on the client.
    pub statement_timeout: Duration,
}

impl Default for SourceSettings {
    fn default() -> Self {
        SourceSettings {
            connect_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(30 * 60),
        }
    }
}

impl fmt::Display for SourceSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connect timeout {}s, statement timeout {}s",
            self.connect_timeout.as_secs_f64(),
            self.statement_timeout.as_secs_f64()
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A validated source location.
#[derive(Clone, PartialEq, Eq)]
pub enum SourceUrl {
    Postgres(String),
    Sqlite(String),
}

impl FromStr for SourceUrl {
    type Err = Error;

    fn from_str(url: &str) -> Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            PgConnectOptions::from_str(url).map_err(|source| Error::InvalidUrl {
                url: redact(url),
                source,
            })?;
            Ok(SourceUrl::Postgres(url.to_string()))
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url).map_err(|source| Error::InvalidUrl {
                url: redact(url),
                source,
            })?;
            let query = url.split_once('?').map_or("", |(_, q)| q);
            let in_memory = options
                .get_filename()
                .to_string_lossy()
                .starts_with("file:sqlx-in-memory")
                || query.split('&').any(|pair| pair == "mode=memory");
            if options.get_filename().as_os_str().is_empty() || in_memory {
                return Err(Error::NoFile { url: redact(url) });
            }
            Ok(SourceUrl::Sqlite(url.to_string()))
        } else {
            match url.split_once("://") {
                Some((scheme, _))
                    if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
                {
                    Err(Error::UnsupportedScheme(scheme.to_string()))
                }
                _ => Err(Error::NotAUrl),
            }
        }
    }
}

impl fmt::Display for SourceUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceUrl::Postgres(u) | SourceUrl::Sqlite(u) => f.write_str(&redact(u)),
        }
    }
}

impl fmt::Debug for SourceUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SourceUrl({self})")
    }
}

/// `url` with its passwords replaced by `***`: the one in its authority
/// (`scheme://user:password@host…`), the value of any query parameter
/// whose name ends in `password` (`?password=…`, libpq's other spelling,
/// which sqlx takes too; its name compared decoded, as sqlx reads it), and
/// the fragment, which a `#` in a password would start.
///
/// A password with a raw `/`, `?` or `#` ends the authority early, so an
/// `@` after the authority's end means its user info cannot be told apart:
/// then everything up to the last `@` is masked (`postgres://***@host/db`).
/// That hides a query value holding an `@` too, rather than risk a secret.
/// Text without a scheme is masked up to its last `@` the same way.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        // Without a scheme nothing says where user info ends: an `@` may
        // follow a password (`etl:pw@db`), so all before the last is masked.
        return match url.rfind('@') {
            Some(at) => format!("***{}", &url[at..]),
            None => url.to_string(),
        };
    };
    let (scheme, rest) = url.split_at(scheme_end + 3);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let masked = if rest[authority_end..].contains('@') {
        let at = rest.rfind('@').expect("an @ was found");
        format!("{scheme}***{}", &rest[at..])
    } else {
        let authority = &rest[..authority_end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => format!("{scheme}{}:***{}", &authority[..colon], &rest[at..]),
            _ => url.to_string(),
        }
    };
    redact_query_passwords(&masked)
}

fn redact_query_passwords(url: &str) -> String {
    let (url, fragment) = match url.split_once('#') {
        Some((url, _)) => (url, "#***"),
        None => (url, ""),
    };
    let Some((head, query)) = url.split_once('?') else {
        return format!("{url}{fragment}");
    };
    let params: Vec<String> = query
        .split('&')
        .map(|param| {
            let name = url::form_urlencoded::parse(param.as_bytes())
                .next()
                .map(|(name, _)| name.to_ascii_lowercase());
            match (name, param.split_once('=')) {
                (Some(name), Some((raw_name, _))) if name.ends_with("password") => format!("{raw_name}=***"),
                _ => param.to_string(),
            }
        })
        .collect();
    format!("{head}?{}{fragment}", params.join("&"))
}

/// An open connection pool to the source.
#[derive(Clone)]
pub enum SourceDb {
    Postgres {
        pool: PgPool,
        url: SourceUrl,
        settings: SourceSettings,
    },
    Sqlite {
        pool: SqlitePool,
        url: SourceUrl,
        settings: SourceSettings,
    },
}

impl SourceDb {
    /// Opens a pool of up to `connections` connections, after one direct
    /// connection that fails fast with the real cause.
    pub async fn connect(url: &SourceUrl, connections: u32, access: Access, settings: SourceSettings) -> Result<Self> {
        match url {
            SourceUrl::Postgres(raw) => {
                let options = PgConnectOptions::from_str(raw).map_err(|source| Error::InvalidUrl {
                    url: url.to_string(),
                    source,
                })?;
                let host = format!("{}:{}", options.get_host(), options.get_port());
                let timeout_ms = settings.statement_timeout.as_millis().to_string();
                // sqlx would log every statement over a second, whole, at
                // WARN: an extract query always is. Our own lines say what ran.
                let options = options
                    .application_name("account-usage")
                    .options([("statement_timeout", timeout_ms.as_str())])
                    .disable_statement_logging();
                let first = tokio::time::timeout(settings.connect_timeout, sqlx::PgConnection::connect_with(&options))
                    .await
                    .map_err(|_| Error::ConnectTimeout {
                        host: host.clone(),
                        after: settings.connect_timeout,
                    })?
                    .map_err(|source| Error::Connect {
                        host: host.clone(),
                        source,
                    })?;
                let _ = first.close().await;
                let pool = PgPoolOptions::new()
                    .max_connections(connections)
                    .acquire_timeout(settings.connect_timeout)
                    .connect_lazy_with(options);
                Ok(SourceDb::Postgres {
                    pool,
                    url: url.clone(),
                    settings,
                })
            }
            SourceUrl::Sqlite(raw) => {
                let options = SqliteConnectOptions::from_str(raw).map_err(|source| Error::InvalidUrl {
                    url: url.to_string(),
                    source,
                })?;
                let options = options.disable_statement_logging();
                let path = options.get_filename().to_path_buf();
                if path.is_dir() {
                    return Err(Error::Folder {
                        path: path.display().to_string(),
                    });
                }
                let options = match access {
                    Access::ReadOnly => {
                        if !path.is_file() {
                            return Err(Error::MissingFile {
                                path: path.display().to_string(),
                            });
                        }
                        options.read_only(true)
                    }
                    Access::ReadWrite => {
                        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                            std::fs::create_dir_all(dir).map_err(|source| Error::CreateDir {
                                path: dir.display().to_string(),
                                source,
                            })?;
                        }
                        options
                            .create_if_missing(true)
                            .journal_mode(SqliteJournalMode::Wal)
                            .synchronous(SqliteSynchronous::Normal)
                    }
                };
                let pool = SqlitePoolOptions::new()
                    .max_connections(connections)
                    .acquire_timeout(settings.connect_timeout)
                    .connect_with(options)
                    .await
                    .map_err(|source| Error::Connect {
                        host: path.display().to_string(),
                        source,
                    })?;
                Ok(SourceDb::Sqlite {
                    pool,
                    url: url.clone(),
                    settings,
                })
            }
        }
    }

    pub fn settings(&self) -> SourceSettings {
        match self {
            SourceDb::Postgres { settings, .. } | SourceDb::Sqlite { settings, .. } => *settings,
        }
    }

    pub fn url(&self) -> &SourceUrl {
        match self {
            SourceDb::Postgres { url, .. } | SourceDb::Sqlite { url, .. } => url,
        }
    }

    pub(crate) fn query_err(&self, what: &'static str) -> impl FnOnce(sqlx::Error) -> Error + '_ {
        move |source| Error::Query {
            what,
            url: self.url().to_string(),
            source,
        }
    }

    /// Creates the reference schema where it is missing (idempotent).
    pub async fn ensure_schema(&self) -> Result<()> {
        let schema = match self {
            SourceDb::Postgres { .. } => POSTGRES_SCHEMA,
            SourceDb::Sqlite { .. } => SQLITE_SCHEMA,
        };
        self.execute_script("creating the reference schema", schema).await
    }

    /// Runs a script of statements that returns nothing.
    pub(crate) async fn execute_script(&self, what: &'static str, sql: &'static str) -> Result<()> {
        let err = self.query_err(what);
        match self {
            SourceDb::Postgres { pool, .. } => sqlx::raw_sql(sql).execute(pool).await.map(drop),
            SourceDb::Sqlite { pool, .. } => sqlx::raw_sql(sql).execute(pool).await.map(drop),
        }
        .map_err(err)
    }

    /// Runs a query that returns one integer.
    pub(crate) async fn scalar_i64(&self, what: &'static str, sql: &'static str) -> Result<i64> {
        let err = self.query_err(what);
        match self {
            SourceDb::Postgres { pool, .. } => {
                let v: i32 = sqlx::query_scalar(sql).fetch_one(pool).await.map_err(err)?;
                Ok(v.into())
            }
            SourceDb::Sqlite { pool, .. } => sqlx::query_scalar(sql).fetch_one(pool).await.map_err(err),
        }
    }

    /// Closes the pool; a server that no longer answers is not waited for
    /// longer than the connect timeout.
    pub async fn close(&self) {
        let close = async {
            match self {
                SourceDb::Postgres { pool, .. } => pool.close().await,
                SourceDb::Sqlite { pool, .. } => pool.close().await,
            }
        };
        let _ = tokio::time::timeout(self.settings().connect_timeout, close).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_only_the_password() {
        assert_eq!(redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact("postgres://h/db?sslmode=disable&password=x&user=u"),
            "postgres://h/db?sslmode=disable&password=***&user=u"
        );
        assert_eq!(
            redact("postgres://u:a@h/db?Password=b&pass%77ord=c&sslpassword=d#password=e"),
            "postgres://u:***@h/db?Password=***&pass%77ord=***&sslpassword=***#***"
        );
        assert_eq!(
            redact("postgres://h/db?passwords_seen=2"),
            "postgres://h/db?passwords_seen=2"
        );
        // A password with a raw `?`, `/` or `#` (or starting with digits,
        // which then read as a port): the user info is masked to the last `@`.
        for raw in ["pa?ss", "pa/ss", "pa#ss", "2024?Summer", "2024/x", "p@ss?w", "p:w"] {
            let url = format!("postgres://u:{raw}@h:5432/db?sslmode=require");
            let shown = redact(&url);
            assert!(!shown.contains(raw), "{url} shown as {shown}");
            assert!(shown.ends_with("@h:5432/db?sslmode=require"), "{url} shown as {shown}");
        }
        // A `#` in a query password would start the fragment.
        assert_eq!(
            redact("postgres://h/db?password=a#b"),
            "postgres://h/db?password=***#***"
        );
        // The cost of that caution: an `@` in a query value hides the host.
        assert_eq!(
            redact("postgres://h/db?application_name=me@laptop"),
            "postgres://***@laptop"
        );
        assert_eq!(redact("https://gw:9091/"), "https://gw:9091/");
        assert_eq!(redact("sqlite://demo/source.db"), "sqlite://demo/source.db");
        assert_eq!(redact("sqlite:demo/source.db"), "sqlite:demo/source.db");
        assert_eq!(redact("etl:pw@gw:9091"), "***@gw:9091");
    }

    #[test]
    fn parses_known_schemes_and_rejects_others() {
        assert!(matches!(
            "postgres://u@h/db".parse::<SourceUrl>(),
            Ok(SourceUrl::Postgres(_))
        ));
        assert!(matches!("sqlite://x.db".parse::<SourceUrl>(), Ok(SourceUrl::Sqlite(_))));
        assert!(matches!(
            "sqlite:x.db?mode=ro".parse::<SourceUrl>(),
            Ok(SourceUrl::Sqlite(_))
        ));
        for no_file in [
            "sqlite://",
            "sqlite:",
            "sqlite::memory:",
            "sqlite://:memory:",
            "sqlite://x.db?mode=memory",
        ] {
            let err = no_file.parse::<SourceUrl>().unwrap_err();
            assert!(matches!(err, Error::NoFile { .. }), "{no_file}: {err}");
        }
        assert!(matches!(
            "sqlite://x.db?colour=red".parse::<SourceUrl>(),
            Err(Error::InvalidUrl { .. })
        ));
        let err = "mysql://u:pw@h/db".parse::<SourceUrl>().unwrap_err().to_string();
        assert!(
            err.contains("unsupported") && err.contains("\"mysql\"") && !err.contains("pw"),
            "{err}"
        );
        // Not URLs: nothing of them is echoed, as they may hold a password.
        for text in ["host=db password=pw", "u:pw@db/ops", "pw", "s p://u:pw@h"] {
            let err = text.parse::<SourceUrl>().unwrap_err().to_string();
            assert!(err.starts_with("the source is not a URL"), "{text}: {err}");
            assert!(!err.contains("pw"), "{text}: {err}");
        }
    }

    #[test]
    fn display_never_shows_the_password() {
        let url: SourceUrl = "postgres://u:hunter2@h/db".parse().unwrap();
        assert!(!format!("{url} {url:?}").contains("hunter2"));
    }
}
