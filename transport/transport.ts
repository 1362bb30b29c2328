/**
 * The transport seam of the epoll driver: what carries a connection's
 * bytes between its socket and its session, plain or TLS, behind one
 * interface, as Redis's `ConnectionType` (`src/connection.h`) hides
 * `socket.c` and `tls.c` from `networking.c`. io/epoll.ts gives every
 * connection a {@linkcode Transport} made by a {@linkcode TransportAcceptor}
 * at accept and never asks which kind it holds:
 *
 * - transport/tcp.ts: plain TCP, read(2) and write(2) on the socket;
 *   its handshake is done at accept.
 * - transport/tls.ts: TLS through OpenSSL over the socket
 *   (transport/tls_connection.ts), made by transport/tls_acceptor.ts with the thread's context.
 *
 * What a transport covers, and the driver does not: its handshake (and why
 * it failed), reading into the driver's buffer and writing from the
 * session's, ending its side (TLS close_notify, then SHUT_WR), bytes held
 * inside it that no readiness event will announce (OpenSSL's, see
 * {@linkcode Transport.hasPending}), the peer's certificate subject, which
 * readiness events it needs next (a TLS read can need the socket writable,
 * a TLS write readable: {@linkcode Transport.ready} and
 * {@linkcode Transport.interest} keep those cases inside the TLS
 * transport), and freeing what it holds. The driver keeps the socket
 * itself: it accepts it, registers it with epoll, and closes it after
 * {@linkcode Transport.free}. It also reads a PROXY header that precedes a
 * handshake (a balancer passing TLS through sends it in clear): that
 * header is peeked off the socket before the transport's handshake starts,
 * whatever the transport, so that the handshake finds its first byte where
 * it expects it.
 *
 * The plain transport is the hot path: its read and write are one FFI call
 * each, as the driver's were before this seam, with errno asked only when
 * the call failed, and results are numbers, so nothing is allocated per
 * read or write. A thread that serves only plain TCP holds transports of
 * one kind, so each call site in the driver sees one class and stays
 * monomorphic; one with TLS files holds both kinds once it also serves a
 * plain LDAP port (whose connections may turn TLS by StartTLS), and its
 * call sites see two classes, which V8 still inlines.
 *
 * Readiness, not completion. Each call is made when epoll says the socket
 * is ready and returns at once with what it did. A completion-based driver
 * (io_uring) would be a third driver beside io/epoll.ts and io/deno.ts,
 * implementing io/service.ts's `Service` and driving the same sessions; but
 * there the ring, not the transport, reads and writes the socket, so its
 * seam is the other way round: a transport that is handed the bytes a
 * completed receive brought (`received(bytes, length)`) and hands back the
 * bytes the ring should send next, with plain TCP a pass-through. TLS in
 * that shape is OpenSSL through memory BIOs instead of `SSL_set_fd`: a
 * second TLS transport (say tls_bio_transport.ts, made by the same
 * `TlsAcceptor` from the same `TlsContext`) whose `SSL*` sits between two
 * memory BIOs: ciphertext received is `BIO_write`n into the read BIO and
 * `SSL_read` yields plaintext; `SSL_write` leaves ciphertext in the write
 * BIO, which is `BIO_read` into a buffer the driver sends. The handshake,
 * the failure reasons and the peer subject stay transport/tls_connection.ts's. Under
 * epoll such a transport could implement this interface as well (read(2)
 * into a scratch buffer, `BIO_write`, `SSL_read`), which is how it would be
 * tested before an io_uring driver existed; transport/tls_connection.ts's module
 * comment measures why the epoll loop attaches the socket instead (one FFI
 * call and no copy of the ciphertext per read), and bench/tls_transport_bench.ts
 * runs both.
 *
 * @module
 */

import type { TlsFailure } from "../session/handshake.ts";

