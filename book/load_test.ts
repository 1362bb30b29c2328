import assert from "node:assert/strict";
import fc from "fast-check";
import { csvField } from "../tools/gen.ts";
import {
  BookError,
  type BookProblem,
  formatFromPath,
  formatProblem,
  loadBook,
  loadBookFromText,
  type LoadOptions,
  MAX_BOOK_BYTES,
  MAX_NAME_BYTES,
  MAX_RECORD_BYTES,
} from "./load.ts";
import { formatVCard } from "./vcard.ts";

/** Writes the files into a fresh temporary directory, runs `fn` on it, then removes it. */
async function withFiles(
  files: Record<string, string | Uint8Array>,
  fn: (dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "load_book_test_" });
  try {
    for (const [name, content] of Object.entries(files)) {
      if (typeof content === "string") await Deno.writeTextFile(`${dir}/${name}`, content);
      else await Deno.writeFile(`${dir}/${name}`, content);
    }
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Loads one file with the given content from a temporary directory. */
async function load(name: string, content: string | Uint8Array, options?: LoadOptions) {
  let result: Awaited<ReturnType<typeof loadBook>> | undefined;
  await withFiles({ [name]: content }, async (dir) => {
    result = await loadBook(`${dir}/${name}`, options);
  });
  return result!;
}

/** Loads one file that must fail; returns its problems as `line: message` strings. */
async function problemsOf(
  name: string,
  content: string | Uint8Array,
  options?: LoadOptions,
): Promise<string[]> {
  let problems: BookProblem[] = [];
  await withFiles({ [name]: content }, async (dir) => {
    const error = await loadBook(`${dir}/${name}`, options).then(
      () => assert.fail("the book loaded, but problems were expected"),
      (error) => error,
    );
    assert.ok(error instanceof BookError, `expected a BookError, got ${error}`);
    for (const problem of error.problems) assert.equal(problem.file, `${dir}/${name}`);
    problems = error.problems;
  });
  return problems.map((problem) => `${problem.line}: ${problem.message}`);
}

/** Every entry of a book, through its public lookup. */
function lookUp(book: { get(email: string): string | undefined }, emails: string[]) {
  return Object.fromEntries(emails.map((email) => [email, book.get(email)]));
}

// --- CSV -------------------------------------------------------------------

Deno.test("loadBook reads CSV with quoted commas, doubled quotes and line breaks", async () => {
  const csv = 'email,name\r\n"smith@example.com","Smith, Jr., John"\r\n' +
    'quill@example.com,"Dwayne ""The Quill"" Johnson"\r\n' +
    'two.lines@example.com,"First line\r\nsecond line"\r\n' +
    "plain@example.com,Plain Person\r\n" +
    "bad-after-multiline,Someone\r\n";
  const problems = await problemsOf("book.csv", csv);
  // The multi-line record takes lines 4 and 5, so the bad row is on line 7; a name may not
  // hold the line break (a control character, see common/terminal_text.ts).
  assert.deepEqual(problems, [
    "4: The name contains U+000D, a control or direction-changing character.",
    "7: The email is not valid: it has no @.",
  ]);

  const { book, entries, format } = await load(
    "book.csv",
    csv.replace(/bad-after.*\r\n$/, "").replace("First line\r\nsecond line", "First line,\r\n"),
  );
  assert.equal(format, "csv");
  assert.equal(entries, 4);
  assert.deepEqual(
    lookUp(book, [
      "smith@example.com",
      "quill@example.com",
      "two.lines@example.com",
      "plain@example.com",
    ]),
    {
      "smith@example.com": "Smith, Jr., John",
      "quill@example.com": 'Dwayne "The Quill" Johnson',
      "two.lines@example.com": "First line,",
      "plain@example.com": "Plain Person",
    },
  );
});

Deno.test("loadBook reads CSV with LF line ends and no line break at the end", async () => {
  const { book, entries } = await load(
    "book.csv",
    'email,name\nada@example.com,Ada Lovelace\n"alan@example.com","Turing, Alan"',
  );
  assert.equal(entries, 2);
  assert.equal(book.get("alan@example.com"), "Turing, Alan");
});

Deno.test("loadBook skips blank lines in CSV but counts them for line numbers", async () => {
  const problems = await problemsOf(
    "book.csv",
    "email,name\n\nada@example.com,Ada\n\n\nnope,Nobody\n",
  );
  assert.deepEqual(problems, ["6: The email is not valid: it has no @."]);
});

Deno.test("loadBook ignores a UTF-8 byte order mark in every format", async () => {
  const bom = "\uFEFF";
  const csv = await load("book.csv", `${bom}email,name\r\nada@example.com,Ada Lovelace\r\n`);
  assert.equal(csv.book.get("ada@example.com"), "Ada Lovelace");
  const json = await load("book.json", `${bom}{"ada@example.com": "Ada Lovelace"}`);
  assert.equal(json.book.get("ada@example.com"), "Ada Lovelace");
  const vcard = await load(
    "book.vcf",
    bom + formatVCard([{ name: "Ada Lovelace", emails: ["ada@example.com"] }], "4.0"),
  );
  assert.equal(vcard.book.get("ada@example.com"), "Ada Lovelace");
});

Deno.test("loadBook keeps non-ASCII names and emails, normalising emails", async () => {
  const { book } = await load(
    "book.csv",
    "email,name\nZoë@Example.COM,Zoë Müller\n  li@example.com  ,  李小龙  \n" +
      "oyvind@example.net,Øyvind Ñúñez 🎉\n",
  );
  assert.equal(book.get("zoë@example.com"), "Zoë Müller");
  assert.equal(book.get("LI@example.com"), "李小龙");
  assert.equal(book.get("oyvind@example.net"), "Øyvind Ñúñez 🎉");
});

Deno.test("loadBook reports a duplicate email naming both lines by default", async () => {
  const csv = "email,name\nada@example.com,Ada\nalan@example.com,Alan\n" +
    " ADA@example.com ,Another Ada\nalan@example.com,Alan Again\n";
  assert.deepEqual(await problemsOf("book.csv", csv), [
    "4: The email is a duplicate of line 2.",
    "5: The email is a duplicate of line 3.",
  ]);
  assert.deepEqual(await problemsOf("book.csv", csv, { duplicates: "error" }), [
    "4: The email is a duplicate of line 2.",
    "5: The email is a duplicate of line 3.",
  ]);
});

Deno.test("loadBook keeps the first or the last of duplicates when asked", async () => {
  const csv = "email,name\nada@example.com,First Ada\nada@example.com,Second Ada\n" +
    "ADA@example.com,Third Ada\nalan@example.com,Alan\n";
  const first = await load("book.csv", csv, { duplicates: "first" });
  assert.equal(first.entries, 2);
  assert.equal(first.duplicates, 2);
  assert.equal(first.book.get("ada@example.com"), "First Ada");
  const last = await load("book.csv", csv, { duplicates: "last" });
  assert.equal(last.entries, 2);
  assert.equal(last.duplicates, 2);
  assert.equal(last.book.get("ada@example.com"), "Third Ada");
  assert.equal(last.book.get("alan@example.com"), "Alan");
});

Deno.test("loadBook reports every invalid email with its line and reason", async () => {
  const csv = "email,name\nno-at-sign,A\n@example.com,B\nada@,C\na@b@c,D\n" +
    "has space@example.com,E\n,F\nfine@example.com,G\n";
  assert.deepEqual(await problemsOf("book.csv", csv), [
    "2: The email is not valid: it has no @.",
    "3: The email is not valid: nothing comes before the @.",
    "4: The email is not valid: nothing comes after the @.",
    "5: The email is not valid: it has more than one @.",
    "6: The email is not valid: it contains whitespace or a control character.",
    "7: The email is not valid: it is empty.",
  ]);
});

Deno.test("loadBook reports an empty or blank name", async () => {
  assert.deepEqual(
    await problemsOf("book.csv", 'email,name\na@example.com,\nb@example.com,"   "\n'),
    ["2: The name is empty.", "3: The name is empty."],
  );
});

Deno.test("loadBook reports a name too long for a reply frame", async () => {
  const long = "é".repeat(MAX_NAME_BYTES / 2 + 1);
  assert.deepEqual(await problemsOf("book.csv", `email,name\na@example.com,${long}\n`), [
    `2: The name is ${MAX_NAME_BYTES + 1} bytes long, over the limit of ${MAX_NAME_BYTES}.`,
  ]);
  const { book } = await load(
    "book.csv",
    `email,name\na@example.com,${"x".repeat(MAX_NAME_BYTES)}\n`,
  );
  assert.equal(book.get("a@example.com")?.length, MAX_NAME_BYTES);
});

Deno.test("loadBook reports every line of a CSV file without commas", async () => {
  assert.deepEqual(await problemsOf("book.csv", "email\na@example.com\n"), [
    '1: The header has no name column; the columns are "email".',
  ]);
  const rows = Array.from({ length: 3 }, (_, i) => `p${i}@example.com`).join("\n");
  assert.deepEqual(await problemsOf("book.csv", `email,name\n${rows}\n`), [
    "2: The record has 1 field, but the header has 2.",
    "3: The record has 1 field, but the header has 2.",
    "4: The record has 1 field, but the header has 2.",
  ]);
});

Deno.test("loadBook reports a record with the wrong number of fields", async () => {
  assert.deepEqual(
    await problemsOf(
      "book.csv",
      'email,name\na@example.com\nb@example.com,B,extra\n"c@example.com","C",""\n',
    ),
    [
      "2: The record has 1 field, but the header has 2.",
      "3: The record has 3 fields, but the header has 2.",
      "4: The record has 3 fields, but the header has 2.",
    ],
  );
});

Deno.test("loadBook reports malformed quoting at the line its record starts", async () => {
  const csv = 'email,name\na@example.com,"Never closed\nb@example.com,B\n';
  assert.deepEqual(await problemsOf("book.csv", csv), ["2: A quoted field is never closed."]);
  const stray = 'email,name\na@example.com,Stray "quote\nb@example.com,"Bad" close\n' +
    "c@example.com,C\nd,D\n";
  assert.deepEqual(await problemsOf("book.csv", stray), [
    "2: A field that does not start with a quote contains one.",
    "3: A quoted field's closing quote is followed by something other than a comma or line end.",
    "5: The email is not valid: it has no @.",
  ]);
});

Deno.test("loadBook needs a CSV header with an email and a name column", async () => {
  assert.deepEqual(await problemsOf("book.csv", "address,person\na@example.com,A\n"), [
    '1: The header has no email column; the columns are "address", "person".',
  ]);
  assert.deepEqual(await problemsOf("book.csv", "email,phone\na@example.com,555\n"), [
    '1: The header has no name column; the columns are "email", "phone".',
  ]);
  // A file without a header: the first entry must not be echoed as if it were headers.
  const [problem] = await problemsOf("book.csv", "ada@example.com,Ada Lovelace\n");
  assert.match(problem, /^1: .*must start with a header row/);
  assert.ok(!problem.includes("ada@example.com") && !problem.includes("Ada Lovelace"));
  assert.deepEqual(await problemsOf("book.csv", "\n\n"), ["0: The file is empty."]);
});

Deno.test("loadBook reads a CSV export from Outlook", async () => {
  const csv = '"First Name","Middle Name","Last Name","Company","E-mail Address",' +
    '"E-mail Display Name"\r\n' +
    '"Ada","King","Lovelace","Analytical Engines","ada@example.com","Ada (ada@example.com)"\r\n' +
    '"No","Email","Person","","",""\r\n' +
    '"Grace","","Hopper","","grace@example.org",""\r\n';
  const { book, entries } = await load("contacts.csv", csv);
  assert.equal(entries, 2);
  assert.equal(book.get("ada@example.com"), "Ada King Lovelace");
  assert.equal(book.get("grace@example.org"), "Grace Hopper");
});

Deno.test("loadBook reads CSV exports from Google Contacts, old and new", async () => {
  const old = "Name,Given Name,Additional Name,Family Name,Nickname,E-mail 1 - Type," +
    "E-mail 1 - Value\n" +
    "Ada Lovelace,Ada,,Lovelace,,* Home,ada@example.com\n" +
    ",Alan,,Turing,,* Work,alan@example.com\n" +
    "Phone Only,Phone,,Only,,,\n";
  const oldBook = await load("google.csv", old);
  assert.equal(oldBook.entries, 2);
  assert.equal(oldBook.book.get("ada@example.com"), "Ada Lovelace");
  assert.equal(oldBook.book.get("alan@example.com"), "Alan Turing");

  const current = "First Name,Middle Name,Last Name,Nickname,E-mail 1 - Label,E-mail 1 - Value\n" +
    "José,,Ñúñez,Pepe,* Home,jose@example.com\n";
  const currentBook = await load("google.csv", current);
  assert.equal(currentBook.book.get("jose@example.com"), "José Ñúñez");
});

Deno.test("loadBook reads a CSV export from Thunderbird", async () => {
  const csv = "First Name,Last Name,Display Name,Nickname,Primary Email,Secondary Email\n" +
    "Zoë,Müller,Dr. Zoë Müller,,zoe@example.net,zoe.alt@example.net\n" +
    "Øyvind,Lie,,,oyvind@example.net,\n";
  const { book, entries } = await load("abook.csv", csv);
  assert.equal(entries, 3);
  assert.equal(book.get("zoe@example.net"), "Dr. Zoë Müller");
  assert.equal(book.get("zoe.alt@example.net"), "Dr. Zoë Müller");
  // No display name: the first and last names make one.
  assert.equal(book.get("oyvind@example.net"), "Øyvind Lie");
});

Deno.test("loadBook matches contact-app headers ignoring case and surrounding spaces", async () => {
  const { book } = await load("book.csv", " E-MAIL ADDRESS , full name \na@example.com,A Person\n");
  assert.equal(book.get("a@example.com"), "A Person");
});

Deno.test("loadBook skips rows without email in exports but not in email,name files", async () => {
  const exported = await load("book.csv", "Full Name,Email Address\nNo Mail,\nA,a@example.com\n");
  assert.equal(exported.entries, 1);
  assert.deepEqual(await problemsOf("book.csv", "email,name\n,No Mail\n"), [
    "2: The email is not valid: it is empty.",
  ]);
});

Deno.test("loadBook uses the email and name columns it is told to", async () => {
  const csv = "id,work address,home address,nick\n1,a@example.com,a@example.org,Ace\n";
  const { book } = await load("book.csv", csv, {
    emailColumn: "Home Address",
    nameColumn: "nick",
  });
  assert.equal(book.get("a@example.org"), "Ace");
  assert.equal(book.get("a@example.com"), undefined);

  assert.deepEqual(await problemsOf("book.csv", csv, { emailColumn: "mail" }), [
    "1: The header has no email column named as asked; the columns are " +
    '"id", "work address", "home address", "nick".',
  ]);
  assert.deepEqual(
    await problemsOf("book.csv", csv, { emailColumn: "work address", nameColumn: "who" }),
    [
      "1: The header has no name column named as asked; the columns are " +
      '"id", "work address", "home address", "nick".',
    ],
  );
});

// --- Reading the file --------------------------------------------------------

Deno.test("loadBook reports a missing file in words", async () => {
  await withFiles({}, async (dir) => {
    const path = `${dir}/missing.csv`;
    const error = await loadBook(path).catch((error) => error);
    assert.ok(error instanceof BookError);
    assert.deepEqual(error.problems, [
      { file: path, line: 0, message: "Cannot read the file: no such file." },
    ]);
    assert.equal(error.message, `${path}: Cannot read the file: no such file.`);
  });
});

Deno.test("loadBook reports a directory in words", async () => {
  await withFiles({}, async (dir) => {
    const error = await loadBook(dir).catch((error) => error);
    assert.ok(error instanceof BookError);
    assert.deepEqual(error.problems, [
      { file: dir, line: 0, message: "Cannot read the file: it is a directory." },
    ]);
  });
});

Deno.test("loadBook refuses a FIFO, /dev/zero and a sparse file over the size limit before reading", async () => {
  await withFiles({}, async (dir) => {
    const fifo = `${dir}/fifo.csv`;
    const made = await new Deno.Command("mkfifo", { args: [fifo] }).output();
    assert.ok(made.success, "mkfifo");
    await Deno.symlink("/dev/zero", `${dir}/zero.csv`);
    const huge = `${dir}/huge.csv`;
    using file = await Deno.create(huge);
    await file.truncate(MAX_BOOK_BYTES + 1); // sparse: no disk, no time
    for (
      const [path, reason] of [
        [fifo, "it is not a regular file"],
        [`${dir}/zero.csv`, "it is not a regular file"],
        [huge, `it is ${MAX_BOOK_BYTES + 1} bytes, over the limit of ${MAX_BOOK_BYTES}`],
      ]
    ) {
      const error = await loadBook(path).catch((error) => error);
      assert.ok(error instanceof BookError, String(error));
      assert.deepEqual(error.problems, [
        { file: path, line: 0, message: `Cannot read the file: ${reason}.` },
      ]);
    }
  });
});

Deno.test("loadBook refuses a record over MAX_RECORD_BYTES in every format, after reading little more", async () => {
  const long = "x".repeat(MAX_RECORD_BYTES + 1);
  assert.deepEqual(await problemsOf("book.csv", `email,name\nada@example.com,Ada\n${long}`), [
    `3: A record from here is over ${MAX_RECORD_BYTES} bytes long, which no entry is; the file is not read further.`,
  ]);
  assert.deepEqual(await problemsOf("book.json", `[{"email": "a@b.example", "name": "${long}"}]`), [
    `1: The JSON is not valid: a string is over ${MAX_RECORD_BYTES} bytes long.`,
  ]);
  const card = `BEGIN:VCARD\nVERSION:4.0\nFN:Ada\nEMAIL:ada@example.com\nEND:VCARD\n`;
  // Two chunks more than the limit, so that the limit is met before the file's end.
  const endless = `${card}BEGIN:VCARD\nVERSION:4.0\nNOTE:${long}${"x".repeat(1 << 21)}`;
  assert.deepEqual(await problemsOf("book.vcf", endless), [
    `6: A record from here is over ${MAX_RECORD_BYTES} bytes long, which no entry is; the file is not read further.`,
  ]);
});

Deno.test("loadBook refuses a sparse file of zeros at the first record, holding at most a few record lengths", async () => {
  await withFiles({}, async (dir) => {
    const path = `${dir}/sparse.csv`;
    using file = await Deno.create(path);
    await file.write(new TextEncoder().encode("email,name\n"));
    await file.truncate(2 ** 31); // 2 GiB, nearly all of it a hole
    const before = Deno.memoryUsage().rss;
    const started = Date.now();
    const error = await loadBook(path).catch((error) => error);
    assert.ok(error instanceof BookError, String(error));
    assert.match(
      error.problems[0].message,
      /over 16777216 bytes long/,
      JSON.stringify(error.problems),
    );
    assert.equal(error.problems[0].line, 2);
    const grew = Deno.memoryUsage().rss - before;
    assert.ok(grew < 8 * MAX_RECORD_BYTES, `memory grew by ${grew} bytes`);
    assert.ok(Date.now() - started < 10_000);
  });
});

Deno.test("loadBook reports a file that is not UTF-8, with the line", async () => {
  const latin1 = new Uint8Array([
    ...new TextEncoder().encode("email,name\nada@example.com,Ada\nzoe@example.com,Zo"),
    0xeb, // "ë" in Latin-1, not UTF-8
    0x0a,
  ]);
  assert.deepEqual(await problemsOf("book.csv", latin1), ["3: The file is not valid UTF-8."]);
});

Deno.test("loadBook accepts a U+FFFD that is really in the file", async () => {
  const { book } = await load("book.csv", "email,name\nq@example.com,Question \uFFFD Mark\n");
  assert.equal(book.get("q@example.com"), "Question \uFFFD Mark");
});

// --- JSON --------------------------------------------------------------------

Deno.test("loadBook reads a JSON object mapping emails to names", async () => {
  const json = JSON.stringify({ "ada@example.com": "Ada Lovelace", "Li@Example.com": "李小龙" });
  const { book, entries, format } = await load("book.json", json);
  assert.equal(format, "json");
  assert.equal(entries, 2);
  assert.deepEqual(lookUp(book, ["ada@example.com", "li@example.com"]), {
    "ada@example.com": "Ada Lovelace",
    "li@example.com": "李小龙",
  });
});

Deno.test("loadBook reads a JSON array of email and name objects", async () => {
  const json = JSON.stringify(
    [
      { email: "ada@example.com", name: 'Ada "Countess" Lovelace\u00e9\n' },
      { name: "Alan Turing", email: "alan@example.com", phone: [1, 2, { x: null }] },
    ],
    null,
    2,
  );
  const { book, entries } = await load("book.json", json);
  assert.equal(entries, 2);
  assert.equal(book.get("ada@example.com"), 'Ada "Countess" Lovelace\u00e9');
  assert.equal(book.get("alan@example.com"), "Alan Turing");
  const empty = await load("book.json", "[]", { allowEmpty: true });
  assert.equal(empty.entries, 0);
});

Deno.test("loadBook reports JSON entries by the line they start on", async () => {
  const json = '{\n  "ada@example.com": "Ada",\n  "not-an-email": "X",\n' +
    '  "alan@example.com": 42,\n  "ADA@example.com": "Ada Again",\n  "b@example.com": " "\n}\n';
  assert.deepEqual(await problemsOf("book.json", json), [
    "3: The email is not valid: it has no @.",
    "4: The name is not a string.",
    "5: The email is a duplicate of line 2.",
    "6: The name is empty.",
  ]);
  const array = '[\n  {"email": "a@example.com", "name": "A"},\n  "just a string",\n' +
    '  {"email": "b@example.com"},\n  {"name": "C"},\n  {"email": 7, "name": "D"},\n' +
    '  {"email": "e@example.com", "name": "E", "name": "E2"}\n]';
  assert.deepEqual(await problemsOf("book.json", array), [
    '3: The entry is not an object with "email" and "name".',
    '4: The entry has no "name".',
    '5: The entry has no "email".',
    "6: The email is not a string.",
    '7: The entry has "name" more than once.',
  ]);
});

Deno.test("loadBook reports an exact repeated JSON key, which JSON.parse would hide", async () => {
  assert.deepEqual(
    await problemsOf("book.json", '{"a@example.com": "A",\n"a@example.com": "B"}'),
    ["2: The email is a duplicate of line 1."],
  );
});

Deno.test("loadBook reports JSON of the wrong shape or syntax", async () => {
  const shape = "The JSON must be an object mapping each email to a name, or an array of " +
    'objects with "email" and "name".';
  assert.deepEqual(await problemsOf("book.json", '"ada@example.com"'), [`1: ${shape}`]);
  assert.deepEqual(await problemsOf("book.json", "\n42"), [`2: ${shape}`]);
  assert.deepEqual(await problemsOf("book.json", '{"a@example.com": "A",\n}'), [
    "2: The JSON is not valid: expected an email in quotes.",
  ]);
  assert.deepEqual(await problemsOf("book.json", '{"a@example.com": "A"\n"b": "B"}'), [
    "2: The JSON is not valid: expected a comma or }.",
  ]);
  assert.deepEqual(await problemsOf("book.json", '{"a@example.com": "A"} extra'), [
    "1: The JSON is not valid: there is more text after the JSON value.",
  ]);
  assert.deepEqual(await problemsOf("book.json", '[{"email": "a@example.com", "name": "A\n"}]'), [
    "1: The JSON is not valid: a string contains a control character.",
  ]);
  assert.deepEqual(await problemsOf("book.json", '{"a@example.com": "unclosed'), [
    "1: The JSON is not valid: a string is never closed.",
  ]);
  // "01" is the number 0 followed by a stray 1.
  const notAnEntry = '1: The entry is not an object with "email" and "name".';
  assert.deepEqual(await problemsOf("book.json", "[1.5e3, -0, 01]"), [
    notAnEntry,
    notAnEntry,
    notAnEntry,
    "1: The JSON is not valid: expected a comma or ].",
  ]);
  assert.deepEqual(await problemsOf("book.json", "[true, null, 1., -]"), [
    notAnEntry,
    notAnEntry,
    "1: The JSON is not valid: a number has no digits after its point.",
  ]);
});

// --- vCard -------------------------------------------------------------------

Deno.test("loadBook maps every EMAIL of a vCard to its name and skips cards without one", async () => {
  const vcf = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Ada Lovelace\r\nN:Lovelace;Ada;;;\r\n" +
    "EMAIL;TYPE=HOME:ada@example.com\r\nEMAIL;TYPE=WORK:ada@example.org\r\n" +
    "EMAIL;TYPE=OTHER:ADA@example.com\r\nEND:VCARD\r\n" +
    "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:No Email\r\nTEL:+1 555 0100\r\nEND:VCARD\r\n" +
    "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Smith\\, Jr.\\, John\r\nEMAIL:john@example.net\r\n" +
    "END:VCARD\r\n";
  const { book, entries, format } = await load("contacts.vcf", vcf);
  assert.equal(format, "vcard");
  assert.equal(entries, 3);
  assert.deepEqual(lookUp(book, ["ada@example.com", "ada@example.org", "john@example.net"]), {
    "ada@example.com": "Ada Lovelace",
    "ada@example.org": "Ada Lovelace",
    "john@example.net": "Smith, Jr., John",
  });
});

Deno.test("loadBook reports vCard problems at their lines, in line order", async () => {
  const vcf = "BEGIN:VCARD\nVERSION:4.0\nFN:Ada\nEMAIL:ada@example.com\nEND:VCARD\n" +
    "BEGIN:VCARD\nVERSION:4.0\nFN:Bad Email\nEMAIL:not-an-email\nEND:VCARD\n" +
    "BEGIN:VCARD\nVERSION:4.0\nFN:Ada Again\nEMAIL:ada@example.com\nEND:VCARD\n" +
    "BEGIN:VCARD\nVERSION:4.0\nEMAIL:nameless@example.com\nEND:VCARD\n" +
    "BEGIN:VCARD\nVERSION:4.0\nFN:Unfinished\nEMAIL:u@example.com\n";
  const problems = await problemsOf("book.vcf", vcf);
  assert.deepEqual(problems.slice(0, 2), [
    "9: The email is not valid: it has no @.",
    "14: The email is a duplicate of line 4.",
  ]);
  assert.equal(problems.length, 4);
  assert.match(problems[2], /^16: .*line 16.*no name/);
  assert.match(problems[3], /^20: .*line 20.*END:VCARD/);
});

Deno.test("loadBook gives right vCard line numbers deep into a large file", async () => {
  // Big enough that the loader hands the text to the parser in several pieces.
  const contacts = Array.from({ length: 5000 }, (_, i) => ({
    name: `Person ${i}`,
    emails: [`person${i}@example.com`],
  }));
  contacts[4000].emails = ["broken.example.com"];
  const text = formatVCard(contacts, "3.0") + "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Last\r\n";
  const linesPerCard = 6; // BEGIN, VERSION, FN, N, EMAIL, END
  const unfinished = 5000 * linesPerCard + 1;
  assert.deepEqual(await problemsOf("book.vcf", text), [
    `${4000 * linesPerCard + 5}: The email is not valid: it has no @.`,
    `${unfinished}: The card starting at line ${unfinished} has no END:VCARD line, ` +
    "so it was not read.",
  ]);
  const good = await load("book.vcf", formatVCard(contacts.slice(0, 4000), "4.0"));
  assert.equal(good.entries, 4000);
  assert.equal(good.book.get("person3999@example.com"), "Person 3999");
});

/** Path of a fixture in testdata/books. */
function fixture(name: string): string {
  return new URL(`../testdata/books/${name}`, import.meta.url).pathname;
}

Deno.test("loadBook reads the contact-app exports in testdata/books", async () => {
  const expected: Record<string, Record<string, string>> = {
    "outlook.csv": {
      "ada@example.com": "Ada King Lovelace",
      "ada.king@example.org": "Ada King Lovelace",
      "charles@example.com": "Charles Babbage",
      "zoe.mueller@example.net": "Zoë Müller",
    },
    "google.csv": {
      "grace@example.org": "Grace Brewster Hopper",
      "g.hopper@example.com": "Grace Brewster Hopper",
      "jose.nunez@example.com": "José Ñúñez",
      "li.xiaolong@example.com": "李 小龙",
    },
    "google_old.csv": {
      "alan@example.com": "Alan Turing",
      "oyvind@example.net": "Øyvind Lie",
    },
    "thunderbird.csv": {
      "asa.strom@example.org": "Åsa Ström",
      "bjorn@example.com": "Björn Lindqvist",
      "bjorn.alt@example.com": "Björn Lindqvist",
      "helpdesk@example.org": "Example Help Desk",
    },
    "google_several.csv": {
      "grace@example.org": "Grace Brewster Hopper",
      "g.hopper@example.com": "Grace Brewster Hopper",
      "grace.hopper@example.net": "Grace Brewster Hopper",
      // Two addresses joined by " ::: " in one cell, and the first again in another case.
      "katherine@example.com": "Katherine Johnson",
      "k.johnson@example.com": "Katherine Johnson",
      // Only a second address.
      "radia@example.org": "Radia Perlman",
    },
    "outlook_several.csv": {
      "ada@example.com": "Ada King Lovelace",
      "ada.king@example.org": "Ada King Lovelace",
      "countess@example.net": "Ada King Lovelace",
      "charles@example.com": "Charles Babbage",
      "c.babbage@example.org": "Charles Babbage",
      "mary@example.net": "Mary Somerville",
    },
    "contacts.vcf": {
      "johnny.appleseed@example.com": "Johnny Appleseed",
      "j.appleseed@example.org": "Johnny Appleseed",
      "zoe.muller@example.net": "Zoë Müller",
      "juergen.mueller@example.com": "Jürgen Müller",
    },
    "book.json": {
      "ada@example.com": "Ada Lovelace",
      "zoe.muller@example.net": "Zoë Müller",
      "li.xiaolong@example.com": "李小龙",
      "john.smith@example.com": "Smith, Jr., John",
    },
    "book_array.json": {
      "ada@example.com": "Ada Lovelace",
      "jose.nunez@example.com": "José Ñúñez",
      "dwayne@example.org": 'Dwayne "The Quill" Johnson',
    },
  };
  for (const [name, people] of Object.entries(expected)) {
    const { book, entries } = await loadBook(fixture(name));
    assert.equal(entries, Object.keys(people).length, name);
    assert.deepEqual(lookUp(book, Object.keys(people)), people, name);
  }
});

Deno.test("loadBook keeps the given name and surname of the exports in testdata/books that have them", async () => {
  type Parts = { givenName?: string; surname?: string };
  const expected: Record<string, Record<string, Parts>> = {
    // Outlook: First Name, Last Name.
    "outlook.csv": {
      "ada@example.com": { givenName: "Ada", surname: "Lovelace" },
      "charles@example.com": { givenName: "Charles", surname: "Babbage" },
      "zoe.mueller@example.net": { givenName: "Zoë", surname: "Müller" },
    },
    // Google, current: First Name, Last Name.
    "google.csv": {
      "grace@example.org": { givenName: "Grace", surname: "Hopper" },
      "jose.nunez@example.com": { givenName: "José", surname: "Ñúñez" },
      "li.xiaolong@example.com": { givenName: "李", surname: "小龙" },
    },
    // Every address of a contact has its given name and surname.
    "google_several.csv": {
      "grace.hopper@example.net": { givenName: "Grace", surname: "Hopper" },
      "k.johnson@example.com": { givenName: "Katherine", surname: "Johnson" },
    },
    "outlook_several.csv": {
      "countess@example.net": { givenName: "Ada", surname: "Lovelace" },
      "mary@example.net": { givenName: "Mary", surname: "Somerville" },
    },
    // Google, older: Given Name, Family Name.
    "google_old.csv": {
      "alan@example.com": { givenName: "Alan", surname: "Turing" },
      "oyvind@example.net": { givenName: "Øyvind", surname: "Lie" },
    },
    // Thunderbird: First Name, Last Name; a blank one is none.
    "thunderbird.csv": {
      "asa.strom@example.org": { givenName: "Åsa", surname: "Ström" },
      "bjorn@example.com": { givenName: "Björn", surname: "Lindqvist" },
      "helpdesk@example.org": {},
    },
    // vCard: N is family;given;... (quoted-printable in the 2.1 card).
    "contacts.vcf": {
      "johnny.appleseed@example.com": { givenName: "Johnny", surname: "Appleseed" },
      "j.appleseed@example.org": { givenName: "Johnny", surname: "Appleseed" },
      "zoe.muller@example.net": { givenName: "Zoë", surname: "Müller" },
      "juergen.mueller@example.com": { givenName: "Jürgen", surname: "Müller" },
    },
    // JSON has no such fields.
    "book.json": {
      "ada@example.com": {},
      "john.smith@example.com": {},
    },
  };
  for (const [name, people] of Object.entries(expected)) {
    const { book } = await loadBook(fixture(name));
    for (const [email, parts] of Object.entries(people)) {
      const { givenName, surname } = book.entry(book.find(new TextEncoder().encode(email)));
      const found: Parts = {};
      if (givenName !== undefined) found.givenName = givenName;
      if (surname !== undefined) found.surname = surname;
      assert.deepEqual(found, parts, `${name}: ${email}`);
    }
  }
});

Deno.test("loadBook stores no given names or surnames for a book without them, and keeps its fingerprint", async () => {
  const { book } = await loadBook(fixture("book.json"));
  assert.equal(book.toShared().namePartStarts.length, 0);
  // The same entries with name parts have the same fingerprint: the parts are not part of it.
  const plain = loadBookFromText(
    "email,name\nada@example.com,Ada Lovelace\n",
    "plain.csv",
  ).book;
  const parts = loadBookFromText(
    "email,name,first name,last name\nada@example.com,Ada Lovelace,Ada,Lovelace\n",
    "parts.csv",
  ).book;
  assert.equal(parts.entry(0).givenName, "Ada");
  assert.equal(parts.fingerprint, plain.fingerprint);
});

Deno.test("loadBook lists every problem of testdata/books/bad.csv", async () => {
  const error = await loadBook(fixture("bad.csv")).catch((error) => error);
  assert.ok(error instanceof BookError);
  assert.deepEqual(error.problems.map(formatProblem), [
    `${fixture("bad.csv")}:3: The email is not valid: it has no @.`,
    `${fixture("bad.csv")}:4: The name is empty.`,
    `${fixture("bad.csv")}:5: The record has 3 fields, but the header has 2.`,
    `${fixture("bad.csv")}:6: The email is a duplicate of line 2.`,
  ]);
});

// --- Everything together -----------------------------------------------------

Deno.test("loadBook reports all problems, in line order, and builds nothing", async () => {
  const csv = "email,name\nbad,A\nb@example.com,\nc@example.com,C,extra\n" +
    "d@example.com,D\nd@example.com,D2\n";
  await withFiles({ "book.csv": csv }, async (dir) => {
    const path = `${dir}/book.csv`;
    const error = await loadBook(path).catch((error) => error);
    assert.ok(error instanceof BookError);
    assert.deepEqual(error.problems.map((problem: BookProblem) => problem.line), [2, 3, 4, 6]);
    assert.equal(
      error.message,
      `${path}:2: The email is not valid: it has no @. (and 3 more problems)`,
    );
  });
});

Deno.test("loadBook problems never contain the emails or names of the file", async () => {
  const emails = ["ada.secret@", "zoë secret@example.com", "dup.secret@example.com"];
  const names = ["Secret Ada", "Secret Zoë", "Secret Dup", "Secret Dup Two"];
  const csv = `email,name\n${emails[0]},${names[0]}\n${emails[1]},${names[1]}\n` +
    `${emails[2]},${names[2]}\n${emails[2]},${names[3]}\n,Secret Nobody\n`;
  const json = JSON.stringify({ [emails[0]]: names[0], [emails[2]]: 42 });
  for (const [name, content] of [["book.csv", csv], ["book.json", json]]) {
    const problems = await problemsOf(name, content);
    assert.ok(problems.length >= 2);
    for (const problem of problems) {
      for (const secret of [...emails, ...names, "Secret"]) {
        assert.ok(!problem.includes(secret), `${problem} contains ${secret}`);
      }
    }
  }
});

Deno.test("the shipped data/addressbook.csv loads with about 50 entries", async () => {
  const path = new URL("../data/addressbook.csv", import.meta.url).pathname;
  const { book, entries, format } = await loadBook(path);
  assert.equal(format, "csv");
  assert.ok(entries >= 45 && entries <= 60, `${entries} entries`);
  assert.equal(book.get("ada@example.com"), "Ada Lovelace");
  const text = await Deno.readTextFile(path);
  assert.ok(text.startsWith("email,name\r\nada@example.com,Ada Lovelace\r\n"));
});

Deno.test("formatFromPath goes by the extension, in any case", () => {
  assert.equal(formatFromPath("data/addressbook.csv"), "csv");
  assert.equal(formatFromPath("BOOK.JSON"), "json");
  assert.equal(formatFromPath("contacts.vcf"), "vcard");
  assert.equal(formatFromPath("contacts.vcard"), "vcard");
  assert.equal(formatFromPath("book.txt"), undefined);
  assert.equal(formatFromPath("dir.csv/book"), undefined);
  assert.equal(formatFromPath("book"), undefined);
});

Deno.test("loadBook guesses the format of a file whose extension does not say", async () => {
  assert.equal((await load("book.txt", '{"a@example.com": "A"}')).format, "json");
  assert.equal(
    (await load("book.txt", ' [{"email": "a@example.com", "name": "A"}]')).format,
    "json",
  );
  const vcf = formatVCard([{ name: "A", emails: ["a@example.com"] }], "4.0");
  assert.equal((await load("book.txt", vcf)).format, "vcard");
  assert.equal((await load("book.txt", "email,name\na@example.com,A\n")).format, "csv");
  // An explicit format wins over the extension.
  assert.equal(
    (await load("book.csv", '{"a@example.com": "A"}', { format: "json" })).format,
    "json",
  );
});

Deno.test("loadBookFromText loads text already in memory", () => {
  const { book, entries } = loadBookFromText("email,name\na@example.com,A\n", "embedded.csv");
  assert.equal(entries, 1);
  assert.equal(book.get("a@example.com"), "A");
  assert.throws(
    () => loadBookFromText("email,name\nbad,A\n", "embedded.csv"),
    (error) =>
      error instanceof BookError &&
      formatProblem(error.problems[0]) === "embedded.csv:2: The email is not valid: it has no @.",
  );
});

// --- Round trip ----------------------------------------------------------------

/** Characters that stress each format's quoting and escaping. */
const NAME_CHARS = fc.constantFrom(
  // No control characters: a name may not hold them (common/terminal_text.ts).
  ..."abcXYZ 019,;:\"'\\=éøßÑ李龍🎉—".split(/(?:)/u),
);
const EMAIL_CHARS = fc.constantFrom(..."abcXYZ019.+-_!#$%&'*/=?^`{|}~,;\"é".split(/(?:)/u));

const entryArbitrary = fc.record({
  local: fc.array(EMAIL_CHARS, { minLength: 1, maxLength: 12 }).map((chars) => chars.join("")),
  name: fc.array(NAME_CHARS, { minLength: 1, maxLength: 20 }).map((chars) => chars.join("").trim())
    .filter((name) => name !== ""),
});

function toCsv(entries: { email: string; name: string }[]): string {
  return "email,name\r\n" +
    entries.map(({ email, name }) => `${csvField(email)},${csvField(name)}\r\n`).join("");
}

Deno.test("a book written as CSV, JSON and vCard reads back to the same entries", async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(entryArbitrary, { maxLength: 25 }), async (generated) => {
      // The index makes every email unique, also after lower-casing.
      const entries = generated.map(({ local, name }, i) => ({
        email: `${local}.${i}@example.com`,
        name,
      }));
      const contacts = entries.map(({ email, name }) => ({ name, emails: [email] }));
      const files: Record<string, string> = {
        "book.csv": toCsv(entries),
        "object.json": JSON.stringify(
          Object.fromEntries(entries.map(({ email, name }) => [email, name])),
        ),
        "array.json": JSON.stringify(entries, null, 1),
        "v3.vcf": formatVCard(contacts, "3.0"),
        "v4.vcf": formatVCard(contacts, "4.0"),
      };
      if (entries.length === 0) {
        // An empty vCard file is an empty file, which is a problem of its own.
        delete files["v3.vcf"];
        delete files["v4.vcf"];
      }
      await withFiles(files, async (dir) => {
        for (const name of Object.keys(files)) {
          const { book, entries: count } = await loadBook(`${dir}/${name}`, { allowEmpty: true });
          assert.equal(count, entries.length, name);
          for (const { email, name: expected } of entries) {
            assert.equal(book.get(email), expected, `${name}: entry ${email}`);
          }
        }
      });
    }),
    { numRuns: 60 },
  );
});

