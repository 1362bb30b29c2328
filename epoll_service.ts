/**
 * Serves address-book queries from an epoll event loop that owns its
 * sockets, the way Redis and memcached do: one thread waits in
 * `epoll_wait`, then for each ready socket reads what arrived, answers every
 * complete frame, and writes all the replies back in one call.
 *
 * It keeps the same contract as serve_connections.ts (the `Deno.listen`
 * loop used for TLS and on other platforms): the same limits, timeouts,
 * backpressure, drain at shutdown and counters. It runs in a worker thread,
 * since the loop blocks its thread while it waits; commands from the main
 * thread (a new book, shutdown) are picked up between waits.
 *
 * @module
 */

import type { AddressBook } from "./addressbook.ts";
import {
  decodeSockaddr,
  EAGAIN,
  EINTR,
  EPOLL_CTL_ADD,
  EPOLL_CTL_MOD,
  EPOLL_DATA_OFFSET,
  EPOLL_EVENT_SIZE,
  EPOLLIN,
  EPOLLOUT,
  type Libc,
  type LibcSymbols,
  SHUT_WR,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
} from "./libc.ts";
import { Counter } from "./metrics.ts";
import { FrameDecoder, MAX_QUERY_BYTES, ProtocolError, TYPE_QUERY } from "./protocol.ts";
import {
  ACCEPT_PAUSE_MS,
  admitConnection,
  BUSY_REPLY,
  DRAIN_GRACE_MS,
  expiredTimeout,
  formatAddress,
  LINGER_MS,
  protocolErrorReply,
  recordTimeout,
  ReplyBuffer,
  type ServiceOptions,
  sweepInterval,
} from "./serve_connections.ts";

const READ_SIZE = 65536;
const MAX_EVENTS = 256;
/** The longest wait in epoll_wait, so commands and timeouts are seen promptly when idle. */
const MAX_WAIT_MS = 50;

/** One open connection. */
class Peer {
  readonly fd: number;
  readonly decoder = new FrameDecoder({ type: TYPE_QUERY, maxPayload: MAX_QUERY_BYTES });
  /** Reply bytes the socket had no room for; the peer is not read until they are written. */
  pending: Uint8Array | undefined;
  /** When it last sent bytes or took the last of its replies. */
  lastActive: number;
  /** When the unfinished frame started, or 0 when none is unfinished. */
  frameStarted = 0;
  /** The peer half-closed: answer what it sent, then close. */
  readClosed = false;
  /** A protocol error was answered: close once the reply is written. */
  closeWhenWritten = false;
  /** The epoll events registered for it. */
  events = EPOLLIN;
  /** Refused at the connection limit: not counted among the open connections. */
  refused = false;
  /** Half-closed by us: its input is read and dropped until it closes too, or this time. */
  lingerUntil = 0;
  closed = false;

  constructor(fd: number, now: number) {
    this.fd = fd;
    this.lastActive = now;
  }
}

/** Answers queries on a listening socket's descriptor until shut down. */
export class EpollService {
  readonly #calls: LibcSymbols;
  readonly #libc: Libc;
  readonly #options: ServiceOptions;
  readonly #listenFd: number;
  readonly #epollFd: number;
  #book: AddressBook;
  /** Open connections by file descriptor. */
  readonly #peers: (Peer | undefined)[] = [];
  #open = 0;
  readonly #events = new Uint8Array(EPOLL_EVENT_SIZE * MAX_EVENTS);
  readonly #eventView = new DataView(this.#events.buffer);
  readonly #eventOne = new Uint8Array(EPOLL_EVENT_SIZE);
  readonly #eventOneView = new DataView(this.#eventOne.buffer);
  /** One read buffer and one reply buffer serve every connection: the loop handles one at a time. */
  readonly #input = new Uint8Array(READ_SIZE);
  readonly #output = new ReplyBuffer();
  #listening = true;
  #draining = false;
  #graceEnds = 0;
  #stopped = false;
  #nextSweep = 0;
  /** When to watch the listener again after accept ran out of descriptors; 0 when watching. */
  #acceptResumes = 0;
  /** The time of the latest wakeup from epoll_wait. */
  #now = Date.now();
  readonly #sweepEvery: number;
  #drained: (() => void) | undefined;

