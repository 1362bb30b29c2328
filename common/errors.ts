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

/**
 * Ends `text` with a period unless it already ends a sentence: for text from
 * elsewhere (an OS or library message) placed at the end of one of ours.
 *
 * ```ts
 * import { sentence } from "./errors.ts";
 * sentence("connection refused"); // "connection refused."
 * sentence("Is it running?"); // "Is it running?"
 * ```
 */
export function sentence(text: string): string {
  const trimmed = text.trim();
  return /[.!?]$/.test(trimmed) ? trimmed : `${trimmed}.`;
}

/**
 * Makes `text` a whole sentence in this project's style: a capital first
 * letter and a final period.
 *
 * ```ts
 * import { wholeSentence } from "./errors.ts";
 * wholeSentence("option '--bogus' is unknown"); // "Option '--bogus' is unknown."
 * ```
 */
export function wholeSentence(text: string): string {
  const trimmed = sentence(text);
  return trimmed.charAt(0).toUpperCase() + trimmed.slice(1);
}

/**
 * A count with its noun, singular for exactly one: for messages that name
 * a number of things.
 *
 * ```ts
 * import { counted } from "./errors.ts";
 * counted(1, "query", "queries"); // "1 query"
 * counted(12, "query", "queries"); // "12 queries"
 * counted(3, "field"); // "3 fields"
 * ```
 */
export function counted(count: number, noun: string, nouns: string = `${noun}s`): string {
  return `${count} ${count === 1 ? noun : nouns}`;
}
