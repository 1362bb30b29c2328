/**
 * The PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and 2),
 * parsed incrementally and purely: bytes in, a verdict out, no socket.
 *
 * A TCP load balancer such as HAProxy opens its own connection to the
 * server, so the server's socket only shows the balancer's address. With
 * the PROXY protocol the balancer starts that connection with one header
 * saying who the real client is (source address and port) and what it
 * connected to (destination). Version 1 is one line of ASCII text, at most
 * 107 bytes with its CRLF:
 *
 * ```
 * PROXY TCP4 192.0.2.7 198.51.100.1 56324 8080\r\n
 * ```
 *
 * Version 2 is binary: a 12-byte signature chosen to be rejected by every
 * common text protocol (`\r\n\r\n\0\r\nQUIT\n`), a version/command byte, a
 * family/transport byte, a 2-byte big-endian length, then the addresses and
 * optional TLVs (type-length-value extensions such as the TLS SNI).
 *
 * Why incremental: TCP is a byte stream, so even a 16-byte header may come
 * split over several reads, and the first query may follow in the same read
 * as the end of the header. {@linkcode ProxyHeaderParser.push} therefore
 * takes whatever arrived, copies at most the header's own bytes, and says
 * how many of the pushed bytes it consumed; the rest belong to the protocol
 * after it. It never looks past what was pushed.
 *
 * Why strict and early: a server that requires the header must not guess
 * whether one is there (a client could then claim any address), and a
 * client that sends a query straight away (`Q...`) is refused on its first
 * byte, since no header starts with `Q`. Every prefix byte is checked as it
 * arrives, so a wrong stream is refused within a byte or two, not after a
 * timeout. The version 2 length is bounded ({@linkcode MAX_V2_BODY_BYTES})
 * before its body is awaited, so a peer cannot make the parser hold more.
 *
 * What is supported: TCP over IPv4 and IPv6 (v1 `TCP4`, `TCP6`; v2 `\x11`,
 * `\x21`), v1 `UNKNOWN`, the v2 `LOCAL` command (the balancer's own health
 * checks) and the v2 `UNSPEC` family; those three mean "use the connection's
 * own addresses". UDP and unix-socket families are refused as unsupported,
 * since this server speaks TCP only. TLVs are checked for a well-formed
 * layout and skipped; the CRC32C TLV is not verified.
 *
 * Addresses are parsed with `ipaddr.js` (a small, widely used library) for
 * IPv6, whose textual forms are many; this runs once per connection.
 * IPv6 results are written in RFC 5952 form (`2001:db8::1`), IPv4-mapped
 * ones as `::ffff:192.0.2.7`.
 *
 * ```ts
 * import { ProxyHeaderParser } from "./proxy_header.ts";
 *
 * const parser = new ProxyHeaderParser();
 * const bytes = new TextEncoder().encode("PROXY TCP4 192.0.2.7 198.51.100.1 56324 8080\r\nQ");
 * const result = parser.push(bytes); // null would mean: push more bytes
 * if (result?.header.command === "proxy") {
 *   result.header.source; // { address: "192.0.2.7", port: 56324 }
 *   bytes.subarray(result.consumed); // the "Q" that follows the header
 * }
 * ```
 *
 * @module
 */

import ipaddr from "ipaddr.js";

/** The text that starts a version 1 header, space included. */
export const V1_PREFIX: Uint8Array = new TextEncoder().encode("PROXY ");
/** The longest version 1 header, CRLF included, as the specification bounds it. */
export const V1_MAX_BYTES = 107;
/** The 12-byte signature that starts a version 2 header. */
export const V2_SIGNATURE: Uint8Array = new Uint8Array([
  0x0d,
  0x0a,
  0x0d,
  0x0a,
  0x00,
  0x0d,
  0x0a,
  0x51,
  0x55,
  0x49,
  0x54,
  0x0a,
]);
/** Bytes of a version 2 header before its variable part: signature, two bytes, length. */
export const V2_PREFIX_BYTES = 16;
/** The most bytes accepted after the 16-byte version 2 prefix (addresses and TLVs). */
export const MAX_V2_BODY_BYTES = 1024;

