/**
 * LDAP search over the book: which entries a filter matches, found from a
 * plan of candidates and checked one by one, in ascending entry order, up
 * to a size limit; and each entry's attributes as the LDAP front end
 * serves them. The base and scope of a search are the caller's: this is
 * the subtree under the directory's suffix.
 *
 * **The plan** ({@linkcode planFilter}) is a sorted list of candidate
 * entries, a superset of those the filter is TRUE for, or "every entry":
 *
 * - equality (and approx) on mail: `book.lookup`, at most one entry;
 * - equality, approx and substrings on cn, displayName, sn, givenName and
 *   substrings on mail: the book's {@linkcode TextIndex} (trigrams);
 * - a filter item that can never be TRUE (an unknown attribute, an
 *   extensible match, substrings or ordering on objectClass, an
 *   objectClass the entries do not have): no candidates at all, so that
 *   Evolution's OR over dozens of attributes we do not have costs nothing;
 * - AND: the plan of its child with the fewest candidates; OR: the union
 *   of its children's, unless one of them is "every entry".
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
 * import { searchBook } from "./ldap_search.ts";
 *
 * const builder = new AddressBookBuilder();
 * builder.add("ada@example.com", "Ada Lovelace");
 * builder.add("alan@example.com", "Alan Turing");
 * const book = builder.build();
 * const index = TextIndex.build(book);
 * const filter = { kind: "substrings", attribute: "cn", any: ["lace"] } as const;
 * const outcome = searchBook(book, index, { filter }, 100);
 * outcome.entries.map((entry) => book.entry(entry).email); // ["ada@example.com"]
 * ```
 *
 * @module
 */

