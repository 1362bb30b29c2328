/**
 * Generates a synthetic address book of fictional people, for load tests and
 * demos: `deno task gen --count 1000000 > book.csv`.
 *
 * Names combine first and last name lists (some non-ASCII, a few with a
 * comma or an apostrophe so quoting gets exercised); emails are unique and
 * use only the reserved example.com and example.org domains.
 *
 * ```ts
 * import { generateBook } from "./gen.ts";
 *
 * const text = [...generateBook({ count: 3, format: "csv", seed: 1 })].join("");
 * // "email,name\r\n" followed by three rows
 * ```
 *
 * @module
 */

import {
  orList,
  parseChoice,
  parseFlags,
  parseWholeNumber,
  UsageError,
  usageLine,
} from "../common/cli_args.ts";
import { MAX_UTF8_PER_UNIT } from "../common/utf8.ts";
import { formatVCard } from "../book/vcard.ts";
import { writeAll } from "../common/write_all.ts";

/**
 * The formats the generator writes, CSV first as the default. Each is one
 * the loader reads (`tools/gen_test.ts` checks); they are listed here rather than
 * taken from the loader's table of formats so that the benchmark, which
 * generates its books, does not import the loader and its readers.
 */
export const GEN_FORMATS = ["csv", "json", "vcard"] as const;

/** A format the generator writes. */
export type GenFormat = (typeof GEN_FORMATS)[number];

/** What to generate. */
export interface GenOptions {
  /** How many entries. */
  count: number;
  /** Output format; CSV by default. */
  format?: GenFormat;
  /** Seed for the name choices; the same seed gives the same book. Random when absent. */
  seed?: number;
}

/** One generated entry. */
export interface GenEntry {
  /** A unique address at example.com or example.org. */
  email: string;
  /** A fictional person's name. */
  name: string;
}

/** Entries per yielded chunk: big enough that writing is cheap, small enough to stay lean. */
const ENTRIES_PER_CHUNK = 4096;

/** The vCard version written; 4.0 is the current one. */
const VCARD_VERSION = "4.0";

const DOMAINS = ["example.com", "example.org"];

/** Display form and ASCII form (for the email) of each first name. */
const FIRST_NAMES: readonly (readonly [string, string])[] = [
  ["Ada", "ada"],
  ["Alan", "alan"],
  ["Grace", "grace"],
  ["Zoë", "zoe"],
  ["José", "jose"],
  ["Øyvind", "oyvind"],
  ["Åsa", "asa"],
  ["Björn", "bjorn"],
  ["Chloé", "chloe"],
  ["Siobhán", "siobhan"],
  ["Mei", "mei"],
  ["Hiroshi", "hiroshi"],
  ["Amara", "amara"],
  ["Kwame", "kwame"],
  ["Priya", "priya"],
  ["Rahul", "rahul"],
  ["Fatima", "fatima"],
  ["Omar", "omar"],
  ["Léa", "lea"],
  ["Mateo", "mateo"],
  ["Sofía", "sofia"],
  ["Lukas", "lukas"],
  ["Anja", "anja"],
  ["Dmitri", "dmitri"],
  ["Olga", "olga"],
  ["Tomasz", "tomasz"],
  ["Zofia", "zofia"],
  ["Noah", "noah"],
  ["Emma", "emma"],
  ["Liam", "liam"],
  ["Aoife", "aoife"],
  ["Ngozi", "ngozi"],
  ["Tariq", "tariq"],
  ["Ingrid", "ingrid"],
  ["Maëlle", "maelle"],
  ["Jürgen", "jurgen"],
];

const LAST_NAMES: readonly (readonly [string, string])[] = [
  ["Lovelace", "lovelace"],
  ["Turing", "turing"],
  ["Hopper", "hopper"],
  ["Müller", "muller"],
  ["Ñúñez", "nunez"],
  ["Østergaard", "ostergaard"],
  ["Lindqvist", "lindqvist"],
  ["Dubois", "dubois"],
  ["O'Sullivan", "osullivan"],
  ["Tanaka", "tanaka"],
  ["Okafor", "okafor"],
  ["Mensah", "mensah"],
  ["Sharma", "sharma"],
  ["Haddad", "haddad"],
  ["García", "garcia"],
  ["Rossi", "rossi"],
  ["Nowak", "nowak"],
  ["Kowalski", "kowalski"],
  ["Ivanova", "ivanova"],
  ["Schmidt", "schmidt"],
  ["Smith", "smith"],
  ["Brown", "brown"],
  ["Nguyen", "nguyen"],
  ["Kim", "kim"],
  ["Papadopoulos", "papadopoulos"],
  ["Fernández", "fernandez"],
  ["Åström", "astrom"],
  ["Van der Berg", "vanderberg"],
  ["Murphy", "murphy"],
  ["Yılmaz", "yilmaz"],
];

/** Names written whole, in scripts without a first/last split in the lists above. */
const WHOLE_NAMES: readonly (readonly [string, string])[] = [
  ["李小龙", "li.xiaolong"],
  ["王芳", "wang.fang"],
  ["佐藤 健", "sato.ken"],
  ["김민준", "kim.minjun"],
  ["Αλέξανδρος Παππάς", "alexandros.pappas"],
  ["Иван Петров", "ivan.petrov"],
];

