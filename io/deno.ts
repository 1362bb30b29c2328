/**
 * The `Deno.listen` driver: an accept loop and one small async loop per
 * connection, for platforms without the epoll driver and `--io deno`. It
 * accepts from any {@linkcode Acceptor}: `Deno.listen`'s, or for TLS
 * node:tls's (transport/node_tls_listener.ts), which hands over connections whose
 * handshake is done and says how it went
 * ({@linkcode Stream.completedHandshake}); the session hears of that
 * handshake as under epoll, and the driver never asks which it has. Each
 * loop moves bytes between its socket and its {@linkcode Session}: it
 * writes what the session has due, reads while the session wants input,
 * and half-closes or closes when the session says so. A sweep ticks the
 * sessions whose deadline has passed. Every rule is the session's.
 *
 * Because a loop does not read while the session holds replies for a peer
 * that is not reading, a client that never reads cannot make the server
 * buffer more than the pending-write limit for it.
 *
 * @module
 */

import type { AddressBook } from "../book/addressbook.ts";
import {
  ACCEPT_PAUSE_MS,
  DRAIN_SWEEP_MS,
  noteAcceptFailed,
  noteAcceptsResumed,
  type Service,
  type ServiceOptions,
  sweepInterval,
} from "./service.ts";
import { FailureEpisode } from "../common/log_repeats.ts";
import { describeError } from "../common/errors.ts";
import { formatAddress } from "../common/net_address.ts";
import {
  findSocketBetween,
  isSocketBetween,
  type Libc,
  openLibc,
  tcpBytesAcked,
} from "../common/libc.ts";
import {
  DRAIN_GRACE_MS,
  type PeerAddress,
  reportRepeatedRefusals,
  Session,
} from "../session/session.ts";

const FIRST_READ_SIZE = 4096;
const LARGE_READ_SIZE = 65536;

/**
 * A connection as the driver uses it: a `Deno.Conn`, or one whose
 * handshake its listener has done already (node:tls's).
 */
export interface Stream {
  /** Reads into `buffer`; null at the end of the peer's data. */
  read(buffer: Uint8Array): Promise<number | null>;
  /** Writes some of `bytes`; resolves with how many. */
  write(bytes: Uint8Array): Promise<number>;
  /** Ends the server's side. */
  closeWrite(): Promise<void>;
  /** Closes at once. */
  close(): void;
  /** The peer's address. */
  readonly remoteAddr: Deno.Addr;
  /** This end's address, to find the socket's descriptor by (see {@linkcode acknowledgedCount}). */
  readonly localAddr?: Deno.Addr;
  /** Turns Nagle's algorithm off, where the connection can. */
  setNoDelay?(noDelay?: boolean): void;
  /**
   * Set when the listener completed a handshake before handing the
   * connection over: the verified client certificate's subject, if any.
   */
  readonly completedHandshake?: { readonly peerSubject: string | undefined };
}

/** What the driver accepts from: `Deno.listen` for plain TCP, or node:tls for TLS. */
export interface Acceptor {
  /** The next connection. */
  accept(): Promise<Stream>;
  /** Stops accepting. */
  close(): void;
}

/** One open connection: its socket, its session, and how to wake its loop. */
interface Connection {
  readonly conn: Stream;
  readonly session: Session;
  /** Set while the loop waits for the session to change with nothing to read or write. */
  wake: (() => void) | undefined;
  /** The socket is closed (by the loop, a timeout, or abort). */
  closed: boolean;
  /** The loop waits on a read. */
  reading: boolean;
  /** A write made beside the loop while it reads (see #react), until it is done. */
  flushing: Promise<void> | undefined;
}

/** Accepts connections on a listener and serves them until shut down. */
export class ConnectionService implements Service {
  readonly #listener: Acceptor;
  readonly #context: ServiceOptions;
  /** libc, when FFI is allowed: to read what a stalled peer acknowledged. */
  readonly #libc: Libc | undefined = openLibc();
  readonly #connections = new Set<Connection>();
  /** Accept failures in a row, so that an episode is logged once, with its count. */
  readonly #acceptFailures = new FailureEpisode();
  #draining = false;
  #sweepTimer: ReturnType<typeof setInterval> | undefined;
  #sweepEvery: number;
  #allClosed: (() => void) | undefined;
  readonly #accepting: Promise<void>;
  /** Resolves when the listener is closed and every connection has ended. */
  readonly done: Promise<void>;
  #resolveDone!: () => void;

