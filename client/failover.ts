/**
 * The {@linkcode Client} class: lookups on one server, or on a list of
 * replicas that it fails over between. When a connection is refused, reset,
 * closed with replies still owed (a server draining for a restart) or
 * silent past the timeout, the client connects to the next host, after a
 * short pause once every host has failed, and sends again exactly the
 * queries that have no reply yet, so a batch's replies stay complete and in
 * order. Lookups change nothing on the server, so sending one twice is safe.
 *
 * It gives up after {@linkcode DEFAULT_ROUNDS} rounds in which every host
 * failed with no reply in between.
 *
 * ```ts
 * import { Client } from "./failover.ts";
 *
 * const client = await Client.connect({ hosts: "127.0.0.1:8080,127.0.0.1:8081" });
 * try {
 *   for await (const reply of client.lookupMany(["ada@example.com", "grace@example.com"])) {
 *     console.log(reply.status, reply.text);
 *   }
 * } finally {
 *   client.close();
 * }
 * ```
 *
 * @module
 */

import {
  checkConnectionOptions,
  ClientError,
  type ClientErrorCode,
  Connection,
  type ConnectionOptions,
  DEFAULT_WINDOW,
  type Endpoint,
} from "./connection.ts";
import { parseHostList } from "./hosts.ts";
import { formatAddress } from "../common/net_address.ts";
import { type Reply, STATUS_RATE_LIMITED } from "../protocol.ts";
import { Pacer } from "./pacing.ts";

/** The server's address when none is given. */
export const DEFAULT_HOSTNAME = "127.0.0.1";
/** The server's port when none is given. */
export const DEFAULT_PORT = 8080;
/** Rounds over every host, each failing with no reply in between, before the client gives up. */
export const DEFAULT_ROUNDS = 3;
/** The pause after the first round in which every host failed; it doubles each round. */
export const FIRST_BACKOFF_MS = 100;
/** The longest pause between rounds. */
export const MAX_BACKOFF_MS = 1000;

/** Options for {@linkcode Client.connect}. */
export interface ClientOptions extends ConnectionOptions {
  /** The server's host name or IP address; {@linkcode DEFAULT_HOSTNAME} by default. */
  hostname?: string;
  /** The server's port, and the port of every entry of `hosts` that has none; {@linkcode DEFAULT_PORT} by default. */
  port?: number;
  /**
   * Several servers to fail over between, tried in order, in place of
   * `hostname`: endpoints, or text such as `"a.example,b.example:9000,[::1]:8080"`.
   */
  hosts?: string | readonly Endpoint[];
  /** Rounds over every host before giving up; {@linkcode DEFAULT_ROUNDS} by default. */
  rounds?: number;
  /**
   * When the server answers RATE_LIMITED, {@linkcode Client.lookupMany}
   * waits and sends the refused queries again (client/pacing.ts) instead of
   * yielding the refusal, for at most this many milliseconds with nothing
   * answered; then it yields the RATE_LIMITED reply. Off (0) by default:
   * the refusal is yielded at once.
   */
  maxRateLimitWaitMs?: number;
}

/** The kinds of failure another attempt, perhaps on another host, may get past. */
const RETRYABLE: readonly ClientErrorCode[] = ["connect", "timeout", "closed", "busy"];

/** Whether `error` is a failure of the server or the network that another attempt may get past. */
export function isRetryable(error: unknown): error is ClientError {
  return error instanceof ClientError && RETRYABLE.includes(error.code);
}

/**
 * The pause before the next attempt after `failures` failed attempts in a
 * row over `hosts` hosts: none within a round, then
 * {@linkcode FIRST_BACKOFF_MS}, doubling each round up to
 * {@linkcode MAX_BACKOFF_MS}.
 */
export function backoffMs(failures: number, hosts: number): number {
  if (failures === 0 || failures % hosts !== 0) return 0;
  const round = failures / hosts;
  return Math.min(FIRST_BACKOFF_MS * 2 ** (round - 1), MAX_BACKOFF_MS);
}

/**
 * A client of one or several addrbook servers. Calls on one client are
 * answered one at a time, in the order they were made; for throughput,
 * send many queries with {@linkcode lookupMany}, which pipelines them.
 *
 * Replies are reported per query: FOUND, NOT_FOUND, BAD_REQUEST, and
 * FORBIDDEN or RATE_LIMITED when the server refuses. What no reply answers
 * is a {@linkcode ClientError}.
 *
 * ```ts
 * import { Client } from "./failover.ts";
 * import { STATUS_FOUND } from "../protocol.ts";
 *
 * const client = await Client.connect({ port: 8080, timeoutMs: 2000 });
 * const reply = await client.lookup("Ada@Example.com");
 * if (reply.status === STATUS_FOUND) console.log(reply.text);
 * client.close();
 * ```
 */
