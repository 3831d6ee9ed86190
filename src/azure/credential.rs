//! Access tokens for any Azure scope: the [`TokenSource`] trait, a per-scope [`TokenCache`] that
//! refreshes before expiry, and [`ManagedIdentity`], the source used in Azure.
//!
//! [`ManagedIdentity`] wraps `azure_identity`'s `ManagedIdentityCredential` (system-assigned, or
//! user-assigned by client id). Under the Functions host it uses the App Service protocol: `GET
//! $IDENTITY_ENDPOINT?resource=…&api-version=2019-08-01[&client_id=…]` with the
//! `X-IDENTITY-HEADER: $IDENTITY_HEADER` header; elsewhere it falls back to the VM metadata
//! endpoint (functions-protocol.md §7). Its HTTP goes through this crate's `reqwest` client
//! (rustls), so the dependency tree holds one HTTP stack and no OpenSSL.
//!
//! Tokens are cached per scope and refreshed once they are within
//! [`TokenCache::DEFAULT_MARGIN`] of expiry; [`TokenSource::refresh`] bypasses every cache
//! (used once after a 401). A token's `Debug` never shows the secret.
//!
//! ```no_run
//! # async fn demo() -> Result<(), coremachine::azure::credential::CredentialError> {
//! use coremachine::azure::credential::{ManagedIdentity, TokenSource, scopes};
//! let mi = ManagedIdentity::new(None)?; // system-assigned
//! let token = mi.token(scopes::SERVICE_BUS).await?;
//! let _header = token.authorization(); // "Bearer eyJ…"
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::http::{
    AsyncRawResponse, Body, ClientOptions, ExponentialRetryOptions, HttpClient, Method, Request,
    RetryOptions, StatusCode, Transport,
    headers::{HeaderName, HeaderValue, Headers},
};
use azure_identity::{ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

/// Well-known token scopes.
pub mod scopes {
    /// Service Bus data plane.
    pub const SERVICE_BUS: &str = "https://servicebus.azure.net/.default";
    /// Azure Database for PostgreSQL (Entra ID password).
    pub const POSTGRESQL: &str = "https://ossrdbms-aad.database.windows.net/.default";
    /// Blob Storage data plane.
    pub const STORAGE: &str = "https://storage.azure.com/.default";
}

/// How a token goes into an `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// An Entra ID access token: `Authorization: Bearer <token>`.
    Bearer,
    /// A Service Bus / Event Hubs shared access signature: `Authorization: SharedAccessSignature …`
    /// (the token already starts with `SharedAccessSignature`).
    SharedAccessSignature,
}

/// An access token and its expiry. `Debug` and `Display` redact the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    secret: String,
    /// When the service stops accepting it.
    pub expires_on: DateTime<Utc>,
    /// How it is presented.
    pub kind: TokenKind,
}

impl AccessToken {
    /// A bearer token.
    pub fn bearer(secret: impl Into<String>, expires_on: DateTime<Utc>) -> Self {
        Self {
            secret: secret.into(),
            expires_on,
            kind: TokenKind::Bearer,
        }
    }

    /// A shared access signature (the full `SharedAccessSignature sr=…` string).
    pub(crate) fn shared_access_signature(
        secret: impl Into<String>,
        expires_on: DateTime<Utc>,
    ) -> Self {
        Self {
            secret: secret.into(),
            expires_on,
            kind: TokenKind::SharedAccessSignature,
        }
    }

    /// The raw token (for a PostgreSQL password, or a header). Never log it.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The `Authorization` header value.
    pub fn authorization(&self) -> String {
        match self.kind {
            TokenKind::Bearer => format!("Bearer {}", self.secret),
            TokenKind::SharedAccessSignature => self.secret.clone(),
        }
    }

    /// Whether the token expires within `margin` of `now` (then it should be replaced).
    pub(crate) fn expires_within(&self, margin: Duration, now: DateTime<Utc>) -> bool {
        let margin = chrono::Duration::from_std(margin).unwrap_or(chrono::Duration::MAX);
        self.expires_on <= now + margin
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("secret", &"<redacted>")
            .field("expires_on", &self.expires_on)
            .field("kind", &self.kind)
            .finish()
    }
}

