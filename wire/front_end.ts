/**
 * The seam between the session layer and a wire protocol. A *front end*
 * is what is protocol-specific about serving a connection: decoding
 * requests as their bytes arrive, answering each from the book, and how a
 * refusal (busy, forbidden, rate limited, a protocol error) is said. The
 * session (session/session.ts) holds every rule that is the same whatever the
 * protocol: admission, limits, timeouts, drain, linger, the PROXY header,
 * access. The binary protocol (wire/binary.ts) is one front end; the
 * tests drive a line protocol through the same session to show the seam
 * holds.
 *
 * A front end is a stateless object shared by every connection of a
 * listener; {@linkcode FrontEnd.connect} makes the per-connection state, a
 * {@linkcode Conversation}. Both write into the session's
 * {@linkcode ReplyBuffer}, so a reply is encoded once, in place.
 *
 * ```ts ignore
 * const conversation = frontEnd.connect(counters);
 * conversation.receive(bytes, length);
 * let outcome;
 * while ((outcome = conversation.answerNext(output, book, gate)) !== NO_REQUEST) {
 *   outcomes[outcome]++; // counted by the session, by front end
 * }
 * ```
 *
 * @module
 */

import type { AddressBook } from "../book/addressbook.ts";

/**
 * What became of a request, or of a connection refused before any: the
 * protocol-neutral outcomes the session counts for each front end (the
 * `status` label of `addrbook_replies_total`).
 */
export const Outcome = {
  /** Answered with an entry. */
  found: 0,
  /** A well-formed request for an entry the book does not hold. */
  notFound: 1,
  /** A request the front end could decode but not answer (not an email address). */
  badRequest: 2,
  /** Bytes that break the protocol; the connection ends. */
  protocolError: 3,
  /** Refused at the server's connection limit. */
  busy: 4,
  /** Refused by the access rules. */
  forbidden: 5,
  /** Refused by a per-client limit. */
  rateLimited: 6,
  /** A reply that answers no lookup: LDAP's bind, an extended operation, a refused write. */
  other: 7,
} as const;

/** One of {@linkcode Outcome}'s values. */
export type Outcome = typeof Outcome[keyof typeof Outcome];

/** The outcomes' names as metrics show them, indexed by outcome. */
export const OUTCOME_NAMES: readonly string[] = [
  "FOUND",
  "NOT_FOUND",
  "BAD_REQUEST",
  "PROTOCOL_ERROR",
  "SERVER_BUSY",
  "FORBIDDEN",
  "RATE_LIMITED",
  "OTHER",
];

/** {@linkcode Conversation.answerNext}'s result when no complete request is buffered. */
export const NO_REQUEST = -1;

/**
 * {@linkcode Conversation.answerNext}'s result for a request that takes no
 * reply (LDAP's Abandon and Unbind): nothing is counted.
 */
export const NO_REPLY = -2;

/**
 * Input that breaks the protocol. A conversation throws it from
 * {@linkcode Conversation.answerNext}; the session logs the message,
 * has the front end say it ({@linkcode FrontEnd.writeProtocolError}) and
 * ends the connection. The message must hold no personal data.
 */
export class MalformedInput extends Error {
  override name = "MalformedInput";
}

/**
 * How the session's per-client limits judge a request. A front end asks
 * once per request, after looking the answer up, since the found limit
 * counts only answers that found an entry; the session counts and logs a
 * refusal, and the front end says it in its own words.
 */
export interface RequestGate {
  /** Returns `undefined` when the request may be answered, else the refusal's text. */
  admit(found: boolean): string | undefined;
  /**
   * For a request that would return `wanted` entries (an LDAP search): how
   * many of them may be returned, or the refusal (`reason` says which limit,
   * `text` says it).
   */
  admitEntries(wanted: number): number | GateRefusal;
}

/** Why the per-client limits refused a request. */
export interface GateRefusal {
  /** `rate_limited`: too many queries; `found_limit`: too many entries returned. */
  reason: "rate_limited" | "found_limit";
  /** One sentence naming the limit and its flag, never the query. */
  text: string;
}

const EMPTY = new Uint8Array(0);
/** The size of a buffer's first allocation. */
const FIRST_BYTES = 1024;

