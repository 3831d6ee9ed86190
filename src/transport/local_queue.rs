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
            .prepare_cached(
                "INSERT INTO app.queue_messages (queue, message_id, body, properties, correlation_id, visible_at)
                 SELECT q, m, b, p, c, COALESCE(v, now())
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::text[], $6::timestamptz[])
                   AS u(q, m, b, p, c, v)
                 ON CONFLICT (queue, message_id) DO NOTHING",
            )
            .await
            .map_err(|e| err(e.to_string()))?;
        let q: Vec<&str> = messages.iter().map(|m| m.queue.as_str()).collect();
        let id: Vec<&str> = messages.iter().map(|m| m.message_id.as_str()).collect();
        let b: Vec<&str> = messages.iter().map(|m| m.body.as_str()).collect();
        let p: Vec<serde_json::Value> = messages
            .iter()
            .map(|m| serde_json::Value::Object(m.properties.clone()))
            .collect();
        let c: Vec<Option<&str>> = messages
            .iter()
            .map(|m| m.correlation_id.as_deref())
            .collect();
        let v: Vec<Option<chrono::DateTime<chrono::Utc>>> =
            messages.iter().map(|m| m.scheduled_at).collect();
        client
            .execute(&stmt, &[&q, &id, &b, &p, &c, &v])
            .await
            .map_err(|e| err(e.to_string()))?;
        self.wake(q.iter().copied());
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
