/**
 * Tests of the server as a real process: its command line, its exit codes,
 * what it logs, and how it answers signals (SIGHUP reload, SIGTERM/SIGINT
 * graceful shutdown). Each test spawns `server.ts` with `Deno.execPath()`
 * and speaks the protocol to it over real sockets.
 *
 * The in-process behaviour of the server is tested in tests/server_test.ts.
 */

import assert from "node:assert/strict";
import {
  encodeQuery,
  type Reply,
  STATUS_BAD_REQUEST,
  STATUS_FOUND,
  STATUS_NOT_FOUND,
  STATUS_PROTOCOL_ERROR,
  STATUS_SERVER_BUSY,
  TYPE_QUERY,
} from "../protocol.ts";
import { writeCsvBook } from "../testing/books.ts";
import { swapConfigMap, tempDir as makeTempDir } from "../testing/files.ts";
import { concat, header } from "../testing/frames.ts";
import { IO_LOOPS } from "../testing/io_loops.ts";
import { metricValue } from "../testing/metrics.ts";
import {
  assertNoStackTrace,
  LISTENING,
  runServerToExit as runToExit,
  ServerProcess,
} from "../testing/processes.ts";
import { type WireClient } from "../testing/wire_client.ts";
import { type CliOptions, DEFAULT_WATCH_SETTLE_SECONDS, parseServerArgs } from "./cli.ts";
import { StartError } from "./error.ts";
import { csvField, generateEntries } from "../tools/gen.ts";

// ---------------------------------------------------------------------------
// Helpers

const EXIT_OK = 0;
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;
/** How soon after the first signal a repeat counts as a copy of it (server.ts). */
const REPEATED_SIGNAL_MS = 250;
/** The server leaves with this when a second signal cuts a shutdown short (`Deno.exit(1)`). */
const EXIT_SECOND_SIGNAL = 1;
/** Enough fresh connections that SO_REUSEPORT all but surely spreads them over two threads. */
const FRESH_CONNECTIONS = 20;
const PIPELINED_QUERIES = 2000;
/** Queries a streaming client pipelines: megabytes, more than the socket buffers hold. */
const STREAMED_QUERIES = 300_000;
const STREAMING_CLIENTS = 4;
/** Connections made while the server is stopped, so they wait in its listen backlog. */
const BACKLOG_CLIENTS = 100;

const BOOK: readonly (readonly [string, string])[] = [
  ["ada@example.com", "Ada Lovelace"],
  ["grace@example.org", "Grace Hopper"],
  ["alan@example.com", "Alan Turing"],
];

/** A temp dir removed on disposal. */
function tempDir(): Promise<AsyncDisposable & { path: string }> {
  return makeTempDir("addrbook_server_cli_test_");
}

/** Writes a CSV book of `rows` (header included) and returns its path. */
function writeBook(
  dir: string,
  rows: readonly (readonly [string, string])[] = BOOK,
  name = "book.csv",
): Promise<string> {
  return writeCsvBook(dir, rows, name);
}

/** Writes {@linkcode BOOK} in `dir` and starts a server on it with `args` besides `--data`. */
async function startOnBook(dir: string, args: string[]): Promise<ServerProcess> {
  return await ServerProcess.start(["--data", await writeBook(dir), ...args]);
}

function repeat(bytes: Uint8Array, times: number): Uint8Array {
  const all = new Uint8Array(bytes.length * times);
  for (let i = 0; i < times; i++) all.set(bytes, i * bytes.length);
  return all;
}

/** A frame header announcing a payload it never sends, so the server waits mid-frame. */
function unfinishedQuery(): Uint8Array {
  return concat([header(TYPE_QUERY, 40), Uint8Array.of(0x61, 0x64, 0x61)]);
}

/**
 * Connects and leaves a query unfinished. The partial frame rides in the same
 * write as a whole query, so the reply to that query shows the server has
 * read the partial frame too and counts the connection as mid-frame.
 */
async function holdMidFrame(server: ServerProcess): Promise<WireClient> {
  const client = await server.connect();
  await client.write(concat([encodeQuery(BOOK[0][0]), unfinishedQuery()]));
  assert.deepEqual(await client.readReply(), { status: STATUS_FOUND, text: BOOK[0][1] });
  return client;
}

/** Asks `email` on `count` fresh connections and returns the answers. */
async function askFresh(server: ServerProcess, email: string, count: number): Promise<Reply[]> {
  const replies: Reply[] = [];
  for (let i = 0; i < count; i++) {
    using client = await server.connect();
    replies.push(await client.query(email));
  }
  return replies;
}

/**
 * Registers the test once per event loop; `fn` gets the `--io` flag and
 * value to pass. Loops in `ignore` register the test as ignored (a known bug).
 */
function testEachIo(
  name: string,
  fn: (io: string[]) => Promise<void>,
  ignore: readonly string[] = [],
): void {
  for (const loop of IO_LOOPS) {
    Deno.test({
      name: `${name} [--io ${loop}]`,
      ignore: ignore.includes(loop),
      fn: () => fn(["--io", loop]),
    });
  }
}

/** stderr's non-blank lines. */
function linesOf(stderr: string): string[] {
  return stderr.split("\n").filter((line) => line.trim() !== "");
}

// ---------------------------------------------------------------------------
// Command line

Deno.test("server --help prints the usage on stdout and exits 0", async () => {
  for (const flag of ["--help", "-h"]) {
    const { code, stdout, stderr } = await runToExit([flag]);
    assert.equal(code, EXIT_OK, stderr);
    assert.match(stdout, /^Usage: /);
    assert.match(stdout, /--port PORT/);
    assert.doesNotMatch(stderr, /Usage:/);
  }
});

