/**
 * A small vCard reader (versions 2.1, 3.0 and 4.0) that pulls out just what
 * the address book needs: a name, the given name and surname (from N) and
 * the email addresses of every card, with the line each came from, plus
 * every problem found on the way. It does no
 * I/O: give it the text of a `.vcf` file. {@linkcode formatVCard} writes
 * contacts back out as 3.0 or 4.0 vCards.
 *
 * ```ts
 * import { formatVCard, parseVCards } from "./vcard.ts";
 *
 * const text = formatVCard([{ name: "Ada Example", emails: ["ada@example.com"] }], "4.0");
 * const { contacts, problems } = parseVCards(text);
 * // contacts: [{ name: "Ada Example", emails: ["ada@example.com"], line: 1, emailLines: [4] }]
 * // problems: []
 * ```
 *
 * Why our own parser: these npm packages were checked (2026-11) and none fits.
 * - vcf@2.1.2: does not decode QUOTED-PRINTABLE (a soft line break turned the
 *   next line into a bogus property), throws on the first error
 *   ("Unsupported version"), no line numbers.
 * - ical.js@2.2.1: throws a ParserError on the first bad line, including
 *   every 2.1 quoted-printable soft line break; no line numbers.
 * - vcard4-ts@0.4.1 and vcard4@4.0.5: version 4.0 only; vcard4-ts rejects
 *   2.1 bare parameters and QP continuation lines.
 * - vcard-parser@1.0.0: no QP decoding, no problem reports, no line numbers.
 * None reports all problems with line numbers, which the loader needs.
 *
 * @module
 */

/** One card that has a name, and the email addresses found on it (maybe none). */
export interface VCardContact {
  /** FN, or a name built from N when FN is missing or empty. Trimmed, never empty. */
  name: string;
  /** N's given names (joined with spaces), when it has any. Trimmed, never empty. */
  givenName?: string;
  /** N's family names (joined with spaces), when it has any. Trimmed, never empty. */
  surname?: string;
  /** Every EMAIL value in card order: unescaped, trimmed, a leading `mailto:` removed, not validated. */
  emails: string[];
  /** 1-based line of the card's BEGIN:VCARD. */
  line: number;
  /** 1-based line of each EMAIL property, parallel to `emails`. */
  emailLines: number[];
}

/** Something wrong in the text, at a 1-based line, described in a plain sentence. */
export interface VCardProblem {
  /** 1-based line the problem is about. */
  line: number;
  /** A sentence without the line number, for example "This line has no colon ...". */
  message: string;
}

/** Contacts and problems found by {@linkcode parseVCards}. */
export interface VCardParseResult {
  /** Cards that ended with END:VCARD, in file order (cards with emails but no name are left out). */
  contacts: VCardContact[];
  /** Every problem found, sorted by line. */
  problems: VCardProblem[];
}

/** What {@linkcode parseVCardLines} finds: as {@linkcode parseVCards}, and the line count. */
export interface VCardLinesResult extends VCardParseResult {
  /** How many lines the text has (its line breaks, when it ends with one). */
  lines: number;
}

const CR = 0x0d;
const SPACE = 0x20;
const TAB = 0x09;
const DQUOTE = 0x22;
const DOT = 0x2e;
const COLON = 0x3a;
const SEMICOLON = 0x3b;
const EQUALS = 0x3d;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const BOM = 0xfeff;
const ASCII_CASE_BIT = 0x20;

// Properties the reader acts on; everything else is skipped without building strings.
const PROP_OTHER = 0;
const PROP_BEGIN = 1;
const PROP_END = 2;
const PROP_VERSION = 3;
const PROP_FN = 4;
const PROP_N = 5;
const PROP_EMAIL = 6;
const PROP_AGENT = 7;

const ENCODING_NONE = 0;
const ENCODING_QUOTED_PRINTABLE = 1;
const ENCODING_BASE64 = 2;
const ENCODING_UNKNOWN = 3;

