/**
 * The addrbook server: serves an address book over TCP (or TLS) with the
 * protocol in PROTOCOL.md.
 *
 * Run it with `deno task server --help`, or start one in-process:
 *
 * ```ts
 * import { startServer } from "./server.ts";
 * import { loadBook } from "./load_book.ts";
 *
 * const { book } = await loadBook("data/addressbook.csv");
 * const server = await startServer({ book, port: 0 });
 * console.log(server.addr.port);
 * await server.close();
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import type { AddressBook } from "./addressbook.ts";
import { BookError, type BookFormat, type DuplicatePolicy, loadBook } from "./load_book.ts";
import { type LogFormat, Logger, type LogLevel } from "./log.ts";
import {
  type BookFigures,
  counterRow,
  createCounterTable,
  renderPrometheus,
  sumCounters,
} from "./metrics.ts";
import { ConnectionService } from "./driver_deno.ts";
import { formatAddress } from "./net_address.ts";
import { DEFAULT_LIMITS, type ServiceLimits } from "./session.ts";
import { encodeSockaddr, openLibc } from "./libc.ts";
import { resolveUserPath } from "./user_path.ts";
import type { IoKind, WorkerCommand, WorkerReport, WorkerStart } from "./server_worker.ts";

/** The default book, shipped beside this module and embedded in the compiled server. */
export const DEFAULT_DATA_PATH = `${import.meta.dirname}/data/addressbook.csv`;

/** TLS certificate chain and private key, both PEM text. */
export interface TlsFiles {
  /** The certificate chain, PEM. */
  cert: string;
  /** The private key, PEM. */
  key: string;
}

/** Options for {@linkcode startServer}. */
export interface ServerOptions {
  /** The book to serve. */
  book: AddressBook;
  /** Address to listen on; 127.0.0.1 by default. */
  hostname?: string;
  /** Port to listen on; 0 picks a free one. 8080 by default. */
  port?: number;
  /** Loads a fresh book for {@linkcode ServerHandle.reload}; without it reload is refused. */
  loadBook?: () => Promise<AddressBook>;
  /** Serving threads sharing the port; 1 by default. More than 1 needs `--unstable-net`. */
  workers?: number;
  /**
   * The event loop for plain TCP: `epoll` (Linux, needs `--allow-ffi`), `deno`
   * (`Deno.listen`, everywhere), or `auto` (the default: epoll where it can).
   */
  io?: "auto" | IoKind;
  /** Limits on each peer; each unset one takes its default. */
  limits?: Partial<ServiceLimits>;
  /** Serve TLS instead of plain TCP. */
  tls?: TlsFiles;
  /** Serve `GET /metrics` (Prometheus text) on this port of `hostname`; off when unset. */
  metricsPort?: number;
  /** Where events are logged, worker threads' too; a text logger on stderr by default. */
  log?: Logger;
}

/** A running server. */
export interface ServerHandle {
  /** The address it listens on, with the real port when 0 was asked for. */
  readonly addr: Deno.NetAddr;
  /** The metrics endpoint's address, when it serves one. */
  readonly metricsAddr: Deno.NetAddr | undefined;
  /** Entries in the book being served. */
  readonly entries: number;
  /** The event loop serving plain connections. */
  readonly io: IoKind;
  /** Loads the book again with `loadBook`; on failure keeps the old one and throws. */
  reload(): Promise<void>;
  /** The counters in Prometheus text format, as `/metrics` serves them. */
  metrics(): string;
  /**
   * Stops accepting, answers what open connections had sent, closes them;
   * connections still open after `timeoutMs` are cut.
   */
  shutdown(timeoutMs?: number): Promise<void>;
  /** Closes the listener and every connection at once. */
  close(): Promise<void>;
}

/** The process's answer to a failure it expects, with the exit code to leave with. */
export class StartError extends Error {
  /** The exit code: 1 for a bad book or a busy port, 2 for bad usage. */
  readonly exitCode: number;

