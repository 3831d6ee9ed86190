//! Jobs as the API reads them (`app.jobs`): one job with every column, the keyset listings, and
//! the per-input outcomes a job's result lists. One function per statement, typed rows.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{StoreError, decode, sql};
use crate::model::{JobId, JobStatus};

/// A job's columns shared by [`get`] and [`list`].
#[derive(Debug, Clone)]
pub(crate) struct JobView {
    /// The job.
    pub job_id: JobId,
    /// Its registered type.
    pub job_type: String,
    /// Its validated parameters.
    pub parameters: Value,
    /// Where it is.
    pub status: JobStatus,
    /// Its current stage (1-based).
    pub stage: i32,
    /// How many stages its type has.
    pub total_stages: i32,
    /// 1, plus one per resubmit.
    pub attempt: i32,
    /// Final result (terminal jobs).
    pub result_data: Option<Value>,
    /// Why the job failed or was cancelled.
    pub error_details: Option<String>,
    /// The submitter's correlation id.
    pub correlation_id: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// When the job became terminal.
    pub completed_at: Option<DateTime<Utc>>,
}

impl JobView {
    fn from_row(r: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            job_id: r.try_get("job_id")?,
            job_type: r.try_get("job_type")?,
            parameters: r.try_get("parameters")?,
            status: r.try_get("status")?,
            stage: r.try_get("stage")?,
            total_stages: r.try_get("total_stages")?,
            attempt: r.try_get("attempt")?,
            result_data: r.try_get("result_data")?,
            error_details: r.try_get("error_details")?,
            correlation_id: r.try_get("correlation_id")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
            completed_at: r.try_get("completed_at")?,
        })
    }
}

/// One job with the columns only a single read shows (`job_get.sql`).
#[derive(Debug, Clone)]
pub(crate) struct JobDetailView {
    /// The listed columns.
    pub job: JobView,
    /// Results recorded per finished stage (keys are stage numbers).
    pub stage_results: Value,
    /// The job's metadata (`attempts`: the outcomes of earlier attempts).
    pub metadata: Value,
}

/// Reads one job with every column (`job_get.sql`); `None` when it does not exist.
pub(crate) async fn get(
    c: &impl GenericClient,
    job_id: &JobId,
) -> Result<Option<JobDetailView>, StoreError> {
    let read = |r: &Row| {
        Ok(JobDetailView {
            job: JobView::from_row(r)?,
            stage_results: r.try_get("stage_results")?,
            metadata: r.try_get("metadata")?,
        })
    };
    decode::opt(c, sql::JOB_GET, &[job_id], read, || {
        format!("reading job {job_id}")
    })
    .await
}

/// Which jobs [`list`] returns.
#[derive(Debug, Clone, Default)]
pub(crate) struct JobListFilter {
    /// Only jobs with this status.
    pub status: Option<JobStatus>,
    /// Only jobs of this type.
    pub job_type: Option<String>,
    /// Only jobs created within this many hours.
    pub hours: Option<i32>,
    /// Only jobs listed after this one (creation time, id) of the previous page.
    pub after: Option<(DateTime<Utc>, JobId)>,
    /// Rows at most.
    pub limit: i64,
}

/// Jobs newest first (`jobs_list.sql`).
pub(crate) async fn list(
    c: &impl GenericClient,
    f: &JobListFilter,
) -> Result<Vec<JobView>, StoreError> {
    let (at, id) = f.after.clone().unzip();
    let params: [&(dyn ToSql + Sync); 6] = [&f.status, &f.job_type, &f.hours, &at, &id, &f.limit];
    decode::all(c, sql::JOBS_LIST, &params, JobView::from_row, || {
        "listing jobs".into()
    })
    .await
}

