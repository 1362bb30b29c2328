/**
 * The TLS transport of the epoll driver (transport/transport.ts): a
 * {@linkcode TlsConnection} (OpenSSL reading and writing the socket itself)
 * between a socket and its session, which sees plaintext only. Made by
 * transport/tls_acceptor.ts with the thread's current context.
 *
 * What TLS adds to plain TCP stays in here:
 * - The handshake, on the events OpenSSL asks for; a failure's reason for
 *   the session to count and log.
 * - A read that needs the socket writable (a key update's reply), and a
 *   write that needs it readable: {@linkcode TlsTransport.interest} asks
 *   epoll for the event the call needs, and {@linkcode TlsTransport.ready}
 *   turns that event back into the read or write that waited for it.
 * - Bytes OpenSSL decrypted or read ahead, which epoll does not announce:
 *   {@linkcode TlsTransport.hasPending}, so the driver reads again at once.
 * - Its end: close_notify once, then SHUT_WR; none after a fatal error or
 *   before a handshake that never took place. Once TLS is over, what still
 *   arrives is read raw (the plain transport's read) and dropped by the
 *   lingering session.
 *
 * @module
 */

import {
  HANDSHAKE_DONE,
  HANDSHAKE_FAILED,
  READY_READ,
  READY_WRITE,
  READY_WRITE_THEN_READ,
  type Transport,
  TRANSPORT_FAILED,
  WOULD_BLOCK,
} from "./transport.ts";
import type { TcpTransport } from "./tcp.ts";
import { EPOLLIN, EPOLLOUT } from "../common/libc.ts";
import type { TlsFailure } from "../session/handshake.ts";
import type { TlsConnection } from "./tls_connection.ts";

/** One TLS connection as the epoll driver sees every connection. */
export class TlsTransport implements Transport {
  /** No plaintext flows before the TLS handshake is done. */
  readonly handshakes = true;
  /** The socket carries TLS records: only this transport reads and writes it. */
  readonly plain = false;
  readonly #tls: TlsConnection;
  /** The socket under TLS, for SHUT_WR and for raw reads once TLS is over. */
  readonly #socket: TcpTransport;
  /** The handshake is done and TLS carries the plaintext. */
  #established = false;
  /** TLS is over (close_notify sent, the handshake failed or was abandoned): reads are raw. */
  #ended = false;
  /** The last read needs the socket writable before it can go on. */
  #readWantsWrite = false;
  /** The last write needs the socket readable before it can go on. */
  #writeWantsRead = false;
  #failure: TlsFailure | undefined;

  /** Puts `tls` between `socket` and the session; the transport frees `tls`. */
  constructor(tls: TlsConnection, socket: TcpTransport) {
    this.#tls = tls;
    this.#socket = socket;
  }

  /** OpenSSL's reason for the last failure; undefined after a raw read failed. */
  get failure(): TlsFailure | undefined {
    return this.#failure;
  }

  /** One handshake step: done, failed (TLS is then over), or the event to wait for. */
  handshake(): number {
    const step = this.#tls.handshake();
    if (step === "done") {
      this.#established = true;
      return HANDSHAKE_DONE;
    }
    if (step === "want-read") return EPOLLIN;
    if (step === "want-write") return EPOLLOUT;
    this.#failure = this.#tls.failure;
    this.#ended = true; // no TLS after a fatal error: not even close_notify
    return HANDSHAKE_FAILED;
  }

  /** No TLS was spoken, so none is ended. */
  abandonHandshake(): void {
    this.#ended = true;
  }

  /** Plaintext through OpenSSL, or raw bytes to drop once TLS is over. */
  read(buffer: Uint8Array, length: number): number {
    if (this.#ended) {
      this.#failure = undefined;
      return this.#socket.read(buffer, length);
    }
    const got = this.#tls.read(buffer, length);
    if (typeof got === "number") return got;
    if (got === "closed") return 0;
    if (got === "want-read") return WOULD_BLOCK;
    if (got === "want-write") {
      this.#readWantsWrite = true;
      return WOULD_BLOCK;
    }
    this.#failure = this.#tls.failure;
    return TRANSPORT_FAILED;
  }

  /** Whether OpenSSL holds bytes of this connection that epoll will not announce. */
  hasPending(): boolean {
    return !this.#ended && this.#tls.hasPending();
  }

  /**
   * Encrypts and sends what the socket takes. OpenSSL may take a record at a
   * time, so this goes on until all is taken or OpenSSL wants an event:
   * fewer than `length` means the socket is full (or needs input first).
   */
  write(bytes: Uint8Array, length: number): number {
    let taken = 0;
    while (taken < length) {
      // A view only for a write longer than one record: replies are usually shorter.
      const rest = taken === 0 ? bytes : bytes.subarray(taken, length);
      const result = this.#tls.write(rest, length - taken);
      if (typeof result === "number") {
        taken += result;
        continue;
      }
      if (result === "failed") {
        // The session is aborted: what was taken before no longer matters.
        this.#failure = this.#tls.failure;
        return TRANSPORT_FAILED;
      }
      if (result === "want-read") this.#writeWantsRead = true;
      break;
    }
    return taken > 0 ? taken : WOULD_BLOCK;
  }

  /** close_notify (once, unless TLS is over already), then SHUT_WR. */
  endOutput(): void {
    if (!this.#ended) {
      this.#tls.shutdown();
      this.#ended = true;
    }
    this.#socket.endOutput();
  }

  /** The verified client certificate's subject, if any. */
  peerSubject(): string | undefined {
    return this.#tls.peerSubject();
  }

  /**
   * Writable: the write that waited, or the read that wanted it. Readable:
   * the write that wanted it first, then the read.
   */
  ready(events: number): number {
    if ((events & EPOLLOUT) !== 0) {
      if (!this.#readWantsWrite) return READY_WRITE;
      this.#readWantsWrite = false;
      return READY_READ;
    }
    if (!this.#writeWantsRead) return READY_READ;
    this.#writeWantsRead = false;
    return READY_WRITE_THEN_READ;
  }

  /**
   * What the session wants, plus writability for a read that needs it; a
   * write that waits for input waits on readability instead (writability
   * would wake the loop at once, to a write that cannot go on).
   */
  interest(wanted: number): number {
    let events = wanted;
    if (this.#readWantsWrite) events |= EPOLLOUT;
    if (this.#writeWantsRead) events = (events & ~EPOLLOUT) | EPOLLIN;
    return events;
  }

  /** Frees the `SSL*`; a session that ended cleanly says so in TLS first. */
  free(graceful: boolean): void {
    if (graceful && this.#established && !this.#ended) this.#tls.shutdown();
    this.#ended = true;
    this.#tls.free();
  }
}
