/**
 * The in-memory address book: a compact hash table from normalised email to
 * owner's name, built once at load and then only read.
 *
 * It is laid out for the server's hot path. Every reply frame a lookup can
 * give is encoded at build time, so answering a query is a hash, a byte
 * comparison and a copy, with no string made. The table lives in a few flat
 * `SharedArrayBuffer`s rather than millions of small objects, so a book of a
 * million entries stays small and can be handed to worker threads without a
 * copy.
 *
 * ```ts
 * import { AddressBookBuilder } from "./addressbook.ts";
 *
 * const builder = new AddressBookBuilder();
 * builder.add("ada@example.com", "Ada Lovelace");
 * const book = builder.build();
 * const reply = book.answer(new TextEncoder().encode(" ADA@example.com"));
 * // reply is the encoded frame: R, length, FOUND, "Ada Lovelace"
 * ```
 *
 * @module
 */

import { emailProblem, normalizeEmail } from "./email.ts";
import {
  decodeUtf8,
  encodeReply,
  HEADER_SIZE,
  STATUS_BAD_REQUEST,
  STATUS_FOUND,
  STATUS_NOT_FOUND,
  TYPE_REPLY,
  writeHeader,
} from "./protocol.ts";

/** Bytes of a FOUND reply before the name: the frame header and the status byte. */
const REPLY_PREFIX = HEADER_SIZE + 1;

const encoder = new TextEncoder();

/** The text of every NOT_FOUND reply. It does not echo the address back. */
export const NOT_FOUND_TEXT = "No entry for that address.";
const NOT_FOUND_REPLY = encodeReply(STATUS_NOT_FOUND, NOT_FOUND_TEXT);

/** The flat buffers of a built book, which can be posted to a worker as they are. */
export interface SharedAddressBook {
  /** How many entries the book holds. */
  size: number;
  /** Open-addressing slots: entry index + 1, or 0 for an empty slot. */
  slots: Int32Array;
  /** Hash of each entry's key. */
  hashes: Uint32Array;
  /** Start of each entry's key in `keys`; entry i's key ends where entry i+1's starts. */
  keyStarts: Uint32Array;
  /** All keys, normalised, in UTF-8, back to back. */
  keys: Uint8Array;
  /** Start and end of each entry's reply frame in `replies`. */
  replyBounds: Uint32Array;
  /** All FOUND reply frames, back to back. */
  replies: Uint8Array;
}

/** FNV-1a over bytes, 32-bit. */
function hashBytes(bytes: Uint8Array, start: number, end: number): number {
  let hash = 0x811c9dc5;
  for (let i = start; i < end; i++) {
    hash = Math.imul(hash ^ bytes[i], 0x01000193);
  }
  return hash >>> 0;
}

/**
 * A built, read-only address book. Build one with
 * {@linkcode AddressBookBuilder}, or rebuild one in a worker with
 * {@linkcode AddressBook.fromShared}.
 */
export class AddressBook {
  readonly #data: SharedAddressBook;
  readonly #mask: number;
  /** Scratch space for lower-casing a query; a query is at most a few KiB. */
  #scratch = new Uint8Array(1024);

  private constructor(data: SharedAddressBook) {
    this.#data = data;
    this.#mask = data.slots.length - 1;
  }

  /** Wraps buffers made by {@linkcode AddressBook.toShared}, in this thread or another. */
  static fromShared(data: SharedAddressBook): AddressBook {
    return new AddressBook(data);
  }

  /** How many entries the book holds. */
  get size(): number {
    return this.#data.size;
  }

  /** The book's buffers, to post to a worker; they are shared, not copied. */
  toShared(): SharedAddressBook {
    return this.#data;
  }

  /** Finds a normalised key given as UTF-8 bytes; returns its entry index or -1. */
  find(key: Uint8Array, start = 0, end = key.length): number {
    const { slots, hashes, keyStarts, keys } = this.#data;
    const hash = hashBytes(key, start, end);
    const length = end - start;
    for (let slot = hash & this.#mask;; slot = (slot + 1) & this.#mask) {
      const entry = slots[slot] - 1;
      if (entry < 0) return -1;
      if (hashes[entry] !== hash) continue;
      const keyStart = keyStarts[entry];
      if (keyStarts[entry + 1] - keyStart !== length) continue;
      let same = true;
      for (let i = 0; i < length; i++) {
        if (keys[keyStart + i] !== key[start + i]) {
          same = false;
          break;
        }
      }
      if (same) return entry;
    }
  }

  /** The owner's name for an email, or `undefined`; the email is normalised first. */
  get(email: string): string | undefined {
    const entry = this.find(encoder.encode(normalizeEmail(email)));
    if (entry < 0) return undefined;
    const { replyBounds, replies } = this.#data;
    const bytes = replies.subarray(
      replyBounds[2 * entry] + REPLY_PREFIX,
      replyBounds[2 * entry + 1],
    );
    return new TextDecoder().decode(bytes);
  }

