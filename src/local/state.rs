//! What every connection and request of one server shares: the function's manager, ids, the
//! live connections, the limits, and the one way to invoke the function.

use super::LAMBDA_TIMEOUT;
use super::access::Access;
use super::ids::IdGen;
use super::registry::Registry;
use super::signature::InvokeKey;
use crate::event::WsResponse;
use crate::handler::{Output, handle};
use crate::manager::Manager;
use crate::time::now_ms;
use serde_json::Value;
use std::future::Future;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// One invocation of the handler: the event the emulator built, and what the handler returned.
#[derive(Clone, Debug)]
pub struct Invoked {
    pub event: Value,
    /// The route's response, or the failed invocation's error.
    pub response: Result<WsResponse, String>,
}

impl Invoked {
    /// The event's `requestContext.eventType` (`CONNECT`, `MESSAGE`, `DISCONNECT`).
    pub fn event_type(&self) -> &str {
        self.event["requestContext"]["eventType"]
            .as_str()
            .unwrap_or("")
    }

    /// The event's `requestContext.connectionId`.
    pub fn connection_id(&self) -> &str {
        self.event["requestContext"]["connectionId"]
            .as_str()
            .unwrap_or("")
    }
}

/// What every connection and request of one server shares.
pub struct Gateway {
    pub(crate) mgr: Manager,
    pub(crate) ids: IdGen,
    pub(crate) api_id: String,
    pub(crate) domain_name: String,
    pub(crate) port: u16,
    pub(crate) registry: Registry,
    /// Which hosts and origins may reach the gateway.
    pub(crate) access: Access,
    /// The credentials of the function's own Lambda client: the only caller `Invoke` takes.
    pub(crate) invoke_key: InvokeKey,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_connection_age: Duration,
    pub(crate) observer: Option<mpsc::UnboundedSender<Invoked>>,
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl Gateway {
    /// Runs one event through the function, as Lambda would: with its deadline and timeout.
    pub(crate) async fn invoke(&self, event: Value) -> Result<WsResponse, String> {
        let raw = event.to_string();
        let deadline = now_ms() + LAMBDA_TIMEOUT.as_millis() as u64;
        let run = handle(&raw, Ok(&self.mgr), Some(deadline));
        let response = match tokio::time::timeout(LAMBDA_TIMEOUT, run).await {
            Ok(Ok(Output::WebSocket(r))) => Ok(r),
            Ok(Ok(Output::Sweep(_) | Output::Worker(_))) => {
                Err("the handler answered a WebSocket event with a sweep report".into())
            }
            Ok(Err(e)) => Err(format!("{}: {}", e.error_type, e.message)),
            Err(_) => Err(format!(
                "Task timed out after {:.2} seconds",
                LAMBDA_TIMEOUT.as_secs_f64()
            )),
        };
        if let Err(e) = &response {
            tracing::error!(error = %e, "invocation failed");
        }
        if let Some(obs) = &self.observer {
            let _ = obs.send(Invoked {
                event,
                response: response.clone(),
            });
        }
        response
    }

    /// Runs a raw event (a worker event from `Invoke`) through the function with `timeout`;
    /// returns the handler's output as JSON.
    pub(crate) async fn invoke_raw(&self, raw: &str, timeout: Duration) -> Result<String, String> {
        let deadline = now_ms() + timeout.as_millis() as u64;
        let run = handle(raw, Ok(&self.mgr), Some(deadline));
        match tokio::time::timeout(timeout, run).await {
            Ok(Ok(out)) => serde_json::to_string(&out).map_err(|e| e.to_string()),
            Ok(Err(e)) => Err(format!("{}: {}", e.error_type, e.message)),
            Err(_) => Err(format!(
                "Task timed out after {:.2} seconds",
                timeout.as_secs_f64()
            )),
        }
    }

    /// Resolves once shutdown has begun.
    pub(crate) fn shutdown_signal(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.shutdown.clone();
        async move {
            let _ = rx.wait_for(|stopping| *stopping).await;
        }
    }
}
