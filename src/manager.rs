//! The manager: config, store, notifier, agents and the identity cache of one warm instance.
//!
//! Built lazily on first use (`once_cell`), unlike the runtime examples' eager clients: a
//! `ping` or a rejected `$connect` then pays for no SDK client, and the store itself is built
//! only when a route first needs it. A failed build is an error reply and is retried.

use crate::config::{Config, ConfigError};
use crate::dispatch::Invoker;
use crate::dispatch::lambda::LambdaInvoker;
pub use crate::identity::Identity;
use crate::identity::IdentityCache;
use crate::llm::executor::LLM_AGENT;
use crate::llm::{LlmAgent, LlmConfigError};
use crate::notify::Notifier;
use crate::notify::apigw::ApiGatewayNotifier;
use crate::protocol::{ClientError, ErrorCode};
use crate::quota::{Applied, OverridesCache};
use crate::run::{Agents, Executor, RunDeps};
use crate::store::Owner;
use crate::store::StorageError;
use crate::store::Store;
use crate::store::dynamo::{DynamoSettings, DynamoStore};
use crate::time::{Clock, SystemClock};
use once_cell::sync::OnceCell;
use std::sync::Arc;

/// Why the manager or its store could not be built.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("store: {0}")]
    Store(#[from] StorageError),
}

impl InitError {
    /// What a client is told about a failed initialisation.
    pub fn client_error(&self) -> ClientError {
        match self {
            InitError::Store(s) => ClientError::storage(s),
            InitError::Config(_) => {
                ClientError::new(ErrorCode::Internal, "service is misconfigured")
            }
        }
    }
}

/// Builds the store on first use.
pub type StoreFactory = Box<dyn Fn(&Config) -> Result<Arc<dyn Store>, InitError> + Send + Sync>;

/// Everything a warm instance shares between invocations.
pub struct Manager {
    config: Config,
    store: OnceCell<Arc<dyn Store>>,
    store_factory: StoreFactory,
    notifier: Arc<dyn Notifier>,
    invoker: Arc<dyn Invoker>,
    /// The function a continuation invokes: Lambda's name for it, else the local tool's.
    function: String,
    identities: IdentityCache,
    live: crate::run::live::LiveRuns,
    attached: crate::run::attached::Attachments,
    agents: Agents,
    /// Where the calendar of daily usage comes from (the system clock unless a test injects
    /// its own).
    clock: Arc<dyn Clock>,
    /// Owners' limit overrides, read at most once a minute each.
    overrides: OverridesCache,
}

static GLOBAL: OnceCell<Manager> = OnceCell::new();

