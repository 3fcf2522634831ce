//! The manager: config, store, notifier, agents and the identity cache of one warm instance.
//!
//! Built lazily on first use (`once_cell`), unlike the runtime examples' eager clients: a
//! `ping` or a rejected `$connect` then pays for no SDK client, and the store itself is built
//! only when a route first needs it. A failed build is an error reply and is retried.

use crate::config::{Config, ConfigError};
use crate::limits::IDENTITY_CACHE_CAPACITY;
use crate::notify::Notifier;
use crate::notify::apigw::ApiGatewayNotifier;
use crate::run::Agents;
use crate::store::StorageError;
use crate::store::Store;
use crate::store::dynamo::{DynamoSettings, DynamoStore};
use once_cell::sync::OnceCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The identity behind a connection (it never changes during the connection's life).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user_id: String,
    pub tenant_id: Option<String>,
}

/// Why the manager or its store could not be built.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("store: {0}")]
    Store(#[from] StorageError),
}

/// Builds the store on first use.
pub type StoreFactory = Box<dyn Fn(&Config) -> Result<Arc<dyn Store>, InitError> + Send + Sync>;

/// Everything a warm instance shares between invocations.
pub struct Manager {
    config: Config,
    store: OnceCell<Arc<dyn Store>>,
    store_factory: StoreFactory,
    notifier: Arc<dyn Notifier>,
    identities: Mutex<HashMap<String, Identity>>,
    agents: Agents,
}

impl Manager {
    /// The instance's manager, built from the environment on first call. An error is not
    /// cached: the next call tries again.
    pub fn global() -> Result<&'static Manager, InitError> {
        static GLOBAL: OnceCell<Manager> = OnceCell::new();
        GLOBAL.get_or_try_init(Manager::from_env)
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
        Ok(Manager::with_store_factory(
            config,
            factory,
            Arc::new(ApiGatewayNotifier::from_env()),
        ))
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
        Manager {
            config,
            store: OnceCell::new(),
            store_factory: factory,
            notifier,
            identities: Mutex::new(HashMap::new()),
            agents: Agents::default(),
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

    /// The identity behind a connection: from the warm cache, else its stored record.
    pub async fn identity(&self, connection_id: &str) -> Result<Option<Identity>, InitError> {
        if let Some(hit) = self.lock_identities().get(connection_id) {
            return Ok(Some(hit.clone()));
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
        let mut ids = self.lock_identities();
        if ids.len() >= IDENTITY_CACHE_CAPACITY {
            ids.clear();
        }
        ids.insert(connection_id.to_owned(), identity);
    }

    /// Drops a connection's cached identity; returns it, if it was cached.
    pub fn forget(&self, connection_id: &str) -> Option<Identity> {
        self.lock_identities().remove(connection_id)
    }

    fn lock_identities(&self) -> std::sync::MutexGuard<'_, HashMap<String, Identity>> {
        self.identities.lock().unwrap_or_else(|p| p.into_inner())
    }
}
