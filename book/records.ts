/**
 * The layout of a built book's entries: one record per entry, its key and
 * its name side by side, so that a found lookup reads two places in memory
 * (its slot of the hash table, then its record) rather than five (a slot,
 * two offset arrays, the keys and the names). In a book larger than the
 * CPU's caches each place is a cache miss, and they are waited for one
 * after the other.
 *
 * A record is a header of two 32-bit words in the platform's byte order
 * (the entry's index; its key's byte length in the low
 * {@linkcode KEY_LENGTH_BITS} bits and its name's above them), then the
 * key's UTF-8 bytes, then the name's, padded with zeros to a multiple of
 * four bytes so that every header is a whole word of the buffer.
 *
 * ```ts
 * import { RecordReader, recordBytes, writeRecord } from "./records.ts";
 *
 * const key = new TextEncoder().encode("ada@example.com");
 * const name = new TextEncoder().encode("Ada Lovelace");
 * const bytes = new Uint8Array(recordBytes(key.length, name.length));
 * writeRecord(bytes, new Uint32Array(bytes.buffer), 0, 0, key, 0, key.length, name, 0, name.length);
 * const reader = new RecordReader({ size: 1, records: bytes, recordStarts: Uint32Array.of(0) });
 * reader.nameEnd(0) - reader.nameStart(0); // 12
 * ```
 *
 * @module
 */

/** Bytes of a record's header: the entry's index, then its key's and name's lengths. */
export const RECORD_HEADER_BYTES = 8;
/** Bits of a record's lengths word that hold its key's length: a key of 254 characters is at most 1,016 bytes. */
export const KEY_LENGTH_BITS = 11;
/** The key's length in a record's lengths word. */
export const KEY_LENGTH_MASK = (1 << KEY_LENGTH_BITS) - 1;
/** The longest name a record holds, in bytes (2 MiB less one): the lengths word's other 21 bits. */
export const MAX_RECORD_NAME_BYTES = 2 ** (32 - KEY_LENGTH_BITS) - 1;
/** The most bytes of records a book holds: offsets into them are 32-bit. */
export const MAX_RECORDS_BYTES = 2 ** 32 - 4;

/** A book's entries as records. */
export interface Records {
  /** How many entries. */
  size: number;
  /** The records, back to back; the buffer starts at a multiple of four bytes. */
  records: Uint8Array;
  /** Where each entry's record starts in `records`. */
  recordStarts: Uint32Array;
}

/** Bytes of a record with a key and name of these lengths: header, bytes, padding to a word. */
export function recordBytes(keyLength: number, nameLength: number): number {
  return (RECORD_HEADER_BYTES + keyLength + nameLength + 3) & ~3;
}

/**
 * Checks that a key fits in a record.
 *
 * @throws {RangeError} when it is over {@linkcode KEY_LENGTH_MASK} bytes.
 */
export function checkKeyLength(keyLength: number): void {
  if (keyLength > KEY_LENGTH_MASK) {
    throw new RangeError(
      `A key of ${keyLength} bytes is over the book's limit of ${KEY_LENGTH_MASK}.`,
    );
  }
}

/**
 * Checks that a name fits in a record.
 *
 * @throws {RangeError} when it is over {@linkcode MAX_RECORD_NAME_BYTES}.
 */
export function checkNameLength(nameLength: number): void {
  if (nameLength > MAX_RECORD_NAME_BYTES) {
    throw new RangeError(
      `A name of ${nameLength} bytes is over the book's limit of ${MAX_RECORD_NAME_BYTES}.`,
    );
  }
}

/**
 * Checks that records of `total` bytes fit in one buffer.
 *
 * @throws {RangeError} when they are over {@linkcode MAX_RECORDS_BYTES}.
 */
export function checkRecordsBytes(total: number): void {
  if (total > MAX_RECORDS_BYTES) {
    throw new RangeError(
      `The book needs ${total} bytes of records, over the limit of ${MAX_RECORDS_BYTES}.`,
    );
  }
}

