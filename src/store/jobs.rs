//! The jobs aggregate (`app.jobs`): one function per statement, typed rows.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value;

use super::{Guarded, QueryContext, StoreError, sql};
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
    /// Finalize's result (a finished job), or what a failure recorded.
    pub result_data: Option<Value>,
    /// Why it failed or was cancelled.
    pub error_details: Option<String>,
    /// When it was submitted.
    pub created_at: DateTime<Utc>,
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
            result_data: r.get("result_data"),
            error_details: r.get("error_details"),
            created_at: r.get("created_at"),
        })
    })
    .transpose()
}

/// A job created by a submit (`job_insert.sql`).
#[derive(Debug, Clone, Copy)]
pub struct NewJob<'a> {
    /// Its content-addressed id.
    pub job_id: &'a JobId,
    /// Its registered type.
    pub job_type: &'a str,
    /// Its validated parameters.
    pub parameters: &'a Value,
    /// How many stages its type has.
    pub total_stages: i32,
    /// `metadata` (description, creator).
    pub metadata: &'a Value,
    /// The submitter's correlation id.
    pub correlation_id: &'a str,
    /// The W3C trace context it is submitted under.
    pub traceparent: Option<&'a str>,
}

/// Creates a job, queued at stage 1, unless it exists (`job_insert.sql`); returns whether it
/// was created.
pub async fn insert(c: &impl GenericClient, j: &NewJob<'_>) -> Result<bool, StoreError> {
    Ok(c.query_opt(
        sql::JOB_INSERT,
        &[
            j.job_id,
            &j.job_type,
            j.parameters,
            &j.total_stages,
            j.metadata,
            &j.correlation_id,
            &j.traceparent,
        ],
    )
    .await
    .ctx(|| format!("inserting job {}", j.job_id))?
    .is_some())
}

/// A job whose stage message started its stage (`job_start_stage.sql`).
#[derive(Debug, Clone)]
pub struct StartedStage {
    /// Its registered type.
    pub job_type: String,
    /// Its validated parameters.
    pub parameters: Value,
    /// How many stages its type has.
    pub total_stages: i32,
    /// The submitter's correlation id.
    pub correlation_id: Option<String>,
    /// The W3C trace context the job was submitted under.
    pub traceparent: Option<String>,
}

/// Job message: queued -> processing for exactly this stage and attempt (`job_start_stage.sql`).
/// Not applied: the job is elsewhere (a duplicate or stale message, or a job that does not exist).
pub async fn start_stage(
    c: &impl GenericClient,
    job_id: &JobId,
    stage: i32,
    attempt: i32,
) -> Result<Guarded<StartedStage>, StoreError> {
    let row = c
        .query_opt(sql::JOB_START_STAGE, &[job_id, &stage, &attempt])
        .await
        .ctx(|| format!("starting stage {stage} of job {job_id}"))?;
    Ok(match row {
        Some(r) => Guarded::Applied(StartedStage {
            job_type: r.get("job_type"),
            parameters: r.get("parameters"),
            total_stages: r.get("total_stages"),
            correlation_id: r.get("correlation_id"),
            traceparent: r.get("traceparent"),
        }),
        None => Guarded::NotApplied(()),
    })
}

/// Where a job is, to judge one of its messages by (`job_message_state.sql`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobPosition {
    /// Its status.
    pub status: JobStatus,
    /// Its current stage.
    pub stage: i32,
    /// Its attempt.
    pub attempt: i32,
    /// How many stages its type has.
    pub total_stages: i32,
    /// Its registered type.
    pub job_type: String,
}

/// Where a job is (`job_message_state.sql`); `None` when it does not exist.
pub async fn position(
    c: &impl GenericClient,
    job_id: &JobId,
) -> Result<Option<JobPosition>, StoreError> {
    let row = c
        .query_opt(sql::JOB_MESSAGE_STATE, &[job_id])
        .await
        .ctx(|| format!("reading job {job_id}"))?;
    row.map(|r| {
        Ok(JobPosition {
            status: r.try_get(0).ctx(|| format!("reading job {job_id}"))?,
            stage: r.get(1),
            attempt: r.get(2),
            total_stages: r.get(3),
            job_type: r.get(4),
        })
    })
    .transpose()
}