const KNOWN_ENCODINGS = "QUOTED-PRINTABLE, BASE64, B, 8BIT or 7BIT";
// Long enough for any real encoding or charset name, short enough to keep messages readable.
const MAX_QUOTED_PARAM_CHARS = 40;
const MAILTO = "mailto:";

// N components in the order they are spoken: Prefix Given Additional Family Suffix.
const N_FAMILY = 0;
const N_GIVEN = 1;
const N_ADDITIONAL = 2;
const N_PREFIX = 3;
const N_SUFFIX = 4;
const N_SPOKEN_ORDER = [N_PREFIX, N_GIVEN, N_ADDITIONAL, N_FAMILY, N_SUFFIX];

/** What the header of one content line says (reused for every line to avoid allocation). */
interface Header {
  kind: number;
  valueStart: number;
  encoding: number;
  encodingName: string;
  charset: string | undefined;
}

/**
 * Reads every vCard in `text` and returns their names and email addresses,
 * plus every problem found (it never stops at the first one).
 *
 * Accepts versions 2.1, 3.0 and 4.0; CRLF or LF line ends; a leading BOM;
 * folded lines (in 2.1 the folding whitespace is kept, as RFC 822 folding
 * says; in 3.0 and 4.0 it is removed); QUOTED-PRINTABLE (with soft line
 * breaks) and BASE64 values with a CHARSET (default UTF-8, falling back to
 * windows-1252 when the bytes are not UTF-8); groups such as `item1.EMAIL`;
 * parameters in any case, 2.1 bare ones included; and the escapes `\,` `\;`
 * `\:` `\n` `\N` `\\`. Nested 2.1 AGENT cards are skipped.
 *
 * A card without END:VCARD, or with EMAIL but no usable FN or N, yields a
 * problem and no contact. A card with a name and no EMAIL yields a contact
 * with no emails. Emails are not validated.
 */
export function parseVCards(text: string): VCardParseResult {
  const { contacts, problems } = parseVCardLines(text);
  return { contacts, problems };
}

/**
 * As {@linkcode parseVCards}, and also says how many lines the text has,
 * for a caller that gives a long file a piece at a time and counts on.
 */
