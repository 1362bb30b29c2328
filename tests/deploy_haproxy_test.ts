/**
 * Tests of deploy/haproxy.cfg: HAProxy accepts it, it has the shape the
 * README describes, and a real HAProxy running it (on free ports) follows a
 * replica's /readyz: up once it serves, down while it drains after SIGTERM.
 *
 * The tests of traffic through HAProxy with three replicas speaking the
 * PROXY protocol are in tests/replicas_test.ts.
 *
 * These tests need the `haproxy` command (`.ci/run` installs it from Debian).
 */

import assert from "node:assert/strict";
import { waitFor } from "../testing/deadlines.ts";
import { tempDir } from "../testing/files.ts";
import {
  HAPROXY_CONFIG as CONFIG,
  HAPROXY_HEALTH_DEADLINE_MS as HEALTH_DEADLINE_MS,
  HAPROXY_PORTS,
  HaproxyProcess,
  REPLICA_NAMES,
  runHaproxy,
} from "../testing/haproxy.ts";
import { ServerProcess } from "../testing/processes.ts";
import { encodeQueries, encodeQuery, STATUS_FOUND } from "../protocol.ts";

const { frontend: FRONTEND_PORT, replicas: REPLICA_PORTS, metrics: METRICS_PORTS } = HAPROXY_PORTS;

Deno.test("haproxy -c accepts deploy/haproxy.cfg", async () => {
  const { code, stdout, stderr } = await runHaproxy(["-c", "-f", CONFIG]);
  const output = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
  assert.equal(code, 0, output);
  assert.match(output, /Configuration file is valid/);
});

Deno.test("deploy/haproxy.cfg balances TCP over three replicas with PROXY v2, /readyz checks, retries and redispatch", async () => {
  const config = await Deno.readTextFile(CONFIG);
  const active = config.split("\n").filter((line) => !line.trimStart().startsWith("#")).join("\n");
  assert.match(active, /^\s+mode tcp$/m);
  assert.match(active, new RegExp(`^\\s+bind 127\\.0\\.0\\.1:${FRONTEND_PORT}$`, "m"));
  assert.match(active, /^\s+option httpchk GET \/readyz$/m);
  assert.match(active, /^\s+retries \d+$/m);
  assert.match(active, /^\s+option redispatch$/m);
  for (const timeout of ["connect", "client", "server", "check"]) {
    assert.match(active, new RegExp(`^\\s+timeout ${timeout} \\d+m?s$`, "m"), timeout);
  }
  const servers = [...active.matchAll(/^\s+server (\S+) (\S+) (.*)$/gm)];
  assert.deepEqual(
    servers.map(([, name, address, rest]) => [name, address, rest]),
    REPLICA_PORTS.map((port, i) => [
      `replica${i + 1}`,
      `127.0.0.1:${port}`,
      `send-proxy-v2 check port ${METRICS_PORTS[i]}`,
    ]),
  );
  // TLS termination with client certificates is there to switch on.
  assert.match(config, /^#\s+bind \S+ ssl crt \S+ ca-file \S+ verify required$/m);
});

/** Each server's status on HAProxy's stats page (CSV): UP, DOWN, ... */
async function serverStates(statsPort: number): Promise<Map<string, string>> {
  const response = await fetch(`http://127.0.0.1:${statsPort}/;csv`);
  const [head, ...rows] = (await response.text()).trim().split("\n");
  const columns = head.replace(/^# /, "").split(",");
  const [name, status] = [columns.indexOf("svname"), columns.indexOf("status")];
  return new Map(rows.map((row) => row.split(",")).map((cells) => [cells[name], cells[status]]));
}

Deno.test("HAProxy running deploy/haproxy.cfg marks a replica up while /readyz is 200 and down while it drains", async () => {
  await using dir = await tempDir("addrbook_deploy_haproxy_test_");
  const book = `${dir.path}/book.csv`;
  await Deno.writeTextFile(book, "email,name\nada@example.com,Ada Lovelace\n");
  await using haproxy = await HaproxyProcess.start(dir.path);
  /** HAProxy's view of its servers, from its stats page. */
  const states = async () => {
    const all = await serverStates(haproxy.statsPort).catch(() => new Map<string, string>());
    if (all.size === 0) await haproxy.command("show info"); // fails if HAProxy has stopped
    return all;
  };

  // HAProxy's view of a server changes with no event to await: look until it does.
  // It starts every server as up; checks to nobody mark them down.
  await waitFor(
    async () => {
      const all = await states();
      return REPLICA_NAMES.every((name) => /^DOWN/.test(all.get(name) ?? ""));
    },
    "HAProxy to mark the three replicas, none of them started, down",
    HEALTH_DEADLINE_MS,
  );

  // Only replica1 starts; the other two stay down.
  await using replica = await ServerProcess.start([
    "--data",
    book,
    "--port",
    String(haproxy.replicaPorts[0]),
    "--metrics-port",
    String(haproxy.metricsPorts[0]),
    "--shutdown-timeout",
    "60",
    "--write-timeout",
    "60",
  ]);
  await waitFor(
    async () => (await states()).get("replica1") === "UP",
    "HAProxy to mark replica1 up once its /readyz is 200",
    HEALTH_DEADLINE_MS,
  );
  const others = await states();
  assert.match(others.get("replica2") ?? "", /^DOWN/);
  assert.match(others.get("replica3") ?? "", /^DOWN/);

  // A client that sends many queries and reads none of the replies keeps replica1
  // draining after SIGTERM: its replies wait until the write timeout (60 s here).
  using held = await replica.connect();
  await held.write(encodeQuery("ada@example.com"));
  assert.equal((await held.readReply())?.status, STATUS_FOUND);
  const flood = encodeQueries(Array.from({ length: 300_000 }, () => "ada@example.com"));
  const flooding = held.write(flood).catch(() => {}); // never done while nothing is read
  replica.signal("SIGTERM");
  await replica.stderr.waitFor(/shutting down/);
  await waitFor(
    async () => /^DOWN/.test((await states()).get("replica1") ?? ""),
    "HAProxy to mark the draining replica1 down",
    HEALTH_DEADLINE_MS,
  );
  assert.doesNotMatch(replica.stderr.text, /shutdown complete/, "replica1 was still draining");
  held.close();
  await flooding;
});
