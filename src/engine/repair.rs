//! Entry points the janitor uses to repair state with the engine's own transitions.

use serde_json::json;

use super::job_ctx::JobCtx;
use super::task_message::Claimed;
use super::{Engine, EngineError, Handled};
use crate::jobs::{StagePolicy, TaskContext, TaskError};
use crate::store::{self, QueryContext, StoreError, Transaction, sql};

/// Reads a job inside a transaction.
pub(crate) async fn load_job_ctx(
    tx: &Transaction<'_>,
    job_id: &str,
) -> Result<Option<(JobCtx, crate::model::JobStatus, i32)>, StoreError> {
    JobCtx::load_named(tx, job_id).await
}

impl Engine {
    /// Treats the current attempt of a processing task as failed with `err` (retry or fail).
    pub(crate) async fn fail_attempt(
        &self,
        ctx: TaskContext,
        retry_count: i32,
        err: TaskError,
    ) -> Result<Handled, EngineError> {
        let fields = crate::telemetry::checkpoints::Fields::job(&ctx.job_id)
            .task(&ctx.task_id)
            .stage(ctx.stage);
        let claimed = Claimed { ctx, retry_count };
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
        let locked = tx
            .query_opt(sql::JOB_LOCK, &[&job_id])
            .await
            .ctx(|| format!("locking job {job_id}"))?;
        let Some(row) = locked else { return Ok(false) };
        let (status, current): (String, i32) = (row.get(0), row.get(1));
        let live: i64 = tx
            .query_one(
                "SELECT count(*) FROM app.tasks WHERE parent_job_id = $1 AND stage = $2 AND status IN ('queued', 'processing')",
                &[&job_id, &stage],
            )
            .await
            .ctx(|| format!("counting live tasks of job {job_id}"))?
            .get(0);
        if status != "processing" || current != stage || live > 0 {
            return Ok(false);
        }
        let Some((job, _, _)) = JobCtx::load_named(&tx, job_id).await? else {
            return Ok(false);
        };
        let policy = self
            .registry()
            .job(&job.job_type)
            .and_then(|d| d.stages().get((stage - 1) as usize).map(|s| s.policy))
            .unwrap_or(StagePolicy::FailFast);
        let ids = self.end_stage(&tx, &job, stage, policy).await?;
        tx.commit()
            .await
            .ctx(|| format!("committing repair of stage {stage} of job {job_id}"))?;
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
