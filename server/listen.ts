/**
 * Binding a serving thread's listening socket, for either event loop, with
 * failures worded alike: `Deno.listen` for plain TCP and node:tls for TLS
 * under the `Deno.listen` loop (transport/node_tls_listener.ts says why not
 * `Deno.listenTls`), a libc socket under the epoll loop; and checking an
 * address before the book is loaded. server/serve.ts starts a loop on what
 * these bind.
 *
 * Serving threads import this module, so it imports nothing of the server
 * beyond its error type: a thread's module graph stays small (no book
 * loader, no CSV parser).
 *
 * @module
 */

import { describeError, sentence } from "../common/errors.ts";
import {
  EACCES,
  EADDRINUSE,
  EADDRNOTAVAIL,
  type Libc,
  listenTcp,
  SocketError,
} from "../common/libc.ts";
import { formatAddress } from "../common/net_address.ts";
import { StartError } from "./error.ts";
import type { SessionContext } from "../session/session.ts";
import { reportHandshakeFailure, reportHandshakeTimeout } from "../session/handshake.ts";
import type { TlsFiles } from "../transport/tls_context.ts";
import { NodeTlsListener } from "../transport/node_tls_listener.ts";

/** How a thread binds its listener. */
export type PortSharing =
  /** One thread: a plain bind. */
  | "alone"
  /** The first of several threads: a bind that fails if anyone else holds the port. */
  | "first"
  /** A later thread, joining the first on its port. */
  | "join";

/**
 * Listens on the address (plain TCP), with SO_REUSEPORT when threads share it.
 *
 * @throws {StartError} when the port is in use, the address is not this
 * machine's, or the port needs privileges.
 */
export function listen(hostname: string, port: number, sharing: PortSharing): Deno.Listener {
  try {
    refuseTakenPort(hostname, port, sharing);
    return Deno.listen({ hostname, port, reusePort: sharing !== "alone" || undefined });
  } catch (error) {
    throw listenError(hostname, port, undefined, error);
  }
}

/**
 * Listens with node:tls on the address, with SO_REUSEPORT when threads
 * share it, requiring client certificates when `tls.clientCa` is given.
 * Handshakes have `context.limits.frameTimeoutMs` to finish (a handshake
 * is like a frame begun and not finished; 0 waits forever); failures and
 * timeouts, which come before a session exists, are reported to the
 * session layer (session/handshake.ts) with `context`, so they are counted
 * and logged as the epoll loop's sessions count and log theirs.
 *
 * @throws {StartError} as {@linkcode listen} does, and when the TLS
 * certificate or key is unusable.
 */
export async function listenNodeTls(
  hostname: string,
  port: number,
  sharing: PortSharing,
  tls: TlsFiles,
  context: SessionContext,
): Promise<NodeTlsListener> {
  try {
    refuseTakenPort(hostname, port, sharing);
    return await NodeTlsListener.open(hostname, port, {
      files: tls,
      reusePort: sharing !== "alone",
      handshakeTimeoutMs: context.limits.frameTimeoutMs,
      onFailure: (peer, failure) => reportHandshakeFailure(context, peer, failure, Date.now()),
      onTimeout: (peer, afterMs) => reportHandshakeTimeout(context, peer, afterMs),
    });
  } catch (error) {
    throw listenError(hostname, port, tls, error);
  }
}

/**
 * Opens the epoll loop's listening socket (non-blocking, TCP_NODELAY, with
 * SO_REUSEPORT when threads share the port).
 *
 * @throws {Error} worded as {@linkcode listen}'s failures are.
 */
export function listenEpoll(
  libc: Libc,
  hostname: string,
  port: number,
  sharing: PortSharing,
): { fd: number; port: number } {
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

/**
 * SO_REUSEPORT would let the first thread join another server already on
 * this port and split its traffic; refuse to, as a plain bind would.
 */
function refuseTakenPort(hostname: string, port: number, sharing: PortSharing): void {
  if (sharing === "first" && port !== 0) Deno.listen({ hostname, port }).close();
}

/**
 * Checks that the server could listen on the address by binding it once
 * and letting it go, so that a busy port or a wrong address is reported at
 * once, before a large book takes seconds to load. (The TLS files are
 * checked apart, naming the file: server/tls_files.ts.)
 *
 * @throws {StartError} as {@linkcode listen} does.
 */
export function checkListenAddress(hostname: string, port: number): void {
  listen(hostname, port, "alone").close();
}

function listenError(
  hostname: string,
  port: number,
  tls: TlsFiles | undefined,
  error: unknown,
): StartError {
  const where = formatAddress(hostname, port);
  const code = (error as { code?: string }).code; // node:tls's errors
  if (error instanceof Deno.errors.AddrInUse || code === "EADDRINUSE") {
    return new StartError(`Cannot listen on ${where}: the port is already in use.`);
  }
  if (error instanceof Deno.errors.AddrNotAvailable || code === "EADDRNOTAVAIL") {
    return new StartError(`Cannot listen on ${where}: no such address on this machine.`);
  }
  if (error instanceof Deno.errors.PermissionDenied || code === "EACCES") {
    return new StartError(`Cannot listen on ${where}: permission denied.`);
  }
  if (tls && error instanceof Error) {
    return new StartError(`Cannot use the TLS certificate or key: ${sentence(error.message)}`);
  }
  return new StartError(`Cannot listen on ${where}: ${sentence(describeError(error))}`);
}
