import assert from "node:assert/strict";
import fc from "fast-check";
import { type AddressBook, AddressBookBuilder } from "./addressbook.ts";
import { emailProblem, normalizeEmail } from "./email.ts";
import {
  ArrayCursor,
  type CandidateCursor,
  DEFAULT_STOP_FRACTION,
  drain,
  foldSimpleUtf8,
  foldText,
  IntersectCursor,
  SKIP_BLOCK,
  TextIndex,
  UnionCursor,
} from "./text_index.ts";
import { splitName } from "../wire/ldap_search.ts";
import { makeBook, PEOPLE } from "../testing/books.ts";

/** An entry as the tests build it: email, name and maybe the source's parts. */
type Row = [email: string, name: string, givenName?: string, surname?: string];

function bookOf(rows: readonly Row[]): AddressBook {
  const builder = new AddressBookBuilder();
  for (const [email, name, givenName, surname] of rows) {
    assert.equal(builder.add(email, name, givenName, surname), -1, email);
  }
  return builder.build();
}

/** Every value of an entry a search may look in: the indexed ones and the name's split parts. */
function valuesOf(book: AddressBook, entry: number): string[] {
  const { email, name, givenName, surname } = book.entry(entry);
  const split = splitName(name);
  return [email, name, givenName, surname, split.givenName, split.surname]
    .filter((value): value is string => value !== undefined);
}

/** The entries with one value containing every fragment, by a scan: what the index must cover. */
function naiveMatches(book: AddressBook, fragments: readonly string[]): number[] {
  const folded = fragments.map(foldText);
  const found = [];
  for (let entry = 0; entry < book.size; entry++) {
    const values = valuesOf(book, entry).map(foldText);
    if (values.some((value) => folded.every((fragment) => value.includes(fragment)))) {
      found.push(entry);
    }
  }
  return found;
}

function emailsOf(book: AddressBook, entries: Uint32Array | undefined): string[] | undefined {
  return entries === undefined ? undefined : [...entries].map((entry) => book.entry(entry).email);
}

// --- Folding ---

Deno.test("foldText lower-cases beyond ASCII, composes (NFC) and folds the final sigma", () => {
  assert.equal(foldText("ADA Lovelace"), "ada lovelace");
  assert.equal(foldText("ZOË"), "zoë");
  assert.equal(foldText("Zoe\u0308"), "zoë"); // decomposed in, composed out
  assert.equal(foldText("ΠΑΠΠΆΣ"), "παππάσ");
  assert.equal(foldText("παππάς"), "παππάσ");
  assert.equal(foldText("ÑÚÑEZ Østergaard"), "ñúñez østergaard");
  assert.equal(foldText("STRAẞE"), "straße"); // lower-casing, not full folding: ß stays
  assert.equal(foldText(""), "");
});

Deno.test("foldText is idempotent", () => {
  fc.assert(fc.property(fc.string({ unit: "grapheme" }), (text) => {
    assert.equal(foldText(foldText(text)), foldText(text));
  }));
});

/** foldSimpleUtf8 on a string: its folded text, or undefined when it declines. */
function foldSimply(text: string): string | undefined {
  const bytes = new TextEncoder().encode(text);
  const out = new Uint8Array(bytes.length);
  const length = foldSimpleUtf8(bytes, 0, bytes.length, out);
  return length < 0 ? undefined : new TextDecoder().decode(out.subarray(0, length));
}

Deno.test("foldSimpleUtf8 folds ASCII and two-byte letters as foldText does, and declines the rest", () => {
  assert.equal(foldSimply("ZOË Ñúñez-Østergaard"), "zoë ñúñez-østergaard");
  assert.equal(foldSimply("ΑΛΈΞΑΝΔΡΟΣ ΠΑΠΠΆΣ"), "αλέξανδροσ παππάσ");
  assert.equal(foldSimply("Иван Петров"), "иван петров");
  assert.equal(foldSimply("Zoe\u0308"), undefined); // a mark: NFC would compose it
  assert.equal(foldSimply("İstanbul"), undefined); // İ folds to two characters
  assert.equal(foldSimply("李小龙"), undefined); // three bytes
  assert.equal(foldSimply("🚀"), undefined);
  // Every two-byte character, alone and between others, agrees with foldText or is declined.
  for (let point = 0x80; point < 0x800; point++) {
    for (const text of [String.fromCharCode(point), `Ab${String.fromCharCode(point)}Σ é`]) {
      const folded = foldSimply(text);
      if (folded !== undefined) assert.equal(folded, foldText(text), `U+${point.toString(16)}`);
    }
  }
});

