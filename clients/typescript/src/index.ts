/**
 * wsexec-client: a client for wsexec's WebSocket API, for browsers and Node 20+.
 *
 * `connect()` gives a `WsexecClient`; `client.start(text)` gives a `Run` whose events arrive
 * once each, in `seq` order, across reconnects. The AI SDK transport is `wsexec-client/ai`.
 */

export { connect, randomId, WsexecClient } from "./client.js";
export type { ClientEvents, ListOptions, StartOptions } from "./client.js";
export type { ConnectOptions, ConnectionState, WebSocketConstructor, WebSocketLike } from "./connection.js";
export { WsexecError } from "./errors.js";
export type { ClientErrorCode, ErrorCode, ServerErrorCode } from "./errors.js";
export { MAX_FRAME_BYTES, MAX_ID_FIELD_BYTES, MAX_MESSAGE_BYTES, MAX_TEXT_BYTES } from "./limits.js";
export { isAlive } from "./protocol.js";
export type * from "./protocol.js";
export { Run } from "./run.js";
export type { RunOutcome } from "./run.js";
export { TextAssembler, finalText, resultText } from "./text.js";
