//! MCP servers as tool sources for the `llm` agent: `MCP_SERVERS` names Streamable HTTP servers,
//! whose tools are discovered lazily per instance and offered as `{server}__{tool}`, through the
//! official Rust SDK (`rmcp`) on the project's own hyper/rustls client.
//!
//! Nothing here is built until an `llm` run asks for its tool list: the servers' clients, TLS
//! roots and sessions are made on first use, so `ping`, `$connect` and echo runs pay nothing.
//! Discovery asks every server at once within [`DISCOVERY_TIMEOUT`]; a server that fails is left
//! out of that run only (logged with its name and classified cause) and asked again by the next.
//! A server's list is kept for [`TOOLS_TTL`], or until it says `notifications/tools/list_changed`.

pub mod config;
pub mod fault;
pub mod http;
pub mod session;
pub mod tool;

pub use config::{McpConfigError, ServerConfig};
pub use fault::{Fault, FaultKind};
pub use tool::McpTool;

use crate::tools::Tool;
use once_cell::sync::OnceCell;
use session::Server;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// How long discovery (`initialize` + every `tools/list` page, all servers at once) may take
/// on a run: the model request waits for it, and a server slower than this at listing is not
/// going to answer calls in time either.
pub const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a server's tool list is reused by later runs of the instance: tool sets change
/// with deploys, not per request, and listing costs a round trip per page on every run.
pub const TOOLS_TTL: Duration = Duration::from_secs(300);

/// A server's tools as last listed.
struct Listed {
    at: Instant,
    tools: Vec<Arc<McpTool>>,
}

/// One server and its cached list.
struct Source {
    server: Arc<Server>,
    listed: Mutex<Option<Listed>>,
}

/// The configured servers of one instance, their sessions and tool lists.
pub struct McpTools {
    configs: Vec<ServerConfig>,
    sources: OnceCell<Vec<Source>>,
}

impl McpTools {
    /// The servers `configs` names; nothing is built or contacted yet.
    pub fn new(configs: Vec<ServerConfig>) -> McpTools {
        McpTools {
            configs,
            sources: OnceCell::new(),
        }
    }

    /// The configured servers.
    pub fn configs(&self) -> &[ServerConfig] {
        &self.configs
    }

    fn sources(&self) -> &[Source] {
        self.sources.get_or_init(|| {
            // System roots: MCP servers are the deployer's own hosts, not AWS endpoints.
            let tls = crate::tls::client_config(crate::tls::Roots::Native)
                .or_else(|_| crate::tls::client_config(crate::tls::Roots::Aws));
            self.configs
                .iter()
                .filter_map(|c| {
                    let http = tls
                        .as_ref()
                        .ok()
                        .and_then(|t| http::McpHttp::new(&c.url, &c.headers, t.clone()).ok());
                    let Some(http) = http else {
                        tracing::error!(server = %c.name, "mcp server client could not be built");
                        return None;
                    };
                    Some(Source {
                        server: Arc::new(Server::new(c.clone(), http)),
                        listed: Mutex::new(None),
                    })
                })
                .collect()
        })
    }

    /// Every tool the servers offer now, in configuration order: cached lists where fresh,
    /// the others listed concurrently within [`DISCOVERY_TIMEOUT`]. A name already taken (two
    /// tools that sanitise alike) is refused and logged.
    pub async fn tools(&self) -> Vec<Arc<McpTool>> {
        let lists =
            futures_util::future::join_all(self.sources().iter().map(|s| s.current())).await;
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for tool in lists.into_iter().flatten() {
            if seen.insert(tool.name().to_owned()) {
                out.push(tool);
            } else {
                tracing::warn!(
                    server = %tool.server_name(),
                    tool = %tool.remote_name(),
                    "mcp tool left out: its offered name collides with another tool"
                );
            }
        }
        out
    }

    /// Ends every session (`DELETE`), for a graceful shutdown.
    pub async fn shutdown(&self) {
        let Some(sources) = self.sources.get() else {
            return;
        };
        futures_util::future::join_all(sources.iter().map(|s| s.server.close())).await;
    }
}

impl Source {
    /// The server's tools: the cached list while fresh, else a new listing (an empty list,
    /// logged, when the server fails; nothing is cached then, so the next run asks again).
    async fn current(&self) -> Vec<Arc<McpTool>> {
        let mut listed = self.listed.lock().await;
        let stale = self.server.take_stale();
        if let Some(l) = listed.as_ref()
            && !stale
            && l.at.elapsed() < TOOLS_TTL
        {
            return l.tools.clone();
        }
        let name = &self.server.config.name;
        let started = Instant::now();
        let remote = match tokio::time::timeout(DISCOVERY_TIMEOUT, self.server.list_tools()).await {
            Ok(Ok(tools)) => tools,
            Ok(Err(fault)) => {
                tracing::warn!(server = %name, code = fault.kind.code(), status = fault.status,
                    rpc_code = fault.rpc_code, "mcp server left out of this run");
                *listed = None;
                return Vec::new();
            }
            Err(_) => {
                tracing::warn!(server = %name, code = FaultKind::Timeout.code(),
                    "mcp server left out of this run");
                *listed = None;
                return Vec::new();
            }
        };
        let allow = self.server.config.tools.as_ref();
        let mut seen = HashSet::new();
        let mut tools = Vec::new();
        for r in &remote {
            if allow.is_some_and(|a| !a.iter().any(|n| *n == r.name)) {
                continue;
            }
            match McpTool::new(self.server.clone(), r) {
                Ok(t) if seen.insert(t.name().to_owned()) => tools.push(Arc::new(t)),
                Ok(t) => tracing::warn!(server = %name, tool = %t.remote_name(),
                    "mcp tool left out: its offered name collides with another tool"),
                Err(refusal) => tracing::warn!(server = %name, tool = %r.name,
                    reason = refusal.reason(), "mcp tool left out"),
            }
        }
        tracing::info!(
            server = %name,
            tools = tools.len(),
            listed = remote.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "mcp tools discovered"
        );
        *listed = Some(Listed {
            at: Instant::now(),
            tools: tools.clone(),
        });
        tools
    }
}
