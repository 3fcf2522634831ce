// The chat page's copy of the library (src/local/page/client.js, embedded by the Rust binary,
// which cannot run Node at `cargo build`) is the build of these sources, byte for byte.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { bundle, PAGE_FILE } from "../scripts/page-bundle.mjs";

/** The committed page bundle equals a fresh bundle of dist/: a source change without
 * `npm run page` fails here. */
test("the chat page's library is the build of the sources", () => {
  assert.equal(readFileSync(PAGE_FILE, "utf8"), bundle(), "run: npm run build && npm run page");
});

/** The bundle evaluates as a plain script and declares the library's API as `wsexec`. */
test("the page bundle declares the library", () => {
  const wsexec = new Function(`${bundle()}; return wsexec;`)();
  for (const name of ["connect", "WsexecClient", "WsexecError", "isAlive", "randomId", "resultText"]) {
    assert.equal(typeof wsexec[name], "function", name);
  }
});
