/**
 * The in-memory address book: a compact hash table from normalised email to
 * the owner's name (and, where the source has them, their given name and
 * surname), built once at load and then only read.
 *
 * It is laid out for the server's hot path, and knows nothing of any wire
 * protocol: {@linkcode AddressBook.lookup} takes a query's bytes as they
 * arrived and gives an entry index (or says the address is missing or not
 * valid), making no object or string for a plain-ASCII query; each front
 * end then encodes the entry's name, which it can copy straight from
 * {@linkcode AddressBook.text}. Each entry is one record, its key and name
 * side by side, and a slot of the hash table points at the record, so that
 * a found lookup reads two places in memory. Many queries at once are
 * looked up together ({@linkcode AddressBook.lookupMany}), so that their
 * waits on memory overlap. The table lives in a few flat
 * `SharedArrayBuffer`s rather than millions of small objects, so a book of
 * a million entries stays small and can be handed to worker threads
 * without a copy.
 *
 * ```ts
 * import { AddressBookBuilder } from "./addressbook.ts";
 *
 * const builder = new AddressBookBuilder();
 * builder.add("ada@example.com", "Ada Lovelace", "Ada", "Lovelace");
 * const book = builder.build();
 * const entry = book.lookup(new TextEncoder().encode(" ADA@example.com"), 0, 16);
 * book.entry(entry); // { email: "ada@example.com", name: "Ada Lovelace", givenName: "Ada", surname: "Lovelace" }
 * ```
 *
 * @module
 */

import {
  type Entries,
  type EntryBytes,
  gatherNameParts,
  type LaidOut,
  type NameParts,
  partitionByHash,
  recordsInOrder,
} from "./partition.ts";
import {
  KEY_LENGTH_BITS,
  KEY_LENGTH_MASK,
  RECORD_HEADER_BYTES,
  recordBytes,
  RecordReader,
  type Records,
} from "./records.ts";
import { bookFingerprint, sortByHashAndKey } from "./fingerprint.ts";
import {
  emailProblem,
  MAX_EMAIL_CHARS,
  normalizeAsciiEmailWords,
  normalizeEmail,
  wordView,
  WordViews,
} from "./email.ts";
import { decodeText, decodeUtf8, MAX_UTF8_PER_UNIT, writeUtf8 } from "../common/utf8.ts";

const encoder = new TextEncoder();

/** The most queries one {@linkcode AddressBook.lookupMany} takes. */
export const LOOKUP_BATCH_MAX = 64;

/** A query of a {@linkcode AddressBook.lookupMany} batch whose result is written. */
const SETTLED = -1;
/** A query of a batch not yet looked up. */
const PENDING = -2;

/** {@linkcode AddressBook.lookup}'s result when the query is a valid email that the book does not hold. */
export const NOT_FOUND = -1;
/** {@linkcode AddressBook.lookup}'s result when the query is not a valid email address (`book/email.ts`'s rule). */
export const INVALID_QUERY = -2;

/** One entry of the book, as values. */
export interface BookEntry {
  /** The normalised email: the lookup key. */
  email: string;
  /** The name as served. */
  name: string;
  /** The given name, when the source had one. */
  givenName?: string;
  /** The surname (family name), when the source had one. */
  surname?: string;
}

/**
 * A given name and a surname as UTF-8 byte ranges of one buffer, for the
 * builder's byte-level way in; an empty range is no such part.
 */
export interface NamePartBytes {
  /** The buffer both parts are in. */
  bytes: Uint8Array;
  /** Start of the given name. */
  givenStart: number;
  /** End of the given name. */
  givenEnd: number;
  /** Start of the surname. */
  surnameStart: number;
  /** End of the surname. */
  surnameEnd: number;
}

/**
 * The flat buffers of a built book, which can be posted to a worker as they
 * are: each entry is one record in `records`, its key and name side by
 * side (`book/records.ts` has the layout), and a slot of the hash table
 * points at a record.
 */
