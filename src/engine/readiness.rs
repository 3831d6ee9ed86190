//! Whether the database is ready for messages: `serve` binds its port first and prepares the
//! schema in the background, so a database that is down or a migration that fails never makes the
//! worker exit (the Functions host shuts the whole app down after 3 worker errors in 30 minutes).
//!
//! Until [`Readiness::cause`] is `None`, the trigger routes answer 503 with the cause (the host
//! abandons the message, it is not completed) and `/api/health` answers 503 with it. The
//! preparation is retried with [`retry_delay`] until it succeeds or the process stops.

use std::sync::RwLock;
use std::time::Duration;

use deadpool_postgres::Pool;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::azure::error_chain;
use crate::store;
use crate::telemetry::checkpoints as cp;

/// What the background preparation does before the handler takes messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preparation {
    /// Apply pending migrations (`MIGRATE_ON_START=true`).
    Migrate,
    /// Only check that no migration is pending (`coremachine migrate` is run separately).
    Check,
}

#[derive(Debug, Clone)]
enum State {
    Ready,
    NotReady {
        cause: String,
        attempts: u32,
        since: chrono::DateTime<chrono::Utc>,
    },
}

/// The readiness of one process. Ready unless [`Readiness::not_ready`] made it otherwise.
#[derive(Debug)]
pub struct Readiness {
    state: RwLock<State>,
    /// Text that must never appear in a cause (the database password).
    secret: Option<String>,
}

impl Default for Readiness {
    fn default() -> Self {
        Self {
            state: RwLock::new(State::Ready),
            secret: None,
        }
    }
}

/// The delay before attempt `attempt + 1` (0-based): 0.5 s doubling, capped at 15 s, so a
/// database that comes back is noticed within 15 s.
pub(crate) fn retry_delay(attempt: u32) -> Duration {
    let ms = 500u64.saturating_mul(1u64 << attempt.min(16));
    Duration::from_millis(ms.min(15_000))
}

impl Readiness {
    /// Not ready yet, for `cause`; `secret` (the database password) is redacted from every cause.
    pub fn not_ready(cause: &str, secret: Option<String>) -> Self {
        let r = Self {
            state: RwLock::new(State::Ready),
            secret: secret.filter(|s| !s.is_empty()),
        };
        r.set_not_ready(cause, 0);
        r
    }

    /// Why messages cannot be taken yet; `None` when ready.
    pub fn cause(&self) -> Option<String> {
        match &*self.state.read().unwrap_or_else(|e| e.into_inner()) {
            State::Ready => None,
            State::NotReady { cause, .. } => Some(cause.clone()),
        }
    }

    /// What [`Self::cause`] says in CoreMachine's own words, for answers to clients (health,
    /// the trigger routes' 503): its first two `: `-separated parts ("database unreachable:
    /// database unavailable while preparing the schema", "migration failed: migration 12 (...)
    /// failed"), never the driver's text after them, which goes to the log (`SCHEMA_NOT_READY`).
    pub fn public_cause(&self) -> Option<String> {
        self.cause().map(|c| public_part(&c))
    }

    fn set_ready(&self) {
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = State::Ready;
    }

    fn set_not_ready(&self, cause: &str, attempts: u32) {
        let cause = match &self.secret {
            Some(s) => cause.replace(s.as_str(), "***"),
            None => cause.to_string(),
        };
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        let since = match &*st {
            State::NotReady { since, .. } => *since,
            State::Ready => chrono::Utc::now(),
        };
        *st = State::NotReady {
            cause,
            attempts,
            since,
        };
    }

    /// The `readiness` component of `/api/health`.
    pub fn health(&self) -> Value {
        match &*self.state.read().unwrap_or_else(|e| e.into_inner()) {
            State::Ready => json!({"status": "healthy", "ready": true}),
            State::NotReady {
                cause,
                attempts,
                since,
            } => json!({
                "status": "unhealthy", "ready": false, "cause": public_part(cause),
                "attempts": attempts, "not_ready_since": since,
            }),
        }
    }

