/**
 * The server's limits a client checks before sending (mirroring `src/limits.rs`, which is the
 * authority), and the client's own defaults, each with its reason.
 */

/** API Gateway's maximum WebSocket message (UTF-8 bytes of the frame): a larger frame is
 * never delivered, so the client refuses it as the server would (`message_too_large`). */
export const MAX_MESSAGE_BYTES = 128 * 1024;

/** API Gateway's maximum WebSocket frame: a larger frame closes the connection (1009), and a
 * browser's `WebSocket` (like Node's) sends each message as one frame, so this is the largest
 * message such a client can send. */
export const MAX_FRAME_BYTES = 32 * 1024;

/** Largest free-text field (`payload.user_request`): the server refuses more with
 * `field_too_large`. */
export const MAX_TEXT_BYTES = 64 * 1024;

/** Largest raw id field (`run_id`, `request_id`, `thread_id`, `agent`) the server's parser
 * keeps before `field_too_large`; the id rule itself (`invalid_id`) is left to the server. */
export const MAX_ID_FIELD_BYTES = 4 * 128;

/** Largest pagination cursor the server accepts (`field_too_large` beyond). */
export const MAX_CURSOR_BYTES = 256;

/** First reconnect wait after a drop: short, since most drops (idle timeout, a 2-hour
 * connection limit, a deploy) are answered at once by a fresh connection. */
export const BACKOFF_FIRST_MS = 250;

/** Longest reconnect wait: the wait doubles per failed attempt up to this, so a server that is
 * down is not hammered while one that is back is found within seconds. */
export const BACKOFF_MAX_MS = 5000;

/** A direct reply later than this fails its request with `timeout` (retryable): API Gateway
 * answers a route within 29 s or not at all, and a cancel may wait a heartbeat interval. */
export const REQUEST_TIMEOUT_MS = 30_000;
