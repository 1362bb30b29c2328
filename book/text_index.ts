/**
 * A substring index over the book's searchable text: for fragments of
 * text, which entries may contain them all, found from posting lists
 * instead of a scan of the book. Directory front ends (LDAP) use it for
 * autocomplete filters such as `(cn=*ada*)`, whose leading wildcard no
 * hash table or sorted key can serve.
 *
 * **What is indexed.** Each entry's email (the lookup key), its name and,
 * where the source had them, its given name and surname, each case-folded
 * by {@linkcode foldText} and taken as UTF-8 bytes. The values are indexed
 * together, not field by field: a candidate is an entry that has every
 * fragment's trigrams somewhere among its values, and the caller checks
 * each candidate against the field it asked about. Values are kept apart
 * (no trigram spans two of them), and a given name or surname split from
 * the name needs nothing of its own, being part of the name.
 *
 * **Trigrams of bytes.** Every three consecutive bytes of a folded value,
 * with two zero bytes after its end, is a key; each key has the ascending
 * list of entries whose values hold it. A fragment of three bytes or more
 * can only be in an entry that holds all of its trigrams, so the answer is
 * the intersection of their lists, rarest first (at most
 * {@linkcode MAX_INTERSECTED} of them; one more than
 * {@linkcode INTERSECT_RATIO} times longer than the rarest is not read,
 * since checking the few more candidates costs less). The lists are read
 * as the caller goes ({@linkcode CandidateCursor}), so a search that stops
 * at a size limit reads only their beginnings. Because UTF-8 never starts
 * a character inside another, byte containment of folded text is
 * character containment.
 *
 * **Fragments of one or two bytes** (`*a*`, `*zo*`, one Greek or Cyrillic
 * letter): thanks to the padding, every occurrence of one starts some
 * trigram, and the keys that start with it are one run of the sorted
 * keys, so the union of that run's lists (merged through a heap as
 * read) is the answer. When every
 * fragment is that short and its run holds more than the index's longest
 * stored list, the index declines (`undefined`): the caller scans, which
 * then finds matches densely and stops at its size limit soon.
 *
 * **Stop-grams.** A trigram in more than {@linkcode TextIndexOptions.stopFraction}
 * of the entries (`@ex`, `com` in a book of one domain) tells little and
 * would cost about a byte per entry: its list is not stored, and a query
 * ignores it. A fragment made only of such trigrams cannot be planned.
 *
 * **Layout.** Sorted keys, their list lengths and byte offsets, and the
 * lists themselves as gaps between entry numbers in LEB128 varints (one
 * byte for a gap under 128). A list longer than {@linkcode SKIP_BLOCK}
 * postings has a skip pointer per block of that many (the block's last
 * entry, and where the next block starts), so that a seek far ahead, as an
 * intersection asks of its longer lists, gallops over the skips and
 * decodes one block, not every posting on the way. All of it is in
 * `SharedArrayBuffer`s: built once per
 * book (by the server in the thread that loads the book, not in the
 * threads that serve it), posted to worker threads with
 * {@linkcode TextIndex.toShared} and {@linkcode TextIndex.fromShared} as
 * the book is, and found by {@linkcode TextIndex.of}. The build reads the
 * book twice (count, then write), so it needs no temporary list of
 * postings: only a hash table of the distinct trigrams. On books from
 * `deno task gen` it takes about 37 bytes an entry (7 of them skips) and
 * builds in about as long as the book takes to load (1.4 s for a million
 * entries; see BENCHMARKS.md).
 *
 * ```ts
 * import { AddressBookBuilder } from "./addressbook.ts";
 * import { TextIndex } from "./text_index.ts";
 *
 * const builder = new AddressBookBuilder();
 * builder.add("ada@example.com", "Ada Lovelace");
 * builder.add("zoe@example.org", "Zoë Ñúñez");
 * const book = builder.build();
 * const index = TextIndex.build(book);
 * const found = index.candidates(["ZOË"]); // the entry of zoe@example.org, to be checked by the caller
 * found?.length; // 1
 * ```
 *
 * @module
 */

import { encodeSmall } from "../common/small_arrays.ts";
import type { AddressBook } from "./addressbook.ts";
import { MAX_UTF8_PER_UNIT, writeUtf8 } from "../common/utf8.ts";

const decoder = new TextDecoder();

/** Bytes per key: trigrams. */
export const GRAM_BYTES = 3;

/**
 * A list at most this many times longer than the rarest of a fragment's
 * lists is intersected with it; a longer one is left to the caller's
 * check. Checking an entry costs some 30 to 100 times more than decoding
 * a posting, but a fragment's trigrams go together ("lov", "ove", "vel"),
 * so a commoner list takes out few of the rarest's entries while it costs
 * all of its own.
 */
export const INTERSECT_RATIO = 8;

/** At most this many of a fragment's lists are intersected, the rarest. */
export const MAX_INTERSECTED = 4;

/** The default share of the entries over which a trigram's list is not stored. */
export const DEFAULT_STOP_FRACTION = 1 / 4;

/** Lists of up to this many entries are always stored, so a small book keeps every list. */
const MIN_STOP_LENGTH = 4096;

/** The values not in plain ASCII: only those need Unicode folding. */
const NON_ASCII = /[\u0080-\uffff]/;
const FINAL_SIGMA = /ς/g;

