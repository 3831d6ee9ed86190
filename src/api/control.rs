//! `POST /api/jobs/{job_id}/cancel` and `POST /api/jobs/{job_id}/resubmit` (see engine/control.rs).

use axum::Json;
use axum::extract::State;
use serde_json::json;

use super::error::{ApiError, ErrorEnvelope, detail};
use super::input::{JsonBody, PathParams, QueryParams};
use crate::engine::{Cancelled, ControlError, Engine, ResubmitFrom, Resubmitted};

/// Where a resubmit starts (query parameter `from`).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[expect(
    dead_code,
    reason = "the OpenAPI schema of `from`; the handler reads the text (engine::ResubmitFrom)"
)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ResubmitFromName {
    /// The stage where the previous attempt stopped (completed stages are kept).
    FailedStage,
    /// Stage 1.
    Start,
    /// Only the failed or cancelled tasks of the stage where it stopped (its completed tasks keep
    /// their results).
    FailedTasks,
}

/// The cancel response: what the engine did, and a sentence about it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct CancelResponse {
    /// Always `cancelled`.
    pub status: String,
    /// What the cancel did.
    #[serde(flatten)]
    pub cancelled: Cancelled,
    /// What happened, in words.
    pub message: String,
}

/// The resubmit response.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ResubmitResponse {
    /// Always `queued`.
    pub status: String,
    /// What the resubmit did.
    #[serde(flatten)]
    pub resubmitted: Resubmitted,
    /// Where to poll.
    pub status_url: String,
}

fn control_error(e: ControlError) -> ApiError {
    match e {
        ControlError::NotFound { job_id } => ApiError::not_found(format!("job {job_id} not found")),
        ControlError::Conflict {
            ref status,
            allowed,
            ..
        } => ApiError::conflict(e.to_string()).with_details(vec![detail(
            "status",
            "job_status",
            json!(status),
            format!("the job must be {}", crate::engine::state::or_list(allowed)),
        )]),
        ControlError::NothingToRetry { stage, .. } => ApiError::conflict(e.to_string())
            .with_details(vec![detail(
                "from",
                "nothing_to_retry",
                json!("failed_tasks"),
                format!("stage {stage} has nothing a task retry can run; see the message"),
            )]),
        ControlError::Store(s) => s.into(),
    }
}

/// Cancels a queued or processing job.
#[utoipa::path(
    post, path = "/api/jobs/{job_id}/cancel", tag = "control", operation_id = "cancel_job",
    params(
        ("job_id" = String, Path, description = "Job id (64 hex)", pattern = "^[0-9a-fA-F]{64}$"),
        ("reason" = Option<String>, Query, description = "Why (recorded with the event)", max_length = 500),
    ),
    responses(
        (status = 200, description = "Cancelled", body = CancelResponse),
        (status = 400, description = "job_id is not 64 hex", body = ErrorEnvelope),
        (status = 401, description = "Missing or wrong function key", body = ErrorEnvelope),
        (status = 404, description = "No such job", body = ErrorEnvelope),
        (status = 409, description = "The job is already terminal", body = ErrorEnvelope),
        (status = 413, description = "Body larger than 64 KB", body = ErrorEnvelope),
        (status = 415, description = "Body is not JSON", body = ErrorEnvelope),
        (status = 503, description = "Database unavailable", body = ErrorEnvelope),
    ),
    security(("function_key" = []), ("function_code" = []))
)]
pub(crate) async fn cancel(
    State(engine): State<Engine>,
    p: PathParams,
    q: QueryParams,
    _body: JsonBody,
) -> Result<Json<CancelResponse>, ApiError> {
    let job_id = p.job_id("job_id")?;
    q.only(&["reason"])?;
    let reason = q
        .text("reason", 500)?
        .unwrap_or_else(|| "requested through the API".into());
    let c: Cancelled = engine
        .cancel(&job_id, &reason)
        .await
        .map_err(control_error)?;
    Ok(Json(CancelResponse {
        status: "cancelled".into(),
        message: format!(
            "job cancelled at stage {}: {} queued task(s) cancelled, {} running task(s) will be recorded but not advance the job",
            c.stage, c.cancelled_tasks, c.in_flight_tasks
        ),
        cancelled: c,
    }))
}

/// Starts a new attempt of a failed or cancelled job.
#[utoipa::path(
    post, path = "/api/jobs/{job_id}/resubmit", tag = "control", operation_id = "resubmit_job",
    params(
        ("job_id" = String, Path, description = "Job id (64 hex)", pattern = "^[0-9a-fA-F]{64}$"),
        ("from" = Option<ResubmitFromName>, Query, description = "`failed_stage` (default: keep completed stages), `start`, or `failed_tasks` (only the failed or cancelled tasks of the stage where the job stopped run again)"),
    ),
    responses(
        (status = 202, description = "New attempt queued", body = ResubmitResponse),
        (status = 400, description = "Invalid id or `from`", body = ErrorEnvelope),
        (status = 401, description = "Missing or wrong function key", body = ErrorEnvelope),
        (status = 404, description = "No such job", body = ErrorEnvelope),
        (status = 409, description = "The job is not failed or cancelled, or (`failed_tasks`) its stage has no failed task or still has running ones", body = ErrorEnvelope),
        (status = 413, description = "Body larger than 64 KB", body = ErrorEnvelope),
        (status = 415, description = "Body is not JSON", body = ErrorEnvelope),
        (status = 503, description = "Database unavailable", body = ErrorEnvelope),
    ),
    security(("function_key" = []), ("function_code" = []))
)]
pub(crate) async fn resubmit(
    State(engine): State<Engine>,
    p: PathParams,
    q: QueryParams,
    _body: JsonBody,
) -> Result<(axum::http::StatusCode, Json<ResubmitResponse>), ApiError> {
    let job_id = p.job_id("job_id")?;
    q.only(&["from"])?;
    let from = match q.one_of("from", &["failed_stage", "start", "failed_tasks"])? {
        Some("start") => ResubmitFrom::Start,
        Some("failed_tasks") => ResubmitFrom::FailedTasks,
        _ => ResubmitFrom::FailedStage,
    };
    let r: Resubmitted = engine
        .resubmit(&job_id, from)
        .await
        .map_err(control_error)?;
    Ok((
        axum::http::StatusCode::ACCEPTED,
        Json(ResubmitResponse {
            status: "queued".into(),
            status_url: format!("/api/jobs/status/{}", r.job_id),
            resubmitted: r,
        }),
    ))
}
