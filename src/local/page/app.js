// The chat page's second part, after runs.js in the same function: connecting, sending and
// cancelling through the library, the thread list and reopened threads, and the controls.
// --- connection -----------------------------------------------------------------------
function open() {
  const user = ui.user.value.trim();
  const token = ui.token.value.trim();
  if (!user && !token) { status("Enter a dev user id or a JWT."); ui.user.focus(); return; }
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/";
  let c;
  try {
    c = new wsexec.WsexecClient(token ? { url, token } : { url, devUser: user });
  } catch (e) { status("Cannot connect: " + e.message); return; }
  if (!token) { try { localStorage.setItem(STORE_USER, user); } catch (_) { /* private mode */ } }
  client = c;
  setConn("connecting");
  c.on("state", (state, detail) => {
    if (client !== c) return;
    setConn(state);
    if (state === "connected") { status(""); refreshThreads(); }
    if (state === "reconnecting" && detail.delayMs !== undefined) {
      status("Connection lost (" + detail.code + "); retrying in " + detail.delayMs + " ms.");
    }
  });
  c.opened.catch(() => {
    if (client !== c) return;
    client = null;
    setConn("disconnected");
    status("Connection refused. Is the id valid, and --dev-auth on?");
  });
}

function disconnect() {
  const c = client;
  client = null;
  if (c) c.close();
  setConn("disconnected");
}

// --- sending and cancelling -----------------------------------------------------------
function submit() {
  const text = ui.message.value;
  if (!text.trim()) return;
  if (!client || client.state !== "connected") { status("Connect first."); return; }
  if (!threadId) selectThread(wsexec.randomId("thread-"), false);
  const requestId = wsexec.randomId("req-");
  const options = { threadId, requestId };
  const agent = ui.agent.value.trim();
  if (agent) options.agent = agent;
  if (ui.delay.value !== "") options.options = { delay_ms: Number(ui.delay.value) };
  const view = newView(requestId, text);
  bindThread(view, threadId);
  ui.transcript.append(view.root);
  ui.message.value = "";
  scroll();
  let run;
  try {
    run = client.start(text, options);
  } catch (e) {
    // Refused before sending (empty, or over a limit): the same code the server would send.
    showError(view, e.code, e.message);
    setState(view, "failed");
    return;
  }
  remember(requestId, text);
  follow(view, run);
}

function cancel() {
  const view = current();
  if (view) view.run.cancel().catch((e) => status("Cancel failed: " + e.code + ": " + e.message));
}

// --- threads --------------------------------------------------------------------------
function selectThread(id, load) {
  threadId = id;
  ui.title.textContent = id ? "Thread " + id : "New thread";
  for (const [tid, row] of threadRows) row.button.setAttribute("aria-current", String(tid === id));
  if (load) {
    ui.transcript.textContent = "";
    views.clear();
    if (id) loadThread(id, null);
  }
}

function listed(promise, then) {
  promise.then(then, (e) => status("Error " + e.code + ": " + e.message));
}

function loadThread(id, cursor) {
  if (!client) return;
  listed(client.list({ threadId: id, limit: PAGE_LIMIT, cursor: cursor || undefined }), (page) => {
    if (threadId !== id) return;
    const known = loadMessages();
    // Newest first on the wire; a page further back goes above what is shown.
    const first = ui.transcript.firstChild;
    for (const x of page.items.slice().reverse()) {
      const view = newView(x.request_id, known[x.request_id] ?? null);
      ui.transcript.insertBefore(view.root, first);
      if (wsexec.isAlive(x.state) && client) {
        // Still running: the library replays its events and streams the rest (a run waiting
        // for an approval replays its requests only, so its state and agent come from here).
        bind(view, x.run_id);
        bindThread(view, x.thread_id);
        if (x.agent) view.agent.textContent = x.agent;
        setState(view, x.state);
        follow(view, client.follow(x.run_id));
      } else {
        snapshot(view, x);
      }
    }
    if (page.cursor) loadThread(id, page.cursor);
    else scroll();
  });
}

function refreshThreads() {
  threadRows.clear();
  ui.threads.textContent = "";
  listThreads(null);
}

function listThreads(cursor) {
  if (!client) return;
  ui.more.hidden = true;
  listed(client.list({ limit: PAGE_LIMIT, cursor: cursor || undefined }), (page) => {
    const known = loadMessages();
    for (const x of page.items) addThreadRun(x, known);
    const next = page.cursor;
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
  if (client) { disconnect(); return; }
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
