/**
 * Loads an address book file, in any format of the table in
 * `book/format.ts`, checks every entry, and builds an
 * {@linkcode AddressBook}. Either the whole file loads, or a
 * {@linkcode BookError} lists every problem found and nothing is built.
 *
 * The file is read as a stream of bytes (`book/bytes.ts`) by the reader of
 * its format, found in the table of formats (`book/format.ts`), which hands
 * each entry to the collector (`book/collect.ts`) that checks it and adds it
 * to the book. Problems name the file and line, never the email or name on
 * it: they end up in logs, and the operator can look the line up in their
 * own file.
 *
 * ```ts
 * import { loadBook } from "./load.ts";
 *
 * const { book, entries } = await loadBook("data/addressbook.csv");
 * book.get("ada@example.com"); // "Ada Lovelace"
 * ```
 *
 * @module
 */

import type { AddressBook } from "./addressbook.ts";
import { whyUnreadable } from "../common/errors.ts";
import {
  BookBytes,
  CHUNK_BYTES,
  InvalidUtf8Error,
  MAX_RECORD_BYTES,
  RecordTooLongError,
} from "./bytes.ts";
import { BookCollector, DUPLICATE_POLICIES, type DuplicatePolicy } from "./collect.ts";
import {
  BOOK_EXTENSIONS,
  BOOK_FORMAT_TABLE,
  BOOK_FORMATS,
  type BookFormat,
  bookFormat,
  CR_LINE_ENDS_MESSAGE,
  formatFromPath,
  formatFromStart,
  skipBlank,
  usesCrLineEnds,
  utf16Message,
  utf16Order,
} from "./format.ts";
import { BookError, type BookProblem, formatProblem, summarizeProblems } from "./problem.ts";
import type { ReaderOptions } from "./reader.ts";

export {
  BOOK_EXTENSIONS,
  BOOK_FORMAT_TABLE,
  BOOK_FORMATS,
  BookError,
  DUPLICATE_POLICIES,
  formatFromPath,
  formatProblem,
  summarizeProblems,
};
export type { BookFormat, BookProblem, DuplicatePolicy, ReaderOptions };
export { MAX_NAME_BYTES } from "./collect.ts";
export { MAX_RECORD_BYTES } from "./bytes.ts";

/** How to read a book; what is for the format's reader comes from {@linkcode ReaderOptions}. */
export interface LoadOptions extends ReaderOptions {
  /** The file's format; by default from its extension, else from its first characters. */
  format?: BookFormat;
  /** Duplicate emails: a problem (`error`, the default), or keep the `first` or `last`. */
  duplicates?: DuplicatePolicy;
  /** How messages name the file; the path by default (give what the user typed). */
  name?: string;
  /** Accept a book with no entries; by default that is a problem, so a bad file cannot empty a server. */
  allowEmpty?: boolean;
}

/** What a successful load gives. */
export interface LoadedBook {
  /** The built book. */
  book: AddressBook;
  /** How many entries it holds (after duplicates were resolved). */
  entries: number;
  /** Entries dropped as duplicates under the `first` or `last` policy. */
  duplicates: number;
  /** The format the file was read as. */
  format: BookFormat;
}

/**
 * The largest file read: offsets inside the built book are 32-bit. A
 * book's records (`book/records.ts`: each key and name with an 8-byte
 * header, padded to four bytes) can still need more than its file for
 * very short entries; the build then refuses the book in one problem.
 */
export const MAX_BOOK_BYTES = 2 ** 32 - 1;

/**
 * Reads, checks and builds the book in `path`.
 *
 * @throws {BookError} listing every problem, including a file that cannot be
 * read, is a directory, is empty or is not UTF-8; nothing is built then.
 */
