//! The tasks aggregate (`app.tasks`): one function per statement, typed rows.
//!
//! The guarded transitions (claim, re-queue for a retry, release, end, cancel) answer
//! [`Guarded`]; a claim or a re-queue that matched nothing also reads where the task actually is
//! (`task_state.sql`, on the same connection or transaction), since that is what its caller
//! decides on.

use deadpool_postgres::GenericClient;
use serde_json::Value;
use tokio_postgres::Row;

use super::{Guarded, QueryContext, StoreError, Traced, sql};
use crate::model::{JobId, JobStatus, TaskId, TaskStatus};

/// A task attempt as its handler sees it: what `task_claim.sql` claims and what
/// `janitor_expired_leases.sql` finds.
#[derive(Debug, Clone)]
pub struct TaskAttempt {
    /// The task.
    pub task_id: TaskId,
    /// Its job.
    pub job_id: JobId,
    /// Its job's type.
    pub job_type: String,
    /// Its handler's name.
    pub task_type: String,
    /// Its stage.
    pub stage: i32,
    /// Its position in the stage.
    pub task_index: i32,
    /// Its parameters.
    pub parameters: Value,
    /// The attempt (0 = first run).
    pub retry_count: i32,
    /// The job's correlation id.
    pub correlation_id: Option<String>,
}

impl TaskAttempt {
    /// Reads the attempt's columns (`task_id`, `parent_job_id`, `job_type`, `task_type`, `stage`,
    /// `task_seq`, `parameters`, `retry_count`, `correlation_id`) of `r`.
    pub(super) fn from_row(
        r: &Row,
        what: &(dyn Fn() -> String + Sync),
    ) -> Result<Self, StoreError> {
        Ok(TaskAttempt {
            task_id: r.try_get("task_id").ctx(what)?,
            job_id: r.try_get("parent_job_id").ctx(what)?,
            job_type: r.get("job_type"),
            task_type: r.get("task_type"),
            stage: r.get("stage"),
            task_index: r.get("task_seq"),
            parameters: r.get("parameters"),
            retry_count: r.get("retry_count"),
            correlation_id: r.get("correlation_id"),
        })
    }
}

/// A task claimed for one attempt (`task_claim.sql`).
#[derive(Debug, Clone)]
pub struct ClaimedTask {
    /// The attempt claimed.
    pub attempt: TaskAttempt,
    /// The fan-in counter shard its completion decrements.
    pub counter_shard: i16,
    /// The claim's fencing token: its completion, retry or release names it.
    pub claim_token: i32,
    /// The claim this one took over from a holder that lost the message's lock: its token and
    /// the DeliveryCount it was claimed with (`None`: the task was queued).
    pub took_over: Option<(i32, Option<i32>)>,
}

/// One task message to claim: the attempt it names and how often it was delivered.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    /// The task.
    pub task_id: TaskId,
    /// The attempt the message is for.
    pub retry_count: i32,
    /// The job attempt the message is for.
    pub job_attempt: i32,
    /// The message's DeliveryCount (`None`: unknown; it then never takes a task over).
    pub delivery_count: Option<i32>,
}

/// Where a task and its job are (`task_state.sql`): what a guard that matched nothing reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskState {
    /// The task's status.
    pub status: TaskStatus,
    /// Its current attempt (0 = first run).
    pub retry_count: i32,
    /// Whether its lease is still running (`None`: it has none).
    pub lease_live: Option<bool>,
    /// Its job's status.
    pub job_status: JobStatus,
    /// Its job.
    pub job_id: JobId,
    /// Its stage.
    pub stage: i32,
    /// The job attempt it belongs to.
    pub job_attempt: i32,
}