Deno.test("foldSimpleUtf8 agrees with foldText on random text whenever it folds", () => {
  const chars = fc.oneof(
    fc.integer({ min: 0, max: 0x7ff }).map((point) => String.fromCharCode(point)),
    fc.constantFrom("\u0301", "\u0308", "Σ", "ς", "İ", "中"),
  );
  fc.assert(
    fc.property(fc.array(chars, { maxLength: 10 }).map((parts) => parts.join("")), (text) => {
      const folded = foldSimply(text);
      if (folded !== undefined) assert.equal(folded, foldText(text));
    }),
    { numRuns: 3000 },
  );
});

// --- Candidates on a small book ---

Deno.test("candidates finds entries by a fragment of the email, name or its words, in any case", () => {
  const book = makeBook();
  const index = TextIndex.build(book);
  assert.deepEqual(emailsOf(book, index.candidates(["LOVELACE"])), ["ada@example.com"]);
  assert.deepEqual(emailsOf(book, index.candidates(["navy"])), ["grace.hopper@navy.example"]);
  assert.deepEqual(emailsOf(book, index.candidates(["MÖLL"])), ["jürgen@beispiel.example"]);
  assert.deepEqual(emailsOf(book, index.candidates(["jürg", "beisp"])), [
    "jürgen@beispiel.example",
  ]);
  assert.deepEqual(emailsOf(book, index.candidates(["🚀"])), ["margaret@apollo.example"]);
});

Deno.test("candidates is empty when a fragment holds a trigram no entry has", () => {
  const book = makeBook();
  const index = TextIndex.build(book);
  assert.deepEqual(index.candidates(["qqq"]), new Uint32Array(0));
  assert.deepEqual(index.candidates(["ada", "turing"]), new Uint32Array(0));
});

Deno.test("candidates answers one- and two-byte fragments from the keys that start with them", () => {
  const book = makeBook();
  const index = TextIndex.build(book);
  assert.deepEqual(emailsOf(book, index.candidates(["ö"])), ["jürgen@beispiel.example"]);
  const withG = index.candidates(["g"]);
  assert.deepEqual(new Set(emailsOf(book, withG)), new Set(naiveEmails(book, ["g"])));
  // A two-byte fragment at the very end of a value is found thanks to the padding.
  assert.deepEqual(emailsOf(book, index.candidates(["ds"])), ["linus+kernel@example.org"]);
});

function naiveEmails(book: AddressBook, fragments: string[]): string[] {
  return naiveMatches(book, fragments).map((entry) => book.entry(entry).email);
}

Deno.test("candidates declines (undefined) when there is nothing to narrow by", () => {
  const index = TextIndex.build(makeBook());
  assert.equal(index.candidates([]), undefined);
  assert.equal(index.candidates([""]), undefined);
});

Deno.test("candidates covers the source's given name and surname, not only the name", () => {
  const book = bookOf([
    ["ada@example.com", "Ada Lovelace", "Augusta Ada", "King"],
    ["alan@example.com", "Alan Turing"],
  ]);
  const index = TextIndex.build(book);
  assert.deepEqual(emailsOf(book, index.candidates(["augusta"])), ["ada@example.com"]);
  assert.deepEqual(emailsOf(book, index.candidates(["KING"])), ["ada@example.com"]);
});

Deno.test("candidates is ascending and covers every match on the test book, for every substring", () => {
  const book = makeBook();
  const index = TextIndex.build(book);
  for (const [email, name] of PEOPLE) {
    for (const value of [email, name]) {
      for (let start = 0; start < value.length; start++) {
        for (let end = start + 1; end <= value.length && end <= start + 6; end++) {
          const fragment = value.slice(start, end).toUpperCase();
          const found = index.candidates([fragment]);
          if (found === undefined) continue;
          assertAscending(found);
          for (const entry of naiveMatches(book, [fragment])) {
            assert.ok(found.includes(entry), `${fragment} in ${value}`);
          }
        }
      }
    }
  }
});

