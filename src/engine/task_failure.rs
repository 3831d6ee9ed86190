//! A failed attempt: re-queued for a retry (with its retry message in the same transaction) or
//! recorded as the task's failure, as [`retry::decide`] says.

use std::time::Duration;

use serde_json::json;

use super::ids::TaskId;
use super::messages::TaskMessage;
use super::outcome::{self, Failure};
use super::retry::{self, RequeueMiss, RetryDecision};
use super::task_message::Claimed;
use super::{Engine, EngineError, Handled};
use crate::jobs::TaskError;
use crate::store::tasks::{self, RequeuedTask, TaskState};
use crate::store::{self, Guarded, QueryContext, jobs};
use crate::telemetry::checkpoints as cp;
use crate::transport::outbox::Outbox;

/// A failed attempt, as the retry and the failure record it.
struct Attempt<'a> {
    c: &'a Claimed,
    task_id: &'a TaskId,
    e: &'a TaskError,
    /// The error with its sources.
    chain: String,
    /// How long the handler ran.
    elapsed: u64,
}

/// What scheduling a retry did.
enum Requeue {
    /// Done (scheduled, or the attempt was no longer the task's): the answer.
    Done(Handled),
    /// The job is no longer processing: the task fails instead.
    JobStopped,
}

impl Engine {
    /// Treats a claimed attempt as failed with `e`: retries it or fails the task.
    pub(crate) async fn task_failed(
        &self,
        c: &Claimed,
        e: TaskError,
        elapsed: u64,
        fields: &cp::Fields,
    ) -> Result<Handled, EngineError> {
        let Ok(task_id) = TaskId::parse(&c.ctx.task_id) else {
            // A claimed attempt's id comes from its task row: text that is no task id names no
            // row to record anything on, which is what a guard that matches nothing answers.
            cp::emit_warn(cp::TASK_COMPLETION_LOST, fields);
            return Ok(Handled::log(format!(
                "task {} lost its lease before its failure was recorded",
                c.ctx.task_id
            )));
        };
        self.attempt_failed(c, &task_id, e, elapsed, fields).await
    }

    /// [`Engine::task_failed`] for an attempt whose task id is known.
    pub(super) async fn attempt_failed(
        &self,
        c: &Claimed,
        task_id: &TaskId,
        e: TaskError,
        elapsed: u64,
        fields: &cp::Fields,
    ) -> Result<Handled, EngineError> {
        let a = Attempt {
            c,
            task_id,
            e: &e,
            chain: e.chain(),
            elapsed,
        };
        let reason = match retry::decide(&self.settings().retry, e.class, c.retry_count) {
            RetryDecision::RetryAfter {
                delay,
                next_retry_count,
            } => match self
                .schedule_retry(&a, delay, next_retry_count, fields)
                .await?
            {
                Requeue::Done(h) => return Ok(h),
                Requeue::JobStopped => "not retried: its job is no longer processing".into(),
            },
            RetryDecision::Fail { reason } => reason,
        };
        self.record_task_failure(&a, &reason, fields).await
    }

