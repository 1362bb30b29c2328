import assert from "node:assert/strict";
import fc from "fast-check";
import { UsageError } from "../common/cli_args.ts";
import {
  type Allowance,
  ClientLimits,
  DEFAULT_CAPACITY,
  OVER_CONNECTION_LIMIT,
  parseAllowance,
  SUB_BUCKETS,
} from "./limits.ts";
import { withDeadline } from "../testing/deadlines.ts";

const SEED = 20261202;
const HOUR = 3600 * 1000;
/** A start time like a real clock's, so that sub-bucket numbers are large. */
const T0 = 1_764_633_600_000;

// --- N/PERIOD ---

Deno.test("parseAllowance: counts and periods with an optional multiple", () => {
  const cases: [string, Allowance][] = [
    ["100/s", { count: 100, periodMs: 1000 }],
    ["12/m", { count: 12, periodMs: 60_000 }],
    ["1000/24h", { count: 1000, periodMs: 86_400_000 }],
    ["5/10s", { count: 5, periodMs: 10_000 }],
    ["1/d", { count: 1, periodMs: 86_400_000 }],
    ["1000000000/365d", { count: 1_000_000_000, periodMs: 365 * 86_400_000 }],
  ];
  for (const [value, expected] of cases) {
    assert.deepEqual(parseAllowance("--rate-limit", value), expected);
  }
});

Deno.test("parseAllowance: bad values are usage errors naming the flag and the value", () => {
  const bad = [
    "0/s",
    "-1/s",
    "1/0s",
    "1/-1s",
    "1/x",
    "1/",
    "/s",
    "1.5/s",
    "1/1.5s",
    "1000000001/s",
    "1/366d",
    "1/9999999999d",
    "99999999999/s",
    "1/ s",
    " 1/s",
    "",
    "100",
    "100/S",
    "100/sec",
  ];
  for (const value of bad) {
    assert.throws(
      () => parseAllowance("--found-limit", value),
      (error: unknown) =>
        error instanceof UsageError &&
        error.message ===
          `--found-limit must be N/PERIOD with N from 1 to 1000000000 and PERIOD s, m, h or d with an optional count up to 365 days (for example 100/s, 12/m or 1000/24h), not "${value}".`,
      value,
    );
  }
});

// --- The rate limit ---

Deno.test("rate: a burst of N is allowed, the next refused, and allowance comes back after the period", () => {
  const limits = ClientLimits.create({ rate: { count: 3, periodMs: 1000 } });
  const slot = limits.connectionOpened("192.0.2.7", T0);
  assert.ok(slot >= 0);
  for (let i = 0; i < 3; i++) assert.equal(limits.admit(slot, T0, false), "ok");
  assert.equal(limits.admit(slot, T0, false), "rate_limited");
  assert.equal(limits.admit(slot, T0 + 999, false), "rate_limited");
  const late = T0 + 1000 + 1000 / SUB_BUCKETS;
  assert.equal(limits.admit(slot, late, false), "ok");
  limits.connectionClosed(slot);
});

Deno.test("rate: a refused query takes nothing, so a client that keeps asking still recovers", () => {
  const limits = ClientLimits.create({ rate: { count: 2, periodMs: 1000 } });
  const slot = limits.connectionOpened("192.0.2.7", T0);
  assert.equal(limits.admit(slot, T0, false), "ok");
  assert.equal(limits.admit(slot, T0, false), "ok");
  for (let t = T0; t < T0 + 1000; t += 10) {
    assert.equal(limits.admit(slot, t, false), "rate_limited");
  }
  assert.equal(limits.admit(slot, T0 + 1100, false), "ok");
  assert.equal(limits.admit(slot, T0 + 1100, false), "ok");
  assert.equal(limits.admit(slot, T0 + 1100, false), "rate_limited");
});

