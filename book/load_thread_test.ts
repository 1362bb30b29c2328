import assert from "node:assert/strict";
import { BookError, loadBook } from "./load.ts";
import { loadBookInThread } from "./load_thread.ts";
import { writeCsvBook } from "../testing/books.ts";
import { tempDir } from "../testing/files.ts";
import { TextIndex } from "./text_index.ts";

Deno.test("loadBookInThread gives the book loadBook gives, with its fingerprint", async () => {
  await using dir = await tempDir("load_book_thread_test_");
  const path = await writeCsvBook(dir.path, [["ada@example.com", "Ada Lovelace"], [
    "Zoë@example.com",
    "Zoë",
  ]]);
  const here = await loadBook(path);
  const there = await loadBookInThread(path, { duplicates: "first" });
  assert.equal(there.entries, 2);
  assert.equal(there.duplicates, 0);
  assert.equal(there.format, "csv");
  assert.equal(there.book.get("ada@example.com"), "Ada Lovelace");
  assert.equal(there.book.get("zoë@example.com"), "Zoë");
  assert.equal(there.book.fingerprint, here.book.fingerprint);
  assert.ok(there.book.toShared().records.buffer instanceof SharedArrayBuffer);
});

Deno.test("loadBookInThread rethrows a BookError with every problem", async () => {
  await using dir = await tempDir("load_book_thread_test_");
  const path = await writeCsvBook(dir.path, [["bad", "A"], ["b@example.com", ""]]);
  const expected = await loadBook(path).catch((error) => error);
  const error = await loadBookInThread(path).catch((error) => error);
  assert.ok(error instanceof BookError);
  assert.deepEqual(error.problems, expected.problems);
  assert.equal(error.message, expected.message);
  const empty = await loadBookInThread("").catch((error) => error);
  assert.ok(empty instanceof BookError);
  assert.equal(empty.message, ": Cannot read the file: the path is empty.");
  const refused = await loadBookInThread(await writeCsvBook(dir.path, [], "empty.csv"))
    .catch((error) => error);
  assert.ok(refused instanceof BookError);
  const allowed = await loadBookInThread(`${dir.path}/empty.csv`, { allowEmpty: true });
  assert.equal(allowed.entries, 0);
});

/**
 * A script that starts a load in a thread and then keeps its own thread
 * busy until it sees the book open among its descriptors: only another
 * thread can have opened it. It runs as its own process because Deno lets
 * only a process with every permission read /proc/self.
 */
const BUSY_MAIN_THREAD = `
import { loadBookInThread } from ${
  JSON.stringify(new URL("./load_thread.ts", import.meta.url).href)
};
const path = Deno.args[0];
function hasOpen() {
  for (const entry of Deno.readDirSync("/proc/self/fd")) {
    try {
      if (Deno.readLinkSync("/proc/self/fd/" + entry.name) === path) return true;
    } catch {
      // The descriptor was closed while we looked.
    }
  }
  return false;
}
const loading = loadBookInThread(path);
const deadline = Date.now() + 20000;
let seen = false;
while (!seen && Date.now() < deadline) seen = hasOpen();
console.log(JSON.stringify({ seen, entries: (await loading).entries }));
`;

Deno.test({
  name: "loadBookInThread reads the file while the main thread is busy",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    await using dir = await tempDir("load_book_thread_test_");
    const rows = Array.from(
      { length: 300_000 },
      (_, i) => [`p${i}@example.com`, `P ${i}`] as const,
    );
    const path = await Deno.realPath(await writeCsvBook(dir.path, rows));
    const script = `${dir.path}/busy.js`;
    await Deno.writeTextFile(script, BUSY_MAIN_THREAD);
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", script, path],
      stderr: "inherit",
    }).output();
    assert.ok(output.success);
    const result = JSON.parse(new TextDecoder().decode(output.stdout));
    assert.deepEqual(result, { seen: true, entries: rows.length });
  },
});

Deno.test("loadBookInThread builds the substring index there when asked, and attaches it", async () => {
  await using dir = await tempDir("load_book_thread_test_");
  const path = await writeCsvBook(dir.path, [["ada@example.com", "Ada Lovelace"], [
    "grace@example.com",
    "Grace Hopper",
  ]]);
  const plain = await loadBookInThread(path);
  assert.equal(TextIndex.attachedTo(plain.book), undefined);
  const indexed = await loadBookInThread(path, { textIndex: true });
  const index = TextIndex.attachedTo(indexed.book);
  assert.ok(index !== undefined);
  assert.equal(index.entries, 2);
  assert.ok(index.toShared().postings.buffer instanceof SharedArrayBuffer);
  // The one attached is the one searches use: nothing is built again.
  assert.equal(TextIndex.of(indexed.book), index);
  assert.deepEqual([...index.candidates(["hopper"])!], [indexed.book.lookup(
    new TextEncoder().encode("grace@example.com"),
    0,
    17,
  )]);
});
