//! Agent runs: the driver that persists and streams a run, the `Executor` trait, and agents.

pub mod channel;
pub mod driver;
pub mod echo;
pub mod executor;
pub mod view;

pub use driver::{cancel_run, start_run};
pub use executor::{AgentFailure, Agents, Executor, RunInput, RunSink};
