/**
 * Resolves file paths typed on the command line.
 *
 * `deno task` runs every task in the folder that holds deno.json, not where
 * the user typed the command, and tells the task where that was in
 * `INIT_CWD`. Without this, `deno task validate contacts.vcf` typed in
 * another folder would look for contacts.vcf in the project's folder.
 *
 * ```ts
 * import { resolveUserPath } from "./user_path.ts";
 *
 * // Typed in /home/ada, with the project in /srv/addrbook:
 * resolveUserPath("contacts.vcf"); // "/home/ada/contacts.vcf" under deno task
 * resolveUserPath("/etc/book.csv"); // "/etc/book.csv"
 * ```
 *
 * @module
 */

/**
 * Returns `path` resolved against the folder the command was typed in, when
 * it is relative and that folder is known (`INIT_CWD`, readable with
 * `--allow-env=INIT_CWD`); otherwise returns `path` unchanged.
 */
export function resolveUserPath(path: string): string {
  if (isAbsolute(path)) return path;
  const base = initialDirectory();
  return base === undefined ? path : `${base.replace(/[\\/]+$/, "")}/${path}`;
}

function isAbsolute(path: string): boolean {
  return path.startsWith("/") || /^[A-Za-z]:[\\/]/.test(path) || path.startsWith("\\\\");
}

function initialDirectory(): string | undefined {
  // Asking without the permission would prompt on a terminal: only read it when granted.
  const permission = Deno.permissions.querySync({ name: "env", variable: "INIT_CWD" });
  return permission.state === "granted" ? Deno.env.get("INIT_CWD") || undefined : undefined;
}
