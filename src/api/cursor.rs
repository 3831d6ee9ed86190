//! Keyset cursors: the opaque `next_cursor` of the listings (URL-safe base64 of the last row's
//! sort key), and the 400 for a cursor this API did not make.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Datelike, Utc};

use super::error::ApiError;

/// The 400 for a cursor this API did not make.
pub(crate) fn cursor_error(raw: &str) -> ApiError {
    ApiError::field(
        "invalid_cursor",
        "query.cursor",
        "cursor",
        super::error::echo(raw),
        "not a cursor returned by this API (pass next_cursor unchanged)",
    )
}

/// A cursor's text (the sort key, `.`-separated).
pub(crate) fn encode(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(key)
}

/// The sort key of a cursor made by [`encode`].
pub(crate) fn decode(raw: &str) -> Result<String, ApiError> {
    URL_SAFE_NO_PAD
        .decode(raw)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| cursor_error(raw))
}

/// The cursor of a row listed newest first: its creation time and id.
pub(crate) fn time_cursor(created: DateTime<Utc>, id: &str) -> String {
    encode(&format!("{}.{id}", created.timestamp_micros()))
}

/// Reads a cursor made by [`time_cursor`]; `id_ok` checks its id part (and may normalise it),
/// `None` refusing it.
pub(crate) fn parse_time_cursor<T>(
    raw: &str,
    id_ok: impl FnOnce(&str) -> Option<T>,
) -> Result<(DateTime<Utc>, T), ApiError> {
    let bad = || cursor_error(raw);
    let text = decode(raw)?;
    let (micros, id) = text.split_once('.').ok_or_else(bad)?;
    // Years 1..=9999: chrono reaches further than PostgreSQL's timestamptz (4713 BC onwards),
    // and a time out of PostgreSQL's range would fail the query (SQLSTATE 22008) instead of
    // being this client's 400.
    let at = micros
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .filter(|t| (1..=9999).contains(&t.year()))
        .ok_or_else(bad)?;
    Ok((at, id_ok(id).ok_or_else(bad)?))
}
