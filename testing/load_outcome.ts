/**
 * What loading a book's bytes comes to, as lines a format reader's tests
 * compare (its problems, or its entry count and fingerprint), and the check
 * that a reader gives the same whatever the chunks its input arrives in.
 *
 * ```ts
 * import { assertSameInChunks, loadOutcome } from "./load_outcome.ts";
 *
 * loadOutcome("email,name\nada@example.com,Ada\n", "book.csv"); // ["1 entries", "<fingerprint>"]
 * assertSameInChunks("email,name\nada@example.com,Ada\n", "book.csv");
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { BookError, loadBookFromBytes, type LoadOptions } from "../book/load.ts";

/** What a load comes to: the problems, or the entry count and fingerprint. */
export function loadOutcome(
  text: string | Uint8Array,
  file: string,
  chunk?: number,
  options: LoadOptions = {},
): string[] {
  const bytes = typeof text === "string" ? new TextEncoder().encode(text) : text;
  try {
    const { book, entries } = loadBookFromBytes(bytes, file, options, chunk);
    return [`${entries} entries`, book.fingerprint];
  } catch (error) {
    if (!(error instanceof BookError)) throw error;
    return error.problems.map((problem) => `${problem.line}: ${problem.message}`);
  }
}

/** Asserts that every chunk size from 1 to `upTo` gives what one big chunk gives. */
export function assertSameInChunks(text: string, file: string, upTo = 24): string[] {
  const expected = loadOutcome(text, file);
  for (let chunk = 1; chunk <= upTo; chunk++) {
    assert.deepEqual(loadOutcome(text, file, chunk), expected, `chunks of ${chunk} bytes`);
  }
  return expected;
}
