import assert from "node:assert/strict";
import fc from "fast-check";
import {
  batchAt,
  type BenchOptions,
  type BenchResult,
  bucketIndex,
  bucketRange,
  buildQueryFrames,
  createHistogram,
  createTally,
  DEFAULT_CONNECTIONS,
  DEFAULT_DURATION_S,
  DEFAULT_ENTRIES,
  DEFAULT_PIPELINE,
  DEFAULT_THREADS,
  formatCount,
  formatMicros,
  formatResult,
  HISTOGRAM_BUCKETS,
  HISTOGRAM_MAX_VALUE,
  HISTOGRAM_SUB_BITS,
  LISTENING_LINE,
  mergeHistogram,
  mergeTally,
  parseBenchArgs,
  parseKeys,
  percentile,
  recordValue,
  sampleKeys,
  shuffleKeys,
  splitConnections,
  summarize,
  syntheticKeys,
  tallyError,
  tallyQueries,
  UsageError,
} from "./bench.ts";
import { BenchError } from "./bench.ts";
import { decodeUtf8, FrameDecoder, MAX_QUERY_BYTES, TYPE_QUERY } from "./protocol.ts";

const BENCH = `${import.meta.dirname}/bench.ts`;
const SERVER = `${import.meta.dirname}/server.ts`;
const BENCH_PERMISSIONS = [
  "--allow-net",
  "--allow-read",
  "--allow-write",
  "--allow-run",
  "--allow-env",
  "--unstable-net",
];

// ---------------------------------------------------------------------------
// Histogram

Deno.test("bucketIndex puts every value in a bucket whose range holds it", () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: HISTOGRAM_MAX_VALUE }), (value) => {
      const index = bucketIndex(value);
      assert.ok(index >= 0 && index < HISTOGRAM_BUCKETS);
      const [low, high] = bucketRange(index);
      assert.ok(low <= value && value <= high, `${value} not in [${low}, ${high}]`);
    }),
  );
});

Deno.test("bucketRange keeps buckets within 1/64 of their values, and exact below 128", () => {
  for (let value = 0; value < 2 << HISTOGRAM_SUB_BITS; value++) {
    assert.deepEqual(bucketRange(bucketIndex(value)), [value, value]);
  }
  fc.assert(
    fc.property(fc.integer({ min: 128, max: HISTOGRAM_MAX_VALUE }), (value) => {
      const [low, high] = bucketRange(bucketIndex(value));
      assert.ok(high - low + 1 <= low / (1 << HISTOGRAM_SUB_BITS));
    }),
  );
});

Deno.test("bucketIndex is contiguous: each bucket starts right after the previous one", () => {
  for (let index = 1; index <= bucketIndex(HISTOGRAM_MAX_VALUE); index++) {
    assert.equal(bucketRange(index)[0], bucketRange(index - 1)[1] + 1, `bucket ${index}`);
  }
  assert.equal(bucketRange(bucketIndex(HISTOGRAM_MAX_VALUE))[1], HISTOGRAM_MAX_VALUE);
});

Deno.test("percentile is exact for small values", () => {
  const histogram = createHistogram();
  for (let value = 1; value <= 100; value++) recordValue(histogram, value);
  assert.equal(percentile(histogram, 0), 1);
  assert.equal(percentile(histogram, 50), 50);
  assert.equal(percentile(histogram, 99), 99);
  assert.equal(percentile(histogram, 99.9), 100);
  assert.equal(percentile(histogram, 100), 100);
});

Deno.test("percentile is within 1/64 of the exact value for large ones", () => {
  const histogram = createHistogram();
  const count = 100_000;
  for (let value = 1; value <= count; value++) recordValue(histogram, value * 37);
  for (const p of [50, 90, 99, 99.9]) {
    const exact = Math.ceil((p / 100) * count) * 37;
    const got = percentile(histogram, p);
    assert.ok(got >= exact && got <= exact * (1 + 1 / 64), `p${p}: ${got} vs ${exact}`);
  }
  assert.equal(percentile(histogram, 100), count * 37);
});

Deno.test("percentile of an empty histogram is 0, and a bad percentile throws RangeError", () => {
  const histogram = createHistogram();
  assert.equal(percentile(histogram, 99), 0);
  assert.throws(() => percentile(histogram, 101), RangeError);
  assert.throws(() => percentile(histogram, NaN), RangeError);
});

