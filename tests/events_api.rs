//! A job's story over HTTP: `GET /api/jobs/{id}/events` (paged, oldest first), `/events/summary`
//! and `/timeline`, for a completed, a retried and a failed job, plus the web page's own reads.

use std::time::Duration;

use coremachine::telemetry::checkpoints as cp;
use coremachine::testing::{Fault, FaultRule};
use serde_json::{Value, json};

use crate::common::TestApp;

const T: Duration = Duration::from_secs(60);

/// (event_type, status, checkpoint, stage, attempt) of every event, via the API, oldest first.
async fn story(t: &TestApp, job: &str) -> Vec<(String, String, String, i64, i64)> {
    let (s, b) = t.get(&format!("/api/jobs/{job}/events?limit=1000")).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["next_cursor"], Value::Null);
    b["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["event_type"].as_str().unwrap().to_string(),
                e["event_status"].as_str().unwrap().to_string(),
                e["checkpoint"].as_str().unwrap_or("").to_string(),
                e["stage"].as_i64().unwrap_or(0),
                e["attempt"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}

fn expect(rows: &[(&str, &str, &str, i64, i64)]) -> Vec<(String, String, String, i64, i64)> {
    rows.iter()
        .map(|(a, b, c, d, e)| (a.to_string(), b.to_string(), c.to_string(), *d, *e))
        .collect()
}

/// The stage-1 half of a hello_world n=1 job that succeeds: shared by the expectations below.
const STAGE_1_OK: &[(&str, &str, &str, i64, i64)] = &[
    ("task_completed", "success", "TASK_COMPLETED", 1, 1),
    ("stage_completed", "success", "STAGE_COMPLETED", 1, 1),
    ("stage_advanced", "success", "STAGE_ADVANCE_QUEUED", 2, 1),
    ("stage_started", "info", "STAGE_TASKS_CREATED", 2, 1),
    ("task_started", "info", "TASK_CLAIMED", 2, 1),
];

const START: &[(&str, &str, &str, i64, i64)] = &[
    ("job_created", "success", "JOB_SUBMITTED", 1, 1),
    ("stage_started", "info", "STAGE_TASKS_CREATED", 1, 1),
    ("task_started", "info", "TASK_CLAIMED", 1, 1),
];

#[tokio::test]
async fn a_completed_job_tells_its_story_in_order_and_its_summary_ends_with_job_completed() {
    let t = TestApp::start().await;
    let job = t.submit("hello_world", json!({"n": 1})).await;
    assert_eq!(t.wait_terminal(&job, T).await, "completed");

    let mut want = expect(START);
    want.extend(expect(STAGE_1_OK));
    want.extend(expect(&[
        ("task_completed", "success", "TASK_COMPLETED", 2, 1),
        ("stage_completed", "success", "STAGE_COMPLETED", 2, 1),
        ("job_completed", "success", "JOB_COMPLETED", 2, 1),
    ]));
    assert_eq!(story(&t, &job).await, want);

    let (s, sum) = t.get(&format!("/api/jobs/{job}/events/summary")).await;
    assert_eq!(s, 200, "{sum}");
    assert_eq!(sum["job_status"], "completed");
    assert_eq!(sum["total_events"], want.len());
    assert_eq!(sum["counts_by_type"]["task_started"], 2);
    assert_eq!(sum["counts_by_type"]["job_completed"], 1);
    assert_eq!(sum["counts_by_status"]["failure"], Value::Null);
    assert_eq!(sum["last_successful_step"]["event_type"], "job_completed");
    assert_eq!(sum["last_successful_step"]["checkpoint"], "JOB_COMPLETED");
    assert_eq!(sum["first_failure"], Value::Null);

    let (s, tl) = t.get(&format!("/api/jobs/{job}/timeline")).await;
    assert_eq!(s, 200, "{tl}");
    let stages = tl["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 2);
    for (i, st) in stages.iter().enumerate() {
        assert_eq!(st["stage"], i + 1);
        assert_eq!(st["status"], "completed");
        assert_eq!(st["tasks"], json!({"completed": 1}));
        assert!(st["started_at"].is_string() && st["completed_at"].is_string());
        assert!(st["duration_ms"].as_i64().unwrap() >= 0);
    }
    assert_eq!(stages[0]["name"], "greeting");
    assert_eq!(stages[1]["name"], "reply");
    t.cleanup().await;
}

#[tokio::test]
async fn a_retried_job_shows_the_retry_between_two_attempts_and_no_failure() {
    let t = TestApp::start().await;
    t.fault(
        FaultRule::times(Fault::HandlerTransient, 1)
            .on_index(0)
            .on_stage(1),
    );
    let job = t.submit("hello_world", json!({"n": 1})).await;
    assert_eq!(t.wait_terminal(&job, T).await, "completed");

    let mut want = expect(START);
    want.extend(expect(&[
        ("task_retrying", "warning", "TASK_RETRY_SCHEDULED", 1, 1),
        ("task_started", "info", "TASK_CLAIMED", 1, 2),
    ]));
    let mut ok = expect(STAGE_1_OK);
    ok[0].4 = 2; // the completion is attempt 2
    want.extend(ok);
    want.extend(expect(&[
        ("task_completed", "success", "TASK_COMPLETED", 2, 1),
        ("stage_completed", "success", "STAGE_COMPLETED", 2, 1),
        ("job_completed", "success", "JOB_COMPLETED", 2, 1),
    ]));
    assert_eq!(story(&t, &job).await, want);

    let (_, ev) = t.get(&format!("/api/jobs/{job}/events?limit=1000")).await;
    let retry = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_type"] == "task_retrying")
        .unwrap()
        .clone();
    assert_eq!(retry["error_class"], "transient");
    assert_eq!(retry["error_type"], "InjectedTransient");
    assert!(retry["data"]["delay_s"].as_f64().unwrap() > 0.0);

    let (_, sum) = t.get(&format!("/api/jobs/{job}/events/summary")).await;
    assert_eq!(sum["counts_by_type"]["task_retrying"], 1);
    assert_eq!(sum["counts_by_status"]["warning"], 1);
    assert_eq!(sum["last_successful_step"]["event_type"], "job_completed");
    assert_eq!(sum["first_failure"], Value::Null);
    let (_, tl) = t.get(&format!("/api/jobs/{job}/timeline")).await;
    assert_eq!(tl["stages"][0]["retries"], 1);
    t.cleanup().await;
}

#[tokio::test]
async fn a_failed_job_names_the_stage_advance_as_last_success_and_the_task_failure_first() {
    let t = TestApp::start().await;
    t.fault(FaultRule::always(Fault::HandlerPermanent).on_stage(2));
    let job = t.submit("hello_world", json!({"n": 1})).await;
    assert_eq!(t.wait_terminal(&job, T).await, "failed");

    let got = story(&t, &job).await;
    let mut want = expect(START);
    want.extend(expect(STAGE_1_OK));
    want.extend(expect(&[
        ("task_failed", "failure", "TASK_FAILED", 2, 1),
        ("job_failed", "failure", "JOB_FAILED", 2, 1),
    ]));
    assert_eq!(got, want);

    let (_, sum) = t.get(&format!("/api/jobs/{job}/events/summary")).await;
    assert_eq!(sum["job_status"], "failed");
    assert_eq!(sum["last_successful_step"]["event_type"], "stage_advanced");
    assert_eq!(sum["last_successful_step"]["stage"], 2);
    let ff = &sum["first_failure"];
    assert_eq!(ff["event_type"], "task_failed");
    assert_eq!(ff["stage"], 2);
    assert_eq!(ff["error_class"], "permanent");
    assert_eq!(ff["error_type"], "InjectedPermanent");
    assert!(
        ff["error_message"]
            .as_str()
            .unwrap()
            .contains("permanent failure"),
        "{ff}"
    );
    assert!(ff["task_id"].as_str().is_some_and(|s| s.len() == 64));
    assert!(
        sum["error_details"]
            .as_str()
            .unwrap()
            .contains("InjectedPermanent")
    );

    let (_, tl) = t.get(&format!("/api/jobs/{job}/timeline")).await;
    assert_eq!(tl["status"], "failed");
    assert_eq!(tl["stages"][0]["status"], "completed");
    assert_eq!(tl["stages"][1]["tasks"]["failed"], 1);
    assert_ne!(tl["stages"][1]["status"], "completed");
    t.cleanup().await;
}

#[tokio::test]
async fn events_page_oldest_first_and_every_checkpoint_is_in_the_catalogue() {
    let t = TestApp::start().await;
    let job = t.submit("hello_world", json!({"n": 3})).await;
    assert_eq!(t.wait_terminal(&job, T).await, "completed");
    let (_, all) = t.get(&format!("/api/jobs/{job}/events?limit=1000")).await;
    let all = all["events"].as_array().unwrap().clone();
    assert_eq!(all.len() as i64, 1 + 2 * (1 + 3 + 3 + 1) + 1 + 1);

    let mut paged = Vec::new();
    let mut cursor = "0".to_string();
    let mut pages = 0;
    loop {
        let (s, p) = t
            .get(&format!("/api/jobs/{job}/events?limit=4&cursor={cursor}"))
            .await;
        assert_eq!(s, 200, "{p}");
        pages += 1;
        let evs = p["events"].as_array().unwrap();
        assert!(evs.len() <= 4);
        paged.extend(evs.iter().cloned());
        match p["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    // `after=<event_id>` is the same as the cursor.
    let second = all[1]["event_id"].as_i64().unwrap();
    let (_, p) = t
        .get(&format!("/api/jobs/{job}/events?limit=1&after={second}"))
        .await;
    assert_eq!(p["events"][0], all[2]);
    assert_eq!(paged, all, "pages joined are the whole story");
    assert_eq!(pages, all.len().div_ceil(4));
    let ids: Vec<i64> = all
        .iter()
        .map(|e| e["event_id"].as_i64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "oldest first");
    for e in &all {
        let c = e["checkpoint"].as_str().unwrap();
        assert!(
            cp::ALL.contains(&c),
            "checkpoint {c} is not in the catalogue"
        );
    }

    // One task's events only.
    let task = all
        .iter()
        .find_map(|e| e["task_id"].as_str())
        .unwrap()
        .to_string();
    let (_, one) = t
        .get(&format!("/api/jobs/{job}/events?task_id={task}"))
        .await;
    let kinds: Vec<&str> = one["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["task_started", "task_completed"]);
    t.cleanup().await;
}

#[tokio::test]
async fn bad_requests_get_a_4xx_naming_the_field() {
    let t = TestApp::start_opts(|o| o.emulator = false).await;
    let missing = "0".repeat(64);
    for (path, code, field) in [
        (
            "/api/jobs/not-a-job/events".to_string(),
            400,
            Some("path.job_id"),
        ),
        (
            "/api/jobs/not-a-job/timeline".to_string(),
            400,
            Some("path.job_id"),
        ),
        (
            "/api/jobs/not-a-job/events/summary".to_string(),
            400,
            Some("path.job_id"),
        ),
        (format!("/api/jobs/{missing}/events"), 404, None),
        (format!("/api/jobs/{missing}/events/summary"), 404, None),
        (format!("/api/jobs/{missing}/timeline"), 404, None),
        (
            format!("/api/jobs/{missing}/events?limit=0"),
            400,
            Some("query.limit"),
        ),
        (
            format!("/api/jobs/{missing}/events?limit=abc"),
            400,
            Some("query.limit"),
        ),
        (
            format!("/api/jobs/{missing}/events?limit=1001"),
            400,
            Some("query.limit"),
        ),
        (
            format!("/api/jobs/{missing}/events?after=-1"),
            400,
            Some("query.after"),
        ),
        (
            "/api/ui/data/jobs?status=bogus".to_string(),
            400,
            Some("query.status"),
        ),
        (
            "/api/ui/data/jobs?limit=0".to_string(),
            400,
            Some("query.limit"),
        ),
        (format!("/api/ui/data/jobs/{missing}/tasks"), 404, None),
    ] {
        let (s, b) = t.get(&path).await;
        assert_eq!(s, code, "{path}: {b}");
        assert!(b["message"].is_string(), "{path}: {b}");
        if let Some(f) = field {
            assert_eq!(b["details"][0]["field"], f, "{path}: {b}");
        }
    }
    t.cleanup().await;
}

#[tokio::test]
async fn the_page_and_its_job_list_are_served_by_the_binary() {
    let t = TestApp::start().await;
    let ok = t.submit("hello_world", json!({"n": 1})).await;
    assert_eq!(t.wait_terminal(&ok, T).await, "completed");
    t.fault(FaultRule::always(Fault::HandlerPermanent).on_stage(1));
    let bad = t
        .submit("hello_world", json!({"n": 1, "message": "x"}))
        .await;
    assert_eq!(t.wait_terminal(&bad, T).await, "failed");

    for (path, ct) in [
        ("/api/ui", "text/html"),
        (&*format!("/api/ui/jobs/{bad}"), "text/html"),
        ("/api/ui/app.js", "text/javascript"),
        ("/api/ui/app.css", "text/css"),
    ] {
        let r = t
            .http
            .get(format!("{}{path}", t.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let got = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(got.starts_with(ct), "{path}: {got}");
        assert!(!r.text().await.unwrap().is_empty());
    }

    let (s, list) = t.get("/api/ui/data/jobs").await;
    assert_eq!(s, 200, "{list}");
    let ids: Vec<&str> = list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![bad.as_str(), ok.as_str()], "newest first");
    assert!(
        list["job_types"]
            .as_array()
            .unwrap()
            .contains(&json!("hello_world"))
    );
    let (_, failed) = t.get("/api/ui/data/jobs?status=failed").await;
    assert_eq!(failed["count"], 1);
    assert_eq!(failed["jobs"][0]["job_id"], bad.as_str());
    assert_eq!(failed["jobs"][0]["failed_tasks"], 1);
    let (_, none) = t.get("/api/ui/data/jobs?job_type=shapes").await;
    assert_eq!(none["count"], 0);

    let (s, tasks) = t.get(&format!("/api/ui/data/jobs/{bad}/tasks")).await;
    assert_eq!(s, 200, "{tasks}");
    assert_eq!(tasks["count"], 1);
    let task = &tasks["tasks"][0];
    assert_eq!(task["status"], "failed");
    assert_eq!(task["attempts"], 1);
    assert_eq!(task["error_class"], "permanent");
    assert!(
        task["error_details"]
            .as_str()
            .unwrap()
            .contains("InjectedPermanent")
    );
    t.cleanup().await;
}

#[tokio::test]
async fn every_statement_of_the_events_api_and_the_page_prepares_against_the_schema() {
    let t = TestApp::start_opts(|o| o.emulator = false).await;
    let c = t.db().await;
    // The events API's, the page's and the task detail's statements (now in store::sql).
    let ours = |n: &str| {
        n.starts_with("events_")
            || n.starts_with("ui_")
            || n == "timeline_stages"
            || n == "task_get"
    };
    for (name, sql) in coremachine::store::sql::ALL.iter().filter(|(n, _)| ours(n)) {
        if let Err(e) = c.prepare(sql).await {
            panic!("statement {name} does not prepare: {e}");
        }
    }
    t.cleanup().await;
}

/// The task id of (stage, task_seq) of a job, via the task listing.
async fn task_at(t: &TestApp, job: &str, stage: i64, seq: i64) -> String {
    let (s, b) = t
        .get(&format!("/api/jobs/{job}/tasks?stage={stage}&limit=1000"))
        .await;
    assert_eq!(s, 200, "{b}");
    b["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["task_seq"] == seq)
        .unwrap_or_else(|| panic!("no task {stage}/{seq}: {b}"))["task_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// (job_attempt, attempt, outcome, error_type) of a task detail's attempts.
fn attempt_outline(detail: &Value) -> Vec<(i64, i64, String, String)> {
    detail["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["job_attempt"].as_i64().unwrap(),
                a["attempt"].as_i64().unwrap(),
                a["outcome"].as_str().unwrap().to_string(),
                a["error_type"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn task_detail_shows_parameters_result_and_one_entry_per_attempt_with_its_error() {
    let t = TestApp::start().await;
    t.fault(
        FaultRule::times(Fault::HandlerTransient, 1)
            .on_index(0)
            .on_stage(1),
    );
    let job = t
        .submit("hello_world", json!({"n": 2, "message": "detail"}))
        .await;
    assert_eq!(t.wait_terminal(&job, T).await, "completed");
    let task = task_at(&t, &job, 1, 0).await;
    let (s, d) = t.get(&format!("/api/jobs/{job}/tasks/{task}")).await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["task_id"], task.as_str());
    assert_eq!(d["status"], "completed");
    assert_eq!(d["parameters"]["index"], 0, "{d}");
    assert!(d["result_data"].is_object(), "the handler's result: {d}");
    assert_eq!(d["archived_at"], Value::Null);
    assert_eq!(d["history_truncated"], false);
    assert_eq!(
        attempt_outline(&d),
        vec![
            (1, 1, "retry_scheduled".into(), "InjectedTransient".into()),
            (1, 2, "completed".into(), String::new()),
        ],
        "{d}"
    );
    for a in d["attempts"].as_array().unwrap() {
        let (start, end) = (a["started_at"].as_str(), a["ended_at"].as_str());
        assert!(start.is_some() && end.is_some() && start <= end, "{a}");
        assert!(a["duration_ms"].as_i64().unwrap() >= 0, "{a}");
    }
    assert_eq!(d["attempts"][0]["error_class"], "transient");
    assert_eq!(
        d["links"]["events"],
        format!("/api/jobs/{job}/events?task_id={task}")
    );
    // A task that never retried has one attempt.
    let other = task_at(&t, &job, 1, 1).await;
    let (_, d) = t.get(&format!("/api/jobs/{job}/tasks/{other}")).await;
    assert_eq!(
        attempt_outline(&d),
        vec![(1, 1, "completed".into(), String::new())]
    );

    // Bad input: a field-level 400 for the id, a 404 naming the missing task.
    let (s, b) = t.get(&format!("/api/jobs/{job}/tasks/not-a-task")).await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"], "invalid_task_id");
    assert!(b.to_string().contains("path.task_id"), "{b}");
    let missing = "b".repeat(64);
    let (s, b) = t.get(&format!("/api/jobs/{job}/tasks/{missing}")).await;
    assert_eq!(s, 404, "{b}");
    assert!(b["message"].as_str().unwrap().contains(&missing), "{b}");
    let (s, _) = t
        .get(&format!("/api/jobs/{}/tasks/{task}", "c".repeat(64)))
        .await;
    assert_eq!(s, 404);
    t.cleanup().await;
}

#[tokio::test]
async fn task_detail_of_a_retried_failed_task_lists_the_failed_attempt_and_the_new_jobs_run() {
    let t = TestApp::start().await;
    t.fault(
        FaultRule::times(Fault::HandlerPermanent, 1)
            .on_stage(2)
            .on_index(0),
    );
    let job = t.submit("hello_world", json!({"n": 2})).await;
    assert_eq!(t.wait_terminal(&job, T).await, "failed");
    let task = task_at(&t, &job, 2, 0).await;
    let (_, d) = t.get(&format!("/api/jobs/{job}/tasks/{task}")).await;
    assert_eq!(d["status"], "failed");
    assert!(
        d["error_details"]
            .as_str()
            .unwrap()
            .contains("InjectedPermanent"),
        "{d}"
    );
    assert_eq!(
        attempt_outline(&d),
        vec![(1, 1, "failed".into(), "InjectedPermanent".into())]
    );
    let (s, b) = t
        .post(
            &format!("/api/jobs/{job}/resubmit?from=failed_tasks"),
            &json!({}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(t.wait_terminal(&job, T).await, "completed");
    let (_, d) = t.get(&format!("/api/jobs/{job}/tasks/{task}")).await;
    assert_eq!(d["status"], "completed", "{d}");
    assert_eq!(d["job_attempt"], 2);
    assert_eq!(
        attempt_outline(&d),
        vec![
            (1, 1, "failed".into(), "InjectedPermanent".into()),
            (2, 1, "completed".into(), String::new()),
        ],
        "{d}"
    );
    t.cleanup().await;
}
