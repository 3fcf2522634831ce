//! Time to first token, cold and warm (`STREAM_MODE=ttft`, issue 27): through a release binary
//! under the Runtime API harness on DynamoDB Local, from handing the `start_agent` invocation to
//! the function until the loopback `@connections` endpoint reads the first `agent_delta`,
//! less the model's own time to first token (from the loopback Chat Completions endpoint
//! having read the request to it writing the first text). Each round spawns a fresh
//! environment of every binary given (this build, and `STREAM_BEFORE_BIN` when set), in turn,
//! and runs: the first `llm` run of the instance (cold: the provider client is built, the
//! connection opened), then warm runs, the second in the same thread as the first (its
//! history read returns a turn). Breakdown: what happens before the request reaches the model
//! (history read, client build, connect, request write) and after its first text (streaming
//! to the push). The build under test runs once more with `MCP_SERVERS` naming a real MCP
//! server (the official Python SDK's, `tests/support/mcp_server.py`): its first `llm` run
//! discovers the server's tools (`initialize`, `tools/list`) beside the history read and the
//! provider connection, and offers them. And once more with the model behind a loopback TLS
//! front (a test CA added to the system bundle): the first run's handshake and root-store load.

use crate::connections::ConnectionsEndpoint;
use crate::first_token::{first_delta_at, first_text_at};
use crate::runtime_api::{Runtime, percentile};
use crate::sse::{ChatServer, Reply, Step};
use crate::{LIMIT, event_json};
use serde_json::json;
use std::time::{Duration, Instant};

/// Warm runs per environment after the cold one.
const WARM: usize = 3;

/// One measured configuration: a binary, extra environment (`MCP_SERVERS`, `SSL_CERT_FILE`),
/// and whether the model is reached over TLS.
struct Subject<'a> {
    label: String,
    bin: &'a str,
    extra: Vec<(&'a str, &'a str)>,
    /// The test PKI whose `localhost` leaf a TLS front in front of the model presents.
    tls: Option<&'a std::path::Path>,
}

/// A short answer: a pause standing for the model's own time to first token, then text.
fn reply() -> Reply {
    Reply::Stream(vec![
        Step::Sleep(Duration::from_millis(20)),
        Step::Send(crate::sse::text("Once upon a time")),
        Step::Send(crate::sse::text(", a dragon.")),
        Step::Send(crate::sse::finish("stop")),
        Step::Send(crate::sse::done()),
    ])
}

/// One run's figures, milliseconds: overhead (total less the model's time), before the
/// request reached the model, after the model's first text.
#[derive(Default)]
struct Figures {
    overhead: Vec<f64>,
    before_request: Vec<f64>,
    after_text: Vec<f64>,
}

impl Figures {
    fn row(&mut self, label: &str) -> String {
        let p = |v: &mut Vec<f64>| (percentile(&mut v.clone(), 50.0), percentile(v, 99.0));
        let (o50, o99) = p(&mut self.overhead);
        let (b50, b99) = p(&mut self.before_request);
        let (a50, a99) = p(&mut self.after_text);
        format!(
            "| {label} | {o50:.2} / {o99:.2} ms | {b50:.2} / {b99:.2} ms | {a50:.2} / {a99:.2} ms | {} |\n",
            self.overhead.len()
        )
    }
}

/// One environment of the subject's binary with the `llm` agent on a fresh scripted model
/// (behind a TLS front when the subject says so); runs one cold and [`WARM`] warm runs, adding
/// their figures.
async fn environment(
    subject: &Subject<'_>,
    n: usize,
    table: &str,
    ep: &ConnectionsEndpoint,
    cold: &mut Figures,
    warm: &mut Figures,
) {
    let model = ChatServer::start((0..=WARM).map(|_| reply()).collect()).await;
    let url = match subject.tls {
        Some(pki) => {
            let plain = model.url.trim_start_matches("http://");
            let (authority, path) = plain.split_once('/').unwrap_or((plain, ""));
            let (port, _) = crate::tls::tls_proxy(pki, authority).await;
            format!("https://localhost:{port}/{path}")
        }
        None => model.url.clone(),
    };
    let mut rt = Runtime::start().await;
    let env = crate::first_token::llm_env(table, ep, &url, &subject.extra);
    rt.spawn(subject.bin, &[], &env, 128);
    rt.wait_init(LIMIT).await;
    let conn = format!("Ttft{n:010}=");
    let mut connect = event_json("connect-jwt-query.json");
    connect["requestContext"]["connectionId"] = conn.clone().into();
    rt.invoke(&connect.to_string(), LIMIT).await;
    for i in 0..=WARM {
        let pushed_before = ep.delivered_at(&conn).len();
        let chunks_before = model.sent_chunks().len();
        let mut start = event_json("message-start-agent.json");
        start["requestContext"]["connectionId"] = conn.clone().into();
        start["requestContext"]["messageId"] = format!("T{n:08}{i:06}=").into();
        start["body"] = json!({"type": "start_agent", "agent": "llm",
                               "request_id": format!("ttft-{n}-{i}"),
                               "thread_id": format!("ttft-thread-{n}"),
                               "payload": {"user_request": "Tell me a story."}})
        .to_string()
        .into();
        let sent = Instant::now();
        rt.invoke(&start.to_string(), LIMIT).await;
        let request_at = model.received()[i].at;
        let first_text = first_text_at(&model, chunks_before);
        let first_delta = first_delta_at(ep, &conn, pushed_before);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let model_time = first_text.saturating_duration_since(request_at);
        let total = first_delta.saturating_duration_since(sent);
        let into = if i == 0 { &mut *cold } else { &mut *warm };
        into.overhead.push(ms(total.saturating_sub(model_time)));
        into.before_request
            .push(ms(request_at.saturating_duration_since(sent)));
        into.after_text
            .push(ms(first_delta.saturating_duration_since(first_text)));
    }
}

