//! The web page in a real browser: headless Chromium (Debian's `chromium`, driven by
//! playwright-core from npm through `tests/browser/page_test.mjs`) opens the job list and the page
//! of a job with a failed task, checks the stages, the failing task and the marked last successful
//! step, and saves screenshots under `test-artifacts/`.
//!
//! `scripts/lib/browser.sh` installs the browser and playwright-core (`./scripts/test.sh` sources
//! it). The test skips only when `COREMACHINE_SKIP_BROWSER=1`; a missing tool is a failure.

use std::path::PathBuf;
use std::time::Duration;

use coremachine::config::{HttpSettings, Secret};
use coremachine::testing::{Fault, FaultRule};
use serde_json::json;

use crate::common::TestApp;

const T: Duration = Duration::from_secs(60);

fn chromium() -> PathBuf {
    let p = std::env::var("COREMACHINE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    PathBuf::from(p)
}

/// The browser and playwright-core are there (`false`: skipped by COREMACHINE_SKIP_BROWSER=1).
fn browser_ready() -> bool {
    if std::env::var("COREMACHINE_SKIP_BROWSER").as_deref() == Ok("1") {
        eprintln!("SKIPPED: browser test disabled by COREMACHINE_SKIP_BROWSER=1");
        return false;
    }
    assert!(
        chromium().is_file(),
        "{} not found: install it with `source scripts/lib/browser.sh && ensure_browser_test_tools` \
         (or run ./scripts/test.sh); set COREMACHINE_SKIP_BROWSER=1 to skip this test",
        chromium().display()
    );
    assert!(
        browser_dir().join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed under tests/browser: run \
         `source scripts/lib/browser.sh && ensure_browser_test_tools` (or ./scripts/test.sh)"
    );
    true
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn browser_dir() -> PathBuf {
    root().join("tests/browser")
}

fn artifacts() -> PathBuf {
    root().join("test-artifacts")
}

/// Runs `tests/browser/<script>` with `args` and asserts it passed (its output and the job's
/// story in the message otherwise).
async fn run_script(t: &TestApp, script: &str, args: &[&str], job: &str) {
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new("node")
            .arg(browser_dir().join(script))
            .args(args)
            .env("COREMACHINE_CHROMIUM", chromium())
            .current_dir(browser_dir())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the browser test finishes within 2 minutes")
    .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser checks of {script} failed ({})\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- job\n{}",
        out.status,
        t.dump(job).await
    );
    assert!(stdout.contains("browser test passed"), "{stdout}");
}

/// The screenshot exists and is a real PNG.
fn assert_screenshot(name: &str) {
    let bytes = std::fs::read(artifacts().join(name)).expect("screenshot saved");
    assert!(
        bytes.len() > 10_000 && bytes.starts_with(b"\x89PNG"),
        "{name} is a real PNG"
    );
}

#[tokio::test]
async fn the_job_page_of_a_failed_job_shows_its_stages_failing_task_and_last_successful_step() {
    if !browser_ready() {
        return;
    }
    let t = TestApp::start().await;
    let ok = t.submit("hello_world", json!({"n": 3})).await;
    assert_eq!(t.wait_terminal(&ok, T).await, "completed");
    t.fault(
        FaultRule::always(Fault::HandlerPermanent)
            .on_stage(2)
            .on_index(0),
    );
    let failed = t
        .submit("hello_world", json!({"n": 3, "message": "Hello browser"}))
        .await;
    assert_eq!(t.wait_terminal(&failed, T).await, "failed");
    t.wait_quiet(T).await;

    let _ = std::fs::remove_file(artifacts().join("ui-job-failed.png"));
    let dir = artifacts();
    run_script(
        &t,
        "page_test.mjs",
        &[&t.base, &failed, &ok, dir.to_str().unwrap()],
        &failed,
    )
    .await;
    for shot in ["ui-job-list.png", "ui-job-failed.png"] {
        assert_screenshot(shot);
    }
    t.cleanup().await;
}

#[tokio::test]
async fn with_keys_enforced_the_page_loads_without_a_key_asks_for_it_once_and_shows_a_job() {
    if !browser_ready() {
        return;
    }
    const KEY: &str = "browser-function-key-1";
    let t = TestApp::start_opts(|o| {
        o.settings.http = HttpSettings {
            function_keys: vec![Secret::new(KEY)],
            admin_key: Some(Secret::new("browser-master-key-1")),
            admin_enabled: false,
        }
    })
    .await;
    let r = t
        .http
        .post(format!("{}/api/jobs/submit/hello_world", t.base))
        .header("x-functions-key", KEY)
        .json(&json!({"n": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let job = r.json::<serde_json::Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(t.wait_terminal(&job, T).await, "completed");
    let dir = artifacts();
    run_script(
        &t,
        "keys_test.mjs",
        &[&t.base, &job, KEY, dir.to_str().unwrap()],
        &job,
    )
    .await;
    assert_screenshot("ui-key-form.png");
    t.cleanup().await;
}

#[tokio::test]
async fn the_operator_retries_failed_tasks_cancels_and_bulk_resubmits_from_the_page() {
    if !browser_ready() {
        return;
    }
    let t = TestApp::start().await;
    // Stage 2's first task fails once, permanently: the job fails; its retry succeeds.
    t.fault(
        FaultRule::times(Fault::HandlerPermanent, 1)
            .on_stage(2)
            .on_index(0),
    );
    let failed = t
        .submit("hello_world", json!({"n": 3, "message": "retry me"}))
        .await;
    assert_eq!(t.wait_terminal(&failed, T).await, "failed");
    let dir = artifacts();
    let dir = dir.to_str().unwrap();
    run_script(
        &t,
        "actions_test.mjs",
        &["retry", &t.base, dir, &failed],
        &failed,
    )
    .await;
    let running: Vec<String> = {
        let mut ids = Vec::new();
        for run in ["a", "b", "c"] {
            let p = json!({"tasks": 300, "sleep_ms": 1000, "run": format!("browser-{run}")});
            ids.push(t.submit("shapes2", p).await);
        }
        ids
    };
    run_script(
        &t,
        "actions_test.mjs",
        &[
            "cancel",
            &t.base,
            dir,
            &running[0],
            &running[1],
            &running[2],
        ],
        &running[0],
    )
    .await;

    // Only the failed task ran again; the others of its stage ran once.
    let db = t.db().await;
    let runs: Vec<(i32, i64)> = db
        .query(
            "SELECT t.task_seq, count(*) FROM app.job_events e JOIN app.tasks t ON t.task_id = e.task_id \
             WHERE e.job_id = $1 AND e.stage = 2 AND e.event_type = 'task_started' GROUP BY 1 ORDER BY 1",
            &[&failed],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(runs, vec![(0, 2), (1, 1), (2, 1)]);
    assert_eq!(t.wait_terminal(&failed, T).await, "completed");
    // The single cancel recorded the operator's reason.
    let reason: String = db
        .query_one(
            "SELECT event_data->>'reason' FROM app.job_events WHERE job_id = $1 AND event_type = 'job_cancelled'",
            &[&running[2]],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(reason, "browser says stop");
    // The two bulk-handled jobs were cancelled, then resubmitted as attempt 2.
    for id in &running[..2] {
        let (status, attempt, cancels): (String, i32, i64) = {
            let r = db
                .query_one(
                    "SELECT status::text, attempt, (SELECT count(*) FROM app.job_events e WHERE e.job_id = j.job_id \
                     AND e.event_type = 'job_cancelled' AND e.event_data->>'reason' = 'bulk from the browser') \
                     FROM app.jobs j WHERE job_id = $1",
                    &[id],
                )
                .await
                .unwrap();
            (r.get(0), r.get(1), r.get(2))
        };
        assert_eq!((attempt, cancels), (2, 1), "{id} is {status}");
        assert!(
            ["queued", "processing"].contains(&status.as_str()),
            "{status}"
        );
        let (s, b) = t.post(&format!("/api/jobs/{id}/cancel"), &json!({})).await;
        assert_eq!(s, 200, "{b}");
    }
    assert_screenshot("ui-job-actions.png");
    t.cleanup().await;
}

#[tokio::test]
async fn the_page_of_a_2x1000_task_job_at_stage_2_pages_its_tasks_and_fits_a_phone() {
    if !browser_ready() {
        return;
    }
    let (t, job) = crate::ui_views::job_running_at_stage_two().await;
    let dir = artifacts();
    run_script(
        &t,
        "scale_test.mjs",
        &[&t.base, &job, dir.to_str().unwrap()],
        &job,
    )
    .await;
    for shot in [
        "ui-job-scale-1400.png",
        "ui-job-scale-390.png",
        "ui-job-list-390.png",
    ] {
        assert_screenshot(shot);
    }
    t.cleanup().await;
}

#[tokio::test]
async fn a_resubmitted_jobs_page_shows_the_current_attempts_failure_and_lists_the_earlier_attempt()
{
    if !browser_ready() {
        return;
    }
    let t = TestApp::start().await;
    t.fault(
        FaultRule::times(Fault::HandlerPermanent, 2)
            .on_stage(2)
            .on_index(0),
    );
    let job = t
        .submit("hello_world", json!({"n": 3, "message": "twice"}))
        .await;
    assert_eq!(t.wait_terminal(&job, T).await, "failed");
    // The failed job's sibling tasks may still be running: a retry of the failed tasks waits
    // for them (it answers 409 while a task of the job is live).
    t.wait_quiet(T).await;
    let (s, b) = t
        .post(
            &format!("/api/jobs/{job}/resubmit?from=failed_tasks"),
            &json!({}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(t.wait_terminal(&job, T).await, "failed");
    t.wait_quiet(T).await;
    let (_, summary) = t.get(&format!("/api/jobs/{job}/events/summary")).await;
    assert_eq!(summary["current_attempt"], 2);
    assert_eq!(summary["first_failure"]["job_attempt"], 2, "{summary}");
    assert_eq!(summary["earlier_attempts"][0]["attempt"], 1);
    assert_eq!(summary["earlier_attempts"][0]["status"], "failed");
    let dir = artifacts();
    run_script(
        &t,
        "actions_test.mjs",
        &["attempts", &t.base, dir.to_str().unwrap(), &job],
        &job,
    )
    .await;
    assert_screenshot("ui-job-attempts.png");
    t.cleanup().await;
}

#[tokio::test]
async fn a_platform_requests_page_shows_the_request_and_links_to_its_job() {
    if !browser_ready() {
        return;
    }
    let c = crate::blob_job::client();
    let output = crate::blob_job::container_name("plat-ui-out");
    let (t, body) = crate::platform_api::dem_request(&c, "plat-ui", &output).await;
    let (s, r) = t.post("/api/platform/submit", &body).await;
    assert_eq!(s, 202, "{r}");
    let job = r["job_id"].as_str().unwrap().to_string();
    assert_eq!(
        t.wait_terminal(&job, Duration::from_secs(300)).await,
        "completed"
    );
    let dir = artifacts();
    run_script(
        &t,
        "platform_test.mjs",
        &[
            &t.base,
            r["request_id"].as_str().unwrap(),
            &job,
            r["outputs"]["table_name"].as_str().unwrap(),
            dir.to_str().unwrap(),
        ],
        &job,
    )
    .await;
    assert_screenshot("ui-platform-request.png");
    t.cleanup().await;
}

#[tokio::test]
async fn a_raster_collection_jobs_page_shows_its_input_outcomes_a_page_at_a_time() {
    if !browser_ready() {
        return;
    }
    let missing = ["grid/gone-a.tif", "grid/gone-b.tif", "grid/gone-c.tif"];
    let (t, job) = crate::collection_job::finished_collection(52, &missing).await;
    let _ = std::fs::remove_file(artifacts().join("ui-job-collection.png"));
    let dir = artifacts();
    let mut args = vec![t.base.as_str(), job.as_str(), dir.to_str().unwrap()];
    args.extend(missing);
    run_script(&t, "inputs_test.mjs", &args, &job).await;
    assert_screenshot("ui-job-collection.png");
    t.cleanup().await;
}

#[tokio::test]
async fn a_jobs_page_shows_its_parameters_and_result_and_a_tasks_detail_with_every_attempt() {
    if !browser_ready() {
        return;
    }
    let t = TestApp::start().await;
    // Stage 1's first task fails transiently once (retried); a second job fails at stage 2.
    t.fault(
        FaultRule::times(Fault::HandlerTransient, 1)
            .on_stage(1)
            .on_index(0),
    );
    let ok = t
        .submit("hello_world", json!({"n": 2, "message": "detail page"}))
        .await;
    assert_eq!(t.wait_terminal(&ok, T).await, "completed");
    t.fault(
        FaultRule::always(Fault::HandlerPermanent)
            .on_stage(2)
            .on_index(1),
    );
    let failed = t
        .submit("hello_world", json!({"n": 2, "message": "detail fails"}))
        .await;
    assert_eq!(t.wait_terminal(&failed, T).await, "failed");
    t.wait_quiet(T).await;
    let db = t.db().await;
    let task = |job: String, stage: i32, seq: i32| {
        let db = &db;
        async move {
            db.query_one(
                "SELECT task_id FROM app.tasks WHERE parent_job_id = $1 AND stage = $2 AND task_seq = $3",
                &[&job, &stage, &seq],
            )
            .await
            .unwrap()
            .get::<_, String>(0)
        }
    };
    let retried = task(ok.clone(), 1, 0).await;
    let failed_task = task(failed.clone(), 2, 1).await;
    let dir = artifacts();
    run_script(
        &t,
        "detail_test.mjs",
        &[
            &t.base,
            dir.to_str().unwrap(),
            &ok,
            &retried,
            &failed,
            &failed_task,
        ],
        &ok,
    )
    .await;
    for shot in ["ui-task-detail.png", "ui-task-detail-390.png"] {
        assert_screenshot(shot);
    }
    t.cleanup().await;
}
