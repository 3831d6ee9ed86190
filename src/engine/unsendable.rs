//! Messages the broker refused for good (400, 403 quota or too large, 404, 410): sending them
//! again can never succeed, so leaving their outbox rows for the janitor would keep their jobs
//! waiting forever, retried on every run. Their jobs fail instead, in one transaction that also
//! deletes the rows, with the queue, the status and the broker's message in `error_details` and
//! in the `job_failed` event, and the first 1,000 characters of the first message kept there.
//!
//! A publish that mixes several jobs (a janitor sweep) is split by job first, so one refused
//! message fails only its own job.

use std::collections::BTreeMap;

use serde_json::json;

use super::Engine;
use super::job_ctx::JobCtx;
use crate::store::outbox::{self, UnsendableRow};
use crate::store::{self, QueryContext, StoreError, Transaction};
use crate::telemetry::checkpoints as cp;
use crate::transport::TransportError;
use crate::transport::outbox::PublishError;

/// Locked outbox rows by the job they belong to (as their sender wrote it; `None`: no job).
type ByJob = BTreeMap<Option<String>, Vec<UnsendableRow>>;

impl Engine {
    /// Publishes committed outbox rows. A refusal that can never succeed fails the jobs of the
    /// refused rows (see the module doc); a retryable failure leaves the rows for the janitor.
    /// Returns how many messages were sent.
    pub(crate) async fn publish_or_fail(&self, ids: &[i64]) -> Result<usize, PublishError> {
        match self.outbox().publish(ids).await {
            Err(PublishError::Transport(e)) if !e.retryable => {
                Ok(self.fail_unsendable(ids, &e).await?)
            }
            other => other,
        }
    }

    /// Publishes outbox rows older than `age_s` seconds (left by a crash or a failed publish), in
    /// chunks, through [`Engine::publish_or_fail`]. Returns how many were sent.
    pub(crate) async fn publish_stale(
        &self,
        age_s: f64,
        limit: i64,
    ) -> Result<usize, PublishError> {
        let ids = self.outbox().stale_ids(age_s, limit).await?;
        let mut total = 0;
        for chunk in ids.chunks(500) {
            total += self.publish_or_fail(chunk).await?;
        }
        Ok(total)
    }

    /// Fails the jobs of refused rows; when the rows belong to several jobs, each job's rows are
    /// sent alone first. Returns how many messages were sent after all.
    async fn fail_unsendable(&self, ids: &[i64], e: &TransportError) -> Result<usize, StoreError> {
        let by_job = self.lock_unsendable(ids, true, e).await?;
        let Some(by_job) = by_job else {
            return Ok(0);
        };
        let mut sent = 0;
        for (_, rows) in by_job {
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            match self.outbox().publish(&ids).await {
                Ok(n) => sent += n,
                Err(PublishError::Transport(e)) if !e.retryable => {
                    self.lock_unsendable(&ids, false, &e).await?;
                }
                // Reported by publish; the rows stay for the janitor.
                Err(_) => {}
            }
        }
        Ok(sent)
    }

    /// Locks the rows. If they belong to one job (or `split` is false), fails their jobs, deletes
    /// them and commits (`None`); otherwise returns them by job, changing nothing.
    async fn lock_unsendable(
        &self,
        ids: &[i64],
        split: bool,
        e: &TransportError,
    ) -> Result<Option<ByJob>, StoreError> {
        let mut client = store::client(self.pool(), "failing jobs of unsendable messages").await?;
        let tx = client
            .transaction()
            .await
            .ctx(|| "starting to fail jobs of unsendable messages".into())?;
        let mut by_job = ByJob::new();
        for r in outbox::lock_unsendable(&tx, ids).await? {
            by_job.entry(r.job_id.clone()).or_default().push(r);
        }
        if split && by_job.len() > 1 {
            return Ok(Some(by_job));
        }
        let mut more = Vec::new();
        for (job_id, rows) in &by_job {
            more.extend(self.fail_refused(&tx, job_id.as_deref(), rows, e).await?);
        }
        tx.commit()
            .await
            .ctx(|| "committing the failure of jobs with unsendable messages".into())?;
        // What failing the jobs wrote (if anything) goes out as any other committed row.
        let _ = self.outbox().publish(&more).await;
        Ok(None)
    }

    /// Inside `tx`: fails the job of one job's refused rows (if it is live), reports them and
    /// deletes them. Returns what failing the job wrote to the outbox.
    async fn fail_refused(
        &self,
        tx: &Transaction<'_>,
        job_id: Option<&str>,
        rows: &[UnsendableRow],
        e: &TransportError,
    ) -> Result<Vec<i64>, StoreError> {
        let first = &rows[0];
        let reason = format!(
            "{} message(s) to queue {} can never be sent: {e}",
            rows.len(),
            first.queue
        );
        let details = json!({
            "unsendable": true,
            "queue": e.queue,
            "status": e.status,
            "broker_message": e.message,
            "messages": rows.len(),
            "first_message_id": first.message_id,
            "first_message": first.body_head,
        });
        let mut more = Vec::new();
        let mut fields = cp::Fields::default();
        if let Some(job_id) = job_id {
            fields = cp::Fields::job(job_id);
            if let Some((ctx, status, _)) = JobCtx::load_named(tx, job_id).await?
                && status.is_live()
            {
                more = self
                    .fail_job_in_tx(tx, &ctx, None, &reason, details)
                    .await?;
            }
        }
        cp::emit_error(
            cp::OUTBOX_UNSENDABLE,
            &fields
                .extra("queue", &first.queue)
                .extra("messages", rows.len())
                .extra("first_message_id", &first.message_id),
            "TransportError",
            e,
        );
        let row_ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        outbox::delete(tx, &row_ids).await?;
        Ok(more)
    }
}
