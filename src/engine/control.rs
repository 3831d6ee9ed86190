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
//!
//! Each action locks and loads the job (`store::jobs`), decides without I/O whether and how it
//! applies ([`allowed_from`], [`plan_resubmit`], [`refuse_retry`]), applies that in one
//! transaction and emits its checkpoint after the commit.

use serde_json::{Value, json};

use super::Engine;
use super::events::{self, Event, EventStatus};
use super::ids::JobId;
use super::job_ctx::JobCtx;
use super::retry_failed::{Requeued, refuse_retry};
use super::state::{JOB_CANCELLABLE, JOB_RESUBMITTABLE, JobStatus, or_list};
use crate::store::jobs::{self, ControlState};
use crate::store::stages::{self, RetryCandidate};
use crate::store::{self, Guarded, QueryContext, StoreError, Transaction, task_archive};
use crate::telemetry::checkpoints as cp;

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
        status: JobStatus,
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

/// A deadlock or a NOWAIT lock refusal: the control action can simply run again.
fn lock_contention(e: &StoreError) -> bool {
    matches!(e.sqlstate(), Some("40P01" | "55P03"))
}

/// Runs a control action's transaction again (up to 10 times, backing off) while it loses to
/// lock contention; any other outcome is returned as it is.
async fn retry_on_contention<T, F, Fut>(mut once: F) -> Result<T, ControlError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ControlError>>,
{
    let mut tries = 0;
    loop {
        match once().await {
            Err(ControlError::Store(e)) if tries < 10 && lock_contention(&e) => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(10 * tries)).await;
            }
            other => return other,
        }
    }
}

/// Whether `action` may be taken on a job that is `status` (`allowed`: the statuses it accepts).
fn allowed_from(
    job_id: &JobId,
    action: &'static str,
    status: JobStatus,
    allowed: &'static [JobStatus],
) -> Result<(), ControlError> {
    if allowed.contains(&status) {
        Ok(())
    } else {
        Err(ControlError::Conflict {
            job_id: job_id.to_string(),
            action,
            status,
            allowed,
        })
    }
}

/// Locks the job row and checks that `action` is allowed from its status.
async fn lock_for(
    tx: &Transaction<'_>,
    job_id: &JobId,
    action: &'static str,
    allowed: &'static [JobStatus],
) -> Result<ControlState, ControlError> {
    let state = jobs::control_state(tx, job_id, action)
        .await?
        .ok_or_else(|| ControlError::NotFound {
            job_id: job_id.to_string(),
        })?;
    allowed_from(job_id, action, state.status, allowed)?;
    Ok(state)
}

/// A guarded update under the job's row lock matched nothing: the lock did not hold.
fn changed_under_lock(job_id: &JobId) -> StoreError {
    StoreError::Config(format!("job {job_id} changed under its row lock"))
}

/// How a resubmit runs the job again, decided from the stopped job.
#[derive(Debug, Clone, PartialEq)]
struct ResubmitPlan {
    /// The stage the new attempt starts at.
    from_stage: i32,
    /// Stages whose completed results are kept.
    kept_stages: Vec<i32>,
    /// The previous attempt, as recorded in the job's metadata and the event.
    previous: Value,
}

/// Plans the resubmit of a job stopped as `state`.
fn plan_resubmit(state: &ControlState, from: ResubmitFrom) -> ResubmitPlan {
    let from_stage = match from {
        ResubmitFrom::Start => 1,
        ResubmitFrom::FailedStage | ResubmitFrom::FailedTasks => {
            state.stage.clamp(1, state.total_stages.max(1))
        }
    };
    ResubmitPlan {
        from_stage,
        kept_stages: (1..from_stage).collect(),
        previous: json!({
            "attempt": state.attempt,
            "status": state.status,
            "stage": state.stage,
            "error_details": state.error_details,
            "ended_at": state.completed_at,
        }),
    }
}

/// How a resubmitted attempt got going.
enum Restart {
    /// Its stage message was written (MessageId, outbox ids).
    Message(String, Vec<i64>),
    /// The failed tasks were queued again.
    Requeued(Requeued),
}

impl Engine {
    /// Cancels a queued or processing job (409-style [`ControlError::Conflict`] when terminal).
    pub async fn cancel(&self, job_id: &JobId, reason: &str) -> Result<Cancelled, ControlError> {
        // A completion may hold the stage row of a stage that started meanwhile.
        retry_on_contention(|| self.cancel_once(job_id, reason)).await
    }

