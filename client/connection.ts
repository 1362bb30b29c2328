/**
 * One connection to an addrbook server, plain or TLS: the
 * {@linkcode Connection} class that sends queries and reads the replies,
 * pipelined, and the {@linkcode ClientError} every expected failure of the
 * client is reported with. {@linkcode Client} (in `client/failover.ts`)
 * builds on it to survive a server going away.
 *
 * ```ts
 * import { Connection } from "./connection.ts";
 *
 * const connection = await Connection.open({ hostname: "127.0.0.1", port: 8080 });
 * try {
 *   const reply = await connection.lookup("ada@example.com"); // { status: 0, text: "Ada Lovelace" }
 * } finally {
 *   connection.close();
 * }
 * ```
 *
 * @module
 */

import { describeError, sentence } from "../common/errors.ts";
import { escapeForTerminal } from "../common/terminal_text.ts";
import { formatAddress } from "../common/net_address.ts";
import {
  decodeReply,
  encodeQuery,
  encodeQueryInto,
  FrameDecoder,
  MAX_QUERY_FRAME_BYTES,
  MAX_REPLY_BYTES,
  ProtocolError,
  type Reply,
  STATUS_BAD_REQUEST,
  STATUS_FORBIDDEN,
  STATUS_PROTOCOL_ERROR,
  STATUS_SERVER_BUSY,
  TYPE_REPLY,
} from "../protocol.ts";
import { writeAll } from "../common/write_all.ts";

/** How long to wait for a connection, or for a reply, before giving up. */
export const DEFAULT_TIMEOUT_MS = 5000;
/** Queries {@linkcode Connection.lookupMany} keeps in flight by default. */
export const DEFAULT_WINDOW = 256;

/** Bytes read from the socket at a time: room for a few thousand typical replies. */
const READ_BUFFER_SIZE = 65536;
/** Pending query bytes that are sent even before the window is full. */
const WRITE_BATCH_BYTES = 65536;
const MILLISECONDS_PER_SECOND = 1000;
const MAX_PORT = 65535;
/** The first byte of a TLS alert record and of a TLS handshake record. */
const TLS_ALERT_RECORD = 0x15;
const TLS_HANDSHAKE_RECORD = 0x16;
/** What a plain connection to a TLS port was probably met by, and what to do. */
const MAY_REQUIRE_TLS = "the server may require TLS: try --tls";

/**
 * The TLS library's (rustls through Deno) words for mistakes a user makes,
 * and what to tell them instead: what is wrong and what to do.
 */
const TLS_ERROR_ADVICE: readonly (readonly [RegExp, string])[] = [
  // rustls reads a v1 certificate (`openssl x509 -req` without -extfile) as unsupported.
  [
    /UnsupportedCertVersion/,
    "--cert is an X.509 v1 certificate; make it with extensions (see README)",
  ],
  [/KeyMismatch/, "--cert and --key do not belong together"],
  // A plain server's first bytes are a reply frame, which is no TLS record.
  [/InvalidContentType|corrupt message/i, "the server does not speak TLS on this port: drop --tls"],
];

/** What a TLS library's error message means for the user, when it is a known mistake. */
function tlsAdvice(message: string): string | undefined {
  return TLS_ERROR_ADVICE.find(([pattern]) => pattern.test(message))?.[1];
}

/** Where a server listens. */
export interface Endpoint {
  /** Its host name or IP address (IPv6 without brackets). */
  hostname: string;
  /** Its port. */
  port: number;
}

/** How to connect, for {@linkcode Connection.open}. */
export interface ConnectionOptions {
  /**
   * Milliseconds to wait for the connection (and TLS handshake), and then
   * for each reply; 0 waits forever. {@linkcode DEFAULT_TIMEOUT_MS} by default.
   */
  timeoutMs?: number;
  /** Connect with TLS. Implied by `caCerts` and by `cert`. */
  tls?: boolean;
  /** Extra CA certificates (PEM text) to trust for TLS, for a server with its own CA. */
  caCerts?: string[];
  /** A client certificate chain (PEM text) to present to a server that asks for one; needs `key`. */
  cert?: string;
  /** The private key (PEM text) of `cert`. */
  key?: string;
}

/** What went wrong, for callers that react differently to each. */
export type ClientErrorCode =
  | "connect"
  | "timeout"
  | "closed"
  | "protocol"
  | "slow"
  | "busy"
  | "tls"
  | "usage";