/// A task re-queued for its next attempt (`task_requeue_retry.sql`): what its retry message says.
#[derive(Debug, Clone)]
pub struct RequeuedTask {
    /// The task.
    pub task_id: TaskId,
    /// Its job.
    pub job_id: JobId,
    /// Its job's type.
    pub job_type: String,
    /// Its handler's name.
    pub task_type: String,
    /// Its stage.
    pub stage: i32,
    /// Its position in the stage.
    pub task_index: i32,
    /// Its parameters.
    pub parameters: Value,
    /// The attempt it is queued for.
    pub retry_count: i32,
    /// The job attempt it belongs to.
    pub job_attempt: i32,
}

/// How a task attempt ends, as `task_complete.sql` records it (the task row and its event).
#[derive(Debug, Clone)]
pub struct Ending<'a> {
    /// `completed` or `failed`.
    pub status: TaskStatus,
    /// The handler's result (completed).
    pub result: Option<Value>,
    /// What went wrong (failed).
    pub error_details: Option<String>,
    /// `transient` / `permanent`.
    pub error_class: Option<&'static str>,
    /// The error's type name.
    pub error_type: Option<&'a str>,
    /// The event's type (`task_completed`, `task_failed`).
    pub event_type: &'static str,
    /// The event's status (`success`, `failure`).
    pub event_status: &'static str,
    /// The event's checkpoint name.
    pub checkpoint: &'static str,
    /// The event's details.
    pub event_data: Value,
    /// Also end a task that is queued (not claimed): malformed and poison messages.
    pub unclaimed: bool,
    /// The claim's fencing token (`None`: an ending that holds no claim).
    pub claim_token: Option<i32>,
}

/// A task that an [`Ending`] ended (`task_complete.sql`), with its fan-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedTask {
    /// Its job.
    pub job_id: JobId,
    /// Its stage.
    pub stage: i32,
    /// Counter shards of the stage left above zero after this end (`None`: its shard did not
    /// reach zero). `Some(0)`: this end is the stage's last.
    pub shards_left: Option<i16>,
}

/// A task as a malformed or poison message finds it (`task_parent.sql`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskParent {
    /// The task.
    pub task_id: TaskId,
    /// Its job.
    pub job_id: JobId,
    /// Its status.
    pub status: TaskStatus,
    /// Its stage.
    pub stage: i32,
    /// Its position in the stage.
    pub task_index: i32,
    /// Its handler's name.
    pub task_type: String,
}

/// Successful completions as the grouped statements take them: four parallel arrays.
#[derive(Debug, Default)]
pub struct Completions<'a> {
    /// The tasks.
    pub task_ids: Vec<&'a TaskId>,
    /// The attempt each completed (guard).
    pub retry_counts: Vec<i32>,
    /// Each handler's result.
    pub results: Vec<&'a Value>,
    /// Each `task_completed` event's details.
    pub event_data: Vec<&'a Value>,
    /// Each claim's fencing token (`None`: any claim of the attempt).
    pub claim_tokens: Vec<Option<i32>>,
}

impl Completions<'_> {
    /// Runs one of the grouped statements (`text`, prepared once per connection) over the group.
    async fn query(
        &self,
        c: &impl GenericClient,
        text: &'static str,
        preparing: &'static str,
        what: &(dyn Fn() -> String + Sync),
    ) -> Result<Vec<Row>, StoreError> {
        let stmt = c.prepare_cached(text).await.ctx(|| preparing.into())?;
        c.query(
            &stmt,
            &[
                &self.task_ids,
                &self.retry_counts,
                &self.results,
                &self.event_data,
                &self.claim_tokens,
            ],
        )
        .traced(text)
        .await
        .ctx(what)
    }
}

/// A task that `task_complete_batch.sql` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchEnded {
    /// The task.
    pub task_id: TaskId,
    /// Its job.
    pub job_id: JobId,
    /// Its stage.
    pub stage: i32,
    /// Counter shards of the stage left after this transaction, when it brought one to zero.
    pub shards_left: Option<i16>,
}

