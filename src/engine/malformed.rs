//! Messages that cannot be processed: recorded in `app.message_failures` (against their job or
//! task when an id can be recovered) and acknowledged — never retried forever, never lost. A job
//! or task is failed only when the text is recognisably the message it waits for ([`decide`]);
//! a 64-hex string in garbage or another sender's encoding never fails a live job.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Value, json};

use super::events::{self, Event, EventStatus};
use super::job_ctx::JobCtx;
use super::task_message::Ending;
use super::{Delivery, Engine, EngineError, Handled};
use crate::store::{self, QueryContext, StoreError, sql};
use crate::telemetry::checkpoints as cp;

/// Characters of a bad message written to the log.
pub const LOG_EXCERPT: usize = 500;
/// Characters of a bad message stored with its failure record.
pub const STORED_EXCERPT: usize = 1000;

/// First `n` characters of `s`, with NUL characters (which PostgreSQL text cannot hold) escaped.
pub fn excerpt(s: &str, n: usize) -> String {
    s.chars()
        .take(n)
        .map(|c| if c == '\0' { '\u{FFFD}' } else { c })
        .collect()
}

static TASK_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#""task_id"\s*:\s*"([0-9a-fA-F]{64})""#).expect("valid regex"));
static JOB_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#""(?:parent_job_id|job_id)"\s*:\s*"([0-9a-fA-F]{64})""#).expect("valid regex")
});
static HEX_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:^|[^0-9a-fA-F])([0-9a-fA-F]{64})(?:[^0-9a-fA-F]|$)").expect("valid regex")
});

/// Ids recovered from a message that could not be parsed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveredIds {
    /// A job id named as such.
    pub job_id: Option<String>,
    /// A task id named as such.
    pub task_id: Option<String>,
    /// A bare 64-hex string of unknown kind.
    pub bare: Option<String>,
}

/// Recovers job / task ids from raw text: lenient JSON first, then field patterns, then any
/// 64-hex run; application properties fill what the body does not say.
pub fn recover_ids(raw: &str, props: &serde_json::Map<String, Value>) -> RecoveredIds {
    let hex = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_ascii_lowercase)
    };
    let mut out = RecoveredIds::default();
    let mut parsed = serde_json::from_str::<Value>(raw).ok();
    if let Some(Value::String(inner)) = &parsed {
        parsed = serde_json::from_str::<Value>(inner).ok();
    }
    if let Some(Value::Object(o)) = &parsed {
        out.task_id = hex(o.get("task_id"));
        out.job_id = hex(o.get("parent_job_id")).or_else(|| hex(o.get("job_id")));
    }
    if out.task_id.is_none() {
        out.task_id = TASK_RE.captures(raw).map(|c| c[1].to_ascii_lowercase());
    }
    if out.job_id.is_none() {
        out.job_id = JOB_RE.captures(raw).map(|c| c[1].to_ascii_lowercase());
    }
    out.task_id = out.task_id.or_else(|| hex(props.get("task_id")));
    out.job_id = out.job_id.or_else(|| hex(props.get("job_id")));
    if out.task_id.is_none() && out.job_id.is_none() {
        out.bare = HEX_RE.captures(raw).map(|c| c[1].to_ascii_lowercase());
    }
    out
}

/// Which queue a malformed message came from: it can only be the message its job or task waits
/// for if it names that job (jobs queue) or task (tasks queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// A job (stage) message.
    JobMessage,
    /// A task message.
    TaskMessage,
}

/// What a recovered id names, as the database knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Known {
    /// A task: its status.
    Task {
        /// Task status.
        status: String,
    },
    /// A job: its status and current stage.
    Job {
        /// Job status.
        status: String,
        /// Current stage.
        stage: i32,
    },
}

/// What a malformed message does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MalformedOutcome {
    /// The body names a task waiting for its message in its `task_id` field: the task fails.
    FailTask,
    /// The body names a job waiting for this stage's message in its `job_id` field: it fails.
    FailJob,
    /// Anything else: recorded and acknowledged; no live job fails because of another
    /// sender's encoding or a 64-hex string somewhere in the text.
    Record,
}

/// The stage a broken body names (`"stage": N`).
fn recover_stage(raw: &str) -> Option<i32> {
    static STAGE_RE: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r#""stage"\s*:\s*"?(\d{1,9})\b"#).expect("valid regex"));
    STAGE_RE.captures(raw).and_then(|c| c[1].parse().ok())
}