/// Why no token could be obtained.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CredentialError {
    /// The credential cannot be built from the settings or environment.
    #[error("cannot set up {credential}: {message}")]
    Setup {
        /// Which credential.
        credential: String,
        /// What is wrong.
        message: String,
    },
    /// The token endpoint refused or failed.
    #[error("{credential} could not get a token for scope {scope}: {message}")]
    Acquire {
        /// Which credential.
        credential: String,
        /// Requested scope.
        scope: String,
        /// The endpoint's message.
        message: String,
        /// Whether trying again later can succeed.
        retryable: bool,
    },
}

impl CredentialError {
    /// Whether trying again later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            CredentialError::Acquire {
                retryable: true,
                ..
            }
        )
    }
}

/// A source of access tokens for any scope.
pub trait TokenSource: Send + Sync + fmt::Debug {
    /// A valid token for `scope` (cached until near expiry).
    fn token<'a>(&'a self, scope: &'a str) -> BoxFuture<'a, Result<AccessToken, CredentialError>>;
    /// A newly acquired token for `scope`, bypassing every cache (after the service answered 401).
    fn refresh<'a>(&'a self, scope: &'a str)
    -> BoxFuture<'a, Result<AccessToken, CredentialError>>;
    /// What this source is, for logs and errors ("managed identity (system-assigned)"). Never a secret.
    fn describe(&self) -> String;
}

/// A shared token source.
pub(crate) type SharedTokenSource = Arc<dyn TokenSource>;

/// Per-scope token cache: a token is reused until it is within `margin` of its expiry. Concurrent
/// callers of one scope wait for a single fetch.
#[derive(Debug)]
pub(crate) struct TokenCache {
    margin: Duration,
    entries: tokio::sync::Mutex<HashMap<String, AccessToken>>,
}

impl Default for TokenCache {
    fn default() -> Self {
        Self::new(Self::DEFAULT_MARGIN)
    }
}

impl TokenCache {
    /// Refresh this long before expiry: 5 minutes, as `azure_identity` does (Entra tokens live
    /// 60-90 minutes; PostgreSQL accepts them for 5-60).
    pub(crate) const DEFAULT_MARGIN: Duration = Duration::from_secs(300);

    /// A cache refreshing `margin` before expiry.
    pub(crate) fn new(margin: Duration) -> Self {
        Self {
            margin,
            entries: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The cached token for `scope`, or the result of `fetch` (stored on success).
    pub(crate) async fn get_or_fetch<F, Fut>(
        &self,
        scope: &str,
        fetch: F,
    ) -> Result<AccessToken, CredentialError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<AccessToken, CredentialError>>,
    {
        let mut entries = self.entries.lock().await;
        if let Some(t) = entries.get(scope)
            && !t.expires_within(self.margin, Utc::now())
        {
            return Ok(t.clone());
        }
        let t = fetch().await?;
        entries.insert(scope.to_string(), t.clone());
        Ok(t)
    }

    /// Forgets the token of `scope`.
    pub(crate) async fn invalidate(&self, scope: &str) {
        self.entries.lock().await.remove(scope);
    }
}

/// Managed identity through `azure_identity` (system-assigned, or user-assigned by client id).
pub struct ManagedIdentity {
    client_id: Option<String>,
    http: reqwest::Client,
    // Rebuilt by `refresh`: azure_identity keeps its own cache, which cannot be bypassed otherwise.
    inner: Mutex<Arc<ManagedIdentityCredential>>,
    cache: TokenCache,
    breaker: Arc<super::breaker::Breaker>,
}

impl fmt::Debug for ManagedIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedIdentity")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl ManagedIdentity {
    /// The system-assigned identity (`None`) or the user-assigned one with this client id.
    pub fn new(client_id: Option<String>) -> Result<Self, CredentialError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| CredentialError::Setup {
                credential: describe_mi(&client_id),
                message: format!("HTTP client: {e}"),
            })?;
        let inner = build_credential(&client_id, &http)?;
        let endpoint = std::env::var("IDENTITY_ENDPOINT")
            .unwrap_or_else(|_| "http://169.254.169.254 (IMDS)".to_string());
        Ok(Self {
            client_id,
            http,
            inner: Mutex::new(inner),
            cache: TokenCache::default(),
            breaker: super::breaker::Breaker::new(
                format!("managed identity endpoint {endpoint}"),
                crate::config::BreakerSettings::from_env(),
            ),
        })
    }

    fn current(&self) -> Arc<ManagedIdentityCredential> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn fetch(
        &self,
        credential: Arc<ManagedIdentityCredential>,
        scope: &str,
    ) -> Result<AccessToken, CredentialError> {
        // While the endpoint is failing, callers get a transient error at once instead of each
        // waiting out the credential's own retries.
        let permit = self.breaker.allow().map_err(|r| CredentialError::Acquire {
            credential: self.describe(),
            scope: scope.to_string(),
            retryable: true,
            message: r.to_string(),
        })?;
        let t = match credential.get_token(&[scope], None).await {
            Ok(t) => {
                permit.success();
                t
            }
            Err(e) => {
                let retryable = is_retryable_azure(&e);
                let message = super::error_chain(&e);
                if retryable {
                    permit.failure(&message);
                } else {
                    permit.success(); // it answered: the request was refused
                }
                return Err(CredentialError::Acquire {
                    credential: self.describe(),
                    scope: scope.to_string(),
                    retryable,
                    message,
                });
            }
        };
        let expires_on = DateTime::<Utc>::from_timestamp(t.expires_on.unix_timestamp(), 0)
            .unwrap_or_else(Utc::now);
        Ok(AccessToken::bearer(t.token.secret(), expires_on))
    }
}

