/**
 * How long a client told RATE_LIMITED waits before it sends the refused
 * queries again: a {@linkcode Pacer}. Pure: the caller passes the time.
 *
 * The server says only that a client is over its limit, not for how long
 * (PROTOCOL.md), so the client finds the pace by itself: short pauses at
 * first, and, while nothing is answered, pauses of a quarter of the time it
 * has waited so far. Allowance that comes back is so taken up at most a
 * quarter late, and a long wait costs the server few retries. A limit that does not come back
 * within the longest wait (a daily `--found-limit`) is given up on, and
 * the RATE_LIMITED reply goes to the caller as it would without pacing.
 *
 * ```ts
 * import { Pacer } from "./pacing.ts";
 *
 * const pacer = new Pacer({ maxWaitMs: 60_000 });
 * pacer.rateLimited(0); // 100: wait 100 ms, then send again
 * pacer.rateLimited(2000); // 500: nothing answered for 2 s
 * pacer.answered(); // progress: the next pause is short again
 * ```
 *
 * @module
 */

/** The first pause after a RATE_LIMITED reply, and the shortest. */
export const FIRST_PACE_MS = 100;
/** The pause is this fraction of the time waited with nothing answered. */
const PACE_FRACTION = 1 / 4;
/** The longest single pause. */
export const MAX_PACE_MS = 5000;
/** How long a paced client waits with nothing answered before it gives up, by default. */
export const DEFAULT_MAX_WAIT_MS = 60_000;

/** Options for a {@linkcode Pacer}. */
export interface PacerOptions {
  /** How long to keep waiting with nothing answered; {@linkcode DEFAULT_MAX_WAIT_MS} by default. */
  maxWaitMs?: number;
}

/** The pauses of one batch of lookups, and what they came to, for the note at its end. */
export class Pacer {
  /** Pauses taken. */
  waits = 0;
  /** Milliseconds paused in all. */
  waitedMs = 0;
  /** Whether the longest wait passed with nothing answered. */
  gaveUp = false;
  readonly #maxWaitMs: number;
  /** When the client was first refused with nothing answered since; unset while it makes progress. */
  #stalledSince: number | undefined;

  /** A pacer with no pause taken yet. */
  constructor(options: PacerOptions = {}) {
    this.#maxWaitMs = options.maxWaitMs ?? DEFAULT_MAX_WAIT_MS;
  }

  /** A query was answered: the server lets queries through again. */
  answered(): void {
    this.#stalledSince = undefined;
  }

  /**
   * After a RATE_LIMITED reply at `now` (milliseconds): how long to wait
   * before sending the refused queries again, or `undefined` when waiting
   * that long would pass the longest wait with nothing answered.
   */
  rateLimited(now: number): number | undefined {
    this.#stalledSince ??= now;
    const stalled = now - this.#stalledSince;
    const pause = Math.min(MAX_PACE_MS, Math.max(FIRST_PACE_MS, stalled * PACE_FRACTION));
    if (stalled + pause > this.#maxWaitMs) {
      this.gaveUp = true;
      return undefined;
    }
    this.waits++;
    this.waitedMs += pause;
    return pause;
  }
}
