/**
 * The addrbook client: a {@linkcode Client} class that queries an addrbook
 * server, and the `deno task client` command line built on it.
 *
 * ```ts
 * import { Client } from "./client.ts";
 *
 * const client = await Client.connect({ hostname: "127.0.0.1", port: 8080 });
 * try {
 *   const reply = await client.lookup("ada@example.com");
 *   console.log(reply.status, reply.text); // 0 "Ada Lovelace"
 *   for await (const each of client.lookupMany(["ada@example.com", "bob@example.com"])) {
 *     console.log(each.text);
 *   }
 * } finally {
 *   client.close();
 * }
 * ```
 *
 * Run `deno task client --help` for the command line.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  decodeReply,
  encodeQuery,
  FrameDecoder,
  HEADER_SIZE,
  MAX_QUERY_BYTES,
  MAX_REPLY_BYTES,
  ProtocolError,
  type Reply,
  STATUS_BAD_REQUEST,
  STATUS_FOUND,
  STATUS_NAMES,
  STATUS_NOT_FOUND,
  STATUS_PROTOCOL_ERROR,
  STATUS_SERVER_BUSY,
  TYPE_QUERY,
  TYPE_REPLY,
  writeHeader,
} from "./protocol.ts";
import { resolveUserPath } from "./user_path.ts";

/** The server's address when none is given. */
export const DEFAULT_HOSTNAME = "127.0.0.1";
/** The server's port when none is given. */
export const DEFAULT_PORT = 8080;
/** How long to wait for a connection, or for a reply, before giving up. */
export const DEFAULT_TIMEOUT_MS = 5000;
/** Queries {@linkcode Client.lookupMany} keeps in flight by default. */
export const DEFAULT_WINDOW = 256;

/** Bytes read from the socket at a time: room for a few thousand typical replies. */
const READ_BUFFER_SIZE = 65536;
/** Pending query bytes that are sent even before the window is full. */
const WRITE_BATCH_BYTES = 65536;
/** Characters of output gathered before they are written to stdout. */
const OUTPUT_CHUNK_CHARS = 65536;
/**
 * Characters kept of an input line with no end in sight. Anything this long
 * is already far over the query limit, so it is answered as too long
 * either way; keeping all of it would let one line fill the memory.
 */
const MAX_LINE_CHARS = 8192;
const MILLISECONDS_PER_SECOND = 1000;
const MAX_PORT = 65535;
/** Exit status when every address was found. */
export const EXIT_OK = 0;
/** Exit status when some address was not found. */
export const EXIT_NOT_FOUND = 1;
/** Exit status on an error: bad usage, no server, a lost connection, a bad request. */
export const EXIT_ERROR = 2;

/** Options for {@linkcode Client.connect}. */
export interface ClientOptions {
  /** The server's host name or IP address; {@linkcode DEFAULT_HOSTNAME} by default. */
  hostname?: string;
  /** The server's port; {@linkcode DEFAULT_PORT} by default. */
  port?: number;
  /**
   * Milliseconds to wait for the connection (and TLS handshake), and then
   * for each reply; 0 waits forever. {@linkcode DEFAULT_TIMEOUT_MS} by default.
   */
  timeoutMs?: number;
  /** Connect with TLS. Implied by `caCerts`. */
  tls?: boolean;
  /** Extra CA certificates (PEM text) to trust for TLS, for a server with its own CA. */
  caCerts?: string[];
}

/** What went wrong, for callers that react differently to each. */
export type ClientErrorCode =
  | "connect"
  | "timeout"
  | "closed"
  | "protocol"
  | "busy"
  | "usage";

/**
 * An expected failure of the client, with a one-line message fit to show a
 * user, such as `cannot connect to 127.0.0.1:8080 (connection refused): is
 * the server running?`. `code` says which kind:
 *
 * - `connect`: no connection, or the TLS handshake failed;
 * - `timeout`: no connection or no reply within the timeout;
 * - `closed`: the connection was lost, or the client closed;
 * - `protocol`: the server sent a malformed reply or reported a protocol error;
 * - `busy`: the server is at its connection limit (try again later);
 * - `usage`: a bad option, such as a port out of range.
 *
 * After any error but `usage`, the client is closed.
 */
