/**
 * Tests of the server over TLS, with a throwaway CA and server certificate
 * made by `openssl` at test time: the server process and `startServer`
 * answering TLS clients, clients of the wrong kind on either port failing
 * cleanly while the others are still served, unusable certificate files,
 * and the client command line over TLS.
 *
 * These tests need the `openssl` command; without it they fail and say so.
 */

import assert from "node:assert/strict";
import { loadBook } from "./load_book.ts";
import { Logger } from "./log.ts";
import {
  encodeQuery,
  STATUS_FOUND,
  STATUS_NOT_FOUND,
  STATUS_PROTOCOL_ERROR,
  TYPE_REPLY,
} from "./protocol.ts";
import { startServer } from "./server.ts";
import {
  assertNoStackTrace,
  EVENT_DEADLINE_MS,
  IO_LOOPS,
  LISTENING,
  LOOPBACK,
  ProtocolClient,
  REPO_DIR,
  runServerToExit,
  ServerProcess,
  Subprocess,
  tempDir as makeTempDir,
  withDeadline,
  writeCsvBook,
} from "./test_util.ts";

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

/** Runs openssl in `cwd`; fails with a clear message when openssl is not installed. */
async function openssl(cwd: string, args: string[]): Promise<void> {
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command("openssl", {
      args,
      cwd,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Error(
        "The TLS tests need the openssl command on PATH to make a test CA and certificate, " +
          "and it was not found. Install OpenSSL (for example `apt-get install openssl`).",
      );
    }
    throw error;
  }
  if (!output.success) {
    const stderr = new TextDecoder().decode(output.stderr);
    throw new Error(`openssl ${args.join(" ")} failed with exit ${output.code}:\n${stderr}`);
  }
}

/** A throwaway CA and a server certificate it signed, for 127.0.0.1 and localhost. */
interface TestPki extends AsyncDisposable {
  dir: string;
  caPath: string;
  caPem: string;
  /** The CA's own key: a valid key that does not match the server certificate. */
  caKeyPath: string;
  certPath: string;
  keyPath: string;
  cert: string;
  key: string;
}

const EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
const VALID_DAYS = "2";
const SERVER_EXTENSIONS = [
  "subjectAltName=IP:127.0.0.1,DNS:localhost",
  "basicConstraints=CA:FALSE",
  "keyUsage=digitalSignature",
  "extendedKeyUsage=serverAuth",
].join("\n");

async function makePki(): Promise<TestPki> {
  const dir = await Deno.makeTempDir({ prefix: "addrbook_tls_test_pki_" });
  try {
    await openssl(dir, [
      "req",
      "-x509",
      ...EC_KEY,
      "-keyout",
      "ca.key",
      "-out",
      "ca.pem",
      "-days",
      VALID_DAYS,
      "-subj",
      "/CN=addrbook test CA",
    ]);
    await openssl(dir, [
      "req",
      ...EC_KEY,
      "-keyout",
      "server.key",
      "-out",
      "server.csr",
      "-subj",
      "/CN=localhost",
    ]);
    await Deno.writeTextFile(`${dir}/server.ext`, SERVER_EXTENSIONS);
    await openssl(dir, [
      "x509",
      "-req",
      "-in",
      "server.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      "server.pem",
      "-days",
      VALID_DAYS,
      "-extfile",
      "server.ext",
    ]);
    return {
      dir,
      caPath: `${dir}/ca.pem`,
      caPem: await Deno.readTextFile(`${dir}/ca.pem`),
      caKeyPath: `${dir}/ca.key`,
      certPath: `${dir}/server.pem`,
      keyPath: `${dir}/server.key`,
      cert: await Deno.readTextFile(`${dir}/server.pem`),
      key: await Deno.readTextFile(`${dir}/server.key`),
      [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
    };
  } catch (error) {
    await Deno.remove(dir, { recursive: true });
    throw error;
  }
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
  using client = await ProtocolClient.tls(hostname, port, caPem);
  assert.deepEqual(await client.ask(ADA_EMAIL), { status: STATUS_FOUND, text: ADA_NAME });
  assert.equal((await client.ask("nobody@example.com")).status, STATUS_NOT_FOUND);
}

async function assertPlainServes(port: number): Promise<void> {
  using client = await ProtocolClient.connect(LOOPBACK, port);
  assert.deepEqual(await client.ask(ADA_EMAIL), { status: STATUS_FOUND, text: ADA_NAME });
}

/** Whether client.ts exists and has the `--tls` and `--ca` options. */
async function clientSupportsTls(): Promise<boolean> {
  try {
    await Deno.stat(`${REPO_DIR}/client.ts`);
  } catch {
    return false;
  }
  await using client = new Subprocess([...CLIENT_FLAGS, "--help"]);
  const { stdout } = await client.output();
  return /--tls\b/.test(stdout) && /--ca\b/.test(stdout);
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

Deno.test("server --workers 2 serves TLS from every thread", async () => {
  await using pki = await makePki();
  await using dir = await tempDir();
  await using server = await startTlsServer(pki, dir.path, ["--workers", "2"]);
  for (let i = 0; i < FRESH_CONNECTIONS; i++) {
    await assertTlsServes(LOOPBACK, server.port, pki.caPem);
  }
});

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
    await assertTlsServes("localhost", server.addr.port, pki.caPem);
    // A TLS client that does not trust the CA is refused; the server goes on.
    await assert.rejects(async () => {
      using untrusting = new ProtocolClient(
        await Deno.connectTls({ hostname: LOOPBACK, port: server.addr.port }),
      );
      await untrusting.ask(ADA_EMAIL);
    });
    await assertTlsServes(LOOPBACK, server.addr.port, pki.caPem);
  } finally {
    await server.close();
  }
});

