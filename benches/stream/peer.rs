//! The peer side by side (`STREAM_MODE=peer`, issue 27): the push strategy of the AWS
//! serverless-patterns Rust Bedrock streaming pattern reproduced next to wsexec, on the same
//! recorded answer and the same loopback endpoints, in one run with the strategies alternating.
//!
//! **The peer as written** (`aws-samples/serverless-patterns`,
//! `apigw-websocket-api-bedrock-streaming-rust-cdk/cdk/lib/bedrock-streamer-lambda/src/main.rs`,
//! last changed in 9a4c790, read at fb7b5d0). Every invocation, `$default` included:
//! `aws_config::defaults(BehaviorVersion::latest()).region(default chain, else us-east-1)
//! .load().await`; then a Bedrock client and an API Gateway Management client
//! (`Client::from_conf(Builder::from(&config).endpoint_url("https://{domain}/{stage}"))`). One
//! task reads the ConverseStream and sends every stream event, mapped to `{"type", "message"}`
//! (a text delta: `"text"` and its text; any other event: `"other"`, no message), into an
//! `mpsc::channel(32)`; a second task awaits one `post_to_connection` per event, in order. So:
//! config and clients once per invocation (not per post), one post per stream event (text or
//! not), and the model is read ahead of the posts by up to 32 events.
//!
//! **Reproduced here** ([`peer_answer`]): exactly that, with the SDK (`aws-config`,
//! `aws-sdk-apigatewaymanagement`) against the loopback `@connections` endpoint, SigV4 signed
//! with the credentials the default chain finds in the environment. Differences:
//! - the model is the loopback Chat Completions endpoint replaying the recorded answer, read
//!   with hyper (a client built per invocation, as the pattern builds its Bedrock client), not
//!   ConverseStream through the Bedrock client; each event is mapped as the pattern maps
//!   Bedrock's: the role chunk and the finish chunk stand for `messageStart` and `messageStop`
//!   (posted as `"other"`); Bedrock also sends `contentBlockStop` and `metadata`, two more posts
//!   an answer that are not made here;
//! - the SDK's HTTP client: with `BehaviorVersion::latest()` the pattern gets
//!   `aws-smithy-http-client`'s hyper 1 client on rustls with aws-lc, made anew with each service
//!   client (`aws-smithy-runtime`'s `default_http_client_plugin_v2`), so a new connection pool per
//!   invocation; here the same builder with ring as rustls's crypto, passed to each config load,
//!   so also one per invocation. Plain HTTP on loopback: no TLS handshake is paid by either side
//!   (the pattern would pay one per invocation to `execute-api`, wsexec one per instance);
//! - the handler runs in the bench process on its own multi-thread runtime (the pattern's
//!   `#[tokio::main]`), started once like a warm instance, not under the Runtime API harness.
//!
//! A second peer row, **config and client per post**, loads the config and builds the client for
//! every post (what "builds clients per call" would mean read per post), to show that cost.
//!
//! wsexec: the release binary under the Runtime API harness on DynamoDB Local, one instance
//! each at `STREAM_FLUSH_MS=100` (the default) and `1` (the smallest it takes: about one post
//! per delta), `llm` agent, tools off, each answer one `start_agent` invocation.

use crate::connections::ConnectionsEndpoint;
use crate::runtime_api::{Runtime, percentile};
use crate::sse::{ChatServer, Reply, Step};
use crate::{LIMIT, event_json};
use aws_config::meta::region::RegionProviderChain;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_apigatewaymanagement::Client as ApiGatewayManagementClient;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The pattern's channel between the model reader and the poster.
const PEER_CHANNEL: usize = 32;

/// The pattern's prompt (its `StoryRequest` with a story type).
const PEER_PROMPT: &str = "Tell me a very short story about: a dragon";

/// The smallest `STREAM_FLUSH_MS` the binary takes (it refuses 0; the library's 0, which the
/// in-process measure uses, is not reachable through the environment): a chunk arriving more
/// than 1 ms after the last push is pushed at once, so this answer gets about a post per delta.
const SMALLEST_FLUSH: &str = "1";

/// How each strategy pushes.
enum Strategy {
    /// The release binary in its own environment.
    Wsexec(Runtime),
    /// The peer's handler; `per_post`: config and client built for every post.
    Peer { per_post: bool },
}

