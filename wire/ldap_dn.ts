/**
 * Distinguished names as RFC 4514 writes them, for the LDAP front end:
 * escaping a value into a DN, parsing a DN a client sent into its RDNs,
 * and comparing DNs the way a directory does, with attribute types and
 * values case-insensitive. Pure.
 *
 * Parsing is liberal where RFC 4514 allows it (§3: spaces around `,`, `=`
 * and `+`; `;` as a separator, as RFC 1779 had it; hex escapes such as
 * `\2b`; values written as `#` and the hex of their BER encoding) and
 * strict where the meaning would be unclear: a multi-valued RDN (`a=1+b=2`)
 * is refused, since no entry of this directory has one. Errors name a
 * position, never the DN's text, which may be an email address.
 *
 * ```ts
 * import { escapeDnValue, isWithin, parseDn } from "./ldap_dn.ts";
 *
 * const dn = `mail=${escapeDnValue("alan+work@example.com")},dc=example,dc=com`;
 * // "mail=alan\+work@example.com,dc=example,dc=com"
 * parseDn(dn)[0]; // { type: "mail", value: "alan+work@example.com" }
 * isWithin("MAIL=Alan\\2bWork@Example.com, DC=example, DC=com", "dc=example,dc=com"); // true
 * ```
 *
 * @module
 */

import { BerError, BerReader } from "./ber.ts";
import { decodeUtf8 } from "../common/utf8.ts";

/** A DN that is not RFC 4514 syntax, or uses what this module refuses. The message names a position. */
export class InvalidDnError extends Error {
  override name = "InvalidDnError";
}

/** One relative distinguished name: `type=value`. */
export interface Rdn {
  /** The attribute type, lowercase, with a well-known OID replaced by its name (`2.5.4.3` is `cn`). */
  type: string;
  /** The value, unescaped, as written. */
  value: string;
}

/** A DN as text, or as {@linkcode parseDn} returned it. */
export type Dn = string | readonly Rdn[];

/**
 * Well-known attribute types by OID and by their other names, mapped to the
 * short names the directory uses (RFC 4519, RFC 2798).
 */
const TYPE_ALIASES: ReadonlyMap<string, string> = new Map([
  ["2.5.4.3", "cn"],
  ["commonname", "cn"],
  ["2.5.4.4", "sn"],
  ["surname", "sn"],
  ["2.5.4.42", "givenname"],
  ["gn", "givenname"],
  ["0.9.2342.19200300.100.1.3", "mail"],
  ["rfc822mailbox", "mail"],
  ["0.9.2342.19200300.100.1.25", "dc"],
  ["domaincomponent", "dc"],
  ["0.9.2342.19200300.100.1.1", "uid"],
  ["userid", "uid"],
  ["2.5.4.10", "o"],
  ["organizationname", "o"],
  ["2.5.4.11", "ou"],
  ["organizationalunitname", "ou"],
  ["2.5.4.6", "c"],
  ["countryname", "c"],
  ["2.5.4.7", "l"],
  ["localityname", "l"],
  ["2.5.4.8", "st"],
  ["stateorprovincename", "st"],
  ["2.16.840.1.113730.3.1.241", "displayname"],
]);

/** BER string types a `#`-written value may be: OCTET STRING, UTF8String, PrintableString, IA5String. */
const HEX_VALUE_TAGS: ReadonlySet<number> = new Set([0x04, 0x0c, 0x13, 0x16]);

