//! Poison messages: dead letters of the jobs and tasks queues, forwarded to the poison queue, are
//! reconciled against the database so that none leaves a job silently stuck.

use serde_json::{Value, json};

use super::events::{self, Event, EventStatus};
use super::ids::{JobId, TaskId};
use super::job_ctx::JobCtx;
use super::malformed::{RecoveredIds, STORED_EXCERPT, excerpt, recover_ids};
use super::outcome::{self, Failure};
use super::{Delivery, Engine, EngineError, Handled};
use crate::model::{JobStatus, TaskStatus};
use crate::store::tasks::{self, TaskParent};
use crate::store::{self, QueryContext, StoreError, jobs};
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

impl PoisonOutcome {
    /// The checkpoint, event status and event type that record it.
    fn record(self) -> (&'static str, EventStatus, &'static str) {
        match self {
            PoisonOutcome::Expected => (cp::POISON_EXPECTED, EventStatus::Info, "poison_expected"),
            PoisonOutcome::AfterCompletion => (
                cp::POISON_AFTER_COMPLETION,
                EventStatus::Warning,
                "poison_after_completion",
            ),
            PoisonOutcome::Reconciled | PoisonOutcome::Unmatched => (
                cp::POISON_RECONCILED,
                EventStatus::Failure,
                "poison_reconciled",
            ),
        }
    }
}

/// Decides what a dead letter means from the status of the task it names (when it names one)
/// and of its job (`None`: no job matched).
pub(super) fn decide(task: Option<TaskStatus>, job: Option<JobStatus>) -> PoisonOutcome {
    use PoisonOutcome::*;
    let Some(job) = job else {
        return Unmatched;
    };
    match task {
        Some(TaskStatus::Failed | TaskStatus::Cancelled) => Expected,
        Some(TaskStatus::Completed) => AfterCompletion,
        Some(TaskStatus::Queued | TaskStatus::Processing) => Reconciled,
        None => match job {
            JobStatus::Failed | JobStatus::Cancelled => Expected,
            JobStatus::Completed | JobStatus::CompletedWithErrors => AfterCompletion,
            JobStatus::Queued | JobStatus::Processing => Reconciled,
        },
    }
}

/// A dead letter as the records keep it.
struct DeadLetter {
    /// Why the broker dead-lettered it.
    reason: String,
    /// The broker's description.
    description: String,
    /// What is stored with the job, its task and their events.
    poison: Value,
}

impl DeadLetter {
    fn of(raw: &str, d: &Delivery) -> Self {
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
        Self {
            reason,
            description,
            poison,
        }
    }
}

impl Engine {
    /// Reconciles one dead-lettered message.
    pub async fn on_poison_message(
        &self,
        raw: &str,
        d: &Delivery,
    ) -> Result<(Handled, PoisonOutcome), EngineError> {
        let ids = recover_ids(raw, &d.properties);
        let dl = DeadLetter::of(raw, d);
        let base = cp::Fields::default()
            .invocation(d.invocation_id.as_deref())
            .extra("dead_letter_reason", &dl.reason);
        cp::emit_warn(cp::POISON_RECEIVED, &base);

        let (task, job) = self.poison_subject(&ids).await?;
        let outcome = decide(task.as_ref().map(|t| t.status), job.as_ref().map(|j| j.1));
        let Some((job_id, _)) = job else {
            cp::emit_warn(cp::POISON_UNMATCHED, &base);
            self.record_message_failure(
                d,
                None,
                None,
                "poison_unmatched",
                &format!("dead letter ({}) matches no job or task", dl.reason),
                raw,
            )
            .await?;
            return Ok((
                Handled::log("poison message matches no job or task; recorded"),
                outcome,
            ));
        };
        let mut fields = base.extra("job_id", &job_id);
        if let Some(t) = &task {
            fields = fields.task(&t.task_id).stage(t.stage);
        }
        if outcome == PoisonOutcome::Reconciled {
            self.reconcile_poison(&job_id, task.as_ref(), &dl, &fields)
                .await?;
        } else {
            self.record_poison(&job_id, task.as_ref(), &dl, outcome, &fields)
                .await?;
        }
        Ok((
            Handled::log(format!(
                "poison message for job {job_id} reconciled: {outcome:?}"
            )),
            outcome,
        ))
    }

    /// The task a dead letter names (by its task id, else a bare id) and its job (the task's, else
    /// the one it names) with the job's status.
    async fn poison_subject(
        &self,
        ids: &RecoveredIds,
    ) -> Result<(Option<TaskParent>, Option<(JobId, JobStatus)>), StoreError> {
        let client = store::client(self.pool(), "reconciling a poison message").await?;
        let named_task = ids.task_id.as_deref().or(ids.bare.as_deref());
        let task = match named_task.and_then(|t| TaskId::parse(t).ok()) {
            Some(t) => tasks::parent(&client, &t).await?,
            None => None,
        };
        let job_id = match &task {
            Some(t) => Some(t.job_id.clone()),
            None => ids
                .job_id
                .as_deref()
                .or(ids.bare.as_deref())
                .and_then(|j| JobId::parse(j).ok()),
        };
        let job = match job_id {
            Some(j) => jobs::stage_state(&client, &j).await?.map(|s| (j, s.status)),
            None => None,
        };
        Ok((task, job))
    }

