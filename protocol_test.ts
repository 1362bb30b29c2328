import assert from "node:assert/strict";
import fc from "fast-check";
import {
  decodeReply,
  decodeUtf8,
  encodeQueries,
  encodeQuery,
  encodeQueryInto,
  encodeReply,
  encodeReplyBytes,
  FrameDecoder,
  HEADER_SIZE,
  MAX_QUERY_BYTES,
  MAX_QUERY_FRAME_BYTES,
  MAX_REPLY_BYTES,
  ProtocolError,
  type ProtocolErrorKind,
  type Status,
  STATUS_BAD_REQUEST,
  STATUS_FORBIDDEN,
  STATUS_FOUND,
  STATUS_NAMES,
  STATUS_NOT_FOUND,
  STATUS_PROTOCOL_ERROR,
  STATUS_RATE_LIMITED,
  STATUS_SERVER_BUSY,
  TYPE_QUERY,
  TYPE_REPLY,
  writeHeader,
} from "./protocol.ts";

const encoder = new TextEncoder();
const ALL_STATUSES: Status[] = [
  STATUS_FOUND,
  STATUS_NOT_FOUND,
  STATUS_BAD_REQUEST,
  STATUS_PROTOCOL_ERROR,
  STATUS_SERVER_BUSY,
  STATUS_FORBIDDEN,
  STATUS_RATE_LIMITED,
];

/** Builds a frame of any type around any payload bytes. */
function frame(type: number, payload: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(HEADER_SIZE + payload.length);
  writeHeader(bytes, 0, type, payload.length);
  bytes.set(payload, HEADER_SIZE);
  return bytes;
}

/** A bare header announcing `length` bytes, with no body. */
function header(type: number, length: number): Uint8Array {
  const bytes = new Uint8Array(HEADER_SIZE);
  writeHeader(bytes, 0, type, length);
  return bytes;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const joined = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    joined.set(part, offset);
    offset += part.length;
  }
  return joined;
}

/** Cuts `bytes` at the given offsets (sorted, each within 0..length). */
function cutAt(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  let start = 0;
  for (const cut of cuts) {
    chunks.push(bytes.subarray(start, cut));
    start = cut;
  }
  chunks.push(bytes.subarray(start));
  return chunks;
}

/**
 * Pushes each chunk and takes every frame it completes, copying each payload
 * at once because a payload is only valid until the next call.
 */
function decodeChunks(decoder: FrameDecoder, chunks: Uint8Array[]): Uint8Array[] {
  const payloads: Uint8Array[] = [];
  for (const chunk of chunks) {
    decoder.push(chunk);
    for (let payload; (payload = decoder.next()) !== null;) payloads.push(payload.slice());
  }
  return payloads;
}

/**
 * Asserts two lists of payloads are equal, with a short message: the default
 * diff of kilobyte arrays makes fast-check's shrinking crawl.
 */
function assertSamePayloads(actual: Uint8Array[], expected: Uint8Array[], context = ""): void {
  const where = context === "" ? "" : ` (${context})`;
  assert.equal(
    actual.length,
    expected.length,
    `${actual.length} payloads, not ${expected.length}${where}`,
  );
  for (let i = 0; i < expected.length; i++) {
    const same = actual[i].length === expected[i].length &&
      actual[i].every((byte, j) => byte === expected[i][j]);
    assert.ok(
      same,
      `payload ${i} is ${actual[i].length} bytes [${actual[i].subarray(0, 8)}...], ` +
        `expected ${expected[i].length} bytes [${expected[i].subarray(0, 8)}...]${where}`,
    );
  }
}

function queryDecoder(maxPayload = MAX_QUERY_BYTES): FrameDecoder {
  return new FrameDecoder({ type: TYPE_QUERY, maxPayload });
}

function assertProtocolError(action: () => unknown, kind: ProtocolErrorKind): ProtocolError {
  let caught: unknown;
  try {
    action();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof ProtocolError, `expected a ProtocolError, got ${caught}`);
  assert.equal(caught.kind, kind);
  assert.equal(caught.name, "ProtocolError");
  return caught;
}

/** Frames of several shapes, for the exhaustive split tests. */
const SAMPLE_PAYLOADS: Uint8Array[] = [
  new Uint8Array(0),
  Uint8Array.of(0x61),
  encoder.encode("ada@example.com"),
  encoder.encode("zoë@exämple.com"),
  Uint8Array.from({ length: MAX_QUERY_BYTES }, (_, i) => (i * 31) & 0xff),
];

