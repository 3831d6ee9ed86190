//! A task message whose claim matched nothing: a duplicate, a stale copy, a message of an attempt
//! a resubmit replaced, a message for a task that does not exist, or one that arrived after its
//! job ended. [`decide`] says which from where the task is; the engine applies it.

use super::task_message::Arrival;
use super::{Engine, EngineError, Handled};
use crate::model::{JobStatus, TaskStatus};
use crate::store::tasks::{self, TaskState};
use crate::store::{self, Guarded, task_archive};
use crate::telemetry::checkpoints as cp;

/// What the database knows of a task whose claim matched nothing.
#[derive(Debug, Clone, Copy)]
pub(super) enum Found<'a> {
    /// The task and its job, as they are.
    Task(&'a TaskState),
    /// No task row, but a resubmit archived one under this id.
    Archived,
    /// No such task anywhere.
    Missing,
}

/// What a task message whose claim matched nothing does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// A message of an attempt that a resubmit replaced: expected, nothing to do.
    Replaced,
    /// The task does not exist: the message is recorded.
    Unknown,
    /// Its job ended while this message was on its way and the task is still queued: it is
    /// cancelled (it will never run). If it can no longer be, nothing to do.
    CancelLate {
        /// The job's status.
        job_status: JobStatus,
        /// The task as it is (status and attempt).
        actual: String,
    },
    /// Nothing to do (a duplicate or a stale copy).
    Nothing {
        /// Why.
        why: String,
        /// The task as it is (status and attempt).
        actual: String,
    },
}

/// Judges a message for attempt `retry_count` of job attempt `job_attempt` whose claim matched
/// nothing, by what the database knows of its task.
pub(super) fn decide(retry_count: i32, job_attempt: i32, found: Found<'_>) -> Refusal {
    let s = match found {
        Found::Task(s) => s,
        Found::Archived => return Refusal::Replaced,
        Found::Missing => return Refusal::Unknown,
    };
    let actual = format!("{} attempt {}", s.status, s.retry_count + 1);
    let why = if job_attempt != s.job_attempt {
        format!(
            "message of job attempt {job_attempt}; the task was re-queued for attempt {}",
            s.job_attempt
        )
    } else if retry_count < s.retry_count {
        format!(
            "stale copy of attempt {} (task is at attempt {})",
            retry_count + 1,
            s.retry_count + 1
        )
    } else if s.status == TaskStatus::Processing && s.lease_live == Some(true) {
        "another worker holds the task's lease".to_string()
    } else if s.job_status != JobStatus::Processing {
        if s.status == TaskStatus::Queued {
            // Its job ended while this message was on its way (a job failure skips tasks that
            // were being claimed or released at that moment): the task will never run.
            return Refusal::CancelLate {
                job_status: s.job_status,
                actual,
            };
        }
        format!("its job is {}", s.job_status)
    } else if s.status == TaskStatus::Queued && retry_count > s.retry_count {
        format!(
            "message for attempt {} but the task is at attempt {}",
            retry_count + 1,
            s.retry_count + 1
        )
    } else {
        format!("task is already {}", s.status)
    };
    Refusal::Nothing { why, actual }
}

impl Engine {
    /// A task message whose claim matched nothing (`state`: where its task is): loads what
    /// [`decide`] needs, applies its answer and acknowledges the message.
    pub(super) async fn task_message_not_applicable(
        &self,
        client: &store::Client,
        a: &Arrival<'_>,
        state: Option<TaskState>,
    ) -> Result<Handled, EngineError> {
        let task_id = &a.task_id;
        let found = match &state {
            Some(s) => Found::Task(s),
            None if task_archive::contains(client, task_id).await? => Found::Archived,
            None => Found::Missing,
        };
        match decide(a.msg.retry_count, a.msg.job_attempt, found) {
            Refusal::Replaced => {
                cp::emit(
                    cp::TASK_MESSAGE_DUPLICATE,
                    &a.fields
                        .clone()
                        .extra("reason", "its job attempt was replaced by a resubmit"),
                );
                Ok(Handled::log(format!(
                    "task {task_id} belongs to an attempt replaced by a resubmit; acknowledged"
                )))
            }
            Refusal::Unknown => self.unknown_task(a).await,
            Refusal::CancelLate { job_status, actual } => {
                if let Guarded::Applied(()) = tasks::cancel_queued(client, task_id).await? {
                    cp::emit_warn(
                        cp::TASK_CANCELLED_LATE,
                        &a.fields.clone().extra("job_status", job_status),
                    );
                    return Ok(Handled::log(format!(
                        "task {task_id}: its job is {job_status}; the queued task was cancelled"
                    )));
                }
                let why = format!("its job is {job_status}");
                Ok(nothing_to_do(a, &why, &actual))
            }
            Refusal::Nothing { why, actual } => Ok(nothing_to_do(a, &why, &actual)),
        }
    }

