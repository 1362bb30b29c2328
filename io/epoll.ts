/**
 * The epoll driver: an event loop over FFI that owns its sockets, the way
 * Redis and memcached do. One thread waits in `epoll_wait`, then for each
 * ready socket reads what arrived into one shared buffer, hands it to the
 * connection's {@linkcode Session}, and writes what the session says to
 * write. Every rule (answers, limits, timeouts, drain, linger) is the
 * session's; this file only moves bytes and keeps deadlines.
 *
 * It runs in a worker thread, since the loop blocks its thread while it
 * waits; commands from the main thread (a new book, shutdown) are picked up
 * between waits.
 *
 * Between each socket and its session sits a {@linkcode Transport}
 * (transport/transport.ts): plain TCP, or TLS made by the thread's acceptor. The
 * loop never asks which. A transport with a handshake runs it first, on
 * the events it asks for, and tells the session how it ended; then reads
 * and writes go through the transport, and the session sees plaintext
 * only. Bytes a transport holds that the kernel does not (OpenSSL's
 * decrypted or read-ahead records) get no epoll event: connections that
 * hold some are kept in a set and read again without waiting (epoll_wait's
 * timeout is 0 meanwhile), as Redis does. Every close path frees the
 * transport before closing the socket. A balancer that passes TLS through
 * sends its PROXY header in clear before the handshake: that header is
 * peeked and only its bytes are read off the socket, so that the
 * handshake finds its first message where it expects it.
 *
 * When a wakeup finds several connections ready, their plain sockets'
 * reads, and then their replies' writes, are made as one batch each
 * (io/socket_batch.ts: io_uring, one system call for all of them); when
 * that turn was also short, the next wait starts {@linkcode COALESCE_US}
 * later, so that it finds more work ready. On a busy server a turn then
 * costs a few system calls however many connections it serves; a quiet
 * one waits and calls as before, and one whose turns are long (heavy
 * requests) does not pause, since work waits for it after every turn.
 *
 * A plain connection can also become a TLS one midway (LDAP's StartTLS):
 * when its session says so ({@linkcode Session.wantsTlsUpgrade}, once the
 * reply that accepts the upgrade is written), the driver swaps its plain
 * transport for one its listener's upgrade acceptor makes on the same
 * socket and runs the handshake as after an accept. The client sends
 * nothing in clear after its request (the session has read nothing since),
 * so the handshake's first message is the next byte on the socket.
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
import { failedSocketCall, TcpAcceptor } from "../transport/tcp.ts";
import { bufferAddress, SocketBatch } from "./socket_batch.ts";
import { describeError } from "../common/errors.ts";
import {
  HANDSHAKE_DONE,
  HANDSHAKE_FAILED,
  READY_READ,
  READY_WRITE,
  type Transport,
  TRANSPORT_FAILED,
  type TransportAcceptor,
} from "../transport/transport.ts";
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
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  tcpBytesAcked,
} from "../common/libc.ts";
import {
  DRAIN_GRACE_MS,
  type PeerAddress,
  reportRepeatedRefusals,
  Session,
} from "../session/session.ts";

const READ_SIZE = 65536;
const MAX_EVENTS = 256;
/**
 * A wakeup batches its plain sockets' calls when it finds at least this
 * many connections ready. Below it a batch gains less than it costs: one
 * client asking one query at a time was answered 7% slower through it.
 */
const BATCH_FROM = 4;
/** Reads one batch holds; a wakeup with more ready runs several. */
const BATCH_READS = 64;
/**
 * The most one batched read takes (a connection with more waiting is read
 * again on the next wakeup, as epoll still reports it), so that the reads
 * of a batch fit side by side in one megabyte.
 */
const BATCH_READ_SIZE = 16384;
/**
 * How long a loop whose last wakeup batched lets work gather before it
 * waits again, in microseconds. At 50 clients pipelining 16 queries a
 * wakeup then served about 250 queries with four system calls (the pause,
 * the wait, a batch of reads, a batch of writes), and the CPU per query
 * fell by a third (BENCHMARKS.md, issue 18), for at most this much more
 * latency per reply while busy.
 */
export const COALESCE_US = 50;
/**
 * A turn longer than this, in microseconds, is followed by no pause: a
 * loop that busy has work waiting after every turn, and a pause would only
 * idle it (pipelined LDAP searches lost 13% to one).
 */
