/**
 * Tests of the client's command line: parseClientArgs, and client.ts run as
 * a subprocess against in-process servers, scripted servers (for FORBIDDEN
 * and RATE_LIMITED), TLS servers that require a client certificate, and
 * real server processes, two of them for failover.
 */

import { CLIENT_FLAGS, REPO_DIR } from "../testing/repo.ts";
import { runInTerminal } from "../testing/terminal.ts";
import assert from "node:assert/strict";
import { UsageError } from "../common/cli_args.ts";
import { terminalUnsafeCharacter } from "../common/terminal_text.ts";
import { DEFAULT_TIMEOUT_MS } from "./connection.ts";
import { parseClientArgs } from "./cli.ts";
import { DEFAULT_HOSTNAME, DEFAULT_PORT } from "./failover.ts";
import { encodeReply, STATUS_FORBIDDEN, STATUS_FOUND, STATUS_RATE_LIMITED } from "../protocol.ts";
import { CLIENT_TEST_PEOPLE, writeCsvBook } from "../testing/books.ts";
import { withDeadline } from "../testing/deadlines.ts";
import { tempDir } from "../testing/files.ts";
import { withClientTestServer } from "../testing/in_process_server.ts";
import { CertificateServer, startOpensslServer } from "../testing/mtls_servers.ts";
import { makeTestPki, makeVersion1Client } from "../testing/pki.ts";
import { assertNoStackTrace, ServerProcess } from "../testing/processes.ts";
import { ScriptedServer } from "../testing/scripted_server.ts";

/** The repository, where `deno task client` runs. */
const HERE = REPO_DIR;
const CLIENT = `${HERE}/client.ts`;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A port that was free a moment ago: nothing listens on it. */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

// --- parseClientArgs ----------------------------------------------------------

const noEnv = () => undefined;

Deno.test("parseClientArgs defaults to 127.0.0.1:8080, a 5 s timeout and text output", () => {
  assert.deepEqual(parseClientArgs([], noEnv), {
    hosts: [{ hostname: DEFAULT_HOSTNAME, port: DEFAULT_PORT }],
    timeoutMs: DEFAULT_TIMEOUT_MS,
    json: false,
    tls: false,
    caFile: undefined,
    certFile: undefined,
    keyFile: undefined,
    maxWaitMs: 60_000,
    emails: [],
  });
});

Deno.test("parseClientArgs reads --max-wait in seconds, --no-wait as 0, and refuses both at once", () => {
  const paced = parseClientArgs(["--max-wait", "2.5"], noEnv);
  assert.ok(paced !== "help");
  assert.equal(paced.maxWaitMs, 2500);
  const unpaced = parseClientArgs(["--no-wait"], noEnv);
  assert.ok(unpaced !== "help");
  assert.equal(unpaced.maxWaitMs, 0);
  assert.throws(() => parseClientArgs(["--no-wait", "--max-wait", "5"], noEnv), {
    name: "UsageError",
    message: "--no-wait and --max-wait contradict each other: give one.",
  });
});

Deno.test("parseClientArgs takes ADDRBOOK_HOST and ADDRBOOK_PORT, and flags over them", () => {
  const env = (name: string) =>
    ({ ADDRBOOK_HOST: "book.example", ADDRBOOK_PORT: "9000" } as Record<string, string>)[name];
  const fromEnv = parseClientArgs(["a@example.com"], env);
  assert.ok(fromEnv !== "help");
  assert.deepEqual(fromEnv.hosts, [{ hostname: "book.example", port: 9000 }]);
  assert.deepEqual(fromEnv.emails, ["a@example.com"]);
  const fromFlags = parseClientArgs(["--host", "127.0.0.2", "--port", "9001"], env);
  assert.ok(fromFlags !== "help");
  assert.deepEqual(fromFlags.hosts, [{ hostname: "127.0.0.2", port: 9001 }]);
});

Deno.test("parseClientArgs reads --timeout in seconds, 0 meaning never, and --ca implying --tls", () => {
  const parsed = parseClientArgs(["--timeout", "0.25", "--ca", "ca.pem", "--json"], noEnv);
  assert.ok(parsed !== "help");
  assert.equal(parsed.timeoutMs, 250);
  assert.equal(parsed.tls, true);
  assert.equal(parsed.caFile, "ca.pem");
  assert.equal(parsed.json, true);
  const never = parseClientArgs(["--timeout", "0"], noEnv);
  assert.ok(never !== "help");
  assert.equal(never.timeoutMs, 0);
});

Deno.test("parseClientArgs reads a --host list, each port defaulting to --port", () => {
  const parsed = parseClientArgs(
    ["--host", "a.example,[::1]:9000, 127.0.0.3", "--port", "7000"],
    noEnv,
  );
  assert.ok(parsed !== "help");
  assert.deepEqual(parsed.hosts, [
    { hostname: "a.example", port: 7000 },
    { hostname: "::1", port: 9000 },
    { hostname: "127.0.0.3", port: 7000 },
  ]);
  const env = (name: string) => name === "ADDRBOOK_HOST" ? "b.example:1,c.example" : undefined;
  const fromEnv = parseClientArgs([], env);
  assert.ok(fromEnv !== "help");
  assert.deepEqual(fromEnv.hosts, [
    { hostname: "b.example", port: 1 },
    { hostname: "c.example", port: DEFAULT_PORT },
  ]);
});

