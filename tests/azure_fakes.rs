//! Local stand-ins for Azure, written from functions-protocol.md §5 and §7:
//!
//! - [`FakeServiceBus`]: the Service Bus REST send endpoint. It checks every request the way the
//!   reference describes it (URL `/{queue}/messages`, `Authorization` with a Bearer token or a
//!   SAS token whose signature it recomputes, `Content-Type`, `BrokerProperties` JSON, custom
//!   property headers, the batch body) and records the messages; a script makes it answer 429
//!   with `Retry-After`, 503, 401, 403 or 410 instead. Any protocol violation is answered 400 and
//!   recorded, and tests assert there were none.
//! - [`FakeIdentity`]: the App Service managed-identity endpoint (`IDENTITY_ENDPOINT`): checks
//!   `X-IDENTITY-HEADER`, `api-version=2019-08-01`, `resource`, optional `client_id`, and answers
//!   `expires_on` as a string.
//!
//! Both run on 127.0.0.1 port 0 and stop when dropped.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

/// How the fake checks `Authorization`.
#[derive(Debug, Clone)]
pub enum FakeAuth {
    /// `Bearer <one of these>`.
    Bearer(HashSet<String>),
    /// A SAS token signed with this key for `https://{namespace}/{queue}`.
    Sas {
        namespace: String,
        key_name: String,
        key: String,
    },
}

/// A scripted answer instead of accepting the request.
#[derive(Debug, Clone)]
pub struct Scripted {
    pub status: u16,
    pub retry_after: Option<String>,
    pub detail: String,
}

impl Scripted {
    pub fn status(status: u16, detail: &str) -> Self {
        Self {
            status,
            retry_after: None,
            detail: detail.into(),
        }
    }
    pub fn throttled(retry_after_s: u32) -> Self {
        Self {
            status: 429,
            retry_after: Some(retry_after_s.to_string()),
            detail: "The request was terminated because the entity is being throttled. Please wait and try again.".into(),
        }
    }
}

/// One accepted message.
#[derive(Debug, Clone)]
pub struct Received {
    pub queue: String,
    pub body: String,
    pub broker: Map<String, Value>,
    pub properties: Map<String, Value>,
    pub batch: bool,
}

impl Received {
    pub fn message_id(&self) -> &str {
        self.broker["MessageId"].as_str().unwrap_or_default()
    }
}

/// One request as seen by the fake.
#[derive(Debug, Clone)]
pub struct Seen {
    pub queue: String,
    pub status: u16,
    pub at: Instant,
    pub authorization: String,
    pub messages: usize,
    pub body_bytes: usize,
}

#[derive(Debug)]
struct SbState {
    auth: FakeAuth,
    queues: HashSet<String>,
    script: VecDeque<Scripted>,
    received: Vec<Received>,
    seen: Vec<Seen>,
    violations: Vec<String>,
    duplicates: usize,
    ids: HashMap<String, HashSet<String>>,
    max_message_bytes: usize,
}

/// The Service Bus REST stand-in.
#[derive(Clone)]
pub struct FakeServiceBus {
    state: Arc<Mutex<SbState>>,
    pub url: String,
    _stop: Arc<StopOnDrop>,
}

struct StopOnDrop(CancellationToken);

/// Serves `app` on 127.0.0.1, port 0, until the returned guard is dropped.
async fn serve(app: axum::Router) -> (String, Arc<StopOnDrop>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { s.cancelled().await })
            .await;
    });
    (url, Arc::new(StopOnDrop(stop)))
}
impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

pub const QUEUES: [&str; 3] = ["geospatial-jobs", "geospatial-tasks", "geospatial-poison"];

impl FakeServiceBus {
    pub async fn start(auth: FakeAuth) -> Self {
        let state = Arc::new(Mutex::new(SbState {
            auth,
            queues: QUEUES.iter().map(|q| q.to_string()).collect(),
            script: VecDeque::new(),
            received: Vec::new(),
            seen: Vec::new(),
            violations: Vec::new(),
            duplicates: 0,
            ids: HashMap::new(),
            max_message_bytes: 256 * 1024,
        }));
        let app = axum::Router::new()
            .fallback(sb_handle)
            .with_state(state.clone());
        let (url, stop) = serve(app).await;
        Self {
            state,
            url,
            _stop: stop,
        }
    }

