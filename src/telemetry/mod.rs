//! Telemetry: structured `tracing` output and the checkpoint catalogue ([`checkpoints`]).

pub mod checkpoints;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Installs the process-wide subscriber: JSON lines on stdout, filtered by `RUST_LOG`
/// (default `info`). Safe to call more than once (later calls do nothing).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(
            fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false),
        )
        .try_init();
}
