//! Admin routes (authLevel `admin`, and refused with 403 unless `COREMACHINE_ADMIN_ENABLED=true`):
//! migration status, apply migrations, and the earlier
//! `POST /api/dbadmin/maintenance/redeploy?confirm=yes` (drops and recreates the schema).

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::error::{ApiError, ErrorEnvelope, detail};
use super::input::{JsonBody, QueryParams};
use crate::engine::Engine;
use crate::store::{self, migrations};

/// One migration.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct MigrationInfo {
    /// Version.
    pub version: i32,
    /// Name.
    pub name: String,
    /// When applied (null: pending).
    pub applied_at: Option<DateTime<Utc>>,
    /// Whether the applied SQL equals the embedded SQL.
    pub checksum_ok: bool,
}

/// Migration status.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Migrations {
    /// Highest applied version (0: none).
    pub current_version: i32,
    /// Versions not applied yet.
    pub pending: Vec<i32>,
    /// Every embedded migration.
    pub migrations: Vec<MigrationInfo>,
    /// Versions applied by this call (apply only).
    pub applied_now: Vec<i32>,
}

/// One step of a redeploy.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct RedeployStep {
    /// Step name.
    pub step: String,
    /// `success` or `failed`.
    pub status: String,
    /// What it did.
    pub detail: Value,
}

/// The redeploy report (the earlier shape).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Redeploy {
    /// Always `schema_redeploy`.
    pub operation: String,
    /// Steps in order.
    pub steps: Vec<RedeployStep>,
    /// `success` or `failed`.
    pub overall_status: String,
    /// Summary.
    pub message: String,
    /// When it finished.
    pub timestamp: DateTime<Utc>,
}

fn require_enabled(engine: &Engine) -> Result<(), ApiError> {
    if engine.settings().http.admin_enabled {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "admin_disabled",
            "admin routes are disabled; set COREMACHINE_ADMIN_ENABLED=true to enable them",
        ))
    }
}

async fn status(engine: &Engine, applied_now: Vec<i32>) -> Result<Migrations, ApiError> {
    let client = store::client(engine.pool(), "reading migration status").await?;
    let list = migrations::status(&client).await?;
    Ok(Migrations {
        current_version: list
            .iter()
            .filter(|m| m.applied_at.is_some())
            .map(|m| m.version)
            .max()
            .unwrap_or(0),
        pending: list
            .iter()
            .filter(|m| m.applied_at.is_none())
            .map(|m| m.version)
            .collect(),
        migrations: list
            .into_iter()
            .map(|m| MigrationInfo {
                version: m.version,
                name: m.name.to_string(),
                applied_at: m.applied_at,
                checksum_ok: m.checksum_ok,
            })
            .collect(),
        applied_now,
    })
}

/// Migration status of the database.
#[utoipa::path(
    get, path = "/api/dbadmin/migrations", tag = "admin", operation_id = "migration_status",
    responses(
        (status = 200, description = "Every migration", body = Migrations),
        (status = 400, description = "Unknown query parameter", body = ErrorEnvelope),
        (status = 401, description = "Missing key, or not the admin key", body = ErrorEnvelope),
        (status = 403, description = "Admin routes disabled", body = ErrorEnvelope),
        (status = 503, description = "Database unavailable", body = ErrorEnvelope),
    ),
    security(("admin_key" = []), ("admin_code" = []))
)]
pub(crate) async fn migration_status(
    State(engine): State<Engine>,
    q: QueryParams,
) -> Result<Json<Migrations>, ApiError> {
    require_enabled(&engine)?;
    q.only(&[])?;
    Ok(Json(status(&engine, Vec::new()).await?))
}

/// Applies pending migrations.
#[utoipa::path(
    post, path = "/api/dbadmin/migrations/apply", tag = "admin", operation_id = "apply_migrations",
    responses(
        (status = 200, description = "Applied; status after", body = Migrations),
        (status = 400, description = "Unknown query parameter", body = ErrorEnvelope),
        (status = 401, description = "Missing key, or not the admin key", body = ErrorEnvelope),
        (status = 403, description = "Admin routes disabled", body = ErrorEnvelope),
        (status = 413, description = "Body larger than 64 KB", body = ErrorEnvelope),
        (status = 415, description = "Body is not JSON", body = ErrorEnvelope),
        (status = 503, description = "Database unavailable", body = ErrorEnvelope),
    ),
    security(("admin_key" = []), ("admin_code" = []))
)]
pub(crate) async fn apply_migrations(
    State(engine): State<Engine>,
    q: QueryParams,
    _body: JsonBody,
) -> Result<Json<Migrations>, ApiError> {
    require_enabled(&engine)?;
    q.only(&[])?;
    let mut client = store::client(engine.pool(), "applying migrations").await?;
    let applied = migrations::migrate(&mut client).await?;
    drop(client);
    Ok(Json(status(&engine, applied).await?))
}

/// Drops and recreates the `app` schema (every job is lost).
#[utoipa::path(
    post, path = "/api/dbadmin/maintenance/redeploy", tag = "admin", operation_id = "redeploy_schema",
    params(("confirm" = Option<String>, Query, description = "Must be `yes`")),
    responses(
        (status = 200, description = "Schema recreated", body = Redeploy),
        (status = 400, description = "confirm=yes missing", body = ErrorEnvelope),
        (status = 401, description = "Missing key, or not the admin key", body = ErrorEnvelope),
        (status = 403, description = "Admin routes disabled", body = ErrorEnvelope),
        (status = 413, description = "Body larger than 64 KB", body = ErrorEnvelope),
        (status = 415, description = "Body is not JSON", body = ErrorEnvelope),
        (status = 503, description = "Database unavailable", body = ErrorEnvelope),
    ),
    security(("admin_key" = []), ("admin_code" = []))
)]
pub(crate) async fn redeploy(
    State(engine): State<Engine>,
    q: QueryParams,
    _body: JsonBody,
) -> Result<Json<Redeploy>, ApiError> {
    require_enabled(&engine)?;
    q.only(&["confirm"])?;
    let confirm = q.text("confirm", 10)?;
    if confirm.as_deref() != Some("yes") {
        return Err(ApiError::bad_request(
            "confirmation_required",
            "redeploy drops every job, task and event; repeat with ?confirm=yes",
        )
        .with_details(vec![detail(
            "query.confirm",
            "required",
            json!(confirm),
            "must be yes",
        )]));
    }
    let mut client = store::client(engine.pool(), "redeploying the schema").await?;
    let mut steps = Vec::new();
    migrations::drop_app_schema(&client).await?;
    steps.push(RedeployStep {
        step: "drop_schema".into(),
        status: "success".into(),
        detail: json!({"schema": "app"}),
    });
    let applied = migrations::migrate(&mut client).await?;
    steps.push(RedeployStep {
        step: "apply_migrations".into(),
        status: "success".into(),
        detail: json!({"applied": applied}),
    });
    drop(client);
    // Pooled connections hold statements prepared against the dropped tables: start afresh.
    engine.pool().manager().statement_caches.clear();
    engine.pool().retain(|_, _| false);
    tracing::warn!(applied = ?applied, "schema app dropped and recreated through the admin API");
    Ok(Json(Redeploy {
        operation: "schema_redeploy".into(),
        message: format!("schema app recreated with migrations {applied:?}"),
        steps,
        overall_status: "success".into(),
        timestamp: Utc::now(),
    }))
}
