//! Soak: 50 jobs of mixed shapes with 10 % duplicate deliveries, 5 % transient failures and 2 %
//! panics. Every job ends terminal in the state its failures imply, no stage advances twice, and
//! nothing is left in the outbox or the queues.

use std::time::Duration;

use coremachine::testing::{Fault, FaultRule};
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::common::TestApp;

#[tokio::test]
async fn fifty_mixed_jobs_under_duplicates_transients_and_panics_end_consistently() {
    let mut t = TestApp::start_opts(|o| {
        o.settings.retry.max_retries = 3;
        o.settings.retry.base_delay = Duration::from_millis(50);
        o.settings.retry.max_delay = Duration::from_millis(400);
        o.max_concurrent_calls = Some(16);
    })
    .await;
    t.fault(FaultRule::probability(Fault::DeliverTwice, 0.10));
    t.fault(FaultRule::probability(Fault::HandlerTransient, 0.05));
    t.fault(FaultRule::probability(Fault::HandlerPanic, 0.02));
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261125);
    let mut jobs = Vec::new();
    for i in 0..50 {
        let stages = rng.random_range(1..=3);
        let tasks = rng.random_range(1..=100);
        let id = t
            .submit(
                &format!("shapes{stages}"),
                json!({"tasks": tasks, "run": format!("soak-{i}")}),
            )
            .await;
        jobs.push((id, stages, tasks));
    }
    let c = t.db().await;
    let mut completed = 0;
    for (job, stages, tasks) in &jobs {
        let status = t.wait_terminal(job, Duration::from_secs(300)).await;
        let failed_tasks: Vec<(String, Option<String>)> = c
            .query("SELECT error_class, error_details FROM app.tasks WHERE parent_job_id = $1 AND status = 'failed'", &[job])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get::<_, Option<String>>(0).unwrap_or_default(), r.get(1)))
            .collect();
        match status.as_str() {
            "completed" => {
                completed += 1;
                assert!(
                    failed_tasks.is_empty(),
                    "completed job {job} has failed tasks"
                );
                let done = t.count("SELECT count(*) FROM app.tasks WHERE parent_job_id = $1 AND status = 'completed'", job).await;
                assert_eq!(
                    done,
                    (*stages as i64) * (*tasks as i64),
                    "job {job}: every task of every stage completed once"
                );
                assert_eq!(t.count("SELECT count(*) FROM app.job_events WHERE job_id = $1 AND event_type = 'job_completed'", job).await, 1);
            }
            "failed" => {
                // A failed job failed for a reason its faults explain: a panic (permanent) or a
                // transient error that ran out of retries.
                assert!(
                    failed_tasks.iter().any(|(class, err)| {
                        let err = err.as_deref().unwrap_or("");
                        (class == "permanent" && err.contains("handler panicked"))
                            || err.contains("retries exhausted")
                    }),
                    "failed job {job} has no explaining task failure: {failed_tasks:?}\n{}",
                    t.dump(job).await
                );
                let err: Option<String> = c
                    .query_one(
                        "SELECT error_details FROM app.jobs WHERE job_id = $1",
                        &[job],
                    )
                    .await
                    .unwrap()
                    .get(0);
                assert!(
                    err.is_some_and(|e| e.contains("failed")),
                    "failed job {job} says why"
                );
            }
            other => panic!("job {job} ended {other}"),
        }
    }
    t.wait_quiet(Duration::from_secs(60)).await;
    let twice: i64 = c
        .query_one(
            "SELECT count(*) FROM (SELECT job_id, stage FROM app.job_events WHERE event_type = 'stage_advanced' GROUP BY 1, 2 HAVING count(*) > 1) x",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(twice, 0, "no stage advanced twice");
    let started_twice: i64 = c
        .query_one(
            "SELECT count(*) FROM (SELECT job_id, stage FROM app.job_events WHERE event_type = 'stage_started' GROUP BY 1, 2 HAVING count(*) > 1) x",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(started_twice, 0, "no stage created its tasks twice");
    let live: Vec<String> = c
        .query(
            "SELECT t.task_id || ' ' || t.status || ' attempt ' || t.retry_count || ' of job ' || j.status || ' stage ' || t.stage FROM app.tasks t JOIN app.jobs j ON j.job_id = t.parent_job_id WHERE t.status IN ('queued', 'processing')",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    if let Some(first) = live.first() {
        let job = first.split(' ').next().unwrap_or_default();
        let job: String = c
            .query_one(
                "SELECT parent_job_id FROM app.tasks WHERE task_id = $1",
                &[&job],
            )
            .await
            .unwrap()
            .get(0);
        panic!("tasks left live: {live:?}\n{}", t.dump(&job).await);
    }
    let outbox: i64 = c
        .query_one("SELECT count(*) FROM app.outbox", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(outbox, 0);
    eprintln!(
        "soak: {completed} of {} jobs completed, the rest failed as their faults imply",
        jobs.len()
    );
    drop(c);
    // Lock order holds: no transaction had to be aborted (and retried or redelivered) to break a
    // deadlock, even while jobs failed under concurrent completions, claims and retries.
    assert_eq!(
        t.stop_and_count_deadlocks().await,
        0,
        "deadlocks in the soak's database (see the server log)"
    );
    t.cleanup().await;
}
