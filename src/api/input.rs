//! What a request may carry, checked before any handler logic: bodies (size, content type,
//! UTF-8, JSON nesting, string length, NUL), query strings (known names only, typed values) and
//! path segments (ids are 64 hex). Every refusal is a 4xx envelope naming the field, the rule and
//! the value received.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::{Value, json};

use super::error::{ApiError, detail, echo};
use crate::engine::JobId;

/// Largest request body accepted (64 KB).
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;
/// Deepest JSON nesting accepted.
pub(crate) const MAX_DEPTH: usize = 32;
/// Longest JSON string (or object key) accepted, unless a parameter schema says otherwise.
pub(crate) const MAX_STRING_BYTES: usize = 4096;
/// Longest query-string value accepted.
pub(crate) const MAX_QUERY_VALUE_BYTES: usize = 512;
/// Longest request target (path and query) accepted; longer is a 414 envelope. (Past 64 KB
/// hyper itself refuses the request line, with an empty 414.)
pub(crate) const MAX_URI_BYTES: usize = 8 * 1024;
/// Most header bytes (names and values) accepted; more is a 431 envelope. (Past hyper's buffer,
/// about 400 KB for the whole head, hyper itself answers an empty 431.)
pub(crate) const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Middleware: a request target or headers longer than the limits are refused with the envelope
/// before routing (hyper's own refusals of far larger ones carry no body).
pub(crate) async fn request_limits(
    req: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    let over = [
        (
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            "(uri)",
            "the request target",
            uri_len,
            MAX_URI_BYTES,
        ),
        (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            "(headers)",
            "the request headers",
            header_bytes,
            MAX_HEADER_BYTES,
        ),
    ]
    .into_iter()
    .find(|(.., len, max)| len > max);
    match over {
        Some((status, error, field, what, len, max)) => ApiError::new(
            status,
            error,
            format!("{what} is {len} bytes; at most {max} are accepted"),
        )
        .with_details(vec![detail(
            field,
            "max_bytes",
            json!(format!("{len} bytes")),
            format!("at most {max} bytes"),
        )])
        .into_response(),
        None => next.run(req).await,
    }
}

/// A JSON request body that passed the limits (`{}` when the body is empty). The routes that take
/// one (control and admin actions) need only the checks, so the value is not kept.
#[derive(Debug)]
pub(crate) struct JsonBody;

/// Like [`JsonBody`] (but an empty body is refused, `body_required`), for bodies validated
/// against a parameter schema afterwards: string values
/// may be longer than [`MAX_STRING_BYTES`] when the schema allows it (the schema's own maximum,
/// 4 KB by default, is applied by the validator). Names, NUL, nesting and size are checked here.
#[derive(Debug)]
pub(crate) struct SchemaBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        read_body(req, true).await.map(|_| JsonBody)
    }
}

impl<S: Send + Sync> FromRequest<S> for SchemaBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        // The Functions host forwards a body only when the request has a Content-Length > 0, so
        // a chunked client's parameters arrive as an empty body: refuse it rather than take it
        // for the defaults.
        if axum::body::HttpBody::size_hint(req.body()).exact() == Some(0) {
            return Err(ApiError::field(
                "body_required",
                "(body)",
                "required",
                json!(""),
                "request body is empty; send `{}` for the defaults (a chunked body is dropped by the Functions host: send it with a Content-Length)",
            ));
        }
        read_body(req, false).await.map(SchemaBody)
    }
}

/// Reads a body up to the size limit and checks it.
async fn read_body(req: Request, string_limit: bool) -> Result<Value, ApiError> {
    let (parts, body) = req.into_parts();
    if let Some(len) = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > MAX_BODY_BYTES as u64
    {
        return Err(too_large(len));
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|e| body_read_error(&e))?;
    parse_body_with(&parts.headers, &bytes, string_limit)
}

