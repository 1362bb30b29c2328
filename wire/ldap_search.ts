/**
 * LDAP search over the book: which entries a filter matches, found from a
 * plan of candidates and checked one by one, in ascending entry order, up
 * to a size limit; and each entry's attributes as the LDAP front end
 * serves them. The base and scope of a search are the caller's: this is
 * the subtree under the directory's suffix.
 *
 * **The plan** ({@linkcode planFilter}) is a cursor over candidate
 * entries in ascending order, a superset of those the filter is TRUE for,
 * read only as far as the search goes (so a size limit of 100 reads only
 * the beginnings of the index's lists, whatever the book's size), or
 * "every entry":
 *
 * - equality (and approx) on mail: `book.lookup`, at most one entry;
 * - equality, approx and substrings on cn, displayName, sn, givenName and
 *   substrings on mail: the book's {@linkcode TextIndex} (trigrams);
 * - a filter item that can never be TRUE (an unknown attribute, an
 *   extensible match, substrings or ordering on objectClass, an
 *   objectClass the entries do not have, a value that was not UTF-8): no
 *   candidates at all, so that
 *   Evolution's OR over dozens of attributes we do not have costs nothing;
 * - AND: the intersection of its planned children's, rarest first (those
 *   far commoner than the rarest left to the check); OR: the union of its
 *   children's, unless one of them is "every entry" (children asking the
 *   index the same, as Thunderbird's four do, asked once).
 *
 * Every candidate is then checked with the filter itself
 * ({@linkcode compileFilter}), on the entry's bytes where they lie
 * ({@linkcode BookSubject}), so the plan only has to be a superset.
 *
 * **Which filters scan** (check every entry from the start until the
 * limit): NOT; present (`(objectClass=*)`, `(mail=*)`); `>=` and `<=`;
 * objectClass equality alone (`(objectClass=inetOrgPerson)`); equality
 * with an empty value; substrings whose every fragment is one or two bytes
 * long and common (`*a*`), or made only of trigrams in more than a quarter
 * of the entries (`*example.com*`); an AND of only those, and an OR with
 * any of those. A scan is correct, and bounded by the caller's size limit
 * and {@linkcode SearchRequest.shouldStop}; where a short fragment is
 * common, matches are dense and the limit comes soon.
 *
 * ```ts
 * import { AddressBookBuilder } from "../book/addressbook.ts";
 * import { TextIndex } from "../book/text_index.ts";
 * import type { LdapFilter } from "./ldap_filter.ts";
 * import { searchBook } from "./ldap_search.ts";
 *
 * const builder = new AddressBookBuilder();
 * builder.add("ada@example.com", "Ada Lovelace");
 * builder.add("alan@example.com", "Alan Turing");
 * const book = builder.build();
 * const index = TextIndex.build(book);
 * const filter: LdapFilter = { kind: "substrings", attribute: "cn", any: ["lace"] };
 * const outcome = searchBook(book, index, { filter }, 100);
 * outcome.entries.map((entry) => book.entry(entry).email); // ["ada@example.com"]
 * ```
 *
 * @module
 */

import { smallUint32 } from "../common/small_arrays.ts";
import { type AddressBook, NOT_FOUND } from "../book/addressbook.ts";
import { isAsciiSpace, normalizeEmail } from "../book/email.ts";
import { MAX_UTF8_PER_UNIT, writeUtf8 } from "../common/utf8.ts";
import {
  ArrayCursor,
  type CandidateCursor,
  foldSimpleUtf8,
  foldText,
  INTERSECT_RATIO,
  IntersectCursor,
  type TextIndex,
  UnionCursor,
} from "../book/text_index.ts";
import {
  type ByteRange,
  compileFilter,
  type FilterSubject,
  isAssertable,
  type LdapFilter,
  OBJECT_CLASSES,
  resolveAttribute,
  type TextAttribute,
} from "./ldap_filter.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** How many entries are checked between calls of {@linkcode SearchRequest.shouldStop}. */
export const STOP_CHECK_INTERVAL = 1024;

/** A name's given name and surname, as the directory serves them. */
export interface NameParts {
  /** Everything before the last word; none for a one-word name. */
  givenName?: string;
  /** The last word; a one-word name is its own surname (`person` requires one). */
  surname: string;
}

const WHITESPACE = /\s/;

