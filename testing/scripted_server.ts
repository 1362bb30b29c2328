/**
 * A real TCP server that speaks the protocol with answers a test chooses,
 * for replies the real server does not send on demand (FORBIDDEN,
 * RATE_LIMITED, a close after a given query), so that a client's handling
 * of each can be tested.
 *
 * ```ts
 * import { ScriptedServer } from "./scripted_server.ts";
 * import { STATUS_RATE_LIMITED } from "../protocol.ts";
 *
 * await using server = new ScriptedServer({
 *   answer: () => ({ status: STATUS_RATE_LIMITED, text: "slow down" }),
 * });
 * console.log(server.port);
 * ```
 *
 * @module
 */

import { encodeReply, FrameDecoder, MAX_QUERY_BYTES, type Reply, TYPE_QUERY } from "../protocol.ts";
import { writeAll } from "../common/write_all.ts";
import { withDeadline } from "./deadlines.ts";
import { concat } from "./frames.ts";
import { LOOPBACK } from "./loopback.ts";

/** What a {@linkcode ScriptedServer} does with one query: reply, or reply and then close. */
export type ScriptedAnswer = Reply | { reply: Reply; thenClose: true };

/** How a {@linkcode ScriptedServer} behaves. */
export interface ScriptedServerOptions {
  /** The reply to query number `index` (counted over all connections) for `email`. */
  answer: (email: string, index: number) => ScriptedAnswer;
  /** A reply sent as soon as a connection is accepted, before reading, and then the close. */
  greeting?: Reply;
}

const READ_SIZE = 65536;

/**
 * A server on {@linkcode LOOPBACK} answering as {@linkcode ScriptedServerOptions}
 * say. Every connection it closes is half-closed first and its input read
 * to the end, so the client's kernel never turns the close into a reset
 * that loses replies.
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
