//! The run driver: it owns a run's lifecycle. It polls the agent's future and `select!`s it
//! against the run's deadline and its own heartbeat ticker, so heartbeats, cancels and timeouts
//! work whatever the agent is doing; dropping the agent's future is how the agent is stopped.
//!
//! Writes per run: the create (made by the caller, persisted directly as `running`), one
//! heartbeat per third of the heartbeat deadline while the run lasts (each also checkpoints the
//! `seq` and streamed text), and the terminal write (`running → completing → completed` in one
//! conditional write). Every write is conditional on the persisted (state, version), so a cancel
//! or a sweep in between wins cleanly, and a `resume` that attached a follower makes the next
//! write conflict, which is how the driver learns of it (one more write, no read per event).
//!
//! Heartbeats go on beside the stream: the driver begins one (at its ticker, or when three
//! quarters of its `seq` reservation are given out) and keeps pushing while it is in flight, so
//! a slow write delays no push. At most one is in flight; every other write of the run (the
//! terminal one, a suspension, a hand-off) waits for it first and writes on top of what it
//! stored. A push waits only when it would pass the reservation before the write renewing it
//! has landed.
//!
//! Hand-off: where the run can be continued ([`Origin::leave`]), the driver hands it to a new
//! invocation before this one's deadline, less `HANDOFF_MARGIN_MS`. It stops at the agent's
//! last safe point ([`RunSink::safe_point`]) before then: at a safe point, when the longest
//! stretch between safe points seen in this invocation would not fit before the deadline. A
//! step still going at the deadline is cut, and the continuation does it again as after a
//! worker's death (a model round's text withdrawn with `agent_text_discarded` `redo`). The
//! hand-off is one conditional write (the checkpoint, the claim released, the continuation
//! counted) and one `Invoke`; hand-offs do not count against `MAX_CONTINUATIONS`, which bounds
//! crashes: a worker hands off only after it journaled a step, so a run makes progress with
//! every hand-off and cannot loop.

use super::budget::TextHold;
use super::channel::Channel;
use super::checkpoint::{Streamed, storable};
use super::executor::{Executor, PendingApproval, Progress, RunInput, RunSink};
use super::history::thread_turns;
use super::journal;
use super::recover::MAX_CONTINUATIONS;
use super::write::{Settled, next_version, write_settled};
use super::{Leave, Origin, RunDeps};
use crate::context::UserExecutionContext;
use crate::limits::{
    CATCH_UP_BUDGET, CATCH_UP_SETTLE_MARGIN, HEARTBEAT_DIVISOR, HEARTBEAT_WRITE_ATTEMPTS,
    MAX_DELTA_BYTES, SHUTDOWN_HANDOFF_BUDGET, TERMINAL_WRITE_ATTEMPTS,
};
use crate::llm::replay::approval_step;
use crate::protocol::{ClientError, Envelope, ErrorCode, Event, RunRef};
use crate::state::{COMPLETE, ExecutionState, RunEvent};
use crate::store::{
    AwaitedCall, Awaiting, BudgetScope, RunError, RunRecord, RunUsage, StorageError,
};
use crate::telemetry::{log_storage, metrics};
use crate::time::{now_ms, rfc3339_ms};
use serde_json::Value;
use std::cell::Cell;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep, sleep_until};

/// How a run's drive ended.
enum End {
    /// The agent returned.
    Agent(Result<Value, super::AgentFailure>),
    /// The deadline passed first.
    TimedOut,
    /// A heartbeat found the run ended by another writer (cancel, sweep): as it is stored.
    Elsewhere(Box<RunRecord>),
    /// A cancel in this process wrote `cancelled` and signalled (`run::live`).
    CancelledHere,
    /// The run's text passed its own bound or the process's budget.
    TextLimit(ClientError),
    /// The instance is shutting down.
    Shutdown,
    /// The run goes on in a new invocation; `clean` when the agent stopped at a safe point.
    HandOff { clean: bool },
    /// The agent waits for the user's approval of these calls: the run is suspended.
    Awaiting(Vec<PendingApproval>),
}

/// Drives `run` (already created and persisted as `running`) with `agent` to its end, pushing
/// its events to `origin`'s connection.
pub async fn drive(
    deps: RunDeps<'_>,
    origin: Origin<'_>,
    ctx: &UserExecutionContext,
    run: RunRecord,
    agent: &dyn Executor,
) {
    drive_prefetched(deps, origin, ctx, run, agent, None).await
}

