/**
 * The fingerprint of a book: a SHA-256 of the entries it serves, the same
 * whatever the file's format, row order and the letter case of its emails,
 * so an operator can tell whether two replicas, or a file and a replica,
 * serve the same book (`deno task validate FILE` prints it).
 *
 * The exact bytes hashed, so that anyone can reproduce it:
 *
 * 1. Each entry is its normalised email (trimmed, lower-cased: the lookup
 *    key) and its name as served (trimmed), both in UTF-8. The structured
 *    names some sources add (given name, surname) are not part of it.
 * 2. Entries are sorted by the 32-bit FNV-1a hash of the key bytes, as an
 *    unsigned number, and entries with equal hashes by the key bytes
 *    (lexicographically). Sorting by a hash first is what keeps this cheap
 *    for ten million entries: two radix passes instead of a comparison sort.
 * 3. Each entry in that order contributes the key's byte length as a 32-bit
 *    big-endian number, the key bytes, the name's byte length the same way,
 *    and the name bytes; the fingerprint is the lower-case hex SHA-256 of
 *    all of that (for an empty book, the SHA-256 of nothing).
 *
 * In Python, for a dict `book` of normalised emails to names:
 *
 * ```text
 * def fnv1a(data):
 *     h = 0x811C9DC5
 *     for byte in data:
 *         h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
 *     return h
 * keys = sorted((k.encode() for k in book), key=lambda k: (fnv1a(k), k))
 * digest = hashlib.sha256()
 * for k in keys:
 *     n = book[k.decode()].encode()
 *     digest.update(len(k).to_bytes(4, "big") + k + len(n).to_bytes(4, "big") + n)
 * digest.hexdigest()
 * ```
 *
 * @module
 */

import { createHash } from "node:crypto";
import { RecordReader, type Records } from "./records.ts";

/**
 * Bytes hashed at a time; more than the largest entry: a record's longest
 * name (`MAX_RECORD_NAME_BYTES`, 2 MiB less one) and its key.
 */
const HASH_BATCH_BYTES = 4 << 20;
const LENGTH_BYTES = 4;
const DIGIT_BITS = 11;
const DIGIT_MASK = (1 << DIGIT_BITS) - 1;

/**
 * Entries are hashed in blocks of this many. For each block, one tight loop
 * gathers the entries' bounds and touches the first and last byte of each
 * key and name; those memory reads do not wait for one another, so the
 * cache misses (and, here, the costly page-table walks of a virtual
 * machine) overlap, and the copy that follows finds the bytes in the cache.
 * A plain loop over the sorted entries waited on four or more misses per
 * entry one after another: 1 µs an entry at 10 million entries, against
 * about 0.25 µs now. Small blocks keep the touched pages within the TLB.
 */
const BLOCK_ENTRIES = 128;

/**
 * The fingerprint of the book's entries, as 64 lower-case hex digits (see
 * the module for the bytes); `order` is the entries sorted as
 * {@linkcode sortByHashAndKey} sorts them.
 */
