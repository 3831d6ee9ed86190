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
use tokio_postgres::Row;

use super::error::ErrorEnvelope;
use super::input::QueryParams;
use super::{ApiError, parse_job_id};
use crate::engine::{Engine, JobId};
use crate::store::{self, QueryContext, sql};

/// The statements of this module (prepared by a test against the migrated schema).
pub mod statements {
    /// One page of a job's events, oldest first.
    pub const EVENTS_PAGE: &str = include_str!("sql/events_page.sql");
    /// Event counts per type and status.
    pub const EVENTS_COUNTS: &str = include_str!("sql/events_counts.sql");
    /// The last successful event and the first failure.
    pub const EVENTS_MILESTONES: &str = include_str!("sql/events_milestones.sql");
    /// Started stages with task counts.
    pub const TIMELINE_STAGES: &str = include_str!("sql/timeline_stages.sql");
    /// Every statement, by name.
    pub const ALL: &[(&str, &str)] = &[
        ("events_page", EVENTS_PAGE),
        ("events_counts", EVENTS_COUNTS),
        ("events_milestones", EVENTS_MILESTONES),
        ("timeline_stages", TIMELINE_STAGES),
    ];
}

/// Default and largest page size of `/events`.
pub const DEFAULT_LIMIT: i64 = 100;
/// Largest page size of `/events`.
pub const MAX_LIMIT: i64 = 1000;

/// The routes (state: the engine).
pub fn routes() -> Router<Engine> {
    Router::new()
        .route("/api/jobs/{job_id}/events", get(events))
        .route("/api/jobs/{job_id}/events/summary", get(summary))
        .route("/api/jobs/{job_id}/timeline", get(timeline))
}

/// 404 unless the job exists; returns its row (`job_get.sql`).
pub(crate) async fn job_row(client: &store::Client, job_id: &JobId) -> Result<Row, ApiError> {
    client
        .query_opt(sql::JOB_GET, &[&job_id.as_str()])
        .await
        .ctx(|| format!("reading job {job_id}"))?
        .ok_or_else(|| ApiError::not_found(format!("job {job_id} not found")))
}

