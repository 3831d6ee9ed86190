//! A batch of task messages (one `"cardinality": "many"` invocation), worked as a batch: at most
//! `TRIGGER_BATCH_CONCURRENCY` handlers run at once (of them at most `HEAVY_TASK_CONCURRENCY` of
//! the heavy task types), and the tasks are claimed as slots free up, as many in ONE statement as
//! there are free slots (`task_claim.sql`); the successes that finish together are completed
//! together, in one statement unless they end a counter shard (engine/completions.rs; the fan-in
//! is unchanged: exactly one transaction sees the stage reach zero). A task is claimed only when
//! its handler can start, so `processing` still means running, its lease and `task_started`
//! event start with its handler, and a task waiting for its turn stays `queued` (a job failure
//! meanwhile cancels it, as it would any queued task). A failed attempt schedules its own retry
//! or failure as it would alone. After `TRIGGER_BATCH_BUDGET_S` nothing more is claimed: the
//! tasks not started are handed back to the queue as new messages. Every message gets its own
//! answer, in order; only an answer that is an error (its outcome was not recorded) makes the
//! invocation non-2xx, and the copies the host then delivers again are recognised by the guards.
//!
//! Two copies of one task in the same batch: the copy delivered most often claims (it may take
//! the task over, see `task_claim.sql`), the others are acknowledged as duplicates.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use serde_json::Value;
use tracing::Instrument;

use super::completions::Completion;
use super::ids::TaskId;
use super::outcome::Expected;
use super::task_guard::nothing_to_do;
use super::task_message::{Arrival, Claimed, strip_nul};
use super::{Delivery, Engine, EngineError, Handled};
use crate::jobs::TaskError;
use crate::store::tasks::{self, ClaimedTask};
use crate::store::{self, QueryContext, StoreError};
use crate::telemetry::checkpoints as cp;

/// One message of a batched invocation.
#[derive(Debug)]
pub struct BatchMessage {
    /// The raw body.
    pub body: String,
    /// How it was delivered.
    pub delivery: Delivery,
    /// The message's invocation span (its trace).
    pub span: tracing::Span,
}

/// Claim statements, and completion statements, of one batch in flight at once (2 measured no
/// faster: more, smaller statements; docs/performance.md).
const DEPTH: usize = 1;

/// The answers of a batch, one per message, filled as the steps go.
type Answers = Vec<Option<Result<Handled, EngineError>>>;

/// Answers of some messages of the batch, by position.
type Outcomes = Vec<(usize, Result<Handled, EngineError>)>;

/// What a claim statement gives: the claimed tasks, and the answers of the messages whose claim
/// matched nothing.
type Claims<'a> = (Vec<(usize, Arrival<'a>, ClaimedTask)>, Outcomes);

/// A claimed message whose handler ran.
struct Ran<'a> {
    /// Position in the batch.
    i: usize,
    arrival: Arrival<'a>,
    claimed: Claimed,
    /// The handler's result, or the crash-point hook's error.
    result: Result<Result<Value, TaskError>, StoreError>,
    elapsed: u64,
}

