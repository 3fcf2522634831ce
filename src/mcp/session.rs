//! One configured MCP server: its session (kept per instance, re-initialised when the server
//! expires it), tool discovery with pagination, and calls with their time limit.

use super::config::ServerConfig;
use super::fault::{Fault, FaultKind};
use super::http::McpHttp;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, Implementation, JsonObject,
    Tool as RemoteTool,
};
use rmcp::service::{NotificationContext, RoleClient, RunningService, ServiceExt};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, model::ClientConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;

/// How long closing a session (its `DELETE`) may take at shutdown: the process is going away,
/// and a server that does not answer quickly expires the session itself.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// `tools/list` pages followed per discovery: a server paging forever is cut off here (and by
/// the discovery time limit) rather than growing the tool list without end.
pub const MAX_LIST_PAGES: usize = 32;

/// Receives what the server pushes on its session: only `tools/list_changed` matters.
struct Handler {
    stale: Arc<AtomicBool>,
}

impl ClientHandler for Handler {
    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.stale.store(true, Ordering::Release);
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("wsexec", env!("CARGO_PKG_VERSION")),
        )
    }
}

type Service = RunningService<RoleClient, Handler>;

/// A live session.
pub struct Session {
    service: Service,
}

/// A configured server and its session.
pub struct Server {
    /// The entry from `MCP_SERVERS`.
    pub config: ServerConfig,
    http: McpHttp,
    session: Mutex<Option<Arc<Session>>>,
    /// Set by `notifications/tools/list_changed`: the next run lists the tools again.
    stale: Arc<AtomicBool>,
}

impl Server {
    /// The server; nothing is contacted until a session is needed.
    pub fn new(config: ServerConfig, http: McpHttp) -> Server {
        Server {
            config,
            http,
            session: Mutex::new(None),
            stale: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether the server said its tool list changed since it was last read (and clears it).
    pub fn take_stale(&self) -> bool {
        self.stale.swap(false, Ordering::AcqRel)
    }

    /// The live session, initialising one if there is none (one `initialize` at a time).
    async fn session(&self) -> Result<Arc<Session>, Fault> {
        let mut slot = self.session.lock().await;
        if let Some(s) = slot.as_ref()
            && !s.service.is_closed()
            && !s.service.is_transport_closed()
        {
            return Ok(s.clone());
        }
        let mut config = StreamableHttpClientTransportConfig::with_uri(self.config.url.as_str());
        // A session the server expired is re-initialised here, not by the transport: only an
        // idempotent call may be sent twice (the transport would repeat any call).
        config.reinit_on_expired_session = false;
        let transport = StreamableHttpClientTransport::with_client(self.http.clone(), config);
        let handler = Handler {
            stale: self.stale.clone(),
        };
        let service = handler
            .serve(transport)
            .await
            .map_err(|e| Fault::from_init(&e))?;
        let session = Arc::new(Session { service });
        *slot = Some(session.clone());
        Ok(session)
    }

    /// Drops `old` if it is still the current session, so the next request initialises anew.
    async fn forget(&self, old: &Arc<Session>) {
        let mut slot = self.session.lock().await;
        if slot.as_ref().is_some_and(|s| Arc::ptr_eq(s, old)) {
            *slot = None;
        }
    }

    /// Every tool the server lists (all pages, at most [`MAX_LIST_PAGES`]).
    pub async fn list_tools(&self) -> Result<Vec<RemoteTool>, Fault> {
        let session = self.session().await?;
        let mut tools = Vec::new();
        let mut cursor = None;
        for _ in 0..MAX_LIST_PAGES {
            let params =
                cursor.map(|c| rmcp::model::PaginatedRequestParams::default().with_cursor(Some(c)));
            let page = match session.service.list_tools(params).await {
                Ok(page) => page,
                Err(e) => {
                    let fault = Fault::from_service(&e);
                    self.forget_on(&session, fault).await;
                    return Err(fault);
                }
            };
            tools.extend(page.tools);
            match page.next_cursor {
                Some(next) if !next.is_empty() => cursor = Some(next),
                _ => return Ok(tools),
            }
        }
        Ok(tools)
    }

    /// A session whose connection broke, or that the server expired, is dropped; any other
    /// fault (a status, a bad answer, a slow one) leaves it for the next call.
    async fn forget_on(&self, session: &Arc<Session>, fault: Fault) {
        if matches!(
            fault.kind,
            FaultKind::Refused | FaultKind::Connection | FaultKind::SessionExpired
        ) {
            self.forget(session).await;
        }
    }

    /// Calls `tool` within the entry's time limit. A session the server expired is
    /// re-initialised once; the call is sent again only when `redo_safe` (the tool is
    /// read-only or idempotent), since the server may have run it already.
    pub async fn call(
        &self,
        tool: &str,
        arguments: JsonObject,
        redo_safe: bool,
    ) -> Result<CallToolResult, Fault> {
        let limit = self.config.timeout;
        let attempt = || async {
            let session = self.session().await?;
            let params =
                CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments.clone());
            match session.service.call_tool(params).await {
                Ok(result) => Ok(result),
                Err(e) => {
                    let fault = Fault::from_service(&e);
                    self.forget_on(&session, fault).await;
                    Err(fault)
                }
            }
        };
        let timed = |f| async move {
            tokio::time::timeout(limit, f)
                .await
                .unwrap_or(Err(Fault::of(FaultKind::Timeout)))
        };
        match timed(attempt()).await {
            Err(f) if f.kind == FaultKind::SessionExpired => {
                tracing::info!(server = %self.config.name, tool, redo_safe, "mcp session expired; re-initialising");
                if redo_safe {
                    timed(attempt()).await
                } else {
                    // A fresh session for the next call; this one is not repeated.
                    let _ = tokio::time::timeout(limit, self.session()).await;
                    Err(f)
                }
            }
            other => other,
        }
    }

    /// Ends the session (the transport sends `DELETE` with its id), within [`CLOSE_TIMEOUT`].
    pub async fn close(&self) {
        let taken = self.session.lock().await.take();
        let Some(session) = taken else { return };
        // A call still holding it ends it with that call (the handle is dropped then).
        if let Ok(mut s) = Arc::try_unwrap(session) {
            let _ = s.service.close_with_timeout(CLOSE_TIMEOUT).await;
        }
    }
}
