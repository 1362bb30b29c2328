/**
 * LDAP search filters (RFC 4511 §4.5.1.7) as the LDAP front end sees them:
 * the tree the codec (ldap_codec.ts) decodes a SearchRequest's filter into,
 * and its evaluation against one entry of the directory, in RFC 4511's
 * three-valued logic (see {@linkcode compileFilter} for the rules).
 *
 * ```ts
 * import { evaluateFilter, valuesSubject } from "./ldap_filter.ts";
 *
 * const ada = valuesSubject({ mail: "ada@example.com", cn: "Ada Lovelace", sn: "Lovelace", givenName: "Ada" });
 * evaluateFilter({ kind: "substrings", attribute: "CN", any: ["LOVE"] }, ada); // true
 * evaluateFilter({ kind: "equality", attribute: "phone", value: "1" }, ada); // undefined: no such attribute
 * ```
 *
 * @module
 */

import { encodeSmall, smallInt32 } from "../common/small_arrays.ts";
import { foldText } from "../book/text_index.ts";
import { normalizeEmail } from "../book/email.ts";

/** A decoded search filter. Values are UTF-8 text; attribute names are as the client sent them. */
export type LdapFilter =
  | { kind: "and"; filters: LdapFilter[] }
  | { kind: "or"; filters: LdapFilter[] }
  | { kind: "not"; filter: LdapFilter }
  | {
    kind: "equality" | "greaterOrEqual" | "lessOrEqual" | "approx";
    attribute: string;
    value: string;
  }
  | { kind: "substrings"; attribute: string; initial?: string; any: string[]; final?: string }
  | { kind: "present"; attribute: string }
  | {
    kind: "extensible";
    attribute?: string;
    matchingRule?: string;
    value: string;
    dnAttributes: boolean;
  };

/** A filter's value for one entry (RFC 4511 §4.5.1.7): TRUE, FALSE or Undefined. */
export type FilterResult = boolean | undefined;

/** The attributes every entry of the directory has (givenName: most of them), by their usual names. */
export const LDAP_ATTRIBUTES = [
  "objectClass",
  "mail",
  "cn",
  "displayName",
  "sn",
  "givenName",
] as const;

/** An attribute of the directory's entries. */
export type LdapAttribute = (typeof LDAP_ATTRIBUTES)[number];

/** The attributes that hold one text value, matched case-insensitively. */
export type TextAttribute = Exclude<LdapAttribute, "objectClass">;

/** Every entry's object classes, most general first. */
export const OBJECT_CLASSES: readonly string[] = [
  "top",
  "person",
  "organizationalPerson",
  "inetOrgPerson",
];

/**
 * The names and aliases an attribute description may use, lower-cased:
 * the usual names, the aliases of RFC 4519 and RFC 4524 (`commonName`,
 * `surname`, `gn`, `rfc822Mailbox`), `email` for mail, and each one's OID.
 */
const ATTRIBUTE_NAMES: ReadonlyMap<string, LdapAttribute> = new Map([
  ["objectclass", "objectClass"],
  ["2.5.4.0", "objectClass"],
  ["mail", "mail"],
  ["rfc822mailbox", "mail"],
  ["email", "mail"],
  ["0.9.2342.19200300.100.1.3", "mail"],
  ["cn", "cn"],
  ["commonname", "cn"],
  ["2.5.4.3", "cn"],
  ["displayname", "displayName"],
  ["2.16.840.1.113730.3.1.241", "displayName"],
  ["sn", "sn"],
  ["surname", "sn"],
  ["2.5.4.4", "sn"],
  ["givenname", "givenName"],
  ["gn", "givenName"],
  ["2.5.4.42", "givenName"],
]);

const ASCII_CAPITALS = /[A-Z]/g;

/**
 * The attribute an attribute description names, in any letter case, by
 * name, alias or OID; `undefined` for one the directory does not have, and
 * for one with options (`cn;lang-en`), which no value of ours carries.
 */
export function resolveAttribute(description: string): LdapAttribute | undefined {
  // ASCII lower-casing only: a description is ASCII, and Unicode's rules would let the Kelvin sign pass as k.
  const key = description.replace(ASCII_CAPITALS, (capital) => capital.toLowerCase());
  return ATTRIBUTE_NAMES.get(key);
}

