/**
 * A person's SearchResultEntry, written from the book's bytes: the LDAP
 * front end's hot path when a search returns people. Every value is copied
 * from where it lies (the book's buffers, or the few a
 * {@linkcode BookSubject} fills for a split name) into the reply, with no
 * string, array or object made per entry; only a DN that needs escaping
 * (RFC 4514: `alan+work@example.com`) takes the string path.
 *
 * {@linkcode personAttributes} gives the same entry as values, in the same
 * order, for fixed callers and as the reference the tests hold the bytes to:
 * objectClass, cn, sn, givenName (when the entry has one), displayName, mail.
 *
 * ```ts ignore
 * const subject = BookSubject.of(book);
 * subject.load(entry);
 * writePersonEntry(output, messageId, subject, personEntryPlan(suffixDn, selection));
 * ```
 *
 * @module
 */

import {
  beginConstructed,
  BerTag,
  endConstructed,
  writeHeader,
  writeOctetRange,
  writeOctetString,
  writeString,
} from "./ber.ts";
import type { ReplyBuffer } from "./front_end.ts";
import { beginMessage, type EntryAttribute, LdapTag } from "./ldap_codec.ts";
import { dnValueNeedsEscape, escapeDnValue } from "./ldap_dn.ts";
import { type ByteRange, OBJECT_CLASSES, type TextAttribute } from "./ldap_filter.ts";
import type { BookSubject, LdapEntryAttributes } from "./ldap_search.ts";
import { decodeText } from "../common/utf8.ts";

const encoder = new TextEncoder();

/** One attribute of a person: its type, as sent, and the value it is served from (none: objectClass). */
interface PersonAttribute {
  readonly name: string;
  readonly type: Uint8Array;
  readonly value: TextAttribute | undefined;
}

/** A person's attributes in the order they are sent. */
const PERSON_ATTRIBUTES: readonly PersonAttribute[] = (
  [
    ["objectClass", undefined],
    ["cn", "cn"],
    ["sn", "sn"],
    ["givenName", "givenName"],
    ["displayName", "cn"],
    ["mail", "mail"],
  ] as const
).map(([name, value]) => ({ name, type: encoder.encode(name), value }));

const OBJECT_CLASS_BYTES = OBJECT_CLASSES.map((name) => encoder.encode(name));
const MAIL_RDN = encoder.encode("mail=");

/** What one search writes of each person, worked out once per search. */
export interface PersonEntryPlan {
  /** The directory's suffix, as UTF-8 after a `,`: what follows the RDN in every DN. */
  readonly dnTail: Uint8Array;
  /** The suffix, for a DN that takes the string path. */
  readonly suffixDn: string;
  /** The attributes sent, in order. */
  readonly attributes: readonly PersonAttribute[];
  /** Types only, no values (the search's typesOnly). */
  readonly typesOnly: boolean;
}

/** `,` and `suffixDn` as UTF-8, for {@linkcode personEntryPlan}: make it once per directory. */
export function dnTail(suffixDn: string): Uint8Array {
  return encoder.encode(`,${suffixDn}`);
}

/**
 * The plan for a search under `suffixDn` (whose {@linkcode dnTail} is
 * `tail`) that returns the attributes `selected` says yes to (by type
 * name), with values unless `typesOnly`.
 */
export function personEntryPlan(
  suffixDn: string,
  tail: Uint8Array,
  selected: (type: string) => boolean,
  typesOnly: boolean,
): PersonEntryPlan {
  return {
    dnTail: tail,
    suffixDn,
    attributes: PERSON_ATTRIBUTES.filter((attribute) => selected(attribute.name)),
    typesOnly,
  };
}

/** Where each value is read through, one at a time. */
const range: ByteRange = { bytes: new Uint8Array(0), start: 0, end: 0 };

/**
 * Appends the SearchResultEntry of the person `subject` is loaded with:
 * its DN, `mail=<address>,<suffix>`, and the attributes of `plan`.
 */
export function writePersonEntry(
  out: ReplyBuffer,
  messageId: number,
  subject: BookSubject,
  plan: PersonEntryPlan,
): void {
  const message = beginMessage(out, messageId);
  const entry = beginConstructed(out, LdapTag.searchResultEntry);
  writePersonDn(out, subject, plan);
  const list = beginConstructed(out, BerTag.sequence);
  for (const { type, value } of plan.attributes) {
    // Points the range at the value; a one-word name has no given name, left out as the values say.
    if (value !== undefined && !subject.served(value, range)) continue;
    const partial = beginConstructed(out, BerTag.sequence);
    writeOctetString(out, BerTag.octetString, type);
    const set = beginConstructed(out, BerTag.set);
    if (!plan.typesOnly) {
      if (value === undefined) {
        for (const name of OBJECT_CLASS_BYTES) writeOctetString(out, BerTag.octetString, name);
      } else {
        writeOctetRange(out, BerTag.octetString, range.bytes, range.start, range.end);
      }
    }
    endConstructed(out, set);
    endConstructed(out, partial);
  }
  endConstructed(out, list);
  endConstructed(out, entry);
  endConstructed(out, message);
}

/** The DN: copied as bytes, unless the address has a character RFC 4514 escapes. */
function writePersonDn(out: ReplyBuffer, subject: BookSubject, plan: PersonEntryPlan): void {
  subject.served("mail", range);
  const { bytes, start, end } = range;
  if (dnValueNeedsEscape(bytes, start, end)) {
    const dn = `mail=${escapeDnValue(decodeText(bytes, start, end))},${plan.suffixDn}`;
    writeString(out, BerTag.octetString, dn);
    return;
  }
  const tail = plan.dnTail;
  const length = MAIL_RDN.length + end - start + tail.length;
  writeHeader(out, BerTag.octetString, length);
  const into = out.reserve(length);
  let at = out.length;
  for (let i = 0; i < MAIL_RDN.length; i++) into[at++] = MAIL_RDN[i];
  for (let i = start; i < end; i++) into[at++] = bytes[i];
  for (let i = 0; i < tail.length; i++) into[at++] = tail[i];
  out.length = at;
}

/**
 * A person's attributes as values, in the order {@linkcode writePersonEntry}
 * sends them.
 */
export function personAttributes(values: LdapEntryAttributes): EntryAttribute[] {
  const attributes: EntryAttribute[] = [
    { type: "objectClass", values: values.objectClass },
    { type: "cn", values: [values.cn] },
    { type: "sn", values: [values.sn] },
  ];
  if (values.givenName !== undefined) {
    attributes.push({ type: "givenName", values: [values.givenName] });
  }
  attributes.push(
    { type: "displayName", values: [values.displayName] },
    { type: "mail", values: [values.mail] },
  );
  return attributes;
}
