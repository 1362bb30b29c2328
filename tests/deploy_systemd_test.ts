/**
 * Tests of deploy/addrbook.service: systemd's own checker accepts it and
 * rates its sandbox, it has the hardening the README promises, and its
 * exact ExecStart line, run as systemd would run it (only the install
 * paths, the listen address and the ports mapped to the test's), serves,
 * reloads on its ExecReload and stops on its KillSignal.
 *
 * These need `systemd-analyze` (Debian's systemd package, which .ci/run
 * installs); systemd itself need not be running: `verify` and
 * `security --offline` read the file alone. No test starts the unit under
 * systemd, since a test machine or container may have no systemd as PID 1.
 */

import assert from "node:assert/strict";
import { STATUS_FOUND } from "../protocol.ts";
import { EVENT_DEADLINE_MS } from "../testing/deadlines.ts";
import { tempDir } from "../testing/files.ts";
import { LISTENING, Subprocess } from "../testing/processes.ts";
import { REPO_DIR } from "../testing/repo.ts";
import { parseUnit, splitCommandLine, type Unit } from "../testing/systemd_unit.ts";
import { WireClient } from "../testing/wire_client.ts";

const UNIT_PATH = `${REPO_DIR}/deploy/addrbook.service`;
/** Where the unit expects Deno and the project. */
const UNIT_DENO = "/usr/bin/deno";
const UNIT_PROJECT = "/opt/addrbook";
/** The highest exposure `systemd-analyze security` may rate the unit, out of 10 ("OK" is up to 2). */
const MAX_EXPOSURE = 2;

/** The unit's text with the install paths of this machine: Deno where it runs, the project here. */
async function unitHere(): Promise<string> {
  const text = await Deno.readTextFile(UNIT_PATH);
  return text.replaceAll(UNIT_DENO, Deno.execPath()).replaceAll(UNIT_PROJECT, REPO_DIR);
}

/** The one value of `key` in `section`; fails when it has none or several. */
function only(unit: Unit, section: string, key: string): string {
  const values = unit.get(section)?.get(key) ?? [];
  assert.equal(values.length, 1, `one ${key}= in [${section}], got ${values.length}`);
  return values[0];
}

/** Runs `systemd-analyze` with `args`; says how to install it when it is missing. */
async function systemdAnalyze(args: string[]): Promise<{ code: number; output: string }> {
  let result: Deno.CommandOutput;
  try {
    result = await new Deno.Command("systemd-analyze", { args, stdout: "piped", stderr: "piped" })
      .output();
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    throw new Error(
      "These tests need systemd-analyze on PATH, and it was not found. " +
        "Install it (apt-get install systemd); .ci/run does.",
    );
  }
  const decoder = new TextDecoder();
  return {
    code: result.code,
    output: decoder.decode(result.stdout) + decoder.decode(result.stderr),
  };
}

Deno.test("systemd-analyze verify accepts deploy/addrbook.service with no warning", async () => {
  await using dir = await tempDir("deploy_systemd_test_");
  // verify checks that ExecStart's program exists, so Deno's path is this machine's.
  const unit = `${dir.path}/addrbook.service`;
  await Deno.writeTextFile(unit, await unitHere());
  const { code, output } = await systemdAnalyze(["verify", unit]);
  assert.equal(output, "", "no warning (an unknown or misspelt key is only a warning)");
  assert.equal(code, 0);

  // The same check refuses a misspelt value, so it does read the file.
  await Deno.writeTextFile(unit, (await unitHere()).replace("Type=exec", "Type=exe"));
  const broken = await systemdAnalyze(["verify", unit]);
  assert.match(broken.output, /Failed to parse service type/);
});

