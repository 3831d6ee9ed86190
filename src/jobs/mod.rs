//! Job definitions: the [`Job`] trait, task handlers, and the [`Registry`] of built-in job types.
//!
//! A job type declares its parameters, its stages (name, task type, failure policy), how a stage's
//! tasks are built from the previous stage's results, and how the job is finalized. Task handlers
//! are registered by task type and return a value or a classified [`TaskError`].
//! `docs/job-types.md` walks through adding one.

mod hello_world;
pub mod ingest_vector;
pub mod list_container_contents;
mod noop_fanout;
mod on_first_use;
pub mod params;
pub mod process_raster;
pub mod process_raster_collection;
mod tiff;
pub(crate) mod work_dir;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{Map, Value};

pub use params::{FieldError, ParamKind, ParamSpec};

/// How a stage reacts to failed tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "policy", rename_all = "snake_case")]
pub enum StagePolicy {
    /// The first failed task fails the job (default).
    FailFast,
    /// The stage advances once every task is terminal; failed tasks are listed in stage_results.
    TolerateFailures,
    /// The stage advances when at least `k` tasks succeeded, and fails otherwise.
    MinSuccess {
        /// Successes needed.
        k: u32,
    },
    /// The stage advances once every task is terminal while the job's failed tasks, counted over
    /// this and every earlier stage, stay within the budget the job parameter `param` holds (an
    /// integer; absent = 0). The failure that goes beyond it fails the job at once, as fail-fast
    /// does, so a budget of 0 is fail-fast.
    MaxFailures {
        /// The job parameter holding the budget (e.g. `max_failures`).
        param: &'static str,
    },
}

/// One stage of a job type.
#[derive(Debug, Clone)]
pub struct StageDef {
    /// Stage name (e.g. "greeting").
    pub name: &'static str,
    /// Task type run by every task of the stage.
    pub task_type: &'static str,
    /// Failure policy.
    pub policy: StagePolicy,
}

impl StageDef {
    /// A fail-fast stage.
    pub const fn new(name: &'static str, task_type: &'static str) -> Self {
        Self {
            name,
            task_type,
            policy: StagePolicy::FailFast,
        }
    }
    /// Sets the policy.
    pub const fn policy(mut self, policy: StagePolicy) -> Self {
        self.policy = policy;
        self
    }
}

/// The result of one task of the previous stage.
#[derive(Debug, Clone)]
pub struct PreviousResult {
    /// Task id.
    pub task_id: String,
    /// Position in its stage.
    pub task_index: i32,
    /// The handler's result (completed tasks only).
    pub result: Value,
}

/// What `create_tasks` gets.
#[derive(Debug)]
pub struct StageInput<'a> {
    /// Job id.
    pub job_id: &'a str,
    /// The stage to create tasks for (1-based).
    pub stage: i32,
    /// Validated job parameters.
    pub params: &'a Map<String, Value>,
    /// Completed results of the previous stage in task order (empty for stage 1).
    pub previous: &'a [PreviousResult],
    /// The failed tasks of every earlier stage (tolerant policies only), in stage and task
    /// order, so a failure budget can be counted across stages.
    pub previous_failed: &'a [FailedTask],
}

/// A task that failed, as reported to the next stage and in stage_results.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FailedTask {
    /// Task id.
    pub task_id: String,
    /// Position in its stage.
    pub task_index: i32,
    /// The error text.
    pub error: String,
    /// Its stage (given to `create_tasks`; not part of stage_results).
    #[serde(default, skip_serializing)]
    pub stage: i32,
    /// Its parameters (given to `create_tasks`; not part of stage_results).
    #[serde(default, skip_serializing)]
    pub parameters: Value,
}

/// One task to create.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    /// The logical unit the task works on; part of its deterministic id (e.g. the blob name).
    pub unit: String,
    /// Task parameters.
    pub parameters: Value,
}

impl TaskSpec {
    /// A task for a logical unit.
    pub fn new(unit: impl Into<String>, parameters: Value) -> Self {
        Self {
            unit: unit.into(),
            parameters,
        }
    }
}

/// Per-stage counts given to finalize.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StageSummary {
    /// Stage number.
    pub stage: i32,
    /// Stage name.
    pub name: String,
    /// Tasks created.
    pub task_count: i64,
    /// Tasks completed.
    pub completed: i64,
    /// Tasks failed.
    pub failed: i64,
}

