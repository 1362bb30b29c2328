/**
 * Serves address-book queries on one listener: the accept loop, one small
 * read-answer-write loop per connection, and the limits that keep one peer
 * from hurting the others. The server runs one of these per thread.
 *
 * The per-connection loop is where the time goes, so it is kept plain:
 * decode every frame a read brought, append each reply to one output
 * buffer, and send that buffer in one write. Because the loop does not read
 * again until its write is done, a client that never reads cannot make the
 * server buffer more than {@linkcode ServiceLimits.maxPendingWrite} for it.
 *
 * @module
 */

import type { AddressBook } from "./addressbook.ts";
import type { Logger } from "./log.ts";
import { Counter } from "./metrics.ts";
import {
  encodeReply,
  FrameDecoder,
  HEADER_SIZE,
  MAX_QUERY_BYTES,
  ProtocolError,
  STATUS_PROTOCOL_ERROR,
  STATUS_SERVER_BUSY,
  TYPE_QUERY,
} from "./protocol.ts";

/** Limits on what one peer may hold of the server. Times are in milliseconds; 0 turns a timeout off. */
export interface ServiceLimits {
  /** Open connections allowed across all threads; one more is refused with SERVER_BUSY. */
  maxConnections: number;
  /** A connection that owes no reply and has sent nothing for this long is closed. */
  idleTimeoutMs: number;
  /** A connection that started a frame and has not finished it in this long is closed. */
  frameTimeoutMs: number;
  /** Reply bytes a connection may have waiting before the server stops reading from it. */
  maxPendingWrite: number;
}

/** Default limits, as documented in the README. */
export const DEFAULT_LIMITS: ServiceLimits = {
  maxConnections: 1024,
  idleTimeoutMs: 300_000,
  frameTimeoutMs: 10_000,
  maxPendingWrite: 1 << 20,
};

/** What a {@linkcode ConnectionService} needs besides its listener. */
export interface ServiceOptions {
  /** The book to answer from; {@linkcode ConnectionService.setBook} swaps it. */
  book: AddressBook;
  /** Limits on each peer. */
  limits: ServiceLimits;
  /** This thread's counters (a row of the shared table, see metrics.ts). */
  counters: Float64Array;
  /** Open connections across all threads: a shared one-element array, updated atomically. */
  openConnections: Int32Array;
  /** Where events are logged. */
  log: Logger;
}

/** How long to stop accepting after accept fails (out of file descriptors). */
export const ACCEPT_PAUSE_MS = 100;

/** Time given, at shutdown, for bytes already sent by an idle client to arrive. */
export const DRAIN_GRACE_MS = 100;

/**
 * After our last reply, how long a half-closed connection's input is read
 * and dropped while waiting for the peer to close (see closeGently).
 */
export const LINGER_MS = 1000;

/** The reply to a connection over the limit, sent before closing it. */
export const BUSY_REPLY: Uint8Array = encodeReply(
  STATUS_SERVER_BUSY,
  "The server is at its connection limit; try again later.",
);
const FIRST_READ_SIZE = 4096;
const EMPTY = new Uint8Array(0);
const LARGE_READ_SIZE = 65536;

/**
 * How often to look for expired timeouts, in milliseconds: a few times per
 * the shortest timeout, so a peer is closed at most about a quarter late,
 * and at least once a second; `Infinity` when both timeouts are off.
 */
export function sweepInterval(limits: ServiceLimits): number {
  const shortest = Math.min(
    ...[limits.idleTimeoutMs, limits.frameTimeoutMs].filter((ms) => ms > 0),
  );
  return Number.isFinite(shortest)
    ? Math.max(10, Math.min(1000, Math.floor(shortest / 4)))
    : shortest;
}

/**
 * Which timeout a connection that is being read has run out, if any: its
 * unfinished frame's (`frameStarted` > 0) or, with no frame unfinished,
 * its idleness since `lastActive`.
 */
export function expiredTimeout(
  limits: ServiceLimits,
  now: number,
  frameStarted: number,
  lastActive: number,
): "frame" | "idle" | undefined {
  if (frameStarted > 0) {
    return limits.frameTimeoutMs > 0 && now - frameStarted >= limits.frameTimeoutMs
      ? "frame"
      : undefined;
  }
  return limits.idleTimeoutMs > 0 && now - lastActive >= limits.idleTimeoutMs ? "idle" : undefined;
}

/**
 * Counts a new connection and takes a slot for it, or, at the connection
 * limit, counts and logs its refusal and returns false (the caller then
 * sends {@linkcode BUSY_REPLY} and closes it). `peer` is only asked for then.
 */
