/**
 * The binary protocol's answer to a query: the book's lookup
 * (`book/addressbook.ts`) turned into an encoded R (reply) frame. The book
 * gives an entry, or says the address is missing or invalid; the wording
 * of NOT_FOUND and BAD_REQUEST belongs to this protocol, and lives here.
 *
 * {@linkcode writeFoundReply} and {@linkcode writeUnfoundReply} are the
 * server's hot path: for a query the front end looked up already (a read's
 * queries are looked up together) they write the frame into the caller's
 * buffer and make no object for a found or missing address (the frame
 * header and status byte, then the name copied from the book's `text`; the
 * NOT_FOUND frame is encoded once). {@linkcode writeAnswer} looks the query
 * up and does the same; {@linkcode answerQuery} gives the frame as an
 * array, for tests and simple callers.
 *
 * ```ts
 * import { AddressBookBuilder } from "../book/addressbook.ts";
 * import { answerQuery } from "./binary_answer.ts";
 *
 * const builder = new AddressBookBuilder();
 * builder.add("ada@example.com", "Ada Lovelace");
 * const book = builder.build();
 * answerQuery(book, new TextEncoder().encode(" ADA@example.com"));
 * // the encoded frame: R, length, FOUND, "Ada Lovelace"
 * ```
 *
 * @module
 */

import { type AddressBook, NOT_FOUND } from "../book/addressbook.ts";
import { emailProblem } from "../book/email.ts";
import {
  encodeReply,
  encodeReplyBytes,
  HEADER_SIZE,
  STATUS_BAD_REQUEST,
  STATUS_FOUND,
  STATUS_NOT_FOUND,
  TYPE_REPLY,
  writeHeader,
} from "../protocol.ts";
import { decodeUtf8 } from "../common/utf8.ts";

/** The text of every NOT_FOUND reply. It does not echo the address back. */
export const NOT_FOUND_TEXT = "No entry for that address.";
const NOT_FOUND_REPLY = encodeReply(STATUS_NOT_FOUND, NOT_FOUND_TEXT);

/** The BAD_REQUEST text for a query whose bytes are not UTF-8. */
export const NOT_UTF8_TEXT = "The query is not valid UTF-8.";

/** Bytes of a FOUND reply before the name: the frame header and the status byte. */
const REPLY_PREFIX = HEADER_SIZE + 1;

/**
 * The reply frame for the query payload `query`: FOUND with the name,
 * NOT_FOUND, or BAD_REQUEST saying what is wrong with the query. The
 * result may be shared: copy it, do not change it.
 */
export function answerQuery(book: AddressBook, query: Uint8Array): Uint8Array {
  const entry = book.lookup(query, 0, query.length);
  if (entry >= 0) {
    return encodeReplyBytes(
      STATUS_FOUND,
      book.text.subarray(book.nameStart(entry), book.nameEnd(entry)),
    );
  }
  return entry === NOT_FOUND ? NOT_FOUND_REPLY : badRequestReply(query);
}

/**
 * Writes the reply frame for the query in `query[start, end)` into `out`
 * at `offset`, as {@linkcode answerQuery} would give it, and returns the
 * offset after it, or -1 when `out` has no room (grow it and call again).
 * For a found or missing address this makes no object at all.
 */
export function writeAnswer(
  book: AddressBook,
  query: Uint8Array,
  start: number,
  end: number,
  out: Uint8Array,
  offset: number,
): number {
  const entry = book.lookup(query, start, end);
  return entry >= 0
    ? writeFoundReply(book.text, book.nameStart(entry), book.nameEnd(entry), out, offset)
    : writeUnfoundReply(entry, query, start, end, out, offset);
}

/**
 * Writes the FOUND reply frame with the name `text[from, to)` into `out` at
 * `offset`; returns the offset after it, or -1 when `out` has no room. For
 * a query the caller looked up already, as the front end does a read's
 * queries together ({@linkcode AddressBook.lookupMany}).
 */
export function writeFoundReply(
  text: Uint8Array,
  from: number,
  to: number,
  out: Uint8Array,
  offset: number,
): number {
  if (offset + REPLY_PREFIX + to - from > out.length) return -1;
  writeHeader(out, offset, TYPE_REPLY, 1 + to - from);
  out[offset + HEADER_SIZE] = STATUS_FOUND;
  offset += REPLY_PREFIX;
  // A byte loop: names are short, and out.set would need a view of them.
  for (let i = from; i < to; i++) out[offset++] = text[i];
  return offset;
}

/**
 * Writes the reply frame to the query `query[start, end)`, which the book
 * did not find (`result` is {@linkcode NOT_FOUND} or `INVALID_QUERY`), into
 * `out` at `offset`: NOT_FOUND, or BAD_REQUEST saying what is wrong with
 * it. Returns the offset after it, or -1 when `out` has no room.
 */
export function writeUnfoundReply(
  result: number,
  query: Uint8Array,
  start: number,
  end: number,
  out: Uint8Array,
  offset: number,
): number {
  const frame = result === NOT_FOUND
    ? NOT_FOUND_REPLY
    : badRequestReply(query.subarray(start, end));
  if (offset + frame.length > out.length) return -1;
  for (let i = 0; i < frame.length; i++) out[offset++] = frame[i];
  return offset;
}

/** The BAD_REQUEST frame for a query the book found invalid, saying why. */
function badRequestReply(query: Uint8Array): Uint8Array {
  const text = decodeUtf8(query);
  if (text === undefined) return encodeReply(STATUS_BAD_REQUEST, NOT_UTF8_TEXT);
  return encodeReply(
    STATUS_BAD_REQUEST,
    `The query is not an email address: ${emailProblem(text)}.`,
  );
}
