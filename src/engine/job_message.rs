//! Job (stage) messages: queued -> processing, create the stage's tasks from the previous stage's
//! results, and queue them, in one transaction.
//!
//! Load (the guarded start, the previous stage's results) -> decide ([`stage_to_start`],
//! [`decide_stage_start`]; for a message that started nothing, [`impossible_job_message`]) -> apply (stage row, tasks, messages, or the
//! one failed-job exit) -> emit checkpoints.

use std::panic::AssertUnwindSafe;

use serde_json::{Map, json};

use super::events::{self, Event, EventStatus};
use super::fan_in::shard_count;
use super::fan_out::{CHUNK, Chunk, FanOutJob, NewTask};
use super::ids::{JobId, TaskId};
use super::job_ctx::JobCtx;
use super::messages::JobMessage;
use super::stage_inputs;
use super::stage_start::{
    Created, JobFailure, StageStart, StartFailure, decide_stage_start, stage_to_start,
    unknown_job_type,
};
use super::{Delivery, Engine, EngineError, Handled};
use crate::jobs::{Job, StageDef, StageInput, TaskSpec};
use crate::store::jobs::{self, JobPosition};
use crate::store::{self, Guarded, QueryContext, StoreError, Transaction, stages};
use crate::telemetry::checkpoints as cp;

impl Engine {
    /// Processes one message from the jobs queue.
    pub async fn on_job_message(&self, body: &str, d: &Delivery) -> Result<Handled, EngineError> {
        let (msg, job_id) = match parse_job_message(body) {
            Ok(m) => m,
            Err(why) => {
                return self
                    .on_malformed(body, d, super::malformed::Expected::JobMessage, &why)
                    .await;
            }
        };
        let fields = cp::Fields::job(&job_id)
            .job_type(&msg.job_type)
            .stage(msg.stage)
            .attempt(msg.attempt)
            .correlation(msg.correlation_id.as_deref())
            .invocation(d.invocation_id.as_deref());
        cp::emit(cp::JOB_MESSAGE_RECEIVED, &fields);

        let mut client = store::client(self.pool(), "processing a job message").await?;
        let tx = client
            .transaction()
            .await
            .ctx(|| format!("starting stage {} of job {job_id}", msg.stage))?;
        let started = match jobs::start_stage(&tx, &job_id, msg.stage, msg.attempt).await? {
            Guarded::Applied(started) => started,
            Guarded::NotApplied(()) => {
                drop(tx);
                return self
                    .job_message_not_applicable(&client, &job_id, &msg, d, &fields)
                    .await;
            }
        };
        let job = JobCtx {
            job_id: job_id.clone(),
            job_type: started.job_type,
            params: started.parameters,
            total_stages: started.total_stages,
            attempt: msg.attempt,
            correlation_id: started.correlation_id,
            traceparent: started.traceparent,
        };
        let outbox_ids = self.start_stage(&tx, &job, msg.stage, d).await?;
        tx.commit()
            .await
            .ctx(|| format!("committing stage {} of job {job_id}", msg.stage))?;
        self.outbox().wake();
        self.publish(&outbox_ids).await;
        Ok(Handled::log(format!(
            "job {job_id} stage {} started",
            msg.stage
        )))
    }

