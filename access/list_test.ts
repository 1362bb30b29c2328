import assert from "node:assert/strict";
import fc from "fast-check";
import ipaddr from "ipaddr.js";
import {
  AccessList,
  ANY,
  certificateIdentity,
  clientIdentity,
  DEFAULT_TRUSTED_PROXIES,
  isLoopback,
} from "./list.ts";
import { UsageError } from "../common/cli_args.ts";

const SEED = 20261202;

function usageError(message: string | RegExp) {
  return (error: unknown) =>
    error instanceof UsageError &&
    (typeof message === "string" ? error.message === message : message.test(error.message));
}

// --- Parsing the flags ---

Deno.test("parse: IPv4 and IPv6 ranges, bare addresses, repeated flags and commas", () => {
  const list = AccessList.parse("--allow", [
    "10.0.0.0/8, 192.0.2.7",
    "2001:db8::/32,::1",
    "198.51.100.0/24",
  ]);
  assert.deepEqual(list.entries, [
    "10.0.0.0/8",
    "192.0.2.7",
    "2001:db8::/32",
    "::1",
    "198.51.100.0/24",
  ]);
  assert.equal(list.matchesEveryone, false);
  for (const address of ["10.0.0.0", "10.255.255.255", "192.0.2.7", "198.51.100.99"]) {
    assert.ok(list.allows(address), address);
  }
  for (const address of ["2001:db8::", "2001:DB8:ffff::1", "::1", "0:0:0:0:0:0:0:1"]) {
    assert.ok(list.allows(address), address);
  }
  for (
    const address of ["9.255.255.255", "11.0.0.0", "192.0.2.6", "192.0.2.8", "2001:db9::", "::2"]
  ) {
    assert.ok(!list.allows(address), address);
  }
});

Deno.test("parse: any matches everyone, in any case, beside other entries", () => {
  for (const value of [ANY, "ANY", "10.0.0.0/8,any"]) {
    const list = AccessList.parse("--allow", value);
    assert.equal(list.matchesEveryone, true);
    assert.ok(list.allows("192.0.2.1"));
    assert.ok(list.allows("2001:db8::1"));
    assert.ok(list.allows("not an address"), "any is any peer, whatever the socket reports");
  }
  assert.ok(AccessList.parse("--allow", "0.0.0.0/0").allows("255.255.255.255"));
  assert.ok(!AccessList.parse("--allow", "0.0.0.0/0").allows("2001:db8::1"));
  assert.ok(AccessList.parse("--allow", "::/0").allows("2001:db8::1"));
  assert.ok(!AccessList.parse("--allow", "::/0").allows("192.0.2.1"), "IPv6 ranges hold no IPv4");
  assert.ok(!AccessList.parse("--allow", "::/0").allows("::ffff:192.0.2.1"));
});

Deno.test("parse: the default trusted proxies are the loopback networks", () => {
  const trusted = AccessList.parse("--trusted-proxy", DEFAULT_TRUSTED_PROXIES);
  assert.ok(trusted.allows("127.0.0.1"));
  assert.ok(trusted.allows("127.255.0.9"));
  assert.ok(trusted.allows("::1"));
  assert.ok(trusted.allows("::ffff:127.0.0.1"));
  assert.ok(!trusted.allows("128.0.0.1"));
  assert.ok(!trusted.allows("::2"));
});

Deno.test("parse: bad entries are usage errors naming the flag and the entry", () => {
  const cases: [string | string[], string | RegExp][] = [
    ["", '--allow has an empty entry in "".'],
    ["10.0.0.0/8,", '--allow has an empty entry in "10.0.0.0/8,".'],
    [["10.0.0.0/8", ",::1"], '--allow has an empty entry in ",::1".'],
    [
      "10.0.0.300",
      '--allow entry "10.0.0.300" is not an IPv4 or IPv6 address, a CIDR range or "any".',
    ],
    ["010.0.0.1", /entry "010\.0\.0\.1" is not an IPv4/],
    ["0x7f.1", /entry "0x7f\.1" is not/],
    ["10.1", /entry "10\.1" is not/],
    ["fe80::1%eth0", /entry "fe80::1%eth0" is not/],
    ["1::2::3", /entry "1::2::3" is not/],
    ["example.com", /entry "example\.com" is not/],
    ["everyone", /entry "everyone" is not/],
    [
      "10.0.0.0/33",
      '--allow entry "10.0.0.0/33" must have a prefix length from 0 to 32, not "33".',
    ],
    ["2001:db8::/129", /prefix length from 0 to 128, not "129"/],
    ["10.0.0.0/", /prefix length from 0 to 32, not ""/],
    ["10.0.0.0/-1", /not "-1"/],
    ["10.0.0.0/8/8", /not "8\/8"/],
    [
      "10.0.0.1/8",
      '--allow entry "10.0.0.1/8" has bits set past its /8 prefix; the range is 10.0.0.0/8.',
    ],
    ["2001:db8::1/32", /has bits set past its \/32 prefix; the range is 2001:db8::\/32\./],
  ];
  for (const [value, message] of cases) {
    assert.throws(() => AccessList.parse("--allow", value), usageError(message), String(value));
  }
  assert.throws(
    () => AccessList.parse("--trusted-proxy", "nope"),
    usageError(/^--trusted-proxy entry "nope"/),
  );
});

