import assert from "node:assert/strict";
import { BookCollector, MAX_NAME_BYTES, NO_ENTRIES_MESSAGE } from "./collect.ts";
import { BookError } from "./problem.ts";

const encoder = new TextEncoder();

function problemsOf(collector: BookCollector): string[] {
  try {
    collector.finish(false);
  } catch (error) {
    assert.ok(error instanceof BookError);
    return error.problems.map((problem) => `${problem.line}: ${problem.message}`);
  }
  return [];
}

Deno.test("BookCollector takes bytes and strings to the same entries", () => {
  const pairs: [string, string][] = [
    ["  Ada@Example.COM ", "  Ada Lovelace\t"],
    ["zoë@example.com", "\u00a0Zoë Müller\u3000"],
    ["li@example.com", "李小龙"],
  ];
  const fromStrings = new BookCollector("b.csv", "error");
  const fromBytes = new BookCollector("b.csv", "error");
  pairs.forEach(([email, name], i) => {
    fromStrings.add(email, name, i + 1);
    const e = encoder.encode(`xx${email}`);
    const n = encoder.encode(`${name}yy`);
    fromBytes.addBytes(e, 2, e.length, n, 0, n.length - 2, i + 1);
  });
  const a = fromStrings.finish(false);
  const b = fromBytes.finish(false);
  assert.equal(a.fingerprint, b.fingerprint);
  assert.equal(b.get("ada@example.com"), "Ada Lovelace");
  assert.equal(b.get("ZOË@example.com"), "Zoë Müller");
});

Deno.test("BookCollector refuses emails with invisible characters, naming line and character", () => {
  const collector = new BookCollector("b.csv", "error");
  collector.add("ada\u200b@example.com", "Ada", 2);
  const bytes = encoder.encode("bob@exa\u202emple.com");
  const name = encoder.encode("Bob");
  collector.addBytes(bytes, 0, bytes.length, name, 0, name.length, 3);
  collector.add("soft\u00adhyphen@example.com", "S", 4);
  assert.deepEqual(problemsOf(collector), [
    "2: The email is not valid: it contains U+200B, an invisible or direction-changing character.",
    "3: The email is not valid: it contains U+202E, an invisible or direction-changing character.",
    "4: The email is not valid: it contains U+00AD, an invisible or direction-changing character.",
  ]);
});

Deno.test("BookCollector checks names and duplicates", () => {
  const collector = new BookCollector("b.csv", "error");
  collector.add("a@example.com", " \u2003 ", 2);
  collector.add("b@example.com", "x".repeat(MAX_NAME_BYTES + 1), 3);
  collector.add("c@example.com", "C", 4);
  collector.add("C@example.com", "C2", 5);
  assert.deepEqual(problemsOf(collector), [
    "2: The name is empty.",
    `3: The name is ${MAX_NAME_BYTES + 1} bytes long, over the limit of ${MAX_NAME_BYTES}.`,
    "5: The email is a duplicate of line 4.",
  ]);
  const last = new BookCollector("b.csv", "last");
  last.add("c@example.com", "C", 4);
  last.add("C@example.com", "C2", 5);
  assert.equal(last.finish(false).get("c@example.com"), "C2");
  assert.equal(last.duplicates, 1);
});

Deno.test("BookCollector refuses a book with no entries unless it may be empty", () => {
  assert.deepEqual(problemsOf(new BookCollector("b.csv", "error")), [`0: ${NO_ENTRIES_MESSAGE}`]);
  assert.equal(new BookCollector("b.csv", "error").finish(true).size, 0);
});

Deno.test("BookCollector keeps a given name and surname, trimmed, and takes blank ones as none", () => {
  const collector = new BookCollector("b.vcf", "last");
  collector.add("ada@example.com", "Ada Lovelace", 1, " Ada ", "\u00a0Lovelace");
  collector.add("zoë@example.com", "Zoë", 2, "  ", "");
  collector.add("alan@example.com", "Alan", 3, undefined, "Turing");
  // Last one wins, parts and all.
  collector.add("grace@example.com", "G", 4, "G", "H");
  collector.add("GRACE@example.com", "Grace Hopper", 5, "Grace", "Hopper");
  const book = collector.finish(false);
  const entryOf = (email: string) => book.entry(book.find(encoder.encode(email)));
  assert.deepEqual(entryOf("ada@example.com"), {
    email: "ada@example.com",
    name: "Ada Lovelace",
    givenName: "Ada",
    surname: "Lovelace",
  });
  assert.deepEqual(entryOf("zoë@example.com"), { email: "zoë@example.com", name: "Zoë" });
  assert.deepEqual(entryOf("alan@example.com"), {
    email: "alan@example.com",
    name: "Alan",
    surname: "Turing",
  });
  assert.deepEqual(entryOf("grace@example.com"), {
    email: "grace@example.com",
    name: "Grace Hopper",
    givenName: "Grace",
    surname: "Hopper",
  });
});
