import assert from "node:assert/strict";
import fc from "fast-check";
import {
  codePointName,
  emailProblem,
  isAsciiSpace,
  MAX_EMAIL_CHARS,
  normalizeAsciiEmailWords,
  normalizeEmail,
  wordView,
  WordViews,
} from "./email.ts";

const WHITESPACE_OR_CONTROL = "it contains whitespace or a control character";

Deno.test("emailProblem accepts an ordinary address", () => {
  for (
    const email of ["ada@example.com", "a@b", "first.last+tag@sub.example.co.uk", "x@[127.0.0.1]"]
  ) {
    assert.equal(emailProblem(email), undefined, email);
  }
});

Deno.test("emailProblem says an empty or all-whitespace address is empty", () => {
  for (const email of ["", " ", "\t\n\r", "\u00a0\u3000\ufeff"]) {
    assert.equal(emailProblem(email), "it is empty", JSON.stringify(email));
  }
});

Deno.test("emailProblem says an address without @ has none", () => {
  assert.equal(emailProblem("ada.example.com"), "it has no @");
  // The @ rule comes before the whitespace rule.
  assert.equal(emailProblem("ada lovelace"), "it has no @");
  // A full-width ＠ (U+FF20) is not an @.
  assert.equal(emailProblem("ada＠example.com"), "it has no @");
});

Deno.test("emailProblem says an address with two or more @ has more than one", () => {
  for (const email of ["ada@lovelace@example.com", "ada@@example.com", "@@", "a@b@c@d"]) {
    assert.equal(emailProblem(email), "it has more than one @", email);
  }
});

Deno.test("emailProblem says when nothing comes before the @", () => {
  assert.equal(emailProblem("@example.com"), "nothing comes before the @");
  assert.equal(emailProblem("  @example.com"), "nothing comes before the @");
});

Deno.test("emailProblem says when nothing comes after the @", () => {
  assert.equal(emailProblem("ada@"), "nothing comes after the @");
  assert.equal(emailProblem("ada@ \t"), "nothing comes after the @");
  assert.equal(emailProblem("@"), "nothing comes before the @");
});

Deno.test("emailProblem rejects whitespace inside the address, ASCII or Unicode", () => {
  const spaces = [
    " ",
    "\t",
    "\n",
    "\r",
    "\v",
    "\f",
    "\u00a0",
    "\u2003",
    "\u2028",
    "\u3000",
    "\ufeff",
  ];
  for (const space of spaces) {
    // U+FEFF is whitespace to JavaScript but invisible, so it is named as the invisible ones are.
    const expected = space === "\ufeff"
      ? "it contains U+FEFF, an invisible or direction-changing character"
      : WHITESPACE_OR_CONTROL;
    assert.equal(emailProblem(`ada${space}lovelace@example.com`), expected, escape(space));
    assert.equal(emailProblem(`ada@example${space}.com`), expected, escape(space));
  }
});

Deno.test("emailProblem rejects control characters: C0, DEL and C1", () => {
  for (
    const control of [
      "\u0000",
      "\u0001",
      "\u0007",
      "\u001b",
      "\u001f",
      "\u007f",
      "\u0080",
      "\u0085",
      "\u009f",
    ]
  ) {
    assert.equal(emailProblem(`ada${control}@example.com`), WHITESPACE_OR_CONTROL, escape(control));
    // Trimming does not remove a control character at the edge.
    assert.equal(emailProblem(`ada@example.com${control}`), WHITESPACE_OR_CONTROL, escape(control));
  }
});

Deno.test("emailProblem accepts exactly 254 characters and rejects 255, naming the count", () => {
  assert.equal(MAX_EMAIL_CHARS, 254);
  const at254 = "a".repeat(64) + "@" + "b".repeat(189);
  assert.equal(at254.length, 254);
  assert.equal(emailProblem(at254), undefined);
  const at255 = at254 + "c";
  assert.equal(emailProblem(at255), "it is 255 characters long, over the limit of 254");
  assert.equal(
    emailProblem("a@" + "b".repeat(1000)),
    "it is 1002 characters long, over the limit of 254",
  );
});

