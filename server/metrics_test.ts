import assert from "node:assert/strict";
import { LDAP_OPERATIONS, LDAP_RESULTS } from "../wire/ldap.ts";
import { Counter, counterRow, createCounterTable, sumCounters } from "../session/counters.ts";
import { type BookFigures, renderPrometheus } from "./metrics.ts";
import { OUTCOME_NAMES } from "../wire/front_end.ts";
import { VERSION } from "../common/version.ts";

/** A parsed Prometheus text exposition: help and type per metric, and every sample. */
interface Exposition {
  help: Map<string, string>;
  type: Map<string, string>;
  /** Sample value by series: the metric name with its labels, as written. */
  samples: Map<string, number>;
  /** Metric names in the order their TYPE lines appear. */
  order: string[];
}

const METRIC_NAME = "[a-zA-Z_:][a-zA-Z0-9_:]*";
const SAMPLE_LINE = new RegExp(
  `^(${METRIC_NAME})(\\{[a-zA-Z_][a-zA-Z0-9_]*="[^"\\\\\\n]*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\\\\\n]*")*\\})? (\\S+)$`,
);

/**
 * Parses the text format line by line, checking as it goes that each
 * metric's HELP and TYPE come once, before its samples, and that each
 * sample's value is a number.
 */
function parseExposition(text: string): Exposition {
  assert.ok(text.endsWith("\n"), "the exposition ends with a newline");
  const result: Exposition = { help: new Map(), type: new Map(), samples: new Map(), order: [] };
  for (const line of text.slice(0, -1).split("\n")) {
    let match;
    if ((match = line.match(new RegExp(`^# HELP (${METRIC_NAME}) (.+)$`)))) {
      assert.ok(!result.help.has(match[1]), `one HELP line for ${match[1]}`);
      assert.ok(!result.type.has(match[1]), `HELP before TYPE for ${match[1]}`);
      result.help.set(match[1], match[2]);
    } else if ((match = line.match(new RegExp(`^# TYPE (${METRIC_NAME}) (counter|gauge)$`)))) {
      assert.ok(!result.type.has(match[1]), `one TYPE line for ${match[1]}`);
      result.type.set(match[1], match[2]);
      result.order.push(match[1]);
    } else if ((match = line.match(SAMPLE_LINE))) {
      const [, name, labels = "", value] = match;
      assert.equal(result.order.at(-1), name, `sample ${line} follows its own TYPE line`);
      assert.ok(result.help.has(name), `sample ${line} has a HELP line`);
      assert.match(value, /^-?\d+(\.\d+)?(e[+-]?\d+)?$|^NaN$|^[+-]Inf$/);
      const series = name + labels;
      assert.ok(!result.samples.has(series), `one sample for ${series}`);
      result.samples.set(series, value === "+Inf" ? Infinity : Number(value));
    } else {
      assert.fail(`not a line of the Prometheus text format: ${JSON.stringify(line)}`);
    }
  }
  return result;
}

const NO_BOOK: BookFigures = { entries: 0, reloadsOk: 0, reloadsFailed: 0 };

// --- The Prometheus rendering ---

Deno.test("renderPrometheus writes HELP and TYPE for every metric, with the right types", () => {
  const exposition = parseExposition(renderPrometheus(sumCounters(createCounterTable(1)), NO_BOOK));
  assert.deepEqual(exposition.order, [
    "addrbook_connections_open",
    "addrbook_connections_total",
    "addrbook_replies_total",
    "addrbook_busy_refusals_total",
    "addrbook_timeouts_total",
    "addrbook_refusals_total",
    "addrbook_tls_handshakes_total",
    "addrbook_ldap_operations_total",
    "addrbook_ldap_results_total",
    "addrbook_reloads_total",
    "addrbook_book_entries",
    "addrbook_build_info",
  ]);
  assert.deepEqual(Object.fromEntries(exposition.type), {
    addrbook_connections_open: "gauge",
    addrbook_connections_total: "counter",
    addrbook_replies_total: "counter",
    addrbook_busy_refusals_total: "counter",
    addrbook_timeouts_total: "counter",
    addrbook_refusals_total: "counter",
    addrbook_tls_handshakes_total: "counter",
    addrbook_ldap_operations_total: "counter",
    addrbook_ldap_results_total: "counter",
    addrbook_reloads_total: "counter",
    addrbook_book_entries: "gauge",
    addrbook_build_info: "gauge",
  });
  for (const [name, type] of exposition.type) {
    // Prometheus naming: counters end in _total, gauges do not.
    assert.equal(name.endsWith("_total"), type === "counter", name);
    assert.ok(exposition.help.get(name)!.length > 0);
  }
});

