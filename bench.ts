/**
 * The addrbook load generator, in the spirit of `redis-benchmark`:
 * `deno task bench --help`.
 *
 * By default it writes a synthetic book to a temporary file, starts a server
 * on it, drives it for a while and stops it; with `--host`/`--port` it drives
 * a server that is already running. Load is closed-loop: each connection
 * sends a batch of `--pipeline` queries in one write, waits for all their
 * replies, records the batch's latency and sends the next batch. The load
 * runs on `--threads` worker threads, since one JavaScript thread can be the
 * bottleneck before the server is.
 *
 * This module is also the worker threads' entry point: in a worker scope it
 * waits for a load plan instead of reading the command line.
 *
 * ```ts
 * import { createHistogram, percentile, recordValue } from "./bench.ts";
 *
 * const histogram = createHistogram();
 * for (const micros of [120, 95, 3000]) recordValue(histogram, micros);
 * percentile(histogram, 50); // 120
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { csvField, generateEntries } from "./gen.ts";
import {
  encodeQuery,
  FrameDecoder,
  MAX_QUERY_BYTES,
  MAX_REPLY_BYTES,
  STATUS_FOUND,
  STATUS_NAMES,
  STATUS_NOT_FOUND,
  STATUS_PROTOCOL_ERROR,
  STATUS_SERVER_BUSY,
  TYPE_REPLY,
} from "./protocol.ts";
import denoConfig from "./deno.json" with { type: "json" };
import { resolveUserPath } from "./user_path.ts";

// ---------------------------------------------------------------------------
// Latency histogram

/**
 * Linear sub-buckets per power of two: values up to 2^7 are exact, larger
 * ones land in a bucket at most 1/64 (1.6%) wide relative to its value.
 */
export const HISTOGRAM_SUB_BITS = 6;
const SUB_BUCKETS = 1 << HISTOGRAM_SUB_BITS;
/** The largest value recorded as itself, in microseconds (about 71 minutes); larger ones are clamped. */
export const HISTOGRAM_MAX_VALUE = 0xffff_ffff;
/** Buckets in a histogram: enough for every value up to {@linkcode HISTOGRAM_MAX_VALUE}. */
export const HISTOGRAM_BUCKETS = (32 - HISTOGRAM_SUB_BITS + 1) * SUB_BUCKETS;

/**
 * A log-linear histogram of non-negative whole numbers (latencies in
 * microseconds here). Its size is fixed whatever it holds. It is plain data,
 * so it can be posted between threads.
 */
export interface Histogram {
  /** How many values fell in each bucket; see {@linkcode bucketIndex}. */
  counts: Float64Array;
  /** How many values were recorded. */
  total: number;
  /** The smallest value recorded, or 0 when empty. */
  min: number;
  /** The largest value recorded, or 0 when empty. */
  max: number;
  /** The sum of the values recorded, for the mean. */
  sum: number;
}

/** Creates an empty histogram. */
export function createHistogram(): Histogram {
  return { counts: new Float64Array(HISTOGRAM_BUCKETS), total: 0, min: 0, max: 0, sum: 0 };
}

/**
 * The bucket a value falls in. Values below 2^(SUB_BITS+1) have a bucket
 * each; above that, each power of two is split into 2^SUB_BITS equal parts.
 */
export function bucketIndex(value: number): number {
  if (value < 2 * SUB_BUCKETS) return value;
  const shift = 31 - Math.clz32(value) - HISTOGRAM_SUB_BITS;
  return (shift << HISTOGRAM_SUB_BITS) + (value >>> shift);
}

/** The smallest and largest value that fall in bucket `index`. */
export function bucketRange(index: number): [number, number] {
  if (index < 2 * SUB_BUCKETS) return [index, index];
  const shift = (index >>> HISTOGRAM_SUB_BITS) - 1;
  const top = SUB_BUCKETS + (index & (SUB_BUCKETS - 1));
  return [top * 2 ** shift, (top + 1) * 2 ** shift - 1];
}

/**
 * Records one value, rounded to a whole number and clamped to
 * 0..{@linkcode HISTOGRAM_MAX_VALUE}.
 */
export function recordValue(histogram: Histogram, value: number): void {
  const whole = Math.min(Math.max(Math.round(value), 0), HISTOGRAM_MAX_VALUE);
  histogram.counts[bucketIndex(whole)]++;
  if (histogram.total === 0 || whole < histogram.min) histogram.min = whole;
  if (whole > histogram.max) histogram.max = whole;
  histogram.total++;
  histogram.sum += whole;
}

/** Adds every value recorded in `from` to `into`. */
export function mergeHistogram(into: Histogram, from: Histogram): void {
  if (from.total === 0) return;
  for (let i = 0; i < HISTOGRAM_BUCKETS; i++) into.counts[i] += from.counts[i];
  into.min = into.total === 0 ? from.min : Math.min(into.min, from.min);
  into.max = Math.max(into.max, from.max);
  into.total += from.total;
  into.sum += from.sum;
}

