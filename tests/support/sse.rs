//! A loopback endpoint answering like the Chat Completions API, scripted per request (event
//! streams split anywhere, error statuses, stalls, resets), and a recorder of agent events.
//! Replies go out in the order requests arrive ([`ChatServer::start`]), or are chosen from
//! each request's body ([`ChatServer::start_by`]) when runs side by side make the order moot.
//! Include with `#[path = "support/sse.rs"] mod sse;` next to `#[path = "support/http.rs"] mod http;`.
#![allow(dead_code)]

use crate::http::read_message;
use async_trait::async_trait;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// One step of a streamed (chunked) 200 response.
#[derive(Clone, Debug)]
pub enum Step {
    /// Bytes sent as one HTTP chunk.
    Send(Vec<u8>),
    /// A pause before the next step.
    Sleep(Duration),
    /// Send nothing more and keep the connection open until the client closes it.
    Stall,
    /// Close the connection abruptly (TCP reset) without ending the body.
    Reset,
}

/// The answer to one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// `200 text/event-stream`, chunked, with these steps; the body ends after the last one.
    Stream(Vec<Step>),
    /// The same with another content type (Bedrock's `application/vnd.amazon.eventstream`).
    StreamAs(&'static str, Vec<Step>),
    /// A plain response with a status, extra headers and a body.
    Status {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
}

/// One request as received.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub head: String,
    pub body: Value,
    /// When the whole request had arrived.
    pub at: Instant,
}

/// What answers the next request: a queue of replies in arrival order, or a chooser.
enum Script {
    InOrder(VecDeque<Reply>),
    ByRequest(Box<dyn Fn(&Value) -> Reply + Send>),
}

impl Script {
    /// The reply to a request whose body is `body` (a request past a queue's end gets a 500).
    fn reply(&mut self, body: &Value) -> Reply {
        let next = match self {
            Script::InOrder(queue) => queue.pop_front(),
            Script::ByRequest(choose) => Some(choose(body)),
        };
        next.unwrap_or(Reply::Status {
            status: 500,
            headers: vec![],
            body: "{\"error\":{\"type\":\"server_error\"}}".into(),
        })
    }
}

/// The endpoint: its base URL, what it received, and when connections closed.
pub struct ChatServer {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    sent: Sent,
    closed: mpsc::UnboundedReceiver<usize>,
}

/// When each streamed chunk was written, across every request in order (for latency benches).
type Sent = Arc<Mutex<Vec<(Instant, Vec<u8>)>>>;

impl ChatServer {
    /// Starts answering requests with `replies` in order (a request past the end gets a 500).
    pub async fn start(replies: Vec<Reply>) -> ChatServer {
        Self::serve_script(Script::InOrder(VecDeque::from(replies))).await
    }

    /// Starts answering each request with `choose(body)`, its JSON body (`Value::Null` when
    /// it is not JSON): for requests of runs side by side, whose arrival order is not the
    /// runs' order, each run says in its prompt which reply it wants.
    pub async fn start_by(choose: impl Fn(&Value) -> Reply + Send + 'static) -> ChatServer {
        Self::serve_script(Script::ByRequest(Box::new(choose))).await
    }

    async fn serve_script(script: Script) -> ChatServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let sent = Sent::default();
        let (closed_tx, closed) = mpsc::unbounded_channel();
        let replies = Arc::new(Mutex::new(script));
        let (rec, sent_at) = (received.clone(), sent.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok((stream, _)) = listener.accept().await {
                let (rec, replies, closed_tx) = (rec.clone(), replies.clone(), closed_tx.clone());
                let sent_at = sent_at.clone();
                n += 1;
                let id = n;
                tokio::spawn(async move {
                    serve(stream, rec, replies, sent_at).await;
                    let _ = closed_tx.send(id);
                });
            }
        });
        ChatServer {
            url,
            received,
            sent,
            closed,
        }
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// When each [`Step::Send`] chunk so far was written, in order.
    pub fn sent(&self) -> Vec<Instant> {
        self.sent.lock().unwrap().iter().map(|(t, _)| *t).collect()
    }

    /// Each [`Step::Send`] chunk so far, with when it was written, in order.
    pub fn sent_chunks(&self) -> Vec<(Instant, Vec<u8>)> {
        self.sent.lock().unwrap().clone()
    }

    /// Waits (bounded) until a connection has been closed by the client; its number.
    pub async fn next_closed(&mut self, within: Duration) -> Option<usize> {
        tokio::time::timeout(within, self.closed.recv())
            .await
            .ok()
            .flatten()
    }
}

