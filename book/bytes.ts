/**
 * The bytes of a book file, read a chunk at a time into one reusable buffer
 * and checked to be UTF-8 as they arrive, so a book of any size is never
 * held whole in memory, neither as bytes nor as a string.
 *
 * Reads are synchronous on purpose: the readers are plain loops that pull
 * more bytes exactly where they run out (in the middle of a quoted field or
 * a JSON string), which an `await` there would make far slower and harder
 * to follow. Loading blocks its thread either way, which is why the server
 * reloads in a worker (`book/load_thread.ts`).
 *
 * ```ts
 * import { BookBytes } from "./bytes.ts";
 *
 * const bytes = BookBytes.fromBytes(new TextEncoder().encode("email,name\n"));
 * bytes.begin();
 * bytes.buffer.subarray(bytes.start, bytes.end); // the checked bytes so far
 * ```
 *
 * @module
 */

import { isUtf8 } from "node:buffer";

/** Bytes read at a time; a record longer than the buffer grows it. */
export const CHUNK_BYTES = 1 << 20;
/**
 * The longest record (a CSV row, a JSON string, a vCard) read, in bytes:
 * far beyond any real entry (a name is at most a megabyte), and small
 * enough that a file with no line ends (a sparse file, `/dev/zero` copied
 * in) is refused after 16 MiB instead of costing gigabytes.
 */
export const MAX_RECORD_BYTES = 1 << 24;

const LF = 0x0a;
const UTF8_BOM = [0xef, 0xbb, 0xbf];

/** The file is not UTF-8; `offset` is where in the file the bad bytes are. */
export class InvalidUtf8Error extends Error {
  /** The file offset of the start of the region that failed the check. */
  readonly offset: number;
  /** The length of that region. */
  readonly length: number;

  /** Makes the error for the region `[offset, offset + length)` of the file. */
  constructor(offset: number, length: number) {
    super(`The bytes from offset ${offset} are not valid UTF-8.`);
    this.name = "InvalidUtf8Error";
    this.offset = offset;
    this.length = length;
  }
}

/**
 * A record runs past {@linkcode MAX_RECORD_BYTES}; `start` says where it
 * starts: a file offset, or a line when the reader counts lines itself.
 */
export class RecordTooLongError extends Error {
  /** Where the record starts. */
  readonly start: { offset: number } | { line: number };
  /** Makes the error for the record that starts at `start`. */
  constructor(start: { offset: number } | { line: number }) {
    super(`A record is over ${MAX_RECORD_BYTES} bytes long.`);
    this.name = "RecordTooLongError";
    this.start = start;
  }
}

/**
 * A window on a file's bytes. Readers may look at `buffer[start, end)`,
 * which is read and valid UTF-8, and call {@linkcode BookBytes.more} when
 * they need what follows.
 */
export class BookBytes {
  /** The buffer; replaced when it grows, so read it again after `more`. */
  buffer: Uint8Array;
  /** Where the book starts in the buffer after `begin`: after a byte-order mark. */
  start = 0;
  /** The end of the checked bytes in the buffer. */
  end = 0;
  /** True once the last byte of the file is in the buffer. */
  done = false;
  /** Bytes in the buffer, including a tail not yet checked (a character cut in two). */
  #filled = 0;
  /** The file offset of `buffer[0]`. */
  #base = 0;
  readonly #read: (into: Uint8Array) => number | null;
  readonly #whole: Uint8Array | undefined;
  readonly #file: Deno.FsFile | undefined;

  private constructor(
    read: (into: Uint8Array) => number | null,
    chunk: number,
    whole?: Uint8Array,
    file?: Deno.FsFile,
  ) {
    this.#read = read;
    this.buffer = new Uint8Array(chunk);
    this.#whole = whole;
    this.#file = file;
  }

  /** Reads an open file from its current position; the caller closes it afterwards. */
  static fromFile(file: Deno.FsFile, chunk: number = CHUNK_BYTES): BookBytes {
    return new BookBytes((into) => file.readSync(into), chunk, undefined, file);
  }

  /** Reads bytes already in memory (they are copied a chunk at a time, as from a file). */
  static fromBytes(bytes: Uint8Array, chunk: number = CHUNK_BYTES): BookBytes {
    let offset = 0;
    const read = (into: Uint8Array) => {
      if (offset >= bytes.length) return null;
      const count = Math.min(into.length, bytes.length - offset);
      into.set(bytes.subarray(offset, offset + count));
      offset += count;
      return count;
    };
    return new BookBytes(read, chunk, bytes);
  }

