//! `list_container_contents` and `list_container_contents_diamond`: list a Blob Storage container
//! and analyse every blob, the first job types that touch the outside world and the template for
//! later ones (`docs/job-types.md` walks through this file).
//!
//! | stage | name | task type | tasks | policy |
//! |---|---|---|---|---|
//! | 1 | list_blobs | `list_container_blobs` | 1 | fail fast: a missing container or permission fails the job |
//! | 2 | analyze_blobs | `analyze_single_blob` | one per listed blob | tolerate failures: a blob deleted meanwhile fails only its task |
//! | 3 (diamond only) | aggregate | `aggregate_blob_analysis` | 1, receives every stage-2 result | fail fast |
//!
//! Finalize reports totals, counts by extension, the largest file, TIFF and COG counts, the
//! success rate and the blobs whose analysis failed.

pub mod filter;
pub mod handlers;
pub mod summary;

use serde_json::{Value, json};

use super::{
    FieldError, FinalizeInput, Job, JobError, ParamKind, ParamSpec, Registry, StageDef, StageInput,
    StagePolicy, TaskSpec,
};
pub use handlers::BlobSource;
use summary::FailedBlob;

/// Both job types; `diamond` adds the fan-in stage 3.
pub struct ListContainerContents {
    diamond: bool,
}

impl ListContainerContents {
    /// `list_container_contents` (two stages).
    pub const PLAIN: Self = Self { diamond: false };
    /// `list_container_contents_diamond` (three stages, the last a fan-in).
    pub const DIAMOND: Self = Self { diamond: true };
}

/// The parameters of both job types.
pub fn parameters() -> Vec<ParamSpec> {
    vec![
        ParamSpec::new(
            "container_name",
            ParamKind::String,
            "Blob container to list (Azure naming rules: 3-63 lowercase letters, digits, hyphens)",
        )
        .required()
        .max(63.0)
        .check(filter::check_container_name),
        ParamSpec::new(
            "file_limit",
            ParamKind::Integer,
            "Most blobs to analyse (listing stops there)",
        )
        .range(1.0, 10_000.0)
        .default(json!(500)),
        ParamSpec::new(
            "filter",
            ParamKind::Object(vec![
                ParamSpec::new("prefix", ParamKind::String, "Only names starting with this")
                    .max(1024.0),
                ParamSpec::new(
                    "extensions",
                    ParamKind::Array(Box::new(ParamKind::String)),
                    "Only these extensions (case-insensitive, with or without the dot)",
                )
                .max(50.0)
                .check(filter::check_extension),
                ParamSpec::new(
                    "min_size_mb",
                    ParamKind::Number,
                    "Only blobs at least this large (MiB)",
                )
                .range(0.0, 10_000_000.0),
                ParamSpec::new(
                    "max_size_mb",
                    ParamKind::Number,
                    "Only blobs at most this large (MiB)",
                )
                .range(0.0, 10_000_000.0),
            ]),
            "Which blobs to list",
        ),
        ParamSpec::new(
            "page_size",
            ParamKind::Integer,
            "Blobs per List Blobs request (the service's maximum is 5000)",
        )
        .range(1.0, 5000.0)
        .default(json!(5000))
        .not_in_job_id(),
    ]
}