Deno.test("rate: a time older than one seen counts as the newest, never giving more", () => {
  const limits = ClientLimits.create({ rate: { count: 2, periodMs: 1000 } });
  const slot = limits.connectionOpened("192.0.2.7", T0);
  assert.equal(limits.admit(slot, T0 + 900, false), "ok");
  assert.equal(limits.admit(slot, T0, false), "ok");
  assert.equal(limits.admit(slot, T0 + 1500, false), "rate_limited");
  assert.equal(limits.admit(slot, T0 + 2000, false), "ok");
});

Deno.test("rate: never more than N in any period, and never refused once an exact log shows a gap of a sub-bucket (property)", () => {
  const scenario = fc.record({
    count: fc.integer({ min: 1, max: 20 }),
    periodMs: fc.constantFrom(1000, 10_000, 60_000, HOUR),
    // Gaps between queries as fractions of the period: bursts and pauses.
    gaps: fc.array(fc.oneof(fc.constant(0), fc.double({ min: 0, max: 0.3, noNaN: true })), {
      minLength: 1,
      maxLength: 300,
    }),
  });
  fc.assert(
    fc.property(scenario, ({ count, periodMs, gaps }) => {
      const limits = ClientLimits.create({ rate: { count, periodMs }, capacity: 1 });
      const slot = limits.connectionOpened("192.0.2.7", T0);
      const admitted: number[] = [];
      const width = periodMs / SUB_BUCKETS;
      let now = T0;
      for (const gap of gaps) {
        now = Math.floor(now + gap * periodMs);
        const inLastPeriod = admitted.filter((t) => t > now - periodMs).length;
        const inLastPeriodAndABucket = admitted.filter((t) => t > now - periodMs - width).length;
        if (limits.admit(slot, now, false) === "ok") {
          assert.ok(
            inLastPeriod < count,
            `admitted at ${now - T0} with ${inLastPeriod} in the period`,
          );
          admitted.push(now);
        } else {
          assert.ok(
            inLastPeriodAndABucket >= count,
            `refused at ${now - T0} with only ${inLastPeriodAndABucket} in the period and a bucket`,
          );
        }
      }
    }),
    { seed: SEED, numRuns: 300 },
  );
});

// --- The found limit ---

Deno.test("found: N FOUND replies, then every query is refused, misses included, until the period passes", () => {
  const limits = ClientLimits.create({
    found: { count: 2, periodMs: HOUR },
    rate: { count: 100, periodMs: HOUR },
  });
  const slot = limits.connectionOpened("192.0.2.7", T0);
  assert.equal(limits.admit(slot, T0, true), "ok");
  assert.equal(limits.admit(slot, T0, false), "ok"); // a miss: no FOUND taken
  assert.equal(limits.admit(slot, T0 + 1, true), "ok");
  for (let i = 0; i < 10; i++) {
    assert.equal(limits.admit(slot, T0 + 2, i % 2 === 0), "found_limit", "misses included");
  }
  assert.equal(limits.admit(slot, T0 + HOUR + HOUR / SUB_BUCKETS, true), "ok");
  // Four queries were admitted, so the found refusals took none of the rate allowance.
  const rateOnly = ClientLimits.create({ rate: { count: 2, periodMs: HOUR } });
  const other = rateOnly.connectionOpened("192.0.2.8", T0);
  assert.equal(rateOnly.admit(other, T0, true), "ok", "no found limit: a FOUND may be sent");
  assert.equal(rateOnly.admit(other, T0, true), "ok");
  assert.equal(rateOnly.admit(other, T0, true), "rate_limited");
});

Deno.test("found: two connections of one client that both look up a FOUND send only N", () => {
  const limits = ClientLimits.create({ found: { count: 1, periodMs: HOUR } });
  const a = limits.connectionOpened("192.0.2.7", T0);
  const b = limits.connectionOpened("192.0.2.7", T0);
  assert.equal(a, b, "two connections of one client share a slot");
  assert.equal(limits.admit(a, T0, true), "ok");
  assert.equal(limits.admit(b, T0, true), "found_limit");
  assert.equal(limits.admit(b, T0, false), "found_limit");
});

