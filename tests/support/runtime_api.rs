//! A loopback implementation of the Lambda Runtime API that runs a real function binary as
//! Lambda does, feeds it events and measures it: init, first invocation, warm latencies, RSS.
//!
//! Shared by the end-to-end tests (`tests/lambda_binary.rs`, `tests/concurrency.rs`) and the
//! benchmarks (`benches/coldstart.rs`, `benches/concurrency.rs`, the soaks of
//! `benches/coldstart.rs` and `benches/soak.rs`, which also count the process's open file
//! descriptors and where its resident memory is).
//!
//! Like Lambda, it serves every `/next` long-poll on its own connection, so an environment
//! with `AWS_LAMBDA_MAX_CONCURRENCY` > 1 holds several at once: each gets a different
//! invocation, and `/response` and `/error` are matched to theirs by request id.
#![allow(dead_code)]

use super::http::read_message;
use std::collections::{HashMap, VecDeque};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};

/// The deadline the harness gives an invocation: the template's 30 s of old for route and
/// sweep events (they finish in milliseconds).
const INVOCATION_TIMEOUT_MS: u128 = 30_000;

/// The deadline of an asynchronous (worker) invocation: the template's function timeout.
const ASYNC_INVOCATION_TIMEOUT_MS: u128 = 900_000;

/// How one invocation ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// `/response` with this body.
    Response(String),
    /// `/error` with the `Lambda-Runtime-Function-Error-Type` header and this body.
    Error { error_type: String, body: String },
}

impl Outcome {
    /// The response body parsed as JSON (panics on errors: for tests).
    pub fn json(&self) -> serde_json::Value {
        match self {
            Outcome::Response(b) => serde_json::from_str(b).expect("response JSON"),
            Outcome::Error { error_type, body } => {
                panic!("invocation failed: {error_type}: {body}")
            }
        }
    }
}

