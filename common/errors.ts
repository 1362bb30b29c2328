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

/**
 * Why a file could not be read, as the end of a sentence such as "Cannot
 * read the --tls-cert file cert.pem: <this>.": what is wrong and, where the
 * user can do something about it, what. `typed` is the path as the user
 * gave it and `resolved` where it was looked for; they differ for a
 * relative path typed under `deno task` (see user_path.ts), and then a
 * missing file says where it was looked for. The server and the client
 * say the same for the same failure.
 *
 * ```ts
 * import { whyUnreadable } from "./errors.ts";
 * whyUnreadable(new Deno.errors.NotFound("os text"), "/etc/book.csv"); // "no such file"
 * whyUnreadable(new Deno.errors.NotFound("os text"), "book.csv", "/home/ada/book.csv");
 * // "no such file (looked for /home/ada/book.csv)"
 * ```
 */
export function whyUnreadable(error: unknown, typed: string, resolved: string = typed): string {
  if (error instanceof Deno.errors.NotFound) {
    return resolved === typed ? "no such file" : `no such file (looked for ${resolved})`;
  }
  if (error instanceof Deno.errors.IsADirectory) return "it is a directory";
  if (error instanceof Deno.errors.PermissionDenied) {
    return "permission denied; make it readable by the user this runs as";
  }
  if (error instanceof Deno.errors.NotCapable) {
    return "read access to it was not granted; run with --allow-read";
  }
  return describeError(error);
}
