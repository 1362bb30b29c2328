/**
 * Reads a vCard book: each EMAIL of a card becomes an entry with the card's
 * name, and the given name and surname of its N property when it has one;
 * cards without an EMAIL are skipped. The bytes are decoded and given to
 * the parser in `book/vcard.ts` a chunk of whole cards at a time, so the file is
 * never one string and a million cards never become a million contact
 * objects at once.
 *
 * ```ts
 * import { BookBytes } from "./bytes.ts";
 * import { BookCollector } from "./collect.ts";
 * import { readVCard } from "./vcard_reader.ts";
 *
 * const text = "BEGIN:VCARD\nVERSION:4.0\nFN:Ada\nEMAIL:a@example.com\nEND:VCARD\n";
 * const bytes = BookBytes.fromBytes(new TextEncoder().encode(text));
 * bytes.begin();
 * const collector = new BookCollector("book.vcf", "error");
 * readVCard(bytes, collector);
 * collector.finish(false).get("a@example.com"); // "Ada"
 * ```
 *
 * @module
 */

import { type BookBytes, MAX_RECORD_BYTES, RecordTooLongError } from "./bytes.ts";
import type { BookCollector } from "./collect.ts";
import type { ReaderOptions } from "./reader.ts";
import { normalizeEmail } from "./email.ts";
import { parseVCardLines, type VCardContact } from "./vcard.ts";

/** Where the text may be cut: a card's last line and the next card's first. */
const CARD_END = "END:VCARD";
const CARD_BEGIN = "BEGIN:VCARD";

/** Reads every card into the collector. */
export function readVCard(
  bytes: BookBytes,
  collector: BookCollector,
  _options: ReaderOptions = {},
): void {
  const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
  let pending = "";
  let lineOffset = 0;
  let start = bytes.start;
  for (;;) {
    // The checked bytes end on a whole character, so each piece decodes alone.
    const text = pending + decoder.decode(bytes.buffer.subarray(start, bytes.end));
    const more = bytes.more(bytes.end);
    start = 0;
    const cut = more < 0 ? text.length : lastCardBoundary(text, pending.length);
    if (cut > 0) {
      lineOffset += readCards(text.slice(0, cut), lineOffset, collector);
      pending = text.slice(cut);
    } else {
      pending = text;
    }
    // A card with no end in sight (no BEGIN:VCARD after an END:VCARD) is not held on.
    if (pending.length > MAX_RECORD_BYTES) throw new RecordTooLongError({ line: lineOffset + 1 });
    if (more < 0) return;
  }
}

/**
 * The start of the last BEGIN:VCARD line that directly follows an END:VCARD
 * line and starts after `from - CARD_BEGIN.length`, or 0 when there is none.
 * Cutting there cannot split a card, nor a nested 2.1 AGENT card (an AGENT
 * line comes before one). The search starts near `from`, so the text before
 * it is not searched again: reading stays linear however long a card is.
 */
export function lastCardBoundary(text: string, from: number): number {
  const boundary = /^END:VCARD\r?\n(?=BEGIN:VCARD)/gim;
  boundary.lastIndex = Math.max(0, from - CARD_BEGIN.length - CARD_END.length - 2);
  let cut = 0;
  for (let match = boundary.exec(text); match !== null; match = boundary.exec(text)) {
    cut = match.index + match[0].length;
  }
  return cut;
}

/** Reads whole cards whose first line is line `lineOffset + 1`; returns their line count. */
function readCards(text: string, lineOffset: number, collector: BookCollector): number {
  const { contacts, problems, lines } = parseVCardLines(text);
  for (const problem of problems) {
    // The parser counts lines from the chunk's start, in `line` and in its messages.
    const message = lineOffset === 0
      ? problem.message
      : problem.message.replace(/\bline (\d+)/g, (_, line) => `line ${Number(line) + lineOffset}`);
    collector.problem(problem.line + lineOffset, message);
  }
  for (const contact of contacts) {
    if (contact.emails.length > 0) addContact(contact, lineOffset, collector);
  }
  return lines;
}

function addContact(contact: VCardContact, lineOffset: number, collector: BookCollector): void {
  const { name, givenName, surname } = contact;
  if (contact.emails.length === 1) {
    collector.add(contact.emails[0], name, contact.emailLines[0] + lineOffset, givenName, surname);
    return;
  }
  // A card may list one address twice (work and home); that is not a duplicate entry.
  const seen = new Set<string>();
  contact.emails.forEach((email, i) => {
    const key = normalizeEmail(email);
    if (seen.has(key)) return;
    seen.add(key);
    collector.add(email, name, contact.emailLines[i] + lineOffset, givenName, surname);
  });
}