Deno.test("parseClientArgs takes --cert with --key, implying --tls, and refuses either alone", () => {
  const parsed = parseClientArgs(["--cert", "c.pem", "--key", "k.pem"], noEnv);
  assert.ok(parsed !== "help");
  assert.equal(parsed.tls, true);
  assert.equal(parsed.certFile, "c.pem");
  assert.equal(parsed.keyFile, "k.pem");
  assert.throws(() => parseClientArgs(["--cert", "c.pem"], noEnv), {
    name: "UsageError",
    message: "--cert needs --key: give the certificate's private key.",
  });
  assert.throws(() => parseClientArgs(["--key", "k.pem"], noEnv), {
    name: "UsageError",
    message: "--key needs --cert: give the client certificate it belongs to.",
  });
});

Deno.test("parseClientArgs rejects unknown flags and bad values, naming them", () => {
  const usage = (args: string[], env: (name: string) => string | undefined = noEnv) => {
    try {
      parseClientArgs(args, env);
    } catch (error) {
      assert.ok(error instanceof UsageError, `expected a UsageError, got ${error}`);
      assert.match(error.message, /\.$/, "a usage message ends with a period");
      return error.message;
    }
    assert.fail(`expected a usage error for ${args.join(" ")}`);
  };
  assert.match(usage(["--bogus"]), /--bogus/);
  assert.match(usage(["--port", "0"]), /--port must be a whole number from 1 to 65535, not "0"/);
  assert.match(usage(["--port", "http"]), /not "http"/);
  assert.match(usage(["--timeout", "soon"]), /--timeout must be a number of seconds/);
  assert.match(usage(["--host", "a.example:0"]), /^--host: The port of "a\.example:0" must be/);
  assert.match(
    usage(["--host", "a.example,,b.example"]),
    /^--host: The host list has an empty entry/,
  );
  assert.match(
    usage([], (name) => name === "ADDRBOOK_HOST" ? "[::1" : undefined),
    /^ADDRBOOK_HOST: The host "\[::1" has no closing bracket\.$/,
  );
  assert.match(usage([], (name) => name === "ADDRBOOK_PORT" ? "x" : undefined), /ADDRBOOK_PORT/);
  assert.equal(parseClientArgs(["-h"], noEnv), "help");
});

// --- The command line, as a subprocess ------------------------------------------

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** The permissions the client task grants, with --allow-env wide for ADDRBOOK_* in tests. */
const CLIENT_PERMISSIONS = ["--allow-net", "--allow-read", "--allow-env"];

/** Runs client.ts in a new process; `stdin` is piped in when given, else stdin is empty. */
async function runClient(
  args: string[],
  options: { stdin?: string; env?: Record<string, string> } = {},
): Promise<Run> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...CLIENT_PERMISSIONS, CLIENT, ...args],
    cwd: HERE,
    env: { NO_COLOR: "1", ...options.env },
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // Collect the output while stdin is written, so a full pipe cannot stall either side.
  const output = child.output();
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(encoder.encode(options.stdin));
    await writer.close();
  }
  const { code, stdout, stderr } = await output;
  return { code, stdout: decoder.decode(stdout), stderr: decoder.decode(stderr) };
}

Deno.test("client --help prints the usage on stdout and exits 0", async () => {
  const run = await runClient(["--help"]);
  assert.equal(run.code, 0);
  assert.match(run.stdout, /^Usage: deno task client/);
  assert.match(run.stdout, /Exit status/);
  assert.equal(run.stderr, "");
});

Deno.test("client with an unknown flag or a bad value prints one line and see --help, exit 2", async () => {
  const cases: [string[], string][] = [
    [["--bogus"], "client: Unknown option --bogus. See --help.\n"],
    [["--tmeout", "3"], "client: Unknown option --tmeout: did you mean --timeout? See --help.\n"],
    [["--prot", "3"], "client: Unknown option --prot: did you mean --port? See --help.\n"],
    [["--tim", "3"], "client: Unknown option --tim: did you mean --timeout? See --help.\n"],
    [["-port", "3"], "client: Unknown option -port: did you mean --port? See --help.\n"],
    [
      ["--timeout", "-XYZ"],
      'client: --timeout must be a number of seconds from 0 to 2147483 with at most 3 decimals, not "-XYZ". See --help.\n',
    ],
    [
      ["--port", "99999", "ada@example.com"],
      'client: --port must be a whole number from 1 to 65535, not "99999". See --help.\n',
    ],
    [["--json=yes"], 'client: --json takes no value, not "yes". See --help.\n'],
    [["--port"], "client: --port needs a value. See --help.\n"],
  ];
  for (const [args, message] of cases) {
    const run = await runClient(args);
    assert.equal(run.stderr, message, args.join(" "));
    assert.equal(run.code, 2, args.join(" "));
    assert.equal(run.stdout, "", args.join(" "));
  }
});

