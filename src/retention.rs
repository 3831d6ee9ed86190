//! Retention: finished jobs and their rows are deleted after a while, in bounded batches.
//!
//! At 100,000 tasks a job and two events a task, `app.tasks` and `app.job_events` grow by
//! millions of rows a day; nothing else ever removes them. The policy (settings, all in days,
//! 0 = keep forever):
//!
//! | rule | setting | default | what goes |
//! |---|---|---|---|
//! | completed jobs | `RETENTION_COMPLETED_DAYS` | 30 | a `completed` / `completed_with_errors` job, its stages, tasks, archived tasks, events and message failures |
//! | failed jobs | `RETENTION_FAILED_DAYS` | 90 | the same for `failed` and `cancelled` jobs |
//! | events of completed jobs | `RETENTION_EVENTS_DAYS` | 14 | only the `job_events` rows; the job and its tasks stay until their own rule |
//!
//! Age is counted from `completed_at`. Every delete is one statement of at most
//! `RETENTION_BATCH_ROWS` rows (5,000) over at most 100 jobs, committed on its own, with a
//! pause of `RETENTION_BATCH_PAUSE_MS` between batches, so no statement holds many locks or a
//! long transaction; and every statement re-checks, under `FOR SHARE`, that the job is still
//! finished and old enough (a job resubmitted meanwhile keeps its rows). A run stops after
//! `RETENTION_MAX_RUN_S` and the next one continues. The janitor runs it after its repairs; each
//! run is a row in `app.janitor_runs` (`run_type = 'retention'`) and a `RETENTION_RUN_COMPLETED`
//! checkpoint; `coremachine purge --dry-run` shows what would go.
//!
//! Job ids are content-addressed (submit is idempotent): once a job is deleted, submitting the
//! same type and parameters creates a new job with the same id.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::config::RetentionSettings;
use crate::store::{self, QueryContext, StoreError, sql};
use crate::telemetry::checkpoints as cp;
use deadpool_postgres::Pool;

/// Jobs handled by one batch statement.
const JOBS_PER_BATCH: i64 = 100;

/// What a retention run deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PurgeReport {
    /// Janitor run id (`app.janitor_runs`).
    pub run_id: String,
    /// Completed jobs deleted.
    pub completed_jobs: i64,
    /// Failed or cancelled jobs deleted.
    pub failed_jobs: i64,
    /// Task rows deleted.
    pub tasks: i64,
    /// Archived task rows deleted.
    pub archived_tasks: i64,
    /// Event rows deleted (of deleted jobs and of kept completed jobs).
    pub events: i64,
    /// Completed jobs kept whose events were deleted.
    pub jobs_losing_events: i64,
    /// Delete statements run.
    pub batches: i64,
    /// False when the run stopped at `RETENTION_MAX_RUN_S` with work left.
    pub finished: bool,
    /// How long it took.
    pub duration_ms: u64,
}

/// What retention would delete now (`coremachine purge --dry-run`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PurgePreview {
    /// Completed jobs past retention.
    pub completed_jobs: i64,
    /// Failed or cancelled jobs past retention.
    pub failed_jobs: i64,
    /// Their tasks.
    pub tasks: i64,
    /// Their archived tasks.
    pub archived_tasks: i64,
    /// Their events.
    pub events_of_deleted_jobs: i64,
    /// Completed jobs that stay but lose their events.
    pub jobs_losing_events: i64,
    /// Those events.
    pub events_of_kept_jobs: i64,
    /// Completion time of the oldest job that would go.
    pub oldest: Option<chrono::DateTime<chrono::Utc>>,
}

/// Counts what a run would delete, deleting nothing.
pub async fn preview(pool: &Pool, s: &RetentionSettings) -> Result<PurgePreview, StoreError> {
    let c = store::client(pool, "previewing retention").await?;
    let r = c
        .query_one(
            sql::RETENTION_PREVIEW,
            &[&secs(s.completed), &secs(s.failed), &secs(s.events)],
        )
        .await
        .ctx(|| "counting what retention would delete".into())?;
    Ok(PurgePreview {
        completed_jobs: r.get("completed_jobs"),
        failed_jobs: r.get("failed_jobs"),
        tasks: r.get("tasks"),
        archived_tasks: r.get("archived_tasks"),
        events_of_deleted_jobs: r.get("events_of_deleted_jobs"),
        jobs_losing_events: r.get("jobs_losing_events"),
        events_of_kept_jobs: r.get("events_of_kept_jobs"),
        oldest: r.get("oldest"),
    })
}

