//! Storage connection strings (`AZURE_STORAGE_CONNECTION_STRING`): the account, its blob endpoint,
//! and how requests are authorised (account key or SAS).
//!
//! Accepted forms, as the Azure portal and Azurite document them:
//! - `DefaultEndpointsProtocol=https;AccountName=…;AccountKey=…;EndpointSuffix=core.windows.net`
//! - the same with an explicit `BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1` (Azurite)
//! - `BlobEndpoint=…;SharedAccessSignature=sv=…&sig=…`
//! - `UseDevelopmentStorage=true` (Azurite on its default port with its well-known key)

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::Url;

/// Azurite's documented development account.
pub const DEV_ACCOUNT_NAME: &str = "devstoreaccount1";
/// Azurite's documented (public, well-known) development account key.
pub const DEV_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// How requests made with a connection string are authorised.
#[derive(Clone)]
pub enum KeyAuth {
    /// Shared Key signing with the decoded account key.
    AccountKey(Vec<u8>),
    /// A shared access signature appended to every request (without the leading `?`).
    Sas(String),
}

impl std::fmt::Debug for KeyAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyAuth::AccountKey(_) => f.write_str("AccountKey(***)"),
            KeyAuth::Sas(_) => f.write_str("Sas(***)"),
        }
    }
}

/// A parsed connection string.
#[derive(Debug, Clone)]
pub struct ConnectionString {
    /// Storage account name.
    pub account: String,
    /// Blob service endpoint without a trailing slash (`https://acct.blob.core.windows.net`,
    /// `http://127.0.0.1:10000/devstoreaccount1`).
    pub blob_endpoint: Url,
    /// Credential.
    pub auth: KeyAuth,
}

/// Why a connection string cannot be used. Never contains the key or signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("storage connection string: {0}")]
pub struct ConnectionStringError(pub String);

impl ConnectionString {
    /// Parses `s`. Keys are case-insensitive; values may contain `=`.
    pub fn parse(s: &str) -> Result<Self, ConnectionStringError> {
        let mut get = std::collections::BTreeMap::new();
        for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                ConnectionStringError(format!(
                    "segment {:?} is not key=value",
                    part.chars().take(30).collect::<String>()
                ))
            })?;
            get.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
        if get
            .get("usedevelopmentstorage")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            let mut endpoint = "http://127.0.0.1:10000/devstoreaccount1".to_string();
            if let Some(proxy) = get.get("developmentstorageproxyuri") {
                endpoint = format!("{}/devstoreaccount1", proxy.trim_end_matches('/'));
            }
            return Ok(Self {
                account: DEV_ACCOUNT_NAME.into(),
                blob_endpoint: parse_endpoint(&endpoint)?,
                auth: KeyAuth::AccountKey(B64.decode(DEV_ACCOUNT_KEY).expect("well-known key")),
            });
        }
        let account = get.get("accountname").cloned();
        let blob_endpoint = match (get.get("blobendpoint"), &account) {
            (Some(e), _) => parse_endpoint(e)?,
            (None, Some(a)) => {
                let protocol = get
                    .get("defaultendpointsprotocol")
                    .map(String::as_str)
                    .unwrap_or("https");
                if protocol != "https" && protocol != "http" {
                    return Err(ConnectionStringError(format!(
                        "DefaultEndpointsProtocol must be https or http, got {protocol:?}"
                    )));
                }
                let suffix = get
                    .get("endpointsuffix")
                    .map(String::as_str)
                    .unwrap_or("core.windows.net");
                parse_endpoint(&format!("{protocol}://{a}.blob.{suffix}"))?
            }
            (None, None) => {
                return Err(ConnectionStringError(
                    "needs AccountName (or BlobEndpoint)".into(),
                ));
            }
        };
        let auth = match (get.get("accountkey"), get.get("sharedaccesssignature")) {
            (Some(k), _) => KeyAuth::AccountKey(
                B64.decode(k)
                    .map_err(|_| ConnectionStringError("AccountKey is not valid base64".into()))?,
            ),
            (None, Some(sas)) => KeyAuth::Sas(sas.trim_start_matches('?').to_string()),
            (None, None) => {
                return Err(ConnectionStringError(
                    "needs AccountKey or SharedAccessSignature (for managed identity set STORAGE_ACCOUNT_NAME instead)".into(),
                ));
            }
        };
        let account = match account {
            Some(a) => a,
            None => account_from_endpoint(&blob_endpoint).ok_or_else(|| {
                ConnectionStringError(
                    "AccountName is missing and cannot be derived from BlobEndpoint".into(),
                )
            })?,
        };
        if matches!(auth, KeyAuth::AccountKey(_)) && account.is_empty() {
            return Err(ConnectionStringError("AccountName is empty".into()));
        }
        Ok(Self {
            account,
            blob_endpoint,
            auth,
        })
    }
}

