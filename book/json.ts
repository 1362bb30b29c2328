/**
 * Reads a JSON book from its bytes: an object mapping each email to a name,
 * or an array of objects with "email" and "name" (other keys are allowed and
 * skipped). It is a small RFC 8259 scanner rather than `JSON.parse`: that
 * keeps the line of every entry, sees keys that appear twice (`JSON.parse`
 * keeps only the last), never needs the whole file as one string and makes
 * no object per entry. Strings are unescaped straight into scratch buffers
 * and handed to the {@linkcode BookCollector} as bytes.
 *
 * ```ts
 * import { BookBytes } from "./bytes.ts";
 * import { BookCollector } from "./collect.ts";
 * import { readJson } from "./json.ts";
 *
 * const bytes = BookBytes.fromBytes(new TextEncoder().encode('{"a@example.com": "A"}'));
 * bytes.begin();
 * const collector = new BookCollector("book.json", "error");
 * readJson(bytes, collector);
 * collector.finish(false).get("a@example.com"); // "A"
 * ```
 *
 * @module
 */

import { type BookBytes, MAX_RECORD_BYTES } from "./bytes.ts";
import type { BookCollector } from "./collect.ts";
import type { ReaderOptions } from "./reader.ts";
import { writeCodePoint } from "../common/utf8.ts";

const JSON_SHAPE = "The JSON must be an object mapping each email to a name, " +
  'or an array of objects with "email" and "name".';

/** Nesting deeper than this inside an entry is refused rather than risk the stack. */
const MAX_JSON_DEPTH = 64;

const END = -1;
const LF = 0x0a;
const CR = 0x0d;
const SPACE = 0x20;
const TAB = 0x09;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const MINUS = 0x2d;
const PLUS = 0x2b;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;
const LOWER_E = 0x65;
const LOWER_U = 0x75;
const ASCII_CASE_BIT = 0x20;
const FIRST_NON_CONTROL = 0x20;
/** The byte each one-letter escape stands for. */
const ESCAPES = new Map<number, number>(
  [['"', '"'], ["\\", "\\"], ["/", "/"], ["b", "\b"], ["f", "\f"], ["n", "\n"], ["r", "\r"], [
    "t",
    "\t",
  ]].map(([escape, byte]) => [escape.charCodeAt(0), byte.charCodeAt(0)]),
);
const LITERALS = ["true", "false", "null"].map((word) => new TextEncoder().encode(word));
const EMAIL_KEY = new TextEncoder().encode("email");
const NAME_KEY = new TextEncoder().encode("name");
const REPLACEMENT_CHARACTER = 0xfffd;

/** A JSON syntax error, at a line. */
class JsonSyntaxError extends Error {
  readonly line: number;
  constructor(line: number, message: string) {
    super(message);
    this.line = line;
  }
}

/** A growable byte buffer that a string is unescaped into. */
class StringBuffer {
  bytes = new Uint8Array(256);
  length = 0;

  /** Makes room for `extra` more bytes. */
  room(extra: number): Uint8Array {
    if (this.length + extra > this.bytes.length) {
      const grown = new Uint8Array(Math.max(2 * this.bytes.length, this.length + extra));
      grown.set(this.bytes.subarray(0, this.length));
      this.bytes = grown;
    }
    return this.bytes;
  }

  equals(word: Uint8Array): boolean {
    if (this.length !== word.length) return false;
    for (let i = 0; i < word.length; i++) if (this.bytes[i] !== word[i]) return false;
    return true;
  }
}

/** Reads the book's entries into the collector. */
export function readJson(
  bytes: BookBytes,
  collector: BookCollector,
  _options: ReaderOptions = {},
): void {
  const json = new JsonScanner(bytes);
  try {
    const first = json.skipSpace();
    if (first === OPEN_BRACE) {
      readObject(json, collector);
    } else if (first === OPEN_BRACKET) {
      readArray(json, collector);
    } else {
      const line = json.line;
      json.skipValue();
      collector.problem(line, JSON_SHAPE);
    }
    if (json.skipSpace() !== END) json.fail("there is more text after the JSON value");
  } catch (error) {
    if (!(error instanceof JsonSyntaxError)) throw error;
    collector.problem(error.line, `The JSON is not valid: ${error.message}.`);
  }
}

function readObject(json: JsonScanner, collector: BookCollector): void {
  json.pos++;
  if (json.skipSpace() === CLOSE_BRACE) {
    json.pos++;
    return;
  }
  const email = new StringBuffer();
  const name = new StringBuffer();
  for (;;) {
    if (json.skipSpace() !== QUOTE) json.fail("expected an email in quotes");
    const line = json.line;
    json.string(email);
    json.expect(COLON, "expected a colon after the email");
    if (json.skipSpace() === QUOTE) {
      json.string(name);
      collector.addBytes(email.bytes, 0, email.length, name.bytes, 0, name.length, line);
    } else {
      json.skipValue();
      collector.problem(line, "The name is not a string.");
    }
    if (json.endOfList(CLOSE_BRACE)) return;
  }
}

