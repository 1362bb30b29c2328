import assert from "node:assert/strict";
import fc from "fast-check";
import {
  checkKeyLength,
  checkNameLength,
  checkRecordsBytes,
  KEY_LENGTH_MASK,
  MAX_RECORD_NAME_BYTES,
  MAX_RECORDS_BYTES,
  RECORD_HEADER_BYTES,
  recordBytes,
  RecordReader,
  writeRecord,
} from "./records.ts";
import { MAX_NAME_BYTES } from "./collect.ts";
import { MAX_EMAIL_CHARS } from "./email.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The entries as records, back to back, as a build writes them. */
function recordsOf(entries: [string, string][]): RecordReader {
  const encoded = entries.map(([key, name]) => [encoder.encode(key), encoder.encode(name)]);
  const total = encoded.reduce((sum, [key, name]) => sum + recordBytes(key.length, name.length), 0);
  const bytes = new Uint8Array(total);
  const words = new Uint32Array(bytes.buffer);
  const recordStarts = new Uint32Array(entries.length);
  let at = 0;
  encoded.forEach(([key, name], entry) => {
    recordStarts[entry] = at;
    at = writeRecord(bytes, words, at, entry, key, 0, key.length, name, 0, name.length);
  });
  assert.equal(at, total);
  return new RecordReader({ size: entries.length, records: bytes, recordStarts });
}

Deno.test("property: a record gives back its entry's key, name and index", () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.string({ minLength: 1, maxLength: 12 }), fc.string({ maxLength: 12 })), {
        maxLength: 30,
      }),
      (entries) => {
        const reader = recordsOf(entries);
        entries.forEach(([key, name], entry) => {
          const at = reader.starts[entry];
          assert.equal(at % 4, 0, "every record starts on a word");
          assert.equal(reader.entryAt(at), entry);
          assert.equal(reader.keyStart(entry), at + RECORD_HEADER_BYTES);
          assert.equal(
            decoder.decode(reader.bytes.subarray(reader.keyStart(entry), reader.keyEnd(entry))),
            key,
          );
          assert.equal(reader.nameStart(entry), reader.keyEnd(entry));
          assert.equal(
            decoder.decode(reader.bytes.subarray(reader.nameStart(entry), reader.nameEnd(entry))),
            name,
          );
          // The padding up to the next record is zeros.
          const next = entry + 1 < entries.length ? reader.starts[entry + 1] : reader.bytes.length;
          assert.ok(reader.bytes.subarray(reader.nameEnd(entry), next).every((byte) => byte === 0));
          assert.ok(next - reader.nameEnd(entry) < 4);
        });
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("property: records compare keys byte by byte, a prefix first", () => {
  const key = fc.string({ unit: fc.constantFrom("a", "b", "é", "@"), minLength: 1, maxLength: 5 });
  fc.assert(
    fc.property(key, key, (a, b) => {
      const reader = recordsOf([[a, "A"], [b, "B"]]);
      const [x, y] = [encoder.encode(a), encoder.encode(b)];
      let expected = 0;
      for (let i = 0; i < Math.min(x.length, y.length) && expected === 0; i++) {
        expected = x[i] - y[i];
      }
      if (expected === 0) expected = x.length - y.length;
      assert.equal(Math.sign(reader.compareKeys(0, 1)), Math.sign(expected));
      assert.equal(reader.sameKey(0, 1), a === b);
    }),
    { numRuns: 500 },
  );
});

Deno.test("a record holds the longest key and every name the loader accepts", () => {
  // A key is a normalised address of at most 254 characters (code points), each at most 4 bytes of UTF-8.
  assert.ok(MAX_EMAIL_CHARS * 4 <= KEY_LENGTH_MASK);
  assert.ok(MAX_NAME_BYTES <= MAX_RECORD_NAME_BYTES);
  const longest = recordsOf([["ü".repeat(MAX_EMAIL_CHARS - 2) + "@b", "x".repeat(70_000)]]);
  assert.equal(longest.keyEnd(0) - longest.keyStart(0), 2 * (MAX_EMAIL_CHARS - 2) + 2);
  assert.equal(longest.nameEnd(0) - longest.nameStart(0), 70_000);
});

Deno.test("checkKeyLength, checkNameLength and checkRecordsBytes refuse what a record or the buffer cannot hold", () => {
  checkKeyLength(KEY_LENGTH_MASK);
  assert.throws(
    () => checkKeyLength(KEY_LENGTH_MASK + 1),
    new RangeError(
      `A key of ${KEY_LENGTH_MASK + 1} bytes is over the book's limit of ${KEY_LENGTH_MASK}.`,
    ),
  );
  checkNameLength(MAX_RECORD_NAME_BYTES);
  assert.throws(
    () => checkNameLength(MAX_RECORD_NAME_BYTES + 1),
    new RangeError(
      `A name of ${
        MAX_RECORD_NAME_BYTES + 1
      } bytes is over the book's limit of ${MAX_RECORD_NAME_BYTES}.`,
    ),
  );
  checkRecordsBytes(MAX_RECORDS_BYTES);
  assert.throws(
    () => checkRecordsBytes(MAX_RECORDS_BYTES + 4),
    new RangeError(
      `The book needs ${
        MAX_RECORDS_BYTES + 4
      } bytes of records, over the limit of ${MAX_RECORDS_BYTES}.`,
    ),
  );
});
