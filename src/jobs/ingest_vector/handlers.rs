//! The task handlers of ingest_vector and what they need: the Blob client, the target PostGIS
//! database, the pgSTAC database and a local work directory. A process downloads a blob once for
//! all the tasks of its job ([`cache`]) and runs OGR on that copy inside `spawn_blocking`.

use deadpool_postgres::Pool;
use pgstac::Pgstac;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use super::cache::{self, CachedBlob};
use super::source::{self, Chunk, SourceReport, SourceSpec};
use super::table::{TableDef, owner_job};
use super::{VectorError, copy, item, sql};
use crate::jobs::list_container_contents::BlobSource;
use crate::jobs::list_container_contents::handlers::param_field as field;
use crate::jobs::on_first_use::OnFirstUse;
use crate::jobs::process_raster::StacDatabase;
use crate::jobs::process_raster::handlers::{pgstac_error, pool_from_settings, stac_pool};
use crate::jobs::work_dir::base_dir;
use crate::jobs::{TaskContext, TaskError};

/// The PostGIS database tables are loaded into: a fixed pool (tests, embedding) or, on first
/// use, the app database of the settings (`DATABASE_URL` or the `POSTGIS_*` settings, with their
/// TLS and managed-identity options).
pub type PostgisDatabase = OnFirstUse<Pool>;

async fn postgis_pool(db: &PostgisDatabase) -> Result<Pool, TaskError> {
    db.get(|| async { pool_from_settings(None) })
        .await
        .map_err(|e| {
            TaskError::permanent("PostgisNotConfigured", format!("the PostGIS database: {e}"))
        })
}

/// What the handlers use.
#[derive(Clone)]
pub struct VectorDeps {
    /// Blob Storage.
    pub blobs: BlobSource,
    /// Where the tables go.
    pub postgis: PostgisDatabase,
    /// Where the STAC items go.
    pub stac: StacDatabase,
    /// Parent of the per-task work directories (None: `VECTOR_WORK_DIR`, else the system's
    /// temporary directory). Needs room for one copy of the source.
    pub work_dir: Option<PathBuf>,
}

impl std::fmt::Debug for VectorDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorDeps")
            .field("work_dir", &self.work_dir)
            .finish_non_exhaustive()
    }
}

impl VectorDeps {
    /// Everything from the process environment (the binary's default).
    pub fn from_env() -> Self {
        Self {
            blobs: BlobSource::from_env(),
            postgis: PostgisDatabase::unset(),
            stac: StacDatabase::unset(),
            work_dir: None,
        }
    }
}

/// A database error: transient when the server or connection may recover (class 08, 40, 53,
/// 55P03 lock timeout, 57, 58, or no SQLSTATE at all), permanent otherwise (permissions, data).
fn db_error(e: tokio_postgres::Error, what: &str) -> TaskError {
    let code = e.code().map(|c| c.code().to_string());
    let msg = match e.as_db_error() {
        Some(d) => format!("{what}: {}", d.message()),
        None => format!("{what}: {e}"),
    };
    match code.as_deref() {
        None => TaskError::transient("PostgisUnavailable", msg),
        Some(c)
            if ["08", "40", "53", "57", "58"]
                .iter()
                .any(|p| c.starts_with(p))
                || c == "55P03" =>
        {
            TaskError::transient("PostgisUnavailable", msg)
        }
        Some("42501") => TaskError::permanent(
            "PostgisPermission",
            format!("{msg} (see docs/operations.md for the grants ingest_vector needs)"),
        ),
        Some(_) => TaskError::permanent("PostgisRejected", msg),
    }
}

async fn pg_client(pool: &Pool, what: &str) -> Result<deadpool_postgres::Object, TaskError> {
    pool.get().await.map_err(|e| {
        TaskError::transient(
            "PostgisUnavailable",
            format!("{what}: {}", crate::store::connect::describe_pool_error(&e)),
        )
    })
}

/// Runs OGR work on a blocking thread; a panic is a permanent failure naming the blob.
async fn blocking<T: Send + 'static>(
    label: &str,
    f: impl FnOnce() -> Result<T, VectorError> + Send + 'static,
) -> Result<T, TaskError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(TaskError::from),
        Err(e) if e.is_panic() => Err(TaskError::permanent(
            "Panic",
            format!("OGR work on {label} panicked: {e}"),
        )),
        Err(e) => Err(TaskError::transient(
            "Cancelled",
            format!("OGR work on {label}: {e}"),
        )),
    }
}

