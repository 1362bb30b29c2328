/**
 * The access rules and per-client limits (issue 9) of a server process:
 * bad flag values, protected mode decided at start with its warning line,
 * the refusal counters and tracked-clients gauge on `/metrics`, refusal
 * log lines (at info, summarised, free of personal data), and the client's
 * messages for FORBIDDEN and RATE_LIMITED against the real server.
 *
 * The rules themselves, on an in-process server, are tested in
 * tests/server_access_test.ts.
 */

import assert from "node:assert/strict";
import {
  encodeQueries,
  encodeQuery,
  type Reply,
  STATUS_FORBIDDEN,
  STATUS_FOUND,
  STATUS_NOT_FOUND,
  STATUS_PROTOCOL_ERROR,
  STATUS_RATE_LIMITED,
} from "../protocol.ts";
import { encodeProxyHeader } from "../access/proxy_header.ts";
import { writeCsvBook } from "../testing/books.ts";
import { waitFor } from "../testing/deadlines.ts";
import { tempDir } from "../testing/files.ts";
import { concat } from "../testing/frames.ts";
import { IO_LOOPS } from "../testing/io_loops.ts";
import { metricValue } from "../testing/metrics.ts";
import { assertNoPersonalData } from "../testing/personal_data.ts";
import {
  assertNoStackTrace,
  LISTENING,
  runClientToExit,
  runServerToExit,
  ServerProcess,
} from "../testing/processes.ts";
import { WireClient, type WireConn } from "../testing/wire_client.ts";

const EXIT_USAGE = 2;
const BOOK: readonly (readonly [string, string])[] = [
  ["ada@example.com", "Ada Lovelace"],
  ["grace@example.org", "Grace Hopper"],
];
const ADA = "ada@example.com";
const GRACE = "grace@example.org";
const NOBODY = "nobody@example.com";
/** Refused queries of one client that must give a single log line. */
const REFUSED_QUERIES = 100;

/** Registers `fn` once per event loop; it gets the `--io` flags to pass and a book's path. */
function testEachIo(name: string, fn: (io: string[], book: string) => Promise<void>): void {
  for (const loop of IO_LOOPS) {
    Deno.test(`${name} [--io ${loop}]`, async () => {
      await using dir = await tempDir("addrbook_access_cli_test_");
      await fn(["--io", loop], await writeCsvBook(dir.path, BOOK));
    });
  }
}

/** A PROXY v2 header naming `address` as the client. */
function proxyFrom(address: string): Uint8Array {
  return encodeProxyHeader({
    version: 2,
    source: { address, port: 40000 },
    destination: { address: "198.51.100.1", port: 8080 },
  });
}

/** The replies to `bytes` sent on a fresh connection to 127.0.0.1, until the server closes it. */
async function repliesTo(port: number, bytes: Uint8Array, count: number): Promise<Reply[]> {
  using client = await WireClient.connect(port, { resets: "throw" });
  await client.write(bytes);
  const replies: Reply[] = [];
  while (replies.length < count) {
    const reply = await client.readReply();
    if (reply === null) break;
    replies.push(reply);
  }
  return replies;
}

/** The server's `/metrics` text, from the metrics address its start line names. */
async function metricsOf(server: ServerProcess): Promise<string> {
  const where = /metrics=(\S+):(\d+)/.exec(server.startLine);
  assert.ok(where, `the start line names the metrics address: ${server.startLine}`);
  const response = await fetch(`http://${where[1]}:${where[2]}/metrics`);
  assert.equal(response.status, 200);
  return await response.text();
}

// ---------------------------------------------------------------------------
// Bad values

