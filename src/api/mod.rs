//! The HTTP API under `/api` (forwarded HTTP functions, one function folder per route).
//!
//! - [`submit`]: submit, and the earlier status route.
//! - [`jobs`]: job and task listings (keyset pages), the earlier `dbadmin` reads.
//! - [`task_detail`]: one task with its parameters, result, error and attempt history.
//! - [`control`]: cancel and resubmit.
//! - [`job_types`], [`health`], [`admin`] (migrations, redeploy).
//! - [`input`]: body, query and path limits; [`error`]: the one error envelope; [`cursor`]: the
//!   keyset cursors of the listings.
//! - [`openapi`]: the OpenAPI 3.1 document at `/api/openapi.json`.
//! - [`events`]: a job's events, their summary and its timeline; [`ui`]: the operator web page.
//! - [`platform`]: the earlier system's platform routes (submit by dataset / resource / version).
//!
//! The handlers read through the store's repositories (`store::job_views`, `task_views`,
//! `event_views`, ...), which return typed rows; no handler reads a `tokio_postgres::Row`.

pub(crate) mod admin;
pub(crate) mod control;
mod cursor;
pub(crate) mod error;
pub(crate) mod events;
pub(crate) mod health;
pub(crate) mod input;
pub(crate) mod job_types;
pub(crate) mod jobs;
pub mod openapi;
pub(crate) mod platform;
pub(crate) mod submit;
pub(crate) mod task_detail;
pub(crate) mod ui;

use axum::Router;
use axum::routing::{get, post};

use crate::engine::Engine;
pub(crate) use error::ApiError;
pub(crate) use input::parse_job_id;

/// The API routes.
pub(crate) fn router(engine: Engine) -> Router {
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
