import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import fc from "fast-check";
import * as asn1js from "asn1js";
import * as ldapts from "ldapts";
import { MAX_HEADER_BYTES } from "./ber.ts";
import { MalformedInput, ReplyBuffer } from "./front_end.ts";
import type { LdapFilter } from "./ldap_filter.ts";
import {
  decodePagedResults,
  encodePagedResults,
  isUndecodable,
  LdapDecoder,
  LdapProtocolError,
  type LdapRequest,
  LdapTag,
  MAX_FILTER_DEPTH,
  MAX_FILTER_NODES,
  MAX_MESSAGE_BYTES,
  MAX_REQUESTED_ATTRIBUTES,
  NOTICE_OF_DISCONNECTION_OID,
  PAGED_RESULTS_OID,
  pagedResultsControl,
  responseTagFor,
  ResultCode,
  START_TLS_OID,
  WRITE_RESPONSE_TAGS,
  writeBindResponse,
  writeExtendedResponse,
  writeNoticeOfDisconnection,
  writeResult,
  writeSearchResultDone,
  writeSearchResultEntry,
} from "./ldap_codec.ts";

const encoder = new TextEncoder();
const SEED = 17;

// ---------------------------------------------------------------- helpers

/** The bytes ldapts writes for a message: an independent encoder. */
function bytesOf(message: { write(): Buffer }): Uint8Array {
  return new Uint8Array(message.write());
}

/** Decodes every message in `bytes`, pushed at once; checks nothing is left over. */
function decodeAll(bytes: Uint8Array): LdapRequest[] {
  const decoder = new LdapDecoder();
  decoder.push(bytes, bytes.length);
  const requests: LdapRequest[] = [];
  for (let request = decoder.take(); request !== null; request = decoder.take()) {
    requests.push(request);
  }
  assert.equal(decoder.buffered, 0, "every byte was decoded");
  assert.equal(decoder.midMessage, false);
  return requests;
}

/** Decodes `bytes` pushed in pieces of the given sizes (the last piece takes the rest). */
function decodeInPieces(bytes: Uint8Array, sizes: readonly number[]): LdapRequest[] {
  const decoder = new LdapDecoder();
  const requests: LdapRequest[] = [];
  // A reused receive buffer, overwritten after each push, as a connection's is.
  const buffer = new Uint8Array(bytes.length + 1);
  let at = 0;
  for (let i = 0; at < bytes.length; i++) {
    const size = i < sizes.length ? Math.min(sizes[i], bytes.length - at) : bytes.length - at;
    buffer.set(bytes.subarray(at, at + size));
    decoder.push(buffer, size);
    at += size;
    for (let request = decoder.take(); request !== null; request = decoder.take()) {
      requests.push(request);
    }
    buffer.fill(0xee); // the bytes are gone: the requests must not depend on them
  }
  assert.equal(decoder.buffered, 0);
  return requests;
}

function decodeOne(bytes: Uint8Array): LdapRequest {
  const requests = decodeAll(bytes);
  assert.equal(requests.length, 1);
  return requests[0];
}

/** Concatenates byte arrays. */
function concat(...parts: Uint8Array[]): Uint8Array {
  const joined = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    joined.set(part, at);
    at += part.length;
  }
  return joined;
}

/** A BER element with `tag` around `content`, with a minimal length: for hand-made messages. */
function tlv(tag: number, ...content: (Uint8Array | number[])[]): Uint8Array {
  const body = concat(...content.map((part) => Uint8Array.from(part)));
  return concat(Uint8Array.of(tag), lengthBytes(body.length), body);
}

function lengthBytes(length: number): Uint8Array {
  if (length < 128) return Uint8Array.of(length);
  const octets: number[] = [];
  for (let rest = length; rest > 0; rest = Math.floor(rest / 256)) octets.unshift(rest % 256);
  return Uint8Array.of(0x80 | octets.length, ...octets);
}

const str = (tag: number, text: string) => tlv(tag, encoder.encode(text));
const int = (tag: number, value: number) => tlv(tag, value < 128 ? [value] : [0, value]);

/** An LDAPMessage around a protocol op. */
function message(messageId: number, op: Uint8Array, ...rest: Uint8Array[]): Uint8Array {
  return tlv(0x30, int(0x02, messageId), op, ...rest);
}

/** A SearchRequest around an encoded filter, everything else fixed. */
function searchWith(filter: Uint8Array, messageId = 2): Uint8Array {
  return message(
    messageId,
    tlv(
      LdapTag.searchRequest,
      str(0x04, "dc=example,dc=com"),
      tlv(0x0a, [2]),
      tlv(0x0a, [0]),
      int(0x02, 100),
      int(0x02, 0),
      tlv(0x01, [0]),
      filter,
      tlv(0x30),
    ),
  );
}

function filterOf(request: LdapRequest): LdapFilter {
  assert.equal(request.op.kind, "search");
  return (request.op as { filter: LdapFilter }).filter;
}

function ldaptsSearch(filter: string | ldapts.Filter, messageId = 2): Uint8Array {
  return bytesOf(
    new ldapts.SearchRequest({
      messageId,
      baseDN: "dc=example,dc=com",
      scope: "sub",
      filter: typeof filter === "string" ? ldapts.FilterParser.parseString(filter) : filter,
      attributes: ["cn", "mail"],
      sizeLimit: 100,
      timeLimit: 0,
    }),
  );
}

function throwsProtocolError(
  run: () => unknown,
  pattern: RegExp,
  messageId?: number,
  requestTag?: number,
): void {
  assert.throws(run, (error: unknown) => {
    assert.ok(error instanceof LdapProtocolError, `an LdapProtocolError, not ${error}`);
    assert.match(error.message, pattern);
    assert.equal(error.messageId, messageId, "the messageID");
    assert.equal(error.requestTag, requestTag, "the request's tag");
    return true;
  });
}

// ---------------------------------------------------------------- requests

Deno.test("decodes ldapts's BindRequest: simple, anonymous and SASL", () => {
  const simple = decodeOne(
    bytesOf(
      new ldapts.BindRequest({
        messageId: 1,
        dn: "cn=admin,dc=example,dc=com",
        password: "s3cret",
      }),
    ),
  );
  assert.deepEqual(simple, {
    messageId: 1,
    op: {
      kind: "bind",
      version: 3,
      name: "cn=admin,dc=example,dc=com",
      authentication: { kind: "simple", password: encoder.encode("s3cret") },
    },
    controls: [],
  });
  const anonymous = decodeOne(bytesOf(new ldapts.BindRequest({ messageId: 300 })));
  assert.equal(anonymous.messageId, 300);
  assert.deepEqual(anonymous.op, {
    kind: "bind",
    version: 3,
    name: "",
    authentication: { kind: "simple", password: new Uint8Array(0) },
  });
  const sasl = decodeOne(
    bytesOf(new ldapts.BindRequest({ messageId: 2, mechanism: "EXTERNAL", password: "" })),
  );
  assert.deepEqual(sasl.op, {
    kind: "bind",
    version: 3,
    name: "",
    authentication: { kind: "sasl", mechanism: "EXTERNAL" },
  });
});

