//! The stages aggregate (`app.job_stages`, `app.stage_counters`, and the tasks of one stage as a
//! stage sees them): one function per statement, typed rows.

use deadpool_postgres::GenericClient;
use serde_json::Value;

use super::{QueryContext, StoreError, sql};
use crate::model::{JobId, StageStatus, TaskId, TaskStatus};

/// Task counts of a finished stage (`stage_counts.sql`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct StageCounts {
    /// Tasks created.
    pub total: i64,
    /// Completed.
    pub completed: i64,
    /// Failed.
    pub failed: i64,
    /// Cancelled.
    pub cancelled: i64,
}

/// A stage row as it is created (`stage_insert.sql`).
#[derive(Debug, Clone, Copy)]
pub struct NewStage<'a> {
    /// The job.
    pub job_id: &'a JobId,
    /// The stage (1-based).
    pub stage: i32,
    /// The job attempt running it.
    pub attempt: i32,
    /// Its name.
    pub name: &'a str,
    /// The task type of its tasks.
    pub task_type: &'a str,
    /// How many tasks it has.
    pub task_count: i32,
    /// How many fan-in counter shards it has.
    pub shards: i16,
}

/// A failed task of one stage (`stage_failed_tasks.sql`).
#[derive(Debug, Clone, PartialEq)]
pub struct StageFailure {
    /// The task.
    pub task_id: String,
    /// Its position in the stage.
    pub task_seq: i32,
    /// Its error text (empty when none was stored).
    pub error: String,
}

/// A failed task of a job up to some stage (`earlier_failed_tasks.sql`).
#[derive(Debug, Clone, PartialEq)]
pub struct EarlierFailure {
    /// The task.
    pub task_id: String,
    /// Its position in its stage.
    pub task_seq: i32,
    /// Its error text (empty when none was stored).
    pub error: String,
    /// Its stage.
    pub stage: i32,
    /// Its parameters.
    pub parameters: Value,
}

/// A completed task's result (`stage_results_completed.sql`).
#[derive(Debug, Clone, PartialEq)]
pub struct CompletedResult {
    /// The task.
    pub task_id: String,
    /// Its position in the stage.
    pub task_seq: i32,
    /// Its result (`null` when it stored none).
    pub result: Value,
}

/// One stage's counts, for finalize (`stages_summary.sql`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageTotals {
    /// The stage.
    pub stage: i32,
    /// Its name.
    pub name: String,
    /// Tasks created.
    pub task_count: i32,
    /// Tasks completed.
    pub completed: i64,
    /// Tasks failed.
    pub failed: i64,
}

/// One chunk of a stage's tasks to insert (`tasks_insert_batch.sql`); the vectors run in parallel.
#[derive(Debug, Clone, Copy)]
pub struct TaskBatch<'a> {
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
    /// Task ids.
    pub task_ids: &'a [&'a str],
    /// Positions in the stage.
    pub seqs: &'a [i32],
    /// Parameters.
    pub parameters: &'a [&'a Value],
    /// Fan-in counter shards.
    pub shards: &'a [i16],
}

/// A task of a stage that did not complete, locked for a retry (`stage_retry_tasks.sql`).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryCandidate {
    /// The task.
    pub task_id: TaskId,
    /// Its position in the stage.
    pub task_seq: i32,
    /// Its parameters.
    pub parameters: Value,
    /// Its fan-in counter shard.
    pub shard: i16,
    /// Where it is (never `completed`).
    pub status: TaskStatus,
}

/// A stage re-opened for a retry of its failed tasks (`stage_reopen.sql`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reopened {
    /// The stage's task type.
    pub task_type: String,
    /// How many tasks the stage has in all (kept and re-run).
    pub task_count: i32,
}

/// Records a stage as running with `task_count` tasks (`stage_insert.sql`; a stage that runs
/// again is reset).
pub async fn insert(c: &impl GenericClient, s: &NewStage<'_>) -> Result<(), StoreError> {
    c.execute(
        sql::STAGE_INSERT,
        &[
            s.job_id,
            &s.stage,
            &s.attempt,
            &s.name,
            &s.task_type,
            &s.task_count,
            &s.shards,
        ],
    )
    .await
    .ctx(|| format!("recording stage {} of job {}", s.stage, s.job_id))?;
    Ok(())
}

