//! An HTTP proxy in front of Azurite that answers `503 Server Busy` (as Storage does when it
//! throttles) to chosen requests and forwards the rest unchanged. It stops when dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;

pub struct FlakyProxy {
    /// Base URL of the proxy (`http://127.0.0.1:PORT`).
    pub url: String,
    /// Requests received.
    pub requests: Arc<AtomicU64>,
    /// 503s answered.
    pub injected: Arc<AtomicU64>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
    }
}

#[derive(Clone)]
struct Ctx {
    upstream: String,
    http: reqwest::Client,
    requests: Arc<AtomicU64>,
    injected: Arc<AtomicU64>,
    fail: Arc<dyn Fn(u64) -> bool + Send + Sync>,
}

/// Starts a proxy to `upstream` (scheme://host:port) that answers 503 to request number `n`
/// (1-based) whenever `fail(n)` is true.
pub async fn start(
    upstream: &str,
    fail: impl Fn(u64) -> bool + Send + Sync + 'static,
) -> FlakyProxy {
    let u = reqwest::Url::parse(upstream).expect("upstream URL");
    let upstream = format!(
        "{}://{}",
        u.scheme(),
        u.host_str()
            .zip(u.port())
            .map(|(h, p)| format!("{h}:{p}"))
            .expect("host:port")
    );
    let ctx = Ctx {
        upstream,
        http: reqwest::Client::new(),
        requests: Arc::new(AtomicU64::new(0)),
        injected: Arc::new(AtomicU64::new(0)),
        fail: Arc::new(fail),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind proxy");
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (requests, injected) = (ctx.requests.clone(), ctx.injected.clone());
    let app = axum::Router::new().fallback(forward).with_state(ctx);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
    });
    FlakyProxy {
        url,
        requests,
        injected,
        shutdown: Some(tx),
    }
}

async fn forward(
    State(ctx): State<Ctx>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let n = ctx.requests.fetch_add(1, Ordering::SeqCst) + 1;
    if (ctx.fail)(n) {
        ctx.injected.fetch_add(1, Ordering::SeqCst);
        return Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .header("x-ms-error-code", "ServerBusy")
            .header("content-type", "application/xml")
            .body(Body::from(
                "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>ServerBusy</Code><Message>The server is busy (injected by the test proxy).</Message></Error>",
            ))
            .unwrap();
    }
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut req = ctx
        .http
        .request(method.clone(), format!("{}{path}", ctx.upstream));
    for (k, v) in &headers {
        if !matches!(
            k.as_str(),
            "host" | "content-length" | "connection" | "transfer-encoding"
        ) {
            req = req.header(k, v);
        }
    }
    let resp = match req.body(body).send().await {
        Ok(r) => r,
        Err(e) => {
            return Response::builder()
                .status(StatusCode::BAD_GATEWAY)
                .body(Body::from(format!("proxy: {e}")))
                .unwrap();
        }
    };
    let mut out = Response::builder().status(resp.status().as_u16());
    for (k, v) in resp.headers() {
        if !matches!(k.as_str(), "connection" | "transfer-encoding") {
            out = out.header(k, v);
        }
    }
    let bytes = resp.bytes().await.unwrap_or_default();
    out.body(Body::from(bytes)).unwrap()
}
