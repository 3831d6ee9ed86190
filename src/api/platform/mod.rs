//! The earlier system's front door for the data platform's client (DDH):
//! `POST /api/platform/submit` takes a dataset / resource / version and files, picks the job from
//! the file extension ([`request`]), and submits it through the engine's own submit, with the
//! request's row (`app.platform_requests`) written in the job's creating transaction;
//! `GET /api/platform/status/{request_id}` and `GET /api/platform/status` (paged) report a
//! request with its job, in the earlier shapes.

pub(crate) mod request;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_postgres::error::SqlState;

use super::cursor;
use super::error::{ApiError, ErrorEnvelope, detail, echo};
use super::input::{PathParams, QueryParams, SchemaBody};
use super::submit::header_str;
use crate::engine::{Engine, SubmitError, SubmitRecord};
use crate::jobs::FieldError;
use crate::model::JobId;
use crate::store::platform_requests::{self, NewPlatformRequest, PlatformRequestView};
use crate::store::{self, Guarded, StoreError, Transaction};
use request::{Outputs, Plan, PlatformRequest, Refusal};

/// Where to follow a request and its job.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct RequestUrls {
    /// This request's status (`GET /api/platform/status/{request_id}`).
    pub request_status: String,
    /// The job's status, earlier shape.
    pub job_status: String,
    /// The job's tasks, earlier route.
    pub job_tasks: String,
    /// The job's page in the web UI.
    pub job_page: String,
    /// This request's page in the web UI (links to its job's).
    pub request_page: String,
}

impl RequestUrls {
    fn new(request_id: &str, job_id: &str) -> Self {
        Self {
            request_status: format!("/api/platform/status/{request_id}"),
            job_status: format!("/api/jobs/status/{job_id}"),
            job_tasks: format!("/api/dbadmin/tasks/{job_id}"),
            job_page: format!("/api/ui/jobs/{job_id}"),
            request_page: format!("/api/ui/requests/{request_id}"),
        }
    }
}

/// The submit response: the earlier `{success, request_id, job_id, job_type, message,
/// monitor_url}` plus what was derived.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct PlatformSubmitResponse {
    /// Always true.
    pub success: bool,
    /// `sha256(dataset_id|resource_id|version_id)`, first 32 hex.
    pub request_id: String,
    /// The job.
    pub job_id: String,
    /// The job's type (`process_raster`, `process_raster_collection`, `ingest_vector`).
    pub job_type: String,
    /// `raster` or `vector`.
    pub data_type: String,
    /// The job's current status.
    pub job_status: String,
    /// Whether the request existed already (200).
    pub idempotent: bool,
    /// What happened.
    pub message: String,
    /// Where to poll (`GET /api/platform/status/{request_id}`).
    pub monitor_url: String,
    /// Table, folder, collection and item names derived from dataset / resource / version.
    pub outputs: Outputs,
    /// `processing_options` keys the job does not take (ignored). Empty for a repeat.
    pub ignored_processing_options: Vec<String>,
    /// Links.
    pub urls: RequestUrls,
}

/// A request with its job, the earlier status shape plus the request's own fields.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct PlatformStatus {
    /// Always true.
    pub success: bool,
    /// Request id.
    pub request_id: String,
    /// DDH dataset id.
    pub dataset_id: String,
    /// DDH resource id.
    pub resource_id: String,
    /// DDH version id.
    pub version_id: String,
    /// `raster` or `vector`.
    pub data_type: String,
    /// Client.
    pub client_id: String,
    /// When the request was recorded.
    pub created_at: DateTime<Utc>,
    /// The job.
    pub job_id: String,
    /// Job type.
    pub job_type: String,
    /// The job's status.
    pub job_status: String,
    /// The job's current stage.
    pub job_stage: i32,
    /// The job's number of stages.
    pub total_stages: i32,
    /// The job's result (when finished).
    pub job_result: Option<Value>,
    /// The job's error (when it failed).
    pub error_details: Option<String>,
    /// The job's last change.
    pub updated_at: DateTime<Utc>,
    /// When the job finished.
    pub completed_at: Option<DateTime<Utc>>,
    /// The request as accepted (defaults applied).
    pub request: Value,
    /// Derived names.
    pub outputs: Value,
    /// Links.
    pub urls: RequestUrls,
}

