/**
 * The tests' address books: the small book most server tests serve
 * ({@linkcode PEOPLE}), the client tests' larger one, and a CSV file of any
 * rows for the tests that start a server on a file.
 *
 * ```ts
 * import { makeBook, PEOPLE, writeCsvBook } from "./books.ts";
 *
 * const book = makeBook(); // PEOPLE, in memory
 * const path = await writeCsvBook(await Deno.makeTempDir(), PEOPLE); // and as a file
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { type AddressBook, AddressBookBuilder } from "../book/addressbook.ts";

/** The people of the small test book: normalised email and name. */
export const PEOPLE: readonly (readonly [string, string])[] = [
  ["ada@example.com", "Ada Lovelace"],
  ["grace.hopper@navy.example", "Grace Hopper"],
  ["alan@turing.example", "Alan Turing"],
  ["jürgen@beispiel.example", "Jürgen Möller"],
  ["linus+kernel@example.org", "Linus Torvalds"],
  ["margaret@apollo.example", "Margaret Hamilton 🚀"],
];

/** Builds a book from `[normalisedEmail, name]` pairs. */
export function makeBook(people: readonly (readonly [string, string])[] = PEOPLE): AddressBook {
  const builder = new AddressBookBuilder();
  for (const [email, name] of people) {
    assert.equal(builder.add(email, name), -1, "test books have no duplicate emails");
  }
  return builder.build();
}

/** Entries of the generated part of {@linkcode clientTestBook}: person{i}@example.com is "Person {i}". */
export const CLIENT_TEST_PEOPLE = 1000;

/** The client tests' book: three named people and {@linkcode CLIENT_TEST_PEOPLE} generated ones. */
export function clientTestBook(): AddressBook {
  const builder = new AddressBookBuilder();
  builder.add("ada@example.com", "Ada Lovelace");
  builder.add("grace@example.com", "Grace Hopper");
  builder.add("jürgen@beispiel.example", "Jürgen Möller");
  for (let i = 0; i < CLIENT_TEST_PEOPLE; i++) {
    builder.add(`person${i}@example.com`, `Person ${i}`);
  }
  return builder.build();
}

/** Writes a CSV book of `rows` (under an `email,name` header) in `dir` and returns its path. */
export async function writeCsvBook(
  dir: string,
  rows: readonly (readonly [string, string])[],
  name = "book.csv",
): Promise<string> {
  const path = `${dir}/${name}`;
  await Deno.writeTextFile(path, ["email,name", ...rows.map((row) => row.join(","))].join("\n"));
  return path;
}