/**
 * The case folding used for matching: `toLowerCase()` (Unicode's full
 * lower-case mapping, locale-independent), then NFC, and the final sigma
 * `ς` as `σ`, so that a word's last letter folds the same whether it was
 * typed alone or in context. It is not full Unicode case folding (`ß` stays
 * `ß`, not `ss`). A lone surrogate becomes U+FFFD, as UTF-8 encoding
 * makes it, so that half of an emoji matches nothing. Plain ASCII only has
 * its letters lowered.
 *
 * ```ts
 * import { foldText } from "./text_index.ts";
 *
 * foldText("ZOË Ñúñez"); // "zoë ñúñez"
 * foldText("ΠΑΠΠΆΣ"); // "παππάσ"
 * ```
 */
export function foldText(text: string): string {
  const lower = text.toLowerCase();
  if (!NON_ASCII.test(lower)) return lower;
  return lower.toWellFormed().normalize("NFC").replace(FINAL_SIGMA, "σ");
}

/** Marks (combining characters): they compose with what comes before them. */
const MARK = /\p{M}/u;

/**
 * For each code point U+0080 to U+07FF (two bytes in UTF-8): what
 * {@linkcode foldText} makes of it alone, when that is one code point of
 * two bytes too and no composition can involve it (it is no mark and NFC
 * keeps it); 0 otherwise. Built once from `foldText` itself, so the two
 * cannot disagree. In this range no composition has a starter as its
 * second character, so folding such characters one by one folds the text.
 */
const TWO_BYTE_FOLDS: Uint16Array = (() => {
  const table = new Uint16Array(0x800);
  for (let point = 0x80; point < 0x800; point++) {
    const char = String.fromCharCode(point);
    if (MARK.test(char) || char.normalize("NFC") !== char) continue;
    const folded = foldText(char);
    const code = folded.charCodeAt(0);
    if (folded.length === 1 && code >= 0x80 && code < 0x800) table[point] = code;
  }
  return table;
})();

/**
 * {@linkcode foldText} on UTF-8, byte by byte, for the common case: text of
 * ASCII and two-byte characters (Latin, Greek, Cyrillic, Hebrew, Arabic
 * letters) with no combining marks. Writes the folded bytes of
 * `bytes[start, end)` into `out` from 0 (they are as long as the input)
 * and returns their length, or returns -1 when the text needs the full
 * fold (a mark, a character of three or four bytes, or one that folds to
 * more than one).
 *
 * ```ts
 * import { foldSimpleUtf8 } from "./text_index.ts";
 *
 * const out = new Uint8Array(16);
 * const length = foldSimpleUtf8(new TextEncoder().encode("ZOË"), 0, 4, out);
 * new TextDecoder().decode(out.subarray(0, length)); // "zoë"
 * ```
 */
export function foldSimpleUtf8(
  bytes: Uint8Array,
  start: number,
  end: number,
  out: Uint8Array,
): number {
  let at = 0;
  for (let i = start; i < end;) {
    const byte = bytes[i];
    if (byte < 0x80) {
      out[at++] = lower(byte);
      i++;
      continue;
    }
    if (byte < 0xc2 || byte >= 0xe0 || i + 1 >= end) return -1;
    const folded = TWO_BYTE_FOLDS[((byte & 0x1f) << 6) | (bytes[i + 1] & 0x3f)];
    if (folded === 0) return -1;
    out[at++] = 0xc0 | (folded >> 6);
    out[at++] = 0x80 | (folded & 0x3f);
    i += 2;
  }
  return at;
}

/** How an index is built. */
export interface TextIndexOptions {
  /**
   * A trigram held by more than this share of the entries (and more than
   * 4096 of them) has no stored list; {@linkcode DEFAULT_STOP_FRACTION} by
   * default, 1 stores every list.
   */
  stopFraction?: number;
}

/** The flat buffers of a built index, which can be posted to a worker as they are. */
export interface SharedTextIndex {
  /** How many entries the indexed book has. */
  entries: number;
  /** The distinct trigrams, ascending: byte 0 in bits 16–23, byte 1 in 8–15, byte 2 in 0–7. */
  keys: Uint32Array;
  /** How many entries hold each trigram. */
  counts: Uint32Array;
  /** Where each trigram's list starts in `postings`, and the end of the last: empty when not stored. */
  starts: Uint32Array;
  /** The lists: for each entry in ascending order, its distance from the one before (from -1), as a LEB128 varint. */
  postings: Uint8Array;
  /** Where each trigram's skips start in `skips` (in skips, not numbers), and the end of the last. */
  skipStarts: Uint32Array;
  /**
   * Skip pointers over the stored lists longer than {@linkcode SKIP_BLOCK}:
   * for each whole block of that many postings, the block's last entry and
   * the offset in `postings` after it, side by side.
   */
  skips: Uint32Array;
  /** The longest list stored: longer ones (stop-grams) are counted but not stored. */
  maxStored: number;
}

/** Each book's index in this thread: built or attached once, used by every search. */
const attached = new WeakMap<AddressBook, TextIndex>();

/**
 * A built substring index over one book. Build it with
 * {@linkcode TextIndex.build}, or wrap one built elsewhere with
 * {@linkcode TextIndex.fromShared}.
 */
export class TextIndex {
  readonly #data: SharedTextIndex;

