/**
 * The collector between the format readers and the book: it checks each
 * entry the readers find (the email rule, the name's length, duplicates),
 * adds the good ones to an {@linkcode AddressBookBuilder} and remembers
 * every problem, so a reader only has to find fields. Entries come as UTF-8
 * byte ranges, which for the usual plain-ASCII email makes no string at
 * all, or as strings, for the readers that decode.
 *
 * ```ts
 * import { BookCollector } from "./book_collect.ts";
 *
 * const collector = new BookCollector("book.csv", "error");
 * collector.add("Ada@Example.com", " Ada Lovelace ", 2);
 * const book = collector.finish(false);
 * book.get("ada@example.com"); // "Ada Lovelace"
 * ```
 *
 * @module
 */

import { type AddressBook, AddressBookBuilder } from "./addressbook.ts";
import { BookError, type BookProblem } from "./book_problem.ts";
import { emailProblem, MAX_EMAIL_CHARS, normalizeEmail } from "./email.ts";
import { MAX_REPLY_BYTES } from "./protocol.ts";
import { MAX_UTF8_PER_UNIT, writeUtf8 } from "./utf8.ts";

/** What to do when two entries have the same (normalised) email. */
export type DuplicatePolicy = "error" | "first" | "last";

/** The duplicate policies, in the order help texts list them. */
export const DUPLICATE_POLICIES: readonly DuplicatePolicy[] = ["error", "first", "last"];

/** The longest name in UTF-8: a reply payload is the status byte and the name. */
export const MAX_NAME_BYTES = MAX_REPLY_BYTES - 1;

/** The problem for a book that has no entries and was not allowed to be empty. */
export const NO_ENTRIES_MESSAGE =
  "The book has no entries; an empty book is refused unless it is allowed (--allow-empty).";

const INITIAL_ENTRIES = 1024;
/** Room for any valid key: 254 code points, even if lower-casing lengthens some. */
const KEY_BYTES = 4096;
const CHAR_AT = 0x40;
const CHAR_A = 0x41;
const CHAR_Z = 0x5a;
const FIRST_VISIBLE_ASCII = 0x21;
const LAST_VISIBLE_ASCII = 0x7e;
const ASCII_CASE_BIT = 0x20;
const FIRST_NON_ASCII = 0x80;

const decoder = new TextDecoder();

/** The ASCII characters that `String.prototype.trim` removes: tab, LF, VT, FF, CR, space. */
export function isAsciiSpace(byte: number): boolean {
  return byte === 0x20 || (byte >= 0x09 && byte <= 0x0d);
}

/**
 * Checks entries as the readers find them and adds the good ones to the
 * builder, remembering each entry's line so a duplicate can name it.
 */
export class BookCollector {
  /** Every problem so far, in the order found. */
  readonly problems: BookProblem[] = [];
  /** Entries dropped as duplicates (under `first` or `last`). */
  duplicates = 0;
  readonly #file: string;
  readonly #policy: DuplicatePolicy;
  readonly #builder: AddressBookBuilder;
  #lines = new Int32Array(INITIAL_ENTRIES);
  /** The normalised key being added, in UTF-8. */
  readonly #key = new Uint8Array(KEY_BYTES);
  /** A name that had to be trimmed as a string, in UTF-8. */
  #name = new Uint8Array(1024);

  /** Makes a collector for the file named `file` in problems. */
  constructor(file: string, policy: DuplicatePolicy) {
    this.#file = file;
    this.#policy = policy;
    this.#builder = new AddressBookBuilder();
  }

