//! The integration test binary: one module per capability, a fresh database per test.

mod common;

mod blob_job;
mod decoding;
mod failures;
mod local_queue;
mod messages;
mod soak;
mod spine;
mod state_machine;
