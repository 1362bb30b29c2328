import assert from "node:assert/strict";
import {
  type BenchOptions,
  DEFAULT_CONNECTIONS,
  DEFAULT_DURATION_S,
  DEFAULT_ENTRIES,
  DEFAULT_PIPELINE,
  DEFAULT_THREADS,
  parseBenchArgs,
} from "./args.ts";
import { UsageError } from "../common/cli_args.ts";

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