Deno.test("server exits 2 with one line and see --help on stderr for a bad command line", async () => {
  const cases: [string[], RegExp][] = [
    [["--bogus"], /--bogus/],
    [["--port", "70000"], /--port must be a whole number from 0 to 65535, not "70000"/],
    [["--port", "http"], /--port must be a whole number .* not "http"/],
    [
      ["--port", "-1"],
      /server: --port must be a whole number from 0 to 65535, not "-1"\. See --help\./,
    ],
    [["--port=-1"], /--port must be a whole number from 0 to 65535, not "-1"\./],
    [
      ["--data", ""],
      /server: --data must name a book file, not "" \(the path is empty\)\. See --help\./,
    ],
    [
      ["--host", "127.0.0.1:80"],
      /server: --host takes an address without a port, not "127\.0\.0\.1:80": give the port with --port 80\. See --help\./,
    ],
    [["--host", "[::1]:8080"], /--host takes an address without a port, not "\[::1\]:8080"/],
    [
      ["--frame-timeout", "0.0004"],
      /server: --frame-timeout must be a number of seconds from 0 to 2147483 with at most 3 decimals, not "0\.0004"\. See --help\./,
    ],
    [
      ["--shutdown-timeout", "3000000"],
      /server: --shutdown-timeout must be a number of seconds from 0 to 2147483 with at most 3 decimals, not "3000000"\. See --help\./,
    ],
    [["--idle-timeout", "-5"], /--idle-timeout must be a number of seconds from 0 to 2147483/],
    [["--watch-settle", "1.0001"], /--watch-settle must be a number of seconds from 0 to 2147483/],
    [["--port"], /--port/],
    [["--tls-cert", "cert.pem"], /--tls-cert and --tls-key go together/],
    [["--tls-key", "key.pem"], /--tls-cert and --tls-key go together/],
    [["--workers", "0"], /--workers must be a whole number/],
    [["--shutdown-timeout", "soon"], /--shutdown-timeout must be a number of seconds/],
    [["--log-format", "xml"], /--log-format must be one of text, json, not "xml"/],
    [["--io", "kqueue"], /--io must be one of auto, epoll, deno, not "kqueue"/],
    [["stray-positional"], /stray-positional/],
  ];
  for (const [args, message] of cases) {
    const { code, stdout, stderr } = await runToExit(args);
    const label = `server ${args.join(" ")}`;
    assert.equal(code, EXIT_USAGE, `${label}: exit code; stderr:\n${stderr}`);
    assert.equal(stdout, "", `${label}: stdout`);
    assert.match(stderr, message, label);
    assert.match(stderr, /^server: [-A-Z][^\n]*[.?] See --help\.\n?$/, `${label}: one line`);
    assertNoStackTrace(stderr);
    assert.doesNotMatch(stderr, LISTENING, label);
  }
});

/** Parses a command line that must be accepted. */
function parseOk(args: string[]): CliOptions {
  const options = parseServerArgs(args);
  assert.ok(options !== "help");
  return options;
}

/** Asserts that a command line is refused as bad usage, with a message matching `pattern`. */
function assertRefused(args: string[], pattern: RegExp): void {
  assert.throws(() => parseServerArgs(args), (error: unknown) => {
    assert.ok(error instanceof StartError, `${args.join(" ")}: a StartError`);
    assert.equal(error.exitCode, EXIT_USAGE);
    assert.match(error.message, pattern);
    assert.match(error.message, /^[A-Z-].*[.?]$/, "one sentence");
    return true;
  });
}

const TIMEOUT_FLAGS: readonly [string, (options: CliOptions) => number][] = [
  ["--idle-timeout", (options) => options.limits.idleTimeoutMs],
  ["--frame-timeout", (options) => options.limits.frameTimeoutMs],
  ["--write-timeout", (options) => options.limits.writeTimeoutMs],
  ["--shutdown-timeout", (options) => options.shutdownTimeoutMs],
  ["--watch-settle", (options) => options.watchSettleMs],
];

for (const [flag, chosen] of TIMEOUT_FLAGS) {
  Deno.test(`parseServerArgs keeps every accepted ${flag} exactly and refuses the rest with the range`, () => {
    const accepted: [string, number][] = [
      ["0", 0],
      ["0.001", 1],
      ["2.5", 2500],
      ["10", 10_000],
      ["2147483", 2_147_483_000],
    ];
    for (const [value, ms] of accepted) {
      assert.equal(chosen(parseOk([flag, value])), ms, `${flag} ${value}`);
      assert.equal(chosen(parseOk([`${flag}=${value}`])), ms, `${flag}=${value}`);
    }
    for (const value of ["0.0004", "1.0005", "3000000", "2147484", "-1", "1e3", "soon", ""]) {
      assertRefused(
        [flag, value],
        new RegExp(
          `^${flag} must be a number of seconds from 0 to 2147483 with at most 3 decimals, not "${
            value.replace(".", "\\.")
          }"\\.$`,
        ),
      );
    }
  });
}

Deno.test("parseServerArgs takes the timeouts' and the watch's defaults", () => {
  const options = parseOk([]);
  assert.equal(options.limits.idleTimeoutMs, 300_000);
  assert.equal(options.limits.frameTimeoutMs, 10_000);
  assert.equal(options.shutdownTimeoutMs, 5000);
  assert.equal(options.watch, false);
  assert.equal(options.watchSettleMs, DEFAULT_WATCH_SETTLE_SECONDS * 1000);
});

Deno.test("parseServerArgs says what is wrong with a negative port, an empty path or a host with a port", () => {
  assertRefused(["--port", "-1"], /^--port must be a whole number from 0 to 65535, not "-1"\.$/);
  assertRefused(
    ["--metrics-port", "-80"],
    /^--metrics-port must be a whole number .* not "-80"\.$/,
  );
  assertRefused(["--data", ""], /^--data must name a book file, not "" \(the path is empty\)\.$/);
  assertRefused(["--host", ""], /^--host must be an address or a host name, not ""\.$/);
  for (
    const [host, port] of [["127.0.0.1:80", "80"], ["localhost:8080", "8080"], ["[::1]:1", "1"]]
  ) {
    assertRefused(
      ["--host", host],
      new RegExp(
        `^--host takes an address without a port, not ".*": give the port with --port ${port}\\.$`,
      ),
    );
  }
  for (const host of ["::1", "0.0.0.0", "::", "fe80::1", "localhost"]) {
    assert.equal(parseOk(["--host", host]).hostname, host);
  }
  // A value that starts with a dash is still the flag's value, not another flag.
  assert.equal(parseOk(["--email-column", "-mail-"]).emailColumn, "-mail-");
  assertRefused(["--port"], /^--port needs a value\.$/);
});