impl Engine {
    /// Processes the messages of one batched tasks-queue invocation (see the module doc).
    pub async fn on_task_batch(&self, msgs: &[BatchMessage]) -> Vec<Result<Handled, EngineError>> {
        let mut answers: Answers = msgs.iter().map(|_| None).collect();
        let arrivals = self.parse_batch(msgs, &mut answers).await;
        let waiting: VecDeque<_> = distinct_tasks(arrivals, &mut answers).into();
        for (i, answer) in self.pipeline(msgs, waiting).await {
            answers[i] = Some(answer);
        }
        answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Ok(Handled::default())))
            .collect()
    }

    /// The batch's tasks through three concurrent steps: claim statements for waiting tasks as
    /// handler slots free up, the handlers (a slot frees when its handler returns), and
    /// completion statements for what finished meanwhile. Up to [`DEPTH`] claims and [`DEPTH`]
    /// recordings are in flight at once (disjoint tasks, rows locked in key order): with 1, a
    /// claim and a recording overlap each other and the handlers. An answer per message.
    async fn pipeline<'a>(
        &'a self,
        msgs: &'a [BatchMessage],
        mut waiting: VecDeque<(usize, Arrival<'a>)>,
    ) -> Vec<(usize, Result<Handled, EngineError>)> {
        let mut slots = Slots::new(self);
        let deadline = Instant::now() + self.settings().trigger_batch_budget;
        let mut out = Vec::with_capacity(waiting.len());
        let mut running = FuturesUnordered::new();
        let mut finished: Vec<Ran<'a>> = Vec::new();
        let mut claiming: FuturesUnordered<BoxFuture<'a, Claims<'a>>> = FuturesUnordered::new();
        let mut recording: FuturesUnordered<BoxFuture<'a, Outcomes>> = FuturesUnordered::new();
        loop {
            if Instant::now() >= deadline && !waiting.is_empty() {
                let rest: Vec<_> = waiting.drain(..).collect();
                out.extend(self.hand_back(msgs, rest).await);
            }
            while claiming.len() < DEPTH {
                let wave = slots.wave(&mut waiting);
                if wave.is_empty() {
                    break;
                }
                claiming.push(self.claim_batch(msgs, wave).boxed());
            }
            if recording.len() < DEPTH && !finished.is_empty() {
                let done = std::mem::take(&mut finished);
                recording.push(self.record_outcomes(msgs, done).boxed());
            }
            if claiming.is_empty() && recording.is_empty() && running.is_empty() {
                break;
            }
            tokio::select! {
                Some((claimed, refused)) = claiming.next(), if !claiming.is_empty() => {
                    for (i, _) in &refused {
                        slots.release(*i);
                    }
                    out.extend(refused);
                    for (i, a, t) in claimed {
                        running.push(self.run_one(i, a, t).instrument(msgs[i].span.clone()));
                    }
                }
                Some(r) = running.next(), if !running.is_empty() => {
                    slots.release(r.i);
                    finished.push(r);
                    while let Some(Some(r)) = running.next().now_or_never() {
                        slots.release(r.i);
                        finished.push(r);
                    }
                }
                Some(recorded) = recording.next(), if !recording.is_empty() => {
                    out.extend(recorded);
                }
            }
        }
        out
    }

    /// Parses every message; a malformed one is recorded (and answered) here.
    async fn parse_batch<'a>(
        &self,
        msgs: &'a [BatchMessage],
        answers: &mut Answers,
    ) -> Vec<(usize, Arrival<'a>)> {
        let mut arrivals = Vec::with_capacity(msgs.len());
        for (i, m) in msgs.iter().enumerate() {
            match Arrival::parse(&m.body, &m.delivery) {
                Ok(a) => arrivals.push((i, a)),
                Err(error) => {
                    let r = self
                        .on_malformed(&m.body, &m.delivery, Expected::TaskMessage, &error)
                        .instrument(m.span.clone())
                        .await;
                    answers[i] = Some(r);
                }
            }
        }
        arrivals
    }

    /// Claims the batch's distinct tasks in one statement. Returns the claimed ones; a message
    /// whose claim matched nothing is judged (duplicate, stale, unknown, ...) and answered here,
    /// and when the claim itself fails every message answers the error.
    async fn claim_batch<'a>(
        &self,
        msgs: &'a [BatchMessage],
        arrivals: Vec<(usize, Arrival<'a>)>,
    ) -> Claims<'a> {
        let mut answers = Vec::new();
        if arrivals.is_empty() {
            return (Vec::new(), answers);
        }
        let claims = async {
            let client = store::client(self.pool(), "claiming a batch of tasks").await?;
            let reqs: Vec<_> = arrivals.iter().map(|(_, a)| a.request()).collect();
            let lease = self.settings().task_lease.as_secs_f64();
            let invocation = msgs[arrivals[0].0].delivery.invocation_id.as_deref();
            let claimed = tasks::claim_many(&client, &reqs, lease, invocation).await?;
            Ok::<_, StoreError>((client, claimed))
        }
        // One statement for the wave: its dependency is recorded in the first message's trace.
        .instrument(msgs[arrivals[0].0].span.clone())
        .await;
        let (client, claimed) = match claims {
            Ok(c) => c,
            Err(e) => {
                let at = arrivals.iter().map(|(i, _)| *i);
                return (
                    Vec::new(),
                    each_answers(at, e, "not claimed: the batch's claim failed"),
                );
            }
        };
        let mut by_task: HashMap<TaskId, ClaimedTask> = claimed
            .into_iter()
            .map(|t| (t.attempt.task_id.clone(), t))
            .collect();
        let mut out = Vec::with_capacity(by_task.len());
        for (i, a) in arrivals {
            match by_task.remove(&a.task_id) {
                Some(t) => {
                    msgs[i].span.in_scope(|| a.claimed(&t));
                    out.push((i, a, t));
                }
                None => {
                    let r = async {
                        let state = tasks::state(&client, &a.task_id).await?;
                        self.task_message_not_applicable(&client, &a, state).await
                    }
                    .instrument(msgs[i].span.clone())
                    .await;
                    answers.push((i, r));
                }
            }
        }
        (out, answers)
    }

    /// Runs one claimed attempt's handler and the crash-point hook after it.
    async fn run_one<'a>(&self, i: usize, arrival: Arrival<'a>, t: ClaimedTask) -> Ran<'a> {
        let claimed: Claimed = t.into();
        let (result, elapsed) = self.run_to_outcome(&claimed).await;
        Ran {
            i,
            arrival,
            claimed,
            result,
            elapsed,
        }
    }

    /// Records every outcome: the successes together, each failure as its own retry or failure;
    /// an outcome that could not be recorded gives its claim back.
    async fn record_outcomes(&self, msgs: &[BatchMessage], ran: Vec<Ran<'_>>) -> Outcomes {
        let (mut done, mut failed, mut hooked) = (Vec::new(), Vec::new(), Vec::new());
        for mut r in ran {
            match std::mem::replace(&mut r.result, Ok(Ok(Value::Null))) {
                Ok(Ok(mut value)) => {
                    strip_nul(&mut value);
                    done.push((r, value));
                }
                Ok(Err(e)) => failed.push((r, e)),
                Err(e) => hooked.push((r, e)),
            }
        }
        let items = done
            .iter_mut()
            .map(|(r, value)| Completion {
                task_id: r.arrival.task_id.clone(),
                retry_count: r.claimed.retry_count,
                claim_token: r.claimed.claim_token,
                result: std::mem::take(value),
                event_data: r.claimed.completed_event_data(r.elapsed),
                span: msgs[r.i].span.clone(),
            })
            .collect();
        // One statement for all of them: recorded in the first one's trace.
        let span = done
            .first()
            .map(|(r, _)| msgs[r.i].span.clone())
            .unwrap_or_else(tracing::Span::none);
        let completed = self.complete_together(items).instrument(span).await;
        let mut outcomes: Vec<(Ran<'_>, Result<Handled, EngineError>)> = Vec::new();
        for ((r, _), c) in done.into_iter().zip(completed) {
            let fields = r.arrival.fields.clone().duration_ms(r.elapsed);
            let answer = match c {
                Ok((ended, ids)) => {
                    self.completion_answer(&r.arrival.task_id, &r.claimed, ended, &ids, &fields)
                        .instrument(msgs[r.i].span.clone())
                        .await
                }
                Err(e) => Err(EngineError::Store(e)),
            };
            outcomes.push((r, answer));
        }
        let limit = self.settings().trigger_batch_concurrency.max(1);
        let retries: Vec<_> = failed
            .into_iter()
            .map(|(r, e)| {
                let span = msgs[r.i].span.clone();
                self.fail_one(r, e).instrument(span)
            })
            .collect();
        let failures: Vec<_> = futures::stream::iter(retries)
            .buffer_unordered(limit)
            .collect()
            .await;
        outcomes.extend(failures);
        outcomes.extend(
            hooked
                .into_iter()
                .map(|(r, e)| (r, Err(EngineError::Store(e)))),
        );
        let mut answered = Vec::with_capacity(outcomes.len());
        for (r, answer) in outcomes {
            if let Err(e) = &answer {
                let fields = r.arrival.fields.clone().duration_ms(r.elapsed);
                self.release_claim(&r.claimed, &r.arrival.task_id, e, &fields)
                    .instrument(msgs[r.i].span.clone())
                    .await;
            }
            answered.push((r.i, answer));
        }
        answered
    }
}

