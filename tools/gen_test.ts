import assert from "node:assert/strict";
import { emailProblem, normalizeEmail } from "../book/email.ts";
import { csvField, GEN_FORMATS, generateBook, generateEntries, type GenFormat } from "./gen.ts";
import { BOOK_FORMATS, loadBook } from "../book/load.ts";

const GEN = new URL("./gen.ts", import.meta.url).pathname;
const CONFIG = new URL("../deno.json", import.meta.url).pathname;
const FORMATS: GenFormat[] = ["csv", "json", "vcard"];

Deno.test("the generator writes csv, json and vcard, each a format the loader reads", () => {
  assert.deepEqual([...GEN_FORMATS], FORMATS);
  for (const format of GEN_FORMATS) assert.ok(BOOK_FORMATS.includes(format), format);
});
const EXTENSIONS: Record<GenFormat, string> = { csv: "csv", json: "json", vcard: "vcf" };

/** Runs `fn` with a fresh temporary directory, then removes it. */
async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "gen_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("generateEntries makes unique, valid emails and non-empty names", () => {
  const entries = [...generateEntries(5000, 7)];
  assert.equal(entries.length, 5000);
  const keys = new Set(entries.map(({ email }) => normalizeEmail(email)));
  assert.equal(keys.size, 5000);
  for (const { email, name } of entries) {
    assert.equal(emailProblem(email), undefined, email);
    assert.match(email, /@example\.(com|org)$/);
    assert.ok(name.trim() === name && name !== "", name);
  }
  // Some names need CSV quoting and some are not ASCII, so those paths get exercised.
  assert.ok(entries.some(({ name }) => name.includes(",")));
  assert.ok(entries.some(({ name }) => /[^ -~]/.test(name)));
});

Deno.test("generateEntries gives the same entries for the same seed", () => {
  const a = [...generateEntries(100, 42)];
  assert.deepEqual([...generateEntries(100, 42)], a);
  assert.notDeepEqual([...generateEntries(100, 43)], a);
});

Deno.test("generateEntries refuses a count that is not a whole number", () => {
  for (const count of [-1, 1.5, Number.NaN]) {
    assert.throws(() => [...generateEntries(count)], RangeError);
  }
});

Deno.test("csvField quotes only what RFC 4180 needs quoted", () => {
  assert.equal(csvField("Ada Lovelace"), "Ada Lovelace");
  assert.equal(csvField("Smith, Jr."), '"Smith, Jr."');
  assert.equal(csvField('The "Quill"'), '"The ""Quill"""');
  assert.equal(csvField("two\nlines"), '"two\nlines"');
});

Deno.test("generated books load cleanly in every format with the right count", async () => {
  await withTempDir(async (dir) => {
    for (const format of FORMATS) {
      for (const count of [1, 4096, 10_001]) {
        const path = `${dir}/book-${count}.${EXTENSIONS[format]}`;
        await Deno.writeTextFile(path, [...generateBook({ count, format, seed: count })].join(""));
        const { entries, format: read, book } = await loadBook(path);
        assert.equal(read, format);
        assert.equal(entries, count, `${format} with ${count} entries`);
        const [last] = [...generateEntries(count, count)].slice(-1);
        assert.equal(book.get(last.email), last.name);
      }
    }
  });
});

Deno.test("generated books with no entries are an empty CSV table and an empty JSON object", () => {
  assert.equal([...generateBook({ count: 0 })].join(""), "email,name\r\n");
  assert.equal([...generateBook({ count: 0, format: "json" })].join(""), "{}\n");
});

/** Runs tools/gen.ts as its own process, the way `deno task gen` does. */
async function gen(args: string[]) {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--config", CONFIG, GEN, ...args],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  return { code, stdout, stderr: new TextDecoder().decode(stderr) };
}

Deno.test("gen writes the book to stdout, the same for the same seed", async () => {
  await withTempDir(async (dir) => {
    for (const format of FORMATS) {
      const first = await gen(["--count", "2500", "--seed", "9", "--format", format]);
      assert.equal(first.code, 0, first.stderr);
      assert.equal(first.stderr, "");
      const again = await gen(["--count=2500", "--seed=9", `--format=${format}`]);
      assert.deepEqual(again.stdout, first.stdout);
      const path = `${dir}/book.${EXTENSIONS[format]}`;
      await Deno.writeFile(path, first.stdout);
      assert.equal((await loadBook(path)).entries, 2500);
    }
  });
});

Deno.test("gen writes CSV by default", async () => {
  const { code, stdout } = await gen(["--count", "2"]);
  assert.equal(code, 0);
  const text = new TextDecoder().decode(stdout);
  assert.match(text, /^email,name\r\n[^\r\n]+\r\n[^\r\n]+\r\n$/);
});

Deno.test("gen exits 2 with one line and see --help for usage errors", async () => {
  for (
    const args of [
      [],
      ["--count", "-5"],
      ["--count", "ten"],
      ["--count", "5", "--format", "xml"],
      ["--count", "5", "--seed", "x"],
      ["--count", "5", "extra"],
      ["--colour"],
    ]
  ) {
    const { code, stdout, stderr } = await gen(args);
    assert.equal(code, 2, `exit code for ${args.join(" ")}`);
    assert.equal(stdout.length, 0);
    assert.match(stderr, /^gen: [-A-Z].*[.?] See --help\.\n$/, "one line, then see --help");
    assert.doesNotMatch(stderr, /^\s+at /m, "no stack trace");
  }
});

Deno.test("gen --help prints the usage and exits 0", async () => {
  const { code, stdout } = await gen(["--help"]);
  assert.equal(code, 0);
  assert.match(new TextDecoder().decode(stdout), /^Usage: deno task gen --count N/);
});
