/**
 * The LDAPv3 codec (RFC 4511) the LDAP front end speaks: an incremental
 * decoder of client requests ({@linkcode LdapDecoder}) and encoders of the
 * server's responses that append to a {@linkcode ReplyBuffer}. Pure: no
 * sockets, no clock.
 *
 * Requests are bounded before anything is allocated for them: the outer
 * LDAPMessage's length is checked against {@linkcode MAX_MESSAGE_BYTES} as
 * soon as its length octets arrive, every inner length against the element
 * enclosing it (wire/ber.ts), and a search filter against
 * {@linkcode MAX_FILTER_DEPTH} and {@linkcode MAX_FILTER_NODES} while it is
 * decoded, so a deep filter is refused before it can recurse
 * (CVE-2020-12243). Bytes that break the protocol throw an
 * {@linkcode LdapProtocolError}, which carries the messageID and the
 * operation's tag when they could be read, so that the front end can answer
 * that request with protocolError or send a Notice of Disconnection.
 *
 * Text (DNs, attribute names, filter values) that is not UTF-8 is not
 * refused: each byte that is not part of valid UTF-8 becomes a lone
 * surrogate (see {@linkcode decodeUtf8Escaped}), so the string is not
 * well-formed ({@linkcode isUndecodable}) and never equals, nor contains,
 * text from the book. Ordering matches (`>=`, `<=`) must check
 * {@linkcode isUndecodable} themselves; every other match fails on its own.
 *
 * ```ts
 * import { LdapDecoder, ResultCode, writeSearchResultDone } from "./ldap_codec.ts";
 * import { ReplyBuffer } from "./front_end.ts";
 *
 * const decoder = new LdapDecoder();
 * // An UnbindRequest with messageID 5, split across two reads.
 * decoder.push(Uint8Array.of(0x30, 0x05, 0x02), 3);
 * decoder.take(); // null: the message is not complete
 * decoder.push(Uint8Array.of(0x01, 0x05, 0x42, 0x00), 4);
 * decoder.take(); // { messageId: 5, op: { kind: "unbind" }, controls: [] }
 *
 * const out = new ReplyBuffer();
 * writeSearchResultDone(out, 2, ResultCode.success, "", "");
 * ```
 *
 * @module
 */

import {
  beginConstructed,
  BerError,
  BerReader,
  BerTag,
  decodeUtf8Escaped,
  endConstructed,
  hexTag,
  lengthFieldSize,
  lengthValue,
  MAX_HEADER_BYTES,
  writeBoolean,
  writeInteger,
  writeOctetString,
  writeString,
} from "./ber.ts";
import { MalformedInput, ReplyBuffer } from "./front_end.ts";
import type { LdapFilter } from "./ldap_filter.ts";

export { decodeUtf8Escaped };

/**
 * The longest LDAPMessage accepted, counting its content (after the outer
 * tag and length): 256 KiB. slapd refuses more than 262,143 bytes from an
 * anonymous client (`sockbuf_max_incoming`), and what mail clients send is
 * far less: Evolution's OR of 57 substring filters is about 2 KiB, a bind
 * with a long password a few hundred bytes. It also bounds the memory one
 * connection can make the decoder hold.
 */
export const MAX_MESSAGE_BYTES = 256 * 1024;
/**
 * The most and, or and not filters that may nest: `(&(|(!(x=1))))` nests 3. Mail clients
 * send 2 or 3; slapd's compiled-in limit (SLAPD_MAX_FILTER_DEPTH) is 5000,
 * which CVE-2020-12243 showed is no protection by itself.
 */
export const MAX_FILTER_DEPTH = 32;
/**
 * The most filter nodes one search may hold, counting each substring piece
 * as one, since each is a separate match per entry: Evolution's "any field"
 * OR of ~57 substrings takes about 115; wide ORs of hundreds fit.
 */
export const MAX_FILTER_NODES = 1024;
/** The most attributes one search may name: Apple Contacts names about 22. */
export const MAX_REQUESTED_ATTRIBUTES = 1024;
/** The highest messageID (RFC 4511 §4.1.1: `MessageID ::= INTEGER (0 .. maxInt)`). */
export const MAX_MESSAGE_ID = 0x7fffffff;
/** The highest LDAP protocol version a BindRequest may name (`INTEGER (1 .. 127)`). */
const MAX_VERSION = 127;

/** Protocol operation tags (RFC 4511 §4.2–4.14; application class). */
export const LdapTag = {
  bindRequest: 0x60,
  bindResponse: 0x61,
  /** Primitive: its content is NULL. */
  unbindRequest: 0x42,
  searchRequest: 0x63,
  searchResultEntry: 0x64,
  searchResultDone: 0x65,
  searchResultReference: 0x73,
  modifyRequest: 0x66,
  modifyResponse: 0x67,
  addRequest: 0x68,
  addResponse: 0x69,
  /** Primitive: its content is the DN. */
  delRequest: 0x4a,
  delResponse: 0x6b,
  modDNRequest: 0x6c,
  modDNResponse: 0x6d,
  compareRequest: 0x6e,
  compareResponse: 0x6f,
  /** Primitive: its content is the messageID to abandon. */
  abandonRequest: 0x50,
  extendedRequest: 0x77,
  extendedResponse: 0x78,
  intermediateResponse: 0x79,
} as const;

