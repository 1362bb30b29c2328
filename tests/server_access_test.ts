/**
 * End-to-end tests of the access rules and per-client limits (issue 9) on
 * an in-process server, on both event loops: `--allow`, protected mode,
 * `--rate-limit`, `--found-limit`, `--max-connections-per-client`, limits
 * shared by two worker threads, and the PROXY protocol header.
 *
 * Other hosts are played by sockets bound to other loopback addresses
 * (127.0.0.2, 127.0.0.3, ...) before they connect, so the server sees each
 * as a different client; clients beyond loopback (192.0.2.7, IPv6
 * networks) arrive through PROXY headers from a trusted peer.
 *
 * The command line, the metrics endpoint and the logs of a server process
 * are tested in tests/server_access_cli_test.ts.
 */

import { BINARY_FRONT_END } from "../wire/binary.ts";
import assert from "node:assert/strict";
import type { AccessRules } from "../access/policy.ts";
import { ClientLimits, type ClientLimitsConfig, parseAllowance } from "../access/limits.ts";
import { Logger } from "../common/log.ts";
import { RepeatSummary } from "../common/log_repeats.ts";
import { counterRow, createCounterTable } from "../session/counters.ts";
import {
  encodeQueries,
  encodeQuery,
  type Reply,
  STATUS_BAD_REQUEST,
  STATUS_FORBIDDEN,
  STATUS_FOUND,
  STATUS_NAMES,
  STATUS_NOT_FOUND,
  STATUS_PROTOCOL_ERROR,
  STATUS_RATE_LIMITED,
  STATUS_SERVER_BUSY,
} from "../protocol.ts";
import { encodeProxyHeader, type ProxyHeaderSpec } from "../access/proxy_header.ts";
import {
  createSessionContext,
  DEFAULT_LIMITS,
  reportRepeatedRefusals,
  Session,
} from "../session/session.ts";
import { makeBook, PEOPLE } from "../testing/books.ts";
import { waitFor, withDeadline } from "../testing/deadlines.ts";
import { concat } from "../testing/frames.ts";
import {
  startTestServer,
  type TestServer,
  type TestServerOptions,
} from "../testing/in_process_server.ts";
import { IO_LOOPS } from "../testing/io_loops.ts";
import { metricValue, waitForOpenConnections } from "../testing/metrics.ts";
import { assertNoPersonalData } from "../testing/personal_data.ts";
import {
  WireClient,
  type WireConn,
  withWireClient,
  withWireClientFrom,
} from "../testing/wire_client.ts";

// ---------------------------------------------------------------------------
// Helpers

const [ADA, GRACE, ALAN] = PEOPLE.map(([email]) => email);
const NOBODY = "nobody@example.com";
/** A client address beyond loopback, from the documentation range (RFC 5737). */
const FAR_CLIENT = "192.0.2.7";
const FRONT_END = { address: "198.51.100.1", port: 8080 };
const FRONT_END_V6 = { address: "2001:db8:ffff::1", port: 8080 };
/** Connections from one source, fresh each, so that SO_REUSEPORT spreads them over both threads. */
const SPREAD_CONNECTIONS = 20;
/** Random, truncated and mutated PROXY headers the fuzz test sends. */
const FUZZ_HEADERS = 300;
/** Fuzz connections open at once. */
const FUZZ_BATCH = 25;
const SHORT_TIMEOUT_MS = 300;

/** Access rules with nothing restricted, to spread the test's own over. */
const OPEN: AccessRules = { protectedMode: false, proxyProtocol: false };

/** Registers `fn` once per event loop, with a fresh server started with `options` on it. */
function accessTest(
  name: string,
  options: TestServerOptions,
  fn: (test: TestServer) => Promise<void>,
): void {
  for (const io of IO_LOOPS) {
    Deno.test(`${name} [--io ${io}]`, async () => {
      const test = await startTestServer({ io: io as "epoll" | "deno", ...options });
      try {
        await fn(test);
      } finally {
        await test.server.close();
      }
      assertNoPersonalData(test.lines);
    });
  }
}

/** Per-client limits from the flags' own syntax. */
function limits(flags: { rate?: string; found?: string; perClient?: number }): ClientLimitsConfig {
  return {
    rate: flags.rate === undefined ? undefined : parseAllowance("--rate-limit", flags.rate),
    found: flags.found === undefined ? undefined : parseAllowance("--found-limit", flags.found),
    maxConnectionsPerClient: flags.perClient,
  };
}

/** A PROXY header naming `source` as the client, in version 1 or 2. */
function proxyFrom(version: 1 | 2, address: string, extra: Partial<ProxyHeaderSpec> = {}) {
  const v6 = address.includes(":");
  return encodeProxyHeader({
    version,
    source: { address, port: 40000 },
    destination: v6 ? FRONT_END_V6 : FRONT_END,
    ...extra,
  });
}

