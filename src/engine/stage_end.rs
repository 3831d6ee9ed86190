//! What the last task of a stage does, inside its completing transaction: advance to the next
//! stage, finalize (protected), or fail the job. Also the one way a job is marked failed.

use std::panic::AssertUnwindSafe;

use serde_json::{Map, Value, json};

use super::Engine;
use super::events::{self, Event, EventStatus};
use super::fan_in::{self, StageCounts, StageOutcome};
use super::faults::Fault;
use super::job_ctx::JobCtx;
use super::messages::JobMessage;
use super::panics::panic_text;
use crate::jobs::{FailedTask, FinalizeInput, PreviousResult, StagePolicy, StageSummary};
use crate::store::{QueryContext, StoreError, Transaction, sql};
use crate::telemetry::checkpoints as cp;
use crate::transport::outbox::Outbox;

/// The status of a job that completed with some failed inputs.
const WITH_ERRORS: &str = "completed_with_errors";

impl Engine {
    /// The failure policy of `stage` of `job_type` (fail-fast when the type or stage is unknown).
    pub(crate) fn stage_policy(&self, job_type: &str, stage: i32) -> StagePolicy {
        self.registry()
            .job(job_type)
            .and_then(|d| d.stages().get((stage - 1) as usize).map(|s| s.policy))
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
        let r = tx
            .query_one(sql::STAGE_COUNTS, &[&job.job_id, &stage])
            .await
            .ctx(|| format!("counting stage {stage} tasks of job {}", job.job_id))?;
        let counts = StageCounts {
            total: r.get(0),
            completed: r.get(1),
            failed: r.get(2),
            cancelled: r.get(3),
        };
        let failed_tasks: Vec<Value> = if counts.failed > 0 {
            tx.query(sql::STAGE_FAILED_TASKS, &[&job.job_id, &stage, &100i64])
                .await
                .ctx(|| format!("listing failed tasks of stage {stage} of job {}", job.job_id))?
                .iter()
                .map(|r| json!({"task_id": r.get::<_, String>(0), "task_index": r.get::<_, i32>(1), "error": r.get::<_, String>(2)}))
                .collect()
        } else {
            Vec::new()
        };
        let outcome = match self.over_failure_budget(tx, job, stage, policy).await? {
            Some(reason) => StageOutcome::Fail { reason },
            None => fan_in::decide(policy, stage, job.total_stages, counts),
        };
        let stage_name = self
            .registry()
            .job(&job.job_type)
            .and_then(|j| j.stages().get((stage - 1) as usize).map(|s| s.name))
            .unwrap_or("unknown");
        let summary = json!({
            "stage": stage,
            "name": stage_name,
            "task_count": counts.total,
            "completed": counts.completed,
            "failed": counts.failed,
            "cancelled": counts.cancelled,
            "failed_tasks": failed_tasks,
            "policy": policy,
            "completed_at": chrono::Utc::now().to_rfc3339(),
        });
        let fields = job.fields().stage(stage);
        match outcome {
            StageOutcome::Advance { next_stage } => {
                let advanced = tx
                    .query_opt(
                        sql::JOB_ADVANCE,
                        &[&job.job_id, &stage, &job.attempt, &summary],
                    )
                    .await
                    .ctx(|| format!("advancing job {} from stage {stage}", job.job_id))?;
                if advanced.is_none() {
                    return self.stage_end_mismatch(tx, job, stage, "advance").await;
                }
                self.finish_stage_row(tx, job, stage, "completed").await?;
                events::write(
                    tx,
                    &[
                        Event::job(
                            &job.job_id,
                            "stage_completed",
                            EventStatus::Success,
                            cp::STAGE_COMPLETED,
                        )
                        .stage(stage)
                        .attempt(job.attempt)
                        .data(summary.clone()),
                        Event::job(
                            &job.job_id,
                            "stage_advanced",
                            EventStatus::Success,
                            cp::STAGE_ADVANCE_QUEUED,
                        )
                        .stage(next_stage)
                        .attempt(job.attempt)
                        .data(json!({"from_stage": stage, "to_stage": next_stage})),
                    ],
                )
                .await?;
                let msg = JobMessage::new(
                    job.job_id.as_str(),
                    &job.job_type,
                    job.params.clone(),
                    next_stage,
                    job.attempt,
                    job.correlation_id.clone(),
                );
                let ids = Outbox::write(
                    tx,
                    &[msg.to_outbound(&self.settings().queues.jobs, job.traceparent.as_deref())],
                )
                .await?;
                cp::emit(cp::STAGE_COMPLETED, &fields);
                cp::emit(
                    cp::STAGE_ADVANCE_QUEUED,
                    &fields.clone().extra("next_stage", next_stage),
                );
                Ok(ids)
            }
            StageOutcome::Finalize => self.finalize_job(tx, job, stage, summary).await,
            StageOutcome::Fail { reason } => {
                self.finish_stage_row(tx, job, stage, "failed").await?;
                events::write(
                    tx,
                    &[Event::job(
                        &job.job_id,
                        "stage_failed",
                        EventStatus::Failure,
                        cp::STAGE_FAILED,
                    )
                    .stage(stage)
                    .attempt(job.attempt)
                    .data(summary.clone())
                    .error(Some("permanent"), "StagePolicy", &reason)],
                )
                .await?;
                self.fail_job_in_tx(
                    tx,
                    job,
                    Some(stage),
                    &reason,
                    json!({"stage_summary": summary}),
                )
                .await
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
        let failed: i64 = tx
            .query_one(sql::JOB_FAILED_COUNT, &[&job.job_id, &stage])
            .await
            .ctx(|| {
                format!(
                    "counting failed tasks of job {} up to stage {stage}",
                    job.job_id
                )
            })?
            .get(0);
        if failed <= allowed {
            return Ok(None);
        }
        let first = tx
            .query_opt(sql::EARLIER_FAILED_TASKS, &[&job.job_id, &stage, &1i64])
            .await
            .ctx(|| format!("reading the first failed task of job {}", job.job_id))?
            .map(|r| {
                format!(
                    "task {} (stage {}, index {}): {}",
                    r.get::<_, String>(0),
                    r.get::<_, i32>(3),
                    r.get::<_, i32>(1),
                    r.get::<_, String>(2)
                )
            })
            .unwrap_or_default();
        Ok(Some(format!(
            "{failed} failed task(s) up to stage {stage}, more than {param} = {allowed} allows; the first: {first}"
        )))
    }

    async fn finish_stage_row(
        &self,
        tx: &Transaction<'_>,
        job: &JobCtx,
        stage: i32,
        status: &str,
    ) -> Result<(), StoreError> {
        tx.execute(sql::STAGE_FINISH, &[&job.job_id, &stage, &status])
            .await
            .ctx(|| format!("closing stage {stage} of job {}", job.job_id))?;
        Ok(())
    }

    /// The job was no longer processing this stage when its last task ended (cancelled, failed by
    /// another task, or a janitor repair got there first): reported, nothing advanced.
    async fn stage_end_mismatch(
        &self,
        tx: &Transaction<'_>,
        job: &JobCtx,
        stage: i32,
        what: &str,
    ) -> Result<Vec<i64>, StoreError> {
        let actual = tx
            .query_opt(sql::JOB_STAGE_STATE, &[&job.job_id])
            .await
            .ctx(|| format!("reading job {}", job.job_id))?
            .map(|r| {
                format!(
                    "{} stage {} attempt {}",
                    r.get::<_, String>(0),
                    r.get::<_, i32>(1),
                    r.get::<_, i32>(2)
                )
            })
            .unwrap_or_else(|| "missing".into());
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
        let stages: Vec<StageSummary> = tx
            .query(sql::STAGES_SUMMARY, &[&job.job_id])
            .await
            .ctx(|| format!("summarising stages of job {}", job.job_id))?
            .iter()
            .map(|r| StageSummary {
                stage: r.get(0),
                name: r.get(1),
                task_count: r.get::<_, i32>(2) as i64,
                completed: r.get(3),
                failed: r.get(4),
            })
            .collect();
        let def = self.registry().job(&job.job_type).cloned();
        let needs_results = def.as_ref().is_some_and(|d| d.finalize_needs_results());
        let last: Vec<PreviousResult> = if needs_results {
            tx.query(sql::STAGE_RESULTS_COMPLETED, &[&job.job_id, &stage])
                .await
                .ctx(|| format!("loading final results of job {}", job.job_id))?
                .into_iter()
                .map(|r| PreviousResult {
                    task_id: r.get(0),
                    task_index: r.get(1),
                    result: r.get(2),
                })
                .collect()
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
        let faults = self.faults();
        let outcome: Result<Value, String> = match &def {
            None => Err(format!("job type {} is not registered", job.job_type)),
            Some(def) => match std::panic::catch_unwind(AssertUnwindSafe(|| {
                if faults.hit(Fault::FinalizePanic) {
                    panic!("fault injection: finalize panicked");
                }
                if faults.hit(Fault::FinalizeError) {
                    return Err(crate::jobs::JobError::new(
                        "fault injection: finalize failed",
                    ));
                }
                def.finalize(&input)
            })) {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => Err(format!("finalize failed: {e}")),
                Err(p) => Err(format!("finalize panicked: {}", panic_text(&p))),
            },
        };
        drop(last);
        let fields = job.fields().stage(stage);
        let (status, result, error_details, events_out) = match outcome {
            Ok(result) => {
                // A finalize that reports some inputs failed (within the job's tolerance) ends
                // the job completed_with_errors, its result saying which.
                let with_errors = result.get("status").and_then(Value::as_str) == Some(WITH_ERRORS);
                let mut done = Event::job(
                    &job.job_id,
                    "job_completed",
                    if with_errors {
                        EventStatus::Warning
                    } else {
                        EventStatus::Success
                    },
                    cp::JOB_COMPLETED,
                )
                .stage(stage)
                .attempt(job.attempt);
                if with_errors {
                    done = done.data(json!({"status": WITH_ERRORS}));
                }
                (
                    if with_errors {
                        WITH_ERRORS
                    } else {
                        "completed"
                    },
                    result,
                    None,
                    vec![done],
                )
            }
            Err(err) => {
                let fallback = json!({
                    "status": "completed_with_errors",
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
                });
                cp::emit_at(
                    cp::Level::Error,
                    cp::FINALIZE_FALLBACK,
                    &fields,
                    Some(cp::ErrorFields {
                        class: Some("permanent"),
                        error_type: "FinalizeError",
                        message: &err,
                        chain: &err,
                    }),
                );
                (
                    "completed_with_errors",
                    fallback,
                    Some(err.clone()),
                    vec![
                        Event::job(
                            &job.job_id,
                            "finalize_failed",
                            EventStatus::Failure,
                            cp::FINALIZE_FALLBACK,
                        )
                        .stage(stage)
                        .attempt(job.attempt)
                        .error(Some("permanent"), "FinalizeError", &err),
                        Event::job(
                            &job.job_id,
                            "job_completed",
                            EventStatus::Warning,
                            cp::JOB_COMPLETED,
                        )
                        .stage(stage)
                        .attempt(job.attempt)
                        .data(json!({"status": "completed_with_errors"})),
                    ],
                )
            }
        };
        let done = tx
            .query_opt(
                sql::JOB_FINISH,
                &[
                    &job.job_id,
                    &stage,
                    &job.attempt,
                    &status,
                    &result,
                    &summary,
                    &error_details,
                ],
            )
            .await
            .ctx(|| format!("completing job {}", job.job_id))?;
        if done.is_none() {
            return self.stage_end_mismatch(tx, job, stage, "finalize").await;
        }
        self.finish_stage_row(tx, job, stage, "completed").await?;
        let mut all = vec![
            Event::job(
                &job.job_id,
                "stage_completed",
                EventStatus::Success,
                cp::STAGE_COMPLETED,
            )
            .stage(stage)
            .attempt(job.attempt)
            .data(summary),
        ];
        all.extend(events_out);
        events::write(tx, &all).await?;
        cp::emit(cp::STAGE_COMPLETED, &fields);
        cp::emit(cp::JOB_COMPLETED, &fields.extra("status", status));
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
        let before = tx
            .query_opt(sql::JOB_STAGE_STATE, &[&job.job_id])
            .await
            .ctx(|| format!("reading job {}", job.job_id))?;
        let mut closed = None;
        if let Some(r) = &before
            && matches!(r.get::<_, String>(0).as_str(), "queued" | "processing")
        {
            let s: i32 = r.get(1);
            tx.execute(sql::STAGE_FINISH, &[&job.job_id, &s, &"failed"])
                .await
                .ctx(|| format!("closing stage {s} of job {}", job.job_id))?;
            closed = Some(s);
        }
        let changed = tx
            .query_opt(
                sql::JOB_FAIL,
                &[&job.job_id, &reason, &json!({"failure": details})],
            )
            .await
            .ctx(|| format!("failing job {}", job.job_id))?;
        let mut fields = job.fields();
        if let Some(s) = stage {
            fields = fields.stage(s);
        }
        let Some(row) = changed else {
            let actual = tx
                .query_opt(sql::JOB_STAGE_STATE, &[&job.job_id])
                .await
                .ctx(|| format!("reading job {}", job.job_id))?
                .map(|r| r.get::<_, String>(0))
                .unwrap_or_else(|| "missing".into());
            cp::emit_warn(
                cp::STATE_MISMATCH,
                &fields
                    .extra("expected", "queued or processing")
                    .extra("actual", &actual)
                    .extra("attempted", "fail job"),
            );
            return Ok(Vec::new());
        };
        let job_stage: i32 = row.get(1);
        if closed != Some(job_stage) {
            // The job moved to another stage between the read and the update (rare).
            tx.execute(sql::STAGE_FINISH, &[&job.job_id, &job_stage, &"failed"])
                .await
                .ctx(|| format!("closing stage {job_stage} of job {}", job.job_id))?;
        }
        let cancelled = tx
            .execute(sql::TASKS_CANCEL_QUEUED, &[&job.job_id])
            .await
            .ctx(|| format!("cancelling queued tasks of job {}", job.job_id))?;
        events::write(
            tx,
            &[Event::job(
                &job.job_id,
                "job_failed",
                EventStatus::Failure,
                cp::JOB_FAILED,
            )
            .stage(stage.unwrap_or(job_stage))
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
