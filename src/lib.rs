//! wsexec: an AWS Lambda function serving an API Gateway WebSocket API for real-time agent chat.
//!
//! Clients connect, send a request, and receive the run's lifecycle as a stream of events; every
//! run's state is persisted through a 9-state machine with conditional writes, every storage
//! failure is classified, and every user sees only their own runs.
//!
//! # Layout
//! Modules point one way: the leaves first, then `run`, `manager`, the commands and the sweep,
//! the routes, the handler, and last the binaries and the local tool.
//! - [`limits`]: every size, length and time limit, each with its reason.
//! - [`time`]: wall-clock helpers.
//! - [`classified`]: the one shape of a classified failure (storage, push, dispatch).
//! - [`sigv4`]: SigV4 signing, shared by the `@connections` posts and the local Invoke check.
//! - [`state`]: the 9-state run machine and its transition table.
//! - [`context`]: the validated per-user execution context and the one id rule.
//! - [`identity`]: who is behind a connection, and the warm identity cache.
//! - [`auth`]: identity on `$connect` (authorizer, JWT).
//! - [`protocol`]: inbound frames, typed outbound events, client-facing errors.
//! - [`store`]: the `Store` trait, its records, error classification and backends.
//! - [`notify`]: pushing events to connections (`@connections` API, in-memory).
//! - [`dispatch`]: handing a run to an asynchronous invocation of the function (`Invoke`).
//! - [`tools`]: the `Tool` trait and the built-in tools (`calculator`, `current_time`).
//! - [`telemetry`]: structured logs and CloudWatch metrics.
//! - [`tls`]: the HTTPS client of every SDK client, with compiled-in AWS roots.
//! - [`run`]: the run driver, the `Executor` trait and the built-in `echo` agent.
//! - [`mcp`]: MCP servers (`MCP_SERVERS`) as tool sources, through the official SDK (`rmcp`).
//! - [`llm`]: the `llm` agent: streaming chat models (OpenAI-compatible, Bedrock) with tools.
//! - [`config`]: settings read from the environment.
//! - [`quota`]: which usage limits apply to an owner (environment, tenant and user overrides).
//! - [`manager`]: the lazily built, per-instance shared state.
//! - [`cmd`]: one file per inbound command (start, cancel, get, list, resume, usage), one error
//!   path.
//! - [`sweep`]: marking runs whose process died as `dead` / `timeout`.
//! - [`worker`]: the asynchronous invocation that claims and drives one run.
//! - [`event`]: decoding Lambda events and encoding responses.
//! - [`routes`]: one per invocation kind: `$connect`, `$default`, `$disconnect`, the worker, the
//!   sweep.
//! - [`handler`]: the Lambda entry point: decode, dispatch to the route, log and count.
//! - [`serve`]: one invocation at a time, or many at once (Lambda Managed Instances).

pub mod auth;
pub mod classified;
pub mod cmd;
pub mod config;
pub mod context;
pub mod dispatch;
pub mod event;
pub mod handler;
pub mod identity;
pub mod limits;
pub mod llm;
pub mod manager;
pub mod mcp;
pub mod notify;
pub mod protocol;
pub mod quota;
pub mod routes;
pub mod run;
pub mod serve;
pub mod sigv4;
pub mod state;
pub mod store;
pub mod sweep;
pub mod telemetry;
pub mod time;
pub mod tls;
pub mod tools;
pub mod worker;

#[cfg(feature = "local")]
pub mod local;

pub use config::Config;
pub use handler::handle;
pub use manager::Manager;
pub use state::ExecutionState;
