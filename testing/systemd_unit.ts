/**
 * Reading a systemd unit file in tests, as systemd reads it: sections of
 * `Key=value` lines (a key may repeat), `#` and `;` comments, a backslash
 * at a line's end continuing it; and a command line (`ExecStart=`) split
 * into words with systemd's quoting. Enough for deploy/addrbook.service,
 * whose ExecStart the tests run as systemd would.
 *
 * ```ts
 * import { parseUnit, splitCommandLine } from "./systemd_unit.ts";
 *
 * const unit = parseUnit("[Service]\nExecStart=/usr/bin/deno run \\\n  'a b.ts'\n");
 * splitCommandLine(unit.get("Service")!.get("ExecStart")![0]); // ["/usr/bin/deno", "run", "a b.ts"]
 * ```
 *
 * @module
 */

/** A unit: each section's keys, each with its values in file order. */
export type Unit = Map<string, Map<string, string[]>>;

/**
 * Parses a unit file's text.
 *
 * @throws {SyntaxError} for a line that is neither a section, a key=value, a comment nor blank.
 */
export function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: Map<string, string[]> | undefined;
  const lines = text.replace(/\\\n/g, " ").split("\n");
  lines.forEach((raw, index) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) return;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = unit.get(header[1]) ?? new Map();
      unit.set(header[1], section);
      return;
    }
    const pair = /^([A-Za-z0-9]+)\s*=\s*(.*)$/.exec(line);
    if (pair === null || section === undefined) {
      throw new SyntaxError(`Line ${index + 1} of the unit is not a section nor a key=value.`);
    }
    section.set(pair[1], [...(section.get(pair[1]) ?? []), pair[2]]);
  });
  return unit;
}

/**
 * Splits a command line into words as systemd does: at whitespace, with
 * single and double quotes grouping, and backslash escaping the next
 * character.
 *
 * @throws {SyntaxError} for a quote that is never closed.
 */
export function splitCommandLine(line: string): string[] {
  const words: string[] = [];
  let word: string | undefined;
  let quote = "";
  for (let i = 0; i < line.length; i++) {
    const char = line[i];
    if (quote !== "" && char === quote) {
      quote = "";
    } else if (char === "\\" && i + 1 < line.length) {
      word = (word ?? "") + line[++i];
    } else if (quote === "" && (char === '"' || char === "'")) {
      quote = char;
      word ??= "";
    } else if (quote === "" && /\s/.test(char)) {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else {
      word = (word ?? "") + char;
    }
  }
  if (quote !== "") throw new SyntaxError(`A ${quote} in the command line is never closed.`);
  if (word !== undefined) words.push(word);
  return words;
}