/** Context-specific tags inside LDAP operations and messages. */
export const LdapContextTag = {
  /** LDAPMessage's `controls [0]`. */
  controls: 0xa0,
  /** BindRequest's `simple [0] OCTET STRING`. */
  authSimple: 0x80,
  /** BindRequest's `sasl [3] SaslCredentials`. */
  authSasl: 0xa3,
  /** LDAPResult's `referral [3]`. */
  referral: 0xa3,
  /** BindResponse's `serverSaslCreds [7]`. */
  serverSaslCreds: 0x87,
  /** ExtendedRequest's `requestName [0]`. */
  requestName: 0x80,
  /** ExtendedRequest's `requestValue [1]`. */
  requestValue: 0x81,
  /** ExtendedResponse's `responseName [10]`. */
  responseName: 0x8a,
  /** ExtendedResponse's `responseValue [11]`. */
  responseValue: 0x8b,
} as const;

/** Filter tags (RFC 4511 §4.5.1.7), and the tags inside substrings and extensible filters. */
export const FilterTag = {
  and: 0xa0,
  or: 0xa1,
  not: 0xa2,
  equalityMatch: 0xa3,
  substrings: 0xa4,
  greaterOrEqual: 0xa5,
  lessOrEqual: 0xa6,
  /** Primitive: its content is the attribute description. */
  present: 0x87,
  approxMatch: 0xa8,
  extensibleMatch: 0xa9,
  substringInitial: 0x80,
  substringAny: 0x81,
  substringFinal: 0x82,
  extensibleRule: 0x81,
  extensibleType: 0x82,
  extensibleValue: 0x83,
  extensibleDnAttributes: 0x84,
} as const;

/** Result codes (RFC 4511 §4.1.9 and Appendix A) the server may send. */
export const ResultCode = {
  success: 0,
  operationsError: 1,
  protocolError: 2,
  timeLimitExceeded: 3,
  sizeLimitExceeded: 4,
  authMethodNotSupported: 7,
  strongerAuthRequired: 8,
  adminLimitExceeded: 11,
  unavailableCriticalExtension: 12,
  confidentialityRequired: 13,
  noSuchObject: 32,
  invalidDNSyntax: 34,
  inappropriateAuthentication: 48,
  invalidCredentials: 49,
  insufficientAccessRights: 50,
  busy: 51,
  unavailable: 52,
  unwillingToPerform: 53,
  other: 80,
} as const;

/** One of {@linkcode ResultCode}'s values. */
export type ResultCode = typeof ResultCode[keyof typeof ResultCode];

/** The StartTLS extended operation (RFC 4511 §4.14). */
export const START_TLS_OID = "1.3.6.1.4.1.1466.20037";
/** The Notice of Disconnection's responseName (RFC 4511 §4.4.1). */
export const NOTICE_OF_DISCONNECTION_OID = "1.3.6.1.4.1.1466.20036";
/** The Simple Paged Results control (RFC 2696). */
export const PAGED_RESULTS_OID = "1.2.840.113556.1.4.319";

/**
 * Bytes that break LDAP. The message names at most a tag or a number, never
 * text the client sent, so it may be logged and sent back as a diagnostic.
 * It is a {@linkcode MalformedInput}, which a session answers by ending the
 * connection.
 */
export class LdapProtocolError extends MalformedInput {
  override name = "LdapProtocolError";
  /** The messageID of the request that broke the protocol, when it could be read. */
  readonly messageId: number | undefined;
  /** Its protocol operation's tag (one of {@linkcode LdapTag}), when it could be read. */
  readonly requestTag: number | undefined;

  /** Creates the error with a one-sentence message and what is known of the request. */
  constructor(message: string, messageId?: number, requestTag?: number) {
    super(message);
    this.messageId = messageId;
    this.requestTag = requestTag;
  }
}

/** A request control (RFC 4511 §4.1.11). */
export interface LdapControl {
  /** The control's OID. */
  type: string;
  /** Whether the server must refuse the operation when it does not support the control. */
  critical: boolean;
  /** The control's value, a copy of its own. */
  value?: Uint8Array;
}

/** How a BindRequest authenticates. */
export type LdapAuthentication =
  | { kind: "simple"; password: Uint8Array }
  | { kind: "sasl"; mechanism: string };

/** A SearchRequest's fields (RFC 4511 §4.5.1). */
export interface LdapSearch {
  kind: "search";
  baseObject: string;
  /** baseObject (0), singleLevel (1) or wholeSubtree (2). */
  scope: 0 | 1 | 2;
  /** neverDerefAliases (0) to derefAlways (3). */
  derefAliases: 0 | 1 | 2 | 3;
  /** The most entries to return; 0 for no limit asked. */
  sizeLimit: number;
  /** The most seconds to spend; 0 for no limit asked. */
  timeLimit: number;
  typesOnly: boolean;
  filter: LdapFilter;
  /** As sent: may hold `*`, `+` and `1.1`. */
  attributes: string[];
}

