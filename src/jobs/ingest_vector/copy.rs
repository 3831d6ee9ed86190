//! One chunk into PostGIS: one transaction that takes the chunk's advisory lock, deletes the
//! chunk's earlier rows when the schema's batch ledger says it was loaded before (a redelivery),
//! binary-COPYs its rows and records the batch in the ledger, so a chunk run any number of
//! times, even twice at once, leaves its rows exactly once.

use std::error::Error;

use bytes::BytesMut;
use futures::pin_mut;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use super::source::{Cell, Row};
use super::sql;
use super::table::TableDef;

impl ToSql for Cell {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            Cell::Null => Ok(IsNull::Yes),
            Cell::Int4(v) => v.to_sql(ty, out),
            Cell::Int8(v) => v.to_sql(ty, out),
            Cell::Float8(v) => v.to_sql(ty, out),
            Cell::Text(v) => v.to_sql(ty, out),
            Cell::Date(v) => v.to_sql(ty, out),
            Cell::Timestamptz(v) => v.to_sql(ty, out),
        }
    }
    // The column types come from the table CoreMachine created for these cells.
    fn accepts(_: &Type) -> bool {
        true
    }
    to_sql_checked!();
}

/// EWKB bytes sent as a `geometry` value (PostGIS's binary input is EWKB).
#[derive(Debug)]
struct Ewkb<'a>(Option<&'a [u8]>);

impl ToSql for Ewkb<'_> {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self.0 {
            None => Ok(IsNull::Yes),
            Some(b) => {
                out.extend_from_slice(b);
                Ok(IsNull::No)
            }
        }
    }
    fn accepts(ty: &Type) -> bool {
        ty.name() == "geometry"
    }
    to_sql_checked!();
}

/// Replaces the rows of `batch_id` in `table` with `rows` and records the batch in the schema's
/// ledger; returns the rows deleted first (only a batch the ledger has can have rows, so a first
/// delivery deletes nothing and scans nothing).
pub(super) async fn replace_batch(
    client: &mut tokio_postgres::Client,
    table: &TableDef,
    batch_id: &str,
    job_id: &str,
    rows: &[Row],
) -> Result<u64, tokio_postgres::Error> {
    let types_stmt = client.prepare(&table.copy_types_sql()).await?;
    let types: Vec<Type> = types_stmt
        .columns()
        .iter()
        .map(|c| c.type_().clone())
        .collect();
    let tx = client.transaction().await?;
    tx.execute(sql::ADVISORY_XACT_LOCK, &[&batch_id]).await?;
    let known = tx
        .query_opt(&table.ledger_lookup_sql(), &[&table.table, &batch_id])
        .await?
        .is_some();
    let deleted = if known {
        tx.execute(&table.delete_batch_sql(), &[&batch_id]).await?
    } else {
        0
    };
    let sink = tx.copy_in(&table.copy_sql()).await?;
    let writer = BinaryCopyInWriter::new(sink, &types);
    pin_mut!(writer);
    for row in rows {
        let geom = Ewkb(row.ewkb.as_deref());
        let mut values: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(types.len());
        values.extend(row.cells.iter().map(|c| c as &(dyn ToSql + Sync)));
        values.push(&geom);
        values.push(&batch_id);
        writer.as_mut().write(&values).await?;
    }
    let copied = writer.finish().await? as i64;
    tx.execute(
        &table.ledger_record_sql(),
        &[&table.table, &batch_id, &job_id, &copied],
    )
    .await?;
    tx.commit().await?;
    Ok(deleted)
}
