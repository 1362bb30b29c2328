import assert from "node:assert/strict";
import fc from "fast-check";
import { formatVCard, MAX_LINE_OCTETS, parseVCards, type VCardContact } from "./vcard.ts";

const FIXTURES = new URL("../testdata/vcard/", import.meta.url);

async function parseFixture(name: string) {
  return parseVCards(await Deno.readTextFile(new URL(name, FIXTURES)));
}

/** Joins lines with CRLF and a final CRLF, as most writers do. */
function crlf(...lines: string[]): string {
  return lines.map((line) => line + "\r\n").join("");
}

/** Parses text that must have no problems and returns its contacts. */
function contactsOf(text: string): VCardContact[] {
  const { contacts, problems } = parseVCards(text);
  assert.deepEqual(problems, []);
  return contacts;
}

function onlyContact(text: string): VCardContact {
  const contacts = contactsOf(text);
  assert.equal(contacts.length, 1);
  return contacts[0];
}

function nameOf(...lines: string[]): string {
  return onlyContact(crlf(...lines)).name;
}

function emailsOf(...lines: string[]): string[] {
  return onlyContact(crlf(...lines)).emails;
}

// ---------------------------------------------------------------- fixtures

Deno.test("reads an Apple Contacts 3.0 export with groups, folds and a photo", async () => {
  assert.deepEqual(await parseFixture("apple_3_0.vcf"), {
    contacts: [
      {
        name: "Johnny Appleseed",
        givenName: "Johnny",
        surname: "Appleseed",
        emails: ["johnny.appleseed@example.com", "j.appleseed@example.org"],
        line: 1,
        emailLines: [8, 10],
      },
      {
        name: "Example Widgets Inc.",
        emails: ["sales@example.com", "support@example.com"],
        line: 42,
        emailLines: [48, 50],
      },
      {
        name:
          "Dr. Zoë Ingrid Ó Briain-Lindqvist, with a display name long enough to fold over two lines",
        givenName: "Zoë Ingrid",
        surname: "Ó Briain-Lindqvist",
        emails: ["zoe.obriain@example.org"],
        line: 54,
        emailLines: [60],
      },
      {
        name: "Nora Nomail",
        givenName: "Nora",
        surname: "Nomail",
        emails: [],
        line: 63,
        emailLines: [],
      },
    ],
    problems: [],
  });
});

Deno.test("reads an Outlook 2.1 export with quoted-printable names in two character sets", async () => {
  assert.deepEqual(await parseFixture("outlook_2_1.vcf"), {
    contacts: [
      {
        name: "Jürgen Müller",
        givenName: "Jürgen",
        surname: "Müller",
        emails: ["juergen.mueller@example.com", "j.mueller@example.org"],
        line: 1,
        emailLines: [9, 10],
      },
      {
        name: "Mme Renée Dupré, Société d'Exemple, Service des Relations Clients",
        givenName: "Renée",
        surname: "Dupré",
        emails: ["renee.dupre@example.org"],
        line: 14,
        emailLines: [21],
      },
      {
        name: "Småland Åberg",
        givenName: "Småland",
        surname: "Åberg",
        emails: ["smaland.aberg@example.com"],
        line: 23,
        emailLines: [28],
      },
    ],
    problems: [],
  });
});

Deno.test("reads a Google Contacts 3.0 export with LF line ends and several emails per card", async () => {
  assert.deepEqual(await parseFixture("google_3_0.vcf"), {
    contacts: [
      {
        name: "Alex Example",
        givenName: "Alex",
        surname: "Example",
        emails: ["alex@example.com", "alex.example@example.org", "alex+lists@example.com"],
        line: 1,
        emailLines: [5, 6, 7],
      },
      {
        name: "Björn Åström",
        givenName: "Björn",
        surname: "Åström",
        emails: ["bjorn.astrom@example.org"],
        line: 14,
        emailLines: [18],
      },
      {
        name: "Chen Example",
        givenName: "Chen",
        surname: "Example",
        emails: ["chen@example.com", "chen.home@example.com", "chen.custom@example.org"],
        line: 22,
        emailLines: [26, 27, 28],
      },
    ],
    problems: [],
  });
});

