/**
 * Which npm packages the programs load: the server (with its worker
 * threads), the client and validate need ipaddr.js at most, and never a
 * package only the tests use (fast-check, ldapts, asn1js), whatever
 * deno.json's imports list. Read from `deno info --json`, the module graph
 * Deno loads.
 *
 * (Deno caches every package in deno.lock before `deno task` runs any
 * task, by design, so a fresh machine fetches the tests' packages on its
 * first `deno task server` all the same; README "Quick start" says so.
 * What this test keeps true is that the programs never load them.)
 */

import assert from "node:assert/strict";
import { REPO_DIR } from "../testing/repo.ts";

/** Each program's module graph roots: its entry point, and the threads it starts by URL. */
const PROGRAMS: Record<string, string[]> = {
  server: ["server.ts", "server/worker.ts", "book/load_worker.ts"],
  client: ["client.ts"],
  validate: ["tools/validate.ts"],
};

/** The packages a program may load. */
const RUNTIME_PACKAGES = new Set(["ipaddr.js"]);

/** The npm packages (name@version) in the module graph of `root`. */
async function npmPackagesOf(root: string): Promise<string[]> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", root],
    cwd: REPO_DIR,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(code, 0, new TextDecoder().decode(stderr));
  const graph = JSON.parse(new TextDecoder().decode(stdout));
  return graph.modules
    .filter((module: { kind: string }) => module.kind === "npm")
    .map((module: { npmPackage: string }) => module.npmPackage);
}

Deno.test("the server, its threads, the client and validate load no package only the tests use", async () => {
  const imports: Record<string, string> =
    JSON.parse(await Deno.readTextFile(`${REPO_DIR}/deno.json`)).imports;
  const testOnly = Object.keys(imports).filter((name) => !RUNTIME_PACKAGES.has(name));
  assert.ok(testOnly.includes("fast-check"), "deno.json still lists the tests' packages");
  for (const [program, roots] of Object.entries(PROGRAMS)) {
    for (const root of roots) {
      const names = (await npmPackagesOf(root)).map((id) => id.slice(0, id.lastIndexOf("@")));
      const extra = names.filter((name) => !RUNTIME_PACKAGES.has(name));
      assert.deepEqual(extra, [], `${program} (${root}) loads ${extra.join(", ")}`);
    }
  }
});