    /// Creates the tasks of `stage` (or ends the stage at once when it has none, or fails the job
    /// when the job type cannot build them). Returns outbox ids to publish after commit.
    async fn start_stage(
        &self,
        tx: &Transaction<'_>,
        job: &JobCtx,
        stage: i32,
        d: &Delivery,
    ) -> Result<Vec<i64>, StoreError> {
        let fields = job
            .fields()
            .stage(stage)
            .invocation(d.invocation_id.as_deref());
        let start = match self.registry().job(&job.job_type).cloned() {
            None => StageStart::FailJob(unknown_job_type(
                &job.job_type,
                &self.registry().job_types(),
            )),
            Some(def) => match stage_to_start(&job.job_type, &def.stages(), stage) {
                Err(failure) => StageStart::FailJob(failure),
                Ok(stage_def) => {
                    let created = self.create_tasks(tx, def.as_ref(), job, stage).await?;
                    decide_stage_start(stage, stage_def, created)
                }
            },
        };
        let failure = match start {
            StageStart::FailJob(failure) => failure,
            StageStart::Empty { def } => {
                self.record_stage(tx, job, stage, &def, 0, 0).await?;
                // Nothing to run: the stage is complete now, in this transaction.
                cp::emit(
                    cp::STAGE_TASKS_CREATED,
                    &fields.clone().extra("task_count", 0),
                );
                return self.end_stage(tx, job, stage, def.policy).await;
            }
            StageStart::Create { def, specs } => {
                match self.fan_out(tx, job, stage, &def, &specs).await? {
                    Ok(outbox_ids) => {
                        cp::emit(
                            cp::STAGE_TASKS_CREATED,
                            &fields.extra("task_count", specs.len()),
                        );
                        return Ok(outbox_ids);
                    }
                    Err(conflict) => conflict,
                }
            }
        };
        self.fail_stage_start(tx, job, stage, &fields, failure)
            .await
    }

    /// Asks the job type for the tasks of `stage`, given the previous stage's results and the
    /// failures so far (its panic is caught).
    async fn create_tasks(
        &self,
        tx: &Transaction<'_>,
        def: &dyn Job,
        job: &JobCtx,
        stage: i32,
    ) -> Result<Created, StoreError> {
        let (previous, previous_failed) = if stage > 1 {
            let what = format!("loading stage {} results", stage - 1);
            (
                stage_inputs::completed_results(tx, &job.job_id, stage - 1, &what).await?,
                stage_inputs::failures_up_to(tx, &job.job_id, stage - 1).await?,
            )
        } else {
            (Vec::new(), Vec::new())
        };
        let empty = Map::new();
        let input = StageInput {
            job_id: job.job_id.as_str(),
            stage,
            params: job.params.as_object().unwrap_or(&empty),
            previous: &previous,
            previous_failed: &previous_failed,
        };
        Ok(std::panic::catch_unwind(AssertUnwindSafe(|| {
            def.create_tasks(&input)
        })))
    }

    /// Records the stage as running with `n` tasks on `shards` counter shards, and its event.
    async fn record_stage(
        &self,
        tx: &Transaction<'_>,
        job: &JobCtx,
        stage: i32,
        def: &StageDef,
        n: usize,
        shards: i16,
    ) -> Result<(), StoreError> {
        let row = stages::NewStage {
            job_id: &job.job_id,
            stage,
            attempt: job.attempt,
            name: def.name,
            task_type: def.task_type,
            task_count: n as i32,
            shards,
        };
        stages::insert(tx, &row).await?;
        events::write(
            tx,
            &[Event::job(&job.job_id, "stage_started", EventStatus::Info, cp::STAGE_TASKS_CREATED)
                .stage(stage)
                .attempt(job.attempt)
                .data(json!({"name": def.name, "task_type": def.task_type, "task_count": n, "shards": shards}))],
        )
        .await
    }

