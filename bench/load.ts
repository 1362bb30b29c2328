/**
 * Measures loading a book: how long it takes, how many rows a second, how
 * much memory the process keeps afterwards and how much it needed at the
 * peak, while loading and while reloading (the old and the new book side by
 * side, as a server holds them); and, with `--redis`, what a `redis-server`
 * holding the same entries takes, side by side.
 *
 * ```text
 * deno task gen --count 2000000 > /tmp/book.csv
 * deno task bench-load /tmp/book.csv --redis
 * deno task bench-load --quoted-field 4     # one 4 MB field of escaped quotes
 * deno task bench-load /tmp/book.csv --text-index   # and the LDAP substring index's memory
 * ```
 *
 * Each load runs in a fresh `deno` subprocess (this file, started with
 * `--child`), so one measurement never inherits another's heap. Memory is
 * read from `/proc/self/status`: VmRSS after a full garbage collection
 * (`--v8-flags=--expose-gc`, as the server task runs) for what is kept, and
 * VmHWM for the peak, reset with `/proc/self/clear_refs` before the reload.
 * Linux only; the child runs with `--allow-all`, which Deno requires for
 * reading `/proc/self`.
 *
 * @module
 */

import type { AddressBook } from "../book/addressbook.ts";
import { BOOK_FORMATS, type BookFormat } from "../book/format.ts";
import { bookFingerprint } from "../book/fingerprint.ts";
import { partitionByHash } from "../book/partition.ts";
import { TextIndex } from "../book/text_index.ts";
import {
  parseChoice,
  parseFlags,
  parseWholeNumber,
  UsageError,
  usageLine,
} from "../common/cli_args.ts";
import { csvField } from "../tools/gen.ts";
import { BookError, loadBook } from "../book/load.ts";
import { loadBookInThread } from "../book/load_thread.ts";
import { writeAll } from "../common/write_all.ts";

const USAGE = `Usage: deno task bench-load [options] FILE
       deno task bench-load --quoted-field MB

Loads the book FILE in a fresh process and prints the load time, rows per
second, the memory kept after loading and the peak memory while loading and
while reloading.

Options:
  --format F         read the file as ${BOOK_FORMATS.join(", ")} (default: from the extension)
  --thread           load with loadBookInThread (a worker), as a reloading server does
  --redis            also fill a redis-server with the same entries and print its memory
  --text-index       also build the LDAP substring index (book/text_index.ts) after
                     loading, and print its build time and the memory kept with it
  --quoted-field MB  load a made-up book whose one name is MB megabytes of escaped quotes
                     ("x""x""...), to show the CSV reader is linear in its input
  -h, --help         show this help`;

/** What the child process reports, as one JSON line. */
interface ChildReport {
  entries: number;
  fileBytes: number;
  loadMs: number;
  fingerprintMs: number;
  keptKb: number;
  peakKb: number;
  reloadPeakKb: number;
  /** With --text-index: how long the index took to build, its buffers' bytes, and RSS kept with it. */
  textIndex?: { buildMs: number; bytes: number; keptKb: number };
}

/** What was measured of Redis holding the same entries. */
interface RedisReport {
  fillMs: number;
  usedMemoryRss: number;
  usedMemory: number;
  emptyRss: number;
}

const KB = 1024;
const MB = 1024 * 1024;