Deno.test("parseServerArgs names a mistyped flag and the flag it was probably meant to be", () => {
  assertRefused(["--prot", "8080"], /^Unknown option --prot: did you mean --port\?$/);
  assertRefused(["--verbose"], /^Unknown option --verbose\.$/);
  assertRefused(["--data-file", "x.csv"], /^Unknown option --data-file: did you mean --data\?$/);
  assertRefused(
    ["--max-connection", "5"],
    /^Unknown option --max-connection: did you mean --max-connections or --max-connections-per-client\?$/,
  );
  assertRefused(["--watch=yes"], /^--watch takes no value, not "yes"\.$/);
  assertRefused(
    ["--host", "--port", "1"],
    /^--host needs a value, not the option "--port" \(write --host=--port to mean it\)\.$/,
  );
  assertRefused(["stray"], /^Unexpected argument "stray": only options are taken\.$/);
});

// ---------------------------------------------------------------------------
// Books at start

Deno.test("server without --data serves the built-in data/addressbook.csv", async () => {
  await using server = await ServerProcess.start([]);
  const loaded = /loaded (\d+) entries from data\/addressbook\.csv/.exec(server.startLine);
  assert.ok(loaded, `the start line names the book and its size: ${server.startLine}`);
  assert.ok(Number(loaded[1]) > 0);
  assert.match(server.startLine, /listening on 127\.0\.0\.1:\d+/);
  using client = await server.connect();
  assert.deepEqual(await client.query("ada@example.com"), {
    status: STATUS_FOUND,
    text: "Ada Lovelace",
  });
});

Deno.test("server with --data prints the entry count, the file and the address it listens on", async () => {
  await using dir = await tempDir();
  const book = await writeBook(dir.path);
  await using server = await ServerProcess.start(["--data", book]);
  assert.match(server.startLine, new RegExp(`loaded ${BOOK.length} entries from ${book}`));
  assert.equal(server.hostname, "127.0.0.1");
  assert.ok(server.port > 0);
  using client = await server.connect();
  assert.deepEqual(await client.query("Grace@Example.org "), {
    status: STATUS_FOUND,
    text: "Grace Hopper",
  });
  assert.equal((await client.query("nobody@example.com")).status, STATUS_NOT_FOUND);
});

Deno.test("server exits 1 with one message naming the file when the book is unusable", async () => {
  await using dir = await tempDir();
  const badEmail = await writeBook(dir.path, [BOOK[0], ["not-an-email", "Bob"]], "bad_email.csv");
  const duplicate = await writeBook(
    dir.path,
    [BOOK[0], BOOK[1], ["ADA@example.com", "Ada Again"]],
    "duplicate.csv",
  );
  const cases: [string, RegExp][] = [
    [`${dir.path}/missing.csv`, /missing\.csv: Cannot read the file: no such file\./],
    [dir.path, /Cannot read the file: it is a directory\./],
    [badEmail, /bad_email\.csv:3: The email is not valid/],
    [duplicate, /duplicate\.csv:4: The email is a duplicate of line 2\./],
  ];
  for (const [path, message] of cases) {
    const { code, stderr } = await runToExit(["--data", path]);
    assert.equal(code, EXIT_FAILURE, `--data ${path}: exit code; stderr:\n${stderr}`);
    const lines = linesOf(stderr);
    assert.equal(lines.length, 1, `one message for --data ${path}, got:\n${stderr}`);
    assert.ok(lines[0].includes(path), `the message names ${path}: ${lines[0]}`);
    assert.match(lines[0], message);
    assert.doesNotMatch(stderr, LISTENING, "nothing listens");
    assertNoStackTrace(stderr);
  }
});

Deno.test("server refuses a book with only its header row at start, unless --allow-empty", async () => {
  await using dir = await tempDir();
  const empty = await writeBook(dir.path, [], "empty.csv");
  const { code, stderr } = await runToExit(["--data", empty]);
  assert.equal(code, EXIT_FAILURE, `exit code; stderr:\n${stderr}`);
  const lines = linesOf(stderr);
  assert.equal(lines.length, 1, `one message, got:\n${stderr}`);
  assert.ok(lines[0].includes(empty), `names the file: ${lines[0]}`);
  assert.match(lines[0], /no entries.*--allow-empty/);
  assert.doesNotMatch(stderr, LISTENING, "nothing listens");

  await using server = await ServerProcess.start(["--data", empty, "--allow-empty"]);
  assert.match(server.startLine, /loaded 0 entries from/);
  assert.equal((await askOnce(server, BOOK[0][0])).status, STATUS_NOT_FOUND);
});

testEachIo(
  "server keeps the old book when a reload finds only a header row, unless --allow-empty",
  async (io) => {
    await using dir = await tempDir();
    const book = await writeBook(dir.path);
    await using server = await ServerProcess.start(["--data", book, ...io]);
    await writeBook(dir.path, []);
    let mark = server.stderr.lines.length;
    server.signal("SIGHUP");
    const failed = await server.stderr.waitFor(/reload failed/, mark);
    assert.ok(failed.line.includes(book), `names the file: ${failed.line}`);
    assert.match(failed.line, /no entries/);
    assert.deepEqual(await askOnce(server, BOOK[0][0]), { status: STATUS_FOUND, text: BOOK[0][1] });

    await writeBook(dir.path);
    await using allowing = await ServerProcess.start(["--data", book, "--allow-empty", ...io]);
    assert.equal((await askOnce(allowing, BOOK[0][0])).status, STATUS_FOUND);
    await writeBook(dir.path, []);
    mark = allowing.stderr.lines.length;
    allowing.signal("SIGHUP");
    const done = await allowing.stderr.waitFor(/reload done/, mark);
    assert.match(done.line, /entries=0/);
    assert.equal((await askOnce(allowing, BOOK[0][0])).status, STATUS_NOT_FOUND);
  },
);

Deno.test("server answers /metrics and SIGTERM while a large book reloads", async () => {
  await using dir = await tempDir();
  const book = `${dir.path}/large.csv`;
  const rows = ["email,name"];
  for (const { email, name } of generateEntries(1_000_000, 7)) {
    rows.push(`${csvField(email)},${csvField(name)}`);
  }
  await Deno.writeTextFile(book, rows.join("\n") + "\n");
  await using server = await ServerProcess.start(["--data", book, "--metrics-port", "0"]);
  const metricsPort = /metrics=\S+:(\d+)/.exec(server.startLine)?.[1];
  assert.ok(metricsPort, server.startLine);

  const mark = server.stderr.lines.length;
  server.signal("SIGHUP");
  await server.stderr.waitFor(/reload started/, mark);
  // Answered while the reload runs: a main thread busy loading would answer only after it.
  const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  assert.equal(metricValue(metrics, "addrbook_reloads_total", '{result="ok"}'), 0);
  server.signal("SIGTERM");
  const stopping = await server.stderr.waitFor(/shutting down/, mark);
  const done = server.stderr.lines.slice(mark).findIndex((line) => /reload done/.test(line));
  assert.ok(done < 0 || mark + done > stopping.index, "SIGTERM is handled during the reload");
});

