import assert from "node:assert/strict";
import { BookError, formatProblem, summarizeProblems } from "./problem.ts";

Deno.test("formatProblem names the line only when there is one", () => {
  assert.equal(formatProblem({ file: "b.csv", line: 2, message: "X." }), "b.csv:2: X.");
  assert.equal(formatProblem({ file: "b.csv", line: 0, message: "X." }), "b.csv: X.");
});

Deno.test("BookError says the first problem and how many more there are", () => {
  const problem = { file: "b.csv", line: 2, message: "The name is empty." };
  assert.equal(new BookError([problem]).message, "b.csv:2: The name is empty.");
  assert.equal(
    new BookError([problem, problem, problem]).message,
    "b.csv:2: The name is empty. (and 2 more problems)",
  );
  assert.equal(new BookError([problem, problem]).problems.length, 2);
  assert.throws(() => new BookError([]), RangeError);
});

Deno.test("summarizeProblems names the command that lists every problem, when there are more", () => {
  const problem = { file: "b.csv", line: 2, message: "The name is empty." };
  const command = "deno task validate b.csv";
  assert.equal(summarizeProblems([problem], command), "b.csv:2: The name is empty.");
  assert.equal(
    summarizeProblems([problem, problem, problem, problem], command),
    'b.csv:2: The name is empty. (and 3 more problems; run "deno task validate b.csv" to list them all)',
  );
});
