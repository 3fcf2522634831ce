// The text rules on their own: which deltas a client keeps when a round is discarded, and
// which text is the final answer (these pin the round-discard decision the server follows).

import assert from "node:assert/strict";
import { test } from "node:test";
import { finalText, TextAssembler } from "../dist/index.js";

/** A discard drops what its round streamed so far and nothing else; later deltas of the same
 * round (a redo) are kept, in arrival order. */
test("a discarded round's earlier text is dropped, its later text kept", () => {
  const t = new TextAssembler();
  t.add("Let me look ", 1);
  t.add("that up.", 1);
  t.discard(1);
  assert.equal(t.text, "");
  t.add("It is ", 2);
  t.add("sunny", 2);
  t.discard(3); // a round that streamed nothing: nothing changes
  assert.equal(t.text, "It is sunny");
  t.discard(2);
  t.add("It is sunny.", 2);
  assert.equal(t.text, "It is sunny.");
});

/** Deltas without a round (a server before rounds) count as round 1. */
test("deltas without a round are round 1", () => {
  const t = new TextAssembler();
  t.add("a");
  t.add("b", 2);
  t.discard(1);
  assert.equal(t.text, "b");
});

/** The answer is `result.text` (or echo's `reply`), but the streamed text when the result or
 * its event was cut to fit a limit. */
test("final text: result.text unless truncated", () => {
  assert.equal(finalText({ result: { text: "full" } }, "full"), "full");
  assert.equal(finalText({ result: { reply: "echo: hi" } }, ""), "echo: hi");
  assert.equal(finalText({ result: { text: "cut", truncated: true } }, "cut and the rest"), "cut and the rest");
  assert.equal(finalText({ truncated: true, original_bytes: 200000 }, "streamed"), "streamed");
  assert.equal(finalText({ result: { other: 1 } }, "streamed"), "streamed");
});
