import assert from "node:assert/strict";
import { EXIT_FAILURE, EXIT_USAGE, StartError } from "./error.ts";

Deno.test("StartError carries its message and exits 1 unless told otherwise", () => {
  const busy = new StartError("Cannot listen on 127.0.0.1:8080: the port is already in use.");
  assert.ok(busy instanceof Error);
  assert.equal(busy.name, "StartError");
  assert.equal(busy.message, "Cannot listen on 127.0.0.1:8080: the port is already in use.");
  assert.equal(busy.exitCode, EXIT_FAILURE);
  assert.equal(new StartError("Bad usage.", EXIT_USAGE).exitCode, 2);
});
