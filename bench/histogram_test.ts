import assert from "node:assert/strict";
import fc from "fast-check";
import {
  bucketIndex,
  bucketRange,
  createHistogram,
  HISTOGRAM_BUCKETS,
  HISTOGRAM_MAX_VALUE,
  HISTOGRAM_SUB_BITS,
  mergeHistogram,
  percentile,
  recordValue,
} from "./histogram.ts";

Deno.test("bucketIndex puts every value in a bucket whose range holds it", () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: HISTOGRAM_MAX_VALUE }), (value) => {
      const index = bucketIndex(value);
      assert.ok(index >= 0 && index < HISTOGRAM_BUCKETS);
      const [low, high] = bucketRange(index);
      assert.ok(low <= value && value <= high, `${value} not in [${low}, ${high}]`);
    }),
  );
});

Deno.test("bucketRange keeps buckets within 1/64 of their values, and exact below 128", () => {
  for (let value = 0; value < 2 << HISTOGRAM_SUB_BITS; value++) {
    assert.deepEqual(bucketRange(bucketIndex(value)), [value, value]);
  }
  fc.assert(
    fc.property(fc.integer({ min: 128, max: HISTOGRAM_MAX_VALUE }), (value) => {
      const [low, high] = bucketRange(bucketIndex(value));
      assert.ok(high - low + 1 <= low / (1 << HISTOGRAM_SUB_BITS));
    }),
  );
});

Deno.test("bucketIndex is contiguous: each bucket starts right after the previous one", () => {
  for (let index = 1; index <= bucketIndex(HISTOGRAM_MAX_VALUE); index++) {
    assert.equal(bucketRange(index)[0], bucketRange(index - 1)[1] + 1, `bucket ${index}`);
  }
  assert.equal(bucketRange(bucketIndex(HISTOGRAM_MAX_VALUE))[1], HISTOGRAM_MAX_VALUE);
});

Deno.test("percentile is exact for small values", () => {
  const histogram = createHistogram();
  for (let value = 1; value <= 100; value++) recordValue(histogram, value);
  assert.equal(percentile(histogram, 0), 1);
  assert.equal(percentile(histogram, 50), 50);
  assert.equal(percentile(histogram, 99), 99);
  assert.equal(percentile(histogram, 99.9), 100);
  assert.equal(percentile(histogram, 100), 100);
});

Deno.test("percentile is within 1/64 of the exact value for large ones", () => {
  const histogram = createHistogram();
  const count = 100_000;
  for (let value = 1; value <= count; value++) recordValue(histogram, value * 37);
  for (const p of [50, 90, 99, 99.9]) {
    const exact = Math.ceil((p / 100) * count) * 37;
    const got = percentile(histogram, p);
    assert.ok(got >= exact && got <= exact * (1 + 1 / 64), `p${p}: ${got} vs ${exact}`);
  }
  assert.equal(percentile(histogram, 100), count * 37);
});

Deno.test("percentile of an empty histogram is 0, and a bad percentile throws RangeError", () => {
  const histogram = createHistogram();
  assert.equal(percentile(histogram, 99), 0);
  assert.throws(() => percentile(histogram, 101), RangeError);
  assert.throws(() => percentile(histogram, NaN), RangeError);
});

Deno.test("recordValue rounds, clamps to the range, and tracks min, max and sum", () => {
  const histogram = createHistogram();
  recordValue(histogram, 10.4);
  recordValue(histogram, -5);
  recordValue(histogram, 2 ** 40);
  assert.equal(histogram.total, 3);
  assert.equal(histogram.min, 0);
  assert.equal(histogram.max, HISTOGRAM_MAX_VALUE);
  assert.equal(histogram.sum, 10 + HISTOGRAM_MAX_VALUE);
  assert.equal(histogram.counts.length, HISTOGRAM_BUCKETS);
});

Deno.test("mergeHistogram gives the same histogram as recording everything in one", () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 0, max: 10_000_000 })),
      fc.array(fc.integer({ min: 0, max: 10_000_000 })),
      (left, right) => {
        const a = createHistogram();
        const b = createHistogram();
        const both = createHistogram();
        for (const value of left) recordValue(a, value), recordValue(both, value);
        for (const value of right) recordValue(b, value), recordValue(both, value);
        mergeHistogram(a, b);
        assert.deepEqual(a, both);
      },
    ),
  );
});
