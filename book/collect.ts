/**
 * The collector between the format readers and the book: it checks each
 * entry the readers find (the email rule, the name's length and
 * characters, duplicates),
 * adds the good ones to an {@linkcode AddressBookBuilder} and remembers
 * every problem, so a reader only has to find fields. Entries come as UTF-8
 * byte ranges, which for the usual plain-ASCII email makes no string at
 * all, or as strings, for the readers that decode (and that may also have
 * the owner's given name and surname).
 *
 * ```ts
 * import { BookCollector } from "./collect.ts";
 *
 * const collector = new BookCollector("book.csv", "error");
 * collector.add("Ada@Example.com", " Ada Lovelace ", 2);
 * const book = collector.finish(false);
 * book.get("ada@example.com"); // "Ada Lovelace"
 * ```
 *
 * @module
 */

import { type AddressBook, AddressBookBuilder, type NamePartBytes } from "./addressbook.ts";
import { BookError, type BookProblem } from "./problem.ts";
import {
  codePointName,
  emailProblem,
  isAsciiSpace,
  normalizeAsciiEmailWords,
  normalizeEmail,
  WordViews,
} from "./email.ts";
import { terminalUnsafeOffset } from "../common/terminal_text.ts";
import { MAX_UTF8_PER_UNIT, writeUtf8 } from "../common/utf8.ts";

/** What to do when two entries have the same (normalised) email. */
export type DuplicatePolicy = "error" | "first" | "last";

/** The duplicate policies, in the order help texts list them. */
export const DUPLICATE_POLICIES: readonly DuplicatePolicy[] = ["error", "first", "last"];

/**
 * The longest name in UTF-8, 1 MiB less one byte: so that every name fits
 * in a binary reply, whose payload is a status byte and the name (the
 * protocol's MAX_REPLY_BYTES; `wire/binary_answer_test.ts` checks they agree,
 * and the book imports nothing from a wire protocol).
 */
export const MAX_NAME_BYTES = (1 << 20) - 1;

/** The problem for a book that has no entries and was not allowed to be empty. */
export const NO_ENTRIES_MESSAGE =
  "The book has no entries; an empty book is refused unless it is allowed (--allow-empty).";

const INITIAL_ENTRIES = 1024;
/** Room for any valid key: 254 code points, even if lower-casing lengthens some. */
const KEY_BYTES = 4096;
const FIRST_NON_ASCII = 0x80;

const decoder = new TextDecoder();

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
  /** The same bytes, written four at a time by the plain-ASCII path. */
  readonly #keyWords = new DataView(this.#key.buffer);
  /** Views of the readers' buffers, for that path to read four bytes at a time. */
  readonly #emailViews = new WordViews();
  /** A name that had to be trimmed as a string, in UTF-8. */
  #name = new Uint8Array(1024);
  /** The given name and surname of the entry being added, in UTF-8. */
  readonly #nameParts: NamePartBytes = {
    bytes: new Uint8Array(256),
    givenStart: 0,
    givenEnd: 0,
    surnameStart: 0,
    surnameEnd: 0,
  };

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

  /**
   * Checks and adds one entry given as strings, as read (not yet trimmed),
   * with the owner's given name and surname when the source has them
   * (kept beside the name, not checked against it; blank is none).
   */
  add(email: string, name: string, line: number, givenName?: string, surname?: string): void {
    const keyLength = this.#keyFromString(email, line);
    if (keyLength < 0) return;
    const trimmed = name.trim();
    if (this.#name.length < trimmed.length * MAX_UTF8_PER_UNIT) {
      this.#name = new Uint8Array(trimmed.length * MAX_UTF8_PER_UNIT);
    }
    const nameEnd = writeUtf8(trimmed, this.#name, 0);
    const parts = this.#namePartsOf(givenName?.trim() ?? "", surname?.trim() ?? "");
    this.#addChecked(keyLength, this.#name, 0, nameEnd, line, parts);
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
    // Almost every address is plain ASCII, which this settles without a string.
    const emailWords = this.#emailViews.of(emails);
    let keyLength = normalizeAsciiEmailWords(emailWords, emailStart, emailEnd, this.#keyWords, 0);
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
    let book: AddressBook;
    try {
      book = this.#builder.build({
        keep: this.#policy === "last" ? "last" : "first",
        found: (first, duplicate) => {
          if (this.#policy !== "error") {
            this.duplicates++;
            return;
          }
          this.problem(lines[duplicate], `The email is a duplicate of line ${lines[first]}.`);
        },
      });
    } catch (error) {
      // The records' 4 GiB: a file under the size limit of tiny entries can
      // need more (each record has a header and padding), and says so here.
      if (!(error instanceof RangeError)) throw error;
      this.problem(0, error.message);
      throw new BookError(this.problems.sort((a, b) => a.line - b.line));
    }
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

  /** The given name and surname, trimmed, in scratch space; undefined when both are blank. */
  #namePartsOf(givenName: string, surname: string): NamePartBytes | undefined {
    if (givenName === "" && surname === "") return undefined;
    const parts = this.#nameParts;
    const room = (givenName.length + surname.length) * MAX_UTF8_PER_UNIT;
    if (parts.bytes.length < room) parts.bytes = new Uint8Array(room);
    parts.givenEnd = writeUtf8(givenName, parts.bytes, 0);
    parts.surnameStart = parts.givenEnd;
    parts.surnameEnd = writeUtf8(surname, parts.bytes, parts.surnameStart);
    return parts;
  }

  /** Whether the given name and surname are free of characters unsafe on a terminal; a problem if not. */
  #namePartsSafe(parts: NamePartBytes, line: number): boolean {
    const unsafe = terminalUnsafeOffset(parts.bytes, 0, parts.surnameEnd);
    if (unsafe < 0) return true;
    this.#unsafeNameProblem(
      unsafe < parts.givenEnd ? "given name" : "surname",
      parts.bytes,
      unsafe,
      line,
    );
    return false;
  }

  /**
   * The problem of a name holding a control or direction-changing character
   * (common/terminal_text.ts): shown raw by a client, it could rewrite the
   * user's terminal or make the name read as another.
   */
  #unsafeNameProblem(what: string, bytes: Uint8Array, offset: number, line: number): void {
    const char = decoder.decode(bytes.subarray(offset, offset + 3)).charAt(0);
    this.problem(
      line,
      `The ${what} contains ${codePointName(char)}, a control or direction-changing character.`,
    );
  }

  /** Adds the key in `#key` with a trimmed name, after the name checks; duplicates wait for finish. */
  #addChecked(
    keyLength: number,
    names: Uint8Array,
    nameStart: number,
    nameEnd: number,
    line: number,
    nameParts?: NamePartBytes,
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
    const unsafe = terminalUnsafeOffset(names, nameStart, nameEnd);
    if (unsafe >= 0 || (nameParts !== undefined && !this.#namePartsSafe(nameParts, line))) {
      if (unsafe >= 0) this.#unsafeNameProblem("name", names, unsafe, line);
      return;
    }
    const entry = this.#builder.appendBytes(
      this.#key,
      0,
      keyLength,
      names,
      nameStart,
      nameEnd,
      nameParts,
    );
    if (entry >= this.#lines.length) {
      const grown = new Int32Array(this.#lines.length * 2);
      grown.set(this.#lines);
      this.#lines = grown;
    }
    this.#lines[entry] = line;
  }
}