/// What `finalize` gets.
#[derive(Debug)]
pub struct FinalizeInput<'a> {
    /// Job id.
    pub job_id: &'a str,
    /// Validated parameters.
    pub params: &'a Map<String, Value>,
    /// Counts per stage.
    pub stages: &'a [StageSummary],
    /// Completed results of the last stage, in task order (empty when the job type asks for counts only).
    pub last_stage_results: &'a [PreviousResult],
    /// Failed tasks of the last stage (tolerant policies; the first 100, as in stage_results).
    pub last_stage_failed: &'a [FailedTask],
}

/// Why a job type could not build tasks or a result.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct JobError(pub String);

impl JobError {
    /// A job error with a message.
    pub fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

/// A job type.
pub trait Job: Send + Sync {
    /// The job type name used in routes and messages.
    fn job_type(&self) -> &'static str;
    /// One-line description.
    fn description(&self) -> &'static str;
    /// Parameter schema.
    fn parameters(&self) -> Vec<ParamSpec>;
    /// Checks across parameters that the per-field schema cannot express (e.g. a minimum not above
    /// a maximum). Runs at submit after the schema accepted `params` (defaults applied); any error
    /// is a 400 listing these fields.
    fn validate(&self, _params: &Map<String, Value>) -> Vec<FieldError> {
        Vec::new()
    }
    /// Ordered stages (at least one).
    fn stages(&self) -> Vec<StageDef>;
    /// Builds the tasks of `input.stage`. Returning no task completes the stage at once.
    fn create_tasks(&self, input: &StageInput<'_>) -> Result<Vec<TaskSpec>, JobError>;
    /// Builds the job's result after the last stage. An error or panic here ends the job
    /// `completed_with_errors` with a fallback result.
    fn finalize(&self, input: &FinalizeInput<'_>) -> Result<Value, JobError>;
    /// Whether finalize needs the last stage's results (false: counts only, so huge stages are not
    /// loaded into memory).
    fn finalize_needs_results(&self) -> bool {
        true
    }
}

/// Whether a task error should be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Retry with backoff.
    Transient,
    /// Fail the task at once.
    Permanent,
}

impl ErrorClass {
    /// Lowercase name as stored.
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Permanent => "permanent",
        }
    }
}

/// A classified task failure.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TaskError {
    /// Retry or not.
    pub class: ErrorClass,
    /// Short type name for grouping (e.g. "BlobNotFound", "Timeout", "Panic").
    pub error_type: String,
    /// What went wrong.
    pub message: String,
    /// The underlying error.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl TaskError {
    /// A transient (retryable) error.
    pub fn transient(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Transient,
            error_type: error_type.into(),
            message: message.into(),
            source: None,
        }
    }
    /// A permanent error.
    pub fn permanent(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Permanent,
            error_type: error_type.into(),
            message: message.into(),
            source: None,
        }
    }
    /// Attaches the underlying error.
    pub fn with_source(mut self, e: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(e));
        self
    }
    /// The message followed by every source in the chain.
    pub fn chain(&self) -> String {
        let mut s = self.message.clone();
        let mut cur: Option<&(dyn std::error::Error + 'static)> = self
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static));
        while let Some(e) = cur {
            s.push_str(": ");
            s.push_str(&e.to_string());
            cur = e.source();
        }
        s
    }
}

/// Lets a handler author classify an error at the call site: `.transient("Io")?`.
pub trait Classify<T> {
    /// Maps the error to a transient task error.
    fn transient(self, error_type: &str) -> Result<T, TaskError>;
    /// Maps the error to a permanent task error.
    fn permanent(self, error_type: &str) -> Result<T, TaskError>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> Classify<T> for Result<T, E> {
    fn transient(self, error_type: &str) -> Result<T, TaskError> {
        self.map_err(|e| TaskError::transient(error_type, e.to_string()).with_source(e))
    }
    fn permanent(self, error_type: &str) -> Result<T, TaskError> {
        self.map_err(|e| TaskError::permanent(error_type, e.to_string()).with_source(e))
    }
}

/// What a task handler gets.
#[derive(Debug, Clone)]
pub struct TaskContext {
    /// Job id.
    pub job_id: String,
    /// Job type.
    pub job_type: String,
    /// Task id.
    pub task_id: String,
    /// Task type.
    pub task_type: String,
    /// Stage number.
    pub stage: i32,
    /// Position in the stage.
    pub task_index: i32,
    /// Attempt number (1 = first run).
    pub attempt: i32,
    /// Task parameters.
    pub parameters: Value,
    /// Correlation id of the job.
    pub correlation_id: Option<String>,
}

/// A task handler.
pub type Handler =
    Arc<dyn Fn(TaskContext) -> BoxFuture<'static, Result<Value, TaskError>> + Send + Sync>;

/// Why a registry is inconsistent.
#[derive(Debug, thiserror::Error)]
#[error("job registry: {0}")]
pub struct RegistryError(String);

/// Every job type and task handler the engine knows.
#[derive(Clone, Default)]
pub struct Registry {
    jobs: BTreeMap<String, Arc<dyn Job>>,
    handlers: BTreeMap<String, Handler>,
    /// Task types whose handlers do heavy work (GDAL/OGR: CPU, memory, temp disk): a batched
    /// invocation runs at most `HEAVY_TASK_CONCURRENCY` of them at once.
    heavy: std::collections::BTreeSet<String>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("jobs", &self.jobs.keys().collect::<Vec<_>>())
            .field("handlers", &self.handlers.keys().collect::<Vec<_>>())
            .field("heavy", &self.heavy)
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The built-in job types.
    pub fn builtin() -> Self {
        let mut r = Self::new();
        hello_world::register(&mut r);
        noop_fanout::register(&mut r);
        list_container_contents::register(&mut r, list_container_contents::BlobSource::from_env());
        let raster = process_raster::RasterDeps::from_env();
        process_raster::register(&mut r, raster.clone());
        process_raster_collection::register(&mut r, raster);
        ingest_vector::register(&mut r, ingest_vector::VectorDeps::from_env());
        r
    }

