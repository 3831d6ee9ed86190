//! A job's stages as the API reads them (`app.job_stages` with their tasks' counts): one function
//! per statement, typed rows.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value;
use tokio_postgres::Row;

use super::{StoreError, decode, sql};
use crate::model::{JobId, StageStatus};

/// A started stage with its current tasks counted by status (`job_stage_progress.sql`).
#[derive(Debug, Clone)]
pub(crate) struct StageProgressView {
    /// Stage number.
    pub stage: i32,
    /// Stage name.
    pub name: String,
    /// Task type of its tasks.
    pub task_type: String,
    /// Where it is.
    pub status: StageStatus,
    /// Tasks created.
    pub task_count: i32,
    /// The job attempt that ran it.
    pub job_attempt: i32,
    /// Start time.
    pub started_at: DateTime<Utc>,
    /// End time.
    pub completed_at: Option<DateTime<Utc>>,
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
}

impl StageProgressView {
    fn from_row(r: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            stage: r.try_get("stage")?,
            name: r.try_get("name")?,
            task_type: r.try_get("task_type")?,
            status: r.try_get("status")?,
            task_count: r.try_get("task_count")?,
            job_attempt: r.try_get("job_attempt")?,
            started_at: r.try_get("started_at")?,
            completed_at: r.try_get("completed_at")?,
            queued: r.try_get("queued")?,
            processing: r.try_get("processing")?,
            completed: r.try_get("completed")?,
            failed: r.try_get("failed")?,
            cancelled: r.try_get("cancelled")?,
        })
    }
}

/// The started stages of a job with their task counts, in stage order (`job_stage_progress.sql`).
pub(crate) async fn progress(
    c: &impl GenericClient,
    job_id: &JobId,
) -> Result<Vec<StageProgressView>, StoreError> {
    let read = StageProgressView::from_row;
    decode::all(c, sql::JOB_STAGE_PROGRESS, &[job_id], read, || {
        format!("reading stage progress of job {job_id}")
    })
    .await
}

/// A started stage on the job's timeline (`timeline_stages.sql`).
#[derive(Debug, Clone)]
pub(crate) struct StageTimelineView {
    /// Stage number.
    pub stage: i32,
    /// Stage name.
    pub name: String,
    /// Task type of its tasks.
    pub task_type: String,
    /// Where it is.
    pub status: StageStatus,
    /// Start time.
    pub started_at: DateTime<Utc>,
    /// End time.
    pub completed_at: Option<DateTime<Utc>>,
    /// Tasks created.
    pub task_count: i32,
    /// Its tasks counted by status (`{"completed": 3, ...}`).
    pub task_counts: Value,
    /// Retries of its tasks, summed.
    pub retries: i64,
}

impl StageTimelineView {
    fn from_row(r: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            stage: r.try_get("stage")?,
            name: r.try_get("name")?,
            task_type: r.try_get("task_type")?,
            status: r.try_get("status")?,
            started_at: r.try_get("started_at")?,
            completed_at: r.try_get("completed_at")?,
            task_count: r.try_get("task_count")?,
            task_counts: r.try_get("task_counts")?,
            retries: r.try_get("retries")?,
        })
    }
}

/// The started stages of a job, in stage order (`timeline_stages.sql`).
pub(crate) async fn timeline(
    c: &impl GenericClient,
    job_id: &JobId,
) -> Result<Vec<StageTimelineView>, StoreError> {
    let read = StageTimelineView::from_row;
    decode::all(c, sql::TIMELINE_STAGES, &[job_id], read, || {
        format!("reading stages of job {job_id}")
    })
    .await
}
