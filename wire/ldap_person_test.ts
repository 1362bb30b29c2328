import assert from "node:assert/strict";
import fc from "fast-check";
import { AddressBookBuilder } from "../book/addressbook.ts";
import { ReplyBuffer } from "./front_end.ts";
import { type EntryAttribute, writeSearchResultEntry } from "./ldap_codec.ts";
import { escapeDnValue } from "./ldap_dn.ts";
import { BookSubject, entryAttributes } from "./ldap_search.ts";
import { dnTail, personAttributes, personEntryPlan, writePersonEntry } from "./ldap_person.ts";

const TYPES = ["objectClass", "cn", "sn", "givenName", "displayName", "mail"];

/** The entry as the values path writes it: the reference the bytes path must match. */
function referenceEntry(
  book: ReturnType<AddressBookBuilder["build"]>,
  entry: number,
  suffix: string,
  wanted: Set<string>,
  typesOnly: boolean,
): Uint8Array {
  const values = entryAttributes(book, entry);
  const kept: EntryAttribute[] = personAttributes(values)
    .filter((attribute) => wanted.has(attribute.type))
    .map((attribute) => typesOnly ? { type: attribute.type, values: [] } : attribute);
  const out = new ReplyBuffer();
  writeSearchResultEntry(out, 7, `mail=${escapeDnValue(values.mail)},${suffix}`, kept);
  return out.bytes.slice(0, out.length);
}

Deno.test("property: a person written from the book's bytes is the entry its values make, byte for byte", () => {
  const word = fc.stringMatching(/^[A-Za-zÀ-ÿ李小龙Ω'-]{1,12}$/);
  const name = fc.oneof(
    fc.array(word, { minLength: 1, maxLength: 4 }).map((words) => words.join(" ")),
    fc.constantFrom(" Ada  Lovelace ", "Zoë", "李小龙", "A\u00a0B", "x".repeat(200)),
  );
  const local = fc.stringMatching(/^[a-z0-9.+_#=" ;<>\\-]{1,20}$/);
  const person = fc.record({
    local,
    name,
    given: fc.option(word, { nil: undefined }),
    family: fc.option(word, { nil: undefined }),
  });
  fc.assert(
    fc.property(
      fc.uniqueArray(person, { minLength: 1, maxLength: 6, selector: (p) => p.local }),
      fc.subarray(TYPES),
      fc.boolean(),
      fc.constantFrom("dc=example,dc=com", "o=Zoë\\2c Inc", "dc=addrbook"),
      (people, wantedTypes, typesOnly, suffix) => {
        const builder = new AddressBookBuilder();
        for (const p of people) builder.add(`${p.local}@example.com`, p.name, p.given, p.family);
        const book = builder.build();
        const wanted = new Set(wantedTypes);
        const plan = personEntryPlan(suffix, dnTail(suffix), (type) => wanted.has(type), typesOnly);
        const subject = BookSubject.of(book);
        for (let entry = 0; entry < book.size; entry++) {
          const out = new ReplyBuffer();
          subject.load(entry);
          writePersonEntry(out, 7, subject, plan);
          assert.deepEqual(
            out.bytes.slice(0, out.length),
            referenceEntry(book, entry, suffix, wanted, typesOnly),
          );
        }
      },
    ),
    { numRuns: 400 },
  );
});
