//! Cancel and resubmit through the HTTP routes.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use coremachine::jobs::{
    FinalizeInput, Job, JobError, ParamKind, ParamSpec, StageDef, StageInput, TaskError, TaskSpec,
};
use serde_json::{Value, json};

use crate::common::{TestApp, jobs::test_registry};

/// A two-stage job whose stage-2 tasks fail permanently while their `run` label is in `BROKEN`
/// (the outside input is bad), and succeed once it is removed (the input was fixed). With a label
/// starting `odd`, only the odd-numbered stage-2 tasks fail.
struct Fixable;

static BROKEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);

fn broken(run: &str) -> bool {
    BROKEN
        .lock()
        .unwrap()
        .as_ref()
        .is_some_and(|s| s.contains(run))
}

/// Even stage-2 tasks of an `odd` run that have finished their handler, per run label. The odd
/// tasks of a broken run fail only after both even ones finished, so the job stops with tasks 0
/// and 2 completed rather than cancelled by the failure (on a loaded machine an odd task could
/// otherwise fail before an even one was even claimed).
static EVENS_DONE: Mutex<Option<std::collections::HashMap<String, usize>>> = Mutex::new(None);

fn evens_done(run: &str) -> usize {
    EVENS_DONE
        .lock()
        .unwrap()
        .as_ref()
        .and_then(|m| m.get(run).copied())
        .unwrap_or(0)
}

fn set_broken(run: &str, on: bool) {
    let mut g = BROKEN.lock().unwrap();
    let s = g.get_or_insert_with(HashSet::new);
    if on {
        s.insert(run.to_string());
    } else {
        s.remove(run);
    }
}

impl Job for Fixable {
    fn job_type(&self) -> &'static str {
        "fixable"
    }
    fn description(&self) -> &'static str {
        "test job: stage 2 fails while its input is broken"
    }
    fn parameters(&self) -> Vec<ParamSpec> {
        vec![ParamSpec::new("run", ParamKind::String, "").required()]
    }
    fn stages(&self) -> Vec<StageDef> {
        vec![
            StageDef::new("prepare", "fixable_task"),
            StageDef::new("load", "fixable_task"),
        ]
    }
    fn create_tasks(&self, input: &StageInput<'_>) -> Result<Vec<TaskSpec>, JobError> {
        let run = input.params["run"].clone();
        Ok((0..4)
            .map(|i| {
                TaskSpec::new(
                    i.to_string(),
                    json!({"run": run, "stage": input.stage, "i": i}),
                )
            })
            .collect())
    }
    fn finalize(&self, input: &FinalizeInput<'_>) -> Result<Value, JobError> {
        Ok(json!({"stages": input.stages}))
    }
}