impl Engine {
    /// Hands the tasks a batch did not claim within its time budget back to the queue: each gets
    /// a new message (its MessageId extended, so duplicate detection keeps it) in one
    /// transaction, and its original is acknowledged. The task stays queued; its new message
    /// claims it like any other. If the messages cannot be written, each original answers the
    /// error and the host delivers the batch again.
    async fn hand_back(&self, msgs: &[BatchMessage], rest: Vec<(usize, Arrival<'_>)>) -> Outcomes {
        let queue = &self.settings().queues.tasks;
        let again = uuid::Uuid::new_v4().simple().to_string();
        let messages: Vec<_> = rest
            .iter()
            .map(|(_, a)| {
                let tp = a.d.properties.get("traceparent").and_then(Value::as_str);
                let mut m = a.msg.to_outbound(queue, tp, None);
                m.message_id = format!("{}:h{}", m.message_id, &again[..12]);
                m
            })
            .collect();
        let written = async {
            let mut client = store::client(self.pool(), "handing tasks back").await?;
            let tx = client
                .transaction()
                .await
                .ctx(|| format!("starting the hand-back of {} tasks", messages.len()))?;
            let ids = self.outbox().write_fan_out(&tx, &messages).await?;
            tx.commit()
                .await
                .ctx(|| format!("committing the hand-back of {} tasks", messages.len()))?;
            Ok::<_, StoreError>(ids)
        }
        .await;
        match written {
            Ok(ids) => {
                match ids {
                    Some(ids) => self.publish(&ids).await,
                    None => self.outbox().wake(),
                }
                let budget = self.settings().trigger_batch_budget.as_secs();
                rest.into_iter()
                    .map(|(i, a)| {
                        msgs[i].span.in_scope(|| cp::emit_warn(cp::TASK_HANDED_BACK, &a.fields.clone().extra("budget_s", budget)));
                        let log = format!(
                            "task {}: not started within the batch's {budget} s budget (TRIGGER_BATCH_BUDGET_S); handed back to the queue",
                            a.task_id
                        );
                        (i, Ok(Handled::log(log)))
                    })
                    .collect()
            }
            Err(e) => each_answers(rest.iter().map(|(i, _)| *i), e, "not handed back"),
        }
    }

    /// A failed attempt of the batch: its retry or failure, as alone.
    async fn fail_one<'a>(
        &self,
        r: Ran<'a>,
        e: TaskError,
    ) -> (Ran<'a>, Result<Handled, EngineError>) {
        let fields = r.arrival.fields.clone().duration_ms(r.elapsed);
        let answer = self
            .attempt_failed(&r.claimed, &r.arrival.task_id, e, r.elapsed, &fields)
            .await;
        (r, answer)
    }
}

