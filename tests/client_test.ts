/**
 * Tests of the client library as client.ts exports it: the Client class
 * against real in-process servers (and a few hand-written fake servers, for
 * replies a real server never sends), and raw sockets for what the class
 * cannot send. The command line is tested in client/cli_test.ts, failover
 * in client/failover_test.ts.
 */

import assert from "node:assert/strict";
import { Client, ClientError } from "../client.ts";
import {
  decodeReply,
  encodeQuery,
  encodeReply,
  FrameDecoder,
  MAX_QUERY_BYTES,
  MAX_REPLY_BYTES,
  type Reply,
  STATUS_BAD_REQUEST,
  STATUS_FOUND,
  STATUS_NOT_FOUND,
  STATUS_PROTOCOL_ERROR,
  STATUS_SERVER_BUSY,
  TYPE_REPLY,
} from "../protocol.ts";
import { CLIENT_TEST_PEOPLE } from "../testing/books.ts";
import { withDeadline } from "../testing/deadlines.ts";
import { withClientTestServer } from "../testing/in_process_server.ts";

const encoder = new TextEncoder();

/**
 * Runs `body` against a fake server that accepts one connection and hands it
 * to `serve`, for replies a real server never sends.
 */
async function withFakeServer(
  serve: (conn: Deno.Conn) => Promise<void>,
  body: (port: number) => Promise<void>,
): Promise<void> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    const conn = await listener.accept();
    try {
      await serve(conn);
    } finally {
      try {
        conn.close();
      } catch {
        // The client's timeout or close got there first.
      }
    }
  })();
  try {
    await body((listener.addr as Deno.NetAddr).port);
  } finally {
    listener.close();
    await served.catch(() => {});
  }
}

/** A port that was free a moment ago: nothing listens on it. */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** Reads until the peer closes (or resets) the connection; returns every reply it sent. */
async function readRepliesToEnd(conn: Deno.Conn): Promise<Reply[]> {
  const frames = new FrameDecoder({ type: TYPE_REPLY, maxPayload: MAX_REPLY_BYTES });
  const replies: Reply[] = [];
  const buffer = new Uint8Array(4096);
  for (;;) {
    let received: number | null;
    try {
      received = await conn.read(buffer);
    } catch (error) {
      // Closing with our bytes unread makes the server's kernel send a reset.
      if (error instanceof Deno.errors.ConnectionReset) break;
      throw error;
    }
    if (received === null) break;
    frames.push(buffer.subarray(0, received));
    for (let payload; (payload = frames.next()) !== null;) replies.push(decodeReply(payload));
  }
  return replies;
}

async function readOneReply(conn: Deno.Conn): Promise<Reply> {
  const frames = new FrameDecoder({ type: TYPE_REPLY, maxPayload: MAX_REPLY_BYTES });
  const buffer = new Uint8Array(4096);
  for (;;) {
    const received = await conn.read(buffer);
    assert.notEqual(received, null, "the server closed the connection before replying");
    frames.push(buffer.subarray(0, received!));
    const payload = frames.next();
    if (payload !== null) return decodeReply(payload);
  }
}

async function lookUpAll(client: Client, emails: Iterable<string> | AsyncIterable<string>) {
  const replies: Reply[] = [];
  for await (const reply of client.lookupMany(emails)) replies.push(reply);
  return replies;
}

async function assertClientError(
  promise: Promise<unknown>,
  code: ClientError["code"],
  message: string | RegExp,
): Promise<void> {
  await assert.rejects(promise, (error) => {
    assert.ok(error instanceof ClientError, `expected a ClientError, got ${error}`);
    assert.equal(error.code, code);
    if (typeof message === "string") assert.equal(error.message, message);
    else assert.match(error.message, message);
    return true;
  });
}

// --- Client: the statuses -------------------------------------------------

Deno.test("Client.lookup answers FOUND with the name, whatever the case and surrounding spaces", async () => {
  await withClientTestServer(async (port) => {
    const client = await Client.connect({ hostname: "127.0.0.1", port });
    try {
      assert.deepEqual(await client.lookup("ada@example.com"), {
        status: STATUS_FOUND,
        text: "Ada Lovelace",
      });
      assert.deepEqual(await client.lookup("  GRACE@Example.COM "), {
        status: STATUS_FOUND,
        text: "Grace Hopper",
      });
      assert.deepEqual(await client.lookup("jürgen@beispiel.example"), {
        status: STATUS_FOUND,
        text: "Jürgen Möller",
      });
    } finally {
      client.close();
    }
  });
});