/** Version 2 version/command byte: version 2 in the high nibble. */
const V2_VERSION = 0x20;
/** Version 2 command: a connection the proxy made itself (a health check). */
const V2_COMMAND_LOCAL = 0x0;
/** Version 2 command: a connection relayed for a client. */
const V2_COMMAND_PROXY = 0x1;
/** Version 2 family/transport byte: unspecified. */
const V2_UNSPEC = 0x00;
/** Version 2 family/transport byte: TCP over IPv4. */
const V2_TCP4 = 0x11;
/** Version 2 family/transport byte: UDP over IPv4. */
const V2_UDP4 = 0x12;
/** Version 2 family/transport byte: TCP over IPv6. */
const V2_TCP6 = 0x21;
/** Version 2 family/transport byte: UDP over IPv6. */
const V2_UDP6 = 0x22;
/** Version 2 family/transport byte: unix stream socket. */
const V2_UNIX_STREAM = 0x31;
/** Version 2 family/transport byte: unix datagram socket. */
const V2_UNIX_DGRAM = 0x32;
/** Version 2 address block of TCP over IPv4: two addresses of 4 bytes, two ports. */
const V2_TCP4_ADDRESS_BYTES = 12;
/** Version 2 address block of TCP over IPv6: two addresses of 16 bytes, two ports. */
const V2_TCP6_ADDRESS_BYTES = 36;
/** A TLV's type byte and 2-byte length. */
const TLV_HEADER_BYTES = 3;

const CR = 0x0d;
const LF = 0x0a;
const FIRST_PRINTABLE = 0x20;
const LAST_PRINTABLE = 0x7e;

const IPV4_PATTERN =
  /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const IPV6_CHARS = /^[0-9A-Fa-f:.]+$/;
const PORT_PATTERN = /^(?:0|[1-9]\d{0,4})$/;

/**
 * A header that breaks the PROXY protocol. The message says which rule and
 * where (a byte's position, a field's name), never what the peer sent: it is
 * logged, and a peer's bytes may be anything, an email address among them.
 */
export class ProxyHeaderError extends Error {
  /** Creates the error with a one-sentence message. */
  constructor(message: string) {
    super(message);
    this.name = "ProxyHeaderError";
  }
}

/** One end of the relayed connection. */
export interface ProxyEndpoint {
  /** IPv4 dotted decimal, or IPv6 in RFC 5952 form. */
  address: string;
  /** TCP port, 0 to 65535. */
  port: number;
}

/** A header that names the real client: use its addresses instead of the socket's. */
export interface ProxiedHeader {
  /** Relayed on behalf of a client. */
  command: "proxy";
  /** 1 for the text header, 2 for the binary one. */
  version: 1 | 2;
  /** The real client. */
  source: ProxyEndpoint;
  /** What the client connected to (the balancer's front end). */
  destination: ProxyEndpoint;
  /** The header's size in bytes. */
  headerLength: number;
}

/**
 * A header that names no client: the connection's own addresses stand. It is
 * a v2 `LOCAL` header (the balancer's health check), a v2 `PROXY` header of
 * family `UNSPEC`, or a v1 `UNKNOWN` line.
 */
export interface LocalHeader {
  /** No client named. */
  command: "local";
  /** 1 for the text header, 2 for the binary one. */
  version: 1 | 2;
  /** The header's size in bytes. */
  headerLength: number;
}

/** A complete, valid PROXY header. */
export type ProxyHeader = ProxiedHeader | LocalHeader;

/** What {@linkcode ProxyHeaderParser.push} returns once the header is complete. */
export interface ProxyHeaderResult {
  /** The header. */
  header: ProxyHeader;
  /** How many bytes of the last pushed chunk belonged to the header; the rest follow it. */
  consumed: number;
}

const STATE_START = 0;
const STATE_V1 = 1;
const STATE_V2 = 2;
const STATE_DONE = 3;
const STATE_FAILED = 4;

/**
 * An incremental PROXY header parser for one connection. Push bytes as they
 * arrive, split anywhere; each push returns `null` while more are needed,
 * returns the header once it is complete, or throws a
 * {@linkcode ProxyHeaderError}. After a result or an error the parser is
 * spent: pushing again is a programming error (TypeError).
 *
 * ```ts
 * import { ProxyHeaderParser } from "./proxy_header.ts";
 *
 * const parser = new ProxyHeaderParser();
 * const line = new TextEncoder().encode("PROXY UNKNOWN\r\n");
 * parser.push(line.subarray(0, 4)); // null: not complete yet
 * parser.push(line.subarray(4)); // { header: { command: "local", version: 1, headerLength: 15 }, consumed: 11 }
 * ```
 */
