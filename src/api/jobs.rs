//! Reading jobs and tasks: `GET /api/jobs`, `GET /api/jobs/{job_id}`,
//! `GET /api/jobs/{job_id}/tasks`, and the earlier implementation's `GET /api/dbadmin/jobs`,
//! `GET /api/dbadmin/jobs/{job_id}` and `GET /api/dbadmin/tasks/{job_id}`.
//!
//! Lists are keyset-paginated (`next_cursor`), so page N costs the same as page 1.

use axum::Json;
use axum::extract::State;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Datelike, Utc};
use serde_json::{Value, json};
use tokio_postgres::Row;

use super::error::{ApiError, ErrorEnvelope};
use super::input::{PathParams, QueryParams};
use crate::engine::state::{JobStatus, TaskStatus};
use crate::engine::{Engine, JobId};
use crate::store::{self, QueryContext, sql};

/// One job as listed (also the earlier `dbadmin/jobs` item shape, plus CoreMachine's columns).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct JobRow {
    /// Job id (64 hex).
    pub job_id: String,
    /// Job type.
    pub job_type: String,
    /// queued | processing | completed | completed_with_errors | failed | cancelled.
    pub status: String,
    /// Current stage (1-based).
    pub stage: i32,
    /// Number of stages.
    pub total_stages: i32,
    /// Attempt (1 + number of resubmits).
    pub attempt: i32,
    /// Validated parameters.
    pub parameters: Value,
    /// Final result (terminal jobs).
    pub result_data: Option<Value>,
    /// Why the job failed or was cancelled.
    pub error_details: Option<String>,
    /// Correlation id given at submit.
    pub correlation_id: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// When the job became terminal.
    pub completed_at: Option<DateTime<Utc>>,
}

impl JobRow {
    fn from_row(r: &Row) -> Self {
        Self {
            job_id: r.get("job_id"),
            job_type: r.get("job_type"),
            status: r.get("status"),
            stage: r.get("stage"),
            total_stages: r.get("total_stages"),
            attempt: r.get("attempt"),
            parameters: r.get("parameters"),
            result_data: r.get("result_data"),
            error_details: r.get("error_details"),
            correlation_id: r.get("correlation_id"),
            created_at: r.get("created_at"),
            updated_at: r.get("updated_at"),
            completed_at: r.get("completed_at"),
        }
    }
}

/// A page of jobs, newest first.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct JobPage {
    /// The jobs.
    pub jobs: Vec<JobRow>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
    /// Page size used.
    pub limit: i64,
}

/// One stage of a job with its task counts.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct StageProgress {
    /// Stage number.
    pub stage: i32,
    /// Stage name.
    pub name: String,
    /// Task type of its tasks.
    pub task_type: String,
    /// pending (not started) | running | completed | failed | cancelled.
    pub status: String,
    /// Tasks created (null while pending).
    pub task_count: Option<i32>,
    /// Tasks waiting to run.
    pub queued: i64,
    /// Tasks running.
    pub processing: i64,
    /// Tasks completed.
    pub completed: i64,
    /// Tasks failed.
    pub failed: i64,
    /// Tasks cancelled.
    pub cancelled: i64,
    /// Attempt that ran the stage.
    pub attempt: Option<i32>,
    /// Start time.
    pub started_at: Option<DateTime<Utc>>,
    /// End time.
    pub completed_at: Option<DateTime<Utc>>,
}

/// A job with its stages and previous attempts.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct JobDetail {
    /// The job row.
    #[serde(flatten)]
    pub job: JobRow,
    /// Results recorded per finished stage (keys are stage numbers).
    pub stage_results: Value,
    /// Every stage of the job type, with counts for those that started.
    pub stages: Vec<StageProgress>,
    /// Outcomes of earlier attempts (resubmits), oldest first.
    pub previous_attempts: Vec<Value>,
    /// Related URLs.
    pub links: JobLinks,
}

/// URLs of a job's resources.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct JobLinks {
    /// Compatible status.
    pub status: String,
    /// Tasks.
    pub tasks: String,
    /// Events.
    pub events: String,
    /// Cancel (POST).
    pub cancel: String,
    /// Resubmit (POST).
    pub resubmit: String,
}

