/**
 * Whether this process can still open a few file descriptors. Deno panics,
 * ending the whole process, when a new `Worker` cannot get the descriptors
 * its thread needs, so whoever starts one after the server has begun
 * serving (a reload's loading thread) asks this first and refuses in words
 * instead.
 *
 * It asks by reserving them: `dup(2)` of stderr, as many times as needed,
 * then closing the copies. Reading `/proc/self/limits` and `/proc/self/fd`
 * would need `--allow-all` under Deno 2; this needs only `--allow-ffi`,
 * which the server has. Without it the answer is `undefined`.
 *
 * ```ts
 * import { canOpenDescriptors } from "./descriptors.ts";
 * if (canOpenDescriptors(32) === false) console.error("Too few file descriptors are free.");
 * ```
 *
 * @module
 */

import { type Libc, openLibc } from "./libc.ts";

const STDERR = 2;

let libc: Libc | undefined | null = null;

/**
 * Whether `count` more descriptors can be opened now, found by opening and
 * closing them; `undefined` when it cannot be told (no FFI, not Linux).
 */
export function canOpenDescriptors(count: number): boolean | undefined {
  if (libc === null) libc = openLibc();
  if (libc === undefined) return undefined;
  const { calls } = libc;
  const reserved: number[] = [];
  try {
    while (reserved.length < count) {
      const fd = calls.dup(STDERR);
      if (fd < 0) return false;
      reserved.push(fd);
    }
    return true;
  } finally {
    for (const fd of reserved) calls.close(fd);
  }
}
