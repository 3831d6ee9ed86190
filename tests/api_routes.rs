//! Every API route through the real HTTP stack: success shapes, 404, 409 and 4xx cases, and that
//! every route in the OpenAPI document is served by a function folder.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::TestApp;

const MISSING: &str = "00000000000000000000000000000000000000000000000000000000000000ff";

#[tokio::test]
async fn job_listing_is_newest_first_filtered_and_keyset_paginated() {
    let t = TestApp::start().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            t.submit("shapes1", json!({"tasks": 1, "run": format!("list{i}")}))
                .await,
        );
    }
    for id in &ids {
        t.wait_terminal(id, Duration::from_secs(30)).await;
    }
    let (s, b) = t.get("/api/jobs?limit=2").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["jobs"].as_array().unwrap().len(), 2);
    assert_eq!(b["jobs"][0]["job_id"], ids[4].as_str());
    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/jobs?limit=2&job_type=shapes1&cursor={c}"),
            None => "/api/jobs?limit=2&job_type=shapes1".to_string(),
        };
        let (s, b) = t.get(&path).await;
        assert_eq!(s, 200, "{b}");
        seen.extend(
            b["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["job_id"].as_str().unwrap().to_string()),
        );
        match b["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(seen, expected);
    let (_, b) = t.get("/api/jobs?status=failed").await;
    assert_eq!(b["jobs"].as_array().unwrap().len(), 0);
    let (_, b) = t.get("/api/jobs?status=completed&hours=1").await;
    assert_eq!(b["jobs"].as_array().unwrap().len(), 5);
    for (path, field, rule) in [
        ("/api/jobs?status=nope", "query.status", "enum"),
        ("/api/jobs?limit=0", "query.limit", "minimum"),
        ("/api/jobs?limit=abc", "query.limit", "type"),
        ("/api/jobs?cursor=bogus", "query.cursor", "cursor"),
        ("/api/jobs?colour=red", "query.colour", "unknown_field"),
    ] {
        let (s, b) = t.get(path).await;
        assert_eq!(s, 400, "{path}: {b}");
        assert_eq!(b["details"][0]["field"], field, "{path}: {b}");
        assert_eq!(b["details"][0]["rule"], rule, "{path}: {b}");
    }
    // The earlier listing keeps its shape.
    let (s, b) = t
        .get("/api/dbadmin/jobs?limit=3&hours=24&status=completed")
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["jobs"].as_array().unwrap().len(), 3);
    assert_eq!(b["query_info"]["limit"], 3);
    assert_eq!(b["query_info"]["hours_back"], 24);
    assert_eq!(b["query_info"]["status_filter"], "completed");
    assert_eq!(b["query_info"]["total_found"], 3);
    let (s, _) = t.get("/api/dbadmin/jobs?hours=169").await;
    assert_eq!(s, 400);
    t.cleanup().await;
}

