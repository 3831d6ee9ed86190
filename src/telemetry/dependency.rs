//! Dependencies: a CLIENT span around each call to PostgreSQL, Blob Storage and Service Bus, with
//! the attributes opentelemetry-application-insights maps to a `dependencies` record, so the
//! calls show on the application map and in the end-to-end transaction view:
//!
//! | record field | PostgreSQL | Blob Storage | Service Bus |
//! |---|---|---|---|
//! | `type` | `postgresql` (`db.system.name`) | `Azure blob` (`rpc.system.name`) | `Azure Service Bus` (`messaging.system`) |
//! | `target` | `server.address` (host of the database) | the account's host | the namespace's host |
//! | `name` | the statement's name (`task_claim`, ...) | method and entity kind (`PUT blob`, `GET container`) | `send to <queue>` |
//! | `data` | the statement's text (`db.query.text`, parameters never) | the URL without its query (no SAS) | the URL without its query |
//! | `duration` | the span's | the span's | the span's |
//! | `success` | the query returned | HTTP 2xx | HTTP 2xx |
//! | `resultCode` | `1` (ok) / `2` (failed; the SQLSTATE in `db.response.status_code`) | the HTTP status | the HTTP status |
//!
//! The types are the names Application Insights' own SDKs write for these services, so the
//! portal draws its usual icons.
//!
//! Use [`Dependency::postgres`] / [`Dependency::azure`] to make one, then [`Dependency::run`] to
//! time a future inside it (or [`Dependency::record_status`] for what only the caller can
//! read). A failed call sets the span's status to error. Outside an OpenTelemetry pipeline (stdout
//! mode) the spans are ordinary `tracing` spans that print nothing.

use std::future::Future;

use tracing::Instrument;
use tracing::field::Empty;

/// The `tracing` target of dependency spans (filter with `RUST_LOG=coremachine::dependency=off`).
pub const TARGET: &str = "coremachine::dependency";

/// `type` of a PostgreSQL dependency.
pub const POSTGRESQL: &str = "postgresql";
/// `type` of a Blob Storage dependency.
pub const AZURE_BLOB: &str = "Azure blob";
/// `type` of a Service Bus dependency.
pub const AZURE_SERVICE_BUS: &str = "Azure Service Bus";

/// The longest statement text recorded as `data` (Application Insights keeps 8 KB).
const MAX_STATEMENT: usize = 4000;

/// One call to a dependency, as a CLIENT span.
#[derive(Debug, Clone)]
pub struct Dependency {
    span: tracing::Span,
}

fn client_span(name: &str) -> tracing::Span {
    tracing::info_span!(
        target: TARGET,
        "dependency",
        otel.name = %name,
        otel.kind = "client",
        otel.status_code = Empty,
        db.system.name = Empty,
        db.namespace = Empty,
        db.query.text = Empty,
        messaging.system = Empty,
        messaging.destination.name = Empty,
        rpc.system.name = Empty,
        server.address = Empty,
        url.full = Empty,
        http.request.method = Empty,
        http.response.status_code = Empty,
        db.response.status_code = Empty,
        error.type = Empty,
        operation = Empty,
    )
}

impl Dependency {
    /// A PostgreSQL statement: `name` is the statement's name (the `.sql` file), `text` its SQL
    /// (comments and all; the parameters are never recorded).
    pub fn postgres(name: &str, text: &str) -> Self {
        let span = client_span(name);
        if !span.is_disabled() {
            span.record("db.system.name", POSTGRESQL);
            span.record(
                "db.query.text",
                super::truncate::truncate_chars(text.trim(), MAX_STATEMENT).as_ref(),
            );
            if let Some((host, db)) = database() {
                span.record("server.address", host.as_str());
                span.record("db.namespace", db.as_str());
            }
        }
        Self { span }
    }

    /// An Azure REST call: `service_type` is [`AZURE_BLOB`] or [`AZURE_SERVICE_BUS`], `kind` and
    /// `entity` what it is about (`queue` + its name, `blob` + container/blob), `operation` what
    /// was attempted (kept as the `operation` property). The name is low-cardinality
    /// (`send to <queue>`, `GET blob`); the URL's query (a SAS token, a timeout) is left out.
    pub fn azure(
        service_type: &str,
        kind: &str,
        entity: &str,
        operation: &str,
        method: &str,
        url: &reqwest::Url,
    ) -> Self {
        let name = if service_type == AZURE_SERVICE_BUS {
            format!("send to {entity}")
        } else {
            format!("{method} {kind}")
        };
        let span = client_span(&name);
        if !span.is_disabled() {
            span.record("operation", operation);
            if service_type == AZURE_SERVICE_BUS {
                span.record("messaging.system", service_type);
                span.record("messaging.destination.name", entity);
            } else {
                span.record("rpc.system.name", service_type);
            }
            let mut clean = url.clone();
            clean.set_query(None);
            clean.set_fragment(None);
            let _ = clean.set_password(None);
            let _ = clean.set_username("");
            span.record("url.full", clean.as_str());
            span.record("http.request.method", method);
            if let Some(host) = url.host_str() {
                match url.port() {
                    Some(p) => span.record("server.address", format!("{host}:{p}").as_str()),
                    None => span.record("server.address", host),
                };
            }
        }
        Self { span }
    }

    /// The span (to enter, or to parent other work to).
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Records an HTTP status: 2xx is a success, anything else a failure.
    pub fn record_status(&self, status: u16) {
        self.span
            .record("http.response.status_code", i64::from(status));
        let ok = (200..300).contains(&status);
        self.span
            .record("otel.status_code", if ok { "OK" } else { "ERROR" });
    }

    /// Records a failure without a response (a timeout, a refused connection, a driver error).
    pub fn record_failure(&self, error_type: &str) {
        self.span.record("error.type", error_type);
        self.span.record("otel.status_code", "ERROR");
    }

    /// Runs `call` inside the span: a PostgreSQL call's result sets success or failure (with its
    /// SQLSTATE, or `connection` when the driver has none).
    pub async fn run_query<T, F>(self, call: F) -> Result<T, tokio_postgres::Error>
    where
        F: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let result = call.instrument(self.span.clone()).await;
        match &result {
            Ok(_) => {
                self.span.record("otel.status_code", "OK");
            }
            Err(e) => {
                let code = e.code().map(|c| c.code()).unwrap_or("connection");
                self.span.record("db.response.status_code", code);
                self.record_failure(code);
            }
        }
        result
    }

    /// Runs `call` inside the span (the caller records the outcome).
    pub async fn run<F: Future>(&self, call: F) -> F::Output {
        call.instrument(self.span.clone()).await
    }
}

static DATABASE: std::sync::RwLock<Option<(String, String)>> = std::sync::RwLock::new(None);

/// Names the database PostgreSQL dependencies go to (`target` = host:port, `db.namespace` = the
/// database), from the pool's settings; called when the pool is built (never holds a password).
pub fn set_database(cfg: &tokio_postgres::Config) {
    let host = match cfg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    let host = match cfg.get_ports().first() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    };
    let db = cfg.get_dbname().unwrap_or("postgres").to_string();
    if let Ok(mut d) = DATABASE.write() {
        *d = Some((host, db));
    }
}

fn database() -> Option<(String, String)> {
    DATABASE.read().ok().and_then(|d| d.clone())
}
