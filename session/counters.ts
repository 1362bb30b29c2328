/**
 * The server's counters, as the serving threads keep them. Each serving
 * thread counts into its own row of one shared `Float64Array`, so counting
 * is a plain increment with no lock or message, and the main thread sums
 * the rows when `/metrics` is scraped (server/metrics.ts renders them). Replies
 * are counted by front end and neutral outcome (wire/front_end.ts).
 *
 * @module
 */

import { OUTCOME_NAMES } from "../wire/front_end.ts";
import { LDAP_OPERATIONS, LDAP_RESULTS, type LdapCounterLayout } from "../wire/ldap.ts";

/** Index of each counter in a thread's row. */
export const Counter = {
  /** Connections open now (a gauge: incremented on open, decremented on close). */
  connectionsOpen: 0,
  /** Connections accepted since start, including those refused as busy. */
  connectionsTotal: 1,
  /** Connections refused with SERVER_BUSY at the connection limit. */
  busyRefusals: 2,
  /** Connections closed for sending nothing for the idle timeout. */
  idleTimeouts: 3,
  /** Connections closed for leaving a frame unfinished for the frame timeout. */
  frameTimeouts: 4,
  /** Connections closed for taking none of their waiting replies for the write timeout. */
  writeTimeouts: 5,
  /** Connections refused with FORBIDDEN: a client not in --allow. */
  refusedNotAllowed: 6,
  /** Queries refused with RATE_LIMITED under --rate-limit. */
  refusedRateLimited: 7,
  /** Queries refused with RATE_LIMITED under --found-limit. */
  refusedFoundLimit: 8,
  /** Connections refused with RATE_LIMITED under --max-connections-per-client. */
  refusedClientConnections: 9,
  /** TLS handshakes completed. */
  tlsHandshakesOk: 10,
  /** TLS handshakes failed for any reason but the client certificate (not TLS, a reset). */
  tlsHandshakesFailed: 11,
  /** TLS handshakes refused for the client certificate: none sent, or not from the client CA. */
  tlsClientCertRefused: 12,
  /** Connections closed for not finishing the TLS handshake within the frame timeout. */
  handshakeTimeouts: 13,
  /** Connections refused with FORBIDDEN: a client beyond loopback in protected mode. */
  refusedProtectedMode: 14,
  /** Connections refused with FORBIDDEN: a PROXY header from a peer not in --trusted-proxy. */
  refusedUntrustedProxy: 15,
  /**
   * Replies sent, by front end and outcome: this index, plus the front end's
   * place in {@linkcode FRONT_END_NAMES} times the number of outcomes, plus
   * the outcome (see {@linkcode outcomeCounters}).
   */
  replies: 16,
} as const;

/** The front ends whose replies are counted, by the name each gives itself. */
export const FRONT_END_NAMES: readonly string[] = ["binary", "ldap"];

/** Where the LDAP front end's own counters lie: operations by kind, then results by code. */
export const LDAP_COUNTERS: LdapCounterLayout = {
  operations: Counter.replies + FRONT_END_NAMES.length * OUTCOME_NAMES.length,
  results: Counter.replies + FRONT_END_NAMES.length * OUTCOME_NAMES.length +
    LDAP_OPERATIONS.length,
};

/** How many counters one thread's row holds. */
export const COUNTERS_PER_THREAD: number = LDAP_COUNTERS.results + LDAP_RESULTS.length;

/** The index of a front end's count of one outcome in a row. */
export function replyCounter(frontEnd: string, outcome: number): number {
  const place = FRONT_END_NAMES.indexOf(frontEnd);
  if (place < 0) throw new RangeError(`No counters are kept for the front end "${frontEnd}".`);
  return Counter.replies + place * OUTCOME_NAMES.length + outcome;
}

/** A front end's replies in a row of counters, by outcome: a view, to count into. */
export function outcomeCounters(row: Float64Array, frontEnd: string): Float64Array {
  const start = replyCounter(frontEnd, 0);
  return row.subarray(start, start + OUTCOME_NAMES.length);
}

/** Makes a shared row of counters for `threads` serving threads. */
export function createCounterTable(threads: number): Float64Array {
  return new Float64Array(new SharedArrayBuffer(threads * COUNTERS_PER_THREAD * 8));
}

/** The counters of one thread: a view of its row in the shared table. */
export function counterRow(table: Float64Array, thread: number): Float64Array {
  return table.subarray(thread * COUNTERS_PER_THREAD, (thread + 1) * COUNTERS_PER_THREAD);
}

/** Sums the rows of all threads. */
export function sumCounters(table: Float64Array): Float64Array {
  const totals = new Float64Array(COUNTERS_PER_THREAD);
  for (let i = 0; i < table.length; i++) totals[i % COUNTERS_PER_THREAD] += table[i];
  return totals;
}
