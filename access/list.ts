/**
 * Who may connect, and who a client is: address lists for `--allow` and
 * `--trusted-proxy`, the loopback test behind protected mode, and the
 * identity that per-client limits are counted against.
 *
 * An access rule is a list of CIDR ranges: an address and a prefix length,
 * `192.0.2.0/24` meaning every address whose first 24 bits are those of
 * 192.0.2.0. A bare address is a range of one (`/32` for IPv4, `/128` for
 * IPv6), and `any` matches everyone.
 *
 * Why the identity of an IPv6 client is its /64: an IPv4 home or office
 * usually shares one public address, but IPv6 gives each network a /64 (18
 * quintillion addresses) and hosts pick new random addresses in it all the
 * time (RFC 8981 privacy addresses). Counting per address would let one
 * machine dodge every limit by changing address; counting per /64 counts a
 * network as IPv4 counts a household. IPv4-mapped IPv6 addresses
 * (`::ffff:192.0.2.7`, which a dual-stack socket reports for IPv4 peers)
 * are IPv4 addresses everywhere here, so a rule or a limit cannot be dodged
 * by connecting over the other stack: they match IPv4 ranges only (an
 * IPv6 range such as `::/0` matches IPv6 clients only), and a mapped range
 * `::ffff:10.0.0.0/104` is read as the IPv4 range `10.0.0.0/8`.
 *
 * Parsing the flags uses `ipaddr.js` (a small, dependency-free, widely used
 * library): the textual forms of IPv6 are many (`::`, embedded IPv4, case),
 * and a rule misread is a hole. That runs once, at start. Matching runs for
 * every connection (and for every PROXY header), so {@linkcode AccessList.allows}
 * parses the peer's address itself, by character codes into a reused
 * buffer without allocating, and compares it with ranges precomputed as
 * 32-bit numbers: IPv4 ranges merged, sorted and binary-searched, IPv6 ones
 * as four masked words each. Its agreement with `ipaddr.js` is
 * property-tested.
 *
 * ```ts
 * import { AccessList, clientIdentity } from "./list.ts";
 *
 * const allow = AccessList.parse("--allow", ["10.0.0.0/8,2001:db8::/32", "192.0.2.7"]);
 * allow.allows("10.1.2.3"); // true
 * allow.allows("::ffff:10.1.2.3"); // true: IPv4-mapped
 * allow.allows("198.51.100.1"); // false
 * clientIdentity("2001:db8:1:2:aaaa:bbbb:cccc:dddd"); // "2001:db8:1:2::/64"
 * ```
 *
 * @module
 */

import ipaddr from "ipaddr.js";
import { UsageError } from "../common/cli_args.ts";

/** The entry that matches every client. */
export const ANY = "any";

/** The peers trusted to send PROXY headers when `--trusted-proxy` is not given. */
export const DEFAULT_TRUSTED_PROXIES = "127.0.0.0/8,::1";

/** Bits in an IPv4 address. */
const IPV4_BITS = 32;
/** Bits in an IPv6 address. */
const IPV6_BITS = 128;
/** The prefix that an IPv4-mapped IPv6 address shares: `::ffff:0:0/96`. */
const MAPPED_PREFIX_BITS = 96;
/** The part of an IPv6 address that names a network: RFC 4291's interface identifier is the rest. */
const IPV6_NETWORK_GROUPS = 4;
/** The loopback network of IPv4, 127.0.0.0/8, as its top byte. */
const IPV4_LOOPBACK_TOP_BYTE = 127;
/** The prefix that marks a certificate subject as an identity. */
const CERTIFICATE_PREFIX = "cert:";

const CHAR_0 = 0x30;
const CHAR_9 = 0x39;
const CHAR_A = 0x41;
const CHAR_F = 0x46;
const CHAR_LOWER_A = 0x61;
const CHAR_LOWER_F = 0x66;
const CHAR_DOT = 0x2e;
const CHAR_COLON = 0x3a;

