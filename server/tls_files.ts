/**
 * The server's TLS files on the main thread: reading `--tls-cert`,
 * `--tls-key` and `--tls-client-ca`, checking them with OpenSSL before the
 * book is loaded (so a broken file is named at once), and reloading them
 * on SIGHUP or `--watch` (rotation): the main thread reads and checks the
 * files, then hands their PEM text to every serving thread (itself too,
 * under `--io deno`), which builds a new context for new connections (open
 * ones keep theirs).
 *
 * ```ts ignore
 * const paths = { cert: "server.crt", key: "server.key", clientCa: "ca.crt" };
 * const tls = await readTlsFiles(paths); // StartError naming the flag and file
 * checkTlsFiles(tls, paths); // the same for a file OpenSSL refuses
 * ```
 *
 * @module
 */

import { checkTlsFilesForNode } from "../transport/node_tls_listener.ts";
import { sentence, whyUnreadable } from "../common/errors.ts";
import { openOpenSsl } from "../transport/openssl.ts";
import { StartError } from "./error.ts";
import type { TlsFiles } from "../transport/tls_context.ts";
import { TlsContext, TlsContextError, type TlsInputRole } from "../transport/tls_context.ts";
import { resolveUserPath } from "../common/user_path.ts";

/** Where the TLS files are, as the command line gave them. */
export interface TlsPaths {
  /** `--tls-cert`. */
  cert: string;
  /** `--tls-key`. */
  key: string;
  /** `--tls-client-ca`, when given. */
  clientCa?: string;
}

/** The command-line flag of each TLS input. */
export const TLS_FLAGS: Readonly<Record<TlsInputRole, string>> = {
  certificate: "--tls-cert",
  key: "--tls-key",
  "client CA": "--tls-client-ca",
};

/**
 * Reads the TLS files as PEM text.
 *
 * @throws {StartError} naming the flag and the file that cannot be read.
 */
export async function readTlsFiles(paths: TlsPaths): Promise<TlsFiles> {
  return {
    cert: await readPem(TLS_FLAGS.certificate, paths.cert),
    key: await readPem(TLS_FLAGS.key, paths.key),
    clientCa: paths.clientCa === undefined
      ? undefined
      : await readPem(TLS_FLAGS["client CA"], paths.clientCa),
  };
}

/**
 * Checks that both TLS stacks take the files: where OpenSSL 3 can be
 * loaded, OpenSSL, which the epoll loop serves with (PEM, security level 2,
 * key and certificate a pair, a usable client CA), by building a context
 * and freeing it; and node:tls, which the `Deno.listen` loop serves with
 * (each file PEM of its kind, the key the certificate's).
 *
 * @throws {StartError} naming the flag and the file refused, and why.
 */
export function checkTlsFiles(tls: TlsFiles, paths: TlsPaths): void {
  try {
    const openssl = openOpenSsl();
    if (openssl !== undefined) {
      TlsContext.create(openssl, tls).free();
    }
    checkTlsFilesForNode(tls);
  } catch (error) {
    if (!(error instanceof TlsContextError)) throw error;
    const flag = TLS_FLAGS[error.role];
    const path = error.role === "certificate"
      ? paths.cert
      : error.role === "key"
      ? paths.key
      : paths.clientCa;
    throw new StartError(
      `Cannot use the TLS ${error.role} in ${flag} file ${path}: ${lowerFirst(error.message)}`,
    );
  }
}

/** Reads and checks the TLS files for a reload; the error names the file, as at the start. */
export async function loadTlsFiles(paths: TlsPaths): Promise<TlsFiles> {
  const tls = await readTlsFiles(paths);
  checkTlsFiles(tls, paths);
  return tls;
}

async function readPem(flag: string, path: string): Promise<string> {
  const resolved = resolveUserPath(path);
  try {
    return await Deno.readTextFile(resolved);
  } catch (error) {
    throw new StartError(
      `Cannot read the ${flag} file ${path}: ${sentence(whyUnreadable(error, path, resolved))}`,
    );
  }
}

/** An embedded sentence starts lower case ("The key ..." becomes "the key ..."). */
function lowerFirst(text: string): string {
  return text.charAt(0).toLowerCase() + text.slice(1);
}
