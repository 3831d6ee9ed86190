//! One error envelope for every 4xx/5xx: `{error, message, details[], request_id, timestamp}`.
//!
//! Handlers return [`ApiError`]; [`envelope_layer`] also rewrites whatever axum or a panic would
//! have answered in plain text (405, a rejected extractor, a caught panic) into the same envelope,
//! so a client never has to parse two error formats.

use std::panic::AssertUnwindSafe;

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use serde_json::{Value, json};

/// An API error.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code (`validation_error`, `not_found`, ...).
    pub error: &'static str,
    /// Human message.
    pub message: String,
    /// Field-level details.
    pub details: Vec<Value>,
}

/// The error body of every 4xx/5xx response (documented in the OpenAPI document).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorEnvelope {
    /// Machine-readable code: `validation_error`, `invalid_job_id`, `not_found`, `conflict`,
    /// `unauthorized`, `forbidden`, `payload_too_large`, `unsupported_media_type`, ...
    pub error: String,
    /// What went wrong, in words.
    pub message: String,
    /// One entry per offending field.
    pub details: Vec<FieldDetail>,
    /// Identifier of this response (also in the `x-request-id` header).
    pub request_id: String,
    /// When the error was produced (RFC 3339).
    pub timestamp: String,
}

/// One offending field: which, which rule, and the value received.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct FieldDetail {
    /// Dotted path of the field (`n`, `filter.min_size_mb`, `query.limit`, `path.job_id`, `(body)`).
    pub field: String,
    /// The rule that failed (`required`, `type`, `maximum`, `pattern`, `unknown_field`, ...).
    pub rule: String,
    /// The value received (shortened when long; absent for `required`).
    pub value: Option<Value>,
    /// What is wrong, in words.
    pub message: Option<String>,
}

/// A field detail as JSON (`{field, rule, value, message}`).
pub(crate) fn detail(field: &str, rule: &str, value: Value, message: impl Into<String>) -> Value {
    json!({"field": field, "rule": rule, "value": value, "message": message.into()})
}

/// Shortens a received value before it is echoed back (a 1 MB string is not sent back).
pub(crate) fn echo(s: &str) -> Value {
    if s.len() <= 200 {
        Value::String(s.to_string())
    } else {
        Value::String(format!(
            "{}… ({} bytes)",
            s.chars().take(100).collect::<String>(),
            s.len()
        ))
    }
}

impl ApiError {
    /// A new error.
    pub(crate) fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            error,
            message: message.into(),
            details: Vec::new(),
        }
    }
    /// 400.
    pub(crate) fn bad_request(error: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, message)
    }
    /// 400 about one field.
    pub(crate) fn field(
        error: &'static str,
        field: &str,
        rule: &str,
        value: Value,
        message: impl Into<String>,
    ) -> Self {
        let message = message.into();
        Self::bad_request(error, format!("{field}: {message}"))
            .with_details(vec![detail(field, rule, value, message)])
    }
    /// 404.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    /// 409.
    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }
    /// 401.
    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    /// 403.
    pub(crate) fn forbidden(error: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, error, message)
    }
    /// 503 (the database is unreachable).
    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            message,
        )
    }
    /// 500.
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
    }
    /// Adds details.
    pub(crate) fn with_details(mut self, details: Vec<Value>) -> Self {
        self.details = details;
        self
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "database error in API request");
        if e.is_unavailable() {
            ApiError::unavailable(format!("the database is unavailable: {e}"))
        } else {
            ApiError::internal(format!("database error: {e}"))
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
        // A 501 says what the service does not do for this request (an operation, a file type):
        // the handler's own words, no driver text, so the client keeps them.
        let message = if self.status.is_server_error() && self.status != StatusCode::NOT_IMPLEMENTED
        {
            tracing::warn!(request_id, status = self.status.as_u16(), error = self.error, message = %self.message, "API request failed");
            // The detail (driver text, SQLSTATE, causes) is for the log, not for the client.
            server_error_message(self.status, &request_id)
        } else {
            tracing::debug!(request_id, status = self.status.as_u16(), error = self.error, message = %self.message, "API request refused");
            self.message
        };
        let body = json!({
            "error": self.error,
            "message": message,
            "details": self.details,
            "request_id": request_id,
            "timestamp": chrono::Utc::now().to_rfc3339(),
        });
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Ok(v) = request_id.parse() {
            resp.headers_mut().insert("x-request-id", v);
        }
        resp
    }
}

/// What a 5xx body says: generic, with the request id under which the log has the detail.
fn server_error_message(status: StatusCode, request_id: &str) -> String {
    let what = if status == StatusCode::SERVICE_UNAVAILABLE {
        "the service is unavailable for the moment (its database or a dependency cannot be reached); try again later"
    } else {
        "the request failed inside the service"
    };
    format!("{what}; the service log has the details under request id {request_id}")
}

fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        409 => "conflict",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        422 => "unprocessable_entity",
        503 => "service_unavailable",
        s if s >= 500 => "internal_error",
        _ => "client_error",
    }
}

/// Middleware: any 4xx/5xx that is not already JSON becomes the envelope, and a panic in a
/// handler becomes a 500 envelope instead of a dropped connection.
pub(crate) async fn envelope_layer(req: Request, next: Next) -> Response {
    let path: String = req.uri().path().chars().take(200).collect();
    let method = req.method().clone();
    let started = std::time::Instant::now();
    let resp = match AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into());
            tracing::error!(%method, path, panic = %what, "API handler panicked");
            return ApiError::internal(format!(
                "the request to {method} {path} failed unexpectedly"
            ))
            .into_response();
        }
    };
    let status = resp.status();
    // The path only: a `code` query parameter is a key and must never reach the logs.
    tracing::info!(
        %method,
        path,
        status = status.as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "API request"
    );
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let allow = resp.headers().get(header::ALLOW).cloned();
    let text = axum::body::to_bytes(resp.into_body(), 4096)
        .await
        .map(|b| {
            String::from_utf8_lossy(&b)
                .chars()
                .take(300)
                .collect::<String>()
        })
        .unwrap_or_default();
    let message = match (status.as_u16(), text.is_empty()) {
        (405, _) => format!("{method} is not allowed on {path}"),
        (_, true) => format!(
            "{} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("error")
        ),
        _ => text,
    };
    let mut out = ApiError::new(status, code_for(status), message).into_response();
    if let Some(a) = allow {
        out.headers_mut().insert(header::ALLOW, a);
    }
    out
}
