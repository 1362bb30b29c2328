/**
 * The addrbook wire protocol: one pure, byte-level codec shared by the server
 * and the client. Nothing here touches a socket.
 *
 * Every message is a frame: a type byte, a 4-byte big-endian payload length,
 * then the payload. See PROTOCOL.md for the full description.
 *
 * ```ts
 * import { encodeQuery, FrameDecoder, TYPE_QUERY } from "./protocol.ts";
 *
 * const decoder = new FrameDecoder({ type: TYPE_QUERY, maxPayload: 1024 });
 * decoder.push(encodeQuery("ada@example.com"));
 * const payload = decoder.next(); // the email's UTF-8 bytes
 * ```
 *
 * @module
 */

import { decodeUtf8 } from "./common/utf8.ts";

// Defined in common/utf8.ts, which the book uses too; exported here for the codec's users.
export { decodeUtf8 };

/** Type byte of a query frame, client to server: ASCII `Q`. */
export const TYPE_QUERY = 0x51;
/** Type byte of a reply frame, server to client: ASCII `R`. */
export const TYPE_REPLY = 0x52;

/** Bytes before the payload: the type byte and the 4-byte length. */
export const HEADER_SIZE = 5;
/** The longest query payload a server accepts, in bytes. */
export const MAX_QUERY_BYTES = 1024;
/** The longest reply payload a client accepts by default, in bytes. */
export const MAX_REPLY_BYTES = 1 << 20;

/** Reply status: the text is the owner's name. */
export const STATUS_FOUND = 0;
/** Reply status: the address is not in the book; the text says so. */
export const STATUS_NOT_FOUND = 1;
/** Reply status: the query is not an email address; the connection stays open. */
export const STATUS_BAD_REQUEST = 2;
/** Reply status: the frame broke the protocol; the server closes the connection. */
export const STATUS_PROTOCOL_ERROR = 3;
/** Reply status: the server is at its connection limit and closes the connection. */
export const STATUS_SERVER_BUSY = 4;
/** Reply status: this client may not query; the text says why, and the server closes. */
export const STATUS_FORBIDDEN = 5;
/** Reply status: the client is over a limit, so the query was not looked up; try later. */
export const STATUS_RATE_LIMITED = 6;

/** A reply status code, as carried in the first payload byte of an `R` frame. */
export type Status =
  | typeof STATUS_FOUND
  | typeof STATUS_NOT_FOUND
  | typeof STATUS_BAD_REQUEST
  | typeof STATUS_PROTOCOL_ERROR
  | typeof STATUS_SERVER_BUSY
  | typeof STATUS_FORBIDDEN
  | typeof STATUS_RATE_LIMITED;

/** Names of the statuses, indexed by code, for messages, logs and metrics. */
export const STATUS_NAMES: readonly string[] = [
  "FOUND",
  "NOT_FOUND",
  "BAD_REQUEST",
  "PROTOCOL_ERROR",
  "SERVER_BUSY",
  "FORBIDDEN",
  "RATE_LIMITED",
];

const encoder = new TextEncoder();
const EMPTY = new Uint8Array(0);

/** Why a byte stream broke the protocol. */
export type ProtocolErrorKind = "unexpected-type" | "too-long" | "malformed-reply";

/**
 * A frame that breaks the protocol. `kind` says how; the message says with
 * which value, for example `frame type 0x47 ("G") is not "Q"`.
 */
export class ProtocolError extends Error {
  /** How the frame broke the protocol. */
  readonly kind: ProtocolErrorKind;

  /** Creates the error with its kind and a one-sentence message. */
  constructor(kind: ProtocolErrorKind, message: string) {
    super(message);
    this.name = "ProtocolError";
    this.kind = kind;
  }
}

/** Writes a frame header (type and big-endian length) into `target` at `offset`. */
export function writeHeader(
  target: Uint8Array,
  offset: number,
  type: number,
  length: number,
): void {
  target[offset] = type;
  target[offset + 1] = length >>> 24;
  target[offset + 2] = (length >>> 16) & 0xff;
  target[offset + 3] = (length >>> 8) & 0xff;
  target[offset + 4] = length & 0xff;
}

