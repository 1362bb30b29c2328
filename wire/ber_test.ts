import assert from "node:assert/strict";
import fc from "fast-check";
import * as asn1js from "asn1js";
import {
  beginConstructed,
  BerError,
  BerReader,
  BerTag,
  decodeUtf8Escaped,
  endConstructed,
  lengthFieldSize,
  lengthSize,
  writeBoolean,
  writeHeader,
  writeInteger,
  writeOctetString,
  writeString,
} from "./ber.ts";
import { ReplyBuffer } from "./front_end.ts";

const encoder = new TextEncoder();

function written(write: (out: ReplyBuffer) => void): Uint8Array {
  const out = new ReplyBuffer();
  write(out);
  return out.bytes.slice(0, out.length);
}

function hex(bytes: Uint8Array | ArrayBuffer): string {
  return [...new Uint8Array(bytes)].map((b) => b.toString(16).padStart(2, "0")).join(" ");
}

/** The minimal length field for `length`, computed apart from the code under test. */
function minimalLength(length: number): number[] {
  if (length < 128) return [length];
  const octets: number[] = [];
  for (let rest = length; rest > 0; rest = Math.floor(rest / 256)) octets.unshift(rest % 256);
  return [0x80 | octets.length, ...octets];
}

Deno.test("writeInteger writes the bytes asn1js writes, for every 32-bit value tried", () => {
  const edges = [0, 1, -1, 127, 128, 255, 256, -128, -129, 32767, 32768, -32768, -32769];
  const values = [...edges, 0x7fffff, 0x800000, -0x800000, -0x800001, 2 ** 31 - 1, -(2 ** 31)];
  const check = (value: number) => {
    const ours = written((out) => writeInteger(out, BerTag.integer, value));
    const theirs = new asn1js.Integer({ value }).toBER();
    assert.equal(hex(ours), hex(theirs), `value ${value}`);
  };
  values.forEach(check);
  fc.assert(fc.property(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), check), {
    seed: 17,
    numRuns: 2000,
  });
});

Deno.test("readInteger reads back every 32-bit value, past 2^31 without a sign flip", () => {
  fc.assert(
    fc.property(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), (value) => {
      const bytes = written((out) => writeInteger(out, BerTag.enumerated, value));
      const reader = new BerReader(bytes);
      assert.equal(reader.readInteger(BerTag.enumerated), value);
      assert.ok(reader.atEnd);
    }),
    { seed: 17, numRuns: 2000 },
  );
  // 0x80 00 00 00 is -2^31, not +2^31; 00 ff ff ff ff would be 5 octets, which is refused.
  assert.equal(new BerReader(Uint8Array.of(2, 4, 0x80, 0, 0, 0)).readInteger(), -(2 ** 31));
  assert.equal(
    new BerReader(Uint8Array.of(2, 4, 0x7f, 0xff, 0xff, 0xff)).readInteger(),
    2 ** 31 - 1,
  );
  assert.equal(new BerReader(Uint8Array.of(2, 2, 0, 0x80)).readInteger(), 128);
});

Deno.test("readInteger refuses an empty integer and one over 4 octets", () => {
  assert.throws(() => new BerReader(Uint8Array.of(2, 0)).readInteger(), BerError);
  assert.throws(
    () => new BerReader(Uint8Array.of(2, 5, 0, 0xff, 0xff, 0xff, 0xff)).readInteger(),
    /5 octets is not 1 to 4/,
  );
});

Deno.test("writeInteger refuses values that are not 32-bit whole numbers", () => {
  for (const value of [2 ** 31, -(2 ** 31) - 1, 1.5, NaN]) {
    assert.throws(() => written((out) => writeInteger(out, BerTag.integer, value)), RangeError);
  }
});

Deno.test("lengths: short and long forms, non-minimal accepted, indefinite and over 4 octets refused", () => {
  // 04 81 03 'abc' and 04 84 00 00 00 03 'abc' are both 'abc'.
  for (const header of [[0x04, 0x03], [0x04, 0x81, 0x03], [0x04, 0x84, 0, 0, 0, 0x03]]) {
    const reader = new BerReader(Uint8Array.of(...header, 0x61, 0x62, 0x63));
    assert.equal(reader.readString(), "abc");
    assert.ok(reader.atEnd);
  }
  assert.throws(() => new BerReader(Uint8Array.of(0x30, 0x80, 0, 0)).enter(0x30), /indefinite/);
  assert.throws(
    () => new BerReader(Uint8Array.of(0x04, 0x85, 0, 0, 0, 0, 1, 0x61)).readString(),
    /5 octets is over the limit of 4/,
  );
  assert.equal(lengthFieldSize(0x7f), 1);
  assert.equal(lengthFieldSize(0x84), 5);
  assert.throws(() => lengthFieldSize(0xff), BerError);
});