/** The write operations, recognised by tag and refused by the server. */
export type LdapWriteKind = "add" | "modify" | "delete" | "modDN" | "compare";

/** A request's protocol operation. */
export type LdapOperation =
  | { kind: "bind"; version: number; name: string; authentication: LdapAuthentication }
  | { kind: "unbind" }
  | LdapSearch
  | { kind: "abandon"; messageId: number }
  | { kind: "extended"; requestName: string; requestValue?: Uint8Array }
  | { kind: LdapWriteKind };

/** A decoded LDAPMessage from a client. */
export interface LdapRequest {
  messageId: number;
  op: LdapOperation;
  controls: LdapControl[];
}

/** The response tag that answers each write operation. */
export const WRITE_RESPONSE_TAGS: Readonly<Record<LdapWriteKind, number>> = {
  add: LdapTag.addResponse,
  modify: LdapTag.modifyResponse,
  delete: LdapTag.delResponse,
  modDN: LdapTag.modDNResponse,
  compare: LdapTag.compareResponse,
};

/** The write operations by request tag. */
const WRITE_KINDS: ReadonlyMap<number, LdapWriteKind> = new Map([
  [LdapTag.addRequest, "add"],
  [LdapTag.modifyRequest, "modify"],
  [LdapTag.delRequest, "delete"],
  [LdapTag.modDNRequest, "modDN"],
  [LdapTag.compareRequest, "compare"],
]);

/** Each request tag's response tag; unbind and abandon have none. */
const RESPONSE_TAGS: ReadonlyMap<number, number> = new Map([
  [LdapTag.bindRequest, LdapTag.bindResponse],
  [LdapTag.searchRequest, LdapTag.searchResultDone],
  [LdapTag.extendedRequest, LdapTag.extendedResponse],
  [LdapTag.addRequest, LdapTag.addResponse],
  [LdapTag.modifyRequest, LdapTag.modifyResponse],
  [LdapTag.delRequest, LdapTag.delResponse],
  [LdapTag.modDNRequest, LdapTag.modDNResponse],
  [LdapTag.compareRequest, LdapTag.compareResponse],
]);

/**
 * The tag of the response that ends the request with `requestTag` (for
 * answering a malformed one with protocolError), or `undefined` for
 * Unbind, Abandon and tags that are no request.
 */
export function responseTagFor(requestTag: number): number | undefined {
  return RESPONSE_TAGS.get(requestTag);
}

/**
 * Whether `text` came from bytes that were not UTF-8 (it holds a lone
 * surrogate): such a filter value must match nothing, not even by order.
 */
export function isUndecodable(text: string): boolean {
  return !text.isWellFormed();
}

const EMPTY = new Uint8Array(0);
/** A carry buffer larger than this is dropped once its message is decoded, so idle connections stay small. */
const KEEP_CARRY_BYTES = 4096;
/** The least a carry buffer is allocated with. */
const FIRST_CARRY_BYTES = 64;

/**
 * The size of the LDAPMessage at `start` (header and content), or -1 when
 * its header is not complete before `end`. Throws as soon as the bytes
 * there show a bad tag or length, before the content is awaited.
 */
function messageSize(bytes: Uint8Array, start: number, end: number): number {
  const tag = bytes[start];
  if (tag !== BerTag.sequence) {
    throw new LdapProtocolError(
      `An LDAPMessage must start with tag ${hexTag(BerTag.sequence)}, not ${hexTag(tag)}.`,
    );
  }
  if (end - start < 2) return -1;
  let size: number;
  try {
    size = lengthFieldSize(bytes[start + 1]);
  } catch (error) {
    throw asProtocolError(error);
  }
  if (end - start < 1 + size) return -1;
  const length = lengthValue(bytes, start + 1, size);
  if (length > MAX_MESSAGE_BYTES) {
    throw new LdapProtocolError(
      `An LDAPMessage of ${length} bytes is over the limit of ${MAX_MESSAGE_BYTES}.`,
    );
  }
  return 1 + size + length;
}

/** A BerError as an LdapProtocolError with what is known of the request; anything else as it is. */
function asProtocolError(error: unknown, messageId?: number, requestTag?: number): unknown {
  return error instanceof BerError
    ? new LdapProtocolError(error.message, messageId, requestTag)
    : error;
}

/**
 * An incremental decoder of the LDAPMessages a client sends. Push bytes as
 * they arrive, split anywhere or many messages at once, then call
 * {@linkcode take} until it returns `null`.
 *
 * A whole message in a pushed chunk is decoded in place; only a message
 * split across chunks is copied, into a buffer that grows with the bytes
 * that arrived (never past the message's size, itself at most
 * {@linkcode MAX_MESSAGE_BYTES} plus its header). Decoded requests own
 * their bytes and strings: they stay valid after the chunk is reused.
 *
 * ```ts
 * import { LdapDecoder } from "./ldap_codec.ts";
 *
 * const decoder = new LdapDecoder();
 * const abandon = Uint8Array.of(0x30, 0x06, 0x02, 0x01, 0x03, 0x50, 0x01, 0x02);
 * for (const byte of abandon) {
 *   decoder.push(Uint8Array.of(byte), 1);
 *   decoder.take(); // null until the last byte, then the AbandonRequest
 * }
 * ```
 */