/** The groups of the address parsed last, reused so that matching allocates nothing. */
const groups = new Uint16Array(8);

/**
 * A parsed `--allow` or `--trusted-proxy` value: IPv4 and IPv6 CIDR ranges,
 * or everyone.
 *
 * ```ts
 * import { AccessList } from "./list.ts";
 *
 * const trusted = AccessList.parse("--trusted-proxy", "127.0.0.0/8,::1");
 * trusted.allows("127.0.0.2"); // true
 * trusted.allows("::1"); // true
 * trusted.allows("192.0.2.1"); // false
 * ```
 */
export class AccessList {
  /** Whether the list holds `any`. */
  readonly matchesEveryone: boolean;
  /** The entries as given, in order, for logs. */
  readonly entries: readonly string[];
  /** Merged IPv4 ranges as inclusive [first, last] pairs of unsigned numbers, sorted. */
  #ipv4: Float64Array;
  /** IPv6 ranges: per range, four network words then four mask words. */
  #ipv6: Uint32Array;

  private constructor(entries: string[], matchesEveryone: boolean, v4: number[][], v6: number[]) {
    this.entries = entries;
    this.matchesEveryone = matchesEveryone;
    this.#ipv4 = Float64Array.from(mergeRanges(v4).flat());
    this.#ipv6 = Uint32Array.from(v6);
  }

  /**
   * Parses the values of a repeatable flag, each a comma-separated list of
   * IPv4 or IPv6 addresses, CIDR ranges, or `any`.
   *
   * ```ts
   * import { AccessList } from "./list.ts";
   * AccessList.parse("--allow", ["10.0.0.0/8", "any"]).matchesEveryone; // true
   * ```
   *
   * @throws {UsageError} naming the flag and the entry: an empty entry, a
   *   malformed address or prefix length, or a range with bits set past its prefix.
   */
  static parse(flag: string, values: string | readonly string[]): AccessList {
    const entries: string[] = [];
    const v4: number[][] = [];
    const v6: number[] = [];
    let everyone = false;
    for (const value of typeof values === "string" ? [values] : values) {
      for (const entry of value.split(",")) {
        const range = parseEntry(flag, value, entry.trim());
        entries.push(entry.trim());
        if (range === ANY) everyone = true;
        else if (range.bits === IPV4_BITS) v4.push(ipv4Range(range.words[0], range.prefix));
        else v6.push(...range.words, ...ipv6Mask(range.prefix));
      }
    }
    return new AccessList(entries, everyone, v4, v6);
  }

  /**
   * Whether `address` (IPv4 dotted decimal or IPv6 text, as a socket reports
   * it) is in the list. An address that cannot be parsed is not.
   */
  allows(address: string): boolean {
    if (this.matchesEveryone) return true;
    const ipv4 = parseAddress(address);
    if (ipv4 >= 0) return this.#allowsIPv4(ipv4);
    return ipv4 === PARSED_IPV6 && this.#allowsIPv6();
  }

  #allowsIPv4(address: number): boolean {
    const ranges = this.#ipv4;
    let low = 0;
    let high = ranges.length / 2 - 1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      if (address < ranges[2 * middle]) high = middle - 1;
      else if (address > ranges[2 * middle + 1]) low = middle + 1;
      else return true;
    }
    return false;
  }

  /** Matches the IPv6 address in {@linkcode groups} against every IPv6 range. */
  #allowsIPv6(): boolean {
    const ranges = this.#ipv6;
    const w0 = ((groups[0] << 16) | groups[1]) >>> 0;
    const w1 = ((groups[2] << 16) | groups[3]) >>> 0;
    const w2 = ((groups[4] << 16) | groups[5]) >>> 0;
    const w3 = ((groups[6] << 16) | groups[7]) >>> 0;
    for (let i = 0; i < ranges.length; i += 8) {
      if (
        ((w0 & ranges[i + 4]) >>> 0) === ranges[i] &&
        ((w1 & ranges[i + 5]) >>> 0) === ranges[i + 1] &&
        ((w2 & ranges[i + 6]) >>> 0) === ranges[i + 2] &&
        ((w3 & ranges[i + 7]) >>> 0) === ranges[i + 3]
      ) {
        return true;
      }
    }
    return false;
  }
}