impl From<PlatformRequestView> for PlatformStatus {
    fn from(r: PlatformRequestView) -> Self {
        Self {
            success: true,
            urls: RequestUrls::new(&r.request_id, r.job_id.as_str()),
            request_id: r.request_id,
            dataset_id: r.dataset_id,
            resource_id: r.resource_id,
            version_id: r.version_id,
            data_type: r.data_type,
            client_id: r.client_id,
            created_at: r.created_at,
            job_id: r.job_id.to_string(),
            job_type: r.job_type,
            job_status: r.job_status.as_str().into(),
            job_stage: r.stage,
            total_stages: r.total_stages,
            job_result: r.result_data,
            error_details: r.error_details,
            updated_at: r.updated_at,
            completed_at: r.completed_at,
            request: r.request,
            outputs: r.outputs,
        }
    }
}

/// A page of requests, the earlier `{success, count, requests}` plus the keyset cursor.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct PlatformStatusPage {
    /// Always true.
    pub success: bool,
    /// Requests on this page.
    pub count: usize,
    /// Newest first.
    pub requests: Vec<PlatformStatus>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
    /// Page size.
    pub limit: i64,
}

/// Why the request's row could not be written with its job.
#[derive(Debug, thiserror::Error)]
enum RecordError {
    #[error(transparent)]
    Submit(#[from] SubmitError),
    /// The request was recorded by a concurrent repeat.
    #[error("the request exists already")]
    Exists,
    /// Another request owns the same outputs.
    #[error("the outputs belong to request {0}")]
    OutputsTaken(String),
}

impl From<StoreError> for RecordError {
    fn from(e: StoreError) -> Self {
        Self::Submit(SubmitError::Store(e))
    }
}

/// The request's row, written in the submit's transaction.
struct RequestRow<'a> {
    request_id: &'a str,
    req: &'a PlatformRequest,
    plan: &'a Plan,
}

impl SubmitRecord for RequestRow<'_> {
    type Error = RecordError;

    async fn write(
        &self,
        tx: &Transaction<'_>,
        job_id: &JobId,
        _created: bool,
    ) -> Result<(), RecordError> {
        let item = &self.plan.outputs.item_id;
        platform_requests::lock_item(tx, item).await?;
        if let Some(owner) = platform_requests::output_owner(tx, item, self.request_id).await? {
            return Err(RecordError::OutputsTaken(owner));
        }
        let outputs = serde_json::to_value(&self.plan.outputs).unwrap_or_default();
        let new = NewPlatformRequest {
            request_id: self.request_id,
            dataset_id: &self.req.dataset_id,
            resource_id: &self.req.resource_id,
            version_id: &self.req.version_id,
            job_id,
            job_type: self.plan.job_type,
            data_type: self.plan.data_type.as_str(),
            client_id: &self.req.client_id,
            request: &self.req.body,
            outputs: &outputs,
        };
        match platform_requests::insert(tx, &new).await {
            Ok(Guarded::Applied(())) => Ok(()),
            Ok(Guarded::NotApplied(())) => Err(RecordError::Exists),
            // A writer that bypassed the lock: the handler tells a repeat from a collision.
            Err(e) if e.sqlstate() == Some(SqlState::UNIQUE_VIOLATION.code()) => {
                Err(RecordError::OutputsTaken("(committed concurrently)".into()))
            }
            Err(e) => Err(e.into()),
        }
    }
}

fn field_errors(error: &'static str, message: String, errors: &[FieldError]) -> ApiError {
    ApiError::bad_request(error, message).with_details(
        errors
            .iter()
            .map(|e| serde_json::to_value(e).unwrap_or_default())
            .collect(),
    )
}