impl TokenSource for ManagedIdentity {
    fn token<'a>(&'a self, scope: &'a str) -> BoxFuture<'a, Result<AccessToken, CredentialError>> {
        Box::pin(async move {
            self.cache
                .get_or_fetch(scope, || self.fetch(self.current(), scope))
                .await
        })
    }

    fn refresh<'a>(
        &'a self,
        scope: &'a str,
    ) -> BoxFuture<'a, Result<AccessToken, CredentialError>> {
        Box::pin(async move {
            self.cache.invalidate(scope).await;
            let fresh = build_credential(&self.client_id, &self.http)?;
            *self.inner.lock().unwrap_or_else(|p| p.into_inner()) = fresh.clone();
            self.cache
                .get_or_fetch(scope, || self.fetch(fresh, scope))
                .await
        })
    }

    fn describe(&self) -> String {
        describe_mi(&self.client_id)
    }
}

fn describe_mi(client_id: &Option<String>) -> String {
    match client_id {
        None => "managed identity (system-assigned)".to_string(),
        Some(id) => format!("managed identity (user-assigned, client id {id})"),
    }
}

fn build_credential(
    client_id: &Option<String>,
    http: &reqwest::Client,
) -> Result<Arc<ManagedIdentityCredential>, CredentialError> {
    // A few quick retries: the identity endpoint is local to the instance; the caller's own
    // retry (Service Bus send, pool connect) covers longer outages.
    let client_options = ClientOptions {
        transport: Some(Transport::new(Arc::new(ReqwestTransport(http.clone())))),
        retry: RetryOptions::exponential(ExponentialRetryOptions {
            initial_delay: azure_core::time::Duration::milliseconds(200),
            max_retries: 3,
            max_total_elapsed: azure_core::time::Duration::seconds(20),
            max_delay: azure_core::time::Duration::seconds(5),
        }),
        ..ClientOptions::default()
    };
    let options = ManagedIdentityCredentialOptions {
        user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
        client_options,
    };
    ManagedIdentityCredential::new(Some(options)).map_err(|e| CredentialError::Setup {
        credential: describe_mi(client_id),
        message: super::error_chain(&e),
    })
}

fn is_retryable_azure(e: &azure_core::Error) -> bool {
    match e.kind() {
        azure_core::error::ErrorKind::HttpResponse { status, .. } => {
            matches!(u16::from(*status), 408 | 429 | 500 | 502 | 503 | 504)
        }
        azure_core::error::ErrorKind::Io | azure_core::error::ErrorKind::Connection => true,
        _ => false,
    }
}

/// `azure_core`'s HTTP transport over this crate's `reqwest` 0.12 client (rustls with ring), so
/// that `azure_identity` does not pull in a second HTTP stack.
#[derive(Debug)]
struct ReqwestTransport(reqwest::Client);

