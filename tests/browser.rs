//! The web page in a real browser: headless Chromium (Debian's `chromium`, driven by
//! playwright-core from npm through `tests/browser/page_test.mjs`) opens the job list and the page
//! of a job with a failed task, checks the stages, the failing task and the marked last successful
//! step, and saves screenshots under `test-artifacts/`.
//!
//! `scripts/lib/browser.sh` installs the browser and playwright-core (`./scripts/test.sh` sources
//! it). The test skips only when `COREMACHINE_SKIP_BROWSER=1`; a missing tool is a failure.

use std::path::PathBuf;
use std::time::Duration;

use coremachine::engine::{Fault, FaultRule};
use serde_json::json;

use crate::common::TestApp;

const T: Duration = Duration::from_secs(60);

fn chromium() -> PathBuf {
    let p = std::env::var("COREMACHINE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    PathBuf::from(p)
}

#[tokio::test]
async fn the_job_page_of_a_failed_job_shows_its_stages_failing_task_and_last_successful_step() {
    if std::env::var("COREMACHINE_SKIP_BROWSER").as_deref() == Ok("1") {
        eprintln!("SKIPPED: browser test disabled by COREMACHINE_SKIP_BROWSER=1");
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let browser_dir = root.join("tests/browser");
    assert!(
        chromium().is_file(),
        "{} not found: install it with `source scripts/lib/browser.sh && ensure_browser_test_tools` \
         (or run ./scripts/test.sh); set COREMACHINE_SKIP_BROWSER=1 to skip this test",
        chromium().display()
    );
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed under tests/browser: run \
         `source scripts/lib/browser.sh && ensure_browser_test_tools` (or ./scripts/test.sh)"
    );

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

    let artifacts = root.join("test-artifacts");
    let _ = std::fs::remove_file(artifacts.join("ui-job-failed.png"));
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new("node")
            .arg(browser_dir.join("page_test.mjs"))
            .arg(&t.base)
            .arg(&failed)
            .arg(&ok)
            .arg(&artifacts)
            .env("COREMACHINE_CHROMIUM", chromium())
            .current_dir(&browser_dir)
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
        "browser checks failed ({})\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- job\n{}",
        out.status,
        t.dump(&failed).await
    );
    assert!(stdout.contains("browser test passed"), "{stdout}");
    for shot in ["ui-job-list.png", "ui-job-failed.png"] {
        let bytes = std::fs::read(artifacts.join(shot)).expect("screenshot saved");
        assert!(
            bytes.len() > 10_000 && bytes.starts_with(b"\x89PNG"),
            "{shot} is a real PNG"
        );
    }
    t.cleanup().await;
}
