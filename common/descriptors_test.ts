import assert from "node:assert/strict";
import { canOpenDescriptors } from "./descriptors.ts";

Deno.test("canOpenDescriptors is true with room, and leaves no descriptor open", () => {
  // 25,000 reservations: more than any ulimit -n here, so a leak would run out.
  for (let i = 0; i < 250; i++) assert.equal(canOpenDescriptors(100), true, `round ${i}`);
});

Deno.test("canOpenDescriptors says false in a process short of descriptors, and true once some free up", async () => {
  const script = `
    import { canOpenDescriptors } from ${JSON.stringify(import.meta.resolve("./descriptors.ts"))};
    const files = [];
    try { for (;;) files.push(Deno.openSync(${
    JSON.stringify(import.meta.filename)
  })); } catch { /* EMFILE */ }
    console.log(canOpenDescriptors(1));
    for (let i = 0; i < 10; i++) files.pop().close();
    console.log(canOpenDescriptors(10), canOpenDescriptors(11));
  `;
  const output = await new Deno.Command("bash", {
    args: [
      "-c",
      'ulimit -n 64 && exec "$0" eval --allow-ffi --allow-read "$1"',
      Deno.execPath(),
      script,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(output.stderr);
  assert.equal(output.code, 0, stderr);
  assert.deepEqual(new TextDecoder().decode(output.stdout).trim().split("\n"), [
    "false",
    "true false",
  ]);
});
