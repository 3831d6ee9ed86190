//! `GET /api/health` (anonymous): database reachable and migrated, sender configured, janitor's
//! last run. 200 when every part is healthy, 503 naming the failing parts otherwise.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::error::ErrorEnvelope;
use crate::engine::Engine;
use crate::store::{self, janitor_views};

/// The health report.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Health {
    /// `healthy` or `unhealthy`.
    pub status: String,
    /// One entry per part: `database`, `transport`, `janitor`, `jobs`, `readiness`.
    pub components: Value,
    /// What is failing, in words.
    pub errors: Vec<String>,
    /// The circuit breaker of each Azure endpoint this instance calls (src/azure/breaker.rs):
    /// `endpoint`, `state` (closed, open, half_open), `consecutive_failures`, `times_opened`,
    /// `calls_rejected`, `retry_in_ms`, `last_error`. An open breaker does not make the instance
    /// unhealthy: its work waits in the outbox and the queues.
    pub circuit_breakers: Value,
    /// Identifier of this response.
    pub request_id: String,
    /// When the check ran.
    pub timestamp: String,
}

async fn database(engine: &Engine, errors: &mut Vec<String>) -> (Value, Value) {
    let client = match store::client(engine.pool(), "health check").await {
        Ok(c) => c,
        Err(e) => {
            // The driver's text goes to the log only: the route is anonymous.
            tracing::warn!(error = %e, "health check: database unreachable");
            errors.push("database unreachable (the service log has the cause)".into());
            return (
                json!({"status": "unhealthy", "error": "unreachable"}),
                json!({"status": "unknown"}),
            );
        }
    };
    let db = match store::migrations::status(&client).await {
        Ok(list) => {
            let pending: Vec<i32> = list
                .iter()
                .filter(|m| m.applied_at.is_none())
                .map(|m| m.version)
                .collect();
            let edited: Vec<i32> = list
                .iter()
                .filter(|m| !m.checksum_ok)
                .map(|m| m.version)
                .collect();
            let version = list
                .iter()
                .filter(|m| m.applied_at.is_some())
                .map(|m| m.version)
                .max()
                .unwrap_or(0);
            let ok = pending.is_empty() && edited.is_empty();
            if !pending.is_empty() {
                errors.push(format!(
                    "database schema has pending migrations {pending:?} (run `coremachine migrate`)"
                ));
            }
            if !edited.is_empty() {
                errors.push(format!(
                    "applied migrations {edited:?} differ from the embedded SQL"
                ));
            }
            json!({"status": if ok { "healthy" } else { "unhealthy" }, "migrated": ok, "schema_version": version, "pending_migrations": pending})
        }
        Err(e) => {
            tracing::warn!(error = %e, "health check: reading the migration status failed");
            errors.push(
                "database: reading the migration status failed (the service log has the cause)"
                    .into(),
            );
            json!({"status": "unhealthy", "error": "migration status unreadable"})
        }
    };
    let janitor = match janitor_views::last_run(&client).await {
        Ok(Some(r)) => json!({
            "status": "healthy",
            "last_run_id": r.run_id,
            "last_run_status": r.status,
            "last_run_at": r.started_at,
            "last_run_completed_at": r.completed_at,
            "found": r.found,
            "fixed": r.fixed,
        }),
        Ok(None) => {
            json!({"status": "healthy", "last_run_at": null, "note": "the janitor has not run yet"})
        }
        Err(e) => {
            tracing::warn!(error = %e, "health check: reading the janitor's last run failed");
            json!({"status": "unknown", "error": "last run unreadable (the service log has the cause)"})
        }
    };
    (db, janitor)
}

/// Health of the instance.
#[utoipa::path(
    get, path = "/api/health", tag = "operations", operation_id = "health",
    responses(
        (status = 200, description = "Every part is healthy", body = Health),
        (status = 503, description = "Some part is failing (listed in errors)", body = Health),
        (status = 400, description = "Bad request", body = ErrorEnvelope),
    ),
    security(())
)]
pub(crate) async fn health(State(engine): State<Engine>) -> (StatusCode, Json<Health>) {
    let mut errors = Vec::new();
    // Startup readiness (engine/readiness.rs): the schema preparation's last error, if any.
    let readiness = engine.readiness().health();
    if let Some(cause) = engine.readiness().public_cause() {
        errors.push(format!("not ready for messages: {cause}"));
    }
    let (db, janitor) = database(&engine, &mut errors).await;
    let transport = engine.outbox().transport().name();
    let components = json!({
        "database": db,
        "transport": {"status": "healthy", "kind": transport, "jobs_queue": engine.settings().queues.jobs, "tasks_queue": engine.settings().queues.tasks},
        "janitor": janitor,
        "jobs": {"available_jobs": engine.registry().job_types()},
        "readiness": readiness,
    });
    let healthy = errors.is_empty();
    let body = Health {
        status: if healthy { "healthy" } else { "unhealthy" }.into(),
        components,
        errors,
        circuit_breakers: serde_json::to_value(crate::azure::breaker::snapshot())
            .unwrap_or_default(),
        request_id: uuid::Uuid::new_v4().simple().to_string()[..8].to_string(),
        timestamp: chrono::Utc::now().to_rfc3339(),
    };
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}
