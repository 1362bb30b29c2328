import assert from "node:assert/strict";
import { LDAP_OPERATIONS, LDAP_RESULTS } from "../wire/ldap.ts";
import {
  Counter,
  counterRow,
  COUNTERS_PER_THREAD,
  createCounterTable,
  FRONT_END_NAMES,
  LDAP_COUNTERS,
  outcomeCounters,
  replyCounter,
  sumCounters,
} from "./counters.ts";
import { Outcome, OUTCOME_NAMES } from "../wire/front_end.ts";

Deno.test("COUNTERS_PER_THREAD holds the fixed counters, one per front end and outcome, and LDAP's", () => {
  assert.equal(
    LDAP_COUNTERS.operations,
    Counter.replies + FRONT_END_NAMES.length * OUTCOME_NAMES.length,
  );
  assert.equal(LDAP_COUNTERS.results, LDAP_COUNTERS.operations + LDAP_OPERATIONS.length);
  assert.equal(COUNTERS_PER_THREAD, LDAP_COUNTERS.results + LDAP_RESULTS.length);
  assert.equal(COUNTERS_PER_THREAD, 16 + 2 * 8 + 10 + LDAP_RESULTS.length);
  const indices = Object.values(Counter);
  assert.equal(new Set(indices).size, indices.length, "each counter has its own index");
  assert.ok(indices.every((index) => index < COUNTERS_PER_THREAD));
});

Deno.test("createCounterTable makes one zeroed row per thread in shared memory", () => {
  const table = createCounterTable(3);
  assert.equal(table.length, 3 * COUNTERS_PER_THREAD);
  assert.ok(table.buffer instanceof SharedArrayBuffer);
  assert.ok(table.every((value) => value === 0));
});

Deno.test("counterRow gives each thread its own view of the table, without overlap", () => {
  const table = createCounterTable(3);
  const rows = [0, 1, 2].map((thread) => counterRow(table, thread));
  for (const row of rows) {
    assert.equal(row.length, COUNTERS_PER_THREAD);
    assert.equal(row.buffer, table.buffer);
  }
  rows[1][Counter.connectionsTotal] = 7;
  assert.equal(table[COUNTERS_PER_THREAD + Counter.connectionsTotal], 7);
  assert.equal(rows[0][Counter.connectionsTotal], 0);
  assert.equal(rows[2][Counter.connectionsTotal], 0);
  rows[2][COUNTERS_PER_THREAD - 1] = 1;
  assert.equal(table[table.length - 1], 1);
});

Deno.test("sumCounters adds each counter across the rows of all threads", () => {
  const table = createCounterTable(3);
  const rows = [0, 1, 2].map((thread) => counterRow(table, thread));
  rows[0][Counter.connectionsTotal] = 5;
  rows[1][Counter.connectionsTotal] = 7;
  rows[2][Counter.connectionsTotal] = 11;
  rows[0][Counter.connectionsOpen] = 2;
  rows[1][Counter.connectionsOpen] = -1; // a gauge row may dip below zero; only the sum matters
  rows[2][Counter.replies + 4] = 3;
  rows[0][Counter.replies + 4] = 1;
  const totals = sumCounters(table);
  assert.equal(totals.length, COUNTERS_PER_THREAD);
  assert.equal(totals[Counter.connectionsTotal], 23);
  assert.equal(totals[Counter.connectionsOpen], 1);
  assert.equal(totals[Counter.replies + 4], 4);
  assert.equal(totals[Counter.busyRefusals], 0);
});

Deno.test("sumCounters of one thread's table is that thread's row", () => {
  const table = createCounterTable(1);
  table.forEach((_, i) => table[i] = i * 10);
  assert.deepEqual([...sumCounters(table)], [...table]);
});

Deno.test("counters in the shared table are summed as written by worker threads", async () => {
  const table = createCounterTable(3);
  const dir = await Deno.makeTempDir({ prefix: "metrics_test_" });
  try {
    const workerPath = `${dir}/count.js`;
    const countersUrl = new URL("./counters.ts", import.meta.url).href;
    await Deno.writeTextFile(
      workerPath,
      `import { Counter, counterRow } from ${JSON.stringify(countersUrl)};
self.onmessage = (event) => {
  const { table, thread, count } = event.data;
  const row = counterRow(table, thread);
  for (let i = 0; i < count; i++) row[Counter.connectionsTotal]++;
  self.postMessage("done");
};
`,
    );
    const workers = [1, 2].map(() =>
      new Worker(new URL(`file://${workerPath}`), { type: "module" })
    );
    try {
      await Promise.all(workers.map((worker, i) =>
        new Promise<void>((resolve, reject) => {
          worker.onmessage = () => resolve();
          worker.onerror = (event) => {
            event.preventDefault();
            reject(new Error(event.message));
          };
          worker.postMessage({ table, thread: i + 1, count: 1000 * (i + 1) });
        })
      ));
      counterRow(table, 0)[Counter.connectionsTotal] += 5;
      assert.equal(sumCounters(table)[Counter.connectionsTotal], 3005);
    } finally {
      for (const worker of workers) worker.terminate();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("outcomeCounters is a front end's view of its replies in a row, by outcome", () => {
  const row = counterRow(createCounterTable(2), 1);
  const outcomes = outcomeCounters(row, "binary");
  assert.equal(outcomes.length, OUTCOME_NAMES.length);
  outcomes[Outcome.rateLimited] += 2;
  assert.equal(row[replyCounter("binary", Outcome.rateLimited)], 2);
  assert.throws(() => outcomeCounters(row, "gopher"), RangeError);
});
