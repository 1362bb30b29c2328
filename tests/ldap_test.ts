/**
 * The LDAP front end end to end, with real clients: OpenLDAP's `ldapsearch`
 * (Debian's ldap-utils) and the `ldapts` library, against a server started
 * in this process with `--ldap-port`/`--ldaps-port`, on both event loops.
 * Each mail client's own filter, binds, refused writes, size limits,
 * paging, the rootDSE, LDAPS, the access rules and limits, and hostile
 * bytes on a raw socket.
 */

import assert from "node:assert/strict";
import { Client } from "ldapts";
import { type AddressBook, AddressBookBuilder } from "../book/addressbook.ts";
import { LOOPBACK } from "../testing/loopback.ts";
import { IO_LOOPS, testOnEachLoop } from "../testing/io_loops.ts";
import { withDeadline } from "../testing/deadlines.ts";
import { makeTestPki, ROTATED_SERVER_NAME, SERVER_NAME } from "../testing/pki.ts";
import { metricValue } from "../testing/metrics.ts";
import { PEOPLE } from "../testing/books.ts";
import { encodeProxyHeader } from "../access/proxy_header.ts";
import { type TestServerOptions, withTestServer } from "../testing/in_process_server.ts";
import type { ServerHandle } from "../server/start.ts";

const BASE = "dc=example,dc=com";
/** Beside the test book's people: a family of many, for limits and paging. */
const MANY = 300;

/** The test book, a person with a name beyond ASCII, and MANY people called Reader. */
function ldapBook(): AddressBook {
  const builder = new AddressBookBuilder();
  for (const [email, name] of PEOPLE) builder.add(email, name);
  builder.add("zoe@example.com", "Zoë Quinn");
  builder.add("alan+work@example.com", "Alan Work");
  for (let i = 0; i < MANY; i++) builder.add(`reader${i}@example.net`, `Pat Reader ${i}`);
  return builder.build();
}

function ldapOptions(
  io: TestServerOptions["io"],
  extra: TestServerOptions = {},
  ldap: Partial<NonNullable<TestServerOptions["ldap"]>> = {},
): TestServerOptions {
  return { io, book: ldapBook(), ...extra, ldap: { port: 0, base: BASE, sizeLimit: 500, ...ldap } };
}

