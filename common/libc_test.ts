import assert from "node:assert/strict";
import {
  decodeSockaddr,
  EADDRINUSE,
  encodeSockaddr,
  findSocketBetween,
  IPPROTO_TCP,
  isSocketBetween,
  listenTcp,
  openLibc,
  SOCK_NONBLOCK,
  SocketError,
  TCP_NODELAY,
  tcpBytesAcked,
} from "./libc.ts";

Deno.test("encodeSockaddr and decodeSockaddr round-trip IPv4 and IPv6 addresses", () => {
  for (
    const [hostname, shown] of [
      ["127.0.0.1", "127.0.0.1"],
      ["0.0.0.0", "0.0.0.0"],
      ["localhost", "127.0.0.1"],
      ["::1", "::1"],
      ["::", "::"],
      ["fe80::1:2", "fe80::1:2"],
      ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
      ["1:0:0:2:0:0:0:3", "1:0:0:2::3"],
      ["1:0:2:3:4:5:6:7", "1:0:2:3:4:5:6:7"],
      ["1:2:3:4:5:6:7:0", "1:2:3:4:5:6:7:0"],
      ["1:2:3:4:5:6:0:0", "1:2:3:4:5:6::"],
    ]
  ) {
    const address = encodeSockaddr(hostname, 8080);
    assert.ok(address, hostname);
    assert.deepEqual(decodeSockaddr(address), { hostname: shown, port: 8080 }, hostname);
  }
});

Deno.test("encodeSockaddr leaves host names and malformed addresses to Deno.listen", () => {
  for (const hostname of ["example.com", "256.1.1.1", "1.2.3", "1::2::3", "12345::1", ""]) {
    assert.equal(encodeSockaddr(hostname, 80), undefined, hostname);
  }
});

Deno.test({
  name: "listenTcp listens on a free port, with TCP_NODELAY inherited by accepted sockets",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    const libc = openLibc();
    assert.ok(libc, "libc could not be opened: the tests need --allow-ffi on Linux");
    const { getsockopt } = Deno.dlopen("libc.so.6", {
      getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
    }).symbols;
    const { fd, port } = listenTcp(libc, "127.0.0.1", 0, false)!;
    assert.ok(port > 0);
    const client = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      let accepted = -1;
      // The connection is complete in the kernel once connect resolved; accept may still race it.
      for (let tries = 0; accepted < 0 && tries < 100; tries++) {
        accepted = libc.calls.accept4(fd, null, null, SOCK_NONBLOCK);
        if (accepted < 0) await new Promise((resolve) => setTimeout(resolve, 0));
      }
      assert.ok(accepted >= 0, "the connection was never accepted");
      const value = new Int32Array(1);
      const length = new Uint32Array([4]);
      getsockopt(
        accepted,
        IPPROTO_TCP,
        TCP_NODELAY,
        new Uint8Array(value.buffer),
        new Uint8Array(length.buffer),
      );
      assert.equal(value[0], 1);
      libc.calls.close(accepted);
    } finally {
      client.close();
      libc.calls.close(fd);
    }
  },
});

Deno.test({
  name: "listenTcp reports a port in use as a SocketError with EADDRINUSE",
  ignore: Deno.build.os !== "linux",
  fn: () => {
    const libc = openLibc()!;
    using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const { port } = taken.addr as Deno.NetAddr;
    assert.throws(
      () => listenTcp(libc, "127.0.0.1", port, false),
      (error: unknown) => error instanceof SocketError && error.errno === EADDRINUSE,
    );
  },
});

Deno.test("a Deno.Conn's descriptor is found by its addresses, and TCP_INFO counts what the peer acknowledged", async () => {
  const libc = openLibc();
  if (libc === undefined) return; // no FFI here: the Deno.listen loop then keeps the old rule
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const other = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const served = await listener.accept();
  const otherServed = await listener.accept();
  try {
    const fd = findSocketBetween(libc, served.localAddr, served.remoteAddr);
    assert.ok(fd >= 0, "found");
    assert.ok(isSocketBetween(libc, fd, served.localAddr, served.remoteAddr));
    assert.ok(!isSocketBetween(libc, fd, otherServed.localAddr, otherServed.remoteAddr));
    assert.notEqual(findSocketBetween(libc, otherServed.localAddr, otherServed.remoteAddr), fd);
    const before = tcpBytesAcked(libc, fd);
    assert.ok(before >= 0);
    const bytes = new Uint8Array(10_000).fill(7);
    await served.write(bytes);
    const buffer = new Uint8Array(bytes.length);
    for (let got = 0; got < bytes.length;) got += (await client.read(buffer.subarray(got)))!;
    // The client's kernel acknowledges what it received; the ACK may trail the data a little.
    for (let i = 0; i < 200 && tcpBytesAcked(libc, fd) < before + bytes.length; i++) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    assert.equal(tcpBytesAcked(libc, fd), before + bytes.length);
    assert.equal(tcpBytesAcked(libc, -1), -1, "not a socket");
    const unknown = { hostname: "127.0.0.9", port: 1 };
    assert.equal(findSocketBetween(libc, unknown, served.remoteAddr), -1);
  } finally {
    for (const conn of [client, other, served, otherServed]) conn.close();
    listener.close();
  }
});