Deno.test("Client.lookup answers NOT_FOUND for an address not in the book", async () => {
  await withClientTestServer(async (port) => {
    const client = await Client.connect({ port });
    try {
      const reply = await client.lookup("nobody@example.com");
      assert.equal(reply.status, STATUS_NOT_FOUND);
    } finally {
      client.close();
    }
  });
});

Deno.test("Client.lookup answers BAD_REQUEST for a non-address and the connection stays usable", async () => {
  await withClientTestServer(async (port) => {
    const client = await Client.connect({ port });
    try {
      const reply = await client.lookup("not-an-email");
      assert.equal(reply.status, STATUS_BAD_REQUEST);
      assert.match(reply.text, /no @/);
      assert.equal((await client.lookup("ada@example.com")).text, "Ada Lovelace");
    } finally {
      client.close();
    }
  });
});

Deno.test("Client answers a query over the size limit locally with BAD_REQUEST, sending nothing", async () => {
  await withClientTestServer(async (port) => {
    const client = await Client.connect({ port });
    try {
      const long = `${"a".repeat(MAX_QUERY_BYTES)}@example.com`;
      const reply = await client.lookup(long);
      assert.equal(reply.status, STATUS_BAD_REQUEST);
      assert.match(reply.text, /over the limit of 1024/);
      const replies = await lookUpAll(client, ["ada@example.com", long, "grace@example.com"]);
      assert.deepEqual(replies.map((r) => r.status), [
        STATUS_FOUND,
        STATUS_BAD_REQUEST,
        STATUS_FOUND,
      ]);
      assert.equal(replies[2].text, "Grace Hopper");
    } finally {
      client.close();
    }
  });
});

Deno.test("a frame of the wrong type on a raw socket gets PROTOCOL_ERROR, then the server closes", async () => {
  await withClientTestServer(async (port) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await conn.write(encoder.encode("GET / HTTP/1.1\r\n\r\n"));
      const replies = await readRepliesToEnd(conn);
      assert.equal(replies.length, 1);
      assert.equal(replies[0].status, STATUS_PROTOCOL_ERROR);
      assert.match(replies[0].text, /0x47 \("G"\)/);
    } finally {
      conn.close();
    }
  });
});

Deno.test("Client turns a PROTOCOL_ERROR reply into a protocol ClientError and closes", async () => {
  await withFakeServer(async (conn) => {
    await conn.read(new Uint8Array(1024));
    await conn.write(encodeReply(STATUS_PROTOCOL_ERROR, "Frame type 0x47 is not Q."));
  }, async (port) => {
    const client = await Client.connect({ port });
    await assertClientError(
      client.lookup("ada@example.com"),
      "protocol",
      `The server at 127.0.0.1:${port} reported a protocol error: Frame type 0x47 is not Q.`,
    );
    // The connection is gone, and every later call says why.
    await assertClientError(client.lookup("ada@example.com"), "protocol", /protocol error/);
    client.close();
  });
});

Deno.test("Client reports SERVER_BUSY from a server at its connection limit as a busy ClientError", async () => {
  await withClientTestServer(async (port) => {
    const first = await Client.connect({ port });
    try {
      // Once this is answered, the first connection surely holds the only place.
      assert.equal((await first.lookup("ada@example.com")).text, "Ada Lovelace");
      const second = await Client.connect({ port });
      await assertClientError(
        second.lookup("ada@example.com"),
        "busy",
        /^The server at 127\.0\.0\.1:\d+ is busy: /,
      );
      second.close();
      // A raw socket that sends nothing sees the busy reply, then the close.
      const raw = await Deno.connect({ hostname: "127.0.0.1", port });
      const replies = await readRepliesToEnd(raw);
      raw.close();
      assert.deepEqual(replies.map((r) => r.status), [STATUS_SERVER_BUSY]);
      assert.equal((await first.lookup("grace@example.com")).text, "Grace Hopper");
    } finally {
      first.close();
    }
  }, { limits: { maxConnections: 1 } });
});

// --- Client: failures ---------------------------------------------------------