Deno.test("client with no server listening says so in one line and exits 2", async () => {
  const port = closedPort();
  const run = await runClient(["--host", "127.0.0.1", "--port", String(port), "ada@example.com"]);
  assert.equal(run.code, 2);
  assert.equal(
    run.stderr,
    `client: Cannot connect to 127.0.0.1:${port} (connection refused): check that the server is running.\n`,
  );
  assert.equal(run.stdout, "");
});

Deno.test("client EMAIL prints the name and exits 0 when it is found", async () => {
  await withClientTestServer(async (port) => {
    const run = await runClient(["--host", "127.0.0.1", "--port", String(port), "Ada@Example.com"]);
    assert.equal(run.code, 0);
    assert.equal(run.stdout, "Ada Lovelace\n");
    assert.equal(run.stderr, "");
  });
});

Deno.test("client EMAIL... exits 1 when one is not found, saying which on stderr", async () => {
  await withClientTestServer(async (port) => {
    const run = await runClient([
      "--host",
      "127.0.0.1",
      "--port",
      String(port),
      "ada@example.com",
      "nobody@example.com",
      "grace@example.com",
    ]);
    assert.equal(run.code, 1);
    assert.equal(run.stdout, "Ada Lovelace\nGrace Hopper\n");
    assert.equal(run.stderr, "not found: nobody@example.com\nclient: 1 of 3 not found.\n");
  });
});

Deno.test("client EMAIL exits 2 for a bad request, naming the problem", async () => {
  await withClientTestServer(async (port) => {
    const run = await runClient(["--port", String(port), "--host", "127.0.0.1", "not-an-email"]);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /^client: Bad request for "not-an-email": .*no @/);
  });
});

Deno.test("client with ADDRBOOK_HOST and ADDRBOOK_PORT set connects there", async () => {
  await withClientTestServer(async (port) => {
    const run = await runClient(["ada@example.com"], {
      env: { ADDRBOOK_HOST: "127.0.0.1", ADDRBOOK_PORT: String(port) },
    });
    assert.equal(run.code, 0);
    assert.equal(run.stdout, "Ada Lovelace\n");
  });
});

Deno.test("client batch mode prints one line per address in order, skipping blank lines", async () => {
  await withClientTestServer(async (port) => {
    const input =
      "ada@example.com\n\n  GRACE@example.com  \r\nnobody@example.com\n\nperson7@example.com";
    const run = await runClient(["--host", "127.0.0.1", "--port", String(port)], { stdin: input });
    assert.equal(run.code, 1);
    assert.equal(run.stdout, "Ada Lovelace\nGrace Hopper\n\nPerson 7\n");
    assert.equal(run.stderr, "client: 1 of 4 not found.\n");
  });
});

Deno.test("client batch mode reports a bad line by number on stderr, prints an empty line, exits 2", async () => {
  await withClientTestServer(async (port) => {
    const input = "ada@example.com\nnot an email\ngrace@example.com\n";
    const run = await runClient(["--host", "127.0.0.1", "--port", String(port)], { stdin: input });
    assert.equal(run.code, 2);
    assert.equal(run.stdout, "Ada Lovelace\n\nGrace Hopper\n");
    assert.match(run.stderr, /^client: Line 2: The query is not an email address/);
    assert.match(run.stderr, /client: 1 of 3 was a bad request\.\n$/);
  });
});

Deno.test("client batch mode answers thousands of lines in input order", async () => {
  await withClientTestServer(async (port) => {
    const lines: string[] = [];
    const expected: string[] = [];
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < CLIENT_TEST_PEOPLE; i++) {
        const found = (i + round) % 7 !== 0;
        lines.push(found ? `person${i}@example.com` : `stranger${i}@example.com`);
        expected.push(found ? `Person ${i}` : "");
      }
    }
    const run = await runClient(["--host", "127.0.0.1", "--port", String(port)], {
      stdin: lines.join("\n") + "\n",
    });
    assert.equal(run.code, 1);
    assert.deepEqual(run.stdout.split("\n"), [...expected, ""]);
    const misses = expected.filter((name) => name === "").length;
    assert.equal(run.stderr, `client: ${misses} of ${lines.length} not found.\n`);
  });
});

