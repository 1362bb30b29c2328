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
