//! `coremachine bench`: the end-to-end benchmark (docs/performance.md).
//!
//! One run: a fresh database; the PostgreSQL floor measured on it (single-row UPDATE transactions
//! per second with as many connections as the emulator delivers at once); then the `noop_fanout`
//! workload (stage 1 fans out N no-op tasks, stage 2 fans out N tasks built from their results,
//! finalize) executed by this very binary started as `coremachine local`, so every message goes
//! through the host emulator and the handler's trigger routes as production invocations would.
//! Statement and transaction counts come from `pg_stat_statements` and `pg_stat_database` of the
//! benchmark database; latencies and wall time from the rows' own timestamps. The cold start is
//! measured on `coremachine serve`: time from exec to the first `GET /` answered.

mod floor;
pub mod process;
pub mod raster;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

/// Why the benchmark could not produce numbers.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A database step failed.
    #[error("database: {0}")]
    Db(String),
    /// Starting or talking to a coremachine process failed.
    #[error("process: {0}")]
    Process(String),
    /// The database is not durable and `--allow-non-durable` was not given.
    #[error(
        "PostgreSQL is not durable (fsync={fsync}, synchronous_commit={synchronous_commit}); numbers would not be comparable to Azure. Turn both on, or pass --allow-non-durable to get numbers marked as such"
    )]
    NotDurable {
        /// `SHOW fsync`.
        fsync: String,
        /// `SHOW synchronous_commit`.
        synchronous_commit: String,
    },
    /// The workload did not end as it should.
    #[error("workload: {0}")]
    Workload(String),
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Emit {
    /// Human-readable lines.
    Text,
    /// One JSON object on stdout.
    Json,
}

/// Options of `coremachine bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Tasks per stage (the job runs 2N tasks).
    #[arg(long, default_value_t = 1000)]
    pub n: i64,
    /// Runs (each on a fresh database with its own floor); the summary is their median.
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Any database URL on the server to benchmark; the benchmark creates and drops its own database.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// Folder holding host.json and the function folders (default: the current directory).
    #[arg(long)]
    pub app_root: Option<PathBuf>,
    /// Seconds the floor is measured for.
    #[arg(long, default_value_t = 5.0)]
    pub floor_seconds: f64,
    /// Concurrent floor connections (default: host.json maxConcurrentCalls, what the emulator delivers at once).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// `text` or `json` (one object on stdout with the numbers).
    #[arg(long, value_enum, default_value_t = Emit::Text)]
    pub emit: Emit,
    /// Produce numbers even when fsync or synchronous_commit is off (they are marked non-durable).
    #[arg(long)]
    pub allow_non_durable: bool,
    /// Keep the benchmark databases (to inspect them).
    #[arg(long)]
    pub keep_db: bool,
    /// Give up on a run after this many seconds.
    #[arg(long, default_value_t = 1800)]
    pub timeout_s: u64,
    /// Write the workload process's output (JSON log lines) to this file.
    #[arg(long)]
    pub child_log: Option<PathBuf>,
}

/// The numbers of one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// Tasks per stage.
    pub n: i64,
    /// Job wall time: submit committed → job completed (seconds).
    pub wall_s: f64,
    /// 2N / wall.
    pub tasks_per_s: f64,
    /// Floor: single-row UPDATE tx/s measured in this run.
    pub floor_tps: f64,
    /// tasks_per_s / floor_tps.
    pub ratio: f64,
    /// Median task latency, enqueue (task row created with its message) → completion committed.
    pub p50_ms: f64,
    /// 99th percentile of the same.
    pub p99_ms: f64,
    /// Transactions per task (pg_stat_database of the benchmark database).
    pub tx_per_task: f64,
    /// Statements per task other than BEGIN/COMMIT (pg_stat_statements), if available.
    pub statements_per_task: Option<f64>,
    /// Statements per task including BEGIN/COMMIT: executed round trips.
    pub round_trips_per_task: Option<f64>,
    /// Peak RSS of the coremachine process that ran the workload (MiB).
    pub peak_rss_mb: f64,
    /// Task claims per tasks-queue invocation (the batch sizes the emulator delivered, mean).
    pub tasks_per_invocation: f64,
    /// Rows written per task (inserts, updates, deletes; every `app` table).
    pub rows_written_per_task: f64,
    /// Index entries written per task (upper bound, see [`WritesPerTask`]).
    pub index_entries_per_task: f64,
    /// The same, table by table.
    pub writes_per_task: Vec<WritesPerTask>,
    /// Load average when the run ended.
    pub load: String,
}

