//! What a job type's `create_tasks` and `finalize` are given, read through the stage repository
//! and put in the job types' own terms ([`crate::jobs`]).

use super::ids::JobId;
use crate::jobs::{FailedTask, PreviousResult, StageSummary};
use crate::store::{GenericClient, StoreError, stages};

/// Failed tasks handed to the next stage at most (in stage and task order).
const MAX_FAILED_FOR_NEXT_STAGE: i64 = 10_000;

/// The completed results of `stage` in task order; `what` names the read in errors ("loading
/// final results").
pub(super) async fn completed_results(
    c: &impl GenericClient,
    job_id: &JobId,
    stage: i32,
    what: &str,
) -> Result<Vec<PreviousResult>, StoreError> {
    Ok(stages::completed_results(c, job_id, stage, what)
        .await?
        .into_iter()
        .map(|r| PreviousResult {
            task_id: r.task_id,
            task_index: r.task_seq,
            result: r.result,
        })
        .collect())
}

/// The failed tasks of every stage up to `stage`, with their parameters, for the next stage.
pub(super) async fn failures_up_to(
    c: &impl GenericClient,
    job_id: &JobId,
    stage: i32,
) -> Result<Vec<FailedTask>, StoreError> {
    let what = format!("loading failures up to stage {stage}");
    Ok(
        stages::earlier_failures(c, job_id, stage, MAX_FAILED_FOR_NEXT_STAGE, &what)
            .await?
            .into_iter()
            .map(|f| FailedTask {
                task_id: f.task_id,
                task_index: f.task_seq,
                error: f.error,
                stage: f.stage,
                parameters: f.parameters,
            })
            .collect(),
    )
}

/// Every stage of the job with its counts, for finalize.
pub(super) async fn stage_summaries(
    c: &impl GenericClient,
    job_id: &JobId,
) -> Result<Vec<StageSummary>, StoreError> {
    Ok(stages::totals(c, job_id)
        .await?
        .into_iter()
        .map(|s| StageSummary {
            stage: s.stage,
            name: s.name,
            task_count: s.task_count as i64,
            completed: s.completed,
            failed: s.failed,
        })
        .collect())
}
