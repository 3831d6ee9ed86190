//! The Functions host's invocation payload (functions-protocol.md §3) and the response (§4).
//!
//! `Data` values arrive base64 (`dataType: binary`, what our function.json files use), as a
//! double-encoded JSON string (the default string binding), or as a plain JSON string; `Metadata`
//! scalars arrive as strings, strings arrive JSON-quoted, and unknown keys are ignored. Bodies in
//! foreign encodings are normalised ([`message_text`]): a UTF-8 or UTF-16 byte order mark, or the
//! message JSON wrapped in one JSON string literal (JavaScript SDK, Service Bus Explorer resends).

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::engine::Delivery;

/// A decoded queue-trigger invocation.
#[derive(Debug, Clone)]
pub struct QueueInvocation {
    /// The message body as text.
    pub body: String,
    /// How it was delivered.
    pub delivery: Delivery,
}

/// Decodes one `Data` value into the message text.
pub fn decode_data(v: &Value) -> String {
    match v {
        Value::String(s) => decode_string(s),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn decode_string(s: &str) -> String {
    let trimmed = s.trim().trim_start_matches(BOM);
    match serde_json::from_str::<Value>(trimmed) {
        // Double-encoded: the value is a JSON string whose content is the body.
        Ok(Value::String(inner)) => return message_text(&inner),
        // Plain JSON text.
        Ok(Value::Object(_)) | Ok(Value::Array(_)) => return trimmed.to_string(),
        _ => {}
    }
    // base64 of the raw body (dataType: binary).
    if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(trimmed)
        && let Some(text) = text_of(&bytes)
    {
        return message_text(&text);
    }
    message_text(s)
}

const BOM: char = '\u{feff}';

/// The text of a message body's bytes: UTF-8 (a byte order mark dropped), or UTF-16 when it
/// starts with a UTF-16 byte order mark (what some .NET senders write); `None` otherwise.
pub fn text_of(bytes: &[u8]) -> Option<String> {
    let utf16 = |units: Vec<u16>| String::from_utf16(&units).ok();
    match bytes {
        [0xFF, 0xFE, rest @ ..] if rest.len() % 2 == 0 => utf16(
            rest.chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect(),
        ),
        [0xFE, 0xFF, rest @ ..] if rest.len() % 2 == 0 => utf16(
            rest.chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect(),
        ),
        _ => String::from_utf8(bytes.to_vec())
            .ok()
            .map(|t| t.trim_start_matches(BOM).to_string()),
    }
}

/// The message JSON inside foreign encodings: a leading byte order mark dropped, and one level
/// of JSON string literal unwrapped when it holds a JSON object (what the JavaScript SDK and
/// Service Bus Explorer resends produce). Any other text is returned as it is.
pub fn message_text(text: &str) -> String {
    let t = text.trim().trim_start_matches(BOM);
    if let Ok(Value::String(inner)) = serde_json::from_str::<Value>(t) {
        let inner = inner.trim().trim_start_matches(BOM);
        if let Ok(Value::Object(_)) = serde_json::from_str::<Value>(inner) {
            return inner.to_string();
        }
    }
    if t.len() == text.len() {
        text.to_string()
    } else {
        t.to_string()
    }
}

/// A Metadata value as a plain string: unquotes JSON-quoted strings, stringifies numbers.
pub fn meta_str(m: &Map<String, Value>, key: &str) -> Option<String> {
    match m.get(key)? {
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::String(inner)) => Some(inner),
            _ => Some(s.clone()),
        },
        Value::Null => None,
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => Some(other.to_string()),
    }
}

/// A Metadata value as an integer (accepts `"1"`, `"\"1\""` and `1`).
pub fn meta_i32(m: &Map<String, Value>, key: &str) -> Option<i32> {
    meta_str(m, key).and_then(|s| s.trim().parse().ok())
}

