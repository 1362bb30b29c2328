/**
 * The fingerprint of a book: a SHA-256 of the entries it serves, the same
 * whatever the file's format, row order and the letter case of its emails,
 * so an operator can tell whether two replicas, or a file and a replica,
 * serve the same book (`deno task validate FILE` prints it).
 *
 * The exact bytes hashed, so that anyone can reproduce it:
 *
 * 1. Each entry is its normalised email (trimmed, lower-cased: the lookup
 *    key) and its name as served (trimmed), both in UTF-8.
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

/** The parts of a built book the fingerprint reads (the layout of `SharedAddressBook`). */
export interface FingerprintSource {
  /** How many entries. */
  size: number;
  /** Slot pairs: entry index + 1 (0 when empty), then the key's FNV-1a hash. */
  slots: Uint32Array;
  /** Start of each entry's key in `keys`, and one more for the end of the last. */
  keyStarts: Uint32Array;
  /** The keys, back to back. */
  keys: Uint8Array;
  /** Start and end of each entry's reply frame in `replies`. */
  replyBounds: Uint32Array;
  /** The reply frames. */
  replies: Uint8Array;
  /** How many bytes of a reply frame come before the name. */
  namePrefix: number;
}

/** Bytes hashed at a time; more than the largest entry (a 1 MiB name and its key). */
const HASH_BATCH_BYTES = 4 << 20;
const LENGTH_BYTES = 4;
const DIGIT_BITS = 16;
const DIGIT_MASK = (1 << DIGIT_BITS) - 1;

/** The fingerprint of the book, as 64 lower-case hex digits (see the module for the bytes). */
export function bookFingerprint(book: FingerprintSource): string {
  const order = entriesInFingerprintOrder(book);
  const digest = createHash("sha256");
  const batch = new Uint8Array(HASH_BATCH_BYTES);
  const { keyStarts, keys, replyBounds, replies, namePrefix } = book;
  let used = 0;
  for (let i = 0; i < order.length; i++) {
    const entry = order[i];
    const keyStart = keyStarts[entry];
    const keyEnd = keyStarts[entry + 1];
    const nameStart = replyBounds[2 * entry] + namePrefix;
    const nameEnd = replyBounds[2 * entry + 1];
    const bytes = 2 * LENGTH_BYTES + keyEnd - keyStart + nameEnd - nameStart;
    if (used + bytes > batch.length) {
      digest.update(batch.subarray(0, used));
      used = 0;
    }
    used = writeLength(batch, used, keyEnd - keyStart);
    for (let at = keyStart; at < keyEnd; at++) batch[used++] = keys[at];
    used = writeLength(batch, used, nameEnd - nameStart);
    for (let at = nameStart; at < nameEnd; at++) batch[used++] = replies[at];
  }
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

/** Entry indices sorted by key hash, then key bytes: an LSD radix sort on 16-bit digits. */
function entriesInFingerprintOrder(book: FingerprintSource): Uint32Array {
  const { size, slots } = book;
  const hashes = new Uint32Array(size);
  for (let i = 0; i < slots.length; i += 2) {
    if (slots[i] !== 0) hashes[slots[i] - 1] = slots[i + 1];
  }
  let order = new Uint32Array(size);
  for (let i = 0; i < size; i++) order[i] = i;
  let sortedHashes = hashes;
  let spareOrder = new Uint32Array(size);
  let spareHashes = new Uint32Array(size);
  const counts = new Uint32Array(1 << DIGIT_BITS);
  for (let shift = 0; shift < 32; shift += DIGIT_BITS) {
    counts.fill(0);
    for (let i = 0; i < size; i++) counts[(sortedHashes[i] >>> shift) & DIGIT_MASK]++;
    let total = 0;
    for (let digit = 0; digit < counts.length; digit++) {
      const count = counts[digit];
      counts[digit] = total;
      total += count;
    }
    for (let i = 0; i < size; i++) {
      const hash = sortedHashes[i];
      const to = counts[(hash >>> shift) & DIGIT_MASK]++;
      spareOrder[to] = order[i];
      spareHashes[to] = hash;
    }
    [order, spareOrder] = [spareOrder, order];
    [sortedHashes, spareHashes] = [spareHashes, sortedHashes];
  }
  sortEqualHashesByKey(order, sortedHashes, book);
  return order;
}

/** Sorts each run of entries with the same hash by their key bytes; such runs are rare and short. */
function sortEqualHashesByKey(
  order: Uint32Array,
  hashes: Uint32Array,
  book: FingerprintSource,
): void {
  const { keyStarts, keys } = book;
  const compare = (a: number, b: number) => {
    const aStart = keyStarts[a];
    const aLength = keyStarts[a + 1] - aStart;
    const bStart = keyStarts[b];
    const bLength = keyStarts[b + 1] - bStart;
    const common = Math.min(aLength, bLength);
    for (let i = 0; i < common; i++) {
      const difference = keys[aStart + i] - keys[bStart + i];
      if (difference !== 0) return difference;
    }
    return aLength - bLength;
  };
  for (let start = 0; start < order.length;) {
    let end = start + 1;
    while (end < order.length && hashes[end] === hashes[start]) end++;
    if (end - start > 1) order.subarray(start, end).sort(compare);
    start = end;
  }
}
