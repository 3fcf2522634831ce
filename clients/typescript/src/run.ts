/**
 * A run handle: the run's events in `seq` order (each once, whatever reconnects and resumes
 * happened), its text as the client keeps it, its outcome, and its commands.
 */

import { WsexecError } from "./errors.js";
import {
  type AgentCompleted,
  type ApprovalAccepted,
  type Envelope,
  type ErrorPayload,
  type Execution,
  type RunEvent,
  type RunState,
  type ToolApprovalRequired,
  RUN_EVENT_TYPES,
  TERMINAL_EVENT_TYPES,
  isAlive,
} from "./protocol.js";
import { TextAssembler, finalText, resultText } from "./text.js";

/** How a run ended. */
export interface RunOutcome {
  /** The terminal state: `completed`, `failed`, `timeout`, `dead` or `cancelled`. */
  state: RunState;
  /** The agent's result (`completed` only). */
  result?: unknown;
  /** Why it did not complete. */
  error?: WsexecError;
  /** The answer: `result.text` (or `reply`), or the text streamed when the result was cut. */
  text: string;
}

/** What a run asks of its client. */
export interface RunHost {
  cancel(runId: string): Promise<void>;
  approve(runId: string, callId: string, approved: boolean, reason?: string): Promise<ApprovalAccepted["payload"]>;
  /** Follow the run again from `afterSeq` (a retried start that found the run). */
  resume(run: Run): void;
}

/** A one-shot promise with its settle functions. */
function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Nobody may ever ask: an unobserved rejection must not crash Node.
  promise.catch(() => {});
  return { promise, resolve, reject };
}

/** The state a terminal event leaves the run in. */
function terminalState(ev: RunEvent): RunState {
  switch (ev.type) {
    case "agent_completed":
      return "completed";
    case "agent_error":
      return ev.payload.code === "run_timeout" || ev.payload.code === "approval_timeout" ? "timeout" : "failed";
    case "agent_death":
      return "dead";
    default:
      return "cancelled";
  }
}

/** A run started or followed by this client. */
export class Run implements AsyncIterable<RunEvent> {
  /** The request id the run was started with (a retried start reuses it). */
  readonly requestId: string;
  /** The run's id, once the server has named it. */
  runId: string | undefined;
  /** The run's thread, once known. */
  threadId: string | undefined;
  /** The run's state as last heard (`pending` until the server says more). */
  state: RunState = "pending";
  /** The last `seq` received: anything at or below it is a duplicate. */
  lastSeq = 0;
  /** The `start_agent` frame, sent again after a reconnect until the run is named. */
  readonly startFrame: string | undefined;

  private readonly log: RunEvent[] = [];
  private readonly assembler = new TextAssembler();
  private wake: (() => void)[] = [];
  private failure: WsexecError | undefined;
  private readonly finished = deferred<RunOutcome>();
  private readonly named = deferred<string>();
  private over = false;
  private readonly answers = new Map<string, ApprovalAccepted["payload"]>();

  constructor(
    private readonly host: RunHost,
    init: { requestId: string; runId?: string; threadId?: string; afterSeq?: number; startFrame?: string },
  ) {
    this.requestId = init.requestId;
    this.threadId = init.threadId;
    this.lastSeq = init.afterSeq ?? 0;
    this.startFrame = init.startFrame;
    if (init.runId) this.bind(init.runId);
  }

  /** Whether the run has ended (for this client: no more events will be yielded). */
  get done(): boolean {
    return this.over;
  }

  /** The answer's text kept so far (deltas less discarded rounds), for rendering live. */
  get streamedText(): string {
    return this.assembler.text;
  }

  /** Every event so far, in `seq` order. */
  get events(): readonly RunEvent[] {
    return this.log;
  }

  /** Resolves with the run id once the server has named the run. */
  id(): Promise<string> {
    return this.named.promise;
  }

  /** Resolves with how the run ended; never rejects. */
  outcome(): Promise<RunOutcome> {
    return this.finished.promise;
  }

  /** The final answer (`agent_completed.payload.result.text`); rejects with a `WsexecError` if
   * the run did not complete. */
  async text(): Promise<string> {
    const o = await this.finished.promise;
    if (o.error) throw o.error;
    return o.text;
  }

