//! `process_raster`: a GeoTIFF blob becomes a verified Cloud-Optimized GeoTIFF per requested
//! tier and one STAC item in pgSTAC. Parameters are the earlier system's.
//!
//! | stage | name | task type | tasks | what |
//! |---|---|---|---|---|
//! | 1 | validate_raster | `validate_raster` | 1 | open the blob, report it, refuse what cannot be processed |
//! | 2 | create_cog | `create_cog` | one per tier (`all`: three) | reproject, tile, overviews, verify, upload |
//! | 3 | extract_stac_metadata | `extract_stac_metadata` | 1 | build the STAC item, upsert it (collection created if missing) |
//!
//! Finalize reports the validation summary, the COGs with sizes and checks, the item and its
//! collection, and tile URLs when `TITILER_BASE_URL` is set. Every stage is fail-fast.
//!
//! # Layout
//! - [`profile`]: raster type detection and the COG settings per type and tier (pure).
//! - [`inspect`]: stage 1's GDAL work.
//! - [`cog`]: stage 2's GDAL work, [`cog::create_cog`] (input path, output path, options ->
//!   verified report).
//! - [`stac_item`]: the STAC item (pure).
//! - [`handlers`]: the task handlers: blob transfer, `spawn_blocking`, pgSTAC.

pub(crate) mod cog;
pub mod handlers;
pub(crate) mod inspect;
pub mod profile;
pub(crate) mod stac_item;

use serde_json::{Map, Value, json};

use super::list_container_contents::filter::check_container_name;
use super::{
    FieldError, FinalizeInput, Job, JobError, ParamKind, ParamSpec, Registry, StageDef, StageInput,
    TaskError, TaskSpec,
};
pub use handlers::{RasterDeps, StacDatabase};
use profile::{RasterType, Tier};

/// The job type name.
pub const JOB_TYPE: &str = "process_raster";

/// The default input container when `BRONZE_CONTAINER_NAME` is not set (the earlier system's).
pub const DEFAULT_BRONZE: &str = "rmhazuregeobronze";
/// The default output container when `SILVER_CONTAINER_NAME` is not set.
pub const DEFAULT_SILVER: &str = "rmhazuregeosilver";
/// The collection items go to when `collection_id` is not given.
pub const DEFAULT_COLLECTION: &str = "rasters";

/// A failed raster check or GDAL operation; always permanent (the same file fails the same way).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RasterError {
    /// What failed (`NotAGeoTiff`, `NoCrs`, `CogCheckFailed`, ...), the task's error type.
    pub check: &'static str,
    /// What went wrong, naming the blob.
    pub message: String,
}

impl RasterError {
    /// An error for `check`.
    pub fn new(check: &'static str, message: impl Into<String>) -> Self {
        Self {
            check,
            message: message.into(),
        }
    }
}

impl From<RasterError> for TaskError {
    fn from(e: RasterError) -> Self {
        TaskError::permanent(e.check, e.message)
    }
}

pub(crate) fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

fn check_crs(s: &str) -> Result<(), (&'static str, String)> {
    inspect::parse_crs(s).map(drop).map_err(|e| ("crs", e))
}

