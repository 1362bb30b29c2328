/**
 * Runs a task one at a time however often it is asked for, as a reload
 * must be: a request while it runs marks one more run to follow, and any
 * number of requests meanwhile fold into that one. So a storm of SIGHUPs or
 * file events costs at most one run under way and one waiting, never runs
 * side by side (each of which would hold a whole book in memory), and the
 * last request is still served by a run that starts after it.
 *
 * ```ts
 * import { coalesced } from "./coalesce.ts";
 *
 * let runs = 0;
 * const reload = coalesced(async () => {
 *   runs++;
 *   await new Promise((resolve) => setTimeout(resolve, 10));
 * });
 * await Promise.all([reload(), reload(), reload(), reload()]);
 * runs; // 2: the first, and one for the three asked for while it ran
 * ```
 *
 * @module
 */

/**
 * Wraps `task` so that calls run it one at a time and coalesce; each call
 * resolves once a run that began after it has ended. `task` reports its own
 * errors: a rejection is passed to the callers waiting on that run.
 */
export function coalesced(task: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined;
  let pending: Promise<void> | undefined;
  const run = (): Promise<void> => {
    running = task().finally(() => running = undefined);
    return running;
  };
  return () => {
    if (running === undefined) return run();
    pending ??= running.catch(() => {}).then(() => {
      pending = undefined;
      return run();
    });
    return pending;
  };
}
