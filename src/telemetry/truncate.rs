//! Cutting strings at character boundaries before they reach the exporter.
//!
//! Why: opentelemetry-application-insights limits property values to 8192 bytes and messages to
//! 32768 bytes by slicing bytes (`&s[..N]`, `String::truncate`), which panics when byte N falls
//! inside a multi-byte character (functions-protocol.md §9.12). A panic there kills the batch
//! export thread and every later record is lost, so everything is cut here first.

use std::borrow::Cow;

/// Longest property value exported (Application Insights cuts at 8192 bytes).
pub const MAX_FIELD_BYTES: usize = 8000;

/// Longest message exported (Application Insights cuts at 32768 bytes).
pub(super) const MAX_MESSAGE_BYTES: usize = 32_000;

/// Longest property key exported (Application Insights cuts at 150 bytes).
pub(super) const MAX_KEY_BYTES: usize = 150;

/// Cuts `s` to at most `max` bytes at a character boundary, marking the cut with `...`.
pub fn truncate_chars(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut end = max.saturating_sub(3);
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}...", &s[..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_character_boundaries() {
        let s = "é".repeat(10_000); // 20 KB of two-byte characters
        let cut = truncate_chars(&s, 8001);
        assert!(cut.len() <= 8001);
        assert!(cut.ends_with("..."));
        assert_eq!(truncate_chars("short", 10), "short");
        // Four-byte characters, every cut position.
        let emoji = "🦀".repeat(100);
        for max in 0..60 {
            assert!(truncate_chars(&emoji, max).len() <= max.max(3));
        }
    }
}
