//! CoreMachine: a multi-stage job orchestration engine shipped as one Azure Functions custom
//! handler binary.
//!
//! # Layout
//! - [`handler`]: the custom-handler adapter (invocation payloads, one route per function folder).
//! - [`api`]: the HTTP API under `/api`.
//! - [`azure`]: shared Azure plumbing (retry classification, managed-identity tokens).
//! - [`cli`]: the client subcommands (submit, status, jobs, events, cancel, resubmit, watch).
//! - [`engine`]: state machines, job and task message processing, fan-in, finalize, failures.
//! - [`model`]: ids, statuses and transition tables (the vocabulary every room shares).
//! - [`jobs`]: the `Job` trait, the registry and the built-in job types.
//! - [`store`]: PostgreSQL pool, migrations and SQL statements.
//! - [`storage`]: the Azure Blob Storage client used by job types that read blobs.
//! - [`transport`]: the outbox and message sending (local queue; Service Bus in Azure).
//! - [`startup`]: builds the app from its settings (pool, transport, engine, router) for `serve`.
//! - [`local`]: the host emulator of local mode and tests, on top of [`startup`].
//! - [`janitor`]: audits and repairs.
//! - [`retention`]: deletes finished jobs and old events in bounded batches (run by the janitor).
//! - [`telemetry`]: tracing setup and the checkpoint catalogue.
//! - [`config`]: settings from environment variables, validated into typed settings; the types
//!   that store, transport, retention and azure take (it imports none of them).
//! - [`bench`]: `coremachine bench`, the end-to-end benchmark against the PostgreSQL floor.
//!
//! Imports read top to bottom: main → local → startup → handler/api → engine →
//! jobs/store/transport → azure → config.

// Items visible outside a private module are `pub(crate)` unless the crate re-exports them.
#![warn(unreachable_pub)]

pub mod api;
pub mod azure;
pub mod bench;
pub mod cli;
pub mod config;
pub mod engine;
pub mod handler;
pub mod janitor;
pub mod jobs;
pub mod local;
pub mod model;
pub mod retention;
pub mod startup;
pub mod storage;
pub mod store;
pub mod telemetry;
#[cfg(feature = "fault-injection")]
pub mod testing;
pub mod transport;

use axum::Router;

/// The whole HTTP surface of the binary: trigger routes, API routes, and a JSON 404.
pub fn app_router(engine: engine::Engine) -> Router {
    handler::router(engine.clone())
        .merge(api::router(engine))
        .layer(axum::middleware::from_fn(telemetry::http::trace_request))
        .fallback(|uri: axum::http::Uri| async move {
            api::ApiError::not_found(format!(
                "no route for {}",
                uri.path().chars().take(200).collect::<String>()
            ))
        })
        .layer(axum::middleware::from_fn(api::input::request_limits))
}
