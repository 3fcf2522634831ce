//! A loopback proxy in front of DynamoDB Local: it forwards every request byte for byte and
//! answers a scripted request itself (a DynamoDB error, a stall, a closed socket, or a lost
//! answer) or holds it until told to go on, and keeps a log of every request and what became
//! of it.
#![allow(dead_code)]

use super::http::read_message;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does with a scripted request instead of forwarding it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Injected {
    /// Answer with DynamoDB's JSON error body and this status; DynamoDB never sees the request.
    Error { status: u16, code: &'static str },
    /// Never answer; DynamoDB never sees the request (the SDK's attempt timeout fires).
    Stall,
    /// Close the connection without answering; DynamoDB never sees the request.
    Reset,
    /// Forward the request (DynamoDB applies it), then close without passing the answer on.
    LoseAnswer,
    /// Hold the request until [`Proxy::release`], then forward it ([`Proxy::hold`]).
    Held,
}

/// One request the proxy received.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The DynamoDB operation (`PutItem`, `GetItem`, `Query`, ...).
    pub op: String,
    /// The request's JSON body.
    pub body: Value,
    /// The status DynamoDB answered, when the request reached it.
    pub status: Option<u16>,
    /// The fault injected instead of (or after) forwarding, if any.
    pub injected: Option<Injected>,
}

impl Seen {
    /// DynamoDB applied this request (it reached DynamoDB and was answered 200), whether or
    /// not the client got the answer.
    pub fn applied(&self) -> bool {
        self.status == Some(200)
    }

    /// For an applied `PutItem` of a run: its `run_id`, `version` and `state`.
    pub fn run_write(&self) -> Option<(String, u64, String)> {
        if self.op != "PutItem" || !self.applied() {
            return None;
        }
        let item = &self.body["Item"];
        Some((
            item["run_id"]["S"].as_str()?.to_owned(),
            item["version"]["N"].as_str()?.parse().ok()?,
            item["state"]["S"].as_str()?.to_owned(),
        ))
    }
}

#[derive(Default)]
struct Book {
    seen: Vec<Seen>,
    script: HashMap<usize, Injected>,
    /// The operation held until released, if any.
    hold: Option<&'static str>,
}

/// A running proxy.
#[derive(Clone)]
pub struct Proxy {
    pub url: String,
    book: Arc<Mutex<Book>>,
    released: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Proxy {
    /// Answers the `n`-th request from now on (1-based, counting every request the proxy has
    /// received since it started) with `fault`.
    pub fn inject(&self, n: usize, fault: Injected) {
        self.book.lock().unwrap().script.insert(n, fault);
    }

    /// Requests received so far.
    pub fn count(&self) -> usize {
        self.book.lock().unwrap().seen.len()
    }

    /// Every request received so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.book.lock().unwrap().seen.clone()
    }

    /// Faults injected so far.
    pub fn injected(&self) -> usize {
        self.seen().iter().filter(|s| s.injected.is_some()).count()
    }

    /// Holds every `op` request received from now on until [`Proxy::release`].
    pub fn hold(&self, op: &'static str) {
        self.book.lock().unwrap().hold = Some(op);
    }

    /// Forwards the held requests, and holds no more.
    pub fn release(&self) {
        self.book.lock().unwrap().hold = None;
        self.released.send_replace(true);
    }

    /// The requests held now (not forwarded yet).
    pub fn held(&self) -> Vec<Seen> {
        let seen = self.seen().into_iter();
        seen.filter(|s| s.injected == Some(Injected::Held) && s.status.is_none())
            .collect()
    }
}

/// Starts a proxy forwarding to `upstream` (`http://127.0.0.1:PORT`).
pub async fn start(upstream: &str) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let upstream = upstream.trim_start_matches("http://").to_owned();
    let book = Arc::new(Mutex::new(Book::default()));
    let released = Arc::new(tokio::sync::watch::channel(false).0);
    let (shared, go) = (book.clone(), released.clone());
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let go = go.subscribe();
            tokio::spawn(serve(client, upstream.clone(), shared.clone(), go));
        }
    });
    Proxy {
        url,
        book,
        released,
    }
}

async fn serve(
    mut client: TcpStream,
    upstream: String,
    book: Arc<Mutex<Book>>,
    mut released: tokio::sync::watch::Receiver<bool>,
) {
    let mut from_client = Vec::new();
    let mut up: Option<(TcpStream, Vec<u8>)> = None;
    while let Some(req) = read_message(&mut client, &mut from_client).await {
        let op = req
            .header("x-amz-target")
            .and_then(|t| t.rsplit('.').next().map(str::to_owned))
            .unwrap_or_default();
        let body = serde_json::from_slice(req.body()).unwrap_or(Value::Null);
        let (index, fault) = {
            let mut b = book.lock().unwrap();
            b.seen.push(Seen {
                op,
                body,
                status: None,
                injected: None,
            });
            let index = b.seen.len();
            let held = b.hold.is_some_and(|op| op == b.seen[index - 1].op);
            let fault = b.script.remove(&index).or(held.then_some(Injected::Held));
            b.seen[index - 1].injected = fault;
            (index, fault)
        };
        match fault {
            Some(Injected::Error { status, code }) => {
                if client
                    .write_all(&super::dynamodb::error_response(status, code))
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
            Some(Injected::Stall) => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Some(Injected::Reset) => return,
            Some(Injected::Held) => {
                if released.wait_for(|go| *go).await.is_err() {
                    return;
                }
            }
            Some(Injected::LoseAnswer) | None => {}
        }
        if up.is_none() {
            let Ok(s) = TcpStream::connect(&upstream).await else {
                return;
            };
            up = Some((s, Vec::new()));
        }
        let Some((stream, buf)) = up.as_mut() else {
            return;
        };
        if stream.write_all(&req.raw).await.is_err() {
            return;
        }
        let Some(resp) = read_message(stream, buf).await else {
            return;
        };
        book.lock().unwrap().seen[index - 1].status = resp.status();
        if resp
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            up = None;
        }
        if fault == Some(Injected::LoseAnswer) {
            return;
        }
        if client.write_all(&resp.raw).await.is_err() {
            return;
        }
    }
}