Deno.test("decodes ldapts's SearchRequest with every field", () => {
  const request = decodeOne(
    bytesOf(
      new ldapts.SearchRequest({
        messageId: 7,
        baseDN: "ou=People,dc=example,dc=com",
        scope: "one",
        derefAliases: "always",
        sizeLimit: 2 ** 31 - 1,
        timeLimit: 30,
        returnAttributeValues: false,
        filter: ldapts.FilterParser.parseString("(mail=ada@example.com)"),
        attributes: ["cn", "mail", "1.1", "*"],
      }),
    ),
  );
  assert.deepEqual(request, {
    messageId: 7,
    op: {
      kind: "search",
      baseObject: "ou=People,dc=example,dc=com",
      scope: 1,
      derefAliases: 3,
      sizeLimit: 2 ** 31 - 1,
      timeLimit: 30,
      typesOnly: true,
      filter: { kind: "equality", attribute: "mail", value: "ada@example.com" },
      attributes: ["cn", "mail", "1.1", "*"],
    },
    controls: [],
  });
});

Deno.test("decodes Unbind, Abandon and Extended (StartTLS) from ldapts", () => {
  assert.deepEqual(decodeOne(bytesOf(new ldapts.UnbindRequest({ messageId: 9 }))), {
    messageId: 9,
    op: { kind: "unbind" },
    controls: [],
  });
  for (const abandonId of [1, 127, 128, 255, 256, 65536, 2 ** 31 - 1]) {
    assert.deepEqual(
      decodeOne(bytesOf(new ldapts.AbandonRequest({ messageId: 4, abandonId }))).op,
      { kind: "abandon", messageId: abandonId },
    );
  }
  assert.deepEqual(
    decodeOne(bytesOf(new ldapts.ExtendedRequest({ messageId: 1, oid: START_TLS_OID }))),
    {
      messageId: 1,
      op: { kind: "extended", requestName: START_TLS_OID },
      controls: [],
    },
  );
  const withValue = decodeOne(
    bytesOf(
      new ldapts.ExtendedRequest({
        messageId: 3,
        oid: "1.3.6.1.4.1.4203.1.11.1",
        value: Buffer.of(1, 2),
      }),
    ),
  );
  assert.deepEqual(withValue.op, {
    kind: "extended",
    requestName: "1.3.6.1.4.1.4203.1.11.1",
    requestValue: Uint8Array.of(1, 2),
  });
});

Deno.test("recognises add, modify, delete, modDN and compare by tag, skipping their bodies", () => {
  const attribute = new ldapts.Attribute({ type: "cn", values: ["Ada"] });
  const writes: { write(): Buffer }[] = [
    new ldapts.AddRequest({ messageId: 11, dn: "mail=a@b,dc=x", attributes: [attribute] }),
    new ldapts.ModifyRequest({
      messageId: 12,
      dn: "mail=a@b,dc=x",
      changes: [new ldapts.Change({ operation: "replace", modification: attribute })],
    }),
    new ldapts.DeleteRequest({ messageId: 13, dn: "mail=a@b,dc=x" }),
    new ldapts.ModifyDNRequest({ messageId: 14, dn: "mail=a@b,dc=x", newRdn: "mail=c@d" }),
    new ldapts.CompareRequest({
      messageId: 15,
      dn: "mail=a@b,dc=x",
      attribute: "cn",
      value: "Ada",
    }),
  ];
  // Pipelined, with a search after them to show each body was skipped exactly.
  const stream = concat(...writes.map(bytesOf), ldaptsSearch("(cn=x)", 16));
  const requests = decodeAll(stream);
  assert.deepEqual(
    requests.map((r) => [r.messageId, r.op.kind]),
    [[11, "add"], [12, "modify"], [13, "delete"], [14, "modDN"], [15, "compare"], [16, "search"]],
  );
  const requestTags = {
    add: LdapTag.addRequest,
    modify: LdapTag.modifyRequest,
    delete: LdapTag.delRequest,
    modDN: LdapTag.modDNRequest,
    compare: LdapTag.compareRequest,
  };
  for (const [kind, tag] of Object.entries(requestTags)) {
    assert.equal(responseTagFor(tag), WRITE_RESPONSE_TAGS[kind as keyof typeof requestTags]);
  }
});

Deno.test("a write operation is skipped exactly: its controls still decode", () => {
  const request = decodeOne(
    bytesOf(
      new ldapts.DeleteRequest({
        messageId: 30,
        dn: "mail=a@b,dc=x",
        controls: [new ldapts.Control("1.2.840.113556.1.4.805", { critical: true })],
      }),
    ),
  );
  assert.deepEqual(request, {
    messageId: 30,
    op: { kind: "delete" },
    controls: [{ type: "1.2.840.113556.1.4.805", critical: true }],
  });
});

Deno.test("decodes controls: paged results from ldapts, criticality, values", () => {
  const request = decodeOne(
    bytesOf(
      new ldapts.SearchRequest({
        messageId: 5,
        baseDN: "dc=example,dc=com",
        filter: ldapts.FilterParser.parseString("(objectClass=*)"),
        controls: [
          new ldapts.PagedResultsControl({
            critical: true,
            value: { size: 50, cookie: Buffer.of(9, 8, 7) },
          }),
          new ldapts.Control("1.2.3.4"),
        ],
      }),
    ),
  );
  assert.equal(request.controls.length, 2);
  const [paged, other] = request.controls;
  assert.equal(paged.type, PAGED_RESULTS_OID);
  assert.equal(paged.critical, true);
  assert.deepEqual(decodePagedResults(paged.value!), { size: 50, cookie: Uint8Array.of(9, 8, 7) });
  assert.deepEqual(other, { type: "1.2.3.4", critical: false });
  // A first page: an empty cookie.
  const first = decodeOne(
    bytesOf(
      new ldapts.SearchRequest({
        messageId: 6,
        filter: ldapts.FilterParser.parseString("(cn=*)"),
        controls: [new ldapts.PagedResultsControl({ value: { size: 10 } })],
      }),
    ),
  );
  assert.deepEqual(decodePagedResults(first.controls[0].value!), {
    size: 10,
    cookie: new Uint8Array(0),
  });
});

Deno.test("paged results: the value round-trips and malformed ones are protocol errors", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      fc.uint8Array({ maxLength: 300 }),
      (size, cookie) => {
        assert.deepEqual(decodePagedResults(encodePagedResults(size, cookie)), { size, cookie });
      },
    ),
    { seed: SEED, numRuns: 300 },
  );
  const control = pagedResultsControl(0, Uint8Array.of(1));
  assert.deepEqual(control, {
    type: PAGED_RESULTS_OID,
    critical: false,
    value: Uint8Array.of(0x30, 0x06, 0x02, 0x01, 0x00, 0x04, 0x01, 0x01),
  });
  for (
    const bad of [
      new Uint8Array(0),
      Uint8Array.of(0x30, 0x03, 0x02, 0x01, 0x05), // no cookie
      Uint8Array.of(0x30, 0x05, 0x02, 0x01, 0xff, 0x04, 0x00), // negative size
      Uint8Array.of(0x30, 0x05, 0x02, 0x01, 0x05, 0x04, 0x00, 0x00), // a byte after it
    ]
  ) {
    assert.throws(() => decodePagedResults(bad), LdapProtocolError);
  }
});

// ---------------------------------------------------------------- filters

