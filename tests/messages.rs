//! Malformed, unknown and poison messages are recorded against their job when it can be found,
//! acknowledged, and never retried forever. Poison cases are driven by real dead-lettering in the
//! emulator (max delivery count exceeded).

use std::time::Duration;

use base64::Engine as _;
use coremachine::testing::{Fault, FaultRule};
use serde_json::{Value, json};

use crate::common::TestApp;

const T: Duration = Duration::from_secs(60);

async fn invoke(t: &TestApp, function: &str, body: &str) -> (u16, Value) {
    let payload = json!({"Data": {"msg": base64::engine::general_purpose::STANDARD.encode(body)}, "Metadata": {"DeliveryCount": "1", "MessageId": "\"x\""}});
    t.post(&format!("/{function}"), &payload).await
}

async fn failure_reasons(t: &TestApp) -> Vec<(String, Option<String>, Option<String>)> {
    t.db()
        .await
        .query(
            "SELECT reason, job_id, task_id FROM app.message_failures ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test]
async fn malformed_messages_are_recorded_against_the_recovered_job_or_task() {
    let t = TestApp::start_opts(|o| o.emulator = false).await;
    let job = t.submit("hello_world", json!({"n": 2})).await;
    // Broken JSON that still names the job: the job fails with the parse error.
    let (s, _) = invoke(
        &t,
        "jobs-queue-trigger",
        &format!(r#"{{"job_id": "{job}", "stage": "one", "#),
    )
    .await;
    assert_eq!(s, 200);
    let c = t.db().await;
    let (status, err): (String, Option<String>) = c
        .query_one(
            "SELECT status::text, error_details FROM app.jobs WHERE job_id = $1",
            &[&job],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(status, "failed");
    assert!(
        err.unwrap()
            .contains("malformed message on jobs-queue-trigger")
    );
    assert_eq!(
        failure_reasons(&t).await,
        vec![("malformed".into(), Some(job.clone()), None)]
    );

    // A bare 64-hex id inside non-JSON text: recorded against that job, which goes on (#13.2).
    let other = t.submit("hello_world", json!({"n": 5})).await;
    let (s, _) = invoke(
        &t,
        "tasks-queue-trigger",
        &format!("<<garbage {other} garbage>>"),
    )
    .await;
    assert_eq!(s, 200);
    let st: String = c
        .query_one(
            "SELECT status::text FROM app.jobs WHERE job_id = $1",
            &[&other],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(st, "queued");
    let events: i64 = c
        .query_one("SELECT count(*) FROM app.job_events WHERE job_id = $1 AND event_type = 'message_malformed'", &[&other])
        .await
        .unwrap()
        .get(0);
    assert_eq!(events, 0);
    assert_eq!(
        failure_reasons(&t).await[1],
        ("malformed".into(), Some(other.clone()), None)
    );

    // Nothing recoverable: recorded, acknowledged.
    let (s, _) = invoke(&t, "tasks-queue-trigger", "not json at all").await;
    assert_eq!(s, 200);
    assert_eq!(failure_reasons(&t).await.len(), 3);
    t.cleanup().await;
}

#[tokio::test]
async fn a_malformed_task_message_fails_that_task_and_its_job() {
    let t = TestApp::start_opts(|o| o.emulator = false).await;
    let job = t.submit("hello_world", json!({"n": 2})).await;
    let body = t
        .db()
        .await
        .query_one("SELECT body FROM app.queue_messages", &[])
        .await
        .unwrap()
        .get::<_, String>(0);
    // Process the stage message by hand so tasks exist.
    let (s, _) = invoke(&t, "jobs-queue-trigger", &body).await;
    assert_eq!(s, 200);
    let task: String = t
        .db()
        .await
        .query_one(
            "SELECT task_id FROM app.tasks WHERE parent_job_id = $1 AND task_seq = 0",
            &[&job],
        )
        .await
        .unwrap()
        .get(0);
    let (s, _) = invoke(
        &t,
        "tasks-queue-trigger",
        &format!(r#"{{"task_id": "{task}", "retry_count": "zero""#),
    )
    .await;
    assert_eq!(s, 200);
    let c = t.db().await;
    let (ts, te): (String, Option<String>) = c
        .query_one(
            "SELECT status::text, error_details FROM app.tasks WHERE task_id = $1",
            &[&task],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(ts, "failed");
    assert!(te.unwrap().contains("MalformedMessage"));
    let (js, je): (String, Option<String>) = c
        .query_one(
            "SELECT status::text, error_details FROM app.jobs WHERE job_id = $1",
            &[&job],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(js, "failed");
    assert!(je.unwrap().contains(&task));
    t.cleanup().await;
}

#[tokio::test]
async fn unknown_job_types_and_unknown_ids_are_recorded_and_never_retried() {
    let t = TestApp::start().await;
    let c = t.db().await;
    let ghost = "7".repeat(64);
    c.execute(
        "INSERT INTO app.jobs (job_id, job_type, total_stages) VALUES ($1, 'ghost_type', 2)",
        &[&ghost],
    )
    .await
    .unwrap();
    let msg =
        json!({"job_id": ghost, "job_type": "ghost_type", "stage": 1, "attempt": 1}).to_string();
    c.execute("INSERT INTO app.queue_messages (queue, message_id, body) VALUES ('geospatial-jobs', 'g1', $1)", &[&msg]).await.unwrap();
    let unknown_task = json!({"task_id": "8".repeat(64), "parent_job_id": "6".repeat(64), "job_type": "hello_world", "task_type": "x", "stage": 1}).to_string();
    c.execute("INSERT INTO app.queue_messages (queue, message_id, body) VALUES ('geospatial-tasks', 'u1', $1)", &[&unknown_task]).await.unwrap();
    assert_eq!(t.wait_terminal(&ghost, T).await, "failed");
    t.wait_quiet(T).await;
    let err: String = c
        .query_one(
            "SELECT error_details FROM app.jobs WHERE job_id = $1",
            &[&ghost],
        )
        .await
        .unwrap()
        .get(0);
    assert!(err.contains("unknown job type \"ghost_type\""), "{err}");
    let reasons = failure_reasons(&t).await;
    assert_eq!(
        reasons,
        vec![(
            "unknown_task".to_string(),
            Some("6".repeat(64)),
            Some("8".repeat(64))
        )],
        "recorded once: acknowledged, not redelivered"
    );
    t.cleanup().await;
}

async fn poison_events(t: &TestApp, job: &str) -> Vec<(String, String)> {
    t.db()
        .await
        .query(
            "SELECT event_type, checkpoint_name FROM app.job_events WHERE job_id = $1 AND event_type LIKE 'poison%' ORDER BY event_id",
            &[&job],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn wait_poison(t: &TestApp, job: &str, n: usize) -> Vec<(String, String)> {
    let start = std::time::Instant::now();
    loop {
        let ev = poison_events(t, job).await;
        if ev.len() >= n {
            return ev;
        }
        assert!(
            start.elapsed() < T,
            "no poison event for {job}: {}",
            t.dump(job).await
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

#[tokio::test]
async fn poison_of_a_failed_task_is_expected() {
    let t = TestApp::start_opts(|o| o.local_queue().max_delivery_count = 2).await;
    t.fault(FaultRule::always(Fault::HandlerPermanent));
    t.fault(FaultRule::always(Fault::AbandonAfterHandler).on_function("tasks-queue-trigger"));
    let job = t.submit("shapes1", json!({"tasks": 1})).await;
    assert_eq!(t.wait_terminal(&job, T).await, "failed");
    let ev = wait_poison(&t, &job, 1).await;
    assert_eq!(
        ev,
        vec![("poison_expected".to_string(), "POISON_EXPECTED".to_string())]
    );
    t.cleanup().await;
}

#[tokio::test]
async fn poison_after_completion_is_a_warning_and_changes_nothing() {
    let t = TestApp::start_opts(|o| o.local_queue().max_delivery_count = 2).await;
    t.fault(FaultRule::always(Fault::AbandonAfterHandler).on_function("tasks-queue-trigger"));
    let job = t.submit("shapes1", json!({"tasks": 1})).await;
    assert_eq!(t.wait_terminal(&job, T).await, "completed");
    let ev = wait_poison(&t, &job, 1).await;
    assert_eq!(
        ev,
        vec![(
            "poison_after_completion".to_string(),
            "POISON_AFTER_COMPLETION".to_string()
        )]
    );
    let status: String = t.db().await.query_one("SELECT event_status FROM app.job_events WHERE job_id = $1 AND event_type = 'poison_after_completion'", &[&job]).await.unwrap().get(0);
    assert_eq!(status, "warning");
    assert_eq!(t.wait_terminal(&job, T).await, "completed");
    t.cleanup().await;
}

#[tokio::test]
async fn poison_of_a_live_job_fails_it_with_unhandled_poison_and_fails_its_pending_tasks() {
    let t = TestApp::start_opts(|o| o.local_queue().max_delivery_count = 2).await;
    // The stage message is processed, then abandoned every time, until it is dead-lettered; the
    // tasks are slow, so the job is still live when the poison arrives.
    t.fault(FaultRule::always(Fault::AbandonAfterHandler).on_function("jobs-queue-trigger"));
    let job = t
        .submit("shapes1", json!({"tasks": 40, "sleep_ms": 400}))
        .await;
    assert_eq!(t.wait_terminal(&job, T).await, "failed");
    let ev = wait_poison(&t, &job, 1).await;
    assert_eq!(
        ev,
        vec![(
            "poison_reconciled".to_string(),
            "POISON_RECONCILED".to_string()
        )]
    );
    let c = t.db().await;
    let (err, result): (String, Value) = c
        .query_one(
            "SELECT error_details, result_data FROM app.jobs WHERE job_id = $1",
            &[&job],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert!(
        err.contains("unhandled poison message (MaxDeliveryCountExceeded)"),
        "{err}"
    );
    assert_eq!(result["failure"]["unhandled_poison"], true);
    assert!(
        result["failure"]["message_excerpt"]
            .as_str()
            .unwrap()
            .contains(&job)
    );
    assert_eq!(
        t.count(
            "SELECT count(*) FROM app.tasks WHERE parent_job_id = $1 AND status = 'queued'",
            &job
        )
        .await,
        0
    );
    assert!(t.count("SELECT count(*) FROM app.tasks WHERE parent_job_id = $1 AND status = 'failed' AND error_details LIKE 'job failed: unhandled poison%'", &job).await > 0);
    t.cleanup().await;
}

#[tokio::test]
async fn poison_of_a_queued_task_fails_the_task_and_its_job() {
    // Phase 1, no emulator: the stage message is processed by hand, so the tasks exist, queued,
    // with their messages waiting in the local queue.
    let t = TestApp::start_opts(|o| o.emulator = false).await;
    let job = t.submit("shapes1", json!({"tasks": 2})).await;
    let c = t.db().await;
    let body: String = c
        .query_one(
            "SELECT body FROM app.queue_messages WHERE queue = 'geospatial-jobs'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let (s, _) = invoke(&t, "jobs-queue-trigger", &body).await;
    assert_eq!(s, 200);
    c.execute(
        "DELETE FROM app.queue_messages WHERE queue = 'geospatial-jobs'",
        &[],
    )
    .await
    .unwrap();
    let task: String = c
        .query_one(
            "SELECT task_id FROM app.tasks WHERE parent_job_id = $1 AND task_seq = 0",
            &[&job],
        )
        .await
        .unwrap()
        .get(0);
    // Its message has already been delivered the maximum number of times (e.g. every delivery
    // timed out); the other task's message is held back.
    c.execute("UPDATE app.queue_messages SET delivery_count = 2 WHERE queue = 'geospatial-tasks' AND body::jsonb->>'task_id' = $1", &[&task])
        .await
        .unwrap();
    c.execute("UPDATE app.queue_messages SET visible_at = now() + interval '1 hour' WHERE queue = 'geospatial-tasks' AND body::jsonb->>'task_id' <> $1", &[&task])
        .await
        .unwrap();
    // Phase 2: the host emulator starts and dead-letters it to the poison queue.
    let mut o = t.opts.clone();
    o.emulator = true;
    o.local_queue().max_delivery_count = 2;
    let t2 = TestApp::start_with(t.db_name.clone(), t.db_url.clone(), o).await;
    let ev = wait_poison(&t2, &job, 1).await;
    assert_eq!(ev[0].0, "poison_reconciled");
    let (ts, te): (String, String) = c
        .query_one(
            "SELECT status::text, error_details FROM app.tasks WHERE task_id = $1",
            &[&task],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(ts, "failed");
    let details: Value = serde_json::from_str(&te).unwrap();
    assert_eq!(details["unhandled_poison"], true);
    assert_eq!(details["dead_letter_reason"], "MaxDeliveryCountExceeded");
    assert_eq!(t2.wait_terminal(&job, T).await, "failed");
    // The job's other (pending) task was failed with it.
    let other: String = c
        .query_one(
            "SELECT status::text FROM app.tasks WHERE parent_job_id = $1 AND task_seq = 1",
            &[&job],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(other, "failed");
    t2.cleanup().await;
    if let Some(app) = t.app {
        app.kill().await;
    }
}

/// Regression (issue 13.7): job messages for an existing job with stage 99, stage -2^31 or
/// attempt 0 were acknowledged as "duplicate or stale" with only an info checkpoint.
#[tokio::test]
async fn impossible_job_messages_are_recorded_and_stale_copies_stay_quiet() {
    let t = TestApp::start().await;
    let id = t.submit("shapes2", json!({"tasks": 1})).await;
    assert_eq!(t.wait_terminal(&id, T).await, "completed");
    let message = |job_type: &str, stage: i32, attempt: i32| {
        json!({"job_id": id, "job_type": job_type, "parameters": {}, "stage": stage, "attempt": attempt})
            .to_string()
    };
    let impossible = [
        (message("shapes2", 99, 1), "stage 99 does not exist"),
        (message("shapes2", i32::MIN, 1), "does not exist"),
        (message("shapes2", 0, 1), "stage 0 does not exist"),
        (message("shapes2", 1, 0), "attempt 0"),
        (message("shapes2", 1, 7), "attempt 7 is later"),
        (message("shapes1", 1, 1), "job type"),
    ];
    for (body, why) in &impossible {
        let (s, b) = invoke(&t, "jobs-queue-trigger", body).await;
        assert_eq!(s, 200, "acknowledged: {b}");
        assert!(
            b["Logs"].to_string().contains("can never apply"),
            "{body}: {b}"
        );
        let c = t.db().await;
        let row = c
            .query_one(
                "SELECT reason, job_id, error_message FROM app.message_failures ORDER BY id DESC LIMIT 1",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "impossible_job_message");
        assert_eq!(
            row.get::<_, Option<String>>(1).as_deref(),
            Some(id.as_str())
        );
        let error: String = row.get(2);
        assert!(error.contains(why), "{body}: {error}");
    }
    // Real copies of the stages the job went through stay quiet duplicates.
    for stage in [1, 2] {
        let (s, b) = invoke(&t, "jobs-queue-trigger", &message("shapes2", stage, 1)).await;
        assert_eq!(s, 200, "{b}");
        assert!(b["Logs"].to_string().contains("duplicate or stale"), "{b}");
    }
    assert_eq!(
        t.count(
            "SELECT count(*) FROM app.message_failures WHERE job_id = $1",
            &id
        )
        .await,
        impossible.len() as i64
    );
    assert_eq!(t.wait_terminal(&id, T).await, "completed");
    t.cleanup().await;
}