export class ClientError extends Error {
  /** Which kind of failure this is. */
  readonly code: ClientErrorCode;

  /** Creates the error with its kind and a one-line message. */
  constructor(code: ClientErrorCode, message: string) {
    super(message);
    this.name = "ClientError";
    this.code = code;
  }
}

/**
 * One connection to an addrbook server.
 *
 * Calls on one client are answered one at a time, in the order they were
 * made; for throughput, send many queries with {@linkcode lookupMany},
 * which pipelines them. A query longer than the protocol allows is not sent:
 * it is answered locally with a BAD_REQUEST reply saying so.
 *
 * ```ts
 * import { Client } from "./client.ts";
 * import { STATUS_FOUND } from "./protocol.ts";
 *
 * const client = await Client.connect({ port: 8080, timeoutMs: 2000 });
 * const reply = await client.lookup("Ada@Example.com");
 * if (reply.status === STATUS_FOUND) console.log(reply.text);
 * client.close();
 * ```
 */
export class Client {
  /** The server's address as `host:port`, for messages. */
  readonly address: string;
  readonly #conn: Deno.Conn;
  readonly #timeoutMs: number;
  readonly #decoder = new FrameDecoder({ type: TYPE_REPLY, maxPayload: MAX_REPLY_BYTES });
  readonly #readBuffer = new Uint8Array(READ_BUFFER_SIZE);
  /** Replies decoded from the last read and not yet returned, from `#replyHead` on. */
  readonly #replies: Reply[] = [];
  #replyHead = 0;
  /** Set once the connection is unusable; every later call throws it. */
  #failure: ClientError | undefined;
  /** The tail of the queue of calls, each waiting for the one before. */
  #turn: Promise<void> = Promise.resolve();

  private constructor(conn: Deno.Conn, address: string, timeoutMs: number) {
    this.#conn = conn;
    this.address = address;
    this.#timeoutMs = timeoutMs;
    // Queries are written whole, so Nagle's delay would only add latency.
    (conn as Deno.TcpConn).setNoDelay?.(true);
  }

