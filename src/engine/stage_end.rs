//! What the last task of a stage does, inside its completing transaction: advance to the next
//! stage, finalize (protected), or fail the job. Also the one way a job is marked failed.
//!
//! Each step loads what it needs through the repositories, decides with a pure function
//! ([`fan_in::decide_with_budget`], [`stage_summary`], [`decide_finalize`]), applies the decision
//! in the caller's transaction and then emits its checkpoints.

use std::panic::AssertUnwindSafe;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::Engine;
use super::events::{self, Event, EventStatus};
use super::fan_in::{self, StageCounts, StageOutcome};
use super::job_ctx::JobCtx;
use super::messages::JobMessage;
use super::panics::panic_text;
use super::stage_inputs;
use crate::jobs::{FailedTask, FinalizeInput, Job, StageDef, StagePolicy, StageSummary};
use crate::model::{JobStatus, StageStatus};
use crate::store::jobs::{self, JobState};
use crate::store::stages::{self, StageFailure};
use crate::store::{Guarded, StoreError, Transaction};
use crate::telemetry::checkpoints as cp;
use crate::transport::outbox::Outbox;

/// Failed tasks listed in a stage's summary at most.
const SUMMARY_FAILED_TASKS: i64 = 100;

impl Engine {
    /// The definition of `stage` of `job_type` (`None`: the type or the stage is unknown).
    fn stage_def(&self, job_type: &str, stage: i32) -> Option<StageDef> {
        self.registry()
            .job(job_type)
            .and_then(|d| d.stages().get((stage - 1) as usize).cloned())
    }

    /// The failure policy of `stage` of `job_type` (fail-fast when the type or stage is unknown).
    pub(crate) fn stage_policy(&self, job_type: &str, stage: i32) -> StagePolicy {
        self.stage_def(job_type, stage)
            .map(|s| s.policy)
            .unwrap_or(StagePolicy::FailFast)
    }

    /// Ends `stage`: decides the outcome from the task counts and applies it. Returns outbox ids.
    pub(crate) async fn end_stage(
        &self,
        tx: &Transaction<'_>,
        job: &JobCtx,
        stage: i32,
        policy: StagePolicy,
    ) -> Result<Vec<i64>, StoreError> {
        let counts = stages::counts(tx, &job.job_id, stage).await?;
        let failed_tasks = if counts.failed > 0 {
            stages::failed_tasks(tx, &job.job_id, stage, SUMMARY_FAILED_TASKS).await?
        } else {
            Vec::new()
        };
        let over_budget = self.over_failure_budget(tx, job, stage, policy).await?;
        let outcome =
            fan_in::decide_with_budget(policy, stage, job.total_stages, counts, over_budget);
        let name = self
            .stage_def(&job.job_type, stage)
            .map_or("unknown", |s| s.name);
        let summary = stage_summary(stage, name, counts, &failed_tasks, policy, Utc::now());
        match outcome {
            StageOutcome::Advance { next_stage } => {
                self.advance_job(tx, job, stage, next_stage, summary).await
            }
            StageOutcome::Finalize => self.finalize_job(tx, job, stage, summary).await,
            StageOutcome::Fail { reason } => {
                self.fail_stage(tx, job, stage, &reason, summary).await
            }
        }
    }

    /// Under [`StagePolicy::MaxFailures`]: why the job's failed tasks up to `stage` exceed its
    /// budget (None: within it, or another policy). The reason names the first failed task (by
    /// stage and position) and its error, which names its input.
    pub(crate) async fn over_failure_budget(
        &self,
        tx: &Transaction<'_>,
        job: &JobCtx,
        stage: i32,
        policy: StagePolicy,
    ) -> Result<Option<String>, StoreError> {
        let StagePolicy::MaxFailures { param } = policy else {
            return Ok(None);
        };
        let allowed = job.params.get(param).and_then(Value::as_i64).unwrap_or(0);
        let failed = stages::failed_count(tx, &job.job_id, stage).await?;
        if failed <= allowed {
            return Ok(None);
        }
        let first =
            stages::earlier_failures(tx, &job.job_id, stage, 1, "reading the first failed task")
                .await?
                .first()
                .map(|f| {
                    format!(
                        "task {} (stage {}, index {}): {}",
                        f.task_id, f.stage, f.task_seq, f.error
                    )
                })
                .unwrap_or_default();
        Ok(Some(format!(
            "{failed} failed task(s) up to stage {stage}, more than {param} = {allowed} allows; the first: {first}"
        )))
    }

