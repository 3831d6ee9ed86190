//! Start-up: everything that turns settings into a running app, in one place.
//!
//! [`serve`] is `coremachine serve` under the Functions host: the pool, the transport the
//! settings name ([`TransportSettings`]: Service Bus in Azure, so no local queue is built), the
//! engine, the router, and the schema prepared in the background behind the bound port
//! (engine/readiness.rs). [`engine`] is the same wiring without a server, for the commands that
//! run none (`janitor`). Local mode (`crate::local`) builds on [`Wiring`]: it migrates first,
//! puts the host's key checks in front of the router and adds the host emulator on top.
//!
//! - [`layout`]: the Functions app layout (host.json, one function.json per folder).
//! - [`routes`]: the HTTP functions' routes, as the host matches requests to them.
//! - [`server`]: the HTTP server of every mode (timeouts, connection limit).

pub mod layout;
pub mod routes;
mod seams;
pub(crate) mod server;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::Response;
use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;

use crate::config::{Settings, TransportMode, TransportSettings};
use crate::engine::Engine;
use crate::engine::readiness::{Preparation, Readiness};
use crate::jobs::Registry;
use crate::store;
use crate::transport::SharedTransport;
use crate::transport::local_queue::LocalQueue;
use crate::transport::service_bus::{SenderSetupError, ServiceBusSender};
use layout::{AppLayout, LayoutError, Trigger, timer_period};
use routes::HttpRoutes;
pub use seams::{Deliveries, HostDeliveries, Seams, TransportWrap};

/// Options for [`serve`].
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Settings (DATABASE_URL, the transport etc.).
    pub settings: Settings,
    /// Port to listen on (0 = any free port).
    pub port: u16,
    /// Folder holding host.json and the function folders.
    pub app_root: PathBuf,
    /// Apply pending migrations (after the port is bound, retried in the background until they
    /// succeed); without it the schema is only checked.
    pub migrate: bool,
}

impl ServeOptions {
    /// What the Functions host gives `coremachine serve`: the port in
    /// `FUNCTIONS_CUSTOMHANDLER_PORT` (8080 without it), the app in `FUNCTIONS_APP_ROOT_PATH`
    /// (else the current directory), the Service Bus settings, and `MIGRATE_ON_START`.
    pub fn from_env() -> Result<Self, crate::config::ConfigError> {
        let settings = Settings::from_env(TransportMode::ServiceBus)?;
        let port = std::env::var("FUNCTIONS_CUSTOMHANDLER_PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(8080);
        let app_root = std::env::var("FUNCTIONS_APP_ROOT_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|_| std::env::current_dir().unwrap_or_default());
        Ok(Self {
            migrate: settings.migrate_on_start,
            settings,
            port,
            app_root,
        })
    }
}

/// A running app: the HTTP server and whatever was started beside it (the schema preparation,
/// the host emulator's pumps in local mode).
pub struct App {
    /// The engine.
    pub engine: Engine,
    /// Where it listens.
    pub addr: SocketAddr,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("addr", &self.addr).finish()
    }
}

impl App {
    /// Base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving and delivering; in-flight invocations are dropped (like a killed process).
    pub async fn kill(self) {
        self.shutdown.cancel();
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// Stops gracefully: no new deliveries, in-flight requests finish.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Why the app could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Database.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// App layout.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// Registry.
    #[error(transparent)]
    Registry(#[from] crate::jobs::RegistryError),
    /// The Service Bus transport cannot be set up.
    #[error(transparent)]
    ServiceBus(#[from] SenderSetupError),
    /// Admin routes enabled in local mode with no key to guard them.
    #[error(
        "COREMACHINE_ADMIN_ENABLED=true needs LOCAL_ADMIN_KEY in local mode: without a key anyone who reaches the port could drop the schema (redeploy); set the key, or pass --unsafe-no-auth to accept that on a machine nobody else reaches"
    )]
    AdminWithoutKeys,
    /// The host emulator delivers the local queue; Service Bus settings give it nothing to
    /// deliver.
    #[error(
        "the host emulator delivers the local queue, but the settings send messages through Service Bus"
    )]
    EmulatorWithoutLocalQueue,
    /// Listening socket.
    #[error("cannot listen on port {port}: {source}")]
    Bind {
        /// Port.
        port: u16,
        /// Cause.
        source: std::io::Error,
    },
}

/// `coremachine serve`: binds the port first, then prepares the schema (migrations with
/// `opts.migrate`, else a check) behind it; until that succeeds the trigger routes and health
/// answer 503 with the cause. The first attempt is awaited, so a healthy database is ready when
/// this returns.
pub async fn serve(
    opts: ServeOptions,
    registry: Registry,
    seams: Seams,
) -> Result<App, StartError> {
    registry.validate()?;
    let wiring = Wiring::new(opts.settings, &opts.app_root)?;
    let readiness = Arc::new(Readiness::not_ready(
        "the schema has not been checked yet",
        url::Url::parse(&wiring.settings.database_url)
            .ok()
            .and_then(|u| u.password().map(str::to_string)),
    ));
    let engine = wiring
        .engine(registry, &seams)
        .with_readiness(readiness.clone());
    let mut app = wiring.listen(opts.port, engine, |app| app).await?;
    let how = if opts.migrate {
        Preparation::Migrate
    } else {
        Preparation::Check
    };
    // The port already answers; the pool's connect and create timeouts bound this attempt.
    // Later attempts run in the background with backoff.
    if !readiness.attempt(&wiring.pool, how, 0).await {
        let (pool, sd) = (wiring.pool.clone(), app.shutdown.clone());
        app.tasks.push(tokio::spawn(async move {
            readiness.prepare_until_ready(&pool, how, 1, &sd).await;
        }));
    }
    Ok(app)
}