  /**
   * Connects to a server (and completes the TLS handshake, with `tls`).
   *
   * @throws {ClientError} `connect` when the server cannot be reached or the
   * handshake fails, `timeout` when that takes too long, `usage` for a bad option.
   */
  static async connect(options: ClientOptions = {}): Promise<Client> {
    const hostname = options.hostname ?? DEFAULT_HOSTNAME;
    const port = options.port ?? DEFAULT_PORT;
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!Number.isInteger(port) || port < 1 || port > MAX_PORT) {
      throw new ClientError(
        "usage",
        `port must be a whole number from 1 to ${MAX_PORT}, not ${port}`,
      );
    }
    if (!(timeoutMs >= 0 && Number.isFinite(timeoutMs))) {
      throw new ClientError("usage", `timeout must be 0 or more milliseconds, not ${timeoutMs}`);
    }
    if (hostname === "") throw new ClientError("usage", "the host name is empty");
    const tls = options.tls === true || options.caCerts !== undefined;
    const address = formatAddress(hostname, port);
    const deadline = new Deadline(timeoutMs);
    let conn: Deno.Conn | undefined;
    try {
      conn = await deadline.race<Deno.Conn>(
        tls
          ? Deno.connectTls({ hostname, port, caCerts: options.caCerts })
          : Deno.connect({ hostname, port, signal: deadline.signal }),
        (late) => late.close(),
      );
    } catch (error) {
      deadline.clear();
      throw connectError(error, address, hostname, deadline.expired ? timeoutMs : undefined);
    }
    if (tls) {
      try {
        await deadline.race((conn as Deno.TlsConn).handshake());
      } catch (error) {
        closeQuietly(conn);
        const reason = deadline.expired
          ? `timed out after ${formatSeconds(timeoutMs)}`
          : describeError(error);
        throw new ClientError(
          deadline.expired ? "timeout" : "connect",
          `TLS handshake with ${address} failed: ${reason}`,
        );
      } finally {
        deadline.clear();
      }
    }
    deadline.clear();
    return new Client(conn, address, timeoutMs);
  }

  /**
   * Looks up one address. Resolves with the server's reply: FOUND with the
   * name, NOT_FOUND, or BAD_REQUEST saying why the query is not an address.
   *
   * @throws {ClientError} when there is no reply: the connection was lost
   * (`closed`), no reply came in time (`timeout`), the reply was malformed or
   * a PROTOCOL_ERROR (`protocol`), or the server is full (`busy`).
   */
  async lookup(email: string): Promise<Reply> {
    const release = await this.#takeTurn();
    try {
      this.#throwIfFailed();
      const frame = queryFrame(email);
      if (!(frame instanceof Uint8Array)) return frame;
      // A write that fails means the server has gone; the read says how (it
      // may still deliver a SERVER_BUSY or PROTOCOL_ERROR sent just before).
      await this.#writeAll(frame).catch(() => {});
      return await this.#nextReply();
    } finally {
      release();
    }
  }

  /**
   * Looks up many addresses over this one connection, pipelined: up to
   * `window` queries are in flight at once, written in batches, and the
   * replies are yielded in the order of `emails`. `emails` is read lazily,
   * so it may be a stream: a reply is yielded as soon as it arrives, without
   * waiting for more input.
   *
   * Stopping early (a `break`, or an error) while queries are still in
   * flight closes the client, since their replies would otherwise be taken
   * for the answers to later calls.
   *
   * ```ts
   * import { Client } from "./client.ts";
   *
   * const client = await Client.connect();
   * const emails = ["ada@example.com", "alan@example.com"];
   * let i = 0;
   * for await (const reply of client.lookupMany(emails)) {
   *   console.log(emails[i++], reply.status, reply.text);
   * }
   * client.close();
   * ```
   *
   * @throws {ClientError} as {@linkcode lookup} does; errors thrown by `emails` pass through.
   */
  async *lookupMany(
    emails: Iterable<string> | AsyncIterable<string>,
    window: number = DEFAULT_WINDOW,
  ): AsyncGenerator<Reply> {
    if (!Number.isInteger(window) || window < 1) {
      throw new ClientError("usage", `window must be a whole number of 1 or more, not ${window}`);
    }
    const release = await this.#takeTurn();
    // A filler task pulls addresses from the source and encodes them into a
    // batch, which goes out in one write when the window fills, when the
    // batch is large, when the source ends, or when the loop below has no
    // other reply to wait for. Items are numbered in source order: `added`
    // were taken from the source, `sent` handed to a write, `yielded` answered.
    let added = 0;
    let sent = 0;
    let yielded = 0;
    let sourceDone = false;
    let sourceFailed = false;
    let sourceError: unknown;
    let stopped = false;
    let writeFailed = false;
    /** Answers made here, for queries too long to send, by item number. */
    const localReplies = new Map<number, Reply>();
    let batch = new Uint8Array(WRITE_BATCH_BYTES);
    let batchLength = 0;
    let writing: Promise<void> = Promise.resolve();
    let wakeReader: (() => void) | undefined;
    let wakeFiller: (() => void) | undefined;
    // Refill only once half the window is free, so writes stay large.
    const refillAt = Math.floor(window / 2);

    const flush = () => {
      sent = added;
      if (batchLength === 0) return;
      const bytes = batch.subarray(0, batchLength);
      // The batch being written must not change, so the next one gets a new buffer.
      batch = new Uint8Array(batch.length);
      batchLength = 0;
      writing = writing.then(async () => {
        if (writeFailed) return;
        try {
          await this.#writeAll(bytes);
        } catch {
          // The server has gone; the read in the loop below reports how.
          writeFailed = true;
        }
      });
    };
    const add = (email: string) => {
      if (batch.length - batchLength < HEADER_SIZE + MAX_QUERY_BYTES) flush();
      const length = encodeQueryInto(email, batch, batchLength);
      if (length < 0) localReplies.set(added, tooLongReply(email));
      else batchLength += length;
      added++;
      if (wakeReader !== undefined) {
        wakeReader();
        wakeReader = undefined;
      }
    };
    /** Returns a promise to wait on when the window is full. */
    const roomToAdd = (): Promise<void> | undefined => {
      if (added - yielded < window) return undefined;
      flush();
      return new Promise<void>((resolve) => wakeFiller = resolve);
    };
    const fill = async () => {
      try {
        if (Symbol.iterator in emails) {
          for (const email of emails) {
            add(email);
            const room = roomToAdd();
            if (room) await room;
            if (stopped) break;
          }
        } else {
          for await (const email of emails) {
            // Stopped while waiting for this address: it must not be sent.
            if (stopped) break;
            add(email);
            const room = roomToAdd();
            if (room) await room;
            if (stopped) break;
          }
        }
      } catch (error) {
        sourceFailed = true;
        sourceError = error;
      }
      sourceDone = true;
      if (!stopped) flush();
      wakeReader?.();
    };

    let finished = false;
    let filling: Promise<void> | undefined;
    try {
      this.#throwIfFailed();
      filling = fill();
      for (;;) {
        if (yielded === added) {
          if (sourceDone) break;
          await new Promise<void>((resolve) => wakeReader = resolve);
          continue;
        }
        let reply = localReplies.size > 0 ? localReplies.get(yielded) : undefined;
        if (reply !== undefined) {
          localReplies.delete(yielded);
        } else {
          reply = this.#takeReply();
          if (reply === undefined) {
            if (yielded >= sent) flush();
            do {
              await this.#receive();
              reply = this.#takeReply();
            } while (reply === undefined);
          }
        }
        yielded++;
        if (wakeFiller !== undefined && added - yielded <= refillAt) {
          wakeFiller();
          wakeFiller = undefined;
        }
        yield reply;
      }
      finished = true;
      if (sourceFailed) throw sourceError;
    } finally {
      stopped = true;
      wakeFiller?.();
      if (!finished) {
        let owed = sent - yielded;
        for (const item of localReplies.keys()) if (item >= yielded && item < sent) owed--;
        if (owed > 0) {
          this.#fail(
            new ClientError(
              "closed",
              "the client was closed: lookupMany stopped with replies owed",
            ),
          );
        }
      }
      // The filler may be waiting on a stream that never ends; wait for it
      // only once it has stopped pulling, so the writes it queued are done.
      if (sourceDone) await filling;
      await writing;
      release();
    }
  }

  /** Closes the connection. Calls still waiting fail with a `closed` error. */
  close(): void {
    this.#fail(new ClientError("closed", "the client is closed"));
  }

  /** Resolves when every earlier call is done, with the function that ends this one. */
  async #takeTurn(): Promise<() => void> {
    const before = this.#turn;
    let release!: () => void;
    this.#turn = new Promise<void>((resolve) => release = resolve);
    await before;
    return release;
  }

  #throwIfFailed(): void {
    if (this.#failure) throw this.#failure;
  }

  /** Marks the connection unusable with `error`, closes it, and returns the error to throw. */
  #fail(error: ClientError): ClientError {
    if (this.#failure === undefined) {
      this.#failure = error;
      closeQuietly(this.#conn);
    }
    return this.#failure;
  }

  async #writeAll(bytes: Uint8Array): Promise<void> {
    for (let written = 0; written < bytes.length;) {
      written += await this.#conn.write(bytes.subarray(written));
    }
  }

  /** The next reply, reading as needed. Throws for PROTOCOL_ERROR and SERVER_BUSY. */
  async #nextReply(): Promise<Reply> {
    for (;;) {
      const reply = this.#takeReply();
      if (reply !== undefined) return reply;
      await this.#receive();
    }
  }

  /** The next reply already received, or `undefined`. Throws for PROTOCOL_ERROR and SERVER_BUSY. */
  #takeReply(): Reply | undefined {
    if (this.#replyHead === this.#replies.length) return undefined;
    const reply = this.#replies[this.#replyHead++];
    if (reply.status === STATUS_PROTOCOL_ERROR) {
      throw this.#fail(
        new ClientError("protocol", `the server reported a protocol error: ${reply.text}`),
      );
    }
    if (reply.status === STATUS_SERVER_BUSY) {
      throw this.#fail(new ClientError("busy", `the server is busy: ${reply.text}`));
    }
    return reply;
  }

  /** Reads once and decodes every reply the read completed. */
  async #receive(): Promise<void> {
    this.#replies.length = 0;
    this.#replyHead = 0;
    const received = await this.#read();
    if (received === null) {
      throw this.#fail(
        new ClientError("closed", "the server closed the connection before replying"),
      );
    }
    // Every frame is decoded now, so the buffer is free for the next read.
    this.#decoder.push(this.#readBuffer.subarray(0, received));
    try {
      for (let payload; (payload = this.#decoder.next()) !== null;) {
        this.#replies.push(decodeReply(payload));
      }
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
      // A TLS server answers a plaintext hello with an alert (0x15) or handshake (0x16) record.
      const first = this.#readBuffer[0];
      const plain = !("handshake" in this.#conn);
      const hint = plain && received > 0 && (first === 0x15 || first === 0x16)
        ? " (it looks like a TLS server: try --tls)"
        : "";
      throw this.#fail(
        new ClientError("protocol", `the server sent a malformed reply: ${error.message}${hint}`),
      );
    }
  }

  /** One read into the reused buffer, within the timeout. */
  async #read(): Promise<number | null> {
    let timedOut = false;
    const timer = this.#timeoutMs > 0
      ? setTimeout(() => {
        timedOut = true;
        this.#fail(
          new ClientError(
            "timeout",
            `no reply from ${this.address} within ${formatSeconds(this.#timeoutMs)}`,
          ),
        );
      }, this.#timeoutMs)
      : undefined;
    try {
      return await this.#conn.read(this.#readBuffer);
    } catch (error) {
      if (this.#failure !== undefined) throw this.#failure;
      if (
        error instanceof Deno.errors.ConnectionReset ||
        error instanceof Deno.errors.ConnectionAborted ||
        error instanceof Deno.errors.BrokenPipe ||
        error instanceof Deno.errors.UnexpectedEof
      ) {
        throw this.#fail(
          new ClientError("closed", "the server closed the connection before replying"),
        );
      }
      throw this.#fail(
        new ClientError(
          "closed",
          `the connection to ${this.address} failed: ${describeError(error)}`,
        ),
      );
    } finally {
      if (!timedOut) clearTimeout(timer);
    }
  }
}

