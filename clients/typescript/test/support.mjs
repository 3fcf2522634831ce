// Support for the package's tests: a real `wsexec-local serve` process (built from this
// repository), a scripted OpenAI-compatible model endpoint on loopback for the `llm` agent,
// and HS256 tokens. Everything listens on 127.0.0.1 and is stopped by the test that started it.

import { spawn } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { connect as connectTcp } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { after, before } from "node:test";
import { AbstractChat } from "ai";
import { connect } from "../dist/index.js";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
export const REPO = resolve(HERE, "../../..");
const BIN = process.env.WSEXEC_LOCAL_BIN ?? join(REPO, "target/debug/wsexec-local");
/** Long enough for a cold server on two busy cores; short enough to fail fast. */
export const WAIT_MS = 20_000;
const LISTENING = /^wsexec-local listening on ws:\/\/(127\.0\.0\.1:\d+)$/;

/** A `wsexec-local serve --port 0 --dev-auth` process on a fresh data dir. */
export async function startServer(env = {}) {
  const dir = mkdtempSync(join(tmpdir(), "wsexec-client-"));
  const log = join(dir, "server.log");
  const { openSync } = await import("node:fs");
  const proc = spawn(BIN, ["serve", "--port", "0", "--dev-auth", "--data-dir", join(dir, "data")], {
    cwd: dir,
    env: {
      ...process.env,
      RUST_LOG: "info",
      AWS_REGION: "us-east-1",
      AWS_ACCESS_KEY_ID: "AKIDLOCAL",
      AWS_SECRET_ACCESS_KEY: "local-secret",
      AWS_EC2_METADATA_DISABLED: "true",
      ...env,
    },
    stdio: ["ignore", "pipe", openSync(log, "w")],
  });
  const first = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error("wsexec-local printed no address line")), WAIT_MS);
    proc.once("exit", (code) => fail(new Error(`wsexec-local exited (${code}): ${readFileSync(log, "utf8")}`)));
    createInterface({ input: proc.stdout }).once("line", (line) => {
      clearTimeout(timer);
      ok(line.trim());
    });
  });
  const m = LISTENING.exec(first);
  if (!m) throw new Error(`unexpected first line: ${first}`);
  const addr = m[1];
  return {
    addr,
    url: `ws://${addr}`,
    /** The connection ids of `user`'s accepted `$connect`s, from the invocation log lines. */
    connectionIds(user) {
      const ids = [];
      for (const line of readFileSync(log, "utf8").split("\n")) {
        const field = (k, v) => new RegExp(`\\b${k}"?[=:]"?${v}(?=["\\s,}]|$)`).exec(line);
        if (field("route", "\\$connect") && field("user_id", user) && field("status", "200")) {
          const id = field("connection_id", '([^",\\s]+)');
          if (id) ids.push(id[1]);
        }
      }
      return ids;
    },
    /** `DELETE /@connections/{id}`: the gateway closes that socket, as API Gateway would. */
    async disconnect(connectionId) {
      const res = await fetch(`http://${addr}/@connections/${encodeURIComponent(connectionId)}`, { method: "DELETE" });
      return res.status;
    },
    async stop() {
      if (proc.exitCode === null) {
        proc.kill("SIGINT");
        const killer = setTimeout(() => proc.kill("SIGKILL"), WAIT_MS);
        await new Promise((ok) => proc.once("exit", ok));
        clearTimeout(killer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Chat Completions stream events for one scripted answer. */
function* answerEvents(answer) {
  const chunk = (delta, finish = null) =>
    JSON.stringify({ id: "c1", object: "chat.completion.chunk", model: "scripted", choices: [{ index: 0, delta, finish_reason: finish }] });
  for (const piece of answer.pieces ?? []) yield chunk({ content: piece });
  if (answer.tool) {
    const call = { index: 0, id: answer.tool.id ?? "call_1", type: "function", function: { name: answer.tool.name, arguments: JSON.stringify(answer.tool.arguments) } };
    yield chunk({ tool_calls: [call] });
    yield chunk({}, "tool_calls");
  } else {
    yield chunk({}, "stop");
  }
  yield JSON.stringify({ id: "c1", object: "chat.completion.chunk", model: "scripted", choices: [], usage: { prompt_tokens: 5, completion_tokens: 7 } });
  yield "[DONE]";
}

/** An OpenAI-compatible `/v1/chat/completions` that streams `answers` in turn (the last one
 * again once they run out), one event per `paceMs`; `bodies` holds each request's JSON. */
export async function startModel(answers, paceMs = 60) {
  const bodies = [];
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", async () => {
      bodies.push(JSON.parse(body || "{}"));
      const answer = answers[Math.min(bodies.length - 1, answers.length - 1)];
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      for (const data of answerEvents(answer)) {
        if (res.destroyed) return;
        res.write(`data: ${data}\n\n`);
        await new Promise((ok) => setTimeout(ok, answer.paceMs ?? paceMs));
      }
      res.end();
    });
  });
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  return {
    url: `http://127.0.0.1:${server.address().port}/v1`,
    bodies,
    close: () => new Promise((ok) => { server.closeAllConnections(); server.close(ok); }),
  };
}

/** The environment that makes `llm` the default agent on `model`. */
export function llmEnv(model, extra = {}) {
  return { LLM_PROVIDER: "openai", LLM_MODEL: "scripted", LLM_BASE_URL: model.url, LLM_TOOLS: "none", ...extra };
}

