/**
 * What a book format's reader is: one signature that every reader has, so
 * the table of formats (`book/format.ts`) can call any of them alike. A
 * reader takes the file's checked bytes, finds each entry's fields and hands
 * them to the {@linkcode BookCollector}, which checks and keeps them; it
 * reports what it cannot read as problems there too, and never throws for
 * bad input.
 *
 * ```ts
 * import type { BookReader } from "./reader.ts";
 *
 * // The smallest reader: it finds no entry, and says why.
 * const readNothing: BookReader = (_bytes, collector) => {
 *   collector.problem(1, "This format cannot be read yet.");
 * };
 * ```
 *
 * @module
 */

import type { BookBytes } from "./bytes.ts";
import type { BookCollector } from "./collect.ts";

/** What a reader may be told beyond the bytes; a reader ignores what is not for its format. */
export interface ReaderOptions {
  /** CSV: the header of the email column, instead of recognising it. */
  emailColumn?: string;
  /** CSV: the header of the name column, instead of recognising it. */
  nameColumn?: string;
}

/** Reads every entry of a book, from `bytes` (begun) into `collector`. */
export type BookReader = (
  bytes: BookBytes,
  collector: BookCollector,
  options: ReaderOptions,
) => void;
