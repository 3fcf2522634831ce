//! A minimal streaming HTTPS client for model APIs on hyper 1 and rustls (ring): HTTP/1.1,
//! each connection driven inside the caller's future (no spawned task), so dropping the future
//! closes the socket and with it the provider's stream. A response read to its end leaves its
//! connection in a small keep-alive pool for the next request to the same host (the next model
//! round, the next run of a warm instance), so only the first pays for TCP and TLS; a pooled
//! connection the server closed meanwhile is replaced once, before anything was answered.
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
use std::sync::{Arc, Mutex, PoisonError};
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
/// How long an idle connection is kept for reuse: servers close idle keep-alive connections
/// after 5 s (uvicorn) to 75 s (nginx) or more; a connection found closed is replaced once,
/// so this only bounds how many such replacements happen.
pub const POOL_IDLE: Duration = Duration::from_secs(30);
/// Idle connections kept at most: a run's rounds are sequential, and an instance serves a
/// handful of runs at once (Managed Instances: up to 64, each holding its own while it streams).
pub const POOL_MAX_IDLE: usize = 16;
/// How long the end of a response body may take once the model's stream said it is done
/// (`[DONE]`): the closing chunk is already on its way; if it is slow, the connection is simply
/// not kept.
pub const BODY_END_WAIT: Duration = Duration::from_millis(50);

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

/// The client: its TLS configuration is built on first HTTPS use; its idle connections are
/// kept for reuse.
#[derive(Default)]
pub struct HttpClient {
    tls: OnceCell<Arc<rustls::ClientConfig>>,
    timeouts: Timeouts,
    pool: Arc<Pool>,
}

/// One HTTP/1.1 connection: the handle requests are sent through, and the connection's own
/// future, polled only while a request of the caller is in flight.
type Conn = Pin<Box<http1::Connection<TokioIo<Stream>, Full<Bytes>>>>;

/// Which connections can serve an endpoint: scheme, host and port.
type Key = (bool, String, u16);

fn key_of(e: &Endpoint) -> Key {
    (e.https, e.host.clone(), e.port)
}

/// One kept connection: whom it serves, its handle and future, and since when it is idle.
type Kept = (
    Key,
    http1::SendRequest<Full<Bytes>>,
    Conn,
    std::time::Instant,
);

/// Idle keep-alive connections, most recent last.
#[derive(Default)]
struct Pool {
    idle: Mutex<Vec<Kept>>,
}