// ---------------------------------------------------------------------------
// Ports

for (const [firstWorkers, secondWorkers] of [[1, 1], [2, 2], [1, 2], [2, 1]]) {
  testEachIo(
    `server (--workers ${secondWorkers}) exits 1 when a server (--workers ${firstWorkers}) holds its port`,
    async (io) => {
      await using dir = await tempDir();
      const book = await writeBook(dir.path);
      await using first = await ServerProcess.start([
        "--data",
        book,
        "--workers",
        String(firstWorkers),
        ...io,
      ]);
      const { code, stderr } = await runToExit([
        "--data",
        book,
        "--port",
        String(first.port),
        "--workers",
        String(secondWorkers),
        ...io,
      ]);
      assert.equal(code, EXIT_FAILURE, `exit code; stderr:\n${stderr}`);
      assert.match(
        stderr,
        new RegExp(`Cannot listen on 127\\.0\\.0\\.1:${first.port}: the port is already in use`),
      );
      assert.doesNotMatch(stderr, LISTENING);
      assertNoStackTrace(stderr);
      // The first server still answers every connection: none went to the second.
      const replies = await askFresh(first, BOOK[0][0], FRESH_CONNECTIONS);
      assert.ok(replies.every((reply) => reply.text === BOOK[0][1]));
    },
  );
}

testEachIo("server exits 1 when its metrics port is in use", async (io) => {
  await using dir = await tempDir();
  const book = await writeBook(dir.path);
  await using first = await ServerProcess.start(["--data", book, "--metrics-port", "0", ...io]);
  const metricsPort = /metrics=\S+:(\d+)/.exec(first.startLine)?.[1];
  assert.ok(metricsPort, first.startLine);
  const { code, stderr } = await runToExit([
    "--data",
    book,
    "--metrics-port",
    metricsPort,
    "--workers",
    "2",
    ...io,
  ]);
  assert.equal(code, EXIT_FAILURE, `exit code; stderr:\n${stderr}`);
  assert.match(
    stderr,
    new RegExp(
      `Cannot serve metrics on 127\\.0\\.0\\.1:${metricsPort}: the port is already in use`,
    ),
  );
  assert.doesNotMatch(stderr, LISTENING);
  assertNoStackTrace(stderr);
});

testEachIo("server exits 1 when --host is not an address of this machine", async (io) => {
  await using dir = await tempDir();
  const book = await writeBook(dir.path);
  // 192.0.2.0/24 is reserved for documentation, so no machine has it.
  const { code, stderr } = await runToExit(["--data", book, "--host", "192.0.2.1", ...io]);
  assert.equal(code, EXIT_FAILURE, `exit code; stderr:\n${stderr}`);
  assert.match(stderr, /Cannot listen on 192\.0\.2\.1:0: no such address on this machine/);
  assertNoStackTrace(stderr);
});

/** Rows in the large book: enough that loading it takes a while and logs what it dropped. */
const LARGE_BOOK_ROWS = 300_000;

/**
 * Writes a large book in `dir` whose load would leave a trace in the log: one
 * email comes twice, so under `--duplicates first` a load logs "duplicate
 * emails dropped"; with `broken`, a bad last row makes the load fail instead.
 */
async function writeLargeBook(dir: string, broken: boolean): Promise<string> {
  const rows: [string, string][] = Array.from(
    { length: LARGE_BOOK_ROWS },
    (_, i) => [`person${i}@example.com`, `Person ${i}`],
  );
  rows.push(["person0@example.com", "Person Zero Again"]);
  if (broken) rows.push(["not-an-email", "Nobody"]);
  return await writeBook(dir, rows, broken ? "large_broken.csv" : "large.csv");
}

Deno.test("server checks its port, metrics port and TLS files before it loads the book", async () => {
  await using dir = await tempDir();
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const busy = String((taken.addr as Deno.NetAddr).port);
    const cases: [string[], RegExp][] = [
      [
        ["--port", busy],
        new RegExp(`Cannot listen on 127\\.0\\.0\\.1:${busy}: the port is already in use\\.`),
      ],
      [
        ["--metrics-port", busy],
        new RegExp(
          `Cannot serve metrics on 127\\.0\\.0\\.1:${busy}: the port is already in use\\.`,
        ),
      ],
      [
        ["--tls-cert", `${dir.path}/missing.crt`, "--tls-key", `${dir.path}/missing.key`],
        new RegExp(
          ` error Cannot read the --tls-cert file ${dir.path}/missing\\.crt: no such file\\.$`,
        ),
      ],
    ];
    for (const broken of [false, true]) {
      const book = await writeLargeBook(dir.path, broken);
      for (const [args, message] of cases) {
        const label = `${broken ? "broken" : "valid"} book, ${args.join(" ")}`;
        const { code, stderr } = await runToExit([
          "--data",
          book,
          "--duplicates",
          "first",
          ...args,
        ]);
        assert.equal(code, EXIT_FAILURE, `${label}: exit code; stderr:\n${stderr}`);
        // The one line is the address's or the files' error: no trace of a load, done or failed.
        const lines = linesOf(stderr);
        assert.equal(lines.length, 1, `${label}: one line, got:\n${stderr}`);
        assert.match(lines[0], message, label);
        assert.doesNotMatch(stderr, /loaded|duplicate|not-an-email|large/, label);
        assertNoStackTrace(stderr);
      }
    }
  } finally {
    taken.close();
  }
});

// ---------------------------------------------------------------------------
// Reload

