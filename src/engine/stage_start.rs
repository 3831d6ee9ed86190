//! What starting a stage means, decided without I/O: which stage definition applies, and what
//! the job type's `create_tasks` answer leads to (tasks to create, an empty stage, or a failed
//! job). job_message.rs loads the inputs and applies the decision.

use std::any::Any;
use std::collections::HashSet;

use serde_json::{Value, json};

use crate::jobs::{JobError, StageDef, TaskSpec};

use super::panics::panic_text;

/// Why a stage could not start: the job fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StartFailure {
    /// No job definition is registered for the job's type.
    UnknownJobType,
    /// The job type has no such stage.
    NoSuchStage,
    /// `create_tasks` returned an error.
    CreateTasksFailed,
    /// `create_tasks` panicked.
    CreateTasksPanicked,
    /// `create_tasks` returned a logical unit twice.
    DuplicateUnit,
    /// Some of the stage's task ids existed already.
    TaskIdConflict,
}

impl StartFailure {
    /// The `reason` recorded in the failure details.
    pub(super) fn tag(self) -> &'static str {
        match self {
            StartFailure::UnknownJobType => "unknown_job_type",
            StartFailure::NoSuchStage => "no_such_stage",
            StartFailure::CreateTasksFailed => "create_tasks_failed",
            StartFailure::CreateTasksPanicked => "create_tasks_panicked",
            StartFailure::DuplicateUnit => "duplicate_unit",
            StartFailure::TaskIdConflict => "task_id_conflict",
        }
    }
}

/// A stage start that fails the job: why, in words and as a kind.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct JobFailure {
    /// What went wrong.
    pub kind: StartFailure,
    /// The job's error text.
    pub reason: String,
}

impl JobFailure {
    fn new(kind: StartFailure, reason: String) -> Self {
        Self { kind, reason }
    }

    /// The details recorded with the failed job.
    pub(super) fn details(&self) -> Value {
        json!({"reason": self.kind.tag()})
    }

    /// Some of a chunk's task ids existed already: `inserted` of `len` were created.
    pub(super) fn task_id_conflict(stage: i32, inserted: usize, len: usize) -> Self {
        Self::new(
            StartFailure::TaskIdConflict,
            format!(
                "stage {stage}: {} of {len} task ids already existed; refusing to run a stage whose counter would not match its tasks",
                len - inserted
            ),
        )
    }
}

/// What a stage start does.
#[derive(Debug)]
pub(super) enum StageStart {
    /// Create these tasks (never empty) of the stage `def`.
    Create {
        /// The stage.
        def: StageDef,
        /// Its tasks.
        specs: Vec<TaskSpec>,
    },
    /// The stage `def` has no tasks: it ends at once.
    Empty {
        /// The stage.
        def: StageDef,
    },
    /// The job fails.
    FailJob(JobFailure),
}

/// The job's type is not registered (`known` are the types that are).
pub(super) fn unknown_job_type(job_type: &str, known: &[&str]) -> JobFailure {
    JobFailure::new(
        StartFailure::UnknownJobType,
        format!(
            "unknown job type {job_type:?}: no job definition is registered (known: {})",
            known.join(", ")
        ),
    )
}

/// The definition of `stage` of a job type `job_type` whose stages are `stages`.
pub(super) fn stage_to_start(
    job_type: &str,
    stages: &[StageDef],
    stage: i32,
) -> Result<StageDef, JobFailure> {
    let found = usize::try_from(stage)
        .ok()
        .and_then(|s| s.checked_sub(1))
        .and_then(|i| stages.get(i).cloned());
    found.ok_or_else(|| {
        JobFailure::new(
            StartFailure::NoSuchStage,
            format!(
                "stage {stage} does not exist: job type {job_type} has {} stages",
                stages.len()
            ),
        )
    })
}

/// What `create_tasks` answered: its result, or the panic it raised.
pub(super) type Created = Result<Result<Vec<TaskSpec>, JobError>, Box<dyn Any + Send>>;