/**
 * Whether `address` is a loopback address: 127.0.0.0/8, `::1`, or an
 * IPv4-mapped loopback address. Protected mode serves only these clients.
 *
 * ```ts
 * import { isLoopback } from "./list.ts";
 * isLoopback("127.0.0.2"); // true
 * isLoopback("::1"); // true
 * isLoopback("192.0.2.1"); // false
 * ```
 */
export function isLoopback(address: string): boolean {
  const ipv4 = parseAddress(address);
  if (ipv4 >= 0) return ipv4 >>> 24 === IPV4_LOOPBACK_TOP_BYTE;
  if (ipv4 !== PARSED_IPV6) return false;
  for (let i = 0; i < 7; i++) if (groups[i] !== 0) return false;
  return groups[7] === 1;
}

/**
 * The identity a client's limits are counted against: an IPv4 address as
 * itself (an IPv4-mapped one in dotted form), an IPv6 address by its /64
 * network in RFC 5952 form. Text that is not an IP address is returned as
 * it is.
 *
 * ```ts
 * import { clientIdentity } from "./list.ts";
 * clientIdentity("192.0.2.7"); // "192.0.2.7"
 * clientIdentity("::ffff:192.0.2.7"); // "192.0.2.7"
 * clientIdentity("2001:DB8:1:2::99"); // "2001:db8:1:2::/64"
 * ```
 */
export function clientIdentity(address: string): string {
  const ipv4 = parseAddress(address);
  if (ipv4 >= 0) return formatIPv4(ipv4);
  if (ipv4 !== PARSED_IPV6) return address;
  groups.fill(0, IPV6_NETWORK_GROUPS);
  return `${formatIPv6Groups(groups)}/${IPV6_NETWORK_GROUPS * 16}`;
}

/**
 * The identity of a client that authenticated with a certificate: its
 * subject, marked so that it can never equal an address.
 *
 * ```ts
 * import { certificateIdentity } from "./list.ts";
 * certificateIdentity("CN=reporting,O=Example"); // "cert:CN=reporting,O=Example"
 * ```
 */
export function certificateIdentity(subject: string): string {
  return CERTIFICATE_PREFIX + subject;
}

// --- Parsing the flags (once, at start; ipaddr.js) ---

interface ParsedRange {
  bits: typeof IPV4_BITS | typeof IPV6_BITS;
  /** The network as 32-bit words: one for IPv4, four for IPv6. */
  words: number[];
  prefix: number;
}

function parseEntry(flag: string, value: string, entry: string): ParsedRange | typeof ANY {
  if (entry === "") {
    throw new UsageError(`${flag} has an empty entry in "${value}".`);
  }
  if (entry.toLowerCase() === ANY) return ANY;
  const slash = entry.indexOf("/");
  const text = slash < 0 ? entry : entry.slice(0, slash);
  const address = parseFlagAddress(text);
  if (address === undefined) {
    throw new UsageError(
      `${flag} entry "${entry}" is not an IPv4 or IPv6 address, a CIDR range or "${ANY}".`,
    );
  }
  const bits = address.kind() === "ipv4" ? IPV4_BITS : IPV6_BITS;
  const prefixText = slash < 0 ? String(bits) : entry.slice(slash + 1);
  const prefix = /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
  if (!(prefix <= bits)) {
    throw new UsageError(
      `${flag} entry "${entry}" must have a prefix length from 0 to ${bits}, not "${prefixText}".`,
    );
  }
  const range = toParsedRange(address, prefix);
  if (hasHostBits(range)) {
    const base = address.kind() === "ipv4"
      ? ipaddr.IPv4.networkAddressFromCIDR(`${address}/${prefix}`)
      : ipaddr.IPv6.networkAddressFromCIDR(`${address}/${prefix}`);
    throw new UsageError(
      `${flag} entry "${entry}" has bits set past its /${prefix} prefix; the range is ${base}/${prefix}.`,
    );
  }
  return range;
}

