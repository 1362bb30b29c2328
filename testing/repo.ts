/**
 * Where the repository is, found once for every test helper: the nearest
 * folder above this one that holds `deno.json`, so that it stays right
 * wherever the modules that use it live. Subprocesses run there, and the
 * flags of its `deno task`s are read from there.
 *
 * ```ts
 * import { REPO_DIR, SERVER_FLAGS } from "./repo.ts";
 *
 * console.log(REPO_DIR, SERVER_FLAGS.at(-1)); // ".../addrbook", "server.ts"
 * ```
 *
 * @module
 */

import { dirname } from "node:path";

/** The file that marks the repository's root. */
const ROOT_MARKER = "deno.json";

/**
 * The nearest folder at or above `from` that holds {@linkcode ROOT_MARKER}.
 *
 * @throws {Error} when no folder up to the file system's root holds it.
 */
function findRepoDir(from: string): string {
  for (let dir = from;; dir = dirname(dir)) {
    if (isFile(`${dir}/${ROOT_MARKER}`)) return dir;
    if (dirname(dir) === dir) {
      throw new Error(`Cannot find the repository: no folder above ${from} holds ${ROOT_MARKER}.`);
    }
  }
}

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/** The repository's directory, where the subprocesses run. */
export const REPO_DIR: string = findRepoDir(import.meta.dirname!);

const TASKS: Record<string, string> = JSON.parse(
  Deno.readTextFileSync(`${REPO_DIR}/${ROOT_MARKER}`),
).tasks;

/** `deno task NAME` without the `deno`: what the task runs, with the permissions it grants. */
function taskFlags(name: string): readonly string[] {
  return TASKS[name].split(/\s+/).slice(1);
}

/** `deno task server` without the `deno`: the server runs with what the task grants, no more. */
export const SERVER_FLAGS: readonly string[] = taskFlags("server");

/** `deno task client` without the `deno`: the client runs with what the task grants, no more. */
export const CLIENT_FLAGS: readonly string[] = taskFlags("client");