    pub async fn bearer(token: &str) -> Self {
        Self::start(FakeAuth::Bearer([token.to_string()].into_iter().collect())).await
    }

    pub fn script(&self, answers: impl IntoIterator<Item = Scripted>) {
        self.state.lock().unwrap().script.extend(answers);
    }
    pub fn accept_tokens(&self, tokens: &[&str]) {
        if let FakeAuth::Bearer(set) = &mut self.state.lock().unwrap().auth {
            *set = tokens.iter().map(|t| t.to_string()).collect();
        }
    }
    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }
    pub fn take_received(&self) -> Vec<Received> {
        std::mem::take(&mut self.state.lock().unwrap().received)
    }
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }
    pub fn violations(&self) -> Vec<String> {
        self.state.lock().unwrap().violations.clone()
    }
    pub fn duplicates(&self) -> usize {
        self.state.lock().unwrap().duplicates
    }
    pub fn assert_clean(&self) {
        let v = self.violations();
        assert!(v.is_empty(), "protocol violations: {v:#?}");
    }
}

fn sb_error(status: u16, detail: &str) -> Response {
    let body = format!(
        "<Error><Code>{status}</Code><Detail>{detail} TrackingId:00000000-0000-0000-0000-000000000000_G0</Detail></Error>"
    );
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn sb_handle(
    State(state): State<Arc<Mutex<SbState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut st = state.lock().unwrap();
    let path = uri.path().trim_start_matches('/').to_string();
    let queue = path.strip_suffix("/messages").unwrap_or("").to_string();
    let authz = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut seen = Seen {
        queue: queue.clone(),
        status: 0,
        at: Instant::now(),
        authorization: authz.clone(),
        messages: 0,
        body_bytes: body.len(),
    };
    let result = sb_check(&mut st, &method, &uri, &queue, &headers, &authz, &body);
    let response = match result {
        Ok(accepted) => {
            seen.messages = accepted.len();
            for m in accepted {
                let id = m.message_id().to_string();
                if !st.ids.entry(m.queue.clone()).or_default().insert(id) {
                    st.duplicates += 1;
                } else {
                    st.received.push(m);
                }
            }
            StatusCode::CREATED.into_response()
        }
        Err(r) => r,
    };
    seen.status = response.status().as_u16();
    st.seen.push(seen);
    response
}

// A rejection is the response itself; its size does not matter in a test stand-in.
#[allow(clippy::result_large_err)]
fn sb_check(
    st: &mut SbState,
    method: &Method,
    uri: &Uri,
    queue: &str,
    headers: &HeaderMap,
    authz: &str,
    body: &[u8],
) -> Result<Vec<Received>, Response> {
    let violation = |st: &mut SbState, msg: String| -> Response {
        st.violations.push(msg.clone());
        sb_error(400, &msg)
    };
    if method != Method::POST {
        return Err(violation(st, format!("method {method} is not POST")));
    }
    if queue.is_empty() {
        return Err(violation(
            st,
            format!("path {} is not /{{queue}}/messages", uri.path()),
        ));
    }
    if let Some(q) = uri.query()
        && !q
            .split('&')
            .all(|p| p == "timeout=60" || p.starts_with("api-version="))
    {
        return Err(violation(st, format!("unexpected query {q}")));
    }
    // Authentication before anything else, as the service does.
    let auth_ok = match &st.auth {
        FakeAuth::Bearer(tokens) => authz
            .strip_prefix("Bearer ")
            .is_some_and(|t| tokens.contains(t)),
        FakeAuth::Sas {
            namespace,
            key_name,
            key,
        } => check_sas(authz, namespace, queue, key_name, key),
    };
    if !auth_ok {
        return Err(sb_error(
            401,
            "InvalidSignature: The token is invalid or expired.",
        ));
    }
    if let Some(s) = st.script.pop_front() {
        let mut r = sb_error(s.status, &s.detail);
        if let Some(ra) = s.retry_after {
            r.headers_mut().insert("retry-after", ra.parse().unwrap());
        }
        return Err(r);
    }
    if !st.queues.contains(queue) {
        return Err(sb_error(
            404,
            &format!("MessagingEntityNotFound: queue {queue} does not exist."),
        ));
    }
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = match std::str::from_utf8(body) {
        Ok(t) => t.to_string(),
        Err(_) => return Err(violation(st, "body is not UTF-8".into())),
    };
    let mut out = Vec::new();
    if ct == "application/vnd.microsoft.servicebus.json" {
        if body.len() > 256 * 1024 {
            return Err(sb_error(413, "The batch is larger than 256 KB."));
        }
        let arr: Vec<Value> = match serde_json::from_str(&text) {
            Ok(Value::Array(a)) => a,
            _ => return Err(violation(st, "batch body is not a JSON array".into())),
        };
        if arr.len() > 100 {
            return Err(violation(
                st,
                format!("batch of {} messages (more than 100)", arr.len()),
            ));
        }
        if arr.len() < 2 {
            return Err(violation(
                st,
                "a batch of fewer than 2 messages should be a single send".into(),
            ));
        }
        for (i, el) in arr.iter().enumerate() {
            let Some(o) = el.as_object() else {
                return Err(violation(st, format!("batch element {i} is not an object")));
            };
            let keys: HashSet<&str> = o.keys().map(String::as_str).collect();
            if !keys.is_subset(
                &["Body", "BrokerProperties", "UserProperties"]
                    .into_iter()
                    .collect(),
            ) {
                return Err(violation(
                    st,
                    format!("batch element {i} has keys {keys:?}"),
                ));
            }
            let Some(b) = o.get("Body").and_then(Value::as_str) else {
                return Err(violation(
                    st,
                    format!("batch element {i} has no string Body"),
                ));
            };
            let broker = match o.get("BrokerProperties") {
                Some(Value::Object(m)) => m.clone(),
                _ => {
                    return Err(violation(
                        st,
                        format!("batch element {i} has no BrokerProperties object"),
                    ));
                }
            };
            let props = match o.get("UserProperties") {
                Some(Value::Object(m)) => m.clone(),
                None => Map::new(),
                _ => {
                    return Err(violation(
                        st,
                        format!("batch element {i} UserProperties is not an object"),
                    ));
                }
            };
            if let Err(e) = check_broker(&broker) {
                return Err(violation(st, format!("batch element {i}: {e}")));
            }
            if let Err(e) = check_body(b) {
                return Err(violation(st, format!("batch element {i}: {e}")));
            }
            out.push(Received {
                queue: queue.to_string(),
                body: b.to_string(),
                broker,
                properties: props,
                batch: true,
            });
        }
    } else if ct == "application/json" {
        let Some(bp) = headers
            .get("brokerproperties")
            .and_then(|v| v.to_str().ok())
        else {
            return Err(violation(st, "single send without BrokerProperties".into()));
        };
        let broker = match serde_json::from_str::<Value>(bp) {
            Ok(Value::Object(m)) => m,
            _ => {
                return Err(violation(
                    st,
                    format!("BrokerProperties is not a JSON object: {bp}"),
                ));
            }
        };
        if let Err(e) = check_broker(&broker) {
            return Err(violation(st, e));
        }
        if let Err(e) = check_body(&text) {
            return Err(violation(st, e));
        }
        let size = text.len() + bp.len();
        if size > st.max_message_bytes {
            return Err(sb_error(403, "The maximum message size has been exceeded."));
        }
        let mut props = Map::new();
        for name in ["job_id", "task_id", "stage", "traceparent", "Diagnostic-Id"] {
            if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
                // Strings travel quoted, numbers plain.
                let parsed = match serde_json::from_str::<Value>(v) {
                    Ok(p @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) => p,
                    _ => {
                        return Err(violation(
                            st,
                            format!(
                                "custom property {name}: {v} is neither a quoted string nor a number"
                            ),
                        ));
                    }
                };
                props.insert(name.to_string(), parsed);
            }
        }
        out.push(Received {
            queue: queue.to_string(),
            body: text,
            broker,
            properties: props,
            batch: false,
        });
    } else {
        return Err(violation(st, format!("content type {ct:?}")));
    }
    Ok(out)
}