/** The statuses of some replies. */
function statuses(replies: readonly Reply[]): number[] {
  return replies.map((reply) => reply.status);
}

/** Log lines of a refusal of `client` for `reason`. */
function refusalLines(lines: readonly string[], client: string, reason: string): string[] {
  return lines.filter((line) =>
    / info refused /.test(line) && line.includes(`client=${client} `) &&
    line.includes(`reason=${reason}`)
  );
}

/**
 * Waits for a log line that `test` accepts, and returns every such line: a
 * worker thread's lines reach the log after the replies they go with.
 */
async function linesWhen(
  lines: readonly string[],
  test: (line: string) => boolean,
): Promise<string[]> {
  await waitFor(() => lines.some(test), "the log line awaited");
  return lines.filter(test);
}

/** Waits for the log line refusing `client` for `reason`, and returns every such line. */
function refusalLinesOnceLogged(lines: readonly string[], client: string, reason: string) {
  return linesWhen(lines, (line) => refusalLines([line], client, reason).length > 0);
}

/** Asserts that a connection got exactly one reply of `status`, then was closed. */
async function assertRefusedThenClosed(
  client: WireClient<WireConn>,
  status: number,
  text: RegExp,
): Promise<void> {
  const replies = await client.readUntilClosed();
  assert.deepEqual(statuses(replies), [status], `one ${status} reply, then the close`);
  assert.match(replies[0].text, text);
  assert.doesNotMatch(replies[0].text, /@/, "a refusal never holds an email");
}

// ---------------------------------------------------------------------------
// --allow and protected mode

accessTest(
  "--allow 127.0.0.2/32 serves 127.0.0.2 and refuses 127.0.0.3 with FORBIDDEN, then closes",
  { access: { ...OPEN, allow: ["127.0.0.2/32"] } },
  async ({ port, lines, server }) => {
    await withWireClientFrom(port, "127.0.0.2", async (allowed) => {
      assert.deepEqual(await allowed.query(ADA), { status: STATUS_FOUND, text: "Ada Lovelace" });
      assert.equal((await allowed.query(NOBODY)).status, STATUS_NOT_FOUND);
    });
    await withWireClientFrom(port, "127.0.0.3", async (refused) => {
      // The refusal comes at once: the client need not send anything.
      await assertRefusedThenClosed(refused, STATUS_FORBIDDEN, /--allow list/);
    });
    await withWireClient(port, async (local) => {
      // Loopback is not special once --allow is given.
      await assertRefusedThenClosed(local, STATUS_FORBIDDEN, /--allow list/);
    });
    assert.equal(
      (await refusalLinesOnceLogged(lines, "127.0.0.3", "not_allowed")).length,
      1,
      lines.join("\n"),
    );
    const metrics = server.metrics();
    assert.equal(metricValue(metrics, "addrbook_refusals_total", '{reason="not_allowed"}'), 2);
    assert.equal(
      metricValue(metrics, "addrbook_replies_total", '{front_end="binary",status="FORBIDDEN"}'),
      2,
    );
  },
);

accessTest(
  "--allow takes IPv4 and IPv6 ranges together, and any",
  { access: { ...OPEN, allow: ["127.0.0.4/30,::1", "10.0.0.0/8"] } },
  async ({ port }) => {
    for (const source of ["127.0.0.4", "127.0.0.7"]) {
      await withWireClientFrom(port, source, async (client) => {
        assert.equal((await client.query(ADA)).status, STATUS_FOUND, source);
      });
    }
    await withWireClientFrom(port, "127.0.0.8", async (client) => {
      await assertRefusedThenClosed(client, STATUS_FORBIDDEN, /--allow list/);
    });
  },
);

accessTest(
  "protected mode serves a loopback client and refuses a far one (via PROXY) naming --allow",
  { access: { protectedMode: true, proxyProtocol: true } },
  async ({ port, lines, server }) => {
    await withWireClient(port, async (client) => {
      await client.write(concat([proxyFrom(1, "127.0.0.9"), encodeQuery(ADA)]));
      assert.equal((await client.readReply())?.status, STATUS_FOUND);
    });
    await withWireClient(port, async (client) => {
      await client.write(concat([proxyFrom(2, FAR_CLIENT), encodeQuery(ADA)]));
      await assertRefusedThenClosed(
        client,
        STATUS_FORBIDDEN,
        /protected mode.*--allow CIDR \(or --allow any\)/,
      );
    });
    assert.equal(
      (await refusalLinesOnceLogged(lines, FAR_CLIENT, "protected_mode")).length,
      1,
      lines.join("\n"),
    );
    // The log's reason is the metric's label.
    const metrics = server.metrics();
    assert.equal(metricValue(metrics, "addrbook_refusals_total", '{reason="protected_mode"}'), 1);
    assert.equal(metricValue(metrics, "addrbook_refusals_total", '{reason="not_allowed"}'), 0);
  },
);

