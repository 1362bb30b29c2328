import assert from "node:assert/strict";
import { Logger } from "../common/log.ts";
import { createCounterTable } from "../session/counters.ts";
import { STATUS_FOUND } from "../protocol.ts";
import { DEFAULT_LIMITS } from "../session/session.ts";
import { StartError } from "./error.ts";
import { startWorker } from "./threads.ts";
import type { WorkerStart } from "./worker_messages.ts";
import { makeBook, PEOPLE } from "../testing/books.ts";
import { LOOPBACK } from "../testing/loopback.ts";
import { withWireClient } from "../testing/wire_client.ts";

function startMessage(port: number): WorkerStart {
  return {
    kind: "start",
    io: "deno",
    hostname: LOOPBACK,
    port,
    sharing: "alone",
    tls: undefined,
    book: makeBook().toShared(),
    limits: DEFAULT_LIMITS,
    counters: createCounterTable(1),
    thread: 0,
    openConnections: new Int32Array(new SharedArrayBuffer(4)),
    logLevel: "info",
  };
}

Deno.test("startWorker starts a serving thread, hands it a new book, drains and ends it", async () => {
  const lines: string[] = [];
  const thread = await startWorker(
    startMessage(0),
    new Logger({ write: (line) => lines.push(line) }),
  );
  try {
    const [email, name] = PEOPLE[0];
    await withWireClient(thread.port, async (client) => {
      assert.deepEqual(await client.query(email), { status: STATUS_FOUND, text: name });
    });
    await thread.setBook(makeBook([[email, "Ada King"]]));
    await withWireClient(thread.port, async (client) => {
      assert.deepEqual(await client.query(email), { status: STATUS_FOUND, text: "Ada King" });
    });
    await thread.shutdown();
  } finally {
    await thread.abort();
  }
});

Deno.test("startWorker rejects with the thread's StartError when it cannot listen", async () => {
  const taken = Deno.listen({ hostname: LOOPBACK, port: 0 });
  try {
    const port = (taken.addr as Deno.NetAddr).port;
    await assert.rejects(startWorker(startMessage(port), new Logger()), (error: unknown) => {
      assert.ok(error instanceof StartError);
      assert.equal(
        error.message,
        `Cannot listen on 127.0.0.1:${port}: the port is already in use.`,
      );
      assert.equal(error.exitCode, 1);
      return true;
    });
  } finally {
    taken.close();
  }
});
