/**
 * The client's command line, `deno task client`: options, and the
 * one-shot, batch and interactive modes with their output and exit status.
 * The lookups themselves are {@linkcode Client}'s.
 *
 * @module
 */

import { parseFlags, parsePort, parseSeconds, UsageError, usageLine } from "../common/cli_args.ts";
import { ClientError, DEFAULT_TIMEOUT_MS, type Endpoint } from "./connection.ts";
import {
  Client,
  DEFAULT_HOSTNAME,
  DEFAULT_PORT,
  DEFAULT_ROUNDS,
  FIRST_BACKOFF_MS,
  MAX_BACKOFF_MS,
} from "./failover.ts";
import { parseHostList } from "./hosts.ts";
import process from "node:process";
import readline from "node:readline";
import { counted, describeError, sentence, whyUnreadable } from "../common/errors.ts";
import { DEFAULT_MAX_WAIT_MS } from "./pacing.ts";
import { escapeForTerminal } from "../common/terminal_text.ts";
import {
  type Reply,
  STATUS_BAD_REQUEST,
  STATUS_FORBIDDEN,
  STATUS_FOUND,
  STATUS_NAMES,
  STATUS_NOT_FOUND,
  STATUS_RATE_LIMITED,
} from "../protocol.ts";
import { resolveUserPath } from "../common/user_path.ts";
import { asksForVersion, versionLine } from "../common/version.ts";
import { writeAll } from "../common/write_all.ts";

/** The interactive prompt. */
const PROMPT = "addrbook> ";
/** Lines the interactive prompt remembers for the up and down keys. */
const HISTORY_LINES = 1000;
/** Characters of output gathered before they are written to stdout. */
const OUTPUT_CHUNK_CHARS = 65536;
/**
 * Characters kept of an input line with no end in sight. Anything this long
 * is already far over the query limit, so it is answered as too long
 * either way; keeping all of it would let one line fill the memory.
 */
const MAX_LINE_CHARS = 8192;
const MILLISECONDS_PER_SECOND = 1000;
const DEFAULT_TIMEOUT_S = DEFAULT_TIMEOUT_MS / MILLISECONDS_PER_SECOND;
const DEFAULT_MAX_WAIT_S = DEFAULT_MAX_WAIT_MS / MILLISECONDS_PER_SECOND;
/** Exit status when every address was found. */
export const EXIT_OK = 0;
/** Exit status when some address was not found. */
export const EXIT_NOT_FOUND = 1;
/**
 * Exit status on an error: bad usage, no server, a lost connection, a bad
 * request, a refusal (FORBIDDEN, RATE_LIMITED).
 */
export const EXIT_ERROR = 2;

