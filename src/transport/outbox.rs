//! The transactional outbox: messages are written with the state change that causes them and
//! published after commit. Publishing is at-least-once; deterministic MessageIds make replays
//! harmless.

use deadpool_postgres::{Pool, Transaction};

use super::columns::Columns;
use super::{OutboundMessage, SharedTransport};
use crate::store::{self, QueryContext, StoreError, Traced, sql};
use crate::telemetry::checkpoints as cp;

/// Writes outbox rows inside a transaction and publishes them after commit.
#[derive(Debug, Clone)]
pub struct Outbox {
    pool: Pool,
    transport: SharedTransport,
}

/// Why publishing failed (the rows stay in the outbox for the janitor).
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Reading or deleting rows failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The transport refused.
    #[error(transparent)]
    Transport(#[from] super::TransportError),
}

impl Outbox {
    /// An outbox publishing through `transport`.
    pub fn new(pool: Pool, transport: SharedTransport) -> Self {
        Self { pool, transport }
    }

    /// The transport.
    pub fn transport(&self) -> &SharedTransport {
        &self.transport
    }

    /// Writes `messages` into the outbox as part of `tx`; returns their row ids.
    pub async fn write(
        tx: &Transaction<'_>,
        messages: &[OutboundMessage],
    ) -> Result<Vec<i64>, StoreError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let job = messages[0].job_id.clone().unwrap_or_default();
        let columns = Columns::of(messages);
        let [queue, id, body, props, corr, at] = columns.params();
        let j: Vec<Option<&str>> = messages.iter().map(|m| m.job_id.as_deref()).collect();
        store::outbox::insert_batch(tx, &[queue, id, body, props, corr, at, &j], || {
            format!("writing {} outbox messages for job {job}", messages.len())
        })
        .await
    }

    /// Writes `messages` as part of `tx` for a stage's fan-out. When the transport can enqueue
    /// inside the transaction (the local queue: same database, same transaction, no outbox row
    /// to move afterwards), they go straight into its queues and `Ok(None)` is returned: call
    /// [`Outbox::wake`] after commit. Otherwise they are outbox rows, and their ids are returned
    /// for [`Outbox::publish`].
    pub(crate) async fn write_fan_out(
        &self,
        tx: &Transaction<'_>,
        messages: &[OutboundMessage],
    ) -> Result<Option<Vec<i64>>, StoreError> {
        match self.transport.enqueue_in_tx(tx, messages) {
            Some(enqueued) => enqueued.await.map(|()| None),
            None => Self::write(tx, messages).await.map(Some),
        }
    }

    /// Wakes the transport's deliverers (after a commit that enqueued messages directly).
    pub(crate) fn wake(&self) {
        self.transport.wake();
    }

    /// Publishes committed outbox rows. Failure is reported (checkpoint OUTBOX_PUBLISH_FAILED) and
    /// returned; the rows stay for the janitor, so nothing is lost.
    pub async fn publish(&self, ids: &[i64]) -> Result<usize, PublishError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let result = self.publish_inner(ids).await;
        if let Err(e) = &result {
            cp::emit_error(
                cp::OUTBOX_PUBLISH_FAILED,
                &cp::Fields::default().extra("outbox_rows", ids.len().to_string()),
                "PublishError",
                e,
            );
            if let Ok(client) = self.pool.get().await {
                let _ = client
                    .execute(sql::OUTBOX_MARK_FAILED, &[&ids, &e.to_string()])
                    .await;
            }
        }
        result
    }

    async fn publish_inner(&self, ids: &[i64]) -> Result<usize, PublishError> {
        if let Some(moved) = self.transport.move_from_outbox(ids) {
            return Ok(moved.await?);
        }
        let mut client = crate::store::client(&self.pool, "publishing the outbox").await?;
        let tx = client
            .transaction()
            .await
            .ctx(|| "starting outbox publish".into())?;
        let rows = store::outbox::select_locked(&tx, ids).await?;
        let locked: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let messages: Vec<OutboundMessage> = rows
            .into_iter()
            .map(|r| OutboundMessage {
                queue: r.queue,
                message_id: r.message_id,
                body: r.body,
                properties: r.properties,
                correlation_id: r.correlation_id,
                scheduled_at: r.scheduled_at,
                job_id: r.job_id,
            })
            .collect();
        if messages.is_empty() {
            return Ok(0);
        }
        self.transport.send(&messages).await?;
        tx.execute(sql::OUTBOX_DELETE, &[&locked])
            .traced(sql::OUTBOX_DELETE)
            .await
            .ctx(|| "deleting published outbox rows".into())?;
        tx.commit()
            .await
            .ctx(|| "committing outbox publish".into())?;
        Ok(messages.len())
    }

    /// Ids of rows older than `age_s` seconds (left by a crash or a failed publish), oldest first.
    pub(crate) async fn stale_ids(&self, age_s: f64, limit: i64) -> Result<Vec<i64>, StoreError> {
        let client = crate::store::client(&self.pool, "finding stale outbox rows").await?;
        store::outbox::stale_ids(&client, age_s, limit).await
    }
}
