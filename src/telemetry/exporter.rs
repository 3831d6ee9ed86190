//! The Application Insights exporter's plumbing: the HTTP client it uploads with, and a wrapper
//! that cuts every string at a character boundary before the exporter sees it.
//!
//! Why a client of our own: the batch processors export from their own threads, outside tokio,
//! and `opentelemetry-http`'s ready-made clients would pull in a second `reqwest` major version.
//! [`UploadClient`] runs the project's `reqwest` on a small dedicated runtime instead, so uploads
//! work from any thread, including during shutdown while the main runtime is winding down.

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _};
use opentelemetry::{Key, KeyValue, Value};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter, SdkLogRecord, SdkLogger, SdkLoggerProvider};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

use super::truncate::{MAX_FIELD_BYTES, MAX_KEY_BYTES, MAX_MESSAGE_BYTES, truncate_chars};

fn upload_runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("telemetry-upload")
            .enable_all()
            .build()
            .expect("the telemetry upload runtime starts")
    })
}

/// The HTTP client the exporter uploads with (`reqwest` on a dedicated runtime).
#[derive(Debug, Clone)]
pub struct UploadClient {
    client: reqwest::Client,
}

impl UploadClient {
    /// A client whose requests time out after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            client: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .expect("HTTP client builds"),
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for UploadClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let upload = async move {
            let (parts, body) = request.into_parts();
            let resp = client
                .request(parts.method, upload_url(&parts.uri))
                .headers(parts.headers)
                .body(body)
                .send()
                .await?;
            let mut builder = Response::builder().status(resp.status());
            for (k, v) in resp.headers() {
                builder = builder.header(k, v);
            }
            let body = resp.bytes().await?;
            Ok::<_, HttpError>(builder.body(body)?)
        };
        upload_runtime()
            .spawn(upload)
            .await
            .map_err(|e| -> HttpError { format!("telemetry upload task failed: {e}").into() })?
    }
}

/// The URL to upload to. The exporter turns every endpoint into `https://`; a loopback endpoint
/// (a local forwarder, or the tests' stand-in for the ingestion service) speaks plain HTTP, since
/// TLS to the same host protects nothing, so loopback hosts are sent `http://`.
fn upload_url(uri: &axum::http::Uri) -> String {
    let loopback = matches!(
        uri.host(),
        Some("127.0.0.1") | Some("localhost") | Some("[::1]") | Some("::1")
    );
    let s = uri.to_string();
    match s.strip_prefix("https://") {
        Some(rest) if loopback => format!("http://{rest}"),
        _ => s,
    }
}

/// Wraps an exporter so that no string it receives is longer than the Application Insights
/// limits (cut at character boundaries, see [`super::truncate`]), and so that the per-task
/// success records are sampled ([`Sampling`]).
#[derive(Debug)]
pub struct Truncating<E> {
    inner: E,
    /// Builds replacement log records (a provider without processors: it never exports).
    scratch: SdkLogger,
    sampling: Sampling,
}

impl<E> Truncating<E> {
    /// Wraps `inner` (keeping every record).
    pub fn new(inner: E) -> Self {
        Self {
            inner,
            scratch: SdkLoggerProvider::builder().build().logger("truncate"),
            sampling: Sampling::keep_all(),
        }
    }

    /// Samples per-task success records with `sampling`.
    pub fn with_sampling(mut self, sampling: Sampling) -> Self {
        self.sampling = sampling;
        self
    }
}

/// Exporter-side sampling of what a big job writes once per task: so that a million-task job
/// does not write millions of rows, only a share of its tasks (chosen by a hash of the task id,
/// so the same tasks on every instance) export their success records. Everything else is kept:
/// warnings and errors (every failure, retry, duplicate), stage- and job-level checkpoints, API
/// requests, job messages, and every failed dependency.
///
/// Sampled, when successful: the checkpoints in [`SAMPLED_CHECKPOINTS`] (a task's claim and
/// completion), a task message's `tasks-queue-trigger` request, and dependency calls (kept or
/// dropped per invocation: by their parent span).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Share of tasks kept, in hundredths of a percent (10,000 = all).
    basis_points: u32,
}

/// The setting: percent of tasks whose success records are exported (0 to 100).
pub const SAMPLE_PERCENT_VAR: &str = "COREMACHINE_TELEMETRY_TASK_SAMPLE_PERCENT";

/// The default share: 1 % of tasks (a 1,000-task stage exports about 20 per-task rows).
pub const DEFAULT_SAMPLE_PERCENT: f64 = 1.0;

