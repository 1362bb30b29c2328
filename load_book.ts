/**
 * Loads an address book file (CSV, JSON or vCard), checks every entry, and
 * builds an {@linkcode AddressBook}. Either the whole file loads, or a
 * {@linkcode BookError} lists every problem found and nothing is built.
 *
 * Problems name the file and line, never the email or name on it: they end
 * up in logs, and the operator can look the line up in their own file.
 *
 * ```ts
 * import { loadBook } from "./load_book.ts";
 *
 * const { book, entries } = await loadBook("data/addressbook.csv");
 * book.get("ada@example.com"); // "Ada Lovelace"
 * ```
 *
 * @module
 */

import { parse as parseCsv } from "csv-parse/sync";
import { type AddressBook, AddressBookBuilder } from "./addressbook.ts";
import { emailProblem, MAX_EMAIL_CHARS, normalizeEmail } from "./email.ts";
import { MAX_REPLY_BYTES } from "./protocol.ts";
import { parseVCards, type VCardContact } from "./vcard.ts";

/** The file formats a book can be in. */
export type BookFormat = "csv" | "json" | "vcard";

/** What to do when two entries have the same (normalised) email. */
export type DuplicatePolicy = "error" | "first" | "last";

/** The formats, in the order help texts list them. */
export const BOOK_FORMATS: readonly BookFormat[] = ["csv", "json", "vcard"];

/** The duplicate policies, in the order help texts list them. */
export const DUPLICATE_POLICIES: readonly DuplicatePolicy[] = ["error", "first", "last"];

/** How to read a book. */
export interface LoadOptions {
  /** The file's format; by default from its extension, else from its first characters. */
  format?: BookFormat;
  /** Duplicate emails: a problem (`error`, the default), or keep the `first` or `last`. */
  duplicates?: DuplicatePolicy;
  /** CSV: the header of the email column, instead of recognising it. */
  emailColumn?: string;
  /** CSV: the header of the name column, instead of recognising it. */
  nameColumn?: string;
  /** How messages name the file; the path by default (give what the user typed). */
  name?: string;
}

/** One thing wrong with a book file. */
export interface BookProblem {
  /** The file, as it was named to the loader. */
  file: string;
  /** The line (from 1) the problem is on, or 0 when it is not about one line. */
  line: number;
  /** What is wrong, in words; it never quotes an email or a name. */
  message: string;
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

/** Formats a problem as `FILE:LINE: message`, or `FILE: message` when it is not about a line. */
export function formatProblem(problem: BookProblem): string {
  return problem.line > 0
    ? `${problem.file}:${problem.line}: ${problem.message}`
    : `${problem.file}: ${problem.message}`;
}

/** A book could not be loaded; `problems` lists everything wrong with it, in file order. */
export class BookError extends Error {
  /** Every problem found; never empty. */
  readonly problems: BookProblem[];

