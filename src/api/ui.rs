//! The operator's web page, served by the binary (no build step: the HTML, JS and CSS under
//! `ui/` are embedded with `include_str!`).
//!
//! - `GET /api/ui`: the job list (filter by status and type, newest first, auto-refresh).
//! - `GET /api/ui/jobs/{job_id}`: a job page (stage progress bars, task table, event timeline with
//!   the last successful step marked and failures shown with their error).
//! - `GET /api/ui/app.js`, `/api/ui/app.css`: the assets.
//! - `GET /api/ui/data/jobs?status=&job_type=&q=&since=&until=&cursor=&limit=` (searched, paged,
//!   with progress) and `/api/ui/data/jobs/{job_id}/tasks?status=&stage=&cursor=&limit=` (one page,
//!   failures first, totals always): the two reads the page needs beyond `/events` (read
//!   incrementally with `after`), `/events/summary` and `/timeline`; and
//!   `/api/ui/data/jobs/{job_id}/inputs?outcome=&offset=&limit=` (one page of the per-input
//!   outcomes a job's result lists, as process_raster_collection's does, failures first).
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

use super::cursor::{self, cursor_error};
use super::error::ErrorEnvelope;
use super::input::QueryParams;
use super::jobs::{JOB_STATUSES, find_job, job_cursor, parse_job_cursor, status_of};
use super::{ApiError, parse_job_id};
use crate::engine::Engine;
use crate::model::{JobStatus, TaskStatus};
use crate::store;
use crate::store::job_views::{self, JobSearch};
use crate::store::task_views::{self, TaskLineFilter};

const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const APP_CSS: &str = include_str!("ui/app.css");

/// The routes (state: the engine).
pub(crate) fn routes() -> Router<Engine> {
    Router::new()
        .route("/api/ui", get(index))
        .route("/api/ui/", get(index))
        .route("/api/ui/jobs/{job_id}", get(index))
        .route("/api/ui/requests/{request_id}", get(index))
        .route("/api/ui/app.js", get(app_js))
        .route("/api/ui/app.css", get(app_css))
        .route("/api/ui/data/jobs", get(jobs))
        .route("/api/ui/data/jobs/{job_id}/tasks", get(tasks))
        .route("/api/ui/data/jobs/{job_id}/inputs", get(inputs))
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
pub(crate) async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// A query timestamp (RFC 3339), or a 400 naming the parameter.
fn timestamp(q: &QueryParams, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    let Some(raw) = q.text(name, 100)?.filter(|s| !s.trim().is_empty()) else {
        return Ok(None);
    };
    DateTime::parse_from_rfc3339(raw.trim())
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(|e| {
            ApiError::field(
                "invalid_query",
                &format!("query.{name}"),
                "format",
                super::error::echo(&raw),
                format!("expected an RFC 3339 time such as 2026-01-31T12:00:00Z ({e})"),
            )
        })
}

/// A job id prefix (hex, lower-cased), or a 400.
fn id_prefix(q: &QueryParams) -> Result<Option<String>, ApiError> {
    let Some(raw) = q.text("q", 100)?.map(|s| s.trim().to_string()) else {
        return Ok(None);
    };
    if raw.is_empty() {
        return Ok(None);
    }
    if raw.len() > 64 || !raw.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ApiError::field(
            "invalid_query",
            "query.q",
            "pattern",
            super::error::echo(&raw),
            "a job id or its beginning: 1 to 64 hex characters (the page shows the first 12)",
        ));
    }
    Ok(Some(raw.to_ascii_lowercase()))
}