  /** Records a problem; `message` is one sentence, without the file or line. */
  problem(line: number, message: string): void {
    this.problems.push({ file: this.#file, line, message });
  }

  /** Checks and adds one entry given as strings, as read (not yet trimmed). */
  add(email: string, name: string, line: number): void {
    const keyLength = this.#keyFromString(email, line);
    if (keyLength < 0) return;
    const trimmed = name.trim();
    if (this.#name.length < trimmed.length * MAX_UTF8_PER_UNIT) {
      this.#name = new Uint8Array(trimmed.length * MAX_UTF8_PER_UNIT);
    }
    const nameEnd = writeUtf8(trimmed, this.#name, 0);
    this.#addChecked(keyLength, this.#name, 0, nameEnd, line);
  }

  /**
   * Checks and adds one entry given as UTF-8 byte ranges, as read (not yet
   * trimmed): the email `emails[emailStart, emailEnd)` and the name
   * `names[nameStart, nameEnd)`. The bytes are copied before this returns.
   */
  addBytes(
    emails: Uint8Array,
    emailStart: number,
    emailEnd: number,
    names: Uint8Array,
    nameStart: number,
    nameEnd: number,
    line: number,
  ): void {
    let keyLength = this.#plainAsciiKey(emails, emailStart, emailEnd);
    if (keyLength < 0) {
      keyLength = this.#keyFromString(decoder.decode(emails.subarray(emailStart, emailEnd)), line);
      if (keyLength < 0) return;
    }
    while (nameStart < nameEnd && isAsciiSpace(names[nameStart])) nameStart++;
    while (nameEnd > nameStart && isAsciiSpace(names[nameEnd - 1])) nameEnd--;
    if (
      nameStart < nameEnd &&
      (names[nameStart] >= FIRST_NON_ASCII || names[nameEnd - 1] >= FIRST_NON_ASCII)
    ) {
      // It may start or end with Unicode whitespace, which only a string trims right.
      const trimmed = decoder.decode(names.subarray(nameStart, nameEnd)).trim();
      if (this.#name.length < trimmed.length * MAX_UTF8_PER_UNIT) {
        this.#name = new Uint8Array(trimmed.length * MAX_UTF8_PER_UNIT);
      }
      names = this.#name;
      nameStart = 0;
      nameEnd = writeUtf8(trimmed, names, 0);
    }
    this.#addChecked(keyLength, names, nameStart, nameEnd, line);
  }

  /**
   * Builds the book, or throws every problem found (in line order); a book
   * with no entries is a problem unless `allowEmpty`. Duplicates are found
   * here, by the builder, all at once.
   */
  finish(allowEmpty: boolean): AddressBook {
    const lines = this.#lines;
    const book = this.#builder.build({
      keep: this.#policy === "last" ? "last" : "first",
      found: (first, duplicate) => {
        if (this.#policy !== "error") {
          this.duplicates++;
          return;
        }
        this.problem(lines[duplicate], `The email is a duplicate of line ${lines[first]}.`);
      },
    });
    if (this.problems.length === 0 && book.size === 0 && !allowEmpty) {
      this.problem(0, NO_ENTRIES_MESSAGE);
    }
    if (this.problems.length > 0) {
      // Duplicates and some readers' problems are found late; sort is stable.
      throw new BookError(this.problems.sort((a, b) => a.line - b.line));
    }
    return book;
  }

  /** Writes the key of an email string into `#key`; its length, or -1 after a problem. */
  #keyFromString(email: string, line: number): number {
    const problem = emailProblem(email);
    if (problem !== undefined) {
      this.problem(line, `The email is not valid: ${problem}.`);
      return -1;
    }
    return writeUtf8(normalizeEmail(email), this.#key, 0);
  }

  /**
   * The normalised key of an address made only of visible ASCII with one
   * `@` inside it, which `emailProblem` always accepts, written into `#key`;
   * -1 for anything else, which then goes through `emailProblem` itself.
   * Almost every address takes this way, which makes no string.
   */
  #plainAsciiKey(bytes: Uint8Array, start: number, end: number): number {
    while (start < end && isAsciiSpace(bytes[start])) start++;
    while (end > start && isAsciiSpace(bytes[end - 1])) end--;
    const length = end - start;
    if (length === 0 || length > MAX_EMAIL_CHARS) return -1;
    const key = this.#key;
    let at = -1;
    for (let i = 0; i < length; i++) {
      let code = bytes[start + i];
      if (code < FIRST_VISIBLE_ASCII || code > LAST_VISIBLE_ASCII) return -1;
      if (code === CHAR_AT) {
        if (at >= 0) return -1;
        at = i;
      } else if (code >= CHAR_A && code <= CHAR_Z) {
        code |= ASCII_CASE_BIT;
      }
      key[i] = code;
    }
    if (at <= 0 || at === length - 1) return -1;
    return length;
  }

  /** Adds the key in `#key` with a trimmed name, after the name checks; duplicates wait for finish. */
  #addChecked(
    keyLength: number,
    names: Uint8Array,
    nameStart: number,
    nameEnd: number,
    line: number,
  ): void {
    if (nameEnd === nameStart) {
      this.problem(line, "The name is empty.");
      return;
    }
    const nameBytes = nameEnd - nameStart;
    if (nameBytes > MAX_NAME_BYTES) {
      this.problem(
        line,
        `The name is ${nameBytes} bytes long, over the limit of ${MAX_NAME_BYTES}.`,
      );
      return;
    }
    const entry = this.#builder.appendBytes(this.#key, 0, keyLength, names, nameStart, nameEnd);
    if (entry >= this.#lines.length) {
      const grown = new Int32Array(this.#lines.length * 2);
      grown.set(this.#lines);
      this.#lines = grown;
    }
    this.#lines[entry] = line;
  }
}
