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
import { HEADER_SIZE } from "../protocol.ts";

/** The protocol's codec, for the client to import by its address. */
const PROTOCOL = new URL("../protocol.ts", import.meta.url).href;

/**
 * The client: as many connections as asked, each sending all its queries
 * at once, then reading every reply; it prints each connection's queries
 * and reply payloads as JSON. It speaks through protocol.ts's codec.
 */
const CLIENT = `
import { encodeQuery, FrameDecoder, MAX_REPLY_BYTES, TYPE_REPLY } from "${PROTOCOL}";
const [port, connections, queriesJson] = Deno.args;
const queries = JSON.parse(queriesJson);
const timer = setTimeout(() => {
  console.error("no replies within 10 s");
  Deno.exit(1);
}, 10_000);
async function ask(index) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(port) });
  const mine = queries.map((_, j) => queries[(index + j) % queries.length]);
  const frames = mine.map((query) => encodeQuery(query));
  const joined = new Uint8Array(frames.reduce((sum, frame) => sum + frame.length, 0));
  frames.reduce((at, frame) => (joined.set(frame, at), at + frame.length), 0);
  await conn.write(joined);
  const decoder = new FrameDecoder({ type: TYPE_REPLY, maxPayload: MAX_REPLY_BYTES });
  const replies = [];
  const chunk = new Uint8Array(65536);
  while (replies.length < mine.length) {
    const n = await conn.read(chunk);
    if (n === null) throw new Error("the server closed the connection");
    decoder.push(chunk.slice(0, n));
    for (let payload; (payload = decoder.next()) !== null;) replies.push(Array.from(payload));
  }
  conn.close();
  return { queries: mine, replies };
}
const all = await Promise.all(Array.from({ length: Number(connections) }, (_, i) => ask(i)));
console.log(JSON.stringify(all));
clearTimeout(timer);
`;

Deno.test({
  name:
    "the epoll loop answers many connections' pipelined queries through batched reads and writes",
  ignore: Deno.build.os !== "linux",
}, async () => {
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
        sent.map((query) =>
          Array.from(answerQuery(book, encoder.encode(query)).subarray(HEADER_SIZE))
        ),
      );
    }
  } finally {
    await service.abort();
  }
});
