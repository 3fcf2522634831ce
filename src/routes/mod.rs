//! The three WebSocket routes, dispatched on the event's `eventType`, one file each.

pub mod connect;
pub mod disconnect;
pub mod message;

use crate::event::WsResponse;
use crate::protocol::{ErrorCode, EventType, Reply};
use crate::run::Origin;
use lambda_http::aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequestContext;

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
