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

/** One entry as a filter sees it; implementations may read it lazily, and cache. */
export interface FilterSubject {
  /** A text attribute's value folded by `foldText`, or `undefined` when the entry has none. */
  folded(attribute: TextAttribute): string | undefined;
  /** The entry's email as the book keys it: trimmed and lower-cased (`normalizeEmail`). */
  email(): string;
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

/** A subject over plain values, folding each once, when first asked. */
export function valuesSubject(values: EntryValues): FilterSubject {
  const cache = new Map<TextAttribute, string | undefined>();
  return {
    folded(attribute) {
      if (cache.has(attribute)) return cache.get(attribute);
      const raw = attribute === "displayName" ? values.cn : values[attribute];
      const folded = raw === undefined ? undefined : foldText(raw);
      cache.set(attribute, folded);
      return folded;
    },
    email: () => values.mail,
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
 *   does an extensible match (not supported) and a match the attribute
 *   has no rule for: substrings or ordering on objectClass.
 * - mail, cn, displayName, sn and givenName compare values folded by
 *   `foldText` (case-insensitive beyond ASCII), except equality on mail,
 *   which is the book's own rule for the same address (`normalizeEmail`:
 *   trimmed, lower-cased), so that `book.lookup` serves it exactly.
 * - approx is equality; `>=` and `<=` compare folded values as strings
 *   (UTF-16 code unit order); objectClass matches its four values in any
 *   letter case.
 * - present is TRUE for every attribute but givenName, which a one-word
 *   name lacks; FALSE then.
 * - Substrings match in one left-to-right pass (`startsWith`, `indexOf`,
 *   `endsWith`): never a regular expression made from the client's text.
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

function compileEquality(description: string, value: string): CompiledFilter {
  const attribute = resolveAttribute(description);
  if (attribute === undefined) return undefinedFilter;
  if (attribute === "objectClass") {
    return FOLDED_OBJECT_CLASSES.includes(foldText(value)) ? trueFilter : falseFilter;
  }
  if (attribute === "mail") {
    const email = normalizeEmail(value);
    return (subject) => subject.email() === email;
  }
  const folded = foldText(value);
  return (subject) => subject.folded(attribute) === folded;
}

function compileOrdering(description: string, value: string, atLeast: boolean): CompiledFilter {
  const attribute = resolveAttribute(description);
  if (attribute === undefined || attribute === "objectClass") return undefinedFilter;
  const folded = foldText(value);
  return (subject) => {
    const held = subject.folded(attribute);
    if (held === undefined) return false;
    return atLeast ? held >= folded : held <= folded;
  };
}

function compilePresent(description: string): CompiledFilter {
  const attribute = resolveAttribute(description);
  if (attribute === undefined) return undefinedFilter;
  if (attribute !== "givenName") return trueFilter;
  return (subject) => subject.folded("givenName") !== undefined;
}

function compileSubstrings(
  filter: { attribute: string; initial?: string; any: string[]; final?: string },
): CompiledFilter {
  const attribute = resolveAttribute(filter.attribute);
  if (attribute === undefined || attribute === "objectClass") return undefinedFilter;
  const initial = filter.initial === undefined ? "" : foldText(filter.initial);
  const any = filter.any.map(foldText);
  const final = filter.final === undefined ? "" : foldText(filter.final);
  return (subject) => {
    const held = subject.folded(attribute);
    return held !== undefined && matchSubstrings(held, initial, any, final);
  };
}

/**
 * Whether `value` is `initial`, then each of `any` in order, then `final`,
 * with anything between and no overlaps: in one pass, taking each part at
 * its first place after the one before (the earliest is never worse).
 */
export function matchSubstrings(
  value: string,
  initial: string,
  any: readonly string[],
  final: string,
): boolean {
  if (!value.startsWith(initial)) return false;
  let at = initial.length;
  const end = value.length - final.length;
  if (end < at || !value.endsWith(final)) return false;
  for (const part of any) {
    const found = value.indexOf(part, at);
    if (found < 0 || found + part.length > end) return false;
    at = found + part.length;
  }
  return true;
}
