import assert from "node:assert/strict";
import { recordValue } from "./histogram.ts";
import { createTally, mergeTally, tallyError, tallyQueries } from "./tally.ts";

Deno.test("tallyError counts every error but keeps only a few distinct messages", () => {
  const tally = createTally();
  for (let i = 0; i < 10; i++) tallyError(tally, `message ${i}`);
  tallyError(tally, "message 0");
  assert.equal(tally.errors, 11);
  assert.equal(Object.keys(tally.errorMessages).length, 5);
  assert.equal(tally.errorMessages["message 0"], 2);
});

Deno.test("mergeTally adds counts and keeps the longest elapsed time", () => {
  const a = createTally();
  const b = createTally();
  a.statuses[0] = 3;
  b.statuses[1] = 4;
  b.statuses[4] = 1;
  a.elapsedMs = 1000;
  b.elapsedMs = 1200;
  tallyError(b, "reset");
  recordValue(a.latency, 10);
  recordValue(b.latency, 20);
  mergeTally(a, b);
  assert.deepEqual(a.statuses, [3, 4, 0, 0, 1, 0, 0]);
  assert.equal(tallyQueries(a), 8);
  assert.equal(a.elapsedMs, 1200);
  assert.equal(a.errors, 1);
  assert.deepEqual(a.errorMessages, { reset: 1 });
  assert.equal(a.latency.total, 2);
});
