//! The trigger routes accept every form of `Data` the Functions host produces and its Metadata
//! quirks (functions-protocol.md §3.2-3.3); bad bodies are recorded, never a panic or a 5xx.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::common::invocations::{
    batch_invocation, layout_with_batched_tasks, post_invocation, queued_bodies,
};
use crate::common::{TestApp, fixture};
use coremachine::testing::{Fault, FaultRule};

fn unknown_task_message(task: &str, job: &str) -> String {
    json!({
        "task_id": task, "parent_job_id": job, "job_type": "hello_world", "task_type": "hello_world_greeting",
        "stage": 1, "task_index": "0", "parameters": {}, "retry_count": 0
    })
    .to_string()
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

/// A recorded failure's reason, MessageId and DeliveryCount.
fn what_and_where(
    f: &(
        String,
        Option<String>,
        Option<i32>,
        Option<String>,
        Option<String>,
    ),
) -> (&str, Option<&str>, Option<i32>) {
    (f.0.as_str(), f.1.as_deref(), f.2)
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
    let payload = json!({"Data": {"msg": base64::engine::general_purpose::STANDARD.encode(&body)}, "Metadata": {}});
    let (s, ct, _) = post_invocation(&t, "tasks-queue-trigger", &payload).await;
    assert_eq!(s, 503, "the host must abandon and redeliver");
    assert!(ct.starts_with("application/json"));
    // A batch whose outcomes cannot be recorded is abandoned as a whole, naming its messages.
    let batch = batch_invocation(&[body.as_bytes(), body.as_bytes()], &["x1", "x2"], &[1, 1]);
    let (s, _, resp) = post_invocation(&t, "tasks-queue-trigger", &batch).await;
    assert_eq!(s, 503, "{resp}");
    if let Some(app) = t.app {
        app.kill().await;
    }
}

/// The stage or task messages waiting in the local queue that name `id`.
fn binary_invocation(bytes: &[u8], properties: Value) -> Value {
    json!({
        "Data": {"msg": base64::engine::general_purpose::STANDARD.encode(bytes)},
        "Metadata": {"DeliveryCount": "1", "MessageId": "\"m\"", "ApplicationProperties": properties}
    })
}

async fn job_status(t: &TestApp, job: &str) -> String {
    t.db()
        .await
        .query_one(
            "SELECT status::text FROM app.jobs WHERE job_id = $1",
            &[&job],
        )
        .await
        .unwrap()
        .get(0)
}

/// Delivers a job's waiting stage message as the host would.
async fn run_stage_message(t: &TestApp, job: &str) {
    let stage = queued_bodies(t, "geospatial-jobs", job).await.remove(0);
    let (s, _, resp) = post_invocation(
        t,
        "jobs-queue-trigger",
        &binary_invocation(stage.as_bytes(), json!({})),
    )
    .await;
    assert_eq!(s, 200, "{resp}");
}

async fn task_statuses(t: &TestApp, job: &str) -> Vec<String> {
    t.db()
        .await
        .query(
            "SELECT status::text FROM app.tasks WHERE parent_job_id = $1 AND stage = 1 ORDER BY task_seq",
            &[&job],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// #21 point 1-2: one invocation carrying several messages runs each of them, answers once, and
/// records every outcome first: a duplicate inside the batch and one across batches are
/// recognised, a malformed body is recorded under its own MessageId, and the job advances.
#[tokio::test]
async fn a_batched_invocation_runs_each_message_and_answers_once() {
    let t = TestApp::start_opts(|o| o.emulator = false).await;
    let job = t.submit("hello_world", json!({"n": 4})).await;
    run_stage_message(&t, &job).await;
    let tasks = queued_bodies(&t, "geospatial-tasks", &job).await;
    assert_eq!(tasks.len(), 4);
    let b = |i: usize| tasks[i].as_bytes();
    // Tasks 0 and 1, task 1 again (a duplicate in the same batch), and garbage.
    let first = batch_invocation(
        &[b(0), b(1), b(1), b"this is <not> json"],
        &["m0", "m1", "m1-copy", "junk"],
        &[1, 1, 1, 1],
    );
    let (s, _, resp) = post_invocation(&t, "tasks-queue-trigger", &first).await;
    assert_eq!(s, 200, "{resp}");
    assert!(
        resp["Logs"][0]
            .as_str()
            .unwrap_or("")
            .contains("batch of 4"),
        "{resp}"
    );
    assert_eq!(
        task_statuses(&t, &job).await,
        ["completed", "completed", "queued", "queued"]
    );
    let recorded = failures(&t).await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(
        what_and_where(&recorded[0]),
        ("malformed", Some("junk"), Some(1)),
        "the garbage is recorded under its own MessageId and DeliveryCount"
    );
    // A second batch: task 0 delivered again (DeliveryCount 2: the first batch's lock was lost)
    // beside tasks 2 and 3.
    let second = batch_invocation(&[b(2), b(0), b(3)], &["m2", "m0", "m3"], &[1, 2, 1]);
    let (s, _, resp) = post_invocation(&t, "tasks-queue-trigger", &second).await;
    assert_eq!(s, 200, "{resp}");
    assert_eq!(task_statuses(&t, &job).await, ["completed"; 4]);
    // Each task ran once: one completion event each, and the stage ended once.
    let db = t.db().await;
    let completions: i64 = db
        .query_one(
            "SELECT count(*) FROM app.job_events WHERE job_id = $1 AND event_type = 'task_completed'",
            &[&job],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(completions, 4);
    let stage_messages: Vec<i64> = queued_bodies(&t, "geospatial-jobs", &job)
        .await
        .iter()
        .filter_map(|b| serde_json::from_str::<Value>(b).ok()?["stage"].as_i64())
        .collect();
    assert_eq!(
        stage_messages,
        [1, 2],
        "the last task of stage 1 queued stage 2 once"
    );
    assert_eq!(failures(&t).await.len(), 1, "duplicates are not failures");
    t.cleanup().await;
}

/// #21: local mode with tasks-queue-trigger declared `many` delivers the tasks in batches (the
/// host's shape, one batch at a time) and the job completes with each task run once.
#[tokio::test]
async fn a_many_cardinality_tasks_trigger_gets_batches_and_its_job_completes() {
    let layout = layout_with_batched_tasks(16);
    let t = TestApp::start_opts(|o| o.app_root = Some(layout.clone())).await;
    let job = t.submit("hello_world", json!({"n": 40})).await;
    assert_eq!(
        t.wait_terminal(&job, std::time::Duration::from_secs(120))
            .await,
        "completed"
    );
    let r = t
        .db()
        .await
        .query_one(
            "SELECT count(*), count(DISTINCT task_id), count(DISTINCT event_data->>'invocation_id'),              max(n) FROM app.job_events e, LATERAL (SELECT count(*) AS n FROM app.job_events x              WHERE x.job_id = e.job_id AND x.event_type = 'task_started'              AND x.event_data->>'invocation_id' = e.event_data->>'invocation_id') m              WHERE e.job_id = $1 AND e.event_type = 'task_started'",
            &[&job],
        )
        .await
        .unwrap();
    let (starts, tasks, invocations, largest): (i64, i64, i64, i64) =
        (r.get(0), r.get(1), r.get(2), r.get(3));
    assert_eq!(starts, tasks, "every task started once");
    assert!(
        invocations < tasks && largest > 1 && largest <= 16,
        "{tasks} tasks in {invocations} invocations, the largest carrying {largest}"
    );
    assert_eq!(failures(&t).await, vec![], "nothing was malformed");
    t.cleanup().await;
    let _ = std::fs::remove_dir_all(layout);
}

/// #12 point 3: a UTF-8 BOM, the message JSON inside a JSON string literal (JavaScript SDK,
/// Service Bus Explorer resends), both, or UTF-16 with a BOM: processed like the plain message.
#[tokio::test]
async fn bodies_with_a_bom_or_wrapped_in_a_json_string_are_processed_normally() {
    let t = TestApp::start_opts(|o| o.emulator = false).await;
    type Form = fn(&str) -> Vec<u8>;
    let forms: [(&str, Form); 4] = [
        ("UTF-8 BOM", |b| format!("\u{feff}{b}").into_bytes()),
        ("JSON string literal", |b| {
            serde_json::to_string(b).unwrap().into_bytes()
        }),
        ("BOM + JSON string literal", |b| {
            format!("\u{feff}{}", serde_json::to_string(b).unwrap()).into_bytes()
        }),
        ("UTF-16 LE with BOM", |b| {
            let mut v = vec![0xFF, 0xFE];
            v.extend(b.encode_utf16().flat_map(u16::to_le_bytes));
            v
        }),
    ];
    for (i, (name, form)) in forms.iter().enumerate() {
        let n = i as i64 + 2;
        let job = t.submit("hello_world", json!({"n": n})).await;
        let stage = queued_bodies(&t, "geospatial-jobs", &job).await.remove(0);
        let (s, _, resp) = post_invocation(
            &t,
            "jobs-queue-trigger",
            &binary_invocation(&form(&stage), json!({})),
        )
        .await;
        assert_eq!(s, 200, "{name}: {resp}");
        assert_eq!(job_status(&t, &job).await, "processing", "{name}: {resp}");
        let tasks = queued_bodies(&t, "geospatial-tasks", &job).await;
        assert_eq!(tasks.len() as i64, n, "{name}: the stage fanned out");
        // A task message in the same encoding runs its task.
        let (s, _, resp) = post_invocation(
            &t,
            "tasks-queue-trigger",
            &binary_invocation(&form(&tasks[0]), json!({})),
        )
        .await;
        assert_eq!(s, 200, "{name}: {resp}");
        let done: i64 = t
            .db()
            .await
            .query_one(
                "SELECT count(*) FROM app.tasks WHERE parent_job_id = $1 AND status = 'completed'",
                &[&job],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(done, 1, "{name}: {resp}");
    }
    assert_eq!(failures(&t).await, vec![], "nothing was malformed");
    t.cleanup().await;
}

/// #12 point 3 and #13 point 2: garbage that merely contains a job's id (bare, in an application
/// property, or naming a job that does not wait for it) is recorded and acknowledged, and the job
/// goes on; only the message the job waits for, recognisable as such, fails it.
#[tokio::test]
async fn garbage_that_mentions_a_live_job_is_recorded_and_the_job_goes_on() {
    let t = TestApp::start_opts(|o| o.emulator = false).await;
    let running = t.submit("hello_world", json!({"n": 2})).await;
    run_stage_message(&t, &running).await;
    let waiting = t.submit("hello_world", json!({"n": 3})).await;
    let garbage: [(&str, &str, Vec<u8>, Value); 5] = [
        (
            "broken JSON naming a job that is running a stage",
            "jobs-queue-trigger",
            format!(r#"{{"job_id": "{running}", "stage": 1, "#).into_bytes(),
            json!({}),
        ),
        (
            "a bare 64-hex string in text",
            "jobs-queue-trigger",
            format!("<<garbage {waiting} garbage>>").into_bytes(),
            json!({}),
        ),
        (
            "undecodable bytes with the job's id in the application properties",
            "jobs-queue-trigger",
            vec![0x00, 0x9f, 0x92, 0x96, b'{', 0xff],
            json!({"job_id": waiting, "stage": 1}),
        ),
        (
            "broken JSON naming another stage",
            "jobs-queue-trigger",
            format!(r#"{{"job_id": "{waiting}", "stage": 2, "#).into_bytes(),
            json!({}),
        ),
        (
            "a job message on the tasks queue",
            "tasks-queue-trigger",
            format!(r#"{{"job_id": "{waiting}", "stage": 1, "#).into_bytes(),
            json!({}),
        ),
    ];
    for (name, function, body, props) in &garbage {
        let (s, _, resp) =
            post_invocation(&t, function, &binary_invocation(body, props.clone())).await;
        assert_eq!(s, 200, "{name}: {resp}");
        assert!(
            resp["Logs"][0].as_str().unwrap().contains("left alone"),
            "{name}: {resp}"
        );
    }
    assert_eq!(job_status(&t, &running).await, "processing");
    assert_eq!(job_status(&t, &waiting).await, "queued");
    let rows = failures(&t).await;
    assert_eq!(rows.len(), garbage.len(), "{rows:?}");
    assert!(
        rows.iter().all(|r| r.0 == "malformed" && r.3.is_some()),
        "{rows:?}"
    );
    // The job really was live: its own message still runs it.
    run_stage_message(&t, &waiting).await;
    assert_eq!(job_status(&t, &waiting).await, "processing");
    t.cleanup().await;
}

/// #12 point 7: an invocation above axum's 2 MB default (Premium namespaces allow 100 MB
/// messages) is read and processed; one above the trigger routes' limit is recorded in
/// `message_failures` and acknowledged with a JSON 200, never bounced with a 413.
#[tokio::test]
async fn large_invocations_are_processed_and_too_large_ones_recorded_and_acknowledged() {
    let t = TestApp::start_opts(|o| {
        o.emulator = false;
        o.settings.trigger_max_body_bytes = 8 * 1024 * 1024;
    })
    .await;
    let task = "e".repeat(64);
    let mut message: Value =
        serde_json::from_str(&unknown_task_message(&task, &"f".repeat(64))).unwrap();
    message["parameters"]["padding"] = json!("x".repeat(3 * 1024 * 1024));
    let body = message.to_string();
    let (s, ct, resp) = post_invocation(
        &t,
        "tasks-queue-trigger",
        &binary_invocation(body.as_bytes(), json!({})),
    )
    .await;
    assert_eq!(s, 200, "{resp}");
    assert!(ct.starts_with("application/json"));
    assert!(
        resp["Logs"][0].as_str().unwrap().contains("does not exist"),
        "the 4 MB invocation was read and processed: {resp}"
    );
    message["parameters"]["padding"] = json!("x".repeat(9 * 1024 * 1024));
    let (s, ct, resp) = post_invocation(
        &t,
        "tasks-queue-trigger",
        &binary_invocation(message.to_string().as_bytes(), json!({})),
    )
    .await;
    assert_eq!(s, 200, "{resp}");
    assert!(ct.starts_with("application/json"));
    assert!(
        resp["Logs"][0]
            .as_str()
            .unwrap()
            .contains("larger than 8388608 bytes"),
        "{resp}"
    );
    let rows = failures(&t).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0].0, "unknown_task");
    assert_eq!(rows[1].0, "too_large");
    let (error, excerpt): (String, String) = t
        .db()
        .await
        .query_one(
            "SELECT error_message, raw_excerpt FROM app.message_failures WHERE reason = 'too_large'",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert!(error.contains("TRIGGER_MAX_BODY_BYTES"), "{error}");
    assert!(excerpt.starts_with(r#"{"Data""#), "{excerpt}");
    t.cleanup().await;
}

/// #21: a batch as the host writes it for `dataType: string` (the bodies as texts) with every
/// `<Key>Array` it sends, mixing a stale retry (attempt 1 of a task already re-queued for attempt
/// 2), a good message and a message for a task that does not exist: each is judged on its own,
/// the stale copy changes nothing, the unknown one is recorded under its own MessageId and
/// DeliveryCount, and the invocation answers 200 once.
#[tokio::test]
async fn a_string_batch_with_every_array_key_and_a_stale_retry_is_judged_message_by_message() {
    let t = TestApp::start_opts(|o| o.emulator = false).await;
    t.fault(
        FaultRule::times(Fault::HandlerTransient, 1)
            .on_index(0)
            .on_stage(1),
    );
    let job = t.submit("hello_world", json!({"n": 2})).await;
    run_stage_message(&t, &job).await;
    let tasks = queued_bodies(&t, "geospatial-tasks", &job).await;
    assert_eq!(tasks.len(), 2);
    // Task 0 fails transiently: re-queued for attempt 2.
    let first = batch_invocation(&[tasks[0].as_bytes()], &["m0"], &[1]);
    let (s, _, resp) = post_invocation(&t, "tasks-queue-trigger", &first).await;
    assert_eq!(s, 200, "{resp}");
    assert_eq!(task_statuses(&t, &job).await, ["queued", "queued"]);
    let unknown = unknown_task_message(&"c".repeat(64), &job);
    let texts = [tasks[0].as_str(), tasks[1].as_str(), unknown.as_str()];
    let arr = |v: Value| v.to_string();
    let payload = json!({
        "Data": {"msg": arr(json!(texts))},
        "Metadata": {
            "MessageIdArray": arr(json!(["m0", "m1", "m-unknown"])),
            "DeliveryCountArray": arr(json!([2, 1, 3])),
            "LockTokenArray": arr(json!(["l0", "l1", "l2"])),
            "SequenceNumberArray": arr(json!([10, 11, 12])),
            "EnqueuedTimeUtcArray": arr(json!(["2026-12-07T10:00:00", "2026-12-07T10:00:01", "2026-12-07T10:00:02"])),
            "ExpiresAtUtcArray": arr(json!(["9999-12-31T23:59:59", "9999-12-31T23:59:59", "9999-12-31T23:59:59"])),
            "ContentTypeArray": arr(json!(["application/json", "application/json", null])),
            "CorrelationIdArray": arr(json!([null, "corr-1", null])),
            "SubjectArray": arr(json!([null, null, "s"])),
            "LabelArray": arr(json!([null, null, "s"])),
            "DeadLetterSourceArray": arr(json!([null, null, null])),
            "ApplicationPropertiesArray": arr(json!([{}, {"job_id": job}, {}])),
            "UserPropertiesArray": arr(json!([{}, {"job_id": job}, {}])),
            "MessageActions": {},
            "sys": {"MethodName": "tasks-queue-trigger", "UtcNow": "2026-12-07T10:00:03Z", "RandGuid": "g"}
        }
    });
    let (s, _, resp) = post_invocation(&t, "tasks-queue-trigger", &payload).await;
    assert_eq!(s, 200, "{resp}");
    let logs = resp["Logs"].to_string();
    assert!(logs.contains("batch of 3"), "{logs}");
    assert!(
        logs.contains("stale copy of attempt 1 (task is at attempt 2)"),
        "{logs}"
    );
    assert_eq!(
        task_statuses(&t, &job).await,
        ["queued", "completed"],
        "the stale copy left task 0 queued for attempt 2; task 1 ran"
    );
    let recorded = failures(&t).await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(
        what_and_where(&recorded[0]),
        ("unknown_task", Some("m-unknown"), Some(3))
    );
    t.cleanup().await;
}
