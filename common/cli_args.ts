/**
 * Checks for the values of command-line flags, shared by every command
 * (server, client, validate, gen, bench), so each kind of value is checked
 * by one rule and refused with one style of message: what was wrong, with
 * which value, and the accepted range; and one way for usage texts to list
 * the choices a flag takes.
 *
 * Each command reads its flags with {@linkcode parseFlags}, catches
 * {@linkcode UsageError}, prints it as one {@linkcode usageLine} (the
 * message and "See --help."), and exits 2.
 *
 * @module
 */

import { parseArgs, type ParseArgsConfig } from "node:util";
import { describeError, wholeSentence } from "./errors.ts";

/** A flag's value that the command cannot use; commands exit 2 on it. */
export class UsageError extends Error {
  /** Creates the error with a one-sentence message. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** The longest timer `setTimeout` can keep, in milliseconds (2^31 - 1). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Parses a whole number from `min` to `max`, or throws a UsageError that
 * names the flag, the range and the value.
 *
 * ```ts
 * import { parseWholeNumber } from "./cli_args.ts";
 * parseWholeNumber("--workers", "4", 1, 64); // 4
 * ```
 */
export function parseWholeNumber(flag: string, value: string, min: number, max: number): number {
  const number = /^\d+$/.test(value) ? Number(value) : NaN;
  if (!(number >= min && number <= max)) {
    throw new UsageError(
      `${flag} must be a whole number from ${min} to ${max}, not "${value}".`,
    );
  }
  return number;
}

/** Parses a TCP port from `min` (0 picks a free one where allowed) to 65535. */
export function parsePort(flag: string, value: string, min = 0): number {
  return parseWholeNumber(flag, value, min, 65535);
}

/** Bounds for {@linkcode parseSeconds}. */
export interface SecondsRange {
  /** Whether 0 is accepted (for a timeout, it usually means "never"). */
  zero?: boolean;
  /** The largest value accepted, in seconds; the longest timer by default. */
  maxSeconds?: number;
}

/**
 * Parses a number of seconds into whole milliseconds. Every accepted value
 * is kept exactly: more than three decimals, a value that would round to 0,
 * and one beyond what a timer can wait are refused, not rounded, so that a
 * timeout is never silently switched off or cut short.
 *
 * ```ts
 * import { parseSeconds } from "./cli_args.ts";
 * parseSeconds("--frame-timeout", "2.5", { zero: true }); // 2500
 * ```
 */
export function parseSeconds(flag: string, value: string, range: SecondsRange = {}): number {
  const maxSeconds = range.maxSeconds ?? Math.floor(MAX_TIMER_MS / 1000);
  const min = range.zero ? "0" : "0.001";
  const match = /^(\d+)(?:\.(\d{1,3}))?$/.exec(value);
  const ms = match ? Number(match[1]) * 1000 + Number((match[2] ?? "").padEnd(3, "0")) : NaN;
  if (!(ms <= maxSeconds * 1000 && (ms > 0 || (ms === 0 && range.zero)))) {
    throw new UsageError(
      `${flag} must be a number of seconds from ${min} to ${maxSeconds} with at most 3 decimals, not "${value}".`,
    );
  }
  return ms;
}

/**
 * Checks that a value is one of `choices`; `undefined` passes through, for
 * flags that were not given.
 */
export function parseChoice<T extends string>(
  flag: string,
  value: string | undefined,
  choices: readonly T[],
): T | undefined {
  if (value === undefined) return undefined;
  if (!(choices as readonly string[]).includes(value)) {
    throw new UsageError(`${flag} must be one of ${choices.join(", ")}, not "${value}".`);
  }
  return value as T;
}

/**
 * Joins choices as a help text lists them: "a, b or c".
 *
 * ```ts
 * import { orList } from "./cli_args.ts";
 * orList(["csv", "json", "vcard"]); // "csv, json or vcard"
 * orList(["text"]); // "text"
 * ```
 */
export function orList(choices: readonly string[]): string {
  if (choices.length <= 1) return choices.join("");
  return `${choices.slice(0, -1).join(", ")} or ${choices.at(-1)}`;
}

/** The flags a command takes, as node:util's `parseArgs` describes them. */
export type FlagSpecs = NonNullable<ParseArgsConfig["options"]>;

/** The most edits between a mistyped flag and a real one for it to be suggested. */
const MAX_SUGGESTION_DISTANCE = 2;
/** The most flags one suggestion names. */
const MAX_SUGGESTIONS = 3;

/**
 * Parses a command line with node:util's `parseArgs` (strict), in this
 * project's words: every mistake is a {@linkcode UsageError} of one
 * sentence, an unknown flag with a "did you mean" for a near miss, and a
 * value that starts with a dash (`--port -1`) is the flag's value, so that
 * the value's own check says what is wrong with it.
 *
 * ```ts
 * import { parseFlags } from "./cli_args.ts";
 * const { values } = parseFlags({
 *   args: ["--port", "8080"],
 *   options: { port: { type: "string" }, json: { type: "boolean" } },
 * });
 * values.port; // "8080"
 * // parseFlags({ args: ["--prot", "1"], options: ... }) throws
 * // UsageError("Unknown option --prot: did you mean --port?")
 * ```
 */
export function parseFlags<T extends ParseArgsConfig>(
  config: T,
): ReturnType<typeof parseArgs<T>> {
  const args = config.args ?? [];
  const specs: FlagSpecs = config.options ?? {};
  checkFlagWords(args, specs, config.allowPositionals ?? false);
  try {
    return parseArgs<T>({ ...config, args: glueDashValues(args, specs), strict: true });
  } catch (error) {
    // checkFlagWords has said what parseArgs would; this is a last resort.
    throw new UsageError(wholeSentence(describeError(error)));
  }
}

/** Refuses what `parseArgs` would, each with a message in this project's style. */
function checkFlagWords(args: readonly string[], specs: FlagSpecs, positionals: boolean): void {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") return;
    if (arg.startsWith("--")) {
      const equals = arg.indexOf("=");
      const name = arg.slice(2, equals < 0 ? undefined : equals);
      const spec = Object.hasOwn(specs, name) ? specs[name] : undefined;
      if (spec === undefined) throw unknownFlag(`--${name}`, name, specs);
      if (spec.type === "boolean" && equals >= 0) {
        throw new UsageError(`--${name} takes no value, not "${arg.slice(equals + 1)}".`);
      }
      if (spec.type === "string" && equals < 0) {
        checkValue(`--${name}`, args[i + 1]);
        i++;
      }
    } else if (arg.startsWith("-") && arg !== "-") {
      const entry = Object.entries(specs).find(([, spec]) => spec.short === arg.slice(1));
      if (entry === undefined) throw unknownFlag(arg, arg.slice(1), specs);
      if (entry[1].type === "string") {
        checkValue(arg, args[i + 1]);
        i++;
      }
    } else if (!positionals) {
      throw new UsageError(`Unexpected argument "${arg}": only options are taken.`);
    }
  }
}

