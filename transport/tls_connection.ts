/**
 * One server-side TLS connection over a non-blocking socket, driven by
 * readiness: the event loop calls {@linkcode TlsConnection.handshake},
 * {@linkcode TlsConnection.read} and {@linkcode TlsConnection.write} when
 * epoll says the socket is ready, and each call says what it needs next.
 * The session layer above sees plaintext only: io/epoll.ts drives it
 * through transport/tls.ts, its TLS transport.
 *
 * How non-blocking OpenSSL works, for a reader new to it. OpenSSL reads and
 * writes the socket itself (`SSL_set_fd`). When a call cannot finish
 * without the network (the client's next handshake message has not
 * arrived, or the kernel's send buffer is full), it returns at once and
 * `SSL_get_error` says `WANT_READ` or `WANT_WRITE`: call it again, with the
 * same arguments, once the socket is readable or writable. Two surprises:
 * - A read can want a write and a write can want a read (TLS has its own
 *   messages under the application's: a key update, a session ticket), so
 *   the loop must watch for whichever event the call asked for.
 * - Bytes can wait inside OpenSSL, not in the kernel, where epoll will
 *   never report them: the rest of a record (up to 16 KiB) the caller's
 *   buffer had no room for, and the records read ahead (below). After a
 *   read, {@linkcode TlsConnection.hasPending} says so (`SSL_has_pending`;
 *   `SSL_pending` counts only the first kind), and the loop must read again
 *   without waiting for an event, as Redis keeps a list of such
 *   connections.
 *
 * Each call first empties OpenSSL's per-thread error queue
 * (`ERR_clear_error`), because `SSL_get_error` looks at that queue and a
 * stale entry from another connection would be blamed on this one.
 *
 * Why `SSL_set_fd`, with read-ahead, and not memory BIOs (OpenSSL reading
 * from and writing to buffers the caller fills from the socket): with the
 * fd, OpenSSL makes the read(2) and write(2) calls itself, so a read is one
 * FFI call and one system call, with no copy of the ciphertext through
 * JavaScript. But by default OpenSSL reads a record's 5-byte header and
 * then its body: two read(2) calls per record. The context turns on
 * read-ahead (one read(2) takes all the socket holds), which is what makes
 * {@linkcode TlsConnection.hasPending} necessary. Measured with
 * bench/tls_transport_bench.ts under strace, per request and reply on the server:
 * 2 reads and 1 write with the fd alone, 1 and 1 with read-ahead, 1 and 1
 * with memory BIOs (which add 2 FFI calls and 2 copies besides). Time per
 * round trip, client included, median of 3 runs of 200,000 on a shared
 * 2-core machine: 4.36 µs with read-ahead, 4.62 without, 4.46 with memory
 * BIOs. Memory BIOs would make the engine sans-I/O, testable without a
 * socket, but the socket tests here are cheap and real. Redis and nginx attach the
 * fd too (HAProxy plugs in a BIO of its own). A completion-based driver
 * (io_uring) would need the BIOs: transport/transport.ts says where they would go.
 *
 * Ownership: a connection owns its `SSL*` (which holds a reference to its
 * context, so the context may be freed or replaced while it is open) but
 * not the socket: {@linkcode TlsConnection.free} frees the `SSL*`, and the
 * caller closes the descriptor afterwards, on every close path.
 *
 * ```ts ignore
 * const tls = TlsConnection.accept(openssl, libc, context, fd);
 * // on every readiness event until the handshake is done:
 * const step = tls.handshake(); // "done" | "want-read" | "want-write" | "failed"
 * // then:
 * const got = tls.read(buffer); // bytes, or what to wait for, or "closed" / "failed"
 * // ... and once done:
 * tls.shutdown();
 * tls.free();
 * libc.calls.close(fd);
 * ```
 *
 * @module
 */