/**
 * The value below or at which `p` percent of the recorded values lie: the
 * highest value of the bucket holding that rank, never above the maximum
 * recorded. 0 for an empty histogram.
 *
 * @throws {RangeError} when `p` is not within 0..100.
 */
export function percentile(histogram: Histogram, p: number): number {
  if (!(p >= 0 && p <= 100)) throw new RangeError(`Percentile ${p} is not within 0..100.`);
  if (histogram.total === 0) return 0;
  const rank = Math.max(1, Math.ceil((p / 100) * histogram.total));
  let seen = 0;
  for (let i = 0; i < HISTOGRAM_BUCKETS; i++) {
    seen += histogram.counts[i];
    if (seen >= rank) return Math.max(Math.min(bucketRange(i)[1], histogram.max), histogram.min);
  }
  return histogram.max;
}

// ---------------------------------------------------------------------------
// Formatting

const countFormat = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const MICROS_PER_MS = 1000;
const MICROS_PER_S = 1_000_000;

/** Formats a count with thousands separators: `1,234,567`. */
export function formatCount(count: number): string {
  return countFormat.format(count);
}

/** Formats microseconds with a unit that keeps it short: `85 µs`, `1.24 ms`, `2.50 s`. */
export function formatMicros(micros: number): string {
  // The thresholds sit half a unit low so that rounding never shows "1000 µs" or "1.00e+3 ms".
  if (micros < MICROS_PER_MS - 0.5) return `${Math.round(micros)} µs`;
  if (micros < MICROS_PER_S - MICROS_PER_MS / 2) {
    return `${(micros / MICROS_PER_MS).toPrecision(3)} ms`;
  }
  return `${(micros / MICROS_PER_S).toFixed(2)} s`;
}