Deno.test("reads an RFC 6350 4.0 file with escapes, mailto: and a card with only N", async () => {
  assert.deepEqual(await parseFixture("rfc6350_4_0.vcf"), {
    contacts: [
      {
        name: "Jane Q. Example",
        givenName: "Jane",
        surname: "Example",
        emails: ["jane.example@example.com", "jane@example.org"],
        line: 1,
        emailLines: [12, 13],
      },
      {
        name: "Doe, John; Jr.",
        givenName: "John",
        surname: "Doe",
        emails: ["john.doe@example.com", "jdoe@example.org"],
        line: 19,
        emailLines: [23, 24],
      },
      {
        name: "Dr. Ana Marija Kovač PhD",
        givenName: "Ana Marija",
        surname: "Kovač",
        emails: ["ana.kovac@example.org"],
        line: 26,
        emailLines: [29],
      },
    ],
    problems: [],
  });
});

// ---------------------------------------------------------------- features

Deno.test("reads versions 2.1, 3.0 and 4.0 alike", () => {
  for (const version of ["2.1", "3.0", "4.0"]) {
    const card = crlf(
      "BEGIN:VCARD",
      `VERSION:${version}`,
      "FN:Ada",
      "EMAIL:ada@example.com",
      "END:VCARD",
    );
    assert.deepEqual(contactsOf(card), [
      { name: "Ada", emails: ["ada@example.com"], line: 1, emailLines: [4] },
    ]);
  }
});

Deno.test("gives the same result for CRLF and LF line ends, with or without a final line end", () => {
  const lines = ["BEGIN:VCARD", "VERSION:3.0", "FN:Ada", "EMAIL:ada@example.com", "END:VCARD"];
  const expected = [{ name: "Ada", emails: ["ada@example.com"], line: 1, emailLines: [4] }];
  assert.deepEqual(contactsOf(lines.join("\r\n") + "\r\n"), expected);
  assert.deepEqual(contactsOf(lines.join("\n") + "\n"), expected);
  assert.deepEqual(contactsOf(lines.join("\n")), expected);
  assert.deepEqual(contactsOf(lines.join("\r\n")), expected);
});

Deno.test("ignores a leading byte order mark", () => {
  const contacts = contactsOf("\uFEFF" + crlf("BEGIN:VCARD", "FN:Ada", "END:VCARD"));
  assert.deepEqual(contacts, [{ name: "Ada", emails: [], line: 1, emailLines: [] }]);
});

Deno.test("unfolds 3.0 and 4.0 lines by removing the line end and one space or tab", () => {
  const contact = onlyContact(crlf(
    "BEGIN:VCARD",
    "VERSION:4.0",
    "FN:Ada Love",
    " lace",
    "EMAIL:ada@exa",
    "\tmple.com",
    "EMAIL:second@",
    "  example.com",
    "END:VCARD",
  ));
  assert.deepEqual(contact, {
    name: "Ada Lovelace",
    // The second space belongs to the value; trimming removes it.
    emails: ["ada@example.com", "second@ example.com"],
    line: 1,
    emailLines: [5, 7],
  });
});

Deno.test("unfolds 2.1 lines keeping the folding whitespace, as RFC 822 folding does", () => {
  assert.equal(
    nameOf("BEGIN:VCARD", "VERSION:2.1", "FN:Ada", " Lovelace", "END:VCARD"),
    "Ada Lovelace",
  );
});

Deno.test("unfolds a header folded before its colon", () => {
  const contact = onlyContact(crlf(
    "BEGIN:VCARD",
    "FN:Ada",
    "EMAIL;TYPE=INTER",
    " NET;TYPE=HOME:ada@example.com",
    "END:VCARD",
  ));
  assert.deepEqual(contact.emails, ["ada@example.com"]);
  assert.deepEqual(contact.emailLines, [3]);
});

