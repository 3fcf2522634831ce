//! The emulator's server: one loopback port serving WebSocket upgrades (`$connect`, any path)
//! and the `@connections` management API, until the shutdown future resolves.

use super::connection::{self, Registry};
use super::events::{self, ConnectionContext, UpgradeRequest};
use super::ids::IdGen;
use super::{
    IDLE_TIMEOUT, LAMBDA_TIMEOUT, MAX_CONNECTION_AGE, SHUTDOWN_GRACE, STAGE, SWEEP_INTERVAL,
    management,
};
use crate::config::Config;
use crate::event::WsResponse;
use crate::handler::{Output, handle};
use crate::manager::Manager;
use crate::notify::Notifier;
use crate::notify::apigw::ApiGatewayNotifier;
use crate::store::Store;
use crate::time::now_ms;
use aws_credential_types::Credentials;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::Value;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// Pause after a failed `accept` (e.g. out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How `run` serves: the function's configuration and store, and the emulated limits.
pub struct ServeOptions {
    /// The function's configuration; `connections_endpoint` is replaced by this server's.
    pub config: Config,
    pub store: Arc<dyn Store>,
    /// Where run events are pushed; `None`: the real `@connections` SDK client, aimed at this
    /// server (what a deployed function does against API Gateway).
    pub notifier: Option<Arc<dyn Notifier>>,
    /// Closes a connection with no message in either direction for this long (1001).
    pub idle_timeout: Duration,
    /// Closes every connection this long after it opened (1001).
    pub max_connection_age: Duration,
    /// Runs the sweep this often (`None`: never), like the template's EventBridge schedule.
    pub sweep_interval: Option<Duration>,
    /// Receives every WebSocket invocation the emulator makes (tests, tooling).
    pub observer: Option<mpsc::UnboundedSender<Invoked>>,
}

impl ServeOptions {
    /// API Gateway's defaults over `config` and `store`.
    pub fn new(config: Config, store: Arc<dyn Store>) -> ServeOptions {
        ServeOptions {
            config,
            store,
            notifier: None,
            idle_timeout: IDLE_TIMEOUT,
            max_connection_age: MAX_CONNECTION_AGE,
            sweep_interval: Some(SWEEP_INTERVAL),
            observer: None,
        }
    }
}

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
    pub(crate) idle_timeout: Duration,
    pub(crate) max_connection_age: Duration,
    observer: Option<mpsc::UnboundedSender<Invoked>>,
    shutdown: watch::Receiver<bool>,
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

    /// Resolves once shutdown has begun.
    pub(crate) fn shutdown_signal(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.shutdown.clone();
        async move {
            let _ = rx.wait_for(|stopping| *stopping).await;
        }
    }
}

/// The notifier a deployed function has: the `@connections` SDK client. Region and credentials
/// come from the environment like Lambda's; without them, placeholders (the emulator ignores
/// signatures, but the SDK needs something to sign with).
fn sdk_notifier() -> ApiGatewayNotifier {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let region = env("AWS_REGION")
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".into());
    let credentials = Credentials::new(
        env("AWS_ACCESS_KEY_ID").unwrap_or_else(|| "wsexec-local".into()),
        env("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|| "wsexec-local".into()),
        env("AWS_SESSION_TOKEN"),
        None,
        "wsexec-local",
    );
    ApiGatewayNotifier::new(&region, credentials)
}

/// Serves `listener` until `shutdown` resolves, then closes every connection with 1001 (each
/// gets its `$disconnect`) and waits, up to [`SHUTDOWN_GRACE`], for all of them to finish.
pub async fn run(
    listener: TcpListener,
    opts: ServeOptions,
    shutdown: impl Future,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let mut config = opts.config;
    config.connections_endpoint = Some(format!("http://{addr}"));
    let notifier = opts.notifier.unwrap_or_else(|| Arc::new(sdk_notifier()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let ids = IdGen::new();
    let gw = Arc::new(Gateway {
        mgr: Manager::new(config, opts.store, notifier),
        api_id: ids.api_id(),
        ids,
        domain_name: addr.to_string(),
        port: addr.port(),
        registry: Registry::default(),
        idle_timeout: opts.idle_timeout,
        max_connection_age: opts.max_connection_age,
        observer: opts.observer,
        shutdown: stop_rx,
    });
    // Every task holds a clone; when all are dropped, every task has finished (mini-redis).
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    if let Some(every) = opts.sweep_interval {
        let (gw, done) = (gw.clone(), done_tx.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = sweep_loop(&gw, every) => {}
                _ = gw.shutdown_signal() => {}
            }
            drop(done);
        });
    }
    tokio::select! {
        _ = accept_loop(&listener, &gw, &done_tx) => {}
        _ = shutdown => {}
    }
    // Refuse new connections at once rather than leave them in the backlog.
    drop(listener);
    let _ = stop_tx.send(true);
    drop(done_tx);
    if tokio::time::timeout(SHUTDOWN_GRACE, done_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; abandoning unfinished connections");
    }
    Ok(())
}

/// Runs the sweep every `every` (first run one interval in), as EventBridge would.
async fn sweep_loop(gw: &Gateway, every: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let event = events::scheduled(&gw.ids, now_ms()).to_string();
        let deadline = now_ms() + LAMBDA_TIMEOUT.as_millis() as u64;
        match handle(&event, Ok(&gw.mgr), Some(deadline)).await {
            Ok(Output::Sweep(report)) => {
                tracing::debug!(report = %serde_json::to_string(&report).unwrap_or_default(), "sweep");
            }
            Ok(Output::WebSocket(_) | Output::Worker(_)) => {}
            Err(e) => tracing::warn!(error = %e, "sweep failed"),
        }
    }
}