/**
 * Splits a name for an entry whose source had no given name or surname:
 * the last word (after the last run of whitespace) is the surname, what
 * comes before it the given name, both cut from the trimmed name as they
 * are (so each is a piece of the name, inner spaces and all).
 *
 * ```ts
 * import { splitName } from "./ldap_search.ts";
 *
 * splitName("Ada King Lovelace"); // { givenName: "Ada King", surname: "Lovelace" }
 * splitName("李小龙"); // { surname: "李小龙" }
 * ```
 */
export function splitName(name: string): NameParts {
  const trimmed = name.trim();
  let wordStart = trimmed.length;
  while (wordStart > 0 && !WHITESPACE.test(trimmed[wordStart - 1])) wordStart--;
  if (wordStart === 0) return { surname: trimmed };
  let givenEnd = wordStart;
  while (givenEnd > 0 && WHITESPACE.test(trimmed[givenEnd - 1])) givenEnd--;
  return { givenName: trimmed.slice(0, givenEnd), surname: trimmed.slice(wordStart) };
}

/**
 * An entry's name parts: the source's where it had any (the surname
 * falling back to the split one, since `person` requires it), otherwise
 * split from the name by {@linkcode splitName}.
 */
export function nameParts(name: string, givenName?: string, surname?: string): NameParts {
  if (givenName === undefined && surname === undefined) return splitName(name);
  const parts: NameParts = { surname: surname ?? splitName(name).surname };
  if (givenName !== undefined) parts.givenName = givenName;
  return parts;
}

/** An entry's attributes, as the LDAP front end serves them. */
export interface LdapEntryAttributes {
  /** The email, as the book keys it. */
  mail: string;
  /** The name. */
  cn: string;
  /** The name again. */
  displayName: string;
  /** The surname: the source's, or the name's last word. */
  sn: string;
  /** The given name: the source's, or the name before its last word; absent for a one-word name. */
  givenName?: string;
  /** `top`, `person`, `organizationalPerson`, `inetOrgPerson`. */
  objectClass: readonly string[];
}

/** One subject per book for {@linkcode entryAttributes}, which reads an entry at a time. */
const attributeReaders = new WeakMap<AddressBook, BookSubject>();
const servedRange: ByteRange = { bytes: new Uint8Array(0), start: 0, end: 0 };

/**
 * The attributes of the book's entry `entry`, as strings: the values
 * {@linkcode BookSubject.served} gives as bytes (the same split of the
 * name as {@linkcode nameParts}), decoded without TextDecoder's cost per
 * call.
 *
 * @throws {RangeError} when the book has no such entry.
 */
export function entryAttributes(book: AddressBook, entry: number): LdapEntryAttributes {
  if (!Number.isInteger(entry) || entry < 0 || entry >= book.size) {
    throw new RangeError(`The book has no entry ${entry}: it holds ${book.size}.`);
  }
  let subject = attributeReaders.get(book);
  if (subject === undefined) attributeReaders.set(book, subject = new BookSubject(book));
  subject.load(entry);
  const text = (attribute: TextAttribute) =>
    subject.served(attribute, servedRange)
      ? decodeText(servedRange.bytes, servedRange.start, servedRange.end)
      : undefined;
  const name = text("cn")!;
  const attributes: LdapEntryAttributes = {
    mail: text("mail")!,
    cn: name,
    displayName: name,
    sn: text("sn")!,
    objectClass: OBJECT_CLASSES,
  };
  const givenName = text("givenName");
  if (givenName !== undefined) attributes.givenName = givenName;
  return attributes;
}

/** Which value of an entry: the slots of {@linkcode BookSubject}'s views. */
const MAIL = 0;
const NAME = 1;
const GIVEN = 2;
const SURNAME = 3;
const SLOTS = 4;

const SLOT_OF: Readonly<Record<TextAttribute, number>> = {
  mail: MAIL,
  cn: NAME,
  displayName: NAME,
  givenName: GIVEN,
  sn: SURNAME,
};

/** One subject per book for this thread's searches (see {@linkcode BookSubject.of}). */
const sharedSubjects = new WeakMap<AddressBook, BookSubject>();