/**
 * Encodes a query frame for `email`, sent as given (the server trims it).
 *
 * @throws {RangeError} when the email is longer than {@linkcode MAX_QUERY_BYTES} in UTF-8.
 */
export function encodeQuery(email: string): Uint8Array {
  const body = encoder.encode(email);
  if (body.length > MAX_QUERY_BYTES) {
    throw new RangeError(
      `Query is ${body.length} bytes long, over the limit of ${MAX_QUERY_BYTES}.`,
    );
  }
  const frame = new Uint8Array(HEADER_SIZE + body.length);
  writeHeader(frame, 0, TYPE_QUERY, body.length);
  frame.set(body, HEADER_SIZE);
  return frame;
}

/** The longest query frame, header included: what {@linkcode encodeQueryInto} needs room for. */
export const MAX_QUERY_FRAME_BYTES: number = HEADER_SIZE + MAX_QUERY_BYTES;

/**
 * Writes the query frame for `email` into `target` at `offset`, and returns
 * the frame's length; or returns -1, writing nothing that counts, when the
 * email is over {@linkcode MAX_QUERY_BYTES}. `target` must have
 * {@linkcode MAX_QUERY_FRAME_BYTES} of room from `offset`. This is
 * {@linkcode encodeQuery} without a new array per query, for batches of a
 * hundred thousand queries.
 *
 * ```ts
 * import { encodeQueryInto, MAX_QUERY_FRAME_BYTES } from "./protocol.ts";
 *
 * const batch = new Uint8Array(4 * MAX_QUERY_FRAME_BYTES);
 * let length = 0;
 * for (const email of ["ada@example.com", "grace@example.com"]) {
 *   length += encodeQueryInto(email, batch, length); // both fit: neither is -1
 * }
 * ```
 */
export function encodeQueryInto(email: string, target: Uint8Array, offset: number): number {
  // UTF-8 takes at most 3 bytes per UTF-16 unit, so a short string is known to fit.
  const room = email.length * 3 > MAX_QUERY_BYTES
    ? target.subarray(offset + HEADER_SIZE, offset + MAX_QUERY_FRAME_BYTES)
    : target.subarray(offset + HEADER_SIZE);
  const { read, written } = encoder.encodeInto(email, room);
  if (read < email.length) return -1;
  writeHeader(target, offset, TYPE_QUERY, written);
  return HEADER_SIZE + written;
}

/**
 * Encodes many queries back to back, for one pipelining write.
 *
 * ```ts
 * import { encodeQueries } from "./protocol.ts";
 * encodeQueries(["ada@example.com", "nobody@example.com"]).length; // 20 + 23
 * ```
 *
 * @throws {RangeError} when an email is longer than {@linkcode MAX_QUERY_BYTES} in UTF-8.
 */
export function encodeQueries(emails: Iterable<string>): Uint8Array {
  let bytes = new Uint8Array(4 * MAX_QUERY_FRAME_BYTES);
  let length = 0;
  for (const email of emails) {
    if (bytes.length - length < MAX_QUERY_FRAME_BYTES) {
      const grown = new Uint8Array(bytes.length * 2);
      grown.set(bytes.subarray(0, length));
      bytes = grown;
    }
    const written = encodeQueryInto(email, bytes, length);
    if (written < 0) encodeQuery(email); // throws the RangeError that says how long it is
    length += written;
  }
  return bytes.slice(0, length);
}

/**
 * Encodes a reply frame: the status byte, then `text` in UTF-8.
 *
 * ```ts
 * import { encodeReply, STATUS_FOUND } from "./protocol.ts";
 * encodeReply(STATUS_FOUND, "Ada Lovelace"); // "R", 0,0,0,13, 0, "Ada Lovelace"
 * ```
 */
export function encodeReply(status: Status, text: string): Uint8Array {
  return encodeReplyBytes(status, encoder.encode(text));
}