/** One in this many names is written whole from {@linkcode WHOLE_NAMES}. */
const WHOLE_NAME_ONE_IN = 25;
/** One in this many names gets a ", Jr." suffix, which needs quoting in CSV. */
const SUFFIX_ONE_IN = 40;

/** A small, fast seeded PRNG (mulberry32); returns floats in [0, 1). */
function randomFrom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function pick<T>(list: readonly T[], random: () => number): T {
  return list[Math.floor(random() * list.length)];
}

/**
 * Yields `count` entries with unique emails. The same seed gives the same
 * entries; the index in each email keeps them unique.
 *
 * @throws {RangeError} when the count is not a non-negative safe integer.
 */
export function* generateEntries(count: number, seed?: number): Generator<GenEntry> {
  if (!Number.isSafeInteger(count) || count < 0) {
    throw new RangeError(`Count ${count} is not a non-negative whole number.`);
  }
  const random = randomFrom(seed ?? Math.floor(Math.random() * 2 ** 32));
  for (let i = 1; i <= count; i++) {
    const domain = DOMAINS[i & 1];
    if (random() * WHOLE_NAME_ONE_IN < 1) {
      const [name, slug] = pick(WHOLE_NAMES, random);
      yield { email: `${slug}.${i}@${domain}`, name };
      continue;
    }
    const [first, firstSlug] = pick(FIRST_NAMES, random);
    const [last, lastSlug] = pick(LAST_NAMES, random);
    const suffix = random() * SUFFIX_ONE_IN < 1 ? ", Jr." : "";
    yield { email: `${firstSlug}.${lastSlug}.${i}@${domain}`, name: `${first} ${last}${suffix}` };
  }
}

/** Quotes a CSV field when RFC 4180 needs it: a comma, a quote or a line break. */
export function csvField(text: string): string {
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/**
 * Yields the text of a generated book in chunks, to write one after another.
 * CSV has the header `email,name` and CRLF line ends (RFC 4180); JSON is an
 * object mapping each email to its name; vCard has one card per entry.
 */
export function* generateBook(options: GenOptions): Generator<string> {
  const format = options.format ?? "csv";
  const entries = generateEntries(options.count, options.seed);
  if (format === "csv") yield "email,name\r\n";
  if (format === "json") yield "{";
  let first = true;
  for (;;) {
    // next() by hand: breaking out of for-of would close the generator.
    const batch: GenEntry[] = [];
    while (batch.length < ENTRIES_PER_CHUNK) {
      const next = entries.next();
      if (next.done) break;
      batch.push(next.value);
    }
    if (batch.length === 0) break;
    // join, not +=: a long chain of concatenations is slow to flatten and keeps the GC busy.
    if (format === "csv") {
      yield batch.map(({ email, name }) => `${email},${csvField(name)}\r\n`).join("");
    } else if (format === "json") {
      yield (first ? "\n  " : ",\n  ") +
        batch.map(({ email, name }) => `${JSON.stringify(email)}: ${JSON.stringify(name)}`)
          .join(",\n  ");
      first = false;
    } else {
      yield formatVCard(batch.map(({ email, name }) => ({ name, emails: [email] })), VCARD_VERSION);
    }
    if (batch.length < ENTRIES_PER_CHUNK) break;
  }
  if (format === "json") yield first ? "}\n" : "\n}\n";
}

const USAGE = `Usage: deno task gen --count N [--format ${
  GEN_FORMATS.join("|")
}] [--seed S] > book.csv

Writes a synthetic address book of N fictional entries to standard output.

Options:
  --count N      how many entries (required)
  --format F     ${GEN_FORMATS[0]} (default), ${orList(GEN_FORMATS.slice(1))}
  --seed S       a whole number; the same seed gives the same names
  --help         show this help`;

/** Runs the command with its arguments; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseFlags({
      args,
      options: {
        count: { type: "string" },
        format: { type: "string", default: "csv" },
        seed: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      allowPositionals: false,
    }));
  } catch (error) {
    if (error instanceof UsageError) return usageError(error.message);
    throw error;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (values.count === undefined) return usageError("--count is required.");
  let count: number;
  let format: GenFormat;
  let seed: number | undefined;
  try {
    count = parseWholeNumber("--count", values.count, 0, Number.MAX_SAFE_INTEGER);
    format = parseChoice("--format", values.format, GEN_FORMATS) ?? "csv";
    seed = values.seed === undefined
      ? undefined
      : parseWholeNumber("--seed", values.seed, 0, Number.MAX_SAFE_INTEGER);
  } catch (error) {
    if (error instanceof UsageError) return usageError(error.message);
    throw error;
  }
  const encoder = new TextEncoder();
  let buffer = new Uint8Array(0);
  try {
    for (const chunk of generateBook({ count, format, seed })) {
      if (buffer.length < chunk.length * MAX_UTF8_PER_UNIT) {
        buffer = new Uint8Array(chunk.length * MAX_UTF8_PER_UNIT);
      }
      const { written } = encoder.encodeInto(chunk, buffer);
      await writeAll(Deno.stdout, buffer.subarray(0, written));
    }
  } catch (error) {
    // The reader went away (`gen ... | head`): nothing more to do.
    if (error instanceof Deno.errors.BrokenPipe) return 0;
    throw error;
  }
  return 0;
}

function usageError(message: string): number {
  console.error(usageLine("gen", message));
  return 2;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