#[derive(Default)]
struct State {
    /// Queued invocations: request id, event, time limit in milliseconds.
    queue: VecDeque<(String, String, u128)>,
    waiting: HashMap<String, oneshot::Sender<Outcome>>,
    first_next: Option<Instant>,
    init_error: Option<String>,
    next_calls: u64,
    /// `/next` long-polls waiting for an invocation right now, and the most seen at once.
    polling: u64,
    max_polling: u64,
    /// Asynchronous invocations accepted through the emulated `Invoke` API.
    invoked: u64,
    /// Outcomes of asynchronous invocations, in the order they ended.
    async_outcomes: Vec<Outcome>,
    /// When each asynchronous invocation ended, in the same order.
    async_ended_at: Vec<Instant>,
    /// While set, `Invoke` answers with this (status, error type) instead of accepting.
    invoke_fault: Option<(u16, &'static str)>,
    /// While set, accepted asynchronous invocations wait here instead of the queue.
    hold_async: bool,
    held: VecDeque<(String, String, u128)>,
    /// While set, the deadline of asynchronous invocations (instead of the function timeout).
    async_timeout_ms: Option<u128>,
    /// Route and sweep invocations' deadline (instead of [`INVOCATION_TIMEOUT_MS`]).
    timeout_ms: Option<u128>,
    /// The deadline of each invocation handed out and not answered yet, by request id.
    deadlines: HashMap<String, u128>,
    /// Invocations answered after their deadline (Lambda would have killed them).
    late: u64,
}

/// How a process was spawned: program, arguments, environment, memory size.
type Spawned = (String, Vec<String>, Vec<(String, String)>, u32);

/// The Runtime API server and the function processes it serves (execution environments
/// sharing one invocation queue). It also serves Lambda's `Invoke` API: an `Event` invocation
/// is queued like any other, as Lambda queues a function's asynchronous invocations.
pub struct Runtime {
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
    pub addr: String,
    child: Option<Child>,
    others: Vec<Child>,
    spawned_at: Option<Instant>,
    counter: AtomicU64,
    next_stdout: Option<std::fs::File>,
    /// The last process spawned, for [`Runtime::respawn`].
    last_spawn: Option<Spawned>,
}

/// Lambda's usual environment for a function of `memory_mb`.
pub fn lambda_env(api: &str, memory_mb: u32) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", api),
        ("AWS_LAMBDA_FUNCTION_NAME", "wsexec-harness"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", &memory_mb.to_string()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/wsexec-harness"),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/28/[$LATEST]harness"),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("LAMBDA_TASK_ROOT", "/var/task"),
        ("TZ", ":UTC"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

impl Runtime {
    /// Starts the Runtime API on a loopback port.
    pub async fn start() -> Runtime {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new(State::default()));
        let notify = Arc::new(Notify::new());
        let (s, n) = (state.clone(), notify.clone());
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let _ = sock.set_nodelay(true);
                tokio::spawn(serve(sock, s.clone(), n.clone()));
            }
        });
        Runtime {
            state,
            notify,
            addr,
            child: None,
            others: Vec::new(),
            spawned_at: None,
            counter: AtomicU64::new(0),
            next_stdout: None,
            last_spawn: None,
        }
    }

    /// Writes the stdout (log and EMF lines) of the next process spawned to `file`.
    pub fn stdout_to(&mut self, file: std::fs::File) {
        self.next_stdout = Some(file);
    }

    /// Spawns `program` (with `args`) as the function, with Lambda's environment plus `env`.
    pub fn spawn(
        &mut self,
        program: &str,
        args: &[&str],
        env: &[(String, String)],
        memory_mb: u32,
    ) {
        let owned = args.iter().map(|a| a.to_string()).collect();
        self.last_spawn = Some((program.to_owned(), owned, env.to_vec(), memory_mb));
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(lambda_env(&self.addr, memory_mb))
            .envs(env.iter().cloned())
            .envs(
                std::env::var("HARNESS_SSL_CERT_FILE")
                    .ok()
                    .map(|f| ("SSL_CERT_FILE".to_owned(), f)),
            )
            .stdin(Stdio::null())
            .stdout(match self.next_stdout.take() {
                Some(f) => Stdio::from(f),
                None if std::env::var("HARNESS_VERBOSE").is_ok() => Stdio::inherit(),
                None => Stdio::null(),
            })
            .stderr(if std::env::var("HARNESS_VERBOSE").is_ok() {
                Stdio::inherit()
            } else {
                Stdio::null()
            });
        self.spawned_at = Some(Instant::now());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
        // The first process is the one measured; later ones are more execution environments.
        match self.child {
            None => self.child = Some(child),
            Some(_) => self.others.push(child),
        }
    }

    /// Starts one more execution environment exactly like the last one spawned.
    pub fn respawn(&mut self) {
        let (program, args, env, memory_mb) = self.last_spawn.clone().expect("spawned before");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.spawn(&program, &args, &env, memory_mb);
    }

    /// Kills every function process at once (SIGKILL: a crash, or Lambda ending a timed-out
    /// environment); their in-flight invocations never answer.
    pub fn kill_all(&mut self) {
        for c in self.child.iter_mut().chain(self.others.iter_mut()) {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.child = None;
        self.others.clear();
    }

    /// Asynchronous invocations accepted so far through the `Invoke` API.
    pub fn async_invocations(&self) -> u64 {
        self.state.lock().unwrap().invoked
    }

    /// Outcomes of asynchronous invocations that have ended, in order.
    pub fn async_outcomes(&self) -> Vec<Outcome> {
        self.state.lock().unwrap().async_outcomes.clone()
    }

    /// When each asynchronous invocation that has ended ended, in order.
    pub fn async_ended_at(&self) -> Vec<Instant> {
        self.state.lock().unwrap().async_ended_at.clone()
    }

    /// Holds accepted asynchronous invocations back (`true`), or queues the held ones and
    /// every later one (`false`): lets a test choose which environment serves a worker.
    pub fn hold_async(&self, hold: bool) {
        {
            let mut s = self.state.lock().unwrap();
            s.hold_async = hold;
            if !hold {
                let held: Vec<_> = s.held.drain(..).collect();
                s.queue.extend(held);
            }
        }
        self.notify.notify_waiters();
    }

    /// Gives asynchronous invocations accepted from now on a deadline `ms` after they start
    /// (as a function's `Timeout` does), instead of 900 s.
    pub fn set_async_timeout(&self, ms: u128) {
        self.state.lock().unwrap().async_timeout_ms = Some(ms);
    }

    /// Gives route and sweep invocations queued from now on a deadline `ms` after they start.
    pub fn set_timeout(&self, ms: u128) {
        self.state.lock().unwrap().timeout_ms = Some(ms);
    }

    /// Invocations that answered after their deadline (Lambda would have killed them first).
    pub fn late_invocations(&self) -> u64 {
        self.state.lock().unwrap().late
    }

    /// Makes `Invoke` answer `(status, error type)` (`None`: accept again).
    pub fn fail_invokes(&self, fault: Option<(u16, &'static str)>) {
        self.state.lock().unwrap().invoke_fault = fault;
    }

    /// Time from spawn to the function's first `/next` (its init), waiting up to `limit`.
    pub async fn wait_init(&mut self, limit: Duration) -> Duration {
        let start = self.spawned_at.expect("spawned");
        let deadline = Instant::now() + limit;
        loop {
            let notified = self.notify.notified();
            if let Some(t) = self.state.lock().unwrap().first_next {
                return t - start;
            }
            if let Some(e) = self.init_error() {
                panic!("init error: {e}");
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("function exited during init: {status}");
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "function did not call /next within {limit:?}"
            );
            let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), notified).await;
        }
    }

    /// The body of a `/init/error` report, if any.
    pub fn init_error(&self) -> Option<String> {
        self.state.lock().unwrap().init_error.clone()
    }

    /// Invokes the function with `event`; returns the outcome and the latency from the event
    /// being available to the outcome arriving. Takes `&self`, so a test can have many
    /// invocations in flight at once (`join_all` over several calls).
    pub async fn invoke(&self, event: &str, limit: Duration) -> (Outcome, Duration) {
        let (_, outcome, took) = self.invoke_with_id(event, limit).await;
        (outcome, took)
    }

    /// [`Runtime::invoke`], also returning the Lambda request id the invocation was given.
    pub async fn invoke_with_id(
        &self,
        event: &str,
        limit: Duration,
    ) -> (String, Outcome, Duration) {
        let n = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
        let id = format!("8f5c2a1e-0000-4000-8000-{n:012}");
        let (tx, rx) = oneshot::channel();
        let start = Instant::now();
        {
            let mut s = self.state.lock().unwrap();
            s.waiting.insert(id.clone(), tx);
            let timeout = s.timeout_ms.unwrap_or(INVOCATION_TIMEOUT_MS);
            s.queue.push_back((id.clone(), event.to_owned(), timeout));
        }
        self.notify.notify_waiters();
        let out = tokio::time::timeout(limit, rx)
            .await
            .expect("function did not answer in time")
            .expect("runtime API closed");
        (id, out, start.elapsed())
    }

    /// Peak resident memory (VmHWM) of the function process, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let pid = self.child.as_ref().expect("spawned").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Current resident memory (VmRSS) of the function process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let pid = self.child.as_ref().expect("spawned").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Resident memory of the function process by mapping, in KiB (from `/proc/<pid>/smaps`):
    /// `binary` (its own file), `[heap]` (the main `brk` heap), `anon` (anonymous mappings:
    /// the allocator's other arenas and large blocks, thread stacks), and each other named
    /// mapping by its name (shared libraries, `[stack]`, `[vdso]`).
    pub fn rss_by_mapping(&self) -> std::collections::BTreeMap<String, u64> {
        let pid = self.child.as_ref().expect("spawned").id();
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        let exe = exe.to_string_lossy().into_owned();
        let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
        let mut by = std::collections::BTreeMap::new();
        let mut current = String::new();
        for line in text.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            if first.contains('-') && !first.ends_with(':') {
                // A mapping's header: range perms offset dev inode [path].
                let path = line.split_whitespace().nth(5).unwrap_or("");
                current = match path {
                    "" => "anon".to_owned(),
                    p if p == exe => "binary".to_owned(),
                    p => p.rsplit('/').next().unwrap_or(p).to_owned(),
                };
            } else if let Some(kib) = line.strip_prefix("Rss:") {
                let kib: u64 = kib
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .unwrap_or(0);
                *by.entry(current.clone()).or_insert(0) += kib;
            }
        }
        by
    }

    /// Open file descriptors of the function process (the entries of `/proc/<pid>/fd`).
    pub fn fd_count(&self) -> usize {
        let pid = self.child.as_ref().expect("spawned").id();
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// What each open file descriptor of the function process is, counted: a TCP socket as
    /// `tcp <peer> <state>` (from `/proc/<pid>/net/tcp` and `tcp6`; a listening socket's peer
    /// is its own address), a Unix one as `unix <path>` (`unnamed` for a socket pair), anything
    /// else as its `/proc/<pid>/fd` link with the inode number left out (`pipe`,
    /// `anon_inode:[eventfd]`, `/dev/null`, `socket` for another kind of socket).
    pub fn open_fds(&self) -> std::collections::BTreeMap<String, usize> {
        let pid = self.child.as_ref().expect("spawned").id();
        let mut tcp = HashMap::new();
        for table in ["tcp", "tcp6"] {
            let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}"));
            for line in text.unwrap_or_default().lines().skip(1) {
                let f: Vec<&str> = line.split_whitespace().collect();
                if f.len() > 9 {
                    let (local, peer) = (proc_addr(f[1]), proc_addr(f[2]));
                    let state = match f[3] {
                        "01" => "ESTABLISHED",
                        "06" => "TIME_WAIT",
                        "08" => "CLOSE_WAIT",
                        "0A" => "LISTEN",
                        other => other,
                    };
                    let end = if state == "LISTEN" { local } else { peer };
                    tcp.insert(f[9].to_owned(), format!("tcp {end} {state}"));
                }
            }
        }
        // A Unix socket (a socket pair, such as the runtime's signal pipe) by its path, if any.
        let unix = std::fs::read_to_string(format!("/proc/{pid}/net/unix"));
        for line in unix.unwrap_or_default().lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 6 {
                let path = f.get(7).copied().unwrap_or("unnamed");
                tcp.entry(f[6].to_owned())
                    .or_insert_with(|| format!("unix {path}"));
            }
        }
        let mut kinds = std::collections::BTreeMap::new();
        let entries = std::fs::read_dir(format!("/proc/{pid}/fd"));
        for entry in entries.into_iter().flatten().flatten() {
            let link = std::fs::read_link(entry.path())
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "closed".into());
            let kind = match link.strip_prefix("socket:[") {
                Some(inode) => tcp
                    .get(inode.trim_end_matches(']'))
                    .cloned()
                    .unwrap_or_else(|| "socket".into()),
                None if link.starts_with("pipe:[") => "pipe".into(),
                None => link,
            };
            *kinds.entry(kind).or_insert(0) += 1;
        }
        kinds
    }

    /// [`Runtime::open_fds`] with each TCP socket labelled by what listens at its peer's port
    /// (`names`: port → name, see [`port_of`]): `tcp <peer> <state> (<name>)`.
    pub fn open_fds_named(
        &self,
        names: &std::collections::BTreeMap<u16, String>,
    ) -> std::collections::BTreeMap<String, usize> {
        let mut named = std::collections::BTreeMap::new();
        for (kind, n) in self.open_fds() {
            let peer = kind
                .strip_prefix("tcp ")
                .and_then(|r| r.split(' ').next())
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse::<u16>().ok())
                .and_then(|p| names.get(&p));
            let label = match peer {
                Some(name) => format!("{kind} ({name})"),
                None => kind,
            };
            *named.entry(label).or_insert(0) += n;
        }
        named
    }

    /// Stops the function with SIGTERM (as Lambda does at shutdown) and waits for it, so tools
    /// like valgrind write their output.
    pub fn terminate(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }

    /// Sends the function process SIGTERM, as Lambda does at shutdown, and waits (without
    /// blocking: the loopback servers of a test run on its thread) until it exits, at most
    /// `limit`; how long it took.
    pub async fn sigterm(&mut self, limit: Duration) -> Duration {
        let pid = self.pid().expect("spawned").to_string();
        let sent = Instant::now();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        while self.alive() && sent.elapsed() < limit {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sent.elapsed()
    }

    /// The function process's id (for signalling it while invocations are in flight).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the function process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Times the function has called `/next`.
    pub fn next_calls(&self) -> u64 {
        self.state.lock().unwrap().next_calls
    }

    /// The most `/next` long-polls that were waiting at once (an environment in concurrent
    /// mode holds one per invocation slot).
    pub fn max_polling(&self) -> u64 {
        self.state.lock().unwrap().max_polling
    }

    /// Waits (up to `limit`) until `n` `/next` long-polls wait at once: the environments are
    /// ready for `n` invocations.
    pub async fn wait_polling(&self, n: u64, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let notified = self.notify.notified();
            let polling = self.state.lock().unwrap().polling;
            if polling >= n {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{polling} of {n} /next long-polls within {limit:?}"
            );
            let _ = tokio::time::timeout(left.min(Duration::from_millis(100)), notified).await;
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.kill_all();
    }
}