Deno.test("client --json prints one JSON object per address with its status", async () => {
  await withClientTestServer(async (port) => {
    const input = "ada@example.com\nnobody@example.com\nnope\n";
    const run = await runClient(["--json", "--host", "127.0.0.1", "--port", String(port)], {
      stdin: input,
    });
    assert.equal(run.code, 2);
    const objects = run.stdout.trimEnd().split("\n").map((line) => JSON.parse(line));
    assert.equal(objects.length, 3);
    assert.deepEqual(objects[0], {
      email: "ada@example.com",
      status: "FOUND",
      name: "Ada Lovelace",
    });
    assert.equal(objects[1].email, "nobody@example.com");
    assert.equal(objects[1].status, "NOT_FOUND");
    assert.equal(typeof objects[1].message, "string");
    assert.equal(objects[2].status, "BAD_REQUEST");
    assert.match(objects[2].message, /no @/);
  });
});

Deno.test("client --ca FILE looks up over TLS; --tls without the CA fails in one line", async () => {
  await using pki = await makeTestPki();
  await withClientTestServer(async (port) => {
    const trusted = await runClient([
      "--port",
      String(port),
      "--ca",
      pki.ca.certificatePath,
      "ada@example.com",
    ]);
    assert.equal(trusted.code, 0, trusted.stderr);
    assert.equal(trusted.stdout, "Ada Lovelace\n");
    const untrusted = await runClient(["--port", String(port), "--tls", "ada@example.com"]);
    assert.equal(untrusted.code, 2);
    assert.match(untrusted.stderr, /^client: TLS handshake with 127\.0\.0\.1:\d+ failed: .*\.\n$/);
  }, { tls: { cert: pki.server.certificate, key: pki.server.key } });
});

Deno.test("the client CLI queries the real server process, which exits 0 on SIGTERM", async () => {
  await using server = await ServerProcess.start(["--data", "data/addressbook.csv"]);
  const where = ["--host", server.hostname, "--port", String(server.port)];
  const run = await runClient([...where, "ada@example.com"]);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout, "Ada Lovelace\n");
  const batch = await runClient(where, { stdin: "ada@example.com\nnobody@nowhere.example\n" });
  assert.equal(batch.code, 1);
  assert.equal(batch.stdout, "Ada Lovelace\n\n");
  server.signal("SIGTERM");
  assert.equal((await server.exit()).code, 0, server.stderr.text);
});

Deno.test("client at a terminal: the up arrow brings back the last query, which is answered again", async () => {
  await withClientTestServer(async (port) => {
    const PROMPT = "addrbook> ";
    const UP = "\x1b[A";
    const CTRL_D = "\x04";
    const run = await runInTerminal(
      [Deno.execPath(), ...CLIENT_FLAGS, "--host", "127.0.0.1", "--port", String(port)],
      [
        { waitFor: PROMPT, send: "ada@example.com\r" },
        { waitFor: "Ada Lovelace", send: `${UP}\r` },
        // The second answer, to the line the up arrow brought back.
        { waitFor: "Ada Lovelace", send: CTRL_D },
      ],
    );
    assert.equal(run.code, 0, run.output);
    assert.equal(run.output.split("Ada Lovelace").length - 1, 2, run.output);
    assert.doesNotMatch(run.output, /Bad request|not found/, run.output);
  });
});

// --- What a server sends is shown, never obeyed -------------------------------------

/** A name that would clear the screen, set the window title and reverse the text after it. */
const HOSTILE_NAME = "Eve\u001b[2J\u001b]0;pwned\u0007\u009b31m \u202egnp.exe\r\nroot";
const HOSTILE_SHOWN =
  "Eve\\u001B[2J\\u001B]0;pwned\\u0007\\u009B31m \\u202Egnp.exe\\u000D\\u000Aroot";

Deno.test("client shows a name's control and direction-changing characters escaped, in every mode", async () => {
  await using server = new ScriptedServer({
    answer: (email) =>
      email.startsWith("bad")
        ? { status: STATUS_RATE_LIMITED, text: `Stop\u001b[2J\u202e now.` }
        : { status: STATUS_FOUND, text: HOSTILE_NAME },
  });
  const port = ["--port", String(server.port)];
  const oneShot = await runClient([...port, "eve@example.com"]);
  assert.equal(oneShot.stdout, `${HOSTILE_SHOWN}\n`);
  const batch = await runClient(port, { stdin: "eve@example.com\nbad@example.com\n" });
  assert.equal(batch.stdout, `${HOSTILE_SHOWN}\n`);
  assert.match(batch.stderr, /^client: Rate limited by the server: Stop\\u001B\[2J\\u202E now; /);
  const json = await runClient(["--json", ...port, "eve@example.com"]);
  assert.deepEqual(JSON.parse(json.stdout), {
    email: "eve@example.com",
    status: "FOUND",
    name: HOSTILE_NAME,
  });
  for (const run of [oneShot, batch, json]) {
    for (const line of (run.stdout + run.stderr).split("\n")) {
      assert.equal(terminalUnsafeCharacter(line), undefined, line);
    }
  }
});

/** How often the trickling server sends one byte, and the client's --timeout: 3.5 s and 5 s, scaled. */
const TRICKLE_MS = 700;
const TRICKLE_TIMEOUT_S = 1;

/**
 * A real TCP server that reads a query, then sends a FOUND reply one byte
 * every {@linkcode TRICKLE_MS}: never silent for a whole timeout, never done
 * within one. Returns its port and a function that stops it.
 */
function startTricklingServer(): { port: number; stop: () => Promise<void> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const reply = encodeReply(STATUS_FOUND, "A name long enough to take a while to trickle out");
  const conns = new Set<Deno.Conn>();
  const serving = (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      (async () => {
        await conn.read(new Uint8Array(1024));
        for (let i = 0; i < reply.length; i++) {
          await conn.write(reply.subarray(i, i + 1));
          await new Promise((resolve) => setTimeout(resolve, TRICKLE_MS));
        }
      })().catch(() => {}).finally(() => {
        conns.delete(conn);
        try {
          conn.close();
        } catch {
          // Already closed by stop().
        }
      });
    }
  })();
  return {
    port: listener.addr.port,
    stop: async () => {
      listener.close();
      for (const conn of conns) conn.close();
      await serving;
    },
  };
}