export function bookFingerprint(book: Records, order: Uint32Array): string {
  const digest = createHash("sha256");
  const batch = new Uint8Array(HASH_BATCH_BYTES);
  const reader = new RecordReader(book);
  const text = reader.bytes;
  const bounds = new Uint32Array(4 * BLOCK_ENTRIES);
  let used = 0;
  let touched = 0;
  for (let blockStart = 0; blockStart < order.length; blockStart += BLOCK_ENTRIES) {
    const count = Math.min(order.length - blockStart, BLOCK_ENTRIES);
    for (let i = 0; i < count; i++) {
      const entry = order[blockStart + i];
      const keyStart = reader.keyStart(entry);
      const nameStart = reader.nameStart(entry);
      const nameEnd = reader.nameEnd(entry);
      bounds[4 * i] = keyStart;
      bounds[4 * i + 1] = nameStart;
      bounds[4 * i + 2] = nameStart;
      bounds[4 * i + 3] = nameEnd;
      touched ^= text[keyStart] ^ text[nameEnd - 1];
    }
    for (let at = 0; at < 4 * count; at += 4) {
      const keyStart = bounds[at];
      const keyEnd = bounds[at + 1];
      const nameStart = bounds[at + 2];
      const nameEnd = bounds[at + 3];
      const bytes = 2 * LENGTH_BYTES + keyEnd - keyStart + nameEnd - nameStart;
      if (used + bytes > batch.length) {
        digest.update(batch.subarray(0, used));
        used = 0;
      }
      used = writeLength(batch, used, keyEnd - keyStart);
      for (let i = keyStart; i < keyEnd; i++) batch[used++] = text[i];
      used = writeLength(batch, used, nameEnd - nameStart);
      for (let i = nameStart; i < nameEnd; i++) batch[used++] = text[i];
    }
  }
  // Use the touched bytes, so the touching loop cannot be dropped as dead code.
  if (touched < 0) throw new Error("Unreachable: bytes are never negative.");
  digest.update(batch.subarray(0, used));
  return digest.digest("hex");
}

function writeLength(target: Uint8Array, at: number, length: number): number {
  target[at] = length >>> 24;
  target[at + 1] = (length >>> 16) & 0xff;
  target[at + 2] = (length >>> 8) & 0xff;
  target[at + 3] = length & 0xff;
  return at + LENGTH_BYTES;
}

/** Entries sorted by key hash, then key bytes, then index; `hashes` is aligned with `order`. */
export interface HashOrder {
  /** Entry indices in order. */
  order: Uint32Array;
  /** The hash of each entry in `order`, at the same position. */
  hashes: Uint32Array;
}

/**
 * Sorts entries by their keys' hashes (an LSD radix sort on 11-bit digits,
 * stable), then each run of equal hashes by key bytes and entry index, so
 * entries with equal keys end up side by side, first added first.
 * `entryHashes[i]` is entry i's hash.
 */
export function sortByHashAndKey(entryHashes: Uint32Array, reader: RecordReader): HashOrder {
  const size = entryHashes.length;
  let order = new Uint32Array(size);
  for (let i = 0; i < size; i++) order[i] = i;
  let hashes: Uint32Array = entryHashes;
  let spareOrder = new Uint32Array(size);
  let spareHashes: Uint32Array = new Uint32Array(size);
  const counts = new Uint32Array(1 << DIGIT_BITS);
  for (let shift = 0; shift < 32; shift += DIGIT_BITS) {
    counts.fill(0);
    for (let i = 0; i < size; i++) counts[(hashes[i] >>> shift) & DIGIT_MASK]++;
    let total = 0;
    for (let digit = 0; digit < counts.length; digit++) {
      const count = counts[digit];
      counts[digit] = total;
      total += count;
    }
    for (let i = 0; i < size; i++) {
      const hash = hashes[i];
      const to = counts[(hash >>> shift) & DIGIT_MASK]++;
      spareOrder[to] = order[i];
      spareHashes[to] = hash;
    }
    [order, spareOrder] = [spareOrder, order];
    // The first pass reads the caller's array; never write into it.
    if (hashes === entryHashes) {
      hashes = spareHashes;
      spareHashes = new Uint32Array(size);
    } else {
      [hashes, spareHashes] = [spareHashes, hashes];
    }
  }
  sortEqualHashesByKey(order, hashes, reader);
  return { order, hashes };
}

/** Sorts each run of entries with the same hash by key bytes; such runs are rare and short. */
function sortEqualHashesByKey(order: Uint32Array, hashes: Uint32Array, reader: RecordReader): void {
  const compare = (a: number, b: number) => reader.compareKeys(a, b) || a - b;
  for (let start = 0; start < order.length;) {
    let end = start + 1;
    while (end < order.length && hashes[end] === hashes[start]) end++;
    if (end - start > 1) order.subarray(start, end).sort(compare);
    start = end;
  }
}
