/**
 * BER, the subset LDAPv3 uses (RFC 4511 §5.1): a reader over a byte range
 * and writers that append to a {@linkcode ReplyBuffer}. Pure: no I/O.
 *
 * The reader takes single-octet tags and definite lengths only (the short
 * form, or the long form with at most {@linkcode MAX_LENGTH_OCTETS} octets,
 * non-minimal ones accepted); an indefinite length, a longer length field or
 * a high tag number is a {@linkcode BerError}. Every length is checked
 * against the element that encloses it before anything is read or
 * allocated, so a hostile length costs nothing. Numbers are built by
 * multiplication, never `<< 8`, which turns negative at 2^31.
 *
 * The writers encode lengths in the minimal form: a constructed element's
 * length is back-patched when it ends ({@linkcode beginConstructed},
 * {@linkcode endConstructed}), with its content moved along when the length
 * needs more than one octet.
 *
 * ```ts
 * import { BerReader, BerTag, beginConstructed, endConstructed, writeInteger } from "./ber.ts";
 * import { ReplyBuffer } from "./front_end.ts";
 *
 * const out = new ReplyBuffer();
 * const sequence = beginConstructed(out, BerTag.sequence);
 * writeInteger(out, BerTag.integer, 300);
 * endConstructed(out, sequence); // out holds 30 04 02 02 01 2c
 *
 * const reader = new BerReader(out.bytes, 0, out.length);
 * const end = reader.enter(BerTag.sequence);
 * reader.readInteger(BerTag.integer); // 300
 * reader.leave(end);
 * ```
 *
 * @module
 */

import { copyBytes } from "../common/small_arrays.ts";
import { decodeUtf8, MAX_UTF8_PER_UNIT, writeUtf8 } from "../common/utf8.ts";
import type { ReplyBuffer } from "./front_end.ts";

/** Universal tags LDAP uses, as their one-octet identifiers. */
export const BerTag = {
  /** BOOLEAN. */
  boolean: 0x01,
  /** INTEGER. */
  integer: 0x02,
  /** OCTET STRING (LDAPString, LDAPDN and LDAPOID are OCTET STRINGs). */
  octetString: 0x04,
  /** NULL. */
  null: 0x05,
  /** ENUMERATED. */
  enumerated: 0x0a,
  /** SEQUENCE and SEQUENCE OF (constructed). */
  sequence: 0x30,
  /** SET and SET OF (constructed). */
  set: 0x31,
} as const;

/** The identifier bit that marks a constructed element. */
export const CONSTRUCTED = 0x20;
/** The low five tag bits that announce a multi-octet (high) tag number, which LDAP never uses. */
const HIGH_TAG_NUMBER = 0x1f;
/** The length octet of an indefinite length, which LDAP forbids (RFC 4511 §5.1). */
export const INDEFINITE_LENGTH = 0x80;
/** The most length octets after the first that the reader takes: lengths up to 2^32 - 1. */
export const MAX_LENGTH_OCTETS = 4;
/** The most octets a tag and its length take: one tag octet, the first length octet, four more. */
export const MAX_HEADER_BYTES = 2 + MAX_LENGTH_OCTETS;
/** The most content octets an INTEGER or ENUMERATED may have: 32 bits, two's complement. */
export const MAX_INTEGER_OCTETS = 4;

/** The first code unit of the lone surrogates that stand for bytes that are not UTF-8. */
const ESCAPE_BASE = 0xdc00;
const EMPTY = new Uint8Array(0);

/**
 * Bytes that are not the BER this reader takes. The message names a tag or
 * a length, never the content, so it may be logged and sent to the peer.
 */
export class BerError extends Error {
  override name = "BerError";
}

/** A tag as two hex digits: `0x04`. */
export function hexTag(tag: number): string {
  return `0x${tag.toString(16).padStart(2, "0")}`;
}

/**
 * How many octets a length field takes, from its first octet: 1 for the
 * short form, else 1 plus the count the first octet gives.
 *
 * @throws {BerError} for an indefinite length, or one of more than {@linkcode MAX_LENGTH_OCTETS} octets.
 */
