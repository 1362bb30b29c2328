/**
 * The load generator's results: the numbers of a run from its tally, and
 * how they are printed, as text or as one JSON object.
 *
 * @module
 */

import type { BenchOptions } from "./args.ts";
import { formatCount, formatMicros } from "./format.ts";
import { percentile } from "./histogram.ts";
import { type Tally, tallyQueries } from "./tally.ts";
import { STATUS_FOUND, STATUS_NAMES, STATUS_NOT_FOUND } from "../protocol.ts";

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
