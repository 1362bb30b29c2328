/**
 * The binary protocol as a front end (see wire/front_end.ts): Q frames in, R
 * frames out, as PROTOCOL.md describes. Each connection decodes its frames
 * with protocol.ts's incremental {@linkcode FrameDecoder}, and answers each
 * one with a single pass over the query's bytes: the book finds the entry
 * and the reply frame is written straight into the session's output, with
 * no object or string made for a found or missing address.
 *
 * ```ts ignore
 * const session = new Session({ ...context, frontEnd: BINARY_FRONT_END }, now, peer);
 * ```
 *
 * @module
 */

import { type AddressBook, PREFETCH_MAX } from "../book/addressbook.ts";
import { writeAnswer } from "./binary_answer.ts";
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
  /** Whether bytes arrived since the book was last warmed for them. */
  #unwarmed = false;

  receive(bytes: Uint8Array, length: number): void {
    this.#decoder.push(bytes, length);
    this.#unwarmed = true;
  }

  get midRequest(): boolean {
    return this.#decoder.midFrame;
  }

  /** A binary connection ends only by the peer's EOF or the server's rules. */
  readonly finished = false;

  answerNext(output: ReplyBuffer, book: AddressBook, gate: RequestGate | undefined): number {
    const decoder = this.#decoder;
    if (this.#unwarmed) {
      this.#unwarmed = false;
      warmBook(book, decoder);
    }
    try {
      if (!decoder.take()) return NO_REQUEST;
    } catch (error) {
      if (error instanceof ProtocolError) throw new MalformedInput(error.message);
      throw error;
    }
    const start = output.length;
    const status = appendAnswer(
      book,
      decoder.payloadBytes,
      decoder.payloadStart,
      decoder.payloadEnd,
      output,
    );
    if (gate === undefined) return OUTCOME_OF_STATUS[status];
    const refusal = gate.admit(status === STATUS_FOUND);
    if (refusal === undefined) return OUTCOME_OF_STATUS[status];
    output.length = start; // the answer is not sent after all
    output.append(refusalReply(STATUS_RATE_LIMITED, refusal));
    return Outcome.rateLimited;
  }

  hold(): void {
    this.#decoder.detach();
  }

  reset(): void {
    this.#decoder.reset();
  }
}

/** Where the queries of one chunk lie, for {@linkcode warmBook}; one thread answers one at a time. */
const warmStarts = new Int32Array(PREFETCH_MAX);
const warmEnds = new Int32Array(PREFETCH_MAX);

/**
 * Looks at every complete query a read brought before answering the first,
 * so that the book waits for their cache misses together
 * ({@linkcode AddressBook.prefetch}): pipelined queries are answered
 * faster, and one alone costs nothing more.
 */
function warmBook(book: AddressBook, decoder: FrameDecoder): void {
  const count = decoder.peekPayloads(warmStarts, warmEnds);
  if (count > 1) book.prefetch(decoder.chunkBytes, warmStarts, warmEnds, count);
}

/**
 * Appends the reply frame to the query in `query[start..end]` and returns
 * its status: FOUND with the name, NOT_FOUND, or BAD_REQUEST saying what is
 * wrong with the query (wire/binary_answer.ts words and encodes it).
 */
function appendAnswer(
  book: AddressBook,
  query: Uint8Array,
  start: number,
  end: number,
  output: ReplyBuffer,
): number {
  let written: number;
  while ((written = writeAnswer(book, query, start, end, output.bytes, output.length)) < 0) {
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