  private constructor(data: SharedTextIndex) {
    this.#data = data;
  }

  /**
   * Indexes a book: every entry's email, name, given name and surname.
   *
   * @throws {RangeError} when `stopFraction` is not a number in (0, 1].
   */
  static build(book: AddressBook, options: TextIndexOptions = {}): TextIndex {
    const stopFraction = options.stopFraction ?? DEFAULT_STOP_FRACTION;
    if (!(stopFraction > 0 && stopFraction <= 1)) {
      throw new RangeError(`The stop fraction must be in (0, 1], not ${stopFraction}.`);
    }
    return new TextIndex(buildIndex(new GramReader(book), stopFraction));
  }

  /**
   * An index of given lists, built as {@linkcode TextIndex.build} builds
   * one from a book (every list stored): each key, three bytes of folded
   * text such as `"abc"`, with the ascending entries that hold it, over a
   * book of `entries` entries. For tests and tools that need lists of a
   * chosen shape without a book to make them.
   *
   * ```ts
   * import { TextIndex } from "./text_index.ts";
   *
   * const index = TextIndex.fromLists(1000, new Map([["abc", [3, 500, 999]]]));
   * index.cursor(["ABC"])?.seek(4); // 500
   * ```
   *
   * @throws {RangeError} when a key is not three bytes, or a list is not
   * ascending within [0, entries).
   */
  static fromLists(entries: number, lists: ReadonlyMap<string, readonly number[]>): TextIndex {
    return new TextIndex(buildIndex(new ListsReader(entries, lists), 1));
  }

  /** Wraps buffers made by {@linkcode TextIndex.toShared}, in this thread or another. */
  static fromShared(data: SharedTextIndex): TextIndex {
    return new TextIndex(data);
  }

  /**
   * The index of `book`: the one attached to it ({@linkcode TextIndex.attach}),
   * else one built now and attached, so that a book is indexed once in a thread.
   */
  static of(book: AddressBook): TextIndex {
    let index = attached.get(book);
    if (index === undefined) attached.set(book, index = TextIndex.build(book));
    return index;
  }

  /**
   * The index attached to `book` in this thread, if any: what a thread
   * posts beside the book so that the receiver need not build it again.
   */
  static attachedTo(book: AddressBook): TextIndex | undefined {
    return attached.get(book);
  }

  /**
   * Attaches an index built elsewhere (the loading thread's, posted with
   * the book) to `book`, for {@linkcode TextIndex.of}.
   *
   * @throws {RangeError} when the index was built for a book of another size.
   */
  static attach(book: AddressBook, index: TextIndex): void {
    if (index.entries !== book.size) {
      throw new RangeError(
        `The index has ${index.entries} entries but the book ${book.size}: it is another book's.`,
      );
    }
    attached.set(book, index);
  }

  /** The index's buffers, to post to a worker; they are shared, not copied. */
  toShared(): SharedTextIndex {
    return this.#data;
  }

  /** How many entries the indexed book has. */
  get entries(): number {
    return this.#data.entries;
  }

  /** The bytes the index's buffers take. */
  get byteLength(): number {
    const { keys, counts, starts, postings, skipStarts, skips } = this.#data;
    return keys.byteLength + counts.byteLength + starts.byteLength + postings.byteLength +
      skipStarts.byteLength + skips.byteLength;
  }

  /** How many distinct trigrams the book has, and how many of them have no stored list. */
  get gramCounts(): { distinct: number; stopped: number } {
    const { counts, maxStored } = this.#data;
    let stopped = 0;
    for (let d = 0; d < counts.length; d++) if (counts[d] > maxStored) stopped++;
    return { distinct: counts.length, stopped };
  }