/// The cold-start numbers (median of several starts).
#[derive(Debug, Clone, Serialize)]
pub struct ColdStart {
    /// Exec → first `GET /` answered, median (ms).
    pub cold_start_ms: f64,
    /// RSS right after the first answer (MiB).
    pub idle_rss_mb: f64,
    /// Database connections the process held when it first answered (expected 0: the pool is lazy).
    pub db_connections_at_first_answer: i64,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn say(emit: Emit, line: impl AsRef<str>) {
    // Progress goes to stderr so that `--emit json` leaves exactly one object on stdout.
    if emit == Emit::Text {
        println!("{}", line.as_ref());
    } else {
        eprintln!("{}", line.as_ref());
    }
}

/// Runs the benchmark and prints its report. Returns the summary as JSON.
pub async fn run(args: BenchArgs) -> Result<serde_json::Value, BenchError> {
    let app_root = args
        .app_root
        .clone()
        .unwrap_or_else(|| std::env::current_dir().unwrap_or_default());
    let layout = crate::startup::layout::AppLayout::read(&app_root)
        .map_err(|e| BenchError::Process(format!("reading the app layout: {e}")))?;
    let concurrency = args.concurrency.unwrap_or(layout.host.max_concurrent_calls);
    let batch = tasks_batch(&layout);
    let admin = floor::connect(&args.database_url).await?;
    let durability = floor::durability(&admin).await?;
    let durable = durability.is_durable();
    if !durable && !args.allow_non_durable {
        return Err(BenchError::NotDurable {
            fsync: durability.fsync,
            synchronous_commit: durability.synchronous_commit,
        });
    }
    let stats = floor::enable_statement_stats(&admin).await;
    say(
        args.emit,
        format!(
            "coremachine bench: n={} runs={} concurrency={concurrency} at {} on {} cores, load {}",
            args.n,
            args.runs,
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            process::load_average()
        ),
    );
    say(
        args.emit,
        format!(
            "durability: fsync={} synchronous_commit={}{}",
            durability.fsync,
            durability.synchronous_commit,
            if durable {
                ""
            } else {
                "  WARNING: NOT DURABLE, numbers not comparable"
            }
        ),
    );
    say(
        args.emit,
        match batch {
            Some((size, per_invocation)) => format!(
                "tasks-queue-trigger: cardinality many, batches of up to {size} (host.json maxMessageBatchSize), {per_invocation} handlers at once per invocation (TRIGGER_BATCH_CONCURRENCY)"
            ),
            None => format!(
                "tasks-queue-trigger: cardinality one, {concurrency} invocations at once (maxConcurrentCalls)"
            ),
        },
    );
    if !stats {
        say(
            args.emit,
            "pg_stat_statements is not loaded (shared_preload_libraries): statement counts unavailable",
        );
    }

    let mut runs = Vec::new();
    for i in 1..=args.runs {
        let r = one_run(&args, &admin, &app_root, concurrency, stats, i).await?;
        say(
            args.emit,
            format!(
                "run {i}: floor {:.0} tx/s | wall {:.2} s | {:.0} tasks/s | ratio {:.3} | p50 {:.0} ms p99 {:.0} ms | {} stmts/task, {} round trips/task, {:.2} tx/task | {:.1} tasks/invocation | {:.2} rows, {:.1} index entries/task | peak RSS {:.1} MB | load {}",
                r.floor_tps,
                r.wall_s,
                r.tasks_per_s,
                r.ratio,
                r.p50_ms,
                r.p99_ms,
                r.statements_per_task
                    .map(|v| format!("{v:.2}"))
                    .unwrap_or_else(|| "n/a".into()),
                r.round_trips_per_task
                    .map(|v| format!("{v:.2}"))
                    .unwrap_or_else(|| "n/a".into()),
                r.tx_per_task,
                r.tasks_per_invocation,
                r.rows_written_per_task,
                r.index_entries_per_task,
                r.peak_rss_mb,
                r.load
            ),
        );
        runs.push(r);
    }
    let cold = cold_start(&args, &admin, &app_root).await?;
    let binary_mb = process::binary_mb();
    let m = |f: fn(&RunResult) -> f64| median(runs.iter().map(f).collect());
    let mo = |f: fn(&RunResult) -> Option<f64>| {
        let v: Vec<f64> = runs.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| median(v))
    };
    let summary = json!({
        "n": args.n,
        "runs": args.runs,
        "wall_s": m(|r| r.wall_s),
        "tasks_per_s": m(|r| r.tasks_per_s),
        "floor_tps": m(|r| r.floor_tps),
        "ratio": m(|r| r.ratio),
        "p50_ms": m(|r| r.p50_ms),
        "p99_ms": m(|r| r.p99_ms),
        "tx_per_task": m(|r| r.tx_per_task),
        "statements_per_task": mo(|r| r.statements_per_task),
        "round_trips_per_task": mo(|r| r.round_trips_per_task),
        "peak_rss_mb": m(|r| r.peak_rss_mb),
        "cold_start_ms": cold.cold_start_ms,
        "idle_rss_mb": cold.idle_rss_mb,
        "db_connections_at_first_answer": cold.db_connections_at_first_answer,
        "binary_mb": binary_mb,
        "concurrency": concurrency,
        "batch_size": batch.map(|(size, _)| size),
        "batch_concurrency": batch.map(|(_, c)| c),
        "tasks_per_invocation": m(|r| r.tasks_per_invocation),
        "rows_written_per_task": m(|r| r.rows_written_per_task),
        "index_entries_per_task": m(|r| r.index_entries_per_task),
        "durable": durable,
        "fsync": durability.fsync,
        "synchronous_commit": durability.synchronous_commit,
        "load": process::load_average(),
        "per_run": runs,
    });
    say(
        args.emit,
        format!(
            "median of {}: wall {:.2} s | {:.0} tasks/s | floor {:.0} tx/s | ratio {:.3} | p50 {:.0} ms p99 {:.0} ms | {:.2} tx/task | peak RSS {:.1} MB",
            args.runs,
            m(|r| r.wall_s),
            m(|r| r.tasks_per_s),
            m(|r| r.floor_tps),
            m(|r| r.ratio),
            m(|r| r.p50_ms),
            m(|r| r.p99_ms),
            m(|r| r.tx_per_task),
            m(|r| r.peak_rss_mb)
        ),
    );
    say(
        args.emit,
        format!(
            "cold start: {:.1} ms to the first GET / (median of 5), idle RSS {:.1} MB, {} DB connections at that moment; binary {:.1} MB",
            cold.cold_start_ms,
            cold.idle_rss_mb,
            cold.db_connections_at_first_answer,
            binary_mb.unwrap_or(f64::NAN)
        ),
    );
    if args.emit == Emit::Json {
        println!("{summary}");
    }
    Ok(summary)
}