#[tokio::test]
async fn job_detail_tasks_and_earlier_aliases_show_stages_and_tasks_in_order() {
    let t = TestApp::start().await;
    let id = t.submit("hello_world", json!({"n": 12})).await;
    assert_eq!(
        t.wait_terminal(&id, Duration::from_secs(30)).await,
        "completed"
    );
    let (s, j) = t.get(&format!("/api/jobs/{id}")).await;
    assert_eq!(s, 200, "{j}");
    assert_eq!(j["status"], "completed");
    assert_eq!(j["stages"].as_array().unwrap().len(), 2);
    assert_eq!(j["stages"][0]["name"], "greeting");
    assert_eq!(j["stages"][0]["completed"], 12);
    assert_eq!(j["stages"][1]["status"], "completed");
    assert_eq!(j["links"]["tasks"], format!("/api/jobs/{id}/tasks"));

    // Pages of 5 in (stage, index) order, numerically (index 10 after 9).
    let mut all: Vec<Value> = Vec::new();
    let mut path = format!("/api/jobs/{id}/tasks?limit=5");
    loop {
        let (s, b) = t.get(&path).await;
        assert_eq!(s, 200, "{b}");
        all.extend(b["tasks"].as_array().unwrap().iter().cloned());
        match b["next_cursor"].as_str() {
            Some(c) => path = format!("/api/jobs/{id}/tasks?limit=5&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(all.len(), 24);
    let order: Vec<(i64, i64)> = all
        .iter()
        .map(|t| {
            (
                t["stage"].as_i64().unwrap(),
                t["task_seq"].as_i64().unwrap(),
            )
        })
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);
    let (_, b) = t
        .get(&format!("/api/jobs/{id}/tasks?stage=2&status=completed"))
        .await;
    assert_eq!(b["tasks"].as_array().unwrap().len(), 12);
    assert!(
        b["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["stage"] == 2)
    );
    let (s, b) = t.get(&format!("/api/jobs/{id}/tasks?status=done")).await;
    assert_eq!(s, 400, "{b}");

    let (s, b) = t.get(&format!("/api/dbadmin/tasks/{id}")).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["job_id"], id.as_str());
    assert_eq!(b["query_info"]["total_tasks"], 24);
    assert!(b["timestamp"].is_string());
    assert_eq!(b["tasks"][0]["parent_job_id"], id.as_str());
    let (s, b) = t.get(&format!("/api/dbadmin/jobs/{id}")).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["job"]["job_id"], id.as_str());

    for path in [
        format!("/api/jobs/{MISSING}"),
        format!("/api/jobs/{MISSING}/tasks"),
        format!("/api/dbadmin/tasks/{MISSING}"),
        format!("/api/dbadmin/jobs/{MISSING}"),
        format!("/api/jobs/status/{MISSING}"),
    ] {
        let (s, b) = t.get(&path).await;
        assert_eq!(s, 404, "{path}: {b}");
        assert_eq!(b["error"], "not_found");
        let (s, b) = t.get(&path.replace(MISSING, "xyz")).await;
        assert_eq!(s, 400, "{path}: {b}");
        assert_eq!(b["error"], "invalid_job_id");
    }
    t.cleanup().await;
}

#[tokio::test]
async fn job_types_list_stages_and_a_json_schema_per_type() {
    let t = TestApp::start().await;
    let (s, b) = t.get("/api/jobs/types").await;
    assert_eq!(s, 200, "{b}");
    let types = b["job_types"].as_array().unwrap();
    let hw = types
        .iter()
        .find(|j| j["job_type"] == "hello_world")
        .expect("hello_world");
    assert_eq!(hw["stages"][0]["name"], "greeting");
    assert_eq!(hw["stages"][1]["policy"]["policy"], "fail_fast");
    assert_eq!(hw["parameters"]["type"], "object");
    assert_eq!(hw["parameters"]["properties"]["n"]["type"], "integer");
    assert_eq!(hw["parameters"]["additionalProperties"], false);
    let (s, _) = t.get("/api/jobs/types?x=1").await;
    assert_eq!(s, 400);
    t.cleanup().await;
}

#[tokio::test]
async fn health_reports_database_schema_transport_and_janitor_and_503_when_the_database_is_gone() {
    let t = TestApp::start().await;
    let (s, b) = t.get("/api/health").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["status"], "healthy");
    assert_eq!(b["components"]["database"]["migrated"], true);
    assert_eq!(b["components"]["transport"]["kind"], "local_queue");
    assert!(b["components"]["janitor"]["last_run_at"].is_null());
    coremachine::janitor::run_once(t.engine()).await.unwrap();
    let (_, b) = t.get("/api/health").await;
    assert_eq!(b["components"]["janitor"]["last_run_status"], "completed");

    // An instance pointed at a database that does not exist.
    let mut bad = t.opts.clone();
    bad.settings.database_url = "postgres://postgres@127.0.0.1:55432/cm_does_not_exist".into();
    bad.emulator = false;
    let down = TestApp::start_with(
        "cm_does_not_exist".into(),
        bad.settings.database_url.clone(),
        bad,
    )
    .await;
    let (s, b) = down.get("/api/health").await;
    assert_eq!(s, 503, "{b}");
    assert_eq!(b["status"], "unhealthy");
    assert_eq!(b["components"]["database"]["status"], "unhealthy");
    assert!(!b["errors"].as_array().unwrap().is_empty());
    let (s, b) = down.get(&format!("/api/jobs/{MISSING}")).await;
    assert_eq!(s, 503, "{b}");
    assert_eq!(b["error"], "service_unavailable");
    if let Some(app) = down.app {
        app.kill().await;
    }
    t.cleanup().await;
}