export function parseVCardLines(text: string): VCardLinesResult {
  const contacts: VCardContact[] = [];
  const problems: VCardProblem[] = [];
  const length = text.length;
  const header: Header = {
    kind: PROP_OTHER,
    valueStart: 0,
    encoding: ENCODING_NONE,
    encodingName: "",
    charset: undefined,
  };

  let pos = length > 0 && text.charCodeAt(0) === BOM ? 1 : 0;
  let lineNumber = 0;

  let inCard = false;
  let cardLine = 0;
  let version21 = false;
  let name = "";
  // Where the N value is, read only if FN turns out to be missing or empty.
  let nSource: string | undefined;
  let nStart = 0;
  let nEnd = 0;
  // Created on the first EMAIL: `[]` followed by push() would reserve 17 slots per card.
  let emails: string[] | undefined;
  let emailLines: number[] | undefined;
  let agentWithoutValue = false;
  /** Whether the card's FN or N could not be decoded (and that was reported). */
  let nameUnreadable = false;
  let nestedDepth = 0;
  let outsideTextReported = false;

  while (pos < length) {
    // One physical line: [lineStart, lineEnd), without its CR LF.
    const lineStart = pos;
    const newline = text.indexOf("\n", pos);
    let lineEnd = newline < 0 ? length : newline;
    pos = newline < 0 ? length : newline + 1;
    if (lineEnd > lineStart && text.charCodeAt(lineEnd - 1) === CR) lineEnd--;
    lineNumber++;
    const line = lineNumber;
    if (isBlank(text, lineStart, lineEnd)) continue;

    // The logical line is source[start, end); it is only copied out when folded or needed.
    let source = text;
    let sourceEnd = lineEnd;
    let hasColon = scanHeader(source, lineStart, sourceEnd, header);
    if (!hasColon && pos < length && isFoldStart(text.charCodeAt(pos))) {
      // Rare: the header itself is folded, so unfold before looking for the colon.
      let joined = text.slice(lineStart, lineEnd);
      while (pos < length && isFoldStart(text.charCodeAt(pos))) {
        const start = pos;
        const end = lineEndAt(text, start);
        pos = nextLineAt(text, start);
        lineNumber++;
        joined += text.slice(version21 ? start : start + 1, end);
      }
      source = joined;
      sourceEnd = joined.length;
      hasColon = scanHeader(source, 0, sourceEnd, header);
    }
    const kind = hasColon ? header.kind : PROP_OTHER;
    const quotedPrintable = hasColon && header.encoding === ENCODING_QUOTED_PRINTABLE;

    // The value is source[valueStart, valueEnd) until a continuation line makes a copy necessary.
    let valueStart = hasColon ? header.valueStart : sourceEnd;
    let valueEnd = sourceEnd;
    let endsWithEquals = sourceEnd > 0 && source.charCodeAt(sourceEnd - 1) === EQUALS;
    while (pos < length) {
      const softBreak = quotedPrintable && endsWithEquals;
      if (!softBreak && !isFoldStart(text.charCodeAt(pos))) break;
      const start = pos;
      const end = lineEndAt(text, start);
      pos = nextLineAt(text, start);
      lineNumber++;
      if (kind !== PROP_OTHER) {
        let value = source.slice(valueStart, valueEnd);
        if (softBreak) value = value.slice(0, -1) + text.slice(start, end);
        else value += text.slice(version21 ? start : start + 1, end);
        source = value;
        valueStart = 0;
        valueEnd = value.length;
      }
      endsWithEquals = end > start && text.charCodeAt(end - 1) === EQUALS;
    }

    if (nestedDepth > 0) {
      if (kind === PROP_BEGIN && isVcard(source, valueStart, valueEnd)) nestedDepth++;
      else if (kind === PROP_END && isVcard(source, valueStart, valueEnd)) nestedDepth--;
      continue;
    }

    let beginsCard = false;
    if (!inCard) {
      if (kind === PROP_BEGIN && isVcard(source, valueStart, valueEnd)) {
        beginsCard = true;
        outsideTextReported = false;
      } else if (kind === PROP_END && isVcard(source, valueStart, valueEnd)) {
        problems.push({ line, message: "This END:VCARD has no BEGIN:VCARD before it." });
      } else if (!outsideTextReported) {
        problems.push({
          line,
          message: "This text is outside any card (not between BEGIN:VCARD and END:VCARD).",
        });
        outsideTextReported = true;
      }
    } else if (!hasColon) {
      problems.push({
        line,
        message: "This line has no colon, so it is not a vCard property (NAME:value).",
      });
      agentWithoutValue = false;
    } else if (header.encoding === ENCODING_UNKNOWN) {
      problems.push({
        line,
        message: `The encoding ${
          quoted(header.encodingName)
        } is unknown (expected ${KNOWN_ENCODINGS}).`,
      });
      agentWithoutValue = false;
    } else {
      const agentBefore = agentWithoutValue;
      agentWithoutValue = false;
      switch (kind) {
        case PROP_BEGIN:
          if (!isVcard(source, valueStart, valueEnd)) break;
          if (agentBefore) {
            nestedDepth = 1;
          } else {
            problems.push(unfinishedCard(cardLine));
            beginsCard = true;
          }
          break;
        case PROP_END: {
          if (!isVcard(source, valueStart, valueEnd)) break;
          inCard = false;
          const n = nSource === undefined
            ? undefined
            : splitUnescaped(nSource.slice(nStart, nEnd), SEMICOLON);
          if (name === "" && n !== undefined) name = nameFromN(n, version21);
          if (name === "" && emails !== undefined) {
            // A name that could not be decoded has been reported already, more exactly.
            if (nameUnreadable) break;
            problems.push({
              line: cardLine,
              message: `The card starting at line ${cardLine} has no name (FN or N).`,
            });
          } else {
            const contact: VCardContact = {
              name,
              emails: emails ?? [],
              line: cardLine,
              emailLines: emailLines ?? [],
            };
            if (n !== undefined) addNameParts(contact, n, version21);
            contacts.push(contact);
          }
          break;
        }
        case PROP_VERSION:
          version21 = isVersion21(source, valueStart, valueEnd);
          break;
        case PROP_AGENT:
          agentWithoutValue = isBlank(source, valueStart, valueEnd);
          break;
        case PROP_FN:
          if (name === "") {
            const decoded = decodeValue(
              source.slice(valueStart, valueEnd),
              header,
              line,
              problems,
              "FN",
            );
            if (decoded !== undefined) name = unescapeText(decoded).trim();
            else nameUnreadable = true;
          }
          break;
        case PROP_N:
          if (nSource !== undefined) break;
          if (header.encoding === ENCODING_NONE) {
            nSource = source;
            nStart = valueStart;
            nEnd = valueEnd;
          } else {
            nSource = decodeValue(source.slice(valueStart, valueEnd), header, line, problems, "N");
            if (nSource === undefined) nameUnreadable = true;
            nStart = 0;
            nEnd = nSource === undefined ? 0 : nSource.length;
          }
          break;
        case PROP_EMAIL: {
          const decoded = decodeValue(
            source.slice(valueStart, valueEnd),
            header,
            line,
            problems,
            "EMAIL",
          );
          if (decoded === undefined) break;
          let email = unescapeText(decoded).trim();
          if (startsWithIgnoringCase(email, MAILTO)) email = email.slice(MAILTO.length).trim();
          if (emails === undefined || emailLines === undefined) {
            emails = [email];
            emailLines = [line];
          } else {
            emails.push(email);
            emailLines.push(line);
          }
          break;
        }
      }
    }

    if (beginsCard) {
      inCard = true;
      cardLine = line;
      version21 = false;
      name = "";
      nSource = undefined;
      emails = undefined;
      emailLines = undefined;
      agentWithoutValue = false;
      nameUnreadable = false;
    }
  }

  if (inCard) problems.push(unfinishedCard(cardLine));
  // Problems about a whole card are found at its end; report everything in line order.
  problems.sort((a, b) => a.line - b.line);
  return { contacts, problems, lines: lineNumber };
}

