//! Task messages: claim under a lease, run the handler outside any transaction, then complete,
//! retry or fail in one transaction that also performs the fan-in (engine/task_end.rs,
//! engine/task_failure.rs). A claim that matches nothing is judged in engine/task_guard.rs.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures::FutureExt;
use serde_json::{Value, json};

use super::events::{self, Event, EventStatus};
use super::ids::TaskId;
use super::messages::TaskMessage;
use super::outcome::Expected;
use super::panics::panic_text;
use super::{Delivery, Engine, EngineError, Handled};
use crate::jobs::{TaskContext, TaskError};
use crate::model::{JobStatus, TaskStatus};
use crate::store::tasks::{self, ClaimRequest, ClaimedTask, TaskAttempt};
use crate::store::{self, Guarded, QueryContext, StoreError};
use crate::telemetry::checkpoints as cp;

/// A claimed task.
#[derive(Debug, Clone)]
pub(crate) struct Claimed {
    pub ctx: TaskContext,
    pub retry_count: i32,
    /// The claim's fencing token (`None`: the janitor's, for an attempt whose lease expired).
    pub claim_token: Option<i32>,
}

impl Claimed {
    /// The details of its `task_completed` event, after a handler that ran `elapsed` ms.
    pub(super) fn completed_event_data(&self, elapsed: u64) -> Value {
        json!({"task_type": self.ctx.task_type, "handler_ms": elapsed})
    }
}

impl From<ClaimedTask> for Claimed {
    fn from(t: ClaimedTask) -> Self {
        Claimed {
            retry_count: t.attempt.retry_count,
            claim_token: Some(t.claim_token),
            ctx: t.attempt.into(),
        }
    }
}

/// The attempt as its handler sees it.
impl From<TaskAttempt> for TaskContext {
    fn from(t: TaskAttempt) -> Self {
        TaskContext {
            task_id: t.task_id.to_string(),
            job_id: t.job_id.to_string(),
            job_type: t.job_type,
            task_type: t.task_type,
            stage: t.stage,
            task_index: t.task_index,
            parameters: t.parameters,
            attempt: t.retry_count + 1,
            correlation_id: t.correlation_id,
        }
    }
}

/// A task message as it arrived: its body, its delivery, and what it says.
pub(super) struct Arrival<'a> {
    /// The raw body.
    pub body: &'a str,
    /// How it was delivered.
    pub d: &'a Delivery,
    /// The parsed message.
    pub msg: TaskMessage,
    /// Its task (parsed once, here).
    pub task_id: TaskId,
    /// The checkpoint fields naming it.
    pub fields: cp::Fields,
}

impl<'a> Arrival<'a> {
    /// Parses a task message body; the error is the malformed-message text.
    pub(super) fn parse(body: &'a str, d: &'a Delivery) -> Result<Self, String> {
        let msg: TaskMessage =
            serde_json::from_str(body).map_err(|e| format!("task message is not valid: {e}"))?;
        let task_id = TaskId::parse(&msg.task_id).map_err(|e| e.to_string())?;
        let fields = cp::Fields::job(&msg.parent_job_id)
            .job_type(&msg.job_type)
            .task(&task_id)
            .task_type(&msg.task_type)
            .stage(msg.stage)
            .attempt(msg.retry_count + 1)
            .correlation(msg.correlation_id.as_deref())
            .invocation(d.invocation_id.as_deref());
        Ok(Arrival {
            body,
            d,
            msg,
            task_id,
            fields,
        })
    }

    /// The claim this message asks for.
    pub(super) fn request(&self) -> ClaimRequest {
        ClaimRequest {
            task_id: self.task_id.clone(),
            retry_count: self.msg.retry_count,
            job_attempt: self.msg.job_attempt,
            delivery_count: self.d.delivery_count,
        }
    }

    /// Reports the claim: TASK_CLAIMED, and TASK_TAKEN_OVER when it took the task from a holder
    /// that lost the message's lock.
    pub(super) fn claimed(&self, t: &ClaimedTask) {
        if let Some((token, delivery)) = t.took_over {
            cp::emit_warn(
                cp::TASK_TAKEN_OVER,
                &self
                    .fields
                    .clone()
                    .extra("claim", t.claim_token)
                    .extra("previous_claim", token)
                    .extra("previous_delivery_count", delivery.unwrap_or(0))
                    .extra("delivery_count", self.d.delivery_count.unwrap_or(0)),
            );
        }
        cp::emit(cp::TASK_CLAIMED, &self.fields);
    }
}