  /** Creates the error with a one-sentence message. */
  constructor(message: string, exitCode = 1) {
    super(message);
    this.name = "StartError";
    this.exitCode = exitCode;
  }
}

/**
 * Starts serving `options.book`. Resolves once every serving thread listens.
 *
 * With the epoll event loop (plain TCP on Linux, see driver_epoll.ts) every
 * serving thread is a worker and this thread only supervises; with
 * `Deno.listen` (TLS, other platforms) this thread serves too.
 *
 * @throws {StartError} when the address cannot be listened on.
 */
export async function startServer(options: ServerOptions): Promise<ServerHandle> {
  const hostname = options.hostname ?? "127.0.0.1";
  const workers = options.workers ?? 1;
  const log = options.log ?? new Logger();
  const io = chooseIo(options.io ?? "auto", hostname, options.tls);
  const counters = createCounterTable(workers);
  let book = options.book;
  const figures: BookFigures = { entries: book.size, reloadsOk: 0, reloadsFailed: 0 };
  const start: WorkerStart = {
    kind: "start",
    io,
    hostname,
    port: options.port ?? 8080,
    sharing: workers > 1 ? "first" : "alone",
    tls: options.tls,
    book: book.toShared(),
    limits: { ...DEFAULT_LIMITS, ...options.limits },
    counters,
    thread: 0,
    openConnections: new Int32Array(new SharedArrayBuffer(4)),
    logLevel: log.level,
  };

  // Under Deno.listen the first thread is this one; under epoll it is a worker.
  let local: ConnectionService | undefined;
  const threads: WorkerThread[] = [];
  let port: number;
  try {
    if (io === "deno") {
      const listener = listen(hostname, start.port, start.sharing, options.tls);
      port = (listener.addr as Deno.NetAddr).port;
      local = new ConnectionService(listener, {
        book,
        limits: start.limits,
        counters: counterRow(counters, 0),
        openConnections: start.openConnections,
        log,
      });
    } else {
      const first = await startWorker(start, log);
      threads.push(first);
      port = first.port;
    }
    const others = await Promise.all(
      Array.from(
        { length: workers - 1 },
        (_, i) => startWorker({ ...start, port, sharing: "join", thread: i + 1 }, log),
      ),
    );
    threads.push(...others);
  } catch (error) {
    await local?.abort();
    await Promise.all(threads.map((thread) => thread.abort()));
    throw error;
  }

  const metrics = () => renderPrometheus(sumCounters(counters), figures);
  let metricsServer: ReturnType<typeof serveMetrics> | undefined;
  try {
    if (options.metricsPort !== undefined) {
      metricsServer = serveMetrics(hostname, options.metricsPort, metrics);
    }
  } catch (error) {
    await local?.abort();
    await Promise.all(threads.map((thread) => thread.abort()));
    throw error;
  }
  // Closing twice (shutdown, then close in a finally) must not wait on threads already gone.
  let closing: Promise<void> | undefined;
  const abortAll = () =>
    closing ??= (async () => {
      await local?.abort();
      await Promise.all(threads.map((thread) => thread.abort()));
      await metricsServer?.server.shutdown();
    })();

  return {
    addr: { transport: "tcp", hostname, port },
    io,
    metricsAddr: metricsServer?.addr,
    get entries() {
      return figures.entries;
    },
    async reload() {
      if (!options.loadBook) throw new Error("This server has no book file to reload.");
      try {
        book = await options.loadBook();
      } catch (error) {
        figures.reloadsFailed++;
        throw error;
      }
      local?.setBook(book);
      // Resolve only once every thread answers from the new book.
      await Promise.all(threads.map((thread) => thread.setBook(book)));
      figures.entries = book.size;
      figures.reloadsOk++;
    },
    metrics,
    async shutdown(timeoutMs = 5000) {
      const drained = Promise.all([local?.shutdown(), ...threads.map((t) => t.shutdown())]);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timedOut = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), timeoutMs);
      });
      const result = await Promise.race([drained, timedOut]);
      clearTimeout(timer);
      if (result === "timeout") {
        log.warn("shutdown timeout: closing the connections still open", {
          connections: Atomics.load(start.openConnections, 0),
        });
      }
      await abortAll();
    },
    close: abortAll,
  };
}

