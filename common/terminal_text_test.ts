import assert from "node:assert/strict";
import fc from "fast-check";
import {
  escapeForTerminal,
  terminalUnsafeCharacter,
  terminalUnsafeOffset,
} from "./terminal_text.ts";

/** Every character the rule covers: C0, DEL, C1, and the direction-changing ones. */
const UNSAFE_CODES = [
  ...Array.from({ length: 0x20 }, (_, i) => i),
  0x7f,
  ...Array.from({ length: 0x20 }, (_, i) => 0x80 + i),
  0x200e,
  0x200f,
  0x202a,
  0x202b,
  0x202c,
  0x202d,
  0x202e,
  0x2066,
  0x2067,
  0x2068,
  0x2069,
];

Deno.test("terminalUnsafeCharacter finds every control and direction-changing character", () => {
  for (const code of UNSAFE_CODES) {
    const char = String.fromCharCode(code);
    assert.equal(terminalUnsafeCharacter(`Ada${char}Lovelace`), char, code.toString(16));
  }
  for (const safe of ["Ada Lovelace", "Zoë Müller", "李小龙", "עברית", "😀", "Dr.\u00a0Who"]) {
    assert.equal(terminalUnsafeCharacter(safe), undefined, safe);
  }
});

Deno.test("escapeForTerminal writes each as \\uXXXX, and the result holds none", () => {
  assert.equal(escapeForTerminal("a\u001b]0;title\u0007b"), "a\\u001B]0;title\\u0007b");
  assert.equal(escapeForTerminal("\u202Egnp.exe"), "\\u202Egnp.exe");
  assert.equal(escapeForTerminal("x\u009b31m\r\n"), "x\\u009B31m\\u000D\\u000A");
  assert.equal(escapeForTerminal("Ada Lovelace"), "Ada Lovelace");
  fc.assert(
    fc.property(fc.string({ unit: "binary" }), (text) => {
      const shown = escapeForTerminal(text);
      assert.equal(terminalUnsafeCharacter(shown), undefined);
      assert.equal(shown === text, terminalUnsafeCharacter(text) === undefined);
    }),
  );
});

Deno.test("escapeForTerminal keeps JSON valid and meaning the same string", () => {
  const name = "Eve\u0085\u202E\u007f";
  const line = escapeForTerminal(JSON.stringify({ name }));
  assert.equal(terminalUnsafeCharacter(line), undefined);
  assert.deepEqual(JSON.parse(line), { name });
});

Deno.test("terminalUnsafeOffset agrees with terminalUnsafeCharacter on UTF-8 bytes", () => {
  const unsafe = fc.constantFrom(...UNSAFE_CODES.map((code) => String.fromCharCode(code)));
  const near = fc.constantFrom(
    "\u00a0",
    "\u00c2",
    "\u200d",
    "\u2010",
    "\u202f",
    "\u2065",
    "\u206a",
  );
  const text = fc.array(fc.oneof(fc.string({ unit: "grapheme" }), unsafe, near), { maxLength: 8 })
    .map((parts) => parts.join(""));
  fc.assert(
    fc.property(text, fc.string({ maxLength: 3 }), (value, before) => {
      const bytes = new TextEncoder().encode(before + value);
      const start = new TextEncoder().encode(before).length;
      const offset = terminalUnsafeOffset(bytes, start, bytes.length);
      const char = terminalUnsafeCharacter(value);
      if (char === undefined) return assert.equal(offset, -1);
      const expected = start + new TextEncoder().encode(value.slice(0, value.indexOf(char))).length;
      assert.equal(offset, expected);
    }),
  );
});
