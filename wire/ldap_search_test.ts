import assert from "node:assert/strict";
import fc from "fast-check";
import { type AddressBook, AddressBookBuilder } from "../book/addressbook.ts";
import { emailProblem, normalizeEmail } from "../book/email.ts";
import { drain, foldText, TextIndex } from "../book/text_index.ts";
import { generateEntries } from "../tools/gen.ts";
import { makeBook } from "../testing/books.ts";
import { evaluateFilter, type LdapFilter, OBJECT_CLASSES, valuesSubject } from "./ldap_filter.ts";
import {
  BookSubject,
  entryAttributes,
  nameParts,
  planFilter,
  searchBook,
  splitName,
  splitNameBytes,
  STOP_CHECK_INTERVAL,
} from "./ldap_search.ts";

type Row = [email: string, name: string, givenName?: string, surname?: string];

function bookOf(rows: readonly Row[]): AddressBook {
  const builder = new AddressBookBuilder();
  for (const [email, name, givenName, surname] of rows) {
    assert.equal(builder.add(email, name, givenName, surname), -1, email);
  }
  return builder.build();
}

/** A generated book of `count` entries (tools/gen.ts), the same every run. */
function generatedBook(count: number): AddressBook {
  const builder = new AddressBookBuilder(count);
  for (const { email, name } of generateEntries(count, 17)) builder.add(email, name);
  return builder.build();
}

/** The entries a filter is TRUE for, by evaluating it on every entry's attributes. */
function naiveSearch(book: AddressBook, filter: LdapFilter): number[] {
  const found = [];
  for (let entry = 0; entry < book.size; entry++) {
    const { mail, cn, sn, givenName } = entryAttributes(book, entry);
    if (evaluateFilter(filter, valuesSubject({ mail, cn, sn, givenName })) === true) {
      found.push(entry);
    }
  }
  return found;
}

const sub = (attribute: string, any: string[], initial?: string, final?: string): LdapFilter => ({
  kind: "substrings",
  attribute,
  any,
  initial,
  final,
});
const eq = (attribute: string, value: string): LdapFilter => ({
  kind: "equality",
  attribute,
  value,
});
const or = (...filters: LdapFilter[]): LdapFilter => ({ kind: "or", filters });
const and = (...filters: LdapFilter[]): LdapFilter => ({ kind: "and", filters });

/** Thunderbird's default filter for one word: (|(cn=*K*)(mail=*K*)(givenName=*K*)(sn=*K*)). */
const thunderbird = (k: string) =>
  or(sub("cn", [k]), sub("mail", [k]), sub("givenName", [k]), sub("sn", [k]));

// --- Names ---

Deno.test("splitName: the last word is the surname, what comes before the given name", () => {
  assert.deepEqual(splitName("Ada Lovelace"), { givenName: "Ada", surname: "Lovelace" });
  assert.deepEqual(splitName(" Ada  King   Lovelace "), {
    givenName: "Ada  King",
    surname: "Lovelace",
  });
  assert.deepEqual(splitName("Ada Lovelace, Jr."), { givenName: "Ada Lovelace,", surname: "Jr." });
  assert.deepEqual(splitName("Zoë\u3000Ñúñez"), { givenName: "Zoë", surname: "Ñúñez" });
  assert.deepEqual(splitName("Van der Berg"), { givenName: "Van der", surname: "Berg" });
});

Deno.test("splitName: a one-word name is its own surname and has no given name", () => {
  assert.deepEqual(splitName("李小龙"), { surname: "李小龙" });
  assert.deepEqual(splitName("  Cher "), { surname: "Cher" });
});

Deno.test("splitNameBytes splits UTF-8 as splitName splits the string, every kind of whitespace included", () => {
  const spaces = [
    " ",
    "\t",
    "\n",
    "\v",
    "\f",
    "\r",
    "\u00a0",
    "\u1680",
    "\u2000",
    "\u2005",
    "\u200a",
  ]
    .concat(["\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\ufeff"]);
  // Look-alikes that are not whitespace to \s: next line, zero width space, Mongolian vowel separator.
  const others = ["a", "Ü", "中", "😀", "\u0085", "\u200b", "\u180e", "\u200c", "\u2030"];
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  fc.assert(
    fc.property(fc.array(fc.constantFrom(...spaces, ...others), { maxLength: 12 }), (pieces) => {
      const name = pieces.join("");
      const bytes = encoder.encode(`xx${name}yy`);
      const parts = new Int32Array(4);
      splitNameBytes(bytes, 2, bytes.length - 2, parts);
      const expected = splitName(name);
      assert.equal(decoder.decode(bytes.subarray(parts[2], parts[3])), expected.surname);
      if (expected.givenName === undefined) {
        assert.deepEqual([parts[0], parts[1]], [-1, -1]);
      } else {
        assert.equal(decoder.decode(bytes.subarray(parts[0], parts[1])), expected.givenName);
      }
    }),
    { numRuns: 2000 },
  );
});

