//! Logs never contain a connection string, key or token: `coremachine local` runs a job with fake
//! secrets configured and debug logging, and everything it printed or exported to (a stand-in
//! of) Application Insights is searched.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::ingestion::FakeIngestion;
use crate::common::local_process::{ADMIN_KEY, FUNCTION_KEY, LocalProcess};

const DB_PASSWORD: &str = "S3cretDbPassw0rd";
const SAS_KEY: &str = "SasSecret333xyz=";
const IKEY: &str = "11111111-2222-3333-4444-555555555555";

#[tokio::test]
async fn no_secret_reaches_the_logs_of_a_local_run() {
    let (db_name, url) = crate::common::fresh_db().await;
    // With a connection string the records go to Application Insights, not stdout: both are logs.
    let ingestion = FakeIngestion::start();
    let with_password = url.replacen("postgres@", &format!("postgres:{DB_PASSWORD}@"), 1);
    let local = LocalProcess::start(
        &with_password,
        &[
            (
                "ServiceBusConnection",
                format!("Endpoint=sb://fake.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey={SAS_KEY}"),
            ),
            (
                "APPLICATIONINSIGHTS_CONNECTION_STRING",
                format!("InstrumentationKey={IKEY};IngestionEndpoint={}", ingestion.url),
            ),
        ],
    )
    .await;
    let base = local.base.clone();
    let http = reqwest::Client::new();
    // Keys in headers and in ?code=, wrong keys, errors of every kind.
    let job_id = local
        .submit("hello_world", json!({"n": 3, "message": "secret test"}))
        .await;
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
    let log = local.stop().await;
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

const SAS_SIG: &str = "SigSecret777xyz";
const SAS_SKOID: &str = "SkoidSecret888";

/// Regression (issue 13.1): a job reading blobs through a SAS connection string whose endpoint is
/// unreachable failed with reqwest's error text, URL and `&sig=` included, in every table, API
/// answer and log line.
#[tokio::test]
async fn a_sas_signature_reaches_no_table_no_api_answer_and_no_log_line() {
    let (db_name, url) = crate::common::fresh_db().await;
    // A port nothing listens on: every request fails to connect and prints its URL.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sas = format!(
        "sv=2022-11-02&ss=b&srt=sco&sp=rl&se=2030-01-01T00%3A00%3A00Z&skoid={SAS_SKOID}&sig={SAS_SIG}%3D"
    );
    let local = LocalProcess::start(
        &url,
        &[
            (
                "AZURE_STORAGE_CONNECTION_STRING",
                format!("BlobEndpoint=http://127.0.0.1:{port}/acct;SharedAccessSignature={sas}"),
            ),
            ("TASK_MAX_RETRIES", "0".into()),
        ],
    )
    .await;
    let base = local.base.clone();
    let http = reqwest::Client::new();
    let get = |path: String| {
        let http = http.clone();
        let base = base.clone();
        async move {
            let r = http
                .get(format!("{base}{path}"))
                .header("x-functions-key", ADMIN_KEY)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let job_id = local
        .submit(
            "list_container_contents",
            json!({"container_name": "bronze"}),
        )
        .await;
    // Five Azure retries of a refused connection (about 25 s), then the task fails for good.
    let deadline = Instant::now() + Duration::from_secs(180);
    let job = loop {
        let (_, body) = get(format!("/api/jobs/{job_id}")).await;
        let v: Value = serde_json::from_str(&body).unwrap();
        if v["status"] == "failed" {
            break v;
        }
        assert!(Instant::now() < deadline, "job did not fail: {v}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // The error still says what went wrong and where; only the query string is gone.
    let details = job["error_details"].as_str().unwrap_or_default();
    assert!(
        details.contains("could not connect") && details.contains("[query redacted]"),
        "error_details says what failed, without the SAS: {details}"
    );
    let answers = [
        format!("/api/jobs/status/{job_id}"),
        format!("/api/jobs/{job_id}"),
        "/api/jobs".to_string(),
        "/api/jobs?status=failed".to_string(),
        format!("/api/jobs/{job_id}/tasks"),
        format!("/api/jobs/{job_id}/events"),
        format!("/api/jobs/{job_id}/events/summary"),
        format!("/api/jobs/{job_id}/timeline"),
        "/api/dbadmin/jobs".to_string(),
        format!("/api/dbadmin/jobs/{job_id}"),
        format!("/api/dbadmin/tasks/{job_id}"),
        "/api/ui/data/jobs".to_string(),
        format!("/api/ui/data/jobs/{job_id}/tasks"),
    ];
    let mut saw_details = 0;
    for path in answers {
        let (status, body) = get(path.clone()).await;
        assert_eq!(status, 200, "{path}: {body}");
        saw_details += usize::from(body.contains("[query redacted]"));
        for s in [SAS_SIG, SAS_SKOID] {
            assert!(!body.contains(s), "{path} answered with the SAS: {body}");
        }
    }
    assert!(
        saw_details >= 5,
        "the error reached the answers ({saw_details})"
    );
    // Every row of every table of the schema, as text.
    let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let tables = db
        .query(
            "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_type = 'BASE TABLE'",
            &[],
        )
        .await
        .unwrap();
    assert!(tables.len() >= 5, "the schema's tables were found");
    for t in tables {
        let table: String = t.get(0);
        let rows = db
            .query(&format!("SELECT t::text FROM {table} t"), &[])
            .await
            .unwrap();
        for r in rows {
            let row: String = r.get(0);
            for s in [SAS_SIG, SAS_SKOID] {
                assert!(!row.contains(s), "table {table} holds the SAS: {row}");
            }
        }
    }
    drop(db);
    let log = local.stop().await;
    assert!(
        log.contains(&job_id) && log.contains("[query redacted]"),
        "the failure was logged:\n{log}"
    );
    for s in [SAS_SIG, SAS_SKOID] {
        if let Some(line) = log.lines().find(|l| l.contains(s)) {
            panic!("the SAS reached the logs: {line}");
        }
    }
    crate::common::drop_db(&db_name).await;
}
