//! Retention (src/retention.rs) on a generated history: 1,000 finished and unfinished jobs of
//! every status and age, with their stages, counters, tasks, archived tasks, events and message
//! failures. The right rows go, in bounded batches, and every other row stays; the dry run
//! counts exactly what the run then deletes; the run is recorded in `app.janitor_runs`; a purged
//! job submitted again is a new job; `coremachine purge --dry-run` deletes nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use coremachine::config::RetentionSettings;
use coremachine::retention;
use serde_json::json;

use crate::common::TestApp;

/// The ten kinds of job in the history, by `i % 10`: (status, completed days ago, what the
/// default policy does with it).
const KINDS: [(&str, Option<u32>, Fate); 10] = [
    ("completed", Some(40), Fate::Deleted),
    ("completed", Some(20), Fate::EventsDeleted),
    ("completed", Some(5), Fate::Kept),
    ("failed", Some(100), Fate::Deleted),
    ("failed", Some(40), Fate::Kept),
    ("cancelled", Some(95), Fate::Deleted),
    ("processing", None, Fate::Kept),
    ("completed_with_errors", Some(31), Fate::Deleted),
    ("queued", None, Fate::Kept),
    ("completed", Some(13), Fate::Kept),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Deleted,
    EventsDeleted,
    Kept,
}

const JOBS: i32 = 1_000;
const TASKS_PER_JOB: i32 = 5;
const EVENTS_PER_JOB: i32 = 20;

/// Writes the history straight into the tables (as years of running would have left it) and a
/// table `public.kinds (job_id, kind)` to check the outcome against.
async fn generate_history(c: &tokio_postgres::Client) {
    let statuses: Vec<&str> = KINDS.iter().map(|k| k.0).collect();
    let ages: Vec<Option<i32>> = KINDS.iter().map(|k| k.1.map(|d| d as i32)).collect();
    c.execute(
        "CREATE TABLE public.kinds AS
         SELECT lpad(to_hex(i), 64, '0')::varchar(64) AS job_id, i % 10 AS kind
         FROM generate_series(1, $1::int) i",
        &[&JOBS],
    )
    .await
    .unwrap();
    c.execute(
        "INSERT INTO app.jobs (job_id, job_type, status, created_at, completed_at)
         SELECT k.job_id, 'hello_world', ($1::text[])[k.kind + 1]::app.job_status,
                now() - interval '200 days',
                now() - ($2::int[])[k.kind + 1] * interval '1 day'
         FROM public.kinds k",
        &[&statuses, &ages],
    )
    .await
    .unwrap();
    let script = format!(
        "INSERT INTO app.job_stages (job_id, stage, name, task_type, task_count, shards, shards_left, status)
           SELECT job_id, 1, 'greet', 'hello', {TASKS_PER_JOB}, 1, 0, 'completed' FROM public.kinds;
         INSERT INTO app.stage_counters (job_id, stage, shard, remaining, total)
           SELECT job_id, 1, 0, 0, {TASKS_PER_JOB} FROM public.kinds;
         INSERT INTO app.tasks (task_id, parent_job_id, job_type, task_type, stage, task_seq, status)
           SELECT k.job_id || '-' || n, k.job_id, 'hello_world', 'hello', 1, n,
                  CASE WHEN j.status IN ('queued', 'processing') THEN 'queued' ELSE 'completed' END::app.task_status
           FROM public.kinds k JOIN app.jobs j USING (job_id), generate_series(1, {TASKS_PER_JOB}) n;
         INSERT INTO app.job_events (job_id, task_id, stage, attempt, event_type, event_status, checkpoint_name)
           SELECT k.job_id, k.job_id || '-' || (n % {TASKS_PER_JOB} + 1), 1, 1,
                  'task_completed', 'success', 'TASK_COMPLETED'
           FROM public.kinds k, generate_series(1, {EVENTS_PER_JOB}) n;
         INSERT INTO app.task_archive (task_id, parent_job_id, job_attempt, stage, status, task_row)
           SELECT job_id || '-a', job_id, 1, 1, 'failed', '{{}}' FROM public.kinds;
         INSERT INTO app.message_failures (function_name, job_id, reason, error_message, raw_excerpt)
           SELECT 'tasks-queue-trigger', job_id, 'unknown_task', 'generated', '{{}}' FROM public.kinds;"
    );
    c.batch_execute(&script).await.unwrap();
}

