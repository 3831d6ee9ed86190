//! `process_raster_collection`: many rasters, one fan-out, one mosaic, one STAC collection.
//! Parameters are the earlier system's (`collection_id`, `container_name`, `blob_list`) plus
//! listing by `prefix` / `suffix` and a failure budget `max_failures`.
//!
//! | stage | name | task type | tasks | policy |
//! |---|---|---|---|---|
//! | 1 | list_blobs | `list_container_blobs` | 1, none when `blob_list` is given | fail fast |
//! | 2 | validate | `validate_raster` | one per input | `max_failures` over the job |
//! | 3 | create_cog | `create_cog` | one per valid input and tier | `max_failures` over the job |
//! | 4 | mosaic | `create_mosaicjson` | 1 (fan-in) | fail fast |
//! | 5 | stac_collection | `create_stac_collection` | 1 | fail fast |
//!
//! Stages 2 and 3 reuse process_raster's handlers and task parameters; the budget counts the
//! failed tasks of both stages together (`StagePolicy::MaxFailures`), so `max_failures: 0` fails
//! the job at the first bad input. Finalize reports counts and every input's outcome, and the job
//! ends `completed_with_errors` when some inputs failed within the budget.
//!
//! # Layout
//! - [`mosaic`]: the MosaicJSON document and its zoom rule (pure).
//! - [`collection`]: the STAC Collection (pure).
//! - [`handlers`]: the mosaic and collection tasks (Blob Storage, pgSTAC).

mod collection;
pub mod handlers;
pub mod mosaic;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::list_container_contents::filter::check_container_name;
use super::process_raster::profile::Tier;
use super::process_raster::{
    self, DEFAULT_BRONZE, DEFAULT_SILVER, RasterDeps, check_folder, check_item_id, env_or,
    item_id_from_blob,
};
use super::{
    FailedTask, FieldError, FinalizeInput, Job, JobError, ParamKind, ParamSpec, Registry, StageDef,
    StageInput, StagePolicy, TaskSpec,
};

/// The job type name.
pub const JOB_TYPE: &str = "process_raster_collection";

/// Most inputs of one job (the listing's own limit).
pub const MAX_INPUTS: usize = 10_000;

const BUDGET: StagePolicy = StagePolicy::MaxFailures {
    param: "max_failures",
};

/// Stage names, in order (finalize and the outcomes name the stage a failure happened in).
const STAGES: [&str; 5] = [
    "list_blobs",
    "validate",
    "create_cog",
    "mosaic",
    "stac_collection",
];

/// The parameters (compatible with the earlier system's `process_raster_collection`).
pub fn parameters() -> Vec<ParamSpec> {
    let raster = process_raster::parameters();
    let shared = |name: &str| {
        raster
            .iter()
            .find(|p| p.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("process_raster has a {name} parameter"))
    };
    let mut v = vec![
        ParamSpec::new(
            "collection_id",
            ParamKind::String,
            "STAC collection to create or update (its id; items go into it)",
        )
        .required()
        .max(256.0)
        .check(check_item_id),
        ParamSpec::new(
            "container_name",
            ParamKind::String,
            "Container holding the rasters (default: BRONZE_CONTAINER_NAME)",
        )
        .max(63.0)
        .check(check_container_name)
        .default(json!(env_or("BRONZE_CONTAINER_NAME", DEFAULT_BRONZE))),
        ParamSpec::new(
            "blob_list",
            ParamKind::Array(Box::new(ParamKind::String)),
            "The rasters, by blob name (instead of prefix / suffix)",
        )
        .range(1.0, MAX_INPUTS as f64),
        ParamSpec::new(
            "prefix",
            ParamKind::String,
            "List the container: only names starting with this (instead of blob_list)",
        )
        .max(1024.0),
        ParamSpec::new(
            "suffix",
            ParamKind::String,
            "List the container: only names ending with this, case-insensitive (e.g. .tif)",
        )
        .max(256.0),
        ParamSpec::new(
            "max_failures",
            ParamKind::Integer,
            "How many inputs may fail (validation or COG) before the job fails; 0 = fail at the first",
        )
        .range(0.0, MAX_INPUTS as f64)
        .default(json!(0)),
    ];
    for name in [
        "input_crs",
        "raster_type",
        "output_tier",
        "target_crs",
        "jpeg_quality",
        "resampling",
        "strict_mode",
    ] {
        v.push(shared(name));
    }
    v.extend([
        ParamSpec::new(
            "output_container",
            ParamKind::String,
            "Container for the COGs and the MosaicJSON (default: SILVER_CONTAINER_NAME)",
        )
        .max(63.0)
        .check(check_container_name)
        .default(json!(env_or("SILVER_CONTAINER_NAME", DEFAULT_SILVER))),
        ParamSpec::new(
            "output_folder",
            ParamKind::String,
            "Folder of the COGs and the MosaicJSON (default: each blob's own folder; the MosaicJSON at the root)",
        )
        .max(512.0)
        .check(check_folder),
    ]);
    v
}

