//! The task handlers: `list_container_blobs` (stage 1), `analyze_single_blob` (stage 2, one per
//! blob), `aggregate_blob_analysis` (the diamond's fan-in stage 3), and [`BlobSource`], where they
//! get their Blob client.

use serde_json::{Value, json};

use super::filter::{BlobFilter, extension};
use super::summary::{self, FAILED_BLOB_MARKER, FailedBlob};
use crate::config::StorageSettings;
use crate::jobs::on_first_use::OnFirstUse;
use crate::jobs::tiff;
use crate::jobs::{TaskContext, TaskError};
use crate::storage::{BlobClient, ConnectionString, ListOptions, MAX_PAGE_SIZE, StorageError};

/// How many bytes of a .tif/.tiff are read to sniff it (header, ghost header, and usually the
/// first IFD of a COG).
pub const SNIFF_BYTES: u64 = 64 * 1024;

/// Where the handlers get their [`BlobClient`]: a fixed client (tests, embedding) or one built
/// once, on first use, from the process settings (`AZURE_STORAGE_CONNECTION_STRING`, or
/// `STORAGE_ACCOUNT_NAME` with managed identity).
#[derive(Clone)]
pub struct BlobSource(OnFirstUse<BlobClient>);

impl std::fmt::Debug for BlobSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlobSource")
    }
}

impl BlobSource {
    /// Always this client.
    pub fn fixed(client: BlobClient) -> Self {
        Self(OnFirstUse::fixed(client))
    }

    /// Built from the environment on first use (the binary's default).
    pub fn from_env() -> Self {
        Self(OnFirstUse::unset())
    }

    /// The client, or a permanent error saying which settings are missing or wrong.
    pub async fn client(&self) -> Result<BlobClient, TaskError> {
        self.0
            .get(|| async {
                match StorageSettings::from_lookup(|k| std::env::var(k).ok()) {
                    Ok(Some(s)) => client_from_settings(&s).map_err(|e| e.to_string()),
                    Ok(None) => Err("Blob Storage is not configured: set AZURE_STORAGE_CONNECTION_STRING (account key or SAS; Azurite) or STORAGE_ACCOUNT_NAME (managed identity, with STORAGE_MANAGED_IDENTITY_CLIENT_ID for a user-assigned one)".to_string()),
                    Err(e) => Err(e.to_string()),
                }
            })
            .await
            .map_err(|e| TaskError::permanent("StorageNotConfigured", e))
    }
}

/// The client the settings describe: Shared Key or SAS from a connection string, or managed
/// identity for `STORAGE_ACCOUNT_NAME`.
pub fn client_from_settings(s: &StorageSettings) -> Result<BlobClient, StorageError> {
    match s {
        StorageSettings::ConnectionString(cs) => {
            let cs = ConnectionString::parse(cs).map_err(|e| StorageError::Service {
                account: "(unknown)".into(),
                target: "the storage account".into(),
                status: None,
                operation: "read AZURE_STORAGE_CONNECTION_STRING".into(),
                message: e.to_string(),
                retryable: false,
            })?;
            BlobClient::from_connection_string(&cs)
        }
        StorageSettings::ManagedIdentity {
            account_name,
            client_id,
        } => {
            let mi =
                crate::azure::credential::ManagedIdentity::new(client_id.clone()).map_err(|e| {
                    StorageError::Service {
                        account: account_name.clone(),
                        target: "the storage account".into(),
                        status: None,
                        operation: "set up managed identity".into(),
                        message: e.to_string(),
                        retryable: false,
                    }
                })?;
            BlobClient::with_token_source(account_name, std::sync::Arc::new(mi))
        }
    }
}

/// Maps a storage error: retryable ones are transient (the engine retries the task with backoff
/// after the client's own retries), the rest permanent.
pub(crate) fn task_error(e: StorageError, what: String) -> TaskError {
    let message = format!("{what}: {e}");
    let kind = e.error_type();
    if e.is_retryable() {
        TaskError::transient(kind, message).with_source(e)
    } else {
        TaskError::permanent(kind, message).with_source(e)
    }
}

