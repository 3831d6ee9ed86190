//! Queue message bodies, with the earlier implementation's field names (DESIGN §6), and the
//! outbound envelopes (deterministic MessageId, application properties) built from them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::transport::OutboundMessage;

/// A job (stage) message on the jobs queue.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobMessage {
    /// Job id (64 hex).
    pub job_id: String,
    /// Job type.
    pub job_type: String,
    /// Job parameters (informational; the database row is authoritative).
    #[serde(default)]
    pub parameters: Value,
    /// The stage this message starts.
    pub stage: i32,
    /// Kept for compatibility; always `{}` (stage results live in the database).
    #[serde(default)]
    pub stage_results: Value,
    /// Kept for compatibility.
    #[serde(default)]
    pub retry_count: i32,
    /// When the message was created.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// Correlation id of the job.
    #[serde(default)]
    pub correlation_id: Option<String>,
    /// The job's attempt (1 + number of resubmits).
    #[serde(default = "one")]
    pub attempt: i32,
}

/// A task message on the tasks queue.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskMessage {
    /// Task id (64 hex).
    pub task_id: String,
    /// The job.
    pub parent_job_id: String,
    /// Job type.
    pub job_type: String,
    /// Task type.
    pub task_type: String,
    /// Stage.
    pub stage: i32,
    /// Position in the stage, as text (earlier format).
    #[serde(default)]
    pub task_index: String,
    /// Task parameters (informational; the database row is authoritative).
    #[serde(default)]
    pub parameters: Value,
    /// Kept for compatibility.
    #[serde(default)]
    pub parent_task_id: Option<String>,
    /// Which attempt this message starts (0 = first run).
    #[serde(default)]
    pub retry_count: i32,
    /// When the message was created.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// Correlation id of the job.
    #[serde(default)]
    pub correlation_id: Option<String>,
    /// The job attempt the task belongs to.
    #[serde(default = "one")]
    pub job_attempt: i32,
}

fn one() -> i32 {
    1
}

fn now_iso() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn props(
    job_id: &str,
    task_id: Option<&str>,
    stage: i32,
    traceparent: Option<&str>,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("job_id".into(), json!(job_id));
    if let Some(t) = task_id {
        m.insert("task_id".into(), json!(t));
    }
    m.insert("stage".into(), json!(stage));
    if let Some(tp) = traceparent {
        m.insert("traceparent".into(), json!(tp));
    }
    m
}

impl JobMessage {
    /// MessageId: job id + stage + attempt.
    pub fn message_id(&self) -> String {
        format!("{}:s{}:a{}", self.job_id, self.stage, self.attempt)
    }

    /// The outbound envelope for the jobs queue.
    pub fn to_outbound(&self, queue: &str, traceparent: Option<&str>) -> OutboundMessage {
        OutboundMessage {
            queue: queue.to_string(),
            message_id: self.message_id(),
            body: serde_json::to_string(self).expect("job message serialises"),
            properties: props(&self.job_id, None, self.stage, traceparent),
            correlation_id: self.correlation_id.clone(),
            scheduled_at: None,
            job_id: Some(self.job_id.clone()),
        }
    }

    /// A new message for `stage`.
    pub fn new(
        job_id: &str,
        job_type: &str,
        parameters: Value,
        stage: i32,
        attempt: i32,
        correlation_id: Option<String>,
    ) -> Self {
        Self {
            job_id: job_id.into(),
            job_type: job_type.into(),
            parameters,
            stage,
            stage_results: json!({}),
            retry_count: 0,
            timestamp: Some(now_iso()),
            correlation_id,
            attempt,
        }
    }
}

impl TaskMessage {
    /// MessageId: task id + attempt.
    pub fn message_id(&self) -> String {
        format!("{}:{}", self.task_id, self.retry_count)
    }

    /// The outbound envelope for the tasks queue.
    pub fn to_outbound(
        &self,
        queue: &str,
        traceparent: Option<&str>,
        scheduled_at: Option<DateTime<Utc>>,
    ) -> OutboundMessage {
        OutboundMessage {
            queue: queue.to_string(),
            message_id: self.message_id(),
            body: serde_json::to_string(self).expect("task message serialises"),
            properties: props(
                &self.parent_job_id,
                Some(&self.task_id),
                self.stage,
                traceparent,
            ),
            correlation_id: self.correlation_id.clone(),
            scheduled_at,
            job_id: Some(self.parent_job_id.clone()),
        }
    }

    /// Stamps the creation time.
    pub fn stamped(mut self) -> Self {
        self.timestamp = Some(now_iso());
        self
    }
}
