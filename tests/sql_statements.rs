//! Every SQL statement of `store::sql` prepares against the migrated schema, so a typo or a
//! renamed column fails here instead of in production.

use crate::common::fresh_db;

#[tokio::test]
async fn every_statement_prepares_against_the_migrated_schema() {
    let (name, url) = fresh_db().await;
    let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    let mut failed = Vec::new();
    for (stmt_name, sql) in coremachine::store::sql::ALL {
        if let Err(e) = c.prepare(sql).await {
            let msg = e
                .as_db_error()
                .map(|d| d.message().to_string())
                .unwrap_or_else(|| e.to_string());
            failed.push(format!("{stmt_name}: {msg}"));
        }
    }
    drop(c);
    crate::common::drop_db(&name).await;
    assert!(
        failed.is_empty(),
        "statements that do not prepare:\n{}",
        failed.join("\n")
    );
}