  /**
   * The entries that may have one value (email, name, given name or
   * surname) containing every fragment, each case-folded by
   * {@linkcode foldText}: a cursor over ascending entry numbers, a superset
   * of the true matches, which the caller checks, read only as far as the
   * caller goes. Returns `undefined` when the index cannot narrow the
   * search (no fragment, or only short or stop-gram ones with too many
   * entries): then every entry is a candidate.
   *
   * A required prefix or suffix is just one more fragment here.
   */
  cursor(fragments: readonly string[]): CandidateCursor | undefined {
    const texts = fragments.map((fragment) => encodeSmall(foldText(fragment)));
    const { counts, maxStored } = this.#data;
    const lists = new Set<number>();
    for (const text of texts) {
      for (let i = 0; i + GRAM_BYTES <= text.length; i++) {
        const d = this.#find((text[i] << 16) | (text[i + 1] << 8) | text[i + 2]);
        if (d < 0) return new ArrayCursor(NO_ENTRIES);
        if (counts[d] <= maxStored) lists.add(d);
      }
    }
    if (lists.size === 0) return this.#shortCursor(texts);
    const rarestFirst = [...lists].sort((a, b) => counts[a] - counts[b]);
    const limit = INTERSECT_RATIO * counts[rarestFirst[0]];
    const cursors = rarestFirst.filter((d) => counts[d] <= limit).slice(0, MAX_INTERSECTED)
      .map((d) => new ListCursor(this.#data, d));
    return cursors.length === 1 ? cursors[0] : new IntersectCursor(cursors);
  }

  /** {@linkcode TextIndex.cursor}'s candidates, all read: for tests and small callers. */
  candidates(fragments: readonly string[]): Uint32Array | undefined {
    const cursor = this.cursor(fragments);
    return cursor === undefined ? undefined : drain(cursor);
  }

  /**
   * Candidates for fragments of one or two bytes: of each fragment's run of
   * keys that start with it, the smallest run without a stop-gram, if its
   * lists together are no longer than the longest stored list, merged as
   * read.
   */
  #shortCursor(texts: Uint8Array[]): CandidateCursor | undefined {
    const { counts, maxStored } = this.#data;
    let best: [number, number] | undefined;
    let bestTotal = Infinity;
    for (const text of texts) {
      if (text.length === 0 || text.length >= GRAM_BYTES) continue;
      const low = text.length === 1 ? text[0] << 16 : (text[0] << 16) | (text[1] << 8);
      const high = low + (text.length === 1 ? 0x10000 : 0x100);
      const first = this.#lowerBound(low);
      const end = this.#lowerBound(high);
      let total = 0;
      for (let d = first; d < end && total <= maxStored; d++) {
        total = counts[d] > maxStored ? Infinity : total + counts[d];
      }
      if (total < bestTotal) {
        bestTotal = total;
        best = [first, end];
      }
    }
    if (best === undefined || bestTotal > maxStored) return undefined;
    const [first, end] = best;
    const cursors: CandidateCursor[] = [];
    for (let d = first; d < end; d++) cursors.push(new ListCursor(this.#data, d));
    return cursors.length === 1 ? cursors[0] : new UnionCursor(cursors, this.#data.entries);
  }

  /** The position of a key among the sorted keys, or -1. */
  #find(key: number): number {
    const d = this.#lowerBound(key);
    return d < this.#data.keys.length && this.#data.keys[d] === key ? d : -1;
  }

  /** The first position whose key is not below `key`. */
  #lowerBound(key: number): number {
    const { keys } = this.#data;
    let low = 0;
    let high = keys.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (keys[middle] < key) low = middle + 1;
      else high = middle;
    }
    return low;
  }
}

// --- Candidates, read as needed ---

/**
 * Candidate entries in ascending order, read only as far as asked: a
 * search with a size limit stops reading the lists once it has enough.
 * Every seek of one search must ask for a target no lower than the one
 * before it, so that one cursor can be shared by several parts of a plan
 * (Thunderbird's filter asks the same fragment of four attributes).
 */
export interface CandidateCursor {
  /** At most how many entries the cursor gives in all: a plan reads the smallest first. */
  readonly estimate: number;
  /** The first candidate not below `target`, or -1 when there is none. */
  seek(target: number): number;
}

const NO_ENTRIES = new Uint32Array(0);

/** Every candidate of a cursor, in an array. */
export function drain(cursor: CandidateCursor): Uint32Array {
  const found: number[] = [];
  for (let entry = cursor.seek(0); entry >= 0; entry = cursor.seek(entry + 1)) found.push(entry);
  return Uint32Array.from(found);
}

/** Candidates from an ascending array. */
export class ArrayCursor implements CandidateCursor {
  readonly #entries: Uint32Array;
  #at = 0;

  /** A cursor over `entries`, which must be ascending. */
  constructor(entries: Uint32Array) {
    this.#entries = entries;
  }

  /** See {@linkcode CandidateCursor.estimate}. */
  get estimate(): number {
    return this.#entries.length;
  }

  /** See {@linkcode CandidateCursor.seek}. */
  seek(target: number): number {
    const entries = this.#entries;
    let at = this.#at;
    while (at < entries.length && entries[at] < target) at++;
    this.#at = at;
    return at < entries.length ? entries[at] : -1;
  }
}

/**
 * One trigram's stored list, decoded as read. A seek past the end of the
 * current block takes the skip pointers to the last block that ends
 * below the target (galloping, then halving, over the skips), and decodes
 * only within that block.
 */
class ListCursor implements CandidateCursor {
  readonly estimate: number;
  readonly #postings: Uint8Array;
  readonly #end: number;
  readonly #skips: Uint32Array;
  readonly #skipEnd: number;
  #at: number;
  /** The last entry decoded: -1 before the first; {@linkcode PAST_THE_END} after the last. */
  #entry = -1;
  /** The skip of the block the cursor is in (or at the end of): no entry before it has been passed. */
  #skip: number;
  /** That block's last entry; above every entry in the last block, which has no skip. */
  #blockLast: number;

  constructor(data: SharedTextIndex, d: number) {
    this.estimate = data.counts[d];
    this.#postings = data.postings;
    this.#at = data.starts[d];
    this.#end = data.starts[d + 1];
    this.#skips = data.skips;
    this.#skip = data.skipStarts[d];
    this.#skipEnd = data.skipStarts[d + 1];
    this.#blockLast = this.#skip < this.#skipEnd
      ? this.#skips[SKIP_WIDTH * this.#skip]
      : PAST_THE_END;
  }

