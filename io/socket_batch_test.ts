import assert from "node:assert/strict";
import { EAGAIN, openLibc } from "../common/libc.ts";
import { acceptOne } from "../testing/sockets.ts";
import { bufferAddress, SocketBatch } from "./socket_batch.ts";

const libc = openLibc()!;

/** A test of libc and io_uring, which only Linux has. */
function linuxTest(name: string, fn: () => void | Promise<void>): void {
  Deno.test({ name, ignore: Deno.build.os !== "linux", fn });
}
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** `count` accepted sockets and their Deno clients. */
async function socketPairs(count: number): Promise<{ fd: number; client: Deno.TcpConn }[]> {
  const pairs = [];
  for (let i = 0; i < count; i++) {
    const { fd, client } = await acceptOne(
      libc,
      (port) => Deno.connect({ hostname: "127.0.0.1", port }),
    );
    pairs.push({ fd, client: await client });
  }
  return pairs;
}

function closeAll(pairs: { fd: number; client: Deno.TcpConn }[]): void {
  for (const { fd, client } of pairs) {
    libc.calls.close(fd);
    try {
      client.close();
    } catch {
      // closed by the test already
    }
  }
}

/** Reads from `conn` until `length` bytes came. */
async function readExactly(conn: Deno.TcpConn, length: number): Promise<string> {
  const bytes = new Uint8Array(length);
  let got = 0;
  while (got < length) {
    const n = await conn.read(bytes.subarray(got));
    assert.ok(n !== null, "the connection stayed open");
    got += n;
  }
  return decoder.decode(bytes);
}

/** Waits until the kernel holds `length` bytes for `fd`, by peeking. */
async function waitForBytes(fd: number, length: number): Promise<void> {
  const peek = new Uint8Array(length);
  for (let tries = 0; tries < 2000; tries++) {
    if (libc.peek(fd, peek, length) >= length) return;
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  assert.fail(`${length} bytes never arrived`);
}

/**
 * Runs `fn` with a new batch and `count` accepted sockets and their
 * clients, and frees them all after.
 */
async function withBatch(
  count: number,
  fn: (batch: SocketBatch, pairs: { fd: number; client: Deno.TcpConn }[]) => Promise<void>,
): Promise<void> {
  const batch = SocketBatch.open(libc);
  assert.ok(batch !== undefined, "io_uring is available on the machines the tests run on");
  const pairs = await socketPairs(count);
  try {
    await fn(batch, pairs);
  } finally {
    closeAll(pairs);
    batch.free();
  }
}

/** Each completed call's result by its tag. */
function resultsByTag(batch: SocketBatch, done: number): Map<number, number> {
  const results = new Map<number, number>();
  for (let i = 0; i < done; i++) results.set(batch.tags[i], batch.results[i]);
  return results;
}

linuxTest(
  "a socket batch reads several sockets in one run: bytes, nothing yet, and the end",
  () =>
    withBatch(3, async (batch, pairs) => {
      await pairs[0].client.write(encoder.encode("hello"));
      pairs[2].client.closeWrite();
      await waitForBytes(pairs[0].fd, 5);
      const buffer = new Uint8Array(new ArrayBuffer(3 * 1024));
      const base = bufferAddress(buffer);
      for (let i = 0; i < 3; i++) batch.receive(pairs[i].fd, base + i * 1024, 1024, 10 + i);
      assert.equal(batch.queued, 3);
      // The end of stream may still be on its way: run until it is there.
      let results = resultsByTag(batch, batch.run());
      for (let tries = 0; results.get(12) === -EAGAIN && tries < 2000; tries++) {
        await new Promise((resolve) => setTimeout(resolve, 1));
        batch.receive(pairs[2].fd, base + 2048, 1024, 12);
        results = new Map([...results, ...resultsByTag(batch, batch.run())]);
      }
      assert.equal(batch.queued, 0);
      assert.deepEqual([results.get(10), results.get(11), results.get(12)], [5, -EAGAIN, 0]);
      assert.equal(decoder.decode(buffer.subarray(0, 5)), "hello");
    }),
);

linuxTest(
  "a socket batch writes several sockets in one run, each its own bytes",
  () =>
    withBatch(4, async (batch, pairs) => {
      const buffers = pairs.map((_, i) => {
        const bytes = new Uint8Array(new ArrayBuffer(128));
        bytes.set(encoder.encode(`reply ${i}`));
        return bytes;
      });
      pairs.forEach(({ fd }, i) => batch.send(fd, bufferAddress(buffers[i]), 7, i));
      const results = resultsByTag(batch, batch.run());
      assert.deepEqual([...results.keys()].sort(), [0, 1, 2, 3]);
      for (const written of results.values()) assert.equal(written, 7);
      for (let i = 0; i < pairs.length; i++) {
        assert.equal(await readExactly(pairs[i].client, 7), `reply ${i}`);
      }
    }),
);

linuxTest(
  "a socket batch says a write to a reset connection failed, and raises no SIGPIPE",
  () =>
    withBatch(1, async (batch, pairs) => {
      pairs[0].client.close();
      // Writes until the peer's reset comes back: the first may still be taken.
      const bytes = new Uint8Array(new ArrayBuffer(128));
      let result = 0;
      for (let tries = 0; result >= 0 && tries < 2000; tries++) {
        batch.send(pairs[0].fd, bufferAddress(bytes), bytes.length, 0);
        batch.run();
        result = batch.results[0];
        if (result >= 0) await new Promise((resolve) => setTimeout(resolve, 1));
      }
      assert.ok(result < 0 && result !== -EAGAIN, `a failure, got ${result}`);
    }),
);

linuxTest("a socket batch holds what it can and says so, and runs nothing when empty", () => {
  const batch = SocketBatch.open(libc, 2)!;
  try {
    assert.equal(batch.run(), 0);
    const bytes = new Uint8Array(new ArrayBuffer(128));
    // Descriptor -1: the calls fail with EBADF when run, which is fine here.
    batch.receive(-1, bufferAddress(bytes), 1, 0);
    batch.receive(-1, bufferAddress(bytes), 1, 1);
    assert.throws(
      () => batch.receive(-1, bufferAddress(bytes), 1, 2),
      new RangeError("A socket batch holds 2 calls; run it before queuing more."),
    );
    assert.equal(batch.run(), 2);
    assert.deepEqual([batch.results[0], batch.results[1]], [-9, -9]); // EBADF
  } finally {
    batch.free();
  }
});

linuxTest("bufferAddress refuses a buffer V8 may move", () => {
  assert.throws(
    () => bufferAddress(new Uint8Array(16)),
    new RangeError("A batched call needs a buffer V8 keeps in place: over 64 bytes, got 16."),
  );
  const bytes = new Uint8Array(new ArrayBuffer(128));
  assert.equal(bufferAddress(bytes.subarray(8)) - bufferAddress(bytes), 8);
});
