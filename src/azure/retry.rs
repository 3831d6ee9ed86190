//! Retry classification for every Azure HTTP call (Service Bus, Blob Storage, ...).
//!
//! One rule set, taken from the Azure SDK's own retry policy (functions-protocol.md §5):
//!
//! | response | what happens |
//! |---|---|
//! | 2xx | success |
//! | 408, 429, 500, 502, 503, 504, timeouts, connection errors | retried with exponential backoff and jitter; `Retry-After` (seconds or HTTP date), `retry-after-ms` and `x-ms-retry-after-ms` are honoured |
//! | 401 | the token is refreshed once and the call repeated; a second 401 fails |
//! | anything else (400, 403 quota / too large, 404, 409, 410, ...) | fails at once |
//!
//! Every failure is an [`AzureError`] that names the target (e.g. "Service Bus queue
//! geospatial-tasks"), the HTTP status and the service's own message, and says whether trying
//! again later can succeed. Each retry is a checkpoint (`AZURE_CALL_RETRY` unless the [`Target`]
//! names another one), and so is a give-up (`AZURE_CALL_FAILED`).
//!
//! ```no_run
//! # async fn demo(client: reqwest::Client) -> Result<(), coremachine::azure::retry::AzureError> {
//! use coremachine::azure::retry::{RetryPolicy, Target, send_with_retry};
//! let target = Target::new("Blob Storage", "container", "rasters", "list blobs");
//! let sent = send_with_retry(&RetryPolicy::default(), &target, |attempt| {
//!     let client = client.clone();
//!     async move {
//!         // attempt.refresh_auth is true after a 401: fetch a fresh token here.
//!         Ok(client.get("https://account.blob.core.windows.net/rasters?restype=container&comp=list"))
//!     }
//! })
//! .await?;
//! let _xml = sent.response.text().await;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

pub use crate::config::RetryPolicy;
use crate::telemetry::checkpoints as cp;
use crate::telemetry::dependency::{self, Dependency};

/// What to do with one HTTP response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// 2xx: done.
    Success,
    /// Transient: try again, not before `after` when the service said so.
    Retry {
        /// The service's `Retry-After` (or `retry-after-ms`), if any.
        after: Option<Duration>,
    },
    /// 401: refresh the credential once and try again.
    RefreshAuth,
    /// Permanent: trying again cannot help.
    Permanent,
}

/// How a [`RetryPolicy`] (its numbers are settings, `config::azure`) classifies and waits.
impl RetryPolicy {
    /// Classifies a response by its status and headers.
    pub(crate) fn classify(status: StatusCode, headers: &HeaderMap) -> Verdict {
        match status.as_u16() {
            200..=299 => Verdict::Success,
            401 => Verdict::RefreshAuth,
            408 | 429 | 500 | 502 | 503 | 504 => Verdict::Retry {
                after: retry_after(headers),
            },
            _ => Verdict::Permanent,
        }
    }

    /// The exponential delay before retry number `retry` (1-based), with ±20 % jitter so that
    /// many instances throttled at once do not come back in lockstep.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = retry.saturating_sub(1).min(20);
        let raw = self
            .base_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay);
        let jitter = rand::rng().random_range(0.8..=1.2);
        raw.mul_f64(jitter).min(self.max_delay)
    }

    /// The wait before retry number `retry`: the service's `Retry-After` when it gave one (capped
    /// at [`max_retry_after`](Self::max_retry_after)), otherwise [`backoff`](Self::backoff).
    pub(crate) fn delay_for(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(d) => d.min(self.max_retry_after),
            None => self.backoff(retry),
        }
    }
}

