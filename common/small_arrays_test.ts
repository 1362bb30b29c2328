import assert from "node:assert/strict";
import fc from "fast-check";
import {
  copyBytes,
  encodeSmall,
  SLAB_BYTES,
  smallBytes,
  smallInt32,
  smallUint32,
} from "./small_arrays.ts";

Deno.test("small arrays are zero-filled, of the length asked, and never share a byte", () => {
  const arrays: (Uint8Array | Int32Array | Uint32Array)[] = [];
  // Enough to use up several slabs, so that arrays cut across a change of slab are covered.
  for (let i = 0; i < 3 * SLAB_BYTES / 40; i++) {
    const length = i % 13;
    const array = i % 3 === 0
      ? smallBytes(length)
      : i % 3 === 1
      ? smallInt32(length)
      : smallUint32(length);
    assert.equal(array.length, length);
    assert.ok(array.every((value) => value === 0), "zero-filled");
    array.fill(i % 3 === 0 ? 0xff : -1);
    arrays.push(array);
  }
  // Had two overlapped, the later fill would show in the earlier one's neighbour check below.
  for (const array of arrays) {
    const expected = array instanceof Uint8Array
      ? 0xff
      : array instanceof Int32Array
      ? -1
      : 0xffffffff;
    assert.ok(array.every((value) => value === expected));
  }
  assert.equal(smallInt32(5).byteOffset % 4, 0, "aligned for its element size");
});

Deno.test("arrays too large for a slab get their own buffer", () => {
  assert.equal(smallBytes(SLAB_BYTES).buffer.byteLength, SLAB_BYTES);
  assert.equal(smallBytes(SLAB_BYTES).byteOffset, 0);
  assert.notEqual(smallBytes(SLAB_BYTES).buffer, smallBytes(SLAB_BYTES).buffer);
  assert.equal(encodeSmall("x".repeat(SLAB_BYTES)).length, SLAB_BYTES);
});

Deno.test("property: encodeSmall is TextEncoder.encode and copyBytes is slice", () => {
  const encoder = new TextEncoder();
  fc.assert(
    fc.property(fc.string({ unit: "grapheme" }), fc.string({ unit: "binary" }), (text, units) => {
      for (const value of [text, units, `${text}\ud800${units}`]) {
        const encoded = encodeSmall(value);
        assert.deepEqual(encoded, encoder.encode(value));
        const from = Math.min(1, encoded.length);
        assert.deepEqual(copyBytes(encoded, from, encoded.length), encoded.slice(from));
      }
    }),
    { numRuns: 500 },
  );
});
