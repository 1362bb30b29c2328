/**
 * A serving thread. The main thread (server.ts) starts one per worker,
 * hands it the shared book and counters, and later sends it new books on
 * reload and the order to shut down. Threads listen on the same port with
 * SO_REUSEPORT, so the kernel spreads connections among them.
 *
 * @module
 */

import { AddressBook, type SharedAddressBook } from "./addressbook.ts";
import { EpollService } from "./epoll_service.ts";
import { EACCES, EADDRINUSE, EADDRNOTAVAIL, listenTcp, openLibc, SocketError } from "./libc.ts";
import { Logger, type LogLevel, type LogRecord } from "./log.ts";
import { counterRow } from "./metrics.ts";
import { formatAddress } from "./net_address.ts";
import { ConnectionService, type ServiceLimits } from "./serve_connections.ts";
import { listen, type PortSharing, type TlsFiles } from "./server_listen.ts";

/** The event loop a thread serves with: its own epoll loop, or Deno.listen's. */
export type IoKind = "epoll" | "deno";

/** Everything a serving thread needs, sent once at its start. */
export interface WorkerStart {
  /** Marks the first message a worker gets. */
  kind: "start";
  /** The event loop to serve with. */
  io: IoKind;
  /** Address to listen on. */
  hostname: string;
  /** Port to listen on (0 only for the first thread). */
  port: number;
  /** How this thread binds: alone, first of several, or joining. */
  sharing: PortSharing;
  /** TLS certificate and key, when serving TLS. */
  tls: TlsFiles | undefined;
  /** The book's shared buffers. */
  book: SharedAddressBook;
  /** Limits on each peer. */
  limits: ServiceLimits;
  /** The shared counter table; this thread counts into its row. */
  counters: Float64Array;
  /** This thread's row in the counter table. */
  thread: number;
  /** Open connections across all threads, updated atomically. */
  openConnections: Int32Array;
  /** The main thread's log level; records are sent to it to be written. */
  logLevel: LogLevel;
  /** Set by startWorker: how many commands the main thread has posted. */
  mailbox?: Int32Array;
}

/** Messages from the main thread to a worker. */
export type WorkerCommand =
  | WorkerStart
  | { kind: "book"; book: SharedAddressBook }
  | { kind: "shutdown" }
  | { kind: "abort" };

/** Messages from a worker to the main thread. */
export type WorkerReport =
  | { kind: "listening"; port: number }
  | { kind: "failed"; message: string; exitCode: number }
  | { kind: "log"; record: LogRecord }
  | { kind: "book-taken" }
  | { kind: "drained" }
  | { kind: "stopped" };

/** The worker's global scope, typed here so this module can be checked with the main-thread lib. */
const scope = self as unknown as {
  postMessage(message: WorkerReport): void;
  onmessage: ((event: MessageEvent<WorkerCommand>) => void) | null;
};

let service: ConnectionService | EpollService | undefined;
/** Resolves when the epoll loop has returned (it runs until shutdown or abort). */
let loopEnded: Promise<void> = Promise.resolve();
let handled = 0;

function report(message: WorkerReport): void {
  scope.postMessage(message);
}

function start(command: WorkerStart): void {
  const options = {
    book: AddressBook.fromShared(command.book),
    limits: command.limits,
    counters: counterRow(command.counters, command.thread),
    openConnections: command.openConnections,
    log: new Logger({
      level: command.logLevel,
      forward: (record) => report({ kind: "log", record }),
    }),
  };
  try {
    if (command.io === "deno") {
      const listener = listen(command.hostname, command.port, command.sharing, command.tls);
      service = new ConnectionService(listener, options);
      report({ kind: "listening", port: (listener.addr as Deno.NetAddr).port });
      return;
    }
    const libc = openLibc()!;
    const { fd, port } = listenEpoll(libc, command);
    const epoll = new EpollService(libc, fd, options);
    service = epoll;
    report({ kind: "listening", port });
    const mailbox = command.mailbox!;
    loopEnded = epoll.run(() => Atomics.load(mailbox, 0) !== handled).catch((error) => {
      // The loop closed its sockets on the way out; say why, and answer later commands.
      const message = error instanceof Error ? error.message : String(error);
      report({
        kind: "log",
        record: { level: "error", message: "serving thread stopped", fields: { error: message } },
      });
    });
  } catch (error) {
    const exitCode = (error as { exitCode?: number }).exitCode ?? 1;
    report({ kind: "failed", message: (error as Error).message, exitCode });
  }
}

/** Opens the listening socket for the epoll loop, wording failures as Deno.listen's are. */
function listenEpoll(libc: NonNullable<ReturnType<typeof openLibc>>, command: WorkerStart) {
  const { hostname, port, sharing } = command;
  try {
    if (sharing === "first" && port !== 0) {
      // SO_REUSEPORT would let us join another server already on this port; refuse to.
      libc.calls.close(listenTcp(libc, hostname, port, false)!.fd);
    }
    return listenTcp(libc, hostname, port, sharing !== "alone")!;
  } catch (error) {
    if (!(error instanceof SocketError)) throw error;
    const where = formatAddress(hostname, port);
    const reason = error.errno === EADDRINUSE
      ? "the port is already in use"
      : error.errno === EADDRNOTAVAIL
      ? "no such address on this machine"
      : error.errno === EACCES
      ? "permission denied"
      : error.message;
    throw new Error(`Cannot listen on ${where}: ${reason}.`);
  }
}

scope.onmessage = (event) => {
  const command = event.data;
  if (command.kind === "start") {
    start(command);
    return;
  }
  handled++;
  if (command.kind === "book") {
    service?.setBook(AddressBook.fromShared(command.book));
    report({ kind: "book-taken" });
  } else if (command.kind === "shutdown") {
    (service?.shutdown() ?? Promise.resolve()).then(() => report({ kind: "drained" }));
  } else if (command.kind === "abort") {
    Promise.all([service?.abort(), loopEnded]).then(() => report({ kind: "stopped" }));
  }
};
