import assert from "node:assert/strict";
import type { AddressBook } from "../book/addressbook.ts";
import { NOT_FOUND_TEXT } from "../wire/binary_answer.ts";
import {
  encodeQueries,
  encodeQuery,
  encodeReply,
  MAX_QUERY_BYTES,
  type Reply,
  STATUS_BAD_REQUEST,
  STATUS_FOUND,
  STATUS_NOT_FOUND,
  STATUS_PROTOCOL_ERROR,
  STATUS_SERVER_BUSY,
  TYPE_QUERY,
  TYPE_REPLY,
} from "../protocol.ts";
import { StartError, startServer } from "../server.ts";
import { makeBook, PEOPLE } from "../testing/books.ts";
import {
  DeadlineError,
  EVENT_DEADLINE_MS,
  waitFor,
  withDeadline,
  yieldToEventLoop,
} from "../testing/deadlines.ts";
import { concat, frame, header } from "../testing/frames.ts";
import { withTestClient, withTestServer } from "../testing/in_process_server.ts";
import { testOnEachLoop } from "../testing/io_loops.ts";
import { metricValue, waitForOpenConnections } from "../testing/metrics.ts";
import { WireClient, withWireClient } from "../testing/wire_client.ts";

const encoder = new TextEncoder();
/** A type byte that is neither `Q` nor `R`: ASCII `G`, as an HTTP GET would start. */
const TYPE_GET = 0x47;
/** Small timeouts, so tests that wait for one take a fraction of a second. */
const SHORT_TIMEOUT_MS = 200;
const SMALL_PENDING_WRITE = 64 * 1024;

/** A query and the reply it must get from the {@linkcode PEOPLE} book. */
interface Expected {
  query: string;
  status: number;
  name?: string;
}

/** The queries `0..count` cycling through found (in odd case), missing and bad ones. */
function mixedQueries(count: number): Expected[] {
  return Array.from({ length: count }, (_, i): Expected => {
    const [email, name] = PEOPLE[i % PEOPLE.length];
    switch (i % 3) {
      case 0:
        return { query: ` ${i % 2 ? email.toUpperCase() : email}\t`, status: STATUS_FOUND, name };
      case 1:
        return { query: `nobody${i}@example.com`, status: STATUS_NOT_FOUND };
      default:
        return { query: `not an email ${i}`, status: STATUS_BAD_REQUEST };
    }
  });
}

function assertReplies(replies: Reply[], expected: Expected[]): void {
  assert.equal(replies.length, expected.length, "one reply per query");
  for (let i = 0; i < expected.length; i++) {
    assert.equal(replies[i].status, expected[i].status, `status of reply ${i}`);
    if (expected[i].name !== undefined) assert.equal(replies[i].text, expected[i].name);
  }
}

/** Connects, then does one query so the connection is surely accepted and counted. */
async function connectAccepted(port: number): Promise<WireClient> {
  const client = await WireClient.connect(port);
  assert.equal((await client.query(PEOPLE[0][0])).status, STATUS_FOUND);
  return client;
}

function closeAll(clients: WireClient[]): void {
  for (const client of clients) client.close();
}

// --- Statuses ---

testOnEachLoop(
  "answers FOUND with the name, ignoring case and surrounding whitespace",
  async (io) => {
    await withTestClient({ io }, async (client) => {
      assert.deepEqual(await client.query("ada@example.com"), {
        status: STATUS_FOUND,
        text: "Ada Lovelace",
      });
      assert.deepEqual(await client.query("  ADA@Example.COM\t\r\n"), {
        status: STATUS_FOUND,
        text: "Ada Lovelace",
      });
      assert.deepEqual(await client.query("JÜRGEN@BEISPIEL.EXAMPLE"), {
        status: STATUS_FOUND,
        text: "Jürgen Möller",
      });
      assert.deepEqual(await client.query("margaret@apollo.example"), {
        status: STATUS_FOUND,
        text: "Margaret Hamilton 🚀",
      });
    });
  },
);

testOnEachLoop("answers NOT_FOUND without echoing the address", async (io) => {
  await withTestClient({ io }, async (client) => {
    const reply = await client.query("nobody@example.com");
    assert.deepEqual(reply, { status: STATUS_NOT_FOUND, text: NOT_FOUND_TEXT });
    assert.ok(!reply.text.includes("nobody"));
  });
});

testOnEachLoop(
  "answers BAD_REQUEST for empty, non-UTF-8 and non-email queries and stays open",
  async (io) => {
    await withTestClient({ io }, async (client) => {
      const bad: [Uint8Array, RegExp][] = [
        [new Uint8Array(0), /empty/],
        [encoder.encode(" \t "), /empty/],
        [Uint8Array.of(0x61, 0x40, 0xff, 0xfe), /UTF-8/],
        [Uint8Array.of(0xc3), /UTF-8/],
        [encoder.encode("not-an-email"), /no @/],
        [encoder.encode("a@b@example.com"), /more than one @/],
        [encoder.encode("has space@example.com"), /whitespace/],
        [encoder.encode("@example.com"), /before the @/],
        [encoder.encode(`${"a".repeat(MAX_QUERY_BYTES - 12)}@example.com`), /long/],
      ];
      for (const [payload, reason] of bad) {
        await client.write(frame(TYPE_QUERY, payload));
        const reply = await client.readReply();
        assert.equal(reply?.status, STATUS_BAD_REQUEST, `payload ${payload}`);
        assert.match(reply.text, reason);
        // The connection is still open: a good query after it is answered.
        assert.equal((await client.query("alan@turing.example")).text, "Alan Turing");
      }
    });
  },
);

/** Sends `bytes` and expects exactly one PROTOCOL_ERROR reply, then a clean close. */
async function expectProtocolError(port: number, bytes: Uint8Array, reason: RegExp) {
  await withWireClient(port, async (client) => {
    await client.write(bytes);
    const replies = await client.readUntilClosed();
    assert.deepEqual(replies.map((r) => r.status), [STATUS_PROTOCOL_ERROR]);
    assert.match(replies[0].text, reason);
    assert.equal(client.ending, "eof");
  });
}

testOnEachLoop("answers PROTOCOL_ERROR then closes for an unknown type byte", async (io) => {
  await withTestServer({ io }, async ({ port }) => {
    await expectProtocolError(port, frame(TYPE_GET, encoder.encode("ada@example.com")), /0x47/);
    await expectProtocolError(port, Uint8Array.of(0x00), /0x00/);
  });
});

testOnEachLoop("answers PROTOCOL_ERROR then closes for an R frame from a client", async (io) => {
  await withTestServer({ io }, async ({ port }) => {
    await expectProtocolError(port, encodeReply(STATUS_FOUND, "Ada Lovelace"), /0x52/);
  });
});

