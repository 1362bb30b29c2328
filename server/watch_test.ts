/**
 * Tests of the file watch (`--watch`) on real files: what it follows (symlinks, odd
 * paths, a ConfigMap-style swap) and when it hands a change over (only once
 * the file has settled). The server's use of it, with a probe querying all
 * along, is tested in server/cli_test.ts.
 */

import assert from "node:assert/strict";
import { fileSignature, FileWatch, foldersToWatch, MISSING_FILE } from "./watch.ts";
import { withDeadline } from "../testing/deadlines.ts";
import { swapConfigMap, tempDir } from "../testing/files.ts";

/** Settle time for these tests: short, but far longer than the gaps between a test's writes. */
const SETTLE_MS = 500;

/**
 * A watch on `path` that records the file's content each time a change is
 * handed over, and lets a test await the next handover.
 */
class RecordingWatch implements Disposable {
  readonly seen: string[] = [];
  readonly #watch: FileWatch;
  #waiters: (() => void)[] = [];

  constructor(readonly path: string, settleMs = SETTLE_MS) {
    this.#watch = FileWatch.start(path, {
      settleMs,
      onSettled: async () => {
        this.seen.push(await Deno.readTextFile(path));
        for (const wake of this.#waiters.splice(0)) wake();
      },
    });
  }

  /** Waits until `count` changes have been handed over in all. */
  async handedOver(count: number): Promise<void> {
    await withDeadline(
      (async () => {
        while (this.seen.length < count) {
          await new Promise<void>((resolve) => this.#waiters.push(resolve));
        }
      })(),
      `${count} handovers of ${this.path} (so far: ${JSON.stringify(this.seen)})`,
    );
  }

  [Symbol.dispose](): void {
    this.#watch.close();
  }
}

Deno.test("fileSignature changes with the content, the inode and the path's target, not by itself", async () => {
  await using dir = await tempDir("addrbook_server_watch_test_");
  const path = `${dir.path}/book.csv`;
  assert.equal(fileSignature(path), MISSING_FILE);
  await Deno.writeTextFile(path, "email,name\n");
  const first = fileSignature(path);
  assert.notEqual(first, MISSING_FILE);
  assert.equal(fileSignature(path), first);
  await Deno.writeTextFile(path, "email,name\na@b.c,A\n", { append: true });
  const appended = fileSignature(path);
  assert.notEqual(appended, first);
  await Deno.writeTextFile(`${dir.path}/other.csv`, "email,name\na@b.c,A\n");
  await Deno.rename(`${dir.path}/other.csv`, path);
  assert.notEqual(fileSignature(path), appended, "a rename over it is another inode");
  assert.equal(fileSignature(dir.path), MISSING_FILE, "a folder is not a book");
});

Deno.test("foldersToWatch names the typed path's folder and every folder its symlinks lead through", async () => {
  await using dir = await tempDir("addrbook_server_watch_test_");
  const real = await Deno.realPath(dir.path);
  await Deno.mkdir(`${real}/a`);
  await Deno.mkdir(`${real}/b`);
  await Deno.writeTextFile(`${real}/b/real.csv`, "email,name\n");
  await Deno.symlink("../b/real.csv", `${real}/a/hop.csv`);
  await Deno.symlink(`${real}/a/hop.csv`, `${real}/book.csv`);
  assert.deepEqual(foldersToWatch(`${real}/book.csv`).sort(), [real, `${real}/a`, `${real}/b`]);
  assert.deepEqual(foldersToWatch(`${real}//a/./../b/real.csv`), [`${real}/b`]);
  assert.deepEqual(foldersToWatch(`${real}/missing.csv`), [real]);
});

Deno.test("FileWatch hands over a file written in chunks only once, whole, after it settles", async () => {
  await using dir = await tempDir("addrbook_server_watch_test_");
  const path = `${dir.path}/book.csv`;
  await Deno.writeTextFile(path, "email,name\nold@example.com,Old\n");
  using watch = new RecordingWatch(path);
  const chunks = [
    "email,name\n",
    "new@exa",
    "mple.com,New Na",
    "me\nsecond@example.com,",
    "Second\n",
  ];
  const file = await Deno.open(path, { write: true, truncate: true });
  try {
    for (const chunk of chunks) {
      await file.write(new TextEncoder().encode(chunk));
      // A slow writer: pauses well within the settle time.
      await new Promise((resolve) => setTimeout(resolve, SETTLE_MS / 10));
    }
  } finally {
    file.close();
  }
  await watch.handedOver(1);
  assert.deepEqual(watch.seen, [chunks.join("")]);
});

Deno.test("FileWatch follows a symlinked path whose target is edited in place or replaced", async () => {
  await using dir = await tempDir("addrbook_server_watch_test_");
  await Deno.mkdir(`${dir.path}/data`);
  const target = `${dir.path}/data/real.csv`;
  await Deno.writeTextFile(target, "one\n");
  await Deno.symlink(target, `${dir.path}/book.csv`);
  using watch = new RecordingWatch(`${dir.path}/book.csv`);
  await Deno.writeTextFile(target, "two\n");
  await watch.handedOver(1);
  await Deno.writeTextFile(`${dir.path}/data/staged.csv`, "three\n");
  await Deno.rename(`${dir.path}/data/staged.csv`, target);
  await watch.handedOver(2);
  assert.deepEqual(watch.seen, ["two\n", "three\n"]);
});

for (
  const [label, typed] of [["//", "//book.csv"], ["./", "/./book.csv"], ["../", "/sub/../book.csv"]]
) {
  Deno.test(`FileWatch sees changes to a path written with ${label}`, async () => {
    await using dir = await tempDir("addrbook_server_watch_test_");
    await Deno.mkdir(`${dir.path}/sub`);
    await Deno.writeTextFile(`${dir.path}/book.csv`, "one\n");
    using watch = new RecordingWatch(`${dir.path}${typed}`);
    await Deno.writeTextFile(`${dir.path}/book.csv`, "two\n");
    await watch.handedOver(1);
    assert.deepEqual(watch.seen, ["two\n"]);
  });
}

Deno.test("FileWatch follows a ConfigMap volume through two updates", async () => {
  await using dir = await tempDir("addrbook_server_watch_test_");
  await swapConfigMap(dir.path, "2026_12_02_08_00_00.000000001", { "book.csv": "one\n" });
  using watch = new RecordingWatch(`${dir.path}/book.csv`);
  await swapConfigMap(dir.path, "2026_12_02_08_01_00.000000002", { "book.csv": "two\n" });
  await watch.handedOver(1);
  await swapConfigMap(dir.path, "2026_12_02_08_02_00.000000003", { "book.csv": "three\n" });
  await watch.handedOver(2);
  assert.deepEqual(watch.seen, ["two\n", "three\n"]);
});

Deno.test("FileWatch hands over nothing for other files in the folder, and a deleted book only once it is back", async () => {
  await using dir = await tempDir("addrbook_server_watch_test_");
  const path = `${dir.path}/book.csv`;
  await Deno.writeTextFile(path, "one\n");
  using watch = new RecordingWatch(path);
  await Deno.writeTextFile(`${dir.path}/notes.txt`, "unrelated\n");
  await Deno.remove(path);
  await Deno.writeTextFile(`${dir.path}/notes.txt`, "still unrelated\n");
  await Deno.writeTextFile(path, "two\n");
  await watch.handedOver(1);
  assert.deepEqual(watch.seen, ["two\n"], "the first handover is the book's own change");
});
