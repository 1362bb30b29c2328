/**
 * Starting a serving thread's event loop on its listener: the one block
 * that chooses the listener for the loop and the TLS setting (Deno.listen
 * or node:tls for the `Deno.listen` loop; a libc socket, with OpenSSL for
 * TLS, for the epoll loop), starts the loop, and says how to rotate the
 * certificate. The main thread (server/start.ts, which serves itself under
 * `--io deno`) and every worker (server/worker.ts) start their loops here.
 *
 * ```ts ignore
 * const serving = await serveDeno([{ address: { hostname, port, sharing }, tls, context }]);
 * serving.ports; // [the port bound]
 * serving.rotateTls(next); // new connections get `next`
 * await serving.service.shutdown();
 * ```
 *
 * @module
 */

import { type Service, ServiceGroup } from "../io/service.ts";
import { ConnectionService } from "../io/deno.ts";
import { type EpollListener, EpollService } from "../io/epoll.ts";
import type { NodeTlsListener } from "../transport/node_tls_listener.ts";
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

/** One port a thread serves: where, over TLS or not, and what its sessions share (their front end). */
export interface PortToServe {
  /** Where it listens. */
  address: ListenAddress;
  /** TLS certificate, key and client CA, when the port speaks TLS. */
  tls: TlsFiles | undefined;
  /**
   * For a plain port whose front end offers StartTLS (LDAP): the files its
   * connections upgrade with. The epoll loop only: the `Deno.listen` loop
   * cannot upgrade an accepted socket, so its ports offer no upgrade.
   * Connections that upgrade were admitted by address on a plain port: no
   * client certificate is asked of them.
   */
  upgradeTls?: TlsFiles;
  /** What every session on the port shares, its front end among it. */
  context: SessionContext;
}

/** A serving thread's running event loop, over one port or several. */
export interface Serving {
  /** The loop, serving its listeners. */
  readonly service: Service;
  /** The ports it listens on, in the order given (the real ones when 0 was asked for). */
  readonly ports: readonly number[];
  /**
   * New TLS connections get `files`, and so do StartTLS upgrades from now
   * on; open ones keep theirs. Does nothing on plain TCP.
   *
   * @throws {TlsContextError} when a file is unusable; the current ones stay.
   */
  rotateTls(files: TlsFiles): void;
}

/**
 * Starts the `Deno.listen` loop on each port: on `Deno.listen`, or with
 * TLS on a node:tls listener.
 *
 * @throws {StartError} when an address cannot be listened on, or the TLS
 * certificate or key is unusable.
 */
export async function serveDeno(ports: readonly PortToServe[]): Promise<Serving> {
  const services: Service[] = [];
  const nodeTls: NodeTlsListener[] = [];
  const bound: number[] = [];
  try {
    for (const { address, tls, context } of ports) {
      const { hostname, port, sharing } = address;
      const secure = tls && await listenNodeTls(hostname, port, sharing, tls, context);
      if (secure) nodeTls.push(secure);
      const listener = secure ?? listen(hostname, port, sharing);
      services.push(new ConnectionService(listener, context));
      bound.push((listener.addr as Deno.NetAddr).port);
    }
  } catch (error) {
    await Promise.all(services.map((service) => service.abort()));
    throw error;
  }
  return {
    service: services.length === 1 ? services[0] : new ServiceGroup(services),
    ports: bound,
    rotateTls: (files) => nodeTls.forEach((listener) => listener.setFiles(files)),
  };
}

/**
 * Starts the epoll loop on sockets of its own, one per port, with TLS
 * through OpenSSL (the thread's acceptor, freed once the loop is done).
 * Between waits the loop calls `pendingCommands` (see {@linkcode EpollService}).
 *
 * @throws {Error} when an address cannot be listened on, or OpenSSL cannot
 * be loaded or refuses a TLS file.
 */
export function serveEpoll(
  libc: Libc,
  ports: readonly PortToServe[],
  pendingCommands: () => boolean,
): Serving {
  const listeners: EpollListener[] = [];
  const acceptors: TlsAcceptor[] = [];
  /** The acceptors of StartTLS upgrades, rotated without a client CA. */
  const upgraders: TlsAcceptor[] = [];
  const bound: number[] = [];
  try {
    for (const { address, tls, upgradeTls, context } of ports) {
      const acceptor = tls && openAcceptor(libc, tls);
      if (acceptor) acceptors.push(acceptor);
      const upgrades = upgradeTls && openAcceptor(libc, withoutClientCa(upgradeTls));
      if (upgrades) upgraders.push(upgrades);
      const socket = listenEpoll(libc, address.hostname, address.port, address.sharing);
      bound.push(socket.port);
      listeners.push(
        acceptor
          ? { ...EpollService.plainListener(libc, socket.fd, context), transports: acceptor }
          : { ...EpollService.plainListener(libc, socket.fd, context), upgrades },
      );
    }
  } catch (error) {
    for (const listener of listeners) libc.calls.close(listener.fd);
    for (const acceptor of [...acceptors, ...upgraders]) acceptor.free();
    throw error;
  }
  const service = new EpollService(libc, listeners, pendingCommands);
  // Whoever started the loop hears of its failure through `done`; this only frees.
  service.done.finally(() => [...acceptors, ...upgraders].forEach((acceptor) => acceptor.free()))
    .catch(() => {});
  return {
    service,
    ports: bound,
    rotateTls: (files) => {
      acceptors.forEach((acceptor) => acceptor.replace(files));
      upgraders.forEach((acceptor) => acceptor.replace(withoutClientCa(files)));
    },
  };
}

/** The files without the client CA: an upgraded connection is asked for no certificate. */
function withoutClientCa({ cert, key }: TlsFiles): TlsFiles {
  return { cert, key };
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
