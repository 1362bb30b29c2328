/**
 * Nothing takes the server down (issue 19): a real server process under
 * attack and careless operation. Books turned into `/dev/zero`, a FIFO or a
 * 2 GiB sparse file under `--watch`; a storm of SIGHUPs; a process short of
 * file descriptors (`ulimit -n` in the child) with idle connections on the
 * metrics port and a reload asked for; a client sending malformed frames on
 * connection after connection. Each time the process lives, the lookup port
 * answers from the last good book, and the log says what happened in a
 * bounded number of lines.
 */

import assert from "node:assert/strict";
import { encodeQuery, STATUS_FOUND, STATUS_NOT_FOUND, STATUS_PROTOCOL_ERROR } from "../protocol.ts";
import { writeCsvBook } from "../testing/books.ts";
import { tempDir } from "../testing/files.ts";
import { concat, header } from "../testing/frames.ts";
import { assertNoStackTrace, runServerToExit, ServerProcess } from "../testing/processes.ts";
import { csvField, generateEntries } from "../tools/gen.ts";
import { MAX_RECORD_BYTES } from "../book/load.ts";

const ADA: readonly [string, string] = ["ada@example.com", "Ada Lovelace"];
const GRACE: readonly [string, string] = ["grace@example.org", "Grace Hopper"];
const RECORD_TOO_LONG = new RegExp(`over ${MAX_RECORD_BYTES} bytes long`);

async function askOnce(server: ServerProcess, email: string) {
  using client = await server.connect();
  return await client.query(email);
}

async function mkfifo(path: string): Promise<void> {
  const made = await new Deno.Command("mkfifo", { args: [path] }).output();
  assert.ok(made.success, `mkfifo ${path}`);
}

/** A CSV header and then a 2 GiB hole: no line end for as far as a reader would go. */
async function sparseBook(path: string): Promise<void> {
  using file = await Deno.create(path);
  await file.write(new TextEncoder().encode("email,name\n"));
  await file.truncate(2 ** 31);
}

/** The odd files a book can become, and what the refusal says of each. */
const ODD_BOOKS: readonly [string, (path: string) => Promise<void>, RegExp][] = [
  ["a symlink to /dev/zero", (path) => Deno.symlink("/dev/zero", path), /not a regular file/],
  ["a FIFO", mkfifo, /not a regular file/],
  ["a 2 GiB sparse file", sparseBook, RECORD_TOO_LONG],
];

Deno.test("server refuses to start on /dev/zero, a FIFO or a sparse file, in one line each", async () => {
  await using dir = await tempDir("robust_start_");
  for (const [what, make, reason] of ODD_BOOKS) {
    const path = `${dir.path}/${what.replaceAll(/\W/g, "_")}.csv`;
    await make(path);
    const { code, stderr } = await runServerToExit(["--data", path]);
    assert.equal(code, 1, `${what}: ${stderr}`);
    assert.match(stderr, reason, what);
    assertNoStackTrace(stderr);
  }
});

Deno.test("--watch survives a book turned into /dev/zero, a FIFO and a sparse file, serving the old one, then takes a good one", async () => {
  await using dir = await tempDir("robust_watch_");
  const book = await writeCsvBook(dir.path, [ADA]);
  await using server = await ServerProcess.start([
    "--data",
    book,
    "--watch",
    "--watch-settle",
    "0.1",
  ]);
  for (const [what, make, reason] of ODD_BOOKS) {
    const mark = server.stderr.lines.length;
    const next = `${dir.path}/next`;
    await make(next);
    await Deno.rename(next, book);
    const failed = await server.stderr.waitFor(/reload failed/, mark);
    assert.match(failed.line, reason, what);
    assert.deepEqual(await askOnce(server, ADA[0]), { status: STATUS_FOUND, text: ADA[1] }, what);
  }
  const mark = server.stderr.lines.length;
  await writeCsvBook(dir.path, [GRACE], "next");
  await Deno.rename(`${dir.path}/next`, book);
  await server.stderr.waitFor(/reload done/, mark);
  assert.deepEqual(await askOnce(server, GRACE[0]), { status: STATUS_FOUND, text: GRACE[1] });
  assertNoStackTrace(server.stderr.text);
});

/** Writes a generated book of `count` entries, and `extra` rows after them. */
async function writeGeneratedBook(
  path: string,
  count: number,
  extra: readonly (readonly [string, string])[] = [],
): Promise<void> {
  const rows = ["email,name"];
  for (const { email, name } of generateEntries(count, 19)) {
    rows.push(`${csvField(email)},${csvField(name)}`);
  }
  for (const [email, name] of extra) rows.push(`${email},${name}`);
  await Deno.writeTextFile(path, rows.join("\n") + "\n");
}

/** Entries in the storm's book: its reload takes longer than the storm lasts. */
const STORM_BOOK_ENTRIES = 200_000;
const STORM_SIGNALS = 20;
/** Between two signals: long enough that the server takes each one apart. */
const STORM_GAP_MS = 5;

