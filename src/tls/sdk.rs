//! The HTTP client the AWS SDK clients send through: hyper 1's pooled client over HTTP/1.1 and
//! rustls, with the connect and read time limits the SDK asks for.
//!
//! The SDK's own client (`aws-smithy-http-client`) always links HTTP/2 (`h2`) and a proxy
//! layer. Every AWS endpoint wsexec calls (DynamoDB, `@connections`, Lambda `Invoke`, Bedrock's
//! `ConverseStream`) speaks HTTP/1.1, so this one leaves both out: 0.5 MB less binary and
//! fewer code pages per invocation. Errors are classified as the SDK's client does (timeout,
//! I/O, user, other), which is what the storage, push and dispatch classifiers read.

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::ErrorKind;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::error::Error as StdError;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

type BoxError = Box<dyn StdError + Send + Sync>;

/// How long an idle pooled connection is kept: under the 60 s after which AWS front ends
/// close idle connections, so a reused connection is rarely one the server already dropped.
const POOL_IDLE: Duration = Duration::from_secs(50);

/// Hands the SDK one connector per distinct time-limit setting, so every request of a client
/// shares one connection pool.
#[derive(Debug)]
pub struct Http1Client {
    tls: Result<Arc<rustls::ClientConfig>, super::TlsError>,
    /// Connections per host at most.
    most: usize,
    connectors: Mutex<Vec<(Limits, SharedHttpConnector)>>,
}

type Limits = (Option<Duration>, Option<Duration>);

impl Http1Client {
    /// A client trusting what `tls` trusts, at most [`MAX_CONNECTIONS`] connections per host;
    /// without a configuration every request fails with that error (as the SDK's client does
    /// when its TLS context cannot be built).
    pub fn new(tls: Result<Arc<rustls::ClientConfig>, super::TlsError>) -> Self {
        Http1Client {
            tls,
            most: MAX_CONNECTIONS,
            connectors: Mutex::new(Vec::new()),
        }
    }

    /// A client for streamed responses (Bedrock's `ConverseStream`): each stream holds its
    /// HTTP/1.1 connection for the whole answer, so a bound would make the run past it wait
    /// for another's answer to end. Not bounded, as the OpenAI-compatible client is not.
    pub fn streaming(tls: Result<Arc<rustls::ClientConfig>, super::TlsError>) -> Self {
        Http1Client {
            most: UNBOUNDED,
            ..Http1Client::new(tls)
        }
    }
}

impl HttpClient for Http1Client {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        let limits = (settings.connect_timeout(), settings.read_timeout());
        let mut connectors = self
            .connectors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, c)) = connectors.iter().find(|(l, _)| *l == limits) {
            return c.clone();
        }
        let c = match &self.tls {
            Ok(tls) => SharedHttpConnector::new(Pooled::new(tls.clone(), limits, self.most)),
            Err(e) => SharedHttpConnector::new(Unconfigured(e.to_string())),
        };
        connectors.push((limits, c.clone()));
        c
    }
}

/// hyper's pooled HTTP/1.1 client over rustls trusting what `tls` trusts, TLS or plain as each
/// request's scheme says, with a connect limit and an idle time for pooled connections.
pub fn pooled_client<B>(
    tls: &rustls::ClientConfig,
    connect: Option<Duration>,
    idle: Duration,
) -> Client<HttpsConnector<TcpConnector>, B>
where
    B: hyper::body::Body + Send,
    B::Data: Send,
{
    builder(idle).build(https(tls, connect))
}

/// TCP (no delay, `connect` as its limit), then TLS for `https://` trusting what `tls` trusts.
fn https(tls: &rustls::ClientConfig, connect: Option<Duration>) -> HttpsConnector<TcpConnector> {
    let mut tcp = TcpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(connect);
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls.clone())
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp)
}

/// A pool whose idle connections close after `idle`.
fn builder(idle: Duration) -> hyper_util::client::legacy::Builder {
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(idle);
    builder
}

