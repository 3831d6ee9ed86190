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

use opentelemetry::trace::TraceContextExt as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::trace_context::{
    TRACEPARENT, continue_trace, generate_traceparent, parse_traceparent, trace_id_of,
};

/// Middleware: wraps each `/api/...` request in a SERVER span (use with
/// `axum::middleware::from_fn(trace_request)`).
pub(crate) async fn trace_request(mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if !path.starts_with("/api/") {
        return next.run(req).await;
    }
    // The request id of log lines: the host's invocation id, else a client's request id, else a
    // new one.
    let request_id = [
        "x-azure-functions-invocationid",
        "x-ms-request-id",
        "x-request-id",
    ]
    .iter()
    .find_map(|h| req.headers().get(*h).and_then(|v| v.to_str().ok()))
    .map(|v| v.chars().take(100).collect::<String>())
    .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let incoming = req
        .headers()
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .filter(|v| parse_traceparent(v).is_some())
        .map(str::to_string);
    // Without a valid incoming trace context one is made here, and handed on as if the client
    // had sent it, so a job submitted by this request is stored with the trace id its log lines
    // show (with an exporter, the SERVER span's own context wins: trace_context::for_new_job).
    let generated = incoming.is_none().then(generate_traceparent);
    if let Some(tp) = &generated
        && let Ok(v) = axum::http::HeaderValue::from_str(tp)
    {
        req.headers_mut().insert(TRACEPARENT, v);
    }
    let path = req.uri().path();
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
        request_id = %request_id,
        trace_id = Empty,
    );
    continue_trace(&span, incoming.as_deref());
    let trace_id = {
        let cx = span.context();
        let sc = cx.span().span_context().clone();
        if sc.is_valid() {
            Some(sc.trace_id().to_string())
        } else {
            incoming.or(generated).as_deref().and_then(trace_id_of)
        }
    };
    if let Some(t) = &trace_id {
        span.record("trace_id", t.as_str());
    }
    let resp = next.run(req).instrument(span.clone()).await;
    let status = resp.status().as_u16();
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
    resp
}
