import assert from "node:assert/strict";
import fc from "fast-check";
import * as ldapts from "ldapts";
import {
  canonicalType,
  dnEquals,
  dnValueNeedsEscape,
  escapeDnValue,
  foldDnValue,
  formatDn,
  InvalidDnError,
  isWithin,
  levelsBelow,
  normalizeDn,
  parseDn,
  type Rdn,
} from "./ldap_dn.ts";

const BASE = "dc=example,dc=com";

Deno.test("an address with + round-trips through a DN", () => {
  const dn = `mail=${escapeDnValue("alan+work@example.com")},${BASE}`;
  assert.equal(dn, "mail=alan\\+work@example.com,dc=example,dc=com");
  assert.deepEqual(parseDn(dn), [
    { type: "mail", value: "alan+work@example.com" },
    { type: "dc", value: "example" },
    { type: "dc", value: "com" },
  ]);
});

Deno.test("escapeDnValue escapes what RFC 4514 §2.4 names, and only where it names it", () => {
  const cases: [string, string][] = [
    ["plain@example.com", "plain@example.com"],
    ['a"b+c,d;e<f=g>h\\i', 'a\\"b\\+c\\,d\\;e\\<f\\=g\\>h\\\\i'],
    [" lead", "\\ lead"],
    ["#hash", "\\#hash"],
    ["mid # and space", "mid # and space"],
    ["trail ", "trail\\ "],
    [" ", "\\ "],
    ["  ", "\\ \\ "],
    ["nul\0", "nul\\00"],
    ["", ""],
    ["Zoë Ñúñez", "Zoë Ñúñez"],
  ];
  for (const [value, escaped] of cases) {
    assert.equal(escapeDnValue(value), escaped, JSON.stringify(value));
    assert.equal(parseDn(`cn=${escaped}`)[0].value, value, `${JSON.stringify(value)} parses back`);
  }
});

Deno.test("property: any value escapes and parses back unchanged", () => {
  fc.assert(
    fc.property(fc.string({ unit: "binary", maxLength: 40 }), (value) => {
      assert.deepEqual(parseDn(`mail=${escapeDnValue(value)},${BASE}`)[0], { type: "mail", value });
    }),
    { seed: 17, numRuns: 2000 },
  );
});

Deno.test("property: formatDn and parseDn are inverses", () => {
  const rdn = fc.record({
    type: fc.constantFrom("mail", "cn", "dc", "ou", "o", "uid", "x-custom", "1.2.3.4"),
    value: fc.string({ unit: "grapheme", maxLength: 20 }),
  });
  fc.assert(
    fc.property(fc.array(rdn, { maxLength: 6 }), (rdns: Rdn[]) => {
      assert.deepEqual(parseDn(formatDn(rdns)), rdns);
    }),
    { seed: 17, numRuns: 1000 },
  );
});

Deno.test("parseDn accepts spaces around separators, ; , hex escapes, #BER values and OIDs", () => {
  const expected = [
    { type: "mail", value: "alan+work@example.com" },
    { type: "dc", value: "example" },
    { type: "dc", value: "com" },
  ];
  for (
    const text of [
      "mail=alan\\+work@example.com,dc=example,dc=com",
      "  MAIL = alan\\2bwork@example.com ,  DC = example ; dc=com  ",
      "Mail=alan\\2Bwork@example.com,DC=example,DC=com",
      "0.9.2342.19200300.100.1.3=alan\\+work@example.com,domainComponent=example,dc=#1603636f6d",
      "rfc822Mailbox=#0415616c616e2b776f726b406578616d706c652e636f6d,dc=example,dc=com",
    ]
  ) {
    assert.deepEqual(parseDn(text), expected, text);
  }
  // UTF-8 in hex escapes, whole characters across escapes.
  assert.deepEqual(parseDn("cn=Zo\\c3\\ab"), [{ type: "cn", value: "Zoë" }]);
  assert.deepEqual(parseDn("cn=\\e6\\9d\\8e\\E5\\B0\\8F"), [{ type: "cn", value: "李小" }]);
  // Spaces inside a value are kept; unescaped ones at its ends are not.
  assert.deepEqual(parseDn("cn=  Ada  Lovelace  "), [{ type: "cn", value: "Ada  Lovelace" }]);
  assert.deepEqual(parseDn("cn=\\ Ada\\ "), [{ type: "cn", value: " Ada " }]);
  assert.deepEqual(
    parseDn("cn=a=b"),
    [{ type: "cn", value: "a=b" }],
    "= need not be escaped in a value",
  );
  assert.deepEqual(parseDn(""), []);
  assert.deepEqual(parseDn("   "), []);
  assert.deepEqual(parseDn("cn=,dc=x"), [{ type: "cn", value: "" }, { type: "dc", value: "x" }]);
});

