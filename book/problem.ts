/**
 * What the loader says about a book it refuses: each problem names the file
 * and line, never the email or name on it (problems end up in logs, and the
 * operator can look the line up in their own file), and a
 * {@linkcode BookError} carries all of them.
 *
 * ```ts
 * import { BookError, formatProblem } from "./problem.ts";
 *
 * const problem = { file: "book.csv", line: 3, message: "The name is empty." };
 * formatProblem(problem); // "book.csv:3: The name is empty."
 * new BookError([problem]).message; // the same
 * ```
 *
 * @module
 */

import { counted } from "../common/errors.ts";

/** One thing wrong with a book file. */
export interface BookProblem {
  /** The file, as it was named to the loader. */
  file: string;
  /** The line (from 1) the problem is on, or 0 when it is not about one line. */
  line: number;
  /** What is wrong, as one sentence; it never quotes an email or a name. */
  message: string;
}

/** Formats a problem as `FILE:LINE: message`, or `FILE: message` when it is not about a line. */
export function formatProblem(problem: BookProblem): string {
  return problem.line > 0
    ? `${problem.file}:${problem.line}: ${problem.message}`
    : `${problem.file}: ${problem.message}`;
}

/**
 * The first problem and how many more there are; with `listCommand`, the
 * command that lists them all, for a message that can show only one.
 *
 * ```ts
 * import { summarizeProblems } from "./problem.ts";
 *
 * const problem = { file: "b.csv", line: 2, message: "The name is empty." };
 * summarizeProblems([problem, problem], "deno task validate b.csv");
 * // 'b.csv:2: The name is empty. (and 1 more problem; run "deno task validate b.csv" to list them all)'
 * ```
 */
export function summarizeProblems(problems: readonly BookProblem[], listCommand?: string): string {
  const more = problems.length - 1;
  if (more <= 0) return formatProblem(problems[0]);
  const list = listCommand === undefined ? "" : `; run "${listCommand}" to list them all`;
  return `${formatProblem(problems[0])} (and ${counted(more, "more problem")}${list})`;
}

/** A book could not be loaded; `problems` lists everything wrong with it, in file order. */
export class BookError extends Error {
  /** Every problem found; never empty. */
  readonly problems: BookProblem[];

  /**
   * Makes the error; its message is the first problem and how many more there are.
   *
   * @throws {RangeError} when `problems` is empty.
   */
  constructor(problems: BookProblem[]) {
    if (problems.length === 0) throw new RangeError("A BookError needs at least one problem.");
    super(summarizeProblems(problems));
    this.name = "BookError";
    this.problems = problems;
  }
}