/// A Metadata object (accepts an object or a string holding one).
pub fn meta_obj(m: &Map<String, Value>, key: &str) -> Option<Map<String, Value>> {
    match m.get(key)? {
        Value::Object(o) => Some(o.clone()),
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(o)) => Some(o),
            Ok(Value::String(inner)) => match serde_json::from_str::<Value>(&inner) {
                Ok(Value::Object(o)) => Some(o),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

/// Decodes a queue-trigger request body (the whole invocation JSON).
///
/// A payload that is not the host's envelope at all is returned as the message body itself, so
/// the engine records it as malformed instead of the handler failing.
pub fn decode_queue_invocation(
    function: &str,
    raw: &[u8],
    invocation_id: Option<String>,
) -> QueueInvocation {
    let text = match text_of(raw) {
        Some(t) => std::borrow::Cow::Owned(t),
        None => String::from_utf8_lossy(raw),
    };
    let envelope: Option<Map<String, Value>> = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(o)) if o.contains_key("Data") || o.contains_key("Metadata") => Some(o),
        _ => None,
    };
    let Some(envelope) = envelope else {
        return QueueInvocation {
            body: message_text(&text),
            delivery: Delivery {
                function: function.to_string(),
                invocation_id,
                ..Delivery::default()
            },
        };
    };
    let data = envelope
        .get("Data")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let meta = envelope
        .get("Metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    // Our bindings are named "msg"; accept any single trigger value.
    let value = data
        .get("msg")
        .or_else(|| data.values().next())
        .cloned()
        .unwrap_or(Value::Null);
    let props = meta_obj(&meta, "ApplicationProperties")
        .or_else(|| meta_obj(&meta, "UserProperties"))
        .unwrap_or_default();
    let prop_str = |k: &str| props.get(k).and_then(|v| v.as_str().map(str::to_string));
    QueueInvocation {
        body: decode_data(&value),
        delivery: Delivery {
            function: function.to_string(),
            message_id: meta_str(&meta, "MessageId"),
            delivery_count: meta_i32(&meta, "DeliveryCount"),
            invocation_id,
            dead_letter_reason: prop_str("DeadLetterReason")
                .or_else(|| meta_str(&meta, "DeadLetterReason")),
            dead_letter_description: prop_str("DeadLetterErrorDescription")
                .or_else(|| meta_str(&meta, "DeadLetterErrorDescription")),
            dead_letter_source: meta_str(&meta, "DeadLetterSource"),
            properties: props,
        },
    }
}

/// The Metadata keys that only a batch (`"cardinality": "many"`) carries: the extension names
/// each per-message key `<Key>Array` (ServiceBusTriggerBindingStrategy, batch dispatch).
const BATCH_KEYS: [&str; 5] = [
    "MessageIdArray",
    "DeliveryCountArray",
    "ApplicationPropertiesArray",
    "UserPropertiesArray",
    "SequenceNumberArray",
];

/// A Metadata array: the host serialises a batch's `<Key>Array` (and the Data array) with
/// `JsonConvert.SerializeObject`, so it arrives as a JSON string holding the array; a real JSON
/// array is accepted too. `None` when absent or not an array.
pub fn meta_array(m: &Map<String, Value>, key: &str) -> Option<Vec<Value>> {
    as_array(m.get(key)?)
}

fn as_array(v: &Value) -> Option<Vec<Value>> {
    match v {
        Value::Array(a) => Some(a.clone()),
        Value::String(s) => match serde_json::from_str::<Value>(s.trim()) {
            Ok(Value::Array(a)) => Some(a),
            _ => None,
        },
        _ => None,
    }
}

/// A batch element of a `<Key>Array` as a plain string (numbers stringified, nulls absent).
fn elem_str(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => Some(other.to_string()),
    }
}

/// Decodes a queue-trigger request into its messages: one for a single-message function
/// (`cardinality: one`, see [`decode_queue_invocation`]), one per element for a batch
/// (`cardinality: many`: `Data.<name>` an array of base64 strings with `dataType: binary`, or of
/// message texts, and the message's metadata at the same position of every `<Key>Array`). A
/// batch is recognised by its `<Key>Array` Metadata or a Data value that is a JSON array; a
/// position missing from an array leaves that field unknown for its message.
pub fn decode_queue_invocations(
    function: &str,
    raw: &[u8],
    invocation_id: Option<String>,
) -> Vec<QueueInvocation> {
    let single = || {
        vec![decode_queue_invocation(
            function,
            raw,
            invocation_id.clone(),
        )]
    };
    let text = match text_of(raw) {
        Some(t) => std::borrow::Cow::Owned(t),
        None => String::from_utf8_lossy(raw),
    };
    let Ok(Value::Object(envelope)) = serde_json::from_str::<Value>(&text) else {
        return single();
    };
    let empty = Map::new();
    let meta = envelope
        .get("Metadata")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let data = envelope
        .get("Data")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let value = data.get("msg").or_else(|| data.values().next());
    let batch_meta = BATCH_KEYS.iter().any(|k| meta.contains_key(*k));
    let elements = match value {
        Some(v @ Value::Array(_)) => as_array(v),
        Some(v) if batch_meta => as_array(v),
        _ => None,
    };
    let Some(elements) = elements else {
        return single();
    };
    let arr = |k: &str| meta_array(meta, k).unwrap_or_default();
    let (ids, counts, app, user, dl_source) = (
        arr("MessageIdArray"),
        arr("DeliveryCountArray"),
        arr("ApplicationPropertiesArray"),
        arr("UserPropertiesArray"),
        arr("DeadLetterSourceArray"),
    );
    elements
        .iter()
        .enumerate()
        .map(|(i, elem)| {
            let props = app
                .get(i)
                .or_else(|| user.get(i))
                .and_then(|p| match p {
                    Value::Object(o) => Some(o.clone()),
                    Value::String(s) => serde_json::from_str(s).ok(),
                    _ => None,
                })
                .unwrap_or_default();
            let prop_str = |k: &str| props.get(k).and_then(|v| v.as_str().map(str::to_string));
            QueueInvocation {
                body: decode_data(elem),
                delivery: Delivery {
                    function: function.to_string(),
                    message_id: elem_str(ids.get(i)),
                    delivery_count: elem_str(counts.get(i)).and_then(|c| c.trim().parse().ok()),
                    invocation_id: invocation_id.clone(),
                    dead_letter_reason: prop_str("DeadLetterReason"),
                    dead_letter_description: prop_str("DeadLetterErrorDescription"),
                    dead_letter_source: elem_str(dl_source.get(i)),
                    properties: props,
                },
            }
        })
        .collect()
}

