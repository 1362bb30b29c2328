import assert from "node:assert/strict";
import { BookBytes } from "./bytes.ts";
import { BookCollector } from "./collect.ts";
import {
  BOOK_EXTENSIONS,
  BOOK_FORMAT_TABLE,
  BOOK_FORMATS,
  type BookFormat,
  bookFormat,
  formatFromPath,
  formatFromStart,
  usesCrLineEnds,
  utf16Message,
  utf16Order,
} from "./format.ts";

const bytes = (text: string) => new TextEncoder().encode(text);

Deno.test("BOOK_FORMATS lists csv, json and vcard", () => {
  assert.deepEqual(BOOK_FORMATS, ["csv", "json", "vcard"]);
});

Deno.test("formatFromPath goes by the extension, in any case", () => {
  assert.equal(formatFromPath("data/addressbook.csv"), "csv");
  assert.equal(formatFromPath("BOOK.JSON"), "json");
  assert.equal(formatFromPath("contacts.vcf"), "vcard");
  assert.equal(formatFromPath("contacts.vcard"), "vcard");
  assert.equal(formatFromPath("book.txt"), undefined);
  assert.equal(formatFromPath("dir.csv/book"), undefined);
  assert.equal(formatFromPath("book"), undefined);
});

Deno.test("formatFromStart tells JSON and vCard from CSV by the first bytes", () => {
  assert.equal(formatFromStart(bytes(' \n{"a@example.com": "A"}')), "json");
  assert.equal(formatFromStart(bytes("[]")), "json");
  assert.equal(formatFromStart(bytes("begin:VCard\r\n")), "vcard");
  assert.equal(formatFromStart(bytes("BEGIN:VCAR")), "csv");
  assert.equal(formatFromStart(bytes("email,name\n")), "csv");
  assert.equal(formatFromStart(bytes("")), "csv");
});

Deno.test("utf16Order spots UTF-16 by its byte-order mark or its zero bytes", () => {
  const le = new Uint8Array([...bytes("em")].flatMap((byte) => [byte, 0]));
  const be = new Uint8Array([...bytes("em")].flatMap((byte) => [0, byte]));
  assert.equal(utf16Order(new Uint8Array([0xff, 0xfe, 0x65, 0])), "LE");
  assert.equal(utf16Order(new Uint8Array([0xfe, 0xff, 0, 0x65])), "BE");
  assert.equal(utf16Order(le), "LE");
  assert.equal(utf16Order(be), "BE");
  assert.equal(utf16Order(bytes("email,name")), undefined);
  assert.equal(utf16Order(new Uint8Array([0xef, 0xbb, 0xbf, 0x65])), undefined);
  assert.match(utf16Message("LE"), /^The file is UTF-16 LE .*iconv -f UTF-16LE -t UTF-8/);
});

Deno.test("usesCrLineEnds spots a lone CR as the line end", () => {
  assert.equal(usesCrLineEnds(bytes("email,name\ra@example.com,A\r")), true);
  assert.equal(usesCrLineEnds(bytes("email,name\r\na@example.com,A\r\n")), false);
  assert.equal(usesCrLineEnds(bytes("email,name\na@example.com,A")), false);
  assert.equal(usesCrLineEnds(bytes("email,name\r")), false);
});

Deno.test("BOOK_FORMAT_TABLE holds one record per format, with names, titles and extensions", () => {
  assert.deepEqual(
    BOOK_FORMAT_TABLE.map(({ name, title, extensions }) => [name, title, extensions]),
    [["csv", "CSV", ["csv"]], ["json", "JSON", ["json"]], ["vcard", "vCard", ["vcf", "vcard"]]],
  );
  assert.deepEqual(BOOK_EXTENSIONS, [".csv", ".json", ".vcf", ".vcard"]);
  for (const format of BOOK_FORMATS) assert.equal(bookFormat(format).name, format);
  assert.throws(() => bookFormat("xml" as BookFormat), {
    name: "RangeError",
    message: 'There is no book format named "xml".',
  });
  // Every extension leads to its format, and only one format takes no first-bytes test.
  for (const format of BOOK_FORMAT_TABLE) {
    for (const extension of format.extensions) {
      assert.equal(formatFromPath(`book.${extension}`), format.name);
    }
  }
  assert.equal(BOOK_FORMAT_TABLE.filter((format) => format.detect === undefined).length, 1);
  // JSON ignores line ends; CSV and vCard are read by lines.
  assert.deepEqual(BOOK_FORMAT_TABLE.map((format) => format.readsLines), [true, false, true]);
});

Deno.test("every format's reader takes the same arguments and reads its own kind of file", () => {
  const samples: Record<string, string> = {
    csv: "email,name\na@example.com,A\n",
    json: '{"a@example.com": "A"}',
    vcard: "BEGIN:VCARD\nVERSION:4.0\nFN:A\nEMAIL:a@example.com\nEND:VCARD\n",
  };
  for (const format of BOOK_FORMAT_TABLE) {
    const bytes = BookBytes.fromBytes(new TextEncoder().encode(samples[format.name]));
    bytes.begin();
    const collector = new BookCollector(`book.${format.extensions[0]}`, "error");
    format.read(bytes, collector, {});
    assert.equal(collector.finish(false).get("a@example.com"), "A", format.name);
    assert.equal(formatFromStart(new TextEncoder().encode(samples[format.name])), format.name);
  }
});