    /// Records the task's failure (and, by its stage policy, maybe the job's).
    async fn record_task_failure(
        &self,
        a: &Attempt<'_>,
        reason: &str,
        fields: &cp::Fields,
    ) -> Result<Handled, EngineError> {
        let (c, e) = (a.c, a.e);
        let details = format!(
            "[{}] {}: {} ({reason} after {} attempt(s))",
            e.class.as_str(),
            e.error_type,
            a.chain,
            c.retry_count + 1
        );
        let mut ending = outcome::failed(
            Failure {
                details: details.clone(),
                class: e.class.as_str(),
                error_type: &e.error_type,
                checkpoint: cp::TASK_FAILED,
                event_data: json!({"task_type": c.ctx.task_type, "reason": reason, "attempts": c.retry_count + 1, "handler_ms": a.elapsed}),
            },
            false,
        );
        ending.claim_token = c.claim_token;
        let who = outcome::task_label(a.task_id, c.ctx.stage, c.ctx.task_index, &c.ctx.task_type);
        let (ended, ids) = self
            .end_task(a.task_id, c.retry_count, ending, Some(&who))
            .await?;
        if !ended {
            cp::emit_warn(cp::TASK_COMPLETION_LOST, fields);
            return Ok(Handled::log(format!(
                "task {} lost its lease before its failure was recorded",
                a.task_id
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
                chain: &a.chain,
            }),
        );
        self.publish(&ids).await;
        Ok(Handled::log(format!("{who} failed: {details}")))
    }

    /// Re-queues a task for its next attempt, with its retry message, in one transaction.
    async fn schedule_retry(
        &self,
        a: &Attempt<'_>,
        delay: Duration,
        next_retry_count: i32,
        fields: &cp::Fields,
    ) -> Result<Requeue, EngineError> {
        let (c, e, task_id) = (a.c, a.e, a.task_id);
        let mut client = store::client(self.pool(), "scheduling a retry").await?;
        let tx = client
            .transaction()
            .await
            .ctx(|| format!("starting retry of task {task_id}"))?;
        let data = json!({
            "delay_s": delay.as_secs_f64(),
            "next_attempt": next_retry_count + 1,
            "error_type": e.error_type,
            "handler_ms": a.elapsed,
        });
        let details = format!("[transient] {}: {}", e.error_type, a.chain);
        let requeued = tasks::requeue_retry(
            &tx,
            task_id,
            c.retry_count,
            c.claim_token,
            &details,
            &data,
            &e.error_type,
        )
        .await?;
        let requeued = match requeued {
            Guarded::Applied(t) => t,
            Guarded::NotApplied(state) => return Ok(requeue_missed(a, state, fields)),
        };
        let traceparent = jobs::traceparent(&tx, &requeued.job_id).await?;
        let msg = retry_message(requeued, c.ctx.correlation_id.clone());
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
            .ctx(|| format!("committing retry of task {task_id}"))?;
        // The connection goes back before publishing takes one: a batch runs many retries at
        // once, and each holding one while waiting for another would exhaust the pool.
        drop(client);
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
                chain: &a.chain,
            }),
        );
        self.publish(&ids).await;
        Ok(Requeue::Done(Handled::log(format!(
            "task {task_id} failed transiently ({}); attempt {} scheduled in {:.1}s",
            e.message,
            next_retry_count + 1,
            delay.as_secs_f64()
        ))))
    }
}

/// A re-queue that matched nothing (`state`: where the task is): either the job stopped
/// processing (then the task fails) or the lease was lost (nothing to record).
fn requeue_missed(a: &Attempt<'_>, state: Option<TaskState>, fields: &cp::Fields) -> Requeue {
    let actual = state.map(|s| (s.status, s.retry_count));
    match retry::requeue_miss(actual, a.c.retry_count) {
        RequeueMiss::JobStopped => Requeue::JobStopped,
        RequeueMiss::LeaseLost => {
            cp::emit_warn(cp::TASK_COMPLETION_LOST, fields);
            Requeue::Done(Handled::log(format!(
                "task {} lost its lease before its retry was scheduled",
                a.task_id
            )))
        }
    }
}

/// The message that delivers a re-queued task's next attempt.
fn retry_message(t: RequeuedTask, correlation_id: Option<String>) -> TaskMessage {
    TaskMessage {
        task_id: t.task_id.to_string(),
        parent_job_id: t.job_id.to_string(),
        job_type: t.job_type,
        task_type: t.task_type,
        stage: t.stage,
        task_index: t.task_index.to_string(),
        parameters: t.parameters,
        parent_task_id: None,
        retry_count: t.retry_count,
        timestamp: None,
        correlation_id,
        job_attempt: t.job_attempt,
    }
    .stamped()
}
