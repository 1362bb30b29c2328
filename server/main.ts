/**
 * The server's command line: flags to a running server, reload on SIGHUP
 * and `--watch`, drain on SIGTERM, and the exit code. `server.ts` (the
 * entry point, `deno task server`) runs {@linkcode main}.
 *
 * @module
 */

import { protectedModeApplies } from "../access/policy.ts";
import { fileSignature, FileWatch } from "./watch.ts";
import { coalesced } from "../common/coalesce.ts";
import { describeError } from "../common/errors.ts";
import { BookError, loadBook } from "../book/load.ts";
import { loadBookInThread } from "../book/load_thread.ts";
import { TextIndex } from "../book/text_index.ts";
import { Logger } from "../common/log.ts";
import { formatAddress } from "../common/net_address.ts";
import { type CliOptions, parseServerArgs, USAGE } from "./cli.ts";
import { usageLine } from "../common/cli_args.ts";
import { StartError } from "./error.ts";
import { describeBookRefusal } from "./book_refusal.ts";
import { StatusEndpoint } from "./http.ts";
import { checkListenAddress } from "./listen.ts";
import { checkTlsFiles, loadTlsFiles, readTlsFiles, type TlsPaths } from "./tls_files.ts";
import { type ServerHandle, startServer } from "./start.ts";
import { untilStopped } from "./signals.ts";
import { resolveUserPath } from "../common/user_path.ts";
import { asksForVersion, VERSION, versionLine } from "../common/version.ts";