/** The client's usage text, for `--help` and usage errors. */
export const USAGE = `Usage: deno task client [options] [EMAIL...]

Looks up email addresses on an addrbook server and prints the owners' names.

  EMAIL...   Look up each address. Prints each name found on stdout, and
             "not found: EMAIL" on stderr for each address that is not.
  no EMAIL, stdin a terminal:
             Interactive. Type an address at the "addrbook> " prompt; an empty
             line, "quit", "exit", Ctrl-D or Ctrl-C leaves. The arrow keys edit
             the line, and up and down recall the session's earlier lines.
  no EMAIL, stdin a pipe or file:
             Batch. One address per line; blank lines are skipped. Prints
             exactly one line per address, in input order: the name, or an
             empty line when the address is not found or is not an address
             (the reason goes to stderr with the line number). A summary of
             the misses goes to stderr.

Options:
  --host HOST[,HOST...]
                     the server, or several replicas to fail over between,
                     each host[:port] (IPv6 in brackets: [::1]:8080)
                     (default $ADDRBOOK_HOST, else ${DEFAULT_HOSTNAME})
  --port PORT        the port of every host given without one
                     (default $ADDRBOOK_PORT, else ${DEFAULT_PORT})
  --timeout SECONDS  wait this long for a connection, or for a whole reply (a
                     silent server is tried again, see Failover; one that sends
                     only part of a reply in time is not); 0 waits forever
                     (default ${DEFAULT_TIMEOUT_S})
  --json             print one JSON object per address instead, on stdout:
                     {"email":...,"status":"FOUND","name":...} or
                     {"email":...,"status":"NOT_FOUND"|"BAD_REQUEST"|...,"message":...}
  --tls              connect with TLS
  --ca FILE          trust this CA certificate (PEM) for TLS; implies --tls
  --cert FILE        present this client certificate (PEM) to a server that
                     asks for one; needs --key; implies --tls
  --key FILE         the private key (PEM) of --cert
  --max-wait SECONDS when the server answers RATE_LIMITED, pause and send the
                     refused queries again, so a batch finishes at the pace
                     the server allows; give up after this long with nothing
                     answered (default ${DEFAULT_MAX_WAIT_S})
  --no-wait          stop at the first RATE_LIMITED instead, saying where to resume
  --version          print the version and exit
  -h, --help         show this help

Failover: when a connection is refused, reset, closed with replies still
owed (a server draining for a restart) or silent past --timeout, the client
connects to the next host and sends again the queries that have no reply, so
the output stays complete and in order. After a round in which every host
failed it pauses (${FIRST_BACKOFF_MS} ms, doubling, at most ${MAX_BACKOFF_MS} ms); after ${DEFAULT_ROUNDS} such rounds
with no reply in between it gives up, saying how many queries were answered
and the input line to resume from.

Exit status: 0 when every address was found, 1 when any was not found,
2 on an error: bad usage, no server, a lost connection, a query that is not
an email address (BAD_REQUEST), or a refusal by the server (FORBIDDEN, or
RATE_LIMITED with --no-wait or past --max-wait), which stops the lookups.`;

/** What the command line chose. */
export interface CliOptions {
  /** The servers, in the order they are tried. */
  hosts: Endpoint[];
  /** Connect and reply timeout, in milliseconds; 0 waits forever. */
  timeoutMs: number;
  /** Print JSON lines instead of text. */
  json: boolean;
  /** Connect with TLS. */
  tls: boolean;
  /** A CA certificate file to trust, PEM. */
  caFile?: string;
  /** A client certificate file to present, PEM. */
  certFile?: string;
  /** The client certificate's private key file, PEM. */
  keyFile?: string;
  /** How long to pace a batch told RATE_LIMITED with nothing answered; 0 stops at once. */
  maxWaitMs: number;
  /** Addresses given on the command line; empty for interactive or batch mode. */
  emails: string[];
}

/** Reads an environment variable, or `undefined` when it is unset. */
export type EnvLookup = (name: string) => string | undefined;

/**
 * Parses the client's command line; `env` supplies ADDRBOOK_HOST and
 * ADDRBOOK_PORT, which the flags override.
 *
 * @throws {UsageError} for an unknown flag or a bad value.
 */
