//! The Service Bus REST sender against the stand-in of functions-protocol.md §5: wire format,
//! batching, retries, give-ups and their error messages, SAS, and a whole job run by `serve`
//! (Azure mode) with the test playing the Functions host.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::{TimeZone, Utc};
use coremachine::azure::credential::{AccessToken, CredentialError, TokenSource};
use coremachine::config::{ServiceBusSettings, TransportSettings};
use coremachine::transport::OutboundMessage;
use coremachine::transport::service_bus::ServiceBusSender;
use futures::future::BoxFuture;
use serde_json::{Map, Value, json};

use crate::azure_fakes::{FakeAuth, FakeServiceBus, Scripted};
use crate::common::TestApp;

/// A token source the test controls: `token()` gives the current token, `refresh()` switches to
/// `fresh` and counts.
#[derive(Debug)]
pub(crate) struct Tokens {
    current: std::sync::Mutex<String>,
    fresh: String,
    refreshes: AtomicUsize,
}

impl Tokens {
    pub(crate) fn new(current: &str, fresh: &str) -> Arc<Self> {
        Arc::new(Self {
            current: std::sync::Mutex::new(current.into()),
            fresh: fresh.into(),
            refreshes: AtomicUsize::new(0),
        })
    }
}

impl TokenSource for Tokens {
    fn token<'a>(&'a self, scope: &'a str) -> BoxFuture<'a, Result<AccessToken, CredentialError>> {
        assert_eq!(scope, "https://servicebus.azure.net/.default");
        let t = self.current.lock().unwrap().clone();
        Box::pin(async move {
            Ok(AccessToken::bearer(
                t,
                Utc::now() + chrono::Duration::hours(1),
            ))
        })
    }
    fn refresh<'a>(
        &'a self,
        _scope: &'a str,
    ) -> BoxFuture<'a, Result<AccessToken, CredentialError>> {
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        *self.current.lock().unwrap() = self.fresh.clone();
        Box::pin(async move {
            Ok(AccessToken::bearer(
                self.fresh.clone(),
                Utc::now() + chrono::Duration::hours(1),
            ))
        })
    }
    fn describe(&self) -> String {
        "test tokens".into()
    }
}

fn settings(fake: &FakeServiceBus, extra: &[(&str, &str)]) -> ServiceBusSettings {
    let mut m: HashMap<String, String> = HashMap::from([
        (
            "ServiceBusConnection__fullyQualifiedNamespace".into(),
            "ns.servicebus.windows.net".into(),
        ),
        ("SERVICE_BUS_REST_ENDPOINT".into(), fake.url.clone()),
    ]);
    for (k, v) in extra {
        m.insert(k.to_string(), v.to_string());
    }
    let mut s = ServiceBusSettings::from_lookup(&|k: &str| m.get(k).cloned()).expect("settings");
    s.retry.base_delay = Duration::from_millis(20);
    s.retry.max_delay = Duration::from_millis(200);
    s
}

pub(crate) fn sender(
    fake: &FakeServiceBus,
    tokens: Arc<Tokens>,
    extra: &[(&str, &str)],
) -> ServiceBusSender {
    ServiceBusSender::with_token_source(settings(fake, extra), tokens, None).expect("sender")
}

const JOB: &str = "149580b8d06f0036537a68bbf149ba9f4e72160438cab4c08ce63591081a61e1";

pub(crate) fn task_msg(i: usize, body_len: usize) -> OutboundMessage {
    let task = format!("{:064x}", i + 1);
    let mut properties = Map::new();
    properties.insert("job_id".into(), json!(JOB));
    properties.insert("task_id".into(), json!(task));
    properties.insert("stage".into(), json!(2));
    properties.insert(
        "traceparent".into(),
        json!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    );
    OutboundMessage {
        queue: "geospatial-tasks".into(),
        message_id: format!("{task}:0"),
        body: json!({"task_id": task, "parent_job_id": JOB, "pad": "x".repeat(body_len)})
            .to_string(),
        properties,
        correlation_id: Some("corr-1".into()),
        scheduled_at: None,
        job_id: Some(JOB.into()),
    }
}