/// One strategy under test and what its answers measured.
struct Subject {
    label: String,
    strategy: Strategy,
    conn: String,
    /// Every `@connections` request of an answer, and those carrying text.
    posts: Vec<f64>,
    text_posts: Vec<f64>,
    /// Milliseconds from each text chunk's write to the arrival of the post carrying its end.
    latency: Vec<f64>,
    /// Milliseconds from the first text chunk's write to the last text post's arrival.
    span: Vec<f64>,
    /// Milliseconds the last text post arrived after the model wrote its last text chunk.
    lag: Vec<f64>,
}

/// The answer text a model event carries, if any (`data: {chat.completion.chunk}`).
pub fn chunk_text(event: &[u8]) -> Option<String> {
    let event = String::from_utf8_lossy(event);
    let data: Value = serde_json::from_str(event.trim().strip_prefix("data: ")?).ok()?;
    let text = data["choices"][0]["delta"]["content"].as_str()?;
    (!text.is_empty()).then(|| text.to_owned())
}

/// The answer text a pushed frame carries: wsexec's `agent_delta` or the peer's `text`.
fn frame_text(frame: &Value) -> Option<String> {
    let text = match frame["type"].as_str()? {
        "agent_delta" => frame["payload"]["text"].as_str()?,
        "text" => frame["message"].as_str()?,
        _ => return None,
    };
    Some(text.to_owned())
}

/// For each text chunk (write instant, text), milliseconds until the arrival of the post that
/// carried its last byte; the posts (arrival, text) must carry exactly the chunks' text.
fn chunk_to_arrival(chunks: &[(Instant, String)], posts: &[(Instant, String)]) -> Vec<f64> {
    let carriers = carriers(chunks, posts);
    chunks
        .iter()
        .zip(carriers)
        .map(|((written_at, _), p)| ms(posts[p].0.saturating_duration_since(*written_at)))
        .collect()
}

/// For each text chunk, the index of the post that carried its last byte; the posts must carry
/// exactly the chunks' text, in order.
pub fn carriers(chunks: &[(Instant, String)], posts: &[(Instant, String)]) -> Vec<usize> {
    let written: String = chunks.iter().map(|(_, t)| t.as_str()).collect();
    let pushed: String = posts.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(
        written, pushed,
        "the posts carry the model's text, in order"
    );
    let (mut end, mut covered, mut next) = (0, 0, 0);
    let mut out = Vec::with_capacity(chunks.len());
    for (_, text) in chunks {
        end += text.len();
        while covered < end {
            covered += posts[next].1.len();
            next += 1;
        }
        out.push(next - 1);
    }
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The pattern's config load: the default chain, region from it or us-east-1, and the SDK's
/// default HTTP client built anew (ring for rustls; see the module doc).
async fn peer_config() -> SdkConfig {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    let region = RegionProviderChain::default_provider().or_else("us-east-1");
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .http_client(http)
        .load()
        .await
}

/// The pattern's `api_gateway_config`: a management client on `endpoint`.
fn peer_client(config: &SdkConfig, endpoint: &str) -> ApiGatewayManagementClient {
    ApiGatewayManagementClient::from_conf(
        aws_sdk_apigatewaymanagement::config::Builder::from(config)
            .endpoint_url(endpoint)
            .build(),
    )
}

/// The pattern's `process_bedrock_stream`, on a Chat Completions stream: every event into
/// `tx`, mapped as the pattern maps Bedrock's.
async fn peer_read(model: String, tx: mpsc::Sender<Value>) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let body = json!({"model": "smollm2", "stream": true,
                      "messages": [{"role": "user", "content": PEER_PROMPT}]});
    let request = hyper::Request::post(format!("{model}/chat/completions"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let mut body = client.request(request).await.unwrap().into_body();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.unwrap().into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        while let Some(at) = buf.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = buf.drain(..at + 2).collect();
            if event.starts_with(b"data: [DONE]") {
                return;
            }
            let message = match chunk_text(&event) {
                Some(text) => json!({"type": "text", "message": text}),
                None => json!({"type": "other", "message": null}),
            };
            tx.send(message).await.unwrap();
        }
    }
}

/// The pattern's `send_to_websocket`: one awaited post per event, in order; with `per_post`,
/// config and client built for each (their build times added to `builds`).
async fn peer_send(
    mut rx: mpsc::Receiver<Value>,
    mut client: ApiGatewayManagementClient,
    endpoint: String,
    conn: String,
    per_post: bool,
    builds: Arc<Mutex<Vec<f64>>>,
) {
    while let Some(message) = rx.recv().await {
        if per_post {
            let t = Instant::now();
            client = peer_client(&peer_config().await, &endpoint);
            builds.lock().unwrap().push(ms(t.elapsed()));
        }
        client
            .post_to_connection()
            .connection_id(&conn)
            .data(Blob::new(serde_json::to_vec(&message).unwrap()))
            .send()
            .await
            .unwrap();
    }
}

