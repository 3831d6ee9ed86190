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