Deno.test("client --timeout bounds a whole reply: a server trickling a byte at a time fails it on time", async () => {
  const server = startTricklingServer();
  try {
    const started = performance.now();
    const run = await runClient([
      "--port",
      String(server.port),
      "--timeout",
      String(TRICKLE_TIMEOUT_S),
      "ada@example.com",
    ]);
    const elapsedMs = performance.now() - started;
    assert.equal(run.code, 2);
    assert.equal(run.stdout, "");
    assert.equal(
      run.stderr,
      `client: The server at 127.0.0.1:${server.port} sent only part of a reply within 1 s.\n`,
    );
    // The client's own start takes a moment; one trickled reply would take over 40 s.
    assert.ok(
      elapsedMs >= TRICKLE_TIMEOUT_S * 1000 && elapsedMs < TRICKLE_TIMEOUT_S * 1000 + 3000,
      `${elapsedMs} ms`,
    );
  } finally {
    await server.stop();
  }
});

// --- Refusals: FORBIDDEN and RATE_LIMITED -----------------------------------------

const FORBIDDEN_TEXT = "Clients from 127.0.0.1 may not query: see --allow.";
const RATE_LIMITED_TEXT = "Over 10 queries a minute.";

Deno.test("client EMAIL says Forbidden by the server in one line and exits 2", async () => {
  await using server = new ScriptedServer({
    greeting: { status: STATUS_FORBIDDEN, text: FORBIDDEN_TEXT },
    answer: () => assert.fail("a forbidding server reads no query"),
  });
  const run = await runClient(["--port", String(server.port), "ada@example.com"]);
  assert.equal(run.code, 2);
  assert.equal(run.stdout, "");
  assert.equal(run.stderr, `client: Forbidden by the server: ${FORBIDDEN_TEXT}\n`);
});

Deno.test("client --no-wait batch stops at the first RATE_LIMITED, saying where to resume, exit 2", async () => {
  await using server = new ScriptedServer({
    answer: (email, index) =>
      index < 3
        ? { status: STATUS_FOUND, text: `Name of ${email}` }
        : { status: STATUS_RATE_LIMITED, text: RATE_LIMITED_TEXT },
  });
  const input = "a@example.com\n\nb@example.com\nc@example.com\nd@example.com\ne@example.com\n";
  const run = await runClient(["--no-wait", "--port", String(server.port)], { stdin: input });
  assert.equal(run.code, 2);
  assert.equal(
    run.stdout,
    "Name of a@example.com\nName of b@example.com\nName of c@example.com\n",
  );
  assert.equal(
    run.stderr,
    "client: Rate limited by the server: Over 10 queries a minute; " +
      "3 queries answered, resume from input line 5.\n",
  );
});

Deno.test("client --json shows the status name of a refusal, then stops with exit 2", async () => {
  await using server = new ScriptedServer({
    answer: (_email, index) =>
      index === 0
        ? { status: STATUS_FOUND, text: "Ada Lovelace" }
        : { status: STATUS_RATE_LIMITED, text: RATE_LIMITED_TEXT },
  });
  const run = await runClient(["--json", "--no-wait", "--port", String(server.port)], {
    stdin: "ada@example.com\ngrace@example.com\nalan@example.com\n",
  });
  assert.equal(run.code, 2);
  const objects = run.stdout.trimEnd().split("\n").map((line) => JSON.parse(line));
  assert.deepEqual(objects, [
    { email: "ada@example.com", status: "FOUND", name: "Ada Lovelace" },
    { email: "grace@example.com", status: "RATE_LIMITED", message: RATE_LIMITED_TEXT },
  ]);
  assert.match(run.stderr, /^client: Rate limited by the server: .*resume from input line 2\.\n$/);
});

