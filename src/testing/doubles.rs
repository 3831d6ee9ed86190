//! The doubles: a registry whose job code fails on plan, and hooks that stop an invocation.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Map, Value};

use super::faults::{Fault, Faults, STALL, Target};
use crate::engine::hooks::Hooks;
use crate::jobs::{
    FieldError, FinalizeInput, Handler, Job, JobError, ParamSpec, Registry, StageDef, StageInput,
    TaskContext, TaskError, TaskSpec,
};
use crate::startup::{Deliveries, Seams};
use crate::store::{StoreError, Transaction};
use crate::transport::{OutboundMessage, SharedTransport, Transport, TransportError};

fn target(ctx: &TaskContext) -> Target<'_> {
    Target {
        task_type: Some(&ctx.task_type),
        task_index: Some(ctx.task_index),
        stage: Some(ctx.stage),
        function: None,
    }
}

/// `registry` with every handler and finalize consulting `faults` first: a handler fails
/// transiently or permanently, or panics, instead of running; a finalize fails or panics.
pub fn with_faults(registry: Registry, faults: Arc<Faults>) -> Registry {
    let f = faults.clone();
    registry
        .map_handlers(move |_, handler| faulty_handler(handler, f.clone()))
        .map_jobs(move |job| {
            Arc::new(FaultyJob {
                inner: job,
                faults: faults.clone(),
            })
        })
}

fn faulty_handler(inner: Handler, faults: Arc<Faults>) -> Handler {
    Arc::new(
        move |ctx: TaskContext| -> BoxFuture<'static, Result<Value, TaskError>> {
            let t = target(&ctx);
            if faults.hit_on(Fault::HandlerTransient, t) {
                return std::future::ready(Err(TaskError::transient(
                    "InjectedTransient",
                    "fault injection: transient failure",
                )))
                .boxed();
            }
            if faults.hit_on(Fault::HandlerPermanent, t) {
                return std::future::ready(Err(TaskError::permanent(
                    "InjectedPermanent",
                    "fault injection: permanent failure",
                )))
                .boxed();
            }
            if faults.hit_on(Fault::HandlerPanic, t) {
                // Inside the future, where the engine's catch_unwind of a running handler sees it.
                return async { panic!("fault injection: handler panicked") }.boxed();
            }
            inner(ctx)
        },
    )
}

/// A job type whose finalize fails or panics on plan; everything else is the wrapped type's.
struct FaultyJob {
    inner: Arc<dyn Job>,
    faults: Arc<Faults>,
}

impl Job for FaultyJob {
    fn job_type(&self) -> &'static str {
        self.inner.job_type()
    }
    fn description(&self) -> &'static str {
        self.inner.description()
    }
    fn parameters(&self) -> Vec<ParamSpec> {
        self.inner.parameters()
    }
    fn validate(&self, params: &Map<String, Value>) -> Vec<FieldError> {
        self.inner.validate(params)
    }
    fn stages(&self) -> Vec<StageDef> {
        self.inner.stages()
    }
    fn create_tasks(&self, input: &StageInput<'_>) -> Result<Vec<TaskSpec>, JobError> {
        self.inner.create_tasks(input)
    }
    fn finalize(&self, input: &FinalizeInput<'_>) -> Result<Value, JobError> {
        if self.faults.hit(Fault::FinalizePanic) {
            panic!("fault injection: finalize panicked");
        }
        if self.faults.hit(Fault::FinalizeError) {
            return Err(JobError::new("fault injection: finalize failed"));
        }
        self.inner.finalize(input)
    }
    fn finalize_needs_results(&self) -> bool {
        self.inner.finalize_needs_results()
    }
}

/// Engine hooks that stop an invocation on plan: [`Fault::KillAfterHandler`] never returns (the
/// process is as good as dead; the test kills it), [`Fault::OutcomeNotRecorded`] fails as a lost
/// connection in the outcome's transaction would.
#[derive(Debug)]
pub struct FaultHooks(pub Arc<Faults>);

