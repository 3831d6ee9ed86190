//! The trigger routes accept every form of `Data` the Functions host produces and its Metadata
//! quirks (functions-protocol.md §3.2-3.3); bad bodies are recorded, never a panic or a 5xx.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::common::{TestApp, fixture};

fn unknown_task_message(task: &str, job: &str) -> String {
    json!({
        "task_id": task, "parent_job_id": job, "job_type": "hello_world", "task_type": "hello_world_greeting",
        "stage": 1, "task_index": "0", "parameters": {}, "retry_count": 0
    })
    .to_string()
}

async fn post_invocation(t: &TestApp, function: &str, payload: &Value) -> (u16, String, Value) {
    let r = t
        .http
        .post(format!("{}/{function}", t.base))
        .json(payload)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, r.json().await.unwrap_or(Value::Null))
}

async fn failures(
    t: &TestApp,
) -> Vec<(
    String,
    Option<String>,
    Option<i32>,
    Option<String>,
    Option<String>,
)> {
    t.db()
        .await
        .query("SELECT reason, message_id, delivery_count, job_id, task_id FROM app.message_failures ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

#[tokio::test]
async fn every_data_form_and_the_metadata_quirks_are_decoded() {
    let t = TestApp::start_opts(|o| o.emulator = false).await;
    let task = "a".repeat(64);
    let job = "b".repeat(64);
    let body = unknown_task_message(&task, &job);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&body);
    let forms = [
        json!(b64),                                   // dataType: binary
        json!(serde_json::to_string(&body).unwrap()), // default string binding: double-encoded
        json!(body),                                  // plain JSON string
    ];
    for (i, form) in forms.iter().enumerate() {
        let mut payload: Value =
            serde_json::from_str(&fixture("servicebus_binary.json").replace("__JOB__", &job))
                .unwrap();
        payload["Data"]["msg"] = form.clone();
        if i == 2 {
            // String mode leaks body fields into Metadata as quoted strings; they must be ignored.
            payload["Metadata"]["task_id"] = json!(format!("\"{task}\""));
            payload["Metadata"]["stage"] = json!("1");
        }
        let (s, ct, resp) = post_invocation(&t, "tasks-queue-trigger", &payload).await;
        assert_eq!(s, 200, "form {i}: {resp}");
        assert!(
            ct.starts_with("application/json"),
            "form {i}: content type {ct}"
        );
        assert_eq!(resp["Outputs"], json!({}));
        assert!(resp["ReturnValue"].is_null());
        assert!(
            resp["Logs"][0].as_str().unwrap().contains("does not exist"),
            "form {i}: {resp}"
        );
    }
    let rows = failures(&t).await;
    assert_eq!(rows.len(), 3);
    for r in rows {
        assert_eq!(r.0, "unknown_task");
        assert_eq!(r.1.as_deref(), Some("abc"), "MessageId is unquoted");
        assert_eq!(r.2, Some(1), "DeliveryCount parsed from a string");
        assert_eq!(r.4.as_deref(), Some(task.as_str()));
    }
    t.cleanup().await;
}

#[tokio::test]
async fn a_body_that_is_not_json_is_recorded_as_malformed_and_acknowledged() {
    let t = TestApp::start_opts(|o| o.emulator = false).await;
    let b64 = base64::engine::general_purpose::STANDARD.encode("this is <not> json \u{0}\u{1}");
    let payload =
        json!({"Data": {"msg": b64}, "Metadata": {"MessageId": "\"m1\"", "DeliveryCount": "3"}});
    for function in ["jobs-queue-trigger", "tasks-queue-trigger"] {
        let (s, _, resp) = post_invocation(&t, function, &payload).await;
        assert_eq!(s, 200, "{function}: {resp}");
    }
    // Not even the host's envelope: still recorded, still 200.
    let r = t
        .http
        .post(format!("{}/tasks-queue-trigger", t.base))
        .body("\u{7f}garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let rows = failures(&t).await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows.iter().all(|r| r.0 == "malformed"));
    assert_eq!(rows[0].1.as_deref(), Some("m1"));
    assert_eq!(rows[0].2, Some(3));
    let excerpt: String = t
        .db()
        .await
        .query_one(
            "SELECT raw_excerpt FROM app.message_failures ORDER BY id LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(excerpt.starts_with("this is <not> json"));
    t.cleanup().await;
}

#[tokio::test]
async fn an_unreachable_database_makes_triggers_abandon_and_health_report_503() {
    let t = TestApp::start_without_database().await;
    let (s, _) = t.get("/").await;
    assert_eq!(s, 200, "GET / answers before any database connection");
    let (s, b) = t.get("/api/health").await;
    assert_eq!(s, 503, "{b}");
    assert_eq!(b["status"], "unhealthy");
    let body = unknown_task_message(&"c".repeat(64), &"d".repeat(64));
    let payload = json!({"Data": {"msg": base64::engine::general_purpose::STANDARD.encode(body)}, "Metadata": {}});
    let (s, ct, _) = post_invocation(&t, "tasks-queue-trigger", &payload).await;
    assert_eq!(s, 503, "the host must abandon and redeliver");
    assert!(ct.starts_with("application/json"));
    if let Some(app) = t.app {
        app.kill().await;
    }
}