export class LdapDecoder {
  /** The chunk being decoded in place, how far into it we are, and where it ends. */
  #chunk: Uint8Array = EMPTY;
  #offset = 0;
  #end = 0;
  /** A message split across chunks is assembled here; `#carryLength` bytes are filled. */
  #carry: Uint8Array = EMPTY;
  #carryLength = 0;
  /** The size of the message in `#carry` once its header is complete; else -1. */
  #carryNeed = -1;
  readonly #reader = new BerReader();
  /** What is known of the message being decoded, for the error that may end it. */
  #messageId: number | undefined = undefined;
  #requestTag: number | undefined = undefined;
  #filterNodes = 0;

  /** Bytes received and not yet returned as part of a request. */
  get buffered(): number {
    return this.#carryLength + this.#end - this.#offset;
  }

  /** Whether bytes of a request have arrived that {@linkcode take} has not returned. */
  get midMessage(): boolean {
    return this.buffered > 0;
  }

  /** The bytes held for a split message: its allocation, which never exceeds one message's size. */
  get heldBytes(): number {
    return this.#carry.length;
  }

  /**
   * Adds received bytes: `bytes`, or its first `length`. They are read in
   * place, so the caller must not change them until {@linkcode take} has
   * returned `null` or {@linkcode detach} was called.
   */
  push(bytes: Uint8Array, length: number = bytes.length): void {
    if (this.#offset < this.#end) {
      // Messages the caller did not take yet: keep them, ahead of the new bytes.
      const rest = this.#chunk.subarray(this.#offset, this.#end);
      const joined = new Uint8Array(rest.length + length);
      joined.set(rest);
      joined.set(bytes.subarray(0, length), rest.length);
      bytes = joined;
      length = joined.length;
    }
    this.#chunk = bytes;
    this.#offset = 0;
    this.#end = length;
  }

