import assert from "node:assert/strict";
import {
  batchAt,
  buildQueryFrames,
  parseKeys,
  sampleKeys,
  shuffleKeys,
  syntheticKeys,
} from "./keys.ts";
import { decodeUtf8, FrameDecoder, MAX_QUERY_BYTES, TYPE_QUERY } from "../protocol.ts";

Deno.test("sampleKeys takes every 7th index below twice the entries, half of them missing", () => {
  const keys = sampleKeys(1000, (i) => `in${i}`, (i) => `out${i}`);
  assert.equal(keys.length, Math.ceil(2000 / 7));
  assert.equal(keys.filter((key) => key.startsWith("in")).length, Math.ceil(1000 / 7));
  assert.deepEqual(keys.slice(0, 3), ["in0", "in7", "in14"]);
  assert.equal(keys.at(-1), "out1995");
});

Deno.test("syntheticKeys are user{i}@example.com, as compare-redis.py queries", () => {
  assert.deepEqual(syntheticKeys(10), [
    "user0@example.com",
    "user7@example.com",
    "user14@example.com",
  ]);
});

Deno.test("shuffleKeys reorders the keys the same way for the same seed, losing none", () => {
  const keys = syntheticKeys(1000);
  const shuffled = shuffleKeys(keys, 1);
  assert.deepEqual(shuffled, shuffleKeys(keys, 1));
  assert.notDeepEqual(shuffled, keys);
  assert.notDeepEqual(shuffled, shuffleKeys(keys, 2));
  assert.deepEqual([...shuffled].sort(), [...keys].sort());
  const firstHalf = shuffled.slice(0, shuffled.length / 2);
  const present = firstHalf.filter((key) => Number(/\d+/.exec(key)?.[0]) < 1000).length;
  assert.ok(present > firstHalf.length / 4 && present < (firstHalf.length * 3) / 4);
});

Deno.test("parseKeys trims lines and skips blank ones", () => {
  assert.deepEqual(parseKeys(" a@example.com\r\n\r\nb@example.com  \n\n", "keys.txt"), [
    "a@example.com",
    "b@example.com",
  ]);
});

Deno.test("parseKeys rejects a key over the query limit by line number, not by content", () => {
  const long = `${"x".repeat(MAX_QUERY_BYTES)}@example.com`;
  assert.throws(() => parseKeys(`a@example.com\n${long}\n`, "keys.txt"), (error: Error) => {
    assert.ok(error instanceof RangeError);
    assert.match(error.message, /^Line 2 of keys.txt is \d+ bytes long/);
    assert.ok(!error.message.includes("xxx"));
    return true;
  });
});

Deno.test("parseKeys rejects a file without keys", () => {
  assert.throws(() => parseKeys("\n  \n", "empty.txt"), /empty.txt holds no keys/);
});

/** Decodes the emails of the query frames in `bytes`. */
function decodeQueries(bytes: Uint8Array): string[] {
  const decoder = new FrameDecoder({ type: TYPE_QUERY, maxPayload: MAX_QUERY_BYTES });
  decoder.push(bytes);
  const emails: string[] = [];
  for (let payload = decoder.next(); payload !== null; payload = decoder.next()) {
    emails.push(decodeUtf8(payload) ?? "<not UTF-8>");
  }
  assert.equal(decoder.buffered, 0);
  return emails;
}

Deno.test("buildQueryFrames makes every batch one contiguous slice, wrapping around the keys", () => {
  const keys = ["a@x.org", "bé@x.org", "c@x.org"];
  const frames = buildQueryFrames(keys, 2);
  assert.equal(frames.keyCount, 3);
  assert.deepEqual(decodeQueries(batchAt(frames, 0, 2)), ["a@x.org", "bé@x.org"]);
  assert.deepEqual(decodeQueries(batchAt(frames, 2, 2)), ["c@x.org", "a@x.org"]);
});

Deno.test("buildQueryFrames cycles the keys when a batch is longer than the key list", () => {
  const frames = buildQueryFrames(["a@x.org", "b@x.org"], 5);
  assert.deepEqual(decodeQueries(batchAt(frames, 1, 5)), [
    "b@x.org",
    "a@x.org",
    "b@x.org",
    "a@x.org",
    "b@x.org",
  ]);
});