Deno.test("bad access and limit values exit 2 with one message naming the flag and the value", async () => {
  const cases: [string[], RegExp][] = [
    [["--allow", "10.0.0.0/33"], /^server: --allow entry "10\.0\.0\.0\/33" .*prefix length/],
    [["--allow", "nonsense"], /^server: --allow entry "nonsense" is not an IPv4 or IPv6 address/],
    [["--allow", "10.0.0.0/8", "--allow", "10.1.2.3/8"], /^server: --allow entry "10\.1\.2\.3\/8"/],
    [
      ["--rate-limit", "0/s"],
      /^server: --rate-limit must be N\/PERIOD .*, not "0\/s". See --help\.$/m,
    ],
    [
      ["--rate-limit", "5/x"],
      /^server: --rate-limit must be N\/PERIOD .*, not "5\/x". See --help\.$/m,
    ],
    [
      ["--found-limit", "-1/m"],
      /^server: --found-limit must be N\/PERIOD .*, not "-1\/m". See --help\.$/m,
    ],
    [
      ["--max-connections-per-client", "-1"],
      /^server: --max-connections-per-client must be a whole number .*, not "-1"\. See --help\.$/m,
    ],
    [
      ["--trusted-proxy", "127.0.0.1"],
      /^server: --trusted-proxy 127\.0\.0\.1 needs --proxy-protocol/,
    ],
    [
      ["--proxy-protocol", "--trusted-proxy", "127.0.0.0/33"],
      /^server: --trusted-proxy entry "127\.0\.0\.0\/33"/,
    ],
  ];
  for (const [args, message] of cases) {
    const { code, stdout, stderr } = await runServerToExit(args);
    const what = `${args.join(" ")}: ${stderr}`;
    assert.equal(code, EXIT_USAGE, what);
    assert.match(stderr, message, what);
    assert.match(
      stderr,
      /^server: [^\n]*\. See --help\.\n?$/,
      `one sentence, then see --help: ${what}`,
    );
    assert.doesNotMatch(stderr, LISTENING, "nothing listens");
    assert.equal(stdout, "");
    assertNoStackTrace(stderr);
  }
});

// ---------------------------------------------------------------------------
// Protected mode

testEachIo(
  "protected mode: --host 0.0.0.0 with no --allow warns at start, serves loopback, refuses others naming --allow",
  async (io, book) => {
    await using server = await ServerProcess.start([
      "--host",
      "0.0.0.0",
      "--proxy-protocol",
      "--data",
      book,
      ...io,
    ]);
    // The warning must not pass for the start line, which scripts read the port from.
    assert.match(server.startLine, /loaded 2 entries from .*; listening on 0\.0\.0\.0:\d+/);
    const warning = await server.stderr.waitFor(/protected mode/);
    assert.match(
      warning.line,
      / warn protected mode: the server listens on 0\.0\.0\.0:\d+ with no --allow, so only loopback clients are served; give --allow CIDR \(or --allow any\)/,
    );
    const local = await repliesTo(
      server.port,
      concat([proxyFrom("127.0.0.5"), encodeQuery(ADA)]),
      1,
    );
    assert.deepEqual(local, [{ status: STATUS_FOUND, text: "Ada Lovelace" }]);
    const far = await repliesTo(server.port, concat([proxyFrom("192.0.2.7"), encodeQuery(ADA)]), 2);
    assert.equal(far.length, 1, "one reply, then the close");
    assert.equal(far[0].status, STATUS_FORBIDDEN);
    assert.match(far[0].text, /protected mode .*--allow CIDR \(or --allow any\)/);
    const refused = await server.stderr.waitFor(/^refused|info refused/);
    assert.match(refused.line, /client=192\.0\.2\.7 reason=protected_mode/);
  },
);

testEachIo(
  "--allow any on 0.0.0.0 serves every client, with no protected-mode warning",
  async (io, book) => {
    await using server = await ServerProcess.start([
      "--host",
      "0.0.0.0",
      "--proxy-protocol",
      "--allow",
      "any",
      "--data",
      book,
      ...io,
    ]);
    const far = await repliesTo(server.port, concat([proxyFrom("192.0.2.7"), encodeQuery(ADA)]), 1);
    assert.deepEqual(far, [{ status: STATUS_FOUND, text: "Ada Lovelace" }]);
    assert.doesNotMatch(server.stderr.text, /protected mode/);
  },
);

// ---------------------------------------------------------------------------
// The default connection cap per client

/** The default --max-connections, and a quarter of it: the default cap per client. */
const DEFAULT_MAX_CONNECTIONS = 1024;
const DEFAULT_PER_CLIENT = DEFAULT_MAX_CONNECTIONS / 4;