fn invalid(errors: &[FieldError]) -> ApiError {
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    field_errors(
        "validation_error",
        format!(
            "{} field error(s) in the platform request: {}",
            errors.len(),
            fields.join(", ")
        ),
        errors,
    )
}

fn refusal(r: Refusal) -> ApiError {
    match r {
        Refusal::Invalid(errors) => invalid(&errors),
        Refusal::NotImplemented {
            field,
            value,
            message,
        } => ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented",
            message.clone(),
        )
        .with_details(vec![detail(
            field,
            "not_implemented",
            echo(&value),
            message,
        )]),
    }
}

async fn read(engine: &Engine, request_id: &str) -> Result<Option<PlatformStatus>, ApiError> {
    let client = store::client(engine.pool(), "reading a platform request").await?;
    Ok(platform_requests::get(&client, request_id)
        .await?
        .map(PlatformStatus::from))
}

fn repeat(s: PlatformStatus) -> Response {
    let outputs = serde_json::from_value(s.outputs.clone())
        .unwrap_or_else(|_| request::outputs(&s.dataset_id, &s.resource_id, &s.version_id));
    let body = PlatformSubmitResponse {
        success: true,
        message: format!(
            "Request already submitted (idempotent): job {} is {}",
            s.job_id, s.job_status
        ),
        monitor_url: s.urls.request_status.clone(),
        request_id: s.request_id,
        job_id: s.job_id,
        job_type: s.job_type,
        data_type: s.data_type,
        job_status: s.job_status,
        idempotent: true,
        outputs,
        ignored_processing_options: Vec::new(),
        urls: s.urls,
    };
    (StatusCode::OK, Json(body)).into_response()
}