/// One job of the web page's list, with its progress (`ui_jobs.sql`).
#[derive(Debug, Clone)]
pub(crate) struct JobProgressView {
    /// The job.
    pub job_id: JobId,
    /// Its type.
    pub job_type: String,
    /// Where it is.
    pub status: JobStatus,
    /// Its current stage.
    pub stage: i32,
    /// How many stages its type has.
    pub total_stages: i32,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// When it became terminal.
    pub completed_at: Option<DateTime<Utc>>,
    /// The first 300 characters of its error.
    pub error_details: Option<String>,
    /// Tasks created over its started stages.
    pub task_count: i64,
    /// Failed tasks of its current stage.
    pub failed_tasks: i64,
    /// Its attempt.
    pub attempt: i32,
    /// Tasks that ended.
    pub done_tasks: i64,
}

impl JobProgressView {
    fn from_row(r: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            job_id: r.try_get("job_id")?,
            job_type: r.try_get("job_type")?,
            status: r.try_get("status")?,
            stage: r.try_get("stage")?,
            total_stages: r.try_get("total_stages")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
            completed_at: r.try_get("completed_at")?,
            error_details: r.try_get("error_details")?,
            task_count: r.try_get("task_count")?,
            failed_tasks: r.try_get("failed_tasks")?,
            attempt: r.try_get("attempt")?,
            done_tasks: r.try_get("done_tasks")?,
        })
    }
}

/// Which jobs [`progress_list`] returns.
#[derive(Debug, Clone, Default)]
pub(crate) struct JobSearch {
    /// Only jobs with this status.
    pub status: Option<JobStatus>,
    /// Only jobs of this type.
    pub job_type: Option<String>,
    /// Only jobs whose id starts with this (lower-case hex).
    pub id_prefix: Option<String>,
    /// Created at or after.
    pub since: Option<DateTime<Utc>>,
    /// Created before.
    pub until: Option<DateTime<Utc>>,
    /// Only jobs listed after this one (creation time, id) of the previous page.
    pub after: Option<(DateTime<Utc>, JobId)>,
    /// Rows at most.
    pub limit: i64,
}

/// The web page's job list, newest first with progress (`ui_jobs.sql`).
pub(crate) async fn progress_list(
    c: &impl GenericClient,
    f: &JobSearch,
) -> Result<Vec<JobProgressView>, StoreError> {
    let (at, id) = f.after.clone().unzip();
    let params: [&(dyn ToSql + Sync); 8] = [
        &f.status,
        &f.job_type,
        &f.id_prefix,
        &f.since,
        &f.until,
        &at,
        &id,
        &f.limit,
    ];
    decode::all(c, sql::UI_JOBS, &params, JobProgressView::from_row, || {
        "listing jobs".into()
    })
    .await
}

/// How many per-input outcomes a job's result lists (`ui_job_input_totals.sql`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InputTotals {
    /// Inputs listed.
    pub total: i64,
    /// Inputs whose outcome is `ok`.
    pub ok: i64,
}

/// Counts the per-input outcomes of a job's result (`ui_job_input_totals.sql`).
pub(crate) async fn input_totals(
    c: &impl GenericClient,
    job_id: &JobId,
) -> Result<InputTotals, StoreError> {
    let read = |r: &Row| {
        Ok(InputTotals {
            total: r.try_get("total")?,
            ok: r.try_get("ok")?,
        })
    };
    decode::one(c, sql::UI_JOB_INPUT_TOTALS, &[job_id], read, || {
        format!("counting the input outcomes of job {job_id}")
    })
    .await
}

/// One page of a job's per-input outcomes, failures first (`ui_job_inputs.sql`): only those with
/// `outcome` when given, from `offset`, at most `limit`.
pub(crate) async fn inputs(
    c: &impl GenericClient,
    job_id: &JobId,
    outcome: Option<&str>,
    offset: i64,
    limit: i64,
) -> Result<Vec<Value>, StoreError> {
    let params: [&(dyn ToSql + Sync); 4] = [job_id, &outcome, &offset, &limit];
    decode::all(
        c,
        sql::UI_JOB_INPUTS,
        &params,
        |r| r.try_get("value"),
        || format!("listing the input outcomes of job {job_id}"),
    )
    .await
}