  seek(target: number): number {
    if (this.#entry >= target) return this.#entry === PAST_THE_END ? -1 : this.#entry;
    if (this.#blockLast < target) this.#skipBlocks(target);
    let entry = this.#entry;
    let at = this.#at;
    const postings = this.#postings;
    const end = this.#end;
    while (at < end) {
      let gap = 0;
      let shift = 1;
      let byte;
      do {
        byte = postings[at++];
        gap += (byte & 0x7f) * shift;
        shift *= 128;
      } while (byte & 0x80);
      entry += gap;
      if (entry >= target) {
        this.#at = at;
        this.#entry = entry;
        return entry;
      }
    }
    this.#at = at;
    this.#entry = PAST_THE_END;
    return -1;
  }

  /** Moves to the start of the first block that may hold `target`: the current one ends below it. */
  #skipBlocks(target: number): void {
    const skips = this.#skips;
    const passed = lastBelow(skips, this.#skip, this.#skipEnd, target);
    this.#entry = skips[SKIP_WIDTH * passed];
    this.#at = skips[SKIP_WIDTH * passed + 1];
    this.#skip = passed + 1;
    this.#blockLast = this.#skip < this.#skipEnd ? skips[SKIP_WIDTH * this.#skip] : PAST_THE_END;
  }
}

/**
 * Of the skips `[from, end)` (pairs in `skips`), the last whose block ends
 * below `target`, given that `from`'s does: galloping (1, 2, 4, ... skips
 * ahead), then halving, so a seek far ahead costs the logarithm of the
 * distance and a seek to the next block a step or two.
 */
function lastBelow(skips: Uint32Array, from: number, end: number, target: number): number {
  let below = from;
  let step = 1;
  let above = from + 1;
  while (above < end && skips[SKIP_WIDTH * above] < target) {
    below = above;
    step *= 2;
    above = below + step;
  }
  if (above > end) above = end;
  while (above - below > 1) {
    const middle = (below + above) >>> 1;
    if (skips[SKIP_WIDTH * middle] < target) below = middle;
    else above = middle;
  }
  return below;
}

/** Above every entry number: a list cursor read to its end. */
const PAST_THE_END = 2 ** 32;

/**
 * The entries every cursor gives (leapfrog: the first, the rarest, leads;
 * each other is asked for its first candidate at or after the lead's, and
 * the lead jumps to any later one).
 */
export class IntersectCursor implements CandidateCursor {
  readonly #cursors: readonly CandidateCursor[];

  /** The intersection of `cursors`, best given rarest first. */
  constructor(cursors: readonly CandidateCursor[]) {
    this.#cursors = cursors;
  }

  /** See {@linkcode CandidateCursor.estimate}: the rarest cursor's. */
  get estimate(): number {
    let estimate = Infinity;
    for (const cursor of this.#cursors) estimate = Math.min(estimate, cursor.estimate);
    return estimate;
  }

  /** See {@linkcode CandidateCursor.seek}. */
  seek(target: number): number {
    const cursors = this.#cursors;
    let entry = cursors[0].seek(target);
    let agreed = 1;
    for (let k = 1; entry >= 0 && agreed < cursors.length; k = (k + 1) % cursors.length) {
      const found = cursors[k].seek(entry);
      if (found === entry) {
        agreed++;
      } else {
        entry = found;
        agreed = 1;
      }
    }
    return entry;
  }
}

/**
 * The entries any cursor gives: a heap of the cursors by their current
 * entry, so a step costs the logarithm of their number (a one-letter
 * fragment's run can hold hundreds of lists).
 */
export class UnionCursor implements CandidateCursor {
  readonly #cursors: readonly CandidateCursor[];
  readonly #entries: number;
  /** The heap: each live cursor's current entry, and which cursor; smallest on top. */
  readonly #heapEntries: number[] = [];
  readonly #heapCursors: number[] = [];
  #started = false;

  /** The union of `cursors`, over a book of `entries` entries (the most it can give). */
  constructor(cursors: readonly CandidateCursor[], entries: number) {
    this.#cursors = cursors;
    this.#entries = entries;
  }

  /** See {@linkcode CandidateCursor.estimate}: the sum of the cursors', at most the book's size. */
  get estimate(): number {
    let estimate = 0;
    for (const cursor of this.#cursors) estimate += cursor.estimate;
    return Math.min(estimate, this.#entries);
  }

  /** See {@linkcode CandidateCursor.seek}. */
  seek(target: number): number {
    const entries = this.#heapEntries;
    const cursors = this.#heapCursors;
    if (!this.#started) {
      this.#started = true;
      this.#cursors.forEach((cursor, k) => {
        const entry = cursor.seek(target);
        if (entry >= 0) this.#push(entry, k);
      });
    }
    while (entries.length > 0 && entries[0] < target) {
      const entry = this.#cursors[cursors[0]].seek(target);
      if (entry >= 0) {
        entries[0] = entry;
      } else {
        entries[0] = entries[entries.length - 1];
        cursors[0] = cursors[cursors.length - 1];
        entries.pop();
        cursors.pop();
      }
      this.#siftDown();
    }
    return entries.length > 0 ? entries[0] : -1;
  }

  #push(entry: number, cursor: number): void {
    const entries = this.#heapEntries;
    const cursors = this.#heapCursors;
    let at = entries.length;
    entries.push(entry);
    cursors.push(cursor);
    while (at > 0) {
      const parent = (at - 1) >> 1;
      if (entries[parent] <= entry) break;
      entries[at] = entries[parent];
      cursors[at] = cursors[parent];
      at = parent;
    }
    entries[at] = entry;
    cursors[at] = cursor;
  }

  #siftDown(): void {
    const entries = this.#heapEntries;
    const cursors = this.#heapCursors;
    const size = entries.length;
    if (size === 0) return;
    const entry = entries[0];
    const cursor = cursors[0];
    let at = 0;
    for (;;) {
      let child = 2 * at + 1;
      if (child >= size) break;
      if (child + 1 < size && entries[child + 1] < entries[child]) child++;
      if (entries[child] >= entry) break;
      entries[at] = entries[child];
      cursors[at] = cursors[child];
      at = child;
    }
    entries[at] = entry;
    cursors[at] = cursor;
  }
}

// --- Building ---

/** What the build reads: each entry's trigram keys, in ascending order of entries, twice. */
interface GramSource {
  /** How many entries there are. */
  readonly size: number;
  /** The keys of the last entry read, with repeats; {@linkcode GramSource.read} says how many. */
  readonly keys: Uint32Array;
  /** Reads an entry's keys into {@linkcode GramSource.keys}; returns how many. */
  read(entry: number): number;
  /** The next entry after `entry` (from -1) that may hold keys, or {@linkcode GramSource.size}. */
  after(entry: number): number;
}

/** Builds the buffers: count every trigram's entries and bytes, lay the lists out, then write them. */
function buildIndex(source: GramSource, stopFraction: number): SharedTextIndex {
  const table = new GramTable();
  for (let entry = source.after(-1); entry < source.size; entry = source.after(entry)) {
    const grams = source.read(entry);
    const keys = source.keys;
    for (let i = 0; i < grams; i++) table.count(keys[i], entry);
  }
  const maxStored = Math.max(MIN_STOP_LENGTH, Math.floor(source.size * stopFraction));
  const layout = table.layOut(maxStored);
  const postings = new Uint8Array(new SharedArrayBuffer(layout.starts[layout.keys.length]));
  const skips = new Uint32Array(
    new SharedArrayBuffer(SKIP_WIDTH * 4 * layout.skipStarts[layout.keys.length]),
  );
  for (let entry = source.after(-1); entry < source.size; entry = source.after(entry)) {
    const grams = source.read(entry);
    const keys = source.keys;
    for (let i = 0; i < grams; i++) table.write(keys[i], entry, postings, skips);
  }
  return { entries: source.size, ...layout, postings, skips, maxStored };
}

/** Writes a LEB128 varint of a gap (under 2^31) at `at`; returns the offset after it. */
function writeVarint(out: Uint8Array, at: number, value: number): number {
  while (value >= 0x80) {
    out[at++] = (value & 0x7f) | 0x80;
    value >>>= 7;
  }
  out[at++] = value;
  return at;
}

/** The bytes a LEB128 varint of `value` takes. */
function varintLength(value: number): number {
  if (value < 0x80) return 1;
  if (value < 0x4000) return 2;
  if (value < 0x200000) return 3;
  if (value < 0x10000000) return 4;
  return 5;
}

/**
 * Reads an entry's trigrams from the book's buffers: a value in plain
 * ASCII straight from its bytes, lowering its letters as it goes (which is
 * all {@linkcode foldText} does to ASCII); any other value decoded, folded
 * and encoded again.
 */
class GramReader implements GramSource {
  readonly #book: AddressBook;
  readonly size: number;
  /** The trigram keys of the last entry read, with repeats; {@linkcode GramReader.read} says how many. */
  keys = new Uint32Array(256);
  #folded = new Uint8Array(256);