/// Creates the fan-in counter shards of a stage, `sizes[i]` tasks on shard `i`
/// (`stage_counters_insert.sql`).
pub async fn insert_counters(
    c: &impl GenericClient,
    job_id: &JobId,
    stage: i32,
    sizes: &[i32],
) -> Result<(), StoreError> {
    let shard_ids: Vec<i16> = (0..sizes.len() as i16).collect();
    c.execute(
        sql::STAGE_COUNTERS_INSERT,
        &[job_id, &stage, &shard_ids, &sizes],
    )
    .await
    .ctx(|| format!("creating the stage {stage} counter of job {job_id}"))?;
    Ok(())
}

/// Closes a running stage with `status` (`stage_finish.sql`); a stage that is not running stays
/// as it is.
pub async fn finish(
    c: &impl GenericClient,
    job_id: &JobId,
    stage: i32,
    status: StageStatus,
) -> Result<(), StoreError> {
    c.execute(sql::STAGE_FINISH, &[job_id, &stage, &status])
        .await
        .ctx(|| format!("closing stage {stage} of job {job_id}"))?;
    Ok(())
}

/// The task counts of a stage (`stage_counts.sql`).
pub async fn counts(
    c: &impl GenericClient,
    job_id: &JobId,
    stage: i32,
) -> Result<StageCounts, StoreError> {
    let r = c
        .query_one(sql::STAGE_COUNTS, &[job_id, &stage])
        .await
        .ctx(|| format!("counting stage {stage} tasks of job {job_id}"))?;
    Ok(StageCounts {
        total: r.get("total"),
        completed: r.get("completed"),
        failed: r.get("failed"),
        cancelled: r.get("cancelled"),
    })
}

/// The first `limit` failed tasks of a stage, in task order (`stage_failed_tasks.sql`).
pub async fn failed_tasks(
    c: &impl GenericClient,
    job_id: &JobId,
    stage: i32,
    limit: i64,
) -> Result<Vec<StageFailure>, StoreError> {
    let rows = c
        .query(sql::STAGE_FAILED_TASKS, &[job_id, &stage, &limit])
        .await
        .ctx(|| format!("listing failed tasks of stage {stage} of job {job_id}"))?;
    Ok(rows
        .iter()
        .map(|r| StageFailure {
            task_id: r.get(0),
            task_seq: r.get(1),
            error: r.get(2),
        })
        .collect())
}

/// How many tasks of a job failed in stages up to `stage` (`job_failed_count.sql`).
pub async fn failed_count(
    c: &impl GenericClient,
    job_id: &JobId,
    stage: i32,
) -> Result<i64, StoreError> {
    Ok(c.query_one(sql::JOB_FAILED_COUNT, &[job_id, &stage])
        .await
        .ctx(|| format!("counting failed tasks of job {job_id} up to stage {stage}"))?
        .get(0))
}

/// The first `limit` failed tasks of a job in stages up to `stage`, in stage and task order
/// (`earlier_failed_tasks.sql`); `what` says what the caller is doing (error context: "`what` of
/// job ..").
pub async fn earlier_failures(
    c: &impl GenericClient,
    job_id: &JobId,
    stage: i32,
    limit: i64,
    what: &str,
) -> Result<Vec<EarlierFailure>, StoreError> {
    let rows = c
        .query(sql::EARLIER_FAILED_TASKS, &[job_id, &stage, &limit])
        .await
        .ctx(|| format!("{what} of job {job_id}"))?;
    Ok(rows
        .iter()
        .map(|r| EarlierFailure {
            task_id: r.get(0),
            task_seq: r.get(1),
            error: r.get(2),
            stage: r.get(3),
            parameters: r.get(4),
        })
        .collect())
}

/// The completed results of a stage in task order (`stage_results_completed.sql`); `what` says
/// what the caller is doing (error context: "`what` of job ..").
pub async fn completed_results(
    c: &impl GenericClient,
    job_id: &JobId,
    stage: i32,
    what: &str,
) -> Result<Vec<CompletedResult>, StoreError> {
    let rows = c
        .query(sql::STAGE_RESULTS_COMPLETED, &[job_id, &stage])
        .await
        .ctx(|| format!("{what} of job {job_id}"))?;
    Ok(rows
        .into_iter()
        .map(|r| CompletedResult {
            task_id: r.get(0),
            task_seq: r.get(1),
            result: r.get(2),
        })
        .collect())
}

/// Every stage of a job with its counts, in stage order (`stages_summary.sql`).
pub async fn totals(
    c: &impl GenericClient,
    job_id: &JobId,
) -> Result<Vec<StageTotals>, StoreError> {
    let rows = c
        .query(sql::STAGES_SUMMARY, &[job_id])
        .await
        .ctx(|| format!("summarising stages of job {job_id}"))?;
    Ok(rows
        .iter()
        .map(|r| StageTotals {
            stage: r.get(0),
            name: r.get(1),
            task_count: r.get(2),
            completed: r.get(3),
            failed: r.get(4),
        })
        .collect())
}

