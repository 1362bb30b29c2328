import assert from "node:assert/strict";
import { BookBytes } from "./bytes.ts";
import { BookCollector } from "./collect.ts";
import { lastCardBoundary, readVCard } from "./vcard_reader.ts";
import { assertSameInChunks } from "../testing/load_outcome.ts";
import { formatVCard } from "./vcard.ts";

Deno.test("readVCard maps each EMAIL of a card to its name", () => {
  const text = formatVCard([{
    name: "Ada",
    emails: ["a@example.com", "A@example.com", "b@example.com"],
  }], "4.0");
  const bytes = BookBytes.fromBytes(new TextEncoder().encode(text));
  bytes.begin();
  const collector = new BookCollector("b.vcf", "error");
  readVCard(bytes, collector);
  const book = collector.finish(false);
  assert.equal(book.size, 2);
  assert.equal(book.get("b@example.com"), "Ada");
});

Deno.test("lastCardBoundary finds the last cut between two cards, in any case", () => {
  const two = "BEGIN:VCARD\r\nFN:A\r\nEND:VCARD\r\nBEGIN:VCARD\r\nFN:B\r\nEND:VCARD\r\n";
  assert.equal(lastCardBoundary(two, 0), two.indexOf("BEGIN:VCARD", 1));
  assert.equal(lastCardBoundary(two.toLowerCase(), 0), two.indexOf("BEGIN:VCARD", 1));
  assert.equal(lastCardBoundary("BEGIN:VCARD\nFN:A\nEND:VCARD\n", 0), 0);
  // A nested 2.1 AGENT card is not a place to cut.
  const agent = "BEGIN:VCARD\nAGENT:\nBEGIN:VCARD\nFN:X\nEND:VCARD\nFN:A\nEND:VCARD\n";
  assert.equal(lastCardBoundary(agent, 0), 0);
  // It does not look far before `from`, where an earlier call has looked already.
  assert.equal(lastCardBoundary(two + "FN:C\r\n".repeat(10), two.length + 30), 0);
});

Deno.test("readVCard reads and reports the same wherever the chunks cut", () => {
  const cards = Array.from(
    { length: 12 },
    (_, i) => ({ name: `Person ${i} é`, emails: [`p${i}@example.com`] }),
  );
  cards[7].emails = ["broken.example.com"];
  const text = formatVCard(cards, "3.0") + "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Last\r\n";
  assert.deepEqual(assertSameInChunks(text, "b.vcf", 40), [
    "47: The email is not valid: it has no @.",
    "73: The card starting at line 73 has no END:VCARD line, so it was not read.",
  ]);
});