// --- Encoding and decoding replies and queries ---

Deno.test("encodeQuery writes Q, the big-endian UTF-8 length, then the email's bytes", () => {
  const bytes = encodeQuery("ada@example.com");
  assert.deepEqual(
    [...bytes.subarray(0, HEADER_SIZE)],
    [TYPE_QUERY, 0, 0, 0, "ada@example.com".length],
  );
  assert.deepEqual(bytes.subarray(HEADER_SIZE), encoder.encode("ada@example.com"));
});

Deno.test("encodeQuery counts the length in UTF-8 bytes, not characters", () => {
  const email = "zoë@例え.jp"; // ë is 2 bytes, each CJK character 3: 14 bytes, 10 characters
  const bytes = encodeQuery(email);
  assert.equal(bytes[4], 14);
  assert.equal(decodeUtf8(bytes.subarray(HEADER_SIZE)), email);
});

Deno.test("encodeQuery sends the email as given, untrimmed", () => {
  const bytes = encodeQuery("  Ada@Example.com\t");
  assert.equal(decodeUtf8(bytes.subarray(HEADER_SIZE)), "  Ada@Example.com\t");
});

Deno.test("encodeQuery accepts exactly 1024 bytes and throws RangeError over that", () => {
  assert.equal(encodeQuery("a".repeat(MAX_QUERY_BYTES)).length, HEADER_SIZE + MAX_QUERY_BYTES);
  assert.throws(() => encodeQuery("a".repeat(MAX_QUERY_BYTES + 1)), RangeError);
  // 1023 ASCII bytes plus a 2-byte character is 1025 bytes though only 1024 characters.
  assert.throws(() => encodeQuery("a".repeat(MAX_QUERY_BYTES - 1) + "é"), {
    name: "RangeError",
    message: /1025/,
  });
});

Deno.test("encodeQuery of an empty string is a frame with a zero-length payload", () => {
  assert.deepEqual([...encodeQuery("")], [TYPE_QUERY, 0, 0, 0, 0]);
});

Deno.test("encodeQueryInto writes the same frame as encodeQuery, at the offset given", () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 400, unit: "grapheme" }), fc.nat(64), (email, offset) => {
      const target = new Uint8Array(offset + MAX_QUERY_FRAME_BYTES).fill(0xee);
      const length = encodeQueryInto(email, target, offset);
      assert.deepEqual(target.subarray(offset, offset + length), encodeQuery(email));
      assert.ok(target.subarray(0, offset).every((byte) => byte === 0xee), "nothing before");
    }),
  );
});

Deno.test("encodeQueryInto returns -1 over 1024 bytes, however many characters that is", () => {
  const target = new Uint8Array(MAX_QUERY_FRAME_BYTES);
  assert.equal(encodeQueryInto("a".repeat(MAX_QUERY_BYTES), target, 0), MAX_QUERY_FRAME_BYTES);
  assert.equal(encodeQueryInto("a".repeat(MAX_QUERY_BYTES + 1), target, 0), -1);
  // 342 characters of 3 bytes each: 1026 bytes, over by a character that is cut off.
  assert.equal(encodeQueryInto("€".repeat(342), target, 0), -1);
  assert.equal(encodeQueryInto("€".repeat(341), target, 0), HEADER_SIZE + 1023);
});

Deno.test("encodeQueries joins the frames of encodeQuery, and throws RangeError for one too long", () => {
  fc.assert(
    fc.property(fc.array(fc.string({ maxLength: 300 }), { maxLength: 40 }), (emails) => {
      const expected = emails.flatMap((email) => [...encodeQuery(email)]);
      assert.deepEqual([...encodeQueries(emails)], expected);
    }),
  );
  assert.throws(
    () => encodeQueries(["ada@example.com", "a".repeat(MAX_QUERY_BYTES + 1)]),
    { name: "RangeError", message: "Query is 1025 bytes long, over the limit of 1024." },
  );
});

Deno.test("encodeReply writes R, the length of status plus text, the status, then the text", () => {
  assert.deepEqual(
    [...encodeReply(STATUS_FOUND, "Ada Lovelace")],
    [TYPE_REPLY, 0, 0, 0, 13, STATUS_FOUND, ...encoder.encode("Ada Lovelace")],
  );
  assert.deepEqual([...encodeReply(STATUS_NOT_FOUND, "")], [TYPE_REPLY, 0, 0, 0, 1, 1]);
});

