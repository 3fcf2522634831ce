// The chat page's core, first of the two parts `page.rs` joins into one strict-mode function:
// one WebSocket to the gateway that served the page, and each run rendered as it streams.
// Every untrusted string becomes a text node; nothing is ever parsed as HTML.
/** States a run can still leave (DESIGN.md: the first four of nine). */
const ALIVE = new Set(["pending", "starting", "running", "completing"]);
/** Reconnect backoff: first wait, doubling up to the cap, with jitter so tabs spread out. */
const BACKOFF_FIRST_MS = 250;
const BACKOFF_MAX_MS = 5000;
/** Threads per `list_executions` page (the protocol allows 1–50). */
const PAGE_LIMIT = 50;
/** How often a run is re-read when the server cannot `resume` it. */
const POLL_MS = 1000;
/** Messages remembered for the transcript of a reopened thread (the server keeps no text view). */
const REMEMBERED_MESSAGES = 200;
const STORE_USER = "wsexec.user";
const STORE_MESSAGES = "wsexec.messages";

const $ = (id) => document.getElementById(id);
const ui = {
  identity: $("identity"), user: $("user"), token: $("token"), connect: $("connect"),
  conn: $("conn-state"), threads: $("threads"), more: $("more-threads"),
  newThread: $("new-thread"), title: $("thread-title"), transcript: $("transcript"),
  composer: $("composer"), message: $("message"), send: $("send"), cancel: $("cancel"),
  agent: $("agent"), delay: $("delay"), status: $("status"),
};

let ws = null;
let wanted = false; // the user asked to be connected: a drop means reconnect
let attempt = 0;
let retryTimer = null;
let everOpened = false;
let threadId = null;
const runs = new Map(); // run_id -> run view
const byRequest = new Map(); // request_id -> run view
const replies = new Map(); // request_id -> handler of the direct reply
const threadRows = new Map(); // thread_id -> {li, latest}

function randomId(prefix) {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return prefix + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function show(value) {
  if (typeof value === "string") return value;
  try { return JSON.stringify(value, null, 2); } catch (_) { return String(value); }
}

function status(text) { ui.status.textContent = text; }

function loadMessages() {
  try { return JSON.parse(localStorage.getItem(STORE_MESSAGES) || "{}") || {}; } catch (_) { return {}; }
}

function remember(requestId, text) {
  const all = loadMessages();
  all[requestId] = text;
  const keys = Object.keys(all);
  for (const k of keys.slice(0, Math.max(0, keys.length - REMEMBERED_MESSAGES))) delete all[k];
  try { localStorage.setItem(STORE_MESSAGES, JSON.stringify(all)); } catch (_) { /* full: skip */ }
}

// --- connection -----------------------------------------------------------------------
function setConn(state) {
  ui.conn.dataset.conn = state;
  ui.conn.textContent = state;
  ui.connect.textContent = state === "disconnected" ? "Connect" : "Disconnect";
  ui.send.disabled = state !== "connected";
  updateCancel();
}

function open() {
  const user = ui.user.value.trim();
  const token = ui.token.value.trim();
  if (!user && !token) { status("Enter a dev user id or a JWT."); ui.user.focus(); return; }
  const base = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/";
  let socket;
  try {
    socket = token
      ? new WebSocket(base, ["jwt." + token])
      : new WebSocket(base + "?user_id=" + encodeURIComponent(user));
  } catch (e) { status("Cannot connect: " + e.message); return; }
  if (!token) { try { localStorage.setItem(STORE_USER, user); } catch (_) { /* private mode */ } }
  ws = socket;
  setConn(everOpened ? "reconnecting" : "connecting");
  socket.onopen = () => {
    if (ws !== socket) return;
    const resumed = everOpened;
    everOpened = true;
    attempt = 0;
    setConn("connected");
    status("");
    refreshThreads();
    if (resumed) resumeAlive();
  };
  socket.onmessage = (m) => { if (ws === socket) receive(m.data); };
  socket.onclose = (e) => {
    if (ws !== socket) return;
    ws = null;
    if (!wanted) { setConn("disconnected"); return; }
    if (!everOpened) {
      wanted = false;
      setConn("disconnected");
      status("Connection refused (" + e.code + "). Is the id valid, and --dev-auth on?");
      return;
    }
    const wait = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** attempt) * (0.75 + Math.random() / 2);
    attempt += 1;
    setConn("reconnecting");
    status("Connection lost (" + e.code + "); retrying in " + Math.round(wait) + " ms.");
    retryTimer = setTimeout(() => { retryTimer = null; if (wanted && !ws) open(); }, wait);
  };
}

