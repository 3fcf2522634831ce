//! Every limit and default of wsexec in one place, each with the reason for its value.

use std::time::Duration;

/// API Gateway's maximum WebSocket message size; larger frames are never delivered by AWS, so a
/// larger body reaching the handler is malformed input.
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;

/// API Gateway's maximum WebSocket frame size (a message may span several frames).
pub const MAX_FRAME_BYTES: usize = 32 * 1024;

/// Largest free-text field (`user_request`, `message`): half a message, so the request and the
/// result it produces both fit in one DynamoDB item (400 KB) with room for the envelope.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// Largest id (`user_id`, `run_id`, ...), inherited from the original platform's validation.
pub const MAX_ID_LEN: usize = 128;

/// Largest raw id field (`run_id`, `request_id`, `thread_id`, `agent`) the frame parser keeps:
/// a larger one is refused as `field_too_large` before any id rule runs, while an id a little
/// over [`MAX_ID_LEN`] still reaches the id rules and gets their precise `invalid_id`.
pub const MAX_ID_FIELD_BYTES: usize = 4 * MAX_ID_LEN;

/// Characters of an unknown message `type` echoed back in its `error`: enough to recognise a
/// typo, never enough to turn the reply into an amplifier of the client's frame.
pub const MAX_ECHOED_TYPE_CHARS: usize = 64;

/// Placeholder prefixes only apply to values shorter than this (the original platform's rule).
pub const PLACEHOLDER_PREFIX_MAX_LEN: usize = 20;

/// Largest JWT accepted: real tokens are a few hundred bytes; this bounds parsing work.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Clock skew tolerated on a token's `exp` and `nbf`: small enough that an expired token is
/// refused within seconds, large enough for an issuer whose clock is slightly off.
pub const JWT_LEEWAY: Duration = Duration::from_secs(5);

/// Default page size of `list_executions`.
pub const DEFAULT_PAGE_SIZE: usize = 20;

/// Largest page of `list_executions`: keeps one reply well under the 128 KiB message limit.
pub const MAX_PAGE_SIZE: usize = 50;

/// Largest opaque pagination cursor accepted from a client.
pub const MAX_CURSOR_LEN: usize = 256;

/// Default run time limit (DESIGN.md): a run alive longer than this becomes `timeout`.
pub const DEFAULT_RUN_TIME_LIMIT: Duration = Duration::from_secs(15);

/// Default heartbeat deadline (DESIGN.md): an alive run silent longer than this becomes `dead`.
pub const DEFAULT_HEARTBEAT_DEADLINE: Duration = Duration::from_secs(10);

/// A long step renews the heartbeat at most this often, so a run costs few writes; a third of
/// the deadline leaves two missed renewals of slack before the sweep calls the run dead.
pub const HEARTBEAT_DIVISOR: u32 = 3;

/// What a cancel answered from another process adds to the driver's next heartbeat before it
/// replies: the heartbeat write's own latency and the tick's scheduling, so the driver has met
/// the cancel (and stopped pushing) when the canceller hears `agent_cancelled`.
pub const CANCEL_SLACK: std::time::Duration = std::time::Duration::from_millis(250);

/// What a cancel keeps of its invocation's time for writing its reply after waiting.
pub const CANCEL_REPLY_MARGIN: std::time::Duration = std::time::Duration::from_secs(1);

/// API Gateway's integration timeout for a WebSocket route (29 s) less a second: a route reply
/// later than that is lost.
pub const API_GATEWAY_ROUTE_LIMIT: std::time::Duration = std::time::Duration::from_secs(28);

/// The shortest `ROUTE_TIME_LIMIT_MS` accepted: a hand-off needs its margin, and a route must
/// have time left to start a run at all.
pub const MIN_ROUTE_TIME_LIMIT: Duration = Duration::from_millis(1000);

/// Time a SIGTERM gives in-flight runs to end (terminal write, client told) before the process
/// exits: Lambda allows the runtime and its internal extension 500 ms after SIGTERM before it
/// kills the process; this leaves the rest for the exit itself.
pub const SHUTDOWN_BUDGET: Duration = Duration::from_millis(400);

/// The part of [`SHUTDOWN_BUDGET`] a run may spend handing itself to a continuation at SIGTERM
/// (one conditional write and one `Invoke`: tens of milliseconds in region); the rest is kept
/// for the fallback, the `instance_shutdown` terminal write, when the hand-off is not made.
pub const SHUTDOWN_HANDOFF_BUDGET: Duration = Duration::from_millis(250);

