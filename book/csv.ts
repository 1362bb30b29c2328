/**
 * Reads an RFC 4180 CSV book from its bytes, one record at a time, straight
 * from the read buffer: no string per row, no object per row, and a single
 * pass over every byte, so the time is linear in the file for any input
 * (a field of a million escaped quotes included).
 *
 * Why not csv-parse: it was 1.35 MB of module graph, it makes a string per
 * field and an array per record (about 4 s and hundreds of MB for a
 * million rows, which is why the old loader only gave it the quoted
 * records), and finding those quoted records around it was quadratic. A
 * record without a quote, nearly every one, is split at its commas with
 * native `indexOf`; a record with one goes through a small state machine
 * that copies the unescaped fields to a scratch buffer. Both give byte
 * ranges to the {@linkcode BookCollector}.
 *
 * Contact apps' exports hold the given name and surname in columns of
 * their own (Google's `First Name` and `Last Name`, or `Given Name` and
 * `Family Name` in older exports; Outlook's and Thunderbird's `First Name`
 * and `Last Name`); those are kept beside the name. They also give a contact
 * one column per address (`E-mail 2 Address`, `E-mail 2 - Value`, ...), and
 * Google joins the addresses under one label in one cell with ` ::: `:
 * every address becomes an entry with its contact's name.
 *
 * Dialect: fields separated by commas, records by LF or CRLF (a CR elsewhere
 * is data); a field that starts with a quote is quoted, `""` inside it is a
 * quote, and it may hold commas and line breaks; a quote anywhere else, or
 * anything but a comma or line end after a closing quote, is an error. The
 * first non-blank record is the header; blank lines are skipped but
 * counted.
 *
 * ```ts
 * import { BookBytes } from "./bytes.ts";
 * import { BookCollector } from "./collect.ts";
 * import { readCsv } from "./csv.ts";
 *
 * const bytes = BookBytes.fromBytes(new TextEncoder().encode('email,name\na@example.com,"A, B"\n'));
 * bytes.begin();
 * const collector = new BookCollector("book.csv", "error");
 * readCsv(bytes, collector);
 * collector.finish(false).get("a@example.com"); // "A, B"
 * ```
 *
 * @module
 */

import type { BookBytes } from "./bytes.ts";
import type { BookCollector } from "./collect.ts";
import type { ReaderOptions } from "./reader.ts";
import { isAsciiSpace, normalizeEmail } from "./email.ts";
import { counted } from "../common/errors.ts";

/**
 * Headers of a column holding email addresses, lower case: ours (`email`)
 * and those of contact apps' exports, which have one column per address of
 * a contact (Outlook's `E-mail Address`, `E-mail 2 Address`, ...; Google's
 * `E-mail 1 - Value`, `E-mail 2 - Value`, ...; Thunderbird's `Primary
 * Email` and `Secondary Email`). Every such column is read.
 */
const EMAIL_HEADER =
  /^(?:e-?mail(?: \d+)?(?: address)?|e-?mail \d+ - value|(?:primary|secondary) e-?mail)$/;

/**
 * What Google puts between the addresses it keeps under one label in one
 * cell (`a@example.com ::: b@example.com`); no valid address holds it, as
 * an address has no spaces.
 */
const JOINED_ADDRESSES = " ::: ";

/** Headers of a column holding the whole name, lower case, best first. */
const NAME_HEADERS = ["name", "display name", "full name"];

/** Headers of a column holding the given name, lower case, best first. */
const GIVEN_NAME_HEADERS = ["given name", "first name"];

/** Headers of a column holding the surname, lower case, best first. */
const SURNAME_HEADERS = ["family name", "last name"];

/** Columns whose parts, joined with spaces, make a name when no whole-name column has one. */
const NAME_PART_HEADERS = [
  ["first name", "middle name", "last name"], // Outlook, Thunderbird, Google
  ["given name", "additional name", "family name"], // older Google exports
];

