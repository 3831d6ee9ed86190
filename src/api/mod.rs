//! The HTTP API under `/api` (forwarded HTTP functions, one function folder per route).
//!
//! - [`submit`]: submit, and the earlier status route.
//! - [`jobs`]: job and task listings (keyset pages), the earlier `dbadmin` reads.
//! - [`task_detail`]: one task with its parameters, result, error and attempt history.
//! - [`control`]: cancel and resubmit.
//! - [`job_types`], [`health`], [`admin`] (migrations, redeploy).
//! - [`input`]: body, query and path limits; [`error`]: the one error envelope.
//! - [`openapi`]: the OpenAPI 3.1 document at `/api/openapi.json`.
//! - [`events`]: a job's events, their summary and its timeline; [`ui`]: the operator web page.
//! - [`platform`]: the earlier system's platform routes (submit by dataset / resource / version).

pub mod admin;
pub mod control;
pub mod error;
pub mod events;
pub mod health;
pub mod input;
pub mod job_types;
pub mod jobs;
pub mod openapi;
pub mod platform;
pub mod submit;
pub mod task_detail;
pub mod ui;

use axum::Router;
use axum::routing::{get, post};

use crate::engine::Engine;
pub use error::ApiError;
pub use input::parse_job_id;

/// The API routes.
pub fn router(engine: Engine) -> Router {
    Router::new()
        .route("/api/jobs/submit/{job_type}", post(submit::submit))
        .route("/api/jobs/status/{job_id}", get(submit::status))
        .route("/api/health", get(health::health))
        .route("/api/jobs", get(jobs::list_jobs))
        .route("/api/jobs/types", get(job_types::job_types))
        .route("/api/jobs/{job_id}", get(jobs::get_job))
        .route("/api/jobs/{job_id}/tasks", get(jobs::list_tasks))
        .route(
            "/api/jobs/{job_id}/tasks/{task_id}",
            get(task_detail::get_task),
        )
        .route("/api/jobs/{job_id}/cancel", post(control::cancel))
        .route("/api/jobs/{job_id}/resubmit", post(control::resubmit))
        .route("/api/dbadmin/jobs", get(jobs::dbadmin_jobs))
        .route("/api/dbadmin/jobs/{job_id}", get(jobs::dbadmin_job))
        .route("/api/dbadmin/tasks/{job_id}", get(jobs::dbadmin_tasks))
        .route("/api/dbadmin/migrations", get(admin::migration_status))
        .route(
            "/api/dbadmin/migrations/apply",
            post(admin::apply_migrations),
        )
        .route("/api/dbadmin/maintenance/redeploy", post(admin::redeploy))
        .route("/api/openapi.json", get(openapi::openapi_json))
        .route("/api/platform/submit", post(platform::submit))
        .route("/api/platform/status", get(platform::status_list))
        .route("/api/platform/status/{request_id}", get(platform::status))
        .merge(events::routes())
        .merge(ui::routes())
        .layer(axum::middleware::from_fn(error::envelope_layer))
        .with_state(engine)
}