/// [`drive`] with the thread's history already read (`history`, by a start that read it
/// alongside the run's create), so the run does not read it again.
pub async fn drive_prefetched(
    deps: RunDeps<'_>,
    origin: Origin<'_>,
    ctx: &UserExecutionContext,
    run: RunRecord,
    agent: &dyn Executor,
    history: Option<Vec<super::Turn>>,
) {
    let mut d = Driver::new(deps, origin, run);
    // A `resume` may have attached followers while the run waited for its worker.
    d.adopt();
    // A continuation goes on with the stream its predecessor began.
    let started = (d.continuation == 0).then(|| {
        d.frame(Event::AgentStarted {
            agent_name: &d.run.agent,
        })
    });
    // What the agent needs before its first step is read while `agent_started` is pushed, and
    // the agent's own preparation (its provider's connection) overlaps both: the journal (a
    // continuation's), the thread's history (unless the start read it already). The agent
    // begins as soon as they are read, `agent_started` perhaps still on its way: its first
    // request (the model's) does not wait for the push, and its reports wait in the sink until
    // the push is out, so they still follow it.
    let run = d.run.clone();
    let inputs = async {
        let history = async {
            match history {
                Some(turns) => Ok(turns),
                None if agent.wants_history() => thread_turns(deps.store, &run).await,
                None => Ok(Vec::new()),
            }
        };
        tokio::join!(journal::load(deps.store, &run), history, agent.prepare())
    };
    let mut push = Box::pin(async {
        if let Some(frame) = started {
            d.send(frame).await;
        }
    });
    tokio::pin!(inputs);
    let mut pushed = false;
    let (journal, history, ()) = loop {
        tokio::select! {
            biased;
            () = &mut push, if !pushed => pushed = true,
            read = &mut inputs => break read,
        }
    };
    let (mut journal, history) = match (journal, history) {
        (Ok(j), Ok(h)) => (j, h),
        (Err(e), _) | (_, Err(e)) => {
            if !pushed {
                (&mut push).await;
            }
            drop(push);
            log_storage(&e);
            let err = ClientError::storage(&e);
            return d.finish(&[RunEvent::Fail], None, Some(err)).await;
        }
    };
    let journaled = journal.len() as u32;
    // The user's answers of the run's last suspension, for the agent to go on with.
    if let Some(a) = &run.awaiting {
        for c in &a.calls {
            if let Some(answer) = &c.answer {
                let reason = answer.reason.as_deref();
                journal.push(approval_step(&c.call_id, answer.approved, reason));
            }
        }
    }
    let input = RunInput {
        context: ctx,
        text: &run.request,
        history: &history,
        options: &run.options,
        deadline_at: run.deadline_at,
        journal: &journal,
        continuation: run.continuations,
        redo: run.continuations > 0 && run.clean_continuation != run.continuations,
    };
    let (sink, mut reports) = RunSink::channel();
    let mut agent_run = agent.execute(input, sink);
    // An agent done before the push is out (one with nothing to wait for) has its end kept.
    let mut early = None;
    while !pushed {
        tokio::select! {
            biased;
            () = &mut push => pushed = true,
            res = &mut agent_run, if early.is_none() => early = Some(res),
        }
    }
    drop(push);
    d.steps = journaled;
    d.journaled_before = journaled;
    d.may_suspend = agent.may_suspend();
    let left = d.run.deadline_at.saturating_sub(now_ms());
    let deadline = sleep(Duration::from_millis(left));
    let every = deps.limits.heartbeat_deadline / HEARTBEAT_DIVISOR;
    let mut beat = interval_at(Instant::now() + every, every);
    beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tokio::pin!(deadline);
    let live = deps.live.register(&d.run.run_id);
    d.leave = match (deps.relay, origin.leave) {
        (Some(_), Some(leave)) => {
            let at = leave
                .by_ms
                .saturating_sub(deps.limits.handoff_margin.as_millis() as u64);
            let left = Duration::from_millis(at.saturating_sub(now_ms()));
            Some((Instant::now() + left, leave))
        }
        _ => None,
    };

    let end = loop {
        if let Some(res) = early.take() {
            break End::Agent(res);
        }
        if let Some(current) = d.ended_elsewhere.take() {
            break End::Elsewhere(current);
        }
        let flush_at = d.flush_at.unwrap_or_else(far_future);
        let leave_at = d.leave.map_or_else(far_future, |(at, _)| at);
        tokio::select! {
            biased;
            _ = &mut deadline => break End::TimedOut,
            _ = live.cancelled() => break End::CancelledHere,
            _ = live.shutting_down() => break End::Shutdown,
            _ = sleep_until(leave_at), if d.leave.is_some() && !d.cut_off_skipped => {
                if d.progressed() {
                    break End::HandOff { clean: false };
                }
                // Nothing journaled here yet: handing the same step on would loop. The next
                // safe point hands off instead, once this step is journaled.
                d.cut_off_skipped = true;
            }
            _ = beat.tick() => d.begin_beat(),
            settled = in_flight(&mut d.beating) => {
                d.beating = None;
                d.beaten(settled);
            }
            Some(p) = reports.recv() => {
                if let Progress::SafePoint { go_on } = p {
                    if d.leave_here() {
                        break End::HandOff { clean: true };
                    }
                    let _ = go_on.send(());
                } else if let Progress::Awaiting(calls) = p {
                    break End::Awaiting(calls);
                } else if let Err(e) = d.progress(p).await {
                    break End::TextLimit(e);
                }
            }
            _ = sleep_until(flush_at), if d.flush_at.is_some() => d.flush().await,
            _ = d.channel.caught_up() => {}
            res = &mut agent_run => break End::Agent(res),
        }
    };
    // Stops the agent (and closes whatever stream it had open) unless it already returned.
    drop(agent_run);
    // Whatever the ending, the reports the agent made before it still go out, in order, before
    // a waiting canceller is answered.
    let drained = d.drain(&mut reports).await;
    live.stopped();
    match end {
        End::Agent(Ok(result)) => match drained {
            Ok(()) => d.finish(&COMPLETE, Some(result), None).await,
            Err(e) => d.finish(&[RunEvent::Fail], None, Some(e)).await,
        },
        End::Agent(Err(failure)) => {
            let err = match d.spent {
                // The agent stopped because a round spent the budget: the error names it.
                Some(scope) if failure.code == ErrorCode::QuotaExceeded => {
                    let ends = d.run.metering.as_ref().map_or(0, |m| m.day_ends_at);
                    metrics::quota_refused(scope.limit_name());
                    ClientError::budget_spent(scope, ends.saturating_sub(now_ms()))
                }
                _ => failure.client_error(),
            };
            d.finish(&[RunEvent::Fail], None, Some(err)).await
        }
        End::TextLimit(err) => d.finish(&[RunEvent::Fail], None, Some(err)).await,
        End::TimedOut => {
            let err = ClientError::run_timeout();
            d.finish(&[RunEvent::TimeOut], None, Some(err)).await
        }
        // The rare ends are boxed (as `finish` is), so the stream's state is all a run carries.
        End::Shutdown => Box::pin(d.hand_off_or_shut_down()).await,
        End::HandOff { clean } => {
            Box::pin(d.hand_off(clean, false)).await;
        }
        End::Awaiting(calls) => match drained {
            Ok(()) => Box::pin(d.suspend(calls)).await,
            Err(e) => d.finish(&[RunEvent::Fail], None, Some(e)).await,
        },
        End::Elsewhere(current) => d.tell_ended(&current).await,
        End::CancelledHere => match deps.store.get_run(d.run.owner(), &d.run.run_id).await {
            Ok(Some(current)) => d.tell_ended(&current).await,
            Ok(None) => {}
            Err(e) => log_storage(&e),
        },
    }
    // Followers still catching up get the rest, the terminal event included, while the
    // invocation has time.
    let until = match origin.deadline_ms {
        Some(ms) => {
            let left = Duration::from_millis(ms.saturating_sub(now_ms()));
            Instant::now() + left.saturating_sub(CATCH_UP_SETTLE_MARGIN)
        }
        None => Instant::now() + CATCH_UP_BUDGET,
    };
    d.channel.settle(until).await;
}