impl Job for ListContainerContents {
    fn job_type(&self) -> &'static str {
        if self.diamond {
            "list_container_contents_diamond"
        } else {
            "list_container_contents"
        }
    }

    fn description(&self) -> &'static str {
        if self.diamond {
            "List a blob container, analyse each blob in parallel, then aggregate every analysis in one fan-in task"
        } else {
            "List a blob container and analyse each blob in parallel (size, type, TIFF/COG structure)"
        }
    }

    fn parameters(&self) -> Vec<ParamSpec> {
        parameters()
    }

    fn validate(&self, params: &serde_json::Map<String, Value>) -> Vec<FieldError> {
        filter::check_size_window(params).into_iter().collect()
    }

    fn stages(&self) -> Vec<StageDef> {
        let mut s = vec![
            StageDef::new("list_blobs", "list_container_blobs"),
            StageDef::new("analyze_blobs", "analyze_single_blob")
                .policy(StagePolicy::TolerateFailures),
        ];
        if self.diamond {
            s.push(StageDef::new("aggregate", "aggregate_blob_analysis"));
        }
        s
    }

    fn create_tasks(&self, input: &StageInput<'_>) -> Result<Vec<TaskSpec>, JobError> {
        let p = input.params;
        let container = p.get("container_name").cloned().unwrap_or(Value::Null);
        match input.stage {
            1 => Ok(vec![TaskSpec::new(
                "list",
                json!({
                    "container_name": container,
                    "file_limit": p.get("file_limit"),
                    "filter": p.get("filter"),
                    "page_size": p.get("page_size"),
                }),
            )]),
            2 => {
                let listing = input.previous.first().ok_or_else(|| {
                    JobError::new("stage 2 needs the listing of stage 1, which has no result")
                })?;
                let blobs = listing
                    .result
                    .get("blobs")
                    .and_then(Value::as_array)
                    .ok_or_else(|| JobError::new("the stage 1 listing has no blobs array"))?;
                blobs
                    .iter()
                    .map(|b| {
                        let name = b.get("name").and_then(Value::as_str).ok_or_else(|| {
                            JobError::new(format!("listed blob without a name: {b}"))
                        })?;
                        Ok(TaskSpec::new(
                            name,
                            json!({"container_name": container, "blob_name": name, "listed_size": b.get("size")}),
                        ))
                    })
                    .collect()
            }
            3 if self.diamond => {
                let results: Vec<Value> = input
                    .previous
                    .iter()
                    .map(|r| json!({"task_id": r.task_id, "task_index": r.task_index, "result": r.result}))
                    .collect();
                Ok(vec![TaskSpec::new(
                    "fan_in_aggregate",
                    json!({
                        "container_name": container,
                        "result_count": results.len(),
                        "previous_results": results,
                        "failed_tasks": input.previous_failed,
                    }),
                )])
            }
            s => Err(JobError::new(format!(
                "{} has {} stages, asked for stage {s}",
                self.job_type(),
                self.stages().len()
            ))),
        }
    }

    fn finalize(&self, input: &FinalizeInput<'_>) -> Result<Value, JobError> {
        let container = input
            .params
            .get("container_name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let listed = input
            .stages
            .iter()
            .find(|s| s.stage == 2)
            .map(|s| s.task_count)
            .unwrap_or(0);
        let mut summary = if self.diamond {
            let agg = input
                .last_stage_results
                .first()
                .ok_or_else(|| JobError::new("the aggregate task left no result"))?;
            agg.result.clone()
        } else {
            let failed: Vec<FailedBlob> = input
                .last_stage_failed
                .iter()
                .map(|f| FailedBlob {
                    blob_name: summary::blob_name_from_error(&f.error),
                    task_id: f.task_id.clone(),
                    task_index: f.task_index,
                    error: f.error.clone(),
                })
                .collect();
            summary::summarize(
                container,
                input.last_stage_results.iter().map(|r| &r.result),
                &failed,
            )
        };
        if let Some(o) = summary.as_object_mut() {
            o.insert("job_type".into(), json!(self.job_type()));
            o.insert("status".into(), json!("completed"));
            o.insert("listed_files".into(), json!(listed));
            o.insert("stages".into(), json!(input.stages));
        }
        Ok(summary)
    }
}

/// Registers both job types and their handlers, reading blobs through `blobs`.
pub fn register(r: &mut Registry, blobs: BlobSource) {
    r.add_job(ListContainerContents::PLAIN);
    r.add_job(ListContainerContents::DIAMOND);
    let src = blobs.clone();
    r.add_handler("list_container_blobs", move |ctx| {
        handlers::list_container_blobs(src.clone(), ctx)
    });
    r.add_handler("analyze_single_blob", move |ctx| {
        handlers::analyze_single_blob(blobs.clone(), ctx)
    });
    r.add_handler("aggregate_blob_analysis", handlers::aggregate_blob_analysis);
}
