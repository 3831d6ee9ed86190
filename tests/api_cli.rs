//! The client subcommands against local mode: exit codes 0 completed, 1 failed/cancelled,
//! 2 usage error.

use std::time::Duration;

use tokio::io::AsyncBufReadExt;

use coremachine::config::{HttpSettings, Secret};
use serde_json::json;

use crate::common::TestApp;

const KEY: &str = "cli-test-key";

async fn keyed() -> TestApp {
    TestApp::start_opts(|o| {
        o.settings.http = HttpSettings {
            function_keys: vec![Secret::new(KEY)],
            admin_key: None,
            admin_enabled: false,
        }
    })
    .await
}

/// Runs the binary with the test app's URL and key; returns (exit code, stdout, stderr).
pub(crate) async fn cli(t: &TestApp, args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_coremachine"))
        .args(args)
        .env("COREMACHINE_URL", &t.base)
        .env("COREMACHINE_KEY", KEY)
        .env("RUST_LOG", "off")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("the CLI finishes")
        .expect("the CLI runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The job id `submit --wait` names on stderr.
fn job_id_in(err: &str) -> String {
    err.split_whitespace()
        .find(|w| w.len() == 64)
        .expect("the job id is printed")
        .to_string()
}

#[tokio::test]
async fn submit_wait_exits_0_when_completed_and_1_when_failed() {
    let t = keyed().await;
    let (code, out, err) = cli(
        &t,
        &[
            "submit",
            "hello_world",
            "n=2",
            "message=from the cli",
            "--wait",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("completed"), "{out}");
    let (code, out, err) = cli(
        &t,
        &[
            "submit",
            "shapes1",
            "tasks=3",
            "fail=[1]",
            "run=cli-fail",
            "--wait",
        ],
    )
    .await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("failed"), "{out}");
    assert!(
        out.contains("what next: a permanent error") && out.contains("--failed-tasks"),
        "submit --wait explains the error class and the command: {out}"
    );
    // The parameters were typed by the schema: n is an integer, run stays a string.
    let (code, out, _) = cli(&t, &["jobs", "--job-type", "shapes1"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("failed"), "{out}");
    t.cleanup().await;
}

#[tokio::test]
async fn watch_follows_a_job_to_its_end_and_cancel_makes_it_exit_1() {
    let t = keyed().await;
    let id = {
        let r = t
            .http
            .post(format!("{}/api/jobs/submit/shapes2", t.base))
            .header("x-functions-key", KEY)
            .json(&json!({"tasks": 4, "sleep_ms": 1500, "run": "cli-watch"}))
            .send()
            .await
            .unwrap();
        let b: serde_json::Value = r.json().await.unwrap();
        b["job_id"].as_str().unwrap().to_string()
    };
    let watcher = {
        let base = t.base.clone();
        let id = id.clone();
        tokio::spawn(async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_coremachine"))
                .args(["watch", &id, "--timeout", "60"])
                .env("COREMACHINE_URL", base)
                .env("COREMACHINE_KEY", KEY)
                .env("RUST_LOG", "off")
                .kill_on_drop(true)
                .output()
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (code, out, err) = cli(&t, &["cancel", &id, "--reason", "cli test"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("\"cancelled\""), "{out}");
    let w = watcher.await.unwrap();
    let wout = String::from_utf8_lossy(&w.stdout);
    assert_eq!(w.status.code(), Some(1), "{wout}");
    assert!(wout.contains("cancelled"), "{wout}");
    // Resubmit from the start and wait: it completes this time.
    let (code, out, err) = cli(&t, &["resubmit", &id, "--from-start", "--wait"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("as attempt 2 (from stage 1), after attempt 1 cancelled"),
        "resubmit --wait says which attempt it follows: {err}"
    );
    let (code, out, _) = cli(&t, &["watch", &id]).await;
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = cli(&t, &["status", &id]).await;
    assert_eq!(code, 0);
    assert!(out.contains("\"attempt\": 2"), "{out}");
    t.cleanup().await;
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let t = keyed().await;
    for args in [
        vec!["submit", "hello_world", "no-equals-sign"],
        vec!["submit", "hello_world", "n=many"],
        vec!["submit", "no_such_type"],
        vec!["status", "not-a-job-id"],
        vec!["status"],
        vec!["cancel", &"0".repeat(64)],
        vec!["bogus-subcommand"],
    ] {
        let (code, out, err) = cli(&t, &args).await;
        assert_eq!(code, 2, "{args:?}: {out}\n{err}");
    }
    // A wrong key is refused by the service: a usage error too.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_coremachine"))
        .args(["jobs", "--url", &t.base, "--key", "wrong"])
        .env_remove("COREMACHINE_KEY")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // No service at all: exit 1.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_coremachine"))
        .args(["jobs", "--url", "http://127.0.0.1:9"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    t.cleanup().await;
}

/// A stand-in for `GET /api/jobs/{id}/events` (served by another part of the API): the client
/// follows `next_cursor` pages and also reads a bare array.
#[tokio::test]
async fn events_follows_pages_oldest_first_and_tolerates_a_bare_array() {
    use axum::extract::{Path, Query};
    use std::collections::HashMap;
    let app = axum::Router::new().route(
        "/api/jobs/{id}/events",
        axum::routing::get(
            |Path(id): Path<String>, Query(q): Query<HashMap<String, String>>| async move {
                let ev = |n: i64, t: &str| json!({"event_id": n, "job_id": id, "event_type": t, "event_status": "info", "stage": 1, "created_at": format!("2026-01-01T00:00:0{n}Z")});
                if id.starts_with('b') {
                    return axum::Json(json!([ev(1, "job_created")]));
                }
                axum::Json(match q.get("cursor").map(String::as_str) {
                    None => json!({"events": [ev(1, "job_created"), ev(2, "stage_started")], "next_cursor": "p2"}),
                    Some("p2") => json!({"events": [ev(3, "job_completed")], "next_cursor": null}),
                    Some(_) => json!({"events": []}),
                })
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let run = |id: String| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_coremachine"))
            .args(["events", &id, "--url", &format!("http://{addr}")])
            .env("RUST_LOG", "off")
            .output()
    };
    let out = run("a".repeat(64)).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let types: Vec<&str> = stdout
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        types,
        ["job_created", "stage_started", "job_completed"],
        "{stdout}"
    );
    let out = run("b".repeat(64)).await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("job_created"));
    server.abort();
}

/// The binary with a clean environment, run from a folder that holds no app (`/`).
fn bare_command(args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_coremachine"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .current_dir("/")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// #12 point 8: a bare `coremachine` prints its help instead of trying to `serve`.
#[tokio::test]
async fn a_bare_coremachine_prints_help_instead_of_serving() {
    let (code, stdout, stderr) = crate::common::run_to_end(bare_command(&[], &[])).await;
    let all = format!("{stdout}{stderr}");
    assert!(all.contains("Usage:"), "{all}");
    for sub in ["serve", "local", "migrate", "janitor"] {
        assert!(all.contains(sub), "the help names {sub}: {all}");
    }
    assert!(
        !all.contains("DATABASE_URL"),
        "it did not try to serve: {all}"
    );
    assert_eq!(code, Some(2));
}

/// #12 point 8: `janitor --once` finds the app in FUNCTIONS_APP_ROOT_PATH, runs once, and prints
/// only its report on stdout (the log lines go to stderr), so `| jq` works; without `--once` it
/// keeps running and reports each run.
#[tokio::test]
async fn janitor_honours_once_and_the_app_root_and_keeps_stdout_for_its_report() {
    let (name, url) = crate::common::fresh_db().await;
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("FUNCTIONS_APP_ROOT_PATH", env!("CARGO_MANIFEST_DIR")),
    ];
    let (code, stdout, stderr) =
        crate::common::run_to_end(bare_command(&["janitor", "--once"], &env)).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is the report alone ({e}): {stdout}"));
    assert!(report["run_id"].is_string(), "{report}");
    assert!(stderr.contains("JANITOR_RUN_COMPLETED"), "{stderr}");

    let mut child = bare_command(&["janitor"], &env).spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("a first run is reported")
        .unwrap()
        .expect("a report line");
    let report: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert!(report["run_id"].is_string(), "{report}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "without --once the janitor keeps running"
    );
    child.start_kill().unwrap();
    let _ = child.wait().await;
    crate::common::drop_db(&name).await;
}

#[tokio::test]
async fn the_12_character_id_the_page_shows_works_and_cancelling_a_finished_job_exits_1_with_its_state()
 {
    let t = keyed().await;
    let (code, out, err) = cli(&t, &["submit", "hello_world", "n=2", "--wait"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let id = job_id_in(&err);
    let short = format!("{}…", &id[..12]);
    let (code, out, err) = cli(&t, &["status", &short]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&id), "{out}");
    let (code, out, err) = cli(&t, &["events", &id[..12]]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("job_completed"), "{out}");

    let (code, _, err) = cli(&t, &["cancel", &id[..12], "--reason", "too late"]).await;
    assert_eq!(code, 1, "a refused cancel is not a usage error: {err}");
    assert!(err.contains("completed"), "the job's state is named: {err}");

    let (code, _, err) = cli(&t, &["status", "abc"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("too short"), "{err}");
    let (code, _, err) = cli(&t, &["status", "000000000000"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no job id starts with 000000000000"), "{err}");
    t.cleanup().await;
}

#[tokio::test]
async fn read_commands_print_json_with_o_json_follow_events_and_end_quietly_on_a_closed_pipe() {
    let t = keyed().await;
    let (code, _, err) = cli(&t, &["submit", "hello_world", "n=3", "--wait"]).await;
    assert_eq!(code, 0, "{err}");
    let id = job_id_in(&err);
    for args in [
        vec!["jobs", "-o", "json"],
        vec!["events", &id, "-o", "json"],
        vec!["types", "-o", "json"],
    ] {
        let (code, out, err) = cli(&t, &args).await;
        assert_eq!(code, 0, "{args:?}: {err}");
        for line in out.lines() {
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap_or_else(|e| panic!("{args:?}: {line:?} is not JSON: {e}"));
        }
        assert!(!out.is_empty(), "{args:?}");
    }
    let (code, out, _) = cli(&t, &["tasks", &id, "-o", "json"]).await;
    assert_eq!(code, 0);
    let page: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(page["total"], 6);
    let (code, out, _) = cli(&t, &["tasks", &id]).await;
    assert_eq!(code, 0);
    assert!(
        out.starts_with("6 of 6 matching, 6 task(s) in all"),
        "{out}"
    );
    let (code, out, _) = cli(&t, &["types"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("hello_world"), "{out}");
    let (code, out, _) = cli(&t, &["status", &id, "-o", "table"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("stage 2 reply"), "{out}");
    // --follow on a finished job prints its events and ends.
    let (code, out, _) = cli(&t, &["events", &id, "--follow"]).await;
    assert_eq!(code, 0);
    assert!(
        out.trim_end().ends_with("success") || out.contains("job_completed"),
        "{out}"
    );

    // `| head -1`: the reader leaves early; the command ends without a panic. 1,000+ events are
    // more than a pipe buffer holds, so the writes go on after `head` has gone.
    let (code, _, err) = cli(
        &t,
        &["submit", "shapes1", "tasks=500", "run=pipe", "--wait"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let big = job_id_in(&err);
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{}' events {big} | head -1; echo \"status=${{PIPESTATUS:-0}}\"",
            env!("CARGO_BIN_EXE_coremachine")
        ))
        .env("COREMACHINE_URL", &t.base)
        .env("COREMACHINE_KEY", KEY)
        .env("RUST_LOG", "off")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    t.cleanup().await;
}
