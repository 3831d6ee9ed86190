//! The task handlers of process_raster and what they need: the Blob client (CoreMachine's own,
//! so account key, SAS and managed identity all work), the pgSTAC database, a local work
//! directory. GDAL runs on local files inside `spawn_blocking`; each task works in its own
//! directory, removed when the task ends.

use std::path::PathBuf;

use deadpool_postgres::Pool;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use pgstac::Pgstac;
use serde_json::{Value, json};

use super::RasterError;
use super::cog::{self, CogOptions, CogReport};
use super::inspect::{self, InspectRequest};
use super::profile::{CogProfile, RasterType};
use super::stac_item::{self, COG_MEDIA_TYPE, TierCog};
use crate::jobs::list_container_contents::BlobSource;
use crate::jobs::list_container_contents::handlers::{
    param_field as field, param_str as param, task_error,
};
use crate::jobs::on_first_use::OnFirstUse;
use crate::jobs::work_dir::WorkDir;
use crate::jobs::{TaskContext, TaskError};
use crate::storage::{BlobClient, transfer};

/// Where the STAC items go: a fixed pool (tests, embedding) or, on first use, the database
/// `PGSTAC_DATABASE_URL` names, else the app database (`DATABASE_URL` and its identity settings).
pub type StacDatabase = OnFirstUse<Pool>;

/// A small pool (4 connections) to the app database of the process settings, with their TLS
/// and managed-identity options, or to `database_url` on the same terms.
pub(crate) fn pool_from_settings(database_url: Option<String>) -> Result<Pool, String> {
    let transport = crate::config::TransportMode::for_janitor();
    let mut s = crate::config::Settings::from_env(transport).map_err(|e| e.to_string())?;
    if let Some(url) = database_url {
        s.database_url = url;
    }
    s.db_pool_size = 4;
    crate::store::connect::pool_for_settings(&s).map_err(|e| e.to_string())
}

/// The pgSTAC pool, built on first use when not given.
pub(crate) async fn stac_pool(db: &StacDatabase) -> Result<Pool, TaskError> {
    db.get(|| async { pool_from_settings(crate::store::pgstac::database_url_override()) })
        .await
        .map_err(|e| {
            TaskError::permanent("PgstacNotConfigured", format!("the pgSTAC database: {e}"))
        })
}

/// What the handlers use.
#[derive(Clone)]
pub struct RasterDeps {
    /// Blob Storage.
    pub blobs: BlobSource,
    /// The pgSTAC database.
    pub stac: StacDatabase,
    /// Parent of the per-task work directories (None: `RASTER_WORK_DIR`, else the system's
    /// temporary directory). Needs room for the source, the COG and GDAL's overview spill.
    pub work_dir: Option<PathBuf>,
}

impl std::fmt::Debug for RasterDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RasterDeps")
            .field("work_dir", &self.work_dir)
            .finish_non_exhaustive()
    }
}

impl RasterDeps {
    /// Everything from the process environment (the binary's default).
    pub fn from_env() -> Self {
        Self {
            blobs: BlobSource::from_env(),
            stac: OnFirstUse::unset(),
            work_dir: None,
        }
    }
}

/// Sends GDAL's messages to tracing instead of stderr (once per process). The errors that matter
/// also come back from the failing call and end up in the task's error.
fn route_gdal_messages() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        gdal::config::set_error_handler(|class, code, msg| match class {
            gdal::errors::CplErrType::Failure | gdal::errors::CplErrType::Fatal => {
                tracing::warn!(gdal.code = code, "GDAL: {msg}")
            }
            gdal::errors::CplErrType::Warning => tracing::info!(gdal.code = code, "GDAL: {msg}"),
            _ => tracing::debug!(gdal.code = code, "GDAL: {msg}"),
        });
    });
}

/// Runs GDAL work on a blocking thread; a panic is a permanent failure naming the blob.
async fn blocking<T: Send + 'static>(
    blob: &str,
    f: impl FnOnce() -> Result<T, RasterError> + Send + 'static,
) -> Result<T, TaskError> {
    route_gdal_messages();
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(TaskError::from),
        Err(e) if e.is_panic() => Err(TaskError::permanent(
            "Panic",
            format!("GDAL work on {blob} panicked: {e}"),
        )),
        Err(e) => Err(TaskError::transient(
            "Cancelled",
            format!("GDAL work on {blob}: {e}"),
        )),
    }
}