/** The query frame for `email`, or a local BAD_REQUEST reply when it is too long to send. */
function queryFrame(email: string): Uint8Array | Reply {
  try {
    return encodeQuery(email);
  } catch (error) {
    if (error instanceof RangeError) return { status: STATUS_BAD_REQUEST, text: error.message };
    throw error;
  }
}

/** The local BAD_REQUEST reply for a query too long to send, worded by the codec. */
function tooLongReply(email: string): Reply {
  const reply = queryFrame(email);
  if (reply instanceof Uint8Array) throw new Error("The query was expected to be too long.");
  return reply;
}

const queryEncoder = new TextEncoder();

/**
 * Writes the query frame for `email` into `target` at `offset`, which must
 * have room for the longest frame, and returns its length; or returns -1,
 * writing nothing, when the email is over {@linkcode MAX_QUERY_BYTES}. This
 * is {@linkcode encodeQuery} without a new array per query, which matters
 * when a batch holds a hundred thousand of them.
 */
function encodeQueryInto(email: string, target: Uint8Array, offset: number): number {
  // UTF-8 takes at most 3 bytes per UTF-16 unit, so a short string is known to fit.
  if (email.length * 3 > MAX_QUERY_BYTES) {
    const { read, written } = queryEncoder.encodeInto(
      email,
      target.subarray(offset + HEADER_SIZE, offset + HEADER_SIZE + MAX_QUERY_BYTES),
    );
    if (read < email.length) return -1;
    writeHeader(target, offset, TYPE_QUERY, written);
    return HEADER_SIZE + written;
  }
  const { written } = queryEncoder.encodeInto(email, target.subarray(offset + HEADER_SIZE));
  writeHeader(target, offset, TYPE_QUERY, written);
  return HEADER_SIZE + written;
}