/// One retention run, recorded in `app.janitor_runs` (`run_type = 'retention'`).
pub async fn run(pool: &Pool, s: &RetentionSettings) -> Result<PurgeReport, StoreError> {
    let started = Instant::now();
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    {
        let c = store::client(pool, "starting a retention run").await?;
        c.execute(sql::JANITOR_RUN_START, &[&run_id, &"retention"])
            .await
            .ctx(|| "recording the retention run".into())?;
    }
    let mut report = PurgeReport {
        run_id: run_id.clone(),
        ..PurgeReport::default()
    };
    let result = purge(pool, s, started, &mut report).await;
    report.duration_ms = started.elapsed().as_millis() as u64;
    let (status, error) = match &result {
        Ok(()) => ("completed", None),
        Err(e) => ("failed", Some(e.to_string())),
    };
    let deleted = report.rows();
    let c = store::client(pool, "finishing a retention run").await?;
    c.execute(
        sql::JANITOR_RUN_FINISH,
        &[
            &run_id,
            &(started.elapsed().as_millis() as i32),
            &status,
            &clamp(report.completed_jobs + report.failed_jobs + report.jobs_losing_events),
            &clamp(deleted),
            &json!([{"action": "retention", "report": &report}]),
            &error,
        ],
    )
    .await
    .ctx(|| format!("recording the end of retention run {run_id}"))?;
    let f = cp::Fields::default()
        .extra("run_id", &run_id)
        .extra("completed_jobs", report.completed_jobs)
        .extra("failed_jobs", report.failed_jobs)
        .extra("tasks", report.tasks)
        .extra("events", report.events)
        .extra("batches", report.batches)
        .extra("finished", report.finished)
        .duration_ms(started.elapsed().as_millis() as u64);
    match result {
        Ok(()) => {
            cp::emit(cp::RETENTION_RUN_COMPLETED, &f);
            Ok(report)
        }
        Err(e) => {
            cp::emit_error(cp::RETENTION_RUN_FAILED, &f, "RetentionError", &e);
            Err(e)
        }
    }
}

fn clamp(n: i64) -> i32 {
    n.min(i32::MAX as i64) as i32
}

