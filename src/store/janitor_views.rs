//! The janitor's runs as the API reads them (`app.janitor_runs`): the last one, for health.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

use tokio_postgres::Row;

use super::{StoreError, decode, sql};

/// A janitor run (`janitor_last_run.sql`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JanitorRunView {
    /// Its id.
    pub run_id: String,
    /// `running` while it runs, then how it ended.
    pub status: String,
    /// Start time.
    pub started_at: DateTime<Utc>,
    /// End time (none while it runs).
    pub completed_at: Option<DateTime<Utc>>,
    /// Items it found to repair.
    pub found: i32,
    /// Items it repaired.
    pub fixed: i32,
}

/// The most recent janitor run (`janitor_last_run.sql`); `None` before the first one.
pub(crate) async fn last_run(c: &impl GenericClient) -> Result<Option<JanitorRunView>, StoreError> {
    let read = |r: &Row| {
        Ok(JanitorRunView {
            run_id: r.try_get("run_id")?,
            status: r.try_get("status")?,
            started_at: r.try_get("started_at")?,
            completed_at: r.try_get("completed_at")?,
            found: r.try_get("items_scanned")?,
            fixed: r.try_get("items_fixed")?,
        })
    };
    decode::opt(c, sql::JANITOR_LAST_RUN, &[], read, || {
        "reading the janitor's last run".into()
    })
    .await
}