/// One invocation of the pattern's handler for `$default` (its `bedrock_websocket_pipeline`).
async fn peer_answer(
    model: String,
    endpoint: String,
    conn: String,
    per_post: bool,
    builds: Arc<Mutex<Vec<f64>>>,
) {
    let t = Instant::now();
    let client = peer_client(&peer_config().await, &endpoint);
    builds.lock().unwrap().push(ms(t.elapsed()));
    let (tx, rx) = mpsc::channel(PEER_CHANNEL);
    let reader = tokio::spawn(peer_read(model, tx));
    let sender = tokio::spawn(peer_send(rx, client, endpoint, conn, per_post, builds));
    let (read, sent) = tokio::join!(reader, sender);
    read.unwrap();
    sent.unwrap();
}

/// What every answer shares: the model endpoint, the `@connections` endpoint, the peer's
/// runtime and its config-load times.
struct Shared<'a> {
    model: &'a ChatServer,
    ep: &'a ConnectionsEndpoint,
    peer: &'a tokio::runtime::Handle,
    builds: Arc<Mutex<Vec<f64>>>,
}

impl Subject {
    fn new(label: &str, strategy: Strategy, conn: String) -> Subject {
        Subject {
            label: label.to_owned(),
            strategy,
            conn,
            posts: Vec::new(),
            text_posts: Vec::new(),
            latency: Vec::new(),
            span: Vec::new(),
            lag: Vec::new(),
        }
    }

    /// One full recorded answer through this strategy, its figures added.
    async fn answer(&mut self, n: usize, shared: &Shared<'_>) {
        let chunks_before = shared.model.sent_chunks().len();
        let posts_before = shared.ep.attempts(&self.conn);
        let delivered_before = shared.ep.delivered_at(&self.conn).len();
        match &self.strategy {
            Strategy::Wsexec(rt) => {
                let mut start = event_json("message-start-agent.json");
                start["requestContext"]["connectionId"] = self.conn.clone().into();
                start["requestContext"]["messageId"] = format!("P{n:014}=").into();
                start["body"] = json!({"type": "start_agent", "agent": "llm",
                                       "request_id": format!("peer-{n}"),
                                       "payload": {"user_request": PEER_PROMPT}})
                .to_string()
                .into();
                let reply = rt.invoke(&start.to_string(), LIMIT).await.0.json();
                assert_eq!(reply["statusCode"], 200, "{}: {reply}", self.label);
            }
            Strategy::Peer { per_post } => {
                let run = peer_answer(
                    shared.model.url.clone(),
                    shared.ep.url.clone(),
                    self.conn.clone(),
                    *per_post,
                    shared.builds.clone(),
                );
                shared.peer.spawn(run).await.unwrap();
            }
        }
        let chunks: Vec<(Instant, String)> = shared
            .model
            .sent_chunks()
            .into_iter()
            .skip(chunks_before)
            .filter_map(|(at, bytes)| chunk_text(&bytes).map(|t| (at, t)))
            .collect();
        let posts: Vec<(Instant, String)> = shared
            .ep
            .delivered_at(&self.conn)
            .into_iter()
            .skip(delivered_before)
            .filter_map(|(at, frame)| frame_text(&frame).map(|t| (at, t)))
            .collect();
        assert!(
            !chunks.is_empty(),
            "{}: the model wrote no text; pushed: {:?}",
            self.label,
            shared.ep.delivered(&self.conn)
        );
        self.latency.extend(chunk_to_arrival(&chunks, &posts));
        self.posts
            .push((shared.ep.attempts(&self.conn) - posts_before) as f64);
        self.text_posts.push(posts.len() as f64);
        let (first, last) = (chunks[0].0, chunks[chunks.len() - 1].0);
        let arrived = posts[posts.len() - 1].0;
        self.span.push(ms(arrived.saturating_duration_since(first)));
        self.lag.push(ms(arrived.saturating_duration_since(last)));
    }