async fn app_with_fixable() -> TestApp {
    TestApp::start_opts(|o| {
        let mut r = test_registry();
        r.add_job(Fixable);
        r.add_handler("fixable_task", |ctx| async move {
            let run = ctx.parameters["run"].as_str().unwrap_or("").to_string();
            let odd_only = run.starts_with("odd");
            let odd_task = ctx.parameters["i"] == 1 || ctx.parameters["i"] == 3;
            if ctx.stage == 2 && broken(&run) && (!odd_only || odd_task) {
                if odd_only {
                    // Bounded wait for the even tasks, then time for their completions to commit.
                    for _ in 0..300 {
                        if evens_done(&run) >= 2 {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    tokio::time::sleep(Duration::from_millis(1000)).await;
                }
                return Err(TaskError::permanent(
                    "BadInput",
                    "the input file is corrupt",
                ));
            }
            if ctx.stage == 2 && odd_only && !odd_task {
                *EVENS_DONE
                    .lock()
                    .unwrap()
                    .get_or_insert_with(Default::default)
                    .entry(run.clone())
                    .or_default() += 1;
            }
            Ok(json!({"i": ctx.parameters["i"], "attempt_seen": ctx.attempt}))
        });
        o.registry = r;
    })
    .await
}

#[tokio::test]
async fn cancel_during_stage_one_of_a_200_task_job_never_creates_a_stage_two_task() {
    let t = TestApp::start().await;
    let id = t
        .submit(
            "shapes2",
            json!({"tasks": 200, "sleep_ms": 40, "run": "cancel200"}),
        )
        .await;
    // Wait until stage 1 is running with some tasks done and many still queued.
    let db = t.db().await;
    for _ in 0..400 {
        let done: i64 = db
            .query_one(
                "SELECT count(*) FROM app.tasks WHERE parent_job_id = $1 AND status = 'completed'",
                &[&id],
            )
            .await
            .unwrap()
            .get(0);
        if done >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (s, b) = t.post(&format!("/api/jobs/{id}/cancel"), &json!({})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["status"], "cancelled");
    assert_eq!(b["previous_status"], "processing");
    assert!(b["cancelled_tasks"].as_u64().unwrap() > 0, "{b}");

    assert_eq!(
        t.wait_terminal(&id, Duration::from_secs(30)).await,
        "cancelled"
    );
    t.wait_quiet(Duration::from_secs(60)).await;
    // In-flight tasks finished and were recorded; nothing advanced.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stage2 = t
        .count(
            "SELECT count(*) FROM app.tasks WHERE parent_job_id = $1 AND stage = 2",
            &id,
        )
        .await;
    assert_eq!(stage2, 0, "{}", t.dump(&id).await);
    let live = t
        .count("SELECT count(*) FROM app.tasks WHERE parent_job_id = $1 AND status IN ('queued', 'processing')", &id)
        .await;
    assert_eq!(live, 0);
    let total = t
        .count(
            "SELECT count(*) FROM app.tasks WHERE parent_job_id = $1",
            &id,
        )
        .await;
    assert_eq!(total, 200);
    let (s, job) = t.get(&format!("/api/jobs/{id}")).await;
    assert_eq!(s, 200);
    assert_eq!(job["status"], "cancelled");
    assert_eq!(job["stages"][1]["status"], "pending");
    assert_eq!(job["stages"][0]["status"], "cancelled");
    let events = t.event_types(&id).await;
    assert!(events.contains(&"job_cancelled".to_string()));
    assert!(
        !events.contains(&"stage_advanced".to_string()),
        "{events:?}"
    );

    // A second cancel is a conflict with the envelope; resubmit of a finished job too.
    let (s, b) = t.post(&format!("/api/jobs/{id}/cancel"), &json!({})).await;
    assert_eq!(s, 409, "{b}");
    assert_eq!(b["error"], "conflict");
    assert_eq!(b["details"][0]["field"], "status");
    assert_eq!(b["details"][0]["value"], "cancelled");
    t.cleanup().await;
}

#[tokio::test]
async fn resubmit_after_a_permanent_failure_then_fixed_input_completes_and_keeps_the_first_attempts_events()
 {
    let t = app_with_fixable().await;
    set_broken("r1", true);
    let id = t.submit("fixable", json!({"run": "r1"})).await;
    assert_eq!(
        t.wait_terminal(&id, Duration::from_secs(30)).await,
        "failed"
    );
    let first_events = t.event_types(&id).await;
    assert!(first_events.contains(&"job_failed".to_string()));

    // Resubmitting a job that is not failed/cancelled is refused; so is a bad `from`.
    let (s, b) = t
        .post(&format!("/api/jobs/{id}/resubmit?from=middle"), &json!({}))
        .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["details"][0]["field"], "query.from");

    set_broken("r1", false);
    let (s, b) = t
        .post(&format!("/api/jobs/{id}/resubmit"), &json!({}))
        .await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["attempt"], 2);
    assert_eq!(b["from_stage"], 2);
    assert_eq!(b["kept_stages"], json!([1]));
    assert_eq!(b["previous_status"], "failed");
    assert!(b["previous_error"].as_str().unwrap().contains("corrupt"));
    assert_eq!(
        t.wait_terminal(&id, Duration::from_secs(30)).await,
        "completed"
    );

    // Stage 1 ran once (attempt 1 kept), stage 2 ran again as attempt 2.
    let db = t.db().await;
    let rows = db
        .query(
            "SELECT stage, job_attempt, status::text, count(*) FROM app.tasks WHERE parent_job_id = $1 GROUP BY 1, 2, 3 ORDER BY 1",
            &[&id],
        )
        .await
        .unwrap();
    let got: Vec<(i32, i32, String, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        got,
        vec![(1, 1, "completed".into(), 4), (2, 2, "completed".into(), 4)]
    );
    let archived: i64 = db
        .query_one(
            "SELECT count(*) FROM app.task_archive WHERE parent_job_id = $1 AND job_attempt = 1 AND stage = 2",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(archived, 4);
    // The first attempt's events are all still there, in order, before the new ones.
    let all = t.event_types(&id).await;
    assert_eq!(&all[..first_events.len()], &first_events[..]);
    assert!(all.contains(&"job_resubmitted".to_string()));
    assert_eq!(all.last().unwrap(), "job_completed");

    let (s, job) = t.get(&format!("/api/jobs/{id}")).await;
    assert_eq!(s, 200);
    assert_eq!(job["attempt"], 2);
    assert_eq!(job["previous_attempts"][0]["status"], "failed");
    assert_eq!(job["previous_attempts"][0]["attempt"], 1);

    // Completed: neither cancel nor resubmit applies.
    let (s, _) = t
        .post(&format!("/api/jobs/{id}/resubmit"), &json!({}))
        .await;
    assert_eq!(s, 409);
    let (s, _) = t.post(&format!("/api/jobs/{id}/cancel"), &json!({})).await;
    assert_eq!(s, 409);
    t.cleanup().await;
}

#[tokio::test]
async fn retrying_only_the_failed_tasks_reruns_them_keeps_the_completed_ones_and_completes_the_job()
{
    let t = app_with_fixable().await;
    set_broken("odd-r", true);
    let id = t.submit("fixable", json!({"run": "odd-r"})).await;
    assert_eq!(
        t.wait_terminal(&id, Duration::from_secs(30)).await,
        "failed"
    );
    t.wait_quiet(Duration::from_secs(30)).await;
    let db = t.db().await;
    let results_before: Vec<(String, Value)> = db
        .query(
            "SELECT task_id, result_data FROM app.tasks WHERE parent_job_id = $1 AND stage = 2 AND status = 'completed' ORDER BY task_seq",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(results_before.len(), 2, "tasks 0 and 2 completed");

    set_broken("odd-r", false);
    let (s, b) = t
        .post(
            &format!("/api/jobs/{id}/resubmit?from=failed_tasks"),
            &json!({}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["mode"], "failed_tasks");
    assert_eq!(b["attempt"], 2);
    assert_eq!(b["from_stage"], 2);
    assert_eq!(b["retried_tasks"], 2);
    assert_eq!(b["kept_tasks"], 2);
    assert_eq!(
        t.wait_terminal(&id, Duration::from_secs(30)).await,
        "completed",
        "{}",
        t.dump(&id).await
    );

    // Only tasks 1 and 3 ran again (as attempt 2); 0 and 2 kept their attempt-1 rows and results.
    let rows: Vec<(i32, i32, String)> = db
        .query(
            "SELECT task_seq, job_attempt, status::text FROM app.tasks WHERE parent_job_id = $1 AND stage = 2 ORDER BY task_seq",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let done = "completed".to_string();
    assert_eq!(
        rows,
        vec![
            (0, 1, done.clone()),
            (1, 2, done.clone()),
            (2, 1, done.clone()),
            (3, 2, done)
        ]
    );
    let results_after: Vec<(String, Value)> = db
        .query(
            "SELECT task_id, result_data FROM app.tasks WHERE parent_job_id = $1 AND stage = 2 AND job_attempt = 1 ORDER BY task_seq",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(results_after, results_before, "kept results are untouched");
    let runs: Vec<(i32, i64)> = db
        .query(
            "SELECT t.task_seq, count(*) FROM app.job_events e JOIN app.tasks t ON t.task_id = e.task_id \
             WHERE e.job_id = $1 AND e.stage = 2 AND e.event_type = 'task_started' GROUP BY 1 ORDER BY 1",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        runs,
        vec![(0, 1), (1, 2), (2, 1), (3, 2)],
        "each failed task ran once more"
    );
    let archived: Vec<(i32, String)> = db
        .query(
            "SELECT job_attempt, status FROM app.task_archive WHERE parent_job_id = $1 ORDER BY task_id",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(archived, vec![(1, "failed".into()), (1, "failed".into())]);
    // Stage 1 ran once; the job's result has all four stage-2 results.
    assert_eq!(
        t.count(
            "SELECT count(*) FROM app.job_events WHERE job_id = $1 AND stage = 1 AND event_type = 'task_started'",
            &id
        )
        .await,
        4
    );
    let (_, job) = t.get(&format!("/api/jobs/{id}")).await;
    assert_eq!(job["attempt"], 2);
    assert_eq!(job["previous_attempts"][0]["status"], "failed");
    assert_eq!(job["result_data"]["stages"][1]["completed"], 4, "{job}");

    // A completed job has nothing to retry.
    let (s, b) = t
        .post(
            &format!("/api/jobs/{id}/resubmit?from=failed_tasks"),
            &json!({}),
        )
        .await;
    assert_eq!(s, 409, "{b}");
    t.cleanup().await;
}

#[tokio::test]
async fn resubmit_from_start_reruns_every_stage_of_a_cancelled_job() {
    let t = TestApp::start().await;
    let id = t
        .submit(
            "shapes2",
            json!({"tasks": 3, "sleep_ms": 3000, "run": "fromstart"}),
        )
        .await;
    let (s, b) = t
        .post(&format!("/api/jobs/{id}/cancel?reason=testing"), &json!({}))
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = t
        .post(&format!("/api/jobs/{id}/resubmit?from=start"), &json!({}))
        .await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["from_stage"], 1);
    assert_eq!(b["kept_stages"], json!([]));
    // The new attempt runs with sleeping tasks; cancel it again, then check the state is clean.
    let (s, b) = t.post(&format!("/api/jobs/{id}/cancel"), &json!({})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["attempt"], 2);
    t.cleanup().await;
}

#[tokio::test]
async fn cancel_and_resubmit_answer_404_and_400_with_the_envelope() {
    let t = TestApp::start().await;
    let missing = "0".repeat(64);
    for path in [
        format!("/api/jobs/{missing}/cancel"),
        format!("/api/jobs/{missing}/resubmit"),
    ] {
        let (s, b) = t.post(&path, &json!({})).await;
        assert_eq!(s, 404, "{path}: {b}");
        assert_eq!(b["error"], "not_found");
        assert!(b["request_id"].is_string() && b["timestamp"].is_string());
        let (s, b) = t.post(&path.replace(&missing, "nothex"), &json!({})).await;
        assert_eq!(s, 400, "{b}");
        assert_eq!(b["error"], "invalid_job_id");
        assert_eq!(b["details"][0]["field"], "path.job_id");
        assert_eq!(b["details"][0]["value"], "nothex");
    }
    t.cleanup().await;
}

#[tokio::test]
async fn every_sql_statement_prepares_against_the_migrated_schema() {
    let t = TestApp::start().await;
    let db = t.db().await;
    for (name, text) in coremachine::store::sql::ALL {
        db.prepare(text)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
    t.cleanup().await;
}

#[tokio::test]
async fn late_messages_of_a_replaced_attempt_are_acknowledged_without_a_failure_record() {
    let t = TestApp::start().await;
    let id = t
        .submit(
            "shapes2",
            json!({"tasks": 24, "sleep_ms": 200, "run": "late"}),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, b) = t.post(&format!("/api/jobs/{id}/cancel"), &json!({})).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = t
        .post(&format!("/api/jobs/{id}/resubmit?from=start"), &json!({}))
        .await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(
        t.wait_terminal(&id, Duration::from_secs(60)).await,
        "completed"
    );
    t.wait_quiet(Duration::from_secs(60)).await;
    let failures = t
        .count(
            "SELECT count(*) FROM app.message_failures WHERE job_id = $1 OR $1 = ''",
            &id,
        )
        .await;
    assert_eq!(failures, 0, "{}", t.dump(&id).await);
    let attempt2 = t
        .count("SELECT count(*) FROM app.tasks WHERE parent_job_id = $1 AND job_attempt = 2 AND status = 'completed'", &id)
        .await;
    assert_eq!(attempt2, 48);
    // A 1 MB body on a route that takes none is still refused, before anything happens.
    let (s, b) = t
        .post_raw(
            &format!("/api/jobs/{id}/cancel"),
            vec![b' '; 1 << 20],
            "application/json",
        )
        .await;
    assert_eq!(s, 413, "{b}");
    t.cleanup().await;
}

#[tokio::test]
async fn cancels_racing_stage_advances_leave_no_live_work_and_no_stage_after_the_cancel() {
    let t = TestApp::start().await;
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(
            t.submit(
                "shapes3",
                json!({"tasks": 6, "sleep_ms": 5 + i, "run": format!("race{i}")}),
            )
            .await,
        );
    }
    let mut set = tokio::task::JoinSet::new();
    for (i, id) in ids.iter().enumerate() {
        let (http, base, id) = (t.http.clone(), t.base.clone(), id.clone());
        set.spawn(async move {
            tokio::time::sleep(Duration::from_millis(15 * i as u64)).await;
            let r = http
                .post(format!("{base}/api/jobs/{id}/cancel"))
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        });
    }
    while let Some(code) = set.join_next().await {
        let code = code.unwrap();
        assert!(code == 200 || code == 409, "cancel answered {code}");
    }
    for id in &ids {
        t.wait_terminal(id, Duration::from_secs(60)).await;
    }
    t.wait_quiet(Duration::from_secs(60)).await;
    let db = t.db().await;
    for id in &ids {
        let status: String = db
            .query_one("SELECT status::text FROM app.jobs WHERE job_id = $1", &[id])
            .await
            .unwrap()
            .get(0);
        assert!(status == "cancelled" || status == "completed", "{status}");
        let live = t
            .count("SELECT count(*) FROM app.tasks WHERE parent_job_id = $1 AND status IN ('queued', 'processing')", id)
            .await;
        assert_eq!(live, 0, "{}", t.dump(id).await);
        let running = t
            .count(
                "SELECT count(*) FROM app.job_stages WHERE job_id = $1 AND status = 'running'",
                id,
            )
            .await;
        assert_eq!(running, 0, "{}", t.dump(id).await);
        if status == "cancelled" {
            // Every stage that has tasks was started before the cancel.
            let late = t
                .count(
                    "SELECT count(*) FROM app.job_events s, app.job_events c
                     WHERE s.job_id = $1 AND c.job_id = $1 AND s.event_type = 'stage_started'
                       AND c.event_type = 'job_cancelled' AND s.event_id > c.event_id",
                    id,
                )
                .await;
            assert_eq!(
                late,
                0,
                "a stage started after the cancel: {}",
                t.dump(id).await
            );
        }
    }
    t.cleanup().await;
}