// ---------------------------------------------------------------------------
// --rate-limit, --found-limit, --max-connections-per-client

accessTest(
  "--rate-limit 5/1s: the 6th query is RATE_LIMITED, the connection stays open, and it recovers",
  { clientLimits: limits({ rate: "5/1s" }) },
  async ({ port, server }) => {
    await withWireClientFrom(port, "127.0.0.2", async (client) => {
      await client.write(encodeQueries([ADA, NOBODY, GRACE, "not an email", ALAN, ADA]));
      const replies = await client.readReplies(6);
      assert.deepEqual(statuses(replies), [
        STATUS_FOUND,
        STATUS_NOT_FOUND,
        STATUS_FOUND,
        STATUS_BAD_REQUEST,
        STATUS_FOUND,
        STATUS_RATE_LIMITED,
      ]);
      assert.match(replies[5].text, /more than 5 queries in 1 s \(--rate-limit\)/);
      // Another client has its own allowance.
      await withWireClientFrom(port, "127.0.0.3", async (other) => {
        assert.equal((await other.query(ADA)).status, STATUS_FOUND);
      });
      // Refused queries take no allowance, so asking again and again ends once the window passes.
      let answer: Reply | undefined;
      await waitFor(
        async () => (answer = await client.query(ADA)).status !== STATUS_RATE_LIMITED,
        "the rate limit to allow a query again",
      );
      assert.deepEqual(answer, { status: STATUS_FOUND, text: "Ada Lovelace" });
      assert.ok(client.ending === undefined, "the connection stayed open throughout");
    });
    assert.ok(
      metricValue(server.metrics(), "addrbook_refusals_total", '{reason="rate_limited"}') >= 1,
    );
  },
);

accessTest(
  "--found-limit 3/1h: after 3 FOUND every query is RATE_LIMITED, misses included",
  { clientLimits: limits({ found: "3/1h" }) },
  async ({ port, server, lines }) => {
    await withWireClientFrom(port, "127.0.0.2", async (client) => {
      assert.equal((await client.query(NOBODY)).status, STATUS_NOT_FOUND, "misses are free");
      await client.write(encodeQueries([ADA, GRACE, ALAN]));
      assert.deepEqual(statuses(await client.readReplies(3)), Array(3).fill(STATUS_FOUND));
      for (const email of [ADA, NOBODY, "someone@else.example", "not an email"]) {
        const reply = await client.query(email);
        assert.equal(reply.status, STATUS_RATE_LIMITED, email);
        assert.match(reply.text, /received 3 found replies in 1 h \(--found-limit\)/);
      }
      assert.ok(client.ending === undefined, "the connection stays open");
    });
    // A new connection from the same client is still limited; another client is not.
    await withWireClientFrom(port, "127.0.0.2", async (again) => {
      assert.equal((await again.query(NOBODY)).status, STATUS_RATE_LIMITED);
    });
    await withWireClientFrom(port, "127.0.0.3", async (other) => {
      assert.equal((await other.query(ADA)).status, STATUS_FOUND);
    });
    assert.equal(
      metricValue(server.metrics(), "addrbook_refusals_total", '{reason="found_limit"}'),
      5,
    );
    assert.equal(
      (await refusalLinesOnceLogged(lines, "127.0.0.2", "found_limit")).length,
      1,
      lines.join("\n"),
    );
  },
);

accessTest(
  "--max-connections-per-client 2: the 3rd connection is RATE_LIMITED and closed; others unaffected",
  { clientLimits: limits({ perClient: 2 }) },
  async ({ port, server }) => {
    const first = await WireClient.connectFrom(port, "127.0.0.2");
    const second = await WireClient.connectFrom(port, "127.0.0.2");
    try {
      assert.equal((await first.query(ADA)).status, STATUS_FOUND);
      assert.equal((await second.query(ADA)).status, STATUS_FOUND);
      await withWireClientFrom(port, "127.0.0.2", async (third) => {
        await assertRefusedThenClosed(
          third,
          STATUS_RATE_LIMITED,
          /already has 2 connections open \(--max-connections-per-client\)/,
        );
      });
      await withWireClientFrom(port, "127.0.0.3", async (other) => {
        assert.equal((await other.query(ADA)).status, STATUS_FOUND);
      });
      assert.equal((await first.query(GRACE)).status, STATUS_FOUND, "open ones are untouched");
      second.close();
      await waitForOpenConnections(server, 1, "the second connection to close");
      await withWireClientFrom(port, "127.0.0.2", async (again) => {
        assert.equal((await again.query(ADA)).status, STATUS_FOUND, "a place was freed");
      });
    } finally {
      first.close();
      second.close();
    }
    assert.equal(
      metricValue(server.metrics(), "addrbook_refusals_total", '{reason="client_connections"}'),
      1,
    );
    assert.equal(
      metricValue(
        server.metrics(),
        "addrbook_replies_total",
        '{front_end="binary",status="RATE_LIMITED"}',
      ),
      1,
    );
    assert.equal(metricValue(server.metrics(), "addrbook_tracked_clients"), 2);
  },
);