testOnEachLoop(
  "answers PROTOCOL_ERROR for an oversize frame as soon as its header arrives",
  async (io) => {
    await withTestServer({ io }, async ({ port }) => {
      // Only the header is sent: the server must not wait for the body.
      await expectProtocolError(port, header(TYPE_QUERY, MAX_QUERY_BYTES + 1), /1025/);
      await expectProtocolError(port, header(TYPE_QUERY, 0xffffffff), /4294967295/);
    });
  },
);

testOnEachLoop(
  "answers a protocol error after the good queries before it in the same write",
  async (io) => {
    await withTestClient({ io }, async (client) => {
      await client.write(concat([
        encodeQueries(["ada@example.com", "nobody@example.com"]),
        header(TYPE_REPLY, 3),
      ]));
      const replies = await client.readUntilClosed();
      assert.deepEqual(replies.map((r) => r.status), [
        STATUS_FOUND,
        STATUS_NOT_FOUND,
        STATUS_PROTOCOL_ERROR,
      ]);
    });
  },
);

testOnEachLoop(
  "a client still sending after its protocol error gets every reply and an EOF, not a reset",
  async (io) => {
    // Closing a socket with unread input makes the kernel send a reset, which
    // can destroy replies the client has not read: the server lingers instead,
    // reading and dropping what still arrives.
    await withTestClient({ io }, async (client) => {
      const rest = new Uint8Array(4 * 1024 * 1024).fill(TYPE_QUERY);
      const writing = client.write(concat([
        encodeQueries(["ada@example.com", "nobody@example.com"]),
        Uint8Array.of(TYPE_GET),
        rest,
      ]));
      await withDeadline(writing, "the server to take everything the client sent");
      const replies = await client.readUntilClosed();
      assert.deepEqual(replies.map((r) => r.status), [
        STATUS_FOUND,
        STATUS_NOT_FOUND,
        STATUS_PROTOCOL_ERROR,
      ]);
      assert.equal(client.ending, "eof");
    });
  },
);

testOnEachLoop(
  "closes a connection that neither sends nor closes after its protocol error once the linger time is over",
  async (io) => {
    await withTestServer({ io }, async ({ port, server }) => {
      await withWireClient(port, async (client) => {
        await client.write(Uint8Array.of(TYPE_GET));
        assert.deepEqual((await client.readUntilClosed()).map((r) => r.status), [
          STATUS_PROTOCOL_ERROR,
        ]);
        // The client keeps its side open: the server stops waiting for it.
        await waitForOpenConnections(server, 0, "the lingering connection to be closed");
      });
    });
  },
);

testOnEachLoop("accepts a query of exactly the maximum length", async (io) => {
  await withTestClient({ io }, async (client) => {
    await client.write(frame(TYPE_QUERY, new Uint8Array(MAX_QUERY_BYTES).fill(0x61)));
    assert.equal((await client.readReply())?.status, STATUS_BAD_REQUEST);
    assert.equal((await client.query("ada@example.com")).status, STATUS_FOUND);
  });
});

// --- Client styles ---

testOnEachLoop("serves the one-query-per-connection client style", async (io) => {
  await withTestServer({ io }, async ({ port }) => {
    for (const [email, name] of PEOPLE) {
      await withWireClient(port, async (client) => {
        assert.deepEqual(await client.query(email), { status: STATUS_FOUND, text: name });
      });
    }
  });
});

testOnEachLoop("answers 1000 queries pipelined in one write, in order", async (io) => {
  await withTestClient({ io }, async (client) => {
    const expected = mixedQueries(1000);
    await client.write(encodeQueries(expected.map((e) => e.query)));
    assertReplies(await client.readReplies(expected.length), expected);
  });
});

testOnEachLoop("serves 200 concurrent connections doing a few queries each", async (io) => {
  await withTestServer({ io }, async ({ port, server }) => {
    const clients = await Promise.all(Array.from({ length: 200 }, () => WireClient.connect(port)));
    try {
      await Promise.all(clients.map(async (client, c) => {
        for (let q = 0; q < 5; q++) {
          const [email, name] = PEOPLE[(c + q) % PEOPLE.length];
          assert.deepEqual(await client.query(email), { status: STATUS_FOUND, text: name });
        }
      }));
      assert.equal(metricValue(server.metrics(), "addrbook_connections_open"), 200);
    } finally {
      closeAll(clients);
    }
  });
});

testOnEachLoop("decodes frames sent one byte per write", async (io) => {
  await withTestClient({ io }, async (client) => {
    const bytes = encodeQueries(["grace.hopper@navy.example", "nobody@example.com"]);
    for (const byte of bytes) await client.write(Uint8Array.of(byte));
    const replies = await client.readReplies(2);
    assert.deepEqual(replies, [
      { status: STATUS_FOUND, text: "Grace Hopper" },
      { status: STATUS_NOT_FOUND, text: NOT_FOUND_TEXT },
    ]);
  });
});

testOnEachLoop("keeps serving after clients disconnect mid-frame and mid-pipeline", async (io) => {
  await withTestServer({ io }, async ({ port, server }) => {
    const query = encodeQuery("ada@example.com");
    const abrupt = [
      new Uint8Array(0),
      query.subarray(0, 5),
      query.subarray(0, 10),
      concat([query, query.subarray(0, 3)]),
      encodeQueries(mixedQueries(1000).map((e) => e.query)),
    ];
    for (const bytes of abrupt) {
      const client = await WireClient.connect(port);
      await client.write(bytes);
      client.close();
    }
    await withWireClient(port, async (client) => {
      assert.equal((await client.query("alan@turing.example")).text, "Alan Turing");
      // Every abandoned connection was cleaned up.
      await waitForOpenConnections(server, 1, "the abandoned connections to be closed");
    });
  });
});

testOnEachLoop("answers every query of a half-closed connection, then closes it", async (io) => {
  await withTestClient({ io }, async (client) => {
    const expected = mixedQueries(50);
    await client.write(encodeQueries(expected.map((e) => e.query)));
    await client.closeWrite();
    assertReplies(await client.readUntilClosed(), expected);
    assert.equal(client.ending, "eof");
  });
});

testOnEachLoop("a client stalled mid-frame does not delay another client", async (io) => {
  await withTestServer({ io }, async ({ port }) => {
    const stalled = await WireClient.connect(port);
    const other = await WireClient.connect(port);
    try {
      const query = encodeQuery("ada@example.com");
      await stalled.write(query.subarray(0, 8));
      for (let i = 0; i < 20; i++) {
        assert.equal((await other.query("grace.hopper@navy.example")).text, "Grace Hopper");
      }
      // The stalled frame is still waited for, and answered once finished.
      await stalled.write(query.subarray(8));
      assert.equal((await stalled.readReply())?.text, "Ada Lovelace");
    } finally {
      closeAll([stalled, other]);
    }
  });
});

