/**
 * Bounded waiting, so that a broken server fails a test with a message
 * saying what was awaited instead of hanging it: a deadline around any
 * promise, polling for state no event announces, and the bounds every
 * helper uses.
 *
 * ```ts
 * import { waitFor, withDeadline } from "./deadlines.ts";
 *
 * const answer = await withDeadline(Promise.resolve(42), "the answer");
 * let ticks = 0;
 * await waitFor(() => ++ticks > 2, "three looks");
 * ```
 *
 * @module
 */

/** Bounds waiting for any one event (a log line, a reply, an exit), so a bug fails instead of hanging. */
export const EVENT_DEADLINE_MS = 15_000;

/** Bounds a start: the first one may also compile and load npm packages from the cache. */
export const START_DEADLINE_MS = 30_000;

/** What a deadline helper rejects with when time runs out first. */
export class DeadlineError extends Error {
  override name = "DeadlineError";
}

/**
 * Resolves or rejects as `promise` does, or rejects with a
 * {@linkcode DeadlineError} once `ms` have passed, saying what was awaited;
 * `onTimeout` runs first, to end what would otherwise go on (kill a process,
 * close a socket).
 */
export async function withDeadline<T>(
  promise: Promise<T>,
  what: string,
  ms = EVENT_DEADLINE_MS,
  onTimeout?: () => void,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout?.();
      reject(new DeadlineError(`Timed out after ${ms} ms waiting for ${what}.`));
    }, Math.max(0, ms));
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** How often {@linkcode waitFor} looks at its condition, in milliseconds. */
const POLL_MS = 10;

/**
 * Waits until `condition` holds, looking every few milliseconds, for state
 * that no event announces (a counter another thread updates).
 */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  what: string,
  ms = EVENT_DEADLINE_MS,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) {
      throw new DeadlineError(`Timed out after ${ms} ms waiting for ${what}.`);
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

/**
 * Lets timers and socket events run. A client in the same process as the
 * server must call this between writes that the kernel takes at once: such a
 * write resolves without a trip through the event loop, so a tight write
 * loop would starve the server of its reads.
 */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}