Deno.test("emailProblem counts an astral character (a surrogate pair) as one character", () => {
  // 200 emoji are 400 UTF-16 code units but 200 characters.
  const at254 = "😀".repeat(200) + "@" + "b".repeat(53);
  assert.equal(at254.length, 454);
  assert.equal([...at254].length, 254);
  assert.equal(emailProblem(at254), undefined);
  assert.equal(
    emailProblem(at254 + "😀"),
    "it is 255 characters long, over the limit of 254",
  );
});

Deno.test("emailProblem counts a lone surrogate as one character", () => {
  const at254 = "\ud800".repeat(200) + "@" + "b".repeat(53);
  assert.equal(emailProblem(at254), undefined);
  assert.equal(emailProblem(at254 + "\udc00"), "it is 255 characters long, over the limit of 254");
});

Deno.test("emailProblem counts a BMP non-ASCII character as one, whatever its UTF-8 size", () => {
  const at254 = "é".repeat(100) + "@" + "例".repeat(153);
  assert.equal(emailProblem(at254), undefined);
  assert.match(emailProblem(at254 + "例") ?? "", /255 characters/);
});

Deno.test("emailProblem trims surrounding whitespace before every check", () => {
  assert.equal(emailProblem("  ada@example.com\t\r\n"), undefined);
  assert.equal(emailProblem("\u3000\u00a0ada@example.com\u2028\ufeff"), undefined);
  // Surrounding whitespace does not count towards the limit.
  const at254 = "a".repeat(64) + "@" + "b".repeat(189);
  assert.equal(emailProblem(" ".repeat(50) + at254 + "\n".repeat(50)), undefined);
});

Deno.test("emailProblem accepts non-ASCII addresses", () => {
  for (
    const email of [
      "zoë@example.com",
      "ZOË@EXAMPLE.COM",
      "用户@例子.广告",
      "θσερ@παράδειγμα.δοκιμή",
      "अजय@डाटा.भारत",
      "😀@example.com",
      "josé.garcía@correo.es",
    ]
  ) {
    assert.equal(emailProblem(email), undefined, email);
  }
});

Deno.test("normalizeEmail trims surrounding whitespace and lower-cases", () => {
  assert.equal(normalizeEmail("  Ada@Example.COM "), "ada@example.com");
  assert.equal(normalizeEmail("\t\nADA@EXAMPLE.COM\u3000"), "ada@example.com");
  assert.equal(normalizeEmail("ada@example.com"), "ada@example.com");
});

Deno.test("normalizeEmail lower-cases non-ASCII letters", () => {
  assert.equal(normalizeEmail("ZOË@Example.com"), "zoë@example.com");
  assert.equal(normalizeEmail("ÅSA@ÖREBRO.SE"), "åsa@örebro.se");
  assert.equal(normalizeEmail("ΘΣΕΡ@ΠΑΡΆΔΕΙΓΜΑ.ΔΟΚΙΜΉ"), "θσερ@παράδειγμα.δοκιμή");
});

Deno.test("normalizeEmail leaves inner whitespace alone (emailProblem rejects it)", () => {
  assert.equal(normalizeEmail(" A B@C "), "a b@c");
});

Deno.test("property: normalizeEmail is idempotent", () => {
  fc.assert(
    fc.property(fc.string({ unit: "binary" }), (text) => {
      const once = normalizeEmail(text);
      assert.equal(normalizeEmail(once), once);
    }),
  );
});

Deno.test("property: emailProblem ignores surrounding whitespace and returns a reason or undefined", () => {
  const space = fc.constantFrom(" ", "\t", "\n", "\r", "\u00a0", "\u3000", "\ufeff");
  fc.assert(
    fc.property(
      fc.array(space, { maxLength: 4 }),
      fc.string({ unit: "binary", maxLength: 40 }),
      fc.array(space, { maxLength: 4 }),
      (before, text, after) => {
        const problem = emailProblem(text);
        assert.ok(problem === undefined || (typeof problem === "string" && problem.length > 0));
        assert.equal(emailProblem(before.join("") + text + after.join("")), problem);
      },
    ),
  );
});

