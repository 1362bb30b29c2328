/**
 * The book file formats, in one table, and how a file's format is told: by
 * its extension, else by its first bytes. Each format is one record: its
 * name, its file extensions, how its first bytes look and its reader (one
 * signature for all, `book/reader.ts`); the loader, the command lines, the
 * checker and their help texts all take the formats from here, so adding a
 * format is one record and its reader module. Also spots the two encodings
 * people most often hand over by mistake, UTF-16 and CR-only line ends, so
 * the loader can say what to do instead of failing later in the dark.
 *
 * ```ts
 * import { bookFormat, formatFromPath, formatFromStart } from "./format.ts";
 *
 * formatFromPath("contacts.VCF"); // "vcard"
 * formatFromStart(new TextEncoder().encode(' {"a@example.com": "A"}')); // "json"
 * bookFormat("csv").extensions; // ["csv"]
 * ```
 *
 * @module
 */

import { readCsv } from "./csv.ts";
import { readJson } from "./json.ts";
import type { BookReader } from "./reader.ts";
import { readVCard } from "./vcard_reader.ts";

const SPACE = 0x20;
const TAB = 0x09;
const LF = 0x0a;
const CR = 0x0d;
const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const ASCII_CASE_BIT = 0x20;
const BEGIN_VCARD = "begin:vcard";

/** One book format: what the table says about it. */
export interface BookFormatSpec {
  /** The name `--format` takes, in lower case. */
  readonly name: string;
  /** The name in prose, for help texts: "CSV". */
  readonly title: string;
  /** File name extensions, lower case, without the dot. */
  readonly extensions: readonly string[];
  /**
   * Whether a file's first bytes look like this format; `first` is the
   * first byte after any byte-order mark and blanks. The format with no
   * `detect` is the one taken when no other's matches.
   */
  readonly detect?: (head: Uint8Array, first: number) => boolean;
  /** Whether the format is read by lines, so that CR-only line ends must be refused. */
  readonly readsLines: boolean;
  /** Reads a file of this format. */
  readonly read: BookReader;
}

const FORMAT_TABLE = [
  {
    name: "csv",
    title: "CSV",
    extensions: ["csv"],
    readsLines: true,
    read: readCsv,
  },
  {
    name: "json",
    title: "JSON",
    extensions: ["json"],
    detect: (head: Uint8Array, first: number) =>
      head[first] === OPEN_BRACE || head[first] === OPEN_BRACKET,
    readsLines: false,
    read: readJson,
  },
  {
    name: "vcard",
    title: "vCard",
    extensions: ["vcf", "vcard"],
    detect: startsWithBeginVCard,
    readsLines: true,
    read: readVCard,
  },
] as const satisfies readonly BookFormatSpec[];

/** The file formats a book can be in. */
export type BookFormat = (typeof FORMAT_TABLE)[number]["name"];

/** Every format's record, in the order help texts list them. */
export const BOOK_FORMAT_TABLE: readonly (BookFormatSpec & { readonly name: BookFormat })[] =
  FORMAT_TABLE;

/** The formats' names, in the order help texts list them. */
export const BOOK_FORMATS: readonly BookFormat[] = BOOK_FORMAT_TABLE.map((format) => format.name);

/** Every format's file extensions, with the dot, in the order help texts list them. */
export const BOOK_EXTENSIONS: readonly string[] = BOOK_FORMAT_TABLE.flatMap((format) =>
  format.extensions.map((extension) => `.${extension}`)
);

/**
 * The record of a format.
 *
 * @throws {RangeError} for a name the table does not hold (only a cast can pass one).
 */
export function bookFormat(name: BookFormat): BookFormatSpec {
  const format = BOOK_FORMAT_TABLE.find((format) => format.name === name);
  if (format === undefined) throw new RangeError(`There is no book format named "${name}".`);
  return format;
}

/** The format a file name's extension says, if any (see each format's `extensions`). */
export function formatFromPath(path: string): BookFormat | undefined {
  const dot = path.lastIndexOf(".");
  if (dot < 0 || dot < path.lastIndexOf("/")) return undefined;
  const extension = path.slice(dot + 1).toLowerCase();
  return BOOK_FORMAT_TABLE.find((format) => format.extensions.includes(extension))?.name;
}

/** Whether a byte is a space, tab or line break, which may come before a book's first value. */
export function isBlankByte(byte: number): boolean {
  return byte === SPACE || byte === TAB || byte === LF || byte === CR;
}

/** The index of the first byte from `from` that is not blank, or `bytes.length`. */
export function skipBlank(bytes: Uint8Array, from: number): number {
  while (from < bytes.length && isBlankByte(bytes[from])) from++;
  return from;
}

/**
 * Guesses the format from a file's first bytes (after any byte-order mark),
 * for a file whose name does not say: the first format whose `detect`
 * matches (JSON starts with `{` or `[`, vCard with BEGIN:VCARD), else the
 * one without a `detect` (CSV).
 */
export function formatFromStart(head: Uint8Array): BookFormat {
  const first = skipBlank(head, 0);
  const detected = BOOK_FORMAT_TABLE.find((format) => format.detect?.(head, first) ?? false) ??
    BOOK_FORMAT_TABLE.find((format) => format.detect === undefined)!;
  return detected.name;
}

/** Whether the bytes from `first` are BEGIN:VCARD, in any letter case. */
function startsWithBeginVCard(head: Uint8Array, first: number): boolean {
  for (let i = 0; i < BEGIN_VCARD.length; i++) {
    const code = head[first + i];
    if (code === undefined || (code | ASCII_CASE_BIT) !== BEGIN_VCARD.charCodeAt(i)) return false;
  }
  return true;
}

/** A UTF-16 byte order. */
export type Utf16Order = "LE" | "BE";

/**
 * Whether the file starts like UTF-16 text: with a UTF-16 byte-order mark,
 * or with ASCII characters each paired with a zero byte (no text a book
 * holds starts with a NUL).
 */
export function utf16Order(head: Uint8Array): Utf16Order | undefined {
  if (head[0] === 0xff && head[1] === 0xfe) return "LE";
  if (head[0] === 0xfe && head[1] === 0xff) return "BE";
  if (head.length < 4) return undefined;
  if (head[0] !== 0 && head[1] === 0 && head[2] !== 0 && head[3] === 0) return "LE";
  if (head[0] === 0 && head[1] !== 0 && head[2] === 0 && head[3] !== 0) return "BE";
  return undefined;
}

/** The problem to report for a UTF-16 file: which one, and how to convert it. */
export function utf16Message(order: Utf16Order): string {
  return `The file is UTF-16 ${order} text, not UTF-8; convert it first, for example with ` +
    `iconv -f UTF-16${order} -t UTF-8 FILE > NEW_FILE.`;
}

/**
 * Whether lines end in a lone CR (classic Mac OS): the first chunk has a CR
 * that is not followed by LF, and no LF at all.
 */
export function usesCrLineEnds(head: Uint8Array): boolean {
  if (head.indexOf(LF) >= 0) return false;
  const cr = head.indexOf(CR);
  return cr >= 0 && cr < head.length - 1;
}

/** The problem to report for a file with CR line ends, and how to convert it. */
export const CR_LINE_ENDS_MESSAGE: string =
  "The file's lines end in CR alone (old Mac OS style), " +
  "so it reads as one line; convert them to LF first, for example with " +
  "tr '\\r' '\\n' < FILE > NEW_FILE.";