Deno.test("Client.connect to a port nobody listens on says the connection was refused", async () => {
  const port = closedPort();
  await assertClientError(
    Client.connect({ hostname: "127.0.0.1", port }),
    "connect",
    `Cannot connect to 127.0.0.1:${port} (connection refused): check that the server is running.`,
  );
});

Deno.test("Client.connect to a host name that does not resolve says the host is unknown", async () => {
  await assertClientError(
    Client.connect({ hostname: "no-such-host.invalid", port: 8080 }),
    "connect",
    'Cannot connect to no-such-host.invalid:8080: unknown host "no-such-host.invalid".',
  );
});

Deno.test("Client.connect rejects a bad port or timeout as usage errors", async () => {
  await assertClientError(Client.connect({ port: 0 }), "usage", /The port must be a whole number/);
  await assertClientError(Client.connect({ port: 70000 }), "usage", /not 70000/);
  await assertClientError(Client.connect({ timeoutMs: -1 }), "usage", /timeout/);
});

Deno.test("Client reports a server that never replies as a timeout", async () => {
  await withFakeServer(async (conn) => {
    // Read and never answer, until the client gives up and closes.
    const buffer = new Uint8Array(1024);
    while (await conn.read(buffer).catch(() => null) !== null) {
      // Keep reading.
    }
  }, async (port) => {
    const client = await Client.connect({ port, timeoutMs: 100, rounds: 1 });
    await assertClientError(
      client.lookup("ada@example.com"),
      "timeout",
      `No reply from 127.0.0.1:${port} within 0.1 s.`,
    );
    client.close();
  });
});

Deno.test("Client reports a connection dropped mid-reply as closed before replying", async () => {
  await withFakeServer(async (conn) => {
    await conn.read(new Uint8Array(1024));
    // The first four bytes of a reply header, and then nothing.
    await conn.write(encodeReply(STATUS_FOUND, "Ada Lovelace").subarray(0, 4));
  }, async (port) => {
    const client = await Client.connect({ port, rounds: 1 });
    await assertClientError(
      client.lookup("ada@example.com"),
      "closed",
      `The server at 127.0.0.1:${port} closed the connection before replying.`,
    );
    client.close();
  });
});

Deno.test("Client reports a reply frame of the wrong type as malformed", async () => {
  await withFakeServer(async (conn) => {
    await conn.read(new Uint8Array(1024));
    await conn.write(encodeQuery("ada@example.com"));
  }, async (port) => {
    const client = await Client.connect({ port });
    await assertClientError(
      client.lookup("ada@example.com"),
      "protocol",
      /^The server at 127\.0\.0\.1:\d+ sent a malformed reply: Frame type 0x51 \("Q"\)/,
    );
    client.close();
  });
});

Deno.test("Client reports a reply with an unknown status as malformed", async () => {
  await withFakeServer(async (conn) => {
    await conn.read(new Uint8Array(1024));
    await conn.write(Uint8Array.of(TYPE_REPLY, 0, 0, 0, 1, 9));
  }, async (port) => {
    const client = await Client.connect({ port });
    await assertClientError(
      client.lookup("ada@example.com"),
      "protocol",
      `The server at 127.0.0.1:${port} sent a malformed reply: Reply status 9 is not a known status.`,
    );
    client.close();
  });
});

Deno.test("Client calls after close fail with a closed ClientError", async () => {
  await withClientTestServer(async (port) => {
    const client = await Client.connect({ port });
    client.close();
    await assertClientError(client.lookup("ada@example.com"), "closed", "The client is closed.");
  });
});

// --- Client: pipelining and concurrency ---------------------------------------

/** 1000 queries: every tenth not in the book, every tenth (offset 5) not an address. */
function mixedQueries(): { emails: string[]; expected: Reply[] } {
  const emails: string[] = [];
  const expected: Reply[] = [];
  for (let i = 0; i < CLIENT_TEST_PEOPLE; i++) {
    if (i % 10 === 0) {
      emails.push(`nobody${i}@example.com`);
      expected.push({ status: STATUS_NOT_FOUND, text: "" });
    } else if (i % 10 === 5) {
      emails.push(`bad${i}`);
      expected.push({ status: STATUS_BAD_REQUEST, text: "" });
    } else {
      emails.push(`PERSON${i}@Example.com`);
      expected.push({ status: STATUS_FOUND, text: `Person ${i}` });
    }
  }
  return { emails, expected };
}

