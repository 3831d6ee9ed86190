//! How a task attempt ends, and which message a malformed body was expected to be: the small
//! vocabulary the task message, malformed and poison paths share (so none imports another).

use serde_json::Value;

use crate::model::TaskStatus;
pub(crate) use crate::store::tasks::Ending;
use crate::telemetry::checkpoints as cp;

/// Which queue a malformed message came from: it can only be the message its job or task waits
/// for if it names that job (jobs queue) or task (tasks queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// A job (stage) message.
    JobMessage,
    /// A task message.
    TaskMessage,
}

/// The ending of a successful attempt.
pub(crate) fn completed(result: Value, event_data: Value) -> Ending<'static> {
    Ending {
        status: TaskStatus::Completed,
        result: Some(result),
        error_details: None,
        error_class: None,
        error_type: None,
        event_type: "task_completed",
        event_status: "success",
        checkpoint: cp::TASK_COMPLETED,
        event_data,
        unclaimed: false,
        claim_token: None,
    }
}

/// Why a task failed, as its ending records it.
#[derive(Debug, Clone)]
pub(crate) struct Failure<'a> {
    /// What went wrong (the task's `error_details`).
    pub details: String,
    /// `transient` / `permanent`.
    pub class: &'static str,
    /// The error's type name.
    pub error_type: &'a str,
    /// The event's checkpoint name.
    pub checkpoint: &'static str,
    /// The `task_failed` event's details.
    pub event_data: Value,
}

/// The ending of a failed task: a claimed attempt, or (`unclaimed`) a task that a malformed or
/// poison message fails while it is queued.
pub(crate) fn failed(f: Failure<'_>, unclaimed: bool) -> Ending<'_> {
    Ending {
        status: TaskStatus::Failed,
        result: None,
        error_details: Some(f.details),
        error_class: Some(f.class),
        error_type: Some(f.error_type),
        event_type: "task_failed",
        event_status: "failure",
        checkpoint: f.checkpoint,
        event_data: f.event_data,
        unclaimed,
        claim_token: None,
    }
}

/// How a task is named in a job's failure reason and in the logs.
pub(crate) fn task_label(
    task_id: impl std::fmt::Display,
    stage: i32,
    index: i32,
    task_type: &str,
) -> String {
    format!("task {task_id} (stage {stage}, index {index}, type {task_type})")
}