fn parse_endpoint(e: &str) -> Result<Url, ConnectionStringError> {
    let url = Url::parse(e.trim_end_matches('/'))
        .map_err(|err| ConnectionStringError(format!("BlobEndpoint {e:?} is not a URL: {err}")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(ConnectionStringError(format!(
            "BlobEndpoint {e:?} must be http or https"
        )));
    }
    Ok(url)
}

/// `https://acct.blob.core.windows.net` → `acct`; `http://host:port/acct` → `acct`.
fn account_from_endpoint(u: &Url) -> Option<String> {
    let first_path = u
        .path_segments()
        .and_then(|mut s| s.next())
        .filter(|s| !s.is_empty());
    match first_path {
        Some(p) => Some(p.to_string()),
        None => u
            .host_str()
            .and_then(|h| h.split('.').next())
            .map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azurite_connection_string_with_blob_endpoint() {
        let cs = ConnectionString::parse(&format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={DEV_ACCOUNT_KEY};BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
        ))
        .unwrap();
        assert_eq!(cs.account, "devstoreaccount1");
        assert_eq!(
            cs.blob_endpoint.as_str(),
            "http://127.0.0.1:10000/devstoreaccount1"
        );
        assert!(matches!(cs.auth, KeyAuth::AccountKey(ref k) if k.len() == 64));
    }

    #[test]
    fn account_key_form_builds_the_public_endpoint() {
        let cs = ConnectionString::parse(
            "DefaultEndpointsProtocol=https;AccountName=rmhgeo;AccountKey=a2V5;EndpointSuffix=core.windows.net",
        )
        .unwrap();
        assert_eq!(
            cs.blob_endpoint.as_str(),
            "https://rmhgeo.blob.core.windows.net/"
        );
    }

    #[test]
    fn development_storage_shortcut() {
        let cs = ConnectionString::parse("UseDevelopmentStorage=true").unwrap();
        assert_eq!(cs.account, DEV_ACCOUNT_NAME);
        assert_eq!(cs.blob_endpoint.port(), Some(10000));
    }

    #[test]
    fn sas_form_derives_the_account_from_the_host() {
        let cs = ConnectionString::parse(
            "BlobEndpoint=https://rmhgeo.blob.core.windows.net/;SharedAccessSignature=?sv=2022&sig=abc",
        )
        .unwrap();
        assert_eq!(cs.account, "rmhgeo");
        assert!(matches!(cs.auth, KeyAuth::Sas(ref s) if s == "sv=2022&sig=abc"));
    }

    #[test]
    fn errors_never_echo_the_key() {
        let e = ConnectionString::parse("AccountName=a;AccountKey=not*base64*secret").unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        let e = ConnectionString::parse("AccountName=a").unwrap_err();
        assert!(e.to_string().contains("AccountKey"), "{e}");
        let e = ConnectionString::parse("garbage").unwrap_err();
        assert!(e.to_string().contains("key=value"), "{e}");
    }
}