impl Engine {
    /// Processes one message from the tasks queue.
    pub async fn on_task_message(&self, body: &str, d: &Delivery) -> Result<Handled, EngineError> {
        let a = match Arrival::parse(body, d) {
            Ok(a) => a,
            Err(error) => {
                return self
                    .on_malformed(body, d, Expected::TaskMessage, &error)
                    .await;
            }
        };
        let client = store::client(self.pool(), "claiming a task").await?;
        let lease = self.settings().task_lease.as_secs_f64();
        let claimed =
            tasks::claim(&client, &a.request(), lease, d.invocation_id.as_deref()).await?;
        let claimed = match claimed {
            Guarded::Applied(t) => t,
            Guarded::NotApplied(state) => {
                return self.task_message_not_applicable(&client, &a, state).await;
            }
        };
        drop(client); // the connection goes back to the pool while the handler runs
        // The task's fan-in counter shard: its completion joins that shard's group lane.
        let counter_shard = claimed.counter_shard;
        a.claimed(&claimed);
        self.run_claimed(claimed.into(), &a.task_id, counter_shard, a.fields)
            .await
    }

    /// Runs a claimed attempt's handler and records its outcome; gives the claim back when the
    /// outcome could not be recorded.
    async fn run_claimed(
        &self,
        claimed: Claimed,
        task_id: &TaskId,
        counter_shard: i16,
        fields: cp::Fields,
    ) -> Result<Handled, EngineError> {
        let (result, elapsed) = self.run_to_outcome(&claimed).await;
        let fields = fields.duration_ms(elapsed);
        let outcome = match result {
            Err(e) => Err(EngineError::Store(e)),
            Ok(Ok(value)) => {
                self.complete_task(task_id, &claimed, counter_shard, value, elapsed, &fields)
                    .await
            }
            Ok(Err(e)) => {
                self.attempt_failed(&claimed, task_id, e, elapsed, &fields)
                    .await
            }
        };
        if let Err(e) = &outcome {
            self.release_claim(&claimed, task_id, e, &fields).await;
        }
        outcome
    }

    /// Runs a claimed attempt's handler, then the crash point between a handler's end and its
    /// outcome's commit (engine/hooks.rs). The handler's result (or the hook's error) and how
    /// long the handler ran, in ms.
    pub(super) async fn run_to_outcome(
        &self,
        c: &Claimed,
    ) -> (Result<Result<Value, TaskError>, StoreError>, u64) {
        let started = Instant::now();
        let result = self.run_handler(c).await;
        let elapsed = started.elapsed().as_millis() as u64;
        let hooked = self.hooks().before_outcome(&c.ctx).await;
        (hooked.map(|()| result), elapsed)
    }

    /// After the outcome of a claimed attempt could not be recorded (the invocation answers non-2xx
    /// and the message is delivered again): gives the claim back, so that the redelivery claims the
    /// task and runs it again instead of finding it leased to an invocation that has given up. If
    /// the job stopped processing meanwhile, the task is cancelled instead: it will never run.
    /// Best effort: when the database refuses this too, the lease expires and the janitor retries
    /// the attempt (this error is logged with the job, task, stage and attempt).
    pub(super) async fn release_claim(
        &self,
        c: &Claimed,
        task_id: &TaskId,
        cause: &EngineError,
        fields: &cp::Fields,
    ) {
        let t = task_id;
        match self.try_release_claim(c, task_id, cause).await {
            Ok(Some(next)) => cp::emit_warn(
                cp::TASK_CLAIM_RELEASED,
                &fields
                    .clone()
                    .extra("next_status", next)
                    .extra("cause", cause.to_string()),
            ),
            // The outcome was recorded after all (a commit whose answer was lost), or the lease
            // already moved on: nothing to give back.
            Ok(None) => {}
            Err(e) => tracing::error!(
                job_id = %c.ctx.job_id,
                task_id = %t,
                stage = c.ctx.stage,
                attempt = c.retry_count + 1,
                cause = %cause,
                error = %e,
                "releasing task {t} after its outcome was not recorded failed; its lease will expire and the janitor retries the attempt"
            ),
        }
    }

    /// The release in one transaction; the task's next status (`None`: nothing was released).
    async fn try_release_claim(
        &self,
        c: &Claimed,
        t: &TaskId,
        cause: &EngineError,
    ) -> Result<Option<TaskStatus>, StoreError> {
        let mut client = store::client(self.pool(), "releasing a task's claim").await?;
        let tx = client
            .transaction()
            .await
            .ctx(|| format!("starting the release of task {t}"))?;
        // Job first, as every job-ending transaction locks it: no lock-order cycle with them.
        let job_status = tasks::lock_job_share(&tx, t).await?;
        let data = json!({"task_type": c.ctx.task_type, "job_status": job_status});
        let released = tasks::release(
            &tx,
            t,
            c.retry_count,
            c.claim_token,
            &data,
            &cause.to_string(),
        )
        .await?;
        if !released.applied() {
            return Ok(None);
        }
        let next = if job_status == Some(JobStatus::Processing) {
            TaskStatus::Queued
        } else {
            match tasks::cancel_queued(&tx, t).await? {
                Guarded::Applied(()) => TaskStatus::Cancelled,
                Guarded::NotApplied(()) => TaskStatus::Queued,
            }
        };
        tx.commit()
            .await
            .ctx(|| format!("committing the release of task {t}"))?;
        Ok(Some(next))
    }

