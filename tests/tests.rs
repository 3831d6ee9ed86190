//! The integration test binary: one module per capability, a fresh database per test.

mod common;

mod decoding;
mod local_queue;
mod spine;
mod state_machine;