Deno.test("a length is checked against its enclosing element before it is used", () => {
  // A string that claims 2^32 - 1 bytes inside a 6-byte message: refused, nothing allocated.
  const reader = new BerReader(Uint8Array.of(0x04, 0x84, 0xff, 0xff, 0xff, 0xff, 0x61));
  assert.throws(() => reader.readBytes(), /length 4294967295 runs past its enclosing element/);
  // An inner element longer than the sequence that holds it.
  const nested = new BerReader(Uint8Array.of(0x30, 0x03, 0x04, 0x05, 0x61, 0x62, 0x63, 0x64, 0x65));
  nested.enter(0x30);
  assert.throws(() => nested.readString(), /runs past its enclosing element/);
  // Truncated headers.
  assert.throws(() => new BerReader(Uint8Array.of(0x04)).readString(), /before its length/);
  assert.throws(
    () => new BerReader(Uint8Array.of(0x04, 0x82, 0x01)).readString(),
    /inside its length/,
  );
});

Deno.test("the reader says which tag it expected, and refuses high tag numbers when skipping", () => {
  assert.throws(
    () => new BerReader(Uint8Array.of(0x04, 0)).readInteger(),
    /Expected an element with tag 0x02, not 0x04/,
  );
  assert.throws(() => new BerReader(Uint8Array.of(0x1f, 0x81, 0x01, 0)).skip(), /high tag number/);
  assert.throws(() => new BerReader(EMPTY_BYTES).peekTag(), /missing/);
});

const EMPTY_BYTES = new Uint8Array(0);

Deno.test("enter and leave walk nested elements, skipping what is not read", () => {
  // SEQUENCE { INTEGER 5, SEQUENCE { BOOLEAN TRUE, NULL }, OCTET STRING "x" }
  const bytes = Uint8Array.of(0x30, 0x0d, 2, 1, 5, 0x30, 0x05, 1, 1, 0xff, 5, 0, 4, 1, 0x78);
  const reader = new BerReader(bytes);
  const outer = reader.enter(0x30);
  assert.equal(reader.readInteger(), 5);
  const inner = reader.enter(0x30);
  assert.equal(reader.readBoolean(), true);
  reader.leave(inner); // the NULL is skipped
  assert.equal(reader.readString(), "x");
  assert.ok(reader.atEnd);
  reader.leave(outer);
  assert.equal(reader.offset, bytes.length);
});

Deno.test("skip moves past one element of any tag, constructed or not", () => {
  const reader = new BerReader(Uint8Array.of(0xaa, 3, 4, 1, 0x78, 0x42, 0, 2, 1, 5));
  assert.equal(reader.skip(), 0xaa);
  assert.equal(reader.skip(), 0x42);
  assert.equal(reader.readInteger(), 5);
  assert.ok(reader.atEnd);
});

Deno.test("readBoolean takes any non-zero octet as true and refuses other lengths", () => {
  assert.equal(new BerReader(Uint8Array.of(1, 1, 0)).readBoolean(), false);
  assert.equal(new BerReader(Uint8Array.of(1, 1, 1)).readBoolean(), true);
  assert.throws(() => new BerReader(Uint8Array.of(1, 2, 0, 0)).readBoolean(), /2 octets/);
});

Deno.test("readBytes copies and readView does not", () => {
  const bytes = Uint8Array.of(4, 2, 7, 8);
  const copy = new BerReader(bytes).readBytes();
  const view = new BerReader(bytes).readView();
  bytes[2] = 9;
  assert.deepEqual([...copy], [7, 8]);
  assert.deepEqual([...view], [9, 8]);
});

Deno.test("endConstructed writes minimal lengths, moving the content when needed", () => {
  for (const size of [0, 1, 127, 128, 255, 256, 65535, 65536, 70000]) {
    const content = new Uint8Array(size).map((_, i) => i % 251);
    const bytes = written((out) => {
      out.append(Uint8Array.of(0xee)); // something before, which must stay put
      const start = beginConstructed(out, BerTag.sequence);
      out.append(content);
      endConstructed(out, start);
      out.append(Uint8Array.of(0xdd)); // and after
    });
    const header = [0x30, ...minimalLength(size)];
    assert.deepEqual([...bytes.subarray(1, 1 + header.length)], header, `size ${size}`);
    assert.deepEqual(bytes.subarray(1 + header.length, 1 + header.length + size), content);
    assert.equal(bytes.length, 2 + header.length + size);
    assert.equal(bytes[0], 0xee);
    assert.equal(bytes[bytes.length - 1], 0xdd);
    assert.equal(lengthSize(size), header.length - 1);
  }
});

