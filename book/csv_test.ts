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

/** The name of each address, after loading `csv`. */
function namesOf(csv: string, emails: string[]): (string | undefined)[] {
  const { book } = loadBookFromBytes(encoder.encode(csv), "contacts.csv");
  return emails.map((email) => book.get(email));
}

Deno.test("readCsv makes an entry of every email column of an export, each with the contact's name", () => {
  const outlook = "First Name,Last Name,E-mail Address,E-mail 2 Address,E-mail 3 Address\n" +
    "Ada,Lovelace,ada@example.com,ada.king@example.org,countess@example.net\n" +
    "Mary,Somerville,,mary@example.net,\n";
  assert.deepEqual(
    namesOf(outlook, [
      "ada@example.com",
      "ada.king@example.org",
      "countess@example.net",
      "mary@example.net",
    ]),
    ["Ada Lovelace", "Ada Lovelace", "Ada Lovelace", "Mary Somerville"],
  );
  const google = "Name,E-mail 1 - Label,E-mail 1 - Value,E-mail 2 - Label,E-mail 2 - Value\n" +
    "Grace Hopper,* Home,grace@example.org,Work,g.hopper@example.com\n";
  assert.deepEqual(assertSameInChunks(google, "contacts.csv").slice(0, 1), ["2 entries"]);
  assert.deepEqual(namesOf(google, ["g.hopper@example.com"]), ["Grace Hopper"]);
});

Deno.test("readCsv splits the addresses Google joins with ' ::: ' in one cell", () => {
  const csv = "First Name,Last Name,E-mail 1 - Label,E-mail 1 - Value\n" +
    "Katherine,Johnson,* Work ::: Home,katherine@example.com ::: kj@example.com ::: k@example.net\n";
  assert.deepEqual(assertSameInChunks(csv, "contacts.csv").slice(0, 1), ["3 entries"]);
  assert.deepEqual(
    namesOf(csv, ["katherine@example.com", "kj@example.com", "k@example.net"]),
    ["Katherine Johnson", "Katherine Johnson", "Katherine Johnson"],
  );
});

Deno.test("readCsv keeps one entry for an address a contact lists twice, and reports two contacts sharing one", () => {
  const twice = "Name,E-mail 1 - Value,E-mail 2 - Value\n" +
    "Ada,ada@example.com,ADA@example.com ::: ada@example.com\n";
  assert.deepEqual(assertSameInChunks(twice, "contacts.csv").slice(0, 1), ["1 entries"]);
  const shared = "Name,E-mail Address,E-mail 2 Address\n" +
    "Ada,ada@example.com,office@example.com\n" +
    "Charles,charles@example.com,office@example.com\n";
  assert.deepEqual(assertSameInChunks(shared, "contacts.csv"), [
    "3: The email is a duplicate of line 2.",
  ]);
});

Deno.test("readCsv reports a bad second address at its line, and splits only exports' cells", () => {
  const bad = "Name,E-mail Address,E-mail 2 Address\nAda,ada@example.com,not-an-address\n";
  assert.deepEqual(assertSameInChunks(bad, "contacts.csv"), [
    "2: The email is not valid: it has no @.",
  ]);
  // Our own email,name format holds one address a row: a joined cell is a mistake there.
  assert.deepEqual(
    assertSameInChunks("email,name\na@example.com ::: b@example.com,A\n", "book.csv"),
    ["2: The email is not valid: it has more than one @."],
  );
  // --email-column names one column, which is read alone.
  const { book } = loadBookFromBytes(
    encoder.encode("Name,Mail,E-mail Address\nAda,ada@example.com,other@example.com\n"),
    "contacts.csv",
    { emailColumn: "mail" },
  );
  assert.deepEqual([book.size, book.get("ada@example.com")], [1, "Ada"]);
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