/** {@linkcode Transport.handshake}: done; plaintext may flow. */
export const HANDSHAKE_DONE = 0;
/** {@linkcode Transport.handshake}: failed; {@linkcode Transport.failure} says why. */
export const HANDSHAKE_FAILED = -1;

/** {@linkcode Transport.read} and {@linkcode Transport.write}: nothing moved; wait for an event. */
export const WOULD_BLOCK = -1;
/** {@linkcode Transport.read} and {@linkcode Transport.write}: the connection failed. */
export const TRANSPORT_FAILED = -2;

/** {@linkcode Transport.ready}: the event lets the driver read. */
export const READY_READ = 1;
/** {@linkcode Transport.ready}: the event lets the driver write. */
export const READY_WRITE = 2;
/** {@linkcode Transport.ready}: the event lets the driver write, and then read. */
export const READY_WRITE_THEN_READ = 3;

/** One connection's transport, driven by readiness (epoll). */
export interface Transport {
  /**
   * Whether a handshake must finish before plaintext flows (TLS). False
   * when the connection is ready at accept: the driver then never calls
   * {@linkcode handshake}, and the session hears of no handshake.
   */
  readonly handshakes: boolean;
  /**
   * Whether the bytes on the socket are the plaintext itself (plain TCP):
   * a driver may then read and write the socket with calls of its own, such
   * as a batch of them (io/socket_batch.ts), in place of
   * {@linkcode read} and {@linkcode write}.
   */
  readonly plain: boolean;
  /**
   * Why the last call that failed did, when the transport can tell more
   * than the socket did (OpenSSL's reason); undefined otherwise.
   */
  readonly failure: TlsFailure | undefined;
  /**
   * Advances the handshake: call on the events it asks for until done.
   * Returns {@linkcode HANDSHAKE_DONE}, {@linkcode HANDSHAKE_FAILED}, or the
   * epoll events to wait for before calling again.
   */
  handshake(): number;
  /**
   * The handshake will not take place: the connection was refused before it
   * (a PROXY header refused or malformed). Nothing more is spoken in the
   * transport's protocol; what still arrives is read raw, to be dropped.
   */
  abandonHandshake(): void;
  /**
   * Reads up to `length` bytes of plaintext into `buffer`: the count (at
   * least 1), 0 at the end of the peer's data, {@linkcode WOULD_BLOCK}, or
   * {@linkcode TRANSPORT_FAILED}.
   */
  read(buffer: Uint8Array, length: number): number;
  /**
   * Whether bytes already read off the socket wait inside the transport,
   * where no readiness event will announce them: read again without waiting.
   */
  hasPending(): boolean;
  /**
   * Writes up to `length` bytes of `bytes`: the count taken (fewer than
   * `length` when the socket is full), {@linkcode WOULD_BLOCK}, or
   * {@linkcode TRANSPORT_FAILED}.
   */
  write(bytes: Uint8Array, length: number): number;
  /** Ends the server's side: the transport's own goodbye (TLS close_notify), then SHUT_WR. */
  endOutput(): void;
  /** The verified client certificate's subject, one RFC 2253 line; undefined when none. */
  peerSubject(): string | undefined;
  /**
   * What a readiness event lets the driver do: {@linkcode READY_READ},
   * {@linkcode READY_WRITE} or {@linkcode READY_WRITE_THEN_READ}.
   */
  ready(events: number): number;
  /**
   * The epoll events to wait for, given `wanted`, those the session's state
   * asks for (EPOLLOUT while replies wait, else EPOLLIN while it reads).
   */
  interest(wanted: number): number;
  /**
   * Frees what the transport holds; the driver closes the socket next.
   * With `graceful`, an open transport first says goodbye in its protocol
   * (TLS close_notify), once and best effort.
   */
  free(graceful: boolean): void;
}

/** Makes the transport of each socket a driver accepts. */
export interface TransportAcceptor {
  /** The transport for a socket just accepted (non-blocking; the driver keeps it). */
  accept(fd: number): Transport;
}
