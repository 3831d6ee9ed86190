//! Where the test suite's doubles plug into a running app. Production passes
//! [`Seams::default`], which changes nothing: no hooks, the transport as built, deliveries as the
//! host makes them. The doubles themselves live in `crate::testing` (feature `fault-injection`).

use std::sync::Arc;

use crate::engine::hooks::{Hooks, NoHooks};
use crate::transport::SharedTransport;

/// Wraps the transport the outbox publishes through.
pub type TransportWrap = Arc<dyn Fn(SharedTransport) -> SharedTransport + Send + Sync>;

/// How the local emulator's deliveries go beyond the host's rules. Every method defaults to the
/// host's behaviour.
pub trait Deliveries: Send + Sync + std::fmt::Debug {
    /// Whether to post this invocation of `function` twice at once (as a lock lost while the
    /// first copy runs would).
    fn twice(&self, _function: &str) -> bool {
        false
    }
    /// Whether to abandon the messages of this invocation of `function` although it answered
    /// 2xx (as a settle lost on its way to the broker would).
    fn abandon_after_success(&self, _function: &str) -> bool {
        false
    }
}

/// The host's deliveries.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostDeliveries;

impl Deliveries for HostDeliveries {}

/// The seams of one app.
#[derive(Clone, Default)]
pub struct Seams {
    /// The engine's crash points (none by default).
    pub hooks: Option<Arc<dyn Hooks>>,
    /// Wraps the transport (as built by default).
    pub transport: Option<TransportWrap>,
    /// The emulator's deliveries (the host's by default).
    pub deliveries: Option<Arc<dyn Deliveries>>,
}

impl std::fmt::Debug for Seams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seams")
            .field("hooks", &self.hooks)
            .field("transport", &self.transport.as_ref().map(|_| "wrapped"))
            .field("deliveries", &self.deliveries)
            .finish()
    }
}

impl Seams {
    /// The engine's hooks.
    pub(crate) fn hooks(&self) -> Arc<dyn Hooks> {
        self.hooks.clone().unwrap_or_else(|| Arc::new(NoHooks))
    }
    /// `transport`, wrapped when a wrapper is set.
    pub(crate) fn transport(&self, transport: SharedTransport) -> SharedTransport {
        match &self.transport {
            Some(wrap) => wrap(transport),
            None => transport,
        }
    }
    /// The emulator's deliveries.
    pub(crate) fn deliveries(&self) -> Arc<dyn Deliveries> {
        self.deliveries
            .clone()
            .unwrap_or_else(|| Arc::new(HostDeliveries))
    }
}