Deno.test("strips a property group such as item1.", () => {
  const contact = onlyContact(crlf(
    "BEGIN:VCARD",
    "item1.FN:Ada",
    "item1.EMAIL;type=INTERNET;type=pref:ada@example.com",
    "item1.X-ABLabel:_$!<Other>!$_",
    "item2.EMAIL:ada@example.org",
    "END:VCARD",
  ));
  assert.deepEqual(contact.emails, ["ada@example.com", "ada@example.org"]);
  assert.equal(contact.name, "Ada");
});

Deno.test("accepts parameters in 2.1 bare, 3.0 list and 4.0 quoted forms", () => {
  assert.deepEqual(
    emailsOf(
      "BEGIN:VCARD",
      "FN:Ada",
      "EMAIL;INTERNET;PREF:a@example.com",
      "EMAIL;TYPE=INTERNET,pref:b@example.com",
      "EMAIL;type=WORK:c@example.com",
      'EMAIL;TYPE="work,home";LABEL="x;y:z":d@example.com',
      "EMAIL;PREF=1:e@example.com",
      "END:VCARD",
    ),
    ["a@example.com", "b@example.com", "c@example.com", "d@example.com", "e@example.com"],
  );
});

Deno.test("treats property and parameter names case-insensitively", () => {
  const contact = onlyContact(crlf(
    "begin:vcard",
    "Version:2.1",
    "fn;encoding=quoted-printable;charset=UTF-8:M=C3=BCller",
    "Email;Internet:ada@example.com",
    "end:VCard",
  ));
  assert.deepEqual(contact, {
    name: "Müller",
    emails: ["ada@example.com"],
    line: 1,
    emailLines: [4],
  });
});

Deno.test("unescapes backslash escapes in names and emails", () => {
  assert.equal(
    nameOf("BEGIN:VCARD", "FN:a\\,b\\;c\\nd\\Ne\\\\f\\:g", "END:VCARD"),
    "a,b;c\nd\ne\\f:g",
  );
  assert.deepEqual(emailsOf("BEGIN:VCARD", "FN:x", "EMAIL:a\\,b@example.com", "END:VCARD"), [
    "a,b@example.com",
  ]);
});

Deno.test("keeps a backslash that starts no known escape", () => {
  assert.equal(nameOf("BEGIN:VCARD", "FN:C\\x and \\", "END:VCARD"), "C\\x and \\");
});

Deno.test("decodes ENCODING=QUOTED-PRINTABLE with soft line breaks", () => {
  const contact = onlyContact(crlf(
    "BEGIN:VCARD",
    "VERSION:2.1",
    "FN;CHARSET=utf-8;ENCODING=QUOTED-PRINTABLE:J=C3=BCrgen M=",
    "=C3=BCller-Schm=",
    "idt",
    "EMAIL;INTERNET:j@example.com",
    "END:VCARD",
  ));
  assert.equal(contact.name, "Jürgen Müller-Schmidt");
  assert.deepEqual(contact.emailLines, [6]);
});

Deno.test("decodes the bare 2.1 QUOTED-PRINTABLE parameter", () => {
  assert.equal(
    nameOf("BEGIN:VCARD", "VERSION:2.1", "FN;QUOTED-PRINTABLE;CHARSET=UTF-8:Zo=C3=AB", "END:VCARD"),
    "Zoë",
  );
});

Deno.test("keeps a space that starts the line after a quoted-printable soft break", () => {
  assert.equal(
    nameOf("BEGIN:VCARD", "VERSION:2.1", "FN;QUOTED-PRINTABLE:Ada=", " Lovelace", "END:VCARD"),
    "Ada Lovelace",
  );
});

Deno.test("decodes quoted-printable in ISO-8859-1 and windows-1252", () => {
  for (const charset of ["ISO-8859-1", "windows-1252", "latin1"]) {
    const name = nameOf(
      "BEGIN:VCARD",
      "VERSION:2.1",
      `FN;ENCODING=QUOTED-PRINTABLE;CHARSET=${charset}:Ren=E9e Dupr=E9 =80`,
      "END:VCARD",
    );
    assert.equal(name, "Renée Dupré €", charset);
  }
});

