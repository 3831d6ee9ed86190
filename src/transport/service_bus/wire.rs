//! What goes on the wire to the Service Bus REST API (functions-protocol.md §5): the
//! `BrokerProperties` JSON, custom-property headers of a single send, the batch body, and the
//! split of many messages into batches within the count and size limits.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::config::ServiceBusLimits;
use crate::transport::OutboundMessage;

/// Content type of a batch send (exactly this, without a charset).
pub(crate) const BATCH_CONTENT_TYPE: &str = "application/vnd.microsoft.servicebus.json";
/// Content type of a single message (the message's ContentType).
pub(crate) const MESSAGE_CONTENT_TYPE: &str = "application/json";

/// The `BrokerProperties` of one message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct BrokerProperties {
    /// Deterministic id (duplicate detection drops replays).
    pub message_id: String,
    /// The job's correlation id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// Earliest delivery, RFC 1123 (`Sun, 06 Nov 1994 08:49:37 GMT`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_enqueue_time_utc: Option<String>,
    /// Time to live in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_to_live: Option<u64>,
}

impl BrokerProperties {
    /// The broker properties of `m`, with an optional time to live.
    pub(crate) fn of(m: &OutboundMessage, ttl: Option<Duration>) -> Self {
        Self {
            message_id: m.message_id.clone(),
            correlation_id: m.correlation_id.clone().filter(|c| !c.is_empty()),
            scheduled_enqueue_time_utc: m.scheduled_at.map(rfc1123),
            time_to_live: ttl.map(|d| d.as_secs().max(1)),
        }
    }

