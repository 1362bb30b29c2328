/**
 * Tests of the client's command line: parseClientArgs, and client.ts run as
 * a subprocess against in-process servers, scripted servers (for FORBIDDEN
 * and RATE_LIMITED), TLS servers that require a client certificate, and
 * real server processes, two of them for failover.
 */

import assert from "node:assert/strict";
import { AddressBookBuilder } from "./addressbook.ts";
import { UsageError } from "./cli_args.ts";
import { DEFAULT_TIMEOUT_MS } from "./client_connection.ts";
import { parseClientArgs } from "./client_cli.ts";
import { DEFAULT_HOSTNAME, DEFAULT_PORT } from "./client_failover.ts";
import { Logger } from "./log.ts";
import { STATUS_FORBIDDEN, STATUS_FOUND, STATUS_RATE_LIMITED } from "./protocol.ts";
import { type ServerHandle, type ServerOptions, startServer } from "./server.ts";
import {
  assertNoStackTrace,
  CertificateServer,
  makeClientPki,
  ScriptedServer,
  ServerProcess,
  startOpensslServer,
  tempDir,
} from "./test_util.ts";

const HERE = import.meta.dirname!;
const CLIENT = `${HERE}/client.ts`;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Entries of the generated part of the test book: person{i}@example.com is "Person {i}". */
const PEOPLE = 1000;

function testBook() {
  const builder = new AddressBookBuilder();
  builder.add("ada@example.com", "Ada Lovelace");
  builder.add("grace@example.com", "Grace Hopper");
  builder.add("jürgen@beispiel.example", "Jürgen Möller");
  for (let i = 0; i < PEOPLE; i++) builder.add(`person${i}@example.com`, `Person ${i}`);
  return builder.build();
}

/** Runs `body` against an in-process server on a free port, with its log kept quiet. */
async function withServer(
  body: (port: number, server: ServerHandle) => Promise<void>,
  options: Partial<ServerOptions> = {},
): Promise<void> {
  const server = await startServer({
    book: testBook(),
    port: 0,
    hostname: "127.0.0.1",
    log: new Logger({ write: () => {} }),
    ...options,
  });
  try {
    await body(server.addr.port, server);
  } finally {
    await server.close();
  }
}

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
    emails: [],
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

Deno.test("client with an unknown flag or a bad value prints the problem and the usage, exit 2", async () => {
  const bogus = await runClient(["--bogus"]);
  assert.equal(bogus.code, 2);
  assert.match(bogus.stderr, /^client: .*--bogus/);
  assert.match(bogus.stderr, /Usage: deno task client/);
  assert.equal(bogus.stdout, "");
  const port = await runClient(["--port", "99999", "ada@example.com"]);
  assert.equal(port.code, 2);
  assert.match(port.stderr, /^client: --port must be a whole number from 1 to 65535, not "99999"/);
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
  await withServer(async (port) => {
    const run = await runClient(["--host", "127.0.0.1", "--port", String(port), "Ada@Example.com"]);
    assert.equal(run.code, 0);
    assert.equal(run.stdout, "Ada Lovelace\n");
    assert.equal(run.stderr, "");
  });
});