/// Time kept back from Lambda's own deadline to persist the run's terminal state.
pub const LAMBDA_DEADLINE_MARGIN: Duration = Duration::from_millis(1500);

/// Default `HANDOFF_MARGIN_MS`: time kept back from an invocation's deadline (Lambda's for a
/// worker, the route's for an inline start under `RUN_DISPATCH=auto`) to hand the run to its
/// continuation: the checkpoint write and the `Invoke` usually take tens of milliseconds, and
/// each is bounded by its operation timeout (5 s: `DYNAMODB_OPERATION_TIMEOUT`, the invoker's),
/// so one slow dependency still leaves the hand-off time to land. A worker gives up 5 s of its
/// 15 minutes for it; an inline start hands off at 23 s of the route's 28.
pub const DEFAULT_HANDOFF_MARGIN: Duration = Duration::from_millis(5000);

/// How long a run waits for the user's answer to a tool approval when `APPROVAL_TIMEOUT_MS` is
/// unset: ten minutes is API Gateway's idle timeout, so a user who has not answered by then
/// has most likely left (their connection would have been dropped without traffic), and a
/// waiting run holds an active-run slot.
pub const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_millis(600_000);

/// A connection record outlives API Gateway's 2 h maximum connection time by this margin, then
/// TTL removes it even if `$disconnect` was never delivered (AWS does not guarantee it).
pub const CONNECTION_TTL: Duration = Duration::from_secs(2 * 3600 + 600);

/// Attempts of `cancel_agent`'s read-then-conditional-write: a heartbeat landing between the
/// read and the write costs one more attempt; more than this means the run is changing too fast
/// and the client is told `conflict` rather than looping.
pub const CANCEL_ATTEMPTS: usize = 3;

/// Attempts of a run's terminal write: another is needed when the run's own last heartbeat
/// landed although its answer was lost, or a `resume` attached a follower since the last write
/// (each bumps the version); more means the run is changing too fast and the sweep ends it.
pub const TERMINAL_WRITE_ATTEMPTS: usize = 4;

/// Attempts of a heartbeat write: a `resume` that attached a follower since the last write
/// bumped the version, so the heartbeat is written again on top of it (and so learns of the
/// follower); a miss beyond that only risks one renewal out of three per deadline.
pub const HEARTBEAT_WRITE_ATTEMPTS: usize = 2;

/// Attempts of `resume`'s read-then-conditional-write attach: a heartbeat landing between the
/// read and the write costs one more attempt; more means the client is told `conflict`.
pub const RESUME_ATTEMPTS: usize = 3;

/// Attempts of a worker's claim: a `resume` may attach a follower to a run still waiting in
/// `starting`, bumping its version; a conflict with anything else is another worker's claim.
pub const CLAIM_ATTEMPTS: usize = 3;

/// Connections that may follow one run besides the one that started it: a user has a few
/// tabs and devices, every event is pushed to each of them from the one driving invocation
/// (so each adds push latency and `@connections` calls), and the list lives on the run item.
pub const MAX_RUN_FOLLOWERS: usize = 8;

/// Runs one connection is remembered to follow, for `$disconnect` to detach it: a client
/// follows the run it is watching, rarely more; older attachments are left to expire.
pub const MAX_FOLLOWED_RUNS: usize = 8;

/// Streamed text a heartbeat checkpoints on an alive run item, so `resume` can show the text so
/// far: with the request (64 KiB) and the rest it stays far below DynamoDB's 400 KB item. A
/// longer stream's checkpoint keeps `seq` only; the driver still replays what a follower missed.
pub const MAX_CHECKPOINT_TEXT_BYTES: usize = 128 * 1024;

/// Pushed frames the driver keeps in memory to bring a new follower up to date: every frame
/// of a run unless it streams more than this (a 15-minute LLM answer is a few hundred KiB);
/// beyond it the oldest are dropped, and a follower who missed those starts at the oldest kept.
pub const MAX_REPLAY_BYTES: usize = 1024 * 1024;

/// Runs stay readable this long, then TTL removes them.
pub const RUN_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The sparse `alive` index is split over this many partition keys, so a busy deployment never
/// writes one hot partition; the sweep reads every shard.
pub const ALIVE_SHARDS: u8 = 4;

/// Runs the sweep examines per shard per invocation: bounds its time and writes per invocation.
pub const SWEEP_BATCH: usize = 100;

/// Warm-instance connection identity cache entries; beyond this the cache is cleared (a miss
/// costs one GetItem, never correctness).
pub const IDENTITY_CACHE_CAPACITY: usize = 10_000;