/// `rounds` fresh environments of each binary (label, path), alternating, and of the first
/// with `MCP_SERVERS` naming `mcp` (a real MCP server: its discovery joins the first run's
/// setup); the report.
pub async fn measure(
    bins: &[(String, String)],
    rounds: usize,
    store: &wsexec::store::dynamo::DynamoStore,
    ep: &ConnectionsEndpoint,
    mcp: &crate::mcp::McpServer,
) -> String {
    use wsexec::store::Store;
    let table = store.table();
    // DynamoDB Local round trips from this process, for scale: a consistent GetItem, and the two
    // a start makes at once, a run's conditional create (PutItem) and its thread's history
    // (Query).
    let (mut get, mut put, mut query) = (Vec::new(), Vec::new(), Vec::new());
    let since = |t: Instant| t.elapsed().as_secs_f64() * 1000.0;
    for i in 0..30 {
        let t = Instant::now();
        let _ = store.get_run("ttft-user".into(), "no-such-run").await;
        get.push(since(t));
        let now = wsexec::time::now_ms();
        let mut run = crate::contract::run("ttft-rtt", &format!("rtt-{now}-{i}"), now);
        // Threads of up to four runs, as the warm runs' threads are.
        run.thread_id = format!("rtt-{}-{}", now / 1000, i / 4);
        let t = Instant::now();
        let _ = store.create_run(&run).await;
        put.push(since(t));
        let t = Instant::now();
        let _ = wsexec::run::history::thread_turns(store, &run).await;
        query.push(since(t));
    }
    let (get, put, query) = (
        percentile(&mut get, 50.0),
        percentile(&mut put, 50.0),
        percentile(&mut query, 50.0),
    );
    let servers = serde_json::Value::Array(vec![mcp.entry("orders", json!({}))]).to_string();
    // The model over TLS: a front presenting a test CA's `localhost` leaf, the CA added to the
    // system bundle the function loads (`SSL_CERT_FILE`), so the first run also reads and
    // parses the whole system store as it would on Lambda.
    let pki = crate::tls::test_pki();
    let bundle = pki.join("bundle.pem");
    let system = std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
    let ca = std::fs::read(pki.join("ca.pem")).unwrap();
    std::fs::write(&bundle, [system, ca].concat()).unwrap();
    let bundle_path = bundle.to_str().unwrap();
    let mut subjects: Vec<Subject> = bins
        .iter()
        .map(|(label, bin)| Subject {
            label: label.clone(),
            bin: bin.as_str(),
            extra: Vec::new(),
            tls: None,
        })
        .collect();
    subjects.push(Subject {
        label: format!("{}, MCP tools configured", bins[0].0),
        bin: bins[0].1.as_str(),
        extra: vec![("MCP_SERVERS", servers.as_str())],
        tls: None,
    });
    subjects.push(Subject {
        label: format!("{}, model over TLS", bins[0].0),
        bin: bins[0].1.as_str(),
        extra: vec![("SSL_CERT_FILE", bundle_path)],
        tls: Some(&pki),
    });
    let mut figures: Vec<(Figures, Figures)> =
        subjects.iter().map(|_| Default::default()).collect();
    for n in 0..rounds {
        for (k, subject) in subjects.iter().enumerate() {
            let (cold, warm) = &mut figures[k];
            environment(subject, n * 10 + k, table, ep, cold, warm).await;
        }
    }
    let _ = std::fs::remove_dir_all(&pki);
    let mut out = format!(
        "DynamoDB Local round trips, p50: GetItem {get:.2} ms, a run's create (conditional PutItem) {put:.2} ms, a thread's history (Query) {query:.2} ms\n\n"
    );
    out += &String::from(
        "| run | added to the model's first token, p50 / p99 | invocation → request at the model | model's first text → push | runs |\n|---|---|---|---|---|\n",
    );
    for (subject, (cold, warm)) in subjects.iter().zip(figures.iter_mut()) {
        let label = &subject.label;
        out += &cold.row(&format!("{label}: first `llm` run of a fresh instance"));
        out += &warm.row(&format!("{label}: warm (history read returns turns)"));
    }
    out
}