const FILTERS: [string, string, LdapFilter][] = [
  [
    "Thunderbird",
    "(|(cn=*a*b*)(mail=*a*)(givenName=*a*)(sn=*a*))",
    {
      kind: "or",
      filters: [
        { kind: "substrings", attribute: "cn", any: ["a", "b"] },
        { kind: "substrings", attribute: "mail", any: ["a"] },
        { kind: "substrings", attribute: "givenName", any: ["a"] },
        { kind: "substrings", attribute: "sn", any: ["a"] },
      ],
    },
  ],
  [
    "Thunderbird, older",
    "(|(cn=ada*love*)(mail=ada*love*)(sn=ada*love*))",
    {
      kind: "or",
      filters: ["cn", "mail", "sn"].map((attribute) => ({
        kind: "substrings" as const,
        attribute,
        initial: "ada",
        any: ["love"],
      })),
    },
  ],
  [
    "Roundcube",
    "(&(objectClass=inetOrgPerson)(|(mail=*q*)(cn=*q*)))",
    {
      kind: "and",
      filters: [
        { kind: "equality", attribute: "objectClass", value: "inetOrgPerson" },
        {
          kind: "or",
          filters: [
            { kind: "substrings", attribute: "mail", any: ["q"] },
            { kind: "substrings", attribute: "cn", any: ["q"] },
          ],
        },
      ],
    },
  ],
  [
    "mutt",
    "(|(givenname=Zoë)(sn=Zoë)(cn=Zoë))",
    {
      kind: "or",
      filters: ["givenname", "sn", "cn"].map((attribute) => ({
        kind: "equality" as const,
        attribute,
        value: "Zoë",
      })),
    },
  ],
  [
    "Apple",
    "(|(givenname=Ada)(sn=Ada)(cn=Ada)(mail=Ada))",
    {
      kind: "or",
      filters: ["givenname", "sn", "cn", "mail"].map((attribute) => ({
        kind: "equality" as const,
        attribute,
        value: "Ada",
      })),
    },
  ],
  [
    "every other kind",
    "(&(!(cn>=m))(sn<=n)(cn~=ada)(mail=*)(cn=ada*)(cn=*lace)(cn:caseExactMatch:=Ada)(:dn:2.5.13.5:=x))",
    {
      kind: "and",
      filters: [
        { kind: "not", filter: { kind: "greaterOrEqual", attribute: "cn", value: "m" } },
        { kind: "lessOrEqual", attribute: "sn", value: "n" },
        { kind: "approx", attribute: "cn", value: "ada" },
        { kind: "present", attribute: "mail" },
        { kind: "substrings", attribute: "cn", initial: "ada", any: [] },
        { kind: "substrings", attribute: "cn", any: [], final: "lace" },
        {
          kind: "extensible",
          attribute: "cn",
          matchingRule: "caseExactMatch",
          value: "Ada",
          dnAttributes: false,
        },
        { kind: "extensible", matchingRule: "2.5.13.5", value: "x", dnAttributes: true },
      ],
    },
  ],
];

for (const [client, text, expected] of FILTERS) {
  Deno.test(`decodes ${client}'s filter as ldapts encodes it`, () => {
    assert.deepEqual(filterOf(decodeOne(ldaptsSearch(text))), expected);
  });
}

/** Evolution's "any field" search: an OR of substring filters on 57 attributes. */
function evolutionFilter(query: string): string {
  const attributes = Array.from({ length: 57 }, (_, i) => `attribute${i}`);
  return `(|${attributes.map((a) => `(${a}=*${query}*)`).join("")})`;
}

Deno.test("decodes Evolution's wide OR of 57 substring filters", () => {
  const filter = filterOf(decodeOne(ldaptsSearch(evolutionFilter("ada"))));
  assert.equal(filter.kind, "or");
  assert.equal((filter as { filters: LdapFilter[] }).filters.length, 57);
  assert.deepEqual((filter as { filters: LdapFilter[] }).filters[56], {
    kind: "substrings",
    attribute: "attribute56",
    any: ["ada"],
  });
});

/** Builds the ldapts filter for one of ours: the independent encoder of the round trips. */
function toLdapts(filter: LdapFilter): ldapts.Filter {
  switch (filter.kind) {
    case "and":
      return new ldapts.AndFilter({ filters: filter.filters.map(toLdapts) });
    case "or":
      return new ldapts.OrFilter({ filters: filter.filters.map(toLdapts) });
    case "not":
      return new ldapts.NotFilter({ filter: toLdapts(filter.filter) });
    case "equality":
      return new ldapts.EqualityFilter(filter);
    case "greaterOrEqual":
      return new ldapts.GreaterThanEqualsFilter(filter);
    case "lessOrEqual":
      return new ldapts.LessThanEqualsFilter(filter);
    case "approx":
      return new ldapts.ApproximateFilter(filter);
    case "present":
      return new ldapts.PresenceFilter(filter);
    case "substrings":
      return new ldapts.SubstringFilter(filter);
    case "extensible":
      return new ldapts.ExtensibleFilter({
        rule: filter.matchingRule,
        matchType: filter.attribute,
        value: filter.value,
        dnAttributes: filter.dnAttributes,
      });
  }
}

const attributeName = fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,8}$/);
const text = fc.string({ unit: "grapheme", maxLength: 8 });
const nonEmptyText = fc.string({ unit: "grapheme", minLength: 1, maxLength: 8 });

/** Any filter ldapts can encode (it drops empty initial and final pieces, so these have none). */
const arbitraryFilter: fc.Arbitrary<LdapFilter> = fc.letrec<{ filter: LdapFilter }>((tie) => ({
  filter: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.record({
      kind: fc.constantFrom("equality", "greaterOrEqual", "lessOrEqual", "approx"),
      attribute: attributeName,
      value: text,
    }) as fc.Arbitrary<LdapFilter>,
    fc.record({ kind: fc.constant("present"), attribute: attributeName }) as fc.Arbitrary<
      LdapFilter
    >,
    fc.tuple(
      attributeName,
      fc.option(nonEmptyText),
      fc.array(text, { maxLength: 3 }),
      fc.option(nonEmptyText),
    )
      .filter(([, initial, any, final]) => initial !== null || any.length > 0 || final !== null)
      .map(([attribute, initial, any, final]) => {
        const filter: LdapFilter = { kind: "substrings", attribute, any };
        if (initial !== null) filter.initial = initial;
        if (final !== null) filter.final = final;
        return filter;
      }),
    fc.tuple(fc.option(attributeName), fc.option(attributeName), text, fc.boolean()).map(
      ([attribute, matchingRule, value, dnAttributes]) => {
        const filter: LdapFilter = { kind: "extensible", value, dnAttributes };
        if (attribute !== null) filter.attribute = attribute;
        if (matchingRule !== null) filter.matchingRule = matchingRule;
        return filter;
      },
    ),
    fc.record({
      kind: fc.constantFrom("and", "or"),
      filters: fc.array(tie("filter"), { maxLength: 4 }),
    }) as fc.Arbitrary<LdapFilter>,
    fc.record({ kind: fc.constant("not"), filter: tie("filter") }) as fc.Arbitrary<LdapFilter>,
  ),
})).filter;

Deno.test("property: any filter ldapts encodes decodes to the same tree", () => {
  fc.assert(
    fc.property(arbitraryFilter, (filter) => {
      assert.deepEqual(filterOf(decodeOne(ldaptsSearch(toLdapts(filter)))), filter);
    }),
    { seed: SEED, numRuns: 1000 },
  );
});

