//! `noop_fanout`: the benchmark workload. Stage 1 fans out n no-op tasks, stage 2 fans out n tasks
//! built from stage 1's results; finalize counts. Results are tiny so that the engine, not the
//! handlers, is what gets measured.

use serde_json::{Value, json};

use super::{
    FinalizeInput, Job, JobError, ParamKind, ParamSpec, Registry, StageDef, StageInput, TaskSpec,
};

/// The noop_fanout job type.
pub(super) struct NoopFanout;

impl Job for NoopFanout {
    fn job_type(&self) -> &'static str {
        "noop_fanout"
    }
    fn description(&self) -> &'static str {
        "Benchmark workload: n no-op tasks, then n no-op tasks built from their results"
    }
    fn parameters(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::new("n", ParamKind::Integer, "Tasks per stage")
                .range(1.0, 1_000_000.0)
                .required(),
            ParamSpec::new(
                "run",
                ParamKind::String,
                "Free label that makes the job id unique per run",
            )
            .max(100.0),
        ]
    }
    fn stages(&self) -> Vec<StageDef> {
        vec![
            StageDef::new("fan_out", "noop"),
            StageDef::new("fan_out_again", "noop"),
        ]
    }
    fn create_tasks(&self, input: &StageInput<'_>) -> Result<Vec<TaskSpec>, JobError> {
        match input.stage {
            1 => {
                let n = input.params.get("n").and_then(Value::as_i64).unwrap_or(1);
                Ok((0..n)
                    .map(|i| TaskSpec::new(i.to_string(), json!({"i": i})))
                    .collect())
            }
            _ => Ok(input
                .previous
                .iter()
                .map(|r| TaskSpec::new(r.task_index.to_string(), json!({"i": r.result.get("i")})))
                .collect()),
        }
    }
    fn finalize(&self, input: &FinalizeInput<'_>) -> Result<Value, JobError> {
        Ok(json!({"stages": input.stages}))
    }
    fn finalize_needs_results(&self) -> bool {
        false
    }
}

/// Registers the job type and the `noop` handler.
pub(super) fn register(r: &mut Registry) {
    r.add_job(NoopFanout);
    r.add_handler("noop", |ctx| async move {
        Ok(json!({"i": ctx.parameters.get("i")}))
    });
}
