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
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::error::Error as StdError;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type BoxError = Box<dyn StdError + Send + Sync>;

/// How long an idle pooled connection is kept: under the 60 s after which AWS front ends
/// close idle connections, so a reused connection is rarely one the server already dropped.
const POOL_IDLE: Duration = Duration::from_secs(50);

/// Hands the SDK one connector per distinct time-limit setting, so every request of a client
/// shares one connection pool.
#[derive(Debug)]
pub struct Http1Client {
    tls: Result<Arc<rustls::ClientConfig>, super::TlsError>,
    connectors: Mutex<Vec<(Limits, SharedHttpConnector)>>,
}

type Limits = (Option<Duration>, Option<Duration>);

impl Http1Client {
    /// A client trusting what `tls` trusts; without a configuration every request fails with
    /// that error (as the SDK's client does when its TLS context cannot be built).
    pub fn new(tls: Result<Arc<rustls::ClientConfig>, super::TlsError>) -> Self {
        Http1Client {
            tls,
            connectors: Mutex::new(Vec::new()),
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
            Ok(tls) => SharedHttpConnector::new(Pooled::new(tls.clone(), limits)),
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
    let mut tcp = TcpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(connect);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls.clone())
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(idle)
        .build(https)
}

/// One pool of HTTP/1.1 connections (TLS or plain, as the endpoint's scheme says).
struct Pooled {
    client: Client<HttpsConnector<TcpConnector>, SdkBody>,
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
    fn new(tls: Arc<rustls::ClientConfig>, (connect, read): Limits) -> Self {
        let client = pooled_client(&tls, connect, POOL_IDLE);
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
