/**
 * The wsexec client: one connection, the requests waiting for their direct replies, and the
 * runs it follows, each resumed with its last `seq` after every reconnect.
 */

import { type ConnectOptions, type ConnectionState, Connection } from "./connection.js";
import { WsexecError, checkFrame, checkId, checkText, encodeFrame, requireId } from "./errors.js";
import { MAX_CURSOR_BYTES, REQUEST_TIMEOUT_MS } from "./limits.js";
import type { ApprovalAccepted, Envelope, Execution, ExecutionPage, Frame, Usage } from "./protocol.js";
import { Run, type RunHost } from "./run.js";

/** What `start` takes besides the text. */
export interface StartOptions {
  /** The thread the run belongs to (default: the server makes the run its own thread). */
  threadId?: string;
  /** The agent (default: the server's `DEFAULT_AGENT`). */
  agent?: string;
  /** The idempotency key: a start sent again with the same id runs once (default: random). */
  requestId?: string;
  /** Agent options (`payload.options`), e.g. `{delay_ms: 500}` for `echo`. */
  options?: Record<string, unknown>;
  /** `payload.metadata`, stored with the run's context. */
  metadata?: Record<string, unknown>;
}

/** What `list` takes. */
export interface ListOptions {
  threadId?: string;
  /** 1–50 (default 20). */
  limit?: number;
  /** The `cursor` of the previous page. */
  cursor?: string;
}

/** What the client reports to `on` listeners. */
export interface ClientEvents {
  /** The connection's state changed (`reconnecting` carries the close code and the wait). */
  state: (state: ConnectionState, detail: { attempt: number; code?: number; delayMs?: number }) => void;
  /** Every frame received, parsed, before the client routes it. */
  frame: (frame: Envelope) => void;
}

