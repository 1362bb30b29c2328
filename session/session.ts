/**
 * The session layer: every per-connection rule of the server, as one pure
 * state machine per connection. A session does no I/O and reads no clock.
 * Its driver (io/epoll.ts, io/deno.ts) tells it what arrived and
 * what time it is; the session says what to write, whether to read, when to
 * half-close or close, and when it next wants to be woken (its deadline).
 *
 * This is the "sans-I/O" design of h11 and quinn-proto. Every rule that is
 * the same whatever the wire protocol lives here once: admission, access,
 * the PROXY header, per-client limits, backpressure, the idle, frame, write
 * and handshake timeouts, drain at shutdown, linger. What is the protocol's
 * own (decoding requests, answering them from the book, the words of a
 * refusal) is its front end's (wire/front_end.ts; the binary protocol's is
 * wire/binary.ts), which the session calls and never names. So both
 * event loops and every front end behave alike, and the rules can be tested
 * without sockets or timers.
 *
 * Timeouts are deadlines in one table (see {@linkcode Timer} below), which
 * {@linkcode Session.deadline} and {@linkcode Session.tick} both read, as
 * quinn's `TimerTable` is.
 *
 * A connection's life:
 *
 * ```
 *   open ──(protocol error, busy, drain over, peer EOF)──▶ ending
 *   ending ──(replies written; peer still open)──▶ lingering ──(peer EOF, linger over)──▶ closed
 *   ending ──(replies written; peer closed)──────────────────────────────────────────────▶ closed
 *   any ──(a timeout, a reset: abort)──▶ closed
 * ```
 *
 * A driver's loop, in outline:
 *
 * ```ts ignore
 * session.receive(input, received, now);        // or receiveEnd(now) at EOF
 * while (session.outputLength > 0) {
 *   const written = write(session.outputBytes, session.outputLength);
 *   if (written <= 0) break;                     // wait until writable
 *   session.wrote(written, now);                 // may answer requests held back
 * }
 * if (session.wantsTlsUpgrade) { startTls(); session.handshakeStarted(now); } // LDAP's StartTLS
 * if (session.wantsHalfClose) { shutdownWrite(); session.halfClosed(now); }
 * if (session.closed) close();
 * // read only while session.wantsRead; call session.tick(now) at session.deadline
 * ```
 *
 * @module
 */

import { certificateIdentity, clientIdentity } from "../access/list.ts";
import { AccessPolicy, type AccessRules, type AccessVerdict } from "../access/policy.ts";
import type { AddressBook } from "../book/addressbook.ts";
import {
  ClientLimits,
  type LimitRefusal,
  OVER_CONNECTION_LIMIT,
  type SharedClientLimits,
} from "../access/limits.ts";
import type { Logger } from "../common/log.ts";
import { RepeatSummary } from "../common/log_repeats.ts";
import { Counter, outcomeCounters } from "./counters.ts";
import { formatAddress } from "../common/net_address.ts";
import {
  type Conversation,
  type FrontEnd,
  type GateRefusal,
  MalformedInput,
  NO_REQUEST,
  Outcome,
  ReplyBuffer,
  type RequestGate,
} from "../wire/front_end.ts";
import { ProxyHeaderError, ProxyHeaderParser } from "../access/proxy_header.ts";
import { reportHandshakeFailure, type TlsFailure } from "./handshake.ts";

/** Limits on what one peer may hold of the server. Times are in milliseconds; 0 turns a timeout off. */
export interface ServiceLimits {
  /** Open connections allowed across all threads; one more is refused with SERVER_BUSY. */
  maxConnections: number;
  /** A connection that owes no reply and has sent nothing for this long is closed. */
  idleTimeoutMs: number;
  /** A connection that started a frame and has not finished it in this long is closed. */
  frameTimeoutMs: number;
  /** A connection with replies waiting that takes none of them for this long is closed. */
  writeTimeoutMs: number;
  /** Reply bytes a connection may have waiting before the server stops reading from it. */
  maxPendingWrite: number;
}

/** Default limits, as documented in the README. */
export const DEFAULT_LIMITS: ServiceLimits = {
  maxConnections: 1024,
  idleTimeoutMs: 300_000,
  frameTimeoutMs: 10_000,
  writeTimeoutMs: 30_000,
  maxPendingWrite: 1 << 20,
};

/**
 * Time given, at shutdown, for bytes already sent to arrive: a connection
 * is ended once it has owed nothing and received nothing for this long.
 */
export const DRAIN_GRACE_MS = 100;

/**
 * How long after the shutdown began a connection is still read. Past it, a
 * client that never stops pipelining is answered what it had sent and then
 * ended, instead of holding the shutdown until its timeout.
 */
export const DRAIN_READ_MS = 1000;