/** Which event loop serves plain connections: epoll where it can, else Deno.listen. */
function chooseIo(
  wanted: "auto" | IoKind,
  hostname: string,
  tls: TlsFiles | undefined,
): IoKind {
  const epollPossible = tls === undefined && encodeSockaddr(hostname, 0) !== undefined &&
    openLibc() !== undefined;
  if (wanted === "epoll" && !epollPossible) {
    throw new StartError(
      "--io epoll needs Linux with glibc, --allow-ffi, an IP address for --host, and no TLS.",
      2,
    );
  }
  return wanted === "auto" ? (epollPossible ? "epoll" : "deno") : wanted;
}

/** How a thread binds its listener. */
export type PortSharing =
  /** One thread: a plain bind. */
  | "alone"
  /** The first of several threads: a bind that fails if anyone else holds the port. */
  | "first"
  /** A later thread, joining the first on its port. */
  | "join";

/** Listens on the address, with SO_REUSEPORT when threads share it; throws StartError. */
export function listen(
  hostname: string,
  port: number,
  sharing: PortSharing,
  tls: TlsFiles | undefined,
): Deno.Listener {
  const where = formatAddress(hostname, port);
  const sharePort = sharing !== "alone";
  try {
    if (sharing === "first" && port !== 0) {
      // SO_REUSEPORT would let us join another server already on this port
      // and split its traffic; refuse to, as a plain bind would.
      Deno.listen({ hostname, port }).close();
    }
    const options = { hostname, port, reusePort: sharePort || undefined };
    return tls ? Deno.listenTls({ ...options, ...tls }) : Deno.listen(options);
  } catch (error) {
    if (error instanceof Deno.errors.AddrInUse) {
      throw new StartError(`Cannot listen on ${where}: the port is already in use.`);
    }
    if (error instanceof Deno.errors.AddrNotAvailable) {
      throw new StartError(`Cannot listen on ${where}: no such address on this machine.`);
    }
    if (error instanceof Deno.errors.PermissionDenied) {
      throw new StartError(`Cannot listen on ${where}: permission denied.`);
    }
    if (tls && error instanceof Error) {
      throw new StartError(`Cannot use the TLS certificate or key: ${error.message}`);
    }
    throw new StartError(`Cannot listen on ${where}: ${(error as Error).message}`);
  }
}

function serveMetrics(hostname: string, port: number, render: () => string) {
  let addr: Deno.NetAddr | undefined;
  try {
    const server = Deno.serve({
      hostname,
      port,
      onListen: (a) => addr = a as Deno.NetAddr,
    }, (request) => {
      const path = new URL(request.url).pathname;
      if (path !== "/metrics") {
        return new Response("Not found: the metrics are at GET /metrics.\n", { status: 404 });
      }
      if (request.method !== "GET" && request.method !== "HEAD") {
        return new Response("Only GET reads the metrics.\n", {
          status: 405,
          headers: { allow: "GET, HEAD" },
        });
      }
      return new Response(render(), {
        headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
      });
    });
    return { server, addr: addr ?? server.addr as Deno.NetAddr };
  } catch (error) {
    if (error instanceof Deno.errors.AddrInUse) {
      throw new StartError(
        `Cannot serve metrics on ${formatAddress(hostname, port)}: the port is already in use.`,
      );
    }
    throw error;
  }
}

interface WorkerThread {
  /** The port it listens on. */
  port: number;
  /** Hands it a new book; resolves once it answers from it. */
  setBook(book: AddressBook): Promise<void>;
  /** Drains its connections, as ConnectionService.shutdown does. */
  shutdown(): Promise<void>;
  /** Closes its sockets at once and ends the thread. */
  abort(): Promise<void>;
}