/// The tasks trigger's batching: (maxMessageBatchSize, TRIGGER_BATCH_CONCURRENCY) when it is
/// `cardinality: many`, `None` for one message per invocation.
fn tasks_batch(layout: &crate::startup::layout::AppLayout) -> Option<(usize, usize)> {
    let many = layout.functions.iter().any(|f| {
        f.name == "tasks-queue-trigger"
            && matches!(
                f.trigger,
                crate::startup::layout::Trigger::ServiceBus { many: true, .. }
            )
    });
    let concurrency = std::env::var("TRIGGER_BATCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(crate::config::Settings::local("postgres://").trigger_batch_concurrency);
    many.then_some((layout.host.max_message_batch_size, concurrency))
}

async fn create_db(admin: &tokio_postgres::Client, name: &str) -> Result<(), BenchError> {
    drop_db(admin, name).await;
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .map_err(|e| BenchError::Db(format!("creating database {name}: {}", floor::pg_err(&e))))
}

async fn drop_db(admin: &tokio_postgres::Client, name: &str) {
    let _ = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
}

async fn one_run(
    args: &BenchArgs,
    admin: &tokio_postgres::Client,
    app_root: &std::path::Path,
    concurrency: usize,
    stats: bool,
    run_no: usize,
) -> Result<RunResult, BenchError> {
    let db = format!("cm_bench_{}_{run_no}", std::process::id());
    create_db(admin, &db).await?;
    let result = one_run_on(args, admin, app_root, concurrency, stats, &db).await;
    if !args.keep_db {
        drop_db(admin, &db).await;
    }
    result
}

async fn one_run_on(
    args: &BenchArgs,
    admin: &tokio_postgres::Client,
    app_root: &std::path::Path,
    concurrency: usize,
    stats: bool,
    db: &str,
) -> Result<RunResult, BenchError> {
    let db_url = floor::url_for_db(&args.database_url, db);
    {
        let mut c = floor::connect(&db_url).await?;
        crate::store::migrations::migrate(&mut c)
            .await
            .map_err(|e| BenchError::Db(format!("migrating {db}: {e}")))?;
    }
    let floor_tps = floor::measure_floor(
        &db_url,
        concurrency,
        Duration::from_secs_f64(args.floor_seconds),
    )
    .await?;

    let port = process::free_port()?;
    let started = Instant::now();
    let mut child = process::spawn(
        &[
            "local",
            "--port",
            &port.to_string(),
            "--app-root",
            &app_root.display().to_string(),
        ],
        &[("DATABASE_URL", db_url.clone())],
        args.child_log.as_deref(),
    )?;
    let pid = child.id().unwrap_or(0);
    process::wait_ready(port, &mut child, started, Duration::from_secs(60)).await?;
    // Let the start-up connections report their statistics before the "before" snapshot.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = floor::counters(admin, db, stats).await?;
    let writes_before = table_writes(&floor::connect(&db_url).await?).await?;

    let http = reqwest::Client::new();
    let resp = http
        .post(format!(
            "http://127.0.0.1:{port}/api/jobs/submit/noop_fanout"
        ))
        .json(&json!({"n": args.n, "run": format!("bench-{}-{}", std::process::id(), db)}))
        .send()
        .await
        .map_err(|e| BenchError::Workload(format!("submitting the job: {e}")))?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    let Some(job_id) = body["job_id"].as_str().map(str::to_string) else {
        return Err(BenchError::Workload(format!(
            "submit answered {status}: {body}"
        )));
    };

    let poller = floor::connect(&db_url).await?;
    let mut polls: i64 = 0;
    let deadline = Instant::now() + Duration::from_secs(args.timeout_s);
    let final_status = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        polls += 1;
        let s: String = poller
            .query_one(
                "SELECT status::text FROM app.jobs WHERE job_id = $1",
                &[&job_id],
            )
            .await
            .map_err(|e| BenchError::Db(format!("polling job {job_id}: {e}")))?
            .get("status");
        if !matches!(s.as_str(), "queued" | "processing") {
            break s;
        }
        if let Ok(Some(exit)) = child.try_wait() {
            return Err(BenchError::Workload(format!(
                "coremachine exited ({exit}) while job {job_id} was {s}"
            )));
        }
        if Instant::now() > deadline {
            return Err(BenchError::Workload(format!(
                "job {job_id} still {s} after {}s",
                args.timeout_s
            )));
        }
    };
    let peak_rss_mb = process::proc_status_mb(pid, "VmHWM").unwrap_or(f64::NAN);
    let _ = child.kill().await;
    drop(poller);
    // Exiting backends flush their statistics; give them a moment.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = floor::counters(admin, db, stats).await?;
    // The poller's own statements (one per poll, autocommit) are not the engine's.
    let mut delta = after - before;
    delta.transactions -= polls;
    delta.statements = delta.statements.map(|s| s - polls);
    delta.all_statements = delta.all_statements.map(|s| s - polls);

    let c = floor::connect(&db_url).await?;
    let writes = table_writes(&c).await?;
    if final_status != "completed" {
        return Err(BenchError::Workload(format!(
            "job {job_id} ended {final_status}"
        )));
    }
    let row = c
        .query_one(
            "SELECT extract(epoch FROM completed_at - created_at)::float8 AS wall_s,
                    (SELECT count(*) FROM app.tasks WHERE parent_job_id = $1 AND status = 'completed') AS done
             FROM app.jobs WHERE job_id = $1",
            &[&job_id],
        )
        .await
        .map_err(|e| BenchError::Db(format!("reading job {job_id}: {e}")))?;
    let wall_s: f64 = row.get("wall_s");
    let done: i64 = row.get("done");
    if done != 2 * args.n {
        return Err(BenchError::Workload(format!(
            "job {job_id} completed with {done} completed tasks, expected {}",
            2 * args.n
        )));
    }
    let lat = c
        .query_one(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50, percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99
             FROM (SELECT extract(epoch FROM completed_at - created_at) * 1000 AS ms
                   FROM app.tasks WHERE parent_job_id = $1) x",
            &[&job_id],
        )
        .await
        .map_err(|e| BenchError::Db(format!("reading task latencies: {e}")))?;
    let per_invocation: f64 = c
        .query_one(
            "SELECT COALESCE(count(*)::float8 / NULLIF(count(DISTINCT event_data->>'invocation_id'), 0), 0)
             FROM app.job_events WHERE job_id = $1 AND event_type = 'task_started'",
            &[&job_id],
        )
        .await
        .map_err(|e| BenchError::Db(format!("reading batch sizes: {e}")))?
        .get(0);
    let tasks = (2 * args.n) as f64;
    let tasks_per_s = tasks / wall_s;
    let per_table = writes_per_task(&writes_before, &writes, tasks);
    let rows_written_per_task = per_table.iter().map(|w| w.rows).sum();
    let index_entries_per_task = per_table.iter().map(|w| w.index_entries).sum();
    Ok(RunResult {
        n: args.n,
        wall_s,
        tasks_per_s,
        floor_tps,
        ratio: tasks_per_s / floor_tps,
        p50_ms: lat.get("p50"),
        p99_ms: lat.get("p99"),
        tx_per_task: delta.transactions as f64 / tasks,
        statements_per_task: delta.statements.map(|s| s as f64 / tasks),
        round_trips_per_task: delta.all_statements.map(|s| s as f64 / tasks),
        peak_rss_mb,
        tasks_per_invocation: per_invocation,
        rows_written_per_task,
        index_entries_per_task,
        writes_per_task: per_table,
        load: process::load_average(),
    })
}

