//! Cold start, side by side (issue 8): the release `wsexec` binary, a hello-world
//! `lambda_runtime` floor, and the same `$connect` in Node.js (SDK v3) and Python (boto3),
//! each as a fresh process under one loopback Lambda Runtime API, alternating per round, with
//! ratios taken pair by pair and medians reported. Then a 10,000-invocation soak, one at a time
//! (RSS and open file descriptors along the way; `benches/soak.rs` is the 20,000-run one with
//! runs side by side, `llm` runs, cancels, timeouts, followers and provider faults).
//!
//! Run with `tools/bench` (it builds the binaries and installs the baselines). Writes
//! `target/coldstart.md` and `target/coldstart.json`. `--mcp` instead compares the `llm` agent's
//! cold start with and without `MCP_SERVERS` (issue 22: nothing MCP is built until an `llm` run
//! needs its tools), writing `target/coldstart-mcp.md`. `--alt` compares the floor, this build
//! and `WSEXEC_ALT_BIN` (another build of it, such as a non-PIE one: issue 27), writing
//! `target/coldstart-alt.md`.

#[path = "../tests/support/connections.rs"]
mod connections;
#[path = "../tests/support/dynamodb.rs"]
mod dynamodb;
#[path = "../tests/support/http.rs"]
mod http;
#[path = "../tests/support/runtime_api.rs"]
mod runtime_api;

use runtime_api::{Runtime, median, percentile};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);
const SECRET: &str = "wsexec-sample-secret";

fn env_or(k: &str, d: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| d.to_owned())
}

