import assert from "node:assert/strict";
import fc from "fast-check";
import {
  AddressBook,
  AddressBookBuilder,
  type BookEntry,
  INVALID_QUERY,
  LOOKUP_BATCH_MAX,
  LookupResults,
  NOT_FOUND,
} from "./addressbook.ts";
import { emailProblem, normalizeEmail } from "./email.ts";
import { KEY_LENGTH_MASK, recordBytes, writeRecord } from "./records.ts";
import { decodeUtf8 } from "../common/utf8.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function bookOf(entries: [string, string][]): AddressBook {
  const builder = new AddressBookBuilder();
  for (const [email, name] of entries) assert.equal(builder.add(email, name), -1, email);
  return builder.build();
}

/** What the book says to a query as it arrived: the name found, NOT_FOUND or INVALID_QUERY. */
function ask(book: AddressBook, query: string | Uint8Array): string | number {
  const bytes = typeof query === "string" ? encoder.encode(query) : query;
  const entry = book.lookup(bytes, 0, bytes.length);
  return entry >= 0 ? book.entry(entry).name : entry;
}

/** The name of an entry, read the way a front end reads it: bytes from `text`. */
function nameBytes(book: AddressBook, entry: number): Uint8Array {
  return book.text.subarray(book.nameStart(entry), book.nameEnd(entry));
}

const found = (name: string): string => name;

const SAMPLE: [string, string][] = [
  ["ada@example.com", "Ada Lovelace"],
  ["alan@example.com", "Alan Turing"],
  ["zoë@example.com", "Zoë Ñúñez"],
  ["用户@例子.广告", "李小龍"],
];

// --- The builder ---

Deno.test("AddressBookBuilder.add returns -1 for a new key and counts it", () => {
  const builder = new AddressBookBuilder();
  assert.equal(builder.size, 0);
  assert.equal(builder.add("ada@example.com", "Ada Lovelace"), -1);
  assert.equal(builder.add("alan@example.com", "Alan Turing"), -1);
  assert.equal(builder.size, 2);
});

Deno.test("AddressBookBuilder.add returns the index of the entry that already has the key", () => {
  const builder = new AddressBookBuilder();
  builder.add("ada@example.com", "Ada Lovelace");
  builder.add("alan@example.com", "Alan Turing");
  builder.add("grace@example.com", "Grace Hopper");
  assert.equal(builder.add("alan@example.com", "Someone Else"), 1);
  assert.equal(builder.add("ada@example.com", "Another"), 0);
  assert.equal(builder.size, 3);
  // The duplicate added nothing: the first name stands.
  assert.equal(builder.build().get("alan@example.com"), "Alan Turing");
});

Deno.test("AddressBookBuilder.setName replaces a name; the last one set wins", () => {
  const builder = new AddressBookBuilder();
  builder.add("ada@example.com", "Ada Lovelace");
  builder.add("alan@example.com", "Alan Turing");
  const index = builder.add("alan@example.com", "A. M. Turing");
  builder.setName(index, "A. M. Turing");
  builder.setName(index, "Alan Mathison Turing");
  const book = builder.build();
  assert.equal(book.size, 2);
  assert.equal(book.get("alan@example.com"), "Alan Mathison Turing");
  assert.equal(book.get("ada@example.com"), "Ada Lovelace");
  assert.deepEqual(ask(book, "ALAN@example.com"), found("Alan Mathison Turing"));
});

Deno.test("AddressBookBuilder.build keeps only the final name of each entry", () => {
  const builder = new AddressBookBuilder();
  builder.add("ada@example.com", "Ada Lovelace");
  builder.add("alan@example.com", "Alan Turing");
  builder.setName(0, "A much longer name that replaced the first one");
  builder.setName(1, "AT");
  const book = builder.build();
  assert.equal(book.get("ada@example.com"), "A much longer name that replaced the first one");
  assert.equal(book.get("alan@example.com"), "AT");
  const record = (email: string, name: string) =>
    (8 + encoder.encode(email).length + encoder.encode(name).length + 3) & ~3;
  assert.equal(
    book.text.length,
    record("ada@example.com", "A much longer name that replaced the first one") +
      record("alan@example.com", "AT"),
    "the records hold the final names only",
  );
});

