//! The circuit breaker of the Azure clients (src/azure/breaker.rs) against the Service Bus
//! stand-in: a namespace that answers 503 for a while, then recovers. The breaker counts calls
//! that gave up (each call here makes one attempt: `SERVICE_BUS_SEND_MAX_RETRIES=0`). While the breaker is open no
//! request reaches the broker (counted at the fake), callers get a transient error at once, the
//! work waits in the outbox, and after the recovery every message arrives exactly once.

use std::time::Duration;

use serde_json::{Value, json};

use crate::azure_fakes::{FakeServiceBus, Scripted};
use crate::azure_service_bus::{
    Tokens, azure_mode_app, play_host, sas_fake_auth, sender, task_msg,
};

const FAST_BREAKER: &[(&str, &str)] = &[
    ("SERVICE_BUS_SEND_MAX_RETRIES", "0"),
    ("AZURE_BREAKER_FAILURES", "3"),
    ("AZURE_BREAKER_COOL_DOWN_S", "1"),
];

#[tokio::test]
async fn an_open_breaker_makes_no_request_fails_fast_and_a_probe_closes_it() {
    let fake = FakeServiceBus::bearer("t1").await;
    fake.script((0..4).map(|_| Scripted::status(503, "The server is busy.")));
    let s = sender(&fake, Tokens::new("t1", "t2"), FAST_BREAKER);

    // Three calls given up in a row (503) open the breaker.
    for i in 0..3 {
        let e = s
            .send_all(&[task_msg(i, 10)])
            .await
            .expect_err("the namespace is down");
        assert!(e.retryable && e.status == Some(503), "{e}");
    }
    assert_eq!(fake.seen().len(), 3);

    // While open: a transient error at once, and nothing reaches the broker.
    for _ in 0..5 {
        let e = s.send_all(&[task_msg(1, 10)]).await.expect_err("open");
        assert!(
            e.retryable && e.message.contains("circuit breaker open"),
            "{e}"
        );
        assert!(
            e.message.contains("The server is busy."),
            "names the last failure: {e}"
        );
    }
    assert_eq!(fake.seen().len(), 3, "no request while the breaker is open");

    // After the cool-down one probe goes out; it fails (the 4th 503), so the breaker opens again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    s.send_all(&[task_msg(2, 10)])
        .await
        .expect_err("the probe failed");
    assert_eq!(fake.seen().len(), 4, "exactly one probe");
    s.send_all(&[task_msg(2, 10)])
        .await
        .expect_err("open again");
    assert_eq!(fake.seen().len(), 4);

    // The next probe succeeds: closed, and calls go through normally.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    s.send_all(&[task_msg(3, 10)])
        .await
        .expect("the probe succeeds");
    s.send_all(&[task_msg(4, 10), task_msg(5, 10)])
        .await
        .expect("closed");
    let statuses: Vec<u16> = fake.seen().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![503, 503, 503, 503, 201, 201]);
    let ids: Vec<String> = fake
        .received()
        .iter()
        .map(|m| m.message_id().to_string())
        .collect();
    assert_eq!(
        ids,
        vec![
            task_msg(3, 0).message_id,
            task_msg(4, 0).message_id,
            task_msg(5, 0).message_id
        ]
    );
    fake.assert_clean();
}

#[tokio::test]
async fn failed_attempts_that_a_retry_absorbs_do_not_open_the_breaker() {
    // Even a breaker that opens on the first call given up stays closed while retries succeed
    // (a burst of timeouts or 503s under load): it counts calls, not attempts.
    let fake = FakeServiceBus::bearer("t1").await;
    let s = sender(
        &fake,
        Tokens::new("t1", "t2"),
        &[
            ("AZURE_BREAKER_FAILURES", "1"),
            ("SERVICE_BUS_SEND_MAX_RETRIES", "3"),
        ],
    );
    for i in 0..3 {
        fake.script((0..2).map(|_| Scripted::status(503, "The server is busy.")));
        s.send_all(&[task_msg(i, 10)])
            .await
            .expect("sent after retries");
    }
    let statuses: Vec<u16> = fake.seen().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 503, 201].repeat(3));
    assert_eq!(fake.received().len(), 3);
}

