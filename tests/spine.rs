//! End to end through the HTTP API, the emulator and the trigger routes: hello_world runs, fan-in
//! happens exactly once, duplicates change nothing, submit is idempotent.

use std::time::Duration;

use coremachine::testing::{Fault, FaultRule};
use serde_json::{Value, json};

use crate::common::TestApp;

const ADVANCE_COUNT: &str =
    "SELECT count(*) FROM app.job_events WHERE job_id = $1 AND event_type = 'stage_advanced'";

#[tokio::test]
async fn hello_world_n3_completes_with_result_stage_results_and_events() {
    let t = TestApp::start().await;
    let job = t.submit("hello_world", json!({"n": 3})).await;
    assert_eq!(
        t.wait_terminal(&job, Duration::from_secs(30)).await,
        "completed"
    );

    let (s, status) = t.get(&format!("/api/jobs/status/{job}")).await;
    assert_eq!(s, 200);
    assert_eq!(status["status"], "completed");
    assert_eq!(status["stage"], 2);
    assert_eq!(status["totalStages"], 2);
    assert_eq!(status["resultData"]["greetings"], 3);
    assert_eq!(status["resultData"]["replies"], 3);
    assert_eq!(status["resultData"]["total_tasks"], 6);
    assert_eq!(status["stageResults"]["1"]["completed"], 3);
    assert_eq!(status["stageResults"]["1"]["name"], "greeting");
    assert_eq!(status["stageResults"]["2"]["completed"], 3);
    assert_eq!(status["stageResults"]["2"]["failed"], 0);

    // Replies were built from the greetings of stage 1.
    let c = t.db().await;
    let replies: Vec<String> = c
        .query(
            "SELECT result_data->>'reply' FROM app.tasks WHERE parent_job_id = $1 AND stage = 2 ORDER BY task_seq",
            &[&job],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        replies,
        vec![
            "Reply to: Hello World from task 0!",
            "Reply to: Hello World from task 1!",
            "Reply to: Hello World from task 2!"
        ]
    );

    let events = t.event_types(&job).await;
    let stage_events: Vec<&str> = events
        .iter()
        .map(String::as_str)
        .filter(|e| !e.starts_with("task_"))
        .collect();
    assert_eq!(
        stage_events,
        vec![
            "job_created",
            "stage_started",
            "stage_completed",
            "stage_advanced",
            "stage_started",
            "stage_completed",
            "job_completed"
        ]
    );
    assert_eq!(events.iter().filter(|e| *e == "task_started").count(), 6);
    assert_eq!(events.iter().filter(|e| *e == "task_completed").count(), 6);
    // Each task's start precedes its completion, and every stage-1 completion precedes the advance.
    let adv = events.iter().position(|e| e == "stage_advanced").unwrap();
    assert_eq!(
        events[..adv]
            .iter()
            .filter(|e| *e == "task_completed")
            .count(),
        3
    );
    t.wait_quiet(Duration::from_secs(10)).await;
    t.cleanup().await;
}

#[tokio::test]
async fn hello_world_n500_creates_exactly_n_stage2_tasks_and_one_advance_per_stage() {
    let t = TestApp::start().await;
    let job = t
        .submit("hello_world", json!({"n": 500, "message": "big"}))
        .await;
    assert_eq!(
        t.wait_terminal(&job, Duration::from_secs(120)).await,
        "completed"
    );
    let n2 = t
        .count(
            "SELECT count(*) FROM app.tasks WHERE parent_job_id = $1 AND stage = 2",
            &job,
        )
        .await;
    assert_eq!(n2, 500);
    let done = t
        .count(
            "SELECT count(*) FROM app.tasks WHERE parent_job_id = $1 AND status = 'completed'",
            &job,
        )
        .await;
    assert_eq!(done, 1000);
    assert_eq!(t.count(ADVANCE_COUNT, &job).await, 1);
    let completed_stages =
        t.count("SELECT count(*) FROM app.job_events WHERE job_id = $1 AND event_type = 'stage_completed'", &job).await;
    assert_eq!(completed_stages, 2);
    t.wait_quiet(Duration::from_secs(10)).await;
    t.cleanup().await;
}

#[tokio::test]
async fn every_message_delivered_twice_reaches_the_same_end_state_without_duplicates() {
    let t = TestApp::start().await;
    t.fault(FaultRule::always(Fault::DeliverTwice));
    let job = t.submit("hello_world", json!({"n": 20})).await;
    assert_eq!(
        t.wait_terminal(&job, Duration::from_secs(60)).await,
        "completed"
    );
    t.wait_quiet(Duration::from_secs(10)).await;
    assert_eq!(
        t.count(
            "SELECT count(*) FROM app.tasks WHERE parent_job_id = $1",
            &job
        )
        .await,
        40
    );
    assert_eq!(
        t.count(
            "SELECT count(*) FROM app.tasks WHERE parent_job_id = $1 AND status = 'completed'",
            &job
        )
        .await,
        40
    );
    assert_eq!(t.count(ADVANCE_COUNT, &job).await, 1);
    // Each task completed exactly once, each stage started exactly once.
    assert_eq!(
        t.count("SELECT count(*) FROM app.job_events WHERE job_id = $1 AND event_type = 'task_completed'", &job).await,
        40
    );
    assert_eq!(
        t.count("SELECT count(*) FROM app.job_events WHERE job_id = $1 AND event_type = 'stage_started'", &job).await,
        2
    );
    let (_, status) = t.get(&format!("/api/jobs/status/{job}")).await;
    assert_eq!(status["resultData"]["replies"], 20);
    t.cleanup().await;
}

