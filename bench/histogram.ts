/**
 * The load generator's latency histogram: log-linear buckets of fixed
 * number, plain data so that threads can post it to each other, merged and
 * read as percentiles.
 *
 * ```ts
 * import { createHistogram, percentile, recordValue } from "./histogram.ts";
 *
 * const histogram = createHistogram();
 * for (const micros of [120, 95, 3000]) recordValue(histogram, micros);
 * percentile(histogram, 50); // 120
 * ```
 *
 * @module
 */

/**
 * Linear sub-buckets per power of two: values up to 2^7 are exact, larger
 * ones land in a bucket at most 1/64 (1.6%) wide relative to its value.
 */
export const HISTOGRAM_SUB_BITS = 6;
const SUB_BUCKETS = 1 << HISTOGRAM_SUB_BITS;
/** The largest value recorded as itself, in microseconds (about 71 minutes); larger ones are clamped. */
export const HISTOGRAM_MAX_VALUE = 0xffff_ffff;
/** Buckets in a histogram: enough for every value up to {@linkcode HISTOGRAM_MAX_VALUE}. */
export const HISTOGRAM_BUCKETS = (32 - HISTOGRAM_SUB_BITS + 1) * SUB_BUCKETS;

/**
 * A log-linear histogram of non-negative whole numbers (latencies in
 * microseconds here). Its size is fixed whatever it holds. It is plain data,
 * so it can be posted between threads.
 */
export interface Histogram {
  /** How many values fell in each bucket; see {@linkcode bucketIndex}. */
  counts: Float64Array;
  /** How many values were recorded. */
  total: number;
  /** The smallest value recorded, or 0 when empty. */
  min: number;
  /** The largest value recorded, or 0 when empty. */
  max: number;
  /** The sum of the values recorded, for the mean. */
  sum: number;
}

/** Creates an empty histogram. */
export function createHistogram(): Histogram {
  return { counts: new Float64Array(HISTOGRAM_BUCKETS), total: 0, min: 0, max: 0, sum: 0 };
}

/**
 * The bucket a value falls in. Values below 2^(SUB_BITS+1) have a bucket
 * each; above that, each power of two is split into 2^SUB_BITS equal parts.
 */
export function bucketIndex(value: number): number {
  if (value < 2 * SUB_BUCKETS) return value;
  const shift = 31 - Math.clz32(value) - HISTOGRAM_SUB_BITS;
  return (shift << HISTOGRAM_SUB_BITS) + (value >>> shift);
}

/** The smallest and largest value that fall in bucket `index`. */
export function bucketRange(index: number): [number, number] {
  if (index < 2 * SUB_BUCKETS) return [index, index];
  const shift = (index >>> HISTOGRAM_SUB_BITS) - 1;
  const top = SUB_BUCKETS + (index & (SUB_BUCKETS - 1));
  return [top * 2 ** shift, (top + 1) * 2 ** shift - 1];
}

/**
 * Records one value, rounded to a whole number and clamped to
 * 0..{@linkcode HISTOGRAM_MAX_VALUE}.
 */
export function recordValue(histogram: Histogram, value: number): void {
  const whole = Math.min(Math.max(Math.round(value), 0), HISTOGRAM_MAX_VALUE);
  histogram.counts[bucketIndex(whole)]++;
  if (histogram.total === 0 || whole < histogram.min) histogram.min = whole;
  if (whole > histogram.max) histogram.max = whole;
  histogram.total++;
  histogram.sum += whole;
}

/** Adds every value recorded in `from` to `into`. */
export function mergeHistogram(into: Histogram, from: Histogram): void {
  if (from.total === 0) return;
  for (let i = 0; i < HISTOGRAM_BUCKETS; i++) into.counts[i] += from.counts[i];
  into.min = into.total === 0 ? from.min : Math.min(into.min, from.min);
  into.max = Math.max(into.max, from.max);
  into.total += from.total;
  into.sum += from.sum;
}

/**
 * The value below or at which `p` percent of the recorded values lie: the
 * highest value of the bucket holding that rank, never above the maximum
 * recorded. 0 for an empty histogram.
 *
 * @throws {RangeError} when `p` is not within 0..100.
 */
export function percentile(histogram: Histogram, p: number): number {
  if (!(p >= 0 && p <= 100)) throw new RangeError(`Percentile ${p} is not within 0..100.`);
  if (histogram.total === 0) return 0;
  const rank = Math.max(1, Math.ceil((p / 100) * histogram.total));
  let seen = 0;
  for (let i = 0; i < HISTOGRAM_BUCKETS; i++) {
    seen += histogram.counts[i];
    if (seen >= rank) return Math.max(Math.min(bucketRange(i)[1], histogram.max), histogram.min);
  }
  return histogram.max;
}
