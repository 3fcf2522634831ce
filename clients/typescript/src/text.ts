/**
 * The answer's text as a client keeps it: `agent_delta` texts in arrival order, less every
 * round an `agent_text_discarded` dropped (README "Protocol", the round-discard rule), so the
 * kept text adds up exactly to `agent_completed.payload.result.text`.
 */

import type { AgentCompleted } from "./protocol.js";

/** The round of a delta from a server that does not number them: agents with no rounds use 1. */
export const DEFAULT_ROUND = 1;

/** Streamed text, by round. */
export class TextAssembler {
  private pieces: { round: number; text: string }[] = [];
  private kept = "";

  /** Adds a delta's text to its round. */
  add(text: string, round: number = DEFAULT_ROUND): void {
    this.pieces.push({ round, text });
    this.kept += text;
  }

  /** Drops what `round` streamed so far; its later deltas are kept. */
  discard(round: number): void {
    if (!this.pieces.some((p) => p.round === round)) return;
    this.pieces = this.pieces.filter((p) => p.round !== round);
    this.kept = this.pieces.map((p) => p.text).join("");
  }

  /** The text kept so far. */
  get text(): string {
    return this.kept;
  }
}

/** Whether a completed run's `result` (or its whole event) was cut to fit a limit. */
export function isTruncated(payload: AgentCompleted["payload"]): boolean {
  if (payload.truncated === true) return true;
  const r = payload.result as { truncated?: unknown } | null | undefined;
  return typeof r === "object" && r !== null && r.truncated === true;
}

/** The answer of a result: `text` (the `llm` agent), else `reply` (`echo`), else undefined. */
export function resultText(result: unknown): string | undefined {
  if (typeof result === "string") return result;
  if (typeof result !== "object" || result === null) return undefined;
  const r = result as { text?: unknown; reply?: unknown };
  if (typeof r.text === "string") return r.text;
  if (typeof r.reply === "string") return r.reply;
  return undefined;
}

/** The final answer: the result's own text unless it was cut, then the text streamed. */
export function finalText(payload: AgentCompleted["payload"], streamed: string): string {
  if (isTruncated(payload)) return streamed;
  return resultText(payload.result) ?? streamed;
}
