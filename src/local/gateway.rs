//! The emulator's server: one loopback port serving WebSocket upgrades (`$connect`, any path),
//! the `@connections` management API and the chat page, until the shutdown future resolves.

use super::access::{Access, Endpoint};
use super::events;
use super::http::{self, json_response};
use super::ids::IdGen;
use super::lambda_api;
use super::management;
use super::page;
use super::registry::Registry;
use super::signature::InvokeKey;
use super::state::{Gateway, Invoked};
use super::upgrade;
use super::{IDLE_TIMEOUT, LAMBDA_TIMEOUT, MAX_CONNECTION_AGE, SHUTDOWN_GRACE, SWEEP_INTERVAL};
use crate::config::Config;
use crate::dispatch::lambda::LambdaInvoker;
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
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// Pause after a failed `accept` (e.g. out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How `run` serves: the function's configuration and store, and the emulated limits.
pub struct ServeOptions {
    /// The function's configuration; `connections_endpoint` is replaced by this server's.
    pub config: Config,
    pub store: Arc<dyn Store>,
    /// Where run events are pushed; `None`: the function's real `@connections` notifier (signed
    /// posts), aimed at this server (what a deployed function does against API Gateway).
    pub notifier: Option<Arc<dyn Notifier>>,
    /// Closes a connection with no message in either direction for this long (1001).
    pub idle_timeout: Duration,
    /// Closes every connection this long after it opened (1001).
    pub max_connection_age: Duration,
    /// Runs the sweep this often (`None`: never), like the template's EventBridge schedule.
    pub sweep_interval: Option<Duration>,
    /// Receives every WebSocket invocation the emulator makes (tests, tooling).
    pub observer: Option<mpsc::UnboundedSender<Invoked>>,
    /// Registers the agents the environment configures (`llm` from `LLM_*`), as the deployed
    /// function does; off for tests that build their own configuration.
    pub agents_from_env: bool,
    /// Origins besides loopback ones whose pages may open WebSockets (`--allow-origin`).
    pub allowed_origins: Vec<String>,
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
            agents_from_env: false,
            allowed_origins: Vec::new(),
        }
    }
}

/// The notifier a deployed function has: SigV4-signed `@connections` posts. Region and
/// credentials come from the environment like Lambda's; without them, placeholders (the
/// emulator ignores signatures, but a post needs something to sign with).
fn function_notifier() -> ApiGatewayNotifier {
    let (region, credentials) = local_credentials();
    ApiGatewayNotifier::new(&region, credentials)
}

/// The region and credentials the function's SDK clients sign with locally: the environment's,
/// else placeholders (the emulator ignores signatures, but the SDK needs something to sign with).
fn local_credentials() -> (String, Credentials) {
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
    (region, credentials)
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
    let notifier = opts
        .notifier
        .unwrap_or_else(|| Arc::new(function_notifier()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let ids = IdGen::new();
    // The function's Lambda client signs with credentials only this process knows, so the
    // Invoke API can tell its worker invocations from anyone else's requests.
    let invoke_key = InvokeKey::generate(&ids);
    let (region, _) = local_credentials();
    let invoker = LambdaInvoker::new(
        &region,
        invoke_key.credentials(),
        Some(&format!("http://{addr}")),
    );
    let mut mgr = Manager::new(config, opts.store, notifier).with_invoker(Arc::new(invoker));
    if opts.agents_from_env {
        mgr = mgr
            .with_env_agents(|k| std::env::var(k).ok())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    }
    let gw = Arc::new(Gateway {
        mgr,
        api_id: ids.api_id(),
        ids,
        domain_name: addr.to_string(),
        port: addr.port(),
        registry: Registry::default(),
        access: Access::new(opts.allowed_origins),
        invoke_key,
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
    gw.mgr.shut_down_agents().await;
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

/// Dispatches one HTTP request with an acceptable head and a loopback `Host`: the management
/// API, a WebSocket upgrade, the chat page (a plain `GET /`), or neither (426, as API Gateway
/// answers). Each is refused (403) first when its `Origin` is not one it takes.
async fn route(
    gw: Arc<Gateway>,
    peer: SocketAddr,
    req: Request<Incoming>,
    done: mpsc::Sender<()>,
) -> Response<Full<Bytes>> {
    if let Err(refused) = http::check_head(&req) {
        return *refused;
    }
    let management = management::target(req.uri().path());
    let invoke = lambda_api::is_invoke(req.uri().path());
    let upgrade = upgrade::is_websocket_upgrade(&req);
    let endpoint = match (management.is_some() || invoke, upgrade) {
        (true, _) => Endpoint::Api,
        (false, true) => Endpoint::Upgrade,
        (false, false) => Endpoint::Page,
    };
    if let Err(refused) = gw.access.check(&req, endpoint) {
        return *refused;
    }
    if let Some(target) = management {
        return management::handle(&gw, target, req).await;
    }
    if invoke {
        return lambda_api::handle(gw, req, done).await;
    }
    if upgrade {
        return upgrade::accept(gw, peer, req, done).await;
    }
    if page::is_page_request(&req) {
        return page::response(&req);
    }
    let mut resp = json_response(
        StatusCode::UPGRADE_REQUIRED,
        r#"{"message":"Upgrade Required"}"#.into(),
    );
    resp.headers_mut()
        .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    resp
}
