/**
 * Bytes for the wire tests, valid or not: a frame of any type byte around
 * any payload, a bare header announcing any length, and byte arrays joined,
 * so that a test can write what no encoder of the protocol would.
 *
 * ```ts
 * import { concat, frame, header } from "./frames.ts";
 *
 * const bytes = concat([frame(0x51, new Uint8Array([0x40])), header(0x51, 0xffffffff)]);
 * ```
 *
 * @module
 */

import { HEADER_SIZE, writeHeader } from "../protocol.ts";

/** A frame of any type byte around any payload, valid or not. */
export function frame(type: number, payload: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(HEADER_SIZE + payload.length);
  writeHeader(bytes, 0, type, payload.length);
  bytes.set(payload, HEADER_SIZE);
  return bytes;
}

/** A bare frame header announcing `length` payload bytes. */
export function header(type: number, length: number): Uint8Array {
  const bytes = new Uint8Array(HEADER_SIZE);
  writeHeader(bytes, 0, type, length);
  return bytes;
}

/** Joins byte arrays into one. */
export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const joined = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    joined.set(part, offset);
    offset += part.length;
  }
  return joined;
}