/** Runs the command; returns the exit status. */
export async function main(args: string[]): Promise<number> {
  let values;
  let files: string[];
  try {
    ({ values, positionals: files } = parseFlags({
      args,
      options: {
        format: { type: "string" },
        thread: { type: "boolean" },
        redis: { type: "boolean" },
        "text-index": { type: "boolean" },
        "quoted-field": { type: "string" },
        child: { type: "boolean" },
        resp: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      allowPositionals: true,
    }));
  } catch (error) {
    if (error instanceof UsageError) return usageError(error.message);
    throw error;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  let format: BookFormat | undefined;
  let quotedMb: number | undefined;
  try {
    format = parseChoice("--format", values.format, BOOK_FORMATS);
    if (values["quoted-field"] !== undefined) {
      quotedMb = parseWholeNumber("--quoted-field", values["quoted-field"], 1, 256);
    }
  } catch (error) {
    if (error instanceof UsageError) return usageError(error.message);
    throw error;
  }
  if (values.child) {
    try {
      return await child(files[0], format, values.thread ?? false, values["text-index"] ?? false);
    } catch (error) {
      if (!(error instanceof BookError)) throw error;
      console.error(`bench-load: ${error.message}`);
      return 1;
    }
  }
  if (values.resp) return await writeResp(files[0], format);
  if (quotedMb !== undefined) return await benchQuotedField(quotedMb);
  if (files.length !== 1) return usageError("Name one book file to load.");
  return await benchFile(
    files[0],
    format,
    values.thread ?? false,
    values.redis ?? false,
    values["text-index"] ?? false,
  );
}

async function benchFile(
  file: string,
  format: BookFormat | undefined,
  thread: boolean,
  redis: boolean,
  textIndex: boolean,
): Promise<number> {
  const report = await runChild(file, format, thread, textIndex);
  if (report === undefined) return 1;
  const seconds = report.loadMs / 1000;
  console.log(
    `${file}: ${report.entries.toLocaleString("en")} entries, ${mb(report.fileBytes)} MB of file`,
  );
  console.log(
    `  load:        ${seconds.toFixed(2)} s, ` +
      `${Math.round(report.entries / seconds).toLocaleString("en")} rows/s ` +
      `(of which the fingerprint ${(report.fingerprintMs / 1000).toFixed(2)} s)`,
  );
  console.log(`  kept:        ${mb(report.keptKb * KB)} MB RSS after gc`);
  console.log(`  peak:        ${mb(report.peakKb * KB)} MB RSS while loading`);
  console.log(`  reload peak: ${mb(report.reloadPeakKb * KB)} MB RSS with the old book held`);
  if (report.textIndex !== undefined) {
    const { buildMs, bytes, keptKb } = report.textIndex;
    console.log(
      `  text index:  built in ${(buildMs / 1000).toFixed(2)} s, ${mb(bytes)} MB of buffers ` +
        `(${(bytes / report.entries).toFixed(1)} bytes/entry); kept with the book: ` +
        `${mb(keptKb * KB)} MB RSS after gc, ${
          (keptKb / report.keptKb).toFixed(2)
        }x the book alone`,
    );
  }
  if (!redis) return 0;
  const redisReport = await benchRedis(file, format);
  const rss = redisReport.usedMemoryRss;
  console.log(
    `  redis:       ${mb(rss)} MB used_memory_rss (${mb(redisReport.usedMemory)} MB used_memory, ` +
      `${mb(redisReport.emptyRss)} MB empty), filled in ${
        (redisReport.fillMs / 1000).toFixed(1)
      } s`,
  );
  const ratio = (kb: number) => (kb * KB / rss).toFixed(2);
  console.log(
    `  vs redis:    kept ${ratio(report.keptKb)}x, peak ${ratio(report.peakKb)}x, ` +
      `reload peak ${ratio(report.reloadPeakKb)}x (goals: 1.25x, 2x, 3x)`,
  );
  return 0;
}

async function benchQuotedField(megabytes: number): Promise<number> {
  const dir = await Deno.makeTempDir({ prefix: "bench_load_" });
  try {
    const file = `${dir}/quoted.csv`;
    const name = 'x"'.repeat(megabytes * MB / 3);
    await Deno.writeTextFile(
      file,
      `email,name\r\nquotes@example.com,${csvField(name)}\r\nb@example.com,B\r\n`,
    );
    const started = performance.now();
    const error = await loadBook(file).then(() => undefined, (error) => error);
    const ms = performance.now() - started;
    const outcome = error instanceof BookError ? error.problems[0].message : "loaded";
    const size = (await Deno.stat(file)).size;
    console.log(
      `A ${mb(size)} MB CSV whose one name field is ${megabytes} MB of "x""x""...": ` +
        `read in ${ms.toFixed(0)} ms (${outcome})`,
    );
    return 0;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Runs the measuring child process on the file; undefined after printing why it failed. */
async function runChild(
  file: string,
  format: BookFormat | undefined,
  thread: boolean,
  textIndex: boolean,
): Promise<ChildReport | undefined> {
  const args = [
    "run",
    // Deno lets only a process with every permission read its own /proc/self/status.
    "--allow-all",
    "--v8-flags=--expose-gc",
    import.meta.filename!,
    "--child",
    ...(format ? ["--format", format] : []),
    ...(thread ? ["--thread"] : []),
    ...(textIndex ? ["--text-index"] : []),
    file,
  ];
  const output = await new Deno.Command(Deno.execPath(), { args, stderr: "inherit" }).output();
  if (!output.success) {
    console.error(`bench-load: The loading process for ${file} failed.`);
    return undefined;
  }
  return JSON.parse(new TextDecoder().decode(output.stdout));
}

/**
 * The child: loads, collects garbage, measures (and, with `textIndex`,
 * builds the index and measures again), reloads holding the first book,
 * measures.
 */
async function child(
  file: string,
  format: BookFormat | undefined,
  thread: boolean,
  textIndex: boolean,
) {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error("The child needs --v8-flags=--expose-gc.");
  const load = thread ? loadBookInThread : loadBook;
  const started = performance.now();
  const first = await load(file, { format });
  const loadMs = performance.now() - started;
  await collectAll(gc);
  const keptKb = statusKb("VmRSS");
  const peakKb = statusKb("VmHWM");
  let indexReport: ChildReport["textIndex"];
  if (textIndex) {
    const building = performance.now();
    const index = TextIndex.build(first.book);
    const buildMs = performance.now() - building;
    await collectAll(gc);
    indexReport = { buildMs, bytes: index.byteLength, keptKb: statusKb("VmRSS") };
  }
  const fingerprintMs = timeFingerprint(first.book);
  await collectAll(gc);
  // "5" resets the peak (VmHWM) to the present RSS, so the next peak is the reload's own.
  Deno.writeTextFileSync("/proc/self/clear_refs", "5");
  const second = await load(file, { format });
  const reloadPeakKb = statusKb("VmHWM");
  const report: ChildReport = {
    entries: first.entries + 0 * second.entries,
    fileBytes: (await Deno.stat(file)).size,
    loadMs,
    fingerprintMs,
    keptKb,
    peakKb,
    reloadPeakKb,
    textIndex: indexReport,
  };
  console.log(JSON.stringify(report));
  return 0;
}

/**
 * Two full collections with a turn of the event loop between: a buffer's
 * memory goes back only once the collector has swept its object, which one
 * collection may leave to a background thread.
 */
async function collectAll(gc: () => void): Promise<void> {
  gc();
  await new Promise((resolve) => setTimeout(resolve, 0));
  gc();
}

/**
 * Hashes the book again as its build does (in the bucket order of
 * `book/partition.ts`), so the time measured is the fingerprint's
 * share of a load; the layout is made first and not timed.
 */
function timeFingerprint(book: AddressBook): number {
  const laidOut = partitionByHash(book.entries());
  const started = performance.now();
  const fingerprint = bookFingerprint(laidOut, laidOut.order);
  const ms = performance.now() - started;
  if (fingerprint !== book.fingerprint) throw new Error("The fingerprint came out different.");
  return ms;
}

function statusKb(field: string): number {
  const status = Deno.readTextFileSync("/proc/self/status");
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status);
  if (match === null) throw new Error(`/proc/self/status has no ${field}.`);
  return Number(match[1]);
}

/** Starts redis-server, fills it with the book's entries, reads its memory, stops it. */
async function benchRedis(file: string, format: BookFormat | undefined): Promise<RedisReport> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = String(listener.addr.port);
  listener.close();
  const server = new Deno.Command("redis-server", {
    args: ["--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  try {
    await waitForRedis(port);
    const emptyRss = infoField(await redisCli(port, ["INFO", "memory"]), "used_memory_rss");
    const started = performance.now();
    const resp = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-read",
        import.meta.filename!,
        "--resp",
        ...(format ? ["--format", format] : []),
        file,
      ],
      stdout: "piped",
    }).spawn();
    const cli = new Deno.Command("redis-cli", {
      args: ["-h", "127.0.0.1", "-p", port, "--pipe"],
      stdin: "piped",
      stdout: "null",
    }).spawn();
    await resp.stdout.pipeTo(cli.stdin);
    await resp.status;
    await cli.status;
    const fillMs = performance.now() - started;
    const info = await redisCli(port, ["INFO", "memory"]);
    return {
      fillMs,
      usedMemoryRss: infoField(info, "used_memory_rss"),
      usedMemory: infoField(info, "used_memory"),
      emptyRss,
    };
  } finally {
    await redisCli(port, ["SHUTDOWN", "NOSAVE"]).catch(() => "");
    await server.status;
  }
}

async function redisCli(port: string, args: string[]): Promise<string> {
  const output = await new Deno.Command("redis-cli", {
    args: ["-h", "127.0.0.1", "-p", port, ...args],
    stderr: "null",
  }).output();
  return new TextDecoder().decode(output.stdout);
}

async function waitForRedis(port: string): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt++) {
    if ((await redisCli(port, ["PING"])).trim() === "PONG") return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`redis-server did not answer on port ${port}.`);
}