fn str_param<'a>(p: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    p.get(k).and_then(Value::as_str)
}

/// Where the MosaicJSON goes: `{output_folder}/{collection_id}.mosaic.json`.
pub fn mosaic_blob(collection_id: &str, output_folder: Option<&str>) -> String {
    let folder = output_folder.unwrap_or("").trim_matches('/');
    if folder.is_empty() {
        format!("{collection_id}.mosaic.json")
    } else {
        format!("{folder}/{collection_id}.mosaic.json")
    }
}

/// The inputs: `blob_list`, or the stage-1 listing filtered by `suffix`.
fn inputs(input: &StageInput<'_>) -> Result<Vec<String>, JobError> {
    let p = input.params;
    if let Some(list) = p.get("blob_list").and_then(Value::as_array) {
        return Ok(list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect());
    }
    let listing = input.previous.first().ok_or_else(|| {
        JobError::new("the validate stage needs the listing of stage 1, which left no result")
    })?;
    let blobs = listing
        .result
        .get("blobs")
        .and_then(Value::as_array)
        .ok_or_else(|| JobError::new("the stage 1 listing has no blobs array"))?;
    if listing.result.get("limit_reached").and_then(Value::as_bool) == Some(true) {
        return Err(JobError::new(format!(
            "more than {MAX_INPUTS} blobs in container {} match prefix {:?}: narrow the prefix or split the collection",
            str_param(p, "container_name").unwrap_or_default(),
            str_param(p, "prefix").unwrap_or(""),
        )));
    }
    let suffix = str_param(p, "suffix").map(str::to_ascii_lowercase);
    Ok(blobs
        .iter()
        .filter_map(|b| b.get("name").and_then(Value::as_str))
        .filter(|n| !n.ends_with('/'))
        .filter(|n| {
            suffix
                .as_deref()
                .is_none_or(|s| n.to_ascii_lowercase().ends_with(s))
        })
        .map(str::to_string)
        .collect())
}