testEachIo(
  "server --workers 2 serves from both threads and SIGHUP reloads the book in both",
  async (io) => {
    await using dir = await tempDir();
    const book = await writeBook(dir.path);
    await using server = await ServerProcess.start(["--data", book, "--workers", "2", ...io]);
    assert.match(server.startLine, /workers=2/);
    for (const reply of await askFresh(server, BOOK[0][0], FRESH_CONNECTIONS)) {
      assert.deepEqual(reply, { status: STATUS_FOUND, text: "Ada Lovelace" });
    }

    await writeBook(dir.path, [[BOOK[0][0], "Ada King"], BOOK[1], ["new@example.com", "New One"]]);
    const before = server.stderr.lines.length;
    server.signal("SIGHUP");
    const { line } = await server.stderr.waitFor(/reload done/, before);
    assert.match(line, /entries=3/);

    for (const reply of await askFresh(server, BOOK[0][0], FRESH_CONNECTIONS)) {
      assert.deepEqual(reply, { status: STATUS_FOUND, text: "Ada King" });
    }
    for (const reply of await askFresh(server, BOOK[2][0], FRESH_CONNECTIONS)) {
      assert.equal(reply.status, STATUS_NOT_FOUND);
    }
    for (const reply of await askFresh(server, "new@example.com", FRESH_CONNECTIONS)) {
      assert.deepEqual(reply, { status: STATUS_FOUND, text: "New One" });
    }
  },
);

testEachIo(
  "server keeps the old book when a SIGHUP reload fails, and takes the fixed file on the next",
  async (io) => {
    await using dir = await tempDir();
    const book = await writeBook(dir.path);
    await using server = await ServerProcess.start(["--data", book, "--workers", "2", ...io]);

    await writeBook(dir.path, [[BOOK[0][0], "Ada King"], ["broken", "Bob"]]);
    let mark = server.stderr.lines.length;
    server.signal("SIGHUP");
    const failed = await server.stderr.waitFor(/reload failed/, mark);
    assert.ok(failed.line.includes(`${book}:3:`), `names the file and line: ${failed.line}`);
    assert.doesNotMatch(failed.line, /broken|Bob|Ada King/, "quotes nothing from the file");
    for (const reply of await askFresh(server, BOOK[0][0], FRESH_CONNECTIONS)) {
      assert.deepEqual(reply, { status: STATUS_FOUND, text: "Ada Lovelace" });
    }

    await writeBook(dir.path, [[BOOK[0][0], "Ada King"]]);
    mark = server.stderr.lines.length;
    server.signal("SIGHUP");
    await server.stderr.waitFor(/reload done/, mark);
    for (const reply of await askFresh(server, BOOK[0][0], FRESH_CONNECTIONS)) {
      assert.deepEqual(reply, { status: STATUS_FOUND, text: "Ada King" });
    }
  },
);

/** Asks one question on a fresh connection. */
async function askOnce(server: ServerProcess, email: string): Promise<Reply> {
  using client = await server.connect();
  return await client.query(email);
}

Deno.test("server --watch reloads a book replaced by a rename or rewritten in place, and keeps the old one when it breaks", async () => {
  await using dir = await tempDir();
  const book = await writeBook(dir.path);
  await using server = await ServerProcess.start(["--data", book, "--watch"]);

  // Replaced the way editors and deploy tools do it: a new file renamed over the old.
  let mark = server.stderr.lines.length;
  const staged = await writeCsvBook(dir.path, [[BOOK[0][0], "Ada King"]], "staged.csv");
  await Deno.rename(staged, book);
  await server.stderr.waitFor(/reload done/, mark);
  assert.deepEqual(await askOnce(server, BOOK[0][0]), { status: STATUS_FOUND, text: "Ada King" });

  mark = server.stderr.lines.length;
  await writeBook(dir.path, [[BOOK[0][0], "Ada Byron"], ["broken", "Bob"]]);
  const failed = await server.stderr.waitFor(/reload failed/, mark);
  assert.ok(failed.line.includes(`${book}:3:`), failed.line);
  assert.deepEqual(await askOnce(server, BOOK[0][0]), { status: STATUS_FOUND, text: "Ada King" });

  mark = server.stderr.lines.length;
  await writeBook(dir.path, [[BOOK[0][0], "Ada Byron"]]);
  await server.stderr.waitFor(/reload done/, mark);
  assert.deepEqual(await askOnce(server, BOOK[0][0]), { status: STATUS_FOUND, text: "Ada Byron" });
});

/** Rows of the book the slow-rewrite test serves: a megabyte or so. */
const REWRITTEN_ROWS = 20_000;
/** The slow writer's chunks and its pauses between them, well within the default settle time. */
const REWRITE_CHUNKS = 8;
const REWRITE_PAUSE_MS = 100;

/** The `i`th row of the old or the new book; every name is long enough that a cut shows. */
function rewrittenRow(i: number, edition: "Old" | "New"): [string, string] {
  return [`person${i}@example.com`, `${edition} Person ${i} of the rewritten book`];
}

function rewrittenBook(edition: "Old" | "New"): string {
  const rows = Array.from({ length: REWRITTEN_ROWS }, (_, i) => rewrittenRow(i, edition));
  return ["email,name", ...rows.map((row) => row.join(","))].join("\n") + "\n";
}

/** Writes `text` over the file in place (same inode), in chunks cut anywhere, with pauses. */
async function writeSlowly(path: string, text: string): Promise<void> {
  const bytes = new TextEncoder().encode(text);
  const file = await Deno.open(path, { write: true, truncate: true });
  try {
    const size = Math.ceil(bytes.length / REWRITE_CHUNKS);
    for (let start = 0; start < bytes.length; start += size) {
      await file.write(bytes.subarray(start, start + size));
      // The pauses are the scenario: a deploy tool writing a large file slowly.
      await new Promise((resolve) => setTimeout(resolve, REWRITE_PAUSE_MS));
    }
  } finally {
    file.close();
  }
}

