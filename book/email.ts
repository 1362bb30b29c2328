/**
 * The one rule for what counts as an email address, and how addresses are
 * normalised for lookup. The server applies it to queries (a query that
 * breaks it gets BAD_REQUEST) and the loader to every address in a book, so
 * both always agree.
 *
 * ```ts
 * import { emailProblem, normalizeEmail } from "./email.ts";
 *
 * normalizeEmail("  Ada@Example.COM ");   // "ada@example.com"
 * emailProblem("ada@example.com");        // undefined: valid
 * emailProblem("ada.example.com");        // "it has no @"
 * ```
 *
 * For the hot paths (every query, every row of a large book) the rule also
 * has a byte-level form for plain ASCII that makes no string and works
 * four bytes at a time, {@linkcode normalizeAsciiEmailWords}; anything it
 * cannot settle goes to the string functions above, so they always agree.
 *
 * @module
 */

/** The longest address accepted, in characters, after trimming. */
export const MAX_EMAIL_CHARS = 254;

// Whitespace (Unicode White_Space, as String.prototype.trim sees it) or a control character.
const WHITESPACE_OR_CONTROL = /[\s\p{Cc}]/u;

/**
 * Characters that show as nothing or turn the text around, so that two
 * addresses that look the same are different keys: every format character
 * (Cf: zero-width spaces and joiners U+200B..U+200D, the direction marks,
 * embeddings, overrides and isolates U+200E, U+200F, U+202A..U+202E,
 * U+2066..U+2069, the invisible operators U+2060..U+2064, the soft hyphen
 * U+00AD, U+180E, a U+FEFF inside the text, ...) and every other
 * Default_Ignorable_Code_Point (Hangul fillers, variation selectors, the
 * combining grapheme joiner, ...).
 */
const INVISIBLE = /[\p{Cf}\p{Default_Ignorable_Code_Point}]/u;

/** Normalises an address for lookup: trims surrounding whitespace, then lower-cases it. */
export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}

/**
 * Says what is wrong with an address, or returns `undefined` when it is a
 * valid one. The address is trimmed first. Valid means: exactly one `@`,
 * something before and after it, no whitespace or control characters, no
 * invisible or direction-changing characters (format characters and other
 * default-ignorable ones, named in the answer as `U+XXXX`), and at most
 * {@linkcode MAX_EMAIL_CHARS} characters.
 */
export function emailProblem(email: string): string | undefined {
  const address = email.trim();
  if (address.length === 0) return "it is empty";
  const at = address.indexOf("@");
  if (at < 0) return "it has no @";
  if (address.indexOf("@", at + 1) >= 0) return "it has more than one @";
  if (at === 0) return "nothing comes before the @";
  if (at === address.length - 1) return "nothing comes after the @";
  const invisible = INVISIBLE.exec(address);
  if (invisible !== null) {
    return `it contains ${
      codePointName(invisible[0])
    }, an invisible or direction-changing character`;
  }
  if (WHITESPACE_OR_CONTROL.test(address)) return "it contains whitespace or a control character";
  const chars = countCodePoints(address);
  if (chars > MAX_EMAIL_CHARS) {
    return `it is ${chars} characters long, over the limit of ${MAX_EMAIL_CHARS}`;
  }
  return undefined;
}

function countCodePoints(text: string): number {
  let count = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    // A high surrogate followed by a low one is a single character.
    if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i++;
    }
    count++;
  }
  return count;
}

/** `U+200B` for a zero width space: the code point in at least four hex digits. */
export function codePointName(char: string): string {
  return "U+" + char.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0");
}

/** Whether a byte is one of the ASCII characters `String.prototype.trim` removes: tab, LF, VT, FF, CR, space. */
export function isAsciiSpace(byte: number): boolean {
  return byte === 0x20 || (byte >= 0x09 && byte <= 0x0d);
}

/** Each byte's top bit, in a word of four. */
const TOP_BITS = 0x80808080;
/** Added to a word of ASCII bytes, sets a byte's top bit where the byte is at least `!` (0x21). */
const FROM_VISIBLE = 0x5f5f5f5f;
/** Added to a word of ASCII bytes, sets a byte's top bit where the byte is DEL (0x7f). */
const FROM_DEL = 0x01010101;
/** Added to a word of ASCII bytes, sets a byte's top bit where the byte is at least `A`. */
const FROM_A = 0x3f3f3f3f;
/** Added to a word of ASCII bytes, sets a byte's top bit where the byte is past `Z`. */
const PAST_Z = 0x25252525;
/** Four `@`s, to find the `@` of a word by XOR. */
const FOUR_ATS = 0x40404040;
/** Each byte's low seven bits, in a word of four. */
const LOW_SEVEN_BITS = 0x7f7f7f7f;
/** Fills the bytes past an address's end in its last word: a visible letter, so they pass the checks. */
const FOUR_FILLERS = 0x61616161;

