/**
 * The server's start API: {@linkcode startServer} serves a book on a port
 * from one or more threads and returns a handle to reload, read the
 * metrics, drain and close it.
 *
 * ```ts
 * import { startServer } from "./start.ts";
 * import { loadBook } from "../book/load.ts";
 *
 * const { book } = await loadBook("data/addressbook.csv");
 * const server = await startServer({ book, port: 0 });
 * console.log(server.addr.port);
 * await server.close();
 * ```
 *
 * @module
 */

import { boundPorts, portsToServe } from "./ports.ts";
import type { AccessRules } from "../access/policy.ts";
import type { AddressBook } from "../book/addressbook.ts";
import { ClientLimits, type ClientLimitsConfig } from "../access/limits.ts";
import { encodeSockaddr, openLibc } from "../common/libc.ts";
import { Logger } from "../common/log.ts";
import { counterRow, createCounterTable, sumCounters } from "../session/counters.ts";
import { type BookFigures, renderPrometheus } from "./metrics.ts";
import { readProcessFigures } from "./process_metrics.ts";
import { DEFAULT_LIMITS, type ServiceLimits } from "../session/session.ts";
import { EXIT_USAGE, StartError } from "./error.ts";
import { StatusEndpoint } from "./http.ts";
import { serveDeno, type Serving } from "./serve.ts";
import { startWorker, type WorkerThread } from "./threads.ts";
import { type IoKind, type LdapListen, postBook, type WorkerStart } from "./worker_messages.ts";
import type { TlsFiles } from "../transport/tls_context.ts";
import { openOpenSsl } from "../transport/openssl.ts";

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
  /** Who may query (`--allow`, protected mode, PROXY headers); everyone by default. */
  access?: AccessRules;
  /** Per-client limits (`--rate-limit`, `--found-limit`, `--max-connections-per-client`). */
  clientLimits?: ClientLimitsConfig;
  /**
   * Serve TLS instead of plain TCP; with `clientCa`, only to clients with a
   * certificate it signed, whose subject identifies them.
   */
  tls?: TlsFiles;
  /**
   * Serve `/metrics`, `/healthz` and `/readyz` (see server/http.ts) on this
   * port of `hostname`; off when unset and no `statusEndpoint` is given.
   */
  metricsPort?: number;
  /**
   * A status endpoint opened before the book was loaded (it answered
   * `/readyz` with 503 meanwhile); the server reports through it from now
   * on, and closes it. Takes the place of `metricsPort`.
   */
  statusEndpoint?: StatusEndpoint;
  /** The book's SHA-256, hex, shown in the metrics; see {@linkcode BookFigures}. */
  fingerprint?: (book: AddressBook) => string | undefined;
  /** Where events are logged, worker threads' too; a text logger on stderr by default. */
  log?: Logger;
  /** Serve the book over LDAP too (`--ldap-port`, `--ldaps-port`); LDAPS needs `tls`. */
  ldap?: LdapListen;
}

/** A running server. */
export interface ServerHandle {
  /** The address it listens on, with the real port when 0 was asked for. */
  readonly addr: Deno.NetAddr;
  /** The metrics endpoint's address, when it serves one. */
  readonly metricsAddr: Deno.NetAddr | undefined;
  /** The LDAP port's address, when it serves one. */
  readonly ldapAddr: Deno.NetAddr | undefined;
  /** The LDAPS port's address, when it serves one. */
  readonly ldapsAddr: Deno.NetAddr | undefined;
  /** Entries in the book being served. */
  readonly entries: number;
  /** The event loop serving plain connections. */
  readonly io: IoKind;
  /** The SHA-256 (hex) of the book being served, when `fingerprint` tells it. */
  readonly fingerprint: string | undefined;
  /** Whether `/readyz` says ready: serving, and no shutdown has begun. */
  readonly ready: boolean;
  /** Loads the book again with `loadBook`; on failure keeps the old one and throws. */
  reload(): Promise<void>;
  /**
   * New TLS connections get these files (already checked: see
   * server/tls_files.ts); open ones keep theirs. Resolves once every thread has
   * them.
   *
   * @throws {TlsContextError} when node:tls cannot use a file (`--io deno`); the old ones stay.
   */
  setTls(tls: TlsFiles): Promise<void>;
  /** The counters in Prometheus text format, as `/metrics` serves them. */
  metrics(): string;
  /**
   * Stops accepting, answers what open connections had sent, closes them;
   * connections still open after `timeoutMs` are cut. `/readyz` answers 503
   * from the moment this is called.
   */
  shutdown(timeoutMs?: number): Promise<void>;
  /** Closes the listener and every connection at once. */
  close(): Promise<void>;
}

/**
 * Starts serving `options.book`. Resolves once every serving thread listens.
 *
 * With the epoll event loop (plain TCP on Linux, see io/epoll.ts) every
 * serving thread is a worker and this thread only supervises; with
 * `Deno.listen` (`--io deno`, platforms without epoll) this thread serves too.
 *
 * @throws {StartError} when the address cannot be listened on.
 */