export class ProxyHeaderParser {
  #state = STATE_START;
  /** The header's bytes so far, when it comes split; allocated only then. */
  #bytes: Uint8Array | undefined;
  #length = 0;
  /** The header's full length once known (version 2, after 16 bytes). */
  #needed = V2_PREFIX_BYTES;

  /**
   * Takes the next bytes of the connection.
   *
   * @returns `null` when more bytes are needed, or the header and how many of `chunk`'s bytes it used.
   * @throws {ProxyHeaderError} as soon as the bytes cannot start or be a valid header.
   * @throws {TypeError} when called after the header was complete or refused.
   */
  push(chunk: Uint8Array): ProxyHeaderResult | null {
    if (this.#state === STATE_DONE || this.#state === STATE_FAILED) {
      throw new TypeError("The PROXY header parser has already finished.");
    }
    try {
      return this.#take(chunk);
    } catch (error) {
      this.#state = STATE_FAILED;
      throw error;
    }
  }

  #take(chunk: Uint8Array): ProxyHeaderResult | null {
    if (chunk.length === 0) return null;
    if (this.#state === STATE_START) this.#state = chooseVersion(chunk[0]);
    return this.#state === STATE_V1 ? this.#takeV1(chunk) : this.#takeV2(chunk);
  }

  #takeV1(chunk: Uint8Array): ProxyHeaderResult | null {
    const bytes = this.#bytes ??= new Uint8Array(V1_MAX_BYTES);
    let length = this.#length;
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i];
      const previous = length > 0 ? bytes[length - 1] : 0;
      bytes[length++] = byte;
      if (length <= V1_PREFIX.length) {
        if (byte !== V1_PREFIX[length - 1]) {
          throw new ProxyHeaderError(
            `PROXY header's byte ${length} differs from "PROXY ", which it must start with.`,
          );
        }
        continue;
      }
      if (previous === CR && byte !== LF) {
        throw new ProxyHeaderError("PROXY v1 header has a CR that is not followed by LF.");
      }
      if (byte === LF) {
        if (previous !== CR) {
          throw new ProxyHeaderError("PROXY v1 header ends with LF alone, not CRLF.");
        }
        return this.#finish(parseV1Line(bytes.subarray(0, length - 2)), i + 1);
      }
      if (byte !== CR && (byte < FIRST_PRINTABLE || byte > LAST_PRINTABLE)) {
        throw new ProxyHeaderError(
          `PROXY v1 header's byte ${length} is not printable ASCII.`,
        );
      }
      if (length >= V1_MAX_BYTES) {
        throw new ProxyHeaderError(
          `PROXY v1 header has no CRLF within its first ${V1_MAX_BYTES} bytes.`,
        );
      }
    }
    this.#length = length;
    return null;
  }

  #takeV2(chunk: Uint8Array): ProxyHeaderResult | null {
    if (this.#length === 0 && chunk.length >= V2_PREFIX_BYTES) {
      // The usual case, a whole header in the first read: parsed where it lies, without a copy.
      for (let at = 0; at < V2_PREFIX_BYTES; at++) this.#checkV2Prefix(chunk, at);
      if (chunk.length >= this.#needed) {
        return this.#finish(parseV2(chunk.subarray(0, this.#needed)), this.#needed);
      }
    }
    const bytes = this.#bytes ??= new Uint8Array(V2_PREFIX_BYTES + MAX_V2_BODY_BYTES);
    let i = 0;
    while (this.#length < V2_PREFIX_BYTES && i < chunk.length) {
      bytes[this.#length++] = chunk[i++];
      this.#checkV2Prefix(bytes, this.#length - 1);
    }
    if (this.#length < V2_PREFIX_BYTES) return null;
    const copied = Math.min(this.#needed - this.#length, chunk.length - i);
    bytes.set(chunk.subarray(i, i + copied), this.#length);
    this.#length += copied;
    i += copied;
    if (this.#length < this.#needed) return null;
    return this.#finish(parseV2(bytes.subarray(0, this.#length)), i);
  }

  /** Checks byte `at` of a version 2 prefix, so that a bad one is refused as soon as it arrives. */
  #checkV2Prefix(bytes: Uint8Array, at: number): void {
    const byte = bytes[at];
    if (at < V2_SIGNATURE.length) {
      if (byte !== V2_SIGNATURE[at]) {
        throw new ProxyHeaderError(
          `PROXY v2 signature byte ${at + 1} is not ${hex(V2_SIGNATURE[at])}.`,
        );
      }
    } else if (at === V2_SIGNATURE.length) {
      if ((byte & 0xf0) !== V2_VERSION) {
        throw new ProxyHeaderError("PROXY v2 version/command byte is not version 2.");
      }
      const command = byte & 0x0f;
      if (command !== V2_COMMAND_LOCAL && command !== V2_COMMAND_PROXY) {
        throw new ProxyHeaderError(
          "PROXY v2 command is neither LOCAL (0x00) nor PROXY (0x01).",
        );
      }
    } else if (at === V2_SIGNATURE.length + 1) {
      if (bytes[at - 1] === (V2_VERSION | V2_COMMAND_PROXY)) checkV2Family(byte);
    } else if (at === V2_PREFIX_BYTES - 1) {
      this.#needed = V2_PREFIX_BYTES + checkV2Length(bytes);
    }
  }

  #finish(header: ProxyHeader, consumed: number): ProxyHeaderResult {
    this.#state = STATE_DONE;
    return { header, consumed };
  }
}

/** What {@linkcode encodeProxyHeader} writes: the client and the front end it reached, or neither. */
export interface ProxyHeaderSpec {
  /** 1 for the text header, 2 for the binary one. */
  version: 1 | 2;
  /** The real client; leave out with `destination` for a v1 `UNKNOWN` or a v2 `LOCAL` header. */
  source?: ProxyEndpoint;
  /** What the client connected to; the same address family as `source`. */
  destination?: ProxyEndpoint;
  /** Version 2 only: TLV bytes to append after the addresses, as they go on the wire. */
  tlvs?: Uint8Array;
}

/**
 * Writes a PROXY header, as a load balancer would send it: for tests and
 * tools that stand in for HAProxy.
 *
 * ```ts
 * import { encodeProxyHeader } from "./proxy_header.ts";
 *
 * encodeProxyHeader({
 *   version: 1,
 *   source: { address: "192.0.2.7", port: 56324 },
 *   destination: { address: "198.51.100.1", port: 8080 },
 * }); // the bytes of "PROXY TCP4 192.0.2.7 198.51.100.1 56324 8080\r\n"
 * encodeProxyHeader({ version: 2 }); // a 16-byte v2 LOCAL header
 * ```
 *
 * @throws {TypeError} when an address is not an IP address, the two are of
 *   different families, only one is given, or TLVs are given for version 1.
 */
export function encodeProxyHeader(spec: ProxyHeaderSpec): Uint8Array {
  const { source, destination } = spec;
  if ((source === undefined) !== (destination === undefined)) {
    throw new TypeError("A PROXY header needs both a source and a destination, or neither.");
  }
  if (spec.version === 1 && spec.tlvs !== undefined) {
    throw new TypeError("A PROXY v1 header cannot carry TLVs.");
  }
  const addresses = source && destination ? [toIPBytes(source), toIPBytes(destination)] : [];
  if (addresses.length === 2 && addresses[0].length !== addresses[1].length) {
    throw new TypeError(
      `PROXY header source ${source!.address} and destination ${
        destination!.address
      } are of different address families.`,
    );
  }
  if (spec.version === 1) {
    if (!source || !destination) return new TextEncoder().encode("PROXY UNKNOWN\r\n");
    const protocol = addresses[0].length === 4 ? "TCP4" : "TCP6";
    return new TextEncoder().encode(
      `PROXY ${protocol} ${source.address} ${destination.address} ${source.port} ${destination.port}\r\n`,
    );
  }
  const tlvs = spec.tlvs ?? new Uint8Array(0);
  const addressBytes = addresses.length === 0 ? 0 : 2 * addresses[0].length + 4;
  const length = addressBytes + tlvs.length;
  if (length > 0xffff) {
    throw new TypeError(`PROXY v2 header body of ${length} bytes does not fit its 16-bit length.`);
  }
  const header = new Uint8Array(V2_PREFIX_BYTES + length);
  header.set(V2_SIGNATURE);
  header[12] = V2_VERSION | (addresses.length === 0 ? V2_COMMAND_LOCAL : V2_COMMAND_PROXY);
  header[13] = addresses.length === 0 ? V2_UNSPEC : addresses[0].length === 4 ? V2_TCP4 : V2_TCP6;
  header[14] = length >> 8;
  header[15] = length & 0xff;
  let at = V2_PREFIX_BYTES;
  if (source && destination) {
    for (const bytes of addresses) {
      header.set(bytes, at);
      at += bytes.length;
    }
    for (const port of [source.port, destination.port]) {
      header[at++] = port >> 8;
      header[at++] = port & 0xff;
    }
  }
  header.set(tlvs, at);
  return header;
}

/** An endpoint's address as 4 or 16 bytes, checking its port on the way. */
function toIPBytes(endpoint: ProxyEndpoint): Uint8Array {
  if (!Number.isInteger(endpoint.port) || endpoint.port < 0 || endpoint.port > 65535) {
    throw new TypeError(`PROXY header port ${endpoint.port} is not from 0 to 65535.`);
  }
  if (IPV4_PATTERN.test(endpoint.address)) {
    return Uint8Array.from(ipaddr.IPv4.parse(endpoint.address).toByteArray());
  }
  if (IPV6_CHARS.test(endpoint.address) && ipaddr.IPv6.isValid(endpoint.address)) {
    return Uint8Array.from(ipaddr.IPv6.parse(endpoint.address).toByteArray());
  }
  throw new TypeError("PROXY header address is not an IP address.");
}

/** Picks the version from the first byte, or refuses a stream that is neither. */
function chooseVersion(first: number): number {
  if (first === V1_PREFIX[0]) return STATE_V1;
  if (first === V2_SIGNATURE[0]) return STATE_V2;
  throw new ProxyHeaderError(
    "PROXY header expected, but the connection's first byte starts neither version.",
  );
}

/** Refuses a version 2 family/transport byte this server cannot use. */
function checkV2Family(byte: number): void {
  if (byte === V2_UNSPEC || byte === V2_TCP4 || byte === V2_TCP6) return;
  if (byte === V2_UDP4 || byte === V2_UDP6) {
    throw new ProxyHeaderError(
      "PROXY v2 transport is UDP, which this server does not support.",
    );
  }
  if (byte === V2_UNIX_STREAM || byte === V2_UNIX_DGRAM) {
    throw new ProxyHeaderError(
      "PROXY v2 family is a unix socket, which this server does not support.",
    );
  }
  throw new ProxyHeaderError("PROXY v2 family/transport byte is not valid.");
}

/** Reads the version 2 length, refusing one over the bound or too short for its addresses. */
function checkV2Length(prefix: Uint8Array): number {
  const length = (prefix[14] << 8) | prefix[15];
  if (length > MAX_V2_BODY_BYTES) {
    throw new ProxyHeaderError(
      `PROXY v2 header announces more bytes after its prefix than the limit of ${MAX_V2_BODY_BYTES}.`,
    );
  }
  if (prefix[12] === (V2_VERSION | V2_COMMAND_PROXY)) {
    const minimum = v2AddressBytes(prefix[13]);
    if (length < minimum) {
      throw new ProxyHeaderError(
        `PROXY v2 header announces fewer bytes than the ${minimum} its addresses need.`,
      );
    }
  }
  return length;
}

/** The address block's size for a family/transport byte already checked. */
function v2AddressBytes(family: number): number {
  if (family === V2_TCP4) return V2_TCP4_ADDRESS_BYTES;
  if (family === V2_TCP6) return V2_TCP6_ADDRESS_BYTES;
  return 0;
}

/** Decodes a complete version 2 header whose prefix was already checked. */
function parseV2(bytes: Uint8Array): ProxyHeader {
  const headerLength = bytes.length;
  const family = bytes[13];
  if (bytes[12] === (V2_VERSION | V2_COMMAND_LOCAL) || family === V2_UNSPEC) {
    return { command: "local", version: 2, headerLength };
  }
  const at = V2_PREFIX_BYTES;
  const size = family === V2_TCP4 ? 4 : 16;
  const format = family === V2_TCP4 ? formatIPv4Bytes : formatIPv6Bytes;
  const ports = at + 2 * size;
  checkTlvs(bytes, ports + 4);
  return {
    command: "proxy",
    version: 2,
    source: { address: format(bytes.subarray(at, at + size)), port: readUint16(bytes, ports) },
    destination: {
      address: format(bytes.subarray(at + size, ports)),
      port: readUint16(bytes, ports + 2),
    },
    headerLength,
  };
}

/** Walks the TLVs from `start` to the end, refusing one that runs past it. */
function checkTlvs(bytes: Uint8Array, start: number): void {
  let at = start;
  while (at < bytes.length) {
    if (bytes.length - at < TLV_HEADER_BYTES) {
      throw new ProxyHeaderError("PROXY v2 header ends inside a TLV's type and length.");
    }
    const length = readUint16(bytes, at + 1);
    at += TLV_HEADER_BYTES + length;
    if (at > bytes.length) {
      throw new ProxyHeaderError("PROXY v2 TLV announces more bytes than the header holds.");
    }
  }
}

/** Decodes a complete version 1 line, without its CRLF. */
function parseV1Line(line: Uint8Array): ProxyHeader {
  const headerLength = line.length + 2;
  const fields = asciiText(line).split(" ");
  const protocol = fields[1];
  if (protocol === "UNKNOWN") return { command: "local", version: 1, headerLength };
  if (protocol !== "TCP4" && protocol !== "TCP6") {
    throw new ProxyHeaderError(
      "PROXY v1 protocol is not TCP4, TCP6 or UNKNOWN.",
    );
  }
  if (fields.length !== 6) {
    throw new ProxyHeaderError(
      `PROXY v1 ${protocol} line has ${
        fields.length - 2
      } fields after the protocol, not 4 separated by single spaces.`,
    );
  }
  const address = protocol === "TCP4" ? parseV1IPv4 : parseV1IPv6;
  return {
    command: "proxy",
    version: 1,
    source: { address: address(fields[2], "source"), port: parseV1Port(fields[4], "source") },
    destination: {
      address: address(fields[3], "destination"),
      port: parseV1Port(fields[5], "destination"),
    },
    headerLength,
  };
}

function parseV1IPv4(text: string, which: string): string {
  if (!IPV4_PATTERN.test(text)) {
    throw new ProxyHeaderError(`PROXY v1 ${which} address is not an IPv4 address.`);
  }
  return text;
}

function parseV1IPv6(text: string, which: string): string {
  if (!IPV6_CHARS.test(text) || !text.includes(":") || !ipaddr.IPv6.isValid(text)) {
    throw new ProxyHeaderError(`PROXY v1 ${which} address is not an IPv6 address.`);
  }
  return formatIPv6(ipaddr.IPv6.parse(text));
}

function parseV1Port(text: string, which: string): number {
  const port = PORT_PATTERN.test(text) ? Number(text) : NaN;
  if (!(port <= 65535)) {
    throw new ProxyHeaderError(
      `PROXY v1 ${which} port is not a whole number from 0 to 65535 without leading zeros.`,
    );
  }
  return port;
}

/** Text of bytes already checked to be printable ASCII (`apply` is far faster than a spread). */
function asciiText(bytes: Uint8Array): string {
  return String.fromCharCode.apply(null, bytes as unknown as number[]);
}

function formatIPv4Bytes(bytes: Uint8Array): string {
  return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
}

function formatIPv6Bytes(bytes: Uint8Array): string {
  return formatIPv6(new ipaddr.IPv6(Array.from(bytes)));
}

/** RFC 5952 text, with an IPv4-mapped address in its dotted form (RFC 5952 section 5). */
function formatIPv6(address: ipaddr.IPv6): string {
  return address.isIPv4MappedAddress()
    ? `::ffff:${address.toIPv4Address().toString()}`
    : address.toRFC5952String();
}

function readUint16(bytes: Uint8Array, at: number): number {
  return (bytes[at] << 8) | bytes[at + 1];
}

function hex(byte: number): string {
  return `0x${byte.toString(16).padStart(2, "0")}`;
}