testOnEachLoop("answers a frame whose header and body arrive in separate reads", async (io) => {
  await withTestServer({ io }, async ({ port }) => {
    const client = await WireClient.connect(port);
    const other = await WireClient.connect(port);
    try {
      const query = encodeQuery("grace.hopper@navy.example");
      for (const split of [5, 6, 12, query.length - 1]) {
        await client.write(query.subarray(0, split));
        // A round trip on another connection lets the server read the first part alone.
        assert.equal((await other.query("ada@example.com")).status, STATUS_FOUND);
        await client.write(query.subarray(split));
        assert.equal((await client.readReply())?.text, "Grace Hopper", `split at ${split}`);
      }
    } finally {
      closeAll([client, other]);
    }
  });
});

// --- Limits ---

testOnEachLoop(
  "refuses a connection over maxConnections with SERVER_BUSY and closes it",
  async (io) => {
    await withTestServer({ io, limits: { maxConnections: 2 } }, async ({ port, server }) => {
      const first = await connectAccepted(port);
      const second = await connectAccepted(port);
      const clients = [first, second];
      try {
        const third = await WireClient.connect(port);
        clients.push(third);
        const replies = await third.readUntilClosed();
        assert.deepEqual(replies.map((r) => r.status), [STATUS_SERVER_BUSY]);
        assert.match(replies[0].text, /connection limit/);

        assert.equal((await first.query("alan@turing.example")).text, "Alan Turing");
        assert.equal((await second.query("alan@turing.example")).text, "Alan Turing");

        // Once one leaves, a new connection is served.
        first.close();
        await waitForOpenConnections(server, 1, "the closed connection to be counted out");
        const fourth = await connectAccepted(port);
        clients.push(fourth);
        assert.equal(metricValue(server.metrics(), "addrbook_busy_refusals_total"), 1);
      } finally {
        closeAll(clients);
      }
    });
  },
);

testOnEachLoop("closes a connection that stays silent for the idle timeout", async (io) => {
  const limits = { idleTimeoutMs: SHORT_TIMEOUT_MS, frameTimeoutMs: 0 };
  await withTestServer({ io, limits }, async ({ port, server }) => {
    const silent = await WireClient.connect(port);
    const afterQuery = await connectAccepted(port);
    try {
      assert.deepEqual(await silent.readUntilClosed(), []);
      assert.deepEqual(await afterQuery.readUntilClosed(), []);
      assert.equal(
        metricValue(server.metrics(), "addrbook_timeouts_total", '{kind="idle"}'),
        2,
      );
    } finally {
      closeAll([silent, afterQuery]);
    }
  });
});

testOnEachLoop(
  "closes a connection that leaves a frame unfinished for the frame timeout",
  async (io) => {
    const limits = { idleTimeoutMs: 0, frameTimeoutMs: SHORT_TIMEOUT_MS };
    await withTestServer({ io, limits }, async ({ port, server }) => {
      // Opened first, idle all along: the frame timeout is not an idle timeout.
      const idle = await connectAccepted(port);
      const halfFrame = await WireClient.connect(port);
      const headerOnly = await WireClient.connect(port);
      try {
        await halfFrame.write(encodeQuery("ada@example.com").subarray(0, 9));
        await headerOnly.write(header(TYPE_QUERY, 20));
        assert.deepEqual(await halfFrame.readUntilClosed(), []);
        assert.deepEqual(await headerOnly.readUntilClosed(), []);
        assert.equal(
          metricValue(server.metrics(), "addrbook_timeouts_total", '{kind="frame"}'),
          2,
        );
        assert.equal((await idle.query("ada@example.com")).status, STATUS_FOUND);
      } finally {
        closeAll([idle, halfFrame, headerOnly]);
      }
    });
  },
);

testOnEachLoop("100 slow-loris peers stalled mid-frame do not stop a normal client", async (io) => {
  const limits = { frameTimeoutMs: SHORT_TIMEOUT_MS };
  await withTestServer({ io, limits }, async ({ port, server }) => {
    const lorises = await Promise.all(Array.from({ length: 100 }, () => WireClient.connect(port)));
    const client = await WireClient.connect(port);
    try {
      const query = encodeQuery("ada@example.com");
      await Promise.all(lorises.map((loris, i) => loris.write(query.subarray(0, 1 + i % 10))));
      for (let i = 0; i < 50; i++) {
        assert.equal((await client.query("ada@example.com")).text, "Ada Lovelace");
      }
      const ends = await Promise.all(lorises.map((loris) => loris.readUntilClosed()));
      assert.ok(ends.every((replies) => replies.length === 0));
      assert.equal(
        metricValue(server.metrics(), "addrbook_timeouts_total", '{kind="frame"}'),
        100,
      );
      assert.equal((await client.query("ada@example.com")).text, "Ada Lovelace");
    } finally {
      closeAll([...lorises, client]);
    }
  });
});

/** A name of 100 kB: sixty such replies are more than loopback's socket buffers hold (about 4 MB). */
const LARGE_NAME = `Large ${"x".repeat(100_000)}`;
const LARGE_BOOK = makeBook([["large@example.com", LARGE_NAME]]);
const LARGE_REPLIES = 60;

testOnEachLoop(
  "closes a connection that takes none of its replies for the write timeout",
  async (io) => {
    const limits = { writeTimeoutMs: SHORT_TIMEOUT_MS, maxPendingWrite: SMALL_PENDING_WRITE };
    await withTestServer({ io, book: LARGE_BOOK, limits }, async ({ port, server }) => {
      const other = await WireClient.connect(port);
      const stalled = await WireClient.connect(port);
      try {
        await stalled.write(encodeQueries(Array(LARGE_REPLIES).fill("large@example.com")));
        await waitFor(
          () => metricValue(server.metrics(), "addrbook_timeouts_total", '{kind="write"}') === 1,
          "the write timeout of the client that does not read",
        );
        // The other connection, idle all along, is served as before.
        assert.equal((await other.query("large@example.com")).text, LARGE_NAME);
        await waitForOpenConnections(server, 1, "the stalled connection to be counted out");
        const metrics = server.metrics();
        assert.equal(metricValue(metrics, "addrbook_timeouts_total", '{kind="idle"}'), 0);
        assert.equal(metricValue(metrics, "addrbook_timeouts_total", '{kind="frame"}'), 0);
        // What the kernel had taken still arrives, then the connection ends, short of its replies.
        const replies = await stalled.readUntilClosed().catch((error) => {
          assert.ok(!(error instanceof DeadlineError), String(error));
          return null; // ended inside a reply, or reset
        });
        assert.ok(replies === null || replies.length < LARGE_REPLIES, "the connection was cut");
      } finally {
        closeAll([other, stalled]);
      }
    });
  },
);

