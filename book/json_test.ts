import assert from "node:assert/strict";
import fc from "fast-check";
import { BookBytes } from "./bytes.ts";
import { BookCollector } from "./collect.ts";
import { readJson } from "./json.ts";
import { assertSameInChunks, loadOutcome } from "../testing/load_outcome.ts";

Deno.test("readJson reads both shapes into the collector", () => {
  for (
    const text of [
      '{"a@example.com": "A"}',
      '[{"name": "A", "x": [1, {"y": null}], "email": "a@example.com"}]',
    ]
  ) {
    const bytes = BookBytes.fromBytes(new TextEncoder().encode(text));
    bytes.begin();
    const collector = new BookCollector("b.json", "error");
    readJson(bytes, collector);
    assert.equal(collector.finish(false).get("a@example.com"), "A");
  }
});

Deno.test("readJson unescapes strings, surrogate pairs included, and lone surrogates as U+FFFD", () => {
  const json = String
    .raw`{"a@example.com": "Ada \"Q\" \u00e9\\\ud83c\udf89 \ud800!", "b\u0040example.com": "B\/"}`;
  const bytes = BookBytes.fromBytes(new TextEncoder().encode(json), 3);
  bytes.begin();
  const collector = new BookCollector("b.json", "error");
  readJson(bytes, collector);
  const book = collector.finish(false);
  assert.equal(book.get("a@example.com"), 'Ada "Q" é\\🎉 \ufffd!');
  assert.equal(book.get("b@example.com"), "B/");
  // \n is unescaped to a line feed, which a name may not hold.
  assert.deepEqual(assertSameInChunks(String.raw`{"c@example.com": "C\nD"}`, "b.json"), [
    "1: The name contains U+000A, a control or direction-changing character.",
  ]);
});

Deno.test("readJson reads and reports the same wherever the chunks cut", () => {
  const good = '{\n  "ada@example.com": "Ada",\n  "li@example.com": "李小龙 \\u00e9",\n' +
    '  "x@example.com": "X"\n}\n';
  assert.equal(assertSameInChunks(good, "b.json")[0], "3 entries");
  const bad = '[\n  {"email": "a@example.com", "name": "A"},\n  "just a string",\n' +
    '  {"email": "b@example.com"},\n  {"name": "C"},\n  {"email": 7, "name": "D"},\n' +
    '  {"email": "e@example.com", "name": "E", "name": "E2"},\n  {"email": "f@example.com", "name": tru}\n]';
  assert.deepEqual(assertSameInChunks(bad, "b.json"), [
    '3: The entry is not an object with "email" and "name".',
    '4: The entry has no "name".',
    '5: The entry has no "email".',
    "6: The email is not a string.",
    '7: The entry has "name" more than once.',
    "8: The JSON is not valid: expected a value.",
  ]);
});

Deno.test("property: any JSON book reads the same in chunks of any size", () => {
  fc.assert(
    fc.property(
      fc.dictionary(
        fc.string({ unit: "binary", maxLength: 6 }),
        fc.string({ unit: "binary", maxLength: 6 }),
        { maxKeys: 5 },
      ),
      fc.integer({ min: 1, max: 16 }),
      (entries, chunk) => {
        const json = JSON.stringify(
          Object.fromEntries(
            Object.entries(entries).map(([email, name], i) => [`${email}${i}@x`, name]),
          ),
          null,
          1,
        );
        const options = { allowEmpty: true };
        assert.deepEqual(
          loadOutcome(json, "b.json", chunk, options),
          loadOutcome(json, "b.json", undefined, options),
        );
      },
    ),
    { numRuns: 300 },
  );
});