/**
 * A timeout for the connect and handshake steps: races a step against it,
 * and aborts what can be aborted when it expires.
 */
class Deadline {
  readonly #controller = new AbortController();
  readonly #timer: ReturnType<typeof setTimeout> | undefined;
  #expired = false;

  constructor(timeoutMs: number) {
    this.#timer = timeoutMs > 0
      ? setTimeout(() => {
        this.#expired = true;
        this.#controller.abort();
      }, timeoutMs)
      : undefined;
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  get expired(): boolean {
    return this.#expired;
  }

  /** Resolves as `step` does, or rejects when the deadline passes; `late` gets a value that came too late. */
  race<T>(step: Promise<T>, late?: (value: T) => void): Promise<T> {
    const signal = this.#controller.signal;
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => reject(new Error("timed out"));
      if (signal.aborted) onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      step.then(
        (value) => {
          signal.removeEventListener("abort", onAbort);
          if (signal.aborted) late?.(value);
          else resolve(value);
        },
        (error) => {
          signal.removeEventListener("abort", onAbort);
          reject(error);
        },
      );
    });
  }

  clear(): void {
    clearTimeout(this.#timer);
  }
}

/** The ClientError for a failed connect. `timedOutAfterMs` is set when the deadline passed. */
function connectError(
  error: unknown,
  address: string,
  hostname: string,
  timedOutAfterMs: number | undefined,
): ClientError {
  const prefix = `cannot connect to ${address}`;
  if (timedOutAfterMs !== undefined) {
    return new ClientError(
      "timeout",
      `${prefix} (timed out after ${formatSeconds(timedOutAfterMs)})`,
    );
  }
  if (error instanceof Deno.errors.ConnectionRefused) {
    return new ClientError("connect", `${prefix} (connection refused): is the server running?`);
  }
  if (error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied) {
    return new ClientError(
      "connect",
      `${prefix}: network access is not allowed (run with --allow-net)`,
    );
  }
  const message = describeError(error);
  if (/lookup address|Name or service not known|nodename nor servname/i.test(message)) {
    return new ClientError("connect", `${prefix} (unknown host "${hostname}")`);
  }
  return new ClientError("connect", `${prefix} (${message})`);
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Closed already: nothing more to release.
  }
}