Deno.test("property: an address of a non-empty local part, @, non-empty domain, no spaces, is valid", () => {
  const part = fc.string({
    unit: fc.constantFrom("a", "Z", "0", ".", "-", "+", "_", "é", "Ë", "例", "😀"),
    minLength: 1,
    maxLength: 60,
  });
  fc.assert(
    fc.property(part, part, (local, domain) => {
      assert.equal(emailProblem(`${local}@${domain}`), undefined);
    }),
  );
});

function escape(text: string): string {
  return [...text].map((c) => `U+${c.codePointAt(0)!.toString(16).padStart(4, "0")}`).join(" ");
}

Deno.test("emailProblem refuses invisible and direction-changing characters, naming them", () => {
  const invisible = [
    0x200b,
    0x200c,
    0x200d,
    0x200e,
    0x200f,
    0x202a,
    0x202b,
    0x202c,
    0x202d,
    0x202e,
    0x2060,
    0x2061,
    0x2062,
    0x2063,
    0x2064,
    0x2066,
    0x2067,
    0x2068,
    0x2069,
    0x00ad,
    0xfeff,
    0x180e,
    0x061c,
    0x034f,
    0x115f,
    0x3164,
    0xfe0f,
    0xe0001,
    0x1d173,
  ];
  for (const code of invisible) {
    const char = String.fromCodePoint(code);
    const name = `U+${code.toString(16).toUpperCase().padStart(4, "0")}`;
    for (const address of [`ad${char}a@example.com`, `ada@exa${char}mple.com`]) {
      assert.equal(
        emailProblem(address),
        `it contains ${name}, an invisible or direction-changing character`,
        `${escape(address)}`,
      );
    }
  }
  // Visible non-ASCII letters and symbols are still fine.
  assert.equal(emailProblem("zoë.李@例子.广告"), undefined);
  assert.equal(emailProblem("a\u00b7b@example.com"), undefined);
});

Deno.test("codePointName writes at least four upper-case hex digits", () => {
  assert.equal(codePointName("\u200b"), "U+200B");
  assert.equal(codePointName("\u00ad"), "U+00AD");
  assert.equal(codePointName("\u{e0001}"), "U+E0001");
});

Deno.test("isAsciiSpace is the ASCII part of String.prototype.trim", () => {
  for (let byte = 0; byte < 128; byte++) {
    assert.equal(isAsciiSpace(byte), String.fromCharCode(byte).trim() === "", `byte ${byte}`);
  }
});

const encoder = new TextEncoder();

/**
 * normalizeAsciiEmailWords on `bytes[start, end)`, with `out` of `room`
 * bytes from `outStart`: its result, and what it wrote up to the length.
 */
function wordsKey(
  bytes: Uint8Array,
  start: number,
  end: number,
  room = MAX_EMAIL_CHARS + 2,
  outStart = 0,
): string | number {
  const out = new Uint8Array(outStart + room);
  const length = normalizeAsciiEmailWords(
    wordView(bytes),
    start,
    end,
    new DataView(out.buffer),
    outStart,
  );
  return length < 0 ? length : new TextDecoder().decode(out.subarray(outStart, outStart + length));
}

/** normalizeAsciiEmailWords on the whole of `text`, and what it wrote. */
function asciiKey(text: string, room = MAX_EMAIL_CHARS + 2): string | number {
  const bytes = encoder.encode(text);
  return wordsKey(bytes, 0, bytes.length, room);
}

Deno.test("normalizeAsciiEmailWords trims and lower-cases a plain-ASCII address", () => {
  assert.equal(asciiKey("ada@example.com"), "ada@example.com");
  assert.equal(asciiKey(" \t ADA@Example.COM\r\n"), "ada@example.com");
  assert.equal(asciiKey("a@b"), "a@b");
  assert.equal(asciiKey("x@[127.0.0.1]"), "x@[127.0.0.1]");
  assert.equal(
    asciiKey("a".repeat(MAX_EMAIL_CHARS - 2) + "@B"),
    "a".repeat(MAX_EMAIL_CHARS - 2) + "@b",
  );
});

