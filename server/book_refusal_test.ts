import assert from "node:assert/strict";
import { BookError } from "../book/load.ts";
import { describeBookRefusal, validateCommand } from "./book_refusal.ts";
import { type CliOptions, parseServerArgs } from "./cli.ts";

function cli(args: string[]): CliOptions {
  const options = parseServerArgs(args);
  assert.ok(options !== "help");
  return options;
}

Deno.test("validateCommand checks the book as the server reads it", () => {
  assert.equal(validateCommand(cli([])), "deno task validate data/addressbook.csv");
  assert.equal(
    validateCommand(cli([
      "--data",
      "export.txt",
      "--format",
      "csv",
      "--duplicates",
      "first",
      "--email-column",
      "E-mail 2 Address",
      "--name-column",
      "Full Name",
      "--allow-empty",
    ])),
    "deno task validate --format csv --duplicates first --email-column 'E-mail 2 Address' " +
      "--name-column 'Full Name' --allow-empty export.txt",
  );
  assert.equal(
    validateCommand(cli(["--data", "Ada's book.csv"])),
    `deno task validate 'Ada'\\''s book.csv'`,
  );
});

Deno.test("describeBookRefusal points to validate only when there is more than one problem", () => {
  const problem = { file: "book.csv", line: 2, message: "The name is empty." };
  const options = cli(["--data", "book.csv"]);
  assert.equal(
    describeBookRefusal(new BookError([problem]), options),
    "book.csv:2: The name is empty.",
  );
  assert.equal(
    describeBookRefusal(new BookError([problem, problem, problem, problem]), options),
    'book.csv:2: The name is empty. (and 3 more problems; run "deno task validate book.csv" ' +
      "to list them all)",
  );
});
