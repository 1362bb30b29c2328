/**
 * The pure part of the signal handling; the handlers themselves are tested
 * on a real server process in server/cli_test.ts (SIGHUP reload, SIGTERM and
 * SIGINT shutdown, a second signal, Ctrl-C's two SIGINTs under deno task).
 */

import assert from "node:assert/strict";
import { isCopyOfFirstSignal, REPEATED_SIGNAL_MS } from "./signals.ts";

Deno.test("a stop signal within REPEATED_SIGNAL_MS of the first is a copy of it, later is a second", () => {
  assert.equal(isCopyOfFirstSignal(1000, 1000), true);
  assert.equal(isCopyOfFirstSignal(1000, 1000 + REPEATED_SIGNAL_MS - 1), true);
  assert.equal(isCopyOfFirstSignal(1000, 1000 + REPEATED_SIGNAL_MS), false);
  assert.equal(isCopyOfFirstSignal(1000, 60_000), false);
});
