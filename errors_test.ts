import assert from "node:assert/strict";
import { describeError } from "./errors.ts";

Deno.test("describeError gives an Error's message and any other value as text", () => {
  assert.equal(describeError(new TypeError("Bad value 3.")), "Bad value 3.");
  assert.equal(describeError("plain text"), "plain text");
  assert.equal(describeError(42), "42");
  assert.equal(describeError(undefined), "undefined");
});
