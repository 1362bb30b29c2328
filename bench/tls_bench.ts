/**
 * Where the OpenSSL engine (transport/tls_connection.ts in the minimal epoll loop of
 * testing/tls_test_server.ts) stands against `Deno.listenTls` answering the same
 * way, and against Redis with `--tls-port` as a reference: throughput in
 * the four scenarios of `compare-redis.py --tls`, driven by the same C load
 * generator (`qrload -t`), and the latency of a new connection's handshake
 * plus first reply.
 *
 * Both addrbook servers here answer every query with a FOUND reply echoing
 * the email (no book lookup), so the numbers are those of the TLS and I/O
 * paths alone. The certificate is RSA 2048, as in compare-redis.py.
 *
 * ```sh
 * deno run -A bench/tls_bench.ts [--duration SECONDS] [--rounds N] [--no-redis] [--servers]
 * ```
 *
 * With `--servers` the targets are instead the real server (`server.ts
 * --tls-cert/--tls-key` with a book of the keys asked for, under `--io
 * epoll` and `--io deno`) and Redis: the issue's stall check (first replies
 * over 20 ms of 40, handshake plus first reply against Redis's) on what
 * operators run.
 *
 * It needs gcc, the OpenSSL headers, `openssl`, and for the reference
 * `redis-server`; it compiles `../shared/tools/qrload.c` into a temp dir.
 * It is a measurement, not a test: run it on a quiet machine.
 *
 * With `--serve-deno-tls --cert FILE --key FILE` it is instead the
 * `Deno.listenTls` server, in a process of its own.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { parseSeconds, parseWholeNumber, UsageError } from "../common/cli_args.ts";
import { Connection } from "../client/connection.ts";
import { describeError } from "../common/errors.ts";
import {
  encodeQuery,
  FrameDecoder,
  HEADER_SIZE,
  MAX_QUERY_BYTES,
  TYPE_QUERY,
} from "../protocol.ts";
import { makeTestPki, type TestPki } from "../testing/pki.ts";
import { LineCollector } from "../testing/processes.ts";
import { REPO_DIR, SERVER_FLAGS } from "../testing/repo.ts";
import { echoReplies, TLS_TEST_SERVER_PROGRAM } from "../testing/tls_test_server.ts";
import { writeAll } from "../common/write_all.ts";

const QRLOAD_SOURCE = `${REPO_DIR}/../shared/tools/qrload.c`;
const KEYS = 1000;
const LATENCY_CONNECTIONS = 40;
/** A first reply slower than this is a stall (the issue's goal: at most 1 in 40). */
const STALL_MS = 20;
const START_MS = 30_000;
const READ_SIZE = 65536;

/** The scenarios of compare-redis.py, as qrload flags. */
const SCENARIOS: readonly (readonly [string, readonly string[]])[] = [
  ["50 connections, 1 in flight", ["-c", "50", "-P", "1"]],
  ["50 connections, 16 pipelined", ["-c", "50", "-P", "16"]],
  ["1 connection", ["-c", "1", "-P", "1"]],
  ["20 clients, new connection per query", ["-c", "20", "-r"]],
];

interface Target {
  name: string;
  port: number;
  /** qrload's wire format. */
  mode: "qr" | "resp";
  /** One request, and how to tell its reply is complete. */
  request: Uint8Array;
  replyComplete: (bytes: Uint8Array, length: number) => boolean;
  stop: () => Promise<void>;
}

interface LoadResult {
  rps: number;
  p50Us: number;
  p99Us: number;
  errors: number;
}

