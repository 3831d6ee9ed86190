//! The integration test binary: one module per capability, a fresh database per test.

mod common;

mod browser;
mod decoding;
mod events_api;
mod failures;
mod local_queue;
mod messages;
mod soak;
mod spine;
mod state_machine;
mod telemetry;
