//! Job (stage) messages: queued -> processing, create the stage's tasks from the previous stage's
//! results, and queue them, in one transaction.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;

use serde_json::{Map, Value, json};

use super::events::{self, Event, EventStatus};
use super::fan_in::shard_count;
use super::ids::{JobId, TaskId};
use super::job_ctx::JobCtx;
use super::messages::{JobMessage, TaskMessage};
use super::panics::panic_text;
use super::{Delivery, Engine, EngineError, Handled};
use crate::jobs::{FailedTask, PreviousResult, StageInput, TaskSpec};
use crate::store::{self, QueryContext, StoreError, Transaction, sql};
use crate::telemetry::checkpoints as cp;

/// Tasks are inserted and queued in chunks so one statement never carries a whole 100k stage.
const CHUNK: usize = 5_000;

impl Engine {
    /// Processes one message from the jobs queue.
    pub async fn on_job_message(&self, body: &str, d: &Delivery) -> Result<Handled, EngineError> {
        let msg: JobMessage = match serde_json::from_str(body) {
            Ok(m) => m,
            Err(e) => {
                return self
                    .on_malformed(
                        body,
                        d,
                        super::malformed::Expected::JobMessage,
                        &format!("job message is not valid: {e}"),
                    )
                    .await;
            }
        };
        let job_id = match JobId::parse(&msg.job_id) {
            Ok(j) => j,
            Err(e) => {
                return self
                    .on_malformed(
                        body,
                        d,
                        super::malformed::Expected::JobMessage,
                        &e.to_string(),
                    )
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
        let started = tx
            .query_opt(
                sql::JOB_START_STAGE,
                &[&job_id.as_str(), &msg.stage, &msg.attempt],
            )
            .await
            .ctx(|| format!("starting stage {} of job {job_id}", msg.stage))?;
        let Some(row) = started else {
            drop(tx);
            return self
                .job_message_not_applicable(&client, &job_id, &msg, d, &fields)
                .await;
        };
        let job = JobCtx {
            job_id: job_id.clone(),
            job_type: row.get(0),
            params: row.get(1),
            total_stages: row.get(2),
            attempt: msg.attempt,
            correlation_id: row.get(3),
            traceparent: row.get(4),
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
        let Some(def) = self.registry().job(&job.job_type).cloned() else {
            let reason = format!(
                "unknown job type {:?}: no job definition is registered (known: {})",
                job.job_type,
                self.registry().job_types().join(", ")
            );
            cp::emit_warn(cp::MESSAGE_UNKNOWN_JOB_TYPE, &fields);
            return self
                .fail_job_in_tx(
                    tx,
                    job,
                    Some(stage),
                    &reason,
                    json!({"reason": "unknown_job_type"}),
                )
                .await;
        };
        let stages = def.stages();
        let Some(stage_def) = stages.get((stage - 1) as usize).cloned() else {
            let reason = format!(
                "stage {stage} does not exist: job type {} has {} stages",
                job.job_type,
                stages.len()
            );
            return self
                .fail_job_in_tx(
                    tx,
                    job,
                    Some(stage),
                    &reason,
                    json!({"reason": "no_such_stage"}),
                )
                .await;
        };

        let (previous, previous_failed) = if stage > 1 {
            self.load_previous(tx, &job.job_id, stage - 1).await?
        } else {
            (Vec::new(), Vec::new())
        };
        let empty = Map::new();
        let params = job.params.as_object().unwrap_or(&empty);
        let input = StageInput {
            job_id: job.job_id.as_str(),
            stage,
            params,
            previous: &previous,
            previous_failed: &previous_failed,
        };
        let created = std::panic::catch_unwind(AssertUnwindSafe(|| def.create_tasks(&input)));
        drop(previous);
        let specs = match created {
            Ok(Ok(specs)) => specs,
            Ok(Err(e)) => {
                let reason = format!(
                    "stage {stage} ({}) could not create its tasks: {e}",
                    stage_def.name
                );
                cp::emit_at(
                    cp::Level::Error,
                    cp::STAGE_CREATE_TASKS_FAILED,
                    &fields,
                    Some(cp::ErrorFields {
                        class: Some("permanent"),
                        error_type: "CreateTasksError",
                        message: &reason,
                        chain: &reason,
                    }),
                );
                return self
                    .fail_job_in_tx(
                        tx,
                        job,
                        Some(stage),
                        &reason,
                        json!({"reason": "create_tasks_failed"}),
                    )
                    .await;
            }
            Err(panic) => {
                let reason = format!(
                    "stage {stage} ({}) create_tasks panicked: {}",
                    stage_def.name,
                    panic_text(&panic)
                );
                return self
                    .fail_job_in_tx(
                        tx,
                        job,
                        Some(stage),
                        &reason,
                        json!({"reason": "create_tasks_panicked"}),
                    )
                    .await;
            }
        };
        if let Some(dup) = first_duplicate_unit(&specs) {
            let reason = format!(
                "stage {stage} ({}): create_tasks returned the logical unit {dup:?} twice; units must be unique",
                stage_def.name
            );
            return self
                .fail_job_in_tx(
                    tx,
                    job,
                    Some(stage),
                    &reason,
                    json!({"reason": "duplicate_unit"}),
                )
                .await;
        }

        let n = specs.len();
        let shards = if n == 0 { 0 } else { shard_count(n) };
        tx.execute(
            sql::STAGE_INSERT,
            &[
                &job.job_id,
                &stage,
                &job.attempt,
                &stage_def.name,
                &stage_def.task_type,
                &(n as i32),
                &shards,
            ],
        )
        .await
        .ctx(|| format!("recording stage {stage} of job {}", job.job_id))?;
        events::write(
            tx,
            &[Event::job(&job.job_id, "stage_started", EventStatus::Info, cp::STAGE_TASKS_CREATED)
                .stage(stage)
                .attempt(job.attempt)
                .data(json!({"name": stage_def.name, "task_type": stage_def.task_type, "task_count": n, "shards": shards}))],
        )
        .await?;

        if n == 0 {
            // Nothing to run: the stage is complete now, in this transaction.
            cp::emit(
                cp::STAGE_TASKS_CREATED,
                &fields.clone().extra("task_count", 0),
            );
            return self.end_stage(tx, job, stage, stage_def.policy).await;
        }

        let mut shard_sizes = vec![0i32; shards as usize];
        let mut outbox_ids = Vec::with_capacity(n);
        let insert = tx
            .prepare_cached(sql::TASKS_INSERT_BATCH)
            .await
            .ctx(|| "preparing task insert".into())?;
        for (chunk_no, chunk) in specs.chunks(CHUNK).enumerate() {
            let base = chunk_no * CHUNK;
            let mut ids = Vec::with_capacity(chunk.len());
            let mut seqs = Vec::with_capacity(chunk.len());
            let mut shard_of = Vec::with_capacity(chunk.len());
            let mut msgs = Vec::with_capacity(chunk.len());
            for (i, spec) in chunk.iter().enumerate() {
                let seq = (base + i) as i32;
                let shard = (seq % shards as i32) as i16;
                shard_sizes[shard as usize] += 1;
                let task_id = TaskId::derive(&job.job_id, job.attempt, stage, &spec.unit);
                let m = TaskMessage {
                    task_id: task_id.to_string(),
                    parent_job_id: job.job_id.to_string(),
                    job_type: job.job_type.clone(),
                    task_type: stage_def.task_type.to_string(),
                    stage,
                    task_index: seq.to_string(),
                    parameters: spec.parameters.clone(),
                    parent_task_id: None,
                    retry_count: 0,
                    timestamp: None,
                    correlation_id: job.correlation_id.clone(),
                    job_attempt: job.attempt,
                }
                .stamped();
                msgs.push(m.to_outbound(
                    &self.settings().queues.tasks,
                    job.traceparent.as_deref(),
                    None,
                ));
                ids.push(task_id.to_string());
                seqs.push(seq);
                shard_of.push(shard);
            }
            let params: Vec<&Value> = chunk.iter().map(|s| &s.parameters).collect();
            let inserted = tx
                .execute(
                    &insert,
                    &[
                        &job.job_id,
                        &job.job_type,
                        &stage_def.task_type,
                        &stage,
                        &job.attempt,
                        &ids,
                        &seqs,
                        &params,
                        &shard_of,
                    ],
                )
                .await
                .ctx(|| {
                    format!(
                        "inserting {} tasks of stage {stage} of job {}",
                        chunk.len(),
                        job.job_id
                    )
                })?;
            if inserted as usize != chunk.len() {
                let reason = format!(
                    "stage {stage}: {} of {} task ids already existed; refusing to run a stage whose counter would not match its tasks",
                    chunk.len() - inserted as usize,
                    chunk.len()
                );
                return self
                    .fail_job_in_tx(
                        tx,
                        job,
                        Some(stage),
                        &reason,
                        json!({"reason": "task_id_conflict"}),
                    )
                    .await;
            }
            // Local mode: straight into the queue table in this transaction (no outbox move).
            if let Some(ids) = self.outbox().write_fan_out(tx, &msgs).await? {
                outbox_ids.extend(ids);
            }
        }
        let shard_ids: Vec<i16> = (0..shards).collect();
        tx.execute(
            sql::STAGE_COUNTERS_INSERT,
            &[&job.job_id, &stage, &shard_ids, &shard_sizes],
        )
        .await
        .ctx(|| format!("creating the stage {stage} counter of job {}", job.job_id))?;
        cp::emit(cp::STAGE_TASKS_CREATED, &fields.extra("task_count", n));
        Ok(outbox_ids)
    }

    async fn load_previous(
        &self,
        tx: &Transaction<'_>,
        job_id: &JobId,
        stage: i32,
    ) -> Result<(Vec<PreviousResult>, Vec<FailedTask>), StoreError> {
        let rows = tx
            .query(sql::STAGE_RESULTS_COMPLETED, &[&job_id, &stage])
            .await
            .ctx(|| format!("loading stage {stage} results of job {job_id}"))?;
        let previous = rows
            .into_iter()
            .map(|r| PreviousResult {
                task_id: r.get(0),
                task_index: r.get(1),
                result: r.get(2),
            })
            .collect();
        let failed = tx
            .query(sql::EARLIER_FAILED_TASKS, &[&job_id, &stage, &10_000i64])
            .await
            .ctx(|| format!("loading failures up to stage {stage} of job {job_id}"))?
            .into_iter()
            .map(|r| FailedTask {
                task_id: r.get(0),
                task_index: r.get(1),
                error: r.get(2),
                stage: r.get(3),
                parameters: r.get(4),
            })
            .collect();
        Ok((previous, failed))
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
        let state = client
            .query_opt(sql::JOB_MESSAGE_STATE, &[&job_id.as_str()])
            .await
            .ctx(|| format!("reading job {job_id}"))?;
        match state {
            None => {
                cp::emit_warn(cp::MESSAGE_UNKNOWN_JOB, fields);
                self.record_message_failure(
                    d,
                    None,
                    None,
                    "unknown_job",
                    &format!("job {job_id} does not exist"),
                    &serde_json::to_string(msg).unwrap_or_default(),
                )
                .await?;
                Ok(Handled::log(format!(
                    "job {job_id} does not exist; message recorded and acknowledged"
                )))
            }
            Some(r) => {
                let (status, stage, attempt): (String, i32, i32) = (r.get(0), r.get(1), r.get(2));
                let job = JobPosition {
                    stage,
                    attempt,
                    total_stages: r.get(3),
                    job_type: r.get(4),
                };
                let fields = fields
                    .clone()
                    .extra(
                        "expected",
                        format!("queued stage {} attempt {}", msg.stage, msg.attempt),
                    )
                    .extra(
                        "actual",
                        format!("{status} stage {stage} attempt {attempt}"),
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
                            &serde_json::to_string(msg).unwrap_or_default(),
                        )
                        .await?;
                    return Ok(Handled::log(format!(
                        "job {job_id} message can never apply ({why}); recorded as message failure {id} and acknowledged"
                    )));
                }
                cp::emit(cp::JOB_MESSAGE_DUPLICATE, &fields);
                Ok(Handled::log(format!(
                    "job {job_id} stage {} message is a duplicate or stale (job is {status} at stage {stage}); acknowledged",
                    msg.stage
                )))
            }
        }
    }
}

/// Where a job is, as far as judging one of its messages goes.
#[derive(Debug, Clone)]
struct JobPosition {
    stage: i32,
    attempt: i32,
    total_stages: i32,
    job_type: String,
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
}
