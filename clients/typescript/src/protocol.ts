/**
 * The wsexec wire protocol as TypeScript types: the frames a client sends, the envelope of
 * every frame it receives, the run events and the `execution` snapshot (README "Protocol").
 */

/** A run's lifecycle state: the first four are alive, the rest terminal (DESIGN.md). */
export type RunState =
  | "pending"
  | "starting"
  | "running"
  | "completing"
  | "completed"
  | "failed"
  | "timeout"
  | "dead"
  | "cancelled";

/** The states a run can still leave. */
export const ALIVE_STATES: ReadonlySet<RunState> = new Set<RunState>([
  "pending",
  "starting",
  "running",
  "completing",
]);

/** Whether `state` is one a run can still leave. */
export function isAlive(state: string): boolean {
  return ALIVE_STATES.has(state as RunState);
}

/** Every frame's envelope: `type`, the run it belongs to, its place in the run's stream. */
export interface Envelope<T extends string = string, P = unknown> {
  type: T;
  run_id?: string;
  thread_id?: string;
  request_id?: string;
  /** The event's place in its run's stream: 1, 2, 3, ... (pushed run events only). */
  seq?: number;
  /** RFC 3339 UTC, milliseconds. */
  timestamp?: string;
  payload: P;
}

/** `error` and `agent_error` payloads. */
export interface ErrorPayload {
  code: string;
  message: string;
  retryable: boolean;
}

/** A run event: pushed by the run's driver, always with its run and `seq`. */
interface Pushed<T extends string, P> extends Envelope<T, P> {
  run_id: string;
  seq: number;
}

export type AgentStarted = Pushed<"agent_started", { agent_name: string }>;
export type AgentThinking = Pushed<"agent_thinking", { thought: string; step_number: number }>;
export type ToolExecuting = Pushed<
  "tool_executing",
  { tool_name: string; parameters: unknown; call_id?: string }
>;
export type ToolCompleted = Pushed<
  "tool_completed",
  { tool_name: string; result: unknown; execution_time_ms: number; call_id?: string }
>;
/** Streamed answer text; `round` is the model round it belongs to (1 when absent). */
export type AgentDelta = Pushed<"agent_delta", { text: string; round?: number }>;
/** Drop every `agent_delta` text of `round` received so far; later ones are kept. */
export type AgentTextDiscarded = Pushed<
  "agent_text_discarded",
  { round: number; reason: "tool_call" | "redo" | (string & {}) }
>;
/** The run waits for the user's answer (`approve_tool`) before calling a tool. */
export type ToolApprovalRequired = Pushed<
  "tool_approval_required",
  { call_id: string; tool_name: string; parameters: unknown; expires_at?: string }
>;
/**
 * The run's answer. `result` is the agent's (`text` for the `llm` agent, `reply` for `echo`);
 * `truncated` marks an event cut to fit 128 KiB, whose client keeps the text it streamed.
 */
export type AgentCompleted = Pushed<
  "agent_completed",
  {
    agent_name?: string;
    result?: unknown;
    execution_time_ms?: number;
    truncated?: boolean;
  }
>;
export type AgentError = Pushed<"agent_error", ErrorPayload>;
export type AgentCancelled = Pushed<"agent_cancelled", { state: string }>;
export type AgentDeath = Pushed<"agent_death", { cause: string }>;

/** `approve_tool`'s reply: the answer was recorded; `continued` when it was the run's last
 * unanswered call and the run goes on (its events follow on this connection). */
export type ApprovalAccepted = Envelope<
  "approval_accepted",
  { call_id: string; approved: boolean; continued: boolean }
>;

/** Every event a run streams. */
export type RunEvent =
  | AgentStarted
  | AgentThinking
  | ToolExecuting
  | ToolCompleted
  | AgentDelta
  | AgentTextDiscarded
  | ToolApprovalRequired
  | AgentCompleted
  | AgentError
  | AgentCancelled
  | AgentDeath;

/** The `type` of every run event. */
export type RunEventType = RunEvent["type"];

/** The run event types this client knows; others are passed to `on("frame")` only. */
export const RUN_EVENT_TYPES: ReadonlySet<string> = new Set<RunEventType>([
  "agent_started",
  "agent_thinking",
  "tool_executing",
  "tool_completed",
  "agent_delta",
  "agent_text_discarded",
  "tool_approval_required",
  "agent_completed",
  "agent_error",
  "agent_cancelled",
  "agent_death",
]);

/** The run events after which a run streams nothing more. */
export const TERMINAL_EVENT_TYPES: ReadonlySet<string> = new Set<RunEventType>([
  "agent_completed",
  "agent_error",
  "agent_cancelled",
  "agent_death",
]);

/** A run as its owner sees it (`execution`, and each item of `executions`). */
export interface Execution {
  run_id: string;
  thread_id: string;
  request_id: string;
  agent: string;
  state: RunState;
  version: number;
  created_at: string;
  updated_at: string;
  /** The latest `seq` as last persisted. */
  seq: number;
  /** An alive run's streamed text up to `seq`, as of its last checkpoint. */
  streamed?: string;
  result?: unknown;
  error?: { code: string; message: string };
  /** What the run consumed (absent while nothing was). */
  usage?: { input_tokens: number; output_tokens: number; tool_calls: number; duration_ms: number };
  /** While the run waits for its owner's `approve_tool`: the calls still unanswered, each
   * with the `seq` of its `tool_approval_required`, and when the wait ends (`approval_timeout`). */
  awaiting?: Awaiting;
  /** True when this answers a retried start that found the existing run. */
  deduplicated?: boolean;
}

/** What a suspended run waits for (`execution.awaiting`). */
export interface Awaiting {
  calls: { call_id: string; tool_name: string; parameters: unknown; seq: number }[];
  /** RFC 3339: unanswered then, the run ends `timeout` (`agent_error` `approval_timeout`). */
  expires_at: string;
}

/** A page of runs, newest first; `cursor` fetches the next page. */
export interface ExecutionPage {
  items: Execution[];
  cursor?: string;
}

/** One limit that applies to the caller: its value and how much of it is in use. */
export interface UsageLimit {
  limit: number;
  /** Alive runs (`MAX_ACTIVE_RUNS_PER_USER`), or today's tokens (the daily budgets). */
  used: number;
  /** A budget's tokens left today. */
  remaining?: number;
}

/** `get_usage`'s reply: the caller's counters for the current UTC day and their limits. */
export interface Usage {
  /** The UTC day, `YYYY-MM-DD`. */
  day: string;
  /** When the day's counters start again (RFC 3339). */
  resets_at: string;
  /** False when the server sets no usage limit: nothing is counted then. */
  metered: boolean;
  usage: { runs: number; input_tokens: number; output_tokens: number; tokens: number };
  /** By limit name: `MAX_ACTIVE_RUNS_PER_USER`, `DAILY_TOKEN_BUDGET_PER_USER`,
   * `DAILY_TOKEN_BUDGET_PER_TENANT`; only those that apply. */
  limits: Partial<Record<"MAX_ACTIVE_RUNS_PER_USER" | "DAILY_TOKEN_BUDGET_PER_USER" | "DAILY_TOKEN_BUDGET_PER_TENANT", UsageLimit>>;
}

/** A frame this client sends: a JSON object with its `type`. */
export type Frame = Record<string, unknown> & { type: string; request_id?: string };
