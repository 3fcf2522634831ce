//! A loopback proxy in front of DynamoDB Local: it forwards every request byte for byte and
//! answers a scripted request itself (a DynamoDB error, a stall, a closed socket, or a lost
//! answer), and keeps a log of every request and what became of it.
#![allow(dead_code)]

use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
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
}

/// A running proxy.
#[derive(Clone)]
pub struct Proxy {
    pub url: String,
    book: Arc<Mutex<Book>>,
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
}

/// Starts a proxy forwarding to `upstream` (`http://127.0.0.1:PORT`).
pub async fn start(upstream: &str) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let upstream = upstream.trim_start_matches("http://").to_owned();
    let book = Arc::new(Mutex::new(Book::default()));
    let shared = book.clone();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(serve(client, upstream.clone(), shared.clone()));
        }
    });
    Proxy { url, book }
}

/// One HTTP/1.1 message read off a stream: its raw bytes and its parsed head.
struct Message {
    raw: Vec<u8>,
    head: String,
    body_start: usize,
}

impl Message {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    fn body(&self) -> &[u8] {
        &self.raw[self.body_start..]
    }

    fn status(&self) -> Option<u16> {
        self.head.split_whitespace().nth(1)?.parse().ok()
    }
}

/// Reads one message (head, then a `Content-Length` or chunked body); `None` at end of stream.
async fn read_message<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> Option<Message> {
    let mut chunk = [0u8; 16 * 1024];
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = r.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let body_start = end + 4;
    let probe = Message {
        raw: Vec::new(),
        head,
        body_start,
    };
    let chunked = probe
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let total = if chunked {
        loop {
            if let Some(len) = chunked_len(&buf[body_start..]) {
                break body_start + len;
            }
            let n = r.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
            buf.extend_from_slice(&chunk[..n]);
        }
    } else {
        let len: usize = probe
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < body_start + len {
            let n = r.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
            buf.extend_from_slice(&chunk[..n]);
        }
        body_start + len
    };
    let raw: Vec<u8> = buf.drain(..total).collect();
    Some(Message { raw, ..probe })
}

/// The length of a complete chunked body at the start of `b`, if it is all there.
fn chunked_len(b: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let line_end = at + b[at..].windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&b[at..line_end])
                .split(';')
                .next()?
                .trim(),
            16,
        )
        .ok()?;
        at = line_end + 2 + size + 2;
        if b.len() < at {
            return None;
        }
        if size == 0 {
            return Some(at);
        }
    }
}

fn error_response(status: u16, code: &str) -> Vec<u8> {
    let body = format!(
        r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{code}","message":"injected {code}"}}"#
    );
    format!(
        "HTTP/1.1 {status} Fault\r\nContent-Type: application/x-amz-json-1.0\r\nx-amzn-RequestId: FAULT\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn serve(mut client: TcpStream, upstream: String, book: Arc<Mutex<Book>>) {
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
            let fault = b.script.remove(&index);
            b.seen[index - 1].injected = fault;
            (index, fault)
        };
        match fault {
            Some(Injected::Error { status, code }) => {
                if client
                    .write_all(&error_response(status, code))
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
