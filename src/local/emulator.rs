//! The host emulator: delivers local queue messages to the handler's trigger routes over HTTP
//! with exactly the payload the Functions host sends (functions-protocol.md §3), and settles them
//! like Service Bus peek-lock: 2xx completes; non-2xx or a timeout abandons (delivered again with
//! DeliveryCount + 1); past the max delivery count the message is dead-lettered to the poison
//! queue with `DeadLetterReason`; an expired lock makes it visible again; scheduled times hold.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use deadpool_postgres::Pool;
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::LocalQueueSettings;
use crate::startup::Deliveries;
use crate::startup::layout::{AppLayout, Trigger, timer_period};
use crate::store::queue::Leased;
use crate::store::{self, sql};

/// Settings of one emulator.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Base URL of the handler (`http://127.0.0.1:PORT`).
    pub handler_url: String,
    /// Queue entity settings.
    pub queue: LocalQueueSettings,
    /// The poison queue (dead letters of every other queue go there).
    pub poison_queue: String,
    /// Deliveries in flight per queue (host.json maxConcurrentCalls unless overridden).
    pub max_concurrent_calls: usize,
    /// Invocation timeout (host.json functionTimeout).
    pub function_timeout: Duration,
    /// Most messages of one batched invocation (host.json maxMessageBatchSize).
    pub max_message_batch_size: usize,
    /// How long the lock of a message whose invocation still runs is renewed (host.json
    /// maxAutoLockRenewalDuration); past it the lock expires and the message is delivered again.
    pub max_auto_lock_renewal: Duration,
    /// The key it presents on every invocation (checked when keys are configured).
    pub key: super::auth::EmulatorKey,
}

/// Starts one pump per Service Bus trigger and one ticker per timer trigger.
pub fn start(
    layout: &AppLayout,
    cfg: EmulatorConfig,
    pool: Pool,
    wakers: impl Fn(&str) -> Option<Arc<Notify>>,
    deliveries: Arc<dyn Deliveries>,
    shutdown: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(cfg.max_concurrent_calls * 4)
        .build()
        .expect("HTTP client builds");
    let mut handles = Vec::new();
    for f in &layout.functions {
        match &f.trigger {
            Trigger::ServiceBus {
                queue,
                binding,
                many,
                ..
            } => {
                let (settle_tx, settle_rx) = mpsc::unbounded_channel();
                let pump = Pump {
                    function: f.name.clone(),
                    queue: queue.clone(),
                    binding: binding.clone(),
                    batch: many.then_some(cfg.max_message_batch_size.max(1)),
                    cfg: cfg.clone(),
                    pool: pool.clone(),
                    http: http.clone(),
                    deliveries: deliveries.clone(),
                    wake: wakers(queue).unwrap_or_else(|| Arc::new(Notify::new())),
                    slots: Arc::new(Semaphore::new(cfg.max_concurrent_calls.max(1))),
                    settle: settle_tx,
                };
                handles.push(tokio::spawn(settle_completed(
                    pool.clone(),
                    queue.clone(),
                    settle_rx,
                )));
                handles.push(tokio::spawn(pump.run(shutdown.clone())));
            }
            Trigger::Timer { schedule } => {
                let period = std::env::var("LOCAL_TIMER_PERIOD_S")
                    .ok()
                    .and_then(|v| v.parse::<f64>().ok())
                    .map(Duration::from_secs_f64)
                    .unwrap_or_else(|| timer_period(schedule));
                let url = format!("{}/{}", cfg.handler_url, f.name);
                let http = http.clone();
                let shutdown = shutdown.clone();
                let schedule = schedule.clone();
                let key = cfg.key.clone();
                handles.push(tokio::spawn(async move {
                    let mut tick = tokio::time::interval(period);
                    tick.tick().await;
                    loop {
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tick.tick() => {
                                let payload = json!({
                                    "Data": {"timer": {"Schedule": {"AdjustForDST": true}, "ScheduleStatus": null, "IsPastDue": false}},
                                    "Metadata": {"sys": {"MethodName": url.rsplit('/').next(), "UtcNow": chrono::Utc::now().to_rfc3339(), "RandGuid": uuid::Uuid::new_v4().to_string()}, "schedule": schedule},
                                });
                                if let Err(e) = http.post(&url).header("x-functions-key", key.expose()).json(&payload).send().await {
                                    tracing::warn!(error = %e, url = %url, "timer invocation failed");
                                }
                            }
                        }
                    }
                }));
            }
            Trigger::Http { .. } => {}
        }
    }
    handles
}

