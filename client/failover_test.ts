/**
 * Tests of failover: the pure pieces (backoff, which errors are retried,
 * the queue of queries to send again), and the Client over lists of hosts:
 * real server processes killed or drained mid-batch, a host that never
 * replies, and every host down.
 */

import assert from "node:assert/strict";
import { ClientError } from "./connection.ts";
import {
  backoffMs,
  Client,
  FIRST_BACKOFF_MS,
  isRetryable,
  MAX_BACKOFF_MS,
  ResendQueue,
} from "./failover.ts";
import { type Reply, STATUS_FOUND, STATUS_NOT_FOUND } from "../protocol.ts";
import { writeCsvBook } from "../testing/books.ts";
import { withDeadline } from "../testing/deadlines.ts";
import { tempDir } from "../testing/files.ts";
import { startTestServer } from "../testing/in_process_server.ts";
import { LOOPBACK } from "../testing/loopback.ts";
import { ServerProcess } from "../testing/processes.ts";

// --- Pure pieces ------------------------------------------------------------------

Deno.test("backoffMs pauses only after a whole round failed, doubling up to the cap", () => {
  assert.deepEqual([1, 2, 3, 4, 5, 6].map((failures) => backoffMs(failures, 2)), [
    0,
    FIRST_BACKOFF_MS,
    0,
    2 * FIRST_BACKOFF_MS,
    0,
    4 * FIRST_BACKOFF_MS,
  ]);
  assert.deepEqual([1, 2, 3].map((failures) => backoffMs(failures, 1)), [100, 200, 400]);
  assert.equal(backoffMs(0, 3), 0);
  assert.equal(backoffMs(30, 1), MAX_BACKOFF_MS);
});

Deno.test("isRetryable takes lost, refused, silent and busy servers, not broken or refused TLS ones", () => {
  for (const code of ["connect", "timeout", "closed", "busy"] as const) {
    assert.ok(isRetryable(new ClientError(code, "x")), code);
  }
  for (const code of ["protocol", "tls", "usage"] as const) {
    assert.ok(!isRetryable(new ClientError(code, "x")), code);
  }
  assert.ok(!isRetryable(new Error("the source broke")));
});

/** Takes up to `count` items from a feed (sync or async), as one attempt would. */
async function take(feed: Iterable<string> | AsyncIterable<string>, count: number) {
  const taken: string[] = [];
  if (count === 0) return taken;
  for await (const item of feed) {
    taken.push(item);
    if (taken.length === count) break;
  }
  return taken;
}

for (const kind of ["sync", "async"] as const) {
  const source = (items: string[]) =>
    kind === "sync" ? items : (async function* () {
      yield* items;
    })();

  Deno.test(`ResendQueue (${kind}): a new feed repeats what has no reply, then goes on`, async () => {
    const queue = new ResendQueue(source(["a", "b", "c", "d", "e", "f"]));
    assert.deepEqual(await take(queue.feed(), 4), ["a", "b", "c", "d"]);
    queue.answered();
    assert.equal(queue.unanswered, 3);
    // The attempt failed with b, c and d unanswered: the next one starts there.
    assert.deepEqual(await take(queue.feed(), 10), ["b", "c", "d", "e", "f"]);
    queue.answered();
    queue.answered();
    assert.deepEqual(await take(queue.feed(), 10), ["d", "e", "f"]);
    await queue.close();
  });
}

function asyncFeed(queue: ResendQueue): AsyncIterator<string> {
  return (queue.feed() as AsyncIterable<string>)[Symbol.asyncIterator]();
}

Deno.test("ResendQueue: a pull a failed attempt started is handed to the next, never lost", async () => {
  let release!: (value: string) => void;
  const slow = new Promise<string>((resolve) => release = resolve);
  let closed = false;
  const source = (async function* () {
    try {
      yield "a";
      yield await slow;
      yield "c";
    } finally {
      closed = true;
    }
  })();
  const queue = new ResendQueue(source);
  const first = asyncFeed(queue);
  assert.deepEqual(await first.next(), { done: false, value: "a" });
  // The first attempt waits for "b" and dies meanwhile; the second asks too.
  const dead = first.next();
  const second = asyncFeed(queue);
  assert.deepEqual(await second.next(), { done: false, value: "a" });
  const next = second.next();
  release("b");
  assert.deepEqual(await next, { done: false, value: "b" });
  assert.deepEqual(await dead, { done: false, value: "b" });
  assert.deepEqual(await second.next(), { done: false, value: "c" });
  assert.deepEqual(await second.next(), { done: true, value: undefined });
  await queue.close();
  assert.ok(closed, "the source was closed");
});

