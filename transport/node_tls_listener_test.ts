import assert from "node:assert/strict";
import { checkTlsFilesForNode, NodeTlsListener } from "./node_tls_listener.ts";
import tls from "node:tls";
import { withDeadline } from "../testing/deadlines.ts";
import { CLIENT_SUBJECT, makeTestPki, ROTATED_SERVER_NAME, SERVER_NAME } from "../testing/pki.ts";
import type { TlsFailure } from "../session/handshake.ts";
import { TlsContextError } from "./tls_context.ts";

const NO_TIMEOUT = 0;

Deno.test("NodeTlsListener hands over verified connections with their subject, and reports a client without a certificate", async () => {
  await using pki = await makeTestPki();
  const failures: [string, TlsFailure][] = [];
  let failed!: () => void;
  const oneFailure = new Promise<void>((resolve) => failed = resolve);
  const listener = await NodeTlsListener.open("127.0.0.1", 0, {
    files: { cert: pki.server.certificate, key: pki.server.key, clientCa: pki.ca.certificate },
    handshakeTimeoutMs: NO_TIMEOUT,
    onFailure: (peer, failure) => {
      failures.push([peer.hostname, failure]);
      failed();
    },
    onTimeout: () => assert.fail("no handshake times out here"),
  });
  try {
    const options = {
      hostname: "127.0.0.1",
      port: listener.addr.port,
      caCerts: [pki.ca.certificate],
    };
    const client = await Deno.connectTls({
      ...options,
      cert: pki.client.certificate,
      key: pki.client.key,
    });
    try {
      await client.write(new TextEncoder().encode("ping"));
      const conn = await withDeadline(listener.accept(), "a verified connection");
      assert.equal(conn.completedHandshake.peerSubject, CLIENT_SUBJECT);
      const buffer = new Uint8Array(16);
      const got = await withDeadline(conn.read(buffer), "the client's bytes");
      assert.equal(new TextDecoder().decode(buffer.subarray(0, got!)), "ping");
      assert.equal(await conn.write(new TextEncoder().encode("pong")), 4);
      const back = await withDeadline(client.read(buffer), "the reply");
      assert.equal(new TextDecoder().decode(buffer.subarray(0, back!)), "pong");
      await conn.closeWrite();
      assert.equal(await withDeadline(client.read(buffer), "the end"), null);
      conn.close();
    } finally {
      client.close();
    }

    const anonymous = await Deno.connectTls(options);
    try {
      await anonymous.write(new Uint8Array([1]));
      await anonymous.read(new Uint8Array(16)).catch(() => null);
    } finally {
      anonymous.close();
    }
    await withDeadline(oneFailure, "the refusal to be reported");
    assert.equal(failures[0][0], "127.0.0.1");
    assert.equal(failures[0][1].kind, "client_cert_refused");
  } finally {
    listener.close();
  }
  await assert.rejects(listener.accept(), Deno.errors.BadResource);
});

Deno.test("checkTlsFilesForNode names the file that is not PEM of its kind, or a key of another certificate", async () => {
  await using pki = await makeTestPki();
  const good = { cert: pki.server.certificate, key: pki.server.key, clientCa: pki.ca.certificate };
  checkTlsFilesForNode(good);
  const cases: [string, typeof good, string][] = [
    ["no certificate", { ...good, cert: "not PEM" }, "certificate"],
    ["a certificate as the key", { ...good, key: pki.server.certificate }, "key"],
    ["another certificate's key", { ...good, key: pki.rotatedServer.key }, "key"],
    ["no client CA", { ...good, clientCa: "not PEM" }, "client CA"],
  ];
  for (const [label, files, role] of cases) {
    assert.throws(() => checkTlsFilesForNode(files), (error: unknown) => {
      assert.ok(error instanceof TlsContextError, label);
      assert.equal(error.role, role, label);
      assert.match(error.message, /^The (certificate|key|client CA) /, label);
      return true;
    });
  }
});

Deno.test("NodeTlsListener.setFiles: new handshakes get the new certificate; a broken one is refused and the old stays", async () => {
  await using pki = await makeTestPki();
  const listener = await NodeTlsListener.open("127.0.0.1", 0, {
    files: { cert: pki.server.certificate, key: pki.server.key },
    handshakeTimeoutMs: NO_TIMEOUT,
    onFailure: (_peer, failure) => assert.fail(`no handshake fails here: ${failure.reason}`),
    onTimeout: () => assert.fail("no handshake times out here"),
  });
  /** The common name of the certificate a new connection is shown. */
  const shown = async () => {
    const [name, accepted] = await Promise.all([
      withDeadline(
        new Promise<string>((resolve, reject) => {
          const socket = tls.connect({
            host: "127.0.0.1",
            port: listener.addr.port,
            ca: pki.ca.certificate,
            checkServerIdentity: () => undefined,
          }, () => {
            const subject = socket.getPeerCertificate().subject as unknown as Record<
              string,
              string
            >;
            socket.destroy();
            resolve(subject.CN);
          });
          socket.once("error", reject);
        }),
        "a node:tls handshake",
      ),
      withDeadline(listener.accept(), "the server's side of it"),
    ]);
    accepted.close();
    return name;
  };
  try {
    assert.equal(await shown(), SERVER_NAME);
    listener.setFiles({ cert: pki.rotatedServer.certificate, key: pki.rotatedServer.key });
    assert.equal(await shown(), ROTATED_SERVER_NAME);
    assert.throws(
      () => listener.setFiles({ cert: "not a certificate", key: pki.rotatedServer.key }),
      TlsContextError,
    );
    assert.equal(await shown(), ROTATED_SERVER_NAME);
  } finally {
    listener.close();
  }
});

Deno.test("NodeTlsListener.close cuts the handshakes under way, unreported, and keeps the connections accepted", async () => {
  await using pki = await makeTestPki();
  const listener = await NodeTlsListener.open("127.0.0.1", 0, {
    files: { cert: pki.server.certificate, key: pki.server.key },
    handshakeTimeoutMs: NO_TIMEOUT,
    onFailure: (_peer, failure) =>
      assert.fail(`a cut handshake is not reported: ${failure.reason}`),
    onTimeout: () => assert.fail("no handshake times out here"),
  });
  const { port } = listener.addr;
  const client = await Deno.connectTls({
    hostname: "127.0.0.1",
    port,
    caCerts: [pki.ca.certificate],
  });
  const silent = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await client.handshake();
    const accepted = await withDeadline(listener.accept(), "the TLS connection");
    listener.close();
    const buffer = new Uint8Array(16);
    // Cut if node:tls had taken it, reset if it still waited in the kernel's queue: closed either way.
    const end = silent.read(buffer).catch(() => null);
    assert.equal(await withDeadline(end, "the cut handshake's end"), null);
    await client.write(new TextEncoder().encode("ping"));
    const got = await withDeadline(accepted.read(buffer), "bytes on the accepted connection");
    assert.equal(new TextDecoder().decode(buffer.subarray(0, got!)), "ping");
    accepted.close();
  } finally {
    client.close();
    silent.close();
  }
});
