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

/// Task parameters larger than this (serialised) are left out of the message; the handler reads
/// them from the task row, which it does anyway (the claim returns them). A fan-in task that
/// receives thousands of results would otherwise exceed Service Bus's message size (256 KB on
/// Standard) and never be sent.
pub const MAX_INLINE_PARAMETERS_BYTES: usize = 32 * 1024;

impl TaskMessage {
    /// The body for the queue: the message as JSON, with parameters over
    /// [`MAX_INLINE_PARAMETERS_BYTES`] replaced by `{"stored_in_database": true, "size_bytes": n}`.
    pub fn body(&self) -> String {
        let body = serde_json::to_string(self).expect("task message serialises");
        if body.len() <= MAX_INLINE_PARAMETERS_BYTES {
            return body; // the parameters are part of the body: no larger than it
        }
        let params = serde_json::to_string(&self.parameters).map_or(0, |p| p.len());
        if params <= MAX_INLINE_PARAMETERS_BYTES {
            return body;
        }
        let slim = TaskMessage {
            parameters: json!({"stored_in_database": true, "size_bytes": params}),
            ..self.clone()
        };
        serde_json::to_string(&slim).expect("task message serialises")
    }

    /// MessageId: task id + attempt (`{task_id}:{retry_count}`). A retry of failed tasks runs a
    /// task again under the same id in a later job attempt, so from job attempt 2 on the attempt
    /// is part of it (`{task_id}:a{job_attempt}:{retry_count}`): Service Bus duplicate detection
    /// would otherwise drop the new attempt's message as a copy of the first one's.
    pub fn message_id(&self) -> String {
        if self.job_attempt <= 1 {
            format!("{}:{}", self.task_id, self.retry_count)
        } else {
            format!(
                "{}:a{}:{}",
                self.task_id, self.job_attempt, self.retry_count
            )
        }
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
            body: self.body(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn task(parameters: Value) -> TaskMessage {
        TaskMessage {
            task_id: "a".repeat(64),
            parent_job_id: "b".repeat(64),
            job_type: "t".into(),
            task_type: "t".into(),
            stage: 3,
            task_index: "0".into(),
            parameters,
            parent_task_id: None,
            retry_count: 0,
            timestamp: None,
            correlation_id: None,
            job_attempt: 1,
        }
    }

    #[test]
    fn a_later_job_attempt_of_the_same_task_has_another_message_id() {
        let first = task(json!({}));
        let again = TaskMessage {
            job_attempt: 2,
            ..first.clone()
        };
        assert_eq!(first.message_id(), format!("{}:0", "a".repeat(64)));
        assert_ne!(first.message_id(), again.message_id());
    }

    #[test]
    fn small_parameters_travel_in_the_message() {
        let m = task(json!({"blob_name": "a.tif"}));
        let back: TaskMessage = serde_json::from_str(&m.body()).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn large_parameters_stay_in_the_database_and_the_message_says_so() {
        let results: Vec<Value> = (0..5000)
            .map(|i| json!({"task_id": format!("{i:064}"), "result": {"size": i}}))
            .collect();
        let m = task(json!({"previous_results": results}));
        let body = m.body();
        assert!(body.len() < 2 * 1024, "{} bytes", body.len());
        let back: TaskMessage = serde_json::from_str(&body).unwrap();
        assert_eq!(back.parameters["stored_in_database"], json!(true));
        let size = back.parameters["size_bytes"].as_u64().unwrap() as usize;
        assert_eq!(size, serde_json::to_string(&m.parameters).unwrap().len());
        assert_eq!((back.task_id, back.retry_count), (m.task_id, m.retry_count));
    }
}
