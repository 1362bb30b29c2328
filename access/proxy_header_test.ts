import assert from "node:assert/strict";
import fc from "fast-check";
import ipaddr from "ipaddr.js";
import {
  encodeProxyHeader,
  MAX_V2_BODY_BYTES,
  type ProxyHeader,
  ProxyHeaderError,
  ProxyHeaderParser,
  type ProxyHeaderResult,
  V1_MAX_BYTES,
  V2_PREFIX_BYTES,
  V2_SIGNATURE,
} from "./proxy_header.ts";

const encoder = new TextEncoder();
const SEED = 20261202;

// --- Headers built from the specification, independently of the parser ---

interface V2Options {
  command?: number;
  family?: number;
  source?: string;
  destination?: string;
  sourcePort?: number;
  destinationPort?: number;
  tlvs?: Uint8Array;
  /** Overrides the announced length. */
  length?: number;
}

function v2(options: V2Options = {}): Uint8Array {
  const command = options.command ?? 0x21;
  const family = options.family ?? 0x11;
  const addresses: number[] = [];
  if (options.source !== undefined) {
    addresses.push(...ipaddr.parse(options.source).toByteArray());
    addresses.push(...ipaddr.parse(options.destination!).toByteArray());
    const ports = [options.sourcePort ?? 0, options.destinationPort ?? 0];
    for (const port of ports) addresses.push(port >> 8, port & 0xff);
  }
  const tlvs = options.tlvs ?? new Uint8Array(0);
  const length = options.length ?? addresses.length + tlvs.length;
  return concat(
    V2_SIGNATURE,
    Uint8Array.of(command, family, length >> 8, length & 0xff),
    Uint8Array.from(addresses),
    tlvs,
  );
}

