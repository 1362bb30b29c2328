import assert from "node:assert/strict";

const VALIDATE = new URL("./validate.ts", import.meta.url).pathname;
const PROJECT_DIR = new URL("..", import.meta.url).pathname;
const CONFIG = new URL("../deno.json", import.meta.url).pathname;

/** Runs `tools/validate.ts` as its own process, the way `deno task validate` does. */
async function validate(args: string[], cwd = PROJECT_DIR) {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--config", CONFIG, VALIDATE, ...args],
    cwd,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const decoder = new TextDecoder();
  const text = decoder.decode(stdout);
  // Most tests are about counts and problems; the fingerprint has tests of its own.
  const fingerprints = [...text.matchAll(/, sha256 ([0-9a-f]{64})$/gm)].map((match) => match[1]);
  return {
    code,
    stdout: text.replace(/, sha256 [0-9a-f]{64}$/gm, ""),
    fingerprints,
    stderr: decoder.decode(stderr),
  };
}

/** Writes the files into a fresh temporary directory, runs `fn` in it, then removes it. */
async function withFiles(
  files: Record<string, string>,
  fn: (dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "validate_test_" });
  try {
    for (const [name, content] of Object.entries(files)) {
      await Deno.writeTextFile(`${dir}/${name}`, content);
    }
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const GOOD_CSV = 'email,name\r\nada@example.com,Ada Lovelace\r\nb@example.com,"Babbage, C."\r\n';
const BAD_CSV = "email,name\nnot-an-email,Secret Person\nc@example.com,\nd@example.com,D,extra\n";

Deno.test("validate prints OK with the entry count and exits 0 for good files", async () => {
  await withFiles(
    { "good.csv": GOOD_CSV, "good.json": '{"a@example.com": "A"}' },
    async (dir) => {
      const { code, stdout, stderr } = await validate(["good.csv", "good.json"], dir);
      assert.equal(stderr, "");
      assert.equal(
        stdout,
        "good.csv: OK, 2 entries\ngood.json: OK, 1 entry\nAll 2 files are OK.\n",
      );
      assert.equal(code, 0);
    },
  );
});

Deno.test("validate prints every problem as FILE:LINE: message and exits 1", async () => {
  await withFiles({ "bad.csv": BAD_CSV }, async (dir) => {
    const { code, stdout, stderr } = await validate(["bad.csv"], dir);
    assert.equal(stderr, "");
    assert.equal(
      stdout,
      "bad.csv:2: The email is not valid: it has no @.\n" +
        "bad.csv:3: The name is empty.\n" +
        "bad.csv:4: The record has 3 fields, but the header has 2.\n" +
        "3 problems in 1 of 1 file.\n",
    );
    assert.ok(!stdout.includes("not-an-email") && !stdout.includes("Secret Person"));
    assert.equal(code, 1);
  });
});

Deno.test("validate refuses names with control or direction-changing characters, per line, in every format", async () => {
  const files = {
    "escapes.csv": "email,name\n" +
      "a@example.com,Ada\u001b[2J Lovelace\n" + // ESC: erase the screen
      "b@example.com,Bob\u001b]0;pwned\u0007\n" + // OSC: set the window title
      "c@example.com,Carl\u009b31m\n" + // C1 CSI
      "d@example.com,Eve \u202egnp.exe\n" + // right-to-left override
      "e@example.com,Fay\u2066Isolated\n" + // an isolate
      'f@example.com,"Two\nlines"\n' + // a line break, quoted
      "g@example.com,Tab\there\n" +
      "h@example.com,Zoë Müller עברית\n",
    "escapes.json": JSON.stringify({ "a@example.com": "Ada\u200fLovelace" }),
    "escapes.vcf": "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Ada Lovelace\r\n" +
      "N:Love\u001blace;Ada;;;\r\nEMAIL:ada@example.com\r\nEND:VCARD\r\n",
  };
  await withFiles(files, async (dir) => {
    const { code, stdout, stderr } = await validate(Object.keys(files), dir);
    assert.equal(stderr, "");
    assert.deepEqual(stdout.trimEnd().split("\n"), [
      "escapes.csv:2: The name contains U+001B, a control or direction-changing character.",
      "escapes.csv:3: The name contains U+001B, a control or direction-changing character.",
      "escapes.csv:4: The name contains U+009B, a control or direction-changing character.",
      "escapes.csv:5: The name contains U+202E, a control or direction-changing character.",
      "escapes.csv:6: The name contains U+2066, a control or direction-changing character.",
      "escapes.csv:7: The name contains U+000A, a control or direction-changing character.",
      "escapes.csv:9: The name contains U+0009, a control or direction-changing character.",
      "escapes.json:1: The name contains U+200F, a control or direction-changing character.",
      "escapes.vcf:5: The surname contains U+001B, a control or direction-changing character.",
      "9 problems in 3 of 3 files.",
    ]);
    assert.equal(code, 1);
  });
});

Deno.test("validate checks every file even when some are bad or missing", async () => {
  await withFiles({ "good.csv": GOOD_CSV, "bad.csv": BAD_CSV }, async (dir) => {
    const { code, stdout, stderr } = await validate(
      ["missing.csv", "bad.csv", ".", "good.csv"],
      dir,
    );
    assert.equal(stderr, "");
    const lines = stdout.trimEnd().split("\n");
    assert.deepEqual(lines, [
      "missing.csv: Cannot read the file: no such file.",
      "bad.csv:2: The email is not valid: it has no @.",
      "bad.csv:3: The name is empty.",
      "bad.csv:4: The record has 3 fields, but the header has 2.",
      ".: Cannot read the file: it is a directory.",
      "good.csv: OK, 2 entries",
      "5 problems in 3 of 4 files.",
    ]);
    assert.equal(code, 1);
  });
});

Deno.test("validate passes --duplicates, --format and the column options to the loader", async () => {
  const files = {
    "dups.csv": "email,name\na@example.com,A\nA@example.com,B\n",
    "book.txt": '[{"email": "a@example.com", "name": "A"}]',
    "export.csv": "id,mail,who\n1,a@example.com,Ann\n",
  };
  await withFiles(files, async (dir) => {
    const strict = await validate(["dups.csv"], dir);
    assert.equal(strict.code, 1);
    assert.match(strict.stdout, /^dups\.csv:3: The email is a duplicate of line 2\.$/m);

    const last = await validate(["--duplicates", "last", "dups.csv"], dir);
    assert.equal(
      last.stdout,
      "dups.csv: OK, 1 entry (1 duplicate dropped: --duplicates last)\nThe file is OK.\n",
    );
    assert.equal(last.code, 0);

    const json = await validate(["--format=json", "book.txt"], dir);
    assert.equal(json.stdout, "book.txt: OK, 1 entry\nThe file is OK.\n");

    const columns = await validate(
      ["--email-column", "mail", "--name-column", "who", "export.csv"],
      dir,
    );
    assert.equal(columns.stdout, "export.csv: OK, 1 entry\nThe file is OK.\n");
    assert.equal(columns.code, 0);
  });
});

Deno.test("validate reads the fixtures in testdata/books", async () => {
  const { code, stdout } = await validate([
    "testdata/books/outlook.csv",
    "testdata/books/google.csv",
    "testdata/books/google_several.csv",
    "testdata/books/outlook_several.csv",
    "testdata/books/contacts.vcf",
    "testdata/books/book_array.json",
    "data/addressbook.csv",
  ]);
  // Every address counts, the second and third of a contact too.
  assert.equal(
    stdout,
    "testdata/books/outlook.csv: OK, 4 entries\n" +
      "testdata/books/google.csv: OK, 4 entries\n" +
      "testdata/books/google_several.csv: OK, 6 entries\n" +
      "testdata/books/outlook_several.csv: OK, 6 entries\n" +
      "testdata/books/contacts.vcf: OK, 4 entries\n" +
      "testdata/books/book_array.json: OK, 3 entries\n" +
      "data/addressbook.csv: OK, 50 entries\n" +
      "All 7 files are OK.\n",
  );
  assert.equal(code, 0);
});

Deno.test("validate exits 2 with one line and see --help for usage errors", async () => {
  for (
    const args of [
      [],
      ["--format", "xml", "book.csv"],
      ["--duplicates", "some", "book.csv"],
      ["--no-such-option", "book.csv"],
      ["--format"],
    ]
  ) {
    const { code, stdout, stderr } = await validate(args);
    assert.equal(code, 2, `exit code for ${args.join(" ")}`);
    assert.equal(stdout, "");
    assert.match(stderr, /^validate: [-A-Z].*[.?] See --help\.\n$/, "one line, then see --help");
    assert.doesNotMatch(stderr, /^\s+at /m, "no stack trace");
  }
  const none = await validate([]);
  assert.equal(none.stderr, "validate: Name at least one file to check. See --help.\n");
});

Deno.test("validate --help prints the usage on stdout and exits 0", async () => {
  const { code, stdout, stderr } = await validate(["--help"]);
  assert.equal(code, 0);
  assert.equal(stderr, "");
  assert.match(stdout, /^Usage: deno task validate \[options\] FILE\.\.\./);
  assert.match(stdout, /--email-column NAME/);
});

Deno.test("validate prints the fingerprint: equal for the same entries in any format, order or case", async () => {
  const csv = "email,name\nada@example.com,Ada Lovelace\nb@example.com,Babbage\n";
  const json = JSON.stringify({ "b@example.com": "Babbage", "ADA@Example.com": "Ada Lovelace" });
  const changed = "email,name\nada@example.com,Ada Lovelace\nb@example.com,Babbage C.\n";
  await withFiles({ "a.csv": csv, "b.json": json, "c.csv": changed }, async (dir) => {
    const result = await validate(["a.csv", "b.json", "c.csv"], dir);
    assert.equal(result.code, 0);
    assert.equal(result.fingerprints.length, 3);
    assert.equal(result.fingerprints[0], result.fingerprints[1]);
    assert.notEqual(result.fingerprints[0], result.fingerprints[2]);
  });
});

Deno.test("validate refuses a book with no entries unless --allow-empty", async () => {
  await withFiles({ "empty.csv": "email,name\n" }, async (dir) => {
    const refused = await validate(["empty.csv"], dir);
    assert.equal(refused.code, 1);
    assert.match(refused.stdout, /^empty\.csv: The book has no entries; .*--allow-empty/m);
    const allowed = await validate(["--allow-empty", "empty.csv"], dir);
    assert.equal(allowed.code, 0);
    assert.equal(allowed.stdout, "empty.csv: OK, 0 entries\nThe file is OK.\n");
    assert.equal(
      allowed.fingerprints[0],
      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    );
  });
});

Deno.test("validate says an empty path is empty", async () => {
  const result = await validate([""]);
  assert.equal(result.code, 1);
  assert.equal(
    result.stdout,
    ": Cannot read the file: the path is empty.\n1 problem in 1 of 1 file.\n",
  );
});