async fn serve(
    mut stream: TcpStream,
    received: Arc<Mutex<Vec<Received>>>,
    replies: Arc<Mutex<Script>>,
    sent: Sent,
) {
    let mut buf = Vec::new();
    let Some(msg) = read_message(&mut stream, &mut buf).await else {
        return;
    };
    // Recorded and answered under one lock: the n-th request received gets the n-th reply,
    // even when requests arrive side by side.
    let reply = {
        let mut received = received.lock().unwrap();
        let body = serde_json::from_slice(msg.body()).unwrap_or(Value::Null);
        let reply = replies.lock().unwrap().reply(&body);
        received.push(Received {
            path: msg.path().to_owned(),
            head: msg.head.clone(),
            body,
            at: Instant::now(),
        });
        reply
    };
    match reply {
        Reply::Status {
            status,
            headers,
            body,
        } => {
            let mut head = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                body.len()
            );
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
        }
        Reply::Stream(steps) => {
            if !stream_steps(&mut stream, "text/event-stream", steps, &sent).await {
                return;
            }
        }
        Reply::StreamAs(content_type, steps) => {
            if !stream_steps(&mut stream, content_type, steps, &sent).await {
                return;
            }
        }
    }
    let _ = stream.shutdown().await;
    // Wait for the client's close (bounded), so `next_closed` means the client let go.
    let mut sink = [0u8; 64];
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut sink)).await;
}

/// Writes a chunked 200 response step by step; `false` when the connection must be dropped
/// as it is (a reset, or a stall the client ended).
async fn stream_steps(
    stream: &mut TcpStream,
    content_type: &str,
    steps: Vec<Step>,
    sent: &Mutex<Vec<(Instant, Vec<u8>)>>,
) -> bool {
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    if stream.write_all(head.as_bytes()).await.is_err() {
        return false;
    }
    for step in steps {
        match step {
            Step::Send(bytes) => {
                let mut chunk = format!("{:x}\r\n", bytes.len()).into_bytes();
                chunk.extend_from_slice(&bytes);
                chunk.extend_from_slice(b"\r\n");
                sent.lock().unwrap().push((Instant::now(), bytes.clone()));
                if stream.write_all(&chunk).await.is_err() {
                    return false;
                }
            }
            Step::Sleep(d) => tokio::time::sleep(d).await,
            Step::Stall => {
                // Until the client goes away (bounded, so a broken test cannot hang).
                let mut sink = [0u8; 1024];
                let _ = tokio::time::timeout(Duration::from_secs(30), async {
                    while let Ok(n) = stream.read(&mut sink).await {
                        if n == 0 {
                            break;
                        }
                    }
                })
                .await;
                return false;
            }
            Step::Reset => {
                let _ = stream.set_zero_linger();
                return false;
            }
        }
    }
    stream.write_all(b"0\r\n\r\n").await.is_ok()
}

/// `data: <chunk>\n\n` for a Chat Completions chunk object.
pub fn event(chunk: Value) -> Vec<u8> {
    format!("data: {chunk}\n\n").into_bytes()
}

/// A chunk carrying answer text.
pub fn text(t: &str) -> Vec<u8> {
    event(json!({"model": "scripted-model", "choices": [{"index": 0, "delta": {"content": t}}]}))
}

/// A chunk carrying one tool-call fragment.
pub fn call(index: u64, id: Option<&str>, name: Option<&str>, arguments: &str) -> Vec<u8> {
    let mut c = json!({"index": index, "function": {"arguments": arguments}});
    if let Some(id) = id {
        c["id"] = id.into();
        c["type"] = "function".into();
    }
    if let Some(name) = name {
        c["function"]["name"] = name.into();
    }
    event(json!({"choices": [{"index": 0, "delta": {"tool_calls": [c]}}]}))
}