// ---------------------------------------------------------------------------
// Command line

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
export class UsageError extends Error {
  /** Makes the error from a one-sentence message. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** A run that could not be done (unreachable target, server that would not start...); exit 1. */
export class BenchError extends Error {
  /** Makes the error from a one-sentence message. */
  constructor(message: string) {
    super(message);
    this.name = "BenchError";
  }
}

/** The usage text, for `--help` and usage errors. */
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
  let values;
  try {
    values = parseArgs({
      args,
      strict: true,
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
    }).values;
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (values.help) return "help";
  const options: BenchOptions = {
    hostname: values.host,
    port: values.port === undefined ? undefined : parseWhole("--port", values.port, 1, 65535),
    keysFile: values.keys,
    entries: parseWhole("--entries", values.entries, 1, MAX_ENTRIES, DEFAULT_ENTRIES),
    connections: parseWhole(
      "--connections",
      values.connections,
      1,
      MAX_CONNECTIONS,
      DEFAULT_CONNECTIONS,
    ),
    pipeline: parseWhole("--pipeline", values.pipeline, 1, MAX_PIPELINE, DEFAULT_PIPELINE),
    durationSeconds: parseDuration(values.duration),
    threads: parseWhole("--threads", values.threads, 1, MAX_THREADS, DEFAULT_THREADS),
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

function parseWhole(
  flag: string,
  value: string | undefined,
  min: number,
  max: number,
  fallback?: number,
): number {
  if (value === undefined && fallback !== undefined) return fallback;
  const number = value !== undefined && /^\d+$/.test(value) ? Number(value) : NaN;
  if (!(number >= min && number <= max)) {
    throw new UsageError(
      `${flag} must be a whole number from ${formatCount(min)} to ${
        formatCount(max)
      }, not "${value}".`,
    );
  }
  return number;
}

function parseDuration(value: string | undefined): number {
  if (value === undefined) return DEFAULT_DURATION_S;
  const seconds = /^\d+(\.\d+)?$/.test(value) ? Number(value) : NaN;
  if (!(seconds > 0 && seconds <= MAX_DURATION_S)) {
    throw new UsageError(
      `--duration must be a number of seconds above 0 and up to ${MAX_DURATION_S}, not "${value}".`,
    );
  }
  return seconds;
}

// ---------------------------------------------------------------------------
// Keys

/** Every this many indexes is queried, as compare-redis.py does, so both key sets match. */
const KEY_STEP = 7;
/** Seed of the synthetic keys' order, so that runs are alike. */
const KEY_SHUFFLE_SEED = 7919;

/**
 * Picks query keys for a book of `entries`: indexes 0, 7, 14... below
 * `2 * entries`, so about half of them are beyond the book. `present(i)`
 * names the email of entry `i`, `missing(i)` an email for an index beyond it.
 */
export function sampleKeys(
  entries: number,
  present: (index: number) => string,
  missing: (index: number) => string,
): string[] {
  const keys: string[] = [];
  for (let i = 0; i < 2 * entries; i += KEY_STEP) keys.push(i < entries ? present(i) : missing(i));
  return keys;
}

/** The default keys for a server given by `--port`: `user{i}@example.com`. */
export function syntheticKeys(entries: number): string[] {
  const email = (i: number) => `user${i}@example.com`;
  return sampleKeys(entries, email, email);
}

/**
 * Reads keys from the text of a keys file: one per line, surrounding
 * whitespace trimmed, blank lines skipped. `label` names the file in errors,
 * which give line numbers, never the key itself.
 *
 * @throws {BenchError} when a key is too long for a query, or there is none.
 */
export function parseKeys(text: string, label: string): string[] {
  const keys: string[] = [];
  const encoder = new TextEncoder();
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const key = lines[i].trim();
    if (key === "") continue;
    const bytes = encoder.encode(key).length;
    if (bytes > MAX_QUERY_BYTES) {
      throw new BenchError(
        `Line ${
          i + 1
        } of ${label} is ${bytes} bytes long, over the query limit of ${MAX_QUERY_BYTES}.`,
      );
    }
    keys.push(key);
  }
  if (keys.length === 0) throw new BenchError(`${label} holds no keys.`);
  return keys;
}

/**
 * Returns the keys in a shuffled order, the same for the same seed. Each
 * connection walks its own stretch of the keys, so shuffling gives every
 * connection the same mix of present and missing ones.
 */
export function shuffleKeys(keys: readonly string[], seed: number): string[] {
  const shuffled = keys.slice();
  let state = seed >>> 0;
  for (let i = shuffled.length - 1; i > 0; i--) {
    // A 32-bit LCG (Numerical Recipes constants): plenty for spreading keys.
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    const j = Math.floor((state / 2 ** 32) * (i + 1));
    [shuffled[i], shuffled[j]] = [shuffled[j], shuffled[i]];
  }
  return shuffled;
}

/** Query frames for all keys, back to back, and where each starts. */
export interface QueryFrames {
  /** The encoded frames. */
  bytes: Uint8Array;
  /** `offsets[j]` is where frame `j` starts; one more offset marks the end of the last. */
  offsets: Uint32Array;
  /** How many distinct keys there are; the frames after them repeat the first ones. */
  keyCount: number;
}

/**
 * Encodes every key as a query frame, back to back, followed by the first
 * `pipeline - 1` keys again (cycling when there are fewer keys), so that
 * any `pipeline` consecutive keys starting at a key index are one
 * contiguous slice and a batch is sent without copying.
 *
 * @throws {RangeError} when a key is over the query size limit.
 */
export function buildQueryFrames(keys: readonly string[], pipeline: number): QueryFrames {
  if (keys.length === 0) throw new RangeError("There are no keys to encode.");
  const frameCount = keys.length + pipeline - 1;
  const encoded: Uint8Array[] = keys.map(encodeQuery);
  const offsets = new Uint32Array(frameCount + 1);
  let size = 0;
  for (let j = 0; j < frameCount; j++) {
    offsets[j] = size;
    size += encoded[j % keys.length].length;
  }
  offsets[frameCount] = size;
  const bytes = new Uint8Array(size);
  for (let j = 0; j < frameCount; j++) bytes.set(encoded[j % keys.length], offsets[j]);
  return { bytes, offsets, keyCount: keys.length };
}

/** The bytes of batch starting at key index `start`: `pipeline` frames. */
export function batchAt(frames: QueryFrames, start: number, pipeline: number): Uint8Array {
  return frames.bytes.subarray(frames.offsets[start], frames.offsets[start + pipeline]);
}

// ---------------------------------------------------------------------------
// Load generation (runs on worker threads)

/** Reply counts, errors and latencies gathered by a thread, or by all of them. */
export interface Tally {
  /** Replies received, by status code. */
  statuses: number[];
  /** Failed batches, connections and malformed replies. */
  errors: number;
  /** How often each distinct error message was seen (a few distinct ones are kept). */
  errorMessages: Record<string, number>;
  /** Batch latencies in microseconds. */
  latency: Histogram;
  /** Milliseconds from the start of the load to its last reply. */
  elapsedMs: number;
}

/** Distinct error messages kept; errors beyond them are counted, not described. */
const MAX_ERROR_MESSAGES = 5;

/** Creates an empty tally. */
export function createTally(): Tally {
  return {
    statuses: STATUS_NAMES.map(() => 0),
    errors: 0,
    errorMessages: {},
    latency: createHistogram(),
    elapsedMs: 0,
  };
}

/** Counts one error, keeping its message if it is new and there is room. */
export function tallyError(tally: Tally, message: string): void {
  tally.errors++;
  if (message in tally.errorMessages) tally.errorMessages[message]++;
  else if (Object.keys(tally.errorMessages).length < MAX_ERROR_MESSAGES) {
    tally.errorMessages[message] = 1;
  }
}

/** Adds `from` to `into`; elapsed time is the longer of the two, as threads run side by side. */
export function mergeTally(into: Tally, from: Tally): void {
  for (let s = 0; s < into.statuses.length; s++) into.statuses[s] += from.statuses[s];
  into.errors += from.errors;
  for (const [message, count] of Object.entries(from.errorMessages)) {
    if (message in into.errorMessages) into.errorMessages[message] += count;
    else if (Object.keys(into.errorMessages).length < MAX_ERROR_MESSAGES) {
      into.errorMessages[message] = count;
    }
  }
  mergeHistogram(into.latency, from.latency);
  into.elapsedMs = Math.max(into.elapsedMs, from.elapsedMs);
}

/** What one thread is to do. */
interface LoadPlan {
  hostname: string;
  port: number;
  /** Connections on this thread. */
  connections: number;
  /** The index of its first connection among all threads', to spread start keys. */
  firstConnection: number;
  totalConnections: number;
  pipeline: number;
  durationMs: number;
  reconnect: boolean;
  /** Whether to post progress reports. */
  progress: boolean;
  frames: QueryFrames;
}

/** Messages from the main thread to a load thread. */
type ThreadCommand =
  | { kind: "prepare"; plan: LoadPlan }
  | { kind: "go" }
  | { kind: "stop" };

/** Messages from a load thread to the main thread. */
type ThreadReport =
  | { kind: "ready" }
  | { kind: "progress"; queries: number }
  | { kind: "done"; tally: Tally };

/** Bytes read from a connection at a time. */
const READ_BUFFER_BYTES = 64 * 1024;
/** How long connections may finish their last batch after the end before they are cut. */
const STOP_GRACE_MS = 5000;
/** How often threads report progress. */
const PROGRESS_REPORT_MS = 250;

/** A batch that went wrong; the connection is closed and opened again. */
class BatchError extends Error {}

/** Sums the replies in a tally. */
export function tallyQueries(tally: Tally): number {
  return tally.statuses.reduce((sum, count) => sum + count, 0);
}

/** The load of one thread: its connections, each in a closed loop. */
class LoadThread {
  readonly #plan: LoadPlan;
  readonly #tally = createTally();
  readonly #open = new Set<Deno.Conn>();
  #ready: (Deno.Conn | undefined)[] = [];
  #stopAt = Infinity;
  #cut = false;

  constructor(plan: LoadPlan) {
    this.#plan = plan;
  }

  get tally(): Tally {
    return this.#tally;
  }

  /** Opens the persistent connections before the clock starts. */
  async prepare(): Promise<void> {
    const count = this.#plan.connections;
    this.#ready = this.#plan.reconnect
      ? new Array(count).fill(undefined)
      : await Promise.all(Array.from({ length: count }, () => this.#connect()));
  }

  async run(): Promise<Tally> {
    const started = performance.now();
    this.#stopAt = started + this.#plan.durationMs;
    const cutTimer = setTimeout(() => this.#cutAll(), this.#plan.durationMs + STOP_GRACE_MS);
    await Promise.all(this.#ready.map((conn, index) => this.#drive(index, conn)));
    clearTimeout(cutTimer);
    this.#tally.elapsedMs = performance.now() - started;
    return this.#tally;
  }

  /** Ends the run early: each connection finishes its batch and stops. */
  stop(): void {
    this.#stopAt = Math.min(this.#stopAt, performance.now());
  }

  async #drive(index: number, conn: Deno.Conn | undefined): Promise<void> {
    const { frames, pipeline } = this.#plan;
    const position = this.#plan.firstConnection + index;
    let next = Math.floor((position * frames.keyCount) / this.#plan.totalConnections);
    const buffer = new Uint8Array(READ_BUFFER_BYTES);
    const decoder = new FrameDecoder({ type: TYPE_REPLY, maxPayload: MAX_REPLY_BYTES });
    while (performance.now() < this.#stopAt) {
      const started = performance.now();
      if (conn === undefined) {
        conn = await this.#connect();
        // A server that refuses connections is gone: retrying would only spin.
        if (conn === undefined) return;
      }
      const batch = batchAt(frames, next, pipeline);
      next = (next + pipeline) % frames.keyCount;
      let keepOpen = false;
      try {
        await writeAll(conn, batch);
        keepOpen = await this.#readReplies(conn, decoder, buffer);
        recordValue(this.#tally.latency, (performance.now() - started) * MICROS_PER_MS);
      } catch (error) {
        tallyError(
          this.#tally,
          this.#cut
            ? `No reply within ${STOP_GRACE_MS / 1000} s of the end of the run.`
            : describeError(error),
        );
      }
      if (!keepOpen || this.#plan.reconnect) {
        this.#close(conn);
        conn = undefined;
        decoder.reset();
      }
    }
    if (conn !== undefined) this.#close(conn);
  }

  /** Reads the replies to one batch; returns false when the server is closing the connection. */
  async #readReplies(conn: Deno.Conn, decoder: FrameDecoder, buffer: Uint8Array): Promise<boolean> {
    const expected = this.#plan.pipeline;
    const statuses = this.#tally.statuses;
    let received = 0;
    while (received < expected) {
      const count = await conn.read(buffer);
      if (count === null) {
        throw new BatchError(
          `The server closed the connection with ${
            expected - received
          } of ${expected} replies missing.`,
        );
      }
      decoder.push(buffer.subarray(0, count));
      for (let payload = decoder.next(); payload !== null; payload = decoder.next()) {
        if (received === expected) {
          throw new BatchError("The server sent more replies than queries.");
        }
        received++;
        const status = payload.length > 0 ? payload[0] : -1;
        if (status < 0 || status >= statuses.length) {
          tallyError(this.#tally, "The server sent a reply without a known status.");
          continue;
        }
        statuses[status]++;
        // Both come with the server closing the connection; the rest of the batch is lost.
        if (status === STATUS_PROTOCOL_ERROR || status === STATUS_SERVER_BUSY) return false;
      }
    }
    return true;
  }

  async #connect(): Promise<Deno.Conn | undefined> {
    try {
      const conn = await Deno.connect({ hostname: this.#plan.hostname, port: this.#plan.port });
      conn.setNoDelay(true);
      this.#open.add(conn);
      return conn;
    } catch (error) {
      tallyError(this.#tally, `Cannot connect: ${describeError(error)}`);
      return undefined;
    }
  }

  #close(conn: Deno.Conn): void {
    this.#open.delete(conn);
    try {
      conn.close();
    } catch {
      // Already closed by a failed read or write.
    }
  }

  /** Cuts the connections still waiting for replies long after the end. */
  #cutAll(): void {
    this.#cut = true;
    for (const conn of [...this.#open]) this.#close(conn);
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await conn.write(bytes.subarray(written));
}

function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The worker's global scope, typed here so this module checks with the main-thread lib. */
interface ThreadScope {
  postMessage(message: ThreadReport): void;
  onmessage: ((event: MessageEvent<ThreadCommand>) => void) | null;
}

/** Serves load plans from the main thread, when this module runs as a worker. */
function serveAsLoadThread(scope: ThreadScope): void {
  let thread: LoadThread | undefined;
  let showProgress = false;
  scope.onmessage = async (event) => {
    const command = event.data;
    if (command.kind === "prepare") {
      thread = new LoadThread(command.plan);
      showProgress = command.plan.progress;
      await thread.prepare();
      scope.postMessage({ kind: "ready" });
    } else if (command.kind === "go" && thread) {
      const running = thread;
      const progressTimer = showProgress
        ? setInterval(
          () => scope.postMessage({ kind: "progress", queries: tallyQueries(running.tally) }),
          PROGRESS_REPORT_MS,
        )
        : undefined;
      const tally = await running.run();
      clearInterval(progressTimer);
      scope.postMessage({ kind: "done", tally });
    } else if (command.kind === "stop") {
      thread?.stop();
    }
  };
}

function isWorkerScope(): boolean {
  return typeof (globalThis as Record<string, unknown>).WorkerGlobalScope !== "undefined";
}

// ---------------------------------------------------------------------------
// Driving the threads (main thread)

/** Where the load goes. */
interface Target {
  hostname: string;
  port: number;
}

/** Splits `connections` over `threads` as evenly as whole numbers allow. */
export function splitConnections(connections: number, threads: number): number[] {
  const base = Math.floor(connections / threads);
  return Array.from({ length: threads }, (_, t) => base + (t < connections % threads ? 1 : 0));
}

/** Runs the load on worker threads and merges what they report. */
async function runLoad(
  options: BenchOptions,
  target: Target,
  frames: QueryFrames,
  interrupted: Promise<void>,
): Promise<Tally> {
  const showProgress = Deno.stderr.isTerminal();
  const shares = splitConnections(options.connections, options.threads);
  const workers: Worker[] = [];
  const progress = shares.map(() => 0);
  const ready: Promise<void>[] = [];
  const done: Promise<Tally>[] = [];
  let failed: (error: BenchError) => void = () => {};
  const failure = new Promise<never>((_, reject) => failed = reject);
  let first = 0;
  for (let t = 0; t < shares.length; t++) {
    const worker = new Worker(import.meta.url, { type: "module" });
    workers.push(worker);
    const isReady = Promise.withResolvers<void>();
    const isDone = Promise.withResolvers<Tally>();
    ready.push(isReady.promise);
    done.push(isDone.promise);
    worker.onerror = (event) => {
      event.preventDefault();
      failed(new BenchError(`A load thread failed: ${event.message}`));
    };
    worker.onmessage = (event: MessageEvent<ThreadReport>) => {
      const report = event.data;
      if (report.kind === "ready") isReady.resolve();
      else if (report.kind === "progress") progress[t] = report.queries;
      else if (report.kind === "done") isDone.resolve(report.tally);
    };
    const plan: LoadPlan = {
      ...target,
      connections: shares[t],
      firstConnection: first,
      totalConnections: options.connections,
      pipeline: options.pipeline,
      durationMs: options.durationSeconds * 1000,
      reconnect: options.reconnect,
      progress: showProgress,
      frames,
    };
    first += shares[t];
    worker.postMessage({ kind: "prepare", plan } satisfies ThreadCommand);
  }
  let ticker: ReturnType<typeof setInterval> | undefined;
  let finished = false;
  try {
    await Promise.race([Promise.all(ready), failure]);
    const started = performance.now();
    for (const worker of workers) worker.postMessage({ kind: "go" } satisfies ThreadCommand);
    interrupted.then(() => {
      if (finished) return;
      for (const worker of workers) worker.postMessage({ kind: "stop" } satisfies ThreadCommand);
    });
    if (showProgress) {
      let last = 0;
      ticker = setInterval(() => {
        const total = progress.reduce((sum, count) => sum + count, 0);
        const seconds = Math.round((performance.now() - started) / 1000);
        Deno.stderr.writeSync(
          new TextEncoder().encode(
            `\r${seconds} s: ${formatCount(total)} queries, ${
              formatCount(total - last)
            } queries/s\x1b[K`,
          ),
        );
        last = total;
      }, 1000);
    }
    const tallies = await Promise.race([Promise.all(done), failure]);
    const total = createTally();
    for (const tally of tallies) mergeTally(total, tally);
    return total;
  } finally {
    finished = true;
    clearInterval(ticker);
    if (showProgress) Deno.stderr.writeSync(new TextEncoder().encode("\r\x1b[K"));
    for (const worker of workers) worker.terminate();
  }
}

// ---------------------------------------------------------------------------
// The server bench starts

/** Seed of the synthetic book, so runs query the same names. */
const BOOK_SEED = 1;
/** Characters of CSV gathered before a write. */
const BOOK_WRITE_CHUNK = 1 << 20;
/** How long a starting server may take to say it listens. */
const SERVER_START_TIMEOUT_MS = 300_000;
/** Server stderr lines kept to explain a failed start: its first paragraph, at most this long. */
const SERVER_OUTPUT_LINES = 5;
/** The server's start-up line; the host may be a bracketed IPv6 address. */
export const LISTENING_LINE = /listening on (tls:\/\/)?(\[[^\]\s]+\]|[^\s:"]+):(\d+)/;

/**
 * Writes a synthetic CSV book of `entries` (made by gen.ts) to `path` and
 * returns the keys to query: present ones from the book, and as many
 * missing ones at example.net, a domain the generator never uses.
 */
async function writeSyntheticBook(path: string, entries: number): Promise<string[]> {
  const sampled: string[] = [];
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  const writer = file.writable.getWriter();
  const encoder = new TextEncoder();
  try {
    let chunk = "email,name\r\n";
    let index = 0;
    for (const { email, name } of generateEntries(entries, BOOK_SEED)) {
      if (index % KEY_STEP === 0) sampled.push(email);
      index++;
      chunk += `${email},${csvField(name)}\r\n`;
      if (chunk.length >= BOOK_WRITE_CHUNK) {
        await writer.write(encoder.encode(chunk));
        chunk = "";
      }
    }
    await writer.write(encoder.encode(chunk));
  } finally {
    await writer.close();
  }
  return sampleKeys(
    entries,
    (i) => sampled[i / KEY_STEP],
    (i) => `missing.${i}@example.net`,
  );
}

/** A server started by bench. */
interface SpawnedServer {
  target: Target;
  stop(): Promise<void>;
}

/**
 * The arguments of `deno task server` after `deno` (run, its permissions and
 * flags, the module), so the bench measures the server as users run it.
 */
const SERVER_RUN_ARGS: string[] = denoConfig.tasks.server.split(/\s+/).slice(1).map((arg) =>
  arg === "server.ts" ? `${import.meta.dirname}/server.ts` : arg
);

/** Starts the server on `bookPath` and waits until it says where it listens. */
async function spawnServer(
  bookPath: string,
  serverArgs: string[],
  interrupted: Promise<void>,
): Promise<SpawnedServer> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      ...SERVER_RUN_ARGS,
      "--port",
      "0",
      "--data",
      bookPath,
      ...serverArgs,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // It has exited already.
    }
    await child.status;
  };
  // The first paragraph says why a server did not start; a usage text follows it.
  const said: string[] = [];
  let saidAll = false;
  const listening = Promise.withResolvers<Target>();
  // Keep reading stderr to the end, or a chatty server would block on a full pipe.
  (async () => {
    const lines = child.stderr.pipeThrough(new TextDecoderStream());
    let partial = "";
    for await (const text of lines) {
      const parts = (partial + text).split("\n");
      partial = parts.pop() ?? "";
      for (const line of parts) {
        if (line.trim() === "") saidAll ||= said.length > 0;
        else if (!saidAll && said.length < SERVER_OUTPUT_LINES) said.push(line);
        const match = LISTENING_LINE.exec(line);
        if (match) {
          if (match[1]) {
            listening.reject(new BenchError("The server serves TLS, which bench does not speak."));
          }
          listening.resolve({ hostname: match[2].replace(/^\[|\]$/g, ""), port: Number(match[3]) });
        }
      }
    }
    if (partial && !saidAll && said.length < SERVER_OUTPUT_LINES) said.push(partial);
    const status = await child.status;
    listening.reject(
      new BenchError(
        `The server exited with status ${status.code} before listening:\n  ${said.join("\n  ")}`,
      ),
    );
  })();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new BenchError(
            `The server did not say "listening on" within ${
              SERVER_START_TIMEOUT_MS / 1000
            } s; is its log level above info?`,
          ),
        ),
      SERVER_START_TIMEOUT_MS,
    );
  });
  const gaveUp = interrupted.then(() => {
    throw new BenchError("Interrupted while the server was starting.");
  });
  try {
    const target = await Promise.race([listening.promise, timeout, gaveUp]);
    return { target, stop };
  } catch (error) {
    await stop();
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------
// Results

/** The result of a run, as `--json` prints it. */
export interface BenchResult {
  /** `host:port` driven. */
  target: string;
  /** The server bench started, or null for one given by `--port`. */
  server: { entries: number; args: string[] } | null;
  /** Connections driven at once. */
  connections: number;
  /** Queries in flight per connection. */
  pipeline: number;
  /** Worker threads generating the load. */
  threads: number;
  /** Whether every query had a connection of its own. */
  reconnect: boolean;
  /** The run time asked for, in seconds. */
  durationSeconds: number;
  /** From the start to the last reply, in seconds. */
  elapsedSeconds: number;
  /** Distinct keys queried, in turn. */
  keys: number;
  /** Replies received. */
  queries: number;
  /** Throughput: replies per second of the run. */
  queriesPerSecond: number;
  /** Batch latency in microseconds; a batch is `pipeline` queries. */
  latencyUs: { p50: number; p99: number; p999: number; max: number; mean: number };
  /** FOUND replies. */
  found: number;
  /** NOT_FOUND replies. */
  notFound: number;
  /** Replies other than FOUND and NOT_FOUND. */
  other: number;
  /** The other replies by status name, those seen only. */
  otherByStatus: Record<string, number>;
  /** Connection errors and malformed replies. */
  errors: number;
  /** A few distinct error messages, with how often each was seen. */
  errorMessages: Record<string, number>;
}

/** Builds the result of a run from its merged tally. */
export function summarize(
  tally: Tally,
  run: Omit<
    BenchResult,
    | "elapsedSeconds"
    | "queries"
    | "queriesPerSecond"
    | "latencyUs"
    | "found"
    | "notFound"
    | "other"
    | "otherByStatus"
    | "errors"
    | "errorMessages"
  >,
): BenchResult {
  const queries = tallyQueries(tally);
  const elapsedSeconds = tally.elapsedMs / 1000;
  const otherByStatus: Record<string, number> = {};
  tally.statuses.forEach((count, status) => {
    if (status !== STATUS_FOUND && status !== STATUS_NOT_FOUND && count > 0) {
      otherByStatus[STATUS_NAMES[status]] = count;
    }
  });
  const latency = tally.latency;
  return {
    ...run,
    elapsedSeconds: round(elapsedSeconds, 3),
    queries,
    queriesPerSecond: elapsedSeconds > 0 ? Math.round(queries / elapsedSeconds) : 0,
    latencyUs: {
      p50: percentile(latency, 50),
      p99: percentile(latency, 99),
      p999: percentile(latency, 99.9),
      max: latency.max,
      mean: latency.total > 0 ? Math.round(latency.sum / latency.total) : 0,
    },
    found: tally.statuses[STATUS_FOUND],
    notFound: tally.statuses[STATUS_NOT_FOUND],
    other: queries - tally.statuses[STATUS_FOUND] - tally.statuses[STATUS_NOT_FOUND],
    otherByStatus,
    errors: tally.errors,
    errorMessages: tally.errorMessages,
  };
}

function round(value: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

/** The header printed before a text-mode run. */
export function formatHeader(options: BenchOptions, target: string, keys: number): string {
  const server = options.port === undefined
    ? ` (started by bench: ${formatCount(options.entries)} entries${
      options.serverArgs.length > 0 ? `, ${options.serverArgs.join(" ")}` : ""
    })`
    : "";
  return [
    `addrbook bench: ${target}${server}`,
    `  connections ${options.connections}, pipeline ${options.pipeline}, duration ${options.durationSeconds} s, ` +
    `threads ${options.threads}${options.reconnect ? ", a new connection per query" : ""}`,
    `  ${formatCount(keys)} distinct keys`,
  ].join("\n");
}

/** The result block of a text-mode run. */
export function formatResult(result: BenchResult): string {
  const latency = result.latencyUs;
  const per = result.pipeline > 1 ? ` (per batch of ${result.pipeline} queries)` : "";
  const other = Object.entries(result.otherByStatus)
    .map(([name, count]) => `${name} ${formatCount(count)}`).join(", ");
  const lines = [
    `Result after ${result.elapsedSeconds.toFixed(2)} s:`,
    `  queries     ${formatCount(result.queries)}`,
    `  throughput  ${formatCount(result.queriesPerSecond)} queries/s`,
    `  latency     p50 ${formatMicros(latency.p50)}, p99 ${formatMicros(latency.p99)}, ` +
    `p99.9 ${formatMicros(latency.p999)}, max ${formatMicros(latency.max)}${per}`,
    `  replies     FOUND ${formatCount(result.found)}, NOT_FOUND ${
      formatCount(result.notFound)
    }, ` +
    `other ${formatCount(result.other)}${other ? ` (${other})` : ""}`,
    `  errors      ${formatCount(result.errors)}`,
  ];
  for (const [message, count] of Object.entries(result.errorMessages)) {
    lines.push(`    ${formatCount(count)} x ${message}`);
  }
  return lines.join("\n");
}

// ---------------------------------------------------------------------------
// Main

/** Checks that the target accepts connections, for a clear message when it does not. */
async function probe(target: Target): Promise<void> {
  try {
    (await Deno.connect(target)).close();
  } catch (error) {
    throw new BenchError(`Cannot reach ${formatTarget(target)}: ${describeError(error)}.`);
  }
}

function formatTarget(target: Target): string {
  return target.hostname.includes(":")
    ? `[${target.hostname}]:${target.port}`
    : `${target.hostname}:${target.port}`;
}

async function readKeysFile(path: string): Promise<string[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(resolveUserPath(path));
  } catch (error) {
    throw new BenchError(`Cannot read --keys file ${path}: ${describeError(error)}`);
  }
  return parseKeys(text, path);
}

/** Runs bench from the command line; resolves with the exit code. */
export async function main(args: string[]): Promise<number> {
  let options: BenchOptions | "help";
  try {
    options = parseBenchArgs(args);
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`bench: ${error.message}\n\n${USAGE}`);
      return 2;
    }
    throw error;
  }
  if (options === "help") {
    console.log(USAGE);
    return 0;
  }
  const interrupt = Promise.withResolvers<void>();
  const onInterrupt = () => interrupt.resolve();
  Deno.addSignalListener("SIGINT", onInterrupt);
  let tempDir: string | undefined;
  let server: SpawnedServer | undefined;
  try {
    let target: Target;
    let keys: string[];
    if (options.port === undefined) {
      tempDir = await Deno.makeTempDir({ prefix: "addrbook-bench-" });
      const bookPath = `${tempDir}/book.csv`;
      keys = shuffleKeys(await writeSyntheticBook(bookPath, options.entries), KEY_SHUFFLE_SEED);
      server = await spawnServer(bookPath, options.serverArgs, interrupt.promise);
      target = server.target;
    } else {
      target = { hostname: options.hostname ?? "127.0.0.1", port: options.port };
      // A keys file is queried in its own order: the user may have chosen it.
      keys = options.keysFile === undefined
        ? shuffleKeys(syntheticKeys(options.entries), KEY_SHUFFLE_SEED)
        : await readKeysFile(options.keysFile);
      await probe(target);
    }
    const where = formatTarget(target);
    if (!options.json) console.log(`${formatHeader(options, where, keys.length)}\n`);
    const frames = buildQueryFrames(keys, options.pipeline);
    const tally = await runLoad(options, target, frames, interrupt.promise);
    const result = summarize(tally, {
      target: where,
      server: options.port === undefined
        ? { entries: options.entries, args: options.serverArgs }
        : null,
      connections: options.connections,
      pipeline: options.pipeline,
      threads: options.threads,
      reconnect: options.reconnect,
      durationSeconds: options.durationSeconds,
      keys: keys.length,
    });
    console.log(options.json ? JSON.stringify(result) : formatResult(result));
    return result.errors > 0 || result.other > 0 ? 1 : 0;
  } catch (error) {
    if (error instanceof BenchError) {
      console.error(`bench: ${error.message}`);
      return 1;
    }
    throw error;
  } finally {
    Deno.removeSignalListener("SIGINT", onInterrupt);
    await server?.stop();
    if (tempDir !== undefined) await Deno.remove(tempDir, { recursive: true });
  }
}

if (isWorkerScope()) {
  serveAsLoadThread(self as unknown as ThreadScope);
} else if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
