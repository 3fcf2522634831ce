//! No leaks (issue 27): 20,000 runs in one warm release-binary process under the loopback
//! Runtime API (`AWS_LAMBDA_MAX_CONCURRENCY` slots, several runs at once), on DynamoDB Local,
//! a loopback `@connections` endpoint and a loopback Chat Completions endpoint. The runs mix,
//! by index, `echo` runs and scripted `llm` runs that complete, runs cancelled mid-run
//! (`cancel_agent`), runs past `RUN_TIME_LIMIT_MS`, runs a second connection follows
//! (`resume`), and provider faults (500, 429, a reset mid-stream). Every run has its own
//! connection(s), connected and disconnected around it.
//!
//! Measured on the function process: VmRSS after each quarter of the runs (the target: the
//! last within 5% of the first), and its open file descriptors after a warm-up (once the
//! DynamoDB, `@connections` and model clients have their connections) against the end, at
//! once and after an idle pause, each socket named by its peer. Every run must end with the
//! terminal event its kind expects; the counts per kind are printed.
//!
//! Run with `tools/bench` or `cargo bench --bench soak` (release binary `WSEXEC_BIN`, else
//! this checkout's `target/release/wsexec`). `SOAK_RUNS` (default 20000), `SOAK_WORKERS` (runs
//! at once, default 8; the process gets twice as many slots, for the cancels and resumes that
//! run beside a start), `SOAK_RUN_LIMIT_MS` (the process's `RUN_TIME_LIMIT_MS`, default 1000),
//! `SOAK_IDLE_MS` (the pause before the last count, default 2000), `SOAK_ENV` (more of the
//! process's environment, `K=V` pairs separated by spaces: `MALLOC_ARENA_MAX=1`, or a heap
//! profiler's `LD_PRELOAD`). Writes `target/soak.md`.

#[path = "../tests/support/connections.rs"]
mod connections;
#[path = "../tests/support/dynamodb.rs"]
mod dynamodb;
#[path = "../tests/support/http.rs"]
mod http;
#[path = "../tests/support/runtime_api.rs"]
mod runtime_api;
#[path = "../tests/support/sse.rs"]
mod sse;

use connections::ConnectionsEndpoint;
use futures_util::StreamExt;
use runtime_api::{Runtime, port_of};
use serde_json::{Value, json};
use sse::{ChatServer, Reply, Step};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest wait for one invocation or one run's terminal event.
const LIMIT: Duration = Duration::from_secs(60);

/// How often a run's frames are looked at while waiting for one.
const POLL: Duration = Duration::from_millis(5);

/// What a run is asked to do, chosen from its index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// `echo`, no delay: completes.
    Echo,
    /// `llm`, a two-piece answer: completes.
    Llm,
    /// `echo` with a step far longer than the run may take, cancelled once started.
    CancelEcho,
    /// `llm` streaming a slow answer, cancelled after its first `agent_delta`.
    CancelLlm,
    /// `echo` whose step outlasts `RUN_TIME_LIMIT_MS`: `run_timeout`.
    TimeoutEcho,
    /// `llm` whose model stalls after a first piece: `run_timeout`.
    TimeoutLlm,
    /// `echo` with a short step, followed by a second connection (`resume`, `after_seq` 0).
    FollowEcho,
    /// `llm` streaming over a short while, followed likewise.
    FollowLlm,
    /// `llm`, the model answers 500: an `llm_*` error.
    Fault500,
    /// `llm`, the model answers 429 with a spent quota: `llm_throttled`, not retried.
    Fault429,
    /// `llm`, the model resets the connection mid-answer: an `llm_*` error.
    FaultReset,
}

use Kind::*;