/** Checks that a flag that takes a value has one. */
function checkValue(flag: string, value: string | undefined): void {
  if (value === undefined) throw new UsageError(`${flag} needs a value.`);
  if (value.startsWith("--")) {
    throw new UsageError(
      `${flag} needs a value, not the option "${value}" (write ${flag}=${value} to mean it).`,
    );
  }
}

/** The error for a flag the command does not have, suggesting the nearest ones. */
function unknownFlag(typed: string, name: string, specs: FlagSpecs): UsageError {
  const near = nearFlags(name, Object.keys(specs));
  return new UsageError(
    near.length === 0
      ? `Unknown option ${typed}.`
      : `Unknown option ${typed}: did you mean ${orList(near.map((flag) => `--${flag}`))}?`,
  );
}

/**
 * The flags `name` may have been meant as: the flag itself (typed with one
 * dash), else those it begins or is begun by and those within
 * {@linkcode MAX_SUGGESTION_DISTANCE} edits (fewer for a short name, which
 * is near everything), prefixes first, then nearest first.
 *
 * ```ts
 * import { nearFlags } from "./cli_args.ts";
 * nearFlags("prot", ["port", "host"]); // ["port"]
 * nearFlags("tim", ["timeout", "tls"]); // ["timeout"]
 * nearFlags("x", ["ca", "tls"]); // []
 * ```
 */
export function nearFlags(name: string, flags: readonly string[]): string[] {
  if (name === "") return [];
  if (flags.includes(name)) return [name];
  const maxDistance = Math.min(MAX_SUGGESTION_DISTANCE, Math.floor(name.length / 2));
  return flags
    .map((flag) => ({
      flag,
      prefix: flag.startsWith(name) || name.startsWith(flag),
      distance: editDistance(name, flag),
    }))
    .filter(({ prefix, distance }) => prefix || distance <= maxDistance)
    .sort((a, b) => Number(b.prefix) - Number(a.prefix) || a.distance - b.distance)
    .slice(0, MAX_SUGGESTIONS)
    .map(({ flag }) => flag);
}

/** Levenshtein distance: the fewest insertions, deletions and substitutions from `a` to `b`. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min(previous[j] + 1, current[j - 1] + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length];
}

/**
 * Joins each value that starts with a single dash to its flag (`--port -1`
 * becomes `--port=-1`): parseArgs would refuse it as "ambiguous", where the
 * useful answer is the value's own check (-1 is not a port).
 */
function glueDashValues(args: readonly string[], specs: FlagSpecs): string[] {
  const glued: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const next = args[i + 1];
    if (takesValue(arg, specs) && next !== undefined && /^-[^-]/.test(next)) {
      glued.push(`${arg}=${next}`);
      i++;
    } else {
      glued.push(arg);
    }
  }
  return glued;
}

/** Whether `arg` is a long flag that takes a value, written without `=`. */
function takesValue(arg: string, specs: FlagSpecs): boolean {
  if (!arg.startsWith("--") || arg.includes("=")) return false;
  const name = arg.slice(2);
  return Object.hasOwn(specs, name) && specs[name].type === "string";
}

/**
 * The one line a command prints for a usage mistake: its name, the
 * message, and where to read more (never the whole usage text).
 *
 * ```ts
 * import { usageLine } from "./cli_args.ts";
 * usageLine("client", "Unknown option --prot: did you mean --port?");
 * // "client: Unknown option --prot: did you mean --port? See --help."
 * ```
 */
export function usageLine(command: string, message: string): string {
  return `${command}: ${message} See --help.`;
}
