//! The registry of agents by name; built-ins are registered by default, users add their own.

use super::echo::Echo;
use super::executor::Executor;
use std::collections::HashMap;
use std::sync::Arc;

/// The agent a request gets when it names none and `DEFAULT_AGENT` is not set.
pub const DEFAULT_AGENT: &str = "echo";

/// Agents by name, and the one a request without `agent` gets.
#[derive(Clone)]
pub struct Agents {
    by_name: HashMap<String, Arc<dyn Executor>>,
    default: String,
}

impl Default for Agents {
    /// The built-in agents (`echo`), with `echo` as the default.
    fn default() -> Self {
        let mut a = Agents {
            by_name: HashMap::new(),
            default: DEFAULT_AGENT.to_owned(),
        };
        a.insert(super::echo::ECHO_AGENT, Arc::new(Echo));
        a
    }
}

impl Agents {
    /// Registers (or replaces) an agent.
    pub fn insert(&mut self, name: &str, agent: Arc<dyn Executor>) {
        self.by_name.insert(name.to_owned(), agent);
    }

    /// Names the agent a request without `agent` gets.
    pub fn set_default(&mut self, name: &str) {
        self.default = name.to_owned();
    }

    /// The agent a request without `agent` gets.
    pub fn default_name(&self) -> &str {
        &self.default
    }

    /// Every registered agent.
    pub fn all(&self) -> impl Iterator<Item = &Arc<dyn Executor>> {
        self.by_name.values()
    }

    /// The agent called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Executor>> {
        self.by_name.get(name)
    }
}
