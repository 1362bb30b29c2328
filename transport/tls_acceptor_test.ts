import assert from "node:assert/strict";
import { TlsAcceptor } from "./tls_acceptor.ts";
import { openLibc } from "../common/libc.ts";
import { makeTestPki } from "../testing/pki.ts";
import { TlsContextError } from "./tls_context.ts";

Deno.test("TlsAcceptor builds a context, says whether it verifies clients, and keeps it when a replacement is broken", async () => {
  await using pki = await makeTestPki();
  const libc = openLibc()!;
  const pem = { cert: pki.server.certificate, key: pki.server.key };
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
    () => TlsAcceptor.open(libc, { cert: pki.server.certificate, key: pki.rogueCa.key }),
    (error: unknown) => error instanceof TlsContextError && error.role === "key",
  );
});