/// One task.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TaskRow {
    /// Task id.
    pub task_id: String,
    /// Job id.
    pub parent_job_id: String,
    /// Job type.
    pub job_type: String,
    /// Task type.
    pub task_type: String,
    /// Stage.
    pub stage: i32,
    /// Position in the stage (text, as in the earlier schema).
    pub task_index: String,
    /// Position in the stage (number).
    pub task_seq: i32,
    /// queued | processing | completed | failed | cancelled.
    pub status: String,
    /// Task parameters.
    pub parameters: Value,
    /// Handler result.
    pub result_data: Option<Value>,
    /// Error text.
    pub error_details: Option<String>,
    /// transient | permanent.
    pub error_class: Option<String>,
    /// Retries so far.
    pub retry_count: i32,
    /// Job attempt the task belongs to.
    pub job_attempt: i32,
    /// Last claim time.
    pub heartbeat: Option<DateTime<Utc>>,
    /// Start of the latest run.
    pub started_at: Option<DateTime<Utc>>,
    /// End time.
    pub completed_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl TaskRow {
    /// Reads the columns of `tasks_list.sql` (and `task_get.sql`).
    pub(super) fn from_row(r: &Row) -> Self {
        Self {
            task_id: r.get("task_id"),
            parent_job_id: r.get("parent_job_id"),
            job_type: r.get("job_type"),
            task_type: r.get("task_type"),
            stage: r.get("stage"),
            task_index: r.get("task_index"),
            task_seq: r.get("task_seq"),
            status: r.get("status"),
            parameters: r.get("parameters"),
            result_data: r.get("result_data"),
            error_details: r.get("error_details"),
            error_class: r.get("error_class"),
            retry_count: r.get("retry_count"),
            job_attempt: r.get("job_attempt"),
            heartbeat: r.get("heartbeat"),
            started_at: r.get("started_at"),
            completed_at: r.get("completed_at"),
            created_at: r.get("created_at"),
            updated_at: r.get("updated_at"),
        }
    }
}

/// A page of a job's tasks in stage and task order.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TaskPage {
    /// Job id.
    pub job_id: String,
    /// The tasks.
    pub tasks: Vec<TaskRow>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
    /// Filters and counts.
    pub query_info: TaskQueryInfo,
}

/// Filters and counts of a task listing.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TaskQueryInfo {
    /// Tasks in this response.
    pub total_tasks: usize,
    /// Stage filter.
    pub stage: Option<i64>,
    /// Status filter.
    pub status: Option<String>,
    /// Page size used.
    pub limit: i64,
    /// When the listing was made.
    pub timestamp: DateTime<Utc>,
}

/// The earlier `dbadmin/jobs` response.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DbadminJobs {
    /// The jobs, newest first.
    pub jobs: Vec<JobRow>,
    /// The filters applied.
    pub query_info: DbadminQueryInfo,
    /// When the listing was made.
    pub timestamp: DateTime<Utc>,
}

/// Filters of the earlier `dbadmin/jobs`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DbadminQueryInfo {
    /// Rows at most.
    pub limit: i64,
    /// Created within this many hours.
    pub hours_back: i64,
    /// Status filter.
    pub status_filter: Option<String>,
    /// Job type filter.
    pub job_type_filter: Option<String>,
    /// Rows returned.
    pub total_found: usize,
}

/// The earlier `dbadmin/jobs/{job_id}` response.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DbadminJob {
    /// The job.
    pub job: JobRow,
    /// When it was read.
    pub timestamp: DateTime<Utc>,
}

/// Job statuses the job filters accept (the web page's list too).
pub const JOB_STATUSES: &[&str] = &[
    "queued",
    "processing",
    "completed",
    "completed_with_errors",
    "failed",
    "cancelled",
];
const TASK_STATUSES: &[&str] = &["queued", "processing", "completed", "failed", "cancelled"];

// The enums are the source of truth; these lists are what the query parameters accept.
const _: () = assert!(JOB_STATUSES.len() == JobStatus::ALL.len());
const _: () = assert!(TASK_STATUSES.len() == TaskStatus::ALL.len());