function disconnect() {
  wanted = false;
  everOpened = false;
  if (retryTimer) { clearTimeout(retryTimer); retryTimer = null; }
  if (ws) { const s = ws; ws = null; s.close(1000); }
  setConn("disconnected");
}

function send(frame, onReply) {
  if (!ws || ws.readyState !== WebSocket.OPEN) return false;
  frame.request_id = frame.request_id || randomId("req-");
  if (onReply) replies.set(frame.request_id, onReply);
  ws.send(JSON.stringify(frame));
  return true;
}

/** After a reconnect, asks the gateway to follow each alive run again from its last seq. */
function resumeAlive() {
  for (const run of runs.values()) {
    if (!run.runId || !ALIVE.has(run.state)) continue;
    send({ type: "resume", run_id: run.runId, after_seq: run.lastSeq }, (reply) => {
      if (reply.type === "execution" && reply.payload) snapshot(run, reply.payload);
      else poll(run); // a server without `resume`: the answer still completes, by polling
    });
  }
}

// Run-scoped replies (`execution`) carry the run's own request_id, not the frame's, so a poll
// re-arms on a timer and its snapshots arrive through `receive` like any other.
function poll(run) {
  if (!ALIVE.has(run.state) || !run.root.isConnected) return;
  if (!send({ type: "get_execution", run_id: run.runId })) return; // the next open resumes it
  setTimeout(() => poll(run), POLL_MS);
}

// --- runs -----------------------------------------------------------------------------
function newRun(requestId, text) {
  const root = el("article", "run");
  root.dataset.requestId = requestId;
  const user = el("p", "msg user");
  user.append(el("span", "who", "you"), el("span", "text", text));
  const head = el("div", "run-head");
  const agent = el("span", "agent", "agent");
  const badge = el("span", "badge");
  head.append(agent, badge);
  const steps = el("div", "steps");
  const answer = el("p", "msg answer");
  const error = el("p", "error");
  error.hidden = true;
  if (text === null) user.hidden = true;
  root.append(user, head, steps, answer, error);
  const run = { root, agent, badge, steps, answer, error, runId: null, requestId,
    state: "pending", lastSeq: 0, openSteps: [], deltas: new Map() };
  setState(run, "pending");
  byRequest.set(requestId, run);
  return run;
}

function bindThread(run, id) {
  if (id && !run.root.dataset.threadId) run.root.dataset.threadId = id;
}

function bind(run, runId) {
  if (run.runId || !runId) return;
  run.runId = runId;
  run.root.dataset.runId = runId;
  runs.set(runId, run);
}

function setState(run, state) {
  run.state = state;
  run.root.dataset.state = state;
  run.badge.textContent = state;
  updateCancel();
}

function current() {
  let last = null;
  for (const run of runs.values()) if (ALIVE.has(run.state) && run.root.isConnected) last = run;
  return last;
}

function updateCancel() {
  ui.cancel.disabled = !(ws && ws.readyState === WebSocket.OPEN && current());
}

function scroll() { ui.transcript.scrollTop = ui.transcript.scrollHeight; }

function resultText(result) {
  if (result === null || result === undefined) return "";
  if (typeof result.text === "string") return result.text;
  if (typeof result.reply === "string") return result.reply;
  return show(result);
}

function showError(run, code, message) {
  run.error.hidden = false;
  run.error.textContent = "";
  run.error.append(el("code", "", code || "error"), document.createTextNode(" " + (message || "")));
}

function step(run, p) {
  const row = el("details", "step");
  const summary = el("summary");
  const name = el("span", "tool", p.tool_name || "tool");
  const time = el("span", "time", "running…");
  summary.append(name, time);
  row.append(summary, el("div", "label", "parameters"), el("pre", "params", show(p.parameters ?? {})));
  run.steps.append(row);
  run.openSteps.push({ row, time, name: p.tool_name });
}