function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Formats an address for messages, bracketing IPv6: `[::1]:8080`. */
function formatAddress(hostname: string, port: number): string {
  return hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
}

function formatSeconds(milliseconds: number): string {
  return `${milliseconds / MILLISECONDS_PER_SECOND} s`;
}

// ---------------------------------------------------------------------------
// The command line.

/** The client's usage text, for `--help` and usage errors. */
export const USAGE = `Usage: deno task client [options] [EMAIL...]

Looks up email addresses on an addrbook server and prints the owners' names.

  EMAIL...   Look up each address. Prints each name found on stdout, and
             "not found: EMAIL" on stderr for each address that is not.
  no EMAIL, stdin a terminal:
             Interactive. Type an address at the "addrbook> " prompt; an empty
             line, "quit", "exit" or Ctrl-D leaves.
  no EMAIL, stdin a pipe or file:
             Batch. One address per line; blank lines are skipped. Prints
             exactly one line per address, in input order: the name, or an
             empty line when the address is not found or is not an address
             (the reason goes to stderr with the line number). A summary of
             the misses goes to stderr.

Options:
  --host HOST        server host (default $ADDRBOOK_HOST, else ${DEFAULT_HOSTNAME})
  --port PORT        server port (default $ADDRBOOK_PORT, else ${DEFAULT_PORT})
  --timeout SECONDS  give up on connecting, or on a reply, after this long;
                     0 waits forever (default ${DEFAULT_TIMEOUT_MS / MILLISECONDS_PER_SECOND})
  --json             print one JSON object per address instead, on stdout:
                     {"email":...,"status":"FOUND","name":...} or
                     {"email":...,"status":"NOT_FOUND"|"BAD_REQUEST","message":...}
  --tls              connect with TLS
  --ca FILE          trust this CA certificate (PEM) for TLS; implies --tls
  -h, --help         show this help

Exit status: 0 when every address was found, 1 when any was not found,
2 on an error: bad usage, no server, a lost connection, or a query that is
not an email address (BAD_REQUEST).`;

/** What the command line chose. */
export interface CliOptions {
  /** Server host. */
  hostname: string;
  /** Server port. */
  port: number;
  /** Connect and reply timeout, in milliseconds; 0 waits forever. */
  timeoutMs: number;
  /** Print JSON lines instead of text. */
  json: boolean;
  /** Connect with TLS. */
  tls: boolean;
  /** A CA certificate file to trust, PEM. */
  caFile?: string;
  /** Addresses given on the command line; empty for interactive or batch mode. */
  emails: string[];
}

/** Reads an environment variable, or `undefined` when it is unset. */
export type EnvLookup = (name: string) => string | undefined;

