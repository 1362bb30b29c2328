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
  /**
   * Open-addressing slots, two numbers each: entry index + 1 (0 for an empty
   * slot), then that entry's key hash. Keeping the hash beside the index
   * means a probe that misses touches one cache line, not two.
   */
  slots: Uint32Array;
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
    this.#mask = (data.slots.length >> 1) - 1;
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
    const { slots, keyStarts, keys } = this.#data;
    const hash = hashBytes(key, start, end);
    const length = end - start;
    for (let slot = hash & this.#mask;; slot = (slot + 1) & this.#mask) {
      const entry = slots[2 * slot] - 1;
      if (entry < 0) return -1;
      if (slots[2 * slot + 1] !== hash) continue;
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
    const entry = this.#findAscii(payload, 0, payload.length);
    if (entry >= 0) return this.reply(entry);
    if (entry === ASCII_MISS) return NOT_FOUND_REPLY;
    return this.#answerSlowly(payload);
  }

  /**
   * Writes the reply frame for the query in `query[start..end]` into `out`
   * at `offset`, as {@linkcode answer} would give it, and returns the offset
   * after it, or -1 when `out` has no room (grow it and call again). For a
   * found or missing address this makes no object at all, which is what the
   * server's hot path wants.
   */
  writeAnswer(
    query: Uint8Array,
    start: number,
    end: number,
    out: Uint8Array,
    offset: number,
  ): number {
    const entry = this.#findAscii(query, start, end);
    let frame = NOT_FOUND_REPLY;
    let from = 0;
    let to = frame.length;
    if (entry >= 0) {
      frame = this.#data.replies;
      from = this.#data.replyBounds[2 * entry];
      to = this.#data.replyBounds[2 * entry + 1];
    } else if (entry !== ASCII_MISS) {
      frame = this.#answerSlowly(query.subarray(start, end));
      to = frame.length;
    }
    if (offset + to - from > out.length) return -1;
    // A byte loop: replies are short, and out.set would need a view of them.
    for (let i = from; i < to; i++) out[offset++] = frame[i];
    return offset;
  }

  /**
   * The hot path, for a query in plain ASCII: trims, checks the address rule,
   * lower-cases and looks up in one pass over the bytes, making no string.
   * Returns the entry, ASCII_MISS, or NOT_ASCII_OR_INVALID to hand the query
   * to the general path (which also words the BAD_REQUEST message).
   */
  #findAscii(payload: Uint8Array, start: number, end: number): number {
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
  /**
   * Open-addressing table of pairs: entry index + 1 (0 for an empty slot),
   * then that entry's hash, side by side so a probe touches one cache line.
   */
  #table = new Uint32Array(2 * BUILDER_INITIAL_SLOTS);
  #hashes = new Uint32Array(BUILDER_INITIAL_ENTRIES);
  #keyStarts = new Uint32Array(BUILDER_INITIAL_ENTRIES + 1);
  #keys = new Uint8Array(BUILDER_INITIAL_BYTES);
  #replyBounds = new Uint32Array(2 * BUILDER_INITIAL_ENTRIES);
  #replies = new Uint8Array(BUILDER_INITIAL_BYTES);
  #repliesLength = 0;
  /** Whether setName has replaced a reply, so `#replies` is no longer in entry order. */
  #replaced = false;

  /** How many entries have been added. */
  get size(): number {
    return this.#size;
  }

  /**
   * Adds an entry. Returns -1 when it was added, or the index of the entry
   * that already has this key (and then adds nothing).
   */
  add(normalizedEmail: string, name: string): number {
    // A million adds must take well under a second, so this writes UTF-8 by
    // hand (encodeInto needs a subarray per call) and probes the table once.
    const entry = this.#size;
    const keyStart = this.#keyStarts[entry];
    const maxEnd = keyStart + normalizedEmail.length * MAX_UTF8_PER_UNIT;
    if (maxEnd > this.#keys.length) this.#keys = grown(this.#keys, maxEnd);
    const keyEnd = writeUtf8(normalizedEmail, this.#keys, keyStart);
    const hash = hashBytes(this.#keys, keyStart, keyEnd);
    if ((entry + 1) * 4 > this.#table.length) this.#growTable();
    const found = this.#probe(hash, keyStart, keyEnd);
    if (found >= 0) return found;

    if (entry === this.#hashes.length) this.#growEntries();
    const slot = -1 - found;
    this.#table[2 * slot] = entry + 1;
    this.#table[2 * slot + 1] = hash;
    this.#hashes[entry] = hash;
    this.#keyStarts[entry + 1] = keyEnd;
    this.#size = entry + 1;
    this.#writeReply(entry, name);
    return -1;
  }

  /** Replaces the name of an entry already added (for "last one wins" loading). */
  setName(entry: number, name: string): void {
    this.#replaced = true;
    this.#writeReply(entry, name);
  }

  /** Copies the entries into shared buffers of exactly the right size. */
  build(): AddressBook {
    const size = this.#size;
    let slotCount = 16;
    while (slotCount < size * 2) slotCount *= 2;
    const data: SharedAddressBook = {
      size,
      slots: new Uint32Array(new SharedArrayBuffer(slotCount * 8)),
      keyStarts: shareCopy(this.#keyStarts.subarray(0, size + 1), Uint32Array),
      keys: shareCopy(this.#keys.subarray(0, this.#keyStarts[size]), Uint8Array),
      replyBounds: new Uint32Array(0),
      replies: new Uint8Array(0),
    };
    if (this.#replaced) {
      this.#copyRepliesInOrder(data);
    } else {
      // Every reply was written once, in entry order: the buffers are already laid out.
      data.replyBounds = shareCopy(this.#replyBounds.subarray(0, 2 * size), Uint32Array);
      data.replies = shareCopy(this.#replies.subarray(0, this.#repliesLength), Uint8Array);
    }
    if (this.#table.length === 2 * slotCount) {
      // The builder's table has the same layout and size: take it as it is.
      data.slots.set(this.#table);
    } else {
      const { slots } = data;
      const hashes = this.#hashes;
      const mask = slotCount - 1;
      for (let entry = 0; entry < size; entry++) {
        const hash = hashes[entry];
        let slot = hash & mask;
        while (slots[2 * slot] !== 0) slot = (slot + 1) & mask;
        slots[2 * slot] = entry + 1;
        slots[2 * slot + 1] = hash;
      }
    }
    return AddressBook.fromShared(data);
  }

  /** Lays the replies out in entry order, dropping any a later setName replaced. */
  #copyRepliesInOrder(data: SharedAddressBook): void {
    const size = this.#size;
    const bounds = this.#replyBounds;
    const from = this.#replies;
    let length = 0;
    for (let entry = 0; entry < size; entry++) {
      length += bounds[2 * entry + 1] - bounds[2 * entry];
    }
    const replies = new Uint8Array(new SharedArrayBuffer(length));
    const replyBounds = new Uint32Array(new SharedArrayBuffer(size * 8));
    let offset = 0;
    for (let entry = 0; entry < size; entry++) {
      const start = bounds[2 * entry];
      const end = bounds[2 * entry + 1];
      replies.set(from.subarray(start, end), offset);
      replyBounds[2 * entry] = offset;
      offset += end - start;
      replyBounds[2 * entry + 1] = offset;
    }
    data.replies = replies;
    data.replyBounds = replyBounds;
  }

  /** Encodes the reply frame straight into the buffer: a small array per entry is slow. */
  #writeReply(entry: number, name: string): void {
    const start = this.#repliesLength;
    const maxEnd = start + REPLY_PREFIX + name.length * MAX_UTF8_PER_UNIT;
    if (maxEnd > this.#replies.length) this.#replies = grown(this.#replies, maxEnd);
    const replies = this.#replies;
    const end = writeUtf8(name, replies, start + REPLY_PREFIX);
    writeHeader(replies, start, TYPE_REPLY, end - start - HEADER_SIZE);
    replies[start + HEADER_SIZE] = STATUS_FOUND;
    this.#repliesLength = end;
    this.#replyBounds[2 * entry] = start;
    this.#replyBounds[2 * entry + 1] = end;
  }

  /**
   * Looks a key (written at the end of `#keys`) up: returns the entry that
   * has it, or -1 - the empty slot where it belongs.
   */
  #probe(hash: number, start: number, end: number): number {
    const table = this.#table;
    const keyStarts = this.#keyStarts;
    const keys = this.#keys;
    const length = end - start;
    const mask = (table.length >> 1) - 1;
    for (let slot = hash & mask;; slot = (slot + 1) & mask) {
      const entry = table[2 * slot] - 1;
      if (entry < 0) return -1 - slot;
      if (table[2 * slot + 1] !== hash) continue;
      const entryStart = keyStarts[entry];
      if (keyStarts[entry + 1] - entryStart !== length) continue;
      let i = 0;
      while (i < length && keys[entryStart + i] === keys[start + i]) i++;
      if (i === length) return entry;
    }
  }

  #growTable(): void {
    const table = new Uint32Array(this.#table.length * 2);
    const hashes = this.#hashes;
    const mask = (table.length >> 1) - 1;
    for (let entry = 0; entry < this.#size; entry++) {
      const hash = hashes[entry];
      let slot = hash & mask;
      while (table[2 * slot] !== 0) slot = (slot + 1) & mask;
      table[2 * slot] = entry + 1;
      table[2 * slot + 1] = hash;
    }
    this.#table = table;
  }

  #growEntries(): void {
    const capacity = this.#hashes.length * 2;
    this.#hashes = grown(this.#hashes, capacity);
    this.#keyStarts = grown(this.#keyStarts, capacity + 1);
    this.#replyBounds = grown(this.#replyBounds, 2 * capacity);
  }
}

const BUILDER_INITIAL_SLOTS = 1024;
const BUILDER_INITIAL_ENTRIES = 512;
const BUILDER_INITIAL_BYTES = 16384;

/** A UTF-16 code unit takes at most 3 bytes in UTF-8 (a surrogate pair takes 4 for 2 units). */
const MAX_UTF8_PER_UNIT = 3;

/** What `TextEncoder` writes for a lone surrogate. */
const REPLACEMENT_CHARACTER = 0xfffd;

/**
 * Writes `text` as UTF-8 into `target` from `offset`, which must have room
 * for `text.length * 3` bytes; returns the offset after it. Lone surrogates
 * become U+FFFD, as with `TextEncoder`.
 */
function writeUtf8(text: string, target: Uint8Array, offset: number): number {
  const length = text.length;
  let at = offset;
  for (let i = 0; i < length; i++) {
    let code = text.charCodeAt(i);
    if (code < 0x80) {
      target[at++] = code;
      continue;
    }
    if (code < 0x800) {
      target[at++] = 0xc0 | (code >> 6);
      target[at++] = 0x80 | (code & 0x3f);
      continue;
    }
    if (code >= 0xd800 && code <= 0xdfff) {
      const next = i + 1 < length ? text.charCodeAt(i + 1) : 0;
      if (code <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        const point = 0x10000 + ((code - 0xd800) << 10) + (next - 0xdc00);
        target[at++] = 0xf0 | (point >> 18);
        target[at++] = 0x80 | ((point >> 12) & 0x3f);
        target[at++] = 0x80 | ((point >> 6) & 0x3f);
        target[at++] = 0x80 | (point & 0x3f);
        i++;
        continue;
      }
      code = REPLACEMENT_CHARACTER;
    }
    target[at++] = 0xe0 | (code >> 12);
    target[at++] = 0x80 | ((code >> 6) & 0x3f);
    target[at++] = 0x80 | (code & 0x3f);
  }
  return at;
}

/** A copy of `array`, at least twice as long and at least `length` long. */
function grown<T extends Uint8Array | Uint32Array | Int32Array>(array: T, length: number): T {
  const Constructor = array.constructor as new (length: number) => T;
  const copy = new Constructor(Math.max(length, array.length * 2));
  copy.set(array);
  return copy;
}

function shareCopy<T extends Uint8Array | Uint32Array>(
  source: T,
  Constructor: new (buffer: SharedArrayBuffer) => T,
): T {
  const copy = new Constructor(new SharedArrayBuffer(source.byteLength));
  copy.set(source);
  return copy;
}
