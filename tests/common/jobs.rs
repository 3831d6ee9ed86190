//! Test-only job types: `shapes` (1-3 stages of 0-N tasks, a policy per stage, chosen task
//! indexes failing permanently) for races, policies and soak tests.

use coremachine::jobs::{
    FinalizeInput, Job, JobError, ParamKind, ParamSpec, Registry, StageDef, StageInput,
    StagePolicy, TaskError, TaskSpec,
};
use serde_json::{Value, json};

pub struct Shapes;

impl Job for Shapes {
    fn job_type(&self) -> &'static str {
        "shapes"
    }
    fn description(&self) -> &'static str {
        "test job: configurable stages and tasks"
    }
    fn parameters(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::new("stages", ParamKind::Integer, "")
                .range(1.0, 3.0)
                .default(json!(1)),
            ParamSpec::new("tasks", ParamKind::Integer, "")
                .range(0.0, 100_000.0)
                .default(json!(3)),
            ParamSpec::new(
                "fail",
                ParamKind::Array(Box::new(ParamKind::Integer)),
                "indexes that fail permanently in stage 1",
            )
            .default(json!([])),
            ParamSpec::new(
                "fail2",
                ParamKind::Array(Box::new(ParamKind::Integer)),
                "indexes that fail permanently in stage 2",
            ),
            ParamSpec::new(
                "max_failures",
                ParamKind::Integer,
                "budget of shapes_budget",
            ),
            ParamSpec::new("run", ParamKind::String, "").default(json!("")),
            ParamSpec::new("sleep_ms", ParamKind::Integer, "")
                .range(0.0, 60_000.0)
                .default(json!(0)),
        ]
    }
    fn stages(&self) -> Vec<StageDef> {
        // The policy is fixed per job type, so variants are separate job types (see register).
        vec![
            StageDef::new("one", "shape_task"),
            StageDef::new("two", "shape_task"),
            StageDef::new("three", "shape_task"),
        ]
    }
    fn create_tasks(&self, input: &StageInput<'_>) -> Result<Vec<TaskSpec>, JobError> {
        let n = input
            .params
            .get("tasks")
            .and_then(Value::as_i64)
            .unwrap_or(3);
        let fail = input.params.get("fail").cloned().unwrap_or(json!([]));
        let sleep = input.params.get("sleep_ms").cloned().unwrap_or(json!(0));
        if input.stage == 1 {
            Ok((0..n).map(|i| TaskSpec::new(i.to_string(), json!({"i": i, "fail": fail.as_array().is_some_and(|a| a.contains(&json!(i))), "sleep_ms": sleep}))).collect())
        } else {
            let fail2 = input.params.get("fail2").cloned().unwrap_or(json!([]));
            let fails = |i: &Value| fail2.as_array().is_some_and(|a| a.contains(i));
            Ok(input
                .previous
                .iter()
                .map(|p| {
                    TaskSpec::new(
                        p.task_index.to_string(),
                        json!({"i": p.result["i"], "fail": input.stage == 2 && fails(&p.result["i"]), "sleep_ms": sleep}),
                    )
                })
                .collect())
        }
    }
    fn finalize(&self, input: &FinalizeInput<'_>) -> Result<Value, JobError> {
        Ok(json!({"stages": input.stages, "last": input.last_stage_results.len()}))
    }
}

/// A `shapes` variant with a fixed stage count and policy.
pub struct ShapesVariant {
    pub name: &'static str,
    pub stages: usize,
    pub policy: StagePolicy,
}

impl Job for ShapesVariant {
    fn job_type(&self) -> &'static str {
        self.name
    }
    fn description(&self) -> &'static str {
        "test job variant"
    }
    fn parameters(&self) -> Vec<ParamSpec> {
        Shapes.parameters()
    }
    fn stages(&self) -> Vec<StageDef> {
        Shapes
            .stages()
            .into_iter()
            .take(self.stages)
            .map(|s| s.policy(self.policy))
            .collect()
    }
    fn create_tasks(&self, input: &StageInput<'_>) -> Result<Vec<TaskSpec>, JobError> {
        Shapes.create_tasks(input)
    }
    fn finalize(&self, input: &FinalizeInput<'_>) -> Result<Value, JobError> {
        Shapes.finalize(input)
    }
}

/// `bulky`: one task whose parameters are `size` bytes (built by the engine, so the API's body
/// limit does not apply), like a fan-in task that receives thousands of results. Its handler
/// answers how many bytes of parameters it saw.
pub struct Bulky;

impl Job for Bulky {
    fn job_type(&self) -> &'static str {
        "bulky"
    }
    fn description(&self) -> &'static str {
        "test job: one task with large parameters"
    }
    fn parameters(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::new("size", ParamKind::Integer, "")
                .range(1.0, 10_000_000.0)
                .default(json!(1000)),
        ]
    }
    fn stages(&self) -> Vec<StageDef> {
        vec![StageDef::new("one", "bulky_task")]
    }
    fn create_tasks(&self, input: &StageInput<'_>) -> Result<Vec<TaskSpec>, JobError> {
        let n = input
            .params
            .get("size")
            .and_then(Value::as_u64)
            .unwrap_or(1000) as usize;
        Ok(vec![TaskSpec::new("0", json!({"payload": "x".repeat(n)}))])
    }
    fn finalize(&self, input: &FinalizeInput<'_>) -> Result<Value, JobError> {
        Ok(
            json!({"results": input.last_stage_results.iter().map(|r| r.result.clone()).collect::<Vec<_>>()}),
        )
    }
}

pub fn test_registry() -> Registry {
    let mut r = Registry::builtin();
    r.add_job(Bulky);
    r.add_handler("bulky_task", |ctx| async move {
        let len = ctx
            .parameters
            .get("payload")
            .and_then(Value::as_str)
            .map(str::len)
            .ok_or_else(|| TaskError::permanent("MissingInput", "no payload parameter"))?;
        Ok(json!({"payload_len": len}))
    });
    for (name, stages, policy) in [
        ("shapes1", 1, StagePolicy::FailFast),
        ("shapes2", 2, StagePolicy::FailFast),
        ("shapes3", 3, StagePolicy::FailFast),
        ("shapes_tolerant", 2, StagePolicy::TolerateFailures),
        ("shapes_min2", 1, StagePolicy::MinSuccess { k: 2 }),
        ("shapes_min3", 1, StagePolicy::MinSuccess { k: 3 }),
        (
            "shapes_budget",
            3,
            StagePolicy::MaxFailures {
                param: "max_failures",
            },
        ),
    ] {
        r.add_job(ShapesVariant {
            name,
            stages,
            policy,
        });
    }
    r.add_handler("shape_task", |ctx| async move {
        if let Some(ms) = ctx
            .parameters
            .get("sleep_ms")
            .and_then(Value::as_u64)
            .filter(|m| *m > 0)
        {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        if ctx.parameters.get("fail").and_then(Value::as_bool) == Some(true) {
            return Err(TaskError::permanent(
                "ShapeFailure",
                format!("task {} told to fail", ctx.task_index),
            ));
        }
        Ok(json!({"i": ctx.parameters.get("i")}))
    });
    r
}
