/**
 * The LDAP codec (wire/ldap_codec.ts) against a real client: OpenLDAP's
 * `ldapsearch` (Debian's ldap-utils) talks to a small scripted server on
 * loopback that decodes what it sends with LdapDecoder and answers with the
 * codec's encoders. ldapsearch printing the entries and exiting 0 shows
 * that both directions interoperate; the decoded requests show that we read
 * what it meant.
 */

import assert from "node:assert/strict";
import { withDeadline } from "../testing/deadlines.ts";
import { writeAll } from "../common/write_all.ts";
import { ReplyBuffer } from "../wire/front_end.ts";
import {
  decodePagedResults,
  type EntryAttribute,
  LdapDecoder,
  type LdapRequest,
  type LdapSearch,
  PAGED_RESULTS_OID,
  pagedResultsControl,
  ResultCode,
  writeBindResponse,
  writeSearchResultDone,
  writeSearchResultEntry,
} from "../wire/ldap_codec.ts";
import { escapeDnValue } from "../wire/ldap_dn.ts";

const BASE = "dc=example,dc=com";

interface Person {
  mail: string;
  cn: string;
}

const PEOPLE: Person[] = [
  { mail: "ada@example.com", cn: "Ada Lovelace" },
  { mail: "alan+work@example.com", cn: "Alan Turing" },
  { mail: "zoë@example.com", cn: "Zoë Ñúñez" },
];

/** How the scripted server answers a bind. */
interface Script {
  bindResult: number;
  people: Person[];
}

function attributesOf(person: Person, search: LdapSearch): EntryAttribute[] {
  const all: EntryAttribute[] = [
    { type: "objectClass", values: ["top", "person", "organizationalPerson", "inetOrgPerson"] },
    { type: "cn", values: [person.cn] },
    { type: "mail", values: [person.mail] },
  ];
  const wanted = search.attributes.map((a) => a.toLowerCase());
  const chosen = wanted.length === 0 || wanted.includes("*")
    ? all
    : all.filter((a) => wanted.includes(a.type.toLowerCase()));
  return search.typesOnly ? chosen.map((a) => ({ type: a.type, values: [] })) : chosen;
}

/** Answers one request into `out`; returns whether the connection ends. */
function answer(request: LdapRequest, out: ReplyBuffer, script: Script): boolean {
  const op = request.op;
  switch (op.kind) {
    case "bind":
      writeBindResponse(
        out,
        request.messageId,
        script.bindResult,
        "",
        script.bindResult === 0 ? "" : "No users are configured.",
      );
      return false;
    case "search": {
      for (const person of script.people) {
        writeSearchResultEntry(
          out,
          request.messageId,
          `mail=${escapeDnValue(person.mail)},${BASE}`,
          attributesOf(person, op),
        );
      }
      const paged = request.controls.find((c) => c.type === PAGED_RESULTS_OID);
      // The one and last page: an empty cookie.
      const controls = paged === undefined ? [] : [pagedResultsControl(0, new Uint8Array(0))];
      writeSearchResultDone(out, request.messageId, ResultCode.success, "", "", controls);
      return false;
    }
    case "unbind":
      return true;
    default:
      return false;
  }
}

interface Session {
  requests: LdapRequest[];
  /** Every byte the client sent. */
  bytes: Uint8Array;
}

/** Serves one connection with the scripted answers until the client unbinds or closes. */
async function serveOne(listener: Deno.Listener, script: Script): Promise<Session> {
  const conn = await listener.accept();
  const decoder = new LdapDecoder();
  const buffer = new Uint8Array(16); // small, so that messages arrive split across reads
  const requests: LdapRequest[] = [];
  const received: number[] = [];
  try {
    for (let ended = false; !ended;) {
      const count = await conn.read(buffer);
      if (count === null) break;
      received.push(...buffer.subarray(0, count));
      decoder.push(buffer, count);
      const out = new ReplyBuffer();
      for (let request = decoder.take(); request !== null; request = decoder.take()) {
        requests.push(request);
        ended ||= answer(request, out, script);
      }
      if (out.length > 0) await writeAll(conn, out.bytes.subarray(0, out.length));
    }
  } finally {
    conn.close();
  }
  return { requests, bytes: Uint8Array.from(received) };
}

interface Run {
  session: Session;
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs ldapsearch with `args` against a scripted server. */
async function ldapsearch(
  args: string[],
  script: Script = { bindResult: 0, people: PEOPLE },
): Promise<Run> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const url = `ldap://127.0.0.1:${listener.addr.port}`;
  try {
    const served = serveOne(listener, script);
    const command = new Deno.Command("ldapsearch", {
      args: ["-H", url, "-o", "nettimeout=10", ...args],
      // No ~/.ldaprc or /etc/ldap/ldap.conf: the test says everything.
      env: { LDAPNOINIT: "1" },
      stdout: "piped",
      stderr: "piped",
    });
    let output: Deno.CommandOutput;
    try {
      output = await withDeadline(command.output(), "ldapsearch to finish");
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        throw new Error("ldapsearch is not installed: install Debian's ldap-utils (.ci/run does).");
      }
      throw error;
    }
    const session = await withDeadline(served, "the scripted server to finish");
    const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
    return {
      session,
      code: output.code,
      stdout: decode(output.stdout),
      stderr: decode(output.stderr),
    };
  } finally {
    listener.close();
  }
}

