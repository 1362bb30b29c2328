/**
 * Small typed arrays for short-lived use, cut from shared slabs. In Deno a
 * typed array with a buffer of its own (`new Uint8Array(n)`, `slice`,
 * `Uint32Array.of`, `TextEncoder.encode`) costs about 1.1 µs to make, each
 * one an allocation outside the heap, where a view of an existing buffer
 * costs about 25 ns (measured on Deno 2.9.6 on the project's machines, at
 * real-time priority: a loop making 3 million of each). An LDAP search that
 * compiles its filter made a dozen such arrays, which cost more than the
 * search.
 *
 * The arrays handed out are views of a 64 KiB slab, one after another,
 * never overlapping and zero-filled when handed out (a slab's bytes are
 * never handed out twice); when a slab is used up a new one is started, and
 * the garbage collector frees an old one once no view of it is left. So a
 * view kept for long keeps its whole slab alive: use these for arrays that
 * live as long as a request, not a connection. A request for more than a
 * quarter of a slab gets an array of its own.
 *
 * ```ts
 * import { encodeSmall, smallBytes } from "./small_arrays.ts";
 *
 * const key = encodeSmall("ada@example.com"); // 15 bytes, a view of a slab
 * const room = smallBytes(32); // 32 zero bytes
 * ```
 *
 * @module
 */

/** The size of each slab. */
export const SLAB_BYTES = 64 * 1024;
/** The largest array cut from a slab; larger ones get a buffer of their own. */
const MAX_CUT = SLAB_BYTES / 4;

const encoder = new TextEncoder();

let slab = new ArrayBuffer(SLAB_BYTES);
let used = 0;

/** Where `bytes` bytes aligned to `align` start in the current slab, starting a new one if needed. */
function cut(bytes: number, align: number): number {
  let at = (used + align - 1) & -align;
  if (at + bytes > SLAB_BYTES) {
    slab = new ArrayBuffer(SLAB_BYTES);
    at = 0;
  }
  used = at + bytes;
  return at;
}

/** A zero-filled `Uint8Array` of `length` bytes. */
export function smallBytes(length: number): Uint8Array {
  if (length > MAX_CUT) return new Uint8Array(length);
  const at = cut(length, 1); // first: it may start a new slab
  return new Uint8Array(slab, at, length);
}

/** A zero-filled `Int32Array` of `length` numbers. */
export function smallInt32(length: number): Int32Array {
  if (length * 4 > MAX_CUT) return new Int32Array(length);
  const at = cut(length * 4, 4);
  return new Int32Array(slab, at, length);
}

/** A zero-filled `Uint32Array` of `length` numbers. */
export function smallUint32(length: number): Uint32Array {
  if (length * 4 > MAX_CUT) return new Uint32Array(length);
  const at = cut(length * 4, 4);
  return new Uint32Array(slab, at, length);
}

/** A copy of `bytes[start, end)` in an array of its own, as `slice` gives it. */
export function copyBytes(bytes: Uint8Array, start: number, end: number): Uint8Array {
  const copy = smallBytes(end - start);
  for (let i = start; i < end; i++) copy[i - start] = bytes[i];
  return copy;
}

/** `text` in UTF-8 (lone surrogates as U+FFFD), as `TextEncoder.encode` gives it. */
export function encodeSmall(text: string): Uint8Array {
  // At most three bytes per UTF-16 unit; what the text does not take is given back.
  const most = text.length * 3;
  if (most > MAX_CUT) return encoder.encode(text);
  const at = cut(most, 1);
  const room = new Uint8Array(slab, at, most);
  let written = 0;
  // Plain ASCII, the usual value, is copied here: cheaper than the call into the runtime.
  while (written < text.length) {
    const unit = text.charCodeAt(written);
    if (unit >= 0x80) break;
    room[written++] = unit;
  }
  if (written < text.length) {
    written += encoder.encodeInto(text.slice(written), room.subarray(written)).written;
  }
  used = at + written;
  return new Uint8Array(slab, at, written);
}
