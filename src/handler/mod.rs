//! The custom-handler adapter: one POST route per queue- or timer-triggered function folder
//! (`/jobs-queue-trigger`, `/tasks-queue-trigger`, `/poison-queue-trigger`,
//! `/janitor-timer-trigger`), and `GET /` for the host's readiness probe.
//!
//! A route answers 200 with `{"Outputs": {}, "Logs": [...], "ReturnValue": null}` when the
//! message is done (processed, a recognised duplicate, or recorded as bad), and 503 only when the
//! host must abandon it so it is delivered again (the database could not record anything, or the
//! schema is not ready yet: `{"error": "not_ready", "cause": ...}`). A batched invocation
//! (`"cardinality": "many"`) is answered once for all its messages: 200 when every outcome is
//! recorded, 503 when one is not.

pub mod invocation;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use tracing::Instrument;

use crate::engine::{BatchMessage, Engine, EngineError, Handled};
use crate::telemetry::checkpoints as cp;
use crate::telemetry::trace_context;
use invocation::{QueueInvocation, decode_queue_invocations, response_body};

/// Which engine entry point a function folder maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Jobs,
    Tasks,
    Poison,
}

/// The trigger routes.
pub fn router(engine: Engine) -> Router {
    Router::new()
        .route("/", get(|| async { "CoreMachine custom handler" }))
        .route(
            "/jobs-queue-trigger",
            post(|s, h, b| invoke(s, h, b, "jobs-queue-trigger", Kind::Jobs)),
        )
        .route(
            "/tasks-queue-trigger",
            post(|s, h, b| invoke(s, h, b, "tasks-queue-trigger", Kind::Tasks)),
        )
        .route(
            "/poison-queue-trigger",
            post(|s, h, b| invoke(s, h, b, "poison-queue-trigger", Kind::Poison)),
        )
        .route("/janitor-timer-trigger", post(janitor))
        .with_state(engine)
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// An invocation body read up to the trigger routes' limit.
enum ReadBody {
    /// The whole body.
    Whole(Bytes),
    /// Larger than the limit: its size so far and its first bytes (for the failure record).
    TooLarge { read: usize, head: Vec<u8> },
}

/// Reads an invocation up to `limit` bytes (the HTTP API keeps its own, smaller limits).
async fn read_limited(body: Body, limit: usize) -> Result<ReadBody, axum::Error> {
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if buf.len() + chunk.len() > limit {
            let read = buf.len() + chunk.len();
            buf.truncate(TOO_LARGE_HEAD);
            return Ok(ReadBody::TooLarge { read, head: buf });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(ReadBody::Whole(Bytes::from(buf)))
}

/// Bytes of a too-large invocation kept for its failure record.
const TOO_LARGE_HEAD: usize = 4096;

/// Records an invocation larger than the limit and acknowledges it: redelivering it could only
/// fail again, until the poison queue, where it would fail once more.
async fn too_large(
    engine: &Engine,
    function: &str,
    invocation_id: Option<String>,
    read: usize,
    head: &[u8],
) -> Response {
    let limit = engine.settings().trigger_max_body_bytes;
    let error = format!(
        "invocation is larger than {limit} bytes (at least {read} read; TRIGGER_MAX_BODY_BYTES): not processed"
    );
    let d = crate::engine::Delivery {
        function: function.to_string(),
        invocation_id,
        ..Default::default()
    };
    let text = String::from_utf8_lossy(head);
    match engine
        .record_message_failure(&d, None, None, "too_large", &error, &text)
        .await
    {
        Ok(_) => {
            cp::emit_warn(
                cp::MESSAGE_TOO_LARGE,
                &cp::Fields::default()
                    .invocation(d.invocation_id.as_deref())
                    .extra("function", function)
                    .extra("bytes_read", read)
                    .extra("limit", limit),
            );
            json_response(
                StatusCode::OK,
                response_body(&[format!("{function}: {error}; recorded and acknowledged")]),
            )
        }
        Err(e) => settle(function, &None, Err(EngineError::Store(e))),
    }
}

async fn invoke(
    State(engine): State<Engine>,
    headers: HeaderMap,
    body: Body,
    function: &'static str,
    kind: Kind,
) -> Response {
    if let Some(cause) = engine.readiness().public_cause() {
        return not_ready(function, &cause);
    }
    let invocation_id = headers
        .get("x-azure-functions-invocationid")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match read_limited(body, engine.settings().trigger_max_body_bytes).await {
        Ok(ReadBody::Whole(b)) => b,
        Ok(ReadBody::TooLarge { read, head }) => {
            return too_large(&engine, function, invocation_id, read, &head).await;
        }
        // The host broke the request off: nothing was read, so it must deliver it again.
        Err(e) => {
            return json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"Outputs": {}, "Logs": [format!("{function}: reading the invocation failed: {e}; message will be redelivered")], "ReturnValue": null, "error": "body_read_failed"}),
            );
        }
    };
    let mut invs = decode_queue_invocations(function, &body, invocation_id.clone());
    let header_tp = headers.get("traceparent").and_then(|v| v.to_str().ok());
    if invs.len() == 1
        && let Some(inv) = invs.pop()
    {
        let message_id = inv.delivery.message_id.clone();
        let result = handle_one(&engine, function, kind, inv, header_tp).await;
        return settle(function, &message_id, result);
    }
    // A batch (`cardinality: many`): the host completes or abandons it as a whole, so every
    // message's outcome is committed before the answer. A task that fails has recorded its own
    // retry or failure (an Ok here); only a message whose outcome could not be recorded makes
    // the answer non-2xx, and the copies delivered again are then recognised by the guards.
    let total = invs.len();
    if kind == Kind::Tasks {
        return task_batch(&engine, function, invs, header_tp).await;
    }
    let limit = engine.settings().trigger_batch_concurrency.max(1);
    let results: Vec<(Option<String>, Result<Handled, EngineError>)> =
        futures::stream::iter(invs.into_iter().map(|inv| {
            let engine = &engine;
            async move {
                let message_id = inv.delivery.message_id.clone();
                (
                    message_id,
                    handle_one(engine, function, kind, inv, header_tp).await,
                )
            }
        }))
        .buffer_unordered(limit)
        .collect()
        .await;
    settle_batch(function, total, results)
}

