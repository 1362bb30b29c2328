import assert from "node:assert/strict";
import fc from "fast-check";
import { BookBytes } from "./bytes.ts";
import { BookCollector } from "./collect.ts";
import { readCsv } from "./csv.ts";
import { csvField } from "../tools/gen.ts";
import { loadBookFromBytes } from "./load.ts";
import { assertSameInChunks, loadOutcome as outcome } from "../testing/load_outcome.ts";

const encoder = new TextEncoder();

Deno.test("readCsv gives byte ranges of quoted and unquoted fields to the collector", () => {
  const bytes = BookBytes.fromBytes(
    encoder.encode('email,name\r\na@example.com,"A ""Q"", B"\r\nb@example.com,Bee\r\n'),
  );
  bytes.begin();
  const collector = new BookCollector("b.csv", "error");
  readCsv(bytes, collector);
  const book = collector.finish(false);
  assert.equal(book.get("a@example.com"), 'A "Q", B');
  assert.equal(book.get("b@example.com"), "Bee");
});

Deno.test("readCsv reads the same wherever the chunks cut the records", () => {
  const csv = 'email,name\r\n"smith@example.com","Smith, Jr., John"\r\n' +
    'quill@example.com,"Dwayne ""The Quill"" Johnson"\r\n' +
    'two.lines@example.com,"First line\r\nsecond line"\r\n\r\n' +
    "plain@example.com,Plain Persön 李\r\n" +
    "last@example.com,Last";
  // The quoted line break is read as part of the name, which may not hold it.
  assert.deepEqual(assertSameInChunks(csv, "b.csv"), [
    "4: The name contains U+000D, a control or direction-changing character.",
  ]);
  const oneLine = csv.replace("First line\r\nsecond line", "First line,\r\n");
  assert.deepEqual(assertSameInChunks(oneLine, "b.csv").slice(0, 1), ["5 entries"]);
});

Deno.test("readCsv reports malformed quoting the same wherever the chunks cut", () => {
  const stray = 'email,name\na@example.com,Stray "quote\nb@example.com,"Bad" close\n' +
    'c@example.com,C\nd,D\ne@example.com,"Bad"\r\r\nf@example.com,"never closed\n';
  assert.deepEqual(assertSameInChunks(stray, "b.csv"), [
    "2: A field that does not start with a quote contains one.",
    "3: A quoted field's closing quote is followed by something other than a comma or line end.",
    "5: The email is not valid: it has no @.",
    "6: A quoted field's closing quote is followed by something other than a comma or line end.",
    "7: A quoted field is never closed.",
  ]);
});

Deno.test("readCsv reads a field of many escaped quotes in one pass", () => {
  // The old reader searched again after every quote pair: quadratic. This one is linear;
  // the time for 4 MB is in BENCHMARKS.md (bench/load.ts), not asserted here.
  const name = 'x"'.repeat(100_000);
  const csv = `email,name\na@example.com,${csvField(name)}\nb@example.com,B\n`;
  const { book } = loadBookFromBytes(encoder.encode(csv), "b.csv", {}, 4096);
  assert.equal(book.get("a@example.com"), name);
  assert.equal(book.get("b@example.com"), "B");
});

const FIELD_CHARS = fc.constantFrom(...'ab ,"\r\n\té李🎉@'.split(/(?:)/u));

Deno.test("property: any CSV reads the same in chunks of any size", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.tuple(
          fc.array(FIELD_CHARS, { maxLength: 8 }),
          fc.array(FIELD_CHARS, { maxLength: 8 }),
          fc.boolean(),
        ),
        { maxLength: 6 },
      ),
      fc.integer({ min: 1, max: 16 }),
      (rows, chunk) => {
        const lines = rows.map(([email, name, quote], i) => {
          const e = `${email.join("")}${i}@example.com`;
          const n = name.join("");
          return quote ? `${csvField(e)},${csvField(n)}` : `${e},${n}`;
        });
        const csv = ["email,name", ...lines].join("\r\n");
        assert.deepEqual(
          outcome(csv, "b.csv", chunk, { allowEmpty: true }),
          outcome(csv, "b.csv", undefined, { allowEmpty: true }),
        );
      },
    ),
    { numRuns: 300 },
  );
});
