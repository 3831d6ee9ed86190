//! Reading jobs and tasks: `GET /api/jobs`, `GET /api/jobs/{job_id}`,
//! `GET /api/jobs/{job_id}/tasks`, and the earlier implementation's `GET /api/dbadmin/jobs`,
//! `GET /api/dbadmin/jobs/{job_id}` and `GET /api/dbadmin/tasks/{job_id}`.
//!
//! Lists are keyset-paginated (`next_cursor`), so page N costs the same as page 1.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::cursor::{self, cursor_error};
use super::error::{ApiError, ErrorEnvelope};
use super::input::{PathParams, QueryParams};
use crate::engine::Engine;
use crate::model::{JobId, JobStatus, TaskStatus};
use crate::store::job_views::{self, JobDetailView, JobListFilter, JobView};
use crate::store::task_views::{self, TaskListFilter, TaskView};
use crate::store::{self, stage_views};

/// One job as listed (also the earlier `dbadmin/jobs` item shape, plus CoreMachine's columns).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct JobRow {
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

impl From<JobView> for JobRow {
    fn from(j: JobView) -> Self {
        Self {
            job_id: j.job_id.to_string(),
            job_type: j.job_type,
            status: j.status.as_str().into(),
            stage: j.stage,
            total_stages: j.total_stages,
            attempt: j.attempt,
            parameters: j.parameters,
            result_data: j.result_data,
            error_details: j.error_details,
            correlation_id: j.correlation_id,
            created_at: j.created_at,
            updated_at: j.updated_at,
            completed_at: j.completed_at,
        }
    }
}

/// A page of jobs, newest first.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct JobPage {
    /// The jobs.
    pub jobs: Vec<JobRow>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
    /// Page size used.
    pub limit: i64,
}