/// A string parameter of the task, or a permanent error naming it.
pub(crate) fn param_str<'a>(ctx: &'a TaskContext, key: &str) -> Result<&'a str, TaskError> {
    ctx.parameters
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| {
            TaskError::permanent(
                "MissingInput",
                format!("task {} has no {key} parameter", ctx.task_id),
            )
        })
}

/// A typed parameter of the task (absent = JSON null), or a permanent error naming it.
pub(crate) fn param_field<T: serde::de::DeserializeOwned>(
    ctx: &TaskContext,
    key: &str,
) -> Result<T, TaskError> {
    serde_json::from_value(ctx.parameters.get(key).cloned().unwrap_or(Value::Null)).map_err(|e| {
        TaskError::permanent(
            "MissingInput",
            format!("task {} parameter {key}: {e}", ctx.task_id),
        )
    })
}

/// Stage 1: lists the container with the filter, stopping at `file_limit`.
pub async fn list_container_blobs(src: BlobSource, ctx: TaskContext) -> Result<Value, TaskError> {
    let client = src.client().await?;
    let container = param_str(&ctx, "container_name")?.to_string();
    let limit = ctx
        .parameters
        .get("file_limit")
        .and_then(Value::as_u64)
        .unwrap_or(500) as usize;
    let page_size = ctx
        .parameters
        .get("page_size")
        .and_then(Value::as_u64)
        .unwrap_or(MAX_PAGE_SIZE as u64) as u32;
    let filter = BlobFilter::from_params(ctx.parameters.get("filter"));
    let mut blobs: Vec<Value> = Vec::new();
    let mut total_size = 0u64;
    let (mut scanned, mut pages) = (0u64, 0u64);
    let mut marker: Option<String> = None;
    let mut limit_reached = false;
    'pages: loop {
        // Without client-side filters every listed blob counts, so ask for no more than needed.
        let want = if filter.filters_client_side() {
            page_size
        } else {
            page_size.min((limit - blobs.len()).max(1) as u32)
        };
        let page = client
            .list_blobs(
                &container,
                &ListOptions {
                    prefix: filter.prefix.as_deref(),
                    marker: marker.as_deref(),
                    max_results: Some(want),
                },
            )
            .await
            .map_err(|e| {
                task_error(
                    e,
                    format!(
                        "listing container {container:?} (page {}) for job {}",
                        pages + 1,
                        ctx.job_id
                    ),
                )
            })?;
        pages += 1;
        for b in page.items {
            scanned += 1;
            if !filter.matches(&b) {
                continue;
            }
            if blobs.len() == limit {
                limit_reached = true;
                break 'pages;
            }
            total_size += b.size;
            blobs.push(json!({"name": b.name, "size": b.size}));
        }
        match page.next_marker {
            None => break,
            // Stopped at file_limit before the end of the listing.
            Some(_) if blobs.len() == limit => {
                limit_reached = true;
                break;
            }
            Some(m) => marker = Some(m),
        }
    }
    Ok(json!({
        "container_name": container,
        "storage_account": client.account(),
        "blob_count": blobs.len(),
        "total_size_bytes": total_size,
        "blobs": blobs,
        "scanned": scanned,
        "pages": pages,
        "file_limit": limit,
        "limit_reached": limit_reached,
        "filter": ctx.parameters.get("filter").cloned().unwrap_or(json!({})),
    }))
}

