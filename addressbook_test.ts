import assert from "node:assert/strict";
import fc from "fast-check";
import { AddressBook, AddressBookBuilder, NOT_FOUND_TEXT } from "./addressbook.ts";
import { emailProblem, normalizeEmail } from "./email.ts";
import {
  decodeReply,
  decodeUtf8,
  HEADER_SIZE,
  type Reply,
  STATUS_BAD_REQUEST,
  STATUS_FOUND,
  STATUS_NOT_FOUND,
  TYPE_REPLY,
} from "./protocol.ts";

const encoder = new TextEncoder();

function bookOf(entries: [string, string][]): AddressBook {
  const builder = new AddressBookBuilder();
  for (const [email, name] of entries) assert.equal(builder.add(email, name), -1, email);
  return builder.build();
}

/** Checks a reply frame's header and decodes its payload. */
function parseFrame(frame: Uint8Array): Reply {
  assert.equal(frame[0], TYPE_REPLY);
  const length = new DataView(frame.buffer, frame.byteOffset, frame.byteLength).getUint32(1);
  assert.equal(length, frame.length - HEADER_SIZE, "the length field matches the payload");
  return decodeReply(frame.subarray(HEADER_SIZE));
}

function ask(book: AddressBook, query: string | Uint8Array): Reply {
  return parseFrame(book.answer(typeof query === "string" ? encoder.encode(query) : query));
}

const found = (text: string): Reply => ({ status: STATUS_FOUND, text });
const NOT_FOUND: Reply = { status: STATUS_NOT_FOUND, text: NOT_FOUND_TEXT };
const badRequest = (problem: string): Reply => ({
  status: STATUS_BAD_REQUEST,
  text: `The query is not an email address: ${problem}.`,
});

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