function assertAscending(entries: Uint32Array): void {
  for (let i = 1; i < entries.length; i++) assert.ok(entries[i - 1] < entries[i]);
}

// --- Stop-grams ---

/** A book of `count` people at one domain, so its domain's trigrams are in every entry. */
function oneDomainBook(count: number): AddressBook {
  const builder = new AddressBookBuilder(count);
  for (let i = 0; i < count; i++) builder.add(`person${i}@example.com`, `Person ${i}`);
  return builder.build();
}

Deno.test("a trigram in most entries has no stored list, and a fragment made only of such is a scan", () => {
  const book = oneDomainBook(10_000);
  const index = TextIndex.build(book);
  assert.ok(index.gramCounts.stopped > 5, JSON.stringify(index.gramCounts));
  assert.equal(index.candidates(["example"]), undefined);
  // A stop-gram beside a selective one is just left out.
  assert.deepEqual(emailsOf(book, index.candidates(["on1234@ex"])), ["person1234@example.com"]);
  const everything = TextIndex.build(book, { stopFraction: 1 });
  assert.equal(everything.gramCounts.stopped, 0);
  assert.equal(everything.candidates(["example"])?.length, 10_000);
  assert.ok(everything.byteLength > index.byteLength);
});

Deno.test("a short fragment whose keys hold too many entries is a scan", () => {
  const index = TextIndex.build(oneDomainBook(10_000));
  assert.equal(index.candidates(["e"]), undefined);
  // "n1" starts fewer trigrams (n1@, n10, ...) than the longest stored list holds entries.
  const withN1 = index.candidates(["n1"]);
  assert.equal(withN1?.length, 1111);
});

Deno.test("TextIndex.build refuses a stop fraction outside (0, 1]", () => {
  const book = makeBook();
  for (const stopFraction of [0, -1, 1.5, NaN]) {
    assert.throws(() => TextIndex.build(book, { stopFraction }), RangeError);
  }
  assert.ok(DEFAULT_STOP_FRACTION > 0 && DEFAULT_STOP_FRACTION <= 1);
});

// --- The property ---

/** Characters that fold in interesting ways: cases, accents composed and not, sigmas, wide ones. */
const ALPHABET = [
  "a",
  "b",
  "A",
  "B",
  "é",
  "É",
  "e\u0301",
  "\u0301",
  "ë",
  "Ë",
  "σ",
  "Σ",
  "ς",
  "ß",
  "ẞ",
  "İ",
  "ǅ",
  "中",
  "😀",
  ".",
  "-",
];

const text = (min: number, max: number, spaces: boolean) =>
  fc.array(fc.constantFrom(...ALPHABET, ...(spaces ? [" ", "  "] : [])), {
    minLength: min,
    maxLength: max,
  }).map((parts) => parts.join(""));

const rows = fc.uniqueArray(
  fc.tuple(
    text(1, 6, false),
    text(1, 12, true),
    fc.option(text(1, 5, true), { nil: undefined }),
    fc.option(text(1, 5, true), { nil: undefined }),
  ).map(([local, name, givenName, surname]): Row => [
    normalizeEmail(`${local}@x.example`),
    name,
    givenName,
    surname,
  ]).filter(([email, name]) => emailProblem(email) === undefined && name.trim() !== ""),
  { selector: ([email]) => email, minLength: 1, maxLength: 25 },
);