/// The page's job list: newest first with progress, searchable and paged.
#[utoipa::path(
    get, path = "/api/ui/data/jobs", tag = "ui", operation_id = "ui_jobs",
    params(
        ("limit" = Option<i64>, Query, description = "Rows at most (default 50)", minimum = 1, maximum = 500),
        ("status" = Option<String>, Query, description = "Status filter (empty: any)", max_length = 100),
        ("job_type" = Option<String>, Query, description = "Job type filter (empty: any)", max_length = 100),
        ("q" = Option<String>, Query, description = "Job id prefix (hex, e.g. the 12 characters the page shows)", max_length = 100),
        ("since" = Option<String>, Query, description = "Created at or after (RFC 3339)", max_length = 100),
        ("until" = Option<String>, Query, description = "Created before (RFC 3339)", max_length = 100),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page", max_length = 200),
    ),
    responses(
        (status = 200, description = "{jobs[], count, limit, next_cursor, filters, statuses, job_types}", body = Object),
        (status = 400, description = "A bad query parameter", body = ErrorEnvelope),
        (status = 401, description = "Missing or wrong function key", body = ErrorEnvelope),
        (status = 503, description = "Database unavailable", body = ErrorEnvelope),
    ),
    security(("function_key" = []), ("function_code" = []))
)]
pub(crate) async fn jobs(
    State(engine): State<Engine>,
    q: QueryParams,
) -> Result<Response, ApiError> {
    q.only(&[
        "limit", "status", "job_type", "q", "since", "until", "cursor",
    ])?;
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
    let prefix = id_prefix(&q)?;
    let (since, until) = (timestamp(&q, "since")?, timestamp(&q, "until")?);
    let after = q
        .text("cursor", 200)?
        .filter(|c| !c.is_empty())
        .map(|c| parse_job_cursor(&c))
        .transpose()?;
    let search = JobSearch {
        status: status_of::<JobStatus>(status.as_deref())?,
        job_type: job_type.clone(),
        id_prefix: prefix.clone(),
        since,
        until,
        after,
        limit: limit + 1,
    };
    let client = store::client(engine.pool(), "listing jobs for the web page").await?;
    let rows = job_views::progress_list(&client, &search).await?;
    let more = rows.len() as i64 > limit;
    let page = &rows[..rows.len().min(limit as usize)];
    let next_cursor = more
        .then(|| page.last())
        .flatten()
        .map(|r| job_cursor(r.created_at, &r.job_id));
    let jobs: Vec<Value> = page
        .iter()
        .map(|r| {
            json!({
                "job_id": r.job_id,
                "job_type": r.job_type,
                "status": r.status,
                "stage": r.stage,
                "total_stages": r.total_stages,
                "created_at": r.created_at,
                "updated_at": r.updated_at,
                "completed_at": r.completed_at,
                "error_details": r.error_details,
                "task_count": r.task_count,
                "failed_tasks": r.failed_tasks,
                "attempt": r.attempt,
                "done_tasks": r.done_tasks,
            })
        })
        .collect();
    let mut types: Vec<&str> = engine.registry().job_types();
    types.sort_unstable();
    Ok(axum::Json(json!({
        "jobs": jobs,
        "count": jobs.len(),
        "limit": limit,
        "next_cursor": next_cursor,
        "filters": {"status": status, "job_type": job_type, "q": prefix, "since": since, "until": until},
        "statuses": JOB_STATUSES,
        "job_types": types,
    }))
    .into_response())
}

/// Task statuses in the order the page lists them (failures first).
const TASK_ORDER: &[&str] = &["failed", "cancelled", "processing", "queued", "completed"];

fn task_cursor(rank: i32, stage: i32, seq: i32) -> String {
    cursor::encode(&format!("{rank}.{stage}.{seq}"))
}

fn parse_task_cursor(raw: &str) -> Result<(i32, i32, i32), ApiError> {
    let bad = || cursor_error(raw);
    let text = cursor::decode(raw)?;
    let mut parts = text.splitn(3, '.').map(str::parse::<i32>);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Ok(r)), Some(Ok(s)), Some(Ok(q))) => Ok((r, s, q)),
        _ => Err(bad()),
    }
}

/// The page's task table of one job, one page at a time.
#[utoipa::path(
    get, path = "/api/ui/data/jobs/{job_id}/tasks", tag = "ui", operation_id = "ui_job_tasks",
    params(
        ("job_id" = String, Path, description = "Job id (64 hex)", pattern = "^[0-9a-fA-F]{64}$"),
        ("limit" = Option<i64>, Query, description = "Rows at most (default 100)", minimum = 1, maximum = 5000),
        ("status" = Option<String>, Query, description = "Only this task status (empty: any)", max_length = 100),
        ("stage" = Option<i64>, Query, description = "Only this stage", minimum = 1, maximum = 1000),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page", max_length = 200),
    ),
    responses(
        (status = 200, description = "{job_id, count, limit, total, matching, totals{by_status, by_stage[]}, filters, next_cursor, tasks[]}: failures first, then stage and task order", body = Object),
        (status = 400, description = "job_id is not 64 hex, or a bad query parameter", body = ErrorEnvelope),
        (status = 401, description = "Missing or wrong function key", body = ErrorEnvelope),
        (status = 404, description = "No such job", body = ErrorEnvelope),
        (status = 503, description = "Database unavailable", body = ErrorEnvelope),
    ),
    security(("function_key" = []), ("function_code" = []))
)]
pub(crate) async fn tasks(
    State(engine): State<Engine>,
    Path(job_id): Path<String>,
    q: QueryParams,
) -> Result<Response, ApiError> {
    let job_id = parse_job_id(&job_id)?;
    q.only(&["limit", "status", "stage", "cursor"])?;
    let limit = q.int("limit", 1, 5000)?.unwrap_or(100);
    let status = match q.text("status", 100)?.filter(|s| !s.trim().is_empty()) {
        Some(_) => q.one_of("status", TASK_ORDER)?,
        None => None,
    };
    let stage = q.int("stage", 1, 1000)?.map(|s| s as i32);
    let after = q
        .text("cursor", 200)?
        .filter(|c| !c.is_empty())
        .map(|c| parse_task_cursor(&c))
        .transpose()?;
    let filter = TaskLineFilter {
        status: status_of::<TaskStatus>(status)?,
        stage,
        after,
        limit: limit + 1,
    };
    let client = store::client(engine.pool(), "listing tasks for the web page").await?;
    find_job(&client, &job_id).await?;
    let rows = task_views::lines(&client, &job_id, &filter).await?;
    let totals = task_views::totals(&client, &job_id).await?;
    let mut by_status = serde_json::Map::new();
    let mut by_stage: std::collections::BTreeMap<i32, serde_json::Map<String, Value>> =
        Default::default();
    let (mut total, mut matching) = (0i64, 0i64);
    for t in &totals {
        let (st, status_name, n) = (t.stage, t.status.as_str().to_string(), t.n);
        total += n;
        if status.is_none_or(|s| s == status_name) && stage.is_none_or(|s| s == st) {
            matching += n;
        }
        let e = by_status.entry(status_name.clone()).or_insert(json!(0));
        *e = json!(e.as_i64().unwrap_or(0) + n);
        by_stage
            .entry(st)
            .or_default()
            .insert(status_name, json!(n));
    }
    let more = rows.len() as i64 > limit;
    let page = &rows[..rows.len().min(limit as usize)];
    let next_cursor = more
        .then(|| page.last())
        .flatten()
        .map(|r| task_cursor(r.rank, r.stage, r.task_seq));
    let tasks: Vec<Value> = page
        .iter()
        .map(|r| {
            json!({
                "task_id": r.task_id,
                "stage": r.stage,
                "task_seq": r.task_seq,
                "task_index": r.task_index,
                "task_type": r.task_type,
                "status": r.status,
                "attempts": r.retry_count + 1,
                "error_class": r.error_class,
                "error_details": r.error_details,
                "started_at": r.started_at,
                "completed_at": r.completed_at,
                "duration_ms": r.duration_ms,
                "job_attempt": r.job_attempt,
            })
        })
        .collect();
    Ok(axum::Json(json!({
        "job_id": job_id.as_str(),
        "count": tasks.len(),
        "limit": limit,
        "total": total,
        "matching": matching,
        "totals": {
            "by_status": by_status,
            "by_stage": by_stage.into_iter().map(|(stage, counts)| json!({"stage": stage, "tasks": counts})).collect::<Vec<_>>(),
        },
        "filters": {"status": status, "stage": stage},
        "statuses": TASK_ORDER,
        "next_cursor": next_cursor,
        "tasks": tasks,
    }))
    .into_response())
}

