/**
 * The binary protocol as a front end (see wire/front_end.ts): Q frames in, R
 * frames out, as PROTOCOL.md describes. Each connection decodes its frames
 * with protocol.ts's incremental {@linkcode FrameDecoder}, and answers each
 * one straight into the session's output, with no object or string made
 * for a found or missing address. The complete frames a read brought are
 * looked up together ({@linkcode AddressBook.lookupMany}), so that their
 * waits on memory overlap, and then answered one by one as the session
 * asks, each still counted and admitted on its own.
 *
 * ```ts ignore
 * const session = new Session({ ...context, frontEnd: BINARY_FRONT_END }, now, peer);
 * ```
 *
 * @module
 */

import { type AddressBook, LOOKUP_BATCH_MAX, LookupResults } from "../book/addressbook.ts";
import { writeFoundReply, writeUnfoundReply } from "./binary_answer.ts";
import {
  type Conversation,
  type FrontEnd,
  MalformedInput,
  NO_REQUEST,
  Outcome,
  type ReplyBuffer,
  type RequestGate,
} from "./front_end.ts";
import {
  encodeReply,
  FrameDecoder,
  HEADER_SIZE,
  MAX_QUERY_BYTES,
  ProtocolError,
  type Status,
  STATUS_FORBIDDEN,
  STATUS_FOUND,
  STATUS_PROTOCOL_ERROR,
  STATUS_RATE_LIMITED,
  STATUS_SERVER_BUSY,
  TYPE_QUERY,
} from "../protocol.ts";

/** The reply to a connection over the server's limit, sent before closing it. */
export const BUSY_REPLY: Uint8Array = encodeReply(
  STATUS_SERVER_BUSY,
  "The server is at its connection limit; try again later.",
);

/** The outcome each reply status counts as, indexed by status. */
const OUTCOME_OF_STATUS: readonly Outcome[] = [
  Outcome.found,
  Outcome.notFound,
  Outcome.badRequest,
  Outcome.protocolError,
  Outcome.busy,
  Outcome.forbidden,
  Outcome.rateLimited,
];

/** The outcome a reply of `status` counts as. */
export function statusOutcome(status: Status): Outcome {
  return OUTCOME_OF_STATUS[status];
}

/** Encoded refusals by text: their texts are few, and a refused flood should not allocate. */
const refusalReplies = new Map<string, Uint8Array>();

function refusalReply(status: Status, text: string): Uint8Array {
  const key = `${status}${text}`;
  let reply = refusalReplies.get(key);
  if (reply === undefined) refusalReplies.set(key, reply = encodeReply(status, text));
  return reply;
}

/** A connection's Q frames, decoded as they arrive and answered from the book. */
class BinaryConversation implements Conversation {
  readonly #decoder = new FrameDecoder({ type: TYPE_QUERY, maxPayload: MAX_QUERY_BYTES });
  /** Whether bytes arrived since their complete frames were last looked up together. */
  #unbatched = false;

  receive(bytes: Uint8Array, length: number): void {
    this.#decoder.push(bytes, length);
    this.#unbatched = true;
  }

  get midRequest(): boolean {
    return this.#decoder.midFrame;
  }

  /** A binary connection ends only by the peer's EOF or the server's rules. */
  readonly finished = false;

  answerNext(output: ReplyBuffer, book: AddressBook, gate: RequestGate | undefined): number {
    const decoder = this.#decoder;
    if (this.#unbatched) {
      this.#unbatched = false;
      lookUpWaiting(this, book, decoder);
    }
    try {
      if (!decoder.take()) return NO_REQUEST;
    } catch (error) {
      forgetBatch(this);
      if (error instanceof ProtocolError) throw new MalformedInput(error.message);
      throw error;
    }
    const query = decoder.payloadBytes;
    const start = decoder.payloadStart;
    const end = decoder.payloadEnd;
    const before = output.length;
    const status = appendAnswer(this, book, query, start, end, output);
    if (gate === undefined) return OUTCOME_OF_STATUS[status];
    const refusal = gate.admit(status === STATUS_FOUND);
    if (refusal === undefined) return OUTCOME_OF_STATUS[status];
    output.length = before; // the answer is not sent after all
    output.append(refusalReply(STATUS_RATE_LIMITED, refusal));
    return Outcome.rateLimited;
  }

  hold(): void {
    forgetBatch(this); // its frames are copied out of the chunk the batch names
    this.#decoder.detach();
  }

  reset(): void {
    forgetBatch(this);
    this.#decoder.reset();
  }
}

const EMPTY_BYTES: Uint8Array = new Uint8Array(0);