/// One cycle of kinds; run `i` is `CYCLE[i % CYCLE.len()]`. 40 runs: 15 echo, 12 llm, 4
/// cancels, 2 timeouts, 4 followed, 3 faults.
const CYCLE: [Kind; 40] = [
    Echo,
    Llm,
    Echo,
    Llm,
    CancelEcho,
    Echo,
    Llm,
    FollowEcho,
    Echo,
    Fault500, //
    Llm,
    Echo,
    TimeoutEcho,
    Llm,
    Echo,
    CancelLlm,
    Llm,
    Echo,
    FollowLlm,
    Fault429, //
    Echo,
    Llm,
    Echo,
    CancelEcho,
    Llm,
    Echo,
    FollowEcho,
    Llm,
    Echo,
    TimeoutLlm, //
    Llm,
    Echo,
    CancelLlm,
    Echo,
    FaultReset,
    Llm,
    FollowLlm,
    Echo,
    Llm,
    Echo,
];

/// How a run ended, from its terminal event.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum End {
    Completed,
    Cancelled,
    Timeout,
    /// `agent_error` with this code (other than `run_timeout`).
    Failed(String),
    /// `agent_death`, or no terminal event at all (with what was heard).
    Other(String),
}

impl End {
    fn of(frame: &Value) -> Option<End> {
        let code = || frame["payload"]["code"].as_str().unwrap_or("").to_owned();
        Some(match frame["type"].as_str()? {
            "agent_completed" => End::Completed,
            "agent_cancelled" => End::Cancelled,
            "agent_error" if code() == "run_timeout" => End::Timeout,
            "agent_error" => End::Failed(code()),
            "agent_death" => End::Other("agent_death".into()),
            _ => return None,
        })
    }

    /// The column of the report it counts in.
    fn column(&self) -> &'static str {
        match self {
            End::Completed => "completed",
            End::Cancelled => "cancelled",
            End::Timeout => "timeout",
            End::Failed(_) => "failed",
            End::Other(_) => "other",
        }
    }
}

impl Kind {
    fn agent(self) -> &'static str {
        match self {
            Echo | CancelEcho | TimeoutEcho | FollowEcho => "echo",
            _ => "llm",
        }
    }

    /// Whether `end` is what this kind must end with.
    fn expects(self, end: &End) -> bool {
        match self {
            Echo | Llm | FollowEcho | FollowLlm => *end == End::Completed,
            CancelEcho | CancelLlm => *end == End::Cancelled,
            TimeoutEcho | TimeoutLlm => *end == End::Timeout,
            Fault429 => *end == End::Failed("llm_throttled".into()),
            Fault500 | FaultReset => matches!(end, End::Failed(c) if c.starts_with("llm_")),
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Echo | Llm | FollowEcho | FollowLlm => "completed",
            CancelEcho | CancelLlm => "cancelled",
            TimeoutEcho | TimeoutLlm => "timeout (run_timeout)",
            Fault429 => "failed (llm_throttled)",
            Fault500 | FaultReset => "failed (llm_*)",
        }
    }

    /// The echo step's delay for this kind, given the run's time limit.
    fn delay_ms(self, limit_ms: u64) -> Option<u64> {
        match self {
            Echo => None,
            CancelEcho => Some(limit_ms * 10),
            TimeoutEcho => Some(limit_ms * 2),
            FollowEcho => Some(limit_ms / 4),
            _ => None,
        }
    }

    /// The model's reply to a run of this kind (`llm` kinds only).
    fn reply(self, limit_ms: u64) -> Reply {
        let piece = |t: &str| Step::Send(sse::text(t));
        let end = [
            Step::Send(sse::finish("stop")),
            Step::Send(sse::usage(12, 4)),
            Step::Send(sse::done()),
        ];
        let paced = |pieces: u64, gap: Duration| {
            let mut steps = vec![piece("soak ")];
            for _ in 0..pieces {
                steps.push(Step::Sleep(gap));
                steps.push(piece("more "));
            }
            steps.extend(end.clone());
            Reply::Stream(steps)
        };
        match self {
            CancelLlm => paced(40, Duration::from_millis(limit_ms / 4)),
            FollowLlm => paced(5, Duration::from_millis(limit_ms / 20)),
            TimeoutLlm => Reply::Stream(vec![piece("soak "), Step::Stall]),
            Fault500 => sse::status(
                500,
                r#"{"error":{"type":"server_error","message":"soak fault"}}"#,
            ),
            Fault429 => sse::status(
                429,
                r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#,
            ),
            FaultReset => Reply::Stream(vec![piece("soak "), Step::Reset]),
            _ => sse::answer(&["soak ", "ok"]),
        }
    }

    /// The kind a model request is for: the `soak-kind=` marker in its prompt.
    fn of_request(body: &Value) -> Kind {
        let text = body.to_string();
        let name = text
            .split("soak-kind=")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_alphanumeric()).next())
            .unwrap_or("");
        CYCLE
            .iter()
            .copied()
            .find(|k| format!("{k:?}") == name)
            .unwrap_or(Llm)
    }
}