  /** Starts accepting on `listener` at once. */
  constructor(listener: Acceptor, options: ServiceOptions) {
    this.#listener = listener;
    this.#context = options;
    this.#sweepEvery = sweepInterval(options.limits);
    this.#sweepTimer = setInterval(() => this.#sweep(), this.#sweepEvery);
    this.done = new Promise((resolve) => this.#resolveDone = resolve);
    this.#accepting = this.#acceptLoop();
  }

  /** Replaces the book; each later query is answered from the new one. */
  setBook(book: AddressBook): void {
    this.#context.frontEnd.prepare?.(book);
    this.#context.book = book;
  }

  /** Drains, as {@linkcode Service.shutdown} says. */
  async shutdown(): Promise<void> {
    this.#draining = true;
    const now = Date.now();
    for (const connection of this.#connections) this.#drain(connection, now);
    this.#setSweep(Math.min(this.#sweepEvery, DRAIN_SWEEP_MS));
    // Clients that connected before the signal may still wait in the accept
    // queue, their queries sent: closing the listener now would reset them.
    await new Promise((resolve) => setTimeout(resolve, DRAIN_GRACE_MS));
    this.#closeListener();
    await this.#accepting;
    if (this.#connections.size > 0) {
      await new Promise<void>((resolve) => this.#allClosed = resolve);
    }
    this.#finish();
  }

  /** Closes the listener and every connection at once. */
  async abort(): Promise<void> {
    this.#draining = true;
    this.#closeListener();
    for (const connection of this.#connections) {
      connection.session.abort();
      this.#react(connection);
    }
    await this.#accepting;
    this.#finish();
  }

  async #acceptLoop(): Promise<void> {
    for (;;) {
      let conn: Stream;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (error instanceof Deno.errors.BadResource) return; // the listener was closed
        if (this.#draining) return;
        // Out of file descriptors and the like: keep serving the others, and
        // wait a little before trying again rather than spin on the error.
        noteAcceptFailed(this.#context.log, this.#acceptFailures, Date.now(), {
          error: describeError(error),
        });
        await new Promise((resolve) => setTimeout(resolve, ACCEPT_PAUSE_MS));
        continue;
      }
      noteAcceptsResumed(this.#context.log, this.#acceptFailures, Date.now());
      this.#serve(conn);
    }
  }

  async #serve(conn: Stream): Promise<void> {
    const now = Date.now();
    const session = new Session(
      this.#context,
      now,
      () => peerAddressOf(conn),
      this.#libc && acknowledgedCount(this.#libc, conn),
    );
    const handshake = conn.completedHandshake;
    if (handshake !== undefined) {
      // The listener did the handshake (and the certificate check) before accept returned.
      const subject = handshake.peerSubject;
      session.handshakeDone(now, this.#context.clientCertificates ? subject ?? "" : undefined);
    }
    const connection: Connection = {
      conn,
      session,
      wake: undefined,
      closed: false,
      reading: false,
      flushing: undefined,
    };
    this.#connections.add(connection);
    // Replies are written whole, so Nagle's delay would only add latency.
    conn.setNoDelay?.(true);
    if (this.#draining) session.drain(now);
    let input = takeReadBuffer();
    try {
      while (!connection.closed && !session.closed) {
        if (connection.flushing !== undefined) {
          await connection.flushing;
        } else if (session.outputLength > 0) {
          const written = await conn.write(session.outputBytes.subarray(0, session.outputLength));
          session.wrote(written, Date.now());
        } else if (session.wantsHalfClose) {
          await conn.closeWrite();
          session.halfClosed(Date.now());
        } else if (session.wantsTlsUpgrade) {
          // Deno cannot start TLS on an accepted socket: its ports offer no StartTLS.
          throw new Error("A TLS upgrade was asked for on the Deno.listen loop, which has none.");
        } else if (session.wantsRead) {
          connection.reading = true;
          const received = await conn.read(input).finally(() => connection.reading = false);
          if (received === null) session.receiveEnd(Date.now());
          else {
            session.receive(input, received, Date.now());
            // A full read suggests a pipelining client: read more at a time.
            if (received === input.length && input.length < LARGE_READ_SIZE) {
              returnReadBuffer(input);
              input = new Uint8Array(LARGE_READ_SIZE);
            }
          }
        } else {
          // Nothing to do until a tick changes the session (a drain, a deadline).
          await new Promise<void>((resolve) => connection.wake = resolve);
          connection.wake = undefined;
        }
      }
    } catch (error) {
      if (!connection.closed) {
        // A reset, a broken pipe, a failed TLS handshake: this peer is gone, the others are not.
        this.#context.log.debug("connection failed", {
          peer: peerOf(conn),
          error: describeError(error),
        });
      }
      session.abort();
    } finally {
      returnReadBuffer(input);
      this.#closeSocket(connection);
      this.#connections.delete(connection);
      if (this.#connections.size === 0) this.#allClosed?.();
    }
  }

  /**
   * Acts on a session changed from outside its loop (a tick, a drain): a
   * loop blocked in read or write is ended by closing the socket, one
   * blocked in read is half-closed in place when the session asks, and one
   * with nothing to do is woken.
   */
  #react(connection: Connection): void {
    const { session } = connection;
    if (session.closed) this.#closeSocket(connection);
    else if (session.outputLength > 0 && connection.reading) {
      // Words for the peer (a front end's goodbye) while the loop waits on a read.
      connection.flushing ??= this.#flush(connection);
    } else if (session.wantsHalfClose && connection.wake === undefined) {
      connection.conn.closeWrite().catch(() => {});
      session.halfClosed(Date.now());
    }
    connection.wake?.();
  }

  /** Writes what the session has due beside a loop blocked in read, then half-closes if asked. */
  async #flush(connection: Connection): Promise<void> {
    const { conn, session } = connection;
    try {
      while (session.outputLength > 0 && !connection.closed) {
        const written = await conn.write(session.outputBytes.subarray(0, session.outputLength));
        session.wrote(written, Date.now());
      }
      if (session.wantsHalfClose && !connection.closed) {
        await conn.closeWrite();
        session.halfClosed(Date.now());
      }
    } catch {
      session.abort();
      this.#closeSocket(connection);
    } finally {
      connection.flushing = undefined;
    }
  }

