//! Decoding Lambda events (WebSocket or scheduled sweep) and encoding WebSocket responses.

use lambda_http::aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// What the Lambda runtime says about an invocation, besides its event.
#[derive(Clone, Copy, Debug, Default)]
pub struct LambdaContext<'a> {
    /// Lambda's request id (`aws_request_id`), for the invocation's log line.
    pub request_id: Option<&'a str>,
    /// Lambda's deadline, epoch milliseconds.
    pub deadline_ms: Option<u64>,
    /// The ARN this invocation was invoked by (with its version or alias, if any): what a
    /// worker invocation of the same function is started with.
    pub function_arn: Option<&'a str>,
}

/// An event this function accepts.
#[derive(Debug)]
pub enum Incoming {
    /// An API Gateway WebSocket event (`CONNECT`, `MESSAGE`, `DISCONNECT`).
    WebSocket(Box<ApiGatewayWebsocketProxyRequest>),
    /// An EventBridge scheduled event: run the sweep.
    Scheduled,
    /// The function's own asynchronous invocation: drive one run (`RUN_DISPATCH=async`).
    Worker(crate::dispatch::WorkerEvent),
}

/// An event the function cannot handle; fails the invocation (never a client's mistake: API
/// Gateway only sends well-formed events).
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error(
        "unsupported event: expected an API Gateway WebSocket event or an EventBridge scheduled event"
    )]
    Unsupported,
    #[error("malformed API Gateway WebSocket event: {0}")]
    Malformed(#[source] serde_json::Error),
}

/// Just enough of an event to tell its kind, without building it.
#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(rename = "requestContext", borrow)]
    request_context: Option<ProbeContext<'a>>,
    #[serde(rename = "detail-type", borrow)]
    detail_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    source: Option<Cow<'a, str>>,
    wsexec_worker: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct ProbeContext<'a> {
    #[serde(rename = "eventType", borrow)]
    event_type: Option<Cow<'a, str>>,
    #[serde(rename = "connectionId", borrow)]
    connection_id: Option<Cow<'a, str>>,
}

/// Decodes a raw event. The probe pass skips over the event without allocating; only then is
/// the WebSocket event built, with `lambda_http`'s own type.
pub fn decode(raw: &str) -> Result<Incoming, EventError> {
    let probe: Probe<'_> = serde_json::from_str(raw).map_err(|_| EventError::Unsupported)?;
    if let Some(ctx) = &probe.request_context
        && ctx.connection_id.is_some()
        && matches!(
            ctx.event_type.as_deref(),
            Some("CONNECT" | "MESSAGE" | "DISCONNECT")
        )
    {
        return serde_json::from_str(raw)
            .map(|e| Incoming::WebSocket(Box::new(e)))
            .map_err(EventError::Malformed);
    }
    if probe.wsexec_worker.is_some() {
        return serde_json::from_str(raw)
            .map(Incoming::Worker)
            .map_err(EventError::Malformed);
    }
    if probe.detail_type.as_deref() == Some("Scheduled Event")
        && matches!(
            probe.source.as_deref(),
            Some("aws.events" | "aws.scheduler")
        )
    {
        return Ok(Incoming::Scheduled);
    }
    Err(EventError::Unsupported)
}

/// A WebSocket route's response (`statusCode`, `headers`, `body`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WsResponse {
    pub status_code: u16,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

impl WsResponse {
    /// A response with no body.
    pub fn status(status_code: u16) -> Self {
        WsResponse {
            status_code,
            headers: BTreeMap::new(),
            body: None,
        }
    }

    /// Sets the body.
    pub fn with_body(mut self, body: String) -> Self {
        self.body = Some(body);
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.insert(name.to_owned(), value.to_owned());
        self
    }
}
