//! Grouped completions: successful task completions that arrive at the same time commit together.
//!
//! Why: with durable settings every commit waits for a WAL flush, and a stage's completions all
//! decrement the same few counter rows, so one transaction per completion caps a stage well below
//! what the database can do (docs/performance.md). The emulator and the Functions host deliver
//! up to maxConcurrentCalls messages at once, so several completions are usually waiting together.
//!
//! How: `complete_task` hands its completion to this engine's grouper and waits for the answer.
//! The grouper takes everything that is waiting (up to [`MAX_GROUP`]) and first runs
//! `task_complete_fast.sql`: ONE statement outside a transaction block (one round trip, one
//! commit) that ends each task (guarded by status and attempt), writes its event and subtracts the
//! counter decrements summed per shard, but only if no shard reaches zero; otherwise it changes
//! nothing. Almost every group takes that path. A group that would bring a shard to zero runs
//! `task_complete_batch.sql` in a transaction instead, and ends every stage that this transaction
//! saw reach zero before it commits, exactly as a single completion would. Completions are spread over [`LANES`] lanes by counter shard, so
//! groups of different lanes never share a counter row; each group also locks its counter and
//! stage rows in key order, so groups (of this or another process) never deadlock. If the group's transaction fails, every completion of
//! the group is retried on its own through [`Engine::end_task`], so one bad row cannot fail the
//! others, and an error reaches only the invocation it belongs to.
//!
//! Failures, retries and malformed/poison endings are rare and keep the one-task path.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Weak};

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::ids::TaskId;
use super::job_ctx::JobCtx;
use super::outcome;
use super::{Engine, Inner};
use crate::model::{JobId, JobStatus};
use crate::store::tasks::{self, Completions};
use crate::store::{self, QueryContext, StoreError};

/// Most completions committed by one transaction.
pub(super) const MAX_GROUP: usize = 64;

/// Lanes: groups committing at the same time. A completion goes to the lane of its counter shard
/// (`shard % LANES`), so groups of different lanes never touch the same counter row and never
/// wait for each other's commit; within a lane, one group at a time, and completions that arrive
/// while it commits form the next group.
pub(super) const LANES: usize = 4;

/// One successful attempt to complete: what the grouped statements write for it.
pub(crate) struct Completion {
    /// Task id.
    pub task_id: TaskId,
    /// The attempt that completed (guard).
    pub retry_count: i32,
    /// The claim's fencing token (guard; `None`: any claim of the attempt).
    pub claim_token: Option<i32>,
    /// Handler result (already cleaned of NUL characters).
    pub result: Value,
    /// Event details of `task_completed`.
    pub event_data: Value,
    /// The invocation's span: what the group does for this task (ending its stage, finalizing
    /// the job) is recorded in the task's trace, not in the lane's.
    pub span: tracing::Span,
}

/// What a completion answers: whether it ended the task, and outbox ids to publish.
type Answer = Result<(bool, Vec<i64>), StoreError>;

/// One completion waiting for its group, and where its answer goes.
pub(crate) struct Pending {
    /// The completion.
    pub c: Completion,
    /// Whether this call ended the task, and outbox ids to publish.
    pub reply: oneshot::Sender<Answer>,
}

impl Pending {
    /// A completion to hand to a group, and the receiver of its answer.
    fn new(c: Completion) -> (Self, oneshot::Receiver<Answer>) {
        let (reply, answer) = oneshot::channel();
        (Pending { c, reply }, answer)
    }
}

/// The sending sides kept by the engine, one per lane.
pub(crate) type Grouper = Vec<mpsc::UnboundedSender<Pending>>;

/// Starts the lanes of an engine. They hold the engine weakly and stop when it is gone.
pub(crate) fn start(inner: Weak<Inner>) -> Grouper {
    (0..LANES)
        .map(|_| {
            let (tx, mut rx) = mpsc::unbounded_channel::<Pending>();
            let inner = inner.clone();
            tokio::spawn(async move {
                let mut group = Vec::with_capacity(MAX_GROUP);
                while rx.recv_many(&mut group, MAX_GROUP).await > 0 {
                    let Some(inner) = inner.upgrade() else {
                        break;
                    };
                    let engine = Engine { inner };
                    engine.commit_group(std::mem::take(&mut group)).await;
                }
            });
            tx
        })
        .collect()
}

