//! W3C trace context (`traceparent`) propagation: one distributed trace per job.
//!
//! The submit request's span context is stored on the job (`app.jobs.traceparent`) and copied into
//! every queue message's application properties and outbox row. Each invocation span then takes
//! it as its remote parent, so submission, every stage and every task share one trace id, which
//! Application Insights shows as one `operation_Id`.
//!
//! Without an OpenTelemetry exporter installed the spans carry no context; a job still gets a
//! valid (generated) `traceparent`, so the trace joins up as soon as an exporter is configured.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The application property and HTTP header that carry the trace context.
pub(crate) const TRACEPARENT: &str = "traceparent";

/// Parses a W3C `traceparent` (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`).
/// Returns `None` for anything else, including all-zero ids.
pub(crate) fn parse_traceparent(s: &str) -> Option<SpanContext> {
    let mut parts = s.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |p: &str, n: usize| {
        p.len() == n
            && p.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    // Version 00 has exactly four parts; a later version may append fields (W3C §3.2.4).
    if !hex(version, 2) || version == "ff" || (version == "00" && parts.next().is_some()) {
        return None;
    }
    if !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let cx = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags),
        true,
        TraceState::default(),
    );
    cx.is_valid().then_some(cx)
}

/// The trace id (32 hex) of a valid `traceparent`, for log lines.
pub(crate) fn trace_id_of(traceparent: &str) -> Option<String> {
    parse_traceparent(traceparent).map(|cx| cx.trace_id().to_string())
}

/// Formats a span context as a `traceparent` value.
pub(crate) fn format_traceparent(cx: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        cx.trace_id(),
        cx.span_id(),
        cx.trace_flags().to_u8()
    )
}

/// The `traceparent` of the current `tracing` span, when an OpenTelemetry layer gives it one.
pub(crate) fn current_traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| format_traceparent(sc))
}

/// A fresh, valid, sampled `traceparent` with random ids.
pub(crate) fn generate_traceparent() -> String {
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
    format!("00-{trace}-{span}-01")
}

/// The trace context a new job is stored with: the current span's (the submit request, which
/// already continues an incoming `traceparent` header), else the incoming header when it is
/// valid, else a generated one.
pub(crate) fn for_new_job(incoming: Option<&str>) -> String {
    current_traceparent()
        .or_else(|| {
            incoming
                .filter(|s| parse_traceparent(s).is_some())
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(generate_traceparent)
}

/// Makes `span` continue the trace in `traceparent` (a remote parent). Does nothing when the
/// value is missing or invalid, or when no OpenTelemetry layer is installed. Call it before the
/// span is first entered.
pub(crate) fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(sc) = traceparent.and_then(parse_traceparent) {
        let cx = opentelemetry::Context::new().with_remote_span_context(sc);
        // An error means there is no OpenTelemetry layer (stdout mode) or the span is disabled.
        let _ = span.set_parent(cx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_rejects_garbage() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cx = parse_traceparent(tp).expect("valid");
        assert_eq!(format_traceparent(&cx), tp);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e47é6-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad:?} must be refused");
        }
        assert!(parse_traceparent(&generate_traceparent()).is_some());
    }

    #[test]
    fn a_new_job_keeps_a_valid_incoming_header_and_replaces_an_invalid_one() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(for_new_job(Some(tp)), tp);
        let generated = for_new_job(Some("garbage"));
        assert!(parse_traceparent(&generated).is_some());
        assert_ne!(generated, for_new_job(None));
    }
}
