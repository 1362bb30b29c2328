/**
 * The load generator's command line: its options, their defaults and
 * limits, and the usage text.
 *
 * @module
 */

import { formatCount } from "./format.ts";
import {
  parseFlags,
  parsePort,
  parseSeconds,
  parseWholeNumber,
  UsageError,
} from "../common/cli_args.ts";

/** Default synthetic book size, and the key space of the default keys. */
export const DEFAULT_ENTRIES = 100_000;
/** Default number of connections. */
export const DEFAULT_CONNECTIONS = 50;
/** Default queries per batch. */
export const DEFAULT_PIPELINE = 1;
/** Default run time in seconds. */
export const DEFAULT_DURATION_S = 5;
/** Default load threads. */
export const DEFAULT_THREADS = 1;

const MAX_ENTRIES = 100_000_000;
const MAX_CONNECTIONS = 100_000;
const MAX_PIPELINE = 65_536;
const MAX_THREADS = 64;
const MAX_DURATION_S = 86_400;
const MILLISECONDS_PER_SECOND = 1000;
/** Server flags bench sets itself for the server it starts. */
const RESERVED_SERVER_FLAGS = ["--port", "--data"];

/** What the command line asked for. */
export interface BenchOptions {
  /** The server to drive; set together with `port`, else bench starts its own. */
  hostname?: string;
  /** The port of the server to drive. */
  port?: number;
  /** A file of emails to query, one per line (only with `port`). */
  keysFile?: string;
  /** Entries of the synthetic book, and the key space of synthetic keys. */
  entries: number;
  /** Connections driven at once. */
  connections: number;
  /** Queries sent per batch on a connection. */
  pipeline: number;
  /** How long to drive the load, in seconds. */
  durationSeconds: number;
  /** Worker threads generating the load. */
  threads: number;
  /** A fresh connection for every query. */
  reconnect: boolean;
  /** Print the result as one JSON object. */
  json: boolean;
  /** Extra flags for the server bench starts. */
  serverArgs: string[];
}

/** A bad command line; `main` prints it with the usage and exits 2. */
export const USAGE = `Usage: deno task bench [options]

Drives an addrbook server with queries and reports throughput and latency.
By default it starts a server on a synthetic book in a temporary file, and
stops it at the end; with --host/--port it drives a running server instead.

Each connection sends a batch of --pipeline queries in one write, waits for
all the replies, records the batch's latency, and sends the next batch.

Options:
  --connections N      connections driven at once (default ${DEFAULT_CONNECTIONS})
  --pipeline P         queries per batch on a connection (default ${DEFAULT_PIPELINE})
  --duration SECONDS   how long to run (default ${DEFAULT_DURATION_S})
  --threads T          worker threads generating the load; raise it when bench,
                       not the server, is the bottleneck (default ${DEFAULT_THREADS})
  --reconnect          open a fresh connection for every query (needs --pipeline 1)
  --entries N          entries in the synthetic book; with --host/--port, the key
                       space of the synthetic keys (default ${formatCount(DEFAULT_ENTRIES)})
  --server-arg ARG     pass ARG to the server bench starts; repeatable, and give
                       it with "=": --server-arg=--workers=2
  --host HOST          drive the server on HOST (default 127.0.0.1 with --port)
  --port PORT          drive the server on PORT instead of starting one
  --keys FILE          with --port: the emails to query, one per line (default:
                       user{i}@example.com for i = 0, 7, 14... below 2 x entries,
                       so about half are missing from a book of user{i} entries)
  --json               print the result as one JSON object
  -h, --help           show this help

Latency is per batch, so with --pipeline P it covers P queries; with
--reconnect it includes connecting. Ctrl-C ends the run early and reports.

Examples:
  deno task bench
  deno task bench --connections 200 --pipeline 16 --threads 4 --duration 10
  deno task bench --server-arg=--workers=4 --threads 4
  deno task bench --reconnect --connections 20
  deno task bench --host 10.0.0.5 --port 8080 --keys emails.txt --json

Exit status: 0 when every query got FOUND or NOT_FOUND, 1 on errors or other
replies or when the run could not be done, 2 on bad usage.`;

/**
 * Parses the command line.
 *
 * @throws {UsageError} for an unknown flag, a bad value or flags that do not go together.
 */
export function parseBenchArgs(args: string[]): BenchOptions | "help" {
  const { values } = parseFlags({
    args,
    allowPositionals: false,
    options: {
      host: { type: "string" },
      port: { type: "string" },
      keys: { type: "string" },
      entries: { type: "string" },
      connections: { type: "string" },
      pipeline: { type: "string" },
      duration: { type: "string" },
      threads: { type: "string" },
      reconnect: { type: "boolean" },
      json: { type: "boolean" },
      "server-arg": { type: "string", multiple: true },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) return "help";
  const options: BenchOptions = {
    hostname: values.host,
    port: values.port === undefined ? undefined : parsePort("--port", values.port, 1),
    keysFile: values.keys,
    entries: wholeOr("--entries", values.entries, MAX_ENTRIES, DEFAULT_ENTRIES),
    connections: wholeOr("--connections", values.connections, MAX_CONNECTIONS, DEFAULT_CONNECTIONS),
    pipeline: wholeOr("--pipeline", values.pipeline, MAX_PIPELINE, DEFAULT_PIPELINE),
    durationSeconds: values.duration === undefined
      ? DEFAULT_DURATION_S
      : parseSeconds("--duration", values.duration, { maxSeconds: MAX_DURATION_S }) /
        MILLISECONDS_PER_SECOND,
    threads: wholeOr("--threads", values.threads, MAX_THREADS, DEFAULT_THREADS),
    reconnect: values.reconnect ?? false,
    json: values.json ?? false,
    serverArgs: values["server-arg"] ?? [],
  };
  if (options.port === undefined) {
    if (options.hostname !== undefined) {
      throw new UsageError("--host needs --port: give the port of the server to drive.");
    }
    if (options.keysFile !== undefined) {
      throw new UsageError(
        "--keys needs --port: the server bench starts serves its own synthetic book.",
      );
    }
  } else {
    options.hostname ??= "127.0.0.1";
    if (options.serverArgs.length > 0) {
      throw new UsageError("--server-arg is for the server bench starts, not one given by --port.");
    }
  }
  for (const arg of options.serverArgs) {
    const flag = arg.split("=")[0];
    if (RESERVED_SERVER_FLAGS.includes(flag)) {
      throw new UsageError(
        `--server-arg ${flag} is set by bench itself; use --entries, or --port for your own server.`,
      );
    }
  }
  if (options.reconnect && options.pipeline > 1) {
    throw new UsageError(
      `--reconnect sends one query per connection, so it takes no --pipeline ${options.pipeline}.`,
    );
  }
  if (options.threads > options.connections) {
    throw new UsageError(
      `--threads ${options.threads} is more than --connections ${options.connections}: a thread needs a connection.`,
    );
  }
  return options;
}

/** A flag's whole number from 1 to `max`, or `fallback` when the flag was not given. */
function wholeOr(flag: string, value: string | undefined, max: number, fallback: number): number {
  return value === undefined ? fallback : parseWholeNumber(flag, value, 1, max);
}