/// The task's blob: this process's copy (see [`cache`]), downloaded when it has none.
async fn fetch(
    deps: &VectorDeps,
    ctx: &TaskContext,
    spec: &SourceSpec,
) -> Result<Arc<CachedBlob>, TaskError> {
    let client = deps.blobs.client().await?;
    let container: String = field(ctx, "container_name")?;
    let blob: String = field(ctx, "blob_name")?;
    cache::get(
        &client,
        &work_base(deps),
        &container,
        &blob,
        spec.format.local_name(),
        &format!("for job {} task {}", ctx.job_id, ctx.task_id),
    )
    .await
}

fn work_base(deps: &VectorDeps) -> PathBuf {
    base_dir(deps.work_dir.as_deref(), "VECTOR_WORK_DIR")
}

fn millis(t: Instant) -> u64 {
    t.elapsed().as_millis() as u64
}

/// The schema PostGIS lives in, creating the extension when it is missing (local mode; a managed
/// server needs it created by an administrator once).
async fn postgis_schema(c: &tokio_postgres::Client) -> Result<String, TaskError> {
    let find = || async {
        c.query_opt(sql::POSTGIS_SCHEMA, &[])
            .await
            .map(|r| r.map(|r| r.get::<_, String>("schema_name")))
            .map_err(|e| db_error(e, "looking for the postgis extension"))
    };
    if let Some(s) = find().await? {
        return Ok(s);
    }
    c.batch_execute(sql::CREATE_POSTGIS).await.map_err(|e| {
        let mut t = db_error(e, "CREATE EXTENSION postgis");
        t.message.push_str(
            " (PostGIS is not installed in the target database; an administrator runs CREATE EXTENSION postgis once)",
        );
        t
    })?;
    find().await?.ok_or_else(|| {
        TaskError::permanent(
            "PostgisMissing",
            "CREATE EXTENSION postgis left no extension",
        )
    })
}

