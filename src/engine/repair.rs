//! Entry points the janitor uses to repair state with the engine's own transitions.

use serde_json::json;

use super::ids::JobId;
use super::job_ctx::JobCtx;
use super::task_message::Claimed;
use super::{Engine, EngineError, Handled};
use crate::jobs::{TaskContext, TaskError};
use crate::model::JobStatus;
use crate::store::{self, QueryContext, StoreError, Transaction, jobs, stages};

/// Reads a job inside a transaction.
pub(crate) async fn load_job_ctx(
    tx: &Transaction<'_>,
    job_id: &str,
) -> Result<Option<(JobCtx, crate::model::JobStatus, i32)>, StoreError> {
    JobCtx::load_named(tx, job_id).await
}

impl Engine {
    /// Treats the current attempt of a processing task (its claim `claim_token`; `None`: any) as
    /// failed with `err` (retry or fail).
    pub(crate) async fn fail_attempt(
        &self,
        ctx: TaskContext,
        retry_count: i32,
        claim_token: Option<i32>,
        err: TaskError,
    ) -> Result<Handled, EngineError> {
        let fields = crate::telemetry::checkpoints::Fields::job(&ctx.job_id)
            .task(&ctx.task_id)
            .stage(ctx.stage);
        let claimed = Claimed {
            ctx,
            retry_count,
            claim_token,
        };
        self.task_failed(&claimed, err, 0, &fields).await
    }

    /// Ends a stage whose tasks are all terminal but whose end was never applied. Returns false
    /// when the job had already moved on.
    pub(crate) async fn repair_stalled_stage(
        &self,
        job_id: &str,
        stage: i32,
    ) -> Result<bool, StoreError> {
        let mut client = store::client(self.pool(), "repairing a stalled stage").await?;
        let tx = client
            .transaction()
            .await
            .ctx(|| format!("repairing stage {stage} of job {job_id}"))?;
        // Text that is no job id names no job (the table's CHECK admits only job ids).
        let Ok(id) = JobId::parse(job_id) else {
            return Ok(false);
        };
        let Some((status, current)) = jobs::lock(&tx, &id).await? else {
            return Ok(false);
        };
        let live = stages::live_tasks(&tx, &id, stage).await?;
        if !stage_is_stalled(status, current, stage, live) {
            return Ok(false);
        }
        let Some((job, _, _)) = JobCtx::load(&tx, &id).await? else {
            return Ok(false);
        };
        let policy = self.stage_policy(&job.job_type, stage);
        let ids = self.end_stage(&tx, &job, stage, policy).await?;
        tx.commit()
            .await
            .ctx(|| format!("committing repair of stage {stage} of job {job_id}"))?;
        drop(client); // publishing takes a connection of its own: never hold one while waiting
        self.publish(&ids).await;
        Ok(true)
    }

    /// Fails a job inside `tx` (janitor decisions).
    pub(crate) async fn fail_job(
        &self,
        tx: &Transaction<'_>,
        job: &JobCtx,
        stage: i32,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.fail_job_in_tx(tx, job, Some(stage), reason, json!({"reason": "janitor"}))
            .await
            .map(|_| ())
    }
}

/// Whether `stage` of a job that is `status` at stage `current`, with `live` tasks still queued or
/// processing, is stalled: its end was never applied (false: the job moved on, or work remains).
fn stage_is_stalled(status: JobStatus, current: i32, stage: i32, live: i64) -> bool {
    status == JobStatus::Processing && current == stage && live == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_processing_stage_with_no_live_task_left_is_stalled() {
        use JobStatus::*;
        for (status, current, live, stalled) in [
            (Processing, 2, 0, true),
            (Processing, 2, 1, false),
            (Processing, 3, 0, false),
            (Queued, 2, 0, false),
            (Failed, 2, 0, false),
            (Cancelled, 2, 0, false),
            (Completed, 2, 0, false),
        ] {
            assert_eq!(
                stage_is_stalled(status, current, 2, live),
                stalled,
                "{status} at stage {current} with {live} live task(s)"
            );
        }
    }
}