/**
 * How much a slow reader takes each time it reads, and how long it pauses.
 * The server sees progress only when the kernel takes more of its replies,
 * which it does once the reader has emptied a good part of the socket
 * buffers: up to about 250 ms apart at this pace on loopback (measured on
 * both loops), so the write timeout here is four times that.
 */
const SLOW_READ_BYTES = 256 * 1024;
const SLOW_READ_PAUSE_MS = 50;
const STEADY_WRITE_TIMEOUT_MS = 1000;

testOnEachLoop(
  "never write-times-out a slow reader that takes a little every 50 ms",
  async (io) => {
    const limits = {
      writeTimeoutMs: STEADY_WRITE_TIMEOUT_MS,
      maxPendingWrite: SMALL_PENDING_WRITE,
    };
    const count = 2 * LARGE_REPLIES;
    await withTestServer({ io, book: LARGE_BOOK, limits }, async ({ port, server }) => {
      await withWireClient(port, async (client) => {
        await client.write(encodeQueries(Array(count).fill("large@example.com")));
        const replies: Reply[] = [];
        // Reading all of it at this pace takes more than twice the write timeout.
        for (let round = 0; replies.length < count && round < 10_000; round++) {
          const before = replies.length;
          let taken = 0;
          while (taken < SLOW_READ_BYTES && replies.length < count) {
            const reply = await client.readReply();
            assert.ok(reply !== null, `the connection closed after ${replies.length} replies`);
            replies.push(reply);
            taken += reply.text.length;
          }
          assert.ok(replies.length > before);
          await new Promise((resolve) => setTimeout(resolve, SLOW_READ_PAUSE_MS));
        }
        assert.equal(replies.length, count);
        assert.ok(replies.every((reply) => reply.text === LARGE_NAME));
        assert.equal(
          metricValue(server.metrics(), "addrbook_timeouts_total", '{kind="write"}'),
          0,
        );
        assert.equal((await client.query("large@example.com")).text, LARGE_NAME, "still open");
      });
    });
  },
);

/**
 * Pipelined queries for the slow readers below: their replies (18 bytes
 * each, about 4.5 MB) are more than the kernel buffers on the way hold once
 * the server's send buffer has grown to its 4 MB, so replies wait in the
 * server and the write timeout applies.
 */
const PIPELINED_QUERIES = 250_000;
const PIPELINED_REPLY = { status: STATUS_FOUND, text: "Ada Lovelace" };
/** The reply frame's size: a 6-byte header and the name. */
const PIPELINED_REPLY_BYTES = 6 + PIPELINED_REPLY.text.length;
const STEADY_TIMEOUT_MS = 2000;
/** 64 kB every 100 ms: 640 kB/s, slower than the server writes, never stopping. */
const STEADY_READ_BYTES = 64 * 1024;
const STEADY_READ_PAUSE_MS = 100;

/**
 * Reads `total` bytes from `conn`, `chunk` at a time with `pauseMs` between
 * reads; resolves with how many came before the end (a close or a reset).
 */
async function readSteadily(
  conn: Deno.Conn,
  total: number,
  chunk: number,
  pauseMs: number,
): Promise<number> {
  const buffer = new Uint8Array(chunk);
  let received = 0;
  // Bounded: every read brings at least one byte of a known total, or ends the loop.
  while (received < total) {
    const count = await withDeadline(conn.read(buffer), "a steady read").catch(() => null);
    if (count === null) break;
    received += count;
    await new Promise((resolve) => setTimeout(resolve, pauseMs));
  }
  return received;
}

testOnEachLoop(
  "--write-timeout 2 keeps a reader taking 64 kB every 100 ms until it has read everything",
  async (io) => {
    const limits = { writeTimeoutMs: STEADY_TIMEOUT_MS, idleTimeoutMs: 0, frameTimeoutMs: 0 };
    await withTestServer({ io, limits }, async ({ port, server }) => {
      await withWireClient(port, async (client) => {
        // Written beside the reads: the server stops reading queries while its replies wait.
        const writing = client.write(
          encodeQueries(Array(PIPELINED_QUERIES).fill("ada@example.com")),
        );
        const total = PIPELINED_QUERIES * PIPELINED_REPLY_BYTES;
        const started = performance.now();
        const received = await readSteadily(
          client.conn,
          total,
          STEADY_READ_BYTES,
          STEADY_READ_PAUSE_MS,
        );
        await writing;
        assert.equal(
          metricValue(server.metrics(), "addrbook_timeouts_total", '{kind="write"}'),
          0,
          `write timeout after ${received} of ${total} bytes`,
        );
        assert.equal(received, total);
        assert.ok(performance.now() - started > 2 * STEADY_TIMEOUT_MS, "it took that long");
        assert.deepEqual(await client.query("ada@example.com"), PIPELINED_REPLY, "still open");
      });
    });
  },
);

testOnEachLoop(
  "--write-timeout 1 closes a reader that takes nothing, on time",
  async (io) => {
    const timeoutMs = 1000;
    const limits = { writeTimeoutMs: timeoutMs, idleTimeoutMs: 0, frameTimeoutMs: 0 };
    await withTestServer({ io, limits }, async ({ port, server }) => {
      await withWireClient(port, async (client) => {
        const started = performance.now();
        const writing = client.write(
          encodeQueries(Array(PIPELINED_QUERIES).fill("ada@example.com")),
        ).catch(() => {}); // the close cuts the queries short
        await waitFor(
          () => metricValue(server.metrics(), "addrbook_timeouts_total", '{kind="write"}') === 1,
          "the write timeout of the reader that takes nothing",
        );
        const elapsed = performance.now() - started;
        // The buffers on the way fill within milliseconds; then the timeout, and a sweep's slack.
        assert.ok(elapsed >= timeoutMs, `closed after ${elapsed} ms`);
        assert.ok(elapsed < timeoutMs * 2, `closed after ${elapsed} ms`);
        await writing;
      });
    });
  },
);

/** A book of `count` people with long names, so replies outweigh queries many times. */
function bigBook(count: number): { book: AddressBook; emails: string[]; names: string[] } {
  const emails = Array.from({ length: count }, (_, i) => `user${i}@example.com`);
  const names = emails.map((_, i) => `Person ${i} ${"x".repeat(100)}`);
  return { book: makeBook(emails.map((email, i) => [email, names[i]])), emails, names };
}

/** Bytes per write of {@linkcode writeInChunks}: a prime, so writes split frames. */
const PIPELINE_WRITE_BYTES = 10_007;

/**
 * `count` queries for a pipeline; `expected(i)` is the entry query `i` asks
 * for, or -1 for a miss. Encoded before connecting: it takes long enough that
 * a connection opened first could reach its idle timeout.
 */
