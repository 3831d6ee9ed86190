//! Logs never contain a connection string, key or token: `coremachine local` runs a job with fake
//! secrets configured and debug logging, and everything it printed or exported to (a stand-in
//! of) Application Insights is searched.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::common::ingestion::FakeIngestion;

const DB_PASSWORD: &str = "S3cretDbPassw0rd";
const FUNCTION_KEY: &str = "fk-Secret-111";
const ADMIN_KEY: &str = "mk-Secret-222";
const SAS_KEY: &str = "SasSecret333xyz=";
const IKEY: &str = "11111111-2222-3333-4444-555555555555";

fn capture(
    r: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    into: Arc<Mutex<String>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            let mut s = into.lock().unwrap();
            s.push_str(&l);
            s.push('\n');
        }
    })
}

#[tokio::test]
async fn no_secret_reaches_the_logs_of_a_local_run() {
    let (db_name, url) = crate::common::fresh_db().await;
    // With a connection string the records go to Application Insights, not stdout: both are logs.
    let ingestion = FakeIngestion::start();
    let with_password = url.replacen("postgres@", &format!("postgres:{DB_PASSWORD}@"), 1);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_coremachine"))
        .args(["local", "--port", "0", "--app-root", env!("CARGO_MANIFEST_DIR")])
        .env("DATABASE_URL", &with_password)
        .env("LOCAL_FUNCTION_KEYS", FUNCTION_KEY)
        .env("LOCAL_ADMIN_KEY", ADMIN_KEY)
        .env("COREMACHINE_ADMIN_ENABLED", "true")
        .env(
            "ServiceBusConnection",
            format!("Endpoint=sb://fake.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey={SAS_KEY}"),
        )
        .env(
            "APPLICATIONINSIGHTS_CONNECTION_STRING",
            format!("InstrumentationKey={IKEY};IngestionEndpoint={}", ingestion.url),
        )
        .env("RUST_LOG", "debug")
        .env("LOCAL_QUEUE_POLL_MS", "25")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("coremachine local starts");
    let out = Arc::new(Mutex::new(String::new()));
    let h1 = capture(child.stdout.take().unwrap(), out.clone());
    let h2 = capture(child.stderr.take().unwrap(), out.clone());
    let start = Instant::now();
    let base = loop {
        if let Some(u) = out.lock().unwrap().lines().find_map(|l| {
            l.split("listening on ")
                .nth(1)
                .map(|u| u.trim().to_string())
        }) {
            break u;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no listening line:\n{}",
            out.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let http = reqwest::Client::new();
    // Keys in headers and in ?code=, wrong keys, errors of every kind.
    let r = http
        .post(format!("{base}/api/jobs/submit/hello_world"))
        .header("x-functions-key", FUNCTION_KEY)
        .json(&json!({"n": 3, "message": "secret test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let job_id = r.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    for path in [
        format!("/api/jobs/{job_id}?code={FUNCTION_KEY}"),
        format!("/api/jobs?code={ADMIN_KEY}&status=bogus"),
        format!("/api/dbadmin/migrations?code={ADMIN_KEY}"),
        format!("/api/dbadmin/migrations?code={FUNCTION_KEY}"),
        format!("/api/jobs/{job_id}?code=wrong-{FUNCTION_KEY}"),
        "/api/health".to_string(),
    ] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        let body = r.text().await.unwrap();
        for s in [DB_PASSWORD, FUNCTION_KEY, ADMIN_KEY, SAS_KEY, IKEY] {
            assert!(!body.contains(s), "{path} answered with a secret: {body}");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v: Value = http
            .get(format!("{base}/api/jobs/{job_id}"))
            .header("x-functions-key", FUNCTION_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["status"] == "completed" {
            break;
        }
        assert!(Instant::now() < deadline, "job did not complete: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // SIGTERM, as the Functions host stops a worker: the exporter flushes what it buffered.
    let pid = child.id().expect("child pid").to_string();
    let term = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(term.success());
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    let _ = child.start_kill();
    let _ = tokio::join!(h1, h2);
    let log = out.lock().unwrap().clone();
    // What was exported, less each envelope's `iKey`: the ingestion endpoint must be told that one.
    let exported: Vec<String> = ingestion
        .items()
        .into_iter()
        .map(|mut item| {
            if let Some(o) = item.as_object_mut() {
                o.remove("iKey");
            }
            item.to_string()
        })
        .collect();
    assert!(
        exported.iter().any(|e| e.contains("JOB_COMPLETED")),
        "the run's telemetry was captured ({} records); its output was:\n{log}",
        exported.len()
    );
    for s in [DB_PASSWORD, FUNCTION_KEY, ADMIN_KEY, SAS_KEY, IKEY] {
        if let Some(line) = log.lines().find(|l| l.contains(s)) {
            panic!("a secret reached the logs: {line}");
        }
        if let Some(e) = exported.iter().find(|e| e.contains(s)) {
            panic!("a secret reached Application Insights: {e}");
        }
    }
    crate::common::drop_db(&db_name).await;
}