  /** Takes over a listening, non-blocking socket. */
  constructor(libc: Libc, listenFd: number, options: ServiceOptions) {
    this.#libc = libc;
    this.#calls = libc.calls;
    this.#options = options;
    this.#book = options.book;
    this.#listenFd = listenFd;
    this.#epollFd = this.#calls.epoll_create1(SOCK_CLOEXEC);
    if (this.#epollFd < 0) throw new Error(`epoll_create1 failed: errno ${libc.errno()}.`);
    this.#control(EPOLL_CTL_ADD, listenFd, EPOLLIN);
    // Also often enough to end lingering closes on time.
    this.#sweepEvery = Math.min(sweepInterval(options.limits), LINGER_MS / 4);
  }

  /** Replaces the book; each later query is answered from the new one. */
  setBook(book: AddressBook): void {
    this.#book = book;
  }

  /**
   * Runs the loop until the service stops. Between waits it calls
   * `pendingCommands`, and while that says commands are waiting it yields
   * to the thread's event loop so their messages are delivered.
   */
  async run(pendingCommands: () => boolean): Promise<void> {
    try {
      await this.#loop(pendingCommands);
    } finally {
      // Also after a failure: the sockets belong to the whole process and would outlive us.
      this.abort();
      this.#calls.close(this.#epollFd);
    }
  }

  async #loop(pendingCommands: () => boolean): Promise<void> {
    const calls = this.#calls;
    while (!this.#stopped) {
      const ready = calls.epoll_wait(this.#epollFd, this.#events, MAX_EVENTS, MAX_WAIT_MS);
      if (ready < 0 && this.#libc.errno() !== EINTR) {
        throw new Error(`epoll_wait failed: errno ${this.#libc.errno()}.`);
      }
      // One clock reading per wakeup is precise enough for timeouts of 10 ms and more.
      const now = this.#now = Date.now();
      for (let i = 0; i < ready; i++) {
        const base = i * EPOLL_EVENT_SIZE;
        const events = this.#eventView.getUint32(base, true);
        const fd = this.#eventView.getInt32(base + EPOLL_DATA_OFFSET, true);
        if (fd === this.#listenFd) {
          if (this.#listening) this.#acceptAll();
          continue;
        }
        const peer = this.#peers[fd];
        if (peer === undefined) continue;
        if (events & EPOLLOUT) this.#onWritable(peer);
        else this.#onReadable(peer);
      }
      if (this.#acceptResumes > 0 && now >= this.#acceptResumes && this.#listening) {
        this.#acceptResumes = 0;
        this.#control(EPOLL_CTL_MOD, this.#listenFd, EPOLLIN);
      }
      if (now >= this.#nextSweep) {
        this.#sweep(now);
        this.#nextSweep = now + this.#sweepEvery;
      }
      if (this.#draining) this.#continueDrain(now);
      while (pendingCommands()) await new Promise((resolve) => setTimeout(resolve, 0));
    }
  }

  /**
   * Answers what the clients had sent, closes their connections, and
   * resolves. For {@linkcode DRAIN_GRACE_MS} it still accepts (connections
   * queued before the signal) and waits for bytes in flight; then it stops
   * accepting and closes idle connections.
   */
  shutdown(): Promise<void> {
    this.#draining = true;
    this.#graceEnds = Date.now() + DRAIN_GRACE_MS;
    return new Promise((resolve) => {
      this.#drained = resolve;
      this.#continueDrain(Date.now());
    });
  }

  /** Closes the listener and every connection, and stops the loop. */
  abort(): void {
    this.#stopListening();
    for (const peer of this.#peers) if (peer) this.#close(peer);
    this.#stop();
  }

  #stop(): void {
    this.#stopped = true;
    this.#drained?.();
  }

  #stopListening(): void {
    if (!this.#listening) return;
    this.#listening = false;
    this.#calls.close(this.#listenFd);
  }

  #continueDrain(now: number): void {
    if (now >= this.#graceEnds) {
      // Until now, connections queued before the signal were still accepted.
      this.#stopListening();
      // A connection is done once everything is answered and nothing has come for
      // DRAIN_GRACE_MS: a short read alone does not say so, since the client's
      // queries may still sit in its own send buffer while ours was full.
      for (const peer of this.#peers) {
        if (
          peer && peer.lingerUntil === 0 && peer.pending === undefined &&
          !peer.decoder.midFrame && now - peer.lastActive >= DRAIN_GRACE_MS
        ) {
          this.#closeGently(peer);
        }
      }
    }
    if (!this.#listening && this.#open === 0) this.#stop();
  }

  #acceptAll(): void {
    const calls = this.#calls;
    for (;;) {
      const fd = calls.accept4(this.#listenFd, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        const errno = this.#libc.errno();
        if (errno !== EAGAIN && errno !== EINTR) this.#pauseAccepting(errno);
        return;
      }
      if (!admitConnection(this.#options, () => this.#peerAddress(fd))) {
        this.#libc.write(fd, BUSY_REPLY, BUSY_REPLY.length); // best effort: the socket is new and empty
        // Closed gently like any other, but outside the connection count it was refused by.
        const refused = this.#adopt(fd);
        refused.refused = true;
        this.#closeGently(refused);
        continue;
      }
      this.#adopt(fd);
    }
  }

  /**
   * Stops watching the listener for {@linkcode ACCEPT_PAUSE_MS} after
   * accept fails for want of resources (EMFILE, ENFILE, ENOBUFS): the
   * listener stays readable, so watching it would spin a core, and the
   * pending clients wait in the kernel's queue until descriptors free up.
   */
  #pauseAccepting(errno: number): void {
    this.#acceptResumes = this.#now + ACCEPT_PAUSE_MS;
    this.#control(EPOLL_CTL_MOD, this.#listenFd, 0);
    this.#options.log.error("accept failed; pausing accepts", {
      errno,
      pause_ms: ACCEPT_PAUSE_MS,
    });
  }