  /**
   * Decodes the next complete message, or returns `null` when more bytes
   * are needed. A malformed message is consumed whole when its length
   * could be read, so decoding may go on after the error.
   *
   * @throws {LdapProtocolError} when the next message breaks the protocol or a limit.
   */
  take(): LdapRequest | null {
    if (this.#carryLength > 0) {
      if (!this.#fillCarry()) return null;
      const carry = this.#carry;
      const size = this.#carryNeed;
      this.#carryLength = 0;
      this.#carryNeed = -1;
      if (carry.length > KEEP_CARRY_BYTES) this.#carry = EMPTY;
      return this.#decode(carry, 0, size);
    }
    const start = this.#offset;
    if (start === this.#end) return null;
    const size = messageSize(this.#chunk, start, this.#end);
    if (size >= 0 && size <= this.#end - start) {
      this.#offset = start + size;
      return this.#decode(this.#chunk, start, size);
    }
    // An incomplete message at the end of the chunk: carry it over.
    this.#carryNeed = size;
    this.#stash(this.#chunk.subarray(start, this.#end));
    this.#offset = this.#end;
    return null;
  }

  /**
   * Copies the bytes not yet decoded out of the pushed chunk, so the caller
   * may reuse its buffer while requests are still waiting to be taken.
   */
  detach(): void {
    this.#chunk = this.#offset < this.#end ? this.#chunk.slice(this.#offset, this.#end) : EMPTY;
    this.#offset = 0;
    this.#end = this.#chunk.length;
  }

  /** Forgets everything buffered, for reuse after an error. */
  reset(): void {
    this.#chunk = EMPTY;
    this.#offset = 0;
    this.#end = 0;
    this.#carry = EMPTY;
    this.#carryLength = 0;
    this.#carryNeed = -1;
  }

  /** Appends bytes to the carried message, growing its buffer no further than the message. */
  #stash(bytes: Uint8Array): void {
    const needed = this.#carryLength + bytes.length;
    if (needed > this.#carry.length) {
      const most = this.#carryNeed >= 0 ? this.#carryNeed : MAX_HEADER_BYTES;
      // Doubling, so a slow sender costs copies in proportion; capped, so a false length costs nothing.
      const size = Math.min(most, Math.max(needed, this.#carry.length * 2, FIRST_CARRY_BYTES));
      const grown = new Uint8Array(Math.max(size, needed));
      grown.set(this.#carry.subarray(0, this.#carryLength));
      this.#carry = grown;
    }
    this.#carry.set(bytes, this.#carryLength);
    this.#carryLength = needed;
  }

  /**
   * Moves bytes from the current chunk into the carried message until it is
   * complete; returns whether it is. Throws as soon as its header is bad.
   */
  #fillCarry(): boolean {
    // Its header, octet by octet: taking more could take bytes of the next message.
    while (this.#carryNeed < 0) {
      const size = messageSize(this.#carry, 0, this.#carryLength);
      if (size >= 0) {
        this.#carryNeed = size;
        break;
      }
      if (this.#offset === this.#end) return false;
      this.#moveFromChunk(1);
    }
    this.#moveFromChunk(this.#carryNeed - this.#carryLength);
    return this.#carryLength === this.#carryNeed;
  }

  /** Moves up to `count` bytes from the current chunk to the carry buffer. */
  #moveFromChunk(count: number): void {
    const end = Math.min(this.#offset + count, this.#end);
    this.#stash(this.#chunk.subarray(this.#offset, end));
    this.#offset = end;
  }

  /** Decodes the whole message of `size` bytes at `start`. */
  #decode(bytes: Uint8Array, start: number, size: number): LdapRequest {
    this.#messageId = undefined;
    this.#requestTag = undefined;
    this.#filterNodes = 0;
    const reader = this.#reader;
    reader.reset(bytes, start, start + size);
    try {
      return this.#decodeMessage(reader);
    } catch (error) {
      throw asProtocolError(error, this.#messageId, this.#requestTag);
    } finally {
      // The reader must not keep a caller's buffer alive.
      reader.reset(EMPTY, 0, 0);
    }
  }

  #decodeMessage(reader: BerReader): LdapRequest {
    const outer = reader.enter(BerTag.sequence);
    const messageId = reader.readInteger();
    if (messageId < 1) {
      throw new BerError(`A request's messageID must be 1 to ${MAX_MESSAGE_ID}, not ${messageId}.`);
    }
    this.#messageId = messageId;
    this.#requestTag = reader.peekTag();
    const op = this.#decodeOperation(reader);
    const controls = !reader.atEnd && reader.peekTag() === LdapContextTag.controls
      ? decodeControls(reader)
      : [];
    reader.leave(outer);
    return { messageId, op, controls };
  }

  #decodeOperation(reader: BerReader): LdapOperation {
    const tag = reader.peekTag();
    switch (tag) {
      case LdapTag.bindRequest:
        return decodeBind(reader);
      case LdapTag.unbindRequest:
        reader.skip();
        return { kind: "unbind" };
      case LdapTag.searchRequest:
        return this.#decodeSearch(reader);
      case LdapTag.abandonRequest:
        return { kind: "abandon", messageId: readMessageId(reader, LdapTag.abandonRequest) };
      case LdapTag.extendedRequest:
        return decodeExtended(reader);
    }
    const write = WRITE_KINDS.get(tag);
    if (write === undefined) {
      throw new BerError(
        `Protocol operation tag ${hexTag(tag)} is not a request this server takes.`,
      );
    }
    reader.skip();
    return { kind: write };
  }

  #decodeSearch(reader: BerReader): LdapSearch {
    const outer = reader.enter(LdapTag.searchRequest);
    const baseObject = reader.readString();
    const scope = readEnumeratedUpTo(reader, 2, "scope") as 0 | 1 | 2;
    const derefAliases = readEnumeratedUpTo(reader, 3, "derefAliases") as 0 | 1 | 2 | 3;
    const sizeLimit = readLimit(reader, "sizeLimit");
    const timeLimit = readLimit(reader, "timeLimit");
    const typesOnly = reader.readBoolean();
    const filter = this.#decodeFilter(reader, 1);
    const attributes = readAttributeList(reader);
    reader.leave(outer);
    return {
      kind: "search",
      baseObject,
      scope,
      derefAliases,
      sizeLimit,
      timeLimit,
      typesOnly,
      filter,
      attributes,
    };
  }

  /** Counts `count` more filter nodes, refusing the search past the cap. */
  #countNodes(count: number): void {
    this.#filterNodes += count;
    if (this.#filterNodes > MAX_FILTER_NODES) {
      throw new BerError(
        `A search filter of more than ${MAX_FILTER_NODES} nodes is over the limit.`,
      );
    }
  }

  /** Decodes the filter at the reader, `depth` levels deep (the top is 1). */
  #decodeFilter(reader: BerReader, depth: number): LdapFilter {
    this.#countNodes(1);
    const tag = reader.peekTag();
    switch (tag) {
      case FilterTag.and:
      case FilterTag.or:
        return this.#decodeSet(reader, tag, depth);
      case FilterTag.not: {
        const outer = this.#enterNested(reader, tag, depth);
        const filter = this.#decodeFilter(reader, depth + 1);
        if (!reader.atEnd) throw new BerError("A not filter holds more than one filter.");
        reader.leave(outer);
        return { kind: "not", filter };
      }
      case FilterTag.equalityMatch:
        return decodeAssertion(reader, tag, "equality");
      case FilterTag.greaterOrEqual:
        return decodeAssertion(reader, tag, "greaterOrEqual");
      case FilterTag.lessOrEqual:
        return decodeAssertion(reader, tag, "lessOrEqual");
      case FilterTag.approxMatch:
        return decodeAssertion(reader, tag, "approx");
      case FilterTag.present:
        return { kind: "present", attribute: reader.readString(FilterTag.present) };
      case FilterTag.substrings:
        return this.#decodeSubstrings(reader);
      case FilterTag.extensibleMatch:
        return decodeExtensible(reader);
    }
    // A filter choice from a later extension: Undefined (RFC 4511 §4.5.1.7), as slapd does, not an error.
    reader.skip();
    return unknownFilter();
  }

  /** Enters an and, or or not filter, refusing one that would nest past the cap. */
  #enterNested(reader: BerReader, tag: number, depth: number): number {
    if (depth > MAX_FILTER_DEPTH) {
      throw new BerError(
        `A search filter nested more than ${MAX_FILTER_DEPTH} deep is over the limit.`,
      );
    }
    return reader.enter(tag);
  }

