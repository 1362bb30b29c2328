import assert from "node:assert/strict";
import fc from "fast-check";
import { decodeText, decodeUtf8, MAX_UTF8_PER_UNIT, writeCodePoint, writeUtf8 } from "./utf8.ts";

Deno.test("writeUtf8 writes what TextEncoder writes, lone surrogates included", () => {
  fc.assert(
    fc.property(
      fc.string({ unit: "binary" }),
      fc.string({
        unit: fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c)),
      }),
      (text, surrogates) => {
        const value = text + surrogates + text;
        const out = new Uint8Array(value.length * MAX_UTF8_PER_UNIT + 2);
        const end = writeUtf8(value, out, 2);
        assert.deepEqual(out.subarray(2, end), new TextEncoder().encode(value));
      },
    ),
  );
});

Deno.test("writeCodePoint writes 1 to 4 bytes", () => {
  for (const char of ["A", "é", "李", "🎉"]) {
    const out = new Uint8Array(4);
    const end = writeCodePoint(char.codePointAt(0)!, out, 0);
    assert.deepEqual(out.subarray(0, end), new TextEncoder().encode(char));
  }
});

Deno.test("decodeUtf8 refuses bytes that are not UTF-8 and keeps a leading U+FEFF", () => {
  assert.equal(decodeUtf8(Uint8Array.of(0x61, 0xff)), undefined);
  assert.equal(decodeUtf8(Uint8Array.of(0xed, 0xa0, 0x80)), undefined);
  assert.equal(decodeUtf8(new TextEncoder().encode("\ufeffzoë")), "\ufeffzoë");
  assert.equal(decodeUtf8(new Uint8Array(0)), "");
});

Deno.test("decodeText reads short ASCII itself and hands the rest to the decoder, alike", () => {
  const encoder = new TextEncoder();
  for (
    const text of [
      "",
      "ada@example.com",
      "Zoë Quinn",
      "x".repeat(200),
      "李小龙",
      "a".repeat(63) + "é",
    ]
  ) {
    const bytes = encoder.encode(`[${text}]`);
    assert.equal(decodeText(bytes, 1, bytes.length - 1), text);
  }
  assert.equal(
    decodeText(Uint8Array.of(0x61, 0xff, 0x62), 0, 3),
    "a\uFFFDb",
    "invalid bytes replaced",
  );
});
