//! The fixed statements of ingest_vector (catalog look-ups and locks, prepared by
//! tests/vector_job.rs); the statements naming the caller's table are built in
//! [`super::table`].

/// The schema of the postgis extension.
pub const POSTGIS_SCHEMA: &str = include_str!("sql/postgis_schema.sql");
/// Whether a schema exists.
pub const SCHEMA_EXISTS: &str = include_str!("sql/schema_exists.sql");
/// A table's comment (CoreMachine's owner mark).
pub const TABLE_COMMENT: &str = include_str!("sql/table_comment.sql");
/// A transaction-scoped advisory lock on a text key.
pub const ADVISORY_XACT_LOCK: &str = include_str!("sql/advisory_xact_lock.sql");
/// Whether a relation of this (quoted, qualified) name exists.
pub const REGCLASS_EXISTS: &str = include_str!("sql/regclass_exists.sql");
/// Installs PostGIS when missing (local mode; utility statement, not prepared).
pub const CREATE_POSTGIS: &str = "CREATE EXTENSION IF NOT EXISTS postgis";

/// Every prepared statement, for the statement test.
pub const ALL: [(&str, &str); 5] = [
    ("regclass_exists", REGCLASS_EXISTS),
    ("postgis_schema", POSTGIS_SCHEMA),
    ("schema_exists", SCHEMA_EXISTS),
    ("table_comment", TABLE_COMMENT),
    ("advisory_xact_lock", ADVISORY_XACT_LOCK),
];
