/**
 * How the benchmark writes numbers for people: counts with thousands
 * separators, durations in the unit that keeps them short. Its own module,
 * so that the options (bench/args.ts) and the report (bench/report.ts) can
 * both use it without importing each other.
 *
 * @module
 */

const countFormat = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const MICROS_PER_MS = 1000;
const MICROS_PER_S = 1_000_000;

/** Formats a count with thousands separators: `1,234,567`. */
export function formatCount(count: number): string {
  return countFormat.format(count);
}

/** Formats microseconds with a unit that keeps it short: `85 µs`, `1.24 ms`, `2.50 s`. */
export function formatMicros(micros: number): string {
  // The thresholds sit half a unit low so that rounding never shows "1000 µs" or "1.00e+3 ms".
  if (micros < MICROS_PER_MS - 0.5) return `${Math.round(micros)} µs`;
  if (micros < MICROS_PER_S - MICROS_PER_MS / 2) {
    return `${(micros / MICROS_PER_MS).toPrecision(3)} ms`;
  }
  return `${(micros / MICROS_PER_S).toFixed(2)} s`;
}