    /// Records the stage and queues its tasks, in chunks, then creates its fan-in counter.
    /// `Ok(Err(..))`: some task ids existed already, and the job must fail.
    async fn fan_out(
        &self,
        tx: &Transaction<'_>,
        job: &JobCtx,
        stage: i32,
        def: &StageDef,
        specs: &[TaskSpec],
    ) -> Result<Result<Vec<i64>, JobFailure>, StoreError> {
        let shards = shard_count(specs.len());
        self.record_stage(tx, job, stage, def, specs.len(), shards)
            .await?;
        let fan = FanOutJob::of(job, stage, def.task_type);
        let mut shard_sizes = vec![0i32; shards as usize];
        let mut outbox_ids = Vec::with_capacity(specs.len());
        for (chunk_no, chunk) in specs.chunks(CHUNK).enumerate() {
            let tasks: Vec<NewTask> = chunk
                .iter()
                .enumerate()
                .map(|(i, spec)| {
                    let seq = (chunk_no * CHUNK + i) as i32;
                    NewTask {
                        task_id: TaskId::derive(&job.job_id, job.attempt, stage, &spec.unit),
                        seq,
                        parameters: &spec.parameters,
                        shard: (seq % shards as i32) as i16,
                    }
                })
                .collect();
            match self.queue_chunk(tx, &fan, &tasks).await? {
                Chunk::Queued(ids) => outbox_ids.extend(ids.into_iter().flatten()),
                Chunk::Short { inserted, len } => {
                    return Ok(Err(JobFailure::task_id_conflict(stage, inserted, len)));
                }
            }
            for t in &tasks {
                shard_sizes[t.shard as usize] += 1;
            }
        }
        stages::insert_counters(tx, &job.job_id, stage, &shard_sizes).await?;
        Ok(Ok(outbox_ids))
    }

    /// The one way a stage start fails its job: the failure's checkpoint, then the failed job.
    async fn fail_stage_start(
        &self,
        tx: &Transaction<'_>,
        job: &JobCtx,
        stage: i32,
        fields: &cp::Fields,
        failure: JobFailure,
    ) -> Result<Vec<i64>, StoreError> {
        match failure.kind {
            StartFailure::UnknownJobType => cp::emit_warn(cp::MESSAGE_UNKNOWN_JOB_TYPE, fields),
            StartFailure::CreateTasksFailed => cp::emit_at(
                cp::Level::Error,
                cp::STAGE_CREATE_TASKS_FAILED,
                fields,
                Some(cp::ErrorFields {
                    class: Some("permanent"),
                    error_type: "CreateTasksError",
                    message: &failure.reason,
                    chain: &failure.reason,
                }),
            ),
            _ => {}
        }
        self.fail_job_in_tx(tx, job, Some(stage), &failure.reason, failure.details())
            .await
    }

    /// The guard matched nothing: say why and acknowledge.
    async fn job_message_not_applicable(
        &self,
        client: &store::Client,
        job_id: &JobId,
        msg: &JobMessage,
        d: &Delivery,
        fields: &cp::Fields,
    ) -> Result<Handled, EngineError> {
        let position = jobs::position(client, job_id).await?;
        let body = || serde_json::to_string(msg).unwrap_or_default();
        let Some(job) = position else {
            cp::emit_warn(cp::MESSAGE_UNKNOWN_JOB, fields);
            self.record_message_failure(
                d,
                None,
                None,
                "unknown_job",
                &format!("job {job_id} does not exist"),
                &body(),
            )
            .await?;
            return Ok(Handled::log(format!(
                "job {job_id} does not exist; message recorded and acknowledged"
            )));
        };
        let fields = fields
            .clone()
            .extra(
                "expected",
                format!("queued stage {} attempt {}", msg.stage, msg.attempt),
            )
            .extra(
                "actual",
                format!("{} stage {} attempt {}", job.status, job.stage, job.attempt),
            );
        if let Some(why) = impossible_job_message(msg, &job) {
            cp::emit_warn(cp::JOB_MESSAGE_IMPOSSIBLE, &fields.extra("reason", &why));
            let id = self
                .record_message_failure(
                    d,
                    Some(job_id.as_str()),
                    None,
                    "impossible_job_message",
                    &format!("job message for job {job_id} can never apply: {why}"),
                    &body(),
                )
                .await?;
            return Ok(Handled::log(format!(
                "job {job_id} message can never apply ({why}); recorded as message failure {id} and acknowledged"
            )));
        }
        cp::emit(cp::JOB_MESSAGE_DUPLICATE, &fields);
        Ok(Handled::log(format!(
            "job {job_id} stage {} message is a duplicate or stale (job is {} at stage {}); acknowledged",
            msg.stage, job.status, job.stage
        )))
    }
}

