import assert from "node:assert/strict";
import fc from "fast-check";
import {
  compileFilter,
  evaluateFilter,
  type FilterResult,
  type LdapFilter,
  matchSubstrings,
  resolveAttribute,
  valuesSubject,
} from "./ldap_filter.ts";

const ada = valuesSubject({
  mail: "ada@example.com",
  cn: "Ada Lovelace",
  sn: "Lovelace",
  givenName: "Ada",
});
const zoe = valuesSubject({
  mail: "zoë@example.org",
  cn: "Zoë Ñúñez",
  sn: "Ñúñez",
  givenName: "Zoë",
});
const li = valuesSubject({ mail: "li@example.cn", cn: "李小龙", sn: "李小龙" });

const eq = (attribute: string, value: string): LdapFilter => ({
  kind: "equality",
  attribute,
  value,
});
const sub = (attribute: string, any: string[], initial?: string, final?: string): LdapFilter => ({
  kind: "substrings",
  attribute,
  any,
  initial,
  final,
});
const present = (attribute: string): LdapFilter => ({ kind: "present", attribute });
const and = (...filters: LdapFilter[]): LdapFilter => ({ kind: "and", filters });
const or = (...filters: LdapFilter[]): LdapFilter => ({ kind: "or", filters });
const not = (filter: LdapFilter): LdapFilter => ({ kind: "not", filter });

// --- Attributes ---

Deno.test("resolveAttribute takes names, aliases and OIDs in any letter case", () => {
  assert.equal(resolveAttribute("givenname"), "givenName");
  assert.equal(resolveAttribute("GivenName"), "givenName");
  assert.equal(resolveAttribute("gn"), "givenName");
  assert.equal(resolveAttribute("SURNAME"), "sn");
  assert.equal(resolveAttribute("commonName"), "cn");
  assert.equal(resolveAttribute("rfc822Mailbox"), "mail");
  assert.equal(resolveAttribute("email"), "mail");
  assert.equal(resolveAttribute("2.5.4.3"), "cn");
  assert.equal(resolveAttribute("0.9.2342.19200300.100.1.3"), "mail");
  assert.equal(resolveAttribute("OBJECTCLASS"), "objectClass");
  assert.equal(resolveAttribute("displayname"), "displayName");
});

Deno.test("resolveAttribute knows nothing else: unknown names, options, non-ASCII look-alikes", () => {
  for (const name of ["telephoneNumber", "cn;lang-en", "", "mai\u0130l", "\u212Aey", "uid"]) {
    assert.equal(resolveAttribute(name), undefined, name);
  }
});

// --- Each kind ---

Deno.test("equality is case-insensitive beyond ASCII on every text attribute", () => {
  assert.equal(evaluateFilter(eq("cn", "ADA LOVELACE"), ada), true);
  assert.equal(evaluateFilter(eq("displayName", "ada lovelace"), ada), true);
  assert.equal(evaluateFilter(eq("sn", "ÑÚÑEZ"), zoe), true);
  assert.equal(evaluateFilter(eq("givenName", "ZOË"), zoe), true);
  assert.equal(evaluateFilter(eq("givenName", "Zoe\u0308"), zoe), true); // decomposed
  assert.equal(evaluateFilter(eq("cn", "Ada"), ada), false);
  assert.equal(evaluateFilter(eq("sn", "李小龙"), li), true);
});

Deno.test("equality on mail is the book's address rule: trimmed and lower-cased", () => {
  assert.equal(evaluateFilter(eq("mail", " ADA@Example.COM "), ada), true);
  assert.equal(evaluateFilter(eq("mail", "ZOË@EXAMPLE.ORG"), zoe), true);
  assert.equal(evaluateFilter(eq("mail", "ada@example.org"), ada), false);
});

Deno.test("approx is equality", () => {
  assert.equal(evaluateFilter({ kind: "approx", attribute: "sn", value: "lovelace" }, ada), true);
  assert.equal(evaluateFilter({ kind: "approx", attribute: "sn", value: "lovlace" }, ada), false);
  assert.equal(evaluateFilter({ kind: "approx", attribute: "x", value: "y" }, ada), undefined);
});

