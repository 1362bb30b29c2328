/**
 * What a load thread counts (replies by status, errors, batch latencies),
 * and how the threads' counts are merged.
 *
 * @module
 */

import { createHistogram, type Histogram, mergeHistogram } from "./histogram.ts";
import { STATUS_NAMES } from "../protocol.ts";

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

/** Sums the replies in a tally. */
export function tallyQueries(tally: Tally): number {
  return tally.statuses.reduce((sum, count) => sum + count, 0);
}
