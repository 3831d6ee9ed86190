//! Operator control of a job: cancel and resubmit (`POST /api/jobs/{id}/cancel|resubmit`).
//!
//! Cancel ends a live job at once: the job becomes `cancelled` (terminal), its queued tasks are
//! cancelled, and tasks already running finish and are recorded, but the guards elsewhere in the
//! engine (stage start, claim, stage end, retry) all require the job to be live, so nothing they
//! do advances it and no later stage is ever created.
//!
//! Resubmit starts a new attempt of a failed or cancelled job, from the stage where it stopped
//! (completed stages and their results are kept) or from stage 1. The previous attempt's tasks of
//! the stages that run again move to `app.task_archive`; its events stay where they are. A third
//! mode re-runs only the failed or cancelled tasks of the stage where it stopped (see
//! `retry_failed.rs`): that stage's completed tasks keep their results.

use serde_json::json;

use super::Engine;
use super::events::{self, Event, EventStatus};
use super::ids::JobId;
use super::messages::JobMessage;
use super::retry_failed::{Requeued, RetryJob};
use super::state::{JOB_CANCELLABLE, JOB_RESUBMITTABLE, JobStatus, or_list};
use crate::store::{self, QueryContext, StoreError, sql};
use crate::telemetry::checkpoints as cp;
use crate::transport::outbox::Outbox;

/// Why a cancel or resubmit was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No such job.
    #[error("job {job_id} not found")]
    NotFound {
        /// The job asked for.
        job_id: String,
    },
    /// The job's status does not allow the action.
    #[error(
        "cannot {action} job {job_id}: it is {status} (allowed only when {})",
        or_list(allowed)
    )]
    Conflict {
        /// The job.
        job_id: String,
        /// "cancel" or "resubmit".
        action: &'static str,
        /// Its current status.
        status: String,
        /// Statuses the action accepts.
        allowed: &'static [JobStatus],
    },
    /// A retry of failed tasks does not apply to the stage where the job stopped.
    #[error("cannot retry the failed tasks of job {job_id} (stage {stage}): {reason}")]
    NothingToRetry {
        /// The job.
        job_id: String,
        /// The stage where it stopped.
        stage: i32,
        /// Why, and what to do instead.
        reason: String,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a cancel did.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Cancelled {
    /// The job.
    pub job_id: String,
    /// Status before the cancel (`queued` or `processing`).
    pub previous_status: String,
    /// Stage the job was at.
    pub stage: i32,
    /// Attempt that was cancelled.
    pub attempt: i32,
    /// Queued tasks that will never run.
    pub cancelled_tasks: u64,
    /// Tasks running now: their completions are recorded but never advance the job.
    pub in_flight_tasks: i64,
}

/// Where a resubmitted attempt starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResubmitFrom {
    /// The stage where the previous attempt stopped; earlier stages are kept.
    FailedStage,
    /// Stage 1; nothing is kept.
    Start,
    /// Only the failed or cancelled tasks of the stage where it stopped; its completed tasks and
    /// the earlier stages are kept.
    FailedTasks,
}

impl ResubmitFrom {
    /// The name used by the API and the CLI (`from=`).
    pub fn name(self) -> &'static str {
        match self {
            ResubmitFrom::FailedStage => "failed_stage",
            ResubmitFrom::Start => "start",
            ResubmitFrom::FailedTasks => "failed_tasks",
        }
    }
}

/// What a resubmit did.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Resubmitted {
    /// The job.
    pub job_id: String,
    /// Status of the previous attempt (`failed` or `cancelled`).
    pub previous_status: String,
    /// The previous attempt's error, if any.
    pub previous_error: Option<String>,
    /// The new attempt number.
    pub attempt: i32,
    /// The stage the new attempt starts at.
    pub from_stage: i32,
    /// Stages whose completed results are kept.
    pub kept_stages: Vec<i32>,
    /// Previous-attempt tasks moved to `app.task_archive`.
    pub archived_tasks: u64,
    /// `failed_stage`, `start` or `failed_tasks`.
    pub mode: &'static str,
    /// `failed_tasks`: the tasks queued again (the same as `archived_tasks`).
    pub retried_tasks: Option<u64>,
    /// `failed_tasks`: completed tasks of the stage whose results are kept.
    pub kept_tasks: Option<u64>,
    /// MessageId of the new attempt's stage message (`failed_tasks`: none, its task messages are
    /// sent at once).
    pub message_id: Option<String>,
}

/// A deadlock or a NOWAIT lock refusal: the cancel can simply run again.
fn lock_contention(e: &StoreError) -> bool {
    matches!(e.sqlstate(), Some("40P01" | "55P03"))
}

