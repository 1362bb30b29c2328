import assert from "node:assert/strict";
import { BookBytes, InvalidUtf8Error } from "./bytes.ts";
import { tempDir } from "../testing/files.ts";

const encoder = new TextEncoder();

/** Everything a reader sees, pulling a chunk at a time and keeping nothing. */
function readAll(bytes: BookBytes): Uint8Array {
  const parts: number[] = [];
  bytes.begin();
  let from = bytes.start;
  for (;;) {
    parts.push(...bytes.buffer.subarray(from, bytes.end));
    if (bytes.more(bytes.end) < 0) break;
    from = 0;
  }
  return new Uint8Array(parts);
}

Deno.test("BookBytes hands over every byte once, after the byte-order mark, in any chunk size", () => {
  const text = "\uFEFFemail,name\nzoë@example.com,李小龙 🎉\n";
  for (let chunk = 1; chunk <= 12; chunk++) {
    const seen = readAll(BookBytes.fromBytes(encoder.encode(text), chunk));
    assert.equal(new TextDecoder().decode(seen), text.slice(1), `chunks of ${chunk}`);
  }
});

Deno.test("BookBytes keeps what the reader still needs and grows for a long record", () => {
  const bytes = BookBytes.fromBytes(encoder.encode("x".repeat(100)), 8);
  bytes.begin();
  while (bytes.more(0) >= 0) { /* keep everything */ }
  assert.equal(bytes.end, 100);
  assert.ok(bytes.buffer.length >= 100);
  assert.equal(bytes.done, true);
});

Deno.test("BookBytes refuses bytes that are not UTF-8 and finds their line", () => {
  const bad = new Uint8Array([...encoder.encode("a\nb\nc"), 0xeb, ...encoder.encode("\nd\n")]);
  for (const chunk of [1, 3, 64]) {
    const bytes = BookBytes.fromBytes(bad, chunk);
    const error = (() => {
      try {
        readAll(bytes);
      } catch (error) {
        return error;
      }
    })();
    assert.ok(error instanceof InvalidUtf8Error, `chunks of ${chunk}`);
    assert.equal(bytes.lineOfInvalidUtf8(error), 3, `chunks of ${chunk}`);
  }
});

Deno.test("BookBytes finds the line of bad bytes in a file too", async () => {
  await using dir = await tempDir("book_bytes_test_");
  const path = `${dir.path}/bad.csv`;
  await Deno.writeFile(path, new Uint8Array([...encoder.encode("a\nb\n"), 0xff, 0x0a]));
  using file = await Deno.open(path);
  const bytes = BookBytes.fromFile(file, 2);
  assert.throws(() => readAll(bytes), (error) => {
    assert.ok(error instanceof InvalidUtf8Error);
    assert.equal(bytes.lineOfInvalidUtf8(error), 3);
    return true;
  });
});