/** Starts one serving worker thread; resolves once it listens. */
function startWorker(start: WorkerStart, log: Logger): Promise<WorkerThread> {
  const worker = new Worker(new URL("./server_worker.ts", import.meta.url), { type: "module" });
  // Counts commands posted, so a worker busy in epoll_wait knows to look for them.
  const mailbox = new Int32Array(new SharedArrayBuffer(4));
  // Callers waiting for a report, oldest first: a worker answers commands in order.
  const waiting = new Map<WorkerReport["kind"], (() => void)[]>();
  // A thread that died answers nothing more: its callers must not wait for ever.
  let dead = false;
  const request = (command: WorkerCommand, report: WorkerReport["kind"]) =>
    new Promise<void>((done) => {
      if (dead) return done();
      waiting.set(report, [...(waiting.get(report) ?? []), done]);
      worker.postMessage(command);
      Atomics.add(mailbox, 0, 1);
    });
  return new Promise((resolve, reject) => {
    worker.onerror = (event) => {
      event.preventDefault();
      worker.terminate();
      dead = true;
      for (const callers of waiting.values()) for (const done of callers.splice(0)) done();
      log.error("a serving thread failed", { error: event.message });
      reject(new StartError(`A worker thread failed: ${event.message}`));
    };
    worker.onmessage = (event: MessageEvent<WorkerReport>) => {
      const report = event.data;
      if (report.kind === "listening") {
        resolve({
          port: report.port,
          setBook: (book) => request({ kind: "book", book: book.toShared() }, "book-taken"),
          shutdown: () => request({ kind: "shutdown" }, "drained"),
          abort: async () => {
            await request({ kind: "abort" }, "stopped");
            worker.terminate();
          },
        });
      } else if (report.kind === "failed") {
        worker.terminate();
        reject(new StartError(report.message, report.exitCode));
      } else if (report.kind === "log") {
        log.record(report.record);
      } else {
        waiting.get(report.kind)?.shift()?.();
      }
    };
    worker.postMessage({ ...start, mailbox });
  });
}

/** What the command line chose. */
export interface CliOptions {
  /** Address to listen on. */
  hostname: string;
  /** Port to listen on; 0 for any free one. */
  port: number;
  /** The book file to read. */
  data: string;
  /** How messages name the book: as typed, or the built-in one. */
  dataLabel: string;
  /** The book format, when the extension does not tell. */
  format?: BookFormat;
  /** What to do with an email on two entries. */
  duplicates: DuplicatePolicy;
  /** CSV: the email column, for other exports. */
  emailColumn?: string;
  /** CSV: the name column, for other exports. */
  nameColumn?: string;
  /** Serving threads sharing the port. */
  workers: number;
  /** The event loop for plain TCP. */
  io: "auto" | IoKind;
  /** Limits on each peer. */
  limits: ServiceLimits;
  /** Time to finish answering at shutdown. */
  shutdownTimeoutMs: number;
  /** The TLS certificate chain file, PEM. */
  tlsCert?: string;
  /** The TLS private key file, PEM. */
  tlsKey?: string;
  /** Port for `GET /metrics`; off when unset. */
  metricsPort?: number;
  /** Log line format. */
  logFormat: LogFormat;
  /** The lowest level logged. */
  logLevel: LogLevel;
  /** Reload the book when its file changes, as on SIGHUP. */
  watch: boolean;
}