export async function startServer(options: ServerOptions): Promise<ServerHandle> {
  const hostname = options.hostname ?? "127.0.0.1";
  const workers = options.workers ?? 1;
  const log = options.log ?? new Logger();
  let io: IoKind;
  try {
    io = chooseIo(
      options.io ?? "auto",
      hostname,
      options.tls,
      options.access?.proxyProtocol ?? false,
    );
  } catch (error) {
    await options.statusEndpoint?.close();
    throw error;
  }
  const counters = createCounterTable(workers);
  const clientLimits = hasClientLimits(options.clientLimits)
    ? ClientLimits.create(options.clientLimits)
    : undefined;
  let book = options.book;
  const figures: BookFigures = {
    entries: book.size,
    reloadsOk: 0,
    reloadsFailed: 0,
    fingerprint: options.fingerprint?.(book),
  };
  const start: WorkerStart = {
    kind: "start",
    io,
    hostname,
    port: options.port ?? 8080,
    sharing: workers > 1 ? "first" : "alone",
    tls: options.tls,
    ldap: options.ldap,
    ...postBook(book),
    limits: { ...DEFAULT_LIMITS, ...options.limits },
    access: options.access,
    clientLimits: clientLimits?.shared,
    counters,
    thread: 0,
    openConnections: new Int32Array(new SharedArrayBuffer(4)),
    logLevel: log.level,
  };

  // Under Deno.listen the first thread is this one; under epoll it is a worker.
  let local: Serving | undefined;
  const threads: WorkerThread[] = [];
  let port: number;
  let bound: { port: number; ldapPort?: number; ldapsPort?: number };
  try {
    if (io === "deno") {
      local = await serveDeno(
        portsToServe({ start, book, counters: counterRow(counters, 0), log }),
      );
      bound = boundPorts(start, local.ports);
    } else {
      const first = await startWorker(start, log);
      threads.push(first);
      bound = first;
    }
    port = bound.port;
    const joined: WorkerStart = {
      ...start,
      port,
      sharing: "join",
      ldap: start.ldap && { ...start.ldap, port: bound.ldapPort, tlsPort: bound.ldapsPort },
    };
    const others = await Promise.all(
      Array.from(
        { length: workers - 1 },
        (_, i) => startWorker({ ...joined, thread: i + 1 }, log),
      ),
    );
    threads.push(...others);
  } catch (error) {
    await local?.service.abort();
    await Promise.all(threads.map((thread) => thread.abort()));
    await options.statusEndpoint?.close();
    throw error;
  }

  const metrics = () => {
    if (clientLimits) figures.trackedClients = clientLimits.trackedClients;
    return renderPrometheus(sumCounters(counters), figures, readProcessFigures());
  };
  let endpoint = options.statusEndpoint;
  try {
    if (endpoint === undefined && options.metricsPort !== undefined) {
      endpoint = StatusEndpoint.open(hostname, options.metricsPort, undefined, {
        access: options.access,
        log,
      });
    }
  } catch (error) {
    await local?.service.abort();
    await Promise.all(threads.map((thread) => thread.abort()));
    throw error;
  }
  let draining = false;
  if (endpoint) endpoint.status = { ready: () => !draining, metrics };
  // Closing twice (shutdown, then close in a finally) must not wait on threads already gone.
  let closing: Promise<void> | undefined;
  const abortAll = () =>
    closing ??= (async () => {
      draining = true;
      await local?.service.abort();
      await Promise.all(threads.map((thread) => thread.abort()));
      await endpoint?.close();
    })();

  return {
    addr: { transport: "tcp", hostname, port },
    ldapAddr: bound.ldapPort === undefined
      ? undefined
      : { transport: "tcp", hostname, port: bound.ldapPort },
    ldapsAddr: bound.ldapsPort === undefined
      ? undefined
      : { transport: "tcp", hostname, port: bound.ldapsPort },
    io,
    metricsAddr: endpoint?.addr,
    get entries() {
      return figures.entries;
    },
    get fingerprint() {
      return figures.fingerprint;
    },
    get ready() {
      return !draining;
    },
    async reload() {
      if (!options.loadBook) throw new Error("This server has no book file to reload.");
      try {
        book = await options.loadBook();
      } catch (error) {
        figures.reloadsFailed++;
        throw error;
      }
      local?.service.setBook(book);
      // Resolve only once every thread answers from the new book.
      await Promise.all(threads.map((thread) => thread.setBook(book)));
      figures.entries = book.size;
      figures.fingerprint = options.fingerprint?.(book);
      figures.reloadsOk++;
    },
    async setTls(tls) {
      local?.rotateTls(tls);
      await Promise.all(threads.map((thread) => thread.setTls(tls)));
    },
    metrics,
    async shutdown(timeoutMs = 5000) {
      // A balancer must stop sending connections before the listeners close.
      draining = true;
      const drained = Promise.all([
        local?.service.shutdown(),
        ...threads.map((t) => t.shutdown()),
      ]);
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

/** Which event loop serves: epoll where it can (TLS too, with OpenSSL 3), else Deno.listen. */
function chooseIo(
  wanted: "auto" | IoKind,
  hostname: string,
  tls: TlsFiles | undefined,
  proxyProtocol: boolean,
): IoKind {
  const epollPossible = encodeSockaddr(hostname, 0) !== undefined && openLibc() !== undefined &&
    (tls === undefined || openOpenSsl() !== undefined);
  if (wanted === "epoll" && !epollPossible) {
    throw new StartError(
      "--io epoll needs Linux with glibc, --allow-ffi, an IP address for --host, and for TLS OpenSSL 3 (libssl.so.3).",
      EXIT_USAGE,
    );
  }
  const io = wanted === "auto" ? (epollPossible ? "epoll" : "deno") : wanted;
  if (io === "deno" && tls !== undefined && proxyProtocol) {
    // The header comes in clear before the handshake, and there TLS owns the socket from accept on.
    throw new StartError(
      "--proxy-protocol with TLS needs the epoll loop: Linux with glibc, --allow-ffi, OpenSSL 3 (libssl.so.3), and --io epoll or auto.",
      EXIT_USAGE,
    );
  }
  return io;
}

/** Whether any per-client limit is set, so that the shared table is worth making. */
function hasClientLimits(config: ClientLimitsConfig | undefined): config is ClientLimitsConfig {
  return config !== undefined &&
    (config.rate !== undefined || config.found !== undefined ||
      (config.maxConnectionsPerClient ?? 0) > 0);
}