/** A request waiting for its direct reply. */
interface Pending {
  frame: Frame;
  text: string;
  /** Replies about a run carry the run's ids rather than the frame's `request_id`. */
  runId?: string;
  /** Reply types that answer it when they come about `runId`. */
  answers: readonly string[];
  /** An approval's call: only a reply about that call answers it. */
  callId?: string;
  resolve: (frame: Envelope) => void;
  reject: (e: WsexecError) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** Attempts of a `resume` that met a retryable error before the run is given up as failed. */
const RESUME_ATTEMPTS = 3;

/** Wait between those attempts: a storage hiccup or a conflicting heartbeat has passed. */
const RESUME_RETRY_MS = 500;

/** A random id the server accepts (`[A-Za-z0-9._:@-]`, long enough to escape its placeholder
 * rules for short values). */
export function randomId(prefix: string): string {
  const bytes = new Uint8Array(12);
  globalThis.crypto.getRandomValues(bytes);
  return prefix + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Connects; resolves once the first socket is open (rejects with `connect_failed`). */
export async function connect(options: ConnectOptions): Promise<WsexecClient> {
  const client = new WsexecClient(options);
  await client.opened;
  return client;
}

/** A connection to a wsexec API and the runs it follows. */
export class WsexecClient {
  /** Resolves once the first socket is open. */
  readonly opened: Promise<void>;
  private readonly conn: Connection;
  private readonly pending = new Map<string, Pending>();
  private readonly runs = new Set<Run>();
  private readonly listeners: { [K in keyof ClientEvents]: Set<ClientEvents[K]> } = {
    state: new Set(),
    frame: new Set(),
  };
  private readonly timeoutMs: number;
  private readonly host: RunHost;

  constructor(options: ConnectOptions) {
    this.timeoutMs = options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
    this.conn = new Connection(options, {
      state: (state, detail) => {
        for (const f of this.listeners.state) f(state, detail);
      },
      open: () => this.reopened(),
      message: (text) => this.receive(text),
    });
    this.host = {
      cancel: (runId) => this.cancel(runId),
      approve: (runId, callId, approved, reason) => this.approve(runId, callId, approved, reason),
      resume: (run) => this.resumeRun(run, 1),
    };
    this.opened = this.conn.start();
    this.opened.catch(() => {});
  }

  /** The connection's state. */
  get state(): ConnectionState {
    return this.conn.state;
  }

  /** Listens to `state` changes or every `frame`; returns the function that stops it. */
  on<K extends keyof ClientEvents>(kind: K, listener: ClientEvents[K]): () => void {
    const set = this.listeners[kind] as Set<ClientEvents[K]>;
    set.add(listener);
    return () => set.delete(listener);
  }

  /** Starts a run. Throws a local `WsexecError` (sending nothing) for a frame the server would
   * refuse for its size or an empty text, or one over API Gateway's 32 KiB frame. */
  start(text: string, options: StartOptions = {}): Run {
    this.assertOpen();
    const requestId = options.requestId ?? randomId("req-");
    const frame: Frame = { type: "start_agent", request_id: requestId, payload: { user_request: text } };
    if (options.threadId !== undefined) frame.thread_id = options.threadId;
    if (options.agent !== undefined) frame.agent = options.agent;
    const payload = frame.payload as Record<string, unknown>;
    if (options.options !== undefined) payload.options = options.options;
    if (options.metadata !== undefined) payload.metadata = options.metadata;
    // The server's own order: the whole message, then each field.
    const json = encodeFrame(frame);
    checkId("request_id", requestId);
    checkText("payload.user_request", text);
    checkId("thread_id", options.threadId);
    if (options.agent !== undefined) checkText("agent", checkId("agent", options.agent));
    checkFrame(json);
    const run = new Run(this.host, { requestId, threadId: options.threadId, startFrame: json });
    this.track(run);
    this.conn.send(json);
    return run;
  }

  /** Follows a run this user started elsewhere (another tab, before a reload): every event
   * after `afterSeq` (default 0: all the server still holds), then live. */
  follow(runId: string, options: { afterSeq?: number } = {}): Run {
    this.assertOpen();
    requireId("run_id", runId);
    const run = new Run(this.host, { requestId: randomId("follow-"), runId, afterSeq: options.afterSeq ?? 0 });
    this.track(run);
    this.resumeRun(run, 1);
    return run;
  }

  /** One run, as stored (`not_found` for another user's, exactly as for none). */
  async get(runId: string): Promise<Execution> {
    const reply = await this.request({ type: "get_execution", run_id: requireId("run_id", runId) }, runId, ["execution"]);
    return reply.payload as Execution;
  }

  /** A page of the caller's runs, newest first; pass the returned `cursor` for the next. */
  async list(options: ListOptions = {}): Promise<ExecutionPage> {
    const frame: Frame = { type: "list_executions" };
    if (options.threadId !== undefined) frame.thread_id = checkId("thread_id", options.threadId);
    if (options.limit !== undefined) frame.limit = options.limit;
    if (options.cursor !== undefined) frame.cursor = checkId("cursor", options.cursor, MAX_CURSOR_BYTES);
    const reply = await this.request(frame);
    return reply.payload as ExecutionPage;
  }

  /** Cancels a run; resolves once it is `cancelled` (an ended run rejects with `run_finished`). */
  async cancel(runId: string): Promise<void> {
    const reply = await this.request({ type: "cancel_agent", run_id: requireId("run_id", runId) }, runId, ["agent_cancelled"]);
    this.route(reply);
  }

  /** Answers a run's `tool_approval_required` (`approve_tool`); resolves with the
   * `approval_accepted` payload (`continued` when it was the run's last unanswered call). This
   * connection then also receives the run's further events. Rejects with `already_answered`
   * (answered before, from any connection; nothing changed), `not_found` or `run_finished`. */
  async approve(runId: string, callId: string, approved: boolean, reason?: string): Promise<ApprovalAccepted["payload"]> {
    const frame: Frame = {
      type: "approve_tool",
      run_id: requireId("run_id", runId),
      call_id: requireId("call_id", callId),
      approved,
    };
    if (reason !== undefined) frame.reason = checkText("reason", reason);
    const reply = await this.request(frame, runId, ["approval_accepted"], callId);
    return reply.payload as ApprovalAccepted["payload"];
  }

  /** The caller's usage on the current UTC day and the limits that apply to them
   * (`get_usage`): their own counters only; a tenant's total only as the use of a tenant
   * budget that applies to them. */
  async getUsage(): Promise<Usage> {
    const reply = await this.request({ type: "get_usage" });
    return reply.payload as Usage;
  }

  /** A round trip that touches no storage. */
  async ping(): Promise<void> {
    await this.request({ type: "ping" });
  }

  /** Closes the socket as a drop would: the client reconnects and resumes every alive run. */
  reconnect(): void {
    this.conn.drop();
  }

  /** Closes for good: pending requests and alive runs fail with `closed`. */
  close(): void {
    this.conn.close();
    const err = new WsexecError("closed", "the client was closed");
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.pending.clear();
    for (const run of this.runs) run.abandon(err);
    this.runs.clear();
  }

  private assertOpen(): void {
    if (this.conn.state === "closed") throw new WsexecError("closed", "the client was closed", false, true);
  }

  private track(run: Run): void {
    this.runs.add(run);
    void run.outcome().then(() => this.runs.delete(run));
  }

  /** Sends a request and waits for its direct reply: an `error` rejects. */
  private request(frame: Frame, runId?: string, answers: readonly string[] = [], callId?: string): Promise<Envelope> {
    this.assertOpen();
    const requestId = randomId("q-");
    frame.request_id = requestId;
    const text = checkFrame(encodeFrame(frame));
    return new Promise<Envelope>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(requestId);
        reject(new WsexecError("timeout", `no reply to ${frame.type} within ${this.timeoutMs} ms`, true));
      }, this.timeoutMs);
      this.pending.set(requestId, { frame, text, runId, answers, callId, resolve, reject, timer });
      // Sent now if the socket is open, else on the next open.
      this.conn.send(text);
    });
  }

  private settle(requestId: string, p: Pending, frame: Envelope): void {
    this.pending.delete(requestId);
    clearTimeout(p.timer);
    if (frame.type === "error") p.reject(WsexecError.fromPayload(frame.payload));
    else p.resolve(frame);
  }

  /** A new socket: unanswered requests go again, unnamed starts go again with their
   * `request_id`, and every alive run is resumed after its last `seq`. */
  private reopened(): void {
    for (const p of this.pending.values()) this.conn.send(p.text);
    for (const run of this.runs) {
      if (run.done) continue;
      if (run.runId) this.resumeRun(run, 1);
      else if (run.startFrame) this.conn.send(run.startFrame);
    }
  }

  private resumeRun(run: Run, attempt: number): void {
    const runId = run.runId;
    if (!runId || run.done) return;
    this.request({ type: "resume", run_id: runId, after_seq: run.lastSeq }, runId, ["execution"]).then(
      (reply) => run.snapshot(reply.payload as Execution),
      (e: WsexecError) => {
        if (run.done || e.code === "closed") return;
        // A timeout is retried by the next reconnect; a storage hiccup here, a few times.
        if (e.code === "timeout") return;
        if (e.retryable && attempt < RESUME_ATTEMPTS) {
          setTimeout(() => this.resumeRun(run, attempt + 1), RESUME_RETRY_MS);
          return;
        }
        run.abandon(e);
      },
    );
  }

  private receive(text: string): void {
    let frame: Envelope;
    try {
      frame = JSON.parse(text) as Envelope;
    } catch {
      return;
    }
    if (typeof frame !== "object" || frame === null || typeof frame.type !== "string") return;
    for (const f of this.listeners.frame) f(frame);
    this.route(frame);
  }

  /** Where a frame goes: the request it answers, else the run it belongs to. */
  private route(frame: Envelope): void {
    const rid = frame.request_id;
    const byRequest = rid === undefined ? undefined : this.pending.get(rid);
    if (rid !== undefined && byRequest) {
      this.settle(rid, byRequest, frame);
      return;
    }
    if (frame.seq === undefined && frame.run_id && frame.type !== "error") {
      // A reply about a run carries the run's ids, not the request's: the pending request for
      // that run and reply type takes it (an approval, only the reply about its own call).
      const callOf = (frame.payload as { call_id?: unknown } | undefined)?.call_id;
      for (const [id, p] of this.pending) {
        if (p.runId !== frame.run_id || !p.answers.includes(frame.type)) continue;
        if (p.callId !== undefined && callOf !== p.callId) continue;
        // The cancel's reply also ends the run: `cancel` routes it on once it resolves.
        this.settle(id, p, frame);
        return;
      }
    }
    for (const run of this.runs) {
      const mine =
        frame.run_id !== undefined && run.runId !== undefined ? run.runId === frame.run_id : run.requestId === rid;
      if (mine) run.receive(frame);
    }
  }
}
