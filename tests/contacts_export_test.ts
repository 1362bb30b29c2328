/**
 * End-to-end tests of serving contact apps' CSV exports: a server started
 * on the Google and Outlook exports in testdata/books answers every address
 * of a contact (the second and third columns, and the addresses Google
 * joins in one cell), each with the contact's name, as does the client.
 */

import assert from "node:assert/strict";
import { STATUS_FOUND } from "../protocol.ts";
import { runClientToExit, ServerProcess } from "../testing/processes.ts";

/** Each export, and addresses beyond a contact's first with the name they must be answered with. */
const LATER_ADDRESSES: Record<string, [string, string][]> = {
  "testdata/books/google_several.csv": [
    ["g.hopper@example.com", "Grace Brewster Hopper"],
    ["grace.hopper@example.net", "Grace Brewster Hopper"],
    ["k.johnson@example.com", "Katherine Johnson"],
    ["radia@example.org", "Radia Perlman"],
  ],
  "testdata/books/outlook_several.csv": [
    ["ada.king@example.org", "Ada King Lovelace"],
    ["countess@example.net", "Ada King Lovelace"],
    ["c.babbage@example.org", "Charles Babbage"],
    ["mary@example.net", "Mary Somerville"],
  ],
};

for (const [book, addresses] of Object.entries(LATER_ADDRESSES)) {
  Deno.test(`the server answers a contact's second and later addresses from ${book}`, async () => {
    await using server = await ServerProcess.start(["--data", book]);
    assert.match(server.startLine, /loaded 6 entries from /);
    using client = await server.connect();
    for (const [email, name] of addresses) {
      assert.deepEqual(await client.query(email), { status: STATUS_FOUND, text: name }, email);
    }
    const fromClient = await runClientToExit([
      "--port",
      String(server.port),
      ...addresses.map(([email]) => email),
    ]);
    assert.equal(fromClient.stdout, addresses.map(([, name]) => `${name}\n`).join(""));
    assert.equal(fromClient.code, 0);
  });
}
