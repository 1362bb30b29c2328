/**
 * The README's certificate recipe, run as written: the `sh` block after the
 * `recipe: tls-certificates` marker is run in an empty folder, and the
 * server and client lines of the block after it serve and query with what
 * it made. A recipe that stops working fails here, not for a reader.
 */

import assert from "node:assert/strict";
import { tempDir } from "../testing/files.ts";
import { runOpenssl } from "../testing/pki.ts";
import { assertNoStackTrace, runClientToExit, ServerProcess } from "../testing/processes.ts";
import { REPO_DIR } from "../testing/repo.ts";

/** The comment the recipe's block follows in README.md. */
const MARKER = "<!-- recipe: tls-certificates";

/** The recipe's block, and the block after it (how to serve and query with the result). */
function readRecipe(readme: string): { make: string; use: string } {
  const at = readme.indexOf(MARKER);
  assert.ok(at >= 0, `README.md holds the marker ${MARKER}`);
  const blocks = [...readme.slice(at).matchAll(/^```sh\n([\s\S]*?)^```$/gm)];
  assert.ok(blocks.length >= 2, "the recipe and the commands that use it follow the marker");
  return { make: blocks[0][1], use: blocks[1][1] };
}

/** The flags of the line in `block` that starts with `command`, with file names made absolute in `dir`. */
function flagsOf(block: string, command: string, dir: string): string[] {
  const line = block.split("\n").find((text) => text.startsWith(`${command} `));
  assert.ok(line !== undefined, `a line starting with ${command}`);
  return line.slice(command.length + 1).trim().split(/\s+/)
    .map((word) => /\.(crt|key)$/.test(word) ? `${dir}/${word}` : word);
}

Deno.test("the README's certificate recipe makes version 3 certificates that serve and query with a client certificate", async () => {
  const { make, use } = readRecipe(await Deno.readTextFile(`${REPO_DIR}/README.md`));
  await using dir = await tempDir("readme_tls_recipe_");
  const made = await new Deno.Command("sh", {
    args: ["-e", "-c", make],
    cwd: dir.path,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(made.code, 0, new TextDecoder().decode(made.stderr));
  for (const name of ["ca", "server", "client"]) {
    const text = await runOpenssl(dir.path, ["x509", "-in", `${name}.crt`, "-noout", "-text"]);
    assert.match(text, /Version: 3 \(0x2\)/, `${name}.crt is X.509 version 3`);
  }
  const serverText = await runOpenssl(dir.path, ["x509", "-in", "server.crt", "-noout", "-text"]);
  assert.match(serverText, /IP Address:127\.0\.0\.1/);
  assert.match(serverText, /DNS:localhost/);
  const clientText = await runOpenssl(dir.path, ["x509", "-in", "client.crt", "-noout", "-text"]);
  assert.match(clientText, /TLS Web Client Authentication/);

  await using server = await ServerProcess.start(flagsOf(use, "deno task server", dir.path));
  assert.ok(server.tls, `the server serves TLS: ${server.startLine}`);
  const clientFlags = flagsOf(use, "deno task client", dir.path);
  const port = ["--port", String(server.port)];
  const answered = await runClientToExit([...port, ...clientFlags]);
  assert.equal(answered.stderr, "");
  assert.equal(answered.stdout, "Ada Lovelace\n");
  assert.equal(answered.code, 0);

  // The server asks for the certificate: without one, the client is refused and told so.
  const withoutCert = clientFlags.filter((flag, i) =>
    !["--cert", "--key"].includes(flag) && !["--cert", "--key"].includes(clientFlags[i - 1])
  );
  const refused = await runClientToExit([...port, ...withoutCert]);
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /requires a client certificate: give --cert and --key/);
  assertNoStackTrace(refused.stderr);
});