/// Reads the service's requested wait: `retry-after-ms`, `x-ms-retry-after-ms` (milliseconds) or
/// `Retry-After` (delta seconds or an HTTP date).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
        if let Some(ms) = text(name).and_then(|v| v.parse::<f64>().ok())
            && ms.is_finite()
            && ms >= 0.0
        {
            return Some(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    let v = text("retry-after")?;
    if let Ok(s) = v.parse::<f64>() {
        return (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// What a call is about, for errors and checkpoints.
#[derive(Debug, Clone)]
pub struct Target {
    /// Service ("Service Bus", "Blob Storage").
    pub service: &'static str,
    /// Kind of entity ("queue", "container").
    pub kind: &'static str,
    /// Entity name.
    pub name: String,
    /// What was attempted ("send 37 messages", "list blobs").
    pub operation: String,
    /// Extra context for errors (e.g. "job 1a2b…, task 3c4d…").
    pub context: Option<String>,
    /// Checkpoint emitted for each retry.
    pub retry_checkpoint: &'static str,
    /// Checkpoint emitted when the call gives up.
    pub failed_checkpoint: &'static str,
    /// Job the call is for, copied into the checkpoints.
    pub job_id: Option<String>,
    /// The endpoint's circuit breaker (src/azure/breaker.rs), if the client has one.
    pub(crate) breaker: Option<std::sync::Arc<super::breaker::Breaker>>,
}

impl Target {
    /// A target with the generic checkpoints.
    pub fn new(
        service: &'static str,
        kind: &'static str,
        name: impl Into<String>,
        operation: impl Into<String>,
    ) -> Self {
        Self {
            service,
            kind,
            name: name.into(),
            operation: operation.into(),
            context: None,
            retry_checkpoint: cp::AZURE_CALL_RETRY,
            failed_checkpoint: cp::AZURE_CALL_FAILED,
            job_id: None,
            breaker: None,
        }
    }

    /// Adds context for error messages.
    pub(crate) fn with_context(mut self, context: impl Into<String>) -> Self {
        self.context = Some(context.into());
        self
    }

    /// Uses other checkpoint names for retries and give-ups.
    pub(crate) fn with_checkpoints(mut self, retry: &'static str, failed: &'static str) -> Self {
        self.retry_checkpoint = retry;
        self.failed_checkpoint = failed;
        self
    }

    /// Names the job in checkpoints.
    pub(crate) fn for_job(mut self, job_id: Option<String>) -> Self {
        self.job_id = job_id;
        self
    }

    /// Guards the call with the endpoint's circuit breaker.
    pub(crate) fn with_breaker(mut self, breaker: std::sync::Arc<super::breaker::Breaker>) -> Self {
        self.breaker = Some(breaker);
        self
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.service, self.kind, self.name)
    }
}

/// Why an Azure call failed for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The service refused the request (4xx other than 401/408/429).
    Rejected,
    /// Transient failures until the retries ran out.
    Exhausted,
    /// Authentication failed, also after a token refresh, or no token could be obtained.
    Auth,
    /// The request could not be built (a bug or bad settings).
    Request,
    /// Not sent: the endpoint's circuit breaker is open (transient).
    CircuitOpen,
}

/// A failed Azure call, with everything needed to act on it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation} on {target} failed{}{}: {message}{} ({attempts} attempt{})",
    status.map(|s| format!(" with HTTP {s}")).unwrap_or_default(),
    if *retryable { " (transient)" } else { " (permanent)" },
    context.as_ref().map(|c| format!(" [{c}]")).unwrap_or_default(),
    if *attempts == 1 { "" } else { "s" })]
pub struct AzureError {
    /// "Service Bus queue geospatial-tasks".
    pub target: String,
    /// What was attempted.
    pub operation: String,
    /// HTTP status of the last response, if one arrived.
    pub status: Option<u16>,
    /// The service's message (or the client error).
    pub message: String,
    /// Extra context (job, task).
    pub context: Option<String>,
    /// Whether trying again later can succeed.
    pub retryable: bool,
    /// Requests made.
    pub attempts: u32,
    /// Class of failure.
    pub kind: FailureKind,
}

/// The `Authorization` header value for one attempt: the cached token, or a new one when the
/// previous attempt was answered 401. A token failure is an [`AzureError`] of kind `Auth`.
pub async fn authorization(
    tokens: &dyn super::credential::TokenSource,
    scope: &str,
    refresh: bool,
    target: &Target,
) -> Result<String, AzureError> {
    let token = if refresh {
        tokens.refresh(scope).await
    } else {
        tokens.token(scope).await
    }
    .map_err(|e| {
        AzureError::before_send(target, FailureKind::Auth, e.is_retryable(), e.to_string())
    })?;
    Ok(token.authorization())
}

impl AzureError {
    /// A failure before any request was made (token, request building).
    pub(crate) fn before_send(
        target: &Target,
        kind: FailureKind,
        retryable: bool,
        message: String,
    ) -> Self {
        Self {
            target: target.to_string(),
            operation: target.operation.clone(),
            status: None,
            message,
            context: target.context.clone(),
            retryable,
            attempts: 0,
            kind,
        }
    }
}

/// What [`send_with_retry`] passes to the request builder for each attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// 1 for the first request.
    pub number: u32,
    /// True after a 401: the builder must use a freshly acquired token.
    pub refresh_auth: bool,
}

