//! The checkpoint catalogue: every engine step has a name here, and is emitted as one structured
//! `tracing` event with the same field names (they become `customDimensions` in Application
//! Insights; the KQL in `scripts/kql/` depends on them, so rename nothing casually).

use std::fmt::Display;

macro_rules! checkpoints {
    ($($name:ident),* $(,)?) => {
        $(
            #[doc = concat!("Checkpoint `", stringify!($name), "`.")]
            pub const $name: &str = stringify!($name);
        )*
        /// Every checkpoint name.
        pub const ALL: &[&str] = &[$($name),*];
    };
}

checkpoints!(
    JOB_SUBMITTED,
    JOB_SUBMIT_IDEMPOTENT,
    JOB_MESSAGE_RECEIVED,
    JOB_MESSAGE_DUPLICATE,
    JOB_MESSAGE_IMPOSSIBLE,
    STAGE_TASKS_CREATED,
    STAGE_CREATE_TASKS_FAILED,
    TASK_MESSAGE_RECEIVED,
    TASK_CLAIMED,
    TASK_TAKEN_OVER,
    TASK_HANDED_BACK,
    TASK_MESSAGE_DUPLICATE,
    TASK_COMPLETED,
    TASK_COMPLETION_LOST,
    TASK_CLAIM_RELEASED,
    TASK_CANCELLED_LATE,
    TASK_RETRY_SCHEDULED,
    TASK_FAILED,
    TASK_PANICKED,
    STAGE_COMPLETED,
    STAGE_ADVANCE_QUEUED,
    STAGE_ADVANCE_SKIPPED,
    STAGE_FAILED,
    JOB_COMPLETED,
    JOB_FAILED,
    JOB_CANCELLED,
    JOB_RESUBMITTED,
    FINALIZE_FALLBACK,
    MESSAGE_MALFORMED,
    MESSAGE_TOO_LARGE,
    MESSAGE_UNKNOWN_JOB,
    MESSAGE_UNKNOWN_TASK,
    MESSAGE_UNKNOWN_JOB_TYPE,
    POISON_RECEIVED,
    POISON_EXPECTED,
    POISON_AFTER_COMPLETION,
    POISON_RECONCILED,
    POISON_UNMATCHED,
    STATE_MISMATCH,
    OUTBOX_PUBLISHED,
    OUTBOX_PUBLISH_FAILED,
    OUTBOX_UNSENDABLE,
    JANITOR_RUN_STARTED,
    JANITOR_LEASE_EXPIRED_REQUEUED,
    JANITOR_LEASE_EXPIRED_FAILED,
    JANITOR_STAGE_ADVANCED,
    JANITOR_JOB_REDRIVEN,
    JANITOR_JOB_FAILED,
    JANITOR_OUTBOX_REPUBLISHED,
    JANITOR_RUN_COMPLETED,
    JANITOR_RUN_FAILED,
    RETENTION_RUN_COMPLETED,
    RETENTION_RUN_FAILED,
    INVOCATION_FAILED,
    SERVICE_BUS_SEND,
    SERVICE_BUS_SEND_RETRY,
    SERVICE_BUS_SEND_FAILED,
    AZURE_CALL_RETRY,
    AZURE_CALL_FAILED,
    DB_TOKEN_FAILED,
    DB_TOKEN_REFRESHED,
    SCHEMA_NOT_READY,
    SCHEMA_READY,
    CIRCUIT_OPENED,
    CIRCUIT_HALF_OPEN,
    CIRCUIT_CLOSED,
    CIRCUIT_REJECTED,
);

pub use super::truncate::{MAX_FIELD_BYTES, truncate_chars};

