//! `ingest_vector`: a vector file blob (GeoPackage, zipped Shapefile, GeoJSON, FlatGeobuf, CSV,
//! KML) becomes a PostGIS table, loaded in parallel chunks that a redelivery replaces instead of
//! duplicating, and one STAC item in pgSTAC. Parameters are the earlier system's.
//!
//! | stage | name | task type | tasks | what |
//! |---|---|---|---|---|
//! | 1 | prepare | `prepare_vector` | 1 | read every feature with OGR, report, derive the table, check the target, plan K chunks by feature range |
//! | 2 | load | `load_vector_chunk` | K | read the range, create the table if missing, `DELETE` the chunk's batch and binary `COPY` it, in one transaction |
//! | 3 | finalize_table | `finalize_vector_table` | 1 | GIST and attribute indexes, ANALYZE, row count check, STAC item |
//!
//! Finalize reports the rows per chunk, the repaired and dropped geometries, the table and the
//! item. Every stage is fail-fast. Each row carries `etl_batch_id` = `{job_id}:{chunk}`.
//!
//! # Layout
//! - [`naming`]: identifier checks and quoting (pure).
//! - [`source`]: OGR: formats, refusals, the report, one chunk's rows as EWKB.
//! - [`table`]: the table definition and the statements naming it (pure).
//! - [`copy`]: one chunk's transaction (advisory lock, DELETE, binary COPY).
//! - [`item`]: the STAC item (pure).
//! - [`handlers`]: the task handlers: blob download, `spawn_blocking`, PostGIS, pgSTAC.

mod cache;
mod copy;
pub mod handlers;
pub mod item;
pub(crate) mod naming;
pub mod source;
pub mod sql;
pub mod table;

use serde_json::{Map, Value, json};

use super::list_container_contents::filter::check_container_name;
use super::{
    FieldError, FinalizeInput, Job, JobError, ParamKind, ParamSpec, Registry, StageDef, StageInput,
    TaskError, TaskSpec,
};
pub use handlers::{PostgisDatabase, VectorDeps};
use source::{CsvOptions, Format, SourceSpec};
use table::TableDef;

/// The job type name.
pub const JOB_TYPE: &str = "ingest_vector";
/// The collection items go to when `collection_id` is not given.
pub const DEFAULT_COLLECTION: &str = "vectors";
/// Features per chunk by default (the earlier system's).
pub const DEFAULT_CHUNK_SIZE: u64 = 20_000;

/// A refused file or a failed OGR read; always permanent (the same file fails the same way).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct VectorError {
    /// What failed (`UnknownFormat`, `ShapefileIncomplete`, `NoGeometry`, ...), the task's error type.
    pub check: &'static str,
    /// What went wrong, naming the blob.
    pub message: String,
}

impl VectorError {
    /// An error for `check`.
    pub fn new(check: &'static str, message: impl Into<String>) -> Self {
        Self {
            check,
            message: message.into(),
        }
    }
}

impl From<VectorError> for TaskError {
    fn from(e: VectorError) -> Self {
        TaskError::permanent(e.check, e.message)
    }
}

fn bronze() -> String {
    std::env::var("BRONZE_CONTAINER_NAME")
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| super::process_raster::DEFAULT_BRONZE.to_string())
}

fn check_stac_id(s: &str) -> Result<(), (&'static str, String)> {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        Ok(())
    } else {
        Err((
            "stac_id",
            format!("{s:?}: use letters, digits, '-', '_' and '.' only"),
        ))
    }
}

fn check_extension(s: &str) -> Result<(), (&'static str, String)> {
    let e = s.trim_start_matches('.').to_ascii_lowercase();
    if source::EXTENSIONS.contains(&e.as_str()) {
        Ok(())
    } else {
        Err((
            "file_extension",
            format!("{s:?}: one of {}", source::EXTENSIONS.join(", ")),
        ))
    }
}