/// A body that could not be read: too large (413), too slow (408), or not well-formed HTTP,
/// a broken chunked encoding or a connection that closed early (400); each says which.
fn body_read_error(e: &axum::Error) -> ApiError {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if c.is::<http_body_util::LengthLimitError>() {
            return too_large((MAX_BODY_BYTES + 1) as u64);
        }
        if let Some(t) = c.downcast_ref::<crate::local::server::BodyReadTimeout>() {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                t.to_string(),
            )
            .with_details(vec![detail(
                "(body)",
                "body_read_timeout",
                json!(format!("{} s", t.0.as_secs_f64())),
                "send the whole body promptly (HTTP_BODY_READ_TIMEOUT_S)",
            )]);
        }
        cur = c.source();
    }
    let why = crate::azure::error_chain(e);
    ApiError::field(
        "body_unreadable",
        "(body)",
        "http_body",
        echo(&why),
        format!("the request body could not be read: {why}"),
    )
}

fn too_large(len: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("request body is larger than {MAX_BODY_BYTES} bytes"),
    )
    .with_details(vec![detail(
        "(body)",
        "max_bytes",
        json!(format!("{len} bytes")),
        format!("at most {MAX_BODY_BYTES} bytes"),
    )])
}

/// Checks and parses a body: content type, UTF-8, nesting, string lengths (when `string_limit`),
/// NUL characters.
fn parse_body_with(
    headers: &HeaderMap,
    body: &Bytes,
    string_limit: bool,
) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = String::from_utf8_lossy(ct.as_bytes()).to_ascii_lowercase();
        let mime = ct.split(';').next().unwrap_or("").trim().to_string();
        if mime != "application/json" && !mime.ends_with("+json") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "expected Content-Type application/json, got \"{}\"",
                    echo(&ct).as_str().unwrap_or_default()
                ),
            )
            .with_details(vec![detail(
                "header.content-type",
                "media_type",
                echo(&ct),
                "must be application/json",
            )]));
        }
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(too_large(body.len() as u64));
    }
    let text = std::str::from_utf8(body).map_err(|e| {
        ApiError::field(
            "invalid_utf8",
            "(body)",
            "utf8",
            json!(format!("invalid byte at offset {}", e.valid_up_to())),
            "request body is not valid UTF-8",
        )
    })?;
    if let Some(at) = depth_exceeded(text, MAX_DEPTH) {
        return Err(ApiError::field(
            "too_deep",
            "(body)",
            "max_depth",
            json!(format!("nesting deeper than {MAX_DEPTH} at byte {at}")),
            format!("JSON nesting is limited to {MAX_DEPTH} levels"),
        ));
    }
    let value: Value = serde_json::from_str(text).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("request body is not valid JSON: {e}"),
        )
        .with_details(vec![json!({"field": "(body)", "rule": "json", "value": format!("line {} column {}", e.line(), e.column()), "message": e.to_string()})])
    })?;
    // serde_json keeps the last of two equal keys; which one the client meant is unknowable.
    if let Some(path) = first_duplicate_key(text) {
        return Err(ApiError::field(
            "duplicate_key",
            &format!("body.{path}"),
            "unique_keys",
            echo(&path),
            "the key appears more than once in its object",
        ));
    }
    let mut problems = Vec::new();
    check_strings(&value, "", string_limit, &mut problems);
    if !problems.is_empty() {
        return Err(ApiError::bad_request(
            "validation_error",
            format!("{} field(s) of the body are not acceptable", problems.len()),
        )
        .with_details(problems));
    }
    Ok(value)
}

/// The path (`a.b.2.c`) of the first key that appears twice in one object of valid JSON `text`.
fn first_duplicate_key(text: &str) -> Option<String> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_str(text);
    DupSeed(String::new()).deserialize(&mut de).ok().flatten()
}

/// Walks one JSON value at a path, answering the first duplicate key's path.
struct DupSeed(String);

