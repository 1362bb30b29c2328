/**
 * End-to-end tests of what tells an operator which release runs, and how
 * the process fares: `--version` on the server and the client, the PID and
 * version in the server's start line, and `/metrics`'s
 * `addrbook_build_info` and process figures, from a real server process.
 */

import assert from "node:assert/strict";
import { STATUS_FOUND } from "../protocol.ts";
import { VERSION } from "../common/version.ts";
import { waitFor } from "../testing/deadlines.ts";
import { metricValue } from "../testing/metrics.ts";
import {
  assertNoStackTrace,
  runClientToExit,
  runServerToExit,
  ServerProcess,
} from "../testing/processes.ts";
import type { WireClient } from "../testing/wire_client.ts";

/** Connections a test holds open, well above the noise of other descriptors. */
const HELD_CONNECTIONS = 20;

const VERSION_LINE = (program: string) =>
  `addrbook ${program} ${VERSION} (Deno ${Deno.version.deno})\n`;

Deno.test("server --version and client --version print the release and exit 0", async () => {
  const server = await runServerToExit(["--version"]);
  assert.deepEqual(server, { code: 0, stdout: VERSION_LINE("server"), stderr: "" });
  // --version wins over anything else on the line, as --help does.
  const client = await runClientToExit(["--version", "ada@example.com"]);
  assert.deepEqual(client, { code: 0, stdout: VERSION_LINE("client"), stderr: "" });
});

Deno.test("the server's start line shows its PID and version", async () => {
  await using server = await ServerProcess.start([]);
  assert.match(server.startLine, new RegExp(` pid=${server.child.pid} `));
  assert.match(server.startLine, new RegExp(` version=${VERSION.replaceAll(".", "\\.")} `));
});

Deno.test("/metrics shows addrbook_build_info and the process's figures, open descriptors growing with connections", async () => {
  await using server = await ServerProcess.start(["--metrics-port", "0"]);
  const metricsPort = /metrics=\S+:(\d+)/.exec(server.startLine)?.[1];
  assert.ok(metricsPort, server.startLine);
  const scrape = async () =>
    await (await fetch(`http://${server.hostname}:${metricsPort}/metrics`)).text();

  const before = await scrape();
  assert.equal(
    metricValue(
      before,
      "addrbook_build_info",
      `{version="${VERSION}",deno="${Deno.version.deno}"}`,
    ),
    1,
  );
  const started = metricValue(before, "process_start_time_seconds");
  assert.ok(started <= Date.now() / 1000 && started > Date.now() / 1000 - 120, `${started}`);
  const memory = metricValue(before, "process_resident_memory_bytes");
  assert.ok(memory > 10 * 2 ** 20 && memory < 16 * 2 ** 30, `${memory}`);
  assert.ok(metricValue(before, "process_cpu_seconds_total") > 0);
  const maxFds = metricValue(before, "process_max_fds");
  const openBefore = metricValue(before, "process_open_fds");
  assert.ok(openBefore > 0 && openBefore < maxFds, `${openBefore} of ${maxFds}`);

  const clients: WireClient<Deno.TcpConn>[] = [];
  try {
    for (let i = 0; i < HELD_CONNECTIONS; i++) {
      const client = await server.connect();
      clients.push(client);
      // Answered, so the server has accepted it: its descriptor is open.
      assert.equal((await client.query("ada@example.com")).status, STATUS_FOUND);
    }
    const open = metricValue(await scrape(), "process_open_fds");
    assert.ok(open >= openBefore + HELD_CONNECTIONS, `${open} open, ${openBefore} before`);
  } finally {
    for (const client of clients) client.close();
  }
  await waitFor(
    async () => metricValue(await scrape(), "process_open_fds") < openBefore + HELD_CONNECTIONS / 2,
    "the server to close the connections' descriptors",
  );
  server.signal("SIGTERM");
  assert.equal((await server.exit()).code, 0);
  assertNoStackTrace(server.stderr.text);
});