Deno.test("ldapsearch: an equality search, decoded as sent and answered so that it exits 0", async () => {
  const run = await ldapsearch(["-x", "-b", BASE, "(mail=ada@example.com)", "cn", "mail"]);
  assert.equal(run.code, 0, run.stderr);
  const [bind, search, unbind] = run.session.requests;
  assert.equal(run.session.requests.length, 3);
  assert.deepEqual(bind.op, {
    kind: "bind",
    version: 3,
    name: "",
    authentication: { kind: "simple", password: new Uint8Array(0) },
  });
  assert.deepEqual(search.op, {
    kind: "search",
    baseObject: BASE,
    scope: 2,
    derefAliases: 0,
    sizeLimit: 0,
    timeLimit: 0,
    typesOnly: false,
    filter: { kind: "equality", attribute: "mail", value: "ada@example.com" },
    attributes: ["cn", "mail"],
  });
  assert.deepEqual(search.controls, []);
  assert.equal(unbind.op.kind, "unbind");
  assert.ok(bind.messageId < search.messageId && search.messageId < unbind.messageId);
  // What it printed: our entries, our escaping, our UTF-8 (base64 in LDIF, as it is not ASCII).
  assert.match(run.stdout, /^dn: mail=ada@example.com,dc=example,dc=com$/m);
  assert.match(run.stdout, /^cn: Ada Lovelace$/m);
  assert.match(run.stdout, /^dn: mail=alan\\\+work@example.com,dc=example,dc=com$/m);
  const zoe = /^cn:: (\S+)$/m.exec(run.stdout);
  assert.ok(zoe, run.stdout);
  assert.equal(
    new TextDecoder().decode(Uint8Array.from(atob(zoe[1]), (c) => c.charCodeAt(0))),
    "Zoë Ñúñez",
  );
  assert.match(run.stdout, /^# numEntries: 3$/m);
  // The bytes are those saved in testdata for wire/ldap_codec_test.ts: ldapsearch sends the same each time.
  const saved = await Deno.readFile(
    new URL("../testdata/ldap/ldapsearch_equality.bin", import.meta.url),
  );
  assert.deepEqual(run.session.bytes, saved);
});

Deno.test("ldapsearch: Thunderbird's filter, paged results, one level, typesOnly and a size limit", async () => {
  const run = await ldapsearch([
    "-x",
    "-b",
    BASE,
    "-s",
    "one",
    "-z",
    "100",
    "-l",
    "5",
    "-A",
    "-E",
    "pr=50/noprompt",
    "(|(cn=*ada*love*)(mail=*ada*)(givenName=*ada*)(sn=*ada*))",
    "cn",
  ]);
  assert.equal(run.code, 0, run.stderr);
  const search = run.session.requests.find((r) => r.op.kind === "search")!;
  const op = search.op as LdapSearch;
  assert.equal(op.scope, 1);
  assert.equal(op.sizeLimit, 100);
  assert.equal(op.timeLimit, 5);
  assert.equal(op.typesOnly, true);
  assert.deepEqual(op.filter, {
    kind: "or",
    filters: [
      { kind: "substrings", attribute: "cn", any: ["ada", "love"] },
      { kind: "substrings", attribute: "mail", any: ["ada"] },
      { kind: "substrings", attribute: "givenName", any: ["ada"] },
      { kind: "substrings", attribute: "sn", any: ["ada"] },
    ],
  });
  assert.equal(search.controls.length, 1);
  assert.equal(search.controls[0].type, PAGED_RESULTS_OID);
  assert.deepEqual(decodePagedResults(search.controls[0].value!), {
    size: 50,
    cookie: new Uint8Array(0),
  });
  // typesOnly: the attribute's name, no value; our paged results control, as ldapsearch shows it.
  assert.match(run.stdout, /^cn:$/m);
  assert.doesNotMatch(run.stdout, /^cn: /m);
  assert.match(run.stdout, /^control: 1\.2\.840\.113556\.1\.4\.319 false MAUCAQAEAA==$/m);
  assert.match(run.stdout, /^# numEntries: 3$/m);
});

Deno.test("ldapsearch: a simple bind with a password, refused with invalidCredentials", async () => {
  const run = await ldapsearch(
    ["-x", "-D", "cn=admin,dc=example,dc=com", "-w", "s3cret", "-b", BASE, "(cn=*)"],
    { bindResult: ResultCode.invalidCredentials, people: [] },
  );
  assert.equal(run.code, 49, run.stderr);
  assert.match(run.stderr, /Invalid credentials \(49\)/);
  assert.match(run.stderr, /No users are configured\./);
  assert.deepEqual(run.session.requests[0].op, {
    kind: "bind",
    version: 3,
    name: "cn=admin,dc=example,dc=com",
    authentication: { kind: "simple", password: new TextEncoder().encode("s3cret") },
  });
});

Deno.test("ldapsearch: the rootDSE's base search, and an extensible filter", async () => {
  const run = await ldapsearch([
    "-x",
    "-b",
    "",
    "-s",
    "base",
    "(cn:dn:caseIgnoreMatch:=Ada)",
    "+",
    "*",
  ]);
  assert.equal(run.code, 0, run.stderr);
  const op = run.session.requests[1].op as LdapSearch;
  assert.equal(op.baseObject, "");
  assert.equal(op.scope, 0);
  assert.deepEqual(op.attributes, ["+", "*"]);
  assert.deepEqual(op.filter, {
    kind: "extensible",
    attribute: "cn",
    matchingRule: "caseIgnoreMatch",
    value: "Ada",
    dnAttributes: true,
  });
});
