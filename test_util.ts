/**
 * Shared helpers for the server's socket-level tests: small books, an
 * in-process server with its log captured, and a raw TCP client that
 * writes any bytes and decodes what comes back with the real codec.
 *
 * Every wait here is bounded by a deadline, so a broken server fails a
 * test with a message instead of hanging it.
 *
 * ```ts
 * import { RawClient, withTestServer } from "./test_util.ts";
 *
 * await withTestServer({}, async ({ port }) => {
 *   const client = await RawClient.connect(port);
 *   try {
 *     const reply = await client.query("ada@example.com"); // { status: 0, text: "Ada Lovelace" }
 *   } finally {
 *     client.close();
 *   }
 * });
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import fc from "fast-check";
import { type AddressBook, AddressBookBuilder } from "./addressbook.ts";
import { emailProblem, normalizeEmail } from "./email.ts";
import { Logger, type LogLevel } from "./log.ts";
import {
  decodeReply,
  decodeUtf8,
  encodeQueries,
  encodeQuery,
  encodeReply,
  FrameDecoder,
  HEADER_SIZE,
  MAX_QUERY_BYTES,
  MAX_REPLY_BYTES,
  type Reply,
  STATUS_BAD_REQUEST,
  STATUS_FOUND,
  STATUS_NOT_FOUND,
  STATUS_PROTOCOL_ERROR,
  TYPE_QUERY,
  TYPE_REPLY,
  writeHeader,
} from "./protocol.ts";
import { BookError, loadBookFromBytes, type LoadOptions } from "./load_book.ts";
import { makeTestPki, type PemPair } from "./test_pki.ts";
import { writeAll } from "./write_all.ts";
import { type IoKind, type ServerHandle, type ServerOptions, startServer } from "./server.ts";

/** How long a test waits for any one event before it fails, in milliseconds. */
export const WAIT_MS = 10_000;

/** The address every test server listens on. */
export const LOOPBACK = "127.0.0.1";

/** The people of the small test book: normalised email and name. */
export const PEOPLE: readonly (readonly [string, string])[] = [
  ["ada@example.com", "Ada Lovelace"],
  ["grace.hopper@navy.example", "Grace Hopper"],
  ["alan@turing.example", "Alan Turing"],
  ["jürgen@beispiel.example", "Jürgen Möller"],
  ["linus+kernel@example.org", "Linus Torvalds"],
  ["margaret@apollo.example", "Margaret Hamilton 🚀"],
];

/** Builds a book from `[normalisedEmail, name]` pairs. */
export function makeBook(people: readonly (readonly [string, string])[] = PEOPLE): AddressBook {
  const builder = new AddressBookBuilder();
  for (const [email, name] of people) {
    assert.equal(builder.add(email, name), -1, "test books have no duplicate emails");
  }
  return builder.build();
}

/** A running in-process server, its port, and the log lines it wrote. */
export interface TestServer {
  /** The server's handle. */
  server: ServerHandle;
  /** The port it listens on. */
  port: number;
  /** Every line it logged, in order. */
  lines: string[];
}

/** Options for {@linkcode startTestServer}: server options, all optional, plus the log level. */
export type TestServerOptions = Partial<ServerOptions> & { logLevel?: LogLevel };

/**
 * Starts a server on 127.0.0.1, on a free port, serving {@linkcode PEOPLE}
 * unless told otherwise, with its log captured in memory.
 */
export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const lines: string[] = [];
  const { logLevel, ...rest } = options;
  const server = await startServer({
    book: makeBook(),
    hostname: "127.0.0.1",
    port: 0,
    log: new Logger({ level: logLevel ?? "info", write: (line) => lines.push(line) }),
    ...rest,
  });
  return { server, port: server.addr.port, lines };
}

/**
 * Runs `body` against a fresh test server, closes the server however the
 * body ends, then checks the log holds no personal data (nor `extraNames`).
 */
export async function withTestServer(
  options: TestServerOptions,
  body: (test: TestServer) => Promise<void>,
  extraNames: string[] = [],
): Promise<void> {
  const test = await startTestServer(options);
  try {
    await body(test);
  } finally {
    await test.server.close();
  }
  assertNoPersonalData(test.lines, extraNames);
}

/** Text shaped like an email address: something, `@`, something. */
const EMAIL_LIKE = /[\p{L}\p{N}._%+-]+@[\p{L}\p{N}-]+/u;

/**
 * Asserts that no log line holds something shaped like an email address,
 * nor a name from {@linkcode PEOPLE} or `extraNames`.
 */
export function assertNoPersonalData(lines: string[], extraNames: string[] = []): void {
  const names = [...PEOPLE.map(([, name]) => name), ...extraNames].map((n) => n.toLowerCase());
  for (const line of lines) {
    assert.ok(!EMAIL_LIKE.test(line), `a log line holds an email address: ${line}`);
    const lower = line.toLowerCase();
    for (const name of names) {
      assert.ok(!lower.includes(name), `a log line holds a name: ${line}`);
    }
  }
}

/** What a deadline helper rejects with when time runs out first. */
export class DeadlineError extends Error {
  override name = "DeadlineError";
}

/**
 * Resolves or rejects as `promise` does, or rejects with a
 * {@linkcode DeadlineError} once `ms` have passed, saying what was awaited;
 * `onTimeout` runs first, to end what would otherwise go on (kill a process,
 * close a socket).
 */
export async function withDeadline<T>(
  promise: Promise<T>,
  what: string,
  ms = WAIT_MS,
  onTimeout?: () => void,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout?.();
      reject(new DeadlineError(`Timed out after ${ms} ms waiting for ${what}.`));
    }, Math.max(0, ms));
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** How often {@linkcode waitFor} looks at its condition, in milliseconds. */
const POLL_MS = 10;

/**
 * Waits until `condition` holds, looking every few milliseconds, for state
 * that no event announces (a counter another thread updates).
 */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  what: string,
  ms = WAIT_MS,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) {
      throw new DeadlineError(`Timed out after ${ms} ms waiting for ${what}.`);
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

/**
 * Lets timers and socket events run. A client in the same process as the
 * server must call this between writes that the kernel takes at once: such a
 * write resolves without a trip through the event loop, so a tight write
 * loop would starve the server of its reads.
 */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** A frame of any type byte around any payload, valid or not. */
export function frame(type: number, payload: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(HEADER_SIZE + payload.length);
  writeHeader(bytes, 0, type, payload.length);
  bytes.set(payload, HEADER_SIZE);
  return bytes;
}

/** A bare frame header announcing `length` payload bytes. */
export function header(type: number, length: number): Uint8Array {
  const bytes = new Uint8Array(HEADER_SIZE);
  writeHeader(bytes, 0, type, length);
  return bytes;
}

/** Joins byte arrays into one. */
export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const joined = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    joined.set(part, offset);
    offset += part.length;
  }
  return joined;
}