Deno.test("candidates is a superset of a scan's matches, ascending, on random books and fragments", () => {
  fc.assert(
    fc.property(
      rows,
      fc.array(
        fc.oneof(
          text(0, 4, true),
          fc.tuple(fc.nat(), fc.nat(), fc.nat(), fc.boolean()),
        ),
        { minLength: 1, maxLength: 3 },
      ),
      (rows, picks) => {
        const book = bookOf(rows);
        const index = TextIndex.build(book);
        // A fragment is random text, or a piece of some entry's value, maybe upper-cased.
        const fragments = picks.map((pick) => {
          if (typeof pick === "string") return pick;
          const [which, from, length, upper] = pick;
          const values = valuesOf(book, which % book.size);
          const value = values[from % values.length];
          const start = from % value.length;
          const piece = value.slice(start, start + 1 + (length % 5));
          return upper ? piece.toUpperCase() : piece;
        });
        const found = index.candidates(fragments);
        if (found === undefined) return;
        assertAscending(found);
        assert.ok(found.every((entry) => entry < book.size));
        const truth = naiveMatches(book, fragments);
        for (const entry of truth) {
          assert.ok(found.includes(entry), `entry ${entry} for ${JSON.stringify(fragments)}`);
        }
      },
    ),
    { numRuns: 300 },
  );
});

// --- Sharing ---

Deno.test("an index wrapped from its shared buffers answers the same, and its buffers are shared", () => {
  const book = makeBook();
  const index = TextIndex.build(book);
  const again = TextIndex.fromShared(index.toShared());
  assert.deepEqual(again.candidates(["hopper"]), index.candidates(["hopper"]));
  const { keys, counts, starts, postings } = index.toShared();
  for (const array of [keys, counts, starts, postings]) {
    assert.ok(array.buffer instanceof SharedArrayBuffer);
  }
});

Deno.test("an index posted to a worker answers there without a copy", async () => {
  const book = makeBook();
  const index = TextIndex.build(book);
  const moduleUrl = new URL("./text_index.ts", import.meta.url).href;
  const code = `import { TextIndex } from ${JSON.stringify(moduleUrl)};
    self.onmessage = (event) => {
      const index = TextIndex.fromShared(event.data);
      self.postMessage([...index.candidates(["turing"])]);
    };`;
  const url = URL.createObjectURL(new Blob([code], { type: "application/javascript" }));
  const worker = new Worker(url, { type: "module" });
  try {
    const answer = new Promise((resolve) => worker.onmessage = (event) => resolve(event.data));
    worker.postMessage(index.toShared());
    assert.deepEqual(await answer, [...index.candidates(["turing"])!]);
  } finally {
    worker.terminate();
    URL.revokeObjectURL(url);
  }
});

// --- Cursors ---

const sortedSet = fc.uniqueArray(fc.nat({ max: 200 }), { maxLength: 40 })
  .map((values) => Uint32Array.from(values.sort((a, b) => a - b)));

/** Reads a cursor with seeks to nondecreasing targets, as a search does, jumping ahead by `jumps`. */
function readWithJumps(cursor: CandidateCursor, jumps: number[]): number[] {
  const found: number[] = [];
  let target = 0;
  for (let step = 0;; step++) {
    const entry = cursor.seek(target);
    if (entry < 0) return found;
    assert.ok(entry >= target);
    found.push(entry);
    target = entry + 1 + (jumps[step % Math.max(1, jumps.length)] ?? 0);
  }
}

Deno.test("intersection and union cursors give what set operations give, at any seeks", () => {
  fc.assert(
    fc.property(
      fc.array(sortedSet, { minLength: 1, maxLength: 5 }),
      fc.array(fc.nat({ max: 10 }), { maxLength: 5 }),
      (sets, jumps) => {
        const intersection = [...sets[0]].filter((value) =>
          sets.every((set) => set.includes(value))
        );
        const union = [...new Set(sets.flatMap((set) => [...set]))].sort((a, b) => a - b);
        const cursors = () => sets.map((set) => new ArrayCursor(set));
        // Reading with jumps gives what the full result gives past each target.
        const expectJumps = (all: number[]) =>
          readWithJumps(new ArrayCursor(Uint32Array.from(all)), jumps);
        assert.deepEqual(
          readWithJumps(new IntersectCursor(cursors()), jumps),
          expectJumps(intersection),
        );
        assert.deepEqual(readWithJumps(new UnionCursor(cursors(), 201), jumps), expectJumps(union));
        assert.deepEqual([...drain(new UnionCursor(cursors(), 201))], union);
        assert.ok(new UnionCursor(cursors(), 201).estimate >= union.length);
        assert.ok(new IntersectCursor(cursors()).estimate >= intersection.length);
      },
    ),
  );
});