    /// The stage ended and another follows: the job is queued at `next_stage` and its stage
    /// message written.
    async fn advance_job(
        &self,
        tx: &Transaction<'_>,
        job: &JobCtx,
        stage: i32,
        next_stage: i32,
        summary: Value,
    ) -> Result<Vec<i64>, StoreError> {
        match jobs::advance(tx, &job.job_id, stage, job.attempt, &summary).await? {
            Guarded::Applied(()) => {}
            Guarded::NotApplied(actual) => {
                return self
                    .stage_end_mismatch(tx, job, stage, "advance", actual)
                    .await;
            }
        }
        stages::finish(tx, &job.job_id, stage, StageStatus::Completed).await?;
        let advanced = Event::job(
            &job.job_id,
            "stage_advanced",
            EventStatus::Success,
            cp::STAGE_ADVANCE_QUEUED,
        )
        .stage(next_stage)
        .attempt(job.attempt)
        .data(json!({"from_stage": stage, "to_stage": next_stage}));
        events::write(tx, &[stage_completed(job, stage, summary), advanced]).await?;
        let (_, ids) = self.queue_stage(tx, job, next_stage).await?;
        let fields = job.fields().stage(stage);
        cp::emit(cp::STAGE_COMPLETED, &fields);
        cp::emit(
            cp::STAGE_ADVANCE_QUEUED,
            &fields.clone().extra("next_stage", next_stage),
        );
        Ok(ids)
    }

    /// Writes the message that runs `stage` of `job` to the outbox (published after commit);
    /// returns it and its outbox ids.
    pub(super) async fn queue_stage(
        &self,
        tx: &Transaction<'_>,
        job: &JobCtx,
        stage: i32,
    ) -> Result<(JobMessage, Vec<i64>), StoreError> {
        let msg = JobMessage::new(
            job.job_id.as_str(),
            &job.job_type,
            job.params.clone(),
            stage,
            job.attempt,
            job.correlation_id.clone(),
        );
        let ids = Outbox::write(
            tx,
            &[msg.to_outbound(&self.settings().queues.jobs, job.traceparent.as_deref())],
        )
        .await?;
        Ok((msg, ids))
    }

    /// The stage failed under its policy: it is closed and the job fails with `reason`.
    async fn fail_stage(
        &self,
        tx: &Transaction<'_>,
        job: &JobCtx,
        stage: i32,
        reason: &str,
        summary: Value,
    ) -> Result<Vec<i64>, StoreError> {
        stages::finish(tx, &job.job_id, stage, StageStatus::Failed).await?;
        let failed = Event::job(
            &job.job_id,
            "stage_failed",
            EventStatus::Failure,
            cp::STAGE_FAILED,
        )
        .stage(stage)
        .attempt(job.attempt)
        .data(summary.clone())
        .error(Some("permanent"), "StagePolicy", reason);
        events::write(tx, &[failed]).await?;
        self.fail_job_in_tx(
            tx,
            job,
            Some(stage),
            reason,
            json!({"stage_summary": summary}),
        )
        .await
    }