  /** The encoded FOUND reply frame of an entry, as a view into the book. */
  reply(entry: number): Uint8Array {
    const { replyBounds, replies } = this.#data;
    return replies.subarray(replyBounds[2 * entry], replyBounds[2 * entry + 1]);
  }

  /**
   * Answers the payload of a query frame with the encoded reply frame:
   * FOUND with the name, NOT_FOUND, or BAD_REQUEST saying what is wrong
   * with the query. The result may be a view into the book: copy it, do not
   * change it.
   */
  answer(payload: Uint8Array): Uint8Array {
    const entry = this.#findAscii(payload);
    if (entry >= 0) return this.reply(entry);
    if (entry === ASCII_MISS) return NOT_FOUND_REPLY;
    return this.#answerSlowly(payload);
  }

  /**
   * The hot path, for a query in plain ASCII: trims, checks the address rule,
   * lower-cases and looks up in one pass over the bytes, making no string.
   * Returns the entry, ASCII_MISS, or NOT_ASCII_OR_INVALID to hand the query
   * to the general path (which also words the BAD_REQUEST message).
   */
  #findAscii(payload: Uint8Array): number {
    let start = 0;
    let end = payload.length;
    while (start < end && isAsciiSpace(payload[start])) start++;
    while (end > start && isAsciiSpace(payload[end - 1])) end--;
    const length = end - start;
    if (length === 0 || length > 254) return NOT_ASCII_OR_INVALID;
    if (this.#scratch.length < length) this.#scratch = new Uint8Array(length);
    const scratch = this.#scratch;
    let at = -1;
    for (let i = 0; i < length; i++) {
      let byte = payload[start + i];
      // Non-ASCII, whitespace, controls and DEL all go to the general path.
      if (byte <= 0x20 || byte >= 0x7f) return NOT_ASCII_OR_INVALID;
      if (byte === 0x40) {
        if (at >= 0) return NOT_ASCII_OR_INVALID;
        at = i;
      } else if (byte >= 0x41 && byte <= 0x5a) {
        byte += 0x20;
      }
      scratch[i] = byte;
    }
    if (at <= 0 || at === length - 1) return NOT_ASCII_OR_INVALID;
    const entry = this.find(scratch, 0, length);
    return entry >= 0 ? entry : ASCII_MISS;
  }

  #answerSlowly(payload: Uint8Array): Uint8Array {
    const text = decodeUtf8(payload);
    if (text === undefined) {
      return encodeReply(STATUS_BAD_REQUEST, "The query is not valid UTF-8.");
    }
    const problem = emailProblem(text);
    if (problem !== undefined) {
      return encodeReply(STATUS_BAD_REQUEST, `The query is not an email address: ${problem}.`);
    }
    const entry = this.find(encoder.encode(normalizeEmail(text)));
    return entry >= 0 ? this.reply(entry) : NOT_FOUND_REPLY;
  }
}

const ASCII_MISS = -1;
const NOT_ASCII_OR_INVALID = -2;

/** The ASCII characters that `String.prototype.trim` removes: tab, LF, VT, FF, CR, space. */
function isAsciiSpace(byte: number): boolean {
  return byte === 0x20 || (byte >= 0x09 && byte <= 0x0d);
}

/**
 * Builds an {@linkcode AddressBook} one entry at a time. Keys must already be
 * valid and normalised (the loader checks them); the builder finds
 * duplicates, so the loader can report them with both places.
 */
export class AddressBookBuilder {
  #size = 0;
  #slots = new Int32Array(1024);
  #hashes = new Uint32Array(512);
  #keyStarts = new Uint32Array(513);
  #keys = new Uint8Array(16384);
  #replyBounds = new Uint32Array(1024);
  #replies = new Uint8Array(16384);
  #repliesLength = 0;

  /** How many entries have been added. */
  get size(): number {
    return this.#size;
  }

