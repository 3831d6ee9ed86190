//! `POST /api/jobs/submit/{job_type}` and the earlier implementation's
//! `GET /api/jobs/status/{job_id}` (camelCase shape kept for operators' scripts).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::error::{ApiError, ErrorEnvelope};
use super::input::{PathParams, QueryParams, SchemaBody};
use super::jobs::{JobRow, find_job};
use crate::engine::{Engine, SubmitError};
use crate::store;

/// Where the stage 1 message went.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct QueueInfo {
    /// Whether a message was queued by this call.
    pub queued: bool,
    /// Always `service_bus` (the earlier value; local mode uses a PostgreSQL stand-in).
    pub queue_type: String,
    /// Queue name.
    pub queue_name: String,
    /// Deterministic MessageId.
    pub message_id: String,
    /// Job id.
    pub job_id: String,
}

/// The submit response (the earlier shape plus CoreMachine's fields).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct SubmitResponse {
    /// Content-addressed job id.
    pub job_id: String,
    /// `created`, or for an existing job its status (`already_completed` when completed).
    pub status: String,
    /// The job's current status.
    pub job_status: String,
    /// Job type.
    pub job_type: String,
    /// What happened.
    pub message: String,
    /// Validated parameters with defaults (an existing job: its own).
    pub parameters: Value,
    /// An existing job: submitted parameters that are not part of the job id and differ from the
    /// job's; they were ignored (see `not_in_job_id` in `GET /api/jobs/types`).
    pub ignored_parameters: Vec<String>,
    /// Whether the job already existed.
    pub idempotent: bool,
    /// Current stage.
    pub current_stage: i32,
    /// Number of stages.
    pub total_stages: i32,
    /// Correlation id.
    pub correlation_id: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Result of an existing completed job.
    pub result_data: Option<Value>,
    /// Error of an existing failed job.
    pub error_details: Option<String>,
    /// Queue details.
    pub queue_info: QueueInfo,
    /// Where to poll.
    pub status_url: String,
}

/// A request header as text (first 64 characters), if present and not empty.
pub(super) fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty())
        .map(|s| s.chars().take(64).collect())
}