  #drain(connection: Connection, now: number): void {
    connection.session.drain(now);
    this.#react(connection);
  }

  /** Ticks the sessions whose deadline has passed. */
  #sweep(): void {
    const now = Date.now();
    reportRepeatedRefusals(this.#context, now);
    for (const connection of this.#connections) {
      if (now < connection.session.deadline) continue;
      connection.session.tick(now);
      this.#react(connection);
    }
  }

  #closeSocket(connection: Connection): void {
    if (connection.closed) return;
    connection.closed = true;
    try {
      connection.conn.close();
    } catch {
      // Already closed by the peer's reset; nothing is lost.
    }
    connection.wake?.();
  }

  #setSweep(every: number): void {
    this.#sweepEvery = every;
    clearInterval(this.#sweepTimer);
    this.#sweepTimer = setInterval(() => this.#sweep(), every);
  }

  #closeListener(): void {
    try {
      this.#listener.close();
    } catch {
      // Closed already.
    }
  }

  #finish(): void {
    clearInterval(this.#sweepTimer);
    this.#sweepTimer = undefined;
    this.#resolveDone();
  }
}

/**
 * First-read buffers of closed connections, kept for new ones: a client
 * that connects for one query should not cost an allocation.
 */
const readBufferPool: Uint8Array[] = [];
const READ_BUFFER_POOL_SIZE = 256;

function takeReadBuffer(): Uint8Array {
  return readBufferPool.pop() ?? new Uint8Array(FIRST_READ_SIZE);
}

function returnReadBuffer(buffer: Uint8Array): void {
  if (buffer.length === FIRST_READ_SIZE && readBufferPool.length < READ_BUFFER_POOL_SIZE) {
    readBufferPool.push(buffer);
  }
}

/** The peer's address as `host:port`, for logs. */
export function peerOf(conn: Stream): string {
  const { hostname, port } = peerAddressOf(conn);
  return formatAddress(hostname, port);
}

/**
 * What the peer's TCP has acknowledged on `conn`, for the write timeout
 * (see session/session.ts): a `Deno.Conn` does not say which descriptor it
 * is, so the first call finds it among the process's open descriptors by
 * its two addresses (common/libc.ts), and every call checks that the
 * descriptor is still that connection before reading TCP_INFO from it.
 * -1 when it cannot be found (no /proc, a Unix socket).
 */
function acknowledgedCount(libc: Libc, conn: Stream): () => number {
  const local = conn.localAddr;
  const remote = conn.remoteAddr;
  if (local?.transport !== "tcp" || remote.transport !== "tcp") return () => -1;
  let fd: number | undefined;
  return () => {
    fd ??= findSocketBetween(libc, local, remote);
    if (fd < 0 || !isSocketBetween(libc, fd, local, remote)) return -1;
    return tcpBytesAcked(libc, fd);
  };
}

function peerAddressOf(conn: Stream): PeerAddress {
  const addr = conn.remoteAddr;
  return addr.transport === "tcp" ? addr : { hostname: addr.transport, port: 0 };
}