#[async_trait::async_trait]
impl HttpClient for ReqwestTransport {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        use azure_core::error::{Error, ErrorKind};
        let method = match request.method() {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Delete => reqwest::Method::DELETE,
            Method::Head => reqwest::Method::HEAD,
            Method::Patch => reqwest::Method::PATCH,
            other => {
                return Err(Error::with_message_fn(ErrorKind::Other, || {
                    format!("HTTP method {other:?} is not supported by this transport")
                }));
            }
        };
        let mut req = self.0.request(method, request.url().as_str());
        for (name, value) in request.headers().iter() {
            req = req.header(name.as_str(), value.as_str());
        }
        req = match request.body() {
            Body::Bytes(b) => req.body(b.clone()),
            #[allow(unreachable_patterns)]
            _ => {
                return Err(Error::with_message(
                    ErrorKind::Other,
                    "streamed request bodies are not supported by this transport",
                ));
            }
        };
        let rsp = req.send().await.map_err(|e| {
            let kind = if e.is_connect() {
                ErrorKind::Connection
            } else {
                ErrorKind::Io
            };
            Error::with_error(kind, e, "identity endpoint request failed")
        })?;
        let status = StatusCode::from(rsp.status().as_u16());
        let headers: HashMap<HeaderName, HeaderValue> = rsp
            .headers()
            .iter()
            .filter_map(|(k, v)| {
                v.to_str().ok().map(|v| {
                    (
                        HeaderName::from(k.as_str().to_owned()),
                        HeaderValue::from(v.to_owned()),
                    )
                })
            })
            .collect();
        let body = rsp.bytes().await.map_err(|e| {
            Error::with_error(ErrorKind::Io, e, "reading identity endpoint response")
        })?;
        Ok(AsyncRawResponse::from_bytes(
            status,
            Headers::from(headers),
            body,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn debug_never_shows_the_secret() {
        let t = AccessToken::bearer("super-secret-value", Utc::now());
        let d = format!("{t:?}");
        assert!(!d.contains("super-secret-value"), "{d}");
        assert_eq!(t.authorization(), "Bearer super-secret-value");
        let s = AccessToken::shared_access_signature("SharedAccessSignature sr=x", Utc::now());
        assert_eq!(s.authorization(), "SharedAccessSignature sr=x");
    }

    #[tokio::test]
    async fn cache_reuses_a_fresh_token_and_refetches_one_near_expiry() {
        let cache = TokenCache::new(Duration::from_secs(300));
        let calls = AtomicUsize::new(0);
        let fetch = |ttl: i64| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                Ok(AccessToken::bearer(
                    format!("t{n}"),
                    Utc::now() + chrono::Duration::seconds(ttl),
                ))
            }
        };
        let a = cache.get_or_fetch("s", || fetch(3600)).await.unwrap();
        let b = cache.get_or_fetch("s", || fetch(3600)).await.unwrap();
        assert_eq!(a.secret(), "t0");
        assert_eq!(b.secret(), "t0", "a token far from expiry is reused");
        let other = cache.get_or_fetch("other", || fetch(3600)).await.unwrap();
        assert_eq!(other.secret(), "t1", "scopes are cached separately");
        cache.invalidate("s").await;
        let c = cache.get_or_fetch("s", || fetch(200)).await.unwrap();
        assert_eq!(c.secret(), "t2");
        let d = cache.get_or_fetch("s", || fetch(3600)).await.unwrap();
        assert_eq!(d.secret(), "t3", "a token within the margin is replaced");
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_failed_fetch_is_not_cached() {
        let cache = TokenCache::default();
        let r = cache
            .get_or_fetch("s", || async {
                Err(CredentialError::Acquire {
                    credential: "x".into(),
                    scope: "s".into(),
                    message: "503".into(),
                    retryable: true,
                })
            })
            .await;
        assert!(r.unwrap_err().is_retryable());
        let t = cache
            .get_or_fetch("s", || async {
                Ok(AccessToken::bearer(
                    "ok",
                    Utc::now() + chrono::Duration::hours(1),
                ))
            })
            .await
            .unwrap();
        assert_eq!(t.secret(), "ok");
    }
}
