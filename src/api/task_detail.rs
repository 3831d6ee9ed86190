//! One task in detail: `GET /api/jobs/{job_id}/tasks/{task_id}` answers with the task's
//! parameters, result and error, and the history of its attempts (when each started and ended,
//! its outcome and error), read from the task's `app.job_events` rows.
//!
//! A task that a resubmit moved to `app.task_archive` is still found (its latest archived row,
//! with `archived_at`), so a link from an earlier attempt's event keeps working.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};

use super::ApiError;
use super::error::ErrorEnvelope;
use super::input::{PathParams, QueryParams};
use super::jobs::{TaskRow, find_job};
use crate::engine::Engine;
use crate::model::TaskId;
use crate::store;
use crate::store::event_views::{self, EventView};
use crate::store::task_views::{self, FoundTask};

/// Events of one task read for its history at most (a task has a few per attempt; a task with
/// more says so with `history_truncated`).
const MAX_EVENTS: i64 = 1000;

/// One run of a task: from the claim that started it to the event that ended it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct TaskAttempt {
    /// The job attempt the run belongs to (1, or the attempt of a resubmit).
    pub job_attempt: i32,
    /// The task's attempt (1 + its retries) within that job attempt.
    pub attempt: i32,
    /// When the run was claimed (null when it ended without a recorded claim, e.g. poison).
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended (null while it runs).
    pub ended_at: Option<DateTime<Utc>>,
    /// completed | failed | retry_scheduled | released (outcome not recorded, runs again) |
    /// lease_expired (claimed again) | running | cancelled | interrupted (no outcome recorded).
    pub outcome: String,
    /// ended_at - started_at.
    pub duration_ms: Option<i64>,
    /// transient | permanent.
    pub error_class: Option<String>,
    /// Error type.
    pub error_type: Option<String>,
    /// Error message.
    pub error_message: Option<String>,
    /// The Functions invocation that ran it.
    pub invocation_id: Option<String>,
}

/// A task with its attempt history.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct TaskDetail {
    /// The task row (parameters, result_data, error_details, ...).
    #[serde(flatten)]
    pub task: TaskRow,
    /// Set when the task belongs to an earlier job attempt and was archived by a resubmit.
    pub archived_at: Option<DateTime<Utc>>,
    /// Its runs, oldest first.
    pub attempts: Vec<TaskAttempt>,
    /// True when the task has more events than were read for its history.
    pub history_truncated: bool,
    /// Related URLs.
    pub links: TaskLinks,
}

/// URLs of a task's resources.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct TaskLinks {
    /// Its job.
    pub job: String,
    /// Its events.
    pub events: String,
}

/// One task event, as the history needs it.
#[derive(Debug, Clone)]
pub(crate) struct TaskEvent {
    /// When it was written.
    pub at: DateTime<Utc>,
    /// task_started, task_completed, task_failed, task_retrying, task_released, ...
    pub event_type: String,
    /// The task's attempt.
    pub attempt: i32,
    /// The job attempt.
    pub job_attempt: i32,
    /// transient | permanent.
    pub error_class: Option<String>,
    /// Error type.
    pub error_type: Option<String>,
    /// Error message.
    pub error_message: Option<String>,
    /// `invocation_id` of a claim.
    pub invocation_id: Option<String>,
}

impl From<EventView> for TaskEvent {
    fn from(e: EventView) -> Self {
        Self {
            at: e.created_at,
            event_type: e.event_type,
            attempt: e.attempt.unwrap_or(1),
            job_attempt: e.job_attempt,
            error_class: e.error_class,
            error_type: e.error_type,
            error_message: e.error_message,
            invocation_id: e
                .data
                .get("invocation_id")
                .and_then(|v| v.as_str())
                .map(str::to_string),
        }
    }
}

impl TaskAttempt {
    /// An attempt of `e`'s (job attempt, attempt), started at `started_at`, not ended yet.
    fn opened_by(e: &TaskEvent, started_at: Option<DateTime<Utc>>) -> Self {
        Self {
            job_attempt: e.job_attempt,
            attempt: e.attempt,
            started_at,
            ended_at: None,
            outcome: String::new(),
            duration_ms: None,
            error_class: None,
            error_type: None,
            error_message: None,
            invocation_id: started_at.and(e.invocation_id.clone()),
        }
    }
}