/// A successful call.
#[derive(Debug)]
pub struct Sent {
    /// The 2xx response (body not read yet).
    pub response: reqwest::Response,
    /// Requests made, including this one.
    pub attempts: u32,
}

/// The dependency span of one request to `target` (its URL and method read from a clone of the
/// builder; a builder that cannot be built yet is named by the target alone).
fn dependency_of(target: &Target, request: &reqwest::RequestBuilder) -> Dependency {
    let kind = match target.service {
        "Service Bus" => dependency::AZURE_SERVICE_BUS,
        _ => dependency::AZURE_BLOB,
    };
    let built = request.try_clone().and_then(|b| b.build().ok());
    match built {
        Some(r) => Dependency::azure(
            kind,
            target.kind,
            &target.name,
            &target.operation,
            r.method().as_str(),
            r.url(),
        ),
        None => Dependency::azure(
            kind,
            target.kind,
            &target.name,
            &target.operation,
            "",
            &reqwest::Url::parse("https://unknown.invalid/").expect("a valid URL"),
        ),
    }
}

/// Sends the request `build` makes, retrying per `policy`. `build` is called once per attempt
/// (a request cannot be replayed) and may fetch a token; with [`Attempt::refresh_auth`] it must
/// fetch a new one. An error from `build` marked `retryable` (e.g. a busy token endpoint) is
/// retried within the same budget; any other ends the call. Returns the 2xx response or an
/// [`AzureError`].
pub async fn send_with_retry<F, Fut>(
    policy: &RetryPolicy,
    target: &Target,
    mut build: F,
) -> Result<Sent, AzureError>
where
    F: FnMut(Attempt) -> Fut,
    Fut: Future<Output = Result<reqwest::RequestBuilder, AzureError>>,
{
    let mut attempts = 0u32;
    let mut retries = 0u32;
    let mut refreshed = false;
    let mut refresh_now = false;
    loop {
        attempts += 1;
        let attempt = Attempt {
            number: attempts,
            refresh_auth: refresh_now,
        };
        refresh_now = false;
        // An open breaker: fail fast, before a token fetch or a request (the caller's outbox or
        // redelivery keeps the work).
        let mut permit = match target.breaker.as_ref().map(|b| b.allow()).transpose() {
            Ok(p) => p,
            Err(r) => {
                let e = fail(
                    target,
                    None,
                    r.to_string(),
                    true,
                    attempts - 1,
                    FailureKind::CircuitOpen,
                );
                return Err(give_up(target, e));
            }
        };
        let request = match build(attempt).await {
            Ok(r) => r,
            // A transient failure before sending (the token endpoint was busy): retried like
            // a transient response, so one identity-endpoint hiccup does not fail the call.
            Err(e) if e.retryable && retries < policy.max_retries => {
                retries += 1;
                attempts -= 1;
                let delay = policy.backoff(retries);
                emit_retry(target, None, &e.message, attempts, delay);
                tokio::time::sleep(delay).await;
                continue;
            }
            Err(mut e) => {
                e.attempts = attempts - 1;
                return Err(give_up(target, e));
            }
        };
        // Each request is one dependency record (telemetry/dependency.rs), retries included.
        let dependency = dependency_of(target, &request);
        let sent = dependency
            .run(tokio::time::timeout(policy.try_timeout, request.send()))
            .await;
        match &sent {
            Ok(Ok(r)) => dependency.record_status(r.status().as_u16()),
            Ok(Err(e)) if e.is_timeout() => dependency.record_failure("timeout"),
            Ok(Err(_)) => dependency.record_failure("connection"),
            Err(_) => dependency.record_failure("timeout"),
        }
        // What went wrong with this attempt: (status, message, retry-after) of a retryable failure.
        let failure: (Option<u16>, String, Option<Duration>) = match sent {
            Err(_) => (
                None,
                format!("no response within {:?}", policy.try_timeout),
                None,
            ),
            Ok(Err(e)) if e.is_builder() => {
                let e = fail(
                    target,
                    None,
                    e.to_string(),
                    false,
                    attempts,
                    FailureKind::Request,
                );
                return Err(give_up(target, e));
            }
            Ok(Err(e)) => (None, describe_reqwest(&e), None),
            Ok(Ok(response)) => {
                let status = response.status();
                let verdict = RetryPolicy::classify(status, response.headers());
                if let Some(p) = permit.take_if(|_| !matches!(verdict, Verdict::Retry { .. })) {
                    p.success(); // the endpoint answered, even if it refused
                }
                match verdict {
                    Verdict::Success => return Ok(Sent { response, attempts }),
                    Verdict::RefreshAuth if !refreshed => {
                        refreshed = true;
                        refresh_now = true;
                        let msg = service_message(response).await;
                        emit_retry(target, Some(401), &msg, attempts, Duration::ZERO);
                        continue;
                    }
                    Verdict::RefreshAuth => {
                        let msg = service_message(response).await;
                        let e = fail(
                            target,
                            Some(401),
                            format!(
                                "{msg} (the credential was refused again after a token refresh)"
                            ),
                            false,
                            attempts,
                            FailureKind::Auth,
                        );
                        return Err(give_up(target, e));
                    }
                    Verdict::Permanent => {
                        let msg = service_message(response).await;
                        let e = fail(
                            target,
                            Some(status.as_u16()),
                            msg,
                            false,
                            attempts,
                            FailureKind::Rejected,
                        );
                        return Err(give_up(target, e));
                    }
                    Verdict::Retry { after } => (
                        Some(status.as_u16()),
                        service_message(response).await,
                        after,
                    ),
                }
            }
        };
        let (status, message, after) = failure;
        if retries >= policy.max_retries {
            // The breaker counts calls that failed after all their retries, not attempts: a
            // blip the retries absorb (a burst of timeouts under load) must not open it.
            if let Some(p) = permit {
                p.failure(&message);
            }
            let e = fail(
                target,
                status,
                format!("{message} (gave up after {retries} retries)"),
                true,
                attempts,
                FailureKind::Exhausted,
            );
            return Err(give_up(target, e));
        }
        retries += 1;
        let delay = policy.delay_for(retries, after);
        emit_retry(target, status, &message, attempts, delay);
        tokio::time::sleep(delay).await;
    }
}

