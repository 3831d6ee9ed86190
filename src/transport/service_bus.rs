//! The Service Bus transport: messages leave the process through the Service Bus REST API
//! (functions-protocol.md §5), used by the outbox in Azure mode (`coremachine serve`).
//!
//! - One message to a queue: `POST {namespace}/{queue}/messages` with the raw JSON body,
//!   `Content-Type: application/json`, a `BrokerProperties` header (MessageId, CorrelationId,
//!   ScheduledEnqueueTimeUtc, TimeToLive) and one header per application property.
//! - Several: batch sends (`application/vnd.microsoft.servicebus.json`), split so each request
//!   stays within [`wire::Limits`]; a message over the message limit is refused before anything
//!   is sent, with an error naming its job and task.
//! - Auth: an Entra ID token for `https://servicebus.azure.net/.default` from the managed
//!   identity, or a SAS token signed from the `ServiceBusConnection` connection string.
//! - Every request goes through [`crate::azure::retry::send_with_retry`]: 408/429/5xx and
//!   timeouts are retried, a 401 refreshes the token once, 400/403/404/410 fail at once.
//!
//! A send that fails half-way leaves the outbox rows in place; the republished messages carry the
//! same MessageIds, so the broker's duplicate detection drops those already delivered.

pub mod sas;
pub mod wire;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use reqwest::header::{HeaderName, HeaderValue};

use super::{OutboundMessage, Transport, TransportError};
use crate::azure::breaker::{Breaker, BreakerConfig};
use crate::azure::credential::{ManagedIdentity, SharedTokenSource, scopes};
use crate::azure::retry::{RetryPolicy, Target, authorization, send_with_retry};
use crate::config::ConfigError;
use crate::telemetry::checkpoints as cp;
use sas::{ConnectionString, SasTokenSource};
use wire::{Limits, Request};

/// How the sender authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceBusAuth {
    /// Managed identity (`ServiceBusConnection__fullyQualifiedNamespace`), system-assigned or the
    /// user-assigned identity with this client id (`ServiceBusConnection__clientId`).
    ManagedIdentity {
        /// User-assigned client id.
        client_id: Option<String>,
    },
    /// Shared access key from the connection string in `ServiceBusConnection`.
    ConnectionString(ConnectionString),
}

/// Service Bus settings (Azure mode).
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceBusSettings {
    /// Namespace host, e.g. `mynamespace.servicebus.windows.net`.
    pub namespace: String,
    /// Authentication.
    pub auth: ServiceBusAuth,
    /// Where requests go (default `https://{namespace}`; `SERVICE_BUS_REST_ENDPOINT` points it at
    /// a stand-in).
    pub endpoint: String,
    /// Request limits.
    pub limits: Limits,
    /// TimeToLive of every message (`SERVICE_BUS_MESSAGE_TTL_S`; default: the queue's).
    pub message_ttl: Option<Duration>,
    /// Retries of one request.
    pub retry: RetryPolicy,
    /// Requests in flight per send (`SERVICE_BUS_SEND_CONCURRENCY`, default 4).
    pub concurrency: usize,
    /// The namespace's circuit breaker (`AZURE_BREAKER_*`).
    pub breaker: BreakerConfig,
}