  constructor(book: AddressBook) {
    this.#book = book;
    this.size = book.size;
  }

  /** Every entry has keys: its email's at least. */
  after(entry: number): number {
    return entry + 1;
  }

  /** Reads an entry's trigrams into {@linkcode GramReader.keys}; returns how many. */
  read(entry: number): number {
    const book = this.#book;
    const { namePartStarts, nameParts } = book.toShared();
    const text = book.text;
    let count = this.#value(text, book.keyStart(entry), book.keyEnd(entry), 0);
    count = this.#value(text, book.nameStart(entry), book.nameEnd(entry), count);
    if (namePartStarts.length > 0) {
      const given = namePartStarts[2 * entry];
      const surname = namePartStarts[2 * entry + 1];
      count = this.#value(nameParts, given, surname, count);
      count = this.#value(nameParts, surname, namePartStarts[2 * entry + 2], count);
    }
    return count;
  }

  /** Appends the trigrams of the value `bytes[start, end)` from `count`; returns the new count. */
  #value(bytes: Uint8Array, start: number, end: number, count: number): number {
    let ascii = true;
    for (let i = start; i < end; i++) {
      if (bytes[i] >= 0x80) {
        ascii = false;
        break;
      }
    }
    if (!ascii) {
      if (this.#folded.length < end - start) this.#folded = new Uint8Array(2 * (end - start));
      let length = foldSimpleUtf8(bytes, start, end, this.#folded);
      if (length < 0) {
        const folded = foldText(decoder.decode(bytes.subarray(start, end)));
        if (this.#folded.length < folded.length * MAX_UTF8_PER_UNIT) {
          this.#folded = new Uint8Array(folded.length * MAX_UTF8_PER_UNIT);
        }
        length = writeUtf8(folded, this.#folded, 0);
      }
      bytes = this.#folded;
      start = 0;
      end = length;
    }
    if (this.keys.length < count + end - start) {
      const keys = new Uint32Array(2 * (count + end - start));
      keys.set(this.keys.subarray(0, count));
      this.keys = keys;
    }
    const keys = this.keys;
    // b1, b2: the next two bytes, lowered; zero past the end.
    let b1 = start < end ? lower(bytes[start]) : 0;
    let b2 = start + 1 < end ? lower(bytes[start + 1]) : 0;
    for (let i = start; i < end; i++) {
      const b0 = b1;
      b1 = b2;
      b2 = i + 2 < end ? lower(bytes[i + 2]) : 0;
      keys[count++] = (b0 << 16) | (b1 << 8) | b2;
    }
    return count;
  }
}

/** Reads each entry's keys from given lists, for {@linkcode TextIndex.fromLists}. */
class ListsReader implements GramSource {
  readonly size: number;
  readonly keys: Uint32Array;
  /** For each key, its entries, ascending, and which of them the next read looks for. */
  readonly #lists: { key: number; entries: readonly number[]; next: number }[] = [];

  constructor(size: number, lists: ReadonlyMap<string, readonly number[]>) {
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new RangeError(`A book's size must be a whole number, not ${size}.`);
    }
    this.size = size;
    this.keys = new Uint32Array(lists.size);
    for (const [gram, entries] of lists) {
      const bytes = encodeSmall(gram);
      if (bytes.length !== GRAM_BYTES) {
        throw new RangeError(`A key must be ${GRAM_BYTES} bytes, not ${JSON.stringify(gram)}.`);
      }
      entries.forEach((entry, i) => {
        if (!(Number.isSafeInteger(entry) && entry > (entries[i - 1] ?? -1) && entry < size)) {
          throw new RangeError(
            `The list of ${JSON.stringify(gram)} is not ascending within [0, ${size}) at ${entry}.`,
          );
        }
      });
      this.#lists.push({ key: (bytes[0] << 16) | (bytes[1] << 8) | bytes[2], entries, next: 0 });
    }
  }

  read(entry: number): number {
    let count = 0;
    for (const list of this.#lists) {
      if (list.entries[list.next] !== entry) continue;
      list.next++;
      this.keys[count++] = list.key;
    }
    return count;
  }

  /** The least next entry of any list; from -1, every list starts again (the second pass). */
  after(entry: number): number {
    let next = this.size;
    for (const list of this.#lists) {
      if (entry < 0) list.next = 0;
      next = Math.min(next, list.entries[list.next] ?? this.size);
    }
    return next;
  }
}

const ASCII_A = 0x41;
const ASCII_Z = 0x5a;
const ASCII_CASE_BIT = 0x20;

/** An ASCII capital as its small letter; any other byte as it is. */
function lower(byte: number): number {
  return byte >= ASCII_A && byte <= ASCII_Z ? byte | ASCII_CASE_BIT : byte;
}

/**
 * Postings a block of a list holds: a list longer than this has a skip
 * pointer for each of its whole blocks, so that a seek decodes at most one
 * block. A power of two.
 */
export const SKIP_BLOCK = 32;
/** Numbers a skip takes in {@linkcode SharedTextIndex.skips}: its block's last entry, then the offset after it. */
const SKIP_WIDTH = 2;

/** More than any slot number of the build's table: it never holds more than 2^24 keys at half load. */
const SLOT_SPAN = 2 ** 26;

/** The numbers of one slot of the build's table, side by side so that a visit touches one cache line. */
const SLOT_KEY = 0;
const SLOT_LAST = 1;
const SLOT_COUNT = 2;
const SLOT_BYTES = 3;
const SLOT_WIDTH = 4;
/** The most bytes of lists: a slot's cursor is a signed 32-bit number. */
const MAX_POSTING_BYTES = 2 ** 31 - 1;
/** Once laid out, a slot's count is where its list is written next; this when it is not stored. */
const NOT_STORED = -1;
/**
 * Once laid out, a slot's bytes count the postings written, from its
 * first skip times {@linkcode SKIP_BLOCK} (so that a block's end falls on
 * a multiple of it, and its skip's place follows); this when it has no skips.
 */
const NO_SKIPS = -1;

/**
 * The build's table of distinct trigrams (open addressing): for each, the
 * last entry that held it (so an entry holding one twice counts once, and
 * the gap to the next is known), how many entries hold it and how many
 * bytes its list takes. Entries are read in ascending order, twice: to
 * count ({@linkcode GramTable.count}), then to write
 * ({@linkcode GramTable.write}).
 */
class GramTable {
  /** Per slot: key + 1 (0 for an empty slot), last entry, count (then cursor), bytes. */
  #slots = new Int32Array(SLOT_WIDTH << 12);
  #mask = (1 << 12) - 1;
  #shift = 32 - 12;
  #used = 0;