function pipelineQueries(
  emails: string[],
  count: number,
): { bytes: Uint8Array; expected: (i: number) => number } {
  // Every 50th query misses, so replies of two statuses are interleaved.
  const expected = (i: number) => (i % 50 === 49 ? -1 : i % emails.length);
  const queries = Array.from({ length: count }, (_, i) => {
    const entry = expected(i);
    return entry < 0 ? `missing${i}@example.com` : emails[entry];
  });
  return { bytes: encodeQueries(queries), expected };
}

/** Writes `bytes` in chunks that split frames, from a separate task, then half-closes. */
async function writeInChunks(client: WireClient, bytes: Uint8Array): Promise<void> {
  for (let start = 0; start < bytes.length; start += PIPELINE_WRITE_BYTES) {
    await client.write(bytes.subarray(start, start + PIPELINE_WRITE_BYTES));
    await yieldToEventLoop();
  }
  await client.closeWrite();
}

/** Waits until the server's reply counter stops moving, and returns it. */
async function waitForStall(server: { metrics(): string }): Promise<number> {
  const answered = () =>
    metricValue(server.metrics(), "addrbook_replies_total", '{front_end="binary",status="FOUND"}') +
    metricValue(
      server.metrics(),
      "addrbook_replies_total",
      '{front_end="binary",status="NOT_FOUND"}',
    );
  let last = -1;
  let steady = 0;
  await waitFor(() => {
    const now = answered();
    steady = now === last ? steady + 1 : 0;
    last = now;
    return steady >= 5;
  }, "the server to stop answering a client that does not read");
  return last;
}

/** Reads all `count` replies and checks each against the query at its place. */
async function readAllInOrder(
  client: WireClient,
  count: number,
  names: string[],
  expected: (i: number) => number,
): Promise<void> {
  const replies = await client.readUntilClosed(60_000);
  assert.equal(replies.length, count, "every query is answered exactly once");
  for (let i = 0; i < count; i++) {
    const entry = expected(i);
    if (entry < 0) {
      assert.equal(replies[i].status, STATUS_NOT_FOUND, `reply ${i}`);
    } else {
      assert.equal(replies[i].text, names[entry], `reply ${i}`);
    }
  }
}

/** A name of about a megabyte: a few such replies outgrow every socket buffer. */
const HUGE_NAME = `Huge ${"x".repeat(1_000_000)}`;

testOnEachLoop(
  "does not idle-time-out a connection while blocked writing its replies",
  async (io) => {
    const book = makeBook([["huge@example.com", HUGE_NAME]]);
    const limits = { maxPendingWrite: SMALL_PENDING_WRITE, idleTimeoutMs: SHORT_TIMEOUT_MS };
    await withTestServer({ io, book, limits }, async ({ port, server }) => {
      const count = 20;
      const client = await WireClient.connect(port);
      let witness: WireClient | undefined;
      try {
        // A few small queries in one write: the server reads them whole, then blocks writing.
        await client.write(encodeQueries(Array(count).fill("huge@example.com")));
        const answered = await waitForStall(server);
        assert.ok(answered < count, `the server answered ${answered} of ${count} queries unread`);
        // Once a connection opened now has been closed as idle, the blocked one
        // has waited longer than the idle timeout too.
        witness = await WireClient.connect(port);
        assert.deepEqual(await witness.readUntilClosed(), []);
        await client.closeWrite();
        const replies = await client.readUntilClosed();
        assert.equal(replies.length, count);
        assert.ok(replies.every((reply) => reply.text === HUGE_NAME));
      } finally {
        client.close();
        witness?.close();
      }
    });
  },
);

testOnEachLoop(
  "stops reading from a client that does not read, then answers every query in order",
  async (io) => {
    const { book, emails, names } = bigBook(1000);
    const count = 200_000;
    const limits = { maxPendingWrite: SMALL_PENDING_WRITE, idleTimeoutMs: SHORT_TIMEOUT_MS };
    await withTestServer({ io, book, limits }, async ({ port, server }) => {
      const { bytes, expected } = pipelineQueries(emails, count);
      const client = await WireClient.connect(port);
      let witness: WireClient | undefined;
      try {
        const writing = writeInChunks(client, bytes);
        writing.catch(() => {});
        const answered = await waitForStall(server);
        assert.ok(answered < count, `the server answered ${answered} of ${count} queries unread`);

        // Once a connection opened now has been closed as idle, the blocked one
        // has waited longer than the idle timeout too; it must not be closed.
        witness = await WireClient.connect(port);
        assert.deepEqual(await witness.readUntilClosed(), []);

        await Promise.all([
          readAllInOrder(client, count, names, expected),
          withDeadline(writing, "the client to write all its queries", 60_000),
        ]);
      } finally {
        client.close();
        witness?.close();
      }
    });
  },
);

testOnEachLoop(
  "does not frame-time-out a connection while blocked writing its replies",
  async (io) => {
    const { book, emails, names } = bigBook(1000);
    const count = 200_000;
    const limits = { maxPendingWrite: SMALL_PENDING_WRITE, frameTimeoutMs: SHORT_TIMEOUT_MS };
    await withTestServer({ io, book, limits }, async ({ port, server }) => {
      const { bytes, expected } = pipelineQueries(emails, count);
      const client = await WireClient.connect(port);
      let witness: WireClient | undefined;
      try {
        const writing = writeInChunks(client, bytes);
        writing.catch(() => {});
        await waitForStall(server);
        // Once a half frame sent now has timed out, the blocked connection has
        // been stalled longer than the frame timeout too.
        witness = await WireClient.connect(port);
        await witness.write(header(TYPE_QUERY, 10));
        assert.deepEqual(await witness.readUntilClosed(), []);
        assert.equal(
          metricValue(server.metrics(), "addrbook_timeouts_total", '{kind="frame"}'),
          1,
          "only the witness timed out",
        );

        await Promise.all([
          readAllInOrder(client, count, names, expected),
          withDeadline(writing, "the client to write all its queries", 60_000),
        ]);
      } finally {
        client.close();
        witness?.close();
      }
    });
  },
);

// --- Graceful shutdown ---

testOnEachLoop(
  "graceful shutdown answers what was sent, closes idle connections and stops accepting",
  async (io) => {
    await withTestServer({ io }, async ({ port, server }) => {
      const busy = await connectAccepted(port);
      const idle = await connectAccepted(port);
      try {
        const expected = mixedQueries(500);
        await busy.write(encodeQueries(expected.map((e) => e.query)));
        const shutdown = server.shutdown(2000);

        assertReplies(await busy.readUntilClosed(), expected);
        assert.equal(busy.ending, "eof");
        assert.deepEqual(await idle.readUntilClosed(), []);
        // Closing at the EOF, as clients do, spares the server its linger time.
        closeAll([busy, idle]);
        await withDeadline(shutdown, "shutdown to resolve");
        await assert.rejects(
          Deno.connect({ hostname: "127.0.0.1", port }),
          Deno.errors.ConnectionRefused,
        );
      } finally {
        closeAll([busy, idle]);
      }
    });
  },
);