Deno.test("recordValue rounds, clamps to the range, and tracks min, max and sum", () => {
  const histogram = createHistogram();
  recordValue(histogram, 10.4);
  recordValue(histogram, -5);
  recordValue(histogram, 2 ** 40);
  assert.equal(histogram.total, 3);
  assert.equal(histogram.min, 0);
  assert.equal(histogram.max, HISTOGRAM_MAX_VALUE);
  assert.equal(histogram.sum, 10 + HISTOGRAM_MAX_VALUE);
  assert.equal(histogram.counts.length, HISTOGRAM_BUCKETS);
});

Deno.test("mergeHistogram gives the same histogram as recording everything in one", () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 0, max: 10_000_000 })),
      fc.array(fc.integer({ min: 0, max: 10_000_000 })),
      (left, right) => {
        const a = createHistogram();
        const b = createHistogram();
        const both = createHistogram();
        for (const value of left) recordValue(a, value), recordValue(both, value);
        for (const value of right) recordValue(b, value), recordValue(both, value);
        mergeHistogram(a, b);
        assert.deepEqual(a, both);
      },
    ),
  );
});

// ---------------------------------------------------------------------------
// Formatting

Deno.test("formatMicros picks µs, ms or s and never shows 1000 of a unit", () => {
  assert.equal(formatMicros(0), "0 µs");
  assert.equal(formatMicros(85), "85 µs");
  assert.equal(formatMicros(999.4), "999 µs");
  assert.equal(formatMicros(1240), "1.24 ms");
  assert.equal(formatMicros(12_345), "12.3 ms");
  assert.equal(formatMicros(999_400), "999 ms");
  assert.equal(formatMicros(999_600), "1.00 s");
  assert.equal(formatMicros(2_500_000), "2.50 s");
});

Deno.test("formatCount separates thousands", () => {
  assert.equal(formatCount(1234567), "1,234,567");
  assert.equal(formatCount(12), "12");
});

// ---------------------------------------------------------------------------
// Command line

Deno.test("parseBenchArgs gives the defaults and a server of its own without flags", () => {
  assert.deepEqual(
    parseBenchArgs([]),
    {
      hostname: undefined,
      port: undefined,
      keysFile: undefined,
      entries: DEFAULT_ENTRIES,
      connections: DEFAULT_CONNECTIONS,
      pipeline: DEFAULT_PIPELINE,
      durationSeconds: DEFAULT_DURATION_S,
      threads: DEFAULT_THREADS,
      reconnect: false,
      json: false,
      serverArgs: [],
    } satisfies BenchOptions,
  );
});

Deno.test("parseBenchArgs reads every flag", () => {
  const options = parseBenchArgs([
    "--connections",
    "8",
    "--pipeline=16",
    "--duration",
    "0.5",
    "--threads",
    "2",
    "--entries",
    "500",
    "--json",
    "--server-arg=--workers=2",
    "--server-arg=--max-connections=10",
  ]);
  assert.ok(options !== "help");
  assert.equal(options.connections, 8);
  assert.equal(options.pipeline, 16);
  assert.equal(options.durationSeconds, 0.5);
  assert.equal(options.threads, 2);
  assert.equal(options.entries, 500);
  assert.equal(options.json, true);
  assert.deepEqual(options.serverArgs, ["--workers=2", "--max-connections=10"]);
});

Deno.test("parseBenchArgs targets 127.0.0.1 when only --port is given", () => {
  const options = parseBenchArgs(["--port", "9000", "--keys", "k.txt", "--reconnect"]);
  assert.ok(options !== "help");
  assert.equal(options.hostname, "127.0.0.1");
  assert.equal(options.port, 9000);
  assert.equal(options.keysFile, "k.txt");
  assert.equal(options.reconnect, true);
});

Deno.test("parseBenchArgs returns help for --help and -h", () => {
  assert.equal(parseBenchArgs(["--help"]), "help");
  assert.equal(parseBenchArgs(["-h", "--connections", "nonsense"]), "help");
});

