//! rmcp's Streamable HTTP transport on the project's own HTTP stack: hyper 1's pooled HTTP/1.1
//! client over rustls (ring), the stack the SDK clients and the model client already link,
//! instead of the SDK's reqwest client.
//!
//! It sends only to the URL it was built for (the configured one: the model never chooses an
//! address), bounds every body it reads, and reports failures as a typed [`HttpFault`] the
//! session classifies. Header values never appear in an error or a log line.

use futures_util::stream::{BoxStream, StreamExt, TryStreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
    StreamableHttpResponseLimits,
};
use sse_stream::{Sse, SseStream};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How long opening a connection (TCP and TLS) may take: a reachable server answers in
/// milliseconds; past this it is down or filtered, and the call's own limit is short.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long an idle pooled connection is kept: long enough to serve every call of a run on one
/// connection, short enough that a frozen Lambda instance rarely wakes up to a dropped one.
pub const POOL_IDLE: Duration = Duration::from_secs(30);
/// The largest JSON response or SSE event read from a server: a tool result handed to the model
/// is cut far below this anyway (`MAX_RESULT_BYTES`), so more is a broken or hostile server.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// The most of an error body that is read (only to find a JSON-RPC error in it).
pub const MAX_ERROR_BODY_BYTES: usize = 16 * 1024;

const SESSION_HEADER: &str = "mcp-session-id";
const LAST_EVENT_ID_HEADER: &str = "last-event-id";
const JSON: &str = "application/json";
const EVENT_STREAM: &str = "text/event-stream";

/// Why an exchange with a server failed, as far as HTTP can tell.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HttpFault {
    #[error("connection refused")]
    Refused,
    #[error("connect timed out")]
    ConnectTimeout,
    #[error("connection reset or closed")]
    Reset,
    #[error("tls handshake failed")]
    Tls,
    #[error("http status {0}")]
    Status(u16),
    #[error("response larger than the limit")]
    TooLarge,
    #[error("malformed http response")]
    Malformed,
    #[error("request refused by the client: {0}")]
    Request(&'static str),
}

type Error = StreamableHttpError<HttpFault>;

/// One pooled client for one configured server.
#[derive(Clone)]
pub struct McpHttp {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// The only URL requests go to.
    url: Arc<str>,
    /// The entry's headers (credentials), added to every request.
    headers: Arc<Vec<(HeaderName, HeaderValue)>>,
}

