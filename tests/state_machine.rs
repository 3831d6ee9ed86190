//! Every allowed and every forbidden status transition, job and task, against the database's own
//! enforcement (migrations/0002) — which must match engine/state.rs.

use coremachine::engine::state::{
    JOB_TRANSITIONS, JobStatus, TASK_TRANSITIONS, TaskStatus, job_can_transition,
    task_can_transition,
};

use crate::common::TestApp;

const JOB: &str = "1111111111111111111111111111111111111111111111111111111111111111";

#[tokio::test]
async fn database_transition_tables_match_the_engine() {
    let t = TestApp::start_opts(|o| o.emulator = false).await;
    let c = t.db().await;
    let mut db: Vec<(String, String)> = c
        .query(
            "SELECT from_status::text, to_status::text FROM app.job_transitions",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut code: Vec<(String, String)> = JOB_TRANSITIONS
        .iter()
        .map(|(f, t, _)| (f.to_string(), t.to_string()))
        .collect();
    db.sort();
    code.sort();
    assert_eq!(db, code);
    let mut db: Vec<(String, String)> = c
        .query(
            "SELECT from_status::text, to_status::text FROM app.task_transitions",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut code: Vec<(String, String)> = TASK_TRANSITIONS
        .iter()
        .map(|(f, t, _)| (f.to_string(), t.to_string()))
        .collect();
    db.sort();
    code.sort();
    assert_eq!(db, code);
    t.cleanup().await;
}

fn completed_at(s: JobStatus) -> &'static str {
    if s.is_terminal() { "now()" } else { "NULL" }
}

#[tokio::test]
async fn every_job_transition_pair_is_allowed_or_refused_as_the_table_says() {
    let t = TestApp::start_opts(|o| o.emulator = false).await;
    let c = t.db().await;
    c.execute(
        "INSERT INTO app.jobs (job_id, job_type) VALUES ($1, 'hello_world')",
        &[&JOB],
    )
    .await
    .unwrap();
    for from in JobStatus::ALL {
        for to in JobStatus::ALL {
            if from == to {
                continue;
            }
            c.batch_execute("ALTER TABLE app.jobs DISABLE TRIGGER enforce_job_transition")
                .await
                .unwrap();
            c.execute(
                &format!("UPDATE app.jobs SET status = '{from}', completed_at = {}, attempt = 1 WHERE job_id = $1", completed_at(from)),
                &[&JOB],
            )
            .await
            .unwrap();
            c.batch_execute("ALTER TABLE app.jobs ENABLE TRIGGER enforce_job_transition")
                .await
                .unwrap();
            let r = c
                .execute(
                    &format!(
                        "UPDATE app.jobs SET status = '{to}', completed_at = {} WHERE job_id = $1",
                        completed_at(to)
                    ),
                    &[&JOB],
                )
                .await;
            assert_eq!(
                r.is_ok(),
                job_can_transition(from, to),
                "job {from} -> {to}: {r:?}"
            );
            if let Err(e) = r {
                assert!(
                    e.as_db_error()
                        .unwrap()
                        .message()
                        .contains(&format!("cannot go from {from} to {to}"))
                );
            }
        }
    }
    // Resubmit: a failed or cancelled job may return to queued only as a new attempt.
    for from in [JobStatus::Failed, JobStatus::Cancelled] {
        c.batch_execute("ALTER TABLE app.jobs DISABLE TRIGGER enforce_job_transition")
            .await
            .unwrap();
        c.execute(&format!("UPDATE app.jobs SET status = '{from}', completed_at = now(), attempt = 1 WHERE job_id = $1"), &[&JOB]).await.unwrap();
        c.batch_execute("ALTER TABLE app.jobs ENABLE TRIGGER enforce_job_transition")
            .await
            .unwrap();
        assert!(
            c.execute(
                "UPDATE app.jobs SET status = 'queued', completed_at = NULL WHERE job_id = $1",
                &[&JOB]
            )
            .await
            .is_err()
        );
        assert!(c.execute("UPDATE app.jobs SET status = 'queued', completed_at = NULL, attempt = 2 WHERE job_id = $1", &[&JOB]).await.is_ok());
    }
    t.cleanup().await;
}

#[tokio::test]
async fn every_task_transition_pair_is_allowed_or_refused_as_the_table_says() {
    let t = TestApp::start_opts(|o| o.emulator = false).await;
    let c = t.db().await;
    c.execute(
        "INSERT INTO app.jobs (job_id, job_type) VALUES ($1, 'hello_world')",
        &[&JOB],
    )
    .await
    .unwrap();
    c.execute(
        "INSERT INTO app.tasks (task_id, parent_job_id, job_type, task_type, stage, task_seq) VALUES ('t1', $1, 'hello_world', 'x', 1, 0)",
        &[&JOB],
    )
    .await
    .unwrap();
    let lease = |s: TaskStatus| {
        if s == TaskStatus::Processing {
            "now() + interval '1 minute'"
        } else {
            "NULL"
        }
    };
    for from in TaskStatus::ALL {
        for to in TaskStatus::ALL {
            if from == to {
                continue;
            }
            c.batch_execute("ALTER TABLE app.tasks DISABLE TRIGGER enforce_task_transition")
                .await
                .unwrap();
            c.execute(&format!("UPDATE app.tasks SET status = '{from}', lease_expires_at = {} WHERE task_id = 't1'", lease(from)), &[])
                .await
                .unwrap();
            c.batch_execute("ALTER TABLE app.tasks ENABLE TRIGGER enforce_task_transition")
                .await
                .unwrap();
            let r = c
                .execute(&format!("UPDATE app.tasks SET status = '{to}', lease_expires_at = {} WHERE task_id = 't1'", lease(to)), &[])
                .await;
            assert_eq!(
                r.is_ok(),
                task_can_transition(from, to),
                "task {from} -> {to}: {r:?}"
            );
        }
    }
    // The pair (processing, processing) is a re-claim after lease expiry: allowed, and listed.
    assert!(task_can_transition(
        TaskStatus::Processing,
        TaskStatus::Processing
    ));
    t.cleanup().await;
}
