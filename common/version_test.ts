import assert from "node:assert/strict";
import { asksForVersion, VERSION, versionLine } from "./version.ts";

Deno.test("VERSION is a semantic version", () => {
  assert.match(VERSION, /^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$/);
});

Deno.test("versionLine names the program, the release and the Deno it runs on", () => {
  assert.equal(versionLine("client"), `addrbook client ${VERSION} (Deno ${Deno.version.deno})`);
});

Deno.test("asksForVersion finds --version anywhere before a --", () => {
  assert.equal(asksForVersion(["--version"]), true);
  assert.equal(asksForVersion(["--port", "nonsense", "--version"]), true);
  assert.equal(asksForVersion(["--port", "0"]), false);
  assert.equal(asksForVersion(["--", "--version"]), false);
  assert.equal(asksForVersion(["--versions"]), false);
});