/// What became of the write that gives up a run's claim ([`Driver::release`]).
enum Released {
    /// Written: the run as it now stands.
    Written(Box<RunRecord>),
    /// The run was ended (and the client told) or taken over by another writer meanwhile.
    Elsewhere,
    /// The write did not land (storage failed, logged): the run is still this driver's.
    Failed,
}

/// What became of a hand-off.
enum HandedOff {
    /// The continuation is written and its worker invoked.
    Invoked,
    /// The run was ended or taken over by another writer meanwhile: nothing is left to do.
    Elsewhere,
    /// The write did not land (storage failed): the run is still this driver's.
    NotWritten,
    /// The next continuation is written, but its worker could not be invoked.
    NotInvoked,
}

/// What every write of a run persists of its stream, taken once per write: the last `seq`, the
/// text streamed so far (unless a result now keeps it), and the followers that answered 410
/// (dropped from the stored list).
struct Checkpoint {
    seq: u64,
    streamed: Option<String>,
    gone: Vec<String>,
    /// Tokens and tool calls so far (the terminal write adds the duration).
    usage: RunUsage,
    /// This driver gives out no `seq` after this write (a hand-off): the reservation is
    /// exactly `seq`, so the continuation's stream goes on with no gap.
    last: bool,
}

impl Checkpoint {
    fn apply(&self, next: &mut RunRecord) {
        let now_secs = now_ms() / 1000;
        next.seq = self.seq;
        next.usage = RunUsage {
            duration_ms: next.usage.duration_ms,
            ..self.usage
        };
        if self.last {
            next.seq_reserved = self.seq;
        } else {
            journal::reserve(next, self.seq);
        }
        next.streamed = match next.result {
            Some(_) => None,
            None => self.streamed.clone(),
        };
        next.followers
            .retain(|f| f.expires_at > now_secs && !self.gone.contains(&f.connection_id));
    }
}

/// The most a call's parameters may take in its run's item while it waits for approval; larger
/// ones are kept as a marked prefix of their JSON text (the item holds the answer too).
pub const MAX_APPROVAL_PARAMETERS_BYTES: usize = 16 * 1024;

/// `parameters` as stored and shown while a call waits for approval: whole when they fit
/// [`MAX_APPROVAL_PARAMETERS_BYTES`], else a prefix of their JSON text with the full size.
fn bounded_parameters(parameters: Value) -> Value {
    let text = parameters.to_string();
    if text.len() <= MAX_APPROVAL_PARAMETERS_BYTES {
        return parameters;
    }
    let mut cut = MAX_APPROVAL_PARAMETERS_BYTES;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    serde_json::json!({"truncated": true, "bytes": text.len(), "prefix": &text[..cut]})
}