Deno.test("no limits configured: every query and every FOUND is allowed", () => {
  const limits = ClientLimits.create({ maxConnectionsPerClient: 1 });
  const slot = limits.connectionOpened("192.0.2.7", T0);
  for (let i = 0; i < 1000; i++) {
    assert.equal(limits.admit(slot, T0, true), "ok");
  }
});

// --- Connections per client ---

Deno.test("connections: one more than the cap is refused; a close makes room; clients are separate", () => {
  const limits = ClientLimits.create({ maxConnectionsPerClient: 2 });
  const first = limits.connectionOpened("192.0.2.7", T0);
  assert.equal(limits.connectionOpened("192.0.2.7", T0), first);
  assert.equal(limits.connections(first), 2);
  assert.equal(limits.connectionOpened("192.0.2.7", T0), OVER_CONNECTION_LIMIT);
  assert.equal(limits.connections(first), 2, "a refused connection is not counted");
  const other = limits.connectionOpened("192.0.2.8", T0);
  assert.ok(other >= 0 && other !== first);
  limits.connectionClosed(first);
  assert.equal(limits.connectionOpened("192.0.2.7", T0), first);
  limits.connectionClosed(first);
  limits.connectionClosed(first);
  assert.equal(limits.connections(first), 0);
  assert.throws(
    () => limits.connectionClosed(first),
    new RangeError(`Client slot ${first} has no open connection to close.`),
  );
  assert.ok(ClientLimits.create({}).connectionOpened("x", T0) >= 0, "no cap by default");
});

// --- The bounded table ---

/** Opens and closes one connection of each identity, using up a 1/h allowance. */
function visit(limits: ClientLimits, identities: string[], now = T0): void {
  for (const identity of identities) {
    const slot = limits.connectionOpened(identity, T0);
    assert.ok(slot >= 0, identity);
    limits.admit(slot, now, false);
    limits.connectionClosed(slot);
  }
}

/** Whether `identity` still has its allowance, that is, was forgotten or never used it. */
function hasAllowance(limits: ClientLimits, identity: string, now = T0): boolean {
  const slot = limits.connectionOpened(identity, T0);
  assert.ok(slot >= 0);
  const verdict = limits.admit(slot, now, false);
  limits.connectionClosed(slot);
  return verdict === "ok";
}

/** Long enough after T0 that every 1/h window of T0 counts nothing any more. */
const T1 = T0 + 2 * HOUR;

Deno.test("table: when full, the least recently seen client at rest is forgotten first", () => {
  const limits = ClientLimits.create({ rate: { count: 1, periodMs: HOUR }, capacity: 3 });
  visit(limits, ["a", "b", "c"]);
  visit(limits, ["a"]); // a is now the most recently seen
  const d = limits.connectionOpened("d", T1); // every client is at rest: b, the oldest, goes
  limits.connectionClosed(d);
  assert.equal(d, 1, "d took b's slot");
  assert.equal(limits.connectionOpened("a", T1), 0);
  assert.equal(limits.connectionOpened("c", T1), 2);
  assert.deepEqual(limits.census(), {
    tracked: 3,
    overflowConnections: 0,
    indexed: 3,
    distinct: 3,
    idle: 1,
    connections: 2,
  });
});

Deno.test("table: a limited client is never forgotten, however many identities come by", () => {
  const limits = ClientLimits.create({
    rate: { count: 5, periodMs: HOUR },
    found: { count: 1, periodMs: HOUR },
    capacity: 8,
  });
  const limited = limits.connectionOpened("192.0.2.7", T0);
  assert.equal(limits.admit(limited, T0, true), "ok");
  assert.equal(limits.admit(limited, T0, true), "found_limit");
  limits.connectionClosed(limited);
  // Cycle through a hundred times the table's size, each identity using its allowance.
  for (let i = 0; i < 800; i++) {
    const slot = limits.connectionOpened(`10.0.${i >> 8}.${i & 0xff}`, T0 + i);
    assert.ok(slot >= 0);
    limits.admit(slot, T0 + i, true);
    limits.connectionClosed(slot);
  }
  const again = limits.connectionOpened("192.0.2.7", T0 + 800);
  assert.equal(again, limited, "the limited client kept its slot");
  assert.equal(limits.admit(again, T0 + 800, false), "found_limit");
  limits.connectionClosed(again);
  assert.equal(hasAllowance(limits, "192.0.2.7", T1), true, "its allowance comes back in time");
});