/// The parameters (compatible with the earlier system's `ingest_vector`).
pub fn parameters() -> Vec<ParamSpec> {
    vec![
        ParamSpec::new("blob_name", ParamKind::String, "The vector file to load")
            .required()
            .max(1024.0),
        ParamSpec::new(
            "table_name",
            ParamKind::String,
            "Target table: lowercase letters, digits and '_', at most 63",
        )
        .required()
        .max(63.0)
        .check(naming::check_table),
        ParamSpec::new(
            "container_name",
            ParamKind::String,
            "Container holding the blob (default: BRONZE_CONTAINER_NAME)",
        )
        .max(63.0)
        .check(check_container_name)
        .default(json!(bronze())),
        ParamSpec::new(
            "file_extension",
            ParamKind::String,
            "Format (gpkg, zip, geojson, json, fgb, csv, kml); default: the blob name's extension",
        )
        .max(16.0)
        .check(check_extension),
        ParamSpec::new(
            "schema",
            ParamKind::String,
            "Target schema (created when missing)",
        )
        .max(63.0)
        .check(naming::check_schema)
        .default(json!("geo")),
        ParamSpec::new(
            "layer",
            ParamKind::String,
            "Layer of a multi-layer file (default: the first with a geometry)",
        )
        .max(256.0),
        ParamSpec::new("chunk_size", ParamKind::Integer, "Features per load task")
            .range(1.0, 1_000_000.0)
            .default(json!(DEFAULT_CHUNK_SIZE)),
        ParamSpec::new(
            "converter_params",
            ParamKind::Object(vec![
                ParamSpec::new("lat_name", ParamKind::String, "CSV latitude column").max(256.0),
                ParamSpec::new("lon_name", ParamKind::String, "CSV longitude column").max(256.0),
                ParamSpec::new("wkt_column", ParamKind::String, "CSV WKT geometry column")
                    .max(256.0),
                ParamSpec::new(
                    "delimiter",
                    ParamKind::String,
                    "CSV separator: , ; tab space |",
                )
                .max(16.0),
                ParamSpec::new(
                    "source_crs",
                    ParamKind::String,
                    "CRS of the coordinates, overriding the file's (EPSG:nnnn, WKT or PROJ)",
                )
                .check(|s| {
                    crate::jobs::process_raster::inspect::parse_crs(s)
                        .map(drop)
                        .map_err(|e| ("crs", e))
                }),
            ]),
            "How to read the source",
        ),
        ParamSpec::new(
            "geometry_params",
            ParamKind::Object(vec![
                ParamSpec::new(
                    "target_srid",
                    ParamKind::Integer,
                    "SRID of the table (default 4326)",
                )
                .range(1.0, 998_999.0),
                ParamSpec::new(
                    "promote_to_multi",
                    ParamKind::Boolean,
                    "Store single geometries as multi (default true)",
                ),
                ParamSpec::new(
                    "make_valid",
                    ParamKind::Boolean,
                    "Repair invalid geometries with MakeValid (default true; false loads them as they are, counted)",
                ),
            ]),
            "How geometries are stored",
        ),
        ParamSpec::new(
            "indexes",
            ParamKind::Array(Box::new(ParamKind::String)),
            "Columns to index (b-tree) besides the geometry's GIST",
        )
        .max(32.0)
        .check(naming::check_column),
        ParamSpec::new(
            "overwrite",
            ParamKind::Boolean,
            "Replace an existing table of that name",
        )
        .default(json!(false)),
        ParamSpec::new(
            "collection_id",
            ParamKind::String,
            "STAC collection of the table's item (created when missing)",
        )
        .max(256.0)
        .check(check_stac_id)
        .default(json!(DEFAULT_COLLECTION)),
        ParamSpec::new(
            "item_id",
            ParamKind::String,
            "STAC item id (default: schema.table)",
        )
        .max(256.0)
        .check(check_stac_id),
    ]
}

fn str_param<'a>(p: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    p.get(k).and_then(Value::as_str)
}

fn nested<'a>(p: &'a Map<String, Value>, obj: &str, k: &str) -> Option<&'a Value> {
    p.get(obj).and_then(|o| o.get(k))
}

