//! The real model for the end-to-end tests: llama.cpp's OpenAI-compatible server with
//! SmolLM2-135M (`WSEXEC_LLM_URL`, or started through `tools/llm-server`), and a loopback proxy
//! in front of it that records each request body, can slow the answer down to a given link
//! speed, and reports when its client (wsexec) let go of a connection.
//! Include as `mod support;` (`support::llm_server`) or next to `#[path = "support/http.rs"] mod http;`.
#![allow(dead_code)]

use super::http::read_message;
use serde_json::Value;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The model server in use, stopped on drop when this process started it (also when an
/// assertion fails). Holding it is holding the model: see [`TURN`].
pub struct Server {
    /// Its `/v1` base URL.
    pub url: String,
    pid: Option<String>,
    _turn: MutexGuard<'static, ()>,
}

/// llama-cpp-python's server ends a running stream when another request arrives
/// (`interrupt_requests`), so the tests of one process take turns on the model.
static TURN: Mutex<()> = Mutex::new(());

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(pid) = &self.pid {
            let _ = std::process::Command::new(script())
                .args(["stop", pid])
                .status();
        }
    }
}

fn script() -> String {
    format!("{}/tools/llm-server", env!("CARGO_MANIFEST_DIR"))
}

/// The server at `WSEXEC_LLM_URL`, or one started on a free loopback port. Without either the
/// calling test fails: it is meant to run on the real model.
pub fn server() -> Server {
    // A test that failed while holding its turn leaves nothing behind to protect.
    let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    if let Ok(url) = std::env::var("WSEXEC_LLM_URL") {
        return Server {
            url,
            pid: None,
            _turn: turn,
        };
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = std::process::Command::new(script())
        .args(["start", &port.to_string()])
        .output()
        .expect("tools/llm-server could not be run");
    assert!(
        out.status.success(),
        "tools/llm-server start failed (install it with `tools/llm-server install`):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Server {
        url: format!("http://127.0.0.1:{port}/v1"),
        pid: Some(pid),
        _turn: turn,
    }
}

/// The (role, content) of each message of a Chat Completions request body, in order.
pub fn turns(body: &Value) -> Vec<(String, String)> {
    body["messages"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| {
                    let field = |k: &str| m[k].as_str().unwrap_or_default().to_owned();
                    (field("role"), field("content"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// How fast the proxy passes the model's answer on: at most `bytes` per `every` (a model behind
/// a slow link). One streamed Chat Completions event from llama.cpp is about 240 bytes.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    pub bytes: usize,
    pub every: Duration,
}

/// How one proxied connection ended: its client closed it, and whether the model's answer had
/// been passed on to its end (`data: [DONE]`) by then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Closed {
    pub answer_complete: bool,
}

/// A running proxy: its `/v1` URL, the request bodies it forwarded, and connection closes.
pub struct Proxy {
    pub url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
    closed: mpsc::UnboundedReceiver<Closed>,
}

impl Proxy {
    /// Every request body forwarded so far, in order.
    pub fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }

    /// Waits (bounded) for the next connection its client closed.
    pub async fn next_closed(&mut self, within: Duration) -> Option<Closed> {
        tokio::time::timeout(within, self.closed.recv())
            .await
            .ok()
            .flatten()
    }
}

/// Starts a proxy to `upstream` (a `/v1` URL), passing answers on at `pace` (`None`: at once).
pub async fn proxy(upstream: &str, pace: Option<Pace>) -> Proxy {
    let upstream = upstream
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let (closed_tx, closed) = mpsc::unbounded_channel();
    let recorded = bodies.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (recorded, closed_tx, upstream) =
                (recorded.clone(), closed_tx.clone(), upstream.clone());
            tokio::spawn(async move {
                if let Some(closed) = forward(client, &upstream, pace, &recorded).await {
                    let _ = closed_tx.send(closed);
                }
            });
        }
    });
    Proxy {
        url,
        bodies,
        closed,
    }
}

/// The end of a chunked body: the last data chunk's CRLF, then the zero-size chunk.
const LAST_CHUNK: &[u8] = b"\r\n0\r\n\r\n";

/// The Chat Completions stream's last event.
const DONE: &[u8] = b"data: [DONE]";

/// Forwards one request and passes its answer back at `pace` until the answer ends and the
/// client closes, or the client closes first (then the model's connection is dropped too).
async fn forward(
    mut client: TcpStream,
    upstream: &str,
    pace: Option<Pace>,
    recorded: &Mutex<Vec<Value>>,
) -> Option<Closed> {
    let mut buf = Vec::new();
    let msg = read_message(&mut client, &mut buf).await?;
    recorded
        .lock()
        .unwrap()
        .push(serde_json::from_slice(msg.body()).unwrap_or(Value::Null));
    let mut server = TcpStream::connect(upstream).await.ok()?;
    server.write_all(&msg.raw).await.ok()?;
    let (mut from_client, mut to_client) = client.into_split();
    let size = pace.map_or(16 * 1024, |p| p.bytes);
    let mut chunk = vec![0u8; size];
    let mut client_gone = [0u8; 64];
    // The model's last event passed on (a client may close right after it), and the end of
    // the chunked body read (the model's server may keep its side open for the next request).
    let (mut answer_complete, mut body_ended) = (false, false);
    // The response's status line, until it is whole and marked.
    let (mut head, mut head_marked) = (Vec::new(), false);
    let mut window: Vec<u8> = Vec::new();
    loop {
        tokio::select! {
            // wsexec sends nothing after its request: a read that ends is its close.
            r = from_client.read(&mut client_gone) => {
                if matches!(r, Ok(0) | Err(_)) {
                    return Some(Closed { answer_complete });
                }
            }
            r = server.read(&mut chunk), if !body_ended => match r {
                Ok(0) | Err(_) => {
                    (answer_complete, body_ended) = (true, true);
                    let _ = to_client.shutdown().await;
                }
                Ok(n) => {
                    // The proxy answers one request per connection: its response says so
                    // (`connection: close`), so a client does not keep the connection for the
                    // next request.
                    let mut out = chunk[..n].to_vec();
                    if !head_marked {
                        head.extend_from_slice(&out);
                        let Some(i) = head.windows(2).position(|w| w == b"\r\n") else {
                            continue;
                        };
                        out = head.split_off(i + 2);
                        head.extend_from_slice(b"connection: close\r\n");
                        head.extend_from_slice(&out);
                        out = std::mem::take(&mut head);
                        head_marked = true;
                    }
                    if to_client.write_all(&out).await.is_err() {
                        return Some(Closed { answer_complete });
                    }
                    window.extend_from_slice(&chunk[..n]);
                    answer_complete |= window.windows(DONE.len()).any(|w| w == DONE);
                    body_ended = window.ends_with(LAST_CHUNK);
                    answer_complete |= body_ended;
                    window.drain(..window.len().saturating_sub(DONE.len()));
                    if let Some(p) = pace {
                        tokio::time::sleep(p.every).await;
                    }
                }
            },
        }
    }
}
