// The chat page's rendering of runs, after client.js (the wsexec-client library, which owns the
// connection, reconnects, resumes and assembles text) in the same strict-mode function.
// Every untrusted string becomes a text node; nothing is ever parsed as HTML.
/** Threads per `list_executions` page (the protocol allows 1–50). */
const PAGE_LIMIT = 50;
/** Messages remembered for the transcript of a reopened thread (the server keeps no text view). */
const REMEMBERED_MESSAGES = 200;
const STORE_USER = "wsexec.user";
const STORE_MESSAGES = "wsexec.messages";
/** The events that end a run. */
const TERMINAL = new Set(["agent_completed", "agent_error", "agent_cancelled", "agent_death"]);

const $ = (id) => document.getElementById(id);
const ui = {
  identity: $("identity"), user: $("user"), token: $("token"), connect: $("connect"),
  conn: $("conn-state"), threads: $("threads"), more: $("more-threads"),
  newThread: $("new-thread"), title: $("thread-title"), transcript: $("transcript"),
  composer: $("composer"), message: $("message"), send: $("send"), cancel: $("cancel"),
  agent: $("agent"), delay: $("delay"), status: $("status"),
};

let client = null; // the library's client from Connect until Disconnect
let threadId = null;
const views = new Map(); // run_id -> run view
const threadRows = new Map(); // thread_id -> {li, button, title, meta, runs, updated}

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

/** Shows the connection's state (the library's `closed` is the page's `disconnected`). */
function setConn(state) {
  const shown = state === "closed" ? "disconnected" : state;
  ui.conn.dataset.conn = shown;
  ui.conn.textContent = shown;
  ui.connect.textContent = shown === "disconnected" ? "Connect" : "Disconnect";
  ui.send.disabled = shown !== "connected";
  updateCancel();
}

// --- runs -----------------------------------------------------------------------------
function newView(requestId, text) {
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
  const view = {
    root, agent, badge, steps, answer, error, runId: null, run: null, state: "pending", openSteps: [],
    approvals: new Map(), // call_id -> {box, yes, no, outcome, answered}
  };
  setState(view, "pending");
  return view;
}

function bindThread(view, id) {
  if (id && !view.root.dataset.threadId) view.root.dataset.threadId = id;
}

function bind(view, runId) {
  if (view.runId || !runId) return;
  view.runId = runId;
  view.root.dataset.runId = runId;
  views.set(runId, view);
}

function setState(view, state) {
  view.state = state;
  view.root.dataset.state = state;
  view.badge.textContent = state;
  updateCancel();
}

/** The newest run on screen that can still be cancelled. */
function current() {
  let last = null;
  for (const view of views.values()) {
    if (view.run && wsexec.isAlive(view.state) && view.root.isConnected) last = view;
  }
  return last;
}

function updateCancel() {
  ui.cancel.disabled = !(client && client.state === "connected" && current());
}

function scroll() { ui.transcript.scrollTop = ui.transcript.scrollHeight; }

function showError(view, code, message) {
  view.error.hidden = false;
  view.error.textContent = "";
  view.error.append(el("code", "", code || "error"), document.createTextNode(" " + (message || "")));
}

function step(view, p) {
  const row = el("details", "step");
  const summary = el("summary");
  const name = el("span", "tool", p.tool_name || "tool");
  const time = el("span", "time", "running…");
  summary.append(name, time);
  row.append(summary, el("div", "label", "parameters"), el("pre", "params", show(p.parameters ?? {})));
  view.steps.append(row);
  view.openSteps.push({ row, time, name: p.tool_name });
}

function stepDone(view, p) {
  const i = view.openSteps.findIndex((s) => s.name === p.tool_name);
  const s = i >= 0 ? view.openSteps.splice(i, 1)[0] : null;
  if (!s) { step(view, p); return stepDone(view, p); }
  s.time.textContent = p.execution_time_ms === undefined ? "done" : p.execution_time_ms + " ms";
  s.row.append(el("div", "label", "result"), el("pre", "result", show(p.result)));
}

/** Asks the user about one tool call the run waits on: the tool, its parameters (as text) and
 * Approve / Deny, which answer through the library. One box per call: a replayed request (after
 * a reconnect or a reload) finds its box. */