  /**
   * Makes the error; its message is the first problem and how many more there are.
   *
   * @throws {RangeError} when `problems` is empty.
   */
  constructor(problems: BookProblem[]) {
    if (problems.length === 0) throw new RangeError("A BookError needs at least one problem.");
    const more = problems.length - 1;
    super(
      formatProblem(problems[0]) +
        (more > 0 ? ` (and ${more} more problem${more === 1 ? "" : "s"})` : ""),
    );
    this.name = "BookError";
    this.problems = problems;
  }
}

/**
 * The largest file read. A JavaScript string holds at most 2^29 - 24
 * characters, so a larger file could not be decoded anyway.
 */
export const MAX_BOOK_BYTES = 500 * 1024 * 1024;

/**
 * Reads, checks and builds the book in `path`.
 *
 * @throws {BookError} listing every problem, including a file that cannot be
 * read, is a directory or is not UTF-8; nothing is built then.
 */
export async function loadBook(path: string, options: LoadOptions = {}): Promise<LoadedBook> {
  const name = options.name ?? path;
  const text = await readBookText(path, name);
  return loadBookFromText(text, name, options);
}

async function readBookText(path: string, name: string): Promise<string> {
  const fail = (reason: string): never => {
    throw new BookError([{ file: name, line: 0, message: `cannot read the file: ${reason}` }]);
  };
  let bytes: Uint8Array;
  try {
    // stat before open: opening a named pipe would wait for a writer.
    const info = await Deno.stat(path);
    if (info.isDirectory) fail("it is a directory");
    if (!info.isFile) fail("it is not a regular file");
    if (info.size > MAX_BOOK_BYTES) {
      fail(`it is ${info.size} bytes, over the limit of ${MAX_BOOK_BYTES}`);
    }
    using file = await Deno.open(path);
    bytes = await readAll(file, info.size);
  } catch (error) {
    if (error instanceof BookError) throw error;
    return fail(readFailure(error));
  }
  // The lossy decoder is many times faster than the strict one on ASCII, so
  // decode lossily and only look closer when a replacement character shows up.
  const text = new TextDecoder("utf-8", { ignoreBOM: true }).decode(bytes);
  if (text.includes("\uFFFD")) {
    try {
      new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
    } catch {
      const line = lineOfInvalidUtf8(bytes);
      throw new BookError([{ file: name, line, message: "the file is not valid UTF-8" }]);
    }
  }
  return text;
}

/**
 * Reads a file of (about) `size` bytes into one buffer of that size, which
 * is quicker than `Deno.readFile` and its growing buffer. A file that grew
 * since its size was taken is still read to its end.
 */
async function readAll(file: Deno.FsFile, size: number): Promise<Uint8Array> {
  let buffer = new Uint8Array(size + 1); // one spare byte, so the end shows without a copy
  let length = 0;
  for (;;) {
    if (length === buffer.length) {
      const grown = new Uint8Array(buffer.length * 2);
      grown.set(buffer);
      buffer = grown;
    }
    const read = await file.read(buffer.subarray(length));
    if (read === null) return buffer.subarray(0, length);
    length += read;
  }
}

function readFailure(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "no such file";
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (error instanceof Deno.errors.NotCapable) return "read access was not granted";
  if (error instanceof Deno.errors.IsADirectory) return "it is a directory";
  return error instanceof Error ? error.message : String(error);
}

/** The line of the first byte that breaks UTF-8, counting from 1. */
function lineOfInvalidUtf8(bytes: Uint8Array): number {
  const decoder = new TextDecoder("utf-8", { fatal: true });
  let line = 1;
  let start = 0;
  // Lines are tried one by one: a line break never sits inside a valid sequence.
  while (start <= bytes.length) {
    let end = bytes.indexOf(0x0a, start);
    if (end < 0) end = bytes.length;
    try {
      decoder.decode(bytes.subarray(start, end));
    } catch {
      return line;
    }
    line++;
    start = end + 1;
  }
  return 0;
}

/** The format a file name's extension says, if any: `.csv`, `.json`, `.vcf` or `.vcard`. */
export function formatFromPath(path: string): BookFormat | undefined {
  const dot = path.lastIndexOf(".");
  if (dot < 0 || dot < path.lastIndexOf("/")) return undefined;
  switch (path.slice(dot + 1).toLowerCase()) {
    case "csv":
      return "csv";
    case "json":
      return "json";
    case "vcf":
    case "vcard":
      return "vcard";
    default:
      return undefined;
  }
}

/** Guesses the format from the first characters, for a file whose name does not say. */
function formatFromText(text: string): BookFormat {
  const start = text.trimStart();
  if (start.startsWith("{") || start.startsWith("[")) return "json";
  if (start.slice(0, "BEGIN:VCARD".length).toUpperCase() === "BEGIN:VCARD") return "vcard";
  return "csv";
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
  if (text.charCodeAt(0) === BYTE_ORDER_MARK) text = text.slice(1);
  const format = options.format ?? formatFromPath(file) ?? formatFromText(text);
  const collector = new Collector(file, options.duplicates ?? "error");
  if (text.trim().length === 0) {
    collector.problem(0, "the file is empty");
  } else if (format === "csv") {
    readCsv(text, collector, options);
  } else if (format === "json") {
    readJson(text, collector);
  } else {
    readVCard(text, collector);
  }
  const book = collector.finish();
  return { book, entries: book.size, duplicates: collector.duplicates, format };
}

const BYTE_ORDER_MARK = 0xfeff;

/**
 * Checks entries as the readers find them and adds the good ones to the
 * builder, remembering each entry's line so a duplicate can name it.
 */
class Collector {
  readonly problems: BookProblem[] = [];
  readonly #file: string;
  readonly #policy: DuplicatePolicy;
  /** Entries dropped as duplicates (under `first` or `last`). */
  duplicates = 0;
  readonly #builder = new AddressBookBuilder();
  #lines = new Int32Array(INITIAL_ENTRIES);

  constructor(file: string, policy: DuplicatePolicy) {
    this.#file = file;
    this.#policy = policy;
  }

