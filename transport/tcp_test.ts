/**
 * Tests of the plain TCP transport on a real connection on loopback: the
 * accepted end through the transport, the other a Deno connection. The
 * epoll loop drives it in every server test under `--io epoll`.
 */

import assert from "node:assert/strict";
import { failedSocketCall, TcpAcceptor } from "./tcp.ts";
import {
  HANDSHAKE_DONE,
  READY_READ,
  READY_WRITE,
  TRANSPORT_FAILED,
  WOULD_BLOCK,
} from "./transport.ts";
import { EAGAIN, EPOLLIN, EPOLLOUT, openLibc } from "../common/libc.ts";
import { acceptOne, readSoon } from "../testing/sockets.ts";
import { withDeadline } from "../testing/deadlines.ts";

const LINUX_ONLY = Deno.build.os !== "linux";
const connectPlain = (port: number) => Deno.connect({ hostname: "127.0.0.1", port });

function libc() {
  const opened = openLibc();
  assert.ok(opened, "libc could not be opened: the tests need --allow-ffi on Linux");
  return opened;
}

Deno.test({
  name: "TcpTransport reads, writes and ends its side on the socket, with nothing of a handshake",
  ignore: LINUX_ONLY,
  fn: async () => {
    const calls = libc();
    const { fd, client } = await acceptOne(calls, connectPlain);
    using conn = await client;
    try {
      const transport = new TcpAcceptor(calls).accept(fd);
      assert.equal(transport.handshakes, false);
      assert.equal(transport.handshake(), HANDSHAKE_DONE);
      assert.equal(transport.peerSubject(), undefined);
      const buffer = new Uint8Array(64);
      assert.equal(transport.read(buffer, buffer.length), WOULD_BLOCK, "nothing sent yet");
      await conn.write(new TextEncoder().encode("ping"));
      const got = await readSoon(transport, buffer);
      assert.equal(new TextDecoder().decode(buffer.subarray(0, got)), "ping");
      assert.equal(transport.hasPending(), false, "the kernel announces what it holds");
      const reply = new TextEncoder().encode("pong and more");
      assert.equal(transport.write(reply, 4), 4, "only the length asked for");
      transport.endOutput();
      const received = new Uint8Array(64);
      const count = await withDeadline(conn.read(received), "the reply");
      assert.equal(new TextDecoder().decode(received.subarray(0, count!)), "pong");
      assert.equal(await withDeadline(conn.read(received), "the end"), null);
      assert.equal(transport.failure, undefined);
      transport.free();
    } finally {
      calls.calls.close(fd);
    }
  },
});

Deno.test({
  name: "TcpTransport wakes on what epoll reports and waits for what the session wants",
  ignore: LINUX_ONLY,
  fn: () => {
    const transport = new TcpAcceptor(libc()).accept(-1);
    assert.equal(transport.ready(EPOLLIN), READY_READ);
    assert.equal(transport.ready(EPOLLOUT), READY_WRITE);
    assert.equal(transport.ready(0), READY_READ, "a hang-up or an error alone is read");
    for (const wanted of [0, EPOLLIN, EPOLLOUT]) assert.equal(transport.interest(wanted), wanted);
  },
});

Deno.test({
  name: "TcpTransport says a connection the peer reset failed, not that it would block",
  ignore: LINUX_ONLY,
  fn: async () => {
    const calls = libc();
    const { fd, client } = await acceptOne(calls, connectPlain);
    (await client).close();
    try {
      const transport = new TcpAcceptor(calls).accept(fd);
      const bytes = new Uint8Array(1 << 16);
      let result = 0;
      // The closed peer answers the first write with a reset; a later one fails.
      for (let tries = 0; tries < 100 && result >= 0; tries++) {
        result = transport.write(bytes, bytes.length);
        if (result >= 0) await new Promise((resolve) => setTimeout(resolve, 1));
      }
      assert.equal(result, TRANSPORT_FAILED);
      assert.equal(transport.failure, undefined, "a socket error says no more than its errno");
    } finally {
      calls.calls.close(fd);
    }
  },
});

Deno.test("failedSocketCall says EAGAIN would block and any other errno failed", () => {
  assert.equal(failedSocketCall(EAGAIN), WOULD_BLOCK);
  for (const errno of [104, 32, 9]) assert.equal(failedSocketCall(errno), TRANSPORT_FAILED); // ECONNRESET, EPIPE, EBADF
});