/// The one log line of a run's consumption, with whose run it was (CloudWatch Logs Insights
/// sums it by user, tenant or run).
pub fn log_usage(run: &RunRecord) {
    let u = &run.usage;
    tracing::info!(
        user_id = %run.user_id,
        tenant_id = run.tenant_id.as_deref(),
        run_id = %run.run_id,
        agent = %run.agent,
        state = run.state.as_str(),
        input_tokens = u.input_tokens,
        output_tokens = u.output_tokens,
        tool_calls = u.tool_calls,
        duration_ms = u.duration_ms,
        "run usage"
    );
}

/// A run-item write going on beside the stream ([`Driver::begin_beat`]).
type Beat<'d> = Pin<Box<dyn Future<Output = Settled<()>> + Send + 'd>>;

/// The end of the write in flight, if any (never, when none is).
async fn in_flight(beating: &mut Option<Beat<'_>>) -> Settled<()> {
    match beating {
        Some(beat) => beat.await,
        None => std::future::pending().await,
    }
}

/// An instant no run reaches (about a century away).
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 86_400)
}

/// The driver's side of a running run: the persisted record, the push channel, the stream.
struct Driver<'d> {
    /// A metered run's tokens already added to its day counters (input, output): what its
    /// last checkpoint recorded when the driver began, so a continuation, whose agent reports
    /// the journaled rounds again, does not count them twice.
    charged: (u64, u64),
    /// The daily token budget a round of this run found spent: the agent asks for no other
    /// round, and the run ends `quota_exceeded` naming it.
    spent: Option<BudgetScope>,
    deps: RunDeps<'d>,
    channel: Channel<'d>,
    run: RunRecord,
    /// The last `seq` given out (a `Cell`, so a frame can borrow the record while numbered).
    seq: Cell<u64>,
    /// The highest `seq` the stored run lets this driver give out (see `SEQ_RESERVATION`).
    reserved: u64,
    /// Which continuation of the run this driver is (0: its first invocation): a stored run
    /// of another continuation has been taken over, and this driver stops.
    continuation: u64,
    /// Steps journaled so far (the next one is numbered one more).
    steps: u32,
    /// Steps journaled before this invocation (a continuation's journal).
    journaled_before: u32,
    /// When and how this invocation hands the run off, if it can.
    leave: Option<(Instant, Leave)>,
    /// The last safe point (or the drive's start), and the longest stretch between two.
    last_safe: Instant,
    longest_stretch: Duration,
    /// Whether the next write is this driver's last before a hand-off.
    leaving: bool,
    /// The hand-off time passed with nothing journaled here: the step going on is not cut.
    cut_off_skipped: bool,
    /// The text of the `agent_delta`s pushed so far, as far as a checkpoint persists it.
    streamed: Streamed,
    /// The answer text this run holds of the process's budget.
    text: TextHold<'d>,
    /// The last `agent_thinking` step number.
    step: u32,
    /// Streamed text not pushed yet.
    pending: String,
    /// The model round the pending text belongs to.
    pending_round: u32,
    /// When the pending text is next pushed.
    flush_at: Option<Instant>,
    /// When the last `agent_delta` went out.
    last_flush: Option<Instant>,
    /// Tokens and tool calls the agent reported so far.
    usage: RunUsage,
    /// Whether the agent may suspend the run for an approval ([`Executor::may_suspend`]).
    may_suspend: bool,
    /// Steps of a run that journals nothing as it goes (inline), kept in case the agent
    /// suspends: then they are journaled before the suspension is written.
    unsaved: Vec<Value>,
    /// The heartbeat in flight beside the stream, if any.
    beating: Option<Beat<'d>>,
    /// A heartbeat found the run ended or taken over by another writer: as stored.
    ended_elsewhere: Option<Box<RunRecord>>,
}

impl<'d> Driver<'d> {
    fn new(deps: RunDeps<'d>, origin: Origin<'d>, run: RunRecord) -> Self {
        // A continuation goes on counting the run's tool calls as last checkpointed; its agent
        // reports the journaled rounds' tokens again (the journal keeps them exactly, a
        // checkpoint may lag behind).
        let usage = RunUsage {
            input_tokens: 0,
            output_tokens: 0,
            ..run.usage
        };
        Driver {
            charged: (run.usage.input_tokens, run.usage.output_tokens),
            spent: None,
            deps,
            channel: Channel::new(deps, origin.endpoint, origin.connection_id),
            seq: Cell::new(run.seq),
            reserved: run.seq_reserved,
            continuation: run.continuations,
            steps: 0,
            journaled_before: 0,
            leave: None,
            last_safe: Instant::now(),
            longest_stretch: Duration::ZERO,
            leaving: false,
            cut_off_skipped: false,
            run,
            streamed: Streamed::default(),
            text: deps.live.text().hold(),
            step: 0,
            pending: String::new(),
            pending_round: 1,
            flush_at: None,
            last_flush: None,
            usage,
            may_suspend: false,
            unsaved: Vec::new(),
            beating: None,
            ended_elsewhere: None,
        }
    }

    /// One event of this run as a frame, numbered in its stream.
    fn frame(&self, event: Event<'_>) -> (u64, String) {
        let seq = self.seq.get() + 1;
        self.seq.set(seq);
        let frame = Envelope::new(event, RunRef::of(&self.run), now_ms())
            .with_seq(seq)
            .to_json();
        (seq, frame)
    }

