/**
 * Supervision of the serving threads: starting a worker (server/worker.ts),
 * waiting until it listens, and sending it books, a shutdown or an abort,
 * each resolved when the thread reports it done.
 *
 * @module
 */

import type { AddressBook } from "../book/addressbook.ts";
import type { Logger } from "../common/log.ts";
import type { TlsFiles } from "../transport/tls_context.ts";
import { StartError } from "./error.ts";
import {
  postBook,
  type WorkerCommand,
  type WorkerReport,
  type WorkerStart,
} from "./worker_messages.ts";
import { sentence } from "../common/errors.ts";

/** A serving thread, seen from the main thread. */
export interface WorkerThread {
  /** The port it listens on. */
  readonly port: number;
  /** Its LDAP port, when it serves one. */
  readonly ldapPort?: number;
  /** Its LDAPS port, when it serves one. */
  readonly ldapsPort?: number;
  /** Hands it a new book; resolves once it answers from it. */
  setBook(book: AddressBook): Promise<void>;
  /** Hands it new TLS files for new connections; resolves once it has applied (or refused) them. */
  setTls(tls: TlsFiles): Promise<void>;
  /** Drains its connections, as ConnectionService.shutdown does. */
  shutdown(): Promise<void>;
  /** Closes its sockets at once and ends the thread. */
  abort(): Promise<void>;
}

/**
 * Starts one serving worker thread; resolves once it listens. Its log
 * records are written through `log`.
 *
 * @throws {StartError} when it cannot listen or the thread fails to start.
 */
export function startWorker(start: WorkerStart, log: Logger): Promise<WorkerThread> {
  const worker = new Worker(new URL("./worker.ts", import.meta.url), { type: "module" });
  // Counts commands posted, so a worker busy in epoll_wait knows to look for them.
  const mailbox = new Int32Array(new SharedArrayBuffer(4));
  // Callers waiting for a report, oldest first: a worker answers commands in order.
  const waiting = new Map<WorkerReport["kind"], (() => void)[]>();
  // A thread that died answers nothing more: its callers must not wait for ever.
  let dead = false;
  const request = (command: WorkerCommand, report: WorkerReport["kind"]) =>
    new Promise<void>((done) => {
      if (dead) return done();
      waiting.set(report, [...(waiting.get(report) ?? []), done]);
      worker.postMessage(command);
      Atomics.add(mailbox, 0, 1);
    });
  return new Promise((resolve, reject) => {
    worker.onerror = (event) => {
      event.preventDefault();
      worker.terminate();
      dead = true;
      for (const callers of waiting.values()) for (const done of callers.splice(0)) done();
      log.error("a serving thread failed", { error: event.message });
      reject(new StartError(`A worker thread failed: ${sentence(event.message)}`));
    };
    worker.onmessage = (event: MessageEvent<WorkerReport>) => {
      const report = event.data;
      if (report.kind === "listening") {
        resolve({
          port: report.port,
          ldapPort: report.ldapPort,
          ldapsPort: report.ldapsPort,
          setBook: (book) => request({ kind: "book", ...postBook(book) }, "book-taken"),
          setTls: (tls) => request({ kind: "tls", tls }, "tls-taken"),
          shutdown: () => request({ kind: "shutdown" }, "drained"),
          abort: async () => {
            await request({ kind: "abort" }, "stopped");
            worker.terminate();
          },
        });
      } else if (report.kind === "failed") {
        worker.terminate();
        reject(new StartError(report.message, report.exitCode));
      } else if (report.kind === "log") {
        log.record(report.record);
      } else {
        waiting.get(report.kind)?.shift()?.();
      }
    };
    worker.postMessage({ ...start, mailbox });
  });
}
