//! The task archive (`app.task_archive`): the rows of tasks a resubmit replaced, keyed by the
//! attempt they belonged to. One function per statement.

use deadpool_postgres::GenericClient;

use super::{QueryContext, StoreError, sql};
use crate::model::{JobId, TaskId};

/// Moves the job's tasks of `from_stage` and later to the archive (`tasks_archive_from_stage.sql`);
/// returns how many were archived. `attempt` (the attempt they belonged to) only names them in
/// errors.
pub(crate) async fn archive_from_stage(
    c: &impl GenericClient,
    job_id: &JobId,
    from_stage: i32,
    attempt: i32,
) -> Result<u64, StoreError> {
    c.execute(sql::TASKS_ARCHIVE_FROM_STAGE, &[job_id, &from_stage])
        .await
        .ctx(|| format!("archiving attempt {attempt} tasks of job {job_id}"))
}

/// Moves these tasks of the job to the archive (`tasks_archive_ids.sql`).
pub(crate) async fn archive_ids(
    c: &impl GenericClient,
    job_id: &JobId,
    task_ids: &[&str],
) -> Result<(), StoreError> {
    c.execute(sql::TASKS_ARCHIVE_IDS, &[job_id, &task_ids])
        .await
        .ctx(|| format!("archiving {} failed tasks of job {job_id}", task_ids.len()))?;
    Ok(())
}

/// Whether a task's row was archived by a resubmit (`task_archived.sql`).
pub(crate) async fn contains(c: &impl GenericClient, task_id: &TaskId) -> Result<bool, StoreError> {
    let what = || format!("looking for task {task_id} in the archive");
    let row = c
        .query_one(sql::TASK_ARCHIVED, &[task_id])
        .await
        .ctx(what)?;
    row.try_get(0).ctx(what)
}
