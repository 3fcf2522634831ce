//! One route per kind of invocation, one file each: the three WebSocket routes (dispatched on
//! the event's `eventType`), the worker invocation and the scheduled sweep; and what an
//! invocation returns to Lambda.

pub mod connect;
pub mod disconnect;
pub mod message;
pub mod sweep;
pub mod worker;

use crate::event::{EventError, LambdaContext, WsResponse};
use crate::manager::{InitError, Manager};
use crate::protocol::{ErrorCode, EventType, Reply};
use crate::run::Origin;
use crate::store::StorageError;
use crate::sweep::SweepReport;
use crate::telemetry::InvocationLog;
use crate::worker::WorkerOutcome;
use lambda_http::aws_lambda_events::apigw::{
    ApiGatewayWebsocketProxyRequest, ApiGatewayWebsocketProxyRequestContext,
};
use serde::Serialize;
use std::borrow::Cow;

/// What an invocation returns to Lambda.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Output {
    /// A WebSocket route's response.
    WebSocket(WsResponse),
    /// The sweep's report.
    Sweep(SweepReport),
    /// What a worker invocation did.
    Worker(WorkerReport),
}

/// A worker invocation's response: the run it was for and what it did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkerReport {
    pub run_id: String,
    pub outcome: WorkerOutcome,
}

/// A failed invocation. `error_type` says whether Lambda's caller should retry
/// (`Retryable.*` / `NonRetryable.*`).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct HandlerError {
    pub error_type: &'static str,
    pub message: String,
}

impl HandlerError {
    /// An event this function does not handle.
    pub fn invalid_event(e: &EventError) -> Self {
        HandlerError {
            error_type: "NonRetryable.InvalidEvent",
            message: e.to_string(),
        }
    }

    /// Storage failed before the invocation could do its work: `Retryable.Storage` when the
    /// failure's kind may pass (throttling, a refused connection, a 5xx), else
    /// `NonRetryable.Storage`.
    pub fn storage(e: &StorageError) -> Self {
        HandlerError {
            error_type: if e.is_retryable() {
                "Retryable.Storage"
            } else {
                "NonRetryable.Storage"
            },
            message: e.to_string(),
        }
    }

    /// The manager could not be built; the next invocation tries again.
    pub fn initialisation(e: &InitError) -> Self {
        HandlerError {
            error_type: "Retryable.Initialisation",
            message: e.to_string(),
        }
    }
}

impl From<HandlerError> for lambda_http::lambda_runtime::Diagnostic {
    fn from(e: HandlerError) -> Self {
        lambda_http::lambda_runtime::Diagnostic {
            error_type: e.error_type.to_owned(),
            error_message: e.message,
        }
    }
}

/// Routes a WebSocket event to `$connect`, `$default` or `$disconnect`, and notes what the
/// route did in the invocation's log line.
pub async fn websocket<'a>(
    mgr: Result<&Manager, &InitError>,
    req: &'a ApiGatewayWebsocketProxyRequest,
    lambda: LambdaContext<'a>,
    log: &mut InvocationLog<'a>,
) -> Result<Output, HandlerError> {
    let ctx = &req.request_context;
    let Some(route) = Route::of(ctx) else {
        return Err(HandlerError::invalid_event(&EventError::Unsupported));
    };
    let endpoint_override = mgr
        .ok()
        .and_then(|m| m.config().connections_endpoint.as_deref());
    let Some(inv) = Invocation::of(ctx, endpoint_override, lambda) else {
        return Err(HandlerError {
            error_type: "NonRetryable.InvalidEvent",
            message: "WebSocket event has no connectionId".into(),
        });
    };
    let handled = match mgr {
        Err(e) => init_failure(route, e),
        Ok(mgr) => match route {
            Route::Connect => connect::handle(mgr, req, &inv).await,
            Route::Default => {
                message::handle(mgr, req.body.as_deref(), req.is_base64_encoded, &inv).await
            }
            Route::Disconnect => disconnect::handle(mgr, &inv).await,
        },
    };
    log.route = Some(route.key());
    log.apigw_request_id = inv.aws_request_id;
    log.connection_id = Some(inv.connection_id);
    log.user_id = handled.user_id.map(Cow::Owned);
    log.status = Some(handled.response.status_code);
    log.reply = handled.reply.map(|(kind, _)| kind.as_str());
    log.error_code = handled
        .error_code
        .or_else(|| handled.reply.and_then(|(_, code)| code).map(|c| c.as_str()));
    Ok(Output::WebSocket(handled.response))
}