/** Encodes many queries into one buffer, for a pipelining write. */
export { encodeQueries };

/** How a connection ended, seen from the client. */
export type Ending = "eof" | "reset";

const READ_SIZE = 65536;

/**
 * A client on a raw TCP socket: writes whatever bytes a test wants and
 * decodes the server's `R` frames with {@linkcode FrameDecoder}.
 */
export class RawClient {
  /** The socket. */
  readonly conn: Deno.TcpConn;
  readonly #decoder = new FrameDecoder({ type: TYPE_REPLY, maxPayload: MAX_REPLY_BYTES });
  readonly #buffer = new Uint8Array(READ_SIZE);
  #ending: Ending | undefined;
  #closed = false;

  private constructor(conn: Deno.TcpConn) {
    this.conn = conn;
    // Tests that write byte by byte mean separate segments.
    conn.setNoDelay(true);
  }

  /** Connects to the server on 127.0.0.1. */
  static async connect(port: number): Promise<RawClient> {
    return new RawClient(
      await withDeadline(Deno.connect({ hostname: "127.0.0.1", port }), `a connection to ${port}`),
    );
  }

  /** How the server ended the connection, once a read has seen it: a FIN or a reset. */
  get ending(): Ending | undefined {
    return this.#ending;
  }

  /** Writes all of `bytes`. */
  async write(bytes: Uint8Array): Promise<void> {
    let written = 0;
    while (written < bytes.length) {
      written += await this.conn.write(bytes.subarray(written));
    }
  }

  /** Sends one query and reads its reply. */
  async query(email: string): Promise<Reply> {
    await this.write(encodeQuery(email));
    const reply = await this.readReply();
    assert.ok(reply !== null, "the server closed the connection instead of replying");
    return reply;
  }

