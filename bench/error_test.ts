import assert from "node:assert/strict";
import { BenchError } from "./error.ts";

Deno.test("BenchError is an Error named BenchError with the message given", () => {
  const error = new BenchError("The server exited with status 1 before listening.");
  assert.ok(error instanceof Error);
  assert.equal(error.name, "BenchError");
  assert.equal(error.message, "The server exited with status 1 before listening.");
});