accessTest(
  "a full table of tracked clients, every one with a connection open, serves a new client from the shared overflow slot",
  { clientLimits: { ...limits({ perClient: 4 }), capacity: 2 } },
  async ({ port, server }) => {
    const first = await WireClient.connectFrom(port, "127.0.0.2");
    const second = await WireClient.connectFrom(port, "127.0.0.3");
    try {
      assert.equal((await first.query(ADA)).status, STATUS_FOUND);
      assert.equal((await second.query(ADA)).status, STATUS_FOUND);
      await withWireClientFrom(port, "127.0.0.4", async (third) => {
        assert.equal((await third.query(ADA)).status, STATUS_FOUND, "in the overflow slot");
      });
      first.close();
      await waitForOpenConnections(server, 1, "the first client to leave");
      await withWireClientFrom(port, "127.0.0.4", async (third) => {
        assert.equal(
          (await third.query(ADA)).status,
          STATUS_FOUND,
          "the idle client was forgotten",
        );
      });
    } finally {
      first.close();
      second.close();
    }
    assert.equal(metricValue(server.metrics(), "addrbook_tracked_clients"), 2);
  },
);

accessTest(
  "two worker threads share one client's allowance: exactly N answers over many connections",
  { workers: 2, clientLimits: limits({ rate: "30/1h", found: "1000/1h" }) },
  async ({ port, server }) => {
    const perConnection = 5;
    const clients = await Promise.all(
      Array.from({ length: SPREAD_CONNECTIONS }, () => WireClient.connectFrom(port, "127.0.0.2")),
    );
    try {
      const replies = (await Promise.all(clients.map(async (client) => {
        await client.write(encodeQueries(Array(perConnection).fill(ADA)));
        return await client.readReplies(perConnection);
      }))).flat();
      const answered = replies.filter((reply) => reply.status === STATUS_FOUND).length;
      const limited = replies.filter((reply) => reply.status === STATUS_RATE_LIMITED).length;
      assert.equal(answered, 30, "the allowance is shared, never exceeded");
      assert.equal(limited, SPREAD_CONNECTIONS * perConnection - 30);
    } finally {
      for (const client of clients) client.close();
    }
    assert.equal(metricValue(server.metrics(), "addrbook_tracked_clients"), 1);
  },
);

// ---------------------------------------------------------------------------
// --write-timeout: a client that never reads, and one that reads slowly but steadily

/** A name so long that a few hundred replies outgrow every socket buffer on the way. */
const LONG_NAME = "N".repeat(60_000);
const LONG_EMAIL = "long@example.com";
/** Replies of {@linkcode LONG_NAME} a test asks for: megabytes, more than the buffers hold. */
const LONG_REPLIES = 150;
const WRITE_TIMEOUT_MS = 1000;
/** How much the slow reader takes at a time, and how long it waits in between. */
const SLOW_READ_BYTES = 64 * 1024;
const SLOW_READ_PAUSE_MS = 20;

const WRITE_TIMED: TestServerOptions = {
  book: makeBook([...PEOPLE, [LONG_EMAIL, LONG_NAME]]),
  limits: { writeTimeoutMs: WRITE_TIMEOUT_MS, idleTimeoutMs: 0, frameTimeoutMs: 0 },
};

accessTest(
  "--write-timeout closes a connection that takes none of its waiting replies",
  WRITE_TIMED,
  async ({ port, server }) => {
    await withWireClient(port, async (client) => {
      await client.write(encodeQueries(Array(LONG_REPLIES).fill(LONG_EMAIL)));
      // Never read: the replies fill both socket buffers, then wait in the server.
      await waitFor(
        () => metricValue(server.metrics(), "addrbook_timeouts_total", '{kind="write"}') === 1,
        "the write timeout",
      );
      await waitForOpenConnections(server, 0, "the stalled connection to be closed");
    });
  },
);