/// The handler slots of one batched invocation: `TRIGGER_BATCH_CONCURRENCY` in all, of which at
/// most `HEAVY_TASK_CONCURRENCY` for heavy task types (`Registry::mark_heavy`). A slot is taken
/// when a task goes into a claim and given back when its claim matched nothing or its handler
/// returned.
struct Slots<'e> {
    engine: &'e Engine,
    total: usize,
    heavy: usize,
    /// Messages (by position) holding a slot, and whether theirs is a heavy one.
    held: HashMap<usize, bool>,
}

impl<'e> Slots<'e> {
    fn new(engine: &'e Engine) -> Self {
        let s = engine.settings();
        Slots {
            engine,
            total: s.trigger_batch_concurrency.max(1),
            heavy: s.heavy_task_concurrency.max(1),
            held: HashMap::new(),
        }
    }

    /// The next wave to claim: waiting tasks in order, each one a free slot allows (a heavy one
    /// only while a heavy slot is free), as many as there are free slots and at most a
    /// [`DEPTH`]th of all slots (so that claims can overlap). The others keep their place.
    fn wave<'a>(
        &mut self,
        waiting: &mut VecDeque<(usize, Arrival<'a>)>,
    ) -> Vec<(usize, Arrival<'a>)> {
        let mut heavy_held = self.held.values().filter(|h| **h).count();
        let mut wave = Vec::new();
        let most = self.total.div_ceil(DEPTH);
        let mut k = 0;
        while self.held.len() < self.total && wave.len() < most && k < waiting.len() {
            let heavy = self.engine.registry().is_heavy(&waiting[k].1.msg.task_type);
            if heavy && heavy_held >= self.heavy {
                k += 1;
                continue;
            }
            let (i, a) = waiting.remove(k).expect("in range");
            heavy_held += usize::from(heavy);
            self.held.insert(i, heavy);
            wave.push((i, a));
        }
        wave
    }

    /// Gives back the slot of message `i`.
    fn release(&mut self, i: usize) {
        self.held.remove(&i);
    }
}

/// The answers of messages `at` when the one statement they shared failed with `e`: the first
/// gets the error itself, the others `what` with its text.
fn each_answers(at: impl Iterator<Item = usize>, e: StoreError, what: &str) -> Outcomes {
    let text = format!("{what}: {e}");
    let mut first = Some(e);
    at.map(|i| {
        let err = first
            .take()
            .unwrap_or_else(|| StoreError::Shared(text.clone()));
        (i, Err(EngineError::Store(err)))
    })
    .collect()
}

/// Keeps one message per task: the copy delivered most often (the first of equals); the others
/// are answered as duplicates within the batch.
fn distinct_tasks<'a>(
    arrivals: Vec<(usize, Arrival<'a>)>,
    answers: &mut Answers,
) -> Vec<(usize, Arrival<'a>)> {
    let mut keep: HashMap<TaskId, (usize, Arrival<'a>)> = HashMap::new();
    let mut order: Vec<TaskId> = Vec::new();
    for (i, a) in arrivals {
        let count = a.d.delivery_count.unwrap_or(0);
        match keep.remove(&a.task_id) {
            None => {
                order.push(a.task_id.clone());
                keep.insert(a.task_id.clone(), (i, a));
            }
            Some((j, b)) => {
                let (winner, loser) = if count > b.d.delivery_count.unwrap_or(0) {
                    ((i, a), (j, b))
                } else {
                    ((j, b), (i, a))
                };
                let why = "another copy of this message is in the same batch";
                answers[loser.0] = Some(Ok(nothing_to_do(&loser.1, why, "claimed by that copy")));
                keep.insert(winner.1.task_id.clone(), winner);
            }
        }
    }
    order.into_iter().filter_map(|t| keep.remove(&t)).collect()
}