struct Pump {
    function: String,
    queue: String,
    binding: String,
    /// `cardinality: many`: the most messages per invocation (None: one message each).
    batch: Option<usize>,
    cfg: EmulatorConfig,
    pool: Pool,
    http: reqwest::Client,
    deliveries: Arc<dyn Deliveries>,
    wake: Arc<Notify>,
    slots: Arc<Semaphore>,
    /// Completions go to one settler per queue, which deletes them in batches.
    settle: mpsc::UnboundedSender<Completed>,
}

/// A delivered message to complete.
struct Completed {
    id: i64,
    lock_token: uuid::Uuid,
}

/// Most messages one settle statement deletes.
const SETTLE_BATCH: usize = 512;

/// Completes delivered messages in batches: whatever completed while the previous DELETE ran is
/// deleted by the next one (Service Bus's batched complete). The invocation's concurrency slot is
/// free as soon as the handler answered: the engine committed its work before answering, and a
/// message whose settlement is lost (a crash) is delivered again when its lock expires and
/// acknowledged as a duplicate.
async fn settle_completed(pool: Pool, queue: String, mut rx: mpsc::UnboundedReceiver<Completed>) {
    let mut batch: Vec<Completed> = Vec::with_capacity(SETTLE_BATCH);
    while rx.recv_many(&mut batch, SETTLE_BATCH).await > 0 {
        let ids: Vec<i64> = batch.iter().map(|c| c.id).collect();
        let tokens: Vec<uuid::Uuid> = batch.iter().map(|c| c.lock_token).collect();
        let result = match pool.get().await {
            Ok(client) => match client.prepare_cached(sql::LOCAL_QUEUE_COMPLETE).await {
                Ok(stmt) => client
                    .execute(&stmt, &[&ids, &tokens])
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = result {
            // The locks expire and the messages are delivered again (at-least-once).
            tracing::warn!(queue = %queue, count = ids.len(), error = %e, "settling local queue messages failed; their locks will expire");
        }
        batch.clear();
    }
}

impl Pump {
    async fn run(self, shutdown: CancellationToken) {
        if let Some(max) = self.batch {
            return self.run_batches(max, shutdown).await;
        }
        let me = Arc::new(self);
        // Leased but not yet delivered. Leasing a batch of up to maxConcurrentCalls at a time (the
        // host's prefetch) costs one statement per batch instead of one per message; a buffered
        // message holds its lock for the few milliseconds until a slot frees.
        let mut buffer: VecDeque<Leased> = VecDeque::new();
        let batch = me.cfg.max_concurrent_calls.max(1);
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                p = me.slots.clone().acquire_owned() => p.expect("semaphore open"),
            };
            if buffer.is_empty() {
                match me.lease(batch).await {
                    Ok(l) => buffer.extend(l),
                    Err(e) => {
                        tracing::warn!(queue = %me.queue, error = %e, "local queue lease failed; retrying");
                        drop(permit);
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        }
                    }
                }
            }
            let Some(m) = buffer.pop_front() else {
                drop(permit);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = me.wake.notified() => {}
                    _ = tokio::time::sleep(me.cfg.queue.poll_interval) => {}
                }
                continue;
            };
            let me2 = me.clone();
            tokio::spawn(async move {
                me2.deliver(m).await;
                drop(permit);
            });
        }
    }

    /// The host's batch receive loop for `cardinality: many`: lease up to `max` messages, invoke
    /// once with all of them, settle them together (complete on 2xx, abandon on anything else),
    /// then the next batch. The Service Bus extension runs a batch function at a concurrency of
    /// one (ServiceBusListener's batch loop); the handler runs a batch's messages concurrently.
    async fn run_batches(self, max: usize, shutdown: CancellationToken) {
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let leased = match self.lease(max).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(queue = %self.queue, error = %e, "local queue lease failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            if leased.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(self.cfg.queue.poll_interval) => {}
                }
                continue;
            }
            self.deliver_batch(leased).await;
        }
    }

    async fn lease(&self, n: usize) -> Result<Vec<Leased>, String> {
        let client = self.pool.get().await.map_err(|e| e.to_string())?;
        // A message out of deliveries (its lock expired, or it was abandoned, at the limit) is
        // dead-lettered by the lease that would have delivered it again.
        let lease = store::queue::lease(
            &client,
            &self.queue,
            n as i64,
            self.cfg.queue.lock_duration.as_secs_f64(),
            self.cfg.queue.max_delivery_count,
            &self.dead_letter_target(),
        )
        .await
        .map_err(|e| e.to_string())?;
        if lease.dead_lettered > 0 {
            tracing::warn!(queue = %self.queue, count = lease.dead_lettered, "messages dead-lettered (MaxDeliveryCountExceeded)");
        }
        Ok(lease.leased)
    }

    fn dead_letter_target(&self) -> String {
        if self.queue == self.cfg.poison_queue {
            // The poison queue's own dead letters stay visible in a sub-queue; nothing is dropped.
            format!("{}/$DeadLetterQueue", self.queue)
        } else {
            self.cfg.poison_queue.clone()
        }
    }

    /// The exact payload the Functions host sends for a Service Bus trigger with `dataType: binary`.
    fn payload(&self, m: &Leased) -> Value {
        let q = |s: &str| serde_json::to_string(s).expect("string serialises");
        let mut meta = Map::new();
        meta.insert("DeliveryCount".into(), json!(m.delivery_count.to_string()));
        meta.insert("MessageId".into(), json!(q(&m.message_id)));
        meta.insert("LockToken".into(), json!(q(&m.lock_token.to_string())));
        meta.insert("SequenceNumber".into(), json!(m.id.to_string()));
        meta.insert("ContentType".into(), json!(q("application/json")));
        meta.insert(
            "EnqueuedTimeUtc".into(),
            json!(m.enqueued_at.format("%Y-%m-%dT%H:%M:%S").to_string()),
        );
        meta.insert("ExpiresAtUtc".into(), json!("9999-12-31T23:59:59"));
        if let Some(c) = &m.correlation_id {
            meta.insert("CorrelationId".into(), json!(q(c)));
        }
        if let Some(src) = &m.dead_letter_source {
            meta.insert("DeadLetterSource".into(), json!(q(src)));
        }
        meta.insert(
            "ApplicationProperties".into(),
            Value::Object(m.properties.clone()),
        );
        meta.insert("UserProperties".into(), Value::Object(m.properties.clone()));
        self.envelope(
            meta,
            json!(base64::engine::general_purpose::STANDARD.encode(m.body.as_bytes())),
        )
    }

    /// The invocation around a trigger value and its Metadata (plus the keys every Service Bus
    /// invocation carries).
    fn envelope(&self, mut meta: Map<String, Value>, value: Value) -> Value {
        meta.insert("MessageActions".into(), json!({}));
        meta.insert(
            "sys".into(),
            json!({"MethodName": self.function, "UtcNow": chrono::Utc::now().to_rfc3339(), "RandGuid": uuid::Uuid::new_v4().to_string()}),
        );
        let mut data = Map::new();
        data.insert(self.binding.clone(), value);
        json!({"Data": data, "Metadata": meta})
    }

    /// The payload the host sends for a batch (`cardinality: many`, `dataType: binary`):
    /// `Data.<binding>` and every `<Key>Array` are JSON strings of arrays, as the host's
    /// `JsonConvert.SerializeObject` writes them (docs/operations.md, "Batched invocations").
    fn batch_payload(&self, batch: &[Leased]) -> Value {
        let arr = |f: &dyn Fn(&Leased) -> Value| {
            Value::String(Value::Array(batch.iter().map(f).collect()).to_string())
        };
        let mut meta = Map::new();
        meta.insert(
            "DeliveryCountArray".into(),
            arr(&|m| json!(m.delivery_count)),
        );
        meta.insert("MessageIdArray".into(), arr(&|m| json!(m.message_id)));
        meta.insert(
            "LockTokenArray".into(),
            arr(&|m| json!(m.lock_token.to_string())),
        );
        meta.insert("SequenceNumberArray".into(), arr(&|m| json!(m.id)));
        meta.insert(
            "ContentTypeArray".into(),
            arr(&|_| json!("application/json")),
        );
        meta.insert(
            "EnqueuedTimeUtcArray".into(),
            arr(&|m| json!(m.enqueued_at.format("%Y-%m-%dT%H:%M:%S").to_string())),
        );
        meta.insert(
            "ExpiresAtUtcArray".into(),
            arr(&|_| json!("9999-12-31T23:59:59")),
        );
        meta.insert(
            "CorrelationIdArray".into(),
            arr(&|m| json!(m.correlation_id)),
        );
        meta.insert(
            "DeadLetterSourceArray".into(),
            arr(&|m| json!(m.dead_letter_source)),
        );
        meta.insert(
            "ApplicationPropertiesArray".into(),
            arr(&|m| Value::Object(m.properties.clone())),
        );
        meta.insert(
            "UserPropertiesArray".into(),
            arr(&|m| Value::Object(m.properties.clone())),
        );
        self.envelope(
            meta,
            arr(&|m| json!(base64::engine::general_purpose::STANDARD.encode(m.body.as_bytes()))),
        )
    }

    /// One batched invocation, settled as a whole (the host completes or abandons every message
    /// of the batch by the invocation's outcome).
    async fn deliver_batch(&self, batch: Vec<Leased>) {
        let ok = self
            .invoke_renewing(&self.batch_payload(&batch), &batch)
            .await;
        self.settle_all(ok, &batch).await;
    }

    /// Invokes the function while renewing the messages' locks, as the host does (its auto lock
    /// renewal, up to maxAutoLockRenewalDuration): a long invocation keeps its messages, and only
    /// a holder that died or stalled past the renewal loses them to a redelivery.
    async fn invoke_renewing(&self, payload: &Value, messages: &[Leased]) -> bool {
        tokio::select! {
            ok = self.invoke_with_seams(payload) => ok,
            never = self.renew_locks(messages) => match never {},
        }
    }

    /// Renews the locks every half lock duration until the renewal budget is spent (then waits
    /// forever: the lock runs out on its own). Never returns.
    async fn renew_locks(&self, messages: &[Leased]) -> std::convert::Infallible {
        let lock = self.cfg.queue.lock_duration;
        let period = (lock / 2).max(Duration::from_millis(50));
        let until = Instant::now() + self.cfg.max_auto_lock_renewal;
        let ids: Vec<i64> = messages.iter().map(|m| m.id).collect();
        let tokens: Vec<uuid::Uuid> = messages.iter().map(|m| m.lock_token).collect();
        loop {
            tokio::time::sleep(period).await;
            if Instant::now() + period > until {
                return std::future::pending().await;
            }
            let renewed = match self.pool.get().await {
                Ok(c) => c
                    .execute(
                        sql::LOCAL_QUEUE_RENEW,
                        &[&ids, &tokens, &lock.as_secs_f64()],
                    )
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = renewed {
                tracing::warn!(queue = %self.queue, count = ids.len(), error = %e, "renewing message locks failed; trying again");
            }
        }
    }

    async fn invoke(&self, payload: &Value) -> bool {
        let url = format!("{}/{}", self.cfg.handler_url, self.function);
        let req = self
            .http
            .post(&url)
            .header(
                "X-Azure-Functions-InvocationId",
                uuid::Uuid::new_v4().to_string(),
            )
            .header(
                "X-Azure-Functions-HostVersion",
                "4.1037.0.0 (coremachine-emulator)",
            )
            .header("User-Agent", "Azure-Functions-Host/4.1037.0.0")
            .header("x-functions-key", self.cfg.key.expose())
            .json(payload)
            .timeout(self.cfg.function_timeout)
            .send();
        match req.await {
            Ok(resp) => {
                let ok = resp.status().is_success();
                if !ok {
                    tracing::warn!(function = %self.function, status = %resp.status(), "invocation failed; message abandoned");
                }
                ok
            }
            Err(e) => {
                tracing::warn!(function = %self.function, error = %e, "invocation did not complete; message abandoned");
                false
            }
        }
    }

    async fn deliver(&self, m: Leased) {
        let ok = self
            .invoke_renewing(&self.payload(&m), std::slice::from_ref(&m))
            .await;
        self.settle_all(ok, std::slice::from_ref(&m)).await;
    }

    /// Invokes the function with `payload` (twice at once, or abandoned after a success, where
    /// the deliveries seam says so); whether the messages are to be completed.
    async fn invoke_with_seams(&self, payload: &Value) -> bool {
        let ok = if self.deliveries.twice(&self.function) {
            let (a, b) = tokio::join!(self.invoke(payload), self.invoke(payload));
            a && b
        } else {
            self.invoke(payload).await
        };
        ok && !self.deliveries.abandon_after_success(&self.function)
    }

    /// Completes the delivered messages (through the settler) or abandons them.
    async fn settle_all(&self, ok: bool, messages: &[Leased]) {
        if ok {
            // If the settler is gone (shutting down), the locks expire and the messages return.
            for m in messages {
                let _ = self.settle.send(Completed {
                    id: m.id,
                    lock_token: m.lock_token,
                });
            }
            return;
        }
        let Ok(client) = self.pool.get().await else {
            return; // the locks expire and the messages are delivered again
        };
        let ids: Vec<i64> = messages.iter().map(|m| m.id).collect();
        let tokens: Vec<uuid::Uuid> = messages.iter().map(|m| m.lock_token).collect();
        if let Err(e) = client
            .execute(sql::LOCAL_QUEUE_ABANDON, &[&ids, &tokens])
            .await
        {
            tracing::warn!(queue = %self.queue, count = ids.len(), error = %e, "abandoning local queue messages failed; their locks will expire");
        }
        self.wake.notify_one();
    }
}