/// Outcomes `GET /api/ui/data/jobs/{job_id}/inputs?outcome=` accepts.
const INPUT_OUTCOMES: &[&str] = &["ok", "failed"];

/// The page's per-input outcomes of one job (its result's `inputs`), one page at a time.
#[utoipa::path(
    get, path = "/api/ui/data/jobs/{job_id}/inputs", tag = "ui", operation_id = "ui_job_inputs",
    params(
        ("job_id" = String, Path, description = "Job id (64 hex)", pattern = "^[0-9a-fA-F]{64}$"),
        ("outcome" = Option<String>, Query, description = "Only `ok` or `failed` inputs (empty: any)", max_length = 100),
        ("offset" = Option<i64>, Query, description = "Rows to skip (default 0)", minimum = 0, maximum = 1000000),
        ("limit" = Option<i64>, Query, description = "Rows at most (default 50)", minimum = 1, maximum = 1000),
    ),
    responses(
        (status = 200, description = "{job_id, total, ok, failed, matching, offset, limit, count, next_offset, inputs[]}: failures first, then the result's order; total 0 when the job's result lists no inputs (yet)", body = Object),
        (status = 400, description = "job_id is not 64 hex, or a bad query parameter", body = ErrorEnvelope),
        (status = 401, description = "Missing or wrong function key", body = ErrorEnvelope),
        (status = 404, description = "No such job", body = ErrorEnvelope),
        (status = 503, description = "Database unavailable", body = ErrorEnvelope),
    ),
    security(("function_key" = []), ("function_code" = []))
)]
pub(crate) async fn inputs(
    State(engine): State<Engine>,
    Path(job_id): Path<String>,
    q: QueryParams,
) -> Result<Response, ApiError> {
    let job_id = parse_job_id(&job_id)?;
    q.only(&["outcome", "offset", "limit"])?;
    let outcome = match q.text("outcome", 100)?.filter(|s| !s.trim().is_empty()) {
        Some(_) => q.one_of("outcome", INPUT_OUTCOMES)?,
        None => None,
    };
    let offset = q.int("offset", 0, 1_000_000)?.unwrap_or(0);
    let limit = q.int("limit", 1, 1000)?.unwrap_or(50);
    let client = store::client(engine.pool(), "listing input outcomes for the web page").await?;
    find_job(&client, &job_id).await?;
    let job_views::InputTotals { total, ok } = job_views::input_totals(&client, &job_id).await?;
    let inputs = job_views::inputs(&client, &job_id, outcome, offset, limit).await?;
    let matching = match outcome {
        Some("ok") => ok,
        Some(_) => total - ok,
        None => total,
    };
    let end = offset + inputs.len() as i64;
    Ok(axum::Json(json!({
        "job_id": job_id.as_str(),
        "total": total,
        "ok": ok,
        "failed": total - ok,
        "matching": matching,
        "outcome": outcome,
        "offset": offset,
        "limit": limit,
        "count": inputs.len(),
        "next_offset": (end < matching).then_some(end),
        "inputs": inputs,
    }))
    .into_response())
}