/** Where a value's bytes are: `bytes[start, end)`. A subject points one at a value for a filter to read. */
export interface ByteRange {
  /** The buffer. */
  bytes: Uint8Array;
  /** Where the value starts. */
  start: number;
  /** Where it ends. */
  end: number;
}

/**
 * One entry as a filter sees it, as bytes, so that an entry in plain ASCII
 * is matched where it lies in the book's buffers, with no string made.
 * Implementations may read it lazily, and cache.
 */
export interface FilterSubject {
  /**
   * Points `range` at a text attribute's value: its UTF-8 folded by
   * `foldText`, except that ASCII capitals may be left as they are (the
   * filter lowers them as it reads). Returns `false`, leaving `range` as it
   * was, when the entry has no such value.
   */
  value(attribute: TextAttribute, range: ByteRange): boolean;
  /** Points `range` at the entry's email as the book keys it (`normalizeEmail`'s form), as it is. */
  email(range: ByteRange): void;
}

/** An entry's attribute values, as strings. */
export interface EntryValues {
  /** The email, as the book keys it. */
  mail: string;
  /** The name; also the display name. */
  cn: string;
  /** The surname. */
  sn: string;
  /** The given name, when the entry has one. */
  givenName?: string;
}

const encoder = new TextEncoder();

/** A subject over plain values, folding and encoding each once, when first asked. */
export function valuesSubject(values: EntryValues): FilterSubject {
  const cache = new Map<TextAttribute, Uint8Array | undefined>();
  const email = encoder.encode(values.mail);
  return {
    value(attribute, range) {
      if (!cache.has(attribute)) {
        const raw = attribute === "displayName" ? values.cn : values[attribute];
        cache.set(attribute, raw === undefined ? undefined : encoder.encode(foldText(raw)));
      }
      const bytes = cache.get(attribute);
      if (bytes === undefined) return false;
      range.bytes = bytes;
      range.start = 0;
      range.end = bytes.length;
      return true;
    },
    email(range) {
      range.bytes = email;
      range.start = 0;
      range.end = email.length;
    },
  };
}

/** A filter made ready to evaluate against many entries: values folded and attributes resolved once. */
export type CompiledFilter = (subject: FilterSubject) => FilterResult;

const FOLDED_OBJECT_CLASSES = OBJECT_CLASSES.map(foldText);

/**
 * Compiles a filter for {@linkcode FilterSubject}s. The rules, after RFC
 * 4511 §4.5.1.7 and the directory's schema:
 *
 * - and/or/not in three-valued logic: AND is FALSE if a part is FALSE,
 *   else Undefined if one is, else TRUE (an empty AND is TRUE); OR the
 *   other way round (an empty OR is FALSE); NOT swaps TRUE and FALSE and
 *   keeps Undefined.
 * - An attribute the directory does not have makes any item Undefined, as
 *   does an extensible match (not supported), a match the attribute has no
 *   rule for (substrings or ordering on objectClass) and a value that was
 *   not UTF-8 ({@linkcode isAssertable}).
 * - mail, cn, displayName, sn and givenName compare values folded by
 *   `foldText` (case-insensitive beyond ASCII), except equality on mail,
 *   which is the book's own rule for the same address (`normalizeEmail`:
 *   trimmed, lower-cased), so that `book.lookup` serves it exactly.
 * - approx is equality; `>=` and `<=` compare folded values by code
 *   point (their UTF-8 bytes); objectClass matches its four values in any
 *   letter case.
 * - present is TRUE for every attribute but givenName, which a one-word
 *   name lacks; FALSE then.
 * - Substrings match in one left-to-right pass over the value's bytes
 *   (each `any` part found by Knuth–Morris–Pratt), linear in the value's
 *   length: never a regular expression made from the client's text.
 */
