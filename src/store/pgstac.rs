//! pgSTAC, the STAC catalog process_raster writes its items to, installed by CoreMachine itself.
//!
//! pgSTAC is not packaged by Debian; its schema ships as one SQL file in PyPI's `pypgstac` wheel
//! (`pypgstac/migrations/pgstac.0.10.0.sql`; `scripts/lib/geo.sh` fetches it). `coremachine
//! migrate` (and local mode's start-up migration) applies it when `PGSTAC_SQL` names that file:
//! into schema `pgstac` of the app database, or of the database `PGSTAC_DATABASE_URL` names. The
//! install is one transaction under an advisory lock, skipped when that version is already there,
//! and recorded in `app.optional_schemas` of the app database (version, checksum, target). It
//! needs PostGIS (`postgresql-15-postgis-3`); the file creates the extensions postgis,
//! btree_gist and unaccent and the roles pgstac_admin/_read/_ingest.
//!
//! The probes below are inline rather than in `store/sql/`: they run against a database that may
//! not have pgSTAC yet, so the statement test (which prepares against the app schema) cannot
//! prepare them.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{QueryContext, StoreError, sql};

/// The name pgSTAC is recorded under in `app.optional_schemas`.
pub const NAME: &str = "pgstac";

const LOCK_KEY: i64 = 0x7067_7374_6163_6d69; // "pgstacmi"

/// The pgSTAC SQL file named by `PGSTAC_SQL`, if set.
pub fn sql_path_from_env() -> Option<PathBuf> {
    std::env::var_os("PGSTAC_SQL")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// `PGSTAC_DATABASE_URL`: pgSTAC in another database than the app's.
pub fn database_url_override() -> Option<String> {
    std::env::var("PGSTAC_DATABASE_URL")
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// A pgSTAC install file.
#[derive(Debug, Clone)]
pub struct PgstacSql {
    /// Where it was read from.
    pub path: PathBuf,
    /// The version it installs (its closing `set_version`).
    pub version: String,
    /// The SQL.
    pub text: String,
    /// SHA-256 of the SQL.
    pub checksum: String,
}

impl PgstacSql {
    /// Reads the file and finds its version.
    pub fn read(path: &Path) -> Result<Self, StoreError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| StoreError::Config(format!("PGSTAC_SQL {}: {e}", path.display())))?;
        let marker = "set_version('";
        let version = text
            .rfind(marker)
            .and_then(|i| text[i + marker.len()..].split('\'').next())
            .filter(|v| !v.is_empty() && v.len() < 32)
            .ok_or_else(|| {
                StoreError::Config(format!(
                    "PGSTAC_SQL {} is not a pgSTAC install file (no set_version call)",
                    path.display()
                ))
            })?
            .to_string();
        Ok(Self {
            path: path.to_path_buf(),
            checksum: hex::encode(Sha256::digest(text.as_bytes())),
            version,
            text,
        })
    }
}

/// What an install did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The schema was installed now.
    Installed {
        /// Its version.
        version: String,
    },
    /// That version was there already.
    AlreadyCurrent {
        /// Its version.
        version: String,
    },
}

/// The installed pgSTAC version, if any.
pub async fn installed_version(c: &tokio_postgres::Client) -> Result<Option<String>, StoreError> {
    let present: bool = c
        .query_one("SELECT to_regproc('pgstac.get_version') IS NOT NULL", &[])
        .await
        .ctx(|| "looking for pgstac.get_version".into())?
        .get(0);
    if !present {
        return Ok(None);
    }
    let v: String = c
        .query_one("SELECT pgstac.get_version()", &[])
        .await
        .ctx(|| "reading pgstac.get_version()".into())?
        .get(0);
    Ok(Some(v))
}

/// Installs `sql` into `target` unless that version is there; refuses over another version
/// (upgrades are pypgstac's `migrate`, which knows the incremental files).
pub async fn install(
    target: &mut tokio_postgres::Client,
    sql: &PgstacSql,
) -> Result<Outcome, StoreError> {
    target
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await
        .ctx(|| "taking the pgSTAC install lock".into())?;
    let result = install_locked(target, sql).await;
    let unlock = target
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await
        .ctx(|| "releasing the pgSTAC install lock".into());
    let outcome = result?;
    unlock?;
    Ok(outcome)
}