fn sample(name: &str) -> Value {
    let p = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn env_or<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// What every run shares: the function, the `@connections` endpoint, the run time limit.
struct Soak {
    rt: Runtime,
    ep: ConnectionsEndpoint,
    limit_ms: u64,
    /// The `$connect` event (the sample JWT's user), the message and `$disconnect` events.
    connect: Value,
    message: Value,
    disconnect: Value,
}

/// One run's record: its kind, how it ended on its own connection (and on the follower's).
struct Record {
    kind: Kind,
    end: End,
    follower: Option<End>,
}

impl Soak {
    async fn call(&self, event: &Value) -> Value {
        self.rt.invoke(&event.to_string(), LIMIT).await.0.json()
    }

    async fn connect(&self, conn: &str) {
        let mut e = self.connect.clone();
        e["requestContext"]["connectionId"] = conn.into();
        assert_eq!(self.call(&e).await["statusCode"], 200, "$connect {conn}");
    }

    async fn disconnect(&self, conn: &str) {
        let mut e = self.disconnect.clone();
        e["requestContext"]["connectionId"] = conn.into();
        self.call(&e).await;
    }

    /// Sends `body` on `conn`; the direct reply's body, parsed (`Null` when none).
    async fn send(&self, conn: &str, id: &str, body: &Value) -> Value {
        let mut e = self.message.clone();
        e["requestContext"]["connectionId"] = conn.into();
        e["requestContext"]["messageId"] = id.into();
        e["body"] = body.to_string().into();
        let out = self.call(&e).await;
        out["body"]
            .as_str()
            .and_then(|b| serde_json::from_str(b).ok())
            .unwrap_or(Value::Null)
    }

    /// Waits until a frame on `conn` passes `until`; that frame.
    async fn frame(&self, conn: &str, until: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(f) = self.ep.delivered(conn).into_iter().find(|f| until(f)) {
                return f;
            }
            if Instant::now() > deadline {
                let kinds: Vec<Value> = self
                    .ep
                    .delivered(conn)
                    .iter()
                    .map(|f| f["type"].clone())
                    .collect();
                return json!({"type": "none", "heard": kinds});
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// How the run heard on `conn` ended (waiting for its terminal event).
    async fn end(&self, conn: &str) -> End {
        let f = self.frame(conn, |f| End::of(f).is_some()).await;
        End::of(&f).unwrap_or_else(|| End::Other(f["heard"].to_string()))
    }

    /// Run `i`, from `$connect` to `$disconnect`.
    async fn run(&self, i: u64) -> Record {
        let kind = CYCLE[i as usize % CYCLE.len()];
        let conn = format!("S{i:014}=");
        self.connect(&conn).await;
        let mut payload = json!({"user_request": format!("soak-kind={kind:?} run {i}")});
        if let Some(d) = kind.delay_ms(self.limit_ms) {
            payload["delay_ms"] = d.into();
        }
        let start = json!({"type": "start_agent", "agent": kind.agent(),
                           "request_id": format!("soak-{i}"), "payload": payload});
        let start_id = format!("A{i:014}=");
        let started = self.send(&conn, &start_id, &start);
        let beside = async {
            match kind {
                CancelEcho | CancelLlm => {
                    // Mid-run: once the run is under way (for `llm`, once it streams).
                    let wanted = if kind == CancelLlm {
                        "agent_delta"
                    } else {
                        "agent_started"
                    };
                    let f = self.frame(&conn, |f| f["type"] == wanted).await;
                    let cancel = json!({"type": "cancel_agent", "run_id": f["run_id"]});
                    // The canceller hears `agent_cancelled` as the reply, and the driver pushes
                    // it to the run's other connections only.
                    let reply = self.send(&conn, &format!("B{i:014}="), &cancel).await;
                    Some(End::of(&reply).unwrap_or_else(|| End::Other(reply.to_string())))
                }
                FollowEcho | FollowLlm => {
                    let f = self.frame(&conn, |f| f["type"] == "agent_started").await;
                    let follower = format!("F{i:014}=");
                    self.connect(&follower).await;
                    let resume = json!({"type": "resume", "run_id": f["run_id"], "after_seq": 0});
                    let reply = self.send(&follower, &format!("R{i:014}="), &resume).await;
                    assert_eq!(reply["type"], "execution", "run {i}: {reply}");
                    let end = self.end(&follower).await;
                    self.disconnect(&follower).await;
                    Some(end)
                }
                _ => None,
            }
        };
        let (reply, beside) = tokio::join!(started, beside);
        assert!(reply.is_null(), "run {i}: start replied {reply}");
        let (end, follower) = match kind {
            // The run's connection sent the cancel: its reply is the run's end there, and
            // nothing may follow it.
            CancelEcho | CancelLlm => {
                let end = beside.expect("the cancel's reply");
                let heard = self.ep.delivered(&conn);
                match heard.iter().find_map(End::of) {
                    None => (end, None),
                    Some(pushed) => (End::Other(format!("{end:?}, then {pushed:?} pushed")), None),
                }
            }
            _ => (self.end(&conn).await, beside),
        };
        self.disconnect(&conn).await;
        Record {
            kind,
            end,
            follower,
        }
    }

    /// Runs `from..to`, `workers` at once.
    async fn runs(&self, from: u64, to: u64, workers: usize, out: &Mutex<Vec<Record>>) {
        futures_util::stream::iter(from..to)
            .for_each_concurrent(workers, |i| async move {
                let r = self.run(i).await;
                out.lock().unwrap().push(r);
            })
            .await;
    }
}

/// Of `fds`: (the clients' pooled connections: DynamoDB, `@connections`, the model; the rest).
fn pooled(fds: &BTreeMap<String, usize>) -> (usize, usize) {
    let clients = ["(DynamoDB)", "(@connections)", "(model)"];
    fds.iter().fold((0, 0), |(p, o), (k, n)| {
        if clients.iter().any(|c| k.ends_with(c)) {
            (p + n, o)
        } else {
            (p, o + n)
        }
    })
}

fn fds_line(fds: &BTreeMap<String, usize>) -> String {
    let total: usize = fds.values().sum();
    let parts: Vec<String> = fds.iter().map(|(k, n)| format!("{n} × {k}")).collect();
    format!("{total}: {}", parts.join(", "))
}

#[tokio::main]
async fn main() {
    let root = env!("CARGO_MANIFEST_DIR");
    let bin =
        std::env::var("WSEXEC_BIN").unwrap_or_else(|_| format!("{root}/target/release/wsexec"));
    let n: u64 = env_or("SOAK_RUNS", 20_000);
    let workers: usize = env_or("SOAK_WORKERS", 8);
    let limit_ms: u64 = env_or("SOAK_RUN_LIMIT_MS", 1000);
    let idle_ms: u64 = env_or("SOAK_IDLE_MS", 2000);
    let slots = workers * 2;

    let store = dynamodb::fresh_store("soak").await;
    let ep = connections::start().await;
    let model = ChatServer::start_by(move |body| Kind::of_request(body).reply(limit_ms)).await;
    let mut env: Vec<(String, String)> = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_ENDPOINT_URL_DYNAMODB", dynamodb::endpoint().as_str()),
        ("CONNECTIONS_ENDPOINT", ep.url.as_str()),
        ("JWT_SECRET", "wsexec-sample-secret"),
        ("TABLE_NAME", store.table()),
        ("RUST_LOG", "warn"),
        ("LLM_PROVIDER", "openai"),
        ("LLM_MODEL", "soak-model"),
        ("LLM_BASE_URL", model.url.as_str()),
        ("RUN_TIME_LIMIT_MS", &limit_ms.to_string()),
        ("AWS_LAMBDA_MAX_CONCURRENCY", &slots.to_string()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let more = std::env::var("SOAK_ENV").unwrap_or_default();
    for pair in more.split_whitespace() {
        let (k, v) = pair.split_once('=').expect("SOAK_ENV holds K=V pairs");
        env.push((k.to_owned(), v.to_owned()));
    }
    let mut rt = Runtime::start().await;
    rt.spawn(&bin, &[], &env, 1024);
    // The time of each line below since the spawn (to find it in a heap profiler's timeline).
    let spawned = Instant::now();
    rt.wait_init(LIMIT).await;
    rt.wait_polling(slots as u64, LIMIT).await;
    let names: BTreeMap<u16, String> = [
        (port_of(&dynamodb::endpoint()), "DynamoDB"),
        (port_of(&ep.url), "@connections"),
        (port_of(&model.url), "model"),
        (port_of(&rt.addr), "Runtime API"),
    ]
    .into_iter()
    .map(|(p, s)| (p, s.to_owned()))
    .collect();
    let soak = Soak {
        rt,
        ep,
        limit_ms,
        connect: sample("connect-jwt-query.json"),
        message: sample("message-ping.json"),
        disconnect: sample("disconnect.json"),
    };
    let rss_init = soak.rt.rss_kib();
    let records = Mutex::new(Vec::new());

    // Warm-up: two cycles of every kind, so each client has made its connections.
    let warm = (2 * CYCLE.len() as u64).min(n);
    let began = Instant::now();
    soak.runs(0, warm, workers, &records).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fds_start = soak.rt.open_fds_named(&names);
    let rss_warm = soak.rt.rss_kib();
    let map_warm = soak.rt.rss_by_mapping();
    eprintln!(
        "soak: {:.1} s: warm after {warm} runs, RSS {rss_warm} KiB, fds {}",
        spawned.elapsed().as_secs_f64(),
        fds_line(&fds_start)
    );

    let mut quarters = Vec::new();
    let mut done = warm;
    for q in 1..=4u64 {
        let to = (n * q / 4).max(done);
        let t = Instant::now();
        soak.runs(done, to, workers, &records).await;
        let secs = t.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (rss, fds) = (soak.rt.rss_kib(), soak.rt.fd_count());
        eprintln!(
            "soak: {:.1} s: {to}/{n} runs, RSS {rss} KiB, {fds} fds, {:.0} runs/s",
            spawned.elapsed().as_secs_f64(),
            (to - done) as f64 / secs
        );
        quarters.push((to, rss, fds));
        done = to;
    }
    let took = began.elapsed().as_secs_f64();
    let fds_end = soak.rt.open_fds_named(&names);
    tokio::time::sleep(Duration::from_millis(idle_ms)).await;
    let fds_idle = soak.rt.open_fds_named(&names);
    let rss_idle = soak.rt.rss_kib();
    let map_idle = soak.rt.rss_by_mapping();
    let peak = soak.rt.peak_rss_kib();
    assert!(
        soak.rt.late_invocations() == 0,
        "invocations answered past their deadline"
    );

    // Outcomes per kind.
    let records = records.into_inner().unwrap();
    let columns = ["completed", "cancelled", "timeout", "failed", "other"];
    let mut table: BTreeMap<Kind, BTreeMap<&str, u64>> = BTreeMap::new();
    let mut codes: BTreeMap<String, u64> = BTreeMap::new();
    let mut wrong = Vec::new();
    let mut followers = (0, 0);
    for r in &records {
        *table
            .entry(r.kind)
            .or_default()
            .entry(r.end.column())
            .or_default() += 1;
        if let End::Failed(c) | End::Other(c) = &r.end {
            *codes.entry(c.clone()).or_default() += 1;
        }
        if !r.kind.expects(&r.end) {
            wrong.push(format!("{:?} ended {:?}", r.kind, r.end));
        }
        if let Some(f) = &r.follower {
            followers.0 += 1;
            if *f == r.end {
                followers.1 += 1;
            } else {
                wrong.push(format!(
                    "{:?}: follower ended {f:?}, owner {:?}",
                    r.kind, r.end
                ));
            }
        }
    }

    let first = quarters[0].1 as f64;
    let last = quarters[3].1 as f64;
    let ratio = last / first;
    let mut md = format!(
        "Soak: {n} runs in one warm process ({bin}), {workers} at once \
         (AWS_LAMBDA_MAX_CONCURRENCY={slots}), RUN_TIME_LIMIT_MS={limit_ms}, in {took:.1} s \
         ({:.0} runs/s)\n\n| after | runs | VmRSS (KiB) | open fds |\n|---|---|---|---|\n",
        n as f64 / took
    );
    md.push_str(&format!("| init | 0 | {rss_init} | |\n"));
    md.push_str(&format!(
        "| warm-up | {warm} | {rss_warm} | {} |\n",
        fds_start.values().sum::<usize>()
    ));
    for (i, (to, rss, fds)) in quarters.iter().enumerate() {
        md.push_str(&format!("| quarter {} | {to} | {rss} | {fds} |\n", i + 1));
    }
    md.push_str(&format!(
        "| {idle_ms} ms idle | {n} | {rss_idle} | {} |\n",
        fds_idle.values().sum::<usize>()
    ));
    md.push_str(&format!(
        "\nRSS last quarter / first quarter: {ratio:.4} ({:+.1}%; target within 5%); \
         peak RSS (VmHWM) {peak} KiB\n\n",
        (ratio - 1.0) * 100.0
    ));
    let mapped = |m: &BTreeMap<String, u64>| {
        let parts: Vec<String> = m
            .iter()
            .filter(|(_, kib)| **kib >= 16)
            .map(|(k, kib)| format!("{k} {kib}"))
            .collect();
        parts.join(", ")
    };
    md.push_str(&format!(
        "RSS by mapping (KiB, 16 and more) after warm-up: {}; after {idle_ms} ms idle at the \
         end: {}\n\n",
        mapped(&map_warm),
        mapped(&map_idle)
    ));
    md.push_str(&format!("fds after warm-up: {}\n\n", fds_line(&fds_start)));
    md.push_str(&format!("fds at the end: {}\n\n", fds_line(&fds_end)));
    md.push_str(&format!(
        "fds after {idle_ms} ms idle: {}\n\n",
        fds_line(&fds_idle)
    ));
    let ((pool0, rest0), (pool1, rest1)) = (pooled(&fds_start), pooled(&fds_idle));
    md.push_str(&format!(
        "fds back to the start: {}: {rest0} after warm-up and {rest1} at the end besides the \
         clients' pooled connections (DynamoDB, @connections, model), which were {pool0} and \
         {pool1} (a pool keeps as many as the most requests it had at once, each until it has \
         been idle 50 s for the AWS clients, 30 s for the model's, checked at that interval; \
         the loopback model closes every connection, so its pool stays empty)\n\n",
        if rest1 == rest0 { "yes" } else { "NO" }
    ));
    md.push_str("| kind | expected | runs |");
    for c in columns {
        md.push_str(&format!(" {c} |"));
    }
    md.push_str("\n|---|---|---|---|---|---|---|---|\n");
    for (kind, counts) in &table {
        let runs: u64 = counts.values().sum();
        md.push_str(&format!("| {kind:?} | {} | {runs} |", kind.expected()));
        for c in columns {
            md.push_str(&format!(" {} |", counts.get(c).copied().unwrap_or(0)));
        }
        md.push('\n');
    }
    md.push_str(&format!(
        "\nerror codes: {codes:?}; followers ending as their run: {} of {}; \
         runs not ending as expected: {}\n",
        followers.1,
        followers.0,
        wrong.len()
    ));
    println!("{md}");
    std::fs::write(format!("{root}/target/soak.md"), &md).unwrap();
    for w in wrong.iter().take(20) {
        eprintln!("soak: {w}");
    }
    assert_eq!(records.len() as u64, n, "every run recorded");
    assert!(
        wrong.is_empty(),
        "{} runs did not end as expected",
        wrong.len()
    );
}