impl McpHttp {
    /// A client for `url` sending `headers`, trusting `tls`'s roots for `https://`.
    pub fn new(
        url: &str,
        headers: &[(String, String)],
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<McpHttp, HttpFault> {
        let client = crate::tls::pooled_client(&tls, Some(CONNECT_TIMEOUT), POOL_IDLE);
        let headers = headers
            .iter()
            .map(|(n, v)| {
                Ok((
                    HeaderName::from_bytes(n.as_bytes()).map_err(|_| bad_header())?,
                    HeaderValue::from_str(v).map_err(|_| bad_header())?,
                ))
            })
            .collect::<Result<Vec<_>, HttpFault>>()?;
        Ok(McpHttp {
            client,
            url: url.into(),
            headers: Arc::new(headers),
        })
    }

    fn request(
        &self,
        method: Method,
        uri: &str,
        session: Option<&str>,
        extra: HashMap<HeaderName, HeaderValue>,
    ) -> Result<hyper::http::request::Builder, Error> {
        // rmcp passes back the URL it was configured with; anything else is refused so no
        // other address can ever be contacted through this client.
        if uri != &*self.url {
            return Err(StreamableHttpError::Client(HttpFault::Request(
                "not the configured url",
            )));
        }
        let mut builder = Request::builder().method(method).uri(uri);
        for (name, value) in self.headers.iter() {
            builder = builder.header(name, value);
        }
        for (name, value) in extra {
            builder = builder.header(name, value);
        }
        if let Some(id) = session {
            builder = builder.header(SESSION_HEADER, id);
        }
        Ok(builder.header(
            header::USER_AGENT,
            concat!("wsexec/", env!("CARGO_PKG_VERSION")),
        ))
    }

    async fn send(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, Error> {
        self.client
            .request(request)
            .await
            .map_err(|e| StreamableHttpError::Client(classify(&e)))
    }
}

fn bad_header() -> HttpFault {
    HttpFault::Request("bad header")
}

/// A refused, timed-out, reset or TLS-failed connection, from the error chain.
fn classify(e: &hyper_util::client::legacy::Error) -> HttpFault {
    let chain = || {
        std::iter::successors(Some(e as &(dyn std::error::Error + 'static)), |e| {
            (*e).source()
        })
    };
    if let Some(io) = chain().find_map(|e| e.downcast_ref::<std::io::Error>()) {
        return match io.kind() {
            std::io::ErrorKind::ConnectionRefused => HttpFault::Refused,
            std::io::ErrorKind::TimedOut => HttpFault::ConnectTimeout,
            _ if chain().any(|e| e.downcast_ref::<rustls::Error>().is_some()) => HttpFault::Tls,
            _ => HttpFault::Reset,
        };
    }
    if chain().any(|e| e.to_string().contains("timed out")) {
        return HttpFault::ConnectTimeout;
    }
    if let Some(h) = chain().find_map(|e| e.downcast_ref::<hyper::Error>())
        && h.is_parse()
    {
        return HttpFault::Malformed;
    }
    HttpFault::Reset
}

fn media_type_is(value: Option<&HeaderValue>, expected: &str) -> bool {
    value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(expected))
}

/// Reads a whole body, failing past `limit` bytes (a declared length past it fails at once).
async fn read_bounded(
    response: hyper::Response<hyper::body::Incoming>,
    limit: usize,
) -> Result<Vec<u8>, Error> {
    let declared = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(StreamableHttpError::Client(HttpFault::TooLarge));
    }
    let mut body = response.into_body();
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| StreamableHttpError::Client(hyper_fault(&e)))?;
        if let Ok(data) = frame.into_data() {
            if data.len() > limit - out.len() {
                return Err(StreamableHttpError::Client(HttpFault::TooLarge));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

fn hyper_fault(e: &hyper::Error) -> HttpFault {
    if e.is_parse() {
        HttpFault::Malformed
    } else {
        HttpFault::Reset
    }
}

/// The body as SSE events, failing once one event grows past `limit` bytes.
fn sse_events(
    response: hyper::Response<hyper::body::Incoming>,
    limit: usize,
) -> BoxStream<'static, Result<Sse, SseError>> {
    let bytes = response
        .into_body()
        .into_data_stream()
        .map_err(|e| hyper_fault(&e))
        .scan(0usize, move |pending, chunk| {
            let item = chunk.and_then(|data: Bytes| {
                // Bytes since the last blank line: a close upper bound of the event's size.
                let tail = match find_event_end(&data) {
                    Some(end) => data.len() - end,
                    None => *pending + data.len(),
                };
                if tail > limit {
                    return Err(HttpFault::TooLarge);
                }
                *pending = tail;
                Ok(data)
            });
            futures_util::future::ready(Some(item))
        });
    SseStream::from_bytes_stream(bytes).boxed()
}

fn find_event_end(data: &[u8]) -> Option<usize> {
    let lf = data.windows(2).rposition(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = data
        .windows(4)
        .rposition(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    lf.max(crlf)
}

impl StreamableHttpClient for McpHttp {
    type Error = HttpFault;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, Error> {
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            StreamableHttpResponseLimits::default(),
        )
        .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, Error> {
        let json_limit = limits.max_json_response_size.min(MAX_RESPONSE_BYTES);
        let event_limit = limits.max_sse_event_size.min(MAX_RESPONSE_BYTES);
        let body = serde_json::to_vec(&message)?;
        let session_attached = session_id.is_some();
        let request = self
            .request(Method::POST, &uri, session_id.as_deref(), custom_headers)?
            .header(header::CONTENT_TYPE, JSON)
            .header(header::ACCEPT, "application/json, text/event-stream")
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| StreamableHttpError::Client(bad_header()))?;
        let response = self.send(request).await?;
        let status = response.status();
        if matches!(status, StatusCode::ACCEPTED | StatusCode::NO_CONTENT) {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        if status == StatusCode::NOT_FOUND && session_attached {
            return Err(StreamableHttpError::SessionExpired);
        }
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        let new_session = response
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if !status.is_success() {
            // A JSON-RPC error in an error status is the server's answer; anything else is the
            // status itself.
            if media_type_is(content_type.as_ref(), JSON)
                && let Ok(body) = read_bounded(response, MAX_ERROR_BODY_BYTES).await
                && let Ok(m @ ServerJsonRpcMessage::Error(_)) =
                    serde_json::from_slice::<ServerJsonRpcMessage>(&body)
            {
                return Ok(StreamableHttpPostResponse::Json(m, new_session));
            }
            return Err(StreamableHttpError::Client(HttpFault::Status(
                status.as_u16(),
            )));
        }
        let awaits_nothing = !matches!(message, ClientJsonRpcMessage::Request(_));
        if media_type_is(content_type.as_ref(), EVENT_STREAM) {
            return Ok(StreamableHttpPostResponse::Sse(
                sse_events(response, event_limit),
                new_session,
            ));
        }
        if media_type_is(content_type.as_ref(), JSON) {
            let body = read_bounded(response, json_limit).await?;
            return match serde_json::from_slice::<ServerJsonRpcMessage>(&body) {
                Ok(parsed) => Ok(StreamableHttpPostResponse::Json(parsed, new_session)),
                Err(_) if awaits_nothing => Ok(StreamableHttpPostResponse::Accepted),
                Err(_) => Err(StreamableHttpError::Client(HttpFault::Malformed)),
            };
        }
        if awaits_nothing {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        Err(StreamableHttpError::UnexpectedContentType(
            content_type.and_then(|v| v.to_str().ok().map(str::to_owned)),
        ))
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), Error> {
        let request = self
            .request(Method::DELETE, &uri, Some(&session_id), custom_headers)?
            .body(Full::new(Bytes::new()))
            .map_err(|_| StreamableHttpError::Client(bad_header()))?;
        let response = self.send(request).await?;
        match response.status() {
            StatusCode::METHOD_NOT_ALLOWED => {
                Err(StreamableHttpError::ServerDoesNotSupportDeleteSession)
            }
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            s => Err(StreamableHttpError::Client(HttpFault::Status(s.as_u16()))),
        }
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Error> {
        self.get_stream_with_max_sse_event_size(
            uri,
            session_id,
            last_event_id,
            auth_header,
            custom_headers,
            MAX_RESPONSE_BYTES,
        )
        .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Error> {
        let mut builder = self
            .request(Method::GET, &uri, session_id.as_deref(), custom_headers)?
            .header(header::ACCEPT, EVENT_STREAM);
        if let Some(id) = last_event_id {
            builder = builder.header(LAST_EVENT_ID_HEADER, id);
        }
        let request = builder
            .body(Full::new(Bytes::new()))
            .map_err(|_| StreamableHttpError::Client(bad_header()))?;
        let response = self.send(request).await?;
        let status = response.status();
        if status == StatusCode::METHOD_NOT_ALLOWED {
            return Err(StreamableHttpError::ServerDoesNotSupportSse);
        }
        if status == StatusCode::NOT_FOUND && session_id.is_some() {
            return Err(StreamableHttpError::SessionExpired);
        }
        if !status.is_success() {
            return Err(StreamableHttpError::Client(HttpFault::Status(
                status.as_u16(),
            )));
        }
        if !media_type_is(response.headers().get(header::CONTENT_TYPE), EVENT_STREAM) {
            return Err(StreamableHttpError::ServerDoesNotSupportSse);
        }
        Ok(sse_events(
            response,
            max_sse_event_size.min(MAX_RESPONSE_BYTES),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The end of the last event in a chunk is found for both line endings.
    #[test]
    fn event_ends() {
        assert_eq!(find_event_end(b"data: a\n\ndata: b"), Some(9));
        assert_eq!(find_event_end(b"data: a\r\n\r\n"), Some(11));
        assert_eq!(find_event_end(b"data: a\n"), None);
    }

    /// Content types match by essence, case-insensitively, ignoring parameters.
    #[test]
    fn media_types() {
        let v = HeaderValue::from_static("Application/JSON; charset=utf-8");
        assert!(media_type_is(Some(&v), JSON));
        assert!(!media_type_is(Some(&v), EVENT_STREAM));
        assert!(!media_type_is(None, JSON));
    }
}