// --- Refusals that say what to do ------------------------------------------------

Deno.test("loadBook refuses a book with no entries unless allowEmpty", async () => {
  for (
    const [name, content] of [
      ["book.csv", "email,name\r\n"],
      ["book.json", "{}"],
      ["book.json", "[]"],
      ["book.vcf", formatVCard([{ name: "No Email", emails: [] }], "4.0")],
      ["export.csv", "Full Name,Email Address\nNo Mail,\n"],
    ]
  ) {
    assert.deepEqual(await problemsOf(name, content), [
      "0: The book has no entries; an empty book is refused unless it is allowed (--allow-empty).",
    ], `${name}: ${content}`);
    assert.equal((await load(name, content, { allowEmpty: true })).entries, 0);
  }
});

Deno.test("loadBook says a UTF-16 file is UTF-16, which byte order, and how to convert it", async () => {
  const text = "email,name\r\nada@example.com,Ada\r\n";
  const le = new Uint8Array([0xff, 0xfe, ...[...text].flatMap((c) => [c.charCodeAt(0), 0])]);
  const be = new Uint8Array([...[...text].flatMap((c) => [0, c.charCodeAt(0)])]);
  assert.deepEqual(await problemsOf("book.csv", le), [
    "0: The file is UTF-16 LE text, not UTF-8; convert it first, for example with " +
    "iconv -f UTF-16LE -t UTF-8 FILE > NEW_FILE.",
  ]);
  assert.deepEqual(await problemsOf("book.json", be), [
    "0: The file is UTF-16 BE text, not UTF-8; convert it first, for example with " +
    "iconv -f UTF-16BE -t UTF-8 FILE > NEW_FILE.",
  ]);
});