function assertAnswers(replies: Reply[], expected: Reply[]): void {
  assert.equal(replies.length, expected.length);
  for (let i = 0; i < expected.length; i++) {
    assert.equal(replies[i].status, expected[i].status, `status of reply ${i}`);
    if (expected[i].status === STATUS_FOUND) assert.equal(replies[i].text, expected[i].text);
  }
}

Deno.test("Client.lookupMany pipelines 1000 queries and yields the replies in order", async () => {
  await withClientTestServer(async (port) => {
    const client = await Client.connect({ port });
    try {
      const { emails, expected } = mixedQueries();
      assertAnswers(await lookUpAll(client, emails), expected);
      // The same connection is usable afterwards, for one lookup or another batch.
      assert.equal((await client.lookup("ada@example.com")).text, "Ada Lovelace");
      assertAnswers(await lookUpAll(client, emails), expected);
    } finally {
      client.close();
    }
  });
});

Deno.test("Client.lookupMany keeps order with a small odd window and an async source", async () => {
  await withClientTestServer(async (port) => {
    const client = await Client.connect({ port });
    try {
      const { emails, expected } = mixedQueries();
      const source = async function* () {
        for (const email of emails) yield email;
      };
      const replies: Reply[] = [];
      for await (const reply of client.lookupMany(source(), 3)) replies.push(reply);
      assertAnswers(replies, expected);
    } finally {
      client.close();
    }
  });
});

Deno.test("Client.lookupMany yields a reply before the source gives its next address", async () => {
  await withClientTestServer(async (port) => {
    const client = await Client.connect({ port });
    try {
      let firstAnswered!: () => void;
      const answered = new Promise<void>((resolve) => firstAnswered = resolve);
      const source = async function* () {
        yield "ada@example.com";
        // A stream that waits for the answer before going on: a pipeline that
        // waited for more input before replying would never finish.
        await answered;
        yield "grace@example.com";
      };
      const names: string[] = [];
      for await (const reply of client.lookupMany(source())) {
        names.push(reply.text);
        firstAnswered();
      }
      assert.deepEqual(names, ["Ada Lovelace", "Grace Hopper"]);
    } finally {
      client.close();
    }
  });
});

Deno.test("Client.lookupMany yields the replies owed, then rethrows an error of its source", async () => {
  await withClientTestServer(async (port) => {
    const client = await Client.connect({ port });
    try {
      const source = function* () {
        yield "ada@example.com";
        yield "grace@example.com";
        throw new Error("the source broke");
      };
      const names: string[] = [];
      await assert.rejects(async () => {
        for await (const reply of client.lookupMany(source())) names.push(reply.text);
      }, /the source broke/);
      assert.deepEqual(names, ["Ada Lovelace", "Grace Hopper"]);
      assert.equal((await client.lookup("ada@example.com")).text, "Ada Lovelace");
    } finally {
      client.close();
    }
  });
});

Deno.test("Client.lookupMany stopped early with replies owed closes the client", async () => {
  await withClientTestServer(async (port) => {
    const client = await Client.connect({ port });
    const { emails } = mixedQueries();
    for await (const _reply of client.lookupMany(emails)) break;
    await assertClientError(client.lookup("ada@example.com"), "closed", /lookupMany stopped/);
    client.close();
    const again = await Client.connect({ port });
    assert.equal((await again.lookup("ada@example.com")).text, "Ada Lovelace");
    again.close();
  });
});

Deno.test("Client.lookupMany stopped while its source waits sends nothing more and stays usable", async () => {
  await withClientTestServer(async (port) => {
    const client = await Client.connect({ port });
    try {
      let openGate!: () => void;
      const gate = new Promise<void>((resolve) => openGate = resolve);
      let sourceClosed!: () => void;
      const closed = new Promise<void>((resolve) => sourceClosed = resolve);
      const source = async function* () {
        try {
          yield "ada@example.com";
          await gate;
          yield "grace@example.com";
        } finally {
          sourceClosed();
        }
      };
      for await (const reply of client.lookupMany(source(), 1)) {
        assert.equal(reply.text, "Ada Lovelace");
        break;
      }
      // The address the source gives after the stop must be dropped, not sent.
      openGate();
      await withDeadline(closed, "the source to be closed");
      assert.equal((await client.lookup("person1@example.com")).text, "Person 1");
      assert.equal((await client.lookup("person2@example.com")).text, "Person 2");
    } finally {
      client.close();
    }
  });
});