const PAUSE_UNLESS_TURN_US = 4 * COALESCE_US;
/** The longest wait in epoll_wait, so commands and deadlines are seen promptly when idle. */
const MAX_WAIT_MS = 50;
/** A peer whose address the kernel no longer knows (it reset already); it matches no rule. */
const UNKNOWN_PEER: PeerAddress = { hostname: "?", port: 0 };

/**
 * One listening socket of the loop: what its connections speak (the
 * session context, with its front end) and how each gets its transport.
 * A loop serves several at once, e.g. the binary port and an LDAP port.
 */
export interface EpollListener {
  /** The listening, non-blocking socket. */
  readonly fd: number;
  /** What every session of this listener shares. */
  readonly context: ServiceOptions;
  /** Makes each accepted socket's transport: plain TCP, or TLS. */
  readonly transports: TransportAcceptor;
  /**
   * Makes the TLS transport of a plain connection whose session asks to
   * upgrade (LDAP's StartTLS); absent when the port offers no upgrade.
   */
  readonly upgrades?: TransportAcceptor;
  /** When to watch it again after accept ran out of descriptors; 0 when watching. */
  acceptResumes: number;
  /** Accept failures in a row, so that an episode is logged once, with its count. */
  readonly acceptFailures: FailureEpisode;
}

/** One open connection: its socket, its session, and the transport between them. */
interface Peer {
  readonly fd: number;
  /** The listener that accepted it. */
  readonly listener: EpollListener;
  readonly session: Session;
  /** Replaced once, by a TLS transport, when a plain connection upgrades. */
  transport: Transport;
  /** The epoll events registered for it. */
  events: number;
  /** No plaintext flows until the transport's handshake is done. */
  handshaking: boolean;
  /** Whether it waits in the loop's list of connections to act on after this wakeup's reads. */
  reactPending: boolean;
  /** The session's output buffer last written from a batch, and its address for the kernel. */
  batchOutput: Uint8Array | undefined;
  batchOutputAddress: number;
  /** Whether this wakeup's batch wrote its replies already. */
  batchWritten: boolean;
}

/** {@linkcode EpollService}'s tuning, for tests. */
export interface EpollOptions {
  /** The fewest ready connections a wakeup batches the calls of; {@linkcode BATCH_FROM} by default. */
  batchFrom?: number;
}

/** Serves queries on listening sockets' descriptors until shut down. */
export class EpollService implements Service {
  readonly #calls: LibcSymbols;
  readonly #libc: Libc;
  /** The listeners, and the one by its descriptor. */
  readonly #listeners: readonly EpollListener[];
  readonly #listenerByFd = new Map<number, EpollListener>();
  readonly #epollFd: number;
  /** Open connections by file descriptor. */
  readonly #peers: (Peer | undefined)[] = [];
  /** Connections whose readable bytes sit inside their transport, where epoll cannot see them. */
  #readAgain = new Set<Peer>();
  /** Connections that read in this wakeup, whose replies are written once every read is done. */
  readonly #toReact: Peer[] = [];
  #open = 0;
  readonly #events = new Uint8Array(EPOLL_EVENT_SIZE * MAX_EVENTS);
  readonly #eventView = new DataView(this.#events.buffer);
  readonly #eventOne = new Uint8Array(EPOLL_EVENT_SIZE);
  readonly #eventOneView = new DataView(this.#eventOne.buffer);
  /** One read buffer serves every connection: a session is done with it when receive returns. */
  readonly #input = new Uint8Array(READ_SIZE);
  /** Plain sockets' calls, batched; undefined where io_uring is not to be had. */
  readonly #batch: SocketBatch | undefined;
  readonly #batchFrom: number;
  /** Where batched reads land, a slot each, and the connection each slot's read is for. */
  readonly #batchReads = new ArrayBuffer(BATCH_READS * BATCH_READ_SIZE);
  readonly #batchSlots: Uint8Array[] = [];
  readonly #batchSlotsAddress: number;
  readonly #batchPeers: Peer[] = [];
  /** Whether this wakeup's plain sockets are read and written in batches. */
  #batching = false;
  /** Reads batched in this wakeup. */
  #batchedReads = 0;
  /** Whether the next wait starts with a pause: the last turn batched, and was short. */
  #pause = false;
  #listening = true;
  #draining = false;
  #graceEnds = 0;
  #stopped = false;
  #nextSweep = 0;
  #sweepEvery: number;
  /** The time of the latest wakeup from epoll_wait. */
  #now = Date.now();
  #drained: (() => void) | undefined;
  /** Resolves when the loop has returned and its sockets are closed. */
  readonly done: Promise<void>;