Deno.test("encodeReply and decodeReply round-trip every status with ASCII, empty and non-ASCII text", () => {
  for (const status of ALL_STATUSES) {
    for (const text of ["", "Ada Lovelace", "Zoë Ñúñez", "李小龍", "🦀 emoji", "\uFEFFBOM kept"]) {
      const bytes = encodeReply(status, text);
      assert.equal(bytes[0], TYPE_REPLY);
      const length = new DataView(bytes.buffer, bytes.byteOffset).getUint32(1);
      assert.equal(length, bytes.length - HEADER_SIZE);
      assert.deepEqual(decodeReply(bytes.subarray(HEADER_SIZE)), { status, text });
    }
  }
});

Deno.test("encodeReplyBytes gives the same frame as encodeReply for the same text", () => {
  for (const status of ALL_STATUSES) {
    const text = "Zoë Ñúñez";
    assert.deepEqual(encodeReplyBytes(status, encoder.encode(text)), encodeReply(status, text));
  }
});

Deno.test("STATUS_NAMES names each status code in order", () => {
  assert.deepEqual(STATUS_NAMES, [
    "FOUND",
    "NOT_FOUND",
    "BAD_REQUEST",
    "PROTOCOL_ERROR",
    "SERVER_BUSY",
    "FORBIDDEN",
    "RATE_LIMITED",
  ]);
  assert.deepEqual(ALL_STATUSES, [0, 1, 2, 3, 4, 5, 6]);
});

Deno.test("decodeReply rejects an empty payload as malformed-reply", () => {
  assertProtocolError(() => decodeReply(new Uint8Array(0)), "malformed-reply");
});

Deno.test("decodeReply rejects a status byte above 6 as malformed-reply, naming the status", () => {
  for (const status of [7, 8, 0x51, 0x7f, 0x80, 0xff]) {
    const error = assertProtocolError(
      () => decodeReply(Uint8Array.of(status, 0x61)),
      "malformed-reply",
    );
    assert.match(error.message, new RegExp(`\\b${status}\\b`));
  }
});

Deno.test("decodeReply rejects text that is not valid UTF-8 as malformed-reply", () => {
  const invalid = [
    [0xff], // never valid in UTF-8
    [0xc3], // a lead byte with its continuation missing
    [0x80], // a continuation byte with no lead
    [0xc0, 0x80], // an overlong encoding of NUL
    [0xed, 0xa0, 0x80], // an encoded UTF-16 surrogate
    [0xf4, 0x90, 0x80, 0x80], // above U+10FFFF
    [0x41, 0x64, 0x61, 0xe2, 0x82], // valid text, then a truncated 3-byte sequence
  ];
  for (const text of invalid) {
    assertProtocolError(
      () => decodeReply(Uint8Array.of(STATUS_FOUND, ...text)),
      "malformed-reply",
    );
  }
});

Deno.test("decodeUtf8 returns undefined for invalid bytes instead of replacement characters", () => {
  assert.equal(decodeUtf8(Uint8Array.of(0x61, 0xff)), undefined);
  assert.equal(decodeUtf8(encoder.encode("zoë")), "zoë");
  assert.equal(decodeUtf8(new Uint8Array(0)), "");
});

// --- FrameDecoder: splitting and joining ---

Deno.test("FrameDecoder yields a frame whole when it is split at any one byte offset", () => {
  for (const payload of SAMPLE_PAYLOADS) {
    const bytes = frame(TYPE_QUERY, payload);
    for (let cut = 0; cut <= bytes.length; cut++) {
      const payloads = decodeChunks(queryDecoder(), cutAt(bytes, [cut]));
      assertSamePayloads(payloads, [payload], `a ${payload.length}-byte payload split at ${cut}`);
    }
  }
});

Deno.test("FrameDecoder yields a frame whole when it is split at any two byte offsets", () => {
  for (const payload of SAMPLE_PAYLOADS.slice(0, 4)) {
    const bytes = frame(TYPE_QUERY, payload);
    for (let first = 0; first <= bytes.length; first++) {
      for (let second = first; second <= bytes.length; second++) {
        const payloads = decodeChunks(queryDecoder(), cutAt(bytes, [first, second]));
        assertSamePayloads(payloads, [payload], `split at ${first} and ${second}`);
      }
    }
  }
});