function hasHostBits(range: ParsedRange): boolean {
  if (range.bits === IPV4_BITS) return range.words[0] % 2 ** (IPV4_BITS - range.prefix) !== 0;
  const mask = ipv6Mask(range.prefix);
  return range.words.some((word, i) => ((word & ~mask[i]) >>> 0) !== 0);
}

/** Parses an address strictly: four-part decimal IPv4, or IPv6 without a zone. */
function parseFlagAddress(text: string): ipaddr.IPv4 | ipaddr.IPv6 | undefined {
  if (ipaddr.IPv4.isValidFourPartDecimal(text)) return ipaddr.IPv4.parse(text);
  if (text.includes(":") && !text.includes("%") && ipaddr.IPv6.isValid(text)) {
    return ipaddr.IPv6.parse(text);
  }
  return undefined;
}

function toParsedRange(address: ipaddr.IPv4 | ipaddr.IPv6, prefix: number): ParsedRange {
  if (address.kind() === "ipv6") {
    const v6 = address as ipaddr.IPv6;
    if (v6.isIPv4MappedAddress() && prefix >= MAPPED_PREFIX_BITS) {
      return toParsedRange(v6.toIPv4Address(), prefix - MAPPED_PREFIX_BITS);
    }
    const words: number[] = [];
    for (let i = 0; i < 8; i += 2) words.push(((v6.parts[i] << 16) | v6.parts[i + 1]) >>> 0);
    return { bits: IPV6_BITS, words, prefix };
  }
  const [a, b, c, d] = address.toByteArray();
  return { bits: IPV4_BITS, words: [((a << 24) | (b << 16) | (c << 8) | d) >>> 0], prefix };
}

function ipv4Range(network: number, prefix: number): number[] {
  const size = 2 ** (IPV4_BITS - prefix);
  return [network, network + size - 1];
}

function ipv6Mask(prefix: number): number[] {
  const mask: number[] = [];
  for (let word = 0; word < 4; word++) {
    const bits = Math.max(0, Math.min(32, prefix - word * 32));
    mask.push(bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0);
  }
  return mask;
}

/** Sorts ranges and merges the ones that overlap or touch, so that a binary search finds one. */
function mergeRanges(ranges: number[][]): number[][] {
  const sorted = ranges.toSorted((x, y) => x[0] - y[0]);
  const merged: number[][] = [];
  for (const [first, last] of sorted) {
    const top = merged.at(-1);
    if (top && first <= top[1] + 1) top[1] = Math.max(top[1], last);
    else merged.push([first, last]);
  }
  return merged;
}

// --- Parsing a peer's address (every connection; by hand, allocation-free) ---

/** {@linkcode parseAddress}'s answer for an IPv6 address, now in {@linkcode groups}. */
const PARSED_IPV6 = -1;
/** {@linkcode parseAddress}'s answer for text that is not an IP address. */
const NOT_AN_ADDRESS = -2;

/**
 * Parses an IP address. Returns an IPv4 address (or an IPv4-mapped IPv6
 * one) as an unsigned 32-bit number; for another IPv6 address, fills
 * {@linkcode groups} and returns {@linkcode PARSED_IPV6}; otherwise
 * {@linkcode NOT_AN_ADDRESS}. A zone (`fe80::1%eth0`) is ignored.
 */
