//! One error envelope for every 4xx/5xx: `{error, message, details[], request_id, timestamp}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An API error.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code (`validation_error`, `not_found`, ...).
    pub error: &'static str,
    /// Human message.
    pub message: String,
    /// Field-level details.
    pub details: Vec<Value>,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            error,
            message: message.into(),
            details: Vec::new(),
        }
    }
    /// 400.
    pub fn bad_request(error: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, message)
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    /// 503 (the database is unreachable).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            message,
        )
    }
    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
    }
    /// Adds details.
    pub fn with_details(mut self, details: Vec<Value>) -> Self {
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
        let body = json!({
            "error": self.error,
            "message": self.message,
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
