//! The job and task state machines, as data.
//!
//! The tables below document the allowed transitions and are enumerated by tests; the SQL
//! statements enforce them with guarded `UPDATE ... WHERE status = <expected>` clauses (a guard
//! that matches no row is an explicit outcome, never ignored).

use std::fmt;
use std::str::FromStr;

/// Job status (`app.job_status`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for its stage message to be processed.
    Queued,
    /// A stage's tasks exist and are running.
    Processing,
    /// Finished; result_data holds finalize's result.
    Completed,
    /// Finished, but finalize failed; result_data holds a fallback result.
    CompletedWithErrors,
    /// A task or stage failed; error_details says which and why.
    Failed,
    /// Cancelled by an operator.
    Cancelled,
}

/// Task status (`app.task_status`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Waiting for its message (first run or retry).
    Queued,
    /// Claimed by a worker under a lease.
    Processing,
    /// Succeeded.
    Completed,
    /// Failed permanently or out of retries.
    Failed,
    /// Will never run (its job ended first).
    Cancelled,
}

/// Stage status (`app.job_stages.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
    /// Its tasks exist and some are not finished.
    Running,
    /// Ended and the job went on (advanced or finalized).
    Completed,
    /// Ended by a failure under its policy, or its job failed while it ran.
    Failed,
    /// Its job was cancelled while it ran.
    Cancelled,
}

impl StageStatus {
    /// Every status.
    pub const ALL: [StageStatus; 4] = [
        StageStatus::Running,
        StageStatus::Completed,
        StageStatus::Failed,
        StageStatus::Cancelled,
    ];
    /// The stored name.
    pub fn as_str(&self) -> &'static str {
        match self {
            StageStatus::Running => "running",
            StageStatus::Completed => "completed",
            StageStatus::Failed => "failed",
            StageStatus::Cancelled => "cancelled",
        }
    }
}

impl JobStatus {
    /// Every status.
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Queued,
        JobStatus::Processing,
        JobStatus::Completed,
        JobStatus::CompletedWithErrors,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];
    /// The stored name.
    pub fn as_str(&self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Processing => "processing",
            JobStatus::Completed => "completed",
            JobStatus::CompletedWithErrors => "completed_with_errors",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }
    /// Whether the status has no exits (except an explicit resubmit).
    pub fn is_terminal(&self) -> bool {
        !self.is_live()
    }
    /// Whether the job is still running (queued for a stage, or processing one): the statuses a
    /// failure, a cancel or a janitor repair may still end.
    pub fn is_live(&self) -> bool {
        JOB_LIVE.contains(self)
    }
}

impl TaskStatus {
    /// Every status.
    pub const ALL: [TaskStatus; 5] = [
        TaskStatus::Queued,
        TaskStatus::Processing,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
    ];
    /// The stored name.
    pub fn as_str(&self) -> &'static str {
        match self {
            TaskStatus::Queued => "queued",
            TaskStatus::Processing => "processing",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        }
    }
    /// Whether the task will not change again.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled
        )
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl fmt::Display for StageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status name that is not known.
#[derive(Debug, thiserror::Error)]
#[error("unknown status {0:?}")]
pub struct UnknownStatus(pub String);

/// The status among `all` stored as `s`.
fn by_name<T: Copy>(all: &[T], name: fn(&T) -> &'static str, s: &str) -> Result<T, UnknownStatus> {
    all.iter()
        .copied()
        .find(|x| name(x) == s)
        .ok_or_else(|| UnknownStatus(s.into()))
}

impl FromStr for JobStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        by_name(&JobStatus::ALL, JobStatus::as_str, s)
    }
}
impl FromStr for TaskStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // The earlier schema also declared retrying / pending_retry; they are never written.
        by_name(&TaskStatus::ALL, TaskStatus::as_str, s)
    }
}
impl FromStr for StageStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        by_name(&StageStatus::ALL, StageStatus::as_str, s)
    }
}

use JobStatus as J;
use TaskStatus as T;

