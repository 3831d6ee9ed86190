//! The integration test binary: one module per capability, a fresh database per test.

mod common;

mod bench_slow;
mod decoding;
mod failures;
mod local_queue;
mod messages;
mod soak;
mod spine;
mod sql_statements;
mod state_machine;
