//! `coremachine serve` (the real binary, as the Functions host starts it) in Azure mode: it fails
//! fast with a clear message on missing or contradictory settings, it runs against the Service
//! Bus stand-in, and no secret (database password, shared access key, SAS token) ever reaches
//! its output, even at debug level and through a retried send.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

use crate::azure_fakes::{FakeAuth, FakeServiceBus, Scripted};
use crate::common::fresh_db;

const DB_PASSWORD: &str = "Db-Passw0rd-That-Must-Not-Leak";
const SAS_KEY: &str = "U2FzS2V5VGhhdE11c3ROb3RMZWFrMTIzNDU2Nzg5MA==";

fn connection_string() -> String {
    format!(
        "Endpoint=sb://leaktest.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey={SAS_KEY}"
    )
}

fn serve(env: &[(&str, String)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_coremachine"));
    cmd.arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "debug")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// The Service Bus stand-in, checking SAS tokens signed with [`SAS_KEY`].
async fn leaktest_broker() -> FakeServiceBus {
    FakeServiceBus::start(FakeAuth::Sas {
        namespace: "leaktest.servicebus.windows.net".into(),
        key_name: "send".into(),
        key: SAS_KEY.into(),
    })
    .await
}

/// Drops a test database (these tests run the binary, not a `TestApp`).
async fn drop_database(name: &str) {
    let (admin, conn) = tokio_postgres::connect(&crate::common::admin_url(), tokio_postgres::NoTls)
        .await
        .expect("test PostgreSQL");
    tokio::spawn(conn);
    let _ = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The host's readiness probe: `GET /` until any response (30 s, as the host allows).
async fn wait_ready(port: u16) {
    let http = reqwest::Client::new();
    let start = Instant::now();
    while http
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await
        .is_err()
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "serve answers GET /"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn assert_no_secret(output: &str) {
    for secret in [DB_PASSWORD, SAS_KEY, "SharedAccessSignature sr=", "sig="] {
        assert!(
            !output.contains(secret),
            "the output contains a secret ({secret}):\n{output}"
        );
    }
}

async fn fails_with(env: &[(&str, String)], expected: &[&str]) {
    let out = tokio::time::timeout(Duration::from_secs(30), serve(env).output())
        .await
        .expect("exits at once")
        .expect("runs");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{all}");
    for e in expected {
        assert!(all.contains(e), "expected {e:?} in:\n{all}");
    }
    assert_no_secret(&all);
}

#[tokio::test]
async fn serve_fails_fast_on_missing_or_contradictory_settings_without_showing_secrets() {
    let db = format!("postgres://app:{DB_PASSWORD}@127.0.0.1:55432/app");
    // No Service Bus at all.
    fails_with(
        &[("DATABASE_URL", db.clone())],
        &["ServiceBusConnection__fullyQualifiedNamespace"],
    )
    .await;
    // Both a connection string and a namespace.
    fails_with(
        &[
            ("DATABASE_URL", db.clone()),
            ("ServiceBusConnection", connection_string()),
            (
                "ServiceBusConnection__fullyQualifiedNamespace",
                "leaktest.servicebus.windows.net".into(),
            ),
        ],
        &["both", "ServiceBusConnection"],
    )
    .await;
    // A password together with the managed identity.
    fails_with(
        &[
            ("DATABASE_URL", db.clone()),
            ("USE_MANAGED_IDENTITY", "true".into()),
            ("ServiceBusConnection", connection_string()),
        ],
        &["USE_MANAGED_IDENTITY", "password"],
    )
    .await;
    // No database at all.
    fails_with(
        &[("ServiceBusConnection", connection_string())],
        &["DATABASE_URL", "POSTGIS_HOST"],
    )
    .await;
    // A broken connection string.
    fails_with(
        &[
            ("DATABASE_URL", db),
            (
                "ServiceBusConnection",
                format!("Endpoint=sb://leaktest.servicebus.windows.net/;SharedAccessKey={SAS_KEY}"),
            ),
        ],
        &["SharedAccessKeyName"],
    )
    .await;
}

#[tokio::test]
async fn serve_sends_through_service_bus_and_never_logs_a_secret() {
    let fake = leaktest_broker().await;
    fake.script([Scripted::status(503, "busy")]); // one retry, logged
    let (db_name, db_url) = fresh_db().await;
    let url = db_url.replace("postgres@", &format!("postgres:{DB_PASSWORD}@"));
    let port = free_port();
    let mut child = serve(&[
        ("DATABASE_URL", url),
        ("ServiceBusConnection", connection_string()),
        ("SERVICE_BUS_REST_ENDPOINT", fake.url.clone()),
        ("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string()),
    ])
    .spawn()
    .expect("serve starts");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_ready(port).await;
    let r = http
        .post(format!("{base}/api/jobs/submit/hello_world"))
        .json(&serde_json::json!({"n": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let got = fake.received();
    assert_eq!(got.len(), 1, "the stage-1 message went to Service Bus");
    assert_eq!(got[0].queue, "geospatial-jobs");
    fake.assert_clean();
    assert_eq!(
        fake.seen().iter().map(|s| s.status).collect::<Vec<_>>(),
        vec![503, 201]
    );

    child.start_kill().unwrap();
    let _ = child.wait().await;
    let mut output = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut output)
        .await
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut output)
        .await
        .unwrap();
    assert!(output.contains("SERVICE_BUS_SEND_RETRY"), "{output}");
    assert!(output.contains("SERVICE_BUS_SEND"), "{output}");
    assert_no_secret(&output);
    drop_database(&db_name).await;
}

#[tokio::test]
async fn serve_with_migrate_on_start_creates_the_schema_in_an_empty_database() {
    let fake = leaktest_broker().await;
    let name = format!("cm_empty_{}", uuid::Uuid::new_v4().simple());
    let admin_url = crate::common::admin_url();
    let (admin, conn) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
    let port = free_port();
    let mut child = serve(&[
        ("DATABASE_URL", url.clone()),
        ("MIGRATE_ON_START", "true".into()),
        ("ServiceBusConnection", connection_string()),
        ("SERVICE_BUS_REST_ENDPOINT", fake.url.clone()),
        ("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string()),
    ])
    .spawn()
    .expect("serve starts");
    wait_ready(port).await;
    let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let jobs: i64 = db
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'app' AND table_name = 'jobs'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(jobs, 1, "the migrations ran before the handler listened");
    child.start_kill().unwrap();
    let _ = child.wait().await;
    drop(db);
    drop_database(&name).await;
}
