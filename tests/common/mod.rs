//! Test harness: a template database migrated once, a fresh database per test, and CoreMachine
//! started in-process in local mode (handler + emulator) on a free port.

#![allow(dead_code)]

pub mod files;
pub mod ingestion;
pub mod invocations;
pub mod jobs;
pub mod kql;
pub mod local_process;

use std::sync::Arc;
use std::time::{Duration, Instant};

use coremachine::config::{LocalQueueSettings, Settings, TransportSettings};
use coremachine::jobs::Registry;
use coremachine::local::{self, LocalOptions};
use coremachine::startup::App;
use coremachine::testing::{Fault, FaultRule, Faults};
use serde_json::Value;
use tokio::sync::OnceCell;
use tokio_postgres::NoTls;

static TEMPLATE: OnceCell<String> = OnceCell::const_new();

/// The admin URL of the test cluster (scripts/test.sh exports it).
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:55432/postgres".to_string())
}

fn url_for(db: &str) -> String {
    let admin = admin_url();
    let base = admin
        .rsplit_once('/')
        .map(|(b, _)| b.to_string())
        .unwrap_or(admin);
    format!("{base}/{db}")
}

async fn admin() -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(&admin_url(), NoTls)
        .await
        .expect("test PostgreSQL is reachable (run ./scripts/test.sh, or set TEST_DATABASE_URL)");
    tokio::spawn(conn);
    c
}

async fn template() -> String {
    TEMPLATE
        .get_or_init(|| async {
            let name = format!("cm_tpl_{}", std::process::id());
            let a = admin().await;
            a.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await
                .expect("drop old template");
            a.batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create template database");
            let (mut c, conn) = tokio_postgres::connect(&url_for(&name), NoTls)
                .await
                .expect("connect template");
            let h = tokio::spawn(conn);
            coremachine::store::migrations::migrate(&mut c)
                .await
                .expect("migrate template");
            drop(c);
            let _ = h.await;
            name
        })
        .await
        .clone()
}

/// A fresh, migrated database; returns its URL.
pub async fn fresh_db() -> (String, String) {
    let tpl = template().await;
    let name = format!("cm_t_{}", uuid::Uuid::new_v4().simple());
    clone_db(&tpl, &name).await;
    (name.clone(), url_for(&name))
}

async fn clone_db(tpl: &str, name: &str) {
    let a = admin().await;
    for attempt in 0..20 {
        match a
            .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {tpl}"))
            .await
        {
            Ok(()) => break,
            Err(e) if attempt < 19 => {
                // Another test may be cloning the template at this instant.
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50 + 25 * attempt)).await;
            }
            Err(e) => panic!("create test database: {e}"),
        }
    }
}

static PGSTAC_TEMPLATE: OnceCell<String> = OnceCell::const_new();

/// The pgSTAC install file (`PGSTAC_SQL`, fetched by scripts/lib/geo.sh).
pub fn pgstac_sql() -> std::path::PathBuf {
    std::env::var_os("PGSTAC_SQL").map(Into::into).expect(
        "PGSTAC_SQL names pgstac.0.10.0.sql (./scripts/test.sh fetches it; for one test: source scripts/lib/geo.sh && ensure_geo_test_tools)",
    )
}

/// The migrated template plus pgSTAC, installed once per test process by CoreMachine's own
/// pgSTAC migration (~2 s), so only the tests that need pgSTAC pay for it.
async fn pgstac_template() -> String {
    PGSTAC_TEMPLATE
        .get_or_init(|| async {
            let sql = coremachine::store::pgstac::PgstacSql::read(&pgstac_sql())
                .expect("read PGSTAC_SQL");
            let tpl = template().await;
            let name = format!("cm_tpl_stac_{}", std::process::id());
            admin()
                .await
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await
                .expect("drop old pgSTAC template");
            clone_db(&tpl, &name).await;
            let (mut c, conn) = tokio_postgres::connect(&url_for(&name), NoTls)
                .await
                .expect("connect pgSTAC template");
            let h = tokio::spawn(conn);
            coremachine::store::pgstac::migrate_with(&mut c, &sql, None)
                .await
                .expect("install pgSTAC into the template");
            drop(c);
            let _ = h.await;
            name
        })
        .await
        .clone()
}

