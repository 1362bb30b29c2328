import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fc from "fast-check";
import { AddressBookBuilder } from "./addressbook.ts";
import { normalizeEmail } from "./email.ts";
import { loadBookFromText } from "./load.ts";

/** The module's definition, written the plain way: sort by (FNV-1a of the key, key), hash. */
function referenceFingerprint(entries: Map<string, string>): string {
  const encoder = new TextEncoder();
  const fnv = (bytes: Uint8Array) => {
    let hash = 0x811c9dc5;
    for (const byte of bytes) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
    return hash;
  };
  const compareBytes = (a: Uint8Array, b: Uint8Array) => {
    for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i] - b[i];
    return a.length - b.length;
  };
  const keys = [...entries.keys()].map((key) => encoder.encode(key));
  keys.sort((a, b) => fnv(a) - fnv(b) || compareBytes(a, b));
  const digest = createHash("sha256");
  const length = (n: number) =>
    new Uint8Array([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);
  for (const key of keys) {
    const name = encoder.encode(entries.get(new TextDecoder().decode(key))!);
    digest.update(length(key.length)).update(key).update(length(name.length)).update(name);
  }
  return digest.digest("hex");
}

Deno.test("the fingerprint is the same for CSV and shuffled JSON with other email case, and differs for one name", () => {
  const people = Array.from(
    { length: 200 },
    (_, i) => [`person.${i}@example.com`, `Person ${i} ë`],
  );
  const csv = "email,name\n" + people.map(([email, name]) => `${email},${name}`).join("\n");
  const shuffled = [...people].reverse().map((
    [email, name],
    i,
  ) => [i % 2 ? email.toUpperCase() : email, name]);
  const json = JSON.stringify(Object.fromEntries(shuffled));
  const a = loadBookFromText(csv, "b.csv").book.fingerprint;
  const b = loadBookFromText(json, "b.json").book.fingerprint;
  assert.match(a, /^[0-9a-f]{64}$/);
  assert.equal(a, b);
  const changed =
    loadBookFromText(csv.replace("Person 17 ë", "Person 17 e"), "b.csv").book.fingerprint;
  assert.notEqual(changed, a);
});

Deno.test("property: the fingerprint follows its documented definition", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.tuple(
          fc.string({ minLength: 1, maxLength: 5 }),
          fc.string({ minLength: 1, maxLength: 5 }),
        ),
        { maxLength: 40 },
      ),
      (pairs) => {
        const entries = new Map<string, string>();
        const builder = new AddressBookBuilder();
        for (const [email, name] of pairs) {
          const key = normalizeEmail(email + "@x");
          if (entries.has(key)) continue;
          entries.set(key, name);
          builder.add(key, name);
        }
        assert.equal(builder.build().fingerprint, referenceFingerprint(entries));
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("the fingerprint of an empty book is the SHA-256 of nothing", () => {
  assert.equal(
    new AddressBookBuilder().build().fingerprint,
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  );
});
