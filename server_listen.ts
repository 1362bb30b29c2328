/**
 * Opening the server's listening sockets with `Deno.listen` or
 * `Deno.listenTls`, and checking an address before the book is loaded.
 *
 * Serving threads import this module, so it imports nothing of the server
 * beyond its error type: a thread's module graph stays small (no book
 * loader, no CSV parser).
 *
 * @module
 */

import { type HandshakeFailed, NodeTlsListener } from "./driver_deno_tls.ts";
import { formatAddress } from "./net_address.ts";
import { StartError } from "./server_error.ts";
import { describeError, sentence } from "./errors.ts";

export type { TlsFiles } from "./driver.ts";
import type { TlsFiles } from "./driver.ts";

/** How a thread binds its listener. */
export type PortSharing =
  /** One thread: a plain bind. */
  | "alone"
  /** The first of several threads: a bind that fails if anyone else holds the port. */
  | "first"
  /** A later thread, joining the first on its port. */
  | "join";

/**
 * Listens on the address, with SO_REUSEPORT when threads share it.
 *
 * @throws {StartError} when the port is in use, the address is not this
 * machine's, the port needs privileges, or the TLS certificate or key is unusable.
 */
export function listen(
  hostname: string,
  port: number,
  sharing: PortSharing,
  tls: TlsFiles | undefined,
): Deno.Listener {
  const sharePort = sharing !== "alone";
  try {
    if (sharing === "first" && port !== 0) {
      // SO_REUSEPORT would let us join another server already on this port
      // and split its traffic; refuse to, as a plain bind would.
      Deno.listen({ hostname, port }).close();
    }
    const options = { hostname, port, reusePort: sharePort || undefined };
    return tls
      ? Deno.listenTls({ ...options, cert: tls.cert, key: tls.key })
      : Deno.listen(options);
  } catch (error) {
    throw listenError(hostname, port, tls, error);
  }
}

/**
 * Listens with node:tls, requiring client certificates from `tls.clientCa`
 * (for the `Deno.listen` driver, where `Deno.listenTls` cannot ask for
 * them); one thread only.
 *
 * @throws {StartError} as {@linkcode listen} does.
 */
export async function listenRequiringCertificates(
  hostname: string,
  port: number,
  tls: TlsFiles,
  onFailure: HandshakeFailed,
): Promise<NodeTlsListener> {
  try {
    return await NodeTlsListener.open(hostname, port, tls, onFailure);
  } catch (error) {
    throw listenError(hostname, port, tls, error);
  }
}

/**
 * Checks that the server could listen on the address (and use the TLS
 * certificate and key) by binding it once and letting it go, so that a
 * busy port or a wrong address is reported at once, before a large book
 * takes seconds to load.
 *
 * @throws {StartError} as {@linkcode listen} does.
 */
export function checkListenAddress(
  hostname: string,
  port: number,
  tls: TlsFiles | undefined,
): void {
  listen(hostname, port, "alone", tls).close();
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