/**
 * After the last reply, how long a half-closed connection's input is read
 * and dropped while waiting for the peer to close: closing a socket with
 * unread input makes the kernel send a reset, which can destroy replies the
 * peer has not read yet.
 */
export const LINGER_MS = 1000;

/** What every session of one listener in one serving thread shares. */
export interface SessionContext {
  /** The wire protocol spoken. */
  frontEnd: FrontEnd;
  /** The book to answer from; replacing it here switches every session's later answers. */
  book: AddressBook;
  /** Limits on each peer. */
  limits: ServiceLimits;
  /** This thread's counters (a row of the shared table, see server/metrics.ts). */
  counters: Float64Array;
  /** This front end's replies in that row, by {@linkcode Outcome}. */
  outcomes: Float64Array;
  /** Open connections across all threads: a shared one-element array, updated atomically. */
  openConnections: Int32Array;
  /** Where events are logged. */
  log: Logger;
  /**
   * Who may query (`--allow`, protected mode, `--proxy-protocol`); absent
   * when everyone may, so that the common case costs nothing.
   */
  access?: AccessPolicy;
  /** Per-client limits, shared by every thread; absent when no limit is set. */
  clientLimits?: ClientLimits;
  /** Refusals logged so far, by client and reason, so repeats are summarised. */
  refusals: RepeatSummary;
  /**
   * Whether a session learns its client's identity from a TLS client
   * certificate: it then waits for {@linkcode Session.handshakeDone}.
   */
  clientCertificates?: boolean;
}

/**
 * What a serving thread is given to build its {@linkcode SessionContext}
 * from; all but the front end can be posted.
 */
export interface SessionSettings {
  /** The wire protocol spoken. */
  frontEnd: FrontEnd;
  /** The book to answer from. */
  book: AddressBook;
  /** Limits on each peer. */
  limits: ServiceLimits;
  /** This thread's counters. */
  counters: Float64Array;
  /** Open connections across all threads. */
  openConnections: Int32Array;
  /** Where events are logged. */
  log: Logger;
  /** The access rules, as the command line gave them. */
  access?: AccessRules;
  /** The per-client limits' shared table, when any limit is set. */
  clientLimits?: SharedClientLimits;
  /** Whether clients authenticate with TLS certificates. */
  clientCertificates?: boolean;
}

/** Builds a thread's session context: the access policy and limits table made ready for use. */
export function createSessionContext(settings: SessionSettings): SessionContext {
  settings.frontEnd.prepare?.(settings.book);
  return {
    frontEnd: settings.frontEnd,
    book: settings.book,
    limits: settings.limits,
    counters: settings.counters,
    outcomes: outcomeCounters(settings.counters, settings.frontEnd.name),
    openConnections: settings.openConnections,
    log: settings.log,
    access: settings.access && AccessPolicy.fromRules(settings.access),
    clientLimits: settings.clientLimits && ClientLimits.attach(settings.clientLimits),
    refusals: new RepeatSummary(),
    clientCertificates: settings.clientCertificates,
  };
}

/** A peer's address as a socket reports it. */
export interface PeerAddress {
  /** IPv4 dotted decimal or IPv6 text. */
  hostname: string;
  /** TCP port. */
  port: number;
}

/** Where a session is in its life (see the module comment). */
export type SessionPhase = "open" | "ending" | "lingering" | "closed";

/** Why a session closed, for the driver's logs and for tests. */
export type CloseReason =
  | "peer-closed"
  | "linger-over"
  | "idle-timeout"
  | "frame-timeout"
  | "write-timeout"
  | "handshake-timeout"
  | "aborted";

/** Counts and logs the refusals repeated since they were last logged; drivers call it now and then. */
export function reportRepeatedRefusals(context: SessionContext, now: number): void {
  if (context.refusals.size === 0) return;
  for (const [key, count] of context.refusals.flush(now)) {
    const [client, reason] = key.split(" ");
    context.log.info("refusals repeated", { client, reason, count });
  }
}

/** Why a conversation ended in PROTOCOL_ERROR, as its summarised log lines name it. */
type ProtocolErrorCause = "protocol_error" | "bad_proxy_header";

/** What a connection waited on too long when a timeout closed it. */
type TimeoutKind = "idle" | "frame" | "write" | "handshake";
const TIMEOUT_COUNTERS: Readonly<Record<TimeoutKind, number>> = {
  idle: Counter.idleTimeouts,
  frame: Counter.frameTimeouts,
  write: Counter.writeTimeouts,
  handshake: Counter.handshakeTimeouts,
};

/** The counter of each reason a connection is refused with FORBIDDEN: the log's reason is the metric's label. */
const FORBIDDEN_COUNTERS: Readonly<Record<Exclude<AccessVerdict, "ok">, number>> = {
  not_allowed: Counter.refusedNotAllowed,
  protected_mode: Counter.refusedProtectedMode,
  untrusted_proxy: Counter.refusedUntrustedProxy,
};

