// The chat page's second part, after runs.js in the same function: sending and cancelling,
// the thread list and reopened threads, and the controls wired to them.
// --- sending and cancelling -----------------------------------------------------------
function submit() {
  const text = ui.message.value;
  if (!text.trim()) return;
  if (!ws || ws.readyState !== WebSocket.OPEN) { status("Connect first."); return; }
  if (!threadId) selectThread(randomId("thread-"), false);
  const requestId = randomId("req-");
  const frame = { type: "user_message", request_id: requestId, thread_id: threadId,
    payload: { message: text } };
  const agent = ui.agent.value.trim();
  if (agent) frame.agent = agent;
  if (ui.delay.value !== "") frame.payload.delay_ms = Number(ui.delay.value);
  const run = newRun(requestId, text);
  bindThread(run, threadId);
  ui.transcript.append(run.root);
  remember(requestId, text);
  send(frame);
  ui.message.value = "";
  scroll();
}

function cancel() {
  const run = current();
  // The reply (`agent_cancelled`, or `error run_finished`) names the run; `receive` applies it.
  if (run) send({ type: "cancel_agent", run_id: run.runId });
}

// --- threads --------------------------------------------------------------------------
function selectThread(id, load) {
  threadId = id;
  ui.title.textContent = id ? "Thread " + id : "New thread";
  for (const [tid, row] of threadRows) row.button.setAttribute("aria-current", String(tid === id));
  if (load) {
    ui.transcript.textContent = "";
    runs.clear();
    byRequest.clear();
    if (id) loadThread(id, null);
  }
}

function loadThread(id, cursor) {
  const frame = { type: "list_executions", thread_id: id, limit: PAGE_LIMIT };
  if (cursor) frame.cursor = cursor;
  send(frame, (reply) => {
    if (reply.type !== "executions" || threadId !== id) return;
    const known = loadMessages();
    // Newest first on the wire; a page further back goes above what is shown.
    const first = ui.transcript.firstChild;
    for (const x of reply.payload.items.slice().reverse()) {
      const run = newRun(x.request_id, known[x.request_id] ?? null);
      ui.transcript.insertBefore(run.root, first);
      snapshot(run, x);
    }
    if (reply.payload.cursor) loadThread(id, reply.payload.cursor);
    else scroll();
  });
}

function refreshThreads() {
  threadRows.clear();
  ui.threads.textContent = "";
  listThreads(null);
}

function listThreads(cursor) {
  const frame = { type: "list_executions", limit: PAGE_LIMIT };
  if (cursor) frame.cursor = cursor;
  ui.more.hidden = true;
  send(frame, (reply) => {
    if (reply.type !== "executions") return;
    const known = loadMessages();
    for (const x of reply.payload.items) addThreadRun(x, known);
    const next = reply.payload.cursor;
    ui.more.hidden = !next;
    ui.more.onclick = next ? () => listThreads(next) : null;
  });
}

function addThreadRun(x, known) {
  let row = threadRows.get(x.thread_id);
  if (!row) {
    const li = el("li", "thread");
    li.dataset.threadId = x.thread_id;
    const button = el("button", "thread-open");
    button.type = "button";
    const title = el("span", "title", known[x.request_id] ?? x.thread_id);
    const meta = el("span", "meta");
    button.append(title, meta);
    button.setAttribute("aria-current", String(x.thread_id === threadId));
    button.addEventListener("click", () => selectThread(x.thread_id, true));
    li.append(button);
    ui.threads.append(li); // items arrive newest first, so threads do too
    row = { li, button, title, meta, runs: 0 };
    threadRows.set(x.thread_id, row);
  }
  row.runs += 1;
  // The oldest run's message names the thread; the newest run's time dates it.
  if (known[x.request_id]) row.title.textContent = known[x.request_id];
  if (row.runs === 1) row.updated = x.updated_at;
  row.meta.textContent = row.runs + (row.runs === 1 ? " run · " : " runs · ") + (row.updated || "").replace("T", " ").slice(0, 19);
}

// --- controls -------------------------------------------------------------------------
ui.identity.addEventListener("submit", (e) => {
  e.preventDefault();
  if (ws || retryTimer) { disconnect(); return; }
  wanted = true;
  everOpened = false;
  open();
});
ui.composer.addEventListener("submit", (e) => { e.preventDefault(); submit(); });
ui.message.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); }
});
ui.cancel.addEventListener("click", cancel);
ui.newThread.addEventListener("click", () => { selectThread(null, true); ui.message.focus(); });
try { ui.user.value = localStorage.getItem(STORE_USER) || ""; } catch (_) { /* private mode */ }
setConn("disconnected");