export function admitConnection(options: ServiceOptions, peer: () => string): boolean {
  const { counters, openConnections, limits, log } = options;
  counters[Counter.connectionsTotal]++;
  if (Atomics.add(openConnections, 0, 1) < limits.maxConnections) {
    counters[Counter.connectionsOpen]++;
    return true;
  }
  Atomics.sub(openConnections, 0, 1);
  counters[Counter.busyRefusals]++;
  counters[Counter.repliesByStatus + STATUS_SERVER_BUSY]++;
  log.warn("connection refused: server busy", { peer: peer() });
  return false;
}

/** Counts and logs a frame that broke the protocol, and returns the one reply it gets. */
export function protocolErrorReply(
  options: ServiceOptions,
  error: ProtocolError,
  peer: string,
): Uint8Array {
  options.counters[Counter.repliesByStatus + STATUS_PROTOCOL_ERROR]++;
  options.log.warn("protocol error", { peer, error: error.message });
  return encodeReply(STATUS_PROTOCOL_ERROR, error.message);
}

/** Formats an address for messages and logs, bracketing IPv6: `[::1]:8080`. */
export function formatAddress(hostname: string, port: number): string {
  return hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
}

/** Counts and logs (at debug: it can be frequent) a connection closed by a timeout. */
export function recordTimeout(options: ServiceOptions, kind: "frame" | "idle", peer: string): void {
  options.counters[kind === "frame" ? Counter.frameTimeouts : Counter.idleTimeouts]++;
  options.log.debug(`${kind} timeout`, { peer });
}

/** The state of one open connection that the sweep and the shutdown look at. */
interface ConnectionState {
  conn: Deno.Conn;
  /** When the connection last received bytes or finished writing replies. */
  lastActive: number;
  /** When the unfinished frame started, or 0 when no frame is unfinished. */
  frameStarted: number;
  /** Whether the loop is waiting for bytes with nothing owed (and so may be closed at shutdown). */
  idle: boolean;
  /** Whether the loop is waiting for bytes; timeouts only run then, not while it writes. */
  reading: boolean;
  /** Half-closed at shutdown: input that still arrives is dropped. */
  ending: boolean;
  /** The shutdown's pending check or linger deadline for this connection. */
  timer: ReturnType<typeof setTimeout> | undefined;
  closed: boolean;
}

/**
 * Accepts connections on a listener and answers their queries until
 * {@linkcode shutdown} or {@linkcode abort}.
 */
export class ConnectionService {
  readonly #listener: Deno.Listener;
  readonly #options: ServiceOptions;
  #book: AddressBook;
  readonly #connections = new Set<ConnectionState>();
  #draining = false;
  /** Set at shutdown once idle clients have had time to send what they had sent. */
  #graceOver = false;
  #sweepTimer: ReturnType<typeof setInterval> | undefined;
  #allClosed: (() => void) | undefined;
  readonly #accepting: Promise<void>;

  /** Starts accepting on `listener` at once. */
  constructor(listener: Deno.Listener, options: ServiceOptions) {
    this.#listener = listener;
    this.#options = options;
    this.#book = options.book;
    const every = sweepInterval(options.limits);
    if (Number.isFinite(every)) this.#sweepTimer = setInterval(() => this.#sweep(), every);
    this.#accepting = this.#acceptLoop();
  }

  /** Replaces the book; each later query is answered from the new one. */
  setBook(book: AddressBook): void {
    this.#book = book;
  }