/**
 * The book's entries as filter subjects, and their served values as bytes
 * for a front end to copy into its replies: one object, pointed at an
 * entry with {@linkcode BookSubject.load}, that works out only the values
 * asked for, once each. A value in plain ASCII is read where it lies in
 * the book's buffers (its capitals are lowered by the filter as it reads);
 * only other values are decoded, folded and encoded again, into buffers of
 * the subject's own, which the next `load` reuses.
 */
export class BookSubject implements FilterSubject {
  readonly #book: AddressBook;
  #entry = -1;
  /** Bit `slot` set once that slot's views are worked out for this entry. */
  #ready = 0;
  /** Bit `slot` set when the entry has that value (all have but maybe a given name). */
  #present = 0;
  readonly #raw: ByteRange[] = [];
  readonly #folded: ByteRange[] = [];
  /** Per slot, room for a folded value that is not plain ASCII. */
  readonly #foldedRoom: Uint8Array[] = [];
  /** Where {@linkcode splitNameBytes} puts the parts it finds. */
  readonly #parts = new Int32Array(4);

  /**
   * The subject of `book` that searches in this thread share: its buffers
   * are made once per book, not per search (a search loads it entry by
   * entry and is done with it when it returns).
   */
  static of(book: AddressBook): BookSubject {
    let subject = sharedSubjects.get(book);
    if (subject === undefined) sharedSubjects.set(book, subject = new BookSubject(book));
    return subject;
  }

  constructor(book: AddressBook) {
    this.#book = book;
    for (let slot = 0; slot < SLOTS; slot++) {
      this.#raw.push({ bytes: EMPTY, start: 0, end: 0 });
      this.#folded.push({ bytes: EMPTY, start: 0, end: 0 });
      this.#foldedRoom.push(new Uint8Array(64));
    }
  }

  /** Points the subject at entry `entry` (not checked: the caller's loop bounds it). */
  load(entry: number): void {
    this.#entry = entry;
    this.#ready = 0;
    this.#present = 0;
  }

  /** See {@linkcode FilterSubject.email}. */
  email(range: ByteRange): void {
    this.served("mail", range);
  }

