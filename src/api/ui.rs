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
//! In Azure the page is two HTTP functions: `http-ui` (route `ui/{*path}`, **anonymous**) serves
//! the page shell and its assets, which hold no data, so a browser can load `<script src>` and
//! `<link href>` without a key; `http-ui-data` (route `ui/data/{*path}`, function level; literal
//! segments win) serves the data. The page sends the operator's function key as
//! `x-functions-key` on every data call: asked for once when a call answers 401 (or taken from a
//! `?code=` in the address) and kept in the tab's `sessionStorage`. Behind App Service
//! Authentication the same calls carry the session cookie (docs/operations.md, "The web page").

use axum::Router;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::error::ErrorEnvelope;
use super::events::job_row;
use super::input::QueryParams;
use super::jobs::JOB_STATUSES;
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

/// The web page (job list, and a job's page under `/api/ui/jobs/{job_id}`).
#[utoipa::path(
    get, path = "/api/ui", tag = "ui", operation_id = "ui_page",
    responses((status = 200, description = "The page (anonymous: it holds no data)", content_type = "text/html", body = String)),
    security(())
)]
pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// The page's job list: newest first with task counts.
#[utoipa::path(
    get, path = "/api/ui/data/jobs", tag = "ui", operation_id = "ui_jobs",
    params(
        ("limit" = Option<i64>, Query, description = "Rows at most (default 50)", minimum = 1, maximum = 500),
        ("status" = Option<String>, Query, description = "Status filter (empty: any)", max_length = 100),
        ("job_type" = Option<String>, Query, description = "Job type filter (empty: any)", max_length = 100),
    ),
    responses(
        (status = 200, description = "{jobs[], count, limit, filters, statuses, job_types}", body = Object),
        (status = 400, description = "A bad query parameter", body = ErrorEnvelope),
        (status = 401, description = "Missing or wrong function key", body = ErrorEnvelope),
        (status = 503, description = "Database unavailable", body = ErrorEnvelope),
    ),
    security(("function_key" = []), ("function_code" = []))
)]
pub async fn jobs(State(engine): State<Engine>, q: QueryParams) -> Result<Response, ApiError> {
    q.only(&["limit", "status", "job_type"])?;
    let limit = q.int("limit", 1, 500)?.unwrap_or(50);
    // An empty filter (the page's "any" choice) means no filter.
    let status = match q.text("status", 100)?.filter(|s| !s.trim().is_empty()) {
        Some(_) => q.one_of("status", JOB_STATUSES)?.map(str::to_string),
        None => None,
    };
    let job_type = q
        .text("job_type", 100)?
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
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

/// The page's task table of one job.
#[utoipa::path(
    get, path = "/api/ui/data/jobs/{job_id}/tasks", tag = "ui", operation_id = "ui_job_tasks",
    params(
        ("job_id" = String, Path, description = "Job id (64 hex)", pattern = "^[0-9a-fA-F]{64}$"),
        ("limit" = Option<i64>, Query, description = "Rows at most (default 500)", minimum = 1, maximum = 5000),
    ),
    responses(
        (status = 200, description = "{job_id, count, limit, tasks[]}", body = Object),
        (status = 400, description = "job_id is not 64 hex, or a bad query parameter", body = ErrorEnvelope),
        (status = 401, description = "Missing or wrong function key", body = ErrorEnvelope),
        (status = 404, description = "No such job", body = ErrorEnvelope),
        (status = 503, description = "Database unavailable", body = ErrorEnvelope),
    ),
    security(("function_key" = []), ("function_code" = []))
)]
pub async fn tasks(
    State(engine): State<Engine>,
    Path(job_id): Path<String>,
    q: QueryParams,
) -> Result<Response, ApiError> {
    let job_id = parse_job_id(&job_id)?;
    q.only(&["limit"])?;
    let limit = q.int("limit", 1, 5000)?.unwrap_or(500);
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