/// The settings of one connection name: the plain setting, its `ConnectionStrings` forms and
/// its identity children.
struct ConnectionNames {
    base: &'static str,
    strings: [&'static str; 4],
    namespace: &'static str,
    client_id: &'static str,
    credential: &'static str,
}

/// What the Functions host reads for `"connection": "ServiceBusConnection"`, in its order (WebJobs
/// `GetWebJobsConnectionStringSection`): the `AzureWebJobs`-prefixed name first, then the name;
/// for each, a connection string (`ConnectionStrings:`, which App Service's connection-string
/// settings also become) before the plain setting.
static CONNECTION_NAMES: [ConnectionNames; 2] = [
    ConnectionNames {
        base: "AzureWebJobsServiceBusConnection",
        strings: [
            "ConnectionStrings__AzureWebJobsServiceBusConnection",
            "ConnectionStrings:AzureWebJobsServiceBusConnection",
            "SERVICEBUSCONNSTR_AzureWebJobsServiceBusConnection",
            "CUSTOMCONNSTR_AzureWebJobsServiceBusConnection",
        ],
        namespace: "AzureWebJobsServiceBusConnection__fullyQualifiedNamespace",
        client_id: "AzureWebJobsServiceBusConnection__clientId",
        credential: "AzureWebJobsServiceBusConnection__credential",
    },
    ConnectionNames {
        base: "ServiceBusConnection",
        strings: [
            "ConnectionStrings__ServiceBusConnection",
            "ConnectionStrings:ServiceBusConnection",
            "SERVICEBUSCONNSTR_ServiceBusConnection",
            "CUSTOMCONNSTR_ServiceBusConnection",
        ],
        namespace: "ServiceBusConnection__fullyQualifiedNamespace",
        client_id: "ServiceBusConnection__clientId",
        credential: "ServiceBusConnection__credential",
    },
];

impl ConnectionNames {
    /// The first connection name with any setting, as the host picks it (the plain
    /// `ServiceBusConnection` when none is set, for the error messages).
    fn resolve(nonempty: &impl Fn(&str) -> Option<String>) -> &'static Self {
        let set = |n: &ConnectionNames| {
            n.strings
                .iter()
                .chain([&n.base, &n.namespace, &n.client_id, &n.credential])
                .any(|k| nonempty(k).is_some())
        };
        let [prefixed, plain] = &CONNECTION_NAMES;
        if set(prefixed) {
            if set(plain) {
                tracing::warn!(
                    used = prefixed.base,
                    ignored = plain.base,
                    "both AzureWebJobsServiceBusConnection and ServiceBusConnection settings are \
                     set: the AzureWebJobs-prefixed one is used, as by the Functions host"
                );
            }
            prefixed
        } else {
            plain
        }
    }
}