Deno.test("AddressBookBuilder builds an empty book that finds nothing", () => {
  const book = new AddressBookBuilder().build();
  assert.equal(book.size, 0);
  assert.equal(book.get("ada@example.com"), undefined);
  assert.deepEqual(ask(book, "ada@example.com"), NOT_FOUND);
  assert.deepEqual(ask(book, "zoë@example.com"), NOT_FOUND);
});

Deno.test("AddressBookBuilder stores names of any size and script exactly", () => {
  const names = [
    "",
    "Zoë",
    "李小龍",
    "🦀 Ferris",
    "x".repeat(20_000),
    "é".repeat(10_000),
    "Ada\u0000Lovelace",
  ];
  const book = bookOf(names.map((name, i) => [`person${i}@example.com`, name]));
  names.forEach((name, i) => {
    assert.equal(book.get(`person${i}@example.com`), name);
    assert.deepEqual(ask(book, `PERSON${i}@example.com`), found(name));
  });
});

Deno.test("AddressBookBuilder encodes a lone surrogate in a name as U+FFFD, as TextEncoder does", () => {
  const book = bookOf([["a@b", "x\ud800y\udc00z"]]);
  assert.equal(book.get("a@b"), "x\ufffdy\ufffdz");
});

Deno.test("property: the builder's UTF-8 matches TextEncoder for any key and name", () => {
  fc.assert(
    fc.property(
      fc.uniqueArray(
        fc.tuple(fc.string({ unit: "binary", minLength: 1 }), fc.string({ unit: "binary" })),
        { selector: ([key]) => decodeUtf8(encoder.encode(key)), maxLength: 20 },
      ),
      (entries) => {
        const builder = new AddressBookBuilder();
        for (const [key, name] of entries) assert.equal(builder.add(key, name), -1);
        const book = builder.build();
        for (const [key, name] of entries) {
          const entry = book.find(encoder.encode(key));
          assert.ok(entry >= 0, `key ${JSON.stringify(key)} is found by its TextEncoder bytes`);
          assert.deepEqual(
            nameBytes(book, entry),
            encoder.encode(name),
          );
        }
      },
    ),
  );
});

// --- Lookups ---

Deno.test("AddressBook.get trims and lower-cases the email before looking it up", () => {
  const book = bookOf(SAMPLE);
  assert.equal(book.size, SAMPLE.length);
  assert.equal(book.get("ada@example.com"), "Ada Lovelace");
  assert.equal(book.get("  ADA@Example.COM\t"), "Ada Lovelace");
  assert.equal(book.get("\u3000Alan@EXAMPLE.com\n"), "Alan Turing");
  assert.equal(book.get("grace@example.com"), undefined);
  assert.equal(book.get("ada@example.co"), undefined);
  assert.equal(book.get(""), undefined);
});

Deno.test("AddressBook finds a key with non-ASCII letters whatever their case", () => {
  const book = bookOf(SAMPLE);
  assert.equal(book.get("ZOË@example.com"), "Zoë Ñúñez");
  assert.equal(book.get("zoë@example.com"), "Zoë Ñúñez");
  assert.deepEqual(ask(book, "ZOË@example.com"), found("Zoë Ñúñez"));
  assert.deepEqual(ask(book, " Zoë@EXAMPLE.com "), found("Zoë Ñúñez"));
  assert.deepEqual(ask(book, "用户@例子.广告"), found("李小龍"));
  // A different letter is a different address.
  assert.deepEqual(ask(book, "zoe@example.com"), NOT_FOUND);
});

Deno.test("AddressBook with 100,000 entries finds every key and no absent key", () => {
  const count = 100_000;
  const builder = new AddressBookBuilder();
  for (let i = 0; i < count; i++) {
    assert.equal(builder.add(`user${i}@example.com`, `Name ${i}`), -1);
  }
  const book = builder.build();
  assert.equal(book.size, count);
  for (let i = 0; i < count; i++) {
    const reply = ask(book, `user${i}@example.com`);
    if (reply !== `Name ${i}`) {
      assert.fail(`user${i}@example.com gave ${JSON.stringify(reply)}`);
    }
    const absent = ask(book, `user${i}@example.org`);
    if (absent !== NOT_FOUND) assert.fail(`user${i}@example.org was found`);
  }
  for (let i = count; i < count + 1000; i++) {
    assert.equal(ask(book, `user${i}@example.com`), NOT_FOUND);
    assert.equal(book.get(`USER${i - count}@EXAMPLE.COM`), `Name ${i - count}`);
  }
});

