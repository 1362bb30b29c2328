/**
 * Lays a bulk-built book's entries out in the order of their keys' hashes,
 * with no reads scattered over the whole book: one pass copies every entry,
 * in the order added, into the bucket of its hash's top bits (a few hundred
 * buckets, each written front to back, each small enough for the CPU's
 * caches), then each bucket's entries are sorted on their own, in cache.
 * The copy is the book's final layout: each entry becomes its record
 * (`book/records.ts`), its key and name side by side, so a build copies
 * every entry once. {@linkcode recordsInOrder} writes the same records in
 * the order added, for a book built one entry at a time.
 *
 * Sorting a large book's entries by hash and then reading them in that
 * order (to fingerprint them, to find duplicates) cost a cache miss, and on
 * a virtual machine a page-table walk, per read: over 1 µs an entry at ten
 * million entries. Now the table fills front to back, duplicates sit side
 * by side and the fingerprint reads one bucket's bytes at a time.
 *
 * Structured names (given name, surname), which most books do not have,
 * follow in a second pass that only a book with them pays for.
 *
 * ```ts
 * import { partitionByHash } from "./partition.ts";
 *
 * const keys = new TextEncoder().encode("b@xa@x");
 * const names = new TextEncoder().encode("BA");
 * const laidOut = partitionByHash({
 *   size: 2,
 *   keyStarts: Uint32Array.of(0, 3, 6),
 *   keys,
 *   nameStarts: Uint32Array.of(0, 1, 2),
 *   names,
 *   namePartStarts: new Uint32Array(0),
 *   nameParts: new Uint8Array(0),
 *   hashes: Uint32Array.of(0xf0000000, 0x10000000),
 * });
 * laidOut.original; // [1, 0]: "a@x" is in the first bucket
 * laidOut.order; // [0, 1]
 * ```
 *
 * @module
 */

import {
  checkKeyLength,
  checkNameLength,
  checkRecordsBytes,
  recordBytes,
  RecordReader,
  type Records,
  writeRecord,
} from "./records.ts";

/** A book's entries: keys and names back to back, with their starts and key hashes. */
export interface Entries extends EntryBytes {
  /** Each entry's key hash. */
  hashes: Uint32Array;
}

/** A book's entries as bytes, as a builder collects them. */
export interface EntryBytes extends NameParts {
  /** How many entries. */
  size: number;
  /** Start of each key in `keys`, and the end of the last. */
  keyStarts: Uint32Array;
  /** The keys. */
  keys: Uint8Array;
  /** Start of each name in `names`, and the end of the last. */
  nameStarts: Uint32Array;
  /** The names. */
  names: Uint8Array;
}

/** The given names and surnames of a book's entries. */
export interface NameParts {
  /**
   * Where each entry's given name and surname are in `nameParts`: entry i's
   * given name runs from `2i` to `2i + 1`, its surname from `2i + 1` to
   * `2i + 2`; empty when it has none. An empty array when no entry has any.
   */
  namePartStarts: Uint32Array;
  /** The given names and surnames. */
  nameParts: Uint8Array;
}

/** The entries laid out by bucket as records, in new shared buffers, and their order by hash. */
export interface LaidOut extends Records, NameParts {
  /** Each new entry's key hash. */
  hashes: Uint32Array;
  /** Each new entry's index in the order added. */
  original: Uint32Array;
  /**
   * The new entries sorted by hash, then key bytes, then the order added;
   * each bucket's entries are together, so reading in this order stays
   * within one bucket's bytes at a time.
   */
  order: Uint32Array;
}

/** About the bytes of keys and names per bucket: well inside a core's 4 MiB L2. */
const BUCKET_BYTES = 1 << 20;
const MAX_BUCKET_BITS = 14;
const DIGIT_BITS = 11;
const DIGIT_MASK = (1 << DIGIT_BITS) - 1;

/**
 * Copies the entries into new shared buffers as records, laid out by
 * bucket, and sorts them by hash, then key bytes, then the order added (so
 * of entries with equal keys the first added comes first); `bucketBytes` is
 * about how many bytes of keys and names go in one bucket.
 *
 * @throws {RangeError} when a key or name is too long for a record, or the records would pass 4 GiB.
 */