impl Hooks for FaultHooks {
    fn before_outcome<'a>(
        &'a self,
        task: &'a TaskContext,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let t = target(task);
        if self.0.hit_on(Fault::KillAfterHandler, t) {
            return std::future::pending().boxed();
        }
        if self.0.hit_on(Fault::StallAfterHandler, t) {
            return tokio::time::sleep(STALL).map(Ok).boxed();
        }
        if self.0.hit_on(Fault::OutcomeNotRecorded, t) {
            return std::future::ready(Err(StoreError::Unavailable {
                context: "fault injection: the transaction recording the task's outcome failed"
                    .into(),
                source: deadpool_postgres::PoolError::Closed,
            }))
            .boxed();
        }
        std::future::ready(Ok(())).boxed()
    }
}

/// A transport whose publishes fail on plan ([`Fault::FailOutboxPublish`]): a move of committed
/// outbox rows into the local queue, or a send. Writes inside a state change's own transaction
/// (a local fan-out) are not publishes and pass through.
#[derive(Debug)]
pub struct FaultyTransport {
    inner: SharedTransport,
    faults: Arc<Faults>,
}

impl FaultyTransport {
    /// `inner`, failing on `faults`' plan.
    pub fn wrap(inner: SharedTransport, faults: Arc<Faults>) -> SharedTransport {
        Arc::new(Self { inner, faults })
    }
}

const PUBLISH_FAILED: &str = "fault injection: outbox publish failed";

impl Transport for FaultyTransport {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn send<'a>(
        &'a self,
        messages: &'a [OutboundMessage],
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        if self.faults.hit(Fault::FailOutboxPublish) {
            let queue = messages
                .first()
                .map(|m| m.queue.clone())
                .unwrap_or_default();
            return std::future::ready(Err(TransportError {
                queue,
                status: None,
                message: PUBLISH_FAILED.into(),
                retryable: true,
            }))
            .boxed();
        }
        self.inner.send(messages)
    }
    fn enqueue_in_tx<'a>(
        &'a self,
        tx: &'a Transaction<'_>,
        messages: &'a [OutboundMessage],
    ) -> Option<BoxFuture<'a, Result<(), StoreError>>> {
        self.inner.enqueue_in_tx(tx, messages)
    }
    fn move_from_outbox<'a>(
        &'a self,
        ids: &'a [i64],
    ) -> Option<BoxFuture<'a, Result<usize, StoreError>>> {
        let moved = self.inner.move_from_outbox(ids)?;
        if self.faults.hit(Fault::FailOutboxPublish) {
            return Some(
                std::future::ready(Err(StoreError::Unavailable {
                    context: PUBLISH_FAILED.into(),
                    source: deadpool_postgres::PoolError::Closed,
                }))
                .boxed(),
            );
        }
        Some(moved)
    }
    fn wake(&self) {
        self.inner.wake()
    }
}

/// The emulator's deliveries on plan: [`Fault::DeliverTwice`] and [`Fault::AbandonAfterHandler`]
/// (rules may name the function).
#[derive(Debug)]
pub struct FaultDeliveries(pub Arc<Faults>);

impl Deliveries for FaultDeliveries {
    fn twice(&self, function: &str) -> bool {
        self.0.hit_on(Fault::DeliverTwice, delivery(function))
    }
    fn abandon_after_success(&self, function: &str) -> bool {
        self.0
            .hit_on(Fault::AbandonAfterHandler, delivery(function))
    }
}

fn delivery(function: &str) -> Target<'_> {
    Target {
        function: Some(function),
        ..Target::default()
    }
}

/// Every seam of an app consulting `faults`: hooks, transport and deliveries (pair it with
/// [`with_faults`] for the registry).
pub fn seams(faults: &Arc<Faults>) -> Seams {
    let f = faults.clone();
    Seams {
        hooks: Some(Arc::new(FaultHooks(faults.clone()))),
        transport: Some(Arc::new(move |t| FaultyTransport::wrap(t, f.clone()))),
        deliveries: Some(Arc::new(FaultDeliveries(faults.clone()))),
    }
}
