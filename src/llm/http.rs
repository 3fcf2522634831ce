//! A minimal streaming HTTPS client for model APIs on hyper 1 and rustls (ring): one HTTP/1.1
//! connection per request, driven inside the caller's future (no spawned task), so dropping the
//! future closes the socket and with it the provider's stream.
//!
//! Roots come from the system store, loaded on the first HTTPS request: model hosts are not
//! all behind Amazon's roots, and `ping` or echo runs never pay for reading ~150 certificates.

use crate::llm::error::ProviderError;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1;
use hyper::{HeaderMap, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use once_cell::sync::OnceCell;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How long opening a connection (TCP and TLS) may take: a reachable API answers in
/// milliseconds; past this the host is down or filtered.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the response head may take after the request was sent: servers send it before
/// the model's first token, after queueing and reading the prompt.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest silence between two pieces of a streamed body: models emit tokens many times a
/// second and servers send keep-alives, so a longer gap is a stalled stream.
pub const IDLE_CHUNK_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of an error response's body that is read (for its error code).
pub const MAX_ERROR_BODY_BYTES: usize = 16 * 1024;

/// The client's time limits; tests shorten them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: CONNECT_TIMEOUT,
            first_byte: FIRST_BYTE_TIMEOUT,
            idle: IDLE_CHUNK_TIMEOUT,
        }
    }
}

/// Where requests go: scheme, host, port and the base path (`/v1`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub https: bool,
    pub host: String,
    pub port: u16,
    pub base_path: String,
}

