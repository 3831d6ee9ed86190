//! Hostile input on every string parameter, path segment and body: always a 4xx with the
//! envelope, nothing stored, nothing panics (a caught panic would show as a 500 here).

use serde_json::{Value, json};

use crate::common::TestApp;

const INJECTIONS: &[&str] = &[
    "'; DROP TABLE app.jobs; --",
    "\" OR 1=1 --",
    "1; SELECT pg_sleep(5)",
    "x') UNION SELECT job_id FROM app.jobs --",
    "../../etc/passwd",
    "%27%20OR%20%271%27%3D%271",
];

/// Path segments (percent-encoded) that are never a valid job id or job type.
fn hostile_segments() -> Vec<String> {
    let mut v: Vec<String> = INJECTIONS
        .iter()
        .map(|s| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        })
        .collect();
    v.push("%FF%FE%FD".into()); // invalid UTF-8
    v.push("abc%00def".into()); // NUL
    v.push(format!("{}%00", "a".repeat(63)));
    v.push("a".repeat(5000));
    v.push(format!("{}'", "a".repeat(63)));
    v
}

fn assert_envelope(what: &str, status: u16, b: &Value) {
    assert!(
        (400..500).contains(&status),
        "{what}: expected 4xx, got {status} {b}"
    );
    for k in ["error", "message", "details", "request_id", "timestamp"] {
        assert!(!b[k].is_null(), "{what}: envelope lacks {k}: {b}");
    }
}