/// Submits a platform request: the job comes from the file extension.
#[utoipa::path(
    post, path = "/api/platform/submit", tag = "platform", operation_id = "platform_submit",
    params(
        ("x-correlation-id" = Option<String>, Header, description = "Correlation id to record (first 64 characters)"),
    ),
    request_body(content = Object, description = "The earlier DDH body: dataset_id (<= 255), resource_id (<= 255), version_id (<= 50): ASCII letters, digits, space, '-', '_', '.'; operation CREATE (UPDATE/DELETE: 501); container_name; file_name (a blob name or a list); service_name, access_level (public, OUO, restricted), description, tags, processing_options (passed to the job where it takes them), client_id", content_type = "application/json",
        example = json!({"dataset_id": "aerial-imagery-2024", "resource_id": "site-alpha", "version_id": "v1.0", "operation": "CREATE", "container_name": "bronze-rasters", "file_name": "aerial-alpha.tif", "service_name": "Aerial Imagery Site Alpha", "access_level": "OUO"})),
    responses(
        (status = 202, description = "Request recorded, its job created and queued", body = PlatformSubmitResponse),
        (status = 200, description = "The request existed already (idempotent: the same dataset, resource and version)", body = PlatformSubmitResponse),
        (status = 400, description = "Invalid fields (details name each)", body = ErrorEnvelope),
        (status = 401, description = "Missing or wrong function key", body = ErrorEnvelope),
        (status = 409, description = "Another request already writes the same table / item (ids that differ only in case or separators)", body = ErrorEnvelope),
        (status = 413, description = "Body larger than 64 KB", body = ErrorEnvelope),
        (status = 415, description = "Body is not JSON", body = ErrorEnvelope),
        (status = 501, description = "UPDATE/DELETE, or a file type that is not processed (named)", body = ErrorEnvelope),
        (status = 503, description = "Database unavailable", body = ErrorEnvelope),
    ),
    security(("function_key" = []), ("function_code" = []))
)]
pub(crate) async fn submit(
    State(engine): State<Engine>,
    q: QueryParams,
    headers: HeaderMap,
    SchemaBody(body): SchemaBody,
) -> Result<Response, ApiError> {
    q.only(&[])?;
    let req = request::parse(&body).map_err(|e| invalid(&e))?;
    let request_id = request::request_id(&req.dataset_id, &req.resource_id, &req.version_id);
    if let Some(existing) = read(&engine, &request_id).await? {
        return Ok(repeat(existing));
    }
    let plan = request::plan(&req, |job_type| {
        engine.registry().job(job_type).map(|j| j.parameters())
    })
    .map_err(refusal)?;
    let row = RequestRow {
        request_id: &request_id,
        req: &req,
        plan: &plan,
    };
    let params = Value::Object(plan.parameters.clone());
    let submitted = engine
        .submit_recorded(
            plan.job_type,
            &params,
            header_str(&headers, "x-correlation-id"),
            header_str(&headers, "traceparent"),
            &row,
        )
        .await;
    match submitted {
        Ok(s) => {
            tracing::info!(
                request_id = %request_id, job_id = %s.job_id, job_type = %s.job_type,
                "platform request recorded with its job"
            );
            let urls = RequestUrls::new(&request_id, &s.job_id);
            let ignored = &plan.ignored_options;
            let body = PlatformSubmitResponse {
                success: true,
                message: if ignored.is_empty() {
                    "Platform request submitted. CoreMachine job created.".into()
                } else {
                    format!(
                        "Platform request submitted. CoreMachine job created. processing_options not taken by {} (ignored): {}",
                        s.job_type,
                        ignored.join(", ")
                    )
                },
                monitor_url: urls.request_status.clone(),
                request_id,
                job_id: s.job_id,
                job_type: s.job_type,
                data_type: plan.data_type.as_str().into(),
                job_status: s.status,
                idempotent: false,
                outputs: plan.outputs.clone(),
                ignored_processing_options: plan.ignored_options.clone(),
                urls,
            };
            Ok((StatusCode::ACCEPTED, Json(body)).into_response())
        }
        Err(RecordError::Exists) => {
            read(&engine, &request_id)
                .await?
                .map(repeat)
                .ok_or_else(|| {
                    ApiError::internal(
                        "the platform request vanished after a concurrent repeat recorded it",
                    )
                })
        }
        Err(RecordError::OutputsTaken(owner)) => {
            if let Some(existing) = read(&engine, &request_id).await? {
                return Ok(repeat(existing));
            }
            Err(ApiError::conflict(format!(
            "request {owner} already writes table {} / item {}: dataset_id, resource_id and version_id that differ only in case or separators name the same outputs",
            plan.outputs.table_name, plan.outputs.item_id
        ))
        .with_details(vec![detail(
            "dataset_id",
            "unique_outputs",
            echo(&req.dataset_id),
            format!("the outputs of this dataset/resource/version belong to request {owner}"),
        )]))
        }
        Err(RecordError::Submit(SubmitError::UnknownJobType { job_type, .. })) => {
            Err(refusal(Refusal::NotImplemented {
                field: "file_name",
                value: job_type.clone(),
                message: format!("the job type {job_type} is not available in this deployment"),
            }))
        }
        Err(RecordError::Submit(SubmitError::Invalid { job_type, errors })) => {
            let errors: Vec<FieldError> = errors
                .into_iter()
                .map(|e| FieldError {
                    field: request::request_field(&e.field),
                    ..e
                })
                .collect();
            Err(field_errors(
                "validation_error",
                format!(
                    "{} field error(s) in the {job_type} job this request maps to: {}",
                    errors.len(),
                    errors
                        .iter()
                        .map(|e| e.field.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                &errors,
            ))
        }
        Err(RecordError::Submit(SubmitError::Store(e))) => Err(e.into()),
    }
}

/// A request id path segment: 32 lowercase hex.
fn request_id_param(p: &PathParams) -> Result<String, ApiError> {
    let raw = p.get("request_id");
    if raw.len() == 32 && raw.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(raw.to_ascii_lowercase())
    } else {
        Err(ApiError::field(
            "invalid_request_id",
            "path.request_id",
            "pattern ^[0-9a-f]{32}$",
            echo(&raw.replace('\0', "\\u0000")),
            "a request id is 32 hex characters (the request_id of POST /api/platform/submit)",
        ))
    }
}

/// A platform request with its job's status, stage and result.
#[utoipa::path(
    get, path = "/api/platform/status/{request_id}", tag = "platform", operation_id = "platform_status",
    params(("request_id" = String, Path, description = "Request id (32 hex)", pattern = "^[0-9a-fA-F]{32}$")),
    responses(
        (status = 200, description = "The request and its job", body = PlatformStatus),
        (status = 400, description = "request_id is not 32 hex", body = ErrorEnvelope),
        (status = 401, description = "Missing or wrong function key", body = ErrorEnvelope),
        (status = 404, description = "No such request", body = ErrorEnvelope),
        (status = 503, description = "Database unavailable", body = ErrorEnvelope),
    ),
    security(("function_key" = []), ("function_code" = []))
)]
pub(crate) async fn status(
    State(engine): State<Engine>,
    p: PathParams,
    q: QueryParams,
) -> Result<Json<PlatformStatus>, ApiError> {
    let request_id = request_id_param(&p)?;
    q.only(&[])?;
    read(&engine, &request_id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no platform request {request_id}")))
}

/// The keyset cursor of a request list row.
fn cursor_of(created: DateTime<Utc>, request_id: &str) -> String {
    cursor::time_cursor(created, request_id)
}

/// Reads a cursor made by [`cursor_of`] (its request id: 32 hex, kept as it is).
fn parse_cursor(raw: &str) -> Result<(DateTime<Utc>, String), ApiError> {
    cursor::parse_time_cursor(raw, |id| {
        (id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit())).then(|| id.to_string())
    })
}

