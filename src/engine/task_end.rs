//! Ending a task (completed or failed) in one transaction with its event and fan-in; when it is
//! the last of its stage the stage ends too, and a failure may fail the job ([`after_end`]).

use serde_json::json;

use super::Engine;
use super::ids::TaskId;
use super::job_ctx::JobCtx;
use super::outcome::Ending;
use crate::jobs::StagePolicy;
use crate::model::{JobStatus, TaskStatus};
use crate::store::tasks::{self, EndedTask};
use crate::store::{self, Guarded, QueryContext, StoreError, Transaction};

/// What the end of a task does to its job, once the job is known to be processing the task's
/// stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum AfterEnd {
    /// Nothing more: the stage goes on.
    Nothing,
    /// The end was the stage's last: the stage ends (advance, finalize or fail, by its counts).
    EndStage,
    /// The failure fails the job: the stage is fail-fast, or the job's failures went past their
    /// budget (`over_budget`, the reason).
    FailJob {
        /// Why the budget is exceeded (`None`: fail-fast).
        over_budget: Option<String>,
    },
}

/// Decides [`AfterEnd`] for an end that `failed` (or completed) and was (`stage_done`) or was
/// not the last of its stage, under the stage's `policy` and the job's failure budget.
pub(super) fn after_end(
    failed: bool,
    stage_done: bool,
    policy: StagePolicy,
    over_budget: Option<String>,
) -> AfterEnd {
    if failed && (policy == StagePolicy::FailFast || over_budget.is_some()) {
        AfterEnd::FailJob { over_budget }
    } else if stage_done {
        AfterEnd::EndStage
    } else {
        AfterEnd::Nothing
    }
}

impl Engine {
    /// Ends a task (completed or failed) in one transaction with its event and fan-in; when it is
    /// the last of its stage, ends the stage too. A failed task under fail_fast fails the job.
    /// Returns whether the task was ended by this call, and the outbox ids to publish.
    pub(crate) async fn end_task(
        &self,
        task_id: &TaskId,
        retry_count: i32,
        e: Ending<'_>,
        who: Option<&str>,
    ) -> Result<(bool, Vec<i64>), StoreError> {
        // A transaction the server aborted to break a deadlock is run again (it changed nothing).
        const CONFLICT_ATTEMPTS: u32 = 3;
        let mut attempt = 1;
        loop {
            match self
                .end_task_once(task_id, retry_count, e.clone(), who)
                .await
            {
                Err(err) if err.is_conflict() && attempt < CONFLICT_ATTEMPTS => {
                    tracing::warn!(
                        task_id = %task_id,
                        attempt = retry_count + 1,
                        error = %err,
                        "ending task {task_id} conflicted with another transaction; running it again"
                    );
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    async fn end_task_once(
        &self,
        task_id: &TaskId,
        retry_count: i32,
        e: Ending<'_>,
        who: Option<&str>,
    ) -> Result<(bool, Vec<i64>), StoreError> {
        let mut client = store::client(self.pool(), "ending a task").await?;
        let tx = client
            .transaction()
            .await
            .ctx(|| format!("starting completion of task {task_id}"))?;
        let (ended, ids) = self
            .end_task_in_tx(&tx, task_id, retry_count, e, who)
            .await?;
        if !ended {
            return Ok((false, Vec::new()));
        }
        tx.commit()
            .await
            .ctx(|| format!("committing the end of task {task_id}"))?;
        Ok((true, ids))
    }

    /// [`Engine::end_task`] inside a caller's transaction.
    pub(crate) async fn end_task_in_tx(
        &self,
        tx: &Transaction<'_>,
        task_id: &TaskId,
        retry_count: i32,
        e: Ending<'_>,
        who: Option<&str>,
    ) -> Result<(bool, Vec<i64>), StoreError> {
        let ended = match tasks::end(tx, task_id, retry_count, &e).await? {
            Guarded::Applied(t) => t,
            Guarded::NotApplied(()) => return Ok((false, Vec::new())),
        };
        let ids = self.after_task_end(tx, task_id, &ended, &e, who).await?;
        Ok((true, ids))
    }

    /// Loads the job of an ended task (when the end can matter to it), decides [`after_end`] and
    /// applies it. Returns outbox ids.
    async fn after_task_end(
        &self,
        tx: &Transaction<'_>,
        task_id: &TaskId,
        ended: &EndedTask,
        e: &Ending<'_>,
        who: Option<&str>,
    ) -> Result<Vec<i64>, StoreError> {
        let failed = e.status == TaskStatus::Failed;
        let stage_done = ended.shards_left == Some(0);
        let stage = ended.stage;
        if !failed && !stage_done {
            return Ok(Vec::new());
        }
        // A task that ends after its job stopped processing this stage (failed, cancelled) is
        // recorded, but it neither fails nor advances the job.
        let job = match JobCtx::load(tx, &ended.job_id).await? {
            Some((job, JobStatus::Processing, job_stage)) if job_stage == stage => job,
            _ => return Ok(Vec::new()),
        };
        let policy = self.stage_policy(&job.job_type, stage);
        let over_budget = if failed {
            self.over_failure_budget(tx, &job, stage, policy).await?
        } else {
            None
        };
        match after_end(failed, stage_done, policy, over_budget) {
            AfterEnd::Nothing => Ok(Vec::new()),
            AfterEnd::EndStage => self.end_stage(tx, &job, stage, policy).await,
            AfterEnd::FailJob { over_budget } => {
                let reason = over_budget.unwrap_or_else(|| {
                    format!(
                        "{} failed: {}",
                        who.unwrap_or(task_id.as_str()),
                        e.error_details.as_deref().unwrap_or("(no details)")
                    )
                });
                let details = json!({"task_id": task_id, "error_class": e.error_class, "error_type": e.error_type});
                self.fail_job_in_tx(tx, &job, Some(stage), &reason, details)
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_fails_the_job_under_fail_fast_or_past_its_budget_and_a_last_end_ends_the_stage() {
        use AfterEnd::*;
        let budget = StagePolicy::MaxFailures {
            param: "max_failures",
        };
        let over = || Some("3 failed tasks, 2 allowed".to_string());
        let cases = [
            // (failed, stage_done, policy, over_budget) -> outcome
            (
                true,
                false,
                StagePolicy::FailFast,
                None,
                FailJob { over_budget: None },
            ),
            (
                true,
                true,
                StagePolicy::FailFast,
                None,
                FailJob { over_budget: None },
            ),
            (true, false, StagePolicy::TolerateFailures, None, Nothing),
            (true, true, StagePolicy::TolerateFailures, None, EndStage),
            (true, false, budget, None, Nothing),
            (true, true, budget, None, EndStage),
            (
                true,
                true,
                budget,
                over(),
                FailJob {
                    over_budget: over(),
                },
            ),
            (false, false, StagePolicy::FailFast, None, Nothing),
            (false, true, StagePolicy::FailFast, None, EndStage),
            (
                false,
                true,
                StagePolicy::MinSuccess { k: 1 },
                None,
                EndStage,
            ),
        ];
        for (failed, done, policy, over_budget, want) in cases {
            assert_eq!(
                after_end(failed, done, policy, over_budget.clone()),
                want,
                "{failed} {done} {policy:?} {over_budget:?}"
            );
        }
    }
}
