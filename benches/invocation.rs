//! Handler overhead: decoding one Functions host invocation of `tasks-queue-trigger` (the
//! Service Bus binary payload of tests/fixtures/servicebus_binary.json carrying a task message)
//! and encoding the response. Target: ≤ 20 µs per invocation (docs/performance.md).
//!
//! `cargo bench --bench invocation`; `cargo test --all-targets` runs it once as a smoke test.

use base64::Engine as _;
use coremachine::engine::messages::TaskMessage;
use coremachine::handler::invocation::{decode_queue_invocation, response_body};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn payload() -> Vec<u8> {
    let job = "a".repeat(64);
    let task = "b".repeat(64);
    let body = serde_json::json!({
        "task_id": task, "parent_job_id": job, "job_type": "noop_fanout", "task_type": "noop",
        "stage": 1, "task_index": "42", "parameters": {"i": 42}, "parent_task_id": null,
        "retry_count": 0, "timestamp": "2026-12-01T08:00:00.000000Z", "correlation_id": null,
        "job_attempt": 1
    })
    .to_string();
    let fixture = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/servicebus_binary.json"
    ))
    .expect("fixture exists");
    fixture
        .replace(
            "__BASE64__",
            &base64::engine::general_purpose::STANDARD.encode(body),
        )
        .replace("__JOB__", &job)
        .into_bytes()
}

fn decode_and_respond(c: &mut Criterion) {
    let raw = payload();
    c.bench_function(
        "decode invocation + parse task message + encode response",
        |b| {
            b.iter(|| {
                let inv = decode_queue_invocation(
                    "tasks-queue-trigger",
                    black_box(&raw),
                    Some("0f9c0c9b-9f0f-4a5b-8a3e-7d1c0a2b3c4d".into()),
                );
                let msg: TaskMessage = serde_json::from_str(&inv.body).expect("task message");
                let logs = vec![format!("task {} completed", msg.task_id)];
                black_box(response_body(&logs).to_string())
            })
        },
    );
}

criterion_group!(benches, decode_and_respond);
criterion_main!(benches);