    /// Pushes one numbered frame to every connection of the run, and keeps it for replay. A
    /// `seq` past the stored reservation is reserved first (while the run is alive), so a
    /// continuation never gives it out again: the write reserving more begins beside the
    /// stream when three quarters of the reservation are given out, and a push waits for it
    /// only when it would pass the reservation before the write has landed.
    async fn send(&mut self, (seq, frame): (u64, String)) {
        if self.run.state.is_alive() {
            if seq > self.reserved {
                // The write renewing it may be in flight already; else one is made now.
                self.settle_beat().await;
                if seq > self.reserved {
                    self.begin_beat();
                    self.settle_beat().await;
                }
                if seq > self.reserved {
                    tracing::warn!(seq, "seq pushed past its reservation: the write failed");
                }
            } else if seq + journal::SEQ_RESERVATION / 4 > self.reserved {
                self.begin_beat();
            }
        }
        self.channel.send(seq, &frame).await;
    }

    /// Whether `current` (as stored) is no longer this driver's to write: ended, or taken over
    /// by a continuation.
    fn lost(&self, current: &RunRecord) -> bool {
        current.state.is_terminal()
            || current.continuations != self.continuation
            || current.claimed_by != self.run.claimed_by
    }

    /// Pushes one event of this run.
    async fn emit(&mut self, event: Event<'_>) {
        let frame = self.frame(event);
        self.send(frame).await;
    }

    /// Takes in the followers the stored run lists: each new one catches up on what it missed
    /// (every kept frame after its `after_seq`) alongside the run, then follows live; one
    /// `$disconnect` removed is no longer pushed to.
    fn adopt(&mut self) {
        let fallback = self.run.endpoint.as_deref().unwrap_or_default();
        let (followers, now_secs) = (&self.run.followers, now_ms() / 1000);
        self.channel
            .adopt(followers, fallback, self.seq.get(), now_secs);
    }

    /// Turns one agent report into its event; text is coalesced (one round per push), and
    /// flushed before any step. Text past the run's bound or the process's budget is refused:
    /// the run must end.
    async fn progress(&mut self, p: Progress) -> Result<(), ClientError> {
        if let Progress::Delta { round, text } = p {
            self.text.take(text.len()).map_err(|l| l.client_error())?;
            if round != self.pending_round {
                self.flush().await;
                self.pending_round = round;
            }
            self.pending.push_str(&text);
            // A full delta's worth goes out now rather than at the window's end: the pushes
            // would be the same, and a model faster than the window would otherwise pile its
            // whole answer up here (a 1 MB burst held as a megabyte of pending text).
            if self.pending.len() >= MAX_DELTA_BYTES {
                self.flush().await;
                return Ok(());
            }
            if self.flush_at.is_none() {
                let now = Instant::now();
                let window = self.deps.limits.stream_flush;
                let at = self.last_flush.map_or(now, |t| t + window);
                // Outside the window, push now: a timer due now fires at the wheel's next 1 ms
                // tick (benches/stream.rs measured 1.27 ms p50 from chunk to push that way).
                if at <= now {
                    self.flush().await;
                    return Ok(());
                }
                self.flush_at = Some(at);
            }
            return Ok(());
        }
        self.flush().await;
        if let Progress::Step { body, saved } = p {
            // Every event before the step is out: a continuation starts after them.
            // Only a run that can be continued needs its steps: inline runs skip the writes.
            if self.deps.relay.is_some() {
                self.steps += 1;
                journal::save(self.deps.store, &self.run, self.steps, *body).await;
            } else if self.may_suspend {
                self.unsaved.push(*body);
            }
            let _ = saved.send(());
            return Ok(());
        }
        match p {
            Progress::Usage {
                input_tokens,
                output_tokens,
                go_on,
            } => {
                let u = &mut self.usage;
                u.input_tokens = u.input_tokens.saturating_add(input_tokens);
                u.output_tokens = u.output_tokens.saturating_add(output_tokens);
                self.deps.live.record_usage(&self.run.run_id, self.usage);
                self.charge().await;
                let _ = go_on.send(self.spent.is_none());
                return Ok(());
            }
            Progress::ToolExecuting(_) => {
                self.usage.tool_calls += 1;
                self.deps.live.record_usage(&self.run.run_id, self.usage);
            }
            Progress::Thinking(_) => self.step += 1,
            // The client drops the round's text; so does the next checkpoint.
            Progress::Discard { round, .. } => self.streamed.discard(round),
            _ => {}
        }
        if let Some(event) = p.step_event(self.step) {
            self.emit(event).await;
        }
        Ok(())
    }

    /// Whether this invocation journaled a step, or must leave anyway: only then is a hand-off
    /// progress.
    fn progressed(&self) -> bool {
        self.steps > self.journaled_before || self.leave.is_some_and(|(_, l)| l.without_progress)
    }

    /// At a safe point: whether to hand off here, because the longest stretch between safe
    /// points seen so far would not end before the hand-off time.
    fn leave_here(&mut self) -> bool {
        let now = Instant::now();
        self.longest_stretch = self.longest_stretch.max(now - self.last_safe);
        self.last_safe = now;
        match self.leave {
            Some((at, _)) => now + self.longest_stretch >= at && self.progressed(),
            None => false,
        }
    }