Deno.test("a filter value that is not UTF-8 decodes, marked so that it can match nothing", () => {
  // (cn=a\ff): ldapts writes Buffers as they are.
  const request = decodeOne(
    ldaptsSearch(new ldapts.EqualityFilter({ attribute: "cn", value: Buffer.of(0x61, 0xff) })),
  );
  const filter = filterOf(request) as { value: string };
  assert.equal(filter.value, "a\udcff");
  assert.ok(isUndecodable(filter.value));
  assert.ok(!isUndecodable("Zoë"));
  // No well-formed text equals it or holds it.
  assert.ok(!"a\ufffd".includes(filter.value) && !"ab".includes(filter.value));
});

Deno.test("an unknown filter choice is Undefined (an extensible match with neither rule nor type), not an error", () => {
  const unknown = tlv(0xaa, str(0x04, "x")); // [10], a later extension
  const filter = filterOf(
    decodeOne(searchWith(tlv(0xa1, unknown, tlv(0x87, encoder.encode("cn"))))),
  );
  assert.deepEqual(filter, {
    kind: "or",
    filters: [{ kind: "extensible", value: "", dnAttributes: false }, {
      kind: "present",
      attribute: "cn",
    }],
  });
});

Deno.test("empty and/or decode (RFC 4526 absolute true and false)", () => {
  assert.deepEqual(filterOf(decodeOne(searchWith(tlv(0xa0)))), { kind: "and", filters: [] });
  assert.deepEqual(filterOf(decodeOne(searchWith(tlv(0xa1)))), { kind: "or", filters: [] });
});

/** A filter of `depth` nested NOTs around (cn=*). */
function nestedNots(depth: number): Uint8Array {
  let filter = tlv(0x87, encoder.encode("cn"));
  for (let i = 0; i < depth; i++) filter = tlv(0xa2, filter);
  return filter;
}

Deno.test(`filters nest up to ${MAX_FILTER_DEPTH} deep and no deeper`, () => {
  let filter = filterOf(decodeOne(searchWith(nestedNots(MAX_FILTER_DEPTH))));
  for (let i = 0; i < MAX_FILTER_DEPTH; i++) {
    assert.equal(filter.kind, "not");
    filter = (filter as { filter: LdapFilter }).filter;
  }
  assert.deepEqual(filter, { kind: "present", attribute: "cn" });
  throwsProtocolError(
    () => decodeAll(searchWith(nestedNots(MAX_FILTER_DEPTH + 1), 8)),
    /nested more than 32 deep/,
    8,
    LdapTag.searchRequest,
  );
});

Deno.test("a filter nested 50,000 deep is refused without recursing (CVE-2020-12243)", () => {
  // 50,000 NOTs in about 250 KB: within the message cap, refused at depth 33.
  const depth = 50_000;
  const leaf = tlv(0x87, encoder.encode("cn"));
  const filter = new Uint8Array(depth * 5 + leaf.length);
  for (let i = 0; i < depth; i++) {
    const length = filter.length - i * 5 - 5; // each NOT holds everything after its header
    filter.set([0xa2, 0x83, length >> 16, (length >> 8) & 0xff, length & 0xff], i * 5);
  }
  filter.set(leaf, depth * 5);
  throwsProtocolError(
    () => decodeAll(searchWith(filter, 3)),
    /nested more than/,
    3,
    LdapTag.searchRequest,
  );
});

Deno.test(`filters hold up to ${MAX_FILTER_NODES} nodes, substring pieces included`, () => {
  const present = tlv(0x87, encoder.encode("cn"));
  const wide = (count: number) => tlv(0xa1, ...Array.from({ length: count }, () => present));
  const filter = filterOf(decodeOne(searchWith(wide(MAX_FILTER_NODES - 1))));
  assert.equal((filter as { filters: LdapFilter[] }).filters.length, MAX_FILTER_NODES - 1);
  throwsProtocolError(
    () => decodeAll(searchWith(wide(MAX_FILTER_NODES), 4)),
    /more than 1024 nodes/,
    4,
    LdapTag.searchRequest,
  );
  // One substrings filter with 1,024 pieces is 1,025 nodes.
  const pieces = Array.from({ length: MAX_FILTER_NODES }, () => str(0x81, "a"));
  throwsProtocolError(
    () => decodeAll(searchWith(tlv(0xa4, str(0x04, "cn"), tlv(0x30, ...pieces)), 5)),
    /more than 1024 nodes/,
    5,
    LdapTag.searchRequest,
  );
});

Deno.test("substrings: initial first, final last, at least one piece", () => {
  const substrings = (...pieces: Uint8Array[]) =>
    searchWith(tlv(0xa4, str(0x04, "cn"), tlv(0x30, ...pieces)));
  assert.deepEqual(
    filterOf(decodeOne(substrings(str(0x80, ""), str(0x81, "b"), str(0x82, "")))),
    { kind: "substrings", attribute: "cn", initial: "", any: ["b"], final: "" },
  );
  for (
    const bad of [
      substrings(),
      substrings(str(0x81, "a"), str(0x80, "b")),
      substrings(str(0x82, "a"), str(0x81, "b")),
      substrings(str(0x82, "a"), str(0x82, "b")),
      substrings(str(0x83, "a")),
    ]
  ) {
    throwsProtocolError(() => decodeAll(bad), /substrings filter/, 2, LdapTag.searchRequest);
  }
});

// ---------------------------------------------------------------- framing

const PIPELINE: Uint8Array = concat(
  bytesOf(new ldapts.BindRequest({ messageId: 1 })),
  ldaptsSearch("(|(cn=*a*b*)(mail=*a*)(givenName=*a*)(sn=*a*))", 2),
  bytesOf(new ldapts.AbandonRequest({ messageId: 3, abandonId: 2 })),
  ldaptsSearch(evolutionFilter("zoë"), 4),
  bytesOf(
    new ldapts.SearchRequest({
      messageId: 200,
      filter: ldapts.FilterParser.parseString("(objectClass=*)"),
      controls: [new ldapts.PagedResultsControl({ value: { size: 5, cookie: Buffer.of(1) } })],
    }),
  ),
  bytesOf(new ldapts.ExtendedRequest({ messageId: 201, oid: START_TLS_OID })),
  bytesOf(new ldapts.UnbindRequest({ messageId: 202 })),
);

Deno.test("several messages in one chunk decode in order (pipelining)", () => {
  assert.deepEqual(
    decodeAll(PIPELINE).map((request) => [request.messageId, request.op.kind]),
    [
      [1, "bind"],
      [2, "search"],
      [3, "abandon"],
      [4, "search"],
      [200, "search"],
      [201, "extended"],
      [202, "unbind"],
    ],
  );
});

Deno.test("a stream split at any byte decodes the same", () => {
  const whole = decodeAll(PIPELINE);
  for (let split = 1; split < PIPELINE.length; split++) {
    assert.deepEqual(decodeInPieces(PIPELINE, [split]), whole, `split at ${split}`);
  }
  assert.deepEqual(
    decodeInPieces(PIPELINE, new Array(PIPELINE.length).fill(1)),
    whole,
    "byte by byte",
  );
});