Deno.test("nameParts prefers the source's parts, falling back to the split surname", () => {
  assert.deepEqual(nameParts("Ada Lovelace", "Augusta Ada", "King"), {
    givenName: "Augusta Ada",
    surname: "King",
  });
  assert.deepEqual(nameParts("Ada Lovelace", "Augusta"), {
    givenName: "Augusta",
    surname: "Lovelace",
  });
  assert.deepEqual(nameParts("Ada Lovelace", undefined, "King"), { surname: "King" });
  assert.deepEqual(nameParts("Ada Lovelace"), { givenName: "Ada", surname: "Lovelace" });
});

Deno.test("entryAttributes gives mail, cn, displayName, sn, givenName and the object classes", () => {
  const book = bookOf([
    ["ada@example.com", "Ada Lovelace"],
    ["li@example.cn", "李小龙"],
    ["aak@example.com", "Ada Lovelace", "Augusta Ada", "King"],
  ]);
  const byEmail = (email: string) =>
    entryAttributes(book, book.lookup(enc(email), 0, email.length));
  assert.deepEqual(byEmail("ada@example.com"), {
    mail: "ada@example.com",
    cn: "Ada Lovelace",
    displayName: "Ada Lovelace",
    sn: "Lovelace",
    givenName: "Ada",
    objectClass: OBJECT_CLASSES,
  });
  assert.deepEqual(byEmail("li@example.cn"), {
    mail: "li@example.cn",
    cn: "李小龙",
    displayName: "李小龙",
    sn: "李小龙",
    objectClass: ["top", "person", "organizationalPerson", "inetOrgPerson"],
  });
  const king = byEmail("aak@example.com");
  assert.equal(king.sn, "King");
  assert.equal(king.givenName, "Augusta Ada");
  assert.throws(() => entryAttributes(book, 3), RangeError);
  assert.throws(() => entryAttributes(book, -1), RangeError);
  // Four-byte characters, and a name too long to decode by hand.
  const long = `${"Ñ".repeat(200)} Hamilton 🚀`;
  const other = bookOf([["m@example.com", "Margaret Hamilton 🚀"], ["l@example.com", long]]);
  const names = [0, 1].map((entry) => entryAttributes(other, entry));
  assert.deepEqual(
    names.map(({ cn, sn, givenName }) => [cn, sn, givenName]).sort(),
    [["Margaret Hamilton 🚀", "🚀", "Margaret Hamilton"], [long, "🚀", long.slice(0, -3)]].sort(),
  );
});