export function parseClientArgs(args: string[], env: EnvLookup = readEnv): CliOptions | "help" {
  const { values, positionals } = parseFlags({
    args,
    allowPositionals: true,
    options: {
      host: { type: "string" },
      port: { type: "string" },
      timeout: { type: "string" },
      json: { type: "boolean" },
      tls: { type: "boolean" },
      ca: { type: "string" },
      cert: { type: "string" },
      key: { type: "string" },
      "max-wait": { type: "string" },
      "no-wait": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) return "help";
  const portText = values.port ?? env("ADDRBOOK_PORT");
  const portSource = values.port !== undefined ? "--port" : "ADDRBOOK_PORT";
  const port = portText === undefined ? DEFAULT_PORT : parsePort(portSource, portText, 1);
  const hostText = values.host ?? env("ADDRBOOK_HOST") ?? DEFAULT_HOSTNAME;
  const hostSource = values.host !== undefined ? "--host" : "ADDRBOOK_HOST";
  let hosts;
  try {
    hosts = parseHostList(hostText, port);
  } catch (error) {
    throw new UsageError(`${hostSource}: ${describeError(error)}`);
  }
  if ((values.cert === undefined) !== (values.key === undefined)) {
    throw new UsageError(
      values.cert === undefined
        ? "--key needs --cert: give the client certificate it belongs to."
        : "--cert needs --key: give the certificate's private key.",
    );
  }
  return {
    hosts,
    timeoutMs: values.timeout === undefined
      ? DEFAULT_TIMEOUT_MS
      : parseSeconds("--timeout", values.timeout, { zero: true }),
    json: values.json ?? false,
    tls: (values.tls ?? false) || values.ca !== undefined || values.cert !== undefined,
    caFile: values.ca,
    certFile: values.cert,
    keyFile: values.key,
    maxWaitMs: maxWait(values["max-wait"], values["no-wait"] ?? false),
    emails: positionals,
  };
}

/** `--max-wait` in milliseconds, 0 with `--no-wait`. */
function maxWait(text: string | undefined, noWait: boolean): number {
  if (noWait && text !== undefined) {
    throw new UsageError("--no-wait and --max-wait contradict each other: give one.");
  }
  if (noWait) return 0;
  return text === undefined
    ? DEFAULT_MAX_WAIT_MS
    : parseSeconds("--max-wait", text, { zero: true });
}

/** Reads a variable only when already allowed, so a missing --allow-env never prompts. */
function readEnv(name: string): string | undefined {
  const { state } = Deno.permissions.querySync({ name: "env", variable: name });
  return state === "granted" ? Deno.env.get(name) : undefined;
}

/** What a PEM file given to a flag must hold, to be refused early with a clear message. */
const PEM_CONTENT: Record<string, { pattern: RegExp; what: string }> = {
  "--ca": { pattern: /-----BEGIN CERTIFICATE-----/, what: "a PEM certificate" },
  "--cert": { pattern: /-----BEGIN CERTIFICATE-----/, what: "a PEM certificate" },
  "--key": { pattern: /-----BEGIN [A-Z ]*PRIVATE KEY-----/, what: "a PEM private key" },
};

/** Reads the PEM file given to `flag`, or fails with one sentence naming the flag and the file. */
async function readPemFile(flag: string, typed: string): Promise<string> {
  const path = resolveUserPath(typed);
  const { state } = await Deno.permissions.query({ name: "read", path });
  if (state !== "granted") {
    throw new ClientError("usage", `Cannot read the ${flag} file ${typed}: run with --allow-read.`);
  }
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    const reason = whyUnreadable(error, typed, path);
    throw new ClientError("usage", `Cannot read the ${flag} file ${typed}: ${sentence(reason)}`);
  }
  const { pattern, what } = PEM_CONTENT[flag];
  if (!pattern.test(text)) {
    throw new ClientError("usage", `The ${flag} file ${typed} does not hold ${what}.`);
  }
  return text;
}

const encoder = new TextEncoder();

function printError(message: string): void {
  Deno.stderr.writeSync(encoder.encode(`client: ${message}\n`));
}

function printNote(line: string): void {
  Deno.stderr.writeSync(encoder.encode(`${line}\n`));
}

/**
 * Lines for stdout, gathered and written in large chunks. What is gathered is
 * also written once the program waits for anything (a timer of 0 ms runs only
 * then), so a slow stream of input still gets its answers promptly.
 */
class Output {
  readonly #file: { write(bytes: Uint8Array): Promise<number> };
  #pending = "";
  #writing: Promise<void> = Promise.resolve();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #error: unknown;
  #failed = false;

  constructor(file: { write(bytes: Uint8Array): Promise<number> }) {
    this.#file = file;
  }

  /** Adds a line; returns a promise to await when enough is pending to write now. */
  line(text: string): Promise<void> | undefined {
    if (this.#failed) throw this.#error;
    this.#pending += text + "\n";
    if (this.#pending.length >= OUTPUT_CHUNK_CHARS) return this.flush();
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      // A failure is kept and thrown to the next caller of line or flush.
      this.flush().catch(() => {});
    }, 0);
    return undefined;
  }

  /** Writes everything gathered; rejects if stdout cannot be written. */
  flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const text = this.#pending;
    this.#pending = "";
    if (text.length > 0) {
      this.#writing = this.#writing.then(async () => {
        if (this.#failed) return;
        try {
          await writeAll(this.#file, encoder.encode(text));
        } catch (error) {
          this.#failed = true;
          this.#error = error;
        }
      });
    }
    return this.#writing.then(() => {
      if (this.#failed) throw this.#error;
    });
  }
}