/// What ended an attempt, by event type (`None`: the event does not end one).
fn ending(event_type: &str) -> Option<&'static str> {
    Some(match event_type {
        "task_completed" => "completed",
        "task_failed" => "failed",
        "task_retrying" => "retry_scheduled",
        "task_released" => "released",
        "task_cancelled" => "cancelled",
        _ => return None,
    })
}

/// Folds a task's events (oldest first) into its attempts. `current` is the task row's
/// (job attempt, attempt, status): an attempt still open at the end takes its outcome from it
/// when it is the row's current attempt (running, cancelled, ...), otherwise it was interrupted.
pub(crate) fn attempts(events: &[TaskEvent], current: (i32, i32, &str)) -> Vec<TaskAttempt> {
    let mut out: Vec<TaskAttempt> = Vec::new();
    let mut open: Option<usize> = None;
    for e in events {
        if e.event_type == "task_started" {
            if let Some(i) = open.take() {
                out[i].outcome = "lease_expired".into();
                out[i].ended_at = Some(e.at);
            }
            open = Some(out.len());
            out.push(TaskAttempt::opened_by(e, Some(e.at)));
            continue;
        }
        let Some(outcome) = ending(&e.event_type) else {
            continue;
        };
        let i = match open.take() {
            Some(i) if (out[i].job_attempt, out[i].attempt) == (e.job_attempt, e.attempt) => i,
            other => {
                // Ended without a claim of its own (a poison message, a malformed one): an
                // attempt of its own, so that nothing is hidden.
                if let Some(i) = other {
                    out[i].outcome = "interrupted".into();
                }
                out.push(TaskAttempt::opened_by(e, None));
                out.len() - 1
            }
        };
        let a = &mut out[i];
        a.ended_at = Some(e.at);
        a.outcome = outcome.into();
        a.error_class = e.error_class.clone();
        a.error_type = e.error_type.clone();
        a.error_message = e.error_message.clone();
    }
    if let Some(i) = open {
        let a = &mut out[i];
        let (job_attempt, attempt, status) = current;
        a.outcome = if (a.job_attempt, a.attempt) == (job_attempt, attempt) {
            match status {
                "processing" => "running",
                "queued" => "interrupted",
                other => other,
            }
        } else {
            "interrupted"
        }
        .into();
    }
    for a in &mut out {
        if let (Some(s), Some(e)) = (a.started_at, a.ended_at) {
            a.duration_ms = Some((e - s).num_milliseconds());
        }
    }
    out
}

/// Parses a task id path segment (400 when it is not 64 hex).
fn parse_task_id(raw: &str) -> Result<TaskId, ApiError> {
    TaskId::parse(raw).map_err(|e| {
        ApiError::field(
            "invalid_task_id",
            "path.task_id",
            "pattern ^[0-9a-f]{64}$",
            super::error::echo(&raw.replace('\0', "\\u0000")),
            e.to_string(),
        )
    })
}