async fn raw(t: &TestApp, method: &str, path: &str, body: Option<(Vec<u8>, &str)>) -> (u16, Value) {
    let url = format!("{}{path}", t.base);
    let mut req = match method {
        "POST" => t.http.post(&url),
        _ => t.http.get(&url),
    };
    if let Some((b, ct)) = body {
        req = req.header("content-type", ct).body(b);
    }
    let r = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let s = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (
        s,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn nothing_stored(t: &TestApp) {
    let db = t.db().await;
    for table in [
        "app.jobs",
        "app.tasks",
        "app.job_events",
        "app.outbox",
        "app.queue_messages",
    ] {
        let n: i64 = db
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap_or_else(|e| panic!("{table} is gone: {e}"))
            .get(0);
        assert_eq!(n, 0, "{table} has rows after hostile input");
    }
}

#[tokio::test]
async fn hostile_path_segments_are_4xx_with_the_envelope() {
    let t = TestApp::start().await;
    for seg in hostile_segments() {
        for (m, p) in [
            ("POST", format!("/api/jobs/submit/{seg}")),
            ("GET", format!("/api/jobs/status/{seg}")),
            ("GET", format!("/api/jobs/{seg}")),
            ("GET", format!("/api/jobs/{seg}/tasks")),
            ("POST", format!("/api/jobs/{seg}/cancel")),
            ("POST", format!("/api/jobs/{seg}/resubmit")),
            ("GET", format!("/api/dbadmin/jobs/{seg}")),
            ("GET", format!("/api/dbadmin/tasks/{seg}")),
        ] {
            let (s, b) = raw(&t, m, &p, None).await;
            assert_envelope(&format!("{m} {}", &p[..p.len().min(120)]), s, &b);
        }
    }
    nothing_stored(&t).await;
    t.cleanup().await;
}

#[tokio::test]
async fn hostile_query_values_are_4xx_with_the_envelope() {
    let t = TestApp::start().await;
    let id = "b".repeat(64);
    let routes = [
        (
            "GET",
            "/api/jobs".to_string(),
            vec!["status", "hours", "limit", "cursor"],
        ),
        (
            "GET",
            "/api/dbadmin/jobs".to_string(),
            vec!["status", "hours", "limit"],
        ),
        (
            "GET",
            format!("/api/jobs/{id}/tasks"),
            vec!["stage", "status", "limit", "cursor"],
        ),
        ("POST", format!("/api/jobs/{id}/resubmit"), vec!["from"]),
        ("GET", "/api/jobs/types".to_string(), vec!["anything"]),
    ];
    let mut values: Vec<String> = hostile_segments();
    values.push("%C3%28".into());
    for (m, p, params) in &routes {
        for name in params {
            for v in &values {
                let path = format!("{p}?{name}={v}");
                let (s, b) = raw(&t, m, &path, None).await;
                assert_envelope(&format!("{m} {}", &path[..path.len().min(120)]), s, &b);
            }
        }
    }
    // job_type is free text: bytes that are not text are refused, and injection strings are
    // plain data that match no job.
    for v in ["%FF%FE%FD", "abc%00def", &"a".repeat(5000)] {
        let (s, b) = raw(&t, "GET", &format!("/api/jobs?job_type={v}"), None).await;
        assert_envelope("job_type", s, &b);
    }
    for inj in INJECTIONS {
        let enc = percent_encoding::utf8_percent_encode(inj, percent_encoding::NON_ALPHANUMERIC);
        let (s, b) = raw(&t, "GET", &format!("/api/jobs?job_type={enc}"), None).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["jobs"], json!([]));
    }
    nothing_stored(&t).await;
    t.cleanup().await;
}

#[tokio::test]
async fn hostile_bodies_are_4xx_with_the_envelope_and_nothing_is_stored() {
    let t = TestApp::start().await;
    let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
    let deep_obj = format!("{}1{}", "{\"a\":".repeat(100), "}".repeat(100));
    let mut bodies: Vec<(String, Vec<u8>, &str)> = vec![
        (
            "1 MB".into(),
            format!("{{\"message\": \"{}\"}}", "x".repeat(1 << 20)).into_bytes(),
            "application/json",
        ),
        (
            "1 MB of garbage".into(),
            vec![b'{'; 1 << 20],
            "application/json",
        ),
        (
            "invalid UTF-8".into(),
            b"{\"message\": \"\xff\xfe\"}".to_vec(),
            "application/json",
        ),
        (
            "100-level array".into(),
            deep.into_bytes(),
            "application/json",
        ),
        (
            "100-level object".into(),
            deep_obj.into_bytes(),
            "application/json",
        ),
        (
            "NUL escape".into(),
            br#"{"message": "a\u0000b"}"#.to_vec(),
            "application/json",
        ),
        (
            "NUL in a key".into(),
            br#"{"mess\u0000age": "x"}"#.to_vec(),
            "application/json",
        ),
        (
            "raw NUL byte".into(),
            b"{\"message\": \"a\0b\"}".to_vec(),
            "application/json",
        ),
        (
            "5 KB string".into(),
            format!("{{\"message\": \"{}\"}}", "y".repeat(5000)).into_bytes(),
            "application/json",
        ),
        (
            "form body".into(),
            b"n=3".to_vec(),
            "application/x-www-form-urlencoded",
        ),
        ("text body".into(), b"{\"n\": 3}".to_vec(), "text/plain"),
        ("not JSON".into(), b"{n: 3".to_vec(), "application/json"),
        ("array body".into(), b"[1, 2]".to_vec(), "application/json"),
        (
            "unknown field".into(),
            br#"{"n": 3, "colour": "red"}"#.to_vec(),
            "application/json",
        ),
        (
            "wrong type".into(),
            br#"{"n": "3"}"#.to_vec(),
            "application/json",
        ),
    ];
    for inj in INJECTIONS {
        bodies.push((
            format!("injection as a field name {inj}"),
            json!({*inj: 1}).to_string().into_bytes(),
            "application/json",
        ));
        bodies.push((
            format!("injection as n {inj}"),
            json!({"n": inj}).to_string().into_bytes(),
            "application/json",
        ));
    }
    for (what, body, ct) in bodies {
        let (s, b) = raw(&t, "POST", "/api/jobs/submit/hello_world", Some((body, ct))).await;
        assert_envelope(&what, s, &b);
        if what == "unknown field" {
            assert_eq!(b["details"][0]["field"], "colour", "{b}");
            assert_eq!(b["details"][0]["rule"], "unknown_field", "{b}");
            assert_eq!(b["details"][0]["value"], "red", "{b}");
        }
        if what == "1 MB" {
            assert_eq!(s, 413);
        }
        if what == "100-level array" {
            assert_eq!(b["details"][0]["rule"], "max_depth", "{b}");
        }
    }
    nothing_stored(&t).await;

    // An injection string where a string is expected is data: stored verbatim, tables intact.
    let inj = INJECTIONS[0];
    let (s, b) = t
        .post(
            "/api/jobs/submit/shapes2",
            &json!({"tasks": 2, "sleep_ms": 2000, "run": inj}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let job = b["job_id"].as_str().unwrap().to_string();
    let enc = percent_encoding::utf8_percent_encode(inj, percent_encoding::NON_ALPHANUMERIC);
    let (s, b) = t
        .post(&format!("/api/jobs/{job}/cancel?reason={enc}"), &json!({}))
        .await;
    assert_eq!(s, 200, "{b}");
    let reason: String = t
        .db()
        .await
        .query_one(
            "SELECT event_data->>'reason' FROM app.job_events WHERE job_id = $1 AND event_type = 'job_cancelled'",
            &[&job],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(reason, inj);
    let (s, b) = t
        .post(
            "/api/jobs/submit/hello_world",
            &json!({"n": 1, "message": inj}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let stored: String = t
        .db()
        .await
        .query_one(
            "SELECT parameters->>'message' FROM app.jobs WHERE job_type = 'hello_world'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, inj);
    t.cleanup().await;
}

/// A job type whose schema allows a string longer than the 4 KB default.
struct LongText;

impl coremachine::jobs::Job for LongText {
    fn job_type(&self) -> &'static str {
        "long_text"
    }
    fn description(&self) -> &'static str {
        "test job: one 10 KB string parameter, no tasks"
    }
    fn parameters(&self) -> Vec<coremachine::jobs::ParamSpec> {
        vec![
            coremachine::jobs::ParamSpec::new("text", coremachine::jobs::ParamKind::String, "")
                .max(10_000.0)
                .required(),
            coremachine::jobs::ParamSpec::new("short", coremachine::jobs::ParamKind::String, ""),
        ]
    }
    fn stages(&self) -> Vec<coremachine::jobs::StageDef> {
        vec![coremachine::jobs::StageDef::new("none", "shape_task")]
    }
    fn create_tasks(
        &self,
        _: &coremachine::jobs::StageInput<'_>,
    ) -> Result<Vec<coremachine::jobs::TaskSpec>, coremachine::jobs::JobError> {
        Ok(Vec::new())
    }
    fn finalize(
        &self,
        _: &coremachine::jobs::FinalizeInput<'_>,
    ) -> Result<Value, coremachine::jobs::JobError> {
        Ok(json!({}))
    }
}

#[tokio::test]
async fn strings_longer_than_4kb_pass_only_where_the_schema_allows_them() {
    let t = TestApp::start_opts(|o| {
        let mut r = crate::common::jobs::test_registry();
        r.add_job(LongText);
        o.registry = r;
    })
    .await;
    let long = "z".repeat(6000);
    let (s, b) = t
        .post("/api/jobs/submit/long_text", &json!({"text": long}))
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = t
        .post(
            "/api/jobs/submit/long_text",
            &json!({"text": "x", "short": long}),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["details"][0]["field"], "short");
    assert_eq!(b["details"][0]["rule"], "max_length");
    let (s, b) = t
        .post(
            "/api/jobs/submit/long_text",
            &json!({"text": "z".repeat(10_001)}),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    t.cleanup().await;
}

/// Regression (issue 13.4): a cursor whose time chrono accepts but PostgreSQL does not
/// (`-300000000000000000` µs, before 4713 BC) answered 500 with "timestamp out of range
/// (SQLSTATE 22008)".
#[tokio::test]
async fn a_cursor_outside_postgresql_time_range_is_a_400() {
    use base64::Engine as _;
    let t = TestApp::start().await;
    let b64 = |s: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let hex = "a".repeat(64);
    for micros in [
        "-300000000000000000",
        "-210866803200000001",
        "8210266876799999999",
        "-9223372036854775808",
    ] {
        let path = format!("/api/jobs?cursor={}", b64(format!("{micros}.{hex}")));
        let (s, b) = raw(&t, "GET", &path, None).await;
        assert_envelope(&path, s, &b);
        assert_eq!(s, 400, "{path}: {b}");
        assert_eq!(b["error"], "invalid_cursor", "{b}");
        assert_eq!(b["details"][0]["field"], "query.cursor", "{b}");
    }
    // A cursor of an ordinary time still pages.
    let path = format!(
        "/api/jobs?cursor={}",
        b64(format!("1700000000000000.{hex}"))
    );
    let (s, b) = raw(&t, "GET", &path, None).await;
    assert_eq!(s, 200, "{b}");
    t.cleanup().await;
}

/// Regression (issue 13.4): a 5xx body carried the driver's text; now a generic message and the
/// request id (the detail goes to the log).
#[tokio::test]
async fn a_5xx_body_carries_no_driver_text_only_a_request_id() {
    let t = TestApp::start_without_database().await;
    for path in [
        format!("/api/jobs/{}", "a".repeat(64)),
        "/api/jobs".to_string(),
        "/api/dbadmin/jobs".to_string(),
    ] {
        let (s, b) = raw(&t, "GET", &path, None).await;
        assert_eq!(s, 503, "{path}: {b}");
        let msg = b["message"].as_str().unwrap_or_default();
        let id = b["request_id"].as_str().unwrap_or_default();
        assert!(!id.is_empty() && msg.contains(id), "{path}: {b}");
        for driver in [
            "SQLSTATE",
            "os error",
            "connect",
            "postgres",
            "127.0.0.1",
            "refused",
        ] {
            assert!(!msg.contains(driver), "{path} answered driver text: {b}");
        }
    }
    // The anonymous health route says what is unhealthy, not the driver's words.
    let (s, b) = raw(&t, "GET", "/api/health", None).await;
    assert_eq!(s, 503, "{b}");
    for driver in ["SQLSTATE", "os error", "127.0.0.1", "refused"] {
        assert!(
            !b.to_string().contains(driver),
            "health answered driver text: {b}"
        );
    }
    if let Some(app) = t.app {
        app.kill().await;
    }
}

/// Issue 13.10, decided: a duplicate key is refused (which value was meant is unknowable), `null`
/// is the same as leaving the parameter out, and a body without Content-Type is read as JSON
/// (clients of the earlier system send none); any other Content-Type is a 415.
#[tokio::test]
async fn submit_refuses_duplicate_keys_reads_null_as_absent_and_a_bare_body_as_json() {
    let t = TestApp::start_opts(|o| o.emulator = false).await;
    let submit = "/api/jobs/submit/hello_world";
    for (body, field) in [
        (r#"{"n": 1, "n": 2}"#, "body.n"),
        (
            r#"{"n": 1, "message": "a", "message": "b"}"#,
            "body.message",
        ),
    ] {
        let (s, b) = raw(&t, "POST", submit, Some((body.into(), "application/json"))).await;
        assert_envelope(body, s, &b);
        assert_eq!(s, 400, "{b}");
        assert_eq!(b["error"], "duplicate_key", "{b}");
        assert_eq!(b["details"][0]["field"], field, "{b}");
    }
    nothing_stored(&t).await;
    let (s, with_null) = raw(
        &t,
        "POST",
        submit,
        Some((br#"{"n": null}"#.to_vec(), "application/json")),
    )
    .await;
    assert_eq!(s, 201, "{with_null}");
    let (s, absent) = raw(
        &t,
        "POST",
        submit,
        Some((b"{}".to_vec(), "application/json")),
    )
    .await;
    assert_eq!(s, 200, "the same job again (idempotent): {absent}");
    assert_eq!(with_null["job_id"], absent["job_id"], "null is the default");
    // No Content-Type at all: read as JSON.
    let r = t
        .http
        .post(format!("{}{submit}", t.base))
        .body(r#"{"n": 2}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    t.cleanup().await;
}