Deno.test("property: any chunking decodes the same", () => {
  const whole = decodeAll(PIPELINE);
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 1, max: 200 }), { maxLength: 100 }), (sizes) => {
      assert.deepEqual(decodeInPieces(PIPELINE, sizes), whole);
    }),
    { seed: SEED, numRuns: 500 },
  );
});

Deno.test("the bytes OpenLDAP's ldapsearch sends decode, split anywhere", async () => {
  // Saved by tests/ldapsearch_codec_test.ts's first case: bind, search, unbind.
  const bytes = await Deno.readFile(
    new URL("../testdata/ldap/ldapsearch_equality.bin", import.meta.url),
  );
  const requests = decodeAll(bytes);
  assert.deepEqual(requests.map((r) => [r.messageId, r.op.kind]), [[1, "bind"], [2, "search"], [
    3,
    "unbind",
  ]]);
  assert.deepEqual((requests[1].op as { filter: LdapFilter }).filter, {
    kind: "equality",
    attribute: "mail",
    value: "ada@example.com",
  });
  for (let split = 1; split < bytes.length; split++) {
    assert.deepEqual(decodeInPieces(bytes, [split]), requests);
  }
});

Deno.test("midMessage and buffered follow a partial message; detach keeps what was pushed", () => {
  const decoder = new LdapDecoder();
  const unbind = bytesOf(new ldapts.UnbindRequest({ messageId: 9 }));
  assert.equal(decoder.midMessage, false);
  decoder.push(unbind, 3);
  assert.equal(decoder.take(), null);
  assert.equal(decoder.midMessage, true);
  assert.equal(decoder.buffered, 3);
  // Two whole messages pushed, none taken yet, then the caller's buffer is reused.
  const two = concat(unbind, unbind);
  const buffer = two.slice();
  const other = new LdapDecoder();
  other.push(buffer, buffer.length);
  other.detach();
  buffer.fill(0);
  assert.equal(other.take()?.messageId, 9);
  assert.equal(other.take()?.messageId, 9);
  assert.equal(other.take(), null);
  decoder.reset();
  assert.equal(decoder.midMessage, false);
  assert.equal(decoder.take(), null);
});

Deno.test("non-minimal lengths are accepted, outer and inner", () => {
  // 30 84 00 00 00 xx { 02 01 05, 42 81 00 }: an Unbind with messageID 5.
  const unbind = Uint8Array.of(0x30, 0x84, 0, 0, 0, 6, 0x02, 0x01, 0x05, 0x42, 0x81, 0x00);
  assert.deepEqual(decodeOne(unbind), { messageId: 5, op: { kind: "unbind" }, controls: [] });
  assert.deepEqual(decodeInPieces(unbind, [1, 1, 1, 1, 1, 1, 1]), [decodeOne(unbind)]);
  // A search whose every length is in the 4-octet long form.
  const search = ldaptsSearch("(&(cn=a*)(mail=*))");
  assert.deepEqual(decodeOne(longForm(search)), decodeOne(search));
});

/** Rewrites a BER encoding with every length in the long form of 4 octets. */
function longForm(bytes: Uint8Array): Uint8Array {
  const parsed = asn1js.fromBER(bytes);
  assert.equal(parsed.offset, bytes.length);
  const rewrite = (block: asn1js.BaseBlock): Uint8Array => {
    const id = identifier(block);
    const content = block.idBlock.isConstructed
      ? concat(...(block.valueBlock as unknown as { value: asn1js.BaseBlock[] }).value.map(rewrite))
      : primitiveContent(block);
    const length = content.length;
    return concat(
      Uint8Array.of(
        id,
        0x84,
        length >>> 24,
        (length >> 16) & 0xff,
        (length >> 8) & 0xff,
        length & 0xff,
      ),
      content,
    );
  };
  return rewrite(parsed.result);
}

function identifier(block: asn1js.BaseBlock): number {
  return ((block.idBlock.tagClass - 1) << 6) | (block.idBlock.isConstructed ? 0x20 : 0) |
    block.idBlock.tagNumber;
}

function primitiveContent(block: asn1js.BaseBlock): Uint8Array {
  const view = (block.valueBlock as unknown as { valueHexView?: Uint8Array }).valueHexView;
  if (view !== undefined) return new Uint8Array(view);
  // INTEGER, ENUMERATED and BOOLEAN blocks keep their content elsewhere: slice it from the encoding.
  const encoded = new Uint8Array(block.toBER());
  return encoded.subarray(encoded.length - block.lenBlock.length);
}

Deno.test("an indefinite length is refused as soon as its octet arrives", () => {
  const decoder = new LdapDecoder();
  decoder.push(Uint8Array.of(0x30), 1);
  assert.equal(decoder.take(), null);
  decoder.push(Uint8Array.of(0x80), 1);
  throwsProtocolError(() => decoder.take(), /indefinite length/);
  // Inside a message too, with the messageID known.
  const inner = tlv(0x30, int(0x02, 6), Uint8Array.of(0x63, 0x80, 0, 0));
  throwsProtocolError(() => decodeAll(inner), /indefinite length/, 6, LdapTag.searchRequest);
});

Deno.test("a length over the cap is refused before its body arrives, with nothing allocated for it", () => {
  for (
    const header of [[0x30, 0x84, 0x00, 0x04, 0x00, 0x01], [0x30, 0x84, 0xff, 0xff, 0xff, 0xff], [
      0x30,
      0x83,
      0x04,
      0x00,
      0x01,
    ]]
  ) {
    const decoder = new LdapDecoder();
    for (let i = 0; i < header.length - 1; i++) {
      decoder.push(Uint8Array.of(header[i]), 1);
      assert.equal(decoder.take(), null);
    }
    decoder.push(Uint8Array.of(header[header.length - 1]), 1);
    throwsProtocolError(() => decoder.take(), /over the limit of 262144/);
    assert.ok(decoder.heldBytes <= 64, `held ${decoder.heldBytes} bytes`);
  }
  assert.throws(
    () => decodeAll(Uint8Array.of(0x30, 0x85, 0, 0, 0, 0, 1)),
    /5 octets is over the limit of 4/,
  );
});

Deno.test("a message of exactly the cap decodes, and its buffer grows only as its bytes arrive", () => {
  // A bind whose password fills the message to MAX_MESSAGE_BYTES of content: 18 bytes go around it.
  const passwordLength = MAX_MESSAGE_BYTES - 18;
  const bindBody = concat(
    int(0x02, 3),
    str(0x04, ""),
    Uint8Array.of(0x80, 0x83),
    lengthOctets(passwordLength, 3),
    new Uint8Array(passwordLength).fill(0x61),
  );
  const content = concat(
    int(0x02, 1),
    Uint8Array.of(0x60, 0x83),
    lengthOctets(bindBody.length, 3),
    bindBody,
  );
  assert.equal(content.length, MAX_MESSAGE_BYTES);
  const bytes = concat(Uint8Array.of(0x30, 0x83), lengthOctets(content.length, 3), content);
  const decoder = new LdapDecoder();
  decoder.push(bytes, 100);
  assert.equal(decoder.take(), null);
  assert.ok(decoder.heldBytes <= 200, `held ${decoder.heldBytes} after 100 bytes`);
  for (let at = 100; at < bytes.length; at += 10_000) {
    const piece = bytes.subarray(at, Math.min(at + 10_000, bytes.length));
    decoder.push(piece, piece.length);
    const request = decoder.take();
    assert.ok(decoder.heldBytes <= bytes.length);
    if (at + 10_000 >= bytes.length) {
      const op = request?.op as { authentication: { password: Uint8Array } };
      assert.equal(op.authentication.password.length, passwordLength);
    } else {
      assert.equal(request, null);
    }
  }
  // One byte more is over.
  throwsProtocolError(
    () => decodeAll(concat(Uint8Array.of(0x30, 0x83), lengthOctets(MAX_MESSAGE_BYTES + 1, 3))),
    /262145 bytes is over the limit/,
  );
});

