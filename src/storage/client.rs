//! [`BlobClient`]: the Blob service REST calls CoreMachine needs (List Blobs with prefix,
//! continuation marker and maxresults; Get Blob Properties; Get Blob with a byte range), plus
//! container/blob create and delete for tests and tooling.
//!
//! Every request is built afresh per attempt (it is signed with the current time) and sent with
//! the retry classification shared by every Azure call ([`crate::azure::retry`]): 408/429/5xx and
//! timeouts retried with backoff honouring `Retry-After`, 401 retried once with a refreshed token,
//! 403/404 and other 4xx permanent.

use std::sync::Arc;
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, Url};

use super::connection_string::{ConnectionString, KeyAuth};
use super::error::StorageError;
use super::shared_key::{self, SignInput};
use super::{BlobPage, list_xml};
use crate::azure::credential::{SharedTokenSource, scopes};
use crate::azure::retry::{AzureError, RetryPolicy, Target, authorization, send_with_retry};

/// The Blob service REST version sent as `x-ms-version`.
pub const API_VERSION: &str = "2021-08-06";

/// The Entra ID scope of the Blob data plane.
pub const STORAGE_SCOPE: &str = scopes::STORAGE;

/// Most results one List Blobs page may return (the service's own maximum).
pub const MAX_PAGE_SIZE: u32 = 5000;

/// Unreserved characters stay as they are; everything else is percent-encoded (`%20`, not `+`).
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

#[derive(Clone)]
enum Auth {
    SharedKey(Vec<u8>),
    Sas(String),
    Bearer(SharedTokenSource),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::SharedKey(_) => f.write_str("SharedKey(***)"),
            Auth::Sas(_) => f.write_str("Sas(***)"),
            Auth::Bearer(t) => write!(f, "Bearer({})", t.describe()),
        }
    }
}

/// Properties of one blob (Get Blob Properties).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BlobProperties {
    /// Size in bytes.
    pub size: u64,
    /// Content-Type, when set.
    pub content_type: Option<String>,
    /// Last modification time (RFC 3339, UTC).
    pub last_modified: Option<String>,
    /// ETag.
    pub etag: Option<String>,
    /// BlockBlob, PageBlob or AppendBlob.
    pub blob_type: Option<String>,
}

/// What one List Blobs call asks for.
#[derive(Debug, Clone, Default)]
pub struct ListOptions<'a> {
    /// Only names starting with this.
    pub prefix: Option<&'a str>,
    /// Continuation marker from the previous page.
    pub marker: Option<&'a str>,
    /// Page size (1..=5000; the service default is 5000).
    pub max_results: Option<u32>,
}

/// A Blob service client for one storage account. Cheap to clone.
#[derive(Debug, Clone)]
pub struct BlobClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    endpoint: Url,
    account: String,
    auth: Auth,
    retry: RetryPolicy,
    breaker: Arc<crate::azure::breaker::Breaker>,
}

/// What a request is about (for the URL, the signature and errors).
struct Call<'a> {
    method: Method,
    container: &'a str,
    blob: Option<&'a str>,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Option<(Vec<u8>, &'a str)>,
    operation: String,
}

impl BlobClient {
    /// A client authorised by the connection string's account key or SAS.
    pub fn from_connection_string(cs: &ConnectionString) -> Result<Self, StorageError> {
        let auth = match &cs.auth {
            KeyAuth::AccountKey(k) => Auth::SharedKey(k.clone()),
            KeyAuth::Sas(s) => Auth::Sas(s.clone()),
        };
        Self::build(cs.blob_endpoint.clone(), cs.account.clone(), auth)
    }

    /// A client for `https://{account}.blob.core.windows.net` authorised by bearer tokens.
    pub fn with_token_source(
        account: &str,
        tokens: SharedTokenSource,
    ) -> Result<Self, StorageError> {
        let endpoint = Url::parse(&format!("https://{account}.blob.core.windows.net"))
            .map_err(|e| config_error(account, format!("account name gives no valid URL: {e}")))?;
        Self::build(endpoint, account.to_string(), Auth::Bearer(tokens))
    }

    /// A client for an explicit endpoint authorised by bearer tokens (sovereign clouds, tests).
    pub fn with_endpoint_and_token_source(
        endpoint: Url,
        account: &str,
        tokens: SharedTokenSource,
    ) -> Result<Self, StorageError> {
        Self::build(endpoint, account.to_string(), Auth::Bearer(tokens))
    }