function readArray(json: JsonScanner, collector: BookCollector): void {
  json.pos++;
  if (json.skipSpace() === CLOSE_BRACKET) {
    json.pos++;
    return;
  }
  const entry = new ArrayEntry();
  for (;;) {
    const first = json.skipSpace();
    const line = json.line;
    if (first === OPEN_BRACE) {
      entry.read(json, collector, line);
    } else {
      json.skipValue();
      collector.problem(line, 'The entry is not an object with "email" and "name".');
    }
    if (json.endOfList(CLOSE_BRACKET)) return;
  }
}

/** Reads `{"email": ..., "name": ...}` entries, reusing its buffers for each. */
class ArrayEntry {
  readonly #key = new StringBuffer();
  readonly #email = new StringBuffer();
  readonly #name = new StringBuffer();

  read(json: JsonScanner, collector: BookCollector, line: number): void {
    let hasEmail = false;
    let hasName = false;
    let emailIsString = true;
    let nameIsString = true;
    const problems: string[] = [];
    json.pos++;
    if (json.skipSpace() === CLOSE_BRACE) {
      json.pos++;
    } else {
      for (;;) {
        if (json.skipSpace() !== QUOTE) json.fail("expected a key in quotes");
        json.string(this.#key);
        json.expect(COLON, "expected a colon after the key");
        const isEmail = this.#key.equals(EMAIL_KEY);
        const isName = !isEmail && this.#key.equals(NAME_KEY);
        const word = isEmail ? "email" : "name";
        if (!isEmail && !isName) {
          json.skipValue();
        } else if (isEmail ? hasEmail : hasName) {
          json.skipValue();
          problems.push(`The entry has "${word}" more than once.`);
        } else {
          if (isEmail) hasEmail = true;
          else hasName = true;
          if (json.skipSpace() === QUOTE) {
            json.string(isEmail ? this.#email : this.#name);
          } else {
            json.skipValue();
            if (isEmail) emailIsString = false;
            else nameIsString = false;
            problems.push(`The ${word} is not a string.`);
          }
        }
        if (json.endOfList(CLOSE_BRACE)) break;
      }
    }
    if (!hasEmail) problems.push('The entry has no "email".');
    if (!hasName) problems.push('The entry has no "name".');
    if (problems.length > 0 || !emailIsString || !nameIsString) {
      for (const problem of problems) collector.problem(line, problem);
      return;
    }
    const email = this.#email;
    const name = this.#name;
    collector.addBytes(email.bytes, 0, email.length, name.bytes, 0, name.length, line);
  }
}

function isDigit(code: number): boolean {
  return code >= ZERO && code <= NINE;
}

/**
 * A cursor over the JSON bytes that tracks the line it is on and pulls more
 * bytes when it runs out; nothing before the cursor is needed again, since
 * strings are copied out as they are read.
 */
class JsonScanner {
  readonly #bytes: BookBytes;
  #view: Uint8Array;
  pos: number;
  line = 1;

  constructor(bytes: BookBytes) {
    this.#bytes = bytes;
    this.#view = bytes.buffer.subarray(0, bytes.end);
    this.pos = bytes.start;
  }

  fail(message: string): never {
    throw new JsonSyntaxError(this.line, message);
  }

  /** The byte at the cursor, reading more when needed, or END. */
  peek(): number {
    if (this.pos < this.#view.length) return this.#view[this.pos];
    return this.#more() ? this.#view[this.pos] : END;
  }

  #more(): boolean {
    for (;;) {
      const moved = this.#bytes.more(this.pos);
      this.#view = this.#bytes.buffer.subarray(0, this.#bytes.end);
      if (moved < 0) return false;
      this.pos -= moved;
      if (this.pos < this.#view.length) return true;
    }
  }

  /** Skips whitespace; returns the next byte, or END. */
  skipSpace(): number {
    for (;;) {
      const code = this.peek();
      if (code === LF) this.line++;
      else if (code !== SPACE && code !== TAB && code !== CR) return code;
      this.pos++;
    }
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
    if (code === COMMA) return false;
    return this.fail(`expected a comma or ${String.fromCharCode(close)}`);
  }

  /** Reads the string starting at the cursor's quote into `into`, unescaped, as UTF-8. */
  string(into: StringBuffer): void {
    into.length = 0;
    this.pos++;
    for (;;) {
      let view = this.#view;
      if (this.pos >= view.length) {
        if (!this.#more()) this.fail("a string is never closed");
        view = this.#view;
      }
      // Copy the plain run up to a quote, backslash or control character.
      let end = this.pos;
      while (end < view.length) {
        const code = view[end];
        if (code === QUOTE || code === BACKSLASH || code < FIRST_NON_CONTROL) break;
        end++;
      }
      if (into.length + end - this.pos > MAX_RECORD_BYTES) {
        this.fail(`a string is over ${MAX_RECORD_BYTES} bytes long`);
      }
      const out = into.room(end - this.pos + 8);
      for (let i = this.pos; i < end; i++) out[into.length++] = view[i];
      this.pos = end;
      if (end >= view.length) continue;
      const code = view[end];
      if (code === QUOTE) {
        this.pos++;
        return;
      }
      if (code < FIRST_NON_CONTROL) this.fail("a string contains a control character");
      this.#escape(into);
    }
  }

  /** Reads the escape at the cursor's backslash into `into`. */
  #escape(into: StringBuffer): void {
    this.pos++;
    const escape = this.peek();
    if (escape !== LOWER_U) {
      const byte = ESCAPES.get(escape);
      if (byte === undefined) this.fail("a string has a bad escape");
      into.room(1)[into.length++] = byte;
      this.pos++;
      return;
    }
    this.pos++;
    let point = this.#hex4();
    if (point >= 0xd800 && point <= 0xdbff) {
      // A high surrogate: a low one must follow as another \u escape to make a pair.
      if (this.peek() === BACKSLASH) {
        this.pos++;
        if (this.peek() !== LOWER_U) {
          this.pos--;
          point = REPLACEMENT_CHARACTER;
        } else {
          this.pos++;
          const low = this.#hex4();
          if (low >= 0xdc00 && low <= 0xdfff) {
            point = 0x10000 + ((point - 0xd800) << 10) + (low - 0xdc00);
          } else {
            into.length = writeCodePoint(REPLACEMENT_CHARACTER, into.room(4), into.length);
            point = low >= 0xd800 && low <= 0xdfff ? REPLACEMENT_CHARACTER : low;
          }
        }
      } else {
        point = REPLACEMENT_CHARACTER;
      }
    } else if (point >= 0xdc00 && point <= 0xdfff) {
      point = REPLACEMENT_CHARACTER;
    }
    into.length = writeCodePoint(point, into.room(4), into.length);
  }

  #hex4(): number {
    let value = 0;
    for (let i = 0; i < 4; i++) {
      const digit = hexDigit(this.peek());
      if (digit < 0) this.fail("a string has a bad \\u escape");
      value = value * 16 + digit;
      this.pos++;
    }
    return value;
  }

  /** Skips a number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?. */
  #number(): void {
    if (this.peek() === MINUS) this.pos++;
    if (this.peek() === ZERO) this.pos++;
    else if (isDigit(this.peek())) this.#digits();
    else this.fail("expected a value");
    if (this.peek() === DOT) {
      this.pos++;
      if (!isDigit(this.peek())) this.fail("a number has no digits after its point");
      this.#digits();
    }
    if ((this.peek() | ASCII_CASE_BIT) === LOWER_E) {
      this.pos++;
      if (this.peek() === PLUS || this.peek() === MINUS) this.pos++;
      if (!isDigit(this.peek())) this.fail("a number has no digits in its exponent");
      this.#digits();
    }
  }

  #digits(): void {
    while (isDigit(this.peek())) this.pos++;
  }