Deno.test("FrameDecoder assembles a reply longer than its initial 4 KiB buffer split anywhere", () => {
  const payload = Uint8Array.from({ length: 5000 }, (_, i) => (i * 7) & 0xff);
  const bytes = frame(TYPE_REPLY, payload);
  for (let cut = 0; cut <= bytes.length; cut += 1) {
    const decoder = new FrameDecoder({ type: TYPE_REPLY, maxPayload: MAX_REPLY_BYTES });
    assertSamePayloads(decodeChunks(decoder, cutAt(bytes, [cut])), [payload], `split at ${cut}`);
  }
});

Deno.test("FrameDecoder yields every frame of a chunk holding many frames, in order", () => {
  const payloads = Array.from({ length: 200 }, (_, i) => encoder.encode(`user${i}@example.com`));
  payloads.push(new Uint8Array(0), new Uint8Array(MAX_QUERY_BYTES).fill(0x61));
  const bytes = concat(payloads.map((payload) => frame(TYPE_QUERY, payload)));
  assertSamePayloads(decodeChunks(queryDecoder(), [bytes]), payloads);
});

Deno.test("FrameDecoder yields the same frames when fed one byte at a time", () => {
  const bytes = concat(SAMPLE_PAYLOADS.map((payload) => frame(TYPE_QUERY, payload)));
  const chunks = Array.from(bytes, (byte) => Uint8Array.of(byte));
  assertSamePayloads(decodeChunks(queryDecoder(), chunks), SAMPLE_PAYLOADS);
});

Deno.test("FrameDecoder returns null until the last byte of a frame arrives, one byte at a time", () => {
  const bytes = encodeQuery("ada@example.com");
  const decoder = queryDecoder();
  for (let i = 0; i < bytes.length - 1; i++) {
    decoder.push(bytes.subarray(i, i + 1));
    assert.equal(decoder.next(), null, `after byte ${i}`);
    assert.equal(decoder.midFrame, true);
    assert.equal(decoder.buffered, i + 1);
  }
  decoder.push(bytes.subarray(bytes.length - 1));
  assert.deepEqual(decoder.next(), encoder.encode("ada@example.com"));
  assert.equal(decoder.next(), null);
  assert.equal(decoder.midFrame, false);
  assert.equal(decoder.buffered, 0);
});

Deno.test("FrameDecoder copes with a caller that reuses one read buffer for every push", () => {
  // The server reads into one buffer and pushes a view of it each time, after
  // next() has returned null: a partial frame must survive the overwrite.
  const stream = concat(SAMPLE_PAYLOADS.map((payload) => frame(TYPE_QUERY, payload)));
  for (const readSize of [1, 3, 5, 6, 7, 64, 1000]) {
    const buffer = new Uint8Array(readSize);
    const decoder = queryDecoder();
    const payloads: Uint8Array[] = [];
    for (let offset = 0; offset < stream.length; offset += readSize) {
      const piece = stream.subarray(offset, offset + readSize);
      buffer.set(piece);
      decoder.push(buffer.subarray(0, piece.length));
      for (let payload; (payload = decoder.next()) !== null;) payloads.push(payload.slice());
      buffer.fill(0xee);
    }
    assertSamePayloads(payloads, SAMPLE_PAYLOADS, `reads of ${readSize} bytes`);
  }
});

Deno.test("FrameDecoder keeps frames not taken before the next push, ahead of the new bytes", () => {
  const first = ["a@x.org", "b@x.org", "c@x.org"].map((email) => encodeQuery(email));
  const second = ["d@x.org", "e@x.org"].map((email) => encodeQuery(email));
  const decoder = queryDecoder();
  decoder.push(concat(first));
  assert.deepEqual(decoder.next(), encoder.encode("a@x.org"));
  decoder.push(concat(second));
  const rest = [];
  for (let payload; (payload = decoder.next()) !== null;) {
    rest.push(new TextDecoder().decode(payload));
  }
  assert.deepEqual(rest, ["b@x.org", "c@x.org", "d@x.org", "e@x.org"]);
});

Deno.test("FrameDecoder keeps a partial frame not reached before the next push", () => {
  const a = encodeQuery("a@x.org");
  const b = encodeQuery("bob@example.com");
  const decoder = queryDecoder();
  decoder.push(concat([a, b.subarray(0, 8)]));
  assert.deepEqual(decoder.next(), encoder.encode("a@x.org"));
  // next() not called again: the 8 bytes of b are still in the pushed chunk.
  decoder.push(b.subarray(8));
  assert.deepEqual(decoder.next(), encoder.encode("bob@example.com"));
  assert.equal(decoder.next(), null);
});

