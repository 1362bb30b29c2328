/**
 * Sockets for the transports' tests (transport/tcp_test.ts,
 * transport/tls_test.ts): a non-blocking socket accepted through libc, as
 * the epoll loop accepts it, with a Deno client (plain or TLS) connected
 * to it, and the loop's way of waiting for a transport.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  HANDSHAKE_DONE,
  HANDSHAKE_FAILED,
  type Transport,
  WOULD_BLOCK,
} from "../transport/transport.ts";
import { type Libc, listenTcp, SOCK_NONBLOCK } from "../common/libc.ts";

/** How often the helpers try before giving up, a millisecond apart. */
const TRIES = 2000;

/** A socket accepted through libc, and the client end, still connecting. */
export interface AcceptedSocket<T> {
  /** The accepted, non-blocking descriptor; the test closes it. */
  fd: number;
  /** The client, once `connect` resolved (for TLS, possibly after the handshake). */
  client: Promise<T>;
}

/**
 * Listens on a free loopback port through libc, starts `connect` to it,
 * and accepts the connection (non-blocking), then closes the listener.
 */
export async function acceptOne<T>(
  libc: Libc,
  connect: (port: number) => Promise<T>,
): Promise<AcceptedSocket<T>> {
  const listener = listenTcp(libc, "127.0.0.1", 0, false)!;
  try {
    const client = connect(listener.port);
    let fd = -1;
    for (let tries = 0; fd < 0 && tries < TRIES; tries++) {
      fd = libc.calls.accept4(listener.fd, null, null, SOCK_NONBLOCK);
      if (fd < 0) await pause();
    }
    assert.ok(fd >= 0, "the connection was accepted");
    return { fd, client };
  } finally {
    libc.calls.close(listener.fd);
  }
}

/** Reads through the transport until something other than WOULD_BLOCK comes. */
export async function readSoon(transport: Transport, buffer: Uint8Array): Promise<number> {
  for (let tries = 0; tries < TRIES; tries++) {
    const got = transport.read(buffer, buffer.length);
    if (got !== WOULD_BLOCK) return got;
    await pause();
  }
  throw new Error("Nothing arrived in time.");
}

/** Steps the transport's handshake until it is done or failed; returns which. */
export async function handshakeSoon(transport: Transport): Promise<number> {
  for (let tries = 0; tries < TRIES; tries++) {
    const step = transport.handshake();
    if (step === HANDSHAKE_DONE || step === HANDSHAKE_FAILED) return step;
    await pause();
  }
  throw new Error("The handshake did not end in time.");
}

function pause(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 1));
}