impl Engine {
    /// Completes a task through the grouper (see the module doc). Same answer as
    /// [`Engine::end_task`] with a `completed` ending.
    pub(crate) async fn complete_grouped(
        &self,
        task_id: &TaskId,
        retry_count: i32,
        claim_token: Option<i32>,
        counter_shard: i16,
        result: Value,
        event_data: Value,
    ) -> Result<(bool, Vec<i64>), StoreError> {
        let (pending, answer) = Pending::new(Completion {
            task_id: task_id.clone(),
            retry_count,
            claim_token,
            result,
            event_data,
            span: tracing::Span::current(),
        });
        let lanes = self.grouper();
        let lane = &lanes[counter_shard.unsigned_abs() as usize % lanes.len()];
        let pending = match lane.send(pending) {
            Ok(()) => {
                return match answer.await {
                    Ok(r) => r,
                    // The grouper stopped (the engine is shutting down) before answering.
                    Err(_) => Err(StoreError::Config(format!(
                        "completion of task {task_id} was not recorded: the engine is stopping"
                    ))),
                };
            }
            Err(mpsc::error::SendError(p)) => p,
        };
        self.end_alone(pending.c).await
    }

    /// Completes a batch's successful attempts together, without the lanes: one statement in
    /// the common case (`commit_group`). One answer per completion, in order, as
    /// [`Engine::complete_grouped`] gives it.
    pub(super) async fn complete_together(
        &self,
        items: Vec<Completion>,
    ) -> Vec<Result<(bool, Vec<i64>), StoreError>> {
        let (group, answers): (Vec<Pending>, Vec<_>) = items.into_iter().map(Pending::new).unzip();
        if !group.is_empty() {
            self.commit_group(group).await;
        }
        let mut out = Vec::with_capacity(answers.len());
        for a in answers {
            out.push(a.await.unwrap_or_else(|_| {
                Err(StoreError::Shared(
                    "a completion of the batch was not answered (the engine is stopping)".into(),
                ))
            }));
        }
        out
    }

    fn grouper(&self) -> &Grouper {
        self.inner
            .completions
            .get_or_init(|| start(Arc::downgrade(&self.inner)))
    }

    /// One completion through the one-task path ([`Engine::end_task`]), in its span.
    async fn end_alone(&self, c: Completion) -> Result<(bool, Vec<i64>), StoreError> {
        let mut ending = outcome::completed(c.result, c.event_data);
        ending.claim_token = c.claim_token;
        self.end_task(&c.task_id, c.retry_count, ending, None)
            .instrument(c.span)
            .await
    }

    /// One completion through the one-task path, answered.
    async fn complete_alone(&self, p: Pending) {
        let r = self.end_alone(p.c).await;
        let _ = p.reply.send(r);
    }

    /// Commits one group: in one statement when it ends no counter shard (almost always), else in
    /// a transaction that also ends the stage; on failure, each completion alone.
    async fn commit_group(&self, mut group: Vec<Pending>) {
        // Task rows are locked in key order by every multi-row statement (claims too).
        group.sort_by(|a, b| a.c.task_id.cmp(&b.c.task_id));
        match self.try_fast(&group).await {
            Ok(Some(answers)) => {
                for (p, a) in group.into_iter().zip(answers) {
                    let _ = p.reply.send(Ok((a, Vec::new())));
                }
                return;
            }
            // A shard reaches zero with this group: the transactional path below.
            Ok(None) => {}
            // Nothing was applied (one statement); the transactional path tries again.
            Err(e) => tracing::warn!(
                group_size = group.len(),
                first_task = %group[0].c.task_id,
                error = %e,
                "one-statement completion failed; completing the group in a transaction"
            ),
        }
        if group.len() == 1 {
            let p = group.into_iter().next().expect("one");
            return self.complete_alone(p).await;
        }
        match self.try_group(&group).await {
            Ok(answers) => {
                for (p, a) in group.into_iter().zip(answers) {
                    let _ = p.reply.send(Ok(a));
                }
            }
            Err(e) => {
                // Nothing of the group was recorded (its transaction rolled back): each completion
                // is retried alone, so only the one that cannot be recorded reports an error.
                tracing::warn!(
                    group_size = group.len(),
                    first_task = %group[0].c.task_id,
                    error = %e,
                    "grouped completion failed; completing its tasks one by one"
                );
                for p in group {
                    self.complete_alone(p).await;
                }
            }
        }
    }

