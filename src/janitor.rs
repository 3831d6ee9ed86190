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
use crate::jobs::TaskError;
use crate::store::janitor::{self as runs, RunEnd, RunStatus, StuckJob};
use crate::store::{self, QueryContext, StoreError, Transaction, jobs};
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
        runs::start_run(&c, &run_id, "all").await?;
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
        Ok(()) => (RunStatus::Completed, None),
        Err(e) => (RunStatus::Failed, Some(e.to_string())),
    };
    let c = store::client(engine.pool(), "finishing a janitor run").await?;
    runs::finish_run(
        &c,
        &RunEnd {
            run_id: &run_id,
            duration_ms: started.elapsed().as_millis() as i32,
            status,
            found: report.found,
            fixed: report.fixed,
            actions: Value::Array(report.actions.clone()),
            error,
        },
    )
    .await?;
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
    let leases = {
        let c = store::client(engine.pool(), "finding expired task leases").await?;
        runs::expired_leases(&c, BATCH).await?
    };
    for (lease, claim_token) in leases {
        report.found += 1;
        let retry_count = lease.retry_count;
        let retries_left = (retry_count as u32) < engine.settings().retry.max_retries;
        let err = TaskError::transient(
            "LeaseExpired",
            format!(
                "the task's lease expired during attempt {} (its worker stopped); found by the janitor",
                retry_count + 1
            ),
        );
        let fields = cp::Fields::job(&lease.job_id)
            .task(&lease.task_id)
            .stage(lease.stage)
            .attempt(retry_count + 1);
        let task_id = lease.task_id.clone();
        match engine.fail_attempt(lease.into(), retry_count, Some(claim_token), err).await {
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
    let stalled = {
        let c = store::client(engine.pool(), "finding stalled stages").await?;
        runs::stalled_stages(&c, BATCH).await?
    };
    for s in stalled {
        let (job_id, stage) = (s.job_id, s.stage);
        report.found += 1;
        match engine.repair_stalled_stage(job_id.as_str(), stage).await {
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

/// What the janitor does with a queued job whose stage message was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StuckAction {
    /// Send its stage message again (re-drive number `n`, 1-based).
    Redrive(i64),
    /// It was re-driven [`MAX_REDRIVES`] times already: fail it.
    GiveUp,
}

/// Decides from how often the job's stage message was already re-driven.
fn stuck_action(redrives: i64) -> StuckAction {
    if redrives >= MAX_REDRIVES {
        StuckAction::GiveUp
    } else {
        StuckAction::Redrive(redrives + 1)
    }
}

async fn stuck_queued_jobs(engine: &Engine, report: &mut JanitorReport) -> Result<(), StoreError> {
    let stuck = {
        let c = store::client(engine.pool(), "finding stuck queued jobs").await?;
        let after = engine.settings().janitor_stuck_after.as_secs_f64();
        runs::stuck_queued_jobs(&c, after, BATCH).await?
    };
    for job in stuck {
        report.found += 1;
        let job_id = &job.job_id;
        let mut c = store::client(engine.pool(), "re-driving a queued job").await?;
        let tx = c
            .transaction()
            .await
            .ctx(|| format!("re-driving job {job_id}"))?;
        let fields = cp::Fields::job(job_id)
            .job_type(&job.job_type)
            .stage(job.stage)
            .attempt(job.attempt);
        let (action, checkpoint) = match stuck_action(job.redrives) {
            StuckAction::GiveUp => {
                give_up(engine, &tx, &job).await?;
                tx.commit()
                    .await
                    .ctx(|| format!("failing stuck job {job_id}"))?;
                ("stuck_job_failed", cp::JANITOR_JOB_FAILED)
            }
            StuckAction::Redrive(n) => {
                let ids = redrive(engine, &tx, &job, n).await?;
                tx.commit()
                    .await
                    .ctx(|| format!("re-driving job {job_id}"))?;
                let _ = engine.outbox().publish(&ids).await;
                ("job_redriven", cp::JANITOR_JOB_REDRIVEN)
            }
        };
        report.fixed += 1;
        report
            .actions
            .push(json!({"action": action, "job_id": job_id, "stage": job.stage}));
        cp::emit_warn(checkpoint, &fields);
    }
    Ok(())
}

/// Inside `tx`: fails a job whose stage message was lost too often.
async fn give_up(engine: &Engine, tx: &Transaction<'_>, job: &StuckJob) -> Result<(), StoreError> {
    if let Some((ctx, _, _)) = crate::engine::load_job_ctx(tx, job.job_id.as_str()).await? {
        let reason = format!(
            "job stayed queued at stage {} after {} re-driven stage messages; giving up",
            job.stage, job.redrives
        );
        engine.fail_job(tx, &ctx, job.stage, &reason).await?;
    }
    Ok(())
}

/// Inside `tx`: sends a lost stage message again (re-drive number `n`) with its event. Returns
/// the outbox ids to publish.
async fn redrive(
    engine: &Engine,
    tx: &Transaction<'_>,
    job: &StuckJob,
    n: i64,
) -> Result<Vec<i64>, StoreError> {
    let mut msg = JobMessage::new(
        job.job_id.as_str(),
        &job.job_type,
        job.parameters.clone(),
        job.stage,
        job.attempt,
        job.correlation_id.clone(),
    );
    msg.retry_count = n as i32;
    let mut out = msg.to_outbound(&engine.settings().queues.jobs, job.traceparent.as_deref());
    // A fresh MessageId: the original was lost, so duplicate detection must not drop this one.
    out.message_id = format!("{}:r{n}", out.message_id);
    let ids = Outbox::write(tx, &[out]).await?;
    events::write(
        tx,
        &[Event::job(
            &job.job_id,
            "job_redriven",
            EventStatus::Warning,
            cp::JANITOR_JOB_REDRIVEN,
        )
        .stage(job.stage)
        .attempt(job.attempt)
        .data(json!({"redrive": n}))],
    )
    .await?;
    jobs::touch(tx, &job.job_id).await?;
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_stage_message_is_re_driven_three_times_then_the_job_fails() {
        let cases = [
            (0, StuckAction::Redrive(1)),
            (1, StuckAction::Redrive(2)),
            (2, StuckAction::Redrive(3)),
            (3, StuckAction::GiveUp),
            (7, StuckAction::GiveUp),
        ];
        for (redrives, want) in cases {
            assert_eq!(stuck_action(redrives), want, "{redrives}");
        }
    }
}
