/**
 * The LDAP port of a real server process, as the README starts it: two
 * serving threads, a book file, and a reload by SIGHUP. The book's substring
 * index is built once, in the loading thread, and posted to both serving
 * threads with the book; a search after the reload finds the new people on
 * every connection, whichever thread takes it.
 */

import assert from "node:assert/strict";
import { IO_LOOPS } from "../testing/io_loops.ts";
import { ServerProcess } from "../testing/processes.ts";
import { writeCsvBook } from "../testing/books.ts";
import { tempDir } from "../testing/files.ts";
import { withDeadline } from "../testing/deadlines.ts";

const BASE = "dc=example,dc=com";

async function ldapsearch(url: string, filter: string): Promise<string[]> {
  const output = await withDeadline(
    new Deno.Command("ldapsearch", {
      args: ["-x", "-LLL", "-o", "ldif-wrap=no", "-H", url, "-b", BASE, filter, "1.1"],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output(),
    "ldapsearch to finish",
  );
  assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
  return new TextDecoder().decode(output.stdout).split("\n").filter((line) =>
    line.startsWith("dn: ")
  );
}

for (const io of IO_LOOPS) {
  Deno.test(`a server process serves LDAP from every thread, and a reload reaches them all [--io ${io}]`, async () => {
    await using dir = await tempDir("ldap_process_test_");
    const path = await writeCsvBook(dir.path, [
      ["ada@example.com", "Ada Lovelace"],
      ["grace@example.com", "Grace Hopper"],
    ]);
    await using server = await ServerProcess.start([
      "--data",
      path,
      "--ldap-port",
      "0",
      "--ldap-base",
      BASE,
      "--workers",
      "2",
      "--io",
      io,
    ]);
    const port = /ldap=ldap:\/\/\S+:(\d+)/.exec(server.startLine)?.[1];
    assert.ok(port !== undefined, server.startLine);
    const url = `ldap://127.0.0.1:${port}`;
    // Several connections, so that both threads answer some.
    for (let i = 0; i < 4; i++) {
      assert.deepEqual(await ldapsearch(url, "(cn=*hopp*)"), [
        `dn: mail=grace@example.com,${BASE}`,
      ]);
    }
    await writeCsvBook(dir.path, [
      ["ada@example.com", "Ada Lovelace"],
      ["linus@example.com", "Linus Pauling"],
    ]);
    const from = server.stderr.lines.length;
    server.signal("SIGHUP");
    await server.stderr.waitFor(/reload done/, from);
    for (let i = 0; i < 4; i++) {
      assert.deepEqual(await ldapsearch(url, "(cn=*pauli*)"), [
        `dn: mail=linus@example.com,${BASE}`,
      ]);
      assert.deepEqual(await ldapsearch(url, "(cn=*hopp*)"), []);
    }
  });
}
