// WsexecChatTransport driven by the AI SDK's own chat class (AbstractChat, with a state class
// shaped like its React binding's), against a real `wsexec-local serve`: messages in, the
// assistant message out with its text and tool parts, reconnects mid-stream, and stop.

import assert from "node:assert/strict";
import { test } from "node:test";
import { keptText, messageIdOf, WsexecChatTransport } from "../dist/ai.js";
import { Chat, open, serveForFile, until, user } from "./support.mjs";

const PIECES = ["Waves ", "roll in, ", "waves ", "roll out, ", "the shore ", "keeps ", "count ", "of ", "every ", "one."];
const ANSWER = PIECES.join("");

const env = serveForFile(PIECES);

/** A chat id the server accepts as a thread id, unique per test. */
const chatId = (name) => `chat-${user(name)}`;

/** A message in, the assistant message out: the echo agent's thought as reasoning, its tool
 * step as a server-executed tool part with input and output, and its answer as text; the
 * chat's thread on the server holds the run. */
test("sendMessage: the assistant message with text and tool parts", { timeout: 60_000 }, async () => {
  const client = await open({ url: env.server.url, devUser: user("alice") });
  const id = chatId("echo");
  const chat = new Chat({ id, transport: new WsexecChatTransport({ client, agent: "echo" }) });
  await chat.sendMessage({ text: "hello chat" });
  assert.equal(chat.status, "ready", String(chat.error));
  assert.equal(chat.messages.length, 2);
  const [question, answer] = chat.messages;
  assert.equal(question.role, "user");
  assert.equal(answer.role, "assistant");
  const types = answer.parts.map((p) => p.type);
  assert.deepEqual(types, ["step-start", "reasoning", "dynamic-tool", "text"]);
  const tool = answer.parts[2];
  assert.equal(tool.toolName, "echo");
  assert.equal(tool.state, "output-available");
  assert.deepEqual(tool.input, { text: "hello chat" });
  assert.deepEqual(tool.output, { echo: "hello chat", length: 10 });
  assert.equal(keptText(answer), "echo: hello chat");
  const page = await client.list({ threadId: id });
  assert.equal(page.items.length, 1);
  assert.equal(answer.id, messageIdOf(page.items[0].run_id));
  client.close();
});

/** Streamed text arrives in the message while the run streams, and ends equal to the run's
 * `result.text`. */
test("streaming text parts equal result.text", { timeout: 60_000 }, async () => {
  const client = await open({ url: env.server.url, devUser: user("bob") });
  const id = chatId("llm");
  const chat = new Chat({ id, transport: new WsexecChatTransport({ client, agent: "llm" }) });
  const seen = [];
  const sending = chat.sendMessage({ text: "the sea?" });
  await until(() => {
    const m = chat.messages[1];
    if (m) seen.push(keptText(m).length);
    return chat.status === "ready" && chat.messages.length === 2;
  }, "the answer");
  await sending;
  const answer = chat.messages[1];
  const [run] = (await client.list({ threadId: id })).items;
  assert.equal(run.result.text, ANSWER);
  assert.equal(keptText(answer), ANSWER);
  assert.ok(seen.some((n) => n > 0 && n < ANSWER.length), "no partial text before the end");
  client.close();
});

/** The socket drops mid-stream: the client resumes the run underneath, and the chat's message
 * ends with the whole answer once (nothing repeated, nothing lost). */
test("a socket dropped mid-stream: the message completes once", { timeout: 60_000 }, async () => {
  const client = await open({ url: env.server.url, devUser: user("carol") });
  const chat = new Chat({ id: chatId("drop"), transport: new WsexecChatTransport({ client, agent: "llm" }) });
  const sending = chat.sendMessage({ text: "the sea?" });
  await until(() => chat.messages[1] && keptText(chat.messages[1]).length > 0, "a first delta");
  client.reconnect();
  await sending;
  assert.equal(chat.status, "ready", String(chat.error));
  assert.equal(chat.messages.length, 2);
  assert.equal(keptText(chat.messages[1]), ANSWER);
  client.close();
});

/** A reloaded page (a new client, transport and chat with the same id) calls `resumeStream`
 * mid-run: the transport finds the thread's alive run and the new chat ends with the whole
 * assistant message; with no alive run, `resumeStream` changes nothing. */
test("resumeStream after a reload replays the alive run", { timeout: 60_000 }, async () => {
  const who = user("dave");
  const id = chatId("reload");
  const first = await open({ url: env.server.url, devUser: who });
  const chat = new Chat({ id, transport: new WsexecChatTransport({ client: first, agent: "llm" }) });
  const sending = chat.sendMessage({ text: "the sea?" });
  await until(() => chat.messages[1] && keptText(chat.messages[1]).length > 0, "a first delta");

  const second = await open({ url: env.server.url, devUser: who });
  const reloaded = new Chat({ id, transport: new WsexecChatTransport({ client: second, agent: "llm" }) });
  reloaded.messages = [chat.messages[0]]; // what the app had persisted: the question
  await reloaded.resumeStream();
  assert.equal(reloaded.status, "ready", String(reloaded.error));
  assert.equal(reloaded.messages.length, 2);
  assert.equal(reloaded.messages[1].id, chat.messages[1].id);
  assert.equal(keptText(reloaded.messages[1]), ANSWER);
  await sending;
  assert.equal(keptText(chat.messages[1]), ANSWER);

  const idle = new Chat({ id, transport: new WsexecChatTransport({ client: second }) });
  await idle.resumeStream();
  assert.deepEqual(idle.messages, []);
  first.close();
  second.close();
});

/** `stop()` aborts the request, and the transport cancels the run on the server. */
test("stop cancels the run", { timeout: 60_000 }, async () => {
  const client = await open({ url: env.server.url, devUser: user("erin") });
  const id = chatId("stop");
  const chat = new Chat({ id, transport: new WsexecChatTransport({ client, agent: "echo", options: { delay_ms: 5000 } }) });
  const sending = chat.sendMessage({ text: "slowly" });
  await until(() => chat.messages[1]?.parts.some((p) => p.type === "dynamic-tool"), "the tool step");
  await chat.stop();
  await sending;
  const [run] = (await client.list({ threadId: id })).items;
  await until(async () => (await client.get(run.run_id)).state === "cancelled", "the cancel");
  client.close();
});