/// Decides: a job or task fails only when the text is recognisably the message it waits for:
/// its id is named in the body's own field (not a bare hex string, not an application property)
/// on the queue that carries its messages, it is still waiting (`queued`), and for a job the
/// named stage (when readable) is the one it waits for.
pub fn decide(expected: Expected, named: &Known, stage_named: Option<i32>) -> MalformedOutcome {
    match (expected, named) {
        (Expected::TaskMessage, Known::Task { status }) if status == "queued" => {
            MalformedOutcome::FailTask
        }
        (Expected::JobMessage, Known::Job { status, stage })
            if status == "queued" && stage_named.is_none_or(|s| s == *stage) =>
        {
            MalformedOutcome::FailJob
        }
        _ => MalformedOutcome::Record,
    }
}

impl Engine {
    /// Handles a message whose body could not be parsed or validated (see [`decide`]).
    pub async fn on_malformed(
        &self,
        raw: &str,
        d: &Delivery,
        expected: Expected,
        error: &str,
    ) -> Result<Handled, EngineError> {
        tracing::warn!(
            checkpoint = cp::MESSAGE_MALFORMED,
            function = %d.function,
            message_id = d.message_id.as_deref().unwrap_or(""),
            error = %error,
            excerpt = %excerpt(raw, LOG_EXCERPT),
            "malformed message"
        );
        // Named in the body's own fields, versus merely mentioned (properties, bare hex).
        let named = recover_ids(raw, &serde_json::Map::new());
        let mentioned = recover_ids(raw, &d.properties);
        let client = store::client(self.pool(), "recording a malformed message").await?;
        // Resolve what the recovered ids really are; the first known one is the subject.
        let mut task: Option<(String, String, String, i32, i32, String)> = None;
        for candidate in [
            named.task_id.as_deref(),
            mentioned.task_id.as_deref(),
            mentioned.bare.as_deref(),
        ]
        .into_iter()
        .flatten()
        {
            if let Some(r) = client
                .query_opt(sql::TASK_PARENT, &[&candidate])
                .await
                .ctx(|| format!("looking up task {candidate}"))?
            {
                task = Some((
                    candidate.to_string(),
                    r.get(0),
                    r.get(1),
                    r.get(2),
                    r.get(3),
                    r.get(4),
                ));
                break;
            }
        }
        let mut job: Option<(String, String, i32)> = None;
        if task.is_none() {
            for candidate in [
                named.job_id.as_deref(),
                mentioned.job_id.as_deref(),
                mentioned.bare.as_deref(),
            ]
            .into_iter()
            .flatten()
            {
                if let Some(r) = client
                    .query_opt(sql::JOB_STAGE_STATE, &[&candidate])
                    .await
                    .ctx(|| format!("looking up job {candidate}"))?
                {
                    job = Some((candidate.to_string(), r.get(0), r.get(1)));
                    break;
                }
            }
        }
        drop(client);
        let outcome = match (&task, &job) {
            (Some((id, _, status, ..)), _) if named.task_id.as_deref() == Some(id.as_str()) => {
                decide(
                    expected,
                    &Known::Task {
                        status: status.clone(),
                    },
                    None,
                )
            }
            (None, Some((id, status, stage))) if named.job_id.as_deref() == Some(id.as_str()) => {
                decide(
                    expected,
                    &Known::Job {
                        status: status.clone(),
                        stage: *stage,
                    },
                    recover_stage(raw),
                )
            }
            _ => MalformedOutcome::Record,
        };
        let job_id = task
            .as_ref()
            .map(|t| t.1.clone())
            .or_else(|| job.as_ref().map(|j| j.0.clone()));
        self.record_message_failure(
            d,
            job_id.as_deref(),
            task.as_ref().map(|t| t.0.as_str()),
            "malformed",
            error,
            raw,
        )
        .await?;
        let reason = format!("malformed message on {}: {error}", d.function);
        let mut fields = cp::Fields::job(job_id.as_deref().unwrap_or(""))
            .invocation(d.invocation_id.as_deref())
            .extra("error", error)
            .extra("outcome", format!("{outcome:?}"));
        match (outcome, &task, &job_id) {
            (MalformedOutcome::FailTask, Some((task_id, _, _, stage, seq, task_type)), _) => {
                fields = fields.task(task_id).stage(*stage);
                let ending = Ending {
                    status: "failed",
                    result: None,
                    error_details: Some(format!("[permanent] MalformedMessage: {error}")),
                    error_class: Some("permanent"),
                    error_type: Some("MalformedMessage"),
                    event_type: "task_failed",
                    event_status: "failure",
                    checkpoint: cp::MESSAGE_MALFORMED,
                    event_data: json!({"message_excerpt": excerpt(raw, STORED_EXCERPT), "function": d.function}),
                    unclaimed: true,
                };
                let who = format!("task {task_id} (stage {stage}, index {seq}, type {task_type})");
                let (_, out) = self.end_task(task_id, -1, ending, Some(&who)).await?;
                self.publish(&out).await;
            }
            (MalformedOutcome::FailJob, _, Some(job_id)) => {
                let mut client =
                    store::client(self.pool(), "failing a job after a malformed message").await?;
                let tx = client
                    .transaction()
                    .await
                    .ctx(|| format!("starting to fail job {job_id}"))?;
                if let Some((job, _, _)) = JobCtx::load_named(&tx, job_id).await? {
                    events::write(
                        &tx,
                        &[Event::job(job_id, "message_malformed", EventStatus::Failure, cp::MESSAGE_MALFORMED)
                            .data(json!({"function": d.function, "message_excerpt": excerpt(raw, STORED_EXCERPT)}))
                            .error(Some("permanent"), "MalformedMessage", error)],
                    )
                    .await?;
                    self.fail_job_in_tx(
                        &tx,
                        &job,
                        None,
                        &reason,
                        json!({"reason": "malformed_message"}),
                    )
                    .await?;
                }
                tx.commit()
                    .await
                    .ctx(|| format!("committing failure of job {job_id}"))?;
            }
            _ => {}
        }
        cp::emit_warn(cp::MESSAGE_MALFORMED, &fields);
        let what = match outcome {
            MalformedOutcome::FailTask => "; its task failed",
            MalformedOutcome::FailJob => "; its job failed",
            MalformedOutcome::Record if job_id.is_some() => {
                "; the job was left alone (the text is not the message it waits for)"
            }
            MalformedOutcome::Record => "",
        };
        Ok(Handled::log(format!(
            "malformed message recorded{}{what}; acknowledged",
            job_id
                .map(|j| format!(" against job {j}"))
                .unwrap_or_default()
        )))
    }

