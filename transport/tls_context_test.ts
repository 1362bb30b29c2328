import assert from "node:assert/strict";
import { openOpenSsl } from "./openssl.ts";
import { makeTestPki, runOpenssl, type TestPki } from "../testing/pki.ts";
import { TlsContext, TlsContextError, type TlsInputRole } from "./tls_context.ts";

const ON_LINUX = Deno.build.os === "linux";
const CONTEXTS_FOR_LEAK_CHECK = 2000;
/** Well under what leaking every context costs (measured: 47 MiB for 2,000; 1 MiB when freed). */
const MAX_RSS_GROWTH_BYTES = 8 * 1024 * 1024;

function open() {
  const openssl = openOpenSsl();
  assert.ok(openssl, "OpenSSL 3 could not be loaded: the tests need --allow-ffi and libssl.so.3");
  return openssl;
}

/** Asserts that `create` throws a TlsContextError for `role` with a message matching `pattern`. */
function assertRefused(create: () => unknown, role: TlsInputRole, pattern: RegExp): void {
  assert.throws(create, (error: unknown) => {
    assert.ok(error instanceof TlsContextError, `expected a TlsContextError, got ${error}`);
    assert.equal(error.role, role);
    assert.match(error.message, pattern);
    // One sentence: a capital first letter, one final period, no line break.
    assert.match(error.message, /^[A-Z][^\n]*\.$/);
    return true;
  });
}

Deno.test({
  name: "TlsContext",
  ignore: !ON_LINUX,
  fn: async (t) => {
    const openssl = open();
    await using pki: TestPki = await makeTestPki();
    const server = { cert: pki.server.certificate, key: pki.server.key };

    await t.step("builds a context from a certificate and key, with or without a client CA", () => {
      using plain = TlsContext.create(openssl, server);
      assert.equal(plain.verifiesClients, false);
      using mutual = TlsContext.create(openssl, { ...server, clientCa: pki.ca.certificate });
      assert.equal(mutual.verifiesClients, true);
    });

    await t.step("takes a chain: the certificate followed by its CA", () => {
      using context = TlsContext.create(openssl, {
        ...server,
        cert: pki.server.certificate + pki.ca.certificate,
      });
      assert.ok(context.pointer);
    });

    await t.step("refuses a key that does not match the certificate", () => {
      assertRefused(
        () => TlsContext.create(openssl, { ...server, key: pki.ca.key }),
        "key",
        /^The key does not match the certificate: error:[0-9A-F]{8}:.*key values mismatch\.$/,
      );
    });

    await t.step("names the input that is not PEM", () => {
      const garbage = "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n";
      assertRefused(
        () => TlsContext.create(openssl, { ...server, cert: "hello" }),
        "certificate",
        /^The certificate is not a PEM certificate: error:.*no start line\.$/,
      );
      assertRefused(
        () => TlsContext.create(openssl, { ...server, cert: garbage }),
        "certificate",
        /^The certificate is not a PEM certificate: error:/,
      );
      assertRefused(
        () => TlsContext.create(openssl, { ...server, key: "" }),
        "key",
        /^The key is not a PEM private key: error:/,
      );
      assertRefused(
        () => TlsContext.create(openssl, { ...server, clientCa: pki.ca.key }),
        "client CA",
        /^The client CA is not a PEM certificate: error:/,
      );
    });

    await t.step("refuses a chain cut short in its second certificate", () => {
      const cut = pki.ca.certificate.slice(0, pki.ca.certificate.length / 2);
      assertRefused(
        () => TlsContext.create(openssl, { ...server, cert: pki.server.certificate + cut }),
        "certificate",
        /^The certificate holds a broken certificate after the first 1: error:/,
      );
    });

    await t.step("refuses an encrypted key without asking for a password", async () => {
      await runOpenssl(pki.dir, [
        "pkey",
        "-in",
        pki.server.keyPath,
        "-aes128",
        "-passout",
        "pass:secret",
        "-out",
        "encrypted.key",
      ]);
      const encrypted = await Deno.readTextFile(`${pki.dir}/encrypted.key`);
      assertRefused(
        () => TlsContext.create(openssl, { ...server, key: encrypted }),
        "key",
        /^The key is not a PEM private key: error:/,
      );
    });

    await t.step("refuses a 1024-bit RSA certificate at security level 2", async () => {
      await runOpenssl(pki.dir, [
        "req",
        "-x509",
        "-newkey",
        "rsa:1024",
        "-nodes",
        "-keyout",
        "weak.key",
        "-out",
        "weak.crt",
        "-days",
        "1",
        "-subj",
        "/CN=weak",
      ]);
      assertRefused(
        () =>
          TlsContext.create(openssl, {
            cert: Deno.readTextFileSync(`${pki.dir}/weak.crt`),
            key: Deno.readTextFileSync(`${pki.dir}/weak.key`),
          }),
        "certificate",
        /^The certificate was refused: error:.*too small\.$/,
      );
    });

    await t.step("free is idempotent, and the pointer is not handed out after it", () => {
      const context = TlsContext.create(openssl, server);
      context.free();
      context.free();
      assert.throws(() => context.pointer, TypeError);
    });

    await t.step("making and freeing thousands of contexts does not grow memory", () => {
      const withClientCa = { ...server, clientCa: pki.ca.certificate };
      // Warm up first: allocators keep what they grew to for the first few.
      for (let i = 0; i < 200; i++) TlsContext.create(openssl, withClientCa).free();
      const before = Deno.memoryUsage().rss;
      for (let i = 0; i < CONTEXTS_FOR_LEAK_CHECK; i++) {
        TlsContext.create(openssl, withClientCa).free();
      }
      const growth = Deno.memoryUsage().rss - before;
      assert.ok(
        growth < MAX_RSS_GROWTH_BYTES,
        `RSS grew by ${(growth / 2 ** 20).toFixed(1)} MiB over ${CONTEXTS_FOR_LEAK_CHECK} contexts`,
      );
    });
  },
});