/// The most connections one [`Bounded`] client holds open to a host, in use and idle together.
///
/// hyper's pool opens a connection for every request that finds none idle and keeps each for
/// [`POOL_IDLE`]: 512 runs starting at once (Managed Instances) opened ~1,000 DynamoDB
/// connections at ~27 KiB of buffers each, and kept them for 50 s. 64 requests in flight carry
/// thousands of requests a second at an in-region round trip of a few milliseconds, more than
/// one process sends; past them a request waits for a connection instead of opening one.
pub const MAX_CONNECTIONS: usize = 64;

/// The limit of a [`Bounded`] client that has none (tokio's largest semaphore).
pub const UNBOUNDED: usize = Semaphore::MAX_PERMITS;

/// hyper's pooled client with at most `limit` requests in flight, so at most `limit`
/// connections per host: a request holds a permit from before it is sent until its response
/// body has ended (or is dropped), which is when its connection goes back to the pool. Idle
/// connections are capped at the same number, so the few a race opens past it (a permit comes
/// back a moment before its connection does) are closed once answered.
pub struct Bounded<B> {
    client: Client<HttpsConnector<TcpConnector>, B>,
    permits: Arc<Semaphore>,
}

impl<B> Bounded<B>
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// A client like [`pooled_client`]'s with at most `limit` requests (and connections) at
    /// once.
    pub fn new(
        tls: &rustls::ClientConfig,
        connect: Option<Duration>,
        idle: Duration,
        limit: usize,
    ) -> Self {
        let limit = limit.clamp(1, UNBOUNDED);
        Bounded {
            client: builder(idle)
                .pool_max_idle_per_host(limit)
                .build(https(tls, connect)),
            permits: Arc::new(Semaphore::new(limit)),
        }
    }

    /// Sends `request` once a permit is free; the permit is given back when the response's
    /// body ends or is dropped, or when the request fails. The future owns what it needs (hyper
    /// sends nothing until it is polled, and it is polled only once the permit came), so a
    /// caller need not keep the client alive beside it.
    pub fn request(
        &self,
        request: hyper::Request<B>,
    ) -> impl Future<Output = Result<hyper::Response<Held>, hyper_util::client::legacy::Error>>
    + Send
    + 'static {
        let permit = self.permits.clone().acquire_owned();
        let sent = self.client.request(request);
        async move {
            // The semaphore is never closed, so a permit always comes.
            let permit = permit.await.ok();
            let response = sent.await?;
            Ok(response.map(|body| Held { body, permit }))
        }
    }
}

impl<B> Clone for Bounded<B> {
    fn clone(&self) -> Self {
        Bounded {
            client: self.client.clone(),
            permits: self.permits.clone(),
        }
    }
}

/// A response body that holds its request's permit until it ends, fails or is dropped.
#[derive(Debug)]
pub struct Held {
    body: Incoming,
    permit: Option<OwnedSemaphorePermit>,
}

impl hyper::body::Body for Held {
    type Data = hyper::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            this.permit = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// One pool of HTTP/1.1 connections (TLS or plain, as the endpoint's scheme says), at most
/// its client's bound of them.
struct Pooled {
    client: Bounded<SdkBody>,
    read_timeout: Option<Duration>,
}

impl std::fmt::Debug for Pooled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pooled")
            .field("read_timeout", &self.read_timeout)
            .finish_non_exhaustive()
    }
}

impl Pooled {
    fn new(tls: Arc<rustls::ClientConfig>, (connect, read): Limits, most: usize) -> Self {
        let client = Bounded::new(&tls, connect, POOL_IDLE, most);
        Pooled {
            client,
            read_timeout: read,
        }
    }
}