Deno.test("decodes quoted-printable without CHARSET as UTF-8, else as windows-1252", () => {
  assert.equal(nameOf("BEGIN:VCARD", "FN;QUOTED-PRINTABLE:M=C3=BCller", "END:VCARD"), "Müller");
  assert.equal(nameOf("BEGIN:VCARD", "FN;QUOTED-PRINTABLE:M=FCller", "END:VCARD"), "Müller");
});

Deno.test("follows quoted-printable soft breaks in properties it does not use", () => {
  const contact = onlyContact(crlf(
    "BEGIN:VCARD",
    "VERSION:2.1",
    "NOTE;ENCODING=QUOTED-PRINTABLE:first part=",
    "second part without colon=",
    "third",
    "FN:Ada",
    "EMAIL:ada@example.com",
    "END:VCARD",
  ));
  assert.deepEqual(contact.emailLines, [7]);
});

Deno.test("decodes BASE64 and B encoded names", () => {
  const encoded = btoa(String.fromCharCode(...new TextEncoder().encode("Zoë")));
  assert.equal(nameOf("BEGIN:VCARD", `FN;ENCODING=b;CHARSET=utf-8:${encoded}`, "END:VCARD"), "Zoë");
  assert.equal(nameOf("BEGIN:VCARD", `FN;BASE64:${encoded}`, "END:VCARD"), "Zoë");
});

Deno.test("treats 8BIT and 7BIT values as plain text", () => {
  assert.equal(nameOf("BEGIN:VCARD", "FN;ENCODING=8BIT:Zoë=41", "END:VCARD"), "Zoë=41");
  assert.equal(nameOf("BEGIN:VCARD", "FN;7BIT:Ada", "END:VCARD"), "Ada");
});

Deno.test("keeps every EMAIL of a card in order with its line", () => {
  const contact = onlyContact(
    "BEGIN:VCARD\nFN:Ada\nEMAIL:a@example.com\nTEL:1\nEMAIL:b@example.com\nEMAIL:c@example.com\nEND:VCARD\n",
  );
  assert.deepEqual(contact.emails, ["a@example.com", "b@example.com", "c@example.com"]);
  assert.deepEqual(contact.emailLines, [3, 5, 6]);
});

Deno.test("trims emails, strips mailto: and does not validate them", () => {
  assert.deepEqual(
    emailsOf(
      "BEGIN:VCARD",
      "FN:Ada",
      "EMAIL:  ada@example.com  ",
      "EMAIL;VALUE=uri:mailto:uri@example.com",
      "EMAIL:MAILTO:upper@example.com",
      "EMAIL:not an address",
      "EMAIL:",
      "END:VCARD",
    ),
    ["ada@example.com", "uri@example.com", "upper@example.com", "not an address", ""],
  );
});

Deno.test("uses the first non-empty FN and trims it", () => {
  assert.equal(nameOf("BEGIN:VCARD", "FN:", "FN:  Ada  ", "FN:Other", "END:VCARD"), "Ada");
});

Deno.test("builds the name from N when FN is missing or empty", () => {
  assert.equal(
    nameOf("BEGIN:VCARD", "N:Lovelace;Ada;King;Lady;", "END:VCARD"),
    "Lady Ada King Lovelace",
  );
  assert.equal(
    nameOf("BEGIN:VCARD", "FN: ", "N:Family;Given;Additional;Prefix;Suffix", "END:VCARD"),
    "Prefix Given Additional Family Suffix",
  );
  assert.equal(nameOf("BEGIN:VCARD", "N:Lovelace", "END:VCARD"), "Lovelace");
  assert.equal(nameOf("BEGIN:VCARD", "N:;Ada;;;", "END:VCARD"), "Ada");
  // N may come before or after FN; FN still wins.
  assert.equal(nameOf("BEGIN:VCARD", "N:Lovelace;Ada", "FN:Countess", "END:VCARD"), "Countess");
});