Deno.test("server --watch never serves a book rewritten in place until the file has settled", async () => {
  await using dir = await tempDir();
  const book = `${dir.path}/book.csv`;
  await Deno.writeTextFile(book, rewrittenBook("Old"));
  await using server = await ServerProcess.start(["--data", book, "--watch"]);
  using probe = await server.connect();

  const mark = server.stderr.lines.length;
  let writing = true;
  const writer = writeSlowly(book, rewrittenBook("New")).finally(() => writing = false);
  let reloaded = false;
  const reload = server.stderr.waitFor(/reload done/, mark).finally(() => reloaded = true);
  // Every answer, while the file is written and until the reload, is a whole
  // old or a whole new entry; the last entries are asked most, as a half-book loses them.
  let answers = 0;
  let newAnswers = 0;
  for (let round = 0; (writing || !reloaded) && round < 1_000_000; round++) {
    const i = round % 2 === 0 ? REWRITTEN_ROWS - 1 - (round % 100) : round % REWRITTEN_ROWS;
    const reply = await probe.query(rewrittenRow(i, "Old")[0]);
    const names = [rewrittenRow(i, "Old")[1], rewrittenRow(i, "New")[1]];
    assert.equal(reply.status, STATUS_FOUND, `entry ${i} is served all along`);
    assert.ok(
      names.includes(reply.text),
      `entry ${i}: a whole old or new name, not "${reply.text}"`,
    );
    answers++;
    if (reply.text === names[1]) newAnswers++;
    if (newAnswers > 0) {
      assert.ok(!writing, "nothing of the new book is served while it is written");
    }
  }
  await writer;
  const { line } = await reload;
  assert.ok(answers > 0);
  assert.match(line, new RegExp(`entries=${REWRITTEN_ROWS}`));
  for (const i of [0, REWRITTEN_ROWS / 2, REWRITTEN_ROWS - 1]) {
    assert.deepEqual(await probe.query(rewrittenRow(i, "Old")[0]), {
      status: STATUS_FOUND,
      text: rewrittenRow(i, "New")[1],
    });
  }
  const since = server.stderr.lines.slice(mark).join("\n");
  assert.equal(since.match(/reload done/g)?.length, 1, `one reload, of the whole file:\n${since}`);
  assert.doesNotMatch(since, /reload failed/);
});

Deno.test("server --watch follows a ConfigMap volume, typed with //, ./ and ../, through two updates", async () => {
  await using dir = await tempDir();
  const volume = `${dir.path}/config`;
  await Deno.mkdir(`${volume}/sub`, { recursive: true });
  const csv = (name: string) => `email,name\n${BOOK[0][0]},${name}\n`;
  await swapConfigMap(volume, "2026_12_02_08_00_00.000000001", { "book.csv": csv("Ada One") });
  const typed = `${dir.path}//config/./sub/../book.csv`;
  await using server = await ServerProcess.start(["--data", typed, "--watch"]);
  assert.equal((await askOnce(server, BOOK[0][0])).text, "Ada One");
  for (
    const [stamp, name] of [["2026_12_02_08_01_00.000000002", "Ada Two"], [
      "2026_12_02_08_02_00.000000003",
      "Ada Three",
    ]]
  ) {
    const mark = server.stderr.lines.length;
    await swapConfigMap(volume, stamp, { "book.csv": csv(name) });
    await server.stderr.waitFor(/reload done/, mark);
    assert.deepEqual(await askOnce(server, BOOK[0][0]), { status: STATUS_FOUND, text: name });
  }
});

Deno.test("server --watch follows a symlinked --data whose target is edited", async () => {
  await using dir = await tempDir();
  await Deno.mkdir(`${dir.path}/real`);
  const target = await writeBook(`${dir.path}/real`);
  await Deno.symlink(target, `${dir.path}/book.csv`);
  await using server = await ServerProcess.start([
    "--data",
    `${dir.path}/book.csv`,
    "--watch",
    "--watch-settle",
    "0.2",
  ]);
  const mark = server.stderr.lines.length;
  await writeBook(`${dir.path}/real`, [[BOOK[0][0], "Ada King"]]);
  await server.stderr.waitFor(/reload done/, mark);
  assert.deepEqual(await askOnce(server, BOOK[0][0]), { status: STATUS_FOUND, text: "Ada King" });
});

// ---------------------------------------------------------------------------
// Shutdown

/** Queries that cover each answer a query can get, and the replies they must get, in order. */
function pipelinedQueries(count: number): { bytes: Uint8Array; expected: Reply[] } {
  const frames: Uint8Array[] = [];
  const expected: Reply[] = [];
  for (let i = 0; i < count; i++) {
    if (i % 3 === 0) {
      const [email, name] = BOOK[i % BOOK.length];
      frames.push(encodeQuery(email));
      expected.push({ status: STATUS_FOUND, text: name });
    } else if (i % 3 === 1) {
      frames.push(encodeQuery(`nobody${i}@example.com`));
      expected.push({ status: STATUS_NOT_FOUND, text: "" });
    } else {
      frames.push(encodeQuery(`no at sign ${i}`));
      expected.push({ status: STATUS_BAD_REQUEST, text: "" });
    }
  }
  return { bytes: concat(frames), expected };
}

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  testEachIo(
    `server answers every query already sent, then closes and exits 0, on ${signal}`,
    async (io) => {
      await using dir = await tempDir();
      await using server = await startOnBook(dir.path, io);
      using client = await server.connect();
      // One round trip first, so the connection is surely accepted before the signal.
      assert.equal((await client.query(BOOK[1][0])).text, BOOK[1][1]);

      const { bytes, expected } = pipelinedQueries(PIPELINED_QUERIES);
      await client.write(bytes);
      server.signal(signal);
      const replies = await client.readUntilClosed();

      assert.equal(replies.length, PIPELINED_QUERIES, "every query got its reply before the close");
      for (let i = 0; i < PIPELINED_QUERIES; i++) {
        assert.equal(replies[i].status, expected[i].status, `reply ${i}`);
        if (expected[i].status === STATUS_FOUND) assert.equal(replies[i].text, expected[i].text);
      }
      const status = await server.exit();
      assert.equal(status.code, EXIT_OK, server.stderr.text);
      await server.stderr.waitFor(new RegExp(`shutting down.*signal=${signal}`));
      await server.stderr.waitFor(/shutdown complete/);
      assert.doesNotMatch(server.stderr.text, /shutdown timeout/, "drained without the timeout");
    },
  );
}