/** The server's usage text, for `--help` and usage errors. */
export const USAGE = `Usage: deno task server [options]

Serves an address book (email -> name) over TCP with the addrbook protocol.

Options:
  --host HOST              address to listen on (default 127.0.0.1)
  --port PORT              port to listen on, 0 for any free port (default 8080)
  --data FILE              address book to serve: .csv, .json, .vcf or .vcard
                           (default: the built-in data/addressbook.csv)
  --format FORMAT          csv, json or vcard, when the extension does not tell
  --duplicates POLICY      an email on two entries: error, first or last (default error)
  --email-column NAME      CSV column holding the email, for other exports
  --name-column NAME       CSV column holding the name, for other exports
  --workers N              serving threads sharing the port (default 1)
  --io LOOP                epoll (Linux), deno (Deno.listen) or auto (default: epoll
                           when it can: plain TCP on an IP address with --allow-ffi)
  --max-connections N      open connections before new ones get SERVER_BUSY (default 1024)
  --idle-timeout SECONDS   close a connection silent this long, 0 = never (default 300)
  --frame-timeout SECONDS  close a connection that leaves a frame unfinished (default 10)
  --write-timeout SECONDS  close a connection that takes none of its waiting replies
                           for this long, 0 = never (default 30)
  --shutdown-timeout SECONDS
                           time to finish answering on SIGINT/SIGTERM (default 5)
  --tls-cert FILE          serve TLS with this certificate chain (PEM); needs --tls-key
  --tls-key FILE           the private key (PEM) for --tls-cert
  --metrics-port PORT      serve Prometheus metrics at GET /metrics on this port
  --log-format FORMAT      text or json (default text)
  --log-level LEVEL        debug, info, warn or error (default info)
  --watch                  reload the book when its file changes, as on SIGHUP
  -h, --help               show this help

Signals: SIGHUP reloads the book; SIGINT or SIGTERM shut down gracefully (twice: at once).
Exit status: 0 after a clean shutdown, 1 when the book or the address is unusable, 2 on bad usage.`;

/** Parses the server's command line. @throws {StartError} with exit code 2 on bad usage. */
export function parseServerArgs(args: string[]): CliOptions | "help" {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        host: { type: "string" },
        port: { type: "string" },
        data: { type: "string" },
        format: { type: "string" },
        duplicates: { type: "string" },
        "email-column": { type: "string" },
        "name-column": { type: "string" },
        workers: { type: "string" },
        io: { type: "string" },
        "max-connections": { type: "string" },
        "idle-timeout": { type: "string" },
        "frame-timeout": { type: "string" },
        "write-timeout": { type: "string" },
        "shutdown-timeout": { type: "string" },
        "tls-cert": { type: "string" },
        "tls-key": { type: "string" },
        "metrics-port": { type: "string" },
        "log-format": { type: "string" },
        "log-level": { type: "string" },
        watch: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    }).values;
  } catch (error) {
    throw new StartError((error as Error).message, 2);
  }
  if (parsed.help) return "help";
  const tlsCert = parsed["tls-cert"];
  const tlsKey = parsed["tls-key"];
  if ((tlsCert === undefined) !== (tlsKey === undefined)) {
    throw new StartError("--tls-cert and --tls-key go together: give both or neither.", 2);
  }
  const metricsPort = parsed["metrics-port"];
  return {
    hostname: parsed.host ?? "127.0.0.1",
    port: parsePort("--port", parsed.port ?? "8080"),
    data: parsed.data ?? DEFAULT_DATA_PATH,
    dataLabel: parsed.data ?? "data/addressbook.csv (built in)",
    format: oneOf("--format", parsed.format, ["csv", "json", "vcard"] as const),
    duplicates: oneOf("--duplicates", parsed.duplicates, ["error", "first", "last"] as const) ??
      "error",
    emailColumn: parsed["email-column"],
    nameColumn: parsed["name-column"],
    workers: parseCount("--workers", parsed.workers ?? "1", 1, 64),
    io: oneOf("--io", parsed.io, ["auto", "epoll", "deno"] as const) ?? "auto",
    limits: {
      maxConnections: parseCount(
        "--max-connections",
        parsed["max-connections"] ?? String(DEFAULT_LIMITS.maxConnections),
        1,
        1_000_000,
      ),
      idleTimeoutMs: parseSeconds("--idle-timeout", parsed["idle-timeout"], 300),
      frameTimeoutMs: parseSeconds("--frame-timeout", parsed["frame-timeout"], 10),
      writeTimeoutMs: parseSeconds("--write-timeout", parsed["write-timeout"], 30),
      maxPendingWrite: DEFAULT_LIMITS.maxPendingWrite,
    },
    shutdownTimeoutMs: parseSeconds("--shutdown-timeout", parsed["shutdown-timeout"], 5),
    tlsCert,
    tlsKey,
    metricsPort: metricsPort === undefined ? undefined : parsePort("--metrics-port", metricsPort),
    logFormat: oneOf("--log-format", parsed["log-format"], ["text", "json"] as const) ?? "text",
    logLevel:
      oneOf("--log-level", parsed["log-level"], ["debug", "info", "warn", "error"] as const) ??
        "info",
    watch: parsed.watch ?? false,
  };
}

