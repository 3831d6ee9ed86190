//! The Service Bus transport: messages leave the process through the Service Bus REST API
//! (functions-protocol.md §5), used by the outbox in Azure mode (`coremachine serve`). Its
//! settings ([`ServiceBusSettings`]) are read by `config::service_bus`.
//!
//! - One message to a queue: `POST {namespace}/{queue}/messages` with the raw JSON body,
//!   `Content-Type: application/json`, a `BrokerProperties` header (MessageId, CorrelationId,
//!   ScheduledEnqueueTimeUtc, TimeToLive) and one header per application property.
//! - Several: batch sends (`application/vnd.microsoft.servicebus.json`), split so each request
//!   stays within the settings' [`ServiceBusLimits`](crate::config::ServiceBusLimits); a message
//!   over the message limit is refused before anything is sent, with an error naming its job and
//!   task.
//! - Auth: an Entra ID token for `https://servicebus.azure.net/.default` from the managed
//!   identity, or a SAS token signed from the `ServiceBusConnection` connection string.
//! - Every request goes through [`crate::azure::retry::send_with_retry`]: 408/429/5xx and
//!   timeouts are retried, a 401 refreshes the token once, 400/403/404/410 fail at once.
//!
//! A send that fails half-way leaves the outbox rows in place; the republished messages carry the
//! same MessageIds, so the broker's duplicate detection drops those already delivered.

pub(crate) mod sas;
pub(crate) mod wire;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use reqwest::header::{HeaderName, HeaderValue};

use super::{OutboundMessage, Transport, TransportError};
use crate::azure::breaker::Breaker;
use crate::azure::credential::{ManagedIdentity, SharedTokenSource, scopes};
use crate::azure::retry::{Target, authorization, send_with_retry};
use crate::config::{ServiceBusAuth, ServiceBusConnectionString, ServiceBusSettings};
use crate::telemetry::checkpoints as cp;
use sas::SasTokenSource;
use wire::Request;

/// Sends to Service Bus queues over REST.
#[derive(Debug, Clone)]
pub struct ServiceBusSender {
    settings: Arc<ServiceBusSettings>,
    http: reqwest::Client,
    tokens: SharedTokenSource,
    sas: Option<ServiceBusConnectionString>,
    breaker: Arc<Breaker>,
}

/// Why the sender could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the Service Bus sender for {namespace}: {message}")]
pub struct SenderSetupError {
    /// Namespace.
    pub namespace: String,
    /// Why.
    pub message: String,
}

impl ServiceBusSender {
    /// A sender with the credential the settings name.
    pub fn new(settings: ServiceBusSettings) -> Result<Self, SenderSetupError> {
        let err = |message: String| SenderSetupError {
            namespace: settings.namespace.clone(),
            message,
        };
        let (tokens, sas): (SharedTokenSource, _) = match &settings.auth {
            ServiceBusAuth::ManagedIdentity { client_id } => (
                Arc::new(ManagedIdentity::new(client_id.clone()).map_err(|e| err(e.to_string()))?),
                None,
            ),
            ServiceBusAuth::ConnectionString(c) => {
                (SasTokenSource::new(c.clone()), Some(c.clone()))
            }
        };
        Self::with_token_source(settings, tokens, sas)
    }