/// The per-task success checkpoints that are sampled.
pub const SAMPLED_CHECKPOINTS: &[&str] = &[
    super::checkpoints::TASK_CLAIMED,
    super::checkpoints::TASK_COMPLETED,
];

impl Sampling {
    /// Every record kept.
    pub fn keep_all() -> Self {
        Self {
            basis_points: 10_000,
        }
    }

    /// `percent` of tasks kept (clamped to 0..=100).
    pub fn percent(percent: f64) -> Self {
        let p = if percent.is_finite() {
            percent.clamp(0.0, 100.0)
        } else {
            100.0
        };
        Self {
            basis_points: (p * 100.0).round() as u32,
        }
    }

    /// From [`SAMPLE_PERCENT_VAR`] (default [`DEFAULT_SAMPLE_PERCENT`]); an unreadable value is
    /// reported on stderr and the default used.
    pub fn from_env() -> Self {
        match std::env::var(SAMPLE_PERCENT_VAR) {
            Ok(v) if !v.trim().is_empty() => match v.trim().parse::<f64>() {
                Ok(p) if (0.0..=100.0).contains(&p) => Self::percent(p),
                _ => {
                    eprintln!(
                        "coremachine: {SAMPLE_PERCENT_VAR}={v:?} is not a percentage from 0 to 100; \
                         using {DEFAULT_SAMPLE_PERCENT}"
                    );
                    Self::percent(DEFAULT_SAMPLE_PERCENT)
                }
            },
            _ => Self::percent(DEFAULT_SAMPLE_PERCENT),
        }
    }

    /// Whether the records keyed by `key` (a task id, a span id) are kept.
    pub fn keeps(&self, key: &str) -> bool {
        if self.basis_points >= 10_000 {
            return true;
        }
        // FNV-1a: stable across processes and versions (the std hasher is neither).
        let h = key.bytes().fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
        });
        (h % 10_000) < u64::from(self.basis_points)
    }

    fn keeps_record(&self, r: &SdkLogRecord) -> bool {
        if self.basis_points >= 10_000
            || r.severity_number()
                .is_some_and(|s| s >= opentelemetry::logs::Severity::Warn)
        {
            return true;
        }
        let attr = |name: &str| {
            r.attributes_iter().find_map(|(k, v)| match v {
                AnyValue::String(s) if k.as_str() == name => Some(s.as_str().to_string()),
                _ => None,
            })
        };
        match (attr("checkpoint"), attr("task_id")) {
            (Some(c), Some(task)) if SAMPLED_CHECKPOINTS.contains(&c.as_str()) => self.keeps(&task),
            _ => true,
        }
    }

    fn keeps_span(&self, s: &SpanData) -> bool {
        use opentelemetry::trace::{SpanKind, Status};
        if self.basis_points >= 10_000 || matches!(s.status, Status::Error { .. }) {
            return true;
        }
        match s.span_kind {
            SpanKind::Client => self.keeps(&s.parent_span_id.to_string()),
            SpanKind::Consumer if s.name == "tasks-queue-trigger" => s
                .attributes
                .iter()
                .find(|kv| kv.key.as_str() == "task_id")
                .map(|kv| kv.value.as_str())
                .filter(|t| !t.is_empty())
                .is_none_or(|t| self.keeps(&t)),
            _ => true,
        }
    }
}

fn too_long(s: &str, max: usize) -> bool {
    s.len() > max
}

fn any_too_long(v: &AnyValue, max: usize) -> bool {
    match v {
        AnyValue::String(s) => too_long(s.as_str(), max),
        AnyValue::ListAny(l) => l.iter().any(|v| any_too_long(v, max)),
        AnyValue::Map(m) => m
            .iter()
            .any(|(k, v)| too_long(k.as_str(), MAX_KEY_BYTES) || any_too_long(v, max)),
        _ => false,
    }
}

fn cut_any(v: &AnyValue, max: usize) -> AnyValue {
    match v {
        AnyValue::String(s) => AnyValue::from(truncate_chars(s.as_str(), max).into_owned()),
        AnyValue::ListAny(l) => {
            AnyValue::ListAny(Box::new(l.iter().map(|v| cut_any(v, max)).collect()))
        }
        AnyValue::Map(m) => AnyValue::Map(Box::new(
            m.iter()
                .map(|(k, v)| (cut_key(k), cut_any(v, max)))
                .collect(),
        )),
        other => other.clone(),
    }
}

fn cut_key(k: &Key) -> Key {
    if too_long(k.as_str(), MAX_KEY_BYTES) {
        Key::from(truncate_chars(k.as_str(), MAX_KEY_BYTES).into_owned())
    } else {
        k.clone()
    }
}

