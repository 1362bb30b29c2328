import assert from "node:assert/strict";
import { BINARY_FRONT_END } from "../wire/binary.ts";
import { EXIT_FAILURE, StartError } from "./error.ts";
import { Logger } from "../common/log.ts";
import { Counter, counterRow, createCounterTable } from "../session/counters.ts";
import { checkListenAddress, listen, listenNodeTls } from "./listen.ts";
import {
  createSessionContext,
  DEFAULT_LIMITS,
  type ServiceLimits,
  type SessionContext,
} from "../session/session.ts";
import { makeBook } from "../testing/books.ts";
import { withDeadline } from "../testing/deadlines.ts";
import { LOOPBACK } from "../testing/loopback.ts";
import { makeTestPki } from "../testing/pki.ts";

const HANDSHAKE_TIMEOUT_MS = 200;

/** A session context for one thread whose log, at debug, is kept in `lines`. */
function quietContext(
  limits: Partial<ServiceLimits> = {},
): SessionContext & { lines: string[] } {
  const lines: string[] = [];
  const context = createSessionContext({
    frontEnd: BINARY_FRONT_END,
    book: makeBook(),
    limits: { ...DEFAULT_LIMITS, ...limits },
    counters: counterRow(createCounterTable(1), 0),
    openConnections: new Int32Array(new SharedArrayBuffer(4)),
    log: new Logger({ level: "debug", write: (line) => lines.push(line) }),
    clientCertificates: false,
  });
  return Object.assign(context, { lines });
}

/** A port some other socket holds for the length of `body`. */
async function withBusyPort(body: (port: number) => Promise<void> | void): Promise<void> {
  const taken = Deno.listen({ hostname: LOOPBACK, port: 0 });
  try {
    await body((taken.addr as Deno.NetAddr).port);
  } finally {
    taken.close();
  }
}

function assertStartError(run: () => unknown, message: string): void {
  assert.throws(run, (error: unknown) => {
    assert.ok(error instanceof StartError);
    assert.equal(error.message, message);
    assert.equal(error.exitCode, EXIT_FAILURE);
    return true;
  });
}

Deno.test("listen binds a free port and the listener accepts", async () => {
  const listener = listen(LOOPBACK, 0, "alone");
  try {
    const { port } = listener.addr as Deno.NetAddr;
    assert.ok(port > 0);
    const [accepted, client] = await Promise.all([
      listener.accept(),
      Deno.connect({ hostname: LOOPBACK, port }),
    ]);
    accepted.close();
    client.close();
  } finally {
    listener.close();
  }
});

Deno.test("listen refuses a port in use alone and as the first of several threads", async () => {
  await withBusyPort((port) => {
    for (const sharing of ["alone", "first"] as const) {
      assertStartError(
        () => listen(LOOPBACK, port, sharing),
        `Cannot listen on 127.0.0.1:${port}: the port is already in use.`,
      );
    }
  });
});

Deno.test("listen lets later threads join the first on its port", () => {
  const first = listen(LOOPBACK, 0, "first");
  try {
    const { port } = first.addr as Deno.NetAddr;
    const second = listen(LOOPBACK, port, "join");
    assert.equal((second.addr as Deno.NetAddr).port, port);
    second.close();
  } finally {
    first.close();
  }
});

Deno.test("listen says when the address is not this machine's, bracketing IPv6", () => {
  // 192.0.2.0/24 and 2001:db8::/32 are reserved for documentation: no machine has them.
  assertStartError(
    () => listen("192.0.2.1", 8080, "alone"),
    "Cannot listen on 192.0.2.1:8080: no such address on this machine.",
  );
  assertStartError(
    () => listen("2001:db8::1", 8080, "alone"),
    "Cannot listen on [2001:db8::1]:8080: no such address on this machine.",
  );
});

Deno.test("listenNodeTls refuses TLS files that are not a certificate and a key", async () => {
  const context = quietContext();
  await assert.rejects(
    listenNodeTls(LOOPBACK, 0, "alone", { cert: "not a certificate", key: "not a key" }, context),
    (error: unknown) => {
      assert.ok(error instanceof StartError);
      assert.match(error.message, /^Cannot use the TLS certificate or key: /);
      return true;
    },
  );
});

Deno.test("listenNodeTls lets later threads join the first on its port, and the first refuses a taken one", async () => {
  await using pki = await makeTestPki();
  const context = quietContext();
  const files = { cert: pki.server.certificate, key: pki.server.key };
  const first = await listenNodeTls(LOOPBACK, 0, "first", files, context);
  try {
    const { port } = first.addr;
    const second = await listenNodeTls(LOOPBACK, port, "join", files, context);
    assert.equal(second.addr.port, port);
    second.close();
    await assert.rejects(listenNodeTls(LOOPBACK, port, "first", files, context), StartError);
  } finally {
    first.close();
  }
});

Deno.test("listenNodeTls closes a peer that never finishes its handshake after the frame timeout, counted and logged at debug", async () => {
  await using pki = await makeTestPki();
  const context = quietContext({ frameTimeoutMs: HANDSHAKE_TIMEOUT_MS });
  const files = { cert: pki.server.certificate, key: pki.server.key };
  const listener = await listenNodeTls(LOOPBACK, 0, "alone", files, context);
  try {
    using silent = await Deno.connect({ hostname: LOOPBACK, port: listener.addr.port });
    // Half a ClientHello's record header: a handshake begun and never finished.
    await silent.write(new Uint8Array([0x16, 0x03]));
    const got = await withDeadline(
      silent.read(new Uint8Array(64)).catch(() => null),
      "the server to close the silent peer",
    );
    assert.equal(got, null);
    assert.equal(context.counters[Counter.handshakeTimeouts], 1);
    assert.equal(context.counters[Counter.tlsHandshakesFailed], 0);
    assert.equal(context.lines.length, 1, context.lines.join("\n"));
    assert.match(context.lines[0], / debug handshake timeout peer=127\.0\.0\.1:\d+ after_ms=\d+$/);
  } finally {
    listener.close();
  }
});

Deno.test("checkListenAddress passes a free address and lets it go, and refuses a busy one", async () => {
  const free = Deno.listen({ hostname: LOOPBACK, port: 0 });
  const port = (free.addr as Deno.NetAddr).port;
  free.close();
  checkListenAddress(LOOPBACK, port);
  // Let go: the port can be bound again at once.
  Deno.listen({ hostname: LOOPBACK, port }).close();
  await withBusyPort((busy) => {
    assertStartError(
      () => checkListenAddress(LOOPBACK, busy),
      `Cannot listen on 127.0.0.1:${busy}: the port is already in use.`,
    );
  });
});
