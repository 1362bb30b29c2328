/**
 * The server the load generator starts for itself: a synthetic book
 * written to a file, and `server.ts` run on it as `deno task server` runs
 * it, until it says where it listens.
 *
 * @module
 */

import { BenchError } from "./error.ts";
import { KEY_STEP, sampleKeys } from "./keys.ts";
import type { Target } from "./run.ts";
import denoConfig from "../deno.json" with { type: "json" };
import { csvField, generateEntries } from "../tools/gen.ts";

/** Seed of the synthetic book, so runs query the same names. */
const BOOK_SEED = 1;
/** Characters of CSV gathered before a write. */
const BOOK_WRITE_CHUNK = 1 << 20;
/** How long a starting server may take to say it listens. */
const SERVER_START_TIMEOUT_MS = 300_000;
/** Server stderr lines kept to explain a failed start: its first paragraph, at most this long. */
const SERVER_OUTPUT_LINES = 5;
/** The server's start-up line; the host may be a bracketed IPv6 address. */
export const LISTENING_LINE = /listening on (tls:\/\/)?(\[[^\]\s]+\]|[^\s:"]+):(\d+)/;

/**
 * Writes a synthetic CSV book of `entries` (made by tools/gen.ts) to `path` and
 * returns the keys to query: present ones from the book, and as many
 * missing ones at example.net, a domain the generator never uses.
 */
export async function writeSyntheticBook(path: string, entries: number): Promise<string[]> {
  const sampled: string[] = [];
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  const writer = file.writable.getWriter();
  const encoder = new TextEncoder();
  try {
    let chunk = "email,name\r\n";
    let index = 0;
    for (const { email, name } of generateEntries(entries, BOOK_SEED)) {
      if (index % KEY_STEP === 0) sampled.push(email);
      index++;
      chunk += `${email},${csvField(name)}\r\n`;
      if (chunk.length >= BOOK_WRITE_CHUNK) {
        await writer.write(encoder.encode(chunk));
        chunk = "";
      }
    }
    await writer.write(encoder.encode(chunk));
  } finally {
    await writer.close();
  }
  return sampleKeys(
    entries,
    (i) => sampled[i / KEY_STEP],
    (i) => `missing.${i}@example.net`,
  );
}

/** A server started by bench. */
export interface SpawnedServer {
  /** Where it listens. */
  target: Target;
  /** Stops it with SIGTERM and waits for it to exit. */
  stop(): Promise<void>;
}

/**
 * The arguments of `deno task server` after `deno` (run, its permissions and
 * flags, the module), so the bench measures the server as users run it.
 */
const SERVER_RUN_ARGS: string[] = denoConfig.tasks.server.split(/\s+/).slice(1).map((arg) =>
  arg === "server.ts" ? `${import.meta.dirname}/../server.ts` : arg
);

/** Starts the server on `bookPath` and waits until it says where it listens. */
export async function spawnServer(
  bookPath: string,
  serverArgs: string[],
  interrupted: Promise<void>,
): Promise<SpawnedServer> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      ...SERVER_RUN_ARGS,
      "--port",
      "0",
      "--data",
      bookPath,
      ...serverArgs,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // It has exited already.
    }
    await child.status;
  };
  // The first paragraph says why a server did not start; a usage text follows it.
  const said: string[] = [];
  let saidAll = false;
  const listening = Promise.withResolvers<Target>();
  // Keep reading stderr to the end, or a chatty server would block on a full pipe.
  (async () => {
    const lines = child.stderr.pipeThrough(new TextDecoderStream());
    let partial = "";
    for await (const text of lines) {
      const parts = (partial + text).split("\n");
      partial = parts.pop() ?? "";
      for (const line of parts) {
        if (line.trim() === "") saidAll ||= said.length > 0;
        else if (!saidAll && said.length < SERVER_OUTPUT_LINES) said.push(line);
        const match = LISTENING_LINE.exec(line);
        if (match) {
          if (match[1]) {
            listening.reject(new BenchError("The server serves TLS, which bench does not speak."));
          }
          listening.resolve({ hostname: match[2].replace(/^\[|\]$/g, ""), port: Number(match[3]) });
        }
      }
    }
    if (partial && !saidAll && said.length < SERVER_OUTPUT_LINES) said.push(partial);
    const status = await child.status;
    listening.reject(
      new BenchError(
        `The server exited with status ${status.code} before listening:\n  ${said.join("\n  ")}`,
      ),
    );
  })();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new BenchError(
            `The server did not say "listening on" within ${
              SERVER_START_TIMEOUT_MS / 1000
            } s; is its log level above info?`,
          ),
        ),
      SERVER_START_TIMEOUT_MS,
    );
  });
  const gaveUp = interrupted.then(() => {
    throw new BenchError("Interrupted while the server was starting.");
  });
  try {
    const target = await Promise.race([listening.promise, timeout, gaveUp]);
    return { target, stop };
  } catch (error) {
    await stop();
    throw error;
  } finally {
    clearTimeout(timer);
  }
}
