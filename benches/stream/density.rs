//! The streaming bench's density measure (issue 27): `streams` answers streaming at once in one
//! release binary under the Runtime API harness (`AWS_LAMBDA_MAX_CONCURRENCY = streams`, as
//! Lambda Managed Instances run it), each the recorded SmolLM2 answer replayed at its timing
//! from the loopback Chat Completions endpoint, each on its own connection, pushed to the
//! loopback `@connections` endpoint, with DynamoDB Local as the store.
//!
//! Measured per round: peak RSS added per streaming run (`VmHWM` after the streams less
//! `VmHWM` after one echo run, over `streams`), `agent_delta` posts per answer, and two latencies
//! per text chunk, from the endpoint writing it to `@connections` reading the post that carries it:
//! - **raw**: includes the flush window by design (text is coalesced for `STREAM_FLUSH_MS`);
//! - **past the window**: how much later than the window allows, that is, than the later of the
//!   chunk's write and the previous push's arrival plus the window (the driver's next flush is
//!   due one window after its previous push ended, and a push ends after `@connections` read it,
//!   so this never counts the window itself; it can miss only the previous push's own delay);
//!   also for the chunks written from 2 s after the last start only (the steady state).
//!
//! The runs start at once (one invocation each), or spread evenly over `DENSITY_SPREAD_MS`. With
//! `DENSITY_FUNCTION_CPU` the function runs on those CPUs only (`taskset -c`); run the bench on
//! the others (`taskset -c 1 cargo bench ...`) to keep the rig off the function's CPU.
//!
//! Where the memory goes: halfway through the answers (every run streaming), the process's
//! resident memory by mapping (`[heap]`, anonymous) and its TCP connections by peer (the model,
//! `@connections`, DynamoDB, the Runtime API), each over the number of runs.
//!
//! Which run a chunk belongs to: the endpoint picks each request's reply by the run its prompt
//! names ("Story number {run},"), and that reply's chunk ids are tagged `chatcmpl-d{run}-`.

use crate::connections::ConnectionsEndpoint;
use crate::peer::{carriers, chunk_text};
use crate::runtime_api::{Runtime, median, percentile, port_of};
use crate::sse::{ChatServer, Reply, Step};
use crate::{event_json, first_token};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Generous: 512 streams of a 12.7 s answer on 2 CPUs, with DynamoDB Local on the same CPUs.
const LIMIT: Duration = Duration::from_secs(600);

/// What one round measured.
pub struct Round {
    /// Answers streaming at once.
    pub streams: usize,
    /// Peak RSS after one echo run and after the streams, KiB.
    pub echo_kib: u64,
    pub peak_kib: u64,
    /// `agent_delta` posts per answer, median over the runs.
    pub posts: f64,
    /// Chunk write → post read, milliseconds, every text chunk of every run.
    pub raw: Vec<f64>,
    /// The part of it past the flush window, milliseconds.
    pub late: Vec<f64>,
    /// The same for the chunks written once the start burst is over ([`AFTER_STARTS`] after the
    /// last start): the steady state of the answers streaming side by side.
    pub late_steady: Vec<f64>,
    /// From the first start to the last invocation's answer, seconds.
    pub wall: f64,
    /// Starts answered with a retryable storage error instead of streaming: their codes.
    pub refused: Vec<String>,
    /// CPU seconds the function process used meanwhile (user + system).
    pub cpu: f64,
    /// The share of the machine's CPU time that was busy meanwhile (every process: the bench's
    /// endpoints, DynamoDB Local, anything else running), 0 to 1.
    pub busy: f64,
    /// Halfway through the answers: resident KiB by mapping, and open descriptors by what
    /// they are (TCP connections by peer).
    pub mid_rss: BTreeMap<String, u64>,
    pub mid_fds: BTreeMap<String, usize>,
}

impl Round {
    /// Peak RSS added per streaming run, KiB.
    pub fn per_run_kib(&self) -> f64 {
        self.peak_kib.saturating_sub(self.echo_kib) as f64 / self.streams as f64
    }
}

/// The recorded answer for run `k`: its chunk ids tagged with `k`.
fn tagged(steps: &[Step], k: usize) -> Reply {
    let tag = format!("\"chatcmpl-d{k:04}-");
    Reply::Stream(
        steps
            .iter()
            .map(|s| match s {
                Step::Send(b) => Step::Send(
                    String::from_utf8_lossy(b)
                        .replace("\"chatcmpl-", &tag)
                        .into_bytes(),
                ),
                other => other.clone(),
            })
            .collect(),
    )
}