  #decodeSet(reader: BerReader, tag: number, depth: number): LdapFilter {
    const outer = this.#enterNested(reader, tag, depth);
    const filters: LdapFilter[] = [];
    // Empty sets are RFC 4526's absolute true (&) and false (|).
    while (!reader.atEnd) filters.push(this.#decodeFilter(reader, depth + 1));
    reader.leave(outer);
    return { kind: tag === FilterTag.and ? "and" : "or", filters };
  }

  #decodeSubstrings(reader: BerReader): LdapFilter {
    const outer = reader.enter(FilterTag.substrings);
    const attribute = reader.readString();
    const piecesOuter = reader.enter(BerTag.sequence);
    let initial: string | undefined;
    let final: string | undefined;
    const any: string[] = [];
    let pieces = 0;
    while (!reader.atEnd) {
      const tag = reader.peekTag();
      if (final !== undefined) {
        throw new BerError("A substrings filter has a piece after its final.");
      }
      if (tag === FilterTag.substringInitial && pieces === 0) initial = reader.readString(tag);
      else if (tag === FilterTag.substringAny) any.push(reader.readString(tag));
      else if (tag === FilterTag.substringFinal) final = reader.readString(tag);
      else {
        throw new BerError(
          `A substrings filter piece with tag ${hexTag(tag)} is misplaced or unknown.`,
        );
      }
      pieces++;
      this.#countNodes(1);
    }
    if (pieces === 0) throw new BerError("A substrings filter has no piece.");
    reader.leave(piecesOuter);
    reader.leave(outer);
    const filter: LdapFilter = { kind: "substrings", attribute, any };
    if (initial !== undefined) filter.initial = initial;
    if (final !== undefined) filter.final = final;
    return filter;
  }
}

/**
 * What a filter of an unknown choice decodes to: an extensible match with
 * neither a rule nor a type, which can only be Undefined.
 */
function unknownFilter(): LdapFilter {
  return { kind: "extensible", value: "", dnAttributes: false };
}

function readMessageId(reader: BerReader, tag: number): number {
  const id = reader.readInteger(tag);
  if (id < 0) throw new BerError(`A messageID must be 0 to ${MAX_MESSAGE_ID}, not ${id}.`);
  return id;
}

function readEnumeratedUpTo(reader: BerReader, most: number, what: string): number {
  const value = reader.readEnumerated();
  if (value < 0 || value > most) {
    throw new BerError(`A search's ${what} must be 0 to ${most}, not ${value}.`);
  }
  return value;
}

function readLimit(reader: BerReader, what: string): number {
  const value = reader.readInteger();
  if (value < 0) throw new BerError(`A search's ${what} must not be negative, not ${value}.`);
  return value;
}

function readAttributeList(reader: BerReader): string[] {
  const outer = reader.enter(BerTag.sequence);
  const attributes: string[] = [];
  while (!reader.atEnd) {
    if (attributes.length === MAX_REQUESTED_ATTRIBUTES) {
      throw new BerError(
        `A search naming more than ${MAX_REQUESTED_ATTRIBUTES} attributes is over the limit.`,
      );
    }
    attributes.push(reader.readString());
  }
  reader.leave(outer);
  return attributes;
}

function decodeBind(reader: BerReader): LdapOperation {
  const outer = reader.enter(LdapTag.bindRequest);
  const version = reader.readInteger();
  if (version < 1 || version > MAX_VERSION) {
    throw new BerError(`A bind's version must be 1 to ${MAX_VERSION}, not ${version}.`);
  }
  const name = reader.readString();
  const tag = reader.peekTag();
  let authentication: LdapAuthentication;
  if (tag === LdapContextTag.authSimple) {
    authentication = { kind: "simple", password: reader.readBytes(tag) };
  } else if (tag === LdapContextTag.authSasl) {
    const sasl = reader.enter(tag);
    authentication = { kind: "sasl", mechanism: reader.readString() };
    reader.leave(sasl);
  } else {
    throw new BerError(
      `Bind authentication tag ${hexTag(tag)} is neither simple (0x80) nor SASL (0xa3).`,
    );
  }
  reader.leave(outer);
  return { kind: "bind", version, name, authentication };
}

function decodeExtended(reader: BerReader): LdapOperation {
  const outer = reader.enter(LdapTag.extendedRequest);
  const requestName = reader.readString(LdapContextTag.requestName);
  const op: LdapOperation = { kind: "extended", requestName };
  if (!reader.atEnd && reader.peekTag() === LdapContextTag.requestValue) {
    op.requestValue = reader.readBytes(LdapContextTag.requestValue);
  }
  reader.leave(outer);
  return op;
}

