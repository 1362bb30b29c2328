import assert from "node:assert/strict";
import { counted, describeError, sentence, wholeSentence } from "./errors.ts";

Deno.test("describeError gives an Error's message and any other value as text", () => {
  assert.equal(describeError(new TypeError("Bad value 3.")), "Bad value 3.");
  assert.equal(describeError("plain text"), "plain text");
  assert.equal(describeError(42), "42");
  assert.equal(describeError(undefined), "undefined");
});

Deno.test("sentence adds a final period only where the text does not end a sentence", () => {
  assert.equal(sentence("connection refused"), "connection refused.");
  assert.equal(sentence("  trimmed  "), "trimmed.");
  for (const done of ["Done.", "Running?", "Stop!"]) assert.equal(sentence(done), done);
});

Deno.test("wholeSentence capitalises the first letter and ends with a period", () => {
  assert.equal(wholeSentence("option '--x' is unknown"), "Option '--x' is unknown.");
  assert.equal(wholeSentence("Already fine."), "Already fine.");
});

Deno.test("counted uses the singular for exactly one and the plural otherwise", () => {
  assert.equal(counted(1, "query", "queries"), "1 query");
  assert.equal(counted(0, "query", "queries"), "0 queries");
  assert.equal(counted(12, "query", "queries"), "12 queries");
  assert.equal(counted(1, "field"), "1 field");
  assert.equal(counted(2, "field"), "2 fields");
});
