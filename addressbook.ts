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

import { type Entries, partitionByHash } from "./addressbook_partition.ts";
import { bookFingerprint } from "./book_fingerprint.ts";
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
import { MAX_UTF8_PER_UNIT, writeUtf8 } from "./utf8.ts";

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
   * means a probe that misses touches one cache line, not two. A key's home
   * slot is its hash's top log2(slots) bits; probing goes forwards, wrapping.
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
  /** The book's fingerprint (see {@linkcode AddressBook.fingerprint}). */
  fingerprint: string;
}

const FNV_OFFSET_BASIS = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** FNV-1a over bytes, 32-bit. */
function hashBytes(bytes: Uint8Array, start: number, end: number): number {
  let hash = FNV_OFFSET_BASIS;
  for (let i = start; i < end; i++) {
    hash = Math.imul(hash ^ bytes[i], FNV_PRIME);
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
  readonly #shift: number;
  /** Scratch space for lower-casing a query; a query is at most a few KiB. */
  #scratch = new Uint8Array(1024);

  private constructor(data: SharedAddressBook) {
    this.#data = data;
    this.#mask = (data.slots.length >> 1) - 1;
    this.#shift = homeShift(data.slots.length >> 1);
  }

  /** Wraps buffers made by {@linkcode AddressBook.toShared}, in this thread or another. */
  static fromShared(data: SharedAddressBook): AddressBook {
    return new AddressBook(data);
  }

  /** How many entries the book holds. */
  get size(): number {
    return this.#data.size;
  }

  /**
   * The SHA-256, in hex, of the entries the book serves, whatever the file's
   * format, row order and email letter case; `book_fingerprint.ts` defines
   * the exact bytes hashed.
   */
  get fingerprint(): string {
    return this.#data.fingerprint;
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
    for (let slot = hash >>> this.#shift;; slot = (slot + 1) & this.#mask) {
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
 *
 * Two ways in: {@linkcode AddressBookBuilder.add} looks each key up as it
 * comes and says at once whether it is a duplicate;
 * {@linkcode AddressBookBuilder.appendBytes}, the loader's way, only
 * appends, and {@linkcode AddressBookBuilder.build} then finds duplicates
 * all at once by laying the entries out by hash, which for a large book is
 * several times faster than a probe per entry into a table far larger than
 * the CPU's caches.
 *
 * Keys, replies and their offsets are written into growable
 * `SharedArrayBuffer`s, which grow in place (no doubling, no copy) and take
 * memory only for the pages written.
 */
export class AddressBookBuilder {
  #size = 0;
  /**
   * Open-addressing table of pairs: entry index + 1 (0 for an empty slot),
   * then that entry's hash, side by side so a probe touches one cache line.
   */
  #table: Uint32Array;
  readonly #keyStarts = new GrowableArray(Uint32Array);
  readonly #keys = new GrowableArray(Uint8Array);
  readonly #replyBounds = new GrowableArray(Uint32Array);
  readonly #replies = new GrowableArray(Uint8Array);
  /** Each entry's key hash, for sorting the entries at build. */
  readonly #hashes = new GrowableArray(Uint32Array);
  #repliesLength = 0;
  /** Whether entries were appended unchecked, so build must sort out duplicates. */
  #appended = false;
  /** Whether setName has replaced a reply, so `#replies` is no longer in entry order. */
  #replaced = false;

  /**
   * Makes an empty builder; `expectedEntries` sizes the hash table up front
   * (a guess is fine: it only saves rehashing as the book grows).
   */
  constructor(expectedEntries = 0) {
    this.#table = newTable(slotCountFor(Math.max(expectedEntries, BUILDER_INITIAL_ENTRIES)));
    this.#keyStarts.reserve(1);
  }

  /** How many entries have been added. */
  get size(): number {
    return this.#size;
  }

  /**
   * Adds an entry. Returns -1 when it was added, or the index of the entry
   * that already has this key (and then adds nothing).
   */
  add(normalizedEmail: string, name: string): number {
    const keyStart = this.#keyStarts.array[this.#size];
    const keys = this.#keys.reserve(keyStart + normalizedEmail.length * MAX_UTF8_PER_UNIT);
    return this.#addKey(
      keyStart,
      writeUtf8(normalizedEmail, keys, keyStart),
      name,
      undefined,
      0,
      0,
    );
  }

  /**
   * Adds an entry from bytes: the normalised key `key[keyStart, keyEnd)` and
   * the name `name[nameStart, nameEnd)`, both UTF-8 (the loader's way, which
   * makes no string). Returns as {@linkcode AddressBookBuilder.add} does.
   */
  addBytes(
    key: Uint8Array,
    keyStart: number,
    keyEnd: number,
    name: Uint8Array,
    nameStart: number,
    nameEnd: number,
  ): number {
    const at = this.#keyStarts.array[this.#size];
    const keys = this.#keys.reserve(at + keyEnd - keyStart);
    let end = at;
    for (let i = keyStart; i < keyEnd; i++) keys[end++] = key[i];
    return this.#addKey(at, end, "", name, nameStart, nameEnd);
  }

  /**
   * Appends an entry from bytes, as {@linkcode AddressBookBuilder.addBytes}
   * takes them, without looking for an entry with the same key: duplicates
   * are found by {@linkcode AddressBookBuilder.build}, all at once, by
   * sorting. That is several times faster for a large book than a probe of
   * a table far bigger than the CPU's caches per entry. Returns the entry's
   * index.
   */
  appendBytes(
    key: Uint8Array,
    keyStart: number,
    keyEnd: number,
    name: Uint8Array,
    nameStart: number,
    nameEnd: number,
  ): number {
    const entry = this.#size;
    const at = this.#keyStarts.array[entry];
    const keys = this.#keys.reserve(at + keyEnd - keyStart);
    let end = at;
    // FNV-1a as hashBytes computes it, in the same pass as the copy.
    let hash = FNV_OFFSET_BASIS;
    for (let i = keyStart; i < keyEnd; i++) {
      const byte = key[i];
      keys[end++] = byte;
      hash = Math.imul(hash ^ byte, FNV_PRIME);
    }
    this.#hashes.reserve(entry + 1)[entry] = hash >>> 0;
    this.#keyStarts.reserve(entry + 2)[entry + 1] = end;
    this.#replyBounds.reserve(2 * entry + 2);
    this.#size = entry + 1;
    this.#appended = true;
    this.#writeReply(entry, "", name, nameStart, nameEnd);
    return entry;
  }

  /** Replaces the name of an entry already added (for "last one wins" loading). */
  setName(entry: number, name: string): void {
    this.#replaced = true;
    this.#writeReply(entry, name, undefined, 0, 0);
  }

  /** Replaces the name of an entry already added with UTF-8 bytes. */
  setNameBytes(entry: number, name: Uint8Array, start: number, end: number): void {
    this.#replaced = true;
    this.#writeReply(entry, "", name, start, end);
  }

  /**
   * Makes the book from the buffers written so far; use the builder no more
   * after this. When entries were appended, entries with the same key are
   * resolved here: each is reported to `duplicates.found` (with the first
   * entry that has the key) and only the first, or the last, of them is kept.
   */
  build(duplicates: DuplicateHandling = { keep: "first" }): AddressBook {
    if (this.#replaced) this.#layRepliesInOrder();
    if (this.#appended) return this.#buildSorted(duplicates);
    const size = this.#size;
    const slotCount = slotCountFor(size);
    let slots = this.#table;
    if (slots.length !== 2 * slotCount) {
      slots = newTable(slotCount);
      rehash(this.#table, slots);
    }
    const keyStarts = this.#keyStarts.array.subarray(0, size + 1);
    const data: SharedAddressBook = {
      size,
      slots,
      keyStarts,
      keys: this.#keys.array.subarray(0, keyStarts[size]),
      replyBounds: this.#replyBounds.array.subarray(0, 2 * size),
      replies: this.#replies.array.subarray(0, this.#repliesLength),
      fingerprint: "",
    };
    data.fingerprint = bookFingerprint({ ...data, namePrefix: REPLY_PREFIX });
    this.#table = new Uint32Array(0);
    return AddressBook.fromShared(data);
  }

  /**
   * Lays the entries out by hash (`addressbook_partition.ts`), drops
   * duplicates, which then sit side by side, and fills the table front to back.
   */
  #buildSorted(handling: DuplicateHandling): AddressBook {
    this.#table = new Uint32Array(0);
    const size = this.#size;
    const keyStarts = this.#keyStarts.array.subarray(0, size + 1);
    const laidOut = partitionByHash({
      size,
      keyStarts,
      keys: this.#keys.array.subarray(0, keyStarts[size]),
      replyBounds: this.#replyBounds.array.subarray(0, 2 * size),
      replies: this.#replies.array.subarray(0, this.#repliesLength),
      hashes: this.#hashes.array.subarray(0, size),
    });
    // The builder's own buffers are garbage now: let them go before the table is made.
    for (
      const array of [this.#keyStarts, this.#keys, this.#replyBounds, this.#replies, this.#hashes]
    ) {
      array.release();
    }
    let book: Entries = laidOut;
    let order: Uint32Array = laidOut.order;
    // Hashes in sorted order, as findDuplicates and fillInOrder read them.
    let hashes: Uint32Array = new Uint32Array(size);
    for (let i = 0; i < size; i++) hashes[i] = laidOut.hashes[order[i]];
    const dropped = findDuplicates(order, hashes, book.keyStarts, book.keys, {
      keep: handling.keep,
      found: (first, duplicate) =>
        handling.found?.(laidOut.original[first], laidOut.original[duplicate]),
    });
    if (dropped !== undefined) {
      const kept = keepEntries(dropped, book.keyStarts, book.keys, book.replyBounds, book.replies);
      ({ order, hashes } = renumber(order, hashes, kept.newIndex, dropped));
      book = { ...kept, hashes: new Uint32Array(0) };
    }
    const slots = newTable(slotCountFor(book.size));
    fillInOrder(slots, order, hashes);
    const data: SharedAddressBook = {
      size: book.size,
      slots,
      keyStarts: book.keyStarts,
      keys: book.keys,
      replyBounds: book.replyBounds,
      replies: book.replies,
      fingerprint: "",
    };
    data.fingerprint = bookFingerprint({ ...data, namePrefix: REPLY_PREFIX }, order);
    return AddressBook.fromShared(data);
  }

  /** Lays the replies out in entry order, dropping any a later setName replaced. */
  #layRepliesInOrder(): void {
    const size = this.#size;
    const bounds = this.#replyBounds.array;
    const from = this.#replies.array;
    let length = 0;
    for (let entry = 0; entry < size; entry++) {
      length += bounds[2 * entry + 1] - bounds[2 * entry];
    }
    const replies = new Uint8Array(length);
    let offset = 0;
    for (let entry = 0; entry < size; entry++) {
      const start = bounds[2 * entry];
      const end = bounds[2 * entry + 1];
      replies.set(from.subarray(start, end), offset);
      bounds[2 * entry] = offset;
      offset += end - start;
      bounds[2 * entry + 1] = offset;
    }
    from.set(replies);
    this.#repliesLength = length;
    this.#replaced = false;
  }

  #addKey(
    keyStart: number,
    keyEnd: number,
    nameText: string,
    nameBytes: Uint8Array | undefined,
    nameStart: number,
    nameEnd: number,
  ): number {
    const entry = this.#size;
    const keys = this.#keys.array;
    const hash = hashBytes(keys, keyStart, keyEnd);
    if ((entry + 1) * 4 > this.#table.length) this.#growTable();
    const found = this.#probe(hash, keyStart, keyEnd);
    if (found >= 0) return found;
    const slot = -1 - found;
    this.#table[2 * slot] = entry + 1;
    this.#table[2 * slot + 1] = hash;
    this.#keyStarts.reserve(entry + 2)[entry + 1] = keyEnd;
    this.#hashes.reserve(entry + 1)[entry] = hash;
    this.#replyBounds.reserve(2 * entry + 2);
    this.#size = entry + 1;
    this.#writeReply(entry, nameText, nameBytes, nameStart, nameEnd);
    return -1;
  }

  /**
   * Encodes the reply frame straight into the buffer, from `text` or, when
   * given, from the UTF-8 `bytes[start, end)`: a small array per entry is slow.
   */
  #writeReply(
    entry: number,
    text: string,
    bytes: Uint8Array | undefined,
    start: number,
    end: number,
  ): void {
    const replyStart = this.#repliesLength;
    const nameAt = replyStart + REPLY_PREFIX;
    let replyEnd = nameAt;
    if (bytes === undefined) {
      const replies = this.#replies.reserve(nameAt + text.length * MAX_UTF8_PER_UNIT);
      replyEnd = writeUtf8(text, replies, nameAt);
    } else {
      const replies = this.#replies.reserve(nameAt + end - start);
      for (let i = start; i < end; i++) replies[replyEnd++] = bytes[i];
    }
    const replies = this.#replies.array;
    writeHeader(replies, replyStart, TYPE_REPLY, replyEnd - replyStart - HEADER_SIZE);
    replies[replyStart + HEADER_SIZE] = STATUS_FOUND;
    this.#repliesLength = replyEnd;
    const bounds = this.#replyBounds.array;
    bounds[2 * entry] = replyStart;
    bounds[2 * entry + 1] = replyEnd;
  }

  /**
   * Looks a key (written at the end of `#keys`) up: returns the entry that
   * has it, or -1 - the empty slot where it belongs.
   */
  #probe(hash: number, start: number, end: number): number {
    const table = this.#table;
    const keyStarts = this.#keyStarts.array;
    const keys = this.#keys.array;
    const length = end - start;
    const mask = (table.length >> 1) - 1;
    for (let slot = hash >>> homeShift(table.length >> 1);; slot = (slot + 1) & mask) {
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
    const table = newTable(this.#table.length);
    rehash(this.#table, table);
    this.#table = table;
  }
}

/** What a build does with entries that have the same key (see {@linkcode AddressBookBuilder.build}). */
export interface DuplicateHandling {
  /** Keep the first entry of each key (in the order added), or the last. */
  keep: "first" | "last";
  /** Called for every entry whose key an earlier one has, with that first entry's index. */
  found?: (first: number, duplicate: number) => void;
}

/**
 * Walks the sorted entries, in which equal keys sit side by side, first
 * added first; reports each duplicate and returns which entries to drop, or
 * undefined when there are none.
 */
function findDuplicates(
  order: Uint32Array,
  hashes: Uint32Array,
  keyStarts: Uint32Array,
  keys: Uint8Array,
  handling: DuplicateHandling,
): Uint8Array | undefined {
  let dropped: Uint8Array | undefined;
  for (let i = 1; i < order.length; i++) {
    if (hashes[i] !== hashes[i - 1] || !sameKey(keyStarts, keys, order[i], order[i - 1])) continue;
    let end = i + 1;
    while (
      end < order.length && hashes[end] === hashes[i] &&
      sameKey(keyStarts, keys, order[end], order[i])
    ) end++;
    const first = order[i - 1];
    dropped ??= new Uint8Array(order.length);
    for (let j = i; j < end; j++) handling.found?.(first, order[j]);
    const keep = handling.keep === "first" ? i - 1 : end - 1;
    for (let j = i - 1; j < end; j++) if (j !== keep) dropped[order[j]] = 1;
    i = end;
  }
  return dropped;
}

function sameKey(keyStarts: Uint32Array, keys: Uint8Array, a: number, b: number): boolean {
  const aStart = keyStarts[a];
  const bStart = keyStarts[b];
  const length = keyStarts[a + 1] - aStart;
  if (keyStarts[b + 1] - bStart !== length) return false;
  for (let i = 0; i < length; i++) if (keys[aStart + i] !== keys[bStart + i]) return false;
  return true;
}

/** Copies the entries not dropped into new shared buffers, in order; rare: only with duplicates. */
function keepEntries(
  dropped: Uint8Array,
  keyStarts: Uint32Array,
  keys: Uint8Array,
  replyBounds: Uint32Array,
  replies: Uint8Array,
) {
  const size = keyStarts.length - 1;
  let keptSize = 0;
  let keyBytes = 0;
  let replyBytes = 0;
  for (let entry = 0; entry < size; entry++) {
    if (dropped[entry]) continue;
    keptSize++;
    keyBytes += keyStarts[entry + 1] - keyStarts[entry];
    replyBytes += replyBounds[2 * entry + 1] - replyBounds[2 * entry];
  }
  const kept = {
    size: keptSize,
    keyStarts: new Uint32Array(new SharedArrayBuffer(4 * (keptSize + 1))),
    keys: new Uint8Array(new SharedArrayBuffer(keyBytes)),
    replyBounds: new Uint32Array(new SharedArrayBuffer(8 * keptSize)),
    replies: new Uint8Array(new SharedArrayBuffer(replyBytes)),
    newIndex: new Uint32Array(size),
  };
  let next = 0;
  let keyAt = 0;
  let replyAt = 0;
  for (let entry = 0; entry < size; entry++) {
    if (dropped[entry]) continue;
    kept.newIndex[entry] = next;
    kept.keys.set(keys.subarray(keyStarts[entry], keyStarts[entry + 1]), keyAt);
    keyAt += keyStarts[entry + 1] - keyStarts[entry];
    kept.keyStarts[next + 1] = keyAt;
    const replyStart = replyBounds[2 * entry];
    const replyEnd = replyBounds[2 * entry + 1];
    kept.replies.set(replies.subarray(replyStart, replyEnd), replyAt);
    kept.replyBounds[2 * next] = replyAt;
    replyAt += replyEnd - replyStart;
    kept.replyBounds[2 * next + 1] = replyAt;
    next++;
  }
  return kept;
}

/** The sorted order without the dropped entries, in their new numbers. */
function renumber(
  order: Uint32Array,
  hashes: Uint32Array,
  newIndex: Uint32Array,
  dropped: Uint8Array,
): { order: Uint32Array; hashes: Uint32Array } {
  let kept = 0;
  for (let i = 0; i < order.length; i++) {
    if (dropped[order[i]]) continue;
    order[kept] = newIndex[order[i]];
    hashes[kept] = hashes[i];
    kept++;
  }
  return { order: order.subarray(0, kept), hashes: hashes.subarray(0, kept) };
}

/**
 * Fills an empty table with entries sorted by hash, so by home slot: each
 * goes to its home or the first slot after the one filled before it. Those
 * that run past the end wrap round to the first free slots at the start,
 * which is where a probe from their home looks after the end.
 */
function fillInOrder(slots: Uint32Array, order: Uint32Array, hashes: Uint32Array): void {
  const slotCount = slots.length >> 1;
  const shift = homeShift(slotCount);
  let last = -1;
  let wrapped = 0;
  for (let i = 0; i < order.length; i++) {
    let slot = Math.max(hashes[i] >>> shift, last + 1);
    if (slot >= slotCount) {
      while (slots[2 * wrapped] !== 0) wrapped++;
      slot = wrapped;
    } else {
      last = slot;
    }
    slots[2 * slot] = order[i] + 1;
    slots[2 * slot + 1] = hashes[i];
  }
}

const BUILDER_INITIAL_ENTRIES = 512;

/**
 * How far to shift a key's hash right to get its home slot in a table of
 * `slotCount` (a power of two) slots. The home is the hash's top bits, so
 * that entries sorted by hash are sorted by home slot too, which lets a
 * bulk build fill the table front to back (and FNV-1a mixes its top bits
 * best: they depend on every byte).
 */
function homeShift(slotCount: number): number {
  return 32 - Math.log2(slotCount);
}

/** The table holds at least twice as many slots as entries, so probes stay short. */
function slotCountFor(entries: number): number {
  let slotCount = 16;
  while (slotCount < entries * 2) slotCount *= 2;
  return slotCount;
}

function newTable(slotCount: number): Uint32Array {
  return new Uint32Array(new SharedArrayBuffer(slotCount * 8));
}

/** Moves every entry of one table into another (empty) one, by the hashes the slots keep. */
function rehash(from: Uint32Array, to: Uint32Array): void {
  const mask = (to.length >> 1) - 1;
  const shift = homeShift(to.length >> 1);
  for (let i = 0; i < from.length; i += 2) {
    const entry = from[i];
    if (entry === 0) continue;
    const hash = from[i + 1];
    let slot = hash >>> shift;
    while (to[2 * slot] !== 0) slot = (slot + 1) & mask;
    to[2 * slot] = entry;
    to[2 * slot + 1] = hash;
  }
}

/**
 * The most a growable buffer may grow to: offsets into the keys and replies
 * are 32-bit. Only the pages written take memory; the rest is address space.
 */
const MAX_SHARED_BYTES = 2 ** 32 - 1;

/** A typed array over a growable `SharedArrayBuffer`, grown in place as it fills. */
class GrowableArray<T extends Uint8Array | Uint32Array> {
  #buffer = new SharedArrayBuffer(0, { maxByteLength: MAX_SHARED_BYTES });
  readonly #Type: {
    new (buffer: SharedArrayBuffer, offset: number, length: number): T;
    BYTES_PER_ELEMENT: number;
  };
  /** A fixed-length view of the whole buffer: a view that tracks the length is far slower. */
  array: T;

  constructor(
    Type: {
      new (buffer: SharedArrayBuffer, offset: number, length: number): T;
      BYTES_PER_ELEMENT: number;
    },
  ) {
    this.#Type = Type;
    this.array = new Type(this.#buffer, 0, 0);
  }

  /**
   * Makes room for `length` elements and returns the (maybe new) view.
   *
   * @throws {RangeError} when that would pass 4 GiB.
   */
  reserve(length: number): T {
    if (length <= this.array.length) return this.array;
    const size = this.#Type.BYTES_PER_ELEMENT;
    const wanted = Math.max(length * size, 2 * this.#buffer.byteLength, 1 << 16);
    const bytes = Math.min(wanted, MAX_SHARED_BYTES - (MAX_SHARED_BYTES % size));
    if (bytes < length * size) {
      throw new RangeError(`The book needs more than ${MAX_SHARED_BYTES} bytes in one table.`);
    }
    this.#buffer.grow(bytes);
    this.array = new this.#Type(this.#buffer, 0, bytes / size);
    return this.array;
  }

  /** Lets the buffer go (to the garbage collector); the array is empty afterwards. */
  release(): void {
    this.#buffer = new SharedArrayBuffer(0, { maxByteLength: 0 });
    this.array = new this.#Type(this.#buffer, 0, 0);
  }
}