/// The input blob of a failed task (its parameters name it).
fn failed_blob(f: &FailedTask) -> String {
    f.parameters
        .get("blob_name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The blobs that failed in an earlier stage.
fn failed_blobs(failed: &[FailedTask]) -> BTreeSet<String> {
    failed.iter().map(failed_blob).collect()
}

/// What stage 4 and 5 carry of a create_cog result: what the item, the mosaic and the outcome
/// need.
fn slim_cog(r: &Value) -> Value {
    let v = r.get("validation").cloned().unwrap_or(Value::Null);
    json!({
        "blob_name": v.get("blob_name"),
        "tier": r.get("tier"),
        "href": r.get("href"),
        "output_container": r.get("output_container"),
        "output_blob": r.get("output_blob"),
        "report": r.get("report"),
        "validation": {
            "blob_name": v.get("blob_name"),
            "container_name": v.get("container_name"),
            "last_modified": v.get("last_modified"),
            "data_type": v.get("data_type"),
            "band_count": v.get("band_count"),
            "raster_type": v.get("raster_type"),
        },
    })
}

/// Every input's outcome: `ok` with its item id (the inputs whose COGs were all written), or the
/// stage and error of its first failure, sorted by blob name.
pub fn outcomes(cogs: &[Value], failed: &[FailedTask]) -> Vec<Value> {
    let mut out: BTreeMap<String, Value> = BTreeMap::new();
    for f in failed {
        let blob = failed_blob(f);
        out.entry(blob.clone()).or_insert_with(|| {
            json!({
                "blob_name": blob,
                "outcome": "failed",
                "stage": f.stage,
                "stage_name": STAGES.get((f.stage - 1) as usize).copied().unwrap_or("unknown"),
                "task_id": f.task_id,
                "error": f.error,
            })
        });
    }
    for c in cogs {
        let Some(blob) = c.get("blob_name").and_then(Value::as_str) else {
            continue;
        };
        out.entry(blob.to_string()).or_insert_with(
            || json!({"blob_name": blob, "outcome": "ok", "item_id": item_id_from_blob(blob)}),
        );
    }
    out.into_values().collect()
}

/// The process_raster_collection job type.
pub struct ProcessRasterCollection;

impl Job for ProcessRasterCollection {
    fn job_type(&self) -> &'static str {
        JOB_TYPE
    }

    fn description(&self) -> &'static str {
        "Validate many rasters, write a COG per valid one, mosaic them (MosaicJSON) and register one STAC collection with an item per COG, tolerating up to max_failures bad inputs"
    }

    fn parameters(&self) -> Vec<ParamSpec> {
        parameters()
    }

    fn validate(&self, params: &Map<String, Value>) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let Some(list) = params.get("blob_list").and_then(Value::as_array) else {
            return errs;
        };
        if list.is_empty() {
            errs.push(FieldError {
                field: "blob_list".into(),
                rule: "min".into(),
                value: json!([]),
                message: "at least one blob (or list the container with prefix / suffix)".into(),
            });
        }
        for field in ["prefix", "suffix"] {
            if let Some(v) = params.get(field) {
                errs.push(FieldError {
                    field: field.into(),
                    rule: "exclusive".into(),
                    value: v.clone(),
                    message: format!("give either blob_list or {field}, not both"),
                });
            }
        }
        let mut seen = BTreeMap::new();
        for (i, b) in list.iter().enumerate() {
            let name = b.as_str().unwrap_or_default();
            let bad = if name.is_empty() || name.ends_with('/') {
                Some("a blob name, not a folder".to_string())
            } else {
                seen.insert(item_id_from_blob(name), i).map(|j| {
                    format!(
                        "its item id {} is the one of blob_list[{j}] ({}); rename one",
                        item_id_from_blob(name),
                        list[j]
                    )
                })
            };
            if let Some(message) = bad {
                errs.push(FieldError {
                    field: format!("blob_list[{i}]"),
                    rule: "blob_name".into(),
                    value: b.clone(),
                    message,
                });
            }
        }
        errs
    }

    fn stages(&self) -> Vec<StageDef> {
        vec![
            StageDef::new(STAGES[0], "list_container_blobs"),
            StageDef::new(STAGES[1], "validate_raster").policy(BUDGET),
            StageDef::new(STAGES[2], "create_cog").policy(BUDGET),
            StageDef::new(STAGES[3], "create_mosaicjson"),
            StageDef::new(STAGES[4], "create_stac_collection"),
        ]
    }

    fn create_tasks(&self, input: &StageInput<'_>) -> Result<Vec<TaskSpec>, JobError> {
        let p = input.params;
        let collection_id = str_param(p, "collection_id").unwrap_or_default();
        match input.stage {
            1 if p.contains_key("blob_list") => Ok(Vec::new()),
            1 => {
                // An extension-like suffix filters while listing, so the listing limit counts
                // matching blobs only; any suffix is applied again to the names.
                let ext = str_param(p, "suffix")
                    .map(|s| s.trim_start_matches('.'))
                    .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric()));
                Ok(vec![TaskSpec::new(
                    "list",
                    json!({
                        "container_name": p.get("container_name"),
                        "file_limit": MAX_INPUTS,
                        "filter": {"prefix": p.get("prefix"), "extensions": ext.map(|e| vec![e])},
                    }),
                )])
            }
            2 => {
                let blobs = inputs(input)?;
                if blobs.is_empty() {
                    return Err(JobError::new(format!(
                        "no raster to process: no blob in container {} matches prefix {:?} and suffix {:?}",
                        str_param(p, "container_name").unwrap_or_default(),
                        str_param(p, "prefix").unwrap_or(""),
                        str_param(p, "suffix").unwrap_or(""),
                    )));
                }
                let mut ids: BTreeMap<String, &str> = BTreeMap::new();
                for b in &blobs {
                    if let Some(other) = ids.insert(item_id_from_blob(b), b) {
                        return Err(JobError::new(format!(
                            "blobs {other} and {b} would both be STAC item {} of collection {collection_id}; rename one or list them with blob_list",
                            item_id_from_blob(b)
                        )));
                    }
                }
                Ok(blobs
                    .iter()
                    .map(|b| TaskSpec::new(b, process_raster::validate_task(p, b)))
                    .collect())
            }
            3 => {
                let mut tasks = Vec::new();
                for r in input.previous {
                    let blob = r
                        .result
                        .get("blob_name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            JobError::new(format!(
                                "validation task {} left no blob_name",
                                r.task_id
                            ))
                        })?;
                    for (tier, params) in process_raster::cog_tasks(p, blob, &r.result)? {
                        tasks.push(TaskSpec::new(format!("{blob}|{}", tier.as_str()), params));
                    }
                }
                Ok(tasks)
            }
            4 => {
                let failed = failed_blobs(input.previous_failed);
                let cogs: Vec<Value> = input
                    .previous
                    .iter()
                    .map(|r| slim_cog(&r.result))
                    .filter(|c| {
                        c.get("blob_name")
                            .and_then(Value::as_str)
                            .is_some_and(|b| !failed.contains(b))
                    })
                    .collect();
                if cogs.is_empty() {
                    return Err(JobError::new(format!(
                        "no COG to mosaic: all {} inputs failed (the first: {})",
                        failed.len(),
                        input
                            .previous_failed
                            .first()
                            .map(|f| f.error.as_str())
                            .unwrap_or("none recorded")
                    )));
                }
                let tier = Tier::requested(str_param(p, "output_tier").unwrap_or("analysis"))
                    .and_then(|t| {
                        t.iter()
                            .copied()
                            .find(|t| *t == Tier::Analysis)
                            .or(t.first().copied())
                    })
                    .unwrap_or(Tier::Analysis);
                Ok(vec![TaskSpec::new(
                    "fan_in_mosaic",
                    json!({
                        "collection_id": collection_id,
                        "target_crs": p.get("target_crs"),
                        "mosaic_tier": tier,
                        "output_container": p.get("output_container"),
                        "mosaic_blob": mosaic_blob(collection_id, str_param(p, "output_folder")),
                        "cogs": cogs,
                    }),
                )])
            }
            5 => {
                let m = &input
                    .previous
                    .first()
                    .ok_or_else(|| JobError::new("the mosaic task left no result"))?
                    .result;
                let cogs: Vec<Value> = m
                    .get("cogs")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let mut mosaic = m.clone();
                if let Some(o) = mosaic.as_object_mut() {
                    o.remove("cogs");
                }
                Ok(vec![TaskSpec::new(
                    "fan_in_collection",
                    json!({
                        "collection_id": collection_id,
                        "container_name": p.get("container_name"),
                        "target_crs": p.get("target_crs"),
                        "mosaic": mosaic,
                        "cogs": cogs,
                        "outcomes": outcomes(&cogs, input.previous_failed),
                    }),
                )])
            }
            s => Err(JobError::new(format!(
                "{JOB_TYPE} has {} stages, asked for stage {s}",
                STAGES.len()
            ))),
        }
    }

    fn finalize(&self, input: &FinalizeInput<'_>) -> Result<Value, JobError> {
        let r = &input
            .last_stage_results
            .first()
            .ok_or_else(|| JobError::new("the stac_collection task left no result"))?
            .result;
        let count = |stage: i32, f: fn(&super::StageSummary) -> i64| {
            input
                .stages
                .iter()
                .find(|s| s.stage == stage)
                .map(f)
                .unwrap_or(0)
        };
        let outcomes = r
            .get("outcomes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let failed = outcomes.iter().filter(|o| o["outcome"] != "ok").count();
        let status = if failed > 0 {
            "completed_with_errors"
        } else {
            "completed"
        };
        Ok(json!({
            "job_type": JOB_TYPE,
            "status": status,
            "collection_id": input.params.get("collection_id"),
            "container_name": input.params.get("container_name"),
            "max_failures": input.params.get("max_failures"),
            "counts": {
                "inputs": count(2, |s| s.task_count),
                "valid": count(2, |s| s.completed),
                "cogs_written": count(3, |s| s.completed),
                "items": r.get("item_count"),
                "failed": failed,
            },
            "inputs": outcomes,
            "mosaic": r.get("mosaic"),
            "stac": {
                "collection_id": r.get("collection_id"),
                "item_count": r.get("item_count"),
                "bbox": r.get("bbox"),
                "interval": r.get("interval"),
            },
        }))
    }
}

