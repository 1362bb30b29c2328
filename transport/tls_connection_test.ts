/**
 * Tests of the TLS engine with real peers on loopback: the engine runs in
 * a small epoll loop in this process (testing/tls_test_server.ts, its epoll_wait a
 * non-blocking FFI call so the clients here keep running), and the clients
 * are `Deno.connectTls`, the `openssl s_client` command, and raw TCP.
 */

import assert from "node:assert/strict";
import { type Libc, openLibc } from "../common/libc.ts";
import { openOpenSsl, type OpenSsl } from "./openssl.ts";
import {
  decodeReply,
  encodeQuery,
  FrameDecoder,
  MAX_REPLY_BYTES,
  TYPE_REPLY,
} from "../protocol.ts";
import { waitFor, withDeadline } from "../testing/deadlines.ts";
import { LOOPBACK } from "../testing/loopback.ts";
import {
  CLIENT_SUBJECT,
  makeTestPki,
  ROTATED_SERVER_NAME,
  SERVER_NAME,
  type TestPki,
} from "../testing/pki.ts";
import { Subprocess } from "../testing/processes.ts";
import {
  TLS_TEST_SERVER_PROGRAM,
  TlsTestServer,
  type TlsTestServerOptions,
} from "../testing/tls_test_server.ts";
import { TlsContext, type TlsFiles } from "./tls_context.ts";
import { writeAll } from "../common/write_all.ts";

const ON_LINUX = Deno.build.os === "linux";
const MANY_CONNECTIONS = 2500;
const CONCURRENT_CONNECTIONS = 25;
const WARM_UP_CONNECTIONS = 100;
const MAX_RSS_GROWTH_BYTES = 60 * 1024 * 1024;
const PIPELINED_QUERIES = 300;

/** epoll_wait on another thread, so waiting does not block the clients in this process. */
function asyncEpollWait() {
  const { epoll_wait } = Deno.dlopen("libc.so.6", {
    epoll_wait: {
      parameters: ["i32", "buffer", "i32", "i32"],
      result: "i32",
      nonblocking: true,
    },
  }).symbols;
  return epoll_wait;
}

interface Engine {
  openssl: OpenSsl;
  libc: Libc;
  wait: ReturnType<typeof asyncEpollWait>;
}

function loadEngine(): Engine {
  const openssl = openOpenSsl();
  const libc = openLibc();
  assert.ok(openssl && libc, "OpenSSL 3 and libc need --allow-ffi on Linux");
  return { openssl, libc, wait: asyncEpollWait() };
}

/** Runs `use` with a server on a new context from `options`, and closes it. */
async function withServer(
  engine: Engine,
  options: TlsFiles,
  use: (server: TlsTestServer) => Promise<void>,
  serverOptions: Partial<TlsTestServerOptions> = {},
): Promise<void> {
  const context = TlsContext.create(engine.openssl, options);
  const server = new TlsTestServer({ ...engine, context, ...serverOptions });
  try {
    await use(server);
  } finally {
    await server.close();
  }
}

/** Sends every query in one write, then reads one reply per query; returns their texts. */
async function ask(conn: Deno.Conn, emails: readonly string[]): Promise<string[]> {
  const bytes = emails.map((email) => encodeQuery(email));
  const joined = new Uint8Array(bytes.reduce((sum, part) => sum + part.length, 0));
  bytes.reduce((offset, part) => (joined.set(part, offset), offset + part.length), 0);
  for (let written = 0; written < joined.length;) {
    written += await conn.write(joined.subarray(written));
  }
  return await withDeadline(readReplies(conn, emails.length), `${emails.length} replies`);
}

async function readReplies(conn: Deno.Conn, count: number): Promise<string[]> {
  const decoder = new FrameDecoder({ type: TYPE_REPLY, maxPayload: MAX_REPLY_BYTES });
  const buffer = new Uint8Array(65536);
  const texts: string[] = [];
  while (texts.length < count) {
    const got = await conn.read(buffer);
    if (got === null) {
      throw new Error(`The server closed after ${texts.length} of ${count} replies.`);
    }
    decoder.push(buffer, got);
    for (let payload = decoder.next(); payload !== null; payload = decoder.next()) {
      texts.push(decodeReply(payload).text);
    }
  }
  return texts;
}

