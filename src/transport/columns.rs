//! Messages as the column arrays that the `unnest(...)` inserts take: one statement writes a
//! whole batch, into the outbox (`outbox_insert_batch.sql`) or straight into the local queue
//! (`local_queue_insert_batch.sql`).

use serde_json::Value;
use tokio_postgres::types::ToSql;

use super::OutboundMessage;

/// The columns of a batch of [`OutboundMessage`]s.
pub(crate) struct Columns<'a> {
    queue: Vec<&'a str>,
    id: Vec<&'a str>,
    body: Vec<&'a str>,
    props: Vec<Value>,
    corr: Vec<Option<&'a str>>,
    at: Vec<Option<chrono::DateTime<chrono::Utc>>>,
}

impl<'a> Columns<'a> {
    /// Splits `messages` into columns.
    pub(crate) fn of(messages: &'a [OutboundMessage]) -> Self {
        Self {
            queue: messages.iter().map(|m| m.queue.as_str()).collect(),
            id: messages.iter().map(|m| m.message_id.as_str()).collect(),
            body: messages.iter().map(|m| m.body.as_str()).collect(),
            props: messages
                .iter()
                .map(|m| Value::Object(m.properties.clone()))
                .collect(),
            corr: messages
                .iter()
                .map(|m| m.correlation_id.as_deref())
                .collect(),
            at: messages.iter().map(|m| m.scheduled_at).collect(),
        }
    }

    /// `$1..$6`: queue, message_id, body, properties, correlation_id, visible/scheduled time.
    pub(crate) fn params(&self) -> [&(dyn ToSql + Sync); 6] {
        [
            &self.queue,
            &self.id,
            &self.body,
            &self.props,
            &self.corr,
            &self.at,
        ]
    }

    /// The queues, for waking their pumps.
    pub(crate) fn queues(&self) -> &[&'a str] {
        &self.queue
    }
}
