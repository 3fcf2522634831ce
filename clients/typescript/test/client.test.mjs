// The client against a real `wsexec-local serve` over real WebSockets: the golden path,
// streaming, cancel, drops mid-run (by the client and by the server), retried starts, bad input,
// pages, following from a second client, and the JWT subprotocol.

import assert from "node:assert/strict";
import { test } from "node:test";
import { MAX_MESSAGE_BYTES, MAX_TEXT_BYTES, WsexecError } from "../dist/index.js";
import { hs256, open, rawExchange, serveForFile, startServer, until, user } from "./support.mjs";

/** The answer the scripted model streams, one piece per event. */
const PIECES = ["The sea ", "is wide ", "and deep; ", "its waves ", "come and go ", "all day, ", "all night, ", "and the ", "tide turns ", "twice ", "a day."];
const ANSWER = PIECES.join("");

const env = serveForFile(PIECES);

/** The seqs of `events`, checked to run 1, 2, 3, ... with none twice and none missing. */
function assertContiguous(events) {
  const seqs = events.map((e) => e.seq);
  assert.deepEqual(seqs, seqs.map((_, i) => i + 1), `seqs ${seqs.join(",")}`);
}

/** A started echo run is named, streams its events in seq order, and answers with `text()`;
 * `get` and `list` show it completed, and the client reported connecting then connected. */
test("golden path: start, events, text, get, list", { timeout: 60_000 }, async () => {
  const states = [];
  const client = await open({ url: env.server.url, devUser: user("alice") });
  client.on("state", (s) => states.push(s));
  const run = client.start("hello there", { agent: "echo", threadId: `t-${user("golden")}` });
  const runId = await run.id();
  const types = [];
  for await (const ev of run) types.push(ev.type);
  assert.deepEqual(types, ["agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed"]);
  assertContiguous(run.events);
  assert.equal(await run.text(), "echo: hello there");
  const x = await client.get(runId);
  assert.equal(x.state, "completed");
  assert.deepEqual(x.result, { reply: "echo: hello there" });
  const page = await client.list({ threadId: run.threadId });
  assert.deepEqual(page.items.map((i) => i.run_id), [runId]);
  client.close();
  assert.deepEqual(states, ["closed"]);
});

/** The `llm` agent's deltas arrive as they stream, and `text()` equals both the kept deltas and
 * `agent_completed.payload.result.text`. */
test("streamed text equals result.text", { timeout: 60_000 }, async () => {
  const client = await open({ url: env.server.url, devUser: user("bob") });
  const run = client.start("Tell me about the sea", { agent: "llm" });
  let deltas = "";
  let completed;
  for await (const ev of run) {
    if (ev.type === "agent_delta") deltas += ev.payload.text;
    if (ev.type === "agent_completed") completed = ev.payload.result.text;
  }
  assert.equal(completed, ANSWER);
  assert.equal(deltas, ANSWER);
  assert.equal(run.streamedText, ANSWER);
  assert.equal(await run.text(), ANSWER);
  client.close();
});

/** `cancel()` on a slow run ends it `cancelled` on the server, and `text()` rejects with the
 * typed `cancelled` error. */
test("cancel", { timeout: 60_000 }, async () => {
  const client = await open({ url: env.server.url, devUser: user("carol") });
  const run = client.start("take your time", { agent: "echo", options: { delay_ms: 5000 } });
  for await (const ev of run) if (ev.type === "tool_executing") break;
  await run.cancel();
  const outcome = await run.outcome();
  assert.equal(outcome.state, "cancelled");
  await assert.rejects(run.text(), (e) => e instanceof WsexecError && e.code === "cancelled" && !e.retryable);
  assert.equal((await client.get(run.runId)).state, "cancelled");
  await run.cancel(); // an ended run: nothing to do, no error
  client.close();
});

/** The client closes its socket mid-stream: it reconnects, resumes with its last seq, and ends
 * with the text `result.text` holds, every seq once, none missing. */
test("a socket the client drops mid-run: resumed, nothing twice, nothing lost", { timeout: 60_000 }, async () => {
  const who = user("dave");
  const client = await open({ url: env.server.url, devUser: who });
  const states = [];
  client.on("state", (s) => states.push(s));
  const run = client.start("Tell me about the sea", { agent: "llm" });
  await until(() => run.events.some((e) => e.type === "agent_delta"), "a first delta");
  client.reconnect();
  const outcome = await run.outcome();
  assert.equal(outcome.state, "completed");
  assert.equal(outcome.result.text, ANSWER);
  assert.equal(run.streamedText, ANSWER);
  assertContiguous(run.events);
  assert.ok(states.includes("reconnecting") && states.at(-1) === "connected", states.join(","));
  assert.equal(env.server.connectionIds(who).length, 2, "the client did not open a second connection");
  client.close();
});

/** The server closes the socket (`DELETE @connections`, as API Gateway does at its limits): the
 * same resume brings the run to its end with every seq once. */
test("a socket the server drops mid-run: resumed the same way", { timeout: 60_000 }, async () => {
  const who = user("erin");
  const client = await open({ url: env.server.url, devUser: who });
  const run = client.start("Tell me about the sea", { agent: "llm" });
  await until(() => run.events.some((e) => e.type === "agent_delta"), "a first delta");
  const [id] = env.server.connectionIds(who);
  assert.equal(await env.server.disconnect(id), 204);
  assert.equal(await run.text(), ANSWER);
  assertContiguous(run.events);
  assert.equal(env.server.connectionIds(who).length, 2);
  client.close();
});

/** A start whose socket drops before any event is sent again with the same request_id on the
 * new socket: the server finds the run, the client follows it, and the model is asked once. */