Deno.test("table: an idle client at rest is forgotten before one whose counts still limit it", () => {
  const limits = ClientLimits.create({ rate: { count: 1, periodMs: HOUR }, capacity: 2 });
  visit(limits, ["limited"]); // used its allowance: not at rest for an hour
  limits.connectionClosed(limits.connectionOpened("quiet", T0)); // asked nothing: at rest
  const fresh = limits.connectionOpened("fresh", T0 + 60_000);
  assert.equal(fresh, 1, "fresh took quiet's slot, though limited was seen less recently");
  limits.connectionClosed(fresh);
  assert.equal(hasAllowance(limits, "limited", T0 + 60_000), false);
});

Deno.test("table: full of clients that still count, new clients share the overflow slot", () => {
  const limits = ClientLimits.create({
    rate: { count: 2, periodMs: HOUR },
    maxConnectionsPerClient: 2,
    capacity: 2,
  });
  visit(limits, ["a", "b"]);
  const [c, d] = [limits.connectionOpened("c", T0), limits.connectionOpened("d", T0)];
  assert.equal(c, 2, "the overflow slot is numbered after the table's");
  assert.equal(d, c, "clients that find no slot share one");
  assert.equal(limits.connectionOpened("e", T0), OVER_CONNECTION_LIMIT, "its connection cap too");
  assert.equal(limits.admit(c, T0, false), "ok");
  assert.equal(limits.admit(d, T0, false), "ok");
  assert.equal(limits.admit(d, T0, false), "rate_limited", "and one allowance");
  assert.equal(limits.census().overflowConnections, 2);
  limits.connectionClosed(c);
  limits.connectionClosed(d);
  assert.deepEqual(limits.census(), {
    tracked: 2,
    overflowConnections: 0,
    indexed: 2,
    distinct: 2,
    idle: 2,
    connections: 0,
  });
  assert.equal(limits.connectionOpened("c", T1), 0, "once a and b are at rest, c gets a slot");
});

Deno.test("table: a client with a connection open is never forgotten, even at rest", () => {
  const limits = ClientLimits.create({ maxConnectionsPerClient: 4, capacity: 2 });
  const a = limits.connectionOpened("a", T0);
  visit(limits, ["b"]);
  const c = limits.connectionOpened("c", T0); // forgets b, not a
  assert.equal(c, 1);
  assert.equal(limits.connectionOpened("d", T0), 2, "the overflow slot");
  assert.equal(limits.connectionOpened("a", T0), a);
  assert.deepEqual(limits.census(), {
    tracked: 2,
    overflowConnections: 1,
    indexed: 2,
    distinct: 2,
    idle: 0,
    connections: 3,
  });
});

/** FNV-1a, written out here, to show that the test's identities really collide. */
function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) {
    hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  }
  return hash;
}