/** A compact HS256 JWT of `claims`. */
export function hs256(secret, claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const head = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`;
  return `${head}.${createHmac("sha256", secret).update(head).digest("base64url")}`;
}

/** Resolves once `check()` is truthy (polled), or fails after `ms`. */
export async function until(check, what, ms = WAIT_MS) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((ok) => setTimeout(ok, 20));
  }
}

/** A fresh dev user id per test, so tests sharing a server never see each other's runs. */
let users = 0;
export function user(name) {
  users += 1;
  return `${name}-${process.pid}-${users}`;
}

/** Bytes of each fragment `rawExchange` sends: under API Gateway's 32 KiB frame limit. */
const FRAGMENT_BYTES = 16 * 1024;

/** One client-to-server frame (masked, as RFC 6455 requires of clients). */
function wsFrame(opcode, fin, payload) {
  const len = payload.length;
  const head = len < 126 ? Buffer.alloc(2) : len < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
  head[0] = (fin ? 0x80 : 0) | opcode;
  if (len < 126) head[1] = 0x80 | len;
  else if (len < 65536) { head[1] = 0x80 | 126; head.writeUInt16BE(len, 2); }
  else { head[1] = 0x80 | 127; head.writeBigUInt64BE(BigInt(len), 2); }
  const mask = randomBytes(4);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i] ^= mask[i % 4];
  return Buffer.concat([head, mask, body]);
}

/** Sends `text` as one message on a fresh connection of `who`, split into frames of at most
 * `fragmentBytes` (16 KiB, as a client that fragments may; browsers never do), and returns the
 * first text message the server answers, parsed, or `{closed: code}` if it closes instead.
 * Speaks RFC 6455 over a plain TCP socket. */
export async function rawExchange(addr, who, text, fragmentBytes = FRAGMENT_BYTES) {
  const [host, port] = addr.split(":");
  const socket = connectTcp(Number(port), host);
  await new Promise((ok, fail) => { socket.once("connect", ok); socket.once("error", fail); });
  socket.write(
    `GET /?user_id=${who} HTTP/1.1\r\nHost: ${addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  let buf = Buffer.alloc(0);
  const more = () => new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error("no answer")), WAIT_MS);
    socket.once("data", (d) => { clearTimeout(timer); buf = Buffer.concat([buf, d]); ok(); });
  });
  while (buf.indexOf("\r\n\r\n") < 0) await more();
  const head = buf.subarray(0, buf.indexOf("\r\n\r\n")).toString();
  if (!head.startsWith("HTTP/1.1 101")) throw new Error(`upgrade refused: ${head}`);
  buf = buf.subarray(buf.indexOf("\r\n\r\n") + 4);
  const bytes = Buffer.from(text);
  for (let at = 0; at < bytes.length || at === 0; at += fragmentBytes) {
    const last = at + fragmentBytes >= bytes.length;
    socket.write(wsFrame(at === 0 ? 0x1 : 0x0, last, bytes.subarray(at, at + fragmentBytes)));
  }
  for (;;) {
    while (buf.length < 2) await more();
    let len = buf[1] & 0x7f;
    let at = 2;
    if (len === 126) { while (buf.length < 4) await more(); len = buf.readUInt16BE(2); at = 4; }
    else if (len === 127) { while (buf.length < 10) await more(); len = Number(buf.readBigUInt64BE(2)); at = 10; }
    while (buf.length < at + len) await more();
    const opcode = buf[0] & 0x0f;
    const payload = buf.subarray(at, at + len);
    buf = buf.subarray(at + len);
    if (opcode === 0x1) {
      socket.destroy();
      return JSON.parse(payload.toString());
    }
    if (opcode === 0x8) {
      socket.destroy();
      return { closed: payload.length >= 2 ? payload.readUInt16BE(0) : 1005 };
    }
  }
}

/** The server a test file shares: the scripted model streaming `pieces` (one per 80 ms) and a
 * `wsexec-local serve` whose `llm` agent uses it (`echo` stays the default), started before
 * the file's tests and stopped after them. */
export function serveForFile(pieces) {
  const env = {};
  before(async () => {
    env.model = await startModel([{ pieces }], 80);
    env.server = await startServer(llmEnv(env.model, { DEFAULT_AGENT: "echo" }));
  });
  after(async () => {
    await env.server?.stop();
    await env.model?.close();
  });
  return env;
}

/** Every client the file's tests opened, closed after them even when a test failed (an open
 * socket would keep the test process alive). */
const clients = [];
after(() => {
  for (const c of clients) c.close();
});

/** `connect(options)`, closed after the file's tests. */
export async function open(options) {
  const client = await connect(options);
  clients.push(client);
  return client;
}

/** The chat's state as the SDK's React binding keeps it: arrays replaced, never mutated. */
export class NodeChatState {
  status = "ready";
  error = undefined;
  messages = [];
  pushMessage = (m) => { this.messages = this.messages.concat(m); };
  popMessage = () => { this.messages = this.messages.slice(0, -1); };
  replaceMessage = (i, m) => { this.messages = [...this.messages.slice(0, i), this.snapshot(m), ...this.messages.slice(i + 1)]; };
  snapshot = (x) => structuredClone(x);
}

/** A chat as a framework binding makes one: AbstractChat over that state. */
export class Chat extends AbstractChat {
  constructor(init) {
    super({ ...init, state: new NodeChatState() });
  }
}