Deno.test("client EMAIL... exits 1 when one is not found, saying which on stderr", async () => {
  await withServer(async (port) => {
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
  await withServer(async (port) => {
    const run = await runClient(["--port", String(port), "--host", "127.0.0.1", "not-an-email"]);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /^client: Bad request for "not-an-email": .*no @/);
  });
});

Deno.test("client with ADDRBOOK_HOST and ADDRBOOK_PORT set connects there", async () => {
  await withServer(async (port) => {
    const run = await runClient(["ada@example.com"], {
      env: { ADDRBOOK_HOST: "127.0.0.1", ADDRBOOK_PORT: String(port) },
    });
    assert.equal(run.code, 0);
    assert.equal(run.stdout, "Ada Lovelace\n");
  });
});

Deno.test("client batch mode prints one line per address in order, skipping blank lines", async () => {
  await withServer(async (port) => {
    const input =
      "ada@example.com\n\n  GRACE@example.com  \r\nnobody@example.com\n\nperson7@example.com";
    const run = await runClient(["--host", "127.0.0.1", "--port", String(port)], { stdin: input });
    assert.equal(run.code, 1);
    assert.equal(run.stdout, "Ada Lovelace\nGrace Hopper\n\nPerson 7\n");
    assert.equal(run.stderr, "client: 1 of 4 not found.\n");
  });
});

Deno.test("client batch mode reports a bad line by number on stderr, prints an empty line, exits 2", async () => {
  await withServer(async (port) => {
    const input = "ada@example.com\nnot an email\ngrace@example.com\n";
    const run = await runClient(["--host", "127.0.0.1", "--port", String(port)], { stdin: input });
    assert.equal(run.code, 2);
    assert.equal(run.stdout, "Ada Lovelace\n\nGrace Hopper\n");
    assert.match(run.stderr, /^client: Line 2: The query is not an email address/);
    assert.match(run.stderr, /client: 1 of 3 was a bad request\.\n$/);
  });
});

Deno.test("client batch mode answers thousands of lines in input order", async () => {
  await withServer(async (port) => {
    const lines: string[] = [];
    const expected: string[] = [];
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < PEOPLE; i++) {
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
  await withServer(async (port) => {
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
  await using pki = await makeClientPki();
  await withServer(async (port) => {
    const trusted = await runClient([
      "--port",
      String(port),
      "--ca",
      pki.caPath,
      "ada@example.com",
    ]);
    assert.equal(trusted.code, 0, trusted.stderr);
    assert.equal(trusted.stdout, "Ada Lovelace\n");
    const untrusted = await runClient(["--port", String(port), "--tls", "ada@example.com"]);
    assert.equal(untrusted.code, 2);
    assert.match(untrusted.stderr, /^client: TLS handshake with 127\.0\.0\.1:\d+ failed: .*\.\n$/);
  }, { tls: { cert: pki.server.cert, key: pki.server.key } });
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

Deno.test("client batch mode stops at the first RATE_LIMITED, saying where to resume, exit 2", async () => {
  await using server = new ScriptedServer({
    answer: (email, index) =>
      index < 3
        ? { status: STATUS_FOUND, text: `Name of ${email}` }
        : { status: STATUS_RATE_LIMITED, text: RATE_LIMITED_TEXT },
  });
  const input = "a@example.com\n\nb@example.com\nc@example.com\nd@example.com\ne@example.com\n";
  const run = await runClient(["--port", String(server.port)], { stdin: input });
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
  const run = await runClient(["--json", "--port", String(server.port)], {
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
  await using pki = await makeClientPki();
  await using server = await CertificateServer.start(pki);
  const run = await runClient([
    "--port",
    String(server.port),
    "--ca",
    pki.caPath,
    "--cert",
    pki.client.certPath,
    "--key",
    pki.client.keyPath,
    "ada@example.com",
  ]);
  assert.equal(run.code, 0, run.stderr);
  // The test server answers with the subject of the certificate it accepted.
  assert.equal(run.stdout, "client one\n");
});

Deno.test("client without --cert, or with a certificate the server refuses: one line, exit 2", async () => {
  await using pki = await makeClientPki();
  {
    await using server = await CertificateServer.start(pki);
    const run = await runClient(["--port", String(server.port), "--ca", pki.caPath, "a@x.org"]);
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
    pki.caPath,
    "--cert",
    pki.rogue.certPath,
    "--key",
    pki.rogue.keyPath,
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
  await using pki = await makeClientPki();
  await using dir = await tempDir("client_cli_test_");
  const notPem = `${dir.path}/notes.txt`;
  await Deno.writeTextFile(notPem, "not a certificate\n");
  const cases: [string[], string][] = [
    [
      ["--cert", `${dir.path}/missing.pem`, "--key", pki.client.keyPath],
      `client: Cannot read the --cert file ${dir.path}/missing.pem: no such file.\n`,
    ],
    [
      ["--cert", pki.client.certPath, "--key", dir.path],
      `client: Cannot read the --key file ${dir.path}: it is a directory.\n`,
    ],
    [
      ["--cert", notPem, "--key", pki.client.keyPath],
      `client: The --cert file ${notPem} does not hold a PEM certificate.\n`,
    ],
    [
      ["--cert", pki.client.certPath, "--key", pki.client.certPath],
      `client: The --key file ${pki.client.certPath} does not hold a PEM private key.\n`,
    ],
  ];
  for (const [flags, message] of cases) {
    const run = await runClient(["--port", String(closedPort()), ...flags, "a@x.org"]);
    assert.equal(run.code, 2, flags.join(" "));
    assert.equal(run.stderr, message);
  }
  const alone = await runClient(["--cert", pki.client.certPath, "a@x.org"]);
  assert.equal(alone.code, 2);
  assert.match(alone.stderr, /^client: --cert needs --key: give the certificate's private key\.\n/);
  assert.match(alone.stderr, /Usage: deno task client/);
});
