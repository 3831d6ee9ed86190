//! Messages that cannot be processed: recorded in `app.message_failures` (against their job or
//! task when an id can be recovered) and acknowledged — never retried forever, never lost. A job
//! or task is failed only when the text is recognisably the message it waits for ([`decide`]);
//! a 64-hex string in garbage or another sender's encoding never fails a live job.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Value, json};

use super::events::{self, Event, EventStatus};
use super::ids::{JobId, TaskId};
use super::job_ctx::JobCtx;
use super::outcome::{self, Failure};
use super::{Delivery, Engine, EngineError, Handled};
use crate::model::{JobStatus, TaskStatus};
use crate::store::jobs::{self, JobState};
use crate::store::message_failures::{self, MessageFailure};
use crate::store::tasks::{self, TaskParent};
use crate::store::{self, QueryContext, StoreError};
use crate::telemetry::checkpoints as cp;

pub(super) use super::outcome::Expected;

/// Characters of a bad message written to the log.
pub(super) const LOG_EXCERPT: usize = 500;
/// Characters of a bad message stored with its failure record.
pub(super) const STORED_EXCERPT: usize = 1000;

/// First `n` characters of `s`, with NUL characters (which PostgreSQL text cannot hold) escaped.
pub(super) fn excerpt(s: &str, n: usize) -> String {
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
pub(super) struct RecoveredIds {
    /// A job id named as such.
    pub job_id: Option<String>,
    /// A task id named as such.
    pub task_id: Option<String>,
    /// A bare 64-hex string of unknown kind.
    pub bare: Option<String>,
}

/// Recovers job / task ids from raw text: lenient JSON first, then field patterns, then any
/// 64-hex run; application properties fill what the body does not say.
pub(super) fn recover_ids(raw: &str, props: &serde_json::Map<String, Value>) -> RecoveredIds {
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

/// What a recovered id names, as the database knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Known {
    /// A task: its status.
    Task {
        /// Task status.
        status: TaskStatus,
    },
    /// A job: its status and current stage.
    Job {
        /// Job status.
        status: JobStatus,
        /// Current stage.
        stage: i32,
    },
}

/// What a malformed message does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MalformedOutcome {
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
pub(super) fn decide(
    expected: Expected,
    named: &Known,
    stage_named: Option<i32>,
) -> MalformedOutcome {
    match (expected, named) {
        (
            Expected::TaskMessage,
            Known::Task {
                status: TaskStatus::Queued,
            },
        ) => MalformedOutcome::FailTask,
        (
            Expected::JobMessage,
            Known::Job {
                status: JobStatus::Queued,
                stage,
            },
        ) if stage_named.is_none_or(|s| s == *stage) => MalformedOutcome::FailJob,
        _ => MalformedOutcome::Record,
    }
}

/// What a malformed message's recovered ids name: the first task that exists, else the first
/// job, with where it is.
#[derive(Debug, Clone, Default)]
struct Subject {
    /// The task, when one of the ids names one.
    task: Option<TaskParent>,
    /// Otherwise the job one of them names, and where it is.
    job: Option<(JobId, JobState)>,
}

impl Subject {
    /// The job the message is recorded against.
    fn job_id(&self) -> Option<&JobId> {
        self.task
            .as_ref()
            .map(|t| &t.job_id)
            .or(self.job.as_ref().map(|j| &j.0))
    }
}

/// [`decide`] for what was found: only an id named in the body's own field (`named`) can make
/// the message the one its task or job waits for.
fn judge(
    expected: Expected,
    named: &RecoveredIds,
    subject: &Subject,
    stage_named: Option<i32>,
) -> MalformedOutcome {
    match (&subject.task, &subject.job) {
        (Some(t), _) if named.task_id.as_deref() == Some(t.task_id.as_str()) => {
            decide(expected, &Known::Task { status: t.status }, None)
        }
        (None, Some((id, state))) if named.job_id.as_deref() == Some(id.as_str()) => decide(
            expected,
            &Known::Job {
                status: state.status,
                stage: state.stage,
            },
            stage_named,
        ),
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
        let subject = self.malformed_subject(&named, &mentioned).await?;
        let outcome = judge(expected, &named, &subject, recover_stage(raw));
        let job_id = subject.job_id();
        self.record_message_failure(
            d,
            job_id.map(JobId::as_str),
            subject.task.as_ref().map(|t| t.task_id.as_str()),
            "malformed",
            error,
            raw,
        )
        .await?;
        let mut fields = cp::Fields::job(job_id.map(JobId::as_str).unwrap_or(""))
            .invocation(d.invocation_id.as_deref())
            .extra("error", error)
            .extra("outcome", format!("{outcome:?}"));
        match (outcome, &subject.task, job_id) {
            (MalformedOutcome::FailTask, Some(t), _) => {
                fields = fields.task(&t.task_id).stage(t.stage);
                self.fail_malformed_task(t, raw, d, error).await?;
            }
            (MalformedOutcome::FailJob, _, Some(job_id)) => {
                self.fail_malformed_job(job_id, raw, d, error).await?;
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

    /// Resolves what the recovered ids really are: the first that names a task (named task id,
    /// mentioned task id, bare id), else the first that names a job.
    async fn malformed_subject(
        &self,
        named: &RecoveredIds,
        mentioned: &RecoveredIds,
    ) -> Result<Subject, StoreError> {
        let client = store::client(self.pool(), "recording a malformed message").await?;
        let mut subject = Subject::default();
        let task_candidates = [&named.task_id, &mentioned.task_id, &mentioned.bare];
        for candidate in task_candidates.into_iter().flatten() {
            let Ok(id) = TaskId::parse(candidate) else {
                continue;
            };
            if let Some(t) = tasks::parent(&client, &id).await? {
                subject.task = Some(t);
                return Ok(subject);
            }
        }
        let job_candidates = [&named.job_id, &mentioned.job_id, &mentioned.bare];
        for candidate in job_candidates.into_iter().flatten() {
            let Ok(id) = JobId::parse(candidate) else {
                continue;
            };
            if let Some(state) = jobs::stage_state(&client, &id).await? {
                subject.job = Some((id, state));
                break;
            }
        }
        Ok(subject)
    }

    /// The queued task a malformed task message names: failed.
    async fn fail_malformed_task(
        &self,
        t: &TaskParent,
        raw: &str,
        d: &Delivery,
        error: &str,
    ) -> Result<(), StoreError> {
        let ending = outcome::failed(
            Failure {
                details: format!("[permanent] MalformedMessage: {error}"),
                class: "permanent",
                error_type: "MalformedMessage",
                checkpoint: cp::MESSAGE_MALFORMED,
                event_data: json!({"message_excerpt": excerpt(raw, STORED_EXCERPT), "function": d.function}),
            },
            true,
        );
        let who = outcome::task_label(&t.task_id, t.stage, t.task_index, &t.task_type);
        let (_, out) = self.end_task(&t.task_id, -1, ending, Some(&who)).await?;
        self.publish(&out).await;
        Ok(())
    }

    /// The queued job a malformed stage message names: failed, with the malformed message's event.
    async fn fail_malformed_job(
        &self,
        job_id: &JobId,
        raw: &str,
        d: &Delivery,
        error: &str,
    ) -> Result<(), StoreError> {
        let reason = format!("malformed message on {}: {error}", d.function);
        let mut client =
            store::client(self.pool(), "failing a job after a malformed message").await?;
        let tx = client
            .transaction()
            .await
            .ctx(|| format!("starting to fail job {job_id}"))?;
        if let Some((job, _, _)) = JobCtx::load(&tx, job_id).await? {
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
            .ctx(|| format!("committing failure of job {job_id}"))
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
        message_failures::insert(
            &client,
            &MessageFailure {
                function: &d.function,
                message_id: d.message_id.as_deref().map(|m| excerpt(m, 128)),
                delivery_count: d.delivery_count,
                job_id,
                task_id,
                reason,
                error_message: excerpt(error, 4000),
                raw_excerpt: excerpt(raw, STORED_EXCERPT),
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_message_a_job_or_task_waits_for_fails_it() {
        use Expected::*;
        use MalformedOutcome::*;
        let task = |s: &str| Known::Task {
            status: s.parse().unwrap(),
        };
        let job = |s: &str, stage| Known::Job {
            status: s.parse().unwrap(),
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

    #[test]
    fn only_an_id_named_in_the_body_can_fail_what_it_names() {
        let t = "a".repeat(64);
        let j = "b".repeat(64);
        let task = TaskParent {
            task_id: TaskId::parse(&t).unwrap(),
            job_id: JobId::parse(&j).unwrap(),
            status: TaskStatus::Queued,
            stage: 1,
            task_index: 0,
            task_type: "t".into(),
        };
        let job = (
            JobId::parse(&j).unwrap(),
            JobState {
                status: JobStatus::Queued,
                stage: 2,
                attempt: 1,
            },
        );
        let named_task = RecoveredIds {
            task_id: Some(t.clone()),
            ..Default::default()
        };
        let named_job = RecoveredIds {
            job_id: Some(j.clone()),
            ..Default::default()
        };
        let by_task = Subject {
            task: Some(task),
            job: None,
        };
        let by_job = Subject {
            task: None,
            job: Some(job),
        };
        use Expected::*;
        use MalformedOutcome::*;
        let cases = [
            (TaskMessage, &named_task, &by_task, None, FailTask),
            (TaskMessage, &named_job, &by_task, None, Record),
            (JobMessage, &named_job, &by_job, Some(2), FailJob),
            (JobMessage, &named_job, &by_job, Some(1), Record),
            (JobMessage, &named_task, &by_job, None, Record),
            (JobMessage, &named_job, &Subject::default(), None, Record),
        ];
        for (expected, named, subject, stage, want) in cases {
            assert_eq!(
                judge(expected, named, subject, stage),
                want,
                "{expected:?} {named:?} {subject:?} {stage:?}"
            );
        }
        assert_eq!(by_task.job_id().map(JobId::as_str), Some(j.as_str()));
    }
}
