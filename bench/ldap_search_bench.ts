/**
 * Measures LDAP search over a book in one thread, with no network: the
 * substring index's build time and size, then Thunderbird's autocomplete
 * filter `(|(cn=*K*)(mail=*K*)(givenName=*K*)(sn=*K*))` for several K, each
 * searched with the index and by a full scan, with Thunderbird's size
 * limit of 100: searches per second, median and p99 latency.
 *
 * ```sh
 * deno run -A bench/ldap_search_bench.ts --count 1000000          # a generated book (seed 1)
 * deno run -A bench/ldap_search_bench.ts --file /tmp/b1m.csv      # a book file
 * deno run -A bench/ldap_search_bench.ts --count 100000 --seconds 1 --no-scan
 * deno run -A bench/ldap_search_bench.ts --file book.csv --typed user473,user1234   # what to type
 * ```
 *
 * Each case runs for `--seconds` (and at least 3 searches); the scan of a
 * large book is slow by design, so its figures rest on few searches. Not a
 * test: it asserts nothing.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type AddressBook, AddressBookBuilder } from "../book/addressbook.ts";
import { loadBook } from "../book/load.ts";
import { drain, TextIndex } from "../book/text_index.ts";
import { generateEntries } from "../tools/gen.ts";
import type { LdapFilter } from "../wire/ldap_filter.ts";
import { planFilter, searchBook } from "../wire/ldap_search.ts";

/** Thunderbird's maxHits: the sizeLimit of its searches. */
const THUNDERBIRD_LIMIT = 100;

/** What each case types: inner fragments, digits, a rare mail piece, non-ASCII, two words, no match, short. */
const TYPED = ["ada", "lovelace.47", "473", "ZOË", "ada love", "user473", "jo", "q"];

/**
 * Thunderbird's default filter for what the user typed,
 * `(|(cn=*%v1*%v2-*)(mail=*%v*)(givenName=*%v1*)(sn=*%v*))`: %v is the
 * whole input, %v1 its first word, %v2- the words after it.
 */
export function thunderbirdFilter(typed: string): LdapFilter {
  const words = typed.trim().split(/\s+/);
  const rest = words.slice(1).join(" ");
  const sub = (attribute: string, any: string[]): LdapFilter => ({
    kind: "substrings",
    attribute,
    any: any.filter((part) => part !== ""),
  });
  return {
    kind: "or",
    filters: [
      sub("cn", [words[0], rest]),
      sub("mail", [typed]),
      sub("givenName", [words[0]]),
      sub("sn", [typed]),
    ],
  };
}

/** Latencies in milliseconds, as searches per second, median and p99. */
function summarise(times: number[]): { perSecond: number; p50: number; p99: number } {
  const sorted = times.toSorted((a, b) => a - b);
  const total = times.reduce((sum, time) => sum + time, 0);
  const at = (share: number) =>
    sorted[Math.min(sorted.length - 1, Math.floor(share * sorted.length))];
  return { perSecond: (1000 * times.length) / total, p50: at(0.5), p99: at(0.99) };
}

function timeSearches(
  book: AddressBook,
  index: TextIndex | undefined,
  filter: LdapFilter,
  seconds: number,
): { times: number[]; found: number; more: boolean; examined: number } {
  const times: number[] = [];
  let found = 0;
  let more = false;
  let examined = 0;
  const until = performance.now() + seconds * 1000;
  while (times.length < 3 || performance.now() < until) {
    const started = performance.now();
    const outcome = searchBook(book, index, { filter }, THUNDERBIRD_LIMIT);
    times.push(performance.now() - started);
    found = outcome.entries.length;
    more = outcome.more;
    examined = outcome.examined;
  }
  return { times, found, more, examined };
}

async function readBook(file: string | undefined, count: number): Promise<AddressBook> {
  if (file !== undefined) return (await loadBook(file)).book;
  const builder = new AddressBookBuilder(count);
  for (const { email, name } of generateEntries(count, 1)) builder.add(email, name);
  return builder.build();
}

const ms = (value: number) => value < 1 ? value.toFixed(3) : value.toFixed(1);

/** Runs the benchmark; returns the exit status. */
export async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      count: { type: "string", default: "100000" },
      file: { type: "string" },
      seconds: { type: "string", default: "2" },
      "no-scan": { type: "boolean" },
      typed: { type: "string" },
    },
    strict: true,
  });
  const seconds = Number(values.seconds);
  const count = Number(values.count);
  const loading = performance.now();
  const book = await readBook(values.file, count);
  const loadMs = performance.now() - loading;
  const building = performance.now();
  const index = TextIndex.build(book);
  const buildMs = performance.now() - building;
  const { distinct, stopped } = index.gramCounts;
  console.log(
    `${book.size.toLocaleString("en")} entries (${values.file ?? "generated, seed 1"}) in ` +
      `${(loadMs / 1000).toFixed(1)} s; index built in ${(buildMs / 1000).toFixed(2)} s: ` +
      `${(index.byteLength / 2 ** 20).toFixed(1)} MiB, ` +
      `${(index.byteLength / book.size).toFixed(1)} bytes/entry, ` +
      `${distinct.toLocaleString("en")} trigrams (${stopped} unstored)`,
  );
  console.log(
    "| typed | candidates (all) | examined | found (limit 100) | index: searches/s | p50 ms | p99 ms | scan: searches/s | p50 ms | p99 ms |",
  );
  console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const typed of values.typed?.split(",") ?? TYPED) {
    const filter = thunderbirdFilter(typed);
    const plan = planFilter(book, index, filter);
    const candidates = plan === undefined ? "scan" : drain(plan).length.toLocaleString("en");
    const withIndex = timeSearches(book, index, filter, seconds);
    const fast = summarise(withIndex.times);
    let scanColumns = "– | – | –";
    if (!values["no-scan"]) {
      const scan = summarise(timeSearches(book, undefined, filter, seconds).times);
      scanColumns = `${scan.perSecond.toFixed(1)} | ${ms(scan.p50)} | ${ms(scan.p99)}`;
    }
    console.log(
      `| ${typed} | ${candidates} | ${withIndex.examined} | ` +
        `${withIndex.found}${withIndex.more ? "+" : ""} | ${Math.round(fast.perSecond)} | ` +
        `${ms(fast.p50)} | ${ms(fast.p99)} | ${scanColumns} |`,
    );
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
