/**
 * Small helpers for reporting errors, shared by every layer.
 *
 * @module
 */

/**
 * The message of an error, or the value itself as text when something other
 * than an `Error` was thrown, for one-line reports and logs.
 *
 * ```ts
 * import { describeError } from "./errors.ts";
 * describeError(new RangeError("Port 70000 is over 65535.")); // "Port 70000 is over 65535."
 * describeError("plain"); // "plain"
 * ```
 */
export function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