/// Claims the attempt a message names for `lease_s` seconds (`task_claim.sql`, with its
/// `task_started` event). Not applied: where the task is (`None`: no such task).
pub async fn claim(
    c: &impl GenericClient,
    req: &ClaimRequest,
    lease_s: f64,
    invocation_id: Option<&str>,
) -> Result<Guarded<ClaimedTask, Option<TaskState>>, StoreError> {
    let mut claimed = claim_many(c, std::slice::from_ref(req), lease_s, invocation_id).await?;
    match claimed.pop() {
        Some(t) => Ok(Guarded::Applied(t)),
        None => Ok(Guarded::NotApplied(state(c, &req.task_id).await?)),
    }
}

/// Claims the attempts of a batch of messages (distinct tasks) in ONE statement
/// (`task_claim.sql`). Returns the claims that applied, in no particular order; a request with
/// no claim here matched nothing (its caller reads where that task is).
pub async fn claim_many(
    c: &impl GenericClient,
    reqs: &[ClaimRequest],
    lease_s: f64,
    invocation_id: Option<&str>,
) -> Result<Vec<ClaimedTask>, StoreError> {
    if reqs.is_empty() {
        return Ok(Vec::new());
    }
    let stmt = c
        .prepare_cached(sql::TASK_CLAIM)
        .await
        .ctx(|| "preparing task claim".into())?;
    let what = || match reqs {
        [r] => format!("claiming task {} attempt {}", r.task_id, r.retry_count + 1),
        _ => format!(
            "claiming {} tasks (first {} attempt {})",
            reqs.len(),
            reqs[0].task_id,
            reqs[0].retry_count + 1
        ),
    };
    // In key order: every multi-row statement on tasks (claims, grouped completions) locks its
    // rows in task id order, so two of them never wait on each other in a cycle.
    let mut sorted: Vec<&ClaimRequest> = reqs.iter().collect();
    sorted.sort_by(|a, b| a.task_id.cmp(&b.task_id));
    let ids: Vec<&TaskId> = sorted.iter().map(|r| &r.task_id).collect();
    let retries: Vec<i32> = sorted.iter().map(|r| r.retry_count).collect();
    let attempts: Vec<i32> = sorted.iter().map(|r| r.job_attempt).collect();
    let counts: Vec<Option<i32>> = sorted.iter().map(|r| r.delivery_count).collect();
    let rows = c
        .query(
            &stmt,
            &[&ids, &retries, &attempts, &counts, &lease_s, &invocation_id],
        )
        .traced(sql::TASK_CLAIM)
        .await
        .ctx(what)?;
    rows.iter()
        .map(|r| {
            let took_over: Option<bool> = r.get("took_over");
            Ok(ClaimedTask {
                attempt: TaskAttempt::from_row(r, &what)?,
                counter_shard: r.get("counter_shard"),
                claim_token: r.get("claim_token"),
                took_over: took_over
                    .unwrap_or(false)
                    .then(|| (r.get("prev_token"), r.get("prev_delivery"))),
            })
        })
        .collect()
}

/// Where a task and its job are (`task_state.sql`); `None` when the task does not exist.
pub async fn state(
    c: &impl GenericClient,
    task_id: &TaskId,
) -> Result<Option<TaskState>, StoreError> {
    let what = || format!("reading task {task_id}");
    let row = c.query_opt(sql::TASK_STATE, &[task_id]).await.ctx(what)?;
    row.map(|r| {
        Ok(TaskState {
            status: r.try_get("status").ctx(what)?,
            retry_count: r.get("retry_count"),
            lease_live: r.get("lease_live"),
            job_status: r.try_get("job_status").ctx(what)?,
            job_id: r.try_get("parent_job_id").ctx(what)?,
            stage: r.get("stage"),
            job_attempt: r.get("job_attempt"),
        })
    })
    .transpose()
}