    /// A message for a task that does not exist: recorded and acknowledged.
    async fn unknown_task(&self, a: &Arrival<'_>) -> Result<Handled, EngineError> {
        let task_id = &a.task_id;
        cp::emit_warn(cp::MESSAGE_UNKNOWN_TASK, &a.fields);
        let job = crate::engine::JobId::parse(&a.msg.parent_job_id).ok();
        self.record_message_failure(
            a.d,
            job.as_ref().map(|j| j.as_str()),
            Some(task_id.as_str()),
            "unknown_task",
            &format!("task {task_id} does not exist"),
            a.body,
        )
        .await?;
        Ok(Handled::log(format!(
            "task {task_id} does not exist; message recorded and acknowledged"
        )))
    }
}

/// A duplicate or stale message: reported and acknowledged.
pub(super) fn nothing_to_do(a: &Arrival<'_>, why: &str, actual: &str) -> Handled {
    cp::emit(
        cp::TASK_MESSAGE_DUPLICATE,
        &a.fields
            .clone()
            .extra("actual", actual)
            .extra("reason", why),
    );
    Handled::log(format!(
        "task {}: nothing to do ({why}); acknowledged",
        a.task_id
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::JobId;

    fn state(status: TaskStatus, retry: i32, lease: Option<bool>, job: JobStatus) -> TaskState {
        TaskState {
            status,
            retry_count: retry,
            lease_live: lease,
            job_status: job,
            job_id: JobId::parse(&"b".repeat(64)).unwrap(),
            stage: 1,
            job_attempt: 1,
        }
    }

    fn why(r: Refusal) -> String {
        match r {
            Refusal::Nothing { why, .. } => why,
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn a_claim_that_matched_nothing_is_judged_by_where_the_task_is() {
        use JobStatus as J;
        use TaskStatus as T;
        let cases: &[(i32, i32, TaskState, &str)] = &[
            (
                0,
                2,
                state(T::Queued, 0, None, J::Processing),
                "message of job attempt 2; the task was re-queued for attempt 1",
            ),
            (
                0,
                1,
                state(T::Queued, 1, None, J::Processing),
                "stale copy of attempt 1 (task is at attempt 2)",
            ),
            (
                0,
                1,
                state(T::Processing, 0, Some(true), J::Processing),
                "another worker holds the task's lease",
            ),
            (
                0,
                1,
                state(T::Completed, 0, None, J::Failed),
                "its job is failed",
            ),
            (
                2,
                1,
                state(T::Queued, 1, None, J::Processing),
                "message for attempt 3 but the task is at attempt 2",
            ),
            (
                0,
                1,
                state(T::Completed, 0, None, J::Processing),
                "task is already completed",
            ),
            (
                0,
                1,
                state(T::Processing, 0, Some(false), J::Processing),
                "task is already processing",
            ),
        ];
        for (retry, job_attempt, s, want) in cases {
            assert_eq!(
                why(decide(*retry, *job_attempt, Found::Task(s))),
                *want,
                "{s:?}"
            );
        }
    }

    #[test]
    fn a_queued_task_of_an_ended_job_is_cancelled_and_a_missing_one_is_replaced_or_unknown() {
        let s = state(TaskStatus::Queued, 0, None, JobStatus::Cancelled);
        assert_eq!(
            decide(0, 1, Found::Task(&s)),
            Refusal::CancelLate {
                job_status: JobStatus::Cancelled,
                actual: "queued attempt 1".into()
            }
        );
        assert_eq!(decide(0, 1, Found::Archived), Refusal::Replaced);
        assert_eq!(decide(0, 1, Found::Missing), Refusal::Unknown);
    }
}
