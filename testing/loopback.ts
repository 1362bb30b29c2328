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

/**
 * Where {@linkcode freePort} picks from: below Linux's ephemeral range
 * (32768–60999 by default), from which the kernel gives every outgoing
 * connection its local port. A port the kernel chose was free only until
 * the next connect: under load (a benchmark's fifty clients beside the
 * tests) one took it before the server told of it could bind it.
 */
const FIRST_PORT = 20000;
const LAST_PORT = 32767;
/** Tries before giving up: a random port there is rarely in use. */
const TRIES = 200;

/** Ports handed out already: this process asks for several at once, all different. */
const given = new Set<number>();

/**
 * A port free now on {@linkcode LOOPBACK}, outside the range the kernel
 * hands to outgoing connections, and not one this process was given before.
 *
 * @throws {Error} when no free port turned up in a few hundred tries.
 */
export function freePort(): number {
  for (let i = 0; i < TRIES; i++) {
    const port = FIRST_PORT + Math.floor(Math.random() * (LAST_PORT - FIRST_PORT + 1));
    if (given.has(port)) continue;
    try {
      Deno.listen({ hostname: LOOPBACK, port }).close();
    } catch (error) {
      if (error instanceof Deno.errors.AddrInUse) continue;
      throw error;
    }
    given.add(port);
    return port;
  }
  throw new Error(`No free port between ${FIRST_PORT} and ${LAST_PORT} in ${TRIES} tries.`);
}