import { IPPROTO_TCP, type Libc, TCP_NODELAY } from "../common/libc.ts";
import {
  ERR_LIB_SSL,
  errorLibrary,
  errorReason,
  type OpenSsl,
  SSL_ERROR_SSL,
  SSL_ERROR_SYSCALL,
  SSL_ERROR_WANT_READ,
  SSL_ERROR_WANT_WRITE,
  SSL_ERROR_ZERO_RETURN,
  SSL_R_CERTIFICATE_VERIFY_FAILED,
  SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE,
  X509_V_OK,
  XN_FLAG_RFC2253,
} from "./openssl.ts";
import type { TlsFailure } from "../session/handshake.ts";
import type { TlsContext } from "./tls_context.ts";

/** What a handshake step needs next, or how it ended. */
export type HandshakeResult = "done" | "want-read" | "want-write" | "failed";
/** Plaintext bytes read (at least 1), or what to wait for, or the end. */
export type ReadResult = number | "want-read" | "want-write" | "closed" | "failed";
/** Plaintext bytes taken (at least 1), or what to wait for, or a failure. */
export type WriteResult = number | "want-read" | "want-write" | "failed";

const ONE = new Uint8Array(new Int32Array([1]).buffer);
/** Bounds reading a subject: no real one is anywhere near this many chunks. */
const MAX_SUBJECT_CHUNKS = 64;
const SUBJECT_CHUNK = new Uint8Array(1024);

/** One server-side TLS connection on a socket the caller owns. */
export class TlsConnection {
  readonly #openssl: OpenSsl;
  readonly #libc: Libc;
  #ssl: Deno.PointerObject | null;
  /** The socket descriptor; the caller closes it after {@linkcode free}. */
  readonly fd: number;
  #failure: TlsFailure | undefined;
  /** After SSL_ERROR_SSL or SSL_ERROR_SYSCALL OpenSSL forbids SSL_shutdown. */
  #fatal = false;
  #subject: string | undefined | null = null;

  private constructor(openssl: OpenSsl, libc: Libc, ssl: Deno.PointerObject, fd: number) {
    this.#openssl = openssl;
    this.#libc = libc;
    this.#ssl = ssl;
    this.fd = fd;
  }

