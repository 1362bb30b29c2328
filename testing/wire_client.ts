/**
 * One hand-made protocol client for every test that speaks to a server on
 * the wire: it writes whatever bytes a test wants, valid or not, and
 * decodes the `R` frames that come back with the real codec. It runs over
 * a plain connection, a TLS one, or a socket bound to another loopback
 * source address (127.0.0.2, ...), so that the server sees another host.
 *
 * Every read is bounded by a deadline, so a broken server fails a test
 * with a message instead of hanging it. How the connection ended is kept
 * ({@linkcode WireClient.ending}): a FIN or a reset. A reset ends the
 * stream like a FIN unless the client was made with `resets: "throw"`, for
 * tests in which a reset is a failure.
 *
 * ```ts ignore
 * import { withWireClient } from "./wire_client.ts";
 *
 * await withWireClient(port, async (client) => {
 *   const reply = await client.query("ada@example.com"); // { status: 0, text: "Ada Lovelace" }
 * });
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import net from "node:net";
import {
  decodeReply,
  encodeQuery,
  FrameDecoder,
  MAX_REPLY_BYTES,
  type Reply,
  TYPE_REPLY,
} from "../protocol.ts";
import { writeAll } from "../common/write_all.ts";
import { EVENT_DEADLINE_MS, withDeadline } from "./deadlines.ts";
import { LOOPBACK } from "./loopback.ts";

/** How a connection ended, seen from the client: a FIN, or a reset. */
export type Ending = "eof" | "reset";

/**
 * What a reset does to a read: `"end"` ends the stream as a FIN does (and
 * {@linkcode WireClient.ending} says which it was); `"throw"` rejects the
 * read with the `Deno.errors.ConnectionReset`.
 */
export type ResetHandling = "end" | "throw";

/** How a {@linkcode WireClient} takes what happens to its connection. */
export interface WireClientOptions {
  /** What a reset does to a read; `"end"` unless told. */
  resets?: ResetHandling;
}

/** Where a {@linkcode WireClient} connects, and how it takes a reset. */
export interface ConnectOptions extends WireClientOptions {
  /** The server's address; {@linkcode LOOPBACK} unless told. */
  hostname?: string;
}

/** The connection under a {@linkcode WireClient}: a `Deno.Conn` is one. */
export interface WireConn {
  /** Reads into `buffer`: how many bytes, or null at the end; a reset rejects. */
  read(buffer: Uint8Array): Promise<number | null>;
  /** Writes some of `bytes` and says how many. */
  write(bytes: Uint8Array): Promise<number>;
  /** Half-closes: the server sees the end of input, and the client can still read. */
  closeWrite(): Promise<void>;
  /** Closes the connection. */
  close(): void;
  /** How the server ended it, for connections told so by events rather than by a read. */
  readonly ending?: Ending;
  /** The source address it is bound to, when it was chosen. */
  readonly source?: string;
}

const READ_SIZE = 65536;

/** A protocol client on one connection; disposing of it closes the connection. */
export class WireClient<C extends WireConn = Deno.Conn> implements Disposable {
  /** The connection. */
  readonly conn: C;
  readonly #resets: ResetHandling;
  readonly #decoder = new FrameDecoder({ type: TYPE_REPLY, maxPayload: MAX_REPLY_BYTES });
  readonly #buffer = new Uint8Array(READ_SIZE);
  #ending: Ending | undefined;
  #closed = false;

  /** Wraps a connection made elsewhere (a TLS one made with options of its own, say). */
  constructor(conn: C, options: WireClientOptions = {}) {
    this.conn = conn;
    this.#resets = options.resets ?? "end";
  }

  /** Connects over plain TCP, each write its own segment (tests that write byte by byte mean it). */
  static async connect(
    port: number,
    options: ConnectOptions = {},
  ): Promise<WireClient<Deno.TcpConn>> {
    const { hostname = LOOPBACK } = options;
    const conn = await withDeadline(
      Deno.connect({ hostname, port }),
      `a connection to ${hostname}:${port}`,
    );
    conn.setNoDelay(true);
    return new WireClient(conn, options);
  }