/// Largest artificial step delay the `echo` agent accepts (`payload.delay_ms`), for exercising
/// heartbeats, cancellation and time limits with real clients.
pub const MAX_ECHO_DELAY: Duration = Duration::from_secs(60);

/// Largest answer the `echo` agent streams on request (`answer_bytes`): twice the driver's
/// [`MAX_RUN_TEXT_BYTES`], so tests can provoke every size bound with real clients.
pub const MAX_ECHO_ANSWER_BYTES: usize = 2 * MAX_RUN_TEXT_BYTES;

/// DynamoDB connect timeout: in-region connects take milliseconds; a stuck connect must fail
/// fast enough to be retried inside API Gateway's 29 s integration timeout.
pub const DYNAMODB_CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);

/// DynamoDB per-attempt timeout: single-item operations answer in milliseconds.
pub const DYNAMODB_ATTEMPT_TIMEOUT: Duration = Duration::from_millis(2000);

/// DynamoDB whole-operation timeout, retries included.
pub const DYNAMODB_OPERATION_TIMEOUT: Duration = Duration::from_millis(5000);

/// DynamoDB attempts per operation (the SDK's standard retry with backoff): bounded, and the
/// only retry loop there is.
pub const DYNAMODB_MAX_ATTEMPTS: u32 = 3;

/// Default coalescing window of `agent_delta` pushes (`STREAM_FLUSH_MS`): posts are bounded by
/// an answer's duration, not its length (a 1,000-token answer streamed in 5 s costs about 50
/// `@connections` posts, not a thousand; benches/stream.rs: 131 for 400 tokens over 12.6 s),
/// while text still appears live.
pub const DEFAULT_STREAM_FLUSH: Duration = Duration::from_millis(100);

/// Earlier turns of a thread handed to an agent: enough context for a conversation, bounded so
/// one query (of at most this many runs plus one) reads them.
pub const MAX_HISTORY_TURNS: usize = 20;

/// Characters of earlier turns handed to an agent: keeps a long thread's prompt within small
/// models' context; the oldest turns are dropped first.
pub const MAX_HISTORY_CHARS: usize = 32 * 1024;

/// Owner connections told of one run that ended elsewhere (died, timed out): a user has a few
/// tabs and devices; more records than this are stale ones TTL will remove.
pub const MAX_NOTICE_TARGETS: usize = 16;

/// Time all the notices of one read or sweep may take together: notices must never hold up
/// the reply that caused them, whatever state the connection records are in.
pub const NOTICE_BUDGET: Duration = Duration::from_millis(1500);

/// Largest `agent_delta` text in one push: far below API Gateway's 128 KiB message (JSON
/// escaping can grow text up to 6x), so streamed text is never truncated on its way.
pub const MAX_DELTA_BYTES: usize = 16 * 1024;

/// Largest run result stored with the run: DynamoDB items are at most 400 KB, and the item
/// also holds the request (up to 64 KiB) and the run's other attributes. A longer answer's
/// stored `text` is cut and marked; its client got every piece as `agent_delta`.
pub const MAX_STORED_RESULT_BYTES: usize = 256 * 1024;

/// The most answer text one run may stream (the driver's bound, whatever the agent): a 15-minute
/// model answer is a few hundred KiB, and this is what a 16 MiB answer costs the process at
/// most (the agent's copy and the result); beyond it the run fails `answer_too_large`.
pub const MAX_RUN_TEXT_BYTES: usize = 16 * 1024 * 1024;

/// Answer text all the runs of one process may hold at once (each holds what it has streamed
/// until it ends): a quarter of the template's 256 MB function, so concurrent invocations on
/// Managed Instances cannot exhaust memory; a run that would pass it fails
/// `text_budget_exceeded` (retryable: other runs end and free it).
pub const PROCESS_TEXT_BUDGET_BYTES: usize = 64 * 1024 * 1024;

/// Time one follower's catch-up (the kept frames it missed) may take, alongside the run: a
/// follower that cannot take 1 MiB in this long follows live from then on instead.
pub const CATCH_UP_BUDGET: Duration = Duration::from_secs(10);

/// What a run's end keeps of its invocation's time after letting followers still catching up
/// receive the terminal event (each within its [`CATCH_UP_BUDGET`]): the run is already
/// persisted, so this only keeps the invocation's own reply in time.
pub const CATCH_UP_SETTLE_MARGIN: Duration = Duration::from_millis(250);