const REFUSAL_COUNTERS: Readonly<Record<LimitRefusal, number>> = {
  rate_limited: Counter.refusedRateLimited,
  found_limit: Counter.refusedFoundLimit,
  client_connections: Counter.refusedClientConnections,
};
/** Probes of the acknowledged count per write timeout, while replies wait (see {@linkcode Timer}). */
export const WRITE_PROBES = 8;
/** A reply buffer this large is given back once emptied, so idle connections hold little. */
const KEEP_OUTPUT_BYTES = 64 * 1024;

/**
 * The session's timers. Each one's deadline is kept in one table, which
 * both {@linkcode Session.deadline} (the earliest) and
 * {@linkcode Session.tick} (the expired, in this order) read, as quinn's
 * `TimerTable` is; the session arms them from its state in one place.
 */
const Timer = {
  /** The drain is over for this session: quiet for the grace, or read for DRAIN_READ_MS. */
  drainEnd: 0,
  /** The transport's handshake took the frame timeout. */
  handshake: 1,
  /**
   * Replies waited the write timeout with none taken. Progress is the
   * kernel taking more of them (a write that succeeds), or, where the
   * transport can tell, the peer's TCP acknowledging more bytes: a reader
   * that takes a little at a time may leave the socket unwritable for
   * longer than the timeout (the kernel reports it writable again only once
   * a good part of its buffer is free, and the peer's kernel reopens its
   * window only in large steps), while its acknowledgements show it is
   * taking bytes. Then the timer also fires as a probe.
   */
  write: 2,
  /** A request stayed unfinished for the frame timeout. */
  frame: 3,
  /** Nothing owed and nothing received for the idle timeout. */
  idle: 4,
  /** A lingering session waited its time for the peer's close. */
  linger: 5,
} as const;
const TIMER_COUNT = 6;

/**
 * One connection's state machine. Create it when a connection is accepted;
 * it takes a connection slot (or, at the limit, starts out refusing as
 * busy) and gives the slot back when it closes. What is said on the wire
 * is its front end's (the context's {@linkcode FrontEnd}).
 */
export class Session {
  readonly #context: SessionContext;
  readonly #peerAddress: () => PeerAddress;
  #peer: PeerAddress | undefined;
  /** The client's address for access rules and logs: the peer's, or the PROXY header's source. */
  #client: string | undefined;
  /** Set while the connection's PROXY header is awaited. */
  #proxyHeader: ProxyHeaderParser | undefined;
  /** The client's row in the per-client limits, or -1 when none applies. */
  #limitSlot = -1;
  /** How the front end asks the per-client limits, while they apply. */
  #gate: RequestGate | undefined;
  /** Whether the access rules and limits have placed the client (once per connection). */
  #identified = false;
  /** The PROXY header came before the transport's handshake (see receiveProxyHeader). */
  #handshakeFollows = false;
  /** The front end's state for this connection: its request decoder. */
  readonly #conversation: Conversation;
  #phase: SessionPhase = "open";
  #closeReason: CloseReason | undefined;
  /** Whether this session holds a connection slot (a refused one does not). */
  #counted: boolean;
  readonly #output = new ReplyBuffer();
  /** Complete requests wait in the conversation: the peer is not taking its replies. */
  #holding = false;
  /**
   * The conversation asked for TLS (LDAP's StartTLS): nothing is read or
   * answered until the driver starts the handshake, once the reply is written.
   */
  #upgrading = false;
  /** The peer sent EOF: nothing more will arrive. */
  #peerClosed = false;
  /** When the peer last sent bytes or took the last of its replies. */
  #lastActive: number;
  /** When the unfinished request started, or -1 when none is unfinished. */
  #frameStarted = -1;
  /** When the transport's handshake (TLS) started, or -1 when none is under way. */
  #handshakeStarted = -1;
  /** When the peer last took reply bytes, or when replies started waiting. */
  #lastWriteProgress: number;
  /** The bytes the peer's TCP has acknowledged so far, when the transport can tell (see constructor). */
  readonly #acked: (() => number) | undefined;
  /** The acknowledged count at the last probe since the last write progress, or -1 before one. */
  #ackedAtProbe = -1;
  /** When the acknowledged count was last probed (or the last write progress, if later). */
  #lastAckProbe: number;
  /** When the shutdown began, or -1. */
  #drainStarted = -1;
  /** When a lingering session gives up waiting for the peer's close. */
  #lingerUntil = 0;
  /** The time of the event being handled, for the per-client limits. */
  #now: number;
  /** Each {@linkcode Timer}'s deadline, Infinity when not armed; filled by #armTimers. */
  readonly #timers = new Float64Array(TIMER_COUNT);