    /// A sender with an explicit token source (for Entra tokens; `sas` when the source signs SAS
    /// tokens, whose scope is the queue's resource URI).
    pub fn with_token_source(
        settings: ServiceBusSettings,
        tokens: SharedTokenSource,
        sas: Option<ServiceBusConnectionString>,
    ) -> Result<Self, SenderSetupError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| SenderSetupError {
                namespace: settings.namespace.clone(),
                message: format!("HTTP client: {e}"),
            })?;
        let breaker = Breaker::new(
            format!("Service Bus {}", settings.endpoint),
            settings.breaker,
        );
        Ok(Self {
            settings: Arc::new(settings),
            http,
            tokens,
            sas,
            breaker,
        })
    }

    /// The settings.
    pub fn settings(&self) -> &ServiceBusSettings {
        &self.settings
    }

    fn scope_for(&self, queue: &str) -> String {
        match &self.sas {
            Some(c) => c.resource_for(queue),
            None => scopes::SERVICE_BUS.to_string(),
        }
    }

    fn url_for(&self, queue: &str) -> String {
        let q: String = queue
            .split('/')
            .map(|seg| url::form_urlencoded::byte_serialize(seg.as_bytes()).collect::<String>())
            .collect::<Vec<_>>()
            .join("/");
        format!("{}/{}/messages?timeout=60", self.settings.endpoint, q)
    }

    /// Sends `messages` (any queues, kept in order per queue). All messages are checked against
    /// the size limit before the first request.
    pub async fn send_all(&self, messages: &[OutboundMessage]) -> Result<(), TransportError> {
        if messages.is_empty() {
            return Ok(());
        }
        let with_ids: Vec<OutboundMessage> = messages.iter().map(with_diagnostic_id).collect();
        let messages = &with_ids[..];
        let started = Instant::now();
        let s = &self.settings;
        // Group by queue, keeping first-seen order of queues and message order within each.
        let mut queues: Vec<(&str, Vec<wire::Prepared<'_>>)> = Vec::new();
        for m in messages {
            let p = wire::prepare(m, s.message_ttl, &s.limits).map_err(|e| {
                let err = TransportError {
                    queue: m.queue.clone(),
                    status: None,
                    message: e.to_string(),
                    retryable: false,
                };
                let mut f = cp::Fields::default()
                    .extra("queue", &m.queue)
                    .extra("message_id", &e.message_id);
                f.job_id = e.job_id.clone();
                f.task_id = e.task_id.clone();
                cp::emit_error(cp::SERVICE_BUS_SEND_FAILED, &f, "MessageTooLarge", &err);
                err
            })?;
            match queues.iter_mut().find(|(q, _)| *q == m.queue) {
                Some((_, v)) => v.push(p),
                None => queues.push((&m.queue, vec![p])),
            }
        }
        let mut requests: Vec<(&str, Request<'_>)> = Vec::new();
        for (q, prepared) in queues {
            requests.extend(wire::split(prepared, &s.limits).into_iter().map(|r| (q, r)));
        }
        let n_requests = requests.len();
        let sends: Vec<_> = requests
            .into_iter()
            .map(|(q, r)| self.send_request(q, r))
            .collect();
        let attempts: Vec<u32> = futures::stream::iter(sends)
            .buffered(s.concurrency.max(1))
            .try_collect()
            .await?;
        let mut f = cp::Fields::default()
            .extra("messages", messages.len())
            .extra("requests", n_requests)
            .extra("attempts", attempts.iter().sum::<u32>())
            .duration_ms(started.elapsed().as_millis() as u64);
        f.job_id = messages[0].job_id.clone();
        cp::emit(cp::SERVICE_BUS_SEND, &f);
        Ok(())
    }

    async fn send_request(&self, queue: &str, request: Request<'_>) -> Result<u32, TransportError> {
        let n = request.len();
        let first = match &request {
            Request::Single(p) => p.message,
            Request::Batch { messages, .. } => messages[0].message,
        };
        let context = match &request {
            Request::Single(p) => describe_one(p.message),
            Request::Batch { messages, .. } => format!(
                "job {}, {} messages from {}",
                first.job_id.as_deref().unwrap_or("-"),
                messages.len(),
                messages[0].message.message_id
            ),
        };
        let target = Target::new(
            "Service Bus",
            "queue",
            queue,
            format!("send {n} message{}", if n == 1 { "" } else { "s" }),
        )
        .with_context(context)
        .with_checkpoints(cp::SERVICE_BUS_SEND_RETRY, cp::SERVICE_BUS_SEND_FAILED)
        .for_job(first.job_id.clone())
        .with_breaker(Arc::clone(&self.breaker));
        let url = self.url_for(queue);
        let scope = self.scope_for(queue);
        let sent = send_with_retry(&self.settings.retry, &target, |attempt| {
            let url = url.clone();
            let scope = scope.clone();
            let target = &target;
            let request = &request;
            async move {
                let auth =
                    authorization(self.tokens.as_ref(), &scope, attempt.refresh_auth, target)
                        .await?;
                let rb = self
                    .http
                    .post(url)
                    .header(reqwest::header::AUTHORIZATION, auth);
                Ok(match request {
                    Request::Single(p) => {
                        let mut rb = rb
                            .header(reqwest::header::CONTENT_TYPE, wire::MESSAGE_CONTENT_TYPE)
                            .header("BrokerProperties", p.broker.to_header());
                        for (k, v) in &p.message.properties {
                            if let (Ok(name), Ok(value)) = (
                                HeaderName::from_bytes(k.as_bytes()),
                                HeaderValue::from_str(&wire::property_header_value(v)),
                            ) {
                                rb = rb.header(name, value);
                            }
                        }
                        rb.body(p.message.body.clone())
                    }
                    Request::Batch { body, .. } => rb
                        .header(reqwest::header::CONTENT_TYPE, wire::BATCH_CONTENT_TYPE)
                        .body(body.clone()),
                })
            }
        })
        .await
        .map_err(|e| TransportError {
            queue: queue.to_string(),
            status: e.status,
            retryable: e.retryable,
            message: e.to_string(),
        })?;
        Ok(sent.attempts)
    }
}

/// The application property Azure.Messaging.ServiceBus reads a message's trace context from when
/// the host runs without the SDK's (experimental) ActivitySource support, which is the default:
/// `MessagingClientDiagnostics.TryExtractTraceContext` takes `traceparent` only with that support
/// on and falls back to `Diagnostic-Id` (a W3C traceparent value) otherwise, and the AMQP path
/// reads `Diagnostic-Id` alone. So every message carries both, with the same value
/// (docs/observability.md, "One trace per job").
pub(crate) const DIAGNOSTIC_ID: &str = "Diagnostic-Id";

/// `m` with `Diagnostic-Id` beside its `traceparent` (unless it has one already).
fn with_diagnostic_id(m: &OutboundMessage) -> OutboundMessage {
    let mut m = m.clone();
    if !m.properties.contains_key(DIAGNOSTIC_ID)
        && let Some(tp) = m
            .properties
            .get(crate::telemetry::trace_context::TRACEPARENT)
            .cloned()
    {
        m.properties.insert(DIAGNOSTIC_ID.into(), tp);
    }
    m
}

fn describe_one(m: &OutboundMessage) -> String {
    let task = m.properties.get("task_id").and_then(|v| v.as_str());
    match (m.job_id.as_deref(), task) {
        (Some(j), Some(t)) => format!("job {j}, task {t}, message {}", m.message_id),
        (Some(j), None) => format!("job {j}, message {}", m.message_id),
        _ => format!("message {}", m.message_id),
    }
}

impl Transport for ServiceBusSender {
    fn name(&self) -> &'static str {
        "service_bus"
    }

    fn send<'a>(
        &'a self,
        messages: &'a [OutboundMessage],
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(self.send_all(messages))
    }
}