#[tokio::test]
async fn admin_routes_are_refused_unless_enabled_and_redeploy_needs_confirm() {
    let t = TestApp::start().await;
    let (s, b) = t.get("/api/dbadmin/migrations").await;
    assert_eq!(s, 403, "{b}");
    assert_eq!(b["error"], "admin_disabled");
    t.cleanup().await;

    let t = TestApp::start_opts(|o| {
        o.settings.http.admin_enabled = true;
        o.unsafe_no_auth = true;
    })
    .await;
    let (s, b) = t.get("/api/dbadmin/migrations").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["pending"], json!([]));
    assert!(b["current_version"].as_i64().unwrap() >= 3);
    let (s, b) = t.post("/api/dbadmin/migrations/apply", &json!({})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["applied_now"], json!([]));
    let id = t.submit("hello_world", json!({"n": 1})).await;
    t.wait_terminal(&id, Duration::from_secs(30)).await;
    let (s, b) = t
        .post("/api/dbadmin/maintenance/redeploy", &json!({}))
        .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["details"][0]["field"], "query.confirm");
    let (s, b) = t
        .post("/api/dbadmin/maintenance/redeploy?confirm=yes", &json!({}))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["operation"], "schema_redeploy");
    assert_eq!(b["overall_status"], "success");
    // The schema is new and empty, and the same instance works on it.
    let (s, _) = t.get(&format!("/api/jobs/{id}")).await;
    assert_eq!(s, 404);
    let id2 = t.submit("hello_world", json!({"n": 1})).await;
    assert_eq!(id, id2);
    assert_eq!(
        t.wait_terminal(&id2, Duration::from_secs(30)).await,
        "completed"
    );
    t.cleanup().await;
}

#[tokio::test]
async fn every_documented_route_has_a_function_folder_and_unknown_methods_get_the_envelope() {
    let t = TestApp::start().await;
    let (s, doc) = t.get("/api/openapi.json").await;
    assert_eq!(s, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let layout = coremachine::startup::layout::AppLayout::read(std::path::Path::new(env!(
        "CARGO_MANIFEST_DIR"
    )))
    .unwrap();
    let routes = coremachine::startup::routes::HttpRoutes::from_layout(&layout);
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let concrete = path
                .replace("{job_id}", &"a".repeat(64))
                .replace("{task_id}", &"b".repeat(64))
                .replace("{job_type}", "hello_world");
            let m: axum::http::Method = method.to_uppercase().parse().unwrap();
            assert!(
                matches!(routes.find(&m, &concrete), Ok(Some(_))),
                "{method} {path} is documented but no function folder serves it"
            );
        }
    }
    let r = t
        .http
        .delete(format!("{}/api/jobs/types", t.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"], "method_not_allowed");
    t.cleanup().await;
}

#[tokio::test]
async fn docs_api_md_lists_every_operation_of_the_openapi_document() {
    let doc = serde_json::to_value(coremachine::api::openapi::document()).unwrap();
    let md = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md")).unwrap();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let row = format!("| {} | `{path}` |", method.to_uppercase());
            assert!(md.contains(&row), "docs/api.md has no row {row}");
        }
    }
}