Deno.test("FrameDecoder returns a frame wholly inside a chunk as a view of that chunk, not a copy", () => {
  const chunk = concat([encodeQuery("a@x.org"), encodeQuery("bob@example.com")]);
  const decoder = queryDecoder();
  decoder.push(chunk);
  const first = decoder.next();
  assert.ok(first !== null);
  assert.equal(first.buffer, chunk.buffer);
  assert.equal(first.byteOffset, chunk.byteOffset + HEADER_SIZE);
  assert.deepEqual(first, encoder.encode("a@x.org"));
  const second = decoder.next();
  assert.ok(second !== null);
  assert.equal(second.buffer, chunk.buffer);
  assert.deepEqual(second, encoder.encode("bob@example.com"));
});

Deno.test("FrameDecoder's payload of a frame assembled from pieces stays intact until the next call", () => {
  const payload = encoder.encode("bob@example.com");
  const bytes = frame(TYPE_QUERY, payload);
  const decoder = queryDecoder();
  decoder.push(bytes.subarray(0, 3));
  assert.equal(decoder.next(), null);
  decoder.push(bytes.subarray(3));
  const got = decoder.next();
  assert.ok(got !== null);
  // Pushing the next chunk, without calling next(), must not disturb the payload.
  decoder.push(encodeQuery("zed@example.com").subarray(0, 9));
  assert.deepEqual(got, payload);
});

Deno.test("FrameDecoder after detach keeps untaken frames when the caller overwrites its buffer", () => {
  const buffer = concat([encodeQuery("a@x.org"), encodeQuery("bob@example.com")]);
  const tail = encodeQuery("cy@example.com");
  const decoder = queryDecoder();
  decoder.push(buffer.subarray(0, buffer.length - 4));
  assert.deepEqual(decoder.next(), encoder.encode("a@x.org"));
  decoder.detach();
  buffer.fill(0xee);
  decoder.push(concat([encodeQuery("bob@example.com").subarray(-4), tail]));
  assert.deepEqual(decoder.next(), encoder.encode("bob@example.com"));
  assert.deepEqual(decoder.next(), encoder.encode("cy@example.com"));
  assert.equal(decoder.next(), null);
  assert.equal(decoder.buffered, 0);
});

Deno.test("FrameDecoder yields zero-length payloads, several in a row", () => {
  const decoder = queryDecoder();
  decoder.push(concat([header(TYPE_QUERY, 0), header(TYPE_QUERY, 0), encodeQuery("a@b")]));
  assert.deepEqual(decoder.next(), new Uint8Array(0));
  assert.deepEqual(decoder.next(), new Uint8Array(0));
  assert.deepEqual(decoder.next(), encoder.encode("a@b"));
  assert.equal(decoder.next(), null);
});

Deno.test("FrameDecoder with maxPayload 0 accepts only empty payloads", () => {
  const decoder = queryDecoder(0);
  decoder.push(header(TYPE_QUERY, 0));
  assert.deepEqual(decoder.next(), new Uint8Array(0));
  decoder.push(header(TYPE_QUERY, 1));
  assertProtocolError(() => decoder.next(), "too-long");
});

Deno.test("FrameDecoder accepts a payload exactly at maxPayload, whole or split", () => {
  const payload = new Uint8Array(MAX_QUERY_BYTES).fill(0x41);
  const bytes = frame(TYPE_QUERY, payload);
  assertSamePayloads(decodeChunks(queryDecoder(), [bytes]), [payload]);
  assertSamePayloads(decodeChunks(queryDecoder(), cutAt(bytes, [3, 500])), [payload]);
});

// --- FrameDecoder: rejecting bad frames early ---

Deno.test("FrameDecoder rejects a frame of the wrong type from its first byte alone", () => {
  for (const type of [0x47, TYPE_REPLY, 0x00, 0xff]) {
    const decoder = queryDecoder();
    decoder.push(Uint8Array.of(type));
    const error = assertProtocolError(() => decoder.next(), "unexpected-type");
    assert.match(error.message, new RegExp(`0x${type.toString(16).padStart(2, "0")}`));
  }
});

Deno.test("FrameDecoder names the byte and the expected type in an unexpected-type message", () => {
  const decoder = queryDecoder();
  decoder.push(encoder.encode("G"));
  const error = assertProtocolError(() => decoder.next(), "unexpected-type");
  assert.match(error.message, /0x47 \("G"\)/);
  assert.match(error.message, /0x51 \("Q"\)/);
});