import { type AddressBook, NOT_FOUND } from "../book/addressbook.ts";
import { normalizeEmail } from "../book/email.ts";
import { foldText, type TextIndex } from "../book/text_index.ts";
import {
  compileFilter,
  type FilterSubject,
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

/**
 * The attributes of the book's entry `entry`.
 *
 * @throws {RangeError} when the book has no such entry.
 */
export function entryAttributes(book: AddressBook, entry: number): LdapEntryAttributes {
  const { email, name, givenName, surname } = book.entry(entry);
  const parts = nameParts(name, givenName, surname);
  const attributes: LdapEntryAttributes = {
    mail: email,
    cn: name,
    displayName: name,
    sn: parts.surname,
    objectClass: OBJECT_CLASSES,
  };
  if (parts.givenName !== undefined) attributes.givenName = parts.givenName;
  return attributes;
}

/**
 * The book's entries as filter subjects: one object, pointed at an entry
 * with {@linkcode BookSubject.load}, that decodes and folds only the
 * values a filter asks for, once each.
 */
export class BookSubject implements FilterSubject {
  readonly #book: AddressBook;
  #entry = -1;
  #email: string | undefined;
  #name: string | undefined;
  #foldedEmail: string | undefined;
  #foldedName: string | undefined;
  #parts: NameParts | undefined;
  #foldedGiven: string | undefined | null = null;
  #foldedSurname: string | undefined;

  constructor(book: AddressBook) {
    this.#book = book;
  }

  /** Points the subject at entry `entry` (not checked: the caller's loop bounds it). */
  load(entry: number): void {
    this.#entry = entry;
    this.#email =
      this.#name =
      this.#foldedEmail =
      this.#foldedName =
        undefined;
    this.#parts = this.#foldedSurname = undefined;
    this.#foldedGiven = null;
  }

  /** See {@linkcode FilterSubject.email}. */
  email(): string {
    if (this.#email !== undefined) return this.#email;
    const { keyStarts, keys } = this.#book.toShared();
    return this.#email = readText(keys, keyStarts[this.#entry], keyStarts[this.#entry + 1]);
  }

  /** See {@linkcode FilterSubject.folded}. */
  folded(attribute: TextAttribute): string | undefined {
    switch (attribute) {
      case "mail":
        return this.#foldedEmail ??= foldText(this.email());
      case "cn":
      case "displayName":
        return this.#foldedName ??= foldText(this.#rawName());
      case "sn":
        return this.#foldedSurname ??= foldText(this.#nameParts().surname);
      case "givenName": {
        if (this.#foldedGiven !== null) return this.#foldedGiven;
        const given = this.#nameParts().givenName;
        return this.#foldedGiven = given === undefined ? undefined : foldText(given);
      }
    }
  }

  #rawName(): string {
    const book = this.#book;
    return this.#name ??= readText(
      book.names,
      book.nameStart(this.#entry),
      book.nameEnd(this.#entry),
    );
  }

  #nameParts(): NameParts {
    if (this.#parts !== undefined) return this.#parts;
    const { namePartStarts, nameParts: partBytes } = this.#book.toShared();
    let givenName: string | undefined;
    let surname: string | undefined;
    if (namePartStarts.length > 0) {
      const given = namePartStarts[2 * this.#entry];
      const family = namePartStarts[2 * this.#entry + 1];
      const end = namePartStarts[2 * this.#entry + 2];
      if (family > given) givenName = readText(partBytes, given, family);
      if (end > family) surname = readText(partBytes, family, end);
    }
    return this.#parts = nameParts(this.#rawName(), givenName, surname);
  }
}

/** The longest value decoded by hand as ASCII; longer ones, and any other, go to TextDecoder. */
const SHORT_TEXT = 64;

/** UTF-8 bytes as a string; short ASCII (most values) without TextDecoder's cost per call. */
function readText(bytes: Uint8Array, start: number, end: number): string {
  if (end - start <= SHORT_TEXT) {
    let text = "";
    let i = start;
    for (; i < end && bytes[i] < 0x80; i++) text += String.fromCharCode(bytes[i]);
    if (i === end) return text;
  }
  return decoder.decode(bytes.subarray(start, end));
}

const NO_ENTRIES = new Uint32Array(0);

/**
 * The entries a filter may be TRUE for, ascending, or `undefined` when the
 * plan is every entry (a scan). See the module's comment for the rules.
 * Without an index, substrings and name equality are scans.
 */
export function planFilter(
  book: AddressBook,
  index: TextIndex | undefined,
  filter: LdapFilter,
): Uint32Array | undefined {
  switch (filter.kind) {
    case "and": {
      let best: Uint32Array | undefined;
      for (const child of filter.filters) {
        const plan = planFilter(book, index, child);
        if (plan !== undefined && (best === undefined || plan.length < best.length)) best = plan;
        if (best?.length === 0) break;
      }
      return best;
    }
    case "or": {
      const plans: Uint32Array[] = [];
      for (const child of filter.filters) {
        const plan = planFilter(book, index, child);
        if (plan === undefined) return undefined;
        plans.push(plan);
      }
      return unionAll(plans);
    }
    case "not":
      return undefined;
    case "equality":
    case "approx":
      return planEquality(book, index, filter.attribute, filter.value);
    case "greaterOrEqual":
    case "lessOrEqual": {
      const attribute = resolveAttribute(filter.attribute);
      return attribute === undefined || attribute === "objectClass" ? NO_ENTRIES : undefined;
    }
    case "substrings": {
      const attribute = resolveAttribute(filter.attribute);
      if (attribute === undefined || attribute === "objectClass") return NO_ENTRIES;
      const fragments = [...filter.any];
      if (filter.initial !== undefined) fragments.push(filter.initial);
      if (filter.final !== undefined) fragments.push(filter.final);
      return index?.candidates(fragments);
    }
    case "present":
      return resolveAttribute(filter.attribute) === undefined ? NO_ENTRIES : undefined;
    case "extensible":
      return NO_ENTRIES;
  }
}

function planEquality(
  book: AddressBook,
  index: TextIndex | undefined,
  description: string,
  value: string,
): Uint32Array | undefined {
  const attribute = resolveAttribute(description);
  if (attribute === undefined) return NO_ENTRIES;
  if (attribute === "objectClass") {
    return OBJECT_CLASSES.some((name) => foldText(name) === foldText(value))
      ? undefined
      : NO_ENTRIES;
  }
  if (attribute === "mail") {
    const bytes = encoder.encode(value);
    const entry = book.lookup(bytes, 0, bytes.length);
    if (entry >= 0) return Uint32Array.of(entry);
    if (entry === NOT_FOUND) return NO_ENTRIES;
    // INVALID_QUERY: no valid key is this value, but a book built by hand may hold keys the
    // loader never checked, so ask the index rather than assume.
    return index?.candidates([normalizeEmail(value)]);
  }
  return index?.candidates([value]);
}

/** The union of ascending lists, merged two at a time, shortest first. */
function unionAll(plans: Uint32Array[]): Uint32Array {
  if (plans.length === 0) return NO_ENTRIES;
  const pending = [...plans].sort((a, b) => a.length - b.length);
  while (pending.length > 1) {
    const merged = union(pending.shift()!, pending.shift()!);
    let at = 0;
    while (at < pending.length && pending[at].length < merged.length) at++;
    pending.splice(at, 0, merged);
  }
  return pending[0];
}

function union(a: Uint32Array, b: Uint32Array): Uint32Array {
  const out = new Uint32Array(a.length + b.length);
  let i = 0;
  let j = 0;
  let k = 0;
  while (i < a.length && j < b.length) {
    if (a[i] < b[j]) out[k++] = a[i++];
    else if (b[j] < a[i]) out[k++] = b[j++];
    else {
      out[k++] = a[i++];
      j++;
    }
  }
  while (i < a.length) out[k++] = a[i++];
  while (j < b.length) out[k++] = b[j++];
  return out.subarray(0, k);
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
 * it is found; returning `false` stops the search after it. Pass
 * `undefined` as the index to scan (for comparison).
 *
 * @throws {RangeError} when the limit is not a whole number ≥ 0 or
 *   Infinity, or the index was built for a book of another size.
 */
export function searchBook(
  book: AddressBook,
  index: TextIndex | undefined,
  request: SearchRequest,
  limit: number,
  visit?: (entry: number) => boolean | void,
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
  const subject = new BookSubject(book);
  const outcome: SearchOutcome = {
    entries: [],
    more: false,
    stopped: false,
    scanned: plan === undefined,
    examined: 0,
  };
  const start = Math.max(0, request.start ?? 0);
  const count = plan === undefined ? book.size - Math.min(start, book.size) : plan.length;
  for (let k = plan === undefined ? 0 : lowerBound(plan, start); k < count; k++) {
    const entry = plan === undefined ? start + k : plan[k];
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
    if (visit?.(entry) === false) {
      outcome.stopped = true;
      if (entry + 1 < book.size) outcome.next = entry + 1;
      break;
    }
  }
  return outcome;
}

/** The first position in an ascending list whose value is not below `value`. */
function lowerBound(list: Uint32Array, value: number): number {
  let low = 0;
  let high = list.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (list[middle] < value) low = middle + 1;
    else high = middle;
  }
  return low;
}