impl ServiceBusSettings {
    /// Reads the settings through `get`, following the host's precedence of names
    /// (`AzureWebJobsServiceBusConnection` first; a connection string over the identity settings). Fails on missing or contradictory settings; errors never
    /// contain the connection string.
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let nonempty = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let names = ConnectionNames::resolve(&nonempty);
        let conn = names
            .strings
            .iter()
            .chain([&names.base])
            .find_map(|k| nonempty(k).map(|v| (*k, v)));
        let ns = nonempty(names.namespace);
        let client_id = nonempty(names.client_id);
        if let Some(c) = nonempty(names.credential)
            && !c.eq_ignore_ascii_case("managedidentity")
        {
            return Err(ConfigError::Invalid {
                name: names.credential,
                reason: format!("only \"managedidentity\" is supported, got {c:?}"),
            });
        }
        let (namespace, auth) = match (conn, ns) {
            (None, None) => {
                return Err(ConfigError::Missing {
                    name: "ServiceBusConnection__fullyQualifiedNamespace",
                    hint: "the Service Bus namespace host (mynamespace.servicebus.windows.net) for \
                           managed identity, or a connection string in ServiceBusConnection",
                });
            }
            (Some((name, c)), ns) => {
                // The host's listener takes the section's value (the string) over its
                // children, so the sender does too, and says so once.
                for ignored in [
                    ns.is_some().then_some(names.namespace),
                    client_id.is_some().then_some(names.client_id),
                ]
                .into_iter()
                .flatten()
                {
                    tracing::warn!(
                        setting = name,
                        ignored,
                        "both the connection string {name} and {ignored} are set: the connection \
                         string is used, as by the Functions host's Service Bus listener; remove \
                         one of them"
                    );
                }
                let cs = ConnectionString::parse(&c).map_err(|reason| ConfigError::Invalid {
                    name,
                    reason: format!("not a usable connection string: {reason}"),
                })?;
                (cs.host.clone(), ServiceBusAuth::ConnectionString(cs))
            }
            (None, Some(n)) => {
                let host = n
                    .split_once("://")
                    .map(|(_, h)| h)
                    .unwrap_or(&n)
                    .trim_end_matches('/')
                    .to_string();
                if host.is_empty() || host.contains('/') || host.contains(' ') {
                    return Err(ConfigError::Invalid {
                        name: names.namespace,
                        reason: format!(
                            "{n:?} is not a host name like mynamespace.servicebus.windows.net"
                        ),
                    });
                }
                (host, ServiceBusAuth::ManagedIdentity { client_id })
            }
        };
        let endpoint = match nonempty("SERVICE_BUS_REST_ENDPOINT") {
            Some(e) => {
                let u = url::Url::parse(&e).map_err(|err| ConfigError::Invalid {
                    name: "SERVICE_BUS_REST_ENDPOINT",
                    reason: format!("{e:?} is not a URL: {err}"),
                })?;
                if !matches!(u.scheme(), "http" | "https") {
                    return Err(ConfigError::Invalid {
                        name: "SERVICE_BUS_REST_ENDPOINT",
                        reason: format!("{e:?} must be an http(s) URL"),
                    });
                }
                e.trim_end_matches('/').to_string()
            }
            None => format!("https://{namespace}"),
        };
        let int = |name: &'static str,
                   default: usize,
                   min: usize,
                   max: usize|
         -> Result<usize, ConfigError> {
            match nonempty(name) {
                None => Ok(default),
                Some(v) => match v.parse::<usize>() {
                    Ok(n) if (min..=max).contains(&n) => Ok(n),
                    _ => Err(ConfigError::Invalid {
                        name,
                        reason: format!("expected an integer in {min}..={max}, got {v:?}"),
                    }),
                },
            }
        };
        let limits = Limits {
            max_batch_messages: int("SERVICE_BUS_MAX_BATCH_MESSAGES", 100, 1, 4500)?,
            max_batch_bytes: int("SERVICE_BUS_MAX_BATCH_BYTES", 256 * 1024, 1024, 1024 * 1024)?,
            max_message_bytes: int(
                "SERVICE_BUS_MAX_MESSAGE_BYTES",
                256 * 1024,
                1024,
                100 * 1024 * 1024,
            )?,
        };
        let message_ttl = match int("SERVICE_BUS_MESSAGE_TTL_S", 0, 0, 10 * 365 * 86400)? {
            0 => None,
            s => Some(Duration::from_secs(s as u64)),
        };
        let retry = RetryPolicy {
            max_retries: int("SERVICE_BUS_SEND_MAX_RETRIES", 5, 0, 20)? as u32,
            try_timeout: Duration::from_secs(int("SERVICE_BUS_SEND_TIMEOUT_S", 60, 1, 600)? as u64),
            ..RetryPolicy::default()
        };
        Ok(Self {
            namespace,
            auth,
            endpoint,
            limits,
            message_ttl,
            retry,
            concurrency: int("SERVICE_BUS_SEND_CONCURRENCY", 4, 1, 64)?,
            breaker: BreakerConfig::from_lookup(get)?,
        })
    }
}

/// Sends to Service Bus queues over REST.
#[derive(Debug, Clone)]
pub struct ServiceBusSender {
    settings: Arc<ServiceBusSettings>,
    http: reqwest::Client,
    tokens: SharedTokenSource,
    sas: Option<ConnectionString>,
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
        sas: Option<ConnectionString>,
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

/// The transport the settings ask for: the local queue, or a Service Bus sender (Azure mode).
pub fn transport_for(
    settings: &crate::config::Settings,
    local: &super::local_queue::LocalQueue,
) -> Result<super::SharedTransport, SenderSetupError> {
    match (&settings.transport, &settings.service_bus) {
        (crate::config::TransportMode::LocalQueue, _) => Ok(Arc::new(local.clone())),
        (crate::config::TransportMode::ServiceBus, Some(sb)) => {
            Ok(Arc::new(ServiceBusSender::new(sb.clone())?))
        }
        (crate::config::TransportMode::ServiceBus, None) => Err(SenderSetupError {
            namespace: "(not configured)".into(),
            message: "Azure mode needs ServiceBusConnection__fullyQualifiedNamespace or ServiceBusConnection".into(),
        }),
    }
}

/// The application property Azure.Messaging.ServiceBus reads a message's trace context from when
/// the host runs without the SDK's (experimental) ActivitySource support, which is the default:
/// `MessagingClientDiagnostics.TryExtractTraceContext` takes `traceparent` only with that support
/// on and falls back to `Diagnostic-Id` (a W3C traceparent value) otherwise, and the AMQP path
/// reads `Diagnostic-Id` alone. So every message carries both, with the same value
/// (docs/observability.md, "One trace per job").
pub const DIAGNOSTIC_ID: &str = "Diagnostic-Id";

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    const CONN: &str = "Endpoint=sb://ns1.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=TOPSECRETKEY";