    /// The header value.
    pub(crate) fn to_header(&self) -> String {
        serde_json::to_string(self).expect("broker properties serialise")
    }
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`.
pub(crate) fn rfc1123(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// One custom property as a single-send header value: strings quoted (the REST API parses the
/// header as a typed value; an unquoted value that looks like a number would become a number),
/// numbers and booleans plain.
pub(crate) fn property_header_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{}\"", s.replace('"', "'")),
        Value::Null => "\"\"".to_string(),
        other => other.to_string(),
    }
}

/// One element of a batch body.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct BatchElement<'a> {
    /// The message body (UTF-8 JSON text).
    pub body: &'a str,
    /// Broker properties.
    pub broker_properties: BrokerProperties,
    /// Application properties.
    pub user_properties: &'a Map<String, Value>,
}

/// A message prepared for sending, with its sizes.
#[derive(Debug, Clone)]
pub(crate) struct Prepared<'a> {
    /// The message.
    pub message: &'a OutboundMessage,
    /// Broker properties.
    pub broker: BrokerProperties,
    /// The serialized batch element.
    pub element: String,
}

/// A message over the size limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TooLarge {
    /// Its MessageId.
    pub message_id: String,
    /// Its job.
    pub job_id: Option<String>,
    /// Its task.
    pub task_id: Option<String>,
    /// Its size.
    pub bytes: usize,
    /// The limit.
    pub limit: usize,
}

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "message {} (job {}, task {}) is {} bytes, over the {}-byte Service Bus message limit (SERVICE_BUS_MAX_MESSAGE_BYTES)",
            self.message_id,
            self.job_id.as_deref().unwrap_or("-"),
            self.task_id.as_deref().unwrap_or("-"),
            self.bytes,
            self.limit
        )
    }
}

/// Prepares `m`, or reports that it is too large.
pub(crate) fn prepare<'a>(
    m: &'a OutboundMessage,
    ttl: Option<Duration>,
    limits: &ServiceBusLimits,
) -> Result<Prepared<'a>, TooLarge> {
    let broker = BrokerProperties::of(m, ttl);
    let element = serde_json::to_string(&BatchElement {
        body: &m.body,
        broker_properties: broker.clone(),
        user_properties: &m.properties,
    })
    .expect("batch element serialises");
    let props_bytes: usize = broker.to_header().len()
        + m.properties
            .iter()
            .map(|(k, v)| k.len() + property_header_value(v).len())
            .sum::<usize>();
    let message_bytes = m.body.len() + props_bytes;
    if message_bytes > limits.max_message_bytes {
        return Err(TooLarge {
            message_id: m.message_id.clone(),
            job_id: m.job_id.clone().or_else(|| prop(m, "job_id")),
            task_id: prop(m, "task_id"),
            bytes: message_bytes,
            limit: limits.max_message_bytes,
        });
    }
    Ok(Prepared {
        message: m,
        broker,
        element,
    })
}

fn prop(m: &OutboundMessage, k: &str) -> Option<String> {
    m.properties
        .get(k)
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

/// One HTTP request's worth of messages (all for one queue).
#[derive(Debug, Clone)]
pub(crate) enum Request<'a> {
    /// A single message: raw body, `BrokerProperties` and property headers.
    Single(Prepared<'a>),
    /// A batch body `[{"Body":…,"BrokerProperties":…,"UserProperties":…}, …]`.
    Batch {
        /// The messages, in order.
        messages: Vec<Prepared<'a>>,
        /// The body.
        body: String,
    },
}

impl Request<'_> {
    /// Messages in this request.
    pub(crate) fn len(&self) -> usize {
        match self {
            Request::Single(_) => 1,
            Request::Batch { messages, .. } => messages.len(),
        }
    }
}

/// Splits the prepared messages of one queue into requests: batches of at most
/// `max_batch_messages` whose body stays within `max_batch_bytes`, in order. A batch of one is
/// sent as a single message, and so is a message whose batch element alone exceeds the batch
/// limit (it is within the message limit, or [`prepare`] would have refused it).
pub(crate) fn split<'a>(
    prepared: Vec<Prepared<'a>>,
    limits: &ServiceBusLimits,
) -> Vec<Request<'a>> {
    let mut out = Vec::new();
    let mut cur: Vec<Prepared<'a>> = Vec::new();
    let mut cur_bytes = 2; // "[" and "]"
    let flush = |cur: &mut Vec<Prepared<'a>>, out: &mut Vec<Request<'a>>| {
        let batch = std::mem::take(cur);
        match batch.len() {
            0 => {}
            1 => out.push(Request::Single(batch.into_iter().next().expect("one"))),
            _ => {
                let mut body = String::with_capacity(
                    batch.iter().map(|p| p.element.len() + 1).sum::<usize>() + 2,
                );
                body.push('[');
                for (i, p) in batch.iter().enumerate() {
                    if i > 0 {
                        body.push(',');
                    }
                    body.push_str(&p.element);
                }
                body.push(']');
                out.push(Request::Batch {
                    messages: batch,
                    body,
                });
            }
        }
    };
    for p in prepared {
        let add = p.element.len() + usize::from(!cur.is_empty());
        if !cur.is_empty()
            && (cur.len() >= limits.max_batch_messages || cur_bytes + add > limits.max_batch_bytes)
        {
            flush(&mut cur, &mut out);
            cur_bytes = 2;
        }
        if 2 + p.element.len() > limits.max_batch_bytes {
            // Too big for any batch: alone, as a single send.
            flush(&mut cur, &mut out);
            cur_bytes = 2;
            out.push(Request::Single(p));
            continue;
        }
        cur_bytes += p.element.len() + usize::from(!cur.is_empty());
        cur.push(p);
    }
    flush(&mut cur, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg(i: usize, body_len: usize) -> OutboundMessage {
        let mut properties = Map::new();
        properties.insert("job_id".into(), json!("j1"));
        properties.insert("task_id".into(), json!(format!("t{i}")));
        properties.insert("stage".into(), json!(1));
        OutboundMessage {
            queue: "geospatial-tasks".into(),
            message_id: format!("t{i}:0"),
            body: "x".repeat(body_len),
            properties,
            correlation_id: Some("c".into()),
            scheduled_at: None,
            job_id: Some("j1".into()),
        }
    }

    fn requests(ms: &[OutboundMessage], limits: &ServiceBusLimits) -> Vec<usize> {
        let p = ms
            .iter()
            .map(|m| prepare(m, None, limits).unwrap())
            .collect();
        split(p, limits).iter().map(Request::len).collect()
    }

    #[test]
    fn broker_properties_use_the_rest_api_names_and_formats() {
        let mut m = msg(1, 3);
        m.scheduled_at = Some(
            DateTime::parse_from_rfc3339("1994-11-06T08:49:37Z")
                .unwrap()
                .into(),
        );
        let b = BrokerProperties::of(&m, Some(Duration::from_secs(86400)));
        assert_eq!(
            b.to_header(),
            r#"{"MessageId":"t1:0","CorrelationId":"c","ScheduledEnqueueTimeUtc":"Sun, 06 Nov 1994 08:49:37 GMT","TimeToLive":86400}"#
        );
        m.correlation_id = None;
        m.scheduled_at = None;
        assert_eq!(
            BrokerProperties::of(&m, None).to_header(),
            r#"{"MessageId":"t1:0"}"#
        );
        assert_eq!(property_header_value(&json!("abc")), "\"abc\"");
        assert_eq!(property_header_value(&json!(2)), "2");
    }

    #[test]
    fn batches_are_split_by_count() {
        let limits = ServiceBusLimits::default();
        let ms: Vec<_> = (0..250).map(|i| msg(i, 10)).collect();
        assert_eq!(requests(&ms, &limits), vec![100, 100, 50]);
        let ms: Vec<_> = (0..101).map(|i| msg(i, 10)).collect();
        assert_eq!(
            requests(&ms, &limits),
            vec![100, 1],
            "a lone remainder is a single send"
        );
    }

    #[test]
    fn batches_are_split_by_size_and_every_body_fits() {
        let limits = ServiceBusLimits {
            max_batch_bytes: 10_000,
            ..ServiceBusLimits::default()
        };
        let ms: Vec<_> = (0..20).map(|i| msg(i, 2_000)).collect();
        let p: Vec<_> = ms
            .iter()
            .map(|m| prepare(m, None, &limits).unwrap())
            .collect();
        let reqs = split(p, &limits);
        let total: usize = reqs.iter().map(Request::len).sum();
        assert_eq!(total, 20);
        assert!(reqs.len() >= 5, "{} requests", reqs.len());
        let mut order = Vec::new();
        for r in &reqs {
            if let Request::Batch { body, messages } = r {
                assert!(body.len() <= 10_000, "{}", body.len());
                let v: Vec<Value> = serde_json::from_str(body).unwrap();
                assert_eq!(v.len(), messages.len());
                order.extend(messages.iter().map(|p| p.message.message_id.clone()));
            } else if let Request::Single(p) = r {
                order.push(p.message.message_id.clone());
            }
        }
        let want: Vec<_> = ms.iter().map(|m| m.message_id.clone()).collect();
        assert_eq!(order, want, "order is kept");
    }

    #[test]
    fn a_message_bigger_than_a_batch_goes_alone_and_one_over_the_message_limit_is_refused() {
        let limits = ServiceBusLimits {
            max_batch_bytes: 5_000,
            max_message_bytes: 8_000,
            ..ServiceBusLimits::default()
        };
        let ms = vec![msg(0, 10), msg(1, 6_000), msg(2, 10), msg(3, 10)];
        assert_eq!(requests(&ms, &limits), vec![1, 1, 2]);
        let big = msg(9, 9_000);
        let e = prepare(&big, None, &limits).unwrap_err();
        assert_eq!(e.task_id.as_deref(), Some("t9"));
        let s = e.to_string();
        assert!(
            s.contains("job j1") && s.contains("task t9") && s.contains("8000-byte"),
            "{s}"
        );
    }
}
