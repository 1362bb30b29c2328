/**
 * The Prometheus text rendering of the server's counters (session/counters.ts), of
 * the figures the main thread keeps (the book, reloads), of the release
 * (`addrbook_build_info`) and of the process's own figures (server/process_metrics.ts).
 *
 * @module
 */

import { Counter, FRONT_END_NAMES, LDAP_COUNTERS, replyCounter } from "../session/counters.ts";
import { LDAP_OPERATIONS, LDAP_RESULTS } from "../wire/ldap.ts";
import { OUTCOME_NAMES } from "../wire/front_end.ts";
import type { ProcessFigures } from "./process_metrics.ts";
import { VERSION } from "../common/version.ts";

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

/**
 * Renders the counters in the Prometheus text exposition format (version
 * 0.0.4), with the process's figures when there are any.
 */
export function renderPrometheus(
  totals: Float64Array,
  book: BookFigures,
  process?: ProcessFigures,
): string {
  const lines: string[] = [];
  const metric: MetricWriter = (name, type, help, samples) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) lines.push(`${name}${labels} ${sampleValue(value)}`);
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
      ['{reason="not_allowed"}', totals[Counter.refusedNotAllowed]],
      ['{reason="protected_mode"}', totals[Counter.refusedProtectedMode]],
      ['{reason="untrusted_proxy"}', totals[Counter.refusedUntrustedProxy]],
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
  metric("addrbook_ldap_operations_total", "counter", "LDAP operations received, by kind.", [
    ...LDAP_OPERATIONS.map((operation, i): [string, number] => [
      `{operation="${operation}"}`,
      totals[LDAP_COUNTERS.operations + i],
    ]),
  ]);
  metric("addrbook_ldap_results_total", "counter", "LDAP results sent, by result code.", [
    ...LDAP_RESULTS.map(([code, name], i): [string, number] => [
      `{code="${code}",result="${name}"}`,
      totals[LDAP_COUNTERS.results + i],
    ]),
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
  metric("addrbook_build_info", "gauge", "The release running, and the Deno it runs on.", [
    [`{version="${labelValue(VERSION)}",deno="${labelValue(Deno.version.deno)}"}`, 1],
  ]);
  if (process !== undefined) renderProcess(metric, process);
  return lines.join("\n") + "\n";
}

/** Writes one metric: its name, type, help and samples (labels as written, and value). */
type MetricWriter = (name: string, type: string, help: string, samples: [string, number][]) => void;

/** The process's figures, named and described as Prometheus's client libraries do. */
function renderProcess(metric: MetricWriter, process: ProcessFigures): void {
  metric(
    "process_start_time_seconds",
    "gauge",
    "Start time of the process since unix epoch in seconds.",
    [["", process.startTimeSeconds]],
  );
  metric("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", [
    ["", process.residentMemoryBytes],
  ]);
  metric(
    "process_cpu_seconds_total",
    "counter",
    "Total user and system CPU time spent in seconds.",
    [
      ["", process.cpuSeconds],
    ],
  );
  metric("process_open_fds", "gauge", "Number of open file descriptors.", [
    ["", process.openFds],
  ]);
  metric("process_max_fds", "gauge", "Maximum number of open file descriptors.", [
    ["", process.maxFds],
  ]);
}

/** A sample's value as the text format spells it: infinities are `+Inf` and `-Inf`. */
function sampleValue(value: number): string {
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

/** Escapes a label value as the text format requires (backslash, quote, line feed). */
function labelValue(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => c === "\n" ? "\\n" : `\\${c}`);
}
