import assert from "node:assert/strict";
import { parseHostList } from "./hosts.ts";

Deno.test("parseHostList reads one host, with or without a port", () => {
  assert.deepEqual(parseHostList("127.0.0.1", 8080), [{ hostname: "127.0.0.1", port: 8080 }]);
  assert.deepEqual(parseHostList("book.example:9000", 8080), [
    { hostname: "book.example", port: 9000 },
  ]);
});

Deno.test("parseHostList reads a comma-separated list, spaces around entries ignored", () => {
  assert.deepEqual(parseHostList("a.example, b.example:9001 ,127.0.0.3:1", 7000), [
    { hostname: "a.example", port: 7000 },
    { hostname: "b.example", port: 9001 },
    { hostname: "127.0.0.3", port: 1 },
  ]);
});

Deno.test("parseHostList takes IPv6 in brackets with a port, and bare without one", () => {
  assert.deepEqual(parseHostList("[::1]:8081,[::1],::1,[fe80::1%lo]:9", 8080), [
    { hostname: "::1", port: 8081 },
    { hostname: "::1", port: 8080 },
    { hostname: "::1", port: 8080 },
    { hostname: "fe80::1%lo", port: 9 },
  ]);
});

Deno.test("parseHostList refuses empty entries, bad ports and broken brackets, naming the entry", () => {
  const cases: [string, RegExp][] = [
    ["", /empty entry/],
    ["a.example,,b.example", /empty entry/],
    ["a.example,", /empty entry/],
    ["a.example:0", /The port of "a\.example:0" must be a whole number from 1 to 65535, not "0"\./],
    ["a.example:65536", /not "65536"/],
    ["a.example:http", /not "http"/],
    ["a.example:", /not ""/],
    [":8080", /The host ":8080" has a port but no host name\./],
    ["[::1", /The host "\[::1" has no closing bracket\./],
    ["[]:80", /empty inside its brackets/],
    ["[::1]8080", /has "8080" after its bracket/],
    ["[::1]:x", /not "x"/],
  ];
  for (const [text, message] of cases) {
    assert.throws(() => parseHostList(text, 8080), { name: "RangeError", message }, text);
  }
});
