//! `app.job_events` rows: one per state change, written in the same transaction as the change.

use serde_json::Value;

use crate::store::{QueryContext, StoreError, Transaction, sql};

/// Outcome class of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStatus {
    /// A step succeeded.
    Success,
    /// A step failed.
    Failure,
    /// Something unusual was handled.
    Warning,
    /// Progress.
    Info,
}

impl EventStatus {
    fn as_str(&self) -> &'static str {
        match self {
            EventStatus::Success => "success",
            EventStatus::Failure => "failure",
            EventStatus::Warning => "warning",
            EventStatus::Info => "info",
        }
    }
}

/// One job event.
#[derive(Debug, Clone)]
pub struct Event {
    /// Job id.
    pub job_id: String,
    /// Task id, for task events.
    pub task_id: Option<String>,
    /// Stage.
    pub stage: Option<i32>,
    /// Attempt (task attempt for task events, job attempt otherwise).
    pub attempt: Option<i32>,
    /// Event type (job_created, stage_started, task_completed, ...).
    pub event_type: &'static str,
    /// Status.
    pub status: EventStatus,
    /// Checkpoint name.
    pub checkpoint: &'static str,
    /// Details.
    pub data: Value,
    /// transient / permanent.
    pub error_class: Option<String>,
    /// Error type.
    pub error_type: Option<String>,
    /// Error message (cut to 1,000 characters when stored).
    pub error_message: Option<String>,
    /// Duration of the step.
    pub duration_ms: Option<i32>,
}

impl Event {
    /// A job-level event.
    pub fn job(
        job_id: impl AsRef<str>,
        event_type: &'static str,
        status: EventStatus,
        checkpoint: &'static str,
    ) -> Self {
        Self {
            job_id: job_id.as_ref().to_string(),
            task_id: None,
            stage: None,
            attempt: None,
            event_type,
            status,
            checkpoint,
            data: Value::Object(Default::default()),
            error_class: None,
            error_type: None,
            error_message: None,
            duration_ms: None,
        }
    }
    /// Sets the stage.
    pub fn stage(mut self, s: i32) -> Self {
        self.stage = Some(s);
        self
    }
    /// Sets the task.
    pub fn task(mut self, t: &str) -> Self {
        self.task_id = Some(t.to_string());
        self
    }
    /// Sets the attempt.
    pub fn attempt(mut self, a: i32) -> Self {
        self.attempt = Some(a);
        self
    }
    /// Sets the data.
    pub fn data(mut self, d: Value) -> Self {
        self.data = d;
        self
    }
    /// Sets the error fields.
    pub fn error(mut self, class: Option<&str>, error_type: &str, message: &str) -> Self {
        self.error_class = class.map(str::to_string);
        self.error_type = Some(error_type.chars().take(100).collect());
        self.error_message = Some(message.chars().take(1000).collect());
        self
    }
}

/// Inserts events in one statement.
pub async fn write(tx: &Transaction<'_>, events: &[Event]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached(sql::EVENT_INSERT_BATCH)
        .await
        .ctx(|| "preparing event insert".into())?;
    let job: Vec<&str> = events.iter().map(|e| e.job_id.as_str()).collect();
    let task: Vec<Option<&str>> = events.iter().map(|e| e.task_id.as_deref()).collect();
    let stage: Vec<Option<i32>> = events.iter().map(|e| e.stage).collect();
    let attempt: Vec<Option<i32>> = events.iter().map(|e| e.attempt).collect();
    let et: Vec<&str> = events.iter().map(|e| e.event_type).collect();
    let st: Vec<&str> = events.iter().map(|e| e.status.as_str()).collect();
    let cp: Vec<&str> = events.iter().map(|e| e.checkpoint).collect();
    let data: Vec<&Value> = events.iter().map(|e| &e.data).collect();
    let ec: Vec<Option<&str>> = events.iter().map(|e| e.error_class.as_deref()).collect();
    let ety: Vec<Option<&str>> = events.iter().map(|e| e.error_type.as_deref()).collect();
    let em: Vec<Option<&str>> = events.iter().map(|e| e.error_message.as_deref()).collect();
    let d: Vec<Option<i32>> = events.iter().map(|e| e.duration_ms).collect();
    tx.execute(
        &stmt,
        &[
            &job, &task, &stage, &attempt, &et, &st, &cp, &data, &ec, &ety, &em, &d,
        ],
    )
    .await
    .ctx(|| {
        format!(
            "writing {} events for job {}",
            events.len(),
            events[0].job_id
        )
    })?;
    Ok(())
}