  /**
   * Takes over listening, non-blocking sockets and starts the loop. Between
   * waits it calls `pendingCommands`, and while that says commands are
   * waiting it yields to the thread's event loop so their messages arrive.
   * Each listener's `transports` makes its connections' transports (with
   * TLS, the caller keeps the acceptor, to rotate its certificate, and frees
   * it after the loop is done). The listeners share one set of limits.
   */
  constructor(
    libc: Libc,
    listeners: readonly EpollListener[],
    pendingCommands: () => boolean,
    options: EpollOptions = {},
  ) {
    if (listeners.length === 0) throw new RangeError("An epoll loop needs at least one listener.");
    this.#libc = libc;
    this.#calls = libc.calls;
    this.#batch = SocketBatch.open(libc);
    this.#batchFrom = options.batchFrom ?? BATCH_FROM;
    for (let slot = 0; slot < BATCH_READS; slot++) {
      this.#batchSlots.push(
        new Uint8Array(this.#batchReads, slot * BATCH_READ_SIZE, BATCH_READ_SIZE),
      );
    }
    this.#batchSlotsAddress = bufferAddress(this.#batchSlots[0]);
    this.#listeners = listeners;
    this.#epollFd = this.#calls.epoll_create1(SOCK_CLOEXEC);
    if (this.#epollFd < 0) {
      throw new Error(`The call epoll_create1 failed with errno ${libc.errno()}.`);
    }
    for (const listener of listeners) {
      this.#listenerByFd.set(listener.fd, listener);
      this.#control(EPOLL_CTL_ADD, listener.fd, EPOLLIN);
    }
    this.#sweepEvery = sweepInterval(listeners[0].context.limits);
    this.done = this.#run(pendingCommands);
  }

  /** A plain-TCP listener of `fd` for {@linkcode EpollService}'s constructor. */
  static plainListener(libc: Libc, fd: number, context: ServiceOptions): EpollListener {
    return {
      fd,
      context,
      transports: new TcpAcceptor(libc),
      acceptResumes: 0,
      acceptFailures: new FailureEpisode(),
    };
  }

  /** Replaces the book; each later query is answered from the new one. */
  setBook(book: AddressBook): void {
    for (const { context } of this.#listeners) {
      context.frontEnd.prepare?.(book);
      context.book = book;
    }
  }

  /** Drains, as {@linkcode Service.shutdown} says. */
  shutdown(): Promise<void> {
    const now = Date.now();
    this.#draining = true;
    this.#graceEnds = now + DRAIN_GRACE_MS;
    this.#sweepEvery = Math.min(this.#sweepEvery, DRAIN_SWEEP_MS);
    for (const peer of this.#peers) if (peer) this.#drainPeer(peer, now);
    return new Promise((resolve) => {
      this.#drained = resolve;
      this.#checkDrained(now);
    });
  }

  /** Closes the listener and every connection, and stops the loop. */
  abort(): Promise<void> {
    this.#closeAll();
    return this.done;
  }

  async #run(pendingCommands: () => boolean): Promise<void> {
    // The loop blocks the thread between its rare awaits: let the code that
    // created the service finish first (it reports that it listens).
    await Promise.resolve();
    try {
      await this.#loop(pendingCommands);
    } finally {
      // Also after a failure: the sockets belong to the whole process and would outlive us.
      this.#closeAll();
      this.#calls.close(this.#epollFd);
      this.#batch?.free();
    }
  }