export class Client {
  /** The servers, in the order they are tried. */
  readonly hosts: readonly Endpoint[];
  readonly #options: ConnectionOptions;
  readonly #rounds: number;
  readonly #maxRateLimitWaitMs: number;
  /** The pauses of the last {@linkcode lookupMany} paced by RATE_LIMITED replies. */
  #pacer: Pacer | undefined;
  #connection: Connection | undefined;
  #connecting: Promise<Connection> | undefined;
  /** The index in `hosts` of the host to try next. */
  #next = 0;
  /** Attempts that failed in a row, with no reply in between. */
  #failures = 0;
  /** Set once the client is closed; every later call throws it. */
  #closed: ClientError | undefined;

  private constructor(
    hosts: readonly Endpoint[],
    options: ConnectionOptions,
    rounds: number,
    maxRateLimitWaitMs: number,
  ) {
    this.hosts = hosts;
    this.#options = options;
    this.#rounds = rounds;
    this.#maxRateLimitWaitMs = maxRateLimitWaitMs;
  }

  /**
   * Connects to the first server that answers, trying each host in turn.
   *
   * @throws {ClientError} `usage` for a bad option; when every host failed
   * in every round, the last failure's kind, with a message that names it.
   */
  static async connect(options: ClientOptions = {}): Promise<Client> {
    const { hostname, port, hosts, rounds, maxRateLimitWaitMs, ...connection } = options;
    const endpoints = resolveHosts(hostname, port ?? DEFAULT_PORT, hosts);
    for (const endpoint of endpoints) checkConnectionOptions(endpoint, connection);
    const roundCount = rounds ?? DEFAULT_ROUNDS;
    if (!Number.isInteger(roundCount) || roundCount < 1) {
      throw new ClientError(
        "usage",
        `The rounds must be a whole number of 1 or more, not ${roundCount}.`,
      );
    }
    const waitMs = maxRateLimitWaitMs ?? 0;
    if (!(waitMs >= 0 && Number.isFinite(waitMs))) {
      throw new ClientError(
        "usage",
        `The longest wait when rate limited must be 0 or more milliseconds, not ${waitMs}.`,
      );
    }
    const client = new Client(endpoints, connection, roundCount, waitMs);
    await client.#current();
    return client;
  }

  /**
   * How the last {@linkcode lookupMany} was paced by RATE_LIMITED replies
   * (with `maxRateLimitWaitMs`): the pauses, their total, and whether it
   * gave up; `undefined` when it was not.
   */
  get pacing(): Readonly<Pick<Pacer, "waits" | "waitedMs" | "gaveUp">> | undefined {
    return this.#pacer?.waits || this.#pacer?.gaveUp ? this.#pacer : undefined;
  }