Deno.test("parseBenchArgs throws UsageError for bad flags and values", () => {
  const bad: [string[], RegExp][] = [
    [["--bogus"], /bogus/],
    [["extra"], /extra/],
    [["--connections", "0"], /--connections must be a whole number from 1/],
    [["--connections", "1.5"], /"1.5"/],
    [["--pipeline", "-3"], /--pipeline/],
    [["--duration", "0"], /--duration/],
    [["--duration", "soon"], /"soon"/],
    [["--threads", "65"], /--threads/],
    [["--entries", "0"], /--entries/],
    [["--port", "70000"], /--port/],
    [["--host", "example.net"], /--host needs --port/],
    [["--keys", "k.txt"], /--keys needs --port/],
    [["--port", "9000", "--server-arg=--workers=2"], /--server-arg is for the server bench starts/],
    [["--server-arg=--port=1"], /--port is set by bench/],
    [["--server-arg=--data=b.csv"], /--data is set by bench/],
    [["--server-arg", "--workers=2"], /server-arg/],
    [["--reconnect", "--pipeline", "4"], /--reconnect/],
    [["--threads", "4", "--connections", "2"], /--threads 4 is more than --connections 2/],
  ];
  for (const [args, message] of bad) {
    assert.throws(() => parseBenchArgs(args), (error: Error) => {
      assert.ok(error instanceof UsageError, `${args.join(" ")}: ${error}`);
      assert.match(error.message, message, args.join(" "));
      return true;
    });
  }
});

// ---------------------------------------------------------------------------
// Keys and frames

Deno.test("sampleKeys takes every 7th index below twice the entries, half of them missing", () => {
  const keys = sampleKeys(1000, (i) => `in${i}`, (i) => `out${i}`);
  assert.equal(keys.length, Math.ceil(2000 / 7));
  assert.equal(keys.filter((key) => key.startsWith("in")).length, Math.ceil(1000 / 7));
  assert.deepEqual(keys.slice(0, 3), ["in0", "in7", "in14"]);
  assert.equal(keys.at(-1), "out1995");
});

Deno.test("syntheticKeys are user{i}@example.com, as compare-redis.py queries", () => {
  assert.deepEqual(syntheticKeys(10), [
    "user0@example.com",
    "user7@example.com",
    "user14@example.com",
  ]);
});

Deno.test("shuffleKeys reorders the keys the same way for the same seed, losing none", () => {
  const keys = syntheticKeys(1000);
  const shuffled = shuffleKeys(keys, 1);
  assert.deepEqual(shuffled, shuffleKeys(keys, 1));
  assert.notDeepEqual(shuffled, keys);
  assert.notDeepEqual(shuffled, shuffleKeys(keys, 2));
  assert.deepEqual([...shuffled].sort(), [...keys].sort());
  const firstHalf = shuffled.slice(0, shuffled.length / 2);
  const present = firstHalf.filter((key) => Number(/\d+/.exec(key)?.[0]) < 1000).length;
  assert.ok(present > firstHalf.length / 4 && present < (firstHalf.length * 3) / 4);
});

Deno.test("parseKeys trims lines and skips blank ones", () => {
  assert.deepEqual(parseKeys(" a@example.com\r\n\r\nb@example.com  \n\n", "keys.txt"), [
    "a@example.com",
    "b@example.com",
  ]);
});

Deno.test("parseKeys rejects a key over the query limit by line number, not by content", () => {
  const long = `${"x".repeat(MAX_QUERY_BYTES)}@example.com`;
  assert.throws(() => parseKeys(`a@example.com\n${long}\n`, "keys.txt"), (error: Error) => {
    assert.ok(error instanceof BenchError);
    assert.match(error.message, /^Line 2 of keys.txt is \d+ bytes long/);
    assert.ok(!error.message.includes("xxx"));
    return true;
  });
});

Deno.test("parseKeys rejects a file without keys", () => {
  assert.throws(() => parseKeys("\n  \n", "empty.txt"), /empty.txt holds no keys/);
});

/** Decodes the emails of the query frames in `bytes`. */
function decodeQueries(bytes: Uint8Array): string[] {
  const decoder = new FrameDecoder({ type: TYPE_QUERY, maxPayload: MAX_QUERY_BYTES });
  decoder.push(bytes);
  const emails: string[] = [];
  for (let payload = decoder.next(); payload !== null; payload = decoder.next()) {
    emails.push(decodeUtf8(payload) ?? "<not UTF-8>");
  }
  assert.equal(decoder.buffered, 0);
  return emails;
}