Deno.test("Client.lookupMany rejects a window below 1", async () => {
  await withClientTestServer(async (port) => {
    const client = await Client.connect({ port });
    try {
      await assertClientError(lookUpAllWindow(client, 0), "usage", /window/);
      // A bad argument is the caller's mistake: the client stays usable.
      assert.equal((await client.lookup("ada@example.com")).text, "Ada Lovelace");
    } finally {
      client.close();
    }
  });
});

async function lookUpAllWindow(client: Client, window: number): Promise<void> {
  for await (const _reply of client.lookupMany(["ada@example.com"], window)) {
    // Drain.
  }
}

Deno.test("Client calls made at once on one client are answered in turn", async () => {
  await withClientTestServer(async (port) => {
    const client = await Client.connect({ port });
    try {
      const replies = await Promise.all([
        client.lookup("ada@example.com"),
        lookUpAll(client, ["person1@example.com", "person2@example.com"]),
        client.lookup("grace@example.com"),
      ]);
      assert.equal(replies[0].text, "Ada Lovelace");
      assert.deepEqual(replies[1].map((r) => r.text), ["Person 1", "Person 2"]);
      assert.equal(replies[2].text, "Grace Hopper");
    } finally {
      client.close();
    }
  });
});

Deno.test("200 Client connections at once each get their own answer", async () => {
  await withClientTestServer(async (port) => {
    const names = await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const client = await Client.connect({ port });
        try {
          return (await client.lookup(`person${i}@example.com`)).text;
        } finally {
          client.close();
        }
      }),
    );
    assert.deepEqual(names, Array.from({ length: 200 }, (_, i) => `Person ${i}`));
  });
});

// --- The server, seen from raw sockets ------------------------------------------

Deno.test("a query frame sent one byte at a time on a raw socket gets its reply", async () => {
  await withClientTestServer(async (port) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      conn.setNoDelay(true);
      for (const byte of encodeQuery("ada@example.com")) await conn.write(Uint8Array.of(byte));
      assert.deepEqual(await readOneReply(conn), { status: STATUS_FOUND, text: "Ada Lovelace" });
    } finally {
      conn.close();
    }
  });
});

Deno.test("connections dropped mid-frame leave the server serving the others", async () => {
  await withClientTestServer(async (port) => {
    const frame = encodeQuery("ada@example.com");
    for (let i = 0; i < 20; i++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      // Cut inside the header for some, inside the body for others.
      await conn.write(frame.subarray(0, 1 + (i % (frame.length - 1))));
      conn.close();
    }
    const client = await Client.connect({ port });
    try {
      assert.equal((await client.lookup("ada@example.com")).text, "Ada Lovelace");
    } finally {
      client.close();
    }
  });
});

Deno.test("a client that half-closes after its queries still gets every reply", async () => {
  await withClientTestServer(async (port) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      const queries = ["ada@example.com", "nobody@example.com", "grace@example.com"];
      const frames = queries.map(encodeQuery);
      const bytes = new Uint8Array(frames.reduce((sum, f) => sum + f.length, 0));
      let offset = 0;
      for (const frame of frames) {
        bytes.set(frame, offset);
        offset += frame.length;
      }
      await conn.write(bytes);
      await conn.closeWrite();
      const replies = await readRepliesToEnd(conn);
      assert.deepEqual(replies.map((r) => r.status), [
        STATUS_FOUND,
        STATUS_NOT_FOUND,
        STATUS_FOUND,
      ]);
      assert.equal(replies[2].text, "Grace Hopper");
    } finally {
      conn.close();
    }
  });
});

// --- TLS ------------------------------------------------------------------