#[tokio::test]
async fn a_single_message_carries_broker_properties_and_property_headers() {
    let fake = FakeServiceBus::bearer("t1").await;
    let s = sender(
        &fake,
        Tokens::new("t1", "t2"),
        &[("SERVICE_BUS_MESSAGE_TTL_S", "86400")],
    );
    let mut m = task_msg(0, 10);
    m.scheduled_at = Some(Utc.with_ymd_and_hms(2030, 11, 6, 8, 49, 37).unwrap());
    s.send_all(std::slice::from_ref(&m)).await.expect("sent");
    fake.assert_clean();
    let got = fake.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert!(!r.batch);
    assert_eq!(r.queue, "geospatial-tasks");
    assert_eq!(r.body, m.body);
    assert_eq!(r.broker["MessageId"], json!(m.message_id));
    assert_eq!(r.broker["CorrelationId"], json!("corr-1"));
    assert_eq!(
        r.broker["ScheduledEnqueueTimeUtc"],
        json!("Wed, 06 Nov 2030 08:49:37 GMT")
    );
    assert_eq!(r.broker["TimeToLive"], json!(86400));
    assert_eq!(r.properties["job_id"], json!(JOB));
    assert_eq!(r.properties["stage"], json!(2), "numbers stay numbers");
    assert_eq!(r.properties["task_id"], m.properties["task_id"]);
    assert_eq!(r.properties["traceparent"], m.properties["traceparent"]);
    // #18.6: the Service Bus SDK under the Functions host reads the trace context from
    // Diagnostic-Id unless its ActivitySource support is switched on (the default is off).
    assert_eq!(r.properties["Diagnostic-Id"], m.properties["traceparent"]);
    assert_eq!(fake.seen()[0].authorization, "Bearer t1");
}

#[tokio::test]
async fn many_messages_go_in_batches_of_at_most_100_in_order() {
    let fake = FakeServiceBus::bearer("t1").await;
    let s = sender(&fake, Tokens::new("t1", "t2"), &[]);
    let mut ms: Vec<_> = (0..250).map(|i| task_msg(i, 10)).collect();
    let mut job = task_msg(999, 10);
    job.queue = "geospatial-jobs".into();
    job.message_id = format!("{JOB}:s2:a1");
    ms.push(job);
    s.send_all(&ms).await.expect("sent");
    fake.assert_clean();
    let mut per_request: Vec<(String, usize)> = fake
        .seen()
        .iter()
        .map(|r| (r.queue.clone(), r.messages))
        .collect();
    per_request.sort();
    assert_eq!(
        per_request,
        vec![
            ("geospatial-jobs".into(), 1),
            ("geospatial-tasks".into(), 50),
            ("geospatial-tasks".into(), 100),
            ("geospatial-tasks".into(), 100),
        ]
    );
    let got = fake.received();
    // Batched messages carry Diagnostic-Id beside traceparent too (in their UserProperties).
    assert!(
        got.iter()
            .all(|r| r.properties.get("Diagnostic-Id").is_some()
                && r.properties["Diagnostic-Id"] == r.properties["traceparent"]),
        "Diagnostic-Id in every message"
    );
    let tasks: Vec<&str> = got
        .iter()
        .filter(|r| r.queue == "geospatial-tasks")
        .map(|r| r.message_id())
        .collect();
    assert_eq!(tasks.len(), 250);
    assert!(
        got.iter()
            .filter(|r| r.queue == "geospatial-tasks")
            .all(|r| r.batch)
    );
    // Batch members keep their application properties (request headers do not apply to them).
    assert!(got.iter().all(|r| r.properties["job_id"] == json!(JOB)));
}

#[tokio::test]
async fn batches_are_split_by_size_so_no_request_exceeds_the_limit() {
    let fake = FakeServiceBus::bearer("t1").await;
    let s = sender(
        &fake,
        Tokens::new("t1", "t2"),
        &[("SERVICE_BUS_MAX_BATCH_BYTES", "20000")],
    );
    let ms: Vec<_> = (0..30).map(|i| task_msg(i, 3_000)).collect();
    s.send_all(&ms).await.expect("sent");
    fake.assert_clean();
    let seen = fake.seen();
    assert!(seen.iter().all(|r| r.body_bytes <= 20_000), "{seen:?}");
    assert!(seen.len() >= 5, "{} requests", seen.len());
    assert_eq!(fake.received().len(), 30);
}