accessTest(
  "--write-timeout never closes a slow but steady reader",
  WRITE_TIMED,
  async ({ port, server }) => {
    await withWireClient(port, async (client) => {
      await client.write(encodeQueries(Array(LONG_REPLIES).fill(LONG_EMAIL)));
      const expected = LONG_REPLIES * (6 + LONG_NAME.length);
      const buffer = new Uint8Array(SLOW_READ_BYTES);
      let received = 0;
      // Bounded: every read has a deadline and brings at least one byte of a known total.
      while (received < expected) {
        const count = await withDeadline(client.conn.read(buffer), "a slow read");
        assert.ok(count !== null, `closed after ${received} of ${expected} bytes`);
        received += count;
        // The pause is the behaviour under test: slower than the server writes, never stopping.
        await new Promise((resolve) => setTimeout(resolve, SLOW_READ_PAUSE_MS));
      }
      assert.equal(received, expected);
      assert.deepEqual(await client.query(ADA), { status: STATUS_FOUND, text: "Ada Lovelace" });
    });
    assert.equal(metricValue(server.metrics(), "addrbook_timeouts_total", '{kind="write"}'), 0);
  },
);

/** Identities the cycling tests show the server: many times the table's capacity. */
const CYCLED_IDENTITIES = 200;
const SMALL_TABLE = 16;

/** One connection that asks for ADA, from `source`, with a PROXY v2 header naming `proxied` if given. */
async function findAdaFrom(port: number, source: string, proxied?: string): Promise<number> {
  return await withWireClientFrom(port, source, async (client) => {
    const query = encodeQuery(ADA);
    await client.write(proxied === undefined ? query : concat([proxyFrom(2, proxied), query]));
    return (await client.readReply())!.status;
  });
}

const CYCLES: {
  how: string;
  options: TestServerOptions;
  /** The limited client's source, and the client its PROXY header names, if any. */
  limited: [string, string?];
  identity: (i: number) => [string, string?];
}[] = [
  {
    how: "127.0.0.0/8 sources",
    options: {},
    limited: ["127.0.0.2"],
    identity: (i) => [`127.1.${i >> 8}.${i & 0xff}`],
  },
  {
    how: "PROXY v2 headers",
    options: { access: { protectedMode: false, proxyProtocol: true } },
    limited: ["127.0.0.2", FAR_CLIENT],
    identity: (i) => ["127.0.0.3", `10.0.${i >> 8}.${i & 0xff}`],
  },
];

for (const { how, options, limited, identity } of CYCLES) {
  accessTest(
    `cycling through many identities (${how}) does not reset a limited client's found limit`,
    { ...options, clientLimits: { ...limits({ found: "1/1h" }), capacity: SMALL_TABLE } },
    async ({ port, server }) => {
      assert.equal(await findAdaFrom(port, ...limited), STATUS_FOUND);
      assert.equal(await findAdaFrom(port, ...limited), STATUS_RATE_LIMITED);
      const seen = new Map<number, number>();
      for (let i = 0; i < CYCLED_IDENTITIES; i++) {
        const [source, proxied] = identity(i);
        const status = await findAdaFrom(port, source, proxied);
        seen.set(status, (seen.get(status) ?? 0) + 1);
      }
      // The table filled with clients that used their allowance (all but the limited client's
      // slot: SMALL_TABLE - 1 of them); the rest shared the overflow slot's one FOUND.
      assert.deepEqual(Object.fromEntries(seen), {
        [STATUS_FOUND]: SMALL_TABLE - 1 + 1,
        [STATUS_RATE_LIMITED]: CYCLED_IDENTITIES - SMALL_TABLE,
      });
      assert.equal(
        await findAdaFrom(port, ...limited),
        STATUS_RATE_LIMITED,
        "still over its found limit",
      );
      assert.equal(metricValue(server.metrics(), "addrbook_tracked_clients"), SMALL_TABLE);
    },
  );
}

// ---------------------------------------------------------------------------
// The PROXY protocol

/** PROXY headers from loopback peers (the default --trusted-proxy), with an --allow list. */
const PROXIED: TestServerOptions = {
  access: { protectedMode: false, proxyProtocol: true, allow: ["192.0.2.0/24", "2001:db8::/32"] },
  clientLimits: limits({ rate: "3/1h" }),
};