fn check_broker(b: &Map<String, Value>) -> Result<(), String> {
    const KNOWN: [&str; 12] = [
        "CorrelationId",
        "ForcePersistence",
        "Label",
        "MessageId",
        "PartitionKey",
        "ReplyTo",
        "ReplyToSessionId",
        "ScheduledEnqueueTimeUtc",
        "SessionId",
        "TimeToLive",
        "To",
        "ViaPartitionKey",
    ];
    for k in b.keys() {
        if !KNOWN.contains(&k.as_str()) {
            return Err(format!("unknown broker property {k}"));
        }
    }
    match b.get("MessageId").and_then(Value::as_str) {
        Some(id) if !id.is_empty() && id.len() <= 128 => {}
        other => return Err(format!("MessageId {other:?} missing or longer than 128")),
    }
    if let Some(t) = b.get("ScheduledEnqueueTimeUtc") {
        let s = t.as_str().unwrap_or_default();
        if chrono::NaiveDateTime::parse_from_str(s, "%a, %d %b %Y %H:%M:%S GMT").is_err() {
            return Err(format!("ScheduledEnqueueTimeUtc {s:?} is not RFC 1123"));
        }
    }
    if let Some(t) = b.get("TimeToLive")
        && !t.is_number()
    {
        return Err(format!("TimeToLive {t} is not a number of seconds"));
    }
    if let Some(c) = b.get("CorrelationId")
        && !c.is_string()
    {
        return Err("CorrelationId is not a string".into());
    }
    Ok(())
}