Deno.test("buildQueryFrames makes every batch one contiguous slice, wrapping around the keys", () => {
  const keys = ["a@x.org", "bé@x.org", "c@x.org"];
  const frames = buildQueryFrames(keys, 2);
  assert.equal(frames.keyCount, 3);
  assert.deepEqual(decodeQueries(batchAt(frames, 0, 2)), ["a@x.org", "bé@x.org"]);
  assert.deepEqual(decodeQueries(batchAt(frames, 2, 2)), ["c@x.org", "a@x.org"]);
});

Deno.test("buildQueryFrames cycles the keys when a batch is longer than the key list", () => {
  const frames = buildQueryFrames(["a@x.org", "b@x.org"], 5);
  assert.deepEqual(decodeQueries(batchAt(frames, 1, 5)), [
    "b@x.org",
    "a@x.org",
    "b@x.org",
    "a@x.org",
    "b@x.org",
  ]);
});

Deno.test("splitConnections spreads connections over threads as evenly as possible", () => {
  assert.deepEqual(splitConnections(50, 1), [50]);
  assert.deepEqual(splitConnections(10, 4), [3, 3, 2, 2]);
  assert.deepEqual(splitConnections(4, 4), [1, 1, 1, 1]);
});

// ---------------------------------------------------------------------------
// Tallies and results

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
  assert.deepEqual(a.statuses, [3, 4, 0, 0, 1]);
  assert.equal(tallyQueries(a), 8);
  assert.equal(a.elapsedMs, 1200);
  assert.equal(a.errors, 1);
  assert.deepEqual(a.errorMessages, { reset: 1 });
  assert.equal(a.latency.total, 2);
});

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

Deno.test("LISTENING_LINE finds the address in text and JSON log lines", () => {
  const text =
    "2026-01-01T00:00:00.000Z info loaded 5 entries from b.csv; listening on 127.0.0.1:4000";
  assert.deepEqual(LISTENING_LINE.exec(text)?.slice(1), [undefined, "127.0.0.1", "4000"]);
  const json = '{"level":"info","msg":"loaded 5 entries; listening on 127.0.0.1:4001","workers":1}';
  assert.deepEqual(LISTENING_LINE.exec(json)?.slice(1), [undefined, "127.0.0.1", "4001"]);
  const v6 = "info listening on tls://[::1]:4002 workers=1";
  assert.deepEqual(LISTENING_LINE.exec(v6)?.slice(1), ["tls://", "[::1]", "4002"]);
});

// ---------------------------------------------------------------------------
// Real runs

interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
}

async function runBench(args: string[]): Promise<Outcome> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...BENCH_PERMISSIONS, BENCH, ...args],
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

function parseResult(outcome: Outcome): BenchResult {
  assert.equal(outcome.code, 0, `exit ${outcome.code}: ${outcome.stderr}${outcome.stdout}`);
  const lines = outcome.stdout.trim().split("\n");
  assert.equal(lines.length, 1, "--json prints one line");
  return JSON.parse(lines[0]);
}

/** Runs bench for a second on 4 connections with `args`, and parses its `--json` result. */
async function runBenchJson(args: string[]): Promise<BenchResult> {
  return parseResult(await runBench(["--duration", "1", "--connections", "4", ...args, "--json"]));
}

/** Runs bench for half a second against the server on `port`, asking the keys in the file `keys`. */
function runBenchOnKeys(port: number, keys: string, connections: number): Promise<Outcome> {
  return runBench([
    "--port",
    String(port),
    "--keys",
    keys,
    "--duration",
    "0.5",
    "--connections",
    String(connections),
    "--json",
  ]);
}

function assertHealthyRun(result: BenchResult): void {
  assert.ok(result.queries > 0);
  assert.ok(result.found > 0);
  assert.ok(result.notFound > 0);
  assert.equal(result.found + result.notFound, result.queries);
  assert.equal(result.other, 0);
  assert.equal(result.errors, 0, JSON.stringify(result.errorMessages));
  assert.deepEqual(result.errorMessages, {});
  assert.ok(result.elapsedSeconds > 0);
  assert.ok(result.queriesPerSecond > 0);
  const { p50, p99, p999, max, mean } = result.latencyUs;
  assert.ok(0 <= p50 && p50 <= p99 && p99 <= p999 && p999 <= max && mean <= max);
}