    /// Adds the tokens reported since the last charge to a metered run's day counters (the
    /// owner's and the tenant's), and notes a budget those counters have now reached. A charge
    /// that fails is logged and the run goes on: the run's own usage still records the tokens.
    async fn charge(&mut self) {
        let Some(m) = &self.run.metering else {
            return;
        };
        let input = self.usage.input_tokens.saturating_sub(self.charged.0);
        let output = self.usage.output_tokens.saturating_sub(self.charged.1);
        if input == 0 && output == 0 {
            return;
        }
        match self
            .deps
            .store
            .charge_usage(self.run.owner(), m, input, output)
            .await
        {
            Ok(today) => {
                self.charged = (self.usage.input_tokens, self.usage.output_tokens);
                if m.user_budget.is_some_and(|b| today.user.tokens() >= b) {
                    self.spent = Some(BudgetScope::User);
                } else if let (Some(b), Some(t)) = (m.tenant_budget, today.tenant)
                    && t.tokens() >= b
                {
                    self.spent = Some(BudgetScope::Tenant);
                }
            }
            Err(e) => log_storage(&e),
        }
    }

    /// Pushes the reports still queued when the run ended (the agent's last words before it
    /// failed, returned or was stopped), in order, and the text pending; the first refusal of
    /// text ends the draining.
    async fn drain(&mut self, reports: &mut mpsc::Receiver<Progress>) -> Result<(), ClientError> {
        let mut outcome = Ok(());
        while let Ok(p) = reports.try_recv() {
            outcome = self.progress(p).await;
            if outcome.is_err() {
                break;
            }
        }
        self.flush().await;
        outcome
    }

    /// Suspends the run until its owner answers `calls`: the steps an inline run kept are
    /// journaled, then one conditional write checkpoints the stream (the approval events'
    /// `seq`s included, so a continuation numbers after them), records what the run awaits,
    /// releases the claim and makes the run due at the wait's end (no heartbeat is expected
    /// meanwhile); then each call is pushed as `tool_approval_required`, and the invocation
    /// returns. A write that fails leaves the run claimed here: the sweep continues it once its
    /// heartbeat deadline passes, and the continuation asks again.
    async fn suspend(&mut self, calls: Vec<PendingApproval>) {
        for body in std::mem::take(&mut self.unsaved) {
            self.steps += 1;
            journal::save(self.deps.store, &self.run, self.steps, body).await;
        }
        let now = now_ms();
        let wait = self.deps.limits.approval_timeout.as_millis() as u64;
        let expires_at = now.saturating_add(wait).min(self.run.deadline_at);
        let shown = rfc3339_ms(expires_at);
        let mut awaited = Vec::with_capacity(calls.len());
        let mut frames = Vec::with_capacity(calls.len());
        for c in calls {
            let parameters = bounded_parameters(c.parameters);
            let frame = self.frame(Event::ToolApprovalRequired {
                call_id: &c.call_id,
                tool_name: &c.tool_name,
                parameters: &parameters,
                expires_at: &shown,
            });
            awaited.push(AwaitedCall {
                call_id: c.call_id,
                tool_name: c.tool_name,
                parameters,
                seq: frame.0,
                answer: None,
            });
            frames.push(frame);
        }
        let awaiting = Awaiting {
            calls: awaited,
            expires_at,
        };
        let fill = move |next: &mut RunRecord, _now: u64| {
            next.claimed_by = None;
            next.awaiting = Some(awaiting.clone());
            next.stale_at = expires_at;
        };
        let Released::Written(r) = self.release(fill).await else {
            return;
        };
        self.reserved = r.seq_reserved;
        self.run = *r;
        metrics::run_suspended();
        tracing::info!(
            run_id = %self.run.run_id,
            calls = frames.len(),
            expires_at,
            "run suspended awaiting approval"
        );
        self.adopt();
        for frame in frames {
            self.send(frame).await;
        }
    }

    /// Gives up this invocation's claim with one conditional write (its last, `fill` setting
    /// what the next holder needs), for a suspension or a hand-off. A run ended elsewhere
    /// meanwhile is told to the client here; a failed write is logged.
    async fn release(&mut self, fill: impl Fn(&mut RunRecord, u64)) -> Released {
        self.settle_beat().await;
        self.leaving = true;
        let seq = self.seq.get();
        let settled = self
            .write_next(&[RunEvent::Heartbeat], seq, TERMINAL_WRITE_ATTEMPTS, fill)
            .await;
        match settled {
            Settled::Written(r) => Released::Written(Box::new(r)),
            Settled::Conflict(current) if current.state.is_terminal() => {
                self.tell_ended(&current).await;
                Released::Elsewhere
            }
            Settled::Declined(()) | Settled::Conflict(_) => Released::Elsewhere,
            Settled::Failed(e) => {
                log_storage(&e);
                Released::Failed
            }
        }
    }

