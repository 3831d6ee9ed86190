//! Task messages: claim under a lease, run the handler outside any transaction, then complete,
//! retry or fail in one transaction that also performs the fan-in.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures::FutureExt;
use serde_json::{Value, json};

use super::faults::{Fault, Target};
use super::ids::TaskId;
use super::job_ctx::JobCtx;
use super::messages::TaskMessage;
use super::panics::panic_text;
use super::retry::{self, RetryDecision};
use super::{Delivery, Engine, EngineError, Handled};
use crate::jobs::{StagePolicy, TaskContext, TaskError};
use crate::model::JobStatus;
use crate::store::{self, QueryContext, StoreError, Traced, sql};
use crate::telemetry::checkpoints as cp;
use crate::transport::outbox::Outbox;

/// A claimed task.
#[derive(Debug, Clone)]
pub(crate) struct Claimed {
    pub ctx: TaskContext,
    pub retry_count: i32,
}

/// How a task attempt ended, as stored.
#[derive(Clone)]
pub(crate) struct Ending<'a> {
    pub status: &'static str,
    pub result: Option<Value>,
    pub error_details: Option<String>,
    pub error_class: Option<&'static str>,
    pub error_type: Option<&'a str>,
    pub event_type: &'static str,
    pub event_status: &'static str,
    pub checkpoint: &'static str,
    pub event_data: Value,
    /// Also end a task that is queued (not claimed): malformed and poison messages.
    pub unclaimed: bool,
}

impl Engine {
    /// Processes one message from the tasks queue.
    pub async fn on_task_message(&self, body: &str, d: &Delivery) -> Result<Handled, EngineError> {
        let msg: TaskMessage = match serde_json::from_str(body) {
            Ok(m) => m,
            Err(e) => {
                return self
                    .on_malformed(
                        body,
                        d,
                        super::malformed::Expected::TaskMessage,
                        &format!("task message is not valid: {e}"),
                    )
                    .await;
            }
        };
        let task_id = match TaskId::parse(&msg.task_id) {
            Ok(t) => t,
            Err(e) => {
                return self
                    .on_malformed(
                        body,
                        d,
                        super::malformed::Expected::TaskMessage,
                        &e.to_string(),
                    )
                    .await;
            }
        };
        let fields = cp::Fields::job(&msg.parent_job_id)
            .job_type(&msg.job_type)
            .task(&task_id)
            .task_type(&msg.task_type)
            .stage(msg.stage)
            .attempt(msg.retry_count + 1)
            .correlation(msg.correlation_id.as_deref())
            .invocation(d.invocation_id.as_deref());

        let client = store::client(self.pool(), "claiming a task").await?;
        let lease = self.settings().task_lease.as_secs_f64();
        let claim = client
            .prepare_cached(sql::TASK_CLAIM)
            .await
            .ctx(|| "preparing task claim".into())?;
        let row = client
            .query_opt(
                &claim,
                &[
                    &task_id.as_str(),
                    &msg.retry_count,
                    &lease,
                    &d.invocation_id,
                    &msg.job_attempt,
                ],
            )
            .traced(sql::TASK_CLAIM)
            .await
            .ctx(|| format!("claiming task {task_id} attempt {}", msg.retry_count + 1))?;
        let Some(row) = row else {
            return self
                .task_message_not_applicable(&client, &task_id, &msg, d, &fields, body)
                .await;
        };
        drop(client); // the connection goes back to the pool while the handler runs
        let claimed = Claimed {
            ctx: TaskContext {
                task_id: row.get(0),
                job_id: row.get(1),
                job_type: row.get(2),
                task_type: row.get(3),
                stage: row.get(4),
                task_index: row.get(5),
                parameters: row.get(6),
                attempt: row.get::<_, i32>(7) + 1,
                correlation_id: row.get(9),
            },
            retry_count: row.get(7),
        };
        // The task's fan-in counter shard: its completion joins that shard's group lane.
        let counter_shard: i16 = row.get(10);
        cp::emit(cp::TASK_CLAIMED, &fields);

        let started = Instant::now();
        let result = self.run_handler(&claimed).await;
        let elapsed = started.elapsed().as_millis() as u64;
        if self
            .faults()
            .hit_on(Fault::KillAfterHandler, target(&claimed.ctx))
        {
            // Simulated crash: the handler ran, its completion is never committed, and this
            // invocation never answers (the test then stops the process).
            std::future::pending::<()>().await;
            return Err(EngineError::Killed);
        }
        let fields = fields.duration_ms(elapsed);
        let outcome = if self
            .faults()
            .hit_on(Fault::OutcomeNotRecorded, target(&claimed.ctx))
        {
            Err(EngineError::Injected(
                "the transaction recording the task's outcome failed",
            ))
        } else {
            match result {
                Ok(value) => {
                    self.complete_task(&claimed, counter_shard, value, elapsed, &fields)
                        .await
                }
                Err(e) => self.task_failed(&claimed, e, elapsed, &fields).await,
            }
        };
        if let Err(e) = &outcome {
            self.release_claim(&claimed, e, &fields).await;
        }
        outcome
    }

