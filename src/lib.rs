//! wsexec: an AWS Lambda function serving an API Gateway WebSocket API for real-time agent chat.
//!
//! Clients connect, send a request, and receive the run's lifecycle as a stream of events; every
//! run's state is persisted through a 9-state machine with conditional writes, every storage
//! failure is classified, and every user sees only their own runs.
//!
//! # Layout
//! - [`limits`]: every size, length and time limit, each with its reason.
//! - [`config`]: settings read from the environment.
//! - [`state`]: the 9-state run machine and its transition table.
//! - [`context`]: the validated per-user execution context.
//! - [`auth`]: identity on `$connect` (authorizer, JWT).
//! - [`protocol`]: inbound frames and outbound events.
//! - [`store`]: the `Store` trait, its records, error classification and backends.
//! - [`notify`]: pushing events to connections (`@connections` API, in-memory).
//! - [`run`]: the run driver, the `Executor` trait and the built-in `echo` agent.
//! - [`llm`]: the `llm` agent: streaming chat models (OpenAI-compatible, Bedrock) with tools.
//! - [`tools`]: the `Tool` trait and the built-in tools (`calculator`, `current_time`).
//! - [`routes`]: `$connect`, `$default`, `$disconnect` handlers.
//! - [`sweep`]: marking runs whose process died as `dead` / `timeout`.
//! - [`event`]: decoding Lambda events and encoding responses.
//! - [`manager`]: the lazily built, per-instance shared state.
//! - [`handler`]: the Lambda entry point tying it all together.
//! - [`telemetry`]: structured logs and CloudWatch metrics.
//! - [`tls`]: the HTTPS client of every SDK client, with compiled-in AWS roots.
//! - [`time`]: wall-clock helpers.

pub mod auth;
pub mod config;
pub mod context;
pub mod event;
pub mod handler;
pub mod limits;
pub mod llm;
pub mod manager;
pub mod notify;
pub mod protocol;
pub mod routes;
pub mod run;
pub mod state;
pub mod store;
pub mod sweep;
pub mod telemetry;
pub mod time;
pub mod tls;
pub mod tools;

#[cfg(feature = "local")]
pub mod local;

pub use config::Config;
pub use handler::handle;
pub use manager::Manager;
pub use state::ExecutionState;
