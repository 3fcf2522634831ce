// Tool approval through the client against `wsexec-local serve` (`LLM_TOOLS_APPROVAL=calculator`)
// on a scripted model whose first round asks for the calculator and whose second answers: the
// run's iterator yields `tool_approval_required`, `run.approve()` resolves with the server's
// `approval_accepted` payload, the run completes with the model's answer, a second answer to the
// same call is refused `already_answered`, and a denial tells the model the user declined.

import assert from "node:assert/strict";
import { test } from "node:test";
import { WsexecError } from "../dist/index.js";
import { llmEnv, open, startModel, startServer, user } from "./support.mjs";

const CALL = { id: "call_calc_1", name: "calculator", arguments: { expression: "6*7" } };
/** The second round, paced so a second answer arrives while the run still goes on. */
const ANSWER = { pieces: ["It is ", "forty", "-two, ", "as ", "asked."], paceMs: 300 };

/** A scripted model and a server whose `llm` agent needs approval for the calculator. */
async function serve() {
  const model = await startModel([{ tool: CALL }, ANSWER], 20);
  const server = await startServer(llmEnv(model, { LLM_TOOLS: "calculator", LLM_TOOLS_APPROVAL: "calculator" }));
  return { model, server, async stop() { await server.stop(); await model.close(); } };
}

/** The run's events up to its first `tool_approval_required`, which is returned. */
async function approvalOf(run) {
  for await (const ev of run) {
    if (ev.type === "tool_approval_required") return ev;
  }
  throw new Error(`the run ended without asking: ${JSON.stringify(await run.outcome())}`);
}

test("approve: the event, approve(), the final answer; a second answer is already_answered", { timeout: 60_000 }, async () => {
  const env = await serve();
  try {
    const who = user("ada");
    const client = await open({ url: env.server.url, devUser: who });
    const run = client.start("What is 6*7?", { agent: "llm" });
    const asked = await approvalOf(run);
    assert.equal(asked.payload.tool_name, "calculator");
    assert.deepEqual(asked.payload.parameters, CALL.arguments);
    assert.equal(typeof asked.payload.call_id, "string");
    assert.ok(Date.parse(asked.payload.expires_at) > Date.now(), asked.payload.expires_at);
    const callId = asked.payload.call_id;
    assert.deepEqual(run.pendingApprovals.map((p) => p.call_id), [callId]);
    assert.equal(run.done, false);
    // The run waits: running, its awaited call in the snapshot, the model asked once.
    const waiting = await client.get(await run.id());
    assert.equal(waiting.state, "running");
    assert.deepEqual(waiting.awaiting.calls.map((c) => [c.call_id, c.tool_name, c.seq]), [[callId, "calculator", asked.seq]]);
    assert.equal(env.model.bodies.length, 1);
    assert.ok(!run.events.some((e) => e.type === "tool_executing"), "the tool ran before approval");

    const accepted = await run.approve(callId, true);
    assert.deepEqual(accepted, { call_id: callId, approved: true, continued: true });
    assert.deepEqual(run.pendingApprovals, []);
    assert.deepEqual(run.answerOf(callId), accepted);

    // Another connection of the same user answers the same call while the run goes on.
    const other = await open({ url: env.server.url, devUser: who });
    await assert.rejects(other.approve(await run.id(), callId, false), (e) => {
      assert.ok(e instanceof WsexecError);
      assert.equal(e.code, "already_answered");
      return true;
    });

    assert.equal(await run.text(), ANSWER.pieces.join(""));
    const kinds = run.events.map((e) => e.type);
    const at = kinds.indexOf("tool_approval_required");
    assert.ok(at >= 0 && kinds.indexOf("tool_executing") > at, kinds.join(","));
    const done = run.events.find((e) => e.type === "tool_completed");
    assert.equal(done.payload.tool_name, "calculator");
    assert.deepEqual(done.payload.result, { expression: "6*7", result: 42 });
    // The second round got the approved call's result.
    const results = env.model.bodies[1].messages.filter((m) => m.role === "tool");
    assert.equal(results.length, 1);
    assert.match(results[0].content, /42/);

    // Once the run has ended, an answer is refused as such.
    await assert.rejects(run.approve(callId, true), (e) => e instanceof WsexecError && e.code === "run_finished");
    client.close();
    other.close();
  } finally {
    await env.stop();
  }
});

test("deny: no tool runs, the model hears the user declined, the run completes", { timeout: 60_000 }, async () => {
  const env = await serve();
  try {
    const client = await open({ url: env.server.url, devUser: user("bea") });
    const run = client.start("What is 6*7?", { agent: "llm" });
    const asked = await approvalOf(run);
    const accepted = await run.approve(asked.payload.call_id, false, "not today");
    assert.deepEqual(accepted, { call_id: asked.payload.call_id, approved: false, continued: true });
    assert.equal(await run.text(), ANSWER.pieces.join(""));
    assert.ok(!run.events.some((e) => e.type === "tool_executing" || e.type === "tool_completed"), "a denied tool ran");
    const results = env.model.bodies[1].messages.filter((m) => m.role === "tool");
    assert.equal(results.length, 1);
    assert.match(results[0].content, /the user declined this call; their reason: not today/);
    client.close();
  } finally {
    await env.stop();
  }
});

test("a client that follows a waiting run gets its approval once, and answering it completes the run", { timeout: 60_000 }, async () => {
  const env = await serve();
  try {
    const who = user("cyd");
    const first = await open({ url: env.server.url, devUser: who });
    const run = first.start("What is 6*7?", { agent: "llm" });
    const asked = await approvalOf(run);
    first.close();

    // A reload: a new client follows the run from the start.
    const second = await open({ url: env.server.url, devUser: who });
    const followed = second.follow(asked.run_id);
    const again = await approvalOf(followed);
    assert.equal(again.seq, asked.seq);
    assert.deepEqual(again.payload.parameters, asked.payload.parameters);
    assert.deepEqual(followed.pendingApprovals.map((p) => p.call_id), [asked.payload.call_id]);
    const accepted = await followed.approve(asked.payload.call_id, true);
    assert.equal(accepted.continued, true);
    assert.equal(await followed.text(), ANSWER.pieces.join(""));
    const approvals = followed.events.filter((e) => e.type === "tool_approval_required");
    assert.equal(approvals.length, 1, "the approval was repeated");
    second.close();
  } finally {
    await env.stop();
  }
});
