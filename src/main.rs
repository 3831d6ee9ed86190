//! The `coremachine` binary: `serve` (under the Functions host), `local` (host emulator included),
//! `migrate`, `janitor --once`.

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
    about = "Multi-stage job orchestration engine (Azure Functions custom handler)"
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
    },
    /// Apply pending database migrations (and pgSTAC when PGSTAC_SQL names its install file).
    Migrate,
    /// Client subcommands that talk to a running service over HTTP.
    #[command(flatten)]
    Client(coremachine::cli::ClientCommand),
    /// Run the janitor.
    Janitor {
        /// Run one pass and exit.
        #[arg(long)]
        once: bool,
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
    let telemetry = telemetry::init_from_env();
    let code = run(cli).await;
    // Upload the last batches (blocking: the exporter threads finish their uploads).
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    code
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
    match cli.command.unwrap_or(Command::Serve) {
        Command::Client(cmd) => coremachine::cli::run(cmd).await,
        Command::Raster(cmd) => coremachine::cli::raster::run(cmd).await,
        Command::Bench(args) => match coremachine::bench::run(args).await {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        },
        Command::Local { port, app_root } => {
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
        Command::Janitor { once: _ } => {
            let settings = match Settings::from_env(TransportMode::for_janitor()) {
                Ok(s) => s,
                Err(e) => return fail(e),
            };
            let root = std::env::current_dir().unwrap_or_default();
            let opts = LocalOptions {
                settings,
                port: 0,
                app_root: root,
                emulator: false,
                migrate: false,
                max_concurrent_calls: None,
            };
            let app = match local::start(opts, Registry::builtin(), Arc::new(Faults::none())).await
            {
                Ok(a) => a,
                Err(e) => return fail(e),
            };
            let r = coremachine::janitor::run_once(&app.engine).await;
            app.stop().await;
            match r {
                Ok(report) => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&report).unwrap_or_default()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
    }
}
