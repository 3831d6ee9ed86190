//! The janitor: audits and repairs what a crash or a lost message can leave behind. Each run is
//! recorded in `app.janitor_runs` and as checkpoints.
//!
//! 1. Tasks whose lease expired (their worker died): re-queued through the outbox while retries
//!    remain, otherwise failed (and the stage policy applies).
//! 2. Stages of processing jobs with no live task left but never ended: ended now (advance,
//!    finalize or fail), under the job row lock so a racing completion cannot advance twice.
//! 3. Queued jobs whose stage message was lost: the message is re-driven (at most 3 times per
//!    stage, then the job fails with the reason).
//! 4. Outbox rows older than `OUTBOX_REPUBLISH_AFTER_S`: published.
//! 5. Retention (src/retention.rs): finished jobs and old events deleted in bounded batches; what
//!    went is one `retention` action of the run.

use std::time::Instant;

use serde_json::{Value, json};

use crate::engine::Engine;
use crate::engine::events::{self, Event, EventStatus};
use crate::engine::messages::JobMessage;
use crate::jobs::{TaskContext, TaskError};
use crate::store::{self, QueryContext, StoreError, sql};
use crate::telemetry::checkpoints as cp;
use crate::transport::outbox::Outbox;

/// What one run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JanitorReport {
    /// Run id.
    pub run_id: String,
    /// Problems found.
    pub found: i32,
    /// Problems repaired.
    pub fixed: i32,
    /// One entry per action.
    pub actions: Vec<Value>,
}

const BATCH: i64 = 500;
const MAX_REDRIVES: i64 = 3;

/// Runs every check once.
pub async fn run_once(engine: &Engine) -> Result<JanitorReport, StoreError> {
    let started = Instant::now();
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    {
        let c = store::client(engine.pool(), "starting a janitor run").await?;
        c.execute(sql::JANITOR_RUN_START, &[&run_id, &"all"])
            .await
            .ctx(|| "recording janitor run".into())?;
    }
    cp::emit(
        cp::JANITOR_RUN_STARTED,
        &cp::Fields::default().extra("run_id", &run_id),
    );
    let mut report = JanitorReport {
        run_id: run_id.clone(),
        found: 0,
        fixed: 0,
        actions: Vec::new(),
    };
    let result = checks(engine, &mut report).await;
    let (status, error) = match &result {
        Ok(()) => ("completed", None),
        Err(e) => ("failed", Some(e.to_string())),
    };
    let c = store::client(engine.pool(), "finishing a janitor run").await?;
    c.execute(
        sql::JANITOR_RUN_FINISH,
        &[
            &run_id,
            &(started.elapsed().as_millis() as i32),
            &status,
            &report.found,
            &report.fixed,
            &Value::Array(report.actions.clone()),
            &error,
        ],
    )
    .await
    .ctx(|| format!("recording the end of janitor run {run_id}"))?;
    let fields = cp::Fields::default()
        .extra("run_id", &run_id)
        .extra("found", report.found)
        .extra("fixed", report.fixed)
        .duration_ms(started.elapsed().as_millis() as u64);
    match result {
        Ok(()) => {
            cp::emit(cp::JANITOR_RUN_COMPLETED, &fields);
            Ok(report)
        }
        Err(e) => {
            cp::emit_error(cp::JANITOR_RUN_FAILED, &fields, "JanitorError", &e);
            Err(e)
        }
    }
}

async fn checks(engine: &Engine, report: &mut JanitorReport) -> Result<(), StoreError> {
    expired_leases(engine, report).await?;
    stalled_stages(engine, report).await?;
    stuck_queued_jobs(engine, report).await?;
    let age = engine.settings().outbox_republish_after.as_secs_f64();
    match engine.publish_stale(age, 10_000).await {
        Ok(n) if n > 0 => {
            report.found += n as i32;
            report.fixed += n as i32;
            report
                .actions
                .push(json!({"action": "outbox_republished", "count": n}));
            cp::emit(
                cp::JANITOR_OUTBOX_REPUBLISHED,
                &cp::Fields::default().extra("count", n),
            );
        }
        Ok(_) => {}
        Err(e) => {
            report.found += 1;
            report
                .actions
                .push(json!({"action": "outbox_republish_failed", "error": e.to_string()}));
        }
    }
    match crate::retention::apply(engine.pool(), &engine.settings().retention).await {
        Ok(r) if r.rows() > 0 || r.jobs_losing_events > 0 || !r.finished => {
            report.found += (r.completed_jobs + r.failed_jobs + r.jobs_losing_events) as i32;
            report.fixed += (r.completed_jobs + r.failed_jobs + r.jobs_losing_events) as i32;
            report
                .actions
                .push(json!({"action": "retention", "report": r}));
        }
        Ok(_) => {}
        Err(e) => {
            report.found += 1;
            report
                .actions
                .push(json!({"action": "retention_failed", "error": e.to_string()}));
        }
    }
    Ok(())
}