function infoField(info: string, field: string): number {
  const match = new RegExp(`^${field}:(\\d+)`, "m").exec(info);
  if (match === null) throw new Error(`INFO memory has no ${field}.`);
  return Number(match[1]);
}

/** The child that writes the book's entries as Redis SET commands (RESP) to stdout. */
async function writeResp(file: string, format: BookFormat | undefined): Promise<number> {
  const { book } = await loadBook(file, { format });
  const { size } = book;
  const text = book.text;
  const out = new Uint8Array(4 * MB);
  const ascii = (text: string, at: number) => {
    for (let i = 0; i < text.length; i++) out[at++] = text.charCodeAt(i);
    return at;
  };
  let used = 0;
  for (let entry = 0; entry < size; entry++) {
    const keyStart = book.keyStart(entry);
    const keyEnd = book.keyEnd(entry);
    const nameStart = book.nameStart(entry);
    const nameEnd = book.nameEnd(entry);
    if (used + 64 + keyEnd - keyStart + nameEnd - nameStart > out.length) {
      await writeAll(Deno.stdout, out.subarray(0, used));
      used = 0;
    }
    used = ascii(`*3\r\n$3\r\nSET\r\n$${keyEnd - keyStart}\r\n`, used);
    for (let i = keyStart; i < keyEnd; i++) out[used++] = text[i];
    used = ascii(`\r\n$${nameEnd - nameStart}\r\n`, used);
    for (let i = nameStart; i < nameEnd; i++) out[used++] = text[i];
    used = ascii("\r\n", used);
  }
  await writeAll(Deno.stdout, out.subarray(0, used));
  return 0;
}

function mb(bytes: number): string {
  return (bytes / MB).toFixed(0);
}

function usageError(message: string): number {
  console.error(usageLine("bench-load", message));
  return 2;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