  /** The address, as `host:port`, of the server this client is connected to now (or will try next). */
  get address(): string {
    const endpoint = this.hosts[(this.#next + this.hosts.length - 1) % this.hosts.length];
    return formatAddress(endpoint.hostname, endpoint.port);
  }

  /**
   * Looks up one address, on another host if the connection fails first.
   *
   * @throws {ClientError} when no server gave a reply (see {@linkcode Client}),
   * or for a malformed reply (`protocol`) or a TLS refusal (`tls`).
   */
  async lookup(email: string): Promise<Reply> {
    for (;;) {
      const connection = await this.#current();
      try {
        const reply = await connection.lookup(email);
        this.#failures = 0;
        return reply;
      } catch (error) {
        await this.#recover(connection, error);
      }
    }
  }

  /**
   * Looks up many addresses, pipelined: up to `window` queries are in
   * flight at once, and the replies are yielded in the order of `emails`,
   * each as soon as it arrives. `emails` is read lazily, so it may be a
   * stream. When a connection fails, the queries it left unanswered are
   * sent again on the next one, in order, before any new query.
   *
   * With `maxRateLimitWaitMs`, a RATE_LIMITED reply is not yielded: the
   * client pauses and sends that query and every later one again, so the
   * batch finishes at the pace the server allows ({@linkcode pacing} tells
   * how it went).
   *
   * Stopping early (a `break`, or an error) while queries are still in
   * flight closes the client, since their replies would otherwise be taken
   * for the answers to later calls.
   *
   * ```ts
   * import { Client } from "./failover.ts";
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
    const queue = new ResendQueue(emails);
    const pacer = this.#maxRateLimitWaitMs > 0
      ? new Pacer({ maxWaitMs: this.#maxRateLimitWaitMs })
      : undefined;
    this.#pacer = pacer;
    let connection: Connection | undefined;
    let ended = false;
    try {
      for (;;) {
        connection = await this.#current();
        let pause: number | undefined;
        try {
          batches: for await (const replies of connection.lookupBatches(queue.feed(), window)) {
            this.#failures = 0;
            for (const reply of replies) {
              if (pacer !== undefined) {
                if (reply.status === STATUS_RATE_LIMITED) {
                  pause = pacer.rateLimited(Date.now());
                  // Stopping with replies owed closes the connection; the next one resends them.
                  if (pause !== undefined) break batches;
                } else {
                  pacer.answered();
                }
              }
              queue.answered();
              yield reply;
            }
          }
          if (pause === undefined) {
            ended = true;
            return;
          }
        } catch (error) {
          ended = true;
          await this.#recover(connection, error);
          ended = false;
        }
        if (pause !== undefined) await this.#pause(pause);
      }
    } finally {
      // Stopped by the caller with replies owed: the connection closed
      // itself, and so does the client, as the documentation says.
      if (!ended && connection?.failure !== undefined) this.#closed ??= connection.failure;
      await queue.close();
    }
  }

  /** Waits `ms` before the next attempt, unless the client is closed meanwhile. */
  async #pause(ms: number): Promise<void> {
    if (ms > 0) await new Promise((resolve) => setTimeout(resolve, ms));
    if (this.#closed) throw this.#closed;
  }

  /** Closes the client. Calls still waiting fail with a `closed` error. */
  close(): void {
    this.#closed ??= new ClientError("closed", "The client is closed.");
    this.#connection?.close();
  }

  /** The connection to use: the current one while it works, else a new one. */
  async #current(): Promise<Connection> {
    if (this.#closed) throw this.#closed;
    const connection = this.#connection;
    if (connection !== undefined && connection.failure === undefined) return connection;
    this.#connecting ??= this.#reconnect().finally(() => this.#connecting = undefined);
    return await this.#connecting;
  }

  async #reconnect(): Promise<Connection> {
    for (;;) {
      const endpoint = this.hosts[this.#next];
      this.#next = (this.#next + 1) % this.hosts.length;
      try {
        const connection = await Connection.open(endpoint, this.#options);
        if (this.#closed) {
          connection.close();
          throw this.#closed;
        }
        this.#connection = connection;
        return connection;
      } catch (error) {
        if (error === this.#closed || !isRetryable(error)) throw error;
        await this.#countFailure(error);
      }
    }
  }

  /**
   * After `connection` failed with `error`: returns once another attempt
   * may be made, or throws when none should be.
   */
  async #recover(connection: Connection, error: unknown): Promise<void> {
    if (this.#closed) throw this.#closed;
    if (!isRetryable(error)) {
      // A malformed reply or a TLS refusal would only come again: the client is done.
      if (error instanceof ClientError && error.code !== "usage") this.#closed = error;
      throw error;
    }
    // Calls waiting on the same connection see the same failure; it counts once.
    if (this.#connection !== connection) return;
    this.#connection = undefined;
    await this.#countFailure(error);
  }

  /** Counts a failed attempt: throws when every round is spent, else waits out the backoff. */
  async #countFailure(error: ClientError): Promise<void> {
    this.#failures++;
    if (this.#failures >= this.hosts.length * this.#rounds) {
      this.#failures = 0;
      throw this.#giveUp(error);
    }
    await this.#pause(backoffMs(this.#failures, this.hosts.length));
  }

  #giveUp(last: ClientError): ClientError {
    if (this.hosts.length === 1) return last;
    const where = this.hosts.map((host) => formatAddress(host.hostname, host.port)).join(", ");
    return new ClientError(
      last.code,
      `No server answered in ${this.#rounds} rounds over ${where}; the last error: ${last.message}`,
    );
  }
}

/** The endpoints that `hostname`, `port` and `hosts` name. */
function resolveHosts(
  hostname: string | undefined,
  port: number,
  hosts: string | readonly Endpoint[] | undefined,
): Endpoint[] {
  if (hosts === undefined) return [{ hostname: hostname ?? DEFAULT_HOSTNAME, port }];
  let endpoints: Endpoint[];
  try {
    endpoints = typeof hosts === "string" ? parseHostList(hosts, port) : [...hosts];
  } catch (error) {
    throw new ClientError("usage", (error as RangeError).message);
  }
  if (endpoints.length === 0) throw new ClientError("usage", "The list of hosts is empty.");
  return endpoints;
}

/**
 * The queries of one {@linkcode Client.lookupMany} call: what has been
 * taken from the caller's source and has no reply yet, in order. Each
 * attempt reads a {@linkcode feed}: those queries first, then new ones from
 * the source, which is read once whatever the number of attempts.
 */
export class ResendQueue {
  readonly #sync: Iterator<string> | undefined;
  readonly #async: AsyncIterator<string> | undefined;
  /** Queries taken from the source and not answered; `#items[0]` is query number `#offset`. */
  #items: string[] = [];
  #offset = 0;
  /** How many queries have been answered, in order. */
  #answered = 0;
  #sourceDone = false;
  #sourceFailed = false;
  #sourceError: unknown;
  /** The source's `next` in progress, which every feed waits on rather than asking again. */
  #pulling: Promise<IteratorResult<string>> | undefined;

  /** Reads `source` lazily, as feeds ask for more. */
  constructor(source: Iterable<string> | AsyncIterable<string>) {
    if (Symbol.iterator in source) this.#sync = source[Symbol.iterator]();
    else this.#async = source[Symbol.asyncIterator]();
  }

  /** Queries taken from the source and not answered yet. */
  get unanswered(): number {
    return this.#offset + this.#items.length - this.#answered;
  }

  /**
   * The queries for a new attempt: every one not answered yet, then the
   * rest of the source. Synchronous when the source is. Ending a feed
   * early leaves the source open for the next one.
   */
  feed(): Iterable<string> | AsyncIterable<string> {
    let cursor = this.#answered;
    if (this.#sync !== undefined) {
      const next = (): IteratorResult<string> => {
        if (cursor < this.#end) return { done: false, value: this.#at(cursor++) };
        if (this.#sourceDone) return { done: true, value: undefined };
        const result = this.#sync!.next();
        if (result.done) {
          this.#sourceDone = true;
          return result;
        }
        this.#items.push(result.value);
        cursor++;
        return result;
      };
      const iterator: Iterator<string> = { next, return: () => ({ done: true, value: undefined }) };
      return { [Symbol.iterator]: () => iterator };
    }
    const next = (): Promise<IteratorResult<string>> => {
      if (cursor < this.#end) return Promise.resolve({ done: false, value: this.#at(cursor++) });
      if (this.#sourceFailed) return Promise.reject(this.#sourceError);
      if (this.#sourceDone) return Promise.resolve({ done: true, value: undefined });
      // Another feed's pull is in progress: what it brings is this feed's next query too.
      if (this.#pulling !== undefined) return this.#pulling.then(next, next);
      // One step on the source's own promise, so that a query costs about
      // what it would without this queue: it is on every batch's hot path.
      const pulled = this.#async!.next().then((result) => {
        this.#pulling = undefined;
        if (result.done) this.#sourceDone = true;
        else {
          this.#items.push(result.value);
          cursor++;
        }
        return result;
      }, (error) => {
        this.#pulling = undefined;
        this.#sourceFailed = true;
        this.#sourceError = error;
        throw error;
      });
      this.#pulling = pulled;
      return pulled;
    };
    const iterator: AsyncIterator<string> = {
      next,
      return: () => Promise.resolve({ done: true, value: undefined }),
    };
    return { [Symbol.asyncIterator]: () => iterator };
  }

  /** Records that the oldest unanswered query got its reply. */
  answered(): void {
    this.#answered++;
    const stale = this.#answered - this.#offset;
    // Dropped in large steps, so the array is not shifted for every reply.
    if (stale >= 1024 && stale * 2 >= this.#items.length) {
      this.#items = this.#items.slice(stale);
      this.#offset = this.#answered;
    }
  }

  /**
   * Closes the source, as a `for await` that stopped would. A source
   * still busy with a `next` is closed once that settles, without waiting
   * for it: it may be a stream that never ends.
   */
  async close(): Promise<void> {
    const close = () => this.#async?.return?.() ?? this.#sync?.return?.();
    if (this.#pulling !== undefined) {
      this.#pulling.then(close, close).catch(() => {});
      return;
    }
    if (!this.#sourceDone) await close();
  }

  get #end(): number {
    return this.#offset + this.#items.length;
  }

  #at(index: number): string {
    return this.#items[index - this.#offset];
  }
}