Deno.test("reads N comma lists from 3.0 on but keeps 2.1 commas, and unescapes parts", () => {
  assert.equal(
    nameOf("BEGIN:VCARD", "VERSION:4.0", "N:Doe;Ann,Marie;;;Jr.,MD", "END:VCARD"),
    "Ann Marie Doe Jr. MD",
  );
  assert.equal(nameOf("BEGIN:VCARD", "VERSION:2.1", "N:Doe, Jr.;Ann", "END:VCARD"), "Ann Doe, Jr.");
  assert.equal(
    nameOf("BEGIN:VCARD", "VERSION:3.0", "N:Doe\\;Smith;Ann\\, B", "END:VCARD"),
    "Ann, B Doe;Smith",
  );
});

Deno.test("decodes a quoted-printable N", () => {
  assert.equal(
    nameOf(
      "BEGIN:VCARD",
      "VERSION:2.1",
      "N;CHARSET=utf-8;QUOTED-PRINTABLE:M=C3=BCller;J=",
      "=C3=BCrgen",
      "END:VCARD",
    ),
    "Jürgen Müller",
  );
});

Deno.test("returns a card with a name and no EMAIL as a contact without emails", () => {
  assert.deepEqual(contactsOf(crlf("BEGIN:VCARD", "FN:Ada", "TEL:1", "END:VCARD")), [
    { name: "Ada", emails: [], line: 1, emailLines: [] },
  ]);
});

Deno.test("skips a nested 2.1 AGENT card and its emails", () => {
  const contacts = contactsOf(crlf(
    "BEGIN:VCARD",
    "VERSION:2.1",
    "FN:Boss",
    "AGENT:",
    "BEGIN:VCARD",
    "VERSION:2.1",
    "FN:Assistant",
    "EMAIL:assistant@example.com",
    "END:VCARD",
    "EMAIL:boss@example.com",
    "END:VCARD",
    "BEGIN:VCARD",
    "FN:Next",
    "END:VCARD",
  ));
  assert.deepEqual(contacts, [
    { name: "Boss", emails: ["boss@example.com"], line: 1, emailLines: [10] },
    { name: "Next", emails: [], line: 12, emailLines: [] },
  ]);
});

Deno.test("ignores a 3.0 AGENT whose card is an escaped value", () => {
  assert.deepEqual(
    onlyContact(crlf(
      "BEGIN:VCARD",
      "VERSION:3.0",
      "FN:Boss",
      "AGENT:BEGIN:VCARD\\nFN:Assistant\\nEMAIL:assistant@example.com\\nEND:VCARD",
      "END:VCARD",
    )),
    { name: "Boss", emails: [], line: 1, emailLines: [] },
  );
});

Deno.test("accepts blank lines between and inside cards", () => {
  const contacts = contactsOf(
    "\n\nBEGIN:VCARD\n\nFN:Ada\n  \nEND:VCARD\n\n\nBEGIN:VCARD\nFN:Bob\nEND:VCARD\n\n",
  );
  assert.deepEqual(contacts.map((c) => [c.name, c.line]), [["Ada", 3], ["Bob", 10]]);
});

Deno.test("returns nothing for empty text", () => {
  assert.deepEqual(parseVCards(""), { contacts: [], problems: [] });
  assert.deepEqual(parseVCards("\uFEFF"), { contacts: [], problems: [] });
});

// ---------------------------------------------------------------- problems

Deno.test("reports a card that never ends, and leaves it out", () => {
  assert.deepEqual(parseVCards(crlf("BEGIN:VCARD", "FN:Ada", "EMAIL:ada@example.com")), {
    contacts: [],
    problems: [{
      line: 1,
      message: "The card starting at line 1 has no END:VCARD line, so it was not read.",
    }],
  });
});