    fn build(endpoint: Url, account: String, auth: Auth) -> Result<Self, StorageError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| config_error(&account, format!("HTTP client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                account,
                breaker: crate::azure::breaker::Breaker::new(
                    format!("Blob Storage {endpoint}"),
                    crate::config::BreakerSettings::from_env(),
                ),
                endpoint,
                auth,
                retry: RetryPolicy::default(),
            }),
        })
    }

    /// Uses `policy` for retries (tests shorten the delays).
    pub fn with_retry_policy(self, policy: RetryPolicy) -> Self {
        let i = &self.inner;
        Self {
            inner: Arc::new(Inner {
                http: i.http.clone(),
                endpoint: i.endpoint.clone(),
                account: i.account.clone(),
                auth: i.auth.clone(),
                retry: policy,
                breaker: Arc::clone(&i.breaker),
            }),
        }
    }

    /// The storage account name.
    pub fn account(&self) -> &str {
        &self.inner.account
    }

    /// The blob service endpoint.
    pub fn endpoint(&self) -> &Url {
        &self.inner.endpoint
    }

    /// One page of List Blobs (flat, in name order).
    pub async fn list_blobs(
        &self,
        container: &str,
        opts: &ListOptions<'_>,
    ) -> Result<BlobPage, StorageError> {
        let mut query = vec![
            ("restype".to_string(), "container".to_string()),
            ("comp".to_string(), "list".to_string()),
        ];
        if let Some(p) = opts.prefix.filter(|p| !p.is_empty()) {
            query.push(("prefix".into(), p.into()));
        }
        if let Some(m) = opts.marker.filter(|m| !m.is_empty()) {
            query.push(("marker".into(), m.into()));
        }
        if let Some(n) = opts.max_results {
            query.push(("maxresults".into(), n.clamp(1, MAX_PAGE_SIZE).to_string()));
        }
        let call = Call {
            method: Method::GET,
            container,
            blob: None,
            query,
            headers: Vec::new(),
            body: None,
            operation: "list blobs".into(),
        };
        let response = self.execute(&call).await?;
        let text = response
            .text()
            .await
            .map_err(|e| self.invalid(&call, format!("reading the body: {e}")))?;
        list_xml::parse(&text).map_err(|e| self.invalid(&call, e))
    }

    /// Get Blob Properties.
    pub async fn get_properties(
        &self,
        container: &str,
        blob: &str,
    ) -> Result<BlobProperties, StorageError> {
        let call = Call {
            method: Method::HEAD,
            container,
            blob: Some(blob),
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
            operation: "get blob properties".into(),
        };
        let r = self.execute(&call).await?;
        let h = r.headers();
        let text = |name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .filter(|s| !s.is_empty())
        };
        let size = text("content-length")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| self.invalid(&call, "no Content-Length".into()))?;
        Ok(BlobProperties {
            size,
            content_type: text("content-type"),
            last_modified: text("last-modified").and_then(|d| list_xml::http_date(&d)),
            etag: text("etag"),
            blob_type: text("x-ms-blob-type"),
        })
    }

    /// Reads `len` bytes from `offset` (fewer at the end of the blob; none past it).
    pub async fn read_range(
        &self,
        container: &str,
        blob: &str,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, StorageError> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let call = Call {
            method: Method::GET,
            container,
            blob: Some(blob),
            query: Vec::new(),
            headers: vec![(
                "x-ms-range".into(),
                format!("bytes={offset}-{}", offset + len - 1),
            )],
            body: None,
            operation: format!("read bytes {offset}..{}", offset + len),
        };
        match self.execute(&call).await {
            Ok(r) => Ok(r
                .bytes()
                .await
                .map_err(|e| self.invalid(&call, format!("reading the body: {e}")))?
                .to_vec()),
            // The range starts at or after the end of the blob.
            Err(StorageError::Service {
                status: Some(416), ..
            }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Creates the container; false when it already existed.
    pub async fn create_container(&self, container: &str) -> Result<bool, StorageError> {
        let call = Call {
            method: Method::PUT,
            container,
            blob: None,
            query: vec![("restype".into(), "container".into())],
            headers: Vec::new(),
            body: None,
            operation: "create container".into(),
        };
        match self.execute(&call).await {
            Ok(_) => Ok(true),
            Err(StorageError::Service {
                status: Some(409), ..
            }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes the container and everything in it.
    pub async fn delete_container(&self, container: &str) -> Result<(), StorageError> {
        let call = Call {
            method: Method::DELETE,
            container,
            blob: None,
            query: vec![("restype".into(), "container".into())],
            headers: Vec::new(),
            body: None,
            operation: "delete container".into(),
        };
        self.execute(&call).await.map(drop)
    }

    /// Uploads a block blob in one Put Blob request (the whole body in memory; for tests, tools
    /// and small files).
    pub async fn put_blob(
        &self,
        container: &str,
        blob: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), StorageError> {
        let call = Call {
            method: Method::PUT,
            container,
            blob: Some(blob),
            query: Vec::new(),
            headers: vec![("x-ms-blob-type".into(), "BlockBlob".into())],
            body: Some((body, content_type)),
            operation: "upload blob".into(),
        };
        self.execute(&call).await.map(drop)
    }

    /// Put Block: stages one block of a block blob (committed later by [`Self::put_block_list`]).
    /// `block_id` is the already base64-encoded id; every id of a blob must have the same length.
    pub async fn put_block(
        &self,
        container: &str,
        blob: &str,
        block_id: &str,
        body: Vec<u8>,
    ) -> Result<(), StorageError> {
        let call = Call {
            method: Method::PUT,
            container,
            blob: Some(blob),
            query: vec![
                ("comp".into(), "block".into()),
                ("blockid".into(), block_id.into()),
            ],
            headers: Vec::new(),
            body: Some((body, "application/octet-stream")),
            operation: format!("upload block {block_id}"),
        };
        self.execute(&call).await.map(drop)
    }

    /// Put Block List: commits the staged blocks, in order, as the blob's content, with its
    /// Content-Type.
    pub async fn put_block_list(
        &self,
        container: &str,
        blob: &str,
        block_ids: &[String],
        content_type: &str,
    ) -> Result<(), StorageError> {
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
        for id in block_ids {
            xml.push_str("<Latest>");
            xml.push_str(id);
            xml.push_str("</Latest>");
        }
        xml.push_str("</BlockList>");
        let call = Call {
            method: Method::PUT,
            container,
            blob: Some(blob),
            query: vec![("comp".into(), "blocklist".into())],
            headers: vec![("x-ms-blob-content-type".into(), content_type.into())],
            body: Some((xml.into_bytes(), "application/xml")),
            operation: format!("commit {} blocks", block_ids.len()),
        };
        self.execute(&call).await.map(drop)
    }

    /// Deletes a blob.
    pub async fn delete_blob(&self, container: &str, blob: &str) -> Result<(), StorageError> {
        let call = Call {
            method: Method::DELETE,
            container,
            blob: Some(blob),
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
            operation: "delete blob".into(),
        };
        self.execute(&call).await.map(drop)
    }

    /// Whether the container exists (used to tell a missing container from a missing blob,
    /// since a HEAD response carries no error body).
    pub async fn container_exists(&self, container: &str) -> Result<bool, StorageError> {
        let call = Call {
            method: Method::HEAD,
            container,
            blob: None,
            query: vec![("restype".into(), "container".into())],
            headers: Vec::new(),
            body: None,
            operation: "get container properties".into(),
        };
        match self.execute(&call).await {
            Ok(_) => Ok(true),
            Err(StorageError::ContainerNotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn url(&self, call: &Call<'_>) -> Url {
        let mut url = self.inner.endpoint.clone();
        {
            let mut segs = url
                .path_segments_mut()
                .expect("http(s) endpoints have a path");
            segs.pop_if_empty().push(call.container);
            if let Some(b) = call.blob {
                segs.extend(b.split('/'));
            }
        }
        let mut q: Vec<String> = call
            .query
            .iter()
            .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, QUERY_VALUE)))
            .collect();
        if let Auth::Sas(sas) = &self.inner.auth {
            q.push(sas.clone());
        }
        url.set_query((!q.is_empty()).then(|| q.join("&")).as_deref());
        url
    }

    /// Builds, authorises and sends one attempt of `call`.
    async fn attempt(
        &self,
        call: &Call<'_>,
        target: &Target,
        refresh_auth: bool,
    ) -> Result<reqwest::RequestBuilder, AzureError> {
        let url = self.url(call);
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let mut ms = vec![
            ("x-ms-date".to_string(), date),
            ("x-ms-version".to_string(), API_VERSION.to_string()),
        ];
        ms.extend(call.headers.iter().cloned());
        let mut rb = self.inner.http.request(call.method.clone(), url.clone());
        for (k, v) in &ms {
            rb = rb.header(k, v);
        }
        let length = call.body.as_ref().map_or(0, |(b, _)| b.len() as u64);
        let content_type = call.body.as_ref().map(|(_, t)| *t);
        match &self.inner.auth {
            Auth::SharedKey(key) => {
                let path = url.path().to_string();
                let header = shared_key::authorization(
                    key,
                    &SignInput {
                        method: call.method.as_str(),
                        content_length: length,
                        content_type,
                        ms_headers: &ms,
                        account: &self.inner.account,
                        path: &path,
                        query: &call.query,
                    },
                );
                rb = rb.header("authorization", header);
            }
            Auth::Sas(_) => {}
            Auth::Bearer(tokens) => {
                let auth =
                    authorization(tokens.as_ref(), STORAGE_SCOPE, refresh_auth, target).await?;
                rb = rb.header("authorization", auth);
            }
        }
        if let Some((body, ct)) = &call.body {
            rb = rb
                .header("content-type", *ct)
                .header("content-length", body.len())
                .body(body.clone());
        } else if call.method == Method::PUT {
            rb = rb.header("content-length", 0);
        }
        Ok(rb)
    }

    async fn execute(&self, call: &Call<'_>) -> Result<reqwest::Response, StorageError> {
        let target = match call.blob {
            Some(b) => Target::new(
                "Blob Storage",
                "blob",
                format!("{}/{b}", call.container),
                call.operation.clone(),
            ),
            None => Target::new(
                "Blob Storage",
                "container",
                call.container,
                call.operation.clone(),
            ),
        }
        .with_context(format!("storage account {}", self.inner.account))
        .with_breaker(Arc::clone(&self.inner.breaker));
        let sent = send_with_retry(&self.inner.retry, &target, |a| {
            let target = &target;
            async move { self.attempt(call, target, a.refresh_auth).await }
        })
        .await;
        match sent {
            Ok(s) => Ok(s.response),
            Err(f) => Err(self.classify(call, f).await),
        }
    }

    /// Turns a final failure into a [`StorageError`] naming the container (and blob).
    async fn classify(&self, call: &Call<'_>, f: AzureError) -> StorageError {
        let account = self.inner.account.clone();
        let container = call.container.to_string();
        let operation = call.operation.clone();
        let target = match call.blob {
            Some(b) => format!("blob {b:?} in container {container:?}"),
            None => format!("container {container:?}"),
        };
        match f.status {
            Some(404) => {
                let says_container = f.message.contains("ContainerNotFound")
                    || f.message.contains("container does not exist");
                let container_missing = match call.blob {
                    None => true,
                    Some(_) if says_container => true,
                    // HEAD responses carry no body: ask whether the container is there.
                    Some(_) => Box::pin(self.container_exists(call.container))
                        .await
                        .is_ok_and(|exists| !exists),
                };
                if container_missing {
                    StorageError::ContainerNotFound {
                        account,
                        container,
                        operation,
                        message: f.message,
                    }
                } else {
                    StorageError::BlobNotFound {
                        account,
                        container,
                        blob: call.blob.unwrap_or_default().to_string(),
                        operation,
                        message: f.message,
                    }
                }
            }
            Some(status @ (401 | 403)) => StorageError::AccessDenied {
                account,
                target,
                status,
                operation,
                message: f.message,
            },
            status => StorageError::Service {
                account,
                target,
                status,
                operation,
                message: f.message,
                retryable: f.retryable,
            },
        }
    }

    fn invalid(&self, call: &Call<'_>, reason: String) -> StorageError {
        StorageError::InvalidResponse {
            account: self.inner.account.clone(),
            target: format!("container {:?}", call.container),
            operation: call.operation.clone(),
            // A body-read error prints the URL, and a SAS is in its query string.
            reason: crate::azure::redact::redact(&reason),
        }
    }
}

fn config_error(account: &str, message: String) -> StorageError {
    StorageError::Service {
        account: account.to_string(),
        target: "the storage account".into(),
        status: None,
        operation: "set up the client".into(),
        message,
        retryable: false,
    }
}
