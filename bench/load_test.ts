import assert from "node:assert/strict";
import { writeCsvBook } from "../testing/books.ts";
import { tempDir } from "../testing/files.ts";

const BENCH_LOAD = new URL("./load.ts", import.meta.url).pathname;

/** Runs bench/load.ts as `deno task bench-load` does. */
async function benchLoad(args: string[]) {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "--v8-flags=--expose-gc", BENCH_LOAD, ...args],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const decoder = new TextDecoder();
  return { code, stdout: decoder.decode(stdout), stderr: decoder.decode(stderr) };
}

Deno.test("bench-load prints the load time, rows per second and memory of a book", async () => {
  await using dir = await tempDir("bench_load_test_");
  const rows = Array.from({ length: 1000 }, (_, i) => [`p${i}@example.com`, `P ${i}`] as const);
  const path = await writeCsvBook(dir.path, rows);
  const { code, stdout, stderr } = await benchLoad([path]);
  assert.equal(code, 0, stderr);
  assert.match(stdout, new RegExp(`^${path}: 1,000 entries`));
  assert.match(
    stdout,
    /load: +\d+\.\d\d s, [\d,]+ rows\/s \(of which the fingerprint \d+\.\d\d s\)/,
  );
  for (
    const line of [
      /kept: +\d+ MB RSS after gc/,
      /peak: +\d+ MB RSS while loading/,
      /reload peak: +\d+ MB/,
    ]
  ) {
    assert.match(stdout, line);
  }
});

Deno.test("bench-load --quoted-field reads a field of escaped quotes", async () => {
  const { code, stdout } = await benchLoad(["--quoted-field", "1"]);
  assert.equal(code, 0);
  assert.match(
    stdout,
    /^A 1 MB CSV whose one name field is 1 MB of "x""x""\.\.\.": read in \d+ ms \(loaded\)/,
  );
});

Deno.test("bench-load says what is wrong with its arguments, and exits 2", async () => {
  for (const args of [[], ["--format", "xml", "b.csv"], ["--quoted-field", "0"], ["--nope"]]) {
    const { code, stdout, stderr } = await benchLoad(args);
    assert.equal(code, 2, args.join(" "));
    assert.equal(stdout, "");
    assert.match(stderr, /^bench-load: [-A-Z].*[.?] See --help\.\n$/, args.join(" "));
  }
  assert.equal(
    (await benchLoad(["--nope"])).stderr,
    "bench-load: Unknown option --nope. See --help.\n",
  );
  assert.equal(
    (await benchLoad(["--format"])).stderr,
    "bench-load: --format needs a value. See --help.\n",
  );
  const help = await benchLoad(["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: deno task bench-load/);
});

Deno.test("bench-load reports a book that does not load, without a stack trace", async () => {
  await using dir = await tempDir("bench_load_test_");
  const path = await writeCsvBook(dir.path, [["bad", "A"]]);
  const { code, stderr } = await benchLoad([path]);
  assert.equal(code, 1);
  assert.match(stderr, /^bench-load: .*book\.csv:2: The email is not valid: it has no @\.$/m);
  assert.match(stderr, /^bench-load: The loading process for .* failed\.$/m);
  assert.doesNotMatch(stderr, /^\s+at /m);
});
