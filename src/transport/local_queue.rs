//! Local-mode queues: rows in `app.queue_messages`, delivered by the host emulator (`local/`).
//!
//! Sending inserts rows and wakes the emulator; duplicate MessageIds are dropped while the first
//! copy is still in the queue, like Service Bus duplicate detection. Because the queues are
//! tables of the state database, this transport also enqueues inside the caller's transaction
//! (a stage's fan-out is one insert in the state change's transaction) and moves outbox rows
//! with one statement.

use std::collections::HashMap;
use std::sync::Arc;

use deadpool_postgres::Pool;
use futures::future::BoxFuture;
use tokio::sync::Notify;

use super::columns::Columns;
use super::{OutboundMessage, Transport, TransportError};
use crate::store::{self, QueryContext, StoreError, Traced, Transaction, sql};

/// The local queue transport.
#[derive(Debug, Clone)]
pub(crate) struct LocalQueue {
    pool: Pool,
    wakers: Arc<HashMap<String, Arc<Notify>>>,
}

impl LocalQueue {
    /// A local queue over `pool`, with a waker for each named queue.
    pub(crate) fn new(pool: Pool, queues: &[&str]) -> Self {
        let wakers = queues
            .iter()
            .map(|q| (q.to_string(), Arc::new(Notify::new())))
            .collect();
        Self {
            pool,
            wakers: Arc::new(wakers),
        }
    }

    /// The waker the emulator waits on for `queue`.
    pub(crate) fn waker(&self, queue: &str) -> Option<Arc<Notify>> {
        self.wakers.get(queue).cloned()
    }

    /// Wakes the emulator's pumps for these queues.
    fn wake_queues<'a>(&self, queues: impl IntoIterator<Item = &'a str>) {
        for q in queues {
            if let Some(w) = self.wakers.get(q) {
                w.notify_one();
            }
        }
    }

    /// Wakes every pump.
    fn wake_all(&self) {
        for w in self.wakers.values() {
            w.notify_one();
        }
    }

    async fn insert(&self, messages: &[OutboundMessage]) -> Result<(), TransportError> {
        let err = |message: String| TransportError {
            queue: messages
                .first()
                .map(|m| m.queue.clone())
                .unwrap_or_default(),
            status: None,
            message,
            retryable: true,
        };
        let client = self.pool.get().await.map_err(|e| err(e.to_string()))?;
        let stmt = client
            .prepare_cached(sql::LOCAL_QUEUE_INSERT_BATCH)
            .await
            .map_err(|e| err(e.to_string()))?;
        let cols = Columns::of(messages);
        client
            .execute(&stmt, &cols.params())
            .await
            .map_err(|e| err(e.to_string()))?;
        self.wake_queues(cols.queues().iter().copied());
        Ok(())
    }

    /// One insert of `messages` inside `tx` (`local_queue_insert_batch.sql`).
    async fn insert_in_tx(
        &self,
        tx: &Transaction<'_>,
        messages: &[OutboundMessage],
    ) -> Result<(), StoreError> {
        if messages.is_empty() {
            return Ok(());
        }
        let stmt = tx
            .prepare_cached(sql::LOCAL_QUEUE_INSERT_BATCH)
            .await
            .ctx(|| "preparing local queue insert".into())?;
        tx.execute(&stmt, &Columns::of(messages).params())
            .traced(sql::LOCAL_QUEUE_INSERT_BATCH)
            .await
            .ctx(|| {
                format!(
                    "queueing {} messages for job {}",
                    messages.len(),
                    messages[0].job_id.as_deref().unwrap_or("")
                )
            })?;
        Ok(())
    }

    /// Moves outbox rows into the queue table in one statement (`outbox_to_local_queue.sql`),
    /// then wakes the pumps.
    async fn move_rows(&self, ids: &[i64]) -> Result<usize, StoreError> {
        let client = store::client(&self.pool, "publishing the outbox").await?;
        let stmt = client
            .prepare_cached(sql::OUTBOX_TO_LOCAL_QUEUE)
            .await
            .ctx(|| "preparing outbox move".into())?;
        let n = client
            .execute(&stmt, &[&ids])
            .traced(sql::OUTBOX_TO_LOCAL_QUEUE)
            .await
            .ctx(|| format!("moving {} outbox rows to the local queue", ids.len()))?;
        self.wake_all();
        Ok(n as usize)
    }
}

impl Transport for LocalQueue {
    fn name(&self) -> &'static str {
        "local_queue"
    }

    fn send<'a>(
        &'a self,
        messages: &'a [OutboundMessage],
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(self.insert(messages))
    }

    fn enqueue_in_tx<'a>(
        &'a self,
        tx: &'a Transaction<'_>,
        messages: &'a [OutboundMessage],
    ) -> Option<BoxFuture<'a, Result<(), StoreError>>> {
        Some(Box::pin(self.insert_in_tx(tx, messages)))
    }

    fn move_from_outbox<'a>(
        &'a self,
        ids: &'a [i64],
    ) -> Option<BoxFuture<'a, Result<usize, StoreError>>> {
        Some(Box::pin(self.move_rows(ids)))
    }

    fn wake(&self) {
        self.wake_all();
    }
}