Deno.test("deploy/addrbook.service is sandboxed: the hardening the README names, rated OK by systemd", async () => {
  const unit = parseUnit(await Deno.readTextFile(UNIT_PATH));
  const expected: Record<string, string> = {
    DynamicUser: "yes",
    ProtectSystem: "strict",
    ProtectHome: "yes",
    NoNewPrivileges: "yes",
    PrivateTmp: "yes",
    CapabilityBoundingSet: "",
    Restart: "on-failure",
    ExecReload: "/bin/kill -HUP $MAINPID",
    KillSignal: "SIGTERM",
  };
  for (const [key, value] of Object.entries(expected)) {
    assert.equal(only(unit, "Service", key), value, key);
  }
  // The book's folder is read-only to the service.
  const data = splitCommandLine(only(unit, "Service", "ExecStart"));
  const book = data[data.indexOf("--data") + 1];
  const readOnly = only(unit, "Service", "ReadOnlyPaths").split(/\s+/);
  assert.ok(
    readOnly.some((path) => book.startsWith(`${path}/`)),
    `${book} is under ReadOnlyPaths (${readOnly.join(" ")})`,
  );
  // The server stops well within TimeoutStopSec: its own --shutdown-timeout is 5 s by default.
  assert.ok(Number(only(unit, "Service", "TimeoutStopSec")) > 5);

  const { code, output } = await systemdAnalyze([
    "security",
    "--offline=yes",
    `--threshold=${MAX_EXPOSURE * 10}`,
    UNIT_PATH,
  ]);
  const exposure = /Overall exposure level for \S+: (\d+\.\d+)/.exec(output);
  assert.ok(exposure, output);
  assert.ok(Number(exposure[1]) <= MAX_EXPOSURE, `exposure ${exposure[1]}`);
  assert.equal(code, 0, output);
});

Deno.test("deploy/addrbook.service runs the server with the deno task's permissions", async () => {
  const unit = parseUnit(await Deno.readTextFile(UNIT_PATH));
  const words = splitCommandLine(only(unit, "Service", "ExecStart"));
  const tasks = JSON.parse(await Deno.readTextFile(`${REPO_DIR}/deno.json`)).tasks;
  // `deno run FLAGS server.ts`, as `deno task server` has it, with the project's path.
  const task = tasks.server.split(/\s+/).map((word: string) =>
    word === "server.ts" ? `${UNIT_PROJECT}/server.ts` : word
  );
  assert.deepEqual(words.slice(0, task.length), [UNIT_DENO, ...task.slice(1)]);
});

Deno.test("deploy/addrbook.service's ExecStart serves, its ExecReload reloads, its KillSignal stops", async () => {
  await using dir = await tempDir("deploy_systemd_test_");
  const book = `${dir.path}/book.csv`;
  await Deno.writeTextFile(book, "email,name\nada@example.com,Ada Lovelace\n");
  const unit = parseUnit(await unitHere());
  assert.equal(only(unit, "Service", "WorkingDirectory"), REPO_DIR);
  // The unit's own words, but where the test may put things and listen: loopback, free ports.
  const here: Record<string, string> = {
    "--data": book,
    "--host": "127.0.0.1",
    "--port": "0",
    "--metrics-port": "0",
  };
  const words = splitCommandLine(only(unit, "Service", "ExecStart"));
  const mapped = words.map((word, i) => here[words[i - 1]] ?? word);
  for (const flag of Object.keys(here)) assert.ok(words.includes(flag), `ExecStart has ${flag}`);
  assert.equal(mapped[0], Deno.execPath());

  await using server = new Subprocess(mapped.slice(1));
  const started = await server.stderr.waitFor(LISTENING);
  // --log-format json: one JSON object a line, for the journal.
  const line = JSON.parse(started.line);
  assert.equal(line.pid, server.child.pid);
  const port = Number(started.match[3]);
  const client = await WireClient.connect(port, { hostname: "127.0.0.1" });
  try {
    assert.deepEqual(await client.query("ada@example.com"), {
      status: STATUS_FOUND,
      text: "Ada Lovelace",
    });
  } finally {
    client.close();
  }

  // ExecReload, with $MAINPID as systemd sets it.
  const reload = splitCommandLine(
    only(unit, "Service", "ExecReload").replace("$MAINPID", String(server.child.pid)),
  );
  const mark = server.stderr.lines.length;
  const kill = await new Deno.Command(reload[0], { args: reload.slice(1) }).output();
  assert.equal(kill.code, 0);
  await server.stderr.waitFor(/reload done/, mark);

  server.signal(only(unit, "Service", "KillSignal") as Deno.Signal);
  const stopMs = Number(only(unit, "Service", "TimeoutStopSec")) * 1000;
  const { code } = await server.exit(Math.min(stopMs, EVENT_DEADLINE_MS));
  assert.equal(code, 0, server.stderr.text);
});
