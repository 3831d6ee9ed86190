//! PostgreSQL: the connection pool, the embedded migrations and the SQL statements.
//!
//! All engine state lives here. SQL is kept in `.sql` files under `store/sql/`, named by intent
//! and embedded at compile time ([`sql`]); a test prepares every statement against the migrated
//! schema.

pub mod migrations;
pub mod sql;

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

pub use deadpool_postgres::{Object as Client, Transaction};

/// A failed database operation, with what was being attempted.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No connection could be obtained (the database is unreachable or the pool is exhausted).
    #[error("database unavailable while {context}: {source}")]
    Unavailable {
        /// What was attempted.
        context: String,
        /// The pool error.
        #[source]
        source: deadpool_postgres::PoolError,
    },
    /// A statement failed.
    #[error("database error while {context}: {}", describe(source))]
    Query {
        /// What was attempted (statement name, job/task ids).
        context: String,
        /// The driver error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The settings do not describe a usable database.
    #[error("invalid database settings: {0}")]
    Config(String),
    /// A migration cannot be applied.
    #[error("migration {version} ({name}) failed: {reason}")]
    Migration {
        /// Migration version.
        version: i32,
        /// Migration name.
        name: &'static str,
        /// Why.
        reason: String,
    },
}

impl StoreError {
    /// Whether the error means the database could not be reached at all (the caller should make the
    /// host redeliver the message rather than record a failure it cannot write).
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Unavailable { .. } => true,
            StoreError::Query { source, .. } => {
                // No server error at all (I/O), a closed connection, class 08 (connection
                // exception) or 57P (operator intervention: shutdown, crash recovery).
                source.is_closed()
                    || source.as_db_error().is_none()
                    || source
                        .code()
                        .is_some_and(|c| c.code().starts_with("08") || c.code().starts_with("57P"))
            }
            _ => false,
        }
    }
}

/// The driver error with the server's message, code and detail (the driver's own Display says
/// only "db error").
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => {
            let mut s = format!("{} (SQLSTATE {})", d.message(), d.code().code());
            if let Some(detail) = d.detail() {
                s.push_str(&format!("; {detail}"));
            }
            s
        }
        None => e.to_string(),
    }
}

/// Adds context to a driver error.
pub trait QueryContext<T> {
    /// Attaches what was being attempted.
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, StoreError>;
}

impl<T> QueryContext<T> for Result<T, tokio_postgres::Error> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Query {
            context: context(),
            source,
        })
    }
}

/// Builds the pool. It connects lazily: no connection is opened until the first query, so the
/// process answers the host's readiness probe before the database is touched.
pub fn connect_pool(database_url: &str, max_size: usize) -> Result<Pool, StoreError> {
    let mut pg = tokio_postgres::Config::from_str(database_url)
        .map_err(|e| StoreError::Config(format!("DATABASE_URL cannot be parsed: {e}")))?;
    if pg.get_application_name().is_none() {
        pg.application_name("coremachine");
    }
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(Duration::from_secs(10));
    }
    let mgr = Manager::from_config(
        pg,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(mgr)
        .max_size(max_size)
        .wait_timeout(Some(Duration::from_secs(30)))
        .create_timeout(Some(Duration::from_secs(15)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| StoreError::Config(e.to_string()))
}

/// Gets a pooled connection.
pub async fn client(pool: &Pool, context: &str) -> Result<Client, StoreError> {
    pool.get().await.map_err(|source| StoreError::Unavailable {
        context: context.to_string(),
        source,
    })
}
