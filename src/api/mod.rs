//! The HTTP API under `/api` (forwarded HTTP functions): submit, status, health.

pub mod error;
pub mod events;
pub mod ui;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::engine::{Engine, JobId, SubmitError};
use crate::store::{self, QueryContext, sql};
pub use error::ApiError;

/// The API routes.
pub fn router(engine: Engine) -> Router {
    Router::new()
        .route("/api/jobs/submit/{job_type}", post(submit))
        .route("/api/jobs/status/{job_id}", get(status))
        .route("/api/health", get(health))
        .merge(events::routes())
        .merge(ui::routes())
        .with_state(engine)
}

fn parse_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
    if let Some(ct) = headers.get("content-type").and_then(|v| v.to_str().ok())
        && !body.is_empty()
        && !ct.to_ascii_lowercase().starts_with("application/json")
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("expected Content-Type application/json, got {ct:?}"),
        ));
    }
    if body.is_empty() {
        return Ok(json!({}));
    }
    let text = std::str::from_utf8(body).map_err(|e| {
        ApiError::bad_request(
            "invalid_utf8",
            format!("request body is not valid UTF-8 (byte {})", e.valid_up_to()),
        )
    })?;
    serde_json::from_str(text).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("request body is not valid JSON: {e}"),
        )
        .with_details(vec![
            json!({"field": "(body)", "rule": "json", "line": e.line(), "column": e.column()}),
        ])
    })
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(64).collect())
}

async fn submit(
    State(engine): State<Engine>,
    Path(job_type): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = parse_body(&headers, &body)?;
    let correlation = header_str(&headers, "x-correlation-id");
    let traceparent = header_str(&headers, "traceparent");
    match engine
        .submit(&job_type, &params, correlation, traceparent)
        .await
    {
        Ok(s) => {
            let code = if s.idempotent {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            let status = if !s.idempotent {
                "created".to_string()
            } else if s.status == "completed" {
                "already_completed".to_string()
            } else {
                s.status.clone()
            };
            let body = json!({
                "job_id": s.job_id,
                "status": status,
                "job_status": s.status,
                "job_type": s.job_type,
                "message": if s.idempotent { format!("job already exists ({})", s.status) } else { "job created and queued".to_string() },
                "parameters": s.parameters,
                "idempotent": s.idempotent,
                "current_stage": s.stage,
                "total_stages": s.total_stages,
                "correlation_id": s.correlation_id,
                "created_at": s.created_at,
                "result_data": s.result_data,
                "error_details": s.error_details,
                "queue_info": {"queued": !s.idempotent, "queue_type": "service_bus", "queue_name": s.queue_name, "message_id": s.message_id, "job_id": s.job_id},
                "status_url": format!("/api/jobs/status/{}", s.job_id),
            });
            Ok((code, axum::Json(body)).into_response())
        }
        Err(SubmitError::UnknownJobType { job_type, known }) => Err(ApiError::bad_request(
            "unknown_job_type",
            format!(
                "unknown job type {job_type:?}; known job types: {}",
                known.join(", ")
            ),
        )
        .with_details(vec![
            json!({"field": "job_type", "rule": "enum", "value": job_type, "allowed": known}),
        ])),
        Err(SubmitError::Invalid { job_type, errors }) => Err(ApiError::bad_request(
            "validation_error",
            format!(
                "{} parameter error(s) for job type {job_type}",
                errors.len()
            ),
        )
        .with_details(
            errors
                .into_iter()
                .map(|e| serde_json::to_value(e).unwrap_or_default())
                .collect(),
        )),
        Err(SubmitError::Store(e)) => Err(e.into()),
    }
}

/// Parses a job id path segment (400 when it is not 64 hex).
pub fn parse_job_id(raw: &str) -> Result<JobId, ApiError> {
    JobId::parse(raw).map_err(|e| {
        ApiError::bad_request("invalid_job_id", e.to_string())
            .with_details(vec![json!({"field": "job_id", "rule": "pattern ^[0-9a-f]{64}$", "value": raw.chars().take(80).collect::<String>()})])
    })
}

async fn status(
    State(engine): State<Engine>,
    Path(job_id): Path<String>,
) -> Result<Response, ApiError> {
    let job_id = parse_job_id(&job_id)?;
    let client = store::client(engine.pool(), "reading job status").await?;
    let row = client
        .query_opt(sql::JOB_GET, &[&job_id.as_str()])
        .await
        .ctx(|| format!("reading job {job_id}"))?
        .ok_or_else(|| ApiError::not_found(format!("job {job_id} not found")))?;
    let job_type: String = row.get("job_type");
    let pattern = engine
        .registry()
        .job(&job_type)
        .map(|j| {
            j.stages()
                .iter()
                .map(|s| s.name)
                .collect::<Vec<_>>()
                .join(" -> ")
        })
        .unwrap_or_default();
    let mut body = json!({
        "jobId": row.get::<_, String>("job_id"),
        "jobType": job_type,
        "status": row.get::<_, String>("status"),
        "stage": row.get::<_, i32>("stage"),
        "totalStages": row.get::<_, i32>("total_stages"),
        "parameters": row.get::<_, Value>("parameters"),
        "stageResults": row.get::<_, Value>("stage_results"),
        "createdAt": row.get::<_, chrono::DateTime<chrono::Utc>>("created_at"),
        "updatedAt": row.get::<_, chrono::DateTime<chrono::Utc>>("updated_at"),
        "completedAt": row.get::<_, Option<chrono::DateTime<chrono::Utc>>>("completed_at"),
        "attempt": row.get::<_, i32>("attempt"),
        "correlationId": row.get::<_, Option<String>>("correlation_id"),
        "architecture": "coremachine",
        "pattern": pattern,
        "schema_validated": true,
    });
    if let Some(r) = row.get::<_, Option<Value>>("result_data") {
        body["resultData"] = r;
    }
    if let Some(e) = row.get::<_, Option<String>>("error_details") {
        body["errorDetails"] = json!(e);
    }
    Ok(axum::Json(body).into_response())
}

async fn health(State(engine): State<Engine>) -> Response {
    let mut components = serde_json::Map::new();
    let mut errors = Vec::new();
    match store::client(engine.pool(), "health check").await {
        Ok(c) => match store::migrations::is_current(&c).await {
            Ok(true) => {
                components.insert(
                    "database".into(),
                    json!({"status": "healthy", "migrated": true}),
                );
            }
            Ok(false) => {
                components.insert(
                    "database".into(),
                    json!({"status": "unhealthy", "migrated": false}),
                );
                errors.push("database schema is not migrated to the current version (run `coremachine migrate`)".to_string());
            }
            Err(e) => {
                components.insert(
                    "database".into(),
                    json!({"status": "unhealthy", "error": e.to_string()}),
                );
                errors.push(format!("database: {e}"));
            }
        },
        Err(e) => {
            components.insert(
                "database".into(),
                json!({"status": "unhealthy", "error": e.to_string()}),
            );
            errors.push(format!("database unreachable: {e}"));
        }
    }
    components.insert(
        "transport".into(),
        json!({"status": "healthy", "kind": engine.outbox().transport().name()}),
    );
    components.insert(
        "jobs".into(),
        json!({"available_jobs": engine.registry().job_types()}),
    );
    let healthy = errors.is_empty();
    let body = json!({
        "status": if healthy { "healthy" } else { "unhealthy" },
        "components": components,
        "errors": errors,
        "request_id": uuid::Uuid::new_v4().simple().to_string()[..8].to_string(),
        "timestamp": chrono::Utc::now().to_rfc3339(),
    });
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}