/// The reply when the manager could not be built: never internals, and retried next time.
fn init_failure(route: Route, e: &InitError) -> Handled {
    tracing::error!(error = %e, "initialisation failed");
    let response = match route {
        Route::Connect => {
            WsResponse::status(500).with_body(r#"{"message":"internal error"}"#.into())
        }
        Route::Disconnect => WsResponse::status(200),
        Route::Default => return Handled::from(Some(Reply::error(None, &e.client_error()))),
    };
    Handled {
        error_code: Some("init_failed"),
        ..Handled::from(response)
    }
}

/// The route keys the function serves (the template must declare each).
pub const ROUTE_KEYS: [&str; 3] = ["$connect", "$disconnect", "$default"];

/// Which route an event is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Connect,
    Default,
    Disconnect,
}

impl Route {
    /// The route of an event: its `eventType`, or else its `routeKey`. Custom route keys are
    /// messages too (the route selection expression may pick one that is not declared here).
    pub fn of(ctx: &ApiGatewayWebsocketProxyRequestContext) -> Option<Route> {
        match (ctx.event_type.as_deref(), ctx.route_key.as_deref()) {
            (Some("CONNECT"), _) | (None, Some("$connect")) => Some(Route::Connect),
            (Some("DISCONNECT"), _) | (None, Some("$disconnect")) => Some(Route::Disconnect),
            (Some("MESSAGE"), _) | (None, Some(_)) => Some(Route::Default),
            _ => None,
        }
    }

    /// The route's key, for logs.
    pub fn key(self) -> &'static str {
        match self {
            Route::Connect => "$connect",
            Route::Default => "$default",
            Route::Disconnect => "$disconnect",
        }
    }
}

/// A route's response, and what the route learned for the invocation's log line.
#[derive(Clone, Debug)]
pub struct Handled {
    pub response: WsResponse,
    /// The caller, once the route established it (absent for `ping` and refused connects).
    pub user_id: Option<String>,
    /// Why `$connect` refused or failed (`$default` replies carry their own code).
    pub error_code: Option<&'static str>,
    /// The `type` and error code of the direct reply (`$default`), from the reply's value.
    pub reply: Option<(EventType, Option<ErrorCode>)>,
}

impl Handled {
    /// The same outcome, attributed to `user_id`.
    pub fn for_user(self, user_id: String) -> Self {
        Handled {
            user_id: Some(user_id),
            ..self
        }
    }
}

impl From<WsResponse> for Handled {
    fn from(response: WsResponse) -> Self {
        Handled {
            response,
            user_id: None,
            error_code: None,
            reply: None,
        }
    }
}

impl From<Option<Reply>> for Handled {
    /// A `$default` response: the reply, if any, as the route response body.
    fn from(reply: Option<Reply>) -> Self {
        match reply {
            None => Handled::from(WsResponse::status(200)),
            Some(r) => Handled {
                reply: Some((r.kind, r.code)),
                ..Handled::from(WsResponse::status(200).with_body(r.frame))
            },
        }
    }
}

/// The parts of an invocation every route needs.
#[derive(Clone, Debug)]
pub struct Invocation<'a> {
    pub connection_id: &'a str,
    /// The `@connections` endpoint of this API.
    pub endpoint: String,
    /// API Gateway's id of a MESSAGE (the idempotency key when the client sends none).
    pub message_id: Option<&'a str>,
    /// API Gateway's request id.
    pub aws_request_id: Option<&'a str>,
    /// Lambda's deadline, epoch milliseconds.
    pub deadline_ms: Option<u64>,
    /// The function ARN this invocation was invoked by (worker invocations reuse it).
    pub function_arn: Option<&'a str>,
}

impl<'a> Invocation<'a> {
    /// The connection and deadline a run started by this invocation serves.
    pub fn origin(&self) -> Origin<'_> {
        Origin {
            connection_id: self.connection_id,
            endpoint: &self.endpoint,
            deadline_ms: self.deadline_ms,
            leave: None,
        }
    }

    /// The invocation of an event; `None` when it has no connection id.
    pub fn of(
        ctx: &'a ApiGatewayWebsocketProxyRequestContext,
        endpoint_override: Option<&str>,
        lambda: crate::event::LambdaContext<'a>,
    ) -> Option<Invocation<'a>> {
        let endpoint = match endpoint_override {
            Some(e) => e.to_owned(),
            None => format!(
                "https://{}/{}",
                ctx.domain_name.as_deref().unwrap_or("localhost"),
                ctx.stage.as_deref().unwrap_or("")
            ),
        };
        Some(Invocation {
            connection_id: ctx.connection_id.as_deref().filter(|c| !c.is_empty())?,
            endpoint,
            message_id: ctx.message_id.as_deref(),
            aws_request_id: ctx.request_id.as_deref(),
            deadline_ms: lambda.deadline_ms,
            function_arn: lambda.function_arn,
        })
    }
}