export interface SharedAddressBook extends Records, NameParts {
  /**
   * Open-addressing slots, two numbers each: the entry's record's word
   * index (its byte offset over four: records start on a word) + 1, 0 for
   * an empty slot, then that entry's key hash. A word index stays a small
   * integer to the compiler whatever the book's size, where a byte offset
   * past 2 GiB would not. Keeping the hash beside it means a probe that
   * misses touches one cache line, not two. A key's home slot is its hash's top log2(slots) bits;
   * probing goes forwards, wrapping.
   */
  slots: Uint32Array;
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

/** Room for a normalised query written in whole words: the longest address, rounded up to four. */
const MAX_KEY_WORD_BYTES = (MAX_EMAIL_CHARS + 3) & ~3;

/**
 * Whether `a[aStart, aEnd)` holds the `length` bytes of `b` from `bStart`,
 * compared four at a time.
 */
function sameWords(
  a: DataView,
  aStart: number,
  aEnd: number,
  b: DataView,
  bStart: number,
  length: number,
): boolean {
  if (aEnd - aStart !== length) return false;
  let i = 0;
  for (; i + 4 <= length; i += 4) {
    if (a.getInt32(aStart + i, true) !== b.getInt32(bStart + i, true)) return false;
  }
  for (; i < length; i++) {
    if (a.getUint8(aStart + i) !== b.getUint8(bStart + i)) return false;
  }
  return true;
}

/** Whether `a[aStart, aEnd)` holds the `length` bytes of `b` from `bStart`. */
function sameBytes(
  a: Uint8Array,
  aStart: number,
  aEnd: number,
  b: Uint8Array,
  bStart: number,
  length: number,
): boolean {
  if (aEnd - aStart !== length) return false;
  for (let i = 0; i < length; i++) {
    if (a[aStart + i] !== b[bStart + i]) return false;
  }
  return true;
}

/** Where {@linkcode AddressBook.lookupMany} writes what it found, per query. */
export class LookupResults {
  /** Per query, what {@linkcode AddressBook.lookup} gives: an entry index, {@linkcode NOT_FOUND} or {@linkcode INVALID_QUERY}. */
  readonly entries: Int32Array = new Int32Array(LOOKUP_BATCH_MAX);
  /** Per found query, where its name starts in {@linkcode AddressBook.text} (which may pass 2 GiB). */
  readonly nameStarts: Uint32Array = new Uint32Array(LOOKUP_BATCH_MAX);
  /** Per found query, where its name ends in {@linkcode AddressBook.text}. */
  readonly nameEnds: Uint32Array = new Uint32Array(LOOKUP_BATCH_MAX);
}

/** Per query of a {@linkcode AddressBook.lookupMany} batch, what one step leaves the next. */
class BatchSpace {
  /**
   * The queries normalised, each from a multiple of four bytes: query i is
   * `keyBytes[keyAt[i], keyAt[i] + keyLength[i])`.
   */
  readonly keyBytes = new Uint8Array(LOOKUP_BATCH_MAX * MAX_KEY_WORD_BYTES);
  readonly keyWords = new DataView(this.keyBytes.buffer);
  readonly keyAt = new Int32Array(LOOKUP_BATCH_MAX);
  readonly keyLength = new Int32Array(LOOKUP_BATCH_MAX);
  readonly hashes = new Uint32Array(LOOKUP_BATCH_MAX);
  /** The slot where the probe stopped. */
  readonly probes = new Int32Array(LOOKUP_BATCH_MAX);
  /** The candidate record's word index, or SETTLED (its result is written), or PENDING. */
  readonly found = new Int32Array(LOOKUP_BATCH_MAX);
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
  /** Where a plain-ASCII query is normalised: no valid address is longer. */
  readonly #scratch = new Uint8Array(MAX_KEY_WORD_BYTES);
  readonly #scratchWords = new DataView(this.#scratch.buffer);
  /** The keys, to be compared four bytes at a time. */
  readonly #keyWords: DataView;
  /**
   * A view of the buffer queries last came in, to read it four bytes at a
   * time: a server reads every query into the same buffer, so the view is
   * made once, not per lookup. The book keeps that one buffer until the
   * next lookup, and nothing else of its callers.
   */
  readonly #inputViews = new WordViews();
  /** {@linkcode lookupMany}'s working space, made on its first call. */
  #batchSpace: BatchSpace | undefined;
  /** What {@linkcode lookupMany}'s touching reads summed, kept so that the compiler cannot drop them. */
  #touched = 0;

  /** The records, and the same bytes as 32-bit words, for their headers. */
  readonly #records: Uint8Array;
  readonly #words: Uint32Array;
  readonly #reader: RecordReader;

