//! The page's views at real job sizes, through the HTTP routes: the task table of a 2 x 1,000-task
//! job paged by cursor (failures first, totals always given, every task exactly once), and the job
//! list searched by id prefix, status, type and creation time, paged.

use std::collections::HashSet;
use std::time::Duration;

use coremachine::testing::{Fault, FaultRule};
use serde_json::{Value, json};

use crate::common::TestApp;

const T: Duration = Duration::from_secs(120);

/// A `shapes_tolerant` job of 1,000 tasks whose stage-1 tasks 5 and 700 fail (tolerated) and whose
/// 998 stage-2 tasks all fail transiently once and wait five minutes for their retry: the job is
/// running at stage 2. Returns the app and the job id.
pub async fn job_running_at_stage_two() -> (TestApp, String) {
    let t = TestApp::start_opts(|o| {
        o.settings.retry.base_delay = Duration::from_secs(300);
        o.settings.retry.max_delay = Duration::from_secs(300);
    })
    .await;
    t.fault(FaultRule::always(Fault::HandlerTransient).on_stage(2));
    let id = t
        .submit(
            "shapes_tolerant",
            json!({"tasks": 1000, "fail": [5, 700], "run": "views"}),
        )
        .await;
    let db = t.db().await;
    let start = std::time::Instant::now();
    loop {
        let waiting: i64 = db
            .query_one(
                "SELECT count(*) FROM app.tasks WHERE parent_job_id = $1 AND stage = 2 AND status = 'queued' AND retry_count = 1",
                &[&id],
            )
            .await
            .unwrap()
            .get(0);
        if waiting == 998 {
            break;
        }
        assert!(
            start.elapsed() < T,
            "stage 2 not waiting: {}",
            t.dump(&id).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (t, id)
}

#[tokio::test]
async fn the_task_view_of_a_2x1000_task_job_pages_failures_first_and_always_gives_the_totals() {
    let (t, id) = job_running_at_stage_two().await;
    let base = format!("/api/ui/data/jobs/{id}/tasks");
    let (s, first) = t.get(&format!("{base}?limit=500")).await;
    assert_eq!(s, 200, "{first}");
    assert_eq!(first["total"], 1998);
    assert_eq!(first["matching"], 1998);
    assert_eq!(first["totals"]["by_status"]["failed"], 2);
    assert_eq!(first["totals"]["by_status"]["queued"], 998);
    assert_eq!(first["totals"]["by_status"]["completed"], 998);
    let head: Vec<(i64, i64, &str)> = first["tasks"].as_array().unwrap()[..3]
        .iter()
        .map(|t| {
            (
                t["stage"].as_i64().unwrap(),
                t["task_seq"].as_i64().unwrap(),
                t["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        head,
        vec![(1, 5, "failed"), (1, 700, "failed"), (2, 0, "queued")],
        "failures first, then the running stage's tasks"
    );

    // Every task exactly once across the pages, each page no larger than asked.
    let mut seen = HashSet::new();
    let mut page: Value = first;
    let mut pages = 1;
    loop {
        let rows = page["tasks"].as_array().unwrap();
        assert!(rows.len() <= 500);
        for r in rows {
            assert!(seen.insert(r["task_id"].as_str().unwrap().to_string()));
        }
        let Some(next) = page["next_cursor"].as_str() else {
            break;
        };
        let (s, p) = t.get(&format!("{base}?limit=500&cursor={next}")).await;
        assert_eq!(s, 200, "{p}");
        assert_eq!(p["total"], 1998, "the total is on every page");
        page = p;
        pages += 1;
    }
    assert_eq!((seen.len(), pages), (1998, 4));

    let (_, failed) = t.get(&format!("{base}?status=failed")).await;
    assert_eq!(failed["matching"], 2);
    assert_eq!(failed["count"], 2);
    assert_eq!(failed["next_cursor"], Value::Null);
    let (_, stage2) = t.get(&format!("{base}?stage=2&limit=10")).await;
    assert_eq!(stage2["matching"], 998);
    assert!(stage2["next_cursor"].is_string());
    for bad in ["cursor=nope", "status=lost", "stage=0"] {
        let (s, b) = t.get(&format!("{base}?{bad}")).await;
        assert_eq!(s, 400, "{bad}: {b}");
    }
    t.cleanup().await;
}

#[tokio::test]
async fn the_job_list_is_searched_by_id_prefix_status_type_and_time_and_paged() {
    let t = TestApp::start().await;
    let mut ids = Vec::new();
    for n in 1..=3 {
        let id = t.submit("hello_world", json!({"n": n})).await;
        assert_eq!(t.wait_terminal(&id, T).await, "completed");
        ids.push(id);
    }
    let (s, found) = t
        .get(&format!(
            "/api/ui/data/jobs?q={}",
            &ids[1][..12].to_uppercase()
        ))
        .await;
    assert_eq!(s, 200, "{found}");
    assert_eq!(found["count"], 1);
    assert_eq!(found["jobs"][0]["job_id"], ids[1].as_str());
    let job = &found["jobs"][0];
    assert_eq!(job["attempt"], 1);
    assert_eq!(job["done_tasks"], job["task_count"]);
    assert_eq!(
        job["task_count"], 4,
        "hello_world n=2: two stages of 2 tasks"
    );

    // Paged one at a time, newest first, every job once.
    let mut walked = Vec::new();
    let mut cursor = String::new();
    loop {
        let (s, p) = t
            .get(&format!("/api/ui/data/jobs?limit=1&cursor={cursor}"))
            .await;
        assert_eq!(s, 200, "{p}");
        walked.extend(
            p["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["job_id"].as_str().unwrap().to_string()),
        );
        match p["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(walked, newest_first);

    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (_, none) = t
        .get(&format!("/api/ui/data/jobs?since={}", urlencode(&future)))
        .await;
    assert_eq!(none["count"], 0);
    let (_, all) = t
        .get(&format!(
            "/api/ui/data/jobs?until={}&status=completed&job_type=hello_world",
            urlencode(&future)
        ))
        .await;
    assert_eq!(all["count"], 3);
    for (bad, field) in [
        ("q=xyz", "query.q"),
        ("since=yesterday", "query.since"),
        ("cursor=nope", "query.cursor"),
    ] {
        let (s, b) = t.get(&format!("/api/ui/data/jobs?{bad}")).await;
        assert_eq!(s, 400, "{bad}: {b}");
        assert_eq!(b["details"][0]["field"], field, "{b}");
    }
    t.cleanup().await;
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}