Deno.test("table: identities whose hashes collide are still two clients", () => {
  const [x, y] = ["10.0.107.237", "10.2.219.40"];
  assert.equal(fnv1a(x), fnv1a(y));
  const limits = ClientLimits.create({
    rate: { count: 1, periodMs: HOUR },
    capacity: 4,
    hashSeed: 0,
  });
  const [slotX, slotY] = [limits.connectionOpened(x, T0), limits.connectionOpened(y, T0)];
  assert.notEqual(slotX, slotY);
  assert.equal(limits.admit(slotX, T0, false), "ok");
  assert.equal(limits.admit(slotY, T0, false), "ok", "y has an allowance of its own");
  assert.equal(limits.connectionOpened(x, T0), slotX);
  assert.equal(limits.connectionOpened(y, T0), slotY);
  for (const slot of [slotX, slotX, slotY, slotY]) limits.connectionClosed(slot);
  // Forget x, which is in the middle of its chain, then y; both come back afresh.
  visit(limits, ["p", "q", "r"], T1); // x and y are at rest by T1
  visit(limits, ["s"], T1);
  assert.deepEqual(limits.census(), {
    tracked: 4,
    overflowConnections: 0,
    indexed: 4,
    distinct: 4,
    idle: 4,
    connections: 0,
  });
  assert.equal(hasAllowance(limits, y, T1 + 2 * HOUR), true);
  assert.equal(hasAllowance(limits, x, T1 + 2 * HOUR), true);
  assert.equal(limits.census().distinct, 4);
});

Deno.test("table: long identities (certificate subjects) are told apart by their digest", () => {
  const limits = ClientLimits.create({ rate: { count: 1, periodMs: HOUR } });
  const base = `cert:CN=${"reporting-service.".repeat(5)}example`;
  const [one, two] = [`${base},O=One`, `${base},O=Two`];
  assert.ok(new TextEncoder().encode(one).length > 64);
  const slotOne = limits.connectionOpened(one, T0);
  const slotTwo = limits.connectionOpened(two, T0);
  assert.notEqual(slotOne, slotTwo);
  assert.equal(limits.connectionOpened(one, T0), slotOne);
  assert.equal(
    limits.connectionOpened("cert:é".repeat(20), T0),
    limits.connectionOpened("cert:é".repeat(20), T0),
  );
});

Deno.test("table: 100,000 clients at most, in well under 100 MB, the oldest forgotten first", () => {
  assert.ok(ClientLimits.tableBytes() < 40 * 1024 * 1024, `${ClientLimits.tableBytes()} bytes`);
  const limits = ClientLimits.create({
    rate: { count: 1, periodMs: HOUR },
    found: { count: 1, periodMs: HOUR },
  });
  assert.equal(limits.capacity, DEFAULT_CAPACITY);
  assert.equal(limits.shared.buffer.byteLength, ClientLimits.tableBytes());
  const identity = (i: number) => `10.${i >> 16}.${(i >> 8) & 0xff}.${i & 0xff}`;
  for (let i = 0; i <= DEFAULT_CAPACITY; i++) {
    const now = i === DEFAULT_CAPACITY ? T1 : T0; // the newest comes once the others are at rest
    const slot = limits.connectionOpened(identity(i), now);
    assert.ok(slot >= 0);
    limits.admit(slot, now, false);
    limits.connectionClosed(slot);
  }
  assert.equal(limits.trackedClients, DEFAULT_CAPACITY);
  const census = limits.census();
  assert.equal(census.indexed, DEFAULT_CAPACITY);
  assert.equal(census.distinct, DEFAULT_CAPACITY);
  assert.equal(census.idle, DEFAULT_CAPACITY);
  assert.equal(limits.connectionOpened(identity(0), T1), 1, "the oldest was forgotten");
  assert.equal(
    hasAllowance(limits, identity(DEFAULT_CAPACITY), T1),
    false,
    "the newest is remembered",
  );
});

Deno.test("create: bad capacities and limits are range errors", () => {
  assert.throws(() => ClientLimits.create({ capacity: 0 }), RangeError);
  assert.throws(() => ClientLimits.create({ capacity: 1.5 }), RangeError);
  assert.throws(() => ClientLimits.create({ maxConnectionsPerClient: -1 }), RangeError);
  assert.throws(() => ClientLimits.create({ rate: { count: 0, periodMs: 1000 } }), RangeError);
  assert.throws(() => ClientLimits.create({ found: { count: 1, periodMs: 0 } }), RangeError);
});

