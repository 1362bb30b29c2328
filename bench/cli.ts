/**
 * The load generator's command line, `deno task bench`: it reads the
 * options, starts a server or checks the one given, runs the load and
 * prints the result.
 *
 * @module
 */

import { type BenchOptions, parseBenchArgs, USAGE } from "./args.ts";
import { BenchError } from "./error.ts";
import {
  buildQueryFrames,
  KEY_SHUFFLE_SEED,
  parseKeys,
  shuffleKeys,
  syntheticKeys,
} from "./keys.ts";
import { runLoad, type Target } from "./run.ts";
import { formatHeader, formatResult, summarize } from "./report.ts";
import { type SpawnedServer, spawnServer, writeSyntheticBook } from "./server.ts";
import { UsageError, usageLine } from "../common/cli_args.ts";
import { describeError, sentence, whyUnreadable } from "../common/errors.ts";
import { formatAddress } from "../common/net_address.ts";
import { resolveUserPath } from "../common/user_path.ts";

/** Checks that the target accepts connections, for a clear message when it does not. */
async function probe(target: Target): Promise<void> {
  try {
    (await Deno.connect(target)).close();
  } catch (error) {
    throw new BenchError(
      `Cannot reach ${formatAddress(target.hostname, target.port)}: ${
        sentence(describeError(error))
      }`,
    );
  }
}

async function readKeysFile(path: string): Promise<string[]> {
  let text: string;
  const resolved = resolveUserPath(path);
  try {
    text = await Deno.readTextFile(resolved);
  } catch (error) {
    throw new BenchError(
      `Cannot read the --keys file ${path}: ${sentence(whyUnreadable(error, path, resolved))}`,
    );
  }
  try {
    return parseKeys(text, path);
  } catch (error) {
    if (error instanceof RangeError) throw new BenchError(error.message);
    throw error;
  }
}

/** Runs bench from the command line; resolves with the exit code. */
export async function main(args: string[]): Promise<number> {
  let options: BenchOptions | "help";
  try {
    options = parseBenchArgs(args);
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(usageLine("bench", error.message));
      return 2;
    }
    throw error;
  }
  if (options === "help") {
    console.log(USAGE);
    return 0;
  }
  const interrupt = Promise.withResolvers<void>();
  const onInterrupt = () => interrupt.resolve();
  Deno.addSignalListener("SIGINT", onInterrupt);
  let tempDir: string | undefined;
  let server: SpawnedServer | undefined;
  try {
    let target: Target;
    let keys: string[];
    if (options.port === undefined) {
      tempDir = await Deno.makeTempDir({ prefix: "addrbook-bench-" });
      const bookPath = `${tempDir}/book.csv`;
      keys = shuffleKeys(await writeSyntheticBook(bookPath, options.entries), KEY_SHUFFLE_SEED);
      server = await spawnServer(bookPath, options.serverArgs, interrupt.promise);
      target = server.target;
    } else {
      target = { hostname: options.hostname ?? "127.0.0.1", port: options.port };
      // A keys file is queried in its own order: the user may have chosen it.
      keys = options.keysFile === undefined
        ? shuffleKeys(syntheticKeys(options.entries), KEY_SHUFFLE_SEED)
        : await readKeysFile(options.keysFile);
      await probe(target);
    }
    const where = formatAddress(target.hostname, target.port);
    if (!options.json) console.log(`${formatHeader(options, where, keys.length)}\n`);
    const frames = buildQueryFrames(keys, options.pipeline);
    const tally = await runLoad(options, target, frames, interrupt.promise);
    const result = summarize(tally, {
      target: where,
      server: options.port === undefined
        ? { entries: options.entries, args: options.serverArgs }
        : null,
      connections: options.connections,
      pipeline: options.pipeline,
      threads: options.threads,
      reconnect: options.reconnect,
      durationSeconds: options.durationSeconds,
      keys: keys.length,
    });
    console.log(options.json ? JSON.stringify(result) : formatResult(result));
    return result.errors > 0 || result.other > 0 ? 1 : 0;
  } catch (error) {
    if (error instanceof BenchError) {
      console.error(`bench: ${error.message}`);
      return 1;
    }
    throw error;
  } finally {
    Deno.removeSignalListener("SIGINT", onInterrupt);
    await server?.stop();
    if (tempDir !== undefined) await Deno.remove(tempDir, { recursive: true });
  }
}