/// A batch of task messages: claimed, run and completed as a batch by the engine
/// (engine/task_batch.rs), each message in its own span; answered as [`settle_batch`] says.
async fn task_batch(
    engine: &Engine,
    function: &'static str,
    invs: Vec<QueueInvocation>,
    header_tp: Option<&str>,
) -> Response {
    let total = invs.len();
    let msgs: Vec<BatchMessage> = invs
        .into_iter()
        .map(|inv| {
            let span = invocation_span(function, &inv, header_tp);
            BatchMessage {
                body: inv.body,
                delivery: inv.delivery,
                span,
            }
        })
        .collect();
    let results = engine.on_task_batch(&msgs).await;
    let results = msgs
        .into_iter()
        .zip(results)
        .map(|(m, r)| {
            if r.is_err() {
                m.span.record("otel.status_code", "ERROR");
            }
            (m.delivery.message_id, r)
        })
        .collect();
    settle_batch(function, total, results)
}

/// A message's invocation span, which continues the trace the message carries (one trace per
/// job; else the host's header).
fn invocation_span(
    function: &'static str,
    inv: &QueueInvocation,
    header_tp: Option<&str>,
) -> tracing::Span {
    let prop = |k: &str| inv.delivery.properties.get(k).and_then(|v| v.as_str());
    let traceparent = prop(trace_context::TRACEPARENT).or(header_tp);
    let span = tracing::info_span!(
        "invocation",
        otel.name = function,
        otel.kind = "consumer",
        otel.status_code = tracing::field::Empty,
        function,
        invocation_id = inv.delivery.invocation_id.as_deref().unwrap_or(""),
        message_id = inv.delivery.message_id.as_deref().unwrap_or(""),
        delivery_count = inv.delivery.delivery_count.unwrap_or(0),
        job_id = prop("job_id"),
        task_id = prop("task_id"),
        trace_id = traceparent.and_then(trace_context::trace_id_of),
    );
    trace_context::continue_trace(&span, traceparent);
    span
}