function lengthOctets(length: number, count: number): Uint8Array {
  const octets = new Uint8Array(count);
  for (let i = count - 1, rest = length; i >= 0; i--, rest = Math.floor(rest / 256)) {
    octets[i] = rest % 256;
  }
  return octets;
}

// ---------------------------------------------------------------- malformed requests

Deno.test("malformed requests: each a protocol error carrying what could be read", () => {
  const cases: [string, Uint8Array, RegExp, number | undefined, number | undefined][] = [
    [
      "not a SEQUENCE",
      Uint8Array.of(0x31, 0x03, 0x02, 0x01, 0x01),
      /must start with tag 0x30, not 0x31/,
      undefined,
      undefined,
    ],
    [
      "messageID 0",
      message(0, tlv(0x42)),
      /messageID must be 1 to 2147483647, not 0/,
      undefined,
      undefined,
    ],
    [
      "a negative messageID",
      tlv(0x30, tlv(0x02, [0xff]), tlv(0x42)),
      /not -1/,
      undefined,
      undefined,
    ],
    [
      "a 5-octet messageID",
      tlv(0x30, tlv(0x02, [0, 0x80, 0, 0, 0]), tlv(0x42)),
      /5 octets/,
      undefined,
      undefined,
    ],
    ["no operation", message(3, new Uint8Array(0)), /missing/, 3, undefined],
    ["a response as a request", message(3, tlv(0x61)), /tag 0x61 is not a request/, 3, 0x61],
    ["an unknown application tag", message(3, tlv(0x7f)), /tag 0x7f is not a request/, 3, 0x7f],
    [
      "bind version 0",
      message(4, tlv(0x60, int(0x02, 0), str(0x04, ""), tlv(0x80))),
      /version must be 1 to 127, not 0/,
      4,
      0x60,
    ],
    [
      "bind with an unknown authentication",
      message(4, tlv(0x60, int(0x02, 3), str(0x04, ""), tlv(0x81))),
      /authentication tag 0x81/,
      4,
      0x60,
    ],
    [
      "search scope 3",
      message(5, tlv(0x63, str(0x04, ""), tlv(0x0a, [3]))),
      /scope must be 0 to 2, not 3/,
      5,
      0x63,
    ],
    [
      "search with a negative sizeLimit",
      message(5, tlv(0x63, str(0x04, ""), tlv(0x0a, [0]), tlv(0x0a, [0]), tlv(0x02, [0xff]))),
      /sizeLimit must not be negative/,
      5,
      0x63,
    ],
    [
      "a not of two filters",
      searchWith(tlv(0xa2, tlv(0x87, [0x63]), tlv(0x87, [0x63])), 6),
      /not filter holds more than one/,
      6,
      0x63,
    ],
    ["a negative abandon id", message(7, tlv(0x50, [0xff])), /messageID must be 0 to/, 7, 0x50],
    [
      "an element longer than the message",
      tlv(0x30, int(0x02, 8), Uint8Array.of(0x63, 0x20, 0x04)),
      /runs past its enclosing element/,
      8,
      0x63,
    ],
  ];
  for (const [what, bytes, pattern, messageId, requestTag] of cases) {
    try {
      decodeAll(bytes);
      assert.fail(`${what}: decoded`);
    } catch (error) {
      assert.ok(error instanceof LdapProtocolError, `${what}: ${error}`);
      assert.ok(error instanceof MalformedInput, "a session ends the connection on it");
      assert.match(error.message, pattern, what);
      assert.equal(error.messageId, messageId, `${what}: messageID`);
      assert.equal(error.requestTag, requestTag, `${what}: request tag`);
    }
  }
});

Deno.test(`a search may name up to ${MAX_REQUESTED_ATTRIBUTES} attributes`, () => {
  const search = (count: number) =>
    message(
      2,
      tlv(
        0x63,
        str(0x04, ""),
        tlv(0x0a, [0]),
        tlv(0x0a, [0]),
        int(0x02, 0),
        int(0x02, 0),
        tlv(0x01, [0]),
        tlv(0x87, [0x63]),
        tlv(0x30, ...Array.from({ length: count }, () => str(0x04, "cn"))),
      ),
    );
  assert.equal(
    (decodeOne(search(MAX_REQUESTED_ATTRIBUTES)).op as { attributes: string[] }).attributes.length,
    1024,
  );
  throwsProtocolError(
    () => decodeAll(search(MAX_REQUESTED_ATTRIBUTES + 1)),
    /more than 1024 attributes/,
    2,
    0x63,
  );
});

Deno.test("a malformed message is consumed whole, so the next one still decodes", () => {
  const decoder = new LdapDecoder();
  const bad = message(3, tlv(0x7f));
  const good = bytesOf(new ldapts.UnbindRequest({ messageId: 4 }));
  const both = concat(bad, good);
  decoder.push(both, both.length);
  assert.throws(() => decoder.take(), LdapProtocolError);
  assert.equal(decoder.take()?.messageId, 4);
});

Deno.test("error messages hold no text the client sent", () => {
  const secret = "ada@example.com";
  for (
    const bytes of [
      searchWith(tlv(0xa4, str(0x04, secret), tlv(0x30, str(0x83, secret))), 2),
      message(2, tlv(0x60, int(0x02, 3), str(0x04, secret), str(0x81, secret))),
      message(2, str(0x7e, secret)),
    ]
  ) {
    assert.throws(
      () => decodeAll(bytes),
      (error: Error) => !error.message.includes("ada") && !error.message.includes("example"),
    );
  }
});

// ---------------------------------------------------------------- fuzzing

const CORPUS: Uint8Array[] = [
  bytesOf(new ldapts.BindRequest({ messageId: 1, dn: "cn=ada@example.com", password: "x" })),
  bytesOf(new ldapts.BindRequest({ messageId: 1, mechanism: "PLAIN", password: "x" })),
  ldaptsSearch("(|(cn=*ada@example.com*b*)(mail=*a*)(givenName=*a*)(sn=*a*))", 2),
  ldaptsSearch(
    "(&(objectClass=inetOrgPerson)(!(|(mail=*q*)(cn:dn:2.5.13.5:=q)(cn>=a)(sn<=b)(cn~=c))))",
    3,
  ),
  bytesOf(new ldapts.AbandonRequest({ messageId: 3, abandonId: 2 })),
  bytesOf(new ldapts.ExtendedRequest({ messageId: 201, oid: START_TLS_OID, value: "v" })),
  bytesOf(new ldapts.UnbindRequest({ messageId: 202 })),
  bytesOf(new ldapts.DeleteRequest({ messageId: 203, dn: "mail=ada@example.com" })),
  bytesOf(
    new ldapts.SearchRequest({
      messageId: 200,
      filter: ldapts.FilterParser.parseString("(objectClass=*)"),
      controls: [
        new ldapts.PagedResultsControl({
          critical: true,
          value: { size: 5, cookie: Buffer.of(1) },
        }),
      ],
    }),
  ),
];