function ldapUrl(server: ServerHandle): string {
  return `ldap://${LOOPBACK}:${server.ldapAddr!.port}`;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs an OpenLDAP tool (ldapsearch, ldapadd, ...), or OpenSSL's, to its end, its input empty. */
async function ldapTool(
  tool: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<Run> {
  const output = await withDeadline(
    new Deno.Command(tool, { args, stdin: "null", stdout: "piped", stderr: "piped", env })
      .output(),
    `${tool} to finish`,
  );
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/** `ldapsearch -x -LLL` against the server's LDAP port, with the suffix as base. */
function ldapsearch(server: ServerHandle, args: string[], base = BASE): Promise<Run> {
  return ldapsearchAt(ldapUrl(server), args, {}, base);
}

/**
 * `ldapsearch -x -LLL` against `url` (`ldap://` or `ldaps://`), with `env`
 * for libldap's TLS settings (LDAPTLS_CACERT, LDAPTLS_CERT, LDAPTLS_KEY).
 */
function ldapsearchAt(
  url: string,
  args: string[],
  env: Record<string, string> = {},
  base = BASE,
): Promise<Run> {
  return ldapTool(
    "ldapsearch",
    ["-x", "-LLL", "-o", "ldif-wrap=no", "-H", url, "-b", base, ...args],
    env,
  );
}

/** The LDAPS port's URL. */
function ldapsUrl(server: ServerHandle): string {
  return `ldaps://${LOOPBACK}:${server.ldapsAddr!.port}`;
}

/** The DNs in an LDIF output. */
function dns(ldif: string): string[] {
  return ldif.split("\n").filter((line) => line.startsWith("dn: ")).map((line) => line.slice(4));
}

testOnEachLoop("ldapsearch finds a person by mail, with the attributes asked for", async (io) => {
  await withTestServer(ldapOptions(io), async ({ server }) => {
    const run = await ldapsearch(server, [
      "(mail=ada@example.com)",
      "cn",
      "mail",
      "sn",
      "givenName",
    ]);
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(run.stdout.trim().split("\n"), [
      `dn: mail=ada@example.com,${BASE}`,
      "cn: Ada Lovelace",
      "sn: Lovelace",
      "givenName: Ada",
      "mail: ada@example.com",
    ]);
    const all = await ldapsearch(server, ["(mail=ADA@Example.com)"]);
    assert.match(all.stdout, /^objectClass: inetOrgPerson$/m);
    assert.match(all.stdout, /^displayName: Ada Lovelace$/m);
  });
});

testOnEachLoop("each mail client's own filter finds what it should", async (io) => {
  await withTestServer(ldapOptions(io), async ({ server }) => {
    // Thunderbird (default and older), Roundcube, mutt (lbdb, plain and -i), Apple Contacts.
    const cases: [string, string[]][] = [
      ["(|(cn=*ada*)(mail=*ada*)(givenName=*ada*)(sn=*ada*))", ["ada@example.com"]],
      ["(|(cn=grace*)(mail=grace*)(sn=grace*))", ["grace.hopper@navy.example"]],
      ["(&(objectClass=inetOrgPerson)(|(mail=*turing*)(cn=*turing*)))", ["alan@turing.example"]],
      ["(|(givenname=Ada)(sn=Ada)(cn=Ada))", ["ada@example.com"]],
      ["(|(givenname=*lovel*)(sn=*lovel*)(cn=*lovel*))", ["ada@example.com"]],
      ["(|(givenName=Alan)(sn=Alan)(cn=Alan)(mail=Alan))", [
        "alan@turing.example",
        "alan+work@example.com",
      ]],
      ["(|(givenName=Grace)(sn=Hopper)(cn=Grace Hopper)(mail=grace.hopper@navy.example))", [
        "grace.hopper@navy.example",
      ]],
    ];
    for (const [filter, mails] of cases) {
      const run = await ldapsearch(server, ["-z", "100", filter, "mail"]);
      assert.equal(run.code, 0, `${filter}: ${run.stderr}`);
      assert.deepEqual(
        dns(run.stdout).sort(),
        mails.map((mail) => `mail=${mail.replace("+", "\\+")},${BASE}`).sort(),
        filter,
      );
    }
  });
});

testOnEachLoop(
  "matching is case-insensitive beyond ASCII, and unknown attributes are Undefined",
  async (io) => {
    await withTestServer(ldapOptions(io), async ({ server }) => {
      const zoe = await ldapsearch(server, ["(cn=ZOË*)", "cn"]);
      assert.equal(zoe.code, 0);
      assert.deepEqual(dns(zoe.stdout), [`mail=zoe@example.com,${BASE}`]);
      // Evolution's "any field" OR, mostly on attributes the directory does not have.
      const evolution = await ldapsearch(server, [
        "(|(cn=*zoë*)(title=*zoë*)(o=*zoë*)(telephoneNumber=*zoë*)(labeledURI=*zoë*)(mail=*zoë*))",
        "cn",
      ]);
      assert.equal(evolution.code, 0, evolution.stderr);
      assert.deepEqual(dns(evolution.stdout), [`mail=zoe@example.com,${BASE}`]);
      const not = await ldapsearch(server, ["(!(title=boss))", "cn"]);
      assert.equal(not.code, 0);
      assert.deepEqual(dns(not.stdout), [], "NOT Undefined is Undefined");
    });
  },
);

testOnEachLoop(
  "a DN with a + round-trips, and a base search on a person or the suffix finds it",
  async (io) => {
    await withTestServer(ldapOptions(io), async ({ server }) => {
      const found = await ldapsearch(server, ["(mail=alan+work@example.com)", "1.1"]);
      assert.deepEqual(dns(found.stdout), [`mail=alan\\+work@example.com,${BASE}`]);
      const base = await ldapsearch(
        server,
        ["-s", "base", "(objectClass=*)", "cn"],
        dns(found.stdout)[0],
      );
      assert.equal(base.code, 0, base.stderr);
      assert.match(base.stdout, /^cn: Alan Work$/m);
      const suffix = await ldapsearch(server, ["-s", "base", "(objectClass=*)"]);
      assert.equal(suffix.code, 0);
      assert.deepEqual(dns(suffix.stdout), [BASE]);
      const outside = await ldapsearch(server, ["(objectClass=*)"], "dc=elsewhere,dc=org");
      assert.equal(outside.code, 32, "noSuchObject");
      const missing = await ldapsearch(
        server,
        ["-s", "base", "(objectClass=*)"],
        `mail=nobody@example.com,${BASE}`,
      );
      assert.equal(missing.code, 32);
    });
  },
);

testOnEachLoop("the rootDSE names the suffix, LDAPv3 and paged results", async (io) => {
  await withTestServer(ldapOptions(io), async ({ server }) => {
    const run = await ldapsearch(server, [
      "-s",
      "base",
      "(objectClass=*)",
      "namingContexts",
      "supportedLDAPVersion",
      "supportedControl",
    ], "");
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^dn:\s*$/m);
    assert.match(run.stdout, new RegExp(`^namingContexts: ${BASE}$`, "m"));
    assert.match(run.stdout, /^supportedLDAPVersion: 3$/m);
    assert.match(run.stdout, /^supportedControl: 1\.2\.840\.113556\.1\.4\.319$/m);
  });
});

testOnEachLoop(
  "size limits: the client's, the server's cap, and paging within the cap",
  async (io) => {
    await withTestServer(ldapOptions(io, {}, { sizeLimit: 120 }), async ({ server }) => {
      const client = await ldapsearch(server, ["-z", "5", "(cn=Pat Reader*)", "1.1"]);
      assert.equal(client.code, 4, "sizeLimitExceeded");
      assert.equal(dns(client.stdout).length, 5);
      const cap = await ldapsearch(server, ["(cn=Pat Reader*)", "1.1"]);
      assert.equal(cap.code, 4);
      assert.equal(dns(cap.stdout).length, 120, "the server's cap");
      const paged = await ldapsearch(server, ["-E", "pr=50/noprompt", "(sn=1*)", "1.1"]);
      assert.equal(paged.code, 0, paged.stderr);
      const expected = Array.from({ length: MANY }, (_, i) => i).filter((i) =>
        String(i).startsWith("1")
      );
      assert.equal(dns(paged.stdout).length, expected.length);
      assert.equal(new Set(dns(paged.stdout)).size, expected.length, "no entry twice");
      const pagedCap = await ldapsearch(server, [
        "-E",
        "pr=50/noprompt",
        "(cn=Pat Reader*)",
        "1.1",
      ]);
      assert.equal(dns(pagedCap.stdout).length, 120, "paging stays within the cap in total");
    });
  },
);

testOnEachLoop(
  "binds: anonymous succeeds, a user with a password is refused, an empty password unwilling",
  async (io) => {
    await withTestServer(ldapOptions(io), async ({ server }) => {
      const anonymous = await ldapsearch(server, [
        "-D",
        "",
        "-w",
        "",
        "(mail=ada@example.com)",
        "1.1",
      ]);
      assert.equal(anonymous.code, 0, anonymous.stderr);
      const user = await ldapsearch(server, [
        "-D",
        `cn=admin,${BASE}`,
        "-w",
        "secret",
        "(mail=ada@example.com)",
      ]);
      assert.equal(user.code, 49, "invalidCredentials");
      const client = new Client({ url: ldapUrl(server) });
      try {
        await assert.rejects(
          client.bind(`cn=admin,${BASE}`, ""),
          (error: { code?: number }) => error.code === 53,
        );
      } finally {
        await client.unbind();
      }
    });
  },
);

testOnEachLoop("writes are refused and change nothing", async (io) => {
  await withTestServer(ldapOptions(io), async ({ server }) => {
    const dir = await Deno.makeTempDir({ prefix: "ldap_write_" });
    try {
      await Deno.writeTextFile(
        `${dir}/add.ldif`,
        `dn: mail=eve@example.com,${BASE}\nobjectClass: inetOrgPerson\ncn: Eve\nsn: Eve\nmail: eve@example.com\n`,
      );
      const add = await ldapTool("ldapadd", ["-x", "-H", ldapUrl(server), "-f", `${dir}/add.ldif`]);
      assert.equal(add.code, 53, "unwillingToPerform");
      const del = await ldapTool("ldapdelete", [
        "-x",
        "-H",
        ldapUrl(server),
        `mail=ada@example.com,${BASE}`,
      ]);
      assert.equal(del.code, 53);
      const still = await ldapsearch(server, ["(mail=ada@example.com)", "1.1"]);
      assert.equal(dns(still.stdout).length, 1);
      const eve = await ldapsearch(server, ["(mail=eve@example.com)", "1.1"]);
      assert.equal(dns(eve.stdout).length, 0);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});

testOnEachLoop(
  "ldapts pipelines 200 searches on one connection, each answered by its message id",
  async (io) => {
    await withTestServer(ldapOptions(io), async ({ server }) => {
      const client = new Client({ url: ldapUrl(server) });
      try {
        await client.bind("", "");
        const results = await Promise.all(
          Array.from({ length: 200 }, (_, i) =>
            client.search(BASE, {
              scope: "sub",
              filter: `(mail=reader${i % MANY}@example.net)`,
              attributes: ["cn"],
            })),
        );
        results.forEach(({ searchEntries }, i) => {
          assert.equal(searchEntries.length, 1);
          assert.equal(searchEntries[0].cn, `Pat Reader ${i % MANY}`);
        });
        const paged = await client.search(BASE, {
          scope: "sub",
          filter: "(cn=Pat Reader 2*)",
          attributes: ["mail"],
          paged: { pageSize: 7 },
        });
        const expected = Array.from({ length: MANY }, (_, i) => i).filter((i) =>
          String(i).startsWith("2")
        );
        assert.equal(paged.searchEntries.length, expected.length);
      } finally {
        await client.unbind();
      }
    });
  },
);

testOnEachLoop(
  "the access rules and limits apply to LDAP as to the binary protocol",
  async (io) => {
    await withTestServer(
      ldapOptions(io, {
        clientLimits: { found: { count: 3, periodMs: 60_000 }, maxConnectionsPerClient: 0 },
      }),
      async ({ server }) => {
        const first = await ldapsearch(server, ["(cn=Pat Reader 1*)", "1.1"]);
        assert.equal(first.code, 11, "adminLimitExceeded after the entries still allowed");
        assert.equal(dns(first.stdout).length, 3);
        const then = await ldapsearch(server, ["(mail=ada@example.com)", "1.1"]);
        assert.equal(then.code, 11, "once over, every search is refused");
        assert.equal(dns(then.stdout).length, 0);
      },
    );
    await withTestServer(
      ldapOptions(io, { clientLimits: { rate: { count: 1, periodMs: 60_000 } } }),
      async ({ server }) => {
        const client = new Client({ url: ldapUrl(server) });
        try {
          await client.search(BASE, { filter: "(mail=ada@example.com)" });
          await assert.rejects(
            client.search(BASE, { filter: "(mail=ada@example.com)" }),
            (error: { code?: number }) => error.code === 51,
            "busy",
          );
        } finally {
          await client.unbind();
        }
      },
    );
  },
);

testOnEachLoop(
  "a refused client hears insufficientAccessRights in a Notice of Disconnection",
  async (io) => {
    await withTestServer(
      ldapOptions(io, {
        access: { allow: ["10.0.0.0/8"], protectedMode: false, proxyProtocol: false },
      }),
      async ({ server }) => {
        const conn = await Deno.connect({ hostname: LOOPBACK, port: server.ldapAddr!.port });
        try {
          const bytes = await readAll(conn);
          // LDAPMessage { messageID 0, ExtendedResponse { resultCode 50 ... } }.
          assert.equal(bytes[0], 0x30);
          const text = new TextDecoder().decode(bytes);
          assert.ok(bytes.includes(0x78), "an ExtendedResponse");
          assert.match(text, /--allow/);
          assert.match(text, /1\.3\.6\.1\.4\.1\.1466\.20036/);
          assert.equal(noticeCode(bytes), 50);
        } finally {
          conn.close();
        }
      },
    );
  },
);

testOnEachLoop(
  "hostile BER ends the connection with a Notice, and the server keeps serving",
  async (io) => {
    await withTestServer(ldapOptions(io), async ({ server }) => {
      const hostile = [
        Uint8Array.of(0x30, 0x84, 0x7f, 0xff, 0xff, 0xff), // a 2 GB message announced
        Uint8Array.of(0x30, 0x80, 0x02, 0x01, 0x01), // an indefinite length
        Uint8Array.of(0x30, 0x85, 0, 0, 0, 0, 1), // five length octets
        Uint8Array.of(0x31, 0x03, 0x02, 0x01, 0x01), // not a SEQUENCE
      ];
      for (const bytes of hostile) {
        const conn = await Deno.connect({ hostname: LOOPBACK, port: server.ldapAddr!.port });
        try {
          await conn.write(bytes);
          const reply = await readAll(conn);
          assert.match(new TextDecoder().decode(reply), /1\.3\.6\.1\.4\.1\.1466\.20036/);
          assert.equal(noticeCode(reply), 2, "protocolError");
        } finally {
          conn.close();
        }
      }
      // A search sent one byte at a time is answered whole.
      const search = searchRequest(7, "(mail=ada@example.com)");
      const conn = await Deno.connect({ hostname: LOOPBACK, port: server.ldapAddr!.port });
      try {
        for (const byte of search) await conn.write(Uint8Array.of(byte));
        await conn.closeWrite();
        const reply = new TextDecoder().decode(await readAll(conn));
        assert.match(reply, /mail=ada@example\.com/);
      } finally {
        conn.close();
      }
      const after = await ldapsearch(server, ["(mail=ada@example.com)", "1.1"]);
      assert.equal(dns(after.stdout).length, 1, "still serving");
      assert.equal(
        metricValue(
          server.metrics(),
          "addrbook_replies_total",
          '{front_end="ldap",status="PROTOCOL_ERROR"}',
        ),
        hostile.length,
      );
    });
  },
);

testOnEachLoop(
  "LDAPS serves the same search over TLS, with the CA given by LDAPTLS_CACERT",
  async (io) => {
    await using pki = await makeTestPki();
    await withTestServer(
      ldapOptions(io, { tls: { cert: pki.server.certificate, key: pki.server.key } }, {
        tlsPort: 0,
      }),
      async ({ server }) => {
        const run = await ldapsearchAt(ldapsUrl(server), ["(mail=ada@example.com)", "cn"], {
          LDAPTLS_CACERT: pki.ca.certificatePath,
        });
        assert.equal(run.code, 0, run.stderr);
        assert.match(run.stdout, /^cn: Ada Lovelace$/m);
        const untrusting = await ldapsearchAt(ldapsUrl(server), ["(mail=ada@example.com)"], {
          LDAPTLS_CACERT: pki.rogueCa.certificatePath,
        });
        assert.notEqual(untrusting.code, 0, "an unknown CA is refused");
      },
    );
  },
);

/** Reads until the server closes, within the deadline. */
async function readAll(conn: Deno.Conn): Promise<Uint8Array> {
  const chunks: number[] = [];
  const buffer = new Uint8Array(4096);
  await withDeadline(
    (async () => {
      for (;;) {
        const n = await conn.read(buffer).catch(() => null);
        if (n === null) return;
        chunks.push(...buffer.subarray(0, n));
      }
    })(),
    "the server to close",
  );
  return Uint8Array.from(chunks);
}

/** A BER TLV with a short length, as every piece of these small requests has. */
function tlv(tag: number, ...content: (number[] | Uint8Array)[]): number[] {
  const body = content.flatMap((part) => [...part]);
  assert.ok(body.length < 128);
  return [tag, body.length, ...body];
}

/** A SearchRequest for `(mail=VALUE)` under the suffix, encoded by hand (RFC 4511 §4.5.1). */
function searchRequest(messageId: number, filter: string): Uint8Array {
  const encoder = new TextEncoder();
  const [, attribute, value] = filter.match(/^\((\w+)=(.*)\)$/)!;
  return Uint8Array.from(tlv(
    0x30,
    tlv(0x02, [messageId]),
    tlv(
      0x63,
      tlv(0x04, encoder.encode(BASE)),
      tlv(0x0a, [2]),
      tlv(0x0a, [0]),
      tlv(0x02, [0]),
      tlv(0x02, [0]),
      tlv(0x01, [0]),
      tlv(0xa3, tlv(0x04, encoder.encode(attribute)), tlv(0x04, encoder.encode(value))),
      tlv(0x30),
    ),
  ));
}

// --- StartTLS (RFC 4511 §4.14, RFC 4513 §3) ---

const STARTTLS_OID = /^supportedExtension: 1\.3\.6\.1\.4\.1\.1466\.20037$/m;
const EPOLL = IO_LOOPS.includes("epoll");

/** The rootDSE's supportedExtension values, as ldapsearch prints them. */
async function rootDseExtensions(url: string, env: Record<string, string> = {}): Promise<string> {
  const run = await ldapTool("ldapsearch", [
    "-x",
    "-LLL",
    "-H",
    url,
    "-b",
    "",
    "-s",
    "base",
    "(objectClass=*)",
    "supportedExtension",
  ], env);
  assert.equal(run.code, 0, run.stderr);
  return run.stdout;
}

/** A StartTLS ExtendedRequest (RFC 4511 §4.14.1), encoded by hand. */
function startTlsRequest(messageId: number): Uint8Array {
  return Uint8Array.from(tlv(
    0x30,
    tlv(0x02, [messageId]),
    tlv(0x77, tlv(0x80, new TextEncoder().encode("1.3.6.1.4.1.1466.20037"))),
  ));
}

/** The resultCode of the first LDAPResult in `bytes` (the first ENUMERATED). */
function resultCode(bytes: Uint8Array): number {
  return bytes[bytes.indexOf(0x0a) + 2];
}

Deno.test({
  name: "ldapsearch -ZZ upgrades the plain LDAP port to TLS and finds an entry [--io epoll]",
  ignore: !EPOLL,
  fn: async () => {
    await using pki = await makeTestPki();
    await withTestServer(
      ldapOptions("epoll", { tls: { cert: pki.server.certificate, key: pki.server.key } }),
      async ({ server }) => {
        const trusting = { LDAPTLS_CACERT: pki.ca.certificatePath };
        assert.match(await rootDseExtensions(ldapUrl(server)), STARTTLS_OID);
        const run = await ldapsearchAt(
          ldapUrl(server),
          ["-ZZ", "(mail=ada@example.com)", "cn"],
          trusting,
        );
        assert.equal(run.code, 0, run.stderr);
        assert.match(run.stdout, /^cn: Ada Lovelace$/m);
        const metrics = server.metrics();
        assert.equal(metricValue(metrics, "addrbook_tls_handshakes_total", '{result="ok"}'), 1);
        assert.equal(
          metricValue(metrics, "addrbook_ldap_operations_total", '{operation="extended"}'),
          1,
        );
        // libldap checks the certificate once the handshake is done: the server counts it ok.
        const untrusting = await ldapsearchAt(ldapUrl(server), ["-ZZ", "(mail=ada@example.com)"], {
          LDAPTLS_CACERT: pki.rogueCa.certificatePath,
        });
        assert.notEqual(untrusting.code, 0, "an unknown CA is refused after StartTLS too");
        assert.doesNotMatch(untrusting.stdout, /Lovelace/);
      },
    );
  },
});

Deno.test({
  name: "StartTLS asks no client certificate, even with a client CA for the TLS ports [--io epoll]",
  ignore: !EPOLL,
  fn: async () => {
    await using pki = await makeTestPki();
    const tls = { cert: pki.server.certificate, key: pki.server.key, clientCa: pki.ca.certificate };
    await withTestServer(ldapOptions("epoll", { tls }, { tlsPort: 0 }), async ({ server }) => {
      const trusting = { LDAPTLS_CACERT: pki.ca.certificatePath };
      const upgraded = await ldapsearchAt(
        ldapUrl(server),
        ["-ZZ", "(mail=ada@example.com)", "cn"],
        trusting,
      );
      assert.equal(upgraded.code, 0, upgraded.stderr);
      assert.match(upgraded.stdout, /^cn: Ada Lovelace$/m);
      const ldaps = await ldapsearchAt(ldapsUrl(server), ["(mail=ada@example.com)"], trusting);
      assert.notEqual(ldaps.code, 0, "the LDAPS port still requires a client certificate");
    });
  },
});

Deno.test({
  name: "a certificate rotation reaches StartTLS: later upgrades present the new one [--io epoll]",
  ignore: !EPOLL,
  fn: async () => {
    await using pki = await makeTestPki();
    await withTestServer(
      ldapOptions("epoll", { tls: { cert: pki.server.certificate, key: pki.server.key } }),
      async ({ server }) => {
        const subject = async () => {
          // OpenSSL's own client, a third one: it speaks LDAP's StartTLS itself.
          const run = await ldapTool("openssl", [
            "s_client",
            "-starttls",
            "ldap",
            "-connect",
            `127.0.0.1:${server.ldapAddr!.port}`,
            "-CAfile",
            pki.ca.certificatePath,
            "-verify_return_error",
          ]);
          assert.equal(run.code, 0, run.stderr);
          return run.stdout.match(/^subject=.*$/m)?.[0];
        };
        assert.match((await subject())!, new RegExp(SERVER_NAME));
        await server.setTls({
          cert: pki.rotatedServer.certificate,
          key: pki.rotatedServer.key,
          clientCa: pki.ca.certificate,
        });
        assert.match((await subject())!, new RegExp(ROTATED_SERVER_NAME));
        const run = await ldapsearchAt(ldapUrl(server), ["-ZZ", "(mail=ada@example.com)", "cn"], {
          LDAPTLS_CACERT: pki.ca.certificatePath,
        });
        assert.equal(run.code, 0, `still no client certificate asked: ${run.stderr}`);
      },
    );
  },
});

Deno.test({
  name:
    "ldapts upgrades with startTLS, searches over TLS, and a second StartTLS is refused [--io epoll]",
  ignore: !EPOLL,
  fn: async () => {
    await using pki = await makeTestPki();
    await withTestServer(
      ldapOptions("epoll", { tls: { cert: pki.server.certificate, key: pki.server.key } }),
      async ({ server }) => {
        const ca = [pki.ca.certificate];
        const client = new Client({ url: ldapUrl(server) });
        try {
          await client.startTLS({ ca });
          await client.bind("", "");
          const { searchEntries } = await client.search(BASE, {
            scope: "sub",
            filter: "(|(mail=*turing*)(cn=*turing*))",
            attributes: ["cn"],
          });
          assert.deepEqual(searchEntries.map((entry) => entry.cn), ["Alan Turing"]);
          await assert.rejects(
            client.startTLS({ ca }),
            (error: { code?: number }) => error.code === 1, // operationsError
          );
          const again = await client.search(BASE, { filter: "(mail=ada@example.com)" });
          assert.equal(again.searchEntries.length, 1, "the connection goes on over TLS");
        } finally {
          await client.unbind();
        }
      },
    );
  },
});

testOnEachLoop(
  "StartTLS is unavailable and not listed without a certificate, on Deno.listen, and on LDAPS",
  async (io) => {
    await withTestServer(ldapOptions(io), async ({ server }) => {
      assert.doesNotMatch(await rootDseExtensions(ldapUrl(server)), STARTTLS_OID);
      const run = await ldapsearch(server, ["-ZZ", "(mail=ada@example.com)"]);
      assert.notEqual(run.code, 0);
      assert.match(run.stderr, /start_?tls/i);
      assert.match(run.stderr, /unavailable|\(52\)/i);
    });
    await using pki = await makeTestPki();
    await withTestServer(
      ldapOptions(io, { tls: { cert: pki.server.certificate, key: pki.server.key } }, {
        tlsPort: 0,
      }),
      async ({ server }) => {
        const ldaps = `ldaps://127.0.0.1:${server.ldapsAddr!.port}`;
        const trusting = { LDAPTLS_CACERT: pki.ca.certificatePath };
        assert.doesNotMatch(await rootDseExtensions(ldaps, trusting), STARTTLS_OID);
        const client = new Client({ url: ldaps, tlsOptions: { ca: [pki.ca.certificate] } });
        try {
          await assert.rejects(
            client.startTLS({ ca: [pki.ca.certificate] }),
            (error: { code?: number }) => error.code === 1, // operationsError: TLS already
          );
        } finally {
          await client.unbind();
        }
        if (io === "epoll") return; // the epoll loop offers it: the tests above
        assert.doesNotMatch(await rootDseExtensions(ldapUrl(server)), STARTTLS_OID);
        const run = await ldapsearch(server, ["-ZZ", "(mail=ada@example.com)"]);
        assert.notEqual(run.code, 0, "Deno.listen cannot upgrade a socket");
      },
    );
  },
);

Deno.test({
  name: "bytes sent behind a StartTLS request are a protocol error [--io epoll]",
  ignore: !EPOLL,
  fn: async () => {
    await using pki = await makeTestPki();
    await withTestServer(
      ldapOptions("epoll", { tls: { cert: pki.server.certificate, key: pki.server.key } }),
      async ({ server }) => {
        const conn = await Deno.connect({ hostname: LOOPBACK, port: server.ldapAddr!.port });
        try {
          const search = searchRequest(2, "(mail=ada@example.com)");
          await conn.write(Uint8Array.from([...startTlsRequest(1), ...search]));
          const reply = await readAll(conn);
          assert.match(new TextDecoder().decode(reply), /1\.3\.6\.1\.4\.1\.1466\.20036/);
          assert.equal(resultCode(reply), 2, "protocolError");
          assert.doesNotMatch(new TextDecoder().decode(reply), /Lovelace/, "nothing answered");
        } finally {
          conn.close();
        }
        assert.equal(
          metricValue(server.metrics(), "addrbook_tls_handshakes_total", '{result="ok"}'),
          0,
        );
      },
    );
  },
});

Deno.test({
  name: "a handshake that stalls after StartTLS is closed at the frame timeout [--io epoll]",
  ignore: !EPOLL,
  fn: async () => {
    await using pki = await makeTestPki();
    await withTestServer(
      ldapOptions("epoll", {
        tls: { cert: pki.server.certificate, key: pki.server.key },
        limits: { frameTimeoutMs: 300 },
      }),
      async ({ server }) => {
        const conn = await Deno.connect({ hostname: LOOPBACK, port: server.ldapAddr!.port });
        try {
          await conn.write(startTlsRequest(1));
          const started = Date.now();
          const reply = await readAll(conn); // the success response, then the close
          assert.equal(resultCode(reply), 0, "success");
          assert.match(new TextDecoder().decode(reply), /1\.3\.6\.1\.4\.1\.1466\.20037/);
          assert.ok(Date.now() - started >= 250, "held until the frame timeout");
        } finally {
          conn.close();
        }
        const metrics = server.metrics();
        assert.equal(metricValue(metrics, "addrbook_timeouts_total", '{kind="handshake"}'), 1);
      },
    );
  },
});

/** The result code of a Notice of Disconnection the server sent, or undefined when it sent none. */
function noticeCode(bytes: Uint8Array): number | undefined {
  if (!new TextDecoder().decode(bytes).includes("1.3.6.1.4.1.1466.20036")) return undefined;
  // messageID 0, then the ExtendedResponse's tag and (short) length, then resultCode.
  for (let i = 0; i + 7 < bytes.length; i++) {
    if (bytes[i] === 0x02 && bytes[i + 1] === 0x01 && bytes[i + 2] === 0 && bytes[i + 3] === 0x78) {
      if (bytes[i + 5] === 0x0a && bytes[i + 6] === 0x01) return bytes[i + 7];
    }
  }
  return undefined;
}

testOnEachLoop("a reload reaches the LDAP port: the new book's people are found", async (io) => {
  const builder = new AddressBookBuilder();
  builder.add("newcomer@example.com", "New Comer");
  const next = builder.build();
  await withTestServer(
    ldapOptions(io, { loadBook: () => Promise.resolve(next) }),
    async ({ server }) => {
      assert.equal(dns((await ldapsearch(server, ["(cn=*comer*)", "1.1"])).stdout).length, 0);
      await server.reload();
      const after = await ldapsearch(server, ["(cn=*comer*)", "cn"]);
      assert.deepEqual(dns(after.stdout), [`mail=newcomer@example.com,${BASE}`]);
    },
  );
});

testOnEachLoop(
  "a shutdown ends an idle LDAP connection with a Notice of unavailable",
  async (io) => {
    await withTestServer(ldapOptions(io), async ({ server }) => {
      const conn = await Deno.connect({ hostname: LOOPBACK, port: server.ldapAddr!.port });
      try {
        await conn.write(searchRequest(1, "(mail=ada@example.com)"));
        const shutdown = server.shutdown(5000);
        const bytes = await readAll(conn);
        await shutdown;
        assert.match(new TextDecoder().decode(bytes), /mail=ada@example\.com/, "answered first");
        assert.equal(noticeCode(bytes), 52);
      } finally {
        conn.close();
      }
    });
  },
);

testOnEachLoop("the LDAP port reads PROXY headers and caps connections per client", async (io) => {
  const access = { allow: ["192.0.2.0/24"], protectedMode: false, proxyProtocol: true };
  await withTestServer(ldapOptions(io, { access }), async ({ server }) => {
    const header = (source: string) =>
      encodeProxyHeader({
        version: 1,
        source: { address: source, port: 5000 },
        destination: { address: "198.51.100.1", port: 389 },
      });
    const allowed = await Deno.connect({ hostname: LOOPBACK, port: server.ldapAddr!.port });
    try {
      await allowed.write(
        Uint8Array.from([...header("192.0.2.7"), ...searchRequest(3, "(mail=ada@example.com)")]),
      );
      await allowed.closeWrite();
      const reply = await readAll(allowed);
      assert.match(new TextDecoder().decode(reply), /mail=ada@example\.com/);
    } finally {
      allowed.close();
    }
    const refused = await Deno.connect({ hostname: LOOPBACK, port: server.ldapAddr!.port });
    try {
      await refused.write(header("203.0.113.9"));
      assert.equal(noticeCode(await readAll(refused)), 50);
    } finally {
      refused.close();
    }
  });
  await withTestServer(
    ldapOptions(io, { clientLimits: { maxConnectionsPerClient: 1 } }),
    async ({ server }) => {
      const first = await Deno.connect({ hostname: LOOPBACK, port: server.ldapAddr!.port });
      const second = await Deno.connect({ hostname: LOOPBACK, port: server.ldapAddr!.port });
      try {
        assert.equal(noticeCode(await readAll(second)), 51, "busy: one connection too many");
      } finally {
        first.close();
        second.close();
      }
    },
  );
});

testOnEachLoop(
  "LDAPS with --tls-client-ca serves the holder of a certificate from that CA, and no one else",
  async (io) => {
    await using pki = await makeTestPki();
    const tls = { cert: pki.server.certificate, key: pki.server.key, clientCa: pki.ca.certificate };
    await withTestServer(
      ldapOptions(io, { tls }, { tlsPort: 0 }),
      async ({ server }) => {
        const search = ["(mail=ada@example.com)", "cn"];
        const certified = await ldapsearchAt(ldapsUrl(server), search, {
          LDAPTLS_CACERT: pki.ca.certificatePath,
          LDAPTLS_CERT: pki.client.certificatePath,
          LDAPTLS_KEY: pki.client.keyPath,
        });
        assert.equal(certified.code, 0, certified.stderr);
        assert.match(certified.stdout, /^cn: Ada Lovelace$/m);
        const anonymous = await ldapsearchAt(ldapsUrl(server), search, {
          LDAPTLS_CACERT: pki.ca.certificatePath,
        });
        assert.notEqual(anonymous.code, 0, "no certificate, no directory");
        const rogue = await ldapsearchAt(ldapsUrl(server), search, {
          LDAPTLS_CACERT: pki.ca.certificatePath,
          LDAPTLS_CERT: pki.rogueClient.certificatePath,
          LDAPTLS_KEY: pki.rogueClient.keyPath,
        });
        assert.notEqual(rogue.code, 0, "a certificate from another CA is refused");
        assert.ok(
          metricValue(
            server.metrics(),
            "addrbook_tls_handshakes_total",
            '{result="client_cert_refused"}',
          ) >= 2,
        );
      },
    );
  },
);
