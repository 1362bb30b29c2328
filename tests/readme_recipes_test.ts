/**
 * The README's recipes, run as written, so that one that stops working
 * fails here, not for a reader: the `sh` block after the
 * `recipe: tls-certificates` marker is run in an empty folder, and the
 * server and client lines of the block after it serve and query with what
 * it made; the server command after `recipe: secure-server` is started and
 * answers a lookup from the machine it runs on.
 */

import assert from "node:assert/strict";
import { tempDir } from "../testing/files.ts";
import { runOpenssl } from "../testing/pki.ts";
import { assertNoStackTrace, runClientToExit, ServerProcess } from "../testing/processes.ts";
import { REPO_DIR } from "../testing/repo.ts";
import { writeCsvBook } from "../testing/books.ts";
import { LOOPBACK } from "../testing/loopback.ts";
import { WireClient } from "../testing/wire_client.ts";
import { STATUS_FOUND } from "../protocol.ts";

/** The first `count` `sh` blocks after the comment `<!-- recipe: NAME` in README.md. */
async function readRecipe(name: string, count: number): Promise<string[]> {
  const readme = await Deno.readTextFile(`${REPO_DIR}/README.md`);
  const marker = `<!-- recipe: ${name}`;
  const at = readme.indexOf(marker);
  assert.ok(at >= 0, `README.md holds the marker ${marker}`);
  const blocks = [...readme.slice(at).matchAll(/^```sh\n([\s\S]*?)^```$/gm)].slice(0, count);
  assert.equal(blocks.length, count, `${count} sh blocks follow ${marker}`);
  // A line ending in a backslash goes on on the next, as in sh.
  return blocks.map((block) => block[1].replaceAll("\\\n", " "));
}

/** The flags of the line in `block` that starts with `command`, with file names made absolute in `dir`. */
function flagsOf(block: string, command: string, dir: string): string[] {
  const line = block.split("\n").find((text) => text.startsWith(`${command} `));
  assert.ok(line !== undefined, `a line starting with ${command}`);
  return line.slice(command.length + 1).trim().split(/\s+/)
    .map((word) => /\.(crt|key)$/.test(word) ? `${dir}/${word}` : word);
}

Deno.test("the README's certificate recipe makes version 3 certificates that serve and query with a client certificate", async () => {
  const [make, use] = await readRecipe("tls-certificates", 2);
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

Deno.test("the README's secure configuration answers a lookup from the machine it runs on", async () => {
  const [command] = await readRecipe("secure-server", 1);
  await using dir = await tempDir("readme_secure_server_");
  const book = await writeCsvBook(dir.path, [["ada@example.com", "Ada Lovelace"]]);
  const flags = flagsOf(command, "deno task server", dir.path).map((word) =>
    // The README's book; and loopback for the address, since tests listen on
    // loopback only: --allow applies to clients whatever the server listens on.
    word === "/srv/book.csv" ? book : word === "0.0.0.0" ? LOOPBACK : word
  );
  assert.ok(flags.includes("--allow"), `the command gives --allow: ${flags.join(" ")}`);
  await using server = await ServerProcess.start(flags);
  for (const source of ["127.0.0.1", "127.0.0.2"]) {
    using client = await WireClient.connectFrom(server.port, source);
    assert.deepEqual(
      await client.query("ada@example.com"),
      { status: STATUS_FOUND, text: "Ada Lovelace" },
      `a lookup from ${source}`,
    );
  }
});