/// Registers the job type and its two own handlers. Its other stages run the handlers of
/// list_container_contents (`list_container_blobs`) and process_raster (`validate_raster`,
/// `create_cog`), registered by those modules.
pub fn register(r: &mut Registry, deps: RasterDeps) {
    r.add_job(ProcessRasterCollection);
    let d = deps.clone();
    r.add_handler("create_mosaicjson", move |ctx| {
        handlers::create_mosaicjson(d.clone(), ctx)
    });
    r.add_handler("create_stac_collection", move |ctx| {
        handlers::create_stac_collection(deps.clone(), ctx)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::PreviousResult;

    fn failed(stage: i32, blob: &str, error: &str) -> FailedTask {
        FailedTask {
            task_id: format!("t-{blob}"),
            task_index: 0,
            error: error.into(),
            stage,
            parameters: json!({"blob_name": blob}),
        }
    }

    #[test]
    fn every_input_has_one_outcome_with_the_stage_of_its_first_failure() {
        let cogs = vec![
            json!({"blob_name": "a/one.tif", "tier": "analysis"}),
            json!({"blob_name": "a/two.tif", "tier": "analysis"}),
        ];
        let f = vec![
            failed(2, "a/bad.tif", "a/bad.tif is not a GeoTIFF"),
            failed(3, "a/two.tif", "warp failed"),
            failed(3, "a/two.tif", "second tier failed"),
        ];
        let o = outcomes(&cogs, &f);
        assert_eq!(o.len(), 3);
        assert_eq!(o[0]["blob_name"], "a/bad.tif");
        assert_eq!(o[0]["stage_name"], "validate");
        assert_eq!(
            o[1],
            json!({"blob_name": "a/one.tif", "outcome": "ok", "item_id": "a-one"})
        );
        assert_eq!(o[2]["stage_name"], "create_cog");
        assert_eq!(o[2]["error"], "warp failed");
    }

    #[test]
    fn blob_list_excludes_prefix_and_item_ids_must_differ() {
        let p = |v: Value| v.as_object().unwrap().clone();
        let job = ProcessRasterCollection;
        assert!(
            job.validate(&p(json!({"blob_list": ["a.tif", "b.tif"]})))
                .is_empty()
        );
        let e = job.validate(&p(json!({"blob_list": ["a.tif"], "prefix": "x/"})));
        assert_eq!(e[0].field, "prefix");
        let e = job.validate(&p(json!({"blob_list": ["x/A.tif", "x-a.tif", "dir/"]})));
        let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["blob_list[1]", "blob_list[2]"]);
        assert!(e[0].message.contains("x/A.tif"), "{}", e[0].message);
    }

    #[test]
    fn listed_inputs_are_filtered_by_suffix_and_a_truncated_listing_is_refused() {
        let params = json!({"container_name": "bronze", "prefix": "d/", "suffix": ".TIF"});
        let params = params.as_object().unwrap();
        let listing = |limit_reached: bool| PreviousResult {
            task_id: "t".into(),
            task_index: 0,
            result: json!({"limit_reached": limit_reached, "blobs": [
                {"name": "d/a.tif"}, {"name": "d/b.TIF"}, {"name": "d/readme.txt"}, {"name": "d/sub/"},
            ]}),
        };
        let input = |previous: &[PreviousResult]| -> Result<Vec<String>, JobError> {
            inputs(&StageInput {
                job_id: "j",
                stage: 2,
                params,
                previous,
                previous_failed: &[],
            })
        };
        assert_eq!(input(&[listing(false)]).unwrap(), ["d/a.tif", "d/b.TIF"]);
        let e = input(&[listing(true)]).unwrap_err().to_string();
        assert!(
            e.contains("more than 10000 blobs") && e.contains("d/"),
            "{e}"
        );
    }

    #[test]
    fn the_mosaic_goes_to_the_output_folder() {
        assert_eq!(mosaic_blob("dem", None), "dem.mosaic.json");
        assert_eq!(mosaic_blob("dem", Some("/out/x/")), "out/x/dem.mosaic.json");
    }
}