Deno.test("a SIGHUP storm runs one reload at a time and one more after it, ending on the latest file", async () => {
  await using dir = await tempDir("robust_storm_");
  const book = `${dir.path}/book.csv`;
  await writeGeneratedBook(book, STORM_BOOK_ENTRIES);
  await using server = await ServerProcess.start(["--data", book]);
  await writeGeneratedBook(book, STORM_BOOK_ENTRIES, [GRACE]);
  const mark = server.stderr.lines.length;
  for (let i = 0; i < STORM_SIGNALS; i++) {
    server.signal("SIGHUP");
    await new Promise((resolve) => setTimeout(resolve, STORM_GAP_MS)); // a storm's pace
  }
  await server.stderr.waitFor(
    new RegExp(`reload done.*entries=${STORM_BOOK_ENTRIES + 1}\\b`),
    mark,
  );
  assert.deepEqual(await askOnce(server, GRACE[0]), { status: STATUS_FOUND, text: GRACE[1] });
  server.signal("SIGTERM");
  await server.exit();
  const events = server.stderr.lines.slice(mark)
    .map((line) => /reload (started|done|failed)/.exec(line)?.[1])
    .filter((event) => event !== undefined);
  const started = events.filter((event) => event === "started").length;
  assert.ok(started >= 1 && started <= 2, `${started} reloads ran: ${events.join(" ")}`);
  events.forEach((event, i) => {
    assert.equal(event, i % 2 === 0 ? "started" : "done", `one at a time: ${events.join(" ")}`);
  });
});

/** Connections opened to a server short of descriptors: more than it may hold. */
async function exhaust(port: number, count: number): Promise<Deno.TcpConn[]> {
  const conns: Deno.TcpConn[] = [];
  for (let i = 0; i < count; i++) conns.push(await Deno.connect({ hostname: "127.0.0.1", port }));
  return conns;
}

/** Asks /healthz until the port has room (503 while its slots are still taken), for 10 s at most. */
async function healthOnceRoom(port: number): Promise<string> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const answer = await fetch(`http://127.0.0.1:${port}/healthz`);
    const body = await answer.text();
    if (answer.status !== 503 || Date.now() > deadline) return body;
  }
}

/** The server's file descriptor limit in the descriptor tests. */
const OPEN_FILES = 160;

Deno.test("short of descriptors, a reload fails in one line and the old book serves; the metrics port neither dies nor fills", async () => {
  await using dir = await tempDir("robust_fds_");
  const book = await writeCsvBook(dir.path, [ADA]);
  await using server = await ServerProcess.start(
    ["--data", book, "--metrics-port", "0"],
    { openFiles: OPEN_FILES },
  );
  const metricsPort = Number(/metrics=\S+:(\d+)/.exec(server.startLine)?.[1]);
  assert.ok(metricsPort > 0, server.startLine);
  await writeCsvBook(dir.path, [GRACE]);

  // Idle connections on the metrics port: held up to its cap, the rest answered 503 and closed.
  const idle = await exhaust(metricsPort, 2 * OPEN_FILES);
  try {
    assert.deepEqual(await askOnce(server, ADA[0]), { status: STATUS_FOUND, text: ADA[1] });
  } finally {
    idle.forEach((conn) => conn.close());
  }
  // Accepted in order: once this is answered 200, every idle one has been, and closed.
  assert.equal(await healthOnceRoom(metricsPort), "ok\n");

  // Every descriptor taken on the lookup port, then a reload and a metrics request.
  let mark = server.stderr.lines.length;
  const held = await exhaust(server.port, 2 * OPEN_FILES);
  try {
    await server.stderr.waitFor(/accept failed; pausing accepts/, mark);
    server.signal("SIGHUP");
    const failed = await server.stderr.waitFor(/reload failed/, mark);
    assert.match(failed.line, /fewer than the 32 file descriptors it needs are free/);
    const metrics = await Deno.connect({ hostname: "127.0.0.1", port: metricsPort });
    await metrics.write(new TextEncoder().encode("GET /metrics HTTP/1.1\r\n\r\n"));
    metrics.close();
  } finally {
    held.forEach((conn) => conn.close());
  }
  mark = server.stderr.lines.length;
  assert.deepEqual(await askOnce(server, ADA[0]), { status: STATUS_FOUND, text: ADA[1] });
  assert.equal(await healthOnceRoom(metricsPort), "ok\n");
  server.signal("SIGHUP");
  await server.stderr.waitFor(/reload done/, mark);
  assert.deepEqual(await askOnce(server, GRACE[0]), { status: STATUS_FOUND, text: GRACE[1] });
  const text = server.stderr.text;
  assertNoStackTrace(text);
  assert.doesNotMatch(text, /panicked/);
  const pauses = text.split("\n").filter((line) => /accept failed/.test(line)).length;
  assert.ok(
    pauses <= 4,
    `accept failures are logged once an episode, not ${pauses} times:\n${text}`,
  );
});

Deno.test("a client sending malformed frames on many connections gets a bounded number of log lines", async () => {
  await using dir = await tempDir("robust_flood_");
  const book = await writeCsvBook(dir.path, [ADA]);
  await using server = await ServerProcess.start(["--data", book]);
  const mark = server.stderr.lines.length;
  const bad = concat([encodeQuery(ADA[0]), header(0x47, 3), Uint8Array.of(1, 2, 3)]);
  for (let i = 0; i < 200; i++) {
    using client = await server.connect();
    await client.write(bad);
    const replies = await client.readReplies(2);
    assert.deepEqual(replies.map((reply) => reply.status), [STATUS_FOUND, STATUS_PROTOCOL_ERROR]);
  }
  assert.equal((await askOnce(server, GRACE[0])).status, STATUS_NOT_FOUND);
  const lines = server.stderr.lines.slice(mark).filter((line) => /protocol error/.test(line));
  assert.equal(lines.length, 1, lines.join("\n"));
});
