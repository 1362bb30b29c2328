import assert from "node:assert/strict";
import { formatCount, formatMicros } from "./format.ts";

Deno.test("formatMicros picks µs, ms or s and never shows 1000 of a unit", () => {
  assert.equal(formatMicros(0), "0 µs");
  assert.equal(formatMicros(85), "85 µs");
  assert.equal(formatMicros(999.4), "999 µs");
  assert.equal(formatMicros(1240), "1.24 ms");
  assert.equal(formatMicros(12_345), "12.3 ms");
  assert.equal(formatMicros(999_400), "999 ms");
  assert.equal(formatMicros(999_600), "1.00 s");
  assert.equal(formatMicros(2_500_000), "2.50 s");
});

Deno.test("formatCount separates thousands", () => {
  assert.equal(formatCount(1234567), "1,234,567");
  assert.equal(formatCount(12), "12");
});
