//! Outbox rows the broker refused for good (`app.outbox`): locked while their jobs are failed,
//! then deleted. Publishing itself lives in the transport's outbox.

use deadpool_postgres::GenericClient;

use tokio_postgres::types::ToSql;

use super::{QueryContext, StoreError, Traced, sql};

/// One locked outbox row (`outbox_unsendable_rows.sql`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsendableRow {
    /// Row id.
    pub id: i64,
    /// The job the message belongs to, as its sender wrote it (not a foreign key).
    pub job_id: Option<String>,
    /// Its queue.
    pub queue: String,
    /// Its MessageId.
    pub message_id: String,
    /// The first 1,000 characters of its body.
    pub body_head: String,
}

/// Locks the rows among `ids` that no one else holds, in id order (`outbox_unsendable_rows.sql`).
pub async fn lock_unsendable(
    c: &impl GenericClient,
    ids: &[i64],
) -> Result<Vec<UnsendableRow>, StoreError> {
    let rows = c
        .query(sql::OUTBOX_UNSENDABLE_ROWS, &[&ids])
        .await
        .ctx(|| format!("locking {} unsendable outbox rows", ids.len()))?;
    Ok(rows
        .iter()
        .map(|r| UnsendableRow {
            id: r.get("id"),
            job_id: r.get("job_id"),
            queue: r.get("queue"),
            message_id: r.get("message_id"),
            body_head: r.get("body_head"),
        })
        .collect())
}

/// Deletes outbox rows (`outbox_delete.sql`); how many went.
pub async fn delete(c: &impl GenericClient, ids: &[i64]) -> Result<u64, StoreError> {
    c.execute(sql::OUTBOX_DELETE, &[&ids])
        .await
        .ctx(|| format!("deleting {} unsendable outbox rows", ids.len()))
}

/// One outbox row as the publisher reads it (`outbox_select.sql`).
#[derive(Debug, Clone)]
pub(crate) struct OutboxRow {
    /// Row id.
    pub(crate) id: i64,
    /// Destination queue.
    pub(crate) queue: String,
    /// Its MessageId.
    pub(crate) message_id: String,
    /// Its body.
    pub(crate) body: String,
    /// Its application properties.
    pub(crate) properties: serde_json::Map<String, serde_json::Value>,
    /// Its CorrelationId.
    pub(crate) correlation_id: Option<String>,
    /// Earliest delivery time.
    pub(crate) scheduled_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The job it belongs to, as its sender wrote it.
    pub(crate) job_id: Option<String>,
}

/// Writes outbox rows (`outbox_insert_batch.sql`): `params` are the statement's seven column
/// arrays (queue, message_id, body, properties, correlation_id, scheduled_at, job_id). Returns
/// the new rows' ids.
pub(crate) async fn insert_batch(
    c: &impl GenericClient,
    params: &[&(dyn ToSql + Sync); 7],
    what: impl Fn() -> String,
) -> Result<Vec<i64>, StoreError> {
    let stmt = c
        .prepare_cached(sql::OUTBOX_INSERT_BATCH)
        .await
        .ctx(|| "preparing outbox insert".into())?;
    let rows = c
        .query(&stmt, params)
        .traced(sql::OUTBOX_INSERT_BATCH)
        .await
        .ctx(&what)?;
    rows.iter().map(|r| r.try_get("id").ctx(&what)).collect()
}

/// Locks and reads the rows among `ids` no one else holds, in id order (`outbox_select.sql`).
pub(crate) async fn select_locked(
    c: &impl GenericClient,
    ids: &[i64],
) -> Result<Vec<OutboxRow>, StoreError> {
    let what = || format!("reading {} outbox rows", ids.len());
    let rows = c
        .query(sql::OUTBOX_SELECT, &[&ids])
        .traced(sql::OUTBOX_SELECT)
        .await
        .ctx(what)?;
    rows.iter()
        .map(|r| {
            Ok(OutboxRow {
                id: r.try_get("id").ctx(what)?,
                queue: r.try_get("queue").ctx(what)?,
                message_id: r.try_get("message_id").ctx(what)?,
                body: r.try_get("body").ctx(what)?,
                properties: match r.try_get::<_, serde_json::Value>("properties").ctx(what)? {
                    serde_json::Value::Object(m) => m,
                    _ => Default::default(),
                },
                correlation_id: r.try_get("correlation_id").ctx(what)?,
                scheduled_at: r.try_get("scheduled_at").ctx(what)?,
                job_id: r.try_get("job_id").ctx(what)?,
            })
        })
        .collect()
}

/// Ids of rows older than `age_s` seconds, oldest first, at most `limit` (`outbox_stale_ids.sql`).
pub(crate) async fn stale_ids(
    c: &impl GenericClient,
    age_s: f64,
    limit: i64,
) -> Result<Vec<i64>, StoreError> {
    let id = |r: &tokio_postgres::Row| r.try_get("id");
    super::decode::all(c, sql::OUTBOX_STALE_IDS, &[&age_s, &limit], id, || {
        "finding stale outbox rows".to_string()
    })
    .await
}