Deno.test("loadBook says a file has CR line ends and how to convert them", async () => {
  const problems = await problemsOf("book.csv", "email,name\rada@example.com,Ada\r");
  assert.deepEqual(problems, [
    "0: The file's lines end in CR alone (old Mac OS style), so it reads as one line; " +
    "convert them to LF first, for example with tr '\\r' '\\n' < FILE > NEW_FILE.",
  ]);
  assert.ok(!problems[0].includes("looks like an entry"));
  // JSON does not care how lines end.
  assert.equal((await load("book.json", '{\r"a@example.com": "A"\r}')).entries, 1);
});

Deno.test("loadBook says an empty path is empty", async () => {
  const error = await loadBook("").catch((error) => error);
  assert.ok(error instanceof BookError);
  assert.deepEqual(error.problems, [
    { file: "", line: 0, message: "Cannot read the file: the path is empty." },
  ]);
  const named = await loadBook("", { name: "--data" }).catch((error) => error);
  assert.equal(named.message, "--data: Cannot read the file: the path is empty.");
});

Deno.test("loadBook says a vCard FN's BASE64 is invalid rather than that the card has no name", async () => {
  const vcf =
    "BEGIN:VCARD\r\nVERSION:3.0\r\nFN;ENCODING=b:***\r\nEMAIL:a@example.com\r\nEND:VCARD\r\n";
  assert.deepEqual(await problemsOf("book.vcf", vcf), ["3: The FN's BASE64 value is not valid."]);
});

Deno.test("loadBook refuses emails with invisible characters in every format, with line and U+XXXX", async () => {
  const message = (code: string) =>
    `The email is not valid: it contains U+${code}, an invisible or direction-changing character.`;
  assert.deepEqual(
    await problemsOf("book.csv", "email,name\nok@example.com,A\nad\u200ba@example.com,Ada\n"),
    [`3: ${message("200B")}`],
  );
  assert.deepEqual(
    await problemsOf("book.json", '{\n"ok@example.com": "A",\n"a\\u202e@example.com": "B"}'),
    [`3: ${message("202E")}`],
  );
  const vcf = formatVCard(
    [{ name: "A", emails: ["ok@example.com", "a\ufeffb@example.com"] }],
    "4.0",
  );
  assert.deepEqual(await problemsOf("book.vcf", vcf), [`5: ${message("FEFF")}`]);
});
