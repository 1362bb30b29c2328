/**
 * Tests of the server over TLS, with a throwaway CA and server certificate
 * made by `openssl` at test time: the server process and `startServer`
 * answering TLS clients, clients of the wrong kind on either port failing
 * cleanly while the others are still served, unusable certificate files,
 * and the client command line over TLS.
 *
 * These tests need the `openssl` command (testing/pki.ts); without it they fail and say so.
 */

import assert from "node:assert/strict";
import { loadBook } from "../book/load.ts";
import { Logger } from "../common/log.ts";
import {
  encodeQuery,
  STATUS_FOUND,
  STATUS_NOT_FOUND,
  STATUS_PROTOCOL_ERROR,
  TYPE_REPLY,
} from "../protocol.ts";
import { startServer } from "../server.ts";
import { writeCsvBook } from "../testing/books.ts";
import { EVENT_DEADLINE_MS, withDeadline } from "../testing/deadlines.ts";
import { tempDir as makeTempDir } from "../testing/files.ts";
import { IO_LOOPS } from "../testing/io_loops.ts";
import { LOOPBACK } from "../testing/loopback.ts";
import { makeTestPki, type TestPki as FullPki } from "../testing/pki.ts";
import {
  assertNoStackTrace,
  LISTENING,
  runServerToExit,
  ServerProcess,
  Subprocess,
} from "../testing/processes.ts";
import { noDelayOf } from "../testing/tls_node_probe.ts";
import { WireClient } from "../testing/wire_client.ts";

// ---------------------------------------------------------------------------
// Helpers

const CLIENT_FLAGS = ["run", "--allow-net", "--allow-read", "--allow-env", "client.ts"];
const EXIT_OK = 0;
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;
/** The client's exit status on an error such as a failed connection. */
const CLIENT_EXIT_ERROR = 2;
const FRESH_CONNECTIONS = 20;
/** The first byte of every TLS handshake record. */
const TLS_HANDSHAKE_RECORD = 0x16;

const BOOK: readonly (readonly [string, string])[] = [
  ["ada@example.com", "Ada Lovelace"],
  ["grace@example.org", "Grace Hopper"],
];
const [ADA_EMAIL, ADA_NAME] = BOOK[0];

/** A temp dir removed on disposal. */
function tempDir(): Promise<AsyncDisposable & { path: string }> {
  return makeTempDir("addrbook_tls_test_");
}

function writeBook(dir: string): Promise<string> {
  return writeCsvBook(dir, BOOK);
}

/** The test CA and server certificate, under the names these tests use. */
interface TestPki extends AsyncDisposable {
  /** Every certificate testing/pki.ts makes (client ones, a rogue CA, a rotated server). */
  all: FullPki;
  caPath: string;
  caPem: string;
  /** The CA's own key: a valid key that does not match the server certificate. */
  caKeyPath: string;
  certPath: string;
  keyPath: string;
  cert: string;
  key: string;
}

async function makePki(): Promise<TestPki> {
  const all = await makeTestPki();
  return {
    all,
    caPath: all.ca.certificatePath,
    caPem: all.ca.certificate,
    caKeyPath: all.ca.keyPath,
    certPath: all.server.certificatePath,
    keyPath: all.server.keyPath,
    cert: all.server.certificate,
    key: all.server.key,
    [Symbol.asyncDispose]: () => all[Symbol.asyncDispose](),
  };
}

/** The flags that give the server `pki`'s certificate and key. */
function tlsFlags(pki: TestPki): string[] {
  return ["--tls-cert", pki.certPath, "--tls-key", pki.keyPath];
}

/** Writes {@linkcode BOOK} in `dir` and starts a server on it over TLS with `pki`, and `args`. */
async function startTlsServer(
  pki: TestPki,
  dir: string,
  args: string[] = [],
): Promise<ServerProcess> {
  return await ServerProcess.start(["--data", await writeBook(dir), ...tlsFlags(pki), ...args]);
}