/// Stage 1: download, read every feature with OGR, check the target, plan the chunks.
pub async fn prepare(deps: VectorDeps, ctx: TaskContext) -> Result<Value, TaskError> {
    let ext: String = field(&ctx, "file_extension")?;
    source::Format::from_extension(&ext)?;
    let spec: SourceSpec = field(&ctx, "source")?;
    let schema: String = field(&ctx, "schema")?;
    let table_name: String = field(&ctx, "table_name")?;
    let srid: i32 = field(&ctx, "target_srid")?;
    let promote: bool = field(&ctx, "promote_to_multi")?;
    let overwrite: bool = field(&ctx, "overwrite")?;
    let chunk_size: u64 = field(&ctx, "chunk_size")?;
    let indexes: Vec<String> = field(&ctx, "indexes")?;
    let copy = fetch(&deps, &ctx, &spec).await?;
    let size = copy.size;
    let s = spec.clone();
    let report: SourceReport =
        blocking(&spec.label, move || source::inspect(&s, &copy.path)).await?;
    let table = source::table_for(&report, &schema, &table_name, srid, promote);
    // The target SRID must be a CRS GDAL can transform into.
    gdal::spatial_ref::SpatialRef::from_epsg(srid as u32).map_err(|e| {
        TaskError::permanent(
            "BadCrs",
            format!("target_srid {srid} is not an EPSG code GDAL knows: {e}"),
        )
    })?;
    let missing: Vec<&String> = indexes
        .iter()
        .filter(|i| table.find_column(i).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(TaskError::permanent(
            "IndexColumnNotFound",
            format!(
                "indexes names {missing:?}, which {} does not have; its columns: {}",
                spec.label,
                table
                    .columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let pool = postgis_pool(&deps.postgis).await?;
    let mut c = pg_client(&pool, "preparing the target table").await?;
    let ext_schema = postgis_schema(&c).await?;
    let exists: bool = c
        .query_one(sql::SCHEMA_EXISTS, &[&schema])
        .await
        .map_err(|e| db_error(e, "looking for the target schema"))?
        .get("present");
    if !exists {
        let created = c
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {}",
                super::naming::quote(&schema)
            ))
            .await;
        match created {
            // IF NOT EXISTS is not safe against a concurrent CREATE SCHEMA: two jobs loading
            // into a new schema at once, one of them loses on pg_namespace's unique index
            // (23505) after the other created it, which is what it wanted.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {}
            r => r.map_err(|e| db_error(e, &format!("creating schema {schema}")))?,
        }
    }
    let comment = c
        .query_opt(sql::TABLE_COMMENT, &[&schema, &table_name])
        .await
        .map_err(|e| db_error(e, "looking for the target table"))?
        .map(|r| r.get::<_, Option<String>>(0));
    let mut replaced = false;
    if let Some(comment) = &comment {
        let owner = owner_job(comment.as_deref());
        if overwrite {
            // The table and its ledger rows go together: a later load of the same batch ids
            // finds nothing to delete.
            let what = format!("dropping {} (overwrite)", table.display());
            let tx = c.transaction().await.map_err(|e| db_error(e, &what))?;
            ensure_ledger(&*tx, &table).await?;
            tx.batch_execute(&table.drop_sql())
                .await
                .map_err(|e| db_error(e, &what))?;
            tx.execute(&table.ledger_forget_sql(), &[&table.table])
                .await
                .map_err(|e| db_error(e, &what))?;
            tx.commit().await.map_err(|e| db_error(e, &what))?;
            replaced = true;
        } else if owner != Some(ctx.job_id.as_str()) {
            return Err(TaskError::permanent(
                "TableExists",
                match owner {
                    None => format!(
                        "{} exists and was not created by CoreMachine; choose another table_name, or set overwrite to replace it",
                        table.display()
                    ),
                    Some(other) => format!(
                        "{} exists, loaded by job {other}; set overwrite to replace it",
                        table.display()
                    ),
                },
            ));
        }
    }
    let count = report.feature_count;
    let k = count.div_ceil(chunk_size);
    let chunks: Vec<Value> = (0..k)
        .map(|i| {
            let start = i * chunk_size;
            let mut c = json!({"chunk": i, "start": start, "count": chunk_size.min(count - start)});
            if let Some(first) = report.first_fid {
                // Contiguous FIDs: the chunk reads its FID range instead of seeking.
                c["fid_start"] = json!(first + start);
            }
            c
        })
        .collect();
    Ok(json!({
        "source": report,
        "size_bytes": size,
        "table": table,
        "postgis_schema": ext_schema,
        "replaced_existing_table": replaced,
        "chunk_size": chunk_size,
        "chunks": chunks,
    }))
}

/// Creates the schema's batch ledger when it does not exist, under the schema's ledger lock
/// (tables of two jobs in one schema may be created at once).
async fn ensure_ledger(
    c: &impl tokio_postgres::GenericClient,
    table: &TableDef,
) -> Result<(), TaskError> {
    let what = format!("creating the batch ledger {}", table.ledger());
    let present: bool = c
        .query_one(sql::REGCLASS_EXISTS, &[&table.ledger()])
        .await
        .map_err(|e| db_error(e, &what))?
        .get("present");
    if present {
        return Ok(());
    }
    c.execute(
        sql::ADVISORY_XACT_LOCK,
        &[&format!("ingest_vector ledger:{}", table.schema)],
    )
    .await
    .map_err(|e| db_error(e, &what))?;
    c.batch_execute(&table.ledger_create_sql())
        .await
        .map_err(|e| db_error(e, &what))
}

/// Creates the table when it does not exist: one creator at a time under the table's advisory
/// lock, the others see it; a table another job took meanwhile is refused.
async fn ensure_table(
    c: &mut tokio_postgres::Client,
    table: &TableDef,
    ext_schema: &str,
    job_id: &str,
) -> Result<(), TaskError> {
    let what = format!("creating {}", table.display());
    let tx = c.transaction().await.map_err(|e| db_error(e, &what))?;
    tx.execute(
        sql::ADVISORY_XACT_LOCK,
        &[&format!("ingest_vector:{}", table.display())],
    )
    .await
    .map_err(|e| db_error(e, &what))?;
    let comment = tx
        .query_opt(sql::TABLE_COMMENT, &[&table.schema, &table.table])
        .await
        .map_err(|e| db_error(e, &what))?;
    ensure_ledger(&tx, table).await?;
    match comment {
        None => tx
            .batch_execute(&table.create_sql(ext_schema, job_id))
            .await
            .map_err(|e| db_error(e, &what))?,
        Some(r) => {
            let comment: Option<String> = r.get("comment");
            if owner_job(comment.as_deref()) != Some(job_id) {
                return Err(TaskError::permanent(
                    "TableExists",
                    format!(
                        "{} was created by someone else while job {job_id} was loading it ({})",
                        table.display(),
                        comment.unwrap_or_else(|| "no CoreMachine mark".into())
                    ),
                ));
            }
        }
    }
    tx.commit().await.map_err(|e| db_error(e, &what))
}

/// Stage 2: one chunk: read its feature range, create the table if needed, replace the chunk's
/// rows in one transaction.
pub async fn load_chunk(deps: VectorDeps, ctx: TaskContext) -> Result<Value, TaskError> {
    let spec: SourceSpec = field(&ctx, "source")?;
    let table: TableDef = field(&ctx, "table")?;
    let ext_schema: String = field(&ctx, "postgis_schema")?;
    let make_valid: bool = field(&ctx, "make_valid")?;
    let start: u64 = field(&ctx, "start")?;
    let count: u64 = field(&ctx, "count")?;
    let chunk_no: u64 = field(&ctx, "chunk")?;
    let batch_id: String = field(&ctx, "batch_id")?;
    let fid_start = ctx.parameters.get("fid_start").and_then(Value::as_u64);
    let t0 = Instant::now();
    let copy = fetch(&deps, &ctx, &spec).await?;
    let fetch_ms = millis(t0);
    let t1 = Instant::now();
    let (s, t) = (spec.clone(), table.clone());
    let chunk: Chunk = blocking(&spec.label, move || {
        source::read_chunk(&s, &copy.path, &t, make_valid, start, count, fid_start)
    })
    .await?;
    let read_ms = millis(t1);
    let t2 = Instant::now();
    let pool = postgis_pool(&deps.postgis).await?;
    let mut c = pg_client(&pool, "loading a chunk").await?;
    ensure_table(&mut c, &table, &ext_schema, &ctx.job_id).await?;
    let replaced = copy::replace_batch(&mut c, &table, &batch_id, &ctx.job_id, &chunk.rows)
        .await
        .map_err(|e| {
            db_error(
                e,
                &format!(
                    "loading chunk {chunk_no} (features {start}..{}) of {} into {} for job {}",
                    start + count,
                    spec.label,
                    table.display(),
                    ctx.job_id
                ),
            )
        })?;
    let copy_ms = millis(t2);
    Ok(json!({
        "chunk": chunk_no,
        "batch_id": batch_id,
        "start": start,
        "features": count,
        "rows": chunk.rows.len(),
        "repaired": chunk.repaired,
        "dropped": chunk.dropped,
        "invalid_kept": chunk.invalid_kept,
        "null_geometries": chunk.null_geometries,
        "replaced_rows": replaced,
        // Where the task's time went: the blob (0 when this process had it), OGR read with
        // reprojection and EWKB, and table check + DELETE + binary COPY + commit.
        "timings_ms": {"fetch": fetch_ms, "read": read_ms, "copy": copy_ms},
        "prepared": if chunk_no == 0 { ctx.parameters.get("prepared").cloned() } else { None },
    }))
}

/// Stage 3: indexes, ANALYZE, the row count check, and the table's STAC item in pgSTAC.
pub async fn finalize_table(deps: VectorDeps, ctx: TaskContext) -> Result<Value, TaskError> {
    let table: TableDef = field(&ctx, "table")?;
    let ext_schema: String = field(&ctx, "postgis_schema")?;
    let index_columns: Vec<String> = field(&ctx, "index_columns")?;
    let expected: i64 = field(&ctx, "expected_rows")?;
    let collection_id: String = field(&ctx, "collection_id")?;
    let item_id: String = field(&ctx, "item_id")?;
    let source: Value = field(&ctx, "source")?;
    let what = |op: &str| format!("{op} {} for job {}", table.display(), ctx.job_id);
    // Every chunk is loaded: this process's copy of the blob is no longer needed.
    if let (Ok(container), Ok(blob)) = (
        field::<String>(&ctx, "container_name"),
        field::<String>(&ctx, "blob_name"),
    ) {
        cache::forget(&work_base(&deps), &container, &blob);
    }
    let pool = postgis_pool(&deps.postgis).await?;
    let c = pg_client(&pool, "finishing the table").await?;
    let build_indexes = async {
        c.batch_execute(&table.gist_sql())
            .await
            .map_err(|e| db_error(e, &what("the GIST index of")))?;
        let mut indexes = vec![super::naming::derived(&table.table, "geom_gist")];
        for name in &index_columns {
            let col = table.find_column(name).ok_or_else(|| {
                TaskError::permanent(
                    "IndexColumnNotFound",
                    format!("{} has no column {name}", table.display()),
                )
            })?;
            c.batch_execute(&table.attribute_index_sql(col))
                .await
                .map_err(|e| db_error(e, &what(&format!("the index on {} of", col.name))))?;
            indexes.push(super::naming::derived(
                &table.table,
                &format!("{}_idx", col.name),
            ));
        }
        // ANALYZE waits for CREATE INDEX (their locks conflict), so it follows the indexes.
        c.batch_execute(&table.analyze_sql())
            .await
            .map_err(|e| db_error(e, &what("ANALYZE of")))?;
        Ok::<_, TaskError>(indexes)
    };
    let summary_sql = table.summary_sql(&ext_schema);
    let summary_what = what("counting the rows of");
    let summarise = |s: deadpool_postgres::Object| async move {
        s.query_one(&summary_sql, &[])
            .await
            .map_err(|e| db_error(e, &summary_what))
    };
    // The summary only reads the table, which CREATE INDEX allows: on a second connection it
    // runs while the GIST index is built (one at a time when the pool has one connection).
    let (indexes, r) = if pool.status().max_size >= 2 {
        let s = pg_client(&pool, "summarising the table").await?;
        tokio::try_join!(build_indexes, summarise(s))?
    } else {
        let indexes = build_indexes.await?;
        drop(c);
        let s = pg_client(&pool, "summarising the table").await?;
        (indexes, summarise(s).await?)
    };
    let (rows, invalid): (i64, i64) = (r.get("n"), r.get("invalid"));
    let bbox: Option<[f64; 4]> = match (r.get("xmin"), r.get("ymin"), r.get("xmax"), r.get("ymax"))
    {
        (Some(a), Some(b), Some(c2), Some(d)) => Some([a, b, c2, d]),
        _ => None,
    };
    if rows != expected {
        return Err(TaskError::permanent(
            "RowCountMismatch",
            format!(
                "{} holds {rows} rows but the chunks of job {} loaded {expected}: rows of another load are in it, or some are missing",
                table.display(),
                ctx.job_id
            ),
        ));
    }
    let item = item::build_item(&item::ItemInput {
        id: &item_id,
        collection: &collection_id,
        table: &table,
        rows,
        bbox,
        source: &source,
    });
    let stac_pool = stac_pool(&deps.stac).await?;
    let mut sc = pg_client(&stac_pool, "upserting the STAC item").await?;
    // pgSTAC widens a collection partition's datetime constraint inside the upsert; two upserts
    // into one collection at once can trip over each other's (check violation), so they take
    // turns under the collection's advisory lock (the one process_raster takes too).
    let stac_what = format!(
        "upserting item {item_id} (table {}) into {collection_id}",
        table.display()
    );
    let tx = sc
        .transaction()
        .await
        .map_err(|e| db_error(e, &stac_what))?;
    tx.execute(
        sql::ADVISORY_XACT_LOCK,
        &[&format!("pgstac collection:{collection_id}")],
    )
    .await
    .map_err(|e| db_error(e, &stac_what))?;
    let created = tx
        .collection(&collection_id)
        .await
        .map_err(|e| pgstac_error(e, format!("reading collection {collection_id}")))?
        .is_none();
    if created {
        tx.upsert_collection(item::new_collection(&collection_id))
            .await
            .map_err(|e| pgstac_error(e, format!("creating collection {collection_id}")))?;
    }
    tx.upsert_item(item.clone())
        .await
        .map_err(|e| pgstac_error(e, stac_what.clone()))?;
    tx.commit().await.map_err(|e| db_error(e, &stac_what))?;
    Ok(json!({
        "table": table.display(),
        "rows": rows,
        "invalid_geometries": invalid,
        "srid": table.srid,
        "geometry_type": table.geometry.kind.sql(),
        "bbox": bbox,
        "indexes": indexes,
        "stac": {"item_id": item_id, "collection_id": collection_id, "collection_created": created},
        "chunks": ctx.parameters.get("chunks"),
        "source": {
            "driver": source.get("driver"),
            "layer": source.get("layer"),
            "feature_count": source.get("feature_count"),
            "geometry_types": source.get("geometry_types"),
            "crs": source.get("crs").and_then(|c| c.get("code")),
            "crs_source": source.get("crs_source"),
        },
    }))
}