/// The last task of `stage` ended it: processing -> queued at `stage + 1`, with the stage's
/// summary (`job_advance.sql`). Not applied: where the job is instead (`None`: it is gone).
pub async fn advance(
    c: &impl GenericClient,
    job_id: &JobId,
    stage: i32,
    attempt: i32,
    summary: &Value,
) -> Result<Guarded<(), Option<JobState>>, StoreError> {
    let row = c
        .query_opt(sql::JOB_ADVANCE, &[job_id, &stage, &attempt, summary])
        .await
        .ctx(|| format!("advancing job {job_id} from stage {stage}"))?;
    match row {
        Some(_) => Ok(Guarded::Applied(())),
        None => Ok(Guarded::NotApplied(stage_state(c, job_id).await?)),
    }
}

/// How a job ends after its last stage (`job_finish.sql`).
#[derive(Debug, Clone, Copy)]
pub struct Finish<'a> {
    /// `completed` or `completed_with_errors`.
    pub status: JobStatus,
    /// Finalize's result (or the fallback result).
    pub result: &'a Value,
    /// The last stage's summary.
    pub summary: &'a Value,
    /// Why finalize failed, when it did.
    pub error_details: Option<&'a str>,
}

/// The last task of the last stage ended it: processing -> `f.status` (`job_finish.sql`). Not
/// applied: where the job is instead (`None`: it is gone).
pub async fn finish(
    c: &impl GenericClient,
    job_id: &JobId,
    stage: i32,
    attempt: i32,
    f: &Finish<'_>,
) -> Result<Guarded<(), Option<JobState>>, StoreError> {
    let row = c
        .query_opt(
            sql::JOB_FINISH,
            &[
                job_id,
                &stage,
                &attempt,
                &f.status,
                f.result,
                f.summary,
                &f.error_details,
            ],
        )
        .await
        .ctx(|| format!("completing job {job_id}"))?;
    match row {
        Some(_) => Ok(Guarded::Applied(())),
        None => Ok(Guarded::NotApplied(stage_state(c, job_id).await?)),
    }
}

/// Any live status -> failed with `reason`, `result_patch` merged into its result
/// (`job_fail.sql`). Applied: where the job failed. Not applied: where it is instead (`None`: it is
/// gone).
pub async fn fail(
    c: &impl GenericClient,
    job_id: &JobId,
    reason: &str,
    result_patch: &Value,
) -> Result<Guarded<JobState, Option<JobState>>, StoreError> {
    let row = c
        .query_opt(sql::JOB_FAIL, &[job_id, &reason, result_patch])
        .await
        .ctx(|| format!("failing job {job_id}"))?;
    match row {
        Some(r) => Ok(Guarded::Applied(JobState {
            status: r.try_get(0).ctx(|| format!("failing job {job_id}"))?,
            stage: r.get(1),
            attempt: r.get(2),
        })),
        None => Ok(Guarded::NotApplied(stage_state(c, job_id).await?)),
    }
}

/// A job's status and stage under its update lock (`job_lock.sql`); `None` when it does not exist.
pub async fn lock(
    c: &impl GenericClient,
    job_id: &JobId,
) -> Result<Option<(JobStatus, i32)>, StoreError> {
    let row = c
        .query_opt(sql::JOB_LOCK, &[job_id])
        .await
        .ctx(|| format!("locking job {job_id}"))?;
    row.map(|r| {
        Ok((
            r.try_get(0).ctx(|| format!("locking job {job_id}"))?,
            r.get(1),
        ))
    })
    .transpose()
}

/// A job as cancel and resubmit see it under its row lock (`job_control_state.sql`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlState {
    /// Its status.
    pub status: JobStatus,
    /// Its current stage (where it stopped, for a finished job).
    pub stage: i32,
    /// Its attempt.
    pub attempt: i32,
    /// Why it failed or was cancelled.
    pub error_details: Option<String>,
    /// When it ended.
    pub completed_at: Option<DateTime<Utc>>,
    /// How many stages its type has.
    pub total_stages: i32,
}