export function lengthFieldSize(first: number): number {
  if (first < 0x80) return 1;
  if (first === INDEFINITE_LENGTH) {
    throw new BerError("An indefinite length (0x80) is not allowed in LDAP.");
  }
  const count = first & 0x7f;
  if (count > MAX_LENGTH_OCTETS) {
    throw new BerError(
      `A length field of ${count} octets is over the limit of ${MAX_LENGTH_OCTETS}.`,
    );
  }
  return 1 + count;
}

/**
 * The length encoded at `offset`, whose field takes `size` octets (from
 * {@linkcode lengthFieldSize}); the caller has checked they are there.
 */
export function lengthValue(bytes: Uint8Array, offset: number, size: number): number {
  if (size === 1) return bytes[offset];
  let length = 0;
  for (let i = 1; i < size; i++) length = length * 256 + bytes[offset + i];
  return length;
}

/**
 * Decodes UTF-8, keeping what is not: each byte that starts no valid
 * sequence becomes a lone surrogate, U+DC00 plus the byte (as Python's
 * `surrogateescape`). The result is not well-formed
 * (`String.prototype.isWellFormed` is false) exactly when the bytes were
 * not UTF-8, so text from a peer is never refused yet can never equal, or
 * hold as a substring, any text that was valid UTF-8.
 *
 * ```ts
 * import { decodeUtf8Escaped } from "./ber.ts";
 * decodeUtf8Escaped(Uint8Array.of(0x61, 0xff, 0x62)); // "a\udcffb"
 * ```
 */
export function decodeUtf8Escaped(bytes: Uint8Array): string {
  return decodeUtf8Range(bytes, 0, bytes.length);
}

/** Text at most this long (in bytes) is decoded in JavaScript; longer, by the engine's decoder. */
const SHORT_TEXT_BYTES = 256;
/** Strings of at most this many units are built by concatenation, which V8 keeps flat. */
const CONCATENATED_UNITS = 12;
/** UTF-16 units of a short text, reused: a decoded unit never takes less than a byte. */
const scratch = new Uint16Array(SHORT_TEXT_BYTES);

/**
 * {@linkcode decodeUtf8Escaped} of `bytes` from `start` to `end`, without
 * a view. Short text, which is nearly all LDAP carries (names, attribute
 * types, filter values), is decoded here: the engine's `TextDecoder` costs
 * some 300 ns a call whatever the length.
 */
export function decodeUtf8Range(bytes: Uint8Array, start: number, end: number): string {
  const length = end - start;
  if (length > SHORT_TEXT_BYTES) {
    const view = bytes.subarray(start, end);
    const strict = decodeUtf8(view);
    if (strict !== undefined) return strict;
    const units = new Uint16Array(length);
    return unitsToString(units, decodeUnits(bytes, start, end, units));
  }
  return unitsToString(scratch, decodeUnits(bytes, start, end, scratch));
}

function unitsToString(units: Uint16Array, count: number): string {
  if (count <= CONCATENATED_UNITS) {
    let text = "";
    for (let i = 0; i < count; i++) text += String.fromCharCode(units[i]);
    return text;
  }
  let text = "";
  // In slices: one call with a whole message's units could pass the engine's argument limit.
  for (let at = 0; at < count; at += 4096) {
    const slice = units.subarray(at, Math.min(at + 4096, count));
    text += String.fromCharCode.apply(null, slice as unknown as number[]);
  }
  return text;
}

/**
 * Writes the UTF-16 units of `bytes` from `start` to `end` into `units`
 * (room for one per byte), escaping what is not UTF-8; returns how many.
 */
function decodeUnits(bytes: Uint8Array, start: number, end: number, units: Uint16Array): number {
  let count = 0;
  let i = start;
  while (i < end) {
    const byte = bytes[i];
    if (byte < 0x80) {
      units[count++] = byte;
      i++;
      continue;
    }
    const size = utf8SequenceSize(bytes, i, end);
    if (size === 0) {
      units[count++] = ESCAPE_BASE + byte;
      i++;
      continue;
    }
    const point = codePointAt(bytes, i, size);
    if (point > 0xffff) {
      units[count++] = 0xd800 + ((point - 0x10000) >> 10);
      units[count++] = 0xdc00 + ((point - 0x10000) & 0x3ff);
    } else {
      units[count++] = point;
    }
    i += size;
  }
  return count;
}

