/**
 * A serving thread of a multi-threaded server. The main thread (server.ts)
 * starts one per extra worker, hands it the shared book and counters, and
 * sends it new books on reload and the shutdown order; each worker listens
 * on the same port with SO_REUSEPORT, so the kernel spreads connections.
 *
 * @module
 */

import { AddressBook, type SharedAddressBook } from "./addressbook.ts";
import { type LogFormat, Logger, type LogLevel } from "./log.ts";
import { counterRow } from "./metrics.ts";
import { ConnectionService, type ServiceLimits } from "./serve_connections.ts";
import { listen, type TlsFiles } from "./server.ts";

/** Messages from the main thread to a worker. */
export type WorkerCommand =
  | {
    kind: "start";
    hostname: string;
    port: number;
    tls: TlsFiles | undefined;
    book: SharedAddressBook;
    limits: ServiceLimits;
    counters: Float64Array;
    thread: number;
    openConnections: Int32Array;
    logSettings: { format: LogFormat; level: LogLevel };
  }
  | { kind: "book"; book: SharedAddressBook }
  | { kind: "shutdown" };

/** Messages from a worker to the main thread. */
export type WorkerReport =
  | { kind: "listening" }
  | { kind: "failed"; message: string }
  | { kind: "drained" };

/** The worker's global scope, typed here so this module can be checked with the main-thread lib. */
const scope = self as unknown as {
  postMessage(message: WorkerReport): void;
  onmessage: ((event: MessageEvent<WorkerCommand>) => void) | null;
};

let service: ConnectionService | undefined;

function report(message: WorkerReport): void {
  scope.postMessage(message);
}

function start(command: WorkerCommand & { kind: "start" }): void {
  let listener: Deno.Listener;
  try {
    listener = listen(command.hostname, command.port, "join", command.tls);
  } catch (error) {
    report({ kind: "failed", message: (error as Error).message });
    return;
  }
  service = new ConnectionService(listener, {
    book: AddressBook.fromShared(command.book),
    limits: command.limits,
    counters: counterRow(command.counters, command.thread),
    openConnections: command.openConnections,
    log: new Logger(command.logSettings),
  });
  report({ kind: "listening" });
}

scope.onmessage = (event) => {
  const command = event.data;
  if (command.kind === "start") start(command);
  else if (command.kind === "book") service?.setBook(AddressBook.fromShared(command.book));
  else if (command.kind === "shutdown") {
    (service?.shutdown() ?? Promise.resolve()).then(() => report({ kind: "drained" }));
  }
};
