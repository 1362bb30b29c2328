/**
 * A serving thread. The main thread (server.ts) starts one per worker,
 * hands it the shared book and counters, and later sends it new books on
 * reload and the order to shut down. Threads listen on the same port with
 * SO_REUSEPORT, so the kernel spreads connections among them.
 *
 * @module
 */

import { AddressBook } from "./addressbook.ts";
import type { Service } from "./io_driver.ts";
import { ConnectionService } from "./io_deno.ts";
import { EpollService } from "./io_epoll.ts";
import { TlsAcceptor } from "./tls_acceptor.ts";
import { describeError } from "./errors.ts";
import { EACCES, EADDRINUSE, EADDRNOTAVAIL, listenTcp, openLibc, SocketError } from "./libc.ts";
import { Logger } from "./log.ts";
import { counterRow } from "./metrics.ts";
import { formatAddress } from "./net_address.ts";
import { createSessionContext } from "./session.ts";
import { listen, listenNodeTls, type TlsFiles } from "./server_listen.ts";
import type { NodeTlsListener } from "./tls_node_listener.ts";
import { TlsContextError } from "./tls_context.ts";
import type { WorkerCommand, WorkerReport, WorkerStart } from "./server_worker_messages.ts";

/** The worker's global scope, typed here so this module can be checked with the main-thread lib. */
const scope = self as unknown as {
  postMessage(message: WorkerReport): void;
  onmessage: ((event: MessageEvent<WorkerCommand>) => void) | null;
};

let service: Service | undefined;
/** The epoll loop's TLS side, kept here to rotate its certificate and free it at the end. */
let tlsAcceptor: TlsAcceptor | undefined;
/** The Deno.listen loop's TLS listener, kept here to rotate its certificate. */
let nodeTlsListener: NodeTlsListener | undefined;
let handled = 0;

function report(message: WorkerReport): void {
  scope.postMessage(message);
}

async function start(command: WorkerStart): Promise<void> {
  try {
    const options = createSessionContext({
      book: AddressBook.fromShared(command.book),
      limits: command.limits,
      counters: counterRow(command.counters, command.thread),
      openConnections: command.openConnections,
      log: new Logger({
        level: command.logLevel,
        forward: (record) => report({ kind: "log", record }),
      }),
      access: command.access,
      clientLimits: command.clientLimits,
      clientCertificates: command.tls?.clientCa !== undefined,
    });
    if (command.io === "deno") {
      const { hostname, port, sharing } = command;
      nodeTlsListener = command.tls &&
        await listenNodeTls(hostname, port, sharing, command.tls, options);
      const listener = nodeTlsListener ?? listen(hostname, port, sharing);
      service = new ConnectionService(listener, options);
      report({ kind: "listening", port: (listener.addr as Deno.NetAddr).port });
      return;
    }
    const libc = openLibc()!;
    const acceptor = command.tls && openAcceptor(libc, command.tls);
    const { fd, port } = listenEpoll(libc, command);
    const mailbox = command.mailbox!;
    const pending = () => Atomics.load(mailbox, 0) !== handled;
    service = new EpollService(libc, fd, options, pending, acceptor);
    tlsAcceptor = acceptor;
    report({ kind: "listening", port });
    service.done.finally(() => acceptor?.free()).catch((error) => {
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

/** Builds the epoll loop's TLS side, wording a bad file as a start failure. */
function openAcceptor(libc: NonNullable<ReturnType<typeof openLibc>>, tls: TlsFiles): TlsAcceptor {
  try {
    return TlsAcceptor.open(libc, tlsPem(tls));
  } catch (error) {
    // The main thread checked the files already; this is for a caller of startServer.
    if (error instanceof TlsContextError) throw new Error(error.message);
    throw error;
  }
}

function tlsPem(tls: TlsFiles) {
  return { certificate: tls.cert, key: tls.key, clientCa: tls.clientCa };
}

/** Rotation: new connections get the new files; a broken one keeps the current context. */
function replaceTls(tls: TlsFiles): void {
  try {
    tlsAcceptor?.replace(tlsPem(tls));
    nodeTlsListener?.setFiles(tls);
  } catch (error) {
    report({
      kind: "log",
      record: {
        level: "error",
        message: "TLS reload failed in a serving thread, still serving the old certificate",
        fields: { error: describeError(error) },
      },
    });
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
    void start(command);
    return;
  }
  handled++;
  if (command.kind === "book") {
    service?.setBook(AddressBook.fromShared(command.book));
    report({ kind: "book-taken" });
  } else if (command.kind === "tls") {
    replaceTls(command.tls);
    report({ kind: "tls-taken" });
  } else if (command.kind === "shutdown") {
    (service?.shutdown() ?? Promise.resolve()).then(() => report({ kind: "drained" }));
  } else if (command.kind === "abort") {
    (service?.abort() ?? Promise.resolve()).catch(() => {}).then(() => report({ kind: "stopped" }));
  }
};