// --- Skip pointers ---

/** The first of ascending `entries` not below `target`, or -1: what a sequential decode finds. */
function firstNotBelow(entries: readonly number[], target: number): number {
  return entries.find((entry) => entry >= target) ?? -1;
}

/** Gaps of every varint length: runs (1), one byte, two, three and four (up to 2^22). */
const gap = fc.oneof(
  { arbitrary: fc.integer({ min: 1, max: 3 }), weight: 4 },
  { arbitrary: fc.integer({ min: 1, max: 127 }), weight: 4 },
  { arbitrary: fc.integer({ min: 128, max: 16_383 }), weight: 2 },
  { arbitrary: fc.integer({ min: 16_384, max: 2 ** 21 - 1 }), weight: 1 },
  { arbitrary: fc.integer({ min: 2 ** 21, max: 2 ** 22 }), weight: 1 },
);

/** An ascending list from none to several blocks long, as its gaps from -1 (the first may be 0). */
const postingList = fc.array(gap, { maxLength: 6 * SKIP_BLOCK + 3, size: "max" }).map((gaps) => {
  let entry = -1;
  return gaps.map((gap) => entry += gap);
});

/** Ascending targets: any numbers, and entries of `list` (block ends among them) give or take one. */
function targetsFor(list: readonly number[]): fc.Arbitrary<number[]> {
  const last = list.at(-1) ?? 0;
  const near = list.length === 0
    ? fc.nat(10)
    : fc.tuple(fc.nat(list.length - 1), fc.integer({ min: -1, max: 1 }))
      .map(([i, delta]) => Math.max(0, list[i] + delta));
  return fc.array(fc.oneof(near, fc.nat(last + 2)), { maxLength: 40, size: "max" })
    .map((targets) => targets.sort((a, b) => a - b));
}

Deno.test("a list cursor's seeks over blocks give what a sequential decode gives, at any targets", () => {
  fc.assert(
    fc.property(
      postingList.chain((list) => fc.tuple(fc.constant(list), targetsFor(list))),
      ([list, targets]) => {
        const index = TextIndex.fromLists((list.at(-1) ?? 0) + 1, new Map([["abc", list]]));
        const cursor = index.cursor(["abc"]);
        if (list.length === 0) {
          assert.deepEqual(cursor === undefined ? [] : [...drain(cursor)], []);
          return;
        }
        const found = targets.map((target) => cursor!.seek(target));
        assert.deepEqual(found, targets.map((target) => firstNotBelow(list, target)));
        assert.deepEqual([...drain(index.cursor(["abc"])!)], list);
      },
    ),
    { numRuns: 200 },
  );
});

/** Two to four lists that share entries: each keeps some of one list's entries (most, or a few). */
const overlappingLists = fc.tuple(
  postingList,
  fc.array(fc.array(fc.nat(3), { minLength: 1, maxLength: 50 }), { minLength: 2, maxLength: 4 }),
).map(([base, keeps]) => keeps.map((keep) => base.filter((_, i) => keep[i % keep.length] > 0)));

Deno.test("intersecting lists with skips gives the set intersection, at any seeks", () => {
  fc.assert(
    fc.property(
      overlappingLists,
      fc.array(fc.nat({ max: 5000 }), { maxLength: 5 }),
      (lists, jumps) => {
        const grams = ["abc", "bcd", "cde", "def"].slice(0, lists.length);
        const size = Math.max(1, ...lists.map((list) => (list.at(-1) ?? 0) + 1));
        const index = TextIndex.fromLists(size, new Map(grams.map((gram, i) => [gram, lists[i]])));
        const cursors = grams.map((gram) => index.cursor([gram])!);
        const common = lists[0].filter((entry) => lists.every((list) => list.includes(entry)));
        assert.deepEqual(
          readWithJumps(new IntersectCursor(cursors), jumps),
          readWithJumps(new ArrayCursor(Uint32Array.from(common)), jumps),
        );
      },
    ),
    { numRuns: 100 },
  );
});