/// Row writes of one `app` table (pg_stat_user_tables) and its index count.
#[derive(Debug, Clone, Default)]
struct TableWrites {
    inserted: i64,
    updated: i64,
    hot_updated: i64,
    deleted: i64,
    indexes: i64,
}

/// What the workload wrote into one table, per task.
#[derive(Debug, Clone, Serialize)]
pub struct WritesPerTask {
    /// The table (schema `app`).
    pub table: String,
    /// Rows inserted, updated and deleted per task (each a new row version or a dead one).
    pub rows: f64,
    /// Of those, updates that stayed on their page without an index entry (HOT), per task.
    pub hot_updates: f64,
    /// Index entries written per task: (inserts + non-HOT updates) × the table's indexes (a
    /// partial index whose predicate a row does not match gets none, so this is an upper bound).
    pub index_entries: f64,
}

async fn table_writes(
    c: &tokio_postgres::Client,
) -> Result<std::collections::BTreeMap<String, TableWrites>, BenchError> {
    let rows = c
        .query(
            "SELECT s.relname::text, s.n_tup_ins, s.n_tup_upd, s.n_tup_hot_upd, s.n_tup_del,
                    (SELECT count(*) FROM pg_index i WHERE i.indrelid = s.relid) AS indexes
             FROM pg_stat_user_tables s WHERE s.schemaname = 'app'",
            &[],
        )
        .await
        .map_err(|e| BenchError::Db(format!("reading table statistics: {e}")))?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                TableWrites {
                    inserted: r.get(1),
                    updated: r.get(2),
                    hot_updated: r.get(3),
                    deleted: r.get(4),
                    indexes: r.get(5),
                },
            )
        })
        .collect())
}

