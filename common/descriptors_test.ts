import assert from "node:assert/strict";
import { freeDescriptors, isOutOfDescriptors } from "./descriptors.ts";

Deno.test("freeDescriptors goes down by one for each file opened", () => {
  const before = freeDescriptors();
  if (before === undefined) return; // no /proc here
  const files = Array.from({ length: 10 }, () => Deno.openSync(import.meta.filename!));
  try {
    assert.equal(freeDescriptors(), before - 10);
  } finally {
    files.forEach((file) => file.close());
  }
});

Deno.test("freeDescriptors says 0 in a process out of descriptors, and does not throw", async () => {
  const script = `
    import { freeDescriptors } from ${JSON.stringify(import.meta.resolve("./descriptors.ts"))};
    const files = [];
    try { for (;;) files.push(Deno.openSync("/proc/self/limits")); } catch { /* EMFILE */ }
    console.log(freeDescriptors());
    files.pop().close();
    console.log(freeDescriptors());
  `;
  const output = await new Deno.Command("bash", {
    args: ["-c", 'ulimit -n 64 && exec "$0" eval "$1"', Deno.execPath(), script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(output.stderr);
  assert.equal(output.code, 0, stderr);
  const [exhausted, oneFree] = new TextDecoder().decode(output.stdout).trim().split("\n");
  assert.equal(exhausted, "0");
  assert.ok(Number(oneFree) <= 1, oneFree);
});

Deno.test("isOutOfDescriptors tells EMFILE and ENFILE from other errors", () => {
  assert.ok(
    isOutOfDescriptors(Object.assign(new Error("Too many open files"), { code: "EMFILE" })),
  );
  assert.ok(isOutOfDescriptors(new Error("Too many open files (os error 24)")));
  assert.ok(!isOutOfDescriptors(new Deno.errors.NotFound("no such file")));
  assert.ok(!isOutOfDescriptors(undefined));
});