/**
 * The bytes a session owes its peer: a growable buffer whose first
 * {@linkcode ReplyBuffer.length} bytes are due. Front ends append to it,
 * or reserve room and write in place.
 */
export class ReplyBuffer {
  /** The buffer; its first {@linkcode length} bytes are due. */
  bytes: Uint8Array = EMPTY;
  /** How many bytes are due. */
  length = 0;

  /** Makes room for `count` more bytes after the due ones; returns {@linkcode bytes}. */
  reserve(count: number): Uint8Array {
    const needed = this.length + count;
    if (needed > this.bytes.length) {
      const grown = new Uint8Array(Math.max(needed, FIRST_BYTES, this.bytes.length * 2));
      grown.set(this.bytes.subarray(0, this.length));
      this.bytes = grown;
    }
    return this.bytes;
  }

  /** Appends `bytes`. */
  append(bytes: Uint8Array): void {
    this.reserve(bytes.length).set(bytes, this.length);
    this.length += bytes.length;
  }

  /** Drops the first `count` due bytes (they were written). */
  consume(count: number): void {
    const rest = this.length - count;
    if (rest > 0) this.bytes.copyWithin(0, count, this.length);
    this.length = Math.max(0, rest);
  }

  /** Drops every due byte, and the buffer itself when it is larger than `keep` bytes. */
  clear(keep = 0): void {
    this.length = 0;
    if (this.bytes.length > keep) this.bytes = EMPTY;
  }
}

/** One connection's protocol state: its request decoder and how it answers. */
export interface Conversation {
  /**
   * Bytes arrived: `bytes`, or its first `length`. The conversation may keep
   * a view of them only until {@linkcode answerNext} returns
   * {@linkcode NO_REQUEST} or {@linkcode hold} is called.
   */
  receive(bytes: Uint8Array, length: number): void;
  /** Whether a request has begun to arrive and is not complete. */
  readonly midRequest: boolean;
  /**
   * Whether the client ended the conversation (LDAP's Unbind): the session
   * answers nothing more and ends the connection.
   */
  readonly finished: boolean;
  /**
   * Whether the request just answered asks the transport to start TLS once
   * its reply is written (LDAP's StartTLS, RFC 4511 §4.14): the session
   * answers and reads nothing more until the driver has swapped the
   * transport and the handshake is done. True from the answer until the
   * next {@linkcode answerNext}; a conversation that never upgrades may
   * leave it out.
   */
  readonly upgrade?: boolean;
  /**
   * Answers the next complete request into `output` and returns its
   * outcome, {@linkcode NO_REPLY} for one that takes no reply, or
   * {@linkcode NO_REQUEST} when none is complete. `gate` is absent when no
   * per-client limit applies.
   *
   * @throws {MalformedInput} when the input breaks the protocol.
   */
  answerNext(output: ReplyBuffer, book: AddressBook, gate: RequestGate | undefined): number;
  /**
   * The peer is not taking its replies: keep the requests not yet answered
   * in the conversation's own memory, since the bytes given to
   * {@linkcode receive} are about to be reused.
   */
  hold(): void;
  /** Forgets everything buffered: the connection takes no more requests. */
  reset(): void;
}

/** A wire protocol, as the session layer sees it. */
export interface FrontEnd {
  /** Its name in metrics (the `front_end` label) and logs. */
  readonly name: string;
  /**
   * Readies a book before any session answers from it (an index it needs):
   * called when a listener starts and on every reload. Optional.
   */
  prepare?(book: AddressBook): void;
  /**
   * Makes the state of one new connection. `counters` is the serving
   * thread's row (session/counters.ts), for a front end's own counts.
   */
  connect(counters: Float64Array): Conversation;
  /** Says that the server is at its connection limit. */
  writeBusy(output: ReplyBuffer): void;
  /** Says that the access rules refuse this client, and why. */
  writeForbidden(output: ReplyBuffer, reason: string): void;
  /** Says that this client has too many connections open. */
  writeTooManyConnections(output: ReplyBuffer, reason: string): void;
  /** Says what broke the protocol, before the connection ends. */
  writeProtocolError(output: ReplyBuffer, message: string): void;
  /** Says, if the protocol can, that the server ends the connection (at shutdown). */
  writeGoodbye(output: ReplyBuffer): void;
}