Deno.test("FrameDecoder on a client rejects a Q frame as unexpected-type", () => {
  const decoder = new FrameDecoder({ type: TYPE_REPLY, maxPayload: MAX_REPLY_BYTES });
  decoder.push(encodeQuery("ada@example.com"));
  assertProtocolError(() => decoder.next(), "unexpected-type");
});

Deno.test("FrameDecoder rejects a wrong type that follows good frames, after yielding them", () => {
  const decoder = queryDecoder();
  decoder.push(concat([encodeQuery("a@x.org"), Uint8Array.of(0x47)]));
  assert.deepEqual(decoder.next(), encoder.encode("a@x.org"));
  assertProtocolError(() => decoder.next(), "unexpected-type");
});

Deno.test("FrameDecoder rejects a wrong type arriving alone in a later chunk", () => {
  const a = encodeQuery("a@x.org");
  const decoder = queryDecoder();
  decoder.push(a.subarray(0, 4));
  assert.equal(decoder.next(), null);
  decoder.push(a.subarray(4));
  assert.deepEqual(decoder.next(), encoder.encode("a@x.org"));
  assert.equal(decoder.next(), null);
  decoder.push(Uint8Array.of(TYPE_REPLY));
  assertProtocolError(() => decoder.next(), "unexpected-type");
});

Deno.test("FrameDecoder rejects a length over maxPayload from the 5-byte header, body never sent", () => {
  const decoder = queryDecoder();
  decoder.push(header(TYPE_QUERY, MAX_QUERY_BYTES + 1));
  const error = assertProtocolError(() => decoder.next(), "too-long");
  assert.match(error.message, /1025/);
  assert.match(error.message, /1024/);
});

Deno.test("FrameDecoder rejects a too-long header that arrives split, once its fifth byte arrives", () => {
  const bytes = header(TYPE_QUERY, 70_000);
  for (let cut = 1; cut < HEADER_SIZE; cut++) {
    const decoder = queryDecoder();
    decoder.push(bytes.subarray(0, cut));
    assert.equal(decoder.next(), null, `after ${cut} header bytes`);
    decoder.push(bytes.subarray(cut));
    assertProtocolError(() => decoder.next(), "too-long");
  }
});

Deno.test("FrameDecoder reads lengths of 2^31 and more as unsigned: 0xFFFFFFFF is too-long", () => {
  for (const length of [0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff]) {
    const decoder = queryDecoder();
    decoder.push(Uint8Array.of(TYPE_QUERY, length >>> 24, length >>> 16, length >>> 8, length));
    const error = assertProtocolError(() => decoder.next(), "too-long");
    assert.match(error.message, new RegExp(`\\b${length}\\b`), error.message);
    assert.doesNotMatch(error.message, /-\d/);
  }
  // The same, with the header split so the length is read from the carried bytes.
  const decoder = queryDecoder();
  decoder.push(Uint8Array.of(TYPE_QUERY, 0xff, 0xff));
  assert.equal(decoder.next(), null);
  decoder.push(Uint8Array.of(0xff, 0xff));
  assert.match(assertProtocolError(() => decoder.next(), "too-long").message, /4294967295/);
});

Deno.test("FrameDecoder reads each of the four length bytes with its weight", () => {
  for (const length of [1, 0x100, 0x10000, 0x1000000, 0x01020304]) {
    const decoder = new FrameDecoder({ type: TYPE_QUERY, maxPayload: length - 1 });
    decoder.push(header(TYPE_QUERY, length));
    const error = assertProtocolError(() => decoder.next(), "too-long");
    assert.match(error.message, new RegExp(`\\b${length}\\b`));
  }
  assert.deepEqual([...header(TYPE_QUERY, 0x01020304)], [TYPE_QUERY, 1, 2, 3, 4]);
});

Deno.test("FrameDecoder reset forgets a partial frame", () => {
  const decoder = queryDecoder();
  decoder.push(encodeQuery("ada@example.com").subarray(0, 9));
  assert.equal(decoder.next(), null);
  assert.equal(decoder.midFrame, true);
  decoder.reset();
  assert.equal(decoder.midFrame, false);
  assert.equal(decoder.buffered, 0);
  decoder.push(encodeQuery("bob@example.com"));
  assert.deepEqual(decoder.next(), encoder.encode("bob@example.com"));
});