    /// The job was no longer processing this stage when its last task ended (cancelled, failed by
    /// another task, or a janitor repair got there first): reported, nothing advanced. `actual`
    /// is where the job is (`None`: it is gone).
    async fn stage_end_mismatch(
        &self,
        tx: &Transaction<'_>,
        job: &JobCtx,
        stage: i32,
        what: &str,
        actual: Option<JobState>,
    ) -> Result<Vec<i64>, StoreError> {
        let actual = actual.map_or_else(|| "missing".to_string(), |s| s.to_string());
        let fields = job
            .fields()
            .stage(stage)
            .extra(
                "expected",
                format!("processing stage {stage} attempt {}", job.attempt),
            )
            .extra("actual", &actual)
            .extra("attempted", what);
        cp::emit_warn(cp::STAGE_ADVANCE_SKIPPED, &fields);
        events::write(
            tx,
            &[Event::job(
                &job.job_id,
                "stage_advance_skipped",
                EventStatus::Warning,
                cp::STAGE_ADVANCE_SKIPPED,
            )
            .stage(stage)
            .attempt(job.attempt)
            .data(json!({"attempted": what, "job_state": actual}))],
        )
        .await?;
        Ok(Vec::new())
    }

    /// Runs the job type's finalize (protected against errors and panics) and completes the job.
    async fn finalize_job(
        &self,
        tx: &Transaction<'_>,
        job: &JobCtx,
        stage: i32,
        summary: Value,
    ) -> Result<Vec<i64>, StoreError> {
        let stages = stage_inputs::stage_summaries(tx, &job.job_id).await?;
        let def = self.registry().job(&job.job_type).cloned();
        let last = if def.as_ref().is_some_and(|d| d.finalize_needs_results()) {
            stage_inputs::completed_results(tx, &job.job_id, stage, "loading final results").await?
        } else {
            Vec::new()
        };
        let empty = Map::new();
        let last_failed: Vec<FailedTask> = summary
            .get("failed_tasks")
            .and_then(|f| serde_json::from_value(f.clone()).ok())
            .unwrap_or_default();
        let input = FinalizeInput {
            job_id: job.job_id.as_str(),
            params: job.params.as_object().unwrap_or(&empty),
            stages: &stages,
            last_stage_results: &last,
            last_stage_failed: &last_failed,
        };
        let outcome = self.run_finalize(def.as_deref(), &job.job_type, &input);
        drop(last);
        let finalized = decide_finalize(job, stage, outcome, &stages);
        if let Some(err) = &finalized.error_details {
            cp::emit_at(
                cp::Level::Error,
                cp::FINALIZE_FALLBACK,
                &job.fields().stage(stage),
                Some(cp::ErrorFields {
                    class: Some("permanent"),
                    error_type: "FinalizeError",
                    message: err,
                    chain: err,
                }),
            );
        }
        self.complete_job(tx, job, stage, summary, finalized).await
    }