fn fail(
    target: &Target,
    status: Option<u16>,
    message: String,
    retryable: bool,
    attempts: u32,
    kind: FailureKind,
) -> AzureError {
    AzureError {
        target: target.to_string(),
        operation: target.operation.clone(),
        status,
        message,
        context: target.context.clone(),
        retryable,
        attempts,
        kind,
    }
}

fn give_up(target: &Target, e: AzureError) -> AzureError {
    let mut f = cp::Fields::default()
        .extra("target", &e.target)
        .extra("operation", &e.operation)
        .extra("attempts", e.attempts)
        .extra("retryable", e.retryable);
    f.job_id = target.job_id.clone();
    if let Some(s) = e.status {
        f = f.extra("status", s);
    }
    cp::emit_error(target.failed_checkpoint, &f, "AzureError", &e);
    e
}

fn emit_retry(target: &Target, status: Option<u16>, message: &str, attempt: u32, delay: Duration) {
    let mut f = cp::Fields::default()
        .extra("target", target)
        .extra("operation", &target.operation)
        .extra("attempt", attempt)
        .extra("delay_ms", delay.as_millis())
        .extra("reason", message);
    f.job_id = target.job_id.clone();
    if let Some(s) = status {
        f = f.extra("status", s);
    }
    cp::emit_warn(target.retry_checkpoint, &f);
}

fn describe_reqwest(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    // The error prints its URL, and a SAS is in the URL's query string.
    super::redact::redact(&format!("{what}: {}", super::error_chain(e)))
}

/// The service's explanation from an error response: the `<Detail>` or `<Message>` of an XML
/// error (Service Bus, Storage), `error.message` / `message` of a JSON one, else the body's first
/// 500 characters; plus the request id for support cases.
pub(crate) async fn service_message(response: reqwest::Response) -> String {
    let status = response.status();
    let request_id = ["x-ms-request-id", "x-ms-client-request-id"]
        .iter()
        .find_map(|h| response.headers().get(*h))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response.text().await.unwrap_or_default();
    let mut msg = extract_message(&body).unwrap_or_else(|| {
        let t = body.trim();
        if t.is_empty() {
            status
                .canonical_reason()
                .unwrap_or("no message from the service")
                .to_string()
        } else {
            t.chars().take(500).collect()
        }
    });
    if let Some(id) = request_id {
        msg.push_str(&format!(" (request id {id})"));
    }
    // A service may echo the request URL (and so a SAS) in its error body.
    super::redact::redact(&msg)
}