impl Manager {
    /// The instance's manager, built from the environment on first call. An error is not
    /// cached: the next call tries again.
    pub fn global() -> Result<&'static Manager, InitError> {
        Manager::global_with(Manager::from_env)
    }

    /// The instance's manager, built by `init` on first call (a binary of your own that adds
    /// agents: `Manager::global_with(|| Ok(Manager::from_env()?.with_agent("mine", agent)))`).
    pub fn global_with(
        init: impl FnOnce() -> Result<Manager, InitError>,
    ) -> Result<&'static Manager, InitError> {
        GLOBAL.get_or_try_init(init)
    }

    /// The production manager: DynamoDB store (built on first use) and `@connections` pushes.
    pub fn from_env() -> Result<Manager, InitError> {
        let config = Config::from_env()?;
        config.require_table()?;
        let factory: StoreFactory = Box::new(|cfg: &Config| {
            let table = cfg.require_table()?;
            let store = DynamoStore::from_env(table, DynamoSettings::default())?;
            Ok(Arc::new(store) as Arc<dyn Store>)
        });
        let mgr =
            Manager::with_store_factory(config, factory, Arc::new(ApiGatewayNotifier::from_env()))
                .with_env_agents(|k| std::env::var(k).ok())?;
        Ok(mgr)
    }

    /// The same manager with the agents the settings configure: `llm` when `LLM_PROVIDER` is
    /// set (then also the default, unless `DEFAULT_AGENT` names another). Checks that the
    /// default agent is registered. Reads settings only; no client is built.
    pub fn with_env_agents(
        self,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Manager, ConfigError> {
        let llm = LlmAgent::from_lookup(get).map_err(|e| match e {
            LlmConfigError::Missing(var) => ConfigError::Missing { var },
            LlmConfigError::Invalid { name, .. } => ConfigError::Invalid {
                var: name,
                reason: e.to_string(),
            },
            LlmConfigError::Mcp(_) => ConfigError::Invalid {
                var: crate::mcp::config::MCP_SERVERS_VAR,
                reason: e.to_string(),
            },
        })?;
        let mut mgr = self;
        if let Some(agent) = llm {
            mgr = mgr.with_agent(LLM_AGENT, Arc::new(agent));
            if mgr.config.default_agent.is_none() {
                mgr.agents.set_default(LLM_AGENT);
            }
        }
        mgr.check_default_agent()?;
        Ok(mgr)
    }

    /// A manager over an existing store.
    pub fn new(config: Config, store: Arc<dyn Store>, notifier: Arc<dyn Notifier>) -> Manager {
        let m = Manager::with_store_factory(
            config,
            Box::new(|_: &Config| Err(InitError::Config(ConfigError::Missing { var: "store" }))),
            notifier,
        );
        let _ = m.store.set(store);
        m
    }

    /// A manager whose store is built by `factory` on first use.
    pub fn with_store_factory(
        config: Config,
        factory: StoreFactory,
        notifier: Arc<dyn Notifier>,
    ) -> Manager {
        let mut agents = Agents::default();
        if let Some(name) = &config.default_agent {
            agents.set_default(name);
        }
        Manager {
            config,
            store: OnceCell::new(),
            store_factory: factory,
            notifier,
            // Reads the environment only; its client is built on the first dispatch.
            invoker: Arc::new(LambdaInvoker::from_env()),
            function: std::env::var("AWS_LAMBDA_FUNCTION_NAME")
                .unwrap_or_else(|_| crate::dispatch::LOCAL_FUNCTION.to_owned()),
            identities: IdentityCache::default(),
            live: Default::default(),
            attached: Default::default(),
            agents,
            clock: Arc::new(SystemClock),
            overrides: OverridesCache::default(),
        }
    }

    /// The same manager reading the calendar of daily usage from `clock` (tests move it to
    /// the next UTC day).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Manager {
        self.clock = clock;
        self
    }

    /// The clock of daily usage.
    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// The usage limits that apply to `owner` (their overrides cached a minute).
    pub async fn applied_limits(&self, owner: Owner<'_>) -> Result<Applied, InitError> {
        let store = self.store()?;
        Ok(self.overrides.applied(&self.config, store, owner).await?)
    }

    /// Lets every agent release what it holds outside the process (MCP sessions), on a
    /// graceful shutdown.
    pub async fn shut_down_agents(&self) {
        futures_util::future::join_all(self.agents.all().map(|a| a.shutdown())).await;
    }

    /// The same manager dispatching async runs through `invoker`.
    pub fn with_invoker(mut self, invoker: Arc<dyn Invoker>) -> Manager {
        self.invoker = invoker;
        self
    }

    /// What starts worker invocations (`RUN_DISPATCH=async`).
    pub fn invoker(&self) -> &dyn Invoker {
        self.invoker.as_ref()
    }

    /// The same manager with a process-wide budget of `bytes` of answer text
    /// (default [`crate::limits::PROCESS_TEXT_BUDGET_BYTES`]).
    pub fn with_text_budget(mut self, bytes: usize) -> Manager {
        self.live = crate::run::live::LiveRuns::with_text_budget(
            crate::run::budget::TextBudget::new(bytes),
        );
        self
    }

    /// The same manager with `agent` registered as `name` (replacing a built-in of that name).
    pub fn with_agent(mut self, name: &str, agent: Arc<dyn Executor>) -> Manager {
        self.agents.insert(name, agent);
        self
    }

    /// `DEFAULT_AGENT` must name a registered agent.
    fn check_default_agent(&self) -> Result<(), ConfigError> {
        let name = self.agents.default_name();
        match self.agents.get(name) {
            Some(_) => Ok(()),
            None => Err(ConfigError::Invalid {
                var: "DEFAULT_AGENT",
                reason: format!("no agent is registered as {name:?}"),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The store, built on first call.
    pub fn store(&self) -> Result<&dyn Store, InitError> {
        self.store
            .get_or_try_init(|| (self.store_factory)(&self.config))
            .map(|s| s.as_ref())
    }

    /// Whether the store has been built (a `ping` must leave it unbuilt).
    pub fn store_built(&self) -> bool {
        self.store.get().is_some()
    }

    /// The notifier.
    pub fn notifier(&self) -> &dyn Notifier {
        self.notifier.as_ref()
    }

    /// The registered agents.
    pub fn agents(&self) -> &Agents {
        &self.agents
    }

    /// The registered agents, to add or replace one.
    pub fn agents_mut(&mut self) -> &mut Agents {
        &mut self.agents
    }

    /// What runs need from this instance (builds the store on first call).
    pub fn run_deps(&self) -> Result<RunDeps<'_>, InitError> {
        Ok(RunDeps {
            store: self.store()?,
            notifier: self.notifier(),
            agents: &self.agents,
            identities: &self.identities,
            live: &self.live,
            attached: &self.attached,
            limits: self.config.run_limits(),
            // Runs continue in a new worker only where workers drive them.
            relay: self
                .config
                .dispatch
                .continues()
                .then(|| crate::dispatch::Relay {
                    invoker: self.invoker.as_ref(),
                    function: &self.function,
                }),
        })
    }

    /// The runs this process is driving (a cancel stops a local driver at once).
    pub fn live_runs(&self) -> &crate::run::live::LiveRuns {
        &self.live
    }

    /// The identity behind a connection: from the warm cache, else its stored record.
    pub async fn identity(&self, connection_id: &str) -> Result<Option<Identity>, InitError> {
        if let Some(hit) = self.identities.get(connection_id) {
            return Ok(Some(hit));
        }
        let rec = self.store()?.get_connection(connection_id).await?;
        Ok(rec.map(|c| {
            let id = Identity {
                user_id: c.user_id,
                tenant_id: c.tenant_id,
            };
            self.remember(connection_id, id.clone());
            id
        }))
    }

    /// Caches a connection's identity.
    pub fn remember(&self, connection_id: &str, identity: Identity) {
        self.identities.remember(connection_id, identity);
    }

    /// Drops a connection's cached identity; returns it, if it was cached.
    pub fn forget(&self, connection_id: &str) -> Option<Identity> {
        self.identities.forget(connection_id)
    }
}