  private constructor(data: SharedAddressBook) {
    this.#data = data;
    this.#mask = (data.slots.length >> 1) - 1;
    this.#shift = homeShift(data.slots.length >> 1);
    const { records } = data;
    this.#reader = new RecordReader(data);
    this.#records = this.#reader.bytes;
    this.#words = this.#reader.words;
    this.#keyWords = wordView(records);
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
   * format, row order and email letter case; `book/fingerprint.ts` defines
   * the exact bytes hashed.
   */
  get fingerprint(): string {
    return this.#data.fingerprint;
  }

  /** The book's buffers, to post to a worker; they are shared, not copied. */
  toShared(): SharedAddressBook {
    return this.#data;
  }

  /**
   * Every entry's key and name, UTF-8, in the book's records: entry i's
   * name is `text.subarray(nameStart(i), nameEnd(i))`, its key (the
   * normalised email) `text.subarray(keyStart(i), keyEnd(i))`. Read it, do
   * not change it.
   */
  get text(): Uint8Array {
    return this.#records;
  }

  /** Where entry `entry`'s key starts in {@linkcode AddressBook.text}. */
  keyStart(entry: number): number {
    return this.#reader.keyStart(entry);
  }

  /** Where entry `entry`'s key ends in {@linkcode AddressBook.text}. */
  keyEnd(entry: number): number {
    return this.#reader.keyEnd(entry);
  }

  /** Where entry `entry`'s name starts in {@linkcode AddressBook.text}. */
  nameStart(entry: number): number {
    return this.keyEnd(entry);
  }

  /** Where entry `entry`'s name ends in {@linkcode AddressBook.text}. */
  nameEnd(entry: number): number {
    return this.#reader.nameEnd(entry);
  }

  /**
   * Looks up a query as it arrived: raw UTF-8 bytes `query[start, end)`,
   * maybe with surrounding whitespace and in any letter case. Returns the
   * entry index, {@linkcode NOT_FOUND}, or {@linkcode INVALID_QUERY} when
   * the bytes are not UTF-8 or not an email address by `book/email.ts`'s rule
   * (whose `emailProblem` says why). A plain-ASCII query, the usual kind,
   * makes no object or string.
   */
  lookup(query: Uint8Array, start: number, end: number): number {
    const length = normalizeAsciiEmailWords(
      this.#inputViews.of(query),
      start,
      end,
      this.#scratchWords,
      0,
    );
    if (length >= 0) return this.find(this.#scratch, 0, length);
    return this.#lookupSlowly(query.subarray(start, end));
  }

  /**
   * Looks up several queries at once, as {@linkcode lookup} takes each:
   * `bytes[starts[i], ends[i])` for `i < count`. Each query's result (its
   * entry index, {@linkcode NOT_FOUND} or {@linkcode INVALID_QUERY}) goes
   * to `results.entries[i]`, and for a found one where its name lies in
   * {@linkcode text} to `results.nameStarts[i]` and `results.nameEnds[i]`.
   * The answers are those of {@linkcode lookup}, one query at a time; the
   * work is not. In a book larger than the CPU's caches a lookup waits for
   * two cache misses one after the other (its slot, then its record). Here
   * each step is taken for every query before the next step, and each
   * memory step starts with a loop that only reads (no branch on what it
   * reads), so the misses of different queries are waited for together
   * (memory-level parallelism); each query is normalised and hashed once. At most
   * {@linkcode LOOKUP_BATCH_MAX} queries.
   *
   * ```ts
   * import { AddressBookBuilder, LookupResults, NOT_FOUND } from "./addressbook.ts";
   *
   * const builder = new AddressBookBuilder();
   * builder.add("ada@example.com", "Ada Lovelace");
   * const book = builder.build();
   * const bytes = new TextEncoder().encode("ADA@example.combob@example.com");
   * const results = new LookupResults();
   * book.lookupMany(bytes, Int32Array.of(0, 15), Int32Array.of(15, 30), 2, results);
   * results.entries.subarray(0, 2); // [0, NOT_FOUND]
   * book.text.subarray(results.nameStarts[0], results.nameEnds[0]); // "Ada Lovelace" as UTF-8
   * ```
   *
   * @throws {RangeError} when `count` is over {@linkcode LOOKUP_BATCH_MAX} or over what `starts` and `ends` hold.
   */
  lookupMany(
    bytes: Uint8Array,
    starts: Int32Array,
    ends: Int32Array,
    count: number,
    results: LookupResults,
  ): void {
    if (count > LOOKUP_BATCH_MAX || count > starts.length || count > ends.length) {
      throw new RangeError(
        `lookupMany takes at most ${LOOKUP_BATCH_MAX} queries and arrays that hold them all, got ${count}.`,
      );
    }
    const { slots } = this.#data;
    const words = this.#words;
    const { entries, nameStarts, nameEnds } = results;
    const { keyBytes, keyWords, keyAt, keyLength, hashes, probes, found } = this.#batch;
    const mask = this.#mask;
    const input = this.#inputViews.of(bytes);
    // Step 1: each query normalised and hashed, from its own bytes alone.
    let at = 0;
    for (let i = 0; i < count; i++) {
      const length = normalizeAsciiEmailWords(input, starts[i], ends[i], keyWords, at);
      found[i] = SETTLED;
      if (length < 0) {
        entries[i] = this.#lookupSlowly(bytes.subarray(starts[i], ends[i]));
        if (entries[i] >= 0) {
          nameStarts[i] = this.nameStart(entries[i]);
          nameEnds[i] = this.nameEnd(entries[i]);
        }
        continue;
      }
      keyAt[i] = at;
      keyLength[i] = length;
      hashes[i] = hashBytes(keyBytes, at, at + length);
      found[i] = PENDING;
      at += (length + 3) & ~3;
    }
    // Step 2: every query's home slot read ahead, in a loop with no branch
    // on what memory holds. The walk below branches on each slot it reads,
    // and a mispredicted branch cancels the reads issued after it, so without
    // this the misses of a batch were partly waited for one after another;
    // here they all start at once. (A settled query's hash is a stale one: it
    // reads some slot, which does no harm.)
    let touched = 0;
    for (let i = 0; i < count; i++) touched ^= slots[2 * (hashes[i] >>> this.#shift)];
    // Step 3: each query's slots from its home to the first with its hash or
    // none: the first read is the miss, the next are mostly in its line.
    for (let i = 0; i < count; i++) {
      if (found[i] === SETTLED) continue;
      const hash = hashes[i];
      let slot = hash >>> this.#shift;
      let word = slots[2 * slot] - 1;
      while (word >= 0 && slots[2 * slot + 1] !== hash) {
        slot = (slot + 1) & mask;
        word = slots[2 * slot] - 1;
      }
      probes[i] = slot;
      if (word < 0) {
        entries[i] = NOT_FOUND;
        found[i] = SETTLED;
      } else {
        found[i] = word;
      }
    }
    // Step 4: every candidate's record header read ahead, as in step 2 (a
    // settled query, whose word is negative, reads word 0 instead).
    for (let i = 0; i < count; i++) {
      const word = found[i];
      touched ^= words[word & ~(word >> 31)];
    }
    this.#touched = touched;
    // Step 5: each candidate's record: its key compared, its entry and name read.
    for (let i = 0; i < count; i++) {
      const word = found[i];
      if (word < 0) continue;
      const from = keyAt[i];
      const length = keyLength[i];
      const lengths = words[word + 1];
      const keyStart = 4 * word + RECORD_HEADER_BYTES;
      const keyEnd = keyStart + (lengths & KEY_LENGTH_MASK);
      if (sameWords(this.#keyWords, keyStart, keyEnd, keyWords, from, length)) {
        entries[i] = words[word];
        nameStarts[i] = keyEnd;
        nameEnds[i] = keyEnd + (lengths >>> KEY_LENGTH_BITS);
        continue;
      }
      // Another key with the same hash: probe on past it (rare).
      const entry = this.#probe(keyBytes, from, from + length, hashes[i], (probes[i] + 1) & mask);
      entries[i] = entry;
      if (entry >= 0) {
        nameStarts[i] = this.nameStart(entry);
        nameEnds[i] = this.nameEnd(entry);
      }
    }
  }

  get #batch(): BatchSpace {
    return this.#batchSpace ??= new BatchSpace();
  }

  /** The general path, for a query that is not plain ASCII or may be invalid. */
  #lookupSlowly(query: Uint8Array): number {
    const text = decodeUtf8(query);
    if (text === undefined || emailProblem(text) !== undefined) return INVALID_QUERY;
    return this.find(encoder.encode(normalizeEmail(text)));
  }

  /**
   * Finds a normalised key given as UTF-8 bytes; returns its entry index or
   * {@linkcode NOT_FOUND}.
   */
  find(key: Uint8Array, start = 0, end = key.length): number {
    const hash = hashBytes(key, start, end);
    return this.#probe(key, start, end, hash, hash >>> this.#shift);
  }

  /** Probes for `key[start, end)`, whose hash is `hash`, from slot `slot` onwards. */
  #probe(key: Uint8Array, start: number, end: number, hash: number, slot: number): number {
    const { slots } = this.#data;
    const records = this.#records;
    const words = this.#words;
    const length = end - start;
    for (;; slot = (slot + 1) & this.#mask) {
      const word = slots[2 * slot] - 1;
      if (word < 0) return NOT_FOUND;
      if (slots[2 * slot + 1] !== hash) continue;
      const keyStart = 4 * word + RECORD_HEADER_BYTES;
      const keyEnd = keyStart + (words[word + 1] & KEY_LENGTH_MASK);
      if (sameBytes(records, keyStart, keyEnd, key, start, length)) return words[word];
    }
  }

  /**
   * The entries copied out as a builder lays them out (keys and names in
   * buffers of their own, with each key's hash), for tools that work on
   * that layout, such as `bench/load.ts` timing the fingerprint.
   */
  entries(): Entries {
    const { size, namePartStarts, nameParts } = this.#data;
    const text = this.#records;
    let keyBytes = 0;
    let nameBytes = 0;
    for (let entry = 0; entry < size; entry++) {
      keyBytes += this.keyEnd(entry) - this.keyStart(entry);
      nameBytes += this.nameEnd(entry) - this.nameStart(entry);
    }
    const keyStarts = new Uint32Array(size + 1);
    const keys = new Uint8Array(keyBytes);
    const nameStarts = new Uint32Array(size + 1);
    const names = new Uint8Array(nameBytes);
    const hashes = new Uint32Array(size);
    let key = 0;
    let name = 0;
    for (let entry = 0; entry < size; entry++) {
      keyStarts[entry] = key;
      nameStarts[entry] = name;
      const keyStart = this.keyStart(entry);
      const keyEnd = this.keyEnd(entry);
      for (let i = keyStart; i < keyEnd; i++) keys[key++] = text[i];
      for (let i = this.nameStart(entry); i < this.nameEnd(entry); i++) names[name++] = text[i];
      hashes[entry] = hashBytes(text, keyStart, keyEnd);
    }
    keyStarts[size] = key;
    nameStarts[size] = name;
    return { size, keyStarts, keys, nameStarts, names, namePartStarts, nameParts, hashes };
  }

  /** The owner's name for an email, or `undefined`; the email is normalised first. */
  get(email: string): string | undefined {
    const entry = this.find(encoder.encode(normalizeEmail(email)));
    if (entry < 0) return undefined;
    return decodeText(this.#records, this.nameStart(entry), this.nameEnd(entry));
  }

  /**
   * One entry as values, for front ends that need more than the name and
   * for tests.
   *
   * @throws {RangeError} when there is no entry `index`.
   */
  entry(index: number): BookEntry {
    const { size, namePartStarts, nameParts } = this.#data;
    if (!Number.isInteger(index) || index < 0 || index >= size) {
      throw new RangeError(`The book has no entry ${index}: it holds ${size}.`);
    }
    const text = this.#records;
    const found: BookEntry = {
      email: decodeText(text, this.keyStart(index), this.keyEnd(index)),
      name: decodeText(text, this.nameStart(index), this.nameEnd(index)),
    };
    if (namePartStarts.length === 0) return found;
    const givenStart = namePartStarts[2 * index];
    const surnameStart = namePartStarts[2 * index + 1];
    const surnameEnd = namePartStarts[2 * index + 2];
    if (surnameStart > givenStart) {
      found.givenName = decodeText(nameParts, givenStart, surnameStart);
    }
    if (surnameEnd > surnameStart) {
      found.surname = decodeText(nameParts, surnameStart, surnameEnd);
    }
    return found;
  }
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
 * Keys, names and their offsets are written into growable
 * `SharedArrayBuffer`s, which grow in place (no doubling, no copy) and take
 * memory only for the pages written. Given names and surnames get buffers
 * of their own only once an entry has one.
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
  readonly #nameStarts = new GrowableArray(Uint32Array);
  readonly #names = new GrowableArray(Uint8Array);
  /** Given name and surname bounds, two numbers per entry and one more, as in `SharedAddressBook`. */
  readonly #namePartStarts = new GrowableArray(Uint32Array);
  readonly #nameParts = new GrowableArray(Uint8Array);
  /** Whether any entry has a given name or surname, so the part buffers are kept. */
  #hasNameParts = false;
  /** Each entry's key hash, for sorting the entries at build. */
  readonly #hashes = new GrowableArray(Uint32Array);
  /** Whether entries were appended unchecked, so build must sort out duplicates. */
  #appended = false;
  /** Names that setName replaced, by entry: build lays the names out again with them. */
  #renamed: Map<number, Uint8Array> | undefined;
  /** Where the string form of name parts is encoded on the way in. */
  #partScratch = new Uint8Array(256);

  /**
   * Makes an empty builder; `expectedEntries` sizes the hash table up front
   * (a guess is fine: it only saves rehashing as the book grows).
   */
  constructor(expectedEntries = 0) {
    this.#table = newTable(slotCountFor(Math.max(expectedEntries, BUILDER_INITIAL_ENTRIES)));
    this.#keyStarts.reserve(1);
    this.#nameStarts.reserve(1);
  }

  /** How many entries have been added. */
  get size(): number {
    return this.#size;
  }

  /**
   * Adds an entry, with the owner's given name and surname when the source
   * has them. Returns -1 when it was added, or the index of the entry that
   * already has this key (and then adds nothing).
   */
  add(normalizedEmail: string, name: string, givenName?: string, surname?: string): number {
    const keyStart = this.#keyStarts.array[this.#size];
    const keys = this.#keys.reserve(keyStart + normalizedEmail.length * MAX_UTF8_PER_UNIT);
    const keyEnd = writeUtf8(normalizedEmail, keys, keyStart);
    const found = this.#addKey(keyStart, keyEnd);
    if (found >= 0) return found;
    const entry = this.#size - 1;
    this.#writeNameText(entry, name);
    this.#writeNameParts(entry, this.#encodeNameParts(givenName ?? "", surname ?? ""));
    return -1;
  }

  /**
   * Adds an entry from bytes: the normalised key `key[keyStart, keyEnd)` and
   * the name `name[nameStart, nameEnd)`, both UTF-8 (which makes no string).
   * Returns as {@linkcode AddressBookBuilder.add} does.
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
    const found = this.#addKey(at, end);
    if (found >= 0) return found;
    const entry = this.#size - 1;
    this.#writeName(entry, name, nameStart, nameEnd);
    this.#writeNameParts(entry, undefined);
    return -1;
  }

  /**
   * Appends an entry from bytes, as {@linkcode AddressBookBuilder.addBytes}
   * takes them, with its given name and surname when the source has them,
   * without looking for an entry with the same key: duplicates are found by
   * {@linkcode AddressBookBuilder.build}, all at once, by sorting. That is
   * several times faster for a large book than a probe of a table far
   * bigger than the CPU's caches per entry. Returns the entry's index. The
   * bytes are copied before this returns.
   */
  appendBytes(
    key: Uint8Array,
    keyStart: number,
    keyEnd: number,
    name: Uint8Array,
    nameStart: number,
    nameEnd: number,
    nameParts?: NamePartBytes,
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
    this.#size = entry + 1;
    this.#appended = true;
    this.#writeName(entry, name, nameStart, nameEnd);
    this.#writeNameParts(entry, nameParts);
    return entry;
  }

  /** Replaces the name of an entry already added (for "last one wins" loading); not its parts. */
  setName(entry: number, name: string): void {
    (this.#renamed ??= new Map()).set(entry, encoder.encode(name));
  }

  /** Replaces the name of an entry already added with UTF-8 bytes. */
  setNameBytes(entry: number, name: Uint8Array, start: number, end: number): void {
    (this.#renamed ??= new Map()).set(entry, name.slice(start, end));
  }

  /**
   * Makes the book from the buffers written so far; use the builder no more
   * after this. When entries were appended, entries with the same key are
   * resolved here: each is reported to `duplicates.found` (with the first
   * entry that has the key) and only the first, or the last, of them is kept.
   *
   * @throws {RangeError} when a key or name is too long for the book's
   * records (`book/records.ts`), or the records would pass 4 GiB.
   */
  build(duplicates: DuplicateHandling = { keep: "first" }): AddressBook {
    if (this.#renamed !== undefined) this.#layNamesOutAgain(this.#renamed);
    if (this.#appended) return this.#buildSorted(duplicates);
    // Entries added one by one, duplicates refused as they came: their
    // records in the order added, and the table that found them.
    const entries = this.#entries();
    const records = recordsInOrder(entries);
    const slotCount = slotCountFor(entries.size);
    let slots = this.#table;
    if (slots.length !== 2 * slotCount) {
      slots = newTable(slotCount);
      rehash(this.#table, slots);
    }
    this.#table = new Uint32Array(0);
    pointAtRecords(slots, records.recordStarts);
    const hashes = this.#hashes.array.subarray(0, entries.size);
    const { order } = sortByHashAndKey(hashes, new RecordReader(records));
    return AddressBook.fromShared(
      sharedBook(records, entries, slots, bookFingerprint(records, order)),
    );
  }

  /** The entries written so far, as views of the builder's buffers. */
  #entries(): EntryBytes {
    const size = this.#size;
    const keyStarts = this.#keyStarts.array.subarray(0, size + 1);
    const nameStarts = this.#nameStarts.array.subarray(0, size + 1);
    let namePartStarts: Uint32Array = new Uint32Array(new SharedArrayBuffer(0));
    let nameParts: Uint8Array = new Uint8Array(new SharedArrayBuffer(0));
    if (this.#hasNameParts) {
      namePartStarts = this.#namePartStarts.array.subarray(0, 2 * size + 1);
      nameParts = this.#nameParts.array.subarray(0, namePartStarts[2 * size]);
    }
    return {
      size,
      keyStarts,
      keys: this.#keys.array.subarray(0, keyStarts[size]),
      nameStarts,
      names: this.#names.array.subarray(0, nameStarts[size]),
      namePartStarts,
      nameParts,
    };
  }

  /**
   * Lays the entries out by hash (`book/partition.ts`), drops
   * duplicates, which then sit side by side, and fills the table front to back.
   */
  #buildSorted(handling: DuplicateHandling): AddressBook {
    this.#table = new Uint32Array(0);
    const size = this.#size;
    const laidOut = partitionByHash({
      ...this.#entries(),
      hashes: this.#hashes.array.subarray(0, size),
    });
    // The builder's own buffers are garbage now: let them go before the table is made.
    for (
      const array of [
        this.#keyStarts,
        this.#keys,
        this.#nameStarts,
        this.#names,
        this.#namePartStarts,
        this.#nameParts,
        this.#hashes,
      ]
    ) {
      array.release();
    }
    let book: Records & NameParts = laidOut;
    let order: Uint32Array = laidOut.order;
    // Hashes in sorted order, as findDuplicates and fillInOrder read them.
    let hashes: Uint32Array = new Uint32Array(size);
    for (let i = 0; i < size; i++) hashes[i] = laidOut.hashes[order[i]];
    const dropped = findDuplicates(order, hashes, new RecordReader(laidOut), {
      keep: handling.keep,
      found: (first, duplicate) =>
        handling.found?.(laidOut.original[first], laidOut.original[duplicate]),
    });
    if (dropped !== undefined) {
      const kept = keepEntries(dropped, laidOut);
      ({ order, hashes } = renumber(order, hashes, kept.newIndex, dropped));
      book = kept.entries;
    }
    const slots = newTable(slotCountFor(book.size));
    fillInOrder(slots, order, hashes, book.recordStarts);
    return AddressBook.fromShared(sharedBook(book, book, slots, bookFingerprint(book, order)));
  }

  /** Lays the names out in entry order again, with those setName replaced. */
  #layNamesOutAgain(renamed: Map<number, Uint8Array>): void {
    const size = this.#size;
    const starts = this.#nameStarts.array;
    const old = this.#names.array.slice(0, starts[size]);
    let length = 0;
    for (let entry = 0; entry < size; entry++) {
      length += renamed.get(entry)?.length ?? starts[entry + 1] - starts[entry];
    }
    const names = this.#names.reserve(length);
    let at = 0;
    let oldStart = 0;
    for (let entry = 0; entry < size; entry++) {
      const oldEnd = starts[entry + 1];
      const name = renamed.get(entry) ?? old.subarray(oldStart, oldEnd);
      names.set(name, at);
      at += name.length;
      starts[entry + 1] = at;
      oldStart = oldEnd;
    }
    this.#renamed = undefined;
  }

  /**
   * Gives a new entry its key, which is written at the end of `#keys`,
   * unless an entry has it already: returns that entry, or -1 when this one
   * was added (its name and parts are written next).
   */
  #addKey(keyStart: number, keyEnd: number): number {
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
    this.#size = entry + 1;
    return -1;
  }

  /** Writes the newest entry's name from UTF-8 `bytes[start, end)`, byte by byte: a view per entry is slow. */
  #writeName(entry: number, bytes: Uint8Array, start: number, end: number): void {
    let at = this.#nameStarts.array[entry];
    const names = this.#names.reserve(at + end - start);
    for (let i = start; i < end; i++) names[at++] = bytes[i];
    this.#nameStarts.reserve(entry + 2)[entry + 1] = at;
  }

  /** Writes the newest entry's name from a string. */
  #writeNameText(entry: number, text: string): void {
    const at = this.#nameStarts.array[entry];
    const names = this.#names.reserve(at + text.length * MAX_UTF8_PER_UNIT);
    this.#nameStarts.reserve(entry + 2)[entry + 1] = writeUtf8(text, names, at);
  }

  /**
   * Writes the newest entry's given name and surname. Until an entry has
   * one, nothing is written at all; the first that does starts the
   * buffers, in which every earlier entry has empty parts (a new buffer
   * reads as zeros, and zero is where their empty parts start and end).
   */
  #writeNameParts(entry: number, parts: NamePartBytes | undefined): void {
    const empty = parts === undefined ||
      (parts.givenEnd <= parts.givenStart && parts.surnameEnd <= parts.surnameStart);
    if (empty && !this.#hasNameParts) return;
    this.#hasNameParts = true;
    const starts = this.#namePartStarts.reserve(2 * entry + 3);
    let at = starts[2 * entry];
    if (parts !== undefined) {
      const { bytes, givenStart, givenEnd, surnameStart, surnameEnd } = parts;
      const room = Math.max(0, givenEnd - givenStart) + Math.max(0, surnameEnd - surnameStart);
      const out = this.#nameParts.reserve(at + room);
      for (let i = givenStart; i < givenEnd; i++) out[at++] = bytes[i];
      starts[2 * entry + 1] = at;
      for (let i = surnameStart; i < surnameEnd; i++) out[at++] = bytes[i];
    } else {
      starts[2 * entry + 1] = at;
    }
    starts[2 * entry + 2] = at;
  }

  /** A given name and surname given as strings, encoded into scratch space. */
  #encodeNameParts(givenName: string, surname: string): NamePartBytes | undefined {
    if (givenName === "" && surname === "") return undefined;
    const room = (givenName.length + surname.length) * MAX_UTF8_PER_UNIT;
    if (this.#partScratch.length < room) this.#partScratch = new Uint8Array(room);
    const bytes = this.#partScratch;
    const givenEnd = writeUtf8(givenName, bytes, 0);
    const surnameEnd = writeUtf8(surname, bytes, givenEnd);
    return { bytes, givenStart: 0, givenEnd, surnameStart: givenEnd, surnameEnd };
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

/**
 * The book's buffers, with its fingerprint: only these, so that what a
 * build no longer needs (a layout's order and hashes) is not kept.
 */
function sharedBook(
  records: Records,
  parts: NameParts,
  slots: Uint32Array,
  fingerprint: string,
): SharedAddressBook {
  return {
    size: records.size,
    slots,
    records: records.records,
    recordStarts: records.recordStarts,
    namePartStarts: parts.namePartStarts,
    nameParts: parts.nameParts,
    fingerprint,
  };
}

/** Changes a table's slots in place from entry index + 1 to that entry's record's word index + 1. */
function pointAtRecords(slots: Uint32Array, recordStarts: Uint32Array): void {
  for (let slot = 0; slot < slots.length; slot += 2) {
    if (slots[slot] !== 0) slots[slot] = (recordStarts[slots[slot] - 1] >>> 2) + 1;
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
  reader: RecordReader,
  handling: DuplicateHandling,
): Uint8Array | undefined {
  let dropped: Uint8Array | undefined;
  for (let i = 1; i < order.length; i++) {
    if (hashes[i] !== hashes[i - 1] || !reader.sameKey(order[i], order[i - 1])) continue;
    let end = i + 1;
    while (
      end < order.length && hashes[end] === hashes[i] &&
      reader.sameKey(order[end], order[i])
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

/** Copies the records not dropped into new shared buffers, in order; rare: only with duplicates. */
function keepEntries(
  dropped: Uint8Array,
  from: LaidOut,
): { entries: Records & NameParts; newIndex: Uint32Array } {
  const { size, records, recordStarts } = from;
  const reader = new RecordReader(from);
  let keptSize = 0;
  let total = 0;
  for (let entry = 0; entry < size; entry++) {
    if (dropped[entry]) continue;
    keptSize++;
    total += recordBytes(
      reader.keyEnd(entry) - reader.keyStart(entry),
      reader.nameEnd(entry) - reader.nameStart(entry),
    );
  }
  const kept = new Uint8Array(new SharedArrayBuffer(total));
  const keptWords = new Uint32Array(kept.buffer);
  const keptStarts = new Uint32Array(new SharedArrayBuffer(4 * keptSize));
  const newIndex = new Uint32Array(size);
  const keptEntries = new Uint32Array(keptSize);
  let next = 0;
  let at = 0;
  for (let entry = 0; entry < size; entry++) {
    if (dropped[entry]) continue;
    newIndex[entry] = next;
    keptEntries[next] = entry;
    keptStarts[next] = at;
    const length = recordBytes(
      reader.keyEnd(entry) - reader.keyStart(entry),
      reader.nameEnd(entry) - reader.nameStart(entry),
    );
    kept.set(records.subarray(recordStarts[entry], recordStarts[entry] + length), at);
    keptWords[at >>> 2] = next; // the header's entry index
    at += length;
    next++;
  }
  const entries: Records & NameParts = {
    size: keptSize,
    records: kept,
    recordStarts: keptStarts,
    namePartStarts: from.namePartStarts,
    nameParts: from.nameParts,
  };
  if (from.namePartStarts.length > 0) Object.assign(entries, gatherNameParts(from, keptEntries));
  return { entries, newIndex };
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
 * which is where a probe from their home looks after the end. A slot holds
 * its entry's record's word index + 1, from `recordStarts`.
 */
function fillInOrder(
  slots: Uint32Array,
  order: Uint32Array,
  hashes: Uint32Array,
  recordStarts: Uint32Array,
): void {
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
    slots[2 * slot] = (recordStarts[order[i]] >>> 2) + 1;
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
 * The most a growable buffer may grow to: offsets into the keys and names
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
