//! Test doubles for fault injection, compiled only with the `fault-injection` feature (the test
//! suite and the soak turn it on; release builds never do).
//!
//! Faults are injected at seams the production code has anyway, never by checks inside it:
//! - task handlers and finalize: [`with_faults`] wraps a [`crate::jobs::Registry`]'s job types and handlers;
//! - crash points of the engine: [`FaultHooks`] implements [`crate::engine::hooks::Hooks`];
//! - publishing: [`FaultyTransport`] wraps the transport;
//! - deliveries: the local emulator consults the plan (duplicate delivery, abandon after 200).

mod doubles;
mod faults;

pub use doubles::{FaultDeliveries, FaultHooks, FaultyTransport, seams, with_faults};
pub use faults::{Fault, FaultRule, Faults, STALL, Target};
