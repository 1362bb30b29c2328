/**
 * A microbenchmark of the access and limit checks the session layer runs:
 * nanoseconds per call of `ClientLimits.admit` (every query),
 * `AccessList.allows` (every connection), and the once-per-connection steps
 * (identity, table lookup, PROXY header), so that their share of a query's
 * cost can be judged against the server's throughput (BENCHMARKS.md).
 *
 * ```sh
 * deno run bench/access_limits_bench.ts
 * ```
 *
 * Each line is the median of several timed runs of a tight loop; the
 * loop's own cost (about a nanosecond) is included. Not a test: it asserts
 * nothing and takes a few seconds.
 *
 * @module
 */

import { AccessList, clientIdentity } from "../access/list.ts";
import { ClientLimits } from "../access/limits.ts";
import { ProxyHeaderParser } from "../access/proxy_header.ts";

const RUNS = 7;
const NEVER = { count: 1_000_000_000, periodMs: 1000 };
/** Keeps results alive, so that the compiler cannot drop the calls. */
let sink = 0;

/** Runs `body(iterations)` `RUNS` times and returns the median nanoseconds per iteration. */
function measure(iterations: number, body: (iterations: number) => void): number {
  body(Math.min(iterations, 10_000)); // warm up and let the JIT compile it
  const times: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    const start = performance.now();
    body(iterations);
    times.push(((performance.now() - start) * 1e6) / iterations);
  }
  return times.toSorted((a, b) => a - b)[RUNS >> 1];
}

function report(name: string, ns: number): void {
  console.log(`${name.padEnd(58)} ${ns.toFixed(1).padStart(8)} ns/call`);
}

function benchAdmit(): void {
  const now = performance.timeOrigin + performance.now();
  const all = ClientLimits.create({ rate: NEVER, found: NEVER, maxConnectionsPerClient: 1000 });
  const slot = all.connectionOpened("192.0.2.7", now);
  report(
    "admit a miss, rate and found limits on, same sub-bucket",
    measure(2_000_000, (n) => {
      for (let i = 0; i < n; i++) if (all.admit(slot, now, false) === "ok") sink++;
    }),
  );
  report(
    "admit a FOUND reply, both limits on",
    measure(2_000_000, (n) => {
      for (let i = 0; i < n; i++) if (all.admit(slot, now, true) === "ok") sink++;
    }),
  );
  const moving = ClientLimits.create({ rate: NEVER, found: NEVER });
  const movingSlot = moving.connectionOpened("192.0.2.8", now);
  let t = now;
  report(
    "admit, both on, time moving 0.1 ms per query",
    measure(2_000_000, (n) => {
      for (let i = 0; i < n; i++) if (moving.admit(movingSlot, t += 0.1, true) === "ok") sink++;
    }),
  );
  const capOnly = ClientLimits.create({ maxConnectionsPerClient: 10 });
  const capSlot = capOnly.connectionOpened("192.0.2.9", now);
  report(
    "admit, only the connection cap on (no window)",
    measure(2_000_000, (n) => {
      for (let i = 0; i < n; i++) if (capOnly.admit(capSlot, now, true) === "ok") sink++;
    }),
  );
  const table = ClientLimits.create({ rate: NEVER, maxConnectionsPerClient: 1000 });
  const names = Array.from({ length: 1024 }, (_, i) => `10.0.${i >> 8}.${i & 0xff}`);
  report(
    "connectionOpened + connectionClosed (hash, lookup, LRU)",
    measure(500_000, (n) => {
      for (let i = 0; i < n; i++) {
        const opened = table.connectionOpened(names[i & 1023], now);
        table.connectionClosed(opened);
        sink += opened;
      }
    }),
  );
  benchFullTable(names);
}

/** New clients on a full table: forgetting one at rest, or overflowing when none is. */
function benchFullTable(names: string[]): void {
  const start = performance.timeOrigin + performance.now();
  for (
    const [name, stepMs] of [["each idle client at rest", 10_000], ["none at rest", 0]] as const
  ) {
    const table = ClientLimits.create({ rate: { count: 5, periodMs: 1000 }, capacity: 512 });
    let t = start;
    report(
      `connectionOpened + admit + closed, table full, ${name}`,
      measure(500_000, (n) => {
        for (let i = 0; i < n; i++) {
          const opened = table.connectionOpened(names[i & 1023], t += stepMs);
          sink += table.admit(opened, t, false) === "ok" ? 1 : 0;
          table.connectionClosed(opened);
        }
      }),
    );
  }
}

function benchAllows(): void {
  const list = AccessList.parse("--allow", "10.0.0.0/8,192.168.0.0/16,2001:db8::/32,::1");
  const cases: [string, string][] = [
    ["allows, IPv4 address, 4-entry list", "192.168.7.1"],
    ["allows, IPv4 address not in the list", "198.51.100.7"],
    ["allows, IPv6 address, 4-entry list", "2001:db8:1:2::7"],
    ["allows, IPv4-mapped IPv6 address", "::ffff:10.1.2.3"],
  ];
  for (const [name, address] of cases) {
    report(
      name,
      measure(2_000_000, (n) => {
        for (let i = 0; i < n; i++) if (list.allows(address)) sink++;
      }),
    );
  }
  const long = AccessList.parse(
    "--allow",
    Array.from({ length: 1000 }, (_, i) => `10.${i >> 4}.${(i & 15) * 16}.0/24`).join(","),
  );
  report(
    "allows, IPv4 address, 1,000-entry list",
    measure(2_000_000, (n) => {
      for (let i = 0; i < n; i++) if (long.allows("10.40.64.9")) sink++;
    }),
  );
  for (const address of ["192.0.2.7", "2001:db8:1:2:aaaa:bbbb:cccc:dddd"]) {
    report(
      `clientIdentity(${address.includes(":") ? "IPv6" : "IPv4"})`,
      measure(1_000_000, (n) => {
        for (let i = 0; i < n; i++) sink += clientIdentity(address).length;
      }),
    );
  }
}

function benchProxyHeader(): void {
  const v1 = new TextEncoder().encode("PROXY TCP4 192.0.2.7 198.51.100.1 56324 8080\r\n");
  const v2 = Uint8Array.of(
    ...[0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a],
    ...[0x21, 0x11, 0x00, 0x0c, 192, 0, 2, 7, 198, 51, 100, 1, 0xdc, 0x04, 0x1f, 0x90],
  );
  for (
    const [name, header] of [["PROXY v1 TCP4 header", v1], ["PROXY v2 TCP4 header", v2]] as const
  ) {
    report(
      `new ProxyHeaderParser().push(${name})`,
      measure(200_000, (n) => {
        for (let i = 0; i < n; i++) sink += new ProxyHeaderParser().push(header)!.consumed;
      }),
    );
  }
}

if (import.meta.main) {
  console.log(`limits_bench on Deno ${Deno.version.deno}, V8 ${Deno.version.v8}`);
  benchAdmit();
  benchAllows();
  benchProxyHeader();
  if (sink === -1) console.log(sink);
}