#[tokio::test]
async fn refusals_4xx_never_open_the_breaker() {
    // A refusal (403 quota) says the namespace is up: no amount of them opens the breaker.
    let fake = FakeServiceBus::bearer("t1").await;
    fake.script((0..5).map(|_| Scripted::status(403, "quota exceeded")));
    let s = sender(&fake, Tokens::new("t1", "t2"), FAST_BREAKER);
    for i in 0..5 {
        let e = s.send_all(&[task_msg(i, 10)]).await.expect_err("403");
        assert_eq!(e.status, Some(403), "{e}");
    }
    s.send_all(&[task_msg(9, 10)]).await.expect("still closed");
    assert_eq!(fake.seen().len(), 6);
}

fn breaker_of<'a>(health: &'a Value, fake: &FakeServiceBus) -> &'a Value {
    health["circuit_breakers"]
        .as_array()
        .expect("circuit_breakers in health")
        .iter()
        .find(|b| b["endpoint"] == format!("Service Bus {}", fake.url))
        .unwrap_or_else(|| panic!("no breaker for {} in {health}", fake.url))
}

#[tokio::test]
async fn a_namespace_down_for_a_while_loses_no_message_and_health_shows_the_breaker() {
    let fake = FakeServiceBus::start(sas_fake_auth()).await;
    fake.script((0..4).map(|_| Scripted::status(503, "The server is busy.")));
    let app = azure_mode_app(&fake, FAST_BREAKER, |o| {
        o.settings.outbox_republish_after = Duration::ZERO;
        let coremachine::config::TransportSettings::ServiceBus(sb) = &mut o.settings.transport
        else {
            panic!("the app sends through Service Bus")
        };
        sb.retry.base_delay = Duration::from_millis(20);
        sb.breaker.cool_down = Duration::from_secs(2);
    })
    .await;
    let (_, health) = app.get("/api/health").await;
    assert_eq!(breaker_of(&health, &fake)["state"], "closed", "{health}");

    // The submit's publish fails (503) and leaves its outbox row.
    let job = app.submit("hello_world", json!({"n": 3})).await;
    assert_eq!(fake.seen().len(), 1);
    // The janitor's republishes meet the second and third 503: the breaker opens.
    let janitor = || coremachine::janitor::run_once(app.engine());
    janitor().await.expect("janitor");
    janitor().await.expect("janitor");
    assert_eq!(fake.seen().len(), 3);
    let (status, health) = app.get("/api/health").await;
    assert_eq!(
        status, 200,
        "an open breaker is not an unhealthy instance: {health}"
    );
    let b = breaker_of(&health, &fake);
    assert_eq!(b["state"], "open", "{health}");
    assert_eq!(b["consecutive_failures"], 3, "{health}");
    assert!(
        b["last_error"]
            .as_str()
            .unwrap()
            .contains("The server is busy."),
        "{health}"
    );

    // While open, further janitor runs send nothing; the row stays.
    janitor().await.expect("janitor");
    janitor().await.expect("janitor");
    assert_eq!(fake.seen().len(), 3, "no request while open");
    let c = app.db().await;
    let outbox = async || -> i64 {
        c.query_one("SELECT count(*) FROM app.outbox", &[])
            .await
            .unwrap()
            .get(0)
    };
    assert_eq!(outbox().await, 1, "the work waits in the outbox");
    let (_, health) = app.get("/api/health").await;
    assert!(
        breaker_of(&health, &fake)["calls_rejected"]
            .as_u64()
            .unwrap()
            >= 2,
        "{health}"
    );

    // Half-open after the cool-down: the probe meets the 4th 503 and the breaker opens again.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    janitor().await.expect("janitor");
    assert_eq!(fake.seen().len(), 4, "one probe");
    assert_eq!(outbox().await, 1);

    // The namespace has recovered: the next probe publishes the row, and the job runs.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    janitor().await.expect("janitor");
    assert_eq!(outbox().await, 0, "published");
    let (_, health) = app.get("/api/health").await;
    assert_eq!(breaker_of(&health, &fake)["state"], "closed", "{health}");
    let delivered = play_host(&app, &fake).await;
    assert_eq!(
        app.wait_terminal(&job, Duration::from_secs(30)).await,
        "completed",
        "{}",
        app.dump(&job).await
    );
    // hello_world n=3: 2 stage messages + 3 tasks in each of 2 stages, each exactly once.
    assert_eq!(delivered, 2 + 2 * 3);
    assert_eq!(fake.duplicates(), 0);
    fake.assert_clean();
    app.cleanup().await;
}