Deno.test("objectClass matches its four values in any case, and has no substrings or ordering", () => {
  for (const value of ["top", "person", "OrganizationalPerson", "INETORGPERSON"]) {
    assert.equal(evaluateFilter(eq("objectClass", value), ada), true, value);
  }
  assert.equal(evaluateFilter(eq("objectClass", "groupOfNames"), ada), false);
  assert.equal(evaluateFilter(sub("objectClass", ["org"]), ada), undefined);
  const ordering: LdapFilter = { kind: "greaterOrEqual", attribute: "objectClass", value: "a" };
  assert.equal(evaluateFilter(ordering, ada), undefined);
  assert.equal(evaluateFilter(present("objectclass"), ada), true);
});

Deno.test("substrings: initial, any parts in order, final, case-insensitive beyond ASCII", () => {
  assert.equal(evaluateFilter(sub("cn", ["LOVE"]), ada), true);
  assert.equal(evaluateFilter(sub("cn", [], "ada"), ada), true);
  assert.equal(evaluateFilter(sub("cn", [], undefined, "LACE"), ada), true);
  assert.equal(evaluateFilter(sub("cn", ["a", "love"], "ad", "ce"), ada), true);
  assert.equal(evaluateFilter(sub("cn", ["love", "ada"]), ada), false); // out of order
  assert.equal(evaluateFilter(sub("mail", ["@EXAMPLE."]), ada), true);
  assert.equal(evaluateFilter(sub("mail", ["ZOË"]), zoe), true);
  assert.equal(evaluateFilter(sub("cn", ["ÑÚÑ"]), zoe), true);
  assert.equal(evaluateFilter(sub("givenName", ["x"]), li), false); // no given name
});

Deno.test("matchSubstrings does not let parts overlap", () => {
  assert.equal(matchSubstrings("aaa", "aa", [], "aa"), false);
  assert.equal(matchSubstrings("aaaa", "aa", [], "aa"), true);
  assert.equal(matchSubstrings("abc", "", ["b", "b"], ""), false);
  assert.equal(matchSubstrings("abcb", "", ["b", "b"], ""), true);
  assert.equal(matchSubstrings("abc", "a", ["bc"], "c"), false);
  assert.equal(matchSubstrings("", "", [], ""), true);
});

/** The reference: try every place for every part, by recursion; exponential, fine for short text. */
function placeParts(value: string, parts: string[], from: number, end: number): boolean {
  if (parts.length === 0) return true;
  for (let at = from; at + parts[0].length <= end; at++) {
    if (
      value.startsWith(parts[0], at) && placeParts(value, parts.slice(1), at + parts[0].length, end)
    ) {
      return true;
    }
  }
  return false;
}

Deno.test("matchSubstrings agrees with trying every placement", () => {
  const piece = fc.string({ unit: fc.constantFrom("a", "b", "c"), maxLength: 3 });
  fc.assert(
    fc.property(
      fc.string({ unit: fc.constantFrom("a", "b", "c"), maxLength: 10 }),
      piece,
      fc.array(piece, { maxLength: 3 }),
      piece,
      (value, initial, any, final) => {
        const expected = value.startsWith(initial) && value.endsWith(final) &&
          value.length >= initial.length + final.length &&
          placeParts(value, any, initial.length, value.length - final.length);
        assert.equal(matchSubstrings(value, initial, any, final), expected);
      },
    ),
    { numRuns: 2000 },
  );
});

Deno.test(">= and <= compare folded values as strings; a missing value is FALSE", () => {
  const ge = (attribute: string, value: string): LdapFilter => ({
    kind: "greaterOrEqual",
    attribute,
    value,
  });
  const le = (attribute: string, value: string): LdapFilter => ({
    kind: "lessOrEqual",
    attribute,
    value,
  });
  assert.equal(evaluateFilter(ge("sn", "LOVE"), ada), true);
  assert.equal(evaluateFilter(ge("sn", "lovelace"), ada), true);
  assert.equal(evaluateFilter(ge("sn", "M"), ada), false);
  assert.equal(evaluateFilter(le("sn", "M"), ada), true);
  assert.equal(evaluateFilter(le("mail", "ADA@EXAMPLE.COM"), ada), true);
  assert.equal(evaluateFilter(le("givenName", "zzz"), li), false);
  assert.equal(evaluateFilter(ge("pager", "1"), ada), undefined);
});