#[tokio::test]
async fn a_message_over_the_size_limit_is_refused_before_anything_is_sent() {
    let fake = FakeServiceBus::bearer("t1").await;
    let s = sender(&fake, Tokens::new("t1", "t2"), &[]);
    let mut ms: Vec<_> = (0..5).map(|i| task_msg(i, 10)).collect();
    ms.push(task_msg(7, 300 * 1024));
    let e = s.send_all(&ms).await.expect_err("too large");
    assert!(!e.retryable);
    let text = e.to_string();
    let task = ms[5].properties["task_id"].as_str().unwrap();
    assert!(text.contains(JOB) && text.contains(task), "{text}");
    assert!(text.contains("262144-byte"), "{text}");
    assert!(fake.seen().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn a_429_waits_for_retry_after_then_succeeds() {
    let fake = FakeServiceBus::bearer("t1").await;
    fake.script([Scripted::throttled(1)]);
    let s = sender(&fake, Tokens::new("t1", "t2"), &[]);
    s.send_all(&[task_msg(0, 10)])
        .await
        .expect("sent after the throttle");
    let seen = fake.seen();
    assert_eq!(
        seen.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![429, 201]
    );
    let gap = seen[1].at - seen[0].at;
    assert!(
        gap >= Duration::from_millis(950),
        "Retry-After: 1 was honoured ({gap:?})"
    );
    assert_eq!(fake.received().len(), 1);
}

#[tokio::test]
async fn a_503_is_retried_with_backoff() {
    let fake = FakeServiceBus::bearer("t1").await;
    fake.script([
        Scripted::status(503, "ServerBusy"),
        Scripted::status(503, "ServerBusy"),
    ]);
    let s = sender(&fake, Tokens::new("t1", "t2"), &[]);
    s.send_all(&[task_msg(0, 10), task_msg(1, 10)])
        .await
        .expect("sent");
    let statuses: Vec<u16> = fake.seen().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![503, 503, 201]);
    assert_eq!(fake.received().len(), 2);
}

#[tokio::test]
async fn persistent_503_gives_up_with_a_transient_error_naming_the_queue_and_the_broker_message() {
    let fake = FakeServiceBus::bearer("t1").await;
    fake.script((0..10).map(|_| Scripted::status(503, "The server is busy.")));
    let s = sender(
        &fake,
        Tokens::new("t1", "t2"),
        &[("SERVICE_BUS_SEND_MAX_RETRIES", "2")],
    );
    let e = s.send_all(&[task_msg(0, 10)]).await.expect_err("gives up");
    assert!(e.retryable);
    assert_eq!(e.status, Some(503));
    assert_eq!(e.queue, "geospatial-tasks");
    let text = e.to_string();
    assert!(
        text.contains("geospatial-tasks") && text.contains("The server is busy."),
        "{text}"
    );
    assert!(text.contains("3 attempts"), "{text}");
    assert_eq!(fake.seen().len(), 3);
}

#[tokio::test]
async fn a_401_refreshes_the_token_once_and_succeeds() {
    let fake = FakeServiceBus::bearer("fresh").await;
    let tokens = Tokens::new("stale", "fresh");
    let s = sender(&fake, tokens.clone(), &[]);
    s.send_all(&[task_msg(0, 10)])
        .await
        .expect("sent after refresh");
    let seen = fake.seen();
    assert_eq!(
        seen.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![401, 201]
    );
    assert_eq!(seen[0].authorization, "Bearer stale");
    assert_eq!(seen[1].authorization, "Bearer fresh");
    assert_eq!(tokens.refreshes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_second_401_after_the_refresh_fails_at_once() {
    let fake = FakeServiceBus::bearer("nobody-has-this").await;
    let tokens = Tokens::new("stale", "also-refused");
    let s = sender(&fake, tokens.clone(), &[]);
    let e = s.send_all(&[task_msg(0, 10)]).await.expect_err("refused");
    assert!(!e.retryable);
    assert_eq!(e.status, Some(401));
    assert!(e.to_string().contains("after a token refresh"), "{e}");
    assert_eq!(fake.seen().len(), 2);
    assert_eq!(tokens.refreshes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn permanent_statuses_fail_at_once_with_queue_status_and_broker_message() {
    for (status, detail) in [
        (400, "The request body is malformed."),
        (
            403,
            "SubCode=40301. The maximum message size has been exceeded.",
        ),
        (403, "Quota exceeded: the entity is full."),
        (
            410,
            "The messaging entity 'geospatial-tasks' could not be found.",
        ),
        (404, "MessagingEntityNotFound"),
    ] {
        let fake = FakeServiceBus::bearer("t1").await;
        fake.script([Scripted::status(status, detail)]);
        let s = sender(&fake, Tokens::new("t1", "t2"), &[]);
        let e = s.send_all(&[task_msg(0, 10)]).await.expect_err("permanent");
        assert!(!e.retryable, "{status}");
        assert_eq!(e.status, Some(status));
        let text = e.to_string();
        assert!(
            text.contains("Service Bus queue geospatial-tasks")
                && text.contains(detail)
                && text.contains(&format!("HTTP {status}"))
                && text.contains(JOB),
            "{text}"
        );
        assert_eq!(fake.seen().len(), 1, "{status} is not retried");
    }
}

const SAS_KEY: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seQ==";

pub(crate) fn sas_fake_auth() -> FakeAuth {
    FakeAuth::Sas {
        namespace: "sbtest.servicebus.windows.net".into(),
        key_name: "RootManageSharedAccessKey".into(),
        key: SAS_KEY.into(),
    }
}

fn sas_connection() -> String {
    format!(
        "Endpoint=sb://sbtest.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={SAS_KEY}"
    )
}

#[tokio::test]
async fn a_sas_connection_string_signs_tokens_the_broker_accepts() {
    let fake = FakeServiceBus::start(sas_fake_auth()).await;
    let m: HashMap<&str, String> = HashMap::from([
        ("ServiceBusConnection", sas_connection()),
        ("SERVICE_BUS_REST_ENDPOINT", fake.url.clone()),
    ]);
    let settings = ServiceBusSettings::from_lookup(&|k: &str| m.get(k).cloned()).unwrap();
    let s = ServiceBusSender::new(settings).unwrap();
    let mut job = task_msg(0, 10);
    job.queue = "geospatial-jobs".into();
    s.send_all(&[job, task_msg(1, 10), task_msg(2, 10)])
        .await
        .expect("sent");
    fake.assert_clean();
    assert!(fake.seen().iter().all(|r| r.status == 201));
    assert!(
        fake.seen()[0]
            .authorization
            .starts_with("SharedAccessSignature sr=https%3A%2F%2Fsbtest")
    );

    // A wrong key is refused (401), refreshed once, refused again: a clear permanent error.
    let m: HashMap<&str, String> = HashMap::from([
        (
            "ServiceBusConnection",
            sas_connection().replace(SAS_KEY, "d3Jvbmcta2V5"),
        ),
        ("SERVICE_BUS_REST_ENDPOINT", fake.url.clone()),
    ]);
    let s = ServiceBusSender::new(
        ServiceBusSettings::from_lookup(&|k: &str| m.get(k).cloned()).unwrap(),
    )
    .unwrap();
    let e = s.send_all(&[task_msg(3, 10)]).await.expect_err("wrong key");
    assert_eq!(e.status, Some(401));
    assert!(
        !e.to_string().contains("d3Jvbmcta2V5"),
        "the key is never shown: {e}"
    );
}

/// CoreMachine in Azure mode (`serve`: no emulator, Service Bus transport) talking to `fake`
/// with the SAS connection string.
pub(crate) async fn azure_mode_app(
    fake: &FakeServiceBus,
    extra: &[(&str, &str)],
    f: impl FnOnce(&mut crate::common::Opts),
) -> TestApp {
    let mut m: HashMap<&str, String> = HashMap::from([
        ("ServiceBusConnection", sas_connection()),
        ("SERVICE_BUS_REST_ENDPOINT", fake.url.clone()),
    ]);
    for (k, v) in extra {
        m.insert(k, v.to_string());
    }
    let sb = ServiceBusSettings::from_lookup(&|k: &str| m.get(k).cloned()).unwrap();
    TestApp::start_opts(|o| {
        o.emulator = false;
        o.settings.transport = TransportSettings::ServiceBus(sb);
        f(o);
    })
    .await
}

/// Delivers what the fake broker holds to the handler as the Functions host would
/// (`dataType: binary`, functions-protocol.md §3), until nothing is left.
pub(crate) async fn play_host(app: &TestApp, fake: &FakeServiceBus) -> usize {
    play_host_recording(app, fake).await.len()
}

/// [`play_host`], returning every delivered message as (queue, body).
async fn play_host_recording(app: &TestApp, fake: &FakeServiceBus) -> Vec<(String, String)> {
    let http = reqwest::Client::new();
    let mut delivered = Vec::new();
    loop {
        let batch = fake.take_received();
        if batch.is_empty() {
            return delivered;
        }
        for m in batch {
            let function = match m.queue.as_str() {
                "geospatial-jobs" => "jobs-queue-trigger",
                "geospatial-tasks" => "tasks-queue-trigger",
                other => panic!("unexpected queue {other}"),
            };
            let q = |s: &str| serde_json::to_string(s).unwrap();
            let mut meta = Map::new();
            meta.insert("DeliveryCount".into(), json!("1"));
            meta.insert("MessageId".into(), json!(q(m.message_id())));
            if let Some(c) = m.broker.get("CorrelationId").and_then(Value::as_str) {
                meta.insert("CorrelationId".into(), json!(q(c)));
            }
            meta.insert(
                "ApplicationProperties".into(),
                Value::Object(m.properties.clone()),
            );
            meta.insert("UserProperties".into(), Value::Object(m.properties.clone()));
            let payload = json!({
                "Data": {"msg": base64::engine::general_purpose::STANDARD.encode(m.body.as_bytes())},
                "Metadata": meta,
            });
            let r = http
                .post(format!("{}/{function}", app.base))
                .header(
                    "X-Azure-Functions-InvocationId",
                    uuid::Uuid::new_v4().to_string(),
                )
                .json(&payload)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{function}: {}", r.status());
            delivered.push((m.queue.clone(), m.body.clone()));
        }
    }
}

/// The host emulator delivers the local queue only: local mode with Service Bus settings is
/// refused at start-up, naming the conflict, instead of running an emulator with nothing to
/// deliver.
#[tokio::test]
async fn local_mode_with_service_bus_settings_refuses_to_start() {
    let mut o = crate::common::Opts::new("postgres://postgres@127.0.0.1:9/none");
    o.settings.transport = TransportSettings::ServiceBus(
        ServiceBusSettings::from_lookup(&|k: &str| {
            (k == "ServiceBusConnection").then(sas_connection)
        })
        .unwrap(),
    );
    let started = coremachine::local::start(
        coremachine::local::LocalOptions {
            settings: o.settings,
            port: 0,
            app_root: env!("CARGO_MANIFEST_DIR").into(),
            emulator: true,
            migrate: false,
            max_concurrent_calls: None,
            unsafe_no_auth: false,
        },
        o.registry,
        coremachine::startup::Seams::default(),
    )
    .await;
    let e = started
        .expect_err("the emulator needs the local queue")
        .to_string();
    assert!(
        e.contains("local queue") && e.contains("Service Bus"),
        "{e}"
    );
}

#[tokio::test]
async fn serve_mode_runs_a_job_end_to_end_through_the_service_bus_rest_api() {
    let fake = FakeServiceBus::start(sas_fake_auth()).await;
    let app = azure_mode_app(&fake, &[], |_| {}).await;
    let (s, health) = app.get("/api/health").await;
    assert_eq!(s, 200, "{health}");
    assert!(health.to_string().contains("service_bus"), "{health}");
    let job = app.submit("hello_world", json!({"n": 12})).await;
    let started = Instant::now();
    let delivered = play_host(&app, &fake).await;
    let status = app.wait_terminal(&job, Duration::from_secs(30)).await;
    assert_eq!(status, "completed", "{}", app.dump(&job).await);
    fake.assert_clean();
    // hello_world: 2 stage messages + 12 tasks in each of its 2 stages, each delivered once.
    assert_eq!(
        delivered,
        2 + 2 * 12,
        "deliveries in {:?}",
        started.elapsed()
    );
    assert_eq!(fake.duplicates(), 0);
    let c = app.db().await;
    let count = async |sql: &str| -> i64 { c.query_one(sql, &[]).await.unwrap().get(0) };
    let outbox = count("SELECT count(*) FROM app.outbox").await;
    assert_eq!(outbox, 0, "every outbox row was published and deleted");
    let local = count("SELECT count(*) FROM app.queue_messages").await;
    assert_eq!(local, 0, "nothing went to the local queue");
    app.cleanup().await;
}

#[tokio::test]
async fn a_failed_send_leaves_the_outbox_row_and_the_janitor_republishes_it() {
    let fake = FakeServiceBus::start(sas_fake_auth()).await;
    // The submit's publish is throttled until the sender gives up (no retries allowed).
    fake.script([Scripted::status(503, "busy")]);
    let app = azure_mode_app(&fake, &[("SERVICE_BUS_SEND_MAX_RETRIES", "0")], |o| {
        o.settings.outbox_republish_after = Duration::ZERO;
    })
    .await;
    let job = app.submit("hello_world", json!({"n": 2})).await;
    let c = app.db().await;
    let left: i64 = c
        .query_one("SELECT count(*) FROM app.outbox", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 1, "the failed publish left its row");
    assert!(fake.received().is_empty());
    // The janitor republishes it through the same sender, with the same MessageId.
    coremachine::janitor::run_once(app.engine())
        .await
        .expect("janitor");
    let got = fake.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message_id(), format!("{job}:s1:a1"));
    play_host(&app, &fake).await;
    assert_eq!(
        app.wait_terminal(&job, Duration::from_secs(30)).await,
        "completed"
    );
    app.cleanup().await;
}

/// Fails the first `failures` token requests with a transient error.
#[derive(Debug)]
struct FlakyTokens {
    failures: AtomicUsize,
    calls: AtomicUsize,
}

impl TokenSource for FlakyTokens {
    fn token<'a>(&'a self, scope: &'a str) -> BoxFuture<'a, Result<AccessToken, CredentialError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let fail = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        Box::pin(async move {
            if fail {
                Err(CredentialError::Acquire {
                    credential: "flaky test identity".into(),
                    scope: scope.into(),
                    message: "HTTP 503 from the identity endpoint".into(),
                    retryable: true,
                })
            } else {
                Ok(AccessToken::bearer(
                    "t1",
                    Utc::now() + chrono::Duration::hours(1),
                ))
            }
        })
    }
    fn refresh<'a>(
        &'a self,
        scope: &'a str,
    ) -> BoxFuture<'a, Result<AccessToken, CredentialError>> {
        self.token(scope)
    }
    fn describe(&self) -> String {
        "flaky test identity".into()
    }
}

#[tokio::test]
async fn a_busy_token_endpoint_is_retried_and_a_dead_one_gives_a_transient_error() {
    let fake = FakeServiceBus::bearer("t1").await;
    let tokens = Arc::new(FlakyTokens {
        failures: AtomicUsize::new(2),
        calls: AtomicUsize::new(0),
    });
    let s =
        ServiceBusSender::with_token_source(settings(&fake, &[]), tokens.clone(), None).unwrap();
    s.send_all(&[task_msg(0, 10)])
        .await
        .expect("sent once the identity answers");
    assert_eq!(tokens.calls.load(Ordering::SeqCst), 3);
    assert_eq!(fake.seen().len(), 1, "no request went out without a token");

    let fake = FakeServiceBus::bearer("t1").await;
    let tokens = Arc::new(FlakyTokens {
        failures: AtomicUsize::new(100),
        calls: AtomicUsize::new(0),
    });
    let s = ServiceBusSender::with_token_source(
        settings(&fake, &[("SERVICE_BUS_SEND_MAX_RETRIES", "2")]),
        tokens.clone(),
        None,
    )
    .unwrap();
    let e = s.send_all(&[task_msg(0, 10)]).await.expect_err("no token");
    assert!(e.retryable, "the outbox row stays for the janitor: {e}");
    assert!(e.to_string().contains("identity endpoint"), "{e}");
    assert_eq!(tokens.calls.load(Ordering::SeqCst), 3);
    assert!(fake.seen().is_empty());
}

#[tokio::test]
async fn a_message_the_broker_refuses_for_good_fails_its_job_instead_of_waiting_forever() {
    let fake = FakeServiceBus::start(sas_fake_auth()).await;
    // The submit's stage message is refused: the queue is full, which no retry can change.
    fake.script([Scripted::status(403, "Quota exceeded: the entity is full.")]);
    let app = azure_mode_app(&fake, &[], |o| {
        o.settings.outbox_republish_after = Duration::ZERO;
    })
    .await;
    let job = app.submit("hello_world", json!({"n": 2})).await;
    let status = app.wait_terminal(&job, Duration::from_secs(30)).await;
    assert_eq!(status, "failed", "{}", app.dump(&job).await);
    let c = app.db().await;
    let error: String = c
        .query_one(
            "SELECT error_details FROM app.jobs WHERE job_id = $1",
            &[&job],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        error.contains("geospatial-jobs")
            && error.contains("HTTP 403")
            && error.contains("Quota exceeded: the entity is full."),
        "error_details names the queue, the status and the broker's answer: {error}"
    );
    let event: Value = c
        .query_one(
            "SELECT event_data FROM app.job_events WHERE job_id = $1 AND event_type = 'job_failed'",
            &[&job],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(event["details"]["unsendable"], true, "{event}");
    assert_eq!(event["details"]["status"], 403, "{event}");
    assert!(
        event["details"]["first_message"]
            .as_str()
            .is_some_and(|b| b.contains(&job)),
        "the refused message is kept in the event: {event}"
    );
    let left: i64 = c
        .query_one("SELECT count(*) FROM app.outbox", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "no row is left for the janitor to retry forever");
    let report = coremachine::janitor::run_once(app.engine()).await.unwrap();
    assert!(
        !report.actions.iter().any(|a| a["action"]
            .as_str()
            .is_some_and(|s| s.starts_with("outbox"))),
        "the janitor finds nothing to republish: {:?}",
        report.actions
    );
    assert!(fake.received().is_empty(), "nothing was accepted");
    app.cleanup().await;
}

#[tokio::test]
async fn a_task_whose_parameters_exceed_the_message_size_limit_runs_from_its_task_row() {
    // A fan-in task receiving thousands of results has parameters far over Service Bus's 256 KB.
    let fake = FakeServiceBus::start(sas_fake_auth()).await;
    let app = azure_mode_app(&fake, &[], |_| {}).await;
    let size = 600_000;
    let job = app.submit("bulky", json!({"size": size})).await;
    let delivered = play_host_recording(&app, &fake).await;
    let status = app.wait_terminal(&job, Duration::from_secs(30)).await;
    assert_eq!(status, "completed", "{}", app.dump(&job).await);
    fake.assert_clean();
    let (_, body) = delivered
        .iter()
        .find(|(q, _)| q == "geospatial-tasks")
        .expect("the task message was sent");
    assert!(body.len() < 4096, "task message of {} bytes", body.len());
    let msg: Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        msg["parameters"]["stored_in_database"],
        json!(true),
        "{msg}"
    );
    let result: Value = app
        .db()
        .await
        .query_one(
            "SELECT result_data FROM app.tasks WHERE parent_job_id = $1",
            &[&job],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        result["payload_len"],
        json!(size),
        "the handler saw the full parameters, read from the task row"
    );
    app.cleanup().await;
}