    /// Adds a job type.
    pub fn add_job(&mut self, job: impl Job + 'static) -> &mut Self {
        self.jobs.insert(job.job_type().to_string(), Arc::new(job));
        self
    }

    /// Adds a task handler for `task_type`.
    pub fn add_handler<F, Fut>(&mut self, task_type: &str, f: F) -> &mut Self
    where
        F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, TaskError>> + Send + 'static,
    {
        self.handlers
            .insert(task_type.to_string(), Arc::new(move |ctx| Box::pin(f(ctx))));
        self
    }

    /// Marks `task_type` as heavy: its handler does GDAL/OGR work whose memory and CPU grow with
    /// the data, so a batched invocation runs at most `HEAVY_TASK_CONCURRENCY` heavy handlers at
    /// once (among its `TRIGGER_BATCH_CONCURRENCY`).
    pub fn mark_heavy(&mut self, task_type: &str) -> &mut Self {
        self.heavy.insert(task_type.to_string());
        self
    }

    /// Whether `task_type` is heavy ([`Registry::mark_heavy`]).
    pub fn is_heavy(&self, task_type: &str) -> bool {
        self.heavy.contains(task_type)
    }

    /// The same registry with every handler replaced by `f(task_type, handler)` (a decorator:
    /// timing, tracing, or the test suite's fault doubles).
    pub fn map_handlers(mut self, f: impl Fn(&str, Handler) -> Handler) -> Self {
        for (task_type, h) in self.handlers.iter_mut() {
            *h = f(task_type, h.clone());
        }
        self
    }

    /// The same registry with every job type replaced by `f(job)` (a decorator, as
    /// [`Registry::map_handlers`]). The wrapper must keep the job type's name.
    pub fn map_jobs(mut self, f: impl Fn(Arc<dyn Job>) -> Arc<dyn Job>) -> Self {
        for j in self.jobs.values_mut() {
            *j = f(j.clone());
        }
        self
    }

    /// Checks that every job has stages, every stage's task type has a handler, and policies make sense.
    pub fn validate(&self) -> Result<(), RegistryError> {
        for (name, job) in &self.jobs {
            let stages = job.stages();
            if stages.is_empty() {
                return Err(RegistryError(format!("job type {name} declares no stages")));
            }
            for s in &stages {
                if !self.handlers.contains_key(s.task_type) {
                    return Err(RegistryError(format!(
                        "job type {name} stage {} uses task type {} which has no handler",
                        s.name, s.task_type
                    )));
                }
            }
        }
        Ok(())
    }

    /// A job type by name.
    pub fn job(&self, job_type: &str) -> Option<&Arc<dyn Job>> {
        self.jobs.get(job_type)
    }

    /// A handler by task type.
    pub fn handler(&self, task_type: &str) -> Option<&Handler> {
        self.handlers.get(task_type)
    }

    /// Names of all job types, sorted.
    pub fn job_types(&self) -> Vec<&str> {
        self.jobs.keys().map(|s| s.as_str()).collect()
    }

    /// All job types.
    pub fn jobs(&self) -> impl Iterator<Item = &Arc<dyn Job>> {
        self.jobs.values()
    }
}