Deno.test("renderPrometheus writes the summed counters and the book figures as samples", () => {
  const table = createCounterTable(2);
  const [a, b] = [counterRow(table, 0), counterRow(table, 1)];
  a[Counter.connectionsOpen] = 2;
  b[Counter.connectionsOpen] = 1;
  a[Counter.connectionsTotal] = 10;
  b[Counter.connectionsTotal] = 32;
  b[Counter.busyRefusals] = 4;
  a[Counter.idleTimeouts] = 5;
  b[Counter.frameTimeouts] = 6;
  a[Counter.writeTimeouts] = 7;
  b[Counter.handshakeTimeouts] = 12;
  a[Counter.refusedNotAllowed] = 8;
  b[Counter.refusedProtectedMode] = 13;
  a[Counter.refusedUntrustedProxy] = 14;
  b[Counter.refusedRateLimited] = 9;
  a[Counter.refusedFoundLimit] = 10;
  b[Counter.refusedClientConnections] = 11;
  OUTCOME_NAMES.forEach((_, outcome) => {
    a[Counter.replies + outcome] = 100 + outcome;
    b[Counter.replies + outcome] = 1000 * (outcome + 1);
  });
  const text = renderPrometheus(sumCounters(table), {
    entries: 50,
    reloadsOk: 3,
    reloadsFailed: 1,
    trackedClients: 12,
  });
  const { samples } = parseExposition(text);
  samples.delete(`addrbook_build_info{version="${VERSION}",deno="${Deno.version.deno}"}`);
  assert.deepEqual(Object.fromEntries(samples), {
    "addrbook_connections_open": 3,
    "addrbook_connections_total": 42,
    'addrbook_replies_total{front_end="binary",status="FOUND"}': 1100,
    'addrbook_replies_total{front_end="binary",status="NOT_FOUND"}': 2101,
    'addrbook_replies_total{front_end="binary",status="BAD_REQUEST"}': 3102,
    'addrbook_replies_total{front_end="binary",status="PROTOCOL_ERROR"}': 4103,
    'addrbook_replies_total{front_end="binary",status="SERVER_BUSY"}': 5104,
    'addrbook_replies_total{front_end="binary",status="FORBIDDEN"}': 6105,
    'addrbook_replies_total{front_end="binary",status="RATE_LIMITED"}': 7106,
    'addrbook_replies_total{front_end="binary",status="OTHER"}': 8107,
    ...Object.fromEntries(
      OUTCOME_NAMES.map((name) => [`addrbook_replies_total{front_end="ldap",status="${name}"}`, 0]),
    ),
    "addrbook_busy_refusals_total": 4,
    'addrbook_timeouts_total{kind="idle"}': 5,
    'addrbook_timeouts_total{kind="frame"}': 6,
    'addrbook_timeouts_total{kind="write"}': 7,
    'addrbook_timeouts_total{kind="handshake"}': 12,
    'addrbook_refusals_total{reason="not_allowed"}': 8,
    'addrbook_refusals_total{reason="protected_mode"}': 13,
    'addrbook_refusals_total{reason="untrusted_proxy"}': 14,
    'addrbook_refusals_total{reason="rate_limited"}': 9,
    'addrbook_refusals_total{reason="found_limit"}': 10,
    'addrbook_refusals_total{reason="client_connections"}': 11,
    'addrbook_tls_handshakes_total{result="ok"}': 0,
    'addrbook_tls_handshakes_total{result="failed"}': 0,
    'addrbook_tls_handshakes_total{result="client_cert_refused"}': 0,
    ...Object.fromEntries(
      LDAP_OPERATIONS.map((op) => [`addrbook_ldap_operations_total{operation="${op}"}`, 0]),
    ),
    ...Object.fromEntries(
      LDAP_RESULTS.map(([code, name]) => [
        `addrbook_ldap_results_total{code="${code}",result="${name}"}`,
        0,
      ]),
    ),
    'addrbook_reloads_total{result="ok"}': 3,
    'addrbook_reloads_total{result="failed"}': 1,
    "addrbook_book_entries": 50,
    "addrbook_tracked_clients": 12,
  });
  // Whole counts are written as integers, as Prometheus tools expect.
  assert.match(text, /^addrbook_connections_total 42$/m);
  assert.match(text, /^addrbook_replies_total\{front_end="binary",status="SERVER_BUSY"\} 5104$/m);
});

