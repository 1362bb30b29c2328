/**
 * UTF-8 helpers shared by the book, the loader, the wire codec and the
 * generator: the most bytes one UTF-16 code unit can take, a hand-written
 * encoder that writes into a caller's buffer without making a view per
 * call, and a strict decoder that says when bytes are not UTF-8.
 *
 * ```ts
 * import { MAX_UTF8_PER_UNIT, writeUtf8 } from "./utf8.ts";
 *
 * const out = new Uint8Array("Zoë".length * MAX_UTF8_PER_UNIT);
 * writeUtf8("Zoë", out, 0); // 4: the bytes 5a 6f c3 ab
 * ```
 *
 * @module
 */

/** A UTF-16 code unit takes at most 3 bytes in UTF-8 (a surrogate pair takes 4 for 2 units). */
export const MAX_UTF8_PER_UNIT = 3;

/** Keeps a leading U+FEFF as a character: in a query it is text to judge, not a byte-order mark. */
const strictDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** What `TextEncoder` writes for a lone surrogate. */
const REPLACEMENT_CHARACTER = 0xfffd;

/**
 * Writes `text` as UTF-8 into `target` from `offset`, which must have room
 * for `text.length * MAX_UTF8_PER_UNIT` bytes; returns the offset after it.
 * Lone surrogates become U+FFFD, as with `TextEncoder`.
 */
export function writeUtf8(text: string, target: Uint8Array, offset: number): number {
  const length = text.length;
  let at = offset;
  for (let i = 0; i < length; i++) {
    let code = text.charCodeAt(i);
    if (code < 0x80) {
      target[at++] = code;
      continue;
    }
    if (code < 0x800) {
      target[at++] = 0xc0 | (code >> 6);
      target[at++] = 0x80 | (code & 0x3f);
      continue;
    }
    if (code >= 0xd800 && code <= 0xdfff) {
      const next = i + 1 < length ? text.charCodeAt(i + 1) : 0;
      if (code <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        i++;
        at = writeCodePoint(0x10000 + ((code - 0xd800) << 10) + (next - 0xdc00), target, at);
        continue;
      }
      code = REPLACEMENT_CHARACTER;
    }
    target[at++] = 0xe0 | (code >> 12);
    target[at++] = 0x80 | ((code >> 6) & 0x3f);
    target[at++] = 0x80 | (code & 0x3f);
  }
  return at;
}

/**
 * Writes one code point (0 to 0x10FFFF, surrogates already paired) as UTF-8
 * at `offset`, which must have room for 4 bytes; returns the offset after it.
 */
export function writeCodePoint(point: number, target: Uint8Array, offset: number): number {
  if (point < 0x80) {
    target[offset++] = point;
  } else if (point < 0x800) {
    target[offset++] = 0xc0 | (point >> 6);
    target[offset++] = 0x80 | (point & 0x3f);
  } else if (point < 0x10000) {
    target[offset++] = 0xe0 | (point >> 12);
    target[offset++] = 0x80 | ((point >> 6) & 0x3f);
    target[offset++] = 0x80 | (point & 0x3f);
  } else {
    target[offset++] = 0xf0 | (point >> 18);
    target[offset++] = 0x80 | ((point >> 12) & 0x3f);
    target[offset++] = 0x80 | ((point >> 6) & 0x3f);
    target[offset++] = 0x80 | (point & 0x3f);
  }
  return offset;
}

/**
 * Decodes strict UTF-8; returns `undefined` for invalid bytes instead of
 * replacing them. A leading U+FEFF is kept, not taken as a byte-order mark.
 */
export function decodeUtf8(bytes: Uint8Array): string | undefined {
  try {
    return strictDecoder.decode(bytes);
  } catch {
    return undefined;
  }
}

/** Below this many bytes, ASCII is turned into a string in JavaScript: cheaper than a decoder call. */
const SHORT_TEXT_BYTES = 64;
const replacingDecoder = new TextDecoder();

/**
 * The text of `bytes[start, end)` as UTF-8 (invalid bytes replaced, as
 * `TextDecoder` does). Short ASCII, most names and emails, is read without
 * calling the decoder, which costs more than the work for a few bytes.
 *
 * ```ts
 * import { decodeText } from "./utf8.ts";
 * decodeText(new TextEncoder().encode("ada@example.com"), 0, 15); // "ada@example.com"
 * ```
 */
export function decodeText(bytes: Uint8Array, start: number, end: number): string {
  if (end - start <= SHORT_TEXT_BYTES) {
    let text = "";
    for (let i = start; i < end; i++) {
      const byte = bytes[i];
      if (byte >= 0x80) return replacingDecoder.decode(bytes.subarray(start, end));
      text += String.fromCharCode(byte);
    }
    return text;
  }
  return replacingDecoder.decode(bytes.subarray(start, end));
}
