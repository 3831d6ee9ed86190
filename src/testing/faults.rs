//! Fault injection for tests: deliver twice, abandon after the handler ran, make a handler fail
//! (transient, permanent, panic), fail the outbox publish, and "kill" an invocation between the
//! handler finishing and its completion being committed.
//!
//! The plan the doubles of `crate::testing` consult; the production code never sees it.

use std::sync::Mutex;

/// A kind of injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The emulator delivers a message twice (concurrently).
    DeliverTwice,
    /// The emulator abandons a message after the handler answered 200.
    AbandonAfterHandler,
    /// The task handler returns a transient error instead of running.
    HandlerTransient,
    /// The task handler returns a permanent error instead of running.
    HandlerPermanent,
    /// The task handler panics.
    HandlerPanic,
    /// Publishing committed outbox rows fails.
    FailOutboxPublish,
    /// The invocation stops dead after the handler returned, before the completion commits.
    KillAfterHandler,
    /// The invocation stalls for [`STALL`] after the handler returned, then records its outcome
    /// (a holder that loses its message's lock meanwhile and answers late: a zombie).
    StallAfterHandler,
    /// Recording the task's outcome fails with a database error (as a deadlock or a dropped
    /// connection in the completion's transaction would).
    OutcomeNotRecorded,
    /// The job type's finalize fails.
    FinalizeError,
    /// The job type's finalize panics.
    FinalizePanic,
}

/// How long [`Fault::StallAfterHandler`] stalls.
pub const STALL: std::time::Duration = std::time::Duration::from_secs(4);

/// One rule: which fault, how often, and on which tasks.
#[derive(Debug, Clone)]
pub struct FaultRule {
    /// The fault.
    pub fault: Fault,
    /// How many more times it fires (None = every time it matches).
    pub times: Option<u32>,
    /// Probability that a matching call fires (1.0 = always).
    pub probability: f64,
    /// Only for this task type.
    pub task_type: Option<String>,
    /// Only for this task index.
    pub task_index: Option<i32>,
    /// Only on this stage.
    pub stage: Option<i32>,
    /// Only for deliveries to this function (emulator faults).
    pub function: Option<String>,
}

impl FaultRule {
    /// A rule that fires on every match.
    pub fn always(fault: Fault) -> Self {
        Self {
            fault,
            times: None,
            probability: 1.0,
            task_type: None,
            task_index: None,
            stage: None,
            function: None,
        }
    }
    /// A rule that fires `n` times.
    pub fn times(fault: Fault, n: u32) -> Self {
        Self {
            times: Some(n),
            ..Self::always(fault)
        }
    }
    /// A rule that fires with probability `p`.
    pub fn probability(fault: Fault, p: f64) -> Self {
        Self {
            probability: p,
            ..Self::always(fault)
        }
    }
    /// Restricts to a task index.
    pub fn on_index(mut self, i: i32) -> Self {
        self.task_index = Some(i);
        self
    }
    /// Restricts to a stage.
    pub fn on_stage(mut self, s: i32) -> Self {
        self.stage = Some(s);
        self
    }
    /// Restricts to a task type.
    pub fn on_task_type(mut self, t: &str) -> Self {
        self.task_type = Some(t.to_string());
        self
    }
    /// Restricts to deliveries to one function (e.g. "tasks-queue-trigger").
    pub fn on_function(mut self, f: &str) -> Self {
        self.function = Some(f.to_string());
        self
    }
}

/// What a fault check knows about the current task (all optional).
#[derive(Debug, Default, Clone, Copy)]
pub struct Target<'a> {
    /// Task type.
    pub task_type: Option<&'a str>,
    /// Task index.
    pub task_index: Option<i32>,
    /// Stage.
    pub stage: Option<i32>,
    /// Function the delivery goes to.
    pub function: Option<&'a str>,
}

/// The active fault rules of one process (none in production).
#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<Vec<FaultRule>>,
}

impl Faults {
    /// No faults.
    pub fn none() -> Self {
        Self::default()
    }

    /// Adds a rule.
    pub fn add(&self, rule: FaultRule) {
        self.rules.lock().expect("fault rules lock").push(rule);
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.rules.lock().expect("fault rules lock").clear();
    }

    /// Whether `fault` fires now (no target filter).
    pub fn hit(&self, fault: Fault) -> bool {
        self.hit_on(fault, Target::default())
    }

    /// Whether `fault` fires now for `target`.
    pub fn hit_on(&self, fault: Fault, target: Target<'_>) -> bool {
        use rand::Rng;
        let mut rules = self.rules.lock().expect("fault rules lock");
        for r in rules.iter_mut() {
            if r.fault != fault
                || r.times == Some(0)
                || r.task_type
                    .as_deref()
                    .is_some_and(|t| Some(t) != target.task_type)
                || r.task_index.is_some_and(|i| Some(i) != target.task_index)
                || r.stage.is_some_and(|s| Some(s) != target.stage)
                || r.function
                    .as_deref()
                    .is_some_and(|f| Some(f) != target.function)
            {
                continue;
            }
            if r.probability < 1.0 && rand::rng().random::<f64>() >= r.probability {
                continue;
            }
            if let Some(n) = r.times.as_mut() {
                *n -= 1;
            }
            return true;
        }
        false
    }
}