/**
 * The last batch of queries looked up together, and whose it is: one thread
 * answers one connection at a time, so one batch is enough, and a
 * connection whose batch another's replaced looks its queries up one by one.
 * It is forgotten once used up or abandoned, so that it keeps no closed
 * connection, read buffer or reloaded book alive.
 */
const batch = {
  owner: undefined as BinaryConversation | undefined,
  book: undefined as AddressBook | undefined,
  bytes: EMPTY_BYTES,
  starts: new Int32Array(LOOKUP_BATCH_MAX),
  ends: new Int32Array(LOOKUP_BATCH_MAX),
  results: new LookupResults(),
  count: 0,
  /** The next query of the batch to be answered. */
  next: 0,
};

/**
 * Looks up every complete query a read brought before answering the first
 * ({@linkcode AddressBook.lookupMany}). One query alone is left to
 * {@linkcode AddressBook.lookup}: a batch would gain it nothing.
 */
function lookUpWaiting(owner: BinaryConversation, book: AddressBook, decoder: FrameDecoder): void {
  const count = decoder.peekPayloads(batch.starts, batch.ends);
  if (count < 2) return forgetBatch(owner);
  book.lookupMany(decoder.chunkBytes, batch.starts, batch.ends, count, batch.results);
  batch.owner = owner;
  batch.book = book;
  batch.bytes = decoder.chunkBytes;
  batch.count = count;
  batch.next = 0;
}

/** {@linkcode takeFromBatch}'s word for a query its batch does not hold. */
const NOT_IN_BATCH = -1;

/**
 * Where the batch holds the lookup of the query at `query[start..]`, if it
 * is the batch's next; else {@linkcode NOT_IN_BATCH}, and the caller looks it up. The results stay
 * readable after the batch is forgotten.
 */
function takeFromBatch(
  owner: BinaryConversation,
  book: AddressBook,
  query: Uint8Array,
  start: number,
): number {
  if (batch.owner !== owner || batch.book !== book || batch.bytes !== query) return NOT_IN_BATCH;
  const next = batch.next;
  if (next >= batch.count || batch.starts[next] !== start) return NOT_IN_BATCH;
  batch.next = next + 1;
  if (batch.next === batch.count) forgetBatch(owner);
  return next;
}

/** Lets the batch go, if it is `owner`'s. */
function forgetBatch(owner: BinaryConversation): void {
  if (batch.owner !== owner) return;
  batch.owner = undefined;
  batch.book = undefined;
  batch.bytes = EMPTY_BYTES;
  batch.count = 0;
}

/**
 * Appends the reply frame to the query in `query[start..end]` and returns
 * its status: FOUND with the name, NOT_FOUND, or BAD_REQUEST saying what is
 * wrong with the query (wire/binary_answer.ts words and encodes it). The
 * query's lookup is taken from the batch when it is the batch's next, else
 * made now.
 */
function appendAnswer(
  owner: BinaryConversation,
  book: AddressBook,
  query: Uint8Array,
  start: number,
  end: number,
  output: ReplyBuffer,
): number {
  let entry: number;
  let from = 0;
  let to = 0;
  const at = takeFromBatch(owner, book, query, start);
  if (at !== NOT_IN_BATCH) {
    const { entries, nameStarts, nameEnds } = batch.results;
    entry = entries[at];
    from = nameStarts[at];
    to = nameEnds[at];
  } else {
    entry = book.lookup(query, start, end);
    if (entry >= 0) {
      from = book.nameStart(entry);
      to = book.nameEnd(entry);
    }
  }
  const text = book.text;
  let written: number;
  while (
    (written = entry >= 0
      ? writeFoundReply(text, from, to, output.bytes, output.length)
      : writeUnfoundReply(entry, query, start, end, output.bytes, output.length)) < 0
  ) {
    output.reserve(output.bytes.length + 1);
  }
  const status = output.bytes[output.length + HEADER_SIZE];
  output.length = written;
  return status;
}

/** The binary protocol of PROTOCOL.md. */
export const BINARY_FRONT_END: FrontEnd = {
  name: "binary",
  connect: () => new BinaryConversation(),
  writeBusy(output) {
    output.append(BUSY_REPLY);
  },
  writeForbidden(output, reason) {
    output.append(refusalReply(STATUS_FORBIDDEN, reason));
  },
  writeTooManyConnections(output, reason) {
    output.append(refusalReply(STATUS_RATE_LIMITED, reason));
  },
  writeProtocolError(output, message) {
    output.append(encodeReply(STATUS_PROTOCOL_ERROR, message));
  },
  writeGoodbye() {
    // The protocol has no word for it: the half-close says it.
  },
};