Deno.test("present: TRUE for every attribute an entry has, FALSE for a missing givenName, Undefined if unknown", () => {
  for (const attribute of ["mail", "cn", "sn", "displayName", "givenName", "objectClass"]) {
    assert.equal(evaluateFilter(present(attribute), ada), true, attribute);
  }
  assert.equal(evaluateFilter(present("givenName"), li), false);
  assert.equal(evaluateFilter(present("jpegPhoto"), ada), undefined);
});

Deno.test("an extensible match is Undefined, whatever it asks", () => {
  const filter: LdapFilter = {
    kind: "extensible",
    attribute: "cn",
    matchingRule: "2.5.13.2",
    value: "Ada Lovelace",
    dnAttributes: false,
  };
  assert.equal(evaluateFilter(filter, ada), undefined);
  assert.equal(
    evaluateFilter({ ...filter, dnAttributes: true, attribute: undefined }, ada),
    undefined,
  );
});

// --- Three-valued logic ---

const TRUE = present("cn");
const FALSE = eq("cn", "nobody");
const UNDEFINED = eq("telephoneNumber", "1");

Deno.test("NOT swaps TRUE and FALSE and keeps Undefined", () => {
  assert.equal(evaluateFilter(not(TRUE), ada), false);
  assert.equal(evaluateFilter(not(FALSE), ada), true);
  assert.equal(evaluateFilter(not(UNDEFINED), ada), undefined);
});

/** Kleene's AND and OR over the three values, as RFC 4511 §4.5.1.7 states them. */
function kleene(kind: "and" | "or", values: FilterResult[]): FilterResult {
  const absorbing = kind === "or";
  if (values.includes(absorbing)) return absorbing;
  if (values.includes(undefined)) return undefined;
  return !absorbing;
}

Deno.test("AND and OR follow RFC 4511's three-valued tables, empty ones included", () => {
  const leaves: [LdapFilter, FilterResult][] = [[TRUE, true], [FALSE, false], [
    UNDEFINED,
    undefined,
  ]];
  fc.assert(
    fc.property(
      fc.constantFrom<"and" | "or">("and", "or"),
      fc.array(fc.constantFrom(...leaves), { maxLength: 4 }),
      (kind, children) => {
        const filter: LdapFilter = { kind, filters: children.map(([filter]) => filter) };
        assert.equal(evaluateFilter(filter, ada), kleene(kind, children.map(([, value]) => value)));
      },
    ),
  );
  assert.equal(evaluateFilter(and(), ada), true);
  assert.equal(evaluateFilter(or(), ada), false);
});

Deno.test("a compiled filter gives the same answer for entry after entry", () => {
  const filter = compileFilter(or(sub("cn", ["love"]), sub("sn", ["ñú"])));
  assert.deepEqual([ada, zoe, li, ada].map(filter), [true, true, false, true]);
});

// --- What the mail clients send (issue 17) ---

Deno.test("Thunderbird's autocomplete filter, new and old", () => {
  // (|(cn=*%v1*%v2-*)(mail=*%v*)(givenName=*%v1*)(sn=*%v*)) for "ada love"
  const thunderbird = (v1: string, rest: string[]): LdapFilter =>
    or(
      sub("cn", [v1, ...rest]),
      sub("mail", [[v1, ...rest].join(" ")]),
      sub("givenName", [v1]),
      sub("sn", [[v1, ...rest].join(" ")]),
    );
  assert.equal(evaluateFilter(thunderbird("ada", ["love"]), ada), true);
  assert.equal(evaluateFilter(thunderbird("ZOË", []), zoe), true);
  assert.equal(evaluateFilter(thunderbird("example", []), li), true); // by mail
  assert.equal(evaluateFilter(thunderbird("love", ["ada"]), ada), false);
  // Older: (|(cn=%v1*%v2-*)(mail=%v1*%v2-*)(sn=%v1*%v2-*))
  const old = (v1: string): LdapFilter =>
    or(sub("cn", [], v1), sub("mail", [], v1), sub("sn", [], v1));
  assert.equal(evaluateFilter(old("lov"), ada), true); // by sn
  assert.equal(evaluateFilter(old("ove"), ada), false);
});