pub(crate) fn check_item_id(s: &str) -> Result<(), (&'static str, String)> {
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

pub(crate) fn check_folder(s: &str) -> Result<(), (&'static str, String)> {
    if s.split('/').any(|p| p == "..") || s.starts_with('/') {
        Err((
            "blob_path",
            format!("{s:?}: a relative folder without '..' segments"),
        ))
    } else {
        Ok(())
    }
}

/// The parameters (compatible with the earlier system's `process_raster`).
pub fn parameters() -> Vec<ParamSpec> {
    vec![
        ParamSpec::new("blob_name", ParamKind::String, "The GeoTIFF to process")
            .required()
            .max(1024.0),
        ParamSpec::new(
            "container_name",
            ParamKind::String,
            "Container holding the blob (default: BRONZE_CONTAINER_NAME)",
        )
        .max(63.0)
        .check(check_container_name)
        .default(json!(env_or("BRONZE_CONTAINER_NAME", DEFAULT_BRONZE))),
        ParamSpec::new(
            "input_crs",
            ParamKind::String,
            "CRS to use when the file has none (EPSG:nnnn, WKT or PROJ string)",
        )
        .check(check_crs),
        ParamSpec::new(
            "raster_type",
            ParamKind::String,
            "What the pixels are; auto detects it from bands, type and palette",
        )
        .allowed(&["auto", "rgb", "rgba", "dem", "categorical", "multispectral"])
        .default(json!("auto")),
        ParamSpec::new(
            "output_tier",
            ParamKind::String,
            "Which COG to write; all writes the three",
        )
        .allowed(&Tier::PARAM_VALUES)
        .default(json!("analysis")),
        ParamSpec::new("target_crs", ParamKind::String, "CRS of the COG")
            .check(check_crs)
            .default(json!("EPSG:4326")),
        ParamSpec::new(
            "jpeg_quality",
            ParamKind::Integer,
            "JPEG quality of the visualization tier of RGB rasters",
        )
        .range(1.0, 100.0)
        .default(json!(85)),
        ParamSpec::new(
            "output_container",
            ParamKind::String,
            "Container for the COGs (default: SILVER_CONTAINER_NAME)",
        )
        .max(63.0)
        .check(check_container_name)
        .default(json!(env_or("SILVER_CONTAINER_NAME", DEFAULT_SILVER))),
        ParamSpec::new(
            "output_folder",
            ParamKind::String,
            "Folder of the COGs in the output container (default: the blob's own folder)",
        )
        .max(512.0)
        .check(check_folder),
        ParamSpec::new(
            "collection_id",
            ParamKind::String,
            "STAC collection of the item (created when missing)",
        )
        .max(256.0)
        .check(check_item_id)
        .default(json!(DEFAULT_COLLECTION)),
        ParamSpec::new(
            "item_id",
            ParamKind::String,
            "STAC item id (default: derived from the blob name)",
        )
        .max(256.0)
        .check(check_item_id),
        ParamSpec::new(
            "resampling",
            ParamKind::String,
            "Resampling for the warp and the overviews (default: by raster type)",
        )
        .allowed(&profile::RESAMPLING),
        ParamSpec::new(
            "strict_mode",
            ParamKind::Boolean,
            "Fail on anything validation would only warn about",
        )
        .default(json!(false)),
    ]
}

/// The item id derived from a blob name: the path without extension, lowercased, every run of
/// other characters a single '-' (`dem/Elev 2m.tif` -> `dem-elev-2m`).
pub fn item_id_from_blob(blob: &str) -> String {
    let stem = blob.rsplit_once('.').map_or(blob, |(s, _)| s);
    let mut id = String::new();
    for c in stem.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            id.push(c.to_ascii_lowercase());
        } else if !id.ends_with('-') {
            id.push('-');
        }
    }
    let id = id.trim_matches('-').to_string();
    if id.is_empty() { "raster".into() } else { id }
}

/// Where a tier's COG goes: `{folder}/{stem}_cog_{tier}.tif`, the folder being `output_folder` or
/// the blob's own.
pub fn output_blob(blob: &str, output_folder: Option<&str>, tier: Tier) -> String {
    let (dir, file) = blob.rsplit_once('/').unwrap_or(("", blob));
    let stem = file.rsplit_once('.').map_or(file, |(s, _)| s);
    let folder = output_folder.unwrap_or(dir).trim_matches('/');
    let name = format!("{stem}_cog_{}.tif", tier.as_str());
    if folder.is_empty() {
        name
    } else {
        format!("{folder}/{name}")
    }
}

/// The validate_raster task parameters of `blob` (stage 1). Shared with
/// process_raster_collection, whose parameters use the same names.
pub fn validate_task(p: &Map<String, Value>, blob: &str) -> Value {
    json!({
        "blob_name": blob,
        "container_name": p.get("container_name"),
        "input_crs": p.get("input_crs"),
        "raster_type": p.get("raster_type"),
        "target_crs": p.get("target_crs"),
        "strict_mode": p.get("strict_mode"),
    })
}

