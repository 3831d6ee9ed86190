//! The 100k-task stage: only with `BENCH_SLOW=1` (`BENCH_SLOW=1 ./scripts/test.sh`), so the
//! default suite stays fast. Not timed: it checks that a stage of 100,000 tasks, and the next
//! stage built from its 100,000 results, complete with exactly the right counts.

use std::time::Duration;

use serde_json::json;

use crate::common::TestApp;

#[tokio::test]
async fn a_hundred_thousand_task_stage_and_its_successor_complete_with_the_right_counts() {
    if std::env::var("BENCH_SLOW").as_deref() != Ok("1") {
        eprintln!("skipped: set BENCH_SLOW=1 to run the 100k-task stage");
        return;
    }
    let n: i64 = 100_000;
    let t = TestApp::start_opts(|o| o.max_concurrent_calls = Some(8)).await;
    let job = t
        .submit("noop_fanout", json!({"n": n, "run": "bench-slow"}))
        .await;
    let status = t.wait_terminal(&job, Duration::from_secs(3600)).await;
    assert_eq!(status, "completed", "{}", t.dump(&job).await);
    let c = t.db().await;
    for stage in [1, 2] {
        let (tasks, completed, count): (i64, i64, i32) = c
            .query_one(
                "SELECT (SELECT count(*) FROM app.tasks WHERE parent_job_id = $1 AND stage = $2),
                        (SELECT count(*) FROM app.tasks WHERE parent_job_id = $1 AND stage = $2 AND status = 'completed'),
                        (SELECT task_count FROM app.job_stages WHERE job_id = $1 AND stage = $2)",
                &[&job, &stage],
            )
            .await
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .unwrap();
        assert_eq!((tasks, completed, count as i64), (n, n, n), "stage {stage}");
    }
    let completions = t
        .count(
            "SELECT count(*) FROM app.job_events WHERE job_id = $1 AND event_type = 'task_completed'",
            &job,
        )
        .await;
    assert_eq!(completions, 2 * n, "one completion event per task");
    let advances = t
        .count(
            "SELECT count(*) FROM app.job_events WHERE job_id = $1 AND event_type = 'stage_advanced'",
            &job,
        )
        .await;
    assert_eq!(advances, 1, "stage 1 advanced exactly once");
    let remaining = t
        .count(
            "SELECT COALESCE(sum(remaining), -1) FROM app.stage_counters WHERE job_id = $1",
            &job,
        )
        .await;
    assert_eq!(remaining, 0, "every counter shard reached zero");
    t.wait_quiet(Duration::from_secs(120)).await;
    t.cleanup().await;
}
