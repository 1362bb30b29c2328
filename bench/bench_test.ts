import assert from "node:assert/strict";
import type { BenchResult } from "./report.ts";
import { LISTENING_LINE } from "./server.ts";

const BENCH = `${import.meta.dirname}/bench.ts`;
const SERVER = `${import.meta.dirname}/../server.ts`;
const BENCH_PERMISSIONS = [
  "--allow-net",
  "--allow-read",
  "--allow-write",
  "--allow-run",
  "--allow-env",
  "--unstable-net",
];

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

Deno.test("bench exits 2 with one line and a pointer to --help for a bad flag", async () => {
  const outcome = await runBench(["--pipeline", "zero"]);
  assert.equal(outcome.code, 2);
  assert.equal(outcome.stdout, "");
  assert.match(outcome.stderr, /^bench: --pipeline must be a whole number.* See --help\.\n$/);
  const nearMiss = await runBench(["--conections", "3"]);
  assert.equal(nearMiss.code, 2);
  assert.equal(
    nearMiss.stderr,
    "bench: Unknown option --conections: did you mean --connections? See --help.\n",
  );
});

Deno.test("bench --help prints the usage with defaults and examples, and exits 0", async () => {
  const outcome = await runBench(["--help"]);
  assert.equal(outcome.code, 0);
  assert.match(outcome.stdout, /--connections N +connections driven at once \(default 50\)/);
  assert.match(outcome.stdout, /Examples:/);
  assert.equal(outcome.stderr, "");
});