/**
 * Parses the client's command line; `env` supplies ADDRBOOK_HOST and
 * ADDRBOOK_PORT, which the flags override.
 *
 * @throws {ClientError} `usage` for an unknown flag or a bad value.
 */
export function parseClientArgs(args: string[], env: EnvLookup = readEnv): CliOptions | "help" {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      strict: true,
      allowPositionals: true,
      options: {
        host: { type: "string" },
        port: { type: "string" },
        timeout: { type: "string" },
        json: { type: "boolean" },
        tls: { type: "boolean" },
        ca: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (error) {
    throw new ClientError("usage", describeError(error));
  }
  const { values, positionals } = parsed;
  if (values.help) return "help";
  const hostname = values.host ?? env("ADDRBOOK_HOST") ?? DEFAULT_HOSTNAME;
  if (hostname === "") throw new ClientError("usage", "--host must not be empty");
  const portText = values.port ?? env("ADDRBOOK_PORT");
  const portSource = values.port !== undefined ? "--port" : "ADDRBOOK_PORT";
  return {
    hostname,
    port: portText === undefined ? DEFAULT_PORT : parsePort(portSource, portText),
    timeoutMs: values.timeout === undefined
      ? DEFAULT_TIMEOUT_MS
      : parseSeconds("--timeout", values.timeout),
    json: values.json ?? false,
    tls: (values.tls ?? false) || values.ca !== undefined,
    caFile: values.ca,
    emails: positionals,
  };
}

function parsePort(source: string, text: string): number {
  const port = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(port >= 1 && port <= MAX_PORT)) {
    throw new ClientError(
      "usage",
      `${source} must be a whole number from 1 to ${MAX_PORT}, not "${text}"`,
    );
  }
  return port;
}

function parseSeconds(flag: string, text: string): number {
  const seconds = /^\d+(\.\d+)?$/.test(text) ? Number(text) : NaN;
  // setTimeout cannot wait longer than 2^31 - 1 ms.
  if (!(seconds * MILLISECONDS_PER_SECOND <= 2 ** 31 - 1)) {
    throw new ClientError("usage", `${flag} must be a number of seconds, not "${text}"`);
  }
  return Math.round(seconds * MILLISECONDS_PER_SECOND);
}

/** Reads a variable only when already allowed, so a missing --allow-env never prompts. */
function readEnv(name: string): string | undefined {
  const { state } = Deno.permissions.querySync({ name: "env", variable: name });
  return state === "granted" ? Deno.env.get(name) : undefined;
}

async function readCaFile(typed: string): Promise<string> {
  const path = resolveUserPath(typed);
  const { state } = await Deno.permissions.query({ name: "read", path });
  if (state !== "granted") {
    throw new ClientError("usage", `cannot read --ca file ${typed}: run with --allow-read`);
  }
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    const reason = error instanceof Deno.errors.NotFound ? "no such file" : describeError(error);
    throw new ClientError("usage", `cannot read --ca file ${typed}: ${reason}`);
  }
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
          const bytes = encoder.encode(text);
          for (let written = 0; written < bytes.length;) {
            written += await this.#file.write(bytes.subarray(written));
          }
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

/** Replaces line breaks so a name stays on its one output line. */
function oneLine(text: string): string {
  return /[\r\n]/.test(text) ? text.replace(/\r\n|[\r\n]/g, " ") : text;
}