// --- Sharing ---

Deno.test("AddressBook.toShared gives SharedArrayBuffer views that fromShared answers from alike", () => {
  const book = bookOf(SAMPLE);
  const shared = book.toShared();
  for (
    const view of [
      shared.slots,
      shared.records,
      shared.recordStarts,
    ]
  ) {
    assert.ok(view.buffer instanceof SharedArrayBuffer);
  }
  assert.equal(shared.size, SAMPLE.length);
  const copy = AddressBook.fromShared(shared);
  assert.equal(copy.size, book.size);
  for (
    const query of [
      "ada@example.com",
      "ZOË@example.com",
      "nobody@example.com",
      "bad",
      "用户@例子.广告",
    ]
  ) {
    assert.deepEqual(ask(copy, query), ask(book, query));
    const entry = book.lookup(encoder.encode(query), 0, encoder.encode(query).length);
    if (entry >= 0) assert.deepEqual(copy.entry(entry), book.entry(entry));
    assert.equal(copy.get(query), book.get(query));
  }
});

Deno.test("AddressBook shared with a real worker thread answers there as it does here", async () => {
  const dir = await Deno.makeTempDir({ prefix: "addressbook_test_" });
  try {
    // JavaScript, so the worker is not type-checked against the window globals.
    const workerPath = `${dir}/worker.js`;
    const moduleUrl = new URL("./addressbook.ts", import.meta.url).href;
    await Deno.writeTextFile(
      workerPath,
      `import { AddressBook } from ${JSON.stringify(moduleUrl)};
self.onmessage = (event) => {
  const { data, queries } = event.data;
  const book = AddressBook.fromShared(data);
  const shared = data.records.buffer instanceof SharedArrayBuffer;
  const answers = queries.map((q) => {
    const bytes = new TextEncoder().encode(q);
    const entry = book.lookup(bytes, 0, bytes.length);
    return entry >= 0 ? book.entry(entry) : entry;
  });
  self.postMessage({ shared, size: book.size, answers });
};
`,
    );
    const builder = new AddressBookBuilder();
    for (const [email, name] of SAMPLE) builder.add(email, name);
    builder.add("grace@example.com", "Grace Hopper", "Grace", "Hopper");
    const book = builder.build();
    const queries = [
      "ada@example.com",
      "ZOË@example.com",
      "GRACE@example.com",
      "nobody@example.com",
      "bad",
    ];
    const worker = new Worker(new URL(`file://${workerPath}`), { type: "module" });
    try {
      type Answer = BookEntry | number;
      const result = await new Promise<{ shared: boolean; size: number; answers: Answer[] }>(
        (resolve, reject) => {
          worker.onmessage = (event) => resolve(event.data);
          worker.onerror = (event) => {
            event.preventDefault();
            reject(new Error(event.message));
          };
          worker.postMessage({ data: book.toShared(), queries });
        },
      );
      assert.equal(result.shared, true);
      assert.equal(result.size, SAMPLE.length + 1);
      assert.deepEqual(
        result.answers,
        queries.map((q) => {
          const entry = book.lookup(encoder.encode(q), 0, encoder.encode(q).length);
          return entry >= 0 ? book.entry(entry) : entry;
        }),
      );
    } finally {
      worker.terminate();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("AddressBook.fingerprint is 64 hex digits, carried through toShared and fromShared", () => {
  const book = bookOf(SAMPLE);
  assert.match(book.fingerprint, /^[0-9a-f]{64}$/);
  assert.equal(AddressBook.fromShared(book.toShared()).fingerprint, book.fingerprint);
  assert.equal(bookOf([...SAMPLE].reverse()).fingerprint, book.fingerprint);
  assert.notEqual(bookOf(SAMPLE.slice(1)).fingerprint, book.fingerprint);
});

Deno.test("AddressBookBuilder.addBytes adds what add adds, and setNameBytes replaces a name", () => {
  const builder = new AddressBookBuilder(4);
  const key = encoder.encode("[ada@example.com]");
  const name = encoder.encode("(Ada Lovelace)");
  assert.equal(builder.addBytes(key, 1, key.length - 1, name, 1, name.length - 1), -1);
  assert.equal(builder.addBytes(key, 1, key.length - 1, name, 1, 4), 0);
  builder.add("zoë@example.com", "Zoë");
  builder.setNameBytes(1, encoder.encode("Zoë M."), 0, encoder.encode("Zoë M.").length);
  const book = builder.build();
  assert.equal(book.get("ada@example.com"), "Ada Lovelace");
  assert.equal(book.get("zoë@example.com"), "Zoë M.");
  assert.equal(
    book.fingerprint,
    bookOf([["ada@example.com", "Ada Lovelace"], ["zoë@example.com", "Zoë M."]]).fingerprint,
  );
});

Deno.test("AddressBookBuilder grows its shared buffers in place to a large book", () => {
  const builder = new AddressBookBuilder();
  for (let i = 0; i < 100_000; i++) builder.add(`person.${i}@example.com`, `Person ${i}`);
  const book = builder.build();
  assert.equal(book.size, 100_000);
  assert.equal(book.get("person.99999@example.com"), "Person 99999");
  assert.equal(book.get("person.0@example.com"), "Person 0");
});

Deno.test("property: appendBytes and build find every key, keeping the first or last of duplicates", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.tuple(fc.integer({ min: 0, max: 40 }), fc.string({ minLength: 1, maxLength: 4 })),
        { maxLength: 120 },
      ),
      fc.constantFrom("first" as const, "last" as const),
      (rows, keep) => {
        const builder = new AddressBookBuilder();
        const expected = new Map<string, string>();
        const firsts = new Map<string, number>();
        const found: [number, number][] = [];
        const wanted: [number, number][] = [];
        rows.forEach(([n, name], entry) => {
          const key = `k${n}@x`;
          const bytes = encoder.encode(key);
          const nameBytes = encoder.encode(name);
          assert.equal(
            builder.appendBytes(bytes, 0, bytes.length, nameBytes, 0, nameBytes.length),
            entry,
          );
          if (!firsts.has(key)) firsts.set(key, entry);
          else wanted.push([firsts.get(key)!, entry]);
          if (keep === "last" || !expected.has(key)) expected.set(key, name);
        });
        const book = builder.build({
          keep,
          found: (first, duplicate) => found.push([first, duplicate]),
        });
        assert.equal(book.size, expected.size);
        for (const [key, name] of expected) assert.equal(book.get(key), name, key);
        assert.equal(book.get("missing@x"), undefined);
        assert.deepEqual(found.sort((a, b) => a[1] - b[1]), wanted);
        assert.equal(book.fingerprint, bookOf([...expected]).fingerprint);
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("a bulk build wraps entries past the table's end round to its start", () => {
  // Keys whose hashes put them in the last slots of a 16-slot table, more than fit there.
  const hash = (text: string) => {
    let h = 0x811c9dc5;
    for (const byte of encoder.encode(text)) h = Math.imul(h ^ byte, 0x01000193);
    return h >>> 0;
  };
  const keys: string[] = [];
  for (let i = 0; keys.length < 7; i++) if (hash(`w${i}@x`) >>> 28 === 15) keys.push(`w${i}@x`);
  const builder = new AddressBookBuilder();
  for (const key of keys) {
    const bytes = encoder.encode(key);
    builder.appendBytes(bytes, 0, bytes.length, bytes, 0, bytes.length);
  }
  const book = builder.build();
  assert.equal(book.toShared().slots.length, 32);
  for (const key of keys) assert.equal(book.get(key), key);
});

// --- lookup, entry and names: what front ends read ---

Deno.test("AddressBook.lookup finds a query as it arrived, in any case and with whitespace around it", () => {
  const book = bookOf(SAMPLE);
  for (
    const query of [
      "ada@example.com",
      "ADA@EXAMPLE.COM",
      "  Ada@Example.com\r\n",
      "\tada@example.com",
    ]
  ) {
    assert.deepEqual(ask(book, query), found("Ada Lovelace"), JSON.stringify(query));
  }
  assert.equal(ask(book, " Zoë@EXAMPLE.com "), "Zoë Ñúñez");
  assert.equal(ask(book, "\u3000用户@例子.广告"), "李小龍");
  // Only the range given is read: the query may sit inside a read buffer.
  const bytes = encoder.encode("xx@ ALAN@example.com @yy");
  const entry = book.lookup(bytes, 3, bytes.length - 3);
  assert.equal(book.entry(entry).name, "Alan Turing");
});

Deno.test("AddressBook.lookup gives NOT_FOUND for a valid address it does not hold", () => {
  const book = bookOf(SAMPLE);
  assert.equal(NOT_FOUND, -1);
  for (
    const query of ["grace@example.com", "ada@example.org", "ZOE@example.com", "ünknown@例子.广告"]
  ) {
    assert.equal(ask(book, query), NOT_FOUND, query);
  }
});

Deno.test("AddressBook.lookup gives INVALID_QUERY for bytes that are not UTF-8 or not an email address", () => {
  const book = bookOf(SAMPLE);
  assert.equal(INVALID_QUERY, -2);
  for (
    const query of [
      new Uint8Array(0),
      "  \t\r\n",
      "\u3000",
      Uint8Array.of(0xff),
      Uint8Array.of(0x61, 0x40, 0x62, 0xc3),
      "ada.example.com",
      "ada@@example.com",
      "@example.com",
      "ada@",
      "ada lovelace@example.com",
      "ada@example.com\u0000",
      "ada\u200b@example.com",
      "a@" + "b".repeat(253),
      "é@" + "b".repeat(253),
    ]
  ) {
    assert.equal(ask(book, query), INVALID_QUERY, JSON.stringify(query));
  }
});

Deno.test("property: lookup agrees with the address rule and get() for any query text or bytes", () => {
  const entries: [string, string][] = [
    ["ada@example.com", "Ada Lovelace"],
    ["a@b", "Shortest"],
    ["zoë@example.com", "Zoë"],
    ["k@x", "Kay"],
    ["ss@x", "Double S"],
  ];
  const names = new Map(entries);
  const book = bookOf(entries);
  const queryChar = fc.constantFrom(
    "a",
    "A",
    "b",
    "K",
    "\u212a",
    "s",
    "ß",
    "x",
    "@",
    ".",
    " ",
    "\t",
    "\u0000",
    "\u007f",
    "\u00a0",
    "\ufeff",
    "é",
    "Ë",
    "😀",
  );
  const query = fc.oneof(
    fc.string({ unit: queryChar, maxLength: 12 }).map((text) => encoder.encode(text)),
    fc.tuple(fc.constantFrom(...entries.map(([email]) => email)), fc.array(fc.boolean()))
      .map(([email, flags]) =>
        encoder.encode(` ${[...email].map((c, i) => flags[i] ? c.toUpperCase() : c).join("")}\n`)
      ),
    fc.uint8Array({ maxLength: 12 }),
  );
  fc.assert(
    fc.property(query, (bytes) => {
      const text = decodeUtf8(bytes);
      const expected = text === undefined || emailProblem(text) !== undefined
        ? INVALID_QUERY
        : names.get(normalizeEmail(text)) ?? NOT_FOUND;
      assert.deepEqual(ask(book, bytes), expected);
    }),
    { numRuns: 2000 },
  );
});

Deno.test("AddressBook.text, keyStart/keyEnd and nameStart/nameEnd give each entry's key and name as UTF-8 bytes", () => {
  const book = bookOf(SAMPLE);
  for (const [email, name] of SAMPLE) {
    const entry = book.find(encoder.encode(normalizeEmail(email)));
    assert.deepEqual(nameBytes(book, entry), encoder.encode(name));
    assert.deepEqual(
      book.text.subarray(book.keyStart(entry), book.keyEnd(entry)),
      encoder.encode(normalizeEmail(email)),
    );
    assert.equal(book.nameStart(entry), book.keyEnd(entry), "the name follows the key");
  }
  assert.ok(book.text.buffer instanceof SharedArrayBuffer);
});

Deno.test("AddressBook.entries copies the entries out as a builder lays them, with their hashes", () => {
  const book = bookOf(SAMPLE);
  const entries = book.entries();
  assert.equal(entries.size, SAMPLE.length);
  for (let entry = 0; entry < book.size; entry++) {
    const { email, name } = book.entry(entry);
    const key = entries.keys.subarray(entries.keyStarts[entry], entries.keyStarts[entry + 1]);
    assert.equal(decoder.decode(key), email);
    assert.equal(
      decoder.decode(
        entries.names.subarray(entries.nameStarts[entry], entries.nameStarts[entry + 1]),
      ),
      name,
    );
  }
  // The hashes are the ones the book files its entries under: a rebuilt book finds the same.
  const rebuilt = new AddressBookBuilder();
  for (let entry = 0; entry < book.size; entry++) {
    const { email, name } = book.entry(entry);
    rebuilt.add(email, name);
  }
  assert.deepEqual(rebuilt.build().fingerprint, book.fingerprint);
});

Deno.test("a key too long for a record is refused by either build", () => {
  const key = encoder.encode("a".repeat(KEY_LENGTH_MASK) + "@b");
  const name = encoder.encode("Long");
  const refusal = new RangeError(
    `A key of ${KEY_LENGTH_MASK + 2} bytes is over the book's limit of ${KEY_LENGTH_MASK}.`,
  );
  const added = new AddressBookBuilder();
  added.addBytes(key, 0, key.length, name, 0, name.length);
  assert.throws(() => added.build(), refusal);
  const bulk = new AddressBookBuilder();
  bulk.appendBytes(key, 0, key.length, name, 0, name.length);
  assert.throws(() => bulk.build(), refusal);
});

Deno.test("a record past 2 GiB into the records is found, and its name's place given whole", () => {
  // The buffer takes memory only for the page written: the rest is address space.
  const at = 2 ** 31 + 8;
  const key = encoder.encode("ada@example.com");
  const name = encoder.encode("Ada Lovelace");
  const records = new Uint8Array(new SharedArrayBuffer(at + recordBytes(key.length, name.length)));
  writeRecord(
    records,
    new Uint32Array(records.buffer),
    at,
    0,
    key,
    0,
    key.length,
    name,
    0,
    name.length,
  );
  let hash = 0x811c9dc5; // FNV-1a, as the book hashes keys
  for (const byte of key) hash = Math.imul(hash ^ byte, 0x01000193);
  hash >>>= 0;
  const slots = new Uint32Array(new SharedArrayBuffer(16 * 8)); // 16 slots: home = the top 4 bits
  slots[2 * (hash >>> 28)] = at / 4 + 1; // the record's word index + 1
  slots[2 * (hash >>> 28) + 1] = hash;
  const book = AddressBook.fromShared({
    size: 1,
    slots,
    records,
    recordStarts: Uint32Array.of(at),
    namePartStarts: new Uint32Array(0),
    nameParts: new Uint8Array(0),
    fingerprint: "",
  });
  assert.equal(book.get("ADA@example.com"), "Ada Lovelace");
  const { joined, starts, ends } = joinQueries(
    ["ada@example.com", "bob@example.com", "Ada@Example.com"].map((text) => encoder.encode(text)),
  );
  const results = new LookupResults();
  results.entries.fill(-99); // so that a result not written shows
  book.lookupMany(joined, starts, ends, 3, results);
  assert.deepEqual([...results.entries.subarray(0, 3)], [0, NOT_FOUND, 0]);
  for (const i of [0, 2]) {
    assert.equal(results.nameStarts[i], at + 8 + key.length);
    assert.equal(results.nameEnds[i], at + 8 + key.length + name.length);
  }
});

Deno.test("a record holds a name of up to 2 MiB, and a build refuses a longer one by its size", () => {
  const long = "n".repeat(2 ** 21 - 1);
  const book = bookOf([["ada@example.com", long]]);
  assert.equal(book.get("ada@example.com"), long);
  const builder = new AddressBookBuilder();
  builder.add("ada@example.com", long + "n");
  const refusal = new RangeError(
    `A name of ${2 ** 21} bytes is over the book's limit of ${2 ** 21 - 1}.`,
  );
  assert.throws(() => builder.build(), refusal);
  // The bulk way in, which lays records out by hash, refuses it alike.
  const bulk = new AddressBookBuilder();
  const key = encoder.encode("ada@example.com");
  const name = encoder.encode(long + "n");
  bulk.appendBytes(key, 0, key.length, name, 0, name.length);
  assert.throws(() => bulk.build(), refusal);
});

Deno.test("AddressBook.entry gives the normalised email and the name, and refuses an entry it does not have", () => {
  const book = bookOf(SAMPLE);
  const entry = book.lookup(
    encoder.encode("ZOË@example.com"),
    0,
    encoder.encode("ZOË@example.com").length,
  );
  assert.deepEqual(book.entry(entry), { email: "zoë@example.com", name: "Zoë Ñúñez" });
  for (const index of [-1, SAMPLE.length, 0.5, NaN]) {
    assert.throws(() => book.entry(index), RangeError, String(index));
  }
  assert.throws(() => book.entry(4), { message: "The book has no entry 4: it holds 4." });
});

Deno.test("AddressBookBuilder.add keeps a given name and surname, where an entry has them", () => {
  const builder = new AddressBookBuilder();
  builder.add("plain@example.com", "Plain Name");
  builder.add("ada@example.com", "Ada Lovelace", "Ada", "Lovelace");
  builder.add("given@example.com", "Given Only", "Given");
  builder.add("surname@example.com", "Surname Only", undefined, "Only");
  builder.add("zoë@example.com", "Zoë Ñúñez", "Zoë", "Ñúñez");
  builder.add("late@example.com", "No Parts", "", "");
  const book = builder.build();
  const entryOf = (email: string) => book.entry(book.find(encoder.encode(email)));
  assert.deepEqual(entryOf("plain@example.com"), {
    email: "plain@example.com",
    name: "Plain Name",
  });
  assert.deepEqual(entryOf("ada@example.com"), {
    email: "ada@example.com",
    name: "Ada Lovelace",
    givenName: "Ada",
    surname: "Lovelace",
  });
  assert.deepEqual(entryOf("given@example.com").givenName, "Given");
  assert.equal(entryOf("given@example.com").surname, undefined);
  assert.equal(entryOf("surname@example.com").givenName, undefined);
  assert.equal(entryOf("surname@example.com").surname, "Only");
  assert.deepEqual(entryOf("zoë@example.com"), {
    email: "zoë@example.com",
    name: "Zoë Ñúñez",
    givenName: "Zoë",
    surname: "Ñúñez",
  });
  assert.deepEqual(entryOf("late@example.com"), { email: "late@example.com", name: "No Parts" });
  // The fingerprint is of emails and names only.
  assert.equal(
    book.fingerprint,
    bookOf([
      ["plain@example.com", "Plain Name"],
      ["ada@example.com", "Ada Lovelace"],
      ["given@example.com", "Given Only"],
      ["surname@example.com", "Surname Only"],
      ["zoë@example.com", "Zoë Ñúñez"],
      ["late@example.com", "No Parts"],
    ]).fingerprint,
  );
});

Deno.test("a book with no given names or surnames keeps no buffers for them", () => {
  for (const appended of [false, true]) {
    const builder = new AddressBookBuilder();
    for (const [email, name] of SAMPLE) {
      const key = encoder.encode(email);
      const bytes = encoder.encode(name);
      if (appended) builder.appendBytes(key, 0, key.length, bytes, 0, bytes.length);
      else builder.add(email, name);
    }
    const shared = builder.build().toShared();
    assert.equal(shared.namePartStarts.length, 0);
    assert.equal(shared.nameParts.length, 0);
  }
});

Deno.test("property: appendBytes keeps given names and surnames through build, duplicates and all", () => {
  const part = fc.oneof(fc.constant(""), fc.string({ minLength: 1, maxLength: 4 }));
  fc.assert(
    fc.property(
      fc.array(
        fc.tuple(
          fc.integer({ min: 0, max: 30 }),
          fc.string({ minLength: 1, maxLength: 4 }),
          part,
          part,
        ),
        { maxLength: 80 },
      ),
      fc.constantFrom("first" as const, "last" as const),
      (rows, keep) => {
        const builder = new AddressBookBuilder();
        const expected = new Map<string, BookEntry>();
        for (const [n, name, given, surname] of rows) {
          const email = `k${n}@x`;
          const key = encoder.encode(email);
          const nameBytes = encoder.encode(name);
          const parts = encoder.encode(given + surname);
          const givenEnd = encoder.encode(given).length;
          builder.appendBytes(key, 0, key.length, nameBytes, 0, nameBytes.length, {
            bytes: parts,
            givenStart: 0,
            givenEnd,
            surnameStart: givenEnd,
            surnameEnd: parts.length,
          });
          if (keep === "first" && expected.has(email)) continue;
          const entry: BookEntry = { email, name };
          if (given !== "") entry.givenName = given;
          if (surname !== "") entry.surname = surname;
          expected.set(email, entry);
        }
        const book = builder.build({ keep });
        assert.equal(book.size, expected.size);
        for (const [email, entry] of expected) {
          assert.deepEqual(book.entry(book.find(encoder.encode(email))), entry, email);
        }
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("a built book keeps only its own buffers, not what the build used on the way", () => {
  const fields = [
    "fingerprint",
    "namePartStarts",
    "nameParts",
    "recordStarts",
    "records",
    "size",
    "slots",
  ];
  const added = bookOf(SAMPLE).toShared();
  assert.deepEqual(Object.keys(added).sort(), fields);
  const builder = new AddressBookBuilder();
  for (const [email, name] of [...SAMPLE, SAMPLE[0]]) {
    const key = encoder.encode(email);
    const bytes = encoder.encode(name);
    builder.appendBytes(key, 0, key.length, bytes, 0, bytes.length);
  }
  assert.deepEqual(Object.keys(builder.build().toShared()).sort(), fields);
});

/** Queries joined into one buffer, with where each lies, as a read brings them. */
function joinQueries(
  queries: Uint8Array[],
): { joined: Uint8Array; starts: Int32Array; ends: Int32Array } {
  const joined = new Uint8Array(queries.reduce((sum, bytes) => sum + bytes.length, 0));
  const starts = new Int32Array(queries.length);
  const ends = new Int32Array(queries.length);
  let at = 0;
  queries.forEach((bytes, i) => {
    joined.set(bytes, at);
    starts[i] = at;
    ends[i] = at += bytes.length;
  });
  return { joined, starts, ends };
}

Deno.test("property: lookupMany gives each query lookup's answer, for any batch of queries", () => {
  const entries: [string, string][] = Array.from(
    { length: 500 },
    (_, i) => [`user${i}@example.com`, `User ${i}`],
  );
  entries.push(["zoë@example.com", "Zoë"]);
  const book = bookOf(entries);
  const query = fc.oneof(
    fc.integer({ min: 0, max: 999 }).map((i) => encoder.encode(` USER${i}@example.com`)),
    fc.constantFrom("zoë@example.com", "", "@", "a b@c", "\u0000x@y").map((t) => encoder.encode(t)),
    fc.uint8Array({ maxLength: 30 }),
  );
  fc.assert(
    fc.property(fc.array(query, { maxLength: LOOKUP_BATCH_MAX }), (queries) => {
      const { joined, starts, ends } = joinQueries(queries);
      const results = new LookupResults();
      results.entries.fill(7);
      book.lookupMany(joined, starts, ends, queries.length, results);
      const expected = queries.map((_, i) => book.lookup(joined, starts[i], ends[i]));
      assert.deepEqual([...results.entries.subarray(0, queries.length)], expected);
      assert.ok(
        results.entries.subarray(queries.length).every((result) => result === 7),
        "no other result written",
      );
      expected.forEach((entry, i) => {
        if (entry < 0) return;
        assert.equal(results.nameStarts[i], book.nameStart(entry));
        assert.equal(results.nameEnds[i], book.nameEnd(entry));
      });
    }),
    { numRuns: 300 },
  );
});

Deno.test("lookupMany finds keys whose hashes are equal, and tells a missing one from them", () => {
  // Found by search: FNV-1a gives both 0xad22a544.
  const book = bookOf([["u31992@x.org", "First"], ["u605430@x.org", "Second"]]);
  const { joined, starts, ends } = joinQueries(
    ["u605430@x.org", "u31992@x.org", "u605431@x.org", "U31992@X.ORG"].map((t) =>
      encoder.encode(t)
    ),
  );
  const results = new LookupResults();
  book.lookupMany(joined, starts, ends, 4, results);
  assert.deepEqual(
    [...results.entries.subarray(0, 4)].map((entry) => entry >= 0 ? book.entry(entry).name : entry),
    ["Second", "First", NOT_FOUND, "First"],
  );
  assert.deepEqual(
    [0, 1, 3].map((i) =>
      decoder.decode(book.text.subarray(results.nameStarts[i], results.nameEnds[i]))
    ),
    ["Second", "First", "First"],
  );
});

Deno.test("lookupMany refuses more queries than it takes, or than its arrays hold", () => {
  const book = bookOf(SAMPLE);
  const many = new Int32Array(LOOKUP_BATCH_MAX + 1);
  const results = new LookupResults();
  assert.throws(
    () => book.lookupMany(new Uint8Array(0), many, many, LOOKUP_BATCH_MAX + 1, results),
    new RangeError(
      `lookupMany takes at most ${LOOKUP_BATCH_MAX} queries and arrays that hold them all, got ${
        LOOKUP_BATCH_MAX + 1
      }.`,
    ),
  );
  assert.throws(
    () => book.lookupMany(new Uint8Array(0), many, new Int32Array(2), 3, results),
    RangeError,
  );
});
