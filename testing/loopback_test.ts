import assert from "node:assert/strict";
import { freePort, LOOPBACK } from "./loopback.ts";

Deno.test("freePort gives different ports, below the kernel's ephemeral range, that a server can bind", () => {
  const ports = Array.from({ length: 20 }, () => freePort());
  assert.equal(new Set(ports).size, ports.length);
  for (const port of ports) {
    assert.ok(port >= 20000 && port < 32768, `port ${port} is below the ephemeral range`);
    Deno.listen({ hostname: LOOPBACK, port }).close();
  }
});