    /// The job type's finalize, with its errors and panics caught.
    fn run_finalize(
        &self,
        def: Option<&dyn Job>,
        job_type: &str,
        input: &FinalizeInput<'_>,
    ) -> Result<Value, String> {
        let Some(def) = def else {
            return Err(format!("job type {job_type} is not registered"));
        };
        match std::panic::catch_unwind(AssertUnwindSafe(|| def.finalize(input))) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(format!("finalize failed: {e}")),
            Err(p) => Err(format!("finalize panicked: {}", panic_text(&p))),
        }
    }

    /// Applies a finalize decision: the job ends with its status and result, the stage closes,
    /// and the events are written.
    async fn complete_job(
        &self,
        tx: &Transaction<'_>,
        job: &JobCtx,
        stage: i32,
        summary: Value,
        f: Finalized,
    ) -> Result<Vec<i64>, StoreError> {
        let finish = jobs::Finish {
            status: f.status,
            result: &f.result,
            summary: &summary,
            error_details: f.error_details.as_deref(),
        };
        match jobs::finish(tx, &job.job_id, stage, job.attempt, &finish).await? {
            Guarded::Applied(()) => {}
            Guarded::NotApplied(actual) => {
                return self
                    .stage_end_mismatch(tx, job, stage, "finalize", actual)
                    .await;
            }
        }
        stages::finish(tx, &job.job_id, stage, StageStatus::Completed).await?;
        let mut all = vec![stage_completed(job, stage, summary)];
        all.extend(f.events);
        events::write(tx, &all).await?;
        let fields = job.fields().stage(stage);
        cp::emit(cp::STAGE_COMPLETED, &fields);
        cp::emit(cp::JOB_COMPLETED, &fields.extra("status", f.status));
        Ok(Vec::new())
    }

    /// Fails the job (if still live) with `reason`, cancels its queued tasks, closes the stage and
    /// records the event. When the job was not live, reports the mismatch (STATE_MISMATCH).
    pub(crate) async fn fail_job_in_tx(
        &self,
        tx: &Transaction<'_>,
        job: &JobCtx,
        stage: Option<i32>,
        reason: &str,
        details: Value,
    ) -> Result<Vec<i64>, StoreError> {
        // Lock order (docs/architecture.md, "Lock order"): the stage row before the job row, as a
        // completion that ends a stage takes them. Closing the stage first keeps a failing task
        // and a completion that ends the same stage from waiting on each other in a cycle.
        let closed = match jobs::stage_state(tx, &job.job_id).await? {
            Some(before) if before.status.is_live() => {
                stages::finish(tx, &job.job_id, before.stage, StageStatus::Failed).await?;
                Some(before.stage)
            }
            _ => None,
        };
        let mut fields = job.fields();
        if let Some(s) = stage {
            fields = fields.stage(s);
        }
        let failure = json!({"failure": details});
        match jobs::fail(tx, &job.job_id, reason, &failure).await? {
            Guarded::Applied(failed) => {
                if closed != Some(failed.stage) {
                    // The job moved to another stage between the read and the update (rare).
                    stages::finish(tx, &job.job_id, failed.stage, StageStatus::Failed).await?;
                }
                let event_stage = stage.unwrap_or(failed.stage);
                self.job_failed(tx, job, event_stage, reason, details, fields)
                    .await
            }
            Guarded::NotApplied(actual) => {
                let actual = actual.map_or_else(|| "missing".to_string(), |s| s.status.to_string());
                cp::emit_warn(
                    cp::STATE_MISMATCH,
                    &fields
                        .extra("expected", "queued or processing")
                        .extra("actual", &actual)
                        .extra("attempted", "fail job"),
                );
                Ok(Vec::new())
            }
        }
    }

    /// The job failed: its queued tasks are cancelled and the event written.
    async fn job_failed(
        &self,
        tx: &Transaction<'_>,
        job: &JobCtx,
        event_stage: i32,
        reason: &str,
        details: Value,
        fields: cp::Fields,
    ) -> Result<Vec<i64>, StoreError> {
        let cancelled = jobs::cancel_queued_tasks(tx, &job.job_id).await?;
        events::write(
            tx,
            &[Event::job(
                &job.job_id,
                "job_failed",
                EventStatus::Failure,
                cp::JOB_FAILED,
            )
            .stage(event_stage)
            .attempt(job.attempt)
            .data(json!({"cancelled_tasks": cancelled, "details": details}))
            .error(Some("permanent"), "JobFailed", reason)],
        )
        .await?;
        cp::emit_at(
            cp::Level::Error,
            cp::JOB_FAILED,
            &fields,
            Some(cp::ErrorFields {
                class: Some("permanent"),
                error_type: "JobFailed",
                message: reason,
                chain: reason,
            }),
        );
        Ok(Vec::new())
    }
}

/// The `stage_completed` event of a stage that ended well, with its summary.
fn stage_completed(job: &JobCtx, stage: i32, summary: Value) -> Event {
    Event::job(
        &job.job_id,
        "stage_completed",
        EventStatus::Success,
        cp::STAGE_COMPLETED,
    )
    .stage(stage)
    .attempt(job.attempt)
    .data(summary)
}

