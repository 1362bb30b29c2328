/**
 * The TLS side of one epoll serving thread: the loaded OpenSSL, the context
 * that new connections are made with (replaced on rotation), and how a
 * handshake's outcome is counted and logged. io_epoll.ts puts a
 * {@linkcode TlsConnection} from {@linkcode TlsAcceptor.accept} between each
 * socket and its session; the session sees plaintext only.
 *
 * ```ts ignore
 * const acceptor = TlsAcceptor.open(libc, { certificate, key, clientCa });
 * const tls = acceptor.accept(fd); // then tls.handshake() on readiness
 * acceptor.replace({ certificate: next, key: nextKey }); // new connections only
 * acceptor.free();
 * ```
 *
 * @module
 */

import type { Libc } from "./libc.ts";
import { Counter } from "./metrics.ts";
import { formatAddress } from "./net_address.ts";
import type { SessionContext } from "./session.ts";
import { openOpenSsl, type OpenSsl } from "./tls_openssl.ts";
import { TlsConnection, type TlsFailure } from "./tls_connection.ts";
import { TlsContext, type TlsContextOptions } from "./tls_context.ts";

/** The failure reason of a client that hung up mid-handshake: a port scan or health check. */
const HANG_UP_REASONS: ReadonlySet<string> = new Set([
  "the client closed the connection during the handshake",
  "the client closed the connection mid-record",
]);

/** tls_connection.ts's reason when the client sent no certificate. */
const NO_CERTIFICATE_REASON = "the client sent no certificate";

/** OpenSSL and the current server context of one thread. */
export class TlsAcceptor {
  readonly #openssl: OpenSsl;
  readonly #libc: Libc;
  #context: TlsContext;

  private constructor(openssl: OpenSsl, libc: Libc, context: TlsContext) {
    this.#openssl = openssl;
    this.#libc = libc;
    this.#context = context;
  }

  /**
   * Loads OpenSSL and builds the first context from PEM text.
   *
   * @throws {TlsContextError} when the certificate, key or client CA is unusable.
   * @throws {Error} when OpenSSL 3 cannot be loaded here.
   */
  static open(libc: Libc, pem: TlsContextOptions): TlsAcceptor {
    const openssl = openOpenSsl();
    if (openssl === undefined) {
      throw new Error("OpenSSL 3 (libssl.so.3) could not be loaded in this thread.");
    }
    return new TlsAcceptor(openssl, libc, TlsContext.create(openssl, pem));
  }

  /** Whether clients must present a certificate from the client CA. */
  get verifiesClients(): boolean {
    return this.#context.verifiesClients;
  }

  /** Starts TLS on an accepted socket with the current context (and sets TCP_NODELAY). */
  accept(fd: number): TlsConnection {
    return TlsConnection.accept(this.#openssl, this.#libc, this.#context, fd);
  }

  /**
   * New connections get a context built from `pem`; open ones keep theirs.
   *
   * @throws {TlsContextError} when an input is unusable; the current context then stays.
   */
  replace(pem: TlsContextOptions): void {
    const next = TlsContext.create(this.#openssl, pem);
    this.#context.free();
    this.#context = next;
  }

  /** Frees the context (connections still open hold their own reference). */
  free(): void {
    this.#context.free();
  }
}

/**
 * Counts a failed handshake and logs it: at info with the peer's address
 * and the reason (repeats from one host summarised, as refusals are), at
 * debug when the client merely hung up. Nothing of the certificate is logged.
 */
export function reportHandshakeFailure(
  context: SessionContext,
  peer: { hostname: string; port: number },
  failure: TlsFailure,
  now: number,
): void {
  context.counters[handshakeFailureCounter(failure)]++;
  const fields = { peer: formatAddress(peer.hostname, peer.port), reason: failure.reason };
  if (!isLoggedAtInfo(failure)) context.log.debug("TLS handshake failed", fields);
  else if (context.refusals.note(`${peer.hostname} ${failureCode(failure)}`, now) > 0) {
    context.log.info("TLS handshake failed", fields);
  }
}

/** The counter a failed handshake is counted in. */
export function handshakeFailureCounter(failure: TlsFailure): number {
  return failure.kind === "client_cert_refused"
    ? Counter.tlsClientCertRefused
    : Counter.tlsHandshakesFailed;
}

/**
 * A short name for a failed handshake's cause, without spaces: with the
 * peer's host, the key under which repeated failures are summarised.
 */
export function failureCode(failure: TlsFailure): string {
  if (failure.kind === "failed") return "tls_handshake_failed";
  return failure.reason === NO_CERTIFICATE_REASON
    ? "tls_no_client_certificate"
    : "tls_client_certificate_unverified";
}

/**
 * Whether a handshake failure is worth an info line: not when the client
 * merely hung up (load balancers' TCP checks do that all day).
 */
export function isLoggedAtInfo(failure: TlsFailure): boolean {
  return !HANG_UP_REASONS.has(failure.reason);
}