/// The per-task writes of every table the workload wrote to, largest first.
fn writes_per_task(
    before: &std::collections::BTreeMap<String, TableWrites>,
    after: &std::collections::BTreeMap<String, TableWrites>,
    tasks: f64,
) -> Vec<WritesPerTask> {
    let mut out: Vec<WritesPerTask> = after
        .iter()
        .filter_map(|(table, a)| {
            let b = before.get(table).cloned().unwrap_or_default();
            let (ins, upd, hot, del) = (
                a.inserted - b.inserted,
                a.updated - b.updated,
                a.hot_updated - b.hot_updated,
                a.deleted - b.deleted,
            );
            (ins + upd + del > 0).then(|| WritesPerTask {
                table: table.clone(),
                rows: (ins + upd + del) as f64 / tasks,
                hot_updates: hot as f64 / tasks,
                index_entries: ((ins + upd - hot) * a.indexes) as f64 / tasks,
            })
        })
        .collect();
    out.sort_by(|x, y| y.rows.total_cmp(&x.rows));
    out
}

/// Starts `coremachine serve` five times and times exec → first `GET /` answered.
/// A syntactically valid SAS connection string for the cold-start probe (never used to send).
const COLD_START_SAS: &str = "Endpoint=sb://coremachine-bench.servicebus.windows.net/;SharedAccessKeyName=bench;SharedAccessKey=bm90LWEtcmVhbC1rZXk=";