/// The 400 for a cursor this API did not make.
pub(super) fn cursor_error(raw: &str) -> ApiError {
    ApiError::field(
        "invalid_cursor",
        "query.cursor",
        "cursor",
        super::error::echo(raw),
        "not a cursor returned by this API (pass next_cursor unchanged)",
    )
}

/// The keyset cursor of a job list row.
pub(super) fn job_cursor(created: DateTime<Utc>, job_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}.{job_id}", created.timestamp_micros()))
}

/// Reads a cursor made by [`job_cursor`].
pub(super) fn parse_job_cursor(raw: &str) -> Result<(DateTime<Utc>, String), ApiError> {
    let text = URL_SAFE_NO_PAD
        .decode(raw)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| cursor_error(raw))?;
    let (micros, id) = text.split_once('.').ok_or_else(|| cursor_error(raw))?;
    let micros: i64 = micros.parse().map_err(|_| cursor_error(raw))?;
    // Years 1..=9999: chrono reaches further than PostgreSQL's timestamptz (4713 BC onwards),
    // and a time out of PostgreSQL's range would fail the query (SQLSTATE 22008) instead of
    // being this client's 400.
    let at = DateTime::from_timestamp_micros(micros)
        .filter(|t| (1..=9999).contains(&t.year()))
        .ok_or_else(|| cursor_error(raw))?;
    let id = JobId::parse(id).map_err(|_| cursor_error(raw))?;
    Ok((at, id.to_string()))
}

fn parse_task_cursor(raw: &str) -> Result<(i32, i32), ApiError> {
    let text = URL_SAFE_NO_PAD
        .decode(raw)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| cursor_error(raw))?;
    let (a, b) = text.split_once('.').ok_or_else(|| cursor_error(raw))?;
    Ok((
        a.parse().map_err(|_| cursor_error(raw))?,
        b.parse().map_err(|_| cursor_error(raw))?,
    ))
}

struct JobFilter {
    status: Option<&'static str>,
    job_type: Option<String>,
    hours: Option<i64>,
}

fn job_filter(q: &QueryParams) -> Result<JobFilter, ApiError> {
    Ok(JobFilter {
        status: q.one_of("status", JOB_STATUSES)?,
        job_type: q.text("job_type", 100)?,
        hours: q.int("hours", 1, 24 * 365)?,
    })
}

async fn list(
    engine: &Engine,
    f: &JobFilter,
    hours: Option<i64>,
    cursor: Option<(DateTime<Utc>, String)>,
    limit: i64,
) -> Result<Vec<Row>, ApiError> {
    let client = store::client(engine.pool(), "listing jobs").await?;
    let hours = hours.map(|h| h as i32);
    let (at, id) = match cursor {
        Some((a, i)) => (Some(a), Some(i)),
        None => (None, None),
    };
    Ok(client
        .query(
            sql::JOBS_LIST,
            &[&f.status, &f.job_type, &hours, &at, &id, &limit],
        )
        .await
        .ctx(|| "listing jobs".into())?)
}

/// Lists jobs, newest first.
#[utoipa::path(
    get, path = "/api/jobs", tag = "jobs", operation_id = "list_jobs",
    params(
        ("status" = Option<JobStatus>, Query, description = "Only jobs with this status"),
        ("job_type" = Option<String>, Query, description = "Only jobs of this type", max_length = 100),
        ("hours" = Option<i64>, Query, description = "Only jobs created within this many hours", minimum = 1, maximum = 8760),
        ("limit" = Option<i64>, Query, description = "Page size (default 50)", minimum = 1, maximum = 1000),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page", max_length = 200),
    ),
    responses(
        (status = 200, description = "A page of jobs", body = JobPage),
        (status = 400, description = "Invalid filter", body = ErrorEnvelope),
        (status = 401, description = "Missing or wrong function key", body = ErrorEnvelope),
        (status = 503, description = "Database unavailable", body = ErrorEnvelope),
    ),
    security(("function_key" = []), ("function_code" = []))
)]
pub async fn list_jobs(
    State(engine): State<Engine>,
    q: QueryParams,
) -> Result<Json<JobPage>, ApiError> {
    q.only(&["status", "job_type", "hours", "limit", "cursor"])?;
    let f = job_filter(&q)?;
    let limit = q.int("limit", 1, 1000)?.unwrap_or(50);
    let cursor = q
        .text("cursor", 200)?
        .map(|c| parse_job_cursor(&c))
        .transpose()?;
    let rows = list(&engine, &f, f.hours, cursor, limit + 1).await?;
    let mut jobs: Vec<JobRow> = rows.iter().map(JobRow::from_row).collect();
    let next_cursor = if jobs.len() as i64 > limit {
        jobs.truncate(limit as usize);
        jobs.last().map(|j| job_cursor(j.created_at, &j.job_id))
    } else {
        None
    };
    Ok(Json(JobPage {
        jobs,
        next_cursor,
        limit,
    }))
}