/// The standard fields of a checkpoint (empty ones are left out).
#[derive(Debug, Default, Clone)]
pub struct Fields {
    /// Job id.
    pub job_id: Option<String>,
    /// Job type.
    pub job_type: Option<String>,
    /// Task id.
    pub task_id: Option<String>,
    /// Task type (for task checkpoints).
    pub task_type: Option<String>,
    /// Stage.
    pub stage: Option<i32>,
    /// Attempt.
    pub attempt: Option<i32>,
    /// Correlation id of the job.
    pub correlation_id: Option<String>,
    /// Functions invocation id.
    pub invocation_id: Option<String>,
    /// Duration of the step.
    pub duration_ms: Option<u64>,
    /// Anything else, as key=value.
    pub extra: Vec<(&'static str, String)>,
}

impl Fields {
    /// Fields for a job.
    pub fn job(job_id: impl Display) -> Self {
        Self {
            job_id: Some(job_id.to_string()),
            ..Self::default()
        }
    }
    /// Adds the task id.
    pub fn task(mut self, task_id: impl Display) -> Self {
        self.task_id = Some(task_id.to_string());
        self
    }
    /// Adds the task type.
    pub fn task_type(mut self, t: impl Display) -> Self {
        self.task_type = Some(t.to_string());
        self
    }
    /// Adds the stage.
    pub fn stage(mut self, stage: i32) -> Self {
        self.stage = Some(stage);
        self
    }
    /// Adds the attempt.
    pub fn attempt(mut self, attempt: i32) -> Self {
        self.attempt = Some(attempt);
        self
    }
    /// Adds the job type.
    pub fn job_type(mut self, t: impl Display) -> Self {
        self.job_type = Some(t.to_string());
        self
    }
    /// Adds the correlation id.
    pub fn correlation(mut self, c: Option<&str>) -> Self {
        self.correlation_id = c.map(str::to_string);
        self
    }
    /// Adds the invocation id.
    pub fn invocation(mut self, i: Option<&str>) -> Self {
        self.invocation_id = i.map(str::to_string);
        self
    }
    /// Adds the duration.
    pub fn duration_ms(mut self, ms: u64) -> Self {
        self.duration_ms = Some(ms);
        self
    }
    /// Adds a free field.
    pub fn extra(mut self, k: &'static str, v: impl Display) -> Self {
        self.extra.push((k, v.to_string()));
        self
    }
    fn extra_json(&self) -> String {
        if self.extra.is_empty() {
            return String::new();
        }
        let m: serde_json::Map<String, serde_json::Value> = self
            .extra
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    serde_json::Value::String(truncate_chars(v, 2000).into_owned()),
                )
            })
            .collect();
        serde_json::Value::Object(m).to_string()
    }
}

/// Severity of a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Normal progress.
    Info,
    /// Something unusual that was handled.
    Warn,
    /// A failure.
    Error,
}

/// Emits a checkpoint at info level.
pub fn emit(name: &'static str, f: &Fields) {
    emit_at(Level::Info, name, f, None);
}

/// Emits a checkpoint at warning level.
pub fn emit_warn(name: &'static str, f: &Fields) {
    emit_at(Level::Warn, name, f, None);
}

/// Emits an error checkpoint with the error's type, message and chain.
pub fn emit_error(
    name: &'static str,
    f: &Fields,
    error_type: &str,
    e: &(dyn std::error::Error + 'static),
) {
    let mut chain = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        cur = s.source();
    }
    emit_at(
        Level::Error,
        name,
        f,
        Some(ErrorFields {
            class: None,
            error_type,
            message: &e.to_string(),
            chain: &chain,
        }),
    );
}

/// Error fields of a checkpoint.
#[derive(Debug, Clone, Copy)]
pub struct ErrorFields<'a> {
    /// transient / permanent.
    pub class: Option<&'a str>,
    /// Error type name.
    pub error_type: &'a str,
    /// Message.
    pub message: &'a str,
    /// Full chain.
    pub chain: &'a str,
}

/// Emits a checkpoint with explicit level and optional error fields.
pub fn emit_at(level: Level, name: &'static str, f: &Fields, err: Option<ErrorFields<'_>>) {
    let t = |s: &Option<String>| {
        s.as_deref()
            .map(|v| truncate_chars(v, MAX_FIELD_BYTES).into_owned())
    };
    let (class, etype, emsg, echain) = match err {
        Some(e) => (
            e.class.map(str::to_string),
            Some(truncate_chars(e.error_type, 200).into_owned()),
            Some(truncate_chars(e.message, MAX_FIELD_BYTES).into_owned()),
            Some(truncate_chars(e.chain, MAX_FIELD_BYTES).into_owned()),
        ),
        None => (None, None, None, None),
    };
    let extra = f.extra_json();
    macro_rules! ev {
        ($lvl:ident) => {
            tracing::$lvl!(
                checkpoint = name,
                job_id = t(&f.job_id),
                job_type = t(&f.job_type),
                task_id = t(&f.task_id),
                task_type = t(&f.task_type),
                stage = f.stage,
                attempt = f.attempt,
                correlation_id = t(&f.correlation_id),
                invocation_id = t(&f.invocation_id),
                duration_ms = f.duration_ms,
                error_class = class,
                error_type = etype,
                error_message = emsg,
                error_chain = echain,
                extra = if extra.is_empty() {
                    None
                } else {
                    Some(extra.as_str())
                },
                "{name}"
            )
        };
    }
    match level {
        Level::Info => ev!(info),
        Level::Warn => ev!(warn),
        Level::Error => ev!(error),
    }
}