async function assertTlsServes(hostname: string, port: number, caPem: string): Promise<void> {
  using client = await WireClient.connectTls(hostname, port, caPem, { resets: "throw" });
  assert.deepEqual(await client.query(ADA_EMAIL), { status: STATUS_FOUND, text: ADA_NAME });
  assert.equal((await client.query("nobody@example.com")).status, STATUS_NOT_FOUND);
}

async function assertPlainServes(port: number): Promise<void> {
  using client = await WireClient.connect(port, { resets: "throw" });
  assert.deepEqual(await client.query(ADA_EMAIL), { status: STATUS_FOUND, text: ADA_NAME });
}

// ---------------------------------------------------------------------------
// Serving TLS

Deno.test("server --tls-cert/--tls-key serves TLS clients that trust its CA, by IP and by name", async () => {
  await using pki = await makePki();
  await using dir = await tempDir();
  await using server = await startTlsServer(pki, dir.path);
  assert.ok(server.tls, "the start line says tls://");
  for (const hostname of [LOOPBACK, "localhost"]) {
    await assertTlsServes(hostname, server.port, pki.caPem);
  }
});

for (const loop of IO_LOOPS) {
  Deno.test(`server --workers 2 serves TLS from every thread [--io ${loop}]`, async () => {
    await using pki = await makePki();
    await using dir = await tempDir();
    await using server = await startTlsServer(pki, dir.path, ["--workers", "2", "--io", loop]);
    for (let i = 0; i < FRESH_CONNECTIONS; i++) {
      await assertTlsServes(LOOPBACK, server.port, pki.caPem);
    }
  });
}

Deno.test("startServer with tls serves TLS in-process", async () => {
  await using pki = await makePki();
  await using dir = await tempDir();
  const { book } = await loadBook(await writeBook(dir.path));
  const logLines: string[] = [];
  const server = await startServer({
    book,
    port: 0,
    tls: { cert: pki.cert, key: pki.key },
    log: new Logger({ write: (line) => logLines.push(line) }),
  });
  try {
    // TLS goes to the epoll loop where it runs (OpenSSL 3 and FFI), as plain TCP does.
    assert.equal(server.io, IO_LOOPS[0]);
    await assertTlsServes("localhost", server.addr.port, pki.caPem);
    // A TLS client that does not trust the CA is refused; the server goes on.
    await assert.rejects(async () => {
      using untrusting = new WireClient(
        await Deno.connectTls({ hostname: LOOPBACK, port: server.addr.port }),
        { resets: "throw" },
      );
      await untrusting.query(ADA_EMAIL);
    });
    await assertTlsServes(LOOPBACK, server.addr.port, pki.caPem);
  } finally {
    await server.close();
  }
});

Deno.test({
  name:
    "startServer --io deno: TLS sockets have TCP_NODELAY (no 40 ms stall) and answer, with and without a client CA",
  // The check reads the server's socket with getsockopt, through FFI on Linux.
  ignore: !IO_LOOPS.includes("epoll"),
  fn: async () => {
    await using pki = await makePki();
    await using dir = await tempDir();
    const { book } = await loadBook(await writeBook(dir.path));
    for (const clientCa of [undefined, pki.all.ca.certificate]) {
      const label = clientCa ? "with a client CA" : "without one";
      const server = await startServer({
        book,
        port: 0,
        io: "deno",
        tls: { cert: pki.cert, key: pki.key, clientCa },
        log: new Logger({ write: () => {} }),
      });
      try {
        const conn = await Deno.connectTls({
          hostname: LOOPBACK,
          port: server.addr.port,
          caCerts: [pki.caPem],
          cert: pki.all.client.certificate,
          key: pki.all.client.key,
        });
        using client = new WireClient(conn, { resets: "throw" });
        assert.deepEqual(
          await client.query(ADA_EMAIL),
          { status: STATUS_FOUND, text: ADA_NAME },
          label,
        );
        assert.equal(noDelayOf(server.addr.port, conn.localAddr.port), 1, label);
      } finally {
        await server.close();
      }
    }
  },
});

