//! The `coremachine` binary: `serve` (under the Functions host), `local` (host emulator included),
//! `migrate`, `janitor --once`, `purge [--dry-run]`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use coremachine::config::{Settings, TransportMode};
use coremachine::engine::Faults;
use coremachine::jobs::Registry;
use coremachine::local::{self, LocalOptions};
use coremachine::{store, telemetry};

#[derive(Parser)]
#[command(
    name = "coremachine",
    version,
    about = "Multi-stage job orchestration engine (Azure Functions custom handler)",
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run as the Functions custom handler (listens on FUNCTIONS_CUSTOMHANDLER_PORT).
    Serve,
    /// Run locally: the handler plus a host emulator delivering PostgreSQL-backed queues.
    Local {
        /// Port for the API and trigger routes (as `func start` would use).
        #[arg(long, default_value_t = 7071, env = "COREMACHINE_PORT")]
        port: u16,
        /// Folder holding host.json and the function folders (default: the current directory).
        #[arg(long, env = "FUNCTIONS_APP_ROOT_PATH")]
        app_root: Option<PathBuf>,
        /// Allow COREMACHINE_ADMIN_ENABLED=true without LOCAL_ADMIN_KEY / LOCAL_FUNCTION_KEYS:
        /// anyone reaching the port can then apply migrations and drop the schema.
        #[arg(long)]
        unsafe_no_auth: bool,
    },
    /// Apply pending database migrations (and pgSTAC when PGSTAC_SQL names its install file).
    Migrate,
    /// Client subcommands that talk to a running service over HTTP.
    #[command(flatten)]
    Client(coremachine::cli::ClientCommand),
    /// Run the janitor: every period of the `janitor-timer-trigger` schedule, or once with
    /// `--once`. Each run's report goes to stdout as JSON, log lines to stderr.
    Janitor {
        /// Run one pass and exit.
        #[arg(long)]
        once: bool,
        /// Folder holding host.json and the function folders (default: the current directory).
        #[arg(long, env = "FUNCTIONS_APP_ROOT_PATH")]
        app_root: Option<PathBuf>,
    },
    /// Apply the retention policy now (RETENTION_* settings; the janitor does it every run).
    Purge {
        /// Only show what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
    /// Benchmark: the noop_fanout workload against the PostgreSQL floor (docs/performance.md).
    Bench(coremachine::bench::BenchArgs),
    /// process_raster's GDAL steps on local files (validate, cog), and their benchmark.
    #[command(subcommand)]
    Raster(coremachine::cli::raster::RasterCommand),
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("coremachine: {msg}");
    ExitCode::from(1)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands whose stdout is their report log to stderr (`coremachine janitor --once | jq`).
    let telemetry = match cli.command {
        Some(Command::Janitor { .. } | Command::Migrate) => telemetry::init_from_env_on_stderr(),
        _ => telemetry::init_from_env(),
    };
    let code = run(cli).await;
    // Upload the last batches (blocking: the exporter threads finish their uploads).
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    code
}

/// The period of the app's `janitor-timer-trigger` schedule (5 minutes without one).
fn janitor_period(root: &std::path::Path) -> Result<std::time::Duration, local::StartError> {
    let layout = local::functions::AppLayout::read(root)?;
    Ok(layout
        .functions
        .iter()
        .find_map(|f| match &f.trigger {
            local::functions::Trigger::Timer { schedule } => {
                Some(local::functions::timer_period(schedule))
            }
            _ => None,
        })
        .unwrap_or(std::time::Duration::from_secs(300)))
}

/// Runs the janitor every `period` until ctrl-c or SIGTERM; one JSON line per run on stdout. A
/// failed run is reported and the next one tried (the database may come back).
async fn janitor_loop(
    engine: &coremachine::engine::Engine,
    period: std::time::Duration,
) -> ExitCode {
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        match coremachine::janitor::run_once(engine).await {
            Ok(report) => println!("{}", serde_json::to_string(&report).unwrap_or_default()),
            Err(e) => eprintln!("coremachine: janitor run failed: {e}"),
        }
        tokio::select! {
            _ = &mut stop => return ExitCode::SUCCESS,
            _ = tokio::time::sleep(period) => {}
        }
    }
}

/// Resolves on ctrl-c or SIGTERM (what the Functions host sends to stop the worker).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