/// The status of a task's job, share-locked for the rest of the transaction
/// (`job_lock_share.sql`); `None` when the task does not exist.
pub async fn lock_job_share(
    c: &impl GenericClient,
    task_id: &TaskId,
) -> Result<Option<JobStatus>, StoreError> {
    let what = || format!("locking the job of task {task_id}");
    let row = c
        .query_opt(sql::JOB_LOCK_SHARE, &[task_id])
        .await
        .ctx(what)?;
    row.map(|r| r.try_get("status").ctx(what)).transpose()
}

/// Gives a claimed attempt back, processing -> queued, with its `task_released` event
/// (`task_release.sql`). Not applied: the attempt is no longer processing.
pub async fn release(
    c: &impl GenericClient,
    task_id: &TaskId,
    retry_count: i32,
    claim_token: Option<i32>,
    event_data: &Value,
    cause: &str,
) -> Result<Guarded<()>, StoreError> {
    let row = c
        .query_opt(
            sql::TASK_RELEASE,
            &[task_id, &retry_count, event_data, &cause, &claim_token],
        )
        .await
        .ctx(|| format!("releasing task {task_id} attempt {}", retry_count + 1))?;
    Ok(applied_if(row.is_some()))
}

/// A queued task of a job that ended: cancelled (`task_cancel_queued.sql`). Not applied: the task
/// is not queued, or its job did not end.
pub async fn cancel_queued(
    c: &impl GenericClient,
    task_id: &TaskId,
) -> Result<Guarded<()>, StoreError> {
    let row = c
        .query_opt(sql::TASK_CANCEL_QUEUED, &[task_id])
        .await
        .ctx(|| format!("cancelling task {task_id} of a job that ended"))?;
    Ok(applied_if(row.is_some()))
}

/// Re-queues attempt `retry_count` for the next one while its job is processing, with its
/// `task_retrying` event (`task_requeue_retry.sql`). Not applied: where the task is.
pub async fn requeue_retry(
    c: &impl GenericClient,
    task_id: &TaskId,
    retry_count: i32,
    claim_token: Option<i32>,
    error_details: &str,
    event_data: &Value,
    error_type: &str,
) -> Result<Guarded<RequeuedTask, Option<TaskState>>, StoreError> {
    let what = || format!("re-queueing task {task_id} for attempt {}", retry_count + 2);
    let row = c
        .query_opt(
            sql::TASK_REQUEUE_RETRY,
            &[
                task_id,
                &retry_count,
                &error_details,
                event_data,
                &error_type,
                &claim_token,
            ],
        )
        .await
        .ctx(what)?;
    let Some(r) = row else {
        return Ok(Guarded::NotApplied(state(c, task_id).await?));
    };
    Ok(Guarded::Applied(RequeuedTask {
        task_id: r.try_get("task_id").ctx(what)?,
        job_id: r.try_get("parent_job_id").ctx(what)?,
        job_type: r.get("job_type"),
        task_type: r.get("task_type"),
        stage: r.get("stage"),
        task_index: r.get("task_seq"),
        parameters: r.get("parameters"),
        retry_count: r.get("retry_count"),
        job_attempt: r.get("job_attempt"),
    }))
}

/// Ends attempt `retry_count` of a task as `e` says, with its event and the fan-in decrement, in
/// one statement (`task_complete.sql`). Not applied: the attempt was not the task's to end.
pub async fn end(
    c: &impl GenericClient,
    task_id: &TaskId,
    retry_count: i32,
    e: &Ending<'_>,
) -> Result<Guarded<EndedTask>, StoreError> {
    let stmt = c
        .prepare_cached(sql::TASK_COMPLETE)
        .await
        .ctx(|| "preparing task completion".into())?;
    let what = || format!("recording task {task_id} as {}", e.status);
    let row = c
        .query_opt(
            &stmt,
            &[
                task_id,
                &retry_count,
                &e.status,
                &e.result,
                &e.error_details,
                &e.error_class,
                &e.event_type,
                &e.event_status,
                &e.checkpoint,
                &e.event_data,
                &e.error_type,
                &e.unclaimed,
                &e.claim_token,
            ],
        )
        .traced(sql::TASK_COMPLETE)
        .await
        .ctx(what)?;
    let Some(r) = row else {
        return Ok(Guarded::NotApplied(()));
    };
    Ok(Guarded::Applied(EndedTask {
        job_id: r.try_get("parent_job_id").ctx(what)?,
        stage: r.get("stage"),
        shards_left: r.get("shards_left"),
    }))
}

