//! The operational database: where it is, how to reach it, and its schema.
//!
//! Two backends serve the same reference schema (`sql/source/`): PostgreSQL,
//! the production source, and SQLite, the embedded default for demos and
//! laptops. Everything above this module is written against [`SourceDb`] and
//! does not care which one it has.
//!
//! Credentials live only in the URL or the environment; [`SourceUrl`]'s
//! `Display` redacts the password so that a URL can go into logs.

use std::fmt;
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
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
    #[error("unsupported source URL scheme in {0:?}: expected postgres://… or sqlite://…")]
    UnsupportedScheme(String),
    #[error("invalid source URL {url}: {source}")]
    InvalidUrl { url: String, source: sqlx::Error },
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("{what} failed on {url}: {source}")]
    Query {
        what: &'static str,
        url: String,
        source: sqlx::Error,
    },
    #[error("cannot create the directory for {path}: {source}")]
    CreateDir { path: String, source: std::io::Error },
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
            Ok(SourceUrl::Sqlite(url.to_string()))
        } else {
            Err(Error::UnsupportedScheme(redact(url)))
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

/// Replaces the password of `scheme://user:password@host…` with `***`.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &authority[..colon],
            &url[scheme_end + 3 + at..]
        ),
        _ => url.to_string(),
    }
}

/// An open connection pool to the source.
#[derive(Clone)]
pub enum SourceDb {
    Postgres { pool: PgPool, url: SourceUrl },
    Sqlite { pool: SqlitePool, url: SourceUrl },
}

impl SourceDb {
    /// Opens a pool of up to `connections` connections. A SQLite file (and its
    /// directory) is created when missing.
    pub async fn connect(url: &SourceUrl, connections: u32) -> Result<Self> {
        let connect_err = |source| Error::Connect {
            url: url.to_string(),
            source,
        };
        match url {
            SourceUrl::Postgres(raw) => {
                let options = PgConnectOptions::from_str(raw)
                    .map_err(connect_err)?
                    .application_name("account-usage");
                let pool = PgPoolOptions::new()
                    .max_connections(connections)
                    .connect_with(options)
                    .await
                    .map_err(connect_err)?;
                Ok(SourceDb::Postgres { pool, url: url.clone() })
            }
            SourceUrl::Sqlite(raw) => {
                let options = SqliteConnectOptions::from_str(raw)
                    .map_err(connect_err)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal);
                if let Some(dir) = options.get_filename().parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|source| Error::CreateDir {
                        path: dir.display().to_string(),
                        source,
                    })?;
                }
                let pool = SqlitePoolOptions::new()
                    .max_connections(connections)
                    .connect_with(options)
                    .await
                    .map_err(connect_err)?;
                Ok(SourceDb::Sqlite { pool, url: url.clone() })
            }
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

    pub async fn close(&self) {
        match self {
            SourceDb::Postgres { pool, .. } => pool.close().await,
            SourceDb::Sqlite { pool, .. } => pool.close().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_only_the_password() {
        assert_eq!(redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("postgres://h/db?password=x"), "postgres://h/db?password=x");
        assert_eq!(redact("sqlite://demo/source.db"), "sqlite://demo/source.db");
    }

    #[test]
    fn parses_known_schemes_and_rejects_others() {
        assert!(matches!(
            "postgres://u@h/db".parse::<SourceUrl>(),
            Ok(SourceUrl::Postgres(_))
        ));
        assert!(matches!("sqlite://x.db".parse::<SourceUrl>(), Ok(SourceUrl::Sqlite(_))));
        let err = "mysql://u:pw@h/db".parse::<SourceUrl>().unwrap_err().to_string();
        assert!(err.contains("unsupported") && !err.contains("pw"), "{err}");
    }

    #[test]
    fn display_never_shows_the_password() {
        let url: SourceUrl = "postgres://u:hunter2@h/db".parse().unwrap();
        assert!(!format!("{url} {url:?}").contains("hunter2"));
    }
}