async fn install_locked(
    target: &mut tokio_postgres::Client,
    sql: &PgstacSql,
) -> Result<Outcome, StoreError> {
    let fail = |reason: String| StoreError::Migration {
        version: 0,
        name: "pgstac",
        reason,
    };
    match installed_version(target).await? {
        Some(v) if v == sql.version => return Ok(Outcome::AlreadyCurrent { version: v }),
        Some(v) => {
            return Err(fail(format!(
                "pgSTAC {v} is installed and {} is pgSTAC {}; upgrade with `pypgstac migrate`",
                sql.path.display(),
                sql.version
            )));
        }
        None => {}
    }
    // pgSTAC creates roles, which are shared by every database of the server: installs into two
    // databases at once can collide on them ("tuple concurrently updated", a unique violation),
    // which the per-database advisory lock cannot prevent. The install is one transaction, so
    // such a collision rolls back cleanly and is tried again.
    let mut attempt = 1;
    loop {
        match install_once(target, sql).await {
            Err(e) if attempt < 5 && is_concurrent_collision(&e) => {
                tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
                attempt += 1;
            }
            Err(e) => {
                return Err(fail(format!(
                    "{}: {}",
                    sql.path.display(),
                    e.as_db_error()
                        .map(|d| d.message().to_string())
                        .unwrap_or_else(|| e.to_string())
                )));
            }
            Ok(()) => break,
        }
    }
    Ok(Outcome::Installed {
        version: sql.version.clone(),
    })
}

/// One try of the install transaction: the file, the session reset, the commit.
async fn install_once(
    target: &mut tokio_postgres::Client,
    sql: &PgstacSql,
) -> Result<(), tokio_postgres::Error> {
    let tx = target.transaction().await?;
    tx.batch_execute(&sql.text).await?;
    // The file switches role and search_path for the session; give the connection back clean.
    tx.batch_execute("RESET ROLE; RESET search_path").await?;
    tx.commit().await
}

/// Whether an install failed only because another database's install touched the same shared
/// rows (roles) at the same time.
fn is_concurrent_collision(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    e.as_db_error().is_some_and(|d| {
        let c = d.code();
        *c == SqlState::UNIQUE_VIOLATION
            || *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::T_R_DEADLOCK_DETECTED
            || (*c == SqlState::INTERNAL_ERROR && d.message().contains("concurrently"))
    })
}

/// Records the install in the app database's `app.optional_schemas`.
pub async fn record(
    app: &tokio_postgres::Client,
    sql: &PgstacSql,
    target: &str,
) -> Result<(), StoreError> {
    app.execute(
        sql::OPTIONAL_SCHEMA_RECORD,
        &[&NAME, &sql.version, &sql.checksum, &target],
    )
    .await
    .ctx(|| "recording the pgSTAC install in app.optional_schemas".into())
    .map(drop)
}

/// The recorded pgSTAC install: (version, target).
pub async fn recorded(
    app: &tokio_postgres::Client,
) -> Result<Option<(String, String)>, StoreError> {
    Ok(app
        .query_opt(sql::OPTIONAL_SCHEMA_GET, &[&NAME])
        .await
        .ctx(|| "reading app.optional_schemas".into())?
        .map(|r| (r.get(0), r.get(2))))
}

/// Installs pgSTAC from `sql` into the app database behind `app`, or into the database
/// `target_url` names, and records it in `app`. `app` must be migrated (0012 creates the table).
pub async fn migrate_with(
    app: &mut tokio_postgres::Client,
    sql: &PgstacSql,
    target_url: Option<&str>,
) -> Result<Outcome, StoreError> {
    let (outcome, label) = match target_url {
        None => (install(app, sql).await?, "app database".to_string()),
        Some(url) => {
            let pool = super::connect::build_pool(url, 1, None, None)?;
            let mut c = super::client(&pool, "connecting to PGSTAC_DATABASE_URL").await?;
            (install(&mut c, sql).await?, crate::config::redact_url(url))
        }
    };
    record(app, sql, &label).await?;
    Ok(outcome)
}

/// `coremachine migrate`'s pgSTAC step: nothing unless `PGSTAC_SQL` is set.
pub async fn migrate_configured(
    app: &mut tokio_postgres::Client,
) -> Result<Option<Outcome>, StoreError> {
    let Some(path) = sql_path_from_env() else {
        return Ok(None);
    };
    let sql = PgstacSql::read(&path)?;
    migrate_with(app, &sql, database_url_override().as_deref())
        .await
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_the_files_last_set_version() {
        let dir = std::env::temp_dir().join(format!("pgstac-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("p.sql");
        std::fs::write(
            &f,
            "SELECT set_version('0.9.0');\n-- ...\nSELECT set_version('0.10.0');\n",
        )
        .unwrap();
        assert_eq!(PgstacSql::read(&f).unwrap().version, "0.10.0");
        std::fs::write(&f, "CREATE TABLE x ();").unwrap();
        let e = PgstacSql::read(&f).unwrap_err().to_string();
        assert!(e.contains("not a pgSTAC install file"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
