/**
 * Tests of what the drivers share (io/service.ts). The drivers themselves are
 * tested through the server on both loops (tests/server_test.ts, tests/fuzz_test.ts):
 * the epoll driver blocks its thread between waits, so it only runs in a
 * worker, as the server runs it.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { sweepInterval } from "./service.ts";
import { DEFAULT_LIMITS, LINGER_MS, type ServiceLimits, WRITE_PROBES } from "../session/session.ts";

const OFF = { ...DEFAULT_LIMITS, idleTimeoutMs: 0, frameTimeoutMs: 0, writeTimeoutMs: 0 };

Deno.test("sweepInterval looks a quarter of the shortest timeout apart, and as often as the write timer probes", () => {
  assert.equal(sweepInterval({ ...OFF, frameTimeoutMs: 200 }), 50);
  assert.equal(sweepInterval({ ...OFF, idleTimeoutMs: 400, frameTimeoutMs: 300 }), 75);
  assert.equal(sweepInterval({ ...OFF, frameTimeoutMs: 201 }), 50, "whole milliseconds");
  assert.equal(sweepInterval({ ...OFF, frameTimeoutMs: 400, writeTimeoutMs: 2000 }), 100);
  assert.equal(sweepInterval({ ...OFF, writeTimeoutMs: 2000 }), 2000 / WRITE_PROBES);
});

Deno.test("sweepInterval looks at least every quarter of the linger time, with every timeout off or long", () => {
  assert.equal(sweepInterval(OFF), LINGER_MS / 4);
  assert.equal(sweepInterval(DEFAULT_LIMITS), LINGER_MS / 4);
});

Deno.test("sweepInterval looks no more often than every 10 ms", () => {
  assert.equal(sweepInterval({ ...OFF, idleTimeoutMs: 1 }), 10);
  assert.equal(sweepInterval({ ...OFF, frameTimeoutMs: 39 }), 10);
});

Deno.test("sweepInterval closes a peer at most about a quarter of its timeout late", () => {
  const timeout = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 2_147_483_000 }));
  const limits: fc.Arbitrary<ServiceLimits> = fc.record({
    maxConnections: fc.constant(1),
    idleTimeoutMs: timeout,
    frameTimeoutMs: timeout,
    writeTimeoutMs: timeout,
    maxPendingWrite: fc.constant(1),
  });
  fc.assert(
    fc.property(limits, (limits) => {
      const every = sweepInterval(limits);
      assert.ok(Number.isInteger(every) && every >= 10 && every <= LINGER_MS / 4, `${every}`);
      for (const ms of [limits.idleTimeoutMs, limits.frameTimeoutMs, limits.writeTimeoutMs]) {
        if (ms > 0) assert.ok(every <= Math.max(10, ms / 4), `${every} for a timeout of ${ms}`);
      }
    }),
    { seed: 20261202 },
  );
});