  /**
   * Answers everything the clients had already sent, closes their
   * connections, and resolves. For {@linkcode DRAIN_GRACE_MS} it still
   * accepts (connections queued before the signal) and waits for bytes in
   * flight; then it stops accepting and closes idle connections. Call
   * {@linkcode abort} to stop waiting.
   */
  async shutdown(): Promise<void> {
    this.#draining = true;
    // Clients that connected before the signal may still wait in the accept
    // queue, their queries sent: closing the listener now would reset them.
    await new Promise((resolve) => setTimeout(resolve, DRAIN_GRACE_MS));
    this.#closeListener();
    await this.#accepting;
    this.#graceOver = true;
    if (this.#connections.size > 0) {
      const allClosed = new Promise<void>((resolve) => this.#allClosed = resolve);
      for (const state of this.#connections) if (state.idle) this.#endWhenQuiet(state);
      await allClosed;
    }
    this.#stopSweep();
  }

  /** Closes the listener and every connection at once. */
  async abort(): Promise<void> {
    this.#draining = true;
    this.#closeListener();
    for (const state of this.#connections) this.#close(state);
    await this.#accepting;
    this.#stopSweep();
  }

  async #acceptLoop(): Promise<void> {
    const { log } = this.#options;
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (error instanceof Deno.errors.BadResource) return; // the listener was closed
        if (this.#draining) return;
        // Out of file descriptors and the like: keep serving the others, and
        // wait a little before trying again rather than spin on the error.
        log.error("accept failed; pausing accepts", {
          error: describeError(error),
          pause_ms: ACCEPT_PAUSE_MS,
        });
        await new Promise((resolve) => setTimeout(resolve, ACCEPT_PAUSE_MS));
        continue;
      }
      if (admitConnection(this.#options, () => peerOf(conn))) this.#serve(conn);
      else refuse(conn);
    }
  }

  async #serve(conn: Deno.Conn): Promise<void> {
    const { counters, limits, log } = this.#options;
    const state: ConnectionState = {
      conn,
      lastActive: Date.now(),
      frameStarted: 0,
      idle: true,
      reading: false,
      ending: false,
      timer: undefined,
      closed: false,
    };
    this.#connections.add(state);
    // Replies are written whole, so Nagle's delay would only add latency.
    (conn as Deno.TcpConn).setNoDelay?.(true);
    const decoder = new FrameDecoder({ type: TYPE_QUERY, maxPayload: MAX_QUERY_BYTES });
    let input = takeReadBuffer();
    const output = new ReplyBuffer();
    // Set when we end the connection with input possibly unread (see closeGently).
    let endGently = false;
    // Idleness counts from the last reply the client took, not from when it was sent.
    const progress = () => state.lastActive = Date.now();
    try {
      for (;;) {
        state.idle = !decoder.midFrame;
        if (state.idle && this.#graceOver) this.#endWhenQuiet(state);
        state.reading = true;
        const received = await conn.read(input);
        state.reading = state.idle = false;
        if (received === null) break;
        if (state.ending) {
          endGently = true;
          break;
        }
        const now = Date.now();
        decoder.push(input, received);
        let framesDone = 0;
        try {
          while (decoder.take()) {
            counters[Counter.repliesByStatus + output.appendAnswer(this.#book, decoder)]++;
            framesDone++;
            if (output.length >= limits.maxPendingWrite) await output.flushTo(conn, progress);
          }
        } catch (error) {
          if (!(error instanceof ProtocolError)) throw error;
          output.append(protocolErrorReply(this.#options, error, peerOf(conn)));
          await output.flushTo(conn);
          endGently = true;
          break;
        }
        if (output.length > 0) await output.flushTo(conn, progress);
        state.lastActive = Date.now();
        if (!decoder.midFrame) state.frameStarted = 0;
        else if (state.frameStarted === 0 || framesDone > 0) state.frameStarted = now;
        // A full read suggests a pipelining client: read more at a time.
        if (received === input.length && input.length < LARGE_READ_SIZE) {
          input = new Uint8Array(LARGE_READ_SIZE);
        }
      }
    } catch (error) {
      if (!state.closed) {
        // A reset, a broken pipe, a failed TLS handshake: this peer is gone, the others are not.
        log.debug("connection failed", { peer: peerOf(conn), error: describeError(error) });
      }
    } finally {
      returnReadBuffer(input);
      if (endGently && !state.closed) await closeGently(conn);
      this.#close(state);
      this.#connections.delete(state);
      Atomics.sub(this.#options.openConnections, 0, 1);
      counters[Counter.connectionsOpen]--;
      if (this.#connections.size === 0) this.#allClosed?.();
    }
  }

  /** Closes connections past their idle or frame timeout. */
  #sweep(): void {
    const now = Date.now();
    for (const state of this.#connections) {
      // A connection being written to is waiting on its peer, not the other way round.
      if (state.closed || !state.reading) continue;
      const kind = expiredTimeout(this.#options.limits, now, state.frameStarted, state.lastActive);
      if (kind === undefined) continue;
      recordTimeout(this.#options, kind, peerOf(state.conn));
      this.#close(state);
    }
  }

  /**
   * At shutdown, ends a connection once it has been waiting for input, with
   * everything answered, for {@linkcode DRAIN_GRACE_MS}: by then what its
   * client had sent has arrived. (Ending it as soon as its last read was
   * answered would drop queries that arrived while a slow reader was being
   * written to.) Half-closes it; its loop drops whatever still arrives.
   */
  #endWhenQuiet(state: ConnectionState): void {
    if (state.timer !== undefined || state.ending || state.closed) return;
    const check = () => {
      state.timer = undefined;
      if (state.ending || state.closed || !state.reading || !state.idle) return;
      const quietFor = Date.now() - state.lastActive;
      if (quietFor < DRAIN_GRACE_MS) {
        state.timer = setTimeout(check, DRAIN_GRACE_MS - quietFor);
        return;
      }
      state.ending = true;
      state.conn.closeWrite().catch(() => {});
      state.timer = setTimeout(() => this.#close(state), LINGER_MS);
    };
    state.timer = setTimeout(check, 0);
  }

  #close(state: ConnectionState): void {
    if (state.closed) return;
    state.closed = true;
    clearTimeout(state.timer);
    try {
      state.conn.close();
    } catch {
      // Already closed by the peer's reset; nothing is lost.
    }
  }

  #closeListener(): void {
    try {
      this.#listener.close();
    } catch {
      // Closed already.
    }
  }

  #stopSweep(): void {
    if (this.#sweepTimer !== undefined) clearInterval(this.#sweepTimer);
    this.#sweepTimer = undefined;
  }
}

/**
 * Replies waiting to be written, in one growable buffer reused between
 * writes, so a read that brought a hundred queries costs one write. Both
 * event loops use it.
 */
export class ReplyBuffer {
  #bytes = EMPTY;
  /** Bytes of replies waiting. */
  length = 0;

  /** The buffer; its first {@linkcode length} bytes are the replies. */
  get bytes(): Uint8Array {
    return this.#bytes;
  }

  /** Forgets the replies, once written. */
  clear(): void {
    this.length = 0;
  }

  /** Appends the reply to the frame the decoder just took, and returns its status. */
  appendAnswer(book: AddressBook, decoder: FrameDecoder): number {
    const { payloadBytes, payloadStart, payloadEnd } = decoder;
    let end: number;
    while (
      (end = book.writeAnswer(payloadBytes, payloadStart, payloadEnd, this.#bytes, this.length)) < 0
    ) {
      this.#grow(Math.max(1024, this.#bytes.length * 2));
    }
    const status = this.#bytes[this.length + HEADER_SIZE];
    this.length = end;
    return status;
  }

  /** Appends an encoded frame. */
  append(frame: Uint8Array): void {
    const needed = this.length + frame.length;
    if (needed > this.#bytes.length) this.#grow(Math.max(needed, this.#bytes.length * 2));
    this.#bytes.set(frame, this.length);
    this.length = needed;
  }

  /** Writes everything; `progress` is called after each write the peer took. */
  async flushTo(conn: Deno.Conn, progress?: () => void): Promise<void> {
    let written = 0;
    while (written < this.length) {
      written += await conn.write(this.#bytes.subarray(written, this.length));
      progress?.();
    }
    this.length = 0;
  }

  #grow(size: number): void {
    const grown = new Uint8Array(size);
    grown.set(this.#bytes.subarray(0, this.length));
    this.#bytes = grown;
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

/** Sends SERVER_BUSY and closes, without holding up the accept loop. */
function refuse(conn: Deno.Conn): void {
  conn.write(BUSY_REPLY).then(() => closeGently(conn), () => {}).finally(() => {
    try {
      conn.close();
    } catch {
      // Closed already, or the peer left first.
    }
  });
}

/** Input read and dropped by closeGently; shared, since nothing in it is ever looked at. */
const DISCARD = new Uint8Array(4096);

/**
 * Half-closes, then reads and drops input until the peer closes too or
 * {@linkcode LINGER_MS} passes. Closing a socket with unread input makes
 * the kernel send a reset, which can destroy replies the peer has not
 * read yet; this way the last reply always arrives. The caller closes.
 */
async function closeGently(conn: Deno.Conn): Promise<void> {
  const timer = setTimeout(() => {
    try {
      conn.close();
    } catch {
      // Closed already.
    }
  }, LINGER_MS);
  try {
    await conn.closeWrite().catch(() => {}); // already half-closed by #endWhenQuiet
    while ((await conn.read(DISCARD)) !== null) {
      // Dropped: the connection is ending.
    }
  } catch {
    // Reset, or closed by the timer.
  } finally {
    clearTimeout(timer);
  }
}

/** The peer's address as `host:port`, for logs. */
export function peerOf(conn: Deno.Conn): string {
  const addr = conn.remoteAddr;
  return addr.transport === "tcp" ? formatAddress(addr.hostname, addr.port) : addr.transport;
}

function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