/// The engine alone, over the pool and transport `settings` name, for commands that run no
/// server (`janitor`). Connects lazily.
pub fn engine(settings: Settings, registry: Registry, seams: &Seams) -> Result<Engine, StartError> {
    registry.validate()?;
    let settings = Arc::new(settings);
    let pool = store::connect::pool_for_settings(&settings)?;
    let (transport, _) = transport(&settings, &pool)?;
    Ok(Engine::new(
        pool,
        registry,
        settings,
        seams.transport(transport),
        seams.hooks(),
    ))
}

/// `coremachine migrate`: applies pending migrations to the database `settings` name, and
/// pgSTAC when `PGSTAC_SQL` names its install file (src/store/pgstac.rs). Returns the versions
/// applied and what pgSTAC did.
pub async fn migrate(
    settings: &Settings,
) -> Result<(Vec<i32>, Option<store::pgstac::Outcome>), StartError> {
    let pool = store::connect::pool_for_settings(settings)?;
    Ok(migrate_pool(&pool).await?)
}

/// Applies pending migrations and the configured pgSTAC through `pool`.
pub(crate) async fn migrate_pool(
    pool: &Pool,
) -> Result<(Vec<i32>, Option<store::pgstac::Outcome>), store::StoreError> {
    let mut c = store::client(pool, "migrating").await?;
    let applied = store::migrations::migrate(&mut c).await?;
    let pgstac = store::pgstac::migrate_configured(&mut c).await?;
    Ok((applied, pgstac))
}

/// The period of the app's `janitor-timer-trigger` schedule (5 minutes without one).
pub fn janitor_period(app_root: &Path) -> Result<Duration, LayoutError> {
    let layout = AppLayout::read(app_root)?;
    Ok(layout
        .functions
        .iter()
        .find_map(|f| match &f.trigger {
            Trigger::Timer { schedule } => Some(timer_period(schedule)),
            _ => None,
        })
        .unwrap_or(Duration::from_secs(300)))
}

/// Resolves on ctrl-c or SIGTERM (what the Functions host sends to stop the worker).
pub async fn shutdown_signal() {
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

/// The transport `settings` name over `pool`, and the local queue when it is one (the host
/// emulator waits on its wakers). Service Bus settings build a sender and no local queue.
fn transport(
    settings: &Settings,
    pool: &Pool,
) -> Result<(SharedTransport, Option<LocalQueue>), SenderSetupError> {
    match &settings.transport {
        TransportSettings::Local(_) => {
            let q = &settings.queues;
            let local = LocalQueue::new(pool.clone(), &[&q.jobs, &q.tasks, &q.poison]);
            Ok((Arc::new(local.clone()), Some(local)))
        }
        TransportSettings::ServiceBus(sb) => {
            Ok((Arc::new(ServiceBusSender::new(sb.clone())?), None))
        }
    }
}

/// What every mode wires before it listens: the settings, the app layout, the pool and the
/// transport.
pub(crate) struct Wiring {
    /// The settings, shared with the engine.
    pub(crate) settings: Arc<Settings>,
    /// The app's function folders and host.json.
    pub(crate) layout: AppLayout,
    /// The state database (connects lazily).
    pub(crate) pool: Pool,
    transport: SharedTransport,
    /// The local queue, when the transport is one.
    pub(crate) local_queue: Option<LocalQueue>,
}

impl Wiring {
    /// Reads the layout under `app_root` and builds the pool and the transport.
    pub(crate) fn new(settings: Settings, app_root: &Path) -> Result<Self, StartError> {
        let layout = AppLayout::read(app_root)?;
        let settings = Arc::new(settings);
        let pool = store::connect::pool_for_settings(&settings)?;
        let (transport, local_queue) = transport(&settings, &pool)?;
        Ok(Self {
            settings,
            layout,
            pool,
            transport,
            local_queue,
        })
    }

    /// The engine over this wiring.
    pub(crate) fn engine(&self, registry: Registry, seams: &Seams) -> Engine {
        Engine::new(
            self.pool.clone(),
            registry,
            self.settings.clone(),
            seams.transport(self.transport.clone()),
            seams.hooks(),
        )
    }

    /// Binds `127.0.0.1:port` and serves the app router of `engine`, wrapped by `front_door`
    /// (local mode's key checks) and routed by the functions' declared spelling of their paths.
    pub(crate) async fn listen(
        &self,
        port: u16,
        engine: Engine,
        front_door: impl FnOnce(Router) -> Router,
    ) -> Result<App, StartError> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|source| StartError::Bind { port, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| StartError::Bind { port, source })?;
        let app = front_door(crate::app_router(engine.clone()));
        // The host matches routes case-insensitively and ignores a trailing slash, then forwards
        // the path as the client sent it: route it by the function's declared spelling.
        let app = Router::new()
            .fallback_service(app)
            .layer(from_fn_with_state(
                Arc::new(HttpRoutes::from_layout(&self.layout)),
                canonical_path,
            ));
        let shutdown = CancellationToken::new();
        let server = server::serve(
            listener,
            app,
            self.settings.server.clone(),
            shutdown.clone(),
        );
        Ok(App {
            engine,
            addr,
            shutdown,
            tasks: vec![tokio::spawn(server)],
        })
    }
}

/// Rewrites a request's path to the spelling of the function route it fits (ids as sent).
async fn canonical_path(
    State(routes): State<Arc<HttpRoutes>>,
    mut req: Request,
    next: Next,
) -> Response {
    if let Some(path) = routes.canonical_path(req.uri().path())
        && path != req.uri().path()
    {
        let target = match req.uri().query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        if let Ok(uri) = target.parse() {
            *req.uri_mut() = uri;
        }
    }
    next.run(req).await
}