/**
 * The length of the valid UTF-8 sequence at `i` (RFC 3629: no overlong
 * form, no surrogate, nothing past U+10FFFF), or 0 when none starts there.
 */
function utf8SequenceSize(bytes: Uint8Array, i: number, end: number): number {
  const first = bytes[i];
  if (first < 0x80) return 1;
  let size: number;
  let low = 0x80;
  let high = 0xbf;
  if (first >= 0xc2 && first <= 0xdf) size = 2;
  else if (first >= 0xe0 && first <= 0xef) {
    size = 3;
    if (first === 0xe0) low = 0xa0;
    if (first === 0xed) high = 0x9f;
  } else if (first >= 0xf0 && first <= 0xf4) {
    size = 4;
    if (first === 0xf0) low = 0x90;
    if (first === 0xf4) high = 0x8f;
  } else return 0;
  if (i + size > end) return 0;
  const second = bytes[i + 1];
  if (second < low || second > high) return 0;
  for (let k = 2; k < size; k++) {
    if ((bytes[i + k] & 0xc0) !== 0x80) return 0;
  }
  return size;
}

function codePointAt(bytes: Uint8Array, i: number, size: number): number {
  if (size === 1) return bytes[i];
  let point = bytes[i] & (0xff >> (size + 1));
  for (let k = 1; k < size; k++) point = point * 64 + (bytes[i + k] & 0x3f);
  return point;
}

/**
 * A cursor over one BER encoding in `bytes`, from `offset` to `end`. It
 * reads elements one by one; a constructed element is entered with
 * {@linkcode enter}, which narrows {@linkcode end} to its content, and left
 * with {@linkcode leave}. Every read checks that the element fits inside
 * the one that encloses it.
 *
 * Byte strings are returned as copies ({@linkcode readBytes}) or views
 * ({@linkcode readView}); text is decoded with {@linkcode decodeUtf8Escaped}.
 */
export class BerReader {
  /** The bytes read. */
  bytes: Uint8Array;
  /** Where the next element starts. */
  offset: number;
  /** Where the innermost entered element (or the whole range) ends. */
  end: number;

  /** Reads `bytes` from `offset` to `end`. */
  constructor(bytes: Uint8Array = EMPTY, offset = 0, end: number = bytes.length) {
    this.bytes = bytes;
    this.offset = offset;
    this.end = end;
  }

  /** Starts over on another range, so that one reader serves many messages. */
  reset(bytes: Uint8Array, offset: number, end: number): void {
    this.bytes = bytes;
    this.offset = offset;
    this.end = end;
  }

  /** Whether every element of the innermost entered element has been read. */
  get atEnd(): boolean {
    return this.offset >= this.end;
  }

  /**
   * The tag of the next element, without reading it.
   *
   * @throws {BerError} when no element is left.
   */
  peekTag(): number {
    if (this.offset >= this.end) {
      throw new BerError("An element is missing at the end of its enclosing one.");
    }
    return this.bytes[this.offset];
  }

  /**
   * Reads the next element's tag and length, checking the tag is `tag`, and
   * returns the content's length; {@linkcode offset} is then at the content.
   *
   * @throws {BerError} when the tag differs or the length is bad or runs past the enclosing element.
   */
  readHeader(tag: number): number {
    const found = this.peekTag();
    if (found !== tag) {
      throw new BerError(`Expected an element with tag ${hexTag(tag)}, not ${hexTag(found)}.`);
    }
    return this.#readLength();
  }