  /**
   * Reads the next reply frame; `null` when the server closed the
   * connection between frames.
   *
   * @throws when the connection ends inside a frame, the frame is malformed, or time runs out.
   */
  readReply(ms = WAIT_MS): Promise<Reply | null> {
    return withDeadline(this.#readReply(), "a reply frame", ms);
  }

  /** Reads exactly `count` replies; fails if the connection ends first. */
  readReplies(count: number, ms = WAIT_MS): Promise<Reply[]> {
    return withDeadline(
      (async () => {
        const replies: Reply[] = [];
        while (replies.length < count) {
          const reply = await this.#readReply();
          if (reply === null) {
            throw new Error(`The connection closed after ${replies.length} of ${count} replies.`);
          }
          replies.push(reply);
        }
        return replies;
      })(),
      `${count} replies`,
      ms,
    );
  }

  /** Reads every reply until the server closes the connection (a FIN or a reset). */
  readUntilClosed(ms = WAIT_MS): Promise<Reply[]> {
    return withDeadline(
      (async () => {
        const replies: Reply[] = [];
        for (let reply; (reply = await this.#readReply()) !== null;) replies.push(reply);
        return replies;
      })(),
      "the server to close the connection",
      ms,
    );
  }

  /** Half-closes: the server sees end of input, and the client can still read. */
  async closeWrite(): Promise<void> {
    await this.conn.closeWrite();
  }

  /** Closes the socket; safe to call more than once. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn.close();
    } catch {
      // Closed already by a failed operation.
    }
  }

  async #readReply(): Promise<Reply | null> {
    for (;;) {
      const payload = this.#decoder.next();
      if (payload !== null) return decodeReply(payload);
      if (this.#ending !== undefined) return this.#end();
      let received: number | null;
      try {
        received = await this.conn.read(this.#buffer);
      } catch (error) {
        if (!(error instanceof Deno.errors.ConnectionReset)) throw error;
        received = null;
        this.#ending = "reset";
      }
      if (received === null) {
        this.#ending ??= "eof";
        return this.#end();
      }
      // The decoder reads the chunk in place: give it a copy, as the buffer is reused.
      this.#decoder.push(this.#buffer.slice(0, received));
    }
  }

  #end(): null {
    if (this.#decoder.midFrame) {
      throw new Error(
        `The connection ended inside a reply frame, ${this.#decoder.buffered} bytes into it.`,
      );
    }
    return null;
  }
}

/**
 * Reads one sample from Prometheus text: `name` with exactly `labels`
 * (e.g. `{status="FOUND"}`); fails when the sample is missing.
 */
export function metricValue(text: string, name: string, labels = ""): number {
  const prefix = `${name}${labels} `;
  const line = text.split("\n").find((l) => l.startsWith(prefix));
  assert.ok(line !== undefined, `no sample ${name}${labels} in the metrics`);
  return Number(line.slice(prefix.length));
}

/** Waits until the server's metrics count exactly `count` open connections. */
export function waitForOpenConnections(
  server: ServerHandle,
  count: number,
  what: string,
): Promise<void> {
  return waitFor(
    () => metricValue(server.metrics(), "addrbook_connections_open") === count,
    what,
  );
}

// ---------------------------------------------------------------------------
// A model of the protocol, for property tests of the server and the session

/** A reply as the model predicts it: the status, and the name for FOUND. */
export interface ModelReply {
  /** The status code. */
  status: number;
  /** The name, for FOUND only. */
  text?: string;
}

const NAMES_BY_EMAIL = new Map(PEOPLE.map(([email, name]) => [email, name]));

/** What the server must answer to one complete query payload, by the protocol's rules. */
export function modelReply(payload: Uint8Array): ModelReply {
  const text = decodeUtf8(payload);
  if (text === undefined || emailProblem(text) !== undefined) return { status: STATUS_BAD_REQUEST };
  const name = NAMES_BY_EMAIL.get(normalizeEmail(text));
  return name === undefined ? { status: STATUS_NOT_FOUND } : { status: STATUS_FOUND, text: name };
}

/**
 * The replies a complete byte stream must get, in order: a reply per whole
 * query frame, until a frame of another type or an oversize length (a
 * PROTOCOL_ERROR, then nothing) or the end of the stream (an unfinished
 * frame gets nothing).
 */
export function modelReplies(stream: Uint8Array): ModelReply[] {
  const replies: ModelReply[] = [];
  let at = 0;
  while (at < stream.length) {
    if (stream[at] !== TYPE_QUERY) return [...replies, { status: STATUS_PROTOCOL_ERROR }];
    if (stream.length - at < HEADER_SIZE) break;
    const length = new DataView(stream.buffer, stream.byteOffset + at + 1, 4).getUint32(0);
    if (length > MAX_QUERY_BYTES) return [...replies, { status: STATUS_PROTOCOL_ERROR }];
    const end = at + HEADER_SIZE + length;
    if (end > stream.length) break;
    replies.push(modelReply(stream.subarray(at + HEADER_SIZE, end)));
    at = end;
  }
  return replies;
}

const knownQueryPiece = fc.tuple(
  fc.constantFrom(...PEOPLE.map(([email]) => email)),
  fc.boolean(),
  fc.constantFrom("", " ", "\t", " \r\n"),
  fc.constantFrom("", " ", "\n"),
).map(([email, upper, before, after]) =>
  encodeQuery(`${before}${upper ? email.toUpperCase() : email}${after}`)
);

const randomTextQueryPiece = fc.oneof(
  fc.emailAddress(),
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.constantFrom("", " ", "@", "a@", "@b", "a@b@c", "x y@z"),
).map((text) => encodeQuery(text));

const rawPayloadQueryPiece = fc.oneof(
  { arbitrary: fc.uint8Array({ maxLength: 60 }), weight: 10 },
  {
    arbitrary: fc.uint8Array({ minLength: MAX_QUERY_BYTES, maxLength: MAX_QUERY_BYTES }),
    weight: 1,
  },
).map((payload) => frame(TYPE_QUERY, payload));

const wrongTypePiece = fc.tuple(
  fc.integer({ min: 0, max: 255 }).filter((type) => type !== TYPE_QUERY),
  fc.uint8Array({ maxLength: 20 }),
).map(([type, payload]) => frame(type, payload));

const oversizePiece = fc.tuple(
  fc.integer({ min: MAX_QUERY_BYTES + 1, max: 0xffffffff }),
  fc.uint8Array({ maxLength: 20 }),
).map(([length, body]) => concat([header(TYPE_QUERY, length), body]));

const randomBytesPiece = fc.uint8Array({ minLength: 1, maxLength: 40 });

/**
 * One piece of a client's byte stream, for property tests: mostly valid
 * query frames (known, missing and malformed addresses, payloads of any
 * bytes up to the maximum), sometimes a frame of another type, an oversize
 * header or random bytes, so streams get some way before breaking.
 */
export const streamPiece: fc.Arbitrary<Uint8Array> = fc.oneof(
  { arbitrary: knownQueryPiece, weight: 6 },
  { arbitrary: randomTextQueryPiece, weight: 4 },
  { arbitrary: rawPayloadQueryPiece, weight: 2 },
  { arbitrary: wrongTypePiece, weight: 1 },
  { arbitrary: oversizePiece, weight: 1 },
  { arbitrary: randomBytesPiece, weight: 1 },
);

// ---------------------------------------------------------------------------
// Subprocesses: the server and the client run as real processes

/** The repository's directory, where the subprocesses run. */
export const REPO_DIR: string = import.meta.dirname!;

/** `deno task server` without the `deno`: the server runs with what the task grants, no more. */
export const SERVER_FLAGS: readonly string[] = JSON.parse(
  await Deno.readTextFile(`${REPO_DIR}/deno.json`),
).tasks.server.split(/\s+/).slice(1);

/** Bounds a start: the first one may also compile and load npm packages from the cache. */
export const START_DEADLINE_MS = 30_000;

/** Bounds waiting for any one event (a log line, a reply, an exit), so a bug fails instead of hanging. */
export const EVENT_DEADLINE_MS = 15_000;

/** The server's start line: group 1 is `tls://` over TLS, 2 the hostname, 3 the port. */
export const LISTENING = /listening on (tls:\/\/)?(\S+):(\d+)/;

/**
 * The event loops the server can serve plain TCP with: epoll when the task
 * grants FFI on Linux (what `--io auto` picks there), and Deno.listen (the
 * only one for TLS).
 */
export const IO_LOOPS: readonly string[] = [
  ...(Deno.build.os === "linux" && SERVER_FLAGS.includes("--allow-ffi") ? ["epoll"] : []),
  "deno",
];

/**
 * Registers `fn` as one test per event loop of {@linkcode IO_LOOPS}, each
 * named with the loop as ` [--io epoll]` and ` [--io deno]`, so that a
 * difference between the loops fails a test.
 */
export function testOnEachLoop(name: string, fn: (io: IoKind) => Promise<void>): void {
  for (const io of IO_LOOPS) Deno.test(`${name} [--io ${io}]`, () => fn(io as IoKind));
}

/** Makes a temp dir, named with `prefix`, that is removed on disposal. */
export async function tempDir(prefix: string): Promise<AsyncDisposable & { path: string }> {
  const path = await Deno.makeTempDir({ prefix });
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

/** Writes a CSV book of `rows` (under an `email,name` header) in `dir` and returns its path. */
export async function writeCsvBook(
  dir: string,
  rows: readonly (readonly [string, string])[],
  name = "book.csv",
): Promise<string> {
  const path = `${dir}/${name}`;
  await Deno.writeTextFile(path, ["email,name", ...rows.map((row) => row.join(","))].join("\n"));
  return path;
}

/** Asserts that a process printed no stack trace nor uncaught error. */
export function assertNoStackTrace(stderr: string): void {
  assert.doesNotMatch(stderr, /^\s+at /m, "a stack trace was printed");
  assert.doesNotMatch(stderr, /Uncaught/, "an uncaught error was printed");
}

/** The message of a log line: `msg` of a JSON line, else the whole line. */
function messageOf(line: string): string {
  if (line.startsWith("{")) {
    try {
      const parsed = JSON.parse(line);
      if (typeof parsed?.msg === "string") return parsed.msg;
    } catch {
      // Not JSON after all: match the raw line.
    }
  }
  return line;
}

/** A line {@linkcode LineCollector.waitFor} found, where, and what matched. */
export interface FoundLine {
  /** The whole line. */
  line: string;
  /** Its index in {@linkcode LineCollector.lines}. */
  index: number;
  /** The match of the pattern against the line's message. */
  match: RegExpExecArray;
}

/** The lines of a stream, gathered as they arrive, with a way to await one. */
export class LineCollector {
  /** Every whole line so far, in order. */
  readonly lines: string[] = [];
  /** Settles when the stream has ended and every line is in {@linkcode lines}. */
  readonly done: Promise<void>;
  #ended = false;
  #waiters: (() => void)[] = [];

  /** Starts reading `stream` at once. */
  constructor(stream: ReadableStream<Uint8Array>) {
    this.done = this.#read(stream);
  }

  /** The lines so far, joined. */
  get text(): string {
    return this.lines.join("\n");
  }

  /**
   * Waits for a line at or after index `from` whose message (`msg` of a JSON
   * line, else the line) matches `pattern`.
   */
  async waitFor(pattern: RegExp, from = 0, deadlineMs = EVENT_DEADLINE_MS): Promise<FoundLine> {
    const deadline = Date.now() + deadlineMs;
    for (let i = from;;) {
      for (; i < this.lines.length; i++) {
        const match = pattern.exec(messageOf(this.lines[i]));
        if (match) return { line: this.lines[i], index: i, match };
      }
      if (this.#ended) {
        throw new Error(
          `The server's stderr ended with no line matching ${pattern}:\n${this.text}`,
        );
      }
      const changed = new Promise<void>((resolve) => this.#waiters.push(resolve));
      await withDeadline(
        changed,
        `a line matching ${pattern}:\n${this.text}`,
        deadline - Date.now(),
      );
    }
  }

  async #read(stream: ReadableStream<Uint8Array>): Promise<void> {
    let rest = "";
    try {
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        const parts = (rest + chunk).split("\n");
        rest = parts.pop()!;
        this.lines.push(...parts);
        this.#wake();
      }
    } finally {
      if (rest !== "") this.lines.push(rest);
      this.#ended = true;
      this.#wake();
    }
  }

  #wake(): void {
    for (const waiter of this.#waiters.splice(0)) waiter();
  }
}

/** How a process ended and all it printed. */
export interface ProcessOutput {
  /** The exit code. */
  code: number;
  /** All of stdout. */
  stdout: string;
  /** All of stderr. */
  stderr: string;
}

/** A `deno` subprocess run in {@linkcode REPO_DIR}; disposing of it kills it and waits for it. */
export class Subprocess implements AsyncDisposable {
  /** The process. */
  readonly child: Deno.ChildProcess;
  /** Its stderr, line by line. */
  readonly stderr: LineCollector;
  /** All of its stdout, once it has ended. */
  readonly stdout: Promise<string>;

  /** Spawns `deno` (this very executable) with `args`. */
  constructor(args: readonly string[]) {
    this.child = new Deno.Command(Deno.execPath(), {
      args: [...args],
      cwd: REPO_DIR,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.stderr = new LineCollector(this.child.stderr);
    this.stdout = new Response(this.child.stdout).text();
  }

  /** Sends `signal` to the process. */
  signal(signal: Deno.Signal): void {
    this.child.kill(signal);
  }

  /** Waits for the process to exit on its own (killing it at the deadline), and its output to end. */
  async exit(deadlineMs = EVENT_DEADLINE_MS): Promise<Deno.CommandStatus> {
    const status = await withDeadline(
      this.child.status,
      "the process to exit",
      deadlineMs,
      () => this.#kill(),
    );
    await this.stderr.done;
    await this.stdout;
    return status;
  }

  /** Like {@linkcode exit}, bounded as a start is, and returns the code and all the output. */
  async output(deadlineMs = START_DEADLINE_MS): Promise<ProcessOutput> {
    const { code } = await this.exit(deadlineMs);
    return { code, stdout: await this.stdout, stderr: this.stderr.text };
  }

  /** Kills the process and waits for it and its output to end. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.#kill();
    await this.child.status;
    await this.stderr.done;
    await this.stdout;
  }

  #kill(): void {
    try {
      this.child.kill("SIGKILL");
    } catch {
      // It has exited already.
    }
  }
}

/** A `server.ts` subprocess run with {@linkcode SERVER_FLAGS}. */
export class ServerProcess extends Subprocess {
  /** Where it listens, from its start line. */
  hostname = "";
  /** The port it listens on, from its start line. */
  port = 0;
  /** Whether the start line says `tls://`. */
  tls = false;
  /** The line that said where it listens. */
  startLine = "";

  /** Spawns `server.ts` with `args`, adding `--port 0` unless a port is given. */
  constructor(args: readonly string[]) {
    const withPort = args.includes("--port") ? args : ["--port", "0", ...args];
    super([...SERVER_FLAGS, ...withPort]);
  }

  /** Spawns a server and waits until it says where it listens (and that it honours `--io`). */
  static async start(args: readonly string[]): Promise<ServerProcess> {
    const server = new ServerProcess(args);
    try {
      const { line, match } = await server.stderr.waitFor(LISTENING, 0, START_DEADLINE_MS);
      server.startLine = line;
      const io = args.indexOf("--io");
      if (io >= 0) {
        assert.match(line, new RegExp(`\\bio"?[=:]"?${args[io + 1]}\\b`), "--io is honoured");
      }
      server.tls = match[1] !== undefined;
      server.hostname = match[2];
      server.port = Number(match[3]);
      return server;
    } catch (error) {
      await server[Symbol.asyncDispose]();
      throw error;
    }
  }

  /** Connects a plain {@linkcode ProtocolClient} to where the server listens. */
  connect(): Promise<ProtocolClient> {
    return ProtocolClient.connect(this.hostname, this.port);
  }
}

/** Runs the server until it exits by itself, as for a bad command line, book or certificate. */
export async function runServerToExit(args: readonly string[]): Promise<ProcessOutput> {
  await using server = new ServerProcess(args);
  return await server.output();
}

/**
 * A protocol client on one plain or TLS connection, for servers in other
 * processes: every read is bounded by {@linkcode EVENT_DEADLINE_MS}, and a
 * reset is thrown rather than taken as the end. Disposing of it closes the
 * connection.
 */
export class ProtocolClient implements Disposable {
  /** The connection. */
  readonly conn: Deno.Conn;
  readonly #decoder = new FrameDecoder({ type: TYPE_REPLY, maxPayload: MAX_REPLY_BYTES });
  readonly #buffer = new Uint8Array(READ_SIZE);
  #closed = false;

  /** Wraps a connection made elsewhere. */
  constructor(conn: Deno.Conn) {
    this.conn = conn;
  }

  /** Connects over plain TCP. */
  static async connect(hostname: string, port: number): Promise<ProtocolClient> {
    return new ProtocolClient(await Deno.connect({ hostname, port }));
  }

  /** Connects with TLS to 127.0.0.1, checking the certificate against `serverName`. */
  static async tls(serverName: string, port: number, caPem: string): Promise<ProtocolClient> {
    if (serverName === LOOPBACK) {
      return new ProtocolClient(
        await Deno.connectTls({ hostname: LOOPBACK, port, caCerts: [caPem] }),
      );
    }
    // A name is checked over a connection to 127.0.0.1, so the test does not
    // depend on whether this machine resolves "localhost" to 127.0.0.1 or ::1.
    const tcp = await Deno.connect({ hostname: LOOPBACK, port });
    return new ProtocolClient(await Deno.startTls(tcp, { hostname: serverName, caCerts: [caPem] }));
  }

  /** Writes all of `bytes`. */
  async send(bytes: Uint8Array): Promise<void> {
    for (let written = 0; written < bytes.length;) {
      written += await this.conn.write(bytes.subarray(written));
    }
  }

  /** The next reply, or null at the end of the stream. */
  async next(): Promise<Reply | null> {
    for (;;) {
      const payload = this.#decoder.next();
      if (payload !== null) return decodeReply(payload);
      const received = await this.read();
      if (received === null) {
        if (this.#decoder.midFrame) throw new Error("The server closed the connection mid-reply.");
        return null;
      }
      this.#decoder.push(received);
    }
  }

  /** The next bytes received, or null at the end of the stream; closes the connection at the deadline. */
  async read(): Promise<Uint8Array | null> {
    const received = await withDeadline(
      this.conn.read(this.#buffer),
      "bytes from the server",
      EVENT_DEADLINE_MS,
      () => this.close(),
    );
    return received === null ? null : this.#buffer.slice(0, received);
  }

  /** Sends one query and reads its reply. */
  async ask(email: string): Promise<Reply> {
    await this.send(encodeQuery(email));
    const reply = await this.next();
    if (reply === null) throw new Error("The server closed the connection instead of replying.");
    return reply;
  }

  /** Every reply until the server closes the connection. */
  async untilEnd(): Promise<Reply[]> {
    const replies: Reply[] = [];
    for (let reply; (reply = await this.next()) !== null;) replies.push(reply);
    return replies;
  }

  /** Closes the connection; safe to call more than once. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.conn.close();
  }

  /** Closes the connection. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/** Connects a {@linkcode RawClient} to `port`, runs `body` with it, and closes it however the body ends. */
export async function withRawClient<T>(
  port: number,
  body: (client: RawClient) => Promise<T>,
): Promise<T> {
  const client = await RawClient.connect(port);
  try {
    return await body(client);
  } finally {
    client.close();
  }
}

/**
 * {@linkcode withTestServer} with one {@linkcode RawClient} connected to the
 * server for `body`; the client is closed before the server.
 */
export function withTestClient(
  options: TestServerOptions,
  body: (client: RawClient, test: TestServer) => Promise<void>,
  extraNames: string[] = [],
): Promise<void> {
  return withTestServer(
    options,
    (test) => withRawClient(test.port, (client) => body(client, test)),
    extraNames,
  );
}

// ---------------------------------------------------------------------------
// Files that change under a watching server

/**
 * Updates a ConfigMap-style volume as the kubelet does: the files go into a
 * new timestamped folder, a `..data_tmp` symlink to it is renamed over
 * `..data`, and the old folder is deleted. The first update also makes
 * `..data` and each file's link into it (`book.csv -> ..data/book.csv`).
 */
export async function swapConfigMap(
  volume: string,
  stamp: string,
  files: Record<string, string>,
): Promise<void> {
  const folder = `..${stamp}`;
  await Deno.mkdir(`${volume}/${folder}`);
  for (const [name, content] of Object.entries(files)) {
    await Deno.writeTextFile(`${volume}/${folder}/${name}`, content);
  }
  let old: string | undefined;
  try {
    old = await Deno.readLink(`${volume}/..data`);
  } catch {
    // The first update: nothing to replace.
  }
  await Deno.symlink(folder, `${volume}/..data_tmp`);
  await Deno.rename(`${volume}/..data_tmp`, `${volume}/..data`);
  for (const name of Object.keys(files)) {
    try {
      await Deno.lstat(`${volume}/${name}`);
    } catch {
      await Deno.symlink(`..data/${name}`, `${volume}/${name}`);
    }
  }
  if (old !== undefined) await Deno.remove(`${volume}/${old}`, { recursive: true });
}

// A scripted server, for replies the real server does not send yet

/** What a {@linkcode ScriptedServer} does with one query: reply, or reply and then close. */
export type ScriptedAnswer = Reply | { reply: Reply; thenClose: true };

/** How a {@linkcode ScriptedServer} behaves. */
export interface ScriptedServerOptions {
  /** The reply to query number `index` (counted over all connections) for `email`. */
  answer: (email: string, index: number) => ScriptedAnswer;
  /** A reply sent as soon as a connection is accepted, before reading, and then the close. */
  greeting?: Reply;
}

/**
 * A real TCP server on 127.0.0.1 that speaks the protocol with answers a
 * test chooses, such as FORBIDDEN or RATE_LIMITED. Every connection it
 * closes is half-closed first and its input read to the end, so the
 * client's kernel never turns the close into a reset that loses replies.
 */
export class ScriptedServer implements AsyncDisposable {
  /** The port it listens on. */
  readonly port: number;
  /** Connections accepted so far. */
  accepted = 0;
  /** Queries answered so far. */
  queries = 0;
  readonly #listener: Deno.TcpListener;
  readonly #options: ScriptedServerOptions;
  readonly #serving: Promise<void>;
  readonly #connections = new Set<Promise<void>>();

  /** Starts listening on a free port. */
  constructor(options: ScriptedServerOptions) {
    this.#options = options;
    this.#listener = Deno.listen({ hostname: LOOPBACK, port: 0 });
    this.port = this.#listener.addr.port;
    this.#serving = this.#accept();
  }

  /** Stops listening and waits for every connection to end. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.#listener.close();
    await this.#serving;
    await Promise.all(this.#connections);
  }

  async #accept(): Promise<void> {
    for (;;) {
      let conn: Deno.TcpConn;
      try {
        conn = await this.#listener.accept();
      } catch {
        return;
      }
      this.accepted++;
      const serving = this.#serve(conn).catch(() => {}).finally(() => {
        this.#connections.delete(serving);
        try {
          conn.close();
        } catch {
          // Closed already.
        }
      });
      this.#connections.add(serving);
    }
  }

  async #serve(conn: Deno.TcpConn): Promise<void> {
    if (this.#options.greeting !== undefined) {
      await writeAll(
        conn,
        encodeReply(this.#options.greeting.status, this.#options.greeting.text),
      );
      return await closeGently(conn);
    }
    const decoder = new FrameDecoder({ type: TYPE_QUERY, maxPayload: MAX_QUERY_BYTES });
    const buffer = new Uint8Array(READ_SIZE);
    for (;;) {
      const received = await conn.read(buffer);
      if (received === null) return;
      decoder.push(buffer.subarray(0, received));
      const replies: Uint8Array[] = [];
      let close = false;
      for (let payload; !close && (payload = decoder.next()) !== null;) {
        const answer = this.#options.answer(new TextDecoder().decode(payload), this.queries++);
        const reply = "thenClose" in answer ? answer.reply : answer;
        close = "thenClose" in answer;
        replies.push(encodeReply(reply.status, reply.text));
      }
      await writeAll(conn, concat(replies));
      if (close) return await closeGently(conn);
    }
  }
}

/** Half-closes, then reads to the end, so what was sent is not lost to a reset. */
async function closeGently(conn: Deno.TcpConn): Promise<void> {
  await conn.closeWrite();
  const buffer = new Uint8Array(READ_SIZE);
  while (await withDeadline(conn.read(buffer), "the client to close") !== null) {
    // Input after the close is dropped.
  }
}

// ---------------------------------------------------------------------------
// Client certificates: a throwaway PKI, and servers that require a certificate

/** A certificate and its key, as files and as PEM text. */
export interface CertifiedKey {
  /** The certificate's file. */
  certPath: string;
  /** The key's file. */
  keyPath: string;
  /** The certificate, PEM. */
  cert: string;
  /** The key, PEM. */
  key: string;
}

/**
 * A throwaway PKI in a temp dir, removed on disposal: a CA, a server
 * certificate it signed for 127.0.0.1 and localhost, a client certificate
 * it signed (subject `CN=client one`), and a client certificate signed by
 * another, rogue CA.
 */
export interface ClientPki extends AsyncDisposable {
  /** The directory holding every file. */
  dir: string;
  /** The CA certificate's file. */
  caPath: string;
  /** The CA certificate, PEM. */
  caPem: string;
  /** The server's certificate and key. */
  server: CertifiedKey;
  /** A client certificate the CA signed. */
  client: CertifiedKey;
  /** A client certificate a rogue CA signed. */
  rogue: CertifiedKey;
}

/**
 * Makes a {@linkcode ClientPki}: the certificates of test_pki.ts (one home
 * for making test certificates), in the shape the client tests use.
 */
export async function makeClientPki(): Promise<ClientPki> {
  const pki = await makeTestPki();
  const certified = (pair: PemPair): CertifiedKey => ({
    certPath: pair.certificatePath,
    keyPath: pair.keyPath,
    cert: pair.certificate,
    key: pair.key,
  });
  return {
    dir: pki.dir,
    caPath: pki.ca.certificatePath,
    caPem: pki.ca.certificate,
    server: certified(pki.server),
    client: certified(pki.client),
    rogue: certified(pki.rogueClient),
    [Symbol.asyncDispose]: () => pki[Symbol.asyncDispose](),
  };
}

/**
 * A `node:tls` server on 127.0.0.1 that requires a client certificate from
 * `pki`'s CA (the handshake of any other client fails) and answers the
 * protocol: FOUND with the certificate's common name for every query.
 */
export class CertificateServer implements AsyncDisposable {
  /** The port it listens on. */
  port = 0;
  /** Handshakes it refused. */
  refused = 0;
  readonly #server: tls.Server;
  readonly #sockets = new Set<tls.TLSSocket>();

  private constructor(pki: ClientPki) {
    this.#server = tls.createServer({
      key: pki.server.key,
      cert: pki.server.cert,
      ca: pki.caPem,
      requestCert: true,
      rejectUnauthorized: true,
    }, (socket) => this.#serve(socket));
    this.#server.on("tlsClientError", () => this.refused++);
  }

  /** Starts the server and waits until it listens. */
  static async start(pki: ClientPki): Promise<CertificateServer> {
    const server = new CertificateServer(pki);
    await new Promise<void>((resolve) => server.#server.listen(0, LOOPBACK, resolve));
    server.port = (server.#server.address() as { port: number }).port;
    return server;
  }

  /** Stops listening and ends every connection. */
  async [Symbol.asyncDispose](): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #serve(socket: tls.TLSSocket): void {
    this.#sockets.add(socket);
    socket.on("close", () => this.#sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    const subject = socket.getPeerCertificate().subject as unknown as { CN?: string };
    const decoder = new FrameDecoder({ type: TYPE_QUERY, maxPayload: MAX_QUERY_BYTES });
    socket.on("data", (chunk: Uint8Array) => {
      decoder.push(new Uint8Array(chunk));
      const replies: Uint8Array[] = [];
      while (decoder.next() !== null) replies.push(encodeReply(0, subject.CN ?? "?"));
      socket.write(concat(replies));
    });
  }
}

/**
 * `openssl s_server` on 127.0.0.1, requiring a client certificate from
 * `pki`'s CA and refusing any other with a TLS alert, as OpenSSL-based
 * servers do. It speaks no addrbook protocol: it is for refusals.
 */
export async function startOpensslServer(
  pki: ClientPki,
): Promise<AsyncDisposable & { port: number }> {
  const probe = Deno.listen({ hostname: LOOPBACK, port: 0 });
  const { port } = probe.addr;
  probe.close();
  const child = new Deno.Command("openssl", {
    args: [
      "s_server",
      "-accept",
      `${LOOPBACK}:${port}`,
      "-cert",
      pki.server.certPath,
      "-key",
      pki.server.keyPath,
      "-CAfile",
      pki.caPath,
      "-Verify",
      "1",
      "-verify_return_error",
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const stdout = new LineCollector(child.stdout);
  const stop = async () => {
    try {
      child.kill("SIGKILL");
    } catch {
      // It has exited already.
    }
    await child.status;
    await stdout.done;
    await child.stdin.close().catch(() => {});
  };
  try {
    await stdout.waitFor(/^ACCEPT/);
  } catch (error) {
    await stop();
    throw error;
  }
  return { port, [Symbol.asyncDispose]: stop };
}

// ---------------------------------------------------------------------------
// The client tests' server: a book with non-ASCII entries and many generated ones

/** Entries of the generated part of {@linkcode clientTestBook}: person{i}@example.com is "Person {i}". */
export const CLIENT_TEST_PEOPLE = 1000;

/** The client tests' book: three named people and {@linkcode CLIENT_TEST_PEOPLE} generated ones. */
export function clientTestBook(): AddressBook {
  const builder = new AddressBookBuilder();
  builder.add("ada@example.com", "Ada Lovelace");
  builder.add("grace@example.com", "Grace Hopper");
  builder.add("jürgen@beispiel.example", "Jürgen Möller");
  for (let i = 0; i < CLIENT_TEST_PEOPLE; i++) {
    builder.add(`person${i}@example.com`, `Person ${i}`);
  }
  return builder.build();
}

/** Runs `body` against an in-process server of {@linkcode clientTestBook} on a free port, its log quiet. */
export async function withClientTestServer(
  body: (port: number, server: ServerHandle) => Promise<void>,
  options: Partial<ServerOptions> = {},
): Promise<void> {
  const server = await startServer({
    book: clientTestBook(),
    port: 0,
    hostname: "127.0.0.1",
    log: new Logger({ write: () => {} }),
    ...options,
  });
  try {
    await body(server.addr.port, server);
  } finally {
    await server.close();
  }
}

// --- Book loading -------------------------------------------------------------

/** What a load comes to: the problems, or the entry count and fingerprint. */
export function loadOutcome(
  text: string | Uint8Array,
  file: string,
  chunk?: number,
  options: LoadOptions = {},
): string[] {
  const bytes = typeof text === "string" ? new TextEncoder().encode(text) : text;
  try {
    const { book, entries } = loadBookFromBytes(bytes, file, options, chunk);
    return [`${entries} entries`, book.fingerprint];
  } catch (error) {
    if (!(error instanceof BookError)) throw error;
    return error.problems.map((problem) => `${problem.line}: ${problem.message}`);
  }
}

/** Asserts that every chunk size from 1 to `upTo` gives what one big chunk gives. */
export function assertSameInChunks(text: string, file: string, upTo = 24): string[] {
  const expected = loadOutcome(text, file);
  for (let chunk = 1; chunk <= upTo; chunk++) {
    assert.deepEqual(loadOutcome(text, file, chunk), expected, `chunks of ${chunk} bytes`);
  }
  return expected;
}

// ---------------------------------------------------------------------------
// HAProxy in front of replicas: deploy/haproxy.cfg on free ports

/** The tested HAProxy configuration. */
export const HAPROXY_CONFIG = `${REPO_DIR}/deploy/haproxy.cfg`;

/** The ports deploy/haproxy.cfg names: its frontend, the replicas, their metrics ports, stats. */
export const HAPROXY_PORTS = {
  frontend: 8080,
  replicas: [8081, 8082, 8083],
  metrics: [9081, 9082, 9083],
  stats: 8404,
} as const;

/** The admin socket deploy/haproxy.cfg names. */
export const HAPROXY_STATS_SOCKET = "/tmp/addrbook-haproxy.sock";

/** The names deploy/haproxy.cfg gives the replicas, in the order of {@linkcode HAPROXY_PORTS}. */
export const REPLICA_NAMES: readonly string[] = ["replica1", "replica2", "replica3"];

/** A port free now: bound once and let go. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: LOOPBACK, port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

// ---------------------------------------------------------------------------
// Clients from other loopback addresses, as other hosts would be

/**
 * A protocol client whose socket is bound to a chosen source address
 * before it connects (127.0.0.2, 127.0.0.3, ...), so the server sees it as
 * another host; `Deno.connect` cannot bind a source, `node:net` can. Every
 * wait is bounded like {@linkcode RawClient}'s, whose reading API it shares.
 */
export class SourceClient {
  /** The address the socket is bound to. */
  readonly source: string;
  readonly #socket: net.Socket;
  readonly #decoder = new FrameDecoder({ type: TYPE_REPLY, maxPayload: MAX_REPLY_BYTES });
  #ending: Ending | undefined;
  #failure: Error | undefined;
  #wake: (() => void) | undefined;

  private constructor(socket: net.Socket, source: string) {
    this.#socket = socket;
    this.source = source;
    socket.on("data", (chunk: Uint8Array) => {
      this.#decoder.push(new Uint8Array(chunk));
      this.#notify();
    });
    socket.on("end", () => this.#end("eof"));
    socket.on("close", () => this.#end("eof"));
    socket.on("error", (error: Error & { code?: string }) => {
      if (error.code === "ECONNRESET" || error.code === "EPIPE") this.#end("reset");
      else this.#failure ??= error;
      this.#notify();
    });
  }

  /** Connects from `source` to `host` (127.0.0.1 unless told) on `port`. */
  static async connect(port: number, source: string, host = LOOPBACK): Promise<SourceClient> {
    const socket = net.connect({ host, port, localAddress: source, noDelay: true });
    const client = new SourceClient(socket, source);
    await withDeadline(
      new Promise<void>((resolve, reject) => {
        socket.once("connect", resolve);
        socket.once("error", reject);
      }),
      `a connection from ${source} to port ${port}`,
      WAIT_MS,
      () => socket.destroy(),
    );
    return client;
  }

  /** How the server ended the connection, once seen: a FIN or a reset. */
  get ending(): Ending | undefined {
    return this.#ending;
  }

  /** Writes all of `bytes`; resolves once the socket took them. */
  write(bytes: Uint8Array): Promise<void> {
    return withDeadline(
      new Promise<void>((resolve, reject) =>
        this.#socket.write(bytes, (error) => error ? reject(error) : resolve())
      ),
      "a write to be taken",
    );
  }

  /** Sends one query and reads its reply. */
  async query(email: string): Promise<Reply> {
    await this.write(encodeQuery(email));
    const reply = await this.readReply();
    assert.ok(reply !== null, "the server closed the connection instead of replying");
    return reply;
  }

  /** The next reply frame; `null` when the server closed the connection between frames. */
  readReply(ms = WAIT_MS): Promise<Reply | null> {
    return withDeadline(this.#readReply(), `a reply frame on a client from ${this.source}`, ms);
  }

  /** Exactly `count` replies; fails if the connection ends first. */
  readReplies(count: number, ms = WAIT_MS): Promise<Reply[]> {
    return withDeadline(
      (async () => {
        const replies: Reply[] = [];
        while (replies.length < count) {
          const reply = await this.#readReply();
          if (reply === null) {
            throw new Error(`The connection closed after ${replies.length} of ${count} replies.`);
          }
          replies.push(reply);
        }
        return replies;
      })(),
      `${count} replies on a client from ${this.source}`,
      ms,
    );
  }

  /** Every reply until the server closes the connection (a FIN or a reset). */
  readUntilClosed(ms = WAIT_MS): Promise<Reply[]> {
    return withDeadline(
      (async () => {
        const replies: Reply[] = [];
        for (let reply; (reply = await this.#readReply()) !== null;) replies.push(reply);
        return replies;
      })(),
      `the server to close the connection from ${this.source}`,
      ms,
    );
  }

  /** Half-closes: the server sees the end of input, and the client can still read. */
  closeWrite(): void {
    this.#socket.end();
  }

  /** Closes the socket; safe to call more than once. */
  close(): void {
    this.#socket.destroy();
  }

  async #readReply(): Promise<Reply | null> {
    for (;;) {
      const payload = this.#decoder.next();
      if (payload !== null) return decodeReply(payload);
      if (this.#failure !== undefined) throw this.#failure;
      if (this.#ending !== undefined) {
        if (this.#decoder.midFrame) {
          throw new Error(
            `The connection ended inside a reply frame, ${this.#decoder.buffered} bytes into it.`,
          );
        }
        return null;
      }
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
  }

  #end(ending: Ending): void {
    this.#ending ??= ending;
    this.#notify();
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}

/** Connects a {@linkcode SourceClient} from `source`, runs `body` with it, and closes it however the body ends. */
export async function withSourceClient<T>(
  port: number,
  source: string,
  body: (client: SourceClient) => Promise<T>,
): Promise<T> {
  const client = await SourceClient.connect(port, source);
  try {
    return await body(client);
  } finally {
    client.close();
  }
}

/** `deno task client` without the `deno`: the client runs with what the task grants, no more. */
export const CLIENT_FLAGS: readonly string[] = JSON.parse(
  await Deno.readTextFile(`${REPO_DIR}/deno.json`),
).tasks.client.split(/\s+/).slice(1);

/**
 * The config with every port its active lines name (`127.0.0.1:PORT`,
 * `check port PORT`) moved as `ports` says, and the admin socket moved to
 * `socket`; comments are left alone.
 */
export function relocateHaproxyConfig(
  config: string,
  ports: ReadonlyMap<number, number>,
  socket: string,
): string {
  return config.split("\n").map((line) => {
    if (line.trimStart().startsWith("#")) return line;
    return line
      .replace(/(127\.0\.0\.1:|check port )(\d+)/g, (_, prefix, port) => {
        const moved = ports.get(Number(port));
        assert.ok(moved !== undefined, `the test moves port ${port}`);
        return `${prefix}${moved}`;
      })
      .replaceAll(HAPROXY_STATS_SOCKET, socket);
  }).join("\n");
}

/** Runs `haproxy` with `args` to its end; says how to install it when it is missing. */
export async function runHaproxy(args: readonly string[]): Promise<Deno.CommandOutput> {
  try {
    return await new Deno.Command("haproxy", { args: [...args], stdout: "piped", stderr: "piped" })
      .output();
  } catch (error) {
    throw haproxyMissing(error);
  }
}

function haproxyMissing(error: unknown): unknown {
  if (!(error instanceof Deno.errors.NotFound)) return error;
  return new Error(
    "These tests need the haproxy command on PATH, and it was not found. " +
      "Install it (for example `apt-get install haproxy`); .ci/run does.",
  );
}

/** Longer than HAProxy takes to mark a server up or down (2 checks 1 s apart, each up to 2 s). */
export const HAPROXY_HEALTH_DEADLINE_MS = 15_000;

/**
 * A real `haproxy` running deploy/haproxy.cfg with every port moved to a
 * free one and its admin socket in `dir`; disposing of it kills it.
 *
 * ```ts ignore
 * await using haproxy = await HaproxyProcess.start(dir.path);
 * haproxy.replicaPorts[0]; // where replica1 must listen
 * await haproxy.waitForState("replica1", /^UP L7OK$/); // its /readyz answered 200
 * ```
 */
export class HaproxyProcess implements AsyncDisposable {
  /** Where clients connect. */
  readonly frontendPort: number;
  /** Where each replica must listen, in the config's order. */
  readonly replicaPorts: readonly number[];
  /** Where each replica's `--metrics-port` must be, for the `/readyz` checks. */
  readonly metricsPorts: readonly number[];
  /** The stats page's port. */
  readonly statsPort: number;
  /** The admin socket's path. */
  readonly socketPath: string;
  /** What HAProxy printed (its log goes to stdout), for failure messages. */
  readonly output: LineCollector;
  readonly #child: Deno.ChildProcess;
  readonly #errors: LineCollector;
  #exited = false;

  private constructor(child: Deno.ChildProcess, ports: Map<number, number>, socketPath: string) {
    this.#child = child;
    child.status.then(() => this.#exited = true);
    this.output = new LineCollector(child.stdout);
    this.#errors = new LineCollector(child.stderr);
    this.frontendPort = ports.get(HAPROXY_PORTS.frontend)!;
    this.replicaPorts = HAPROXY_PORTS.replicas.map((port) => ports.get(port)!);
    this.metricsPorts = HAPROXY_PORTS.metrics.map((port) => ports.get(port)!);
    this.statsPort = ports.get(HAPROXY_PORTS.stats)!;
    this.socketPath = socketPath;
  }

  /** Writes the relocated config in `dir`, starts HAProxy on it, and waits until its admin socket answers. */
  static async start(dir: string): Promise<HaproxyProcess> {
    const ports = new Map<number, number>();
    const { frontend, replicas, metrics, stats } = HAPROXY_PORTS;
    for (const port of [frontend, ...replicas, ...metrics, stats]) ports.set(port, freePort());
    const socketPath = `${dir}/haproxy.sock`;
    const configPath = `${dir}/haproxy.cfg`;
    await Deno.writeTextFile(
      configPath,
      relocateHaproxyConfig(await Deno.readTextFile(HAPROXY_CONFIG), ports, socketPath),
    );
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command("haproxy", {
        args: ["-db", "-f", configPath],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    } catch (error) {
      throw haproxyMissing(error);
    }
    const haproxy = new HaproxyProcess(child, ports, socketPath);
    try {
      await waitFor(
        () => haproxy.command("show info").then(() => true, () => false),
        "HAProxy's admin socket to answer",
        START_DEADLINE_MS,
      );
      return haproxy;
    } catch (error) {
      await haproxy[Symbol.asyncDispose]();
      throw error;
    }
  }

  /** Everything HAProxy printed so far. */
  get log(): string {
    return [...this.#errors.lines, ...this.output.lines].join("\n");
  }

  /** Sends one command to the admin socket and returns its answer. */
  async command(line: string): Promise<string> {
    if (this.#exited) assert.fail(`HAProxy exited:\n${this.log}`);
    const conn = await Deno.connect({ transport: "unix", path: this.socketPath });
    try {
      await writeAll(conn, new TextEncoder().encode(`${line}\n`));
      return await withDeadline(new Response(conn.readable).text(), `HAProxy's answer to ${line}`);
    } finally {
      try {
        conn.close();
      } catch {
        // The readable's end closed it.
      }
    }
  }

  /**
   * Each replica's state as HAProxy sees it, by name: its status and the
   * result of its last health check, such as `UP L7OK`, `UP 1/2 L7STS`
   * (one failed check: a 503) or `DOWN L4CON` (refused). Before its first
   * check a server is `UP INI`: HAProxy starts every server as up.
   */
  async serverStates(): Promise<Map<string, string>> {
    const [head, ...rows] = (await this.command("show stat")).trim().split("\n");
    const columns = head.replace(/^# /, "").split(",");
    const [proxy, name, status, check] = ["pxname", "svname", "status", "check_status"]
      .map((column) => columns.indexOf(column));
    return new Map(
      rows.map((row) => row.split(","))
        .filter((cells) =>
          cells[proxy] === "addrbook_replicas" && REPLICA_NAMES.includes(cells[name])
        )
        .map((cells) => [cells[name], `${cells[status]} ${cells[check]}`]),
    );
  }

  /** Waits until HAProxy's status of `replica` matches `state`. */
  waitForState(replica: string, state: RegExp): Promise<void> {
    // HAProxy's view of a server changes with no event to await: look until it does.
    return waitFor(
      async () => state.test((await this.serverStates()).get(replica) ?? ""),
      `HAProxy to mark ${replica} ${state.source}`,
      HAPROXY_HEALTH_DEADLINE_MS,
    );
  }

  /** Kills HAProxy and waits for it and its output to end. */
  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // It has exited already.
    }
    await this.#child.status;
    await this.output.done;
    await this.#errors.done;
  }
}

/** Runs `client.ts` as `deno task client` would, with `args`, to its exit. */
export async function runClientToExit(args: readonly string[]): Promise<ProcessOutput> {
  await using client = new Subprocess([...CLIENT_FLAGS, ...args]);
  return await client.output();
}