function enc(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

Deno.test("BookSubject gives each value as entryAttributes does, served as it is and folded", () => {
  const book = bookOf([
    ["ada@example.com", "Ada Lovelace"],
    ["zoë@example.org", "ZOË Ñúñez", "Zoë", undefined],
    ["li@example.cn", "李小龙"],
    ["x@example.com", " Mary  Ann\tSmith ", undefined, "Smith-Jones"],
    ["y@example.com", "Ὀδυσσεύς\u00a0ΛΑΕΡΤΙΆΔΗΣ"],
  ]);
  const subject = new BookSubject(book);
  const range = { bytes: new Uint8Array(0), start: 0, end: 0 };
  const text = () => new TextDecoder().decode(range.bytes.subarray(range.start, range.end));
  for (let entry = 0; entry < book.size; entry++) {
    subject.load(entry);
    const attributes = entryAttributes(book, entry);
    subject.email(range);
    assert.equal(text(), attributes.mail);
    for (const attribute of ["mail", "cn", "displayName", "sn", "givenName"] as const) {
      const expected = attributes[attribute];
      assert.equal(subject.served(attribute, range), expected !== undefined, attribute);
      if (expected === undefined) continue;
      assert.equal(text(), expected, attribute);
      assert.equal(subject.value(attribute, range), true);
      // Folded, but for ASCII capitals, which the filter lowers as it reads.
      assert.equal(foldText(text()), foldText(expected), attribute);
      assert.equal(text().replace(/[A-Z]/g, (c) => c.toLowerCase()), foldText(expected));
    }
  }
});

// --- Plans ---

Deno.test("planFilter: mail equality by lookup, never-TRUE items as nothing, NOT and present as a scan", () => {
  const book = makeBook();
  const index = TextIndex.build(book);
  const plan = (filter: LdapFilter) => {
    const cursor = planFilter(book, index, filter);
    return cursor === undefined ? undefined : drain(cursor);
  };
  assert.deepEqual(
    plan(eq("mail", "ADA@example.com")),
    Uint32Array.of(lookup(book, "ada@example.com")),
  );
  assert.equal(plan(eq("mail", "nobody@example.com"))?.length, 0);
  assert.equal(plan(eq("telephoneNumber", "1"))?.length, 0);
  assert.equal(plan(sub("objectClass", ["person"]))?.length, 0);
  assert.equal(plan(eq("objectClass", "groupOfNames"))?.length, 0);
  assert.equal(plan({ kind: "extensible", value: "x", dnAttributes: false })?.length, 0);
  // A value that was not UTF-8 (the codec's lone surrogates) is Undefined: never TRUE.
  assert.equal(plan(sub("cn", ["ada\uDCFF"]))?.length, 0);
  assert.equal(plan(eq("sn", "\uD800"))?.length, 0);
  assert.equal(plan({ kind: "lessOrEqual", attribute: "sn", value: "\uDC00" })?.length, 0);
  assert.equal(plan(eq("objectClass", "inetOrgPerson")), undefined);
  assert.equal(plan({ kind: "present", attribute: "mail" }), undefined);
  assert.equal(plan({ kind: "not", filter: eq("cn", "x") }), undefined);
  assert.equal(plan({ kind: "greaterOrEqual", attribute: "sn", value: "m" }), undefined);
  assert.equal(plan(sub("cn", ["lovelace"]))?.length, 1);
  // AND takes its most selective child; OR unions, and scans if any child scans.
  assert.equal(plan(and(eq("objectClass", "person"), sub("cn", ["lovelace"])))?.length, 1);
  assert.equal(plan(or(sub("cn", ["lovelace"]), sub("cn", ["hopper"])))?.length, 2);
  assert.equal(plan(or(sub("cn", ["lovelace"]), { kind: "present", attribute: "cn" })), undefined);
  assert.equal(plan(and())?.length, undefined);
  assert.equal(plan(or())?.length, 0);
  // Without an index, substrings scan.
  assert.equal(planFilter(book, undefined, sub("cn", ["lovelace"])), undefined);
});

function mailOf(book: AddressBook, entry: number): string {
  return book.entry(entry).email.toUpperCase();
}

function lookup(book: AddressBook, email: string): number {
  const bytes = enc(email);
  return book.lookup(bytes, 0, bytes.length);
}

Deno.test("a fragment asked in two places of a plan is read for each place on its own", () => {
  const book = bookOf([
    ["a@example.com", "Ada One"],
    ["b@example.com", "Ada Two"],
    ["c@example.com", "Ada Xyz"],
    ["d@example.com", "Bob Xyz"],
  ]);
  const index = TextIndex.build(book);
  // Both "ada"s: one leads an intersection, which jumps ahead; the other must still give all.
  const filters = [
    or(and(sub("cn", ["ada"]), sub("cn", ["xyz"])), sub("sn", ["ada"]), sub("givenName", ["ada"])),
    and(or(sub("cn", ["ada"]), sub("cn", ["bob"])), or(sub("mail", ["ada"]), sub("cn", ["xyz"]))),
  ];
  for (const filter of filters) {
    assert.deepEqual(
      searchBook(book, index, { filter }, Infinity).entries,
      naiveSearch(book, filter),
    );
  }
});

Deno.test("Evolution's OR of many unknown attributes plans only its known ones", () => {
  const book = generatedBook(5000);
  const index = TextIndex.build(book);
  const unknown = ["fileAs", "telephoneNumber", "homePhone", "mobile", "title", "o", "ou"];
  const filter = or(
    ...unknown.map((attribute) => sub(attribute, ["lovelace"])),
    sub("cn", ["lovelace"]),
  );
  const outcome = searchBook(book, index, { filter }, Infinity);
  assert.equal(outcome.scanned, false);
  assert.ok(outcome.entries.length > 0);
  assert.deepEqual(outcome.entries, naiveSearch(book, filter));
});

// --- Searching a generated book ---

Deno.test("searchBook on a generated book: every client's filter finds what a scan finds, without one", () => {
  const book = generatedBook(20_000);
  const index = TextIndex.build(book);
  const filters: [string, LdapFilter, boolean][] = [
    ["thunderbird, inner", thunderbird("ada"), false],
    ["thunderbird, digits", thunderbird("473"), false],
    ["thunderbird, non-ASCII in any case", thunderbird("ÑÚÑ"), false],
    ["thunderbird, no match", thunderbird("zzqx"), false],
    ["thunderbird, words", or(sub("cn", ["zo", "mü"]), sub("mail", ["zo mü"])), false],
    [
      "old thunderbird",
      or(sub("cn", [], "lov"), sub("mail", [], "lov"), sub("sn", [], "lov")),
      false,
    ],
    [
      "roundcube",
      and(eq("objectClass", "inetOrgPerson"), or(sub("mail", ["hopp"]), sub("cn", ["hopp"]))),
      false,
    ],
    ["mutt", or(eq("givenname", "Zoë"), eq("sn", "Zoë"), eq("cn", "Zoë Müller")), false],
    [
      "apple",
      or(eq("givenname", "Hopper"), eq("sn", "Hopper"), eq("cn", "Hopper"), eq("mail", "Hopper")),
      false,
    ],
    [
      "apple, by mail",
      or(eq("givenname", "x@y"), eq("sn", "x@y"), eq("cn", "x@y"), eq("mail", mailOf(book, 7))),
      false,
    ],
    ["one letter", thunderbird("q"), false],
    ["all", eq("objectClass", "person"), true],
  ];
  for (const [name, filter, scans] of filters) {
    const outcome = searchBook(book, index, { filter }, Infinity);
    assert.equal(outcome.scanned, scans, name);
    assert.deepEqual(outcome.entries, naiveSearch(book, filter), name);
    assert.equal(outcome.more, false);
    assert.equal(outcome.next, undefined);
  }
});

Deno.test("searchBook stops at the limit, says more exist, and pages on from next", () => {
  const book = generatedBook(5000);
  const index = TextIndex.build(book);
  for (
    const [filter, scanned] of [[thunderbird("ada"), false], [
      eq("objectClass", "top"),
      true,
    ]] as const
  ) {
    const all = searchBook(book, index, { filter }, Infinity).entries;
    assert.ok(all.length > 100);
    const first = searchBook(book, index, { filter }, 100);
    assert.equal(first.scanned, scanned);
    assert.deepEqual(first.entries, all.slice(0, 100));
    assert.equal(first.more, true);
    assert.equal(first.next, all[100]);
    // Paging through with `next` gives every entry once, in order.
    const paged: number[] = [];
    let start: number | undefined = 0;
    while (start !== undefined) {
      const page = searchBook(book, index, { filter, start }, 37);
      paged.push(...page.entries);
      start = page.next;
    }
    assert.deepEqual(paged, all);
    // Exactly as many as the limit: no more.
    const exact = searchBook(book, index, { filter }, all.length);
    assert.equal(exact.more, false);
    assert.equal(exact.entries.length, all.length);
  }
});

Deno.test("searchBook with limit 0 finds nothing but says whether anything matches", () => {
  const book = makeBook();
  const index = TextIndex.build(book);
  const some = searchBook(book, index, { filter: thunderbird("ada") }, 0);
  assert.deepEqual(some.entries, []);
  assert.equal(some.more, true);
  const none = searchBook(book, index, { filter: thunderbird("qqq") }, 0);
  assert.equal(none.more, false);
});

Deno.test("searchBook asks shouldStop as it goes and stops there, resumably", () => {
  const book = generatedBook(5000);
  let asked = 0;
  const filter = eq("cn", "nobody at all");
  const outcome = searchBook(book, undefined, { filter, shouldStop: () => ++asked === 2 }, 10);
  assert.equal(outcome.stopped, true);
  assert.equal(outcome.examined, 2 * STOP_CHECK_INTERVAL);
  assert.equal(outcome.next, 2 * STOP_CHECK_INTERVAL - 1);
  assert.deepEqual(outcome.entries, []);
});

Deno.test("searchBook calls visit for each entry found, and stops when it returns false", () => {
  const book = generatedBook(2000);
  const index = TextIndex.build(book);
  const seen: number[] = [];
  const range = { bytes: new Uint8Array(0), start: 0, end: 0 };
  const outcome = searchBook(book, index, { filter: thunderbird("a") }, 100, (entry, subject) => {
    seen.push(entry);
    // The subject is loaded with the entry found: its values can be served from it.
    subject.served("mail", range);
    assert.equal(
      new TextDecoder().decode(range.bytes.subarray(range.start, range.end)),
      book.entry(entry).email,
    );
    return seen.length < 3;
  });
  assert.deepEqual(seen, outcome.entries);
  assert.equal(seen.length, 3);
  assert.equal(outcome.stopped, true);
  assert.equal(outcome.next, seen[2] + 1);
});

Deno.test("searchBook refuses a bad limit and another book's index", () => {
  const book = makeBook();
  const index = TextIndex.build(book);
  for (const limit of [-1, 1.5, NaN]) {
    assert.throws(() => searchBook(book, index, { filter: thunderbird("a") }, limit), RangeError);
  }
  const other = TextIndex.build(generatedBook(10));
  assert.throws(() => searchBook(book, other, { filter: thunderbird("a") }, 1), RangeError);
});

// --- The property: the search equals the filter's evaluation on every entry ---

const ALPHABET = ["a", "b", "A", "é", "É", "e\u0301", "σ", "Σ", "ς", "中", " ", "\t", ".", "ß"];
const text = (min: number, max: number) =>
  fc.array(fc.constantFrom(...ALPHABET), { minLength: min, maxLength: max })
    .map((parts) => parts.join(""));

const rowsOf = (minLength: number, maxLength: number) =>
  fc.uniqueArray(
    fc.tuple(
      text(1, 5),
      text(1, 10),
      fc.option(text(1, 4), { nil: undefined, freq: 4 }),
      fc.option(text(1, 4), { nil: undefined, freq: 4 }),
    ).map(([local, name, givenName, surname]): Row => [
      normalizeEmail(`${local.replace(/\s/g, "")}x@b.example`),
      name,
      givenName,
      surname,
    ]).filter(([email, name]) => emailProblem(email) === undefined && name.trim() !== ""),
    { selector: ([email]) => email, minLength, maxLength },
  );

/** A value in a filter: text, or a piece of some entry's attribute, picked once the book is made. */
type ValuePick = string | [
  entry: number,
  field: number,
  start: number,
  length: number,
  upper: boolean,
];

const valuePick: fc.Arbitrary<ValuePick> = fc.oneof(
  text(0, 3),
  // A few values often, so that one fragment turns up in several places of a filter.
  fc.constantFrom("a", "A", "é", "ab", "σ"),
  fc.tuple(fc.nat(), fc.nat(), fc.nat(), fc.nat({ max: 12 }), fc.boolean()),
);

const attribute = fc.constantFrom(
  "cn",
  "CN",
  "mail",
  "sn",
  "givenName",
  "gn",
  "displayName",
  "objectClass",
  "telephoneNumber",
);

type Template =
  | { kind: "and" | "or"; filters: Template[] }
  | { kind: "not"; filter: Template }
  | {
    kind: "equality" | "greaterOrEqual" | "lessOrEqual" | "approx";
    attribute: string;
    value: ValuePick;
  }
  | {
    kind: "substrings";
    attribute: string;
    initial?: ValuePick;
    any: ValuePick[];
    final?: ValuePick;
  }
  | { kind: "present"; attribute: string }
  | { kind: "extensible"; value: string };

const { template } = fc.letrec<{ template: Template }>((tie) => ({
  template: fc.oneof(
    { maxDepth: 4, depthSize: "medium", withCrossShrink: true },
    fc.record({
      kind: fc.constantFrom("equality", "approx", "greaterOrEqual", "lessOrEqual"),
      attribute,
      value: valuePick,
    }),
    fc.record({
      kind: fc.constant("substrings"),
      attribute,
      initial: fc.option(valuePick, { nil: undefined }),
      any: fc.array(valuePick, { maxLength: 2 }),
      final: fc.option(valuePick, { nil: undefined }),
    }),
    fc.record({ kind: fc.constant("present"), attribute }),
    fc.record({ kind: fc.constant("extensible"), value: text(0, 2) }),
    fc.record({ kind: fc.constant("not"), filter: tie("template") }),
    fc.record({
      kind: fc.constantFrom("and", "or"),
      filters: fc.array(tie("template"), { maxLength: 3 }),
    }),
    // AND and OR twice as often as each item: plans are about how they combine.
    fc.record({
      kind: fc.constantFrom("and", "or"),
      filters: fc.array(tie("template"), { minLength: 2, maxLength: 3 }),
    }),
  ) as fc.Arbitrary<Template>,
}));

function resolveValue(book: AddressBook, pick: ValuePick): string {
  if (typeof pick === "string") return pick;
  const [which, field, start, length, upper] = pick;
  const { mail, cn, sn, givenName } = entryAttributes(book, which % book.size);
  const values = [mail, cn, sn, givenName ?? cn];
  const value = values[field % values.length];
  // Sometimes the whole value, for equality; else a piece of it.
  const piece = length === 0
    ? value
    : value.slice(start % value.length, (start % value.length) + length);
  return upper ? piece.toUpperCase() : piece;
}

function resolve(book: AddressBook, template: Template): LdapFilter {
  switch (template.kind) {
    case "and":
    case "or":
      return {
        kind: template.kind,
        filters: template.filters.map((child) => resolve(book, child)),
      };
    case "not":
      return { kind: "not", filter: resolve(book, template.filter) };
    case "substrings":
      return {
        kind: "substrings",
        attribute: template.attribute,
        initial: template.initial === undefined ? undefined : resolveValue(book, template.initial),
        any: template.any.map((pick) => resolveValue(book, pick)),
        final: template.final === undefined ? undefined : resolveValue(book, template.final),
      };
    case "present":
      return template;
    case "extensible":
      return { kind: "extensible", value: template.value, dnAttributes: false };
    default:
      return {
        kind: template.kind,
        attribute: template.attribute,
        value: resolveValue(book, template.value),
      };
  }
}

Deno.test("entryAttributes is the book's entry with nameParts' split, on random books", () => {
  fc.assert(
    fc.property(rowsOf(1, 30), (rows) => {
      const book = bookOf(rows);
      for (let entry = 0; entry < book.size; entry++) {
        const { email, name, givenName, surname } = book.entry(entry);
        const parts = nameParts(name, givenName, surname);
        const expected: Record<string, unknown> = {
          mail: email,
          cn: name,
          displayName: name,
          sn: parts.surname,
          objectClass: OBJECT_CLASSES,
        };
        if (parts.givenName !== undefined) expected.givenName = parts.givenName;
        assert.deepEqual(entryAttributes(book, entry), expected);
      }
    }),
    { numRuns: 200 },
  );
});

/** The property: the search, with or without the index and with any limit, is the naive filter. */
function searchIsNaive(book: AddressBook, template: Template, limit: number): void {
  const index = TextIndex.build(book);
  const filter = resolve(book, template);
  const expected = naiveSearch(book, filter);
  const withIndex = searchBook(book, index, { filter }, Infinity);
  assert.deepEqual(withIndex.entries, expected, JSON.stringify(filter));
  assert.deepEqual(searchBook(book, undefined, { filter }, Infinity).entries, expected);
  const limited = searchBook(book, index, { filter }, limit);
  assert.deepEqual(limited.entries, expected.slice(0, limit));
  assert.equal(limited.more, expected.length > limit);
}

Deno.test("searchBook equals evaluating the filter on every entry, on books of up to 200 entries", () => {
  fc.assert(
    fc.property(rowsOf(50, 200), template, fc.nat({ max: 20 }), (rows, template, limit) => {
      searchIsNaive(bookOf(rows), template, limit);
    }),
    { numRuns: 80 },
  );
});

Deno.test("searchBook equals evaluating the filter on every entry, with the index and without, at any limit", () => {
  fc.assert(
    fc.property(rowsOf(1, 30), template, fc.nat({ max: 5 }), (rows, template, limit) => {
      searchIsNaive(bookOf(rows), template, limit);
    }),
    { numRuns: 400 },
  );
});
