//! The janitor's statements: its run records (`app.janitor_runs`) and what it looks for.

use deadpool_postgres::GenericClient;
use serde_json::Value;

use super::tasks::TaskAttempt;
use super::{QueryContext, StoreError, sql};
use crate::model::JobId;

/// How a janitor run ended, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunStatus {
    /// Every check ran.
    Completed,
    /// A check failed; the run's error says which.
    Failed,
}

impl RunStatus {
    /// The stored name.
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
        }
    }
}

/// The end of a run (`janitor_run_finish.sql`).
#[derive(Debug, Clone)]
pub(crate) struct RunEnd<'a> {
    /// The run.
    pub run_id: &'a str,
    /// How long it took.
    pub duration_ms: i32,
    /// How it ended.
    pub status: RunStatus,
    /// Problems found.
    pub found: i32,
    /// Problems repaired.
    pub fixed: i32,
    /// One entry per action.
    pub actions: Value,
    /// Why it failed.
    pub error: Option<String>,
}

/// A running stage of a processing job with no live task left (`janitor_stalled_stages.sql`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StalledStage {
    /// The job.
    pub job_id: JobId,
    /// The stage.
    pub stage: i32,
}

/// A queued job whose stage message was lost (`janitor_stuck_queued_jobs.sql`).
#[derive(Debug, Clone)]
pub(crate) struct StuckJob {
    /// The job.
    pub job_id: JobId,
    /// Its type.
    pub job_type: String,
    /// Its parameters.
    pub parameters: Value,
    /// The stage it waits for.
    pub stage: i32,
    /// Its attempt.
    pub attempt: i32,
    /// Its correlation id.
    pub correlation_id: Option<String>,
    /// The trace context it was submitted under.
    pub traceparent: Option<String>,
    /// Stage messages the janitor already re-drove for this stage and attempt.
    pub redrives: i64,
}

/// Records the start of a run (`janitor_run_start.sql`).
pub(crate) async fn start_run(
    c: &impl GenericClient,
    run_id: &str,
    run_type: &str,
) -> Result<(), StoreError> {
    c.execute(sql::JANITOR_RUN_START, &[&run_id, &run_type])
        .await
        .ctx(|| "recording janitor run".into())?;
    Ok(())
}

/// Records the end of a run (`janitor_run_finish.sql`).
pub(crate) async fn finish_run(c: &impl GenericClient, end: &RunEnd<'_>) -> Result<(), StoreError> {
    c.execute(
        sql::JANITOR_RUN_FINISH,
        &[
            &end.run_id,
            &end.duration_ms,
            &end.status.as_str(),
            &end.found,
            &end.fixed,
            &end.actions,
            &end.error,
        ],
    )
    .await
    .ctx(|| format!("recording the end of janitor run {}", end.run_id))?;
    Ok(())
}

/// Up to `limit` processing attempts whose lease expired, oldest first, each with its claim's
/// fencing token (`janitor_expired_leases.sql`).
pub(crate) async fn expired_leases(
    c: &impl GenericClient,
    limit: i64,
) -> Result<Vec<(TaskAttempt, i32)>, StoreError> {
    let what = || "finding expired task leases".to_string();
    let rows = c
        .query(sql::JANITOR_EXPIRED_LEASES, &[&limit])
        .await
        .ctx(what)?;
    rows.iter()
        .map(|r| Ok((TaskAttempt::from_row(r, &what)?, r.get("claim_token"))))
        .collect()
}

/// Up to `limit` stalled stages (`janitor_stalled_stages.sql`).
pub(crate) async fn stalled_stages(
    c: &impl GenericClient,
    limit: i64,
) -> Result<Vec<StalledStage>, StoreError> {
    let what = || "finding stalled stages".to_string();
    let rows = c
        .query(sql::JANITOR_STALLED_STAGES, &[&limit])
        .await
        .ctx(what)?;
    rows.iter()
        .map(|r| {
            Ok(StalledStage {
                job_id: r.try_get("job_id").ctx(what)?,
                stage: r.get("stage"),
            })
        })
        .collect()
}

/// Up to `limit` jobs queued and untouched for `after_s` seconds with nothing in the outbox
/// (`janitor_stuck_queued_jobs.sql`).
pub(crate) async fn stuck_queued_jobs(
    c: &impl GenericClient,
    after_s: f64,
    limit: i64,
) -> Result<Vec<StuckJob>, StoreError> {
    let what = || "finding stuck queued jobs".to_string();
    let rows = c
        .query(sql::JANITOR_STUCK_QUEUED_JOBS, &[&after_s, &limit])
        .await
        .ctx(what)?;
    rows.iter()
        .map(|r| {
            Ok(StuckJob {
                job_id: r.try_get("job_id").ctx(what)?,
                job_type: r.get("job_type"),
                parameters: r.get("parameters"),
                stage: r.get("stage"),
                attempt: r.get("attempt"),
                correlation_id: r.get("correlation_id"),
                traceparent: r.get("traceparent"),
                redrives: r.get("redrives"),
            })
        })
        .collect()
}
