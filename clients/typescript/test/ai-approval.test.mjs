// The AI SDK's tool approval flow through WsexecChatTransport, driven by the SDK's own chat
// class against `wsexec-local serve` (`LLM_TOOLS_APPROVAL=calculator`) on a scripted model whose
// first round asks for the calculator and whose second answers: the stream stops at a
// `tool-approval-request`, `addToolApprovalResponse` makes the chat send again
// (`sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses`), and the
// transport answers `approve_tool` and streams the rest of the run into the same message.

import assert from "node:assert/strict";
import { test } from "node:test";
import { lastAssistantMessageIsCompleteWithApprovalResponses } from "ai";
import { keptText, WsexecChatTransport } from "../dist/ai.js";
import { Chat, llmEnv, open, startModel, startServer, until, user } from "./support.mjs";

const CALL = { id: "call_calc_1", name: "calculator", arguments: { expression: "6*7" } };
const PIECES = ["It is ", "42."];

async function serve() {
  const model = await startModel([{ tool: CALL }, { pieces: PIECES }], 20);
  const server = await startServer(llmEnv(model, { LLM_TOOLS: "calculator", LLM_TOOLS_APPROVAL: "calculator" }));
  return { model, server, async stop() { await server.stop(); await model.close(); } };
}

/** Sends the question; returns the chat once its stream stopped at the approval, and the part. */
async function askedChat(client, name) {
  const chat = new Chat({
    id: `chat-${user(name)}`,
    transport: new WsexecChatTransport({ client, agent: "llm" }),
    sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses,
  });
  await chat.sendMessage({ text: "What is 6*7?" });
  assert.equal(chat.status, "ready", String(chat.error));
  assert.equal(chat.messages.length, 2);
  const tools = chat.messages[1].parts.filter((p) => p.type === "dynamic-tool");
  assert.equal(tools.length, 1, JSON.stringify(chat.messages[1].parts));
  const [part] = tools;
  assert.equal(part.state, "approval-requested");
  assert.equal(part.toolName, "calculator");
  assert.deepEqual(part.input, CALL.arguments);
  assert.equal(part.approval.id, part.toolCallId);
  return { chat, part };
}

test("addToolApprovalResponse approved: the tool's output and the answer join the message", { timeout: 60_000 }, async () => {
  const env = await serve();
  try {
    const client = await open({ url: env.server.url, devUser: user("ai-yes") });
    const { chat, part } = await askedChat(client, "yes");
    assert.equal(env.model.bodies.length, 1);
    const messageId = chat.messages[1].id;
    await chat.addToolApprovalResponse({ id: part.approval.id, approved: true });
    await until(() => chat.status === "ready" && keptText(chat.messages[1]) === PIECES.join(""), "the answer");
    assert.equal(chat.messages.length, 2);
    const answer = chat.messages[1];
    assert.equal(answer.id, messageId);
    const tool = answer.parts.find((p) => p.type === "dynamic-tool");
    assert.equal(tool.state, "output-available");
    assert.deepEqual(tool.output, { expression: "6*7", result: 42 });
    assert.equal(env.model.bodies.length, 2);
    client.close();
  } finally {
    await env.stop();
  }
});

test("addToolApprovalResponse denied: the part is denied, no tool runs, the answer joins", { timeout: 60_000 }, async () => {
  const env = await serve();
  try {
    const client = await open({ url: env.server.url, devUser: user("ai-no") });
    const { chat, part } = await askedChat(client, "no");
    await chat.addToolApprovalResponse({ id: part.approval.id, approved: false, reason: "no maths today" });
    await until(() => chat.status === "ready" && keptText(chat.messages[1]) === PIECES.join(""), "the answer");
    const tool = chat.messages[1].parts.find((p) => p.type === "dynamic-tool");
    assert.equal(tool.state, "output-denied");
    const told = env.model.bodies[1].messages.filter((m) => m.role === "tool");
    assert.equal(told.length, 1);
    assert.match(told[0].content, /the user declined this call; their reason: no maths today/);
    client.close();
  } finally {
    await env.stop();
  }
});