async fn cold_start(
    args: &BenchArgs,
    admin: &tokio_postgres::Client,
    app_root: &std::path::Path,
) -> Result<ColdStart, BenchError> {
    let db = format!("cm_bench_{}_cold", std::process::id());
    create_db(admin, &db).await?;
    let db_url = floor::url_for_db(&args.database_url, &db);
    let mut times = Vec::new();
    let mut rss = Vec::new();
    let mut conns = 0;
    for _ in 0..5 {
        let port = process::free_port()?;
        let started = Instant::now();
        let mut child = process::spawn(
            &["serve"],
            &[
                ("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string()),
                ("FUNCTIONS_APP_ROOT_PATH", app_root.display().to_string()),
                ("DATABASE_URL", db_url.clone()),
                // `serve` refuses to start without a Service Bus setting; the sender connects
                // only when it first sends, which never happens here.
                ("ServiceBusConnection", COLD_START_SAS.to_string()),
            ],
            None,
        )?;
        let t = process::wait_ready(port, &mut child, started, Duration::from_secs(10)).await?;
        times.push(t.as_secs_f64() * 1000.0);
        if let Some(pid) = child.id() {
            rss.push(process::proc_status_mb(pid, "VmRSS").unwrap_or(f64::NAN));
        }
        let n: i64 = admin
            .query_one(
                "SELECT count(*) AS connections FROM pg_stat_activity WHERE datname = $1",
                &[&db],
            )
            .await
            .map_err(|e| BenchError::Db(format!("reading pg_stat_activity: {e}")))?
            .get("connections");
        conns = conns.max(n);
        let _ = child.kill().await;
    }
    drop_db(admin, &db).await;
    Ok(ColdStart {
        cold_start_ms: median(times),
        idle_rss_mb: median(rss),
        db_connections_at_first_answer: conns,
    })
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }
}
