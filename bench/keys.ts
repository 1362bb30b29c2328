/**
 * The keys the load generator queries, and their query frames: synthetic
 * keys that match compare-redis.py's, or a file of them, shuffled the same
 * way every run, and encoded once so that a batch is a slice of one buffer.
 *
 * @module
 */

import { encodeQuery, MAX_QUERY_BYTES } from "../protocol.ts";

/** Every this many indexes is queried, as compare-redis.py does, so both key sets match. */
export const KEY_STEP = 7;
/** Seed of the synthetic keys' order, so that runs are alike. */
export const KEY_SHUFFLE_SEED = 7919;

/**
 * Picks query keys for a book of `entries`: indexes 0, 7, 14... below
 * `2 * entries`, so about half of them are beyond the book. `present(i)`
 * names the email of entry `i`, `missing(i)` an email for an index beyond it.
 */
export function sampleKeys(
  entries: number,
  present: (index: number) => string,
  missing: (index: number) => string,
): string[] {
  const keys: string[] = [];
  for (let i = 0; i < 2 * entries; i += KEY_STEP) keys.push(i < entries ? present(i) : missing(i));
  return keys;
}

/** The default keys for a server given by `--port`: `user{i}@example.com`. */
export function syntheticKeys(entries: number): string[] {
  const email = (i: number) => `user${i}@example.com`;
  return sampleKeys(entries, email, email);
}

/**
 * Reads keys from the text of a keys file: one per line, surrounding
 * whitespace trimmed, blank lines skipped. `label` names the file in errors,
 * which give line numbers, never the key itself.
 *
 * @throws {RangeError} when a key is too long for a query, or there is none.
 */
export function parseKeys(text: string, label: string): string[] {
  const keys: string[] = [];
  const encoder = new TextEncoder();
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const key = lines[i].trim();
    if (key === "") continue;
    const bytes = encoder.encode(key).length;
    if (bytes > MAX_QUERY_BYTES) {
      throw new RangeError(
        `Line ${
          i + 1
        } of ${label} is ${bytes} bytes long, over the query limit of ${MAX_QUERY_BYTES}.`,
      );
    }
    keys.push(key);
  }
  if (keys.length === 0) throw new RangeError(`${label} holds no keys.`);
  return keys;
}

/**
 * Returns the keys in a shuffled order, the same for the same seed. Each
 * connection walks its own stretch of the keys, so shuffling gives every
 * connection the same mix of present and missing ones.
 */
export function shuffleKeys(keys: readonly string[], seed: number): string[] {
  const shuffled = keys.slice();
  let state = seed >>> 0;
  for (let i = shuffled.length - 1; i > 0; i--) {
    // A 32-bit LCG (Numerical Recipes constants): plenty for spreading keys.
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    const j = Math.floor((state / 2 ** 32) * (i + 1));
    [shuffled[i], shuffled[j]] = [shuffled[j], shuffled[i]];
  }
  return shuffled;
}

/** Query frames for all keys, back to back, and where each starts. */
export interface QueryFrames {
  /** The encoded frames. */
  bytes: Uint8Array;
  /** `offsets[j]` is where frame `j` starts; one more offset marks the end of the last. */
  offsets: Uint32Array;
  /** How many distinct keys there are; the frames after them repeat the first ones. */
  keyCount: number;
}

/**
 * Encodes every key as a query frame, back to back, followed by the first
 * `pipeline - 1` keys again (cycling when there are fewer keys), so that
 * any `pipeline` consecutive keys starting at a key index are one
 * contiguous slice and a batch is sent without copying.
 *
 * @throws {RangeError} when a key is over the query size limit.
 */
export function buildQueryFrames(keys: readonly string[], pipeline: number): QueryFrames {
  if (keys.length === 0) throw new RangeError("There are no keys to encode.");
  const frameCount = keys.length + pipeline - 1;
  const encoded: Uint8Array[] = keys.map(encodeQuery);
  const offsets = new Uint32Array(frameCount + 1);
  let size = 0;
  for (let j = 0; j < frameCount; j++) {
    offsets[j] = size;
    size += encoded[j % keys.length].length;
  }
  offsets[frameCount] = size;
  const bytes = new Uint8Array(size);
  for (let j = 0; j < frameCount; j++) bytes.set(encoded[j % keys.length], offsets[j]);
  return { bytes, offsets, keyCount: keys.length };
}

/** The bytes of batch starting at key index `start`: `pipeline` frames. */
export function batchAt(frames: QueryFrames, start: number, pipeline: number): Uint8Array {
  return frames.bytes.subarray(frames.offsets[start], frames.offsets[start + pipeline]);
}