  /** Reads the length after the tag at {@linkcode offset} and checks that the content fits. */
  #readLength(): number {
    const start = this.offset + 1;
    if (start >= this.end) throw new BerError("An element ends before its length.");
    const size = lengthFieldSize(this.bytes[start]);
    if (start + size > this.end) throw new BerError("An element ends inside its length.");
    const length = lengthValue(this.bytes, start, size);
    const content = start + size;
    if (length > this.end - content) {
      throw new BerError(
        `An element of length ${length} runs past its enclosing element, which has ${
          this.end - content
        } bytes left.`,
      );
    }
    this.offset = content;
    return length;
  }

  /**
   * Enters the constructed element with `tag`: narrows {@linkcode end} to
   * its content and returns the end it replaced, for {@linkcode leave}.
   */
  enter(tag: number): number {
    const length = this.readHeader(tag);
    const outer = this.end;
    this.end = this.offset + length;
    return outer;
  }

  /**
   * Leaves the element entered last, skipping whatever of it was not read
   * (RFC 4511 §4: trailing elements a receiver does not know are ignored),
   * and restores `outer`, the end {@linkcode enter} returned.
   */
  leave(outer: number): void {
    this.offset = this.end;
    this.end = outer;
  }

  /** Skips the next element, whatever its tag; returns that tag. */
  skip(): number {
    const tag = this.peekTag();
    if ((tag & HIGH_TAG_NUMBER) === HIGH_TAG_NUMBER) {
      throw new BerError(`Tag ${hexTag(tag)} announces a high tag number, which LDAP never uses.`);
    }
    const length = this.#readLength(); // moves the offset to the content, so read it first
    this.offset += length;
    return tag;
  }

  /**
   * Reads an INTEGER (or another tag with INTEGER content, such as
   * ENUMERATED): two's complement, 1 to {@linkcode MAX_INTEGER_OCTETS}
   * octets, so from -2^31 to 2^31 - 1.
   */
  readInteger(tag: number = BerTag.integer): number {
    const length = this.readHeader(tag);
    if (length === 0 || length > MAX_INTEGER_OCTETS) {
      throw new BerError(
        `An integer (tag ${hexTag(tag)}) of ${length} octets is not 1 to ${MAX_INTEGER_OCTETS}.`,
      );
    }
    const bytes = this.bytes;
    let at = this.offset;
    const first = bytes[at++];
    let value = first >= 0x80 ? first - 256 : first;
    for (let i = 1; i < length; i++) value = value * 256 + bytes[at++];
    this.offset = at;
    return value;
  }

  /** Reads an ENUMERATED. */
  readEnumerated(): number {
    return this.readInteger(BerTag.enumerated);
  }

  /** Reads a BOOLEAN (one octet: zero is false, anything else true, as BER has it). */
  readBoolean(tag: number = BerTag.boolean): boolean {
    const length = this.readHeader(tag);
    if (length !== 1) {
      throw new BerError(`A boolean (tag ${hexTag(tag)}) of ${length} octets is not 1 octet.`);
    }
    return this.bytes[this.offset++] !== 0;
  }

  /** Reads a primitive element's content as a view into {@linkcode bytes}: valid while they are. */
  readView(tag: number = BerTag.octetString): Uint8Array {
    const length = this.readHeader(tag);
    const start = this.offset;
    this.offset = start + length;
    return this.bytes.subarray(start, this.offset);
  }

  /** Reads a primitive element's content as a copy of its own. */
  readBytes(tag: number = BerTag.octetString): Uint8Array {
    const length = this.readHeader(tag);
    const start = this.offset;
    this.offset = start + length;
    return copyBytes(this.bytes, start, this.offset);
  }

  /** Reads a primitive element's content as text (see {@linkcode decodeUtf8Escaped}). */
  readString(tag: number = BerTag.octetString): string {
    const length = this.readHeader(tag);
    const start = this.offset;
    this.offset = start + length;
    return length === 0 ? "" : decodeUtf8Range(this.bytes, start, this.offset);
  }
}

/** How many octets the minimal length field for `length` takes. */
export function lengthSize(length: number): number {
  if (length < 0x80) return 1;
  if (length < 0x100) return 2;
  if (length < 0x10000) return 3;
  if (length < 0x1000000) return 4;
  return 5;
}

/** Writes the minimal length field for `length` at `offset` (room checked by the caller); returns the offset after it. */
function putLength(bytes: Uint8Array, offset: number, length: number): number {
  const size = lengthSize(length);
  if (size === 1) {
    bytes[offset] = length;
    return offset + 1;
  }
  bytes[offset] = 0x80 | (size - 1);
  let rest = length;
  for (let i = size - 1; i >= 1; i--) {
    bytes[offset + i] = rest % 256;
    rest = Math.floor(rest / 256);
  }
  return offset + size;
}

/** Appends a tag and the minimal length field for `length`. */
export function writeHeader(out: ReplyBuffer, tag: number, length: number): void {
  const bytes = out.reserve(MAX_HEADER_BYTES);
  bytes[out.length] = tag;
  out.length = putLength(bytes, out.length + 1, length);
}