function connectTls(port: number, pki: TestPki, client?: { certificate: string; key: string }) {
  const base = { hostname: LOOPBACK, port, caCerts: [pki.ca.certificate] };
  return withDeadline(
    client
      ? Deno.connectTls({ ...base, cert: client.certificate, key: client.key })
      : Deno.connectTls(base),
    "a TLS connection",
  );
}

/** Runs `openssl s_client`, writes `input`, and keeps its stdin open until `replyBytes` came back. */
async function sClient(
  port: number,
  args: readonly string[],
  input: Uint8Array,
  replyBytes: number,
): Promise<{ code: number; stdout: Uint8Array; stderr: string }> {
  const child = new Deno.Command("openssl", {
    // -nocommands: a line starting with Q (every query frame) would otherwise mean "quit".
    args: ["s_client", "-connect", `${LOOPBACK}:${port}`, "-brief", "-nocommands", ...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const writer = child.stdin.getWriter();
  await writer.write(input);
  // Keep stdin open until the replies are in: at end of input s_client hangs up at once.
  const reader = child.stdout.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  await withDeadline(
    (async () => {
      while (total < replyBytes) {
        const { value, done } = await reader.read();
        if (done) break;
        chunks.push(value);
        total += value.length;
      }
    })(),
    "openssl s_client's output",
    undefined,
    () => child.kill("SIGKILL"),
  );
  await writer.close();
  for (let more = await reader.read(); !more.done; more = await reader.read()) {
    chunks.push(more.value);
  }
  const { code } = await withDeadline(
    child.status,
    "openssl s_client to exit",
    undefined,
    () => child.kill("SIGKILL"),
  );
  const stdout = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.length, 0));
  chunks.reduce((offset, chunk) => (stdout.set(chunk, offset), offset + chunk.length), 0);
  return { code, stdout, stderr: await stderr };
}

/** The subject of the certificate `openssl s_client` was shown, after a handshake and nothing else. */
async function servedCertificateSubject(port: number, pki: TestPki): Promise<string> {
  const output = await new Deno.Command("openssl", {
    args: [
      "s_client",
      "-connect",
      `${LOOPBACK}:${port}`,
      "-CAfile",
      pki.ca.certificatePath,
      "-verify_return_error",
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(output.stdout);
  const subject = text.match(/^subject=(.*)$/m);
  assert.ok(subject, `s_client showed no subject:\n${text}`);
  return subject[1];
}

/** A TCP proxy in front of the server, for tests that control how bytes arrive. */
interface TestProxy {
  /** Where clients connect. */
  port: number;
  /** Bytes from the client held back since {@linkcode hold}. */
  readonly held: number;
  /** From now on, keep the client's bytes instead of forwarding them. */
  hold(): void;
  /** Forwards everything held in one write, and forwards as usual again. */
  release(): Promise<void>;
  /** Forwards everything held, then ends the stream to the server (a TCP FIN, no close_notify). */
  releaseAndEnd(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Starts a proxy to `port`. With `byteByByte`, it forwards one byte per
 * write in both directions, so every TLS record arrives split byte by byte.
 */
function startProxy(port: number, byteByByte = false): TestProxy {
  const listener = Deno.listen({ hostname: LOOPBACK, port: 0 });
  const conns: Deno.Conn[] = [];
  const pumps: Promise<void>[] = [];
  let held: Uint8Array[] | undefined;
  let upstreamOfHeld: Deno.Conn | undefined;
  const pump = async (from: Deno.Conn, to: Deno.Conn, fromClient: boolean) => {
    const buffer = new Uint8Array(byteByByte ? 1 : 65536);
    try {
      for (let got = await from.read(buffer); got !== null; got = await from.read(buffer)) {
        if (fromClient && held) {
          held.push(buffer.slice(0, got));
          upstreamOfHeld = to;
          continue;
        }
        await writeAll(to, buffer.subarray(0, got));
        // A separate trip through the event loop per byte: separate segments, not one coalesced write.
        if (byteByByte) await new Promise((resolve) => setTimeout(resolve, 0));
      }
      await to.closeWrite();
    } catch {
      // One side went away: the test's assertions say whether that was expected.
    }
  };
  const accepting = (async () => {
    for await (const client of listener) {
      const upstream = await Deno.connect({ hostname: LOOPBACK, port });
      client.setNoDelay(true);
      upstream.setNoDelay(true);
      conns.push(client, upstream);
      pumps.push(pump(client, upstream, true), pump(upstream, client, false));
    }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    get held() {
      return (held ?? []).reduce((sum, chunk) => sum + chunk.length, 0);
    },
    hold() {
      held = [];
    },
    async release() {
      const chunks = held ?? [];
      held = undefined;
      const joined = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.length, 0));
      chunks.reduce((offset, chunk) => (joined.set(chunk, offset), offset + chunk.length), 0);
      if (upstreamOfHeld) await writeAll(upstreamOfHeld, joined);
    },
    async releaseAndEnd() {
      const upstream = upstreamOfHeld;
      await this.release();
      // Anything the client sends later is dropped: the server has seen the end.
      held = [];
      await upstream?.closeWrite();
    },
    async close() {
      listener.close();
      await accepting.catch(() => {});
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // Closed already.
        }
      }
      await Promise.all(pumps);
    },
  };
}

/**
 * The start of a ClientHello: a handshake record header announcing 200
 * bytes, then the hello's type, length and version, and nothing more.
 */
const CLIENT_HELLO_START = Uint8Array.of(
  0x16,
  0x03,
  0x01,
  0x00,
  0xc8,
  0x01,
  0x00,
  0x00,
  0xc4,
  0x03,
  0x03,
);

/** Reads until the server ends the connection; true when it did (end of stream or an error). */
async function endsConnection(conn: Deno.Conn): Promise<boolean> {
  const buffer = new Uint8Array(1024);
  try {
    for (let i = 0; i < 100; i++) {
      if (await withDeadline(conn.read(buffer), "the server to end the connection") === null) {
        return true;
      }
    }
    return false;
  } catch (error) {
    if (error instanceof Error && error.name === "DeadlineError") throw error;
    return true;
  }
}

// Loaded once, outside the test: the libraries stay open for the life of the process.
const engine = ON_LINUX ? loadEngine() : undefined!;

Deno.test({
  name: "TlsConnection",
  ignore: !ON_LINUX,
  fn: async (t) => {
    await using pki = await makeTestPki();
    const serverOptions = { cert: pki.server.certificate, key: pki.server.key };
    const mutualOptions = { ...serverOptions, clientCa: pki.ca.certificate };

    await t.step(
      `${MANY_CONNECTIONS} connections opened and closed: memory stays flat`,
      async () => {
        // The server in a process of its own, so that its RSS is its own: this process's
        // also holds the clients, and the type checker's memory, returned at any moment.
        await using server = new Subprocess([
          "run",
          "--allow-read",
          "--allow-ffi",
          TLS_TEST_SERVER_PROGRAM,
          "--cert",
          pki.server.certificatePath,
          "--key",
          pki.server.keyPath,
          "--client-ca",
          pki.ca.certificatePath,
          "--report-rss-every",
          String(WARM_UP_CONNECTIONS),
        ]);
        /** The server's RSS once it has closed `closed` connections, as it reports it. */
        const rssAfter = async (closed: number) => {
          const pattern = new RegExp(`^closed ${closed} rss (\\d+)$`);
          return Number((await server.stderr.waitFor(pattern)).match[1]);
        };
        const { match } = await server.stderr.waitFor(/listening on 127\.0\.0\.1:(\d+)/);
        const port = Number(match[1]);
        const served = async () => {
          using conn = await connectTls(port, pki, pki.client);
          assert.deepEqual(await ask(conn, ["a@b.c"]), ["a@b.c"]);
        };
        // Every fifth has no certificate: the failure path must free what it made too.
        const refused = async () => {
          using conn = await connectTls(port, pki);
          await conn.write(encodeQuery("a@b.c")).catch(() => 0);
          assert.ok(await endsConnection(conn), "the server ended the connection");
        };
        const batches = async (total: number) => {
          for (let done = 0; done < total; done += CONCURRENT_CONNECTIONS) {
            await Promise.all(
              Array.from(
                { length: CONCURRENT_CONNECTIONS },
                (_, i) => i % 5 ? served() : refused(),
              ),
            );
          }
        };
        // Warm-up: allocators keep what the first connections grew them to.
        await batches(WARM_UP_CONNECTIONS);
        const before = await rssAfter(WARM_UP_CONNECTIONS);
        await batches(MANY_CONNECTIONS);
        const growth = (await rssAfter(WARM_UP_CONNECTIONS + MANY_CONNECTIONS)) - before;
        assert.ok(
          growth < MAX_RSS_GROWTH_BYTES,
          `The server's RSS grew by ${
            (growth / 2 ** 20).toFixed(1)
          } MiB over ${MANY_CONNECTIONS} connections.`,
        );
      },
    );

    await t.step("a Deno.connectTls client handshakes and gets its frames echoed", async () => {
      await withServer(engine, serverOptions, async (server) => {
        using conn = await connectTls(server.port, pki);
        assert.deepEqual(await ask(conn, ["ada@example.com"]), ["ada@example.com"]);
        assert.deepEqual(await ask(conn, ["a@b.c", "d@e.f"]), ["a@b.c", "d@e.f"]);
        assert.deepEqual(server.handshakes, { ok: 1, failed: 0, client_cert_refused: 0 });
        assert.deepEqual(server.subjects, [undefined], "no client certificate was asked for");
        assert.deepEqual(server.versions, ["TLSv1.3"]);
      });
    });

    await t.step(
      "a read buffer smaller than a record: the loop reads what OpenSSL holds",
      async () => {
        // Seven bytes at a time: nearly all of each 16 KiB record waits inside OpenSSL, where
        // epoll cannot see it. A loop that waited for readiness instead would hang here.
        await withServer(engine, serverOptions, async (server) => {
          using conn = await connectTls(server.port, pki);
          const emails = Array.from(
            { length: PIPELINED_QUERIES },
            (_, i) => `person${i}@example.com`,
          );
          assert.deepEqual(await ask(conn, emails), emails);
        }, { readSize: 7 });
      },
    );

    await t.step(
      "many records in one segment: the loop reads what OpenSSL read ahead",
      async () => {
        // OpenSSL reads ahead as much as the socket holds; SSL_read returns one record's data at a
        // time, and the rest waits in OpenSSL's buffer, where epoll cannot see it.
        await withServer(engine, serverOptions, async (server) => {
          const proxy = startProxy(server.port);
          try {
            using conn = await connectTls(proxy.port, pki);
            assert.deepEqual(await ask(conn, ["warm@up.example"]), ["warm@up.example"]);
            proxy.hold();
            const emails = Array.from({ length: 20 }, (_, i) => `p${i}@example.com`);
            // One write each: one TLS record each (5 bytes of header, 17 of type and tag).
            for (const email of emails) await writeAll(conn, encodeQuery(email));
            const expected = emails.reduce((sum, email) => sum + encodeQuery(email).length + 22, 0);
            await waitFor(() => proxy.held >= expected, "the proxy to hold every record");
            await proxy.release();
            assert.deepEqual(
              await withDeadline(readReplies(conn, emails.length), "the replies"),
              emails,
            );
          } finally {
            await proxy.close();
          }
        });
      },
    );

    await t.step("a client that ends its data still gets the replies it is owed", async () => {
      await withServer(engine, serverOptions, async (server) => {
        using conn = await connectTls(server.port, pki);
        const emails = ["a@b.c", "d@e.f", "g@h.i"];
        await writeAll(conn, new Uint8Array(emails.flatMap((email) => [...encodeQuery(email)])));
        // close_notify: the server reads the end of data before it writes a single reply.
        await conn.closeWrite();
        assert.deepEqual(await readReplies(conn, emails.length), emails);
        assert.ok(await endsConnection(conn), "the server closed after the replies");
        await waitFor(() => server.open === 0, "the server to close its side");
        assert.deepEqual(server.failures, []);
      }, { holdRepliesUntilClosed: true });
    });

    await t.step("so does a client whose TCP stream ends without close_notify", async () => {
      await withServer(engine, serverOptions, async (server) => {
        const proxy = startProxy(server.port);
        try {
          using conn = await connectTls(proxy.port, pki);
          await conn.handshake();
          // Held from here on: the queries only, once the server has the whole handshake.
          await waitFor(() => server.handshakes.ok === 1, "the server's end of the handshake");
          proxy.hold();
          const emails = ["a@b.c", "d@e.f"];
          await writeAll(conn, new Uint8Array(emails.flatMap((email) => [...encodeQuery(email)])));
          const expected = emails.reduce((sum, email) => sum + encodeQuery(email).length, 0) + 22;
          await waitFor(() => proxy.held >= expected, "the proxy to hold the queries");
          await proxy.releaseAndEnd();
          assert.deepEqual(await readReplies(conn, emails.length), emails);
          assert.ok(await endsConnection(conn), "the server closed after the replies");
          assert.deepEqual(server.failures, []);
        } finally {
          await proxy.close();
        }
      }, { holdRepliesUntilClosed: true });
    });

    await t.step("openssl s_client verifies the server and gets its frames echoed", async () => {
      await withServer(engine, serverOptions, async (server) => {
        const query = encodeQuery("ada@example.com");
        const result = await sClient(server.port, ["-CAfile", pki.ca.certificatePath], query, 21);
        assert.equal(result.code, 0, result.stderr);
        assert.match(result.stderr, /Verification: OK/);
        assert.match(result.stderr, /Protocol version: TLSv1\.3/);
        assert.equal(decodeReply(result.stdout.subarray(5, 21)).text, "ada@example.com");
        const tls12 = await sClient(
          server.port,
          ["-tls1_2", "-CAfile", pki.ca.certificatePath],
          query,
          21,
        );
        assert.equal(tls12.code, 0, tls12.stderr);
        assert.match(tls12.stderr, /Protocol version: TLSv1\.2/);
        assert.deepEqual(server.versions, ["TLSv1.3", "TLSv1.2"]);
      });
    });

    await t.step("TLS 1.1 is refused", async () => {
      await withServer(engine, serverOptions, async (server) => {
        // The client's own level would refuse TLS 1.1 first: level 0 makes it offer it.
        const result = await sClient(
          server.port,
          ["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"],
          new Uint8Array(0),
          0,
        );
        assert.notEqual(result.code, 0);
        await waitFor(() => server.handshakes.failed === 1, "the failed handshake");
        assert.match(server.failures[0].reason, /^the handshake failed: .*unsupported protocol$/);
      });
    });

    await t.step("a TLS record split byte by byte in both directions", async () => {
      await withServer(engine, serverOptions, async (server) => {
        const proxy = startProxy(server.port, true);
        try {
          using conn = await connectTls(proxy.port, pki);
          assert.deepEqual(await ask(conn, ["ada@example.com", "b@c.d"]), [
            "ada@example.com",
            "b@c.d",
          ]);
        } finally {
          await proxy.close();
        }
        assert.equal(server.handshakes.ok, 1);
      });
    });

    await t.step("client certificates: a valid one is accepted and its subject read", async () => {
      await withServer(engine, mutualOptions, async (server) => {
        using conn = await connectTls(server.port, pki, pki.client);
        assert.deepEqual(await ask(conn, ["ada@example.com"]), ["ada@example.com"]);
        assert.deepEqual(server.subjects, [CLIENT_SUBJECT]);
        const viaOpenssl = await sClient(
          server.port,
          [
            "-CAfile",
            pki.ca.certificatePath,
            "-cert",
            pki.client.certificatePath,
            "-key",
            pki.client.keyPath,
          ],
          encodeQuery("x@y.z"),
          11,
        );
        assert.equal(viaOpenssl.code, 0, viaOpenssl.stderr);
        assert.deepEqual(server.subjects, [CLIENT_SUBJECT, CLIENT_SUBJECT]);
        assert.equal(server.handshakes.client_cert_refused, 0);
      });
    });

    await t.step("client certificates: none, or one from a rogue CA, is refused", async () => {
      await withServer(engine, mutualOptions, async (server) => {
        {
          using conn = await connectTls(server.port, pki);
          // TLS 1.3: the client finishes its side before the server has checked it.
          await conn.write(encodeQuery("ada@example.com")).catch(() => 0);
          assert.ok(await endsConnection(conn), "the server ended the connection");
        }
        await waitFor(() => server.handshakes.client_cert_refused === 1, "the first refusal");
        assert.deepEqual(server.failures[0], {
          kind: "client_cert_refused",
          reason: "the client sent no certificate",
        });
        {
          using conn = await connectTls(server.port, pki, pki.rogueClient);
          await conn.write(encodeQuery("ada@example.com")).catch(() => 0);
          assert.ok(await endsConnection(conn), "the server ended the connection");
        }
        await waitFor(() => server.handshakes.client_cert_refused === 2, "the second refusal");
        assert.deepEqual(server.failures[1], {
          kind: "client_cert_refused",
          reason: "the client certificate did not verify: unable to get local issuer certificate",
        });
        assert.deepEqual(server.handshakes, { ok: 0, failed: 0, client_cert_refused: 2 });
        assert.equal(server.open, 0);
      });
    });

    await t.step("the server names its client CA as the acceptable issuer", async () => {
      await withServer(engine, mutualOptions, async (server) => {
        const output = await new Deno.Command("openssl", {
          args: [
            "s_client",
            "-connect",
            `${LOOPBACK}:${server.port}`,
            "-CAfile",
            pki.ca.certificatePath,
          ],
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).output();
        const text = new TextDecoder().decode(output.stdout);
        assert.match(
          text,
          /Acceptable client certificate CA names\n(CN ?= ?)?.*addrbook test CA\n/,
        );
        assert.doesNotMatch(text, /rogue/);
      });
    });

    await t.step(
      "random bytes and a plaintext query fail cleanly, and TLS is still served",
      async () => {
        await withServer(engine, serverOptions, async (server) => {
          const garbage = crypto.getRandomValues(new Uint8Array(4096));
          garbage[0] = 0x17; // not a handshake record: never mistaken for a ClientHello
          for (const bytes of [garbage, encodeQuery("ada@example.com")]) {
            using conn = await Deno.connect({ hostname: LOOPBACK, port: server.port });
            await conn.write(bytes);
            assert.ok(await endsConnection(conn), "the server ended the connection");
          }
          await waitFor(() => server.handshakes.failed === 2, "both failures");
          for (const failure of server.failures) {
            assert.equal(failure.kind, "failed");
            assert.match(failure.reason, /^the handshake failed: error:[0-9A-F]{8}:SSL routines::/);
          }
          using conn = await connectTls(server.port, pki);
          assert.deepEqual(await ask(conn, ["ada@example.com"]), ["ada@example.com"]);
        });
      },
    );

    await t.step("a client that hangs up before its hello, or halfway through it", async () => {
      await withServer(engine, serverOptions, async (server) => {
        (await Deno.connect({ hostname: LOOPBACK, port: server.port })).close();
        await waitFor(() => server.handshakes.failed === 1, "the first failure");
        {
          using conn = await Deno.connect({ hostname: LOOPBACK, port: server.port });
          await conn.write(CLIENT_HELLO_START);
        }
        await waitFor(() => server.handshakes.failed === 2, "the second failure");
        const reason = "the client closed the connection during the handshake";
        assert.deepEqual(server.failures, [
          { kind: "failed", reason },
          { kind: "failed", reason },
        ]);
      });
    });

    await t.step(
      "rotation: new connections get the new certificate, open ones carry on",
      async () => {
        await withServer(engine, serverOptions, async (server) => {
          assert.match(await servedCertificateSubject(server.port, pki), new RegExp(SERVER_NAME));
          using before = await connectTls(server.port, pki);
          assert.deepEqual(await ask(before, ["a@b.c"]), ["a@b.c"]);
          // The old context is freed here: the open connection holds its own reference.
          server.setContext(
            TlsContext.create(engine.openssl, {
              cert: pki.rotatedServer.certificate,
              key: pki.rotatedServer.key,
            }),
          );
          assert.match(
            await servedCertificateSubject(server.port, pki),
            new RegExp(ROTATED_SERVER_NAME),
          );
          using after = await connectTls(server.port, pki);
          assert.deepEqual(await ask(after, ["d@e.f"]), ["d@e.f"]);
          assert.deepEqual(
            await ask(before, ["g@h.i"]),
            ["g@h.i"],
            "the old connection still works",
          );
        });
      },
    );
  },
});
