/**
 * The LDAP front end's conversation without a socket: StartTLS as each
 * {@linkcode StartTlsOffer} answers it, the upgrade it asks of its
 * session, and the rootDSE's supportedExtension. Requests are encoded and
 * responses read by ldapts, an independent codec. The rest of the front end
 * is tested end to end in tests/ldap_test.ts.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import fc from "fast-check";
import * as ldapts from "ldapts";
import { makeBook } from "../testing/books.ts";
import { COUNTERS_PER_THREAD, LDAP_COUNTERS } from "../session/counters.ts";
import { type Conversation, MalformedInput, NO_REQUEST, ReplyBuffer } from "./front_end.ts";
import { LdapProtocolError, START_TLS_OID } from "./ldap_codec.ts";
import { ldapFrontEnd, type StartTlsOffer } from "./ldap.ts";

const BASE = "dc=example,dc=com";
const book = makeBook();

/** What ldapts reads of a response. */
interface Response {
  messageId: number;
  status: number;
  oid?: string;
  constructor: { name: string };
}

function startTls(messageId: number): Uint8Array {
  return new Uint8Array(new ldapts.ExtendedRequest({ messageId, oid: START_TLS_OID }).write());
}

function anonymousBind(messageId: number): Uint8Array {
  return new Uint8Array(
    new ldapts.BindRequest({ messageId, dn: "", password: "" }).write(),
  );
}

function rootDseSearch(messageId: number): Uint8Array {
  return new Uint8Array(
    new ldapts.SearchRequest({
      messageId,
      baseDN: "",
      scope: "base",
      filter: new ldapts.PresenceFilter({ attribute: "objectClass" }),
      attributes: ["supportedExtension"],
      sizeLimit: 0,
      timeLimit: 0,
    }).write(),
  );
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const bytes = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    bytes.set(part, at);
    at += part.length;
  }
  return bytes;
}

/** One connection of a front end offering StartTLS as `offer`. */
function conversation(offer: StartTlsOffer): Conversation {
  const frontEnd = ldapFrontEnd({ base: BASE, sizeLimit: 500, startTls: offer }, LDAP_COUNTERS);
  return frontEnd.connect(new Float64Array(COUNTERS_PER_THREAD));
}

/**
 * Hands `bytes` to the conversation and answers every complete request;
 * returns the responses and, for each request, whether it asked for the upgrade.
 */
function answer(talk: Conversation, bytes: Uint8Array): {
  responses: Response[];
  upgrades: boolean[];
} {
  const output = new ReplyBuffer();
  const upgrades: boolean[] = [];
  talk.receive(bytes, bytes.length);
  while (talk.answerNext(output, book, undefined) !== NO_REQUEST) upgrades.push(!!talk.upgrade);
  return { responses: parse(output.bytes.subarray(0, output.length)), upgrades };
}

function parse(bytes: Uint8Array): Response[] {
  const parser = new ldapts.MessageParser();
  const messages: Response[] = [];
  parser.on("message", (message) => messages.push(message as unknown as Response));
  parser.on("error", (error) => assert.fail(error));
  parser.read(Buffer.from(bytes), new Map());
  return messages;
}

Deno.test("an offered StartTLS succeeds, names the operation and asks for the upgrade once", () => {
  const talk = conversation("offered");
  const { responses, upgrades } = answer(talk, concat(anonymousBind(1), startTls(2)));
  assert.deepEqual(
    responses.map((r) => [r.constructor.name, r.messageId, r.status]),
    [["BindResponse", 1, 0], ["ExtendedResponse", 2, 0]],
  );
  assert.equal(responses[1].oid, START_TLS_OID, "RFC 4511 §4.14.2");
  assert.deepEqual(upgrades, [false, true]);
  // Over TLS now: the next request clears the flag; a second StartTLS is an operationsError.
  const after = answer(talk, concat(anonymousBind(3), startTls(4)));
  assert.deepEqual(after.responses.map((r) => r.status), [0, 1]);
  assert.deepEqual(after.upgrades, [false, false]);
});

Deno.test("bytes behind an offered StartTLS break the protocol, a whole message or one byte", () => {
  for (const behind of [anonymousBind(2), Uint8Array.of(0x30)]) {
    const talk = conversation("offered");
    assert.throws(
      () => answer(talk, concat(startTls(1), behind)),
      (error) =>
        error instanceof LdapProtocolError && error instanceof MalformedInput &&
        error.messageId === 1 && /StartTLS/.test(error.message),
    );
    assert.equal(talk.upgrade, false);
  }
});

Deno.test("StartTLS is unavailable where not offered, and operationsError on LDAPS; both go on", () => {
  for (const [offer, status] of [["unavailable", 52], ["established", 1]] as const) {
    const talk = conversation(offer);
    // Nothing is asked of the client's next bytes: it may go on in the same write.
    const { responses, upgrades } = answer(talk, concat(startTls(1), anonymousBind(2)));
    assert.deepEqual(responses.map((r) => [r.messageId, r.status]), [[1, status], [2, 0]], offer);
    assert.equal(responses[0].oid, START_TLS_OID);
    assert.deepEqual(upgrades, [false, false]);
  }
});