function tlv(type: number, value: Uint8Array): Uint8Array {
  return concat(Uint8Array.of(type, value.length >> 8, value.length & 0xff), value);
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function text(line: string): Uint8Array {
  return encoder.encode(line);
}

/** Pushes `bytes` in pieces cut at `cuts`; returns the result and the bytes after the header. */
function pushSplit(bytes: Uint8Array, cuts: number[]): { result: ProxyHeaderResult; rest: number } {
  const parser = new ProxyHeaderParser();
  const bounds = [0, ...cuts.filter((cut) => cut > 0 && cut < bytes.length).sort((a, b) => a - b)];
  bounds.push(bytes.length);
  for (let i = 0; i + 1 < bounds.length; i++) {
    const chunk = bytes.subarray(bounds[i], bounds[i + 1]);
    const result = parser.push(chunk);
    if (result) {
      assert.ok(result.consumed >= 1 && result.consumed <= chunk.length);
      return { result, rest: bytes.length - bounds[i] - result.consumed };
    }
  }
  throw new Error("The header was never complete.");
}

function parseWhole(bytes: Uint8Array): ProxyHeader {
  const result = new ProxyHeaderParser().push(bytes);
  assert.ok(result, "a whole header is complete in one push");
  assert.equal(result.consumed, result.header.headerLength);
  return result.header;
}

/** Every split of `bytes` into one-byte pushes, and into two pieces at every point, gives `expected`. */
function assertEverySplit(bytes: Uint8Array, expected: ProxyHeader): void {
  const trailing = concat(bytes, text("Q\0\0\0\x05"));
  const everyByte = Array.from({ length: trailing.length }, (_, i) => i);
  const { result, rest } = pushSplit(trailing, everyByte);
  assert.deepEqual(result.header, expected);
  assert.equal(rest, 5);
  for (let cut = 1; cut < trailing.length; cut++) {
    const split = pushSplit(trailing, [cut]);
    assert.deepEqual(split.result.header, expected, `cut at ${cut}`);
    assert.equal(split.rest, 5, `cut at ${cut}`);
  }
}

function assertRefused(bytes: Uint8Array, message: RegExp): void {
  assert.throws(() => {
    const parser = new ProxyHeaderParser();
    for (const byte of bytes) {
      if (parser.push(Uint8Array.of(byte))) return;
    }
  }, (error: unknown) => error instanceof ProxyHeaderError && message.test(error.message));
  assert.throws(
    () => new ProxyHeaderParser().push(bytes),
    (error: unknown) => error instanceof ProxyHeaderError && message.test(error.message),
  );
}

/** How many bytes a parser takes, one at a time, before it refuses the stream. */
function bytesBeforeRefusal(bytes: Uint8Array): number {
  const parser = new ProxyHeaderParser();
  for (let i = 0; i < bytes.length; i++) {
    try {
      parser.push(bytes.subarray(i, i + 1));
    } catch (error) {
      assert.ok(error instanceof ProxyHeaderError);
      return i + 1;
    }
  }
  return Infinity;
}

// --- Version 1 ---

Deno.test("v1 TCP4: addresses and ports, every split, the rest left for the protocol", () => {
  const line = text("PROXY TCP4 192.0.2.7 198.51.100.1 56324 8080\r\n");
  const expected: ProxyHeader = {
    command: "proxy",
    version: 1,
    source: { address: "192.0.2.7", port: 56324 },
    destination: { address: "198.51.100.1", port: 8080 },
    headerLength: line.length,
  };
  assert.deepEqual(parseWhole(line), expected);
  assertEverySplit(line, expected);
});

Deno.test("v1 TCP6: addresses in RFC 5952 form, upper or lower case, every split", () => {
  const line = text("PROXY TCP6 2001:DB8:0:0:0:0:0:1 ::1 0 65535\r\n");
  const expected: ProxyHeader = {
    command: "proxy",
    version: 1,
    source: { address: "2001:db8::1", port: 0 },
    destination: { address: "::1", port: 65535 },
    headerLength: line.length,
  };
  assert.deepEqual(parseWhole(line), expected);
  assertEverySplit(line, expected);
  const mapped = parseWhole(text("PROXY TCP6 ::ffff:192.0.2.7 ::ffff:c000:208 1 2\r\n"));
  assert.equal(mapped.command === "proxy" && mapped.source.address, "::ffff:192.0.2.7");
  assert.equal(mapped.command === "proxy" && mapped.destination.address, "::ffff:192.0.2.8");
});

Deno.test("v1 at the specification's longest lines: 56, 104 and 107 bytes", () => {
  const tcp4 = text("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n");
  assert.equal(tcp4.length, 56);
  assert.equal(parseWhole(tcp4).headerLength, 56);
  const full6 = Array(8).fill("ffff").join(":");
  const tcp6 = text(`PROXY TCP6 ${full6} ${full6} 65535 65535\r\n`);
  assert.equal(tcp6.length, 104);
  const header = parseWhole(tcp6);
  assert.equal(header.command === "proxy" && header.source.address, full6);
  const unknown = text(`PROXY UNKNOWN ${full6} ${full6} 65535 65535\r\n`);
  assert.equal(unknown.length, V1_MAX_BYTES);
  assert.deepEqual(parseWhole(unknown), { command: "local", version: 1, headerLength: 107 });
  assertEverySplit(unknown, { command: "local", version: 1, headerLength: 107 });
});

Deno.test("v1 UNKNOWN: the short form, and anything up to the CRLF ignored", () => {
  const short = text("PROXY UNKNOWN\r\n");
  assert.deepEqual(parseWhole(short), { command: "local", version: 1, headerLength: 15 });
  assertEverySplit(short, { command: "local", version: 1, headerLength: 15 });
  assert.equal(parseWhole(text("PROXY UNKNOWN whatever 1 2 3\r\n")).command, "local");
});

Deno.test("v1 refusals: each says what was wrong", () => {
  const cases: [string, RegExp][] = [
    [
      "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
      /^PROXY v1 protocol is not TCP4, TCP6 or UNKNOWN\.$/,
    ],
    ["PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", /protocol is not TCP4/],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", /TCP4 line has 3 fields after the protocol, not 4/],
    ["PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", /has 5 fields/],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", /has 5 fields/],
    ["PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", /^PROXY v1 source address is not an IPv4 address\.$/],
    ["PROXY TCP4 1.2.3.4 256.6.7.8 1 2\r\n", /destination address is not an IPv4/],
    ["PROXY TCP4 ::1 5.6.7.8 1 2\r\n", /source address is not an IPv4/],
    ["PROXY TCP6 1.2.3.4 ::1 1 2\r\n", /source address is not an IPv6/],
    ["PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", /not an IPv6/],
    ["PROXY TCP6 1::2::3 ::1 1 2\r\n", /not an IPv6/],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", /source port is not a whole number/],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 1 080\r\n", /destination port is not/],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n", /destination port is not/],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", /ends with LF alone, not CRLF/],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", /CR that is not followed by LF/],
    ["PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n", /^PROXY v1 header's byte 19 is not printable ASCII\.$/],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 1 2\xe9\r\n", /byte 31 is not printable ASCII/],
    ["PROXY UNKNOWN " + "x".repeat(100) + "\r\n", /no CRLF within its first 107 bytes/],
    ["PROXYTCP4", /^PROXY header's byte 6 differs from "PROXY ", which it must start with\.$/],
    [
      "proxy TCP4",
      /^PROXY header expected, but the connection's first byte starts neither version\.$/,
    ],
  ];
  for (const [line, message] of cases) assertRefused(text(line), message);
});

Deno.test("a message holds none of what the peer sent, only positions and rules", () => {
  const secret = "ada@example.com";
  const headers = [
    `PROXY TCP4 ${secret} 5.6.7.8 1 2\r\n`,
    `PROXY ${secret} 1.2.3.4 5.6.7.8 1 2\r\n`,
    `PROXY TCP4 1.2.3.4 5.6.7.8 ${secret} 2\r\n`,
    `PROXY TCP6 ::1 ${secret} 1 2\r\n`,
    `PROXYada@example.com`,
    `ada@example.com`,
  ];
  for (const header of headers) {
    assert.throws(() => new ProxyHeaderParser().push(text(header)), (error: unknown) => {
      assert.ok(error instanceof ProxyHeaderError);
      for (const part of ["ada", "example", "@", "TCP4 1", "0x"]) {
        assert.ok(!error.message.includes(part), `${error.message} holds ${part}`);
      }
      return true;
    });
  }
});

Deno.test("a stream that is not a PROXY header is refused on its first byte", () => {
  const query = concat(Uint8Array.of(0x51, 0, 0, 0, 15), text("ada@example.com"));
  assert.equal(bytesBeforeRefusal(query), 1);
  assert.equal(bytesBeforeRefusal(text("GET / HTTP/1.1\r\n")), 1);
  assert.equal(bytesBeforeRefusal(Uint8Array.of(0x16, 0x03, 0x01)), 1); // a TLS ClientHello
  assert.equal(bytesBeforeRefusal(text("PRIVMSG")), 3);
  assert.equal(bytesBeforeRefusal(text("\r\n\r\nHELLO")), 5);
  assert.throws(
    () => new ProxyHeaderParser().push(query),
    new ProxyHeaderError(
      "PROXY header expected, but the connection's first byte starts neither version.",
    ),
  );
  assert.throws(
    () => new ProxyHeaderParser().push(Uint8Array.of(0)),
    new ProxyHeaderError(
      "PROXY header expected, but the connection's first byte starts neither version.",
    ),
  );
});

// --- Version 2 ---

Deno.test("v2 PROXY TCP over IPv4, every split", () => {
  const bytes = v2({
    source: "192.0.2.7",
    destination: "198.51.100.1",
    sourcePort: 56324,
    destinationPort: 8080,
  });
  assert.equal(bytes.length, 28);
  const expected: ProxyHeader = {
    command: "proxy",
    version: 2,
    source: { address: "192.0.2.7", port: 56324 },
    destination: { address: "198.51.100.1", port: 8080 },
    headerLength: 28,
  };
  assert.deepEqual(parseWhole(bytes), expected);
  assertEverySplit(bytes, expected);
});

Deno.test("v2 PROXY TCP over IPv6, every split, IPv4-mapped in dotted form", () => {
  const bytes = v2({
    family: 0x21,
    source: "2001:db8:1:2:0:0:0:9",
    destination: "::ffff:198.51.100.1",
    sourcePort: 65535,
    destinationPort: 1,
  });
  assert.equal(bytes.length, 52);
  const expected: ProxyHeader = {
    command: "proxy",
    version: 2,
    source: { address: "2001:db8:1:2::9", port: 65535 },
    destination: { address: "::ffff:198.51.100.1", port: 1 },
    headerLength: 52,
  };
  assert.deepEqual(parseWhole(bytes), expected);
  assertEverySplit(bytes, expected);
});

Deno.test("v2 TLVs are skipped, up to the bounded length", () => {
  const tlvs = concat(
    tlv(0x02, text("addrbook.example")), // PP2_TYPE_AUTHORITY
    tlv(0x04, new Uint8Array(0)), // PP2_TYPE_NOOP, empty
    tlv(0x20, Uint8Array.of(0x01, 0, 0, 0, 0, ...tlv(0x21, text("TLSv1.3")))), // PP2_TYPE_SSL
  );
  const bytes = v2({ source: "192.0.2.7", destination: "192.0.2.8", sourcePort: 1, tlvs });
  const header = parseWhole(bytes);
  assert.equal(header.headerLength, 28 + tlvs.length);
  assert.equal(header.command === "proxy" && header.source.address, "192.0.2.7");
  assertEverySplit(bytes, header);

  const padding = MAX_V2_BODY_BYTES - 36 - 3;
  const longest = v2({
    family: 0x21,
    source: "::1",
    destination: "::2",
    tlvs: tlv(0x04, new Uint8Array(padding)),
  });
  assert.equal(longest.length, V2_PREFIX_BYTES + MAX_V2_BODY_BYTES);
  assert.equal(parseWhole(longest).headerLength, longest.length);
});

Deno.test("v2 LOCAL and UNSPEC: the connection's own addresses stand", () => {
  const local = v2({ command: 0x20, family: 0x00 });
  assert.deepEqual(parseWhole(local), { command: "local", version: 2, headerLength: 16 });
  assertEverySplit(local, { command: "local", version: 2, headerLength: 16 });
  // A LOCAL header may still carry addresses and TLVs; they are skipped, whatever the family.
  const withAddresses = v2({
    command: 0x20,
    family: 0x11,
    source: "1.2.3.4",
    destination: "5.6.7.8",
  });
  assert.deepEqual(parseWhole(withAddresses), { command: "local", version: 2, headerLength: 28 });
  assert.equal(
    parseWhole(v2({ command: 0x20, family: 0x32, tlvs: new Uint8Array(5) })).command,
    "local",
  );
  const unspec = v2({ family: 0x00, length: 3, tlvs: Uint8Array.of(1, 2, 3) });
  assert.deepEqual(parseWhole(unspec), { command: "local", version: 2, headerLength: 19 });
});

Deno.test("v2 refusals: each says what was wrong, as early as the byte that shows it", () => {
  const good = v2({ source: "1.2.3.4", destination: "5.6.7.8" });
  const withByte = (at: number, value: number) => {
    const copy = good.slice();
    copy[at] = value;
    return copy;
  };
  const cases: [Uint8Array, RegExp, number][] = [
    [withByte(4, 0x01), /^PROXY v2 signature byte 5 is not 0x00\.$/, 5],
    [withByte(11, 0x0d), /signature byte 12 is not 0x0a/, 12],
    [withByte(12, 0x11), /version\/command byte is not version 2/, 13],
    [withByte(12, 0x22), /command is neither LOCAL \(0x00\) nor PROXY \(0x01\)/, 13],
    [withByte(13, 0x12), /transport is UDP, which this server does not support/, 14],
    [withByte(13, 0x22), /transport is UDP/, 14],
    [withByte(13, 0x31), /family is a unix socket, which this server does not support/, 14],
    [withByte(13, 0x32), /unix socket/, 14],
    [withByte(13, 0x41), /family\/transport byte is not valid/, 14],
    [withByte(13, 0x10), /family\/transport byte is not valid/, 14],
    [withByte(13, 0x13), /family\/transport byte is not valid/, 14],
    [withByte(15, 11), /announces fewer bytes than the 12 its addresses need/, 16],
    [
      v2({ family: 0x21, source: "1.2.3.4", destination: "5.6.7.8" }),
      /fewer bytes than the 36/,
      16,
    ],
    [
      v2({ command: 0x20, family: 0, length: 1025 }),
      /announces more bytes after its prefix than the limit of 1024/,
      16,
    ],
    [v2({ length: 0xffff }), /more bytes after its prefix than the limit/, 16],
  ];
  for (const [bytes, message, refusedAt] of cases) {
    assertRefused(bytes, message);
    assert.equal(
      bytesBeforeRefusal(concat(bytes, new Uint8Array(2000))),
      refusedAt,
      String(message),
    );
  }
});

Deno.test("v2 TLVs that run past the header are refused", () => {
  const base = { source: "1.2.3.4", destination: "5.6.7.8" };
  assertRefused(
    v2({ ...base, tlvs: Uint8Array.of(0x04, 0x00) }),
    /^PROXY v2 header ends inside a TLV's type and length\.$/,
  );
  assertRefused(
    v2({ ...base, tlvs: Uint8Array.of(0x05, 0x00, 0x04, 1, 2, 3) }),
    /^PROXY v2 TLV announces more bytes than the header holds\.$/,
  );
  assertRefused(
    v2({ ...base, tlvs: concat(tlv(1, text("h2")), Uint8Array.of(0x02, 0xff, 0xff)) }),
    /TLV announces more bytes than the header holds/,
  );
});

Deno.test("the parser is spent after a header or a refusal", () => {
  const parser = new ProxyHeaderParser();
  assert.equal(parser.push(new Uint8Array(0)), null);
  assert.ok(parser.push(text("PROXY UNKNOWN\r\n")));
  assert.throws(() => parser.push(text("Q")), TypeError);
  const refused = new ProxyHeaderParser();
  assert.throws(() => refused.push(text("Q")), ProxyHeaderError);
  assert.throws(() => refused.push(text("PROXY UNKNOWN\r\n")), TypeError);
});

// --- Fuzzing: random, truncated and mutated headers, split at random points ---

const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((b) => b.join("."));
const ipv6 = fc.array(fc.nat(0xffff), { minLength: 8, maxLength: 8 }).map((parts) =>
  new ipaddr.IPv6(parts).toString()
);
const port = fc.nat(65535);
const tlvBytes = fc.array(
  fc.tuple(fc.nat(255), fc.uint8Array({ maxLength: 40 })).map(([type, value]) => tlv(type, value)),
  { maxLength: 5 },
).map((list) => concat(...list));

/** A valid header and the result it must give. */
type Case = [Uint8Array, ProxyHeader];
const validHeader: fc.Arbitrary<Case> = fc.oneof(
  fc.tuple(fc.boolean(), ipv4, ipv4, port, port).map(([six, s, d, sp, dp]): Case => {
    const [source, destination] = six ? [`::ffff:${s}`, `::ffff:${d}`] : [s, d];
    const line = text(`PROXY ${six ? "TCP6" : "TCP4"} ${source} ${destination} ${sp} ${dp}\r\n`);
    return [line, {
      command: "proxy",
      version: 1,
      source: { address: source, port: sp },
      destination: { address: destination, port: dp },
      headerLength: line.length,
    }];
  }),
  fc.tuple(ipv6, ipv6, port, port).map(([s, d, sp, dp]): Case => {
    const line = text(`PROXY TCP6 ${s} ${d} ${sp} ${dp}\r\n`);
    const canonical = (address: string) => {
      const parsed = ipaddr.IPv6.parse(address);
      return parsed.isIPv4MappedAddress()
        ? `::ffff:${parsed.toIPv4Address()}`
        : parsed.toRFC5952String();
    };
    return [line, {
      command: "proxy",
      version: 1,
      source: { address: canonical(s), port: sp },
      destination: { address: canonical(d), port: dp },
      headerLength: line.length,
    }];
  }),
  fc.tuple(fc.boolean(), ipv4, ipv4, port, port, tlvBytes).map(
    ([six, s, d, sp, dp, tlvs]): Case => {
      const [source, destination] = six ? [`::ffff:${s}`, `::ffff:${d}`] : [s, d];
      const bytes = v2({
        family: six ? 0x21 : 0x11,
        source,
        destination,
        sourcePort: sp,
        destinationPort: dp,
        tlvs,
      });
      return [bytes, {
        command: "proxy",
        version: 2,
        source: { address: source, port: sp },
        destination: { address: destination, port: dp },
        headerLength: bytes.length,
      }];
    },
  ),
  fc.uint8Array({ maxLength: 60 }).map((body): Case => {
    const bytes = v2({ command: 0x20, family: 0, tlvs: body });
    return [bytes, { command: "local", version: 2, headerLength: bytes.length }];
  }),
);

/** Pushes chunks; returns what happened, checking that nothing but a ProxyHeaderError is thrown. */
function outcome(chunks: Uint8Array[]): ProxyHeaderResult | "need-more" | "refused" {
  const parser = new ProxyHeaderParser();
  let pushed = 0;
  for (const chunk of chunks) {
    let result: ProxyHeaderResult | null;
    try {
      result = parser.push(chunk);
    } catch (error) {
      if (!(error instanceof ProxyHeaderError)) throw error;
      assert.ok(error.message.length < 160, error.message);
      assert.match(error.message, /^PROXY .*\.$/);
      return "refused";
    }
    if (result) {
      assert.ok(result.consumed >= 1 && result.consumed <= chunk.length);
      assert.equal(result.header.headerLength, pushed + result.consumed);
      return result;
    }
    pushed += chunk.length;
  }
  return "need-more";
}

function splitAt(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const bounds = [...new Set([0, ...cuts.map((cut) => cut % (bytes.length + 1)), bytes.length])]
    .sort((a, b) => a - b);
  return bounds.slice(1).map((end, i) => bytes.subarray(bounds[i], end));
}

Deno.test("fuzz: valid headers split at random points parse to what was built", () => {
  fc.assert(
    fc.property(
      validHeader,
      fc.array(fc.nat(), { maxLength: 6 }),
      fc.uint8Array({ maxLength: 8 }),
      (
        [bytes, expected],
        cuts,
        after,
      ) => {
        const result = outcome(splitAt(concat(bytes, after), cuts));
        assert.ok(typeof result === "object");
        assert.deepEqual(result.header, expected);
      },
    ),
    { seed: SEED, numRuns: 300 },
  );
});

Deno.test("fuzz: truncated headers need more bytes, and are never taken for a header", () => {
  fc.assert(
    fc.property(validHeader, fc.nat(), fc.array(fc.nat(), { maxLength: 4 }), (
      [bytes],
      cut,
      cuts,
    ) => {
      const truncated = bytes.subarray(0, cut % bytes.length);
      assert.equal(outcome(splitAt(truncated, cuts)), "need-more");
    }),
    { seed: SEED, numRuns: 300 },
  );
});

Deno.test("fuzz: mutated and random bytes give a header, a refusal or a need for more, nothing else", () => {
  const mutated = fc.tuple(
    validHeader,
    fc.array(fc.tuple(fc.nat(), fc.nat(255)), {
      minLength: 1,
      maxLength: 4,
    }),
  ).map(([[bytes], edits]) => {
    const copy = bytes.slice();
    for (const [at, value] of edits) copy[at % copy.length] = value;
    return copy;
  });
  const random = fc.oneof(
    fc.uint8Array({ maxLength: 200 }),
    fc.uint8Array({ maxLength: 200 }).map((tail) => concat(V2_SIGNATURE, tail)),
    fc.uint8Array({ maxLength: 200 }).map((tail) => concat(text("PROXY "), tail)),
    fc.stringMatching(/^PROXY (TCP4|TCP6|UNKNOWN)[ 0-9a-f.:]{0,110}\r?\n?/).map(text),
  );
  let refused = 0;
  fc.assert(
    fc.property(fc.oneof(mutated, random), fc.array(fc.nat(), { maxLength: 6 }), (bytes, cuts) => {
      const result = outcome(splitAt(bytes, cuts));
      if (result === "refused") refused++;
      if (typeof result === "object") assert.ok(result.header.headerLength <= bytes.length);
    }),
    { seed: SEED, numRuns: 600 },
  );
  assert.ok(refused > 100, `only ${refused} of 600 were refused`);
});

// --- Writing headers ---

Deno.test("encodeProxyHeader writes the bytes the specification describes", () => {
  const source = { address: "192.0.2.7", port: 56324 };
  const destination = { address: "198.51.100.1", port: 8080 };
  assert.deepEqual(
    encodeProxyHeader({ version: 1, source, destination }),
    text("PROXY TCP4 192.0.2.7 198.51.100.1 56324 8080\r\n"),
  );
  assert.deepEqual(encodeProxyHeader({ version: 1 }), text("PROXY UNKNOWN\r\n"));
  assert.deepEqual(
    encodeProxyHeader({ version: 2, source, destination }),
    v2({
      source: "192.0.2.7",
      destination: "198.51.100.1",
      sourcePort: 56324,
      destinationPort: 8080,
    }),
  );
  const tlvs = tlv(0x02, text("addrbook.example"));
  assert.deepEqual(
    encodeProxyHeader({
      version: 2,
      source: { address: "2001:db8::7", port: 1 },
      destination: { address: "::1", port: 2 },
      tlvs,
    }),
    v2({
      family: 0x21,
      source: "2001:db8::7",
      destination: "::1",
      sourcePort: 1,
      destinationPort: 2,
      tlvs,
    }),
  );
  assert.deepEqual(encodeProxyHeader({ version: 2 }), v2({ command: 0x20, family: 0x00 }));
});

Deno.test("encodeProxyHeader refuses what no header can say", () => {
  const v4 = { address: "192.0.2.7", port: 1 };
  const v6 = { address: "2001:db8::7", port: 1 };
  assert.throws(
    () => encodeProxyHeader({ version: 2, source: v4, destination: v6 }),
    new TypeError(
      "PROXY header source 192.0.2.7 and destination 2001:db8::7 are of different address families.",
    ),
  );
  assert.throws(
    () => encodeProxyHeader({ version: 1, source: v4 }),
    /both a source and a destination/,
  );
  assert.throws(
    () => encodeProxyHeader({ version: 1, tlvs: new Uint8Array(1) }),
    /cannot carry TLVs/,
  );
  assert.throws(
    () => encodeProxyHeader({ version: 1, source: { ...v4, port: 65536 }, destination: v4 }),
    /port 65536 is not from 0 to 65535/,
  );
  assert.throws(
    () =>
      encodeProxyHeader({ version: 2, source: { address: "localhost", port: 1 }, destination: v4 }),
    /address is not an IP address/,
  );
  assert.throws(
    () => encodeProxyHeader({ version: 2, tlvs: new Uint8Array(0x10000) }),
    /does not fit its 16-bit length/,
  );
});

Deno.test("encodeProxyHeader and the parser agree on every endpoint (property)", () => {
  const endpoint = (address: fc.Arbitrary<string>) => fc.record({ address, port: fc.nat(65535) });
  const pair = fc.oneof(
    fc.tuple(endpoint(ipv4), endpoint(ipv4)),
    fc.tuple(endpoint(ipv6), endpoint(ipv6)),
  );
  fc.assert(
    fc.property(pair, fc.constantFrom(1 as const, 2 as const), ([source, destination], version) => {
      const bytes = encodeProxyHeader({ version, source, destination });
      const header = parseWhole(bytes);
      assert.equal(header.command, "proxy");
      assert.equal(header.version, version);
      assert.equal(header.headerLength, bytes.length);
      if (header.command !== "proxy") return;
      assert.equal(header.source.port, source.port);
      assert.equal(header.destination.port, destination.port);
      assert.deepEqual(
        ipaddr.parse(header.source.address).toByteArray(),
        ipaddr.parse(source.address).toByteArray(),
      );
      assert.deepEqual(
        ipaddr.parse(header.destination.address).toByteArray(),
        ipaddr.parse(destination.address).toByteArray(),
      );
    }),
    { seed: SEED, numRuns: 300 },
  );
});
