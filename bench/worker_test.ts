/**
 * Tests of a load thread: bench/worker.ts started as a real worker, given a
 * plan against a real in-process server, as bench/run.ts does.
 */

import assert from "node:assert/strict";
import { buildQueryFrames } from "./keys.ts";
import { type Tally, tallyQueries } from "./tally.ts";
import type { LoadPlan, ThreadCommand, ThreadReport } from "./worker.ts";
import { STATUS_FORBIDDEN, STATUS_FOUND, STATUS_NOT_FOUND } from "../protocol.ts";
import { PEOPLE } from "../testing/books.ts";
import { withDeadline } from "../testing/deadlines.ts";
import { withTestServer } from "../testing/in_process_server.ts";
import { metricValue } from "../testing/metrics.ts";
import { ScriptedServer } from "../testing/scripted_server.ts";

const KEYS = [...PEOPLE.map(([email]) => email), "nobody@example.com", "nobody@example.org"];

/** Runs one load thread with `plan` to its end and returns its tally. */
async function runThread(plan: LoadPlan, stopEarly = false): Promise<Tally> {
  const worker = new Worker(new URL("./worker.ts", import.meta.url).href, {
    type: "module",
  });
  try {
    const ready = Promise.withResolvers<void>();
    const done = Promise.withResolvers<Tally>();
    worker.onmessage = (event: MessageEvent<ThreadReport>) => {
      if (event.data.kind === "ready") ready.resolve();
      else if (event.data.kind === "done") done.resolve(event.data.tally);
    };
    worker.onerror = (event) => {
      event.preventDefault();
      done.reject(new Error(event.message));
    };
    const send = (command: ThreadCommand) => worker.postMessage(command);
    send({ kind: "prepare", plan });
    await withDeadline(ready.promise, "the thread to be ready");
    send({ kind: "go" });
    if (stopEarly) send({ kind: "stop" });
    return await withDeadline(done.promise, "the thread to finish");
  } finally {
    worker.terminate();
  }
}

function plan(port: number, overrides: Partial<LoadPlan> = {}): LoadPlan {
  return {
    hostname: "127.0.0.1",
    port,
    connections: 2,
    firstConnection: 0,
    totalConnections: 2,
    pipeline: 4,
    durationMs: 200,
    reconnect: false,
    progress: false,
    frames: buildQueryFrames(KEYS, 4),
    ...overrides,
  };
}

Deno.test("a load thread drives its connections and counts FOUND and NOT_FOUND replies", async () => {
  await withTestServer({}, async ({ port }) => {
    const tally = await runThread(plan(port));
    assert.equal(tally.errors, 0, JSON.stringify(tally.errorMessages));
    assert.ok(tally.statuses[STATUS_FOUND] > 0);
    assert.ok(tally.statuses[STATUS_NOT_FOUND] > 0);
    assert.equal(
      tallyQueries(tally),
      tally.statuses[STATUS_FOUND] + tally.statuses[STATUS_NOT_FOUND],
    );
    // Every batch is timed, and a batch is 4 queries.
    assert.equal(tally.latency.total * 4, tallyQueries(tally));
    assert.ok(tally.elapsedMs > 0);
  });
});

Deno.test("a load thread with reconnect opens a connection per query", async () => {
  await withTestServer({}, async ({ port, server }) => {
    const tally = await runThread(plan(port, { pipeline: 1, reconnect: true, connections: 1 }));
    assert.equal(tally.errors, 0, JSON.stringify(tally.errorMessages));
    assert.ok(tallyQueries(tally) > 0);
    assert.equal(metricValue(server.metrics(), "addrbook_connections_total"), tallyQueries(tally));
  });
});

Deno.test("a load thread told to stop finishes its batches and reports", async () => {
  await withTestServer({}, async ({ port }) => {
    // A minute's run that ends within runThread's deadline: the stop was heeded.
    const tally = await runThread(plan(port, { durationMs: 60_000 }), true);
    assert.equal(tally.errors, 0, JSON.stringify(tally.errorMessages));
  });
});

Deno.test("a load thread counts a server that refuses connections as errors, and ends", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  const tally = await runThread(plan(port, { reconnect: true, pipeline: 1, connections: 1 }));
  assert.equal(tallyQueries(tally), 0);
  assert.ok(tally.errors >= 1);
  assert.match(Object.keys(tally.errorMessages)[0], /^Cannot connect: /);
});

Deno.test("a load thread counts FORBIDDEN, which ends the connection, and reconnects without errors", async () => {
  await using server = new ScriptedServer({
    greeting: { status: STATUS_FORBIDDEN, text: "Not from here." },
    answer: () => assert.fail("a forbidding server reads no query"),
  });
  const tally = await runThread(plan(server.port, { connections: 1, totalConnections: 1 }));
  assert.equal(tally.errors, 0, JSON.stringify(tally.errorMessages));
  assert.ok(tally.statuses[STATUS_FORBIDDEN] > 1, "one per connection, and it reconnected");
  assert.equal(tally.statuses[STATUS_FORBIDDEN], server.accepted);
});
