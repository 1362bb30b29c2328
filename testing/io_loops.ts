/**
 * The event loops the server can serve with here, and tests registered
 * once per loop, so that a difference between the loops fails a test.
 *
 * ```ts
 * import { testOnEachLoop } from "./io_loops.ts";
 *
 * testOnEachLoop("answers a query", async (io) => {
 *   // start a server with { io } and ask it something
 * });
 * ```
 *
 * @module
 */

import type { IoKind } from "../server/worker_messages.ts";
import { SERVER_FLAGS } from "./repo.ts";

/**
 * The event loops the server can serve plain TCP with: epoll when the task
 * grants FFI on Linux (what `--io auto` picks there), and Deno.listen.
 */
export const IO_LOOPS: readonly IoKind[] = [
  ...(Deno.build.os === "linux" && SERVER_FLAGS.includes("--allow-ffi") ? ["epoll" as const] : []),
  "deno",
];

/**
 * Registers `fn` as one test per event loop of {@linkcode IO_LOOPS}, each
 * named with the loop as ` [--io epoll]` and ` [--io deno]`.
 */
export function testOnEachLoop(name: string, fn: (io: IoKind) => Promise<void>): void {
  for (const io of IO_LOOPS) Deno.test(`${name} [--io ${io}]`, () => fn(io));
}
