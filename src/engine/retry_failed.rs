//! Retry of the failed tasks of a failed stage (`resubmit` with `from=failed_tasks`): a new job
//! attempt in which the stage's completed tasks keep their results and only its failed or
//! cancelled tasks run again.
//!
//! In the resubmit's transaction, with the job row locked: the tasks that did not complete move to
//! `app.task_archive` (keyed by the attempt they belonged to) and are inserted again, `queued`,
//! under the same task id for the new attempt (so a task's history spans attempts); the stage row
//! runs again with only them on its fan-in counter; the job goes straight to `processing` at that
//! stage and their task messages are written. When they complete the stage ends as usual, over
//! all its tasks, kept and re-run. A late message of the earlier attempt cannot claim the new row
//! (the claim is fenced by the job attempt) and its MessageId differs (see `TaskMessage::message_id`).

use serde_json::Value;

use super::Engine;
use super::control::ControlError;
use super::ids::JobId;
use super::messages::TaskMessage;
use crate::store::{QueryContext, StoreError, Transaction, sql};

/// Rows per insert statement (as for a stage's fan-out).
const CHUNK: usize = 5_000;

/// One task to run again.
pub(super) struct RetryTask {
    task_id: String,
    task_seq: i32,
    parameters: Value,
    shard: i16,
}

/// What the re-queue did.
pub(super) struct Requeued {
    /// Tasks queued again.
    pub retried: u64,
    /// Completed tasks of the stage whose results are kept.
    pub kept: u64,
    /// Outbox ids to publish after commit (`None`: local queue, wake it).
    pub outbox_ids: Option<Vec<i64>>,
}

/// The job the tasks belong to, as the resubmit read it.
pub(super) struct RetryJob<'a> {
    /// The job.
    pub job_id: &'a JobId,
    /// Its type.
    pub job_type: &'a str,
    /// The stage to run again.
    pub stage: i32,
    /// The new attempt.
    pub attempt: i32,
    /// Correlation id.
    pub correlation_id: Option<String>,
    /// The job's trace context.
    pub traceparent: Option<&'a str>,
}

impl Engine {
    /// The tasks of `stage` that did not complete, locked; refused when there are none or some
    /// are still running.
    pub(super) async fn tasks_to_retry(
        &self,
        tx: &Transaction<'_>,
        job_id: &JobId,
        stage: i32,
    ) -> Result<Vec<RetryTask>, ControlError> {
        let rows = tx
            .query(sql::STAGE_RETRY_TASKS, &[&job_id.as_str(), &stage])
            .await
            .ctx(|| format!("reading the unfinished tasks of stage {stage} of job {job_id}"))?;
        let refuse = |reason: String| ControlError::NothingToRetry {
            job_id: job_id.to_string(),
            stage,
            reason,
        };
        let running = rows
            .iter()
            .filter(|r| r.get::<_, String>(5) == "processing")
            .count();
        if running > 0 {
            return Err(refuse(format!(
                "{running} task(s) of stage {stage} are still running; retry once they have finished"
            )));
        }
        if rows.is_empty() {
            return Err(refuse(format!(
                "stage {stage} has no failed or cancelled task (the job stopped outside its tasks); \
                 resubmit with from=failed_stage to run the stage again"
            )));
        }
        Ok(rows
            .iter()
            .map(|r| RetryTask {
                task_id: r.get(0),
                task_seq: r.get(1),
                parameters: r.get(2),
                shard: r.get(3),
            })
            .collect())
    }

    /// Archives `tasks`, inserts them again as queued for `job.attempt`, re-opens the stage with
    /// only them on its counter and writes their messages. The job must already be `processing`
    /// at `job.stage` and `job.attempt` in `tx`.
    pub(super) async fn requeue_tasks(
        &self,
        tx: &Transaction<'_>,
        job: &RetryJob<'_>,
        tasks: &[RetryTask],
    ) -> Result<Requeued, StoreError> {
        let (job_id, stage, attempt) = (job.job_id.as_str(), job.stage, job.attempt);
        let ids: Vec<&str> = tasks.iter().map(|t| t.task_id.as_str()).collect();
        tx.execute(sql::TASKS_ARCHIVE_IDS, &[&job_id, &ids])
            .await
            .ctx(|| format!("archiving {} failed tasks of job {job_id}", ids.len()))?;
        let mut shard_sizes: std::collections::BTreeMap<i16, i32> = Default::default();
        for t in tasks {
            *shard_sizes.entry(t.shard).or_default() += 1;
        }
        let (shards, counts): (Vec<i16>, Vec<i32>) = shard_sizes.into_iter().unzip();
        let stage_row = tx
            .query_opt(
                sql::STAGE_REOPEN,
                &[&job_id, &stage, &shards, &counts, &attempt],
            )
            .await
            .ctx(|| format!("re-opening stage {stage} of job {job_id}"))?
            .ok_or_else(|| {
                StoreError::Config(format!("stage {stage} of job {job_id} has no stage row"))
            })?;
        let task_type: String = stage_row.get(1);
        let task_count: i32 = stage_row.get(2);
        let insert = tx
            .prepare_cached(sql::TASKS_INSERT_BATCH)
            .await
            .ctx(|| "preparing task insert".into())?;
        let mut outbox_ids: Option<Vec<i64>> = None;
        for chunk in tasks.chunks(CHUNK) {
            let ids: Vec<&str> = chunk.iter().map(|t| t.task_id.as_str()).collect();
            let seqs: Vec<i32> = chunk.iter().map(|t| t.task_seq).collect();
            let params: Vec<&Value> = chunk.iter().map(|t| &t.parameters).collect();
            let shard_of: Vec<i16> = chunk.iter().map(|t| t.shard).collect();
            let inserted = tx
                .execute(
                    &insert,
                    &[
                        &job_id,
                        &job.job_type,
                        &task_type,
                        &stage,
                        &attempt,
                        &ids,
                        &seqs,
                        &params,
                        &shard_of,
                    ],
                )
                .await
                .ctx(|| format!("re-queueing {} tasks of job {job_id}", chunk.len()))?;
            if inserted as usize != chunk.len() {
                return Err(StoreError::Config(format!(
                    "re-queueing tasks of stage {stage} of job {job_id}: {} of {} rows were not inserted",
                    chunk.len() - inserted as usize,
                    chunk.len()
                )));
            }
            let msgs: Vec<_> = chunk
                .iter()
                .map(|t| {
                    TaskMessage {
                        task_id: t.task_id.clone(),
                        parent_job_id: job_id.to_string(),
                        job_type: job.job_type.to_string(),
                        task_type: task_type.clone(),
                        stage,
                        task_index: t.task_seq.to_string(),
                        parameters: t.parameters.clone(),
                        parent_task_id: None,
                        retry_count: 0,
                        timestamp: None,
                        correlation_id: job.correlation_id.clone(),
                        job_attempt: attempt,
                    }
                    .stamped()
                    .to_outbound(
                        &self.settings().queues.tasks,
                        job.traceparent,
                        None,
                    )
                })
                .collect();
            if let Some(ids) = self.outbox().write_fan_out(tx, &msgs).await? {
                outbox_ids.get_or_insert_with(Vec::new).extend(ids);
            }
        }
        let retried = tasks.len() as u64;
        Ok(Requeued {
            retried,
            kept: (task_count as u64).saturating_sub(retried),
            outbox_ids,
        })
    }
}