impl<'de> serde::de::DeserializeSeed<'de> for DupSeed {
    type Value = Option<String>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for DupSeed {
    type Value = Option<String>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
        let mut seen = std::collections::HashSet::new();
        let mut found = None;
        while let Some(k) = m.next_key::<String>()? {
            let path = join(&self.0, &k);
            let inner = m.next_value_seed(DupSeed(path.clone()))?;
            if found.is_none() {
                found = if seen.insert(k) { inner } else { Some(path) };
            }
        }
        Ok(found)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        let mut i = 0usize;
        while let Some(inner) = s.next_element_seed(DupSeed(join(&self.0, &i.to_string())))? {
            found = found.or(inner);
            i += 1;
        }
        Ok(found)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// The byte offset where nesting first exceeds `max`, scanning outside strings only.
fn depth_exceeded(text: &str, max: usize) -> Option<usize> {
    let (mut depth, mut in_str, mut esc) = (0usize, false, false);
    for (i, b) in text.bytes().enumerate() {
        if in_str {
            match (esc, b) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Some(i);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn check_strings(v: &Value, at: &str, limit: bool, out: &mut Vec<Value>) {
    if out.len() >= 20 {
        return;
    }
    let field = if at.is_empty() { "(body)" } else { at };
    match v {
        Value::String(s) => check_str(s, field, limit, out),
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                check_strings(x, &format!("{field}[{i}]"), limit, out);
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                let path = join(at, k);
                check_str(k, &format!("{path} (name)"), true, out);
                check_strings(x, &path, limit, out);
            }
        }
        _ => {}
    }
}

fn check_str(s: &str, field: &str, limit: bool, out: &mut Vec<Value>) {
    if limit && s.len() > MAX_STRING_BYTES {
        out.push(detail(
            field,
            "max_length",
            echo(s),
            format!("strings are limited to {MAX_STRING_BYTES} bytes"),
        ));
    } else if s.contains('\0') {
        out.push(detail(
            field,
            "no_nul",
            echo(&s.replace('\0', "\\u0000")),
            "NUL characters are not accepted",
        ));
    }
}

/// Percent-decoded path parameters, in route order; a segment that is not UTF-8 is a 400.
#[derive(Debug)]
pub(crate) struct PathParams(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for PathParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<Vec<(String, String)>>::from_request_parts(parts, state).await {
            Ok(Path(p)) => Ok(PathParams(p)),
            Err(e) => Err(ApiError::field(
                "invalid_path",
                "path",
                "utf8",
                echo(&parts.uri.path().chars().take(200).collect::<String>()),
                format!("a path segment cannot be decoded: {e}"),
            )),
        }
    }
}

impl PathParams {
    /// The raw value of a path parameter.
    pub(crate) fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// A path parameter that must be a job id.
    pub(crate) fn job_id(&self, name: &str) -> Result<JobId, ApiError> {
        parse_job_id(self.get(name))
    }

    /// A short name-like parameter (job type): at most 100 characters, no control characters.
    pub(crate) fn name(&self, name: &str) -> Result<String, ApiError> {
        let v = self.get(name);
        if v.len() > 100 || v.chars().any(char::is_control) {
            return Err(ApiError::field(
                "invalid_path",
                &format!("path.{name}"),
                "pattern",
                echo(v),
                "must be at most 100 characters without control characters",
            ));
        }
        Ok(v.to_string())
    }
}

/// Parses a job id path segment (400 when it is not 64 hex).
pub(crate) fn parse_job_id(raw: &str) -> Result<JobId, ApiError> {
    JobId::parse(raw).map_err(|e| {
        ApiError::field(
            "invalid_job_id",
            "path.job_id",
            "pattern ^[0-9a-f]{64}$",
            echo(&raw.replace('\0', "\\u0000")),
            e.to_string(),
        )
    })
}

/// A decoded query string. Names must be known to the route; `code` (the Functions key, which
/// the host forwards) is always allowed and never read.
#[derive(Debug, Default)]
pub(crate) struct QueryParams(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        QueryParams::parse(parts.uri.query().unwrap_or(""))
    }
}

fn decode(part: &str, what: &str) -> Result<String, ApiError> {
    let plus = part.replace('+', " ");
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(&plus).collect();
    let s = String::from_utf8(bytes).map_err(|_| {
        ApiError::field(
            "invalid_query",
            &format!("query.{what}"),
            "utf8",
            echo(part),
            "query string is not valid UTF-8",
        )
    })?;
    if s.contains('\0') {
        return Err(ApiError::field(
            "invalid_query",
            &format!("query.{what}"),
            "no_nul",
            echo(&s.replace('\0', "\\u0000")),
            "NUL characters are not accepted",
        ));
    }
    Ok(s)
}

impl QueryParams {
    /// Decodes a raw query string.
    pub(crate) fn parse(raw: &str) -> Result<Self, ApiError> {
        let mut out = Vec::new();
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = decode(k, "(name)")?;
            let v = decode(v, &k)?;
            out.push((k, v));
        }
        Ok(Self(out))
    }

