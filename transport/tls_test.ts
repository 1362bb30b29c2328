/**
 * Tests of the TLS transport on real connections on loopback: the
 * accepted end through the transport (OpenSSL on the socket), the other a
 * Deno client, TLS or plain. The epoll loop drives it in every TLS test of
 * the server under `--io epoll` (tests/server_tls_test.ts, tests/tls_test.ts).
 */

import assert from "node:assert/strict";
import {
  HANDSHAKE_DONE,
  HANDSHAKE_FAILED,
  READY_READ,
  READY_WRITE,
  WOULD_BLOCK,
} from "./transport.ts";
import { EPOLLIN, EPOLLOUT, openLibc } from "../common/libc.ts";
import { TlsAcceptor } from "./tls_acceptor.ts";
import { CLIENT_SUBJECT, makeTestPki, type TestPki } from "../testing/pki.ts";
import { acceptOne, handshakeSoon, readSoon } from "../testing/sockets.ts";
import { withDeadline } from "../testing/deadlines.ts";

const LINUX_ONLY = Deno.build.os !== "linux";
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const connectPlain = (port: number) => Deno.connect({ hostname: "127.0.0.1", port });

function libc() {
  const opened = openLibc();
  assert.ok(opened, "libc could not be opened: the tests need --allow-ffi on Linux");
  return opened;
}

/** Runs `body` with a TLS acceptor that requires client certificates from the test CA. */
async function withAcceptor(
  body: (acceptor: TlsAcceptor, pki: TestPki) => Promise<void>,
): Promise<void> {
  await using pki = await makeTestPki();
  const acceptor = TlsAcceptor.open(libc(), {
    cert: pki.server.certificate,
    key: pki.server.key,
    clientCa: pki.ca.certificate,
  });
  try {
    await body(acceptor, pki);
  } finally {
    acceptor.free();
  }
}

/** Reads what the client gets until the server's side ends; null when it ended with no bytes. */
async function readToEnd(conn: Deno.Conn): Promise<string | null> {
  const buffer = new Uint8Array(256);
  let text: string | null = null;
  for (;;) {
    const count = await withDeadline(conn.read(buffer), "the server's bytes or its end");
    if (count === null) return text;
    text = (text ?? "") + decoder.decode(buffer.subarray(0, count));
  }
}

Deno.test({
  name: "TlsTransport runs the handshake, carries plaintext both ways, and ends with close_notify",
  ignore: LINUX_ONLY,
  fn: () =>
    withAcceptor(async (acceptor, pki) => {
      const calls = libc();
      const { fd, client } = await acceptOne(calls, (port) =>
        Deno.connectTls({
          hostname: "127.0.0.1",
          port,
          caCerts: [pki.ca.certificate],
          cert: pki.client.certificate,
          key: pki.client.key,
        }));
      try {
        const transport = acceptor.accept(fd);
        assert.equal(transport.handshakes, true);
        const clientDone = client.then(async (conn) => {
          await conn.handshake();
          return conn;
        });
        assert.equal(await handshakeSoon(transport), HANDSHAKE_DONE);
        using conn = await withDeadline(clientDone, "the client's handshake");
        assert.equal(transport.peerSubject(), CLIENT_SUBJECT);
        await conn.write(encoder.encode("ping"));
        const buffer = new Uint8Array(64);
        const got = await readSoon(transport, buffer);
        assert.equal(decoder.decode(buffer.subarray(0, got)), "ping");
        assert.equal(transport.write(encoder.encode("pong and more"), 4), 4);
        transport.endOutput();
        assert.equal(await readToEnd(conn), "pong", "then close_notify: a clean end");
        assert.equal(transport.failure, undefined);
        transport.free(true);
      } finally {
        calls.calls.close(fd);
      }
    }),
});

Deno.test({
  name: "TlsTransport fails the handshake of a client that speaks no TLS, then reads raw",
  ignore: LINUX_ONLY,
  fn: () =>
    withAcceptor(async (acceptor) => {
      const calls = libc();
      const { fd, client } = await acceptOne(calls, connectPlain);
      using conn = await client;
      try {
        await conn.write(encoder.encode("GET / HTTP/1.0\r\n\r\n"));
        const transport = acceptor.accept(fd);
        assert.equal(await handshakeSoon(transport), HANDSHAKE_FAILED);
        assert.equal(transport.failure?.kind, "failed");
        assert.match(transport.failure!.reason, /^the handshake failed: /);
        assert.equal(transport.hasPending(), false, "TLS is over: nothing is held for it");
        await conn.write(encoder.encode("more"));
        const buffer = new Uint8Array(64);
        const got = await readSoon(transport, buffer);
        assert.equal(decoder.decode(buffer.subarray(0, got)), "more", "read raw, to be dropped");
        transport.endOutput();
        await readToEnd(conn); // OpenSSL's alert, if any, then the end
        transport.free(true);
      } finally {
        calls.calls.close(fd);
      }
    }),
});

Deno.test({
  name: "TlsTransport with its handshake abandoned speaks no TLS at all, not even close_notify",
  ignore: LINUX_ONLY,
  fn: () =>
    withAcceptor(async (acceptor) => {
      const calls = libc();
      const { fd, client } = await acceptOne(calls, connectPlain);
      using conn = await client;
      try {
        const transport = acceptor.accept(fd);
        transport.abandonHandshake();
        const buffer = new Uint8Array(64);
        assert.equal(transport.read(buffer, buffer.length), WOULD_BLOCK);
        await conn.write(encoder.encode("after a refused PROXY header"));
        const got = await readSoon(transport, buffer);
        assert.equal(decoder.decode(buffer.subarray(0, got)), "after a refused PROXY header");
        transport.endOutput();
        assert.equal(await readToEnd(conn), null, "a bare FIN");
        transport.free(true);
      } finally {
        calls.calls.close(fd);
      }
    }),
});

Deno.test({
  name: "TlsTransport wakes on what epoll reports while no TLS call waits for the other event",
  ignore: LINUX_ONLY,
  fn: () =>
    withAcceptor(async (acceptor) => {
      const calls = libc();
      const { fd, client } = await acceptOne(calls, connectPlain);
      using _conn = await client;
      try {
        const transport = acceptor.accept(fd);
        assert.equal(transport.ready(EPOLLOUT), READY_WRITE);
        assert.equal(transport.ready(EPOLLIN), READY_READ);
        for (const wanted of [0, EPOLLIN, EPOLLOUT]) {
          assert.equal(transport.interest(wanted), wanted);
        }
        transport.free(false);
      } finally {
        calls.calls.close(fd);
      }
    }),
});
