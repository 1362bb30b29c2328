import assert from "node:assert/strict";
import { writeAll } from "./write_all.ts";

Deno.test("writeAll calls write again until every byte is taken, in order", async () => {
  const taken: number[] = [];
  const writer = {
    // Takes at most 3 bytes a call, as a full socket buffer would.
    write(bytes: Uint8Array) {
      const count = Math.min(3, bytes.length);
      taken.push(...bytes.subarray(0, count));
      return Promise.resolve(count);
    },
  };
  const bytes = Uint8Array.from({ length: 10 }, (_, i) => i);
  await writeAll(writer, bytes);
  assert.deepEqual(taken, [...bytes]);
});

Deno.test("writeAll writes nothing and resolves for an empty buffer", async () => {
  let calls = 0;
  await writeAll({ write: () => Promise.resolve(calls++) }, new Uint8Array(0));
  assert.equal(calls, 0);
});

Deno.test("writeAll writes a real file whole", async () => {
  const path = await Deno.makeTempFile();
  try {
    const bytes = new Uint8Array(200_000).map((_, i) => i & 0xff);
    using file = await Deno.open(path, { write: true });
    await writeAll(file, bytes);
    assert.deepEqual(await Deno.readFile(path), bytes);
  } finally {
    await Deno.remove(path);
  }
});