/** The characters RFC 4514 §2.4 says to escape anywhere in a value, and `=`, which parsers take either way. */
const ALWAYS_ESCAPED = /["+,;<=>\\\0]/;
const ALWAYS_ESCAPED_ALL = /["+,;<=>\\\0]/g;
/** The same characters as bytes, for {@linkcode dnValueNeedsEscape}. */
const ALWAYS_ESCAPED_BYTES: ReadonlySet<number> = new Set(
  [...'"+,;<=>\\\0'].map((char) => char.charCodeAt(0)),
);
const HASH = 0x23;

/** One character of {@linkcode ALWAYS_ESCAPED}, escaped: NUL as hex, since a raw NUL may end a C string. */
function escapeChar(char: string): string {
  return char === "\0" ? "\\00" : `\\${char}`;
}

const BACKSLASH = 0x5c;
const SPACE = 0x20;

/**
 * The canonical form of an attribute type: lowercase, and a well-known OID
 * or long name replaced by the short name.
 */
export function canonicalType(type: string): string {
  const lower = type.toLowerCase();
  return TYPE_ALIASES.get(lower) ?? lower;
}

/**
 * Escapes `value` for a DN (RFC 4514 §2.4): `" + , ; < = > \` and NUL
 * anywhere, a leading space or `#`, a trailing space.
 *
 * ```ts
 * import { escapeDnValue } from "./ldap_dn.ts";
 * escapeDnValue("alan+work@example.com"); // "alan\+work@example.com"
 * escapeDnValue(" #1 "); // "\ \#1\ "
 * ```
 */
export function escapeDnValue(value: string): string {
  let escaped = ALWAYS_ESCAPED.test(value) ? value.replace(ALWAYS_ESCAPED_ALL, escapeChar) : value;
  const leading = value.startsWith(" ") || value.startsWith("#");
  if (leading) escaped = `\\${escaped}`;
  // A trailing space, unless it is the leading one, escaped just above.
  if (value.endsWith(" ") && !(leading && value.length === 1)) {
    escaped = `${escaped.slice(0, -1)}\\ `;
  }
  return escaped;
}

/**
 * Whether {@linkcode escapeDnValue} would change the UTF-8 value
 * `bytes[start, end)`: a character it escapes anywhere, or a space or `#`
 * where it escapes one. Lets a writer copy the bytes of a value that needs
 * nothing, with no string made.
 */
export function dnValueNeedsEscape(bytes: Uint8Array, start: number, end: number): boolean {
  if (end === start) return false;
  if (bytes[start] === SPACE || bytes[start] === HASH || bytes[end - 1] === SPACE) return true;
  for (let i = start; i < end; i++) if (ALWAYS_ESCAPED_BYTES.has(bytes[i])) return true;
  return false;
}

/** Writes RDNs as a DN: `type=value` with values escaped, joined by `,`. */
export function formatDn(rdns: readonly Rdn[]): string {
  return rdns.map((rdn) => `${rdn.type}=${escapeDnValue(rdn.value)}`).join(",");
}

/**
 * Parses a DN into its RDNs, the entry's own first. The empty DN (the
 * rootDSE) has none.
 *
 * ```ts
 * import { parseDn } from "./ldap_dn.ts";
 * parseDn("CN = Ada\\2c Countess ; DC=example"); // [{type: "cn", value: "Ada, Countess"}, {type: "dc", value: "example"}]
 * ```
 *
 * @throws {InvalidDnError} when `text` is not a DN, or has a multi-valued RDN.
 */
export function parseDn(text: string): Rdn[] {
  return new DnParser(text).parse();
}

/** A parse of one DN: a cursor over its text. */
class DnParser {
  readonly #text: string;
  #at = 0;

  constructor(text: string) {
    this.#text = text;
  }

  parse(): Rdn[] {
    const rdns: Rdn[] = [];
    this.#skipSpaces();
    if (this.#at === this.#text.length) return rdns;
    for (;;) {
      rdns.push(this.#rdn());
      this.#skipSpaces();
      if (this.#at === this.#text.length) return rdns;
      const separator = this.#text[this.#at];
      if (separator === "+") {
        throw this.#error("a multi-valued RDN is not supported");
      }
      if (separator !== "," && separator !== ";") throw this.#error("expected , between RDNs");
      this.#at++;
      this.#skipSpaces();
    }
  }

  #rdn(): Rdn {
    const type = canonicalType(this.#type());
    this.#skipSpaces();
    if (this.#text[this.#at] !== "=") throw this.#error("expected = after the attribute type");
    this.#at++;
    this.#skipSpaces();
    const value = this.#text[this.#at] === "#" ? this.#hexValue() : this.#stringValue();
    return { type, value };
  }

  /** An attribute type: a name (`descr`) or a dotted OID. */
  #type(): string {
    const start = this.#at;
    const match = /^(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)*)/.exec(this.#text.slice(start));
    if (match === null) throw this.#error("expected an attribute type");
    this.#at += match[0].length;
    return match[0];
  }

  /** A value written as `#` and the hex of a BER-encoded string. */
  #hexValue(): string {
    const start = ++this.#at;
    while (this.#at < this.#text.length && isHexDigit(this.#text.charCodeAt(this.#at))) this.#at++;
    const hex = this.#text.slice(start, this.#at);
    if (hex.length === 0 || hex.length % 2 !== 0) {
      throw this.#error("expected an even number of hex digits after #");
    }
    const bytes = new Uint8Array(hex.length / 2);
    for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
    return this.#berString(bytes, start);
  }

  #berString(bytes: Uint8Array, start: number): string {
    const reader = new BerReader(bytes);
    try {
      const tag = reader.peekTag();
      if (!HEX_VALUE_TAGS.has(tag)) {
        throw this.#error("a #-written value is not a BER string", start);
      }
      const content = reader.readView(tag);
      if (!reader.atEnd) throw this.#error("a #-written value has bytes after its string", start);
      const text = decodeUtf8(content);
      if (text === undefined) throw this.#error("a #-written value is not UTF-8", start);
      return text;
    } catch (error) {
      if (error instanceof BerError) throw this.#error("a #-written value is not BER", start);
      throw error;
    }
  }

  /**
   * A value as a string, up to an unescaped `,`, `;` or `+`: escapes
   * resolved, unescaped spaces at its end dropped. Runs of hex escapes are
   * bytes, decoded as UTF-8 together.
   */
  #stringValue(): string {
    const text = this.#text;
    let value = "";
    let kept = 0; // value's length up to its last character that is not an unescaped space
    while (this.#at < text.length) {
      const code = text.charCodeAt(this.#at);
      if (code === 0x2c || code === 0x3b || code === 0x2b) break; // , ; +
      if (code === 0) throw this.#error("a NUL must be escaped as \\00");
      if (code === BACKSLASH) {
        value += this.#escape();
        kept = value.length;
        continue;
      }
      value += text[this.#at++];
      if (code !== SPACE) kept = value.length;
    }
    return value.slice(0, kept);
  }

  /** One escape, or a run of hex escapes (the bytes of UTF-8 characters), at the backslash. */
  #escape(): string {
    const text = this.#text;
    const start = this.#at;
    const bytes: number[] = [];
    while (text.charCodeAt(this.#at) === BACKSLASH && this.#isHexPairAt(this.#at + 1)) {
      bytes.push(parseInt(text.slice(this.#at + 1, this.#at + 3), 16));
      this.#at += 3;
    }
    if (bytes.length > 0) {
      const decoded = decodeUtf8(Uint8Array.from(bytes));
      if (decoded === undefined) throw this.#error("hex escapes that are not UTF-8", start);
      return decoded;
    }
    const next = text[this.#at + 1];
    if (next === undefined || !`"+,;<>\\ #=`.includes(next)) {
      throw this.#error("a backslash must escape a special character or two hex digits");
    }
    this.#at += 2;
    return next;
  }

  #isHexPairAt(at: number): boolean {
    return isHexDigit(this.#text.charCodeAt(at)) && isHexDigit(this.#text.charCodeAt(at + 1));
  }

  #skipSpaces(): void {
    while (this.#text.charCodeAt(this.#at) === SPACE) this.#at++;
  }

  #error(what: string, at: number = this.#at): InvalidDnError {
    return new InvalidDnError(`Cannot parse the DN at character ${at}: ${what}.`);
  }
}

function isHexDigit(code: number): boolean {
  return (code >= 0x30 && code <= 0x39) || (code >= 0x41 && code <= 0x46) ||
    (code >= 0x61 && code <= 0x66);
}

/**
 * A value folded for comparison, as the directory matches names and
 * addresses: case-insensitive beyond ASCII (`ZOË` is `zoë`, `STRASSE` is
 * `straße`), spaces at the ends dropped and runs of them made one
 * (RFC 4518's insignificant spaces).
 */
export function foldDnValue(value: string): string {
  // Upper then lower folds what lowercasing alone does not (ß, ﬁ); the locale-free forms.
  return value.trim().replace(/\s+/g, " ").toUpperCase().toLowerCase();
}

function rdnsOf(dn: Dn): readonly Rdn[] {
  return typeof dn === "string" ? parseDn(dn) : dn;
}

/**
 * The canonical text of a DN: types as {@linkcode canonicalType} gives
 * them, values folded ({@linkcode foldDnValue}) and escaped, no spaces
 * around separators. Two DNs name the same entry when their canonical
 * texts are equal.
 *
 * @throws {InvalidDnError} when a text DN does not parse.
 */
export function normalizeDn(dn: Dn): string {
  return rdnsOf(dn).map((rdn) =>
    `${canonicalType(rdn.type)}=${escapeDnValue(foldDnValue(rdn.value))}`
  ).join(",");
}

function rdnEquals(a: Rdn, b: Rdn): boolean {
  return canonicalType(a.type) === canonicalType(b.type) &&
    foldDnValue(a.value) === foldDnValue(b.value);
}

/**
 * Whether `a` and `b` name the same entry.
 *
 * @throws {InvalidDnError} when a text DN does not parse.
 */
export function dnEquals(a: Dn, b: Dn): boolean {
  return levelsBelow(a, b) === 0;
}

/**
 * How many RDNs `dn` has below `base`: 0 when they are the same entry, 1
 * for a child, and -1 when `dn` is not within `base` at all. The empty DN
 * is above every other.
 *
 * ```ts
 * import { levelsBelow } from "./ldap_dn.ts";
 * levelsBelow("mail=ada@example.com,dc=example,dc=com", "DC=Example,DC=com"); // 1
 * levelsBelow("dc=example,dc=com", "dc=other,dc=com"); // -1
 * ```
 *
 * @throws {InvalidDnError} when a text DN does not parse.
 */
export function levelsBelow(dn: Dn, base: Dn): number {
  const inner = rdnsOf(dn);
  const outer = rdnsOf(base);
  const extra = inner.length - outer.length;
  if (extra < 0) return -1;
  for (let i = 0; i < outer.length; i++) {
    if (!rdnEquals(inner[extra + i], outer[i])) return -1;
  }
  return extra;
}

/**
 * Whether `dn` is `base` or below it: what a subtree search of `base` may return.
 *
 * @throws {InvalidDnError} when a text DN does not parse.
 */
export function isWithin(dn: Dn, base: Dn): boolean {
  return levelsBelow(dn, base) >= 0;
}
