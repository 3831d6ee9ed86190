//! A circuit breaker per Azure endpoint (a Service Bus namespace, a storage account, the managed
//! identity endpoint).
//!
//! When an endpoint is down, every caller retrying it for minutes only adds load and holds
//! invocations open. After `failures` calls in a row that failed transiently after all their
//! retries (5xx, 408, 429, timeouts, connection errors; a 4xx refusal says the endpoint is up and
//! resets the count; a blip the retries absorb does not count), the breaker
//! **opens**: for `cool_down` no request is made and each call fails at once with a transient
//! error, so the work stays where it is (outbox rows for the janitor to republish, a message the
//! Functions host redelivers). Then it is **half-open**: one call goes through as a probe while
//! the others keep failing fast; the probe's success closes the breaker, its failure opens it for
//! another cool-down.
//!
//! Each state change is a checkpoint (`CIRCUIT_OPENED`, `CIRCUIT_HALF_OPEN`, `CIRCUIT_CLOSED`),
//! each call refused while open a `CIRCUIT_REJECTED` one, and [`snapshot`] lists every live
//! breaker for `/api/health`.

use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::config::BreakerSettings;
use crate::telemetry::checkpoints as cp;

/// The state of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum State {
    /// Calls go through.
    Closed,
    /// Calls fail fast until the cool-down ends.
    Open,
    /// One probe call is allowed; the others fail fast.
    HalfOpen,
}

#[derive(Debug)]
struct Inner {
    state: State,
    /// Transient failures in a row (closed state).
    consecutive: u32,
    /// When the open state ends.
    open_until: Option<Instant>,
    /// A half-open probe is under way.
    probing: bool,
    /// Times opened, calls refused (for health).
    opened: u64,
    rejected: u64,
    last_error: Option<String>,
}

/// One endpoint's breaker. Clients hold it in an `Arc` and pass it to
/// [`super::retry::send_with_retry`] through [`super::retry::Target::with_breaker`].
#[derive(Debug)]
pub(crate) struct Breaker {
    endpoint: String,
    config: BreakerSettings,
    inner: Mutex<Inner>,
}

/// Permission to make one request; report its outcome with [`Permit::success`] or
/// [`Permit::failure`]. Dropped without either (the call was cancelled, or failed for a reason
/// that says nothing about the endpoint), a half-open probe slot is given back.
#[derive(Debug)]
pub(crate) struct Permit {
    breaker: Arc<Breaker>,
    probe: bool,
    done: bool,
}

/// A call refused because the breaker is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejected {
    /// The endpoint.
    pub endpoint: String,
    /// How long until a probe is allowed.
    pub retry_in: Duration,
    /// The failure that opened it.
    pub last_error: Option<String>,
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "circuit breaker open for {}: not calling it for another {:.1} s",
            self.endpoint,
            self.retry_in.as_secs_f64()
        )?;
        if let Some(e) = &self.last_error {
            write!(f, " (last failure: {e})")?;
        }
        Ok(())
    }
}