  /** Cancels the run (once it is named); resolves when the server has cancelled it, or at once
   * if it had already ended. */
  async cancel(): Promise<void> {
    if (this.over) return;
    const runId = await Promise.race([this.named.promise, this.finished.promise.then(() => undefined)]);
    if (runId === undefined || this.over) return;
    try {
      await this.host.cancel(runId);
    } catch (e) {
      if (e instanceof WsexecError && e.code === "run_finished") return;
      throw e;
    }
  }

  /** Answers a `tool_approval_required` of this run (`approve_tool`); resolves with the
   * server's `approval_accepted` payload (`continued`: it was the last unanswered call and the
   * run goes on). Rejects with `already_answered` when the call was answered before (another
   * tab, an earlier click), `not_found` or `run_finished`. */
  async approve(callId: string, approved: boolean, reason?: string): Promise<ApprovalAccepted["payload"]> {
    const runId = await this.named.promise;
    const accepted = await this.host.approve(runId, callId, approved, reason);
    this.answers.set(callId, accepted);
    return accepted;
  }

  /** The approvals this run asked for that this handle has not answered, in `seq` order, while
   * the run is alive (one per `call_id`: a replayed request is not repeated). Another tab's
   * answer is not known here: answering again rejects with `already_answered`. */
  get pendingApprovals(): ToolApprovalRequired["payload"][] {
    if (this.over) return [];
    const seen = new Set<string>();
    const out: ToolApprovalRequired["payload"][] = [];
    for (const ev of this.log) {
      if (ev.type !== "tool_approval_required") continue;
      const id = ev.payload.call_id;
      if (seen.has(id) || this.answers.has(id)) continue;
      seen.add(id);
      out.push(ev.payload);
    }
    return out;
  }

  /** The answer this handle gave to `callId`, once the server accepted it. */
  answerOf(callId: string): ApprovalAccepted["payload"] | undefined {
    return this.answers.get(callId);
  }

  /** Events from the first, then live, until the run ends; each iteration sees them all. */
  async *[Symbol.asyncIterator](): AsyncIterator<RunEvent> {
    let next = 0;
    for (;;) {
      while (next < this.log.length) yield this.log[next++];
      if (this.over) {
        if (this.failure && this.failure.code === "closed") throw this.failure;
        return;
      }
      await new Promise<void>((resolve) => this.wake.push(resolve));
    }
  }

  /** A frame the client routed here: a pushed event, a direct reply about the run, or an
   * `error` answering its start. */
  receive(frame: Envelope): void {
    if (this.over) return;
    if (frame.run_id) this.bind(frame.run_id);
    if (frame.thread_id) this.threadId = frame.thread_id;
    if (frame.type === "execution") {
      this.snapshot(frame.payload as Execution, true);
      return;
    }
    if (frame.type === "error") {
      // The start was refused before a run existed (bad agent, bad option, storage).
      this.end(undefined, "failed", WsexecError.fromPayload(frame.payload));
      return;
    }
    if (!RUN_EVENT_TYPES.has(frame.type)) return;
    let seq = frame.seq;
    if (seq === undefined) {
      // A terminal event that came as a direct reply (the canceller's `agent_cancelled`, a
      // refused hand-off's `agent_error`): the server counts it as the event after the last.
      if (!TERMINAL_EVENT_TYPES.has(frame.type)) return;
      seq = this.lastSeq + 1;
    }
    if (seq <= this.lastSeq) return;
    this.lastSeq = seq;
    this.accept({ ...frame, seq } as RunEvent);
  }

