import assert from "node:assert/strict";
import { recordValue } from "./histogram.ts";
import { formatResult, summarize } from "./report.ts";
import { createTally } from "./tally.ts";

Deno.test("summarize computes throughput, percentiles and the other replies by name", () => {
  const tally = createTally();
  tally.statuses[0] = 600;
  tally.statuses[1] = 398;
  tally.statuses[2] = 2;
  tally.elapsedMs = 2000;
  for (let i = 1; i <= 100; i++) recordValue(tally.latency, i);
  const result = summarize(tally, {
    target: "127.0.0.1:1",
    server: null,
    connections: 1,
    pipeline: 1,
    threads: 1,
    reconnect: false,
    durationSeconds: 2,
    keys: 10,
  });
  assert.equal(result.queries, 1000);
  assert.equal(result.queriesPerSecond, 500);
  assert.deepEqual(result.latencyUs, { p50: 50, p99: 99, p999: 100, max: 100, mean: 51 });
  assert.equal(result.other, 2);
  assert.deepEqual(result.otherByStatus, { BAD_REQUEST: 2 });
  const text = formatResult(result);
  assert.match(text, /throughput {2}500 queries\/s/);
  assert.match(text, /p50 50 µs, p99 99 µs, p99\.9 100 µs/);
  assert.match(text, /other 2 \(BAD_REQUEST 2\)/);
});
