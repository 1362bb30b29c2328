/**
 * Driving the load threads from the main thread: each gets its share of
 * the connections and a plan, all start together, and their tallies are
 * merged at the end.
 *
 * @module
 */

import type { BenchOptions } from "./args.ts";
import { BenchError } from "./error.ts";
import type { QueryFrames } from "./keys.ts";
import { formatCount } from "./format.ts";
import { createTally, mergeTally, type Tally } from "./tally.ts";
import type { LoadPlan, ThreadCommand, ThreadReport } from "./worker.ts";
import { sentence } from "../common/errors.ts";

/** Where the load goes. */
export interface Target {
  /** The server's host. */
  hostname: string;
  /** The server's port. */
  port: number;
}

/** Splits `connections` over `threads` as evenly as whole numbers allow. */
export function splitConnections(connections: number, threads: number): number[] {
  const base = Math.floor(connections / threads);
  return Array.from({ length: threads }, (_, t) => base + (t < connections % threads ? 1 : 0));
}

/** Runs the load on worker threads and merges what they report. */
export async function runLoad(
  options: BenchOptions,
  target: Target,
  frames: QueryFrames,
  interrupted: Promise<void>,
): Promise<Tally> {
  const showProgress = Deno.stderr.isTerminal();
  const shares = splitConnections(options.connections, options.threads);
  const workers: Worker[] = [];
  const progress = shares.map(() => 0);
  const ready: Promise<void>[] = [];
  const done: Promise<Tally>[] = [];
  let failed: (error: BenchError) => void = () => {};
  const failure = new Promise<never>((_, reject) => failed = reject);
  let first = 0;
  for (let t = 0; t < shares.length; t++) {
    const worker = new Worker(new URL("./worker.ts", import.meta.url).href, {
      type: "module",
    });
    workers.push(worker);
    const isReady = Promise.withResolvers<void>();
    const isDone = Promise.withResolvers<Tally>();
    ready.push(isReady.promise);
    done.push(isDone.promise);
    worker.onerror = (event) => {
      event.preventDefault();
      failed(new BenchError(`A load thread failed: ${sentence(event.message)}`));
    };
    worker.onmessage = (event: MessageEvent<ThreadReport>) => {
      const report = event.data;
      if (report.kind === "ready") isReady.resolve();
      else if (report.kind === "progress") progress[t] = report.queries;
      else if (report.kind === "done") isDone.resolve(report.tally);
    };
    const plan: LoadPlan = {
      ...target,
      connections: shares[t],
      firstConnection: first,
      totalConnections: options.connections,
      pipeline: options.pipeline,
      durationMs: options.durationSeconds * 1000,
      reconnect: options.reconnect,
      progress: showProgress,
      frames,
    };
    first += shares[t];
    worker.postMessage({ kind: "prepare", plan } satisfies ThreadCommand);
  }
  let ticker: ReturnType<typeof setInterval> | undefined;
  let finished = false;
  try {
    await Promise.race([Promise.all(ready), failure]);
    const started = performance.now();
    for (const worker of workers) worker.postMessage({ kind: "go" } satisfies ThreadCommand);
    interrupted.then(() => {
      if (finished) return;
      for (const worker of workers) worker.postMessage({ kind: "stop" } satisfies ThreadCommand);
    });
    if (showProgress) {
      let last = 0;
      ticker = setInterval(() => {
        const total = progress.reduce((sum, count) => sum + count, 0);
        const seconds = Math.round((performance.now() - started) / 1000);
        Deno.stderr.writeSync(
          new TextEncoder().encode(
            `\r${seconds} s: ${formatCount(total)} queries, ${
              formatCount(total - last)
            } queries/s\x1b[K`,
          ),
        );
        last = total;
      }, 1000);
    }
    const tallies = await Promise.race([Promise.all(done), failure]);
    const total = createTally();
    for (const tally of tallies) mergeTally(total, tally);
    return total;
  } finally {
    finished = true;
    clearInterval(ticker);
    if (showProgress) Deno.stderr.writeSync(new TextEncoder().encode("\r\x1b[K"));
    for (const worker of workers) worker.terminate();
  }
}
