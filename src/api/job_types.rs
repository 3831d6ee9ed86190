//! `GET /api/jobs/types`: every job type with its description, stages and parameter JSON Schema.

use axum::Json;
use axum::extract::State;
use serde_json::Value;

use super::error::{ApiError, ErrorEnvelope};
use super::input::QueryParams;
use crate::engine::Engine;
use crate::jobs::params;

/// One stage of a job type.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct StageInfo {
    /// Stage number.
    pub stage: i32,
    /// Name.
    pub name: String,
    /// Task type.
    pub task_type: String,
    /// Failure policy (`{"policy": "fail_fast"}`, `{"policy": "min_success", "k": 2}`, ...).
    pub policy: Value,
}

/// One job type.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct JobTypeInfo {
    /// Name used in `POST /api/jobs/submit/{job_type}`.
    pub job_type: String,
    /// What it does.
    pub description: String,
    /// Ordered stages.
    pub stages: Vec<StageInfo>,
    /// JSON Schema (2020-12) of the submit body.
    pub parameters: Value,
    /// Parameters that are not part of the job id: submitting the same job again with another
    /// value of one of them returns the existing job, whose value is kept (the 200 response lists
    /// them as `ignored_parameters`).
    pub not_in_job_id: Vec<String>,
    /// Where to submit.
    pub submit_url: String,
}

/// All job types.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct JobTypes {
    /// Sorted by name.
    pub job_types: Vec<JobTypeInfo>,
}

/// Lists the job types.
#[utoipa::path(
    get, path = "/api/jobs/types", tag = "jobs", operation_id = "job_types",
    responses(
        (status = 200, description = "Every job type", body = JobTypes),
        (status = 400, description = "Unknown query parameter", body = ErrorEnvelope),
        (status = 401, description = "Missing or wrong function key", body = ErrorEnvelope),
    ),
    security(("function_key" = []), ("function_code" = []))
)]
pub(crate) async fn job_types(
    State(engine): State<Engine>,
    q: QueryParams,
) -> Result<Json<JobTypes>, ApiError> {
    q.only(&[])?;
    let job_types = engine
        .registry()
        .jobs()
        .map(|j| JobTypeInfo {
            job_type: j.job_type().to_string(),
            description: j.description().to_string(),
            stages: j
                .stages()
                .iter()
                .enumerate()
                .map(|(i, s)| StageInfo {
                    stage: i as i32 + 1,
                    name: s.name.to_string(),
                    task_type: s.task_type.to_string(),
                    policy: serde_json::to_value(s.policy).unwrap_or_default(),
                })
                .collect(),
            parameters: params::json_schema(&j.parameters()),
            not_in_job_id: j
                .parameters()
                .iter()
                .filter(|p| !p.in_job_id)
                .map(|p| p.name.to_string())
                .collect(),
            submit_url: format!("/api/jobs/submit/{}", j.job_type()),
        })
        .collect();
    Ok(Json(JobTypes { job_types }))
}