function parsePort(flag: string, value: string): number {
  return parseCount(flag, value, 0, 65535);
}

function parseCount(flag: string, value: string, min: number, max: number): number {
  const number = /^\d+$/.test(value) ? Number(value) : NaN;
  if (!(number >= min && number <= max)) {
    throw new StartError(
      `${flag} must be a whole number from ${min} to ${max}, not "${value}".`,
      2,
    );
  }
  return number;
}

function parseSeconds(flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback * 1000;
  const seconds = /^\d+(\.\d+)?$/.test(value) ? Number(value) : NaN;
  if (!(seconds >= 0 && seconds <= 86400 * 365)) {
    throw new StartError(`${flag} must be a number of seconds, not "${value}".`, 2);
  }
  return Math.round(seconds * 1000);
}

function oneOf<T extends string>(
  flag: string,
  value: string | undefined,
  choices: readonly T[],
): T | undefined {
  if (value === undefined) return undefined;
  if (!(choices as readonly string[]).includes(value)) {
    throw new StartError(`${flag} must be one of ${choices.join(", ")}, not "${value}".`, 2);
  }
  return value as T;
}

async function readPem(flag: string, path: string): Promise<string> {
  try {
    return await Deno.readTextFile(resolveUserPath(path));
  } catch (error) {
    throw new StartError(`Cannot read ${flag} file ${path}: ${(error as Error).message}`);
  }
}

/** Runs the server from the command line; resolves with the exit code. */
export async function main(args: string[]): Promise<number> {
  let options: CliOptions | "help";
  try {
    options = parseServerArgs(args);
  } catch (error) {
    if (error instanceof StartError) {
      console.error(`server: ${error.message}\n\n${USAGE}`);
      return error.exitCode;
    }
    throw error;
  }
  if (options === "help") {
    console.log(USAGE);
    return 0;
  }
  const cli = options;
  const log = new Logger({ format: cli.logFormat, level: cli.logLevel });
  const load = async () => {
    const { book, duplicates } = await loadBook(resolveUserPath(cli.data), {
      name: cli.dataLabel,
      format: cli.format,
      duplicates: cli.duplicates,
      emailColumn: cli.emailColumn,
      nameColumn: cli.nameColumn,
    });
    collectGarbage();
    if (duplicates > 0) {
      log.info("duplicate emails dropped", { duplicates, kept: cli.duplicates });
    }
    return book;
  };

  let server: ServerHandle;
  try {
    const book = await load();
    const tls = cli.tlsCert && cli.tlsKey
      ? {
        cert: await readPem("--tls-cert", cli.tlsCert),
        key: await readPem("--tls-key", cli.tlsKey),
      }
      : undefined;
    server = await startServer({
      book,
      hostname: cli.hostname,
      port: cli.port,
      loadBook: load,
      workers: cli.workers,
      io: cli.io,
      limits: cli.limits,
      tls,
      metricsPort: cli.metricsPort,
      log,
    });
  } catch (error) {
    if (error instanceof BookError || error instanceof StartError) {
      log.error(error.message);
      return error instanceof StartError ? error.exitCode : 1;
    }
    throw error;
  }
  // Signal handlers go in before the start line, which tells scripts they may signal.
  const stopped = untilStopped(server, cli, log);
  const where = formatAddress(server.addr.hostname, server.addr.port);
  log.info(
    `loaded ${server.entries} ${
      server.entries === 1 ? "entry" : "entries"
    } from ${cli.dataLabel}; listening on ${cli.tlsCert ? "tls://" : ""}${where}`,
    {
      workers: cli.workers,
      io: server.io,
      metrics: server.metricsAddr
        ? formatAddress(server.metricsAddr.hostname, server.metricsAddr.port)
        : undefined,
    },
  );
  return await stopped;
}