/** Feeds `bytes` in `sizes`-long pieces; returns what happened, checking the decoder's bounds throughout. */
function feed(bytes: Uint8Array, sizes: readonly number[]): "decoded" | "refused" {
  const decoder = new LdapDecoder();
  let at = 0;
  try {
    for (let i = 0; at < bytes.length; i++) {
      const size = Math.max(
        1,
        Math.min(sizes[i % Math.max(1, sizes.length)] ?? bytes.length, bytes.length - at),
      );
      decoder.push(bytes.subarray(at, at + size), size);
      at += size;
      while (decoder.take() !== null) {
        assert.ok(decoder.heldBytes <= MAX_MESSAGE_BYTES + MAX_HEADER_BYTES);
      }
      assert.ok(decoder.heldBytes <= MAX_MESSAGE_BYTES + MAX_HEADER_BYTES);
    }
    return "decoded";
  } catch (error) {
    if (!(error instanceof LdapProtocolError)) throw error;
    assert.ok(!error.message.includes("ada") && !error.message.includes("example"), error.message);
    assert.ok(error.message.length < 200);
    return "refused";
  }
}

Deno.test("fuzz: random bytes never throw anything but LdapProtocolError", () => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 300 }),
        // Mostly past the outer header, to reach the inner decoders.
        fc.tuple(fc.integer({ min: 0, max: 0x84 }), fc.uint8Array({ maxLength: 300 })).map((
          [length, body],
        ) => Uint8Array.of(0x30, length, ...body)),
        fc.uint8Array({ maxLength: 300 }).map((body) =>
          concat(
            Uint8Array.of(0x30, 0x82, body.length >> 8, body.length & 0xff, 0x02, 0x01, 0x05),
            body,
          )
        ),
      ),
      fc.array(fc.integer({ min: 1, max: 64 }), { maxLength: 8 }),
      (bytes, sizes) => {
        feed(bytes, sizes);
      },
    ),
    { seed: SEED, numRuns: 5000 },
  );
});

/** One mutation of a valid message: a byte changed, bytes inserted or removed, a truncation. */
const mutation = fc.oneof(
  fc.record({
    kind: fc.constant("set" as const),
    at: fc.nat(),
    byte: fc.integer({ min: 0, max: 255 }),
  }),
  fc.record({
    kind: fc.constant("flip" as const),
    at: fc.nat(),
    bit: fc.integer({ min: 0, max: 7 }),
  }),
  fc.record({
    kind: fc.constant("insert" as const),
    at: fc.nat(),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 4 }),
  }),
  fc.record({
    kind: fc.constant("delete" as const),
    at: fc.nat(),
    count: fc.integer({ min: 1, max: 4 }),
  }),
  fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
);

type Mutation = typeof mutation extends fc.Arbitrary<infer T> ? T : never;

function mutate(bytes: Uint8Array, change: Mutation): Uint8Array {
  const at = bytes.length === 0 ? 0 : change.at % bytes.length;
  const copy = bytes.slice();
  switch (change.kind) {
    case "set":
      copy[at] = change.byte;
      return copy;
    case "flip":
      copy[at] ^= 1 << change.bit;
      return copy;
    case "insert":
      return concat(bytes.subarray(0, at), change.bytes, bytes.subarray(at));
    case "delete":
      return concat(bytes.subarray(0, at), bytes.subarray(at + change.count));
    case "truncate":
      return bytes.slice(0, at);
  }
}

Deno.test("fuzz: mutated valid messages never throw anything but LdapProtocolError", () => {
  let refused = 0;
  let decoded = 0;
  fc.assert(
    fc.property(
      fc.constantFrom(...CORPUS),
      fc.array(mutation, { minLength: 1, maxLength: 3 }),
      fc.array(fc.integer({ min: 1, max: 40 }), { maxLength: 6 }),
      (original, changes, sizes) => {
        const bytes = changes.reduce(mutate, original);
        if (feed(concat(bytes, CORPUS[0]), sizes) === "refused") refused++;
        else decoded++;
      },
    ),
    { seed: SEED, numRuns: 5000 },
  );
  // Both outcomes occur: the fuzzing reaches past the first check.
  assert.ok(refused > 500 && decoded > 500, `refused ${refused}, decoded ${decoded}`);
});

// ---------------------------------------------------------------- responses

/** A BER tree as asn1js reads it: the independent decoder of the responses. */
interface Node {
  tag: number;
  content?: Uint8Array;
  children?: Node[];
}

function tree(bytes: Uint8Array): Node[] {
  const nodes: Node[] = [];
  let at = 0;
  while (at < bytes.length) {
    const parsed = asn1js.fromBER(bytes.subarray(at));
    assert.ok(parsed.offset > 0, `asn1js reads the message at ${at}: ${parsed.result.error}`);
    nodes.push(nodeOf(parsed.result));
    at += parsed.offset;
  }
  return nodes;
}

function nodeOf(block: asn1js.BaseBlock): Node {
  assert.equal(block.lenBlock.isIndefiniteForm, false);
  const tag = identifier(block);
  if (block.idBlock.isConstructed) {
    return {
      tag,
      children: (block.valueBlock as unknown as { value: asn1js.BaseBlock[] }).value.map(nodeOf),
    };
  }
  return { tag, content: primitiveContent(block) };
}

const text_ = (node: Node | undefined) => new TextDecoder().decode(node?.content);
const intOf = (node: Node | undefined) => {
  const content = node!.content!;
  let value = content[0] >= 0x80 ? content[0] - 256 : content[0];
  for (let i = 1; i < content.length; i++) value = value * 256 + content[i];
  return value;
};

function encoded(write: (out: ReplyBuffer) => void): Uint8Array {
  const out = new ReplyBuffer();
  write(out);
  return out.bytes.slice(0, out.length);
}

/** What the tests read of ldapts's parsed responses (its MessageResponse class is not exported by name). */
interface Response {
  constructor: { name: string };
  messageId: number;
  status: number;
  matchedDN: string;
  errorMessage: string;
}

/** Parses responses with ldapts's own client parser. */
function ldaptsParse(bytes: Uint8Array): Response[] {
  const parser = new ldapts.MessageParser();
  const messages: Response[] = [];
  const errors: Error[] = [];
  parser.on("message", (message) => messages.push(message as unknown as Response));
  parser.on("error", (error) => errors.push(error));
  parser.read(Buffer.from(bytes), new Map());
  assert.deepEqual(errors, []);
  return messages;
}