testEachIo(
  "by default one client holds at most a quarter of --max-connections; another is still served",
  async (io, book) => {
    await using server = await ServerProcess.start(["--data", book, ...io]);
    const held: WireClient<WireConn>[] = [];
    try {
      for (let i = 0; i < DEFAULT_PER_CLIENT; i++) {
        const client = await WireClient.connectFrom(server.port, "127.0.0.2");
        held.push(client);
        assert.equal((await client.query(ADA)).status, STATUS_FOUND, `connection ${i + 1}`);
      }
      const over = await WireClient.connectFrom(server.port, "127.0.0.2");
      held.push(over);
      const refused = await over.readUntilClosed();
      assert.deepEqual(refused.map((reply) => reply.status), [STATUS_RATE_LIMITED]);
      assert.match(refused[0].text, /already has 256 connections open/);
      const other = await WireClient.connectFrom(server.port, "127.0.0.3");
      held.push(other);
      assert.deepEqual(await other.query(ADA), { status: STATUS_FOUND, text: "Ada Lovelace" });
    } finally {
      for (const client of held) client.close();
    }
  },
);

testEachIo(
  "--max-connections-per-client 0 lifts the default cap (a balancer without PROXY headers)",
  async (io, book) => {
    await using server = await ServerProcess.start([
      "--data",
      book,
      "--max-connections",
      "8",
      "--max-connections-per-client",
      "0",
      ...io,
    ]);
    const held: WireClient<WireConn>[] = [];
    try {
      for (let i = 0; i < 8; i++) {
        const client = await WireClient.connectFrom(server.port, "127.0.0.2");
        held.push(client);
        assert.equal((await client.query(ADA)).status, STATUS_FOUND, `connection ${i + 1}`);
      }
    } finally {
      for (const client of held) client.close();
    }
  },
);

// ---------------------------------------------------------------------------
// Metrics and logs

testEachIo("/metrics counts refusals by reason, and the tracked clients", async (io, book) => {
  await using server = await ServerProcess.start([
    "--data",
    book,
    "--allow",
    "127.0.0.2/31",
    // The metrics port obeys --allow too: let the scraper (this test, from 127.0.0.1) in.
    "--allow",
    "127.0.0.1",
    "--rate-limit",
    "3/1h",
    "--found-limit",
    "2/1h",
    "--max-connections-per-client",
    "1",
    "--metrics-port",
    "0",
    ...io,
  ]);
  const sample = async (name: string, labels = "") =>
    metricValue(await metricsOf(server), name, labels);
  const refusals = (reason: string) => sample("addrbook_refusals_total", `{reason="${reason}"}`);
  assert.equal(await sample("addrbook_tracked_clients"), 0);
  const reasons = [
    "not_allowed",
    "protected_mode",
    "untrusted_proxy",
    "rate_limited",
    "found_limit",
    "client_connections",
  ];
  for (const reason of reasons) {
    assert.equal(await refusals(reason), 0, reason);
  }

  const finder = await WireClient.connectFrom(server.port, "127.0.0.2");
  const asker = await WireClient.connectFrom(server.port, "127.0.0.3");
  try {
    await finder.write(encodeQueries([ADA, GRACE, ADA]));
    assert.deepEqual((await finder.readReplies(3)).map((r) => r.status), [
      STATUS_FOUND,
      STATUS_FOUND,
      STATUS_RATE_LIMITED,
    ]);
    await asker.write(encodeQueries([NOBODY, NOBODY, NOBODY, NOBODY]));
    assert.deepEqual((await asker.readReplies(4)).map((r) => r.status), [
      STATUS_NOT_FOUND,
      STATUS_NOT_FOUND,
      STATUS_NOT_FOUND,
      STATUS_RATE_LIMITED,
    ]);
    const second = await WireClient.connectFrom(server.port, "127.0.0.3");
    try {
      assert.deepEqual((await second.readUntilClosed()).map((r) => r.status), [
        STATUS_RATE_LIMITED,
      ]);
    } finally {
      second.close();
    }
    const stranger = await WireClient.connectFrom(server.port, "127.0.0.4");
    try {
      assert.deepEqual((await stranger.readUntilClosed()).map((r) => r.status), [
        STATUS_FORBIDDEN,
      ]);
    } finally {
      stranger.close();
    }
    await waitFor(async () => await refusals("not_allowed") === 1, "the not_allowed refusal");
    assert.equal(await refusals("rate_limited"), 1);
    assert.equal(await refusals("found_limit"), 1);
    assert.equal(await refusals("client_connections"), 1);
    assert.equal(await sample("addrbook_tracked_clients"), 2, "a refused stranger is not tracked");
    assert.equal(
      await sample("addrbook_replies_total", '{front_end="binary",status="RATE_LIMITED"}'),
      3,
    );
    assert.equal(
      await sample("addrbook_replies_total", '{front_end="binary",status="FORBIDDEN"}'),
      1,
    );
  } finally {
    finder.close();
    asker.close();
  }
});