/**
 * An expected failure of the client, with a one-sentence message fit to
 * show a user, such as `Cannot connect to 127.0.0.1:8080 (connection
 * refused): check that the server is running.` `code` says which kind:
 *
 * - `connect`: no connection could be made;
 * - `timeout`: no connection, or not a byte of a reply, within the timeout;
 * - `closed`: the connection was lost before every reply came, or the client closed;
 * - `protocol`: the server sent a malformed reply or reported a protocol error;
 * - `slow`: the server sent part of a reply and not the rest within the timeout (not
 *   retried, as a broken reply is not: a server that trickles would trickle again);
 * - `busy`: the server is at its connection limit (try again later);
 * - `tls`: the TLS handshake failed, or the server refused the client certificate;
 * - `usage`: a bad option, such as a port out of range.
 *
 * After any error but `usage`, the connection is closed.
 */
export class ClientError extends Error {
  /** Which kind of failure this is. */
  readonly code: ClientErrorCode;

  /** Creates the error with its kind and a one-sentence message. */
  constructor(code: ClientErrorCode, message: string) {
    super(message);
    this.name = "ClientError";
    this.code = code;
  }
}

/**
 * Checks the options every connection shares, so a bad one is a usage
 * error before anything is attempted.
 *
 * @throws {ClientError} `usage` for a port out of range, a negative
 * timeout, an empty host name, or a certificate without its key.
 */
export function checkConnectionOptions(endpoint: Endpoint, options: ConnectionOptions): void {
  const { hostname, port } = endpoint;
  if (!Number.isInteger(port) || port < 1 || port > MAX_PORT) {
    throw new ClientError(
      "usage",
      `The port must be a whole number from 1 to ${MAX_PORT}, not ${port}.`,
    );
  }
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!(timeoutMs >= 0 && Number.isFinite(timeoutMs))) {
    throw new ClientError("usage", `The timeout must be 0 or more milliseconds, not ${timeoutMs}.`);
  }
  if (hostname === "") throw new ClientError("usage", "The host name is empty.");
  if ((options.cert === undefined) !== (options.key === undefined)) {
    throw new ClientError(
      "usage",
      "A client certificate needs its key, and a key its certificate: give both or neither.",
    );
  }
}

/**
 * One connection to an addrbook server.
 *
 * Calls on one connection are answered one at a time, in the order they
 * were made; for throughput, send many queries with {@linkcode lookupMany},
 * which pipelines them. A query longer than the protocol allows is not sent:
 * it is answered locally with a BAD_REQUEST reply saying so.
 *
 * Once the server answers FORBIDDEN it closes the connection, so every
 * query still owed, and every later one, is answered with that same
 * FORBIDDEN reply.
 */
export class Connection {
  /** The server's address as `host:port`, for messages. */
  readonly address: string;
  readonly #conn: Deno.Conn;
  readonly #tls: boolean;
  readonly #presentsCert: boolean;
  readonly #timeoutMs: number;
  readonly #decoder = new FrameDecoder({ type: TYPE_REPLY, maxPayload: MAX_REPLY_BYTES });
  readonly #readBuffer = new Uint8Array(READ_BUFFER_SIZE);
  /** Replies decoded from the last read and not yet returned, from `#replyHead` on. */
  readonly #replies: Reply[] = [];
  #replyHead = 0;
  /** Whether any reply has come: a TLS server that ends a connection before one may have refused us. */
  #replied = false;
  /** Whether any byte has come: a TLS port closes a plain connection without a word. */
  #heardAny = false;
  /** The FORBIDDEN reply, once the server sent one: it answers every query after it. */
  #forbidden: Reply | undefined;
  /** Set once the connection is unusable; every later call throws it. */
  #failure: ClientError | undefined;
  /** The tail of the queue of calls, each waiting for the one before. */
  #turn: Promise<void> = Promise.resolve();
  /**
   * Milliseconds spent in reads since the last whole reply came: the timeout
   * bounds a whole reply, so that a server trickling a byte now and then
   * cannot hold the client. Time the caller spends elsewhere (writing
   * output, waiting for input) is not counted.
   */
  #waitedMs = 0;
  /** Whether bytes of a reply not yet whole have come since the last whole one. */
  #partReceived = false;