/**
 * Starts a constructed element with `tag`, its length left to
 * {@linkcode endConstructed}; returns where its content starts, which the
 * caller passes to `endConstructed`. Nest them as the elements nest.
 */
export function beginConstructed(out: ReplyBuffer, tag: number): number {
  const bytes = out.reserve(2);
  bytes[out.length] = tag;
  bytes[out.length + 1] = 0;
  out.length += 2;
  return out.length;
}

/**
 * Ends the constructed element whose content starts at `start`: writes its
 * length, moving the content along when the length takes more than one octet.
 */
export function endConstructed(out: ReplyBuffer, start: number): void {
  const length = out.length - start;
  if (length < 0x80) {
    out.bytes[start - 1] = length;
    return;
  }
  const extra = lengthSize(length) - 1;
  const bytes = out.reserve(extra);
  bytes.copyWithin(start + extra, start, out.length);
  putLength(bytes, start - 1, length);
  out.length += extra;
}

/** How many content octets the two's complement of `value` needs: 1 to 4. */
function integerSize(value: number): number {
  if (value >= -0x80 && value < 0x80) return 1;
  if (value >= -0x8000 && value < 0x8000) return 2;
  if (value >= -0x800000 && value < 0x800000) return 3;
  return 4;
}

/**
 * Appends an INTEGER (or ENUMERATED, with its tag) in the fewest octets.
 *
 * @throws {RangeError} when `value` is not a whole number from -2^31 to 2^31 - 1.
 */
export function writeInteger(out: ReplyBuffer, tag: number, value: number): void {
  if (!Number.isInteger(value) || value < -0x80000000 || value > 0x7fffffff) {
    throw new RangeError(
      `Cannot encode ${value} as a BER integer: it is not a 32-bit whole number.`,
    );
  }
  const size = integerSize(value);
  const bytes = out.reserve(2 + size);
  let at = out.length;
  bytes[at++] = tag;
  bytes[at++] = size;
  // Two's complement of a negative value: add 2^32, then take octets by division.
  let rest = value < 0 ? value + 0x100000000 : value;
  for (let i = size - 1; i >= 0; i--) {
    bytes[at + i] = rest % 256;
    rest = Math.floor(rest / 256);
  }
  out.length = at + size;
}

/** Appends a BOOLEAN, true as 0xFF (as DER has it). */
export function writeBoolean(out: ReplyBuffer, tag: number, value: boolean): void {
  const bytes = out.reserve(3);
  bytes[out.length] = tag;
  bytes[out.length + 1] = 1;
  bytes[out.length + 2] = value ? 0xff : 0;
  out.length += 3;
}

/** Appends a primitive element holding `content`. */
export function writeOctetString(out: ReplyBuffer, tag: number, content: Uint8Array): void {
  writeHeader(out, tag, content.length);
  out.append(content);
}

/** Appends a primitive element holding `bytes[start, end)`, copied where they lie (no view made). */
export function writeOctetRange(
  out: ReplyBuffer,
  tag: number,
  bytes: Uint8Array,
  start: number,
  end: number,
): void {
  const length = end - start;
  writeHeader(out, tag, length);
  const into = out.reserve(length);
  let at = out.length;
  for (let i = start; i < end; i++) into[at++] = bytes[i];
  out.length = at;
}

/**
 * Appends a primitive element holding `text` in UTF-8 (lone surrogates as
 * U+FFFD), encoded in place: no intermediate array.
 */
export function writeString(out: ReplyBuffer, tag: number, text: string): void {
  const most = text.length * MAX_UTF8_PER_UNIT;
  const headerRoom = 1 + lengthSize(most);
  const bytes = out.reserve(headerRoom + most);
  const start = out.length;
  const end = writeUtf8(text, bytes, start + headerRoom);
  const length = end - start - headerRoom;
  const header = 1 + lengthSize(length);
  // The UTF-8 came out shorter than the most it could be: close the gap a longer length field left.
  if (header < headerRoom) bytes.copyWithin(start + header, start + headerRoom, end);
  bytes[start] = tag;
  putLength(bytes, start + 1, length);
  out.length = start + header + length;
}
