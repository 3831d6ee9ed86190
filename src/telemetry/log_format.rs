//! The lines printed without Application Insights: JSON (the default) or, with
//! `LOG_FORMAT=pretty`, one readable line per record for a terminal. Both carry the `request_id`
//! and the `trace_id` of the request or invocation the record belongs to (read from the spans
//! around it: an API request's, a queue invocation's), so a line can be joined to its job's trace
//! and to the host's log of the same invocation.
//!
//! ```text
//! {"timestamp":"2026-01-31T12:00:00.123456Z","level":"INFO","target":"coremachine::telemetry::checkpoints","message":"TASK_COMPLETED","checkpoint":"TASK_COMPLETED","job_id":"…","request_id":"8f3c…","trace_id":"4bf92f35…"}
//! 2026-01-31T12:00:00.123Z  INFO TASK_COMPLETED job_id=… task_id=… stage=1 request_id=8f3c… trace_id=4bf92f35…
//! ```

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Record};
use tracing::{Event, Id, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The setting that picks the line format (`json`, the default, or `pretty`).
pub const LOG_FORMAT_VAR: &str = "LOG_FORMAT";

/// The span field names read as the request id (first found wins) and the trace id.
const REQUEST_FIELDS: &[&str] = &["request_id", "invocation_id"];
const TRACE_FIELD: &str = "trace_id";

/// How lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    Json,
    /// One readable line per record.
    Pretty,
}

impl Format {
    /// From `LOG_FORMAT` (`pretty`, else JSON).
    pub fn from_env() -> Self {
        match std::env::var(LOG_FORMAT_VAR) {
            Ok(v) if v.trim().eq_ignore_ascii_case("pretty") => Format::Pretty,
            _ => Format::Json,
        }
    }
}

/// The ids a span carries, its own or inherited from its parent.
#[derive(Debug, Clone, Default)]
struct LogIds {
    request_id: Option<String>,
    trace_id: Option<String>,
}

struct IdVisitor<'a>(&'a mut LogIds);

impl IdVisitor<'_> {
    fn set(&mut self, field: &Field, value: String) {
        if value.is_empty() {
            return;
        }
        if REQUEST_FIELDS.contains(&field.name()) && self.0.request_id.is_none() {
            self.0.request_id = Some(value);
        } else if field.name() == TRACE_FIELD {
            self.0.trace_id = Some(value);
        }
    }
}

impl Visit for IdVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if REQUEST_FIELDS.contains(&field.name()) || field.name() == TRACE_FIELD {
            self.set(field, format!("{value:?}").trim_matches('"').to_string());
        }
    }
}

/// Keeps each span's [`LogIds`] (its own fields, else its parent's) for the line formatter.
#[derive(Debug, Default)]
pub struct IdsLayer;

impl<S> tracing_subscriber::Layer<S> for IdsLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut ids = LogIds::default();
        attrs.record(&mut IdVisitor(&mut ids));
        if let Some(parent) = span.parent()
            && let Some(p) = parent.extensions().get::<LogIds>()
        {
            ids.request_id = ids.request_id.or_else(|| p.request_id.clone());
            ids.trace_id = ids.trace_id.or_else(|| p.trace_id.clone());
        }
        span.extensions_mut().insert(ids);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        if let Some(ids) = ext.get_mut::<LogIds>() {
            values.record(&mut IdVisitor(ids));
        }
    }
}

/// An event's fields as JSON values.
struct FieldMap(Map<String, Value>);

impl Visit for FieldMap {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().into(), Value::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::from(format!("{value:?}")));
    }
}

/// The line formatter (install with `fmt::layer().event_format(Lines(format))` beside
/// [`IdsLayer`]).
#[derive(Debug, Clone, Copy)]
pub struct Lines(pub Format);

impl<S, N> FormatEvent<S, N> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = FieldMap(Map::new());
        event.record(&mut fields);
        let mut fields = fields.0;
        let ids = ctx
            .event_scope()
            .and_then(|scope| {
                scope
                    .from_root()
                    .filter_map(|s| s.extensions().get::<LogIds>().cloned())
                    .last()
            })
            .unwrap_or_default();
        let meta = event.metadata();
        let now = chrono::Utc::now();
        match self.0 {
            Format::Json => {
                let mut line = Map::new();
                line.insert(
                    "timestamp".into(),
                    Value::from(now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
                );
                line.insert("level".into(), Value::from(meta.level().as_str()));
                line.insert("target".into(), Value::from(meta.target()));
                line.append(&mut fields);
                line.insert("request_id".into(), ids.request_id.into());
                line.insert("trace_id".into(), ids.trace_id.into());
                writeln!(w, "{}", Value::Object(line))
            }
            Format::Pretty => {
                let message = fields
                    .remove("message")
                    .map(|m| text(&m))
                    .unwrap_or_default();
                write!(
                    w,
                    "{} {:>5} {message}",
                    now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    meta.level().as_str()
                )?;
                for (k, v) in &fields {
                    if k == "checkpoint" && text(v) == message {
                        continue;
                    }
                    write!(w, " {k}={}", text(v))?;
                }
                if let Some(r) = &ids.request_id {
                    write!(w, " request_id={r}")?;
                }
                if let Some(t) = &ids.trace_id {
                    write!(w, " trace_id={t}")?;
                }
                writeln!(w, "  [{}]", meta.target())
            }
        }
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
