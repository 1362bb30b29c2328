/**
 * Summarising repeated log events, so that a client refused a thousand
 * times a second gives one log line a minute, not a thousand a second.
 *
 * A server that logs every refusal hands an abusive client a way to fill
 * the disk and bury other events, and the volume itself hides what matters:
 * who was refused, why, and how often. So the first event of a kind (for
 * example "192.0.2.7 rate_limited") is reported at once, later ones are
 * only counted, and the count is reported with the first event after the
 * interval, or by {@linkcode RepeatSummary.flush}, which the server calls
 * from a timer so that a burst that stops is still reported. Pure: time is
 * passed in. Each thread keeps its own summary; the memory is bounded.
 *
 * ```ts
 * import { RepeatSummary } from "./log_repeats.ts";
 *
 * const repeats = new RepeatSummary({ intervalMs: 60_000 });
 * repeats.note("192.0.2.7 rate_limited", 0); // 1: log it now
 * repeats.note("192.0.2.7 rate_limited", 10); // 0: counted, not logged
 * repeats.note("192.0.2.7 rate_limited", 20); // 0
 * repeats.flush(60_000); // [["192.0.2.7 rate_limited", 2]]: 2 more since the last line
 * ```
 *
 * @module
 */

/** Options for a {@linkcode RepeatSummary}. */
export interface RepeatSummaryOptions {
  /** At most one report per key in this many milliseconds; a minute by default. */
  intervalMs?: number;
  /** Keys remembered at most; the one known longest is forgotten first, with its unreported repeats. */
  maxKeys?: number;
}

/** One minute, the default interval between two reports of one key. */
export const DEFAULT_REPEAT_INTERVAL_MS = 60_000;
/** Keys remembered by default. */
export const DEFAULT_REPEAT_KEYS = 10_000;

interface Entry {
  /** When the key was last reported. */
  reportedAt: number;
  /** Occurrences since then that were not reported. */
  unreported: number;
}

/**
 * Counts occurrences per key and says when to report them: at most once
 * per interval per key.
 */
export class RepeatSummary {
  readonly #intervalMs: number;
  readonly #maxKeys: number;
  readonly #entries = new Map<string, Entry>();

  /**
   * Creates an empty summary.
   *
   * @throws {RangeError} when the interval is not positive or `maxKeys` is under 1.
   */
  constructor(options: RepeatSummaryOptions = {}) {
    this.#intervalMs = options.intervalMs ?? DEFAULT_REPEAT_INTERVAL_MS;
    this.#maxKeys = options.maxKeys ?? DEFAULT_REPEAT_KEYS;
    if (!(this.#intervalMs > 0)) {
      throw new RangeError(`Repeat interval must be over 0 ms, not ${this.#intervalMs}.`);
    }
    if (!(Number.isInteger(this.#maxKeys) && this.#maxKeys >= 1)) {
      throw new RangeError(`Repeat summary must keep at least 1 key, not ${this.#maxKeys}.`);
    }
  }

  /** Keys remembered now. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * Counts one occurrence of `key` at `now` (ms). Returns how many
   * occurrences to report now, this one included (1 for a new key, more
   * after an interval of repeats), or 0 to stay quiet.
   */
  note(key: string, now: number): number {
    const entry = this.#entries.get(key);
    if (entry === undefined) {
      if (this.#entries.size >= this.#maxKeys) this.#forgetOldest();
      this.#entries.set(key, { reportedAt: now, unreported: 0 });
      return 1;
    }
    if (now - entry.reportedAt < this.#intervalMs) {
      entry.unreported++;
      return 0;
    }
    const count = entry.unreported + 1;
    entry.reportedAt = now;
    entry.unreported = 0;
    return count;
  }

  /**
   * Reports the keys whose interval has passed with repeats not yet
   * reported, as `[key, count]` pairs, and forgets keys quiet for a whole
   * interval, so that the next occurrence is reported at once.
   */
  flush(now: number): [string, number][] {
    const due: [string, number][] = [];
    for (const [key, entry] of this.#entries) {
      if (now - entry.reportedAt < this.#intervalMs) continue;
      if (entry.unreported > 0) due.push([key, entry.unreported]);
      this.#entries.delete(key);
    }
    return due;
  }

  #forgetOldest(): void {
    const oldest = this.#entries.keys().next();
    if (!oldest.done) this.#entries.delete(oldest.value);
  }
}

/**
 * One kind of failure that comes in episodes (accept out of descriptors):
 * the first failure of an episode is reported at once, later ones only
 * counted and reported with their count at most once an interval, and the
 * episode ends once a success comes after a quiet time with no failure,
 * reporting how many there were. Under exhaustion, successes and failures
 * alternate (each descriptor freed is taken at once), so a success alone
 * does not end it. A server retrying every 100 ms for an hour logs about
 * sixty lines, not 36,000. Pure: time is passed in.
 *
 * ```ts
 * import { FailureEpisode } from "./log_repeats.ts";
 *
 * const accepts = new FailureEpisode({ intervalMs: 60_000, quietMs: 2000 });
 * accepts.failed(0); // 1: log it now
 * accepts.failed(100); // 0: counted
 * accepts.succeeded(200); // 0: too soon to say it is over
 * accepts.succeeded(2100); // 2: over, after 2 failures
 * accepts.succeeded(2200); // 0: no episode
 * ```
 */
export class FailureEpisode {
  readonly #intervalMs: number;
  readonly #quietMs: number;
  #failures = 0;
  #unreported = 0;
  #reportedAt = 0;
  #lastFailure = 0;

  /**
   * Creates a summary with no episode under way; `quietMs` (2 s by default)
   * is how long without a failure ends an episode.
   *
   * @throws {RangeError} when the interval is not positive.
   */
  constructor(options: { intervalMs?: number; quietMs?: number } = {}) {
    this.#intervalMs = options.intervalMs ?? DEFAULT_REPEAT_INTERVAL_MS;
    this.#quietMs = options.quietMs ?? DEFAULT_QUIET_MS;
    if (!(this.#intervalMs > 0)) {
      throw new RangeError(`Repeat interval must be over 0 ms, not ${this.#intervalMs}.`);
    }
  }

  /** Whether an episode is under way: a failure, and no end since. */
  get ongoing(): boolean {
    return this.#failures > 0;
  }

  /**
   * Counts a failure at `now` (ms). Returns how many failures to report now,
   * this one included (1 when it starts an episode, more after an interval
   * of repeats), or 0 to stay quiet.
   */
  failed(now: number): number {
    this.#failures++;
    this.#unreported++;
    this.#lastFailure = now;
    if (this.#failures > 1 && now - this.#reportedAt < this.#intervalMs) return 0;
    const count = this.#unreported;
    this.#unreported = 0;
    this.#reportedAt = now;
    return count;
  }

  /**
   * Notes a success at `now`: ends the episode when the last failure was a
   * quiet time ago, and returns how many failures it had; 0 otherwise.
   */
  succeeded(now: number): number {
    if (this.#failures === 0 || now - this.#lastFailure < this.#quietMs) return 0;
    const failures = this.#failures;
    this.#failures = 0;
    this.#unreported = 0;
    return failures;
  }
}

/** How long with no failure ends an episode, by default. */
export const DEFAULT_QUIET_MS = 2000;