/// The create_cog task parameters of `blob` for every tier `p` asks for, from its validation
/// report `v` (stage 1's result). Shared with process_raster_collection, whose parameters use the
/// same names.
pub fn cog_tasks(
    p: &Map<String, Value>,
    blob: &str,
    v: &Value,
) -> Result<Vec<(Tier, Value)>, JobError> {
    let raster_type = v
        .get("raster_type")
        .and_then(Value::as_str)
        .and_then(RasterType::parse)
        .ok_or_else(|| JobError::new(format!("the validation of {blob} has no raster_type")))?;
    let has_nodata = v.get("nodata").is_some_and(|n| !n.is_null());
    let eight_bit = v.get("data_type").and_then(Value::as_str) == Some("Byte");
    let tiers = Tier::requested(str_param(p, "output_tier").unwrap_or("analysis"))
        .ok_or_else(|| JobError::new("output_tier is not a tier"))?;
    let quality = p.get("jpeg_quality").and_then(Value::as_u64).unwrap_or(85) as u8;
    let source_crs = (v.get("crs_source").and_then(Value::as_str) == Some("input_crs"))
        .then(|| p.get("input_crs").cloned())
        .flatten();
    let summary = handlers::validation_summary(v);
    Ok(tiers
        .into_iter()
        .map(|tier| {
            let prof = profile::profile(
                raster_type,
                tier,
                eight_bit,
                has_nodata,
                quality,
                str_param(p, "resampling"),
            );
            let params = json!({
                "blob_name": blob,
                "container_name": p.get("container_name"),
                "tier": tier,
                "raster_type": raster_type,
                "source_crs": source_crs,
                "drop_nodata": v.get("nodata_dropped").and_then(Value::as_bool).unwrap_or(false),
                "target_crs": p.get("target_crs"),
                "profile": prof,
                "output_container": p.get("output_container"),
                "output_blob": output_blob(blob, str_param(p, "output_folder"), tier),
                "validation": summary,
            });
            (tier, params)
        })
        .collect())
}

/// The process_raster job type.
pub struct ProcessRaster;

fn str_param<'a>(p: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    p.get(k).and_then(Value::as_str)
}

