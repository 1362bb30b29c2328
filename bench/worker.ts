/**
 * A load thread of the load generator: its connections, each in a closed
 * loop of one batch written and its replies read. This module is the
 * worker's entry point; `bench/run.ts` starts it and sends it its plan.
 *
 * @module
 */

import { recordValue } from "./histogram.ts";
import { batchAt, type QueryFrames } from "./keys.ts";
import { createTally, type Tally, tallyError, tallyQueries } from "./tally.ts";
import { describeError } from "../common/errors.ts";
import {
  FrameDecoder,
  MAX_REPLY_BYTES,
  STATUS_FORBIDDEN,
  STATUS_PROTOCOL_ERROR,
  STATUS_SERVER_BUSY,
  TYPE_REPLY,
} from "../protocol.ts";
import { writeAll } from "../common/write_all.ts";

/** What one thread is to do. */
export interface LoadPlan {
  /** The server's host. */
  hostname: string;
  /** The server's port. */
  port: number;
  /** Connections on this thread. */
  connections: number;
  /** The index of its first connection among all threads', to spread start keys. */
  firstConnection: number;
  /** Connections over all threads. */
  totalConnections: number;
  /** Queries per batch. */
  pipeline: number;
  /** How long to drive the load, in milliseconds. */
  durationMs: number;
  /** A fresh connection for every query. */
  reconnect: boolean;
  /** Whether to post progress reports. */
  progress: boolean;
  /** The query frames to send, in turn. */
  frames: QueryFrames;
}

/** Messages from the main thread to a load thread. */
export type ThreadCommand =
  | { kind: "prepare"; plan: LoadPlan }
  | { kind: "go" }
  | { kind: "stop" };

/** Messages from a load thread to the main thread. */
export type ThreadReport =
  | { kind: "ready" }
  | { kind: "progress"; queries: number }
  | { kind: "done"; tally: Tally };

/** Replies the server follows with a close: the rest of the batch is lost. */
const CLOSING_STATUSES: readonly number[] = [
  STATUS_PROTOCOL_ERROR,
  STATUS_SERVER_BUSY,
  STATUS_FORBIDDEN,
];
/** Microseconds in a millisecond: latencies are recorded in microseconds. */
const MICROS_PER_MS = 1000;
/** Bytes read from a connection at a time. */
const READ_BUFFER_BYTES = 64 * 1024;
/** How long connections may finish their last batch after the end before they are cut. */
const STOP_GRACE_MS = 5000;
/** How often threads report progress. */
const PROGRESS_REPORT_MS = 250;

/** A batch that went wrong; the connection is closed and opened again. */
class BatchError extends Error {}

/** The load of one thread: its connections, each in a closed loop. */
class LoadThread {
  readonly #plan: LoadPlan;
  readonly #tally = createTally();
  readonly #open = new Set<Deno.Conn>();
  #ready: (Deno.Conn | undefined)[] = [];
  #stopAt = Infinity;
  #cut = false;

  constructor(plan: LoadPlan) {
    this.#plan = plan;
  }

  get tally(): Tally {
    return this.#tally;
  }