async fn expired_leases(engine: &Engine, report: &mut JanitorReport) -> Result<(), StoreError> {
    let rows = {
        let c = store::client(engine.pool(), "finding expired task leases").await?;
        c.query(sql::JANITOR_EXPIRED_LEASES, &[&BATCH])
            .await
            .ctx(|| "finding expired task leases".into())?
    };
    for r in rows {
        report.found += 1;
        let retry_count: i32 = r.get(7);
        let ctx = TaskContext {
            task_id: r.get(0),
            job_id: r.get(1),
            job_type: r.get(2),
            task_type: r.get(3),
            stage: r.get(4),
            task_index: r.get(5),
            parameters: r.get(6),
            attempt: retry_count + 1,
            correlation_id: r.get(9),
        };
        let retries_left = (retry_count as u32) < engine.settings().retry.max_retries;
        let err = TaskError::transient(
            "LeaseExpired",
            format!(
                "the task's lease expired during attempt {} (its worker stopped); found by the janitor",
                retry_count + 1
            ),
        );
        let fields = cp::Fields::job(&ctx.job_id)
            .task(&ctx.task_id)
            .stage(ctx.stage)
            .attempt(ctx.attempt);
        let task_id = ctx.task_id.clone();
        match engine.fail_attempt(ctx, retry_count, err).await {
            Ok(_) => {
                report.fixed += 1;
                let (action, checkpoint) = if retries_left {
                    ("lease_expired_requeued", cp::JANITOR_LEASE_EXPIRED_REQUEUED)
                } else {
                    ("lease_expired_failed", cp::JANITOR_LEASE_EXPIRED_FAILED)
                };
                report.actions.push(json!({"action": action, "task_id": task_id}));
                cp::emit_warn(checkpoint, &fields);
            }
            Err(e) => report.actions.push(json!({"action": "lease_expired_repair_failed", "task_id": task_id, "error": e.to_string()})),
        }
    }
    Ok(())
}

async fn stalled_stages(engine: &Engine, report: &mut JanitorReport) -> Result<(), StoreError> {
    let rows = {
        let c = store::client(engine.pool(), "finding stalled stages").await?;
        c.query(sql::JANITOR_STALLED_STAGES, &[&BATCH])
            .await
            .ctx(|| "finding stalled stages".into())?
    };
    for r in rows {
        let (job_id, stage): (String, i32) = (r.get(0), r.get(1));
        report.found += 1;
        match engine.repair_stalled_stage(&job_id, stage).await {
            Ok(true) => {
                report.fixed += 1;
                report.actions.push(json!({"action": "stage_ended", "job_id": job_id, "stage": stage}));
                cp::emit_warn(cp::JANITOR_STAGE_ADVANCED, &cp::Fields::job(&job_id).stage(stage));
            }
            Ok(false) => report.actions.push(json!({"action": "stage_already_moved_on", "job_id": job_id, "stage": stage})),
            Err(e) => report.actions.push(json!({"action": "stage_repair_failed", "job_id": job_id, "stage": stage, "error": e.to_string()})),
        }
    }
    Ok(())
}

async fn stuck_queued_jobs(engine: &Engine, report: &mut JanitorReport) -> Result<(), StoreError> {
    let rows = {
        let c = store::client(engine.pool(), "finding stuck queued jobs").await?;
        c.query(
            sql::JANITOR_STUCK_QUEUED_JOBS,
            &[&engine.settings().janitor_stuck_after.as_secs_f64(), &BATCH],
        )
        .await
        .ctx(|| "finding stuck queued jobs".into())?
    };
    for r in rows {
        let job_id: String = r.get(0);
        let job_type: String = r.get(1);
        let stage: i32 = r.get(3);
        let attempt: i32 = r.get(4);
        let correlation: Option<String> = r.get(5);
        let traceparent: Option<String> = r.get(6);
        let redrives: i64 = r.get(7);
        report.found += 1;
        let mut c = store::client(engine.pool(), "re-driving a queued job").await?;
        let tx = c
            .transaction()
            .await
            .ctx(|| format!("re-driving job {job_id}"))?;
        let fields = cp::Fields::job(&job_id)
            .job_type(&job_type)
            .stage(stage)
            .attempt(attempt);
        if redrives >= MAX_REDRIVES {
            if let Some((job, _, _)) = crate::engine::load_job_ctx(&tx, &job_id).await? {
                let reason = format!(
                    "job stayed queued at stage {stage} after {redrives} re-driven stage messages; giving up"
                );
                engine.fail_job(&tx, &job, stage, &reason).await?;
            }
            tx.commit()
                .await
                .ctx(|| format!("failing stuck job {job_id}"))?;
            report.fixed += 1;
            report
                .actions
                .push(json!({"action": "stuck_job_failed", "job_id": job_id, "stage": stage}));
            cp::emit_warn(cp::JANITOR_JOB_FAILED, &fields);
            continue;
        }
        let mut msg = JobMessage::new(&job_id, &job_type, r.get(2), stage, attempt, correlation);
        msg.retry_count = redrives as i32 + 1;
        let mut out = msg.to_outbound(&engine.settings().queues.jobs, traceparent.as_deref());
        // A fresh MessageId: the original was lost, so duplicate detection must not drop this one.
        out.message_id = format!("{}:r{}", out.message_id, redrives + 1);
        let ids = Outbox::write(&tx, &[out]).await?;
        events::write(
            &tx,
            &[Event::job(
                &job_id,
                "job_redriven",
                EventStatus::Warning,
                cp::JANITOR_JOB_REDRIVEN,
            )
            .stage(stage)
            .attempt(attempt)
            .data(json!({"redrive": redrives + 1}))],
        )
        .await?;
        tx.execute(sql::JOB_TOUCH, &[&job_id])
            .await
            .ctx(|| format!("touching job {job_id}"))?;
        tx.commit()
            .await
            .ctx(|| format!("re-driving job {job_id}"))?;
        let _ = engine.outbox().publish(&ids).await;
        report.fixed += 1;
        report
            .actions
            .push(json!({"action": "job_redriven", "job_id": job_id, "stage": stage}));
        cp::emit_warn(cp::JANITOR_JOB_REDRIVEN, &fields);
    }
    Ok(())
}