/// A finished stage's summary (kept in `stage_results` and its events): its counts, its first
/// failed tasks, its policy and when it ended.
fn stage_summary(
    stage: i32,
    name: &str,
    counts: StageCounts,
    failed_tasks: &[StageFailure],
    policy: StagePolicy,
    now: DateTime<Utc>,
) -> Value {
    let failed_tasks: Vec<Value> = failed_tasks
        .iter()
        .map(|f| json!({"task_id": f.task_id, "task_index": f.task_seq, "error": f.error}))
        .collect();
    json!({
        "stage": stage,
        "name": name,
        "task_count": counts.total,
        "completed": counts.completed,
        "failed": counts.failed,
        "cancelled": counts.cancelled,
        "failed_tasks": failed_tasks,
        "policy": policy,
        "completed_at": now.to_rfc3339(),
    })
}

/// How a job ends after its last stage: what [`decide_finalize`] decided.
#[derive(Debug)]
struct Finalized {
    /// `completed` or `completed_with_errors`.
    status: JobStatus,
    /// The job's result: finalize's, or a fallback that says what failed.
    result: Value,
    /// Why finalize failed (`None`: it did not).
    error_details: Option<String>,
    /// The events after `stage_completed`.
    events: Vec<Event>,
}

/// Decides how the job ends from finalize's `outcome`. A finalize that reports some inputs
/// failed (`"status": "completed_with_errors"` in its result, within the job's tolerance) ends the
/// job completed_with_errors; a finalize that failed ends it so too, with a fallback result that
/// counts the tasks and says where their results are.
fn decide_finalize(
    job: &JobCtx,
    stage: i32,
    outcome: Result<Value, String>,
    stages: &[StageSummary],
) -> Finalized {
    let completed = |status: EventStatus| {
        Event::job(&job.job_id, "job_completed", status, cp::JOB_COMPLETED)
            .stage(stage)
            .attempt(job.attempt)
    };
    let with_errors = json!({"status": JobStatus::CompletedWithErrors});
    match outcome {
        Ok(result) => {
            let reported = result
                .get("status")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<JobStatus>().ok());
            if reported == Some(JobStatus::CompletedWithErrors) {
                Finalized {
                    status: JobStatus::CompletedWithErrors,
                    result,
                    error_details: None,
                    events: vec![completed(EventStatus::Warning).data(with_errors)],
                }
            } else {
                Finalized {
                    status: JobStatus::Completed,
                    result,
                    error_details: None,
                    events: vec![completed(EventStatus::Success)],
                }
            }
        }
        Err(err) => Finalized {
            status: JobStatus::CompletedWithErrors,
            result: finalize_fallback(job, &err, stages),
            events: vec![
                Event::job(
                    &job.job_id,
                    "finalize_failed",
                    EventStatus::Failure,
                    cp::FINALIZE_FALLBACK,
                )
                .stage(stage)
                .attempt(job.attempt)
                .error(Some("permanent"), "FinalizeError", &err),
                completed(EventStatus::Warning).data(with_errors),
            ],
            error_details: Some(err),
        },
    }
}