  /** Brings the run up to a stored snapshot: a finished run ends with a terminal event made
   * from it; a retried start that found an alive run is followed again. */
  snapshot(x: Execution, fromStart = false): void {
    if (this.over) return;
    this.bind(x.run_id);
    this.threadId = x.thread_id ?? this.threadId;
    if (isAlive(x.state)) {
      if (this.state === "pending") this.state = x.state;
      this.awaited(x);
      if (fromStart) this.host.resume(this);
      return;
    }
    const base = {
      run_id: x.run_id,
      thread_id: x.thread_id,
      request_id: x.request_id,
      seq: Math.max(x.seq, this.lastSeq + 1),
      timestamp: x.updated_at,
    };
    let ev: RunEvent;
    if (x.state === "completed") {
      ev = { ...base, type: "agent_completed", payload: { agent_name: x.agent, result: x.result } };
    } else if (x.state === "cancelled") {
      ev = { ...base, type: "agent_cancelled", payload: { state: "cancelled" } };
    } else if (x.state === "dead") {
      ev = { ...base, type: "agent_death", payload: { cause: x.error?.message ?? "heartbeat_missed" } };
    } else {
      const code = x.error?.code ?? (x.state === "timeout" ? "run_timeout" : "agent_failed");
      const payload: ErrorPayload = { code, message: x.error?.message ?? x.state, retryable: x.state === "timeout" };
      ev = { ...base, type: "agent_error", payload };
    }
    this.lastSeq = ev.seq;
    this.accept(ev);
  }

  /** A waiting run's snapshot lists its unanswered approvals with the `seq` of each
   * `tool_approval_required`: those this client has not seen become those events (the server
   * also pushes them after a `resume`; whichever comes first is kept, the other is a duplicate). */
  private awaited(x: Execution): void {
    const calls = x.awaiting?.calls ?? [];
    for (const c of [...calls].sort((a, b) => a.seq - b.seq)) {
      if (c.seq <= this.lastSeq) continue;
      this.lastSeq = c.seq;
      const payload: ToolApprovalRequired["payload"] = { call_id: c.call_id, tool_name: c.tool_name, parameters: c.parameters };
      if (x.awaiting?.expires_at) payload.expires_at = x.awaiting.expires_at;
      this.accept({
        type: "tool_approval_required",
        run_id: x.run_id,
        thread_id: x.thread_id,
        request_id: x.request_id,
        seq: c.seq,
        timestamp: x.updated_at,
        payload,
      });
    }
  }

  /** Ends the run for this client without an event from the server (the client closed). */
  abandon(error: WsexecError): void {
    this.end(undefined, this.state, error);
  }

  private bind(runId: string): void {
    if (this.runId) return;
    this.runId = runId;
    this.named.resolve(runId);
  }

  private accept(ev: RunEvent): void {
    switch (ev.type) {
      case "agent_started":
        if (this.state === "pending" || this.state === "starting") this.state = "running";
        break;
      case "agent_delta":
        this.assembler.add(ev.payload.text ?? "", ev.payload.round);
        if (this.state === "pending") this.state = "running";
        break;
      case "agent_text_discarded":
        this.assembler.discard(ev.payload.round);
        break;
      default:
        break;
    }
    this.log.push(ev);
    if (TERMINAL_EVENT_TYPES.has(ev.type)) this.finish(ev);
    this.notify();
  }

  private finish(ev: RunEvent): void {
    const state = terminalState(ev);
    switch (ev.type) {
      case "agent_completed": {
        const p = ev.payload as AgentCompleted["payload"];
        this.end(p.result, state, undefined, finalText(p, this.assembler.text));
        return;
      }
      case "agent_error":
        this.end(undefined, state, WsexecError.fromPayload(ev.payload));
        return;
      case "agent_death":
        this.end(undefined, state, new WsexecError("run_dead", `the run died (${ev.payload.cause})`, true));
        return;
      default:
        this.end(undefined, state, new WsexecError("cancelled", "the run was cancelled"));
    }
  }

  private end(result: unknown, state: RunState, error?: WsexecError, text?: string): void {
    if (this.over) return;
    this.over = true;
    this.state = state;
    this.failure = error;
    const outcome: RunOutcome = { state, text: text ?? resultText(result) ?? this.assembler.text };
    if (result !== undefined) outcome.result = result;
    if (error) outcome.error = error;
    this.finished.resolve(outcome);
    this.named.reject(error ?? new WsexecError("run_finished", "the run has ended"));
    this.notify();
  }

  private notify(): void {
    const w = this.wake;
    this.wake = [];
    for (const f of w) f();
  }
}
