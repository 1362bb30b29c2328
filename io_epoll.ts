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
 * With TLS, a {@linkcode TlsConnection} sits between each socket and its
 * session (the transport): the handshake runs first, on the events it asks
 * for; then reads and writes go through OpenSSL, which reads and writes the
 * socket itself, and the session sees plaintext only. Bytes that OpenSSL
 * decrypted or read ahead are not the kernel's, so epoll does not announce
 * them: connections that hold some are kept in a set and read again
 * without waiting (epoll_wait's timeout is 0 meanwhile), as Redis does.
 * Every close path frees the connection's `SSL*` before closing the socket.
 * A balancer that passes TLS through sends its PROXY header in clear before
 * the handshake: that header is peeked and only its bytes are read off the
 * socket, so that OpenSSL finds the ClientHello where it expects it.
 *
 * @module
 */

import type { AddressBook } from "./addressbook.ts";
import {
  ACCEPT_PAUSE_MS,
  DRAIN_SWEEP_MS,
  type Service,
  type ServiceOptions,
  sweepInterval,
} from "./io_driver.ts";
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
import { DRAIN_GRACE_MS, type PeerAddress, reportRepeatedRefusals, Session } from "./session.ts";
import { reportHandshakeFailure, type TlsAcceptor } from "./tls_acceptor.ts";
import type { TlsConnection, TlsFailure } from "./tls_connection.ts";

const READ_SIZE = 65536;
const MAX_EVENTS = 256;
/** The longest wait in epoll_wait, so commands and deadlines are seen promptly when idle. */
const MAX_WAIT_MS = 50;
/** A peer whose address the kernel no longer knows (it reset already); it matches no rule. */
const UNKNOWN_PEER: PeerAddress = { hostname: "?", port: 0 };

/** One open connection: its socket, its session, and with TLS its engine. */
interface Peer {
  readonly fd: number;
  readonly session: Session;
  /** The epoll events registered for it. */
  events: number;
  /** The TLS engine between socket and session; undefined on plain TCP. */
  readonly tls: TlsConnection | undefined;
  /** No plaintext flows until the TLS handshake is done. */
  handshaking: boolean;
  /** The last TLS read needs the socket writable before it can go on (a key update's reply). */
  readWantsWrite: boolean;
  /** The last TLS write needs the socket readable before it can go on. */
  writeWantsRead: boolean;
  /** TLS is over (close_notify sent, or the handshake failed): what still arrives is read raw and dropped. */
  tlsEnded: boolean;
}

/** Serves queries on a listening socket's descriptor until shut down. */
export class EpollService implements Service {
  readonly #calls: LibcSymbols;
  readonly #libc: Libc;
  readonly #context: ServiceOptions;
  readonly #listenFd: number;
  readonly #epollFd: number;
  /** Open connections by file descriptor. */
  readonly #peers: (Peer | undefined)[] = [];
  /** Makes each accepted socket a TLS connection; undefined on plain TCP. */
  readonly #tls: TlsAcceptor | undefined;
  /** TLS connections whose readable bytes sit inside OpenSSL, where epoll cannot see them. */
  #readAgain = new Set<Peer>();
  #open = 0;
  readonly #events = new Uint8Array(EPOLL_EVENT_SIZE * MAX_EVENTS);
  readonly #eventView = new DataView(this.#events.buffer);
  readonly #eventOne = new Uint8Array(EPOLL_EVENT_SIZE);
  readonly #eventOneView = new DataView(this.#eventOne.buffer);
  /** One read buffer serves every connection: a session is done with it when receive returns. */
  readonly #input = new Uint8Array(READ_SIZE);
  #listening = true;
  #draining = false;
  #graceEnds = 0;
  #stopped = false;
  #nextSweep = 0;
  #sweepEvery: number;
  /** When to watch the listener again after accept ran out of descriptors; 0 when watching. */
  #acceptResumes = 0;
  /** The time of the latest wakeup from epoll_wait. */
  #now = Date.now();
  #drained: (() => void) | undefined;
  /** Resolves when the loop has returned and its sockets are closed. */
  readonly done: Promise<void>;

  /**
   * Takes over a listening, non-blocking socket and starts the loop. Between
   * waits it calls `pendingCommands`, and while that says commands are
   * waiting it yields to the thread's event loop so their messages arrive.
   * With `tls`, every connection speaks TLS (the caller keeps the acceptor,
   * to rotate its certificate, and frees it after the loop is done).
   */
  constructor(
    libc: Libc,
    listenFd: number,
    options: ServiceOptions,
    pendingCommands: () => boolean,
    tls?: TlsAcceptor,
  ) {
    this.#libc = libc;
    this.#tls = tls;
    this.#calls = libc.calls;
    this.#context = options;
    this.#listenFd = listenFd;
    this.#epollFd = this.#calls.epoll_create1(SOCK_CLOEXEC);
    if (this.#epollFd < 0) {
      throw new Error(`The call epoll_create1 failed with errno ${libc.errno()}.`);
    }
    this.#control(EPOLL_CTL_ADD, listenFd, EPOLLIN);
    this.#sweepEvery = sweepInterval(options.limits);
    this.done = this.#run(pendingCommands);
  }

  /** Replaces the book; each later query is answered from the new one. */
  setBook(book: AddressBook): void {
    this.#context.book = book;
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
    }
  }

  async #loop(pendingCommands: () => boolean): Promise<void> {
    const calls = this.#calls;
    while (!this.#stopped) {
      // Bytes waiting inside OpenSSL are ready now: do not sleep on them.
      const wait = this.#readAgain.size > 0 ? 0 : MAX_WAIT_MS;
      const ready = calls.epoll_wait(this.#epollFd, this.#events, MAX_EVENTS, wait);
      if (ready < 0 && this.#libc.errno() !== EINTR) {
        throw new Error(`The call epoll_wait failed with errno ${this.#libc.errno()}.`);
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
        if (peer.tls !== undefined) this.#onTlsEvent(peer, events);
        else if (events & EPOLLOUT) this.#react(peer, true);
        else this.#onReadable(peer);
      }
      if (this.#readAgain.size > 0) this.#readPending();
      if (this.#acceptResumes > 0 && now >= this.#acceptResumes && this.#listening) {
        this.#acceptResumes = 0;
        this.#control(EPOLL_CTL_MOD, this.#listenFd, EPOLLIN);
      }
      if (now >= this.#nextSweep) {
        this.#sweep(now);
        this.#nextSweep = now + this.#sweepEvery;
      }
      if (this.#draining) this.#checkDrained(now);
      while (pendingCommands()) await new Promise((resolve) => setTimeout(resolve, 0));
    }
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
      const session = new Session(this.#context, this.#now, () => this.#peerAddress(fd));
      this.#control(EPOLL_CTL_ADD, fd, EPOLLIN);
      const peer: Peer = {
        fd,
        session,
        events: EPOLLIN,
        tls: this.#tls?.accept(fd),
        handshaking: this.#tls !== undefined,
        readWantsWrite: false,
        writeWantsRead: false,
        tlsEnded: false,
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

  /** Dispatches a readiness event of a TLS connection to what it waits for. */
  #onTlsEvent(peer: Peer, events: number): void {
    if (peer.handshaking) return this.#handshake(peer);
    if (events & EPOLLOUT) {
      if (!peer.readWantsWrite) return this.#react(peer, true);
      peer.readWantsWrite = false;
      return this.#onReadable(peer);
    }
    if (peer.writeWantsRead) {
      peer.writeWantsRead = false;
      this.#react(peer, true);
      if (peer.session.closed || !peer.session.wantsRead) return;
    }
    this.#onReadable(peer);
  }

  /**
   * Advances the TLS handshake. Once done, the client's certificate subject
   * (when client certificates are required) identifies it to the session,
   * and what arrived with the handshake's last message is read at once.
   */
  #handshake(peer: Peer): void {
    const tls = peer.tls!;
    const { session } = peer;
    if (session.closed || (session.phase !== "open" && session.outputLength === 0)) {
      // A timeout or the drain ended it before the handshake did: nothing to say over TLS.
      session.abort();
      return this.#close(peer);
    }
    if (session.wantsProxyHeader) return this.#readProxyHeader(peer);
    const step = tls.handshake();
    if (step === "want-read") return this.#watch(peer, EPOLLIN);
    if (step === "want-write") return this.#watch(peer, EPOLLOUT);
    if (step === "failed") return this.#handshakeFailed(peer, tls.failure!);
    peer.handshaking = false;
    this.#context.counters[Counter.tlsHandshakesOk]++;
    // Only a verified certificate completes a handshake that requires one.
    const subject = this.#context.clientCertificates ? tls.peerSubject() ?? "" : undefined;
    session.handshakeDone(this.#now, subject);
    if (session.wantsRead) this.#onReadable(peer);
    else this.#react(peer);
  }

  /**
   * Counts and logs a failed handshake (nothing was answered). The session
   * then ends and lingers on the raw socket: OpenSSL has written its alert,
   * and closing with the client's bytes unread would reset the connection
   * and could destroy the alert before the client reads it.
   */
  #handshakeFailed(peer: Peer, failure: TlsFailure): void {
    reportHandshakeFailure(this.#context, this.#peerAddress(peer.fd), failure, this.#now);
    peer.handshaking = false;
    peer.tlsEnded = true; // no TLS after a fatal error: not even close_notify
    peer.session.handshakeFailed();
    this.#react(peer);
  }

  /**
   * Reads the PROXY header that precedes the TLS handshake. The bytes are
   * peeked, the session says how many the header took, and only those are
   * read off the socket, so that OpenSSL reads the ClientHello from the
   * socket itself, whole.
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
      // Refused or malformed: no TLS was spoken, so none is ended.
      peer.handshaking = false;
      peer.tlsEnded = true;
      return this.#react(peer);
    }
    if (session.wantsProxyHeader) return this.#watch(peer, EPOLLIN);
    session.handshakeStarted(this.#now);
    this.#handshake(peer);
  }

  /** Reads again the TLS connections with bytes inside OpenSSL, once each. */
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
  #pauseAccepting(errno: number): void {
    this.#acceptResumes = this.#now + ACCEPT_PAUSE_MS;
    this.#control(EPOLL_CTL_MOD, this.#listenFd, 0);
    this.#context.log.error("accept failed; pausing accepts", {
      errno,
      pause_ms: ACCEPT_PAUSE_MS,
    });
  }

  #onReadable(peer: Peer): void {
    if (peer.tls !== undefined && !peer.tlsEnded) return this.#onTlsReadable(peer, peer.tls);
    const received = this.#libc.read(peer.fd, this.#input, READ_SIZE);
    if (received > 0) peer.session.receive(this.#input, received, this.#now);
    else if (received === 0) peer.session.receiveEnd(this.#now);
    else if (this.#libc.errno() === EAGAIN) return;
    else peer.session.abort(); // reset by the peer
    this.#react(peer);
  }

  /** Reads one buffer of plaintext through OpenSSL and hands it to the session. */
  #onTlsReadable(peer: Peer, tls: TlsConnection): void {
    const got = tls.read(this.#input);
    if (typeof got === "number") {
      peer.session.receive(this.#input, got, this.#now);
      if (tls.hasPending()) this.#readAgain.add(peer);
    } else if (got === "want-write") {
      peer.readWantsWrite = true;
    } else if (got === "closed") {
      peer.session.receiveEnd(this.#now);
    } else if (got === "failed") {
      this.#context.log.debug("TLS connection failed", { reason: tls.failure!.reason });
      peer.session.abort();
    }
    this.#react(peer);
  }

  /**
   * Does what the session asks after an event: write what is due (unless the
   * socket was full and has not said it is writable), half-close, close, or
   * change what to wait for.
   */
  #react(peer: Peer, writable = (peer.events & EPOLLOUT) === 0): void {
    const { session } = peer;
    if (peer.handshaking) return session.closed ? this.#close(peer) : undefined;
    if (writable) this.#writeOut(peer);
    if (session.wantsHalfClose) this.#halfClose(peer);
    if (session.closed) return this.#close(peer);
    const reading = session.wantsRead;
    let events = session.outputLength > 0 ? EPOLLOUT : reading ? EPOLLIN : 0;
    if (peer.tls !== undefined) {
      if (peer.readWantsWrite) events |= EPOLLOUT;
      // Writability would wake us at once to a write that waits for input: wait for input.
      if (peer.writeWantsRead) events = (events & ~EPOLLOUT) | EPOLLIN;
      // Reading resumes after backpressure: bytes OpenSSL holds would get no event.
      if (reading && (peer.events & EPOLLIN) === 0 && peer.tls.hasPending()) {
        this.#readAgain.add(peer);
      }
    }
    this.#watch(peer, events);
  }

  /** Ends the server's side: TLS close_notify first, then the TCP half-close. */
  #halfClose(peer: Peer): void {
    if (peer.tls !== undefined && !peer.tlsEnded) {
      peer.tls.shutdown();
      peer.tlsEnded = true;
    }
    this.#calls.shutdown(peer.fd, SHUT_WR);
    peer.session.halfClosed(this.#now);
  }

  /** Writes what the session has due, as far as the socket takes it. */
  #writeOut(peer: Peer): void {
    if (peer.tls !== undefined) return this.#writeOutTls(peer, peer.tls);
    const { session } = peer;
    while (session.outputLength > 0) {
      const length = session.outputLength;
      const written = this.#libc.write(peer.fd, session.outputBytes, length);
      if (written < 0) {
        if (this.#libc.errno() !== EAGAIN) session.abort();
        return;
      }
      session.wrote(written, this.#now); // may answer frames held back: more to write
      if (written < length) return; // the socket is full: wait until it is writable
    }
  }

  /**
   * Writes what the session has due through OpenSSL, which may take it a
   * record at a time: only a "want" means the socket is full.
   */
  #writeOutTls(peer: Peer, tls: TlsConnection): void {
    const { session } = peer;
    while (session.outputLength > 0) {
      const written = tls.write(session.outputBytes, session.outputLength);
      if (typeof written === "number") {
        session.wrote(written, this.#now);
        continue;
      }
      if (written === "want-read") peer.writeWantsRead = true;
      else if (written === "failed") {
        this.#context.log.debug("TLS connection failed", { reason: tls.failure!.reason });
        session.abort();
      }
      return;
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
    reportRepeatedRefusals(this.#context, now);
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
    this.#calls.close(this.#listenFd);
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
    if (peer.tls !== undefined) {
      // The session has ended cleanly: say so in TLS too (once; best effort).
      if (!peer.handshaking && !peer.tlsEnded && peer.session.closeReason !== "aborted") {
        peer.tls.shutdown();
      }
      peer.tls.free();
      this.#readAgain.delete(peer);
    }
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