/// The earlier implementation's job listing.
#[utoipa::path(
    get, path = "/api/dbadmin/jobs", tag = "compatibility", operation_id = "dbadmin_jobs",
    params(
        ("limit" = Option<i64>, Query, description = "Rows at most (default 10)", minimum = 1, maximum = 1000),
        ("hours" = Option<i64>, Query, description = "Created within this many hours (default 24)", minimum = 1, maximum = 168),
        ("status" = Option<JobStatus>, Query, description = "Status filter"),
        ("job_type" = Option<String>, Query, description = "Job type filter", max_length = 100),
    ),
    responses(
        (status = 200, description = "Jobs, newest first", body = DbadminJobs),
        (status = 400, description = "Invalid filter", body = ErrorEnvelope),
        (status = 401, description = "Missing or wrong function key", body = ErrorEnvelope),
        (status = 503, description = "Database unavailable", body = ErrorEnvelope),
    ),
    security(("function_key" = []), ("function_code" = []))
)]
pub async fn dbadmin_jobs(
    State(engine): State<Engine>,
    q: QueryParams,
) -> Result<Json<DbadminJobs>, ApiError> {
    q.only(&["status", "job_type", "hours", "limit"])?;
    let f = JobFilter {
        status: q.one_of("status", JOB_STATUSES)?,
        job_type: q.text("job_type", 100)?,
        hours: None,
    };
    let limit = q.int("limit", 1, 1000)?.unwrap_or(10);
    let hours = q.int("hours", 1, 168)?.unwrap_or(24);
    let rows = list(&engine, &f, Some(hours), None, limit).await?;
    let jobs: Vec<JobRow> = rows.iter().map(JobRow::from_row).collect();
    Ok(Json(DbadminJobs {
        query_info: DbadminQueryInfo {
            limit,
            hours_back: hours,
            status_filter: f.status.map(str::to_string),
            job_type_filter: f.job_type,
            total_found: jobs.len(),
        },
        jobs,
        timestamp: Utc::now(),
    }))
}

/// Reads one job row (404 when missing).
pub(crate) async fn job_row(
    client: &store::Client,
    job_id: &JobId,
) -> Result<(JobRow, Row), ApiError> {
    let row = client
        .query_opt(sql::JOB_GET, &[&job_id.as_str()])
        .await
        .ctx(|| format!("reading job {job_id}"))?
        .ok_or_else(|| ApiError::not_found(format!("job {job_id} not found")))?;
    Ok((JobRow::from_row(&row), row))
}