Deno.test("ResendQueue passes the source's error on to every feed that reaches it", async () => {
  const queue = new ResendQueue((async function* () {
    yield "a";
    throw new Error("the source broke");
  })());
  await assert.rejects(take(queue.feed(), 5), /the source broke/);
  await assert.rejects(take(queue.feed(), 5), /the source broke/);
});

// --- Lists of hosts -------------------------------------------------------------

/** Entries in the book of the server processes: person{i}@example.com is "Person {i}". */
const ENTRIES = 5000;
/** Lookups in a batch; every sixth thousand is missing from the book. */
const LOOKUPS = 30_000;

function emailOf(i: number): string {
  return `person${i % 6000}@example.com`;
}

function nameOf(i: number): string {
  return i % 6000 < ENTRIES ? `Person ${i % 6000}` : "";
}

function assertReply(reply: Reply, i: number): void {
  const name = nameOf(i);
  if (name === "") assert.equal(reply.status, STATUS_NOT_FOUND, `reply ${i}`);
  else assert.deepEqual(reply, { status: STATUS_FOUND, text: name }, `reply ${i}`);
}

/** Starts `count` server processes on one book, and disposes of them however the body ends. */
async function withServers(
  count: number,
  body: (servers: ServerProcess[]) => Promise<void>,
): Promise<void> {
  await using dir = await tempDir("client_failover_test_");
  const rows = Array.from({ length: ENTRIES }, (_, i) => [`person${i}@example.com`, `Person ${i}`]);
  const book = await writeCsvBook(dir.path, rows as [string, string][]);
  const servers = await Promise.all(
    Array.from({ length: count }, () => ServerProcess.start(["--data", book])),
  );
  try {
    await body(servers);
  } finally {
    await Promise.all(servers.map((server) => server[Symbol.asyncDispose]()));
  }
}

function hostsOf(servers: ServerProcess[]): string {
  return servers.map((server) => `${server.hostname}:${server.port}`).join(",");
}