  /**
   * Starts the server side of TLS on an accepted, non-blocking socket, and
   * turns Nagle's algorithm off on it (the handshake's last flight and each
   * reply would otherwise wait for the client's delayed ACK).
   *
   * @throws {Error} when OpenSSL cannot make the connection (out of memory).
   * @throws {TypeError} when `context` was freed.
   */
  static accept(openssl: OpenSsl, libc: Libc, context: TlsContext, fd: number): TlsConnection {
    const { ssl } = openssl;
    openssl.crypto.ERR_clear_error();
    const pointer = ssl.SSL_new(context.pointer);
    if (pointer === null) {
      throw new Error(`OpenSSL could not make a connection: ${takeErrorText(openssl)}.`);
    }
    if (ssl.SSL_set_fd(pointer, fd) !== 1) {
      ssl.SSL_free(pointer);
      throw new Error(`OpenSSL could not attach socket ${fd}: ${takeErrorText(openssl)}.`);
    }
    ssl.SSL_set_accept_state(pointer);
    // Best effort: a socket from a TCP_NODELAY listener has it already.
    libc.calls.setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, ONE, ONE.length);
    return new TlsConnection(openssl, libc, pointer, fd);
  }

  /** Why the connection failed, once a call returned `"failed"`. */
  get failure(): TlsFailure | undefined {
    return this.#failure;
  }

  /**
   * Advances the handshake: call on the event it asked for until `"done"`.
   * On `"done"`, read at once without waiting for an event: a TLS 1.3
   * client sends its first query right behind its last handshake message,
   * and OpenSSL may have read both. On `"failed"`, {@linkcode failure} says
   * why; nothing was answered and the connection should be freed and closed.
   */
  handshake(): HandshakeResult {
    const ssl = this.#live();
    this.#openssl.crypto.ERR_clear_error();
    const result = this.#openssl.ssl.SSL_do_handshake(ssl);
    if (result === 1) return "done";
    const error = this.#openssl.ssl.SSL_get_error(ssl, result);
    if (error === SSL_ERROR_WANT_READ) return "want-read";
    if (error === SSL_ERROR_WANT_WRITE) return "want-write";
    this.#failure = this.#handshakeFailure(error);
    return "failed";
  }

  /**
   * Reads decrypted bytes into `buffer`, at most `length`. `"closed"` is the
   * client's end of data (close_notify, or TCP closed). After a read, check
   * {@linkcode hasPending}: bytes OpenSSL holds are not announced by epoll.
   */
  read(buffer: Uint8Array, length: number = buffer.length): ReadResult {
    const ssl = this.#live();
    this.#openssl.crypto.ERR_clear_error();
    const result = this.#openssl.ssl.SSL_read(ssl, buffer, length);
    if (result > 0) return result;
    const error = this.#openssl.ssl.SSL_get_error(ssl, result);
    if (error === SSL_ERROR_WANT_READ) return "want-read";
    if (error === SSL_ERROR_WANT_WRITE) return "want-write";
    if (error === SSL_ERROR_ZERO_RETURN) return "closed";
    this.#failure = this.#streamFailure(error, "read");
    return "failed";
  }

  /**
   * Whether OpenSSL holds bytes of this connection (decrypted, or records
   * read ahead) that no readiness event will announce: if so, call
   * {@linkcode read} again without waiting. It may be true of a partial
   * record, and the read then says `"want-read"`.
   */
  hasPending(): boolean {
    return this.#openssl.ssl.SSL_has_pending(this.#live()) === 1;
  }

  /**
   * Encrypts and sends up to `length` bytes of `bytes`; returns how many it
   * took, which may be fewer (send the rest later). After `"want-write"` or
   * `"want-read"`, call again with the same bytes (they may have moved:
   * a subarray of another buffer is fine).
   */
  write(bytes: Uint8Array, length: number): WriteResult {
    if (length <= 0) return 0;
    const ssl = this.#live();
    this.#openssl.crypto.ERR_clear_error();
    const result = this.#openssl.ssl.SSL_write(ssl, bytes, length);
    if (result > 0) return result;
    const error = this.#openssl.ssl.SSL_get_error(ssl, result);
    if (error === SSL_ERROR_WANT_WRITE) return "want-write";
    if (error === SSL_ERROR_WANT_READ) return "want-read";
    this.#failure = this.#streamFailure(error, "write");
    return "failed";
  }

  /**
   * Sends close_notify, best effort: once, without waiting for the
   * client's, as Redis does (the socket is closed right after).
   */
  shutdown(): void {
    if (this.#ssl === null || this.#fatal) return;
    this.#openssl.crypto.ERR_clear_error();
    this.#openssl.ssl.SSL_shutdown(this.#ssl);
    this.#openssl.crypto.ERR_clear_error();
  }

  /**
   * The verified client certificate's subject as one RFC 2253 line (most
   * specific part first, e.g. `CN=client one,O=addrbook test`; bytes
   * outside ASCII escaped), or `undefined` when the client presented none
   * or it did not verify. It may name a person: log it only at debug level.
   */
  peerSubject(): string | undefined {
    if (this.#subject === null) this.#subject = this.#readPeerSubject();
    return this.#subject;
  }

  /** The protocol version in use, e.g. `TLSv1.3`. */
  get version(): string {
    const pointer = this.#openssl.ssl.SSL_get_version(this.#live());
    return pointer === null ? "unknown" : new Deno.UnsafePointerView(pointer).getCString();
  }

  /** Frees the `SSL*` (the caller then closes {@linkcode fd}); calling it again does nothing. */
  free(): void {
    if (this.#ssl === null) return;
    this.#openssl.ssl.SSL_free(this.#ssl);
    this.#ssl = null;
  }

  #live(): Deno.PointerObject {
    if (this.#ssl === null) throw new TypeError(`The TLS connection on fd ${this.fd} was freed.`);
    return this.#ssl;
  }

  #handshakeFailure(error: number): TlsFailure {
    this.#fatal = error === SSL_ERROR_SSL || error === SSL_ERROR_SYSCALL;
    if (error === SSL_ERROR_ZERO_RETURN) {
      return { kind: "failed", reason: "the client closed the connection during the handshake" };
    }
    if (error === SSL_ERROR_SYSCALL) return { kind: "failed", reason: this.#systemReason() };
    const queued = this.#openssl.takeError();
    if (queued === undefined) return { kind: "failed", reason: `SSL_get_error ${error}` };
    if (errorLibrary(queued.code) === ERR_LIB_SSL) {
      const reason = errorReason(queued.code);
      if (reason === SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
        return { kind: "client_cert_refused", reason: "the client sent no certificate" };
      }
      if (reason === SSL_R_CERTIFICATE_VERIFY_FAILED) {
        const verify = Number(this.#openssl.ssl.SSL_get_verify_result(this.#live()));
        return {
          kind: "client_cert_refused",
          reason: `the client certificate did not verify: ${this.#openssl.verifyErrorText(verify)}`,
        };
      }
    }
    return { kind: "failed", reason: `the handshake failed: ${queued.text}` };
  }

  #streamFailure(error: number, call: "read" | "write"): TlsFailure {
    this.#fatal = error === SSL_ERROR_SSL || error === SSL_ERROR_SYSCALL;
    if (error === SSL_ERROR_SYSCALL) return { kind: "failed", reason: this.#systemReason() };
    const queued = this.#openssl.takeError();
    return {
      kind: "failed",
      reason: `the TLS ${call} failed: ${queued?.text ?? `SSL_get_error ${error}`}`,
    };
  }

  /** After SSL_ERROR_SYSCALL: errno says which call failed, 0 that the peer just went away. */
  #systemReason(): string {
    const errno = this.#libc.errno();
    this.#openssl.crypto.ERR_clear_error();
    return errno === 0
      ? "the client closed the connection mid-record"
      : `a socket call failed with errno ${errno}`;
  }

  #readPeerSubject(): string | undefined {
    const { ssl, crypto } = this.#openssl;
    const live = this.#live();
    const certificate = ssl.SSL_get1_peer_certificate(live);
    if (certificate === null) return undefined;
    try {
      if (ssl.SSL_get_verify_result(live) !== BigInt(X509_V_OK)) return undefined;
      const bio = crypto.BIO_new(crypto.BIO_s_mem());
      if (bio === null) return undefined;
      try {
        // The name belongs to the certificate: not freed separately.
        const name = crypto.X509_get_subject_name(certificate);
        if (crypto.X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) < 0) return undefined;
        return readAll(crypto.BIO_read, bio);
      } finally {
        crypto.BIO_free(bio);
      }
    } finally {
      crypto.X509_free(certificate);
    }
  }
}

/** Everything in a memory BIO, as text (RFC 2253 output is ASCII: other bytes are escaped). */
function readAll(
  read: OpenSsl["crypto"]["BIO_read"],
  bio: Deno.PointerObject,
): string {
  const decoder = new TextDecoder();
  let text = "";
  for (let i = 0; i < MAX_SUBJECT_CHUNKS; i++) {
    const count = read(bio, SUBJECT_CHUNK, SUBJECT_CHUNK.length);
    if (count <= 0) break;
    text += decoder.decode(SUBJECT_CHUNK.subarray(0, count), { stream: true });
  }
  return text + decoder.decode();
}

function takeErrorText(openssl: OpenSsl): string {
  return openssl.takeError()?.text ?? "no reason given";
}