/// Runs one message through the engine inside its own invocation span.
async fn handle_one(
    engine: &Engine,
    function: &'static str,
    kind: Kind,
    inv: QueueInvocation,
    header_tp: Option<&str>,
) -> Result<Handled, EngineError> {
    let span = invocation_span(function, &inv, header_tp);
    let result = async {
        match kind {
            Kind::Jobs => engine.on_job_message(&inv.body, &inv.delivery).await,
            Kind::Tasks => engine.on_task_message(&inv.body, &inv.delivery).await,
            Kind::Poison => engine
                .on_poison_message(&inv.body, &inv.delivery)
                .await
                .map(|(h, _)| h),
        }
    }
    .instrument(span.clone())
    .await;
    if result.is_err() {
        span.record("otel.status_code", "ERROR");
    }
    result
}

/// The answer to a batch: 200 with every message's log lines when every outcome was recorded,
/// else 503 naming the messages that were not (each also an INVOCATION_FAILED checkpoint).
fn settle_batch(
    function: &str,
    total: usize,
    results: Vec<(Option<String>, Result<Handled, EngineError>)>,
) -> Response {
    let mut logs = vec![format!("{function}: batch of {total} message(s)")];
    let mut unrecorded = Vec::new();
    for (message_id, result) in results {
        let id = message_id.as_deref().unwrap_or("(no MessageId)");
        match result {
            Ok(h) => logs.extend(h.logs),
            Err(e) => {
                cp::emit_error(
                    cp::INVOCATION_FAILED,
                    &cp::Fields::default()
                        .extra("function", function)
                        .extra("message_id", id)
                        .extra("batch_size", total),
                    "InvocationFailed",
                    &e,
                );
                logs.push(format!("{function}: message {id}: {e}"));
                unrecorded.push(id.to_string());
            }
        }
    }
    if unrecorded.is_empty() {
        return json_response(StatusCode::OK, response_body(&logs));
    }
    let error = format!(
        "{} of {total} message(s) of the batch could not be recorded ({}); the host delivers the whole batch again, and the messages already done are recognised as duplicates",
        unrecorded.len(),
        unrecorded.join(", ")
    );
    logs.push(format!("{function}: {error}"));
    json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        serde_json::json!({"Outputs": {}, "Logs": logs, "ReturnValue": null, "error": error, "unrecorded": unrecorded}),
    )
}

fn settle(
    function: &str,
    message_id: &Option<String>,
    result: Result<Handled, EngineError>,
) -> Response {
    match result {
        Ok(h) => json_response(StatusCode::OK, response_body(&h.logs)),
        Err(e) => {
            cp::emit_error(
                cp::INVOCATION_FAILED,
                &cp::Fields::default()
                    .extra("function", function)
                    .extra("message_id", message_id.as_deref().unwrap_or("")),
                "InvocationFailed",
                &e,
            );
            // Non-2xx: the host abandons the message and it is delivered again.
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"Outputs": {}, "Logs": [format!("{function}: {e}; message will be redelivered")], "ReturnValue": null, "error": e.to_string()}),
            )
        }
    }
}

/// 503 while the schema is not ready: the host abandons the message (it is delivered again
/// later) instead of completing it, and the body names the cause.
fn not_ready(function: &str, cause: &str) -> Response {
    json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        serde_json::json!({
            "Outputs": {}, "Logs": [format!("{function}: not ready ({cause}); message will be redelivered")],
            "ReturnValue": null, "error": "not_ready", "cause": cause,
        }),
    )
}

async fn janitor(State(engine): State<Engine>) -> Response {
    if let Some(cause) = engine.readiness().public_cause() {
        return not_ready("janitor-timer-trigger", &cause);
    }
    // One trace per janitor run: its checkpoints share the run's operation_Id.
    let span = tracing::info_span!(
        "invocation",
        otel.name = "janitor-timer-trigger",
        otel.kind = "consumer",
        function = "janitor-timer-trigger"
    );
    match crate::janitor::run_once(&engine).instrument(span).await {
        Ok(report) => json_response(
            StatusCode::OK,
            response_body(&[format!(
                "janitor run {}: found {}, fixed {}",
                report.run_id, report.found, report.fixed
            )]),
        ),
        Err(e) => settle("janitor-timer-trigger", &None, Err(EngineError::Store(e))),
    }
}
