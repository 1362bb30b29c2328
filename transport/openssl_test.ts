import assert from "node:assert/strict";
import {
  ERR_LIB_PEM,
  errorLibrary,
  errorReason,
  openOpenSsl,
  PEM_R_NO_START_LINE,
  X509_V_OK,
} from "./openssl.ts";

const X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20;

function open() {
  const openssl = openOpenSsl();
  assert.ok(openssl, "OpenSSL 3 could not be loaded: the tests need --allow-ffi and libssl.so.3");
  return openssl;
}

Deno.test({
  name: "openOpenSsl loads libssl and libcrypto, and a server context can be made and freed",
  ignore: Deno.build.os !== "linux",
  fn: () => {
    const { ssl } = open();
    const context = ssl.SSL_CTX_new(ssl.TLS_server_method());
    assert.ok(context !== null);
    ssl.SSL_CTX_free(context);
  },
});

Deno.test({
  name: "takeError reads OpenSSL's error queue oldest first, and empties it",
  ignore: Deno.build.os !== "linux",
  fn: () => {
    const openssl = open();
    const { crypto } = openssl;
    const bio = crypto.BIO_new(crypto.BIO_s_mem());
    assert.ok(bio !== null);
    const garbage = new TextEncoder().encode("not a certificate\n");
    assert.equal(crypto.BIO_write(bio, garbage, garbage.length), garbage.length);
    assert.equal(crypto.PEM_read_bio_X509(bio, null, null, null), null);
    crypto.BIO_free(bio);
    const error = openssl.takeError();
    assert.ok(error, "a failed PEM read leaves an error");
    assert.equal(errorLibrary(error.code), ERR_LIB_PEM);
    assert.equal(errorReason(error.code), PEM_R_NO_START_LINE);
    assert.match(error.text, /^error:[0-9A-F]{8}:PEM routines::no start line$/);
    assert.equal(openssl.takeError(), undefined, "the queue is empty afterwards");
  },
});

Deno.test({
  name: "verifyErrorText names certificate verification results",
  ignore: Deno.build.os !== "linux",
  fn: () => {
    const openssl = open();
    assert.equal(openssl.verifyErrorText(X509_V_OK), "ok");
    assert.equal(
      openssl.verifyErrorText(X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY),
      "unable to get local issuer certificate",
    );
  },
});

Deno.test("errorLibrary and errorReason split OpenSSL 3 error codes as the C macros do", () => {
  // ERR_PACK(ERR_LIB_PEM, 0, PEM_R_NO_START_LINE) and a system error (errno 104).
  assert.equal(errorLibrary((ERR_LIB_PEM << 23) | PEM_R_NO_START_LINE), ERR_LIB_PEM);
  assert.equal(errorReason((ERR_LIB_PEM << 23) | PEM_R_NO_START_LINE), PEM_R_NO_START_LINE);
  assert.equal(errorLibrary(0x80000000 + 104), 2);
  assert.equal(errorReason(0x80000000 + 104), 104);
});
