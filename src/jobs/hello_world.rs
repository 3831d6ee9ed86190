//! `hello_world`: the smallest two-stage job. Stage 1 greets n times, stage 2 replies to each
//! greeting; finalize counts. `failure_rate` and `delay_ms` make it a demo of retries and progress.

use std::time::Duration;

use rand::Rng;
use serde_json::{Value, json};

use super::{
    FinalizeInput, Job, JobError, ParamKind, ParamSpec, Registry, StageDef, StageInput,
    TaskContext, TaskError, TaskSpec,
};

/// The hello_world job type.
pub(super) struct HelloWorld;

impl Job for HelloWorld {
    fn job_type(&self) -> &'static str {
        "hello_world"
    }
    fn description(&self) -> &'static str {
        "Two-stage demo: n greetings, then n replies built from the greetings"
    }
    fn parameters(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::new("n", ParamKind::Integer, "Number of tasks per stage")
                .range(1.0, 1000.0)
                .default(json!(3)),
            ParamSpec::new("message", ParamKind::String, "Greeting text")
                .max(1000.0)
                .default(json!("Hello World")),
            ParamSpec::new(
                "failure_rate",
                ParamKind::Number,
                "Probability that a greeting fails transiently",
            )
            .range(0.0, 1.0)
            .default(json!(0))
            .not_in_job_id(),
            ParamSpec::new(
                "delay_ms",
                ParamKind::Integer,
                "Milliseconds each task sleeps",
            )
            .range(0.0, 60000.0)
            .default(json!(0))
            .not_in_job_id(),
        ]
    }
    fn stages(&self) -> Vec<StageDef> {
        vec![
            StageDef::new("greeting", "hello_world_greeting"),
            StageDef::new("reply", "hello_world_reply"),
        ]
    }
    fn create_tasks(&self, input: &StageInput<'_>) -> Result<Vec<TaskSpec>, JobError> {
        let p = input.params;
        let delay = p.get("delay_ms").cloned().unwrap_or(json!(0));
        match input.stage {
            1 => {
                let n = p.get("n").and_then(Value::as_i64).unwrap_or(3);
                let msg = p.get("message").cloned().unwrap_or(json!("Hello World"));
                let rate = p.get("failure_rate").cloned().unwrap_or(json!(0));
                Ok((0..n)
                    .map(|i| {
                        TaskSpec::new(
                            format!("greet-{i}"),
                            json!({"index": i, "message": msg, "failure_rate": rate, "delay_ms": delay}),
                        )
                    })
                    .collect())
            }
            2 => Ok(input
                .previous
                .iter()
                .map(|r| {
                    let i = r.result.get("index").cloned().unwrap_or(json!(r.task_index));
                    TaskSpec::new(
                        format!("reply-{i}"),
                        json!({"index": i, "greeting": r.result.get("greeting"), "delay_ms": delay}),
                    )
                })
                .collect()),
            s => Err(JobError::new(format!("hello_world has 2 stages, asked for stage {s}"))),
        }
    }
    fn finalize(&self, input: &FinalizeInput<'_>) -> Result<Value, JobError> {
        let count = |stage: i32| input.stages.iter().find(|s| s.stage == stage);
        let greetings = count(1).map(|s| s.completed).unwrap_or(0);
        let replies = count(2).map(|s| s.completed).unwrap_or(0);
        Ok(json!({
            "job_type": "hello_world",
            "status": "completed",
            "message": input.params.get("message"),
            "greetings": greetings,
            "replies": replies,
            "total_tasks": input.stages.iter().map(|s| s.task_count).sum::<i64>(),
            "failed_tasks": input.stages.iter().map(|s| s.failed).sum::<i64>(),
        }))
    }
    fn finalize_needs_results(&self) -> bool {
        false
    }
}

async fn sleep_param(ctx: &TaskContext) {
    if let Some(ms) = ctx.parameters.get("delay_ms").and_then(Value::as_u64)
        && ms > 0
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

async fn greeting(ctx: TaskContext) -> Result<Value, TaskError> {
    sleep_param(&ctx).await;
    let rate = ctx
        .parameters
        .get("failure_rate")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    if rate > 0.0 && rand::rng().random::<f64>() < rate {
        return Err(TaskError::transient(
            "RandomFailure",
            format!(
                "greeting {} failed at random (failure_rate {rate})",
                ctx.task_index
            ),
        ));
    }
    let msg = ctx
        .parameters
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("Hello World");
    let index = ctx
        .parameters
        .get("index")
        .cloned()
        .unwrap_or(json!(ctx.task_index));
    Ok(json!({"greeting": format!("{msg} from task {index}!"), "index": index}))
}

async fn reply(ctx: TaskContext) -> Result<Value, TaskError> {
    sleep_param(&ctx).await;
    let greeting = ctx
        .parameters
        .get("greeting")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            TaskError::permanent("MissingInput", "reply task has no greeting from stage 1")
        })?;
    let index = ctx
        .parameters
        .get("index")
        .cloned()
        .unwrap_or(json!(ctx.task_index));
    Ok(json!({"reply": format!("Reply to: {greeting}"), "index": index}))
}

/// Registers the job type and its handlers.
pub(super) fn register(r: &mut Registry) {
    r.add_job(HelloWorld);
    r.add_handler("hello_world_greeting", greeting);
    r.add_handler("hello_world_reply", reply);
}