export function partitionByHash(entries: Entries, bucketBytes: number = BUCKET_BYTES): LaidOut {
  const { size, keys, names, hashes } = entries;
  let bits = 0;
  while (bits < MAX_BUCKET_BITS && (keys.length + names.length) / (1 << bits) > bucketBytes) {
    bits++;
  }
  const bucketCount = 1 << bits;
  const bucketOf = (hash: number) => bits === 0 ? 0 : hash >>> (32 - bits);

  // Where each bucket starts: in entries and in record bytes.
  const entryAt = new Uint32Array(bucketCount + 1);
  const recordAt = new Float64Array(bucketCount + 1); // the sum may pass 4 GiB before the check
  for (let entry = 0; entry < size; entry++) {
    const bucket = bucketOf(hashes[entry]) + 1;
    entryAt[bucket]++;
    recordAt[bucket] += entryRecordBytes(entries, entry);
  }
  for (let bucket = 1; bucket <= bucketCount; bucket++) {
    entryAt[bucket] += entryAt[bucket - 1];
    recordAt[bucket] += recordAt[bucket - 1];
  }
  checkRecordsBytes(recordAt[bucketCount]);
  const laidOut: LaidOut = {
    size,
    records: new Uint8Array(new SharedArrayBuffer(recordAt[bucketCount])),
    recordStarts: new Uint32Array(new SharedArrayBuffer(4 * size)),
    namePartStarts: new Uint32Array(new SharedArrayBuffer(0)),
    nameParts: new Uint8Array(new SharedArrayBuffer(0)),
    hashes: new Uint32Array(size),
    original: new Uint32Array(size),
    order: new Uint32Array(size),
  };
  const bucketStarts = entryAt.slice();
  scatter(entries, laidOut, bucketOf, entryAt, recordAt);
  if (entries.namePartStarts.length > 0) {
    const parts = gatherNameParts(entries, laidOut.original);
    laidOut.namePartStarts = parts.namePartStarts;
    laidOut.nameParts = parts.nameParts;
  }
  sortBuckets(laidOut, bucketStarts, bits);
  return laidOut;
}

/**
 * The entries as records, in the order added, in new shared buffers: for a
 * book whose entries are not laid out by hash (built one by one, with
 * duplicates refused as they came).
 *
 * @throws {RangeError} when a key or name is too long for a record, or the records would pass 4 GiB.
 */
export function recordsInOrder(entries: EntryBytes): Records {
  const size = entries.size;
  let total = 0;
  for (let entry = 0; entry < size; entry++) total += entryRecordBytes(entries, entry);
  checkRecordsBytes(total);
  const records = new Uint8Array(new SharedArrayBuffer(total));
  const words = new Uint32Array(records.buffer);
  const recordStarts = new Uint32Array(new SharedArrayBuffer(4 * size));
  let at = 0;
  for (let entry = 0; entry < size; entry++) {
    recordStarts[entry] = at;
    at = writeEntryRecord(entries, entry, records, words, at, entry);
  }
  return { size, records, recordStarts };
}

/**
 * The bytes entry `entry`'s record takes.
 *
 * @throws {RangeError} when its key or name is too long for a record.
 */
function entryRecordBytes(entries: EntryBytes, entry: number): number {
  const { keyStarts, nameStarts } = entries;
  const keyLength = keyStarts[entry + 1] - keyStarts[entry];
  const nameLength = nameStarts[entry + 1] - nameStarts[entry];
  checkKeyLength(keyLength);
  checkNameLength(nameLength);
  return recordBytes(keyLength, nameLength);
}

/** Writes entry `entry`'s record at byte `at`, as entry `index` of the records; returns where the next starts. */
function writeEntryRecord(
  entries: EntryBytes,
  entry: number,
  records: Uint8Array,
  words: Uint32Array,
  at: number,
  index: number,
): number {
  const { keyStarts, keys, nameStarts, names } = entries;
  return writeRecord(
    records,
    words,
    at,
    index,
    keys,
    keyStarts[entry],
    keyStarts[entry + 1],
    names,
    nameStarts[entry],
    nameStarts[entry + 1],
  );
}

/** Writes each entry's record, in the order added, to the next place in its bucket. */
function scatter(
  from: Entries,
  to: LaidOut,
  bucketOf: (hash: number) => number,
  entryAt: Uint32Array,
  recordAt: Float64Array,
): void {
  const { size, hashes } = from;
  const records = to.records;
  const words = new Uint32Array(records.buffer, records.byteOffset, records.byteLength >>> 2);
  const recordStarts = to.recordStarts;
  const toHashes = to.hashes;
  const toOriginal = to.original;
  for (let entry = 0; entry < size; entry++) {
    const hash = hashes[entry];
    const bucket = bucketOf(hash);
    const at = entryAt[bucket]++;
    toHashes[at] = hash;
    toOriginal[at] = entry;
    const record = recordAt[bucket];
    recordStarts[at] = record;
    recordAt[bucket] = writeEntryRecord(from, entry, records, words, record, at);
  }
}