function approval(view, run, p) {
  const callId = String(p.call_id ?? "");
  if (!callId || view.approvals.has(callId)) return;
  const box = el("div", "approval");
  box.dataset.callId = callId;
  box.setAttribute("role", "group");
  box.setAttribute("aria-label", "Approve " + (p.tool_name || "tool") + "?");
  const head = el("p", "approval-head");
  head.append(el("span", "", "The agent wants to run "), el("span", "tool", p.tool_name || "tool"));
  const buttons = el("div", "approval-actions");
  const yes = el("button", "approve", "Approve");
  const no = el("button", "deny", "Deny");
  yes.type = no.type = "button";
  buttons.append(yes, no);
  const outcome = el("output", "outcome");
  outcome.setAttribute("aria-live", "polite");
  if (p.expires_at) outcome.textContent = "Answer by " + new Date(p.expires_at).toLocaleTimeString() + ".";
  box.append(head, el("div", "label", "parameters"), el("pre", "params", show(p.parameters ?? {})), buttons, outcome);
  view.steps.append(box);
  const entry = { box, yes, no, outcome, answered: false };
  view.approvals.set(callId, entry);
  const answer = (approved) => {
    if (entry.answered) return;
    entry.answered = true;
    yes.disabled = no.disabled = true;
    box.dataset.answer = approved ? "approved" : "denied";
    outcome.textContent = approved ? "Approving…" : "Denying…";
    run.approve(callId, approved).then(
      (r) => {
        box.dataset.outcome = "accepted";
        outcome.textContent = (approved ? "Approved" : "Denied") +
          (r && r.continued ? "; the run continues." : "; waiting for the other answers.");
      },
      (e) => {
        box.dataset.outcome = e.code || "error";
        if (e.code === "already_answered") outcome.textContent = "Already answered (in another tab?).";
        else outcome.textContent = "Not answered: " + (e.code || "error") + ": " + (e.message || "");
        // A hiccup (storage, no reply in time) may pass: the user may answer again.
        if (e.retryable && view.run && !view.run.done) {
          entry.answered = false;
          yes.disabled = no.disabled = false;
        }
      },
    );
  };
  yes.addEventListener("click", () => answer(true));
  no.addEventListener("click", () => answer(false));
}

/** Unanswered boxes take no more answers, saying `why`. */
function closeApprovals(view, outcome, why) {
  for (const a of view.approvals.values()) {
    if (a.answered) continue;
    a.answered = true;
    a.yes.disabled = a.no.disabled = true;
    a.box.dataset.outcome = outcome;
    a.outcome.textContent = why;
  }
}

/** Shows one event of a run; the library has already dropped duplicates and kept the text. */
function apply(view, run, ev) {
  const p = ev.payload || {};
  // A run goes on past its approvals only once all of them are answered: a step or text after
  // them means another tab answered those still open here (an end is `finish`'s to tell).
  if (ev.type !== "tool_approval_required" && !TERMINAL.has(ev.type)) {
    closeApprovals(view, "elsewhere", "Answered in another tab.");
  }
  switch (ev.type) {
    case "agent_started":
      if (p.agent_name) view.agent.textContent = p.agent_name;
      setState(view, "running");
      break;
    case "agent_thinking":
      view.steps.append(el("p", "thought", "step " + (p.step_number ?? "?") + ": " + (p.thought ?? "")));
      break;
    case "tool_executing": step(view, p); break;
    case "tool_completed": stepDone(view, p); break;
    case "tool_approval_required": approval(view, run, p); break;
    case "agent_delta":
    case "agent_text_discarded":
      view.answer.textContent = run.streamedText;
      if (view.state === "pending") setState(view, "running");
      break;
    default: return;
  }
  scroll();
}

/** Shows how a run ended: the answer (`result.text`, or the streamed text when the result was
 * cut), or its error. */
function finish(view, outcome) {
  if (outcome.state === "completed") {
    view.answer.textContent = outcome.text || (outcome.result === undefined ? "" : show(outcome.result));
  }
  const e = outcome.error;
  if (e && e.code !== "cancelled" && e.code !== "closed") {
    if (e.code === "run_dead") showError(view, "agent_death", e.message);
    else showError(view, e.code, e.message);
  }
  setState(view, outcome.state);
  closeApprovals(view, "closed", "Not answered: the run ended " + outcome.state + ".");
  scroll();
}

/** Renders a run handle as it streams, then its outcome. */
async function follow(view, run) {
  view.run = run;
  run.id().then((id) => bind(view, id), () => {});
  try {
    for await (const ev of run) {
      bind(view, ev.run_id);
      bindThread(view, ev.thread_id);
      if (ev.thread_id && !threadId) selectThread(ev.thread_id, false);
      apply(view, run, ev);
    }
  } catch (_) { /* the client was closed: the outcome says so */ }
  const outcome = await run.outcome();
  finish(view, outcome);
  if (!wsexec.isAlive(outcome.state)) refreshThreads();
}

/** Shows a stored run (a reopened thread's finished run). */
function snapshot(view, x) {
  bind(view, x.run_id);
  bindThread(view, x.thread_id);
  if (x.agent) view.agent.textContent = x.agent;
  if (x.result !== undefined) view.answer.textContent = wsexec.resultText(x.result) ?? show(x.result);
  if (x.error) showError(view, x.error.code, x.error.message);
  setState(view, x.state);
}
