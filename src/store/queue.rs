//! The local queues (`app.queue_messages`) as the host emulator leases them.

use deadpool_postgres::GenericClient;
use serde_json::{Map, Value};

use super::{QueryContext, StoreError, sql};

/// A message under a peek-lock (`local_queue_lease.sql`).
#[derive(Debug, Clone)]
pub(crate) struct Leased {
    /// Row id.
    pub(crate) id: i64,
    /// Its MessageId.
    pub(crate) message_id: String,
    /// Its body.
    pub(crate) body: String,
    /// Its application properties.
    pub(crate) properties: Map<String, Value>,
    /// Its CorrelationId.
    pub(crate) correlation_id: Option<String>,
    /// When it was enqueued.
    pub(crate) enqueued_at: chrono::DateTime<chrono::Utc>,
    /// Deliveries so far, this one included.
    pub(crate) delivery_count: i32,
    /// The lock this delivery holds.
    pub(crate) lock_token: uuid::Uuid,
    /// The queue it was dead-lettered from (poison queue only).
    pub(crate) dead_letter_source: Option<String>,
}

/// What one lease did.
#[derive(Debug, Clone, Default)]
pub(crate) struct Lease {
    /// The messages now locked for this delivery.
    pub(crate) leased: Vec<Leased>,
    /// Messages found at the maximum delivery count and moved to the dead-letter target.
    pub(crate) dead_lettered: i64,
}

/// Peek-locks up to `n` visible messages of `queue` for `lock_s` seconds; those already delivered
/// `max_delivery_count` times go to `dead_letter_to` instead (`local_queue_lease.sql`).
pub(crate) async fn lease(
    c: &impl GenericClient,
    queue: &str,
    n: i64,
    lock_s: f64,
    max_delivery_count: i32,
    dead_letter_to: &str,
) -> Result<Lease, StoreError> {
    let what = || format!("leasing up to {n} messages of queue {queue}");
    let stmt = c.prepare_cached(sql::LOCAL_QUEUE_LEASE).await.ctx(what)?;
    let rows = c
        .query(
            &stmt,
            &[&queue, &n, &lock_s, &max_delivery_count, &dead_letter_to],
        )
        .await
        .ctx(what)?;
    let dead_lettered = match rows.first() {
        Some(r) => r.try_get("dead_lettered").ctx(what)?,
        None => 0,
    };
    let leased = rows
        .iter()
        .filter(|r| r.get::<_, Option<i64>>("id").is_some())
        .map(|r| {
            Ok(Leased {
                id: r.try_get("id").ctx(what)?,
                message_id: r.try_get("message_id").ctx(what)?,
                body: r.try_get("body").ctx(what)?,
                properties: match r.try_get::<_, Value>("properties").ctx(what)? {
                    Value::Object(m) => m,
                    _ => Map::new(),
                },
                correlation_id: r.try_get("correlation_id").ctx(what)?,
                enqueued_at: r.try_get("enqueued_at").ctx(what)?,
                delivery_count: r.try_get("delivery_count").ctx(what)?,
                lock_token: r.try_get("lock_token").ctx(what)?,
                dead_letter_source: r.try_get("dead_letter_source").ctx(what)?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(Lease {
        leased,
        dead_lettered,
    })
}