testEachIo(
  "a refusal is logged once at info with the client and reason, not once per query, never an email",
  async (io, book) => {
    await using server = await ServerProcess.start([
      "--data",
      book,
      "--rate-limit",
      "1/1h",
      ...io,
    ]);
    const client = await WireClient.connectFrom(server.port, "127.0.0.2");
    try {
      await client.write(encodeQueries(Array(REFUSED_QUERIES + 1).fill(ADA)));
      const replies = await client.readReplies(REFUSED_QUERIES + 1);
      assert.equal(replies[0].status, STATUS_FOUND);
      assert.ok(replies.slice(1).every((reply) => reply.status === STATUS_RATE_LIMITED));
    } finally {
      client.close();
    }
    // A later event on the same thread: once its line is out, the refusals' lines are too.
    const broken = await repliesTo(server.port, new TextEncoder().encode("GET / HTTP/1.1\r\n"), 1);
    assert.equal(broken[0].status, STATUS_PROTOCOL_ERROR);
    await server.stderr.waitFor(/protocol error/);
    const refusals = server.stderr.lines.filter((line) => /refused/.test(line));
    assert.equal(
      refusals.length,
      1,
      `one line for ${REFUSED_QUERIES} refusals:\n${server.stderr.text}`,
    );
    assert.match(refusals[0], / info refused client=127\.0\.0\.2 reason=rate_limited$/);
    assertNoPersonalData(server.stderr.lines, BOOK.map(([, name]) => name));
  },
);

// ---------------------------------------------------------------------------
// The client against a refusing server

Deno.test("deno task client: FORBIDDEN and RATE_LIMITED from the real server print one message, exit 2", async () => {
  await using dir = await tempDir("addrbook_access_cli_test_");
  const book = await writeCsvBook(dir.path, BOOK);
  {
    await using server = await ServerProcess.start(["--data", book, "--allow", "127.0.0.2"]);
    const run = await runClientToExit(["--port", String(server.port), ADA]);
    assert.equal(run.code, EXIT_USAGE, run.stderr);
    assert.equal(run.stdout, "");
    assert.match(
      run.stderr,
      /^client: Forbidden by the server: This client's address is not in the server's --allow list\./,
    );
    assert.equal(run.stderr.trimEnd().split("\n").length, 1, run.stderr);
    assertNoStackTrace(run.stderr);
  }
  {
    await using server = await ServerProcess.start(["--data", book, "--rate-limit", "1/1h"]);
    // --no-wait stops at once; by default the client waits, up to --max-wait, then stops.
    const run = await runClientToExit(["--no-wait", "--port", String(server.port), ADA, GRACE]);
    assert.equal(run.code, EXIT_USAGE, run.stderr);
    assert.equal(run.stdout, "Ada Lovelace\n");
    assert.match(
      run.stderr,
      /^client: Rate limited by the server: This client asked more than 1 query in 1 h \(--rate-limit\)/,
    );
    assert.equal(run.stderr.trimEnd().split("\n").length, 1, run.stderr);
    assertNoStackTrace(run.stderr);
    const waited = await runClientToExit(["--max-wait", "0.5", "--port", String(server.port), ADA]);
    assert.equal(waited.code, EXIT_USAGE, waited.stderr);
    assert.equal(waited.stdout, "");
    assert.match(
      waited.stderr,
      /^client: Rate limited by the server: This client asked more than 1 query in 1 h \(--rate-limit\); later queries are answered once it allows; still refused after waiting 0\.\d s\.\n?$/,
    );
    // --json shows the status name, and the message still goes to stderr.
    const json = await runClientToExit(["--json", "--no-wait", "--port", String(server.port), ADA]);
    assert.equal(json.code, EXIT_USAGE, json.stderr);
    assert.deepEqual(JSON.parse(json.stdout), {
      email: ADA,
      status: "RATE_LIMITED",
      message:
        "This client asked more than 1 query in 1 h (--rate-limit); later queries are answered once it allows.",
    });
    assert.match(json.stderr, /^client: Rate limited by the server: /);
  }
});