fn record_too_long(r: &SdkLogRecord) -> bool {
    r.body().is_some_and(|b| any_too_long(b, MAX_MESSAGE_BYTES))
        || r.attributes_iter()
            .any(|(k, v)| too_long(k.as_str(), MAX_KEY_BYTES) || any_too_long(v, MAX_FIELD_BYTES))
}

impl<E> Truncating<E> {
    fn cut_record(&self, r: &SdkLogRecord) -> SdkLogRecord {
        let mut n = self.scratch.create_log_record();
        if let Some(t) = r.timestamp() {
            n.set_timestamp(t);
        }
        if let Some(t) = r.observed_timestamp() {
            n.set_observed_timestamp(t);
        }
        if let Some(tc) = r.trace_context() {
            n.set_trace_context(tc.trace_id, tc.span_id, tc.trace_flags);
        }
        if let Some(s) = r.severity_number() {
            n.set_severity_number(s);
        }
        if let Some(s) = r.severity_text() {
            n.set_severity_text(s);
        }
        if let Some(t) = r.target() {
            n.set_target(t.clone());
        }
        if let Some(e) = r.event_name() {
            n.set_event_name(e);
        }
        if let Some(b) = r.body() {
            n.set_body(cut_any(b, MAX_MESSAGE_BYTES));
        }
        for (k, v) in r.attributes_iter() {
            n.add_attribute(cut_key(k), cut_any(v, MAX_FIELD_BYTES));
        }
        n
    }
}

fn cut_value(v: &mut Value) {
    if let Value::String(s) = v
        && too_long(s.as_str(), MAX_FIELD_BYTES)
    {
        *v = Value::from(truncate_chars(s.as_str(), MAX_FIELD_BYTES).into_owned());
    }
}

fn cut_kvs(kvs: &mut [KeyValue]) {
    for kv in kvs {
        kv.key = cut_key(&kv.key);
        cut_value(&mut kv.value);
    }
}

impl<E: LogExporter> LogExporter for Truncating<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let all: Vec<_> = batch.iter().collect();
        let items: Vec<_> = all
            .iter()
            .copied()
            .filter(|(r, _)| self.sampling.keeps_record(r))
            .collect();
        if items.is_empty() {
            return Ok(());
        }
        if !items.iter().any(|(r, _)| record_too_long(r)) {
            if items.len() == all.len() {
                return self.inner.export(batch).await;
            }
            return self.inner.export(LogBatch::new(&items)).await;
        }
        let replaced: Vec<Option<SdkLogRecord>> = items
            .iter()
            .map(|(r, _)| record_too_long(r).then(|| self.cut_record(r)))
            .collect();
        let refs: Vec<_> = items
            .iter()
            .zip(&replaced)
            .map(|((r, s), n)| (n.as_ref().unwrap_or(r), *s))
            .collect();
        self.inner.export(LogBatch::new(&refs)).await
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: SpanExporter> SpanExporter for Truncating<E> {
    async fn export(&self, mut batch: Vec<SpanData>) -> OTelSdkResult {
        batch.retain(|s| self.sampling.keeps_span(s));
        for span in &mut batch {
            if too_long(&span.name, 1000) {
                span.name = truncate_chars(&span.name, 1000).into_owned().into();
            }
            cut_kvs(&mut span.attributes);
            for ev in span.events.events.iter_mut() {
                cut_kvs(&mut ev.attributes);
            }
        }
        self.inner.export(batch).await
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod sampling_tests {
    use super::Sampling;

    #[test]
    fn a_share_of_task_ids_is_kept_the_same_way_every_time() {
        let ids: Vec<String> = (0..20_000).map(|i| format!("{i:064x}")).collect();
        let kept = |s: Sampling| ids.iter().filter(|t| s.keeps(t)).count();
        assert_eq!(kept(Sampling::keep_all()), ids.len());
        assert_eq!(kept(Sampling::percent(100.0)), ids.len());
        assert_eq!(kept(Sampling::percent(0.0)), 0);
        let one = kept(Sampling::percent(1.0));
        assert!((100..=300).contains(&one), "1 % of 20,000: {one}");
        let ten = kept(Sampling::percent(10.0));
        assert!((1_700..=2_300).contains(&ten), "10 % of 20,000: {ten}");
        // Stable: the same ids, the same answer; out-of-range settings are clamped.
        assert_eq!(kept(Sampling::percent(1.0)), one);
        assert_eq!(Sampling::percent(250.0), Sampling::keep_all());
        assert_eq!(Sampling::percent(f64::NAN), Sampling::keep_all());
    }
}