Deno.test("FrameDecoder rejects a negative or fractional maxPayload with RangeError", () => {
  for (const maxPayload of [-1, 1.5, Number.NaN]) {
    assert.throws(() => new FrameDecoder({ type: TYPE_QUERY, maxPayload }), RangeError);
  }
});

// --- Properties ---

const PROPERTY_MAX_PAYLOAD = MAX_QUERY_BYTES;

Deno.test("property: any payloads, framed and cut into any chunks, decode to the same payloads", () => {
  fc.assert(
    fc.property(
      // size "max": without it fast-check keeps arrays to about 10 items.
      fc.array(fc.uint8Array({ maxLength: PROPERTY_MAX_PAYLOAD, size: "max" }), { maxLength: 12 }),
      fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 20 }),
      (payloads, fractions) => {
        const stream = concat(payloads.map((payload) => frame(TYPE_QUERY, payload)));
        const cuts = fractions.map((f) => Math.floor(f * stream.length)).sort((a, b) => a - b);
        const decoder = queryDecoder(PROPERTY_MAX_PAYLOAD);
        assertSamePayloads(decodeChunks(decoder, cutAt(stream, cuts)), payloads);
        assert.equal(decoder.midFrame, false);
      },
    ),
  );
});

Deno.test("property: payloads bigger than the decoder's first buffer survive any chunking", () => {
  const maxPayload = 6000;
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ minLength: 3000, maxLength: maxPayload, size: "max" }), {
        minLength: 1,
        maxLength: 4,
      }),
      fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 10 }),
      (payloads, fractions) => {
        const stream = concat(payloads.map((payload) => frame(TYPE_REPLY, payload)));
        const cuts = fractions.map((f) => Math.floor(f * stream.length)).sort((a, b) => a - b);
        const decoder = new FrameDecoder({ type: TYPE_REPLY, maxPayload });
        assertSamePayloads(decodeChunks(decoder, cutAt(stream, cuts)), payloads);
      },
    ),
    { numRuns: 50 },
  );
});

/**
 * The reference decoder: reads a whole byte stream at once and says which
 * payloads it holds and whether, and how, it breaks the protocol.
 */
function referenceDecode(
  stream: Uint8Array,
  type: number,
  maxPayload: number,
): { payloads: Uint8Array[]; error?: ProtocolErrorKind } {
  const payloads: Uint8Array[] = [];
  let offset = 0;
  while (offset < stream.length) {
    if (stream[offset] !== type) return { payloads, error: "unexpected-type" };
    if (stream.length - offset < HEADER_SIZE) break;
    const length = new DataView(stream.buffer, stream.byteOffset + offset + 1, 4).getUint32(0);
    if (length > maxPayload) return { payloads, error: "too-long" };
    if (stream.length - offset - HEADER_SIZE < length) break;
    payloads.push(stream.slice(offset + HEADER_SIZE, offset + HEADER_SIZE + length));
    offset += HEADER_SIZE + length;
  }
  return { payloads };
}

/** Stream pieces: mostly good frames, sometimes a header of any length or any bytes. */
const streamPiece = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.uint8Array({ maxLength: 10 }).map((payload) => frame(TYPE_QUERY, payload)),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.constantFrom(TYPE_QUERY, TYPE_REPLY), fc.nat({ max: 0xffffffff }))
      .map(([type, length]) => header(type, length)),
  },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 6 }) },
);

function checkAgainstReference(chunks: Uint8Array[], maxPayload: number): void {
  const decoder = queryDecoder(maxPayload);
  const payloads: Uint8Array[] = [];
  let error: ProtocolErrorKind | undefined;
  let pushed = 0;
  try {
    for (const chunk of chunks) {
      decoder.push(chunk);
      pushed += chunk.length;
      for (let payload; (payload = decoder.next()) !== null;) {
        assert.ok(payload.length <= maxPayload, `a ${payload.length}-byte payload was returned`);
        payloads.push(payload.slice());
      }
    }
  } catch (caught) {
    if (!(caught instanceof ProtocolError)) throw caught;
    error = caught.kind;
  }
  const expected = referenceDecode(concat(chunks), TYPE_QUERY, maxPayload);
  assertSamePayloads(payloads, expected.payloads);
  assert.equal(error, expected.error);
  if (error === undefined) {
    const used = payloads.reduce((sum, payload) => sum + HEADER_SIZE + payload.length, 0);
    assert.equal(used + decoder.buffered, pushed);
  }
}

