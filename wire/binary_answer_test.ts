import assert from "node:assert/strict";
import fc from "fast-check";
import { AddressBook, AddressBookBuilder } from "../book/addressbook.ts";
import { answerQuery, NOT_FOUND_TEXT, NOT_UTF8_TEXT, writeAnswer } from "./binary_answer.ts";
import { MAX_NAME_BYTES } from "../book/collect.ts";
import { emailProblem, normalizeEmail } from "../book/email.ts";
import {
  decodeReply,
  HEADER_SIZE,
  MAX_REPLY_BYTES,
  type Reply,
  STATUS_BAD_REQUEST,
  STATUS_FOUND,
  STATUS_NOT_FOUND,
  TYPE_REPLY,
} from "../protocol.ts";
import { decodeUtf8 } from "../common/utf8.ts";

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
  return parseFrame(answerQuery(book, typeof query === "string" ? encoder.encode(query) : query));
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

Deno.test("answerQuery gives FOUND with the name for a known address in any case", () => {
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

Deno.test("answerQuery gives NOT_FOUND, without echoing the address, for an unknown one", () => {
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

Deno.test("answerQuery gives BAD_REQUEST for an empty or all-whitespace query", () => {
  const book = bookOf(SAMPLE);
  assert.deepEqual(ask(book, new Uint8Array(0)), badRequest("it is empty"));
  assert.deepEqual(ask(book, "  \t\r\n"), badRequest("it is empty"));
  assert.deepEqual(ask(book, "\u3000"), badRequest("it is empty"));
});

Deno.test("answerQuery gives BAD_REQUEST for bytes that are not UTF-8", () => {
  const book = bookOf(SAMPLE);
  const notUtf8 = { status: STATUS_BAD_REQUEST, text: "The query is not valid UTF-8." };
  assert.deepEqual(ask(book, Uint8Array.of(0xff)), notUtf8);
  assert.deepEqual(ask(book, Uint8Array.of(0x61, 0x40, 0x62, 0xc3)), notUtf8);
  assert.deepEqual(ask(book, Uint8Array.of(0x61, 0xc0, 0x80, 0x40, 0x62)), notUtf8);
  assert.deepEqual(ask(book, Uint8Array.of(0x61, 0x40, 0xed, 0xa0, 0x80)), notUtf8);
});

Deno.test("answerQuery gives BAD_REQUEST saying why a query is not an email address", () => {
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

Deno.test("answerQuery looks up a 254-character address and rejects 255, ASCII or not", () => {
  const ascii = "a".repeat(64) + "@" + "b".repeat(189);
  const wide = "é".repeat(64) + "@" + "b".repeat(189);
  const book = bookOf([[ascii, "Long ASCII"], [wide, "Long wide"]]);
  assert.deepEqual(ask(book, ascii.toUpperCase()), found("Long ASCII"));
  assert.deepEqual(ask(book, `  ${wide.toUpperCase()}  `), found("Long wide"));
  assert.equal(ask(book, ascii + "b").status, STATUS_BAD_REQUEST);
  assert.equal(ask(book, wide + "b").status, STATUS_BAD_REQUEST);
});

Deno.test("answerQuery returns a well-formed reply frame for each status", () => {
  const book = bookOf(SAMPLE);
  for (const query of ["ada@example.com", "nobody@example.com", "bad", "zoë@example.com"]) {
    const frame = answerQuery(book, encoder.encode(query));
    parseFrame(frame);
  }
});

/**
 * What `answerQuery` must reply, worked out the slow, obvious way from the
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

Deno.test("property: answerQuery agrees with get() for valid emails in mixed case with surrounding whitespace", () => {
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

Deno.test("property: answerQuery agrees with a model of the address rule for any query text or bytes", () => {
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

Deno.test("writeAnswer writes the same frame as answerQuery, in place, and asks for room when short", () => {
  const builder = new AddressBookBuilder();
  builder.add("ada@example.com", "Ada Lovelace");
  const book = builder.build();
  const encoder = new TextEncoder();
  for (
    const query of ["  ADA@example.com ", "nobody@example.com", "not an email", "zoë@example.com"]
  ) {
    // The query sits inside a larger buffer, as it does in a read buffer.
    const bytes = encoder.encode(`xx${query}yy`);
    const expected = answerQuery(book, encoder.encode(query));
    const out = new Uint8Array(3 + expected.length);
    const end = writeAnswer(book, bytes, 2, bytes.length - 2, out, 3);
    assert.equal(end, out.length);
    assert.deepEqual(out.subarray(3), expected);
    assert.equal(writeAnswer(book, bytes, 2, bytes.length - 2, out, 4), -1);
  }
});

Deno.test("answerQuery gives BAD_REQUEST naming an invisible or direction-changing character", () => {
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
    const end = writeAnswer(book, query, 0, query.length, out, 0);
    assert.deepEqual(parseFrame(out.subarray(0, end)), expected, name);
  }
});

Deno.test("answerQuery gives FOUND with names of any size and script, and NOT_FOUND in an empty book", () => {
  const names = ["Zoë", "李小龍", "🦀 Ferris", "x".repeat(20_000), "Ada\u0000Lovelace"];
  const book = bookOf(names.map((name, i) => [`person${i}@example.com`, name]));
  names.forEach((name, i) => assert.deepEqual(ask(book, `PERSON${i}@example.com`), found(name)));
  const empty = new AddressBookBuilder().build();
  assert.deepEqual(ask(empty, "ada@example.com"), NOT_FOUND);
  assert.deepEqual(ask(empty, "zoë@example.com"), NOT_FOUND);
});

Deno.test("answerQuery gives the same frames from a book shared with fromShared", () => {
  const book = bookOf(SAMPLE);
  const copy = AddressBook.fromShared(book.toShared());
  for (const query of ["ada@example.com", "ZOË@example.com", "nobody@example.com", "bad"]) {
    const bytes = encoder.encode(query);
    assert.deepEqual(answerQuery(copy, bytes), answerQuery(book, bytes));
  }
});

Deno.test("writeAnswer writes a name of the longest size a book takes into a frame the protocol accepts", () => {
  assert.equal(MAX_NAME_BYTES, MAX_REPLY_BYTES - 1, "a name and the status byte fit in a reply");
  const name = "n".repeat(MAX_NAME_BYTES);
  const book = bookOf([["ada@example.com", name]]);
  const query = encoder.encode("ada@example.com");
  const out = new Uint8Array(HEADER_SIZE + MAX_REPLY_BYTES);
  assert.equal(writeAnswer(book, query, 0, query.length, out, 0), out.length);
  assert.deepEqual(parseFrame(out), found(name));
  assert.equal(writeAnswer(book, query, 0, query.length, out.subarray(1), 0), -1);
});

Deno.test("NOT_UTF8_TEXT is the BAD_REQUEST text for bytes that are not UTF-8", () => {
  assert.equal(NOT_UTF8_TEXT, "The query is not valid UTF-8.");
});