/** Encodes a reply frame whose text is already UTF-8 bytes. */
export function encodeReplyBytes(status: Status, text: Uint8Array): Uint8Array {
  const frame = new Uint8Array(HEADER_SIZE + 1 + text.length);
  writeHeader(frame, 0, TYPE_REPLY, 1 + text.length);
  frame[HEADER_SIZE] = status;
  frame.set(text, HEADER_SIZE + 1);
  return frame;
}

/** A decoded reply: its status code and its text. */
export interface Reply {
  /** The status byte, one of the `STATUS_*` codes. */
  status: Status;
  /** The UTF-8 text after the status byte. */
  text: string;
}

/**
 * Decodes the payload of an `R` frame into its status and text.
 *
 * @throws {ProtocolError} when the payload is empty, the status unknown, or the text not UTF-8.
 */
export function decodeReply(payload: Uint8Array): Reply {
  if (payload.length === 0) {
    throw new ProtocolError("malformed-reply", "Reply has no status byte.");
  }
  const status = payload[0];
  if (status >= STATUS_NAMES.length) {
    throw new ProtocolError("malformed-reply", `Reply status ${status} is not a known status.`);
  }
  const text = decodeUtf8(payload.subarray(1));
  if (text === undefined) {
    throw new ProtocolError("malformed-reply", "Reply text is not valid UTF-8.");
  }
  return { status: status as Status, text };
}

/** Options for a {@linkcode FrameDecoder}. */
export interface FrameDecoderOptions {
  /** The one frame type this side accepts: {@linkcode TYPE_QUERY} on a server, {@linkcode TYPE_REPLY} on a client. */
  type: number;
  /** The longest payload accepted, in bytes. */
  maxPayload: number;
}

/**
 * An incremental frame decoder. Push chunks of any size as they arrive (one
 * byte, many frames, a frame split anywhere), then call {@linkcode next}
 * until it returns `null`.
 *
 * A frame of another type, or one announcing a payload over `maxPayload`,
 * throws a {@linkcode ProtocolError} as soon as its header shows it, before
 * any of the body is awaited. The decoder never holds more than one partial
 * frame, so its memory is bounded by `maxPayload`.
 *
 * Payloads are returned as views, without copying: a payload is valid until
 * the next call to `next` or `push`.
 *
 * ```ts
 * import { encodeQuery, FrameDecoder, TYPE_QUERY } from "./protocol.ts";
 *
 * const decoder = new FrameDecoder({ type: TYPE_QUERY, maxPayload: 1024 });
 * const bytes = encodeQuery("ada@example.com");
 * for (const byte of bytes) {
 *   decoder.push(Uint8Array.of(byte));
 *   const payload = decoder.next(); // null until the last byte
 * }
 * ```
 */
export class FrameDecoder {
  readonly #type: number;
  readonly #maxPayload: number;
  /** The chunk being decoded in place, how far into it we are, and where it ends. */
  #chunk: Uint8Array = EMPTY;
  #offset = 0;
  #end = 0;
  /** Where the payload of the frame last taken lies (see take). */
  #payloadBytes: Uint8Array = EMPTY;
  #payloadStart = 0;
  #payloadEnd = 0;
  /** A frame split across chunks is assembled here; `#carryLength` bytes are filled. */
  #carry: Uint8Array = EMPTY;
  #carryLength = 0;
  /** The payload length of the frame in `#carry`, once its header is complete; else -1. */
  #carryNeed = -1;

  /** Creates a decoder that accepts frames of one type, up to a payload limit. */
  constructor(options: FrameDecoderOptions) {
    if (!Number.isInteger(options.maxPayload) || options.maxPayload < 0) {
      throw new RangeError(`maxPayload must be a non-negative integer, got ${options.maxPayload}.`);
    }
    this.#type = options.type;
    this.#maxPayload = options.maxPayload;
  }

  /** Bytes received but not yet returned as part of a frame. */
  get buffered(): number {
    return this.#carryLength + this.#end - this.#offset;
  }

  /** Whether a frame has been started but not completed. */
  get midFrame(): boolean {
    return this.buffered > 0;
  }

