/**
 * End-to-end tests of TLS in the real server: client certificates
 * (`--tls-client-ca`) accepted and refused, the subject as the client for
 * the per-client limits, certificate rotation by SIGHUP, hostile bytes on
 * the TLS port, a record split byte by byte, and memory over thousands of
 * handshakes. Certificates are made by `openssl` (testing/pki.ts).
 */

import assert from "node:assert/strict";
import tls from "node:tls";
import net from "node:net";
import {
  decodeReply,
  encodeQuery,
  HEADER_SIZE,
  STATUS_FORBIDDEN,
  STATUS_FOUND,
  STATUS_RATE_LIMITED,
} from "../protocol.ts";
import { encodeProxyHeader } from "../access/proxy_header.ts";
import { writeCsvBook } from "../testing/books.ts";
import { EVENT_DEADLINE_MS, withDeadline } from "../testing/deadlines.ts";
import { tempDir } from "../testing/files.ts";
import { concat } from "../testing/frames.ts";
import { IO_LOOPS } from "../testing/io_loops.ts";
import { LOOPBACK } from "../testing/loopback.ts";
import { metricValue } from "../testing/metrics.ts";
import { makeTestPki, ROTATED_SERVER_NAME, SERVER_NAME, type TestPki } from "../testing/pki.ts";
import { assertNoStackTrace, ServerProcess, Subprocess } from "../testing/processes.ts";
import { WireClient } from "../testing/wire_client.ts";

const CLIENT_FLAGS = ["run", "--allow-net", "--allow-read", "--allow-env", "client.ts"];
const EXIT_OK = 0;
const EXIT_USAGE = 2;
const BOOK: readonly (readonly [string, string])[] = [["ada@example.com", "Ada Lovelace"]];
const [ADA_EMAIL, ADA_NAME] = BOOK[0];
/** Handshakes in the memory test, and the most the server's RSS may grow over them. */
const MEMORY_CONNECTIONS = 2500;
const MEMORY_GROWTH_LIMIT = 60 * 1024 * 1024;
const MEMORY_WARMUP = 250;
const MEMORY_LANES = 10;
/** --frame-timeout in the handshake timeout tests: short, so the test is. */
const HANDSHAKE_TIMEOUT_SECONDS = "0.3";

/** A server with the test PKI's certificate, asking for client certificates from its CA. */
async function startMtlsServer(
  pki: TestPki,
  dir: string,
  args: string[] = [],
): Promise<ServerProcess> {
  return await ServerProcess.start([
    "--data",
    await writeCsvBook(dir, BOOK),
    "--tls-cert",
    pki.server.certificatePath,
    "--tls-key",
    pki.server.keyPath,
    "--tls-client-ca",
    pki.ca.certificatePath,
    ...args,
  ]);
}

/** Connects with `Deno.connectTls`, presenting `client` when given. */
async function connectTls(
  pki: TestPki,
  port: number,
  client = pki.client,
): Promise<WireClient> {
  return new WireClient(
    await Deno.connectTls({
      hostname: LOOPBACK,
      port,
      caCerts: [pki.ca.certificate],
      cert: client.certificate,
      key: client.key,
    }),
    { resets: "throw" },
  );
}