  /** Reads the first chunk without checking it, to look at how the file starts. */
  peek(): Uint8Array {
    if (this.#filled === 0 && !this.done) this.#fill();
    return this.buffer.subarray(0, this.#filled);
  }

  /**
   * Starts reading for real: skips a UTF-8 byte-order mark and checks the
   * first chunk.
   *
   * @throws {InvalidUtf8Error} when the first chunk is not UTF-8.
   */
  begin(): void {
    const head = this.peek();
    if (UTF8_BOM.every((byte, i) => head[i] === byte)) this.start = UTF8_BOM.length;
    this.#check(0);
  }

  /**
   * Drops the bytes before `keep`, moves the rest to the buffer's start and
   * reads more after them. Returns how far the kept bytes moved (subtract it
   * from every index into the buffer), or -1 when the file has no more.
   *
   * @throws {InvalidUtf8Error} when the new bytes are not UTF-8.
   * @throws {RecordTooLongError} when the kept bytes are {@linkcode MAX_RECORD_BYTES} already.
   */
  more(keep: number): number {
    if (this.done && this.end === this.#filled) return -1;
    const buffer = this.buffer;
    if (keep > 0) {
      buffer.copyWithin(0, keep, this.#filled);
      this.#filled -= keep;
      this.end -= keep;
      this.#base += keep;
      this.start = Math.max(0, this.start - keep);
    }
    if (this.#filled >= MAX_RECORD_BYTES) throw new RecordTooLongError({ offset: this.#base });
    // Double when a record fills half the buffer, so rescanning a long one stays linear.
    if (this.#filled * 2 > buffer.length) {
      const grown = new Uint8Array(buffer.length * 2);
      grown.set(buffer.subarray(0, this.#filled));
      this.buffer = grown;
    }
    const checkedBefore = this.end;
    this.#fill();
    this.#check(checkedBefore);
    return keep;
  }

  /** The line (from 1) that the file offset is on. */
  lineAt(offset: number): number {
    let lines = 1;
    const count = (bytes: Uint8Array) => {
      for (let at = bytes.indexOf(LF); at >= 0; at = bytes.indexOf(LF, at + 1)) lines++;
    };
    if (this.#whole !== undefined) {
      count(this.#whole.subarray(0, offset));
      return lines;
    }
    const file = this.#file!;
    file.seekSync(0, Deno.SeekMode.Start);
    const chunk = new Uint8Array(CHUNK_BYTES);
    for (let read = 0; read < offset;) {
      const got = file.readSync(chunk.subarray(0, Math.min(chunk.length, offset - read)));
      if (got === null) break;
      count(chunk.subarray(0, got));
      read += got;
    }
    return lines;
  }

  /** The line of the first bad byte in the region an {@linkcode InvalidUtf8Error} names. */
  lineOfInvalidUtf8(error: InvalidUtf8Error): number {
    const region = new Uint8Array(error.length);
    if (this.#whole !== undefined) {
      region.set(this.#whole.subarray(error.offset, error.offset + error.length));
    } else {
      const file = this.#file!;
      file.seekSync(error.offset, Deno.SeekMode.Start);
      for (let read = 0; read < region.length;) {
        const got = file.readSync(region.subarray(read));
        if (got === null) break;
        read += got;
      }
    }
    // Lines are tried one by one: a line break never sits inside a valid sequence.
    let start = 0;
    let linesInRegion = 0;
    while (start <= region.length) {
      let lineEnd = region.indexOf(LF, start);
      if (lineEnd < 0) lineEnd = region.length;
      if (!isUtf8(region.subarray(start, lineEnd))) break;
      linesInRegion++;
      start = lineEnd + 1;
    }
    return this.lineAt(error.offset) + linesInRegion;
  }

  /** Reads until the buffer is full or the file ends. */
  #fill(): void {
    while (this.#filled < this.buffer.length) {
      const got = this.#read(this.buffer.subarray(this.#filled));
      if (got === null) {
        this.done = true;
        return;
      }
      this.#filled += got;
    }
  }

  /**
   * Checks the bytes from `from` up to the last whole character, or to the
   * end once the file is done, and moves `end` there.
   */
  #check(from: number): void {
    let until = this.#filled;
    if (!this.done) {
      // Leave a last character out until the next read: it may be cut in two.
      const buffer = this.buffer;
      let i = until;
      while (i > from && until - i < 3 && (buffer[i - 1] & 0xc0) === 0x80) i--;
      if (i > from && buffer[i - 1] >= 0xc0) until = i - 1;
    }
    if (!isUtf8(this.buffer.subarray(from, until))) {
      throw new InvalidUtf8Error(this.#base + from, until - from);
    }
    this.end = until;
  }
}
