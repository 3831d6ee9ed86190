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
