/**
 * The loopback address every test server listens on, and free ports on it
 * for programs that must be told a port rather than pick one.
 *
 * ```ts
 * import { freePort, LOOPBACK } from "./loopback.ts";
 *
 * console.log(`${LOOPBACK}:${freePort()}`);
 * ```
 *
 * @module
 */

/** The address every test server listens on. */
export const LOOPBACK = "127.0.0.1";

/** A port free now on {@linkcode LOOPBACK}: bound once and let go. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: LOOPBACK, port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}
