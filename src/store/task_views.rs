//! Tasks as the API reads them (`app.tasks`, and `app.task_archive` for a task a resubmit
//! replaced): one function per statement, typed rows.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{StoreError, decode, sql};
use crate::model::{JobId, TaskId, TaskStatus};

/// A task with every column the API shows (`tasks_list.sql`, `task_get.sql`).
#[derive(Debug, Clone)]
pub(crate) struct TaskView {
    /// The task.
    pub task_id: TaskId,
    /// Its job.
    pub parent_job_id: JobId,
    /// Its job's type.
    pub job_type: String,
    /// Its type.
    pub task_type: String,
    /// Its stage.
    pub stage: i32,
    /// Position in the stage (text, as in the earlier schema).
    pub task_index: String,
    /// Position in the stage (number).
    pub task_seq: i32,
    /// Where it is.
    pub status: TaskStatus,
    /// Its parameters.
    pub parameters: Value,
    /// Its handler's result.
    pub result_data: Option<Value>,
    /// Error text.
    pub error_details: Option<String>,
    /// transient | permanent.
    pub error_class: Option<String>,
    /// Retries so far.
    pub retry_count: i32,
    /// The job attempt it belongs to.
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

impl TaskView {
    fn from_row(r: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            task_id: r.try_get("task_id")?,
            parent_job_id: r.try_get("parent_job_id")?,
            job_type: r.try_get("job_type")?,
            task_type: r.try_get("task_type")?,
            stage: r.try_get("stage")?,
            task_index: r.try_get("task_index")?,
            task_seq: r.try_get("task_seq")?,
            status: r.try_get("status")?,
            parameters: r.try_get("parameters")?,
            result_data: r.try_get("result_data")?,
            error_details: r.try_get("error_details")?,
            error_class: r.try_get("error_class")?,
            retry_count: r.try_get("retry_count")?,
            job_attempt: r.try_get("job_attempt")?,
            heartbeat: r.try_get("heartbeat")?,
            started_at: r.try_get("started_at")?,
            completed_at: r.try_get("completed_at")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        })
    }
}

/// Which tasks of a job [`list`] returns.
#[derive(Debug, Clone, Default)]
pub(crate) struct TaskListFilter {
    /// Only this stage.
    pub stage: Option<i32>,
    /// Only tasks with this status.
    pub status: Option<TaskStatus>,
    /// Only tasks after this one (stage, task_seq) of the previous page.
    pub after: Option<(i32, i32)>,
    /// Rows at most.
    pub limit: i64,
}

/// A job's tasks in stage and task order (`tasks_list.sql`).
pub(crate) async fn list(
    c: &impl GenericClient,
    job_id: &JobId,
    f: &TaskListFilter,
) -> Result<Vec<TaskView>, StoreError> {
    let (stage, seq) = f.after.unzip();
    let params: [&(dyn ToSql + Sync); 6] = [job_id, &f.stage, &f.status, &stage, &seq, &f.limit];
    decode::all(c, sql::TASKS_LIST, &params, TaskView::from_row, || {
        format!("listing tasks of job {job_id}")
    })
    .await
}

/// A task found by [`get`].
#[derive(Debug, Clone)]
pub(crate) struct FoundTask {
    /// The task row (the archived one when a resubmit replaced it).
    pub task: TaskView,
    /// Set when the row was read from `app.task_archive`.
    pub archived_at: Option<DateTime<Utc>>,
}

/// One task of a job, current or else its latest archived row (`task_get.sql`); `None` when the
/// job has no such task.
pub(crate) async fn get(
    c: &impl GenericClient,
    job_id: &JobId,
    task_id: &TaskId,
) -> Result<Option<FoundTask>, StoreError> {
    let read = |r: &Row| {
        Ok(FoundTask {
            task: TaskView::from_row(r)?,
            archived_at: r.try_get("archived_at")?,
        })
    };
    decode::opt(c, sql::TASK_GET, &[job_id, task_id], read, || {
        format!("reading task {task_id} of job {job_id}")
    })
    .await
}