/// Rows left per kind of job: (jobs, stages, counters, tasks, archived, events, failures).
async fn rows_by_kind(c: &tokio_postgres::Client) -> BTreeMap<i32, [i64; 7]> {
    let rows = c
        .query(
            "SELECT k.kind,
               count(*) FILTER (WHERE EXISTS (SELECT 1 FROM app.jobs j WHERE j.job_id = k.job_id)),
               sum((SELECT count(*) FROM app.job_stages s WHERE s.job_id = k.job_id))::bigint,
               sum((SELECT count(*) FROM app.stage_counters s WHERE s.job_id = k.job_id))::bigint,
               sum((SELECT count(*) FROM app.tasks t WHERE t.parent_job_id = k.job_id))::bigint,
               sum((SELECT count(*) FROM app.task_archive a WHERE a.parent_job_id = k.job_id))::bigint,
               sum((SELECT count(*) FROM app.job_events e WHERE e.job_id = k.job_id))::bigint,
               sum((SELECT count(*) FROM app.message_failures m WHERE m.job_id = k.job_id))::bigint
             FROM public.kinds k GROUP BY k.kind ORDER BY k.kind",
            &[],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            let n = |i: usize| r.get::<_, i64>(i);
            (r.get(0), [n(1), n(2), n(3), n(4), n(5), n(6), n(7)])
        })
        .collect()
}

fn per_job(n: i64) -> [i64; 7] {
    [
        n,
        n,
        n,
        n * TASKS_PER_JOB as i64,
        n,
        n * EVENTS_PER_JOB as i64,
        n,
    ]
}