/** A port nothing listens on. */
function closedPort(): number {
  const listener = Deno.listen({ hostname: LOOPBACK, port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

Deno.test("Client with a list of hosts skips one that refuses and queries the next", async () => {
  const { server, port } = await startTestServer();
  try {
    const client = await Client.connect({
      hosts: `${LOOPBACK}:${closedPort()},${LOOPBACK}:${port}`,
    });
    try {
      assert.equal(client.address, `${LOOPBACK}:${port}`);
      assert.equal((await client.lookup("ada@example.com")).text, "Ada Lovelace");
    } finally {
      client.close();
    }
    const endpoints = await Client.connect({
      hosts: [{ hostname: LOOPBACK, port: closedPort() }, { hostname: LOOPBACK, port }],
    });
    assert.equal((await endpoints.lookup("alan@turing.example")).text, "Alan Turing");
    endpoints.close();
  } finally {
    await server.close();
  }
});

Deno.test("Client answers every lookup in order when a host is SIGKILLed mid-batch", async () => {
  await withServers(2, async (servers) => {
    const client = await Client.connect({ hosts: hostsOf(servers) });
    try {
      let i = 0;
      const emails = Array.from({ length: LOOKUPS }, (_, n) => emailOf(n));
      for await (const reply of client.lookupMany(emails)) {
        assertReply(reply, i);
        // Replies are owed on the connection to the first host now: kill it.
        if (++i === LOOKUPS / 4) servers[0].signal("SIGKILL");
      }
      assert.equal(i, LOOKUPS);
      assert.equal(client.address, `${servers[1].hostname}:${servers[1].port}`);
    } finally {
      client.close();
    }
  });
});

Deno.test("Client answers every lookup in order when a host drains for a restart mid-batch", async () => {
  await withServers(2, async (servers) => {
    const client = await Client.connect({ hosts: hostsOf(servers) });
    try {
      let i = 0;
      const source = async function* () {
        for (let n = 0; n < LOOKUPS; n++) yield emailOf(n);
      };
      for await (const reply of client.lookupMany(source())) {
        assertReply(reply, i);
        if (++i === LOOKUPS / 3) servers[0].signal("SIGTERM");
      }
      assert.equal(i, LOOKUPS);
      assert.equal((await servers[0].exit()).code, 0, "the first server drained and exited");
    } finally {
      client.close();
    }
  });
});

Deno.test("Client moves on from a host that stops replying, after the timeout", async () => {
  const silent = Deno.listen({ hostname: LOOPBACK, port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of silent) held.push(conn);
  })();
  const { server, port } = await startTestServer();
  try {
    const client = await Client.connect({
      hosts: [{ hostname: LOOPBACK, port: silent.addr.port }, { hostname: LOOPBACK, port }],
      timeoutMs: 200,
    });
    try {
      const replies: Reply[] = [];
      for await (const reply of client.lookupMany(["ada@example.com", "nobody@example.com"])) {
        replies.push(reply);
      }
      assert.deepEqual(replies.map((reply) => reply.status), [STATUS_FOUND, STATUS_NOT_FOUND]);
      assert.equal(replies[0].text, "Ada Lovelace");
    } finally {
      client.close();
    }
  } finally {
    silent.close();
    await accepting.catch(() => {});
    for (const conn of held) conn.close();
    await server.close();
  }
});

Deno.test("Client gives up when every host is down, naming them and the last error", async () => {
  await withServers(2, async (servers) => {
    const client = await Client.connect({ hosts: hostsOf(servers) });
    const hosts = hostsOf(servers).replace(",", ", ");
    let answered = 0;
    await assert.rejects(
      withDeadline(
        (async () => {
          for await (
            const reply of client.lookupMany(Array.from({ length: LOOKUPS }, (_, n) => emailOf(n)))
          ) {
            assertReply(reply, answered);
            if (++answered === 1000) { for (const server of servers) server.signal("SIGKILL"); }
          }
        })(),
        "the client to give up",
        30_000,
      ),
      (error) => {
        assert.ok(error instanceof ClientError, String(error));
        assert.equal(error.code, "connect");
        assert.equal(
          error.message.split("; the last error: ")[0],
          `No server answered in 3 rounds over ${hosts}`,
        );
        assert.match(
          error.message,
          /the last error: Cannot connect to 127\.0\.0\.1:\d+ \(connection refused\)/,
        );
        return true;
      },
    );
    assert.ok(answered >= 1000 && answered < LOOKUPS);
    client.close();
  });
});

Deno.test("Client moves on from a host at its connection limit (SERVER_BUSY) to the next", async () => {
  const full = await startTestServer({ limits: { maxConnections: 1 } });
  const free = await startTestServer();
  const holder = await Client.connect({ port: full.port });
  try {
    // Once this is answered, the holder surely has the full server's only place.
    assert.equal((await holder.lookup("ada@example.com")).text, "Ada Lovelace");
    const client = await Client.connect({
      hosts: [{ hostname: LOOPBACK, port: full.port }, { hostname: LOOPBACK, port: free.port }],
    });
    try {
      assert.equal((await client.lookup("alan@turing.example")).text, "Alan Turing");
      assert.equal(client.address, `${LOOPBACK}:${free.port}`);
    } finally {
      client.close();
    }
  } finally {
    holder.close();
    await full.server.close();
    await free.server.close();
  }
});

Deno.test("Client reaches an IPv6 host given in brackets, with its port", async () => {
  const { server, port } = await startTestServer({ hostname: "::1" });
  try {
    const client = await Client.connect({ hosts: `[::1]:${port}` });
    try {
      assert.equal(client.address, `[::1]:${port}`);
      assert.equal((await client.lookup("ada@example.com")).text, "Ada Lovelace");
    } finally {
      client.close();
    }
  } finally {
    await server.close();
  }
});
