/**
 * What the server says when it refuses a book, at start or on a reload:
 * the first problem, how many more there are, and the `deno task validate`
 * command, with the options the server was given that change what counts
 * as a problem, that lists them all (a log line shows one problem; the
 * book may have thousands).
 *
 * ```ts ignore
 * import { describeBookRefusal } from "./book_refusal.ts";
 *
 * describeBookRefusal(error, cli);
 * // 'book.csv:2: The name is empty. (and 3 more problems; run "deno task validate book.csv" to list them all)'
 * ```
 *
 * @module
 */

import { type BookError, summarizeProblems } from "../book/load.ts";
import { type CliOptions, DEFAULT_DATA_PATH } from "./cli.ts";

/** The project-relative path of the built-in book, as `deno task validate` takes it. */
const BUILT_IN_BOOK = "data/addressbook.csv";

/** The refusal in one line, pointing to the command that lists every problem. */
export function describeBookRefusal(error: BookError, cli: CliOptions): string {
  return summarizeProblems(error.problems, validateCommand(cli));
}

/** The `deno task validate` command that checks the server's book as the server does. */
export function validateCommand(cli: CliOptions): string {
  const args = ["deno", "task", "validate"];
  if (cli.format !== undefined) args.push("--format", cli.format);
  if (cli.duplicates !== "error") args.push("--duplicates", cli.duplicates);
  if (cli.emailColumn !== undefined) args.push("--email-column", cli.emailColumn);
  if (cli.nameColumn !== undefined) args.push("--name-column", cli.nameColumn);
  if (cli.allowEmpty) args.push("--allow-empty");
  args.push(cli.data === DEFAULT_DATA_PATH ? BUILT_IN_BOOK : cli.data);
  return args.map(shellWord).join(" ");
}

/** A word as a POSIX shell reads it back: as it is when safe, else in single quotes. */
function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}