    /// A live job or task: in one transaction its pending tasks fail, the poisoned task fails,
    /// the job fails.
    async fn reconcile_poison(
        &self,
        job_id: &JobId,
        task: Option<&TaskParent>,
        dl: &DeadLetter,
        fields: &cp::Fields,
    ) -> Result<(), EngineError> {
        let (checkpoint, event_status, event_type) = PoisonOutcome::Reconciled.record();
        let details = format!(
            "unhandled poison message ({}): {}",
            dl.reason, dl.description
        );
        let mut client = store::client(self.pool(), "reconciling a poison message").await?;
        let tx = client
            .transaction()
            .await
            .ctx(|| format!("starting poison reconcile of job {job_id}"))?;
        tasks::fail_pending(
            &tx,
            job_id,
            &format!("job failed: {details}"),
            task.map(|t| &t.task_id),
        )
        .await?;
        let mut ids = Vec::new();
        if let Some(t) = task {
            let ending = outcome::failed(
                Failure {
                    details: dl.poison.to_string(),
                    class: "permanent",
                    error_type: "UnhandledPoison",
                    checkpoint: cp::POISON_RECONCILED,
                    event_data: dl.poison.clone(),
                },
                true,
            );
            let who = outcome::task_label(&t.task_id, t.stage, t.task_index, &t.task_type);
            ids = self
                .end_task_in_tx(&tx, &t.task_id, -1, ending, Some(&who))
                .await?
                .1;
        }
        events::write(
            &tx,
            &[Event::job(job_id, event_type, event_status, checkpoint)
                .data(dl.poison.clone())
                .error(Some("permanent"), "UnhandledPoison", &details)],
        )
        .await?;
        if let Some((job, status, _)) = JobCtx::load(&tx, job_id).await?
            && status.is_live()
        {
            self.fail_job_in_tx(&tx, &job, None, &details, dl.poison.clone())
                .await?;
        }
        tx.commit()
            .await
            .ctx(|| format!("committing poison reconcile of job {job_id}"))?;
        drop(client); // publishing takes a connection of its own: never hold one while waiting
        self.publish(&ids).await;
        cp::emit_at(
            cp::Level::Error,
            checkpoint,
            fields,
            Some(cp::ErrorFields {
                class: Some("permanent"),
                error_type: "UnhandledPoison",
                message: &details,
                chain: &details,
            }),
        );
        Ok(())
    }

    /// A job or task that had already ended: the dead letter is recorded as an event.
    async fn record_poison(
        &self,
        job_id: &JobId,
        task: Option<&TaskParent>,
        dl: &DeadLetter,
        outcome: PoisonOutcome,
        fields: &cp::Fields,
    ) -> Result<(), EngineError> {
        let (checkpoint, event_status, event_type) = outcome.record();
        let mut client = store::client(self.pool(), "recording a poison message").await?;
        let tx = client
            .transaction()
            .await
            .ctx(|| format!("recording poison for job {job_id}"))?;
        let mut ev =
            Event::job(job_id, event_type, event_status, checkpoint).data(dl.poison.clone());
        if let Some(t) = task {
            ev = ev.task(t.task_id.as_str()).stage(t.stage);
        }
        events::write(&tx, &[ev]).await?;
        tx.commit()
            .await
            .ctx(|| format!("recording poison for job {job_id}"))?;
        if outcome == PoisonOutcome::AfterCompletion {
            cp::emit_warn(checkpoint, fields);
        } else {
            cp::emit(checkpoint, fields);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_is_judged_by_its_task_else_its_job() {
        use JobStatus as J;
        use PoisonOutcome::*;
        use TaskStatus as T;
        let cases = [
            (None, None, Unmatched),
            (Some(T::Queued), None, Unmatched),
            (Some(T::Queued), Some(J::Processing), Reconciled),
            (Some(T::Processing), Some(J::Processing), Reconciled),
            (Some(T::Failed), Some(J::Processing), Expected),
            (Some(T::Cancelled), Some(J::Cancelled), Expected),
            (Some(T::Completed), Some(J::Failed), AfterCompletion),
            (None, Some(J::Queued), Reconciled),
            (None, Some(J::Processing), Reconciled),
            (None, Some(J::Failed), Expected),
            (None, Some(J::Cancelled), Expected),
            (None, Some(J::Completed), AfterCompletion),
            (None, Some(J::CompletedWithErrors), AfterCompletion),
        ];
        for (task, job, want) in cases {
            assert_eq!(decide(task, job), want, "{task:?} {job:?}");
        }
    }
}