testEachIo(
  "server answers connections still waiting to be accepted when the shutdown began",
  async (io) => {
    await using dir = await tempDir();
    await using server = await startOnBook(dir.path, io);
    // Stopped, the server accepts nothing: the connections wait in its backlog,
    // and the SIGTERM waits too, until SIGCONT lets it see both at once.
    server.signal("SIGSTOP");
    const clients = await Promise.all(
      Array.from({ length: BACKLOG_CLIENTS }, () => server.connect()),
    );
    try {
      // Connected and sent before the signal: each must be answered, then closed.
      await Promise.all(clients.map((client) => client.write(encodeQuery(BOOK[0][0]))));
      server.signal("SIGTERM");
      server.signal("SIGCONT");
      const endings = await Promise.all(clients.map(async (client) => {
        try {
          const replies = await client.readUntilClosed();
          return replies.length === 1 && replies[0].text === BOOK[0][1] ? "answered" : "unanswered";
        } catch (error) {
          if (error instanceof Deno.errors.ConnectionReset) return "reset";
          throw error;
        }
      }));
      const unanswered = endings.filter((ending) => ending !== "answered");
      assert.deepEqual(unanswered, [], `${unanswered.length} of ${BACKLOG_CLIENTS} not answered`);
    } finally {
      for (const client of clients) client.close();
    }
    assert.equal((await server.exit()).code, EXIT_OK, server.stderr.text);
  },
);

testEachIo(
  "server ends a connection whose client is still sending at shutdown with its replies, then EOF",
  async (io) => {
    await using dir = await tempDir();
    await using server = await startOnBook(dir.path, ["--shutdown-timeout", "60", ...io]);
    const queries = repeat(encodeQuery(BOOK[0][0]), STREAMED_QUERIES);
    const clients = await Promise.all(
      Array.from({ length: STREAMING_CLIENTS }, () => server.connect()),
    );
    try {
      // A round trip each first, so every connection is accepted before the signal.
      for (const client of clients) assert.equal((await client.query(BOOK[1][0])).text, BOOK[1][1]);
      // Each client streams queries while the server shuts down; the queries
      // the server has not read by then may go unanswered, but the replies it
      // wrote must arrive, followed by a clean end of stream.
      const writers = clients.map((client) => client.write(queries).catch(() => {}));
      server.signal("SIGTERM");
      const endings = await Promise.all(clients.map(async (client) => {
        let replies = 0;
        try {
          for (let reply; (reply = await client.readReply()) !== null; replies++) {
            assert.deepEqual(reply, { status: STATUS_FOUND, text: BOOK[0][1] });
          }
          return `EOF after ${replies} replies`;
        } catch (error) {
          if (!(error instanceof Deno.errors.ConnectionReset)) throw error;
          return `reset after ${replies} replies`;
        }
      }));
      await Promise.all(writers);
      for (const ending of endings) assert.match(ending, /^EOF/, endings.join("; "));
    } finally {
      for (const client of clients) client.close();
    }
    assert.equal((await server.exit()).code, EXIT_OK, server.stderr.text);
  },
);

testEachIo(
  "server exits at once with code 1 on a second signal during a long drain",
  async (io) => {
    await using dir = await tempDir();
    await using server = await startOnBook(dir.path, ["--shutdown-timeout", "30", ...io]);
    using _held = await holdMidFrame(server);

    server.signal("SIGTERM");
    const { index } = await server.stderr.waitFor(/shutting down/);
    // Copies of the first signal within its window do not count; a person's
    // second Ctrl-C comes later. Time passing is the contract here.
    await new Promise((resolve) => setTimeout(resolve, REPEATED_SIGNAL_MS + 50));
    server.signal("SIGTERM");
    const status = await server.exit();

    assert.equal(status.code, EXIT_SECOND_SIGNAL, server.stderr.text);
    await server.stderr.waitFor(/second signal: exiting at once/, index);
    assert.doesNotMatch(server.stderr.text, /shutdown complete/);
  },
);

testEachIo(
  "server shuts down gracefully when one Ctrl-C under deno task brings SIGINT twice at once",
  async (io) => {
    await using dir = await tempDir();
    await using server = await startOnBook(dir.path, io);
    // The terminal signals the process group and deno task forwards the same signal.
    server.signal("SIGINT");
    server.signal("SIGINT");
    const status = await server.exit();

    assert.equal(status.code, 0, server.stderr.text);
    assert.match(server.stderr.text, /shutdown complete/);
    assert.doesNotMatch(server.stderr.text, /second signal/);
  },
);

testEachIo(
  "server cuts connections still mid-frame at the shutdown timeout and exits 0",
  async (io) => {
    await using dir = await tempDir();
    await using server = await startOnBook(dir.path, ["--shutdown-timeout", "0.5", ...io]);
    using held = await holdMidFrame(server);

    server.signal("SIGTERM");
    assert.deepEqual(
      await held.readUntilClosed(),
      [],
      "the held connection is closed with no reply",
    );
    const status = await server.exit();

    assert.equal(status.code, EXIT_OK, server.stderr.text);
    await server.stderr.waitFor(/shutdown timeout: closing the connections still open/);
    await server.stderr.waitFor(/shutdown complete/);
  },
);

testEachIo(
  "server closes idle connections at shutdown instead of waiting out the timeout",
  async (io) => {
    await using dir = await tempDir();
    await using server = await startOnBook(dir.path, ["--shutdown-timeout", "60", ...io]);
    const idle = await Promise.all([1, 2, 3].map(() => server.connect()));
    try {
      for (const client of idle) assert.equal((await client.query(BOOK[0][0])).text, BOOK[0][1]);
      server.signal("SIGTERM");
      for (const client of idle) assert.deepEqual(await client.readUntilClosed(), []);
    } finally {
      for (const client of idle) client.close();
    }
    assert.equal((await server.exit()).code, EXIT_OK, server.stderr.text);
    assert.doesNotMatch(server.stderr.text, /shutdown timeout/);
  },
);

testEachIo(
  "server starts again on the same port right after a shutdown that closed connections",
  async (io) => {
    await using dir = await tempDir();
    const book = await writeBook(dir.path);
    let port: number;
    {
      await using first = await ServerProcess.start(["--data", book, ...io]);
      port = first.port;
      // Connections the server closes leave its side of them in TIME_WAIT.
      using client = await first.connect();
      assert.equal((await client.query(BOOK[0][0])).text, BOOK[0][1]);
      first.signal("SIGTERM");
      assert.deepEqual(await client.readUntilClosed(), []);
      assert.equal((await first.exit()).code, EXIT_OK);
    }
    await using second = await ServerProcess.start(["--data", book, "--port", String(port), ...io]);
    assert.equal(second.port, port);
    using client = await second.connect();
    assert.equal((await client.query(BOOK[1][0])).text, BOOK[1][1]);
  },
);

// ---------------------------------------------------------------------------
// Logs

