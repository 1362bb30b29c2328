/**
 * Tests of how a handshake's outcome is counted and logged: through the
 * session (the epoll loop's path) and through the report functions alone
 * (node:tls's path, which fails handshakes before a session exists). The
 * servers' metrics tests (tests/server_tls_test.ts) see the same counts end to end.
 */

import { BINARY_FRONT_END } from "../wire/binary.ts";
import assert from "node:assert/strict";
import { Logger } from "../common/log.ts";
import { Counter, COUNTERS_PER_THREAD } from "./counters.ts";
import { createSessionContext, DEFAULT_LIMITS, Session, type SessionContext } from "./session.ts";
import {
  failureCode,
  handshakeFailureCounter,
  isLoggedAtInfo,
  reportHandshakeFailure,
  reportHandshakeTimeout,
  type TlsFailure,
} from "./handshake.ts";
import { makeBook } from "../testing/books.ts";

const PEER = { hostname: "192.0.2.7", port: 40000 };
const START = 1_000_000;

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

/** A thread's session context whose log, at debug, is kept in `lines`. */
function recordingContext(): SessionContext & { lines: string[] } {
  const lines: string[] = [];
  const context = createSessionContext({
    frontEnd: BINARY_FRONT_END,
    book: makeBook(),
    limits: DEFAULT_LIMITS,
    counters: new Float64Array(COUNTERS_PER_THREAD),
    openConnections: new Int32Array(new SharedArrayBuffer(4)),
    log: new Logger({ level: "debug", write: (line) => lines.push(line) }),
    clientCertificates: true,
  });
  return Object.assign(context, { lines });
}

function openSession(context: SessionContext): Session {
  const session = new Session(context, START, () => PEER);
  session.handshakeStarted(START);
  return session;
}

Deno.test("handshake failures are counted and named by cause", () => {
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

Deno.test("Session.handshakeDone counts a completed handshake", () => {
  const context = recordingContext();
  openSession(context).handshakeDone(START + 5, "CN=client one");
  openSession(context).handshakeDone(START + 6, "CN=client two");
  assert.equal(context.counters[Counter.tlsHandshakesOk], 2);
  assert.equal(context.counters[Counter.tlsHandshakesFailed], 0);
  assert.deepEqual(context.lines, []);
});

Deno.test("Session.handshakeFailed counts by cause and logs at info once per host and cause", () => {
  const context = recordingContext();
  for (const [at, failure] of [[1, noCertificate], [2, noCertificate], [3, notTls]] as const) {
    const session = openSession(context);
    session.handshakeFailed(START + at, failure);
    assert.equal(session.phase, "ending", "it ends as a failed handshake does");
  }
  assert.equal(context.counters[Counter.tlsClientCertRefused], 2);
  assert.equal(context.counters[Counter.tlsHandshakesFailed], 1);
  assert.equal(context.counters[Counter.tlsHandshakesOk], 0);
  assert.deepEqual(context.lines.map((line) => line.replace(/^\S+ /, "")), [
    'info TLS handshake failed peer=192.0.2.7:40000 reason="the client sent no certificate"',
    'info TLS handshake failed peer=192.0.2.7:40000 reason="the handshake failed: wrong version number"',
  ]);
  assert.deepEqual(context.refusals.flush(START + 120_000), [
    ["192.0.2.7 tls_no_client_certificate", 1],
  ]);
});

Deno.test("a client that hangs up mid-handshake is counted and logged at debug only", () => {
  const context = recordingContext();
  openSession(context).handshakeFailed(START, hangUp);
  reportHandshakeFailure(context, PEER, hangUp, START + 1);
  assert.equal(context.counters[Counter.tlsHandshakesFailed], 2);
  assert.equal(context.lines.length, 2);
  for (const line of context.lines) assert.match(line, / debug TLS handshake failed peer=/);
  assert.equal(context.refusals.size, 0, "nothing to summarise");
});

Deno.test("reportHandshakeFailure counts and logs as the session does, for node:tls's failures", () => {
  const viaSession = recordingContext();
  openSession(viaSession).handshakeFailed(START, unverified);
  const alone = recordingContext();
  reportHandshakeFailure(alone, PEER, unverified, START);
  for (const counter of [Counter.tlsClientCertRefused, Counter.tlsHandshakesFailed]) {
    assert.equal(alone.counters[counter], viaSession.counters[counter]);
  }
  assert.equal(alone.counters[Counter.tlsClientCertRefused], 1);
  assert.deepEqual(
    alone.lines.map((line) => line.replace(/^\S+ /, "")),
    viaSession.lines.map((line) => line.replace(/^\S+ /, "")),
  );
});

Deno.test("reportHandshakeTimeout counts a handshake timeout and logs it at debug", () => {
  const context = recordingContext();
  reportHandshakeTimeout(context, PEER, 10_004);
  assert.equal(context.counters[Counter.handshakeTimeouts], 1);
  assert.deepEqual(context.lines.map((line) => line.replace(/^\S+ /, "")), [
    "debug handshake timeout peer=192.0.2.7:40000 after_ms=10004",
  ]);
});