// ---------------------------------------------------------------------------
// The wrong kind of client

Deno.test("a plaintext client on the TLS port is closed, and TLS clients are still served", async () => {
  await using pki = await makePki();
  await using dir = await tempDir();
  await using server = await startTlsServer(pki, dir.path);
  {
    using plain = await ProtocolClient.connect(LOOPBACK, server.port);
    await plain.send(encodeQuery(ADA_EMAIL));
    // The server may send a TLS alert before closing; it must close either way.
    const received: number[] = [];
    try {
      for (let bytes; (bytes = await plain.read()) !== null;) received.push(...bytes);
    } catch (error) {
      assert.ok(error instanceof Deno.errors.ConnectionReset, `a reset, not ${error}`);
    }
    assert.notEqual(received[0], TYPE_REPLY, "no reply frame over plaintext");
  }
  await assertTlsServes(LOOPBACK, server.port, pki.caPem);
});

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
    using raw = await ProtocolClient.connect(LOOPBACK, server.port);
    await raw.send(Uint8Array.of(TLS_HANDSHAKE_RECORD, 0x03, 0x01, 0x00, 0x04, 1, 0, 0, 0));
    const reply = await raw.next();
    assert.equal(reply?.status, STATUS_PROTOCOL_ERROR);
    assert.match(reply.text, /0x16/);
    assert.equal(await raw.next(), null, "then the server closes the connection");
    await assertPlainServes(server.port);
  });
}

// ---------------------------------------------------------------------------
// Unusable certificate files

Deno.test({
  name: "server --io epoll with TLS exits 2 saying epoll serves plain TCP only",
  ignore: !IO_LOOPS.includes("epoll"),
  async fn() {
    await using pki = await makePki();
    await using dir = await tempDir();
    const book = await writeBook(dir.path);
    const { code, stderr } = await runServerToExit([
      "--data",
      book,
      "--io",
      "epoll",
      ...tlsFlags(pki),
    ]);
    assert.equal(code, EXIT_USAGE, stderr);
    assert.match(stderr, /--io epoll needs .*no TLS/);
    assert.doesNotMatch(stderr, LISTENING);
    assertNoStackTrace(stderr);
  },
});

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

Deno.test("server exits 1 with a clear message when the certificate or key is not usable PEM", async () => {
  await using pki = await makePki();
  await using dir = await tempDir();
  const book = await writeBook(dir.path);
  const garbage = `${dir.path}/garbage.pem`;
  await Deno.writeTextFile(garbage, "this is not PEM\n");
  const cases: [string, string[], RegExp][] = [
    [
      "a certificate file with no certificate",
      ["--tls-cert", garbage, "--tls-key", pki.keyPath],
      /certificate/i,
    ],
    ["a key file with no key", ["--tls-cert", pki.certPath, "--tls-key", garbage], /key/i],
    ["a key that is not the certificate's", [
      "--tls-cert",
      pki.certPath,
      "--tls-key",
      pki.caKeyPath,
    ], /key/i],
  ];
  for (const [label, args, detail] of cases) {
    const { code, stdout, stderr } = await runServerToExit(["--data", book, ...args]);
    assert.equal(code, EXIT_FAILURE, `${label}: exit code; stderr:\n${stderr}`);
    assert.equal(stdout, "");
    assert.match(stderr, /TLS certificate or key/, label);
    assert.match(stderr, detail, label);
    assert.equal(stderr.trim().split("\n").length, 1, `${label}: one message, got:\n${stderr}`);
    assert.doesNotMatch(stderr, LISTENING, label);
    assertNoStackTrace(stderr);
  }
});

// ---------------------------------------------------------------------------
// The client over TLS

const clientHasTls = await clientSupportsTls();

Deno.test({
  name: "client --tls --ca looks up an address on the TLS server, and fails cleanly without the CA",
  // Registered only as ignored while client.ts lacks --tls and --ca.
  ignore: !clientHasTls,
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