/// Allowed job transitions and why each exists.
pub const JOB_TRANSITIONS: &[(JobStatus, JobStatus, &str)] = &[
    (
        J::Queued,
        J::Processing,
        "stage message processed: the stage's tasks are created",
    ),
    (
        J::Processing,
        J::Queued,
        "stage advance: the next stage's message is queued",
    ),
    (
        J::Processing,
        J::Completed,
        "last stage done and finalize succeeded",
    ),
    (
        J::Processing,
        J::CompletedWithErrors,
        "last stage done but finalize failed (fallback result)",
    ),
    (
        J::Processing,
        J::Failed,
        "a task or stage failed under the stage policy",
    ),
    (
        J::Queued,
        J::Failed,
        "stage message dead-lettered, unknown job type, or janitor",
    ),
    (J::Queued, J::Cancelled, "operator cancel"),
    (J::Processing, J::Cancelled, "operator cancel"),
];

/// Terminal statuses an explicit resubmit may restart (to queued, with attempt + 1).
pub const JOB_RESUBMITTABLE: &[JobStatus] = &[J::Failed, J::Cancelled];

/// The statuses of a job that has not ended.
pub const JOB_LIVE: &[JobStatus] = &[J::Queued, J::Processing];

/// Live statuses an operator cancel may end.
pub const JOB_CANCELLABLE: &[JobStatus] = JOB_LIVE;

/// `a or b or c`: the statuses an action accepts, for its refusal message.
pub fn or_list(statuses: &[JobStatus]) -> String {
    statuses
        .iter()
        .map(JobStatus::as_str)
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Allowed task transitions and why each exists.
pub const TASK_TRANSITIONS: &[(TaskStatus, TaskStatus, &str)] = &[
    (T::Queued, T::Processing, "claimed by a worker"),
    (
        T::Processing,
        T::Processing,
        "re-claimed after the previous lease expired",
    ),
    (T::Processing, T::Completed, "handler succeeded"),
    (
        T::Processing,
        T::Failed,
        "permanent error or retries exhausted",
    ),
    (
        T::Processing,
        T::Queued,
        "transient error: retry scheduled with attempt + 1",
    ),
    (
        T::Queued,
        T::Cancelled,
        "its job ended (failed or cancelled) before it ran",
    ),
    (
        T::Queued,
        T::Failed,
        "its message was malformed or dead-lettered",
    ),
];

/// Whether `from -> to` is an allowed job transition.
pub fn job_can_transition(from: JobStatus, to: JobStatus) -> bool {
    JOB_TRANSITIONS
        .iter()
        .any(|(f, t, _)| *f == from && *t == to)
}

/// Whether `from -> to` is an allowed task transition.
pub fn task_can_transition(from: TaskStatus, to: TaskStatus) -> bool {
    TASK_TRANSITIONS
        .iter()
        .any(|(f, t, _)| *f == from && *t == to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_job_statuses_are_exactly_those_with_exits() {
        for s in JobStatus::ALL {
            let exits = JobStatus::ALL.into_iter().any(|t| job_can_transition(s, t));
            assert_eq!(s.is_live(), exits, "{s}");
        }
    }

    #[test]
    fn terminal_job_statuses_have_no_exits() {
        for from in JobStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in JobStatus::ALL {
                assert!(!job_can_transition(from, to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn control_actions_follow_the_transition_table() {
        // A resubmit restarts an ended job (outside the transition table, which has no exits
        // from a terminal status); a cancel ends a live one through a listed transition.
        for s in JOB_RESUBMITTABLE {
            assert!(s.is_terminal(), "{s} is resubmittable but not terminal");
        }
        for s in JOB_CANCELLABLE {
            assert!(!s.is_terminal(), "{s} is cancellable but already ended");
            assert!(
                job_can_transition(*s, JobStatus::Cancelled),
                "{s} -> cancelled"
            );
        }
        assert_eq!(or_list(JOB_RESUBMITTABLE), "failed or cancelled");
    }

    #[test]
    fn terminal_task_statuses_have_no_exits() {
        for from in TaskStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in TaskStatus::ALL {
                assert!(!task_can_transition(from, to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for s in JobStatus::ALL {
            assert_eq!(s.as_str().parse::<JobStatus>().unwrap(), s);
        }
        for s in TaskStatus::ALL {
            assert_eq!(s.as_str().parse::<TaskStatus>().unwrap(), s);
        }
        for s in StageStatus::ALL {
            assert_eq!(s.as_str().parse::<StageStatus>().unwrap(), s);
        }
        assert!("retrying".parse::<TaskStatus>().is_err());
    }
}
