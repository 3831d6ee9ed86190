//! Fan-out: a chunk of a stage's tasks is inserted as queued and its task messages are written,
//! in the caller's transaction. A stage start (job_message.rs) and a retry of failed tasks
//! (retry_failed.rs) both queue tasks this way; each decides what a short insert means.

use serde_json::Value;

use super::Engine;
use super::ids::{JobId, TaskId};
use super::job_ctx::JobCtx;
use super::messages::TaskMessage;
use crate::store::{StoreError, Transaction, stages};

/// Tasks are inserted and queued in chunks so one statement never carries a whole 100k stage.
pub(super) const CHUNK: usize = 5_000;

/// The job and stage tasks are queued for.
#[derive(Debug, Clone, Copy)]
pub(super) struct FanOutJob<'a> {
    /// The job.
    pub job_id: &'a JobId,
    /// Its type.
    pub job_type: &'a str,
    /// The stage's task type.
    pub task_type: &'a str,
    /// The stage.
    pub stage: i32,
    /// The job attempt the tasks belong to.
    pub attempt: i32,
    /// The job's correlation id.
    pub correlation_id: Option<&'a str>,
    /// The job's trace context.
    pub traceparent: Option<&'a str>,
}

/// One task to queue.
#[derive(Debug, Clone)]
pub(super) struct NewTask<'a> {
    /// Its id.
    pub task_id: TaskId,
    /// Its position in the stage.
    pub seq: i32,
    /// Its parameters.
    pub parameters: &'a Value,
    /// Its fan-in counter shard.
    pub shard: i16,
}

/// What queueing a chunk did.
#[derive(Debug, PartialEq)]
pub(super) enum Chunk {
    /// Every task was inserted and its message written: outbox ids to publish after commit
    /// (`None`: the local queue took them directly).
    Queued(Option<Vec<i64>>),
    /// Only `inserted` of `len` tasks were inserted (the others' ids existed): no message was
    /// written.
    Short {
        /// Rows inserted.
        inserted: usize,
        /// Rows asked for.
        len: usize,
    },
}

impl<'a> FanOutJob<'a> {
    /// The tasks of `stage` of `job`, of type `task_type`.
    pub(super) fn of(job: &'a JobCtx, stage: i32, task_type: &'a str) -> Self {
        Self {
            job_id: &job.job_id,
            job_type: &job.job_type,
            task_type,
            stage,
            attempt: job.attempt,
            correlation_id: job.correlation_id.as_deref(),
            traceparent: job.traceparent.as_deref(),
        }
    }

    /// The task message of `t`, addressed to `queue`.
    fn message(&self, t: &NewTask<'_>, queue: &str) -> crate::transport::OutboundMessage {
        TaskMessage {
            task_id: t.task_id.to_string(),
            parent_job_id: self.job_id.to_string(),
            job_type: self.job_type.to_string(),
            task_type: self.task_type.to_string(),
            stage: self.stage,
            task_index: t.seq.to_string(),
            parameters: t.parameters.clone(),
            parent_task_id: None,
            retry_count: 0,
            timestamp: None,
            correlation_id: self.correlation_id.map(str::to_string),
            job_attempt: self.attempt,
        }
        .stamped()
        .to_outbound(queue, self.traceparent, None)
    }
}

impl Engine {
    /// Inserts `tasks` (one chunk) as queued and, when every one was inserted, writes their
    /// messages (local mode: straight into the queue table in this transaction).
    pub(super) async fn queue_chunk(
        &self,
        tx: &Transaction<'_>,
        job: &FanOutJob<'_>,
        tasks: &[NewTask<'_>],
    ) -> Result<Chunk, StoreError> {
        let ids: Vec<&str> = tasks.iter().map(|t| t.task_id.as_str()).collect();
        let seqs: Vec<i32> = tasks.iter().map(|t| t.seq).collect();
        let params: Vec<&Value> = tasks.iter().map(|t| t.parameters).collect();
        let shards: Vec<i16> = tasks.iter().map(|t| t.shard).collect();
        let batch = stages::TaskBatch {
            job_id: job.job_id,
            job_type: job.job_type,
            task_type: job.task_type,
            stage: job.stage,
            attempt: job.attempt,
            task_ids: &ids,
            seqs: &seqs,
            parameters: &params,
            shards: &shards,
        };
        let inserted = stages::insert_tasks(tx, &batch).await? as usize;
        if inserted != tasks.len() {
            return Ok(Chunk::Short {
                inserted,
                len: tasks.len(),
            });
        }
        let queue = &self.settings().queues.tasks;
        let msgs: Vec<_> = tasks.iter().map(|t| job.message(t, queue)).collect();
        Ok(Chunk::Queued(self.outbox().write_fan_out(tx, &msgs).await?))
    }
}