/// One task of the web page's task table (`ui_job_tasks.sql`).
#[derive(Debug, Clone)]
pub(crate) struct TaskLineView {
    /// The task.
    pub task_id: TaskId,
    /// Its stage.
    pub stage: i32,
    /// Position in the stage (number).
    pub task_seq: i32,
    /// Position in the stage (text).
    pub task_index: String,
    /// Its type.
    pub task_type: String,
    /// Where it is.
    pub status: TaskStatus,
    /// Retries so far.
    pub retry_count: i32,
    /// transient | permanent.
    pub error_class: Option<String>,
    /// The first 1,000 characters of its error.
    pub error_details: Option<String>,
    /// Start of the latest run.
    pub started_at: Option<DateTime<Utc>>,
    /// End time.
    pub completed_at: Option<DateTime<Utc>>,
    /// completed_at - started_at.
    pub duration_ms: Option<i64>,
    /// The job attempt it belongs to.
    pub job_attempt: i32,
    /// Its status's place in the table's order (failures first).
    pub rank: i32,
}

impl TaskLineView {
    fn from_row(r: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            task_id: r.try_get("task_id")?,
            stage: r.try_get("stage")?,
            task_seq: r.try_get("task_seq")?,
            task_index: r.try_get("task_index")?,
            task_type: r.try_get("task_type")?,
            status: r.try_get("status")?,
            retry_count: r.try_get("retry_count")?,
            error_class: r.try_get("error_class")?,
            error_details: r.try_get("error_details")?,
            started_at: r.try_get("started_at")?,
            completed_at: r.try_get("completed_at")?,
            duration_ms: r.try_get("duration_ms")?,
            job_attempt: r.try_get("job_attempt")?,
            rank: r.try_get("rank")?,
        })
    }
}

/// Which tasks of a job [`lines`] returns.
#[derive(Debug, Clone, Default)]
pub(crate) struct TaskLineFilter {
    /// Only tasks with this status.
    pub status: Option<TaskStatus>,
    /// Only this stage.
    pub stage: Option<i32>,
    /// Only tasks after this one (rank, stage, task_seq) of the previous page.
    pub after: Option<(i32, i32, i32)>,
    /// Rows at most.
    pub limit: i64,
}

/// One page of the web page's task table of a job: failures first, then stage and task order
/// (`ui_job_tasks.sql`).
pub(crate) async fn lines(
    c: &impl GenericClient,
    job_id: &JobId,
    f: &TaskLineFilter,
) -> Result<Vec<TaskLineView>, StoreError> {
    let (rank, stage, seq) = match f.after {
        Some((r, s, n)) => (Some(r), Some(s), Some(n)),
        None => (None, None, None),
    };
    let params: [&(dyn ToSql + Sync); 7] =
        [job_id, &f.status, &f.stage, &rank, &stage, &seq, &f.limit];
    decode::all(
        c,
        sql::UI_JOB_TASKS,
        &params,
        TaskLineView::from_row,
        || format!("listing tasks of job {job_id}"),
    )
    .await
}

/// How many tasks of a job are in one stage and status (`ui_job_task_totals.sql`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TaskTotal {
    /// The stage.
    pub stage: i32,
    /// The status.
    pub status: TaskStatus,
    /// Tasks.
    pub n: i64,
}

/// A job's task totals by stage and status, in stage and status order (`ui_job_task_totals.sql`).
pub(crate) async fn totals(
    c: &impl GenericClient,
    job_id: &JobId,
) -> Result<Vec<TaskTotal>, StoreError> {
    let read = |r: &Row| {
        Ok(TaskTotal {
            stage: r.try_get("stage")?,
            status: r.try_get("status")?,
            n: r.try_get("n")?,
        })
    };
    decode::all(c, sql::UI_JOB_TASK_TOTALS, &[job_id], read, || {
        format!("counting tasks of job {job_id}")
    })
    .await
}
