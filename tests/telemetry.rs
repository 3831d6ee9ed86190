//! What reaches Application Insights: a fake ingestion endpoint (the connection string's
//! `IngestionEndpoint` points at it) decodes what the real exporter uploads (gzip JSON envelopes)
//! while jobs run through local mode.
//!
//! Each test installs its pipeline for its own thread only (`set_default` on a current-thread
//! runtime, where the handler, the emulator and the engine all run), so parallel tests do not
//! leak records into each other's capture.

use std::sync::Arc;
use std::time::Duration;

use coremachine::telemetry::{Sampling, Telemetry};
use coremachine::testing::{Fault, FaultRule};
use serde_json::{Value, json};
use tracing_subscriber::EnvFilter;

use crate::common::TestApp;
use crate::common::ingestion::FakeIngestion;

const T: Duration = Duration::from_secs(60);

/// `baseType` of an envelope (`MessageData` = traces, `RequestData` = requests, ...).
fn base_type(e: &Value) -> &str {
    e["data"]["baseType"].as_str().unwrap_or("")
}

fn props(e: &Value) -> &Value {
    &e["data"]["baseData"]["properties"]
}

fn operation_id(e: &Value) -> Option<&str> {
    e["tags"]["ai.operation.id"].as_str()
}

/// Keeps a second dispatcher registered for the whole test binary.
///
/// Why: while exactly one dispatcher is registered, tracing-core computes a callsite's cached
/// interest with whatever dispatcher is current on the thread that hits it first. A test thread
/// without one would cache "never" for a callsite (say, the warn-level checkpoint) that this
/// test's thread-scoped pipeline wants, and its events would silently disappear.
fn keep_interest_cache_multi_dispatcher() {
    static SECOND: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
    SECOND.get_or_init(|| {
        let d = tracing::Dispatch::new(tracing_subscriber::registry());
        drop(tracing::dispatcher::set_default(&d)); // registers it; it stays registered while alive
        d
    });
}

/// A pipeline that exports every record (no sampling: these tests count records one by one).
fn pipeline(ingestion: &FakeIngestion) -> Telemetry {
    pipeline_with(ingestion, Sampling::keep_all())
}

fn pipeline_with(ingestion: &FakeIngestion, sampling: Sampling) -> Telemetry {
    keep_interest_cache_multi_dispatcher();
    Telemetry::application_insights_sampled(
        &ingestion.connection_string(),
        EnvFilter::new("info"),
        sampling,
    )
    .expect("connection string is accepted")
}

/// Flushes on a blocking thread (the exporter uploads from its own threads meanwhile).
async fn flush(t: &Arc<Telemetry>) {
    let t = t.clone();
    tokio::task::spawn_blocking(move || t.flush())
        .await
        .unwrap();
}