/** How many headers a "no such column" problem lists before it stops. */
const MAX_HEADERS_LISTED = 20;
/** How much of each header such a problem shows. */
const MAX_HEADER_CHARS = 40;

const LF = 0x0a;
const CR = 0x0d;
const QUOTE = 0x22;
const COMMA = 0x2c;
const COLON = 0x3a;

const NEVER_CLOSED = "A quoted field is never closed.";
const BAD_CLOSING_QUOTE =
  "A quoted field's closing quote is followed by something other than a comma or line end.";
const STRAY_QUOTE = "A field that does not start with a quote contains one.";

/** Why a record could not be read yet, or at all; any other result is its end. */
const NEED_MORE = -1;
const ERROR = -2;

/** How to turn a CSV record into entries, worked out from the header. */
interface CsvLayout {
  fieldCount: number;
  /** The columns holding addresses, in header order: each address is an entry of the record's name. */
  emails: number[];
  /** Ways to make the name, best first: each a list of columns to join with spaces. */
  names: number[][];
  /** The one name column, when there is only that way and no name parts: then no string is made. */
  plainName: number;
  /** The given name's column, or -1. */
  givenName: number;
  /** The surname's column, or -1. */
  surname: number;
  /**
   * A contact app's export, not our own `email,name`: it lists people
   * without an email too (those rows are skipped), and a cell may hold
   * several addresses joined by {@linkcode JOINED_ADDRESSES} (each is read).
   */
  contactsExport: boolean;
}

const decoder = new TextDecoder();

/** Reads every record of a CSV book into the collector; `options` may name its columns. */
export function readCsv(
  bytes: BookBytes,
  collector: BookCollector,
  options: ReaderOptions = {},
): void {
  new CsvReader(bytes, collector, options).read();
}

/** The cursor and scratch space of one read. */
class CsvReader {
  readonly #bytes: BookBytes;
  readonly #collector: BookCollector;
  readonly #columns: ReaderOptions;
  /** The checked bytes: `bytes.buffer[0, bytes.end)`. */
  #view: Uint8Array;
  #pos: number;
  #line = 1;
  /** Lines the record just read took beyond its first. */
  #extraLines = 0;
  /** The next quote at or after the cursor, or -1 when there is none in the view. */
  #nextQuote = -2;
  /** The next comma at or after where the last search started, or -1. */
  #nextComma = -2;
  /** The fields of the record just read: buffer, starts and ends. */
  #fieldBytes: Uint8Array;
  #starts = new Int32Array(16);
  #ends = new Int32Array(16);
  #fieldCount = 0;
  /** Unescaped fields of a record with quotes. */
  #scratch = new Uint8Array(1 << 16);
  #error = "";
  #layout: CsvLayout | undefined;

  constructor(bytes: BookBytes, collector: BookCollector, columns: ReaderOptions) {
    this.#bytes = bytes;
    this.#collector = collector;
    this.#columns = columns;
    this.#view = bytes.buffer.subarray(0, bytes.end);
    this.#pos = bytes.start;
    this.#fieldBytes = this.#view;
  }