/**
 * The fast path of the rule, for an address in plain ASCII: trims
 * `input`'s bytes `[start, end)`, checks them and writes them lower-cased
 * to `out` from `outStart`, in one pass that makes no string; returns the
 * length. Each word of four bytes is checked (visible ASCII only),
 * lower-cased and searched for its `@` with a few whole-word operations
 * instead of a branch or two per byte.
 *
 * Returns -1 when it cannot settle the address alone: anything not visible
 * ASCII inside it (which may still be valid, or may need a problem worded),
 * no `@`, more than one, nothing before or after it, more than
 * {@linkcode MAX_EMAIL_CHARS} bytes, or no room in `out` for the length
 * rounded up to four. Then the caller decodes the bytes and asks
 * {@linkcode emailProblem} and {@linkcode normalizeEmail}, which agree with
 * this on every address it accepts.
 *
 * The address is written in whole words, so `out` needs room for its
 * length rounded up to four (the bytes past the length are zero). A read
 * may look at up to three bytes past `end`, inside `input`, and ignores
 * them. {@linkcode WordViews} gives the views of `Uint8Array`s.
 *
 * ```ts
 * import { normalizeAsciiEmailWords } from "./email.ts";
 *
 * const out = new DataView(new ArrayBuffer(256));
 * const ada = new TextEncoder().encode(" Ada@Example.COM\n");
 * normalizeAsciiEmailWords(new DataView(ada.buffer), 0, 17, out, 0); // 15: "ada@example.com"
 * const zoe = new TextEncoder().encode("zoë@example.com");
 * normalizeAsciiEmailWords(new DataView(zoe.buffer), 0, 16, out, 0); // -1
 * ```
 */
export function normalizeAsciiEmailWords(
  input: DataView,
  start: number,
  end: number,
  out: DataView,
  outStart: number,
): number {
  while (start < end && isAsciiSpace(input.getUint8(start))) start++;
  while (end > start && isAsciiSpace(input.getUint8(end - 1))) end--;
  const length = end - start;
  if (length === 0 || length > MAX_EMAIL_CHARS || ((length + 3) & ~3) > out.byteLength - outStart) {
    return -1;
  }
  let at = -1;
  const whole = start + ((length + 3) & ~3) <= input.byteLength;
  for (let i = 0; i < length; i += 4) {
    let word = whole || i + 4 <= length
      ? input.getInt32(start + i, true)
      : lastWord(input, start + i, end);
    if (i + 4 > length) {
      const keep = (1 << ((length - i) << 3)) - 1;
      word = (word & keep) | (FOUR_FILLERS & ~keep);
    }
    // Any byte that is not visible ASCII (0x21..0x7e) sends the address to the general path.
    const outside = (word & TOP_BITS) | (((word + FROM_VISIBLE) & TOP_BITS) ^ TOP_BITS) |
      ((word + FROM_DEL) & TOP_BITS);
    if (outside !== 0) return -1;
    // An upper-case letter's top-bit marker, moved down two places, is its case bit (0x20).
    word |= ((word + FROM_A) & ~(word + PAST_Z) & TOP_BITS) >>> 2;
    const ats = atBytes(word ^ FOUR_ATS);
    if (ats !== 0) {
      if (at >= 0 || (ats & (ats - 1)) !== 0) return -1; // a second @
      at = i + ((31 - Math.clz32(ats)) >> 3);
    }
    if (i + 4 > length) word &= (1 << ((length - i) << 3)) - 1; // the fillers
    out.setInt32(outStart + i, word, true);
  }
  if (at <= 0 || at === length - 1) return -1;
  return length;
}

/**
 * The last one to three bytes of an address, from `from` to `end`, read one
 * by one (the input ends before a whole word) into a little-endian word
 * whose other bytes are zero; the caller fills them.
 */
function lastWord(input: DataView, from: number, end: number): number {
  let word = 0;
  for (let i = end - 1; i >= from; i--) word = (word << 8) | input.getUint8(i);
  return word;
}

/** A word with the top bit set in each byte of `word` that is zero, and in no other. */
function atBytes(word: number): number {
  return ~(((word & LOW_SEVEN_BITS) + LOW_SEVEN_BITS) | word | LOW_SEVEN_BITS);
}

/**
 * A `DataView` of the same bytes as `bytes` (not of its whole buffer), to
 * read them four at a time with {@linkcode normalizeAsciiEmailWords}.
 *
 * ```ts
 * import { wordView } from "./email.ts";
 *
 * const bytes = new Uint8Array([1, 2, 3, 4, 5, 6]);
 * wordView(bytes.subarray(2)).getUint8(0); // 3
 * ```
 */
export function wordView(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

const NO_BYTES = new Uint8Array(0);

/**
 * A `DataView` of the last `Uint8Array` asked for, made again only when
 * another one is asked for: callers of {@linkcode normalizeAsciiEmailWords}
 * read many addresses from the same buffer (the server's read buffer, the
 * loader's chunk), and a view per address would be garbage. It keeps that
 * one buffer alive until the next is asked for.
 *
 * ```ts
 * import { WordViews } from "./email.ts";
 *
 * const views = new WordViews();
 * const bytes = new Uint8Array(8);
 * views.of(bytes) === views.of(bytes); // true
 * ```
 */
export class WordViews {
  #bytes: Uint8Array = NO_BYTES;
  #view: DataView = wordView(NO_BYTES);

  /** A view of the same bytes as `bytes`. */
  of(bytes: Uint8Array): DataView {
    if (bytes !== this.#bytes) {
      this.#bytes = bytes;
      this.#view = wordView(bytes);
    }
    return this.#view;
  }
}