/// #12 point 4: the host matches routes case-insensitively and ignores a trailing slash, then
/// forwards the path as sent; literal segments are matched that way, ids and types never are.
#[tokio::test]
async fn routes_match_literal_segments_in_any_case_and_with_a_trailing_slash() {
    let t = TestApp::start_opts(|o| o.emulator = false).await;
    let job = t.submit("hello_world", json!({"n": 2})).await;
    let (s, b) = t.get(&format!("/api/Jobs/Status/{job}")).await;
    assert_eq!(s, 200, "{b}");
    assert!(b.to_string().contains(&job), "{b}");
    let (s, b) = t.get("/api/health/").await;
    assert!(s == 200 || s == 503, "health answers: {s} {b}");
    assert!(b["components"]["database"].is_object(), "{b}");
    let (s, b) = t.get("/API/JOBS/Types/").await;
    assert_eq!(s, 200, "{b}");
    assert!(b.to_string().contains("hello_world"), "{b}");
    let (s, b) = t.get(&format!("/api/jobs/{job}/TASKS/?limit=1")).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = t
        .post("/api/Jobs/Submit/hello_world/", &json!({"n": 2}))
        .await;
    assert_eq!(s, 200, "the same job again: {b}");
    assert_eq!(b["job_id"], job.as_str());
    // A parameter is passed as sent: a job type in another case is another (unknown) type.
    let (s, b) = t
        .post("/api/jobs/submit/Hello_World", &json!({"n": 2}))
        .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"], "unknown_job_type", "{b}");
    t.cleanup().await;
}

/// #12 point 5: the host forwards a body only with a Content-Length > 0 (a chunked client's body
/// arrives empty): an empty submit is refused with `body_required`, never run with defaults.
#[tokio::test]
async fn a_submit_with_no_body_is_refused_and_starts_no_job() {
    let t = TestApp::start_opts(|o| o.emulator = false).await;
    for content_type in [None, Some("application/json")] {
        let mut req = t
            .http
            .post(format!("{}/api/jobs/submit/hello_world", t.base));
        if let Some(ct) = content_type {
            req = req.header("content-type", ct).header("content-length", "0");
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 400, "{content_type:?}");
        let b: Value = r.json().await.unwrap();
        assert_eq!(b["error"], "body_required", "{b}");
        assert!(b["message"].as_str().unwrap().contains("send `{}`"), "{b}");
        assert_eq!(b["details"][0]["field"], "(body)", "{b}");
    }
    let jobs: i64 = t
        .db()
        .await
        .query_one("SELECT count(*) FROM app.jobs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(jobs, 0, "no job was started with default parameters");
    let (s, b) = t.post("/api/jobs/submit/hello_world", &json!({})).await;
    assert_eq!(s, 201, "`{{}}` still means the defaults: {b}");
    t.cleanup().await;
}

#[tokio::test]
async fn a_parameter_outside_the_job_id_is_said_to_be_ignored_for_an_existing_job() {
    let t = TestApp::start().await;
    let id = t.submit("hello_world", serde_json::json!({"n": 2})).await;
    let (s, b) = t
        .post(
            "/api/jobs/submit/hello_world",
            &serde_json::json!({"n": 2, "failure_rate": 0.5}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["job_id"], id.as_str());
    assert_eq!(b["ignored_parameters"], serde_json::json!(["failure_rate"]));
    let msg = b["message"].as_str().unwrap();
    assert!(
        msg.contains("failure_rate not part of the job id and ignored")
            && msg.contains("failure_rate=0"),
        "{msg}"
    );
    // The same parameters again: nothing ignored.
    let (_, b) = t
        .post("/api/jobs/submit/hello_world", &serde_json::json!({"n": 2}))
        .await;
    assert_eq!(b["ignored_parameters"], serde_json::json!([]));
    let (_, types) = t.get("/api/jobs/types").await;
    let hello = types["job_types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job_type"] == "hello_world")
        .unwrap();
    assert_eq!(
        hello["not_in_job_id"],
        serde_json::json!(["failure_rate", "delay_ms"])
    );
    t.cleanup().await;
}
