//! Local-mode queues: rows in `app.queue_messages`, delivered by the host emulator (`local/`).
//!
//! Sending inserts rows and wakes the emulator; duplicate MessageIds are dropped while the first
//! copy is still in the queue, like Service Bus duplicate detection.

use std::collections::HashMap;
use std::sync::Arc;

use deadpool_postgres::Pool;
use futures::future::BoxFuture;
use tokio::sync::Notify;

use super::{OutboundMessage, Transport, TransportError};
use crate::store::sql;

/// The local queue transport.
#[derive(Debug, Clone)]
pub struct LocalQueue {
    pool: Pool,
    wakers: Arc<HashMap<String, Arc<Notify>>>,
}

impl LocalQueue {
    /// A local queue over `pool`, with a waker for each named queue.
    pub fn new(pool: Pool, queues: &[&str]) -> Self {
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
    pub fn waker(&self, queue: &str) -> Option<Arc<Notify>> {
        self.wakers.get(queue).cloned()
    }

    /// Wakes the emulator's pumps for these queues.
    pub fn wake<'a>(&self, queues: impl IntoIterator<Item = &'a str>) {
        for q in queues {
            if let Some(w) = self.wakers.get(q) {
                w.notify_one();
            }
        }
    }

    /// Wakes every pump.
    pub fn wake_all(&self) {
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
        let cols = super::outbox::Columns::of(messages);
        client
            .execute(&stmt, &cols.params())
            .await
            .map_err(|e| err(e.to_string()))?;
        self.wake(cols.queues().iter().copied());
        Ok(())
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
    fn as_local(&self) -> Option<&LocalQueue> {
        Some(self)
    }
}
