//! Local mode: the custom handler plus a host emulator on one port, queues in PostgreSQL.
//! Tests start the same thing in-process with [`start`].
//!
//! Local mode is `serve`'s wiring ([`crate::startup`]) with three things on top: the schema is
//! migrated before the port is bound, the host's key checks stand in front of the router
//! ([`auth`]), and the host emulator delivers the local queue and fires the timers
//! ([`emulator`]).

pub mod auth;
pub mod emulator;
pub(crate) mod server;

use std::path::PathBuf;

use crate::config::Settings;
use crate::jobs::Registry;
use crate::startup::{self, App, Seams, ServeOptions, StartError, Wiring};

/// Options for [`start`].
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Settings (DATABASE_URL etc.).
    pub settings: Settings,
    /// Port to listen on (0 = any free port).
    pub port: u16,
    /// Folder holding host.json and the function folders.
    pub app_root: PathBuf,
    /// Run the host emulator (deliver queue messages and fire timers); without it this is
    /// [`startup::serve`] (the trigger routes wait for the real host, or a test playing it).
    pub emulator: bool,
    /// Apply migrations: before serving with the emulator; without it (under the real host),
    /// after the port is bound, retried in the background until they succeed.
    pub migrate: bool,
    /// Override of host.json maxConcurrentCalls.
    pub max_concurrent_calls: Option<usize>,
    /// `--unsafe-no-auth`: allow admin routes (schema drop included) with no key configured.
    pub unsafe_no_auth: bool,
}

/// Starts local mode in this process (or, with `emulator: false`, [`startup::serve`]).
pub async fn start(
    opts: LocalOptions,
    registry: Registry,
    seams: Seams,
) -> Result<App, StartError> {
    if !opts.emulator {
        let serve = ServeOptions {
            settings: opts.settings,
            port: opts.port,
            app_root: opts.app_root,
            migrate: opts.migrate,
        };
        return startup::serve(serve, registry, seams).await;
    }
    registry.validate()?;
    // Under the real host the admin routes need the master key; playing the host, they need one.
    let http = &opts.settings.http;
    if http.admin_enabled && !http.keys_configured() {
        if !opts.unsafe_no_auth {
            return Err(StartError::AdminWithoutKeys);
        }
        tracing::warn!(
            "local mode with --unsafe-no-auth: admin routes (migrations, schema redeploy) are enabled and need no key"
        );
    }
    let wiring = Wiring::new(opts.settings, &opts.app_root)?;
    let (Some(local), Some(queue)) = (
        wiring.local_queue.clone(),
        wiring.settings.transport.local_queue().cloned(),
    ) else {
        return Err(StartError::EmulatorWithoutLocalQueue);
    };
    // The emulator migrates before it serves (under the real host the schema is prepared
    // after the port is bound, in the background: startup::serve).
    if opts.migrate {
        startup::migrate_pool(&wiring.pool).await?;
    }
    let engine = wiring.engine(registry, &seams);
    let emulator_key = auth::EmulatorKey::generate();
    // Playing the host: its HTTP front door checks function keys (not under the real host).
    let (layout, keys) = (&wiring.layout, &wiring.settings.http);
    let mut app = wiring
        .listen(opts.port, engine, |app| {
            auth::guard(app, layout, keys, &emulator_key)
        })
        .await?;
    let cfg = emulator::EmulatorConfig {
        handler_url: app.url(),
        queue,
        poison_queue: wiring.settings.queues.poison.clone(),
        max_concurrent_calls: opts
            .max_concurrent_calls
            .unwrap_or(wiring.layout.host.max_concurrent_calls),
        function_timeout: wiring.layout.host.function_timeout,
        max_message_batch_size: wiring.layout.host.max_message_batch_size,
        max_auto_lock_renewal: wiring.layout.host.max_auto_lock_renewal,
        key: emulator_key,
    };
    app.tasks.extend(emulator::start(
        &wiring.layout,
        cfg,
        wiring.pool.clone(),
        |name| local.waker(name),
        seams.deliveries(),
        app.shutdown.clone(),
    ));
    Ok(app)
}
