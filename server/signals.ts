/**
 * The server process's signals: SIGHUP reloads the book (and the TLS files); SIGINT or SIGTERM
 * shut down gracefully, and a second one exits at once.
 *
 * @module
 */

import type { Logger } from "../common/log.ts";
import type { ServerHandle } from "./start.ts";

/** Signals this soon after the first are copies of it (see {@linkcode isCopyOfFirstSignal}). */
export const REPEATED_SIGNAL_MS = 250;

/** Exit code when a second signal cuts a graceful shutdown short. */
export const EXIT_SECOND_SIGNAL = 1;

/**
 * Whether a stop signal at `now` is a copy of the first one, at
 * `firstAt` (both in milliseconds). Ctrl-C under `deno task` arrives
 * twice within milliseconds: from the terminal to the process group, and
 * forwarded by deno task. That is still the first request; a second one is
 * a person pressing again.
 *
 * ```ts
 * import { isCopyOfFirstSignal } from "./signals.ts";
 * isCopyOfFirstSignal(1000, 1003); // true
 * isCopyOfFirstSignal(1000, 2000); // false
 * ```
 */
export function isCopyOfFirstSignal(firstAt: number, now: number): boolean {
  return now - firstAt < REPEATED_SIGNAL_MS;
}

/** What {@linkcode untilStopped} does besides shutting down. */
export interface SignalOptions {
  /** Time to finish answering at shutdown, in milliseconds. */
  shutdownTimeoutMs: number;
  /** Reloads the book and the TLS files (on SIGHUP); it logs its own outcome. */
  reload: () => void;
  /** Runs once the server has shut down, to release what else runs (a file watcher). */
  onStopped?: () => void;
}

/**
 * Handles signals until the server has shut down; resolves with the exit
 * code. The handlers are in place when this returns, so a caller may then
 * tell scripts it is ready to be signalled.
 */
export function untilStopped(
  server: ServerHandle,
  options: SignalOptions,
  log: Logger,
): Promise<number> {
  return new Promise((resolve) => {
    let firstSignalAt: number | undefined;
    const stop = async (signal: Deno.Signal) => {
      if (firstSignalAt !== undefined) {
        if (isCopyOfFirstSignal(firstSignalAt, Date.now())) return;
        log.warn("second signal: exiting at once", { signal });
        Deno.exit(EXIT_SECOND_SIGNAL);
      }
      firstSignalAt = Date.now();
      log.info("shutting down", { signal, timeout_s: options.shutdownTimeoutMs / 1000 });
      await server.shutdown(options.shutdownTimeoutMs);
      log.info("shutdown complete");
      for (const [name, handler] of handlers) Deno.removeSignalListener(name, handler);
      options.onStopped?.();
      resolve(0);
    };
    const handlers: [Deno.Signal, () => void][] = [
      ["SIGHUP", options.reload],
      ["SIGINT", () => void stop("SIGINT")],
      ["SIGTERM", () => void stop("SIGTERM")],
    ];
    for (const [name, handler] of handlers) Deno.addSignalListener(name, handler);
  });
}
