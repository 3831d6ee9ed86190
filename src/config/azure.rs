//! Settings shared by every Azure client (Service Bus, Blob Storage, the managed-identity
//! endpoint): how patiently one call is retried ([`RetryPolicy`]; its classification and
//! backoff are in `azure::retry`) and when an endpoint's circuit breaker opens
//! ([`BreakerSettings`]; the breaker is `azure::breaker`).

use std::time::Duration;

use super::ConfigError;
use super::parse::{num, secs};

/// How often and how patiently a call is retried.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (401 refreshes are not counted).
    pub max_retries: u32,
    /// Delay before the first retry; doubled for each further retry.
    pub base_delay: Duration,
    /// Cap of the exponential delay.
    pub max_delay: Duration,
    /// Longest wait a `Retry-After` may impose (longer values are cut to this).
    pub max_retry_after: Duration,
    /// Timeout of one attempt (connect, send, and reading the response head).
    pub try_timeout: Duration,
}

impl Default for RetryPolicy {
    /// 5 retries, 800 ms doubling up to 30 s, `Retry-After` up to 120 s, 60 s per attempt (the
    /// same order as the Functions host's `clientRetryOptions`).
    fn default() -> Self {
        Self {
            max_retries: 5,
            base_delay: Duration::from_millis(800),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
            try_timeout: Duration::from_secs(60),
        }
    }
}

/// When a breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Calls in a row that failed transiently after their retries and open the breaker
    /// (`AZURE_BREAKER_FAILURES`, default 5; 0 turns the breaker off).
    pub failures: u32,
    /// How long it stays open before a probe (`AZURE_BREAKER_COOL_DOWN_S`, default 30).
    pub cool_down: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failures: 5,
            cool_down: Duration::from_secs(30),
        }
    }
}

impl BreakerSettings {
    /// The settings from the process environment, the defaults where they are invalid (`serve`
    /// has already refused to start with invalid ones: the Service Bus settings read them too).
    pub fn from_env() -> Self {
        Self::from_lookup(&|k| std::env::var(k).ok()).unwrap_or_default()
    }

    /// Reads `AZURE_BREAKER_FAILURES` and `AZURE_BREAKER_COOL_DOWN_S` through `get`.
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let d = Self::default();
        Ok(Self {
            failures: num(get, "AZURE_BREAKER_FAILURES", d.failures.into(), 0, 1000)? as u32,
            cool_down: secs(get, "AZURE_BREAKER_COOL_DOWN_S", d.cool_down, 0.0, 3600.0)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_read_and_checked() {
        let get = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            BreakerSettings::from_lookup(&get(&[])).unwrap(),
            BreakerSettings::default()
        );
        let c = BreakerSettings::from_lookup(&get(&[
            ("AZURE_BREAKER_FAILURES", "3"),
            ("AZURE_BREAKER_COOL_DOWN_S", "0.5"),
        ]))
        .unwrap();
        assert_eq!((c.failures, c.cool_down), (3, Duration::from_millis(500)));
        let e =
            BreakerSettings::from_lookup(&get(&[("AZURE_BREAKER_FAILURES", "2.5")])).unwrap_err();
        assert!(e.to_string().contains("AZURE_BREAKER_FAILURES"), "{e}");
        let e =
            BreakerSettings::from_lookup(&get(&[("AZURE_BREAKER_COOL_DOWN_S", "-1")])).unwrap_err();
        assert!(e.to_string().contains("AZURE_BREAKER_COOL_DOWN_S"), "{e}");
    }
}
