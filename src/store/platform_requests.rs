//! The platform requests aggregate (`app.platform_requests`, read with its job's state): one
//! function per statement, typed rows.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{Guarded, QueryContext, StoreError, decode, sql};
use crate::model::{JobId, JobStatus};

/// A platform request with its job's state (`platform_request_get.sql`,
/// `platform_requests_list.sql`).
#[derive(Debug, Clone)]
pub(crate) struct PlatformRequestView {
    /// Request id (32 hex).
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
    /// The request as accepted (defaults applied).
    pub request: Value,
    /// The names derived from it.
    pub outputs: Value,
    /// When the request was recorded.
    pub created_at: DateTime<Utc>,
    /// Its job.
    pub job_id: JobId,
    /// The job's type.
    pub job_type: String,
    /// The job's status.
    pub job_status: JobStatus,
    /// The job's current stage.
    pub stage: i32,
    /// The job's number of stages.
    pub total_stages: i32,
    /// The job's result (when finished).
    pub result_data: Option<Value>,
    /// The job's error (when it failed).
    pub error_details: Option<String>,
    /// The job's last change.
    pub updated_at: DateTime<Utc>,
    /// When the job finished.
    pub completed_at: Option<DateTime<Utc>>,
}

impl PlatformRequestView {
    fn from_row(r: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            request_id: r.try_get("request_id")?,
            dataset_id: r.try_get("dataset_id")?,
            resource_id: r.try_get("resource_id")?,
            version_id: r.try_get("version_id")?,
            data_type: r.try_get("data_type")?,
            client_id: r.try_get("client_id")?,
            request: r.try_get("request")?,
            outputs: r.try_get("outputs")?,
            created_at: r.try_get("created_at")?,
            job_id: r.try_get("job_id")?,
            job_type: r.try_get("job_type")?,
            job_status: r.try_get("job_status")?,
            stage: r.try_get("stage")?,
            total_stages: r.try_get("total_stages")?,
            result_data: r.try_get("result_data")?,
            error_details: r.try_get("error_details")?,
            updated_at: r.try_get("updated_at")?,
            completed_at: r.try_get("completed_at")?,
        })
    }
}

/// A new request, written in the transaction that creates (or finds) its job
/// (`platform_request_insert.sql`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewPlatformRequest<'a> {
    /// Request id (32 hex).
    pub request_id: &'a str,
    /// DDH dataset id.
    pub dataset_id: &'a str,
    /// DDH resource id.
    pub resource_id: &'a str,
    /// DDH version id.
    pub version_id: &'a str,
    /// Its job.
    pub job_id: &'a JobId,
    /// The job's type.
    pub job_type: &'a str,
    /// `raster` or `vector`.
    pub data_type: &'a str,
    /// Client.
    pub client_id: &'a str,
    /// The request as accepted.
    pub request: &'a Value,
    /// The names derived from it.
    pub outputs: &'a Value,
}

/// Takes the transaction lock of the requests that write STAC item `item_id`
/// (`platform_request_lock.sql`).
pub(crate) async fn lock_item(c: &impl GenericClient, item_id: &str) -> Result<(), StoreError> {
    c.execute(sql::PLATFORM_REQUEST_LOCK, &[&item_id])
        .await
        .ctx(|| format!("locking the platform requests of item {item_id}"))?;
    Ok(())
}

/// The id of another request than `request_id` that owns the outputs of item `item_id`
/// (`platform_request_output_owner.sql`).
pub(crate) async fn output_owner(
    c: &impl GenericClient,
    item_id: &str,
    request_id: &str,
) -> Result<Option<String>, StoreError> {
    let params: [&(dyn ToSql + Sync); 2] = [&item_id, &request_id];
    let read = |r: &Row| r.try_get("request_id");
    decode::opt(c, sql::PLATFORM_REQUEST_OUTPUT_OWNER, &params, read, || {
        format!("looking for another request owning item {item_id}")
    })
    .await
}

/// Records a new request (`platform_request_insert.sql`): `NotApplied` when the request exists
/// already. A unique violation (another request owns the same outputs, committed without the
/// lock) is a [`StoreError`] with its SQLSTATE.
pub(crate) async fn insert(
    c: &impl GenericClient,
    r: &NewPlatformRequest<'_>,
) -> Result<Guarded<()>, StoreError> {
    let row = c
        .query_opt(
            sql::PLATFORM_REQUEST_INSERT,
            &[
                &r.request_id,
                &r.dataset_id,
                &r.resource_id,
                &r.version_id,
                r.job_id,
                &r.job_type,
                &r.data_type,
                &r.client_id,
                r.request,
                r.outputs,
            ],
        )
        .await
        .ctx(|| {
            format!(
                "recording platform request {} for job {}",
                r.request_id, r.job_id
            )
        })?;
    Ok(match row {
        Some(_) => Guarded::Applied(()),
        None => Guarded::NotApplied(()),
    })
}

/// One request with its job (`platform_request_get.sql`); `None` when there is no such request.
pub(crate) async fn get(
    c: &impl GenericClient,
    request_id: &str,
) -> Result<Option<PlatformRequestView>, StoreError> {
    let read = PlatformRequestView::from_row;
    decode::opt(c, sql::PLATFORM_REQUEST_GET, &[&request_id], read, || {
        format!("reading platform request {request_id}")
    })
    .await
}

/// Requests newest first with their jobs: only `dataset_id`'s when given, after (creation time,
/// request id) of the previous page, at most `limit` (`platform_requests_list.sql`).
pub(crate) async fn list(
    c: &impl GenericClient,
    dataset_id: Option<&str>,
    after: Option<(DateTime<Utc>, String)>,
    limit: i64,
) -> Result<Vec<PlatformRequestView>, StoreError> {
    let (at, id) = after.unzip();
    let params: [&(dyn ToSql + Sync); 4] = [&dataset_id, &at, &id, &limit];
    let read = PlatformRequestView::from_row;
    decode::all(c, sql::PLATFORM_REQUESTS_LIST, &params, read, || {
        "listing platform requests".into()
    })
    .await
}
