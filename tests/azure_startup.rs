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
    let (code, stdout, stderr) = crate::common::run_to_end(serve(env)).await;
    let all = format!("{stdout}{stderr}");
    assert_eq!(code, Some(1), "{all}");
    for e in expected {
        assert!(all.contains(e), "expected {e:?} in:\n{all}");
    }
    assert_no_secret(&all);
}

/// Starts `serve` on a free port against `fake` with `DATABASE_URL` and `extra` settings, and
/// returns it with its base URL once it answers `GET /`.
async fn start_serve(
    fake: &FakeServiceBus,
    db_url: String,
    extra: &[(&str, String)],
) -> (tokio::process::Child, String) {
    let port = free_port();
    let mut env = vec![
        ("DATABASE_URL", db_url),
        ("ServiceBusConnection", connection_string()),
        ("SERVICE_BUS_REST_ENDPOINT", fake.url.clone()),
        ("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string()),
    ];
    env.extend(extra.iter().cloned());
    let child = serve(&env).spawn().expect("serve starts");
    wait_ready(port).await;
    (child, format!("http://127.0.0.1:{port}"))
}

/// Submits a `hello_world` job through `serve`'s API; asserts 201.
async fn submit_hello_world(base: &str) {
    let r = reqwest::Client::new()
        .post(format!("{base}/api/jobs/submit/hello_world"))
        .json(&serde_json::json!({"n": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
}

/// Stops a `serve` child and returns its stdout and stderr.
async fn stop_and_read_output(mut child: tokio::process::Child) -> String {
    child.start_kill().unwrap();
    let _ = child.wait().await;
    let mut output = String::new();
    let mut out = child.stdout.take().unwrap();
    out.read_to_string(&mut output).await.unwrap();
    let mut err = child.stderr.take().unwrap();
    err.read_to_string(&mut output).await.unwrap();
    output
}

/// One `count(*)` on the database at `url`.
async fn count(url: &str, sql: &str) -> i64 {
    let (db, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    db.query_one(sql, &[]).await.unwrap().get(0)
}

/// Creates an empty database (no schema) on the test cluster.
async fn create_empty_db(name: &str) {
    let (admin, conn) = tokio_postgres::connect(&crate::common::admin_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
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
    // A connection string and a namespace: the string wins, as in the host (see below).
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
    let (child, base) = start_serve(&fake, url, &[]).await;
    submit_hello_world(&base).await;
    let got = fake.received();
    assert_eq!(got.len(), 1, "the stage-1 message went to Service Bus");
    assert_eq!(got[0].queue, "geospatial-jobs");
    fake.assert_clean();
    assert_eq!(
        fake.seen().iter().map(|s| s.status).collect::<Vec<_>>(),
        vec![503, 201]
    );

    let output = stop_and_read_output(child).await;
    assert!(output.contains("SERVICE_BUS_SEND_RETRY"), "{output}");
    assert!(output.contains("SERVICE_BUS_SEND"), "{output}");
    assert_no_secret(&output);
    crate::common::drop_db(&db_name).await;
}

#[tokio::test]
async fn serve_with_migrate_on_start_creates_the_schema_in_an_empty_database() {
    let fake = leaktest_broker().await;
    let name = format!("cm_empty_{}", uuid::Uuid::new_v4().simple());
    let admin_url = crate::common::admin_url();
    create_empty_db(&name).await;
    let url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
    let (mut child, base) =
        start_serve(&fake, url.clone(), &[("MIGRATE_ON_START", "true".into())]).await;
    let http = reqwest::Client::new();
    // The port answers first; the migrations run behind it and health turns 200 when done.
    wait_health(&http, &base, 200).await;
    let jobs = count(
        &url,
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'app' AND table_name = 'jobs'",
    )
    .await;
    assert_eq!(jobs, 1, "the migrations ran when the handler started");
    child.start_kill().unwrap();
    let _ = child.wait().await;
    crate::common::drop_db(&name).await;
}

/// A TCP proxy in front of the test cluster that can be "down" (nothing listens on its port:
/// connections are refused, as with a stopped PostgreSQL) or "up" (it forwards). Going down
/// closes every forwarded connection, as a database restart does.
struct DbProxy {
    port: u16,
    upstream: String,
    running: Option<(
        tokio_util::sync::CancellationToken,
        tokio::task::JoinHandle<()>,
    )>,
}

impl DbProxy {
    fn new() -> Self {
        let admin = url::Url::parse(&crate::common::admin_url()).unwrap();
        let upstream = format!(
            "{}:{}",
            admin.host_str().unwrap(),
            admin.port().unwrap_or(5432)
        );
        Self {
            port: free_port(),
            upstream,
            running: None,
        }
    }

    async fn up(&mut self) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket
            .bind(([127, 0, 0, 1], self.port).into())
            .expect("the proxy's port is still free");
        let listener = socket.listen(64).unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let (sd, upstream) = (stop.clone(), self.upstream.clone());
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    _ = sd.cancelled() => break,
                    Ok((mut inbound, _)) = listener.accept() => {
                        let upstream = upstream.clone();
                        conns.spawn(async move {
                            if let Ok(mut out) = tokio::net::TcpStream::connect(upstream).await {
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                            }
                        });
                    }
                }
            }
            // Dropping the set aborts every forwarded connection.
            conns.abort_all();
        });
        self.running = Some((stop, task));
    }

    async fn down(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            stop.cancel();
            let _ = task.await;
        }
    }
}

/// A queue-trigger invocation as the host sends it (`dataType: binary`).
fn invocation(body: &str) -> serde_json::Value {
    use base64::Engine as _;
    serde_json::json!({
        "Data": {"msg": base64::engine::general_purpose::STANDARD.encode(body)},
        "Metadata": {"DeliveryCount": "1", "MessageId": "\"m-1\""}
    })
}