  /** Counts `key` for `entry` (entries come in ascending order). */
  count(key: number, entry: number): void {
    let slots = this.#slots;
    let at = SLOT_WIDTH * this.#find(key);
    if (slots[at + SLOT_KEY] === 0) {
      if (2 * (this.#used + 1) > this.#mask + 1) {
        this.#grow();
        slots = this.#slots;
        at = SLOT_WIDTH * this.#find(key);
      }
      slots[at + SLOT_KEY] = key + 1;
      slots[at + SLOT_LAST] = -1;
      this.#used++;
    }
    const gap = entry - slots[at + SLOT_LAST];
    if (gap === 0) return;
    slots[at + SLOT_LAST] = entry;
    slots[at + SLOT_COUNT]++;
    slots[at + SLOT_BYTES] += varintLength(gap);
  }

  /**
   * Writes `entry` to `key`'s list, once laid out (entries come in
   * ascending order again), and the skip of a block it ends.
   */
  write(key: number, entry: number, postings: Uint8Array, skips: Uint32Array): void {
    const slots = this.#slots;
    const at = SLOT_WIDTH * this.#find(key);
    const gap = entry - slots[at + SLOT_LAST];
    if (gap === 0) return;
    slots[at + SLOT_LAST] = entry;
    const cursor = slots[at + SLOT_COUNT];
    if (cursor === NOT_STORED) return;
    let next;
    if (gap < 0x80) {
      postings[cursor] = gap;
      next = cursor + 1;
    } else if (gap < 0x4000) {
      postings[cursor] = (gap & 0x7f) | 0x80;
      postings[cursor + 1] = gap >>> 7;
      next = cursor + 2;
    } else {
      next = writeVarint(postings, cursor, gap);
    }
    slots[at + SLOT_COUNT] = next;
    const written = slots[at + SLOT_BYTES];
    if (written === NO_SKIPS) return;
    slots[at + SLOT_BYTES] = written + 1;
    if (((written + 1) & (SKIP_BLOCK - 1)) === 0) {
      const skip = SKIP_WIDTH * ((written + 1) / SKIP_BLOCK - 1);
      skips[skip] = entry;
      skips[skip + 1] = next;
    }
  }

  /** The slot holding `key`, or the empty one where it belongs. */
  #find(key: number): number {
    const slots = this.#slots;
    const mask = this.#mask;
    let slot = Math.imul(key, 0x9e3779b1) >>> this.#shift;
    for (;;) {
      const held = slots[SLOT_WIDTH * slot + SLOT_KEY];
      if (held === key + 1 || held === 0) return slot;
      slot = (slot + 1) & mask;
    }
  }