impl HttpConnector for Pooled {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let request = match request.try_into_http1x() {
            Ok(r) => r,
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e.into()))),
        };
        let sent = self.client.request(request);
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let response = match read_timeout {
                Some(limit) => match tokio::time::timeout(limit, sent).await {
                    Ok(r) => r,
                    Err(_) => {
                        return Err(ConnectorError::timeout(
                            format!("no response within {} ms", limit.as_millis()).into(),
                        ));
                    }
                },
                None => sent.await,
            };
            match response {
                Ok(r) => HttpResponse::try_from(r.map(SdkBody::from_body_1_x))
                    .map_err(|e| ConnectorError::other(e.into(), None)),
                Err(e) => Err(classify(e)),
            }
        })
    }
}

/// The connector of a client whose TLS configuration failed: every request fails, typed.
#[derive(Debug)]
struct Unconfigured(String);

impl HttpConnector for Unconfigured {
    fn call(&self, _request: HttpRequest) -> HttpConnectorFuture {
        HttpConnectorFuture::ready(Err(ConnectorError::user(self.0.clone().into())))
    }
}

/// How a request that got no response failed, read from the client's error chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportFault {
    /// The connect (or a read under a socket timeout) timed out.
    Timeout,
    /// Refused, reset or closed: the request may not have been sent; worth another attempt.
    Io,
    /// hyper refused to send the request as built: the caller's error.
    User,
    /// The response was cut short.
    Incomplete,
    /// Anything else.
    Other,
}

