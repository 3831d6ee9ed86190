//! The PostgreSQL side of the benchmark: the durability check, the floor (single-row UPDATE
//! transactions per second) and the statement / transaction counters read around the workload.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

use super::BenchError;

/// Rows of the floor table (the "100k-row table").
pub(super) const FLOOR_ROWS: i32 = 100_000;

/// Opens one plain connection (the benchmark's own, never the engine's pool).
pub(super) async fn connect(url: &str) -> Result<Client, BenchError> {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|e| BenchError::Db(format!("connecting to {}: {e}", redact(url))))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    // NOTICEs ("already exists, skipping") would be logged by the driver on stdout.
    client
        .batch_execute("SET client_min_messages = warning")
        .await
        .map_err(|e| BenchError::Db(pg_err(&e)))?;
    Ok(client)
}

/// A driver error with the server's message when there is one.
pub(super) fn pg_err(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} ({})", d.message(), d.code().code()),
        None => e.to_string(),
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub(super) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// The URL of database `db` on the server of `url`.
pub(super) fn url_for_db(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// The server's durability settings.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct Durability {
    /// `SHOW fsync`.
    pub fsync: String,
    /// `SHOW synchronous_commit`.
    pub synchronous_commit: String,
}

impl Durability {
    /// Whether commits survive a crash (fsync on and synchronous_commit not off/local).
    pub(super) fn is_durable(&self) -> bool {
        self.fsync == "on" && !matches!(self.synchronous_commit.as_str(), "off" | "local")
    }
}

/// Reads fsync and synchronous_commit.
pub(super) async fn durability(c: &Client) -> Result<Durability, BenchError> {
    let show = |name: &'static str| async move {
        c.query_one(&format!("SHOW {name}"), &[])
            .await
            .map(|r| r.get::<_, String>(name))
            .map_err(|e| BenchError::Db(format!("SHOW {name}: {}", pg_err(&e))))
    };
    Ok(Durability {
        fsync: show("fsync").await?,
        synchronous_commit: show("synchronous_commit").await?,
    })
}

/// Measures the floor: `connections` clients each committing single-row UPDATEs (one per
/// transaction, autocommit) on a 100k-row table for `duration`. Returns transactions per second.
pub(super) async fn measure_floor(
    db_url: &str,
    connections: usize,
    duration: Duration,
) -> Result<f64, BenchError> {
    let setup = connect(db_url).await?;
    setup
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS public.bench_floor;
             CREATE TABLE public.bench_floor (id INT PRIMARY KEY, n BIGINT NOT NULL DEFAULT 0);
             INSERT INTO public.bench_floor (id) SELECT g FROM generate_series(1, {FLOOR_ROWS}) g;"
        ))
        .await
        .map_err(|e| BenchError::Db(format!("creating the floor table: {}", pg_err(&e))))?;
    setup
        .batch_execute("VACUUM ANALYZE public.bench_floor")
        .await
        .map_err(|e| BenchError::Db(format!("vacuuming the floor table: {}", pg_err(&e))))?;
    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections {
        clients.push(connect(db_url).await?);
    }
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let mut set = tokio::task::JoinSet::new();
    for (i, c) in clients.into_iter().enumerate() {
        let done = done.clone();
        set.spawn(async move {
            let stmt = c
                .prepare("UPDATE public.bench_floor SET n = n + 1 WHERE id = $1")
                .await
                .map_err(|e| {
                    BenchError::Db(format!("preparing the floor update: {}", pg_err(&e)))
                })?;
            // A cheap deterministic spread over the table (no two clients in lock step).
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1);
            while Instant::now() < deadline {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let id = (x % FLOOR_ROWS as u64) as i32 + 1;
                c.execute(&stmt, &[&id])
                    .await
                    .map_err(|e| BenchError::Db(format!("floor update: {}", pg_err(&e))))?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), BenchError>(())
        });
    }
    while let Some(r) = set.join_next().await {
        r.map_err(|e| BenchError::Db(format!("floor client panicked: {e}")))??;
    }
    let elapsed = start.elapsed().as_secs_f64();
    setup
        .batch_execute("DROP TABLE public.bench_floor")
        .await
        .map_err(|e| BenchError::Db(format!("dropping the floor table: {}", pg_err(&e))))?;
    Ok(done.load(Ordering::Relaxed) as f64 / elapsed)
}

/// Cumulative counters of one database, read before and after the workload.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Counters {
    /// Committed plus rolled back transactions (`pg_stat_database`).
    pub transactions: i64,
    /// Executed statements other than BEGIN/COMMIT/ROLLBACK (`pg_stat_statements`), if available.
    pub statements: Option<i64>,
    /// Every statement including BEGIN/COMMIT/ROLLBACK: the round trips that executed something.
    pub all_statements: Option<i64>,
}

impl std::ops::Sub for Counters {
    type Output = Counters;
    fn sub(self, o: Counters) -> Counters {
        Counters {
            transactions: self.transactions - o.transactions,
            statements: self.statements.zip(o.statements).map(|(a, b)| a - b),
            all_statements: self
                .all_statements
                .zip(o.all_statements)
                .map(|(a, b)| a - b),
        }
    }
}

/// Makes `pg_stat_statements` queryable from the admin connection when the server preloads it.
pub(super) async fn enable_statement_stats(admin: &Client) -> bool {
    admin
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await
        .is_ok()
        && admin
            .query_one("SELECT count(*) FROM pg_stat_statements LIMIT 1", &[])
            .await
            .is_ok()
}

/// Reads the counters of database `db` (from a connection to another database, so reading them
/// does not count).
pub(super) async fn counters(
    admin: &Client,
    db: &str,
    statements: bool,
) -> Result<Counters, BenchError> {
    let _ = admin.batch_execute("SELECT pg_stat_clear_snapshot()").await;
    let tx: i64 = admin
        .query_one(
            "SELECT (xact_commit + xact_rollback)::bigint AS transactions FROM pg_stat_database WHERE datname = $1",
            &[&db],
        )
        .await
        .map_err(|e| BenchError::Db(format!("reading pg_stat_database: {}", pg_err(&e))))?
        .get("transactions");
    let (stmts, all) = if statements {
        let r = admin
            .query_one(
                "SELECT COALESCE(sum(calls) FILTER (WHERE query !~* '^\\s*(begin|commit|rollback|start transaction)'), 0)::bigint AS statements,
                        COALESCE(sum(calls), 0)::bigint AS all_statements
                 FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1)",
                &[&db],
            )
            .await
            .map_err(|e| BenchError::Db(format!("reading pg_stat_statements: {}", pg_err(&e))))?;
        (Some(r.get("statements")), Some(r.get("all_statements")))
    } else {
        (None, None)
    };
    Ok(Counters {
        transactions: tx,
        statements: stmts,
        all_statements: all,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            url_for_db("postgres://u:p@h:5432/postgres", "cm_bench"),
            "postgres://u:p@h:5432/cm_bench"
        );
        assert_eq!(
            url_for_db("postgres://h/postgres?sslmode=require", "x"),
            "postgres://h/x?sslmode=require"
        );
        assert_eq!(url_for_db("postgres://h:1", "x"), "postgres://h:1/x");
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
    }

    #[test]
    fn durability_rules() {
        let d = |f: &str, s: &str| Durability {
            fsync: f.into(),
            synchronous_commit: s.into(),
        };
        assert!(d("on", "on").is_durable());
        assert!(d("on", "remote_apply").is_durable());
        assert!(!d("off", "on").is_durable());
        assert!(!d("on", "off").is_durable());
    }
}