  /**
   * The sorted keys, their counts, their lists' offsets (lists longer
   * than `maxStored` take no bytes) and where their skips start, in shared
   * buffers; then readies the table to write: each slot's cursor at its
   * list's start, its skips counted from their start, and its last entry
   * forgotten.
   */
  layOut(maxStored: number): {
    keys: Uint32Array;
    counts: Uint32Array;
    starts: Uint32Array;
    skipStarts: Uint32Array;
  } {
    const size = this.#used;
    const slots = this.#slots;
    // Key and slot in one number, so one numeric sort orders both: a key has 24 bits and a
    // slot at most 25 (2^24 keys at most, at half load), 49 in all, exact in a double.
    const packed = new Float64Array(size);
    let next = 0;
    for (let slot = 0; slot <= this.#mask; slot++) {
      const held = slots[SLOT_WIDTH * slot + SLOT_KEY];
      if (held !== 0) packed[next++] = (held - 1) * SLOT_SPAN + slot;
    }
    packed.sort();
    const keys = new Uint32Array(new SharedArrayBuffer(4 * size));
    const counts = new Uint32Array(new SharedArrayBuffer(4 * size));
    const starts = new Uint32Array(new SharedArrayBuffer(4 * (size + 1)));
    const skipStarts = new Uint32Array(new SharedArrayBuffer(4 * (size + 1)));
    let offset = 0;
    let skip = 0;
    for (let d = 0; d < size; d++) {
      const at = SLOT_WIDTH * (packed[d] % SLOT_SPAN);
      keys[d] = Math.floor(packed[d] / SLOT_SPAN);
      counts[d] = slots[at + SLOT_COUNT];
      starts[d] = offset;
      skipStarts[d] = skip;
      const stored = counts[d] <= maxStored;
      slots[at + SLOT_COUNT] = stored ? offset : NOT_STORED;
      slots[at + SLOT_LAST] = -1;
      if (stored) offset += slots[at + SLOT_BYTES];
      if (offset > MAX_POSTING_BYTES) {
        throw new RangeError(`The index's lists need more than 2 GiB: ${offset} bytes.`);
      }
      // Counted from skip * SKIP_BLOCK: with the count, no more than the postings stored so
      // far, so within the bound on their bytes, and a 32-bit slot holds it.
      const skipped = stored && counts[d] > SKIP_BLOCK;
      slots[at + SLOT_BYTES] = skipped ? skip * SKIP_BLOCK : NO_SKIPS;
      if (skipped) skip += Math.floor(counts[d] / SKIP_BLOCK);
    }
    starts[size] = offset;
    skipStarts[size] = skip;
    return { keys, counts, starts, skipStarts };
  }

  #grow(): void {
    const old = this.#slots;
    const oldSlots = this.#mask + 1;
    this.#slots = new Int32Array(2 * old.length);
    this.#mask = 2 * oldSlots - 1;
    this.#shift--;
    for (let slot = 0; slot < oldSlots; slot++) {
      const from = SLOT_WIDTH * slot;
      if (old[from + SLOT_KEY] === 0) continue;
      const to = SLOT_WIDTH * this.#find(old[from + SLOT_KEY] - 1);
      for (let i = 0; i < SLOT_WIDTH; i++) this.#slots[to + i] = old[from + i];
    }
  }
}
