import assert from "node:assert/strict";
import fc from "fast-check";
import { type Entries, type LaidOut, type NameParts, partitionByHash } from "./partition.ts";
import { RecordReader } from "./records.ts";

const encoder = new TextEncoder();

function entriesOf(rows: [string, string, number][]): Entries {
  const keyParts = rows.map(([key]) => encoder.encode(key));
  const nameParts = rows.map(([, name]) => encoder.encode(name));
  const keyStarts = new Uint32Array(rows.length + 1);
  const nameStarts = new Uint32Array(rows.length + 1);
  const keys = new Uint8Array(keyParts.reduce((n, part) => n + part.length, 0));
  const names = new Uint8Array(nameParts.reduce((n, part) => n + part.length, 0));
  let key = 0;
  let name = 0;
  rows.forEach((_, i) => {
    keys.set(keyParts[i], key);
    key += keyParts[i].length;
    keyStarts[i + 1] = key;
    names.set(nameParts[i], name);
    name += nameParts[i].length;
    nameStarts[i + 1] = name;
  });
  return {
    size: rows.length,
    keyStarts,
    keys,
    nameStarts,
    names,
    namePartStarts: new Uint32Array(0),
    nameParts: new Uint8Array(0),
    hashes: Uint32Array.from(rows.map(([, , hash]) => hash)),
  };
}

/** The same entries with a given name and surname each: the name's first and last letters. */
function withNameParts(entries: Entries, rows: [string, string, number][]): Entries {
  const parts = rows.map(([, name]) => [name.slice(0, 1), name.slice(1, 2)]);
  const bytes = encoder.encode(parts.flat().join(""));
  const namePartStarts = new Uint32Array(2 * rows.length + 1);
  let at = 0;
  parts.forEach(([given, surname], i) => {
    at += encoder.encode(given).length;
    namePartStarts[2 * i + 1] = at;
    at += encoder.encode(surname).length;
    namePartStarts[2 * i + 2] = at;
  });
  return { ...entries, namePartStarts, nameParts: bytes };
}

/** Each laid-out entry's key, name and hash, read from its record. */
function rowsOf(laidOut: LaidOut): [string, string, number][] {
  const decoder = new TextDecoder();
  const reader = new RecordReader(laidOut);
  return Array.from({ length: laidOut.size }, (_, i) => {
    // The record's header names its own entry.
    assert.equal(reader.entryAt(laidOut.recordStarts[i]), i);
    return [
      decoder.decode(reader.bytes.subarray(reader.keyStart(i), reader.keyEnd(i))),
      decoder.decode(reader.bytes.subarray(reader.nameStart(i), reader.nameEnd(i))),
      laidOut.hashes[i],
    ];
  });
}

function namePartsOf(entries: NameParts & { size: number }): string[][] {
  const decoder = new TextDecoder();
  const starts = entries.namePartStarts;
  return Array.from({ length: entries.size }, (_, i) => [
    decoder.decode(entries.nameParts.subarray(starts[2 * i], starts[2 * i + 1])),
    decoder.decode(entries.nameParts.subarray(starts[2 * i + 1], starts[2 * i + 2])),
  ]);
}

Deno.test("property: partitionByHash orders by hash, key and order added, in any number of buckets", () => {
  const hash = fc.oneof(
    fc.integer({ min: 0, max: 2 ** 32 - 1 }),
    fc.constantFrom(0, 7, 2 ** 31, 2 ** 32 - 1),
  );
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.string({ maxLength: 4 }), fc.string({ maxLength: 6 }), hash), {
        maxLength: 60,
      }),
      fc.integer({ min: 1, max: 64 }),
      (rows, bucketBytes) => {
        const laidOut = partitionByHash(entriesOf(rows), bucketBytes);
        const expected = rows.map((row, i) => ({ row, i })).sort((a, b) =>
          a.row[2] - b.row[2] || (a.row[0] < b.row[0] ? -1 : a.row[0] > b.row[0] ? 1 : 0) ||
          a.i - b.i
        );
        const all = rowsOf(laidOut);
        assert.deepEqual(
          [...laidOut.order].map((entry) => all[entry]),
          expected.map(({ row }) => row),
        );
        assert.deepEqual(
          [...laidOut.order].map((entry) => laidOut.original[entry]),
          expected.map(({ i }) => i),
        );
        // Each bucket's entries sit together: the order never goes back into an earlier bucket.
        assert.deepEqual(
          [...laidOut.order].map((e) => laidOut.hashes[e]),
          expected.map(({ row }) => row[2]),
        );
        assert.ok(laidOut.records.buffer instanceof SharedArrayBuffer);
        assert.ok(laidOut.recordStarts.buffer instanceof SharedArrayBuffer);
      },
    ),
    { numRuns: 500 },
  );
});

Deno.test("property: partitionByHash carries given names and surnames with their entries", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.tuple(
          fc.string({ maxLength: 4 }),
          fc.string({ maxLength: 6 }),
          fc.integer({ min: 0, max: 2 ** 32 - 1 }),
        ),
        { maxLength: 40 },
      ),
      fc.integer({ min: 1, max: 64 }),
      (rows, bucketBytes) => {
        const entries = withNameParts(entriesOf(rows), rows);
        const laidOut = partitionByHash(entries, bucketBytes);
        const before = namePartsOf(entries);
        assert.deepEqual(
          namePartsOf(laidOut),
          [...laidOut.original].map((entry) => before[entry]),
        );
        assert.ok(laidOut.nameParts.buffer instanceof SharedArrayBuffer);
        // Without parts, none are made.
        assert.equal(partitionByHash(entriesOf(rows), bucketBytes).namePartStarts.length, 0);
      },
    ),
    { numRuns: 300 },
  );
});