  problem(line: number, message: string): void {
    this.problems.push({ file: this.#file, line, message });
  }

  /** Checks and adds one entry; `email` and `name` are as read, not yet trimmed. */
  add(email: string, name: string, line: number): void {
    let key = plainAsciiKey(email);
    if (key === undefined) {
      const problem = emailProblem(email);
      if (problem !== undefined) {
        this.problem(line, `the email is not valid: ${problem}`);
        return;
      }
      key = normalizeEmail(email);
    }
    const trimmed = name.trim();
    if (trimmed.length === 0) {
      this.problem(line, "the name is empty");
      return;
    }
    if (trimmed.length > MAX_NAME_BYTES / MAX_UTF8_PER_UNIT) {
      const bytes = new TextEncoder().encode(trimmed).length;
      if (bytes > MAX_NAME_BYTES) {
        this.problem(line, `the name is ${bytes} bytes long, over the limit of ${MAX_NAME_BYTES}`);
        return;
      }
    }
    const entry = this.#builder.size;
    const existing = this.#builder.add(key, trimmed);
    if (existing < 0) {
      if (entry >= this.#lines.length) {
        const grown = new Int32Array(this.#lines.length * 2);
        grown.set(this.#lines);
        this.#lines = grown;
      }
      this.#lines[entry] = line;
    } else if (this.#policy === "error") {
      this.problem(line, `the email is a duplicate of line ${this.#lines[existing]}`);
    } else {
      this.duplicates++;
      if (this.#policy === "last") this.#builder.setName(existing, trimmed);
    }
  }

  /** Builds the book, or throws every problem found. */
  finish(): AddressBook {
    if (this.problems.length > 0) {
      // The vCard parser reports some problems only at a card's end; sort is stable.
      throw new BookError(this.problems.sort((a, b) => a.line - b.line));
    }
    return this.#builder.build();
  }
}

const INITIAL_ENTRIES = 1024;
/** The longest name in UTF-8: a reply payload is the status byte and the name. */
export const MAX_NAME_BYTES = MAX_REPLY_BYTES - 1;
/** A UTF-16 code unit takes at most 3 bytes of UTF-8. */
const MAX_UTF8_PER_UNIT = 3;
const CHAR_AT = 0x40;
const CHAR_A = 0x41;
const CHAR_Z = 0x5a;
const FIRST_VISIBLE_ASCII = 0x21;
const LAST_VISIBLE_ASCII = 0x7e;

/**
 * The normalised key of an address made only of visible ASCII with one `@`
 * inside it, which `emailProblem` always accepts; `undefined` for anything
 * else, which then goes through `emailProblem` itself. Almost every address
 * takes this way, which is much cheaper than the general rule.
 */
function plainAsciiKey(email: string): string | undefined {
  const length = email.length;
  if (length === 0 || length > MAX_EMAIL_CHARS) return undefined;
  let at = -1;
  let upper = false;
  for (let i = 0; i < length; i++) {
    const code = email.charCodeAt(i);
    if (code < FIRST_VISIBLE_ASCII || code > LAST_VISIBLE_ASCII) return undefined;
    if (code === CHAR_AT) {
      if (at >= 0) return undefined;
      at = i;
    } else if (code >= CHAR_A && code <= CHAR_Z) {
      upper = true;
    }
  }
  if (at <= 0 || at === length - 1) return undefined;
  return upper ? email.toLowerCase() : email;
}

// ---------------------------------------------------------------------------
// CSV

/** Email column headers of our format and of contact apps' exports, lower case, best first. */
const EMAIL_HEADERS = [
  "email",
  "e-mail",
  "e-mail address", // Outlook
  "e-mail 1 - value", // Google
  "email address",
  "primary email", // Thunderbird
];

/** Headers of a column holding the whole name, lower case, best first. */
const NAME_HEADERS = ["name", "display name", "full name"];

/** Columns whose parts, joined with spaces, make a name when no whole-name column has one. */
const NAME_PART_HEADERS = [
  ["first name", "middle name", "last name"], // Outlook, Thunderbird, Google
  ["given name", "additional name", "family name"], // older Google exports
];

/** How many headers a "no such column" problem lists before it stops. */
const MAX_HEADERS_LISTED = 20;
/** How much of each header such a problem shows. */
const MAX_HEADER_CHARS = 40;

const CHAR_LF = 0x0a;
const CHAR_CR = 0x0d;

/** How to turn a CSV record into an entry, worked out from the header. */
interface CsvLayout {
  fieldCount: number;
  email: number;
  /** Ways to make the name, best first: each a list of columns to join with spaces. */
  names: number[][];
  /** Contact-app exports list people without an email too; skip those rows. */
  skipEmptyEmail: boolean;
}

/** A record that contains a quote, parsed by csv-parse: its fields, or why it is malformed. */
interface QuotedRecord {
  start: number;
  /** The index of the line break that ends it, or the text's length. */
  end: number;
  fields?: string[];
  error?: string;
}

/**
 * Reads RFC 4180 CSV. csv-parse alone takes about 4 s for a million rows,
 * so lines without a quote character (nearly all of them) are split on
 * commas here, which is exactly what RFC 4180 makes of such a line. Records
 * with a quote, which may also span lines, all go to csv-parse in one call.
 */
function readCsv(text: string, collector: Collector, options: LoadOptions): void {
  const quoted = parseQuotedRecords(text);
  const commas = new CommaFinder(text);
  let layout: CsvLayout | undefined;
  let nextQuoted = 0;
  let pos = 0;
  let line = 1;
  while (pos < text.length) {
    let fields: string[] | undefined;
    let error: string | undefined;
    const recordLine = line;
    let end: number;
    if (nextQuoted < quoted.length && quoted[nextQuoted].start === pos) {
      const record = quoted[nextQuoted++];
      end = record.end;
      fields = record.fields;
      error = record.error;
      for (let i = text.indexOf("\n", pos); i >= 0 && i < end; i = text.indexOf("\n", i + 1)) {
        line++;
      }
    } else {
      end = text.indexOf("\n", pos);
      if (end < 0) end = text.length;
      let contentEnd = end;
      if (contentEnd > pos && text.charCodeAt(contentEnd - 1) === CHAR_CR) contentEnd--;
      if (contentEnd > pos) fields = commas.split(pos, contentEnd);
    }
    pos = end + 1;
    line++;
    if (error !== undefined) {
      collector.problem(recordLine, error);
      if (layout === undefined) return;
      continue;
    }
    if (fields === undefined) continue; // a blank line
    if (layout === undefined) {
      layout = csvLayout(fields, recordLine, collector, options);
      if (layout === undefined) return;
      continue;
    }
    addCsvRecord(fields, recordLine, layout, collector);
  }
  if (layout === undefined) collector.problem(1, "the file has no header row");
}

/** Splits quote-free lines at commas. */
class CommaFinder {
  readonly #text: string;
  /** The first comma at or after the last search start, or the text's length. */
  #next = -1;

  constructor(text: string) {
    this.#text = text;
  }

  /** The fields of `text[start, end)`, a line without quotes. */
  split(start: number, end: number): string[] {
    const text = this.#text;
    const fields: string[] = [];
    for (;;) {
      // Remembered between lines: a file without commas must not be searched to its end per line.
      if (this.#next < start) {
        this.#next = text.indexOf(",", start);
        if (this.#next < 0) this.#next = text.length;
      }
      const comma = this.#next;
      if (comma >= end) {
        fields.push(text.slice(start, end));
        return fields;
      }
      fields.push(text.slice(start, comma));
      start = comma + 1;
    }
  }
}

function addCsvRecord(
  fields: string[],
  line: number,
  layout: CsvLayout,
  collector: Collector,
): void {
  if (fields.length !== layout.fieldCount) {
    collector.problem(
      line,
      `the record has ${fields.length} field${fields.length === 1 ? "" : "s"}, ` +
        `but the header has ${layout.fieldCount}`,
    );
    return;
  }
  const email = fields[layout.email];
  if (layout.skipEmptyEmail && email.trim().length === 0) return;
  const names = layout.names;
  let name = names.length === 1 && names[0].length === 1 ? fields[names[0][0]] : "";
  for (let i = 0; i < names.length && name.trim() === ""; i++) {
    const columns = names[i];
    name = columns.length === 1
      ? fields[columns[0]]
      : columns.map((column) => fields[column].trim()).filter((part) => part !== "").join(" ");
  }
  collector.add(email, name, line);
}

/** Works out the layout from the header, or records why it cannot. */
function csvLayout(
  header: string[],
  line: number,
  collector: Collector,
  options: LoadOptions,
): CsvLayout | undefined {
  const names = header.map((field) => field.trim().toLowerCase());
  const find = (wanted: string) => names.indexOf(wanted.trim().toLowerCase());
  const found = () => {
    if (names.some((name) => name.includes("@"))) {
      return "the first line looks like an entry, but the file must start with a header row " +
        "such as email,name";
    }
    const listed = header.slice(0, MAX_HEADERS_LISTED).map((field) =>
      JSON.stringify(field.trim().slice(0, MAX_HEADER_CHARS))
    );
    const more = header.length > MAX_HEADERS_LISTED
      ? ` and ${header.length - MAX_HEADERS_LISTED} more`
      : "";
    return `the columns are ${listed.join(", ")}${more}`;
  };
  let email: number;
  if (options.emailColumn !== undefined) {
    email = find(options.emailColumn);
    if (email < 0) {
      collector.problem(line, `the header has no email column named as asked; ${found()}`);
      return undefined;
    }
  } else {
    email = EMAIL_HEADERS.map(find).find((column) => column >= 0) ?? -1;
    if (email < 0) {
      collector.problem(line, `the header has no email column; ${found()}`);
      return undefined;
    }
  }
  const nameColumns: number[][] = [];
  if (options.nameColumn !== undefined) {
    const name = find(options.nameColumn);
    if (name < 0) {
      collector.problem(line, `the header has no name column named as asked; ${found()}`);
      return undefined;
    }
    nameColumns.push([name]);
  } else {
    for (const header of NAME_HEADERS) {
      const column = find(header);
      if (column >= 0) nameColumns.push([column]);
    }
    for (const parts of NAME_PART_HEADERS) {
      const columns = parts.map(find).filter((column) => column >= 0);
      if (columns.length > 0) nameColumns.push(columns);
    }
    if (nameColumns.length === 0) {
      collector.problem(line, `the header has no name column; ${found()}`);
      return undefined;
    }
  }
  const plain = names.length === 2 && names.includes("email") && names.includes("name");
  return { fieldCount: header.length, email, names: nameColumns, skipEmptyEmail: !plain };
}

/**
 * Finds every record that contains a quote and parses them all with one
 * csv-parse call. If any is malformed, they are parsed again one at a time
 * so each bad one gets its own problem.
 */
function parseQuotedRecords(text: string): QuotedRecord[] {
  const records: QuotedRecord[] = [];
  for (
    let record = quotedRecordAt(text, 0);
    record;
    record = quotedRecordAt(text, record.end + 1)
  ) {
    records.push(record);
  }
  if (records.length === 0) return records;
  const all = parseCsvRecords(records.map((record) => recordText(text, record)).join("\n"));
  if (Array.isArray(all) && all.length === records.length) {
    records.forEach((record, i) => record.fields = all[i]);
    return records;
  }
  return parseQuotedRecordsOneByOne(text);
}

function parseQuotedRecordsOneByOne(text: string): QuotedRecord[] {
  const records: QuotedRecord[] = [];
  for (
    let record = quotedRecordAt(text, 0);
    record;
    record = quotedRecordAt(text, record.end + 1)
  ) {
    const parsed = parseCsvRecords(recordText(text, record));
    if (Array.isArray(parsed) && parsed.length === 1) {
      record.fields = parsed[0];
    } else {
      record.error = typeof parsed === "string" ? parsed : "the record is not valid CSV";
      // Go on at the next line: after a stray quote, the lines that seemed to
      // be inside a quoted field are far more likely to be ordinary records.
      const lineEnd = text.indexOf("\n", record.start);
      record.end = lineEnd < 0 ? text.length : lineEnd;
    }
    records.push(record);
  }
  return records;
}

/**
 * The first record at or after `from` (a line start) that contains a quote.
 * A record ends at the first line break outside quotes; inside a quoted
 * field quotes come in pairs, so that is where the count of quotes since the
 * record's start is even.
 */
function quotedRecordAt(text: string, from: number): QuotedRecord | undefined {
  const quote = text.indexOf('"', from);
  if (quote < 0) return undefined;
  const start = text.lastIndexOf("\n", quote) + 1;
  for (let at = quote + 1;;) {
    const close = text.indexOf('"', at);
    if (close < 0) break; // the quote is never closed: the record runs to the end
    const nextQuote = text.indexOf('"', close + 1);
    const lineEnd = text.indexOf("\n", close + 1);
    if (lineEnd >= 0 && (nextQuote < 0 || lineEnd < nextQuote)) return { start, end: lineEnd };
    if (nextQuote < 0) break; // the last record, with no line break after it
    at = nextQuote + 1;
  }
  return { start, end: text.length };
}

function recordText(text: string, record: QuotedRecord): string {
  let end = record.end;
  if (end > record.start && text.charCodeAt(end - 1) === CHAR_CR) end--;
  return text.slice(record.start, end);
}

/**
 * Parses with csv-parse; returns the records, or the problem in our words
 * (csv-parse's own messages quote the data, which may be personal).
 */
function parseCsvRecords(text: string): string[][] | string {
  try {
    return parseCsv(text, {
      relax_column_count: true,
      record_delimiter: ["\r\n", "\n"],
    }) as string[][];
  } catch (error) {
    const code = (error as { code?: string }).code;
    return CSV_ERRORS[code ?? ""] ?? "the record is not valid CSV";
  }
}

const CSV_ERRORS: Record<string, string> = {
  CSV_QUOTE_NOT_CLOSED: "a quoted field is never closed",
  CSV_INVALID_CLOSING_QUOTE:
    "a quoted field's closing quote is followed by something other than a comma or line end",
  CSV_NON_TRIMABLE_CHAR_AFTER_CLOSING_QUOTE:
    "a quoted field's closing quote is followed by something other than a comma or line end",
  INVALID_OPENING_QUOTE: "a field that does not start with a quote contains one",
};

// ---------------------------------------------------------------------------
// JSON

const JSON_SHAPE = "the JSON must be an object mapping each email to a name, " +
  'or an array of objects with "email" and "name"';

/** A JSON syntax error, at a line. */
class JsonSyntaxError extends Error {
  readonly line: number;
  constructor(line: number, message: string) {
    super(message);
    this.line = line;
  }
}

/**
 * Reads the two JSON shapes a book can have. It is a small scanner rather
 * than `JSON.parse`: that keeps the line of every entry, sees keys that
 * appear twice (`JSON.parse` keeps only the last), and does not build a
 * million-property object on the way.
 */
function readJson(text: string, collector: Collector): void {
  const json = new JsonScanner(text);
  try {
    const first = json.skipSpace();
    if (first === CHAR_OPEN_BRACE) {
      readJsonObject(json, collector);
    } else if (first === CHAR_OPEN_BRACKET) {
      readJsonArray(json, collector);
    } else {
      const line = json.line;
      json.skipValue();
      collector.problem(line, JSON_SHAPE);
    }
    if (json.skipSpace() !== END) json.fail("there is more text after the JSON value");
  } catch (error) {
    if (!(error instanceof JsonSyntaxError)) throw error;
    collector.problem(error.line, `the JSON is not valid: ${error.message}`);
  }
}

function readJsonObject(json: JsonScanner, collector: Collector): void {
  json.pos++;
  if (json.skipSpace() === CHAR_CLOSE_BRACE) {
    json.pos++;
    return;
  }
  for (;;) {
    if (json.skipSpace() !== CHAR_QUOTE) json.fail("expected an email in quotes");
    const line = json.line;
    const email = json.string();
    json.expect(CHAR_COLON, "expected a colon after the email");
    if (json.skipSpace() === CHAR_QUOTE) {
      collector.add(email, json.string(), line);
    } else {
      json.skipValue();
      collector.problem(line, "the name is not a string");
    }
    if (json.endOfList(CHAR_CLOSE_BRACE)) return;
  }
}

function readJsonArray(json: JsonScanner, collector: Collector): void {
  json.pos++;
  if (json.skipSpace() === CHAR_CLOSE_BRACKET) {
    json.pos++;
    return;
  }
  for (;;) {
    json.skipSpace();
    const line = json.line;
    if (json.text.charCodeAt(json.pos) === CHAR_OPEN_BRACE) {
      readJsonEntry(json, collector, line);
    } else {
      json.skipValue();
      collector.problem(line, 'the entry is not an object with "email" and "name"');
    }
    if (json.endOfList(CHAR_CLOSE_BRACKET)) return;
  }
}

/** Reads one `{"email": ..., "name": ...}` entry; other keys are allowed and ignored. */
function readJsonEntry(json: JsonScanner, collector: Collector, line: number): void {
  const values: Record<"email" | "name", string | undefined> = {
    email: undefined,
    name: undefined,
  };
  const problems: string[] = [];
  json.pos++;
  if (json.skipSpace() === CHAR_CLOSE_BRACE) {
    json.pos++;
  } else {
    for (;;) {
      if (json.skipSpace() !== CHAR_QUOTE) json.fail("expected a key in quotes");
      const key = json.string();
      json.expect(CHAR_COLON, "expected a colon after the key");
      if (key !== "email" && key !== "name") {
        json.skipValue();
      } else if (values[key] !== undefined) {
        json.skipValue();
        problems.push(`the entry has "${key}" more than once`);
      } else if (json.skipSpace() === CHAR_QUOTE) {
        values[key] = json.string();
      } else {
        json.skipValue();
        values[key] = "";
        problems.push(`the ${key} is not a string`);
      }
      if (json.endOfList(CHAR_CLOSE_BRACE)) break;
    }
  }
  if (values.email === undefined) problems.push('the entry has no "email"');
  if (values.name === undefined) problems.push('the entry has no "name"');
  if (problems.length > 0) {
    for (const problem of problems) collector.problem(line, problem);
    return;
  }
  collector.add(values.email!, values.name!, line);
}

const END = -1;
const CHAR_QUOTE = 0x22;
const CHAR_BACKSLASH = 0x5c;
const CHAR_COMMA = 0x2c;
const CHAR_COLON = 0x3a;
const CHAR_OPEN_BRACE = 0x7b;
const CHAR_CLOSE_BRACE = 0x7d;
const CHAR_OPEN_BRACKET = 0x5b;
const CHAR_CLOSE_BRACKET = 0x5d;
const CHAR_SPACE = 0x20;
const CHAR_TAB = 0x09;
const FIRST_NON_CONTROL = 0x20;
const JSON_ESCAPES: Record<string, string> = {
  '"': '"',
  "\\": "\\",
  "/": "/",
  b: "\b",
  f: "\f",
  n: "\n",
  r: "\r",
  t: "\t",
};
const HEX4 = /^[0-9a-fA-F]{4}$/;
const CHAR_MINUS = 0x2d;
const CHAR_PLUS = 0x2b;
const CHAR_DOT = 0x2e;
const CHAR_ZERO = 0x30;
const CHAR_NINE = 0x39;
const CHAR_LOWER_E = 0x65;
const ASCII_CASE_BIT = 0x20;

function isDigit(code: number): boolean {
  return code >= CHAR_ZERO && code <= CHAR_NINE;
}

/** A cursor over JSON text that tracks the line it is on (RFC 8259 syntax). */
class JsonScanner {
  readonly text: string;
  pos = 0;
  line = 1;

  constructor(text: string) {
    this.text = text;
  }

  fail(message: string): never {
    throw new JsonSyntaxError(this.line, message);
  }

  /** Skips whitespace; returns the next character code, or END. */
  skipSpace(): number {
    const text = this.text;
    for (; this.pos < text.length; this.pos++) {
      const code = text.charCodeAt(this.pos);
      if (code === CHAR_LF) this.line++;
      else if (code !== CHAR_SPACE && code !== CHAR_TAB && code !== CHAR_CR) return code;
    }
    return END;
  }

  expect(code: number, message: string): void {
    if (this.skipSpace() !== code) this.fail(message);
    this.pos++;
  }

  /** After a list item: true at the closing character, false at a comma; both are consumed. */
  endOfList(close: number): boolean {
    const code = this.skipSpace();
    this.pos++;
    if (code === close) return true;
    if (code === CHAR_COMMA) return false;
    return this.fail(`expected a comma or ${String.fromCharCode(close)}`);
  }

  /** Reads the string starting at the current quote. */
  string(): string {
    const text = this.text;
    const start = this.pos + 1;
    for (let i = start; i < text.length; i++) {
      const code = text.charCodeAt(i);
      if (code === CHAR_QUOTE) {
        this.pos = i + 1;
        return text.slice(start, i);
      }
      if (code === CHAR_BACKSLASH || code < FIRST_NON_CONTROL) return this.#escapedString(start);
    }
    return this.fail("a string is never closed");
  }

  #escapedString(start: number): string {
    const text = this.text;
    let result = "";
    let from = start;
    for (let i = start; i < text.length; i++) {
      const code = text.charCodeAt(i);
      if (code === CHAR_QUOTE) {
        this.pos = i + 1;
        return result + text.slice(from, i);
      }
      if (code < FIRST_NON_CONTROL) this.fail("a string contains a control character");
      if (code !== CHAR_BACKSLASH) continue;
      result += text.slice(from, i);
      const escape = text[i + 1];
      if (escape === "u") {
        const hex = text.slice(i + 2, i + 6);
        if (!HEX4.test(hex)) this.fail("a string has a bad \\u escape");
        result += String.fromCharCode(parseInt(hex, 16));
        i += 5;
      } else if (escape !== undefined && escape in JSON_ESCAPES) {
        result += JSON_ESCAPES[escape];
        i += 1;
      } else {
        this.fail("a string has a bad escape");
      }
      from = i + 1;
    }
    return this.fail("a string is never closed");
  }

  /**
   * Skips a number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?. Not a
   * regular expression: V8 keeps the last string a regular expression
   * matched alive, and that would be the whole file.
   */
  #number(): void {
    const text = this.text;
    let at = this.pos;
    if (text.charCodeAt(at) === CHAR_MINUS) at++;
    if (text.charCodeAt(at) === CHAR_ZERO) at++;
    else if (isDigit(text.charCodeAt(at))) at = this.#digits(at);
    else this.fail("expected a value");
    if (text.charCodeAt(at) === CHAR_DOT) {
      if (!isDigit(text.charCodeAt(at + 1))) this.fail("a number has no digits after its point");
      at = this.#digits(at + 1);
    }
    if ((text.charCodeAt(at) | ASCII_CASE_BIT) === CHAR_LOWER_E) {
      at++;
      if (text.charCodeAt(at) === CHAR_PLUS || text.charCodeAt(at) === CHAR_MINUS) at++;
      if (!isDigit(text.charCodeAt(at))) this.fail("a number has no digits in its exponent");
      at = this.#digits(at);
    }
    this.pos = at;
  }

  #digits(at: number): number {
    while (isDigit(this.text.charCodeAt(at))) at++;
    return at;
  }

  /** Skips any one value, checking its syntax. */
  skipValue(depth = 0): void {
    if (depth > MAX_JSON_DEPTH) this.fail("values are nested too deeply");
    const code = this.skipSpace();
    if (code === CHAR_QUOTE) {
      this.string();
    } else if (code === CHAR_OPEN_BRACE || code === CHAR_OPEN_BRACKET) {
      const close = code === CHAR_OPEN_BRACE ? CHAR_CLOSE_BRACE : CHAR_CLOSE_BRACKET;
      this.pos++;
      if (this.skipSpace() === close) {
        this.pos++;
        return;
      }
      do {
        if (close === CHAR_CLOSE_BRACE) {
          if (this.skipSpace() !== CHAR_QUOTE) this.fail("expected a key in quotes");
          this.string();
          this.expect(CHAR_COLON, "expected a colon after the key");
        }
        this.skipValue(depth + 1);
      } while (!this.endOfList(close));
    } else {
      for (const literal of ["true", "false", "null"]) {
        if (this.text.startsWith(literal, this.pos)) {
          this.pos += literal.length;
          return;
        }
      }
      this.#number();
    }
  }
}

/** Nesting deeper than this inside an entry is refused rather than risk the stack. */
const MAX_JSON_DEPTH = 64;

// ---------------------------------------------------------------------------
// vCard

/** Characters of vCard text given to the parser at a time. */
const VCARD_CHUNK_CHARS = 1 << 16;

/** Where the text may be cut: a card's last line and the next card's first. */
const CARD_END = "END:VCARD";
const CARD_BEGIN = "BEGIN:VCARD";

/**
 * Each EMAIL of a card becomes an entry with the card's name; cards without
 * one are skipped. The text goes to the parser a chunk of whole cards at a
 * time, so a million-card file never becomes a million contact objects at
 * once (that took seconds of garbage collection and hundreds of MB).
 */
function readVCard(text: string, collector: Collector): void {
  let start = 0;
  let lineOffset = 0;
  while (start < text.length) {
    const end = cardBoundaryAfter(text, start + VCARD_CHUNK_CHARS);
    readVCardChunk(text.slice(start, end), lineOffset, collector);
    for (let i = text.indexOf("\n", start); i >= 0 && i < end; i = text.indexOf("\n", i + 1)) {
      lineOffset++;
    }
    start = end;
  }
}

/**
 * The start of the first BEGIN:VCARD line at or after `from` that directly
 * follows an END:VCARD line, or the text's length. Cutting there cannot
 * split a card, nor a nested 2.1 AGENT card (an AGENT line comes before one).
 * Writers use upper case; a file in lower case is simply read in one piece.
 */
function cardBoundaryAfter(text: string, from: number): number {
  for (let begin = text.indexOf(CARD_BEGIN, from); begin > 0;) {
    let lineEnd = begin - 1;
    if (text.charCodeAt(lineEnd) === CHAR_LF) {
      if (text.charCodeAt(lineEnd - 1) === CHAR_CR) lineEnd--;
      const endStart = lineEnd - CARD_END.length;
      if (
        text.startsWith(CARD_END, endStart) &&
        (endStart === 0 || text.charCodeAt(endStart - 1) === CHAR_LF)
      ) {
        return begin;
      }
    }
    begin = text.indexOf(CARD_BEGIN, begin + 1);
  }
  return text.length;
}

/** Reads whole cards whose first line is line `lineOffset + 1` of the file. */
function readVCardChunk(text: string, lineOffset: number, collector: Collector): void {
  const { contacts, problems } = parseVCards(text);
  for (const problem of problems) {
    // The parser counts lines from the chunk's start, in `line` and in its messages.
    const message = lineOffset === 0
      ? problem.message
      : problem.message.replace(/\bline (\d+)/g, (_, line) => `line ${Number(line) + lineOffset}`);
    collector.problem(problem.line + lineOffset, message);
  }
  for (const contact of contacts) {
    if (contact.emails.length > 0) addContact(contact, lineOffset, collector);
  }
}

function addContact(contact: VCardContact, lineOffset: number, collector: Collector): void {
  if (contact.name.trim().length === 0) {
    collector.problem(contact.line + lineOffset, "the card has no name");
    return;
  }
  if (contact.emails.length === 1) {
    collector.add(contact.emails[0], contact.name, contact.emailLines[0] + lineOffset);
    return;
  }
  // A card may list one address twice (work and home); that is not a duplicate entry.
  const seen = new Set<string>();
  contact.emails.forEach((email, i) => {
    const key = normalizeEmail(email);
    if (seen.has(key)) return;
    seen.add(key);
    collector.add(email, contact.name, contact.emailLines[i] + lineOffset);
  });
}