Deno.test("attach: a second view of the shared table sees the same clients and counts", () => {
  const limits = ClientLimits.create({ rate: { count: 1, periodMs: HOUR } });
  const view = ClientLimits.attach(structuredClone(limits.shared));
  const slot = limits.connectionOpened("192.0.2.7", T0);
  assert.equal(view.connectionOpened("192.0.2.7", T0), slot);
  assert.equal(view.admit(slot, T0, false), "ok");
  assert.equal(limits.admit(slot, T0, false), "rate_limited");
  assert.equal(view.trackedClients, 1);
});

// --- Two real worker threads on one table ---

const WORKER_SOURCE = (moduleUrl: string) => `
import { ClientLimits } from ${JSON.stringify(moduleUrl)};
self.onmessage = (event) => {
  const { shared, mode, rounds, now, step, names, gate, workers } = event.data;
  const limits = ClientLimits.attach(shared);
  // Start together: each worker waits (bounded) until every worker is ready.
  Atomics.add(gate, 0, 1);
  Atomics.notify(gate, 0);
  for (let i = 0; i < 1000 && Atomics.load(gate, 0) < workers; i++) {
    Atomics.wait(gate, 0, Atomics.load(gate, 0), 10);
  }
  if (mode === "queries") {
    const slot = limits.connectionOpened("198.51.100.7", now);
    let queries = 0, founds = 0;
    for (let i = 0; i < rounds; i++) {
      // Every other query finds its address.
      const found = i % 2 === 0;
      if (limits.admit(slot, now, found) === "ok") {
        queries++;
        if (found) founds++;
      }
    }
    limits.connectionClosed(slot);
    self.postMessage({ queries, founds });
  } else {
    let opened = 0;
    for (let i = 0; i < rounds; i++) {
      const slot = limits.connectionOpened(names[i % names.length], now + i * step);
      if (slot >= 0) {
        opened++;
        limits.admit(slot, now + i * step, false);
        limits.connectionClosed(slot);
      }
    }
    self.postMessage({ opened });
  }
};
`;

async function runWorkers(
  messages: Record<string, unknown>[],
): Promise<Record<string, number>[]> {
  const gate = new Int32Array(new SharedArrayBuffer(4));
  const dir = await Deno.makeTempDir({ prefix: "access_limits_test_" });
  const workers: Worker[] = [];
  try {
    const path = `${dir}/hammer.js`;
    await Deno.writeTextFile(
      path,
      WORKER_SOURCE(new URL("./limits.ts", import.meta.url).href),
    );
    for (let i = 0; i < messages.length; i++) {
      workers.push(new Worker(new URL(`file://${path}`), { type: "module" }));
    }
    const done = Promise.all(
      workers.map((worker, i) =>
        new Promise<Record<string, number>>((resolve, reject) => {
          worker.onmessage = (event) => resolve(event.data);
          worker.onerror = (event) => {
            event.preventDefault();
            reject(new Error(event.message));
          };
          worker.postMessage({ ...messages[i], gate, workers: messages.length });
        })
      ),
    );
    return await withDeadline(done, "the workers to finish");
  } finally {
    for (const worker of workers) worker.terminate();
    await Deno.remove(dir, { recursive: true });
  }
}

// The workers start together and each runs far longer than it takes to start a thread, so their
// calls overlap; how they interleave is up to the scheduler, and the totals must hold for any.
Deno.test("threads: two workers hammering one client's allowance never get more than N in total", async () => {
  for (let round = 0; round < 2; round++) {
    const limits = ClientLimits.create({
      rate: { count: 60_000, periodMs: HOUR },
      found: { count: 20_000, periodMs: HOUR },
    });
    const message = { shared: limits.shared, mode: "queries", rounds: 100_000, now: T0 };
    const results = await runWorkers([message, message]);
    const queries = results.reduce((sum, result) => sum + result.queries, 0);
    const founds = results.reduce((sum, result) => sum + result.founds, 0);
    assert.equal(founds, 20_000);
    // Once the found limit is reached every query is refused, so the rate allowance is not used up.
    assert.ok(queries >= 20_000 && queries <= 60_000, `${queries} queries`);
    const slot = limits.connectionOpened("198.51.100.7", T0);
    assert.equal(limits.admit(slot, T0, false), "found_limit");
  }
  for (let round = 0; round < 2; round++) {
    const rateOnly = ClientLimits.create({ rate: { count: 80_000, periodMs: HOUR } });
    const message = { shared: rateOnly.shared, mode: "queries", rounds: 100_000, now: T0 };
    const results = await runWorkers([message, message]);
    assert.equal(results[0].queries + results[1].queries, 80_000, JSON.stringify(results));
  }
});

