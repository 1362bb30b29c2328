/**
 * LDAPv3 as a front end (see front_end.ts): the subset of RFC 4511 that
 * mail clients use to look up recipients, answered from the book. Each
 * connection decodes its messages with ldap_codec.ts's incremental decoder
 * and answers each one in order, at once:
 *
 * - Bind: anonymous succeeds; a DN with a password is invalidCredentials
 *   (no users are configured); a DN with an empty password (an
 *   "unauthenticated" bind, RFC 4513 §5.1.2) is unwillingToPerform; SASL
 *   is authMethodNotSupported.
 * - Search: the rootDSE (base `""`, scope base), the suffix entry, and the
 *   people below it, `mail=<address>,<suffix>`, found by ldap_search.ts
 *   (filters, a substring index) up to the client's sizeLimit and the
 *   server's cap, with paged results (RFC 2696) under the same cap. A base
 *   of `""` with scope one or sub searches the directory, as Apple's
 *   Contacts asks it to.
 * - Unbind ends the connection; Abandon has nothing to stop (every search
 *   is answered whole before the next message is read).
 * - Add, modify, delete, modDN and compare are refused (unwillingToPerform);
 *   an unknown extended operation is protocolError.
 * - StartTLS (RFC 4511 §4.14) as the port's {@linkcode StartTlsOffer} says:
 *   where it is offered, the rootDSE lists it and a request with nothing
 *   after it is answered success, and the conversation asks its session to
 *   start TLS once that reply is written ({@linkcode Conversation.upgrade});
 *   bytes sent behind the request, before its response, break the protocol
 *   (§4.14.1). A second StartTLS, or one on the LDAPS port, is
 *   operationsError; where it is not offered (no certificate, or an event
 *   loop that cannot upgrade a socket) it is unavailable.
 *
 * Refusals of a connection (busy, forbidden, a per-client cap, a protocol
 * error, the server's shutdown) are a Notice of Disconnection, since they
 * answer no message. Operations and result codes are counted per thread
 * (session/counters.ts); no DN, filter or value is ever logged.
 *
 * @module
 */

