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
import { type AddressBook, AddressBookBuilder } from "./addressbook.ts";
import { Logger, type LogLevel } from "./log.ts";
import {
  decodeReply,
  encodeQuery,
  FrameDecoder,
  HEADER_SIZE,
  MAX_REPLY_BYTES,
  type Reply,
  TYPE_REPLY,
  writeHeader,
} from "./protocol.ts";
import { type ServerHandle, type ServerOptions, startServer } from "./server.ts";

/** How long a test waits for any one event before it fails, in milliseconds. */
export const WAIT_MS = 10_000;

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

/**
 * Resolves or rejects as `promise` does, or rejects once `ms` have passed,
 * saying what was awaited.
 */
export async function withDeadline<T>(promise: Promise<T>, what: string, ms = WAIT_MS): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Gave up after ${ms} ms waiting for ${what}.`)), ms);
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
    if (Date.now() > deadline) throw new Error(`Gave up after ${ms} ms waiting for ${what}.`);
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
export function encodeQueries(emails: readonly string[]): Uint8Array {
  return concat(emails.map((email) => encodeQuery(email)));
}

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