export async function loadBook(path: string, options: LoadOptions = {}): Promise<LoadedBook> {
  const name = options.name ?? path;
  const fail = (reason: string): never => {
    throw new BookError([{ file: name, line: 0, message: `Cannot read the file: ${reason}.` }]);
  };
  if (path === "") fail("the path is empty");
  let file: Deno.FsFile;
  try {
    // stat before open: opening a named pipe would wait for a writer.
    const info = await Deno.stat(path);
    if (info.isDirectory) fail("it is a directory");
    if (!info.isFile) fail("it is not a regular file");
    if (info.size > MAX_BOOK_BYTES) {
      fail(`it is ${info.size} bytes, over the limit of ${MAX_BOOK_BYTES}`);
    }
    file = await Deno.open(path);
  } catch (error) {
    if (error instanceof BookError) throw error;
    return fail(whyUnreadable(error, name, path));
  }
  // The path may have been pointed elsewhere between the stat and the open.
  const opened = await file.stat().catch(() => undefined);
  if (opened === undefined || !opened.isFile || opened.size > MAX_BOOK_BYTES) {
    file.close();
    fail(
      "it changed into something other than a regular file of at most the size limit as it was opened",
    );
  }
  try {
    return readBook(BookBytes.fromFile(file), name, path, options);
  } finally {
    file.close();
  }
}

/**
 * Checks and builds a book from text already in memory; `file` names it in
 * problems and, when no format is given, its extension picks the format.
 *
 * @throws {BookError} listing every problem; nothing is built then.
 */
export function loadBookFromText(
  text: string,
  file: string,
  options: LoadOptions = {},
): LoadedBook {
  return loadBookFromBytes(new TextEncoder().encode(text), file, options);
}

/**
 * Checks and builds a book from bytes already in memory, as
 * {@linkcode loadBookFromText} does; `chunkBytes` is how many the readers
 * get at a time (small values let tests cut records at every byte).
 *
 * @throws {BookError} listing every problem; nothing is built then.
 */
export function loadBookFromBytes(
  bytes: Uint8Array,
  file: string,
  options: LoadOptions = {},
  chunkBytes: number = CHUNK_BYTES,
): LoadedBook {
  return readBook(BookBytes.fromBytes(bytes, chunkBytes), file, file, options);
}

/** Reads a book from its bytes; `path` picks the format when the options do not. */
function readBook(
  bytes: BookBytes,
  name: string,
  path: string,
  options: LoadOptions,
): LoadedBook {
  const head = bytes.peek();
  const refuse = (message: string): never => {
    throw new BookError([{ file: name, line: 0, message }]);
  };
  const order = utf16Order(head);
  if (order !== undefined) refuse(utf16Message(order));
  const format = options.format ?? formatFromPath(path) ?? formatFromStart(withoutBom(head));
  const { readsLines, read } = bookFormat(format);
  if (readsLines && usesCrLineEnds(head)) refuse(CR_LINE_ENDS_MESSAGE);
  const collector = new BookCollector(name, options.duplicates ?? "error");
  try {
    bytes.begin();
    if (isBlank(bytes)) refuse("The file is empty.");
    read(bytes, collector, options);
  } catch (error) {
    if (error instanceof RecordTooLongError) {
      collector.problem(
        "line" in error.start ? error.start.line : bytes.lineAt(error.start.offset),
        `A record from here is over ${MAX_RECORD_BYTES} bytes long, which no entry is; the file is not read further.`,
      );
    } else if (error instanceof InvalidUtf8Error) {
      collector.problem(bytes.lineOfInvalidUtf8(error), "The file is not valid UTF-8.");
    } else throw error;
    throw new BookError(collector.problems.sort((a, b) => a.line - b.line));
  }
  const book = collector.finish(options.allowEmpty ?? false);
  return { book, entries: book.size, duplicates: collector.duplicates, format };
}

function withoutBom(head: Uint8Array): Uint8Array {
  return head[0] === 0xef && head[1] === 0xbb && head[2] === 0xbf ? head.subarray(3) : head;
}

/** Whether the file holds nothing but blanks; reads on while it has only blanks so far. */
function isBlank(bytes: BookBytes): boolean {
  for (;;) {
    if (skipBlank(bytes.buffer.subarray(0, bytes.end), bytes.start) < bytes.end) return false;
    if (bytes.more(0) < 0) return true;
  }
}