/** The metrics endpoint's port, from the start line's `metrics=HOST:PORT`. */
function metricsPort(server: ServerProcess): number {
  const match = /metrics"?[=:]"?[^\s"]*:(\d+)/.exec(server.startLine);
  assert.ok(match, `the start line names the metrics port: ${server.startLine}`);
  return Number(match[1]);
}

/** One sample of the server's `/metrics`. */
async function scrape(server: ServerProcess, name: string, labels: string): Promise<number> {
  const response = await fetch(`http://${LOOPBACK}:${metricsPort(server)}/metrics`);
  return metricValue(await response.text(), name, labels);
}

function handshakeCount(server: ServerProcess, result: string): Promise<number> {
  return scrape(server, "addrbook_tls_handshakes_total", `{result="${result}"}`);
}

/** An open node:tls connection and the common name of the certificate the server showed. */
interface SeenConnection {
  socket: tls.TLSSocket;
  serverName: string;
}

/** Connects with node:tls (which shows the server's certificate) and presents the client's. */
function connectSeeing(pki: TestPki, port: number): Promise<SeenConnection> {
  return withDeadline(
    new Promise<SeenConnection>((resolve, reject) => {
      const socket = tls.connect({
        host: LOOPBACK,
        port,
        ca: pki.ca.certificate,
        cert: pki.client.certificate,
        key: pki.client.key,
        // The certificates name 127.0.0.1; the subject is what this test compares.
        checkServerIdentity: () => undefined,
      }, () => {
        const subject = socket.getPeerCertificate().subject as unknown as Record<string, string>;
        resolve({ socket, serverName: subject.CN });
      });
      socket.once("error", reject);
    }),
    "a node:tls handshake",
  );
}

/** Sends one query on a node:tls socket and returns the reply's bytes (one reply frame). */
function askOverNodeTls(socket: tls.TLSSocket, email: string): Promise<Uint8Array> {
  return withDeadline(
    new Promise<Uint8Array>((resolve, reject) => {
      socket.once("data", (data: Uint8Array) => resolve(new Uint8Array(data)));
      socket.once("error", reject);
      socket.write(encodeQuery(email));
    }),
    "a reply over node:tls",
  );
}

/** Runs the project client; resolves with its exit code and output. */
async function runClient(args: string[]) {
  await using client = new Subprocess([...CLIENT_FLAGS, ...args]);
  return await client.output();
}

/** Reads the server process's resident set size from `ps`, in bytes. */
async function residentBytes(pid: number): Promise<number> {
  const { stdout } = await new Deno.Command("ps", { args: ["-o", "rss=", "-p", String(pid)] })
    .output();
  return Number(new TextDecoder().decode(stdout).trim()) * 1024;
}

// ---------------------------------------------------------------------------
// Client certificates

for (const loop of IO_LOOPS) {
  Deno.test(`--tls-client-ca: a client with a certificate from the CA is answered (project client and Deno.connectTls) [--io ${loop}]`, async () => {
    await using pki = await makeTestPki();
    await using dir = await tempDir("addrbook_server_tls_test_");
    await using server = await startMtlsServer(pki, dir.path, [
      "--io",
      loop,
      "--metrics-port",
      "0",
    ]);
    {
      using client = await connectTls(pki, server.port);
      assert.deepEqual(await client.query(ADA_EMAIL), { status: STATUS_FOUND, text: ADA_NAME });
    }
    const { code, stdout, stderr } = await runClient([
      "--port",
      String(server.port),
      "--tls",
      "--ca",
      pki.ca.certificatePath,
      "--cert",
      pki.client.certificatePath,
      "--key",
      pki.client.keyPath,
      ADA_EMAIL,
    ]);
    assert.equal(code, EXIT_OK, stderr);
    assert.equal(stdout.trim(), ADA_NAME);
    assert.equal(await handshakeCount(server, "ok"), 2);
    assert.equal(await handshakeCount(server, "client_cert_refused"), 0);
  });
}

for (const loop of IO_LOOPS) {
  Deno.test(`--tls-client-ca: no certificate or one from another CA fails the handshake, unanswered, logged with the peer and counted [--io ${loop}]`, async () => {
    await using pki = await makeTestPki();
    await using dir = await tempDir("addrbook_server_tls_test_");
    await using server = await startMtlsServer(pki, dir.path, [
      "--io",
      loop,
      "--metrics-port",
      "0",
    ]);
    const attempts: [string, () => Promise<Deno.TlsConn>][] = [
      [
        "no certificate",
        () =>
          Deno.connectTls({ hostname: LOOPBACK, port: server.port, caCerts: [pki.ca.certificate] }),
      ],
      ["a rogue CA's certificate", () =>
        Deno.connectTls({
          hostname: LOOPBACK,
          port: server.port,
          caCerts: [pki.ca.certificate],
          cert: pki.rogueClient.certificate,
          key: pki.rogueClient.key,
        })],
    ];
    let from = server.stderr.lines.length;
    for (const [label, connect] of attempts) {
      // TLS 1.3: the client's handshake ends before the server verifies; the refusal comes as an alert.
      await assert.rejects(async () => {
        using client = new WireClient(await connect(), { resets: "throw" });
        await client.query(ADA_EMAIL);
      }, label);
      const { line, index } = await server.stderr.waitFor(/TLS handshake failed/, from);
      assert.match(
        line,
        /peer[=:]"?127\.0\.0\.1:\d+/,
        `${label}: the peer address is logged: ${line}`,
      );
      // node:tls reports another CA's certificate only as a reset (testing/tls_node_probe.ts).
      if (loop === "epoll" || label === "no certificate") {
        assert.match(line, /certificate/, `${label}: the reason names the certificate: ${line}`);
      }
      assert.doesNotMatch(line, /client one/, "no subject at info");
      from = index + 1;
    }
    const refused = await handshakeCount(server, "client_cert_refused");
    if (loop === "epoll") assert.equal(refused, 2);
    else assert.equal(refused + await handshakeCount(server, "failed"), 2);
    assert.equal(await handshakeCount(server, "ok"), 0);
    // The server goes on serving those with a certificate.
    using client = await connectTls(pki, server.port);
    assert.deepEqual(await client.query(ADA_EMAIL), { status: STATUS_FOUND, text: ADA_NAME });
  });
}

for (const loop of IO_LOOPS) {
  Deno.test(`the client without --cert against a --tls-client-ca server: one clear message, exit 2 [--io ${loop}]`, async () => {
    await using pki = await makeTestPki();
    await using dir = await tempDir("addrbook_server_tls_test_");
    await using server = await startMtlsServer(pki, dir.path, ["--io", loop]);
    const { code, stdout, stderr } = await runClient([
      "--port",
      String(server.port),
      "--tls",
      "--ca",
      pki.ca.certificatePath,
      ADA_EMAIL,
    ]);
    assert.equal(code, EXIT_USAGE, stderr);
    assert.equal(stdout, "");
    assert.equal(stderr.trim().split("\n").length, 1, `one message:\n${stderr}`);
    // The server's alert reaches the client, not a reset that would destroy it.
    assert.match(
      stderr,
      /^client: The server at 127\.0\.0\.1:\d+ refused the TLS connection \(.*\): it requires a client certificate: give --cert and --key\.$/,
    );
    assertNoStackTrace(stderr);
  });
}

for (const loop of IO_LOOPS) {
  Deno.test(`--tls-client-ca: the rate limit counts per certificate subject, and protected mode is satisfied [--io ${loop}]`, async () => {
    await using pki = await makeTestPki();
    await using dir = await tempDir("addrbook_server_tls_test_");
    // On 0.0.0.0 without --allow, only a client certificate lets other hosts in.
    await using server = await startMtlsServer(pki, dir.path, [
      "--io",
      loop,
      "--host",
      "0.0.0.0",
      "--rate-limit",
      "2/1h",
    ]);
    assert.doesNotMatch(server.stderr.text, /protected mode/);
    // Two connections with one certificate share its two queries.
    using first = await connectTls(pki, server.port);
    using second = await connectTls(pki, server.port);
    assert.equal((await first.query(ADA_EMAIL)).status, STATUS_FOUND);
    assert.equal((await second.query(ADA_EMAIL)).status, STATUS_FOUND);
    assert.equal((await first.query(ADA_EMAIL)).status, STATUS_RATE_LIMITED);
    assert.equal((await second.query(ADA_EMAIL)).status, STATUS_RATE_LIMITED);
  });
}

Deno.test("--proxy-protocol with TLS on --io deno: exit 2 saying it needs the epoll loop", async () => {
  await using pki = await makeTestPki();
  await using dir = await tempDir("addrbook_server_tls_test_");
  await using server = new ServerProcess([
    "--data",
    await writeCsvBook(dir.path, BOOK),
    "--io",
    "deno",
    "--tls-cert",
    pki.server.certificatePath,
    "--tls-key",
    pki.server.keyPath,
    "--proxy-protocol",
  ]);
  const { code, stderr } = await server.output();
  assert.equal(code, EXIT_USAGE, stderr);
  assert.match(stderr, /--proxy-protocol with TLS needs the epoll loop/);
  assertNoStackTrace(stderr);
});

// ---------------------------------------------------------------------------
// Rotation

/**
 * Copies the server certificate and key into `dir`, where a test can
 * replace them, and gives the server flags for them and a book there.
 */
async function rotatableFiles(pki: TestPki, dir: string) {
  const certPath = `${dir}/server.crt`;
  const keyPath = `${dir}/server.key`;
  await Deno.writeTextFile(certPath, pki.server.certificate);
  await Deno.writeTextFile(keyPath, pki.server.key);
  const book = await writeCsvBook(dir, BOOK);
  return {
    certPath,
    keyPath,
    flags: ["--data", book, "--tls-cert", certPath, "--tls-key", keyPath],
  };
}

for (const loop of IO_LOOPS) {
  Deno.test(`SIGHUP rotates the certificate in every thread: new connections see the new one, open ones go on, a broken file keeps it [--io ${loop}]`, async () => {
    await using pki = await makeTestPki();
    await using dir = await tempDir("addrbook_server_tls_test_");
    const { certPath, keyPath, flags } = await rotatableFiles(pki, dir.path);
    await using server = await ServerProcess.start([
      ...flags,
      "--tls-client-ca",
      pki.ca.certificatePath,
      "--workers",
      "2",
      "--io",
      loop,
    ]);
    const before = await connectSeeing(pki, server.port);
    try {
      assert.equal(before.serverName, SERVER_NAME);
      await Deno.writeTextFile(certPath, pki.rotatedServer.certificate);
      await Deno.writeTextFile(keyPath, pki.rotatedServer.key);
      let from = server.stderr.lines.length;
      server.signal("SIGHUP");
      from = (await server.stderr.waitFor(/TLS reload done/, from)).index + 1;
      // Both threads have it: the kernel spreads new connections among them.
      for (let i = 0; i < 6; i++) {
        const after = await connectSeeing(pki, server.port);
        after.socket.destroy();
        assert.equal(after.serverName, ROTATED_SERVER_NAME);
      }
      const reply = await askOverNodeTls(before.socket, ADA_EMAIL);
      assert.ok(new TextDecoder().decode(reply).includes(ADA_NAME), "the old connection is served");

      await Deno.writeTextFile(certPath, "not a certificate\n");
      server.signal("SIGHUP");
      const { line } = await server.stderr.waitFor(/TLS reload failed/, from);
      assert.ok(line.includes(`--tls-cert file ${certPath}`), `names the file: ${line}`);
      const still = await connectSeeing(pki, server.port);
      still.socket.destroy();
      assert.equal(still.serverName, ROTATED_SERVER_NAME, "the current certificate stays");
    } finally {
      before.socket.destroy();
    }
  });
}

// ---------------------------------------------------------------------------
// Hostile and awkward clients

for (const loop of IO_LOOPS) {
  Deno.test(`random bytes on the TLS port are closed, and the server goes on [--io ${loop}]`, async () => {
    await using pki = await makeTestPki();
    await using dir = await tempDir("addrbook_server_tls_test_");
    await using server = await startMtlsServer(pki, dir.path, [
      "--io",
      loop,
      "--metrics-port",
      "0",
    ]);
    for (const first of [0x16, 0x00, 0x80, 0xff]) {
      const bytes = crypto.getRandomValues(new Uint8Array(512));
      bytes[0] = first;
      using raw = await WireClient.connect(server.port, { resets: "throw" });
      await raw.write(bytes);
      try {
        while ((await raw.readBytes()) !== null) {
          // An alert, maybe; the close is what counts.
        }
      } catch (error) {
        assert.ok(error instanceof Deno.errors.ConnectionReset, `a reset, not ${error}`);
      }
    }
    assert.ok(await handshakeCount(server, "failed") >= 1);
    using client = await connectTls(pki, server.port);
    assert.equal((await client.query(ADA_EMAIL)).status, STATUS_FOUND);
  });
}

/** Sends a PROXY header naming `address`, then asks over node:tls with the client's certificate. */
function askAfterHeaderWithCertificate(
  pki: TestPki,
  port: number,
  address: string,
): Promise<Uint8Array> {
  return withDeadline(
    new Promise<Uint8Array>((resolve, reject) => {
      const raw = net.connect({ host: LOOPBACK, port }, () => {
        raw.write(proxyHeader(2, address));
        const socket = tls.connect({
          socket: raw,
          ca: pki.ca.certificate,
          cert: pki.client.certificate,
          key: pki.client.key,
          checkServerIdentity: () => undefined,
        }, () => {
          askOverNodeTls(socket, ADA_EMAIL).then(resolve, reject).finally(() => socket.destroy());
        });
        socket.once("error", reject);
      });
      raw.once("error", reject);
    }),
    "a reply after a PROXY header over node:tls",
  );
}

Deno.test("--proxy-protocol with --tls-client-ca: the header's address meets --allow, the subject the limits", async () => {
  await using pki = await makeTestPki();
  await using dir = await tempDir("addrbook_server_tls_test_");
  await using server = await startMtlsServer(pki, dir.path, [
    "--io",
    "epoll",
    "--proxy-protocol",
    "--allow",
    "192.0.2.0/24",
    "--rate-limit",
    "1/1h",
  ]);
  const first = decodeReply(
    (await askAfterHeaderWithCertificate(pki, server.port, PROXIED_CLIENT)).subarray(HEADER_SIZE),
  );
  assert.equal(first.status, STATUS_FOUND);
  // Another address in the allowed network, the same certificate: the same client, over its limit.
  const second = decodeReply(
    (await askAfterHeaderWithCertificate(pki, server.port, "192.0.2.8")).subarray(HEADER_SIZE),
  );
  assert.equal(second.status, STATUS_RATE_LIMITED);
  const outsider = decodeReply(
    (await askAfterHeaderWithCertificate(pki, server.port, OUTSIDER)).subarray(HEADER_SIZE),
  );
  assert.equal(outsider.status, STATUS_FORBIDDEN, "outside --allow, certificate or not");
});

Deno.test("a failed handshake ends with the server's FIN, not a reset that would destroy its alert", async () => {
  await using pki = await makeTestPki();
  await using dir = await tempDir("addrbook_server_tls_test_");
  await using server = await startMtlsServer(pki, dir.path, ["--io", "epoll"]);
  // A plaintext query and far more than OpenSSL reads before it refuses the first record: closing
  // a socket with input unread would make the kernel reset the connection.
  using raw = await WireClient.connect(server.port, { resets: "throw" });
  await raw.write(concat([encodeQuery(ADA_EMAIL), new Uint8Array(256 * 1024)]));
  // OpenSSL sends no alert for bytes that are not TLS at all; the end must be a FIN all the same.
  let ended = false;
  for (let i = 0; i < 100 && !ended; i++) ended = await raw.readBytes() === null; // a reset throws
  assert.ok(ended, "the server ended the connection");
});

// ---------------------------------------------------------------------------
// PROXY headers before the handshake (a balancer passing TLS through)

/** The address a balancer's header names as the client, and one the allow list leaves out. */
const PROXIED_CLIENT = "192.0.2.7";
const encoder = new TextEncoder();
const OUTSIDER = "198.51.100.9";

function proxyHeader(version: 1 | 2, address: string): Uint8Array {
  return encodeProxyHeader({
    version,
    source: { address, port: 40000 },
    destination: { address: "198.51.100.1", port: 8443 },
  });
}

/** Sends `header` in clear (in writes of `pieceSize` bytes), then speaks TLS over the same socket. */
async function tlsAfterHeader(
  pki: TestPki,
  port: number,
  header: Uint8Array,
  pieceSize = header.length,
): Promise<WireClient> {
  const tcp = await Deno.connect({ hostname: LOOPBACK, port });
  tcp.setNoDelay(true); // each piece its own segment
  for (let at = 0; at < header.length; at += pieceSize) {
    await tcp.write(header.subarray(at, at + pieceSize));
  }
  return new WireClient(
    await Deno.startTls(tcp, { hostname: LOOPBACK, caCerts: [pki.ca.certificate] }),
    { resets: "throw" },
  );
}

/** Whether a TLS connection's handshake fails or the server ends it before any reply. */
async function refusedBeforeReply(client: WireClient): Promise<boolean> {
  try {
    await (client.conn as Deno.TlsConn).handshake();
    return (await client.readReply()) === null;
  } catch {
    return true; // the server closed during the handshake
  }
}

Deno.test("--proxy-protocol with TLS: the header comes in clear before the handshake and names the client", async () => {
  await using pki = await makeTestPki();
  await using dir = await tempDir("addrbook_server_tls_test_");
  await using server = await ServerProcess.start([
    "--data",
    await writeCsvBook(dir.path, BOOK),
    "--io",
    "epoll",
    "--tls-cert",
    pki.server.certificatePath,
    "--tls-key",
    pki.server.keyPath,
    "--proxy-protocol",
    "--allow",
    "192.0.2.0/24",
    "--metrics-port",
    "0",
  ]);
  for (const version of [1, 2] as const) {
    using client = await tlsAfterHeader(pki, server.port, proxyHeader(version, PROXIED_CLIENT));
    assert.deepEqual(await client.query(ADA_EMAIL), { status: STATUS_FOUND, text: ADA_NAME });
  }
  {
    // Split byte by byte: the server reads no further than the header's end.
    const header = proxyHeader(2, PROXIED_CLIENT);
    using client = await tlsAfterHeader(pki, server.port, header, 1);
    assert.deepEqual(await client.query(ADA_EMAIL), { status: STATUS_FOUND, text: ADA_NAME });
  }
  {
    using outsider = await tlsAfterHeader(pki, server.port, proxyHeader(2, OUTSIDER));
    assert.deepEqual(await outsider.readUntilClosed(), [
      {
        status: STATUS_FORBIDDEN,
        text: "This client's address is not in the server's --allow list.",
      },
    ]);
  }
  {
    using malformed = await tlsAfterHeader(pki, server.port, encoder.encode("PROXY TCP9 x\r\n"));
    assert.ok(await refusedBeforeReply(malformed), "a malformed header is not answered");
  }
  {
    using headerless = await WireClient.connectTls(LOOPBACK, server.port, pki.ca.certificate, {
      resets: "throw",
    });
    assert.ok(
      await refusedBeforeReply(headerless),
      "a connection without a header is not answered",
    );
  }
  assert.equal(await scrape(server, "addrbook_refusals_total", '{reason="not_allowed"}'), 1);
  assert.equal(
    await scrape(server, "addrbook_replies_total", '{front_end="binary",status="PROTOCOL_ERROR"}'),
    2,
  );
  assert.equal(
    await scrape(server, "addrbook_replies_total", '{front_end="binary",status="FOUND"}'),
    3,
  );
  await server.stderr.waitFor(/refused client=198\.51\.100\.9 reason=/);
});

for (const loop of IO_LOOPS) {
  Deno.test(`TLS split byte by byte through a relay is served [--io ${loop}]`, async () => {
    await using pki = await makeTestPki();
    await using dir = await tempDir("addrbook_server_tls_test_");
    await using server = await startMtlsServer(pki, dir.path, ["--io", loop]);
    using relay = Deno.listen({ hostname: LOOPBACK, port: 0 });
    const relaying = (async () => {
      const inbound = await relay.accept();
      const outbound = await Deno.connect({ hostname: LOOPBACK, port: server.port });
      outbound.setNoDelay(true);
      const toServer = (async () => {
        const buffer = new Uint8Array(4096);
        for (let n; (n = await inbound.read(buffer)) !== null;) {
          // One byte per write, each its own segment: every record arrives in pieces.
          for (let i = 0; i < n; i++) await outbound.write(buffer.subarray(i, i + 1));
        }
        await outbound.closeWrite();
      })();
      const toClient = (async () => {
        const buffer = new Uint8Array(4096);
        for (let n; (n = await outbound.read(buffer)) !== null;) {
          await inbound.write(buffer.subarray(0, n));
        }
      })();
      // The client's close may reset either side: the replies it checked are what count.
      await Promise.allSettled([toServer, toClient]);
      for (const conn of [inbound, outbound]) {
        try {
          conn.close();
        } catch {
          // Closed already.
        }
      }
    })();
    {
      using client = await connectTls(pki, (relay.addr as Deno.NetAddr).port);
      assert.deepEqual(await client.query(ADA_EMAIL), { status: STATUS_FOUND, text: ADA_NAME });
      assert.deepEqual(await client.query(ADA_EMAIL), { status: STATUS_FOUND, text: ADA_NAME });
    }
    await withDeadline(relaying, "the relay to finish", EVENT_DEADLINE_MS);
  });
}

Deno.test(`${MEMORY_CONNECTIONS} TLS connections opened and closed grow the server's RSS by under 60 MB`, async () => {
  await using pki = await makeTestPki();
  await using dir = await tempDir("addrbook_server_tls_test_");
  await using server = await startMtlsServer(pki, dir.path);
  const pid = server.child.pid;
  const oneConnection = async (i: number) => {
    // One in five sends no certificate: the failure path frees its memory too.
    if (i % 5 === 4) {
      await assert.rejects(async () => {
        using client = new WireClient(
          await Deno.connectTls({
            hostname: LOOPBACK,
            port: server.port,
            caCerts: [pki.ca.certificate],
          }),
          { resets: "throw" },
        );
        await client.query(ADA_EMAIL);
      });
      return;
    }
    using client = await connectTls(pki, server.port);
    assert.equal((await client.query(ADA_EMAIL)).status, STATUS_FOUND);
  };
  // Deno.connectTls leaves Nagle on (a 40 ms wait per connection): run several at once.
  const inParallel = async (count: number) => {
    let next = 0;
    const lane = async () => {
      while (next < count) await oneConnection(next++);
    };
    await Promise.all(Array.from({ length: MEMORY_LANES }, lane));
  };
  await inParallel(MEMORY_WARMUP);
  const start = await residentBytes(pid);
  await inParallel(MEMORY_CONNECTIONS);
  const growth = await residentBytes(pid) - start;
  assert.ok(
    growth < MEMORY_GROWTH_LIMIT,
    `RSS grew ${(growth / 1048576).toFixed(1)} MB over ${MEMORY_CONNECTIONS} connections`,
  );
});

for (const loop of IO_LOOPS) {
  // Without a client CA, so that rotation is tested in both TLS modes of each loop.
  Deno.test(`--watch reloads the TLS files when they change: new connections see the new certificate [--io ${loop}]`, async () => {
    await using pki = await makeTestPki();
    await using dir = await tempDir("addrbook_server_tls_test_");
    const { certPath, keyPath, flags } = await rotatableFiles(pki, dir.path);
    await using server = await ServerProcess.start([
      ...flags,
      "--io",
      loop,
      "--watch",
      "--watch-settle",
      "0.1",
    ]);
    const before = await connectSeeing(pki, server.port);
    before.socket.destroy();
    assert.equal(before.serverName, SERVER_NAME);
    const from = server.stderr.lines.length;
    // Written as a deploy tool would: the key first, then the certificate, each replaced whole.
    await Deno.writeTextFile(`${keyPath}.new`, pki.rotatedServer.key);
    await Deno.rename(`${keyPath}.new`, keyPath);
    await Deno.writeTextFile(`${certPath}.new`, pki.rotatedServer.certificate);
    await Deno.rename(`${certPath}.new`, certPath);
    // A reload between the two writes finds a mismatched pair and keeps the old one (logged as
    // failed); the only pair that loads is the new one.
    await server.stderr.waitFor(/TLS reload done/, from);
    const after = await connectSeeing(pki, server.port);
    after.socket.destroy();
    assert.equal(after.serverName, ROTATED_SERVER_NAME);
  });
}

// ---------------------------------------------------------------------------
// Handshake timeout

for (const [loop, clientCa] of IO_LOOPS.flatMap((loop) => [[loop, false], [loop, true]] as const)) {
  Deno.test(`a TLS client that never finishes its handshake is closed after --frame-timeout and counted as kind="handshake"${clientCa ? " (--tls-client-ca)" : ""} [--io ${loop}]`, async () => {
    await using pki = await makeTestPki();
    await using dir = await tempDir("addrbook_server_tls_test_");
    await using server = await ServerProcess.start([
      "--data",
      await writeCsvBook(dir.path, BOOK),
      "--tls-cert",
      pki.server.certificatePath,
      "--tls-key",
      pki.server.keyPath,
      ...(clientCa ? ["--tls-client-ca", pki.ca.certificatePath] : []),
      "--io",
      loop,
      "--frame-timeout",
      HANDSHAKE_TIMEOUT_SECONDS,
      "--metrics-port",
      "0",
      "--log-level",
      "debug",
    ]);
    const from = server.stderr.lines.length;
    {
      using silent = await WireClient.connect(server.port, { resets: "throw" });
      // The first bytes of a ClientHello record, and then nothing.
      await silent.write(new Uint8Array([0x16, 0x03, 0x01]));
      assert.equal(await withDeadline(silent.readBytes(), "the server to close it"), null);
    }
    const { line } = await server.stderr.waitFor(/handshake timeout/, from);
    assert.match(line, /peer[=:]"?127\.0\.0\.1:\d+/);
    assert.equal(await scrape(server, "addrbook_timeouts_total", '{kind="handshake"}'), 1);
    assert.equal(await scrape(server, "addrbook_timeouts_total", '{kind="frame"}'), 0);
    assert.equal(await handshakeCount(server, "failed"), 0);
    // Others are served meanwhile and after.
    using client = await connectTls(pki, server.port);
    assert.deepEqual(await client.query(ADA_EMAIL), { status: STATUS_FOUND, text: ADA_NAME });
  });
}
