//! Telemetry: `tracing` everywhere, exported one of two ways.
//!
//! - With `APPLICATIONINSIGHTS_CONNECTION_STRING` set, spans and events go through
//!   opentelemetry-application-insights (spans → `requests`/`dependencies`, events → `traces` with
//!   their fields in `customDimensions`), and nothing is printed on stdout: the Functions host
//!   forwards stdout to Application Insights too, so printing would store every record twice.
//!   Only the exporter's own warnings go to stderr.
//! - Without it, JSON lines on stdout (or, with `LOG_FORMAT=pretty`, readable ones), each with
//!   the request id and trace id of its request or invocation ([`log_format`]).
//!
//! Layout: [`checkpoints`] (the catalogue of named steps), [`dependency`] (CLIENT spans around
//! PostgreSQL, Blob and Service Bus calls), [`trace_context`] (W3C `traceparent`
//! propagation), [`http`] (a span per API request), [`exporter`] (upload client, truncation
//! wrapper), [`truncate`] (cutting at character boundaries).

pub mod checkpoints;
pub mod dependency;
pub mod exporter;
pub(crate) mod http;
pub mod log_format;
pub(crate) mod trace_context;
mod truncate;

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_application_insights::Exporter;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Dispatch;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::{EnvFilter, Layer as _, fmt, prelude::*};

pub use exporter::Sampling;
use exporter::{Truncating, UploadClient};

/// The environment variable that switches on the Application Insights exporter.
pub const CONNECTION_STRING_VAR: &str = "APPLICATIONINSIGHTS_CONNECTION_STRING";

/// How long shutdown waits for the last batches to upload.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The connection string could not be parsed.
    #[error(
        "{CONNECTION_STRING_VAR} is not a usable connection string ({reason}); expected \
         InstrumentationKey=...;IngestionEndpoint=https://... (Authorization=ikey only)"
    )]
    ConnectionString {
        /// What the exporter said.
        reason: String,
    },
}

/// Where records go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// JSON lines on stdout.
    Stdout,
    /// OpenTelemetry → Application Insights (nothing on stdout).
    ApplicationInsights,
}

/// A configured telemetry pipeline: the `tracing` dispatcher and the providers behind it.
/// Call [`Telemetry::shutdown`] before the process exits so the last batches are uploaded.
pub struct Telemetry {
    mode: Mode,
    dispatch: Dispatch,
    tracer: Option<SdkTracerProvider>,
    logger: Option<SdkLoggerProvider>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("mode", &self.mode)
            .finish()
    }
}

fn env_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Targets whose events must not be exported: the exporter's own stack would log about its own
/// uploads, forever.
fn is_exporter_internal(target: &str) -> bool {
    ["opentelemetry", "reqwest", "hyper", "h2", "tower", "rustls"]
        .iter()
        .any(|p| target.starts_with(p))
}

fn stdout_layer<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    json_lines(std::io::stdout)
}

fn json_lines<S, W>(writer: W) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    lines(writer, log_format::Format::from_env())
}

fn lines<S, W>(writer: W, format: log_format::Format) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    // `LOG_FORMAT=pretty` for a terminal; JSON lines otherwise. Both carry the request and
    // trace ids of the spans around each record (log_format.rs).
    log_format::IdsLayer.and_then(
        fmt::layer()
            .with_writer(writer)
            .event_format(log_format::Lines(format)),
    )
}

fn resource() -> Resource {
    let instance = std::env::var("WEBSITE_INSTANCE_ID")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "local".to_string());
    Resource::builder()
        .with_service_name("coremachine")
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("service.instance.id", instance),
        ])
        .build()
}

impl Telemetry {
    /// Picks the mode from the environment: Application Insights when
    /// `APPLICATIONINSIGHTS_CONNECTION_STRING` is set and not empty, else stdout. `RUST_LOG`
    /// filters (default `info`).
    pub fn from_env() -> Result<Self, TelemetryError> {
        match std::env::var(CONNECTION_STRING_VAR) {
            Ok(cs) if !cs.trim().is_empty() => Self::application_insights(&cs, env_filter()),
            _ => Ok(Self::stdout(env_filter())),
        }
    }

    /// JSON lines on stdout.
    pub fn stdout(filter: EnvFilter) -> Self {
        let dispatch = Dispatch::new(
            tracing_subscriber::registry()
                .with(filter)
                .with(stdout_layer()),
        );
        Self {
            mode: Mode::Stdout,
            dispatch,
            tracer: None,
            logger: None,
        }
    }

    /// Lines in `format` to `writer` (the tests capture what would reach stdout).
    pub fn lines_to<W>(filter: EnvFilter, format: log_format::Format, writer: W) -> Self
    where
        W: for<'w> fmt::MakeWriter<'w> + Send + Sync + 'static,
    {
        let dispatch = Dispatch::new(
            tracing_subscriber::registry()
                .with(filter)
                .with(lines(writer, format)),
        );
        Self {
            mode: Mode::Stdout,
            dispatch,
            tracer: None,
            logger: None,
        }
    }

    /// JSON lines on stderr: for commands whose stdout is their report (`janitor`, `migrate`),
    /// so `| jq` reads only the report.
    pub fn stderr(filter: EnvFilter) -> Self {
        let dispatch = Dispatch::new(
            tracing_subscriber::registry()
                .with(filter)
                .with(json_lines(std::io::stderr)),
        );
        Self {
            mode: Mode::Stdout,
            dispatch,
            tracer: None,
            logger: None,
        }
    }