    /// Records a message that could not be processed.
    pub(crate) async fn record_message_failure(
        &self,
        d: &Delivery,
        job_id: Option<&str>,
        task_id: Option<&str>,
        reason: &str,
        error: &str,
        raw: &str,
    ) -> Result<i64, StoreError> {
        let client = store::client(self.pool(), "recording a message failure").await?;
        let row = client
            .query_one(
                sql::MESSAGE_FAILURE_INSERT,
                &[
                    &d.function,
                    &d.message_id.as_deref().map(|m| excerpt(m, 128)),
                    &d.delivery_count,
                    &job_id,
                    &task_id,
                    &reason,
                    &excerpt(error, 4000),
                    &excerpt(raw, STORED_EXCERPT),
                ],
            )
            .await
            .ctx(|| format!("recording a {reason} message on {}", d.function))?;
        Ok(row.get(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_message_a_job_or_task_waits_for_fails_it() {
        use Expected::*;
        use MalformedOutcome::*;
        let task = |s: &str| Known::Task { status: s.into() };
        let job = |s: &str, stage| Known::Job {
            status: s.into(),
            stage,
        };
        let cases = [
            (TaskMessage, task("queued"), None, FailTask),
            (TaskMessage, task("processing"), None, Record),
            (TaskMessage, task("completed"), None, Record),
            (JobMessage, task("queued"), None, Record),
            (JobMessage, job("queued", 2), Some(2), FailJob),
            (JobMessage, job("queued", 2), None, FailJob),
            (JobMessage, job("queued", 2), Some(1), Record),
            (JobMessage, job("processing", 2), Some(2), Record),
            (JobMessage, job("failed", 2), None, Record),
            (TaskMessage, job("queued", 1), None, Record),
        ];
        for (expected, known, stage, want) in cases {
            assert_eq!(
                decide(expected, &known, stage),
                want,
                "{expected:?} {known:?} {stage:?}"
            );
        }
        assert_eq!(recover_stage(r#"{"stage": 3, "x"#), Some(3));
        assert_eq!(recover_stage(r#"{"stage": "one""#), None);
    }

    #[test]
    fn recovers_ids_from_broken_json_and_bare_text() {
        let t = "a".repeat(64);
        let j = "b".repeat(64);
        let broken = format!(r#"{{"task_id": "{t}", "parent_job_id": "{j}", "stage": oops"#);
        let r = recover_ids(&broken, &Default::default());
        assert_eq!(r.task_id.as_deref(), Some(t.as_str()));
        assert_eq!(r.job_id.as_deref(), Some(j.as_str()));
        let bare = recover_ids(&format!("garbage {j} more"), &Default::default());
        assert_eq!(bare.bare.as_deref(), Some(j.as_str()));
        assert_eq!(
            recover_ids("nothing here", &Default::default()),
            RecoveredIds::default()
        );
    }
}