function unfinishedCard(cardLine: number): VCardProblem {
  return {
    line: cardLine,
    message: `The card starting at line ${cardLine} has no END:VCARD line, so it was not read.`,
  };
}

function isFoldStart(code: number): boolean {
  return code === SPACE || code === TAB;
}

function lineEndAt(text: string, start: number): number {
  const newline = text.indexOf("\n", start);
  let end = newline < 0 ? text.length : newline;
  if (end > start && text.charCodeAt(end - 1) === CR) end--;
  return end;
}

function nextLineAt(text: string, start: number): number {
  const newline = text.indexOf("\n", start);
  return newline < 0 ? text.length : newline + 1;
}

function isBlank(text: string, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const code = text.charCodeAt(i);
    if (code !== SPACE && code !== TAB && code !== CR) return false;
  }
  return true;
}

/**
 * Finds the colon that ends the header (outside double quotes), the property
 * kind (ignoring any group prefix) and the ENCODING and CHARSET parameters.
 * Returns false when there is no such colon.
 */
function scanHeader(s: string, start: number, end: number, header: Header): boolean {
  header.encoding = ENCODING_NONE;
  header.encodingName = "";
  header.charset = undefined;
  let nameStart = start;
  let i = start;
  for (; i < end; i++) {
    const code = s.charCodeAt(i);
    if (code === COLON || code === SEMICOLON) break;
    if (code === DOT) nameStart = i + 1;
  }
  if (i >= end) return false;
  header.kind = propertyKind(s, nameStart, i);
  while (s.charCodeAt(i) === SEMICOLON) {
    const paramStart = i + 1;
    let equals = -1;
    let inQuotes = false;
    for (i = paramStart; i < end; i++) {
      const code = s.charCodeAt(i);
      if (code === DQUOTE) inQuotes = !inQuotes;
      else if (!inQuotes) {
        if (code === SEMICOLON || code === COLON) break;
        if (code === EQUALS && equals < 0) equals = i;
      }
    }
    if (i >= end) return false;
    readParameter(s, paramStart, equals, i, header);
  }
  header.valueStart = i + 1;
  return true;
}