  /** Connects over plain TCP from `source`, a loopback address the server takes for another host. */
  static async connectFrom(
    port: number,
    source: string,
    options: ConnectOptions = {},
  ): Promise<WireClient<SourceBoundConn>> {
    return new WireClient(
      await SourceBoundConn.connect(port, source, options.hostname ?? LOOPBACK),
      options,
    );
  }

  /** Connects with TLS to {@linkcode LOOPBACK}, checking the certificate against `serverName`. */
  static async connectTls(
    serverName: string,
    port: number,
    caPem: string,
    options: WireClientOptions = {},
  ): Promise<WireClient<Deno.TlsConn>> {
    if (serverName === LOOPBACK) {
      const conn = await Deno.connectTls({ hostname: LOOPBACK, port, caCerts: [caPem] });
      return new WireClient(conn, options);
    }
    // A name is checked over a connection to 127.0.0.1, so the test does not
    // depend on whether this machine resolves "localhost" to 127.0.0.1 or ::1.
    const tcp = await Deno.connect({ hostname: LOOPBACK, port });
    const conn = await Deno.startTls(tcp, { hostname: serverName, caCerts: [caPem] });
    return new WireClient(conn, options);
  }

  /** How the server ended the connection, once seen: a FIN or a reset. */
  get ending(): Ending | undefined {
    return this.#ending ?? this.conn.ending;
  }