  private constructor(conn: Deno.Conn, address: string, options: ConnectionOptions) {
    this.#conn = conn;
    this.address = address;
    this.#tls = "handshake" in conn;
    this.#presentsCert = options.cert !== undefined;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    // Queries are written whole, so Nagle's delay would only add latency.
    (conn as Deno.TcpConn).setNoDelay?.(true);
  }

  /**
   * Connects to a server (and completes the TLS handshake, with `tls`).
   *
   * @throws {ClientError} `connect` when the server cannot be reached, `tls`
   * when the handshake fails, `timeout` when that takes too long, `usage`
   * for a bad option.
   */
  static async open(endpoint: Endpoint, options: ConnectionOptions = {}): Promise<Connection> {
    checkConnectionOptions(endpoint, options);
    const { hostname, port } = endpoint;
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const tls = options.tls === true || options.caCerts !== undefined ||
      options.cert !== undefined;
    const address = formatAddress(hostname, port);
    const deadline = new Deadline(timeoutMs);
    let conn: Deno.Conn | undefined;
    try {
      conn = await deadline.race<Deno.Conn>(
        tls && options.cert !== undefined
          ? Deno.connectTls({
            hostname,
            port,
            caCerts: options.caCerts,
            cert: options.cert,
            key: options.key!,
          })
          : Deno.connect({ hostname, port, signal: deadline.signal }),
        (late) => late.close(),
      );
    } catch (error) {
      deadline.clear();
      throw connectError(error, address, hostname, deadline.expired ? timeoutMs : undefined);
    }
    if (tls) {
      try {
        if (options.cert === undefined) {
          // Nagle off before the handshake: otherwise the first query waits
          // behind the client's unacknowledged Finished for the server's
          // delayed ACK, some 40 ms. A TlsConn cannot turn it off, and
          // Deno.startTls cannot present a client certificate (Deno 2.9), so
          // with --cert connectTls still pays it.
          (conn as Deno.TcpConn).setNoDelay(true);
          conn = await deadline.race(
            Deno.startTls(conn as Deno.TcpConn, { hostname, caCerts: options.caCerts }),
            (late) => late.close(),
          );
        }
        await deadline.race((conn as Deno.TlsConn).handshake());
      } catch (error) {
        closeQuietly(conn); // the TCP connection, or the TLS one that took it over
        if (deadline.expired) {
          throw new ClientError(
            "timeout",
            `TLS handshake with ${address} failed: timed out after ${formatSeconds(timeoutMs)}.`,
          );
        }
        const message = describeError(error);
        throw new ClientError(
          "tls",
          `TLS handshake with ${address} failed: ${sentence(tlsAdvice(message) ?? message)}`,
        );
      } finally {
        deadline.clear();
      }
    }
    deadline.clear();
    return new Connection(conn, address, options);
  }

  /** The error that ended this connection, or `undefined` while it is usable. */
  get failure(): ClientError | undefined {
    return this.#failure;
  }