Deno.test("bench starts its own server, drives it and prints one JSON result", async () => {
  const result = await runBenchJson(["--entries", "1000"]);
  assert.deepEqual(Object.keys(result).sort(), [
    "connections",
    "durationSeconds",
    "elapsedSeconds",
    "errorMessages",
    "errors",
    "found",
    "keys",
    "latencyUs",
    "notFound",
    "other",
    "otherByStatus",
    "pipeline",
    "queries",
    "queriesPerSecond",
    "reconnect",
    "server",
    "target",
    "threads",
  ]);
  assert.match(result.target, /^127\.0\.0\.1:\d+$/);
  assert.deepEqual(result.server, { entries: 1000, args: [] });
  assert.equal(result.connections, 4);
  assert.equal(result.pipeline, 1);
  assert.equal(result.threads, 1);
  assert.equal(result.reconnect, false);
  assert.equal(result.durationSeconds, 1);
  assert.equal(result.keys, Math.ceil(2000 / 7));
  assertHealthyRun(result);
});

Deno.test("bench opens a fresh connection per query with --reconnect", async () => {
  const result = await runBenchJson(["--entries", "1000", "--reconnect"]);
  assert.equal(result.reconnect, true);
  assertHealthyRun(result);
});

Deno.test("bench pipelines on several threads and passes flags to its server", async () => {
  const result = await runBenchJson([
    "--pipeline",
    "8",
    "--threads",
    "2",
    "--entries",
    "1000",
    "--server-arg=--workers=2",
  ]);
  assert.equal(result.threads, 2);
  assert.equal(result.queries % 8, 0, "whole batches of 8");
  assert.deepEqual(result.server?.args, ["--workers=2"]);
  assertHealthyRun(result);
});

Deno.test("bench prints a header and a result block with units in text mode", async () => {
  const outcome = await runBench(["--duration", "0.5", "--connections", "2", "--entries", "100"]);
  assert.equal(outcome.code, 0, outcome.stderr);
  assert.match(
    outcome.stdout,
    /^addrbook bench: 127\.0\.0\.1:\d+ \(started by bench: 100 entries\)/,
  );
  assert.match(outcome.stdout, /connections 2, pipeline 1, duration 0.5 s, threads 1/);
  assert.match(outcome.stdout, /throughput {2}[\d,]+ queries\/s/);
  assert.match(outcome.stdout, /latency {5}p50 [\d.]+ (µs|ms), p99 [\d.]+ (µs|ms|s), p99\.9/);
  assert.match(outcome.stdout, /replies {5}FOUND [\d,]+, NOT_FOUND [\d,]+, other 0/);
  assert.match(outcome.stdout, /errors {6}0/);
});

/** A server started by a test, on a book of user{i}@example.com entries. */
async function startOwnServer(dir: string, entries: number) {
  const book = `${dir}/book.csv`;
  const rows = Array.from({ length: entries }, (_, i) => `user${i}@example.com,User ${i}\n`);
  await Deno.writeTextFile(book, `email,name\n${rows.join("")}`);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", "--allow-read", SERVER, "--port", "0", "--data", book],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const lines = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  let match: RegExpExecArray | null = null;
  while (match === null) {
    const { value, done } = await lines.read();
    if (done) throw new Error(`The server exited before listening: ${seen}`);
    seen += value;
    match = LISTENING_LINE.exec(seen);
  }
  const drained = (async () => {
    while (!(await lines.read()).done) { /* drain */ }
  })();
  return {
    port: Number(match[3]),
    /** Kills it at once, as a crash would. */
    kill() {
      child.kill("SIGKILL");
    },
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch {
        // Killed already.
      }
      await child.status;
      await drained;
    },
  };
}

/**
 * Runs `body` against a server of `entries` entries (see {@linkcode startOwnServer})
 * in a fresh temp dir; stops the server and removes the dir however the body ends.
 */
