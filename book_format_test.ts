import assert from "node:assert/strict";
import {
  BOOK_FORMATS,
  formatFromPath,
  formatFromStart,
  usesCrLineEnds,
  utf16Message,
  utf16Order,
} from "./book_format.ts";

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
