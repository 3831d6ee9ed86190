//! The transactional outbox: messages are written with the state change that causes them and
//! published after commit. Publishing is at-least-once; deterministic MessageIds make replays
//! harmless.

use std::sync::Arc;

use deadpool_postgres::{Pool, Transaction};
use serde_json::Value;

use super::{OutboundMessage, SharedTransport};
use crate::engine::faults::{Fault, Faults};
use crate::store::{QueryContext, StoreError, Traced, sql};
use crate::telemetry::checkpoints as cp;

/// Messages as the column arrays the `unnest(...)` inserts take.
pub(crate) struct Columns<'a> {
    queue: Vec<&'a str>,
    id: Vec<&'a str>,
    body: Vec<&'a str>,
    props: Vec<Value>,
    corr: Vec<Option<&'a str>>,
    at: Vec<Option<chrono::DateTime<chrono::Utc>>>,
}

impl<'a> Columns<'a> {
    /// Splits `messages` into columns.
    pub(crate) fn of(messages: &'a [OutboundMessage]) -> Self {
        Self {
            queue: messages.iter().map(|m| m.queue.as_str()).collect(),
            id: messages.iter().map(|m| m.message_id.as_str()).collect(),
            body: messages.iter().map(|m| m.body.as_str()).collect(),
            props: messages
                .iter()
                .map(|m| Value::Object(m.properties.clone()))
                .collect(),
            corr: messages
                .iter()
                .map(|m| m.correlation_id.as_deref())
                .collect(),
            at: messages.iter().map(|m| m.scheduled_at).collect(),
        }
    }

    /// `$1..$6`: queue, message_id, body, properties, correlation_id, visible/scheduled time.
    pub(crate) fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 6] {
        [
            &self.queue,
            &self.id,
            &self.body,
            &self.props,
            &self.corr,
            &self.at,
        ]
    }

    /// The queues, for waking their pumps.
    pub(crate) fn queues(&self) -> &[&'a str] {
        &self.queue
    }
}

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
        let m = Columns::of(messages);
        let j: Vec<Option<&str>> = messages.iter().map(|m| m.job_id.as_deref()).collect();
        let rows = tx
            .query(
                &stmt,
                &[&m.queue, &m.id, &m.body, &m.props, &m.corr, &m.at, &j],
            )
            .traced(sql::OUTBOX_INSERT_BATCH)
            .await
            .ctx(|| format!("writing {} outbox messages for job {job}", messages.len()))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Writes `messages` as part of `tx` for a stage's fan-out. With the local queue they go
    /// straight into the queue table (same database, same transaction: no outbox row to move
    /// afterwards) and `Ok(None)` is returned: call [`Outbox::wake`] after commit. Otherwise they
    /// are outbox rows, and their ids are returned for [`Outbox::publish`].
    pub async fn write_fan_out(
        &self,
        tx: &Transaction<'_>,
        messages: &[OutboundMessage],
    ) -> Result<Option<Vec<i64>>, StoreError> {
        if self.transport.as_local().is_none() {
            return Self::write(tx, messages).await.map(Some);
        }
        if messages.is_empty() {
            return Ok(None);
        }
        let stmt = tx
            .prepare_cached(sql::LOCAL_QUEUE_INSERT_BATCH)
            .await
            .ctx(|| "preparing local queue insert".into())?;
        let m = Columns::of(messages);
        tx.execute(&stmt, &m.params())
            .traced(sql::LOCAL_QUEUE_INSERT_BATCH)
            .await
            .ctx(|| {
                format!(
                    "queueing {} messages for job {}",
                    messages.len(),
                    messages[0].job_id.as_deref().unwrap_or("")
                )
            })?;
        Ok(None)
    }

    /// Wakes the local queue's pumps (after a commit that queued messages directly).
    pub fn wake(&self) {
        if let Some(local) = self.transport.as_local() {
            local.wake_all();
        }
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
                .traced(sql::OUTBOX_TO_LOCAL_QUEUE)
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
            .traced(sql::OUTBOX_SELECT)
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
            .traced(sql::OUTBOX_DELETE)
            .await
            .ctx(|| "deleting published outbox rows".into())?;
        tx.commit()
            .await
            .ctx(|| "committing outbox publish".into())?;
        Ok(messages.len())
    }

    /// Ids of rows older than `age_s` seconds (left by a crash or a failed publish), oldest first.
    pub async fn stale_ids(&self, age_s: f64, limit: i64) -> Result<Vec<i64>, StoreError> {
        let client = crate::store::client(&self.pool, "finding stale outbox rows").await?;
        Ok(client
            .query(sql::OUTBOX_STALE_IDS, &[&age_s, &limit])
            .await
            .ctx(|| "finding stale outbox rows".into())?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }
}