    /// One preparation attempt; on failure the cause is recorded and returned.
    pub async fn attempt(&self, pool: &Pool, how: Preparation, attempt: u32) -> bool {
        match prepare(pool, how).await {
            Ok(applied) => {
                self.set_ready();
                cp::emit(
                    cp::SCHEMA_READY,
                    &cp::Fields::default()
                        .extra("attempts", attempt + 1)
                        .extra("applied_migrations", format!("{applied:?}")),
                );
                true
            }
            Err(cause) => {
                self.set_not_ready(&cause, attempt + 1);
                let shown = self.cause().unwrap_or_default();
                cp::emit_warn(
                    cp::SCHEMA_NOT_READY,
                    &cp::Fields::default()
                        .extra("attempts", attempt + 1)
                        .extra("cause", shown)
                        .extra("retry_in_ms", retry_delay(attempt).as_millis() as u64),
                );
                false
            }
        }
    }

    /// Retries the preparation with [`retry_delay`] until it succeeds or `shutdown` fires.
    pub async fn prepare_until_ready(
        &self,
        pool: &Pool,
        how: Preparation,
        first_attempt: u32,
        shutdown: &CancellationToken,
    ) {
        let mut attempt = first_attempt;
        while self.cause().is_some() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(retry_delay(attempt.saturating_sub(1))) => {}
            }
            if self.attempt(pool, how, attempt).await {
                return;
            }
            attempt += 1;
        }
    }
}

/// The first two `: `-separated parts of a cause, with " (the service log has the cause)" when
/// more was cut; a pending-migrations cause is CoreMachine's own words and is kept whole.
fn public_part(cause: &str) -> String {
    if cause.starts_with("the schema has pending migrations") {
        return cause.to_string();
    }
    let mut parts = cause.splitn(3, ": ");
    let head = [parts.next(), parts.next()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(": ");
    if parts.next().is_some() {
        format!("{head} (the service log has the cause)")
    } else {
        head
    }
}

/// Migrates, or checks that nothing is pending; the error text names what failed.
async fn prepare(pool: &Pool, how: Preparation) -> Result<Vec<i32>, String> {
    let mut c = store::client(pool, "preparing the schema")
        .await
        .map_err(|e| format!("database unreachable: {}", error_chain(&e)))?;
    match how {
        Preparation::Migrate => {
            let applied = store::migrations::migrate(&mut c)
                .await
                .map_err(|e| format!("migration failed: {}", error_chain(&e)))?;
            // pgSTAC too, when PGSTAC_SQL names its install file (as `coremachine migrate` does).
            store::pgstac::migrate_configured(&mut c)
                .await
                .map_err(|e| format!("installing pgSTAC failed: {}", error_chain(&e)))?;
            Ok(applied)
        }
        Preparation::Check => {
            let list = store::migrations::status(&c)
                .await
                .map_err(|e| format!("reading the migration status failed: {}", error_chain(&e)))?;
            let pending: Vec<i32> = list
                .iter()
                .filter(|m| m.applied_at.is_none())
                .map(|m| m.version)
                .collect();
            if pending.is_empty() {
                Ok(Vec::new())
            } else {
                Err(format!(
                    "the schema has pending migrations {pending:?}: run `coremachine migrate` or set MIGRATE_ON_START=true"
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_see_the_cause_without_the_drivers_words() {
        let r = Readiness::not_ready(
            "database unreachable: database unavailable while preparing the schema: error connecting to server: Connection refused (os error 111)",
            None,
        );
        let shown = r.public_cause().unwrap();
        assert_eq!(
            shown,
            "database unreachable: database unavailable while preparing the schema (the service log has the cause)"
        );
        assert_eq!(r.health()["cause"], shown.as_str());
        assert!(
            r.cause().unwrap().contains("os error 111"),
            "the log keeps it"
        );
        let pending = "the schema has pending migrations [13]: run `coremachine migrate` or set MIGRATE_ON_START=true";
        assert_eq!(
            Readiness::not_ready(pending, None)
                .public_cause()
                .as_deref(),
            Some(pending)
        );
    }

    #[test]
    fn retries_back_off_to_a_cap() {
        let d: Vec<u64> = (0..8).map(|a| retry_delay(a).as_millis() as u64).collect();
        assert_eq!(d, [500, 1000, 2000, 4000, 8000, 15000, 15000, 15000]);
        assert_eq!(retry_delay(u32::MAX), Duration::from_secs(15));
    }

    #[test]
    fn a_cause_never_shows_the_password() {
        let r = Readiness::not_ready("starting", Some("s3cret".into()));
        r.set_not_ready("password authentication failed for s3cret", 2);
        assert_eq!(
            r.cause().as_deref(),
            Some("password authentication failed for ***")
        );
        assert_eq!(r.health()["attempts"], 2);
        r.set_ready();
        assert_eq!(r.cause(), None);
        assert_eq!(r.health()["ready"], true);
    }
}