/// Accepts connections until dropped by `run`'s shutdown.
async fn accept_loop(listener: &TcpListener, gw: &Arc<Gateway>, done: &mpsc::Sender<()>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            // A connection reset before accept, or fd exhaustion, must not stop the server.
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_tcp(gw.clone(), stream, peer, done.clone()));
    }
}

/// Serves one TCP connection: HTTP/1.1 requests until it upgrades or closes.
async fn serve_tcp(gw: Arc<Gateway>, stream: TcpStream, peer: SocketAddr, done: mpsc::Sender<()>) {
    let svc_gw = gw.clone();
    let svc_done = done.clone();
    let service = service_fn(move |req| {
        let gw = svc_gw.clone();
        let done = svc_done.clone();
        async move { Ok::<_, Infallible>(route(gw, peer, req, done).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(error = %e, "http connection ended");
            }
        }
        _ = gw.shutdown_signal() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
    drop(done);
}

/// Dispatches one HTTP request: the management API, a WebSocket upgrade, or neither.
async fn route(
    gw: Arc<Gateway>,
    peer: SocketAddr,
    req: Request<Incoming>,
    done: mpsc::Sender<()>,
) -> Response<Full<Bytes>> {
    if let Some(id) = management::connection_id(req.uri().path()) {
        return management::handle(&gw, &id, req).await;
    }
    if is_websocket_upgrade(&req) {
        return accept(gw, peer, req, done).await;
    }
    let mut resp = json_response(
        StatusCode::UPGRADE_REQUIRED,
        r#"{"message":"Upgrade Required"}"#.into(),
    );
    resp.headers_mut()
        .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    resp
}

fn is_websocket_upgrade(req: &Request<Incoming>) -> bool {
    let has_token = |name: header::HeaderName, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
                .unwrap_or(false)
        })
    };
    req.method() == hyper::Method::GET
        && has_token(header::CONNECTION, "upgrade")
        && has_token(header::UPGRADE, "websocket")
}

/// A response with a JSON (or empty) body.
pub(crate) fn json_response(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// `$connect`: builds the CONNECT event, lets the function decide, then upgrades (the function
/// accepted) or answers the upgrade request with the function's status (it refused).
async fn accept(
    gw: Arc<Gateway>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
    done: mpsc::Sender<()>,
) -> Response<Full<Bytes>> {
    let Some(accept_key) = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| derive_accept_key(k.as_bytes()))
    else {
        return json_response(
            StatusCode::BAD_REQUEST,
            r#"{"message":"Sec-WebSocket-Key is required"}"#.into(),
        );
    };
    if req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        let mut resp = json_response(
            StatusCode::UPGRADE_REQUIRED,
            r#"{"message":"Unsupported WebSocket version"}"#.into(),
        );
        resp.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return resp;
    }
    let now = now_ms();
    let ctx = ConnectionContext {
        api_id: gw.api_id.clone(),
        domain_name: gw.domain_name.clone(),
        stage: STAGE.to_owned(),
        connection_id: gw.registry.fresh_id(&gw.ids),
        connected_at_ms: now,
        source_ip: peer.ip().to_string(),
    };
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let upgrade = UpgradeRequest {
        headers,
        query: req.uri().query().map(str::to_owned),
        port: gw.port,
    };
    let event = events::connect(&ctx, &gw.ids, &upgrade, now);
    let decision = match gw.invoke(event).await {
        Ok(r) => r,
        Err(_) => {
            return json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"message":"Internal server error"}"#.into(),
            );
        }
    };
    if !(200..300).contains(&decision.status_code) {
        // API Gateway answers a refused $connect with the function's status; no upgrade.
        let status =
            StatusCode::from_u16(decision.status_code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return json_response(status, decision.body.unwrap_or_default());
    }
    let protocol = decision
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-protocol"))
        .and_then(|(_, v)| HeaderValue::from_str(v).ok());

    // Registered before the 101 goes out, so a push racing the upgrade is queued, not lost.
    let (handle, rx) = connection::Handle::new(&ctx, user_agent);
    gw.registry.insert(&ctx.connection_id, handle.clone());
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                connection::serve(gw, ctx, handle, TokioIo::new(upgraded), rx, done).await
            }
            Err(e) => {
                tracing::info!(error = %e, "upgrade failed after $connect");
                gw.registry.remove(&ctx.connection_id);
                let event = events::disconnect(
                    &ctx,
                    &gw.ids,
                    1006,
                    "Connection closed abnormally",
                    now_ms(),
                );
                let _ = gw.invoke(event).await;
                drop(done);
            }
        }
    });

    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept_key) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(p) = protocol {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, p);
    }
    resp
}