  /**
   * Adds an entry. Returns -1 when it was added, or the index of the entry
   * that already has this key (and then adds nothing).
   */
  add(normalizedEmail: string, name: string): number {
    const keyStart = this.#keyStarts[this.#size];
    this.#keys = ensureCapacity(this.#keys, keyStart + normalizedEmail.length * 3);
    const { written } = encoder.encodeInto(normalizedEmail, this.#keys.subarray(keyStart));
    const existing = this.#find(keyStart, keyStart + written);
    if (existing >= 0) return existing;

    if ((this.#size + 1) * 2 > this.#slots.length) this.#growTable();
    const entry = this.#size++;
    this.#hashes = ensureCapacity(this.#hashes, this.#size);
    this.#keyStarts = ensureCapacity(this.#keyStarts, this.#size + 1);
    this.#replyBounds = ensureCapacity(this.#replyBounds, 2 * this.#size);
    this.#hashes[entry] = hashBytes(this.#keys, keyStart, keyStart + written);
    this.#keyStarts[entry + 1] = keyStart + written;
    this.#insertSlot(entry);
    this.setName(entry, name);
    return -1;
  }

  /** Replaces the name of an entry already added (for "last one wins" loading). */
  setName(entry: number, name: string): void {
    // Encode the reply frame straight into the buffer: a small array per entry is slow.
    const start = this.#repliesLength;
    this.#replies = ensureCapacity(this.#replies, start + REPLY_PREFIX + name.length * 3);
    const { written } = encoder.encodeInto(name, this.#replies.subarray(start + REPLY_PREFIX));
    writeHeader(this.#replies, start, TYPE_REPLY, 1 + written);
    this.#replies[start + HEADER_SIZE] = STATUS_FOUND;
    this.#repliesLength = start + REPLY_PREFIX + written;
    this.#replyBounds[2 * entry] = start;
    this.#replyBounds[2 * entry + 1] = this.#repliesLength;
  }

  /** Copies the entries into shared buffers of exactly the right size. */
  build(): AddressBook {
    const size = this.#size;
    let slotCount = 16;
    while (slotCount < size * 2) slotCount *= 2;
    const data: SharedAddressBook = {
      size,
      slots: new Int32Array(new SharedArrayBuffer(slotCount * 4)),
      hashes: shareCopy(this.#hashes.subarray(0, size), Uint32Array),
      keyStarts: shareCopy(this.#keyStarts.subarray(0, size + 1), Uint32Array),
      keys: shareCopy(this.#keys.subarray(0, this.#keyStarts[size]), Uint8Array),
      replyBounds: new Uint32Array(new SharedArrayBuffer(size * 8)),
      replies: new Uint8Array(0),
    };
    // Lay the replies out in entry order, dropping any a later setName replaced.
    let repliesLength = 0;
    for (let entry = 0; entry < size; entry++) {
      repliesLength += this.#replyBounds[2 * entry + 1] - this.#replyBounds[2 * entry];
    }
    data.replies = new Uint8Array(new SharedArrayBuffer(repliesLength));
    let offset = 0;
    for (let entry = 0; entry < size; entry++) {
      const frame = this.#replies.subarray(
        this.#replyBounds[2 * entry],
        this.#replyBounds[2 * entry + 1],
      );
      data.replies.set(frame, offset);
      data.replyBounds[2 * entry] = offset;
      offset += frame.length;
      data.replyBounds[2 * entry + 1] = offset;
    }
    const mask = slotCount - 1;
    for (let entry = 0; entry < size; entry++) {
      let slot = data.hashes[entry] & mask;
      while (data.slots[slot] !== 0) slot = (slot + 1) & mask;
      data.slots[slot] = entry + 1;
    }
    return AddressBook.fromShared(data);
  }

  #find(start: number, end: number): number {
    const keys = this.#keys;
    const hash = hashBytes(keys, start, end);
    const mask = this.#slots.length - 1;
    for (let slot = hash & mask;; slot = (slot + 1) & mask) {
      const entry = this.#slots[slot] - 1;
      if (entry < 0) return -1;
      if (this.#hashes[entry] !== hash) continue;
      const entryStart = this.#keyStarts[entry];
      if (this.#keyStarts[entry + 1] - entryStart !== end - start) continue;
      let same = true;
      for (let i = 0; i < end - start; i++) {
        if (keys[entryStart + i] !== keys[start + i]) {
          same = false;
          break;
        }
      }
      if (same) return entry;
    }
  }

  #insertSlot(entry: number): void {
    const mask = this.#slots.length - 1;
    let slot = this.#hashes[entry] & mask;
    while (this.#slots[slot] !== 0) slot = (slot + 1) & mask;
    this.#slots[slot] = entry + 1;
  }

  #growTable(): void {
    this.#slots = new Int32Array(this.#slots.length * 2);
    for (let entry = 0; entry < this.#size; entry++) this.#insertSlot(entry);
  }
}

type TypedArray = Uint8Array | Uint32Array | Int32Array;

/** Returns `array`, or a copy twice as large (or larger) when it is shorter than `length`. */
function ensureCapacity<T extends TypedArray>(array: T, length: number): T {
  if (array.length >= length) return array;
  const Constructor = array.constructor as new (length: number) => T;
  const grown = new Constructor(Math.max(length, array.length * 2));
  grown.set(array);
  return grown;
}

function shareCopy<T extends Uint8Array | Uint32Array>(
  source: T,
  Constructor: new (buffer: SharedArrayBuffer) => T,
): T {
  const copy = new Constructor(new SharedArrayBuffer(source.byteLength));
  copy.set(source);
  return copy;
}
