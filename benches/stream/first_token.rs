//! The streaming bench's first-token measure (issue 21 item 20): milliseconds from the model's
//! first content byte (the loopback Chat Completions endpoint writing the first chunk that
//! carries text) to the client's first `agent_delta` (its `@connections` POST read by the
//! loopback endpoint), through a release binary under the Runtime API harness on DynamoDB
//! Local, with tools offered (the default) and not. Every binary given (the build under test,
//! and `STREAM_BEFORE_BIN` for a "before" figure) runs in its own process, and the runs
//! alternate between them, so their ratios come from one run on one machine state.

use crate::connections::ConnectionsEndpoint;
use crate::runtime_api::{Runtime, percentile};
use crate::sse::{ChatServer, Reply, Step};
use crate::{LIMIT, event_json, has_text};
use serde_json::json;
use std::time::{Duration, Instant};

/// Text events of the recorded answer each run replays (about 3 s at its timing): well past
/// the 256 bytes the agent once held back while tools were offered.
pub const EVENTS: usize = 100;

/// One binary with tools offered or not: its process, its model endpoint, its connection.
struct Subject {
    label: String,
    rt: Runtime,
    model: ChatServer,
    ep: ConnectionsEndpoint,
    conn: String,
    samples: Vec<f64>,
}

/// The first [`EVENTS`] events of the recorded answer (`steps` alternates pauses and sends)
/// at their timing, then the end of the answer.
fn answer_start(steps: &[Step]) -> Vec<Step> {
    let mut out: Vec<Step> = steps.iter().take(2 * EVENTS).cloned().collect();
    out.push(Step::Send(crate::sse::finish("stop")));
    out.push(Step::Send(crate::sse::done()));
    out
}

/// The environment of a release binary with the `llm` agent (model `smollm2`) on `model`,
/// DynamoDB Local's `table`, the `@connections` endpoint `ep`, and `extra`.
pub fn llm_env(
    table: &str,
    ep: &ConnectionsEndpoint,
    model: &str,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let dynamodb = crate::dynamodb::endpoint();
    [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_ENDPOINT_URL_DYNAMODB", dynamodb.as_str()),
        ("CONNECTIONS_ENDPOINT", ep.url.as_str()),
        ("JWT_SECRET", "wsexec-sample-secret"),
        ("TABLE_NAME", table),
        ("RUST_LOG", "warn"),
        ("LLM_PROVIDER", "openai"),
        ("LLM_MODEL", "smollm2"),
        ("LLM_BASE_URL", model),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// What every subject shares: runs per subject, the recorded answer, the table, the endpoint.
struct Setup<'a> {
    runs: usize,
    steps: &'a [Step],
    table: &'a str,
    ep: &'a ConnectionsEndpoint,
}

/// The `k`-th subject: `bin` (called `label`) with tools offered or not.
async fn subject(k: usize, bin: &str, label: &str, tools: bool, setup: &Setup<'_>) -> Subject {
    let Setup {
        runs,
        steps,
        table,
        ep,
    } = *setup;
    let replies = (0..runs)
        .map(|_| Reply::Stream(answer_start(steps)))
        .collect();
    let model = ChatServer::start(replies).await;
    let mut rt = Runtime::start().await;
    let extra: &[(&str, &str)] = if tools { &[] } else { &[("LLM_TOOLS", "none")] };
    let env = llm_env(table, ep, &model.url, extra);
    rt.spawn(bin, &[], &env, 128);
    rt.wait_init(LIMIT).await;
    let conn = format!("F1rstT0ken{k:04}=");
    let mut connect = event_json("connect-jwt-query.json");
    connect["requestContext"]["connectionId"] = conn.clone().into();
    rt.invoke(&connect.to_string(), LIMIT).await;
    let offered = if tools { "offered" } else { "not offered" };
    Subject {
        label: format!("{label}, tools {offered}"),
        rt,
        model,
        ep: ep.clone(),
        conn,
        samples: Vec::new(),
    }
}

impl Subject {
    /// One run: the first content byte to the first `agent_delta`, in milliseconds.
    async fn sample(&mut self, n: usize) {
        let chunks_before = self.model.sent_chunks().len();
        let pushed_before = self.ep.delivered_at(&self.conn).len();
        let mut start = event_json("message-start-agent.json");
        start["requestContext"]["connectionId"] = self.conn.clone().into();
        start["requestContext"]["messageId"] = format!("F{n:014}=").into();
        start["body"] = json!({"type": "start_agent", "agent": "llm",
                               "request_id": format!("first-token-{n}"),
                               "payload": {"user_request": "Write a long story about a dragon."}})
        .to_string()
        .into();
        self.rt.invoke(&start.to_string(), LIMIT).await;
        let first_text = first_text_at(&self.model, chunks_before);
        let first_delta = first_delta_at(&self.ep, &self.conn, pushed_before);
        let ms = first_delta.duration_since(first_text).as_secs_f64() * 1000.0;
        self.samples.push(ms);
    }
}

/// When `model` first wrote a chunk carrying text, after its first `skip` chunks.
pub fn first_text_at(model: &ChatServer, skip: usize) -> Instant {
    model
        .sent_chunks()
        .into_iter()
        .skip(skip)
        .find(|(_, bytes)| has_text(&String::from_utf8_lossy(bytes)))
        .map(|(at, _)| at)
        .expect("the model wrote text")
}

/// When `ep` read the first `agent_delta` for `conn`, after its first `skip` messages.
pub fn first_delta_at(ep: &ConnectionsEndpoint, conn: &str, skip: usize) -> Instant {
    ep.delivered_at(conn)
        .into_iter()
        .skip(skip)
        .find(|(_, f)| f["type"] == "agent_delta")
        .map(|(at, _)| at)
        .expect("an agent_delta was pushed")
}

/// `runs` runs of each binary in `bins` (label, path), tools offered and not, alternating;
/// the report's rows, p50 / p99 each.
pub async fn measure(
    bins: &[(String, String)],
    runs: usize,
    steps: &[Step],
    table: &str,
    ep: &ConnectionsEndpoint,
) -> String {
    let setup = Setup {
        runs,
        steps,
        table,
        ep,
    };
    let mut subjects = Vec::new();
    for (label, bin) in bins {
        for tools in [true, false] {
            let k = subjects.len();
            subjects.push(subject(k, bin, label, tools, &setup).await);
        }
    }
    for n in 0..runs {
        for (k, s) in subjects.iter_mut().enumerate() {
            s.sample(n * 100 + k).await;
        }
        // Let the last run's connections settle before the next round.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut report = String::new();
    for s in &mut subjects {
        let p50 = percentile(&mut s.samples.clone(), 50.0);
        let p99 = percentile(&mut s.samples, 99.0);
        report.push_str(&format!(
            "| first content byte → first `agent_delta`, {} ({runs} runs), p50 / p99 | {p50:.3} / {p99:.3} ms |\n",
            s.label
        ));
    }
    report
}