impl Endpoint {
    /// Parses a base URL already checked by the settings.
    pub fn parse(base_url: &str) -> Result<Endpoint, ProviderError> {
        let bad = || ProviderError::new(crate::llm::LlmErrorKind::Invalid, "bad base url");
        let uri: Uri = base_url.parse().map_err(|_| bad())?;
        let https = uri.scheme_str() == Some("https");
        let host = uri.host().ok_or_else(bad)?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Ok(Endpoint {
            https,
            port: uri.port_u16().unwrap_or(if https { 443 } else { 80 }),
            host,
            base_path: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    fn authority(&self) -> String {
        let default = if self.https { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// The client: its TLS configuration is built on first HTTPS use.
#[derive(Default)]
pub struct HttpClient {
    tls: OnceCell<Arc<rustls::ClientConfig>>,
    timeouts: Timeouts,
}

/// A response whose body is still arriving; dropping it closes the connection.
pub struct Streaming {
    pub status: StatusCode,
    pub headers: HeaderMap,
    body: Incoming,
    conn: Pin<Box<http1::Connection<TokioIo<Stream>, Full<Bytes>>>>,
    conn_done: bool,
    idle: Duration,
}

impl HttpClient {
    /// A client with these time limits.
    pub fn new(timeouts: Timeouts) -> Self {
        HttpClient {
            tls: OnceCell::new(),
            timeouts,
        }
    }

    fn tls(&self) -> Result<Arc<rustls::ClientConfig>, ProviderError> {
        self.tls
            .get_or_try_init(|| {
                crate::tls::client_config(crate::tls::Roots::Native)
                    .map_err(|_| ProviderError::unavailable("no system root certificates"))
            })
            .cloned()
    }

    async fn connect(&self, endpoint: &Endpoint) -> Result<Stream, ProviderError> {
        let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|e| ProviderError::unavailable(connect_cause(&e)))?;
        let _ = tcp.set_nodelay(true);
        if !endpoint.https {
            return Ok(Stream::Plain(tcp));
        }
        let name = rustls::pki_types::ServerName::try_from(endpoint.host.clone())
            .map_err(|_| ProviderError::new(crate::llm::LlmErrorKind::Invalid, "bad host name"))?;
        let tls = tokio_rustls::TlsConnector::from(self.tls()?)
            .connect(name, tcp)
            .await
            .map_err(|_| ProviderError::unavailable("tls handshake failed"))?;
        Ok(Stream::Tls(Box::new(tls)))
    }

    /// POSTs `body` to `path` under the endpoint's base path and returns once the response head
    /// arrived. `headers` are added as given (the caller adds `Authorization`).
    pub async fn post(
        &self,
        endpoint: &Endpoint,
        path: &str,
        headers: &[(&'static str, String)],
        body: Vec<u8>,
    ) -> Result<Streaming, ProviderError> {
        let t = self.timeouts;
        let stream = tokio::time::timeout(t.connect, self.connect(endpoint))
            .await
            .map_err(|_| ProviderError::unavailable("connect timed out"))??;
        let (mut sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| ProviderError::unavailable("http handshake failed"))?;
        let mut conn = Box::pin(conn);
        let mut request = Request::post(format!("{}{path}", endpoint.base_path))
            .header(hyper::header::HOST, endpoint.authority())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(
                hyper::header::USER_AGENT,
                concat!("wsexec/", env!("CARGO_PKG_VERSION")),
            );
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        let request = request.body(Full::new(Bytes::from(body))).map_err(|_| {
            ProviderError::new(crate::llm::LlmErrorKind::Invalid, "bad request header")
        })?;
        let mut conn_done = false;
        let exchange = async {
            let mut send = std::pin::pin!(sender.send_request(request));
            loop {
                tokio::select! {
                    biased;
                    response = &mut send => {
                        return response.map_err(|e| ProviderError::unavailable(hyper_cause(&e)));
                    }
                    // The connection may finish first when the whole response is already read;
                    // the response is then waiting in `send`.
                    ended = conn.as_mut(), if !conn_done => {
                        conn_done = true;
                        if let Err(e) = ended {
                            return Err(ProviderError::unavailable(hyper_cause(&e)));
                        }
                    }
                }
            }
        };
        let response = tokio::time::timeout(t.first_byte, exchange)
            .await
            .map_err(|_| ProviderError::unavailable("no response head in time"))??;
        let (parts, body) = response.into_parts();
        Ok(Streaming {
            status: parts.status,
            headers: parts.headers,
            body,
            conn,
            conn_done,
            idle: t.idle,
        })
    }
}

impl Streaming {
    /// The next piece of the body; `None` at its end. A silence longer than the idle limit, a
    /// reset or a truncated body is `llm_unavailable`.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, ProviderError> {
        let idle = self.idle;
        tokio::time::timeout(idle, self.next_chunk_unbounded())
            .await
            .map_err(|_| ProviderError::unavailable("stream stalled"))?
    }

    async fn next_chunk_unbounded(&mut self) -> Result<Option<Bytes>, ProviderError> {
        loop {
            tokio::select! {
                frame = self.body.frame() => match frame {
                    None => return Ok(None),
                    Some(Err(e)) => return Err(ProviderError::unavailable(hyper_cause(&e))),
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data()
                            && !data.is_empty()
                        {
                            return Ok(Some(data));
                        }
                    }
                },
                ended = self.conn.as_mut(), if !self.conn_done => {
                    self.conn_done = true;
                    if let Err(e) = ended {
                        return Err(ProviderError::unavailable(hyper_cause(&e)));
                    }
                }
            }
        }
    }

    /// Reads at most `limit` bytes of the body (for an error response).
    pub async fn read_prefix(&mut self, limit: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while out.len() < limit {
            match self.next_chunk().await {
                Ok(Some(chunk)) => {
                    out.extend_from_slice(&chunk[..chunk.len().min(limit - out.len())])
                }
                _ => break,
            }
        }
        out
    }
}

fn connect_cause(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused",
        std::io::ErrorKind::ConnectionReset => "connection reset",
        std::io::ErrorKind::TimedOut => "connect timed out",
        _ => "connect failed",
    }
}

fn hyper_cause(e: &hyper::Error) -> &'static str {
    if e.is_incomplete_message() {
        "connection closed mid-response"
    } else if e.is_parse() {
        "malformed http response"
    } else if e.is_timeout() {
        "http timeout"
    } else {
        "connection reset"
    }
}

/// A plain or TLS connection.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Base URLs split into scheme, host, port and path, with default ports per scheme.
    #[test]
    fn endpoints_parse() {
        let e = Endpoint::parse("https://api.openai.com/v1").unwrap();
        assert_eq!(
            (e.https, e.host.as_str(), e.port, e.base_path.as_str()),
            (true, "api.openai.com", 443, "/v1")
        );
        assert_eq!(e.authority(), "api.openai.com");
        let e = Endpoint::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!((e.https, e.port, e.base_path.as_str()), (false, 8080, ""));
        assert_eq!(e.authority(), "127.0.0.1:8080");
        let e = Endpoint::parse("http://[::1]:9/x/").unwrap();
        assert_eq!(
            (
                e.host.as_str(),
                e.authority().as_str(),
                e.base_path.as_str()
            ),
            ("::1", "[::1]:9", "/x")
        );
    }

    /// A refused connection is `llm_unavailable` and says so.
    #[tokio::test]
    async fn refused_connection_is_unavailable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let endpoint = Endpoint::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let err = HttpClient::default()
            .post(&endpoint, "/x", &[], Vec::new())
            .await
            .err()
            .unwrap();
        assert_eq!(err.kind, crate::llm::LlmErrorKind::Unavailable);
        assert_eq!(err.detail, "connection refused");
    }
}