    /// After the outcome of a claimed attempt could not be recorded (the invocation answers non-2xx
    /// and the message is delivered again): gives the claim back, so that the redelivery claims the
    /// task and runs it again instead of finding it leased to an invocation that has given up. If
    /// the job stopped processing meanwhile, the task is cancelled instead: it will never run.
    /// Best effort: when the database refuses this too, the lease expires and the janitor retries
    /// the attempt (this error is logged with the job, task, stage and attempt).
    async fn release_claim(&self, c: &Claimed, cause: &EngineError, fields: &cp::Fields) {
        let t = &c.ctx.task_id;
        match self.try_release_claim(c, cause).await {
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

    async fn try_release_claim(
        &self,
        c: &Claimed,
        cause: &EngineError,
    ) -> Result<Option<&'static str>, StoreError> {
        let t = &c.ctx.task_id;
        let mut client = store::client(self.pool(), "releasing a task's claim").await?;
        let tx = client
            .transaction()
            .await
            .ctx(|| format!("starting the release of task {t}"))?;
        // Job first, as every job-ending transaction locks it: no lock-order cycle with them.
        let job_status: Option<String> = tx
            .query_opt(sql::JOB_LOCK_SHARE, &[t])
            .await
            .ctx(|| format!("locking the job of task {t}"))?
            .map(|r| r.get(0));
        let data = json!({"task_type": c.ctx.task_type, "job_status": job_status});
        let released = tx
            .query_opt(
                sql::TASK_RELEASE,
                &[t, &c.retry_count, &data, &cause.to_string()],
            )
            .await
            .ctx(|| format!("releasing task {t} attempt {}", c.retry_count + 1))?;
        if released.is_none() {
            return Ok(None);
        }
        let next = if job_status.as_deref() == Some("processing") {
            "queued"
        } else {
            let cancelled = tx
                .query_opt(sql::TASK_CANCEL_QUEUED, &[t])
                .await
                .ctx(|| format!("cancelling task {t} of a job that ended"))?;
            if cancelled.is_some() {
                "cancelled"
            } else {
                "queued"
            }
        };
        tx.commit()
            .await
            .ctx(|| format!("committing the release of task {t}"))?;
        Ok(Some(next))
    }

    async fn run_handler(&self, c: &Claimed) -> Result<Value, TaskError> {
        let t = target(&c.ctx);
        if self.faults().hit_on(Fault::HandlerTransient, t) {
            return Err(TaskError::transient(
                "InjectedTransient",
                "fault injection: transient failure",
            ));
        }
        if self.faults().hit_on(Fault::HandlerPermanent, t) {
            return Err(TaskError::permanent(
                "InjectedPermanent",
                "fault injection: permanent failure",
            ));
        }
        let panic_now = self.faults().hit_on(Fault::HandlerPanic, t);
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
        let fut = async move {
            if panic_now {
                panic!("fault injection: handler panicked");
            }
            handler(ctx).await
        };
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
                &c.ctx.task_id,
                c.retry_count,
                counter_shard,
                value,
                json!({"task_type": c.ctx.task_type, "handler_ms": elapsed}),
            )
            .await?;
        if !ended {
            cp::emit_warn(cp::TASK_COMPLETION_LOST, fields);
            return Ok(Handled::log(format!(
                "task {} lost its lease before completing; result dropped",
                c.ctx.task_id
            )));
        }
        cp::emit(cp::TASK_COMPLETED, fields);
        self.publish(&ids).await;
        Ok(Handled::log(format!("task {} completed", c.ctx.task_id)))
    }