/// SQL and KQL tell the same story: every `job_events` row has its checkpoint exported for the
/// job, exactly as many times as it was written.
async fn assert_sql_and_telemetry_agree(t: &TestApp, job: &str, exported: &[&str]) {
    let rows = t
        .db()
        .await
        .query(
            "SELECT checkpoint_name, count(*) FROM app.job_events WHERE job_id = $1 GROUP BY 1",
            &[&job],
        )
        .await
        .unwrap();
    assert!(rows.len() >= 5, "{} checkpoints in job_events", rows.len());
    for r in &rows {
        let (c, n): (String, i64) = (r.get(0), r.get(1));
        let got = exported.iter().filter(|x| **x == c).count() as i64;
        assert_eq!(got, n, "{c}: {n} job_events rows but {got} exported traces");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn checkpoints_of_a_job_with_one_retry_reach_application_insights_as_one_operation() {
    let ingestion = FakeIngestion::start();
    let telemetry = Arc::new(pipeline(&ingestion));
    let _guard = tracing::dispatcher::set_default(telemetry.dispatch());

    let t = TestApp::start().await;
    t.fault(
        FaultRule::times(Fault::HandlerTransient, 1)
            .on_index(0)
            .on_stage(1),
    );
    let r = t
        .http
        .post(format!("{}/api/jobs/submit/hello_world", t.base))
        .header("X-Correlation-Id", "corr-telemetry-1")
        .json(&json!({"n": 2, "message": "telemetry"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let job = r.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(t.wait_terminal(&job, T).await, "completed");
    t.wait_quiet(T).await;
    flush(&telemetry).await;

    let items = ingestion.items();
    assert!(ingestion.bad_requests.lock().unwrap().is_empty());
    let traces: Vec<&Value> = items
        .iter()
        .filter(|e| base_type(e) == "MessageData" && props(e)["job_id"] == job.as_str())
        .collect();
    let names: Vec<&str> = traces
        .iter()
        .filter_map(|e| props(e)["checkpoint"].as_str())
        .collect();
    for expected in [
        "JOB_SUBMITTED",
        "JOB_MESSAGE_RECEIVED",
        "STAGE_TASKS_CREATED",
        "TASK_CLAIMED",
        "TASK_RETRY_SCHEDULED",
        "TASK_COMPLETED",
        "STAGE_COMPLETED",
        "STAGE_ADVANCE_QUEUED",
        "JOB_COMPLETED",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    // Two stages x two tasks, one of them run twice.
    assert_eq!(names.iter().filter(|n| **n == "TASK_CLAIMED").count(), 5);
    assert_eq!(names.iter().filter(|n| **n == "TASK_COMPLETED").count(), 4);

    // customDimensions carry the catalogue's fields.
    let retry = traces
        .iter()
        .find(|e| props(e)["checkpoint"] == "TASK_RETRY_SCHEDULED")
        .unwrap();
    let p = props(retry);
    assert_eq!(p["job_type"], "hello_world");
    assert_eq!(p["task_type"], "hello_world_greeting");
    assert_eq!(p["stage"], "1");
    assert_eq!(p["attempt"], "1");
    assert_eq!(p["correlation_id"], "corr-telemetry-1");
    assert_eq!(p["error_class"], "transient");
    assert_eq!(p["error_type"], "InjectedTransient");
    assert!(
        p["error_message"]
            .as_str()
            .unwrap()
            .contains("transient failure")
    );
    assert!(p["error_chain"].is_string());
    assert!(p["task_id"].as_str().is_some_and(|s| s.len() == 64));
    assert!(p["invocation_id"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(p["duration_ms"].is_string());
    // Severity: info for progress, warning for the retry.
    assert_eq!(retry["data"]["baseData"]["severityLevel"], 2);
    let completed = traces
        .iter()
        .find(|e| props(e)["checkpoint"] == "JOB_COMPLETED")
        .unwrap();
    assert_eq!(completed["data"]["baseData"]["severityLevel"], 1);
    assert_eq!(completed["data"]["baseData"]["message"], "JOB_COMPLETED");
    for e in &traces {
        assert_eq!(
            props(e)["correlation_id"],
            "corr-telemetry-1",
            "every checkpoint of the job carries its correlation id: {e}"
        );
    }

    assert_sql_and_telemetry_agree(&t, &job, &names).await;

    // One trace: every record of the job shares one operation_Id, which is the trace id stored
    // on the job and sent in every message.
    let ops: std::collections::BTreeSet<&str> = traces
        .iter()
        .map(|e| operation_id(e).expect("operation id"))
        .collect();
    assert_eq!(ops.len(), 1, "one operation_Id per job, got {ops:?}");
    let op = *ops.iter().next().unwrap();
    let stored: String = t
        .db()
        .await
        .query_one(
            "SELECT traceparent FROM app.jobs WHERE job_id = $1",
            &[&job],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored.split('-').nth(1), Some(op));
    // The submit request and every invocation (2 job messages, 5 task deliveries) are requests
    // rows of that operation.
    let requests: Vec<&Value> = items
        .iter()
        .filter(|e| base_type(e) == "RequestData" && operation_id(e) == Some(op))
        .collect();
    let req_names: Vec<&str> = requests
        .iter()
        .filter_map(|e| e["data"]["baseData"]["name"].as_str())
        .collect();
    assert!(
        req_names.iter().any(|n| n.contains("/api/jobs/submit")),
        "{req_names:?}"
    );
    assert_eq!(
        req_names
            .iter()
            .filter(|n| **n == "jobs-queue-trigger")
            .count(),
        2
    );
    assert_eq!(
        req_names
            .iter()
            .filter(|n| **n == "tasks-queue-trigger")
            .count(),
        5
    );
    assert!(
        items
            .iter()
            .filter(|e| base_type(e) == "RequestData")
            .all(|e| e["tags"]["ai.cloud.role"] == "coremachine"),
        "cloud_RoleName is the service name"
    );
    t.cleanup().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_permanent_failure_is_exported_as_an_error_with_its_chain() {
    let ingestion = FakeIngestion::start();
    let telemetry = Arc::new(pipeline(&ingestion));
    let _guard = tracing::dispatcher::set_default(telemetry.dispatch());

    let t = TestApp::start().await;
    t.fault(
        FaultRule::times(Fault::HandlerPermanent, 1)
            .on_index(1)
            .on_stage(1),
    );
    let job = t
        .submit("hello_world", json!({"n": 2, "message": "fail"}))
        .await;
    assert_eq!(t.wait_terminal(&job, T).await, "failed");
    t.wait_quiet(T).await;
    flush(&telemetry).await;

    let items = ingestion.items();
    let of_job: Vec<&Value> = items
        .iter()
        .filter(|e| base_type(e) == "MessageData" && props(e)["job_id"] == job.as_str())
        .collect();
    let failed = of_job
        .iter()
        .find(|e| props(e)["checkpoint"] == "TASK_FAILED")
        .expect("TASK_FAILED exported");
    assert_eq!(failed["data"]["baseData"]["severityLevel"], 3);
    assert_eq!(props(failed)["error_class"], "permanent");
    assert_eq!(props(failed)["error_type"], "InjectedPermanent");
    let job_failed = of_job
        .iter()
        .find(|e| props(e)["checkpoint"] == "JOB_FAILED")
        .expect("JOB_FAILED exported");
    assert_eq!(job_failed["data"]["baseData"]["severityLevel"], 3);
    let ops: std::collections::BTreeSet<&str> =
        of_job.iter().filter_map(|e| operation_id(e)).collect();
    assert_eq!(ops.len(), 1, "{ops:?}");
    let names: Vec<&str> = of_job
        .iter()
        .filter_map(|e| props(e)["checkpoint"].as_str())
        .collect();
    assert_sql_and_telemetry_agree(&t, &job, &names).await;
    t.cleanup().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_20_kb_non_ascii_error_message_is_cut_at_a_character_boundary_and_exported() {
    let ingestion = FakeIngestion::start();
    let telemetry = Arc::new(pipeline(&ingestion));
    let _guard = tracing::dispatcher::set_default(telemetry.dispatch());

    // 20 KB of two-, three- and four-byte characters, shifted by one byte so that the exporter's
    // byte limits (8192 for values, 32768 for messages) fall inside a character.
    let long = format!("a{}", "é€🦀".repeat(20_000 / 9 + 1));
    assert!(long.len() >= 20_000 && !long.is_char_boundary(8192));
    let longer = format!("a{}", "é€🦀".repeat(33_000 / 9 + 1));
    assert!(!longer.is_char_boundary(32768));
    #[derive(Debug)]
    struct Long(String);
    impl std::fmt::Display for Long {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
    impl std::error::Error for Long {}
    use coremachine::telemetry::checkpoints as cp;
    cp::emit_error(
        cp::TASK_FAILED,
        &cp::Fields::job("a".repeat(64)).extra("raw", &long),
        "LongError",
        &Long(long.clone()),
    );
    // A plain event with a long non-ASCII field and message: cut by the exporter wrapper.
    tracing::error!(detail = %long, "{longer}");
    // A span with a long attribute.
    tracing::info_span!("long_span", otel.kind = "server", detail = %long).in_scope(|| {});
    flush(&telemetry).await;

    let items = ingestion.items();
    let cp_item = items
        .iter()
        .find(|e| props(e)["checkpoint"] == "TASK_FAILED")
        .expect("the checkpoint was exported (the exporter did not panic)");
    let msg = props(cp_item)["error_message"].as_str().unwrap();
    assert!(msg.len() <= 8192 && msg.ends_with("..."), "{}", msg.len());
    assert!(msg.starts_with("aé€🦀"));
    let plain = items
        .iter()
        .find(|e| base_type(e) == "MessageData" && props(e)["detail"].is_string())
        .expect("the plain event was exported");
    assert!(props(plain)["detail"].as_str().unwrap().len() <= 8192);
    assert!(
        plain["data"]["baseData"]["message"]
            .as_str()
            .unwrap()
            .starts_with("aé€🦀")
    );
    let span = items
        .iter()
        .find(|e| base_type(e) == "RequestData" && e["data"]["baseData"]["name"] == "long_span")
        .expect("the span was exported");
    assert!(props(span)["detail"].as_str().unwrap().len() <= 8192);

    // The pipeline still works after the long records.
    tracing::info!(checkpoint = "AFTER", "after");
    flush(&telemetry).await;
    assert!(
        ingestion
            .items()
            .iter()
            .any(|e| props(e)["checkpoint"] == "AFTER")
    );
}

/// Field names a checkpoint can carry in `customDimensions` (see telemetry/checkpoints.rs).
const CHECKPOINT_FIELDS: &[&str] = &[
    "checkpoint",
    "job_id",
    "job_type",
    "task_id",
    "task_type",
    "stage",
    "attempt",
    "correlation_id",
    "invocation_id",
    "duration_ms",
    "error_class",
    "error_type",
    "error_message",
    "error_chain",
    "extra",
];

/// Every query of the KQL pack (`scripts/kql/`), of the alerts (`scripts/kql/alerts/`) and
/// their workspace variants (`scripts/kql/workspace/`).
fn kql_files() -> Vec<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kql");
    let mut files = resource_kql_files();
    files.extend(
        [root.join("workspace"), root.join("workspace/alerts")]
            .iter()
            .flat_map(|d| std::fs::read_dir(d).unwrap())
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "kql")),
    );
    files.sort();
    files
}

/// The queries written for the Application Insights resource (`traces`, `customDimensions`).
fn resource_kql_files() -> Vec<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kql");
    let mut files: Vec<_> = [root.clone(), root.join("alerts")]
        .iter()
        .flat_map(|d| std::fs::read_dir(d).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "kql"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_kql_query_is_well_formed() {
    for f in kql_files() {
        let text = std::fs::read_to_string(&f).unwrap();
        if let Err(e) = crate::common::kql::stages(&text) {
            panic!("{}: {e}", f.display());
        }
    }
}

#[test]
fn the_kql_pack_uses_only_checkpoint_names_and_fields_that_exist() {
    use coremachine::telemetry::checkpoints as cp;
    let files = kql_files();
    assert!(
        files.len() >= 2 * (7 + 5),
        "the pack, the alerts and their workspace variants: {files:?}"
    );
    let field = regex::Regex::new(r"(?:customDimensions|Properties)\.([A-Za-z_]+)").unwrap();
    let name = regex::Regex::new(r#""([A-Z][A-Z_]+)""#).unwrap();
    let prefix = regex::Regex::new(r#"startswith "([A-Z_]+)""#).unwrap();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(
            text.starts_with("// When to use:"),
            "{} must start with a `// When to use:` comment",
            f.display()
        );
        for c in field.captures_iter(&text) {
            assert!(
                CHECKPOINT_FIELDS.contains(&&c[1]),
                "{}: customDimensions.{} is not a checkpoint field",
                f.display(),
                &c[1]
            );
        }
        for c in name.captures_iter(&text) {
            let n = &c[1];
            if n == "PENDING" || n.ends_with('_') {
                continue; // an outcome label, or a prefix (checked below)
            }
            assert!(
                cp::ALL.contains(&n),
                "{}: {n} is not a checkpoint",
                f.display()
            );
        }
        for c in prefix.captures_iter(&text) {
            assert!(
                cp::ALL.iter().any(|n| n.starts_with(&c[1])),
                "{}: no checkpoint starts with {}",
                f.display(),
                &c[1]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_exports_to_application_insights_only_and_flushes_on_sigterm() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let ingestion = FakeIngestion::start();
    let (db_name, db_url) = crate::common::fresh_db().await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_coremachine"))
        .args([
            "local",
            "--port",
            "0",
            "--app-root",
            env!("CARGO_MANIFEST_DIR"),
        ])
        .env("DATABASE_URL", &db_url)
        .env(
            coremachine::telemetry::CONNECTION_STRING_VAR,
            ingestion.connection_string(),
        )
        .env("LOCAL_QUEUE_POLL_MS", "25")
        // Every task's checkpoints (the check below names TASK_COMPLETED; sampling is tested on
        // its own).
        .env(coremachine::telemetry::exporter::SAMPLE_PERCENT_VAR, "100")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let base = tokio::time::timeout(T, async {
        while let Some(line) = stderr.next_line().await.unwrap() {
            if let Some(url) = line.split("listening on ").nth(1) {
                return url.trim().to_string();
            }
        }
        panic!("the binary exited before listening");
    })
    .await
    .expect("the binary listens within a minute");
    let mut stdout = child.stdout.take().unwrap();

    let http = reqwest::Client::new();
    let r = http
        .post(format!("{base}/api/jobs/submit/hello_world"))
        .json(&json!({"n": 1, "message": "from the binary"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let job = r.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let status = tokio::time::timeout(T, async {
        loop {
            let s: Value = http
                .get(format!("{base}/api/jobs/status/{job}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if s["status"] == "completed" || s["status"] == "failed" {
                return s["status"].clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the job ends");
    assert_eq!(status, "completed");

    // SIGTERM (what the Functions host sends): the process stops and uploads what it buffered.
    let pid = child.id().unwrap().to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the binary stops within 30 s of SIGTERM")
        .unwrap();
    assert!(exit.success(), "exit status {exit}");
    let mut out = String::new();
    stdout.read_to_string(&mut out).await.unwrap();
    assert!(
        !out.contains("JOB_SUBMITTED") && !out.contains("\"checkpoint\""),
        "with a connection string nothing is printed on stdout (the host would forward it \
         to Application Insights a second time): {}",
        out.chars().take(2000).collect::<String>()
    );

    // Everything arrived, spans included (their batch interval is 5 s: they came with the
    // shutdown flush), all in the job's one operation.
    let items = ingestion.items();
    let of_job: Vec<&Value> = items
        .iter()
        .filter(|e| props(e)["job_id"] == job.as_str())
        .collect();
    let names: Vec<&str> = of_job
        .iter()
        .filter_map(|e| props(e)["checkpoint"].as_str())
        .collect();
    for n in ["JOB_SUBMITTED", "TASK_COMPLETED", "JOB_COMPLETED"] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    let op = operation_id(of_job[0]).unwrap();
    assert!(of_job.iter().all(|e| operation_id(e) == Some(op)));
    let invocations = items
        .iter()
        .filter(|e| base_type(e) == "RequestData" && operation_id(e) == Some(op))
        .count();
    assert!(
        invocations >= 5,
        "submit + 2 job + 2 task invocations, got {invocations}"
    );
    crate::common::drop_db(&db_name).await;
}

/// Regression: the capture of a test lost warn-level checkpoints that another test's thread had
/// hit first (see [`keep_interest_cache_multi_dispatcher`]; without it this test fails).
#[test]
fn a_thread_scoped_pipeline_sees_a_callsite_another_thread_hit_first() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tracing_subscriber::prelude::*;
    static SEEN: AtomicUsize = AtomicUsize::new(0);
    struct Count;
    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Count {
        fn on_event(&self, _: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
            SEEN.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn callsite() {
        tracing::warn!(x = 1, "first hit on a thread without a subscriber");
    }
    keep_interest_cache_multi_dispatcher();
    let d = tracing::Dispatch::new(tracing_subscriber::registry().with(Count));
    let _g = tracing::dispatcher::set_default(&d);
    std::thread::spawn(callsite).join().unwrap();
    callsite();
    assert_eq!(SEEN.load(Ordering::SeqCst), 1);
}

/// The dependency records (`RemoteDependencyData`) of an upload, as their `baseData`.
fn dependencies(items: &[Value]) -> Vec<&Value> {
    items
        .iter()
        .filter(|e| base_type(e) == "RemoteDependencyData")
        .map(|e| &e["data"]["baseData"])
        .collect()
}

/// #18.6: PostgreSQL, Blob Storage and Service Bus calls are `dependencies` records with the
/// fields the application map reads (type, target, name, data, duration, success, resultCode),
/// and a job's calls share its operation.
#[tokio::test(flavor = "current_thread")]
async fn a_jobs_database_blob_and_service_bus_calls_are_exported_as_dependencies() {
    use crate::azure_fakes::{FakeServiceBus, Scripted};
    use coremachine::jobs::list_container_contents::{self, BlobSource};

    let ingestion = FakeIngestion::start();
    let telemetry = Arc::new(pipeline(&ingestion));
    let _guard = tracing::dispatcher::set_default(telemetry.dispatch());

    let blobs = crate::blob_job::client();
    let container = crate::blob_job::container_with(
        &blobs,
        "deps",
        vec![
            ("a.txt".into(), vec![b'a'; 10]),
            ("b.csv".into(), vec![b'b'; 30]),
        ],
    )
    .await;
    let client = blobs.clone();
    let t = TestApp::start_opts(move |o| {
        list_container_contents::register(&mut o.registry, BlobSource::fixed(client))
    })
    .await;
    let job = t
        .submit(
            "list_container_contents",
            json!({"container_name": container}),
        )
        .await;
    assert_eq!(
        t.wait_terminal(&job, T).await,
        "completed",
        "{}",
        t.dump(&job).await
    );
    t.wait_quiet(T).await;

    // Service Bus: one accepted send, one refused.
    let fake = FakeServiceBus::bearer("t1").await;
    let sender = crate::azure_service_bus::sender(
        &fake,
        crate::azure_service_bus::Tokens::new("t1", "t2"),
        &[],
    );
    sender
        .send_all(&[crate::azure_service_bus::task_msg(0, 10)])
        .await
        .expect("accepted");
    fake.script([Scripted::status(400, "bad request")]);
    sender
        .send_all(&[crate::azure_service_bus::task_msg(1, 10)])
        .await
        .expect_err("refused");
    flush(&telemetry).await;

    let items = ingestion.items();
    assert!(ingestion.bad_requests.lock().unwrap().is_empty());
    let trace: String = t
        .db()
        .await
        .query_one(
            "SELECT traceparent FROM app.jobs WHERE job_id = $1",
            &[&job],
        )
        .await
        .unwrap()
        .get(0);
    let op = trace.split('-').nth(1).unwrap().to_string();
    let of_job: Vec<&Value> = items
        .iter()
        .filter(|e| base_type(e) == "RemoteDependencyData" && operation_id(e) == Some(&op))
        .map(|e| &e["data"]["baseData"])
        .collect();
    let all = dependencies(&items);
    let kinds =
        |ty: &str| -> Vec<&Value> { of_job.iter().copied().filter(|d| d["type"] == ty).collect() };

    // Blob: the listing and each blob's read, within the job's operation.
    let blob = kinds("Azure blob");
    assert!(blob.len() >= 3, "list + 2 reads: {blob:?}");
    let azurite = reqwest::Url::parse(&crate::blob_job::azurite()).unwrap();
    let host = format!(
        "{}:{}",
        azurite.host_str().unwrap(),
        azurite.port().unwrap()
    );
    for d in &blob {
        assert_eq!(d["target"], host.as_str(), "{d}");
        assert_eq!(d["success"], true, "{d}");
        assert!(d["resultCode"].as_str().unwrap().starts_with('2'), "{d}");
        let data = d["data"].as_str().unwrap();
        assert!(
            data.contains(&container) && !data.contains('?') && !data.contains("sig="),
            "the URL without its query (no SAS, no key): {data}"
        );
        assert!(d["duration"].as_str().is_some(), "{d}");
    }
    assert!(
        blob.iter().any(|d| d["name"] == "GET container"),
        "the listing: {blob:?}"
    );
    assert!(
        blob.iter().any(|d| d["name"] == "HEAD blob"),
        "a blob read: {blob:?}"
    );

    // PostgreSQL: the claims of the task runs, named by their statement, with its text as data. A
    // batched invocation claims a wave of tasks in one statement, recorded in the trace of the
    // wave's first message: at least one claim, at most one per run.
    let tasks = t
        .count(
            "SELECT count(*) FROM app.job_events WHERE job_id = $1 AND event_type = 'task_started'",
            &job,
        )
        .await;
    let pg = kinds("postgresql");
    let claims: Vec<&&Value> = pg.iter().filter(|d| d["name"] == "task_claim").collect();
    assert!(
        !claims.is_empty() && claims.len() as i64 <= tasks,
        "a task_claim per wave of the {tasks} runs: {pg:?}"
    );
    for d in &claims {
        assert_eq!(d["success"], true, "{d}");
        assert_eq!(
            d["resultCode"], "1",
            "the exporter's code of an OK span: {d}"
        );
        assert!(
            d["data"].as_str().unwrap().contains("UPDATE app.tasks"),
            "{d}"
        );
        let db_url: tokio_postgres::Config =
            std::env::var("TEST_DATABASE_URL").unwrap().parse().unwrap();
        assert!(
            d["target"]
                .as_str()
                .unwrap()
                .ends_with(&format!(":{}", db_url.get_ports()[0])),
            "host:port of the database: {d}"
        );
    }
    assert!(
        pg.iter().any(
            |d| d["name"] == "local_queue_insert_batch" || d["name"] == "outbox_to_local_queue"
        ),
        "the fan-out's queue writes: {pg:?}"
    );
    // And the task completions, in one of their three statements.
    let completions = pg
        .iter()
        .filter(|d| {
            ["task_complete", "task_complete_fast", "task_complete_batch"]
                .contains(&d["name"].as_str().unwrap_or(""))
        })
        .count();
    assert!(completions >= 1, "task completions: {pg:?}");

    // Service Bus: the accepted send succeeded with 201, the refused one failed with 400.
    let sb: Vec<&Value> = all
        .iter()
        .copied()
        .filter(|d| d["type"] == "Azure Service Bus")
        .collect();
    let fake_host = reqwest::Url::parse(&fake.url).unwrap();
    let fake_host = format!(
        "{}:{}",
        fake_host.host_str().unwrap(),
        fake_host.port().unwrap()
    );
    assert_eq!(sb.len(), 2, "{sb:?}");
    for d in &sb {
        assert_eq!(d["name"], "send to geospatial-tasks", "{d}");
        assert_eq!(d["target"], fake_host.as_str(), "{d}");
        assert!(!d["data"].as_str().unwrap().contains('?'), "{d}");
    }
    assert_eq!(
        (sb[0]["success"].clone(), sb[0]["resultCode"].clone()),
        (json!(true), json!("201"))
    );
    assert_eq!(
        (sb[1]["success"].clone(), sb[1]["resultCode"].clone()),
        (json!(false), json!("400"))
    );
    t.cleanup().await;
}

/// #18.6: with the default sampling, a job of 2 x 1,000 tasks exports its stage- and job-level
/// checkpoints and every failure and retry, while its per-task success rows (claims and
/// completions) stay under the documented bound of 60 per 1,000 tasks; a sampled task keeps
/// its claim and its completion together.
#[tokio::test(flavor = "current_thread")]
async fn a_1000_task_jobs_sampled_volume_stays_under_the_bound_and_keeps_every_failure() {
    use coremachine::telemetry::exporter::{DEFAULT_SAMPLE_PERCENT, SAMPLED_CHECKPOINTS};
    let ingestion = FakeIngestion::start();
    let telemetry = Arc::new(pipeline_with(
        &ingestion,
        Sampling::percent(DEFAULT_SAMPLE_PERCENT),
    ));
    let _guard = tracing::dispatcher::set_default(telemetry.dispatch());
    let t = TestApp::start().await;
    // Two tasks fail for good (tolerated), one is retried once.
    t.fault(
        FaultRule::times(Fault::HandlerTransient, 1)
            .on_stage(1)
            .on_index(3),
    );
    let job = t
        .submit(
            "shapes_tolerant",
            json!({"tasks": 1000, "fail": [5, 700], "run": "sampling"}),
        )
        .await;
    assert_eq!(
        t.wait_terminal(&job, Duration::from_secs(300)).await,
        "completed",
        "{}",
        t.dump(&job).await
    );
    t.wait_quiet(T).await;
    flush(&telemetry).await;

    let items = ingestion.items();
    let traces: Vec<&Value> = items
        .iter()
        .filter(|e| base_type(e) == "MessageData" && props(e)["job_id"] == job.as_str())
        .collect();
    let names: Vec<&str> = traces
        .iter()
        .filter_map(|e| props(e)["checkpoint"].as_str())
        .collect();
    let db = t.db().await;
    let rows = db
        .query(
            "SELECT checkpoint_name, event_status, count(*) FROM app.job_events WHERE job_id = $1 GROUP BY 1, 2",
            &[&job],
        )
        .await
        .unwrap();
    let mut tasks_run = 0i64;
    for r in &rows {
        let (c, status, n): (String, String, i64) = (r.get(0), r.get(1), r.get(2));
        let got = names.iter().filter(|x| **x == c).count() as i64;
        if SAMPLED_CHECKPOINTS.contains(&c.as_str()) {
            if c == "TASK_CLAIMED" {
                tasks_run = n;
            }
            assert!(got < n, "{c}: sampled, {got} of {n} exported");
        } else {
            // Failures, retries and every stage- and job-level step: all of them.
            assert_eq!(
                got, n,
                "{c} ({status}): {n} job_events rows, {got} exported"
            );
        }
    }
    assert!(tasks_run >= 1998, "{tasks_run} task runs");
    assert_eq!(names.iter().filter(|n| **n == "TASK_FAILED").count(), 2);
    assert_eq!(
        names
            .iter()
            .filter(|n| **n == "TASK_RETRY_SCHEDULED")
            .count(),
        1
    );
    let per_task: Vec<&&Value> = traces
        .iter()
        .filter(|e| SAMPLED_CHECKPOINTS.contains(&props(e)["checkpoint"].as_str().unwrap_or("")))
        .collect();
    let bound = 60 * tasks_run / 1000;
    assert!(
        !per_task.is_empty() && (per_task.len() as i64) <= bound,
        "{} per-task rows for {tasks_run} task runs (bound {bound})",
        per_task.len()
    );
    let of = |c: &str| -> std::collections::BTreeSet<String> {
        per_task
            .iter()
            .filter(|e| props(e)["checkpoint"] == c)
            .map(|e| props(e)["task_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        of("TASK_CLAIMED"),
        of("TASK_COMPLETED"),
        "a sampled task keeps its claim and its completion"
    );
    // Requests of task messages are sampled the same way; the job's failures are all there.
    let task_requests = items
        .iter()
        .filter(|e| {
            base_type(e) == "RequestData" && e["data"]["baseData"]["name"] == "tasks-queue-trigger"
        })
        .count() as i64;
    assert!(
        task_requests <= bound,
        "{task_requests} tasks-queue-trigger requests exported (bound {bound})"
    );
    eprintln!(
        "sampled volume: {} traces rows for the job ({} per-task), {task_requests} task requests, {} dependencies, for {tasks_run} task runs",
        traces.len(),
        per_task.len(),
        dependencies(&items).len()
    );
    t.cleanup().await;
}

/// What a line pipeline wrote, shared with the test.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Runs a hello_world job submitted with `traceparent` under a line pipeline in `format`;
/// returns the job id and what was printed.
async fn job_lines(
    format: coremachine::telemetry::log_format::Format,
    traceparent: &str,
) -> (String, String) {
    keep_interest_cache_multi_dispatcher();
    let out = Captured::default();
    let telemetry = Telemetry::lines_to(EnvFilter::new("info"), format, out.clone());
    let _guard = tracing::dispatcher::set_default(telemetry.dispatch());
    let t = TestApp::start().await;
    let r = t
        .http
        .post(format!("{}/api/jobs/submit/hello_world", t.base))
        .header("traceparent", traceparent)
        .json(&json!({"n": 2, "message": format!("{format:?} lines")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let job = r.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(t.wait_terminal(&job, T).await, "completed");
    t.wait_quiet(T).await;
    t.cleanup().await;
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    (job, text)
}

/// #18.6: every line of a job's submit request and of its invocations carries the request id and
/// the job's trace id, in JSON and with `LOG_FORMAT=pretty`.
#[tokio::test(flavor = "current_thread")]
async fn every_log_line_of_a_job_carries_its_request_id_and_trace_id_in_json_and_pretty() {
    use coremachine::telemetry::log_format::Format;
    let trace = "5bf92f3577b34da6a3ce929d0e0e4736";
    let (job, text) = job_lines(Format::Json, &format!("00-{trace}-00f067aa0ba902b7-01")).await;
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let of_job: Vec<&Value> = lines
        .iter()
        .filter(|l| l["job_id"] == job.as_str())
        .collect();
    let checkpoints: Vec<&str> = of_job
        .iter()
        .filter_map(|l| l["checkpoint"].as_str())
        .collect();
    for c in [
        "JOB_SUBMITTED",
        "TASK_CLAIMED",
        "TASK_COMPLETED",
        "JOB_COMPLETED",
    ] {
        assert!(checkpoints.contains(&c), "{c} missing from {checkpoints:?}");
    }
    let mut requests = std::collections::BTreeSet::new();
    for l in &of_job {
        assert_eq!(l["trace_id"], trace, "the job's trace id: {l}");
        let r = l["request_id"]
            .as_str()
            .unwrap_or_else(|| panic!("a request id: {l}"));
        assert!(!r.is_empty(), "{l}");
        requests.insert(r.to_string());
        for k in ["timestamp", "level", "target", "message"] {
            assert!(l[k].is_string(), "{k} in {l}");
        }
    }
    // The submit request and every invocation have ids of their own.
    assert!(requests.len() >= 5, "{requests:?}");

    let trace = "6bf92f3577b34da6a3ce929d0e0e4736";
    let (job, text) = job_lines(Format::Pretty, &format!("00-{trace}-00f067aa0ba902b7-01")).await;
    let of_job: Vec<&str> = text.lines().filter(|l| l.contains(&job)).collect();
    assert!(
        of_job.iter().any(|l| l.contains(" INFO TASK_COMPLETED ")),
        "{text}"
    );
    for l in &of_job {
        assert!(!l.trim_start().starts_with('{'), "not JSON: {l}");
        assert!(l.contains(&format!(" trace_id={trace}")), "{l}");
        assert!(l.contains(" request_id="), "{l}");
    }
}

/// #18.6: the pack works from the workspace too: `scripts/kql/workspace/` holds every query of
/// the pack and of the alerts with the workspace's names (`AppTraces`, `Properties`, ...),
/// generated from the resource's; the files checked in are what the generator makes
/// (`UPDATE_KQL=1` rewrites them).
#[test]
fn the_workspace_variant_of_every_kql_query_is_generated_from_the_resource_one() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kql");
    let update = std::env::var("UPDATE_KQL").as_deref() == Ok("1");
    for f in resource_kql_files() {
        let rel = f.strip_prefix(&root).unwrap();
        let source = format!("scripts/kql/{}", rel.display());
        let want = crate::common::kql::to_workspace(&std::fs::read_to_string(&f).unwrap(), &source);
        let target = root.join("workspace").join(rel);
        if update {
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::write(&target, &want).unwrap();
        }
        let got = std::fs::read_to_string(&target).unwrap_or_else(|_| {
            panic!(
                "{} is missing: run UPDATE_KQL=1 cargo test --test tests the_workspace_variant",
                target.display()
            )
        });
        assert_eq!(
            got,
            want,
            "{} is not generated from {source}",
            target.display()
        );
        for (resource, _) in crate::common::kql::WORKSPACE_NAMES.iter().take(5) {
            let code: String = got
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect();
            assert!(
                !regex::Regex::new(&format!(r"(^|[^.\w]){resource}\b"))
                    .unwrap()
                    .is_match(&code),
                "{}: still names {resource}",
                target.display()
            );
        }
    }
}

/// A failed statement is a failed dependency: `success` false, its SQLSTATE kept.
#[tokio::test(flavor = "current_thread")]
async fn a_failed_statement_is_a_failed_postgresql_dependency_with_its_sqlstate() {
    use coremachine::telemetry::dependency::Dependency;
    let ingestion = FakeIngestion::start();
    let telemetry = Arc::new(pipeline(&ingestion));
    let _guard = tracing::dispatcher::set_default(telemetry.dispatch());
    let t = TestApp::start_opts(|o| o.emulator = false).await;
    let db = t.db().await;
    let text = "SELECT no_such_column FROM app.jobs";
    let err = Dependency::postgres("broken_statement", text)
        .run_query(db.query(text, &[]))
        .await
        .expect_err("the column does not exist");
    assert_eq!(err.code().map(|c| c.code()), Some("42703"));
    flush(&telemetry).await;
    let items = ingestion.items();
    let d = dependencies(&items)
        .into_iter()
        .find(|d| d["name"] == "broken_statement")
        .expect("the failed statement is a dependency");
    assert_eq!(d["type"], "postgresql");
    assert_eq!(d["success"], false, "{d}");
    assert_eq!(d["data"], text);
    assert_eq!(d["properties"]["db.response.status_code"], "42703", "{d}");
    t.cleanup().await;
}
