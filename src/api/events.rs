//! A job's story over HTTP, read from `app.job_events`, `app.job_stages` and `app.tasks`:
//!
//! - `GET /api/jobs/{job_id}/events?cursor=&limit=&task_id=`: events oldest first, keyset-paged
//!   like the other lists (`next_cursor`, `null` on the last page; the cursor is the last event id
//!   seen, so `after=<event_id>` is accepted too).
//! - `GET /api/jobs/{job_id}/events/summary`: counts per event type and status, the last successful
//!   step, and the first failure with its error.
//! - `GET /api/jobs/{job_id}/timeline`: every stage of the job type with its start, end and task
//!   counts by status (stages not reached yet are `pending`).
//!
//! The shapes are documented in docs/observability.md.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::error::ErrorEnvelope;
use super::input::QueryParams;
use super::jobs::find_job;
use super::{ApiError, parse_job_id};
use crate::engine::Engine;
use crate::store::event_views::{self, EventView};
use crate::store::{self, stage_views};

/// Default and largest page size of `/events`.
pub(crate) const DEFAULT_LIMIT: i64 = 100;
/// Largest page size of `/events`.
pub(crate) const MAX_LIMIT: i64 = 1000;

/// The routes (state: the engine).
pub(crate) fn routes() -> Router<Engine> {
    Router::new()
        .route("/api/jobs/{job_id}/events", get(events))
        .route("/api/jobs/{job_id}/events/summary", get(summary))
        .route("/api/jobs/{job_id}/timeline", get(timeline))
}

/// One event as JSON.
fn event_json(e: &EventView) -> Value {
    json!({
        "event_id": e.event_id,
        "created_at": e.created_at,
        "event_type": e.event_type,
        "event_status": e.event_status,
        "checkpoint": e.checkpoint,
        "task_id": e.task_id,
        "stage": e.stage,
        "attempt": e.attempt,
        "duration_ms": e.duration_ms,
        "error_class": e.error_class,
        "error_type": e.error_type,
        "error_message": e.error_message,
        "data": e.data,
        "job_attempt": e.job_attempt,
    })
}

/// A page of the job's events, oldest first.
#[utoipa::path(
    get, path = "/api/jobs/{job_id}/events", tag = "events", operation_id = "job_events",
    params(
        ("job_id" = String, Path, description = "Job id (64 hex)", pattern = "^[0-9a-fA-F]{64}$"),
        ("limit" = Option<i64>, Query, description = "Page size (default 100)", minimum = 1, maximum = 1000),
        ("cursor" = Option<i64>, Query, description = "next_cursor of the previous page", minimum = 0),
        ("after" = Option<i64>, Query, description = "Only events after this event id (same as cursor)", minimum = 0),
        ("task_id" = Option<String>, Query, description = "Only this task's events", min_length = 1, max_length = 100),
    ),
    responses(
        (status = 200, description = "{job_id, count, limit, after, next_cursor, events[]}; see docs/observability.md", body = Object),
        (status = 400, description = "job_id is not 64 hex, or a bad query parameter", body = ErrorEnvelope),
        (status = 401, description = "Missing or wrong function key", body = ErrorEnvelope),
        (status = 404, description = "No such job", body = ErrorEnvelope),
        (status = 503, description = "Database unavailable", body = ErrorEnvelope),
    ),
    security(("function_key" = []), ("function_code" = []))
)]
pub(crate) async fn events(
    State(engine): State<Engine>,
    Path(job_id): Path<String>,
    q: QueryParams,
) -> Result<Response, ApiError> {
    let job_id = parse_job_id(&job_id)?;
    q.only(&["limit", "cursor", "after", "task_id"])?;
    let limit = q.int("limit", 1, MAX_LIMIT)?.unwrap_or(DEFAULT_LIMIT);
    // `cursor` (what `next_cursor` returned) and `after` (an event id) are the same thing.
    let after = match q.int("cursor", 0, i64::MAX)? {
        Some(c) => c,
        None => q.int("after", 0, i64::MAX)?.unwrap_or(0),
    };
    let task_id = q.text("task_id", 100)?.map(|s| s.trim().to_string());
    if task_id.as_deref() == Some("") {
        return Err(ApiError::field(
            "invalid_query",
            "query.task_id",
            "min_length",
            json!(""),
            "task_id must not be empty",
        ));
    }
    let client = store::client(engine.pool(), "reading job events").await?;
    find_job(&client, &job_id).await?;
    // One row more than asked tells whether another page follows.
    let rows = event_views::page(&client, &job_id, after, task_id.as_deref(), limit + 1).await?;
    let more = rows.len() as i64 > limit;
    let page: Vec<Value> = rows.iter().take(limit as usize).map(event_json).collect();
    let next_cursor = if more {
        page.last()
            .and_then(|e| e["event_id"].as_i64())
            .map(|id| id.to_string())
    } else {
        None
    };
    Ok(axum::Json(json!({
        "job_id": job_id.as_str(),
        "count": page.len(),
        "limit": limit,
        "after": after,
        "next_cursor": next_cursor,
        "events": page,
    }))
    .into_response())
}