fn registry() -> &'static Mutex<Vec<Weak<Breaker>>> {
    static R: OnceLock<Mutex<Vec<Weak<Breaker>>>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(Vec::new()))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock leaves plain counters behind; they are still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Breaker {
    /// A closed breaker for `endpoint` (e.g. "Service Bus geocm-sb.servicebus.windows.net"),
    /// listed by [`snapshot`] while it lives.
    pub(crate) fn new(endpoint: impl Into<String>, config: BreakerSettings) -> Arc<Self> {
        let b = Arc::new(Self {
            endpoint: endpoint.into(),
            config,
            inner: Mutex::new(Inner {
                state: State::Closed,
                consecutive: 0,
                open_until: None,
                probing: false,
                opened: 0,
                rejected: 0,
                last_error: None,
            }),
        });
        let mut r = lock(registry());
        r.retain(|w| w.strong_count() > 0);
        r.push(Arc::downgrade(&b));
        b
    }

    /// The current state (an open breaker whose cool-down has ended reads half-open).
    pub(crate) fn state(&self) -> State {
        let i = lock(&self.inner);
        match (i.state, i.open_until) {
            (State::Open, Some(t)) if Instant::now() >= t => State::HalfOpen,
            (s, _) => s,
        }
    }

    /// Asks to make one request: a permit, or the refusal while the breaker is open (or
    /// half-open with its probe under way).
    pub(crate) fn allow(self: &Arc<Self>) -> Result<Permit, Rejected> {
        if self.config.failures == 0 {
            return Ok(self.permit(false));
        }
        let now = Instant::now();
        let mut i = lock(&self.inner);
        match i.state {
            State::Closed => Ok(self.permit(false)),
            State::Open if i.open_until.is_some_and(|t| now >= t) => {
                i.state = State::HalfOpen;
                i.probing = true;
                drop(i);
                self.emit(cp::CIRCUIT_HALF_OPEN, None);
                Ok(self.permit(true))
            }
            State::HalfOpen if !i.probing => {
                i.probing = true;
                Ok(self.permit(true))
            }
            State::Open | State::HalfOpen => {
                i.rejected += 1;
                let r = Rejected {
                    endpoint: self.endpoint.clone(),
                    retry_in: i
                        .open_until
                        .map(|t| t.saturating_duration_since(now))
                        .unwrap_or_default(),
                    last_error: i.last_error.clone(),
                };
                drop(i);
                let f = cp::Fields::default()
                    .extra("endpoint", &self.endpoint)
                    .extra("retry_in_ms", r.retry_in.as_millis());
                cp::emit_warn(cp::CIRCUIT_REJECTED, &f);
                Err(r)
            }
        }
    }

    fn permit(self: &Arc<Self>, probe: bool) -> Permit {
        Permit {
            breaker: Arc::clone(self),
            probe,
            done: false,
        }
    }

    fn on_success(&self, probe: bool) {
        let mut i = lock(&self.inner);
        i.consecutive = 0;
        if probe {
            i.probing = false;
        }
        if i.state != State::Closed {
            i.state = State::Closed;
            i.open_until = None;
            drop(i);
            self.emit(cp::CIRCUIT_CLOSED, None);
        }
    }

    fn on_failure(&self, probe: bool, error: &str) {
        if self.config.failures == 0 {
            return;
        }
        let mut i = lock(&self.inner);
        i.last_error = Some(crate::telemetry::checkpoints::truncate_chars(error, 500).into_owned());
        if probe {
            i.probing = false;
        }
        i.consecutive = i.consecutive.saturating_add(1);
        let open = match i.state {
            State::Closed => i.consecutive >= self.config.failures,
            // A failed probe, or a request let through before the breaker opened.
            State::HalfOpen | State::Open => probe,
        };
        if open {
            i.state = State::Open;
            i.open_until = Some(Instant::now() + self.config.cool_down);
            i.opened += 1;
            let n = i.consecutive;
            drop(i);
            self.emit(cp::CIRCUIT_OPENED, Some((n, error)));
        }
    }

    fn give_back(&self) {
        lock(&self.inner).probing = false;
    }

    fn emit(&self, name: &'static str, failure: Option<(u32, &str)>) {
        let mut f = cp::Fields::default()
            .extra("endpoint", &self.endpoint)
            .extra("cool_down_ms", self.config.cool_down.as_millis());
        match failure {
            Some((n, e)) => {
                f = f.extra("failures", n).extra("last_error", e);
                cp::emit_warn(name, &f);
            }
            None => cp::emit(name, &f),
        }
    }

    /// What `/api/health` shows for this breaker.
    pub(crate) fn status(&self) -> BreakerStatus {
        let state = self.state();
        let i = lock(&self.inner);
        BreakerStatus {
            endpoint: self.endpoint.clone(),
            state,
            consecutive_failures: i.consecutive,
            times_opened: i.opened,
            calls_rejected: i.rejected,
            retry_in_ms: i
                .open_until
                .filter(|_| state == State::Open)
                .map(|t| t.saturating_duration_since(Instant::now()).as_millis() as u64),
            last_error: i.last_error.clone(),
        }
    }
}

impl Permit {
    /// The request reached the endpoint and it answered (2xx, or a 4xx refusal).
    pub(crate) fn success(mut self) {
        self.done = true;
        self.breaker.on_success(self.probe);
    }