Deno.test("threads: two workers opening and closing many clients keep the table whole", async () => {
  const limits = ClientLimits.create({ rate: { count: 5, periodMs: HOUR }, capacity: 500 });
  const names = Array.from({ length: 3000 }, (_, i) => `192.0.${i >> 8}.${i & 0xff}`);
  const message = (offset: number) => ({
    shared: limits.shared,
    mode: "clients",
    rounds: 30_000,
    now: T0,
    step: HOUR / 100, // so that clients come to rest and the table churns
    names: [...names.slice(offset), ...names.slice(0, offset)],
  });
  const results = await runWorkers([message(0), message(1500)]);
  assert.deepEqual(results, [{ opened: 30_000 }, { opened: 30_000 }]);
  assert.deepEqual(limits.census(), {
    tracked: 500,
    overflowConnections: 0,
    indexed: 500,
    distinct: 500,
    idle: 500,
    connections: 0,
  });
});

Deno.test("refusalText: one sentence per limit, naming its numbers and its flag", () => {
  const limits = ClientLimits.create({
    rate: parseAllowance("--rate-limit", "12/m"),
    found: parseAllowance("--found-limit", "1000/24h"),
    maxConnectionsPerClient: 10,
  });
  assert.equal(
    limits.refusalText("rate_limited"),
    "This client asked more than 12 queries in 1 min (--rate-limit); later queries are answered once it allows.",
  );
  assert.equal(
    limits.refusalText("found_limit"),
    "This client received 1000 found replies in 1 d (--found-limit); every query is refused until it allows.",
  );
  assert.equal(
    limits.refusalText("client_connections"),
    "This client already has 10 connections open (--max-connections-per-client).",
  );
  const short = ClientLimits.create({ rate: parseAllowance("--rate-limit", "5/10s") });
  assert.match(short.refusalText("rate_limited"), / 5 queries in 10 s /);
  assert.match(
    ClientLimits.create({ rate: parseAllowance("--rate-limit", "1/90m") }).refusalText(
      "rate_limited",
    ),
    / in 90 min /,
  );
});

Deno.test("admitEntries gives a search the entries still allowed, then refuses every query", () => {
  const limits = ClientLimits.create({
    rate: { count: 3, periodMs: 60_000 },
    found: { count: 5, periodMs: 60_000 },
    hashSeed: 1,
  });
  const slot = limits.connectionOpened("192.0.2.1", T0);
  assert.equal(limits.admitEntries(slot, 0, 3), 3, "three of five");
  assert.equal(limits.admitEntries(slot, 1, 4), 2, "the two left of five");
  assert.equal(limits.admitEntries(slot, 2, 1), "found_limit", "over the found limit: refused");
  assert.equal(limits.admit(slot, 3, false), "found_limit", "misses too");
  const rate = ClientLimits.create({ rate: { count: 1, periodMs: 60_000 }, hashSeed: 1 });
  const other = rate.connectionOpened("192.0.2.2", T0);
  assert.equal(rate.admitEntries(other, 0, 7), 7, "no found limit: all of them");
  assert.equal(rate.admitEntries(other, 1, 0), "rate_limited", "a search is one query");
  const none = ClientLimits.create({ maxConnectionsPerClient: 2, hashSeed: 1 });
  assert.equal(none.admitEntries(none.connectionOpened("192.0.2.3", T0), 0, 9), 9);
});