function jsonLine(email: string, reply: Reply): string {
  const status = STATUS_NAMES[reply.status];
  return reply.status === STATUS_FOUND
    ? JSON.stringify({ email, status, name: reply.text })
    : JSON.stringify({ email, status, message: reply.text });
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
    if (this.notFound > 0) printError(`${this.notFound} of ${this.total} not found`);
    if (this.bad > 0) {
      printError(
        `${this.bad} of ${this.total} ${
          this.bad === 1 ? "was a bad request" : "were bad requests"
        }`,
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

  push(item: T): void {
    this.#items.push(item);
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

async function connectFor(cli: CliOptions): Promise<Client> {
  const caCerts = cli.caFile === undefined ? undefined : [await readCaFile(cli.caFile)];
  return await Client.connect({
    hostname: cli.hostname,
    port: cli.port,
    timeoutMs: cli.timeoutMs,
    tls: cli.tls,
    caCerts,
  });
}

/** One-shot mode: the addresses on the command line. */
async function lookUpArguments(cli: CliOptions): Promise<number> {
  const client = await connectFor(cli);
  const out = new Output(Deno.stdout);
  const tally = new Tally();
  try {
    let i = 0;
    for await (const reply of client.lookupMany(cli.emails)) {
      const email = cli.emails[i++];
      tally.count(reply);
      if (cli.json) {
        await out.line(jsonLine(email, reply));
      } else if (reply.status === STATUS_FOUND) {
        await out.line(oneLine(reply.text));
      } else {
        // Kept in order with the names when both go to a terminal.
        await out.flush();
        if (reply.status === STATUS_NOT_FOUND) printNote(`not found: ${email}`);
        else printError(`bad request for ${JSON.stringify(email)}: ${reply.text}`);
      }
    }
  } finally {
    client.close();
    await out.flush();
  }
  if (tally.total > 1) tally.summarize();
  return tally.exitCode();
}

/** Batch mode: one address per line of stdin, one line of output per address. */
async function lookUpStdin(cli: CliOptions): Promise<number> {
  const client = await connectFor(cli);
  const out = new Output(Deno.stdout);
  const tally = new Tally();
  const asked = new Queue<{ email: string; line: number }>();
  async function* queries(): AsyncGenerator<string> {
    let line = 0;
    for await (const text of readLines(Deno.stdin.readable)) {
      line++;
      const email = text.trim();
      if (email === "") continue;
      asked.push({ email, line });
      yield email;
    }
  }
  try {
    for await (const reply of client.lookupMany(queries())) {
      const { email, line } = asked.shift();
      tally.count(reply);
      let written;
      if (cli.json) {
        written = out.line(jsonLine(email, reply));
      } else {
        written = out.line(reply.status === STATUS_FOUND ? oneLine(reply.text) : "");
        if (reply.status === STATUS_BAD_REQUEST) printError(`line ${line}: ${reply.text}`);
      }
      if (written) await written;
    }
  } finally {
    client.close();
    await out.flush();
  }
  tally.summarize();
  return tally.exitCode();
}

/** Interactive mode: a prompt on a terminal. */
async function lookUpInteractively(cli: CliOptions): Promise<number> {
  let client = await connectFor(cli);
  const write = (text: string) => Deno.stdout.write(encoder.encode(text));
  const lines = readLines(Deno.stdin.readable);
  await write(
    `Connected to ${client.address}. Type an email address to look it up; ` +
      `an empty line, "quit" or Ctrl-D leaves.\n`,
  );
  try {
    for (;;) {
      await write("addrbook> ");
      const next = await lines.next();
      if (next.done) {
        await write("\n");
        break;
      }
      const email = next.value.trim();
      if (email === "" || email === "quit" || email === "exit") break;
      let reply: Reply;
      try {
        reply = await client.lookup(email);
      } catch (error) {
        // The server closes connections left idle; a new one answers just as well.
        if (!(error instanceof ClientError && error.code === "closed")) throw error;
        client.close();
        client = await connectFor(cli);
        reply = await client.lookup(email);
      }
      if (cli.json) await write(jsonLine(email, reply) + "\n");
      else if (reply.status === STATUS_FOUND) await write(oneLine(reply.text) + "\n");
      else if (reply.status === STATUS_NOT_FOUND) await write(`not found: ${email}\n`);
      else await write(`bad request: ${reply.text}\n`);
    }
  } finally {
    client.close();
    await lines.return(undefined);
  }
  return EXIT_OK;
}

/**
 * Runs the client's command line; resolves with the exit status (see
 * {@linkcode USAGE}). Expected failures are printed as one line on stderr.
 */
export async function main(args: string[]): Promise<number> {
  let cli: CliOptions | "help";
  try {
    cli = parseClientArgs(args);
  } catch (error) {
    if (!(error instanceof ClientError)) throw error;
    printError(`${error.message}\n\n${USAGE}`);
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
    if (error instanceof ClientError) {
      printError(error.message);
      return EXIT_ERROR;
    }
    // Whoever reads our output has stopped (`| head`): there is no one left to tell.
    if (error instanceof Deno.errors.BrokenPipe) return EXIT_ERROR;
    throw error;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