for (const format of ["text", "json"] as const) {
  testEachIo(
    `server --log-format ${format} logs no email or name at the default level`,
    async (io) => {
      await using dir = await tempDir();
      await using server = await startOnBook(dir.path, [
        "--log-format",
        format,
        "--workers",
        "2",
        ...io,
      ]);
      const asked = ["Secret.Person@example.net", "not an email but private"];
      for (let i = 0; i < 4; i++) {
        using client = await server.connect();
        for (const [email] of BOOK) assert.equal((await client.query(email)).status, STATUS_FOUND);
        assert.equal((await client.query(asked[0])).status, STATUS_NOT_FOUND);
        assert.equal((await client.query(asked[1])).status, STATUS_BAD_REQUEST);
      }
      // Protocol errors whose bytes hold an email: a text line, and an overlong query.
      for (const bytes of [`GET /${BOOK[0][0]} HTTP/1.1\r\n\r\n`, `Q\0\0\x10\0${BOOK[1][0]}`]) {
        using client = await server.connect();
        await client.write(new TextEncoder().encode(bytes));
        const replies = await client.readUntilClosed();
        assert.equal(replies.at(-1)?.status, STATUS_PROTOCOL_ERROR);
      }
      await server.stderr.waitFor(/protocol error/);
      server.signal("SIGTERM");
      assert.equal((await server.exit()).code, EXIT_OK);

      const lines = linesOf(server.stderr.text);
      assert.ok(lines.length >= 4, server.stderr.text);
      const secrets = [...BOOK.flat(), ...asked, "Secret.Person", "secret.person"];
      for (const line of lines) {
        for (const secret of secrets) {
          assert.ok(!line.toLowerCase().includes(secret.toLowerCase()), `"${secret}" in: ${line}`);
        }
        if (format === "json") {
          const parsed = JSON.parse(line);
          assert.equal(typeof parsed.time, "string", line);
          assert.ok(!Number.isNaN(Date.parse(parsed.time)), line);
          assert.ok(["debug", "info", "warn", "error"].includes(parsed.level), line);
          assert.equal(typeof parsed.msg, "string", line);
        }
      }
    },
  );
}

// ---------------------------------------------------------------------------
// Metrics and limits

testEachIo(
  "server --metrics-port 0 names the metrics address and serves the counters of all threads",
  async (io) => {
    await using dir = await tempDir();
    await using server = await startOnBook(dir.path, [
      "--metrics-port",
      "0",
      "--workers",
      "2",
      ...io,
    ]);
    const where = /metrics=(\S+):(\d+)/.exec(server.startLine);
    assert.ok(where, `the start line names the metrics address: ${server.startLine}`);
    const metricsUrl = `http://${where[1]}:${where[2]}`;

    await askFresh(server, BOOK[0][0], FRESH_CONNECTIONS);
    await askFresh(server, "nobody@example.com", 1);

    const response = await fetch(`${metricsUrl}/metrics`);
    const body = await response.text();
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    assert.match(body, /^# HELP addrbook_replies_total /m);
    assert.match(body, /^# TYPE addrbook_replies_total counter$/m);
    assert.match(
      body,
      new RegExp(
        `^addrbook_replies_total\\{front_end="binary",status="FOUND"\\} ${FRESH_CONNECTIONS}$`,
        "m",
      ),
    );
    assert.match(body, /^addrbook_replies_total\{front_end="binary",status="NOT_FOUND"\} 1$/m);
    assert.match(body, new RegExp(`^addrbook_connections_total ${FRESH_CONNECTIONS + 1}$`, "m"));
    assert.match(body, new RegExp(`^addrbook_book_entries ${BOOK.length}$`, "m"));
    assert.match(body, /^addrbook_reloads_total\{result="ok"\} 0$/m);

    const elsewhere = await fetch(`${metricsUrl}/`);
    await elsewhere.body?.cancel();
    assert.equal(elsewhere.status, 404);
  },
);

/** The status of `GET` (or `method`) on the server's metrics port at `path`. */
async function httpStatus(url: string, method = "GET"): Promise<number> {
  const response = await fetch(url, { method });
  await response.body?.cancel();
  return response.status;
}

testEachIo(
  "server /readyz answers 200 while serving and 503 from SIGTERM while it drains; /healthz 200 throughout",
  async (io) => {
    await using dir = await tempDir();
    await using server = await startOnBook(dir.path, [
      "--metrics-port",
      "0",
      "--shutdown-timeout",
      "60",
      ...io,
    ]);
    const where = /metrics=(\S+):(\d+)/.exec(server.startLine);
    assert.ok(where, server.startLine);
    const url = `http://${where[1]}:${where[2]}`;
    assert.equal(await httpStatus(`${url}/readyz`), 200);
    assert.equal(await httpStatus(`${url}/readyz`, "HEAD"), 200);
    assert.equal(await httpStatus(`${url}/healthz`), 200);

    // A connection left mid-frame keeps the drain going until it closes.
    const held = await holdMidFrame(server);
    try {
      server.signal("SIGTERM");
      await server.stderr.waitFor(/shutting down/);
      assert.equal(await httpStatus(`${url}/readyz`), 503, "draining: not ready");
      assert.equal(await httpStatus(`${url}/readyz`, "HEAD"), 503);
      assert.equal(await httpStatus(`${url}/healthz`), 200, "draining: still alive");
      assert.doesNotMatch(server.stderr.text, /shutdown complete/, "still draining when asked");
    } finally {
      held.close();
    }
    assert.equal((await server.exit()).code, EXIT_OK, server.stderr.text);
  },
);

testEachIo(
  "server --max-connections 1 answers a second connection with SERVER_BUSY and logs it",
  async (io) => {
    await using dir = await tempDir();
    await using server = await startOnBook(dir.path, ["--max-connections", "1", ...io]);
    using first = await server.connect();
    assert.equal((await first.query(BOOK[0][0])).text, BOOK[0][1]);

    using second = await server.connect();
    const replies = await second.readUntilClosed();
    assert.equal(replies.length, 1);
    assert.equal(replies[0].status, STATUS_SERVER_BUSY);
    await server.stderr.waitFor(/warn connection refused: server busy peer=127\.0\.0\.1:\d+/);

    assert.equal((await first.query(BOOK[1][0])).text, BOOK[1][1], "the first is still served");
  },
);