Deno.test("writeSearchResultEntry: ldapts and asn1js read the entry back", () => {
  const attributes = [
    { type: "objectClass", values: ["top", "person", "organizationalPerson", "inetOrgPerson"] },
    { type: "cn", values: ["Zoë Ñúñez"] },
    { type: "mail", values: ["zoë@example.com"] },
    { type: "jpegPhoto", values: [new Uint8Array(300).fill(0xff)] },
    { type: "sn", values: [] }, // typesOnly
  ];
  const bytes = encoded((out) =>
    writeSearchResultEntry(out, 200, "mail=zoë@example.com,dc=example,dc=com", attributes)
  );
  const [entry] = ldaptsParse(bytes) as unknown as ldapts.SearchEntry[];
  assert.equal(entry.messageId, 200);
  assert.equal(entry.name, "mail=zoë@example.com,dc=example,dc=com");
  assert.deepEqual(entry.attributes.map((a) => a.type), attributes.map((a) => a.type));
  assert.deepEqual(entry.attributes[0].values, attributes[0].values);
  assert.deepEqual(entry.attributes[1].values, ["Zoë Ñúñez"]);
  assert.deepEqual(entry.attributes[4].values, []);
  const [message] = tree(bytes);
  assert.equal(message.tag, 0x30);
  assert.deepEqual(
    message.children![0].content,
    Uint8Array.of(0x00, 0xc8),
    "200 has a leading zero octet",
  );
  const op = message.children![1];
  assert.equal(op.tag, LdapTag.searchResultEntry);
  const photo = op.children![1].children![3];
  assert.equal(photo.children![1].tag, 0x31);
  assert.deepEqual(photo.children![1].children![0].content, new Uint8Array(300).fill(0xff));
});

Deno.test("property: any entry encodes to what asn1js reads back", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 2 ** 31 - 1 }),
      fc.string({ unit: "grapheme", maxLength: 300 }),
      fc.array(
        fc.record({
          type: attributeName,
          values: fc.array(fc.string({ unit: "grapheme", maxLength: 150 }), { maxLength: 4 }),
        }),
        { maxLength: 6 },
      ),
      (messageId, dn, attributes) => {
        const [message] = tree(
          encoded((out) => writeSearchResultEntry(out, messageId, dn, attributes)),
        );
        assert.equal(intOf(message.children![0]), messageId);
        const [name, list] = message.children![1].children!;
        assert.equal(text_(name), dn);
        assert.deepEqual(
          list.children!.map((attribute) => ({
            type: text_(attribute.children![0]),
            values: attribute.children![1].children!.map(text_),
          })),
          attributes,
        );
      },
    ),
    { seed: SEED, numRuns: 500 },
  );
});

Deno.test("writeSearchResultDone with a paged results control: ldapts reads status and cookie", () => {
  const bytes = encoded((out) =>
    writeSearchResultDone(
      out,
      9,
      ResultCode.sizeLimitExceeded,
      "dc=example,dc=com",
      "Size limit of 500 exceeded.",
      [
        pagedResultsControl(0, Uint8Array.of(1, 2, 3)),
      ],
    )
  );
  const [done] = ldaptsParse(bytes);
  assert.equal(done.messageId, 9);
  assert.equal(done.status, 4);
  assert.equal(done.matchedDN, "dc=example,dc=com");
  assert.equal(done.errorMessage, "Size limit of 500 exceeded.");
  const [message] = tree(bytes);
  assert.equal(message.children![1].tag, LdapTag.searchResultDone);
  const controls = message.children![2];
  assert.equal(controls.tag, 0xa0);
  const control = controls.children![0];
  assert.equal(text_(control.children![0]), PAGED_RESULTS_OID);
  assert.equal(control.children!.length, 2, "criticality FALSE is left out");
  assert.deepEqual(decodePagedResults(control.children![1].content!), {
    size: 0,
    cookie: Uint8Array.of(1, 2, 3),
  });
});

Deno.test("writeBindResponse, writeExtendedResponse and writeResult: each tag, ldapts reads them", () => {
  const bytes = encoded((out) => {
    writeBindResponse(out, 1, ResultCode.invalidCredentials, "", "No users are configured.");
    writeExtendedResponse(out, 2, ResultCode.success, "", START_TLS_OID);
    for (const [kind, tag] of Object.entries(WRITE_RESPONSE_TAGS)) {
      writeResult(
        out,
        tag,
        10 + Object.keys(WRITE_RESPONSE_TAGS).indexOf(kind),
        ResultCode.unwillingToPerform,
        "",
        "The directory is read-only.",
      );
    }
    writeResult(
      out,
      LdapTag.searchResultDone,
      20,
      ResultCode.noSuchObject,
      "dc=example,dc=com",
      "",
    );
    writeBindResponse(out, 21, ResultCode.success, "", "", Uint8Array.of(7));
  });
  const responses = ldaptsParse(bytes);
  assert.deepEqual(
    responses.map((r) => [r.constructor.name, r.messageId, r.status]),
    [
      ["BindResponse", 1, 49],
      ["ExtendedResponse", 2, 0],
      ["AddResponse", 10, 53],
      ["ModifyResponse", 11, 53],
      ["DeleteResponse", 12, 53],
      ["ModifyDNResponse", 13, 53],
      ["CompareResponse", 14, 53],
      ["SearchResponse", 20, 32],
      ["BindResponse", 21, 0],
    ],
  );
  assert.equal((responses[1] as unknown as ldapts.ExtendedResponse).oid, START_TLS_OID);
  assert.equal(responses[0].errorMessage, "No users are configured.");
  const trees = tree(bytes);
  assert.deepEqual(trees.map((m) => m.children![1].tag), [
    0x61,
    0x78,
    0x69,
    0x67,
    0x6b,
    0x6d,
    0x6f,
    0x65,
    0x61,
  ]);
  assert.deepEqual(trees[8].children![1].children![3], { tag: 0x87, content: Uint8Array.of(7) });
});

Deno.test("writeNoticeOfDisconnection: messageID 0 and the notice's OID, byte for byte", () => {
  const bytes = encoded((out) =>
    writeNoticeOfDisconnection(out, ResultCode.protocolError, "Bad BER.")
  );
  const oid = encoder.encode(NOTICE_OF_DISCONNECTION_OID);
  const expected = tlv(
    0x30,
    [0x02, 0x01, 0x00],
    tlv(0x78, [0x0a, 0x01, 0x02], [0x04, 0x00], str(0x04, "Bad BER."), tlv(0x8a, oid)),
  );
  assert.deepEqual(bytes, expected);
  const [notice] = ldaptsParse(bytes) as unknown as (ldapts.ExtendedResponse & Response)[];
  assert.equal(notice.messageId, 0);
  assert.equal(notice.status, 2);
  assert.equal(notice.oid, NOTICE_OF_DISCONNECTION_OID);
});

Deno.test("responses append: many in one buffer, long diagnostics with multi-octet lengths", () => {
  const out = new ReplyBuffer();
  const long = "é".repeat(40_000);
  for (let id = 1; id <= 50; id++) {
    writeSearchResultDone(out, id, ResultCode.success, "", id === 25 ? long : "");
  }
  const messages = ldaptsParse(out.bytes.slice(0, out.length));
  assert.deepEqual(messages.map((m) => m.messageId), Array.from({ length: 50 }, (_, i) => i + 1));
  assert.equal(messages[24].errorMessage, long);
});

Deno.test("responseTagFor maps each request to the response that ends it", () => {
  assert.equal(responseTagFor(LdapTag.bindRequest), LdapTag.bindResponse);
  assert.equal(responseTagFor(LdapTag.searchRequest), LdapTag.searchResultDone);
  assert.equal(responseTagFor(LdapTag.extendedRequest), LdapTag.extendedResponse);
  assert.equal(responseTagFor(LdapTag.unbindRequest), undefined);
  assert.equal(responseTagFor(LdapTag.abandonRequest), undefined);
});