  /**
   * Opens a session for a connection accepted at `now`. `peer` gives the
   * peer's address; it is asked only when a rule or a log line needs it.
   * `acked`, when the transport can tell, gives how many bytes the peer's
   * TCP has acknowledged so far (TCP_INFO's `tcpi_bytes_acked`), or -1 when
   * it cannot now: while replies wait, the session probes it now and then,
   * and a count that grew is progress for the write timeout, though the
   * kernel has not yet taken more of the replies (see {@linkcode Timer}).
   */
  constructor(
    context: SessionContext,
    now: number,
    peer: () => PeerAddress,
    acked?: () => number,
  ) {
    this.#context = context;
    this.#peerAddress = peer;
    this.#acked = acked;
    this.#lastActive = now;
    this.#lastWriteProgress = now;
    this.#lastAckProbe = now;
    this.#now = now;
    this.#conversation = context.frontEnd.connect(context.counters);
    this.#counted = this.#admit();
    if (!this.#counted) {
      context.frontEnd.writeBusy(this.#output);
      this.#phase = "ending";
      return;
    }
    const { access } = context;
    if (access?.expectsProxyHeader) {
      // A PROXY header lets its sender name any client: only trusted proxies may.
      const verdict = access.peerVerdict(this.#peerHost());
      if (verdict !== "ok") {
        this.#forbid(verdict, this.#peerHost(), now);
      } else {
        this.#proxyHeader = new ProxyHeaderParser();
        this.#frameStarted = now; // the header counts against the frame timeout
      }
    } else if (!context.clientCertificates && (access || context.clientLimits)) {
      // Asked only when a rule needs it: the address costs a system call.
      this.#identify(this.#peerHost(), undefined, now);
    }
  }

  /**
   * The transport began a handshake (TLS) that must finish before any
   * plaintext flows. It counts against the frame timeout, as an unfinished
   * request does: a peer that connects and stalls its handshake holds a
   * connection no longer than one that stalls a request.
   */
  handshakeStarted(now: number): void {
    this.#upgrading = false;
    if (this.#phase !== "closed") this.#handshakeStarted = now;
  }

  /**
   * The handshake completed, and is counted. With client certificates (the
   * context's `clientCertificates`), `subject` is the verified
   * certificate's subject: the client's identity for the access rules and
   * limits.
   */
  handshakeDone(now: number, subject?: string): void {
    this.#context.counters[Counter.tlsHandshakesOk]++;
    this.#handshakeStarted = -1;
    this.#lastActive = now;
    if (this.#proxyHeader !== undefined) this.#frameStarted = now; // the header's time starts now
    if (this.#phase !== "open" || this.#identified) return;
    // The client's address is the PROXY header's, when one came before the handshake.
    if (this.#context.clientCertificates) {
      if (subject !== undefined) this.#identify(this.#client ?? this.#peerHost(), subject, now);
    } else if (this.#client !== undefined) {
      this.#identify(this.#client, undefined, now);
    }
  }

  /**
   * The handshake failed: it is counted and logged (session/handshake.ts),
   * and nothing can be said over the transport. The session ends without a
   * reply, and lingers like any other, so that the client reads the
   * transport's own refusal (a TLS alert) before the socket closes instead
   * of a reset that would destroy it.
   */
  handshakeFailed(now: number, failure: TlsFailure): void {
    reportHandshakeFailure(this.#context, this.#peer ??= this.#peerAddress(), failure, now);
    this.#handshakeStarted = -1;
    if (this.#phase === "closed") return;
    this.#output.length = 0; // a refusal to send over TLS can no longer be
    this.#holding = false;
    this.#frameStarted = -1;
    if (this.#phase === "open") this.#phase = "ending";
    this.#closeIfDone();
  }

  /** Where the session is in its life. */
  get phase(): SessionPhase {
    return this.#phase;
  }

  /** Why it closed, once {@linkcode closed}. */
  get closeReason(): CloseReason | undefined {
    return this.#closeReason;
  }

  /** Whether the driver must close the socket (and then forget the session). */
  get closed(): boolean {
    return this.#phase === "closed";
  }

  /** The buffer holding the bytes to write; its first {@linkcode outputLength} bytes are due. */
  get outputBytes(): Uint8Array {
    return this.#output.bytes;
  }

  /** How many bytes are due to be written; 0 when none. */
  get outputLength(): number {
    return this.#output.length;
  }

  /**
   * Whether the driver should read from the socket. False while replies
   * wait for the peer (backpressure), and once the session takes no more
   * input; a lingering session reads, to drop what still arrives.
   */
  get wantsRead(): boolean {
    if (this.#peerClosed) return false;
    if (this.#phase === "lingering") return true;
    return this.#phase === "open" && !this.#holding && !this.#upgrading &&
      this.#output.length < this.#context.limits.maxPendingWrite;
  }

  /**
   * Whether the driver should start TLS on the connection now: the
   * conversation asked for it ({@linkcode Conversation.upgrade}, LDAP's
   * StartTLS) and its reply is written. The driver swaps the transport for
   * a TLS one and calls {@linkcode handshakeStarted}; the handshake then
   * runs under the frame timeout, as at accept. A driver that cannot
   * upgrade must not serve a front end that offers it.
   */
  get wantsTlsUpgrade(): boolean {
    return this.#upgrading && this.#phase === "open" && this.#output.length === 0;
  }

  /** Whether the driver should half-close the socket now (then call {@linkcode halfClosed}). */
  get wantsHalfClose(): boolean {
    return this.#phase === "ending" && this.#output.length === 0 && !this.#peerClosed;
  }

  /**
   * When the session next wants {@linkcode tick} called, as a time like
   * `now`; `Infinity` when nothing is due. The earliest armed timer.
   */
  get deadline(): number {
    this.#armTimers();
    const timers = this.#timers;
    let earliest = Infinity;
    for (let timer = 0; timer < TIMER_COUNT; timer++) {
      if (timers[timer] < earliest) earliest = timers[timer];
    }
    return earliest;
  }

  /** Bytes arrived: `bytes`, or its first `length`. The session may keep a view of them until it returns. */
  receive(bytes: Uint8Array, length: number, now: number): void {
    if (this.#phase !== "open") return; // ending or lingering: input is dropped
    this.#lastActive = now;
    if (this.#proxyHeader !== undefined) {
      const consumed = this.#takeProxyHeader(bytes, length, now);
      if (consumed < 0) return;
      this.#conversation.receive(bytes.subarray(consumed, length), length - consumed);
    } else {
      this.#conversation.receive(bytes, length);
    }
    this.#answer(now);
  }

  /** Whether the connection's PROXY header is still awaited (`--proxy-protocol`). */
  get wantsProxyHeader(): boolean {
    return this.#proxyHeader !== undefined && this.#phase === "open";
  }

  /**
   * Bytes that arrived before the transport's handshake while the PROXY
   * header is awaited: with TLS, a balancer sends the header in clear, and
   * the handshake follows it. Returns how many of the bytes the header took;
   * the driver consumes just those from the socket and leaves the rest to
   * the handshake. The client the header names meets the access rules once
   * the handshake is done, so that a refusal can be said over TLS; a
   * malformed header cannot be answered, and ends the session without a
   * reply (counted and logged as usual), to linger and close.
   */
  receiveProxyHeader(bytes: Uint8Array, length: number, now: number): number {
    if (!this.wantsProxyHeader) return 0;
    this.#lastActive = now;
    this.#handshakeFollows = true;
    const consumed = this.#takeProxyHeader(bytes, length, now);
    if (this.#phase !== "open") {
      this.#output.length = 0;
      return length;
    }
    return consumed < 0 ? length : consumed;
  }

  /** The peer closed its side (a read returned EOF). */
  receiveEnd(now: number): void {
    this.#peerClosed = true;
    if (this.#phase === "lingering") return this.#close("peer-closed");
    if (this.#phase === "open") {
      // Answer the requests held back, then close once they are written.
      this.#phase = "ending";
      this.#answer(now);
    }
    this.#closeIfDone();
  }

  /** The driver wrote the first `count` bytes of the output. */
  wrote(count: number, now: number): void {
    if (count <= 0 || this.#phase === "closed") return;
    this.#writeProgress(now);
    if (count < this.#output.length) return this.#output.consume(count);
    this.#output.clear(KEEP_OUTPUT_BYTES);
    // Idleness counts from the last reply the client took, not from when it was sent.
    this.#lastActive = now;
    if (this.#holding) this.#answer(now);
    this.#closeIfDone();
  }

  /** The driver half-closed the socket, as {@linkcode wantsHalfClose} asked. */
  halfClosed(now: number): void {
    if (this.#phase !== "ending") return;
    this.#phase = "lingering";
    this.#lingerUntil = now + LINGER_MS;
  }

  /** The shutdown began: answer what arrives for a short while, then end. */
  drain(now: number): void {
    if (this.#drainStarted < 0) this.#drainStarted = now;
    this.tick(now);
  }

  /** Time passed; fires the timers due at `now` (timeouts, drain, linger), in the table's order. */
  tick(now: number): void {
    this.#armTimers();
    const timers = this.#timers;
    for (let timer = 0; timer < TIMER_COUNT && this.#phase !== "closed"; timer++) {
      if (timers[timer] <= now) this.#expire(timer, now);
    }
  }

  /** The connection failed (a reset, a broken pipe) or the server is closing at once. */
  abort(): void {
    this.#close("aborted");
  }

  /**
   * Sets each timer's deadline from the session's state: the one place that
   * says which timeout applies when.
   */
  #armTimers(): void {
    const timers = this.#timers;
    timers.fill(Infinity);
    if (this.#phase === "closed") return;
    if (this.#phase === "lingering") {
      timers[Timer.linger] = this.#lingerUntil;
      return;
    }
    const { idleTimeoutMs, frameTimeoutMs, writeTimeoutMs } = this.#context.limits;
    const open = this.#phase === "open";
    const writing = this.#output.length > 0 || this.#holding;
    if (open && this.#drainStarted >= 0) {
      // Read for DRAIN_READ_MS at most: a client that never stops sending is
      // answered what had arrived by then, then ended. A quiet one (all it
      // sent has arrived and been answered) ends after the grace.
      let end = this.#drainStarted + DRAIN_READ_MS;
      if (!writing && this.#frameStarted < 0 && this.#handshakeStarted < 0) {
        end = Math.min(end, Math.max(this.#drainStarted, this.#lastActive) + DRAIN_GRACE_MS);
      }
      timers[Timer.drainEnd] = end;
    }
    if (this.#handshakeStarted >= 0) {
      // Nothing flows before the handshake is done: only its own deadline applies.
      timers[Timer.handshake] = after(this.#handshakeStarted, frameTimeoutMs);
    } else if (writing) {
      // A connection being written to waits on its peer, not the other way round.
      timers[Timer.write] = this.#writeDeadline(writeTimeoutMs);
    } else if (open && this.#frameStarted >= 0) {
      timers[Timer.frame] = after(this.#frameStarted, frameTimeoutMs);
    } else if (open) {
      timers[Timer.idle] = after(this.#lastActive, idleTimeoutMs);
    }
  }

  /** Does what an expired timer means. */
  #expire(timer: number, now: number): void {
    switch (timer) {
      case Timer.drainEnd:
        this.#phase = "ending";
        this.#context.frontEnd.writeGoodbye(this.#output);
        return;
      case Timer.handshake:
        return this.#timeout("handshake", now);
      case Timer.write:
        if (this.#peerAcknowledgedMore(now)) return;
        // A probe found nothing new; the timeout itself may not have come yet.
        if (now < after(this.#lastWriteProgress, this.#context.limits.writeTimeoutMs)) return;
        return this.#timeout("write", now);
      case Timer.frame:
        // The drain may have ended the session in this tick: its input is over.
        if (this.#phase === "open") this.#timeout("frame", now);
        return;
      case Timer.idle:
        if (this.#phase === "open") this.#timeout("idle", now);
        return;
      case Timer.linger:
        return this.#close("linger-over");
    }
  }

  /** The peer took reply bytes, or replies started waiting: the write timeout counts from now. */
  #writeProgress(now: number): void {
    this.#lastWriteProgress = now;
    this.#lastAckProbe = now;
    this.#ackedAtProbe = -1;
  }

  /**
   * The write timer: the write timeout after the last progress, and, when
   * the transport can tell what the peer acknowledged, a probe every
   * 1/{@linkcode WRITE_PROBES} of it before that.
   */
  #writeDeadline(writeTimeoutMs: number): number {
    const end = after(this.#lastWriteProgress, writeTimeoutMs);
    if (this.#acked === undefined || end === Infinity) return end;
    return Math.min(end, this.#lastAckProbe + writeTimeoutMs / WRITE_PROBES);
  }

  /**
   * Probes what the peer's TCP has acknowledged; true (and progress) when
   * it grew since the last probe. The first probe after a write only sets
   * the mark: bytes acknowledged before it may be those of the write.
   */
  #peerAcknowledgedMore(now: number): boolean {
    if (this.#acked === undefined) return false;
    this.#lastAckProbe = now;
    const acked = this.#acked();
    if (acked < 0) return false;
    const grew = this.#ackedAtProbe >= 0 && acked > this.#ackedAtProbe;
    if (grew) this.#lastWriteProgress = now;
    this.#ackedAtProbe = acked;
    return grew;
  }

  /** Answers every complete request, as far as the pending-write limit allows. */
  #answer(now: number): void {
    const { book, outcomes, limits } = this.#context;
    const output = this.#output;
    const conversation = this.#conversation;
    // Write progress is measured from when replies start waiting.
    if (output.length === 0) this.#writeProgress(now);
    this.#now = now;
    // What follows a StartTLS must come over TLS: the conversation has none of it.
    if (this.#upgrading) return;
    let answered = 0;
    try {
      while (output.length < limits.maxPendingWrite) {
        const outcome = conversation.answerNext(output, book, this.#gate);
        if (outcome === NO_REQUEST) {
          this.#holding = false;
          if (this.#phase === "open") this.#trackFrame(answered, now);
          return;
        }
        if (outcome >= 0) outcomes[outcome]++;
        answered++;
        if (conversation.finished) return this.#finish();
        if (conversation.upgrade) return this.#awaitUpgrade();
      }
    } catch (error) {
      if (!(error instanceof MalformedInput)) throw error;
      this.#protocolError(error.message, "protocol_error");
      return;
    }
    // The peer is not taking its replies: keep its other requests, read no more.
    // An unfinished request's time starts again once reading resumes.
    this.#holding = true;
    this.#frameStarted = -1;
    conversation.hold();
  }

  /** The client ended the conversation: what it sent after is dropped, and the connection ends. */
  #finish(): void {
    this.#holding = false;
    this.#frameStarted = -1;
    this.#conversation.reset();
    if (this.#phase === "open") this.#phase = "ending";
  }

  /** The conversation asked for TLS: stop reading until the driver has started it. */
  #awaitUpgrade(): void {
    this.#upgrading = true;
    this.#holding = false;
    this.#frameStarted = -1;
  }

  /** Restarts the frame timer whenever a new request is begun and left unfinished. */
  #trackFrame(answered: number, now: number): void {
    if (!this.#conversation.midRequest) this.#frameStarted = -1;
    else if (this.#frameStarted < 0 || answered > 0) this.#frameStarted = now;
  }

  /**
   * Answers PROTOCOL_ERROR and ends the conversation. The log line is
   * summarised per client and cause, as refusals are: a client sending
   * malformed frames on connection after connection gets one line a minute.
   */
  #protocolError(message: string, cause: ProtocolErrorCause): void {
    const { frontEnd, outcomes, log, refusals } = this.#context;
    outcomes[Outcome.protocolError]++;
    const client = this.#client ?? this.#peerHost();
    const count = refusals.note(`${client} ${cause}`, this.#now);
    if (count > 0) {
      log.warn("protocol error", {
        peer: this.#peerLabel(),
        client: this.#proxiedClient(),
        error: message,
        count: count > 1 ? count : undefined,
      });
    }
    frontEnd.writeProtocolError(this.#output, message);
    this.#holding = false;
    this.#frameStarted = -1;
    this.#conversation.reset();
    this.#phase = "ending";
  }

  #timeout(kind: TimeoutKind, now: number): void {
    const { counters, log } = this.#context;
    counters[TIMEOUT_COUNTERS[kind]]++;
    const since = kind === "idle"
      ? this.#lastActive
      : kind === "frame"
      ? this.#frameStarted
      : kind === "handshake"
      ? this.#handshakeStarted
      : this.#lastWriteProgress;
    log.debug(`${kind} timeout`, {
      peer: this.#peerLabel(),
      client: this.#proxiedClient(),
      after_ms: now - since,
    });
    this.#close(`${kind}-timeout`);
  }

  /** An ending session whose peer has closed is done once its replies are written. */
  #closeIfDone(): void {
    if (this.#phase === "ending" && this.#peerClosed && this.#output.length === 0) {
      this.#close("peer-closed");
    }
  }

  /** Takes a connection slot, or counts and logs the refusal at the limit. */
  #admit(): boolean {
    const { counters, outcomes, openConnections, limits, log } = this.#context;
    counters[Counter.connectionsTotal]++;
    if (Atomics.add(openConnections, 0, 1) < limits.maxConnections) {
      counters[Counter.connectionsOpen]++;
      return true;
    }
    Atomics.sub(openConnections, 0, 1);
    counters[Counter.busyRefusals]++;
    outcomes[Outcome.busy]++;
    const count = this.#context.refusals.note(`${this.#peerHost()} busy`, this.#now);
    if (count > 0) {
      log.warn("connection refused: server busy", {
        peer: this.#peerLabel(),
        count: count > 1 ? count : undefined,
      });
    }
    return false;
  }

  #close(reason: CloseReason): void {
    if (this.#phase === "closed") return;
    this.#phase = "closed";
    this.#closeReason = reason;
    this.#output.clear();
    this.#conversation.reset();
    this.#gate = undefined;
    if (this.#limitSlot >= 0) {
      this.#context.clientLimits!.connectionClosed(this.#limitSlot);
      this.#limitSlot = -1;
    }
    if (this.#counted) {
      this.#counted = false;
      Atomics.sub(this.#context.openConnections, 0, 1);
      this.#context.counters[Counter.connectionsOpen]--;
    }
  }

  /**
   * Feeds the PROXY header parser; returns how many of the bytes were the
   * header once it is complete, or -1 while it is not (or was refused).
   */
  #takeProxyHeader(bytes: Uint8Array, length: number, now: number): number {
    let result;
    try {
      result = this.#proxyHeader!.push(bytes.subarray(0, length));
    } catch (error) {
      if (!(error instanceof ProxyHeaderError)) throw error;
      this.#proxyHeader = undefined;
      this.#now = now;
      this.#protocolError(error.message, "bad_proxy_header");
      return -1;
    }
    if (result === null) return -1;
    this.#proxyHeader = undefined;
    this.#frameStarted = -1;
    const { header } = result;
    const client = header.command === "proxy" ? header.source.address : this.#peerHost();
    // Before a handshake the client cannot be told of a refusal; with client
    // certificates the subject is its identity, known once the handshake is done.
    if (this.#handshakeFollows || this.#context.clientCertificates) this.#client = client;
    else this.#identify(client, undefined, now);
    return this.#phase === "open" ? result.consumed : -1;
  }

  /**
   * Applies the access rules to the client, then takes its row in the
   * per-client limits; refuses the connection when either says no.
   */
  #identify(client: string, subject: string | undefined, now: number): void {
    this.#identified = true;
    this.#client = client;
    const { access, clientLimits, frontEnd, outcomes } = this.#context;
    const verdict = access?.clientVerdict(client) ?? "ok";
    if (verdict !== "ok") return this.#forbid(verdict, client, now);
    if (clientLimits === undefined) return;
    const slot = clientLimits.connectionOpened(
      subject !== undefined ? certificateIdentity(subject) : clientIdentity(client),
      now,
    );
    if (slot === OVER_CONNECTION_LIMIT) {
      this.#noteLimitRefusal("client_connections", now);
      frontEnd.writeTooManyConnections(
        this.#output,
        clientLimits.refusalText("client_connections"),
      );
      outcomes[Outcome.rateLimited]++;
      this.#phase = "ending";
    } else {
      this.#limitSlot = slot;
      this.#gate = {
        admit: (found) => this.#admitRequest(found),
        admitEntries: (wanted) => this.#admitEntries(wanted),
      };
    }
  }

  /** Refuses the connection as forbidden, saying why. */
  #forbid(verdict: Exclude<AccessVerdict, "ok">, client: string, now: number): void {
    this.#client = client;
    const { counters, frontEnd, outcomes } = this.#context;
    counters[FORBIDDEN_COUNTERS[verdict]]++;
    outcomes[Outcome.forbidden]++;
    this.#noteRefusal(verdict, now);
    frontEnd.writeForbidden(this.#output, AccessPolicy.replyText(verdict));
    this.#frameStarted = -1;
    this.#phase = "ending";
  }

  /**
   * The per-client limits' verdict on one request (the front end's
   * {@linkcode RequestGate}): one decision under the client's lock covers
   * both the rate and the found limit. Returns the refusal's text, if any.
   */
  #admitRequest(found: boolean): string | undefined {
    const clientLimits = this.#context.clientLimits!;
    const verdict = clientLimits.admit(this.#limitSlot, this.#now, found);
    if (verdict === "ok") return undefined;
    this.#noteLimitRefusal(verdict, this.#now);
    return clientLimits.refusalText(verdict);
  }

  /** The per-client limits' verdict on a request returning `wanted` entries (the gate's). */
  #admitEntries(wanted: number): number | GateRefusal {
    const clientLimits = this.#context.clientLimits!;
    const verdict = clientLimits.admitEntries(this.#limitSlot, this.#now, wanted);
    if (typeof verdict === "number") return verdict;
    this.#noteLimitRefusal(verdict, this.#now);
    return { reason: verdict, text: clientLimits.refusalText(verdict) };
  }

  /** Counts and logs a refusal under a per-client limit. */
  #noteLimitRefusal(reason: LimitRefusal, now: number): void {
    this.#context.counters[REFUSAL_COUNTERS[reason]]++;
    this.#noteRefusal(reason, now);
  }

  /** Logs a refusal at info the first time for this client and reason; repeats are summarised. */
  #noteRefusal(reason: string, now: number): void {
    const client = this.#client ?? this.#peerHost();
    const count = this.#context.refusals.note(`${client} ${reason}`, now);
    // After an interval of repeats, the count includes those not logged.
    if (count > 0) {
      this.#context.log.info("refused", { client, reason, count: count > 1 ? count : undefined });
    }
  }

  /** The client a PROXY header named, when it is not the peer itself: logs name both. */
  #proxiedClient(): string | undefined {
    return this.#client !== undefined && this.#client !== this.#peerHost()
      ? this.#client
      : undefined;
  }

  #peerHost(): string {
    return (this.#peer ??= this.#peerAddress()).hostname;
  }

  #peerLabel(): string {
    const peer = this.#peer ??= this.#peerAddress();
    return formatAddress(peer.hostname, peer.port);
  }
}

/** The deadline `timeoutMs` after `since`; Infinity when the timeout is off (0). */
function after(since: number, timeoutMs: number): number {
  return timeoutMs > 0 ? since + timeoutMs : Infinity;
}
