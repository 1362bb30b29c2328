import assert from "node:assert/strict";
import { formatAddress } from "./net_address.ts";

Deno.test("formatAddress brackets IPv6 hosts and leaves IPv4 hosts and names bare", () => {
  assert.equal(formatAddress("127.0.0.1", 8080), "127.0.0.1:8080");
  assert.equal(formatAddress("::1", 0), "[::1]:0");
  assert.equal(formatAddress("2001:db8::1", 443), "[2001:db8::1]:443");
  assert.equal(formatAddress("localhost", 80), "localhost:80");
});