    /// The group as one statement outside a transaction block (`task_complete_fast.sql`): one
    /// round trip and one commit. `None` when a counter shard would reach zero (nothing changed):
    /// that completion must end the shard, and maybe the stage, in a transaction. Otherwise
    /// whether each completion ended its task, in order.
    async fn try_fast(&self, group: &[Pending]) -> Result<Option<Vec<bool>>, StoreError> {
        let client = store::client(self.pool(), "completing tasks").await?;
        let Some(ended) = tasks::complete_fast(&client, &columns(group)).await? else {
            return Ok(None);
        };
        Ok(Some(first_copies(group, ended.into_iter().collect())))
    }

    /// The group's transaction. Returns one answer per completion, in order.
    async fn try_group(&self, group: &[Pending]) -> Result<Vec<(bool, Vec<i64>)>, StoreError> {
        let mut client = store::client(self.pool(), "completing a group of tasks").await?;
        let tx = client
            .transaction()
            .await
            .ctx(|| format!("starting a group of {} completions", group.len()))?;
        let rows = tasks::complete_batch(&tx, &columns(group)).await?;
        // Which tasks this transaction ended, and the stages it saw reach zero.
        let mut ended = BTreeSet::new();
        let mut finished: Vec<(JobId, i32, TaskId)> = Vec::new();
        for r in rows {
            if r.shards_left == Some(0)
                && !finished
                    .iter()
                    .any(|(j, s, _)| *j == r.job_id && *s == r.stage)
            {
                finished.push((r.job_id, r.stage, r.task_id.clone()));
            }
            ended.insert(r.task_id);
        }
        let mut outbox: BTreeMap<TaskId, Vec<i64>> = BTreeMap::new();
        for (job_id, stage, last_task) in finished {
            // As in end_task: a stage whose job stopped processing it is recorded, not advanced.
            if let Some((job, status, job_stage)) = JobCtx::load(&tx, &job_id).await?
                && status == JobStatus::Processing
                && job_stage == stage
            {
                let policy = self.stage_policy(&job.job_type, stage);
                let span = group
                    .iter()
                    .find(|p| p.c.task_id == last_task)
                    .map(|p| p.c.span.clone())
                    .unwrap_or_else(tracing::Span::current);
                let ids = self
                    .end_stage(&tx, &job, stage, policy)
                    .instrument(span)
                    .await?;
                outbox.entry(last_task).or_default().extend(ids);
            }
        }
        tx.commit()
            .await
            .ctx(|| format!("committing a group of {} completions", group.len()))?;
        Ok(group
            .iter()
            .zip(first_copies(group, ended))
            .map(|(p, was_ended)| {
                let ids = if was_ended {
                    outbox.remove(&p.c.task_id).unwrap_or_default()
                } else {
                    Vec::new()
                };
                (was_ended, ids)
            })
            .collect())
    }
}

/// Whether each completion of the group ended its task, given the tasks the statement ended. A
/// task listed twice (two copies of one attempt) was ended once: its first copy says so.
fn first_copies(group: &[Pending], mut ended: BTreeSet<TaskId>) -> Vec<bool> {
    group.iter().map(|p| ended.remove(&p.c.task_id)).collect()
}

/// The group as the statements' parallel arrays: task ids, attempts, results, event data, claims.
fn columns(group: &[Pending]) -> Completions<'_> {
    Completions {
        task_ids: group.iter().map(|p| &p.c.task_id).collect(),
        retry_counts: group.iter().map(|p| p.c.retry_count).collect(),
        results: group.iter().map(|p| &p.c.result).collect(),
        event_data: group.iter().map(|p| &p.c.event_data).collect(),
        claim_tokens: group.iter().map(|p| p.c.claim_token).collect(),
    }
}