/// Downloads the task's source blob into `dir`; returns the local path and the blob's
/// last-modified time.
async fn fetch_source(
    client: &BlobClient,
    ctx: &TaskContext,
    dir: &WorkDir,
) -> Result<(PathBuf, Option<String>, u64), TaskError> {
    let container = param(ctx, "container_name")?;
    let blob = param(ctx, "blob_name")?;
    let local = dir.path("source.tif");
    let props = transfer::download_to_file(client, container, blob, &local)
        .await
        .map_err(|e| {
            task_error(
                e,
                format!(
                    "downloading {container}/{blob} for job {} task {}",
                    ctx.job_id, ctx.task_id
                ),
            )
        })?;
    Ok((local, props.last_modified, props.size))
}

/// The public URL of a blob (the asset href).
pub fn blob_url(client: &BlobClient, container: &str, blob: &str) -> String {
    const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    let path: Vec<String> = blob
        .split('/')
        .map(|s| utf8_percent_encode(s, SEGMENT).to_string())
        .collect();
    format!(
        "{}/{container}/{}",
        client.endpoint().as_str().trim_end_matches('/'),
        path.join("/")
    )
}

/// TiTiler URLs of a COG at `href`.
pub fn tile_urls(base: &str, href: &str) -> Value {
    let url = utf8_percent_encode(href, NON_ALPHANUMERIC).to_string();
    json!({
        "tilejson": format!("{base}/cog/WebMercatorQuad/tilejson.json?url={url}"),
        "tiles": format!("{base}/cog/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}?url={url}"),
        "info": format!("{base}/cog/info?url={url}"),
    })
}

/// What later stages and finalize repeat of stage 1's report.
pub fn validation_summary(v: &Value) -> Value {
    let keep = [
        "blob_name",
        "container_name",
        "size_bytes",
        "last_modified",
        "driver",
        "width",
        "height",
        "band_count",
        "data_type",
        "nodata",
        "crs",
        "crs_source",
        "bbox_wgs84",
        "overview_count",
        "tiled",
        "is_cog",
        "detected_type",
        "raster_type",
        "warnings",
    ];
    let mut out = serde_json::Map::new();
    for k in keep {
        if let Some(x) = v.get(k) {
            let x = if k == "crs" {
                json!({"code": x.get("code"), "name": x.get("name")})
            } else {
                x.clone()
            };
            out.insert(k.into(), x);
        }
    }
    Value::Object(out)
}

/// Stage 1: download the blob and report it, or fail permanently naming the blob and the check.
pub async fn validate_raster(deps: RasterDeps, ctx: TaskContext) -> Result<Value, TaskError> {
    let client = deps.blobs.client().await?;
    let dir = WorkDir::create(deps.work_dir.as_deref(), "RASTER_WORK_DIR", "raster", &ctx)?;
    let (local, last_modified, size) = fetch_source(&client, &ctx, &dir).await?;
    let container = param(&ctx, "container_name")?.to_string();
    let blob = param(&ctx, "blob_name")?.to_string();
    let input_crs = ctx
        .parameters
        .get("input_crs")
        .and_then(Value::as_str)
        .map(str::to_string);
    let requested = ctx
        .parameters
        .get("raster_type")
        .and_then(Value::as_str)
        .and_then(RasterType::parse);
    let strict = ctx
        .parameters
        .get("strict_mode")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let target = param(&ctx, "target_crs")?.to_string();
    let label = format!("{container}/{blob}");
    let report = blocking(&label.clone(), move || {
        inspect::inspect(
            &local,
            &label,
            &InspectRequest {
                input_crs: input_crs.as_deref(),
                raster_type: requested,
                strict,
                target_crs: &target,
            },
        )
    })
    .await?;
    let mut v = serde_json::to_value(&report)
        .map_err(|e| TaskError::permanent("Serialize", e.to_string()))?;
    if let Some(o) = v.as_object_mut() {
        o.insert("blob_name".into(), json!(blob));
        o.insert("container_name".into(), json!(container));
        o.insert("size_bytes".into(), json!(size));
        o.insert("last_modified".into(), json!(last_modified));
    }
    drop(dir);
    Ok(v)
}

