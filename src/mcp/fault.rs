//! What went wrong talking to an MCP server, classified from the transport variant first and the
//! protocol second (as the storage classifier does), so every fault is a named kind in the log
//! and a short, fixed message for the model.

use super::http::HttpFault;
use rmcp::ServiceError;
use rmcp::transport::streamable_http_client::StreamableHttpError;

/// The class of an MCP fault: `code()` is what logs and the model see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultKind {
    /// Nothing listens at the configured address.
    Refused,
    /// The connection broke (reset, closed mid-response, TLS failure).
    Connection,
    /// No answer within the call's (or discovery's) time limit.
    Timeout,
    /// The server answered HTTP 4xx.
    ClientStatus,
    /// The server answered HTTP 5xx.
    ServerStatus,
    /// The server answered with a JSON-RPC error.
    JsonRpc,
    /// The answer was not a well-formed MCP message.
    Malformed,
    /// The answer was larger than the limit.
    Oversized,
    /// The server no longer knows the session (HTTP 404 with `Mcp-Session-Id`).
    SessionExpired,
}

impl FaultKind {
    /// The stable code logged and shown to the model.
    pub fn code(self) -> &'static str {
        match self {
            FaultKind::Refused => "mcp_refused",
            FaultKind::Connection => "mcp_connection",
            FaultKind::Timeout => "mcp_timeout",
            FaultKind::ClientStatus => "mcp_http_4xx",
            FaultKind::ServerStatus => "mcp_http_5xx",
            FaultKind::JsonRpc => "mcp_jsonrpc_error",
            FaultKind::Malformed => "mcp_malformed",
            FaultKind::Oversized => "mcp_oversized",
            FaultKind::SessionExpired => "mcp_session_expired",
        }
    }

    /// What the model is told (fixed text: nothing the server sent is echoed as a fault).
    pub fn message(self) -> &'static str {
        match self {
            FaultKind::Refused => "the tool's server refused the connection",
            FaultKind::Connection => "the connection to the tool's server broke",
            FaultKind::Timeout => "the tool's server did not answer in time",
            FaultKind::ClientStatus => "the tool's server refused the request",
            FaultKind::ServerStatus => "the tool's server failed",
            FaultKind::JsonRpc => "the tool's server answered with an error",
            FaultKind::Malformed => "the tool's server sent a malformed answer",
            FaultKind::Oversized => "the tool's server sent an answer larger than the limit",
            FaultKind::SessionExpired => "the tool's server ended the session",
        }
    }
}

/// A classified fault with the detail the log may carry (a status, a JSON-RPC code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    /// The HTTP status, when there was one.
    pub status: Option<u16>,
    /// The JSON-RPC error code, when there was one.
    pub rpc_code: Option<i32>,
}

impl Fault {
    /// A fault of `kind` with no detail.
    pub fn of(kind: FaultKind) -> Fault {
        Fault {
            kind,
            status: None,
            rpc_code: None,
        }
    }

    /// Classifies a failed request.
    pub fn from_service(e: &ServiceError) -> Fault {
        match e {
            ServiceError::McpError(data) => Fault {
                kind: FaultKind::JsonRpc,
                status: None,
                rpc_code: Some(data.code.0),
            },
            ServiceError::TransportSend(t) => from_chain(t.error.as_ref()),
            ServiceError::Timeout { .. } => Fault::of(FaultKind::Timeout),
            ServiceError::UnexpectedResponse => Fault::of(FaultKind::Malformed),
            _ => Fault::of(FaultKind::Connection),
        }
    }

    /// Classifies a failed `initialize`.
    pub fn from_init(e: &rmcp::service::ClientInitializeError) -> Fault {
        use rmcp::service::ClientInitializeError as E;
        match e {
            E::TransportError { error, .. } => from_chain(error.error.as_ref()),
            E::JsonRpcError(data) => Fault {
                kind: FaultKind::JsonRpc,
                status: None,
                rpc_code: Some(data.code.0),
            },
            E::ConnectionClosed(_) => Fault::of(FaultKind::Connection),
            _ => Fault::of(FaultKind::Malformed),
        }
    }
}

/// Finds our transport's error anywhere in a chain of sources.
fn from_chain(e: &(dyn std::error::Error + 'static)) -> Fault {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(s) = err.downcast_ref::<StreamableHttpError<HttpFault>>() {
            return from_transport(s);
        }
        if let Some(h) = err.downcast_ref::<HttpFault>() {
            return from_http(h);
        }
        next = err.source();
    }
    Fault::of(FaultKind::Connection)
}

fn from_transport(e: &StreamableHttpError<HttpFault>) -> Fault {
    match e {
        StreamableHttpError::Client(h) => from_http(h),
        StreamableHttpError::SessionExpired => Fault::of(FaultKind::SessionExpired),
        StreamableHttpError::HttpStatus(s) => from_http(&HttpFault::Status(s.status)),
        StreamableHttpError::ResponseBodyTooLarge { .. } => Fault::of(FaultKind::Oversized),
        StreamableHttpError::Sse(sse_stream::Error::Body(inner)) => {
            match inner.downcast_ref::<HttpFault>() {
                Some(h) => from_http(h),
                None => Fault::of(FaultKind::Connection),
            }
        }
        StreamableHttpError::Io(_)
        | StreamableHttpError::UnexpectedEndOfStream
        | StreamableHttpError::TransportChannelClosed => Fault::of(FaultKind::Connection),
        _ => Fault::of(FaultKind::Malformed),
    }
}

fn from_http(h: &HttpFault) -> Fault {
    let kind = match h {
        HttpFault::Refused => FaultKind::Refused,
        HttpFault::ConnectTimeout => FaultKind::Timeout,
        HttpFault::Reset | HttpFault::Tls | HttpFault::Request(_) => FaultKind::Connection,
        HttpFault::Status(s) if (400..500).contains(s) => FaultKind::ClientStatus,
        HttpFault::Status(_) => FaultKind::ServerStatus,
        HttpFault::TooLarge => FaultKind::Oversized,
        HttpFault::Malformed => FaultKind::Malformed,
    };
    Fault {
        kind,
        status: match h {
            HttpFault::Status(s) => Some(*s),
            _ => None,
        },
        rpc_code: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Statuses split into 4xx and 5xx; transport variants map to their kinds.
    #[test]
    fn transport_faults_classify() {
        let c = |e: StreamableHttpError<HttpFault>| from_transport(&e).kind;
        assert_eq!(
            c(StreamableHttpError::Client(HttpFault::Status(500))),
            FaultKind::ServerStatus
        );
        assert_eq!(
            c(StreamableHttpError::Client(HttpFault::Status(403))),
            FaultKind::ClientStatus
        );
        assert_eq!(
            c(StreamableHttpError::Client(HttpFault::Refused)),
            FaultKind::Refused
        );
        assert_eq!(
            c(StreamableHttpError::SessionExpired),
            FaultKind::SessionExpired
        );
        assert_eq!(
            c(StreamableHttpError::UnexpectedContentType(None)),
            FaultKind::Malformed
        );
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(HttpFault::TooLarge);
        assert_eq!(
            c(StreamableHttpError::Sse(sse_stream::Error::Body(boxed))),
            FaultKind::Oversized
        );
    }
}