Deno.test("each whole block of a long list has a skip: its last entry and where the next block starts", () => {
  const list = Array.from({ length: 3 * SKIP_BLOCK + 5 }, (_, i) => i * 200 + (i % 7));
  const short = Array.from({ length: SKIP_BLOCK }, (_, i) => 2 * i);
  const index = TextIndex.fromLists(
    list.at(-1)! + 1,
    new Map([["abc", short], ["xyz", list], ["exa", list.slice(0, 2 * SKIP_BLOCK)]]),
  );
  const { keys, starts, postings, skipStarts, skips } = index.toShared();
  const skipsOf = (gram: string) => {
    const d = keys.indexOf(
      (gram.charCodeAt(0) << 16) | (gram.charCodeAt(1) << 8) | gram.charCodeAt(2),
    );
    return { d, first: skipStarts[d], count: skipStarts[d + 1] - skipStarts[d] };
  };
  assert.equal(skipsOf("abc").count, 0); // one block: nothing to skip
  assert.equal(skipsOf("exa").count, 2); // the last points at the list's end
  const { d, first, count } = skipsOf("xyz");
  assert.equal(count, 3);
  for (let k = 0; k < count; k++) {
    const [last, offset] = skips.subarray(2 * (first + k), 2 * (first + k) + 2);
    assert.equal(last, list[(k + 1) * SKIP_BLOCK - 1]);
    // The next block's first gap, decoded at the offset, leads from the last entry to its first.
    let gapThere = 0;
    for (let shift = 1, at = offset;; shift *= 128) {
      gapThere += (postings[at] & 0x7f) * shift;
      if ((postings[at++] & 0x80) === 0) break;
    }
    assert.equal(last + gapThere, list[(k + 1) * SKIP_BLOCK]);
    assert.ok(offset > starts[d] && offset < starts[d + 1]);
  }
  assert.equal(skips.length, 2 * skipStarts[keys.length]);
});

Deno.test("TextIndex.fromLists refuses keys that are not three bytes and lists that are not ascending", () => {
  assert.throws(() => TextIndex.fromLists(10, new Map([["ab", [1]]])), RangeError);
  assert.throws(() => TextIndex.fromLists(10, new Map([["abc", [2, 2]]])), RangeError);
  assert.throws(() => TextIndex.fromLists(10, new Map([["abc", [10]]])), RangeError);
  assert.throws(() => TextIndex.fromLists(-1, new Map()), RangeError);
});

Deno.test("an index with skips posted to a worker answers there as here, from shared buffers", async () => {
  const book = oneDomainBook(20_000);
  const index = TextIndex.build(book, { stopFraction: 1 });
  const shared = index.toShared();
  assert.ok(shared.skipStarts[shared.keys.length] > 100, "the book's lists have skips");
  for (const array of [shared.skipStarts, shared.skips]) {
    assert.ok(array.buffer instanceof SharedArrayBuffer);
  }
  const fragments = [["n1"], ["on19"], ["on1", "99"], ["rson7", "@"], ["example"], ["15@ex"]];
  const moduleUrl = new URL("./text_index.ts", import.meta.url).href;
  const code = `import { TextIndex } from ${JSON.stringify(moduleUrl)};
    self.onmessage = (event) => {
      const index = TextIndex.fromShared(event.data.index);
      self.postMessage(event.data.fragments.map((fragment) => [...index.candidates(fragment)]));
    };`;
  const url = URL.createObjectURL(new Blob([code], { type: "application/javascript" }));
  const worker = new Worker(url, { type: "module" });
  try {
    const answer = new Promise((resolve) => worker.onmessage = (event) => resolve(event.data));
    worker.postMessage({ index: shared, fragments });
    const here = fragments.map((fragment) => [...index.candidates(fragment)!]);
    assert.deepEqual(await answer, here);
    // And what the index finds is what a scan finds, for these fragments of a one-domain book.
    fragments.forEach((fragment, i) => {
      const truth = naiveMatches(book, fragment);
      assert.ok(truth.every((entry) => here[i].includes(entry)), fragment.join());
    });
  } finally {
    worker.terminate();
    URL.revokeObjectURL(url);
  }
});