    pub(crate) async fn task_failed(
        &self,
        c: &Claimed,
        e: TaskError,
        elapsed: u64,
        fields: &cp::Fields,
    ) -> Result<Handled, EngineError> {
        let chain = e.chain();
        let mut decision = retry::decide(&self.settings().retry, e.class, c.retry_count);
        if let RetryDecision::RetryAfter {
            delay,
            next_retry_count,
        } = decision
        {
            match self
                .schedule_retry(c, &e, &chain, delay, next_retry_count, elapsed, fields)
                .await?
            {
                Some(h) => return Ok(h),
                None => {
                    decision = RetryDecision::Fail {
                        reason: "not retried: its job is no longer processing".into(),
                    }
                }
            }
        }
        match decision {
            RetryDecision::RetryAfter { .. } => unreachable!("retries return above"),
            RetryDecision::Fail { reason } => {
                let details = format!(
                    "[{}] {}: {chain} ({reason} after {} attempt(s))",
                    e.class.as_str(),
                    e.error_type,
                    c.retry_count + 1
                );
                let ending = Ending {
                    status: "failed",
                    result: None,
                    error_details: Some(details.clone()),
                    error_class: Some(e.class.as_str()),
                    error_type: Some(&e.error_type),
                    event_type: "task_failed",
                    event_status: "failure",
                    checkpoint: cp::TASK_FAILED,
                    event_data: json!({"task_type": c.ctx.task_type, "reason": reason, "attempts": c.retry_count + 1, "handler_ms": elapsed}),
                    unclaimed: false,
                };
                let who = format!(
                    "task {} (stage {}, index {}, type {})",
                    c.ctx.task_id, c.ctx.stage, c.ctx.task_index, c.ctx.task_type
                );
                let (ended, ids) = self
                    .end_task(&c.ctx.task_id, c.retry_count, ending, Some(&who))
                    .await?;
                if !ended {
                    cp::emit_warn(cp::TASK_COMPLETION_LOST, fields);
                    return Ok(Handled::log(format!(
                        "task {} lost its lease before its failure was recorded",
                        c.ctx.task_id
                    )));
                }
                cp::emit_at(
                    cp::Level::Error,
                    cp::TASK_FAILED,
                    fields,
                    Some(cp::ErrorFields {
                        class: Some(e.class.as_str()),
                        error_type: &e.error_type,
                        message: &e.message,
                        chain: &chain,
                    }),
                );
                self.publish(&ids).await;
                Ok(Handled::log(format!("{who} failed: {details}")))
            }
        }
    }

    /// Re-queues a task for its next attempt; `None` when its job is no longer processing.
    #[allow(clippy::too_many_arguments)]
    async fn schedule_retry(
        &self,
        c: &Claimed,
        e: &TaskError,
        chain: &str,
        delay: Duration,
        next_retry_count: i32,
        elapsed: u64,
        fields: &cp::Fields,
    ) -> Result<Option<Handled>, EngineError> {
        let mut client = store::client(self.pool(), "scheduling a retry").await?;
        let tx = client
            .transaction()
            .await
            .ctx(|| format!("starting retry of task {}", c.ctx.task_id))?;
        let data = json!({
            "delay_s": delay.as_secs_f64(),
            "next_attempt": next_retry_count + 1,
            "error_type": e.error_type,
            "handler_ms": elapsed,
        });
        let row = tx
            .query_opt(
                sql::TASK_REQUEUE_RETRY,
                &[
                    &c.ctx.task_id,
                    &c.retry_count,
                    &format!("[transient] {}: {chain}", e.error_type),
                    &data,
                    &e.error_type,
                ],
            )
            .await
            .ctx(|| {
                format!(
                    "re-queueing task {} for attempt {}",
                    c.ctx.task_id,
                    next_retry_count + 1
                )
            })?;
        let Some(row) = row else {
            // Either the job stopped processing (then the caller fails the task) or the lease was lost.
            let state = tx
                .query_opt(sql::TASK_STATE, &[&c.ctx.task_id])
                .await
                .ctx(|| format!("reading task {}", c.ctx.task_id))?;
            if state.is_some_and(|r| {
                r.get::<_, String>(0) == "processing" && r.get::<_, i32>(1) == c.retry_count
            }) {
                return Ok(None);
            }
            cp::emit_warn(cp::TASK_COMPLETION_LOST, fields);
            return Ok(Some(Handled::log(format!(
                "task {} lost its lease before its retry was scheduled",
                c.ctx.task_id
            ))));
        };
        let traceparent: Option<String> = tx
            .query_opt(
                "SELECT traceparent FROM app.jobs WHERE job_id = $1",
                &[&c.ctx.job_id],
            )
            .await
            .ctx(|| format!("reading job {}", c.ctx.job_id))?
            .and_then(|r| r.get(0));
        let msg = TaskMessage {
            task_id: row.get(0),
            parent_job_id: row.get(1),
            job_type: row.get(2),
            task_type: row.get(3),
            stage: row.get(4),
            task_index: row.get::<_, i32>(5).to_string(),
            parameters: row.get(6),
            parent_task_id: None,
            retry_count: row.get(7),
            timestamp: None,
            correlation_id: c.ctx.correlation_id.clone(),
            job_attempt: row.get(8),
        }
        .stamped();
        let at = chrono::Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
        let ids = Outbox::write(
            &tx,
            &[msg.to_outbound(
                &self.settings().queues.tasks,
                traceparent.as_deref(),
                Some(at),
            )],
        )
        .await?;
        tx.commit()
            .await
            .ctx(|| format!("committing retry of task {}", c.ctx.task_id))?;
        cp::emit_at(
            cp::Level::Warn,
            cp::TASK_RETRY_SCHEDULED,
            &fields
                .clone()
                .extra("delay_s", format!("{:.1}", delay.as_secs_f64())),
            Some(cp::ErrorFields {
                class: Some("transient"),
                error_type: &e.error_type,
                message: &e.message,
                chain,
            }),
        );
        self.publish(&ids).await;
        Ok(Some(Handled::log(format!(
            "task {} failed transiently ({}); attempt {} scheduled in {:.1}s",
            c.ctx.task_id,
            e.message,
            next_retry_count + 1,
            delay.as_secs_f64()
        ))))
    }