/// Reads a failed request's error chain: a timed-out connect is a timeout; a refused, reset or
/// closed connection is I/O; a request hyper refused to send is the caller's; a response cut
/// short is incomplete.
pub fn transport_fault(e: &hyper_util::client::legacy::Error) -> TransportFault {
    let chain = || std::iter::successors(Some(e as &(dyn StdError + 'static)), |e| (*e).source());
    let io_kind = chain().find_map(|e| e.downcast_ref::<std::io::Error>().map(|io| io.kind()));
    if io_kind == Some(std::io::ErrorKind::TimedOut) {
        return TransportFault::Timeout;
    }
    let hyper = chain().find_map(|e| e.downcast_ref::<hyper::Error>());
    if let Some(h) = hyper {
        if h.is_timeout() {
            return TransportFault::Timeout;
        }
        if h.is_user() {
            return TransportFault::User;
        }
    }
    if e.is_connect()
        || io_kind.is_some()
        || hyper.is_some_and(|h| h.is_closed() || h.is_canceled())
    {
        return TransportFault::Io;
    }
    if hyper.is_some_and(hyper::Error::is_incomplete_message) {
        return TransportFault::Incomplete;
    }
    TransportFault::Other
}

/// The SDK's reading of a failed request (as its own client classifies): timeout, I/O
/// (retryable), the caller's, transient, other.
fn classify(e: hyper_util::client::legacy::Error) -> ConnectorError {
    match transport_fault(&e) {
        TransportFault::Timeout => ConnectorError::timeout(Box::new(e)),
        TransportFault::User => ConnectorError::user(Box::new(e)),
        TransportFault::Io => ConnectorError::io(Box::new(e)),
        TransportFault::Incomplete => {
            ConnectorError::other(Box::new(e) as BoxError, Some(ErrorKind::TransientError))
        }
        TransportFault::Other => ConnectorError::other(Box::new(e), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::watch;

    /// A loopback HTTP/1.1 server counting the connections it accepted and the requests it
    /// read; it answers each request `ok` once `open` says so.
    struct Server {
        url: String,
        connections: Arc<AtomicUsize>,
        requests: Arc<AtomicUsize>,
        open: watch::Sender<bool>,
    }

    async fn server() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let (connections, requests) =
            (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (open, opened) = watch::channel(false);
        let (c, r) = (connections.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let (r, mut opened) = (r.clone(), opened.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    loop {
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            r.fetch_add(1, Ordering::SeqCst);
                            if opened.wait_for(|o| *o).await.is_err() {
                                return;
                            }
                            let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if socket.write_all(reply).await.is_err() {
                                return;
                            }
                        }
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        Server {
            url,
            connections,
            requests,
            open,
        }
    }

    fn client(limit: usize) -> Bounded<Empty<Bytes>> {
        let tls = crate::tls::sdk_tls(false).unwrap();
        Bounded::new(&tls, None, POOL_IDLE, limit)
    }

    fn get(url: &str) -> hyper::Request<Empty<Bytes>> {
        hyper::Request::get(url).body(Empty::new()).unwrap()
    }

    async fn settle() {
        tokio::time::sleep(Duration::from_millis(150)).await;
    }

    /// Twelve requests at once through a client bounded to four: four connections open and
    /// four requests are sent; the rest wait for a connection instead of opening one, and all
    /// twelve are answered once the server answers.
    #[tokio::test]
    async fn a_bounded_client_opens_no_more_connections_than_its_limit() {
        let s = server().await;
        let client = client(4);
        let mut sent = tokio::task::JoinSet::new();
        for _ in 0..12 {
            let (client, request) = (client.clone(), get(&s.url));
            sent.spawn(async move {
                let response = client.request(request).await.unwrap();
                response.into_body().collect().await.unwrap().to_bytes()
            });
        }
        while s.requests.load(Ordering::SeqCst) < 4 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        settle().await;
        assert_eq!(s.connections.load(Ordering::SeqCst), 4);
        assert_eq!(s.requests.load(Ordering::SeqCst), 4);
        s.open.send_replace(true);
        while let Some(body) = sent.join_next().await {
            assert_eq!(body.unwrap(), "ok");
        }
        assert_eq!(s.requests.load(Ordering::SeqCst), 12);
    }

    /// An unbounded client (Bedrock's streams) sends past [`MAX_CONNECTIONS`] requests at once,
    /// each on its own connection, and a limit past tokio's largest is taken as unbounded.
    #[tokio::test]
    async fn an_unbounded_client_opens_a_connection_per_request_in_flight() {
        let s = server().await;
        let tls = crate::tls::sdk_tls(false).unwrap();
        let client: Bounded<Empty<Bytes>> = Bounded::new(&tls, None, POOL_IDLE, usize::MAX);
        let many = MAX_CONNECTIONS + 6;
        let mut sent = tokio::task::JoinSet::new();
        for _ in 0..many {
            let (client, request) = (client.clone(), get(&s.url));
            sent.spawn(async move { client.request(request).await.map(drop) });
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while s.requests.load(Ordering::SeqCst) < many {
            assert!(tokio::time::Instant::now() < deadline, "requests waited");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(s.connections.load(Ordering::SeqCst), many);
        s.open.send_replace(true);
        while let Some(done) = sent.join_next().await {
            done.unwrap().unwrap();
        }
    }

    /// A response's permit is held while its body is unread and given back when the body is
    /// read to its end or dropped: with a limit of one, the next request waits until then.
    #[tokio::test]
    async fn a_permit_is_held_until_the_response_body_ends_or_is_dropped() {
        let s = server().await;
        s.open.send_replace(true);
        let client = client(1);
        let first = client.request(get(&s.url)).await.unwrap();
        let next = tokio::spawn({
            let (client, request) = (client.clone(), get(&s.url));
            async move { client.request(request).await.map(drop) }
        });
        settle().await;
        assert_eq!(
            s.requests.load(Ordering::SeqCst),
            1,
            "sent while a body was unread"
        );
        assert_eq!(first.into_body().collect().await.unwrap().to_bytes(), "ok");
        tokio::time::timeout(Duration::from_secs(5), next)
            .await
            .expect("the next request waited past its body's end")
            .unwrap()
            .unwrap();
        assert_eq!(s.requests.load(Ordering::SeqCst), 2);

        let unread = client.request(get(&s.url)).await.unwrap();
        drop(unread);
        tokio::time::timeout(Duration::from_secs(5), client.request(get(&s.url)))
            .await
            .expect("a dropped body kept its permit")
            .unwrap();
    }
}
