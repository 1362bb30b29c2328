/**
 * Reading a server's Prometheus metrics in tests: one sample by name and
 * labels, and waiting for the count of open connections, which another
 * thread updates with no event to await.
 *
 * ```ts ignore
 * import { metricValue, waitForOpenConnections } from "./metrics.ts";
 *
 * metricValue(server.metrics(), "addrbook_refusals_total", '{reason="rate_limited"}');
 * await waitForOpenConnections(server, 0, "every connection to close");
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import type { ServerHandle } from "../server/start.ts";
import { waitFor } from "./deadlines.ts";

/**
 * Reads one sample from Prometheus text: `name` with exactly `labels`
 * (e.g. `{status="FOUND"}`); fails when the sample is missing.
 */
export function metricValue(text: string, name: string, labels = ""): number {
  const prefix = `${name}${labels} `;
  const line = text.split("\n").find((l) => l.startsWith(prefix));
  assert.ok(line !== undefined, `no sample ${name}${labels} in the metrics`);
  return Number(line.slice(prefix.length));
}

/** Waits until the server's metrics count exactly `count` open connections. */
export function waitForOpenConnections(
  server: ServerHandle,
  count: number,
  what: string,
): Promise<void> {
  return waitFor(
    () => metricValue(server.metrics(), "addrbook_connections_open") === count,
    what,
  );
}