/// Applies the policy without recording a run of its own (the janitor records it in its run).
pub async fn apply(pool: &Pool, s: &RetentionSettings) -> Result<PurgeReport, StoreError> {
    let started = Instant::now();
    let mut report = PurgeReport::default();
    purge(pool, s, started, &mut report).await?;
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

impl PurgeReport {
    /// Rows deleted, all tables together.
    pub fn rows(&self) -> i64 {
        self.completed_jobs + self.failed_jobs + self.tasks + self.archived_tasks + self.events
    }
}

/// Deletes in batches until nothing is left or the time budget is spent.
async fn purge(
    pool: &Pool,
    s: &RetentionSettings,
    started: Instant,
    report: &mut PurgeReport,
) -> Result<(), StoreError> {
    let (completed, failed) = (secs(s.completed), secs(s.failed));
    let deadline = started + s.max_run;
    let out_of_time = || Instant::now() >= deadline;
    // Whole jobs first (their events go with them), then the events of completed jobs that stay.
    if completed.is_some() || failed.is_some() {
        loop {
            let jobs: Vec<(String, String)> = {
                let c = store::client(pool, "finding expired jobs").await?;
                c.query(
                    sql::RETENTION_EXPIRED_JOBS,
                    &[&completed, &failed, &JOBS_PER_BATCH],
                )
                .await
                .ctx(|| "finding jobs past retention".into())?
                .iter()
                .map(|r| (r.get("job_id"), r.get("status")))
                .collect()
            };
            if jobs.is_empty() {
                break;
            }
            let ids: Vec<&str> = jobs.iter().map(|(id, _)| id.as_str()).collect();
            let [tasks, archived, events] = drain(
                pool,
                s,
                deadline,
                (&ids, completed, failed),
                [
                    (sql::RETENTION_DELETE_TASKS, "tasks"),
                    (sql::RETENTION_DELETE_ARCHIVE, "archived tasks"),
                    (sql::RETENTION_DELETE_EVENTS, "events"),
                ],
                report,
            )
            .await?;
            report.tasks += tasks;
            report.archived_tasks += archived;
            report.events += events;
            let c = store::client(pool, "deleting expired jobs").await?;
            let gone: Vec<String> = c
                .query(sql::RETENTION_DELETE_JOBS, &[&ids, &completed, &failed])
                .await
                .ctx(|| format!("deleting {} jobs past retention", ids.len()))?
                .iter()
                .map(|r| r.get("job_id"))
                .collect();
            report.batches += 1;
            for (id, status) in &jobs {
                if gone.contains(id) {
                    if status.starts_with("completed") {
                        report.completed_jobs += 1;
                    } else {
                        report.failed_jobs += 1;
                    }
                }
            }
            if gone.is_empty() {
                // None could go: the batches stopped at the deadline, or the jobs were
                // resubmitted or given new rows while being purged. The next run tries again.
                if out_of_time() {
                    return Ok(());
                }
                break;
            }
            if out_of_time() {
                return Ok(());
            }
        }
    }
    if let Some(events) = secs(s.events) {
        loop {
            let ids: Vec<String> = {
                let c = store::client(pool, "finding jobs whose events expired").await?;
                c.query(sql::RETENTION_EVENT_JOBS, &[&events, &JOBS_PER_BATCH])
                    .await
                    .ctx(|| "finding completed jobs whose events are past retention".into())?
                    .iter()
                    .map(|r| r.get("job_id"))
                    .collect()
            };
            if ids.is_empty() {
                break;
            }
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            // Only the completed rule applies (failed: NULL), with the events' age.
            let [events] = drain(
                pool,
                s,
                deadline,
                (&refs, Some(events), None),
                [(sql::RETENTION_DELETE_EVENTS, "events")],
                report,
            )
            .await?;
            report.events += events;
            let c = store::client(pool, "marking events purged").await?;
            let marked = c
                .execute(sql::RETENTION_MARK_EVENTS_PURGED, &[&refs])
                .await
                .ctx(|| format!("marking the events of {} jobs purged", refs.len()))?;
            report.jobs_losing_events += marked as i64;
            if marked == 0 || out_of_time() {
                return Ok(());
            }
        }
    }
    report.finished = true;
    Ok(())
}

/// Runs each batch statement in turn until it deletes fewer rows than a batch; returns the rows
/// each deleted. Stops at `deadline` (a job with a million rows takes several runs).
async fn drain<const N: usize>(
    pool: &Pool,
    s: &RetentionSettings,
    deadline: Instant,
    (ids, a, b): (&Vec<&str>, Option<f64>, Option<f64>),
    statements: [(&str, &str); N],
    report: &mut PurgeReport,
) -> Result<[i64; N], StoreError> {
    let mut totals = [0i64; N];
    for (i, (statement, what)) in statements.iter().enumerate() {
        loop {
            let n = {
                let c = store::client(pool, "retention batch").await?;
                c.execute(*statement, &[ids, &a, &b, &s.batch_rows])
                    .await
                    .ctx(|| format!("deleting {what} of {} jobs past retention", ids.len()))?
            } as i64;
            report.batches += 1;
            totals[i] += n;
            if n < s.batch_rows {
                break;
            }
            if Instant::now() >= deadline {
                return Ok(totals);
            }
            if !s.pause.is_zero() {
                tokio::time::sleep(s.pause).await;
            }
        }
    }
    Ok(totals)
}

/// A duration as seconds, for the statements' `make_interval(secs => $n)`.
fn secs(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64())
}