  /** See {@linkcode FilterSubject.value}. */
  value(attribute: TextAttribute, range: ByteRange): boolean {
    const slot = SLOT_OF[attribute];
    if ((this.#ready & (1 << slot)) === 0) this.#workOut(slot);
    if ((this.#present & (1 << slot)) === 0) return false;
    const folded = this.#folded[slot];
    range.bytes = folded.bytes;
    range.start = folded.start;
    range.end = folded.end;
    return true;
  }

  /**
   * Points `range` at a value as served (UTF-8, not folded: what
   * {@linkcode entryAttributes} gives as a string); returns `false` when
   * the entry has no such value (a one-word name's givenName). Valid until
   * the next `load`.
   */
  served(attribute: TextAttribute, range: ByteRange): boolean {
    const slot = SLOT_OF[attribute];
    if ((this.#ready & (1 << slot)) === 0) this.#workOut(slot);
    if ((this.#present & (1 << slot)) === 0) return false;
    const raw = this.#raw[slot];
    range.bytes = raw.bytes;
    range.start = raw.start;
    range.end = raw.end;
    return true;
  }

  #workOut(slot: number): void {
    const book = this.#book;
    const entry = this.#entry;
    if (slot === MAIL) {
      this.#setRaw(MAIL, book.text, book.keyStart(entry), book.keyEnd(entry));
    } else if (slot === NAME) {
      this.#setRaw(NAME, book.text, book.nameStart(entry), book.nameEnd(entry));
    } else {
      this.#workOutParts();
      return;
    }
    this.#foldRaw(slot);
  }

  /**
   * Works out the given name and surname, both at once: the source's, or
   * the name split at its last run of whitespace. The split is made twice,
   * on the served name and on the folded one, which give the same parts:
   * folding turns whitespace into whitespace and nothing else into it, and
   * no character composes with whitespace.
   */
  #workOutParts(): void {
    const { namePartStarts, nameParts: partBytes } = this.#book.toShared();
    const entry = this.#entry;
    this.#ready |= (1 << GIVEN) | (1 << SURNAME);
    if (namePartStarts.length > 0) {
      const given = namePartStarts[2 * entry];
      const family = namePartStarts[2 * entry + 1];
      const end = namePartStarts[2 * entry + 2];
      if (family > given) {
        this.#setRaw(GIVEN, partBytes, given, family);
        this.#foldRaw(GIVEN);
      }
      if (end > family) {
        this.#setRaw(SURNAME, partBytes, family, end);
        this.#foldRaw(SURNAME);
        return;
      }
      // The source had a given name only: person requires a surname, the name's last word.
      if (family > given) return this.#split(false);
    }
    this.#split(true);
  }

  /** Sets the surname (and, when `withGiven`, the given name) from the name, served and folded. */
  #split(withGiven: boolean): void {
    if ((this.#ready & (1 << NAME)) === 0) this.#workOut(NAME);
    const parts = this.#parts;
    const raw = this.#raw[NAME];
    splitNameBytes(raw.bytes, raw.start, raw.end, parts);
    const hasGiven = withGiven && parts[0] >= 0;
    this.#setRaw(SURNAME, raw.bytes, parts[2], parts[3]);
    if (hasGiven) this.#setRaw(GIVEN, raw.bytes, parts[0], parts[1]);
    const folded = this.#folded[NAME];
    if (folded.bytes !== raw.bytes) splitNameBytes(folded.bytes, folded.start, folded.end, parts);
    this.#setFolded(SURNAME, folded.bytes, parts[2], parts[3]);
    if (hasGiven) this.#setFolded(GIVEN, folded.bytes, parts[0], parts[1]);
  }

  #setFolded(slot: number, bytes: Uint8Array, start: number, end: number): void {
    const folded = this.#folded[slot];
    folded.bytes = bytes;
    folded.start = start;
    folded.end = end;
  }

  #setRaw(slot: number, bytes: Uint8Array, start: number, end: number): void {
    const raw = this.#raw[slot];
    raw.bytes = bytes;
    raw.start = start;
    raw.end = end;
    this.#ready |= 1 << slot;
    this.#present |= 1 << slot;
  }

  #setFoldedToRaw(slot: number): void {
    const raw = this.#raw[slot];
    this.#setFolded(slot, raw.bytes, raw.start, raw.end);
  }

  /**
   * The folded view of a slot's raw value: itself if plain ASCII, else
   * folded into the slot's room, byte by byte where it can be.
   */
  #foldRaw(slot: number): void {
    const { bytes, start, end } = this.#raw[slot];
    if (isAscii(bytes, start, end)) {
      this.#setFoldedToRaw(slot);
      return;
    }
    const room = this.#room(this.#foldedRoom, slot, end - start);
    const length = foldSimpleUtf8(bytes, start, end, room);
    if (length >= 0) this.#setFolded(slot, room, 0, length);
    else this.#encodeFolded(slot, foldText(decodeText(bytes, start, end)));
  }

  #encodeFolded(slot: number, folded: string): void {
    const room = this.#room(this.#foldedRoom, slot, folded.length);
    const view = this.#folded[slot];
    view.bytes = room;
    view.start = 0;
    view.end = writeUtf8(folded, room, 0);
  }

  /** The slot's buffer of `rooms`, grown to hold `units` UTF-16 code units as UTF-8. */
  #room(rooms: Uint8Array[], slot: number, units: number): Uint8Array {
    if (rooms[slot].length < units * MAX_UTF8_PER_UNIT) {
      rooms[slot] = new Uint8Array(units * MAX_UTF8_PER_UNIT);
    }
    return rooms[slot];
  }
}

const EMPTY = new Uint8Array(0);

function isAscii(bytes: Uint8Array, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (bytes[i] >= 0x80) return false;
  return true;
}

/**
 * {@linkcode splitName} on UTF-8 bytes, `bytes[start, end)`, with no
 * string: writes the given name's start and end (both -1 when there is
 * none) and the surname's start and end into `parts`. Whitespace is what
 * `\s` and `trim()` take: ASCII tab to carriage return and space, U+00A0,
 * U+1680, U+2000–U+200A, U+2028, U+2029, U+202F, U+205F, U+3000, U+FEFF.
 */
export function splitNameBytes(
  bytes: Uint8Array,
  start: number,
  end: number,
  parts: Int32Array,
): void {
  let first = -1;
  let contentEnd = start;
  let runStart = -1;
  let lastRunStart = -1;
  let lastRunEnd = -1;
  for (let i = start; i < end;) {
    const space = whitespaceAt(bytes, i, end);
    if (space > 0) {
      if (runStart < 0) runStart = i;
      i += space;
      continue;
    }
    if (first < 0) {
      first = i;
    } else if (runStart >= 0) {
      lastRunStart = runStart;
      lastRunEnd = i;
    }
    runStart = -1;
    i = Math.min(end, i + utf8Length(bytes[i]));
    contentEnd = i;
  }
  if (first < 0) first = contentEnd = start;
  parts[0] = lastRunStart < 0 ? -1 : first;
  parts[1] = lastRunStart;
  parts[2] = lastRunStart < 0 ? first : lastRunEnd;
  parts[3] = contentEnd;
}

/** The bytes of the character starting at a UTF-8 lead byte (1 for a stray continuation byte). */
function utf8Length(lead: number): number {
  if (lead < 0xc0) return 1;
  if (lead < 0xe0) return 2;
  if (lead < 0xf0) return 3;
  return 4;
}

/** The length of the whitespace character at `i` (as `\s` sees it), or 0 when it is not one. */
function whitespaceAt(bytes: Uint8Array, i: number, end: number): number {
  const byte = bytes[i];
  if (byte < 0x80) return isAsciiSpace(byte) ? 1 : 0;
  if (byte === 0xc2) return i + 1 < end && bytes[i + 1] === 0xa0 ? 2 : 0;
  if (byte < 0xe1 || byte > 0xef || i + 2 >= end) return 0;
  const second = bytes[i + 1];
  const third = bytes[i + 2];
  switch (byte) {
    case 0xe1: // U+1680
      return second === 0x9a && third === 0x80 ? 3 : 0;
    case 0xe2: // U+2000–U+200A, U+2028, U+2029, U+202F; U+205F
      if (second === 0x80) {
        return third <= 0x8a || third === 0xa8 || third === 0xa9 || third === 0xaf ? 3 : 0;
      }
      return second === 0x81 && third === 0x9f ? 3 : 0;
    case 0xe3: // U+3000
      return second === 0x80 && third === 0x80 ? 3 : 0;
    case 0xef: // U+FEFF
      return second === 0xbb && third === 0xbf ? 3 : 0;
    default:
      return 0;
  }
}

/** The longest value decoded by hand; longer ones go to TextDecoder, whose every call costs about 1 µs. */
const SHORT_TEXT = 256;
const units = new Uint16Array(SHORT_TEXT);

/**
 * The book's UTF-8 bytes (valid: the loader checked them, the builder
 * encoded them) as a string, short values without TextDecoder.
 */
function decodeText(bytes: Uint8Array, start: number, end: number): string {
  if (end - start > SHORT_TEXT) return decoder.decode(bytes.subarray(start, end));
  let count = 0;
  for (let i = start; i < end;) {
    const byte = bytes[i];
    if (byte < 0x80) {
      units[count++] = byte;
      i++;
    } else if (byte < 0xe0 && i + 1 < end) {
      units[count++] = ((byte & 0x1f) << 6) | (bytes[i + 1] & 0x3f);
      i += 2;
    } else if (byte < 0xf0 && i + 2 < end) {
      units[count++] = ((byte & 0x0f) << 12) | ((bytes[i + 1] & 0x3f) << 6) | (bytes[i + 2] & 0x3f);
      i += 3;
    } else if (i + 3 < end) {
      const point = (((byte & 0x07) << 18) | ((bytes[i + 1] & 0x3f) << 12) |
        ((bytes[i + 2] & 0x3f) << 6) | (bytes[i + 3] & 0x3f)) - 0x10000;
      units[count++] = 0xd800 + (point >> 10);
      units[count++] = 0xdc00 + (point & 0x3ff);
      i += 4;
    } else {
      return decoder.decode(bytes.subarray(start, end));
    }
  }
  return String.fromCharCode.apply(null, units.subarray(0, count) as unknown as number[]);
}

/** A plan that no entry can come out of. */
const NO_ENTRIES = new Uint32Array(0);

/**
 * The entries a filter may be TRUE for, as a cursor over ascending entry
 * numbers, or `undefined` when the plan is every entry (a scan). See the
 * module's comment for the rules. Without an index, substrings and name
 * equality are scans.
 */
export function planFilter(
  book: AddressBook,
  index: TextIndex | undefined,
  filter: LdapFilter,
): CandidateCursor | undefined {
  return plan(new Planner(book, index), filter);
}

/** What a plan reads. */
class Planner {
  constructor(readonly book: AddressBook, readonly index: TextIndex | undefined) {}

