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
//!
//! [`refuse_retry`] decides (without I/O) whether the stage's unfinished tasks can be retried;
//! [`Engine::requeue_tasks`] applies the retry.

use std::collections::BTreeMap;

use super::Engine;
use super::fan_out::{CHUNK, Chunk, FanOutJob, NewTask};
use super::job_ctx::JobCtx;
use crate::model::TaskStatus;
use crate::store::stages::{self, RetryCandidate};
use crate::store::{StoreError, Transaction, task_archive};

/// What the re-queue did.
pub(super) struct Requeued {
    /// Tasks queued again.
    pub retried: u64,
    /// Completed tasks of the stage whose results are kept.
    pub kept: u64,
    /// Outbox ids to publish after commit (`None`: local queue, wake it).
    pub outbox_ids: Option<Vec<i64>>,
}

/// Why the unfinished `tasks` of `stage` cannot be retried (`None`: they can): some are still
/// running, or there are none.
pub(super) fn refuse_retry(stage: i32, tasks: &[RetryCandidate]) -> Option<String> {
    let running = tasks
        .iter()
        .filter(|t| t.status == TaskStatus::Processing)
        .count();
    if running > 0 {
        return Some(format!(
            "{running} task(s) of stage {stage} are still running; retry once they have finished"
        ));
    }
    if tasks.is_empty() {
        return Some(format!(
            "stage {stage} has no failed or cancelled task (the job stopped outside its tasks); \
             resubmit with from=failed_stage to run the stage again"
        ));
    }
    None
}

/// The fan-in counter of a re-run: how many of `tasks` each shard holds, by shard.
fn shard_sizes(tasks: &[RetryCandidate]) -> (Vec<i16>, Vec<i32>) {
    let mut sizes: BTreeMap<i16, i32> = BTreeMap::new();
    for t in tasks {
        *sizes.entry(t.shard).or_default() += 1;
    }
    sizes.into_iter().unzip()
}

impl Engine {
    /// Archives `tasks`, inserts them again as queued for `job.attempt`, re-opens `stage` with
    /// only them on its counter and writes their messages. The job must already be `processing`
    /// at `stage` and `job.attempt` in `tx`.
    pub(super) async fn requeue_tasks(
        &self,
        tx: &Transaction<'_>,
        job: &JobCtx,
        stage: i32,
        tasks: &[RetryCandidate],
    ) -> Result<Requeued, StoreError> {
        let (job_id, attempt) = (&job.job_id, job.attempt);
        let ids: Vec<&str> = tasks.iter().map(|t| t.task_id.as_str()).collect();
        task_archive::archive_ids(tx, job_id, &ids).await?;
        let (shards, counts) = shard_sizes(tasks);
        let stage_row = stages::reopen(tx, job_id, stage, &shards, &counts, attempt)
            .await?
            .ok_or_else(|| {
                StoreError::Config(format!("stage {stage} of job {job_id} has no stage row"))
            })?;
        let fan = FanOutJob::of(job, stage, &stage_row.task_type);
        let mut outbox_ids: Option<Vec<i64>> = None;
        for chunk in tasks.chunks(CHUNK) {
            let again: Vec<NewTask> = chunk
                .iter()
                .map(|t| NewTask {
                    task_id: t.task_id.clone(),
                    seq: t.task_seq,
                    parameters: &t.parameters,
                    shard: t.shard,
                })
                .collect();
            match self.queue_chunk(tx, &fan, &again).await? {
                Chunk::Queued(None) => {}
                Chunk::Queued(Some(ids)) => outbox_ids.get_or_insert_with(Vec::new).extend(ids),
                Chunk::Short { inserted, len } => {
                    return Err(StoreError::Config(format!(
                        "re-queueing tasks of stage {stage} of job {job_id}: {} of {len} rows were not inserted",
                        len - inserted
                    )));
                }
            }
        }
        let retried = tasks.len() as u64;
        Ok(Requeued {
            retried,
            kept: (stage_row.task_count as u64).saturating_sub(retried),
            outbox_ids,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(seq: i32, shard: i16, status: TaskStatus) -> RetryCandidate {
        RetryCandidate {
            task_id: crate::model::TaskId::parse(&format!("{seq:064x}")).expect("a task id"),
            task_seq: seq,
            parameters: json!({}),
            shard,
            status,
        }
    }

    #[test]
    fn failed_tasks_are_retried_unless_some_still_run_or_none_failed() {
        use TaskStatus::*;
        assert_eq!(
            refuse_retry(2, &[task(0, 0, Failed), task(1, 0, Cancelled)]),
            None
        );
        for (tasks, says) in [
            (
                vec![task(0, 0, Failed), task(1, 0, Processing)],
                "1 task(s) of stage 2 are still running",
            ),
            (vec![], "stage 2 has no failed or cancelled task"),
        ] {
            let why = refuse_retry(2, &tasks).expect("refused");
            assert!(why.contains(says), "{why}");
        }
    }

    #[test]
    fn a_rerun_counts_its_tasks_on_the_shards_they_had() {
        use TaskStatus::Failed;
        let tasks = [task(0, 2, Failed), task(1, 0, Failed), task(2, 2, Failed)];
        assert_eq!(shard_sizes(&tasks), (vec![0, 2], vec![1, 2]));
        assert_eq!(shard_sizes(&[]), (vec![], vec![]));
    }
}