Deno.test("client batch outpacing --rate-limit finishes, paced, every line answered in order", async () => {
  // A burst of 10, then 10 a second: 45 lines take about 3.5 s.
  await using server = await ServerProcess.start(["--rate-limit", "10/s"]);
  const names = ["Ada Lovelace", "Grace Hopper", ""];
  const emails = ["ada@example.com", "grace.hopper@example.org", "nobody@example.com"];
  const lines = Array.from({ length: 45 }, (_, i) => i % 3);
  const run = await runClient(["--host", server.hostname, "--port", String(server.port)], {
    stdin: lines.map((i) => emails[i] + "\n").join(""),
  });
  assert.equal(run.stdout, lines.map((i) => names[i] + "\n").join(""));
  assert.match(
    run.stderr,
    /^client: 15 of 45 not found\.\nclient: Paced by the server's rate limit: \d+ pauses, \d+\.\d s in all\.\n$/,
  );
  assert.equal(run.code, 1);
  // --no-wait keeps the old way: the burst is answered, then the batch stops.
  const stopped = await runClient(
    ["--no-wait", "--host", server.hostname, "--port", String(server.port)],
    { stdin: "ada@example.com\n".repeat(30) },
  );
  assert.equal(stopped.code, 2);
  assert.match(
    stopped.stderr,
    /^client: Rate limited by the server: .*; \d+ queries answered, resume from input line \d+\.\n$/,
  );
});

Deno.test("client gives up pacing after --max-wait with nothing answered, saying where to resume", async () => {
  await using server = new ScriptedServer({
    answer: (email, index) =>
      index < 2
        ? { status: STATUS_FOUND, text: `Name of ${email}` }
        : { status: STATUS_RATE_LIMITED, text: RATE_LIMITED_TEXT },
  });
  const run = await runClient(["--max-wait", "0.5", "--port", String(server.port)], {
    stdin: "a@example.com\nb@example.com\nc@example.com\nd@example.com\n",
  });
  assert.equal(run.code, 2);
  assert.equal(run.stdout, "Name of a@example.com\nName of b@example.com\n");
  assert.match(
    run.stderr,
    /^client: Rate limited by the server: Over 10 queries a minute; still refused after waiting 0\.\d s; 2 queries answered, resume from input line 3\.\n$/,
  );
});

Deno.test("client EMAIL... stopped by FORBIDDEN says which argument to resume from", async () => {
  await using server = new ScriptedServer({
    answer: (_email, index) =>
      index === 0 ? { status: STATUS_FOUND, text: "Ada Lovelace" } : {
        reply: { status: STATUS_FORBIDDEN, text: FORBIDDEN_TEXT },
        thenClose: true,
      },
  });
  const run = await runClient([
    "--port",
    String(server.port),
    "ada@example.com",
    "grace@example.com",
    "alan@example.com",
  ]);
  assert.equal(run.code, 2);
  assert.equal(run.stdout, "Ada Lovelace\n");
  assert.equal(
    run.stderr,
    "client: Forbidden by the server: Clients from 127.0.0.1 may not query: see --allow; " +
      "1 of 3 answered, resume from argument 2.\n",
  );
});

// --- Client certificates -----------------------------------------------------------

Deno.test("client --cert --key presents a client certificate that the server accepts", async () => {
  await using pki = await makeTestPki();
  await using server = await CertificateServer.start(pki);
  const run = await runClient([
    "--port",
    String(server.port),
    "--ca",
    pki.ca.certificatePath,
    "--cert",
    pki.client.certificatePath,
    "--key",
    pki.client.keyPath,
    "ada@example.com",
  ]);
  assert.equal(run.code, 0, run.stderr);
  // The test server answers with the subject of the certificate it accepted.
  assert.equal(run.stdout, "client one\n");
});

Deno.test("client without --cert, or with a certificate the server refuses: one line, exit 2", async () => {
  await using pki = await makeTestPki();
  {
    // openssl s_server, whose alert always goes out before the close (node:tls's did not, under load).
    await using server = await startOpensslServer(pki);
    const run = await runClient([
      "--port",
      String(server.port),
      "--ca",
      pki.ca.certificatePath,
      "a@x.org",
    ]);
    assert.equal(run.code, 2);
    assert.equal(run.stdout, "");
    assert.match(
      run.stderr,
      /^client: The server at 127\.0\.0\.1:\d+ refused the TLS connection \(.*\): it requires a client certificate: give --cert and --key\.\n$/,
    );
  }
  await using server = await startOpensslServer(pki);
  const run = await runClient([
    "--port",
    String(server.port),
    "--ca",
    pki.ca.certificatePath,
    "--cert",
    pki.rogueClient.certificatePath,
    "--key",
    pki.rogueClient.keyPath,
    "a@x.org",
  ]);
  assert.equal(run.code, 2);
  assert.match(
    run.stderr,
    /^client: The server at 127\.0\.0\.1:\d+ refused the TLS connection \(.*UnknownCA.*\): it did not accept the client certificate given by --cert\.\n$/,
  );
  assertNoStackTrace(run.stderr);
});

