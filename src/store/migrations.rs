//! Versioned SQL migrations embedded in the binary.
//!
//! Why not refinery: we need an advisory lock so that several instances starting at once apply a
//! migration exactly once, a checksum check that refuses a migration edited after it ran, and a
//! status listing for the admin API; each is a few lines here.

use sha2::{Digest, Sha256};

use super::{QueryContext, StoreError};

/// One migration file.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Monotonic version.
    pub version: i32,
    /// Name (file stem without the version).
    pub name: &'static str,
    /// The SQL.
    pub sql: &'static str,
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../../migrations/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "transitions",
        sql: include_str!("../../migrations/0002_transitions.sql"),
    },
    Migration {
        version: 3,
        name: "cancel_resubmit",
        sql: include_str!("../../migrations/0003_cancel_resubmit.sql"),
    },
    Migration {
        version: 9,
        name: "lean_task_indexes",
        sql: include_str!("../../migrations/0009_lean_task_indexes.sql"),
    },
    Migration {
        version: 10,
        name: "queue_redelivery_index",
        sql: include_str!("../../migrations/0010_queue_redelivery_index.sql"),
    },
    Migration {
        version: 11,
        name: "cheaper_task_rows",
        sql: include_str!("../../migrations/0011_cheaper_task_rows.sql"),
    },
    Migration {
        version: 12,
        name: "raster_optional_schemas",
        sql: include_str!("../../migrations/0012_raster_optional_schemas.sql"),
    },
    Migration {
        version: 13,
        name: "retention",
        sql: include_str!("../../migrations/0013_retention.sql"),
    },
    Migration {
        version: 14,
        name: "operator_attempt_boundaries",
        sql: include_str!("../../migrations/0014_operator_attempt_boundaries.sql"),
    },
    Migration {
        version: 15,
        name: "platform_requests",
        sql: include_str!("../../migrations/0015_platform_requests.sql"),
    },
    Migration {
        version: 16,
        name: "claim_tokens",
        sql: include_str!("../../migrations/0016_claim_tokens.sql"),
    },
    Migration {
        version: 17,
        name: "hot_task_updates",
        sql: include_str!("../../migrations/0017_hot_task_updates.sql"),
    },
    Migration {
        version: 18,
        name: "hot_queue_leases",
        sql: include_str!("../../migrations/0018_hot_queue_leases.sql"),
    },
];

/// The state of one migration in a database.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MigrationStatus {
    /// Version.
    pub version: i32,
    /// Name.
    pub name: &'static str,
    /// When applied, if it was.
    pub applied_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Whether the applied checksum matches the embedded SQL.
    pub checksum_ok: bool,
}

fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

const LOCK_KEY: i64 = 0x0063_6f72_656d_6967; // "coremig"

const HISTORY_DDL: &str = "CREATE SCHEMA IF NOT EXISTS app;
CREATE TABLE IF NOT EXISTS app.schema_migrations (
  version INT PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL,
  applied_at TIMESTAMPTZ NOT NULL DEFAULT now())";

/// Applies every pending migration; returns the versions applied now.
pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<Vec<i32>, StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await
        .ctx(|| "taking the migration lock".into())?;
    let result = migrate_locked(client).await;
    let unlock = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await
        .ctx(|| "releasing the migration lock".into());
    let applied = result?;
    unlock?;
    Ok(applied)
}

async fn migrate_locked(client: &mut tokio_postgres::Client) -> Result<Vec<i32>, StoreError> {
    client
        .batch_execute(HISTORY_DDL)
        .await
        .ctx(|| "creating app.schema_migrations".into())?;
    let rows = client
        .query("SELECT version, checksum FROM app.schema_migrations", &[])
        .await
        .ctx(|| "reading app.schema_migrations".into())?;
    let applied: std::collections::HashMap<i32, String> =
        rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let mut now_applied = Vec::new();
    for m in MIGRATIONS {
        let sum = checksum(m.sql);
        if let Some(existing) = applied.get(&m.version) {
            if *existing != sum {
                return Err(StoreError::Migration {
                    version: m.version,
                    name: m.name,
                    reason: "the embedded SQL differs from what was applied (edited after it ran); add a new migration instead".into(),
                });
            }
            continue;
        }
        let tx = client
            .transaction()
            .await
            .ctx(|| format!("starting migration {}", m.version))?;
        tx.batch_execute(m.sql)
            .await
            .map_err(|e| StoreError::Migration {
                version: m.version,
                name: m.name,
                reason: e
                    .as_db_error()
                    .map(|d| d.message().to_string())
                    .unwrap_or_else(|| e.to_string()),
            })?;
        tx.execute(
            "INSERT INTO app.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &sum],
        )
        .await
        .ctx(|| format!("recording migration {}", m.version))?;
        tx.commit()
            .await
            .ctx(|| format!("committing migration {}", m.version))?;
        now_applied.push(m.version);
    }
    Ok(now_applied)
}

/// Drops the whole `app` schema (the admin API's redeploy; [`migrate`] recreates it).
pub async fn drop_app_schema(c: &impl deadpool_postgres::GenericClient) -> Result<(), StoreError> {
    c.batch_execute(super::sql::SCHEMA_DROP)
        .await
        .ctx(|| "dropping schema app".into())
}

/// Lists every embedded migration with whether and when it was applied.
pub async fn status(client: &tokio_postgres::Client) -> Result<Vec<MigrationStatus>, StoreError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('app.schema_migrations') IS NOT NULL",
            &[],
        )
        .await
        .ctx(|| "checking for app.schema_migrations".into())?
        .get(0);
    let rows = if exists {
        client
            .query(
                "SELECT version, checksum, applied_at FROM app.schema_migrations",
                &[],
            )
            .await
            .ctx(|| "reading app.schema_migrations".into())?
    } else {
        Vec::new()
    };
    Ok(MIGRATIONS
        .iter()
        .map(|m| {
            let row = rows.iter().find(|r| r.get::<_, i32>(0) == m.version);
            MigrationStatus {
                version: m.version,
                name: m.name,
                applied_at: row.map(|r| r.get(2)),
                checksum_ok: row.is_none_or(|r| r.get::<_, String>(1) == checksum(m.sql)),
            }
        })
        .collect())
}

/// Whether every embedded migration is applied unchanged.
pub async fn is_current(client: &tokio_postgres::Client) -> Result<bool, StoreError> {
    Ok(status(client)
        .await?
        .iter()
        .all(|s| s.applied_at.is_some() && s.checksum_ok))
}