Deno.test("the rootDSE lists StartTLS only where it is offered", () => {
  for (const offer of ["offered", "unavailable", "established"] as const) {
    const { responses } = answer(conversation(offer), rootDseSearch(1));
    const entry = responses[0] as unknown as ldapts.SearchEntry;
    const extensions = entry.attributes.find((a) => a.type === "supportedExtension")?.values;
    assert.deepEqual(extensions, offer === "offered" ? [START_TLS_OID] : undefined, offer);
  }
});

Deno.test("StartTLS is accepted exactly when it is the last byte received, however split", () => {
  fc.assert(
    fc.property(
      fc.array(fc.constantFrom("bind", "rootDse"), { maxLength: 4 }),
      fc.integer({ min: 0, max: 4 }),
      fc.integer({ min: 1, max: 40 }),
      (before, after, piece) => {
        const messages = [
          ...before.map((kind, i) => kind === "bind" ? anonymousBind(i + 1) : rootDseSearch(i + 1)),
          startTls(100),
          ...Array.from({ length: after }, (_, i) => anonymousBind(200 + i)),
        ];
        const bytes = concat(...messages);
        const talk = conversation("offered");
        let upgraded = 0;
        let refused = false;
        try {
          // Bytes arrive in pieces, each answered as far as it goes, as a session does.
          for (let at = 0; at < bytes.length && upgraded === 0; at += piece) {
            upgraded += answer(talk, bytes.subarray(at, Math.min(at + piece, bytes.length)))
              .upgrades.filter(Boolean).length;
          }
        } catch (error) {
          if (!(error instanceof LdapProtocolError)) throw error;
          refused = true;
        }
        const startEnds = concat(...messages.slice(0, before.length + 1)).length;
        // Accepted when nothing behind it had arrived by the time it was answered.
        const lastOfPiece = startEnds === bytes.length || startEnds % piece === 0;
        assert.equal(upgraded, lastOfPiece ? 1 : 0);
        assert.equal(refused, !lastOfPiece);
      },
    ),
    { seed: 17, numRuns: 300 },
  );
});

Deno.test("a paged search's cookie leads on in the same book, and is refused after a reload", () => {
  const pagedSearch = (messageId: number, cookie: Uint8Array) =>
    new Uint8Array(
      new ldapts.SearchRequest(
        {
          messageId,
          baseDN: BASE,
          scope: "sub",
          filter: new ldapts.PresenceFilter({ attribute: "mail" }),
          attributes: ["1.1"],
          sizeLimit: 0,
          timeLimit: 0,
          controls: [
            new ldapts.PagedResultsControl({ value: { size: 2, cookie: Buffer.from(cookie) } }),
          ],
        } as ConstructorParameters<typeof ldapts.SearchRequest>[0],
      ).write(),
    );
  const talk = conversation("unavailable");
  const output = new ReplyBuffer();
  const first = pagedSearch(1, new Uint8Array());
  talk.receive(first, first.length);
  talk.answerNext(output, book, undefined);
  const done = parse(output.bytes.subarray(0, output.length)).at(-1) as unknown as {
    controls: { value: { cookie: Uint8Array } }[];
  };
  const cookie = new Uint8Array(done.controls[0].value.cookie);
  assert.ok(cookie.length > 0, "more pages to come");
  const reloaded = makeBook();
  const next = pagedSearch(2, cookie);
  output.length = 0;
  talk.receive(next, next.length);
  talk.answerNext(output, reloaded, undefined);
  const refused = parse(output.bytes.subarray(0, output.length));
  assert.equal(refused.length, 1, "no entries");
  assert.equal(refused[0].status, 53, "unwillingToPerform");
});

Deno.test("a search past the client's timeLimit ends with timeLimitExceeded and the entries found so far", () => {
  const people = Array.from(
    { length: 3000 },
    (_, i) => [`p${i}@example.com`, `Person ${i}`] as const,
  );
  const large = makeBook(people);
  // Every negated filter is a scan; this one matches everyone.
  const everyone = new ldapts.NotFilter({
    filter: new ldapts.EqualityFilter({ attribute: "sn", value: "nobody" }),
  });
  const search = (timeLimit: number) =>
    new Uint8Array(
      new ldapts.SearchRequest({
        messageId: 7,
        baseDN: BASE,
        scope: "sub",
        filter: everyone,
        attributes: ["1.1"],
        sizeLimit: 2500,
        timeLimit,
      }).write(),
    );
  let now = 0;
  const run = (timeLimit: number, tick: number) => {
    const frontEnd = ldapFrontEnd(
      { base: BASE, sizeLimit: 5000, clock: () => (now += tick) },
      LDAP_COUNTERS,
    );
    const talk = frontEnd.connect(new Float64Array(COUNTERS_PER_THREAD));
    const output = new ReplyBuffer();
    const bytes = search(timeLimit);
    talk.receive(bytes, bytes.length);
    talk.answerNext(output, large, undefined);
    const responses = parse(output.bytes.subarray(0, output.length));
    return {
      entries: responses.length - 1,
      status: responses.at(-1)!.status,
    };
  };
  // The clock moves a second at every look: the limit of 1 s is over at the first check.
  const timedOut = run(1, 1000);
  assert.equal(timedOut.status, 3, "timeLimitExceeded");
  assert.ok(timedOut.entries > 0 && timedOut.entries < 2500, `${timedOut.entries} entries`);
  // A limit the clock does not reach, and no limit at all, run the search to its size limit.
  assert.deepEqual(run(3600, 1), { entries: 2500, status: 4 });
  assert.deepEqual(run(0, 1000), { entries: 2500, status: 4 });
});
