/**
 * A run's events as the AI SDK's UI message chunks: text parts from deltas (one per round,
 * marked when the round is discarded), reasoning from thoughts, server-executed tool parts
 * from tool events, and approvals as `tool-approval-request`.
 */

import type { UIMessageChunk } from "ai";
import type { RunEvent } from "./protocol.js";
import { DEFAULT_ROUND, finalText } from "./text.js";

/** The `providerMetadata` key under which a text part says its round and, once dropped, why. */
export const METADATA_KEY = "wsexec";

/** A UI message part as far as these helpers read it. */
interface PartLike {
  type: string;
  text?: string;
  providerMetadata?: Record<string, Record<string, unknown> | undefined>;
}

/** Whether a text part holds text the server discarded (`agent_text_discarded`): the AI SDK
 * has no chunk that removes text, so the part stays, marked; render the others. */
export function isDiscardedText(part: PartLike): boolean {
  return part.type === "text" && part.providerMetadata?.[METADATA_KEY]?.discarded !== undefined;
}

/** The answer a message shows: its text parts less the discarded ones (equals the run's
 * `result.text`). */
export function keptText(message: { parts: readonly PartLike[] }): string {
  return message.parts
    .filter((p) => p.type === "text" && !isDiscardedText(p))
    .map((p) => p.text ?? "")
    .join("");
}

/** The assistant message id of a run: the same on every stream of it, so a replay after a
 * reconnect replaces the message instead of adding one. */
export function messageIdOf(runId: string): string {
  return `run-${runId}`;
}

/** Turns one run's events, in order, into chunks; keeps what pairs later events with earlier
 * ones (open text parts, tool calls waiting for their result). */
export class ChunkMapper {
  private text: { id: string; round: number } | null = null;
  private parts = 0;
  private keptAny = false;
  /** Tool calls without a result, oldest first: `tool_completed` has no call id of its own. */
  private readonly open: { id: string; tool: string }[] = [];
  private readonly known = new Set<string>();

  constructor(private readonly runId: string) {}

  /** A new stream of the same run: the SDK holds no open part of the previous one. */
  newStream(): void {
    this.text = null;
  }

  /** The chunks that open a stream. */
  start(): UIMessageChunk[] {
    return [{ type: "start", messageId: messageIdOf(this.runId) }, { type: "start-step" }];
  }

  /** The chunks of one event. */
  map(ev: RunEvent): UIMessageChunk[] {
    const out: UIMessageChunk[] = [];
    switch (ev.type) {
      case "agent_delta": {
        const round = ev.payload.round ?? DEFAULT_ROUND;
        if (this.text && this.text.round !== round) out.push(...this.endText());
        if (!this.text) {
          this.text = { id: `text-${++this.parts}`, round };
          out.push({ type: "text-start", id: this.text.id, providerMetadata: { [METADATA_KEY]: { round } } });
        }
        if (ev.payload.text) {
          out.push({ type: "text-delta", id: this.text.id, delta: ev.payload.text });
          this.keptAny = true;
        }
        break;
      }
      case "agent_text_discarded":
        if (this.text && this.text.round === ev.payload.round) {
          const { round, reason } = ev.payload;
          out.push({ type: "text-end", id: this.text.id, providerMetadata: { [METADATA_KEY]: { round, discarded: reason } } });
          this.text = null;
        }
        break;
      case "agent_thinking": {
        const id = `thought-${ev.seq}`;
        out.push(
          { type: "reasoning-start", id },
          { type: "reasoning-delta", id, delta: ev.payload.thought },
          { type: "reasoning-end", id },
        );
        break;
      }
      case "tool_executing": {
        const id = ev.payload.call_id ?? this.approvedCall(ev.payload.tool_name) ?? `${this.runId}:${ev.seq}`;
        if (!this.known.has(id)) out.push(this.input(id, ev.payload.tool_name, ev.payload.parameters));
        this.open.push({ id, tool: ev.payload.tool_name });
        break;
      }
      case "tool_completed": {
        const at = this.open.findIndex((c) => (ev.payload.call_id ? c.id === ev.payload.call_id : c.tool === ev.payload.tool_name));
        const id = at >= 0 ? this.open.splice(at, 1)[0].id : `${this.runId}:${ev.seq}`;
        if (!this.known.has(id)) out.push(this.input(id, ev.payload.tool_name, undefined));
        out.push({ type: "tool-output-available", toolCallId: id, output: ev.payload.result, providerExecuted: true, dynamic: true });
        break;
      }
      case "tool_approval_required": {
        const { call_id, tool_name, parameters } = ev.payload;
        if (!this.known.has(call_id)) out.push(this.input(call_id, tool_name, parameters));
        this.awaiting.set(call_id, tool_name);
        out.push({ type: "tool-approval-request", approvalId: call_id, toolCallId: call_id });
        break;
      }
      case "agent_completed": {
        out.push(...this.endText());
        const answer = finalText(ev.payload, "");
        // An agent that streams nothing (`echo`) still answers in a text part.
        if (!this.keptAny && answer) {
          const id = `text-${++this.parts}`;
          out.push({ type: "text-start", id }, { type: "text-delta", id, delta: answer }, { type: "text-end", id });
        }
        out.push({ type: "finish-step" }, { type: "finish", finishReason: "stop" });
        break;
      }
      case "agent_error":
        out.push(...this.endText(), { type: "error", errorText: `${ev.payload.code}: ${ev.payload.message}` });
        break;
      case "agent_death":
        out.push(...this.endText(), { type: "error", errorText: `run_dead: ${ev.payload.cause}` });
        break;
      case "agent_cancelled":
        out.push(...this.endText(), { type: "abort", reason: "cancelled" }, { type: "finish", finishReason: "other" });
        break;
      default:
        break;
    }
    return out;
  }

  /** Closes a stream that stops at approvals: the run goes on once they are answered. */
  pause(): UIMessageChunk[] {
    return [...this.endText(), { type: "finish-step" }, { type: "finish", finishReason: "tool-calls" }];
  }

  /** The denial of an approval, as the SDK shows it (the run will not call the tool). */
  denied(callId: string): UIMessageChunk {
    this.awaiting.delete(callId);
    return { type: "tool-output-denied", toolCallId: callId };
  }

  /** Calls answered `approved` whose execution has not begun, by tool name. */
  private readonly awaiting = new Map<string, string>();

  private approvedCall(tool: string): string | undefined {
    for (const [id, name] of this.awaiting) {
      if (name === tool) {
        this.awaiting.delete(id);
        return id;
      }
    }
    return undefined;
  }

  private input(id: string, toolName: string, input: unknown): UIMessageChunk {
    this.known.add(id);
    return { type: "tool-input-available", toolCallId: id, toolName, input, providerExecuted: true, dynamic: true };
  }

  private endText(): UIMessageChunk[] {
    if (!this.text) return [];
    const id = this.text.id;
    this.text = null;
    return [{ type: "text-end", id }];
  }
}
