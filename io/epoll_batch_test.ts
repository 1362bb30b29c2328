/**
 * The epoll loop's batched socket calls (io/socket_batch.ts), forced on for
 * every wakeup: many connections' pipelined queries, read and answered in
 * batches, must get the replies the front end gives one at a time. The
 * loop runs in this thread (it yields once a turn); the clients are a
 * subprocess, so that they run while the loop waits.
 */

import assert from "node:assert/strict";
import { listenTcp, openLibc } from "../common/libc.ts";
import { Logger } from "../common/log.ts";
import { COUNTERS_PER_THREAD } from "../session/counters.ts";
import { createSessionContext, DEFAULT_LIMITS } from "../session/session.ts";
import { BINARY_FRONT_END } from "../wire/binary.ts";
import { answerQuery } from "../wire/binary_answer.ts";
import { makeBook, PEOPLE } from "../testing/books.ts";
import { EpollService } from "./epoll.ts";

/** The client: CONNECTIONS connections, each sending its queries at once, then reading every reply. */
const CLIENT = `
const [port, connections, queriesJson] = Deno.args;
const timer = setTimeout(() => {
  console.error("no replies within 10 s");
  Deno.exit(1);
}, 10_000);
const queries = JSON.parse(queriesJson);
const encoder = new TextEncoder();
function frame(text) {
  const payload = encoder.encode(text);
  const bytes = new Uint8Array(5 + payload.length);
  bytes[0] = 0x51;
  new DataView(bytes.buffer).setUint32(1, payload.length);
  bytes.set(payload, 5);
  return bytes;
}
async function readReplies(conn, count) {
  const replies = [];
  let pending = new Uint8Array(0);
  const chunk = new Uint8Array(65536);
  while (replies.length < count) {
    const n = await conn.read(chunk);
    if (n === null) throw new Error("the server closed the connection");
    const joined = new Uint8Array(pending.length + n);
    joined.set(pending);
    joined.set(chunk.subarray(0, n), pending.length);
    pending = joined;
    while (pending.length >= 5) {
      const length = new DataView(pending.buffer, pending.byteOffset).getUint32(1);
      if (pending.length < 5 + length) break;
      replies.push(Array.from(pending.subarray(0, 5 + length)));
      pending = pending.slice(5 + length);
    }
  }
  return replies;
}
const conns = [];
for (let i = 0; i < Number(connections); i++) {
  conns.push(await Deno.connect({ hostname: "127.0.0.1", port: Number(port) }));
}
const all = await Promise.all(conns.map(async (conn, i) => {
  const mine = queries.map((_, j) => queries[(i + j) % queries.length]);
  const bytes = mine.map(frame);
  const joined = new Uint8Array(bytes.reduce((sum, b) => sum + b.length, 0));
  let at = 0;
  for (const b of bytes) { joined.set(b, at); at += b.length; }
  await conn.write(joined);
  const replies = await readReplies(conn, mine.length);
  conn.close();
  return { queries: mine, replies };
}));
console.log(JSON.stringify(all));
clearTimeout(timer);
`;

Deno.test("the epoll loop answers many connections' pipelined queries through batched reads and writes", async () => {
  const libc = openLibc()!;
  const book = makeBook();
  const listener = listenTcp(libc, "127.0.0.1", 0, false)!;
  const context = createSessionContext({
    frontEnd: BINARY_FRONT_END,
    book,
    limits: DEFAULT_LIMITS,
    counters: new Float64Array(COUNTERS_PER_THREAD),
    openConnections: new Int32Array(new SharedArrayBuffer(4)),
    log: new Logger({ level: "error", write: () => {} }),
  });
  // Yield to this thread's event loop once a turn, so that the test can await the client.
  let yielded = false;
  const service = new EpollService(
    libc,
    [EpollService.plainListener(libc, listener.fd, context)],
    () => (yielded = !yielded),
    { batchFrom: 1 },
  );
  const queries = [
    ...PEOPLE.map(([email]) => email.toUpperCase()),
    "nobody@example.com",
    "not an address",
    " ada@example.com ",
  ];
  try {
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--ext=js", CLIENT, String(listener.port), "12", JSON.stringify(queries)],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(new TextDecoder().decode(output.stderr), "");
    const results: { queries: string[]; replies: number[][] }[] = JSON.parse(
      new TextDecoder().decode(output.stdout),
    );
    assert.equal(results.length, 12);
    const encoder = new TextEncoder();
    for (const { queries: sent, replies } of results) {
      assert.deepEqual(
        replies,
        sent.map((query) => Array.from(answerQuery(book, encoder.encode(query)))),
      );
    }
  } finally {
    await service.abort();
  }
});