  read(): void {
    for (;;) {
      if (this.#pos >= this.#view.length && !this.#more()) break;
      const line = this.#line;
      const end = this.#record(this.#pos);
      if (end === NEED_MORE) {
        if (!this.#more()) throw new Error("A CSV record needs more bytes after the end.");
        continue;
      }
      if (end === ERROR) {
        this.#collector.problem(line, this.#error);
        // Go on at the next line: after a stray quote, the lines that seemed to
        // be inside a quoted field are far more likely to be ordinary records.
        if (this.#layout === undefined || !this.#skipLine()) return;
        continue;
      }
      this.#pos = end;
      this.#line += 1 + this.#extraLines;
      if (this.#fieldCount === 0) continue; // a blank line
      if (this.#layout === undefined) {
        this.#layout = this.#readHeader(line);
        if (this.#layout === undefined) return;
        continue;
      }
      this.#addRecord(this.#layout, line);
    }
    if (this.#layout === undefined) this.#collector.problem(1, "The file has no header row.");
  }

  /** Asks for more bytes, keeping those from the cursor on; false at the end of the file. */
  #more(): boolean {
    const moved = this.#bytes.more(this.#pos);
    this.#view = this.#bytes.buffer.subarray(0, this.#bytes.end);
    if (moved < 0) return false;
    this.#pos -= moved;
    this.#nextQuote = -2;
    this.#nextComma = -2;
    return true;
  }

  /** Moves past the line the cursor is on; false when the file ends first. */
  #skipLine(): boolean {
    for (;;) {
      const lineEnd = this.#view.indexOf(LF, this.#pos);
      if (lineEnd >= 0) {
        this.#pos = lineEnd + 1;
        this.#line++;
        return true;
      }
      if (this.#bytes.done) return false;
      this.#more();
    }
  }

  /**
   * Reads the record at `start` into the field arrays; returns the index
   * after it (after its line break), NEED_MORE, or ERROR with `#error` set.
   */
  #record(start: number): number {
    const view = this.#view;
    const done = this.#bytes.done;
    let lineEnd = view.indexOf(LF, start);
    if (lineEnd < 0) {
      if (!done) return NEED_MORE;
      lineEnd = view.length;
    }
    if (this.#nextQuote !== -1 && this.#nextQuote < start) {
      this.#nextQuote = view.indexOf(QUOTE, start);
    }
    if (this.#nextQuote >= 0 && this.#nextQuote < lineEnd) return this.#quotedRecord(start);
    this.#extraLines = 0;
    let contentEnd = lineEnd;
    if (contentEnd > start && view[contentEnd - 1] === CR) contentEnd--;
    this.#fieldBytes = view;
    this.#fieldCount = 0;
    if (contentEnd > start) this.#splitAtCommas(start, contentEnd);
    return lineEnd + 1;
  }

  /** Splits a line without quotes at its commas. */
  #splitAtCommas(start: number, end: number): void {
    const view = this.#view;
    for (;;) {
      // Remembered between lines: a file without commas must not be searched to its end per line.
      if (this.#nextComma !== -1 && this.#nextComma < start) {
        this.#nextComma = view.indexOf(COMMA, start);
      }
      const comma = this.#nextComma;
      if (comma < 0 || comma >= end) {
        this.#pushField(start, end);
        return;
      }
      this.#pushField(start, comma);
      start = comma + 1;
    }
  }

  #pushField(start: number, end: number): void {
    const count = this.#fieldCount;
    if (count === this.#starts.length) {
      const starts = new Int32Array(count * 2);
      starts.set(this.#starts);
      this.#starts = starts;
      const ends = new Int32Array(count * 2);
      ends.set(this.#ends);
      this.#ends = ends;
    }
    this.#starts[count] = start;
    this.#ends[count] = end;
    this.#fieldCount = count + 1;
  }

  /** Reads a record holding a quote, byte by byte, unescaping its fields into `#scratch`. */
  #quotedRecord(start: number): number {
    const view = this.#view;
    const done = this.#bytes.done;
    const length = view.length;
    // Unescaped text is never longer than the record.
    if (this.#scratch.length < length - start) this.#scratch = new Uint8Array(2 * (length - start));
    const out = this.#scratch;
    this.#fieldBytes = out;
    this.#fieldCount = 0;
    let written = 0;
    let lines = 0;
    let i = start;
    for (;;) {
      const fieldStart = written;
      if (i < length && view[i] === QUOTE) {
        i++;
        for (;;) {
          if (i >= length) {
            if (!done) return NEED_MORE;
            return this.#fail(NEVER_CLOSED);
          }
          const byte = view[i];
          if (byte === QUOTE) {
            if (i + 1 >= length && !done) return NEED_MORE;
            if (view[i + 1] !== QUOTE) break;
            i++;
          } else if (byte === LF) {
            lines++;
          }
          out[written++] = byte;
          i++;
        }
        i++; // the closing quote
        this.#pushField(fieldStart, written);
        if (i >= length) break; // the last record, with no line break after it
        const after = view[i];
        if (after === COMMA) {
          i++;
          continue;
        }
        if (after === LF) {
          i++;
          break;
        }
        if (after === CR) {
          if (i + 1 >= length && !done) return NEED_MORE;
          if (view[i + 1] === LF) {
            i += 2;
            break;
          }
        }
        return this.#fail(BAD_CLOSING_QUOTE);
      }
      // An unquoted field, up to a comma or the line end.
      for (;;) {
        if (i >= length) {
          if (!done) return NEED_MORE;
          this.#pushField(fieldStart, written);
          this.#extraLines = lines;
          return i;
        }
        const byte = view[i];
        if (byte === COMMA || byte === LF) break;
        if (byte === QUOTE) return this.#fail(STRAY_QUOTE);
        out[written++] = byte;
        i++;
      }
      if (view[i] === COMMA) {
        this.#pushField(fieldStart, written);
        i++;
        continue;
      }
      if (written > fieldStart && out[written - 1] === CR) written--;
      this.#pushField(fieldStart, written);
      i++; // the line break
      break;
    }
    this.#extraLines = lines;
    return i;
  }

  #fail(message: string): number {
    this.#error = message;
    return ERROR;
  }

  #field(index: number): string {
    return decoder.decode(this.#fieldBytes.subarray(this.#starts[index], this.#ends[index]));
  }

  #isBlankField(index: number): boolean {
    const bytes = this.#fieldBytes;
    for (let i = this.#starts[index]; i < this.#ends[index]; i++) {
      if (!isAsciiSpace(bytes[i])) return false;
    }
    return true;
  }

  #addRecord(layout: CsvLayout, line: number): void {
    const count = this.#fieldCount;
    if (count !== layout.fieldCount) {
      this.#collector.problem(
        line,
        `The record has ${counted(count, "field")}, ` +
          `but the header has ${layout.fieldCount}.`,
      );
      return;
    }
    const emails = layout.emails;
    if (emails.length === 1 && !(layout.contactsExport && this.#hasColon(emails[0]))) {
      this.#addOneAddress(layout, emails[0], line);
    } else {
      this.#addEveryAddress(layout, line);
    }
  }

  /** Adds the record's one address, from bytes when the name is one column as it stands. */
  #addOneAddress(layout: CsvLayout, email: number, line: number): void {
    if (layout.contactsExport && this.#isBlankField(email)) return;
    const bytes = this.#fieldBytes;
    if (layout.plainName >= 0) {
      const name = layout.plainName;
      this.#collector.addBytes(
        bytes,
        this.#starts[email],
        this.#ends[email],
        bytes,
        this.#starts[name],
        this.#ends[name],
        line,
      );
      return;
    }
    this.#addContact(layout, [this.#field(email)], line);
  }

  /**
   * Adds an entry for every address of the record: in each email column,
   * and each of the addresses a cell joins. An address the contact lists
   * twice (in two columns, or in other letter case) is one entry.
   */
  #addEveryAddress(layout: CsvLayout, line: number): void {
    const addresses = new Map<string, string>();
    for (const column of layout.emails) {
      const cell = this.#field(column);
      const parts = layout.contactsExport ? cell.split(JOINED_ADDRESSES) : [cell];
      for (const address of parts) {
        const key = normalizeEmail(address);
        if (key === "" && layout.contactsExport) continue;
        if (!addresses.has(key)) addresses.set(key, address);
      }
    }
    if (addresses.size > 0) this.#addContact(layout, [...addresses.values()], line);
  }