/// Event counts per type and status, the last successful step and the first failure.
#[utoipa::path(
    get, path = "/api/jobs/{job_id}/events/summary", tag = "events", operation_id = "job_events_summary",
    params(("job_id" = String, Path, description = "Job id (64 hex)", pattern = "^[0-9a-fA-F]{64}$")),
    responses(
        (status = 200, description = "Counts, last successful step, first failure; see docs/observability.md", body = Object),
        (status = 400, description = "job_id is not 64 hex, or a bad query parameter", body = ErrorEnvelope),
        (status = 401, description = "Missing or wrong function key", body = ErrorEnvelope),
        (status = 404, description = "No such job", body = ErrorEnvelope),
        (status = 503, description = "Database unavailable", body = ErrorEnvelope),
    ),
    security(("function_key" = []), ("function_code" = []))
)]
pub(crate) async fn summary(
    State(engine): State<Engine>,
    Path(job_id): Path<String>,
) -> Result<Response, ApiError> {
    let job_id = parse_job_id(&job_id)?;
    let client = store::client(engine.pool(), "summarising job events").await?;
    let job = find_job(&client, &job_id).await?;
    let counts = event_views::counts(&client, &job_id).await?;
    let milestones = event_views::milestones(&client, &job_id).await?;
    let mut by_type = serde_json::Map::new();
    let mut by_status = serde_json::Map::new();
    let mut total = 0i64;
    let (mut first_at, mut last_at): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = (None, None);
    for c in counts {
        let (t, s, n, f, l) = (c.event_type, c.event_status, c.n, c.first_at, c.last_at);
        total += n;
        let add = |m: &mut serde_json::Map<String, Value>, k: String| {
            let cur = m.get(&k).and_then(Value::as_i64).unwrap_or(0);
            m.insert(k, json!(cur + n));
        };
        add(&mut by_type, t);
        add(&mut by_status, s);
        first_at = Some(first_at.map_or(f, |x| x.min(f)));
        last_at = Some(last_at.map_or(l, |x| x.max(l)));
    }
    Ok(axum::Json(json!({
        "job_id": job_id.as_str(),
        "job_type": job.job.job_type,
        "job_status": job.job.status,
        "total_events": total,
        "counts_by_type": by_type,
        "counts_by_status": by_status,
        "first_event_at": first_at,
        "last_event_at": last_at,
        "current_attempt": job.job.attempt,
        "last_successful_step": milestones.last_success.as_ref().map(event_json),
        "first_failure": milestones.first_failure.as_ref().map(event_json),
        "error_details": job.job.error_details,
        "earlier_attempts": job
            .metadata
            .get("attempts")
            .cloned()
            .unwrap_or_else(|| json!([])),
    }))
    .into_response())
}

/// Every stage with its start, end and task counts by status.
#[utoipa::path(
    get, path = "/api/jobs/{job_id}/timeline", tag = "events", operation_id = "job_timeline",
    params(("job_id" = String, Path, description = "Job id (64 hex)", pattern = "^[0-9a-fA-F]{64}$")),
    responses(
        (status = 200, description = "Stages with start/end and task counts; see docs/observability.md", body = Object),
        (status = 400, description = "job_id is not 64 hex, or a bad query parameter", body = ErrorEnvelope),
        (status = 401, description = "Missing or wrong function key", body = ErrorEnvelope),
        (status = 404, description = "No such job", body = ErrorEnvelope),
        (status = 503, description = "Database unavailable", body = ErrorEnvelope),
    ),
    security(("function_key" = []), ("function_code" = []))
)]
pub(crate) async fn timeline(
    State(engine): State<Engine>,
    Path(job_id): Path<String>,
) -> Result<Response, ApiError> {
    let job_id = parse_job_id(&job_id)?;
    let client = store::client(engine.pool(), "reading a job timeline").await?;
    let job = find_job(&client, &job_id).await?.job;
    let rows = stage_views::timeline(&client, &job_id).await?;
    let job_type = job.job_type;
    let total_stages = job.total_stages;
    let defs = engine
        .registry()
        .job(&job_type)
        .map(|d| d.stages())
        .unwrap_or_default();
    let mut stages = Vec::new();
    for n in 1..=total_stages.max(rows.len() as i32) {
        let row = rows.iter().find(|r| r.stage == n);
        let def = defs.get((n - 1) as usize);
        stages.push(match row {
            Some(r) => {
                let (started, completed) = (r.started_at, r.completed_at);
                json!({
                    "stage": n,
                    "name": r.name,
                    "task_type": r.task_type,
                    "status": r.status,
                    "started_at": started,
                    "completed_at": completed,
                    "duration_ms": completed.map(|c| (c - started).num_milliseconds()),
                    "task_count": r.task_count,
                    "tasks": r.task_counts,
                    "retries": r.retries,
                })
            }
            None => json!({
                "stage": n,
                "name": def.map(|d| d.name),
                "task_type": def.map(|d| d.task_type),
                "status": "pending",
                "started_at": null,
                "completed_at": null,
                "duration_ms": null,
                "task_count": 0,
                "tasks": {},
                "retries": 0,
            }),
        });
    }
    Ok(axum::Json(json!({
        "job_id": job_id.as_str(),
        "job_type": job_type,
        "status": job.status,
        "current_stage": job.stage,
        "total_stages": total_stages,
        "attempt": job.attempt,
        "correlation_id": job.correlation_id,
        "created_at": job.created_at,
        "completed_at": job.completed_at,
        "error_details": job.error_details,
        "stages": stages,
    }))
    .into_response())
}