  /** Opens the persistent connections before the clock starts. */
  async prepare(): Promise<void> {
    const count = this.#plan.connections;
    this.#ready = this.#plan.reconnect
      ? new Array(count).fill(undefined)
      : await Promise.all(Array.from({ length: count }, () => this.#connect()));
  }

  async run(): Promise<Tally> {
    const started = performance.now();
    this.#stopAt = started + this.#plan.durationMs;
    const cutTimer = setTimeout(() => this.#cutAll(), this.#plan.durationMs + STOP_GRACE_MS);
    await Promise.all(this.#ready.map((conn, index) => this.#drive(index, conn)));
    clearTimeout(cutTimer);
    this.#tally.elapsedMs = performance.now() - started;
    return this.#tally;
  }

  /** Ends the run early: each connection finishes its batch and stops. */
  stop(): void {
    this.#stopAt = Math.min(this.#stopAt, performance.now());
  }

  async #drive(index: number, conn: Deno.Conn | undefined): Promise<void> {
    const { frames, pipeline } = this.#plan;
    const position = this.#plan.firstConnection + index;
    let next = Math.floor((position * frames.keyCount) / this.#plan.totalConnections);
    const buffer = new Uint8Array(READ_BUFFER_BYTES);
    const decoder = new FrameDecoder({ type: TYPE_REPLY, maxPayload: MAX_REPLY_BYTES });
    while (performance.now() < this.#stopAt) {
      const started = performance.now();
      if (conn === undefined) {
        conn = await this.#connect();
        // A server that refuses connections is gone: retrying would only spin.
        if (conn === undefined) return;
      }
      const batch = batchAt(frames, next, pipeline);
      next = (next + pipeline) % frames.keyCount;
      let keepOpen = false;
      try {
        await writeAll(conn, batch);
        keepOpen = await this.#readReplies(conn, decoder, buffer);
        recordValue(this.#tally.latency, (performance.now() - started) * MICROS_PER_MS);
      } catch (error) {
        tallyError(
          this.#tally,
          this.#cut
            ? `No reply within ${STOP_GRACE_MS / 1000} s of the end of the run.`
            : describeError(error),
        );
      }
      if (!keepOpen || this.#plan.reconnect) {
        this.#close(conn);
        conn = undefined;
        decoder.reset();
      }
    }
    if (conn !== undefined) this.#close(conn);
  }

  /** Reads the replies to one batch; returns false when the server is closing the connection. */
  async #readReplies(conn: Deno.Conn, decoder: FrameDecoder, buffer: Uint8Array): Promise<boolean> {
    const expected = this.#plan.pipeline;
    const statuses = this.#tally.statuses;
    let received = 0;
    while (received < expected) {
      const count = await conn.read(buffer);
      if (count === null) {
        throw new BatchError(
          `The server closed the connection with ${
            expected - received
          } of ${expected} replies missing.`,
        );
      }
      decoder.push(buffer.subarray(0, count));
      for (let payload = decoder.next(); payload !== null; payload = decoder.next()) {
        if (received === expected) {
          throw new BatchError("The server sent more replies than queries.");
        }
        received++;
        const status = payload.length > 0 ? payload[0] : -1;
        if (status < 0 || status >= statuses.length) {
          tallyError(this.#tally, "The server sent a reply without a known status.");
          continue;
        }
        statuses[status]++;
        if (CLOSING_STATUSES.includes(status)) return false;
      }
    }
    return true;
  }

  async #connect(): Promise<Deno.Conn | undefined> {
    try {
      const conn = await Deno.connect({ hostname: this.#plan.hostname, port: this.#plan.port });
      conn.setNoDelay(true);
      this.#open.add(conn);
      return conn;
    } catch (error) {
      tallyError(this.#tally, `Cannot connect: ${describeError(error)}`);
      return undefined;
    }
  }

  #close(conn: Deno.Conn): void {
    this.#open.delete(conn);
    try {
      conn.close();
    } catch {
      // Already closed by a failed read or write.
    }
  }

  /** Cuts the connections still waiting for replies long after the end. */
  #cutAll(): void {
    this.#cut = true;
    for (const conn of [...this.#open]) this.#close(conn);
  }
}

/** The worker's global scope, typed here so this module checks with the main-thread lib. */
interface ThreadScope {
  postMessage(message: ThreadReport): void;
  onmessage: ((event: MessageEvent<ThreadCommand>) => void) | null;
}

/** Serves load plans from the main thread, when this module runs as a worker. */
function serveAsLoadThread(scope: ThreadScope): void {
  let thread: LoadThread | undefined;
  let showProgress = false;
  scope.onmessage = async (event) => {
    const command = event.data;
    if (command.kind === "prepare") {
      thread = new LoadThread(command.plan);
      showProgress = command.plan.progress;
      await thread.prepare();
      scope.postMessage({ kind: "ready" });
    } else if (command.kind === "go" && thread) {
      const running = thread;
      const progressTimer = showProgress
        ? setInterval(
          () => scope.postMessage({ kind: "progress", queries: tallyQueries(running.tally) }),
          PROGRESS_REPORT_MS,
        )
        : undefined;
      const tally = await running.run();
      clearInterval(progressTimer);
      scope.postMessage({ kind: "done", tally });
    } else if (command.kind === "stop") {
      thread?.stop();
    }
  };
}

function isWorkerScope(): boolean {
  return typeof (globalThis as Record<string, unknown>).WorkerGlobalScope !== "undefined";
}

// Started as a worker by bench/run.ts, this module serves its plans;
// imported anywhere else (a test), it only defines them.
if (isWorkerScope()) serveAsLoadThread(self as unknown as ThreadScope);
