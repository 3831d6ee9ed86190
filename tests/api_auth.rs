//! Function keys in local mode, as the host checks them from each function.json's authLevel.

use coremachine::config::{HttpSettings, Secret};
use serde_json::json;

use crate::common::TestApp;

const FKEY: &str = "test-function-key-1";
const MKEY: &str = "test-master-key-1";

async fn keyed(admin_enabled: bool) -> TestApp {
    TestApp::start_opts(|o| {
        o.settings.http = HttpSettings {
            function_keys: vec![Secret::new(FKEY), Secret::new("second-key")],
            admin_key: Some(Secret::new(MKEY)),
            admin_enabled,
        }
    })
    .await
}

async fn status(
    t: &TestApp,
    method: &str,
    path: &str,
    key: Option<&str>,
) -> (u16, serde_json::Value) {
    let url = format!("{}{path}", t.base);
    let mut req = match method {
        "POST" => t.http.post(url).json(&json!({})),
        _ => t.http.get(url),
    };
    if let Some(k) = key {
        req = req.header("x-functions-key", k);
    }
    let r = req.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or_default())
}

#[tokio::test]
async fn no_key_is_401_wrong_key_is_401_and_the_right_key_succeeds() {
    let t = keyed(true).await;
    let id = "a".repeat(64);
    let function_routes = [
        ("POST", "/api/jobs/submit/hello_world".to_string()),
        ("GET", format!("/api/jobs/status/{id}")),
        ("GET", "/api/jobs".to_string()),
        ("GET", "/api/jobs/types".to_string()),
        ("GET", format!("/api/jobs/{id}")),
        ("GET", format!("/api/jobs/{id}/tasks")),
        ("POST", format!("/api/jobs/{id}/cancel")),
        ("POST", format!("/api/jobs/{id}/resubmit")),
        ("GET", "/api/dbadmin/jobs".to_string()),
        ("GET", format!("/api/dbadmin/tasks/{id}")),
    ];
    for (m, p) in &function_routes {
        let (s, b) = status(&t, m, p, None).await;
        assert_eq!(s, 401, "{m} {p} without a key: {b}");
        assert_eq!(b["error"], "unauthorized");
        let (s, _) = status(&t, m, p, Some("wrong")).await;
        assert_eq!(s, 401, "{m} {p} with a wrong key");
        for k in [FKEY, "second-key", MKEY] {
            let (s, b) = status(&t, m, p, Some(k)).await;
            assert!(s != 401 && s != 403, "{m} {p} with a valid key: {s} {b}");
        }
    }
    // ?code= works like the header.
    let r = t
        .http
        .get(format!("{}/api/jobs/types?code={FKEY}", t.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // Anonymous routes need nothing.
    for p in ["/api/health", "/api/openapi.json"] {
        let (s, _) = status(&t, "GET", p, None).await;
        assert_eq!(s, 200, "{p}");
    }
    // A path no function serves is a 404, as under the host; trigger routes are not under /api.
    let (s, b) = status(&t, "GET", "/api/not/a/function", Some(FKEY)).await;
    assert_eq!(s, 404, "{b}");
    t.cleanup().await;
}

#[tokio::test]
async fn admin_routes_want_the_master_key_and_the_switch() {
    let t = keyed(true).await;
    for (m, p) in [
        ("GET", "/api/dbadmin/migrations"),
        ("POST", "/api/dbadmin/migrations/apply"),
        ("POST", "/api/dbadmin/maintenance/redeploy"),
    ] {
        let (s, _) = status(&t, m, p, None).await;
        assert_eq!(s, 401, "{m} {p} without a key");
        let (s, b) = status(&t, m, p, Some(FKEY)).await;
        assert!(s == 401 || s == 403, "{m} {p} with a function key: {s} {b}");
        assert!(b["message"].as_str().unwrap().contains("admin"), "{b}");
    }
    let (s, b) = status(&t, "GET", "/api/dbadmin/migrations", Some(MKEY)).await;
    assert_eq!(s, 200, "{b}");
    // Without confirm the redeploy is refused even with the master key.
    let (s, _) = status(&t, "POST", "/api/dbadmin/maintenance/redeploy", Some(MKEY)).await;
    assert_eq!(s, 400);
    t.cleanup().await;

    let t = keyed(false).await;
    let (s, b) = status(&t, "GET", "/api/dbadmin/migrations", Some(MKEY)).await;
    assert_eq!(s, 403, "{b}");
    assert_eq!(b["error"], "admin_disabled");
    t.cleanup().await;
}

#[tokio::test]
async fn without_configured_keys_local_mode_checks_nothing_like_func_start() {
    let t = TestApp::start().await;
    let (s, _) = status(&t, "GET", "/api/jobs/types", None).await;
    assert_eq!(s, 200);
    t.cleanup().await;
}

#[test]
fn secrets_never_print() {
    let s = HttpSettings {
        function_keys: vec![Secret::new("visible-if-broken")],
        admin_key: Some(Secret::new("visible-if-broken-too")),
        admin_enabled: false,
    };
    let shown = format!("{s:?}");
    assert!(!shown.contains("visible-if-broken"), "{shown}");
    assert!(Secret::new("abc").matches("abc"));
    assert!(!Secret::new("abc").matches("abd"));
    assert!(!Secret::new("abc").matches("abcd"));
}

/// A Functions host invocation whose message body is `text`.
fn invocation(text: &str) -> serde_json::Value {
    use base64::Engine as _;
    json!({"Data": {"msg": base64::engine::general_purpose::STANDARD.encode(text)}, "Metadata": {}})
}

/// Regression (issue 13.2): with keys set, `junk <job_id>` posted to the jobs trigger with no key
/// failed the live job, a forged poison message did the same, and the janitor trigger ran.
#[tokio::test]
async fn with_keys_the_trigger_routes_take_only_the_emulators_calls_or_the_master_key() {
    let t = keyed(false).await;
    let r = t
        .http
        .post(format!("{}/api/jobs/submit/shapes1", t.base))
        .header("x-functions-key", FKEY)
        .json(&json!({"tasks": 1, "sleep_ms": 1500}))
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(s, 201, "{b}");
    let id = b["job_id"].as_str().unwrap().to_string();
    let forged = [
        ("jobs-queue-trigger", format!("junk {id}")),
        ("tasks-queue-trigger", format!("junk {id}")),
        (
            "poison-queue-trigger",
            json!({"job_id": id, "job_type": "shapes1", "stage": 1}).to_string(),
        ),
        ("janitor-timer-trigger", String::new()),
    ];
    // Any case and slashes, in case the routes match them so.
    let spellings = |f: &str| [f.to_string(), format!("{}/", f.to_uppercase())];
    for (function, text) in &forged {
        for path in spellings(function) {
            for key in [None, Some("wrong"), Some(FKEY), Some("second-key")] {
                let mut req = t
                    .http
                    .post(format!("{}/{path}", t.base))
                    .json(&invocation(text));
                if let Some(k) = key {
                    req = req.header("x-functions-key", k);
                }
                let r = req.send().await.unwrap();
                let s = r.status().as_u16();
                let b: serde_json::Value = r.json().await.unwrap_or_default();
                assert_eq!(s, 401, "POST /{path} with key {key:?}: {b}");
                assert_eq!(b["error"], "unauthorized");
            }
        }
    }
    // The emulator's own deliveries carry its per-process key: the job runs to the end.
    assert_eq!(
        t.wait_terminal(&id, std::time::Duration::from_secs(30))
            .await,
        "completed"
    );
    let c = t.db().await;
    let count = |sql: &'static str| {
        let c = &c;
        async move { c.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(count("SELECT count(*) FROM app.message_failures").await, 0);
    assert_eq!(count("SELECT count(*) FROM app.janitor_runs").await, 0);
    // The master key is the host's: it may invoke a trigger (here the janitor).
    let r = t
        .http
        .post(format!("{}/janitor-timer-trigger", t.base))
        .header("x-functions-key", MKEY)
        .json(&invocation(""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(count("SELECT count(*) FROM app.janitor_runs").await, 1);
    t.cleanup().await;
}

/// Regression (issue 13.3): HEAD skipped the key check (GET answered 401, HEAD 200), so
/// `HEAD /api/jobs/<id>` told anyone whether a job exists.
#[tokio::test]
async fn with_keys_head_is_checked_like_get() {
    let t = keyed(true).await;
    let id = "a".repeat(64);
    let head = |path: String, key: Option<&'static str>| {
        let mut req = t.http.head(format!("{}{path}", t.base));
        if let Some(k) = key {
            req = req.header("x-functions-key", k);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    for path in [
        "/api/dbadmin/migrations".to_string(),
        format!("/api/jobs/{id}"),
        "/api/jobs".to_string(),
        "/api/dbadmin/jobs".to_string(),
        "/api/ui/data/jobs".to_string(),
    ] {
        assert_eq!(head(path.clone(), None).await, 401, "HEAD {path}");
        assert_eq!(head(path.clone(), Some("wrong")).await, 401, "HEAD {path}");
    }
    assert_eq!(
        head("/api/dbadmin/migrations".into(), Some(FKEY)).await,
        401,
        "an admin route wants the master key for HEAD too"
    );
    assert_eq!(
        head("/api/dbadmin/migrations".into(), Some(MKEY)).await,
        200
    );
    assert_eq!(head(format!("/api/jobs/{id}"), Some(FKEY)).await, 404);
    // A method no function has on a path is refused before any handler runs.
    let r = t
        .http
        .delete(format!("{}/api/jobs/{id}", t.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.headers()["allow"], "GET,HEAD");
    t.cleanup().await;
}

/// Regression (issue 13.8): admin routes enabled with no key let anyone drop the schema.
#[tokio::test]
async fn admin_routes_without_a_key_refuse_to_start_unless_unsafe_no_auth() {
    let (name, url) = crate::common::fresh_db().await;
    let mut o = crate::common::Opts::new(&url);
    o.settings.http.admin_enabled = true;
    let started = coremachine::local::start(
        coremachine::local::LocalOptions {
            settings: o.settings.clone(),
            port: 0,
            app_root: env!("CARGO_MANIFEST_DIR").into(),
            emulator: true,
            migrate: false,
            max_concurrent_calls: None,
            unsafe_no_auth: false,
        },
        o.registry.clone(),
        coremachine::startup::Seams::default(),
    )
    .await;
    let e = started.expect_err("admin routes without a key are refused");
    let msg = e.to_string();
    assert!(
        msg.contains("LOCAL_ADMIN_KEY") && msg.contains("--unsafe-no-auth"),
        "{msg}"
    );
    // The binary says so and exits non-zero, before serving anything.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_coremachine"))
        .args([
            "local",
            "--port",
            "0",
            "--app-root",
            env!("CARGO_MANIFEST_DIR"),
        ])
        .env("DATABASE_URL", &url)
        .env("COREMACHINE_ADMIN_ENABLED", "true")
        .env_remove("LOCAL_ADMIN_KEY")
        .env_remove("LOCAL_FUNCTION_KEYS")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--unsafe-no-auth"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // With the explicit flag it starts (and warns).
    let mut o = o.clone();
    o.unsafe_no_auth = true;
    let t = crate::common::TestApp::start_with(name, url, o).await;
    let (s, b) = t.get("/api/dbadmin/migrations").await;
    assert_eq!(s, 200, "{b}");
    t.cleanup().await;
}

#[tokio::test]
async fn the_web_page_and_its_assets_are_anonymous_and_its_data_needs_a_key() {
    let t = keyed(false).await;
    for p in ["/api/ui", "/api/ui/", "/api/ui/app.js", "/api/ui/app.css"] {
        let r = t.http.get(format!("{}{p}", t.base)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{p} without a key");
    }
    let page = format!("/api/ui/jobs/{}", "a".repeat(64));
    let (s, _) = status(&t, "GET", &page, None).await;
    assert_eq!(s, 200, "{page} (the page shell) without a key");
    for p in [
        "/api/ui/data/jobs".to_string(),
        format!("/api/ui/data/jobs/{}/tasks", "a".repeat(64)),
    ] {
        let (s, b) = status(&t, "GET", &p, None).await;
        assert_eq!(s, 401, "{p} without a key: {b}");
        assert!(
            b["message"].as_str().unwrap().contains("http-ui-data"),
            "{b}"
        );
        let (s, b) = status(&t, "GET", &p, Some(FKEY)).await;
        assert!(s == 200 || s == 404, "{p} with the key: {s} {b}");
    }
    t.cleanup().await;
}