/// One stage of a job with its task counts.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct StageProgress {
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
pub(crate) struct JobDetail {
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
pub(crate) struct JobLinks {
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
pub(crate) struct TaskRow {
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

impl From<TaskView> for TaskRow {
    fn from(t: TaskView) -> Self {
        Self {
            task_id: t.task_id.to_string(),
            parent_job_id: t.parent_job_id.to_string(),
            job_type: t.job_type,
            task_type: t.task_type,
            stage: t.stage,
            task_index: t.task_index,
            task_seq: t.task_seq,
            status: t.status.as_str().into(),
            parameters: t.parameters,
            result_data: t.result_data,
            error_details: t.error_details,
            error_class: t.error_class,
            retry_count: t.retry_count,
            job_attempt: t.job_attempt,
            heartbeat: t.heartbeat,
            started_at: t.started_at,
            completed_at: t.completed_at,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// A page of a job's tasks in stage and task order.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct TaskPage {
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
pub(crate) struct TaskQueryInfo {
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
pub(crate) struct DbadminJobs {
    /// The jobs, newest first.
    pub jobs: Vec<JobRow>,
    /// The filters applied.
    pub query_info: DbadminQueryInfo,
    /// When the listing was made.
    pub timestamp: DateTime<Utc>,
}

/// Filters of the earlier `dbadmin/jobs`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct DbadminQueryInfo {
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
pub(crate) struct DbadminJob {
    /// The job.
    pub job: JobRow,
    /// When it was read.
    pub timestamp: DateTime<Utc>,
}

/// Job statuses the job filters accept (the web page's list too).
pub(crate) const JOB_STATUSES: &[&str] = &[
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

/// A listed status filter's enum (the lists above are the enums' stored names).
pub(super) fn status_of<T: std::str::FromStr>(name: Option<&str>) -> Result<Option<T>, ApiError>
where
    T::Err: std::fmt::Display,
{
    name.map(str::parse)
        .transpose()
        .map_err(|e: T::Err| ApiError::internal(e.to_string()))
}

/// The keyset cursor of a job list row.
pub(super) fn job_cursor(created: DateTime<Utc>, job_id: &JobId) -> String {
    cursor::time_cursor(created, job_id.as_str())
}

/// Reads a cursor made by [`job_cursor`].
pub(super) fn parse_job_cursor(raw: &str) -> Result<(DateTime<Utc>, JobId), ApiError> {
    cursor::parse_time_cursor(raw, |id| JobId::parse(id).ok())
}

fn parse_task_cursor(raw: &str) -> Result<(i32, i32), ApiError> {
    let text = cursor::decode(raw)?;
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
    after: Option<(DateTime<Utc>, JobId)>,
    limit: i64,
) -> Result<Vec<JobRow>, ApiError> {
    let client = store::client(engine.pool(), "listing jobs").await?;
    let filter = JobListFilter {
        status: status_of::<JobStatus>(f.status)?,
        job_type: f.job_type.clone(),
        hours: hours.map(|h| h as i32),
        after,
        limit,
    };
    let jobs = job_views::list(&client, &filter).await?;
    Ok(jobs.into_iter().map(JobRow::from).collect())
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
pub(crate) async fn list_jobs(
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
    let mut jobs = list(&engine, &f, f.hours, cursor, limit + 1).await?;
    let next_cursor = if jobs.len() as i64 > limit {
        jobs.truncate(limit as usize);
        jobs.last()
            .map(|j| cursor::time_cursor(j.created_at, &j.job_id))
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
pub(crate) async fn dbadmin_jobs(
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
    let jobs = list(&engine, &f, Some(hours), None, limit).await?;
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

/// Reads one job with every column (404 when missing).
pub(crate) async fn find_job(
    client: &store::Client,
    job_id: &JobId,
) -> Result<JobDetailView, ApiError> {
    job_views::get(client, job_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("job {job_id} not found")))
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
pub(crate) async fn get_job(
    State(engine): State<Engine>,
    p: PathParams,
    q: QueryParams,
) -> Result<Json<JobDetail>, ApiError> {
    let job_id = p.job_id("job_id")?;
    q.only(&[])?;
    let client = store::client(engine.pool(), "reading a job").await?;
    let JobDetailView {
        job,
        stage_results,
        metadata,
    } = find_job(&client, &job_id).await?;
    let job = JobRow::from(job);
    let progress = stage_views::progress(&client, &job_id).await?;
    let defs = engine
        .registry()
        .job(&job.job_type)
        .map(|d| d.stages())
        .unwrap_or_default();
    let stages = (1..=job.total_stages)
        .map(|n| {
            let def = defs.get((n - 1) as usize);
            match progress.iter().find(|r| r.stage == n) {
                Some(r) => StageProgress {
                    stage: n,
                    name: r.name.clone(),
                    task_type: r.task_type.clone(),
                    status: r.status.as_str().into(),
                    task_count: Some(r.task_count),
                    queued: r.queued,
                    processing: r.processing,
                    completed: r.completed,
                    failed: r.failed,
                    cancelled: r.cancelled,
                    attempt: Some(r.job_attempt),
                    started_at: Some(r.started_at),
                    completed_at: r.completed_at,
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
    let previous_attempts = metadata
        .get("attempts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let id = job_id.as_str();
    Ok(Json(JobDetail {
        stage_results,
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
pub(crate) async fn dbadmin_job(
    State(engine): State<Engine>,
    p: PathParams,
    q: QueryParams,
) -> Result<Json<DbadminJob>, ApiError> {
    let job_id = p.job_id("job_id")?;
    q.only(&[])?;
    let client = store::client(engine.pool(), "reading a job").await?;
    let job = find_job(&client, &job_id).await?.job.into();
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
    find_job(&client, &job_id).await?;
    let filter = TaskListFilter {
        stage: stage.map(|s| s as i32),
        status: status_of::<TaskStatus>(status)?,
        after: cursor,
        limit: limit + 1,
    };
    let mut tasks: Vec<TaskRow> = task_views::list(&client, &job_id, &filter)
        .await?
        .into_iter()
        .map(TaskRow::from)
        .collect();
    let next_cursor = if tasks.len() as i64 > limit {
        tasks.truncate(limit as usize);
        tasks
            .last()
            .map(|t| cursor::encode(&format!("{}.{}", t.stage, t.task_seq)))
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
pub(crate) async fn list_tasks(
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
pub(crate) async fn dbadmin_tasks(
    State(engine): State<Engine>,
    p: PathParams,
    q: QueryParams,
) -> Result<Json<Value>, ApiError> {
    let page = tasks_page(&engine, &p, &q, 1000, 10_000).await?;
    let mut v = serde_json::to_value(&page).map_err(|e| ApiError::internal(e.to_string()))?;
    v["timestamp"] = json!(Utc::now());
    Ok(Json(v))
}
