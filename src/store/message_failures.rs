//! Messages that could not be processed (`app.message_failures`): malformed, unknown, poison
//! that matches nothing. Their ids are text as recovered from the message (not foreign keys).

use deadpool_postgres::GenericClient;

use super::{QueryContext, StoreError, sql};

/// One record of a message that could not be processed.
#[derive(Debug, Clone)]
pub(crate) struct MessageFailure<'a> {
    /// The function (folder) that received it.
    pub function: &'a str,
    /// Its MessageId (at most 128 characters).
    pub message_id: Option<String>,
    /// Its delivery count.
    pub delivery_count: Option<i32>,
    /// The job it names, when one could be recovered.
    pub job_id: Option<&'a str>,
    /// The task it names, when one could be recovered.
    pub task_id: Option<&'a str>,
    /// Why it could not be processed (`malformed`, `unknown_task`, ...).
    pub reason: &'a str,
    /// The error (at most 4,000 characters).
    pub error_message: String,
    /// Its first characters.
    pub raw_excerpt: String,
}

/// Records a message that could not be processed (`message_failure_insert.sql`); its row id.
pub(crate) async fn insert(
    c: &impl GenericClient,
    f: &MessageFailure<'_>,
) -> Result<i64, StoreError> {
    let what = || format!("recording a {} message on {}", f.reason, f.function);
    let row = c
        .query_one(
            sql::MESSAGE_FAILURE_INSERT,
            &[
                &f.function,
                &f.message_id,
                &f.delivery_count,
                &f.job_id,
                &f.task_id,
                &f.reason,
                &f.error_message,
                &f.raw_excerpt,
            ],
        )
        .await
        .ctx(what)?;
    row.try_get("id").ctx(what)
}
