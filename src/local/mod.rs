//! Local mode: the custom handler plus a host emulator on one port, queues in PostgreSQL.
//! Tests start the same thing in-process with [`start`].

pub mod auth;
pub mod emulator;
pub mod functions;
pub mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::Response;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::engine::readiness::{Preparation, Readiness};
use crate::engine::{Engine, Faults};
use crate::jobs::Registry;
use crate::store;
use crate::transport::local_queue::LocalQueue;

/// Options for [`start`].
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Settings (DATABASE_URL etc.).
    pub settings: Settings,
    /// Port to listen on (0 = any free port).
    pub port: u16,
    /// Folder holding host.json and the function folders.
    pub app_root: PathBuf,
    /// Run the host emulator (deliver queue messages and fire timers).
    pub emulator: bool,
    /// Apply migrations: before serving with the emulator; without it (under the real host),
    /// after the port is bound, retried in the background until they succeed.
    pub migrate: bool,
    /// Override of host.json maxConcurrentCalls.
    pub max_concurrent_calls: Option<usize>,
    /// `--unsafe-no-auth`: allow admin routes (schema drop included) with no key configured.
    pub unsafe_no_auth: bool,
}

/// A running local instance.
pub struct LocalApp {
    /// The engine.
    pub engine: Engine,
    /// Where it listens.
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for LocalApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalApp")
            .field("addr", &self.addr)
            .finish()
    }
}

/// Why local mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Database.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// App layout.
    #[error(transparent)]
    Layout(#[from] functions::LayoutError),
    /// Registry.
    #[error(transparent)]
    Registry(#[from] crate::jobs::RegistryError),
    /// The Service Bus transport cannot be set up.
    #[error(transparent)]
    ServiceBus(#[from] crate::transport::service_bus::SenderSetupError),
    /// Admin routes enabled in local mode with no key to guard them.
    #[error(
        "COREMACHINE_ADMIN_ENABLED=true needs LOCAL_ADMIN_KEY in local mode: without a key anyone who reaches the port could drop the schema (redeploy); set the key, or pass --unsafe-no-auth to accept that on a machine nobody else reaches"
    )]
    AdminWithoutKeys,
    /// Listening socket.
    #[error("cannot listen on port {port}: {source}")]
    Bind {
        /// Port.
        port: u16,
        /// Cause.
        source: std::io::Error,
    },
}

impl LocalApp {
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

/// Rewrites a request's path to the spelling of the function route it fits (ids as sent).
async fn canonical_path(
    State(routes): State<Arc<auth::HttpRoutes>>,
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

/// Starts local mode in this process.
pub async fn start(
    opts: LocalOptions,
    registry: Registry,
    faults: Arc<Faults>,
) -> Result<LocalApp, StartError> {
    registry.validate()?;
    // Under the real host the admin routes need the master key; playing the host, they need one.
    let http = &opts.settings.http;
    if opts.emulator && http.admin_enabled && !http.keys_configured() {
        if !opts.unsafe_no_auth {
            return Err(StartError::AdminWithoutKeys);
        }
        tracing::warn!(
            "local mode with --unsafe-no-auth: admin routes (migrations, schema redeploy) are enabled and need no key"
        );
    }
    let layout = functions::AppLayout::read(&opts.app_root)?;
    let settings = Arc::new(opts.settings.clone());
    let pool = store::connect::pool_for_settings(&settings)?;
    // The emulator (local mode) migrates before it serves; under the real host the schema is
    // prepared after the port is bound, in the background (engine/readiness.rs).
    if opts.migrate && opts.emulator {
        let mut c = store::client(&pool, "migrating").await?;
        store::migrations::migrate(&mut c).await?;
        store::pgstac::migrate_configured(&mut c).await?;
    }
    let readiness = (!opts.emulator).then(|| {
        Arc::new(Readiness::not_ready(
            "the schema has not been checked yet",
            url::Url::parse(&settings.database_url)
                .ok()
                .and_then(|u| u.password().map(str::to_string)),
        ))
    });
    let q = &settings.queues;
    let local = LocalQueue::new(pool.clone(), &[&q.jobs, &q.tasks, &q.poison]);
    let transport = crate::transport::service_bus::transport_for(&settings, &local)?;
    let engine = Engine::new(
        pool.clone(),
        registry,
        settings.clone(),
        transport,
        faults.clone(),
    );
    let engine = match &readiness {
        Some(r) => engine.with_readiness(r.clone()),
        None => engine,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", opts.port))
        .await
        .map_err(|source| StartError::Bind {
            port: opts.port,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        port: opts.port,
        source,
    })?;
    let shutdown = CancellationToken::new();
    let app = crate::app_router(engine.clone());
    let emulator_key = auth::EmulatorKey::generate();
    // Playing the host: its HTTP front door checks function keys (not under the real host).
    let app = if opts.emulator {
        auth::guard(app, &layout, &settings.http, &emulator_key)
    } else {
        app
    };
    // The host matches routes case-insensitively and ignores a trailing slash, then forwards the
    // path as the client sent it: route it by the function's declared spelling.
    let app = Router::new()
        .fallback_service(app)
        .layer(from_fn_with_state(
            Arc::new(auth::HttpRoutes::from_layout(&layout)),
            canonical_path,
        ));
    let sd = shutdown.clone();
    let limits = settings.server.clone();
    let mut tasks = vec![tokio::spawn(server::serve(listener, app, limits, sd))];
    if let Some(readiness) = readiness {
        let how = if opts.migrate {
            Preparation::Migrate
        } else {
            Preparation::Check
        };
        // The first attempt is awaited (the port already answers; the pool's connect and
        // create timeouts bound it), so a healthy database is ready when `start` returns;
        // later attempts run in the background with backoff.
        if !readiness.attempt(&pool, how, 0).await {
            let (pool, sd) = (pool.clone(), shutdown.clone());
            tasks.push(tokio::spawn(async move {
                readiness.prepare_until_ready(&pool, how, 1, &sd).await;
            }));
        }
    }
    if opts.emulator {
        let cfg = emulator::EmulatorConfig {
            handler_url: format!("http://{addr}"),
            queue: settings.local_queue.clone(),
            poison_queue: q.poison.clone(),
            max_concurrent_calls: opts
                .max_concurrent_calls
                .unwrap_or(layout.host.max_concurrent_calls),
            function_timeout: layout.host.function_timeout,
            max_message_batch_size: layout.host.max_message_batch_size,
            key: emulator_key,
        };
        tasks.extend(emulator::start(
            &layout,
            cfg,
            pool,
            |name| local.waker(name),
            faults,
            shutdown.clone(),
        ));
    }
    Ok(LocalApp {
        engine,
        addr,
        shutdown,
        tasks,
    })
}
