// What `npm pack` ships: only what a user needs (the built modules, their types, the README and
// package.json), and no runtime dependency.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const PACKAGE = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const MODULES = ["ai", "ai-chunks", "client", "connection", "errors", "index", "limits", "protocol", "run", "text"];

/** The tarball holds package.json, the README, and each module's .js and .d.ts: no sources,
 * tests, scripts, lockfile or config. */
test("npm pack ships only what a user needs", () => {
  const out = execFileSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: PACKAGE, encoding: "utf8" });
  const [{ files, name, version }] = JSON.parse(out);
  assert.equal(name, "wsexec-client");
  assert.equal(version, "0.1.0");
  const expected = ["README.md", "package.json", ...MODULES.flatMap((m) => [`dist/${m}.js`, `dist/${m}.d.ts`])];
  assert.deepEqual(files.map((f) => f.path).sort(), expected.sort());
});

/** No runtime dependency: package.json declares none, and the built modules import only each
 * other (the AI SDK transport imports `ai` for types only, which the build erases). */
test("no runtime dependencies", () => {
  const pkg = JSON.parse(readFileSync(join(PACKAGE, "package.json"), "utf8"));
  assert.equal(pkg.dependencies, undefined);
  assert.deepEqual(Object.keys(pkg.peerDependencies), ["ai"]);
  assert.equal(pkg.peerDependenciesMeta.ai.optional, true);
  for (const m of MODULES) {
    const js = readFileSync(join(PACKAGE, "dist", `${m}.js`), "utf8");
    for (const [, spec] of js.matchAll(/^(?:import|export) [^;]*? from "([^"]+)";$/gm)) {
      assert.match(spec, /^\.\/[a-z-]+\.js$/, `${m}.js imports ${spec}`);
    }
  }
});
