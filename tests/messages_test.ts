/**
 * End-to-end tests of what the server, the client and validate say when a
 * file lets them down, quoted whole: a missing file in one style everywhere
 * (the path, what is wrong, and where it was looked for when the path was
 * relative), and a refused book that points to the command listing all of
 * its problems (and that command, run, does list them).
 */

import assert from "node:assert/strict";
import { CLIENT_FLAGS, REPO_DIR, SERVER_FLAGS } from "../testing/repo.ts";
import { tempDir } from "../testing/files.ts";
import { assertNoStackTrace, ServerProcess } from "../testing/processes.ts";
import { withDeadline } from "../testing/deadlines.ts";

/** The message of each line of a text log: without the timestamp and level. */
function messages(stderr: string): string[] {
  return stderr.trimEnd().split("\n").map((line) =>
    line.replace(/^\S+ (?:debug|info|warn|error) /, "")
  );
}

/** Runs `deno` with `args` in the repository, as `deno task` would from `initCwd`, to its exit. */
async function runAsTask(args: readonly string[], initCwd: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [...args],
    cwd: REPO_DIR,
    env: { INIT_CWD: initCwd, NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = await withDeadline(child.output(), "the process to exit", 30_000, () => {
    child.kill("SIGKILL");
  });
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

Deno.test("a missing file is one sentence naming it, alike from the server and the client", async () => {
  await using dir = await tempDir("messages_test_");
  const server = await runAsTask(
    [...SERVER_FLAGS, "--port", "0", "--tls-cert", "cert.pem", "--tls-key", "key.pem"],
    dir.path,
  );
  assert.equal(server.code, 1);
  assert.deepEqual(messages(server.stderr), [
    `Cannot read the --tls-cert file cert.pem: no such file (looked for ${dir.path}/cert.pem).`,
  ]);
  const book = await runAsTask([...SERVER_FLAGS, "--port", "0", "--data", "book.csv"], dir.path);
  assert.equal(book.code, 1);
  assert.deepEqual(messages(book.stderr), [
    `book.csv: Cannot read the file: no such file (looked for ${dir.path}/book.csv).`,
  ]);
  const client = await runAsTask([...CLIENT_FLAGS, "--ca", "ca.pem", "ada@example.com"], dir.path);
  assert.equal(client.code, 2);
  assert.equal(
    client.stderr,
    `client: Cannot read the --ca file ca.pem: no such file (looked for ${dir.path}/ca.pem).\n`,
  );
  for (const run of [server, book, client]) assertNoStackTrace(run.stderr);
});

const FOUR_PROBLEMS = "email,name\nnot-an-email,A\nb@example.com,\nc@example.com,C,extra\n" +
  "d@example.com,D\nD@example.com,D again\n";

Deno.test("a refused book names its first problem and the validate command that lists them all", async () => {
  await using dir = await tempDir("messages_test_");
  await Deno.writeTextFile(`${dir.path}/book.csv`, FOUR_PROBLEMS);
  const refused = await runAsTask(
    [...SERVER_FLAGS, "--port", "0", "--data", "book.csv", "--email-column", "email"],
    dir.path,
  );
  assert.equal(refused.code, 1);
  const command = "deno task validate --email-column email book.csv";
  assert.deepEqual(messages(refused.stderr), [
    `book.csv:2: The email is not valid: it has no @. (and 3 more problems; run "${command}" ` +
    "to list them all)",
  ]);
  // The command, run where the server was started, lists every one.
  const validate = await runAsTask(
    ["task", "--quiet", ...command.split(" ").slice(2)],
    dir.path,
  );
  assert.equal(validate.code, 1);
  assert.deepEqual(validate.stdout.trimEnd().split("\n"), [
    "book.csv:2: The email is not valid: it has no @.",
    "book.csv:3: The name is empty.",
    "book.csv:4: The record has 3 fields, but the header has 2.",
    "book.csv:6: The email is a duplicate of line 5.",
    "4 problems in 1 of 1 file.",
  ]);
});

Deno.test("a reload that finds several problems names the validate command too", async () => {
  await using dir = await tempDir("messages_test_");
  const path = `${dir.path}/book.csv`;
  await Deno.writeTextFile(path, "email,name\nada@example.com,Ada Lovelace\n");
  await using server = await ServerProcess.start(["--data", path, "--duplicates", "last"]);
  await Deno.writeTextFile(path, FOUR_PROBLEMS);
  const mark = server.stderr.lines.length;
  server.signal("SIGHUP");
  const failed = await server.stderr.waitFor(/reload failed/, mark);
  assert.equal(
    messages(failed.line)[0],
    `reload failed, still serving the old book: ${path}:2: The email is not valid: it has no @. ` +
      `(and 2 more problems; run "deno task validate --duplicates last ${path}" to list them all)`,
  );
});