/// Every kind of job has exactly the rows the default policy leaves it.
async fn assert_policy_applied(c: &tokio_postgres::Client, after: &BTreeMap<i32, [i64; 7]>) {
    let per_kind = (JOBS / 10) as i64;
    for (k, (status, age, fate)) in KINDS.iter().enumerate() {
        let got = after[&(k as i32)];
        let want = match fate {
            Fate::Deleted => [0; 7],
            Fate::EventsDeleted => {
                let mut w = per_job(per_kind);
                w[5] = 0;
                w
            }
            Fate::Kept => per_job(per_kind),
        };
        assert_eq!(
            got, want,
            "{status} {age:?} days ago: (jobs, stages, counters, tasks, archived, events, failures)"
        );
    }
    let events_purged: i64 = c
        .query_one(
            "SELECT count(*) FROM app.jobs WHERE events_purged_at IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(events_purged, per_kind, "only kind 1 lost its events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_the_right_rows_of_a_generated_history_and_keeps_the_others() {
    let app = TestApp::start_opts(|o| o.emulator = false).await;
    let c = app.db().await;
    generate_history(&c).await;
    let before = rows_by_kind(&c).await;
    let per_kind = (JOBS / 10) as i64;
    for k in 0..10 {
        assert_eq!(before[&k], per_job(per_kind), "kind {k} generated");
    }
    // Small batches, so the 1,000 jobs take many statements.
    let policy = RetentionSettings {
        batch_rows: 100,
        pause: Duration::ZERO,
        ..RetentionSettings::default()
    };
    let pool = app.engine().pool();

    let preview = retention::preview(pool, &policy).await.expect("dry run");
    assert_eq!(
        before,
        rows_by_kind(&c).await,
        "the dry run deletes nothing"
    );
    let report = retention::run(pool, &policy).await.expect("retention");
    let after = rows_by_kind(&c).await;

    assert_policy_applied(&c, &after).await;

    // The report, the dry run and the janitor_runs row agree with what went.
    let deleted_jobs = |status: &[&str]| {
        KINDS
            .iter()
            .filter(|k| k.2 == Fate::Deleted && status.contains(&k.0))
            .count() as i64
            * per_kind
    };
    assert_eq!(
        report.completed_jobs,
        deleted_jobs(&["completed", "completed_with_errors"])
    );
    assert_eq!(report.failed_jobs, deleted_jobs(&["failed", "cancelled"]));
    assert_eq!(report.tasks, 4 * per_kind * TASKS_PER_JOB as i64);
    assert_eq!(report.archived_tasks, 4 * per_kind);
    assert_eq!(report.events, 5 * per_kind * EVENTS_PER_JOB as i64);
    assert_eq!(report.jobs_losing_events, per_kind);
    assert!(report.finished);
    assert_eq!(preview.completed_jobs, report.completed_jobs);
    assert_eq!(preview.failed_jobs, report.failed_jobs);
    assert_eq!(preview.tasks, report.tasks);
    assert_eq!(preview.archived_tasks, report.archived_tasks);
    assert_eq!(
        preview.events_of_deleted_jobs + preview.events_of_kept_jobs,
        report.events
    );
    assert_eq!(preview.jobs_losing_events, report.jobs_losing_events);
    // Bounded batches: no statement deleted more than 100 rows.
    let rows = report.tasks + report.archived_tasks + report.events;
    assert!(
        report.batches >= rows / 100,
        "{} batches for {rows} rows",
        report.batches
    );
    let run = c
        .query_one(
            "SELECT status, actions_taken FROM app.janitor_runs WHERE run_id = $1 AND run_type = 'retention'",
            &[&report.run_id],
        )
        .await
        .expect("the run is recorded");
    assert_eq!(run.get::<_, String>(0), "completed");
    let actions: serde_json::Value = run.get(1);
    assert_eq!(actions[0]["report"]["events"], json!(report.events));

    // A second run finds nothing: the history is already within the policy.
    let again = retention::run(pool, &policy).await.expect("retention");
    assert_eq!(again.rows(), 0, "{again:?}");
    assert_eq!(again.jobs_losing_events, 0);
    assert_eq!(rows_by_kind(&c).await, after);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_out_of_time_stops_between_batches_and_the_next_runs_finish_the_work() {
    let app = TestApp::start_opts(|o| o.emulator = false).await;
    let c = app.db().await;
    generate_history(&c).await;
    let policy = RetentionSettings {
        batch_rows: 100,
        pause: Duration::ZERO,
        max_run: Duration::ZERO, // every run stops after its first batch of jobs
        ..RetentionSettings::default()
    };
    let pool = app.engine().pool();
    let first = retention::run(pool, &policy).await.expect("retention");
    assert!(!first.finished, "{first:?}");
    assert!(first.rows() > 0, "{first:?}");
    let mut runs = 1;
    loop {
        let r = retention::run(pool, &policy).await.expect("retention");
        runs += 1;
        if r.finished {
            break;
        }
        assert!(runs < 1_000, "retention makes progress run after run");
    }
    assert!(runs > 2, "the work took several runs: {runs}");
    assert_policy_applied(&c, &rows_by_kind(&c).await).await;
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purged_job_submitted_again_is_a_new_job() {
    let app = TestApp::start().await;
    let params = json!({"n": 2, "message": "kept for a month"});
    let job = app.submit("hello_world", params.clone()).await;
    assert_eq!(
        app.wait_terminal(&job, Duration::from_secs(30)).await,
        "completed"
    );
    // Idempotent while the job exists.
    let (s, b) = app.post("/api/jobs/submit/hello_world", &params).await;
    assert_eq!((s, b["job_id"].as_str()), (200, Some(job.as_str())), "{b}");
    let c = app.db().await;
    c.execute(
        "UPDATE app.jobs SET completed_at = now() - interval '31 days' WHERE job_id = $1",
        &[&job],
    )
    .await
    .unwrap();
    // The janitor applies the policy as one action of its run.
    let r = coremachine::janitor::run_once(app.engine())
        .await
        .expect("janitor");
    let action = r
        .actions
        .iter()
        .find(|a| a["action"] == "retention")
        .unwrap_or_else(|| panic!("{:?}", r.actions));
    assert_eq!(action["report"]["completed_jobs"], 1, "{action}");
    let (s, _) = app.get(&format!("/api/jobs/status/{job}")).await;
    assert_eq!(s, 404, "the job is gone");
    assert_eq!(
        app.count(
            "SELECT count(*) FROM app.job_events WHERE job_id = $1",
            &job
        )
        .await,
        0
    );

    // The same submit now makes a new job, with the same content-addressed id, that runs again.
    let (s, b) = app.post("/api/jobs/submit/hello_world", &params).await;
    assert_eq!(s, 201, "a new job: {b}");
    assert_eq!(b["job_id"], json!(job));
    assert_eq!(
        app.wait_terminal(&job, Duration::from_secs(30)).await,
        "completed"
    );
    let fresh: bool = c
        .query_one(
            "SELECT completed_at > now() - interval '1 hour' FROM app.jobs WHERE job_id = $1",
            &[&job],
        )
        .await
        .unwrap()
        .get(0);
    assert!(fresh);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_dry_run_shows_what_would_go_and_deletes_nothing() {
    let app = TestApp::start_opts(|o| o.emulator = false).await;
    let c = app.db().await;
    generate_history(&c).await;
    let before = rows_by_kind(&c).await;
    let purge = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_coremachine"))
            .arg("purge")
            .args(args)
            .env("DATABASE_URL", &app.db_url)
            .env("RETENTION_FAILED_DAYS", "0")
            .env("RUST_LOG", "off") // log lines go to stdout too
            .env_remove("ServiceBusConnection")
            .env_remove("ServiceBusConnection__fullyQualifiedNamespace")
            .output()
            .expect("the binary runs")
    };
    let out = purge(&["--dry-run"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["dry_run"], true);
    assert_eq!(
        v["policy"]["failed_days"],
        json!(null),
        "0 keeps failed jobs forever"
    );
    let per_kind = (JOBS / 10) as i64;
    let w = &v["would_delete"];
    assert_eq!(w["completed_jobs"], json!(2 * per_kind), "{v}");
    assert_eq!(w["failed_jobs"], json!(0), "{v}");
    assert_eq!(
        w["tasks"],
        json!(2 * per_kind * TASKS_PER_JOB as i64),
        "{v}"
    );
    assert_eq!(w["jobs_losing_events"], json!(per_kind), "{v}");
    assert_eq!(rows_by_kind(&c).await, before, "nothing was deleted");

    let out = purge(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["deleted"]["completed_jobs"], json!(2 * per_kind), "{v}");
    assert_eq!(v["deleted"]["failed_jobs"], json!(0), "{v}");
    let after = rows_by_kind(&c).await;
    assert_eq!(
        after[&3], before[&3],
        "failed jobs are kept with RETENTION_FAILED_DAYS=0"
    );
    assert_eq!(after[&0], [0; 7]);
    app.cleanup().await;
}