  /** The index's cursor for fragments (a new one each time: each reads at its own pace). */
  candidates(fragments: string[]): CandidateCursor | undefined {
    return this.index?.cursor(fragments);
  }

  /** No candidates. */
  none(): CandidateCursor {
    return new ArrayCursor(NO_ENTRIES);
  }
}

/**
 * The fragments an item asks the index for, as one key, or `undefined`
 * for an item that does not ask it. The index holds every field together,
 * so Thunderbird's `(cn=*K*)`, `(mail=*K*)`, `(givenName=*K*)` and
 * `(sn=*K*)` ask it the same: an OR plans them once.
 */
function indexKey(filter: LdapFilter): string | undefined {
  if (filter.kind !== "substrings" && filter.kind !== "equality" && filter.kind !== "approx") {
    return undefined;
  }
  const attribute = resolveAttribute(filter.attribute);
  if (attribute === undefined || attribute === "objectClass") return undefined;
  if (filter.kind !== "substrings") {
    return attribute === "mail" ? undefined : JSON.stringify([filter.value]);
  }
  return JSON.stringify(substringFragments(filter));
}

/** The fragments of a substrings item, as the index is asked for them. */
function substringFragments(
  filter: { initial?: string; any: string[]; final?: string },
): string[] {
  const fragments = [...filter.any];
  if (filter.initial !== undefined) fragments.push(filter.initial);
  if (filter.final !== undefined) fragments.push(filter.final);
  return fragments;
}

function plan(planner: Planner, filter: LdapFilter): CandidateCursor | undefined {
  switch (filter.kind) {
    case "and": {
      // The rarest child leads; children not far commoner are intersected with it.
      const children: CandidateCursor[] = [];
      for (const child of filter.filters) {
        const found = plan(planner, child);
        if (found !== undefined) children.push(found);
      }
      if (children.length === 0) return undefined;
      children.sort((a, b) => a.estimate - b.estimate);
      const limit = INTERSECT_RATIO * children[0].estimate;
      const kept = children.filter((child) => child.estimate <= limit);
      return kept.length === 1 ? kept[0] : new IntersectCursor(kept);
    }
    case "or": {
      const children: CandidateCursor[] = [];
      const asked = new Set<string>();
      for (const child of filter.filters) {
        const key = indexKey(child);
        if (key !== undefined) {
          if (asked.has(key)) continue;
          asked.add(key);
        }
        const found = plan(planner, child);
        if (found === undefined) return undefined;
        children.push(found);
      }
      if (children.length === 0) return planner.none();
      if (children.length === 1) return children[0];
      return new UnionCursor(children, planner.book.size);
    }
    case "not":
      return undefined;
    case "equality":
    case "approx":
      return planEquality(planner, filter.attribute, filter.value);
    case "greaterOrEqual":
    case "lessOrEqual": {
      const attribute = resolveAttribute(filter.attribute);
      const never = attribute === undefined || attribute === "objectClass" ||
        !isAssertable(filter.value);
      return never ? planner.none() : undefined;
    }
    case "substrings": {
      const attribute = resolveAttribute(filter.attribute);
      const fragments = substringFragments(filter);
      if (attribute === undefined || attribute === "objectClass" || !isAssertable(...fragments)) {
        return planner.none();
      }
      return planner.candidates(fragments);
    }
    case "present":
      return resolveAttribute(filter.attribute) === undefined ? planner.none() : undefined;
    case "extensible":
      return planner.none();
  }
}

/** An array of the one entry `entry`, cut from a slab (common/small_arrays.ts): it lives as long as the search. */
function oneEntry(entry: number): Uint32Array {
  const array = smallUint32(1);
  array[0] = entry;
  return array;
}

/** Room for the UTF-8 of an email being looked up (an email has at most 254 characters). */
const mailBytes = new Uint8Array(1024);

function planEquality(
  planner: Planner,
  description: string,
  value: string,
): CandidateCursor | undefined {
  const attribute = resolveAttribute(description);
  if (attribute === undefined || !isAssertable(value)) return planner.none();
  if (attribute === "objectClass") {
    return OBJECT_CLASSES.some((name) => foldText(name) === foldText(value))
      ? undefined
      : planner.none();
  }
  if (attribute === "mail") {
    // Into a reused buffer: an equality on mail is the most common search, and wants no garbage.
    const room = value.length * 3 <= mailBytes.length;
    const bytes = room ? mailBytes : encoder.encode(value);
    const length = room ? encoder.encodeInto(value, mailBytes).written : bytes.length;
    const entry = planner.book.lookup(bytes, 0, length);
    if (entry >= 0) return new ArrayCursor(oneEntry(entry));
    if (entry === NOT_FOUND) return planner.none();
    // INVALID_QUERY: no valid key is this value, but a book built by hand may hold keys the
    // loader never checked, so ask the index rather than assume.
    return planner.candidates([normalizeEmail(value)]);
  }
  return planner.candidates([value]);
}

/** What to search for. */
export interface SearchRequest {
  /** The filter. */
  filter: LdapFilter;
  /** The first entry number to consider: where a previous page stopped (its `next`); 0 by default. */
  start?: number;
  /**
   * Asked every {@linkcode STOP_CHECK_INTERVAL} entries checked: `true`
   * ends the search there (a time limit, an Abandon).
   */
  shouldStop?: () => boolean;
}

/** How a search went. */
export interface SearchOutcome {
  /** The matching entries found, ascending, at most the limit. */
  entries: number[];
  /** Whether a match beyond the limit exists (the limit was exceeded). */
  more: boolean;
  /**
   * Where to resume for the rest: the first match not returned when
   * `more`, or the entry the search stopped at when `stopped`; otherwise
   * undefined (the search is complete).
   */
  next?: number;
  /** Whether `shouldStop` or `visit` ended the search early. */
  stopped: boolean;
  /** Whether the plan was a scan of every entry from `start`. */
  scanned: boolean;
  /** How many entries were checked against the filter. */
  examined: number;
}

/**
 * Searches the book for entries the filter is TRUE for, in ascending entry
 * order from `request.start`, returning at most `limit` of them (the
 * caller's min of the client's sizeLimit and the server's cap; `Infinity`
 * for none). After the limit it looks on for one more match, to say
 * whether the limit was exceeded. `visit`, when given, sees each entry as
 * it is found, with the subject loaded with it, whose
 * {@linkcode BookSubject.served} values a front end can copy into its
 * reply with no string made; returning `false` stops the search after it.
 * Pass `undefined` as the index to scan (for comparison).
 *
 * @throws {RangeError} when the limit is not a whole number ≥ 0 or
 *   Infinity, or the index was built for a book of another size.
 */
export function searchBook(
  book: AddressBook,
  index: TextIndex | undefined,
  request: SearchRequest,
  limit: number,
  visit?: (entry: number, subject: BookSubject) => boolean | void,
): SearchOutcome {
  if (!(Number.isInteger(limit) && limit >= 0) && limit !== Infinity) {
    throw new RangeError(`The size limit must be a whole number or Infinity, not ${limit}.`);
  }
  if (index !== undefined && index.entries !== book.size) {
    throw new RangeError(
      `The index has ${index.entries} entries but the book ${book.size}: it is another book's.`,
    );
  }
  const test = compileFilter(request.filter);
  const plan = planFilter(book, index, request.filter);
  const subject = BookSubject.of(book);
  const outcome: SearchOutcome = {
    entries: [],
    more: false,
    stopped: false,
    scanned: plan === undefined,
    examined: 0,
  };
  const start = Math.max(0, request.start ?? 0);
  const next = (from: number) =>
    plan === undefined ? (from < book.size ? from : -1) : plan.seek(from);
  for (let entry = next(start); entry >= 0; entry = next(entry + 1)) {
    if (
      ++outcome.examined % STOP_CHECK_INTERVAL === 0 && request.shouldStop?.() === true
    ) {
      outcome.stopped = true;
      outcome.next = entry;
      break;
    }
    subject.load(entry);
    if (test(subject) !== true) continue;
    if (outcome.entries.length >= limit) {
      outcome.more = true;
      outcome.next = entry;
      break;
    }
    outcome.entries.push(entry);
    if (visit?.(entry, subject) === false) {
      outcome.stopped = true;
      if (entry + 1 < book.size) outcome.next = entry + 1;
      break;
    }
  }
  return outcome;
}
