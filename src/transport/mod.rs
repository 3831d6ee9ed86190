//! Sending messages: the [`Transport`] trait, the local PostgreSQL queue, and the outbox that
//! publishes what a committed transaction wrote.
//!
//! Nothing is sent from inside a transaction: state changes write [`OutboundMessage`]s into
//! `app.outbox` in the same transaction, and [`outbox::Outbox::publish`] hands them to the
//! transport after commit. A crash in between leaves the rows for the janitor to publish. A
//! transport whose queues live in the state database (the local queue) can do better, and says
//! so through the trait: it enqueues inside the caller's transaction
//! ([`Transport::enqueue_in_tx`]) and moves outbox rows in one statement
//! ([`Transport::move_from_outbox`]). The outbox knows only the trait.

mod columns;
pub(crate) mod local_queue;
pub mod outbox;
pub mod service_bus;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde_json::{Map, Value};

use crate::store::{StoreError, Transaction};

/// A message to send to a queue.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundMessage {
    /// Destination queue.
    pub queue: String,
    /// Deterministic MessageId (Service Bus duplicate detection drops replays).
    pub message_id: String,
    /// JSON body.
    pub body: String,
    /// Application properties (job_id, task_id, stage, traceparent).
    pub properties: Map<String, Value>,
    /// CorrelationId broker property.
    pub correlation_id: Option<String>,
    /// Earliest delivery time (retries).
    pub scheduled_at: Option<DateTime<Utc>>,
    /// The job this message belongs to (for error reports).
    pub job_id: Option<String>,
}

/// Why a send failed.
#[derive(Debug, thiserror::Error)]
#[error("sending to queue {queue} failed{}: {message}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
pub struct TransportError {
    /// Queue.
    pub queue: String,
    /// HTTP status, when there was one.
    pub status: Option<u16>,
    /// Broker or client message.
    pub message: String,
    /// Whether trying again later can succeed.
    pub retryable: bool,
}

/// Where messages go.
pub trait Transport: Send + Sync + std::fmt::Debug {
    /// Short name for health and logs ("local_queue", "service_bus").
    fn name(&self) -> &'static str;
    /// Sends messages (any queues); all or an error.
    fn send<'a>(
        &'a self,
        messages: &'a [OutboundMessage],
    ) -> BoxFuture<'a, Result<(), TransportError>>;

    /// Writes `messages` into the queues as part of the caller's transaction `tx`, when the
    /// queues are tables of the state database: one statement, committed or rolled back with the
    /// state change that causes the messages; call [`Transport::wake`] after the commit. None
    /// when this transport cannot (the caller writes outbox rows instead).
    fn enqueue_in_tx<'a>(
        &'a self,
        _tx: &'a Transaction<'_>,
        _messages: &'a [OutboundMessage],
    ) -> Option<BoxFuture<'a, Result<(), StoreError>>> {
        None
    }

    /// Moves the committed outbox rows `ids` into the queues in one statement, when the queues
    /// are tables of the state database, and returns how many moved. None when this transport
    /// cannot (the outbox reads the rows and [`Transport::send`]s them).
    fn move_from_outbox<'a>(
        &'a self,
        _ids: &'a [i64],
    ) -> Option<BoxFuture<'a, Result<usize, StoreError>>> {
        None
    }

    /// Tells whoever delivers the queues that a committed transaction enqueued messages (see
    /// [`Transport::enqueue_in_tx`]); nothing for a transport that does not enqueue that way.
    fn wake(&self) {}
}

/// Shared transport handle.
pub(crate) type SharedTransport = Arc<dyn Transport>;