fn check_body(b: &str) -> Result<(), String> {
    serde_json::from_str::<Value>(b)
        .map(|_| ())
        .map_err(|e| format!("body is not JSON: {e}"))
}

fn check_sas(authz: &str, namespace: &str, queue: &str, key_name: &str, key: &str) -> bool {
    let Some(rest) = authz.strip_prefix("SharedAccessSignature ") else {
        return false;
    };
    let parts: HashMap<&str, &str> = rest.split('&').filter_map(|p| p.split_once('=')).collect();
    let (Some(sr), Some(sig), Some(se), Some(skn)) = (
        parts.get("sr"),
        parts.get("sig"),
        parts.get("se"),
        parts.get("skn"),
    ) else {
        return false;
    };
    let decode = |s: &str| -> String {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    if *skn != key_name || decode(sr) != format!("https://{namespace}/{queue}") {
        return false;
    }
    let Ok(expiry) = se.parse::<i64>() else {
        return false;
    };
    if expiry < chrono::Utc::now().timestamp() {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(format!("{sr}\n{se}").as_bytes());
    let want = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    decode(sig) == want
}

// ---------------------------------------------------------------------------------------------
// Managed identity endpoint
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub resource: String,
    pub client_id: Option<String>,
    pub at: Instant,
}

#[derive(Debug)]
struct IdState {
    secret_header: String,
    lifetime_s: i64,
    lifetimes: VecDeque<i64>,
    fixed: HashMap<String, String>,
    stale_first: HashSet<String>,
    requests: Vec<TokenRequest>,
    issued: HashMap<String, usize>,
    fail_next: VecDeque<u16>,
    violations: Vec<String>,
}

/// The `IDENTITY_ENDPOINT` stand-in.
#[derive(Clone)]
pub struct FakeIdentity {
    state: Arc<Mutex<IdState>>,
    pub endpoint: String,
    pub header: String,
    _stop: Arc<StopOnDrop>,
}

impl FakeIdentity {
    pub async fn start(lifetime: Duration) -> Self {
        let header = format!("identity-header-{}", uuid::Uuid::new_v4().simple());
        let state = Arc::new(Mutex::new(IdState {
            secret_header: header.clone(),
            lifetime_s: lifetime.as_secs() as i64,
            lifetimes: VecDeque::new(),
            fixed: HashMap::new(),
            stale_first: HashSet::new(),
            requests: Vec::new(),
            issued: HashMap::new(),
            fail_next: VecDeque::new(),
            violations: Vec::new(),
        }));
        let app = axum::Router::new()
            .route("/msi/token", axum::routing::get(id_handle))
            .with_state(state.clone());
        let (url, stop) = serve(app).await;
        Self {
            state,
            endpoint: format!("{url}/msi/token"),
            header,
            _stop: stop,
        }
    }
    pub fn set_lifetime(&self, lifetime: Duration) {
        self.state.lock().unwrap().lifetime_s = lifetime.as_secs() as i64;
    }
    /// Lifetimes of the next tokens issued, in order (then the default).
    pub fn next_lifetimes(&self, secs: &[i64]) {
        self.state.lock().unwrap().lifetimes.extend(secs);
    }
    /// Always issue `token` for `resource`.
    pub fn fixed_token(&self, resource: &str, token: &str) {
        self.state
            .lock()
            .unwrap()
            .fixed
            .insert(resource.into(), token.into());
    }
    /// The first token issued for `resource` is one no service accepts.
    pub fn stale_first(&self, resource: &str) {
        self.state
            .lock()
            .unwrap()
            .stale_first
            .insert(resource.into());
    }
    pub fn fail_next(&self, statuses: &[u16]) {
        self.state.lock().unwrap().fail_next.extend(statuses);
    }
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.state.lock().unwrap().requests.clone()
    }
    pub fn violations(&self) -> Vec<String> {
        self.state.lock().unwrap().violations.clone()
    }
}

