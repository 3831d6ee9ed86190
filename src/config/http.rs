//! The HTTP side: the keys local mode checks like the Functions host ([`HttpSettings`],
//! [`Secret`]) and the server's timeouts and connection limit ([`ServerSettings`]).

use std::time::Duration;

use super::ConfigError;
use super::parse::{flag, num, secs};

/// A key or token: compared in constant time and never printed (`Debug` shows `***`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(v: impl Into<String>) -> Self {
        Self(v.into())
    }
    /// Whether `candidate` equals the secret (time independent of where they differ).
    pub fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), candidate.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
    /// The value, for sending it (never for logging).
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// HTTP keys and switches. In Azure the Functions host checks keys itself; in local mode the host
/// emulator checks them against these (`src/local/auth.rs`). With no key configured, local mode
/// does not check keys, as `func start` does not.
#[derive(Debug, Clone, Default)]
pub struct HttpSettings {
    /// Keys accepted at `authLevel: function` (`LOCAL_FUNCTION_KEYS`, comma-separated).
    pub function_keys: Vec<Secret>,
    /// The master key, accepted at every level and the only one at `admin` (`LOCAL_ADMIN_KEY`).
    pub admin_key: Option<Secret>,
    /// Whether the admin routes (migrations, redeploy) run at all (`COREMACHINE_ADMIN_ENABLED=true`).
    pub admin_enabled: bool,
}

impl HttpSettings {
    pub(super) fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let function_keys = get("LOCAL_FUNCTION_KEYS")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(Secret::new)
                    .collect()
            })
            .unwrap_or_default();
        let admin_key = get("LOCAL_ADMIN_KEY")
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
            .map(Secret::new);
        let admin_enabled = flag(get, "COREMACHINE_ADMIN_ENABLED")?;
        Ok(Self {
            function_keys,
            admin_key,
            admin_enabled,
        })
    }

    /// Whether any key is configured (local mode then checks keys like the host).
    pub(crate) fn keys_configured(&self) -> bool {
        !self.function_keys.is_empty() || self.admin_key.is_some()
    }
}

/// The HTTP server's limits. The Functions host keeps connections to the handler open and holds
/// one open for as long as an invocation runs (minutes), so no limit here counts the time a
/// request spends in a handler: only a client that is slow to *send* (head or body) or a
/// connection that sits idle between requests is cut.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    /// From a request's first byte to its complete head (`HTTP_HEADER_READ_TIMEOUT_S`, 30 s).
    pub header_read_timeout: Duration,
    /// From the head to the last byte of the body (`HTTP_BODY_READ_TIMEOUT_S`, 60 s).
    pub body_read_timeout: Duration,
    /// A connection with no request in flight and no byte received (`HTTP_IDLE_TIMEOUT_S`,
    /// 300 s: longer than the host's HTTP client keeps an idle connection, so the host is the
    /// side that closes idle connections and never sends on one being closed here).
    pub idle_timeout: Duration,
    /// Open connections at most; more are answered 503 and closed (`HTTP_MAX_CONNECTIONS`, 1024).
    pub max_connections: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(300),
            max_connections: 1024,
        }
    }
}

impl ServerSettings {
    /// Reads `HTTP_*` through `get`; an absent variable keeps its [`Default`].
    pub(super) fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let d = Self::default();
        let secs = |name, default| secs(get, name, default, 0.05, 86400.0);
        Ok(Self {
            header_read_timeout: secs("HTTP_HEADER_READ_TIMEOUT_S", d.header_read_timeout)?,
            body_read_timeout: secs("HTTP_BODY_READ_TIMEOUT_S", d.body_read_timeout)?,
            idle_timeout: secs("HTTP_IDLE_TIMEOUT_S", d.idle_timeout)?,
            max_connections: num(
                get,
                "HTTP_MAX_CONNECTIONS",
                d.max_connections as i64,
                1,
                1_000_000,
            )? as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_limits_have_defaults_and_refuse_nonsense() {
        let none = |_: &str| None;
        assert_eq!(
            ServerSettings::from_lookup(&none).unwrap(),
            ServerSettings::default()
        );
        let set = |k: &str| (k == "HTTP_IDLE_TIMEOUT_S").then(|| "2.5".to_string());
        assert_eq!(
            ServerSettings::from_lookup(&set).unwrap().idle_timeout,
            Duration::from_millis(2500)
        );
        for (k, v) in [
            ("HTTP_HEADER_READ_TIMEOUT_S", "soon"),
            ("HTTP_BODY_READ_TIMEOUT_S", "0"),
            ("HTTP_MAX_CONNECTIONS", "0"),
        ] {
            let get = |name: &str| (name == k).then(|| v.to_string());
            let e = ServerSettings::from_lookup(&get).unwrap_err().to_string();
            assert!(e.contains(k), "{k}={v}: {e}");
        }
    }
}
