import assert from "node:assert/strict";
import { failureCode, handshakeFailureCounter, isLoggedAtInfo, TlsAcceptor } from "./tls_acceptor.ts";
import { openLibc } from "./libc.ts";
import { Counter } from "./metrics.ts";
import { makeTestPki } from "./test_pki.ts";
import type { TlsFailure } from "./tls_connection.ts";
import { TlsContextError } from "./tls_context.ts";

Deno.test("TlsAcceptor builds a context, says whether it verifies clients, and keeps it when a replacement is broken", async () => {
  await using pki = await makeTestPki();
  const libc = openLibc()!;
  const pem = { certificate: pki.server.certificate, key: pki.server.key };
  const plain = TlsAcceptor.open(libc, pem);
  try {
    assert.equal(plain.verifiesClients, false);
    assert.throws(
      () => plain.replace({ ...pem, clientCa: "not a certificate" }),
      (error: unknown) => error instanceof TlsContextError && error.role === "client CA",
    );
    assert.equal(plain.verifiesClients, false, "the current context stays");
    plain.replace({ ...pem, clientCa: pki.ca.certificate });
    assert.equal(plain.verifiesClients, true, "the new context is in use");
  } finally {
    plain.free();
  }
  assert.throws(
    () => TlsAcceptor.open(libc, { certificate: pki.server.certificate, key: pki.rogueCa.key }),
    (error: unknown) => error instanceof TlsContextError && error.role === "key",
  );
});

Deno.test("handshake failures are counted and named by cause", () => {
  const noCertificate: TlsFailure = {
    kind: "client_cert_refused",
    reason: "the client sent no certificate",
  };
  const unverified: TlsFailure = {
    kind: "client_cert_refused",
    reason: "the client certificate did not verify: unable to get local issuer certificate",
  };
  const notTls: TlsFailure = {
    kind: "failed",
    reason: "the handshake failed: wrong version number",
  };
  const hangUp: TlsFailure = {
    kind: "failed",
    reason: "the client closed the connection during the handshake",
  };
  for (const failure of [noCertificate, unverified]) {
    assert.equal(handshakeFailureCounter(failure), Counter.tlsClientCertRefused);
  }
  assert.equal(handshakeFailureCounter(notTls), Counter.tlsHandshakesFailed);
  assert.equal(failureCode(noCertificate), "tls_no_client_certificate");
  assert.equal(failureCode(unverified), "tls_client_certificate_unverified");
  assert.equal(failureCode(notTls), "tls_handshake_failed");
  assert.ok(isLoggedAtInfo(noCertificate));
  assert.ok(isLoggedAtInfo(notTls));
  assert.ok(!isLoggedAtInfo(hangUp), "a hang-up is only debug");
});