impl Pool {
    /// The most recent idle connection to `key` still open and young enough; older ones are
    /// dropped (closed) on the way.
    fn take(&self, key: &Key) -> Option<(http1::SendRequest<Full<Bytes>>, Conn)> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.retain(|(_, s, _, at)| at.elapsed() < POOL_IDLE && !s.is_closed());
        let i = idle.iter().rposition(|(k, ..)| k == key)?;
        let (_, sender, conn, _) = idle.remove(i);
        Some((sender, conn))
    }

    fn put(&self, key: Key, sender: http1::SendRequest<Full<Bytes>>, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() >= POOL_MAX_IDLE {
            drop(idle.remove(0));
        }
        idle.push((key, sender, conn, std::time::Instant::now()));
    }

    /// Idle connections kept now.
    fn len(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// A response whose body is still arriving; dropping it before its end closes the connection,
/// and one read to its end goes back to the pool.
pub struct Streaming {
    pub status: StatusCode,
    pub headers: HeaderMap,
    body: Incoming,
    conn: Option<Conn>,
    conn_done: bool,
    idle: Duration,
    /// Whether the body was read to its end.
    ended: bool,
    /// Where the connection goes back to, when the server keeps it alive.
    reuse: Option<(Arc<Pool>, Key, http1::SendRequest<Full<Bytes>>)>,
}

impl Drop for Streaming {
    fn drop(&mut self) {
        if let (true, false, Some((pool, key, sender)), Some(conn)) = (
            self.ended,
            self.conn_done,
            self.reuse.take(),
            self.conn.take(),
        ) && !sender.is_closed()
        {
            pool.put(key, sender, conn);
        }
    }
}

impl HttpClient {
    /// A client with these time limits.
    pub fn new(timeouts: Timeouts) -> Self {
        HttpClient {
            tls: OnceCell::new(),
            timeouts,
            pool: Arc::default(),
        }
    }

    /// Idle connections kept for reuse now.
    pub fn idle_connections(&self) -> usize {
        self.pool.len()
    }

    /// Opens a connection to `endpoint` (TCP, TLS, HTTP/1.1) and keeps it for the next request,
    /// so that cost overlaps with whatever the caller does meanwhile (a run's history read). A
    /// failure is left for the request itself to meet.
    pub async fn preconnect(&self, endpoint: &Endpoint) {
        if let Ok(Ok((sender, conn))) =
            tokio::time::timeout(self.timeouts.connect, self.open(endpoint)).await
        {
            self.pool.put(key_of(endpoint), sender, conn);
        }
    }

    /// A new connection to `endpoint`, its HTTP/1.1 handshake done.
    async fn open(
        &self,
        endpoint: &Endpoint,
    ) -> Result<(http1::SendRequest<Full<Bytes>>, Conn), ProviderError> {
        let stream = self.connect(endpoint).await?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| ProviderError::unavailable("http handshake failed"))?;
        Ok((sender, Box::pin(conn)))
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
        let key = key_of(endpoint);
        let body = Bytes::from(body);
        let mut pooled = self.pool.take(&key);
        loop {
            let reused = pooled.is_some();
            let (mut sender, mut conn) = match pooled.take() {
                Some(c) => c,
                None => tokio::time::timeout(t.connect, self.open(endpoint))
                    .await
                    .map_err(|_| ProviderError::unavailable("connect timed out"))??,
            };
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
            let request = request.body(Full::new(body.clone())).map_err(|_| {
                ProviderError::new(crate::llm::LlmErrorKind::Invalid, "bad request header")
            })?;
            let mut conn_done = false;
            let exchange = async {
                let mut send = std::pin::pin!(sender.send_request(request));
                loop {
                    tokio::select! {
                        biased;
                        response = &mut send => return response,
                        // The connection may finish first when the whole response is already
                        // read; the response is then waiting in `send`.
                        ended = conn.as_mut(), if !conn_done => {
                            conn_done = true;
                            ended?;
                        }
                    }
                }
            };
            let response = match tokio::time::timeout(t.first_byte, exchange).await {
                Err(_) => return Err(ProviderError::unavailable("no response head in time")),
                // A kept connection the server closed while it was idle: nothing was answered
                // on it, so the request goes once more on a new one.
                Ok(Err(e))
                    if reused
                        && (e.is_canceled() || e.is_closed() || e.is_incomplete_message()) =>
                {
                    continue;
                }
                Ok(Err(e)) => return Err(ProviderError::unavailable(hyper_cause(&e))),
                Ok(Ok(r)) => r,
            };
            let (parts, body) = response.into_parts();
            let keep_alive = parts.version == hyper::Version::HTTP_11
                && !parts
                    .headers
                    .get_all(hyper::header::CONNECTION)
                    .iter()
                    .any(|v| {
                        v.to_str()
                            .is_ok_and(|v| v.to_ascii_lowercase().contains("close"))
                    });
            return Ok(Streaming {
                status: parts.status,
                headers: parts.headers,
                body,
                conn: Some(conn),
                conn_done,
                idle: t.idle,
                ended: false,
                reuse: keep_alive.then(|| (self.pool.clone(), key, sender)),
            });
        }
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
                    None => {
                        self.ended = true;
                        return Ok(None);
                    }
                    Some(Err(e)) => return Err(ProviderError::unavailable(hyper_cause(&e))),
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data()
                            && !data.is_empty()
                        {
                            return Ok(Some(data));
                        }
                    }
                },
                ended = poll_conn(&mut self.conn), if !self.conn_done => {
                    self.conn_done = true;
                    if let Err(e) = ended {
                        return Err(ProviderError::unavailable(hyper_cause(&e)));
                    }
                }
            }
        }
    }

    /// After the model's stream said it is done: reads what is left of the body (the closing
    /// chunk), briefly, so the connection can be kept for the next request.
    pub async fn finish(&mut self) {
        let _ = tokio::time::timeout(BODY_END_WAIT, async {
            while let Ok(Some(_)) = self.next_chunk_unbounded().await {}
        })
        .await;
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

/// Polls the connection's own future, if it is still there (it always is until the response is
/// dropped).
async fn poll_conn(conn: &mut Option<Conn>) -> hyper::Result<()> {
    match conn {
        Some(c) => c.as_mut().await,
        None => std::future::pending().await,
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

    /// A loopback HTTP/1.1 server answering `ok` to every request; `close_after` closes each
    /// connection after that many responses (without saying so, as an idle timeout does).
    /// Returns its endpoint and (connections accepted, requests answered).
    async fn keep_alive_server(
        close_after: usize,
    ) -> (
        Endpoint,
        Arc<std::sync::atomic::AtomicUsize>,
        Arc<std::sync::atomic::AtomicUsize>,
    ) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (conns, reqs) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (c, r) = (conns.clone(), reqs.clone());
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let r = r.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    for _ in 0..close_after {
                        // One request: the head, then its content-length body.
                        let head_end = loop {
                            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break i + 4;
                            }
                            let mut chunk = [0u8; 4096];
                            match sock.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        while buf.len() < head_end + len {
                            let mut chunk = [0u8; 4096];
                            match sock.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buf.drain(..head_end + len);
                        r.fetch_add(1, Ordering::SeqCst);
                        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if sock.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let endpoint = Endpoint::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        (endpoint, conns, reqs)
    }

    async fn post_ok(client: &HttpClient, endpoint: &Endpoint) {
        let mut r = client
            .post(endpoint, "/x", &[], b"{}".to_vec())
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.read_prefix(16).await, b"ok");
    }

    /// A response read to its end leaves its connection for the next request: three requests,
    /// one connection; a connection opened ahead (`preconnect`) serves the next request.
    #[tokio::test]
    async fn kept_connections_serve_the_next_requests() {
        use std::sync::atomic::Ordering::SeqCst;
        let (endpoint, conns, reqs) = keep_alive_server(usize::MAX).await;
        let client = HttpClient::default();
        for _ in 0..3 {
            post_ok(&client, &endpoint).await;
        }
        assert_eq!((conns.load(SeqCst), reqs.load(SeqCst)), (1, 3));
        assert_eq!(client.idle_connections(), 1);
        let fresh = HttpClient::default();
        fresh.preconnect(&endpoint).await;
        assert_eq!(fresh.idle_connections(), 1);
        post_ok(&fresh, &endpoint).await;
        assert_eq!((conns.load(SeqCst), reqs.load(SeqCst)), (2, 4));
    }

    /// A kept connection the server closed while it was idle is replaced once, transparently:
    /// every request is answered, each on its own connection.
    #[tokio::test]
    async fn a_kept_connection_closed_by_the_server_is_replaced() {
        use std::sync::atomic::Ordering::SeqCst;
        let (endpoint, conns, reqs) = keep_alive_server(1).await;
        let client = HttpClient::default();
        for _ in 0..3 {
            post_ok(&client, &endpoint).await;
            // Let the server's close reach the client's socket.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!((conns.load(SeqCst), reqs.load(SeqCst)), (3, 3));
    }

    /// A response dropped before its end closes its connection: nothing is kept.
    #[tokio::test]
    async fn a_response_dropped_early_is_not_kept() {
        let (endpoint, _, _) = keep_alive_server(usize::MAX).await;
        let client = HttpClient::default();
        let r = client.post(&endpoint, "/x", &[], Vec::new()).await.unwrap();
        drop(r);
        assert_eq!(client.idle_connections(), 0);
    }
}