/// A job message and the job it names, or why the body is not one (a malformed message).
fn parse_job_message(body: &str) -> Result<(JobMessage, JobId), String> {
    let msg: JobMessage =
        serde_json::from_str(body).map_err(|e| format!("job message is not valid: {e}"))?;
    let job_id = JobId::parse(&msg.job_id).map_err(|e| e.to_string())?;
    Ok((msg, job_id))
}

/// Why a job message that started nothing can never have been sent for this job (`None`: it is a
/// stale or duplicate copy of one that was: the current or an earlier stage of the current
/// attempt, or any real stage of an earlier attempt).
fn impossible_job_message(msg: &JobMessage, job: &JobPosition) -> Option<String> {
    if msg.job_type != job.job_type {
        return Some(format!(
            "it names job type {:?}, the job is {:?}",
            msg.job_type.chars().take(100).collect::<String>(),
            job.job_type
        ));
    }
    if msg.stage < 1 || msg.stage > job.total_stages {
        return Some(format!(
            "stage {} does not exist (the job has stages 1..={})",
            msg.stage, job.total_stages
        ));
    }
    if msg.attempt < 1 {
        return Some(format!("attempt {} (attempts count from 1)", msg.attempt));
    }
    if msg.attempt > job.attempt {
        return Some(format!(
            "attempt {} is later than the job's attempt {}",
            msg.attempt, job.attempt
        ));
    }
    if msg.attempt == job.attempt && msg.stage > job.stage {
        return Some(format!(
            "stage {} has not been reached (attempt {} is at stage {})",
            msg.stage, job.attempt, job.stage
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::JobStatus;

    fn msg(job_type: &str, stage: i32, attempt: i32) -> JobMessage {
        serde_json::from_value(serde_json::json!({
            "job_id": "a".repeat(64), "job_type": job_type, "stage": stage, "attempt": attempt
        }))
        .expect("a job message")
    }

    #[test]
    fn stale_copies_are_quiet_and_impossible_messages_say_why() {
        // A job resubmitted once (attempt 2), now at stage 2 of 3.
        let job = JobPosition {
            status: JobStatus::Processing,
            stage: 2,
            attempt: 2,
            total_stages: 3,
            job_type: "shapes3".into(),
        };
        for (stage, attempt) in [(1, 2), (2, 2), (1, 1), (3, 1)] {
            assert_eq!(
                impossible_job_message(&msg("shapes3", stage, attempt), &job),
                None,
                "stage {stage} attempt {attempt} is a stale copy"
            );
        }
        for (m, why) in [
            (msg("shapes3", 3, 2), "has not been reached"),
            (msg("shapes3", 4, 1), "does not exist"),
            (msg("shapes3", i32::MIN, 2), "does not exist"),
            (msg("shapes3", 1, 0), "attempt 0"),
            (msg("shapes3", 1, 3), "later than"),
            (msg("shapes1", 1, 2), "job type"),
        ] {
            let got = impossible_job_message(&m, &job).unwrap_or_default();
            assert!(
                got.contains(why),
                "stage {} attempt {}: {got:?}",
                m.stage,
                m.attempt
            );
        }
    }

    #[test]
    fn a_body_is_a_job_message_naming_a_job_id_or_malformed() {
        let ok =
            serde_json::json!({"job_id": "b".repeat(64), "job_type": "t", "stage": 1}).to_string();
        let (m, id) = parse_job_message(&ok).expect("parses");
        assert_eq!((m.stage, id.as_str()), (1, "b".repeat(64).as_str()));
        for (body, says) in [
            ("{", "job message is not valid"),
            (
                r#"{"job_type": "t", "stage": 1}"#,
                "job message is not valid",
            ),
            (
                r#"{"job_id": "nothex", "job_type": "t", "stage": 1}"#,
                "nothex",
            ),
        ] {
            let e = parse_job_message(body).expect_err(body);
            assert!(e.contains(says), "{body}: {e}");
        }
    }
}