    pub(super) async fn run_handler(&self, c: &Claimed) -> Result<Value, TaskError> {
        let Some(handler) = self.registry().handler(&c.ctx.task_type).cloned() else {
            return Err(TaskError::permanent(
                "NoHandler",
                format!(
                    "no handler is registered for task type {:?}",
                    c.ctx.task_type
                ),
            ));
        };
        // A task may not outlive its lease, or the janitor would hand it to a second worker.
        let limit = self
            .settings()
            .task_lease
            .saturating_sub(Duration::from_secs(5))
            .max(Duration::from_secs(1));
        let ctx = c.ctx.clone();
        // Called inside the future, so a handler that panics before its first await is caught too.
        let fut = async move { handler(ctx).await };
        match tokio::time::timeout(limit, AssertUnwindSafe(fut).catch_unwind()).await {
            Ok(Ok(r)) => r,
            Ok(Err(p)) => {
                let text = panic_text(&p);
                cp::emit_warn(
                    cp::TASK_PANICKED,
                    &cp::Fields::job(&c.ctx.job_id)
                        .task(&c.ctx.task_id)
                        .extra("panic", &text),
                );
                Err(TaskError::permanent(
                    "Panic",
                    format!("handler panicked: {text}"),
                ))
            }
            Err(_) => Err(TaskError::transient(
                "Timeout",
                format!(
                    "handler ran longer than {}s (task lease minus 5s)",
                    limit.as_secs()
                ),
            )),
        }
    }

    async fn complete_task(
        &self,
        task_id: &TaskId,
        c: &Claimed,
        counter_shard: i16,
        mut value: Value,
        elapsed: u64,
        fields: &cp::Fields,
    ) -> Result<Handled, EngineError> {
        strip_nul(&mut value);
        // Completions arriving together commit together (engine/completions.rs).
        let (ended, ids) = self
            .complete_grouped(
                task_id,
                c.retry_count,
                c.claim_token,
                counter_shard,
                value,
                c.completed_event_data(elapsed),
            )
            .await?;
        self.completion_answer(task_id, c, ended, &ids, fields)
            .await
    }

    /// What a completion that was (`ended`) or was not recorded answers; publishes its messages.
    pub(super) async fn completion_answer(
        &self,
        task_id: &TaskId,
        c: &Claimed,
        ended: bool,
        ids: &[i64],
        fields: &cp::Fields,
    ) -> Result<Handled, EngineError> {
        if !ended {
            self.completion_refused(task_id, c, fields).await?;
            return Ok(Handled::log(format!(
                "task {task_id} lost its claim before completing (lease expired, or a redelivery took it over); result dropped"
            )));
        }
        cp::emit(cp::TASK_COMPLETED, fields);
        self.publish(ids).await;
        Ok(Handled::log(format!("task {task_id} completed")))
    }

    /// A completion whose claim is no longer the task's (its lease expired and the janitor
    /// re-queued it, or a redelivery took it over: a zombie holder answering late) changed
    /// nothing. It is a checkpoint and a `task_completion_refused` event on the job's timeline.
    async fn completion_refused(
        &self,
        task_id: &TaskId,
        c: &Claimed,
        fields: &cp::Fields,
    ) -> Result<(), StoreError> {
        let token = c.claim_token.unwrap_or(0);
        cp::emit_warn(
            cp::TASK_COMPLETION_LOST,
            &fields.clone().extra("claim", token),
        );
        let event = Event::job(
            &c.ctx.job_id,
            "task_completion_refused",
            EventStatus::Warning,
            cp::TASK_COMPLETION_LOST,
        )
        .stage(c.ctx.stage)
        .task(task_id.as_str())
        .attempt(c.retry_count + 1)
        .data(json!({"task_type": c.ctx.task_type, "claim": token, "reason": "the claim was no longer the task's (lease expired, or a redelivery took the task over)"}));
        let mut client = store::client(self.pool(), "recording a refused completion").await?;
        let tx = client
            .transaction()
            .await
            .ctx(|| format!("recording the refused completion of task {task_id}"))?;
        events::write(&tx, &[event]).await?;
        tx.commit()
            .await
            .ctx(|| format!("committing the refused completion of task {task_id}"))
    }
}

/// jsonb cannot store U+0000; a handler result containing it would fail its own completion forever.
pub(super) fn strip_nul(v: &mut Value) {
    match v {
        Value::String(s) if s.contains('\0') => *s = s.replace('\0', "\u{FFFD}"),
        Value::Array(a) => a.iter_mut().for_each(strip_nul),
        Value::Object(o) => {
            if o.keys().any(|k| k.contains('\0')) {
                let cleaned = std::mem::take(o)
                    .into_iter()
                    .map(|(k, v)| (k.replace('\0', "\u{FFFD}"), v))
                    .collect();
                *o = cleaned;
            }
            o.values_mut().for_each(strip_nul)
        }
        _ => {}
    }
}