/// Platform requests with their jobs, newest first (keyset pages).
#[utoipa::path(
    get, path = "/api/platform/status", tag = "platform", operation_id = "platform_status_list",
    params(
        ("dataset_id" = Option<String>, Query, description = "Only this dataset's requests", max_length = 255),
        ("limit" = Option<i64>, Query, description = "Page size (default 50)", minimum = 1, maximum = 1000),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page", max_length = 200),
    ),
    responses(
        (status = 200, description = "A page of requests", body = PlatformStatusPage),
        (status = 400, description = "Invalid query", body = ErrorEnvelope),
        (status = 401, description = "Missing or wrong function key", body = ErrorEnvelope),
        (status = 503, description = "Database unavailable", body = ErrorEnvelope),
    ),
    security(("function_key" = []), ("function_code" = []))
)]
pub(crate) async fn status_list(
    State(engine): State<Engine>,
    q: QueryParams,
) -> Result<Json<PlatformStatusPage>, ApiError> {
    q.only(&["dataset_id", "limit", "cursor"])?;
    let dataset = q.text("dataset_id", 255)?;
    let limit = q.int("limit", 1, 1000)?.unwrap_or(50);
    let after = q
        .text("cursor", 200)?
        .map(|c| parse_cursor(&c))
        .transpose()?;
    let client = store::client(engine.pool(), "listing platform requests").await?;
    let mut requests: Vec<PlatformStatus> =
        platform_requests::list(&client, dataset.as_deref(), after, limit + 1)
            .await?
            .into_iter()
            .map(PlatformStatus::from)
            .collect();
    let next_cursor = if requests.len() as i64 > limit {
        requests.truncate(limit as usize);
        requests
            .last()
            .map(|r| cursor_of(r.created_at, &r.request_id))
    } else {
        None
    };
    Ok(Json(PlatformStatusPage {
        success: true,
        count: requests.len(),
        requests,
        next_cursor,
        limit,
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn cursors_round_trip_and_foreign_ones_are_400() {
        let at = chrono::DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            super::parse_cursor(&super::cursor_of(at, id)).unwrap(),
            (at, id.to_string())
        );
        assert!(super::parse_cursor("bm9wZQ").is_err());
        assert_eq!(super::parse_cursor("x").unwrap_err().status, 400);
    }
}