Deno.test("reports a missing END:VCARD when the next card begins, and reads the next card", () => {
  const { contacts, problems } = parseVCards(
    crlf("BEGIN:VCARD", "FN:Ada", "BEGIN:VCARD", "FN:Bob", "EMAIL:bob@example.com", "END:VCARD"),
  );
  assert.deepEqual(problems, [{
    line: 1,
    message: "The card starting at line 1 has no END:VCARD line, so it was not read.",
  }]);
  assert.deepEqual(contacts, [{
    name: "Bob",
    emails: ["bob@example.com"],
    line: 3,
    emailLines: [5],
  }]);
});

Deno.test("reports END:VCARD without BEGIN:VCARD", () => {
  assert.deepEqual(parseVCards(crlf("BEGIN:VCARD", "FN:Ada", "END:VCARD", "END:VCARD")).problems, [
    { line: 4, message: "This END:VCARD has no BEGIN:VCARD before it." },
  ]);
});

Deno.test("reports a card with EMAIL but no name, and leaves it out", () => {
  const lines = Array.from({ length: 11 }, () => "");
  lines.push("BEGIN:VCARD", "VERSION:3.0", "FN:", "N:;;;;", "EMAIL:ada@example.com", "END:VCARD");
  assert.deepEqual(parseVCards(crlf(...lines)), {
    contacts: [],
    problems: [{ line: 12, message: "The card starting at line 12 has no name (FN or N)." }],
  });
});

Deno.test("does not report a card with neither name nor EMAIL", () => {
  assert.deepEqual(parseVCards(crlf("BEGIN:VCARD", "TEL:1", "END:VCARD")), {
    contacts: [{ name: "", emails: [], line: 1, emailLines: [] }],
    problems: [],
  });
});

Deno.test("reports a line without a colon and keeps reading the card", () => {
  const { contacts, problems } = parseVCards(
    crlf("BEGIN:VCARD", "FN:Ada", "just some words", "EMAIL:ada@example.com", "END:VCARD"),
  );
  assert.deepEqual(problems, [{
    line: 3,
    message: "This line has no colon, so it is not a vCard property (NAME:value).",
  }]);
  assert.deepEqual(contacts[0].emails, ["ada@example.com"]);
});

Deno.test("reports an unknown ENCODING and skips that value", () => {
  const { contacts, problems } = parseVCards(
    crlf(
      "BEGIN:VCARD",
      "FN:Ada",
      "EMAIL;ENCODING=UUENCODE:xyz",
      "EMAIL:ada@example.com",
      "END:VCARD",
    ),
  );
  assert.deepEqual(problems, [{
    line: 3,
    message:
      'The encoding "UUENCODE" is unknown (expected QUOTED-PRINTABLE, BASE64, B, 8BIT or 7BIT).',
  }]);
  assert.deepEqual(contacts[0].emails, ["ada@example.com"]);
  assert.deepEqual(contacts[0].emailLines, [4]);
});

Deno.test("reports an unknown CHARSET", () => {
  const { contacts, problems } = parseVCards(
    crlf("BEGIN:VCARD", "N:Ada", "FN;CHARSET=klingon;QUOTED-PRINTABLE:Q=3Fapla", "END:VCARD"),
  );
  assert.deepEqual(problems, [{ line: 3, message: 'The character set "klingon" is unknown.' }]);
  assert.equal(contacts[0].name, "Ada");
});

Deno.test("reports a BASE64 value that is not base64", () => {
  assert.deepEqual(
    parseVCards(crlf("BEGIN:VCARD", "FN;ENCODING=b:***", "N:Ada", "END:VCARD")).problems,
    [
      { line: 2, message: "The FN's BASE64 value is not valid." },
    ],
  );
});