test("a retried start does not run twice", { timeout: 60_000 }, async () => {
  const client = await open({ url: env.server.url, devUser: user("frank") });
  const asked = env.model.bodies.length;
  const threadId = `t-${user("retry")}`;
  const run = client.start("Tell me about the sea", { agent: "llm", threadId });
  client.reconnect(); // the start frame went out; whatever it caused arrives on no socket
  assert.equal(await run.text(), ANSWER);
  assertContiguous(run.events);
  // The caller's own retry with the same request id finds the same run.
  const again = client.start("Tell me about the sea", { agent: "llm", threadId, requestId: run.requestId });
  assert.equal(await again.id(), run.runId);
  assert.equal(await again.text(), ANSWER);
  assert.equal(env.model.bodies.length - asked, 1, "the model was asked more than once");
  assert.equal((await client.list({ threadId })).items.length, 1);
  client.close();
});

/** Frames over the limits are refused before sending, with the code the server answers the
 * same frame with (or, for a frame API Gateway closes the socket over, `message_too_large`);
 * the server's own refusals come back typed; the connection stays usable. */
test("bad input: local refusals match the server's, server refusals are typed", { timeout: 60_000 }, async () => {
  const who = user("grace");
  const client = await open({ url: env.server.url, devUser: who });
  const cases = [
    // text, the client's code, and what the server does with the same frame, sent in one
    // frame as a browser does, or fragmented (which no browser does) to reach its parser.
    ["   ", "missing_field", Infinity, { code: "missing_field" }],
    ["x".repeat(40 * 1024), "message_too_large", Infinity, { closed: 1009 }],
    ["x".repeat(MAX_TEXT_BYTES + 1), "field_too_large", 16 * 1024, { code: "field_too_large" }],
    ["é".repeat(MAX_MESSAGE_BYTES / 2), "message_too_large", 16 * 1024, { closed: 1009 }],
  ];
  for (const [text, code, fragment, server_does] of cases) {
    assert.throws(() => client.start(text, { agent: "echo" }), (e) => e instanceof WsexecError && e.code === code && e.local);
    const frame = JSON.stringify({ type: "start_agent", request_id: "raw-req-0001", agent: "echo", payload: { user_request: text } });
    const reply = await rawExchange(env.server.addr, who, frame, fragment);
    if (server_does.code) assert.equal(reply.payload?.code, server_does.code, JSON.stringify(reply).slice(0, 200));
    else assert.deepEqual(reply, server_does);
  }
  assert.deepEqual((await client.list()).items, [], "a refused start reached the server");
  const refused = async (p, code) =>
    assert.rejects(p, (e) => e instanceof WsexecError && e.code === code && !e.local && typeof e.retryable === "boolean");
  await refused(client.get("not an id!"), "invalid_id");
  await refused(client.get("no-such-run-0123456789"), "not_found");
  await refused(client.list({ limit: 0 }), "invalid_field");
  await refused(client.start("hi", { agent: "no-such-agent" }).text(), "unknown_agent");
  await refused(client.start("hi", { agent: "echo", options: { delay_ms: -1 } }).text(), "invalid_field");
  await client.ping();
  assert.equal(await client.start("still here", { agent: "echo" }).text(), "echo: still here");
  client.close();
});

/** `list` pages a thread newest first with a cursor until the last page. */
test("list pages with cursors", { timeout: 60_000 }, async () => {
  const client = await open({ url: env.server.url, devUser: user("heidi") });
  const threadId = `t-${user("pages")}`;
  const ids = [];
  for (const text of ["one", "two", "three"]) {
    const run = client.start(text, { agent: "echo", threadId });
    await run.text();
    ids.push(run.runId);
  }
  const first = await client.list({ threadId, limit: 2 });
  assert.equal(first.items.length, 2);
  assert.ok(first.cursor);
  const second = await client.list({ threadId, limit: 2, cursor: first.cursor });
  assert.equal(second.cursor, undefined);
  assert.deepEqual([...first.items, ...second.items].map((x) => x.run_id), ids.reverse());
  client.close();
});

/** A second client of the same user (another tab) follows a run mid-stream and ends with the
 * same events and text as the client that started it. */
test("follow from another client", { timeout: 60_000 }, async () => {
  const who = user("ivan");
  const a = await open({ url: env.server.url, devUser: who });
  const b = await open({ url: env.server.url, devUser: who });
  const run = a.start("Tell me about the sea", { agent: "llm" });
  await until(() => run.events.some((e) => e.type === "agent_delta"), "a first delta");
  const followed = b.follow(run.runId);
  assert.equal(await followed.text(), ANSWER);
  await run.text();
  assert.deepEqual(followed.events.map((e) => [e.seq, e.type]), run.events.map((e) => [e.seq, e.type]));
  a.close();
  b.close();
});

/** A JWT goes as the `jwt.<token>` subprotocol and is accepted; a bad one fails `connect` with
 * `connect_failed`. */
test("JWT subprotocol", { timeout: 60_000 }, async () => {
  const secret = "client-test-secret";
  const jwtServer = await startServer({ JWT_SECRET: secret });
  try {
    const token = hs256(secret, { sub: user("judy"), exp: Math.floor(Date.now() / 1000) + 600 });
    let asked = 0;
    const client = await open({ url: jwtServer.url, token: () => { asked += 1; return token; } });
    assert.equal(await client.start("signed", { agent: "echo" }).text(), "echo: signed");
    client.reconnect();
    await until(() => asked === 2 && client.state === "connected", "a reconnect with a fresh token");
    await client.ping();
    client.close();
    const forged = hs256("another-secret", { sub: "mallory-01", exp: Math.floor(Date.now() / 1000) + 600 });
    await assert.rejects(open({ url: jwtServer.url, token: forged }), (e) => e instanceof WsexecError && e.code === "connect_failed");
  } finally {
    await jwtServer.stop();
  }
});