export function compileFilter(filter: LdapFilter): CompiledFilter {
  switch (filter.kind) {
    case "and":
      return compileAnd(filter.filters.map(compileFilter));
    case "or":
      return compileOr(filter.filters.map(compileFilter));
    case "not": {
      const inner = compileFilter(filter.filter);
      return (subject) => {
        const result = inner(subject);
        return result === undefined ? undefined : !result;
      };
    }
    case "equality":
    case "approx":
      return compileEquality(filter.attribute, filter.value);
    case "greaterOrEqual":
    case "lessOrEqual":
      return compileOrdering(filter.attribute, filter.value, filter.kind === "greaterOrEqual");
    case "substrings":
      return compileSubstrings(filter);
    case "present":
      return compilePresent(filter.attribute);
    case "extensible":
      return undefinedFilter;
  }
}

/** Evaluates a filter against one entry; for many entries, compile it once with {@linkcode compileFilter}. */
export function evaluateFilter(filter: LdapFilter, subject: FilterSubject): FilterResult {
  return compileFilter(filter)(subject);
}

const undefinedFilter: CompiledFilter = () => undefined;
const trueFilter: CompiledFilter = () => true;
const falseFilter: CompiledFilter = () => false;

/**
 * The range every filter item reads its value through: an item points it
 * and reads it at once, before any other item runs, so one will do.
 */
const held: ByteRange = { bytes: new Uint8Array(0), start: 0, end: 0 };

function compileAnd(parts: CompiledFilter[]): CompiledFilter {
  return (subject) => {
    let result: FilterResult = true;
    for (const part of parts) {
      const value = part(subject);
      if (value === false) return false;
      if (value === undefined) result = undefined;
    }
    return result;
  };
}

function compileOr(parts: CompiledFilter[]): CompiledFilter {
  return (subject) => {
    let result: FilterResult = false;
    for (const part of parts) {
      const value = part(subject);
      if (value === true) return true;
      if (value === undefined) result = undefined;
    }
    return result;
  };
}

/** A value folded and encoded, as filter items compare with. */
function foldedBytes(text: string): Uint8Array {
  // Compiled for every search: arrays of its own would cost more than the search (common/small_arrays.ts).
  return encodeSmall(foldText(text));
}

/**
 * Whether the client's values are text: the codec (ldap_codec.ts) marks
 * each byte that was not UTF-8 as a lone surrogate, and such a value fits
 * no syntax of ours, so an item asserting it is Undefined (RFC 4511
 * §4.5.1.7: the assertion value is invalid), whatever the match.
 */
export function isAssertable(...values: (string | undefined)[]): boolean {
  return values.every((value) => value === undefined || value.isWellFormed());
}

function compileEquality(description: string, value: string): CompiledFilter {
  const attribute = resolveAttribute(description);
  if (attribute === undefined || !isAssertable(value)) return undefinedFilter;
  if (attribute === "objectClass") {
    return FOLDED_OBJECT_CLASSES.includes(foldText(value)) ? trueFilter : falseFilter;
  }
  if (attribute === "mail") {
    const email = encodeSmall(normalizeEmail(value));
    return (subject) => {
      subject.email(held);
      return compareBytes(held, email, false) === 0 && held.end - held.start === email.length;
    };
  }
  const folded = foldedBytes(value);
  return (subject) =>
    subject.value(attribute, held) && held.end - held.start === folded.length &&
    compareBytes(held, folded, true) === 0;
}

function compileOrdering(description: string, value: string, atLeast: boolean): CompiledFilter {
  const attribute = resolveAttribute(description);
  if (attribute === undefined || attribute === "objectClass") return undefinedFilter;
  if (!isAssertable(value)) return undefinedFilter;
  const folded = foldedBytes(value);
  return (subject) => {
    if (!subject.value(attribute, held)) return false;
    const order = compareBytes(held, folded, true);
    return atLeast ? order >= 0 : order <= 0;
  };
}

function compilePresent(description: string): CompiledFilter {
  const attribute = resolveAttribute(description);
  if (attribute === undefined) return undefinedFilter;
  if (attribute !== "givenName") return trueFilter;
  return (subject) => subject.value("givenName", held);
}