    /// Hands the run to continuation `n + 1`: one conditional write checkpoints the stream
    /// (its `seq` reservation made exact, so the next stream has no gap), releases the claim,
    /// counts the continuation (not as a recovery) and renews the heartbeat deadline (so the
    /// sweep looks again only if that worker never comes); then the worker is invoked. A write
    /// that fails leaves the run claimed here, and an `Invoke` that fails leaves it unclaimed:
    /// either way the sweep continues it once its heartbeat deadline passes.
    async fn hand_off(&mut self, clean: bool, recovery: bool) -> HandedOff {
        let Some(relay) = self.deps.relay else {
            return HandedOff::NotWritten;
        };
        let n = self.continuation + 1;
        let renew = self.deps.limits.heartbeat_deadline.as_millis() as u64;
        let fill = move |next: &mut RunRecord, now: u64| {
            next.claimed_by = None;
            next.continuations = n;
            next.continued_at = now;
            next.stale_at = now + renew;
            if clean {
                next.clean_continuation = n;
            }
            if recovery {
                next.recoveries += 1;
            }
        };
        match self.release(fill).await {
            Released::Written(r) => {
                // Whatever follows is written as continuation `n`'s last unclaimed version.
                self.run = *r;
                self.continuation = n;
            }
            Released::Elsewhere => return HandedOff::Elsewhere,
            Released::Failed => return HandedOff::NotWritten,
        }
        let cause = if recovery { "shutdown" } else { "handoff" };
        metrics::run_continued(cause);
        tracing::info!(
            run_id = %self.run.run_id,
            continuation = n,
            clean,
            cause,
            "run handed off to a new invocation"
        );
        match relay
            .continue_run(self.run.owner(), &self.run.run_id, n)
            .await
        {
            Ok(()) => HandedOff::Invoked,
            Err(e) => {
                tracing::warn!(code = e.kind().code(), error = ?e, "continuation dispatch failed");
                HandedOff::NotInvoked
            }
        }
    }

    /// At SIGTERM: hands the run to a continuation when it can be continued (a worker can be
    /// invoked, and its recoveries are not spent: a hand-off at shutdown counts as one, as the
    /// lost instance it is the graceful form of) within [`SHUTDOWN_HANDOFF_BUDGET`]; else, or
    /// when the hand-off is not made, the run fails `instance_shutdown` as before.
    async fn hand_off_or_shut_down(&mut self) {
        let can = self.deps.relay.is_some() && self.run.recoveries < MAX_CONTINUATIONS;
        if can {
            let made = tokio::time::timeout(SHUTDOWN_HANDOFF_BUDGET, self.hand_off(false, true));
            match made.await {
                Ok(HandedOff::Invoked | HandedOff::Elsewhere) => return,
                // Not written, or written with no worker coming (or none known to): the
                // ending below is written on top of the last version this driver knows; a
                // worker that claimed the run meanwhile makes it conflict, and has the run.
                Ok(HandedOff::NotWritten | HandedOff::NotInvoked) | Err(_) => {}
            }
            self.leaving = false;
        }
        self.shut_down().await
    }

    /// An in-flight run that cannot be handed off when its instance shuts down (SIGTERM) fails
    /// `instance_shutdown` (retryable) with a terminal write and the client told, within the
    /// shutdown window.
    async fn shut_down(&mut self) {
        let err = ClientError::new(
            crate::protocol::ErrorCode::Shutdown,
            "the instance running this run shut down; try again",
        )
        .retryable(true);
        self.finish(&[RunEvent::Fail], None, Some(err)).await
    }

    /// Pushes the text streamed since the last `agent_delta`, if any, in pieces of at most
    /// [`MAX_DELTA_BYTES`].
    async fn flush(&mut self) {
        self.flush_at = None;
        if self.pending.is_empty() {
            return;
        }
        let text = std::mem::take(&mut self.pending);
        let mut rest = text.as_str();
        while !rest.is_empty() {
            let mut cut = rest.len().min(MAX_DELTA_BYTES);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            let (piece, tail) = rest.split_at(cut);
            let round = self.pending_round;
            self.streamed.push(round, piece);
            self.emit(Event::AgentDelta { text: piece, round }).await;
            rest = tail;
        }
        self.last_flush = Some(Instant::now());
    }

    /// Begins a heartbeat beside the stream, unless one is in flight (it renews the run as
    /// well): the run's heartbeat deadline renewed, its stream checkpointed as of now.
    fn begin_beat(&mut self) {
        if self.beating.is_some() {
            return;
        }
        let deadline = self.deps.limits.heartbeat_deadline.as_millis() as u64;
        let renew = move |next: &mut RunRecord, now: u64| next.stale_at = now + deadline;
        let seq = self.seq.get();
        let beat = self.write_next(&[RunEvent::Heartbeat], seq, HEARTBEAT_WRITE_ATTEMPTS, renew);
        self.beating = Some(Box::pin(beat));
    }

    /// Waits for the heartbeat in flight, if any, and takes in what it found.
    async fn settle_beat(&mut self) {
        if let Some(beat) = self.beating.take() {
            let settled = beat.await;
            self.beaten(settled);
        }
    }