async fn id_handle(
    State(state): State<Arc<Mutex<IdState>>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut st = state.lock().unwrap();
    let hdr = headers
        .get("x-identity-header")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if hdr != st.secret_header {
        st.violations.push(format!("X-IDENTITY-HEADER {hdr:?}"));
        return (
            StatusCode::UNAUTHORIZED,
            "missing or wrong X-IDENTITY-HEADER",
        )
            .into_response();
    }
    if q.get("api-version").map(String::as_str) != Some("2019-08-01") {
        st.violations
            .push(format!("api-version {:?}", q.get("api-version")));
        return (StatusCode::BAD_REQUEST, "api-version").into_response();
    }
    let Some(resource) = q.get("resource").cloned() else {
        st.violations.push("no resource".into());
        return (StatusCode::BAD_REQUEST, "resource").into_response();
    };
    st.requests.push(TokenRequest {
        resource: resource.clone(),
        client_id: q.get("client_id").cloned(),
        at: Instant::now(),
    });
    if let Some(code) = st.fail_next.pop_front() {
        return (
            StatusCode::from_u16(code).unwrap(),
            "{\"error\":\"temporarily_unavailable\"}",
        )
            .into_response();
    }
    let n = {
        let c = st.issued.entry(resource.clone()).or_default();
        *c += 1;
        *c
    };
    let lifetime = st.lifetimes.pop_front().unwrap_or(st.lifetime_s);
    let expires_on = chrono::Utc::now().timestamp() + lifetime;
    let stale = n == 1 && st.stale_first.contains(&resource);
    let token = st
        .fixed
        .get(&resource)
        .filter(|_| !stale)
        .cloned()
        .unwrap_or_else(|| format!("mi-token-{}-{n}", resource.trim_start_matches("https://")));
    axum::Json(json!({
        "access_token": token,
        "expires_on": expires_on.to_string(),
        "resource": resource,
        "token_type": "Bearer",
        "client_id": q.get("client_id").cloned().unwrap_or_else(|| "system-assigned".into()),
    }))
    .into_response()
}