    /// Spans and events exported to the Application Insights resource of `connection_string`
    /// (its `IngestionEndpoint` is honoured, which is how the tests point it at a local server).
    pub fn application_insights(
        connection_string: &str,
        filter: EnvFilter,
    ) -> Result<Self, TelemetryError> {
        Self::application_insights_sampled(connection_string, filter, Sampling::from_env())
    }

    /// [`Telemetry::application_insights`] with an explicit [`Sampling`] of per-task records.
    pub fn application_insights_sampled(
        connection_string: &str,
        filter: EnvFilter,
        sampling: Sampling,
    ) -> Result<Self, TelemetryError> {
        let client = UploadClient::new(Duration::from_secs(30));
        let exporter = Exporter::new_from_connection_string(connection_string, client)
            .map_err(|e| TelemetryError::ConnectionString {
                reason: e.to_string(),
            })?
            // Upload problems go to stderr (never exported, so never duplicated).
            .with_retry_notify(|e, wait| {
                eprintln!(
                    "coremachine: telemetry upload failed ({e}); retrying in {:.1}s",
                    wait.as_secs_f64()
                )
            });
        let resource = resource();
        let tracer = SdkTracerProvider::builder()
            .with_resource(resource.clone())
            .with_batch_exporter(Truncating::new(exporter.clone()).with_sampling(sampling))
            .build();
        let logger = SdkLoggerProvider::builder()
            .with_resource(resource)
            .with_batch_exporter(Truncating::new(exporter).with_sampling(sampling))
            .build();
        // Spans only: events reach Application Insights once, as log records through the bridge
        // (as span events too, every checkpoint would be stored twice).
        let otel_traces = tracing_opentelemetry::layer()
            .with_tracer(tracer.tracer("coremachine"))
            .with_filter(filter_fn(|m| {
                m.is_span() && !is_exporter_internal(m.target())
            }));
        let otel_logs = OpenTelemetryTracingBridge::new(&logger)
            .with_filter(filter_fn(|m| !is_exporter_internal(m.target())));
        // The exporter's own complaints (upload failures) go to stderr: they are never exported,
        // so they are not duplicates, and an operator needs them when uploads fail.
        let exporter_warnings = fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .with_filter(filter_fn(|m| {
                is_exporter_internal(m.target()) && *m.level() <= tracing::Level::WARN
            }));
        let dispatch = Dispatch::new(
            tracing_subscriber::registry()
                .with(filter)
                .with(otel_traces)
                .with(otel_logs)
                .with(exporter_warnings),
        );
        Ok(Self {
            mode: Mode::ApplicationInsights,
            dispatch,
            tracer: Some(tracer),
            logger: Some(logger),
        })
    }

    /// Where records go.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The dispatcher (tests install it for one thread with `tracing::dispatcher::set_default`).
    pub fn dispatch(&self) -> &Dispatch {
        &self.dispatch
    }

    /// Installs this pipeline as the process-wide default; `false` when one was installed already.
    pub fn install_global(&self) -> bool {
        tracing::dispatcher::set_global_default(self.dispatch.clone()).is_ok()
    }

    /// Uploads what is buffered now (spans, then logs).
    pub fn flush(&self) {
        if let Some(t) = &self.tracer
            && let Err(e) = t.force_flush()
        {
            eprintln!("coremachine: flushing spans failed: {e}");
        }
        if let Some(l) = &self.logger
            && let Err(e) = l.force_flush()
        {
            eprintln!("coremachine: flushing logs failed: {e}");
        }
    }

    /// Flushes and stops the providers (call once, at shutdown). Blocks up to ~10 s per provider
    /// while the last batches upload; call it outside async code or via `spawn_blocking`.
    pub fn shutdown(&self) {
        if let Some(t) = &self.tracer
            && let Err(e) = t.shutdown_with_timeout(SHUTDOWN_TIMEOUT)
        {
            eprintln!("coremachine: shutting down the span exporter failed: {e}");
        }
        if let Some(l) = &self.logger
            && let Err(e) = l.shutdown_with_timeout(SHUTDOWN_TIMEOUT)
        {
            eprintln!("coremachine: shutting down the log exporter failed: {e}");
        }
    }
}

/// Installs the process-wide subscriber chosen by [`Telemetry::from_env`] and returns the
/// pipeline to shut down at exit. A bad connection string falls back to stdout with a message
/// on stderr (telemetry must never stop the engine from starting).
pub fn init_from_env() -> Telemetry {
    let t = Telemetry::from_env().unwrap_or_else(|e| {
        eprintln!("coremachine: {e}; logging JSON lines to stdout instead");
        Telemetry::stdout(env_filter())
    });
    t.install_global();
    t
}

/// Like [`init_from_env`], with the JSON lines (without Application Insights) on stderr.
pub fn init_from_env_on_stderr() -> Telemetry {
    let t = match Telemetry::from_env() {
        Ok(t) if t.mode == Mode::ApplicationInsights => t,
        Ok(_) => Telemetry::stderr(env_filter()),
        Err(e) => {
            eprintln!("coremachine: {e}; logging JSON lines to stderr instead");
            Telemetry::stderr(env_filter())
        }
    };
    t.install_global();
    t
}

/// Installs JSON lines on stdout, filtered by `RUST_LOG` (default `info`). Safe to call more than
/// once (later calls do nothing).
pub fn init() {
    Telemetry::stdout(env_filter()).install_global();
}