Deno.test("nested constructed elements with long contents parse with asn1js", () => {
  const values = ["a".repeat(100), "b".repeat(300), "c".repeat(70000)];
  const bytes = written((out) => {
    const outer = beginConstructed(out, BerTag.sequence);
    writeInteger(out, BerTag.integer, 200);
    const set = beginConstructed(out, BerTag.set);
    for (const value of values) writeString(out, BerTag.octetString, value);
    endConstructed(out, set);
    writeBoolean(out, BerTag.boolean, true);
    endConstructed(out, outer);
  });
  const parsed = asn1js.fromBER(bytes);
  assert.equal(parsed.offset, bytes.length, "asn1js read every byte");
  const sequence = parsed.result as asn1js.Sequence;
  const [integer, set, boolean] = sequence.valueBlock.value;
  assert.equal((integer as asn1js.Integer).valueBlock.valueDec, 200);
  const strings = (set as asn1js.Set).valueBlock.value.map((s) =>
    new TextDecoder().decode((s as asn1js.OctetString).valueBlock.valueHexView)
  );
  assert.deepEqual(strings, values);
  assert.equal((boolean as asn1js.Boolean).valueBlock.value, true);
});

Deno.test("writeString encodes UTF-8 in place with a minimal length, whatever the text", () => {
  fc.assert(
    fc.property(
      fc.string({ unit: "binary", maxLength: 200 }),
      fc.integer({ min: 0, max: 3 }),
      (text, repeat) => {
        const value = text.repeat(repeat * 20 + 1);
        const utf8 = encoder.encode(value);
        const bytes = written((out) => writeString(out, BerTag.octetString, value));
        assert.deepEqual(
          bytes,
          Uint8Array.of(BerTag.octetString, ...minimalLength(utf8.length), ...utf8),
        );
        const other = written((out) => writeOctetString(out, BerTag.octetString, utf8));
        assert.deepEqual(bytes, other);
      },
    ),
    { seed: 17, numRuns: 500 },
  );
});

Deno.test("writeHeader writes a tag and a minimal length", () => {
  assert.equal(hex(written((out) => writeHeader(out, 0x04, 5))), "04 05");
  assert.equal(hex(written((out) => writeHeader(out, 0x04, 300))), "04 82 01 2c");
  assert.equal(hex(written((out) => writeHeader(out, 0x04, 2 ** 31))), "04 84 80 00 00 00");
});

/** Undoes decodeUtf8Escaped: lone U+DCxx back to the byte xx, the rest as UTF-8. */
function unescape(text: string): Uint8Array {
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    const next = text.charCodeAt(i + 1);
    if (code >= 0xd800 && code <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
      bytes.push(...encoder.encode(text.slice(i, i + 2)));
      i++;
    } else if (code >= 0xdc80 && code <= 0xdcff) {
      bytes.push(code - 0xdc00);
    } else {
      bytes.push(...encoder.encode(text[i]));
    }
  }
  return Uint8Array.from(bytes);
}

Deno.test("decodeUtf8Escaped: valid UTF-8 as TextDecoder has it, any other bytes kept as lone surrogates", () => {
  const strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  const isUtf8 = (bytes: Uint8Array) => {
    try {
      strict.decode(bytes);
      return true;
    } catch {
      return false;
    }
  };
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 40 }),
        // Past the short-text path: the engine's decoder, and the escaping after it fails.
        fc.uint8Array({ minLength: 250, maxLength: 700 }),
        fc.string({ unit: "binary", minLength: 100, maxLength: 400 }).map((s) => encoder.encode(s)),
        fc.string({ unit: "binary" }).map((s) => encoder.encode(s)),
        fc.tuple(fc.string({ unit: "binary" }), fc.uint8Array({ maxLength: 3 })).map(([s, b]) =>
          Uint8Array.of(...encoder.encode(s), ...b, ...encoder.encode(s))
        ),
      ),
      (bytes) => {
        const text = decodeUtf8Escaped(bytes);
        assert.equal(text.isWellFormed(), isUtf8(bytes));
        if (isUtf8(bytes)) assert.equal(text, strict.decode(bytes));
        assert.deepEqual(unescape(text), bytes, "nothing is lost");
      },
    ),
    { seed: 17, numRuns: 3000 },
  );
  // A reader decodes the same from the middle of a buffer.
  const framed = Uint8Array.of(0x04, 0x03, 0x61, 0xc3, 0xff, 0x62);
  assert.equal(new BerReader(framed, 0, 5).readString(), "a\udcc3\udcff");
  // Overlong, surrogate, past U+10FFFF and truncated forms are escaped byte by byte.
  assert.equal(decodeUtf8Escaped(Uint8Array.of(0xc0, 0xaf)), "\udcc0\udcaf");
  assert.equal(decodeUtf8Escaped(Uint8Array.of(0xed, 0xa0, 0x80)), "\udced\udca0\udc80");
  assert.equal(
    decodeUtf8Escaped(Uint8Array.of(0xf4, 0x90, 0x80, 0x80)),
    "\udcf4\udc90\udc80\udc80",
  );
  assert.equal(decodeUtf8Escaped(Uint8Array.of(0x41, 0xe2, 0x82)), "A\udce2\udc82");
  assert.equal(decodeUtf8Escaped(Uint8Array.of(0xff, 0xf0, 0x9f, 0x8e, 0x89)), "\udcff🎉");
});