function parseAddress(text: string): number {
  const ipv4 = parseIPv4(text, 0, text.length);
  if (ipv4 >= 0) return ipv4;
  if (!parseIPv6(text)) return NOT_AN_ADDRESS;
  if (
    groups[0] === 0 && groups[1] === 0 && groups[2] === 0 && groups[3] === 0 &&
    groups[4] === 0 && groups[5] === 0xffff
  ) {
    return ((groups[6] << 16) | groups[7]) >>> 0;
  }
  return PARSED_IPV6;
}

/** Parses four-part dotted decimal from `start` to `end`: a number, or -1. */
function parseIPv4(text: string, start: number, end: number): number {
  let result = 0;
  let part = 0;
  let digits = 0;
  let parts = 0;
  for (let i = start; i <= end; i++) {
    const code = i < end ? text.charCodeAt(i) : CHAR_DOT;
    if (code >= CHAR_0 && code <= CHAR_9) {
      if (digits > 0 && part === 0) return -1; // a leading zero
      part = part * 10 + code - CHAR_0;
      if (part > 255) return -1;
      digits++;
    } else if (code === CHAR_DOT && digits > 0 && parts < 4) {
      result = result * 256 + part;
      parts++;
      part = 0;
      digits = 0;
    } else {
      return -1;
    }
  }
  return parts === 4 ? result : -1;
}

/** Parses IPv6 text into {@linkcode groups}; false when it is not an IPv6 address. */
function parseIPv6(text: string): boolean {
  const percent = text.indexOf("%");
  const end = percent < 0 ? text.length : percent;
  let count = 0;
  let gap = -1;
  let i = 0;
  if (end >= 2 && text.charCodeAt(0) === CHAR_COLON && text.charCodeAt(1) === CHAR_COLON) {
    gap = 0;
    i = 2;
  }
  while (i < end) {
    if (count === 8) return false;
    const start = i;
    let group = 0;
    while (i < end && i - start < 5) {
      const digit = hexDigit(text.charCodeAt(i));
      if (digit < 0) break;
      group = group * 16 + digit;
      i++;
    }
    if (i < end && text.charCodeAt(i) === CHAR_DOT) {
      if (count > 6) return false;
      const ipv4 = parseIPv4(text, start, end);
      if (ipv4 < 0) return false;
      groups[count++] = ipv4 >>> 16;
      groups[count++] = ipv4 & 0xffff;
      i = end;
      break;
    }
    if (i === start || i - start > 4) return false;
    groups[count++] = group;
    if (i === end) break;
    if (text.charCodeAt(i) !== CHAR_COLON) return false;
    i++;
    if (i < end && text.charCodeAt(i) === CHAR_COLON) {
      if (gap >= 0) return false;
      gap = count;
      i++;
    } else if (i === end) {
      return false; // a trailing single colon
    }
  }
  if (gap < 0) return count === 8;
  if (count === 8) return false; // "::" must stand for at least one group
  const moved = count - gap;
  groups.copyWithin(8 - moved, gap, count);
  groups.fill(0, gap, 8 - moved);
  return true;
}

function hexDigit(code: number): number {
  if (code >= CHAR_0 && code <= CHAR_9) return code - CHAR_0;
  if (code >= CHAR_A && code <= CHAR_F) return code - CHAR_A + 10;
  if (code >= CHAR_LOWER_A && code <= CHAR_LOWER_F) return code - CHAR_LOWER_A + 10;
  return -1;
}

function formatIPv4(address: number): string {
  return `${address >>> 24}.${(address >>> 16) & 0xff}.${(address >>> 8) & 0xff}.${address & 0xff}`;
}

/** RFC 5952 text of eight groups: lower case, the longest run of two or more zeros as `::`. */
function formatIPv6Groups(parts: Uint16Array): string {
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (parts[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && parts[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const afterGap = bestStart + bestLength;
  let text = "";
  for (let i = 0; i < 8;) {
    if (i === bestStart) {
      text += "::";
      i = afterGap;
      continue;
    }
    if (i > 0 && i !== afterGap) text += ":";
    text += parts[i].toString(16);
    i++;
  }
  return text;
}