  /** Adds each of `addresses` with the record's name, given name and surname. */
  #addContact(layout: CsvLayout, addresses: string[], line: number): void {
    const name = this.#nameOf(layout);
    const givenName = layout.givenName >= 0 ? this.#field(layout.givenName) : undefined;
    const surname = layout.surname >= 0 ? this.#field(layout.surname) : undefined;
    for (const address of addresses) {
      this.#collector.add(address, name, line, givenName, surname);
    }
  }

  /** The record's name: from the first of the layout's ways that gives a non-blank one. */
  #nameOf(layout: CsvLayout): string {
    let name = "";
    for (let i = 0; i < layout.names.length && name.trim() === ""; i++) {
      const columns = layout.names[i];
      name = columns.length === 1
        ? this.#field(columns[0])
        : columns.map((column) => this.#field(column).trim()).filter((part) => part !== "")
          .join(" ");
    }
    return name;
  }

  /** Whether the field holds a colon, as a cell joining addresses does (addresses rarely do). */
  #hasColon(index: number): boolean {
    const bytes = this.#fieldBytes;
    for (let i = this.#starts[index]; i < this.#ends[index]; i++) {
      if (bytes[i] === COLON) return true;
    }
    return false;
  }

  /** Works out the layout from the header record, or records why it cannot. */
  #readHeader(line: number): CsvLayout | undefined {
    const header = Array.from({ length: this.#fieldCount }, (_, i) => this.#field(i));
    return csvLayout(header, line, this.#collector, this.#columns);
  }
}

/** Works out the layout from the header, or records why it cannot. */
function csvLayout(
  header: string[],
  line: number,
  collector: BookCollector,
  columns: ReaderOptions,
): CsvLayout | undefined {
  const names = header.map((field) => field.trim().toLowerCase());
  const find = (wanted: string) => names.indexOf(wanted.trim().toLowerCase());
  const found = () => {
    if (names.some((name) => name.includes("@"))) {
      return "the first line looks like an entry, but the file must start with a header row " +
        "such as email,name.";
    }
    const listed = header.slice(0, MAX_HEADERS_LISTED).map((field) =>
      JSON.stringify(field.trim().slice(0, MAX_HEADER_CHARS))
    );
    const more = header.length > MAX_HEADERS_LISTED
      ? ` and ${header.length - MAX_HEADERS_LISTED} more`
      : "";
    return `the columns are ${listed.join(", ")}${more}.`;
  };
  let emails: number[];
  if (columns.emailColumn !== undefined) {
    emails = [find(columns.emailColumn)];
    if (emails[0] < 0) {
      collector.problem(line, `The header has no email column named as asked; ${found()}`);
      return undefined;
    }
  } else {
    emails = names.flatMap((name, column) => EMAIL_HEADER.test(name) ? [column] : []);
    if (emails.length === 0) {
      collector.problem(line, `The header has no email column; ${found()}`);
      return undefined;
    }
  }
  const nameColumns: number[][] = [];
  if (columns.nameColumn !== undefined) {
    const name = find(columns.nameColumn);
    if (name < 0) {
      collector.problem(line, `The header has no name column named as asked; ${found()}`);
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
      collector.problem(line, `The header has no name column; ${found()}`);
      return undefined;
    }
  }
  const plain = names.length === 2 && names.includes("email") && names.includes("name");
  const givenName = GIVEN_NAME_HEADERS.map(find).find((column) => column >= 0) ?? -1;
  const surname = SURNAME_HEADERS.map(find).find((column) => column >= 0) ?? -1;
  const plainName =
    nameColumns.length === 1 && nameColumns[0].length === 1 && givenName < 0 && surname < 0
      ? nameColumns[0][0]
      : -1;
  return {
    fieldCount: header.length,
    emails,
    names: nameColumns,
    plainName,
    givenName,
    surname,
    contactsExport: !plain,
  };
}
