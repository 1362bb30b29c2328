/**
 * Checks address book files without starting the server:
 * `deno task validate data/addressbook.csv other.json`.
 *
 * For each file it prints `FILE: OK, N entries, sha256 HEX` (the book's
 * fingerprint, see `book/fingerprint.ts`), or every problem as
 * `FILE:LINE: message`, then a summary. Exit status: 0 when every file is
 * clean, 1 when any has a problem, 2 for a usage error. Problems name lines,
 * never the emails or names on them.
 *
 * @module
 */

import { orList, parseChoice, parseFlags, UsageError, usageLine } from "../common/cli_args.ts";
import { describeError } from "../common/errors.ts";
import {
  BOOK_FORMAT_TABLE,
  BOOK_FORMATS,
  BookError,
  type BookFormat,
  DUPLICATE_POLICIES,
  type DuplicatePolicy,
  formatProblem,
  loadBook,
  type LoadOptions,
} from "../book/load.ts";
import { resolveUserPath } from "../common/user_path.ts";
import { writeAll } from "../common/write_all.ts";

/** Exit status when every file is clean. */
export const EXIT_OK = 0;
/** Exit status when any file has a problem. */
export const EXIT_PROBLEMS = 1;
/** Exit status for a usage error. */
export const EXIT_USAGE = 2;

/** The formats' names in prose: "CSV, JSON or vCard". */
const FORMAT_TITLES = orList(BOOK_FORMAT_TABLE.map((format) => format.title));

const USAGE = `Usage: deno task validate [options] FILE...

Checks address book files (${FORMAT_TITLES}) and reports every problem.

Options:
  --format F           read every file as ${BOOK_FORMATS.join(", ")} (default: from the extension)
  --duplicates P       ${DUPLICATE_POLICIES.join(", ")}: a repeated email is a problem (error, the
                       default), or the first or last one is kept
  --email-column NAME  CSV: the header of the email column
  --name-column NAME   CSV: the header of the name column
  --allow-empty        accept a book with no entries (by default that is a problem)
  --help               show this help

A clean file prints FILE: OK, N entries, sha256 FINGERPRINT: the full SHA-256
of the entries (as the server reports it), the same for the same entries in
any format, order or email letter case.

Exit status: 0 all files OK, 1 problems found, 2 usage error.`;

/** Lines are written this many at a time, so a million problems print quickly. */
const LINES_PER_WRITE = 10_000;

/** Runs the command with its arguments (without the program name); returns the exit status. */
export async function main(args: string[]): Promise<number> {
  let values;
  let files: string[];
  try {
    ({ values, positionals: files } = parseFlags({
      args,
      options: {
        format: { type: "string" },
        duplicates: { type: "string" },
        "email-column": { type: "string" },
        "name-column": { type: "string" },
        "allow-empty": { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      allowPositionals: true,
    }));
  } catch (error) {
    if (error instanceof UsageError) return usageError(error.message);
    throw error;
  }
  if (values.help) {
    await write(USAGE + "\n");
    return EXIT_OK;
  }
  if (files.length === 0) return usageError("Name at least one file to check.");
  let format: BookFormat | undefined;
  let duplicates: DuplicatePolicy | undefined;
  try {
    format = parseChoice("--format", values.format, BOOK_FORMATS);
    duplicates = parseChoice("--duplicates", values.duplicates, DUPLICATE_POLICIES);
  } catch (error) {
    if (error instanceof UsageError) return usageError(error.message);
    throw error;
  }
  const options: LoadOptions = {
    format,
    duplicates,
    emailColumn: values["email-column"],
    nameColumn: values["name-column"],
    allowEmpty: values["allow-empty"] ?? false,
  };

  let badFiles = 0;
  let problems = 0;
  for (const file of files) {
    const result = await check(file, options);
    await writeLines(result.report);
    if (result.problems > 0) {
      badFiles++;
      problems += result.problems;
    }
  }
  await writeLines([summary(files.length, badFiles, problems)]);
  return badFiles === 0 ? EXIT_OK : EXIT_PROBLEMS;
}

/** Checks one file: the lines to print about it, and how many problems it has. */
async function check(
  file: string,
  options: LoadOptions,
): Promise<{ report: string[]; problems: number }> {
  try {
    // An empty path stays empty, so the loader can say so (resolved, it would be a folder).
    const path = file === "" ? "" : resolveUserPath(file);
    const { book, entries, duplicates } = await loadBook(path, {
      ...options,
      name: file,
    });
    const dropped = duplicates > 0
      ? ` (${
        count(duplicates, "duplicate", "duplicates")
      } dropped: --duplicates ${options.duplicates})`
      : "";
    return {
      report: [
        `${file}: OK, ${count(entries, "entry", "entries")}${dropped}, sha256 ${book.fingerprint}`,
      ],
      problems: 0,
    };
  } catch (error) {
    if (error instanceof BookError) {
      return { report: error.problems.map(formatProblem), problems: error.problems.length };
    }
    // Not expected, but one bad file must not hide the report on the others.
    const reason = describeError(error);
    return { report: [`${file}: cannot check the file: ${reason}`], problems: 1 };
  }
}

function summary(files: number, badFiles: number, problems: number): string {
  if (badFiles === 0) return files === 1 ? "The file is OK." : `All ${files} files are OK.`;
  return `${count(problems, "problem", "problems")} in ${badFiles} of ${
    count(files, "file", "files")
  }.`;
}

function count(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

async function writeLines(lines: string[]): Promise<void> {
  for (let i = 0; i < lines.length; i += LINES_PER_WRITE) {
    await write(lines.slice(i, i + LINES_PER_WRITE).join("\n") + "\n");
  }
}

async function write(text: string): Promise<void> {
  const bytes = new TextEncoder().encode(text);
  try {
    await writeAll(Deno.stdout, bytes);
  } catch (error) {
    // The reader went away (`validate ... | head`); the exit status still tells.
    if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
  }
}

function usageError(message: string): number {
  console.error(usageLine("validate", message));
  return EXIT_USAGE;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