// A throwaway CA and a certificate it signed for localhost and 127.0.0.1,
// valid until 2126, made for these tests only (openssl, P-256).
const TEST_CA_CERT = `-----BEGIN CERTIFICATE-----
MIIBnTCCAUOgAwIBAgIUOBaXgMPxbxRA5f60JuPbgjKPSJkwCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQYWRkcmJvb2sgdGVzdCBDQTAgFw0yNjExMjQwNDIxNDBaGA8y
MTI2MTAzMTA0MjE0MFowGzEZMBcGA1UEAwwQYWRkcmJvb2sgdGVzdCBDQTBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABHwbkciGJkl/77b9TFsj1HZlr8/EWHa057Sb
B8A0nbz8w0PVs7PmrpURN4v3aHv3UiMDu88d/WhXGh/fJJMi/bWjYzBhMB0GA1Ud
DgQWBBTvPGs9z4fr+mbSWhJ3GLdYPl0SwzAfBgNVHSMEGDAWgBTvPGs9z4fr+mbS
WhJ3GLdYPl0SwzAPBgNVHRMBAf8EBTADAQH/MA4GA1UdDwEB/wQEAwICBDAKBggq
hkjOPQQDAgNIADBFAiEA6szEzEuer2wgKoHqkFHiNtHHd20kcp0L9B+8rtl/KvYC
IA05RlL9TrL1xr0RnUPdGEPunQC0wQiDQEZ/cRAz1vkI
-----END CERTIFICATE-----
`;
const TEST_SERVER_CERT = `-----BEGIN CERTIFICATE-----
MIIBsTCCAVegAwIBAgIUb3IgUoWkLc6vtqfCYFMgYnPDlcIwCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQYWRkcmJvb2sgdGVzdCBDQTAgFw0yNjExMjQwNDIxNDBaGA8y
MTI2MTAzMTA0MjE0MFowFDESMBAGA1UEAwwJbG9jYWxob3N0MFkwEwYHKoZIzj0C
AQYIKoZIzj0DAQcDQgAE0slakxVW/e9KwIZbeqLi8FVhCL+ET/PaG/IapVQvjfji
Ocjzcc7prGVytKdghUpeLozqzMTt6ObggknFIFCx+qN+MHwwGgYDVR0RBBMwEYIJ
bG9jYWxob3N0hwR/AAABMAkGA1UdEwQCMAAwEwYDVR0lBAwwCgYIKwYBBQUHAwEw
HQYDVR0OBBYEFEjOHADsAsGqKuLiJEu6ZiBxEb3NMB8GA1UdIwQYMBaAFO88az3P
h+v6ZtJaEncYt1g+XRLDMAoGCCqGSM49BAMCA0gAMEUCIFVzXFNoZpgcVTfkMUNU
HAaz08tWjTkVEQmvpnceouREAiEAkqs9x4SQWwUA+jllDrZki27e9kCk1H6a3sl0
r/l+Z6s=
-----END CERTIFICATE-----
`;
const TEST_SERVER_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgpViiglUXiMI7vKTI
xzxbsBsOVcacw1U4gg3+GE+UDvWhRANCAATSyVqTFVb970rAhlt6ouLwVWEIv4RP
89ob8hqlVC+N+OI5yPNxzumsZXK0p2CFSl4ujOrMxO3o5uCCScUgULH6
-----END PRIVATE KEY-----
`;
const TLS_FILES = { cert: TEST_SERVER_CERT, key: TEST_SERVER_KEY };

Deno.test("Client with TLS and the server's CA looks up over TLS", async () => {
  await withClientTestServer(async (port) => {
    const client = await Client.connect({ port, caCerts: [TEST_CA_CERT] });
    try {
      assert.equal((await client.lookup("ada@example.com")).text, "Ada Lovelace");
      const replies = await lookUpAll(client, mixedQueries().emails);
      assertAnswers(replies, mixedQueries().expected);
    } finally {
      client.close();
    }
  }, { tls: TLS_FILES });
});

Deno.test("Client with TLS to a plain TCP server says the TLS handshake failed", async () => {
  await withClientTestServer(async (port) => {
    await assertClientError(
      Client.connect({ port, tls: true }),
      "tls",
      new RegExp(`^TLS handshake with 127\\.0\\.0\\.1:${port} failed: `),
    );
  });
});

Deno.test("Client with TLS refuses a certificate from a CA it was not given", async () => {
  await withClientTestServer(async (port) => {
    await assertClientError(
      Client.connect({ port, tls: true }),
      "tls",
      /^TLS handshake with .* failed: .*certificate/i,
    );
  }, { tls: TLS_FILES });
});
