//! A job's events as the API reads them (`app.job_events`): a page, the counts per type and
//! status, and where the current attempt stopped. One function per statement, typed rows.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{QueryContext, StoreError, decode, sql};
use crate::model::{JobId, TaskId};

/// One event with the job attempt it belongs to (`events_page.sql`, `events_milestones.sql`).
#[derive(Debug, Clone)]
pub(crate) struct EventView {
    /// Its id (the order of the job's story).
    pub event_id: i64,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// job_created, task_started, task_failed, ...
    pub event_type: String,
    /// success | failure | warning | info | pending.
    pub event_status: String,
    /// The checkpoint that wrote it.
    pub checkpoint: Option<String>,
    /// The task it is about (task events).
    pub task_id: Option<TaskId>,
    /// Its stage.
    pub stage: Option<i32>,
    /// The task's attempt (task events) or the job's (job events).
    pub attempt: Option<i32>,
    /// How long the step took.
    pub duration_ms: Option<i32>,
    /// transient | permanent.
    pub error_class: Option<String>,
    /// Error type.
    pub error_type: Option<String>,
    /// Error message.
    pub error_message: Option<String>,
    /// The event's data.
    pub data: Value,
    /// The job attempt it belongs to (1, or the attempt of the last resubmit before it).
    pub job_attempt: i32,
}

impl EventView {
    fn from_row(r: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            event_id: r.try_get("event_id")?,
            created_at: r.try_get("created_at")?,
            event_type: r.try_get("event_type")?,
            event_status: r.try_get("event_status")?,
            checkpoint: r.try_get("checkpoint_name")?,
            task_id: r.try_get("task_id")?,
            stage: r.try_get("stage")?,
            attempt: r.try_get("attempt")?,
            duration_ms: r.try_get("duration_ms")?,
            error_class: r.try_get("error_class")?,
            error_type: r.try_get("error_type")?,
            error_message: r.try_get("error_message")?,
            data: r.try_get("event_data")?,
            job_attempt: r.try_get("job_attempt")?,
        })
    }
}

/// One page of a job's events, oldest first, after event id `after`, only `task_id`'s when given,
/// at most `limit` (`events_page.sql`).
pub(crate) async fn page(
    c: &impl GenericClient,
    job_id: &JobId,
    after: i64,
    task_id: Option<&str>,
    limit: i64,
) -> Result<Vec<EventView>, StoreError> {
    let params: [&(dyn ToSql + Sync); 4] = [job_id, &after, &task_id, &limit];
    decode::all(c, sql::EVENTS_PAGE, &params, EventView::from_row, || {
        format!("reading events of job {job_id} after {after}")
    })
    .await
}

/// How many events of a job have one type and status, and when they were first and last seen
/// (`events_counts.sql`).
#[derive(Debug, Clone)]
pub(crate) struct EventCount {
    /// The event type.
    pub event_type: String,
    /// The event status.
    pub event_status: String,
    /// Events.
    pub n: i64,
    /// The first one's time.
    pub first_at: DateTime<Utc>,
    /// The last one's time.
    pub last_at: DateTime<Utc>,
}

/// A job's event counts per type and status, in the order each first appeared
/// (`events_counts.sql`).
pub(crate) async fn counts(
    c: &impl GenericClient,
    job_id: &JobId,
) -> Result<Vec<EventCount>, StoreError> {
    let read = |r: &Row| {
        Ok(EventCount {
            event_type: r.try_get("event_type")?,
            event_status: r.try_get("event_status")?,
            n: r.try_get("n")?,
            first_at: r.try_get("first_at")?,
            last_at: r.try_get("last_at")?,
        })
    };
    decode::all(c, sql::EVENTS_COUNTS, &[job_id], read, || {
        format!("counting events of job {job_id}")
    })
    .await
}

/// Where a job's current attempt stopped (`events_milestones.sql`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Milestones {
    /// The last successful event before the first failure (the last one at all without a failure).
    pub last_success: Option<EventView>,
    /// The attempt's first failure.
    pub first_failure: Option<EventView>,
}

/// The last successful event and the first failure of a job's current attempt
/// (`events_milestones.sql`).
pub(crate) async fn milestones(
    c: &impl GenericClient,
    job_id: &JobId,
) -> Result<Milestones, StoreError> {
    let ctx = || format!("reading milestones of job {job_id}");
    let rows = c.query(sql::EVENTS_MILESTONES, &[job_id]).await.ctx(ctx)?;
    let find = |kind: &str| -> Result<Option<EventView>, tokio_postgres::Error> {
        for r in &rows {
            if r.try_get::<_, &str>("kind")? == kind {
                return EventView::from_row(r).map(Some);
            }
        }
        Ok(None)
    };
    Ok(Milestones {
        last_success: find("last_success").ctx(ctx)?,
        first_failure: find("first_failure").ctx(ctx)?,
    })
}