/// Submits a job (idempotent: the same parameters give the same job).
#[utoipa::path(
    post, path = "/api/jobs/submit/{job_type}", tag = "jobs", operation_id = "submit_job",
    params(
        ("job_type" = String, Path, description = "A job type from GET /api/jobs/types", max_length = 100, example = "hello_world"),
        ("x-correlation-id" = Option<String>, Header, description = "Correlation id to record (first 64 characters)"),
    ),
    request_body(content = Object, description = "The job's parameters (see the job type's schema in GET /api/jobs/types); empty means all defaults", content_type = "application/json", example = json!({"n": 2})),
    responses(
        (status = 201, description = "Job created and queued", body = SubmitResponse),
        (status = 200, description = "The job already existed (idempotent)", body = SubmitResponse),
        (status = 400, description = "Unknown job type or invalid parameters (details name each field)", body = ErrorEnvelope),
        (status = 401, description = "Missing or wrong function key", body = ErrorEnvelope),
        (status = 413, description = "Body larger than 64 KB", body = ErrorEnvelope),
        (status = 415, description = "Body is not JSON", body = ErrorEnvelope),
        (status = 503, description = "Database unavailable", body = ErrorEnvelope),
    ),
    security(("function_key" = []), ("function_code" = []))
)]
pub(crate) async fn submit(
    State(engine): State<Engine>,
    p: PathParams,
    q: QueryParams,
    headers: HeaderMap,
    SchemaBody(params): SchemaBody,
) -> Result<Response, ApiError> {
    let job_type = p.name("job_type")?;
    q.only(&[])?;
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
            let body = SubmitResponse {
                message: if s.idempotent && !s.ignored_parameters.is_empty() {
                    format!(
                        "job already exists ({}); {} not part of the job id and ignored: the job keeps {}",
                        s.status,
                        s.ignored_parameters.join(", "),
                        s.ignored_parameters
                            .iter()
                            .map(|k| format!("{k}={}", s.parameters.get(k).unwrap_or(&Value::Null)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                } else if s.idempotent {
                    format!("job already exists ({})", s.status)
                } else {
                    "job created and queued".to_string()
                },
                queue_info: QueueInfo {
                    queued: !s.idempotent,
                    queue_type: "service_bus".into(),
                    queue_name: s.queue_name,
                    message_id: s.message_id,
                    job_id: s.job_id.clone(),
                },
                status_url: format!("/api/jobs/status/{}", s.job_id),
                job_id: s.job_id,
                status,
                job_status: s.status,
                job_type: s.job_type,
                parameters: s.parameters,
                ignored_parameters: s.ignored_parameters,
                idempotent: s.idempotent,
                current_stage: s.stage,
                total_stages: s.total_stages,
                correlation_id: s.correlation_id,
                created_at: s.created_at,
                result_data: s.result_data,
                error_details: s.error_details,
            };
            Ok((code, Json(body)).into_response())
        }
        Err(SubmitError::UnknownJobType { job_type, known }) => Err(ApiError::bad_request(
            "unknown_job_type",
            format!(
                "unknown job type {job_type:?}; known job types: {}",
                known.join(", ")
            ),
        )
        .with_details(vec![json!({"field": "path.job_type", "rule": "enum", "value": super::error::echo(&job_type), "message": format!("must be one of {}", known.join(", "))})])),
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

/// The earlier implementation's status shape (camelCase).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JobStatusCompat {
    /// Job id.
    pub job_id: String,
    /// Job type.
    pub job_type: String,
    /// Status.
    pub status: String,
    /// Current stage.
    pub stage: i32,
    /// Number of stages.
    pub total_stages: i32,
    /// Parameters.
    pub parameters: Value,
    /// Results per finished stage.
    pub stage_results: Value,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// When it became terminal.
    pub completed_at: Option<DateTime<Utc>>,
    /// Attempt.
    pub attempt: i32,
    /// Correlation id.
    pub correlation_id: Option<String>,
    /// Always `coremachine`.
    pub architecture: String,
    /// Stage names joined by ` -> `.
    pub pattern: String,
    /// Always true.
    #[serde(rename = "schema_validated")]
    pub schema_validated: bool,
    /// Final result (present when set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_data: Option<Value>,
    /// Error (present when set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_details: Option<String>,
}

/// A job's status in the earlier implementation's shape.
#[utoipa::path(
    get, path = "/api/jobs/status/{job_id}", tag = "jobs", operation_id = "job_status",
    params(("job_id" = String, Path, description = "Job id (64 hex)", pattern = "^[0-9a-fA-F]{64}$")),
    responses(
        (status = 200, description = "The job", body = JobStatusCompat),
        (status = 400, description = "job_id is not 64 hex", body = ErrorEnvelope),
        (status = 401, description = "Missing or wrong function key", body = ErrorEnvelope),
        (status = 404, description = "No such job", body = ErrorEnvelope),
        (status = 503, description = "Database unavailable", body = ErrorEnvelope),
    ),
    security(("function_key" = []), ("function_code" = []))
)]
pub(crate) async fn status(
    State(engine): State<Engine>,
    p: PathParams,
    q: QueryParams,
) -> Result<Json<JobStatusCompat>, ApiError> {
    let job_id = p.job_id("job_id")?;
    q.only(&[])?;
    let client = store::client(engine.pool(), "reading job status").await?;
    let found = find_job(&client, &job_id).await?;
    let stage_results = found.stage_results;
    let job = JobRow::from(found.job);
    let pattern = engine
        .registry()
        .job(&job.job_type)
        .map(|j| {
            j.stages()
                .iter()
                .map(|s| s.name)
                .collect::<Vec<_>>()
                .join(" -> ")
        })
        .unwrap_or_default();
    Ok(Json(JobStatusCompat {
        job_id: job.job_id,
        job_type: job.job_type,
        status: job.status,
        stage: job.stage,
        total_stages: job.total_stages,
        parameters: job.parameters,
        stage_results,
        created_at: job.created_at,
        updated_at: job.updated_at,
        completed_at: job.completed_at,
        attempt: job.attempt,
        correlation_id: job.correlation_id,
        architecture: "coremachine".into(),
        pattern,
        schema_validated: true,
        result_data: job.result_data,
        error_details: job.error_details,
    }))
}