/// Stage 2: one tier's COG: download, convert and verify, upload; reports the checks and what
/// the STAC item needs.
pub async fn create_cog(deps: RasterDeps, ctx: TaskContext) -> Result<Value, TaskError> {
    let client = deps.blobs.client().await?;
    let dir = WorkDir::create(deps.work_dir.as_deref(), "RASTER_WORK_DIR", "raster", &ctx)?;
    let (local, _, _) = fetch_source(&client, &ctx, &dir).await?;
    let label = format!(
        "{}/{}",
        param(&ctx, "container_name")?,
        param(&ctx, "blob_name")?
    );
    let tier = param(&ctx, "tier")?.to_string();
    let out_container = param(&ctx, "output_container")?.to_string();
    let out_blob = param(&ctx, "output_blob")?.to_string();
    let opts = CogOptions {
        target_crs: param(&ctx, "target_crs")?.to_string(),
        source_crs: ctx
            .parameters
            .get("source_crs")
            .and_then(Value::as_str)
            .map(str::to_string),
        drop_nodata: ctx
            .parameters
            .get("drop_nodata")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        profile: field::<CogProfile>(&ctx, "profile")?,
        num_threads: std::env::var("RASTER_NUM_THREADS")
            .ok()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty()),
    };
    let output = dir.path("cog.tif");
    let out_path = output.clone();
    let lbl = label.clone();
    let report: CogReport = blocking(&label, move || {
        cog::create_cog(&local, &out_path, &opts, &lbl)
    })
    .await?;
    let what = |op: &str| {
        format!(
            "{op} {out_container}/{out_blob} (the {tier} COG of {label}) for job {}",
            ctx.job_id
        )
    };
    ensure_container(&client, &out_container, what).await?;
    transfer::upload_file(&client, &out_container, &out_blob, &output, COG_MEDIA_TYPE)
        .await
        .map_err(|e| task_error(e, what("uploading")))?;
    drop(dir);
    Ok(json!({
        "tier": tier,
        "output_container": out_container,
        "output_blob": out_blob,
        "href": blob_url(&client, &out_container, &out_blob),
        "size_bytes": report.size_bytes,
        "checks": report.checks,
        "compression": report.compression,
        "overviews": report.overviews,
        "report": report,
        "validation": ctx.parameters.get("validation"),
    }))
}

/// Creates the output container when it does not exist; `what("checking the container of")`
/// names the blob being written in the error.
pub(crate) async fn ensure_container(
    client: &BlobClient,
    container: &str,
    what: impl Fn(&str) -> String,
) -> Result<(), TaskError> {
    if !client
        .container_exists(container)
        .await
        .map_err(|e| task_error(e, what("checking the container of")))?
    {
        client
            .create_container(container)
            .await
            .map_err(|e| task_error(e, what("creating the container of")))?;
    }
    Ok(())
}

/// Whether a pgSTAC error can clear up by itself (connection lost, server overloaded, deadlock).
pub(crate) fn pgstac_error(e: pgstac::Error, what: String) -> TaskError {
    let pg = match &e {
        pgstac::Error::TokioPostgres(pg) => Some(pg),
        _ => None,
    };
    let code = pg.and_then(|p| p.code()).map(|c| c.code().to_string());
    let msg = match pg.and_then(|p| p.as_db_error()) {
        Some(d) => format!("{what}: {}", d.message()),
        None => format!("{what}: {e}"),
    };
    match code.as_deref() {
        Some("42883") | Some("3F000") | Some("42P01") => TaskError::permanent(
            "PgstacMissing",
            format!(
                "{msg} (pgSTAC is not installed there: run `coremachine migrate` with PGSTAC_SQL set)"
            ),
        ),
        // 23505: a concurrent writer created the same partition first; trying again sees it.
        Some(c) if c == "23505" || ["08", "53", "57", "40"].iter().any(|p| c.starts_with(p)) => {
            TaskError::transient("PgstacUnavailable", msg)
        }
        None if pg.is_some() => TaskError::transient("PgstacUnavailable", msg),
        _ => TaskError::permanent("PgstacRejected", msg),
    }
}

/// A connection to the pgSTAC database, for `what` (named in the error).
pub(crate) async fn stac_client(
    db: &StacDatabase,
    what: &str,
) -> Result<deadpool_postgres::Object, TaskError> {
    let pool = stac_pool(db).await?;
    crate::store::client(&pool, "upserting into pgSTAC")
        .await
        .map_err(|e| TaskError::transient("PgstacUnavailable", format!("{what}: {e}")))
}