import type { AddressBook } from "../book/addressbook.ts";
import { TextIndex } from "../book/text_index.ts";
import {
  type Conversation,
  type FrontEnd,
  NO_REPLY,
  NO_REQUEST,
  Outcome,
  type ReplyBuffer,
  type RequestGate,
} from "./front_end.ts";
import {
  decodePagedResults,
  type EntryAttribute,
  type LdapControl,
  LdapDecoder,
  LdapProtocolError,
  type LdapRequest,
  type LdapSearch,
  LdapTag,
  PAGED_RESULTS_OID,
  pagedResultsControl,
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
import { InvalidDnError, levelsBelow, parseDn, type Rdn } from "./ldap_dn.ts";
import { dnTail, type PersonEntryPlan, personEntryPlan, writePersonEntry } from "./ldap_person.ts";
import { evaluateFilter, type LdapFilter, resolveAttribute } from "./ldap_filter.ts";
import { BookSubject, searchBook } from "./ldap_search.ts";

/** How the LDAP front end serves the book. */
export interface LdapSettings {
  /** The directory's suffix (`--ldap-base`), e.g. `dc=example,dc=com`. */
  base: string;
  /** The most entries one search returns, and a paged search in total (`--ldap-size-limit`). */
  sizeLimit: number;
  /** What the port says of StartTLS; `"unavailable"` when not given. */
  startTls?: StartTlsOffer;
  /**
   * The clock a search's timeLimit is measured with, in milliseconds
   * (`performance.now` by default). The front end reads no clock of its
   * own: tests give one that they move.
   */
  clock?: () => number;
}

/**
 * What one LDAP port says of StartTLS:
 * - `"unavailable"`: not offered (the server has no certificate, or its
 *   event loop cannot upgrade a socket): a request is answered unavailable (52).
 * - `"offered"`: the rootDSE lists it, and a request starts TLS on the connection.
 * - `"established"`: the port speaks TLS from the start (LDAPS): a request
 *   is answered operationsError (1), as one after a StartTLS is.
 */
export type StartTlsOffer = "unavailable" | "offered" | "established";

/** The default suffix when `--ldap-base` is not given. */
export const DEFAULT_LDAP_BASE = "dc=addrbook";
/** The default cap on the entries of one search, as slapd's. */
export const DEFAULT_LDAP_SIZE_LIMIT = 500;
const MS_PER_SECOND = 1000;
/** Spellings of the suffix remembered, so that a client cannot grow the set without bound. */
const MAX_SUFFIX_TEXTS = 16;
/** Paged searches one connection may leave open; the oldest is forgotten past it. */
export const MAX_PAGED_SEARCHES = 8;

/** The operations counted, in the order of their counters (session/counters.ts). */
export const LDAP_OPERATIONS = [
  "bind",
  "unbind",
  "search",
  "abandon",
  "extended",
  "add",
  "modify",
  "delete",
  "modDN",
  "compare",
] as const;

/** The result codes counted, in the order of their counters (session/counters.ts). */
export const LDAP_RESULTS: readonly (readonly [number, string])[] = Object.entries(ResultCode)
  .map(([name, code]): readonly [number, string] => [code as number, name]);

const RESULT_INDEX = new Map(LDAP_RESULTS.map(([code], i) => [code, i]));
const OPERATION_INDEX = new Map<string, number>(LDAP_OPERATIONS.map((op, i) => [op, i]));

/** Where the LDAP counters begin in a thread's row: given by the counters module. */
export interface LdapCounterLayout {
  /** The index of the first operation counter. */
  operations: number;
  /** The index of the first result counter. */
  results: number;
}

const SCOPE_BASE = 0;
const SCOPE_ONE = 1;

/** Where a search's base is, in the directory. */
type BaseKind =
  | { kind: "root" }
  | { kind: "suffix" }
  | { kind: "person"; entry: number }
  | { kind: "missing"; matchedDn: string }
  | { kind: "invalid" };

/** A paged search left open: what it searches and how far it has come. */
interface PagedSearch {
  search: LdapSearch;
  /** The book it pages through: entry numbers mean nothing in another. */
  book: AddressBook;
  /** The entry number to resume from. */
  next: number;
  /** Entries returned so far, against the server's cap. */
  returned: number;
}

/** The directory's fixed parts, worked out once per listener. */
class Directory {
  readonly settings: LdapSettings;
  readonly suffix: Rdn[];
  readonly suffixDn: string;
  readonly counters: LdapCounterLayout;
  /** What search time limits are measured with. */
  readonly clock: () => number;

  constructor(settings: LdapSettings, counters: LdapCounterLayout) {
    this.settings = settings;
    this.clock = settings.clock ?? (() => performance.now());
    this.suffix = parseDn(settings.base);
    this.suffixDn = settings.base;
    this.#dnTail = dnTail(this.suffixDn);
    this.counters = counters;
  }

  /** Texts already parsed and found to name the suffix (a few, as clients send them). */
  readonly #suffixTexts = new Set<string>();

  /** Whether `text` names the suffix, remembering the answer for the texts that do. */
  isSuffixText(text: string): boolean {
    if (this.#suffixTexts.has(text)) return true;
    try {
      if (levelsBelow(parseDn(text), this.suffix) !== 0) return false;
    } catch (error) {
      if (error instanceof InvalidDnError) return false;
      throw error;
    }
    if (this.#suffixTexts.size < MAX_SUFFIX_TEXTS) this.#suffixTexts.add(text);
    return true;
  }

  /** The suffix after a `,`, as UTF-8: the end of every person's DN. */
  readonly #dnTail: Uint8Array;

  /** How a search with `selection` writes each person. */
  personPlan(selection: Selection): PersonEntryPlan {
    return personEntryPlan(
      this.suffixDn,
      this.#dnTail,
      (type) => selected(selection, type),
      selection.typesOnly,
    );
  }

  /** The rootDSE's attributes (RFC 4512 §5.1). */
  rootDse(): EntryAttribute[] {
    return [
      { type: "objectClass", values: ["top"] },
      { type: "namingContexts", values: [this.suffixDn] },
      { type: "supportedLDAPVersion", values: ["3"] },
      { type: "supportedControl", values: [PAGED_RESULTS_OID] },
      {
        type: "supportedExtension",
        values: this.settings.startTls === "offered" ? [START_TLS_OID] : [],
      },
      { type: "vendorName", values: ["addrbook"] },
    ].filter((attribute) => attribute.values.length > 0);
  }

  /** The suffix entry's attributes: its RDN's value, and a class that fits its type. */
  suffixEntry(): EntryAttribute[] {
    const [{ type, value }] = this.suffix;
    const lower = type.toLowerCase();
    const objectClass = lower === "dc"
      ? "dcObject"
      : lower === "o"
      ? "organization"
      : lower === "ou"
      ? "organizationalUnit"
      : "extensibleObject";
    return [{ type: "objectClass", values: ["top", objectClass] }, { type, values: [value] }];
  }
}

/** The attributes a search asked for. */
interface Selection {
  /** Every user attribute (`*`, or none named). */
  all: boolean;
  /** The attributes named (lower case), when not all. */
  named: Set<string>;
  typesOnly: boolean;
}

function selectionOf(search: LdapSearch): Selection {
  const named = new Set<string>();
  let all = search.attributes.length === 0;
  for (const attribute of search.attributes) {
    if (attribute === "*") all = true;
    else if (attribute !== "1.1" && attribute !== "+") {
      named.add(attribute.toLowerCase());
      // An alias names the attribute too (`surname` for sn): resolved once per search.
      const canonical = resolveAttribute(attribute);
      if (canonical !== undefined) named.add(canonical.toLowerCase());
    }
  }
  return { all, named, typesOnly: search.typesOnly };
}

function selected(selection: Selection, type: string): boolean {
  return selection.all || selection.named.has(type.toLowerCase());
}

function select(attributes: EntryAttribute[], selection: Selection): EntryAttribute[] {
  const kept = attributes.filter((attribute) => selected(selection, attribute.type));
  return selection.typesOnly ? kept.map(({ type }) => ({ type, values: [] })) : kept;
}

/**
 * A filter's value (TRUE, FALSE or Undefined, RFC 4511 §4.5.1.7) for an
 * entry of fixed attributes (the rootDSE, the suffix): an attribute it does
 * not have is Undefined, as for the people.
 */
function evaluateFixed(filter: LdapFilter, attributes: EntryAttribute[]): boolean | undefined {
  const valuesOf = (type: string) =>
    attributes.find((attribute) => attribute.type.toLowerCase() === type.toLowerCase())?.values;
  switch (filter.kind) {
    case "and": {
      let result: boolean | undefined = true;
      for (const child of filter.filters) {
        const value = evaluateFixed(child, attributes);
        if (value === false) return false;
        if (value === undefined) result = undefined;
      }
      return result;
    }
    case "or": {
      let result: boolean | undefined = false;
      for (const child of filter.filters) {
        const value = evaluateFixed(child, attributes);
        if (value === true) return true;
        if (value === undefined) result = undefined;
      }
      return result;
    }
    case "not": {
      const value = evaluateFixed(filter.filter, attributes);
      return value === undefined ? undefined : !value;
    }
    case "present":
      return valuesOf(filter.attribute) !== undefined;
    case "equality":
    case "approx": {
      const values = valuesOf(filter.attribute);
      if (values === undefined) return undefined;
      const wanted = filter.value.toLowerCase();
      return values.some((value) => String(value).toLowerCase() === wanted);
    }
    default:
      return undefined;
  }
}

function matchesFixedEntry(filter: LdapFilter, attributes: EntryAttribute[]): boolean {
  return evaluateFixed(filter, attributes) === true;
}

/** One connection's LDAP conversation. */
class LdapConversation implements Conversation {
  readonly #decoder = new LdapDecoder();
  readonly #directory: Directory;
  readonly #counters: Float64Array;
  readonly #paged = new Map<string, PagedSearch>();
  #nextCookie = 1;
  #finished = false;
  /** TLS carries the conversation (LDAPS, or after StartTLS): no second StartTLS. */
  #tls: boolean;
  /** The request just answered was a StartTLS that succeeded. */
  #upgrade = false;

  constructor(directory: Directory, counters: Float64Array) {
    this.#directory = directory;
    this.#counters = counters;
    this.#tls = directory.settings.startTls === "established";
  }

  receive(bytes: Uint8Array, length: number): void {
    this.#decoder.push(bytes, length);
  }

  get midRequest(): boolean {
    return this.#decoder.midMessage;
  }

  get finished(): boolean {
    return this.#finished;
  }

  get upgrade(): boolean {
    return this.#upgrade;
  }

  answerNext(output: ReplyBuffer, book: AddressBook, gate: RequestGate | undefined): number {
    this.#upgrade = false;
    const request = this.#decoder.take(); // throws LdapProtocolError, a MalformedInput
    if (request === null) return NO_REQUEST;
    const { op } = request;
    this.#countOperation(op.kind);
    switch (op.kind) {
      case "bind":
        return this.#bind(output, request.messageId, op);
      case "unbind":
        this.#finished = true;
        return NO_REPLY;
      case "abandon":
        return NO_REPLY;
      case "search":
        return this.#search(output, request, op, book, gate);
      case "extended":
        return this.#extended(output, request.messageId, op.requestName);
      default:
        return this.#refuseWrite(output, request.messageId, WRITE_RESPONSE_TAGS[op.kind]);
    }
  }

  hold(): void {
    this.#decoder.detach();
  }

  reset(): void {
    this.#decoder.reset();
    this.#paged.clear();
  }

  #bind(
    output: ReplyBuffer,
    messageId: number,
    op: Extract<LdapRequest["op"], { kind: "bind" }>,
  ): number {
    let code: number = ResultCode.success;
    let text = "";
    if (op.version !== 3) {
      code = ResultCode.protocolError;
      text = "Only LDAP version 3 is supported.";
    } else if (op.authentication.kind === "sasl") {
      code = ResultCode.authMethodNotSupported;
      text = "Only anonymous binds are supported.";
    } else if (op.name !== "" && op.authentication.password.length === 0) {
      code = ResultCode.unwillingToPerform;
      text = "Unauthenticated binds (a name without a password) are refused.";
    } else if (op.name !== "" || op.authentication.password.length > 0) {
      code = ResultCode.invalidCredentials;
      text = "This directory has no users: bind anonymously.";
    }
    writeBindResponse(output, messageId, code, "", text);
    this.#countResult(code);
    return Outcome.other;
  }

  #extended(output: ReplyBuffer, messageId: number, name: string): number {
    if (name === START_TLS_OID) return this.#startTls(output, messageId);
    const code = ResultCode.protocolError;
    writeExtendedResponse(output, messageId, code, "The extended operation is not supported.");
    this.#countResult(code);
    return Outcome.other;
  }

  /**
   * Answers StartTLS (RFC 4511 §4.14.2: the response names the operation).
   * On success the conversation asks for the upgrade: TLS starts right
   * after this reply, so nothing may follow the request in clear.
   *
   * @throws {LdapProtocolError} when bytes followed the request before its response.
   */
  #startTls(output: ReplyBuffer, messageId: number): number {
    let code: number = ResultCode.success;
    let text = "";
    if (this.#tls) {
      code = ResultCode.operationsError;
      text = "TLS is already established on this connection.";
    } else if (this.#directory.settings.startTls !== "offered") {
      code = ResultCode.unavailable;
      text = "StartTLS is not offered on this port.";
    } else if (this.#decoder.buffered > 0) {
      // §4.14.1: the client sends nothing more until it has the response.
      throw new LdapProtocolError(
        "Bytes followed a StartTLS request before its response.",
        messageId,
        LdapTag.extendedRequest,
      );
    } else {
      this.#tls = true;
      this.#upgrade = true;
    }
    writeExtendedResponse(output, messageId, code, text, START_TLS_OID);
    this.#countResult(code);
    return Outcome.other;
  }

  #refuseWrite(output: ReplyBuffer, messageId: number, tag: number): number {
    writeResult(
      output,
      tag,
      messageId,
      ResultCode.unwillingToPerform,
      "",
      "The directory is read-only.",
    );
    this.#countResult(ResultCode.unwillingToPerform);
    return Outcome.other;
  }

  #search(
    output: ReplyBuffer,
    request: LdapRequest,
    op: LdapSearch,
    book: AddressBook,
    gate: RequestGate | undefined,
  ): number {
    const { messageId } = request;
    const critical = request.controls.find((control) =>
      control.critical && control.type !== PAGED_RESULTS_OID
    );
    if (critical !== undefined) {
      return this.#done(
        output,
        messageId,
        ResultCode.unavailableCriticalExtension,
        "A critical control is not supported.",
      );
    }
    const paging = request.controls.find((control) => control.type === PAGED_RESULTS_OID);
    const base = this.#locate(op, book);
    if (base.kind === "invalid") {
      return this.#done(output, messageId, ResultCode.invalidDNSyntax, "The base DN is invalid.");
    }
    if (base.kind === "missing") {
      return this.#done(
        output,
        messageId,
        ResultCode.noSuchObject,
        "No such entry in this directory.",
        base.matchedDn,
      );
    }
    const selection = selectionOf(op);
    if (base.kind === "root" && op.scope === SCOPE_BASE) {
      const rootDse = this.#directory.rootDse();
      if (!matchesFixedEntry(op.filter, rootDse)) {
        return this.#done(output, messageId, ResultCode.success, "");
      }
      writeSearchResultEntry(output, messageId, "", select(rootDse, selection));
      return this.#done(output, messageId, ResultCode.success, "", "", Outcome.other);
    }
    if (paging !== undefined) {
      return this.#pagedSearch(output, messageId, op, paging, base, book, gate, selection);
    }
    const cap = this.#directory.settings.sizeLimit;
    const limit = Math.min(op.sizeLimit > 0 ? op.sizeLimit : Infinity, cap);
    return this.#answerSearch(output, messageId, op, base, book, gate, selection, 0, limit);
  }

  /** Runs a search from entry `start`, up to `limit` people, and writes its entries and end. */
  #answerSearch(
    output: ReplyBuffer,
    messageId: number,
    op: LdapSearch,
    base: BaseKind,
    book: AddressBook,
    gate: RequestGate | undefined,
    selection: Selection,
    start: number,
    limit: number,
    paging?: {
      /** Whether the entries past this page are within the search's total. */
      moreAllowed: boolean;
      controls: (next: number | undefined, returned: number) => LdapControl[];
    },
  ): number {
    const suffix = base.kind === "suffix" || base.kind === "root";
    // The suffix entry itself, for a base search on it or a subtree search from it.
    const withSuffix = suffix && op.scope !== SCOPE_ONE && start === 0 &&
      matchesFixedEntry(op.filter, this.#directory.suffixEntry());
    const people = this.#people(op, base, book, start, Math.max(0, limit - (withSuffix ? 1 : 0)));
    let entries = people.entries;
    let wanted = entries.length + (withSuffix ? 1 : 0);
    // A page that is full with more to come is a success: the cookie leads on.
    const overLimit = people.more && !(paging?.moreAllowed ?? false);
    let code: number = people.timedOut
      ? ResultCode.timeLimitExceeded
      : overLimit
      ? ResultCode.sizeLimitExceeded
      : ResultCode.success;
    let text = people.timedOut
      ? "The search ran past its time limit; the entries found so far were returned."
      : overLimit
      ? "More entries match than the size limit allows."
      : "";
    if (gate !== undefined) {
      const allowed = gate.admitEntries(entries.length);
      if (typeof allowed !== "number") {
        const refusal = allowed.reason === "rate_limited"
          ? ResultCode.busy
          : ResultCode.adminLimitExceeded;
        return this.#done(output, messageId, refusal, allowed.text, "", Outcome.rateLimited);
      }
      if (allowed < entries.length) {
        entries = entries.slice(0, allowed);
        wanted = entries.length + (withSuffix ? 1 : 0);
        code = ResultCode.adminLimitExceeded;
        text = "This client is over the server's found limit (--found-limit).";
      }
    }
    if (withSuffix) {
      writeSearchResultEntry(
        output,
        messageId,
        this.#directory.suffixDn,
        select(this.#directory.suffixEntry(), selection),
      );
    }
    if (entries.length > 0) {
      // From the book's bytes: no string or object per entry.
      const subject = BookSubject.of(book);
      const plan = this.#directory.personPlan(selection);
      for (const entry of entries) {
        subject.load(entry);
        writePersonEntry(output, messageId, subject, plan);
      }
    }
    const next = people.more ? people.next : undefined;
    const outcome = entries.length > 0
      ? Outcome.found
      : wanted > 0
      ? Outcome.other
      : Outcome.notFound;
    return this.#done(output, messageId, code, text, "", outcome, paging?.controls(next, wanted));
  }

  /** The people a search finds below its base, from entry `start`, at most `limit`. */
  #people(op: LdapSearch, base: BaseKind, book: AddressBook, start: number, limit: number) {
    if (base.kind === "person") {
      // A person's entry has no children: scope one finds nothing, base and sub the entry.
      const subject = BookSubject.of(book);
      subject.load(base.entry);
      const found = op.scope !== SCOPE_ONE && start <= base.entry && limit > 0 &&
        evaluateFilter(op.filter, subject) === true;
      return { entries: found ? [base.entry] : [], more: false, next: undefined, timedOut: false };
    }
    if (op.scope === SCOPE_BASE && base.kind === "suffix") {
      return { entries: [], more: false, next: undefined, timedOut: false };
    }
    const outcome = searchBook(
      book,
      // Built once per book, where it was loaded (else here, for a book made in this thread).
      TextIndex.of(book),
      { filter: op.filter, start, shouldStop: this.#timeLimit(op) },
      limit,
    );
    return {
      entries: outcome.entries,
      more: outcome.more,
      next: outcome.next,
      timedOut: outcome.stopped,
    };
  }

  /**
   * The search's time limit as searchBook's `shouldStop`: true once the
   * client's timeLimit (seconds; 0 for none) has passed since it began.
   */
  #timeLimit(op: LdapSearch): (() => boolean) | undefined {
    if (op.timeLimit <= 0) return undefined;
    const clock = this.#directory.clock;
    const ends = clock() + op.timeLimit * MS_PER_SECOND;
    return () => clock() >= ends;
  }

  /** One page of a paged search (RFC 2696), its cookie kept to resume from. */
  #pagedSearch(
    output: ReplyBuffer,
    messageId: number,
    op: LdapSearch,
    control: LdapControl,
    base: BaseKind,
    book: AddressBook,
    gate: RequestGate | undefined,
    selection: Selection,
  ): number {
    const { size, cookie } = decodePagedResults(control.value ?? new Uint8Array());
    const key = cookieKey(cookie);
    let state: PagedSearch | undefined;
    if (cookie.length > 0) {
      state = this.#paged.get(key);
      if (state === undefined) {
        return this.#done(
          output,
          messageId,
          ResultCode.unwillingToPerform,
          "The paged results cookie is unknown or expired.",
        );
      }
      this.#paged.delete(key);
      if (state.book !== book) {
        return this.#done(
          output,
          messageId,
          ResultCode.unwillingToPerform,
          "The directory was reloaded since the first page: start the search again.",
        );
      }
      if (size === 0) {
        // The client abandons the paged search.
        return this.#done(output, messageId, ResultCode.success, "", "", Outcome.other, [
          pagedResultsControl(0, new Uint8Array()),
        ]);
      }
    }
    state ??= { search: op, book, next: 0, returned: 0 };
    const cap = this.#directory.settings.sizeLimit;
    const total = Math.min(op.sizeLimit > 0 ? op.sizeLimit : Infinity, cap);
    const left = total - state.returned;
    const page = Math.min(size > 0 ? size : left, left);
    const current = state;
    return this.#answerSearch(
      output,
      messageId,
      current.search,
      base,
      book,
      gate,
      selection,
      current.next,
      page,
      {
        moreAllowed: current.returned + page < total,
        controls: (next, returned) => {
          current.returned += returned;
          // More to come within the cap: a cookie to resume from; else an empty one ends it.
          if (next === undefined || current.returned >= total) {
            return [pagedResultsControl(0, new Uint8Array())];
          }
          current.next = next;
          return [pagedResultsControl(0, this.#keep(current))];
        },
      },
    );
  }

  /** Keeps a paged search for its next page and returns its cookie. */
  #keep(state: PagedSearch): Uint8Array {
    if (this.#paged.size >= MAX_PAGED_SEARCHES) {
      this.#paged.delete(this.#paged.keys().next().value!);
    }
    const cookie = new Uint8Array(4);
    new DataView(cookie.buffer).setUint32(0, this.#nextCookie++ >>> 0);
    this.#paged.set(cookieKey(cookie), state);
    return cookie;
  }

  /** Where a search's base is in the directory. */
  #locate(op: LdapSearch, book: AddressBook): BaseKind {
    if (op.baseObject.trim() === "") return { kind: "root" };
    // Clients search under one base again and again: the suffix is known by its text.
    if (this.#directory.isSuffixText(op.baseObject)) return { kind: "suffix" };
    let levels: number;
    let rdns: Rdn[];
    try {
      rdns = parseDn(op.baseObject);
      levels = levelsBelow(rdns, this.#directory.suffix);
    } catch (error) {
      if (error instanceof InvalidDnError) return { kind: "invalid" };
      throw error;
    }
    if (levels === 0) return { kind: "suffix" };
    if (levels < 0) return { kind: "missing", matchedDn: "" };
    const [rdn] = rdns;
    if (levels === 1 && resolveAttribute(rdn.type) === "mail") {
      const bytes = new TextEncoder().encode(rdn.value);
      const entry = book.lookup(bytes, 0, bytes.length);
      if (entry >= 0) return { kind: "person", entry };
    }
    return { kind: "missing", matchedDn: this.#directory.suffixDn };
  }

  /** Writes a SearchResultDone and counts its code; returns the outcome to count. */
  #done(
    output: ReplyBuffer,
    messageId: number,
    code: number,
    text: string,
    matchedDn = "",
    outcome: number = code === ResultCode.success ? Outcome.notFound : Outcome.badRequest,
    controls?: LdapControl[],
  ): number {
    writeSearchResultDone(output, messageId, code, matchedDn, text, controls);
    this.#countResult(code);
    return outcome;
  }

  #countOperation(kind: string): void {
    const index = OPERATION_INDEX.get(kind);
    if (index !== undefined) this.#counters[this.#directory.counters.operations + index]++;
  }

  #countResult(code: number): void {
    const index = RESULT_INDEX.get(code);
    if (index !== undefined) this.#counters[this.#directory.counters.results + index]++;
  }
}

function cookieKey(cookie: Uint8Array): string {
  return Array.from(cookie, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/**
 * The LDAP front end for a directory with `settings`, counting into the
 * counters at `counters` in each thread's row.
 *
 * @throws {InvalidDnError} when the base is not a DN.
 */
export function ldapFrontEnd(settings: LdapSettings, counters: LdapCounterLayout): FrontEnd {
  const directory = new Directory(settings, counters);
  const notice = (output: ReplyBuffer, code: number, text: string) => {
    writeNoticeOfDisconnection(output, code, text);
  };
  return {
    name: "ldap",
    connect: (row) => new LdapConversation(directory, row),
    prepare: (book) => void TextIndex.of(book),
    writeBusy: (output) =>
      notice(output, ResultCode.busy, "The server is at its connection limit; try again later."),
    writeForbidden: (output, reason) => notice(output, ResultCode.insufficientAccessRights, reason),
    writeTooManyConnections: (output, reason) => notice(output, ResultCode.busy, reason),
    writeProtocolError: (output, message) => notice(output, ResultCode.protocolError, message),
    writeGoodbye: (output) =>
      notice(output, ResultCode.unavailable, "The server is shutting down; connect again."),
  };
}
