//! The transactional outbox: messages are written with the state change that causes them and
//! published after commit. Publishing is at-least-once; deterministic MessageIds make replays
//! harmless.

use std::sync::Arc;

use deadpool_postgres::{Pool, Transaction};
use serde_json::Value;

use super::{OutboundMessage, SharedTransport};
use crate::engine::faults::{Fault, Faults};
use crate::store::{QueryContext, StoreError, sql};
use crate::telemetry::checkpoints as cp;

/// Writes outbox rows inside a transaction and publishes them after commit.
#[derive(Debug, Clone)]
pub struct Outbox {
    pool: Pool,
    transport: SharedTransport,
    faults: Arc<Faults>,
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
    pub fn new(pool: Pool, transport: SharedTransport, faults: Arc<Faults>) -> Self {
        Self {
            pool,
            transport,
            faults,
        }
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
        let stmt = tx
            .prepare_cached(sql::OUTBOX_INSERT_BATCH)
            .await
            .ctx(|| "preparing outbox insert".into())?;
        let q: Vec<&str> = messages.iter().map(|m| m.queue.as_str()).collect();
        let id: Vec<&str> = messages.iter().map(|m| m.message_id.as_str()).collect();
        let b: Vec<&str> = messages.iter().map(|m| m.body.as_str()).collect();
        let p: Vec<Value> = messages
            .iter()
            .map(|m| Value::Object(m.properties.clone()))
            .collect();
        let c: Vec<Option<&str>> = messages
            .iter()
            .map(|m| m.correlation_id.as_deref())
            .collect();
        let v: Vec<Option<chrono::DateTime<chrono::Utc>>> =
            messages.iter().map(|m| m.scheduled_at).collect();
        let j: Vec<Option<&str>> = messages.iter().map(|m| m.job_id.as_deref()).collect();
        let rows = tx
            .query(&stmt, &[&q, &id, &b, &p, &c, &v, &j])
            .await
            .ctx(|| format!("writing {} outbox messages for job {job}", messages.len()))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
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
        if self.faults.hit(Fault::FailOutboxPublish) {
            return Err(super::TransportError {
                queue: "(outbox)".into(),
                status: None,
                message: "fault injection: outbox publish failed".into(),
                retryable: true,
            }
            .into());
        }
        let mut client = crate::store::client(&self.pool, "publishing the outbox").await?;
        if let Some(local) = self.transport.as_local() {
            let stmt = client
                .prepare_cached(sql::OUTBOX_TO_LOCAL_QUEUE)
                .await
                .ctx(|| "preparing outbox move".into())?;
            let n = client
                .execute(&stmt, &[&ids])
                .await
                .ctx(|| format!("moving {} outbox rows to the local queue", ids.len()))?;
            local.wake_all();
            return Ok(n as usize);
        }
        let tx = client
            .transaction()
            .await
            .ctx(|| "starting outbox publish".into())?;
        let rows = tx
            .query(sql::OUTBOX_SELECT, &[&ids])
            .await
            .ctx(|| "reading outbox rows".into())?;
        let messages: Vec<OutboundMessage> = rows
            .iter()
            .map(|r| OutboundMessage {
                queue: r.get(1),
                message_id: r.get(2),
                body: r.get(3),
                properties: match r.get::<_, Value>(4) {
                    Value::Object(m) => m,
                    _ => Default::default(),
                },
                correlation_id: r.get(5),
                scheduled_at: r.get(6),
                job_id: r.get(7),
            })
            .collect();
        let locked: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        if messages.is_empty() {
            return Ok(0);
        }
        self.transport.send(&messages).await?;
        tx.execute(sql::OUTBOX_DELETE, &[&locked])
            .await
            .ctx(|| "deleting published outbox rows".into())?;
        tx.commit()
            .await
            .ctx(|| "committing outbox publish".into())?;
        Ok(messages.len())
    }

    /// Publishes rows older than `age_s` seconds (left by a crash or a failed publish). Returns how
    /// many were published.
    pub async fn publish_stale(&self, age_s: f64, limit: i64) -> Result<usize, PublishError> {
        let client = crate::store::client(&self.pool, "finding stale outbox rows").await?;
        let ids: Vec<i64> = client
            .query(sql::OUTBOX_STALE_IDS, &[&age_s, &limit])
            .await
            .ctx(|| "finding stale outbox rows".into())?
            .iter()
            .map(|r| r.get(0))
            .collect();
        drop(client);
        let mut total = 0;
        for chunk in ids.chunks(500) {
            total += self.publish(chunk).await?;
        }
        Ok(total)
    }
}
