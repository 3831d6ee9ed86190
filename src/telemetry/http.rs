//! A span per API request (`/api/...`): kind SERVER, named by the matched route, continuing an
//! incoming `traceparent` header, with the response status recorded. Application Insights shows it
//! as a `requests` row; a job submitted inside it stores its context, so the submit request is the
//! root of the job's trace.
//!
//! Trigger routes (`/jobs-queue-trigger`, ...) are left alone: the handler opens an invocation
//! span there, parented by the message's `traceparent` instead.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;
use tracing::field::Empty;

use super::trace_context::{TRACEPARENT, continue_trace};

/// Middleware: wraps each `/api/...` request in a SERVER span (use with
/// `axum::middleware::from_fn(trace_request)`).
pub async fn trace_request(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if !path.starts_with("/api/") {
        return next.run(req).await;
    }
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| path.chars().take(200).collect());
    let method = req.method().as_str().to_string();
    let span = tracing::info_span!(
        "http_request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        http.route = %route,
        url.path = %path.chars().take(500).collect::<String>(),
        http.response.status_code = Empty,
    );
    let incoming = req
        .headers()
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    continue_trace(&span, incoming.as_deref());
    let resp = next.run(req).instrument(span.clone()).await;
    let status = resp.status().as_u16();
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
    resp
}