Deno.test("client --cert or --key with a missing, unreadable or wrong file: one line, exit 2", async () => {
  await using pki = await makeTestPki();
  await using dir = await tempDir("client_cli_test_");
  const notPem = `${dir.path}/notes.txt`;
  await Deno.writeTextFile(notPem, "not a certificate\n");
  const cases: [string[], string][] = [
    [
      ["--cert", `${dir.path}/missing.pem`, "--key", pki.client.keyPath],
      `client: Cannot read the --cert file ${dir.path}/missing.pem: no such file.\n`,
    ],
    [
      ["--cert", pki.client.certificatePath, "--key", dir.path],
      `client: Cannot read the --key file ${dir.path}: it is a directory.\n`,
    ],
    [
      ["--cert", notPem, "--key", pki.client.keyPath],
      `client: The --cert file ${notPem} does not hold a PEM certificate.\n`,
    ],
    [
      ["--cert", pki.client.certificatePath, "--key", pki.client.certificatePath],
      `client: The --key file ${pki.client.certificatePath} does not hold a PEM private key.\n`,
    ],
  ];
  for (const [flags, message] of cases) {
    const run = await runClient(["--port", String(closedPort()), ...flags, "a@x.org"]);
    assert.equal(run.code, 2, flags.join(" "));
    assert.equal(run.stderr, message);
  }
  const alone = await runClient(["--cert", pki.client.certificatePath, "a@x.org"]);
  assert.equal(alone.code, 2);
  assert.equal(
    alone.stderr,
    "client: --cert needs --key: give the certificate's private key. See --help.\n",
  );
});

Deno.test("client TLS mistakes are told in words a user can act on, against real servers", async () => {
  await using pki = await makeTestPki();
  const v1 = await makeVersion1Client(pki);
  const tlsFiles = ["--tls-cert", pki.server.certificatePath, "--tls-key", pki.server.keyPath];
  await using plain = await ServerProcess.start(["--data", "data/addressbook.csv"]);
  await using mutual = await ServerProcess.start([
    ...tlsFiles,
    "--tls-client-ca",
    pki.ca.certificatePath,
    "--io",
    "epoll",
  ]);
  await using nodeTls = await ServerProcess.start([...tlsFiles, "--io", "deno"]);
  const ca = ["--ca", pki.ca.certificatePath];
  const cases: [string, string[], string][] = [
    [
      "an X.509 v1 client certificate",
      ["--port", String(mutual.port), ...ca, "--cert", v1.certificatePath, "--key", v1.keyPath],
      "client: --cert is an X.509 v1 certificate; make it with extensions (see README).\n",
    ],
    [
      "a key that is not the certificate's",
      [
        "--port",
        String(mutual.port),
        ...ca,
        "--cert",
        pki.client.certificatePath,
        "--key",
        pki.rogueClient.keyPath,
      ],
      "client: --cert and --key do not belong together.\n",
    ],
    [
      "--tls against a plain port",
      ["--port", String(plain.port), ...ca],
      `client: TLS handshake with 127.0.0.1:${plain.port} failed: ` +
      "the server does not speak TLS on this port: drop --tls.\n",
    ],
    [
      "a plain client against a TLS port that closes",
      ["--port", String(mutual.port)],
      `client: The server at 127.0.0.1:${mutual.port} closed the connection before replying; ` +
      "the server may require TLS: try --tls.\n",
    ],
    [
      "a plain client against a TLS port that answers with an alert",
      ["--port", String(nodeTls.port)],
      `client: The server at 127.0.0.1:${nodeTls.port} answered with TLS, not the addrbook protocol; ` +
      "the server may require TLS: try --tls.\n",
    ],
  ];
  for (const [what, flags, message] of cases) {
    const run = await runClient([...flags, "ada@example.com"]);
    assert.equal(run.stderr, message, what);
    assert.equal(run.code, 2, what);
    assert.equal(run.stdout, "", what);
  }
});

// --- Failover: --host with several servers ------------------------------------------

/** Entries in the book of the server processes: person{i}@example.com is "Person {i}". */
const BOOK_ENTRIES = 5000;
/** Input lines of a failover batch; every sixth thousand address is missing from the book. */
const BATCH_LINES = 30_000;
/** Lines written to the client before a server is killed. */
const BEFORE_KILL = 6000;

function batchLine(i: number): string {
  return `person${i % 6000}@example.com`;
}

function expectedLine(i: number): string {
  return i % 6000 < BOOK_ENTRIES ? `Person ${i % 6000}` : "";
}

/** Starts `count` server processes on one book, and disposes of them however the body ends. */
async function withServerProcesses(
  count: number,
  body: (servers: ServerProcess[]) => Promise<void>,
): Promise<void> {
  await using dir = await tempDir("client_cli_test_");
  const rows: [string, string][] = Array.from(
    { length: BOOK_ENTRIES },
    (_, i) => [`person${i}@example.com`, `Person ${i}`],
  );
  const book = await writeCsvBook(dir.path, rows);
  const servers = await Promise.all(
    Array.from({ length: count }, () => ServerProcess.start(["--data", book])),
  );
  try {
    await body(servers);
  } finally {
    await Promise.all(servers.map((server) => server[Symbol.asyncDispose]()));
  }
}

