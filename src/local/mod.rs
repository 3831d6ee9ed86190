//! Local mode: the custom handler plus a host emulator on one port, queues in PostgreSQL.
//! Tests start the same thing in-process with [`start`].

pub mod auth;
pub mod emulator;
pub mod functions;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::Settings;
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
    /// Apply migrations before serving.
    pub migrate: bool,
    /// Override of host.json maxConcurrentCalls.
    pub max_concurrent_calls: Option<usize>,
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

/// Starts local mode in this process.
pub async fn start(
    opts: LocalOptions,
    registry: Registry,
    faults: Arc<Faults>,
) -> Result<LocalApp, StartError> {
    registry.validate()?;
    let layout = functions::AppLayout::read(&opts.app_root)?;
    let settings = Arc::new(opts.settings.clone());
    let pool = store::connect::pool_for_settings(&settings)?;
    if opts.migrate {
        let mut c = store::client(&pool, "migrating").await?;
        store::migrations::migrate(&mut c).await?;
        store::pgstac::migrate_configured(&mut c).await?;
    }
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
    // Playing the host: its HTTP front door checks function keys (not under the real host).
    let app = if opts.emulator {
        auth::guard(app, &layout, &settings.http)
    } else {
        app
    };
    let sd = shutdown.clone();
    let mut tasks = vec![tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { sd.cancelled().await })
            .await;
    })];
    if opts.emulator {
        let cfg = emulator::EmulatorConfig {
            handler_url: format!("http://{addr}"),
            queue: settings.local_queue.clone(),
            poison_queue: q.poison.clone(),
            max_concurrent_calls: opts
                .max_concurrent_calls
                .unwrap_or(layout.host.max_concurrent_calls),
            function_timeout: layout.host.function_timeout,
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
