//! [batch]: `kill -9` of the real `coremachine local` process mid-stage. After a restart on the
//! same database the job completes with every task exactly once, and what the crash costs is
//! bounded by one lock duration of the queue (the redelivered messages take their tasks over at
//! once), not by the task lease (600 s here) or the janitor's period. The figure is printed, not
//! asserted (docs/performance.md, "Crash takeover").

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::local_process::LocalProcess;
use crate::common::{drop_db, fresh_db};

const LOCK_S: u64 = 3;

async fn counts(c: &tokio_postgres::Client, job: &str) -> (i64, i64) {
    c.query_one(
        "SELECT count(*) FILTER (WHERE status = 'completed'), count(*) FILTER (WHERE status = 'processing')
         FROM app.tasks WHERE parent_job_id = $1 AND stage = 1",
        &[&job],
    )
    .await
    .map(|r| (r.get(0), r.get(1)))
    .unwrap()
}

#[tokio::test]
async fn kill_9_mid_stage_costs_one_lock_duration_and_every_task_completes_exactly_once() {
    let (db_name, url) = fresh_db().await;
    let env = [
        ("LOCAL_QUEUE_LOCK_DURATION_S", LOCK_S.to_string()),
        ("TASK_LEASE_S", "600".to_string()),
        ("RUST_LOG", "info".to_string()),
    ];
    let first = LocalProcess::start(&url, &env).await;
    let job = first
        .submit("hello_world", json!({"n": 40, "delay_ms": 300}))
        .await;
    let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    // Mid-stage: some tasks of stage 1 done, others running.
    let start = Instant::now();
    loop {
        let (done, running) = counts(&c, &job).await;
        if done >= 8 && running > 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "stage 1 never got going: {done} done, {running} running"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = first.kill9().await;
    let killed = Instant::now();
    let (done, running) = counts(&c, &job).await;
    assert!(
        running > 0,
        "tasks were left processing by the dead process"
    );
    let second = LocalProcess::start(&url, &env).await;
    let status = loop {
        let s: String = c
            .query_one(
                "SELECT status::text FROM app.jobs WHERE job_id = $1",
                &[&job],
            )
            .await
            .unwrap()
            .get(0);
        if s != "processing" && s != "queued" {
            break s;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(120),
            "job still {s} two minutes after the kill"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!(
        "kill -9 with {done} of 40 stage-1 tasks done and {running} running: job {status} {:.1} s after the kill (lock duration {LOCK_S} s, task lease 600 s)",
        killed.elapsed().as_secs_f64()
    );
    assert_eq!(status, "completed");
    let r = c
        .query_one(
            "SELECT (SELECT count(*) FROM app.tasks WHERE parent_job_id = $1 AND status = 'completed'),
                    (SELECT count(*) FROM (SELECT task_id FROM app.job_events WHERE job_id = $1 AND event_type = 'task_completed'
                                           GROUP BY task_id HAVING count(*) <> 1) x),
                    (SELECT count(*) FROM app.job_events WHERE job_id = $1 AND event_type = 'task_completed'),
                    (SELECT count(*) FROM app.tasks WHERE parent_job_id = $1 AND retry_count > 0),
                    (SELECT count(*) FROM app.job_events WHERE job_id = $1 AND event_type = 'stage_advanced')",
            &[&job],
        )
        .await
        .unwrap();
    let (completed, not_once, completions, retried, advances): (i64, i64, i64, i64, i64) =
        (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
    assert_eq!(completed, 80, "both stages' tasks completed");
    assert_eq!(completions, 80, "one completion event per task");
    assert_eq!(not_once, 0, "no task completed twice");
    assert_eq!(
        retried, 0,
        "the interrupted attempts were taken over, not retried"
    );
    assert_eq!(advances, 1, "stage 1 ended exactly once");
    second.stop().await;
    drop(c);
    drop_db(&db_name).await;
}