    async fn cancel_once(&self, job_id: &JobId, reason: &str) -> Result<Cancelled, ControlError> {
        let mut client = store::client(self.pool(), "cancelling a job").await?;
        let tx = client
            .transaction()
            .await
            .ctx(|| format!("starting cancel of job {job_id}"))?;
        // Stage rows before the job row: the lock order of a completing task (see the .sql).
        stages::cancel_running(&tx, job_id).await?;
        let state = lock_for(&tx, job_id, "cancel", JOB_CANCELLABLE).await?;
        let details = format!("cancelled by operator: {reason}");
        let job = match jobs::cancel(&tx, job_id, &details).await? {
            Guarded::Applied(job) => job,
            Guarded::NotApplied(()) => return Err(changed_under_lock(job_id).into()),
        };
        let cancelled_tasks = jobs::cancel_queued_tasks(&tx, job_id).await?;
        let in_flight_tasks = jobs::tasks_in_flight(&tx, job_id).await?;
        stages::cancel_nowait(&tx, job_id, job.stage).await?;
        let previous_status = state.status.to_string();
        events::write(
            &tx,
            &[Event::job(
                job_id.as_str(),
                "job_cancelled",
                EventStatus::Warning,
                cp::JOB_CANCELLED,
            )
            .stage(job.stage)
            .attempt(job.attempt)
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
                .job_type(&job.job_type)
                .stage(job.stage)
                .attempt(job.attempt)
                .correlation(job.correlation_id.as_deref())
                .extra("cancelled_tasks", cancelled_tasks)
                .extra("in_flight_tasks", in_flight_tasks),
        );
        Ok(Cancelled {
            job_id: job_id.to_string(),
            previous_status,
            stage: job.stage,
            attempt: job.attempt,
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
        // Completions of a cancelled job's last running tasks lock counter rows before task rows;
        // the resubmit deletes task rows, then stage rows (cascading to the counters): the server
        // may pick the resubmit as a deadlock's victim, and its transaction simply runs again.
        retry_on_contention(|| self.resubmit_once(job_id, from)).await
    }

    async fn resubmit_once(
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
        let plan = plan_resubmit(&state, from);
        let retry = match from {
            ResubmitFrom::FailedTasks => Some(tasks_to_retry(&tx, job_id, plan.from_stage).await?),
            _ => None,
        };
        let archived_tasks = match &retry {
            Some(tasks) => tasks.len() as u64,
            None => archive_from(&tx, job_id, plan.from_stage, state.attempt).await?,
        };
        let job = new_attempt(&tx, job_id, &state, &plan).await?;
        let restart = self.restart(&tx, &job, plan.from_stage, retry).await?;
        let requeued = match &restart {
            Restart::Requeued(r) => Some(r),
            Restart::Message(..) => None,
        };
        let event = resubmitted_event(job_id, &plan, from, job.attempt, archived_tasks, requeued);
        events::write(&tx, &[event]).await?;
        tx.commit()
            .await
            .ctx(|| format!("committing resubmit of job {job_id}"))?;
        match &restart {
            Restart::Message(_, ids)
            | Restart::Requeued(Requeued {
                outbox_ids: Some(ids),
                ..
            }) => self.publish(ids).await,
            Restart::Requeued(_) => self.outbox().wake(),
        }
        cp::emit(
            cp::JOB_RESUBMITTED,
            &job.fields()
                .stage(plan.from_stage)
                .extra("previous_status", state.status)
                .extra("mode", from.name()),
        );
        Ok(Resubmitted {
            job_id: job_id.to_string(),
            previous_status: state.status.to_string(),
            previous_error: state.error_details,
            attempt: job.attempt,
            from_stage: plan.from_stage,
            kept_stages: plan.kept_stages,
            archived_tasks,
            mode: from.name(),
            retried_tasks: requeued.map(|r| r.retried),
            kept_tasks: requeued.map(|r| r.kept),
            message_id: match restart {
                Restart::Message(id, _) => Some(id),
                Restart::Requeued(_) => None,
            },
        })
    }

    /// Gets the new attempt going: its stage message, or (a retry of failed tasks) the stage
    /// running again at once with `retry` queued.
    async fn restart(
        &self,
        tx: &Transaction<'_>,
        job: &JobCtx,
        from_stage: i32,
        retry: Option<Vec<RetryCandidate>>,
    ) -> Result<Restart, StoreError> {
        let Some(tasks) = retry else {
            let (msg, ids) = self.queue_stage(tx, job, from_stage).await?;
            return Ok(Restart::Message(msg.message_id(), ids));
        };
        // No stage message: the stage's tasks exist; the job runs that stage at once.
        match jobs::start_stage(tx, &job.job_id, from_stage, job.attempt).await? {
            Guarded::Applied(_) => {}
            Guarded::NotApplied(()) => return Err(changed_under_lock(&job.job_id)),
        }
        Ok(Restart::Requeued(
            self.requeue_tasks(tx, job, from_stage, &tasks).await?,
        ))
    }
}

/// The tasks of `stage` that did not complete, locked; refused when there are none or some are
/// still running.
async fn tasks_to_retry(
    tx: &Transaction<'_>,
    job_id: &JobId,
    stage: i32,
) -> Result<Vec<RetryCandidate>, ControlError> {
    let tasks = stages::retry_candidates(tx, job_id, stage).await?;
    match refuse_retry(stage, &tasks) {
        None => Ok(tasks),
        Some(reason) => Err(ControlError::NothingToRetry {
            job_id: job_id.to_string(),
            stage,
            reason,
        }),
    }
}

/// Resubmit from a stage: the previous attempt's tasks of `from_stage` and later are archived
/// and their stage rows dropped. Returns how many tasks were archived.
async fn archive_from(
    tx: &Transaction<'_>,
    job_id: &JobId,
    from_stage: i32,
    previous_attempt: i32,
) -> Result<u64, StoreError> {
    let n = task_archive::archive_from_stage(tx, job_id, from_stage, previous_attempt).await?;
    stages::delete_from(tx, job_id, from_stage).await?;
    Ok(n)
}

/// The job stopped as `state` is queued again for its next attempt as `plan` says; returns it.
async fn new_attempt(
    tx: &Transaction<'_>,
    job_id: &JobId,
    state: &ControlState,
    plan: &ResubmitPlan,
) -> Result<JobCtx, StoreError> {
    let next = state.attempt + 1;
    match jobs::resubmit(tx, job_id, plan.from_stage, &plan.previous, next).await? {
        Guarded::Applied(job) => Ok(JobCtx {
            job_id: job_id.clone(),
            job_type: job.job_type,
            params: job.parameters,
            total_stages: state.total_stages,
            attempt: job.attempt,
            correlation_id: job.correlation_id,
            traceparent: job.traceparent,
        }),
        Guarded::NotApplied(()) => Err(changed_under_lock(job_id)),
    }
}

/// The `job_resubmitted` event.
fn resubmitted_event(
    job_id: &JobId,
    plan: &ResubmitPlan,
    from: ResubmitFrom,
    attempt: i32,
    archived_tasks: u64,
    requeued: Option<&Requeued>,
) -> Event {
    Event::job(
        job_id.as_str(),
        "job_resubmitted",
        EventStatus::Info,
        cp::JOB_RESUBMITTED,
    )
    .stage(plan.from_stage)
    .attempt(attempt)
    .data(json!({
        "previous": plan.previous,
        "mode": from.name(),
        "from_stage": plan.from_stage,
        "kept_stages": plan.kept_stages,
        "archived_tasks": archived_tasks,
        "retried_tasks": requeued.map(|r| r.retried),
        "kept_tasks": requeued.map(|r| r.kept),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stopped(status: JobStatus, stage: i32, total_stages: i32) -> ControlState {
        ControlState {
            status,
            stage,
            attempt: 1,
            error_details: Some("boom".into()),
            completed_at: None,
            total_stages,
        }
    }

    #[test]
    fn a_resubmit_starts_where_the_job_stopped_or_at_the_start() {
        for (stage, total, from, want, kept) in [
            (2, 3, ResubmitFrom::FailedStage, 2, vec![1]),
            (2, 3, ResubmitFrom::FailedTasks, 2, vec![1]),
            (2, 3, ResubmitFrom::Start, 1, vec![]),
            (5, 3, ResubmitFrom::FailedStage, 3, vec![1, 2]),
            (0, 3, ResubmitFrom::FailedStage, 1, vec![]),
            (1, 0, ResubmitFrom::FailedStage, 1, vec![]),
        ] {
            let plan = plan_resubmit(&stopped(JobStatus::Failed, stage, total), from);
            assert_eq!(
                (plan.from_stage, plan.kept_stages),
                (want, kept),
                "stopped at {stage} of {total}, {from:?}"
            );
        }
        let plan = plan_resubmit(&stopped(JobStatus::Cancelled, 2, 3), ResubmitFrom::Start);
        assert_eq!(
            plan.previous,
            json!({"attempt": 1, "status": "cancelled", "stage": 2, "error_details": "boom", "ended_at": null})
        );
    }

    #[test]
    fn control_actions_are_allowed_only_from_their_statuses() {
        let id = JobId::parse(&"d".repeat(64)).unwrap();
        for s in JobStatus::ALL {
            assert_eq!(
                allowed_from(&id, "cancel", s, JOB_CANCELLABLE).is_ok(),
                s.is_live(),
                "cancel from {s}"
            );
            let resubmit = allowed_from(&id, "resubmit", s, JOB_RESUBMITTABLE);
            assert_eq!(
                resubmit.is_ok(),
                matches!(s, JobStatus::Failed | JobStatus::Cancelled),
                "resubmit from {s}"
            );
            if let Err(e) = resubmit {
                assert!(e.to_string().contains(&format!("it is {s}")), "{e}");
            }
        }
    }
}