Deno.test("property: random bytes only ever raise ProtocolError and yield what a reference decoder yields", () => {
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ maxLength: 24 }), { maxLength: 12 }),
      (chunks) => checkAgainstReference(chunks, 8),
    ),
    { numRuns: 500 },
  );
});

Deno.test("property: streams of frames and junk, in any chunks, decode as a reference decoder does", () => {
  fc.assert(
    fc.property(
      fc.array(streamPiece, { maxLength: 12 }),
      fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 12 }),
      (pieces, fractions) => {
        const stream = concat(pieces);
        const cuts = fractions.map((f) => Math.floor(f * stream.length)).sort((a, b) => a - b);
        checkAgainstReference(cutAt(stream, cuts), 8);
      },
    ),
    { numRuns: 1000 },
  );
});

Deno.test("decoder take() places each payload in payloadBytes without a view, push() honours a length", () => {
  const decoder = new FrameDecoder({ type: TYPE_QUERY, maxPayload: MAX_QUERY_BYTES });
  const frames = [encodeQuery("ada@example.com"), encodeQuery("bob@example.org")];
  // A reused read buffer with stale bytes past the length pushed.
  const buffer = new Uint8Array(64).fill(0x51);
  buffer.set(frames[0]);
  buffer.set(frames[1].subarray(0, 7), frames[0].length);
  decoder.push(buffer, frames[0].length + 7);
  assert.equal(decoder.take(), true);
  const { payloadBytes, payloadStart, payloadEnd } = decoder;
  assert.equal(
    new TextDecoder().decode(payloadBytes.subarray(payloadStart, payloadEnd)),
    "ada@example.com",
  );
  assert.equal(decoder.take(), false);
  buffer.fill(0);
  buffer.set(frames[1].subarray(7));
  decoder.push(buffer, frames[1].length - 7);
  assert.equal(decoder.take(), true);
  assert.equal(
    new TextDecoder().decode(
      decoder.payloadBytes.subarray(decoder.payloadStart, decoder.payloadEnd),
    ),
    "bob@example.org",
  );
  assert.equal(decoder.take(), false);
  assert.equal(decoder.midFrame, false);
});

Deno.test("FrameDecoder.peekPayloads finds the complete frames waiting, takes none, and skips a split one", () => {
  const frames = encodeQueries(["ada@example.com", "", "grace@example.com"]);
  const tail = encodeQuery("linus@example.com");
  const starts = new Int32Array(8);
  const ends = new Int32Array(8);
  const payloads = (decoder: FrameDecoder, count: number) =>
    Array.from(
      { length: count },
      (_, i) => new TextDecoder().decode(decoder.chunkBytes.subarray(starts[i], ends[i])),
    );
  const decoder = new FrameDecoder({ type: TYPE_QUERY, maxPayload: 1024 });
  // Three whole frames and the first 7 bytes of a fourth.
  const chunk = new Uint8Array([...frames, ...tail.subarray(0, 7)]);
  decoder.push(chunk);
  const count = decoder.peekPayloads(starts, ends);
  assert.deepEqual(payloads(decoder, count), ["ada@example.com", "", "grace@example.com"]);
  // Nothing was taken: the frames come out as before.
  assert.equal(new TextDecoder().decode(decoder.next()!), "ada@example.com");
  assert.deepEqual(payloads(decoder, decoder.peekPayloads(starts, ends)), [
    "",
    "grace@example.com",
  ]);
  // At most as many as the arrays hold.
  assert.equal(decoder.peekPayloads(starts.subarray(0, 1), ends), 1);
  decoder.next();
  decoder.next();
  assert.equal(decoder.next(), null);
  // The rest of the split frame, then another: only the frame wholly in this chunk is listed.
  decoder.push(new Uint8Array([...tail.subarray(7), ...encodeQuery("x@y")]));
  assert.deepEqual(payloads(decoder, decoder.peekPayloads(starts, ends)), ["x@y"]);
  assert.equal(new TextDecoder().decode(decoder.next()!), "linus@example.com");
  assert.equal(new TextDecoder().decode(decoder.next()!), "x@y");
  // A bad header ends the list; take reports it.
  decoder.push(new Uint8Array([...encodeQuery("a@b"), 0x52, 0, 0, 0, 0]));
  assert.deepEqual(payloads(decoder, decoder.peekPayloads(starts, ends)), ["a@b"]);
  decoder.next();
  assert.throws(() => decoder.next(), ProtocolError);
});
