/**
 * The plain TCP transport of the epoll driver (transport/transport.ts):
 * recv(2), send(2) and shutdown(2) on the socket, nothing in between
 * (recv and send rather than read and write: the same TCP work without the
 * kernel's file layer). It is the hot path: each read and write is one FFI
 * call, errno is asked only after a failed call, and nothing is allocated.
 *
 * The TLS transport (transport/tls.ts) also uses one, for what TLS leaves
 * to the socket: SHUT_WR after close_notify, and the raw reads that drop
 * what a client still sends once TLS is over.
 *
 * @module
 */

import {
  HANDSHAKE_DONE,
  READY_READ,
  READY_WRITE,
  type Transport,
  TRANSPORT_FAILED,
  type TransportAcceptor,
  WOULD_BLOCK,
} from "./transport.ts";
import { EAGAIN, EPOLLOUT, type Libc, SHUT_WR } from "../common/libc.ts";

/**
 * What a socket call that moved nothing says to a driver, by its errno:
 * {@linkcode WOULD_BLOCK} for EAGAIN (nothing to read, or no room to
 * write), else {@linkcode TRANSPORT_FAILED} (a reset). For this
 * transport's calls and for a driver's own (io/socket_batch.ts).
 */
export function failedSocketCall(errno: number): number {
  return errno === EAGAIN ? WOULD_BLOCK : TRANSPORT_FAILED;
}

/** Plain TCP on one socket the driver owns. */
export class TcpTransport implements Transport {
  /** A plain connection is ready at accept. */
  readonly handshakes = false;
  /** The socket carries the plaintext: the driver may batch its reads and writes. */
  readonly plain = true;
  /** A socket call says no more than its errno. */
  readonly failure = undefined;
  readonly #libc: Libc;
  readonly #fd: number;

  /** Wraps the accepted, non-blocking socket `fd`. */
  constructor(libc: Libc, fd: number) {
    this.#libc = libc;
    this.#fd = fd;
  }

  /** Done at once: there is no handshake. */
  handshake(): number {
    return HANDSHAKE_DONE;
  }

  /** Nothing to abandon. */
  abandonHandshake(): void {}

  /** recv(2): the count, 0 at end of stream, or why nothing came. */
  read(buffer: Uint8Array, length: number): number {
    const received = this.#libc.receive(this.#fd, buffer, length);
    if (received >= 0) return received;
    return failedSocketCall(this.#libc.errno());
  }

  /** The kernel holds every byte not read yet, and epoll announces them. */
  hasPending(): boolean {
    return false;
  }

  /** send(2): the count taken (fewer when the socket is full), or why none was. */
  write(bytes: Uint8Array, length: number): number {
    const written = this.#libc.send(this.#fd, bytes, length);
    if (written >= 0) return written;
    return failedSocketCall(this.#libc.errno());
  }

  /** shutdown(2) with SHUT_WR: the peer reads the end of the stream. */
  endOutput(): void {
    this.#libc.calls.shutdown(this.#fd, SHUT_WR);
  }

  /** Plain TCP carries no certificate. */
  peerSubject(): string | undefined {
    return undefined;
  }

  /** Writable means write; anything else (readable, a hang-up, an error) means read. */
  ready(events: number): number {
    return (events & EPOLLOUT) !== 0 ? READY_WRITE : READY_READ;
  }

  /** Exactly what the session wants. */
  interest(wanted: number): number {
    return wanted;
  }

  /** Holds nothing besides the socket, which the driver closes. */
  free(): void {}
}

/** Makes a {@linkcode TcpTransport} of each accepted socket. */
export class TcpAcceptor implements TransportAcceptor {
  readonly #libc: Libc;

  /** Makes transports that call `libc`. */
  constructor(libc: Libc) {
    this.#libc = libc;
  }

  /** Plain TCP on `fd`. */
  accept(fd: number): TcpTransport {
    return new TcpTransport(this.#libc, fd);
  }
}