/**
 * Runs the client in batch mode with `args`: writes the first
 * {@linkcode BEFORE_KILL} lines, waits until it has answered some, calls
 * `midBatch`, then writes the rest. Resolves with how it ended, within 30 s.
 */
async function runBatchAcross(args: string[], midBatch: () => void): Promise<Run> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...CLIENT_PERMISSIONS, CLIENT, ...args],
    cwd: HERE,
    env: { NO_COLOR: "1" },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  let stdout = "";
  let lines = 0;
  let someAnswered!: () => void;
  const answered = new Promise<void>((resolve) => someAnswered = resolve);
  const reading = (async () => {
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      stdout += chunk;
      lines += chunk.split("\n").length - 1;
      if (lines >= BEFORE_KILL / 2) someAnswered();
    }
  })();
  const input = (from: number, to: number) =>
    encoder.encode(
      Array.from({ length: to - from }, (_, n) => batchLine(from + n) + "\n").join(""),
    );
  const writer = child.stdin.getWriter();
  try {
    await writer.write(input(0, BEFORE_KILL));
    await withDeadline(answered, "the client to answer the first lines", 30_000);
    midBatch();
    // Written after the kill, these lines can only be answered by what is left.
    await writer.write(input(BEFORE_KILL, BATCH_LINES)).catch(() => {});
    await writer.close().catch(() => {});
    const { code } = await withDeadline(child.status, "the client to exit", 30_000);
    await reading;
    return { code, stdout, stderr: await stderr };
  } finally {
    try {
      child.kill("SIGKILL");
    } catch {
      // It has exited.
    }
    await child.status;
  }
}

Deno.test("client --host a,b answers every line in order when a is SIGKILLed mid-batch", async () => {
  await withServerProcesses(2, async (servers) => {
    const hosts = servers.map((server) => `${server.hostname}:${server.port}`).join(",");
    const run = await runBatchAcross(["--host", hosts], () => servers[0].signal("SIGKILL"));
    const lines = run.stdout.split("\n");
    assert.equal(lines.length, BATCH_LINES + 1, run.stderr);
    for (let i = 0; i < BATCH_LINES; i++) assert.equal(lines[i], expectedLine(i), `line ${i + 1}`);
    const misses = Array.from({ length: BATCH_LINES }, (_, i) => expectedLine(i))
      .filter((name) => name === "").length;
    assert.equal(run.code, 1);
    assert.equal(run.stderr, `client: ${misses} of ${BATCH_LINES} not found.\n`);
  });
});

/** Checks a batch that gave up: a correct prefix on stdout, and the message that says where to resume. */
function assertGaveUp(run: Run, message: RegExp): void {
  assert.equal(run.code, 2, run.stderr);
  const match = /; (\d+) queries answered, resume from input line (\d+)\.\n$/.exec(run.stderr);
  assert.ok(match, `the resume message: ${run.stderr}`);
  assert.match(run.stderr, message);
  assert.equal(run.stderr.split("\n").length, 2, "one line on stderr");
  const answered = Number(match[1]);
  assert.equal(
    Number(match[2]),
    answered + 1,
    "no blank lines, so the next line is the first unanswered",
  );
  assert.ok(answered >= BEFORE_KILL / 2 && answered < BATCH_LINES, `${answered} answered`);
  const lines = run.stdout.split("\n");
  assert.equal(lines.length, answered + 1, "one output line per answered query");
  for (let i = 0; i < answered; i++) assert.equal(lines[i], expectedLine(i), `line ${i + 1}`);
}

Deno.test("client --host a,b with both SIGKILLed mid-batch exits 2 within 30 s, saying where to resume", async () => {
  await withServerProcesses(2, async (servers) => {
    const hosts = servers.map((server) => `${server.hostname}:${server.port}`).join(",");
    const run = await runBatchAcross(["--host", hosts], () => {
      for (const server of servers) server.signal("SIGKILL");
    });
    assertGaveUp(
      run,
      new RegExp(
        `^client: No server answered in 3 rounds over ${
          hosts.replace(",", ", ").replaceAll(".", "\\.")
        }; ` +
          `the last error: Cannot connect to 127\\.0\\.0\\.1:\\d+ \\(connection refused\\): check that the server is running; `,
      ),
    );
  });
});

Deno.test("client with its one server SIGKILLed mid-batch exits 2, saying where to resume", async () => {
  await withServerProcesses(1, async ([server]) => {
    const run = await runBatchAcross(
      ["--host", server.hostname, "--port", String(server.port)],
      () => server.signal("SIGKILL"),
    );
    assertGaveUp(
      run,
      /^client: Cannot connect to 127\.0\.0\.1:\d+ \(connection refused\): check that the server is running; /,
    );
  });
});