Deno.test("reports text outside any card once per stretch", () => {
  const { contacts, problems } = parseVCards(
    crlf(
      "hello",
      "more",
      "",
      "BEGIN:VCARD",
      "FN:Ada",
      "END:VCARD",
      "",
      "trailing: text",
      "BEGIN:VCALENDAR",
    ),
  );
  assert.deepEqual(problems, [
    { line: 1, message: "This text is outside any card (not between BEGIN:VCARD and END:VCARD)." },
    { line: 8, message: "This text is outside any card (not between BEGIN:VCARD and END:VCARD)." },
  ]);
  assert.equal(contacts.length, 1);
});

Deno.test("collects every problem in line order instead of stopping at the first", () => {
  const { contacts, problems } = parseVCards(crlf(
    "END:VCARD", // 1
    "BEGIN:VCARD", // 2
    "EMAIL:nameless@example.com", // 3
    "END:VCARD", // 4
    "BEGIN:VCARD", // 5
    "FN:Ada", // 6
    "oops", // 7
    "EMAIL;ENCODING=X:ada@example.com", // 8
    "END:VCARD", // 9
    "BEGIN:VCARD", // 10
    "FN:Unended", // 11
    "oops again", // 12
  ));
  assert.deepEqual(problems.map((p) => p.line), [1, 2, 7, 8, 10, 12]);
  assert.deepEqual(contacts, [{ name: "Ada", emails: [], line: 5, emailLines: [] }]);
});

// ---------------------------------------------------------------- writer and properties

Deno.test("formatVCard writes 3.0 and 4.0 cards with CRLF", () => {
  const contacts = [{ name: "Doe, Jane; Jr.", emails: ["jane@example.com", "j@example.org"] }];
  assert.equal(
    formatVCard(contacts, "3.0"),
    crlf(
      "BEGIN:VCARD",
      "VERSION:3.0",
      "FN:Doe\\, Jane\\; Jr.",
      "N:Doe\\, Jane\\; Jr.;;;;",
      "EMAIL;TYPE=INTERNET:jane@example.com",
      "EMAIL;TYPE=INTERNET:j@example.org",
      "END:VCARD",
    ),
  );
  assert.equal(
    formatVCard(contacts, "4.0"),
    crlf(
      "BEGIN:VCARD",
      "VERSION:4.0",
      "FN:Doe\\, Jane; Jr.",
      "EMAIL:jane@example.com",
      "EMAIL:j@example.org",
      "END:VCARD",
    ),
  );
});

Deno.test("formatVCard folds at 75 octets without splitting a character", () => {
  const text = formatVCard([{ name: "ü".repeat(100) + "😀".repeat(30), emails: [] }], "4.0");
  const encoder = new TextEncoder();
  const lines = text.split("\r\n");
  assert.ok(lines.length > 4);
  for (const line of lines) assert.ok(encoder.encode(line).length <= MAX_LINE_OCTETS, line);
  assert.equal(onlyContact(text).name, "ü".repeat(100) + "😀".repeat(30));
});

Deno.test("formatVCard fills ASCII lines to exactly 75 octets, counting the folding space", () => {
  const name = "a".repeat(300);
  const lines = formatVCard([{ name, emails: [] }], "4.0").split("\r\n");
  assert.deepEqual(lines.slice(2, 6).map((line) => line.length), [75, 75, 75, 75]);
  assert.equal(onlyContact(lines.join("\r\n")).name, name);
});

const SPECIAL_CHARS = fc.constantFrom(
  ",",
  ";",
  "\\",
  ":",
  "=",
  "\n",
  "\r\n",
  "\r",
  " ",
  "\t",
  "ü",
  "漢",
  "😀",
);
const TEXT = fc.string({
  unit: fc.oneof(SPECIAL_CHARS, fc.string({ unit: "binary", minLength: 1, maxLength: 1 })),
  maxLength: 120,
});

/** What the parser gives back for a written value: line ends become \n, then trimmed. */
function expectedText(value: string): string {
  return value.replace(/\r\n?/g, "\n").trim();
}