function decodeControls(reader: BerReader): LdapControl[] {
  const outer = reader.enter(LdapContextTag.controls);
  const controls: LdapControl[] = [];
  while (!reader.atEnd) {
    const control = reader.enter(BerTag.sequence);
    const type = reader.readString();
    let critical = false;
    if (!reader.atEnd && reader.peekTag() === BerTag.boolean) critical = reader.readBoolean();
    const decoded: LdapControl = { type, critical };
    if (!reader.atEnd && reader.peekTag() === BerTag.octetString) {
      decoded.value = reader.readBytes();
    }
    reader.leave(control);
    controls.push(decoded);
  }
  reader.leave(outer);
  return controls;
}

function decodeAssertion(
  reader: BerReader,
  tag: number,
  kind: "equality" | "greaterOrEqual" | "lessOrEqual" | "approx",
): LdapFilter {
  const outer = reader.enter(tag);
  const attribute = reader.readString();
  const value = reader.readString();
  reader.leave(outer);
  return { kind, attribute, value };
}

function decodeExtensible(reader: BerReader): LdapFilter {
  const outer = reader.enter(FilterTag.extensibleMatch);
  let matchingRule: string | undefined;
  let attribute: string | undefined;
  if (!reader.atEnd && reader.peekTag() === FilterTag.extensibleRule) {
    matchingRule = reader.readString(FilterTag.extensibleRule);
  }
  if (!reader.atEnd && reader.peekTag() === FilterTag.extensibleType) {
    attribute = reader.readString(FilterTag.extensibleType);
  }
  const value = reader.readString(FilterTag.extensibleValue);
  const dnAttributes = !reader.atEnd && reader.peekTag() === FilterTag.extensibleDnAttributes
    ? reader.readBoolean(FilterTag.extensibleDnAttributes)
    : false;
  reader.leave(outer);
  const filter: LdapFilter = { kind: "extensible", value, dnAttributes };
  if (matchingRule !== undefined) filter.matchingRule = matchingRule;
  if (attribute !== undefined) filter.attribute = attribute;
  return filter;
}

/** The Simple Paged Results control's value (RFC 2696). */
export interface PagedResults {
  /** The page size asked for (request) or the estimated total (response; 0 when unknown). */
  size: number;
  /** The server's opaque cookie; empty on a first request and on the last page. */
  cookie: Uint8Array;
}

/**
 * Decodes a paged results control's value:
 * `SEQUENCE { size INTEGER (0..maxInt), cookie OCTET STRING }`.
 *
 * @throws {LdapProtocolError} when the value is not that.
 */
export function decodePagedResults(value: Uint8Array): PagedResults {
  const reader = new BerReader(value);
  try {
    const outer = reader.enter(BerTag.sequence);
    const size = reader.readInteger();
    if (size < 0) throw new BerError(`A paged results size must not be negative, not ${size}.`);
    const cookie = reader.readBytes();
    reader.leave(outer);
    if (!reader.atEnd) throw new BerError("A paged results value has bytes after its sequence.");
    return { size, cookie };
  } catch (error) {
    throw asProtocolError(error);
  }
}

/** Encodes a paged results control's value (see {@linkcode decodePagedResults}). */
export function encodePagedResults(size: number, cookie: Uint8Array): Uint8Array {
  const out = new ReplyBuffer();
  const sequence = beginConstructed(out, BerTag.sequence);
  writeInteger(out, BerTag.integer, size);
  writeOctetString(out, BerTag.octetString, cookie);
  endConstructed(out, sequence);
  return out.bytes.slice(0, out.length);
}

/**
 * The paged results control for a SearchResultDone: `size` is the
 * server's estimate of the total (0 when it does not know), `cookie` is
 * empty on the last page.
 */
export function pagedResultsControl(size: number, cookie: Uint8Array): LdapControl {
  return { type: PAGED_RESULTS_OID, critical: false, value: encodePagedResults(size, cookie) };
}

/** One attribute of an entry to send: its values, none for typesOnly. */
export interface EntryAttribute {
  type: string;
  values: readonly (string | Uint8Array)[];
}

/** Starts an LDAPMessage with `messageId`; returns what {@linkcode endConstructed} needs. */
export function beginMessage(out: ReplyBuffer, messageId: number): number {
  const message = beginConstructed(out, BerTag.sequence);
  writeInteger(out, BerTag.integer, messageId);
  return message;
}

/** Appends the LDAPResult fields that begin every result (RFC 4511 §4.1.9). */
function writeResultFields(
  out: ReplyBuffer,
  resultCode: number,
  matchedDN: string,
  diagnostic: string,
): void {
  writeInteger(out, BerTag.enumerated, resultCode);
  writeString(out, BerTag.octetString, matchedDN);
  writeString(out, BerTag.octetString, diagnostic);
}

