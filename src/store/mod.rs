//! PostgreSQL: the connection pool, the embedded migrations and the SQL statements.
//!
//! All engine state lives here. SQL is kept in `.sql` files under `store/sql/`, named by intent
//! and embedded at compile time ([`sql`]); a test prepares every statement against the migrated
//! schema.
//!
//! Repositories, one module per aggregate ([`jobs`], [`stages`], [`task_archive`], ...), run
//! those statements and return typed rows (statuses and ids from [`crate::model`]); a guarded
//! update answers [`Guarded`]. Code outside `store/` does not read rows by position.

pub mod connect;
mod guarded;
pub mod jobs;
pub mod migrations;
pub mod pgstac;
pub mod sql;
pub mod stages;
pub mod task_archive;
// The task side's repositories.
pub mod janitor;
pub mod message_failures;
pub mod outbox;
pub mod tasks;

// The API's reads, one module per aggregate it shows.
mod decode;
pub(crate) mod event_views;
pub(crate) mod janitor_views;
pub(crate) mod job_views;
pub(crate) mod platform_requests;
pub(crate) mod stage_views;
pub(crate) mod task_views;

use deadpool_postgres::Pool;

pub use deadpool_postgres::{GenericClient, Object as Client, Transaction};
pub use guarded::Guarded;

/// A failed database operation, with what was being attempted.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No connection could be obtained (the database is unreachable or the pool is exhausted).
    #[error(
        "database unavailable while {context}: {}",
        connect::describe_pool_error(source)
    )]
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

impl StoreError {
    /// Whether the server aborted the transaction to resolve a conflict with another one (deadlock
    /// detected, serialization failure): running the same transaction again is expected to work.
    pub fn is_conflict(&self) -> bool {
        matches!(self.sqlstate(), Some("40P01" | "40001"))
    }

    /// The server's SQLSTATE, when a statement failed with one.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            StoreError::Query { source, .. } => source.code().map(|c| c.code()),
            _ => None,
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
        None => connect::describe_connect_error(e),
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

/// Times a statement as a PostgreSQL dependency (a CLIENT span, see `telemetry::dependency`),
/// named by its `.sql` file: `client.query(&stmt, &[..]).traced(sql::TASK_CLAIM).await.ctx(..)`.
pub trait Traced<T>:
    std::future::Future<Output = Result<T, tokio_postgres::Error>> + Sized
{
    /// Runs the statement `text` (one of [`sql`]'s constants) inside its dependency span.
    fn traced(self, text: &'static str) -> impl std::future::Future<Output = Self::Output> {
        crate::telemetry::dependency::Dependency::postgres(sql::name_of(text), text).run_query(self)
    }
}

impl<T, F: std::future::Future<Output = Result<T, tokio_postgres::Error>>> Traced<T> for F {}

/// Builds the pool. It connects lazily: no connection is opened until the first query, so the
/// process answers the host's readiness probe before the database is touched.
pub fn connect_pool(database_url: &str, max_size: usize) -> Result<Pool, StoreError> {
    // TLS per the URL's sslmode/sslrootcert (see connect.rs).
    connect::build_pool(database_url, max_size, None, None)
}

/// Gets a pooled connection.
pub async fn client(pool: &Pool, context: &str) -> Result<Client, StoreError> {
    pool.get().await.map_err(|source| StoreError::Unavailable {
        context: context.to_string(),
        source,
    })
}