async function withOwnServer(
  entries: number,
  body: (server: OwnServer, dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir();
  const server = await startOwnServer(dir, entries);
  try {
    await body(server, dir);
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

type OwnServer = Awaited<ReturnType<typeof startOwnServer>>;

Deno.test("bench drives a running server given by --host and --port", async () => {
  await withOwnServer(1000, async (server, dir) => {
    const synthetic = parseResult(
      await runBench([
        "--host",
        "127.0.0.1",
        "--port",
        String(server.port),
        "--entries",
        "1000",
        "--duration",
        "1",
        "--connections",
        "4",
        "--json",
      ]),
    );
    assert.equal(synthetic.target, `127.0.0.1:${server.port}`);
    assert.equal(synthetic.server, null);
    assertHealthyRun(synthetic);

    const keys = `${dir}/keys.txt`;
    await Deno.writeTextFile(keys, "user1@example.com\nnobody@example.com\n");
    const fromFile = parseResult(await runBenchOnKeys(server.port, keys, 2));
    assert.equal(fromFile.keys, 2);
    assertHealthyRun(fromFile);
  });
});

Deno.test("bench exits 1 when a server's replies are not all FOUND or NOT_FOUND", async () => {
  await withOwnServer(10, async (server, dir) => {
    const keys = `${dir}/keys.txt`;
    await Deno.writeTextFile(keys, "user1@example.com\nnot-an-email\n");
    const outcome = await runBenchOnKeys(server.port, keys, 1);
    assert.equal(outcome.code, 1);
    const result: BenchResult = JSON.parse(outcome.stdout);
    assert.ok(result.otherByStatus.BAD_REQUEST > 0);
    assert.equal(result.errors, 0);
  });
});

Deno.test("bench says clearly, without a stack trace, when the target cannot be reached", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const outcome = await runBench(["--port", String(port), "--duration", "1"]);
  assert.equal(outcome.code, 1);
  assert.equal(outcome.stdout, "");
  assert.match(outcome.stderr, new RegExp(`^bench: Cannot reach 127\\.0\\.0\\.1:${port}: `));
  assert.equal(outcome.stderr.trim().split("\n").length, 1);
  assert.doesNotMatch(outcome.stderr, /\bat /);
});

Deno.test("bench says why when its server will not start, and exits 1", async () => {
  const outcome = await runBench([
    "--duration",
    "1",
    "--entries",
    "10",
    "--server-arg=--workers=0",
  ]);
  assert.equal(outcome.code, 1);
  assert.match(
    outcome.stderr,
    /^bench: The server exited with status 2 before listening:\n {2}server: --workers must be/,
  );
  assert.doesNotMatch(outcome.stderr, /Usage:/);
});

Deno.test("bench counts errors, ends and exits 1 when its target dies mid-run", async () => {
  await withOwnServer(100, async (server) => {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        ...BENCH_PERMISSIONS,
        BENCH,
        "--port",
        String(server.port),
        "--duration",
        "600",
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let stdout = "";
    while (!stdout.includes("distinct keys")) {
      const { value, done } = await reader.read();
      if (done) break;
      stdout += value;
    }
    server.kill();
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
      stdout += chunk.value;
    }
    assert.equal((await child.status).code, 1, stdout);
    assert.match(stdout, /errors {6}[1-9]/);
    assert.match(stdout, /Cannot connect: /);
  });
});

Deno.test("bench stops early on SIGINT, reports, and stops its server", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...BENCH_PERMISSIONS, BENCH, "--duration", "600", "--connections", "2"],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let stdout = "";
  while (!stdout.includes("distinct keys")) {
    const { value, done } = await reader.read();
    if (done) break;
    stdout += value;
  }
  child.kill("SIGINT");
  for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
    stdout += chunk.value;
  }
  const status = await child.status;
  await child.stderr.cancel();
  assert.equal(status.code, 0, stdout);
  const elapsed = Number(/Result after ([\d.]+) s/.exec(stdout)?.[1]);
  assert.ok(elapsed < 600, stdout);
});

Deno.test("bench exits 2 with the usage on stderr for a bad flag", async () => {
  const outcome = await runBench(["--pipeline", "zero"]);
  assert.equal(outcome.code, 2);
  assert.equal(outcome.stdout, "");
  assert.match(outcome.stderr, /^bench: --pipeline must be a whole number/);
  assert.match(outcome.stderr, /Usage: deno task bench/);
});

Deno.test("bench --help prints the usage with defaults and examples, and exits 0", async () => {
  const outcome = await runBench(["--help"]);
  assert.equal(outcome.code, 0);
  assert.match(outcome.stdout, /--connections N +connections driven at once \(default 50\)/);
  assert.match(outcome.stdout, /Examples:/);
  assert.equal(outcome.stderr, "");
});