/**
 * Writes the record of entry `entry` at byte `at` of `bytes` (`words` is
 * the same buffer as 32-bit words; `at` is a multiple of four): the key
 * `key[keyStart, keyEnd)` and the name `name[nameStart, nameEnd)`. The
 * padding is left as it is: a new buffer's zeros. Returns where the next
 * record starts.
 */
export function writeRecord(
  bytes: Uint8Array,
  words: Uint32Array,
  at: number,
  entry: number,
  key: Uint8Array,
  keyStart: number,
  keyEnd: number,
  name: Uint8Array,
  nameStart: number,
  nameEnd: number,
): number {
  words[at >>> 2] = entry;
  words[(at >>> 2) + 1] = (keyEnd - keyStart) | ((nameEnd - nameStart) << KEY_LENGTH_BITS);
  let byte = at + RECORD_HEADER_BYTES;
  for (let i = keyStart; i < keyEnd; i++) bytes[byte++] = key[i];
  for (let i = nameStart; i < nameEnd; i++) bytes[byte++] = name[i];
  return at + recordBytes(keyEnd - keyStart, nameEnd - nameStart);
}

/** Reads records by entry index: where each one's key and name lie in {@linkcode RecordReader.bytes}. */
export class RecordReader {
  /** The records. */
  readonly bytes: Uint8Array;
  /** The same buffer as 32-bit words, for the headers. */
  readonly words: Uint32Array;
  /** Where each entry's record starts. */
  readonly starts: Uint32Array;

  /** Reads `records`' buffers, as they are. */
  constructor(records: Records) {
    const bytes = records.records;
    this.bytes = bytes;
    this.words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2);
    this.starts = records.recordStarts;
  }

  /** Where entry `entry`'s key starts. */
  keyStart(entry: number): number {
    return this.starts[entry] + RECORD_HEADER_BYTES;
  }

  /** Where entry `entry`'s key ends. */
  keyEnd(entry: number): number {
    const at = this.starts[entry];
    return at + RECORD_HEADER_BYTES + (this.words[(at >>> 2) + 1] & KEY_LENGTH_MASK);
  }

  /** Where entry `entry`'s name starts: where its key ends. */
  nameStart(entry: number): number {
    return this.keyEnd(entry);
  }

  /** Where entry `entry`'s name ends. */
  nameEnd(entry: number): number {
    const at = this.starts[entry];
    const lengths = this.words[(at >>> 2) + 1];
    return at + RECORD_HEADER_BYTES + (lengths & KEY_LENGTH_MASK) + (lengths >>> KEY_LENGTH_BITS);
  }

  /** The index of the entry whose record starts at `at`. */
  entryAt(at: number): number {
    return this.words[at >>> 2];
  }

  /** Compares two entries' keys byte by byte (a shorter key that is a prefix comes first). */
  compareKeys(a: number, b: number): number {
    const bytes = this.bytes;
    const aStart = this.keyStart(a);
    const aLength = this.keyEnd(a) - aStart;
    const bStart = this.keyStart(b);
    const bLength = this.keyEnd(b) - bStart;
    const common = Math.min(aLength, bLength);
    for (let i = 0; i < common; i++) {
      const difference = bytes[aStart + i] - bytes[bStart + i];
      if (difference !== 0) return difference;
    }
    return aLength - bLength;
  }

  /** Whether two entries have the same key. */
  sameKey(a: number, b: number): boolean {
    const aStart = this.keyStart(a);
    const bStart = this.keyStart(b);
    const length = this.keyEnd(a) - aStart;
    if (this.keyEnd(b) - bStart !== length) return false;
    const bytes = this.bytes;
    for (let i = 0; i < length; i++) if (bytes[aStart + i] !== bytes[bStart + i]) return false;
    return true;
  }
}
