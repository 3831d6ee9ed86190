//! [batch]: batched task invocations claimed and completed as batches, the fan-in under many
//! concurrent batches, and the takeover of a task whose holder lost its message's lock.

use std::time::Duration;

use coremachine::testing::{Fault, STALL};
use serde_json::json;

use crate::common::TestApp;
use crate::common::invocations::{
    batch_invocation, layout_with_batched_tasks, post_invocation, queued_bodies,
};

const T: Duration = Duration::from_secs(120);

/// Delivers a job's waiting stage message by hand (no emulator).
async fn run_stage(t: &TestApp, job: &str) {
    let stage = queued_bodies(t, "geospatial-jobs", job).await.remove(0);
    let payload = batch_invocation(&[stage.as_bytes()], &["stage"], &[1]);
    let (s, _, resp) = post_invocation(t, "jobs-queue-trigger", &payload).await;
    assert_eq!(s, 200, "{resp}");
}

/// The [spine] fan-in race with batches: 200 tasks split into batches of 1 to 24 messages, every
/// batch posted at once (as many instances would), 20 times: each stage ends exactly once.
#[tokio::test]
async fn two_hundred_tasks_in_concurrent_batches_advance_the_stage_exactly_once_20_times() {
    let t = TestApp::start_opts(|o| o.emulator = false).await;
    for run in 0..20u64 {
        let job = t
            .submit(
                "shapes2",
                json!({"tasks": 200, "run": format!("batch-race-{run}")}),
            )
            .await;
        run_stage(&t, &job).await;
        let bodies = queued_bodies(&t, "geospatial-tasks", &job).await;
        assert_eq!(bodies.len(), 200);
        // Batch sizes from a fixed sequence that differs per run.
        let mut batches: Vec<Vec<&[u8]>> = Vec::new();
        let mut rest: &[String] = &bodies;
        let mut k = run;
        while !rest.is_empty() {
            k = (k * 7 + 5) % 24;
            let n = (k as usize + 1).min(rest.len());
            batches.push(rest[..n].iter().map(|b| b.as_bytes()).collect());
            rest = &rest[n..];
        }
        let posts = batches.iter().enumerate().map(|(i, b)| {
            let ids: Vec<String> = (0..b.len()).map(|j| format!("m{i}-{j}")).collect();
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            let payload = batch_invocation(b, &ids, &vec![1; b.len()]);
            let t = &t;
            async move { post_invocation(t, "tasks-queue-trigger", &payload).await }
        });
        for (s, _, resp) in futures::future::join_all(posts).await {
            assert_eq!(s, 200, "{resp}");
        }
        assert_eq!(
            t.count(
                "SELECT count(*) FROM app.job_events WHERE job_id = $1 AND event_type = 'stage_advanced'",
                &job
            )
            .await,
            1,
            "run {run}: the stage ended exactly once; {}",
            t.dump(&job).await
        );
        let stage2: usize = queued_bodies(&t, "geospatial-jobs", &job)
            .await
            .iter()
            .filter(|b| {
                serde_json::from_str::<serde_json::Value>(b).unwrap()["stage"].as_i64() == Some(2)
            })
            .count();
        assert_eq!(stage2, 1, "run {run}: stage 2 was queued exactly once");
        assert_eq!(
            t.count(
                "SELECT count(*) FROM app.job_events WHERE job_id = $1 AND event_type = 'task_completed'",
                &job
            )
            .await,
            200,
            "run {run}: every task of stage 1 completed exactly once"
        );
    }
    t.cleanup().await;
}

