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
mod error;
mod guarded;
pub mod jobs;
pub mod migrations;
pub mod pgstac;
pub mod sql;
pub mod stages;
pub(crate) mod task_archive;
// The task side's repositories.
pub(crate) mod janitor;
pub(crate) mod message_failures;
pub mod outbox;
pub(crate) mod queue;
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
pub use error::{StoreError, describe};
pub use guarded::Guarded;

/// Adds context to a driver error.
pub(crate) trait QueryContext<T> {
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
pub(crate) trait Traced<T>:
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