Deno.test("Roundcube's, mutt's and Apple's filters", () => {
  const roundcube = (q: string) =>
    and(eq("objectClass", "inetOrgPerson"), or(sub("mail", [q]), sub("cn", [q])));
  assert.equal(evaluateFilter(roundcube("lovel"), ada), true);
  assert.equal(evaluateFilter(roundcube("zzz"), ada), false);
  const mutt = (q: string) => or(eq("givenname", q), eq("sn", q), eq("cn", q));
  assert.equal(evaluateFilter(mutt("ada"), ada), true);
  assert.equal(evaluateFilter(mutt("李小龙"), li), true);
  assert.equal(evaluateFilter(mutt("ad"), ada), false);
  const muttInexact = (q: string) => or(sub("givenname", [q]), sub("sn", [q]), sub("cn", [q]));
  assert.equal(evaluateFilter(muttInexact("ÚÑ"), zoe), true);
  const apple = (x: string) => or(eq("givenname", x), eq("sn", x), eq("cn", x), eq("mail", x));
  assert.equal(evaluateFilter(apple("ada@example.com"), ada), true);
  assert.equal(evaluateFilter(apple("Lovelace"), ada), true);
});

Deno.test("Evolution's any-field OR: unknown attributes are Undefined, never a failure", () => {
  const unknown = [
    "fileAs",
    "telephoneNumber",
    "homePhone",
    "mobile",
    "title",
    "o",
    "ou",
    "street",
  ];
  const evolution = (q: string) =>
    or(...unknown.map((attribute) => sub(attribute, [q])), sub("cn", [q]), sub("mail", [q]));
  assert.equal(evaluateFilter(evolution("lace"), ada), true);
  // No known attribute matches: FALSE or Undefined, and Undefined wins over FALSE in an OR.
  assert.equal(evaluateFilter(evolution("qqq"), ada), undefined);
  assert.equal(evaluateFilter(not(evolution("qqq")), ada), undefined);
});

Deno.test("an ordering on a value that was not UTF-8 is Undefined, not a comparison", () => {
  // ldap_codec.ts marks each byte that is not UTF-8 as a lone surrogate.
  const notUtf8 = "A\uDCFF";
  for (const kind of ["greaterOrEqual", "lessOrEqual"] as const) {
    assert.equal(evaluateFilter({ kind, attribute: "cn", value: notUtf8 }, ada), undefined);
    assert.notEqual(evaluateFilter({ kind, attribute: "cn", value: "A" }, ada), undefined);
  }
});

Deno.test("equality and substrings with a value that was not UTF-8 are Undefined too", () => {
  const notUtf8 = "Ada\uDCFF";
  // Even against a name holding U+FFFD, which the value would otherwise fold to.
  const replaced = valuesSubject({ mail: "r@example.com", cn: "Ada\uFFFD", sn: "Ada\uFFFD" });
  for (const subject of [ada, replaced]) {
    for (const kind of ["equality", "approx"] as const) {
      assert.equal(evaluateFilter({ kind, attribute: "cn", value: notUtf8 }, subject), undefined);
      assert.equal(evaluateFilter({ kind, attribute: "mail", value: notUtf8 }, subject), undefined);
      assert.equal(
        evaluateFilter({ kind, attribute: "objectClass", value: notUtf8 }, subject),
        undefined,
      );
    }
    assert.equal(evaluateFilter(sub("cn", [notUtf8]), subject), undefined);
    assert.equal(evaluateFilter(sub("cn", [], "Ada", notUtf8), subject), undefined);
    assert.equal(evaluateFilter(not(sub("cn", [], notUtf8)), subject), undefined);
  }
  assert.equal(evaluateFilter(sub("cn", ["Ada"]), ada), true);
});