function propertyKind(s: string, start: number, end: number): number {
  switch (end - start) {
    case 1:
      return equalsIgnoringCase(s, start, end, "n") ? PROP_N : PROP_OTHER;
    case 2:
      return equalsIgnoringCase(s, start, end, "fn") ? PROP_FN : PROP_OTHER;
    case 3:
      return equalsIgnoringCase(s, start, end, "end") ? PROP_END : PROP_OTHER;
    case 5:
      if (equalsIgnoringCase(s, start, end, "email")) return PROP_EMAIL;
      if (equalsIgnoringCase(s, start, end, "begin")) return PROP_BEGIN;
      return equalsIgnoringCase(s, start, end, "agent") ? PROP_AGENT : PROP_OTHER;
    case 7:
      return equalsIgnoringCase(s, start, end, "version") ? PROP_VERSION : PROP_OTHER;
    default:
      return PROP_OTHER;
  }
}

/**
 * Compares with `lower` (lower-case ASCII letters, digits, `-` and `:`) ignoring ASCII case by
 * OR-ing the case bit: exact for letters; a digit, `-` or `:` could also match one control
 * character, which no real vCard header contains.
 */
function equalsIgnoringCase(s: string, start: number, end: number, lower: string): boolean {
  if (end - start !== lower.length) return false;
  for (let i = 0; i < lower.length; i++) {
    if ((s.charCodeAt(start + i) | ASCII_CASE_BIT) !== lower.charCodeAt(i)) return false;
  }
  return true;
}

function startsWithIgnoringCase(s: string, lowerPrefix: string): boolean {
  return s.length >= lowerPrefix.length &&
    equalsIgnoringCase(s, 0, lowerPrefix.length, lowerPrefix);
}

function readParameter(s: string, start: number, equals: number, end: number, header: Header) {
  if (equals < 0) {
    // vCard 2.1 allows the value alone, as in `EMAIL;INTERNET;QUOTED-PRINTABLE:`.
    const encoding = encodingKind(s, start, end);
    if (encoding !== ENCODING_UNKNOWN) header.encoding = encoding;
    return;
  }
  const isEncoding = equalsIgnoringCase(s, start, equals, "encoding");
  const isCharset = !isEncoding && equalsIgnoringCase(s, start, equals, "charset");
  if (!isEncoding && !isCharset) return;
  let value = s.slice(equals + 1, end).trim();
  if (value.length >= 2 && value.charCodeAt(0) === DQUOTE) value = value.slice(1, -1).trim();
  if (isCharset) {
    header.charset = value;
    return;
  }
  header.encoding = encodingKind(value, 0, value.length);
  header.encodingName = value;
}

function encodingKind(s: string, start: number, end: number): number {
  if (equalsIgnoringCase(s, start, end, "quoted-printable")) return ENCODING_QUOTED_PRINTABLE;
  if (equalsIgnoringCase(s, start, end, "base64")) return ENCODING_BASE64;
  if (equalsIgnoringCase(s, start, end, "b")) return ENCODING_BASE64;
  if (equalsIgnoringCase(s, start, end, "8bit")) return ENCODING_NONE;
  if (equalsIgnoringCase(s, start, end, "7bit")) return ENCODING_NONE;
  return ENCODING_UNKNOWN;
}

function isVcard(s: string, start: number, end: number): boolean {
  while (start < end && isFoldStart(s.charCodeAt(start))) start++;
  while (end > start && isFoldStart(s.charCodeAt(end - 1))) end--;
  return equalsIgnoringCase(s, start, end, "vcard");
}

function isVersion21(s: string, start: number, end: number): boolean {
  while (start < end && isFoldStart(s.charCodeAt(start))) start++;
  while (end > start && isFoldStart(s.charCodeAt(end - 1))) end--;
  return end - start === 3 && s.startsWith("2.1", start);
}

function quoted(value: string): string {
  const shown = value.length > MAX_QUOTED_PARAM_CHARS
    ? value.slice(0, MAX_QUOTED_PARAM_CHARS) + "..."
    : value;
  return `"${shown}"`;
}

