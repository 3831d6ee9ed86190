//! The operator's web page, served by the binary (no build step: the HTML, JS and CSS under
//! `ui/` are embedded with `include_str!`).
//!
//! - `GET /api/ui`: the job list (filter by status and type, newest first, auto-refresh).
//! - `GET /api/ui/jobs/{job_id}`: a job page (stage progress bars, task table, event timeline with
//!   the last successful step marked and failures shown with their error).
//! - `GET /api/ui/app.js`, `/api/ui/app.css`: the assets.
//! - `GET /api/ui/data/jobs?status=&job_type=&limit=` and `/api/ui/data/jobs/{job_id}/tasks?limit=`:
//!   the two reads the page needs beyond `/events`, `/events/summary` and `/timeline`.
//!
//! In Azure the page is one HTTP function (`http-ui`, route `ui/{*path}`); it passes its own
//! `?code=` function key on to the API calls it makes.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::events::{int_param, job_row};
use super::{ApiError, parse_job_id};
use crate::engine::Engine;
use crate::store::{self, QueryContext};

const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const APP_CSS: &str = include_str!("ui/app.css");

/// The statements of this module (prepared by a test against the migrated schema).
pub mod statements {
    /// The job list, newest first.
    pub const UI_JOBS: &str = include_str!("sql/ui_jobs.sql");
    /// The tasks of one job in stage order.
    pub const UI_JOB_TASKS: &str = include_str!("sql/ui_job_tasks.sql");
    /// Every statement, by name.
    pub const ALL: &[(&str, &str)] = &[("ui_jobs", UI_JOBS), ("ui_job_tasks", UI_JOB_TASKS)];
}

/// Job statuses the list can be filtered by.
pub const JOB_STATUSES: &[&str] = &[
    "queued",
    "processing",
    "completed",
    "completed_with_errors",
    "failed",
    "cancelled",
];

/// The routes (state: the engine).
pub fn routes() -> Router<Engine> {
    Router::new()
        .route("/api/ui", get(index))
        .route("/api/ui/", get(index))
        .route("/api/ui/jobs/{job_id}", get(index))
        .route("/api/ui/app.js", get(app_js))
        .route("/api/ui/app.css", get(app_css))
        .route("/api/ui/data/jobs", get(jobs))
        .route("/api/ui/data/jobs/{job_id}/tasks", get(tasks))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

async fn jobs(
    State(engine): State<Engine>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let limit = int_param(&q, "limit", 50, 1, 500)?;
    let non_empty = |k: &str| {
        q.get(k)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let status = non_empty("status");
    if let Some(s) = &status
        && !JOB_STATUSES.contains(&s.as_str())
    {
        return Err(ApiError::bad_request(
            "validation_error",
            format!(
                "status must be one of {}; got {:?}",
                JOB_STATUSES.join(", "),
                s.chars().take(40).collect::<String>()
            ),
        )
        .with_details(vec![
            json!({"field": "status", "rule": "enum", "allowed": JOB_STATUSES}),
        ]));
    }
    let job_type = non_empty("job_type").map(|s| s.chars().take(100).collect::<String>());
    let client = store::client(engine.pool(), "listing jobs for the web page").await?;
    let rows = client
        .query(statements::UI_JOBS, &[&status, &job_type, &limit])
        .await
        .ctx(|| "listing jobs".into())?;
    let jobs: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "job_id": r.get::<_, String>(0),
                "job_type": r.get::<_, String>(1),
                "status": r.get::<_, String>(2),
                "stage": r.get::<_, i32>(3),
                "total_stages": r.get::<_, i32>(4),
                "created_at": r.get::<_, DateTime<Utc>>(5),
                "updated_at": r.get::<_, DateTime<Utc>>(6),
                "completed_at": r.get::<_, Option<DateTime<Utc>>>(7),
                "error_details": r.get::<_, Option<String>>(8),
                "task_count": r.get::<_, i64>(9),
                "failed_tasks": r.get::<_, i64>(10),
            })
        })
        .collect();
    let mut types: Vec<&str> = engine.registry().job_types();
    types.sort_unstable();
    Ok(axum::Json(json!({
        "jobs": jobs,
        "count": jobs.len(),
        "limit": limit,
        "filters": {"status": status, "job_type": job_type},
        "statuses": JOB_STATUSES,
        "job_types": types,
    }))
    .into_response())
}

async fn tasks(
    State(engine): State<Engine>,
    Path(job_id): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let job_id = parse_job_id(&job_id)?;
    let limit = int_param(&q, "limit", 500, 1, 5000)?;
    let client = store::client(engine.pool(), "listing tasks for the web page").await?;
    job_row(&client, &job_id).await?;
    let rows = client
        .query(statements::UI_JOB_TASKS, &[&job_id.as_str(), &limit])
        .await
        .ctx(|| format!("listing tasks of job {job_id}"))?;
    let tasks: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "task_id": r.get::<_, String>(0),
                "stage": r.get::<_, i32>(1),
                "task_seq": r.get::<_, i32>(2),
                "task_index": r.get::<_, String>(3),
                "task_type": r.get::<_, String>(4),
                "status": r.get::<_, String>(5),
                "attempts": r.get::<_, i32>(6) + 1,
                "error_class": r.get::<_, Option<String>>(7),
                "error_details": r.get::<_, Option<String>>(8),
                "started_at": r.get::<_, Option<DateTime<Utc>>>(9),
                "completed_at": r.get::<_, Option<DateTime<Utc>>>(10),
                "duration_ms": r.get::<_, Option<i64>>(11),
            })
        })
        .collect();
    Ok(axum::Json(json!({
        "job_id": job_id.as_str(),
        "count": tasks.len(),
        "limit": limit,
        "tasks": tasks,
    }))
    .into_response())
}