/// Locks the job row for an operator `action` ("cancel", "resubmit": error context) and reads it
/// (`job_control_state.sql`); `None` when it does not exist.
pub async fn control_state(
    c: &impl GenericClient,
    job_id: &JobId,
    action: &str,
) -> Result<Option<ControlState>, StoreError> {
    let what = || format!("locking job {job_id} to {action} it");
    let row = c
        .query_opt(sql::JOB_CONTROL_STATE, &[job_id])
        .await
        .ctx(what)?;
    row.map(|r| {
        Ok(ControlState {
            status: r.try_get(0).ctx(what)?,
            stage: r.get(1),
            attempt: r.get(2),
            error_details: r.get(3),
            completed_at: r.get(4),
            total_stages: r.get(5),
        })
    })
    .transpose()
}

/// A job an operator cancelled (`job_cancel.sql`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelledJob {
    /// Its stage.
    pub stage: i32,
    /// The attempt that was cancelled.
    pub attempt: i32,
    /// Its registered type.
    pub job_type: String,
    /// The submitter's correlation id.
    pub correlation_id: Option<String>,
}

/// Operator cancel: queued | processing -> cancelled with `details` (`job_cancel.sql`; the
/// caller holds the row lock).
pub async fn cancel(
    c: &impl GenericClient,
    job_id: &JobId,
    details: &str,
) -> Result<Guarded<CancelledJob>, StoreError> {
    let row = c
        .query_opt(sql::JOB_CANCEL, &[job_id, &details])
        .await
        .ctx(|| format!("cancelling job {job_id}"))?;
    Ok(match row {
        Some(r) => Guarded::Applied(CancelledJob {
            stage: r.get("stage"),
            attempt: r.get("attempt"),
            job_type: r.get("job_type"),
            correlation_id: r.get("correlation_id"),
        }),
        None => Guarded::NotApplied(()),
    })
}

/// A job's new attempt (`job_resubmit.sql`).
#[derive(Debug, Clone)]
pub struct Resubmitted {
    /// The new attempt number.
    pub attempt: i32,
    /// Its registered type.
    pub job_type: String,
    /// Its validated parameters.
    pub parameters: Value,
    /// The submitter's correlation id.
    pub correlation_id: Option<String>,
    /// The W3C trace context the job was submitted under.
    pub traceparent: Option<String>,
}

/// Resubmit: failed | cancelled -> queued at `from_stage` with the next attempt, `previous`
/// recorded in its metadata (`job_resubmit.sql`; the caller holds the row lock).
pub async fn resubmit(
    c: &impl GenericClient,
    job_id: &JobId,
    from_stage: i32,
    previous: &Value,
    next_attempt: i32,
) -> Result<Guarded<Resubmitted>, StoreError> {
    let row = c
        .query_opt(sql::JOB_RESUBMIT, &[job_id, &from_stage, previous])
        .await
        .ctx(|| format!("starting attempt {next_attempt} of job {job_id}"))?;
    Ok(match row {
        Some(r) => Guarded::Applied(Resubmitted {
            attempt: r.get("attempt"),
            job_type: r.get("job_type"),
            parameters: r.get("parameters"),
            correlation_id: r.get("correlation_id"),
            traceparent: r.get("traceparent"),
        }),
        None => Guarded::NotApplied(()),
    })
}

/// When a job ends early: its queued tasks are cancelled (`tasks_cancel_queued.sql`); returns
/// how many.
pub async fn cancel_queued_tasks(
    c: &impl GenericClient,
    job_id: &JobId,
) -> Result<u64, StoreError> {
    c.execute(sql::TASKS_CANCEL_QUEUED, &[job_id])
        .await
        .ctx(|| format!("cancelling queued tasks of job {job_id}"))
}

/// How many of a job's tasks a worker is running now (`tasks_in_flight.sql`).
pub async fn tasks_in_flight(c: &impl GenericClient, job_id: &JobId) -> Result<i64, StoreError> {
    Ok(c.query_one(sql::TASKS_IN_FLIGHT, &[job_id])
        .await
        .ctx(|| format!("counting running tasks of job {job_id}"))?
        .get(0))
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