for (const version of [1, 2] as const) {
  accessTest(
    `PROXY v${version} from a trusted peer: the header's source is the client`,
    PROXIED,
    async ({ port, lines }) => {
      // Allowed by its header's source, although the peer (127.0.0.2) is not in --allow.
      await withWireClientFrom(port, "127.0.0.2", async (client) => {
        await client.write(concat([proxyFrom(version, FAR_CLIENT), encodeQuery(ADA)]));
        assert.deepEqual(await client.readReply(), { status: STATUS_FOUND, text: "Ada Lovelace" });
      });
      // Its limits follow the header's source, whichever peer relays it.
      await withWireClientFrom(port, "127.0.0.3", async (client) => {
        await client.write(
          concat([proxyFrom(version, FAR_CLIENT), encodeQueries([ADA, ADA, ADA])]),
        );
        assert.deepEqual(statuses(await client.readReplies(3)), [
          STATUS_FOUND,
          STATUS_FOUND,
          STATUS_RATE_LIMITED,
        ]);
      });
      await withWireClientFrom(port, "127.0.0.3", async (client) => {
        await client.write(concat([proxyFrom(version, "192.0.2.8"), encodeQuery(ADA)]));
        assert.equal((await client.readReply())?.status, STATUS_FOUND, "another client");
      });
      await withWireClientFrom(port, "127.0.0.2", async (client) => {
        await client.write(proxyFrom(version, "198.51.100.9"));
        await assertRefusedThenClosed(client, STATUS_FORBIDDEN, /--allow list/);
      });
      // Log lines name the client of the header, not the proxy.
      assert.equal(
        (await refusalLinesOnceLogged(lines, FAR_CLIENT, "rate_limited")).length,
        1,
        lines.join("\n"),
      );
      assert.equal((await refusalLinesOnceLogged(lines, "198.51.100.9", "not_allowed")).length, 1);
      assert.ok(!lines.some((line) => /client=127\.0\.0\.[23]\b/.test(line)), lines.join("\n"));
    },
  );
}

accessTest(
  "a protocol error after a PROXY header is logged with the proxy and the client it named",
  PROXIED,
  async ({ port, lines }) => {
    await withWireClient(port, async (client) => {
      await client.write(concat([proxyFrom(1, FAR_CLIENT), new TextEncoder().encode("GET /")]));
      await assertRefusedThenClosed(client, STATUS_PROTOCOL_ERROR, /^Frame type 0x47/);
    });
    const [line] = await linesWhen(lines, (line) => / warn protocol error /.test(line));
    assert.match(line, /peer=127\.0\.0\.1:\d+ client=192\.0\.2\.7 error=/, lines.join("\n"));
  },
);

accessTest(
  "PROXY header from a peer that is not a --trusted-proxy: FORBIDDEN at once, then close",
  { access: { ...OPEN, proxyProtocol: true, trustedProxies: "127.0.0.2" } },
  async ({ port, lines, server }) => {
    await withWireClientFrom(port, "127.0.0.3", async (client) => {
      await assertRefusedThenClosed(client, STATUS_FORBIDDEN, /trusted proxies only/);
    });
    await withWireClientFrom(port, "127.0.0.2", async (client) => {
      await client.write(concat([proxyFrom(2, FAR_CLIENT), encodeQuery(ADA)]));
      assert.equal((await client.readReply())?.status, STATUS_FOUND);
    });
    assert.equal(
      (await refusalLinesOnceLogged(lines, "127.0.0.3", "untrusted_proxy")).length,
      1,
      lines.join("\n"),
    );
    assert.equal(
      metricValue(server.metrics(), "addrbook_refusals_total", '{reason="untrusted_proxy"}'),
      1,
    );
  },
);

accessTest(
  "a trusted peer that sends a query with no PROXY header gets PROTOCOL_ERROR, then the close",
  PROXIED,
  async ({ port, lines }) => {
    await withWireClient(port, async (client) => {
      await client.write(encodeQuery(ADA));
      await assertRefusedThenClosed(client, STATUS_PROTOCOL_ERROR, /^PROXY header expected/);
    });
    await linesWhen(lines, (line) => / warn protocol error .*PROXY header expected/.test(line));
  },
);

for (const version of [1, 2] as const) {
  accessTest(
    `a PROXY v${version} header and a query split byte by byte are answered`,
    PROXIED,
    async ({ port }) => {
      await withWireClientFrom(port, "127.0.0.2", async (client) => {
        for (const byte of concat([proxyFrom(version, FAR_CLIENT), encodeQuery(ADA)])) {
          await client.write(Uint8Array.of(byte));
        }
        assert.deepEqual(await client.readReply(), { status: STATUS_FOUND, text: "Ada Lovelace" });
      });
    },
  );
}

accessTest(
  "a PROXY v2 header with TLVs is read past them",
  PROXIED,
  async ({ port }) => {
    const authority = new TextEncoder().encode("addrbook.example");
    const tlvs = concat([
      Uint8Array.of(0x02, 0, authority.length), // PP2_TYPE_AUTHORITY
      authority,
      Uint8Array.of(0x04, 0, 5, 0, 0, 0, 0, 0), // PP2_TYPE_NOOP
      Uint8Array.of(0x20, 0, 5, 0x01, 0, 0, 0, 0), // PP2_TYPE_SSL, client verified, no sub-TLVs
    ]);
    await withWireClient(port, async (client) => {
      await client.write(concat([proxyFrom(2, FAR_CLIENT, { tlvs }), encodeQuery(GRACE)]));
      assert.deepEqual(await client.readReply(), { status: STATUS_FOUND, text: "Grace Hopper" });
    });
  },
);