    #[test]
    fn managed_identity_settings() {
        let s = ServiceBusSettings::from_lookup(&lookup(&[
            (
                "ServiceBusConnection__fullyQualifiedNamespace",
                "ns1.servicebus.windows.net",
            ),
            (
                "ServiceBusConnection__clientId",
                "11111111-2222-3333-4444-555555555555",
            ),
        ]))
        .unwrap();
        assert_eq!(s.namespace, "ns1.servicebus.windows.net");
        assert_eq!(s.endpoint, "https://ns1.servicebus.windows.net");
        assert_eq!(
            s.auth,
            ServiceBusAuth::ManagedIdentity {
                client_id: Some("11111111-2222-3333-4444-555555555555".into())
            }
        );
        assert_eq!(s.limits, Limits::default());
    }

    #[test]
    fn every_name_the_host_reads_is_read_in_its_order() {
        let other = CONN.replace("ns1.", "ns2.");
        let ns = |pairs: &[(&str, &str)]| {
            ServiceBusSettings::from_lookup(&lookup(pairs))
                .unwrap()
                .namespace
        };
        for name in [
            "ConnectionStrings__ServiceBusConnection",
            "SERVICEBUSCONNSTR_ServiceBusConnection",
            "CUSTOMCONNSTR_ServiceBusConnection",
            "AzureWebJobsServiceBusConnection",
            "ConnectionStrings__AzureWebJobsServiceBusConnection",
        ] {
            assert_eq!(ns(&[(name, CONN)]), "ns1.servicebus.windows.net", "{name}");
        }
        // A connection string before the plain setting; the AzureWebJobs prefix first.
        assert_eq!(
            ns(&[
                ("ServiceBusConnection", &other),
                ("ConnectionStrings__ServiceBusConnection", CONN)
            ]),
            "ns1.servicebus.windows.net"
        );
        assert_eq!(
            ns(&[
                ("ServiceBusConnection", &other),
                (
                    "AzureWebJobsServiceBusConnection__fullyQualifiedNamespace",
                    "ns1.servicebus.windows.net"
                )
            ]),
            "ns1.servicebus.windows.net"
        );
    }

    #[test]
    fn connection_string_settings_and_contradictions() {
        let s =
            ServiceBusSettings::from_lookup(&lookup(&[("ServiceBusConnection", CONN)])).unwrap();
        assert_eq!(s.namespace, "ns1.servicebus.windows.net");
        assert!(matches!(s.auth, ServiceBusAuth::ConnectionString(_)));
        assert!(!format!("{s:?}").contains("TOPSECRETKEY"));

        let both = ServiceBusSettings::from_lookup(&lookup(&[
            ("ServiceBusConnection", CONN),
            (
                "ServiceBusConnection__fullyQualifiedNamespace",
                "ns1.servicebus.windows.net",
            ),
        ]))
        .unwrap();
        assert!(
            matches!(both.auth, ServiceBusAuth::ConnectionString(_)),
            "the string wins, as in the host's listener"
        );

        let none = ServiceBusSettings::from_lookup(&lookup(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            none.contains("ServiceBusConnection__fullyQualifiedNamespace"),
            "{none}"
        );

        let bad = ServiceBusSettings::from_lookup(&lookup(&[(
            "ServiceBusConnection",
            "Endpoint=sb://x/;SharedAccessKey=TOPSECRETKEY",
        )]))
        .unwrap_err()
        .to_string();
        assert!(
            bad.contains("SharedAccessKeyName") && !bad.contains("TOPSECRETKEY"),
            "{bad}"
        );

        let limits = ServiceBusSettings::from_lookup(&lookup(&[
            ("ServiceBusConnection", CONN),
            ("SERVICE_BUS_MAX_BATCH_BYTES", "lots"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(limits.contains("SERVICE_BUS_MAX_BATCH_BYTES"), "{limits}");
    }
}
