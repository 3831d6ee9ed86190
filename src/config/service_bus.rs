//! Service Bus settings (Azure mode): the namespace and how to authenticate, read from the names
//! the Functions host reads for `"connection": "ServiceBusConnection"` (a connection string, or
//! the managed identity's `__fullyQualifiedNamespace` and `__clientId`), the request limits and
//! the sender's retry and circuit-breaker settings. The sender (`transport::service_bus`) takes
//! them as they are.

use std::fmt;
use std::time::Duration;

use super::ConfigError;
use super::azure::{BreakerSettings, RetryPolicy};

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
    ConnectionString(ServiceBusConnectionString),
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
    pub limits: ServiceBusLimits,
    /// TimeToLive of every message (`SERVICE_BUS_MESSAGE_TTL_S`; default: the queue's).
    pub message_ttl: Option<Duration>,
    /// Retries of one request.
    pub retry: RetryPolicy,
    /// Requests in flight per send (`SERVICE_BUS_SEND_CONCURRENCY`, default 4).
    pub concurrency: usize,
    /// The namespace's circuit breaker (`AZURE_BREAKER_*`).
    pub breaker: BreakerSettings,
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
        let nonempty = |k: &str| super::parse::nonempty(get, k);
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
                let cs = ServiceBusConnectionString::parse(&c).map_err(|reason| {
                    ConfigError::Invalid {
                        name,
                        reason: format!("not a usable connection string: {reason}"),
                    }
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
        let d = ServiceBusLimits::default();
        let limits = ServiceBusLimits {
            max_batch_messages: int(
                "SERVICE_BUS_MAX_BATCH_MESSAGES",
                d.max_batch_messages,
                1,
                4500,
            )?,
            max_batch_bytes: int(
                "SERVICE_BUS_MAX_BATCH_BYTES",
                d.max_batch_bytes,
                1024,
                1024 * 1024,
            )?,
            max_message_bytes: int(
                "SERVICE_BUS_MAX_MESSAGE_BYTES",
                d.max_message_bytes,
                1024,
                100 * 1024 * 1024,
            )?,
        };
        let message_ttl = match int("SERVICE_BUS_MESSAGE_TTL_S", 0, 0, 10 * 365 * 86400)? {
            0 => None,
            s => Some(Duration::from_secs(s as u64)),
        };
        let d = RetryPolicy::default();
        let retry = RetryPolicy {
            max_retries: int(
                "SERVICE_BUS_SEND_MAX_RETRIES",
                d.max_retries as usize,
                0,
                20,
            )? as u32,
            try_timeout: Duration::from_secs(int(
                "SERVICE_BUS_SEND_TIMEOUT_S",
                d.try_timeout.as_secs() as usize,
                1,
                600,
            )? as u64),
            ..d
        };
        Ok(Self {
            namespace,
            auth,
            endpoint,
            limits,
            message_ttl,
            retry,
            concurrency: int("SERVICE_BUS_SEND_CONCURRENCY", 4, 1, 64)?,
            breaker: BreakerSettings::from_lookup(get)?,
        })
    }
}

/// A parsed `Endpoint=sb://…;SharedAccessKeyName=…;SharedAccessKey=…` connection string.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceBusConnectionString {
    /// Namespace host, e.g. `mynamespace.servicebus.windows.net`.
    pub host: String,
    /// Policy (key) name.
    pub key_name: String,
    key: String,
    /// Entity the key is scoped to, when the string names one.
    pub entity_path: Option<String>,
}

impl fmt::Debug for ServiceBusConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceBusConnectionString")
            .field("host", &self.host)
            .field("key_name", &self.key_name)
            .field("key", &"<redacted>")
            .field("entity_path", &self.entity_path)
            .finish()
    }
}

impl ServiceBusConnectionString {
    /// Parses a connection string. Errors name the missing part, never echo the key.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut endpoint = None;
        let mut key_name = None;
        let mut key = None;
        let mut entity_path = None;
        for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((k, v)) = part.split_once('=') else {
                return Err(format!(
                    "part {:?} is not key=value",
                    part.chars().take(20).collect::<String>()
                ));
            };
            match k.trim().to_ascii_lowercase().as_str() {
                "endpoint" => endpoint = Some(v.trim().to_string()),
                "sharedaccesskeyname" => key_name = Some(v.trim().to_string()),
                "sharedaccesskey" => key = Some(v.trim().to_string()),
                "entitypath" => entity_path = Some(v.trim().to_string()),
                "sharedaccesssignature" => {
                    return Err("a pre-made SharedAccessSignature is not supported; give SharedAccessKeyName and SharedAccessKey".into());
                }
                _ => {}
            }
        }
        let endpoint =
            endpoint.ok_or("Endpoint=sb://<namespace>.servicebus.windows.net/ is missing")?;
        let host = endpoint
            .split_once("://")
            .map(|(_, rest)| rest)
            .unwrap_or(&endpoint)
            .trim_end_matches('/')
            .to_string();
        if host.is_empty() || host.contains('/') {
            return Err(format!(
                "Endpoint {endpoint:?} does not name a namespace host"
            ));
        }
        Ok(Self {
            host,
            key_name: key_name.ok_or("SharedAccessKeyName is missing")?,
            key: key.ok_or("SharedAccessKey is missing")?,
            entity_path: entity_path.filter(|e| !e.is_empty()),
        })
    }

    /// The shared access key, for signing tokens (never for logging).
    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// The resource URI a token for `queue` is signed for: `https://<host>/<queue>`.
    pub(crate) fn resource_for(&self, queue: &str) -> String {
        format!("https://{}/{}", self.host, queue)
    }
}

/// Size and count limits of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceBusLimits {
    /// Messages per batch request (`SERVICE_BUS_MAX_BATCH_MESSAGES`, default 100).
    pub max_batch_messages: usize,
    /// Bytes of one batch body (`SERVICE_BUS_MAX_BATCH_BYTES`, default 256 KiB; Premium: up to 1 MiB).
    pub max_batch_bytes: usize,
    /// Bytes of one message: body and properties (`SERVICE_BUS_MAX_MESSAGE_BYTES`, default 256 KiB
    /// Standard; Premium up to 100 MiB).
    pub max_message_bytes: usize,
}

impl Default for ServiceBusLimits {
    fn default() -> Self {
        Self {
            max_batch_messages: 100,
            max_batch_bytes: 256 * 1024,
            max_message_bytes: 256 * 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse::lookup;

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
        assert_eq!(s.limits, ServiceBusLimits::default());
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
    fn connection_strings_parse_and_never_show_the_key() {
        let c = ServiceBusConnectionString::parse(
            "Endpoint=sb://mynamespace.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=s3cr3t-key=;EntityPath=geospatial-jobs",
        )
        .unwrap();
        assert_eq!(c.host, "mynamespace.servicebus.windows.net");
        assert_eq!(c.key_name, "send");
        assert_eq!(c.entity_path.as_deref(), Some("geospatial-jobs"));
        assert!(!format!("{c:?}").contains("s3cr3t"));
        assert_eq!(
            c.resource_for("geospatial-jobs"),
            "https://mynamespace.servicebus.windows.net/geospatial-jobs"
        );
        let e = ServiceBusConnectionString::parse("Endpoint=sb://x/;SharedAccessKey=s3cr3t")
            .unwrap_err();
        assert!(e.contains("SharedAccessKeyName"), "{e}");
        assert!(!e.contains("s3cr3t"));
        assert!(
            ServiceBusConnectionString::parse("SharedAccessKeyName=a;SharedAccessKey=b")
                .unwrap_err()
                .contains("Endpoint")
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