async fn respond(
    sock: &mut TcpStream,
    status: u16,
    headers: &[(&str, String)],
    body: &[u8],
) -> bool {
    let mut head = format!("HTTP/1.1 {status} OK\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    sock.write_all(head.as_bytes()).await.is_ok() && sock.write_all(body).await.is_ok()
}

/// Resolves once the peer has closed `sock` (a killed environment).
async fn closed(sock: &TcpStream) {
    let mut b = [0u8; 1];
    match sock.peek(&mut b).await {
        Ok(0) | Err(_) => {}
        // Data while long-polling: not a close; wait for the invocation instead.
        Ok(_) => std::future::pending::<()>().await,
    }
}

async fn serve(mut sock: TcpStream, state: Arc<Mutex<State>>, notify: Arc<Notify>) {
    let mut buf = Vec::new();
    while let Some(req) = read_message(&mut sock, &mut buf).await {
        let (method, body) = (req.method(), req.body());
        let path = req.path().trim_start_matches("/2018-06-01");
        if method == "GET" && path == "/runtime/invocation/next" {
            {
                let mut s = state.lock().unwrap();
                s.next_calls += 1;
                s.first_next.get_or_insert_with(Instant::now);
                s.polling += 1;
                s.max_polling = s.max_polling.max(s.polling);
            }
            notify.notify_waiters();
            let stop_polling = || state.lock().unwrap().polling -= 1;
            // Long-poll, as Lambda does, until an invocation is queued.
            let (id, event, timeout_ms) = loop {
                let notified = notify.notified();
                if let Some(item) = state.lock().unwrap().queue.pop_front() {
                    break item;
                }
                // An environment killed while it long-polls must not take the next invocation.
                tokio::select! {
                    _ = notified => {}
                    _ = closed(&sock) => {
                        stop_polling();
                        return;
                    }
                }
            };
            stop_polling();
            let deadline = epoch_ms() + timeout_ms;
            state.lock().unwrap().deadlines.insert(id.clone(), deadline);
            let hdrs = [
                ("Content-Type", "application/json".to_owned()),
                ("Lambda-Runtime-Aws-Request-Id", id),
                ("Lambda-Runtime-Deadline-Ms", deadline.to_string()),
                (
                    "Lambda-Runtime-Invoked-Function-Arn",
                    "arn:aws:lambda:us-east-1:123456789012:function:wsexec-harness".to_owned(),
                ),
                (
                    "Lambda-Runtime-Trace-Id",
                    "Root=1-6748a1b0-0123456789abcdef01234567;Sampled=0".to_owned(),
                ),
            ];
            if !respond(&mut sock, 200, &hdrs, event.as_bytes()).await {
                // The environment that long-polled is gone (killed): Lambda would hand the
                // invocation to another one, so it goes back to the head of the queue.
                let id = hdrs[1].1.clone();
                state
                    .lock()
                    .unwrap()
                    .queue
                    .push_front((id, event, timeout_ms));
                notify.notify_waiters();
                return;
            }
        } else if method == "POST"
            && req.path().starts_with("/2015-03-31/functions/")
            && req.path().ends_with("/invocations")
        {
            let fault = state.lock().unwrap().invoke_fault;
            if let Some((status, kind)) = fault {
                let body = format!(r#"{{"Type":"Service","message":"injected {kind}"}}"#);
                let hdrs = [("x-amzn-ErrorType", kind.to_owned())];
                respond(&mut sock, status, &hdrs, body.as_bytes()).await;
                continue;
            }
            let event = String::from_utf8_lossy(body).into_owned();
            {
                let mut s = state.lock().unwrap();
                s.invoked += 1;
                let id = format!("a5c2a1e0-0000-4000-8000-{:012}", s.invoked);
                let timeout = s.async_timeout_ms.unwrap_or(ASYNC_INVOCATION_TIMEOUT_MS);
                let item = (id, event, timeout);
                if s.hold_async {
                    s.held.push_back(item);
                } else {
                    s.queue.push_back(item);
                }
            }
            notify.notify_waiters();
            if !respond(&mut sock, 202, &[], b"").await {
                return;
            }
        } else if method == "POST" && req.path() == "/2020-01-01/extension/register" {
            // The Extensions API: an extension (the runtime's graceful-shutdown helper) makes
            // Lambda send the process SIGTERM at shutdown.
            let hdrs = [(
                "Lambda-Extension-Identifier",
                "harness-extension-1".to_owned(),
            )];
            let body = br#"{"functionName":"wsexec-harness","functionVersion":"$LATEST","handler":"bootstrap"}"#;
            if !respond(&mut sock, 200, &hdrs, body).await {
                return;
            }
        } else if method == "GET" && req.path() == "/2020-01-01/extension/event/next" {
            // It subscribes to no event: its long-poll never answers.
            closed(&sock).await;
            return;
        } else if method == "POST" && path == "/runtime/init/error" {
            state.lock().unwrap().init_error = Some(String::from_utf8_lossy(body).into_owned());
            notify.notify_waiters();
            respond(&mut sock, 202, &[], b"{}").await;
        } else if method == "POST" && path.starts_with("/runtime/invocation/") {
            let rest = &path["/runtime/invocation/".len()..];
            let (id, kind) = rest.split_once('/').unwrap_or((rest, ""));
            let body = String::from_utf8_lossy(body).into_owned();
            let outcome = match kind {
                "response" => Outcome::Response(body),
                _ => Outcome::Error {
                    error_type: req
                        .header("lambda-runtime-function-error-type")
                        .unwrap_or_default(),
                    body,
                },
            };
            {
                let mut s = state.lock().unwrap();
                if s.deadlines.remove(id).is_some_and(|d| epoch_ms() > d) {
                    s.late += 1;
                }
                match s.waiting.remove(id) {
                    Some(tx) => {
                        let _ = tx.send(outcome);
                    }
                    None => {
                        s.async_outcomes.push(outcome);
                        s.async_ended_at.push(Instant::now());
                    }
                }
            }
            notify.notify_waiters();
            if !respond(&mut sock, 202, &[], b"{}").await {
                return;
            }
        } else {
            respond(&mut sock, 404, &[], b"{}").await;
        }
    }
}

/// The port of an `http://host:port/...` address (the Runtime API's `addr`, an endpoint's URL).
pub fn port_of(url: &str) -> u16 {
    let host = url.split("://").nth(1).unwrap_or(url);
    let host = host.split('/').next().unwrap_or(host);
    host.rsplit(':').next().unwrap().parse().unwrap()
}

/// `0100007F:1F90` (a `/proc/net/tcp` address: IPv4 little-endian hex, port hex) as
/// `127.0.0.1:8080`; an IPv4-mapped IPv6 one likewise, any other IPv6 one as `[v6]:8080`.
fn proc_addr(hex: &str) -> String {
    let (ip, port) = hex.split_once(':').unwrap_or((hex, "0"));
    let port = u16::from_str_radix(port, 16).unwrap_or(0);
    let v4 = match ip.len() {
        8 => Some(ip),
        32 if ip.starts_with("0000000000000000FFFF0000") => Some(&ip[24..]),
        _ => None,
    };
    match v4.and_then(|h| u32::from_str_radix(h, 16).ok()) {
        Some(v) => format!("{}:{port}", std::net::Ipv4Addr::from(v.swap_bytes())),
        None => format!("[v6]:{port}"),
    }
}

/// Now, epoch milliseconds.
fn epoch_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// The median of `xs` (sorted in place).
pub fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = xs.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// The `p`-th percentile (0..=100) of `xs` (sorted in place), nearest rank.
pub fn percentile(xs: &mut [f64], p: f64) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if xs.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * xs.len() as f64).ceil() as usize;
    xs[rank.clamp(1, xs.len()) - 1]
}