testOnEachLoop("graceful shutdown answers a large pipeline written just before it", async (io) => {
  await withTestServer({ io }, async ({ port, server }) => {
    const client = await connectAccepted(port);
    try {
      const expected = mixedQueries(30_000);
      // Read from the start so that neither side blocks on a full buffer.
      const reading = client.readUntilClosed();
      await client.write(encodeQueries(expected.map((e) => e.query)));
      const shutdown = server.shutdown(5000);
      assertReplies(await reading, expected);
      // Closing at the EOF, as clients do, spares the server its linger time.
      client.close();
      await withDeadline(shutdown, "shutdown to resolve");
    } finally {
      client.close();
    }
  });
});

testOnEachLoop(
  "graceful shutdown answers queries queued behind a client that reads late",
  async (io) => {
    // The server stops reading this client while its replies wait (backpressure), so
    // most of its queries are still in the socket when the shutdown begins.
    await withTestServer(
      { io, limits: { maxPendingWrite: 16 * 1024 } },
      async ({ port, server }) => {
        const client = await connectAccepted(port);
        try {
          const expected = mixedQueries(50_000);
          await client.write(encodeQueries(expected.map((e) => e.query)));
          const shutdown = server.shutdown(10_000);
          assertReplies(await client.readUntilClosed(), expected);
          assert.equal(client.ending, "eof");
          // Closing at the EOF, as clients do, spares the server its linger time.
          client.close();
          await withDeadline(shutdown, "shutdown to resolve");
        } finally {
          client.close();
        }
      },
    );
  },
);

testOnEachLoop(
  "graceful shutdown ends a client that never stops pipelining, long before its timeout",
  async (io) => {
    await withTestServer({ io }, async ({ port, server }) => {
      const client = await connectAccepted(port);
      try {
        // Whole cycles of PEOPLE per batch, so reply i is for PEOPLE[i % PEOPLE.length].
        const batch = encodeQueries(
          Array.from({ length: 20 * PEOPLE.length }, (_, i) => PEOPLE[i % PEOPLE.length][0]),
        );
        let sent = 0;
        let writeError: unknown;
        const writing = (async () => {
          // It stops only when the server has closed the connection under it.
          for (let i = 0; i < 1_000_000 && writeError === undefined; i++) {
            try {
              await client.write(batch);
              sent += 20 * PEOPLE.length;
            } catch (error) {
              writeError = error;
            }
            await yieldToEventLoop();
          }
        })();
        const replies: Reply[] = [];
        const reading = (async () => {
          for (let reply; (reply = await client.readReply()) !== null;) replies.push(reply);
        })();
        await waitFor(() => replies.length >= 1000, "the pipeline to be under way");
        // A shutdown held until its timeout would outlast the deadline by far.
        const timeoutMs = 6 * EVENT_DEADLINE_MS;
        await withDeadline(
          server.shutdown(timeoutMs),
          "the shutdown to resolve before its timeout",
        );
        await withDeadline(reading, "the end of the replies");
        assert.equal(client.ending, "eof", "the client got an EOF, not a reset");
        for (let i = 0; i < replies.length; i++) {
          assert.equal(replies[i].text, PEOPLE[i % PEOPLE.length][1], `reply ${i}`);
        }
        assert.ok(replies.length <= sent);
        await withDeadline(writing, "the client's writes to fail");
        assert.ok(
          writeError instanceof Deno.errors.BrokenPipe ||
            writeError instanceof Deno.errors.ConnectionReset,
          `the client's writes failed with ${writeError}`,
        );
        assert.ok(!server.ready);
      } finally {
        client.close();
      }
    });
  },
);

testOnEachLoop(
  "graceful shutdown answers clients that connected and sent just before it",
  async (io) => {
    await withTestServer({ io }, async ({ port, server }) => {
      // Connected by the kernel, their queries sent, perhaps not accepted yet
      // when the shutdown begins: the server still accepts for the drain grace.
      const clients = await Promise.all(Array.from({ length: 5 }, () => WireClient.connect(port)));
      try {
        await Promise.all(clients.map((client, i) => client.write(encodeQuery(PEOPLE[i][0]))));
        const shutdown = server.shutdown(EVENT_DEADLINE_MS);
        const ends = await Promise.all(clients.map((client) => client.readUntilClosed()));
        assert.deepEqual(
          ends,
          clients.map((_, i) => [{ status: STATUS_FOUND, text: PEOPLE[i][1] }]),
        );
        assert.ok(clients.every((client) => client.ending === "eof"));
        closeAll(clients);
        await withDeadline(shutdown, "shutdown to resolve");
      } finally {
        closeAll(clients);
      }
    });
  },
);

testOnEachLoop("graceful shutdown with no connections resolves and stops accepting", async (io) => {
  await withTestServer({ io }, async ({ port, server }) => {
    await withDeadline(server.shutdown(2000), "shutdown to resolve");
    await assert.rejects(
      Deno.connect({ hostname: "127.0.0.1", port }),
      Deno.errors.ConnectionRefused,
    );
  });
});

// --- Reload ---

const BOOK_A = makeBook([["ada@example.com", "Ada Lovelace"], ["only.a@example.com", "Only A"]]);
const BOOK_B = makeBook([["ada@example.com", "Ada King"], ["only.b@example.com", "Only B"]]);
const RELOAD_NAMES = ["Only A", "Only B", "Ada King"];

testOnEachLoop("reload switches answers to the new book", async (io) => {
  const options = { book: BOOK_A, loadBook: () => Promise.resolve(BOOK_B) };
  await withTestClient({ ...options, io }, async (client, { server }) => {
    assert.equal((await client.query("ada@example.com")).text, "Ada Lovelace");
    await server.reload();
    // The same open connection now answers from the new book.
    assert.equal((await client.query("ada@example.com")).text, "Ada King");
    assert.equal((await client.query("only.a@example.com")).status, STATUS_NOT_FOUND);
    assert.equal((await client.query("only.b@example.com")).text, "Only B");
    assert.equal(server.entries, 2);
    assert.equal(
      metricValue(server.metrics(), "addrbook_reloads_total", '{result="ok"}'),
      1,
    );
  }, RELOAD_NAMES);
});