    /// Ends a task (completed or failed) in one transaction with its event and fan-in; when it is
    /// the last of its stage, ends the stage too. A failed task under fail_fast fails the job.
    /// Returns whether the task was ended by this call, and the outbox ids to publish.
    pub(crate) async fn end_task(
        &self,
        task_id: &str,
        retry_count: i32,
        e: Ending<'_>,
        who: Option<&str>,
    ) -> Result<(bool, Vec<i64>), StoreError> {
        // A transaction the server aborted to break a deadlock is run again (it changed nothing).
        const CONFLICT_ATTEMPTS: u32 = 3;
        let mut attempt = 1;
        loop {
            match self
                .end_task_once(task_id, retry_count, e.clone(), who)
                .await
            {
                Err(err) if err.is_conflict() && attempt < CONFLICT_ATTEMPTS => {
                    tracing::warn!(
                        task_id,
                        attempt = retry_count + 1,
                        error = %err,
                        "ending task {task_id} conflicted with another transaction; running it again"
                    );
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    async fn end_task_once(
        &self,
        task_id: &str,
        retry_count: i32,
        e: Ending<'_>,
        who: Option<&str>,
    ) -> Result<(bool, Vec<i64>), StoreError> {
        let mut client = store::client(self.pool(), "ending a task").await?;
        let tx = client
            .transaction()
            .await
            .ctx(|| format!("starting completion of task {task_id}"))?;
        let (ended, ids) = self
            .end_task_in_tx(&tx, task_id, retry_count, e, who)
            .await?;
        if !ended {
            return Ok((false, Vec::new()));
        }
        tx.commit()
            .await
            .ctx(|| format!("committing the end of task {task_id}"))?;
        Ok((true, ids))
    }

    /// [`Engine::end_task`] inside a caller's transaction.
    pub(crate) async fn end_task_in_tx(
        &self,
        tx: &crate::store::Transaction<'_>,
        task_id: &str,
        retry_count: i32,
        e: Ending<'_>,
        who: Option<&str>,
    ) -> Result<(bool, Vec<i64>), StoreError> {
        let stmt = tx
            .prepare_cached(sql::TASK_COMPLETE)
            .await
            .ctx(|| "preparing task completion".into())?;
        let row = tx
            .query_opt(
                &stmt,
                &[
                    &task_id,
                    &retry_count,
                    &e.status,
                    &e.result,
                    &e.error_details,
                    &e.error_class,
                    &e.event_type,
                    &e.event_status,
                    &e.checkpoint,
                    &e.event_data,
                    &e.error_type,
                    &e.unclaimed,
                ],
            )
            .traced(sql::TASK_COMPLETE)
            .await
            .ctx(|| format!("recording task {task_id} as {}", e.status))?;
        let Some(row) = row else {
            return Ok((false, Vec::new()));
        };
        let job_id: String = row.get(0);
        let stage: i32 = row.get(1);
        let shards_left: Option<i16> = row.get(5);
        let mut ids = Vec::new();
        let job_and_policy = if e.status == "failed" || shards_left == Some(0) {
            // A task that ends after its job stopped processing this stage (failed, cancelled) is
            // recorded, but it neither fails nor advances the job.
            match JobCtx::load_named(tx, &job_id).await? {
                Some((job, status, job_stage))
                    if status == JobStatus::Processing && job_stage == stage =>
                {
                    let policy = self.stage_policy(&job.job_type, stage);
                    Some((job, policy))
                }
                _ => None,
            }
        } else {
            None
        };
        if let Some((job, policy)) = job_and_policy {
            let over_budget = if e.status == "failed" {
                self.over_failure_budget(tx, &job, stage, policy).await?
            } else {
                None
            };
            if e.status == "failed" && (policy == StagePolicy::FailFast || over_budget.is_some()) {
                let reason = over_budget.unwrap_or_else(|| {
                    format!(
                        "{} failed: {}",
                        who.unwrap_or(task_id),
                        e.error_details.as_deref().unwrap_or("(no details)")
                    )
                });
                ids = self
                    .fail_job_in_tx(tx, &job, Some(stage), &reason, json!({"task_id": task_id, "error_class": e.error_class, "error_type": e.error_type}))
                    .await?;
            } else if shards_left == Some(0) {
                ids = self.end_stage(tx, &job, stage, policy).await?;
            }
        }
        Ok((true, ids))
    }

    async fn task_message_not_applicable(
        &self,
        client: &store::Client,
        task_id: &TaskId,
        msg: &TaskMessage,
        d: &Delivery,
        fields: &cp::Fields,
        body: &str,
    ) -> Result<Handled, EngineError> {
        let state = client
            .query_opt(sql::TASK_STATE, &[&task_id.as_str()])
            .await
            .ctx(|| format!("reading task {task_id}"))?;
        let Some(r) = state else {
            if super::control::task_was_archived(client, task_id.as_str()).await? {
                // A message of an attempt that a resubmit replaced: expected, nothing to do.
                cp::emit(
                    cp::TASK_MESSAGE_DUPLICATE,
                    &fields
                        .clone()
                        .extra("reason", "its job attempt was replaced by a resubmit"),
                );
                return Ok(Handled::log(format!(
                    "task {task_id} belongs to an attempt replaced by a resubmit; acknowledged"
                )));
            }
            cp::emit_warn(cp::MESSAGE_UNKNOWN_TASK, fields);
            let job = crate::engine::JobId::parse(&msg.parent_job_id).ok();
            self.record_message_failure(
                d,
                job.as_ref().map(|j| j.as_str()),
                Some(task_id.as_str()),
                "unknown_task",
                &format!("task {task_id} does not exist"),
                body,
            )
            .await?;
            return Ok(Handled::log(format!(
                "task {task_id} does not exist; message recorded and acknowledged"
            )));
        };
        let status: String = r.get(0);
        let current_retry: i32 = r.get(1);
        let lease_live: Option<bool> = r.get(2);
        let job_status: String = r.get(3);
        let task_job_attempt: i32 = r.get(6);
        let why = if msg.job_attempt != task_job_attempt {
            format!(
                "message of job attempt {}; the task was re-queued for attempt {task_job_attempt}",
                msg.job_attempt
            )
        } else if msg.retry_count < current_retry {
            format!(
                "stale copy of attempt {} (task is at attempt {})",
                msg.retry_count + 1,
                current_retry + 1
            )
        } else if status == "processing" && lease_live == Some(true) {
            "another worker holds the task's lease".to_string()
        } else if job_status != "processing" {
            if status == "queued" {
                // Its job ended while this message was on its way (a job failure skips tasks that
                // were being claimed or released at that moment): the task will never run.
                let cancelled = client
                    .query_opt(sql::TASK_CANCEL_QUEUED, &[&task_id.as_str()])
                    .await
                    .ctx(|| format!("cancelling task {task_id} of a job that ended"))?;
                if cancelled.is_some() {
                    cp::emit_warn(
                        cp::TASK_CANCELLED_LATE,
                        &fields.clone().extra("job_status", &job_status),
                    );
                    return Ok(Handled::log(format!(
                        "task {task_id}: its job is {job_status}; the queued task was cancelled"
                    )));
                }
            }
            format!("its job is {job_status}")
        } else if status == "queued" && msg.retry_count > current_retry {
            format!(
                "message for attempt {} but the task is at attempt {}",
                msg.retry_count + 1,
                current_retry + 1
            )
        } else {
            format!("task is already {status}")
        };
        cp::emit(
            cp::TASK_MESSAGE_DUPLICATE,
            &fields
                .clone()
                .extra("actual", format!("{status} attempt {}", current_retry + 1))
                .extra("reason", &why),
        );
        Ok(Handled::log(format!(
            "task {task_id}: nothing to do ({why}); acknowledged"
        )))
    }
}

/// jsonb cannot store U+0000; a handler result containing it would fail its own completion forever.
fn strip_nul(v: &mut Value) {
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

fn target(ctx: &TaskContext) -> Target<'_> {
    Target {
        task_type: Some(&ctx.task_type),
        task_index: Some(ctx.task_index),
        stage: Some(ctx.stage),
        function: None,
    }
}
