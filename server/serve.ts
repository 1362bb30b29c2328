/**
 * Starting a serving thread's event loop on its listener: the one block
 * that chooses the listener for the loop and the TLS setting (Deno.listen
 * or node:tls for the `Deno.listen` loop; a libc socket, with OpenSSL for
 * TLS, for the epoll loop), starts the loop, and says how to rotate the
 * certificate. The main thread (server/start.ts, which serves itself under
 * `--io deno`) and every worker (server/worker.ts) start their loops here.
 *
 * ```ts ignore
 * const serving = await serveDeno({ hostname, port, sharing }, tls, context);
 * serving.rotateTls(next); // new connections get `next`
 * await serving.service.shutdown();
 * ```
 *
 * @module
 */

import type { Service } from "../io/service.ts";
import { ConnectionService } from "../io/deno.ts";
import { EpollService } from "../io/epoll.ts";
import type { Libc } from "../common/libc.ts";
import { listen, listenEpoll, listenNodeTls, type PortSharing } from "./listen.ts";
import type { SessionContext } from "../session/session.ts";
import { TlsAcceptor } from "../transport/tls_acceptor.ts";
import { TlsContextError, type TlsFiles } from "../transport/tls_context.ts";

/** Where a thread listens. */
export interface ListenAddress {
  /** The address to bind. */
  hostname: string;
  /** The port; 0 picks a free one. */
  port: number;
  /** How the thread shares the port with the others. */
  sharing: PortSharing;
}

/** A serving thread's running event loop. */
export interface Serving {
  /** The loop, serving its listener. */
  readonly service: Service;
  /** The port it listens on (the real one when 0 was asked for). */
  readonly port: number;
  /**
   * New TLS connections get `files`; open ones keep theirs. Does nothing
   * on plain TCP.
   *
   * @throws {TlsContextError} when a file is unusable; the current ones stay.
   */
  rotateTls(files: TlsFiles): void;
}

/**
 * Starts the `Deno.listen` loop: on `Deno.listen`, or with `tls` on a
 * node:tls listener.
 *
 * @throws {StartError} when the address cannot be listened on, or the TLS
 * certificate or key is unusable.
 */
export async function serveDeno(
  address: ListenAddress,
  tls: TlsFiles | undefined,
  context: SessionContext,
): Promise<Serving> {
  const { hostname, port, sharing } = address;
  const nodeTls = tls && await listenNodeTls(hostname, port, sharing, tls, context);
  const listener = nodeTls ?? listen(hostname, port, sharing);
  return {
    service: new ConnectionService(listener, context),
    port: (listener.addr as Deno.NetAddr).port,
    rotateTls: (files) => nodeTls?.setFiles(files),
  };
}

/**
 * Starts the epoll loop on a socket of its own, with `tls` through OpenSSL
 * (the thread's acceptor, freed once the loop is done). Between waits the
 * loop calls `pendingCommands` (see {@linkcode EpollService}).
 *
 * @throws {Error} when the address cannot be listened on, or OpenSSL cannot
 * be loaded or refuses a TLS file.
 */
export function serveEpoll(
  libc: Libc,
  address: ListenAddress,
  tls: TlsFiles | undefined,
  context: SessionContext,
  pendingCommands: () => boolean,
): Serving {
  const acceptor = tls && openAcceptor(libc, tls);
  let socket;
  try {
    socket = listenEpoll(libc, address.hostname, address.port, address.sharing);
  } catch (error) {
    acceptor?.free();
    throw error;
  }
  const service = new EpollService(libc, socket.fd, context, pendingCommands, acceptor);
  // Whoever started the loop hears of its failure through `done`; this only frees.
  service.done.finally(() => acceptor?.free()).catch(() => {});
  return { service, port: socket.port, rotateTls: (files) => acceptor?.replace(files) };
}

/** Builds the epoll loop's TLS side, wording a bad file as a start failure. */
function openAcceptor(libc: Libc, tls: TlsFiles): TlsAcceptor {
  try {
    return TlsAcceptor.open(libc, tls);
  } catch (error) {
    // The main thread checked the files already; this is for a caller of startServer.
    if (error instanceof TlsContextError) throw new Error(error.message);
    throw error;
  }
}