impl Job for ProcessRaster {
    fn job_type(&self) -> &'static str {
        JOB_TYPE
    }

    fn description(&self) -> &'static str {
        "Validate a GeoTIFF, write a verified Cloud-Optimized GeoTIFF per tier, and register a STAC item in pgSTAC"
    }

    fn parameters(&self) -> Vec<ParamSpec> {
        parameters()
    }

    fn validate(&self, params: &Map<String, Value>) -> Vec<FieldError> {
        let blob = str_param(params, "blob_name").unwrap_or_default();
        if blob.ends_with('/') || blob.is_empty() {
            return vec![FieldError {
                field: "blob_name".into(),
                rule: "blob_name".into(),
                value: json!(blob),
                message: "a blob name, not a folder".into(),
            }];
        }
        Vec::new()
    }

    fn stages(&self) -> Vec<StageDef> {
        vec![
            StageDef::new("validate_raster", "validate_raster"),
            StageDef::new("create_cog", "create_cog"),
            StageDef::new("extract_stac_metadata", "extract_stac_metadata"),
        ]
    }

    fn create_tasks(&self, input: &StageInput<'_>) -> Result<Vec<TaskSpec>, JobError> {
        let p = input.params;
        let blob = str_param(p, "blob_name").unwrap_or_default();
        match input.stage {
            1 => Ok(vec![TaskSpec::new(blob, validate_task(p, blob))]),
            2 => {
                let v = &input
                    .previous
                    .first()
                    .ok_or_else(|| {
                        JobError::new(
                            "create_cog needs the validation of stage 1, which left no result",
                        )
                    })?
                    .result;
                Ok(cog_tasks(p, blob, v)?
                    .into_iter()
                    .map(|(tier, params)| TaskSpec::new(tier.as_str(), params))
                    .collect())
            }
            3 => {
                let cogs: Vec<Value> = input.previous.iter().map(|r| r.result.clone()).collect();
                let item_id = str_param(p, "item_id")
                    .map(str::to_string)
                    .unwrap_or_else(|| item_id_from_blob(blob));
                Ok(vec![TaskSpec::new(
                    "stac_item",
                    json!({
                        "blob_name": blob,
                        "container_name": p.get("container_name"),
                        "collection_id": p.get("collection_id"),
                        "item_id": item_id,
                        "cogs": cogs,
                    }),
                )])
            }
            s => Err(JobError::new(format!(
                "process_raster has 3 stages, asked for stage {s}"
            ))),
        }
    }

    fn finalize(&self, input: &FinalizeInput<'_>) -> Result<Value, JobError> {
        let stac = &input
            .last_stage_results
            .first()
            .ok_or_else(|| JobError::new("extract_stac_metadata left no result"))?
            .result;
        let titiler = std::env::var("TITILER_BASE_URL")
            .ok()
            .map(|b| b.trim().trim_end_matches('/').to_string())
            .filter(|b| !b.is_empty());
        let cogs: Vec<Value> = stac
            .get("cogs")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|mut c| {
                if let (Some(base), Some(href)) = (
                    &titiler,
                    c.get("href").and_then(Value::as_str).map(str::to_string),
                ) && let Some(o) = c.as_object_mut()
                {
                    o.insert("tiles".into(), handlers::tile_urls(base, &href));
                }
                c
            })
            .collect();
        Ok(json!({
            "job_type": JOB_TYPE,
            "status": "completed",
            "blob_name": input.params.get("blob_name"),
            "container_name": input.params.get("container_name"),
            "validation": stac.get("validation"),
            "cogs": cogs,
            "stac": {
                "item_id": stac.get("item_id"),
                "collection_id": stac.get("collection_id"),
                "collection_created": stac.get("collection_created"),
                "bbox": stac.get("bbox"),
            },
            "stages": input.stages,
        }))
    }
}

/// Registers process_raster and its handlers.
pub fn register(r: &mut Registry, deps: RasterDeps) {
    r.add_job(ProcessRaster);
    let d = deps.clone();
    r.mark_heavy("validate_raster");
    r.mark_heavy("create_cog");
    r.mark_heavy("extract_stac_metadata");
    r.add_handler("validate_raster", move |ctx| {
        handlers::validate_raster(d.clone(), ctx)
    });
    let d = deps.clone();
    r.add_handler("create_cog", move |ctx| {
        handlers::create_cog(d.clone(), ctx)
    });
    r.add_handler("extract_stac_metadata", move |ctx| {
        handlers::extract_stac_metadata(deps.clone(), ctx)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_ids_and_output_names_come_from_the_blob_name() {
        assert_eq!(item_id_from_blob("dem/Elev 2m.tif"), "dem-elev-2m");
        assert_eq!(item_id_from_blob("a.b.tif"), "a-b");
        assert_eq!(item_id_from_blob("!!.tif"), "raster");
        assert_eq!(
            output_blob("dem/elev.tif", None, Tier::Analysis),
            "dem/elev_cog_analysis.tif"
        );
        assert_eq!(
            output_blob("dem/elev.tif", Some("cogs/"), Tier::Archive),
            "cogs/elev_cog_archive.tif"
        );
        assert_eq!(
            output_blob("elev.tif", None, Tier::Visualization),
            "elev_cog_visualization.tif"
        );
    }

    #[test]
    fn folders_and_ids_are_checked() {
        assert!(check_folder("a/b").is_ok());
        assert!(check_folder("../x").is_err() && check_folder("/abs").is_err());
        assert!(check_item_id("my-item_1.0").is_ok());
        assert!(check_item_id("a b").is_err());
    }
}
