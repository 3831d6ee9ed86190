//! Runs a read and decodes its rows into typed structs, so that a repository function says only
//! its statement, its parameters, its row type and what it was attempting.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{QueryContext, StoreError};

/// How one row becomes a typed struct (a failure names the column).
pub(crate) type Decode<T> = fn(&Row) -> Result<T, tokio_postgres::Error>;

/// Every row of `text` run with `params`, decoded; a failed statement or a row that does not
/// decode is a [`StoreError`] under `context`.
pub(crate) async fn all<T>(
    c: &impl GenericClient,
    text: &'static str,
    params: &[&(dyn ToSql + Sync)],
    decode: Decode<T>,
    context: impl Fn() -> String,
) -> Result<Vec<T>, StoreError> {
    let rows = c.query(text, params).await.ctx(&context)?;
    rows.iter()
        .map(decode)
        .collect::<Result<_, _>>()
        .ctx(context)
}

/// The row of `text` run with `params` (none or one), decoded; failures as in [`all`].
pub(crate) async fn opt<T>(
    c: &impl GenericClient,
    text: &'static str,
    params: &[&(dyn ToSql + Sync)],
    decode: Decode<T>,
    context: impl Fn() -> String,
) -> Result<Option<T>, StoreError> {
    let row = c.query_opt(text, params).await.ctx(&context)?;
    row.as_ref().map(decode).transpose().ctx(context)
}

/// The one row of `text` run with `params`, decoded; failures as in [`all`].
pub(crate) async fn one<T>(
    c: &impl GenericClient,
    text: &'static str,
    params: &[&(dyn ToSql + Sync)],
    decode: Decode<T>,
    context: impl Fn() -> String,
) -> Result<T, StoreError> {
    let row = c.query_one(text, params).await.ctx(&context)?;
    decode(&row).ctx(context)
}