Deno.test("property: contacts written by formatVCard parse back to the same contacts", () => {
  const contact = fc.record({
    name: TEXT.filter((name) => expectedText(name) !== ""),
    emails: fc.array(TEXT.filter((email) => !/^mailto:/i.test(expectedText(email))), {
      maxLength: 4,
    }),
  });
  const encoder = new TextEncoder();
  fc.assert(
    fc.property(
      fc.array(contact, { maxLength: 5 }),
      fc.constantFrom("3.0", "4.0"),
      (contacts, version) => {
        const text = formatVCard(contacts, version as "3.0" | "4.0");
        for (const line of text.split("\r\n")) {
          assert.ok(encoder.encode(line).length <= MAX_LINE_OCTETS);
        }
        const parsed = parseVCards(text);
        assert.deepEqual(parsed.problems, []);
        assert.deepEqual(
          parsed.contacts.map((c) => ({ name: c.name, emails: c.emails })),
          contacts.map((c) => ({ name: expectedText(c.name), emails: c.emails.map(expectedText) })),
        );
      },
    ),
    { numRuns: 500 },
  );
});

Deno.test("property: any text parses without throwing and problems point at real lines", () => {
  const piece = fc.oneof(
    fc.constantFrom(
      "BEGIN:VCARD",
      "END:VCARD",
      "VERSION:2.1",
      "AGENT:",
      "FN:Ada",
      "N:a;b",
      "EMAIL:a@example.com",
      "FN;QUOTED-PRINTABLE:=C3=",
      "FN;ENCODING=b:***",
      "FN;ENCODING=zz:x",
      'X;P="a:b',
      " folded",
      "=",
      "",
      "\uFEFF",
    ),
    fc.string(),
  );
  fc.assert(
    fc.property(
      fc.array(piece, { maxLength: 30 }),
      fc.constantFrom("\n", "\r\n"),
      (pieces, eol) => {
        const text = pieces.join(eol);
        const lineCount = text.split("\n").length;
        const { contacts, problems } = parseVCards(text);
        for (const problem of problems) assert.ok(problem.line >= 1 && problem.line <= lineCount);
        for (const contact of contacts) {
          assert.equal(contact.emails.length, contact.emailLines.length);
          for (const line of contact.emailLines) {
            assert.ok(
              line > contact.line && line <= lineCount,
            );
          }
        }
      },
    ),
    { numRuns: 500 },
  );
});

Deno.test("N gives the given name and surname beside FN, and nothing when its parts are empty", () => {
  const partsOf = (...lines: string[]) => {
    const { givenName, surname } = onlyContact(crlf(...lines));
    return { givenName, surname };
  };
  assert.deepEqual(
    partsOf("BEGIN:VCARD", "VERSION:3.0", "FN:Lady Ada", "N:Lovelace;Ada;King;Lady;", "END:VCARD"),
    { givenName: "Ada", surname: "Lovelace" },
  );
  // From 3.0 on, a comma separates several names of one part; escapes are undone.
  assert.deepEqual(
    partsOf("BEGIN:VCARD", "VERSION:4.0", "N:Doe\\, Smith;Ann,Marie;;;", "END:VCARD"),
    { givenName: "Ann Marie", surname: "Doe, Smith" },
  );
  // 2.1 has no such lists: its commas are kept.
  assert.deepEqual(
    partsOf("BEGIN:VCARD", "VERSION:2.1", "N:Doe, Jr.;Ann", "END:VCARD"),
    { givenName: "Ann", surname: "Doe, Jr." },
  );
  assert.deepEqual(partsOf("BEGIN:VCARD", "FN:Only", "N:;Only;;;", "END:VCARD"), {
    givenName: "Only",
    surname: undefined,
  });
  assert.deepEqual(partsOf("BEGIN:VCARD", "FN:Widgets", "N:;;;;", "END:VCARD"), {
    givenName: undefined,
    surname: undefined,
  });
  // No N: no parts at all, not even empty ones.
  assert.deepEqual(onlyContact(crlf("BEGIN:VCARD", "FN:Ada", "END:VCARD")), {
    name: "Ada",
    emails: [],
    line: 1,
    emailLines: [],
  });
});
