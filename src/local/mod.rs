//! `wsexec-local`: the local development tool, an API Gateway WebSocket emulator and `invoke`.
//!
//! The emulator runs the function's own handler, in process, on events built exactly as API
//! Gateway builds them, and serves the `@connections` management API the function's notifier
//! pushes run events to. Nothing here is linked into the Lambda binary (`local` feature).
//!
//! Modules point one way (`tests/local_layout.rs` checks it): `gateway` → `access`, (`upgrade`
//! → `connection`), `management`, `lambda_api` → `state` → `signature`, `registry` → `events` →
//! `codec`, `ids`; `page` → `codec`; `http` is a leaf both sides of the server use.
//!
//! # Layout
//! - [`cli`]: the command line (`serve`, `invoke`) and how it builds stores and configs.
//! - [`gateway`]: the server: one port for WebSocket upgrades (`$connect`) and `@connections`.
//! - [`access`]: who may reach it from a browser: loopback `Host` names, allowed `Origin`s.
//! - [`upgrade`]: the WebSocket handshake and `$connect`, handing the socket to [`connection`].
//! - [`connection`]: one WebSocket connection's life: messages, pushes, limits, `$disconnect`.
//! - [`management`]: the `@connections/{id}` API (`POST`, `GET`, `DELETE`).
//! - [`page`]: the chat page a plain `GET /` answers (HTML, style and script from `page/`).
//! - [`state`]: what one server's connections and requests share, and how it invokes.
//! - [`registry`]: the live connections, and the handle that reaches a connection's socket.
//! - [`http`]: the HTTP responses the gateway builds itself.
//! - [`events`]: AWS-exact `CONNECT` / `MESSAGE` / `DISCONNECT` events and route selection.
//! - [`codec`]: `%XX` escapes and base64, as API Gateway applies them.
//! - [`ids`]: API Gateway style ids (`connectionId`, `requestId`, `messageId`, `apiId`).
//! - [`lambda_api`]: Lambda's `Invoke` API, so async dispatch runs locally as deployed.
//! - [`signature`]: the `Invoke` API's caller check (SigV4 with this process's own credentials).
//! - [`invoke`]: running event files through the handler, printing JSON lines.

pub mod access;
pub mod cli;
pub mod codec;
pub mod connection;
pub mod events;
pub mod gateway;
pub mod http;
pub mod ids;
pub mod invoke;
pub mod lambda_api;
pub mod management;
pub mod page;
pub mod registry;
pub mod signature;
pub mod state;
pub mod upgrade;

pub use gateway::{ServeOptions, run};
pub use state::Invoked;

use std::time::Duration;

/// The port `serve` listens on by default (SAM's `sam local start-api` habit).
pub const DEFAULT_PORT: u16 = 3001;

/// The stage name in events and in the `@connections` endpoint's place of a deployed stage.
pub const STAGE: &str = "local";

/// API Gateway's idle connection timeout: a connection with no message in either direction
/// for this long is closed with 1001.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// API Gateway's maximum connection duration: every connection is closed with 1001 after it.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(2 * 3600);

/// API Gateway's frame size limit (32 KiB): a larger frame closes the connection with 1009.
pub const MAX_FRAME_BYTES: usize = crate::limits::MAX_FRAME_BYTES;

/// API Gateway's message size limit (128 KiB, over all frames of a message): a larger message
/// closes the connection with 1009, and a larger `@connections` POST answers 413.
pub const MAX_MESSAGE_BYTES: usize = crate::limits::MAX_MESSAGE_BYTES;

/// API Gateway's limit on a WebSocket API's URL (4096 characters): a longer request target
/// answers 414.
pub const MAX_URL_CHARS: usize = 4096;

/// API Gateway's limit on a request's line and header values together (10 KiB, its documented
/// quota for HTTP APIs; the WebSocket quota table names none): a larger head answers 431.
pub const MAX_HEAD_BYTES: usize = 10 * 1024;

/// The Lambda function's timeout in `template.yaml`: every emulated invocation gets the
/// deadline a deployed one would.
pub const LAMBDA_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the emulator runs the sweep, as `template.yaml`'s `rate(1 minute)` schedule does.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Invocations one connection may have running at once (API Gateway invokes the function for
/// every message concurrently, bounded only by Lambda's concurrency); beyond this the emulator
/// stops reading that socket (TCP back-pressure) instead of holding unbounded work for it.
pub const MAX_IN_FLIGHT_MESSAGES: usize = 64;

/// Pushes waiting to be written to one socket; a full queue makes `@connections` POSTs wait,
/// slowing the pushing function down to the client's pace instead of buffering without bound.
pub const OUTBOUND_QUEUE: usize = 256;

/// How long a closing socket waits for the client's close frame before dropping the TCP
/// connection (RFC 6455 closing handshake).
pub const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a graceful shutdown waits for connections to close and their `$disconnect`
/// invocations (and in-flight messages) to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
