/**
 * Characters that must never reach a terminal raw from data: every control
 * character (C0 with tab and line breaks, ESC that starts escape sequences
 * and OSC, DEL, C1 with its one-byte CSI) and the direction marks,
 * embeddings, overrides and isolates that make text read in another order
 * than it is stored (U+200E, U+200F, U+202A..U+202E, U+2066..U+2069).
 *
 * One rule for both ends: the book loader refuses names holding them
 * (book/collect.ts), and the client shows any that an older or another
 * server sends escaped (client/cli.ts).
 *
 * ```ts
 * import { escapeForTerminal, terminalUnsafeCharacter } from "./terminal_text.ts";
 *
 * terminalUnsafeCharacter("Ada Lovelace"); // undefined
 * terminalUnsafeCharacter("Ada\u001b[2J"); // "\u001b"
 * escapeForTerminal("Ada\u001b[2J"); // "Ada\\u001B[2J"
 * ```
 *
 * @module
 */

const UNSAFE = /[\p{Cc}\u200E\u200F\u202A-\u202E\u2066-\u2069]/u;
const UNSAFE_ALL = new RegExp(UNSAFE.source, "gu");

/** UTF-8: C0 and DEL are single bytes; C1 is 0xC2 0x80..0x9F; the direction marks start 0xE2 0x80 or 0xE2 0x81. */
const FIRST_PRINTABLE = 0x20;
const DEL = 0x7f;
const C1_LEAD = 0xc2;
const C1_LAST = 0x9f;
const MARK_LEAD = 0xe2;
const MARK_PAGE_200X = 0x80;
const MARK_PAGE_204X = 0x81;
const LRM_RLM_FIRST = 0x8e; // U+200E, U+200F
const LRM_RLM_LAST = 0x8f;
const EMBEDDINGS_FIRST = 0xaa; // U+202A..U+202E
const EMBEDDINGS_LAST = 0xae;
const ISOLATES_FIRST = 0xa6; // U+2066..U+2069
const ISOLATES_LAST = 0xa9;

/** The first character of `text` that must not reach a terminal raw, or undefined when there is none. */
export function terminalUnsafeCharacter(text: string): string | undefined {
  return UNSAFE.exec(text)?.[0];
}

/**
 * `text` with each character that must not reach a terminal raw written as
 * `\uXXXX`: readable, and still valid inside a JSON string.
 */
export function escapeForTerminal(text: string): string {
  return UNSAFE.test(text) ? text.replace(UNSAFE_ALL, escapeCharacter) : text;
}

/**
 * The byte-level form of {@linkcode terminalUnsafeCharacter}, for the book
 * loader's hot path: the offset of the first such character in the UTF-8
 * `bytes[start, end)`, or -1 when there is none. Makes no string.
 */
export function terminalUnsafeOffset(bytes: Uint8Array, start: number, end: number): number {
  for (let i = start; i < end; i++) {
    const byte = bytes[i];
    if (byte < FIRST_PRINTABLE || byte === DEL) return i;
    if (byte === C1_LEAD) {
      if (i + 1 < end && bytes[i + 1] <= C1_LAST) return i;
    } else if (byte === MARK_LEAD && i + 2 < end) {
      const page = bytes[i + 1];
      const last = bytes[i + 2];
      if (
        (page === MARK_PAGE_200X &&
          ((last >= LRM_RLM_FIRST && last <= LRM_RLM_LAST) ||
            (last >= EMBEDDINGS_FIRST && last <= EMBEDDINGS_LAST))) ||
        (page === MARK_PAGE_204X && last >= ISOLATES_FIRST && last <= ISOLATES_LAST)
      ) {
        return i;
      }
    }
  }
  return -1;
}

function escapeCharacter(char: string): string {
  return "\\u" + char.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0");
}
