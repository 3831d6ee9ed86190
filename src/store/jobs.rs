//! The jobs aggregate (`app.jobs`): one function per statement, typed rows.

use deadpool_postgres::GenericClient;
use serde_json::Value;

use super::{QueryContext, StoreError, sql};
use crate::model::{JobId, JobStatus};

/// A job as the engine works with it (`job_get.sql`).
#[derive(Debug, Clone)]
pub struct JobRow {
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
    /// The submitter's correlation id.
    pub correlation_id: Option<String>,
    /// The W3C trace context the job was submitted under.
    pub traceparent: Option<String>,
}

/// Where a job is (`job_stage_state.sql`): what a guard that did not apply reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobState {
    /// Its status.
    pub status: JobStatus,
    /// Its current stage.
    pub stage: i32,
    /// Its attempt.
    pub attempt: i32,
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} stage {} attempt {}",
            self.status, self.stage, self.attempt
        )
    }
}

/// Reads a job (`job_get.sql`).
pub async fn get(c: &impl GenericClient, job_id: &JobId) -> Result<Option<JobRow>, StoreError> {
    let row = c
        .query_opt(sql::JOB_GET, &[job_id])
        .await
        .ctx(|| format!("reading job {job_id}"))?;
    row.map(|r| {
        Ok(JobRow {
            job_id: r
                .try_get("job_id")
                .ctx(|| format!("reading job {job_id}"))?,
            job_type: r.get("job_type"),
            parameters: r.get("parameters"),
            status: r
                .try_get("status")
                .ctx(|| format!("reading job {job_id}"))?,
            stage: r.get("stage"),
            total_stages: r.get("total_stages"),
            attempt: r.get("attempt"),
            correlation_id: r.get("correlation_id"),
            traceparent: r.get("traceparent"),
        })
    })
    .transpose()
}

/// Where a job is (`job_stage_state.sql`); `None` when it does not exist.
pub async fn stage_state(
    c: &impl GenericClient,
    job_id: &JobId,
) -> Result<Option<JobState>, StoreError> {
    let row = c
        .query_opt(sql::JOB_STAGE_STATE, &[job_id])
        .await
        .ctx(|| format!("reading the state of job {job_id}"))?;
    row.map(|r| {
        Ok(JobState {
            status: r
                .try_get(0)
                .ctx(|| format!("reading the state of job {job_id}"))?,
            stage: r.get(1),
            attempt: r.get(2),
        })
    })
    .transpose()
}

/// The trace context a job was submitted under (`job_traceparent.sql`); `None` when it has none
/// or does not exist.
pub async fn traceparent(
    c: &impl GenericClient,
    job_id: &JobId,
) -> Result<Option<String>, StoreError> {
    let row = c
        .query_opt(sql::JOB_TRACEPARENT, &[job_id])
        .await
        .ctx(|| format!("reading job {job_id}"))?;
    Ok(row.and_then(|r| r.get("traceparent")))
}

/// Marks a queued job as looked after now (`job_touch.sql`), so the janitor does not re-drive it
/// again at once. Returns how many rows changed (0: it is no longer queued).
pub async fn touch(c: &impl GenericClient, job_id: &JobId) -> Result<u64, StoreError> {
    c.execute(sql::JOB_TOUCH, &[job_id])
        .await
        .ctx(|| format!("touching job {job_id}"))
}