// ---------------------------------------------------------------------------
// The wrong kind of client

for (const loop of IO_LOOPS) {
  Deno.test(`a plaintext client on the TLS port is closed, and TLS clients are still served [--io ${loop}]`, async () => {
    await using pki = await makePki();
    await using dir = await tempDir();
    await using server = await startTlsServer(pki, dir.path, ["--io", loop]);
    {
      using plain = await WireClient.connect(server.port, { resets: "throw" });
      await plain.write(encodeQuery(ADA_EMAIL));
      // The server may send a TLS alert before closing; it must close either way.
      const received: number[] = [];
      try {
        for (let bytes; (bytes = await plain.readBytes()) !== null;) received.push(...bytes);
      } catch (error) {
        assert.ok(error instanceof Deno.errors.ConnectionReset, `a reset, not ${error}`);
      }
      assert.notEqual(received[0], TYPE_REPLY, "no reply frame over plaintext");
    }
    await assertTlsServes(LOOPBACK, server.port, pki.caPem);
  });
}

for (const loop of IO_LOOPS) {
  Deno.test(`a TLS client on the plaintext port fails its handshake, and plaintext clients are still served [--io ${loop}]`, async () => {
    await using pki = await makePki();
    await using dir = await tempDir();
    const book = await writeBook(dir.path);
    await using server = await ServerProcess.start(["--data", book, "--io", loop]);
    assert.ok(!server.tls);

    const tls = await Deno.connectTls({
      hostname: LOOPBACK,
      port: server.port,
      caCerts: [pki.caPem],
    });
    try {
      await assert.rejects(
        withDeadline(tls.handshake(), "the TLS handshake to fail", EVENT_DEADLINE_MS),
        (error: unknown) => error instanceof Error && !/Timed out/.test(error.message),
      );
    } finally {
      tls.close();
    }
    await assertPlainServes(server.port);

    // What the TLS client saw: a PROTOCOL_ERROR frame naming the handshake byte, then the close.
    using raw = await WireClient.connect(server.port, { resets: "throw" });
    await raw.write(Uint8Array.of(TLS_HANDSHAKE_RECORD, 0x03, 0x01, 0x00, 0x04, 1, 0, 0, 0));
    const reply = await raw.readReply();
    assert.equal(reply?.status, STATUS_PROTOCOL_ERROR);
    assert.match(reply.text, /0x16/);
    assert.equal(await raw.readReply(), null, "then the server closes the connection");
    await assertPlainServes(server.port);
  });
}

// ---------------------------------------------------------------------------
// Unusable certificate files

for (const loop of IO_LOOPS) {
  Deno.test(`server --io ${loop} serves TLS`, async () => {
    await using pki = await makePki();
    await using dir = await tempDir();
    await using server = await startTlsServer(pki, dir.path, ["--io", loop]);
    assert.ok(server.tls);
    await assertTlsServes(LOOPBACK, server.port, pki.caPem);
  });
}

Deno.test("server exits 1 naming the file when a certificate or key file cannot be read", async () => {
  await using pki = await makePki();
  await using dir = await tempDir();
  const book = await writeBook(dir.path);
  const missing = `${dir.path}/missing.pem`;
  const cases: [flag: string, path: string, args: string[]][] = [
    ["--tls-cert", missing, ["--tls-cert", missing, "--tls-key", pki.keyPath]],
    ["--tls-key", missing, ["--tls-cert", pki.certPath, "--tls-key", missing]],
    ["--tls-cert", dir.path, ["--tls-cert", dir.path, "--tls-key", pki.keyPath]],
  ];
  for (const [flag, path, args] of cases) {
    const { code, stdout, stderr } = await runServerToExit(["--data", book, ...args]);
    const label = args.join(" ");
    assert.equal(code, EXIT_FAILURE, `${label}: exit code; stderr:\n${stderr}`);
    assert.equal(stdout, "");
    assert.ok(
      stderr.includes(`${flag} file ${path}`),
      `${label}: names the flag and file:\n${stderr}`,
    );
    assert.equal(stderr.trim().split("\n").length, 1, `${label}: one message, got:\n${stderr}`);
    assert.doesNotMatch(stderr, LISTENING, label);
    assertNoStackTrace(stderr);
  }
});