/// Pulls the human-readable message out of an Azure error body.
pub(crate) fn extract_message(body: &str) -> Option<String> {
    for tag in ["Detail", "Message"] {
        let open = format!("<{tag}>");
        let close = format!("</{tag}>");
        if let Some(start) = body.find(&open) {
            let rest = &body[start + open.len()..];
            if let Some(end) = rest.find(&close) {
                let m = rest[..end].trim();
                if !m.is_empty() {
                    return Some(m.chars().take(1000).collect());
                }
            }
        }
    }
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let m = v
        .pointer("/error/message")
        .or_else(|| v.get("message"))
        .or_else(|| v.get("Message"))
        .and_then(|m| m.as_str())?;
    Some(m.chars().take(1000).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn statuses_are_classified_as_the_azure_sdk_does() {
        let none = HeaderMap::new();
        for s in [200u16, 201, 204] {
            assert_eq!(
                RetryPolicy::classify(StatusCode::from_u16(s).unwrap(), &none),
                Verdict::Success
            );
        }
        for s in [408u16, 429, 500, 502, 503, 504] {
            assert_eq!(
                RetryPolicy::classify(StatusCode::from_u16(s).unwrap(), &none),
                Verdict::Retry { after: None },
                "{s} is transient"
            );
        }
        assert_eq!(
            RetryPolicy::classify(StatusCode::UNAUTHORIZED, &none),
            Verdict::RefreshAuth
        );
        for s in [400u16, 403, 404, 409, 410, 413, 501] {
            assert_eq!(
                RetryPolicy::classify(StatusCode::from_u16(s).unwrap(), &none),
                Verdict::Permanent,
                "{s} is permanent"
            );
        }
    }

    #[test]
    fn retry_after_is_read_in_seconds_milliseconds_and_as_a_date() {
        assert_eq!(
            retry_after(&headers(&[("retry-after", "7")])),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after-ms", "250")])),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            retry_after(&headers(&[
                ("x-ms-retry-after-ms", "1500"),
                ("retry-after", "9")
            ])),
            Some(Duration::from_millis(1500))
        );
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        let d = retry_after(&headers(&[("retry-after", &later)])).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        let past = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(
            retry_after(&headers(&[("retry-after", past)])),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")])), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
        assert_eq!(
            RetryPolicy::classify(
                StatusCode::TOO_MANY_REQUESTS,
                &headers(&[("retry-after", "3")])
            ),
            Verdict::Retry {
                after: Some(Duration::from_secs(3))
            }
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        for _ in 0..50 {
            let d1 = p.backoff(1);
            assert!(
                d1 >= Duration::from_millis(80) && d1 <= Duration::from_millis(120),
                "{d1:?}"
            );
            let d3 = p.backoff(3);
            assert!(
                d3 >= Duration::from_millis(320) && d3 <= Duration::from_millis(480),
                "{d3:?}"
            );
            assert!(p.backoff(10) <= Duration::from_secs(1));
            assert!(p.backoff(u32::MAX) <= Duration::from_secs(1));
        }
        assert_eq!(
            p.delay_for(1, Some(Duration::from_secs(5))),
            Duration::from_secs(5)
        );
        assert_eq!(
            p.delay_for(1, Some(Duration::from_secs(999))),
            p.max_retry_after
        );
    }

    #[test]
    fn the_service_message_is_found_in_xml_and_json_bodies() {
        let sb = "<Error><Code>403</Code><Detail>The maximum message size has been exceeded. TrackingId:abc</Detail></Error>";
        assert_eq!(
            extract_message(sb).as_deref(),
            Some("The maximum message size has been exceeded. TrackingId:abc")
        );
        let storage = "<?xml version=\"1.0\"?><Error><Code>ContainerNotFound</Code><Message>The specified container does not exist.</Message></Error>";
        assert_eq!(
            extract_message(storage).as_deref(),
            Some("The specified container does not exist.")
        );
        assert_eq!(
            extract_message(r#"{"error":{"code":"X","message":"quota"}}"#).as_deref(),
            Some("quota")
        );
        assert_eq!(extract_message("plain text"), None);
    }

    #[test]
    fn errors_name_the_target_status_and_message() {
        let t = Target::new(
            "Service Bus",
            "queue",
            "geospatial-tasks",
            "send 3 messages",
        )
        .with_context("job abc");
        let e = fail(
            &t,
            Some(410),
            "entity gone".into(),
            false,
            1,
            FailureKind::Rejected,
        );
        let s = e.to_string();
        assert_eq!(
            s,
            "send 3 messages on Service Bus queue geospatial-tasks failed with HTTP 410 (permanent): entity gone [job abc] (1 attempt)"
        );
    }
}