    /// The call failed transiently (5xx, 408, 429, timeout, no connection) after its retries.
    pub(crate) fn failure(mut self, error: &str) {
        self.done = true;
        self.breaker.on_failure(self.probe, error);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.done && self.probe {
            self.breaker.give_back();
        }
    }
}

/// One breaker as `/api/health` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct BreakerStatus {
    /// The endpoint.
    pub endpoint: String,
    /// closed, open or half_open.
    pub state: State,
    /// Transient failures in a row.
    pub consecutive_failures: u32,
    /// How often it opened since the process started.
    pub times_opened: u64,
    /// Calls refused while open.
    pub calls_rejected: u64,
    /// Milliseconds until a probe is allowed (open only).
    pub retry_in_ms: Option<u64>,
    /// The last transient failure.
    pub last_error: Option<String>,
}

/// Every live breaker of this process, one entry per endpoint: clients that share an endpoint
/// (several users of the managed identity endpoint) are shown as one, in the worst state of
/// theirs, with their counters added up.
pub(crate) fn snapshot() -> Vec<BreakerStatus> {
    let live: Vec<Arc<Breaker>> = lock(registry()).iter().filter_map(Weak::upgrade).collect();
    let rank = |s: State| match s {
        State::Closed => 0,
        State::HalfOpen => 1,
        State::Open => 2,
    };
    let mut by: std::collections::BTreeMap<String, BreakerStatus> = Default::default();
    for s in live.iter().map(|b| b.status()) {
        match by.get_mut(&s.endpoint) {
            None => {
                by.insert(s.endpoint.clone(), s);
            }
            Some(e) => {
                e.times_opened += s.times_opened;
                e.calls_rejected += s.calls_rejected;
                if rank(s.state) > rank(e.state) {
                    e.state = s.state;
                    e.retry_in_ms = s.retry_in_ms;
                    e.consecutive_failures = s.consecutive_failures;
                    e.last_error = s.last_error.or(e.last_error.take());
                }
            }
        }
    }
    by.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(failures: u32, cool_down_ms: u64) -> Arc<Breaker> {
        Breaker::new(
            format!("test endpoint {}", uuid::Uuid::new_v4()),
            BreakerSettings {
                failures,
                cool_down: Duration::from_millis(cool_down_ms),
            },
        )
    }

    #[test]
    fn opens_after_the_configured_failures_in_a_row_and_a_success_resets_the_count() {
        let b = breaker(3, 60_000);
        b.allow().unwrap().failure("503");
        b.allow().unwrap().failure("503");
        b.allow().unwrap().success();
        b.allow().unwrap().failure("503");
        b.allow().unwrap().failure("503");
        assert_eq!(b.state(), State::Closed, "the success reset the count");
        b.allow().unwrap().failure("503 Service Unavailable");
        assert_eq!(b.state(), State::Open);
        let r = b.allow().unwrap_err();
        assert!(r.to_string().contains("503 Service Unavailable"), "{r}");
        assert!(r.retry_in > Duration::from_secs(50), "{r:?}");
        let s = b.status();
        assert_eq!((s.times_opened, s.calls_rejected), (1, 1));
    }

    #[test]
    fn after_the_cool_down_one_probe_goes_through_and_its_outcome_decides() {
        let b = breaker(1, 30);
        b.allow().unwrap().failure("timed out");
        assert!(b.allow().is_err());
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.state(), State::HalfOpen);
        let probe = b.allow().expect("the probe");
        assert!(b.allow().is_err(), "one probe at a time");
        probe.failure("still 503");
        assert_eq!(b.state(), State::Open, "a failed probe opens it again");
        std::thread::sleep(Duration::from_millis(40));
        let probe = b.allow().expect("the next probe");
        drop(probe);
        let probe = b.allow().expect("a dropped probe gives its slot back");
        probe.success();
        assert_eq!(b.state(), State::Closed);
        b.allow().unwrap().success();
    }

    #[test]
    fn zero_failures_turns_it_off() {
        let b = breaker(0, 60_000);
        for _ in 0..20 {
            b.allow().unwrap().failure("503");
        }
        assert_eq!(b.state(), State::Closed);
    }
}