function stepDone(run, p) {
  const i = run.openSteps.findIndex((s) => s.name === p.tool_name);
  const s = i >= 0 ? run.openSteps.splice(i, 1)[0] : null;
  if (!s) { step(run, p); return stepDone(run, p); }
  s.time.textContent = p.execution_time_ms === undefined ? "done" : p.execution_time_ms + " ms";
  s.row.append(el("div", "label", "result"), el("pre", "result", show(p.result)));
}

/** Applies one event (pushed, or replayed from a snapshot) to its run. */
function apply(run, msg) {
  const p = msg.payload || {};
  if (typeof msg.seq === "number") {
    if (msg.seq <= run.lastSeq) return; // already shown before a reconnect
    run.lastSeq = msg.seq;
  }
  switch (msg.type) {
    case "agent_started":
      if (p.agent_name) run.agent.textContent = p.agent_name;
      setState(run, "running");
      break;
    case "agent_thinking":
      run.steps.append(el("p", "thought", "step " + (p.step_number ?? "?") + ": " + (p.thought ?? "")));
      break;
    case "tool_executing": step(run, p); break;
    case "tool_completed": stepDone(run, p); break;
    case "agent_delta": {
      // Kept by round: `agent_text_discarded` may withdraw a round's text (a tool-call preamble).
      const node = document.createTextNode(p.text ?? "");
      const round = p.round ?? 1;
      run.answer.append(node);
      if (!run.deltas.has(round)) run.deltas.set(round, []);
      run.deltas.get(round).push(node);
      if (run.state === "pending") setState(run, "running");
      break;
    }
    case "agent_text_discarded":
      for (const node of run.deltas.get(p.round ?? 1) || []) node.remove();
      run.deltas.delete(p.round ?? 1);
      break;
    case "agent_completed":
      // A result cut to fit a message (`truncated`) holds only the answer's start: the streamed
      // deltas are the whole answer, so they stay.
      if (!(p.result && p.result.truncated && run.answer.textContent)) {
        run.deltas.clear();
        run.answer.textContent = resultText(p.result);
      }
      setState(run, "completed");
      break;
    case "agent_error":
      showError(run, p.code, p.message);
      setState(run, p.code === "run_timeout" ? "timeout" : "failed");
      break;
    case "agent_cancelled": setState(run, p.state || "cancelled"); break;
    case "agent_death":
      showError(run, "agent_death", p.cause);
      setState(run, "dead");
      break;
    default: return;
  }
  scroll();
}

/** Brings a run to a stored execution's state (a resume snapshot, a reopened thread). */
function snapshot(run, x) {
  bind(run, x.run_id);
  bindThread(run, x.thread_id);
  if (x.agent) run.agent.textContent = x.agent;
  if (x.result !== undefined && !ALIVE.has(x.state)) run.answer.textContent = resultText(x.result);
  if (x.error) showError(run, x.error.code, x.error.message);
  if (!ALIVE.has(x.state) || run.state === "pending") setState(run, x.state);
}

function runFor(msg) {
  if (msg.run_id && runs.has(msg.run_id)) return runs.get(msg.run_id);
  const run = msg.request_id ? byRequest.get(msg.request_id) : null;
  if (run) bind(run, msg.run_id);
  return run || null;
}

function receive(data) {
  let msg;
  try { msg = JSON.parse(data); } catch (_) { return; }
  if (!msg || typeof msg !== "object") return;
  const handler = msg.request_id ? replies.get(msg.request_id) : null;
  if (handler) {
    replies.delete(msg.request_id);
    handler(msg);
    return;
  }
  if (msg.type === "execution" && msg.payload && runs.has(msg.payload.run_id)) {
    snapshot(runs.get(msg.payload.run_id), msg.payload);
    return;
  }
  const run = runFor(msg);
  if (run) {
    bindThread(run, msg.thread_id);
    if (msg.type === "error") {
      showError(run, msg.payload && msg.payload.code, msg.payload && msg.payload.message);
      if (!run.runId) setState(run, "failed");
    } else if (msg.type === "execution" && msg.payload) {
      snapshot(run, msg.payload); // a retried request found its run
    } else {
      if (msg.thread_id && !threadId) selectThread(msg.thread_id, false);
      apply(run, msg);
      if (!ALIVE.has(run.state)) refreshThreads();
    }
  } else if (msg.type === "error" && msg.payload) {
    status("Error " + msg.payload.code + ": " + msg.payload.message);
  }
}