fn nested_str(p: &Map<String, Value>, obj: &str, k: &str) -> Option<String> {
    nested(p, obj, k)
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// `file_extension`, else the blob name's extension.
fn extension(p: &Map<String, Value>) -> String {
    let blob = str_param(p, "blob_name").unwrap_or_default();
    str_param(p, "file_extension")
        .map(str::to_string)
        .unwrap_or_else(|| {
            let file = blob.rsplit('/').next().unwrap_or(blob);
            file.rsplit_once('.')
                .map(|(_, e)| e.to_string())
                .unwrap_or_default()
        })
}

/// The source spec of the job's parameters.
fn source_spec(p: &Map<String, Value>) -> Result<SourceSpec, VectorError> {
    let blob = str_param(p, "blob_name").unwrap_or_default();
    let container = str_param(p, "container_name").unwrap_or_default();
    Ok(SourceSpec {
        format: Format::from_extension(&extension(p))?,
        layer: str_param(p, "layer").map(str::to_string),
        csv: CsvOptions {
            lat_name: nested_str(p, "converter_params", "lat_name"),
            lon_name: nested_str(p, "converter_params", "lon_name"),
            wkt_column: nested_str(p, "converter_params", "wkt_column"),
            delimiter: nested_str(p, "converter_params", "delimiter"),
        },
        source_crs: nested_str(p, "converter_params", "source_crs"),
        label: format!("{container}/{blob}"),
    })
}

fn target_srid(p: &Map<String, Value>) -> i64 {
    nested(p, "geometry_params", "target_srid")
        .and_then(Value::as_i64)
        .unwrap_or(4326)
}

fn geometry_flag(p: &Map<String, Value>, k: &str) -> bool {
    nested(p, "geometry_params", k)
        .and_then(Value::as_bool)
        .unwrap_or(true)
}

/// The ingest_vector job type.
pub struct IngestVector;

impl Job for IngestVector {
    fn job_type(&self) -> &'static str {
        JOB_TYPE
    }

    fn description(&self) -> &'static str {
        "Load a vector file (GeoPackage, zipped Shapefile, GeoJSON, FlatGeobuf, CSV, KML) into a PostGIS table in parallel idempotent chunks, and register a STAC item in pgSTAC"
    }

    fn parameters(&self) -> Vec<ParamSpec> {
        parameters()
    }

    fn validate(&self, params: &Map<String, Value>) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let blob = str_param(params, "blob_name").unwrap_or_default();
        if blob.ends_with('/') || blob.is_empty() {
            errors.push(FieldError {
                field: "blob_name".into(),
                rule: "blob_name".into(),
                value: json!(blob),
                message: "a blob name, not a folder".into(),
            });
        }
        let lat = nested(params, "converter_params", "lat_name");
        let lon = nested(params, "converter_params", "lon_name");
        if lat.is_some() != lon.is_some() {
            let (field, value) = if lat.is_some() {
                ("converter_params.lon_name", Value::Null)
            } else {
                ("converter_params.lat_name", Value::Null)
            };
            errors.push(FieldError {
                field: field.into(),
                rule: "required".into(),
                value,
                message: "lat_name and lon_name go together".into(),
            });
        }
        errors
    }

    fn stages(&self) -> Vec<StageDef> {
        vec![
            StageDef::new("prepare", "prepare_vector"),
            StageDef::new("load", "load_vector_chunk"),
            StageDef::new("finalize_table", "finalize_vector_table"),
        ]
    }

    fn create_tasks(&self, input: &StageInput<'_>) -> Result<Vec<TaskSpec>, JobError> {
        let p = input.params;
        let blob = str_param(p, "blob_name").unwrap_or_default();
        match input.stage {
            1 => {
                // An unknown format is prepare's permanent failure with the reason (the task
                // gets the extension and no source spec), not a planning error.
                Ok(vec![TaskSpec::new(
                    blob,
                    json!({
                        "blob_name": blob,
                        "container_name": p.get("container_name"),
                        "file_extension": extension(p),
                        "source": source_spec(p).ok(),
                        "schema": p.get("schema"),
                        "table_name": p.get("table_name"),
                        "target_srid": target_srid(p),
                        "promote_to_multi": geometry_flag(p, "promote_to_multi"),
                        "overwrite": p.get("overwrite").and_then(Value::as_bool).unwrap_or(false),
                        "chunk_size": p.get("chunk_size").and_then(Value::as_u64).unwrap_or(DEFAULT_CHUNK_SIZE),
                        "indexes": p.get("indexes").cloned().unwrap_or(json!([])),
                    }),
                )])
            }
            2 => {
                let spec = source_spec(p).map_err(|e| JobError::new(e.message))?;
                let prep = &input
                    .previous
                    .first()
                    .ok_or_else(|| {
                        JobError::new("load needs the prepare result, which is missing")
                    })?
                    .result;
                let chunks = prep
                    .get("chunks")
                    .and_then(Value::as_array)
                    .ok_or_else(|| JobError::new("the prepare result has no chunks"))?;
                Ok(chunks
                    .iter()
                    .map(|c| {
                        let n = c.get("chunk").and_then(Value::as_u64).unwrap_or(0);
                        TaskSpec::new(
                            format!("chunk-{n:06}"),
                            json!({
                                "blob_name": blob,
                                "container_name": p.get("container_name"),
                                "source": spec,
                                "table": prep.get("table"),
                                "postgis_schema": prep.get("postgis_schema"),
                                "make_valid": geometry_flag(p, "make_valid"),
                                "chunk": n,
                                "start": c.get("start"),
                                "count": c.get("count"),
                                "fid_start": c.get("fid_start"),
                                "batch_id": format!("{}:{n}", input.job_id),
                                // What finalize_table needs of prepare, passed along.
                                "prepared": {
                                    "source": prep.get("source"),
                                    "table": prep.get("table"),
                                    "postgis_schema": prep.get("postgis_schema"),
                                },
                            }),
                        )
                    })
                    .collect())
            }
            3 => {
                // Chunk 0's result echoes what the loads were given of prepare's result.
                let loads: Vec<&Value> = input.previous.iter().map(|r| &r.result).collect();
                let first = loads.first().ok_or_else(|| {
                    JobError::new("finalize_table needs at least one load result")
                })?;
                let prepared = first.get("prepared").ok_or_else(|| {
                    JobError::new("the load results do not carry prepare's table")
                })?;
                let table: TableDef =
                    serde_json::from_value(prepared.get("table").cloned().unwrap_or(Value::Null))
                        .map_err(|e| JobError::new(format!("the prepared table definition: {e}")))?;
                let expected: u64 = loads
                    .iter()
                    .map(|r| r.get("rows").and_then(Value::as_u64).unwrap_or(0))
                    .sum();
                let index_columns: Vec<String> = p
                    .get("indexes")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .filter_map(|i| table.find_column(i).map(|c| c.name.clone()))
                    .collect();
                let chunks: Vec<Value> = loads
                    .iter()
                    .map(|r| {
                        json!({
                            "chunk": r.get("chunk"),
                            "batch_id": r.get("batch_id"),
                            "rows": r.get("rows"),
                            "repaired": r.get("repaired"),
                            "dropped": r.get("dropped"),
                            "invalid_kept": r.get("invalid_kept"),
                            "timings_ms": r.get("timings_ms"),
                        })
                    })
                    .collect();
                let item_id = str_param(p, "item_id")
                    .map(str::to_string)
                    .unwrap_or_else(|| table.display());
                Ok(vec![TaskSpec::new(
                    "table",
                    json!({
                        "blob_name": str_param(p, "blob_name"),
                        "container_name": p.get("container_name"),
                        "table": table,
                        "postgis_schema": prepared.get("postgis_schema"),
                        "index_columns": index_columns,
                        "expected_rows": expected,
                        "collection_id": p.get("collection_id"),
                        "item_id": item_id,
                        "source": prepared.get("source"),
                        "chunks": chunks,
                    }),
                )])
            }
            s => Err(JobError::new(format!(
                "ingest_vector has 3 stages, asked for stage {s}"
            ))),
        }
    }

    fn finalize(&self, input: &FinalizeInput<'_>) -> Result<Value, JobError> {
        let r = &input
            .last_stage_results
            .first()
            .ok_or_else(|| JobError::new("finalize_table left no result"))?
            .result;
        let chunks = r.get("chunks").cloned().unwrap_or(json!([]));
        let sum = |k: &str| -> u64 {
            chunks
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| c.get(k).and_then(Value::as_u64).unwrap_or(0))
                .sum()
        };
        Ok(json!({
            "job_type": JOB_TYPE,
            "status": "completed",
            "blob_name": input.params.get("blob_name"),
            "container_name": input.params.get("container_name"),
            "table": r.get("table"),
            "rows": r.get("rows"),
            "srid": r.get("srid"),
            "geometry_type": r.get("geometry_type"),
            "bbox": r.get("bbox"),
            "indexes": r.get("indexes"),
            "invalid_geometries": r.get("invalid_geometries"),
            "repaired": sum("repaired"),
            "dropped": sum("dropped"),
            "invalid_kept": sum("invalid_kept"),
            "chunks": chunks,
            "source": r.get("source"),
            "stac": r.get("stac"),
            "stages": input.stages,
        }))
    }
}

/// Registers ingest_vector and its handlers.
pub fn register(r: &mut Registry, deps: VectorDeps) {
    r.add_job(IngestVector);
    let d = deps.clone();
    r.mark_heavy("prepare_vector");
    r.mark_heavy("load_vector_chunk");
    r.add_handler("prepare_vector", move |ctx| {
        handlers::prepare(d.clone(), ctx)
    });
    let d = deps.clone();
    r.add_handler("load_vector_chunk", move |ctx| {
        handlers::load_chunk(d.clone(), ctx)
    });
    r.add_handler("finalize_vector_table", move |ctx| {
        handlers::finalize_table(deps.clone(), ctx)
    });
}