Deno.test("parse: an IPv4-mapped range is an IPv4 range", () => {
  const list = AccessList.parse("--allow", "::ffff:10.0.0.0/104");
  assert.ok(list.allows("10.9.8.7"));
  assert.ok(list.allows("::ffff:10.9.8.7"));
  assert.ok(!list.allows("11.0.0.0"));
  const wide = AccessList.parse("--allow", "::ffff:0:0/96");
  assert.ok(wide.allows("192.0.2.1"));
  assert.ok(!wide.allows("2001:db8::1"));
});

// --- Matching ---

Deno.test("allows: IPv4-mapped peers match IPv4 ranges, in either notation", () => {
  const list = AccessList.parse("--allow", "192.0.2.0/24");
  assert.ok(list.allows("::ffff:192.0.2.7"));
  assert.ok(list.allows("::FFFF:c000:0207"));
  assert.ok(list.allows("0:0:0:0:0:ffff:192.0.2.7"));
  assert.ok(!list.allows("::ffff:192.0.3.7"));
  assert.ok(!list.allows("::192.0.2.7"), "IPv4-compatible is not IPv4-mapped");
});

Deno.test("allows: text that is not an address matches nothing, and never throws", () => {
  const list = AccessList.parse("--allow", "0.0.0.0/0,::/0");
  const junk = [
    "",
    " ",
    "1.2.3",
    "1.2.3.4.5",
    "1.2.3.04",
    "1..2.3",
    "256.0.0.1",
    " 1.2.3.4",
    "1.2.3.4 ",
    ":",
    ":::",
    "1:2",
    "1::2::3",
    "1:2:3:4:5:6:7:8:9",
    "1:2:3:4:5:6:7::8",
    "12345::",
    "g::",
    "1:",
    ":1",
    "::1:",
    "::ffff:1.2.3",
    "1:2:3:4:5:6:7:1.2.3.4",
    "[::1]",
    "localhost",
  ];
  for (const text of junk) assert.equal(list.allows(text), false, JSON.stringify(text));
  assert.ok(list.allows("fe80::1%eth0"), "a zone is ignored");
  assert.ok(list.allows("::"));
  assert.ok(list.allows("1:2:3:4:5:6:1.2.3.4"));
});

Deno.test("allows: a long list of IPv4 ranges, merged and binary-searched", () => {
  const entries = Array.from({ length: 100 }, (_, i) => `10.${2 * i}.0.0/16`);
  entries.push("10.0.0.0/9", "192.0.2.7", "192.0.2.8");
  const list = AccessList.parse("--allow", entries.join(","));
  assert.ok(list.allows("10.0.0.1"));
  assert.ok(list.allows("10.1.0.1"), "inside 10.0.0.0/9 only");
  assert.ok(list.allows("10.127.255.255"));
  assert.ok(!list.allows("10.129.0.1"));
  assert.ok(list.allows("10.130.0.1"));
  assert.ok(list.allows("10.198.255.255"));
  assert.ok(!list.allows("10.199.0.0"));
  assert.ok(!list.allows("10.200.0.0"));
  assert.ok(list.allows("192.0.2.8"));
  assert.ok(!list.allows("192.0.2.9"));
  assert.ok(!list.allows("9.255.255.255"));
});

const ipv4Bytes = fc.array(fc.nat(255), { minLength: 4, maxLength: 4 });
const ipv6Parts = fc.oneof(
  fc.array(fc.nat(0xffff), { minLength: 8, maxLength: 8 }),
  // Addresses with runs of zeros, which have the most textual forms.
  fc.array(fc.oneof(fc.constant(0), fc.nat(0xffff)), { minLength: 8, maxLength: 8 }),
).filter((parts) => !new ipaddr.IPv6(parts).isIPv4MappedAddress());

/** Textual forms of one IPv6 address, written by ipaddr.js. */
function ipv6Forms(address: ipaddr.IPv6): string[] {
  const forms = [
    address.toString(),
    address.toNormalizedString(),
    address.parts.map((part) => part.toString(16).padStart(4, "0")).join(":"),
    address.toRFC5952String().toUpperCase(),
  ];
  const [a, b] = address.parts.slice(6);
  forms.push(
    `${address.parts.slice(0, 6).map((p) => p.toString(16)).join(":")}:${a >> 8}.${a & 0xff}.${
      b >> 8
    }.${b & 0xff}`,
  );
  return forms;
}