testOnEachLoop("a failed reload rejects and keeps serving the old book", async (io) => {
  const options = {
    book: BOOK_A,
    loadBook: () => Promise.reject(new Error("The book file is gone.")),
  };
  await withTestClient({ ...options, io }, async (client, { server }) => {
    await assert.rejects(server.reload(), /gone/);
    assert.equal((await client.query("ada@example.com")).text, "Ada Lovelace");
    assert.equal(server.entries, 2);
    const metrics = server.metrics();
    assert.equal(metricValue(metrics, "addrbook_reloads_total", '{result="failed"}'), 1);
    assert.equal(metricValue(metrics, "addrbook_reloads_total", '{result="ok"}'), 0);
  }, RELOAD_NAMES);
});

testOnEachLoop("reload without a loadBook rejects", async (io) => {
  await withTestServer({ io }, async ({ server }) => {
    await assert.rejects(server.reload(), /no book file/);
  });
});

testOnEachLoop("reloads under a continuous pipeline lose no query and mix no books", async (io) => {
  let next = BOOK_B;
  const loadBook = () => {
    const book = next;
    next = next === BOOK_A ? BOOK_B : BOOK_A;
    return Promise.resolve(book);
  };
  await withTestClient({ io, book: BOOK_A, loadBook }, async (client, { server }) => {
    let sent = 0;
    let stop = false;
    const writing = (async () => {
      const batch = encodeQueries(Array(100).fill("ada@example.com"));
      while (!stop) {
        await client.write(batch);
        sent += 100;
        await yieldToEventLoop();
      }
      await client.closeWrite();
    })();
    const seen: string[] = [];
    const reading = (async () => {
      for (let reply; (reply = await client.readReply()) !== null;) {
        assert.equal(reply.status, STATUS_FOUND);
        seen.push(reply.text);
      }
    })();
    for (let round = 0; round < 10; round++) {
      await server.reload();
      const name = round % 2 === 0 ? "Ada King" : "Ada Lovelace";
      const from = seen.length;
      await waitFor(
        () => seen.indexOf(name, from) >= 0,
        `a reply from the book of reload ${round}`,
      );
    }
    stop = true;
    await withDeadline(writing, "the writer to stop");
    await withDeadline(reading, "the last replies");
    assert.equal(seen.length, sent, "every query is answered exactly once");
    assert.ok(seen.every((name) => name === "Ada Lovelace" || name === "Ada King"));
  }, RELOAD_NAMES);
});

// --- Worker threads ---

testOnEachLoop(
  "two worker threads answer many connections, all reload, and shut down",
  async (io) => {
    const options = { book: BOOK_A, loadBook: () => Promise.resolve(BOOK_B), workers: 2 };
    await withTestServer({ ...options, io }, async ({ port, server }) => {
      const clients: WireClient[] = [];
      try {
        // The kernel spreads connections over the two threads' listeners; with 20,
        // both get some unless the odds of 2 in a million strike.
        for (let i = 0; i < 20; i++) clients.push(await WireClient.connect(port));
        for (const client of clients) {
          assert.equal((await client.query("ada@example.com")).text, "Ada Lovelace");
        }
        await server.reload();
        for (const client of clients) {
          assert.equal((await client.query("ada@example.com")).text, "Ada King");
        }
        assert.equal(server.entries, 2);
        assert.equal(metricValue(server.metrics(), "addrbook_connections_open"), 20);
        assert.equal(
          metricValue(
            server.metrics(),
            "addrbook_replies_total",
            '{front_end="binary",status="FOUND"}',
          ),
          40,
        );
        const shutdown = server.shutdown(2000);
        const ends = await Promise.all(clients.map((client) => client.readUntilClosed()));
        assert.ok(ends.every((replies) => replies.length === 0));
        // Closing at the EOF, as clients do, spares the server its linger time.
        closeAll(clients);
        await withDeadline(shutdown, "shutdown to resolve");
        await assert.rejects(
          Deno.connect({ hostname: "127.0.0.1", port }),
          Deno.errors.ConnectionRefused,
        );
      } finally {
        closeAll(clients);
      }
    }, RELOAD_NAMES);
  },
);

// --- Metrics ---