/** Undoes QUOTED-PRINTABLE or BASE64; reports and returns undefined when that is impossible. */
function decodeValue(
  value: string,
  header: Header,
  line: number,
  problems: VCardProblem[],
  propertyName: string,
): string | undefined {
  if (header.encoding === ENCODING_NONE) return value;
  let bytes: Uint8Array;
  if (header.encoding === ENCODING_QUOTED_PRINTABLE) {
    bytes = quotedPrintableBytes(value);
  } else {
    try {
      bytes = Uint8Array.from(atob(value.replace(/\s+/g, "")), (c) => c.charCodeAt(0));
    } catch {
      problems.push({ line, message: `The ${propertyName}'s BASE64 value is not valid.` });
      return undefined;
    }
  }
  return decodeBytes(bytes, header.charset, line, problems);
}

const decoders = new Map<string, TextDecoder>();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });
const windows1252 = new TextDecoder("windows-1252");

function decodeBytes(
  bytes: Uint8Array,
  charset: string | undefined,
  line: number,
  problems: VCardProblem[],
): string | undefined {
  if (charset === undefined || charset === "") {
    // No CHARSET: modern writers mean UTF-8, old Windows ones windows-1252; only UTF-8 can fail.
    try {
      return strictUtf8.decode(bytes);
    } catch {
      return windows1252.decode(bytes);
    }
  }
  const key = charset.toLowerCase();
  let decoder = decoders.get(key);
  if (decoder === undefined) {
    try {
      decoder = new TextDecoder(key);
    } catch {
      problems.push({ line, message: `The character set ${quoted(charset)} is unknown.` });
      return undefined;
    }
    decoders.set(key, decoder);
  }
  return decoder.decode(bytes);
}

const utf8Encoder = new TextEncoder();

/** `=XY` becomes byte 0xXY; a stray `=` is kept; other characters are UTF-8 encoded. */
function quotedPrintableBytes(value: string): Uint8Array {
  const bytes: number[] = [];
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i);
    if (code === EQUALS && i + 2 < value.length) {
      const high = hexDigit(value.charCodeAt(i + 1));
      const low = hexDigit(value.charCodeAt(i + 2));
      if (high >= 0 && low >= 0) {
        bytes.push(high * 16 + low);
        i += 2;
        continue;
      }
    }
    if (code < 0x80) {
      bytes.push(code);
    } else {
      const point = value.codePointAt(i)!;
      if (point > 0xffff) i++;
      for (const byte of utf8Encoder.encode(String.fromCodePoint(point))) bytes.push(byte);
    }
  }
  return Uint8Array.from(bytes);
}

function hexDigit(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  const lower = code | ASCII_CASE_BIT;
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10;
  return -1;
}

/** Undoes `\\` `\,` `\;` `\:` `\n` `\N`; any other backslash is kept as written. */
function unescapeText(value: string): string {
  let backslash = value.indexOf("\\");
  if (backslash < 0) return value;
  let out = "";
  let from = 0;
  while (backslash >= 0 && backslash + 1 < value.length) {
    const next = value.charCodeAt(backslash + 1);
    let replacement: string | undefined;
    if (next === 0x6e || next === 0x4e) replacement = "\n";
    else if (next === BACKSLASH || next === COMMA || next === SEMICOLON || next === COLON) {
      replacement = value[backslash + 1];
    }
    if (replacement === undefined) {
      backslash = value.indexOf("\\", backslash + 1);
      continue;
    }
    out += value.slice(from, backslash) + replacement;
    from = backslash + 2;
    backslash = value.indexOf("\\", from);
  }
  return out + value.slice(from);
}

/** Splits at `separator` unless it is escaped with a backslash; escapes are left in place. */
function splitUnescaped(value: string, separator: number): string[] {
  const parts: string[] = [];
  let from = 0;
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i);
    if (code === BACKSLASH) i++;
    else if (code === separator) {
      parts.push(value.slice(from, i));
      from = i + 1;
    }
  }
  parts.push(value.slice(from));
  return parts;
}