/// Maps a driver error of `what` to a task error, as [`pgstac_error`] classifies it.
pub(crate) fn pg_error(what: String) -> impl FnOnce(tokio_postgres::Error) -> TaskError {
    move |e| pgstac_error(pgstac::Error::TokioPostgres(e), what)
}

/// A create_cog result as the STAC item builder takes it.
pub(crate) fn tier_cog(c: &Value, task_id: &str) -> Result<TierCog, TaskError> {
    let report: CogReport = serde_json::from_value(c.get("report").cloned().unwrap_or(Value::Null))
        .map_err(|e| {
            TaskError::permanent(
                "MissingInput",
                format!("task {task_id}: a create_cog result: {e}"),
            )
        })?;
    Ok(TierCog {
        tier: c
            .get("tier")
            .and_then(Value::as_str)
            .unwrap_or("analysis")
            .to_string(),
        href: c
            .get("href")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        report,
    })
}

/// Stage 3: the STAC item of every COG, upserted into pgSTAC; the collection is created when it
/// does not exist.
pub async fn extract_stac_metadata(deps: RasterDeps, ctx: TaskContext) -> Result<Value, TaskError> {
    let item_id = param(&ctx, "item_id")?;
    let collection_id = param(&ctx, "collection_id")?;
    let blob = param(&ctx, "blob_name")?;
    let container = param(&ctx, "container_name")?;
    let cogs: Vec<Value> = field(&ctx, "cogs")?;
    let tiers = cogs
        .iter()
        .map(|c| tier_cog(c, &ctx.task_id))
        .collect::<Result<Vec<_>, _>>()?;
    let validation = cogs
        .first()
        .and_then(|c| c.get("validation"))
        .cloned()
        .unwrap_or(Value::Null);
    let datetime = validation.get("last_modified").and_then(Value::as_str);
    let item = stac_item::build_item(
        item_id,
        collection_id,
        datetime,
        &format!("{container}/{blob}"),
        &tiers,
    )
    .map_err(|e| {
        TaskError::permanent(
            "StacItem",
            format!("the STAC item of {container}/{blob}: {e}"),
        )
    })?;
    let mut client =
        stac_client(&deps.stac, &format!("item {item_id} of {container}/{blob}")).await?;
    let wrap = pg_error;
    let tx = client
        .transaction()
        .await
        .map_err(wrap(format!("starting the upsert of item {item_id}")))?;
    // One writer per collection at a time: the first items of a collection create its
    // partitions, and concurrent first upserts would race on them.
    tx.execute(crate::store::sql::STAC_COLLECTION_LOCK, &[&collection_id])
        .await
        .map_err(wrap(format!("locking collection {collection_id}")))?;
    let existing = tx
        .collection(collection_id)
        .await
        .map_err(|e| pgstac_error(e, format!("reading collection {collection_id}")))?;
    let created = existing.is_none();
    if created {
        tx.upsert_collection(stac_item::new_collection(collection_id))
            .await
            .map_err(|e| pgstac_error(e, format!("creating collection {collection_id}")))?;
    }
    tx.upsert_item(&item).await.map_err(|e| {
        pgstac_error(
            e,
            format!(
                "upserting item {item_id} into collection {collection_id} (from {container}/{blob})"
            ),
        )
    })?;
    tx.commit()
        .await
        .map_err(wrap(format!("committing item {item_id}")))?;
    let cog_summaries: Vec<Value> = cogs
        .iter()
        .map(|c| {
            json!({
                "tier": c.get("tier"),
                "output_container": c.get("output_container"),
                "output_blob": c.get("output_blob"),
                "href": c.get("href"),
                "size_bytes": c.get("size_bytes"),
                "checks": c.get("checks"),
                "compression": c.get("compression"),
                "overviews": c.get("overviews"),
            })
        })
        .collect();
    Ok(json!({
        "item_id": item_id,
        "collection_id": collection_id,
        "collection_created": created,
        "bbox": item.bbox,
        "assets": item.assets.keys().collect::<Vec<_>>(),
        "validation": validation,
        "cogs": cog_summaries,
    }))
}
