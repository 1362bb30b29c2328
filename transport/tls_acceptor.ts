/**
 * The TLS side of one epoll serving thread: the loaded OpenSSL and the
 * context that new connections are made with (replaced on rotation). As
 * the driver's {@linkcode TransportAcceptor} it makes each accepted
 * socket a {@linkcode TlsTransport} (transport/tls.ts); the session sees
 * plaintext only, and counts the handshakes itself (session/handshake.ts).
 *
 * ```ts ignore
 * const acceptor = TlsAcceptor.open(libc, { cert, key, clientCa });
 * const transport = acceptor.accept(fd); // then transport.handshake() on readiness
 * acceptor.replace({ cert: next, key: nextKey }); // new connections only
 * acceptor.free();
 * ```
 *
 * @module
 */

import type { TransportAcceptor } from "./transport.ts";
import { TcpTransport } from "./tcp.ts";
import type { Libc } from "../common/libc.ts";
import { openOpenSsl, type OpenSsl } from "./openssl.ts";
import { TlsConnection } from "./tls_connection.ts";
import { TlsContext, type TlsFiles } from "./tls_context.ts";
import { TlsTransport } from "./tls.ts";

/** OpenSSL and the current server context of one thread. */
export class TlsAcceptor implements TransportAcceptor {
  readonly #openssl: OpenSsl;
  readonly #libc: Libc;
  #context: TlsContext;

  private constructor(openssl: OpenSsl, libc: Libc, context: TlsContext) {
    this.#openssl = openssl;
    this.#libc = libc;
    this.#context = context;
  }

  /**
   * Loads OpenSSL and builds the first context from the PEM text of `files`.
   *
   * @throws {TlsContextError} when the certificate, key or client CA is unusable.
   * @throws {Error} when OpenSSL 3 cannot be loaded here.
   */
  static open(libc: Libc, files: TlsFiles): TlsAcceptor {
    const openssl = openOpenSsl();
    if (openssl === undefined) {
      throw new Error("OpenSSL 3 (libssl.so.3) could not be loaded in this thread.");
    }
    return new TlsAcceptor(openssl, libc, TlsContext.create(openssl, files));
  }

  /** Whether clients must present a certificate from the client CA. */
  get verifiesClients(): boolean {
    return this.#context.verifiesClients;
  }

  /** Starts TLS on an accepted socket with the current context (and sets TCP_NODELAY). */
  accept(fd: number): TlsTransport {
    const tls = TlsConnection.accept(this.#openssl, this.#libc, this.#context, fd);
    return new TlsTransport(tls, new TcpTransport(this.#libc, fd));
  }

  /**
   * New connections get a context built from `files`; open ones keep theirs.
   *
   * @throws {TlsContextError} when an input is unusable; the current context then stays.
   */
  replace(files: TlsFiles): void {
    const next = TlsContext.create(this.#openssl, files);
    this.#context.free();
    this.#context = next;
  }

  /** Frees the context (connections still open hold their own reference). */
  free(): void {
    this.#context.free();
  }
}
