//! The integration test binary: one module per capability, a fresh database per test.

mod common;

mod azure_breaker;
mod azure_credential;
mod azure_fakes;
mod azure_layout;
mod azure_pg_tls;
mod azure_service_bus;
mod azure_startup;

mod batches;

mod api_auth;
mod api_cli;
mod api_control;
mod api_hostile;
mod api_routes;
mod api_secrets;
mod api_server;
mod architecture;
mod bench_slow;
mod bench_smoke;
mod blob_job;
mod browser;
mod collection_job;
mod decoding;
mod events_api;
mod failures;
mod local_queue;
mod messages;
mod platform_api;
mod raster_cli;
mod raster_job;
mod retention;
mod soak;
mod spine;
mod sql_statements;
mod state_machine;
mod takeover;
mod telemetry;
mod ui_views;
mod vector_job;