async function main(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      duration: { type: "string", default: "3" },
      rounds: { type: "string", default: "1" },
      "no-redis": { type: "boolean", default: false },
      servers: { type: "boolean", default: false },
      "serve-deno-tls": { type: "boolean", default: false },
      cert: { type: "string" },
      key: { type: "string" },
    },
  });
  if (values["serve-deno-tls"]) {
    if (values.cert === undefined || values.key === undefined) {
      throw new UsageError("--serve-deno-tls needs --cert and --key.");
    }
    return await serveDenoTls(values.cert, values.key);
  }
  const seconds = parseSeconds("--duration", values.duration, { maxSeconds: 600 }) / 1000;
  const rounds = parseWholeNumber("--rounds", values.rounds, 1, 100);
  const dir = await Deno.makeTempDir({ prefix: "addrbook_tls_bench_" });
  try {
    await using pki = await makeTestPki("rsa-2048");
    const qrload = await buildQrload(dir);
    const keysPath = `${dir}/keys.txt`;
    const emails = Array.from({ length: KEYS }, (_, i) => `user${i}@example.com`);
    await Deno.writeTextFile(keysPath, emails.join("\n") + "\n");
    const bookPath = `${dir}/book.csv`;
    await Deno.writeTextFile(
      bookPath,
      ["email,name", ...emails.map((email, i) => `${email},User Number ${i}`)].join("\n") + "\n",
    );
    const serverTarget = (io: string) => () =>
      startDenoProcess(`addrbook server (--io ${io})`, [
        ...SERVER_FLAGS,
        "--port",
        "0",
        "--io",
        io,
        "--data",
        bookPath,
        "--tls-cert",
        pki.server.certificatePath,
        "--tls-key",
        pki.server.keyPath,
      ], replyFrameComplete);
    const engines = [
      () =>
        startDenoProcess("OpenSSL engine (epoll, FFI)", [
          "run",
          "--allow-read",
          "--allow-ffi",
          TLS_TEST_SERVER_PROGRAM,
          "--cert",
          pki.server.certificatePath,
          "--key",
          pki.server.keyPath,
        ]),
      () =>
        startDenoProcess("Deno.listenTls", [
          "run",
          "--allow-net",
          "--allow-read",
          "tls_bench.ts",
          "--serve-deno-tls",
          "--cert",
          pki.server.certificatePath,
          "--key",
          pki.server.keyPath,
        ]),
    ];
    const starters = [
      ...(values.servers ? [serverTarget("epoll"), serverTarget("deno")] : engines),
      ...(values["no-redis"] ? [] : [() => startRedis(pki)]),
    ];
    console.log(
      `# TLS engine benchmark: ${seconds} s per run, median of ${rounds}, ${Deno.build.arch}, RSA 2048\n`,
    );
    console.log(
      "| server | " + SCENARIOS.map(([name]) => name).join(" | ") +
        " | handshake + first reply: qrload -c 1 -r, p50 / p99 | Deno.connectTls: mean / max, over 20 ms of 40" +
        " | Deno.startTls on a TCP_NODELAY socket: same | the project client (Connection.open): same |",
    );
    console.log("| --- ".repeat(SCENARIOS.length + 5) + "|");
    const targets: Target[] = [];
    try {
      for (const start of starters) targets.push(await start());
      const rows = targets.map((): string[] => []);
      // Scenario by scenario, every server in turn and round by round, so that the load of a
      // shared machine falls on all of them alike; the median of the rounds is shown.
      for (const [, flags] of SCENARIOS) {
        const rps = targets.map((): number[] => []);
        const errors = targets.map(() => 0);
        for (let round = 0; round < rounds; round++) {
          for (const [i, target] of targets.entries()) {
            const result = await runQrload(qrload, target, keysPath, seconds, flags);
            rps[i].push(result.rps);
            errors[i] += result.errors;
          }
        }
        targets.forEach((_, i) => {
          rows[i].push(
            `${Math.round(median(rps[i]))} rps${errors[i] ? ` (${errors[i]} errors)` : ""}`,
          );
        });
      }
      for (const [i, target] of targets.entries()) {
        const fresh = await runQrload(qrload, target, keysPath, seconds, ["-c", "1", "-r"]);
        rows[i].push(`${(fresh.p50Us / 1000).toFixed(2)} / ${(fresh.p99Us / 1000).toFixed(2)} ms`);
        for (const noDelay of [false, true]) {
          rows[i].push(describeLatencies(await firstReplyLatencies(target, pki, noDelay)));
        }
        rows[i].push(
          target.mode === "qr"
            ? describeLatencies(await clientFirstReplyLatencies(target, pki))
            : "(speaks RESP)",
        );
        console.log(`| ${target.name} | ${rows[i].join(" | ")} |`);
      }
    } finally {
      for (const target of targets) await target.stop();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function describeLatencies(latencies: number[]): string {
  const mean = latencies.reduce((sum, ms) => sum + ms, 0) / latencies.length;
  const stalls = latencies.filter((ms) => ms > STALL_MS).length;
  return `${mean.toFixed(2)} / ${Math.max(...latencies).toFixed(2)} ms, ${stalls}`;
}

async function buildQrload(dir: string): Promise<string> {
  const output = `${dir}/qrload`;
  const { success, stderr } = await new Deno.Command("gcc", {
    args: ["-O2", "-o", output, QRLOAD_SOURCE, "-lssl", "-lcrypto"],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!success) {
    throw new Error(`gcc could not build ${QRLOAD_SOURCE}: ${new TextDecoder().decode(stderr)}`);
  }
  return output;
}

async function runQrload(
  qrload: string,
  target: Target,
  keysPath: string,
  seconds: number,
  flags: readonly string[],
): Promise<LoadResult> {
  const { stdout } = await new Deno.Command(qrload, {
    args: [
      "-m",
      target.mode,
      "-p",
      String(target.port),
      "-k",
      keysPath,
      "-d",
      String(seconds),
      "-t",
      ...flags,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const text = new TextDecoder().decode(stdout).trim();
  const fields = Object.fromEntries(text.split(/\s+/).map((pair) => pair.split("=")));
  if (fields.rps === undefined) throw new Error(`qrload printed no result: ${text}`);
  return {
    rps: Number(fields.rps),
    p50Us: Number(fields.p50_us),
    p99Us: Number(fields.p99_us),
    errors: Number(fields.errors) + Number(fields.other),
  };
}

/**
 * Handshake plus first reply, in ms, of fresh Deno TLS client connections
 * one after another: `Deno.connectTls` (Nagle on, as it cannot be turned
 * off), or `Deno.startTls` over a TCP connection with TCP_NODELAY.
 */
async function firstReplyLatencies(
  target: Target,
  pki: TestPki,
  noDelay: boolean,
): Promise<number[]> {
  const buffer = new Uint8Array(READ_SIZE);
  const latencies: number[] = [];
  const options = { hostname: "127.0.0.1", port: target.port, caCerts: [pki.ca.certificate] };
  for (let i = 0; i < LATENCY_CONNECTIONS; i++) {
    const started = performance.now();
    let conn: Deno.TlsConn;
    if (noDelay) {
      const tcp = await Deno.connect(options);
      tcp.setNoDelay(true);
      conn = await Deno.startTls(tcp, options);
    } else {
      conn = await Deno.connectTls(options);
    }
    try {
      await writeAll(conn, target.request);
      let length = 0;
      while (!target.replyComplete(buffer, length)) {
        const got = await conn.read(buffer.subarray(length));
        if (got === null) throw new Error(`${target.name} closed before replying.`);
        length += got;
      }
      latencies.push(performance.now() - started);
    } finally {
      conn.close();
    }
  }
  return latencies;
}

/** Handshake plus first reply, in ms, of the project's own client: a fresh connection per lookup. */
async function clientFirstReplyLatencies(target: Target, pki: TestPki): Promise<number[]> {
  const latencies: number[] = [];
  const endpoint = { hostname: "127.0.0.1", port: target.port };
  for (let i = 0; i < LATENCY_CONNECTIONS; i++) {
    const started = performance.now();
    const connection = await Connection.open(endpoint, { caCerts: [pki.ca.certificate] });
    try {
      await connection.lookup("user1@example.com");
      latencies.push(performance.now() - started);
    } finally {
      connection.close();
    }
  }
  return latencies;
}

const QR_REQUEST = encodeQuery("user1@example.com");

/** Whether a whole reply frame is in: its header says how long it is. */
function replyFrameComplete(bytes: Uint8Array, length: number): boolean {
  if (length < HEADER_SIZE) return false;
  return length >= HEADER_SIZE + new DataView(bytes.buffer, bytes.byteOffset).getUint32(1);
}

/** The echo servers' reply to {@linkcode QR_REQUEST}: header, status byte, then the email. */
function echoReplyComplete(_: Uint8Array, length: number): boolean {
  return length >= QR_REQUEST.length + 1;
}

/** Starts a Deno program that prints `listening on 127.0.0.1:PORT` (or `tls://...`) on stderr. */
async function startDenoProcess(
  name: string,
  args: string[],
  replyComplete: Target["replyComplete"] = echoReplyComplete,
): Promise<Target> {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: REPO_DIR,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new LineCollector(child.stderr);
  const stop = async () => {
    child.kill("SIGKILL");
    await child.status;
    await stderr.done;
  };
  try {
    const { match } = await stderr.waitFor(
      /listening on (?:tls:\/\/)?127\.0\.0\.1:(\d+)/,
      0,
      START_MS,
    );
    return { name, port: Number(match[1]), mode: "qr", request: QR_REQUEST, replyComplete, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

async function startRedis(pki: TestPki): Promise<Target> {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  const child = new Deno.Command("redis-server", {
    args: [
      "--port",
      "0",
      "--tls-port",
      String(port),
      "--tls-cert-file",
      pki.server.certificatePath,
      "--tls-key-file",
      pki.server.keyPath,
      "--tls-auth-clients",
      "no",
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const stdout = new LineCollector(child.stdout);
  const stop = async () => {
    child.kill("SIGKILL");
    await child.status;
    await stdout.done;
  };
  try {
    await stdout.waitFor(/Ready to accept connections/, 0, START_MS);
    const request = new TextEncoder().encode("*2\r\n$3\r\nGET\r\n$17\r\nuser1@example.com\r\n");
    return {
      name: "Redis 7 --tls-port (reference)",
      port,
      mode: "resp",
      request,
      // "$-1\r\n": the key is not there, which costs Redis the same lookup.
      replyComplete: (bytes, length) => length >= 2 && bytes[length - 1] === 0x0a,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** The `Deno.listenTls` server: the same echo answers, one async loop per connection. */
async function serveDenoTls(certPath: string, keyPath: string): Promise<void> {
  const listener = Deno.listenTls({
    hostname: "127.0.0.1",
    port: 0,
    cert: await Deno.readTextFile(certPath),
    key: await Deno.readTextFile(keyPath),
  });
  console.error(`listening on 127.0.0.1:${listener.addr.port}`);
  for await (const conn of listener) void answer(conn);
}

async function answer(conn: Deno.TlsConn): Promise<void> {
  const decoder = new FrameDecoder({ type: TYPE_QUERY, maxPayload: MAX_QUERY_BYTES });
  const buffer = new Uint8Array(READ_SIZE);
  try {
    for (let got = await conn.read(buffer); got !== null; got = await conn.read(buffer)) {
      await writeAll(conn, echoReplies(decoder, buffer, got));
    }
  } catch {
    // A client that went away or sent garbage: the benchmark counts its errors itself.
  } finally {
    conn.close();
  }
}

if (import.meta.main) {
  try {
    await main(Deno.args);
  } catch (error) {
    console.error(`tls_bench: ${describeError(error)}`);
    Deno.exit(error instanceof UsageError ? 2 : 1);
  }
}
