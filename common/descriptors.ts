/**
 * How many file descriptors this process may still open: the soft
 * `RLIMIT_NOFILE` (from `/proc/self/limits`) less those open (the entries
 * of `/proc/self/fd`). Deno panics, ending the whole process, when a new
 * `Worker` cannot get the few descriptors its thread needs, so whoever
 * starts one after the server has begun serving (a reload's loading
 * thread) asks this first and refuses in words instead.
 *
 * ```ts
 * import { freeDescriptors } from "./descriptors.ts";
 * const free = freeDescriptors(); // undefined where /proc does not say
 * if (free !== undefined && free < 32) console.error("Too few file descriptors are free.");
 * ```
 *
 * @module
 */

const LIMITS_FILE = "/proc/self/limits";
const OPEN_FILES_FOLDER = "/proc/self/fd";
const OPEN_FILES_LIMIT = /^Max open files\s+(\d+|unlimited)\s/m;

/**
 * Descriptors that can still be opened, or `undefined` when the system does
 * not say (no `/proc`, or no permission to read it). None are free when
 * even looking fails for want of one.
 */
export function freeDescriptors(): number | undefined {
  try {
    const limit = OPEN_FILES_LIMIT.exec(Deno.readTextFileSync(LIMITS_FILE))?.[1];
    if (limit === undefined || limit === "unlimited") return undefined;
    let open = 0;
    for (const _ of Deno.readDirSync(OPEN_FILES_FOLDER)) open++;
    // The folder's own descriptor, listed while it was read, is closed again.
    return Math.max(0, Number(limit) - (open - 1));
  } catch (error) {
    if (isOutOfDescriptors(error)) return 0;
    return undefined;
  }
}

/** Whether `error` says the process (EMFILE) or the system (ENFILE) has no descriptor left. */
export function isOutOfDescriptors(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  return code === "EMFILE" || code === "ENFILE" ||
    (error instanceof Error && /\(os error (24|23)\)/.test(error.message));
}
