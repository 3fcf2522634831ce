//! A gateway emulator on port 0 with an in-memory store, observed invocations and WebSocket
//! client helpers, for `tests/local_gateway.rs`.

#![allow(dead_code)]

use aws_sdk_apigatewaymanagement::config::{BehaviorVersion, Credentials, Region};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wsexec::Config;
use wsexec::context::Mode;
use wsexec::local::{Invoked, ServeOptions};
use wsexec::store::Store;
use wsexec::store::embedded::EmbeddedStore;

/// A client socket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Longest wait for anything the gateway is expected to do.
pub const WAIT: Duration = Duration::from_secs(15);

/// The five run events, in order.
pub const RUN_EVENTS: [&str; 5] = [
    "agent_started",
    "agent_thinking",
    "tool_executing",
    "tool_completed",
    "agent_completed",
];

/// A running gateway.
pub struct Gateway {
    pub addr: SocketAddr,
    pub store: Arc<EmbeddedStore>,
    invoked: mpsc::UnboundedReceiver<Invoked>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

/// The test configuration: `--dev-auth`, local mode, no JWT.
pub fn dev_config() -> Config {
    Config {
        dev_auth: true,
        mode: Mode::Local,
        ..Config::default()
    }
}

impl Gateway {
    /// Starts a gateway with `config`, letting `tune` adjust the options.
    pub async fn start(config: Config, tune: impl FnOnce(&mut ServeOptions)) -> Gateway {
        let store = Arc::new(EmbeddedStore::in_memory().expect("in-memory store"));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, invoked) = mpsc::unbounded_channel();
        let mut opts = ServeOptions::new(config, store.clone());
        opts.observer = Some(tx);
        tune(&mut opts);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(wsexec::local::run(listener, opts, async move {
            let _ = stopped.await;
        }));
        Gateway {
            addr,
            store,
            invoked,
            stop: Some(stop),
            task,
        }
    }

    /// A dev-auth gateway with API Gateway's default limits.
    pub async fn dev() -> Gateway {
        Gateway::start(dev_config(), |_| {}).await
    }

    /// `ws://{addr}{path_and_query}`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("ws://{}{}", self.addr, path_and_query)
    }

    /// Connects as `user` (dev auth) and returns the socket and its connection id.
    pub async fn connect_user(&mut self, user: &str) -> (Ws, String) {
        let (ws, _) = tokio_tungstenite::connect_async(self.url(&format!("/?user_id={user}")))
            .await
            .expect("connect");
        let connect = self.next_invocation("CONNECT", None).await;
        (ws, connect.connection_id().to_owned())
    }

    /// The run `run_id` of `user` as stored; panics if it is not there.
    pub async fn stored_run(&self, user: &str, run_id: &str) -> wsexec::store::RunRecord {
        self.store
            .get_run(user.into(), run_id)
            .await
            .expect("store readable")
            .expect("run stored")
    }

    /// The next invocation of `event_type` (for `connection_id`, when given), skipping others.
    pub async fn next_invocation(
        &mut self,
        event_type: &str,
        connection_id: Option<&str>,
    ) -> Invoked {
        let wanted = async {
            loop {
                let inv = self.invoked.recv().await.expect("gateway stopped");
                if inv.event_type() == event_type
                    && connection_id.is_none_or(|c| inv.connection_id() == c)
                {
                    return inv;
                }
            }
        };
        timeout(WAIT, wanted)
            .await
            .unwrap_or_else(|_| panic!("no {event_type} invocation within {WAIT:?}"))
    }

    /// Stops the gateway (graceful shutdown) and waits for `run` to return.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let res = timeout(WAIT, &mut self.task)
            .await
            .expect("run returns after shutdown");
        res.expect("run task").expect("run result");
    }

    /// Begins a graceful shutdown without waiting for it.
    pub fn begin_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits for `run` to return after [`Gateway::begin_stop`].
    pub async fn stopped(&mut self) {
        let res = timeout(WAIT, &mut self.task)
            .await
            .expect("run returns after shutdown");
        res.expect("run task").expect("run result");
    }
}

/// Sends a JSON frame.
pub async fn send_json(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.expect("send");
}

/// The next text frame as JSON, skipping control frames.
pub async fn recv_json(ws: &mut Ws) -> Value {
    let next = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    return serde_json::from_str::<Value>(&t).expect("JSON frame");
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    };
    timeout(WAIT, next).await.expect("a frame within the wait")
}

/// The close frame the server sends next, skipping anything before it.
pub async fn recv_close(ws: &mut Ws) -> Option<CloseFrame> {
    let next = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(f))) => return f,
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    };
    timeout(WAIT, next)
        .await
        .expect("a close frame within the wait")
}

/// A `start_agent` request.
pub fn start_agent(request_id: &str, text: &str) -> Value {
    json!({ "type": "start_agent", "request_id": request_id, "payload": { "user_request": text } })
}

/// Receives the five run events of one run and returns them, checking order and ids.
pub async fn recv_run(ws: &mut Ws, request_id: &str) -> Vec<Value> {
    let mut events = Vec::new();
    for expected in RUN_EVENTS {
        let ev = recv_json(ws).await;
        assert_eq!(ev["type"], expected, "run events out of order: {ev}");
        assert_eq!(
            ev["request_id"], request_id,
            "an event of another request: {ev}"
        );
        events.push(ev);
    }
    let run_id = &events[0]["run_id"];
    assert!(run_id.is_string());
    assert!(
        events.iter().all(|e| &e["run_id"] == run_id),
        "run ids differ: {events:?}"
    );
    events
}

/// A client request for `url` with extra headers.
pub fn request_with(
    url: &str,
    headers: &[(&'static str, &str)],
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut req = url.into_client_request().expect("request");
    for (k, v) in headers {
        req.headers_mut()
            .insert(*k, v.parse().expect("header value"));
    }
    req
}

/// The credentials the tests' `@connections` clients sign with (the emulator does not check).
pub fn local_credentials() -> Credentials {
    Credentials::new("AKIDLOCAL", "local-secret", None, None, "test")
}

/// A `@connections` client aimed at the emulator, configured like the function's.
pub fn management_client(gw: &Gateway) -> aws_sdk_apigatewaymanagement::Client {
    let conf = aws_sdk_apigatewaymanagement::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(local_credentials())
        .endpoint_url(format!("http://{}", gw.addr))
        .http_client(wsexec::tls::https_client(false))
        .sleep_impl(aws_smithy_async::rt::sleep::TokioSleep::new())
        .build();
    aws_sdk_apigatewaymanagement::Client::from_conf(conf)
}

/// The HTTP status of a refused upgrade.
pub async fn refused_status(req: impl IntoClientRequest + Unpin) -> u16 {
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("expected the upgrade to be refused"),
    }
}
