/**
 * Checks for the values of command-line flags, shared by every command
 * (server, client, validate, gen, bench), so each kind of value is checked
 * by one rule and refused with one style of message: what was wrong, with
 * which value, and the accepted range; and one way for usage texts to list
 * the choices a flag takes.
 *
 * Each command catches {@linkcode UsageError}, prints it with its usage
 * text, and exits 2.
 *
 * @module
 */

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