/// Ends a group of successful attempts in ONE statement outside a transaction block
/// (`task_complete_fast.sql`), unless a counter shard would reach zero: then nothing changed and
/// the answer is `None`. Otherwise the tasks it ended (each at most once).
pub async fn complete_fast(
    c: &impl GenericClient,
    g: &Completions<'_>,
) -> Result<Option<Vec<TaskId>>, StoreError> {
    let what = || {
        format!(
            "recording {} task(s) as completed (first {})",
            g.task_ids.len(),
            g.task_ids[0]
        )
    };
    let rows = g
        .query(
            c,
            sql::TASK_COMPLETE_FAST,
            "preparing one-statement completion",
            &what,
        )
        .await?;
    if !rows.first().is_some_and(|r| r.get::<_, bool>("ok")) {
        return Ok(None);
    }
    let ended = rows
        .iter()
        .map(|r| r.try_get::<_, Option<TaskId>>("task_id").ctx(what))
        .filter_map(Result::transpose)
        .collect::<Result<_, _>>()?;
    Ok(Some(ended))
}

/// Ends a group of successful attempts inside the caller's transaction, with their events and
/// fan-in decrements (`task_complete_batch.sql`). The tasks it ended, with the stages it saw
/// reach zero.
pub async fn complete_batch(
    c: &impl GenericClient,
    g: &Completions<'_>,
) -> Result<Vec<BatchEnded>, StoreError> {
    let what = || {
        format!(
            "recording {} tasks as completed (first {})",
            g.task_ids.len(),
            g.task_ids[0]
        )
    };
    let rows = g
        .query(
            c,
            sql::TASK_COMPLETE_BATCH,
            "preparing grouped completion",
            &what,
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(BatchEnded {
                task_id: r.try_get("task_id").ctx(what)?,
                job_id: r.try_get("parent_job_id").ctx(what)?,
                stage: r.get("stage"),
                shards_left: r.get("shards_left"),
            })
        })
        .collect()
}

/// A task by its id, for a message that names it (`task_parent.sql`); `None`: no such task.
pub async fn parent(
    c: &impl GenericClient,
    task_id: &TaskId,
) -> Result<Option<TaskParent>, StoreError> {
    let what = || format!("looking up task {task_id}");
    let row = c.query_opt(sql::TASK_PARENT, &[task_id]).await.ctx(what)?;
    row.map(|r| {
        Ok(TaskParent {
            task_id: task_id.clone(),
            job_id: r.try_get("parent_job_id").ctx(what)?,
            status: r.try_get("status").ctx(what)?,
            stage: r.get("stage"),
            task_index: r.get("task_seq"),
            task_type: r.get("task_type"),
        })
    })
    .transpose()
}

/// Fails the job's queued tasks (all but `except`) with `reason` (`tasks_fail_pending.sql`).
/// Returns how many.
pub async fn fail_pending(
    c: &impl GenericClient,
    job_id: &JobId,
    reason: &str,
    except: Option<&TaskId>,
) -> Result<u64, StoreError> {
    c.execute(sql::TASKS_FAIL_PENDING, &[job_id, &reason, &except])
        .await
        .ctx(|| format!("failing pending tasks of job {job_id}"))
}

fn applied_if(matched: bool) -> Guarded<()> {
    if matched {
        Guarded::Applied(())
    } else {
        Guarded::NotApplied(())
    }
}
