// The round-discard rule end to end: the `llm` agent on a scripted model whose first round
// streams text and then calls a tool; the server discards that round's text
// (`agent_text_discarded`), and the client keeps exactly `result.text`, as a run handle and
// through the AI SDK transport.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { isDiscardedText, keptText, WsexecChatTransport } from "../dist/ai.js";
import { Chat, llmEnv, open, startModel, startServer, user } from "./support.mjs";

/** Each run asks the model twice: a round that says something and calls the calculator, then
 * the answer. */
const ROUNDS = [
  { pieces: ["Let me ", "work that ", "out first."], tool: { name: "calculator", arguments: { expression: "6*7" } } },
  { pieces: ["It is ", "42, ", "the answer."] },
];
const ANSWER = "It is 42, the answer.";

let model;
let server;

before(async () => {
  // Two answers per run, in turn, for as many runs as the tests start.
  model = await startModel([...ROUNDS, ...ROUNDS], 60);
  server = await startServer(llmEnv(model, { LLM_TOOLS: "calculator" }));
});

after(async () => {
  await server?.stop();
  await model?.close();
});

/** The first round's text arrives as deltas, is discarded before the tool step, and the run's
 * kept text and `text()` equal `result.text`, the second round's alone. */
test("a discarded round's text is not kept", { timeout: 60_000 }, async () => {
  const client = await open({ url: server.url, devUser: user("alice") });
  const run = client.start("What is six times seven?");
  const rounds = [];
  for await (const ev of run) {
    if (ev.type === "agent_delta") rounds.push(["delta", ev.payload.round]);
    if (ev.type === "agent_text_discarded") rounds.push(["discarded", ev.payload.round, ev.payload.reason]);
    if (ev.type === "tool_executing") rounds.push(["tool", ev.payload.tool_name]);
  }
  const discarded = rounds.findIndex(([k]) => k === "discarded");
  assert.ok(discarded > 0, JSON.stringify(rounds));
  assert.deepEqual(rounds[discarded], ["discarded", 1, "tool_call"]);
  assert.ok(rounds.slice(0, discarded).every(([k, r]) => k === "delta" && r === 1), JSON.stringify(rounds));
  const outcome = await run.outcome();
  assert.equal(outcome.result.text, ANSWER);
  assert.equal(run.streamedText, ANSWER);
  assert.equal(await run.text(), ANSWER);
  client.close();
});

/** Through the AI SDK: the discarded round stays as a text part marked discarded (the SDK
 * cannot remove text), the calculator step is a tool part, and the kept text is the answer. */
test("the transport marks the discarded round's text part", { timeout: 60_000 }, async () => {
  const client = await open({ url: server.url, devUser: user("bob") });
  const chat = new Chat({ id: `chat-${user("rounds")}`, transport: new WsexecChatTransport({ client }) });
  await chat.sendMessage({ text: "What is six times seven?" });
  assert.equal(chat.status, "ready", String(chat.error));
  const answer = chat.messages[1];
  const texts = answer.parts.filter((p) => p.type === "text");
  assert.equal(texts.length, 2);
  assert.ok(isDiscardedText(texts[0]));
  assert.equal(texts[0].text, "Let me work that out first.");
  assert.equal(keptText(answer), ANSWER);
  const tool = answer.parts.find((p) => p.type === "dynamic-tool");
  assert.equal(tool.toolName, "calculator");
  assert.equal(tool.state, "output-available");
  client.close();
});
