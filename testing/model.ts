/**
 * A model of the protocol, for property tests of the server and the
 * session: the replies a byte stream must get, worked out from the
 * protocol's rules alone and the small test book ({@linkcode PEOPLE}), and
 * the pieces random streams are made of.
 *
 * ```ts
 * import { modelReplies } from "./model.ts";
 * import { encodeQuery } from "../protocol.ts";
 *
 * modelReplies(encodeQuery("ADA@example.com")); // [{ status: STATUS_FOUND, text: "Ada Lovelace" }]
 * ```
 *
 * @module
 */

import fc from "fast-check";
import { emailProblem, normalizeEmail } from "../book/email.ts";
import {
  decodeUtf8,
  encodeQuery,
  HEADER_SIZE,
  MAX_QUERY_BYTES,
  STATUS_BAD_REQUEST,
  STATUS_FOUND,
  STATUS_NOT_FOUND,
  STATUS_PROTOCOL_ERROR,
  TYPE_QUERY,
} from "../protocol.ts";
import { PEOPLE } from "./books.ts";
import { concat, frame, header } from "./frames.ts";

/** A reply as the model predicts it: the status, and the name for FOUND. */
export interface ModelReply {
  /** The status code. */
  status: number;
  /** The name, for FOUND only. */
  text?: string;
}

const NAMES_BY_EMAIL = new Map(PEOPLE.map(([email, name]) => [email, name]));

/** What the server must answer to one complete query payload, by the protocol's rules. */
export function modelReply(payload: Uint8Array): ModelReply {
  const text = decodeUtf8(payload);
  if (text === undefined || emailProblem(text) !== undefined) return { status: STATUS_BAD_REQUEST };
  const name = NAMES_BY_EMAIL.get(normalizeEmail(text));
  return name === undefined ? { status: STATUS_NOT_FOUND } : { status: STATUS_FOUND, text: name };
}

/**
 * The replies a complete byte stream must get, in order: a reply per whole
 * query frame, until a frame of another type or an oversize length (a
 * PROTOCOL_ERROR, then nothing) or the end of the stream (an unfinished
 * frame gets nothing).
 */
export function modelReplies(stream: Uint8Array): ModelReply[] {
  const replies: ModelReply[] = [];
  let at = 0;
  while (at < stream.length) {
    if (stream[at] !== TYPE_QUERY) return [...replies, { status: STATUS_PROTOCOL_ERROR }];
    if (stream.length - at < HEADER_SIZE) break;
    const length = new DataView(stream.buffer, stream.byteOffset + at + 1, 4).getUint32(0);
    if (length > MAX_QUERY_BYTES) return [...replies, { status: STATUS_PROTOCOL_ERROR }];
    const end = at + HEADER_SIZE + length;
    if (end > stream.length) break;
    replies.push(modelReply(stream.subarray(at + HEADER_SIZE, end)));
    at = end;
  }
  return replies;
}

const knownQueryPiece = fc.tuple(
  fc.constantFrom(...PEOPLE.map(([email]) => email)),
  fc.boolean(),
  fc.constantFrom("", " ", "\t", " \r\n"),
  fc.constantFrom("", " ", "\n"),
).map(([email, upper, before, after]) =>
  encodeQuery(`${before}${upper ? email.toUpperCase() : email}${after}`)
);

const randomTextQueryPiece = fc.oneof(
  fc.emailAddress(),
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.constantFrom("", " ", "@", "a@", "@b", "a@b@c", "x y@z"),
).map((text) => encodeQuery(text));

const rawPayloadQueryPiece = fc.oneof(
  { arbitrary: fc.uint8Array({ maxLength: 60 }), weight: 10 },
  {
    arbitrary: fc.uint8Array({ minLength: MAX_QUERY_BYTES, maxLength: MAX_QUERY_BYTES }),
    weight: 1,
  },
).map((payload) => frame(TYPE_QUERY, payload));

const wrongTypePiece = fc.tuple(
  fc.integer({ min: 0, max: 255 }).filter((type) => type !== TYPE_QUERY),
  fc.uint8Array({ maxLength: 20 }),
).map(([type, payload]) => frame(type, payload));

const oversizePiece = fc.tuple(
  fc.integer({ min: MAX_QUERY_BYTES + 1, max: 0xffffffff }),
  fc.uint8Array({ maxLength: 20 }),
).map(([length, body]) => concat([header(TYPE_QUERY, length), body]));

const randomBytesPiece = fc.uint8Array({ minLength: 1, maxLength: 40 });

/**
 * One piece of a client's byte stream, for property tests: mostly valid
 * query frames (known, missing and malformed addresses, payloads of any
 * bytes up to the maximum), sometimes a frame of another type, an oversize
 * header or random bytes, so streams get some way before breaking.
 */
export const streamPiece: fc.Arbitrary<Uint8Array> = fc.oneof(
  { arbitrary: knownQueryPiece, weight: 6 },
  { arbitrary: randomTextQueryPiece, weight: 4 },
  { arbitrary: rawPayloadQueryPiece, weight: 2 },
  { arbitrary: wrongTypePiece, weight: 1 },
  { arbitrary: oversizePiece, weight: 1 },
  { arbitrary: randomBytesPiece, weight: 1 },
);
