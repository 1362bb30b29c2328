import assert from "node:assert/strict";
import { FIRST_PACE_MS, MAX_PACE_MS, Pacer } from "./pacing.ts";

Deno.test("Pacer pauses briefly at first, then a quarter of the time waited, at most MAX_PACE_MS", () => {
  const pacer = new Pacer({ maxWaitMs: 600_000 });
  assert.equal(pacer.rateLimited(0), FIRST_PACE_MS);
  assert.equal(pacer.rateLimited(100), FIRST_PACE_MS);
  assert.equal(pacer.rateLimited(2000), 500);
  assert.equal(pacer.rateLimited(100_000), MAX_PACE_MS);
  assert.equal(pacer.waits, 4);
  assert.equal(pacer.waitedMs, 2 * FIRST_PACE_MS + 500 + MAX_PACE_MS);
  assert.equal(pacer.gaveUp, false);
});

Deno.test("Pacer starts short again once a query is answered", () => {
  const pacer = new Pacer();
  pacer.rateLimited(0);
  assert.equal(pacer.rateLimited(8000), 2000);
  pacer.answered();
  assert.equal(pacer.rateLimited(9000), FIRST_PACE_MS);
});

Deno.test("Pacer gives up when the next pause would pass the longest wait with nothing answered", () => {
  const pacer = new Pacer({ maxWaitMs: 1000 });
  assert.equal(pacer.rateLimited(0), FIRST_PACE_MS);
  assert.equal(pacer.rateLimited(800), 200);
  assert.equal(pacer.rateLimited(900), undefined);
  assert.equal(pacer.gaveUp, true);
  assert.equal(pacer.waits, 2);
});