/**
 * N's components ("Family;Given;Additional;Prefix;Suffix", split) ->
 * "Prefix Given Additional Family Suffix", skipping empty parts.
 */
function nameFromN(components: string[], version21: boolean): string {
  const words: string[] = [];
  for (const index of N_SPOKEN_ORDER) words.push(...componentWords(components[index], version21));
  return words.join(" ");
}

/** Sets the contact's given name and surname from N's components, where they are not empty. */
function addNameParts(contact: VCardContact, components: string[], version21: boolean): void {
  const givenName = componentWords(components[N_GIVEN], version21).join(" ");
  const surname = componentWords(components[N_FAMILY], version21).join(" ");
  if (givenName !== "") contact.givenName = givenName;
  if (surname !== "") contact.surname = surname;
}

/**
 * The words of one N component, unescaped and trimmed, empty ones left out.
 * From 3.0 on a comma separates several values of one component (two given
 * names); 2.1 has no such lists, so its commas are kept.
 */
function componentWords(component: string | undefined, version21: boolean): string[] {
  if (component === undefined) return [];
  const words: string[] = [];
  for (const piece of version21 ? [component] : splitUnescaped(component, COMMA)) {
    const word = unescapeText(piece).trim();
    if (word !== "") words.push(word);
  }
  return words;
}

/** The longest content line a writer may produce, in UTF-8 octets, without the CRLF. */
export const MAX_LINE_OCTETS = 75;

/**
 * Writes contacts as vCards of the given version, with CRLF line ends and
 * lines folded at {@linkcode MAX_LINE_OCTETS} UTF-8 octets (never inside a
 * character). Each card gets FN, one EMAIL per address (3.0 adds
 * `TYPE=INTERNET`) and, in 3.0 where N is required, an N with the whole name
 * as family name. Text is escaped for the version: `\` `,` and newlines
 * always (CR LF and CR become newlines), `;` in 3.0 FN and in every N (4.0
 * only requires it in compound values). {@linkcode parseVCards} reads the
 * result back to the same contacts when names and emails are trimmed and
 * names are not empty.
 */
export function formatVCard(
  contacts: readonly { name: string; emails: readonly string[] }[],
  version: "3.0" | "4.0",
): string {
  const v3 = version === "3.0";
  const emailProperty = v3 ? "EMAIL;TYPE=INTERNET:" : "EMAIL:";
  let out = "";
  for (const contact of contacts) {
    out += `BEGIN:VCARD\r\nVERSION:${version}\r\n`;
    out += foldLine("FN:" + escapeText(contact.name, v3));
    if (v3) out += foldLine("N:" + escapeText(contact.name, true) + ";;;;");
    for (const email of contact.emails) out += foldLine(emailProperty + escapeText(email, v3));
    out += "END:VCARD\r\n";
  }
  return out;
}

function escapeText(value: string, escapeSemicolon: boolean): string {
  let out = "";
  for (let i = 0; i < value.length; i++) {
    const char = value[i];
    if (char === "\\") out += "\\\\";
    else if (char === ",") out += "\\,";
    else if (char === ";" && escapeSemicolon) out += "\\;";
    else if (char === "\r") {
      out += "\\n";
      if (value[i + 1] === "\n") i++;
    } else if (char === "\n") out += "\\n";
    else out += char;
  }
  return out;
}

/** Folds one logical line (given without CRLF) and returns it with CRLF after each piece. */
function foldLine(line: string): string {
  let out = "";
  let octets = 0;
  for (const char of line) {
    const size = utf8Length(char.codePointAt(0)!);
    if (octets + size > MAX_LINE_OCTETS) {
      // The leading space of a continuation line counts towards its octets.
      out += "\r\n ";
      octets = 1;
    }
    out += char;
    octets += size;
  }
  return out + "\r\n";
}

function utf8Length(codePoint: number): number {
  if (codePoint < 0x80) return 1;
  if (codePoint < 0x800) return 2;
  if (codePoint < 0x10000) return 3;
  return 4;
}