  /**
   * Adds a chunk of received bytes: `chunk`, or its first `length` bytes. The
   * decoder reads it in place, so the caller must not change it until
   * {@linkcode next} (or {@linkcode take}) has said no frame is left.
   */
  push(chunk: Uint8Array, length: number = chunk.length): void {
    if (this.#offset < this.#end) {
      // Frames the caller did not take yet: keep them, ahead of the new bytes.
      const rest = this.#chunk.subarray(this.#offset, this.#end);
      const joined = new Uint8Array(rest.length + length);
      joined.set(rest);
      joined.set(chunk.subarray(0, length), rest.length);
      chunk = joined;
      length = joined.length;
    }
    this.#chunk = chunk;
    this.#offset = 0;
    this.#end = length;
  }

  /**
   * Returns the payload of the next complete frame, or `null` when more
   * bytes are needed.
   *
   * @throws {ProtocolError} when the next frame has the wrong type or is too long.
   */
  next(): Uint8Array | null {
    return this.take() ? this.#payloadBytes.subarray(this.#payloadStart, this.#payloadEnd) : null;
  }

  /**
   * Advances to the next complete frame, like {@linkcode next}, but without
   * making a view of its payload: it lies in {@linkcode payloadBytes} from
   * {@linkcode payloadStart} to {@linkcode payloadEnd}. This is the server's
   * hot path, where a view per query is garbage to collect.
   *
   * @returns whether a frame was complete.
   * @throws {ProtocolError} when the next frame has the wrong type or is too long.
   */
  take(): boolean {
    if (this.#carryLength > 0) {
      if (!this.#fillCarry()) return false;
      this.#setPayload(this.#carry, HEADER_SIZE, HEADER_SIZE + this.#carryNeed);
      this.#carryLength = 0;
      this.#carryNeed = -1;
      return true;
    }
    const chunk = this.#chunk;
    const start = this.#offset;
    const available = this.#end - start;
    if (available === 0) return false;
    this.#checkType(chunk[start]);
    if (available >= HEADER_SIZE) {
      const length = this.#checkLength(readLength(chunk, start));
      const end = start + HEADER_SIZE + length;
      if (end <= this.#end) {
        this.#offset = end;
        this.#setPayload(chunk, start + HEADER_SIZE, end);
        return true;
      }
    }
    // An incomplete frame at the end of the chunk: carry it over.
    this.#offset = this.#end;
    this.#stash(chunk.subarray(start, this.#end));
    return false;
  }

  /** The buffer holding the payload of the frame last taken; valid until the next take or push. */
  get payloadBytes(): Uint8Array {
    return this.#payloadBytes;
  }

  /**
   * Finds the payloads of the complete frames waiting in the pushed chunk,
   * without taking them: their ranges in {@linkcode chunkBytes} go into
   * `starts` and `ends` (as many as they hold), and the count is returned.
   * A frame split across chunks is not among them, and a bad header ends
   * the list ({@linkcode take} reports it). For a caller that wants to see
   * several queries before answering the first: the server looks them
   * all up in the book at once.
   */
  peekPayloads(starts: Int32Array, ends: Int32Array): number {
    let at = this.#offset;
    if (this.#carryLength > 0) {
      // The carried frame's rest comes first. Its length is in its header,
      // once the header is whole; the rare frame split inside it is not looked past.
      if (this.#carryLength < HEADER_SIZE) return 0;
      const need = this.#carryNeed >= 0 ? this.#carryNeed : readLength(this.#carry, 0);
      if (need > this.#maxPayload) return 0;
      at += HEADER_SIZE + need - this.#carryLength;
    }
    const chunk = this.#chunk;
    const end = this.#end;
    const max = Math.min(starts.length, ends.length);
    let count = 0;
    while (count < max && at + HEADER_SIZE <= end && chunk[at] === this.#type) {
      const length = readLength(chunk, at);
      const payloadEnd = at + HEADER_SIZE + length;
      if (length > this.#maxPayload || payloadEnd > end) break;
      starts[count] = at + HEADER_SIZE;
      ends[count] = payloadEnd;
      count++;
      at = payloadEnd;
    }
    return count;
  }

  /** The chunk last pushed, in which {@linkcode peekPayloads} gives ranges. */
  get chunkBytes(): Uint8Array {
    return this.#chunk;
  }

  /** Where that payload starts in {@linkcode payloadBytes}. */
  get payloadStart(): number {
    return this.#payloadStart;
  }

  /** Where that payload ends in {@linkcode payloadBytes}. */
  get payloadEnd(): number {
    return this.#payloadEnd;
  }

  #setPayload(bytes: Uint8Array, start: number, end: number): void {
    this.#payloadBytes = bytes;
    this.#payloadStart = start;
    this.#payloadEnd = end;
  }

  /**
   * Copies the bytes not yet decoded out of the pushed chunk, so the caller
   * may reuse that buffer while frames are still waiting to be taken (for
   * example when it stops decoding until a slow peer has read its replies).
   */
  detach(): void {
    this.#chunk = this.#offset < this.#end ? this.#chunk.slice(this.#offset, this.#end) : EMPTY;
    this.#offset = 0;
    this.#end = this.#chunk.length;
  }

  /** Forgets any partial frame, for reuse after an error. */
  reset(): void {
    this.#chunk = EMPTY;
    this.#offset = 0;
    this.#end = 0;
    this.#carryLength = 0;
    this.#carryNeed = -1;
  }

  #checkType(type: number): void {
    if (type !== this.#type) {
      throw new ProtocolError(
        "unexpected-type",
        `Frame type ${describeByte(type)} is not ${describeByte(this.#type)}.`,
      );
    }
  }

  #checkLength(length: number): number {
    if (length > this.#maxPayload) {
      throw new ProtocolError(
        "too-long",
        `Frame length ${length} is over the limit of ${this.#maxPayload} bytes.`,
      );
    }
    return length;
  }

  /** Appends bytes to the carry buffer, growing it up to one whole frame. */
  #stash(bytes: Uint8Array): void {
    const needed = this.#carryLength + bytes.length;
    if (needed > this.#carry.length) {
      // Allocated on first use: most connections never split a frame across reads.
      const grown = new Uint8Array(Math.max(needed, this.#carry.length * 2, 64));
      grown.set(this.#carry.subarray(0, this.#carryLength));
      this.#carry = grown;
    }
    this.#carry.set(bytes, this.#carryLength);
    this.#carryLength = needed;
  }

  /**
   * Moves bytes from the current chunk into the carried frame until it is
   * complete. Returns whether it is; throws as soon as its header is bad.
   */
  #fillCarry(): boolean {
    if (this.#carryNeed < 0) {
      this.#checkType(this.#carry[0]);
      // The carried tail may already hold the whole header (and some body).
      if (this.#carryLength < HEADER_SIZE) {
        this.#moveFromChunk(HEADER_SIZE - this.#carryLength);
        if (this.#carryLength < HEADER_SIZE) return false;
      }
      this.#carryNeed = this.#checkLength(readLength(this.#carry, 0));
    }
    this.#moveFromChunk(HEADER_SIZE + this.#carryNeed - this.#carryLength);
    return this.#carryLength === HEADER_SIZE + this.#carryNeed;
  }

  /** Moves up to `count` bytes from the current chunk to the carry buffer. */
  #moveFromChunk(count: number): void {
    const end = Math.min(this.#offset + count, this.#end);
    this.#stash(this.#chunk.subarray(this.#offset, end));
    this.#offset = end;
  }
}

function readLength(bytes: Uint8Array, offset: number): number {
  return ((bytes[offset + 1] << 24) >>> 0) +
    (bytes[offset + 2] << 16) + (bytes[offset + 3] << 8) + bytes[offset + 4];
}

/** Shows a byte as hex, with its ASCII character when printable: `0x51 ("Q")`. */
function describeByte(byte: number): string {
  const hex = `0x${byte.toString(16).padStart(2, "0")}`;
  return byte >= 0x20 && byte < 0x7f ? `${hex} ("${String.fromCharCode(byte)}")` : hex;
}