/// Locks the job row and checks that `action` is allowed from its status.
async fn lock_for(
    tx: &store::Transaction<'_>,
    job_id: &JobId,
    action: &'static str,
    allowed: &'static [JobStatus],
) -> Result<tokio_postgres::Row, ControlError> {
    let state = tx
        .query_opt(sql::JOB_CONTROL_STATE, &[&job_id.as_str()])
        .await
        .ctx(|| format!("locking job {job_id} to {action} it"))?
        .ok_or_else(|| ControlError::NotFound {
            job_id: job_id.to_string(),
        })?;
    let status: String = state.get(0);
    if !allowed.iter().any(|s| s.as_str() == status) {
        return Err(ControlError::Conflict {
            job_id: job_id.to_string(),
            action,
            status,
            allowed,
        });
    }
    Ok(state)
}

impl Engine {
    /// Cancels a queued or processing job (409-style [`ControlError::Conflict`] when terminal).
    pub async fn cancel(&self, job_id: &JobId, reason: &str) -> Result<Cancelled, ControlError> {
        let mut tries = 0;
        loop {
            match self.cancel_once(job_id, reason).await {
                Err(ControlError::Store(e)) if tries < 10 && lock_contention(&e) => {
                    // A completion held the stage row of a stage that started meanwhile.
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(10 * tries)).await;
                }
                other => return other,
            }
        }
    }

    async fn cancel_once(&self, job_id: &JobId, reason: &str) -> Result<Cancelled, ControlError> {
        let mut client = store::client(self.pool(), "cancelling a job").await?;
        let tx = client
            .transaction()
            .await
            .ctx(|| format!("starting cancel of job {job_id}"))?;
        // Stage rows before the job row: the lock order of a completing task (see the .sql).
        tx.execute(sql::STAGES_CANCEL_RUNNING, &[&job_id.as_str()])
            .await
            .ctx(|| format!("closing the running stages of job {job_id}"))?;
        let state = lock_for(&tx, job_id, "cancel", JOB_CANCELLABLE).await?;
        let previous_status: String = state.get(0);
        let details = format!("cancelled by operator: {reason}");
        let row = tx
            .query_opt(sql::JOB_CANCEL, &[&job_id.as_str(), &details])
            .await
            .ctx(|| format!("cancelling job {job_id}"))?
            .ok_or_else(|| {
                StoreError::Config(format!("job {job_id} changed under its row lock"))
            })?;
        let (stage, attempt, job_type, correlation): (i32, i32, String, Option<String>) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let cancelled_tasks = tx
            .execute(sql::TASKS_CANCEL_QUEUED, &[&job_id.as_str()])
            .await
            .ctx(|| format!("cancelling queued tasks of job {job_id}"))?;
        let in_flight_tasks: i64 = tx
            .query_one(sql::TASKS_IN_FLIGHT, &[&job_id.as_str()])
            .await
            .ctx(|| format!("counting running tasks of job {job_id}"))?
            .get(0);
        tx.execute(sql::STAGE_CANCEL_NOWAIT, &[&job_id.as_str()])
            .await
            .ctx(|| format!("closing stage {stage} of job {job_id}"))?;
        events::write(
            &tx,
            &[Event::job(
                job_id.as_str(),
                "job_cancelled",
                EventStatus::Warning,
                cp::JOB_CANCELLED,
            )
            .stage(stage)
            .attempt(attempt)
            .data(json!({
                "previous_status": previous_status,
                "reason": reason,
                "cancelled_tasks": cancelled_tasks,
                "in_flight_tasks": in_flight_tasks,
            }))],
        )
        .await?;
        tx.commit()
            .await
            .ctx(|| format!("committing cancel of job {job_id}"))?;
        cp::emit_warn(
            cp::JOB_CANCELLED,
            &cp::Fields::job(job_id)
                .job_type(&job_type)
                .stage(stage)
                .attempt(attempt)
                .correlation(correlation.as_deref())
                .extra("cancelled_tasks", cancelled_tasks)
                .extra("in_flight_tasks", in_flight_tasks),
        );
        Ok(Cancelled {
            job_id: job_id.to_string(),
            previous_status,
            stage,
            attempt,
            cancelled_tasks,
            in_flight_tasks,
        })
    }

    /// Starts a new attempt of a failed or cancelled job.
    pub async fn resubmit(
        &self,
        job_id: &JobId,
        from: ResubmitFrom,
    ) -> Result<Resubmitted, ControlError> {
        let mut client = store::client(self.pool(), "resubmitting a job").await?;
        let tx = client
            .transaction()
            .await
            .ctx(|| format!("starting resubmit of job {job_id}"))?;
        let state = lock_for(&tx, job_id, "resubmit", JOB_RESUBMITTABLE).await?;
        let previous_status: String = state.get(0);
        let stopped_at: i32 = state.get(1);
        let previous_attempt: i32 = state.get(2);
        let previous_error: Option<String> = state.get(3);
        let ended_at: Option<chrono::DateTime<chrono::Utc>> = state.get(4);
        let total_stages: i32 = state.get(5);
        let from_stage = match from {
            ResubmitFrom::Start => 1,
            ResubmitFrom::FailedStage | ResubmitFrom::FailedTasks => {
                stopped_at.clamp(1, total_stages.max(1))
            }
        };
        let retry = match from {
            ResubmitFrom::FailedTasks => Some(self.tasks_to_retry(&tx, job_id, from_stage).await?),
            _ => None,
        };
        let archived_tasks = match retry {
            Some(ref tasks) => tasks.len() as u64,
            None => {
                let n = tx
                    .execute(
                        sql::TASKS_ARCHIVE_FROM_STAGE,
                        &[&job_id.as_str(), &from_stage],
                    )
                    .await
                    .ctx(|| {
                        format!("archiving attempt {previous_attempt} tasks of job {job_id}")
                    })?;
                tx.execute(sql::STAGES_DELETE_FROM, &[&job_id.as_str(), &from_stage])
                    .await
                    .ctx(|| format!("resetting stages {from_stage}.. of job {job_id}"))?;
                n
            }
        };
        let previous = json!({
            "attempt": previous_attempt,
            "status": previous_status,
            "stage": stopped_at,
            "error_details": previous_error,
            "ended_at": ended_at,
        });
        let row = tx
            .query_opt(
                sql::JOB_RESUBMIT,
                &[&job_id.as_str(), &from_stage, &previous],
            )
            .await
            .ctx(|| format!("starting attempt {} of job {job_id}", previous_attempt + 1))?
            .ok_or_else(|| {
                StoreError::Config(format!("job {job_id} changed under its row lock"))
            })?;
        let attempt: i32 = row.get(0);
        let job_type: String = row.get(1);
        let correlation: Option<String> = row.get(3);
        let traceparent: Option<String> = row.get(4);
        let kept_stages: Vec<i32> = (1..from_stage).collect();
        let (message, requeued) = match retry {
            None => {
                let msg = JobMessage::new(
                    job_id.as_str(),
                    &job_type,
                    row.get(2),
                    from_stage,
                    attempt,
                    correlation.clone(),
                );
                let ids = Outbox::write(
                    &tx,
                    &[msg.to_outbound(&self.settings().queues.jobs, traceparent.as_deref())],
                )
                .await?;
                (Some((msg.message_id(), ids)), None)
            }
            Some(tasks) => {
                // No stage message: the stage's tasks exist; the job runs that stage at once.
                tx.query_opt(
                    sql::JOB_START_STAGE,
                    &[&job_id.as_str(), &from_stage, &attempt],
                )
                .await
                .ctx(|| format!("starting attempt {attempt} of job {job_id}"))?
                .ok_or_else(|| {
                    StoreError::Config(format!("job {job_id} changed under its row lock"))
                })?;
                let job = RetryJob {
                    job_id,
                    job_type: &job_type,
                    stage: from_stage,
                    attempt,
                    correlation_id: correlation.clone(),
                    traceparent: traceparent.as_deref(),
                };
                (None, Some(self.requeue_tasks(&tx, &job, &tasks).await?))
            }
        };
        events::write(
            &tx,
            &[Event::job(
                job_id.as_str(),
                "job_resubmitted",
                EventStatus::Info,
                cp::JOB_RESUBMITTED,
            )
            .stage(from_stage)
            .attempt(attempt)
            .data(json!({
                "previous": previous,
                "mode": from.name(),
                "from_stage": from_stage,
                "kept_stages": kept_stages,
                "archived_tasks": archived_tasks,
                "retried_tasks": requeued.as_ref().map(|r| r.retried),
                "kept_tasks": requeued.as_ref().map(|r| r.kept),
            }))],
        )
        .await?;
        tx.commit()
            .await
            .ctx(|| format!("committing resubmit of job {job_id}"))?;
        match (&message, &requeued) {
            (Some((_, ids)), _) => self.publish(ids).await,
            (
                None,
                Some(Requeued {
                    outbox_ids: Some(ids),
                    ..
                }),
            ) => self.publish(ids).await,
            _ => self.outbox().wake(),
        }
        cp::emit(
            cp::JOB_RESUBMITTED,
            &cp::Fields::job(job_id)
                .job_type(&job_type)
                .stage(from_stage)
                .attempt(attempt)
                .correlation(correlation.as_deref())
                .extra("previous_status", &previous_status)
                .extra("mode", from.name()),
        );
        Ok(Resubmitted {
            job_id: job_id.to_string(),
            previous_status,
            previous_error,
            attempt,
            from_stage,
            kept_stages,
            archived_tasks,
            mode: from.name(),
            retried_tasks: requeued.as_ref().map(|r| r.retried),
            kept_tasks: requeued.as_ref().map(|r| r.kept),
            message_id: message.map(|(id, _)| id),
        })
    }
}