Deno.test("normalizeAsciiEmailWords leaves to the general path what it cannot settle alone", () => {
  for (
    const text of [
      "",
      "   ",
      "ada.example.com",
      "ada@@example.com",
      "@example.com",
      "ada@",
      "ada lovelace@example.com",
      "ada@example.com\u0000",
      "ada@exa\u007fmple.com",
      "zoë@example.com",
      "\u00a0ada@example.com",
      "a".repeat(MAX_EMAIL_CHARS - 1) + "@b",
    ]
  ) {
    assert.equal(asciiKey(text), -1, JSON.stringify(text));
  }
  // An out buffer too small for the address: the general path too, never a write past its end.
  assert.equal(asciiKey("ada@example.com", 4), -1);
});

Deno.test("normalizeAsciiEmailWords reads only the range it is given", () => {
  const bytes = encoder.encode("xx@ ADA@example.com @yy");
  assert.equal(wordsKey(bytes, 3, bytes.length - 3), "ada@example.com");
});

Deno.test("normalizeAsciiEmailWords writes whole words, zero past the address", () => {
  const bytes = encoder.encode("Ada@Example.COM"); // 15 bytes: the last word has three
  const out = new Uint8Array(20).fill(0xff);
  const length = normalizeAsciiEmailWords(
    new DataView(bytes.buffer),
    0,
    bytes.length,
    new DataView(out.buffer),
    0,
  );
  assert.equal(length, 15);
  assert.deepEqual([...out.subarray(12, 20)], [0x63, 0x6f, 0x6d, 0, 0xff, 0xff, 0xff, 0xff]);
  // Room for the length but not for its last whole word: the general path.
  assert.equal(wordsKey(bytes, 0, bytes.length, 15), -1);
  assert.equal(wordsKey(bytes, 0, bytes.length, 16), "ada@example.com");
});

Deno.test("normalizeAsciiEmailWords ignores the bytes past the range, even an @ or a control", () => {
  for (const after of ["", "@", "\u0000", "@@@", "é", " \t"]) {
    const bytes = encoder.encode("xx@ ADA@example.co" + after);
    assert.equal(wordsKey(bytes, 3, 18), "ada@example.co", JSON.stringify(after));
    // Ending at the buffer's very end, and one to three bytes before it.
    const tail = encoder.encode("b@c" + after);
    assert.equal(wordsKey(tail, 0, 3), "b@c", JSON.stringify(after));
  }
});

Deno.test("property: normalizeAsciiEmailWords agrees with emailProblem and normalizeEmail", () => {
  const char = fc.constantFrom(
    "a",
    "Z",
    "A",
    "z",
    "0",
    ".",
    "@",
    "`",
    "[",
    " ",
    "\t",
    "\n",
    "\u0000",
    "\u007f",
    "é",
    "~",
    "!",
  );
  fc.assert(
    fc.property(
      fc.oneof(
        fc.string({ unit: char, maxLength: 24 }),
        fc.integer({ min: 250, max: 258 }).map((n) => `${"a".repeat(n - 2)}@B`),
      ),
      fc.string({ unit: char, maxLength: 5 }),
      fc.string({ unit: char, maxLength: 5 }),
      fc.integer({ min: 0, max: 7 }),
      (text, before, after, outStart) => {
        // The address among other bytes, which must change nothing.
        const bytes = encoder.encode(before + text + after);
        const start = encoder.encode(before).length;
        const end = start + encoder.encode(text).length;
        const key = wordsKey(bytes, start, end, MAX_EMAIL_CHARS + 2, outStart);
        if (key === -1) {
          // Left to the general path: either invalid, or valid with something not plain ASCII.
          const problem = emailProblem(text);
          if (problem === undefined) assert.ok(/[^\x21-\x7e]/.test(text.trim()), text);
        } else {
          assert.equal(emailProblem(text), undefined, text);
          assert.equal(key, normalizeEmail(text));
        }
      },
    ),
    { numRuns: 5000 },
  );
});

Deno.test("WordViews makes a view once per buffer, over the bytes the array covers", () => {
  const views = new WordViews();
  const buffer = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
  const part = buffer.subarray(2, 6);
  const view = views.of(part);
  assert.equal(views.of(part), view);
  assert.equal(view.byteLength, 4);
  assert.equal(view.getUint8(0), 3);
  assert.notEqual(views.of(buffer), view);
  assert.equal(views.of(buffer).getUint8(0), 1);
});
