import assert from "node:assert/strict";
import { counted, describeError, sentence, wholeSentence, whyUnreadable } from "./errors.ts";

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

Deno.test("whyUnreadable says what is wrong with a file and what to do, in one style", () => {
  const cases: [Error, string][] = [
    [new Deno.errors.NotFound("No such file or directory (os error 2)"), "no such file"],
    [new Deno.errors.IsADirectory("Is a directory (os error 21)"), "it is a directory"],
    [
      new Deno.errors.PermissionDenied("Permission denied (os error 13)"),
      "permission denied; make it readable by the user this runs as",
    ],
    [
      new Deno.errors.NotCapable('Requires read access to "x"'),
      "read access to it was not granted; run with --allow-read",
    ],
  ];
  for (const [error, words] of cases) assert.equal(whyUnreadable(error, "/srv/x.pem"), words);
  // A relative path resolved elsewhere (deno task runs in the project's folder) says where.
  assert.equal(
    whyUnreadable(new Deno.errors.NotFound("os text"), "x.pem", "/home/ada/x.pem"),
    "no such file (looked for /home/ada/x.pem)",
  );
});