  /** Skips any one value, checking its syntax. */
  skipValue(depth = 0, scratch: StringBuffer = new StringBuffer()): void {
    if (depth > MAX_JSON_DEPTH) this.fail("values are nested too deeply");
    const code = this.skipSpace();
    if (code === QUOTE) {
      this.string(scratch);
    } else if (code === OPEN_BRACE || code === OPEN_BRACKET) {
      const close = code === OPEN_BRACE ? CLOSE_BRACE : CLOSE_BRACKET;
      this.pos++;
      if (this.skipSpace() === close) {
        this.pos++;
        return;
      }
      do {
        if (close === CLOSE_BRACE) {
          if (this.skipSpace() !== QUOTE) this.fail("expected a key in quotes");
          this.string(scratch);
          this.expect(COLON, "expected a colon after the key");
        }
        this.skipValue(depth + 1, scratch);
      } while (!this.endOfList(close));
    } else if (!this.#literal()) {
      this.#number();
    }
  }

  /** Skips true, false or null at the cursor; false when none is there. */
  #literal(): boolean {
    const first = this.peek();
    for (const word of LITERALS) {
      if (word[0] !== first) continue;
      for (let i = 1; i < word.length; i++) {
        this.pos++;
        if (this.peek() !== word[i]) this.fail("expected a value");
      }
      this.pos++;
      return true;
    }
    return false;
  }
}

function hexDigit(code: number): number {
  if (code >= ZERO && code <= NINE) return code - ZERO;
  const lower = code | ASCII_CASE_BIT;
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10;
  return -1;
}