async fn health(http: &reqwest::Client, base: &str) -> (u16, serde_json::Value) {
    let r = http.get(format!("{base}/api/health")).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn wait_health(http: &reqwest::Client, base: &str, want: u16) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let (s, b) = health(http, base).await;
        if s == want {
            return b;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "health stayed {s}, expected {want}: {b}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The first deployment (#12 point 1): `serve` with MIGRATE_ON_START and the database down binds
/// anyway, says why in health, abandons invocations with the cause, migrates when the database
/// comes up, and survives the database going away and coming back later.
#[tokio::test]
async fn serve_with_the_database_down_answers_abandons_invocations_and_recovers_when_it_returns() {
    let fake = leaktest_broker().await;
    let name = format!("cm_down_{}", uuid::Uuid::new_v4().simple());
    let admin_url = crate::common::admin_url();
    create_empty_db(&name).await;
    let mut proxy = DbProxy::new();
    let user = url::Url::parse(&admin_url).unwrap().username().to_string();
    let url = format!(
        "postgres://{user}:{DB_PASSWORD}@127.0.0.1:{}/{name}",
        proxy.port
    );
    let (mut child, base) = start_serve(&fake, url, &[("MIGRATE_ON_START", "true".into())]).await;
    let http = reqwest::Client::new();

    // Down: health 503 with the cause, invocations abandoned (non-2xx) with a JSON cause.
    // (GET / answers before the first connection attempt has failed: wait for that failure.)
    let h = loop {
        let (s, h) = health(&http, &base).await;
        assert_eq!(s, 503, "{h}");
        assert_eq!(h["components"]["readiness"]["ready"], false, "{h}");
        if h["components"]["readiness"]["attempts"].as_u64() >= Some(1) {
            break h;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let cause = h["components"]["readiness"]["cause"].as_str().unwrap();
    assert!(cause.contains("database unreachable"), "{h}");
    assert!(!h.to_string().contains(DB_PASSWORD), "{h}");
    let job_message = serde_json::json!({"job_id": "c".repeat(64), "job_type": "hello_world", "stage": 1, "parameters": {}}).to_string();
    let r = http
        .post(format!("{base}/jobs-queue-trigger"))
        .json(&invocation(&job_message))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(b["error"], "not_ready", "{b}");
    assert!(
        b["cause"]
            .as_str()
            .unwrap()
            .contains("database unreachable"),
        "{b}"
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "serve is still running"
    );

    // Up: the migrations run by themselves, health turns 200, work proceeds.
    proxy.up().await;
    let h = wait_health(&http, &base, 200).await;
    assert_eq!(h["components"]["readiness"]["ready"], true, "{h}");
    submit_hello_world(&base).await;
    let stage1 = fake.take_received();
    assert_eq!(stage1.len(), 1);
    let r = http
        .post(format!("{base}/jobs-queue-trigger"))
        .json(&invocation(&stage1[0].body))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    let tasks = fake.take_received();
    assert_eq!(tasks.len(), 2, "stage 1 fanned out to two task messages");

    // The database goes away later: no exit, health says so, the invocation is abandoned.
    proxy.down().await;
    wait_health(&http, &base, 503).await;
    let r = http
        .post(format!("{base}/tasks-queue-trigger"))
        .json(&invocation(&tasks[0].body))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503, "abandoned, not completed");
    assert!(
        child.try_wait().unwrap().is_none(),
        "serve is still running"
    );

    // It returns: everything proceeds by itself.
    proxy.up().await;
    wait_health(&http, &base, 200).await;
    for t in &tasks {
        let r = http
            .post(format!("{base}/tasks-queue-trigger"))
            .json(&invocation(&t.body))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    }
    let db_url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
    let done = count(
        &db_url,
        "SELECT count(*) FROM app.tasks WHERE status = 'completed'",
    )
    .await;
    assert_eq!(done, 2);

    let output = stop_and_read_output(child).await;
    assert!(output.contains("SCHEMA_NOT_READY"), "{output}");
    assert!(output.contains("SCHEMA_READY"), "{output}");
    assert_no_secret(&output);
    proxy.down().await;
    crate::common::drop_db(&name).await;
}

/// #12 point 6: with both `ServiceBusConnection` (a string) and
/// `ServiceBusConnection__fullyQualifiedNamespace`, the host's listener uses the string; so does
/// `serve`, with one warning naming both, instead of exiting with a config error.
#[tokio::test]
async fn serve_with_a_connection_string_and_a_namespace_uses_the_string_and_warns_once() {
    let fake = leaktest_broker().await;
    let (db_name, db_url) = fresh_db().await;
    let (child, base) = start_serve(
        &fake,
        db_url,
        &[(
            "ServiceBusConnection__fullyQualifiedNamespace",
            "other.servicebus.windows.net".into(),
        )],
    )
    .await;
    submit_hello_world(&base).await;
    assert_eq!(
        fake.received().len(),
        1,
        "sent with the connection string's SAS"
    );
    fake.assert_clean();
    let output = stop_and_read_output(child).await;
    let warnings: Vec<&str> = output
        .lines()
        .filter(|l| l.contains("ServiceBusConnection__fullyQualifiedNamespace"))
        .collect();
    assert_eq!(warnings.len(), 1, "{output}");
    assert!(warnings[0].contains("WARN"), "{}", warnings[0]);
    assert!(
        warnings[0].contains("the connection string ServiceBusConnection"),
        "{}",
        warnings[0]
    );
    assert_no_secret(&output);
    crate::common::drop_db(&db_name).await;
}