Deno.test("AddressBookBuilder.build keeps only the final reply of each entry", () => {
  const builder = new AddressBookBuilder();
  builder.add("ada@example.com", "Ada Lovelace");
  builder.add("alan@example.com", "Alan Turing");
  builder.setName(0, "A much longer name that replaced the first one");
  builder.setName(1, "AT");
  const { replies, replyBounds } = builder.build().toShared();
  const frameSize = (name: string) => HEADER_SIZE + 1 + encoder.encode(name).length;
  assert.equal(
    replies.length,
    frameSize("A much longer name that replaced the first one") + frameSize("AT"),
  );
  assert.deepEqual([...replyBounds], [0, replyBounds[1], replyBounds[1], replies.length]);
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
            book.reply(entry).subarray(HEADER_SIZE + 1),
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

Deno.test("AddressBook.answer gives FOUND with the name for a known address in any case", () => {
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
});

Deno.test("AddressBook.answer gives NOT_FOUND, without echoing the address, for an unknown one", () => {
  const book = bookOf(SAMPLE);
  for (
    const query of ["grace@example.com", "ada@example.org", "ZOE@example.com", "ünknown@例子.广告"]
  ) {
    const reply = ask(book, query);
    assert.deepEqual(reply, NOT_FOUND, query);
    assert.ok(!reply.text.includes("@"));
  }
  assert.equal(NOT_FOUND_TEXT, "No entry for that address.");
});

Deno.test("AddressBook.answer gives BAD_REQUEST for an empty or all-whitespace query", () => {
  const book = bookOf(SAMPLE);
  assert.deepEqual(ask(book, new Uint8Array(0)), badRequest("it is empty"));
  assert.deepEqual(ask(book, "  \t\r\n"), badRequest("it is empty"));
  assert.deepEqual(ask(book, "\u3000"), badRequest("it is empty"));
});

Deno.test("AddressBook.answer gives BAD_REQUEST for bytes that are not UTF-8", () => {
  const book = bookOf(SAMPLE);
  const notUtf8 = { status: STATUS_BAD_REQUEST, text: "The query is not valid UTF-8." };
  assert.deepEqual(ask(book, Uint8Array.of(0xff)), notUtf8);
  assert.deepEqual(ask(book, Uint8Array.of(0x61, 0x40, 0x62, 0xc3)), notUtf8);
  assert.deepEqual(ask(book, Uint8Array.of(0x61, 0xc0, 0x80, 0x40, 0x62)), notUtf8);
  assert.deepEqual(ask(book, Uint8Array.of(0x61, 0x40, 0xed, 0xa0, 0x80)), notUtf8);
});

Deno.test("AddressBook.answer gives BAD_REQUEST saying why a query is not an email address", () => {
  const book = bookOf(SAMPLE);
  assert.deepEqual(ask(book, "ada.example.com"), badRequest("it has no @"));
  assert.deepEqual(ask(book, "ada@@example.com"), badRequest("it has more than one @"));
  assert.deepEqual(ask(book, "@example.com"), badRequest("nothing comes before the @"));
  assert.deepEqual(ask(book, "ada@"), badRequest("nothing comes after the @"));
  assert.deepEqual(
    ask(book, "ada lovelace@example.com"),
    badRequest("it contains whitespace or a control character"),
  );
  assert.deepEqual(
    ask(book, "ada@example.com\u0000"),
    badRequest("it contains whitespace or a control character"),
  );
  assert.deepEqual(
    ask(book, "ada@exa\u007fmple.com"),
    badRequest("it contains whitespace or a control character"),
  );
  assert.deepEqual(
    ask(book, "zoë@exa\u00a0mple.com"),
    badRequest("it contains whitespace or a control character"),
  );
  assert.deepEqual(
    ask(book, "a@" + "b".repeat(253)),
    badRequest("it is 255 characters long, over the limit of 254"),
  );
  assert.deepEqual(
    ask(book, "é@" + "b".repeat(253)),
    badRequest("it is 255 characters long, over the limit of 254"),
  );
});

Deno.test("AddressBook.answer looks up a 254-character address and rejects 255, ASCII or not", () => {
  const ascii = "a".repeat(64) + "@" + "b".repeat(189);
  const wide = "é".repeat(64) + "@" + "b".repeat(189);
  const book = bookOf([[ascii, "Long ASCII"], [wide, "Long wide"]]);
  assert.deepEqual(ask(book, ascii.toUpperCase()), found("Long ASCII"));
  assert.deepEqual(ask(book, `  ${wide.toUpperCase()}  `), found("Long wide"));
  assert.equal(ask(book, ascii + "b").status, STATUS_BAD_REQUEST);
  assert.equal(ask(book, wide + "b").status, STATUS_BAD_REQUEST);
});

Deno.test("AddressBook.answer returns a well-formed reply frame for each status", () => {
  const book = bookOf(SAMPLE);
  for (const query of ["ada@example.com", "nobody@example.com", "bad", "zoë@example.com"]) {
    const frame = book.answer(encoder.encode(query));
    parseFrame(frame);
  }
});

/**
 * What `answer` must reply, worked out the slow, obvious way from the
 * address rule and the book's contents, for comparison with the fast path.
 */
function expectedReply(names: Map<string, string>, query: Uint8Array): Reply {
  const text = decodeUtf8(query);
  if (text === undefined) {
    return { status: STATUS_BAD_REQUEST, text: "The query is not valid UTF-8." };
  }
  const problem = emailProblem(text);
  if (problem !== undefined) return badRequest(problem);
  const name = names.get(normalizeEmail(text));
  return name === undefined ? NOT_FOUND : found(name);
}

const addressChar = fc.constantFrom(
  "a",
  "b",
  "z",
  "A",
  "Q",
  "Z",
  "0",
  "9",
  ".",
  "-",
  "_",
  "+",
  "é",
  "É",
  "ë",
  "Ë",
  "ö",
  "Ö",
  "ñ",
  "Σ",
  "σ",
  "ß",
  "İ",
  "K",
  "\u212a", // Kelvin sign: lower-cases to an ASCII k
  "例",
  "😀",
);
const addressPart = fc.string({ unit: addressChar, minLength: 1, maxLength: 20 });
const validEmail = fc.tuple(addressPart, addressPart).map(([local, domain]) =>
  `${local}@${domain}`
);
const space = fc.constantFrom(" ", "\t", "\r", "\n", "\v", "\f", "\u00a0", "\u3000", "\ufeff");
const spaces = fc.array(space, { maxLength: 3 }).map((list) => list.join(""));

/** Changes the case of some letters of `text`, chosen by `flags`. */
function mixCase(text: string, flags: boolean[]): string {
  return [...text].map((char, i) =>
    flags[i % Math.max(1, flags.length)] ? char.toUpperCase() : char.toLowerCase()
  ).join("");
}

Deno.test("property: answer agrees with get() for valid emails in mixed case with surrounding whitespace", () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(validEmail, fc.string({ maxLength: 12 })), { minLength: 1, maxLength: 30 }),
      fc.array(fc.tuple(fc.nat(), fc.array(fc.boolean(), { maxLength: 50 }), spaces, spaces), {
        maxLength: 30,
      }),
      validEmail,
      (entries, picks, stranger) => {
        const builder = new AddressBookBuilder();
        for (const [email, name] of entries) {
          const index = builder.add(normalizeEmail(email), name);
          if (index >= 0) builder.setName(index, name);
        }
        const book = builder.build();
        const queries = picks.map(([n, flags, before, after]) =>
          before + mixCase(entries[n % entries.length][0], flags) + after
        );
        queries.push(stranger, stranger.toUpperCase());
        for (const query of queries) {
          const name = book.get(query);
          const reply = ask(book, query);
          assert.deepEqual(
            reply,
            name === undefined ? NOT_FOUND : found(name),
            JSON.stringify(query),
          );
        }
        // Every key, given exactly as it was normalised, is found.
        for (const [email] of entries) {
          assert.equal(ask(book, normalizeEmail(email)).status, STATUS_FOUND);
        }
      },
    ),
  );
});