/**
 * Copies the given names and surnames into new shared buffers, entry
 * `from[i]` of `entries` becoming entry i: for a reordered or thinned book.
 */
export function gatherNameParts(entries: NameParts, from: Uint32Array): NameParts {
  const starts = entries.namePartStarts;
  const parts = entries.nameParts;
  let bytes = 0;
  for (let i = 0; i < from.length; i++) bytes += starts[2 * from[i] + 2] - starts[2 * from[i]];
  const namePartStarts = new Uint32Array(new SharedArrayBuffer(4 * (2 * from.length + 1)));
  const nameParts = new Uint8Array(new SharedArrayBuffer(bytes));
  let at = 0;
  for (let i = 0; i < from.length; i++) {
    const entry = from[i];
    // Given name, then surname: each part's end is the next one's start.
    for (let part = 2 * entry; part < 2 * entry + 2; part++) {
      for (let j = starts[part]; j < starts[part + 1]; j++) nameParts[at++] = parts[j];
      namePartStarts[2 * i + 1 + part - 2 * entry] = at;
    }
  }
  return { namePartStarts, nameParts };
}

/**
 * Sorts each bucket's entries by the rest of their hash (a stable radix
 * sort, so the order added stays among equal hashes), then runs of equal
 * hashes by key bytes, into `order`; the bytes stay where they are.
 */
function sortBuckets(book: LaidOut, bucketStarts: Uint32Array, bits: number): void {
  let largest = 0;
  for (let bucket = 0; bucket + 1 < bucketStarts.length; bucket++) {
    largest = Math.max(largest, bucketStarts[bucket + 1] - bucketStarts[bucket]);
  }
  const scratch = {
    reader: new RecordReader(book),
    order: new Uint32Array(largest),
    spareOrder: new Uint32Array(largest),
    hashes: new Uint32Array(largest),
    spareHashes: new Uint32Array(largest),
    counts: new Uint32Array(1 << DIGIT_BITS),
  };
  for (let bucket = 0; bucket + 1 < bucketStarts.length; bucket++) {
    const start = bucketStarts[bucket];
    const end = bucketStarts[bucket + 1];
    if (end - start > 1) sortBucket(book, start, end, 32 - bits, scratch);
    else if (end - start === 1) book.order[start] = start;
  }
}

type Scratch = {
  reader: RecordReader;
  order: Uint32Array;
  spareOrder: Uint32Array;
  hashes: Uint32Array;
  spareHashes: Uint32Array;
  counts: Uint32Array;
};

function sortBucket(book: LaidOut, start: number, end: number, hashBits: number, s: Scratch): void {
  const count = end - start;
  let order = s.order;
  let spareOrder = s.spareOrder;
  let hashes = s.hashes;
  let spareHashes = s.spareHashes;
  for (let i = 0; i < count; i++) {
    order[i] = start + i;
    hashes[i] = book.hashes[start + i];
  }
  for (let shift = 0; shift < hashBits; shift += DIGIT_BITS) {
    const counts = s.counts;
    counts.fill(0);
    for (let i = 0; i < count; i++) counts[(hashes[i] >>> shift) & DIGIT_MASK]++;
    let total = 0;
    for (let digit = 0; digit < counts.length; digit++) {
      const n = counts[digit];
      counts[digit] = total;
      total += n;
    }
    for (let i = 0; i < count; i++) {
      const hash = hashes[i];
      const to = counts[(hash >>> shift) & DIGIT_MASK]++;
      spareOrder[to] = order[i];
      spareHashes[to] = hash;
    }
    [order, spareOrder] = [spareOrder, order];
    [hashes, spareHashes] = [spareHashes, hashes];
  }
  const sorted = order.subarray(0, count);
  for (let i = 0; i < count;) {
    let j = i + 1;
    while (j < count && hashes[j] === hashes[i]) j++;
    if (j - i > 1) {
      sorted.subarray(i, j).sort((a, b) =>
        s.reader.compareKeys(a, b) || book.original[a] - book.original[b]
      );
    }
    i = j;
  }
  book.order.set(sorted, start);
}
