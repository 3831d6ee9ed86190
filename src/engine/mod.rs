//! The engine (CoreMachine): submit, job messages, task messages, fan-in, finalize and failures.
//!
//! Every state change, its `job_events` rows and the messages it causes commit in one transaction
//! (the outbox); the outbox is published right after commit. Transitions are guarded UPDATEs, and
//! a guard that matches nothing is handled explicitly (duplicate, stale, or mismatch).
//! The engine does not know whether it runs under the Functions host or the local emulator.

mod completions;
mod control;
pub mod events;
pub mod fan_in;
mod fan_out;
pub mod hooks;
mod job_ctx;
mod job_message;
mod malformed;
pub mod messages;
mod outcome;
mod panics;
mod poison;
pub(crate) mod readiness;
mod repair;
pub mod retry;
mod retry_failed;
mod stage_end;
mod stage_inputs;
mod stage_start;
mod submit;
mod task_batch;
mod task_end;
mod task_failure;
mod task_guard;
mod task_message;
mod unsendable;

pub use crate::model::{ids, state};

use std::sync::Arc;

use deadpool_postgres::Pool;

use crate::config::Settings;
use crate::jobs::Registry;
use crate::store::StoreError;
use crate::transport::SharedTransport;
use crate::transport::outbox::Outbox;

pub use control::{Cancelled, ControlError, ResubmitFrom, Resubmitted};
pub use ids::{JobId, TaskId};
pub(crate) use repair::load_job_ctx;
pub use submit::{SubmitError, SubmitRecord, Submitted};
pub use task_batch::BatchMessage;

/// How the message that triggered an invocation arrived (for records and checkpoints).
#[derive(Debug, Clone, Default)]
pub struct Delivery {
    /// Function (folder) name.
    pub function: String,
    /// Service Bus MessageId.
    pub message_id: Option<String>,
    /// Service Bus DeliveryCount.
    pub delivery_count: Option<i32>,
    /// Functions invocation id.
    pub invocation_id: Option<String>,
    /// Application properties of the message.
    pub properties: serde_json::Map<String, serde_json::Value>,
    /// Dead-letter reason (poison queue only).
    pub dead_letter_reason: Option<String>,
    /// Dead-letter description (poison queue only).
    pub dead_letter_description: Option<String>,
    /// Queue the dead letter came from (poison queue only).
    pub dead_letter_source: Option<String>,
}

/// What an invocation did; always acknowledged (the message is done).
#[derive(Debug, Clone, Default)]
pub struct Handled {
    /// Lines for the Functions response `Logs`.
    pub logs: Vec<String>,
}

impl Handled {
    /// One log line.
    pub fn log(line: impl Into<String>) -> Self {
        Self {
            logs: vec![line.into()],
        }
    }
}

/// A failure that must make the host redeliver the message (the work was not recorded).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    registry: Registry,
    settings: Arc<Settings>,
    outbox: Outbox,
    /// The crash-point hooks ([`hooks::NoHooks`] in production).
    hooks: Arc<dyn hooks::Hooks>,
    /// Grouped completions (started on first use; see completions.rs).
    completions: std::sync::OnceLock<completions::Grouper>,
    /// Whether the schema is ready for messages (readiness.rs).
    readiness: Arc<readiness::Readiness>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("registry", &self.inner.registry)
            .finish()
    }
}

impl Engine {
    /// An engine over `pool`, sending through `transport`, stopping at `hooks`' crash points
    /// (production: `Arc::new(hooks::NoHooks)`).
    pub fn new(
        pool: Pool,
        registry: Registry,
        settings: Arc<Settings>,
        transport: SharedTransport,
        hooks: Arc<dyn hooks::Hooks>,
    ) -> Self {
        let outbox = Outbox::new(pool.clone(), transport);
        Self {
            inner: Arc::new(Inner {
                pool,
                registry,
                settings,
                outbox,
                hooks,
                completions: std::sync::OnceLock::new(),
                readiness: Arc::default(),
            }),
        }
    }

    /// The same engine reporting `readiness` (call before the engine is cloned: a clone keeps
    /// the readiness it had).
    pub fn with_readiness(mut self, readiness: Arc<readiness::Readiness>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.readiness = readiness;
        }
        self
    }

    /// Whether the schema is ready for messages.
    pub fn readiness(&self) -> &readiness::Readiness {
        &self.inner.readiness
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }
    /// The job registry.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }
    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }
    /// The outbox.
    pub fn outbox(&self) -> &Outbox {
        &self.inner.outbox
    }
    /// The crash-point hooks.
    pub(crate) fn hooks(&self) -> &dyn hooks::Hooks {
        self.inner.hooks.as_ref()
    }

    /// Publishes committed outbox rows; a failure is reported and left for the janitor.
    pub(crate) async fn publish(&self, ids: &[i64]) {
        // Errors are reported inside publish (checkpoint + last_error on the rows); the rows stay,
        // unless the broker refused them for good: then their jobs fail (engine/unsendable.rs).
        let _ = self.publish_or_fail(ids).await;
    }
}