Deno.test("parseDn refuses what is not a DN, naming a position and none of the text", () => {
  const bad: [string, RegExp][] = [
    ["ada@example.com", /character 3: expected = after the attribute type/],
    ["=ada", /character 0: expected an attribute type/],
    ["cn=a,", /character 5: expected an attribute type/],
    ["cn=a,,dc=b", /expected an attribute type/],
    ["cn=a+sn=b,dc=c", /multi-valued RDN is not supported/],
    ["cn=a\\", /backslash must escape/],
    ["cn=a\\zz", /backslash must escape/],
    ["cn=\\ff\\fe", /hex escapes that are not UTF-8/],
    ["cn=#0", /hex digits/],
    ["cn=#", /hex digits/],
    ["cn=#04", /not BER/],
    ["cn=#0401", /not BER/],
    ["cn=#020101", /not a BER string/],
    ["cn=#0401ff", /not UTF-8/],
    ["cn=#040161ff", /bytes after its string/],
    ["cn=a\0", /NUL must be escaped/],
    ["9cn=a", /expected = after the attribute type/],
  ];
  for (const [text, pattern] of bad) {
    assert.throws(() => parseDn(text), (error: Error) => {
      assert.ok(error instanceof InvalidDnError, text);
      assert.match(error.message, pattern, text);
      assert.ok(!error.message.includes("ada@"), "the DN's text is not in the message");
      return true;
    });
  }
});

Deno.test("dnEquals: types and values case-insensitive, beyond ASCII, spaces normalised", () => {
  assert.ok(
    dnEquals("mail=ZOË@EXAMPLE.COM,DC=Example,DC=com", "mail=zoë@example.com,dc=example,dc=com"),
  );
  assert.ok(dnEquals("CN=Ada  Lovelace , dc=x", "cn=ada lovelace,dc=x"));
  assert.ok(dnEquals("cn=STRASSE", "cn=straße"));
  assert.ok(dnEquals("2.5.4.3=Ada,0.9.2342.19200300.100.1.25=x", "cn=ada,dc=x"));
  assert.ok(dnEquals("", ""));
  assert.ok(!dnEquals("cn=ada,dc=x", "cn=ada"));
  assert.ok(!dnEquals("cn=ada,dc=x", "sn=ada,dc=x"));
  assert.ok(!dnEquals("cn=ada,dc=x", "cn=adb,dc=x"));
  assert.ok(dnEquals(parseDn("cn=Ada,dc=x"), "CN=ada,DC=X"));
});

Deno.test("levelsBelow and isWithin: how far below the base, or not within it", () => {
  const entry = "mail=ada@example.com,dc=example,dc=com";
  assert.equal(levelsBelow(entry, BASE), 1);
  assert.equal(levelsBelow(entry, entry), 0);
  assert.throws(() => levelsBelow(entry, "com"), InvalidDnError);
  assert.equal(levelsBelow(entry, ""), 3);
  assert.equal(levelsBelow(entry, "dc=com"), 2);
  assert.equal(levelsBelow(BASE, entry), -1);
  assert.equal(levelsBelow("dc=example,dc=org", BASE), -1);
  assert.equal(levelsBelow("dc=other,dc=com", BASE), -1);
  assert.ok(isWithin(entry, "DC=Example, DC=COM"));
  assert.ok(isWithin(BASE, BASE));
  assert.ok(!isWithin("dc=com", BASE));
});

Deno.test("normalizeDn gives one text for every spelling of a DN", () => {
  const spellings = [
    "mail=Alan\\+Work@Example.com,dc=example,dc=com",
    " MAIL = alan\\2bwork@example.com ; DC=EXAMPLE , dc=com",
    "0.9.2342.19200300.100.1.3=ALAN\\2BWORK@EXAMPLE.COM,dc=example,dc=com",
  ];
  for (const spelling of spellings) {
    assert.equal(normalizeDn(spelling), "mail=alan\\+work@example.com,dc=example,dc=com");
  }
  assert.equal(canonicalType("commonName"), "cn");
  assert.equal(canonicalType("GivenName"), "givenname");
  assert.equal(foldDnValue("  Zoë   ÑÚÑEZ "), "zoë ñúñez");
});

Deno.test("ldapts's DN writer and our parser agree", () => {
  // An independent RFC 4514 writer: ldapts escapes values its own way.
  const dn = new ldapts.DN({ mail: "alan+work@example.com", dc: ["example", "com"] }).toString();
  assert.deepEqual(parseDn(dn), [
    { type: "mail", value: "alan+work@example.com" },
    { type: "dc", value: "example" },
    { type: "dc", value: "com" },
  ]);
});

Deno.test("property: dnValueNeedsEscape says whether escapeDnValue changes a value, on its UTF-8", () => {
  const encoder = new TextEncoder();
  const unit = fc.constantFrom(
    "a",
    "Z",
    "@",
    ".",
    " ",
    "#",
    '"',
    "+",
    ",",
    ";",
    "<",
    "=",
    ">",
    "\\",
    "\0",
    "é",
  );
  fc.assert(
    fc.property(fc.string({ unit, maxLength: 8 }), (value) => {
      const bytes = encoder.encode(`x${value}y`);
      assert.equal(
        dnValueNeedsEscape(bytes, 1, bytes.length - 1),
        escapeDnValue(value) !== value,
        JSON.stringify(value),
      );
    }),
    { numRuns: 2000 },
  );
});