accessTest(
  "an IPv6 client is counted by its /64: two sources in one /64 share a rate limit",
  PROXIED,
  async ({ port, lines }) => {
    const ask = async (source: string, count: number, version: 1 | 2 = 1) =>
      await withWireClient(port, async (client) => {
        const queries = encodeQueries(Array(count).fill(ADA));
        await client.write(concat([proxyFrom(version, source), queries]));
        return statuses(await client.readReplies(count));
      });
    assert.deepEqual(await ask("2001:db8:1:2::7", 2), [STATUS_FOUND, STATUS_FOUND]);
    // The same network in a v2 header (TCP over IPv6) is the same client.
    assert.deepEqual(await ask("2001:db8:1:2:ffff:eeee:dddd:9", 2, 2), [
      STATUS_FOUND,
      STATUS_RATE_LIMITED,
    ]);
    assert.deepEqual(await ask("2001:db8:1:3::7", 3), Array(3).fill(STATUS_FOUND));
    await linesWhen(lines, (line) => line.includes("client=2001:db8:1:2:ffff:eeee:dddd:9 "));
  },
);

accessTest(
  "a PROXY v2 LOCAL header: the peer's own address is the client",
  { access: { ...OPEN, proxyProtocol: true, allow: ["127.0.0.2"] } },
  async ({ port }) => {
    await withWireClientFrom(port, "127.0.0.2", async (client) => {
      await client.write(concat([encodeProxyHeader({ version: 2 }), encodeQuery(ADA)]));
      assert.equal((await client.readReply())?.status, STATUS_FOUND);
    });
    await withWireClientFrom(port, "127.0.0.3", async (client) => {
      await client.write(concat([encodeProxyHeader({ version: 2 }), encodeQuery(ADA)]));
      await assertRefusedThenClosed(client, STATUS_FORBIDDEN, /--allow list/);
    });
    await withWireClientFrom(port, "127.0.0.3", async (client) => {
      // A v1 UNKNOWN header means the same.
      await client.write(concat([encodeProxyHeader({ version: 1 }), encodeQuery(ADA)]));
      await assertRefusedThenClosed(client, STATUS_FORBIDDEN, /--allow list/);
    });
  },
);

accessTest(
  "a trusted peer that sends half a PROXY header is closed at the frame timeout",
  { ...PROXIED, limits: { frameTimeoutMs: SHORT_TIMEOUT_MS, idleTimeoutMs: 0 } },
  async ({ port, server }) => {
    const header = proxyFrom(2, FAR_CLIENT);
    await withWireClient(port, async (client) => {
      await client.write(header.subarray(0, 20));
      assert.deepEqual(await client.readUntilClosed(), [], "closed without a reply");
    });
    await withWireClient(port, async (client) => {
      // Even a header never begun counts: the connection must start with one.
      assert.deepEqual(await client.readUntilClosed(), [], "closed without a reply");
    });
    assert.equal(metricValue(server.metrics(), "addrbook_timeouts_total", '{kind="frame"}'), 2);
  },
);

/** A small seeded generator, so that a failing fuzz case can be replayed. */
function randomBytes(seed: number): (bound: number) => number {
  let state = seed >>> 0;
  return (bound) => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) % bound);
  };
}

/** One fuzz case: a valid header (either version) truncated, mutated, or pure noise, maybe a query after. */
function fuzzCase(random: (bound: number) => number): Uint8Array {
  const sources = [FAR_CLIENT, "198.51.100.9", "2001:db8::5", "127.0.0.1"];
  const valid = proxyFrom(random(2) === 0 ? 1 : 2, sources[random(sources.length)]);
  let bytes: Uint8Array;
  // Each kind as likely as another, so that 300 cases reach every ending with any seed: an exact
  // header with a query after from an allowed source (FOUND, the rarest) is 1 case in 20.
  switch (random(5)) {
    case 0: // truncated
      bytes = valid.slice(0, random(valid.length));
      break;
    case 1: { // a few bytes changed
      bytes = valid.slice();
      for (let i = random(4); i >= 0; i--) bytes[random(bytes.length)] = random(256);
      break;
    }
    case 2: // noise after a plausible start
      bytes = concat([
        valid.subarray(0, random(16)),
        Uint8Array.from({ length: random(64) }, () => random(256)),
      ]);
      break;
    case 3: // valid
      bytes = valid;
      break;
    default: // valid, with a byte or a few past its end
      bytes = concat([valid, Uint8Array.from({ length: 1 + random(8) }, () => random(256))]);
  }
  return random(2) === 0 ? concat([bytes, encodeQuery(ADA)]) : bytes;
}