    /// Refuses names the route does not know (all of them reported).
    pub(crate) fn only(&self, known: &[&str]) -> Result<(), ApiError> {
        let unknown: Vec<Value> = self
            .0
            .iter()
            .filter(|(k, _)| k != "code" && !known.contains(&k.as_str()))
            .map(|(k, v)| {
                detail(
                    &format!("query.{}", k.chars().take(100).collect::<String>()),
                    "unknown_field",
                    echo(v),
                    format!("unknown query parameter; known: {}", known.join(", ")),
                )
            })
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        Err(ApiError::bad_request(
            "unknown_parameter",
            format!("{} unknown query parameter(s)", unknown.len()),
        )
        .with_details(unknown))
    }

    /// A string parameter (the last one wins when repeated), at most `max` bytes.
    pub(crate) fn text(&self, name: &str, max: usize) -> Result<Option<String>, ApiError> {
        let Some((_, v)) = self.0.iter().rev().find(|(k, _)| k == name) else {
            return Ok(None);
        };
        if v.len() > max.min(MAX_QUERY_VALUE_BYTES) {
            return Err(ApiError::field(
                "invalid_query",
                &format!("query.{name}"),
                "max_length",
                echo(v),
                format!("at most {} bytes", max.min(MAX_QUERY_VALUE_BYTES)),
            ));
        }
        Ok(Some(v.clone()))
    }

    /// An integer parameter within `min..=max`.
    pub(crate) fn int(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        let Some(v) = self.text(name, 32)? else {
            return Ok(None);
        };
        let n: i64 = v.trim().parse().map_err(|_| {
            ApiError::field(
                "invalid_query",
                &format!("query.{name}"),
                "type",
                echo(&v),
                "expected an integer",
            )
        })?;
        if n < min || n > max {
            return Err(ApiError::field(
                "invalid_query",
                &format!("query.{name}"),
                if n < min { "minimum" } else { "maximum" },
                json!(n),
                format!("must be within {min}..={max}"),
            ));
        }
        Ok(Some(n))
    }

    /// A parameter restricted to `allowed` values.
    pub(crate) fn one_of(
        &self,
        name: &str,
        allowed: &[&'static str],
    ) -> Result<Option<&'static str>, ApiError> {
        let Some(v) = self.text(name, 100)? else {
            return Ok(None);
        };
        allowed
            .iter()
            .find(|a| **a == v)
            .copied()
            .map(Some)
            .ok_or_else(|| {
                ApiError::field(
                    "invalid_query",
                    &format!("query.{name}"),
                    "enum",
                    echo(&v),
                    format!("must be one of {}", allowed.join(", ")),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_found_at_any_depth_and_only_within_one_object() {
        assert_eq!(
            first_duplicate_key(r#"{"n": 1, "n": 2}"#).as_deref(),
            Some("n")
        );
        assert_eq!(
            first_duplicate_key(r#"{"a": [{"x": 1}, {"x": 1, "y": {"z": 0, "z": 1}}]}"#).as_deref(),
            Some("a.1.y.z")
        );
        assert_eq!(
            first_duplicate_key(r#"{"a": {"n": 1}, "b": {"n": 1}, "n": null}"#),
            None
        );
        assert_eq!(first_duplicate_key(r#"[1, "n", {"n": true}]"#), None);
    }

    #[test]
    fn nesting_is_counted_outside_strings_only() {
        assert_eq!(depth_exceeded(r#"{"a": "[[[[["}"#, 2), None);
        assert_eq!(depth_exceeded("[[[", 2), Some(2));
        assert_eq!(depth_exceeded(r#"{"a\"[[[": 1}"#, 1), None);
    }

    #[test]
    fn query_values_are_decoded_and_checked() {
        let q = QueryParams::parse("status=failed&limit=5&x=%41+b").unwrap();
        assert_eq!(q.text("x", 10).unwrap().as_deref(), Some("A b"));
        assert_eq!(q.int("limit", 1, 10).unwrap(), Some(5));
        assert!(q.int("limit", 6, 10).is_err());
        assert!(q.only(&["status", "limit"]).is_err());
        assert!(QueryParams::parse("a=%FF").is_err());
        assert!(QueryParams::parse("a=%00").is_err());
        assert!(QueryParams::parse("code=k").unwrap().only(&[]).is_ok());
    }
}
