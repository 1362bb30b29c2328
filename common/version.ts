/**
 * The release of addrbook: one constant for the server, the client, the
 * start line and `/metrics` (`addrbook_build_info`), so they never disagree.
 * A release changes {@linkcode VERSION} here and nowhere else.
 *
 * ```ts
 * import { asksForVersion, VERSION, versionLine } from "./version.ts";
 *
 * VERSION; // "0.1.0"
 * asksForVersion(["--port", "0", "--version"]); // true
 * versionLine("server"); // "addrbook server 0.1.0 (Deno 2.9.6)"
 * ```
 *
 * @module
 */

/** The release, as semantic versioning spells it. */
export const VERSION = "0.1.0";

/** What `--version` prints for `program` (`server`, `client`): the release and the runtime. */
export function versionLine(program: string): string {
  return `addrbook ${program} ${VERSION} (Deno ${Deno.version.deno})`;
}

/** The flag that asks a command for its version. */
export const VERSION_FLAG = "--version";

/**
 * Whether the command line asks for the version: `--version` anywhere
 * before a `--`. It wins over every other flag, right or wrong, as `--help`
 * does, so a command answers it before it checks the rest.
 */
export function asksForVersion(args: readonly string[]): boolean {
  const end = args.indexOf("--");
  return (end < 0 ? args : args.slice(0, end)).includes(VERSION_FLAG);
}
