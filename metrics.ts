/**
 * Server counters and their Prometheus text rendering.
 *
 * Each serving thread counts into its own row of one shared `Float64Array`,
 * so counting is a plain increment with no lock or message, and the main
 * thread sums the rows when `/metrics` is scraped.
 *
 * @module
 */

import { OUTCOME_NAMES } from "./front_end.ts";

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
  /** Connections refused with FORBIDDEN (--allow, protected mode, an untrusted proxy). */
  refusedForbidden: 6,
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
  /**
   * Replies sent, by front end and outcome: this index, plus the front end's
   * place in {@linkcode FRONT_END_NAMES} times the number of outcomes, plus
   * the outcome (see {@linkcode outcomeCounters}).
   */
  replies: 14,
} as const;

/** The front ends whose replies are counted, by the name each gives itself. */
export const FRONT_END_NAMES: readonly string[] = ["binary"];

/** How many counters one thread's row holds. */
export const COUNTERS_PER_THREAD: number = Counter.replies +
  FRONT_END_NAMES.length * OUTCOME_NAMES.length;

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

/** Figures kept by the main thread rather than the serving threads. */
export interface BookFigures {
  /** Entries in the book being served. */
  entries: number;
  /** Reloads that replaced the book. */
  reloadsOk: number;
  /** Reloads that failed and kept the old book. */
  reloadsFailed: number;
  /**
   * The SHA-256 of the entries served (hex), when known: equal on two
   * replicas exactly when they serve the same entries.
   */
  fingerprint?: string;
  /** Clients tracked by the per-client limits, when any limit is on. */
  trackedClients?: number;
}

/** Renders the counters in the Prometheus text exposition format (version 0.0.4). */
export function renderPrometheus(totals: Float64Array, book: BookFigures): string {
  const lines: string[] = [];
  const metric = (name: string, type: string, help: string, samples: [string, number][]) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) lines.push(`${name}${labels} ${value}`);
  };
  metric("addrbook_connections_open", "gauge", "Connections open now.", [
    ["", totals[Counter.connectionsOpen]],
  ]);
  metric("addrbook_connections_total", "counter", "Connections accepted since start.", [
    ["", totals[Counter.connectionsTotal]],
  ]);
  metric(
    "addrbook_replies_total",
    "counter",
    "Replies sent, by front end and outcome.",
    FRONT_END_NAMES.flatMap((frontEnd) =>
      OUTCOME_NAMES.map((name, outcome): [string, number] => [
        `{front_end="${frontEnd}",status="${name}"}`,
        totals[replyCounter(frontEnd, outcome)],
      ])
    ),
  );
  metric(
    "addrbook_busy_refusals_total",
    "counter",
    "Connections refused at the connection limit.",
    [["", totals[Counter.busyRefusals]]],
  );
  metric("addrbook_timeouts_total", "counter", "Connections closed by a timeout, by kind.", [
    ['{kind="idle"}', totals[Counter.idleTimeouts]],
    ['{kind="frame"}', totals[Counter.frameTimeouts]],
    ['{kind="write"}', totals[Counter.writeTimeouts]],
    ['{kind="handshake"}', totals[Counter.handshakeTimeouts]],
  ]);
  metric(
    "addrbook_refusals_total",
    "counter",
    "Connections and queries refused by the access rules and per-client limits, by reason.",
    [
      ['{reason="forbidden"}', totals[Counter.refusedForbidden]],
      ['{reason="rate_limited"}', totals[Counter.refusedRateLimited]],
      ['{reason="found_limit"}', totals[Counter.refusedFoundLimit]],
      ['{reason="client_connections"}', totals[Counter.refusedClientConnections]],
    ],
  );
  metric("addrbook_tls_handshakes_total", "counter", "TLS handshakes, by result.", [
    ['{result="ok"}', totals[Counter.tlsHandshakesOk]],
    ['{result="failed"}', totals[Counter.tlsHandshakesFailed]],
    ['{result="client_cert_refused"}', totals[Counter.tlsClientCertRefused]],
  ]);
  if (book.trackedClients !== undefined) {
    metric("addrbook_tracked_clients", "gauge", "Clients tracked by the per-client limits.", [
      ["", book.trackedClients],
    ]);
  }
  metric("addrbook_reloads_total", "counter", "Book reloads, by result.", [
    ['{result="ok"}', book.reloadsOk],
    ['{result="failed"}', book.reloadsFailed],
  ]);
  metric("addrbook_book_entries", "gauge", "Entries in the book being served.", [
    ["", book.entries],
  ]);
  if (book.fingerprint !== undefined) {
    metric("addrbook_book_info", "gauge", "The book being served, by its entries' SHA-256.", [
      [`{sha256="${labelValue(book.fingerprint)}"}`, 1],
    ]);
  }
  return lines.join("\n") + "\n";
}

/** Escapes a label value as the text format requires (backslash, quote, line feed). */
function labelValue(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => c === "\n" ? "\\n" : `\\${c}`);
}