/** Appends a message's `controls [0]`, when there are any. */
function writeControls(out: ReplyBuffer, controls: readonly LdapControl[] | undefined): void {
  if (controls === undefined || controls.length === 0) return;
  const list = beginConstructed(out, LdapContextTag.controls);
  for (let i = 0; i < controls.length; i++) {
    const control = controls[i];
    const sequence = beginConstructed(out, BerTag.sequence);
    writeString(out, BerTag.octetString, control.type);
    // criticality is DEFAULT FALSE: sent only when true.
    if (control.critical) writeBoolean(out, BerTag.boolean, true);
    if (control.value !== undefined) writeOctetString(out, BerTag.octetString, control.value);
    endConstructed(out, sequence);
  }
  endConstructed(out, list);
}

/**
 * Appends a SearchResultEntry: the entry's DN and its attributes, each
 * with its values (text in UTF-8, bytes as they are); an attribute with no
 * values is sent as a type alone, as typesOnly asks.
 */
export function writeSearchResultEntry(
  out: ReplyBuffer,
  messageId: number,
  dn: string,
  attributes: readonly EntryAttribute[],
): void {
  const message = beginMessage(out, messageId);
  const entry = beginConstructed(out, LdapTag.searchResultEntry);
  writeString(out, BerTag.octetString, dn);
  const list = beginConstructed(out, BerTag.sequence);
  for (let i = 0; i < attributes.length; i++) {
    const attribute = attributes[i];
    const partial = beginConstructed(out, BerTag.sequence);
    writeString(out, BerTag.octetString, attribute.type);
    const set = beginConstructed(out, BerTag.set);
    const values = attribute.values;
    for (let k = 0; k < values.length; k++) {
      const value = values[k];
      if (typeof value === "string") writeString(out, BerTag.octetString, value);
      else writeOctetString(out, BerTag.octetString, value);
    }
    endConstructed(out, set);
    endConstructed(out, partial);
  }
  endConstructed(out, list);
  endConstructed(out, entry);
  endConstructed(out, message);
}

/**
 * Appends a response that is an LDAPResult and nothing more, with its
 * protocol operation tag: SearchResultDone (0x65) or the refusal of a
 * write (AddResponse 0x69, ModifyResponse 0x67, DelResponse 0x6b,
 * ModDNResponse 0x6d, CompareResponse 0x6f).
 */
export function writeResult(
  out: ReplyBuffer,
  protocolOpTag: number,
  messageId: number,
  resultCode: number,
  matchedDN: string,
  diagnostic: string,
): void {
  const message = beginMessage(out, messageId);
  const result = beginConstructed(out, protocolOpTag);
  writeResultFields(out, resultCode, matchedDN, diagnostic);
  endConstructed(out, result);
  endConstructed(out, message);
}

/** Appends a SearchResultDone, with response controls (such as paged results) when given. */
export function writeSearchResultDone(
  out: ReplyBuffer,
  messageId: number,
  resultCode: number,
  matchedDN: string,
  diagnosticMessage: string,
  controls?: readonly LdapControl[],
): void {
  const message = beginMessage(out, messageId);
  const result = beginConstructed(out, LdapTag.searchResultDone);
  writeResultFields(out, resultCode, matchedDN, diagnosticMessage);
  endConstructed(out, result);
  writeControls(out, controls);
  endConstructed(out, message);
}

/** Appends a BindResponse, with the server's SASL credentials when given. */
export function writeBindResponse(
  out: ReplyBuffer,
  messageId: number,
  resultCode: number,
  matchedDN: string,
  diagnostic: string,
  serverSaslCreds?: Uint8Array,
): void {
  const message = beginMessage(out, messageId);
  const result = beginConstructed(out, LdapTag.bindResponse);
  writeResultFields(out, resultCode, matchedDN, diagnostic);
  if (serverSaslCreds !== undefined) {
    writeOctetString(out, LdapContextTag.serverSaslCreds, serverSaslCreds);
  }
  endConstructed(out, result);
  endConstructed(out, message);
}

/** Appends an ExtendedResponse (matchedDN empty), with its responseName and value when given. */
export function writeExtendedResponse(
  out: ReplyBuffer,
  messageId: number,
  resultCode: number,
  diagnostic: string,
  responseName?: string,
  responseValue?: Uint8Array,
): void {
  const message = beginMessage(out, messageId);
  const result = beginConstructed(out, LdapTag.extendedResponse);
  writeResultFields(out, resultCode, "", diagnostic);
  if (responseName !== undefined) writeString(out, LdapContextTag.responseName, responseName);
  if (responseValue !== undefined) {
    writeOctetString(out, LdapContextTag.responseValue, responseValue);
  }
  endConstructed(out, result);
  endConstructed(out, message);
}

/**
 * Appends a Notice of Disconnection (RFC 4511 §4.4.1): an unsolicited
 * ExtendedResponse, messageID 0, saying why the server ends the
 * connection (protocolError, unavailable, strongerAuthRequired).
 */
export function writeNoticeOfDisconnection(
  out: ReplyBuffer,
  resultCode: number,
  diagnostic: string,
): void {
  writeExtendedResponse(out, 0, resultCode, diagnostic, NOTICE_OF_DISCONNECTION_OID);
}
