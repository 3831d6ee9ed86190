//! The local queue behaves like Service Bus peek-lock: abandon redelivers with DeliveryCount + 1,
//! the max delivery count dead-letters to the poison queue with a reason, an expired lock
//! redelivers, and a scheduled message is not delivered early.

use std::time::{Duration, Instant};

use coremachine::testing::{Fault, FaultRule};
use serde_json::json;

use crate::common::TestApp;

fn job_message(job: &str) -> String {
    json!({"job_id": job, "job_type": "hello_world", "parameters": {}, "stage": 1, "attempt": 1})
        .to_string()
}

async fn enqueue(t: &TestApp, queue: &str, id: &str, body: &str, delay_s: f64) {
    t.db()
        .await
        .execute(
            "INSERT INTO app.queue_messages (queue, message_id, body, properties, visible_at) VALUES ($1, $2, $3, '{}', now() + make_interval(secs => $4))",
            &[&queue, &id, &body, &delay_s],
        )
        .await
        .unwrap();
}

async fn wait_rows(t: &TestApp, sql: &str, n: i64, timeout: Duration) {
    let c = t.db().await;
    let start = Instant::now();
    loop {
        let got: i64 = c.query_one(sql, &[]).await.unwrap().get(0);
        if got >= n {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "{sql}: {got} < {n} after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn abandon_redelivers_with_a_higher_count_then_dead_letters_to_the_poison_queue() {
    let t = TestApp::start_opts(|o| o.local_queue().max_delivery_count = 3).await;
    // Abandon every delivery of the jobs queue: the handler answers 200, the emulator abandons.
    t.fault(FaultRule::times(Fault::AbandonAfterHandler, 3));
    let job = "e".repeat(64);
    enqueue(&t, "geospatial-jobs", "m-abandon", &job_message(&job), 0.0).await;
    // Each delivery of a message for an unknown job is recorded with its DeliveryCount.
    wait_rows(
        &t,
        "SELECT count(*) FROM app.message_failures WHERE reason = 'unknown_job'",
        3,
        Duration::from_secs(20),
    )
    .await;
    // Then it is dead-lettered and the poison trigger records it (no such job or task).
    wait_rows(
        &t,
        "SELECT count(*) FROM app.message_failures WHERE reason = 'poison_unmatched'",
        1,
        Duration::from_secs(20),
    )
    .await;
    let c = t.db().await;
    let counts: Vec<i32> = c
        .query("SELECT delivery_count FROM app.message_failures WHERE reason = 'unknown_job' ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(counts, vec![1, 2, 3]);
    let err: String = c
        .query_one(
            "SELECT error_message FROM app.message_failures WHERE reason = 'poison_unmatched'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(err.contains("MaxDeliveryCountExceeded"), "{err}");
    t.wait_quiet(Duration::from_secs(10)).await;
    t.cleanup().await;
}

#[tokio::test]
async fn an_expired_lock_makes_the_message_visible_again() {
    let t =
        TestApp::start_opts(|o| o.local_queue().lock_duration = Duration::from_millis(800)).await;
    let job = "f".repeat(64);
    // A consumer locked it (delivery 1) and died: nobody completes or abandons it.
    t.db()
        .await
        .execute(
            "INSERT INTO app.queue_messages (queue, message_id, body, delivery_count, lock_token, visible_at) VALUES ('geospatial-jobs', 'm-lock', $1, 1, gen_random_uuid(), now() + interval '800 milliseconds')",
            &[&job_message(&job)],
        )
        .await
        .unwrap();
    let start = Instant::now();
    wait_rows(
        &t,
        "SELECT count(*) FROM app.message_failures WHERE reason = 'unknown_job'",
        1,
        Duration::from_secs(10),
    )
    .await;
    assert!(
        start.elapsed() >= Duration::from_millis(700),
        "delivered before the lock expired"
    );
    let dc: i32 = t
        .db()
        .await
        .query_one("SELECT delivery_count FROM app.message_failures", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(dc, 2, "the redelivery carries DeliveryCount 2");
    t.cleanup().await;
}

#[tokio::test]
async fn a_scheduled_message_is_not_delivered_early() {
    let t = TestApp::start().await;
    let job = "9".repeat(64);
    let c = t.db().await;
    let enqueued: chrono::DateTime<chrono::Utc> =
        c.query_one("SELECT now()", &[]).await.unwrap().get(0);
    enqueue(&t, "geospatial-jobs", "m-later", &job_message(&job), 1.5).await;
    wait_rows(
        &t,
        "SELECT count(*) FROM app.message_failures WHERE reason = 'unknown_job'",
        1,
        Duration::from_secs(10),
    )
    .await;
    let delivered: chrono::DateTime<chrono::Utc> = c
        .query_one("SELECT created_at FROM app.message_failures", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        (delivered - enqueued).num_milliseconds() >= 1500,
        "delivered after {} ms",
        (delivered - enqueued).num_milliseconds()
    );
    t.cleanup().await;
}