  /**
   * Looks up one address. Resolves with the server's reply: FOUND with the
   * name, NOT_FOUND, BAD_REQUEST saying why the query is not an address,
   * RATE_LIMITED or FORBIDDEN.
   *
   * @throws {ClientError} when there is no reply: the connection was lost
   * (`closed`), no reply came in time (`timeout`), the reply was malformed or
   * a PROTOCOL_ERROR (`protocol`), the server is full (`busy`), or it
   * refused the TLS connection (`tls`).
   */
  async lookup(email: string): Promise<Reply> {
    const release = await this.#takeTurn();
    try {
      this.#throwIfFailed();
      const frame = queryFrame(email);
      if (!(frame instanceof Uint8Array)) return frame;
      // A write that fails means the server has gone; the read says how (it
      // may still deliver a SERVER_BUSY or PROTOCOL_ERROR sent just before).
      if (this.#forbidden === undefined) await writeAll(this.#conn, frame).catch(() => {});
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
   * flight closes the connection, since their replies would otherwise be
   * taken for the answers to later calls.
   *
   * ```ts
   * import { Connection } from "./connection.ts";
   *
   * const connection = await Connection.open({ hostname: "127.0.0.1", port: 8080 });
   * const emails = ["ada@example.com", "alan@example.com"];
   * let i = 0;
   * for await (const reply of connection.lookupMany(emails)) {
   *   console.log(emails[i++], reply.status, reply.text);
   * }
   * connection.close();
   * ```
   *
   * @throws {ClientError} as {@linkcode lookup} does; errors thrown by `emails` pass through.
   */
  async *lookupMany(
    emails: Iterable<string> | AsyncIterable<string>,
    window: number = DEFAULT_WINDOW,
  ): AsyncGenerator<Reply> {
    for await (const replies of this.lookupBatches(emails, window)) yield* replies;
  }

  /**
   * {@linkcode lookupMany}, yielding the replies in runs: each run holds
   * every reply already received, in order, and comes as soon as the next
   * reply would have to be waited for. A caller that adds a layer of its
   * own per reply pays for it once per run, not once per reply.
   *
   * @throws {ClientError} as {@linkcode lookup} does; errors thrown by `emails` pass through.
   */
  async *lookupBatches(
    emails: Iterable<string> | AsyncIterable<string>,
    window: number = DEFAULT_WINDOW,
  ): AsyncGenerator<Reply[]> {
    if (!Number.isInteger(window) || window < 1) {
      throw new ClientError(
        "usage",
        `The window must be a whole number of 1 or more, not ${window}.`,
      );
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
          await writeAll(this.#conn, bytes);
        } catch {
          // The server has gone; the read in the loop below reports how.
          writeFailed = true;
        }
      });
    };
    const add = (email: string) => {
      if (batch.length - batchLength < MAX_QUERY_FRAME_BYTES) flush();
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
      // Replies already received are handed over together, before any wait.
      let ready: Reply[] = [];
      for (;;) {
        if (yielded === added) {
          if (ready.length > 0) {
            yield ready;
            ready = [];
            continue;
          }
          if (sourceDone) break;
          await new Promise<void>((resolve) => wakeReader = resolve);
          continue;
        }
        let reply = localReplies.size > 0 ? localReplies.get(yielded) : undefined;
        if (reply !== undefined) {
          localReplies.delete(yielded);
        } else {
          try {
            reply = this.#takeReply();
          } catch (error) {
            // The replies before a PROTOCOL_ERROR or SERVER_BUSY are still answers.
            if (ready.length > 0) yield ready;
            throw error;
          }
          if (reply === undefined) {
            if (ready.length > 0) {
              yield ready;
              ready = [];
              continue;
            }
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
        ready.push(reply);
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
              "The client was closed: lookupMany stopped with replies owed.",
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
    this.#fail(new ClientError("closed", "The client is closed."));
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
        new ClientError(
          "protocol",
          `The server at ${this.address} reported a protocol error: ${
            sentence(escapeForTerminal(reply.text))
          }`,
        ),
      );
    }
    if (reply.status === STATUS_SERVER_BUSY) {
      throw this.#fail(
        new ClientError(
          "busy",
          `The server at ${this.address} is busy: ${sentence(escapeForTerminal(reply.text))}`,
        ),
      );
    }
    if (reply.status === STATUS_FORBIDDEN && this.#forbidden === undefined) {
      // The server closes after it; what it would have said to the rest is this.
      this.#forbidden = reply;
      this.#replies.length = this.#replyHead;
      closeQuietly(this.#conn);
    }
    return reply;
  }

  /** Reads once and decodes every reply the read completed. */
  async #receive(): Promise<void> {
    this.#replies.length = 0;
    this.#replyHead = 0;
    this.#throwIfFailed();
    if (this.#forbidden !== undefined) {
      this.#replies.push(this.#forbidden);
      return;
    }
    const received = await this.#read();
    if (received === null) throw this.#fail(this.#closedError());
    if (received > 0) this.#heardAny = true;
    // Every frame is decoded now, so the buffer is free for the next read.
    this.#decoder.push(this.#readBuffer.subarray(0, received));
    try {
      for (let payload; (payload = this.#decoder.next()) !== null;) {
        this.#replies.push(decodeReply(payload));
      }
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
      const first = this.#readBuffer[0];
      const looksTls = !this.#tls && received > 0 &&
        (first === TLS_ALERT_RECORD || first === TLS_HANDSHAKE_RECORD);
      throw this.#fail(
        new ClientError(
          "protocol",
          looksTls
            ? `The server at ${this.address} answered with TLS, not the addrbook protocol; ${MAY_REQUIRE_TLS}.`
            : `The server at ${this.address} sent a malformed reply: ${sentence(error.message)}`,
        ),
      );
    }
    if (this.#replies.length > 0) {
      this.#replied = true;
      this.#waitedMs = 0;
      this.#partReceived = false;
    } else {
      this.#partReceived = true;
    }
  }

  /** One read into the reused buffer, within what is left of the timeout for the reply awaited. */
  async #read(): Promise<number | null> {
    const budgetMs = this.#timeoutMs - this.#waitedMs;
    if (this.#timeoutMs > 0 && budgetMs <= 0) throw this.#fail(this.#timeoutError());
    let timedOut = false;
    const timer = this.#timeoutMs > 0
      ? setTimeout(() => {
        timedOut = true;
        this.#fail(this.#timeoutError());
      }, budgetMs)
      : undefined;
    const started = performance.now();
    try {
      return await this.#conn.read(this.#readBuffer);
    } catch (error) {
      if (this.#failure !== undefined) throw this.#failure;
      throw this.#fail(this.#readError(error));
    } finally {
      this.#waitedMs += performance.now() - started;
      if (!timedOut) clearTimeout(timer);
    }
  }

  /** The error for a reply not whole within the timeout: silence, or a trickle. */
  #timeoutError(): ClientError {
    const within = formatSeconds(this.#timeoutMs);
    return this.#partReceived
      ? new ClientError(
        "slow",
        `The server at ${this.address} sent only part of a reply within ${within}.`,
      )
      : new ClientError("timeout", `No reply from ${this.address} within ${within}.`);
  }

  /** The error for a read that failed. */
  #readError(error: unknown): ClientError {
    const message = describeError(error);
    // With TLS 1.3 a server checks the client's certificate after the
    // client's handshake is done, so its refusal comes as an alert on the first read.
    if (this.#tls && /fatal alert/i.test(message)) {
      return new ClientError("tls", this.#refusalMessage(message));
    }
    if (
      error instanceof Deno.errors.ConnectionReset ||
      error instanceof Deno.errors.ConnectionAborted ||
      error instanceof Deno.errors.BrokenPipe ||
      error instanceof Deno.errors.UnexpectedEof
    ) {
      return this.#closedError();
    }
    return new ClientError(
      "closed",
      `The connection to ${this.address} failed: ${sentence(message)}`,
    );
  }

  #refusalMessage(alert: string): string {
    const what = /CertificateRequired/i.test(alert)
      ? "it requires a client certificate: give --cert and --key"
      : this.#presentsCert
      ? "it did not accept the client certificate given by --cert"
      : "check --tls, --ca, --cert and --key";
    return `The server at ${this.address} refused the TLS connection (${alert}): ${what}.`;
  }

  #closedError(): ClientError {
    // Without an alert, a TLS server that ends the connection before any
    // reply may still have refused the certificate; say so, as a guess.
    // A TLS port ends a plain connection without a byte: say that too.
    const hint = this.#tls && !this.#replied
      ? this.#presentsCert
        ? " (did it refuse the client certificate?)"
        : " (does it require a client certificate?)"
      : !this.#tls && !this.#heardAny
      ? `; ${MAY_REQUIRE_TLS}`
      : "";
    return new ClientError(
      "closed",
      `The server at ${this.address} closed the connection before replying${hint}.`,
    );
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
      const onAbort = () => reject(new Error("Timed out."));
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
  const prefix = `Cannot connect to ${address}`;
  if (timedOutAfterMs !== undefined) {
    return new ClientError(
      "timeout",
      `${prefix}: timed out after ${formatSeconds(timedOutAfterMs)}.`,
    );
  }
  if (error instanceof Deno.errors.ConnectionRefused) {
    return new ClientError(
      "connect",
      `${prefix} (connection refused): check that the server is running.`,
    );
  }
  if (error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied) {
    return new ClientError(
      "connect",
      `${prefix}: network access is not allowed (run with --allow-net).`,
    );
  }
  const message = describeError(error);
  if (/lookup address|Name or service not known|nodename nor servname/i.test(message)) {
    return new ClientError("connect", `${prefix}: unknown host "${hostname}".`);
  }
  // Client certificate files that are not a certificate and its key fail here, before any I/O.
  const advice = tlsAdvice(message);
  if (advice !== undefined) return new ClientError("tls", sentence(advice));
  if (/certificate|private key|\bpem\b/i.test(message)) {
    return new ClientError("tls", `${prefix}: ${sentence(message)}`);
  }
  return new ClientError("connect", `${prefix}: ${sentence(message)}`);
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Closed already: nothing more to release.
  }
}

function formatSeconds(milliseconds: number): string {
  return `${milliseconds / MILLISECONDS_PER_SECOND} s`;
}