/**
 * Runs a full garbage collection when the runtime allows it (the server
 * task passes `--v8-flags=--expose-gc`). Loading a large book leaves
 * hundreds of megabytes of garbage (the file's text, parsed rows), and a
 * server whose hot path allocates almost nothing may not collect it for a
 * long time, holding that memory for no use.
 */
function collectGarbage(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

/** Changes to a watched book closer together than this are one change (editors write in steps). */
const WATCH_SETTLE_MS = 100;

/**
 * Calls `onChange` when the file at `path` is written, created or replaced.
 * It watches the file's folder rather than the file, because editors and
 * deploy tools often replace a file by renaming a new one over it.
 */
function watchFile(path: string, onChange: () => void): Deno.FsWatcher {
  const absolute = path.startsWith("/") ? path : `${Deno.cwd()}/${path}`;
  const folder = absolute.slice(0, absolute.lastIndexOf("/")) || "/";
  const watcher = Deno.watchFs(folder, { recursive: false });
  let settle: ReturnType<typeof setTimeout> | undefined;
  (async () => {
    for await (const event of watcher) {
      if (event.kind === "access" || !event.paths.includes(absolute)) continue;
      clearTimeout(settle);
      settle = setTimeout(onChange, WATCH_SETTLE_MS);
    }
    clearTimeout(settle);
  })();
  return watcher;
}

/** Signals this soon after the first are copies of it (see untilStopped), not a second one. */
const REPEATED_SIGNAL_MS = 250;

/** Handles signals until the server has shut down; resolves with the exit code. */
function untilStopped(server: ServerHandle, cli: CliOptions, log: Logger): Promise<number> {
  return new Promise((resolve) => {
    let stopping = false;
    const reload = async () => {
      try {
        await server.reload();
        log.info("reload done", { entries: server.entries, file: cli.dataLabel });
      } catch (error) {
        log.error(`reload failed, still serving the old book: ${(error as Error).message}`);
      }
    };
    let firstSignalAt = 0;
    const stop = async (signal: Deno.Signal) => {
      if (stopping) {
        // Ctrl-C under `deno task` arrives twice within milliseconds: from the
        // terminal to the process group, and forwarded by deno task. That is
        // still the first request; a second one is a person pressing again.
        if (Date.now() - firstSignalAt < REPEATED_SIGNAL_MS) return;
        log.warn("second signal: exiting at once", { signal });
        Deno.exit(1);
      }
      stopping = true;
      firstSignalAt = Date.now();
      log.info("shutting down", { signal, timeout_s: cli.shutdownTimeoutMs / 1000 });
      await server.shutdown(cli.shutdownTimeoutMs);
      log.info("shutdown complete");
      for (const [name, handler] of handlers) Deno.removeSignalListener(name, handler);
      watcher?.close();
      resolve(0);
    };
    const watcher = cli.watch
      ? watchFile(resolveUserPath(cli.data), () => void reload())
      : undefined;
    const handlers: [Deno.Signal, () => void][] = [
      ["SIGHUP", () => void reload()],
      ["SIGINT", () => void stop("SIGINT")],
      ["SIGTERM", () => void stop("SIGTERM")],
    ];
    for (const [name, handler] of handlers) Deno.addSignalListener(name, handler);
  });
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