/// The result of a job whose finalize failed with `err`.
fn finalize_fallback(job: &JobCtx, err: &str, stages: &[StageSummary]) -> Value {
    json!({
        "status": JobStatus::CompletedWithErrors,
        "finalize_error": err,
        "job_type": job.job_type,
        "stages": stages,
        "task_counts": {
            "total": stages.iter().map(|s| s.task_count).sum::<i64>(),
            "completed": stages.iter().map(|s| s.completed).sum::<i64>(),
            "failed": stages.iter().map(|s| s.failed).sum::<i64>(),
        },
        "results_location": format!(
            "app.tasks WHERE parent_job_id = '{}' (GET /api/jobs/{}/tasks)", job.job_id, job.job_id
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::JobId;

    fn job() -> JobCtx {
        JobCtx {
            job_id: JobId::parse(&"c".repeat(64)).expect("a job id"),
            job_type: "shapes3".into(),
            params: json!({}),
            total_stages: 3,
            attempt: 2,
            correlation_id: None,
            traceparent: None,
        }
    }

    fn stages() -> Vec<StageSummary> {
        vec![
            StageSummary {
                stage: 1,
                name: "list".into(),
                task_count: 4,
                completed: 3,
                failed: 1,
            },
            StageSummary {
                stage: 2,
                name: "load".into(),
                task_count: 3,
                completed: 3,
                failed: 0,
            },
        ]
    }

    fn kinds(f: &Finalized) -> Vec<(&'static str, EventStatus)> {
        f.events.iter().map(|e| (e.event_type, e.status)).collect()
    }

    #[test]
    fn finalize_outcomes_decide_the_status_the_result_and_the_events() {
        let ok = decide_finalize(&job(), 3, Ok(json!({"rows": 7})), &stages());
        assert_eq!(ok.status, JobStatus::Completed);
        assert_eq!(ok.result, json!({"rows": 7}));
        assert_eq!(ok.error_details, None);
        assert_eq!(kinds(&ok), [("job_completed", EventStatus::Success)]);

        let partial = json!({"status": "completed_with_errors", "failed": 1});
        let tolerated = decide_finalize(&job(), 3, Ok(partial.clone()), &stages());
        assert_eq!(tolerated.status, JobStatus::CompletedWithErrors);
        assert_eq!(tolerated.result, partial);
        assert_eq!(tolerated.error_details, None);
        assert_eq!(kinds(&tolerated), [("job_completed", EventStatus::Warning)]);
        assert_eq!(
            tolerated.events[0].data,
            json!({"status": "completed_with_errors"})
        );

        // A status that is not completed_with_errors is just part of the result.
        let other = decide_finalize(&job(), 3, Ok(json!({"status": "failed"})), &stages());
        assert_eq!(other.status, JobStatus::Completed);

        let failed = decide_finalize(&job(), 3, Err("finalize failed: no".into()), &stages());
        assert_eq!(failed.status, JobStatus::CompletedWithErrors);
        assert_eq!(failed.error_details.as_deref(), Some("finalize failed: no"));
        assert_eq!(
            kinds(&failed),
            [
                ("finalize_failed", EventStatus::Failure),
                ("job_completed", EventStatus::Warning)
            ]
        );
        assert_eq!(failed.result["status"], "completed_with_errors");
        assert_eq!(failed.result["finalize_error"], "finalize failed: no");
        assert_eq!(
            failed.result["task_counts"],
            json!({"total": 7, "completed": 6, "failed": 1})
        );
        assert!(
            failed.result["results_location"]
                .as_str()
                .unwrap()
                .contains(&"c".repeat(64))
        );
    }

    #[test]
    fn a_stage_summary_lists_counts_failures_and_policy() {
        let counts = StageCounts {
            total: 3,
            completed: 1,
            failed: 1,
            cancelled: 1,
        };
        let failed = [StageFailure {
            task_id: "t1".into(),
            task_seq: 2,
            error: "boom".into(),
        }];
        let at = DateTime::parse_from_rfc3339("2024-05-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let s = stage_summary(
            2,
            "load",
            counts,
            &failed,
            StagePolicy::TolerateFailures,
            at,
        );
        assert_eq!(
            s,
            json!({
                "stage": 2, "name": "load", "task_count": 3, "completed": 1, "failed": 1,
                "cancelled": 1,
                "failed_tasks": [{"task_id": "t1", "task_index": 2, "error": "boom"}],
                "policy": {"policy": "tolerate_failures"},
                "completed_at": "2024-05-01T10:00:00+00:00",
            })
        );
    }
}