    /// Takes in what a heartbeat found: the run as written, or as another writer stored it
    /// (new followers are adopted from it; a run ended or taken over is kept for the drive to
    /// end on).
    fn beaten(&mut self, settled: Settled<()>) {
        match settled {
            Settled::Written(r) => self.run = r,
            Settled::Conflict(current) if self.lost(&current) => {
                self.ended_elsewhere = Some(Box::new(current));
            }
            Settled::Conflict(current) => self.run = current,
            Settled::Declined(()) => {}
            // Best effort: a missed renewal only risks the sweep calling the run dead.
            Settled::Failed(e) => log_storage(&e),
        }
        self.reserved = self.reserved.max(self.run.seq_reserved);
        // Followers attached since the last write, as the stored run lists them.
        self.adopt();
    }

    /// Writes the run's next version: moved by `events`, completed by `fill` (given the time),
    /// with the stream checkpointed as of `seq`. While the run stays alive it writes again on
    /// top of what another writer stored meanwhile (a `resume` attached a follower, a cancel
    /// lost its race, or this run's own last write landed although its answer was lost), at
    /// most `attempts` writes. The future borrows only the store, not the driver, so it can
    /// go on beside the stream.
    fn write_next<'s, F>(
        &self,
        events: &'s [RunEvent],
        seq: u64,
        attempts: usize,
        fill: F,
    ) -> impl Future<Output = Settled<()>> + use<'s, 'd, F>
    where
        'd: 's,
        F: Fn(&mut RunRecord, u64) + 's,
    {
        let checkpoint = Checkpoint {
            seq,
            streamed: self.streamed.checkpoint(),
            gone: self.channel.gone().map(str::to_owned).collect(),
            usage: self.usage,
            last: self.leaving,
        };
        let next = move |run: &RunRecord| {
            let now = now_ms();
            let mut next = next_version(run, events, now).ok_or(())?;
            fill(&mut next, now);
            checkpoint.apply(&mut next);
            Ok(next)
        };
        let (mine, claim) = (self.continuation, self.run.claimed_by.clone());
        let alive = move |current: &RunRecord| {
            current.state.is_alive() && current.continuations == mine && current.claimed_by == claim
        };
        write_settled(self.deps.store, self.run.clone(), attempts, next, alive)
    }

    /// Persists the terminal state reached by `events`, then tells the client; a lost race
    /// defers to the winner.
    ///
    /// Boxed: the terminal write's state is larger than the stream's, and a run ends once, so
    /// a streaming run's future need not carry room for it (7 KiB instead of 10 KiB).
    async fn finish(
        &mut self,
        events: &[RunEvent],
        result: Option<Value>,
        error: Option<ClientError>,
    ) {
        Box::pin(self.end(events, result, error)).await;
    }

    /// [`Driver::finish`]'s work.
    async fn end(
        &mut self,
        events: &[RunEvent],
        result: Option<Value>,
        error: Option<ClientError>,
    ) {
        self.flush().await;
        self.settle_beat().await;
        let now = now_ms();
        // Cut to the item's budget once: a long answer is never copied whole again.
        let result = result.map(storable);
        let stored = error.as_ref().map(|e| RunError {
            code: e.code.as_str().to_owned(),
            message: e.message.to_string(),
        });
        let outcome = |next: &mut RunRecord, _| {
            next.result = result.clone();
            next.error = stored.clone();
        };
        // The terminal event is the next frame.
        let seq = self.seq.get() + 1;
        let settled = self
            .write_next(events, seq, TERMINAL_WRITE_ATTEMPTS, outcome)
            .await;
        match settled {
            Settled::Written(r) => self.run = r,
            Settled::Declined(()) => return,
            Settled::Conflict(current) if current.state.is_terminal() => {
                return self.tell_ended(&current).await;
            }
            // A continuation drives the run now: it has the last word.
            Settled::Conflict(current) if self.lost(&current) => return,
            Settled::Conflict(current) => {
                self.run = current;
                self.adopt();
                return self
                    .left_to_sweep(&StorageError::conflict("update_run"))
                    .await;
            }
            Settled::Failed(e) => return self.left_to_sweep(&e).await,
        }
        // Followers attached since the last heartbeat catch up before the terminal event.
        self.adopt();
        let took = now.saturating_sub(self.run.created_at);
        metrics::run_finished(self.run.state, took);
        metrics::tokens_used(self.run.usage.input_tokens, self.run.usage.output_tokens);
        log_usage(&self.run);
        let frame = match &error {
            None => self.frame(Event::AgentCompleted {
                agent_name: &self.run.agent,
                result: self.run.result.as_ref().unwrap_or(&Value::Null),
                execution_time_ms: took,
            }),
            Some(e) => self.frame(Event::AgentError(e)),
        };
        self.send(frame).await;
    }

    /// The terminal write failed and the run stays alive in storage; the sweep will end it.
    /// The client hears now.
    async fn left_to_sweep(&mut self, e: &StorageError) {
        log_storage(e);
        self.emit(Event::AgentError(&ClientError::storage(e))).await;
    }

    /// Tells this connection about a cancel it did not ask for; the sweep already told the
    /// owner about deaths and timeouts.
    async fn tell_ended(&mut self, run: &RunRecord) {
        if run.state != ExecutionState::Cancelled {
            return;
        }
        self.run.followers = run.followers.clone();
        self.adopt();
        // The canceller has its own reply.
        if let Some(by) = &run.cancelled_by {
            self.channel.mark_has(by, self.seq.get() + 1);
        }
        self.emit(Event::cancelled()).await;
    }
}