  async #loop(pendingCommands: () => boolean): Promise<void> {
    const calls = this.#calls;
    while (!this.#stopped) {
      // Bytes waiting inside a transport are ready now: do not sleep on them.
      const wait = this.#readAgain.size > 0 ? 0 : MAX_WAIT_MS;
      // A busy loop lets work gather, so that the next wakeup batches more.
      if (this.#pause && wait > 0) calls.usleep(COALESCE_US);
      const ready = calls.epoll_wait(this.#epollFd, this.#events, MAX_EVENTS, wait);
      if (ready < 0 && this.#libc.errno() !== EINTR) {
        throw new Error(`The call epoll_wait failed with errno ${this.#libc.errno()}.`);
      }
      // One clock reading per wakeup is precise enough for timeouts of 10 ms and more.
      const now = this.#now = Date.now();
      this.#batching = this.#batch !== undefined && ready >= this.#batchFrom;
      // Only a batching turn may be followed by a pause, and only it needs timing.
      const turnStarted = this.#batching ? performance.now() : 0;
      this.#batchedReads = 0;
      for (let i = 0; i < ready; i++) {
        const base = i * EPOLL_EVENT_SIZE;
        const events = this.#eventView.getUint32(base, true);
        const fd = this.#eventView.getInt32(base + EPOLL_DATA_OFFSET, true);
        const peer = this.#peers[fd];
        if (peer !== undefined) {
          this.#onEvent(peer, events);
          continue;
        }
        const listener = this.#listenerByFd.get(fd);
        if (listener !== undefined && this.#listening) this.#acceptAll(listener);
      }
      this.#runReadBatch();
      if (this.#readAgain.size > 0) this.#readPending();
      this.#runReadBatch(); // so that the batch holds no read when the writes use it
      this.#reactToReads();
      this.#pause = this.#batchedReads >= BATCH_FROM &&
        (performance.now() - turnStarted) * 1000 < PAUSE_UNLESS_TURN_US;
      if (this.#listening) this.#resumeAccepting(now);
      if (now >= this.#nextSweep) {
        this.#sweep(now);
        this.#nextSweep = now + this.#sweepEvery;
      }
      if (this.#draining) this.#checkDrained(now);
      while (pendingCommands()) await new Promise((resolve) => setTimeout(resolve, 0));
    }
  }

  #acceptAll(listener: EpollListener): void {
    const calls = this.#calls;
    for (;;) {
      const fd = calls.accept4(listener.fd, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        const errno = this.#libc.errno();
        if (errno !== EAGAIN && errno !== EINTR) this.#pauseAccepting(listener, errno);
        return;
      }
      noteAcceptsResumed(listener.context.log, listener.acceptFailures, this.#now);
      const session = new Session(
        listener.context,
        this.#now,
        () => this.#peerAddress(fd),
        () => tcpBytesAcked(this.#libc, fd),
      );
      this.#control(EPOLL_CTL_ADD, fd, EPOLLIN);
      const transport = listener.transports.accept(fd);
      const peer: Peer = {
        fd,
        listener,
        session,
        transport,
        events: EPOLLIN,
        handshaking: transport.handshakes,
        reactPending: false,
        batchOutput: undefined,
        batchOutputAddress: 0,
        batchWritten: false,
      };
      this.#peers[fd] = peer;
      this.#open++;
      if (peer.handshaking && !session.wantsProxyHeader) session.handshakeStarted(this.#now);
      if (this.#draining) session.drain(this.#now);
      // The client spoke first (its ClientHello may be here already); a
      // refused plain connection has its SERVER_BUSY reply to send.
      if (peer.handshaking) this.#handshake(peer);
      else this.#react(peer);
    }
  }

  /** Dispatches a readiness event to what the connection waits for, as its transport says. */
  #onEvent(peer: Peer, events: number): void {
    if (peer.handshaking) return this.#handshake(peer);
    const ready = peer.transport.ready(events);
    if (ready === READY_READ) return this.#onReadable(peer);
    this.#react(peer, true);
    if (ready === READY_WRITE || peer.session.closed || !peer.session.wantsRead) return;
    this.#onReadable(peer);
  }

  /**
   * Advances the transport's handshake. Once done, the client's certificate
   * subject (when client certificates are required) identifies it to the
   * session, and what arrived with the handshake's last message is read at
   * once.
   */
  #handshake(peer: Peer): void {
    const { session, transport } = peer;
    if (session.closed || (session.phase !== "open" && session.outputLength === 0)) {
      // A timeout or the drain ended it before the handshake did: nothing to say over it.
      session.abort();
      return this.#close(peer);
    }
    if (session.wantsProxyHeader) return this.#readProxyHeader(peer);
    const step = transport.handshake();
    if (step === HANDSHAKE_FAILED) return this.#handshakeFailed(peer);
    if (step !== HANDSHAKE_DONE) return this.#watch(peer, step);
    peer.handshaking = false;
    // Only a verified certificate completes a handshake that requires one.
    const subject = peer.listener.context.clientCertificates
      ? transport.peerSubject() ?? ""
      : undefined;
    session.handshakeDone(this.#now, subject);
    if (session.wantsRead) this.#onReadable(peer);
    else this.#react(peer);
  }

  /**
   * Tells the session that the handshake failed (it counts and logs it;
   * nothing was answered). The session then ends and lingers on the raw
   * socket: the transport has written its alert, and closing with the
   * client's bytes unread would reset the connection and could destroy the
   * alert before the client reads it.
   */
  #handshakeFailed(peer: Peer): void {
    peer.handshaking = false;
    peer.session.handshakeFailed(this.#now, peer.transport.failure!);
    this.#react(peer);
  }

  /**
   * Reads the PROXY header that precedes the transport's handshake, off the
   * socket itself. The bytes are peeked, the session says how many the
   * header took, and only those are read, so that the transport reads the
   * handshake's first message (TLS's ClientHello) from the socket, whole.
   */
  #readProxyHeader(peer: Peer): void {
    const { session } = peer;
    const peeked = this.#libc.peek(peer.fd, this.#input, READ_SIZE);
    if (peeked < 0 && this.#libc.errno() === EAGAIN) return this.#watch(peer, EPOLLIN);
    if (peeked <= 0) {
      if (peeked === 0) session.receiveEnd(this.#now);
      else session.abort();
      return this.#close(peer);
    }
    const taken = session.receiveProxyHeader(this.#input, peeked, this.#now);
    this.#libc.read(peer.fd, this.#input, taken); // there: the peek just saw them
    if (session.phase !== "open") {
      // Refused or malformed: the handshake will not take place.
      peer.handshaking = false;
      peer.transport.abandonHandshake();
      return this.#react(peer);
    }
    if (session.wantsProxyHeader) return this.#watch(peer, EPOLLIN);
    session.handshakeStarted(this.#now);
    this.#handshake(peer);
  }

  /** Reads again the connections with bytes inside their transport, once each. */
  #readPending(): void {
    const pending = this.#readAgain;
    this.#readAgain = new Set();
    for (const peer of pending) {
      if (this.#peers[peer.fd] !== peer || !peer.session.wantsRead) continue;
      this.#onReadable(peer);
    }
  }

  /**
   * Stops watching the listener for {@linkcode ACCEPT_PAUSE_MS} after
   * accept fails for want of resources (EMFILE, ENFILE, ENOBUFS): the
   * listener stays readable, so watching it would spin a core, and the
   * pending clients wait in the kernel's queue until descriptors free up.
   */
  #pauseAccepting(listener: EpollListener, errno: number): void {
    listener.acceptResumes = this.#now + ACCEPT_PAUSE_MS;
    this.#control(EPOLL_CTL_MOD, listener.fd, 0);
    noteAcceptFailed(listener.context.log, listener.acceptFailures, this.#now, { errno });
  }

  /** Watches again the listeners whose accept pause is over. */
  #resumeAccepting(now: number): void {
    for (const listener of this.#listeners) {
      if (listener.acceptResumes === 0 || now < listener.acceptResumes) continue;
      listener.acceptResumes = 0;
      this.#control(EPOLL_CTL_MOD, listener.fd, EPOLLIN);
    }
  }

  /**
   * Reads one buffer through the transport and hands it to the session; in
   * a batching wakeup, a plain socket's read is queued instead, and handed
   * over when the batch has run.
   */
  #onReadable(peer: Peer): void {
    if (this.#batching && peer.transport.plain) this.#queueRead(peer);
    else this.#received(peer, this.#input, peer.transport.read(this.#input, READ_SIZE));
    if (!peer.reactPending) {
      peer.reactPending = true;
      this.#toReact.push(peer);
    }
  }

  /** Tells the session what a read into `buffer` gave: bytes, the end, a failure, or nothing yet. */
  #received(peer: Peer, buffer: Uint8Array, received: number): void {
    const { session, transport } = peer;
    if (received > 0) {
      session.receive(buffer, received, this.#now);
      if (transport.hasPending()) this.#readAgain.add(peer);
    } else if (received === 0) session.receiveEnd(this.#now);
    else if (received === TRANSPORT_FAILED) this.#failed(peer); // reset by the peer, or TLS broke
    // Nothing came (WOULD_BLOCK): the transport may now wait for another event.
  }

  #queueRead(peer: Peer): void {
    if (this.#batchPeers.length === BATCH_READS) this.#runReadBatch();
    const slot = this.#batchPeers.length;
    this.#batchPeers.push(peer);
    const address = this.#batchSlotsAddress + slot * BATCH_READ_SIZE;
    this.#batch!.receive(peer.fd, address, BATCH_READ_SIZE, slot);
  }

  /** Makes the queued reads, in one system call, and hands each session its bytes. */
  #runReadBatch(): void {
    const batch = this.#batch;
    if (batch === undefined || batch.queued === 0) return;
    const done = batch.run();
    this.#batchedReads += done;
    for (let i = 0; i < done; i++) {
      const slot = batch.tags[i];
      const peer = this.#batchPeers[slot];
      if (this.#peers[peer.fd] !== peer) continue;
      const result = batch.results[i];
      this.#received(
        peer,
        this.#batchSlots[slot],
        result >= 0 ? result : failedSocketCall(-result),
      );
    }
    this.#batchPeers.length = 0;
  }

  /**
   * Writes the replies of every connection that read in this wakeup, and
   * acts on what else their sessions say, once all of the wakeup's reads
   * are done (as Redis writes before it sleeps): the clients are woken by
   * a burst of replies rather than one at a time between reads, which
   * costs the kernel fewer wakeups per query.
   */
  #reactToReads(): void {
    const peers = this.#toReact;
    if (this.#batching) this.#writeInBatches(peers);
    for (let i = 0; i < peers.length; i++) {
      const peer = peers[i];
      peer.reactPending = false;
      if (this.#peers[peer.fd] !== peer) continue;
      // What a batch could not write waits for the socket to say it has room.
      const writable = !peer.batchWritten && (peer.events & EPOLLOUT) === 0;
      peer.batchWritten = false;
      this.#react(peer, writable);
    }
    peers.length = 0;
  }

  /** Writes the replies due on plain sockets in batches of one system call. */
  #writeInBatches(peers: Peer[]): void {
    const batch = this.#batch!;
    for (let i = 0; i < peers.length; i++) {
      const peer = peers[i];
      const { session } = peer;
      if (
        this.#peers[peer.fd] !== peer || peer.handshaking || !peer.transport.plain ||
        (peer.events & EPOLLOUT) !== 0 || session.outputLength === 0
      ) continue;
      if (batch.queued === batch.capacity) this.#runWriteBatch(peers);
      const bytes = session.outputBytes;
      if (peer.batchOutput !== bytes) {
        peer.batchOutput = bytes;
        peer.batchOutputAddress = bufferAddress(bytes);
      }
      batch.send(peer.fd, peer.batchOutputAddress, session.outputLength, i);
      peer.batchWritten = true;
    }
    this.#runWriteBatch(peers);
  }

  /** Makes the queued writes and tells each session how much it took. */
  #runWriteBatch(peers: Peer[]): void {
    const batch = this.#batch!;
    const done = batch.run();
    for (let j = 0; j < done; j++) {
      const peer = peers[batch.tags[j]];
      const written = batch.results[j];
      if (written >= 0) peer.session.wrote(written, this.#now);
      else if (failedSocketCall(-written) === TRANSPORT_FAILED) this.#failed(peer);
    }
  }

  /**
   * The connection failed mid-stream: say why at debug when the transport
   * knows (only TLS does: a socket's reset says nothing more), then end it.
   */
  #failed(peer: Peer): void {
    const failure = peer.transport.failure;
    if (failure !== undefined) {
      peer.listener.context.log.debug("TLS connection failed", { reason: failure.reason });
    }
    peer.session.abort();
  }

  /**
   * Does what the session asks after an event: write what is due (unless the
   * socket was full and has not said it is writable), half-close, close, or
   * change what to wait for.
   */
  #react(peer: Peer, writable = (peer.events & EPOLLOUT) === 0): void {
    const { session, transport } = peer;
    if (peer.handshaking) return session.closed ? this.#close(peer) : undefined;
    if (writable) this.#writeOut(peer);
    if (session.wantsTlsUpgrade) return this.#upgrade(peer);
    if (session.wantsHalfClose) this.#halfClose(peer);
    if (session.closed) return this.#close(peer);
    const reading = session.wantsRead;
    const events = transport.interest(session.outputLength > 0 ? EPOLLOUT : reading ? EPOLLIN : 0);
    // Reading resumes after backpressure: bytes the transport holds would get no event.
    if (reading && (peer.events & EPOLLIN) === 0 && transport.hasPending()) {
      this.#readAgain.add(peer);
    }
    this.#watch(peer, events);
  }

  /**
   * Starts TLS on a plain connection whose session asked for it, its reply
   * written: a TLS transport from the listener's upgrade acceptor on the
   * same socket, and its handshake, as after an accept. Without an upgrade
   * acceptor (a front end that offers what its port cannot do) the
   * connection cannot go on, and is closed.
   */
  #upgrade(peer: Peer): void {
    const { session, listener } = peer;
    let transport: Transport;
    try {
      if (listener.upgrades === undefined) throw new Error("the port has no TLS to upgrade to");
      transport = listener.upgrades.accept(peer.fd);
    } catch (error) {
      listener.context.log.error("TLS upgrade failed", { error: describeError(error) });
      session.abort();
      return this.#close(peer);
    }
    peer.transport.free(false);
    peer.transport = transport;
    peer.handshaking = true;
    session.handshakeStarted(this.#now);
    this.#handshake(peer);
  }

  /** Ends the server's side: the transport's goodbye (TLS close_notify), then the TCP half-close. */
  #halfClose(peer: Peer): void {
    peer.transport.endOutput();
    peer.session.halfClosed(this.#now);
  }

  /** Writes what the session has due, as far as the socket takes it. */
  #writeOut(peer: Peer): void {
    const { session, transport } = peer;
    while (session.outputLength > 0) {
      const length = session.outputLength;
      const written = transport.write(session.outputBytes, length);
      if (written < 0) {
        if (written === TRANSPORT_FAILED) this.#failed(peer);
        return;
      }
      session.wrote(written, this.#now); // may answer frames held back: more to write
      if (written < length) return; // the socket is full: wait until it is writable
    }
  }

  #drainPeer(peer: Peer, now: number): void {
    peer.session.drain(now);
    this.#settle(peer);
  }

  /** Acts on a session changed from outside (a tick, a drain): mid-handshake, its end closes. */
  #settle(peer: Peer): void {
    if (peer.handshaking) this.#handshake(peer);
    else this.#react(peer);
  }

  /** Ticks the sessions whose deadline has passed. */
  #sweep(now: number): void {
    for (const listener of this.#listeners) reportRepeatedRefusals(listener.context, now);
    for (const peer of this.#peers) {
      if (peer === undefined || now < peer.session.deadline) continue;
      peer.session.tick(now);
      this.#settle(peer);
    }
  }

  #checkDrained(now: number): void {
    // Until the grace ends, connections queued before the signal are still accepted.
    if (now >= this.#graceEnds) this.#stopListening();
    if (!this.#listening && this.#open === 0) this.#stop();
  }

  #closeAll(): void {
    this.#stopListening();
    for (const peer of this.#peers) {
      if (!peer) continue;
      peer.session.abort();
      this.#close(peer);
    }
    this.#stop();
  }

  #stop(): void {
    this.#stopped = true;
    this.#drained?.();
  }

  #stopListening(): void {
    if (!this.#listening) return;
    this.#listening = false;
    for (const listener of this.#listeners) this.#calls.close(listener.fd);
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
    if (this.#peers[peer.fd] !== peer) return;
    this.#peers[peer.fd] = undefined;
    // A session that ended cleanly says so in the transport's protocol too (TLS close_notify).
    peer.transport.free(peer.session.closeReason !== "aborted");
    this.#readAgain.delete(peer);
    this.#calls.close(peer.fd); // also removes it from the epoll set
    this.#open--;
    if (this.#draining && !this.#listening && this.#open === 0) this.#stop();
  }

  #peerAddress(fd: number): PeerAddress {
    const address = new Uint8Array(128);
    const length = new Uint32Array([address.length]);
    if (this.#calls.getpeername(fd, address, new Uint8Array(length.buffer)) !== 0) {
      return UNKNOWN_PEER;
    }
    return decodeSockaddr(address);
  }
}