/// One event as JSON. `offset` is where the event columns start in `row`.
fn event_json(row: &Row, offset: usize) -> Value {
    json!({
        "event_id": row.get::<_, i64>(offset),
        "created_at": row.get::<_, DateTime<Utc>>(offset + 1),
        "event_type": row.get::<_, String>(offset + 2),
        "event_status": row.get::<_, String>(offset + 3),
        "checkpoint": row.get::<_, Option<String>>(offset + 4),
        "task_id": row.get::<_, Option<String>>(offset + 5),
        "stage": row.get::<_, Option<i32>>(offset + 6),
        "attempt": row.get::<_, Option<i32>>(offset + 7),
        "duration_ms": row.get::<_, Option<i32>>(offset + 8),
        "error_class": row.get::<_, Option<String>>(offset + 9),
        "error_type": row.get::<_, Option<String>>(offset + 10),
        "error_message": row.get::<_, Option<String>>(offset + 11),
        "data": row.get::<_, Value>(offset + 12),
        "job_attempt": row.get::<_, i32>(offset + 13),
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
pub async fn events(
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
    job_row(&client, &job_id).await?;
    // One row more than asked tells whether another page follows.
    let rows = client
        .query(
            statements::EVENTS_PAGE,
            &[&job_id.as_str(), &after, &task_id, &(limit + 1)],
        )
        .await
        .ctx(|| format!("reading events of job {job_id} after {after}"))?;
    let more = rows.len() as i64 > limit;
    let page: Vec<Value> = rows
        .iter()
        .take(limit as usize)
        .map(|r| event_json(r, 0))
        .collect();
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
pub async fn summary(
    State(engine): State<Engine>,
    Path(job_id): Path<String>,
) -> Result<Response, ApiError> {
    let job_id = parse_job_id(&job_id)?;
    let client = store::client(engine.pool(), "summarising job events").await?;
    let job = job_row(&client, &job_id).await?;
    let counts = client
        .query(statements::EVENTS_COUNTS, &[&job_id.as_str()])
        .await
        .ctx(|| format!("counting events of job {job_id}"))?;
    let milestones = client
        .query(statements::EVENTS_MILESTONES, &[&job_id.as_str()])
        .await
        .ctx(|| format!("reading milestones of job {job_id}"))?;
    let mut by_type = serde_json::Map::new();
    let mut by_status = serde_json::Map::new();
    let mut total = 0i64;
    let (mut first_at, mut last_at): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = (None, None);
    for r in &counts {
        let (t, s, n): (String, String, i64) = (r.get(0), r.get(1), r.get(2));
        let (f, l): (DateTime<Utc>, DateTime<Utc>) = (r.get(3), r.get(4));
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
    let milestone = |kind: &str| {
        milestones
            .iter()
            .find(|r| r.get::<_, String>(0) == kind)
            .map(|r| event_json(r, 1))
    };
    Ok(axum::Json(json!({
        "job_id": job_id.as_str(),
        "job_type": job.get::<_, String>("job_type"),
        "job_status": job.get::<_, String>("status"),
        "total_events": total,
        "counts_by_type": by_type,
        "counts_by_status": by_status,
        "first_event_at": first_at,
        "last_event_at": last_at,
        "current_attempt": job.get::<_, i32>("attempt"),
        "last_successful_step": milestone("last_success"),
        "first_failure": milestone("first_failure"),
        "error_details": job.get::<_, Option<String>>("error_details"),
        "earlier_attempts": job
            .get::<_, Value>("metadata")
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
pub async fn timeline(
    State(engine): State<Engine>,
    Path(job_id): Path<String>,
) -> Result<Response, ApiError> {
    let job_id = parse_job_id(&job_id)?;
    let client = store::client(engine.pool(), "reading a job timeline").await?;
    let job = job_row(&client, &job_id).await?;
    let rows = client
        .query(statements::TIMELINE_STAGES, &[&job_id.as_str()])
        .await
        .ctx(|| format!("reading stages of job {job_id}"))?;
    let job_type: String = job.get("job_type");
    let total_stages: i32 = job.get("total_stages");
    let defs = engine
        .registry()
        .job(&job_type)
        .map(|d| d.stages())
        .unwrap_or_default();
    let mut stages = Vec::new();
    for n in 1..=total_stages.max(rows.len() as i32) {
        let row = rows.iter().find(|r| r.get::<_, i32>(0) == n);
        let def = defs.get((n - 1) as usize);
        stages.push(match row {
            Some(r) => {
                let started: DateTime<Utc> = r.get(4);
                let completed: Option<DateTime<Utc>> = r.get(5);
                json!({
                    "stage": n,
                    "name": r.get::<_, String>(1),
                    "task_type": r.get::<_, String>(2),
                    "status": r.get::<_, String>(3),
                    "started_at": started,
                    "completed_at": completed,
                    "duration_ms": completed.map(|c| (c - started).num_milliseconds()),
                    "task_count": r.get::<_, i32>(6),
                    "tasks": r.get::<_, Value>(7),
                    "retries": r.get::<_, i64>(8),
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
        "status": job.get::<_, String>("status"),
        "current_stage": job.get::<_, i32>("stage"),
        "total_stages": total_stages,
        "attempt": job.get::<_, i32>("attempt"),
        "correlation_id": job.get::<_, Option<String>>("correlation_id"),
        "created_at": job.get::<_, DateTime<Utc>>("created_at"),
        "completed_at": job.get::<_, Option<DateTime<Utc>>>("completed_at"),
        "error_details": job.get::<_, Option<String>>("error_details"),
        "stages": stages,
    }))
    .into_response())
}