const WELL_FORMED = new Set([
  STATUS_FOUND,
  STATUS_NOT_FOUND,
  STATUS_BAD_REQUEST,
  STATUS_PROTOCOL_ERROR,
  STATUS_SERVER_BUSY,
  STATUS_FORBIDDEN,
  STATUS_RATE_LIMITED,
]);

accessTest(
  `fuzz: ${FUZZ_HEADERS} random, truncated and mutated PROXY headers get well-formed replies or a close`,
  { ...PROXIED, clientLimits: undefined, limits: { frameTimeoutMs: 2000 } },
  async ({ port }) => {
    const seed = Date.now();
    const random = randomBytes(seed);
    const cases = Array.from({ length: FUZZ_HEADERS }, () => fuzzCase(random));
    const outcomes = new Set<string>();
    for (let start = 0; start < cases.length; start += FUZZ_BATCH) {
      await Promise.all(
        cases.slice(start, start + FUZZ_BATCH).map((bytes, i) =>
          withWireClient(port, async (client) => {
            const what = `seed ${seed}, case ${start + i}: ${Array.from(bytes).join(",")}`;
            try {
              await client.write(bytes);
              await client.closeWrite();
            } catch {
              // The server may have closed already after refusing the first bytes.
            }
            const replies = await client.readUntilClosed();
            for (const reply of replies) assert.ok(WELL_FORMED.has(reply.status), what);
            const refusals = replies.filter((r) =>
              r.status === STATUS_PROTOCOL_ERROR || r.status === STATUS_FORBIDDEN
            );
            assert.ok(refusals.length <= 1, `at most one refusal, the last reply: ${what}`);
            outcomes.add(replies.length === 0 ? "silent close" : STATUS_NAMES[replies[0].status]);
          })
        ),
      );
    }
    // Each kind of ending was reached, so the cases do test the parser's paths.
    for (const outcome of ["silent close", "PROTOCOL_ERROR", "FORBIDDEN", "FOUND"]) {
      assert.ok(outcomes.has(outcome), `seed ${seed}: no case ended in ${outcome}`);
    }
    await withWireClient(port, async (client) => {
      await client.write(concat([proxyFrom(1, FAR_CLIENT), encodeQuery(ADA)]));
      assert.deepEqual(await client.readReply(), { status: STATUS_FOUND, text: "Ada Lovelace" });
    });
  },
);

// ---------------------------------------------------------------------------
// The refusal log, on a session driven by hand: its repeat interval is a minute on a server

Deno.test("a refusal repeated after the log interval is logged again with the count of repeats", () => {
  const lines: string[] = [];
  const context = createSessionContext({
    frontEnd: BINARY_FRONT_END,
    book: makeBook(),
    limits: DEFAULT_LIMITS,
    counters: counterRow(createCounterTable(1), 0),
    openConnections: new Int32Array(new SharedArrayBuffer(4)),
    log: new Logger({ level: "info", write: (line) => lines.push(line) }),
    clientLimits: ClientLimits.create(limits({ rate: "1/1h" })).shared,
  });
  context.refusals = new RepeatSummary({ intervalMs: 1000 });
  const session = new Session(context, 0, () => ({ hostname: FAR_CLIENT, port: 40000 }));
  const send = (emails: string[], now: number) => {
    const bytes = encodeQueries(emails);
    session.receive(bytes, bytes.length, now);
    session.wrote(session.outputLength, now);
  };
  send([ADA, ADA, ADA], 0);
  send([ADA], 500);
  assert.equal(lines.length, 1, lines.join("\n"));
  assert.match(lines[0], / info refused client=192\.0\.2\.7 reason=rate_limited$/);
  // Two repeats went unlogged; the first after the interval reports them with itself.
  send([ADA], 1500);
  assert.equal(lines.length, 2, lines.join("\n"));
  assert.match(lines[1], / info refused client=192\.0\.2\.7 reason=rate_limited count=3$/);
  // The drivers' sweep reports repeats that no later refusal carried.
  send([ADA, ADA], 1700);
  reportRepeatedRefusals(context, 2000);
  assert.equal(lines.length, 2, "not before the interval");
  reportRepeatedRefusals(context, 2600);
  assert.equal(lines.length, 3, lines.join("\n"));
  assert.match(
    lines[2],
    / info refusals repeated client=192\.0\.2\.7 reason=rate_limited count=2$/,
  );
  session.abort();
});
