//! Poison messages: dead letters of the jobs and tasks queues, forwarded to the poison queue, are
//! reconciled against the database so that none leaves a job silently stuck.

use serde_json::json;

use super::events::{self, Event, EventStatus};
use super::job_ctx::JobCtx;
use super::malformed::{STORED_EXCERPT, excerpt, recover_ids};
use super::task_message::Ending;
use super::{Delivery, Engine, EngineError, Handled};
use crate::store::{self, QueryContext, sql};
use crate::telemetry::checkpoints as cp;

/// What reconciling a poison message found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoisonOutcome {
    /// The job or task had already failed: expected.
    Expected,
    /// The job or task had completed: the message was poisoned after the work was done.
    AfterCompletion,
    /// The job or task was live: now failed with `unhandled_poison`.
    Reconciled,
    /// Neither a job nor a task could be matched: recorded.
    Unmatched,
}

impl Engine {
    /// Reconciles one dead-lettered message.
    pub async fn on_poison_message(
        &self,
        raw: &str,
        d: &Delivery,
    ) -> Result<(Handled, PoisonOutcome), EngineError> {
        let ids = recover_ids(raw, &d.properties);
        let reason = d
            .dead_letter_reason
            .clone()
            .unwrap_or_else(|| "unknown".into());
        let description = d.dead_letter_description.clone().unwrap_or_default();
        let poison = json!({
            "unhandled_poison": true,
            "dead_letter_reason": reason,
            "dead_letter_description": description,
            "dead_letter_source": d.dead_letter_source,
            "message_id": d.message_id,
            "delivery_count": d.delivery_count,
            "message_excerpt": excerpt(raw, STORED_EXCERPT),
        });
        let base = cp::Fields::default()
            .invocation(d.invocation_id.as_deref())
            .extra("dead_letter_reason", &reason);
        cp::emit_warn(cp::POISON_RECEIVED, &base);

        let client = store::client(self.pool(), "reconciling a poison message").await?;
        let task = match ids.task_id.as_deref().or(ids.bare.as_deref()) {
            Some(t) => client
                .query_opt(sql::TASK_PARENT, &[&t])
                .await
                .ctx(|| format!("looking up task {t}"))?
                .map(|r| {
                    (
                        t.to_string(),
                        r.get::<_, String>(0),
                        r.get::<_, String>(1),
                        r.get::<_, i32>(2),
                        r.get::<_, i32>(3),
                        r.get::<_, String>(4),
                    )
                }),
            None => None,
        };
        let job_id = match &task {
            Some(t) => Some(t.1.clone()),
            None => ids.job_id.clone().or(ids.bare.clone()),
        };
        let job_state: Option<String> = match &job_id {
            Some(j) => client
                .query_opt(sql::JOB_STAGE_STATE, &[j])
                .await
                .ctx(|| format!("looking up job {j}"))?
                .map(|r| r.get(0)),
            None => None,
        };
        drop(client);
        let (Some(job_id), Some(job_status)) = (job_id, job_state) else {
            cp::emit_warn(cp::POISON_UNMATCHED, &base);
            self.record_message_failure(
                d,
                None,
                None,
                "poison_unmatched",
                &format!("dead letter ({reason}) matches no job or task"),
                raw,
            )
            .await?;
            return Ok((
                Handled::log("poison message matches no job or task; recorded"),
                PoisonOutcome::Unmatched,
            ));
        };
        let fields = base.clone().extra("job_id", &job_id);
        let subject_status = task
            .as_ref()
            .map(|t| t.2.clone())
            .unwrap_or_else(|| job_status.clone());
        let outcome = match subject_status.as_str() {
            "failed" | "cancelled" => PoisonOutcome::Expected,
            "completed" | "completed_with_errors" => PoisonOutcome::AfterCompletion,
            _ => PoisonOutcome::Reconciled,
        };
        let (checkpoint, event_status, event_type) = match outcome {
            PoisonOutcome::Expected => (cp::POISON_EXPECTED, EventStatus::Info, "poison_expected"),
            PoisonOutcome::AfterCompletion => (
                cp::POISON_AFTER_COMPLETION,
                EventStatus::Warning,
                "poison_after_completion",
            ),
            _ => (
                cp::POISON_RECONCILED,
                EventStatus::Failure,
                "poison_reconciled",
            ),
        };
        let mut task_fields = fields.clone();
        if let Some(t) = &task {
            task_fields = task_fields.task(&t.0).stage(t.3);
        }
        if outcome == PoisonOutcome::Reconciled {
            let details = format!("unhandled poison message ({reason}): {description}");
            // One transaction: pending tasks failed, the poisoned task failed, the job failed.
            let mut client = store::client(self.pool(), "reconciling a poison message").await?;
            let tx = client
                .transaction()
                .await
                .ctx(|| format!("starting poison reconcile of job {job_id}"))?;
            let poisoned_task = task.as_ref().map(|t| t.0.clone());
            tx.execute(
                sql::TASKS_FAIL_PENDING,
                &[&job_id, &format!("job failed: {details}"), &poisoned_task],
            )
            .await
            .ctx(|| format!("failing pending tasks of job {job_id}"))?;
            let mut ids = Vec::new();
            if let Some((task_id, _, _, stage, seq, task_type)) = &task {
                let ending = Ending {
                    status: "failed",
                    result: None,
                    error_details: Some(poison.to_string()),
                    error_class: Some("permanent"),
                    error_type: Some("UnhandledPoison"),
                    event_type: "task_failed",
                    event_status: "failure",
                    checkpoint: cp::POISON_RECONCILED,
                    event_data: poison.clone(),
                    unclaimed: true,
                };
                let who = format!("task {task_id} (stage {stage}, index {seq}, type {task_type})");
                ids = self
                    .end_task_in_tx(&tx, task_id, -1, ending, Some(&who))
                    .await?
                    .1;
            }
            events::write(
                &tx,
                &[Event::job(&job_id, event_type, event_status, checkpoint)
                    .data(poison.clone())
                    .error(Some("permanent"), "UnhandledPoison", &details)],
            )
            .await?;
            if let Some((job, status, _)) = JobCtx::load_named(&tx, &job_id).await?
                && status.is_live()
            {
                self.fail_job_in_tx(&tx, &job, None, &details, poison.clone())
                    .await?;
            }
            tx.commit()
                .await
                .ctx(|| format!("committing poison reconcile of job {job_id}"))?;
            self.publish(&ids).await;
            cp::emit_at(
                cp::Level::Error,
                checkpoint,
                &task_fields,
                Some(cp::ErrorFields {
                    class: Some("permanent"),
                    error_type: "UnhandledPoison",
                    message: &details,
                    chain: &details,
                }),
            );
        } else {
            let mut client = store::client(self.pool(), "recording a poison message").await?;
            let tx = client
                .transaction()
                .await
                .ctx(|| format!("recording poison for job {job_id}"))?;
            let mut ev =
                Event::job(&job_id, event_type, event_status, checkpoint).data(poison.clone());
            if let Some(t) = &task {
                ev = ev.task(&t.0).stage(t.3);
            }
            events::write(&tx, &[ev]).await?;
            tx.commit()
                .await
                .ctx(|| format!("recording poison for job {job_id}"))?;
            if outcome == PoisonOutcome::AfterCompletion {
                cp::emit_warn(checkpoint, &task_fields);
            } else {
                cp::emit(checkpoint, &task_fields);
            }
        }
        Ok((
            Handled::log(format!(
                "poison message for job {job_id} reconciled: {outcome:?}"
            )),
            outcome,
        ))
    }
}