Deno.test("property: answer agrees with a model of the address rule for any query text or bytes", () => {
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
    "B",
    "k",
    "K",
    "\u212a",
    "s",
    "S",
    "ß",
    "x",
    "@",
    ".",
    " ",
    "\t",
    "\n",
    "\u0000",
    "\u001f",
    "\u007f",
    "\u0085",
    "\u00a0",
    "\u3000",
    "\ufeff",
    "é",
    "ë",
    "Ë",
    "😀",
  );
  const query = fc.oneof(
    fc.string({ unit: queryChar, maxLength: 12 }).map((text) => encoder.encode(text)),
    fc.tuple(
      spaces,
      fc.constantFrom(...entries.map(([email]) => email)),
      fc.array(fc.boolean()),
      spaces,
    )
      .map(([before, email, flags, after]) =>
        encoder.encode(before + mixCase(email, flags) + after)
      ),
    fc.tuple(fc.constantFrom("a", "é", "😀"), fc.integer({ min: 250, max: 258 })).map(([char, n]) =>
      encoder.encode(`${char.repeat(n - 2)}@b`)
    ),
    fc.uint8Array({ maxLength: 12 }),
  );
  fc.assert(
    fc.property(query, (bytes) => {
      assert.deepEqual(ask(book, bytes), expectedReply(names, bytes));
    }),
    { numRuns: 2000 },
  );
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
    if (reply.status !== STATUS_FOUND || reply.text !== `Name ${i}`) {
      assert.fail(`user${i}@example.com gave ${JSON.stringify(reply)}`);
    }
    const absent = ask(book, `user${i}@example.org`);
    if (absent.status !== STATUS_NOT_FOUND) assert.fail(`user${i}@example.org was found`);
  }
  for (let i = count; i < count + 1000; i++) {
    assert.equal(ask(book, `user${i}@example.com`).status, STATUS_NOT_FOUND);
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
      shared.keyStarts,
      shared.keys,
      shared.replyBounds,
      shared.replies,
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
    assert.deepEqual(copy.answer(encoder.encode(query)), book.answer(encoder.encode(query)));
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
  const shared = data.replies.buffer instanceof SharedArrayBuffer;
  const answers = queries.map((q) => book.answer(new TextEncoder().encode(q)).slice());
  self.postMessage({ shared, size: book.size, answers });
};
`,
    );
    const book = bookOf(SAMPLE);
    const queries = ["ada@example.com", "ZOË@example.com", "nobody@example.com", "bad"];
    const worker = new Worker(new URL(`file://${workerPath}`), { type: "module" });
    try {
      const result = await new Promise<{ shared: boolean; size: number; answers: Uint8Array[] }>(
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
      assert.equal(result.size, SAMPLE.length);
      assert.deepEqual(result.answers, queries.map((q) => book.answer(encoder.encode(q)).slice()));
    } finally {
      worker.terminate();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeAnswer writes the same frame as answer, in place, and asks for room when short", () => {
  const builder = new AddressBookBuilder();
  builder.add("ada@example.com", "Ada Lovelace");
  const book = builder.build();
  const encoder = new TextEncoder();
  for (
    const query of ["  ADA@example.com ", "nobody@example.com", "not an email", "zoë@example.com"]
  ) {
    // The query sits inside a larger buffer, as it does in a read buffer.
    const bytes = encoder.encode(`xx${query}yy`);
    const expected = book.answer(encoder.encode(query));
    const out = new Uint8Array(3 + expected.length);
    const end = book.writeAnswer(bytes, 2, bytes.length - 2, out, 3);
    assert.equal(end, out.length);
    assert.deepEqual(out.subarray(3), expected);
    assert.equal(book.writeAnswer(bytes, 2, bytes.length - 2, out, 4), -1);
  }
});

Deno.test("AddressBook.answer gives BAD_REQUEST naming an invisible or direction-changing character", () => {
  const book = bookOf(SAMPLE);
  for (
    const [char, name] of [["\u200b", "U+200B"], ["\u202e", "U+202E"], ["\u00ad", "U+00AD"], [
      "\ufeff",
      "U+FEFF",
    ], ["\u2066", "U+2066"]]
  ) {
    const expected = badRequest(
      `it contains ${name}, an invisible or direction-changing character`,
    );
    assert.deepEqual(ask(book, `ada${char}@example.com`), expected, name);
    // The hot path gives the same frame.
    const query = encoder.encode(`ada@exam${char}ple.com`);
    const out = new Uint8Array(256);
    const end = book.writeAnswer(query, 0, query.length, out, 0);
    assert.deepEqual(parseFrame(out.subarray(0, end)), expected, name);
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