testOnEachLoop(
  "serves counters as Prometheus text at GET /metrics and 404 elsewhere",
  async (io) => {
    // The idle timeout is long enough that the three connections are surely open when
    // the fourth arrives, and short enough that the test waits for it.
    const limits = { maxConnections: 3, idleTimeoutMs: 500, frameTimeoutMs: 100 };
    let reloads = 0;
    const loadBook = () =>
      ++reloads === 1 ? Promise.resolve(makeBook()) : Promise.reject(new Error("Bad file."));
    await withTestServer({ io, limits, metricsPort: 0, loadBook }, async ({ port, server }) => {
      assert.ok(server.metricsAddr !== undefined);
      const url = `http://127.0.0.1:${server.metricsAddr.port}`;
      const clients: WireClient[] = [];
      try {
        // FOUND, NOT_FOUND, BAD_REQUEST on one connection, which then idles out.
        const open = await connectAccepted(port);
        clients.push(open);
        assert.equal((await open.query("nobody@example.com")).status, STATUS_NOT_FOUND);
        assert.equal((await open.query("nonsense")).status, STATUS_BAD_REQUEST);
        // A frame timeout and another idle timeout.
        const stalled = await WireClient.connect(port);
        const idle = await WireClient.connect(port);
        clients.push(stalled, idle);
        await stalled.write(header(TYPE_QUERY, 10));
        // Three are open: a fourth is refused.
        const refused = await WireClient.connect(port);
        clients.push(refused);
        assert.deepEqual((await refused.readUntilClosed()).map((r) => r.status), [
          STATUS_SERVER_BUSY,
        ]);
        assert.deepEqual(await stalled.readUntilClosed(), []);
        assert.deepEqual(await idle.readUntilClosed(), []);
        // A protocol error.
        const rude = await WireClient.connect(port);
        clients.push(rude);
        await rude.write(Uint8Array.of(TYPE_GET));
        assert.equal((await rude.readUntilClosed())[0].status, STATUS_PROTOCOL_ERROR);
        await server.reload();
        await assert.rejects(server.reload());
        await waitForOpenConnections(server, 0, "every connection to be closed and counted out");

        const response = await fetch(`${url}/metrics`);
        assert.equal(response.status, 200);
        assert.match(response.headers.get("content-type") ?? "", /^text\/plain/);
        const text = await response.text();
        const expected: [string, string, number][] = [
          ["addrbook_connections_open", "", 0],
          ["addrbook_connections_total", "", 5],
          ["addrbook_replies_total", '{front_end="binary",status="FOUND"}', 1],
          ["addrbook_replies_total", '{front_end="binary",status="NOT_FOUND"}', 1],
          ["addrbook_replies_total", '{front_end="binary",status="BAD_REQUEST"}', 1],
          ["addrbook_replies_total", '{front_end="binary",status="PROTOCOL_ERROR"}', 1],
          ["addrbook_busy_refusals_total", "", 1],
          ["addrbook_timeouts_total", '{kind="idle"}', 2],
          ["addrbook_timeouts_total", '{kind="frame"}', 1],
          ["addrbook_reloads_total", '{result="ok"}', 1],
          ["addrbook_reloads_total", '{result="failed"}', 1],
          ["addrbook_book_entries", "", PEOPLE.length],
        ];
        for (const [name, labels, value] of expected) {
          assert.equal(metricValue(text, name, labels), value, `${name}${labels}`);
        }
        assert.match(text, /^# HELP addrbook_connections_open /m);
        assert.match(text, /^# TYPE addrbook_replies_total counter$/m);
        // Nothing changed since: the handle renders the same text (the process's figures move).
        const counters = (metrics: string) =>
          metrics.split("\n").filter((line) => !/^(# \w+ )?process_/.test(line)).join("\n");
        assert.equal(counters(server.metrics()), counters(text));

        for (const path of ["/", "/metrics/", "/other"]) {
          const missing = await fetch(`${url}${path}`);
          assert.equal(missing.status, 404, path);
          await missing.body?.cancel();
        }
        const post = await fetch(`${url}/metrics`, { method: "POST" });
        assert.equal(post.status, 405);
        await post.body?.cancel();
      } finally {
        closeAll(clients);
      }
    });
  },
);

testOnEachLoop("counts SERVER_BUSY replies among the replies by status", async (io) => {
  await withTestServer({ io, limits: { maxConnections: 1 } }, async ({ port, server }) => {
    const first = await connectAccepted(port);
    const refused = await WireClient.connect(port);
    try {
      assert.equal((await refused.readUntilClosed())[0].status, STATUS_SERVER_BUSY);
      assert.equal(
        metricValue(
          server.metrics(),
          "addrbook_replies_total",
          '{front_end="binary",status="SERVER_BUSY"}',
        ),
        1,
      );
    } finally {
      closeAll([first, refused]);
    }
  });
});

// --- Logs ---

testOnEachLoop(
  "logs protocol errors and refusals with the peer address and no personal data",
  async (io) => {
    await withTestServer({ io, limits: { maxConnections: 1 } }, async ({ port, lines, server }) => {
      const rude = await WireClient.connect(port);
      let kept: WireClient | undefined;
      let refused: WireClient<Deno.TcpConn> | undefined;
      try {
        const peer = `127.0.0.1:${rude.conn.localAddr.port}`;
        await rude.write(frame(TYPE_GET, encoder.encode("ada@example.com")));
        assert.equal((await rude.readUntilClosed())[0].status, STATUS_PROTOCOL_ERROR);
        const line = lines.find((l) => l.includes("protocol error"));
        assert.ok(line !== undefined, `no protocol error logged in ${lines}`);
        assert.ok(line.includes(`peer=${peer}`), line);
        assert.match(line, /\bwarn\b/);

        // The server half-closed the rude connection; once we close our side it
        // is counted out, so the next one is accepted.
        rude.close();
        await waitForOpenConnections(server, 0, "the rude connection to be counted out");
        kept = await connectAccepted(port);
        refused = await WireClient.connect(port);
        const refusedPeer = `127.0.0.1:${refused.conn.localAddr.port}`;
        assert.equal((await refused.readUntilClosed())[0].status, STATUS_SERVER_BUSY);
        assert.ok(lines.some((l) => l.includes("busy") && l.includes(`peer=${refusedPeer}`)));
      } finally {
        rude.close();
        kept?.close();
        refused?.close();
      }
    });
  },
);

testOnEachLoop("logs no email or name at the debug level either", async (io) => {
  const limits = { idleTimeoutMs: SHORT_TIMEOUT_MS, frameTimeoutMs: SHORT_TIMEOUT_MS };
  await withTestServer({ io, limits, logLevel: "debug" }, async ({ port, lines }) => {
    const client = await WireClient.connect(port);
    const stalled = await WireClient.connect(port);
    try {
      for (const [email] of PEOPLE) await client.query(email);
      await client.query("nobody@example.com");
      await client.query("not an email");
      await stalled.write(encodeQuery("ada@example.com").subarray(0, 9));
      assert.deepEqual(await stalled.readUntilClosed(), []);
      assert.deepEqual(await client.readUntilClosed(), []);
      const bad = await WireClient.connect(port);
      await bad.write(frame(TYPE_GET, encoder.encode("grace.hopper@navy.example")));
      await bad.readUntilClosed();
      bad.close();
      // A client that leaves mid-pipeline may make the server's write fail: logged at debug.
      const quitter = await WireClient.connect(port);
      await quitter.write(encodeQueries(mixedQueries(2000).map((e) => e.query)));
      quitter.close();
      const fresh = await WireClient.connect(port);
      assert.equal((await fresh.query("alan@turing.example")).status, STATUS_FOUND);
      fresh.close();
      assert.ok(lines.some((l) => l.includes("timeout")), "timeouts are logged at debug");
    } finally {
      closeAll([client, stalled]);
    }
    // withTestServer then checks every captured line.
  });
});

// --- Start errors ---

testOnEachLoop("refuses to start on a port in use with a StartError saying so", async (io) => {
  await withTestServer({ io }, async ({ port }) => {
    for (const workers of [1, 2]) {
      await assert.rejects(
        startServer({ io, book: makeBook(), hostname: "127.0.0.1", port, workers }),
        (error) => {
          assert.ok(error instanceof StartError);
          assert.equal(
            error.message,
            `Cannot listen on 127.0.0.1:${port}: the port is already in use.`,
          );
          assert.equal(error.exitCode, 1);
          return true;
        },
        `workers: ${workers}`,
      );
    }
  });
});

testOnEachLoop("refuses to start when the metrics port is in use", async (io) => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const metricsPort = (taken.addr as Deno.NetAddr).port;
    await assert.rejects(
      startServer({ io, book: makeBook(), hostname: "127.0.0.1", port: 0, metricsPort }),
      (error) => {
        assert.ok(error instanceof StartError);
        assert.match(
          error.message,
          new RegExp(`metrics on 127\\.0\\.0\\.1:${metricsPort}.*in use`),
        );
        return true;
      },
    );
  } finally {
    taken.close();
  }
});

testOnEachLoop("a start that fails on the metrics port leaves nothing listening", async (io) => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const free = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (free.addr as Deno.NetAddr).port;
  free.close();
  try {
    const metricsPort = (taken.addr as Deno.NetAddr).port;
    await assert.rejects(
      startServer({ io, book: makeBook(), hostname: "127.0.0.1", port, metricsPort }),
      StartError,
    );
    await assert.rejects(
      Deno.connect({ hostname: "127.0.0.1", port }),
      Deno.errors.ConnectionRefused,
    );
  } finally {
    taken.close();
  }
});
