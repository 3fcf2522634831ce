// Usage and limits through the client against `wsexec-local serve` on a scripted model that
// reports 12 tokens a round: `getUsage()` equals the runs' recorded usage, and a start once the
// daily budget is spent fails `quota_exceeded` naming it, with no request to the model.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { WsexecError } from "../dist/index.js";
import { llmEnv, open, startModel, startServer, user } from "./support.mjs";

let model;
let server;

before(async () => {
  model = await startModel([{ pieces: ["Fine, ", "thanks."] }]);
  server = await startServer(llmEnv(model, { DAILY_TOKEN_BUDGET_PER_USER: "24" }));
});

after(async () => {
  await server?.stop();
  await model?.close();
});

/** Two runs of 12 tokens spend a 24-token budget: `getUsage()` shows the sum of their recorded
 * usage and the budget's use; the next start is refused `quota_exceeded` (retryable, naming the
 * limit, with when it renews) and the model is not asked. */
test("getUsage matches the runs' usage, and a spent budget refuses the next start", { timeout: 60_000 }, async () => {
  const client = await open({ url: server.url, devUser: user("una") });
  const fresh = await client.getUsage();
  assert.equal(fresh.metered, true);
  assert.deepEqual(fresh.usage, { runs: 0, input_tokens: 0, output_tokens: 0, tokens: 0 });
  assert.deepEqual(fresh.limits.DAILY_TOKEN_BUDGET_PER_USER, { limit: 24, used: 0, remaining: 24 });

  const recorded = [];
  for (let i = 0; i < 2; i++) {
    const run = client.start("How are you?", { agent: "llm" });
    assert.equal(await run.text(), "Fine, thanks.");
    recorded.push((await client.get(await run.id())).usage);
  }
  const sum = (k) => recorded.reduce((n, u) => n + u[k], 0);
  const spent = await client.getUsage();
  assert.deepEqual(spent.usage, {
    runs: 2,
    input_tokens: sum("input_tokens"),
    output_tokens: sum("output_tokens"),
    tokens: sum("input_tokens") + sum("output_tokens"),
  });
  assert.deepEqual(spent.limits.DAILY_TOKEN_BUDGET_PER_USER, { limit: 24, used: 24, remaining: 0 });
  assert.ok(spent.resets_at > spent.day, "the counters renew after today");

  const asked = model.bodies.length;
  const refused = client.start("And now?", { agent: "llm" });
  await assert.rejects(refused.text(), (e) => {
    assert.ok(e instanceof WsexecError);
    assert.equal(e.code, "quota_exceeded");
    assert.equal(e.retryable, true);
    assert.equal(e.limit, "DAILY_TOKEN_BUDGET_PER_USER");
    assert.ok(e.retryAfterMs > 0 && e.retryAfterMs <= 86_400_000);
    return true;
  });
  assert.equal(model.bodies.length, asked, "a refused start asked the model nothing");
  client.close();
});