Deno.test("renderPrometheus writes large counts as plain integers", () => {
  const totals = sumCounters(createCounterTable(1));
  totals[Counter.connectionsTotal] = 2 ** 53;
  const text = renderPrometheus(totals, { entries: 1_000_000, reloadsOk: 0, reloadsFailed: 0 });
  assert.match(text, /^addrbook_connections_total 9007199254740992$/m);
  assert.match(text, /^addrbook_book_entries 1000000$/m);
  parseExposition(text);
});

const SHA256_OF_NOTHING = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

Deno.test("renderPrometheus writes the book's fingerprint as addrbook_book_info when it is known", () => {
  const totals = sumCounters(createCounterTable(1));
  const text = renderPrometheus(totals, { ...NO_BOOK, fingerprint: SHA256_OF_NOTHING });
  const exposition = parseExposition(text);
  assert.equal(exposition.type.get("addrbook_book_info"), "gauge");
  assert.equal(exposition.samples.get(`addrbook_book_info{sha256="${SHA256_OF_NOTHING}"}`), 1);
  assert.match(text, new RegExp(`^addrbook_book_info\\{sha256="${SHA256_OF_NOTHING}"\\} 1$`, "m"));
});

Deno.test("renderPrometheus leaves addrbook_book_info out when no fingerprint is known", () => {
  const text = renderPrometheus(sumCounters(createCounterTable(1)), NO_BOOK);
  assert.doesNotMatch(text, /addrbook_book_info/);
});

Deno.test("renderPrometheus counts TLS handshakes by result", () => {
  const table = createCounterTable(2);
  counterRow(table, 0)[Counter.tlsHandshakesOk] = 3;
  counterRow(table, 1)[Counter.tlsHandshakesOk] = 2;
  counterRow(table, 1)[Counter.tlsHandshakesFailed] = 1;
  counterRow(table, 0)[Counter.tlsClientCertRefused] = 4;
  const text = renderPrometheus(sumCounters(table), NO_BOOK);
  assert.match(text, /^addrbook_tls_handshakes_total\{result="ok"\} 5$/m);
  assert.match(text, /^addrbook_tls_handshakes_total\{result="failed"\} 1$/m);
  assert.match(text, /^addrbook_tls_handshakes_total\{result="client_cert_refused"\} 4$/m);
});

Deno.test("renderPrometheus writes the release and the Deno it runs on as addrbook_build_info", () => {
  const text = renderPrometheus(sumCounters(createCounterTable(1)), NO_BOOK);
  const { samples } = parseExposition(text);
  assert.equal(
    samples.get(`addrbook_build_info{version="${VERSION}",deno="${Deno.version.deno}"}`),
    1,
  );
});

Deno.test("renderPrometheus writes the process's figures under Prometheus's names, when given", () => {
  const text = renderPrometheus(sumCounters(createCounterTable(1)), NO_BOOK, {
    startTimeSeconds: 1796592188.25,
    residentMemoryBytes: 52_428_800,
    cpuSeconds: 1.5,
    openFds: 23,
    maxFds: Infinity,
  });
  const { samples, type } = parseExposition(text);
  assert.deepEqual(
    Object.fromEntries([...samples].filter(([series]) => series.startsWith("process_"))),
    {
      process_start_time_seconds: 1796592188.25,
      process_resident_memory_bytes: 52_428_800,
      process_cpu_seconds_total: 1.5,
      process_open_fds: 23,
      process_max_fds: Infinity,
    },
  );
  assert.equal(type.get("process_cpu_seconds_total"), "counter");
  // The text format spells an unlimited descriptor count +Inf.
  assert.match(text, /^process_max_fds \+Inf$/m);
  assert.doesNotMatch(renderPrometheus(sumCounters(createCounterTable(1)), NO_BOOK), /process_/);
});