/// The response body the host expects from a non-forwarded invocation.
pub fn response_body(logs: &[String]) -> Value {
    json!({"Outputs": {}, "Logs": logs, "ReturnValue": null})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_forms() {
        let body = r#"{"a":1}"#;
        let b64 = base64::engine::general_purpose::STANDARD.encode(body);
        assert_eq!(decode_data(&json!(b64)), body);
        assert_eq!(
            decode_data(&json!(serde_json::to_string(body).unwrap())),
            body
        );
        assert_eq!(decode_data(&json!(body)), body);
        assert_eq!(decode_data(&json!({"a": 1})), body);
    }

    #[test]
    fn foreign_encodings_yield_the_message_json() {
        let body = r#"{"a":1}"#;
        let b64 = |b: &[u8]| json!(base64::engine::general_purpose::STANDARD.encode(b));
        let quoted = serde_json::to_string(body).unwrap();
        let mut utf16 = vec![0xFF, 0xFE];
        utf16.extend(body.encode_utf16().flat_map(u16::to_le_bytes));
        for (name, form) in [
            ("BOM + JSON", b64(format!("\u{feff}{body}").as_bytes())),
            ("JSON string literal", b64(quoted.as_bytes())),
            (
                "BOM + JSON string literal",
                b64(format!("\u{feff}{quoted}").as_bytes()),
            ),
            ("UTF-16 LE with BOM", b64(&utf16)),
            ("string binding, BOM", json!(format!("\u{feff}{body}"))),
        ] {
            assert_eq!(decode_data(&form), body, "{name}");
        }
        // One level only, and only around an object.
        let twice = serde_json::to_string(&quoted).unwrap();
        assert_eq!(message_text(&twice), twice);
        assert_eq!(message_text("\"just text\""), "\"just text\"");
    }

    /// A batch as the host sends it to a custom handler: `Data.msg` and every `<Key>Array` are
    /// `JsonConvert.SerializeObject` strings of arrays (ScriptInvocationContextExtensions).
    fn host_batch(elements: Vec<Value>, with_props: bool) -> Vec<u8> {
        let s = |v: Value| json!(v.to_string());
        let mut meta = json!({
            "MessageIdArray": s(json!(["m1", "m2", "m3"])),
            "DeliveryCountArray": s(json!([1, 2, 10])),
            "LockTokenArray": s(json!(["t1", "t2", "t3"])),
            "SequenceNumberArray": s(json!([7, 8, 9])),
            "EnqueuedTimeUtcArray": s(json!(["2026-12-07T10:00:00", "2026-12-07T10:00:01", "2026-12-07T10:00:02"])),
            "ExpiresAtUtcArray": s(json!(["9999-12-31T23:59:59", "9999-12-31T23:59:59", "9999-12-31T23:59:59"])),
            "ContentTypeArray": s(json!([null, "application/json", null])),
            "CorrelationIdArray": s(json!([null, null, null])),
            "SubjectArray": s(json!([null, null, null])),
            "DeadLetterSourceArray": s(json!([null, null, "geospatial-tasks"])),
            "sys": {"MethodName": "tasks-queue-trigger", "UtcNow": "2026-12-07T10:00:03Z", "RandGuid": "x"},
        });
        if with_props {
            meta["ApplicationPropertiesArray"] = s(json!([
                {"job_id": "j1"},
                {"job_id": "j2", "task_id": "t2"},
                {"DeadLetterReason": "MaxDeliveryCountExceeded", "DeadLetterErrorDescription": "10 deliveries"},
            ]));
        } else {
            meta["UserPropertiesArray"] = s(json!([{"job_id": "j1"}, {}, {}]));
        }
        serde_json::to_vec(&json!({"Data": {"msg": s(Value::Array(elements))}, "Metadata": meta}))
            .unwrap()
    }

    #[test]
    fn a_batch_decodes_to_one_message_per_element_with_its_own_metadata() {
        let bodies = [r#"{"a":1}"#, r#"{"b":2}"#, "not json"];
        let b64 = |b: &str| json!(base64::engine::general_purpose::STANDARD.encode(b));
        // dataType binary: base64 elements; string binding: the texts themselves.
        for (form, elements) in [
            ("binary", bodies.iter().map(|b| b64(b)).collect::<Vec<_>>()),
            ("string", bodies.iter().map(|b| json!(b)).collect()),
        ] {
            let raw = host_batch(elements, true);
            let inv = decode_queue_invocations("tasks-queue-trigger", &raw, Some("inv".into()));
            assert_eq!(inv.len(), 3, "{form}");
            let got: Vec<&str> = inv.iter().map(|i| i.body.as_str()).collect();
            assert_eq!(got, bodies, "{form}");
            let ids: Vec<_> = inv.iter().map(|i| i.delivery.message_id.clone()).collect();
            assert_eq!(
                ids,
                [Some("m1".into()), Some("m2".into()), Some("m3".into())]
            );
            let counts: Vec<_> = inv.iter().map(|i| i.delivery.delivery_count).collect();
            assert_eq!(counts, [Some(1), Some(2), Some(10)]);
            assert_eq!(inv[1].delivery.properties["task_id"], "t2");
            assert_eq!(inv[0].delivery.dead_letter_source, None);
            assert_eq!(
                inv[2].delivery.dead_letter_source.as_deref(),
                Some("geospatial-tasks")
            );
            assert_eq!(
                inv[2].delivery.dead_letter_reason.as_deref(),
                Some("MaxDeliveryCountExceeded")
            );
            assert_eq!(
                inv[2].delivery.dead_letter_description.as_deref(),
                Some("10 deliveries")
            );
            assert!(
                inv.iter()
                    .all(|i| i.delivery.invocation_id.as_deref() == Some("inv"))
            );
        }
        // The older alias, and real JSON arrays instead of serialised strings.
        let raw = host_batch(vec![b64(bodies[0]), b64(bodies[1]), b64(bodies[2])], false);
        let inv = decode_queue_invocations("f", &raw, None);
        assert_eq!(inv[0].delivery.properties["job_id"], "j1");
        let raw = serde_json::to_vec(&json!({"Data": {"msg": [b64(bodies[0])]}, "Metadata": {"MessageIdArray": ["x"], "DeliveryCountArray": [3]}})).unwrap();
        let inv = decode_queue_invocations("f", &raw, None);
        assert_eq!(
            (
                inv.len(),
                inv[0].body.as_str(),
                inv[0].delivery.delivery_count
            ),
            (1, bodies[0], Some(3))
        );
        // An empty batch is no message; a single-message invocation stays one message.
        let raw = serde_json::to_vec(
            &json!({"Data": {"msg": "[]"}, "Metadata": {"MessageIdArray": "[]"}}),
        )
        .unwrap();
        assert!(decode_queue_invocations("f", &raw, None).is_empty());
        let raw = serde_json::to_vec(&json!({"Data": {"msg": b64(bodies[0])}, "Metadata": {"MessageId": "\"one\"", "DeliveryCount": "1"}})).unwrap();
        let inv = decode_queue_invocations("f", &raw, None);
        assert_eq!(
            (inv.len(), inv[0].delivery.message_id.as_deref()),
            (1, Some("one"))
        );
        // A single message whose body is a JSON array stays one (malformed) message.
        let raw = serde_json::to_vec(
            &json!({"Data": {"msg": "[1,2]"}, "Metadata": {"MessageId": "\"a\""}}),
        )
        .unwrap();
        assert_eq!(decode_queue_invocations("f", &raw, None).len(), 1);
    }

    #[test]
    fn metadata_quirks() {
        let m = json!({"DeliveryCount": "1", "MessageId": "\"abc\"", "SequenceNumber": 42, "Other": {"x": 1}});
        let m = m.as_object().unwrap();
        assert_eq!(meta_i32(m, "DeliveryCount"), Some(1));
        assert_eq!(meta_str(m, "MessageId").as_deref(), Some("abc"));
        assert_eq!(meta_i32(m, "SequenceNumber"), Some(42));
        assert_eq!(meta_str(m, "Missing"), None);
    }
}