function compileSubstrings(
  filter: { attribute: string; initial?: string; any: string[]; final?: string },
): CompiledFilter {
  const attribute = resolveAttribute(filter.attribute);
  if (attribute === undefined || attribute === "objectClass") return undefinedFilter;
  if (!isAssertable(filter.initial, ...filter.any, filter.final)) return undefinedFilter;
  const pattern = substringPattern(
    filter.initial === undefined ? "" : filter.initial,
    filter.any,
    filter.final === undefined ? "" : filter.final,
  );
  return (subject) => subject.value(attribute, held) && matchPattern(held, pattern);
}

/** A substring assertion compiled: its parts folded and encoded, each `any` part with its KMP table. */
interface SubstringPattern {
  initial: Uint8Array;
  any: { part: Uint8Array; fallback: Int32Array }[];
  final: Uint8Array;
}

function substringPattern(
  initial: string,
  any: readonly string[],
  final: string,
): SubstringPattern {
  return {
    initial: foldedBytes(initial),
    any: any.map((text) => {
      const part = foldedBytes(text);
      return { part, fallback: kmpTable(part) };
    }),
    final: foldedBytes(final),
  };
}

/**
 * Knuth–Morris–Pratt's table: for each length matched so far, the length
 * of the longest proper prefix of `part` that is also a suffix of it.
 */
function kmpTable(part: Uint8Array): Int32Array {
  const fallback = smallInt32(part.length + 1);
  fallback[0] = -1;
  let k = -1;
  for (let i = 0; i < part.length; i++) {
    while (k >= 0 && part[k] !== part[i]) k = fallback[k];
    k++;
    fallback[i + 1] = k;
  }
  return fallback;
}

const ASCII_A = 0x41;
const ASCII_Z = 0x5a;
const ASCII_CASE_BIT = 0x20;

/** An ASCII capital as its small letter; any other byte as it is. */
function lower(byte: number): number {
  return byte >= ASCII_A && byte <= ASCII_Z ? byte | ASCII_CASE_BIT : byte;
}

/**
 * Compares the value in `range` (its ASCII capitals lowered when `lowering`)
 * with `pattern` byte by byte, as far as the shorter goes: negative,
 * zero or positive as the value sorts before, the same as or after it,
 * a prefix sorting first.
 */
function compareBytes(range: ByteRange, pattern: Uint8Array, lowering: boolean): number {
  const { bytes, start, end } = range;
  const length = Math.min(end - start, pattern.length);
  for (let i = 0; i < length; i++) {
    const byte = lowering ? lower(bytes[start + i]) : bytes[start + i];
    if (byte !== pattern[i]) return byte - pattern[i];
  }
  return (end - start) - pattern.length;
}

/** Whether `pattern` occurs at `at` in the value (ASCII capitals lowered). */
function occursAt(bytes: Uint8Array, at: number, pattern: Uint8Array): boolean {
  for (let i = 0; i < pattern.length; i++) {
    if (lower(bytes[at + i]) !== pattern[i]) return false;
  }
  return true;
}

/**
 * Whether the value is the initial part, then each `any` part in order,
 * then the final part, with anything between and no overlaps: each part
 * taken at its first place after the one before (the earliest is never
 * worse), found by KMP, so the whole is linear in the value's length.
 */
function matchPattern(range: ByteRange, pattern: SubstringPattern): boolean {
  const { bytes, start } = range;
  const { initial, any, final } = pattern;
  const end = range.end - final.length;
  let at = start + initial.length;
  if (end < at || !occursAt(bytes, start, initial) || !occursAt(bytes, end, final)) return false;
  for (const { part, fallback } of any) {
    let k = 0;
    while (k < part.length && at < end) {
      const byte = lower(bytes[at]);
      while (k >= 0 && part[k] !== byte) k = fallback[k];
      k++;
      at++;
    }
    if (k < part.length) return false;
  }
  return true;
}

/**
 * Whether `value` is `initial`, then each of `any` in order, then `final`,
 * with anything between and no overlaps, all folded by `foldText` first:
 * the matching a substrings filter does, for one value given as a string.
 */
export function matchSubstrings(
  value: string,
  initial: string,
  any: readonly string[],
  final: string,
): boolean {
  const bytes = foldedBytes(value);
  return matchPattern(
    { bytes, start: 0, end: bytes.length },
    substringPattern(initial, any, final),
  );
}