/// The run a written chunk's tag names, if any.
fn run_of(chunk: &str) -> Option<usize> {
    let at = chunk.find("chatcmpl-d")? + "chatcmpl-d".len();
    chunk.get(at..at + 4)?.parse().ok()
}

/// The run a request's prompt names.
fn run_asked(body: &Value) -> usize {
    body.to_string()
        .split("Story number ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .expect("the request names its run")
}

/// The connection of run `r` in round `n`.
fn connection(n: u64, r: usize) -> String {
    format!("Dens{n:04}{r:06}=")
}

/// One round: a fresh process of `bin`, one echo run, then `streams` `llm` runs at once.
pub async fn round(
    bin: &str,
    streams: usize,
    steps: &[Step],
    table: &str,
    ep: &ConnectionsEndpoint,
    n: u64,
) -> Round {
    let replies: Vec<Reply> = (0..streams).map(|k| tagged(steps, k)).collect();
    let model = ChatServer::start_by(move |body| replies[run_asked(body)].clone()).await;
    let mut rt = Runtime::start().await;
    rt.set_timeout(LIMIT.as_millis());
    let limit = LIMIT.as_millis().to_string();
    let extra = [("LLM_TOOLS", "none"), ("RUN_TIME_LIMIT_MS", limit.as_str())];
    let mut env = first_token::llm_env(table, ep, &model.url, &extra);
    env.push((
        "AWS_LAMBDA_MAX_CONCURRENCY".into(),
        streams.max(2).to_string(),
    ));
    // `DENSITY_FUNCTION_CPU`: the function runs on these CPUs only (`taskset -c`), so that with
    // the bench itself pinned to the others (`taskset -c 1 cargo bench ...`) the function does
    // not share a CPU with the rig (DynamoDB Local, the model and `@connections` endpoints).
    match std::env::var("DENSITY_FUNCTION_CPU") {
        Ok(cpus) => rt.spawn("taskset", &["-c", &cpus, bin], &env, 2048),
        Err(_) => rt.spawn(bin, &[], &env, 2048),
    }
    rt.wait_init(LIMIT).await;
    let message = |conn: &str, id: String, agent: &str, request: String| {
        let request_id = format!("dens-{id}").replace('=', "");
        let mut e = event_json("message-start-agent.json");
        e["requestContext"]["connectionId"] = conn.into();
        e["requestContext"]["messageId"] = id.into();
        e["body"] = json!({"type": "start_agent", "agent": agent,
                           "request_id": request_id,
                           "payload": {"user_request": request}})
        .to_string()
        .into();
        e.to_string()
    };
    // One connection per run, and one more for the echo run.
    for r in 0..=streams {
        let mut connect = event_json("connect-jwt-query.json");
        connect["requestContext"]["connectionId"] = connection(n, r).into();
        rt.invoke(&connect.to_string(), LIMIT).await.0.json();
    }
    let echo = message(
        &connection(n, streams),
        format!("E{n:014}="),
        "echo",
        "echo".into(),
    );
    rt.invoke(&echo, LIMIT).await.0.json();
    let echo_kib = rt.peak_rss_kib();
    let starts: Vec<String> = (0..streams)
        .map(|r| {
            let prompt = format!("Story number {r}, about a dragon.");
            message(&connection(n, r), format!("D{n:04}{r:010}="), "llm", prompt)
        })
        .collect();
    let began = Instant::now();
    let cpu_before = cpu_seconds(rt.pid().expect("spawned"));
    let machine_before = machine_ticks();
    // `DENSITY_SPREAD_MS`: the starts spread evenly over that long instead of all at once (the
    // same recorded answer at the same timing otherwise has every run flush in the same
    // millisecond, 100 ms apart: a worst case independent users would not line up).
    let spread = spread();
    let answers = futures_util::future::join_all(starts.iter().enumerate().map(|(r, e)| {
        let after = spread.mul_f64(r as f64 / streams as f64);
        let rt = &rt;
        async move {
            tokio::time::sleep(after).await;
            rt.invoke(e, LIMIT).await
        }
    }));
    // Halfway through the recorded answer every run is streaming.
    let mid = async {
        tokio::time::sleep(HALFWAY).await;
        let names: BTreeMap<u16, String> = [
            (port_of(&model.url), "model"),
            (port_of(&ep.url), "@connections"),
            (port_of(&crate::dynamodb::endpoint()), "DynamoDB"),
            (port_of(&rt.addr), "Runtime API"),
        ]
        .into_iter()
        .map(|(p, s)| (p, s.to_owned()))
        .collect();
        (rt.rss_by_mapping(), rt.open_fds_named(&names))
    };
    let (outcomes, (mid_rss, mid_fds)) = tokio::join!(answers, mid);
    let wall = began.elapsed().as_secs_f64();
    let cpu = cpu_seconds(rt.pid().expect("spawned")) - cpu_before;
    let machine_after = machine_ticks();
    let busy = (machine_after.0 - machine_before.0) / (machine_after.1 - machine_before.1).max(1.0);
    let peak_kib = rt.peak_rss_kib();

    let mut chunks: Vec<Vec<(Instant, String)>> = vec![Vec::new(); streams];
    for (at, bytes) in model.sent_chunks() {
        let Some(text) = chunk_text(&bytes) else {
            continue;
        };
        let r = run_of(&String::from_utf8_lossy(&bytes)).expect("a tagged chunk");
        chunks[r].push((at, text));
    }
    let window = wsexec::limits::DEFAULT_STREAM_FLUSH;
    let (mut raw, mut late, mut posts) = (Vec::new(), Vec::new(), Vec::new());
    let mut late_steady = Vec::new();
    let mut refused = Vec::new();
    for (r, written) in chunks.iter().enumerate() {
        let frames = ep.delivered_at(&connection(n, r));
        let Some((_, last)) = frames.last() else {
            // Hundreds of creates at once can keep DynamoDB Local past the SDK's time limits:
            // that start is answered with a retryable storage error and nothing streams (a
            // client retries it). Counted, not measured.
            let reply = outcomes[r].0.json();
            let body = reply["body"].as_str().unwrap_or_default();
            let body: Value = serde_json::from_str(body).unwrap_or_default();
            let code = body["payload"]["code"].as_str().unwrap_or_default();
            let kinds = wsexec::store::StorageErrorKind::ALL;
            let retryable = kinds.iter().any(|k| k.code() == code && k.is_retryable());
            assert!(retryable, "run {r}: {reply}");
            refused.push(code.to_owned());
            continue;
        };
        assert_eq!(last["type"], "agent_completed", "run {r}: {last}");
        let deltas: Vec<(Instant, String)> = frames
            .iter()
            .filter(|(_, f)| f["type"] == "agent_delta")
            .map(|(at, f)| (*at, f["payload"]["text"].as_str().unwrap().to_owned()))
            .collect();
        posts.push(deltas.len() as f64);
        let carriers = carriers(written, &deltas);
        // Each post carries whole chunks: every post ends where a chunk ends.
        let ends = |pieces: &[(Instant, String)]| -> Vec<usize> {
            pieces
                .iter()
                .scan(0, |end, (_, t)| {
                    *end += t.len();
                    Some(*end)
                })
                .collect()
        };
        let chunk_ends = ends(written);
        let whole = ends(&deltas)
            .iter()
            .all(|e| chunk_ends.binary_search(e).is_ok());
        assert!(whole, "run {r}: pushes carry whole chunks");
        for ((at, _), p) in written.iter().zip(carriers) {
            let arrived = deltas[p].0;
            raw.push(ms(arrived, *at));
            let due = p
                .checked_sub(1)
                .map_or(*at, |q| (deltas[q].0 + window).max(*at));
            late.push(ms(arrived, due));
            if at.saturating_duration_since(began) >= spread + AFTER_STARTS {
                late_steady.push(ms(arrived, due));
            }
        }
    }
    rt.sigterm(Duration::from_secs(30)).await;
    Round {
        streams,
        echo_kib,
        peak_kib,
        posts: median(&mut posts),
        raw,
        late,
        late_steady,
        wall,
        refused,
        cpu,
        busy,
        mid_rss,
        mid_fds,
    }
}

/// `DENSITY_SPREAD_MS`: how long the starts are spread over (0: all at once).
pub fn spread() -> Duration {
    let ms = std::env::var("DENSITY_SPREAD_MS").ok();
    Duration::from_millis(ms.and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// How long after the last start the start burst (every run's create, history read, model
/// connection and first push at once) is taken to be over.
const AFTER_STARTS: Duration = Duration::from_secs(2);

/// When the resident memory and connections are sampled: halfway through the recorded answer.
const HALFWAY: Duration = Duration::from_secs(6);

/// The machine's busy and total CPU ticks so far (the `cpu` line of `/proc/stat`; idle and
/// iowait are not busy).
fn machine_ticks() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: f64 = ticks.iter().sum();
    let idle = ticks.get(3).unwrap_or(&0.0) + ticks.get(4).unwrap_or(&0.0);
    (total - idle, total)
}

/// CPU seconds process `pid` has used so far (user + system, from `/proc/{pid}/stat`).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let ticks: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    // USER_HZ is 100 on Linux.
    ticks.iter().sum::<f64>() / 100.0
}

/// Milliseconds from `from` to `to`, zero if `to` came first.
fn ms(to: Instant, from: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64() * 1000.0
}

/// The report's table: one row per round.
pub fn report(rounds: &mut [Round]) -> String {
    let mut out = match spread().as_millis() {
        0 => String::new(),
        ms => format!("Starts spread evenly over {ms} ms.\n\n"),
    };
    if let Ok(cpus) = std::env::var("DENSITY_FUNCTION_CPU") {
        out += &format!("The function pinned to CPU {cpus} (`taskset -c`).\n\n");
    }
    out += &String::from(
        "| answers at once | peak RSS added per run | posts per answer | chunk → push, raw p50 / p99 | past the window p50 / p99 / max | past the window 2 s after the last start, p99 / max | wall time | function CPU | machine busy | starts refused (storage) |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    for r in rounds.iter_mut() {
        let (raw50, raw99) = (
            percentile(&mut r.raw.clone(), 50.0),
            percentile(&mut r.raw, 99.0),
        );
        let max = r.late.iter().cloned().fold(0.0, f64::max);
        let (late50, late99) = (
            percentile(&mut r.late.clone(), 50.0),
            percentile(&mut r.late, 99.0),
        );
        let steady_max = r.late_steady.iter().cloned().fold(0.0, f64::max);
        let steady99 = percentile(&mut r.late_steady, 99.0);
        out += &format!(
            "| {} | {:.1} KiB ({} → {} KiB) | {:.0} | {raw50:.2} / {raw99:.2} ms | {late50:.2} / {late99:.2} / {max:.1} ms | {steady99:.2} / {steady_max:.1} ms | {:.1} s | {:.1} s ({:.0}% of {cpus} CPUs) | {:.0}% | {} |\n",
            r.streams,
            r.per_run_kib(),
            r.echo_kib,
            r.peak_kib,
            r.posts,
            r.wall,
            r.cpu,
            r.cpu / r.wall / cpus as f64 * 100.0,
            r.busy * 100.0,
            match r.refused.len() {
                0 => "0".to_owned(),
                n => format!("{n} ({})", r.refused.join(", ")),
            }
        );
    }
    out += "\nHalfway through the answers (every run streaming), per run: resident KiB by mapping, and open connections by peer (the rest of the process, same for every count, not divided)\n\n| answers at once | resident per run by mapping | connections per run by peer | other descriptors |\n|---|---|---|---|\n";
    for r in rounds.iter() {
        let n = r.streams as f64;
        let rss: Vec<String> = r
            .mid_rss
            .iter()
            .filter(|(_, kib)| **kib as f64 / n >= 1.0)
            .map(|(m, kib)| format!("{m} {:.1}", *kib as f64 / n))
            .collect();
        let (tcp, other): (Vec<_>, Vec<_>) =
            r.mid_fds.iter().partition(|(w, _)| w.starts_with("tcp "));
        let tcp: Vec<String> = tcp
            .iter()
            .map(|(w, c)| format!("{} {:.2}", &w[4..], **c as f64 / n))
            .collect();
        let other: Vec<String> = other.iter().map(|(w, c)| format!("{w} {c}")).collect();
        out += &format!(
            "| {} | {} | {} | {} |\n",
            r.streams,
            rss.join(", "),
            tcp.join(", "),
            other.join(", ")
        );
    }
    out
}
