import assert from "node:assert/strict";
import type { BenchOptions } from "./args.ts";
import { buildQueryFrames } from "./keys.ts";
import { runLoad, splitConnections } from "./run.ts";
import { tallyQueries } from "./tally.ts";
import { STATUS_FOUND, STATUS_NOT_FOUND } from "../protocol.ts";
import { PEOPLE } from "../testing/books.ts";
import { withDeadline } from "../testing/deadlines.ts";
import { withTestServer } from "../testing/in_process_server.ts";

Deno.test("splitConnections spreads connections over threads as evenly as possible", () => {
  assert.deepEqual(splitConnections(50, 1), [50]);
  assert.deepEqual(splitConnections(10, 4), [3, 3, 2, 2]);
  assert.deepEqual(splitConnections(4, 4), [1, 1, 1, 1]);
});

Deno.test("runLoad drives a server from two threads and merges their tallies", async () => {
  await withTestServer({}, async ({ port }) => {
    const keys = [...PEOPLE.map(([email]) => email), "nobody@example.com"];
    const options: BenchOptions = {
      entries: keys.length,
      connections: 3,
      pipeline: 2,
      durationSeconds: 0.2,
      threads: 2,
      reconnect: false,
      json: true,
      serverArgs: [],
    };
    const tally = await runLoad(
      options,
      { hostname: "127.0.0.1", port },
      buildQueryFrames(keys, 2),
      new Promise(() => {}),
    );
    assert.equal(tally.errors, 0, JSON.stringify(tally.errorMessages));
    assert.ok(tally.statuses[STATUS_FOUND] > 0);
    assert.ok(tally.statuses[STATUS_NOT_FOUND] > 0);
    assert.equal(tally.latency.total * 2, tallyQueries(tally));
  });
});

Deno.test("runLoad ends early once interrupted", async () => {
  await withTestServer({}, async ({ port }) => {
    const options: BenchOptions = {
      entries: 1,
      connections: 1,
      pipeline: 1,
      durationSeconds: 3600,
      threads: 1,
      reconnect: false,
      json: true,
      serverArgs: [],
    };
    const interrupt = Promise.withResolvers<void>();
    const running = runLoad(
      options,
      { hostname: "127.0.0.1", port },
      buildQueryFrames(["ada@example.com"], 1),
      interrupt.promise,
    );
    interrupt.resolve();
    // An hour's run that ends within the deadline: the interrupt was heeded.
    const tally = await withDeadline(running, "the interrupted run to end");
    assert.equal(tally.errors, 0, JSON.stringify(tally.errorMessages));
  });
});