  /** Watches a newly accepted socket. */
  #adopt(fd: number): Peer {
    this.#control(EPOLL_CTL_ADD, fd, EPOLLIN);
    const peer = new Peer(fd, this.#now);
    this.#peers[fd] = peer;
    this.#open++;
    return peer;
  }

  #onReadable(peer: Peer): void {
    const received = this.#libc.read(peer.fd, this.#input, READ_SIZE);
    if (peer.lingerUntil > 0) {
      if (received === 0 || (received < 0 && this.#libc.errno() !== EAGAIN)) this.#close(peer);
      return;
    }
    if (received < 0) {
      if (this.#libc.errno() !== EAGAIN) this.#close(peer); // reset by the peer
      return;
    }
    if (received === 0) {
      peer.readClosed = true;
      this.#answer(peer);
      return;
    }
    peer.lastActive = this.#now;
    peer.decoder.push(this.#input, received);
    this.#answer(peer);
  }

  #onWritable(peer: Peer): void {
    const pending = peer.pending!;
    const written = this.#libc.write(peer.fd, pending, pending.length);
    if (written < 0) {
      if (this.#libc.errno() !== EAGAIN) this.#close(peer);
      return;
    }
    if (written < pending.length) {
      peer.pending = pending.subarray(written);
      return;
    }
    peer.pending = undefined;
    peer.lastActive = this.#now;
    if (peer.closeWhenWritten) {
      this.#closeGently(peer);
      return;
    }
    // Frames held back while the peer was not reading are answered now.
    this.#answer(peer);
    if (peer.pending === undefined && !peer.closed) this.#watch(peer, EPOLLIN);
  }

  /** Answers every complete frame the peer has sent, as far as its socket takes the replies. */
  #answer(peer: Peer): void {
    const { limits } = this.#options;
    const decoder = peer.decoder;
    const output = this.#output;
    let framesDone = 0;
    try {
      while (decoder.take()) {
        this.#options
          .counters[Counter.repliesByStatus + output.appendAnswer(this.#book, decoder)]++;
        framesDone++;
        if (output.length >= limits.maxPendingWrite && !this.#flush(peer)) {
          // The peer is not reading: keep its other frames and stop reading it.
          decoder.detach();
          return;
        }
      }
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
      output.append(protocolErrorReply(this.#options, error, this.#peerAddress(peer.fd)));
      peer.closeWhenWritten = true;
    }
    if (!this.#flush(peer)) return;
    if (peer.readClosed) {
      this.#close(peer);
      return;
    }
    if (peer.closeWhenWritten) {
      this.#closeGently(peer);
      return;
    }
    if (!decoder.midFrame) peer.frameStarted = 0;
    else if (peer.frameStarted === 0 || framesDone > 0) peer.frameStarted = this.#now;
  }

  /**
   * Writes the reply buffer to the peer. Returns true when it all went; else
   * keeps the rest as the peer's pending bytes, waits for room, and returns
   * false (or closes the peer if the write failed).
   */
  #flush(peer: Peer): boolean {
    const { bytes, length } = this.#output;
    if (length === 0) return true;
    this.#output.clear();
    const written = this.#libc.write(peer.fd, bytes, length);
    if (written === length) return true;
    if (written < 0 && this.#libc.errno() !== EAGAIN) {
      this.#close(peer);
      return false;
    }
    peer.pending = bytes.slice(Math.max(written, 0), length);
    this.#watch(peer, EPOLLOUT);
    return false;
  }

  /**
   * Closes after our last reply without losing it: closing a socket with
   * unread input makes the kernel send a reset, which can destroy replies
   * the peer has not read yet. So half-close, drop whatever still arrives,
   * and close when the peer does, or after {@linkcode LINGER_MS}.
   */
  #closeGently(peer: Peer): void {
    if (peer.closed || peer.lingerUntil > 0) return;
    peer.lingerUntil = Date.now() + LINGER_MS;
    this.#calls.shutdown(peer.fd, SHUT_WR);
    this.#watch(peer, EPOLLIN);
  }

  /** Closes connections past their idle or frame timeout. */
  #sweep(now: number): void {
    for (const peer of this.#peers) {
      if (peer === undefined) continue;
      if (peer.lingerUntil > 0) {
        if (now >= peer.lingerUntil) this.#close(peer);
        continue;
      }
      // A peer with replies waiting is not being read: its unfinished frame is ours to wait on.
      if (peer.pending !== undefined) continue;
      const kind = expiredTimeout(this.#options.limits, now, peer.frameStarted, peer.lastActive);
      if (kind === undefined) continue;
      recordTimeout(this.#options, kind, this.#peerAddress(peer.fd));
      this.#close(peer);
    }
  }

  #watch(peer: Peer, events: number): void {
    if (peer.events === events) return;
    peer.events = events;
    this.#control(EPOLL_CTL_MOD, peer.fd, events);
  }

  #control(operation: number, fd: number, events: number): void {
    const view = this.#eventOneView;
    view.setUint32(0, events, true);
    view.setInt32(EPOLL_DATA_OFFSET, fd, true);
    this.#calls.epoll_ctl(this.#epollFd, operation, fd, this.#eventOne);
  }

  #close(peer: Peer): void {
    if (peer.closed) return;
    peer.closed = true;
    this.#peers[peer.fd] = undefined;
    this.#calls.close(peer.fd); // also removes it from the epoll set
    this.#open--;
    if (!peer.refused) {
      Atomics.sub(this.#options.openConnections, 0, 1);
      this.#options.counters[Counter.connectionsOpen]--;
    }
    if (this.#draining && !this.#listening && this.#open === 0) this.#stop();
  }

  #peerAddress(fd: number): string {
    const address = new Uint8Array(128);
    const length = new Uint32Array([address.length]);
    if (this.#calls.getpeername(fd, address, new Uint8Array(length.buffer)) !== 0) return "?";
    const { hostname, port } = decodeSockaddr(address);
    return formatAddress(hostname, port);
  }
}