/// A holder that stalls past its message's lock (renewal budget 1 s, lock 1 s) loses the task to
/// the redelivered message, which takes it over at once (lease 600 s); when the stalled holder
/// answers, its completion names an older claim and is refused: the task completes exactly
/// once, with the second claim's result, and the refusal is on the job's timeline.
/// One message per invocation here: the emulator, like the host, runs one batch at a time per
/// function, so a stalled batch would hold back its own redelivery (the fencing is the same
/// statement either way).
#[tokio::test]
async fn a_holder_that_stalls_past_its_lock_is_taken_over_and_its_late_completion_refused() {
    let layout = layout_with_batched_tasks(8);
    let edit = |path: std::path::PathBuf, f: &dyn Fn(&mut serde_json::Value)| {
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        f(&mut v);
        std::fs::write(path, v.to_string()).unwrap();
    };
    edit(layout.join("host.json"), &|h| {
        h["extensions"]["serviceBus"]["maxAutoLockRenewalDuration"] = json!("00:00:01")
    });
    edit(
        layout.join("tasks-queue-trigger").join("function.json"),
        &|f| f["bindings"][0]["cardinality"] = json!("one"),
    );
    let (t, job) = crate::common::hello_world_with_task_1_faulted(
        Fault::StallAfterHandler,
        Duration::from_secs(600),
        |o| o.app_root = Some(layout.clone()),
    )
    .await;
    assert_eq!(t.wait_terminal(&job, T).await, "completed");
    // The stalled holder answers STALL after its handler; wait for its refusal.
    let start = std::time::Instant::now();
    while t
        .count(
            "SELECT count(*) FROM app.job_events WHERE job_id = $1 AND event_type = 'task_completion_refused'",
            &job,
        )
        .await
        == 0
    {
        assert!(
            start.elapsed() < STALL + T,
            "no refusal: {}",
            t.dump(&job).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    t.wait_quiet(T).await;
    let c = t.db().await;
    let r = c
        .query_one(
            "SELECT t.retry_count, t.claim_token,
                    (SELECT count(*) FROM app.job_events e WHERE e.task_id = t.task_id AND e.event_type = 'task_started'),
                    (SELECT count(*) FROM app.job_events e WHERE e.task_id = t.task_id AND e.event_type = 'task_completed'),
                    (SELECT (e.event_data->>'took_over_claim')::int FROM app.job_events e WHERE e.task_id = t.task_id AND e.event_data ? 'took_over_claim'),
                    (SELECT (e.event_data->>'claim')::int FROM app.job_events e WHERE e.task_id = t.task_id AND e.event_type = 'task_completion_refused')
             FROM app.tasks t WHERE t.parent_job_id = $1 AND t.stage = 1 AND t.task_seq = 1",
            &[&job],
        )
        .await
        .unwrap();
    let (retries, token, starts, completions, took_over, refused): (
        i32,
        i32,
        i64,
        i64,
        Option<i32>,
        Option<i32>,
    ) = (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
    assert_eq!(retries, 0, "the same attempt was taken over, not retried");
    assert_eq!(
        starts, 2,
        "claimed twice: by the stalled holder, then by the redelivery"
    );
    assert_eq!(completions, 1, "completed exactly once");
    assert_eq!(took_over, Some(1), "the second claim took over claim 1");
    assert_eq!(token, 2, "the task's claim is the second one");
    assert_eq!(
        refused,
        Some(1),
        "the stalled holder's completion (claim 1) was refused"
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
    t.cleanup().await;
    let _ = std::fs::remove_dir_all(layout);
}

/// Heavy task types (GDAL/OGR, `Registry::mark_heavy`) run at most `HEAVY_TASK_CONCURRENCY` at
/// once in a batched invocation, though it has more slots: the others wait `queued`, unclaimed.
#[tokio::test]
async fn a_batch_runs_at_most_heavy_task_concurrency_heavy_handlers_at_once() {
    let t = TestApp::start_opts(|o| {
        o.settings.heavy_task_concurrency = 2;
        o.registry.mark_heavy("shape_task");
    })
    .await;
    let job = t
        .submit("shapes1", json!({"tasks": 10, "sleep_ms": 300}))
        .await;
    assert_eq!(t.wait_terminal(&job, T).await, "completed");
    // Each handler ran from its claim (started_at) for handler_ms; the most that overlapped.
    let most: i64 = t
        .db()
        .await
        .query_one(
            "WITH iv AS (
               SELECT t.task_id, t.started_at AS s,
                      t.started_at + make_interval(secs => (e.event_data->>'handler_ms')::float8 / 1000) AS e
               FROM app.tasks t JOIN app.job_events e ON e.task_id = t.task_id AND e.event_type = 'task_completed'
               WHERE t.parent_job_id = $1)
             SELECT max((SELECT count(*) FROM iv b WHERE b.s < a.e AND b.e > a.s)) FROM iv a",
            &[&job],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        most, 2,
        "at most HEAVY_TASK_CONCURRENCY (2) heavy handlers at once, and both slots used"
    );
    t.cleanup().await;
}

/// A batch claims nothing after its time budget (`TRIGGER_BATCH_BUDGET_S`): the tasks it has not
/// started get new messages and run from a later invocation, each exactly once, none retried.
#[tokio::test]
async fn tasks_a_batch_cannot_start_within_its_budget_are_handed_back_and_run_once() {
    let t = TestApp::start_opts(|o| {
        o.settings.trigger_batch_budget = Duration::from_millis(700);
        o.settings.heavy_task_concurrency = 1;
        o.registry.mark_heavy("shape_task");
    })
    .await;
    let job = t
        .submit("shapes1", json!({"tasks": 6, "sleep_ms": 400}))
        .await;
    assert_eq!(t.wait_terminal(&job, T).await, "completed");
    let c = t.db().await;
    let r = c
        .query_one(
            "SELECT count(*), count(DISTINCT task_id), count(DISTINCT event_data->>'invocation_id'),
                    (SELECT count(*) FROM app.tasks WHERE parent_job_id = $1 AND retry_count > 0),
                    (SELECT count(*) FROM app.job_events WHERE job_id = $1 AND event_type = 'task_completed')
             FROM app.job_events WHERE job_id = $1 AND event_type = 'task_started'",
            &[&job],
        )
        .await
        .unwrap();
    let (starts, tasks, invocations, retried, completions): (i64, i64, i64, i64, i64) =
        (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
    assert_eq!(
        (starts, tasks, completions),
        (6, 6, 6),
        "each task ran once"
    );
    assert_eq!(retried, 0, "handed back, not retried");
    assert!(
        invocations >= 2,
        "the first batch handed tasks back to later invocations: {invocations} invocation(s)"
    );
    t.cleanup().await;
}