Deno.test("server exits 1 naming the flag and file when a certificate, key or client CA is not usable", async () => {
  await using pki = await makePki();
  await using dir = await tempDir();
  const book = await writeBook(dir.path);
  const garbage = `${dir.path}/garbage.pem`;
  await Deno.writeTextFile(garbage, "this is not PEM\n");
  const cases: [string, string[], string][] = [
    [
      "a certificate file with no certificate",
      ["--tls-cert", garbage, "--tls-key", pki.keyPath],
      `--tls-cert file ${garbage}`,
    ],
    [
      "a key file with no key",
      ["--tls-cert", pki.certPath, "--tls-key", garbage],
      `--tls-key file ${garbage}`,
    ],
    [
      "a key that is not the certificate's",
      ["--tls-cert", pki.certPath, "--tls-key", pki.caKeyPath],
      `--tls-key file ${pki.caKeyPath}`,
    ],
    [
      "a client CA file with no certificate",
      [...tlsFlags(pki), "--tls-client-ca", garbage],
      `--tls-client-ca file ${garbage}`,
    ],
  ];
  for (const [label, args, names] of cases) {
    const { code, stdout, stderr } = await runServerToExit(["--data", book, ...args]);
    assert.equal(code, EXIT_FAILURE, `${label}: exit code; stderr:\n${stderr}`);
    assert.equal(stdout, "");
    assert.match(stderr, /Cannot use the TLS (certificate|key|client CA) in /, label);
    assert.ok(stderr.includes(names), `${label}: names ${names}:\n${stderr}`);
    assert.equal(stderr.trim().split("\n").length, 1, `${label}: one message, got:\n${stderr}`);
    assert.doesNotMatch(stderr, LISTENING, label);
    assertNoStackTrace(stderr);
  }
});

Deno.test("server --tls-client-ca without --tls-cert is a usage error: exit 2", async () => {
  await using pki = await makePki();
  await using dir = await tempDir();
  const book = await writeBook(dir.path);
  const { code, stderr } = await runServerToExit([
    "--data",
    book,
    "--tls-client-ca",
    pki.caPath,
  ]);
  assert.equal(code, EXIT_USAGE, stderr);
  assert.match(stderr, /^server: --tls-client-ca needs --tls-cert and --tls-key/);
  assertNoStackTrace(stderr);
});

// ---------------------------------------------------------------------------
// The client over TLS

Deno.test({
  name: "client --tls --ca looks up an address on the TLS server, and fails cleanly without the CA",
  async fn() {
    await using pki = await makePki();
    await using dir = await tempDir();
    await using server = await startTlsServer(pki, dir.path);
    const port = String(server.port);
    {
      await using client = new Subprocess([
        ...CLIENT_FLAGS,
        "--port",
        port,
        "--tls",
        "--ca",
        pki.caPath,
        ADA_EMAIL,
      ]);
      const { code, stdout, stderr } = await client.output();
      assert.equal(code, EXIT_OK, stderr);
      assert.equal(stdout.trim(), ADA_NAME);
    }

    await using untrusting = new Subprocess([...CLIENT_FLAGS, "--port", port, "--tls", ADA_EMAIL]);
    const { code, stdout, stderr } = await untrusting.output();
    assert.equal(code, CLIENT_EXIT_ERROR, stderr);
    assert.equal(stdout, "");
    assert.ok(stderr.trim().length > 0, "the client says why");
    assertNoStackTrace(stderr);
  },
});
