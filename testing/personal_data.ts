/**
 * The check that a server's log holds no personal data: nothing shaped
 * like an email address, and no name of the test books' people.
 *
 * ```ts
 * import { assertNoPersonalData } from "./personal_data.ts";
 *
 * assertNoPersonalData(["query status=FOUND peer=127.0.0.1:5000"]);
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { PEOPLE } from "./books.ts";

/** Text shaped like an email address: something, `@`, something. */
const EMAIL_LIKE = /[\p{L}\p{N}._%+-]+@[\p{L}\p{N}-]+/u;

/**
 * Asserts that no log line holds something shaped like an email address,
 * nor a name from {@linkcode PEOPLE} or `extraNames`.
 */
export function assertNoPersonalData(lines: string[], extraNames: string[] = []): void {
  const names = [...PEOPLE.map(([, name]) => name), ...extraNames].map((n) => n.toLowerCase());
  for (const line of lines) {
    assert.ok(!EMAIL_LIKE.test(line), `a log line holds an email address: ${line}`);
    const lower = line.toLowerCase();
    for (const name of names) {
      assert.ok(!lower.includes(name), `a log line holds a name: ${line}`);
    }
  }
}
