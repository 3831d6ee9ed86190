//! Shared access signatures for Service Bus: the `ServiceBusConnection` connection string and the
//! token generated from it.
//!
//! The token is `SharedAccessSignature sr=<enc(uri)>&sig=<enc(b64(hmac))>&se=<expiry>&skn=<key name>`
//! where `hmac = HMAC-SHA256(key bytes as written in the connection string, enc(uri) + "\n" + expiry)`
//! and `enc` is form URL-encoding (Python's `quote_plus`, .NET's `WebUtility.UrlEncode`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::azure::credential::{AccessToken, CredentialError, TokenCache, TokenSource};

/// A parsed `Endpoint=sb://…;SharedAccessKeyName=…;SharedAccessKey=…` connection string.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    /// Namespace host, e.g. `mynamespace.servicebus.windows.net`.
    pub host: String,
    /// Policy (key) name.
    pub key_name: String,
    key: String,
    /// Entity the key is scoped to, when the string names one.
    pub entity_path: Option<String>,
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionString")
            .field("host", &self.host)
            .field("key_name", &self.key_name)
            .field("key", &"<redacted>")
            .field("entity_path", &self.entity_path)
            .finish()
    }
}

impl ConnectionString {
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

    /// The resource URI a token for `queue` is signed for: `https://<host>/<queue>`.
    pub fn resource_for(&self, queue: &str) -> String {
        format!("https://{}/{}", self.host, queue)
    }
}

/// Generates a SAS token for `resource_uri` valid until `expiry` (unix seconds).
pub fn generate_token(resource_uri: &str, key_name: &str, key: &str, expiry: i64) -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(resource_uri.as_bytes()).collect();
    let to_sign = format!("{encoded}\n{expiry}");
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    mac.update(to_sign.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let sig: String = url::form_urlencoded::byte_serialize(sig.as_bytes()).collect();
    let skn: String = url::form_urlencoded::byte_serialize(key_name.as_bytes()).collect();
    format!("SharedAccessSignature sr={encoded}&sig={sig}&se={expiry}&skn={skn}")
}

/// A [`TokenSource`] that signs tokens locally from a connection string. The scope is the
/// resource URI ([`ConnectionString::resource_for`]). Tokens live [`SasTokenSource::ttl`] and are
/// cached until 5 minutes before expiry.
pub struct SasTokenSource {
    conn: ConnectionString,
    /// Lifetime of each generated token.
    pub ttl: Duration,
    cache: TokenCache,
}

impl fmt::Debug for SasTokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SasTokenSource")
            .field("conn", &self.conn)
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl SasTokenSource {
    /// A source for this connection string, tokens valid for one hour.
    pub fn new(conn: ConnectionString) -> Arc<Self> {
        Arc::new(Self {
            conn,
            ttl: Duration::from_secs(3600),
            cache: TokenCache::default(),
        })
    }

    /// The connection string.
    pub fn connection(&self) -> &ConnectionString {
        &self.conn
    }

    fn sign(&self, resource: &str) -> AccessToken {
        let expires: DateTime<Utc> =
            Utc::now() + chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::hours(1));
        let token = generate_token(
            resource,
            &self.conn.key_name,
            &self.conn.key,
            expires.timestamp(),
        );
        AccessToken::shared_access_signature(token, expires)
    }
}

impl TokenSource for SasTokenSource {
    fn token<'a>(&'a self, scope: &'a str) -> BoxFuture<'a, Result<AccessToken, CredentialError>> {
        Box::pin(async move {
            self.cache
                .get_or_fetch(scope, || async { Ok(self.sign(scope)) })
                .await
        })
    }

    fn refresh<'a>(
        &'a self,
        scope: &'a str,
    ) -> BoxFuture<'a, Result<AccessToken, CredentialError>> {
        Box::pin(async move {
            self.cache.invalidate(scope).await;
            self.token(scope).await
        })
    }

    fn describe(&self) -> String {
        format!(
            "shared access key {} of {}",
            self.conn.key_name, self.conn.host
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known answer, computed independently at authoring time with Python's standard library
    /// (the recipe Microsoft documents for Python):
    ///
    /// ```text
    /// python3 -c '
    /// import hmac, hashlib, base64, urllib.parse
    /// uri = urllib.parse.quote_plus("https://mynamespace.servicebus.windows.net/geospatial-tasks")
    /// key = b"Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWo="
    /// sig = base64.b64encode(hmac.new(key, (uri + "\n1700000000").encode(), hashlib.sha256).digest())
    /// print("SharedAccessSignature sr=%s&sig=%s&se=1700000000&skn=RootManageSharedAccessKey"
    ///       % (uri, urllib.parse.quote_plus(sig)))'
    /// ```
    #[test]
    fn sas_token_matches_an_independently_computed_value() {
        let t = generate_token(
            "https://mynamespace.servicebus.windows.net/geospatial-tasks",
            "RootManageSharedAccessKey",
            "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWo=",
            1_700_000_000,
        );
        assert_eq!(t, KNOWN_ANSWER);
    }

    const KNOWN_ANSWER: &str = "SharedAccessSignature sr=https%3A%2F%2Fmynamespace.servicebus.windows.net%2Fgeospatial-tasks&sig=yZlagqwTj1icnp%2FDsDfikmRWz6rWsGwbdCcTlJGvIm0%3D&se=1700000000&skn=RootManageSharedAccessKey";

    #[test]
    fn connection_strings_parse_and_never_show_the_key() {
        let c = ConnectionString::parse(
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
        let e = ConnectionString::parse("Endpoint=sb://x/;SharedAccessKey=s3cr3t").unwrap_err();
        assert!(e.contains("SharedAccessKeyName"), "{e}");
        assert!(!e.contains("s3cr3t"));
        assert!(
            ConnectionString::parse("SharedAccessKeyName=a;SharedAccessKey=b")
                .unwrap_err()
                .contains("Endpoint")
        );
    }

    #[tokio::test]
    async fn sas_tokens_are_cached_per_resource_and_expire_in_an_hour() {
        let src = SasTokenSource::new(
            ConnectionString::parse(
                "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=v",
            )
            .unwrap(),
        );
        let a = src
            .token("https://ns.servicebus.windows.net/q1")
            .await
            .unwrap();
        let b = src
            .token("https://ns.servicebus.windows.net/q1")
            .await
            .unwrap();
        assert_eq!(a, b);
        let c = src
            .token("https://ns.servicebus.windows.net/q2")
            .await
            .unwrap();
        assert!(
            c.secret()
                .contains("sr=https%3A%2F%2Fns.servicebus.windows.net%2Fq2")
        );
        let left = a.expires_on - Utc::now();
        assert!(left > chrono::Duration::minutes(59) && left <= chrono::Duration::minutes(60));
        assert!(a.authorization().starts_with("SharedAccessSignature sr="));
    }
}