/// Inserts one chunk of a stage's tasks as queued (`tasks_insert_batch.sql`); returns how many
/// were inserted (a task id that exists already is skipped).
pub async fn insert_tasks(c: &impl GenericClient, b: &TaskBatch<'_>) -> Result<u64, StoreError> {
    let insert = c
        .prepare_cached(sql::TASKS_INSERT_BATCH)
        .await
        .ctx(|| "preparing task insert".into())?;
    c.execute(
        &insert,
        &[
            b.job_id,
            &b.job_type,
            &b.task_type,
            &b.stage,
            &b.attempt,
            &b.task_ids,
            &b.seqs,
            &b.parameters,
            &b.shards,
        ],
    )
    .await
    .ctx(|| {
        format!(
            "inserting {} tasks of stage {} of job {}",
            b.task_ids.len(),
            b.stage,
            b.job_id
        )
    })
}

/// The tasks of a stage that did not complete, in task order, locked (`stage_retry_tasks.sql`).
pub async fn retry_candidates(
    c: &impl GenericClient,
    job_id: &JobId,
    stage: i32,
) -> Result<Vec<RetryCandidate>, StoreError> {
    let rows = c
        .query(sql::STAGE_RETRY_TASKS, &[job_id, &stage])
        .await
        .ctx(|| format!("reading the unfinished tasks of stage {stage} of job {job_id}"))?;
    let what = || format!("reading the unfinished tasks of stage {stage} of job {job_id}");
    rows.iter()
        .map(|r| {
            Ok(RetryCandidate {
                task_id: r.try_get(0).ctx(what)?,
                task_seq: r.get(1),
                parameters: r.get(2),
                shard: r.get(3),
                status: r.try_get(5).ctx(what)?,
            })
        })
        .collect()
}

/// Runs a stage again for `attempt` with `counts[i]` tasks left on shard `shards[i]` (every other
/// shard at 0) (`stage_reopen.sql`); `None` when the stage has no row.
pub async fn reopen(
    c: &impl GenericClient,
    job_id: &JobId,
    stage: i32,
    shards: &[i16],
    counts: &[i32],
    attempt: i32,
) -> Result<Option<Reopened>, StoreError> {
    Ok(c.query_opt(
        sql::STAGE_REOPEN,
        &[job_id, &stage, &shards, &counts, &attempt],
    )
    .await
    .ctx(|| format!("re-opening stage {stage} of job {job_id}"))?
    .map(|r| Reopened {
        task_type: r.get("task_type"),
        task_count: r.get("task_count"),
    }))
}

/// Deletes the stage rows (and their counters) of `from_stage` and later (`stages_delete_from.sql`).
pub async fn delete_from(
    c: &impl GenericClient,
    job_id: &JobId,
    from_stage: i32,
) -> Result<(), StoreError> {
    c.execute(sql::STAGES_DELETE_FROM, &[job_id, &from_stage])
        .await
        .ctx(|| format!("resetting stages {from_stage}.. of job {job_id}"))?;
    Ok(())
}

/// Cancel, first statement: closes the job's running stage rows (`stages_cancel_running.sql`).
pub async fn cancel_running(c: &impl GenericClient, job_id: &JobId) -> Result<(), StoreError> {
    c.execute(sql::STAGES_CANCEL_RUNNING, &[job_id])
        .await
        .ctx(|| format!("closing the running stages of job {job_id}"))?;
    Ok(())
}

/// Cancel, last statement: closes a stage that started meanwhile, without waiting for its row
/// (`stage_cancel_nowait.sql`; a held row is SQLSTATE 55P03). `stage` only names it in errors.
pub async fn cancel_nowait(
    c: &impl GenericClient,
    job_id: &JobId,
    stage: i32,
) -> Result<(), StoreError> {
    c.execute(sql::STAGE_CANCEL_NOWAIT, &[job_id])
        .await
        .ctx(|| format!("closing stage {stage} of job {job_id}"))?;
    Ok(())
}

/// How many tasks of a stage are queued or processing (`stage_live_tasks.sql`).
pub async fn live_tasks(
    c: &impl GenericClient,
    job_id: &JobId,
    stage: i32,
) -> Result<i64, StoreError> {
    Ok(c.query_one(sql::STAGE_LIVE_TASKS, &[job_id, &stage])
        .await
        .ctx(|| format!("counting live tasks of job {job_id}"))?
        .get(0))
}
