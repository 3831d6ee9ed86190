//! Invocations as the Functions host sends them, posted straight to the trigger routes, and
//! scratch copies of the Functions layout.

use base64::Engine as _;
use serde_json::{Value, json};

use super::TestApp;

pub async fn post_invocation(t: &TestApp, function: &str, payload: &Value) -> (u16, String, Value) {
    let r = t
        .http
        .post(format!("{}/{function}", t.base))
        .json(payload)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, r.json().await.unwrap_or(Value::Null))
}

pub async fn queued_bodies(t: &TestApp, queue: &str, id: &str) -> Vec<String> {
    t.db()
        .await
        .query(
            "SELECT body FROM app.queue_messages WHERE queue = $1 AND strpos(body, $2) > 0 ORDER BY id",
            &[&queue, &id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// A batched invocation as the host sends one to a `"cardinality": "many"` function: `Data.msg`
/// and every `<Key>Array` serialised to JSON strings of arrays (functions-protocol.md, §3.3).
pub fn batch_invocation(bodies: &[&[u8]], ids: &[&str], counts: &[i32]) -> Value {
    let b64: Vec<String> = bodies
        .iter()
        .map(|b| base64::engine::general_purpose::STANDARD.encode(b))
        .collect();
    let props: Vec<Value> = bodies.iter().map(|_| json!({})).collect();
    json!({
        "Data": {"msg": json!(b64).to_string()},
        "Metadata": {
            "MessageIdArray": json!(ids).to_string(),
            "DeliveryCountArray": json!(counts).to_string(),
            "LockTokenArray": json!(ids.iter().map(|i| format!("lock-{i}")).collect::<Vec<_>>()).to_string(),
            "ApplicationPropertiesArray": json!(props).to_string(),
        }
    })
}

/// The repository's Functions layout (host.json and every function.json) copied to a scratch
/// directory, with `tasks-queue-trigger` declared `"cardinality": "many"` and batches of at most
/// `batch` messages.
pub fn layout_with_batched_tasks(batch: u64) -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("cm-layout-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut host: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("host.json")).unwrap()).unwrap();
    host["extensions"]["serviceBus"]["maxMessageBatchSize"] = json!(batch);
    std::fs::write(dir.join("host.json"), host.to_string()).unwrap();
    for e in std::fs::read_dir(root).unwrap().flatten() {
        let fj = e.path().join("function.json");
        if !fj.is_file() {
            continue;
        }
        let mut f: Value = serde_json::from_str(&std::fs::read_to_string(&fj).unwrap()).unwrap();
        if e.file_name() == "tasks-queue-trigger" {
            f["bindings"][0]["cardinality"] = json!("many");
        }
        std::fs::create_dir_all(dir.join(e.file_name())).unwrap();
        std::fs::write(dir.join(e.file_name()).join("function.json"), f.to_string()).unwrap();
    }
    dir
}