/**
 * One JSON line. The server's text (a name, a message) could come from an
 * older or another server and hold terminal escapes or direction overrides:
 * what JSON.stringify leaves raw (C1, DEL, the direction marks) is escaped
 * too, as plain lines escape every such character (common/terminal_text.ts).
 */
function jsonLine(email: string, reply: Reply): string {
  const status = STATUS_NAMES[reply.status];
  return escapeForTerminal(
    reply.status === STATUS_FOUND
      ? JSON.stringify({ email, status, name: reply.text })
      : JSON.stringify({ email, status, message: reply.text }),
  );
}

/** Whether the server refused to answer: the lookups stop there. */
function isRefusal(reply: Reply): boolean {
  return reply.status === STATUS_FORBIDDEN || reply.status === STATUS_RATE_LIMITED;
}

/** The one message for a refusal, without its final period so that more can follow. */
function refusalMessage(reply: Reply): string {
  const what = reply.status === STATUS_FORBIDDEN
    ? "Forbidden by the server"
    : "Rate limited by the server";
  return `${what}: ${sentence(escapeForTerminal(reply.text))}`;
}

/** `message` and then `more`, as one sentence. */
function andThen(message: string, more: string): string {
  return `${sentence(message).slice(0, -1)}; ${more}.`;
}

/** Counts of answers, for the exit status and the summary. */
class Tally {
  total = 0;
  notFound = 0;
  bad = 0;

  count(reply: Reply): void {
    this.total++;
    if (reply.status === STATUS_NOT_FOUND) this.notFound++;
    else if (reply.status === STATUS_BAD_REQUEST) this.bad++;
  }

  exitCode(): number {
    if (this.bad > 0) return EXIT_ERROR;
    return this.notFound > 0 ? EXIT_NOT_FOUND : EXIT_OK;
  }

  summarize(): void {
    if (this.notFound > 0) printError(`${this.notFound} of ${this.total} not found.`);
    if (this.bad > 0) {
      printError(
        `${this.bad} of ${this.total} ${
          this.bad === 1 ? "was a bad request" : "were bad requests"
        }.`,
      );
    }
  }
}

/** Yields the lines of a byte stream as they arrive, without their line ends. */
async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let rest = "";
  let overlong = false;
  for await (const chunk of stream) {
    const text = rest + decoder.decode(chunk, { stream: true });
    let start = 0;
    for (let end; (end = text.indexOf("\n", start)) >= 0; start = end + 1) {
      if (overlong) {
        overlong = false;
        yield text.slice(0, Math.min(end, MAX_LINE_CHARS));
      } else {
        yield text.slice(start, end);
      }
    }
    rest = text.slice(start);
    if (rest.length > MAX_LINE_CHARS) {
      rest = rest.slice(0, MAX_LINE_CHARS);
      overlong = true;
    }
  }
  rest += decoder.decode();
  if (rest.length > 0) yield rest.slice(0, MAX_LINE_CHARS);
}

