import assert from "node:assert/strict";
import fc from "fast-check";
import { type Entries, partitionByHash } from "./addressbook_partition.ts";

const encoder = new TextEncoder();

function entriesOf(rows: [string, string, number][]): Entries {
  const keyParts = rows.map(([key]) => encoder.encode(key));
  const replyParts = rows.map(([, reply]) => encoder.encode(reply));
  const keyStarts = new Uint32Array(rows.length + 1);
  const replyBounds = new Uint32Array(2 * rows.length);
  const keys = new Uint8Array(keyParts.reduce((n, part) => n + part.length, 0));
  const replies = new Uint8Array(replyParts.reduce((n, part) => n + part.length, 0));
  let key = 0;
  let reply = 0;
  rows.forEach((_, i) => {
    keys.set(keyParts[i], key);
    key += keyParts[i].length;
    keyStarts[i + 1] = key;
    replyBounds[2 * i] = reply;
    replies.set(replyParts[i], reply);
    reply += replyParts[i].length;
    replyBounds[2 * i + 1] = reply;
  });
  return {
    size: rows.length,
    keyStarts,
    keys,
    replyBounds,
    replies,
    hashes: Uint32Array.from(rows.map(([, , hash]) => hash)),
  };
}

function rowsOf(entries: Entries): [string, string, number][] {
  const decoder = new TextDecoder();
  return Array.from({ length: entries.size }, (_, i) => [
    decoder.decode(entries.keys.subarray(entries.keyStarts[i], entries.keyStarts[i + 1])),
    decoder.decode(
      entries.replies.subarray(entries.replyBounds[2 * i], entries.replyBounds[2 * i + 1]),
    ),
    entries.hashes[i],
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
        assert.ok(laidOut.keys.buffer instanceof SharedArrayBuffer);
      },
    ),
    { numRuns: 500 },
  );
});