/// The final chunk with a finish reason.
pub fn finish(reason: &str) -> Vec<u8> {
    event(json!({"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}))
}

/// A usage-only chunk (`choices: []`), as `stream_options.include_usage` asks for.
pub fn usage(input: u64, output: u64) -> Vec<u8> {
    event(json!({"choices": [], "usage": {"prompt_tokens": input, "completion_tokens": output}}))
}

/// The end marker.
pub fn done() -> Vec<u8> {
    b"data: [DONE]\n\n".to_vec()
}

/// A streamed answer made of `pieces`, then usage and `[DONE]`, each event its own chunk.
pub fn answer(pieces: &[&str]) -> Reply {
    let mut steps: Vec<Step> = pieces.iter().map(|p| Step::Send(text(p))).collect();
    steps.push(Step::Send(finish("stop")));
    steps.push(Step::Send(usage(10, pieces.len() as u64)));
    steps.push(Step::Send(done()));
    Reply::Stream(steps)
}

/// A round in which the model calls one tool, its arguments split into two fragments.
pub fn tool_round(id: &str, name: &str, arguments: &str) -> Reply {
    let mid = arguments.len() / 2;
    let (a, b) = arguments.split_at(mid);
    Reply::Stream(vec![
        Step::Send(call(0, Some(id), Some(name), a)),
        Step::Send(call(0, None, None, b)),
        Step::Send(finish("tool_calls")),
        Step::Send(done()),
    ])
}

/// A plain error response.
pub fn status(status: u16, body: &str) -> Reply {
    Reply::Status {
        status,
        headers: vec![],
        body: body.into(),
    }
}

/// What an agent reported, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Thinking(String),
    Executing(String, Value),
    Completed(String, Value),
    Delta(String),
    /// Every delta of this round so far was withdrawn.
    Discarded(u32),
}

/// Records every event (and each delta's round); optionally signals the first delta.
#[derive(Default)]
pub struct Recorder {
    pub events: Mutex<Vec<Event>>,
    /// The round of each delta, in order.
    pub rounds: Mutex<Vec<u32>>,
    pub first_delta: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    /// Each round's reported (input, output) tokens, in order.
    pub usage: Mutex<Vec<(u64, u64)>>,
}

impl Recorder {
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    /// The deltas a client keeps (those of discarded rounds dropped), joined.
    pub fn text(&self) -> String {
        let rounds = self.rounds.lock().unwrap().clone();
        let mut kept: Vec<(u32, String)> = Vec::new();
        let mut n = 0;
        for e in self.events() {
            match e {
                Event::Delta(t) => {
                    kept.push((rounds[n], t));
                    n += 1;
                }
                Event::Discarded(r) => kept.retain(|(k, _)| *k != r),
                _ => {}
            }
        }
        kept.into_iter().map(|(_, t)| t).collect()
    }

    /// Every delta joined, discarded ones included.
    pub fn all_text(&self) -> String {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Delta(t) => Some(t),
                _ => None,
            })
            .collect()
    }

    /// How many deltas were sent.
    pub fn deltas(&self) -> usize {
        self.events()
            .iter()
            .filter(|e| matches!(e, Event::Delta(_)))
            .count()
    }

    /// The rounds withdrawn, in order.
    pub fn discarded(&self) -> Vec<u32> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Discarded(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    /// Events other than deltas and discards.
    pub fn steps(&self) -> Vec<Event> {
        self.events()
            .into_iter()
            .filter(|e| !matches!(e, Event::Delta(_) | Event::Discarded(_)))
            .collect()
    }
}

#[async_trait]
impl wsexec::llm::AgentEvents for Recorder {
    async fn thinking(&self, thought: String) {
        self.events.lock().unwrap().push(Event::Thinking(thought));
    }
    async fn tool_executing(&self, _call_id: &str, tool_name: &str, parameters: Value) {
        self.events
            .lock()
            .unwrap()
            .push(Event::Executing(tool_name.into(), parameters));
    }
    async fn tool_completed(&self, _call_id: &str, tool_name: &str, result: Value, _ms: u64) {
        self.events
            .lock()
            .unwrap()
            .push(Event::Completed(tool_name.into(), result));
    }
    async fn delta(&self, round: u32, text: &str) {
        self.events.lock().unwrap().push(Event::Delta(text.into()));
        self.rounds.lock().unwrap().push(round);
        if let Some(tx) = self.first_delta.lock().unwrap().take() {
            let _ = tx.send(());
        }
    }
    async fn discard_round(&self, round: u32, _reason: wsexec::protocol::DiscardReason) {
        self.events.lock().unwrap().push(Event::Discarded(round));
    }
    async fn usage(&self, input_tokens: u64, output_tokens: u64) -> bool {
        self.usage
            .lock()
            .unwrap()
            .push((input_tokens, output_tokens));
        true
    }
}
