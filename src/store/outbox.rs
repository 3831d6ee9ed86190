//! Outbox rows the broker refused for good (`app.outbox`): locked while their jobs are failed,
//! then deleted. Publishing itself lives in the transport's outbox.

use deadpool_postgres::GenericClient;

use super::{QueryContext, StoreError, sql};

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
