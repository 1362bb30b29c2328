/**
 * A serving thread. The main thread (server.ts) starts one per worker,
 * hands it the shared book and counters, and later sends it new books on
 * reload and the order to shut down. Threads listen on the same port with
 * SO_REUSEPORT, so the kernel spreads connections among them.
 *
 * @module
 */

import { boundPorts, portsToServe } from "./ports.ts";
import { describeError } from "../common/errors.ts";
import { openLibc } from "../common/libc.ts";
import { Logger } from "../common/log.ts";
import { counterRow } from "../session/counters.ts";
import { serveDeno, serveEpoll, type Serving } from "./serve.ts";
import type { TlsFiles } from "../transport/tls_context.ts";
import {
  receiveBook,
  type WorkerCommand,
  type WorkerReport,
  type WorkerStart,
} from "./worker_messages.ts";

/** The worker's global scope, typed here so this module can be checked with the main-thread lib. */
const scope = self as unknown as {
  postMessage(message: WorkerReport): void;
  onmessage: ((event: MessageEvent<WorkerCommand>) => void) | null;
};

/** This thread's loop, kept to hand it books, rotate its certificate and stop it. */
let serving: Serving | undefined;
let handled = 0;

function report(message: WorkerReport): void {
  scope.postMessage(message);
}

async function start(command: WorkerStart): Promise<void> {
  try {
    const ports = portsToServe({
      start: command,
      book: receiveBook(command),
      counters: counterRow(command.counters, command.thread),
      log: new Logger({
        level: command.logLevel,
        forward: (record) => report({ kind: "log", record }),
      }),
    });
    if (command.io === "deno") {
      serving = await serveDeno(ports);
      report({ kind: "listening", ...boundPorts(command, serving.ports) });
      return;
    }
    const mailbox = command.mailbox!;
    const pending = () => Atomics.load(mailbox, 0) !== handled;
    serving = serveEpoll(openLibc()!, ports, pending);
    report({ kind: "listening", ...boundPorts(command, serving.ports) });
    serving.service.done.catch((error) => {
      // The loop closed its sockets on the way out; say why, and answer later commands.
      const message = error instanceof Error ? error.message : String(error);
      report({
        kind: "log",
        record: { level: "error", message: "serving thread stopped", fields: { error: message } },
      });
    });
  } catch (error) {
    const exitCode = (error as { exitCode?: number }).exitCode ?? 1;
    report({ kind: "failed", message: (error as Error).message, exitCode });
  }
}

/** Rotation: new connections get the new files; a broken one keeps the current context. */
function replaceTls(tls: TlsFiles): void {
  try {
    serving?.rotateTls(tls);
  } catch (error) {
    report({
      kind: "log",
      record: {
        level: "error",
        message: "TLS reload failed in a serving thread, still serving the old certificate",
        fields: { error: describeError(error) },
      },
    });
  }
}

scope.onmessage = (event) => {
  const command = event.data;
  if (command.kind === "start") {
    void start(command);
    return;
  }
  handled++;
  if (command.kind === "book") {
    serving?.service.setBook(receiveBook(command));
    report({ kind: "book-taken" });
  } else if (command.kind === "tls") {
    replaceTls(command.tls);
    report({ kind: "tls-taken" });
  } else if (command.kind === "shutdown") {
    (serving?.service.shutdown() ?? Promise.resolve()).then(() => report({ kind: "drained" }));
  } else if (command.kind === "abort") {
    (serving?.service.abort() ?? Promise.resolve()).catch(() => {}).then(() =>
      report({ kind: "stopped" })
    );
  }
};
