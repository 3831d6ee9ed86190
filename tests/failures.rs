//! Nothing silent, nothing lost: retries, classification, stage policies, panics, malformed and
//! poison messages, protected finalize, outbox publish failure, a killed worker, and a soak — all
//! through local mode with fault injection.

use std::time::Duration;

use coremachine::testing::{Fault, FaultRule};
use serde_json::{Value, json};

use crate::common::TestApp;

const T: Duration = Duration::from_secs(60);

async fn job_row(t: &TestApp, job: &str) -> (String, Option<String>, Value, Value) {
    let r = t
        .db()
        .await
        .query_one(
            "SELECT status::text, error_details, COALESCE(result_data, 'null'), stage_results FROM app.jobs WHERE job_id = $1",
            &[&job],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3))
}

async fn count_events(t: &TestApp, job: &str, event_type: &str) -> i64 {
    t.db()
        .await
        .query_one(
            "SELECT count(*) FROM app.job_events WHERE job_id = $1 AND event_type = $2",
            &[&job, &event_type],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_transient_failure_is_retried_after_its_backoff_and_the_job_completes() {
    let t = TestApp::start().await;
    t.fault(
        FaultRule::times(Fault::HandlerTransient, 1)
            .on_index(0)
            .on_stage(1),
    );
    let job = t.submit("hello_world", json!({"n": 3})).await;
    assert_eq!(t.wait_terminal(&job, T).await, "completed");
    let c = t.db().await;
    let r = c
        .query_one(
            "SELECT retry_count, status::text, error_class FROM app.tasks WHERE parent_job_id = $1 AND stage = 1 AND task_seq = 0",
            &[&job],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, i32>(0), 1, "two attempts: retry_count 1");
    assert_eq!(r.get::<_, String>(1), "completed");
    assert_eq!(
        r.get::<_, Option<String>>(2),
        None,
        "a completed task carries no error; the events keep the history"
    );
    // The retry was not delivered before its backoff.
    let rows = c
        .query(
            "SELECT e.event_type, e.created_at, (e.event_data->>'delay_s')::float8, e.attempt, e.error_class FROM app.job_events e
             JOIN app.tasks t ON t.task_id = e.task_id
             WHERE e.job_id = $1 AND t.stage = 1 AND t.task_seq = 0 ORDER BY e.event_id",
            &[&job],
        )
        .await
        .unwrap();
    let kinds: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        kinds,
        vec![
            "task_started",
            "task_retrying",
            "task_started",
            "task_completed"
        ]
    );
    assert_eq!(
        rows[1].get::<_, Option<String>>(4).as_deref(),
        Some("transient")
    );
    assert_eq!(
        rows[2].get::<_, Option<i32>>(3),
        Some(2),
        "the second start is attempt 2"
    );
    let delay: f64 = rows[1].get(2);
    let retried_at: chrono::DateTime<chrono::Utc> = rows[1].get(1);
    let restarted_at: chrono::DateTime<chrono::Utc> = rows[2].get(1);
    assert!(delay > 0.0);
    assert!(
        (restarted_at - retried_at).num_milliseconds() as f64 >= delay * 1000.0 - 5.0,
        "retry delivered after {} ms, backoff was {delay} s",
        (restarted_at - retried_at).num_milliseconds()
    );
    t.cleanup().await;
}

#[tokio::test]
async fn exhausted_retries_fail_the_task_and_the_job_and_nothing_advances() {
    let t = TestApp::start_opts(|o| o.settings.retry.max_retries = 2).await;
    t.fault(
        FaultRule::always(Fault::HandlerTransient)
            .on_index(1)
            .on_stage(1),
    );
    let job = t
        .submit("hello_world", json!({"n": 4, "delay_ms": 20}))
        .await;
    assert_eq!(t.wait_terminal(&job, T).await, "failed");
    t.wait_quiet(T).await;
    let (_, err, _, _) = job_row(&t, &job).await;
    let err = err.unwrap();
    assert!(err.contains("stage 1, index 1"), "{err}");
    assert!(err.contains("[transient] InjectedTransient"), "{err}");
    assert!(
        err.contains("retries exhausted (2 retries) after 3 attempt(s)"),
        "{err}"
    );
    let c = t.db().await;
    let (status, retries): (String, i32) = c
        .query_one("SELECT status::text, retry_count FROM app.tasks WHERE parent_job_id = $1 AND stage = 1 AND task_seq = 1", &[&job])
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!((status.as_str(), retries), ("failed", 2));
    assert_eq!(count_events(&t, &job, "stage_advanced").await, 0);
    assert_eq!(
        t.count(
            "SELECT count(*) FROM app.tasks WHERE parent_job_id = $1 AND stage = 2",
            &job
        )
        .await,
        0
    );
    assert_eq!(count_events(&t, &job, "job_failed").await, 1);
    t.cleanup().await;
}

#[tokio::test]
async fn a_permanent_error_fails_at_once_and_the_remaining_tasks_never_advance_the_job() {
    let t = TestApp::start().await;
    t.fault(
        FaultRule::always(Fault::HandlerPermanent)
            .on_index(0)
            .on_stage(1),
    );
    let job = t
        .submit("hello_world", json!({"n": 30, "delay_ms": 30}))
        .await;
    assert_eq!(t.wait_terminal(&job, T).await, "failed");
    t.wait_quiet(T).await;
    let (_, err, _, _) = job_row(&t, &job).await;
    assert!(
        err.as_deref()
            .unwrap()
            .contains("[permanent] InjectedPermanent"),
        "{err:?}"
    );
    let retries: i32 = t
        .db()
        .await
        .query_one("SELECT retry_count FROM app.tasks WHERE parent_job_id = $1 AND stage = 1 AND task_seq = 0", &[&job])
        .await
        .unwrap()
        .get(0);
    assert_eq!(retries, 0, "a permanent error is not retried");
    // Whatever was in flight finished, whatever was queued was cancelled; the job never advanced.
    assert_eq!(count_events(&t, &job, "stage_advanced").await, 0);
    assert_eq!(t.count("SELECT count(*) FROM app.tasks WHERE parent_job_id = $1 AND status IN ('queued', 'processing')", &job).await, 0);
    assert_eq!(job_row(&t, &job).await.0, "failed");
    t.cleanup().await;
}

#[tokio::test]
async fn stage_policies_tolerate_failures_and_min_success_k() {
    let t = TestApp::start().await;
    // tolerate_failures: the stage advances once every task is terminal; failures are listed.
    let tolerant = t
        .submit("shapes_tolerant", json!({"tasks": 5, "fail": [1, 3]}))
        .await;
    // min_success(2) with exactly k successes (3 tasks, one fails) completes...
    let k_ok = t
        .submit("shapes_min2", json!({"tasks": 3, "fail": [0]}))
        .await;
    // ...and with k-1 successes fails.
    let k_minus_1 = t
        .submit("shapes_min2", json!({"tasks": 3, "fail": [0, 2]}))
        .await;
    // min_success(3) with 2 of 3 fails, naming the shortfall.
    let k3 = t
        .submit("shapes_min3", json!({"tasks": 3, "fail": [1]}))
        .await;

    assert_eq!(t.wait_terminal(&tolerant, T).await, "completed");
    let (_, _, _, stages) = job_row(&t, &tolerant).await;
    assert_eq!(stages["1"]["failed"], 2);
    let listed: Vec<i64> = stages["1"]["failed_tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["task_index"].as_i64().unwrap())
        .collect();
    assert_eq!(listed, vec![1, 3]);
    assert_eq!(
        t.count(
            "SELECT count(*) FROM app.tasks WHERE parent_job_id = $1 AND stage = 2",
            &tolerant
        )
        .await,
        3
    );

    assert_eq!(t.wait_terminal(&k_ok, T).await, "completed");
    assert_eq!(t.wait_terminal(&k_minus_1, T).await, "failed");
    let (_, err, _, _) = job_row(&t, &k_minus_1).await;
    assert!(
        err.as_deref()
            .unwrap()
            .contains("only 1 of 3 tasks succeeded, at least 2 required"),
        "{err:?}"
    );
    assert_eq!(t.wait_terminal(&k3, T).await, "failed");
    let (_, err, _, _) = job_row(&t, &k3).await;
    assert!(
        err.as_deref()
            .unwrap()
            .contains("only 2 of 3 tasks succeeded, at least 3 required"),
        "{err:?}"
    );
    t.cleanup().await;
}

#[tokio::test]
async fn max_failures_counts_failed_tasks_across_stages_and_fails_the_job_beyond_it() {
    let t = TestApp::start().await;
    // One failure in stage 1 and one in stage 2: within a budget of 2 the job completes...
    let within = t
        .submit(
            "shapes_budget",
            json!({"tasks": 5, "fail": [1], "fail2": [3], "max_failures": 2}),
        )
        .await;
    // ...with a budget of 1 the second failure (in stage 2) fails it, naming the first.
    let beyond = t
        .submit(
            "shapes_budget",
            json!({"tasks": 5, "fail": [1], "fail2": [3], "max_failures": 1}),
        )
        .await;
    // A budget of 0 (the default) is fail-fast: stage 2 never starts.
    let zero = t
        .submit("shapes_budget", json!({"tasks": 5, "fail": [2]}))
        .await;

    assert_eq!(t.wait_terminal(&within, T).await, "completed");
    let (_, _, result, stages) = job_row(&t, &within).await;
    assert_eq!(stages["1"]["failed"], 1);
    assert_eq!(stages["2"]["failed"], 1);
    assert_eq!(stages["2"]["policy"]["policy"], "max_failures");
    // Stage 3 runs on the 3 inputs that passed both stages.
    assert_eq!(result["last"], 3, "{result}");

    assert_eq!(t.wait_terminal(&beyond, T).await, "failed");
    let (_, err, _, _) = job_row(&t, &beyond).await;
    let err = err.unwrap();
    assert!(
        err.contains("2 failed task(s) up to stage 2, more than max_failures = 1 allows")
            && err.contains("(stage 1, index 1): [permanent]")
            && err.contains("task 1 told to fail"),
        "{err}"
    );
    assert_eq!(
        t.count(
            "SELECT count(*) FROM app.tasks WHERE parent_job_id = $1 AND stage = 3",
            &beyond
        )
        .await,
        0
    );

    assert_eq!(t.wait_terminal(&zero, T).await, "failed");
    let (_, err, _, _) = job_row(&t, &zero).await;
    assert!(
        err.as_deref()
            .unwrap()
            .contains("more than max_failures = 0 allows"),
        "{err:?}"
    );
    assert_eq!(
        t.count(
            "SELECT count(*) FROM app.tasks WHERE parent_job_id = $1 AND stage = 2",
            &zero
        )
        .await,
        0
    );
    t.cleanup().await;
}

#[tokio::test]
async fn a_handler_panic_is_a_permanent_failure_and_the_process_keeps_serving() {
    let t = TestApp::start().await;
    t.fault(
        FaultRule::times(Fault::HandlerPanic, 1)
            .on_index(2)
            .on_stage(1),
    );
    let job = t.submit("hello_world", json!({"n": 3})).await;
    assert_eq!(t.wait_terminal(&job, T).await, "failed");
    let (_, err, _, _) = job_row(&t, &job).await;
    assert!(
        err.as_deref()
            .unwrap()
            .contains("handler panicked: fault injection: handler panicked"),
        "{err:?}"
    );
    let ec: Option<String> = t
        .db()
        .await
        .query_one("SELECT error_class FROM app.tasks WHERE parent_job_id = $1 AND stage = 1 AND task_seq = 2", &[&job])
        .await
        .unwrap()
        .get(0);
    assert_eq!(ec.as_deref(), Some("permanent"));
    let next = t
        .submit("hello_world", json!({"n": 2, "message": "still alive"}))
        .await;
    assert_eq!(t.wait_terminal(&next, T).await, "completed");
    t.cleanup().await;
}

#[tokio::test]
async fn finalize_errors_and_panics_end_completed_with_errors_with_a_fallback_result() {
    let t = TestApp::start().await;
    for (fault, n, expect) in [
        (Fault::FinalizeError, 2, "finalize failed"),
        (Fault::FinalizePanic, 3, "finalize panicked"),
    ] {
        t.faults.clear();
        t.fault(FaultRule::times(fault, 1));
        let job = t.submit("hello_world", json!({"n": n})).await;
        assert_eq!(t.wait_terminal(&job, T).await, "completed_with_errors");
        let (_, err, result, _) = job_row(&t, &job).await;
        assert!(err.as_deref().unwrap().contains(expect), "{err:?}");
        assert_eq!(result["status"], "completed_with_errors");
        assert!(result["finalize_error"].as_str().unwrap().contains(expect));
        assert_eq!(result["task_counts"]["completed"], 2 * n);
        assert!(result["results_location"].as_str().unwrap().contains(&job));
        assert_eq!(count_events(&t, &job, "finalize_failed").await, 1);
    }
    t.cleanup().await;
}

#[tokio::test]
async fn a_failed_outbox_publish_is_published_by_the_janitor_and_the_job_completes() {
    let t = TestApp::start_opts(|o| o.settings.outbox_republish_after = Duration::ZERO).await;
    t.fault(FaultRule::times(Fault::FailOutboxPublish, 1));
    let job = t.submit("hello_world", json!({"n": 2})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let c = t.db().await;
    let (status, outbox): (String, i64) = c
        .query_one("SELECT (SELECT status::text FROM app.jobs WHERE job_id = $1), (SELECT count(*) FROM app.outbox WHERE job_id = $1)", &[&job])
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(status, "queued", "the stage message was never sent");
    assert_eq!(outbox, 1, "but it is safe in the outbox");
    let err: Option<String> = c
        .query_one("SELECT last_error FROM app.outbox", &[])
        .await
        .unwrap()
        .get(0);
    assert!(err.unwrap().contains("fault injection"));
    let report = coremachine::janitor::run_once(t.engine()).await.unwrap();
    assert!(
        report
            .actions
            .iter()
            .any(|a| a["action"] == "outbox_republished"),
        "{:?}",
        report.actions
    );
    assert_eq!(t.wait_terminal(&job, T).await, "completed");
    t.wait_quiet(T).await;
    let runs: i64 = c
        .query_one(
            "SELECT count(*) FROM app.janitor_runs WHERE status = 'completed' AND items_fixed >= 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(runs, 1);
    t.cleanup().await;
}

/// A hello_world job (n = 3) whose stage-1 task 1 hangs after its handler (the process is as good
/// as dead), under a task lease of `lease` and a queue lock of 1 s.
async fn job_with_a_hanging_task(lease: Duration) -> (TestApp, String) {
    crate::common::hello_world_with_task_1_faulted(Fault::KillAfterHandler, lease, |_| {}).await
}

#[tokio::test]
async fn a_worker_killed_mid_task_whose_message_is_lost_is_recovered_by_lease_expiry_and_the_janitor()
 {
    let (t, job) = job_with_a_hanging_task(Duration::from_secs(2)).await;
    // Wait until the victim's handler has run and the invocation is hanging (task still processing).
    let c = t.db().await;
    let start = std::time::Instant::now();
    loop {
        let (done, processing): (i64, i64) = c
            .query_one(
                "SELECT count(*) FILTER (WHERE status = 'completed'), count(*) FILTER (WHERE status = 'processing') FROM app.tasks WHERE parent_job_id = $1 AND stage = 1",
                &[&job],
            )
            .await
            .map(|r| (r.get(0), r.get(1)))
            .unwrap();
        if done == 2 && processing == 1 {
            break;
        }
        assert!(
            start.elapsed() < T,
            "victim never hung: {}",
            t.dump(&job).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The process dies; a new one starts on the same database. The victim's message is lost too
    // (with it, a redelivery would take the task over at once: the next test), so only the
    // lease and the janitor can recover the task.
    c.execute(
        "DELETE FROM app.queue_messages WHERE queue = 'geospatial-tasks'",
        &[],
    )
    .await
    .unwrap();
    let t = t.restart_after_kill(|_| {}).await;
    tokio::time::sleep(Duration::from_millis(2200)).await; // the lease runs out
    let report = coremachine::janitor::run_once(t.engine()).await.unwrap();
    assert!(
        report
            .actions
            .iter()
            .any(|a| a["action"] == "lease_expired_requeued"),
        "{:?}",
        report.actions
    );
    assert_eq!(t.wait_terminal(&job, T).await, "completed");
    t.wait_quiet(T).await;
    assert_eq!(count_events(&t, &job, "stage_advanced").await, 1);
    assert_eq!(count_events(&t, &job, "job_completed").await, 1);
    let (retries, completions): (i32, i64) = t
        .db()
        .await
        .query_one(
            "SELECT t.retry_count, (SELECT count(*) FROM app.job_events e WHERE e.task_id = t.task_id AND e.event_type = 'task_completed')
             FROM app.tasks t WHERE t.parent_job_id = $1 AND t.stage = 1 AND t.task_seq = 1",
            &[&job],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(retries, 1, "the lost attempt was replaced by attempt 2");
    assert_eq!(completions, 1, "the task completed exactly once");
    t.cleanup().await;
}

#[tokio::test]
async fn a_worker_killed_mid_task_loses_it_to_the_redelivery_within_one_lock_duration() {
    // A lease far longer than the lock: only the takeover by the redelivered message (a higher
    // DeliveryCount than the claim's) can finish the job in time.
    let (t, job) = job_with_a_hanging_task(Duration::from_secs(600)).await;
    let start = std::time::Instant::now();
    while t
        .count(
            "SELECT count(*) FROM app.tasks WHERE parent_job_id = $1 AND stage = 1 AND status = 'completed'",
            &job,
        )
        .await
        < 2
    {
        assert!(start.elapsed() < T, "{}", t.dump(&job).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let killed = std::time::Instant::now();
    let t = t.restart_after_kill(|_| {}).await;
    assert_eq!(t.wait_terminal(&job, T).await, "completed");
    println!(
        "takeover: job completed {:.1} s after the kill (lock duration 1 s, lease 600 s)",
        killed.elapsed().as_secs_f64()
    );
    t.wait_quiet(T).await;
    let c = t.db().await;
    let (retries, completions, takeovers): (i32, i64, i64) = c
        .query_one(
            "SELECT t.retry_count,
                    (SELECT count(*) FROM app.job_events e WHERE e.task_id = t.task_id AND e.event_type = 'task_completed'),
                    (SELECT count(*) FROM app.job_events e WHERE e.task_id = t.task_id AND e.event_type = 'task_started' AND e.event_data ? 'took_over_claim')
             FROM app.tasks t WHERE t.parent_job_id = $1 AND t.stage = 1 AND t.task_seq = 1",
            &[&job],
        )
        .await
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .unwrap();
    assert_eq!(retries, 0, "the same attempt was taken over, not retried");
    assert_eq!(completions, 1, "the task completed exactly once");
    assert_eq!(
        takeovers, 1,
        "its second claim says whose claim it took over"
    );
    assert_eq!(
        t.count(
            "SELECT count(*) FROM app.job_events WHERE job_id = $1 AND event_type = 'task_completed'",
            &job
        )
        .await,
        6,
        "every task of both stages completed exactly once"
    );
    assert_eq!(count_events(&t, &job, "stage_advanced").await, 1);
    t.cleanup().await;
}

#[tokio::test]
async fn the_janitor_redrives_a_lost_stage_message_and_ends_a_stalled_stage() {
    let t = TestApp::start_opts(|o| o.settings.janitor_stuck_after = Duration::ZERO).await;
    let c = t.db().await;
    // A lost stage message: the job is queued and nothing will ever deliver it.
    t.fault(FaultRule::times(Fault::FailOutboxPublish, 1));
    let lost = t
        .submit("hello_world", json!({"n": 2, "message": "lost"}))
        .await;
    c.execute("DELETE FROM app.outbox WHERE job_id = $1", &[&lost])
        .await
        .unwrap();
    // A stalled stage: every task of stage 1 is terminal but the stage's end was never applied
    // (simulated by ending a task behind the engine's back, without the fan-in decrement).
    let stalled = t
        .submit(
            "shapes2",
            json!({"tasks": 3, "sleep_ms": 300, "run": "stalled"}),
        )
        .await;
    let start = std::time::Instant::now();
    while t
        .count(
            "SELECT count(*) FROM app.tasks WHERE parent_job_id = $1 AND status = 'processing'",
            &stalled,
        )
        .await
        < 3
    {
        assert!(start.elapsed() < T, "{}", t.dump(&stalled).await);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    c.execute(
        "UPDATE app.tasks SET status = 'completed', lease_expires_at = NULL, result_data = '{\"i\": 0}' WHERE parent_job_id = $1 AND task_seq = 0",
        &[&stalled],
    )
    .await
    .unwrap();
    // The handler's own completion of task 0 is now lost (guard) and never decrements the counter.
    let start = std::time::Instant::now();
    while t.count("SELECT count(*) FROM app.tasks WHERE parent_job_id = $1 AND stage = 1 AND status = 'completed'", &stalled).await < 3 {
        assert!(start.elapsed() < T);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        job_row(&t, &stalled).await.0,
        "processing",
        "stuck: counter never reached zero"
    );

    let report = coremachine::janitor::run_once(t.engine()).await.unwrap();
    let actions: Vec<&str> = report
        .actions
        .iter()
        .filter_map(|a| a["action"].as_str())
        .collect();
    assert!(actions.contains(&"job_redriven"), "{actions:?}");
    assert!(actions.contains(&"stage_ended"), "{actions:?}");
    assert_eq!(t.wait_terminal(&lost, T).await, "completed");
    assert_eq!(t.wait_terminal(&stalled, T).await, "completed");
    assert_eq!(count_events(&t, &stalled, "stage_advanced").await, 1);
    assert_eq!(count_events(&t, &lost, "job_redriven").await, 1);
    let (found, fixed): (i32, i32) = c
        .query_one(
            "SELECT items_scanned, items_fixed FROM app.janitor_runs",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert!(found >= 2 && fixed >= 2, "found {found} fixed {fixed}");
    t.cleanup().await;
}

#[tokio::test]
async fn an_outcome_that_cannot_be_recorded_is_run_again_by_the_redelivery_not_left_processing() {
    let t = TestApp::start().await;
    // Task 0's first two outcomes fail to commit (as a deadlock or a dropped connection would):
    // each invocation answers 503, gives the claim back, and the redelivered message runs it again.
    t.fault(
        FaultRule::times(Fault::OutcomeNotRecorded, 2)
            .on_index(0)
            .on_stage(1),
    );
    let job = t.submit("hello_world", json!({"n": 3})).await;
    assert_eq!(
        t.wait_terminal(&job, T).await,
        "completed",
        "{}",
        t.dump(&job).await
    );
    t.wait_quiet(T).await;
    let c = t.db().await;
    let r = c
        .query_one(
            "SELECT status::text, retry_count FROM app.tasks WHERE parent_job_id = $1 AND stage = 1 AND task_seq = 0",
            &[&job],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "completed");
    assert_eq!(
        r.get::<_, i32>(1),
        0,
        "a lost outcome is not a task failure: the same attempt runs again"
    );
    let released: Vec<(String, Option<String>)> = c
        .query(
            "SELECT event_data->>'job_status', error_message FROM app.job_events WHERE job_id = $1 AND event_type = 'task_released' ORDER BY event_id",
            &[&job],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        released.len(),
        2,
        "one task_released event per lost outcome: {released:?}"
    );
    assert!(
        released[0]
            .1
            .as_deref()
            .is_some_and(|m| m.contains("outcome failed")),
        "the event says what failed: {released:?}"
    );
    assert_eq!(
        t.count("SELECT count(*) FROM app.job_events WHERE job_id = $1 AND stage = 1 AND event_type = 'task_started'", &job).await,
        3 + 2,
        "stage 1 ran tasks 1 and 2 once and task 0 three times"
    );
    assert_eq!(count_events(&t, &job, "job_completed").await, 1);
    t.cleanup().await;
}

#[tokio::test]
async fn a_lost_outcome_of_a_task_whose_job_was_cancelled_meanwhile_cancels_the_task() {
    let t = TestApp::start().await;
    t.fault(FaultRule::always(Fault::OutcomeNotRecorded).on_stage(1));
    let job = t
        .submit("hello_world", json!({"n": 1, "delay_ms": 1500}))
        .await;
    // Cancel while the only task's handler runs; its outcome then fails to commit.
    let start = std::time::Instant::now();
    while t
        .count(
            "SELECT count(*) FROM app.tasks WHERE parent_job_id = $1 AND status = 'processing'",
            &job,
        )
        .await
        == 0
    {
        assert!(
            start.elapsed() < T,
            "the task never started: {}",
            t.dump(&job).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (s, b) = t.post(&format!("/api/jobs/{job}/cancel"), &json!({})).await;
    assert_eq!(s, 200, "{b}");
    t.wait_quiet(T).await;
    let c = t.db().await;
    let status: String = c
        .query_one(
            "SELECT status::text FROM app.tasks WHERE parent_job_id = $1",
            &[&job],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "cancelled", "{}", t.dump(&job).await);
    let job_status: Option<String> = c
        .query_one(
            "SELECT event_data->>'job_status' FROM app.job_events WHERE job_id = $1 AND event_type = 'task_released'",
            &[&job],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(job_status.as_deref(), Some("cancelled"));
    assert_eq!(job_row(&t, &job).await.0, "cancelled");
    t.cleanup().await;
}
