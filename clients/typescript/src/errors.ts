/**
 * Typed errors: every failure a caller sees is a `WsexecError` with the server's `code` (or
 * one of the client's own), its message and whether retrying may help; and the local checks
 * that refuse a frame over the server's limits with the code the server would send.
 */

import { MAX_FRAME_BYTES, MAX_ID_FIELD_BYTES, MAX_MESSAGE_BYTES, MAX_TEXT_BYTES } from "./limits.js";

/** Codes the server sends in `error` and `agent_error` (README "Protocol"). */
export type ServerErrorCode =
  | "invalid_json"
  | "invalid_frame"
  | "unknown_type"
  | "missing_field"
  | "invalid_field"
  | "field_too_large"
  | "message_too_large"
  | "invalid_id"
  | "not_found"
  | "run_finished"
  | "unknown_agent"
  | "too_many_followers"
  /** `approve_tool` for a call already answered (from any connection): nothing changed. */
  | "already_answered"
  | "unauthorized"
  | "agent_failed"
  | "run_timeout"
  /** A tool approval was not answered by its `expires_at`: the run ended `timeout`. */
  | "approval_timeout"
  | "run_dead"
  | "llm_permission"
  | "llm_throttled"
  | "llm_unavailable"
  | "llm_invalid"
  | "llm_protocol"
  | "quota_exceeded"
  | "internal"
  | "conflict"
  | "transaction_cancelled"
  | "contention"
  | "throttled"
  | "storage_connection"
  | "storage_timeout"
  | "storage_unavailable"
  | "storage_permission"
  | "storage_schema"
  | "storage_invalid"
  | "dispatch_throttled"
  | "dispatch_permission"
  | "dispatch_unavailable"
  | "dispatch_connection"
  | "dispatch_timeout"
  | "dispatch_invalid";

/** Codes only this client produces. */
export type ClientErrorCode =
  /** The first connection was refused or never opened (bad credentials, no server). */
  | "connect_failed"
  /** `close()` was called while the request or run was still pending. */
  | "closed"
  /** No reply arrived in time. */
  | "timeout"
  /** The run ended `cancelled`. */
  | "cancelled";

/** Every code a `WsexecError` can carry; newer servers may send codes not listed here. */
export type ErrorCode = ServerErrorCode | ClientErrorCode | (string & {});

/** A failure as a caller sees it. */
export class WsexecError extends Error {
  /** The server's code (`not_found`, `invalid_id`, ...) or the client's own. */
  readonly code: ErrorCode;
  /** Whether the same request may succeed if tried again. */
  readonly retryable: boolean;
  /** True when the client refused the request itself and sent nothing. */
  readonly local: boolean;
  /** `quota_exceeded`: the limit that refused (`MAX_ACTIVE_RUNS_PER_USER`, ...). */
  limit?: string;
  /** `quota_exceeded` by a daily budget: milliseconds until it renews. */
  retryAfterMs?: number;

  constructor(code: ErrorCode, message: string, retryable = false, local = false) {
    super(message);
    this.name = "WsexecError";
    this.code = code;
    this.retryable = retryable;
    this.local = local;
  }

  /** The error an `error` or `agent_error` payload describes. */
  static fromPayload(payload: unknown): WsexecError {
    const p = (payload ?? {}) as { code?: unknown; message?: unknown; retryable?: unknown; limit?: unknown; retry_after_ms?: unknown };
    const code = typeof p.code === "string" ? p.code : "internal";
    const message = typeof p.message === "string" ? p.message : code;
    const err = new WsexecError(code, message, p.retryable === true);
    if (typeof p.limit === "string") err.limit = p.limit;
    if (typeof p.retry_after_ms === "number") err.retryAfterMs = p.retry_after_ms;
    return err;
  }
}

const encoder = new TextEncoder();

/** UTF-8 bytes of `s`: what the server counts. */
export function utf8Bytes(s: string): number {
  return encoder.encode(s).length;
}

function refuse(code: ServerErrorCode, message: string): never {
  throw new WsexecError(code, message, false, true);
}

/** A free-text field the server requires: present, not blank, at most 64 KiB. */
export function checkText(name: string, text: unknown): string {
  if (typeof text !== "string") refuse("invalid_field", `${name} must be a string`);
  if (utf8Bytes(text) > MAX_TEXT_BYTES) refuse("field_too_large", `${name} exceeds ${MAX_TEXT_BYTES} bytes`);
  if (text.trim() === "") refuse("missing_field", `${name} must not be empty`);
  return text;
}

/** An optional id field: a string no larger than the server's parser keeps. */
export function checkId(name: string, id: unknown, max = MAX_ID_FIELD_BYTES): string | undefined {
  if (id === undefined) return undefined;
  if (typeof id !== "string") refuse("invalid_field", `${name} must be a string`);
  if (utf8Bytes(id) > max) refuse("field_too_large", `${name} exceeds ${max} bytes`);
  return id;
}

/** A required id field. */
export function requireId(name: string, id: unknown): string {
  const v = checkId(name, id);
  if (v === undefined) refuse("missing_field", `${name} is required`);
  return v;
}

/** The frame as JSON text, refused when it exceeds API Gateway's 128 KiB message. */
export function encodeFrame(frame: object): string {
  const json = JSON.stringify(frame);
  if (utf8Bytes(json) > MAX_MESSAGE_BYTES) {
    refuse("message_too_large", `message exceeds ${MAX_MESSAGE_BYTES} bytes`);
  }
  return json;
}

/** Refuses a frame API Gateway would close the connection for: over 32 KiB in one WebSocket
 * frame, which is how browsers send every message (sending it would also loop: the client
 * reconnects and sends an unanswered start again). */
export function checkFrame(json: string): string {
  if (utf8Bytes(json) > MAX_FRAME_BYTES) {
    refuse(
      "message_too_large",
      `message exceeds ${MAX_FRAME_BYTES} bytes, API Gateway's WebSocket frame limit (a WebSocket sends each message as one frame)`,
    );
  }
  return json;
}