async fn run(cli: Cli) -> ExitCode {
    // `arg_required_else_help`: a bare `coremachine` prints the help (the host passes `serve`).
    let Some(command) = cli.command else {
        return ExitCode::from(2);
    };
    match command {
        Command::Client(cmd) => coremachine::cli::run(cmd).await,
        Command::Raster(cmd) => coremachine::cli::raster::run(cmd).await,
        Command::Bench(args) => match coremachine::bench::run(args).await {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        },
        Command::Local {
            port,
            app_root,
            unsafe_no_auth,
        } => {
            let settings = match Settings::from_env(TransportMode::LocalQueue) {
                Ok(s) => s,
                Err(e) => return fail(e),
            };
            let root = app_root.unwrap_or_else(|| std::env::current_dir().unwrap_or_default());
            let opts = LocalOptions {
                settings,
                port,
                app_root: root,
                emulator: true,
                migrate: true,
                max_concurrent_calls: None,
                unsafe_no_auth,
            };
            let app = match local::start(opts, Registry::builtin(), Arc::new(Faults::none())).await
            {
                Ok(a) => a,
                Err(e) => return fail(e),
            };
            eprintln!("coremachine local mode listening on {}", app.url());
            shutdown_signal().await;
            app.stop().await;
            ExitCode::SUCCESS
        }
        Command::Serve => {
            let port: u16 = std::env::var("FUNCTIONS_CUSTOMHANDLER_PORT")
                .ok()
                .and_then(|p| p.parse().ok())
                .unwrap_or(8080);
            let settings = match Settings::from_env(TransportMode::ServiceBus) {
                Ok(s) => s,
                Err(e) => return fail(e),
            };
            let root = std::env::var("FUNCTIONS_APP_ROOT_PATH")
                .map(PathBuf::from)
                .unwrap_or_else(|_| std::env::current_dir().unwrap_or_default());
            let migrate = settings.migrate_on_start;
            let opts = LocalOptions {
                settings,
                port,
                app_root: root,
                emulator: false,
                migrate,
                max_concurrent_calls: None,
                unsafe_no_auth: false,
            };
            let app = match local::start(opts, Registry::builtin(), Arc::new(Faults::none())).await
            {
                Ok(a) => a,
                Err(e) => return fail(e),
            };
            shutdown_signal().await;
            app.stop().await;
            ExitCode::SUCCESS
        }
        Command::Migrate => {
            let settings = match Settings::from_env(TransportMode::LocalQueue) {
                Ok(s) => s,
                Err(e) => return fail(e),
            };
            let pool = match store::connect::pool_for_settings(&settings) {
                Ok(p) => p,
                Err(e) => return fail(e),
            };
            let mut c = match store::client(&pool, "migrating").await {
                Ok(c) => c,
                Err(e) => return fail(e),
            };
            match store::migrations::migrate(&mut c).await {
                Ok(v) if v.is_empty() => println!("schema is up to date"),
                Ok(v) => println!("applied migrations: {v:?}"),
                Err(e) => return fail(e),
            }
            // pgSTAC, when PGSTAC_SQL names its install file (src/store/pgstac.rs).
            match store::pgstac::migrate_configured(&mut c).await {
                Ok(None) => {}
                Ok(Some(o)) => {
                    println!("pgstac: {}", serde_json::to_string(&o).unwrap_or_default())
                }
                Err(e) => return fail(e),
            }
            ExitCode::SUCCESS
        }
        Command::Purge { dry_run } => {
            let settings = match Settings::from_env(TransportMode::for_janitor()) {
                Ok(s) => s,
                Err(e) => return fail(e),
            };
            let pool = match store::connect::pool_for_settings(&settings) {
                Ok(p) => p,
                Err(e) => return fail(e),
            };
            let policy = &settings.retention;
            let out = if dry_run {
                coremachine::retention::preview(&pool, policy)
                    .await
                    .map(|p| serde_json::json!({"dry_run": true, "policy": policy.describe(), "would_delete": p}))
            } else {
                coremachine::retention::run(&pool, policy)
                    .await
                    .map(|r| serde_json::json!({"dry_run": false, "policy": policy.describe(), "deleted": r}))
            };
            match out {
                Ok(v) => {
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Command::Janitor { once, app_root } => {
            let settings = match Settings::from_env(TransportMode::for_janitor()) {
                Ok(s) => s,
                Err(e) => return fail(e),
            };
            let root = app_root.unwrap_or_else(|| std::env::current_dir().unwrap_or_default());
            let period = match janitor_period(&root) {
                Ok(p) => p,
                Err(e) => return fail(e),
            };
            let opts = LocalOptions {
                settings,
                port: 0,
                app_root: root,
                emulator: false,
                migrate: false,
                max_concurrent_calls: None,
                unsafe_no_auth: false,
            };
            let app = match local::start(opts, Registry::builtin(), Arc::new(Faults::none())).await
            {
                Ok(a) => a,
                Err(e) => return fail(e),
            };
            let code = if once {
                match coremachine::janitor::run_once(&app.engine).await {
                    Ok(report) => {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&report).unwrap_or_default()
                        );
                        ExitCode::SUCCESS
                    }
                    Err(e) => fail(e),
                }
            } else {
                janitor_loop(&app.engine, period).await
            };
            app.stop().await;
            code
        }
    }
}
