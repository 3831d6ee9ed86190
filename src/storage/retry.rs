//! Sending a Blob request with retries: 408, 429, 500, 502, 503, 504, timeouts and connection
//! errors are retried with exponential backoff (honouring `Retry-After`); 401 is retried once with
//! a refreshed token; everything else fails at once.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

/// How often and how patiently a call is retried.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Delay before the first retry; doubled for each further retry.
    pub base_delay: Duration,
    /// Cap of the delay (and of a `Retry-After`).
    pub max_delay: Duration,
    /// Timeout of one attempt.
    pub try_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 5,
            base_delay: Duration::from_millis(800),
            max_delay: Duration::from_secs(30),
            try_timeout: Duration::from_secs(60),
        }
    }
}

/// A final failure: the last status (if a response came), the service's message, and whether a
/// later try could succeed.
#[derive(Debug, Clone)]
pub struct Failure {
    /// HTTP status of the last response.
    pub status: Option<u16>,
    /// `x-ms-error-code` and the service's message, or the client error.
    pub message: String,
    /// Whether trying again later can succeed.
    pub retryable: bool,
}

/// Sends what `build(refresh_auth)` makes until it succeeds or fails for good.
pub async fn send<F, Fut>(policy: &RetryPolicy, mut build: F) -> Result<reqwest::Response, Failure>
where
    F: FnMut(bool) -> Fut,
    Fut: Future<Output = Result<reqwest::RequestBuilder, Failure>>,
{
    let mut retries = 0u32;
    let mut refreshed = false;
    let mut refresh = false;
    loop {
        let request = build(refresh).await?;
        refresh = false;
        let (failure, after) = match tokio::time::timeout(policy.try_timeout, request.send()).await
        {
            Err(_) => (
                Failure {
                    status: None,
                    message: format!("no response within {:?}", policy.try_timeout),
                    retryable: true,
                },
                None,
            ),
            Ok(Err(e)) => (
                Failure {
                    status: None,
                    message: format!("request failed: {e}"),
                    retryable: !e.is_builder(),
                },
                None,
            ),
            Ok(Ok(r)) if r.status().is_success() => return Ok(r),
            Ok(Ok(r)) => {
                let status = r.status().as_u16();
                let after = retry_after(r.headers());
                let message = service_message(r).await;
                let retryable = matches!(status, 408 | 429 | 500 | 502 | 503 | 504);
                if status == 401 && !refreshed {
                    refreshed = true;
                    refresh = true;
                    continue;
                }
                (
                    Failure {
                        status: Some(status),
                        message,
                        retryable,
                    },
                    after,
                )
            }
        };
        if !failure.retryable || retries >= policy.max_retries {
            return Err(failure);
        }
        retries += 1;
        let exp = policy
            .base_delay
            .saturating_mul(1 << (retries - 1).min(20))
            .min(policy.max_delay);
        let delay = after
            .map(|a| a.min(policy.max_delay))
            .unwrap_or_else(|| exp.mul_f64(rand::rng().random_range(0.8..=1.2)));
        tracing::warn!(status = ?failure.status, retry = retries, delay_ms = delay.as_millis() as u64, "blob storage call retried: {}", failure.message);
        tokio::time::sleep(delay).await;
    }
}

fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = h.get("retry-after")?.to_str().ok()?.trim();
    v.parse::<u64>().ok().map(Duration::from_secs)
}

async fn service_message(r: reqwest::Response) -> String {
    let status = r.status();
    let code = r
        .headers()
        .get("x-ms-error-code")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = r.text().await.unwrap_or_default();
    let message = body
        .split_once("<Message>")
        .and_then(|(_, rest)| rest.split_once("</Message>"))
        .map(|(m, _)| m.lines().next().unwrap_or("").trim().to_string())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_string());
    match code {
        Some(c) => format!("{c}: {message}"),
        None => message,
    }
}
