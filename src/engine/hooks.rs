//! The engine's one seam for crash points: where a test stops an invocation that real failures
//! stop too (a process killed after its handler ran, a commit that never happens).
//!
//! Production runs [`NoHooks`]; the test doubles live in `crate::testing` (feature
//! `fault-injection`), so a release build carries no fault plan and no fault variants.

use futures::future::BoxFuture;

use crate::jobs::TaskContext;
use crate::store::StoreError;

/// Called by the engine at its crash points. Every method defaults to "go on".
pub trait Hooks: Send + Sync + std::fmt::Debug {
    /// After a task's handler returned, before the transaction recording its outcome begins.
    /// An error stops the invocation there as a failed commit would (the claim is given back and
    /// the host delivers the message again); a future that never resolves is a process that died
    /// at that point.
    fn before_outcome<'a>(
        &'a self,
        _task: &'a TaskContext,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// The production hooks: none.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHooks;

impl Hooks for NoHooks {}