/// Decides what the start of `stage` (`def`) does from `create_tasks`' answer.
pub(super) fn decide_stage_start(stage: i32, def: StageDef, created: Created) -> StageStart {
    let name = def.name;
    let specs = match created {
        Ok(Ok(specs)) => specs,
        Ok(Err(e)) => {
            return StageStart::FailJob(JobFailure::new(
                StartFailure::CreateTasksFailed,
                format!("stage {stage} ({name}) could not create its tasks: {e}"),
            ));
        }
        Err(panic) => {
            return StageStart::FailJob(JobFailure::new(
                StartFailure::CreateTasksPanicked,
                format!(
                    "stage {stage} ({name}) create_tasks panicked: {}",
                    panic_text(&panic)
                ),
            ));
        }
    };
    if let Some(dup) = first_duplicate_unit(&specs) {
        return StageStart::FailJob(JobFailure::new(
            StartFailure::DuplicateUnit,
            format!(
                "stage {stage} ({name}): create_tasks returned the logical unit {dup:?} twice; units must be unique"
            ),
        ));
    }
    if specs.is_empty() {
        StageStart::Empty { def }
    } else {
        StageStart::Create { def, specs }
    }
}

fn first_duplicate_unit(specs: &[TaskSpec]) -> Option<&str> {
    let mut seen = HashSet::with_capacity(specs.len());
    specs
        .iter()
        .map(|s| s.unit.as_str())
        .find(|u| !seen.insert(*u))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defs() -> Vec<StageDef> {
        vec![
            StageDef::new("list", "list_task"),
            StageDef::new("load", "load_task"),
        ]
    }

    fn specs(units: &[&str]) -> Vec<TaskSpec> {
        units.iter().map(|u| TaskSpec::new(*u, json!({}))).collect()
    }

    fn failure(start: StageStart) -> Option<(StartFailure, String)> {
        match start {
            StageStart::FailJob(f) => Some((f.kind, f.reason)),
            _ => None,
        }
    }

    #[test]
    fn the_stage_to_start_is_found_or_the_job_fails_saying_why() {
        assert_eq!(
            stage_to_start("shapes3", &defs(), 2).map(|d| d.name),
            Ok("load")
        );
        let f = unknown_job_type("nope", &["hello_world", "shapes3"]);
        assert_eq!(f.kind, StartFailure::UnknownJobType);
        assert!(
            f.reason.contains("known: hello_world, shapes3"),
            "{}",
            f.reason
        );
        assert_eq!(f.details(), json!({"reason": "unknown_job_type"}));
        for (stage, says) in [
            (3, "has 2 stages"),
            (0, "stage 0 does not exist"),
            (i32::MIN, "does not exist"),
        ] {
            let f = stage_to_start("shapes3", &defs(), stage).expect_err("fails");
            assert_eq!(f.kind, StartFailure::NoSuchStage, "stage {stage}");
            assert!(f.reason.contains(says), "{}", f.reason);
            assert_eq!(f.details(), json!({"reason": "no_such_stage"}));
        }
    }

    #[test]
    fn create_tasks_answers_decide_the_stage_start() {
        let def = StageDef::new("load", "load_task");
        assert!(matches!(
            decide_stage_start(2, def.clone(), Ok(Ok(specs(&["a", "b"])))),
            StageStart::Create { specs, .. } if specs.len() == 2
        ));
        assert!(matches!(
            decide_stage_start(2, def.clone(), Ok(Ok(Vec::new()))),
            StageStart::Empty { def } if def.name == "load"
        ));
        let panicked: Created = Err(Box::new("no input"));
        for (created, kind, says) in [
            (
                Ok(Err(JobError::new("bad listing"))),
                StartFailure::CreateTasksFailed,
                "stage 2 (load) could not create its tasks: bad listing",
            ),
            (
                panicked,
                StartFailure::CreateTasksPanicked,
                "stage 2 (load) create_tasks panicked: no input",
            ),
            (
                Ok(Ok(specs(&["a", "b", "a"]))),
                StartFailure::DuplicateUnit,
                "the logical unit \"a\" twice",
            ),
        ] {
            let (got, reason) =
                failure(decide_stage_start(2, def.clone(), created)).expect("fails");
            assert_eq!(got, kind);
            assert!(reason.contains(says), "{reason}");
        }
        let conflict = JobFailure::task_id_conflict(2, 3, 5);
        assert_eq!(conflict.kind, StartFailure::TaskIdConflict);
        assert!(
            conflict
                .reason
                .starts_with("stage 2: 2 of 5 task ids already existed")
        );
    }
}
