//! What a failed database operation says: [`StoreError`] with what was attempted, and the
//! driver's and the pool's errors in words (the driver's own `Display` says only "db error").

/// A failed database operation, with what was being attempted.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No connection could be obtained (the database is unreachable or the pool is exhausted).
    #[error(
        "database unavailable while {context}: {}",
        describe_pool_error(source)
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
    /// The failure of a statement that several messages shared (a batch's claim), as each of the
    /// others reports it.
    #[error("{0}")]
    Shared(String),
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
    pub(crate) fn is_unavailable(&self) -> bool {
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
    pub(crate) fn is_conflict(&self) -> bool {
        matches!(self.sqlstate(), Some("40P01" | "40001"))
    }

    /// The server's SQLSTATE, when a statement failed with one.
    pub(crate) fn sqlstate(&self) -> Option<&str> {
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
        None => describe_connect_error(e),
    }
}

/// A driver error that is not a server error (I/O, TLS), with its causes, and a hint for the
/// usual certificate mistakes. (The driver's own `Display` stops at "error performing TLS
/// handshake".)
pub(crate) fn describe_connect_error(e: &tokio_postgres::Error) -> String {
    let mut s = crate::azure::error_chain(e);
    if s.contains("UnknownIssuer") {
        s.push_str(" (sslmode=verify-full: the server certificate does not chain to a trusted root; set sslrootcert / DATABASE_SSL_ROOT_CERT to the CA that signed it; Azure Database for PostgreSQL uses DigiCert Global Root G2 and Microsoft RSA Root CA 2017)");
    } else if s.contains("NotValidForName") || s.contains("not valid for name") {
        s.push_str(" (sslmode=verify-full: the certificate does not name the host in the URL; connect with the server's own host name)");
    }
    s
}

/// A pool error with the driver's or server's detail.
pub(crate) fn describe_pool_error(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(pg) => {
            format!("cannot open a connection: {}", describe(pg))
        }
        other => other.to_string(),
    }
}