/// One job with its stages, task counts and previous attempts.
#[utoipa::path(
    get, path = "/api/jobs/{job_id}", tag = "jobs", operation_id = "get_job",
    params(("job_id" = String, Path, description = "Job id (64 hex)", pattern = "^[0-9a-fA-F]{64}$")),
    responses(
        (status = 200, description = "The job", body = JobDetail),
        (status = 400, description = "job_id is not 64 hex", body = ErrorEnvelope),
        (status = 401, description = "Missing or wrong function key", body = ErrorEnvelope),
        (status = 404, description = "No such job", body = ErrorEnvelope),
        (status = 503, description = "Database unavailable", body = ErrorEnvelope),
    ),
    security(("function_key" = []), ("function_code" = []))
)]
pub async fn get_job(
    State(engine): State<Engine>,
    p: PathParams,
    q: QueryParams,
) -> Result<Json<JobDetail>, ApiError> {
    let job_id = p.job_id("job_id")?;
    q.only(&[])?;
    let client = store::client(engine.pool(), "reading a job").await?;
    let (job, row) = job_row(&client, &job_id).await?;
    let progress = client
        .query(sql::JOB_STAGE_PROGRESS, &[&job_id.as_str()])
        .await
        .ctx(|| format!("reading stage progress of job {job_id}"))?;
    let defs = engine
        .registry()
        .job(&job.job_type)
        .map(|d| d.stages())
        .unwrap_or_default();
    let stages = (1..=job.total_stages)
        .map(|n| {
            let def = defs.get((n - 1) as usize);
            match progress.iter().find(|r| r.get::<_, i32>("stage") == n) {
                Some(r) => StageProgress {
                    stage: n,
                    name: r.get("name"),
                    task_type: r.get("task_type"),
                    status: r.get("status"),
                    task_count: Some(r.get("task_count")),
                    queued: r.get("queued"),
                    processing: r.get("processing"),
                    completed: r.get("completed"),
                    failed: r.get("failed"),
                    cancelled: r.get("cancelled"),
                    attempt: Some(r.get("job_attempt")),
                    started_at: Some(r.get("started_at")),
                    completed_at: r.get("completed_at"),
                },
                None => StageProgress {
                    stage: n,
                    name: def.map(|d| d.name.to_string()).unwrap_or_default(),
                    task_type: def.map(|d| d.task_type.to_string()).unwrap_or_default(),
                    status: "pending".into(),
                    task_count: None,
                    queued: 0,
                    processing: 0,
                    completed: 0,
                    failed: 0,
                    cancelled: 0,
                    attempt: None,
                    started_at: None,
                    completed_at: None,
                },
            }
        })
        .collect();
    let metadata: Value = row.get("metadata");
    let previous_attempts = metadata
        .get("attempts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let id = job_id.as_str();
    Ok(Json(JobDetail {
        stage_results: row.get("stage_results"),
        stages,
        previous_attempts,
        links: JobLinks {
            status: format!("/api/jobs/status/{id}"),
            tasks: format!("/api/jobs/{id}/tasks"),
            events: format!("/api/jobs/{id}/events"),
            cancel: format!("/api/jobs/{id}/cancel"),
            resubmit: format!("/api/jobs/{id}/resubmit"),
        },
        job,
    }))
}

/// The earlier implementation's single-job read.
#[utoipa::path(
    get, path = "/api/dbadmin/jobs/{job_id}", tag = "compatibility", operation_id = "dbadmin_job",
    params(("job_id" = String, Path, description = "Job id (64 hex)", pattern = "^[0-9a-fA-F]{64}$")),
    responses(
        (status = 200, description = "The job", body = DbadminJob),
        (status = 400, description = "job_id is not 64 hex", body = ErrorEnvelope),
        (status = 401, description = "Missing or wrong function key", body = ErrorEnvelope),
        (status = 404, description = "No such job", body = ErrorEnvelope),
        (status = 503, description = "Database unavailable", body = ErrorEnvelope),
    ),
    security(("function_key" = []), ("function_code" = []))
)]
pub async fn dbadmin_job(
    State(engine): State<Engine>,
    p: PathParams,
    q: QueryParams,
) -> Result<Json<DbadminJob>, ApiError> {
    let job_id = p.job_id("job_id")?;
    q.only(&[])?;
    let client = store::client(engine.pool(), "reading a job").await?;
    let (job, _) = job_row(&client, &job_id).await?;
    Ok(Json(DbadminJob {
        job,
        timestamp: Utc::now(),
    }))
}