/// A fresh, migrated database with pgSTAC installed.
pub async fn fresh_db_with_pgstac() -> (String, String) {
    let tpl = pgstac_template().await;
    let name = format!("cm_t_{}", uuid::Uuid::new_v4().simple());
    clone_db(&tpl, &name).await;
    (name.clone(), url_for(&name))
}

/// Runs a command to its end (at most 60 s); returns its exit code and stdout then stderr.
pub async fn run_to_end(mut cmd: tokio::process::Command) -> (Option<i32>, String, String) {
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("the command exits")
        .expect("the command runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Drops a database made by [`fresh_db`].
pub async fn drop_db(name: &str) {
    let a = admin().await;
    let _ = a
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
}

/// Options of a test app.
#[derive(Clone)]
pub struct Opts {
    pub settings: Settings,
    pub emulator: bool,
    pub max_concurrent_calls: Option<usize>,
    pub registry: Registry,
    pub unsafe_no_auth: bool,
    /// The Functions app layout to read (default: the repository's own).
    pub app_root: Option<std::path::PathBuf>,
}

impl Opts {
    pub fn new(db_url: &str) -> Self {
        let mut settings = Settings::local(db_url);
        settings.db_pool_size = 12;
        settings.transport = TransportSettings::Local(LocalQueueSettings {
            poll_interval: Duration::from_millis(25),
            ..LocalQueueSettings::default()
        });
        settings.retry.base_delay = Duration::from_millis(200);
        settings.retry.max_delay = Duration::from_secs(2);
        Self {
            settings,
            emulator: true,
            max_concurrent_calls: Some(8),
            registry: jobs::test_registry(),
            unsafe_no_auth: false,
            app_root: None,
        }
    }

    /// The local queue's settings (the test app's transport is the local queue unless a test
    /// chose Service Bus).
    pub fn local_queue(&mut self) -> &mut LocalQueueSettings {
        match &mut self.settings.transport {
            TransportSettings::Local(q) => q,
            TransportSettings::ServiceBus(_) => panic!("the test app sends through Service Bus"),
        }
    }
}

/// A running test instance on its own database.
pub struct TestApp {
    pub app: Option<App>,
    pub db_name: String,
    pub db_url: String,
    pub faults: Arc<Faults>,
    pub http: reqwest::Client,
    pub base: String,
    pub opts: Opts,
}

impl TestApp {
    /// Fresh database, default options.
    pub async fn start() -> Self {
        let (name, url) = fresh_db().await;
        Self::start_with(name, url.clone(), Opts::new(&url)).await
    }

    /// Fresh database, options adjusted by `f`.
    pub async fn start_opts(f: impl FnOnce(&mut Opts)) -> Self {
        if std::env::var_os("TEST_LOG").is_some() {
            // Engine logs (filtered by RUST_LOG) into the test's captured output, for diagnosis.
            coremachine::telemetry::init();
        }
        let (name, url) = fresh_db().await;
        let mut o = Opts::new(&url);
        f(&mut o);
        Self::start_with(name, url, o).await
    }

    /// An instance (no emulator) whose database URL points at a closed port.
    pub async fn start_without_database() -> Self {
        let (name, _) = fresh_db().await;
        let dead_url = "postgres://postgres@127.0.0.1:9/none";
        let mut o = Opts::new(dead_url);
        o.emulator = false;
        o.settings.db_pool_size = 2;
        Self::start_with(name, dead_url.into(), o).await
    }

    /// Starts on an existing database.
    pub async fn start_with(db_name: String, db_url: String, opts: Opts) -> Self {
        let faults = Arc::new(Faults::none());
        let app = local::start(
            LocalOptions {
                settings: opts.settings.clone(),
                port: 0,
                app_root: opts
                    .app_root
                    .clone()
                    .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
                emulator: opts.emulator,
                migrate: false,
                max_concurrent_calls: opts.max_concurrent_calls,
                unsafe_no_auth: opts.unsafe_no_auth,
            },
            // The fault plan reaches the app through its seams: the registry's job code, the
            // engine's hooks, the transport and the emulator's deliveries.
            coremachine::testing::with_faults(opts.registry.clone(), faults.clone()),
            coremachine::testing::seams(&faults),
        )
        .await
        .expect("local mode starts");
        let base = app.url();
        Self {
            app: Some(app),
            db_name,
            db_url,
            faults,
            http: reqwest::Client::new(),
            base,
            opts,
        }
    }

    /// Simulates a crash and starts a new process on the same database.
    pub async fn restart_after_kill(mut self, f: impl FnOnce(&mut Opts)) -> Self {
        if let Some(app) = self.app.take() {
            app.kill().await;
        }
        let mut opts = self.opts.clone();
        f(&mut opts);
        Self::start_with(self.db_name.clone(), self.db_url.clone(), opts).await
    }

    pub fn engine(&self) -> &coremachine::engine::Engine {
        &self.app.as_ref().expect("app running").engine
    }

    pub fn fault(&self, rule: FaultRule) {
        self.faults.add(rule);
    }

    /// A direct database connection.
    pub async fn db(&self) -> tokio_postgres::Client {
        let (c, conn) = tokio_postgres::connect(&self.db_url, NoTls)
            .await
            .expect("connect test db");
        tokio::spawn(conn);
        c
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post_raw(&self, path: &str, body: Vec<u8>, content_type: &str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Submits and returns the job id (asserts 201).
    pub async fn submit(&self, job_type: &str, params: Value) -> String {
        let (s, b) = self
            .post(&format!("/api/jobs/submit/{job_type}"), &params)
            .await;
        assert_eq!(s, 201, "submit {job_type}: {b}");
        b["job_id"].as_str().expect("job_id").to_string()
    }

    /// Waits until the job is terminal; returns its status.
    pub async fn wait_terminal(&self, job_id: &str, timeout: Duration) -> String {
        let c = self.db().await;
        let start = Instant::now();
        loop {
            let s: String = c
                .query_one(
                    "SELECT status::text FROM app.jobs WHERE job_id = $1",
                    &[&job_id],
                )
                .await
                .expect("job exists")
                .get(0);
            if ["completed", "failed", "completed_with_errors", "cancelled"].contains(&s.as_str()) {
                return s;
            }
            if start.elapsed() > timeout {
                let dump = self.dump(job_id).await;
                panic!("job {job_id} still {s} after {timeout:?}\n{dump}");
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    /// Waits until no queue message or outbox row is left (the system is quiet).
    pub async fn wait_quiet(&self, timeout: Duration) {
        let c = self.db().await;
        let start = Instant::now();
        loop {
            let n: i64 = c
                .query_one(
                    "SELECT (SELECT count(*) FROM app.queue_messages WHERE queue <> 'geospatial-poison/$DeadLetterQueue') + (SELECT count(*) FROM app.outbox)",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if n == 0 {
                return;
            }
            if start.elapsed() > timeout {
                panic!("{n} queue messages / outbox rows still pending after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    /// Event types of a job in order.
    pub async fn event_types(&self, job_id: &str) -> Vec<String> {
        self.db()
            .await
            .query(
                "SELECT event_type FROM app.job_events WHERE job_id = $1 ORDER BY event_id",
                &[&job_id],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    pub async fn count(&self, sql: &str, job_id: &str) -> i64 {
        self.db()
            .await
            .query_one(sql, &[&job_id])
            .await
            .unwrap()
            .get(0)
    }

    /// A human dump of a job for failure messages.
    pub async fn dump(&self, job_id: &str) -> String {
        let c = self.db().await;
        let job = c
            .query_opt("SELECT status::text, stage, error_details, result_data::text FROM app.jobs WHERE job_id = $1", &[&job_id])
            .await
            .ok()
            .flatten()
            .map(|r| format!("job: {} stage {} err {:?} result {:?}", r.get::<_, String>(0), r.get::<_, i32>(1), r.get::<_, Option<String>>(2), r.get::<_, Option<String>>(3)))
            .unwrap_or_default();
        let tasks = c
            .query("SELECT stage, status::text, count(*) FROM app.tasks WHERE parent_job_id = $1 GROUP BY 1, 2 ORDER BY 1, 2", &[&job_id])
            .await
            .map(|rows| rows.iter().map(|r| format!("s{} {}={}", r.get::<_, i32>(0), r.get::<_, String>(1), r.get::<_, i64>(2))).collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        let q = c
            .query(
                "SELECT queue, delivery_count, visible_at > now() FROM app.queue_messages",
                &[],
            )
            .await
            .map(|rows| {
                rows.iter()
                    .map(|r| {
                        format!(
                            "{}:{}:{}",
                            r.get::<_, String>(0),
                            r.get::<_, i32>(1),
                            r.get::<_, bool>(2)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let ev = self.event_types(job_id).await.join(",");
        format!("{job}\ntasks: {tasks}\nqueue: {q}\nevents: {ev}")
    }

    /// Stops the app, waits until every connection to its database has closed (a backend reports
    /// its statistics as it exits) and returns how many transactions the server aborted to break a
    /// deadlock in that database. Drop every client of the test's own first.
    pub async fn stop_and_count_deadlocks(&mut self) -> i64 {
        if let Some(app) = self.app.take() {
            app.kill().await;
        }
        let a = admin().await;
        let start = Instant::now();
        loop {
            let r = a
                .query_one(
                    "SELECT (SELECT count(*) FROM pg_stat_activity WHERE datname = $1), deadlocks FROM pg_stat_database WHERE datname = $1",
                    &[&self.db_name],
                )
                .await
                .unwrap();
            let (open, deadlocks): (i64, i64) = (r.get(0), r.get(1));
            if open == 0 {
                // Statistics of the last backends may land just after they exit.
                tokio::time::sleep(Duration::from_millis(600)).await;
                let _ = a.batch_execute("SELECT pg_stat_clear_snapshot()").await;
                return a
                    .query_one(
                        "SELECT deadlocks FROM pg_stat_database WHERE datname = $1",
                        &[&self.db_name],
                    )
                    .await
                    .unwrap()
                    .get::<_, i64>(0)
                    .max(deadlocks);
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{open} connections to {} still open 30 s after the app stopped",
                self.db_name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the app and drops its database.
    pub async fn cleanup(mut self) {
        if let Some(app) = self.app.take() {
            app.kill().await;
        }
        let a = admin().await;
        let _ = a
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.db_name
            ))
            .await;
    }
}

/// Fixture files under tests/fixtures.
/// A hello_world job (n = 3) whose stage-1 task 1 meets `fault` once, under a task lease of
/// `lease` and a queue lock of 1 s, with `more` applied to the options.
pub async fn hello_world_with_task_1_faulted(
    fault: Fault,
    lease: Duration,
    more: impl FnOnce(&mut Opts),
) -> (TestApp, String) {
    let t = TestApp::start_opts(|o| {
        o.settings.task_lease = lease;
        o.local_queue().lock_duration = Duration::from_secs(1);
        more(o);
    })
    .await;
    t.fault(FaultRule::times(fault, 1).on_index(1).on_stage(1));
    let job = t.submit("hello_world", serde_json::json!({"n": 3})).await;
    (t, job)
}

pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture exists")
}