/// Stage 2: properties of one blob, and for .tif/.tiff what its first bytes say.
pub async fn analyze_single_blob(src: BlobSource, ctx: TaskContext) -> Result<Value, TaskError> {
    let client = src.client().await?;
    let container = param_str(&ctx, "container_name")?;
    let blob = param_str(&ctx, "blob_name")?;
    let quoted = serde_json::to_string(blob).unwrap_or_default();
    let fail = |e: StorageError| {
        task_error(
            e,
            format!(
                "{FAILED_BLOB_MARKER}{quoted} failed (listed in stage 1 of job {})",
                ctx.job_id
            ),
        )
    };
    let props = client.get_properties(container, blob).await.map_err(fail)?;
    let listed_size = ctx.parameters.get("listed_size").and_then(Value::as_u64);
    let ext = extension(blob);
    let tiff = if matches!(ext.as_str(), "tif" | "tiff") {
        Some(
            sniff(&client, container, blob, props.size)
                .await
                .map_err(fail)?,
        )
    } else {
        None
    };
    Ok(json!({
        "blob_name": blob,
        "size_bytes": props.size,
        "size_mb": (props.size as f64 / 1048576.0 * 1000.0).round() / 1000.0,
        "content_type": props.content_type,
        "extension": ext,
        "last_modified": props.last_modified,
        "etag": props.etag,
        "blob_type": props.blob_type,
        "changed_since_listing": listed_size.is_some_and(|l| l != props.size),
        "is_cog": tiff.as_ref().is_some_and(|t| t.get("looks_like_cog") == Some(&json!(true))),
        "tiff": tiff,
    }))
}

/// Reads the first bytes (and the first IFD when it lies further on) and classifies them. A file
/// that is not TIFF is a finding (`{"error": ...}`), not a failure.
async fn sniff(
    client: &BlobClient,
    container: &str,
    blob: &str,
    size: u64,
) -> Result<Value, StorageError> {
    let head = client
        .read_range(container, blob, 0, SNIFF_BYTES.min(size))
        .await?;
    let header = match tiff::read_header(&head) {
        Ok(h) => h,
        Err(e) => return Ok(json!({"error": e.to_string()})),
    };
    let ifd = if header.first_ifd_offset + 16 <= head.len() as u64 {
        tiff::read_ifd(&header, &head, 0)
    } else if header.first_ifd_offset < size {
        let at = header.first_ifd_offset;
        let bytes = client
            .read_range(container, blob, at, SNIFF_BYTES.min(size - at))
            .await?;
        tiff::read_ifd(&header, &bytes, at)
    } else {
        Err(tiff::SniffError::Malformed(format!(
            "first IFD offset {} is beyond the end of the file ({size} bytes)",
            header.first_ifd_offset
        )))
    };
    let (ifd, ifd_error) = match ifd {
        Ok(i) => (Some(i), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let mut v = serde_json::to_value(tiff::classify(&header, ifd)).unwrap_or(Value::Null);
    if let (Some(e), Some(o)) = (ifd_error, v.as_object_mut()) {
        o.insert("ifd_error".into(), json!(e));
    }
    Ok(v)
}

/// Stage 3 of the diamond: one task that receives every stage-2 result and summarises them.
pub async fn aggregate_blob_analysis(ctx: TaskContext) -> Result<Value, TaskError> {
    let container = param_str(&ctx, "container_name")?;
    let results = ctx
        .parameters
        .get("previous_results")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            TaskError::permanent(
                "MissingInput",
                format!("fan-in task {} has no previous_results", ctx.task_id),
            )
        })?;
    let failed: Vec<FailedBlob> = ctx
        .parameters
        .get("failed_tasks")
        .cloned()
        .and_then(|v| serde_json::from_value::<Vec<crate::jobs::FailedTask>>(v).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|f| FailedBlob {
            blob_name: summary::blob_name_from_error(&f.error),
            task_id: f.task_id,
            task_index: f.task_index,
            error: f.error,
        })
        .collect();
    let mut task_ids: Vec<&str> = results
        .iter()
        .filter_map(|r| r.get("task_id").and_then(Value::as_str))
        .collect();
    let received = task_ids.len();
    task_ids.sort_unstable();
    task_ids.dedup();
    let mut s = summary::summarize(
        container,
        results.iter().filter_map(|r| r.get("result")),
        &failed,
    );
    if let Some(o) = s.as_object_mut() {
        o.insert("results_received".into(), json!(received));
        o.insert("distinct_tasks".into(), json!(task_ids.len()));
    }
    Ok(s)
}