/** Runs the server from the command line; resolves with the exit code. */
export async function main(args: string[]): Promise<number> {
  if (asksForVersion(args)) {
    console.log(versionLine("server"));
    return 0;
  }
  let options: CliOptions | "help";
  try {
    options = parseServerArgs(args);
  } catch (error) {
    if (error instanceof StartError) {
      console.error(usageLine("server", error.message));
      return error.exitCode;
    }
    throw error;
  }
  if (options === "help") {
    console.log(USAGE);
    return 0;
  }
  const cli = options;
  const log = new Logger({ format: cli.logFormat, level: cli.logLevel });
  const path = resolveUserPath(cli.data);
  const loadOptions = {
    name: cli.dataLabel,
    format: cli.format,
    duplicates: cli.duplicates,
    emailColumn: cli.emailColumn,
    nameColumn: cli.nameColumn,
    allowEmpty: cli.allowEmpty,
  };
  // At start nothing else needs this thread; a reload must not stop it from
  // answering signals and /metrics, so it loads in a thread of its own.
  let started = false;
  const load = async () => {
    const { book, duplicates } = started
      ? await loadBookInThread(path, { ...loadOptions, textIndex: cli.ldap !== undefined })
      : await loadBook(path, loadOptions);
    // LDAP searches use the substring index: built once here, posted to every serving thread.
    if (cli.ldap !== undefined) TextIndex.of(book);
    collectGarbage();
    if (duplicates > 0) {
      log.info("duplicate emails dropped", { duplicates, kept: cli.duplicates });
    }
    return book;
  };
  // A file written while it was read may have been read half old, half new.
  const loadUnchanged = async () => {
    const before = fileSignature(path);
    const book = await load();
    if (fileSignature(path) !== before) {
      throw new Error(
        `${cli.dataLabel} changed while it was being read; it is read again once it settles.`,
      );
    }
    return book;
  };
  const servedSignature = cli.watch ? fileSignature(path) : undefined;
  const protectedMode = protectedModeApplies(cli.hostname, {
    allow: cli.access.allow !== undefined,
    clientCertificates: cli.tlsClientCa !== undefined,
  });
  const tlsPaths: TlsPaths | undefined = cli.tlsCert === undefined || cli.tlsKey === undefined
    ? undefined
    : { cert: cli.tlsCert, key: cli.tlsKey, clientCa: cli.tlsClientCa };

  let server: ServerHandle;
  let endpoint: StatusEndpoint | undefined;
  try {
    // Everything that can fail fast is checked before a large book takes
    // seconds and gigabytes to load.
    const tls = tlsPaths && await readTlsFiles(tlsPaths);
    if (tls && tlsPaths) checkTlsFiles(tls, tlsPaths);
    checkListenAddress(cli.hostname, cli.port);
    if (cli.metricsPort !== undefined) {
      endpoint = StatusEndpoint.open(cli.hostname, cli.metricsPort, undefined, {
        access: { ...cli.access, protectedMode },
        log,
      });
    }
    const book = await load();
    server = await startServer({
      book,
      hostname: cli.hostname,
      port: cli.port,
      loadBook: loadUnchanged,
      workers: cli.workers,
      io: cli.io,
      limits: cli.limits,
      access: { ...cli.access, protectedMode },
      clientLimits: cli.clientLimits,
      tls,
      ldap: cli.ldap,
      statusEndpoint: endpoint,
      fingerprint: (book) => book.fingerprint,
      log,
    });
    started = true;
  } catch (error) {
    await endpoint?.close();
    if (error instanceof BookError || error instanceof StartError) {
      log.error(error instanceof BookError ? describeBookRefusal(error, cli) : error.message);
      return error instanceof StartError ? error.exitCode : 1;
    }
    throw error;
  }
  // A storm of signals or file events must not run reloads side by side, each holding a book.
  const reload = coalesced(async () => {
    try {
      log.info("reload started", { file: cli.dataLabel });
      await server.reload();
      log.info("reload done", {
        entries: server.entries,
        file: cli.dataLabel,
        sha256: shortFingerprint(server),
      });
    } catch (error) {
      const why = error instanceof BookError
        ? describeBookRefusal(error, cli)
        : describeError(error);
      log.error(`reload failed, still serving the old book: ${why}`);
    }
  });
  const reloadTls = coalesced(async () => {
    if (tlsPaths === undefined) return;
    try {
      await server.setTls(await loadTlsFiles(tlsPaths));
      log.info("TLS reload done: new connections get the new certificate", {
        file: tlsPaths.cert,
      });
    } catch (error) {
      log.error(`TLS reload failed, still serving the old certificate: ${describeError(error)}`);
    }
  });
  const watches = cli.watch
    ? [
      FileWatch.start(path, {
        settleMs: cli.watchSettleMs,
        onSettled: reload,
        servedSignature,
        onProblem: (message) => log.warn(message),
      }),
      ...watchTlsFiles(tlsPaths, cli.watchSettleMs, reloadTls, log),
    ]
    : [];
  // Signal handlers go in before the start line, which tells scripts they may signal.
  const stopped = untilStopped(server, {
    shutdownTimeoutMs: cli.shutdownTimeoutMs,
    reload: () => {
      void reload();
      void reloadTls();
    },
    onStopped: () => watches.forEach((watch) => watch.close()),
  }, log);
  const where = formatAddress(server.addr.hostname, server.addr.port);
  if (protectedMode) {
    log.warn(
      `protected mode: the server listens on ${where} with no --allow, so only loopback clients are served; give --allow CIDR (or --allow any) to serve others`,
    );
  }
  log.info(
    `loaded ${server.entries} ${
      server.entries === 1 ? "entry" : "entries"
    } from ${cli.dataLabel}; listening on ${cli.tlsCert ? "tls://" : ""}${where}`,
    {
      sha256: shortFingerprint(server),
      pid: Deno.pid,
      version: VERSION,
      workers: cli.workers,
      io: server.io,
      metrics: server.metricsAddr
        ? formatAddress(server.metricsAddr.hostname, server.metricsAddr.port)
        : undefined,
      ldap: server.ldapAddr
        ? `ldap://${formatAddress(server.ldapAddr.hostname, server.ldapAddr.port)}`
        : undefined,
      ldaps: server.ldapsAddr
        ? `ldaps://${formatAddress(server.ldapsAddr.hostname, server.ldapsAddr.port)}`
        : undefined,
    },
  );
  return await stopped;
}

/** Digits of the fingerprint a log line shows: enough to tell books apart at a glance. */
const LOGGED_FINGERPRINT_DIGITS = 12;

function shortFingerprint(server: ServerHandle): string | undefined {
  return server.fingerprint?.slice(0, LOGGED_FINGERPRINT_DIGITS);
}

/** With --watch, each TLS file is watched too; any change reloads all three (they go together). */
function watchTlsFiles(
  paths: TlsPaths | undefined,
  settleMs: number,
  reloadTls: () => Promise<void>,
  log: Logger,
): FileWatch[] {
  if (paths === undefined) return [];
  const files = [paths.cert, paths.key, ...(paths.clientCa === undefined ? [] : [paths.clientCa])];
  return files.map((file) => {
    const resolved = resolveUserPath(file);
    return FileWatch.start(resolved, {
      settleMs,
      onSettled: reloadTls,
      servedSignature: fileSignature(resolved),
      onProblem: (message) => log.warn(message),
    });
  });
}

/**
 * Runs a full garbage collection when the runtime allows it (the server
 * task passes `--v8-flags=--expose-gc`). Loading a large book leaves
 * hundreds of megabytes of garbage (the file's text, parsed rows), and a
 * server whose hot path allocates almost nothing may not collect it for a
 * long time, holding that memory for no use.
 */
function collectGarbage(): void {
  (globalThis as { gc?: () => void }).gc?.();
}