    fn row(&mut self) -> String {
        let p = |v: &mut Vec<f64>, q: f64| percentile(&mut v.clone(), q);
        format!(
            "| {} | {:.0} / {:.0} | {:.2} / {:.2} ms | {:.2} s | {:.1} / {:.1} ms | {} |\n",
            self.label,
            p(&mut self.posts, 50.0),
            p(&mut self.text_posts, 50.0),
            p(&mut self.latency, 50.0),
            p(&mut self.latency, 99.0),
            p(&mut self.span, 50.0) / 1000.0,
            p(&mut self.lag, 50.0),
            p(&mut self.lag, 100.0),
            self.latency.len(),
        )
    }
}

/// A wsexec environment of `bin` at flush window `flush_ms`, connected on `conn`.
async fn wsexec(
    bin: &str,
    flush_ms: &str,
    table: &str,
    ep: &ConnectionsEndpoint,
    model: &str,
    conn: &str,
) -> Runtime {
    let mut rt = Runtime::start().await;
    let extra = [("LLM_TOOLS", "none"), ("STREAM_FLUSH_MS", flush_ms)];
    let env = crate::first_token::llm_env(table, ep, model, &extra);
    rt.spawn(bin, &[], &env, 128);
    rt.wait_init(LIMIT).await;
    let mut connect = event_json("connect-jwt-query.json");
    connect["requestContext"]["connectionId"] = conn.into();
    let reply = rt.invoke(&connect.to_string(), LIMIT).await.0.json();
    assert_eq!(
        reply["statusCode"], 200,
        "$connect at {flush_ms} ms: {reply}"
    );
    rt
}

/// `rounds` rounds, each one full recorded answer (`steps`) per strategy, the order rotating
/// from round to round; the report (markdown).
pub async fn measure(
    bin: &str,
    rounds: usize,
    steps: &[Step],
    table: &str,
    ep: &ConnectionsEndpoint,
    peer: &tokio::runtime::Handle,
) -> String {
    let mut subjects = Vec::new();
    let model = ChatServer::start(vec![Reply::Stream(steps.to_vec()); 4 * rounds]).await;
    for (k, flush) in ["100", SMALLEST_FLUSH].iter().enumerate() {
        let conn = format!("PeerWsexec{k:02}=");
        let rt = wsexec(bin, flush, table, ep, &model.url, &conn).await;
        let label = format!("wsexec, `STREAM_FLUSH_MS={flush}`");
        subjects.push(Subject::new(&label, Strategy::Wsexec(rt), conn));
    }
    subjects.push(Subject::new(
        "peer as written: config and client per invocation, a post per event",
        Strategy::Peer { per_post: false },
        "PeerAsWritten=".into(),
    ));
    subjects.push(Subject::new(
        "peer, config and client per post",
        Strategy::Peer { per_post: true },
        "PeerPerPost0=".into(),
    ));
    let shared = Shared {
        model: &model,
        ep,
        peer,
        builds: Arc::default(),
    };
    let count = subjects.len();
    for n in 0..rounds {
        for i in 0..count {
            let k = (n + i) % count;
            subjects[k].answer(n * 10 + k, &shared).await;
            // Let the answer's connections close before the next strategy starts.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let chunks: Vec<(Instant, String)> = model
        .sent_chunks()
        .into_iter()
        .filter_map(|(at, bytes)| chunk_text(&bytes).map(|t| (at, t)))
        .collect();
    let per_answer = chunks.len() / (count * rounds);
    let model_span = ms(chunks[per_answer - 1]
        .0
        .saturating_duration_since(chunks[0].0));
    let mut builds = shared.builds.lock().unwrap().clone();
    let mut out = format!(
        "Each answer: the recorded SmolLM2 answer, {per_answer} text chunks written over {:.2} s \
         (the first answer's; the model's own first → last text chunk). {rounds} rounds, one \
         answer per strategy each, order rotating. The peer's config load + client build \
         (`aws_config::defaults(..).load()` + `Client::from_conf`), p50 / p99 of {}: {:.2} / {:.2} ms.\n\n",
        model_span / 1000.0,
        builds.len(),
        percentile(&mut builds.clone(), 50.0),
        percentile(&mut builds, 99.0),
    );
    out += "| strategy | `@connections` posts per answer (all / with text) | chunk written → post carrying it arrived, p50 / p99 | first text chunk → last text post arrived | last post after the last chunk, p50 / max | chunks |\n|---|---|---|---|---|---|\n";
    for s in &mut subjects {
        out += &s.row();
    }
    for s in &mut subjects {
        if let Strategy::Wsexec(rt) = &mut s.strategy {
            rt.sigterm(LIMIT).await;
        }
    }
    out
}
