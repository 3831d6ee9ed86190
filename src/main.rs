//! The `coremachine` binary: `serve` (under the Functions host), `local` (host emulator included),
//! `migrate`, `janitor --once`, `purge [--dry-run]`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use coremachine::config::{Settings, TransportMode};
use coremachine::jobs::Registry;
use coremachine::local::{self, LocalOptions};
use coremachine::startup::{self, ServeOptions};
use coremachine::telemetry;

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
    let code = match run(cli).await {
        Ok(code) => code,
        Err(e) => fail(e),
    };
    // Upload the last batches (blocking: the exporter threads finish their uploads).
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    code
}

/// The error of a command, printed by [`fail`].
type Failure = Box<dyn std::error::Error>;

/// The directory the app's function folders are in: the option, else the current directory.
fn root(app_root: Option<PathBuf>) -> PathBuf {
    app_root.unwrap_or_else(|| std::env::current_dir().unwrap_or_default())
}

/// Prints `value` as pretty JSON on stdout.
fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

async fn run(cli: Cli) -> Result<ExitCode, Failure> {
    // `arg_required_else_help`: a bare `coremachine` prints the help (the host passes `serve`).
    let Some(command) = cli.command else {
        return Ok(ExitCode::from(2));
    };
    match command {
        Command::Client(cmd) => Ok(coremachine::cli::run(cmd).await),
        Command::Raster(cmd) => Ok(coremachine::cli::raster::run(cmd).await),
        Command::Bench(args) => {
            coremachine::bench::run(args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Local {
            port,
            app_root,
            unsafe_no_auth,
        } => {
            let opts = LocalOptions {
                settings: Settings::from_env(TransportMode::LocalQueue)?,
                port,
                app_root: root(app_root),
                emulator: true,
                migrate: true,
                max_concurrent_calls: None,
                unsafe_no_auth,
            };
            let app = local::start(opts, Registry::builtin(), startup::Seams::default()).await?;
            eprintln!("coremachine local mode listening on {}", app.url());
            startup::shutdown_signal().await;
            app.stop().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve => {
            let app = startup::serve(
                ServeOptions::from_env()?,
                Registry::builtin(),
                startup::Seams::default(),
            )
            .await?;
            startup::shutdown_signal().await;
            app.stop().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            let settings = Settings::from_env(TransportMode::LocalQueue)?;
            let (applied, pgstac) = startup::migrate(&settings).await?;
            if applied.is_empty() {
                println!("schema is up to date");
            } else {
                println!("applied migrations: {applied:?}");
            }
            if let Some(o) = pgstac {
                println!("pgstac: {}", serde_json::to_string(&o).unwrap_or_default());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Purge { dry_run } => {
            let settings = Settings::from_env(TransportMode::for_janitor())?;
            let pool = coremachine::store::connect::pool_for_settings(&settings)?;
            let policy = &settings.retention;
            let out = if dry_run {
                let p = coremachine::retention::preview(&pool, policy).await?;
                serde_json::json!({"dry_run": true, "policy": policy.describe(), "would_delete": p})
            } else {
                let r = coremachine::retention::run(&pool, policy).await?;
                serde_json::json!({"dry_run": false, "policy": policy.describe(), "deleted": r})
            };
            print_json(&out);
            Ok(ExitCode::SUCCESS)
        }
        Command::Janitor { once, app_root } => {
            let settings = Settings::from_env(TransportMode::for_janitor())?;
            let period = startup::janitor_period(&root(app_root))?;
            let engine =
                startup::engine(settings, Registry::builtin(), &startup::Seams::default())?;
            if once {
                print_json(&coremachine::janitor::run_once(&engine).await?);
                return Ok(ExitCode::SUCCESS);
            }
            // Every `period` until ctrl-c or SIGTERM, one JSON line per run on stdout. A failed
            // run is reported and the next one tried (the database may come back).
            let stop = startup::shutdown_signal();
            tokio::pin!(stop);
            loop {
                match coremachine::janitor::run_once(&engine).await {
                    Ok(report) => {
                        println!("{}", serde_json::to_string(&report).unwrap_or_default())
                    }
                    Err(e) => eprintln!("coremachine: janitor run failed: {e}"),
                }
                tokio::select! {
                    _ = &mut stop => return Ok(ExitCode::SUCCESS),
                    _ = tokio::time::sleep(period) => {}
                }
            }
        }
    }
}