Deno.test("allows: agrees with ipaddr.js on random addresses and ranges (property)", () => {
  fc.assert(
    fc.property(ipv4Bytes, ipv4Bytes, fc.integer({ min: 0, max: 32 }), (peer, base, prefix) => {
      const network = ipaddr.IPv4.networkAddressFromCIDR(`${base.join(".")}/${prefix}`);
      const list = AccessList.parse("--allow", `${network}/${prefix}`);
      const address = new ipaddr.IPv4(peer);
      const expected = address.match(network, prefix);
      assert.equal(list.allows(address.toString()), expected);
      assert.equal(list.allows(`::ffff:${address}`), expected);
    }),
    { seed: SEED, numRuns: 1000 },
  );
  fc.assert(
    fc.property(ipv6Parts, ipv6Parts, fc.integer({ min: 0, max: 128 }), (peer, base, prefix) => {
      const network = ipaddr.IPv6.networkAddressFromCIDR(
        `${new ipaddr.IPv6(base)}/${prefix}`,
      );
      const list = AccessList.parse("--allow", `${network}/${prefix}`);
      const address = new ipaddr.IPv6(peer);
      const expected = address.match(network, prefix);
      for (const form of ipv6Forms(address)) assert.equal(list.allows(form), expected, form);
    }),
    { seed: SEED, numRuns: 1000 },
  );
});

Deno.test("allows: an address's every form matches its /128, no other address does (property)", () => {
  fc.assert(
    fc.property(ipv6Parts, ipv6Parts, (parts, other) => {
      const address = new ipaddr.IPv6(parts);
      const list = AccessList.parse("--allow", address.toString());
      for (const form of ipv6Forms(address)) assert.ok(list.allows(form), form);
      const same = parts.every((part, i) => part === other[i]);
      assert.equal(list.allows(new ipaddr.IPv6(other).toString()), same);
    }),
    { seed: SEED, numRuns: 1000 },
  );
});

Deno.test("allows: random text is an address exactly when ipaddr.js says so (property)", () => {
  const list = AccessList.parse("--allow", "0.0.0.0/0,::/0");
  const text = fc.stringMatching(/^[0-9a-fA-F:.]{0,45}$/);
  fc.assert(
    fc.property(text, (candidate) => {
      const valid = ipaddr.IPv4.isValidFourPartDecimal(candidate) ||
        (candidate.includes(":") && ipaddr.IPv6.isValid(candidate));
      assert.equal(list.allows(candidate), valid, candidate);
    }),
    { seed: SEED, numRuns: 3000 },
  );
});

// --- Loopback and identity ---

Deno.test("isLoopback: 127.0.0.0/8, ::1 and their IPv4-mapped forms only", () => {
  for (const address of ["127.0.0.1", "127.0.0.2", "127.255.255.255", "::1", "::ffff:127.0.0.1"]) {
    assert.ok(isLoopback(address), address);
  }
  for (
    const address of ["126.255.255.255", "128.0.0.1", "::", "::2", "0.0.0.0", "10.0.0.1", "x"]
  ) {
    assert.ok(!isLoopback(address), address);
  }
});

Deno.test("clientIdentity: IPv4 as itself, IPv6 by its /64 in RFC 5952 form", () => {
  assert.equal(clientIdentity("192.0.2.7"), "192.0.2.7");
  assert.equal(clientIdentity("::ffff:192.0.2.7"), "192.0.2.7");
  assert.equal(clientIdentity("::FFFF:c000:207"), "192.0.2.7");
  assert.equal(clientIdentity("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::/64");
  assert.equal(clientIdentity("2001:0DB8:0001:0002::1"), "2001:db8:1:2::/64");
  assert.equal(clientIdentity("2001:db8::1"), "2001:db8::/64");
  assert.equal(clientIdentity("2001:0:0:1::1"), "2001:0:0:1::/64");
  assert.equal(clientIdentity("2001:db8:0:0:1::"), "2001:db8::/64");
  assert.equal(clientIdentity("1:2:3:4::"), "1:2:3:4::/64");
  assert.equal(clientIdentity("1:0:3:4::"), "1:0:3:4::/64");
  assert.equal(clientIdentity("::1"), "::/64");
  assert.equal(clientIdentity("fe80::1%eth0"), "fe80::/64");
  assert.equal(clientIdentity("not an address"), "not an address");
});

Deno.test("clientIdentity: two addresses share an identity exactly when they share a /64 (property)", () => {
  fc.assert(
    fc.property(ipv6Parts, ipv6Parts, (a, b) => {
      const same = a.slice(0, 4).every((part, i) => part === b[i]);
      const [x, y] = [a, b].map((parts) => clientIdentity(new ipaddr.IPv6(parts).toString()));
      assert.equal(x === y, same);
      const network = ipaddr.IPv6.parseCIDR(x);
      assert.equal(network[1], 64);
      assert.ok(new ipaddr.IPv6(a).match(network));
      assert.equal(x, `${network[0].toRFC5952String()}/64`);
    }),
    { seed: SEED, numRuns: 500 },
  );
});

Deno.test("certificateIdentity: the subject, marked so that it never equals an address", () => {
  assert.equal(certificateIdentity("CN=reporting,O=Example"), "cert:CN=reporting,O=Example");
  assert.notEqual(certificateIdentity("192.0.2.7"), clientIdentity("192.0.2.7"));
});