async fn tasks_page(
    engine: &Engine,
    p: &PathParams,
    q: &QueryParams,
    default_limit: i64,
    max_limit: i64,
) -> Result<TaskPage, ApiError> {
    let job_id = p.job_id("job_id")?;
    q.only(&["stage", "status", "limit", "cursor"])?;
    let stage = q.int("stage", 1, 1000)?;
    let status = q.one_of("status", TASK_STATUSES)?;
    let limit = q.int("limit", 1, max_limit)?.unwrap_or(default_limit);
    let cursor = q
        .text("cursor", 200)?
        .map(|c| parse_task_cursor(&c))
        .transpose()?;
    let client = store::client(engine.pool(), "listing tasks").await?;
    job_row(&client, &job_id).await?;
    let stage_i = stage.map(|s| s as i32);
    let (cs, cq) = match cursor {
        Some((a, b)) => (Some(a), Some(b)),
        None => (None, None),
    };
    let rows = client
        .query(
            sql::TASKS_LIST,
            &[&job_id.as_str(), &stage_i, &status, &cs, &cq, &(limit + 1)],
        )
        .await
        .ctx(|| format!("listing tasks of job {job_id}"))?;
    let mut tasks: Vec<TaskRow> = rows.iter().map(TaskRow::from_row).collect();
    let next_cursor = if tasks.len() as i64 > limit {
        tasks.truncate(limit as usize);
        tasks
            .last()
            .map(|t| URL_SAFE_NO_PAD.encode(format!("{}.{}", t.stage, t.task_seq)))
    } else {
        None
    };
    Ok(TaskPage {
        job_id: job_id.to_string(),
        query_info: TaskQueryInfo {
            total_tasks: tasks.len(),
            stage,
            status: status.map(str::to_string),
            limit,
            timestamp: Utc::now(),
        },
        tasks,
        next_cursor,
    })
}

/// A job's tasks in stage and task order.
#[utoipa::path(
    get, path = "/api/jobs/{job_id}/tasks", tag = "jobs", operation_id = "list_tasks",
    params(
        ("job_id" = String, Path, description = "Job id (64 hex)", pattern = "^[0-9a-fA-F]{64}$"),
        ("stage" = Option<i64>, Query, description = "Only this stage", minimum = 1, maximum = 1000),
        ("status" = Option<TaskStatus>, Query, description = "Only tasks with this status"),
        ("limit" = Option<i64>, Query, description = "Page size (default 100)", minimum = 1, maximum = 1000),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page", max_length = 200),
    ),
    responses(
        (status = 200, description = "A page of tasks", body = TaskPage),
        (status = 400, description = "Invalid id or filter", body = ErrorEnvelope),
        (status = 401, description = "Missing or wrong function key", body = ErrorEnvelope),
        (status = 404, description = "No such job", body = ErrorEnvelope),
        (status = 503, description = "Database unavailable", body = ErrorEnvelope),
    ),
    security(("function_key" = []), ("function_code" = []))
)]
pub async fn list_tasks(
    State(engine): State<Engine>,
    p: PathParams,
    q: QueryParams,
) -> Result<Json<TaskPage>, ApiError> {
    Ok(Json(tasks_page(&engine, &p, &q, 100, 1000).await?))
}

/// The earlier implementation's task listing of one job (`db/tasks/{job_id}` before Nov 2025).
#[utoipa::path(
    get, path = "/api/dbadmin/tasks/{job_id}", tag = "compatibility", operation_id = "dbadmin_tasks",
    params(
        ("job_id" = String, Path, description = "Job id (64 hex)", pattern = "^[0-9a-fA-F]{64}$"),
        ("stage" = Option<i64>, Query, description = "Only this stage", minimum = 1, maximum = 1000),
        ("status" = Option<TaskStatus>, Query, description = "Only tasks with this status"),
        ("limit" = Option<i64>, Query, description = "Rows at most (default 1000)", minimum = 1, maximum = 10000),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page", max_length = 200),
    ),
    responses(
        (status = 200, description = "Tasks ordered by stage and index", body = TaskPage),
        (status = 400, description = "Invalid id or filter", body = ErrorEnvelope),
        (status = 401, description = "Missing or wrong function key", body = ErrorEnvelope),
        (status = 404, description = "No such job", body = ErrorEnvelope),
        (status = 503, description = "Database unavailable", body = ErrorEnvelope),
    ),
    security(("function_key" = []), ("function_code" = []))
)]
pub async fn dbadmin_tasks(
    State(engine): State<Engine>,
    p: PathParams,
    q: QueryParams,
) -> Result<Json<Value>, ApiError> {
    let page = tasks_page(&engine, &p, &q, 1000, 10_000).await?;
    let mut v = serde_json::to_value(&page).map_err(|e| ApiError::internal(e.to_string()))?;
    v["timestamp"] = json!(Utc::now());
    Ok(Json(v))
}