/// One task: parameters, result, error and the history of its attempts.
#[utoipa::path(
    get, path = "/api/jobs/{job_id}/tasks/{task_id}", tag = "jobs", operation_id = "get_task",
    params(
        ("job_id" = String, Path, description = "Job id (64 hex)", pattern = "^[0-9a-fA-F]{64}$"),
        ("task_id" = String, Path, description = "Task id (64 hex)", pattern = "^[0-9a-fA-F]{64}$"),
    ),
    responses(
        (status = 200, description = "The task with its attempts, oldest first", body = TaskDetail),
        (status = 400, description = "job_id or task_id is not 64 hex", body = ErrorEnvelope),
        (status = 401, description = "Missing or wrong function key", body = ErrorEnvelope),
        (status = 404, description = "No such job, or no such task in it", body = ErrorEnvelope),
        (status = 503, description = "Database unavailable", body = ErrorEnvelope),
    ),
    security(("function_key" = []), ("function_code" = []))
)]
pub(crate) async fn get_task(
    State(engine): State<Engine>,
    p: PathParams,
    q: QueryParams,
) -> Result<Json<TaskDetail>, ApiError> {
    let job_id = p.job_id("job_id")?;
    let task_id = parse_task_id(p.get("task_id"))?;
    q.only(&[])?;
    let client = store::client(engine.pool(), "reading a task").await?;
    find_job(&client, &job_id).await?;
    let FoundTask { task, archived_at } = task_views::get(&client, &job_id, &task_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("task {task_id} not found in job {job_id}")))?;
    let task = TaskRow::from(task);
    let rows =
        event_views::page(&client, &job_id, 0, Some(task_id.as_str()), MAX_EVENTS + 1).await?;
    let history_truncated = rows.len() as i64 > MAX_EVENTS;
    let events: Vec<TaskEvent> = rows
        .into_iter()
        .take(MAX_EVENTS as usize)
        .map(TaskEvent::from)
        .collect();
    let attempts = attempts(
        &events,
        (task.job_attempt, task.retry_count + 1, task.status.as_str()),
    );
    let (j, t) = (job_id.as_str(), task_id.as_str());
    Ok(Json(TaskDetail {
        task,
        archived_at,
        attempts,
        history_truncated,
        links: TaskLinks {
            job: format!("/api/jobs/{j}"),
            events: format!("/api/jobs/{j}/events?task_id={t}"),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(secs: i64, event_type: &str, job_attempt: i32, attempt: i32) -> TaskEvent {
        TaskEvent {
            at: DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap(),
            event_type: event_type.into(),
            attempt,
            job_attempt,
            error_class: matches!(event_type, "task_retrying" | "task_failed")
                .then(|| "transient".to_string()),
            error_type: None,
            error_message: None,
            invocation_id: None,
        }
    }

    fn outline(a: &[TaskAttempt]) -> Vec<(i32, i32, &str, Option<i64>)> {
        a.iter()
            .map(|a| (a.job_attempt, a.attempt, a.outcome.as_str(), a.duration_ms))
            .collect()
    }

    #[test]
    fn a_retried_task_has_one_attempt_per_run_with_its_outcome_and_duration() {
        let events = [
            ev(0, "task_started", 1, 1),
            ev(2, "task_retrying", 1, 1),
            ev(10, "task_started", 1, 2),
            ev(13, "task_completed", 1, 2),
        ];
        let a = attempts(&events, (1, 2, "completed"));
        assert_eq!(
            outline(&a),
            vec![
                (1, 1, "retry_scheduled", Some(2000)),
                (1, 2, "completed", Some(3000))
            ]
        );
        assert_eq!(a[0].error_class.as_deref(), Some("transient"));
        assert_eq!(a[1].error_class, None);
    }

    #[test]
    fn a_reclaimed_lease_a_running_run_and_a_retry_of_failed_tasks_are_told_apart() {
        let events = [
            ev(0, "task_started", 1, 1),
            ev(60, "task_started", 1, 1),
            ev(61, "task_failed", 1, 1),
            ev(100, "task_started", 2, 1),
        ];
        let a = attempts(&events, (2, 1, "processing"));
        assert_eq!(
            outline(&a),
            vec![
                (1, 1, "lease_expired", Some(60_000)),
                (1, 1, "failed", Some(1000)),
                (2, 1, "running", None)
            ]
        );
        // The same open run, when the row has moved on (cancelled by a job failure).
        let a = attempts(&events, (2, 1, "cancelled"));
        assert_eq!(a[2].outcome, "cancelled");
        let a = attempts(&events[..1], (2, 1, "queued"));
        assert_eq!(a[0].outcome, "interrupted");
    }

    #[test]
    fn a_failure_without_a_claim_is_an_attempt_of_its_own() {
        let a = attempts(&[ev(5, "task_failed", 1, 3)], (1, 3, "failed"));
        assert_eq!(outline(&a), vec![(1, 3, "failed", None)]);
        assert_eq!(a[0].ended_at.map(|t| t.timestamp()), Some(1_700_000_005));
    }
}