/** A first-in first-out queue that stays small however many items pass through. */
class Queue<T> {
  #items: T[] = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(item: T): void {
    this.#items.push(item);
  }

  peek(): T | undefined {
    return this.#items[this.#head];
  }

  shift(): T {
    const item = this.#items[this.#head++];
    if (this.#head >= 1024 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }
}

/** The failure that ends a mode early, with where to resume; `main` prints it and exits 2. */
class Stopped extends Error {
  constructor(message: string) {
    super(message);
    this.name = "Stopped";
  }
}

async function connectFor(cli: CliOptions): Promise<Client> {
  const caCerts = cli.caFile === undefined ? undefined : [await readPemFile("--ca", cli.caFile)];
  const cert = cli.certFile === undefined ? undefined : await readPemFile("--cert", cli.certFile);
  const key = cli.keyFile === undefined ? undefined : await readPemFile("--key", cli.keyFile);
  return await Client.connect({
    hosts: cli.hosts,
    timeoutMs: cli.timeoutMs,
    tls: cli.tls,
    caCerts,
    cert,
    key,
    maxRateLimitWaitMs: cli.maxWaitMs,
  });
}

/** The note at the end of lookups the server's rate limit paced. */
function printPacing(client: Client): void {
  const pacing = client.pacing;
  if (pacing === undefined || pacing.waits === 0) return;
  printError(
    `Paced by the server's rate limit: ${counted(pacing.waits, "pause")}, ${
      formatSeconds(pacing.waitedMs)
    } in all.`,
  );
}

/** The refusal that stops the lookups, saying how long the client waited first, if it did. */
function stopMessage(client: Client, reply: Reply): string {
  const message = refusalMessage(reply);
  const pacing = client.pacing;
  if (reply.status !== STATUS_RATE_LIMITED || !pacing?.gaveUp) return message;
  return andThen(message, `still refused after waiting ${formatSeconds(pacing.waitedMs)}`);
}

function formatSeconds(ms: number): string {
  return `${(ms / MILLISECONDS_PER_SECOND).toFixed(1)} s`;
}

/** One-shot mode: the addresses on the command line. */
async function lookUpArguments(cli: CliOptions): Promise<number> {
  const client = await connectFor(cli);
  const out = new Output(Deno.stdout);
  const tally = new Tally();
  const count = cli.emails.length;
  /** Where to resume, for a failure after some were answered. */
  const resume = () =>
    count > 1 ? `${tally.total} of ${count} answered, resume from argument ${tally.total + 1}` : "";
  try {
    for await (const reply of client.lookupMany(cli.emails)) {
      const email = cli.emails[tally.total];
      if (isRefusal(reply)) {
        if (cli.json) await out.line(jsonLine(email, reply));
        const message = stopMessage(client, reply);
        throw new Stopped(count > 1 ? andThen(message, resume()) : message);
      }
      tally.count(reply);
      if (cli.json) {
        await out.line(jsonLine(email, reply));
      } else if (reply.status === STATUS_FOUND) {
        await out.line(escapeForTerminal(reply.text));
      } else {
        // Kept in order with the names when both go to a terminal.
        await out.flush();
        if (reply.status === STATUS_NOT_FOUND) printNote(`not found: ${email}`);
        else {printError(
            `Bad request for ${JSON.stringify(email)}: ${sentence(escapeForTerminal(reply.text))}`,
          );}
      }
    }
  } catch (error) {
    if (error instanceof ClientError && error.code !== "usage" && count > 1) {
      throw new Stopped(andThen(error.message, resume()));
    }
    throw error;
  } finally {
    client.close();
    await out.flush();
  }
  if (tally.total > 1) tally.summarize();
  printPacing(client);
  return tally.exitCode();
}

/** Batch mode: one address per line of stdin, one line of output per address. */
async function lookUpStdin(cli: CliOptions): Promise<number> {
  const out = new Output(Deno.stdout);
  const tally = new Tally();
  const asked = new Queue<{ email: string; line: number }>();
  let linesRead = 0;
  /** Where to resume: the line of the first query without a reply. */
  const resume = () =>
    `${tally.total} ${tally.total === 1 ? "query" : "queries"} answered, ` +
    `resume from input line ${asked.peek()?.line ?? linesRead + 1}`;
  async function* queries(): AsyncGenerator<string> {
    for await (const text of readLines(Deno.stdin.readable)) {
      const line = ++linesRead;
      const email = text.trim();
      if (email === "") continue;
      asked.push({ email, line });
      yield email;
    }
  }
  let client: Client | undefined;
  try {
    client = await connectFor(cli);
    for await (const reply of client.lookupMany(queries())) {
      const { email, line } = asked.peek()!;
      if (isRefusal(reply)) {
        if (cli.json) await out.line(jsonLine(email, reply));
        throw new Stopped(andThen(stopMessage(client, reply), resume()));
      }
      asked.shift();
      tally.count(reply);
      let written;
      if (cli.json) {
        written = out.line(jsonLine(email, reply));
      } else {
        written = out.line(reply.status === STATUS_FOUND ? escapeForTerminal(reply.text) : "");
        if (reply.status === STATUS_BAD_REQUEST) {
          printError(`Line ${line}: ${sentence(escapeForTerminal(reply.text))}`);
        }
      }
      if (written) await written;
    }
  } catch (error) {
    if (error instanceof ClientError && error.code !== "usage") {
      throw new Stopped(andThen(error.message, resume()));
    }
    throw error;
  } finally {
    client?.close();
    await out.flush();
  }
  tally.summarize();
  if (client !== undefined) printPacing(client);
  return tally.exitCode();
}

/**
 * The prompt's line editor: node:readline on the terminal, which gives the
 * arrow keys, Home/End, Ctrl-A/E/K/U/W and a history of the session's
 * lines (up and down), as redis-cli and ldapsearch users expect.
 */
function promptLines(): readline.Interface {
  const editor = readline.createInterface({
    input: process.stdin,
    output: process.stdout,
    terminal: true,
    prompt: PROMPT,
    historySize: HISTORY_LINES,
    removeHistoryDuplicates: true,
  });
  // In raw mode Ctrl-C is a key, not a signal: it leaves, as Ctrl-D does.
  editor.on("SIGINT", () => editor.close());
  return editor;
}

/** Interactive mode: a prompt on a terminal, with line editing and history. */
async function lookUpInteractively(cli: CliOptions): Promise<number> {
  const client = await connectFor(cli);
  const write = (text: string) => writeAll(Deno.stdout, encoder.encode(text));
  await write(
    `Connected to ${client.address}. Type an email address to look it up; ` +
      `an empty line, "quit" or Ctrl-D leaves.\n`,
  );
  const editor = promptLines();
  // Ctrl-D may close the editor while a lookup is awaited: no prompt after that.
  let closed = false;
  editor.on("close", () => closed = true);
  const lines = editor[Symbol.asyncIterator]();
  try {
    for (;;) {
      if (!closed) editor.prompt();
      const next = await lines.next();
      if (next.done) {
        await write("\n");
        break;
      }
      const email = next.value.trim();
      if (email === "" || email === "quit" || email === "exit") break;
      // The server closes connections left idle; the client connects again by itself.
      const reply = await client.lookup(email);
      if (cli.json) await write(jsonLine(email, reply) + "\n");
      else if (reply.status === STATUS_FOUND) await write(escapeForTerminal(reply.text) + "\n");
      else if (reply.status === STATUS_NOT_FOUND) await write(`not found: ${email}\n`);
      else if (isRefusal(reply)) await write(`${refusalMessage(reply)}\n`);
      else await write(`Bad request: ${sentence(escapeForTerminal(reply.text))}\n`);
    }
  } finally {
    client.close();
    editor.close();
  }
  return EXIT_OK;
}

/**
 * Runs the client's command line; resolves with the exit status (see
 * {@linkcode USAGE}). Expected failures are printed as one line on stderr.
 */
export async function main(args: string[]): Promise<number> {
  if (asksForVersion(args)) {
    console.log(versionLine("client"));
    return EXIT_OK;
  }
  let cli: CliOptions | "help";
  try {
    cli = parseClientArgs(args);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    Deno.stderr.writeSync(encoder.encode(`${usageLine("client", error.message)}\n`));
    return EXIT_ERROR;
  }
  if (cli === "help") {
    console.log(USAGE);
    return EXIT_OK;
  }
  try {
    if (cli.emails.length > 0) return await lookUpArguments(cli);
    if (Deno.stdin.isTerminal()) return await lookUpInteractively(cli);
    return await lookUpStdin(cli);
  } catch (error) {
    if (error instanceof ClientError || error instanceof Stopped) {
      printError(error.message);
      return EXIT_ERROR;
    }
    // Whoever reads our output has stopped (`| head`): there is no one left to tell.
    if (error instanceof Deno.errors.BrokenPipe) return EXIT_ERROR;
    throw error;
  }
}