#[tokio::test]
async fn two_hundred_concurrent_completions_advance_the_stage_exactly_once_20_times() {
    let t = TestApp::start_opts(|o| o.max_concurrent_calls = Some(16)).await;
    let mut jobs = Vec::new();
    for run in 0..20 {
        jobs.push(
            t.submit(
                "shapes2",
                json!({"tasks": 200, "run": format!("race-{run}")}),
            )
            .await,
        );
    }
    for job in &jobs {
        assert_eq!(
            t.wait_terminal(job, Duration::from_secs(180)).await,
            "completed",
            "{}",
            t.dump(job).await
        );
        assert_eq!(
            t.count(ADVANCE_COUNT, job).await,
            1,
            "job {job} advanced more than once"
        );
        assert_eq!(
            t.count("SELECT count(*) FROM app.job_events WHERE job_id = $1 AND event_type = 'job_completed'", job).await,
            1
        );
        assert_eq!(
            t.count(
                "SELECT count(*) FROM app.tasks WHERE parent_job_id = $1 AND stage = 2",
                job
            )
            .await,
            200
        );
    }
    t.cleanup().await;
}

#[tokio::test]
async fn submit_is_idempotent_and_job_ids_match_the_earlier_recipe() {
    let t = TestApp::start_opts(|o| o.emulator = false).await;
    // Test vector from the earlier implementation: hello_world with defaults.
    let (s, first) = t.post("/api/jobs/submit/hello_world", &json!({})).await;
    assert_eq!(s, 201, "{first}");
    assert_eq!(
        first["job_id"],
        "149580b8d06f0036537a68bbf149ba9f4e72160438cab4c08ce63591081a61e1"
    );
    assert_eq!(first["idempotent"], false);

    let (s, a) = t
        .post(
            "/api/jobs/submit/hello_world",
            &json!({"n": 7, "message": "hi"}),
        )
        .await;
    assert_eq!(s, 201);
    // Same parameters in another key order, plus a knob that is not part of the id.
    let body = r#"{"message": "hi", "delay_ms": 5, "n": 7}"#.as_bytes().to_vec();
    let (s, b) = t
        .post_raw("/api/jobs/submit/hello_world", body, "application/json")
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(a["job_id"], b["job_id"]);
    assert_eq!(b["idempotent"], true);
    assert_eq!(b["job_status"], "queued");
    let job: String = a["job_id"].as_str().unwrap().into();
    assert_eq!(
        t.count("SELECT count(*) FROM app.jobs WHERE job_id = $1", &job)
            .await,
        1
    );
    assert_eq!(
        t.count(
            "SELECT count(*) FROM app.job_events WHERE job_id = $1",
            &job
        )
        .await,
        1
    );
    // Only one stage-1 message was queued.
    let c = t.db().await;
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM app.queue_messages WHERE body::jsonb->>'job_id' = $1",
            &[&job],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    t.cleanup().await;
}

#[tokio::test]
async fn bad_submissions_get_field_level_400s_and_unknown_routes_404() {
    let t = TestApp::start_opts(|o| o.emulator = false).await;
    let (s, b) = t.post("/api/jobs/submit/nope", &json!({})).await;
    assert_eq!(s, 400);
    assert_eq!(b["error"], "unknown_job_type");
    assert!(
        b["message"].as_str().unwrap().contains("hello_world"),
        "{b}"
    );

    let (s, b) = t
        .post(
            "/api/jobs/submit/hello_world",
            &json!({"n": 0, "message": 5, "bogus": true}),
        )
        .await;
    assert_eq!(s, 400);
    let fields: Vec<(&str, &str)> = b["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["field"].as_str().unwrap(), d["rule"].as_str().unwrap()))
        .collect();
    assert!(fields.contains(&("n", "minimum")), "{b}");
    assert!(fields.contains(&("message", "type")), "{b}");
    assert!(fields.contains(&("bogus", "unknown_field")), "{b}");
    for key in ["error", "message", "details", "request_id", "timestamp"] {
        assert!(b.get(key).is_some(), "envelope lacks {key}: {b}");
    }

    let (s, b) = t
        .post_raw(
            "/api/jobs/submit/hello_world",
            b"{not json".to_vec(),
            "application/json",
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(b["error"], "invalid_json");

    let (s, _) = t.get(&format!("/api/jobs/status/{}", "0".repeat(64))).await;
    assert_eq!(s, 404);
    let (s, b) = t.get("/api/jobs/status/not-an-id").await;
    assert_eq!(s, 400);
    assert_eq!(b["error"], "invalid_job_id");
    let (s, _) = t.get("/api/nothing/here").await;
    assert_eq!(s, 404);
    let (s, b) = t.get("/api/health").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["status"], "healthy");
    let nothing: Value = t
        .db()
        .await
        .query_one("SELECT count(*) FROM app.jobs", &[])
        .await
        .map(|r| json!(r.get::<_, i64>(0)))
        .unwrap();
    assert_eq!(nothing, json!(0));
    t.cleanup().await;
}