fn sample(name: &str) -> Value {
    let p = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn connect_event(id: &str) -> String {
    let mut e = sample("connect-jwt-query.json");
    e["requestContext"]["connectionId"] = id.into();
    e.to_string()
}

fn message_event(conn: &str, body: &str, n: u64) -> String {
    let mut e = sample("message-ping.json");
    e["requestContext"]["connectionId"] = conn.into();
    e["requestContext"]["messageId"] = format!("M{n:014}=").into();
    e["body"] = body.into();
    e.to_string()
}

struct Contender {
    name: &'static str,
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

#[derive(Default)]
struct Samples(BTreeMap<String, Vec<f64>>);

impl Samples {
    fn add(&mut self, k: &str, v: f64) {
        self.0.entry(k.to_owned()).or_default().push(v);
    }
    fn med(&mut self, k: &str) -> f64 {
        median(
            self.0
                .get_mut(k)
                .map(|v| v.as_mut_slice())
                .unwrap_or(&mut []),
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Instruction counts (callgrind) of a fixed script on each binary in `CALLGRIND_BINS`
/// (`label=path,label=path`): init, one `$connect`, 20 pings and 5 echo runs. Repeatable where
/// wall-clock time is too noisy to compare builds.
async fn callgrind(base_env: &[(String, String)]) {
    let root = env!("CARGO_MANIFEST_DIR");
    let wsexec = env_or("WSEXEC_BIN", &format!("{root}/target/release/wsexec"));
    let bins = env_or("CALLGRIND_BINS", &format!("release={wsexec}"));
    let mut md = String::from("| binary | instructions (Ir) |\n|---|---|\n");
    for entry in bins.split(',') {
        let (label, bin) = entry.split_once('=').unwrap_or(("wsexec", entry));
        let out = format!("{root}/target/callgrind.{label}.out");
        let mut rt = Runtime::start().await;
        let args = [
            "--tool=callgrind",
            &format!("--callgrind-out-file={out}"),
            bin,
        ];
        rt.spawn("valgrind", &args, base_env, 128);
        rt.wait_init(Duration::from_secs(120)).await;
        let slow = Duration::from_secs(120);
        rt.invoke(&connect_event("G000000000001="), slow)
            .await
            .0
            .json();
        for i in 0..20 {
            rt.invoke(
                &message_event("G000000000001=", r#"{"type":"ping"}"#, i),
                slow,
            )
            .await
            .0
            .json();
        }
        for i in 0..5 {
            let body = format!(
                r#"{{"type":"start_agent","request_id":"cg{label}{i}","payload":{{"user_request":"hi"}}}}"#
            );
            rt.invoke(&message_event("G000000000001=", &body, 100 + i), slow)
                .await
                .0
                .json();
        }
        rt.terminate();
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let ir = text
            .lines()
            .find_map(|l| {
                l.strip_prefix("summary:")
                    .or_else(|| l.strip_prefix("totals:"))
            })
            .map(|v| v.split_whitespace().next().unwrap_or("0").to_owned())
            .unwrap_or_default();
        md.push_str(&format!("| {label} | {ir} |\n"));
    }
    println!("{md}");
    std::fs::write(format!("{root}/target/callgrind.md"), md).unwrap();
}

/// Init and first `$connect` of the `llm`-configured binary without and with `MCP_SERVERS`
/// (two servers that are never contacted: a cold start must not reach them), one fresh process
/// each per round, the order swapped every round, ratios pair by pair, medians.
async fn mcp_cold(base_env: &[(String, String)], wsexec: &str, rounds: usize) {
    let llm = [
        ("LLM_PROVIDER", "openai"),
        ("LLM_MODEL", "bench-model"),
        ("LLM_BASE_URL", "http://127.0.0.1:9/v1"),
    ];
    let servers = r#"[{"name":"orders","url":"http://127.0.0.1:9/mcp","headers":{"Authorization":"Bearer bench"}},
                      {"name":"docs","url":"https://mcp.invalid/mcp","tools":["search"]}]"#;
    let env_of = |mcp: bool| -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = base_env.to_vec();
        env.extend(llm.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        if mcp {
            env.push(("MCP_SERVERS".into(), servers.into()));
        }
        env
    };
    let mut s = Samples::default();
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        let mut cold = BTreeMap::new();
        for mcp in order {
            let name = if mcp { "mcp" } else { "plain" };
            let mut rt = Runtime::start().await;
            rt.spawn(wsexec, &[], &env_of(mcp), 128);
            let init = rt.wait_init(LIMIT).await;
            let (out, first) = rt
                .invoke(
                    &connect_event(&format!("M{round:03}{:011}=", mcp as u8)),
                    LIMIT,
                )
                .await;
            assert_eq!(out.json()["statusCode"], 200, "{name} $connect");
            s.add(&format!("{name}.init_ms"), ms(init));
            s.add(&format!("{name}.first_connect_ms"), ms(first));
            s.add(&format!("{name}.rss_kib"), rt.peak_rss_kib() as f64);
            cold.insert(name, (ms(init), ms(first)));
        }
        let (p, m) = (cold["plain"], cold["mcp"]);
        s.add("ratio.init_mcp_over_plain", m.0 / p.0);
        s.add("ratio.first_connect_mcp_over_plain", m.1 / p.1);
        s.add("ratio.cold_mcp_over_plain", (m.0 + m.1) / (p.0 + p.1));
    }
    let mut md = format!("| figure ({rounds} rounds) | median |\n|---|---|\n");
    for k in s.0.keys().cloned().collect::<Vec<_>>() {
        md.push_str(&format!("| {k} | {:.3} |\n", s.med(&k)));
    }
    println!("{md}");
    let _ = std::fs::write(
        format!("{}/target/coldstart-mcp.md", env!("CARGO_MANIFEST_DIR")),
        md,
    );
}

/// `--alt` (issue 27): the floor, this build and another build of it (`WSEXEC_ALT_BIN`, such as
/// a non-PIE one), a fresh process each per round in rotating order: init, first `$connect` and
/// peak RSS, each build's RSS over the floor's taken round by round. Writes
/// `target/coldstart-alt.md`.
async fn alt_cold(base_env: &[(String, String)], floor: &str, wsexec: &str, rounds: usize) {
    let alt = std::env::var("WSEXEC_ALT_BIN").expect("--alt needs WSEXEC_ALT_BIN");
    let subjects = [("floor", floor), ("wsexec", wsexec), ("alt", alt.as_str())];
    let mut s = Samples::default();
    for round in 0..rounds {
        let mut rss = BTreeMap::new();
        for k in 0..subjects.len() {
            let (name, bin) = subjects[(round + k) % subjects.len()];
            let mut rt = Runtime::start().await;
            rt.spawn(bin, &[], base_env, 128);
            let init = rt.wait_init(LIMIT).await;
            let conn = format!("A{round:03}{k:011}=");
            let (out, first) = rt.invoke(&connect_event(&conn), LIMIT).await;
            assert_eq!(out.json()["statusCode"], 200, "{name} $connect");
            let peak = rt.peak_rss_kib() as f64;
            s.add(&format!("{name}.init_ms"), ms(init));
            s.add(&format!("{name}.first_connect_ms"), ms(first));
            s.add(&format!("{name}.rss_kib"), peak);
            rss.insert(name, peak);
        }
        s.add("ratio.rss_wsexec_over_floor", rss["wsexec"] / rss["floor"]);
        s.add("ratio.rss_alt_over_floor", rss["alt"] / rss["floor"]);
    }
    let mut md = format!("| figure ({rounds} rounds) | median |\n|---|---|\n");
    for k in s.0.keys().cloned().collect::<Vec<_>>() {
        md.push_str(&format!("| {k} | {:.3} |\n", s.med(&k)));
    }
    println!("{md}");
    let _ = std::fs::write(
        format!("{}/target/coldstart-alt.md", env!("CARGO_MANIFEST_DIR")),
        md,
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let callgrind_mode = std::env::args().any(|a| a == "--callgrind");
    let root = env!("CARGO_MANIFEST_DIR");
    let rounds: usize = env_or("COLDSTART_ROUNDS", "10").parse().unwrap();
    let wsexec = env_or("WSEXEC_BIN", &format!("{root}/target/release/wsexec"));
    let floor = env_or("FLOOR_BIN", &format!("{root}/target/release/hello_floor"));
    let python = env_or("PYTHON", &format!("{root}/.tools/venv/bin/python"));
    let store = dynamodb::fresh_store("coldstart").await;
    let table = store.table().to_owned();
    let pushes = connections::start().await;
    let base_env: Vec<(String, String)> = [
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_SESSION_TOKEN", "test"),
        ("AWS_ENDPOINT_URL_DYNAMODB", &dynamodb::endpoint()),
        ("TABLE_NAME", &table),
        ("JWT_SECRET", SECRET),
        ("CONNECTIONS_ENDPOINT", &pushes.url),
        ("RUST_LOG", "warn"),
        ("NODE_OPTIONS", ""),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();

    if callgrind_mode {
        callgrind(&base_env).await;
        return;
    }
    if std::env::args().any(|a| a == "--alt") {
        alt_cold(&base_env, &floor, &wsexec, rounds).await;
        return;
    }
    if std::env::args().any(|a| a == "--mcp") {
        mcp_cold(&base_env, &wsexec, rounds).await;
        return;
    }
    let contender = |name, program: &str, args: Vec<String>, env: &[(&str, &str)]| Contender {
        name,
        program: program.to_owned(),
        args,
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let contenders = [
        contender("floor", &floor, vec![], &[]),
        contender("wsexec", &wsexec, vec![], &[]),
        contender(
            "wsexec_warmup",
            &wsexec,
            vec![],
            &[("DYNAMODB_WARMUP", "1")],
        ),
        contender(
            "node",
            "node",
            vec![format!("{root}/tools/coldstart/node/index.mjs")],
            &[],
        ),
        contender(
            "python",
            &python,
            vec![format!("{root}/tools/coldstart/python/bootstrap.py")],
            &[],
        ),
    ];

    let mut s = Samples::default();
    let mut n = 0u64;
    for round in 0..rounds {
        // One fresh process per contender per round, in the same order every round (A B C D
        // A B C D ...), so machine noise hits every contender alike.
        let mut cold = BTreeMap::new();
        for c in &contenders {
            n += 1;
            let mut rt = Runtime::start().await;
            let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
            let env: Vec<_> = base_env
                .iter()
                .cloned()
                .chain(c.env.iter().cloned())
                .collect();
            rt.spawn(&c.program, &args, &env, 128);
            let init = rt.wait_init(LIMIT).await;
            let conn = format!("C{round:03}{n:011}=");
            let (out, first) = rt.invoke(&connect_event(&conn), LIMIT).await;
            assert_eq!(out.json()["statusCode"], 200, "{} $connect", c.name);
            s.add(&format!("{}.init_ms", c.name), ms(init));
            s.add(&format!("{}.first_ms", c.name), ms(first));
            s.add(&format!("{}.cold_ms", c.name), ms(init + first));
            s.add(&format!("{}.rss_kib", c.name), rt.peak_rss_kib() as f64);
            cold.insert(c.name, (init, first));
            if c.name == "wsexec" {
                // Warm $connect, then ping and a whole echo run, on the same instance.
                let mut warm_connect = Vec::new();
                for i in 0..50 {
                    let (_, d) = rt
                        .invoke(&connect_event(&format!("W{round:03}{i:011}=")), LIMIT)
                        .await;
                    warm_connect.push(ms(d));
                }
                s.add(
                    "wsexec.warm_connect_p50_ms",
                    percentile(&mut warm_connect.clone(), 50.0),
                );
                s.add(
                    "wsexec.warm_connect_p99_ms",
                    percentile(&mut warm_connect, 99.0),
                );
                let (_, run) = rt
                    .invoke(&message_event(&conn, &format!(r#"{{"type":"start_agent","request_id":"cs{n}","payload":{{"user_request":"hi"}}}}"#), n), LIMIT)
                    .await;
                s.add("wsexec.first_echo_run_ms", ms(run));
                let mut runs = Vec::new();
                for i in 0..50 {
                    let body = format!(
                        r#"{{"type":"start_agent","request_id":"cw{n}x{i}","payload":{{"user_request":"hi"}}}}"#
                    );
                    let (_, d) = rt
                        .invoke(&message_event(&conn, &body, n * 1000 + i), LIMIT)
                        .await;
                    runs.push(ms(d));
                }
                s.add(
                    "wsexec.warm_echo_run_p50_ms",
                    percentile(&mut runs.clone(), 50.0),
                );
                s.add("wsexec.warm_echo_run_p99_ms", percentile(&mut runs, 99.0));
            }
        }
        // A fresh wsexec whose first invocation is a ping (no DynamoDB client is built).
        let mut rt = Runtime::start().await;
        rt.spawn(&wsexec, &[], &base_env, 128);
        let init = rt.wait_init(LIMIT).await;
        let (_, first) = rt
            .invoke(
                &message_event("P0000000000001=", r#"{"type":"ping"}"#, 1),
                LIMIT,
            )
            .await;
        s.add("wsexec_ping.cold_ms", ms(init + first));
        s.add("wsexec_ping.first_ms", ms(first));
        let mut pings = Vec::new();
        for i in 0..200 {
            let (_, d) = rt
                .invoke(
                    &message_event("P0000000000001=", r#"{"type":"ping"}"#, i + 2),
                    LIMIT,
                )
                .await;
            pings.push(ms(d));
        }
        s.add(
            "wsexec.warm_ping_p50_ms",
            percentile(&mut pings.clone(), 50.0),
        );
        s.add("wsexec.warm_ping_p99_ms", percentile(&mut pings, 99.0));
        // One DynamoDB round trip on a fresh connection, from this process: the cost the
        // first `$connect` may add over the floor.
        let fresh = dynamodb::store_at(&table, &dynamodb::endpoint(), Default::default());
        let t = Instant::now();
        use wsexec::store::Store;
        fresh
            .put_connection(&wsexec::store::ConnectionRecord {
                connection_id: format!("R{round:014}="),
                user_id: "bench".into(),
                tenant_id: None,
                endpoint: None,
                connected_at: 0,
                expires_at: u64::MAX / 2,
            })
            .await
            .unwrap();
        s.add("dynamodb_round_trip_ms", ms(t.elapsed()));
        // Pair-by-pair ratios within this round.
        let f = cold["floor"];
        let w = cold["wsexec"];
        s.add("ratio.wsexec_init_over_floor", ms(w.0) / ms(f.0));
        s.add(
            "ratio.node_cold_over_wsexec",
            ms(cold["node"].0 + cold["node"].1) / ms(w.0 + w.1),
        );
        s.add(
            "ratio.python_cold_over_wsexec",
            ms(cold["python"].0 + cold["python"].1) / ms(w.0 + w.1),
        );
        s.add(
            "ratio.floor_cold_over_wsexec",
            ms(f.0 + f.1) / ms(w.0 + w.1),
        );
        eprintln!("round {}/{rounds} done", round + 1);
    }
    for c in ["floor", "wsexec", "wsexec_warmup", "node", "python"] {
        let (a, b) = (s.med(&format!("{c}.rss_kib")), s.med("floor.rss_kib"));
        s.add(&format!("ratio.{c}_rss_over_floor"), a / b);
    }

    // Soak: 10,000 mixed invocations in one process; RSS must not grow after warm-up.
    let soak_n: u64 = env_or("SOAK_INVOCATIONS", "10000").parse().unwrap();
    let mut rt = Runtime::start().await;
    rt.spawn(&wsexec, &[], &base_env, 128);
    rt.wait_init(LIMIT).await;
    let (mut rss_at, mut fds_at) = (BTreeMap::new(), BTreeMap::new());
    let soak_start = Instant::now();
    for i in 1..=soak_n {
        let conn = format!("S{:014}=", i / 8);
        let ev = match i % 8 {
            0 => connect_event(&conn),
            1 | 4 => message_event(&conn, r#"{"type":"ping"}"#, i),
            2 => message_event(
                &conn,
                &format!(
                    r#"{{"type":"start_agent","request_id":"s{i}","payload":{{"user_request":"soak"}}}}"#
                ),
                i,
            ),
            3 => message_event(
                &conn,
                &format!(r#"{{"type":"get_execution","run_id":"run_{i:032}"}}"#),
                i,
            ),
            5 => message_event(&conn, r#"{"type":"list_executions","limit":5}"#, i),
            6 => message_event(&conn, "not json at all", i),
            _ => {
                let mut e = sample("disconnect.json");
                e["requestContext"]["connectionId"] = conn.clone().into();
                e.to_string()
            }
        };
        let (out, _) = rt.invoke(&ev, LIMIT).await;
        out.json();
        if i == 1000 || i == soak_n || i % 2500 == 0 {
            rss_at.insert(i, rt.rss_kib());
            fds_at.insert(i, rt.fd_count());
        }
    }
    let soak_secs = soak_start.elapsed().as_secs_f64();

    // Report.
    let mut keys: Vec<String> = s.0.keys().cloned().collect();
    keys.sort();
    let mut medians = serde_json::Map::new();
    for k in &keys {
        medians.insert(k.clone(), json!((s.med(k) * 1000.0).round() / 1000.0));
    }
    let binary_size = std::fs::metadata(&wsexec).map(|m| m.len()).unwrap_or(0);
    let floor_size = std::fs::metadata(&floor).map(|m| m.len()).unwrap_or(0);
    let report = json!({
        "rounds": rounds,
        "medians": medians,
        "soak": {"invocations": soak_n, "seconds": soak_secs, "rss_kib_at": rss_at, "fds_at": fds_at},
        "binary_bytes": {"wsexec": binary_size, "floor": floor_size},
    });
    let mut md = String::from("| measure | median |\n|---|---|\n");
    for (k, v) in &medians {
        md.push_str(&format!("| {k} | {v} |\n"));
    }
    md.push_str(&format!(
        "\nsoak: {soak_n} invocations in {soak_secs:.1} s, RSS KiB at {rss_at:?}, open fds at {fds_at:?}\n"
    ));
    md.push_str(&format!(
        "binary bytes: wsexec {binary_size}, floor {floor_size}\n"
    ));
    println!("{md}");
    let out = format!("{root}/target");
    std::fs::write(format!("{out}/coldstart.md"), &md).unwrap();
    std::fs::write(
        format!("{out}/coldstart.json"),
        serde_json::to_string_pretty(&report).unwrap(),
    )
    .unwrap();
}