  /** Writes all of `bytes`. */
  write(bytes: Uint8Array): Promise<void> {
    return writeAll(this.conn, bytes);
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
  readReply(ms = EVENT_DEADLINE_MS): Promise<Reply | null> {
    return this.#bounded(this.#readReply(), "a reply frame", ms);
  }

  /** Reads exactly `count` replies; fails if the connection ends first. */
  readReplies(count: number, ms = EVENT_DEADLINE_MS): Promise<Reply[]> {
    return this.#bounded(
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

  /** Reads every reply until the server closes the connection. */
  readUntilClosed(ms = EVENT_DEADLINE_MS): Promise<Reply[]> {
    return this.#bounded(
      (async () => {
        const replies: Reply[] = [];
        for (let reply; (reply = await this.#readReply()) !== null;) replies.push(reply);
        return replies;
      })(),
      "the server to close the connection",
      ms,
    );
  }

  /**
   * The next bytes received, as they come and whatever they are, or `null`
   * at the end; for a server that may answer with no frame at all (a TLS
   * alert). Bytes the reply decoder holds already are not among them.
   */
  async readBytes(ms = EVENT_DEADLINE_MS): Promise<Uint8Array | null> {
    const received = await this.#bounded(this.#read(), "bytes from the server", ms);
    return received === null ? null : this.#buffer.slice(0, received);
  }

  /** Half-closes: the server sees end of input, and the client can still read. */
  closeWrite(): Promise<void> {
    return this.conn.closeWrite();
  }

  /** Closes the connection; safe to call more than once. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn.close();
    } catch {
      // Closed already by a failed operation.
    }
  }

  /** Closes the connection. */
  [Symbol.dispose](): void {
    this.close();
  }

  /** `promise` within `ms`; at the deadline the connection is closed, so no read is left pending. */
  #bounded<T>(promise: Promise<T>, what: string, ms: number): Promise<T> {
    const from = this.conn.source === undefined ? "" : ` on a client from ${this.conn.source}`;
    return withDeadline(promise, `${what}${from}`, ms, () => this.close());
  }

  async #readReply(): Promise<Reply | null> {
    for (;;) {
      const payload = this.#decoder.next();
      if (payload !== null) return decodeReply(payload);
      const received = this.#ending === undefined ? await this.#read() : null;
      if (received === null) return this.#end();
      // The decoder reads the chunk in place: give it a copy, as the buffer is reused.
      this.#decoder.push(this.#buffer.slice(0, received));
    }
  }

  /** One read into the buffer, a reset taken as {@linkcode ResetHandling} says. */
  async #read(): Promise<number | null> {
    try {
      const received = await this.conn.read(this.#buffer);
      if (received === null) this.#ending ??= "eof";
      return received;
    } catch (error) {
      if (!(error instanceof Deno.errors.ConnectionReset)) throw error;
      this.#ending = "reset";
      if (this.#resets === "throw") throw error;
      return null;
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
 * Connects a {@linkcode WireClient} to `port` on {@linkcode LOOPBACK}, runs
 * `body` with it, and closes it however the body ends.
 */
export async function withWireClient<T>(
  port: number,
  body: (client: WireClient<Deno.TcpConn>) => Promise<T>,
): Promise<T> {
  using client = await WireClient.connect(port);
  return await body(client);
}

/** {@linkcode withWireClient} with the client's socket bound to `source`. */
export async function withWireClientFrom<T>(
  port: number,
  source: string,
  body: (client: WireClient<SourceBoundConn>) => Promise<T>,
): Promise<T> {
  using client = await WireClient.connectFrom(port, source);
  return await body(client);
}

/**
 * A TCP connection whose socket is bound to a chosen source address before
 * it connects: `Deno.connect` cannot bind a source, `node:net` can. It
 * learns of the server's FIN or reset by events, before any read, and a
 * reset rejects a read with `Deno.errors.ConnectionReset`, as a `Deno.Conn`
 * does.
 */
export class SourceBoundConn implements WireConn {
  /** The address the socket is bound to. */
  readonly source: string;
  readonly #socket: net.Socket;
  readonly #chunks: Uint8Array[] = [];
  #ending: Ending | undefined;
  #failure: Error | undefined;
  #wake: (() => void) | undefined;

  private constructor(socket: net.Socket, source: string) {
    this.#socket = socket;
    this.source = source;
    socket.on("data", (chunk: Uint8Array) => {
      this.#chunks.push(new Uint8Array(chunk));
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

  /** Connects from `source` to `hostname` on `port`. */
  static async connect(port: number, source: string, hostname: string): Promise<SourceBoundConn> {
    const socket = net.connect({ host: hostname, port, localAddress: source, noDelay: true });
    const conn = new SourceBoundConn(socket, source);
    await withDeadline(
      new Promise<void>((resolve, reject) => {
        socket.once("connect", resolve);
        socket.once("error", reject);
      }),
      `a connection from ${source} to port ${port}`,
      EVENT_DEADLINE_MS,
      () => socket.destroy(),
    );
    return conn;
  }

  /** How the server ended the connection, once an event said so. */
  get ending(): Ending | undefined {
    return this.#ending;
  }

  /** Waits for bytes and moves as many as fit into `buffer`; null at a FIN. */
  async read(buffer: Uint8Array): Promise<number | null> {
    for (;;) {
      const chunk = this.#chunks[0];
      if (chunk !== undefined) {
        const taken = Math.min(chunk.length, buffer.length);
        buffer.set(chunk.subarray(0, taken));
        if (taken === chunk.length) this.#chunks.shift();
        else this.#chunks[0] = chunk.subarray(taken);
        return taken;
      }
      if (this.#failure !== undefined) throw this.#failure;
      if (this.#ending === "reset") {
        throw new Deno.errors.ConnectionReset(
          `The server reset the connection from ${this.source}.`,
        );
      }
      if (this.#ending === "eof") return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
  }

  /** Writes all of `bytes`; resolves once the socket took them. */
  async write(bytes: Uint8Array): Promise<number> {
    await withDeadline(
      new Promise<void>((resolve, reject) =>
        this.#socket.write(bytes, (error) => error ? reject(error) : resolve())
      ),
      `a write from ${this.source} to be taken`,
    );
    return bytes.length;
  }

  /** Half-closes: the server sees the end of input, and the client can still read. */
  closeWrite(): Promise<void> {
    this.#socket.end();
    return Promise.resolve();
  }

  /** Closes the socket; safe to call more than once. */
  close(): void {
    this.#socket.destroy();
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
