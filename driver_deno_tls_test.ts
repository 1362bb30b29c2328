import assert from "node:assert/strict";
import { NodeTlsListener } from "./driver_deno_tls.ts";
import { CLIENT_SUBJECT, makeTestPki } from "./test_pki.ts";
import { withDeadline } from "./test_util.ts";
import type { TlsFailure } from "./tls_connection.ts";

Deno.test("NodeTlsListener hands over verified connections with their subject, and reports a client without a certificate", async () => {
  await using pki = await makeTestPki();
  const failures: [string, TlsFailure][] = [];
  let failed!: () => void;
  const oneFailure = new Promise<void>((resolve) => failed = resolve);
  const listener = await NodeTlsListener.open("127.0.0.1", 0, {
    cert: pki.server.certificate,
    key: pki.server.key,
    clientCa: pki.ca.certificate,
  }, (peer, failure) => {
    failures.push([peer.hostname, failure]);
    failed();
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
      assert.equal(conn.peerSubject, CLIENT_SUBJECT);
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
